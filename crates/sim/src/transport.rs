//! TCP inside the simulation: turmoil's sockets behind the same traits as real TCP.

use std::io;
use std::net::SocketAddr;

use parla_net::transport::{Listener, Transport};

/// The simulated network of the current turmoil host.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sim;

/// A listener on a simulated host.
pub struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Transport for Sim {
    type Stream = turmoil::net::TcpStream;
    type Listener = SimListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<SimListener> {
        Ok(SimListener(turmoil::net::TcpListener::bind(addr).await?))
    }

    /// `host` is a simulated host's name (or IP).
    async fn connect(&self, host: &str, port: u16) -> io::Result<(Self::Stream, SocketAddr)> {
        let stream = turmoil::net::TcpStream::connect((host, port)).await?;
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }
}
