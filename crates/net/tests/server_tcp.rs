//! The server runtime on real TCP: an in-process [`parla_net::server::run`] on an ephemeral
//! 127.0.0.1 port, spoken to in raw IRC bytes, asserting raw replies (mini-redis
//! `tests/server.rs`).
//!
//! Nothing here sleeps to synchronise: every wait is for a line (or EOF) under a
//! [`WAIT`]-bounded `timeout`, so a hang fails the test instead of blocking it.

mod common;

use common::{TestServer, WAIT};
use parla_testkit::RawClient;
use parla_testkit::irc::privmsg;

use std::time::{Duration, Instant};

use parla_net::server::{FloodControl, ServerOptions};
use tokio::net::TcpStream;
use tokio::sync::watch;

impl TestServer {
    async fn connect(&self, label: &str) -> RawClient {
        RawClient::connect(self.addr, label).await
    }
}

fn options() -> ServerOptions {
    ServerOptions {
        // Tests send bursts; the flood-control test turns it back on.
        flood: None,
        ..ServerOptions::default()
    }
}

#[tokio::test]
async fn a_taken_name_gets_433_in_any_case_and_the_connection_stays_usable() {
    let server = TestServer::start(options()).await;
    let mut alice = server.connect("alice").await;
    alice.register("alice").await;

    let mut other = server.connect("other").await;
    other.send_registration("alice").await;
    let line = other.expect_has(" 433 ").await;
    assert_eq!(
        line,
        ":parla.local 433 * alice :Nickname is already in use; pick another name"
    );
    other.send("NICK ALICE").await;
    let line = other.expect_has(" 433 ").await;
    assert_eq!(
        line,
        ":parla.local 433 * ALICE :Nickname is already in use; pick another name"
    );
    // Still connected: a free name completes the registration (USER was already sent).
    other.send("NICK bob").await;
    let line = other.expect_has(" 001 ").await;
    assert!(
        line.starts_with(
            ":parla.local 001 bob :Welcome to the Parla IRC network, bob!~alice@127.0.0.1"
        ),
        "{line}"
    );
    alice.expect_has(":bob!~alice@127.0.0.1 JOIN #lobby").await;
    server.stop().await;
}

#[tokio::test]
async fn quit_frees_the_name_and_the_room_sees_it() {
    let server = TestServer::start(options()).await;
    let mut alice = server.connect("alice").await;
    alice.register("alice").await;
    let mut bob = server.connect("bob").await;
    bob.register("bob").await;

    alice.send("QUIT :see you").await;
    let rest = alice.expect_eof().await;
    assert_eq!(
        rest.last().map(String::as_str),
        Some("ERROR :Closing Link: 127.0.0.1 (Quit: see you)"),
        "{rest:#?}"
    );
    bob.expect(|l| l == ":alice!~alice@127.0.0.1 QUIT :Quit: see you")
        .await;

    let mut newcomer = server.connect("newcomer").await;
    newcomer.register("alice").await;
    bob.expect(|l| l == ":alice!~alice@127.0.0.1 JOIN #lobby")
        .await;
    server.stop().await;
}

#[tokio::test]
async fn a_dropped_socket_leaves_with_connection_closed() {
    let server = TestServer::start(options()).await;
    let mut alice = server.connect("alice").await;
    alice.register("alice").await;
    let mut bob = server.connect("bob").await;
    bob.register("bob").await;

    drop(bob);
    alice
        .expect(|l| l == ":bob!~bob@127.0.0.1 QUIT :Connection closed")
        .await;
    let mut newcomer = server.connect("newcomer").await;
    newcomer.register("bob").await;
    server.stop().await;
}

