//! Real `parla-server` processes as one chat over a real NATS (`nats-server -js`, from Debian):
//! rooms, names and message order across servers, history from any server, a server killed
//! with `kill -9`, one stopped with Ctrl-C, and NATS itself going away and coming back.
//!
//! Every process is stopped by a guard; every wait is bounded.

mod process;

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use parla_testkit::nats::Nats;
use parla_testkit::{RawClient, WAIT};
use process::Server;

/// A Parla server of the cluster on `nats`, named `name`, beating every `beat`.
async fn member(nats: &str, name: &str, beat: &str) -> (Server, SocketAddr) {
    member_with(nats, name, beat, &[]).await
}

/// [`member`], with more flags.
async fn member_with(nats: &str, name: &str, beat: &str, more: &[&str]) -> (Server, SocketAddr) {
    let mut server = spawn_member(nats, name, beat, more);
    let addr = server.listening_addr().await;
    (server, addr)
}

/// [`member_with`], without waiting for it to listen.
fn spawn_member(nats: &str, name: &str, beat: &str, more: &[&str]) -> Server {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--cluster",
        nats,
        "--cluster-name",
        name,
        "--cluster-beat",
        beat,
        "--history",
        "memory",
        "--no-flood-control",
    ];
    args.extend_from_slice(more);
    Server::spawn(&args)
}

/// The text of each PRIVMSG among `lines`, in order.
fn texts(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| parla_testkit::irc::privmsg(l).map(|(_, _, text)| text))
        .collect()
}

#[tokio::test]
async fn three_servers_are_one_chat_with_one_order_and_unique_names() {
    let Some(nats) = Nats::start() else { return };
    let (_s1, a1) = member(&nats.url(), "one", "5s").await;
    let (_s2, a2) = member(&nats.url(), "two", "5s").await;
    let (_s3, a3) = member(&nats.url(), "three", "5s").await;

    let mut alice = RawClient::connect(a1, "alice").await;
    let mut bob = RawClient::connect(a2, "bob").await;
    let mut carol = RawClient::connect(a3, "carol").await;
    for (c, nick) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        c.send("CAP REQ :echo-message").await;
        c.send_registration(nick).await;
        c.send("CAP END").await;
        c.expect_numeric("001").await;
    }
    alice.expect_has(":bob!~bob@127.0.0.1 JOIN #lobby").await;
    alice
        .expect_has(":carol!~carol@127.0.0.1 JOIN #lobby")
        .await;

    // Members of every server, from any server.
    carol.send("NAMES #lobby").await;
    let names = carol.expect_numeric("353").await;
    for nick in ["alice", "bob", "carol"] {
        assert!(names.contains(nick), "{names}");
    }
    carol.send("WHOIS bob").await;
    assert!(
        carol
            .expect_numeric("311")
            .await
            .contains(" bob ~bob 127.0.0.1 ")
    );

    // A name is held once in the whole cluster.
    let mut other = RawClient::connect(a3, "other").await;
    other.send_registration("alice").await;
    let refused = other.expect_numeric("433").await;
    assert!(refused.contains(" alice "), "{refused}");

    // Three people talk at once on three servers: everyone sees one order.
    for i in 0..20 {
        alice.send(&format!("PRIVMSG #lobby :a{i}")).await;
        bob.send(&format!("PRIVMSG #lobby :b{i}")).await;
        carol.send(&format!("PRIVMSG #lobby :c{i}")).await;
    }
    let mut seen = Vec::new();
    for c in [&mut alice, &mut bob, &mut carol] {
        let mut lines = Vec::new();
        while texts(&lines).len() < 60 {
            lines.push(c.line().await);
        }
        seen.push(texts(&lines));
    }
    assert_eq!(seen[0], seen[1], "alice and bob saw one order");
    assert_eq!(seen[1], seen[2], "bob and carol saw one order");
    for who in ["a", "b", "c"] {
        let theirs: Vec<&String> = seen[0].iter().filter(|t| t.starts_with(who)).collect();
        let sent: Vec<String> = (0..20).map(|i| format!("{who}{i}")).collect();
        assert_eq!(
            theirs,
            sent.iter().collect::<Vec<_>>(),
            "{who}'s own order kept"
        );
    }

    // Someone joining later on any server gets the room's history.
    let mut dana = RawClient::connect(a2, "dana").await;
    dana.send_registration_for_history("dana").await;
    dana.expect_numeric("001").await;
    let lines = dana.history_page("CHATHISTORY LATEST #lobby * 100").await;
    assert_eq!(texts(&lines), seen[0], "history in the order everyone saw");
}

