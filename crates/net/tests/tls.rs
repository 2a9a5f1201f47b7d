//! TLS end to end on real TCP: the server's TLS port beside its plain one, the client's three
//! ways of trusting a server (a pinned fingerprint, a CA file, the system's roots) and the
//! errors a person sees when trust fails, a plain client on the TLS port, and certificate
//! reloads that leave connections up.
//!
//! Every wait is bounded by [`WAIT`]; nothing sleeps.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{WAIT, init_tracing, wait_for};
use parla_net::addr::ServerAddr;
use parla_net::client::{
    self, Client, ClientConfig, Command, ConnectError, Event, MessageKind, Said,
};
use parla_net::server::ServerOptions;
use parla_net::tls::{self, Fingerprint, ServerTls, TlsConnectError, Trust};
use parla_net::{LocalServer, Tcp};
use parla_testkit::{Answer, FakePinger};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A certificate and key written as PEM files in a temporary directory.
struct CertFiles {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    /// A fresh self-signed certificate for localhost.
    fn self_signed() -> CertFiles {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let files = CertFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            dir,
        };
        files.replace_with_self_signed();
        files
    }

    /// Writes a new self-signed certificate over the old files.
    fn replace_with_self_signed(&self) {
        let (cert, key) =
            tls::self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("a certificate");
        write(&self.cert, &cert);
        write(&self.key, &key);
    }

    fn fingerprint(&self) -> Fingerprint {
        ServerTls::load(&self.cert, &self.key)
            .expect("loads")
            .fingerprint()
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write a PEM file");
}

/// A private certificate authority and a server certificate it signed for localhost.
fn ca_signed() -> (CertFiles, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("server key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&leaf_key, &issuer)
        .expect("server certificate");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files = CertFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        dir,
    };
    write(&files.cert, &leaf.pem());
    write(&files.key, &leaf_key.serialize_pem());
    let ca = files.dir.path().join("ca.pem");
    write(&ca, &ca_cert.pem());
    (files, ca)
}

async fn serve(tls: &ServerTls) -> LocalServer {
    init_tracing();
    LocalServer::start_tls(
        ServerOptions {
            flood: None,
            ..ServerOptions::default()
        },
        tls,
    )
    .await
    .expect("bind two loopback ports")
}

/// A session config for `addr` (`host` as the name to verify), no ICMP.
fn config(host: &str, addr: SocketAddr, tls: bool, trust: Trust) -> ClientConfig {
    let mut server = ServerAddr::plain(host, addr.port());
    server.tls = tls;
    ClientConfig {
        ping: None,
        trust,
        ..ClientConfig::new(server)
    }
}

async fn try_connect(config: ClientConfig) -> Result<Client, ConnectError> {
    tokio::time::timeout(
        WAIT,
        client::connect(&Tcp, FakePinger::always(Answer::NotPermitted), config),
    )
    .await
    .expect("connects or fails in time")
}

/// Connects, registers `name` and waits until it is in `#lobby`.
async fn user(config: ClientConfig, name: &str) -> Client {
    let mut c = try_connect(config).await.expect("connects");
    c.commands
        .send(Command::Nick(name.into()))
        .await
        .expect("session");
    wait_for(&mut c, name, |ev| {
        matches!(ev, Event::Members { room, .. } if room == "#lobby").then_some(())
    })
    .await;
    c
}

/// `from` says `text` in `#lobby` and `to` receives it.
async fn says(from: &Client, to: &mut Client, from_name: &str, text: &str) {
    from.commands
        .send(Command::Say(text.into()))
        .await
        .expect("session");
    wait_for(to, "recipient", |ev| match ev {
        Event::Message(Said {
            from: sender,
            text: got,
            kind: MessageKind::Normal,
            ..
        }) if sender == from_name && got == text => Some(()),
        _ => None,
    })
    .await;
}

fn tls_error(result: Result<Client, ConnectError>) -> TlsConnectError {
    match result {
        Err(ConnectError::Tls { cause, .. }) => cause,
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("expected a TLS error, but it connected"),
    }
}

