//! Pings inside the simulation: real datagrams through turmoil's network.
//!
//! The server host runs a UDP echo responder (standing in for the kernel's ICMP echo), and the
//! client's [`UdpPinger`] sends it numbered datagrams. Partitions, held links and crashed hosts
//! therefore make pings fail exactly as they would on a real network. `block-pings` in a script
//! makes the responder ignore requests, like a firewall that drops ICMP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parla_net::ping::{PingError, Pinger};
use tokio::time::Instant;
use turmoil::net::UdpSocket;

use crate::journal::{Conduct, Journal};

/// The port the echo responder listens on (ICMP has none; the classic echo service's).
pub const ECHO_PORT: u16 = 7;

/// Sends numbered UDP datagrams to the target's echo responder and waits for them to return.
/// With a journal, each probe's outcome is logged for the conduct check.
#[derive(Default)]
pub struct UdpPinger {
    socket: Option<UdpSocket>,
    seq: u64,
    journal: Option<(Journal, String, u32)>,
}

impl UdpPinger {
    /// A pinger for `host` whose probes are logged in `journal` (it gives up after
    /// `max_misses`).
    pub fn recording(journal: Journal, host: &str, max_misses: u32) -> UdpPinger {
        UdpPinger {
            journal: Some((journal, host.to_owned(), max_misses)),
            ..UdpPinger::default()
        }
    }
}

impl Pinger for UdpPinger {
    async fn ping(&mut self, target: IpAddr, timeout: Duration) -> Result<Duration, PingError> {
        let result = self.probe(target, timeout).await;
        if let Some((journal, host, max_misses)) = &self.journal {
            let (ok, max_misses) = (result.is_ok(), *max_misses);
            journal.conduct(host, Conduct::Probe { ok, max_misses });
        }
        result
    }
}

impl UdpPinger {
    async fn probe(&mut self, target: IpAddr, timeout: Duration) -> Result<Duration, PingError> {
        let io = |source| PingError::Io { target, source };
        if self.socket.is_none() {
            let socket = UdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0))
                .await
                .map_err(io)?;
            self.socket = Some(socket);
        }
        let socket = self.socket.as_ref().expect("opened above");
        self.seq += 1;
        let seq = self.seq;
        let start = Instant::now();
        socket
            .send_to(&seq.to_be_bytes(), (target, ECHO_PORT))
            .await
            .map_err(io)?;
        let wait = async {
            let mut buf = [0u8; 16];
            loop {
                let (n, from) = socket.recv_from(&mut buf).await?;
                // A late reply to an earlier ping is not this one's.
                if from.ip() == target && n == 8 && buf[..8] == seq.to_be_bytes() {
                    return Ok::<_, std::io::Error>(());
                }
            }
        };
        match parla_net::clock::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(io(e)),
            Err(_) => Err(PingError::Timeout { target, timeout }),
        }
    }
}

/// Answers echo datagrams until the host stops; ignores them while `blocked` is set.
pub async fn echo_responder(blocked: Arc<AtomicBool>) -> std::io::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), ECHO_PORT)).await?;
    let mut buf = [0u8; 64];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if !blocked.load(Ordering::Relaxed) {
            socket.send_to(&buf[..n], from).await?;
        }
    }
}
