//! The terminal client: `parla --headless`. Asks for the address and a name on the terminal,
//! prints the room to stdout, sends what is typed. Leaves on `quit`, `/quit`, end of input or
//! Ctrl-C (sending `QUIT` each time); exits 0 after a clean end, 1 after a failure.

use std::io::{BufRead, IsTerminal, Write};

use parla_net::IcmpPinger;
use parla_net::client::{self, Command, Disconnect, Event, HistoryPage, Member, MessageKind, Said};
use parla_net::transport::Tcp;
use tokio::sync::mpsc;

use crate::chat::clock;
use crate::cli::Args;
use crate::input::{self, Input};
use crate::safe;

/// Runs the terminal client to the end; returns the process exit code.
pub async fn run(args: Args) -> i32 {
    // Registered first, so a Ctrl-C at any moment leaves cleanly instead of killing us.
    let mut interrupt =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
            Ok(signal) => signal,
            Err(err) => {
                eprintln!("parla: could not install the Ctrl-C handler: {err}");
                return 1;
            }
        };
    let mut lines = stdin_lines();
    let addr = match &args.addr {
        Some(text) => match args.parse_addr(text) {
            Ok(addr) => addr,
            Err(err) => {
                eprintln!("parla: {err}");
                return 2;
            }
        },
        None => loop {
            prompt(
                "Server address (host or host:port, port 8080 by default; ircs://host for TLS): ",
            );
            let line = tokio::select! {
                line = lines.recv() => line,
                _ = interrupt.recv() => None,
            };
            let Some(line) = line else {
                println!();
                return 0;
            };
            match args.parse_addr(&line) {
                Ok(addr) => break addr,
                Err(err) => println!("{err}"),
            }
        },
    };
    println!("Connecting to {addr}...");
    let connecting = client::connect(&Tcp, IcmpPinger::new(), args.client_config(addr.clone()));
    let connected = tokio::select! {
        connected = connecting => connected,
        _ = interrupt.recv() => {
            println!("Cancelled.");
            return 0;
        }
    };
    let mut client = match connected {
        Ok(client) => client,
        Err(err) => {
            eprintln!("parla: {err}");
            return 1;
        }
    };
    println!("Connected to {}.", client.server);
    let mut naming = true;
    // With --name, lines typed (or piped in) while a name is being tried are what the person
    // says, not name attempts: they wait, and go to the room once registered. If a name is
    // refused, the next line is the next name tried (held, or typed then).
    let mut held: Option<std::collections::VecDeque<String>> = None;
    // A name was sent and its answer has not come.
    let mut trying = false;
    let mut quit_when_sent = false;
    match &args.name {
        Some(name) => {
            held = Some(Default::default());
            trying = true;
            send(&client.commands, Command::Nick(name.clone())).await;
        }
        None => prompt("Choose a name: "),
    }
    let mut ctrl_c_seen = false;
    let mut stdin_open = true;
    // IRC formatting as Parla's own escape sequences on a terminal (unless NO_COLOR), as
    // plain text otherwise; received control characters never reach the terminal.
    let render: fn(&str) -> String =
        if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            safe::ansi
        } else {
            safe::plain
        };
    loop {
        tokio::select! {
            biased;
            event = client.events.recv() => {
                let Some(event) = event else { return 1 };
                match safe::event(&event, render) {
                    Event::Disconnected(why) => {
                        return finish(&why);
                    }
                    Event::NameRefused { name, reason } => {
                        println!("The name {name:?} was refused: {reason}");
                        naming = true;
                        trying = false;
                        // The first held line is the next name, as if typed now.
                        match held.as_mut().and_then(|waiting| waiting.pop_front()) {
                            Some(next) => {
                                trying = true;
                                send(&client.commands, Command::Nick(next.trim().to_owned())).await;
                            }
                            None if quit_when_sent => {
                                send(&client.commands, Command::Quit(None)).await;
                            }
                            None => prompt("Choose another name: "),
                        }
                    }
                    Event::Registered { name, .. } if !naming => {
                        // A session that carried on after a lost connection.
                        println!("Reconnected as {name}.");
                    }
                    Event::Registered { name, .. } => {
                        naming = false;
                        trying = false;
                        println!("You are {name}. Type to chat; /help lists commands; quit leaves.");
                        for line in held.take().unwrap_or_default() {
                            say(&client.commands, &line).await;
                        }
                        if quit_when_sent {
                            send(&client.commands, Command::Quit(None)).await;
                        }
                    }
                    other => show(&other),
                }
            }
            _ = interrupt.recv(), if !ctrl_c_seen => {
                ctrl_c_seen = true;
                println!();
                send(&client.commands, Command::Quit(Some("Ctrl-C".into()))).await;
            }
            line = lines.recv(), if stdin_open => {
                let Some(line) = line else {
                    stdin_open = false;
                    // Lines still waiting for a name go first; then the end of input leaves.
                    if held.is_some() && trying {
                        quit_when_sent = true;
                    } else {
                        send(&client.commands, Command::Quit(None)).await;
                    }
                    continue;
                };
                if trying && let Some(waiting) = held.as_mut() {
                    waiting.push_back(line);
                    continue;
                }
                if naming {
                    if line.trim().eq_ignore_ascii_case("quit") {
                        send(&client.commands, Command::Quit(None)).await;
                    } else if line.trim().is_empty() {
                        prompt("Choose a name: ");
                    } else {
                        trying = held.is_some();
                        send(&client.commands, Command::Nick(line.trim().to_owned())).await;
                    }
                    continue;
                }
                say(&client.commands, &line).await;
            }
        }
    }
}

