//! Real ICMP: [`IcmpPinger`] and the non-blocking sockets it opens, an unprivileged datagram
//! socket where the kernel allows it, else a raw one. Which kind, and whether any, depends on the
//! host's permissions, so the tests here run on loopback and in a network namespace of their own.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use super::packet::{Family, echo_request, is_echo_reply};
use super::{PingError, Pinger};

/// Which kind of ICMP socket an [`IcmpPinger`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// An unprivileged ICMP datagram ("ping") socket, allowed by `net.ipv4.ping_group_range`.
    Datagram,
    /// A raw ICMP socket, which needs root or `CAP_NET_RAW`.
    Raw,
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocketKind::Datagram => "unprivileged ICMP datagram socket",
            SocketKind::Raw => "raw ICMP socket",
        })
    }
}

/// Big enough for any reply we care about (IPv4 header with options + our packet) and then some.
const RECV_BUFFER_LEN: usize = 2048;

/// Hands out identifiers so that several pingers in one process (each raw socket sees every
/// ICMP packet the host receives) can tell their replies apart.
static NEXT_IDENTIFIER: AtomicU16 = AtomicU16::new(0);

fn new_identifier() -> u16 {
    // Truncating the pid is fine: it only has to differ from other pingers on this host most of
    // the time; the payload and sequence number are checked as well.
    let pid = std::process::id() as u16;
    pid ^ NEXT_IDENTIFIER
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9e37)
}

fn socket_address(target: IpAddr) -> SockaddrStorage {
    match target {
        IpAddr::V4(ip) => SockaddrStorage::from(SocketAddrV4::new(ip, 0)),
        IpAddr::V6(ip) => SockaddrStorage::from(SocketAddrV6::new(ip, 0, 0, 0)),
    }
}

fn address_ip(address: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        Some(IpAddr::V4(v4.ip()))
    } else {
        address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
    }
}

/// One open, non-blocking ICMP socket registered with the tokio reactor.
#[derive(Debug)]
struct IcmpSocket {
    fd: AsyncFd<OwnedFd>,
    family: Family,
    kind: SocketKind,
}

impl IcmpSocket {
    /// Opens a socket for `family`, trying `kinds` in order. Must run inside a tokio runtime.
    fn open(family: Family, kinds: &[SocketKind], target: IpAddr) -> Result<Self, PingError> {
        let (domain, protocol) = match family {
            Family::V4 => (AddressFamily::Inet, SockProtocol::Icmp),
            Family::V6 => (AddressFamily::Inet6, SockProtocol::IcmpV6),
        };
        let mut last_error = Errno::EPERM;
        for &kind in kinds {
            let ty = match kind {
                SocketKind::Datagram => SockType::Datagram,
                SocketKind::Raw => SockType::Raw,
            };
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            match socket::socket(domain, ty, flags, protocol) {
                Ok(fd) => {
                    // SAFETY: `fd` is an `OwnedFd` we just created and move into the `AsyncFd`;
                    // we own it, nothing else closes it, so it stays open and refers to the same
                    // socket until the `AsyncFd` (and with it the `OwnedFd`) is dropped.
                    let fd = unsafe { AsyncFd::register(fd) }.map_err(|error| {
                        let (_fd, source) = error.into_parts();
                        PingError::Io { target, source }
                    })?;
                    tracing::debug!(family = family.name(), %kind, "opened ICMP socket");
                    return Ok(IcmpSocket { fd, family, kind });
                }
                Err(error) => {
                    tracing::debug!(family = family.name(), %kind, %error, "cannot open ICMP socket");
                    last_error = error;
                }
            }
        }
        let source = io::Error::from(last_error);
        Err(match last_error {
            Errno::EPERM | Errno::EACCES => PingError::NotPermitted {
                family: family.name(),
                source,
            },
            _ => PingError::Io {
                target,
                source: io::Error::new(
                    source.kind(),
                    format!("cannot open an {} ICMP socket: {source}", family.name()),
                ),
            },
        })
    }