#[tokio::test]
async fn a_client_pinning_the_servers_fingerprint_chats_with_a_plain_client() {
    let files = CertFiles::self_signed();
    let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
    let server = serve(&tls).await;
    let tls_addr = server.tls_addr().expect("a TLS port");
    let pin = Trust::Pinned(files.fingerprint());
    let mut alice = user(config("127.0.0.1", tls_addr, true, pin), "alice").await;
    let mut bob = user(
        config("127.0.0.1", server.addr(), false, Trust::System),
        "bob",
    )
    .await;
    says(&alice, &mut bob, "alice", "over TLS").await;
    says(&bob, &mut alice, "bob", "in plain text").await;
}

#[tokio::test]
async fn a_ca_file_verifies_a_server_certificate_it_signed() {
    let (files, ca) = ca_signed();
    let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
    let server = serve(&tls).await;
    let tls_addr = server.tls_addr().expect("a TLS port");
    let trusted = config("localhost", tls_addr, true, Trust::CaFile(ca.clone()));
    let mut alice = user(trusted, "alice").await;
    let mut bob = user(
        config("localhost", tls_addr, true, Trust::CaFile(ca)),
        "bob",
    )
    .await;
    says(&alice, &mut bob, "alice", "verified").await;
    says(&bob, &mut alice, "bob", "verified too").await;
}

#[tokio::test]
async fn the_ca_checks_the_name_too() {
    let (files, ca) = ca_signed();
    let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
    let server = serve(&tls).await;
    let tls_addr = server.tls_addr().expect("a TLS port");
    // Signed for "localhost", reached as 127.0.0.1.
    let err = tls_error(try_connect(config("127.0.0.1", tls_addr, true, Trust::CaFile(ca))).await);
    let TlsConnectError::Untrusted { fingerprint, .. } = &err else {
        panic!("expected an untrusted certificate, got {err}");
    };
    assert_eq!(*fingerprint, files.fingerprint());
}

#[tokio::test]
async fn an_untrusted_server_is_refused_with_the_fingerprint_to_pin() {
    let files = CertFiles::self_signed();
    let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
    let server = serve(&tls).await;
    let tls_addr = server.tls_addr().expect("a TLS port");
    // Trusting some other authority (the system's roots would do the same, where there are any).
    let (_other, other_ca) = ca_signed();
    let err =
        tls_error(try_connect(config("localhost", tls_addr, true, Trust::CaFile(other_ca))).await);
    let shown = files.fingerprint().to_string();
    let message = err.to_string();
    assert!(
        matches!(err, TlsConnectError::Untrusted { fingerprint, .. } if fingerprint == files.fingerprint()),
        "{message}"
    );
    assert!(
        message.contains(&format!("--tls-fingerprint {shown}")),
        "says how to pin it: {message}"
    );
    // And the fingerprint shown, pinned, is accepted.
    let pinned = Trust::Pinned(shown.parse().expect("the shown fingerprint parses"));
    user(config("localhost", tls_addr, true, pinned), "carol").await;
}

#[tokio::test]
async fn a_wrong_pin_is_refused_naming_both_fingerprints() {
    let files = CertFiles::self_signed();
    let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
    let server = serve(&tls).await;
    let other = CertFiles::self_signed().fingerprint();
    let tls_addr = server.tls_addr().expect("a TLS port");
    let err =
        tls_error(try_connect(config("127.0.0.1", tls_addr, true, Trust::Pinned(other))).await);
    let message = err.to_string();
    assert!(
        matches!(err, TlsConnectError::WrongPin { got, pinned } if got == files.fingerprint() && pinned == other),
        "{message}"
    );
    assert!(
        message.contains(&files.fingerprint().to_string()),
        "{message}"
    );
    assert!(message.contains(&other.to_string()), "{message}");
}

