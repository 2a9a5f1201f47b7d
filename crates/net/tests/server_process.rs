//! The real `parla-server` binary: started on `127.0.0.1:0` (the port is read from its
//! `listening addr=…` log line), stopped with SIGINT/SIGTERM while clients are connected.
//!
//! Every process is killed by a guard if the test fails; every wait is bounded by [`WAIT`].

mod process;

use std::net::SocketAddr;

use nix::sys::signal::Signal;
use parla_testkit::{RawClient, WAIT};
use process::Server;

async fn signal_stops_the_server_gracefully(signal: Signal) {
    let mut server = Server::spawn(&["--listen", "127.0.0.1:0"]);
    let addr = server.listening_addr().await;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let mut alice = RawClient::join(addr, "alice").await;
    let mut bob = RawClient::join(addr, "bob").await;
    alice.expect_has(":bob!~bob@127.0.0.1 JOIN #lobby").await;

    server.signal(signal);
    for (client, nick) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        client
            .expect_has(&format!(
                ":parla.local NOTICE {nick} :Server is shutting down. Goodbye!"
            ))
            .await;
        assert_eq!(
            client.next_line().await.as_deref(),
            Some("ERROR :Server shutting down")
        );
        assert_eq!(client.next_line().await, None, "EOF after the ERROR");
    }
    let (status, output) = server.exit().await;
    assert_eq!(status.code(), Some(0), "{output:#?}");
    let name = format!("signal=\"{}\"", signal.as_str());
    assert!(
        output
            .iter()
            .any(|l| l.contains("shutdown requested") && l.contains(&name)),
        "{output:#?}"
    );
    assert!(
        output.iter().any(|l| l.contains("shut down")),
        "{output:#?}"
    );
}

#[tokio::test]
async fn sigint_says_goodbye_to_every_client_and_exits_0() {
    signal_stops_the_server_gracefully(Signal::SIGINT).await;
}

#[tokio::test]
async fn sigterm_says_goodbye_to_every_client_and_exits_0() {
    signal_stops_the_server_gracefully(Signal::SIGTERM).await;
}

#[tokio::test]
async fn a_port_in_use_is_reported_and_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut server = Server::spawn(&["--listen", &addr.to_string()]);
    let (status, output) = server.exit().await;
    assert!(!status.success(), "{status:?}");
    assert!(
        output
            .iter()
            .any(|l| l.contains(&format!("could not listen on {addr}"))),
        "{output:#?}"
    );
    drop(taken);
}

/// The server restarts itself without glibc's per-thread caches (docs/benchmarks.md,
/// attack-200x20), in the same process, under its own name; a `GLIBC_TUNABLES` given to it
/// is left as it is.
#[tokio::test]
async fn the_server_runs_without_glibcs_thread_caches_unless_told_otherwise() {
    for (given, expected) in [
        (None, "GLIBC_TUNABLES=glibc.malloc.tcache_count=0"),
        (
            Some("glibc.malloc.arena_max=2"),
            "GLIBC_TUNABLES=glibc.malloc.arena_max=2",
        ),
    ] {
        let env: Vec<(&str, &str)> = given.map(|g| ("GLIBC_TUNABLES", g)).into_iter().collect();
        let mut server = Server::spawn_with(&["--listen", "127.0.0.1:0"], &env);
        server.listening_addr().await;
        let pid = server.pid.as_raw();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        assert!(
            vars.contains(&expected.as_bytes()),
            "{expected} not in {:?}",
            String::from_utf8_lossy(&environ)
        );
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "parla-server");
        server.signal(Signal::SIGTERM);
        assert!(server.exit().await.0.success());
    }
}

/// A TLS client (pinned to `pin`) registered as `nick` on the binary's TLS port: returns its
/// line reader.
async fn tls_join(
    addr: SocketAddr,
    pin: parla_net::tls::Fingerprint,
    nick: &str,
) -> tokio::io::BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut stream = tokio::time::timeout(
        WAIT,
        parla_net::tls::connect(tcp, "localhost", &parla_net::tls::Trust::Pinned(pin)),
    )
    .await
    .expect("handshake in time")
    .expect("the pinned certificate");
    stream
        .write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes())
        .await
        .expect("write");
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    while !line.contains(&format!(" 001 {nick} ")) {
        line.clear();
        let n = tokio::time::timeout(WAIT, reader.read_line(&mut line))
            .await
            .expect("registered in time")
            .expect("read");
        assert_ne!(n, 0, "closed before the welcome");
    }
    reader
}

