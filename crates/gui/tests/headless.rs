//! The `parla --headless` binary end to end: piped stdin/stdout against an in-process server on
//! an ephemeral 127.0.0.1 port, with a raw IRC client in the room to see what it sends.
//!
//! Every `parla` process is SIGKILLed by a guard if the test fails; every wait is bounded by
//! [`WAIT`]. All runs but the ICMP one pass `--no-ping`.

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parla_net::LocalServer;
use parla_net::server::ServerOptions;
use parla_testkit::process::{Lines, Watched, without_parla_env};
use parla_testkit::{RawClient, WAIT, icmp_permitted, require};

/// A running `parla --headless`. Dropping it SIGKILLs the process unless it has exited.
struct Parla {
    pid: Pid,
    process: Watched,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    stderr: Lines,
}

impl Parla {
    fn spawn(args: &[&str]) -> Parla {
        Parla::spawn_env(args, &[])
    }

    fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Parla {
        let mut command = Command::new(env!("CARGO_BIN_EXE_parla"));
        command
            .arg("--headless")
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            // The IRC username defaults to $USER: make it predictable.
            .env_remove("USER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        without_parla_env(&mut command).envs(env.iter().copied());
        let mut child = command.spawn().expect("parla starts");
        let stdin = child.stdin.take();
        let stdout = Lines::read("stdout", vec![Box::new(child.stdout.take().unwrap())]);
        let stderr = Lines::read("stderr", vec![Box::new(child.stderr.take().unwrap())]);
        let process = Watched::new(child);
        Parla {
            pid: process.pid,
            process,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Types a line.
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("parla reads its stdin");
    }

    /// Closes stdin (end of input).
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits (bounded) for the exit code.
    async fn exit_code(&mut self) -> Option<i32> {
        let status = self.process.status().await.unwrap_or_else(|| {
            panic!(
                "parla still running after {WAIT:?}; stdout {:#?}",
                self.stdout.seen
            )
        });
        status.code()
    }
}

/// `parla --headless --no-ping --name NAME ADDR`, waited for until `watcher` sees it join.
async fn joined(server: &LocalServer, watcher: &mut RawClient, name: &str) -> Parla {
    let addr = server.addr().to_string();
    let mut parla = Parla::spawn(&["--no-ping", "--name", name, &addr]);
    parla.stdout.expect(&format!("You are {name}.")).await;
    watcher
        .expect(|l| l == format!(":{name}!~{name}@127.0.0.1 JOIN #lobby"))
        .await;
    parla
}

#[tokio::test]
async fn a_taken_name_is_refused_and_another_is_asked_for() {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let addr = server.addr().to_string();
    let mut parla = Parla::spawn(&["--no-ping", &addr]);
    parla.stdout.expect(&format!("Connected to {addr}.")).await;
    parla.type_line("alice");
    let line = parla.stdout.expect("was refused").await;
    assert!(
        line.ends_with(
            "The name \"alice\" was refused: Nickname is already in use; pick another name"
        ),
        "{line}"
    );
    parla.type_line("bob");
    let line = parla.stdout.expect("You are bob.").await;
    assert!(line.starts_with("Choose another name: "), "{line}");
    // No --name and no $USER: the IRC username is "parla".
    alice
        .expect(|l| l == ":bob!~parla@127.0.0.1 JOIN #lobby")
        .await;
    parla.type_line("quit");
    assert_eq!(parla.exit_code().await, Some(0));
    server.shut_down().await;
}

#[tokio::test]
async fn typed_lines_reach_the_room_and_the_room_reaches_stdout() {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let mut parla = joined(&server, &mut alice, "carol").await;

    parla.type_line("hello from the terminal");
    alice
        .expect(|l| l == ":carol!~carol@127.0.0.1 PRIVMSG #lobby :hello from the terminal")
        .await;
    parla.type_line("/me waves");
    alice
        .expect(|l| l == ":carol!~carol@127.0.0.1 PRIVMSG #lobby :\x01ACTION waves\x01")
        .await;

    alice.send("PRIVMSG #lobby :hi carol").await;
    let line = parla.stdout.expect("<alice>").await;
    // "[HH:MM] #lobby <alice> hi carol": which room it was said in
    assert!(line.ends_with("] #lobby <alice> hi carol"), "{line}");
    assert!(line.starts_with('['), "{line}");

    parla.type_line("quit");
    alice
        .expect(|l| l == ":carol!~carol@127.0.0.1 QUIT :Quit: Leaving")
        .await;
    assert_eq!(parla.exit_code().await, Some(0));
    parla
        .stdout
        .expect("Disconnected: you left the chat.")
        .await;
    server.shut_down().await;
}

#[tokio::test]
async fn a_room_operator_moderates_from_the_terminal() {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut bob = RawClient::join(server.addr(), "bob").await;
    let mut parla = joined(&server, &mut bob, "carol").await;

    // Her own room: she is its operator.
    parla.type_line("/join #den");
    parla.stdout.expect("In #den: @carol").await;
    bob.send("JOIN #den").await;
    bob.expect_has(" 366 bob #den ").await;
    parla.stdout.expect("In #den: @carol, bob").await;
    parla.type_line("/voice bob");
    bob.expect_has("MODE #den +v bob").await;
    parla
        .stdout
        .expect("--- carol sets mode +v bob on #den")
        .await;
    parla.stdout.expect("In #den: @carol, +bob").await;
    parla.type_line("/topic Den of quiet");
    bob.expect_has("TOPIC #den :Den of quiet").await;
    parla.stdout.expect("--- Topic of #den: Den of quiet").await;
    parla.type_line("/kick bob too loud");
    bob.expect_has("KICK #den bob :too loud").await;
    parla
        .stdout
        .expect("<-- bob was removed from #den by carol (too loud)")
        .await;
    // A mistake is explained, and nothing is sent.
    parla.type_line("/kick");
    parla.stdout.expect("/kick needs a name").await;
    // Leaving her room puts her back in #lobby, where bob hears her.
    parla.type_line("/part");
    parla
        .stdout
        .expect("You left #den; messages now go to #lobby.")
        .await;
    parla.type_line("still here");
    bob.expect(|l| l == ":carol!~carol@127.0.0.1 PRIVMSG #lobby :still here")
        .await;
    parla.type_line("/away lunch");
    parla
        .stdout
        .expect("*** You have been marked as being away")
        .await;

    parla.type_line("quit");
    assert_eq!(parla.exit_code().await, Some(0));
    server.shut_down().await;
}

/// The attack from the safety issue: escape sequences in a message, a topic and a quit reason
/// would retitle, recolour and erase the terminal. They are shown, never obeyed: no ESC, BEL,
/// backspace or C1 control reaches stdout, and IRC formatting codes are dropped (stdout is a pipe).
#[tokio::test]
async fn received_escape_sequences_are_shown_not_obeyed() {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let mut parla = joined(&server, &mut alice, "dave").await;

    alice
        .send("PRIVMSG #lobby :\x1b]2;PWNED\x07 \x1b[31mRED\x1b[2K\x08\u{9b}2J \x02bold\x02")
        .await;
    let line = parla.stdout.expect("<alice>").await;
    assert!(
        line.ends_with(
            "<alice> \u{241b}]2;PWNED\u{2407} \u{241b}[31mRED\u{241b}[2K\u{2408}\u{fffd}2J bold"
        ),
        "{line:?}"
    );
    alice.send("TOPIC #lobby :\x1b[2Jcleared").await;
    let line = parla.stdout.expect("Topic of #lobby").await;
    assert!(line.ends_with(": \u{241b}[2Jcleared"), "{line:?}");
    parla.type_line("quit");
    assert_eq!(parla.exit_code().await, Some(0));
    for line in &parla.stdout.seen {
        assert!(
            !line.chars().any(|c| c.is_control()),
            "a control character reached the terminal: {line:?}"
        );
    }
    server.shut_down().await;
}

#[tokio::test]
async fn end_of_input_leaves_and_exits_0() {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let mut parla = joined(&server, &mut alice, "dave").await;
    parla.close_stdin();
    alice
        .expect(|l| l == ":dave!~dave@127.0.0.1 QUIT :Quit: Leaving")
        .await;
    assert_eq!(parla.exit_code().await, Some(0));
    server.shut_down().await;
}

#[tokio::test]
async fn a_closed_port_exits_1_saying_the_connection_was_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut parla = Parla::spawn(&["--no-ping", "--name", "erin", &addr]);
    assert_eq!(parla.exit_code().await, Some(1));
    let stderr = parla.stderr.all().await;
    assert!(
        stderr
            .iter()
            .any(|l| l.contains(&addr) && l.contains("connection was refused")),
        "{stderr:#?}"
    );
}

#[tokio::test]
async fn the_address_is_asked_for_when_not_given() {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let mut parla = Parla::spawn(&["--no-ping", "--name", "fay"]);
    // A mistake is explained and the question asked again.
    parla.type_line("localhost:http");
    let line = parla.stdout.expect("not a port number").await;
    assert!(line.starts_with("Server address"), "{line}");
    let addr = server.addr().to_string();
    parla.type_line(&addr);
    let line = parla.stdout.expect("Connecting to").await;
    assert_eq!(
        line,
        format!(
            "Server address (host or host:port, port 8080 by default; ircs://host for TLS): Connecting to {addr}..."
        )
    );
    parla.stdout.expect("You are fay.").await;
    alice
        .expect(|l| l == ":fay!~fay@127.0.0.1 JOIN #lobby")
        .await;
    parla.type_line("quit");
    assert_eq!(parla.exit_code().await, Some(0));
    server.shut_down().await;
}

#[tokio::test]
async fn ctrl_c_quits_with_a_reason_and_exits_0() {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let mut parla = joined(&server, &mut alice, "gus").await;
    // A round trip through the client's event loop: it has been idle (and so listening for
    // Ctrl-C) since it printed its registration.
    alice.send("PRIVMSG #lobby :ready?").await;
    parla.stdout.expect("<alice> ready?").await;

    kill(parla.pid, Signal::SIGINT).unwrap();
    alice
        .expect(|l| l == ":gus!~gus@127.0.0.1 QUIT :Quit: Ctrl-C")
        .await;
    assert_eq!(parla.exit_code().await, Some(0));
    server.shut_down().await;
}

#[tokio::test]
async fn a_server_shutdown_is_shown_and_exits_0() {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let mut parla = joined(&server, &mut alice, "hal").await;
    server.shut_down().await;
    parla
        .stdout
        .expect("*** Server is shutting down. Goodbye!")
        .await;
    parla
        .stdout
        .expect("*** The server is shutting down: Server shutting down")
        .await;
    parla
        .stdout
        .expect("Disconnected: the server shut down.")
        .await;
    assert_eq!(parla.exit_code().await, Some(0));
}

#[tokio::test]
async fn icmp_pings_to_localhost_work() {
    // A datagram socket (ping_group_range) or a raw one (root, CAP_NET_RAW); CI runs as root.
    if !require(
        "permission to send ICMP echo requests",
        icmp_permitted().await,
    ) {
        return;
    }
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let addr = server.addr().to_string();
    let mut parla = Parla::spawn_env(
        &["--ping-interval", "100ms", "--name", "ivy", &addr],
        // The ping watcher logs each result at trace level.
        &[("RUST_LOG", "warn,parla_net::ping=trace")],
    );
    alice
        .expect(|l| l == ":ivy!~ivy@127.0.0.1 JOIN #lobby")
        .await;
    // Answered pings, more than once.
    for _ in 0..2 {
        let line = parla.stderr.expect("ping result").await;
        assert!(
            line.contains("target=127.0.0.1") && line.contains("event=Reply"),
            "{line}"
        );
    }
    parla.type_line("quit");
    assert_eq!(parla.exit_code().await, Some(0));
    let stderr = parla.stderr.all().await;
    assert!(
        !stderr
            .iter()
            .any(|l| l.contains("ICMP pings are not possible") || l.contains("missed")),
        "{stderr:#?}"
    );
    server.shut_down().await;
}

/// `echo hello | parla --headless --name piper HOST`: the piped line is what piper says once
/// registered (not a name attempt), and the end of input then leaves.
#[tokio::test]
async fn piped_lines_with_a_name_given_are_said_not_taken_for_names() {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let addr = server.addr().to_string();
    let mut parla = Parla::spawn(&["--no-ping", "--name", "piper", &addr]);
    parla.type_line("hello");
    parla.type_line("/me waves");
    parla.close_stdin();
    alice
        .expect(|l| l == ":piper!~piper@127.0.0.1 JOIN #lobby")
        .await;
    alice
        .expect(|l| l == ":piper!~piper@127.0.0.1 PRIVMSG #lobby :hello")
        .await;
    alice
        .expect(|l| l == ":piper!~piper@127.0.0.1 PRIVMSG #lobby :\x01ACTION waves\x01")
        .await;
    alice
        .expect(|l| l.starts_with(":piper!~piper@127.0.0.1 QUIT"))
        .await;
    assert_eq!(parla.exit_code().await, Some(0));
    server.shut_down().await;
}

/// With a name given that is taken, the next line is the next attempt, and what follows it
/// waits for that one's answer: whether the lines came before the refusal (held) or after it
/// (typed at the prompt; what CI once saw of the first case).
#[rstest::rstest]
#[case::typed_before_the_refusal(false)]
#[case::typed_after_the_refusal(true)]
#[tokio::test]
async fn a_refused_name_given_takes_the_next_line_as_the_next_name(#[case] after: bool) {
    let mut server = LocalServer::start(ServerOptions::default())
        .await
        .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let addr = server.addr().to_string();
    let mut parla = Parla::spawn(&["--no-ping", "--name", "alice", &addr]);
    if after {
        parla.stdout.expect("was refused").await;
    }
    parla.type_line("piper");
    parla.type_line("hi all");
    parla.close_stdin();
    alice
        .expect(|l| l == ":piper!~alice@127.0.0.1 JOIN #lobby")
        .await;
    alice
        .expect(|l| l == ":piper!~alice@127.0.0.1 PRIVMSG #lobby :hi all")
        .await;
    assert_eq!(parla.exit_code().await, Some(0));
    let out = parla.stdout.all().await;
    assert!(
        after
            || out
                .iter()
                .any(|l| l.contains("The name \"alice\" was refused")),
        "{out:#?}"
    );
    server.shut_down().await;
}

#[tokio::test]
async fn a_paste_over_the_limit_is_refused_and_a_long_one_says_it_is_split() {
    let mut server = LocalServer::start(ServerOptions {
        flood: None,
        ..ServerOptions::default()
    })
    .await
    .expect("start the server");
    let mut alice = RawClient::join(server.addr(), "alice").await;
    let mut parla = joined(&server, &mut alice, "carol").await;

    parla.type_line(&"x".repeat(5000));
    let refused = parla.stdout.expect("Too long to send").await;
    assert!(
        refused.ends_with(
            "Too long to send: 5000 bytes, and the limit is 4096 bytes. Shorten it or send it in parts."
        ),
        "{refused}"
    );
    parla.type_line(&"word ".repeat(200));
    parla
        .stdout
        .expect("Long message: it will go out as 3 messages (nothing is cut).")
        .await;
    // Nothing of the refused one reached the room; the long one did, in three.
    for _ in 0..3 {
        let line = alice.expect(|l| l.contains("PRIVMSG #lobby")).await;
        assert!(line.contains(":word word"), "{line}");
    }
    parla.type_line("quit");
    alice.expect(|l| l.contains("QUIT")).await;
    assert_eq!(parla.exit_code().await, Some(0));
    server.shut_down().await;
}