    async fn send_echo(&self, target: IpAddr, identifier: u16, sequence: u16) -> io::Result<()> {
        let packet = echo_request(self.family, identifier, sequence);
        let address = socket_address(target);
        loop {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|fd| {
                socket::sendto(fd.as_raw_fd(), &packet, &address, MsgFlags::empty())
                    .map_err(io::Error::from)
            });
            match sent {
                Ok(result) => return result.map(drop),
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads until the reply to `identifier`/`sequence` from `target` arrives, skipping all else.
    async fn recv_reply(&self, target: IpAddr, identifier: u16, sequence: u16) -> io::Result<()> {
        let mut buffer = [0u8; RECV_BUFFER_LEN];
        loop {
            let mut guard = self.fd.readable().await?;
            loop {
                let received = guard.try_io(|fd| {
                    socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buffer)
                        .map_err(io::Error::from)
                });
                let (len, from) = match received {
                    Ok(result) => result?,
                    // Drained; `try_io` cleared the readiness, so wait for the next packet.
                    Err(_would_block) => break,
                };
                let from = from.as_ref().and_then(address_ip);
                let from_target = target.is_unspecified() || from == Some(target);
                if from_target
                    && is_echo_reply(self.family, self.kind, &buffer[..len], identifier, sequence)
                {
                    return Ok(());
                }
                tracing::trace!(
                    ?from,
                    len,
                    sequence,
                    "skipping ICMP packet that is not our reply"
                );
            }
        }
    }
}

/// Pings with real ICMP echo requests: an unprivileged datagram socket where the kernel allows it, else a raw socket.
///
/// Sockets are opened on first use, one per address family, and kept for later pings. Replies
/// are matched on sequence number (and, on raw sockets, identifier), so a late reply to an
/// earlier ping that timed out is skipped rather than taken for the current one.
#[derive(Debug)]
pub struct IcmpPinger {
    v4: Option<IcmpSocket>,
    v6: Option<IcmpSocket>,
    /// The socket kinds to try, in order.
    kinds: &'static [SocketKind],
    identifier: u16,
    next_sequence: u16,
    last_kind: Option<SocketKind>,
}

impl IcmpPinger {
    /// A pinger that has not opened any socket yet (that happens on the first [`ping`](Pinger::ping)).
    pub fn new() -> Self {
        Self::with_kinds(&[SocketKind::Datagram, SocketKind::Raw])
    }

    fn with_kinds(kinds: &'static [SocketKind]) -> Self {
        IcmpPinger {
            v4: None,
            v6: None,
            kinds,
            identifier: new_identifier(),
            next_sequence: 0,
            last_kind: None,
        }
    }

    /// The kind of socket the most recent ping went through, for logs; `None` until a ping has
    /// managed to open a socket.
    pub fn socket_kind(&self) -> Option<SocketKind> {
        self.last_kind
    }

    /// The cached socket for `target`'s family, opening it if needed.
    fn socket_for(&mut self, target: IpAddr) -> Result<&IcmpSocket, PingError> {
        let family = Family::of(target);
        let slot = match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        let socket = match slot.take() {
            Some(socket) => socket,
            None => IcmpSocket::open(family, self.kinds, target)?,
        };
        self.last_kind = Some(socket.kind);
        Ok(slot.insert(socket))
    }
}

impl Default for IcmpPinger {
    fn default() -> Self {
        Self::new()
    }
}

impl Pinger for IcmpPinger {
    async fn ping(&mut self, target: IpAddr, timeout: Duration) -> Result<Duration, PingError> {
        // An IPv4-mapped IPv6 address is an IPv4 host.
        let target = target.to_canonical();
        let identifier = self.identifier;
        let sequence = self.next_sequence;
        self.next_sequence = sequence.wrapping_add(1);
        let socket = self.socket_for(target)?;
        let start = Instant::now();
        let exchange = async {
            socket.send_echo(target, identifier, sequence).await?;
            socket.recv_reply(target, identifier, sequence).await
        };
        match crate::clock::timeout(timeout, exchange).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(source)) => Err(PingError::Io { target, source }),
            Err(_elapsed) => Err(PingError::Timeout { target, timeout }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::process::Command;

    use parla_testkit::require;

    use crate::ping::describe;

    #[test]
    fn pingers_get_distinct_identifiers() {
        let a = IcmpPinger::new();
        let b = IcmpPinger::new();
        assert_ne!(a.identifier, b.identifier);
        assert_eq!(a.socket_kind(), None);
    }

    // ----- real ICMP -----

    const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    const PATIENCE: Duration = Duration::from_secs(2);

    fn is_root() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    /// Whether this machine has an IPv6 loopback address; says so when it does not.
    fn have_ipv6_loopback() -> bool {
        match std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)) {
            Ok(_) => true,
            Err(error) => {
                eprintln!("no IPv6 loopback here (binding [::1]:0 failed: {error}); skipping ::1");
                false
            }
        }
    }