#[tokio::test]
async fn a_server_killed_with_kill_9_loses_its_users_and_frees_their_names() {
    let Some(nats) = Nats::start() else { return };
    let (_s1, a1) = member(&nats.url(), "one", "500ms").await;
    let (s2, a2) = member(&nats.url(), "two", "500ms").await;
    let mut alice = RawClient::join(a1, "alice").await;
    let _bob = RawClient::join(a2, "bob").await;
    alice.expect_has(":bob!~bob@127.0.0.1 JOIN #lobby").await;

    s2.signal(Signal::SIGKILL);
    // Three of one's beats (1.5 s here) after two's last.
    alice
        .expect_has(":bob!~bob@127.0.0.1 QUIT :Server two stopped answering")
        .await;
    alice.say("#lobby", "still here").await;
    let mut bob = RawClient::join(a1, "bob").await;
    bob.send("NAMES #lobby").await;
    assert!(bob.expect_numeric("353").await.contains("alice bob"));
}

#[tokio::test]
async fn ctrl_c_on_one_server_says_goodbye_to_its_users_and_the_others_go_on() {
    let Some(nats) = Nats::start() else { return };
    let (_s1, a1) = member(&nats.url(), "one", "5s").await;
    let (mut s2, a2) = member(&nats.url(), "two", "5s").await;
    let mut alice = RawClient::join(a1, "alice").await;
    let mut bob = RawClient::join(a2, "bob").await;
    alice.expect_has(":bob!~bob@127.0.0.1 JOIN #lobby").await;

    s2.signal(Signal::SIGINT);
    bob.expect_has("NOTICE bob :Server is shutting down. Goodbye!")
        .await;
    // At once, not after the beats: two said it was leaving.
    alice
        .expect_has(":bob!~bob@127.0.0.1 QUIT :Server shutting down")
        .await;
    let (status, output) = s2.exit().await;
    assert_eq!(status.code(), Some(0), "{output:#?}");
    let mut carol = RawClient::join(a1, "carol").await;
    carol.say("#lobby", "the chat goes on").await;
    alice
        .expect_has(":carol!~carol@127.0.0.1 PRIVMSG #lobby :the chat goes on")
        .await;
}

#[tokio::test]
async fn while_nats_is_down_lines_are_refused_and_nothing_accepted_is_lost() {
    let Some(nats) = Nats::start() else { return };
    let url = nats.url();
    let (_s1, a1) = member(&url, "one", "5s").await;
    let (_s2, a2) = member(&url, "two", "5s").await;
    let mut alice = RawClient::join(a1, "alice").await;
    let mut bob = RawClient::join(a2, "bob").await;
    let mut leaver = RawClient::join(a1, "leaver").await;
    alice.expect_has(":bob!~bob@127.0.0.1 JOIN #lobby").await;
    bob.expect_has(":leaver!~leaver@127.0.0.1 JOIN #lobby")
        .await;
    bob.say("#lobby", "before").await;
    alice.expect_has("PRIVMSG #lobby :before").await;

    let (port, store) = nats.stop();
    // The servers notice the broken connection; until then a line may still be queued.
    let deadline = tokio::time::Instant::now() + WAIT;
    let refused = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusal within {WAIT:?}"
        );
        alice.say("#lobby", "during").await;
        let line = tokio::time::timeout(Duration::from_millis(200), alice.line()).await;
        if let Ok(line) = line
            && line.contains("cannot reach the chat network")
        {
            break line;
        }
    };
    assert!(refused.contains("NOTICE alice :Not sent:"), "{refused}");
    let mut late = RawClient::connect(a2, "late").await;
    let error = late.line().await;
    assert!(
        error.starts_with("ERROR :Closing Link: this server cannot reach the chat network"),
        "{error}"
    );
    // Leaving always works, at once, with a reason as long as a line allows (its ERROR still
    // within 512 bytes); the others see the QUIT once NATS is back.
    let long = "x".repeat(500);
    leaver.send(&format!("QUIT :{long}")).await;
    let lines = leaver.expect_eof().await;
    let error = lines.last().expect("an ERROR before the close");
    assert!(
        error.starts_with("ERROR :Closing Link: 127.0.0.1 (Quit: xxx"),
        "{lines:?}"
    );
    assert!(error.len() + 2 <= 512, "{} bytes", error.len() + 2);

    let _nats = Nats::start_on(port, store);
    // Back: both servers take lines again, and the chat is one again.
    // async-nats reconnects with a growing delay: allow it three of our usual waits.
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    let mut answers = Vec::new();
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "NATS not back within {:?}",
            3 * WAIT
        );
        bob.say("#lobby", "after").await;
        match tokio::time::timeout(Duration::from_millis(500), bob.line()).await {
            Ok(line) => answers.push(line),
            // Nothing came back: the line was taken (no echo without echo-message).
            Err(_) => break,
        }
    }
    alice
        .expect_has(":bob!~bob@127.0.0.1 PRIVMSG #lobby :after")
        .await;
    let quit = ":leaver!~leaver@127.0.0.1 QUIT :Quit: xxx";
    if !answers.iter().any(|l| l.contains(quit)) {
        bob.expect_has(quit).await;
    }
}

