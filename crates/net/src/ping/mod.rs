//! ICMP liveness checks for the client.
//!
//! * [`Pinger`] (here) is the abstraction the client session is generic over, so that the
//!   simulation can plug in a pinger that sends datagrams through its simulated network;
//!   [`PingError`] says why a ping gave no round-trip time.
//! * `packet`: the ICMP echo request we send and the test for "this is our reply" (pure bytes,
//!   so it is tested without sockets).
//! * `socket`: [`IcmpPinger`], real ICMP echo requests through an unprivileged ICMP datagram
//!   socket where the kernel allows it (`net.ipv4.ping_group_range`), else through a raw socket
//!   (root or `CAP_NET_RAW`).
//! * `watch`: the liveness policy. [`watch`] pings a host at a fixed interval and reports each
//!   result as a [`PingEvent`], declaring the host dead after a configured number of
//!   consecutive misses.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

mod packet;
mod socket;
mod watch;

pub use socket::{IcmpPinger, SocketKind};
pub use watch::{PingConfig, PingEvent, watch};

/// Something that can check whether a host answers. The client session is generic over it so
/// that the simulation can plug in a pinger that sends datagrams through the simulated network.
pub trait Pinger: Send + 'static {
    /// Sends one echo request to `target` and waits at most `timeout` for its reply; Ok = round-trip time.
    fn ping(
        &mut self,
        target: IpAddr,
        timeout: Duration,
    ) -> impl Future<Output = Result<Duration, PingError>> + Send;
}

/// Why a ping did not produce a round-trip time.
///
/// The `Display` text of each variant says what happened; the underlying OS error, where there
/// is one, is the error's [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// ICMP is not permitted for this process at all (no datagram socket per ping_group_range, no raw socket without CAP_NET_RAW).
    #[error(
        "this process may not send {family} ICMP echo requests; run it as root, grant the binary \
         the raw-socket capability (`setcap cap_net_raw+ep <binary>`), or allow unprivileged ICMP \
         sockets for your group (`sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`)"
    )]
    NotPermitted {
        /// `"IPv4"` or `"IPv6"`.
        family: &'static str,
        /// Why the kernel refused the last socket we tried (usually `EPERM` or `EACCES`).
        source: io::Error,
    },
    /// No reply came within the timeout.
    #[error("no echo reply from {target} within {timeout:?}")]
    Timeout {
        /// The host that was pinged.
        target: IpAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// Sending or receiving failed (e.g. network unreachable).
    #[error("pinging {target} failed")]
    Io {
        /// The host that was pinged.
        target: IpAddr,
        /// What the OS reported (e.g. `ENETUNREACH`: no route to `target`).
        source: io::Error,
    },
}

/// `error` followed by its chain of sources, separated by ": ".
fn describe(error: &PingError) -> String {
    crate::error_chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{Ipv4Addr, Ipv6Addr};

    use nix::errno::Errno;
    use tokio::sync::mpsc;

    #[test]
    fn error_messages_say_what_to_do() {
        let denied = PingError::NotPermitted {
            family: "IPv6",
            source: io::Error::from(Errno::EACCES),
        };
        let text = describe(&denied);
        assert!(text.contains("IPv6"), "{text}");
        assert!(text.contains("root"), "{text}");
        assert!(text.contains("setcap cap_net_raw+ep"), "{text}");
        assert!(text.contains("ping_group_range"), "{text}");
        assert!(text.ends_with("Permission denied (os error 13)"), "{text}");
        let timeout = PingError::Timeout {
            target: IpAddr::V6(Ipv6Addr::LOCALHOST),
            timeout: Duration::from_millis(1500),
        };
        assert_eq!(describe(&timeout), "no echo reply from ::1 within 1.5s");
    }

    #[test]
    fn futures_can_be_spawned() {
        fn assert_send<T: Send + 'static>(_: &T) {}
        let (sender, _receiver) = mpsc::channel(1);
        let watcher = watch(
            IcmpPinger::new(),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            PingConfig::default(),
            sender,
        );
        assert_send(&watcher);
    }
}