    /// Pings `target` a few times. `false` = ICMP not permitted (acceptable when not root, and
    /// then said by `require`, which fails the test under `CI=true`).
    async fn ping_a_few_times(pinger: &mut IcmpPinger, target: IpAddr) -> bool {
        for _ in 0..3 {
            match pinger.ping(target, PATIENCE).await {
                Ok(rtt) => assert!(rtt < PATIENCE, "{rtt:?}"),
                Err(error @ PingError::NotPermitted { .. }) => {
                    assert!(
                        !is_root(),
                        "running as root, ICMP must be permitted: {}",
                        describe(&error)
                    );
                    require(
                        "permission to send ICMP echo requests",
                        Err(describe(&error)),
                    );
                    return false;
                }
                Err(error) => panic!("pinging {target}: {}", describe(&error)),
            }
        }
        eprintln!("pinged {target} via {:?}", pinger.socket_kind());
        assert!(pinger.socket_kind().is_some());
        true
    }

    #[tokio::test]
    async fn pings_ipv4_loopback() {
        ping_a_few_times(&mut IcmpPinger::new(), LOCALHOST_V4).await;
    }

    #[tokio::test]
    async fn pings_ipv6_loopback() {
        if have_ipv6_loopback() {
            ping_a_few_times(&mut IcmpPinger::new(), LOCALHOST_V6).await;
        }
    }

    #[tokio::test]
    async fn pings_ipv4_mapped_loopback_over_ipv4() {
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        let mut pinger = IcmpPinger::new();
        if ping_a_few_times(&mut pinger, mapped).await {
            assert!(pinger.v4.is_some() && pinger.v6.is_none());
        }
    }

    /// A reply to an earlier sequence number is skipped: with only a stale reply on its way,
    /// waiting for the current one times out; afterwards a ping still works.
    async fn stale_reply_is_skipped(pinger: &mut IcmpPinger, target: IpAddr) {
        pinger.ping(target, PATIENCE).await.expect("first ping");
        let identifier = pinger.identifier;
        let current = pinger.next_sequence;
        let socket = pinger.socket_for(target).unwrap();
        socket
            .send_echo(target, identifier, current.wrapping_sub(1))
            .await
            .unwrap();
        let waited = tokio::time::timeout(
            Duration::from_millis(300),
            socket.recv_reply(target, identifier, current),
        )
        .await;
        assert!(waited.is_err(), "took a stale reply for the current one");
        // That stale reply was consumed above; send one more and ping right behind it.
        socket
            .send_echo(target, identifier, current.wrapping_sub(2))
            .await
            .unwrap();
        pinger
            .ping(target, PATIENCE)
            .await
            .expect("ping after stale reply");
    }

    #[tokio::test]
    async fn raw_socket_skips_stale_replies_and_own_requests() {
        let mut pinger = IcmpPinger::with_kinds(&[SocketKind::Raw]);
        if !ping_a_few_times(&mut pinger, LOCALHOST_V4).await {
            return;
        }
        assert_eq!(pinger.socket_kind(), Some(SocketKind::Raw));
        stale_reply_is_skipped(&mut pinger, LOCALHOST_V4).await;
        if have_ipv6_loopback() {
            assert!(ping_a_few_times(&mut pinger, LOCALHOST_V6).await);
            assert_eq!(pinger.socket_kind(), Some(SocketKind::Raw));
            stale_reply_is_skipped(&mut pinger, LOCALHOST_V6).await;
        }
    }