#[tokio::test]
async fn a_server_with_other_chat_settings_is_refused_and_exits_with_the_reason() {
    let Some(nats) = Nats::start() else { return };
    let (_s1, a1) = member(&nats.url(), "one", "5s").await;
    let mut odd = Server::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--cluster",
        &nats.url(),
        "--room",
        "#elsewhere",
        "--history",
        "memory",
    ]);
    let (status, output) = odd.exit().await;
    assert_eq!(status.code(), Some(1), "{output:#?}");
    assert!(
        output
            .iter()
            .any(|l| l.contains("the cluster refused this server")),
        "{output:#?}"
    );
    // The cluster is untouched.
    let mut alice = RawClient::join(a1, "alice").await;
    alice.send("LUSERS").await;
    alice.expect_numeric("251").await;
}

/// A starting server loads the newest snapshot and reads only what came after it; the log
/// keeps only the entries after the oldest snapshot kept. What it then shows (history, names,
/// topics) is the whole chat's.
#[tokio::test]
async fn a_starting_server_loads_the_newest_snapshot_and_the_log_is_trimmed() {
    let Some(nats) = Nats::start() else { return };
    let snapshots = [
        "--cluster-snapshot-every",
        "10",
        "--cluster-snapshots-kept",
        "1",
    ];
    let (mut one, a1) = member_with(&nats.url(), "one", "5s", &snapshots).await;
    let mut alice = RawClient::connect(a1, "alice").await;
    alice.send_registration("alice").await;
    alice.expect_numeric("001").await;
    alice.send("TOPIC #lobby :kept in a snapshot").await;
    // One at a time, so that they take a log position each (entries published together
    // share one): several snapshots are taken, and the log trimmed after each.
    for i in 0..40 {
        alice.send(&format!("PRIVMSG #lobby :message {i}")).await;
        alice.send(&format!("PING :{i}")).await;
        alice.expect_has(&format!("PONG parla.local :{i}")).await;
    }
    one.expect_output("stored a snapshot of the chat").await;
    one.expect_output("the cluster's log now starts after the oldest snapshot kept")
        .await;

    let mut two = spawn_member(&nats.url(), "two", "5s", &snapshots);
    let started = two
        .expect_output("started from the cluster's snapshot")
        .await;
    let position: u64 = (started.split("position=").nth(1))
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no position in {started:?}"));
    assert!(position >= 40, "{started}");
    let a2 = two.listening_addr().await;
    let mut bob = RawClient::connect(a2, "bob").await;
    bob.send_registration_for_history("bob").await;
    bob.expect_numeric("001").await;
    assert!(
        bob.expect_numeric("332")
            .await
            .contains(":kept in a snapshot"),
        "the topic"
    );
    let names = bob.expect_numeric("353").await;
    assert!(names.contains("alice"), "{names}");
    let lines = bob.history_page("CHATHISTORY LATEST #lobby * 100").await;
    let said = texts(&lines);
    let expected: Vec<String> = (0..40).map(|i| format!("message {i}")).collect();
    assert_eq!(said, expected);
    // And the chat goes on across both.
    bob.send("PRIVMSG #lobby :bob from two").await;
    alice
        .expect_has(":bob!~bob@127.0.0.1 PRIVMSG #lobby :bob from two")
        .await;
}
