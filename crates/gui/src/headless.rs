//! The terminal client: `parla --headless`. Asks for the address and a name on the terminal,
//! prints the room to stdout, sends what is typed (with line editing on a terminal: see
//! [`terminal`](crate::terminal)). Leaves on `quit`, `/quit`, end of input or Ctrl-C (sending
//! `QUIT` each time); exits 0 after a clean end, 1 after a failure.

use std::io::IsTerminal;

use parla_net::IcmpPinger;
use parla_net::client::{
    self, Command, Disconnect, Event, HistoryPage, Member, MessageKind, Said, casefold,
};
use parla_net::transport::Tcp;
use tokio::sync::mpsc;

use crate::chat::{self, SendPlan, clock};
use crate::cli::Args;
use crate::input::{self, Input};
use crate::safe;
use crate::terminal::{self, Output, Typed};

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
    let (mut lines, mut out) = terminal::start();
    let addr = match &args.addr {
        Some(text) => match args.parse_addr(text) {
            Ok(addr) => addr,
            Err(err) => {
                out.error(&format!("parla: {err}"));
                return 2;
            }
        },
        None => loop {
            out.ask(
                "Server address (host or host:port, port 8080 by default; ircs://host for TLS): ",
            );
            let typed = tokio::select! {
                typed = lines.recv() => typed.unwrap_or(Typed::End),
                _ = interrupt.recv() => Typed::Interrupt,
            };
            let line = match typed {
                Typed::Line(line) => line,
                Typed::Interrupt | Typed::End => {
                    out.line("");
                    return 0;
                }
            };
            match args.parse_addr(&line) {
                Ok(addr) => break addr,
                Err(err) => out.line(&err.to_string()),
            }
        },
    };
    out.line(&format!("Connecting to {addr}..."));
    let connecting = client::connect(&Tcp, IcmpPinger::new(), args.client_config(addr.clone()));
    let connected = tokio::select! {
        connected = connecting => connected,
        _ = interrupt.recv() => {
            out.line("Cancelled.");
            return 0;
        }
    };
    let mut client = match connected {
        Ok(client) => client,
        Err(err) => {
            out.error(&format!("parla: {err}"));
            return 1;
        }
    };
    out.line(&format!("Connected to {}.", client.server));
    let mut naming = true;
    // With --name, lines typed (or piped in) while a name is being tried are what the person
    // says, not name attempts: they wait, and go to the room once registered. If a name is
    // refused, the next line is the next name tried (held, or typed then).
    let mut held: Option<std::collections::VecDeque<String>> = None;
    // A name was sent and its answer has not come.
    let mut trying = false;
    let mut quit_when_sent = false;
    // Our name and the current room, for the split note of long messages.
    let mut me = Here::default();
    match &args.name {
        Some(name) => {
            held = Some(Default::default());
            trying = true;
            send(&client.commands, Command::Nick(name.clone())).await;
        }
        None => out.ask("Choose a name: "),
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
                let event = safe::event(&event, render);
                me.follow(&event);
                match event {
                    Event::Disconnected(why) => {
                        return finish(&why, &mut out);
                    }
                    Event::NameRefused { name, reason } => {
                        out.line(&format!("The name {name:?} was refused: {reason}"));
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
                            None => out.ask("Choose another name: "),
                        }
                    }
                    Event::Registered { name, .. } if !naming => {
                        // A session that carried on after a lost connection.
                        out.line(&format!("Reconnected as {name}."));
                    }
                    Event::Registered { name, .. } => {
                        naming = false;
                        trying = false;
                        out.line(&format!("You are {name}. Type to chat; /help lists commands; quit leaves."));
                        for line in held.take().unwrap_or_default() {
                            say(&client.commands, &line, &me, &mut out).await;
                        }
                        if quit_when_sent {
                            send(&client.commands, Command::Quit(None)).await;
                        }
                    }
                    other => match show(&other) {
                        Some(Shown::Room(text)) => out.line(&text),
                        Some(Shown::Note(text)) => out.error(&text),
                        None => {}
                    },
                }
            }
            _ = interrupt.recv(), if !ctrl_c_seen => {
                ctrl_c_seen = true;
                out.line("");
                send(&client.commands, Command::Quit(Some("Ctrl-C".into()))).await;
            }
            typed = lines.recv(), if stdin_open => {
                let line = match typed.unwrap_or(Typed::End) {
                    Typed::Line(line) => line,
                    Typed::Interrupt => {
                        // Ctrl-C in the line editor: as the signal would.
                        if !ctrl_c_seen {
                            ctrl_c_seen = true;
                            send(&client.commands, Command::Quit(Some("Ctrl-C".into()))).await;
                        }
                        continue;
                    }
                    Typed::End => {
                        stdin_open = false;
                        // Lines still waiting for a name go first; then the end of input leaves.
                        if held.is_some() && trying {
                            quit_when_sent = true;
                        } else {
                            send(&client.commands, Command::Quit(None)).await;
                        }
                        continue;
                    }
                };
                if trying && let Some(waiting) = held.as_mut() {
                    waiting.push_back(line);
                    continue;
                }
                if naming {
                    if line.trim().eq_ignore_ascii_case("quit") {
                        send(&client.commands, Command::Quit(None)).await;
                    } else if line.trim().is_empty() {
                        out.ask("Choose a name: ");
                    } else {
                        trying = held.is_some();
                        send(&client.commands, Command::Nick(line.trim().to_owned())).await;
                    }
                    continue;
                }
                say(&client.commands, &line, &me, &mut out).await;
            }
        }
    }
}

