//! The client session ([`parla_net::client::connect`]) on real TCP against an in-process server
//! (and, for the liveness fallback, against a scripted fake server), asserting its typed events.
//!
//! Every wait is for an event (or a line) under a [`WAIT`]-bounded `timeout`; nothing sleeps.

mod common;

use common::{TestServer, WAIT, wait_for};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use parla_net::Tcp;
use parla_net::addr::ServerAddr;
use parla_net::client::{
    self, Client, ClientConfig, Command, ConnectError, Disconnect, Event, Member, MessageKind, Said,
};
use parla_net::ping::PingConfig;
use parla_net::server::ServerOptions;
use parla_testkit::{Answer, FakePinger, RawClient};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

impl TestServer {
    async fn without_flood_control() -> TestServer {
        TestServer::start(ServerOptions {
            flood: None,
            ..ServerOptions::default()
        })
        .await
    }

    fn config(&self) -> ClientConfig {
        config_for(self.addr)
    }
}

/// A session config for `addr` without ICMP, that ends when its connection does (the tests of
/// reconnection turn that on).
fn config_for(addr: SocketAddr) -> ClientConfig {
    ClientConfig {
        ping: None,
        reconnect: None,
        ..ClientConfig::new(ServerAddr::plain(addr.ip().to_string(), addr.port()))
    }
}

/// No ICMP for the session: its pinger is refused like a process without ICMP rights.
fn no_pinger() -> FakePinger {
    FakePinger::always(Answer::NotPermitted)
}

