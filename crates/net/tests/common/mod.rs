//! What the TCP test binaries share: an in-process server on an ephemeral port, and (from
//! `parla_testkit`) the bound on every wait. (Each test binary compiles this module; not all use every item.)
#![allow(dead_code)]

use std::net::SocketAddr;

use parla_net::LocalServer;
use parla_net::client::{Client, Event};
use parla_net::server::ServerOptions;

pub use parla_testkit::WAIT;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// An in-process server on an ephemeral port. Dropping it cancels the server (so a failing
/// test does not leave it running on the runtime).
pub struct TestServer {
    pub addr: SocketAddr,
    server: LocalServer,
}

impl TestServer {
    pub async fn start(options: ServerOptions) -> TestServer {
        init_tracing();
        let server = LocalServer::start(options).await.expect("bind 127.0.0.1:0");
        TestServer {
            addr: server.addr(),
            server,
        }
    }

    /// Shuts the server down and waits (bounded) for `run` to return.
    pub async fn stop(mut self) {
        self.server.shut_down().await;
    }
}

/// Receives events until `f` picks one (within [`WAIT`]); fails on timeout or when the session
/// ends first, listing what was skipped.
pub async fn wait_for<T>(c: &mut Client, who: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut skipped = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, c.events.recv()).await {
            Err(_) => panic!("{who}: no expected event within {WAIT:?}; got {skipped:#?}"),
            Ok(None) => panic!("{who}: session ended first; got {skipped:#?}"),
            Ok(Some(ev)) => match f(&ev) {
                Some(t) => return t,
                None => skipped.push(ev),
            },
        }
    }
}
