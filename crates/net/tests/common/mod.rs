//! What the TCP test binaries share: an in-process server on an ephemeral port, and the bound on
//! every wait. (Each test binary compiles this module; not all use every item.)
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use parla_net::server::ServerOptions;
use parla_net::{Tcp, Transport};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

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
    shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(options: ServerOptions) -> TestServer {
        init_tracing();
        let listener = Tcp
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.0.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(parla_net::run(listener, options, shutdown.clone()));
        TestServer {
            addr,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Cancels the token and waits (bounded) for `run` to return.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(WAIT, handle)
            .await
            .expect("run returns after the token is cancelled")
            .expect("run does not panic");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}