/// A line typed once registered: a command, or words for the room.
async fn say(commands: &mpsc::Sender<Command>, line: &str) {
    match input::parse(line) {
        Input::Command(cmd) => send(commands, cmd).await,
        Input::Nothing => {}
        Input::Help => println!("{}", input::HELP),
        Input::Invalid(why) => println!("{why}"),
    }
}

fn finish(why: &Disconnect) -> i32 {
    if why.is_clean() {
        println!("Disconnected: {why}.");
        0
    } else {
        eprintln!("parla: disconnected: {why}");
        1
    }
}

async fn send(commands: &mpsc::Sender<Command>, cmd: Command) {
    // If the session is gone, its Disconnected event says why; nothing to add here.
    let _ = commands.send(cmd).await;
}

fn prompt(text: &str) {
    print!("{text}");
    let _ = std::io::stdout().flush();
}

/// Reads stdin on a plain thread (tokio's stdin would hold the runtime open at exit).
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Prints one event as a line of the room.
fn show(event: &Event) {
    match event {
        Event::Message(m) => println!("{}", said(m)),
        Event::History {
            target,
            page,
            messages,
            more,
        } => {
            let heading = match page {
                HistoryPage::Recent | HistoryPage::Older if messages.is_empty() => {
                    return println!("--- No earlier messages in {target}.");
                }
                HistoryPage::Recent => "earlier messages",
                HistoryPage::Older => "older messages",
                HistoryPage::Missed => "missed while you were away",
            };
            println!("— {heading} in {target} —");
            for m in messages {
                println!("{}", said(m));
            }
            match (page, more) {
                (HistoryPage::Missed, _) => println!("— end of what you missed —"),
                (_, true) => println!("— /older {target} shows more —"),
                (_, false) => println!("— that is all the server kept —"),
            }
        }
        Event::Reconnecting {
            reason,
            after,
            attempt,
        } => println!(
            "*** Connection lost ({reason}); reconnecting in {} s{}…",
            after.as_secs().max(1),
            match attempt {
                1 => String::new(),
                n => format!(" (attempt {n})"),
            }
        ),
        Event::Joined { room } => println!("You joined {room}."),
        Event::Switched { room } => println!("Now talking in {room}."),
        Event::Members {
            room,
            members,
            complete: true,
        } => println!("In {room}: {}", listed(members)),
        Event::Members { room, members, .. } => println!(
            "In {room} (seen so far; the server does not list a room this large, /names lists everyone): {}",
            listed(members)
        ),
        Event::Left {
            room,
            current: Some(now),
        } => println!("You left {room}; messages now go to {now}."),
        Event::Left {
            room,
            current: None,
        } => {
            println!("You left {room}; /join #room to talk again.")
        }
        Event::Kicked {
            room,
            name,
            by,
            reason,
        } => match reason.as_str() {
            "" => println!("<-- {name} was removed from {room} by {by}"),
            _ => println!("<-- {name} was removed from {room} by {by} ({reason})"),
        },
        Event::Invited { room, name, by } => println!("--- {by} invites {name} to {room}"),
        Event::ModeChanged { target, by, change } => {
            println!("--- {by} sets mode {change} on {target}")
        }
        Event::Typing { .. } => {}
        Event::UserJoined { room, name } => println!("--> {name} joined {room}"),
        Event::UserLeft { room, name, reason } => match reason {
            Some(r) => println!("<-- {name} left {room} ({r})"),
            None => println!("<-- {name} left {room}"),
        },
        Event::UserQuit { name, reason } => println!("<-- {name} quit ({reason})"),
        Event::Renamed { old, new } => println!("--- {old} is now known as {new}"),
        Event::Topic { room, topic } => println!("--- Topic of {room}: {topic}"),
        Event::ServerInfo { text } => println!("*** {text}"),
        Event::ServerError { text } => println!("!!! {text}"),
        Event::PingReply { .. } => {}
        Event::PingMissed { consecutive, error } => {
            eprintln!("parla: ping {consecutive} missed: {error}")
        }
        Event::PingUnavailable { reason } => {
            eprintln!(
                "parla: ICMP pings are not possible here ({reason}); watching the connection with IRC PING instead"
            )
        }
        Event::ServerShutdown { message } => println!("*** The server is shutting down: {message}"),
        Event::NameRefused { .. } | Event::Registered { .. } | Event::Disconnected(_) => {}
    }
}

/// A message as a line: its time, its room (or who it is between), who, what.
fn said(m: &Said) -> String {
    let at = clock(m.time.as_deref());
    let place = match (m.target.starts_with(['#', '&']), m.own) {
        (true, _) => format!(" {}", m.target),
        (false, true) => format!(" (to {})", m.target),
        (false, false) => " (privately)".to_owned(),
    };
    let (from, text) = (&m.from, &m.text);
    match m.kind {
        MessageKind::Normal => format!("[{at}]{place} <{from}> {text}"),
        MessageKind::Action => format!("[{at}]{place} * {from} {text}"),
        MessageKind::Notice => format!("[{at}]{place} -{from}- {text}"),
    }
}

/// A member list as IRC clients show it, operators first: `@alice, +bob, carol`.
fn listed(members: &[Member]) -> String {
    let mut members: Vec<&Member> = members.iter().collect();
    members.sort_by_key(|m| m.rank());
    members
        .iter()
        .map(|m| format!("{}{}", m.prefix(), m.name))
        .collect::<Vec<_>>()
        .join(", ")
}