#[tokio::test]
async fn a_tls_client_on_the_plain_port_is_told_to_check_the_port() {
    let files = CertFiles::self_signed();
    let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
    let server = serve(&tls).await;
    let pin = Trust::Pinned(files.fingerprint());
    let err = tls_error(try_connect(config("127.0.0.1", server.addr(), true, pin)).await);
    assert!(
        matches!(err, TlsConnectError::Handshake { .. }),
        "no certificate was seen: {err}"
    );
    assert!(err.to_string().contains("TLS port"), "{err}");
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_is_told_in_plain_text() {
    let files = CertFiles::self_signed();
    let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
    let server = serve(&tls).await;
    let mut stream = tokio::net::TcpStream::connect(server.tls_addr().expect("a TLS port"))
        .await
        .expect("connect");
    stream
        .write_all(b"NICK plain\r\nUSER plain 0 * :plain\r\n")
        .await
        .expect("write");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(
        line.starts_with("ERROR :") && line.contains("this port speaks TLS"),
        "{line:?}"
    );
    line.clear();
    let eof = tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .expect("closed in time")
        .expect("read");
    assert_eq!(eof, 0, "then closed: {line:?}");
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_connections_and_keeps_the_old_ones() {
    let files = CertFiles::self_signed();
    let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
    let server = serve(&tls).await;
    let tls_addr = server.tls_addr().expect("a TLS port");
    let old = files.fingerprint();
    let mut alice = user(
        config("127.0.0.1", tls_addr, true, Trust::Pinned(old)),
        "alice",
    )
    .await;

    files.replace_with_self_signed();
    let new = files.fingerprint();
    assert_ne!(old, new);
    assert_eq!(tls.reload().expect("reloads"), new);
    assert_eq!(tls.fingerprint(), new);

    let err = tls_error(try_connect(config("127.0.0.1", tls_addr, true, Trust::Pinned(old))).await);
    assert!(
        matches!(err, TlsConnectError::WrongPin { got, .. } if got == new),
        "{err}"
    );
    let mut bob = user(
        config("127.0.0.1", tls_addr, true, Trust::Pinned(new)),
        "bob",
    )
    .await;
    // Alice's connection, made with the old certificate, carries on.
    says(&bob, &mut alice, "bob", "after the reload").await;
    says(&alice, &mut bob, "alice", "still here").await;
}

#[tokio::test]
async fn a_reload_of_a_broken_file_keeps_the_certificate_in_use() {
    let files = CertFiles::self_signed();
    let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
    let server = serve(&tls).await;
    let tls_addr = server.tls_addr().expect("a TLS port");
    let old = files.fingerprint();
    write(&files.key, "not a key\n");
    let err = tls.reload().expect_err("the key is broken");
    let message = err.to_string();
    assert!(
        message.contains("key.pem") && message.contains("--tls-key"),
        "{message}"
    );
    assert_eq!(tls.fingerprint(), old);
    user(
        config("127.0.0.1", tls_addr, true, Trust::Pinned(old)),
        "alice",
    )
    .await;
}

#[test]
fn setup_errors_name_the_file_and_the_flag() {
    let files = CertFiles::self_signed();
    let missing = files.dir.path().join("missing.pem");
    let err = ServerTls::load(&missing, &files.key).expect_err("no such file");
    assert!(
        err.to_string().contains("missing.pem") && err.to_string().contains("--tls-cert"),
        "{err}"
    );
    // A key that is not the certificate's.
    let other = CertFiles::self_signed();
    let err = ServerTls::load(&files.cert, &other.key).expect_err("mismatched");
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[test]
fn fingerprints_read_as_people_paste_them() {
    let fp = CertFiles::self_signed().fingerprint();
    let colons = fp.to_string();
    assert_eq!(colons.len(), 32 * 3 - 1);
    let bare = colons.replace(':', "").to_lowercase();
    for text in [
        colons.clone(),
        bare.clone(),
        format!("sha256:{bare}"),
        format!("SHA256 Fingerprint={colons}"),
    ] {
        assert_eq!(text.parse::<Fingerprint>(), Ok(fp), "{text}");
    }
    for bad in [
        "",
        "abcd",
        &bare[1..],
        &format!("{bare}00"),
        &format!("g{}", &bare[1..]),
    ] {
        let err = bad.parse::<Fingerprint>().expect_err(bad);
        assert!(err.to_string().contains("64 hexadecimal digits"), "{err}");
    }
}
