//! Where bytes travel: a [`Transport`] binds listeners and opens connections. [`Tcp`] is the real
//! one; the simulation crate implements the same traits on turmoil, so the server runtime and the
//! client session run unchanged on both.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::either::Either;

/// A byte stream to one peer.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A bound listener.
pub trait Listener: Send + 'static {
    /// The streams it accepts.
    type Stream: Stream;
    /// Waits for the next connection; returns it with the peer's address.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The address it listens on.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A network: real TCP, or a simulated one.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Its streams.
    type Stream: Stream;
    /// Its listeners.
    type Listener: Listener<Stream = Self::Stream>;
    /// Binds a listener on `addr`.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connects to `host:port` (a name or an IP); returns the stream and the address reached.
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}

/// Real TCP through tokio. Every socket gets `TCP_NODELAY`: chat lines are small and latency
/// matters more than packet count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp;

/// A TCP listener that sets `TCP_NODELAY` on what it accepts.
#[derive(Debug)]
pub struct TcpListener(pub tokio::net::TcpListener);

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Connections waiting to be accepted (see [`Tcp::bind`]).
pub const LISTEN_BACKLOG: u32 = 4096;

impl Transport for Tcp {
    type Stream = tokio::net::TcpStream;
    type Listener = TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        // tokio's default backlog is 1,024: a crowd connecting at once (a netsplit healing, a
        // bench) overflows it, and each dropped SYN costs its client a 1-second retransmit. The
        // kernel caps this at net.core.somaxconn.
        Ok(TcpListener(socket.listen(LISTEN_BACKLOG)?))
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<(Self::Stream, SocketAddr)> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }
}

/// Two listeners served as one (the plain port and the TLS port): whichever has a connection
/// first hands it over.
#[derive(Debug)]
pub struct Both<A, B>(pub A, pub B);

impl<A: Listener, B: Listener> Listener for Both<A, B> {
    type Stream = Either<A::Stream, B::Stream>;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        tokio::select! {
            accepted = self.0.accept() => accepted.map(|(s, peer)| (Either::Left(s), peer)),
            accepted = self.1.accept() => accepted.map(|(s, peer)| (Either::Right(s), peer)),
        }
    }

    /// The first listener's.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
