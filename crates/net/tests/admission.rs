//! The per-address limits on real TCP, from several 127.x source addresses: connections at
//! once, new connections per minute, connections still registering, and trusted ranges.
//!
//! Every wait is bounded by [`WAIT`].

mod common;

use std::net::{IpAddr, SocketAddr};

use common::{TestServer, WAIT};
use parla_net::server::{FloodControl, Limits, ServerOptions};
use parla_testkit::RawClient;
use tokio::net::TcpSocket;

/// A raw client connected from the source address `from` (any 127.x works on loopback; `::1`
/// for IPv6).
async fn connect_from(server: SocketAddr, from: &str, label: &str) -> RawClient {
    let from: IpAddr = from.parse().unwrap();
    let socket = match from {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind a loopback source address");
    let stream = tokio::time::timeout(WAIT, socket.connect(server))
        .await
        .expect("connect in time")
        .expect("connect");
    RawClient::from_stream(stream, label)
}

/// Registers `nick` and waits for the welcome.
async fn join_from(server: SocketAddr, from: &str, nick: &str) -> RawClient {
    let mut c = connect_from(server, from, nick).await;
    c.register(nick).await;
    c
}

/// Expects the server to refuse `c` with an `ERROR` containing `why`, then close.
async fn expect_refused(c: &mut RawClient, why: &str) {
    let lines = c.expect_eof().await;
    assert!(
        lines.len() == 1 && lines[0].starts_with("ERROR :Closing Link: ") && lines[0].contains(why),
        "{lines:?}"
    );
}

async fn server(limits: Limits) -> TestServer {
    TestServer::start(ServerOptions {
        limits,
        ..ServerOptions::default()
    })
    .await
}

#[tokio::test]
async fn one_address_holds_at_most_max_per_ip_connections() {
    let s = server(Limits {
        per_ip: 3,
        connects: None,
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(join_from(s.addr, "127.0.0.2", &format!("held{i}")).await);
    }
    let mut fourth = connect_from(s.addr, "127.0.0.2", "fourth").await;
    expect_refused(
        &mut fourth,
        "too many connections from your address (at most 3",
    )
    .await;
    // Another address is not affected, and sees everyone who got in.
    let mut other = join_from(s.addr, "127.0.0.3", "other").await;
    other.send("NAMES #lobby").await;
    let names = other.expect_numeric("353").await;
    for i in 0..3 {
        assert!(names.contains(&format!("held{i}")), "{names}");
    }
    // A place comes back when a connection ends: once its QUIT was seen and its task ended.
    let mut gone = held.pop().unwrap();
    gone.send("QUIT :making room").await;
    gone.expect_eof().await;
    other.expect_has(":held2!").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut again = connect_from(s.addr, "127.0.0.2", "again").await;
        again.send_registration("again").await;
        let first = again.line().await;
        if !first.starts_with("ERROR") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back: {first}"
        );
        // The ended task gives its place back just after the QUIT: try again shortly.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_address_connecting_too_fast_is_told_to_wait() {
    let s = server(Limits {
        per_ip: 0,
        connects: Some(FloodControl {
            burst: 3,
            per_second: 1.0 / 600.0,
        }),
        ..Limits::default()
    })
    .await;
    for i in 0..3 {
        let mut c = join_from(s.addr, "127.0.0.4", &format!("quick{i}")).await;
        c.send("QUIT").await;
        c.expect_eof().await;
    }
    let mut c = connect_from(s.addr, "127.0.0.4", "too-quick").await;
    expect_refused(&mut c, "too many new connections from your address").await;
    // Others still get in.
    join_from(s.addr, "127.0.0.5", "patient").await;
}

#[tokio::test]
async fn connections_that_never_register_are_capped() {
    let s = server(Limits {
        max_unregistered: 2,
        ..Limits::default()
    })
    .await;
    let mut idle = vec![
        connect_from(s.addr, "127.0.0.6", "idle0").await,
        connect_from(s.addr, "127.0.0.7", "idle1").await,
    ];
    // Make sure the server has taken both (it answers a PING before registration).
    for c in &mut idle {
        c.send("PING :here").await;
        c.expect_has("PONG").await;
    }
    let mut third = connect_from(s.addr, "127.0.0.8", "idle2").await;
    expect_refused(&mut third, "too many connections are still registering (2)").await;
    // One registers: a newcomer fits again.
    idle[0].register("settled").await;
    join_from(s.addr, "127.0.0.8", "newcomer").await;
}

#[tokio::test]
async fn trusted_ranges_are_exempt() {
    let s = server(Limits {
        per_ip: 1,
        connects: Some(FloodControl {
            burst: 1,
            per_second: 1.0 / 600.0,
        }),
        trusted: vec!["127.0.1.0/24".parse().unwrap()],
        ..Limits::default()
    })
    .await;
    let mut school = Vec::new();
    for i in 0..5 {
        school.push(join_from(s.addr, "127.0.1.1", &format!("pupil{i}")).await);
    }
    // Outside the range the limits hold.
    let _one = join_from(s.addr, "127.0.2.1", "home").await;
    let mut two = connect_from(s.addr, "127.0.2.1", "home2").await;
    expect_refused(&mut two, "too many").await;
}

/// A server on `bind` (IPv6) with `limits`, run directly on the listener (the test servers bind
/// 127.0.0.1); `None` if this machine has no IPv6 loopback.
async fn server_v6(
    bind: &str,
    limits: Limits,
) -> Option<(SocketAddr, tokio_util::sync::CancellationToken)> {
    use parla_net::transport::{Listener, Transport};
    let listener = match parla_net::Tcp.bind(bind.parse().unwrap()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("skipped: cannot listen on {bind} ({e}): no IPv6 here");
            return None;
        }
    };
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let options = ServerOptions {
        limits,
        ..ServerOptions::default()
    };
    tokio::spawn(parla_net::run(listener, options, stop.clone()));
    Some((addr, stop))
}

