//! A real `nats-server` with JetStream for the cluster's tests (Debian's package; under
//! `CI=true` its absence fails the test, see [`crate::require`]).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::WAIT;

/// A `nats-server` with JetStream on a loopback port, its store in a temporary directory.
pub struct Nats {
    child: Child,
    port: u16,
    store: tempfile::TempDir,
}

impl Nats {
    /// `None` (the test skips) if `nats-server` is not installed, outside CI.
    pub fn start() -> Option<Nats> {
        if !crate::require_tool("nats-server") {
            return None;
        }
        let store = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        Some(Nats::start_on(port, store))
    }

    pub fn start_on(port: u16, store: tempfile::TempDir) -> Nats {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not listen within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats { child, port, store }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops NATS (SIGKILL), keeping its store.
    pub fn stop(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let store = std::mem::replace(&mut self.store, tempfile::tempdir().unwrap());
        (port, store)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