/// Who we are and where we talk, as the session's events say: what a long message is cut for.
#[derive(Default)]
struct Here {
    nick: String,
    room: Option<String>,
}

impl Here {
    fn follow(&mut self, event: &Event) {
        match event {
            Event::Registered { name, .. } => self.nick = name.clone(),
            Event::Renamed { old, new } if casefold(old) == casefold(&self.nick) => {
                self.nick = new.clone()
            }
            Event::Joined { room } | Event::Switched { room } => self.room = Some(room.clone()),
            Event::Left { current, .. } => self.room = current.clone(),
            _ => {}
        }
    }
}

/// A line typed once registered: a command, or words for the room. Text over the paste limit is
/// refused (and kept out of the room); text that goes out as several messages says so.
async fn say(commands: &mpsc::Sender<Command>, line: &str, here: &Here, out: &mut Output) {
    match input::parse(line) {
        Input::Command(cmd) => {
            let room = here.room.as_deref().unwrap_or("#lobby");
            match chat::plan_for(&cmd, &here.nick, room) {
                Some(refused @ SendPlan::TooLong(_)) => {
                    return out.line(&format!("!!! {}", refused.note().unwrap_or_default()));
                }
                Some(split @ SendPlan::Split(_)) => {
                    out.line(&format!("--- {}", split.note().unwrap_or_default()));
                }
                _ => {}
            }
            send(commands, cmd).await
        }
        Input::Nothing => {}
        Input::Help => out.line(input::HELP),
        Input::Invalid(why) => out.line(&why),
    }
}

fn finish(why: &Disconnect, out: &mut Output) -> i32 {
    if why.is_clean() {
        out.line(&format!("Disconnected: {why}."));
        0
    } else {
        out.error(&format!("parla: disconnected: {why}"));
        1
    }
}

async fn send(commands: &mpsc::Sender<Command>, cmd: Command) {
    // If the session is gone, its Disconnected event says why; nothing to add here.
    let _ = commands.send(cmd).await;
}

/// What an event shows: lines of the room, or a note about the connection (stderr when not on
/// a terminal).
enum Shown {
    Room(String),
    Note(String),
}

