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
/// first hands it over; when both have one, they take turns (not a random pick, which would make
/// a simulated run depend on something other than its seed).
#[derive(Debug)]
pub struct Both<A, B> {
    first: A,
    second: B,
    /// The second listener is asked first next time.
    second_first: bool,
}

impl<A, B> Both<A, B> {
    /// Serves `first` and `second` as one listener.
    pub fn new(first: A, second: B) -> Self {
        Both {
            first,
            second,
            second_first: false,
        }
    }
}

impl<A: Listener, B: Listener> Listener for Both<A, B> {
    type Stream = Either<A::Stream, B::Stream>;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let left = |r: io::Result<(A::Stream, SocketAddr)>| r.map(|(s, p)| (Either::Left(s), p));
        let right = |r: io::Result<(B::Stream, SocketAddr)>| r.map(|(s, p)| (Either::Right(s), p));
        let second_first = self.second_first;
        self.second_first = !second_first;
        if second_first {
            tokio::select! {
                biased;
                accepted = self.second.accept() => right(accepted),
                accepted = self.first.accept() => left(accepted),
            }
        } else {
            tokio::select! {
                biased;
                accepted = self.first.accept() => left(accepted),
                accepted = self.second.accept() => right(accepted),
            }
        }
    }

    /// The first listener's.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.first.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With connections waiting on both, the listeners take turns, in the same order every time
    /// (no random pick: a simulated run must depend on its seed alone).
    #[tokio::test]
    async fn both_listeners_take_turns() {
        let any = || SocketAddr::from(([127, 0, 0, 1], 0));
        let (a, b) = (
            Tcp.bind(any()).await.unwrap(),
            Tcp.bind(any()).await.unwrap(),
        );
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut both = Both::new(a, b);
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(tokio::net::TcpStream::connect(a_addr).await.unwrap());
            held.push(tokio::net::TcpStream::connect(b_addr).await.unwrap());
        }
        let mut sides = Vec::new();
        for _ in 0..4 {
            let (stream, _) = both.accept().await.unwrap();
            sides.push(matches!(stream, Either::Left(_)));
        }
        assert_eq!(sides, [true, false, true, false]);
    }
}