/// Regression: with `ping_interval_ms` shorter than `registration_timeout_ms` (60 s here), the
/// core used to send a user's first PING only at the registration deadline, so this test hung.
#[tokio::test]
async fn a_silent_client_is_pinged_then_timed_out_and_its_name_freed() {
    let mut opts = options();
    opts.core.ping_interval_ms = 300;
    opts.core.ping_timeout_ms = 300;
    let server = TestServer::start(opts).await;
    let mut watcher = server.connect("watcher").await;
    watcher.register("watcher").await;
    // The ghost registers, then neither sends nor reads anything: its socket stays open.
    let mut ghost = server.connect("ghost").await;
    ghost.register("ghost").await;

    // The watcher answers its own PINGs while waiting (see `parla_testkit::RawClient::try_next_line_until`).
    let started = Instant::now();
    let quit = watcher
        .expect(|l| l.starts_with(":ghost!~ghost@127.0.0.1 QUIT "))
        .await;
    assert!(
        quit.starts_with(":ghost!~ghost@127.0.0.1 QUIT :Ping timeout: "),
        "{quit}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "at least one ping interval passes first"
    );

    // What the ghost was sent meanwhile: a PING, then the ERROR, then EOF.
    let lines = ghost.expect_eof().await;
    let ping = lines
        .iter()
        .position(|l| l == "PING :parla.local")
        .unwrap_or_else(|| panic!("no PING in {lines:#?}"));
    let error = lines
        .iter()
        .position(|l| l.starts_with("ERROR :Closing Link: 127.0.0.1 (Ping timeout: "))
        .unwrap_or_else(|| panic!("no ERROR in {lines:#?}"));
    assert!(ping < error);
    assert_eq!(error, lines.len() - 1, "ERROR is the last line");

    // The watcher, which answered its PINGs, is still here; the name is free again.
    let mut newcomer = server.connect("newcomer").await;
    newcomer.register("ghost").await;
    watcher
        .expect(|l| l == ":ghost!~ghost@127.0.0.1 JOIN #lobby")
        .await;
    server.stop().await;
}

/// Regression: registering gives the core an earlier deadline (the first PING) from inside
/// `handle_line`; the runtime's timer task used to learn of new deadlines only on connect, so a
/// lone user was never pinged.
#[tokio::test]
async fn a_lone_silent_client_is_pinged_and_timed_out() {
    let mut opts = options();
    opts.core.ping_interval_ms = 200;
    opts.core.ping_timeout_ms = 200;
    let server = TestServer::start(opts).await;
    let mut ghost = server.connect("ghost").await.answering_no_pings();
    ghost.send_registration("ghost").await;
    // Read (never answer) until the connection ends.
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match ghost.try_next_line_until(deadline).await {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => break,
            Err(()) => panic!("not timed out within {WAIT:?}; got {lines:#?}"),
        }
    }
    let ping = lines.iter().position(|l| l == "PING :parla.local");
    let error = lines
        .iter()
        .position(|l| l.starts_with("ERROR :Closing Link: 127.0.0.1 (Ping timeout: "));
    assert!(
        ping.is_some() && error == Some(lines.len() - 1) && ping < error,
        "{lines:#?}"
    );
    server.stop().await;
}