/// `parla-server self-signed` writes a certificate the server serves; SIGHUP reloads it (a
/// broken one is logged and the old stays), and connections made before carry on.
#[tokio::test]
async fn the_binary_serves_tls_and_reloads_its_certificate_on_sighup() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut made = Server::spawn(&["self-signed", "--cert", cert_arg, "--key", key_arg]);
    let (status, output) = made.exit().await;
    assert!(status.success(), "{output:#?}");
    let first = parla_net::tls::ServerTls::load(&cert, &key)
        .unwrap()
        .fingerprint();
    assert!(
        output.iter().any(|l| l.contains(&first.to_string())),
        "prints the fingerprint to pin: {output:#?}"
    );

    let mut server = Server::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert_arg,
        "--tls-key",
        key_arg,
    ]);
    let line = server.expect_output("listening for TLS").await;
    assert!(line.contains(&first.to_string()), "{line}");
    let tls_addr: SocketAddr = line
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let mut alice = tls_join(tls_addr, first, "alice").await;

    // A new certificate, then SIGHUP.
    let (new_cert, new_key) = parla_net::tls::self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&cert, new_cert).unwrap();
    std::fs::write(&key, new_key).unwrap();
    let second = parla_net::tls::ServerTls::load(&cert, &key)
        .unwrap()
        .fingerprint();
    server.signal(Signal::SIGHUP);
    let line = server.expect_output("TLS certificate reloaded").await;
    assert!(line.contains(&second.to_string()), "{line}");
    tls_join(tls_addr, second, "bob").await;

    // A broken key: logged, and the second certificate stays.
    std::fs::write(&key, "not a key\n").unwrap();
    server.signal(Signal::SIGHUP);
    server.expect_output("the old one stays in use").await;
    tls_join(tls_addr, second, "carol").await;

    // Alice, connected under the first certificate, is still served.
    alice
        .get_mut()
        .write_all(b"PING :still-here\r\n")
        .await
        .unwrap();
    let mut line = String::new();
    while !line.contains("PONG") {
        line.clear();
        let n = tokio::time::timeout(WAIT, alice.read_line(&mut line))
            .await
            .expect("answered in time")
            .expect("read");
        assert_ne!(n, 0, "alice's connection was closed");
    }
    assert!(line.contains("still-here"), "{line}");
}

/// Durability as the README states it: a message that reached anyone (an echo, a delivery) is
/// in history after the server process is killed outright (`kill -9`) mid-stream and started
/// again on the same directory; and history holds the room's messages in the order sent, with
/// no gap (whatever the server took in but never delivered may be there too, at the end).
#[tokio::test]
async fn every_delivered_message_survives_kill_9_and_a_restart() {
    use tokio::io::AsyncWriteExt;

    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let flags = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--no-flood-control",
        "--room-bytes-per-second",
        "0",
        "--chathistory-max",
        "10000",
    ];
    let mut server = Server::spawn(&flags);
    let addr = server.listening_addr().await;
    let mut bob = RawClient::join(addr, "bob").await;
    // alice talks steadily from a task of her own until the server is gone.
    let mut alice = tokio::net::TcpStream::connect(addr).await.unwrap();
    alice
        .write_all(b"NICK alice\r\nUSER alice 0 * :alice\r\n")
        .await
        .unwrap();
    let talker = tokio::spawn(async move {
        for i in 0..20_000 {
            let line = format!("PRIVMSG #lobby :m{i}\r\n");
            if alice.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
    });
    let mut seen = Vec::new();
    while let Some(line) = bob.next_line().await {
        if let Some((_, _, text)) = parla_testkit::irc::privmsg(&line) {
            seen.push(text);
        }
        if seen.len() == 500 {
            server.signal(Signal::SIGKILL);
        }
    }
    talker.abort();
    assert!(seen.len() >= 500, "bob saw {} messages", seen.len());
    let (status, _) = server.exit().await;
    assert_eq!(status.code(), None, "killed by a signal");

    let mut server = Server::spawn(&flags);
    let addr = server.listening_addr().await;
    let mut carol = RawClient::connect(addr, "carol").await;
    carol.send_registration_for_history("carol").await;
    carol.expect_has(" 366 carol #lobby ").await;
    let kept: Vec<String> = (carol
        .history_page("CHATHISTORY LATEST #lobby * 10000")
        .await)
        .iter()
        .map(|line| parla_testkit::irc::privmsg(line).expect("a message").2)
        .collect();
    let in_order: Vec<String> = (0..kept.len()).map(|i| format!("m{i}")).collect();
    assert_eq!(
        kept, in_order,
        "history is the messages as sent, none missing"
    );
    assert!(
        kept.len() >= seen.len(),
        "bob saw {} messages, history has {}",
        seen.len(),
        kept.len()
    );
    assert_eq!(seen[..], kept[..seen.len()], "what bob saw is in history");
}