async fn connect(config: ClientConfig, pinger: FakePinger) -> Client {
    tokio::time::timeout(WAIT, client::connect(&Tcp, pinger, config))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Waits for an event equal to `expected`.
async fn expect_event(c: &mut Client, who: &str, expected: Event) {
    wait_for(c, who, |ev| (*ev == expected).then_some(())).await
}

/// The next event, whatever it is.
async fn next_event(c: &mut Client, who: &str) -> Option<Event> {
    tokio::time::timeout(WAIT, c.events.recv())
        .await
        .unwrap_or_else(|_| panic!("{who}: no event within {WAIT:?}"))
}

/// Waits for the session's last event and checks that the channel closes after it.
async fn expect_end(c: &mut Client, who: &str) -> Disconnect {
    let why = wait_for(c, who, |ev| match ev {
        Event::Disconnected(why) => Some(why.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        next_event(c, who).await,
        None,
        "{who}: nothing after Disconnected"
    );
    why
}

async fn send(c: &Client, cmd: Command) {
    c.commands.send(cmd).await.expect("the session is running");
}

/// Connects and registers `name`; returns once the member list of `#lobby` arrived.
async fn user(server: &TestServer, name: &str) -> Client {
    let mut c = connect(server.config(), no_pinger()).await;
    send(&c, Command::Nick(name.into())).await;
    expect_event(
        &mut c,
        name,
        Event::Registered {
            name: name.into(),
            server: "parla.local".into(),
        },
    )
    .await;
    wait_for(&mut c, name, |ev| match ev {
        Event::Members { room, .. } if room == "#lobby" => Some(()),
        _ => None,
    })
    .await;
    c
}

fn members(names: &[&str]) -> Event {
    Event::Members {
        room: "#lobby".into(),
        members: names.iter().map(|n| Member::new(*n)).collect(),
        complete: true,
    }
}

/// The list of a room too large for the server to send on join: us and who was seen speaking.
fn seen(names: &[&str]) -> Event {
    Event::Members {
        room: "#lobby".into(),
        members: names.iter().map(|n| Member::new(*n)).collect(),
        complete: false,
    }
}

#[tokio::test]
async fn registering_joins_the_lobby_and_lists_its_members() {
    let server = TestServer::without_flood_control().await;
    let mut alice = connect(server.config(), no_pinger()).await;
    assert_eq!(alice.server, server.addr);
    send(&alice, Command::Nick("alice".into())).await;
    expect_event(
        &mut alice,
        "alice",
        Event::Registered {
            name: "alice".into(),
            server: "parla.local".into(),
        },
    )
    .await;
    expect_event(
        &mut alice,
        "alice",
        Event::Joined {
            room: "#lobby".into(),
        },
    )
    .await;
    assert_eq!(
        next_event(&mut alice, "alice").await,
        Some(members(&["alice"]))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_refused_name_can_be_replaced_by_another() {
    let server = TestServer::without_flood_control().await;
    let _alice = user(&server, "alice").await;
    let mut bob = connect(server.config(), no_pinger()).await;
    for taken in ["alice", "ALICE"] {
        send(&bob, Command::Nick(taken.into())).await;
        let refused = wait_for(&mut bob, "bob", |ev| match ev {
            Event::NameRefused { .. } | Event::Registered { .. } => Some(ev.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            refused,
            Event::NameRefused {
                name: taken.into(),
                reason: "Nickname is already in use; pick another name".into(),
            }
        );
    }
    send(&bob, Command::Nick("bob".into())).await;
    expect_event(
        &mut bob,
        "bob",
        Event::Registered {
            name: "bob".into(),
            server: "parla.local".into(),
        },
    )
    .await;
    expect_event(&mut bob, "bob", members(&["alice", "bob"])).await;
    server.stop().await;
}

#[tokio::test]
async fn what_one_says_the_other_receives() {
    let server = TestServer::without_flood_control().await;
    let mut alice = user(&server, "alice").await;
    let mut bob = user(&server, "bob").await;

    send(&alice, Command::Say("hello bob".into())).await;
    let got = wait_for(&mut bob, "bob", |ev| match ev {
        Event::Message(Said { .. }) => Some(ev.clone()),
        _ => None,
    })
    .await;
    let Event::Message(Said {
        from,
        target,
        text,
        kind,
        own,
        time,
        id,
    }) = got
    else {
        unreachable!()
    };
    assert_eq!(
        (from.as_str(), target.as_str(), text.as_str(), kind, own),
        ("alice", "#lobby", "hello bob", MessageKind::Normal, false)
    );
    // The session asks for server-time: every message carries the server's timestamp.
    assert!(time.is_some_and(|t| t.ends_with('Z')));
    // ... and for message-tags: every message carries the server's id for it.
    assert!(id.is_some_and(|id| !id.is_empty()));
    // ... and for echo-message: the sender sees its own message, marked as such.
    let echo = wait_for(&mut alice, "alice", |ev| match ev {
        Event::Message(Said { own, text, .. }) => Some((*own, text.clone())),
        _ => None,
    })
    .await;
    assert_eq!(echo, (true, "hello bob".to_owned()));

    send(&alice, Command::Action("waves".into())).await;
    let action = wait_for(&mut bob, "bob", |ev| match ev {
        Event::Message(Said { kind, text, .. }) => Some((*kind, text.clone())),
        _ => None,
    })
    .await;
    assert_eq!(action, (MessageKind::Action, "waves".to_owned()));

    send(
        &alice,
        Command::Msg {
            to: "bob".into(),
            text: "psst".into(),
        },
    )
    .await;
    let direct = wait_for(&mut bob, "bob", |ev| match ev {
        Event::Message(Said {
            from, target, text, ..
        }) => Some((from.clone(), target.clone(), text.clone())),
        _ => None,
    })
    .await;
    assert_eq!(direct, ("alice".into(), "bob".into(), "psst".into()));
    server.stop().await;
}

#[tokio::test]
async fn members_follow_joins_and_quits() {
    let server = TestServer::without_flood_control().await;
    let mut alice = user(&server, "alice").await;
    let mut bob = user(&server, "bob").await;
    expect_event(
        &mut alice,
        "alice",
        Event::UserJoined {
            room: "#lobby".into(),
            name: "bob".into(),
        },
    )
    .await;
    assert_eq!(
        next_event(&mut alice, "alice").await,
        Some(members(&["alice", "bob"]))
    );

    send(&bob, Command::Quit(Some("bye".into()))).await;
    assert_eq!(expect_end(&mut bob, "bob").await, Disconnect::Quit);
    expect_event(
        &mut alice,
        "alice",
        Event::UserQuit {
            name: "bob".into(),
            reason: "Quit: bye".into(),
        },
    )
    .await;
    assert_eq!(
        next_event(&mut alice, "alice").await,
        Some(members(&["alice"]))
    );
    server.stop().await;
}

#[tokio::test]
async fn in_a_room_too_large_to_list_speakers_are_added_and_names_fetches_everyone() {
    // Past two members the default room no longer sends its list on join.
    let server = TestServer::start(ServerOptions {
        flood: None,
        core: parla_room::Config {
            quiet_joins_above: Some(2),
            ..parla_room::Config::default()
        },
        ..ServerOptions::default()
    })
    .await;
    let alice = user(&server, "alice").await;
    let _bob = user(&server, "bob").await;
    let mut carol = connect(server.config(), no_pinger()).await;
    send(&carol, Command::Nick("carol".into())).await;
    let first = wait_for(&mut carol, "carol", |ev| {
        matches!(ev, Event::Members { .. }).then(|| ev.clone())
    })
    .await;
    assert_eq!(
        first,
        seen(&["carol"]),
        "only herself, and marked incomplete"
    );
    // The room's recent past (none) comes before anything said now.
    wait_for(&mut carol, "carol", |ev| {
        matches!(ev, Event::History { .. }).then_some(())
    })
    .await;

    send(&alice, Command::Say("hello".into())).await;
    assert_eq!(
        next_event(&mut carol, "carol").await,
        Some(seen(&["alice", "carol"])),
        "whoever speaks is a member"
    );
    assert!(matches!(
        next_event(&mut carol, "carol").await,
        Some(Event::Message(Said { from, .. })) if from == "alice"
    ));

    send(&carol, Command::Names).await;
    assert_eq!(
        next_event(&mut carol, "carol").await,
        Some(members(&["alice", "bob", "carol"])),
        "NAMES brings the whole list, complete"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_shutdown_is_announced_then_ends_the_session() {
    let server = TestServer::without_flood_control().await;
    let mut alice = user(&server, "alice").await;
    server.stop().await;
    expect_event(
        &mut alice,
        "alice",
        Event::ServerInfo {
            text: "Server is shutting down. Goodbye!".into(),
        },
    )
    .await;
    assert_eq!(
        next_event(&mut alice, "alice").await,
        Some(Event::ServerShutdown {
            message: "Server shutting down".into()
        })
    );
    assert_eq!(
        next_event(&mut alice, "alice").await,
        Some(Event::Disconnected(Disconnect::ServerShutdown))
    );
    assert_eq!(next_event(&mut alice, "alice").await, None);
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_refused_and_names_the_address() {
    // A port that was just free: bind, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config_for(SocketAddr::from((LOCALHOST, port)));
    let err = tokio::time::timeout(WAIT, client::connect(&Tcp, no_pinger(), config))
        .await
        .expect("fails in time")
        .expect_err("nothing listens there");
    let text = err.to_string();
    match err {
        ConnectError::Refused { addr } => {
            assert_eq!(addr.to_string(), format!("127.0.0.1:{port}"))
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(
        text.starts_with(&format!(
            "could not connect to 127.0.0.1:{port}: the connection was refused"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn unanswered_icmp_pings_end_the_session_after_max_misses() {
    let server = TestServer::without_flood_control().await;
    let mut bob = user(&server, "bob").await;
    // Replies (1 ms) until the test says the server's IP stops answering.
    let pinger = FakePinger::always(Answer::Reply(Duration::from_millis(1)));
    let mut config = server.config();
    config.ping = Some(PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        max_misses: 2,
    });
    let mut alice = connect(config, pinger.clone()).await;
    send(&alice, Command::Nick("alice".into())).await;
    expect_event(&mut alice, "alice", members(&["alice", "bob"])).await;
    // Pings go out every 100 ms; while they are answered, they are reported as replies.
    wait_for(&mut alice, "alice", |ev| {
        matches!(ev, Event::PingReply { .. }).then_some(())
    })
    .await;

    // The server's IP stops answering.
    pinger.set(Answer::Timeout);
    let mut misses = Vec::new();
    let why = loop {
        match next_event(&mut alice, "alice").await {
            Some(Event::PingMissed { consecutive, error }) => {
                assert!(error.starts_with("no echo reply from 127.0.0.1"), "{error}");
                misses.push(consecutive);
            }
            Some(Event::PingReply { .. }) => assert!(misses.is_empty(), "a reply after a miss"),
            // The join's page of history may come after the first pings (a loaded machine:
            // CI rehearsal run62).
            Some(Event::History { .. }) => {}
            Some(Event::Disconnected(why)) => break why,
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("ended without Disconnected"),
        }
    };
    assert_eq!(misses, [1, 2]);
    assert_eq!(
        why,
        Disconnect::PingFailed {
            target: LOCALHOST,
            misses: 2
        }
    );
    assert_eq!(next_event(&mut alice, "alice").await, None);
    // It said goodbye on its way out.
    expect_event(
        &mut bob,
        "bob",
        Event::UserQuit {
            name: "alice".into(),
            reason: "Quit: Ping to server failed".into(),
        },
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn without_icmp_rights_the_session_reports_it_and_stays_up() {
    let server = TestServer::without_flood_control().await;
    let mut bob = user(&server, "bob").await;
    let mut config = server.config();
    config.ping = Some(PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        max_misses: 2,
    });
    let mut alice = connect(config, no_pinger()).await;
    send(&alice, Command::Nick("alice".into())).await;
    // The refusal (at the first ping, right after connecting) races with registering.
    let (mut reason, mut joined) = (None, false);
    while reason.is_none() || !joined {
        wait_for(&mut alice, "alice", |ev| match ev {
            Event::PingUnavailable { reason: r } => {
                assert!(reason.replace(r.clone()).is_none(), "reported once");
                Some(())
            }
            ev if *ev == members(&["alice", "bob"]) => {
                joined = true;
                Some(())
            }
            _ => None,
        })
        .await;
    }
    let reason = reason.unwrap();
    assert!(
        reason.starts_with("this process may not send IPv4 ICMP echo requests"),
        "{reason}"
    );
    send(&alice, Command::Say("still here".into())).await;
    let text = wait_for(&mut bob, "bob", |ev| match ev {
        Event::Message(Said { from, text, .. }) if from == "alice" => Some(text.clone()),
        _ => None,
    })
    .await;
    assert_eq!(text, "still here");
    // Nothing ended the session: it leaves only when told to.
    send(&alice, Command::Quit(None)).await;
    assert_eq!(expect_end(&mut alice, "alice").await, Disconnect::Quit);
    server.stop().await;
}

/// A scripted server for the IRC-PING fallback: accepts the session's connection and welcomes
/// it as `alice` in `#lobby`, then lets the test read and answer lines (it answers no PING on
/// its own).
async fn fake_server(listener: &tokio::net::TcpListener) -> RawClient {
    let mut fake = RawClient::accept(listener, "fake server").await;
    assert_eq!(fake.line().await, "CAP LS 302");
    fake.send("CAP * LS :").await;
    fake.expect_prefix("USER ").await;
    fake.send(":fake 001 alice :Welcome").await;
    fake.expect_prefix("JOIN #lobby").await;
    fake.send(":alice!~a@h JOIN #lobby").await;
    fake
}

/// A session (as `alice`) welcomed into `#lobby` by a [`fake_server`] on `listener`.
async fn welcomed(listener: &tokio::net::TcpListener, config: ClientConfig) -> (Client, RawClient) {
    let mut alice = connect(config, no_pinger()).await;
    send(&alice, Command::Nick("alice".into())).await;
    let fake = fake_server(listener).await;
    expect_event(
        &mut alice,
        "alice",
        Event::Joined {
            room: "#lobby".into(),
        },
    )
    .await;
    (alice, fake)
}

/// A session for `listener` that reconnects after 50 ms, then twice as long each try up to `max`.
fn reconnecting(listener: &tokio::net::TcpListener, max: Duration) -> ClientConfig {
    let mut config = config_for(listener.local_addr().unwrap());
    config.reconnect = Some(client::Reconnect {
        first: Duration::from_millis(50),
        max,
    });
    config
}

#[tokio::test]
async fn without_icmp_a_quiet_server_is_watched_with_irc_ping() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = config_for(listener.local_addr().unwrap());
    config.session.irc_ping_interval_ms = 100;
    config.session.irc_ping_timeout_ms = 100;
    let (mut alice, mut fake) = welcomed(&listener, config).await;

    // Answered PINGs keep the session up, round after round.
    for _ in 0..3 {
        assert_eq!(fake.line().await, "PING :parla-liveness");
        fake.send(":fake PONG fake :parla-liveness").await;
    }
    send(&alice, Command::Say("hi".into())).await;
    assert_eq!(fake.expect_prefix("PRIVMSG").await, "PRIVMSG #lobby :hi");

    // An unanswered one ends it.
    assert_eq!(fake.line().await, "PING :parla-liveness");
    let why = expect_end(&mut alice, "alice").await;
    let Disconnect::ServerNotResponding { silent } = why else {
        panic!("expected ServerNotResponding, got {why:?}");
    };
    assert!(silent >= Duration::from_millis(200), "{silent:?}");
}

#[tokio::test]
async fn a_lost_connection_is_made_again_and_the_session_carries_on() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = reconnecting(&listener, Duration::from_millis(200));
    let (mut alice, fake) = welcomed(&listener, config).await;
    // The link breaks: the client says it will try again, and when.
    drop(fake);
    let (after, attempt) = wait_for(&mut alice, "alice", |ev| match ev {
        Event::Reconnecting { after, attempt, .. } => Some((*after, *attempt)),
        _ => None,
    })
    .await;
    assert_eq!(attempt, 1);
    assert!(
        after >= Duration::from_millis(50) && after <= Duration::from_millis(60),
        "{after:?}"
    );
    // Typed meanwhile: refused with a word, not lost silently.
    send(&alice, Command::Say("anyone?".into())).await;
    wait_for(&mut alice, "alice", |ev| match ev {
        Event::ServerError { text } if text.contains("reconnecting") => Some(()),
        _ => None,
    })
    .await;
    // The new connection asks for the same name at once; while the server still holds it, the
    // name with _ added; then the same room.
    let mut again = RawClient::accept(&listener, "fake server").await;
    assert_eq!(again.line().await, "CAP LS 302");
    assert_eq!(again.line().await, "NICK :alice");
    again.expect_prefix("USER ").await;
    again
        .send(":fake 433 * alice :Nickname is already in use")
        .await;
    assert_eq!(again.line().await, "NICK :alice_");
    again.send(":fake 001 alice_ :Welcome").await;
    assert_eq!(again.line().await, "JOIN #lobby");
    expect_event(
        &mut alice,
        "alice",
        Event::Registered {
            name: "alice_".into(),
            server: "fake".into(),
        },
    )
    .await;
    // A quit now is a quit: no more connections.
    send(&alice, Command::Quit(None)).await;
    assert_eq!(again.line().await, "QUIT :Leaving");
    drop(again);
    assert_eq!(expect_end(&mut alice, "alice").await, Disconnect::Quit);
}

#[tokio::test]
async fn a_reconnection_turned_away_before_registering_is_tried_again_later() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = reconnecting(&listener, Duration::from_millis(400));
    let (mut alice, fake) = welcomed(&listener, config).await;
    drop(fake);
    let attempt_of = |ev: &Event| match ev {
        Event::Reconnecting { after, attempt, .. } => Some((*after, *attempt)),
        _ => None,
    };
    assert_eq!(wait_for(&mut alice, "alice", attempt_of).await.1, 1);
    // A server cut off from its cluster turns the new connection away: one more try, after a
    // longer wait, not the end of the session.
    let mut turned = RawClient::accept(&listener, "fake server").await;
    assert_eq!(turned.line().await, "CAP LS 302");
    turned
        .send("ERROR :Closing Link: this server cannot reach the chat network right now; try again in a moment")
        .await;
    drop(turned);
    let (after, attempt) = wait_for(&mut alice, "alice", attempt_of).await;
    assert_eq!(attempt, 2);
    assert!(after >= Duration::from_millis(100), "{after:?}");
    // The try after it carries on the same session: the same name, then the same room.
    let mut again = RawClient::accept(&listener, "fake server").await;
    assert_eq!(again.line().await, "CAP LS 302");
    assert_eq!(again.line().await, "NICK :alice");
    again.expect_prefix("USER ").await;
    again.send(":fake 001 alice :Welcome").await;
    assert_eq!(again.line().await, "JOIN #lobby");
    // Once registered, an ERROR is the server's word: the session ends there.
    again
        .send("ERROR :Closing Link: alice (Killed (oper (spam)))")
        .await;
    drop(again);
    let end = expect_end(&mut alice, "alice").await;
    assert!(
        matches!(&end, Disconnect::ClosedByServer { reason } if reason.contains("Killed")),
        "{end:?}"
    );
}
