//! A Parla server on a loopback port, running in the background: what tests (and programs that
//! embed Parla) start instead of a `parla-server` process. Dropping it stops the server.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::{ServerOptions, run};
use crate::tls::ServerTls;
use crate::transport::{Both, Listener, Tcp, Transport};

/// How long [`LocalServer::shut_down`] and the drop of an own runtime wait for the server.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// [`run`] on `127.0.0.1` and a free port, in the background.
///
/// [`LocalServer::start`] runs it on the caller's tokio runtime; [`LocalServer::start_own`]
/// gives it a runtime of its own, for callers without one (a GUI test, a blocking test).
/// Dropping it cancels the server, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct LocalServer {
    addr: SocketAddr,
    /// The TLS port, for a server started with [`LocalServer::start_tls`].
    tls_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// Set by [`LocalServer::start_own`].
    runtime: Option<Runtime>,
}

impl LocalServer {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(options: ServerOptions) -> io::Result<LocalServer> {
        let listener = Tcp.bind((Ipv4Addr::LOCALHOST, 0).into()).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, options, shutdown.clone()));
        Ok(LocalServer {
            addr,
            tls_addr: None,
            shutdown,
            task: Some(task),
            runtime: None,
        })
    }

    /// Binds two ports on `127.0.0.1`, plain ([`LocalServer::addr`]) and TLS with `tls`
    /// ([`LocalServer::tls_addr`]), and serves both on the current tokio runtime.
    pub async fn start_tls(options: ServerOptions, tls: &ServerTls) -> io::Result<LocalServer> {
        let plain = Tcp.bind((Ipv4Addr::LOCALHOST, 0).into()).await?;
        let secure = tls.listener(Tcp.bind((Ipv4Addr::LOCALHOST, 0).into()).await?);
        let (addr, tls_addr) = (plain.local_addr()?, secure.local_addr()?);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(Both::new(plain, secure), options, shutdown.clone()));
        Ok(LocalServer {
            addr,
            tls_addr: Some(tls_addr),
            shutdown,
            task: Some(task),
            runtime: None,
        })
    }

    /// Binds `127.0.0.1:0` and serves on a runtime of its own (one worker thread). Must not be
    /// called, or dropped, from within a tokio runtime.
    pub fn start_own(options: ServerOptions) -> io::Result<LocalServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("parla-local-server")
            .enable_all()
            .build()?;
        let mut server = runtime.block_on(LocalServer::start(options))?;
        server.runtime = Some(runtime);
        Ok(server)
    }

    /// Where it listens (plain text).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it listens for TLS, if it does.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Shuts the server down as Ctrl-C would (every client is told, output is flushed within
    /// [`ServerOptions::shutdown_grace`]) and waits for it to finish.
    ///
    /// # Panics
    /// If the server does not finish within 10 seconds, or panicked: both are bugs a test
    /// should fail on.
    pub async fn shut_down(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_WAIT, task)
                .await
                .expect("the server finishes after its shutdown")
                .expect("the server does not panic");
        }
    }

    /// [`LocalServer::shut_down`], for a server started with [`LocalServer::start_own`].
    ///
    /// # Panics
    /// As [`LocalServer::shut_down`]; also if the server runs on the caller's runtime.
    pub fn shut_down_own(&mut self) {
        let runtime = self
            .runtime
            .take()
            .expect("shut_down_own is for servers started with start_own");
        runtime.block_on(self.shut_down());
        runtime.shutdown_timeout(STOP_WAIT);
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(STOP_WAIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    async fn greeting(addr: SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"NICK probe\r\nUSER probe 0 * :probe\r\n")
            .await
            .expect("write");
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .await
            .expect("read");
        line
    }

    #[tokio::test]
    async fn serves_on_the_callers_runtime_until_shut_down() {
        let mut server = LocalServer::start(ServerOptions::default())
            .await
            .expect("start");
        assert!(server.addr().ip().is_loopback());
        assert!(greeting(server.addr()).await.contains(" 001 probe "));
        server.shut_down().await;
        assert!(
            tokio::net::TcpStream::connect(server.addr()).await.is_err(),
            "nothing listens after the shutdown"
        );
    }

    #[test]
    fn serves_on_its_own_runtime_and_stops_when_dropped() {
        // A name of its own: after the drop, another test's listener may get the same port.
        let mut options = ServerOptions::default();
        options.core.server_name = "dropped.parla.test".into();
        let server = LocalServer::start_own(options).expect("start");
        let addr = server.addr();
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let first = client.block_on(greeting(addr));
        assert!(
            first.contains(" 001 probe "),
            "the first line was {first:?}"
        );
        assert!(first.contains("dropped.parla.test"), "{first:?}");
        drop(server);
        if std::net::TcpStream::connect(addr).is_ok() {
            let again = client.block_on(async {
                let talk = async {
                    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
                    stream
                        .write_all(b"NICK probe\r\nUSER probe 0 * :probe\r\n")
                        .await
                        .ok()?;
                    let mut line = String::new();
                    BufReader::new(stream).read_line(&mut line).await.ok()?;
                    Some(line)
                };
                tokio::time::timeout(Duration::from_secs(5), talk)
                    .await
                    .ok()
                    .flatten()
            });
            assert!(
                !again.is_some_and(|line| line.contains("dropped.parla.test")),
                "the dropped server still answers"
            );
        }
    }
}