/// Progress the watcher reports to the flooder.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Flood messages the watcher has received.
    received: usize,
    /// How many it had received when it saw the slow reader's QUIT.
    quit_after: Option<usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_is_dropped_with_sendq_exceeded_and_others_lose_nothing() {
    /// Flood messages the flooder may have ahead of the watcher: keeps the watcher's own queue
    /// far below the SendQ (16 × ~470 bytes < 16 KiB) however the threads are scheduled.
    const WINDOW: usize = 16;
    /// Messages sent after the QUIT was seen.
    const AFTER: usize = 200;
    /// An upper bound, so that a server that never drops the slow reader fails the test.
    const MAX: usize = 200_000;
    let mut opts = options();
    opts.sendq_bytes = 16 * 1024;
    let server = TestServer::start(opts).await;

    let mut watcher = server.connect("watcher").await;
    watcher.register("watcher").await;
    let mut flooder = server.connect("flooder").await;
    flooder.register("flooder").await;
    // The slow reader: a small receive buffer so that the kernel does not absorb much; it
    // registers and never reads a byte.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = tokio::time::timeout(WAIT, socket.connect(server.addr))
        .await
        .expect("connect in time")
        .unwrap();
    let mut slow = RawClient::from_stream(stream, "slow");
    slow.send_registration("slow").await;
    watcher
        .expect(|l| l == ":slow!~slow@127.0.0.1 JOIN #lobby")
        .await;

    let (progress_tx, mut progress_rx) = watch::channel(Progress::default());
    let padding = "x".repeat(400);
    let flood = tokio::spawn(async move {
        let mut i = 0;
        let mut stop_at = None;
        while stop_at != Some(i) {
            let p = *tokio::time::timeout(WAIT, progress_rx.wait_for(|p| p.received + WINDOW > i))
                .await
                .expect("the watcher keeps up")
                .expect("the watcher is alive");
            if stop_at.is_none()
                && let Some(q) = p.quit_after
            {
                stop_at = Some(i.max(q) + AFTER);
            }
            flooder
                .send(&format!("PRIVMSG #lobby :flood {i} {padding}"))
                .await;
            i += 1;
            assert!(i < MAX, "the slow reader was never dropped");
        }
        flooder.send(&format!("PRIVMSG #lobby :done {i}")).await;
        i
    });

    let mut p = Progress::default();
    let total = loop {
        let line = watcher
            .expect(|l| l.contains(" QUIT ") || privmsg(l).is_some())
            .await;
        if let Some((from, _, text)) = privmsg(&line) {
            assert_eq!(from, "flooder");
            if let Some(n) = text.strip_prefix("done ") {
                break n.parse::<usize>().unwrap();
            }
            let n: usize = text.split(' ').nth(1).unwrap().parse().unwrap();
            assert_eq!(n, p.received, "the watcher lost or reordered a message");
            p.received += 1;
        } else {
            assert_eq!(line, ":slow!~slow@127.0.0.1 QUIT :SendQ exceeded");
            assert_eq!(p.quit_after, None, "one QUIT");
            p.quit_after = Some(p.received);
        }
        progress_tx.send_replace(p);
    };
    let sent = tokio::time::timeout(WAIT, flood).await.unwrap().unwrap();
    assert_eq!(total, sent);
    assert_eq!(p.received, sent, "the watcher received every message");
    let quit_after = p
        .quit_after
        .expect("the watcher saw the slow reader's QUIT");
    assert!(p.received - quit_after >= AFTER);

    // The slow reader's connection is closed: what the kernel held drains, then EOF.
    let rest = slow
        .read_to_end()
        .await
        .expect("ends with EOF, not an error");
    assert!(
        rest.len() < sent * 500,
        "it was cut off before receiving everything"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_lines_are_answered_and_the_connection_keeps_working() {
    let server = TestServer::start(options()).await;
    let mut alice = server.connect("alice").await;
    alice.register("alice").await;
    let mut bob = server.connect("bob").await;
    bob.register("bob").await;

    // Longer than the codec's maximum line: discarded by the codec.
    let huge = format!("PRIVMSG #lobby :{}", "x".repeat(10_000));
    alice.send(&huge).await;
    let line = alice.expect_has(" 417 ").await;
    assert!(
        line.starts_with(":parla.local 417 alice :Input line was too long"),
        "{line}"
    );
    // Fits the codec but not IRC's 512 bytes: refused by the core.
    alice
        .send(&format!("PRIVMSG #lobby :{}", "y".repeat(600)))
        .await;
    alice.expect_has(" 417 alice ").await;

    alice.send_bytes(b"PRIVMSG #lobby :caf\xe9\r\n").await;
    let line = alice.expect_has("FAIL").await;
    assert!(
        line.starts_with(":parla.local FAIL * INVALID_UTF8 :"),
        "{line}"
    );

    alice.send_bytes(b"PRIVMSG #lobby :a\0b\r\n").await;
    let line = alice.expect_has("FAIL").await;
    assert!(
        line.starts_with(":parla.local FAIL * INVALID_MESSAGE :"),
        "{line}"
    );

    alice.send("PING :still-here").await;
    let line = alice.expect_has("PONG").await;
    assert_eq!(line, ":parla.local PONG parla.local :still-here");
    alice.send("PRIVMSG #lobby :fine now").await;
    // None of the bad lines reached bob; the good one did.
    let line = bob.expect(|l| privmsg(l).is_some()).await;
    assert_eq!(line, ":alice!~alice@127.0.0.1 PRIVMSG #lobby :fine now");
    server.stop().await;
}

#[tokio::test]
async fn past_max_clients_a_connection_is_told_the_server_is_full_and_closed() {
    let mut opts = options();
    opts.max_clients = 2;
    let server = TestServer::start(opts).await;
    let mut a = server.connect("a").await;
    a.register("a").await;
    let mut b = server.connect("b").await;
    b.register("b").await;

    let mut c = server.connect("c").await;
    let lines = c.expect_eof().await;
    assert_eq!(
        lines,
        ["ERROR :Closing Link: the server is full (2 clients); try again later"]
    );
    // The two served clients are unaffected.
    for client in [&mut a, &mut b] {
        client.send("PING :ok").await;
        client.expect_has("PONG parla.local :ok").await;
    }
    server.stop().await;
}

#[tokio::test]
async fn flood_control_delays_lines_but_loses_none() {
    const PINGS: usize = 30;
    let mut opts = options();
    let flood = FloodControl {
        burst: 5,
        per_second: 20.0,
    };
    opts.flood = Some(flood);
    let server = TestServer::start(opts).await;
    let mut alice = server.connect("alice").await;
    alice.register("alice").await;

    let burst: String = (0..PINGS).map(|i| format!("PING :tok-{i}\r\n")).collect();
    let started = Instant::now();
    alice.send_bytes(burst.as_bytes()).await;
    for i in 0..PINGS {
        let line = alice.expect_has(" PONG ").await;
        assert_eq!(line, format!(":parla.local PONG parla.local :tok-{i}"));
    }
    // At most `burst` lines are read at once, then `per_second`: the last one waited.
    let least = Duration::from_secs_f64((PINGS as f64 - f64::from(flood.burst)) / flood.per_second);
    assert!(
        started.elapsed() >= least - Duration::from_millis(50),
        "30 lines took only {:?}: not throttled",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn cancelling_the_token_says_goodbye_to_everyone_and_run_returns() {
    let server = TestServer::start(options()).await;
    let mut alice = server.connect("alice").await;
    alice.register("alice").await;
    let mut bob = server.connect("bob").await;
    bob.register("bob").await;
    // Not registered yet, but told too. (A PING round trip makes sure it was accepted.)
    let mut anon = server.connect("anon").await;
    anon.send("PING :here").await;
    anon.expect_has("PONG").await;

    let addr = server.addr;
    server.stop().await;

    for (client, nick) in [(&mut alice, "alice"), (&mut bob, "bob"), (&mut anon, "*")] {
        client
            .expect(|l| {
                l == format!(":parla.local NOTICE {nick} :Server is shutting down. Goodbye!")
            })
            .await;
        assert_eq!(
            client.next_line().await.as_deref(),
            Some("ERROR :Server shutting down")
        );
        assert_eq!(client.next_line().await, None, "EOF after the ERROR");
    }
    // The listener is gone with `run`.
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn echo_message_and_server_time_tag_our_own_message() {
    let mut opts = options();
    // 2023-11-14T22:13:20Z: the core's clock counts from here.
    opts.epoch_millis = 1_700_000_000_000;
    let server = TestServer::start(opts).await;
    let mut plain = server.connect("plain").await;
    plain.register("plain").await;

    let mut alice = server.connect("alice").await;
    alice.send("CAP LS 302").await;
    let ls = alice.expect_has(" CAP ").await;
    assert_eq!(
        ls,
        format!(
            ":parla.local CAP * LS :{}",
            parla_room::limits::cap_ls(4096, 32)
        )
    );
    assert!(ls.contains("echo-message") && ls.contains("server-time"));
    alice.send_registration("alice").await;
    alice.send("CAP REQ :echo-message server-time").await;
    let ack = alice.expect_has(" CAP ").await;
    assert!(
        ack.ends_with(" CAP alice ACK :echo-message server-time"),
        "{ack}"
    );
    alice.send("CAP END").await;
    alice.expect_has(" 366 alice #lobby ").await;

    alice.send("PRIVMSG #lobby :hello, me").await;
    let echo = alice.expect(|l| privmsg(l).is_some()).await;
    let (tags, rest) = echo.split_once(' ').unwrap();
    assert_eq!(rest, ":alice!~alice@127.0.0.1 PRIVMSG #lobby :hello, me");
    let time = tags.strip_prefix("@time=").expect("a server-time tag");
    assert!(time.starts_with("2023-11-14T22:1"), "{time}");
    assert_eq!(time.len(), "2023-11-14T22:13:20.000Z".len(), "{time}");
    assert!(time.ends_with('Z'));
    // Someone without the capabilities gets it plain.
    let line = plain.expect(|l| privmsg(l).is_some()).await;
    assert_eq!(line, ":alice!~alice@127.0.0.1 PRIVMSG #lobby :hello, me");
    server.stop().await;
}