    // ----- real ICMP in a network namespace of our own -----

    /// Set (to the parent's network namespace) when this test binary runs inside `unshare`.
    const NETNS_ENV: &str = "PARLA_PING_TEST_IN_NETNS";
    const CHILD_STARTED: &str = "parla ping test: running inside the new network namespace";

    fn network_namespace() -> String {
        std::fs::read_link("/proc/self/ns/net")
            .map(|link| link.display().to_string())
            .unwrap_or_default()
    }

    /// Runs the datagram-socket, unreachable and timeout checks in a fresh network namespace
    /// (only `lo`, nothing leaves the machine): this test re-executes itself under
    /// `unshare --net` and the child does the work.
    #[test]
    fn in_fresh_network_namespace() {
        if let Ok(parent_namespace) = std::env::var(NETNS_ENV) {
            println!("{CHILD_STARTED}");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(inside_namespace(&parent_namespace));
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let test_name = format!("{module}::in_fresh_network_namespace");
        let namespace_args: &[&str] = if is_root() {
            &["--net"]
        } else {
            // Unprivileged: a user namespace makes us root over the new network namespace.
            &["--user", "--map-root-user", "--net"]
        };
        let output = Command::new("unshare")
            .args(namespace_args)
            .arg("--")
            .arg(&exe)
            .args(["--exact", &test_name, "--nocapture", "--test-threads=1"])
            .env(NETNS_ENV, network_namespace())
            .output();
        let output = match output {
            Ok(output) => output,
            Err(error) => {
                require("unshare", Err(format!("cannot run `unshare`: {error}")));
                return;
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("--- child stdout ---\n{stdout}\n--- child stderr ---\n{stderr}");
        if !stdout.contains(CHILD_STARTED) {
            // E.g. no namespaces in this container, or user namespaces disabled.
            require(
                "a network namespace of its own",
                Err(format!(
                    "`unshare {}` did not start the test ({})",
                    namespace_args.join(" "),
                    output.status
                )),
            );
            return;
        }
        assert!(stdout.contains("1 passed"), "the namespace checks failed");
        assert!(output.status.success(), "the namespace checks failed");
    }

    fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
        std::fs::write(format!("/proc/sys/{path}"), value)
    }

    /// Only `lo` exists here, or nothing at all.
    fn interfaces() -> Vec<String> {
        std::fs::read_to_string("/proc/self/net/dev")
            .unwrap()
            .lines()
            .skip(2)
            .filter_map(|line| line.split(':').next())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// Pings documentation addresses (TEST-NET-1, 2001:db8::/32) that have no route in the
    /// namespace: `Io` with `ENETUNREACH` at once. With `lo` down, IPv6 has no source address
    /// either, which gives `EADDRNOTAVAIL`.
    async fn no_route_fails_at_once(mut pinger: IcmpPinger, lo_up: bool) {
        let unroutable_v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let unroutable_v6: IpAddr = "2001:db8::1".parse().unwrap();
        for target in [unroutable_v4, unroutable_v6] {
            let started = std::time::Instant::now();
            match pinger.ping(target, Duration::from_secs(5)).await {
                Err(PingError::Io { target: t, source }) => {
                    assert_eq!(t, target);
                    let errno = source.raw_os_error().map(Errno::from_raw);
                    let expected = errno == Some(Errno::ENETUNREACH)
                        || (!lo_up && target.is_ipv6() && errno == Some(Errno::EADDRNOTAVAIL));
                    assert!(expected, "pinging {target}: unexpected {source}");
                    assert!(started.elapsed() < Duration::from_secs(1));
                    println!(
                        "via {:?}: {}",
                        pinger.socket_kind(),
                        describe(&PingError::Io { target, source })
                    );
                }
                other => panic!("pinging {target}: expected ENETUNREACH, got {other:?}"),
            }
        }
    }

    async fn inside_namespace(parent_namespace: &str) {
        // Never ping anything but loopback outside a namespace we created.
        assert_ne!(
            network_namespace(),
            parent_namespace,
            "not in a new network namespace"
        );
        assert_eq!(
            interfaces(),
            ["lo"],
            "unexpected interfaces in the new namespace"
        );

        let lo_up = match Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
        {
            Ok(status) if status.success() => true,
            other => {
                // Without `ip` only the no-route check runs (under CI=true this fails instead).
                require(
                    "ip (iproute2)",
                    Err(format!(
                        "cannot bring lo up (`ip link set lo up`: {other:?})"
                    )),
                );
                false
            }
        };
        if !lo_up {
            no_route_fails_at_once(IcmpPinger::with_kinds(&[SocketKind::Raw]), false).await;
            return;
        }

        // ping_group_range "1 0" (a new namespace's default): no datagram sockets, even for
        // root. (Inside a user namespace gid 1 is unmapped and cannot be written.)
        match write_sysctl("net/ipv4/ping_group_range", "1 0") {
            Ok(()) => {
                let mut datagram_only = IcmpPinger::with_kinds(&[SocketKind::Datagram]);
                match datagram_only.ping(LOCALHOST_V4, PATIENCE).await {
                    Err(error @ PingError::NotPermitted { .. }) => {
                        let text = describe(&error);
                        println!("{text}");
                        assert!(
                            text.contains("IPv4") && text.contains("ping_group_range"),
                            "{text}"
                        );
                    }
                    other => panic!("expected NotPermitted, got {other:?}"),
                }
            }
            // Only that check is skipped (under CI=true, as root, this fails instead).
            Err(error) => {
                require(
                    "permission to write net.ipv4.ping_group_range",
                    Err(format!(
                        "cannot set it to \"1 0\" ({error}); NotPermitted not checked"
                    )),
                );
            }
        }

        // Widened to our group: the datagram path is used and works.
        let gid = nix::unistd::Gid::effective();
        write_sysctl("net/ipv4/ping_group_range", &format!("{gid} {gid}")).unwrap();
        let v6 = have_ipv6_loopback();
        let mut pinger = IcmpPinger::new();
        assert!(ping_a_few_times(&mut pinger, LOCALHOST_V4).await);
        assert_eq!(pinger.socket_kind(), Some(SocketKind::Datagram));
        stale_reply_is_skipped(&mut pinger, LOCALHOST_V4).await;
        if v6 {
            assert!(ping_a_few_times(&mut pinger, LOCALHOST_V6).await);
            assert_eq!(pinger.socket_kind(), Some(SocketKind::Datagram));
            stale_reply_is_skipped(&mut pinger, LOCALHOST_V6).await;
        }

        // No route (only lo exists): fails at once, nothing is sent.
        no_route_fails_at_once(IcmpPinger::new(), true).await;
        no_route_fails_at_once(IcmpPinger::with_kinds(&[SocketKind::Raw]), true).await;

        // The host stops answering: timeouts. A raw socket still sees its own request, which
        // must not count as the reply.
        let short = Duration::from_millis(300);
        write_sysctl("net/ipv4/icmp_echo_ignore_all", "1").unwrap();
        let v6_ignores = v6
            && match write_sysctl("net/ipv6/icmp/echo_ignore_all", "1") {
                Ok(()) => true,
                Err(error) => {
                    println!("cannot make ::1 ignore pings ({error}); no IPv6 timeout check");
                    false
                }
            };
        let mut raw = IcmpPinger::with_kinds(&[SocketKind::Raw]);
        for pinger in [&mut pinger, &mut raw] {
            let targets = if v6_ignores {
                &[LOCALHOST_V4, LOCALHOST_V6][..]
            } else {
                &[LOCALHOST_V4][..]
            };
            for &target in targets {
                let started = std::time::Instant::now();
                match pinger.ping(target, short).await {
                    Err(PingError::Timeout { target: t, timeout }) => {
                        assert_eq!((t, timeout), (target, short));
                        assert!(started.elapsed() >= short);
                    }
                    other => panic!(
                        "pinging {target} via {:?}: expected a timeout, got {other:?}",
                        pinger.socket_kind()
                    ),
                }
            }
        }
        println!("namespace checks done");
    }
}