macro_rules! room {
    ($($t:tt)*) => { Some(Shown::Room(format!($($t)*))) };
}

macro_rules! note {
    ($($t:tt)*) => { Some(Shown::Note(format!($($t)*))) };
}

/// What one event shows, if anything.
fn show(event: &Event) -> Option<Shown> {
    match event {
        Event::Message(m) => Some(Shown::Room(said(m))),
        Event::History {
            target,
            page,
            messages,
            more,
        } => {
            let heading = match page {
                HistoryPage::Recent | HistoryPage::Older if messages.is_empty() => {
                    return room!("--- No earlier messages in {target}.");
                }
                HistoryPage::Recent => "earlier messages",
                HistoryPage::Older => "older messages",
                HistoryPage::Missed => "missed while you were away",
            };
            let mut lines = vec![format!("— {heading} in {target} —")];
            lines.extend(messages.iter().map(said));
            lines.push(match (page, more) {
                (HistoryPage::Missed, _) => "— end of what you missed —".to_owned(),
                (_, true) => format!("— /older {target} shows more —"),
                (_, false) => "— that is all the server kept —".to_owned(),
            });
            Some(Shown::Room(lines.join("\n")))
        }
        Event::Reconnecting {
            reason,
            after,
            attempt,
        } => room!(
            "*** Connection lost ({reason}); reconnecting {}…",
            chat::reconnect_wait(*after, *attempt)
        ),
        Event::Joined { room } => room!("You joined {room}."),
        Event::Switched { room } => room!("Now talking in {room}."),
        Event::Members {
            room,
            members,
            complete: true,
        } => room!("In {room}: {}", listed(members)),
        Event::Members { room, members, .. } => room!(
            "In {room} (seen so far; the server does not list a room this large, /names lists everyone): {}",
            listed(members)
        ),
        Event::Left {
            room,
            current: Some(now),
        } => room!("You left {room}; messages now go to {now}."),
        Event::Left {
            room,
            current: None,
        } => {
            room!("You left {room}; /join #room to talk again.")
        }
        Event::Kicked {
            room,
            name,
            by,
            reason,
        } => match reason.as_str() {
            "" => room!("<-- {name} was removed from {room} by {by}"),
            _ => room!("<-- {name} was removed from {room} by {by} ({reason})"),
        },
        Event::Invited { room, name, by } => room!("--- {by} invites {name} to {room}"),
        Event::ModeChanged { target, by, change } => {
            room!("--- {by} sets mode {change} on {target}")
        }
        Event::Typing { .. } => None,
        Event::UserJoined { room, name } => room!("--> {name} joined {room}"),
        Event::UserLeft { room, name, reason } => match reason {
            Some(r) => room!("<-- {name} left {room} ({r})"),
            None => room!("<-- {name} left {room}"),
        },
        Event::UserQuit { name, reason } => room!("<-- {name} quit ({reason})"),
        Event::Renamed { old, new } => room!("--- {old} is now known as {new}"),
        Event::Topic { room, topic } => room!("--- Topic of {room}: {topic}"),
        Event::ServerInfo { text } => room!("*** {text}"),
        Event::ServerError { text } => room!("!!! {text}"),
        Event::PingReply { .. } => None,
        Event::PingMissed { consecutive, error } => {
            note!("parla: ping {consecutive} missed: {error}")
        }
        Event::PingUnavailable { reason } => {
            note!(
                "parla: ICMP pings are not possible here ({reason}); watching the connection with IRC PING instead"
            )
        }
        Event::ServerShutdown { message } => room!("*** The server is shutting down: {message}"),
        Event::NameRefused { .. } | Event::Registered { .. } | Event::Disconnected(_) => None,
    }
}

/// A message as a line: its time, its room (or who it is between), who, what.
fn said(m: &Said) -> String {
    let at = clock(m.time.as_deref());
    let place = match (chat::is_room(&m.target), m.own) {
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