/// Over IPv6 the cap counts the address's /64 (here `::1`'s), end to end.
#[tokio::test]
async fn an_ipv6_address_holds_at_most_max_per_ip_connections() {
    let limits = Limits {
        per_ip: 2,
        connects: None,
        ..Limits::default()
    };
    let Some((addr, stop)) = server_v6("[::1]:0", limits).await else {
        return;
    };
    let mut held = Vec::new();
    for i in 0..2 {
        let mut c = connect_from(addr, "::1", &format!("v6-{i}")).await;
        c.register(&format!("v6-{i}")).await;
        held.push(c);
    }
    let mut third = connect_from(addr, "::1", "v6-third").await;
    expect_refused(
        &mut third,
        "too many connections from your address (at most 2",
    )
    .await;
    stop.cancel();
}

/// On a dual-stack listener, IPv4 clients arrive as IPv4-mapped IPv6 addresses
/// (`::ffff:127.0.0.2`); each is still its own address, not one /64 shared by every IPv4 client.
#[tokio::test]
async fn ipv4_clients_of_a_dual_stack_listener_are_counted_per_address() {
    let limits = Limits {
        per_ip: 2,
        connects: None,
        ..Limits::default()
    };
    let Some((addr, stop)) = server_v6("[::]:0", limits).await else {
        return;
    };
    let v4 = SocketAddr::new("127.0.0.1".parse().unwrap(), addr.port());
    let mut held = Vec::new();
    for i in 0..2 {
        held.push(join_from(v4, "127.0.0.2", &format!("mapped{i}")).await);
    }
    let mut third = connect_from(v4, "127.0.0.2", "mapped-third").await;
    expect_refused(
        &mut third,
        "too many connections from your address (at most 2",
    )
    .await;
    // Another IPv4 address is another address.
    let mut other = join_from(v4, "127.0.0.3", "other").await;
    other.send("NAMES #lobby").await;
    let names = other.expect_numeric("353").await;
    assert!(
        names.contains("mapped0") && names.contains("other"),
        "{names}"
    );
    stop.cancel();
}
