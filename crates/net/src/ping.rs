//! ICMP liveness checks for the client.
//!
//! * [`Pinger`] is the abstraction the client session is generic over, so that the simulation can
//!   plug in a pinger that sends datagrams through its simulated network.
//! * [`IcmpPinger`] sends real ICMP echo requests: through an unprivileged ICMP datagram socket
//!   where the kernel allows it (`net.ipv4.ping_group_range`), else through a raw socket (root or
//!   `CAP_NET_RAW`).
//! * [`watch`] pings a host at a fixed interval and reports each result as a [`PingEvent`],
//!   declaring the host dead after a configured number of consecutive misses.

use std::error::Error as _;
use std::fmt;
use std::future::Future;
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
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

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

const ICMPV4_ECHO_REPLY: u8 = 0;
const ICMPV4_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// Length of the ICMP echo header: type, code, checksum, identifier, sequence.
const HEADER_LEN: usize = 8;
/// Start of every payload we send; replies echo it back verbatim.
const MAGIC: [u8; 8] = *b"ParlaPng";
/// Header + magic + identifier + sequence.
const PACKET_LEN: usize = HEADER_LEN + MAGIC.len() + 4;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn echo_request_type(self) -> u8 {
        match self {
            Family::V4 => ICMPV4_ECHO_REQUEST,
            Family::V6 => ICMPV6_ECHO_REQUEST,
        }
    }

    fn echo_reply_type(self) -> u8 {
        match self {
            Family::V4 => ICMPV4_ECHO_REPLY,
            Family::V6 => ICMPV6_ECHO_REPLY,
        }
    }
}

/// The RFC 1071 internet checksum of `data`.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds an echo request. The payload repeats identifier and sequence number because a datagram
/// socket's kernel rewrites the header's identifier.
fn echo_request(family: Family, identifier: u16, sequence: u16) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = family.echo_request_type();
    packet[4..6].copy_from_slice(&identifier.to_be_bytes());
    packet[6..8].copy_from_slice(&sequence.to_be_bytes());
    packet[8..16].copy_from_slice(&MAGIC);
    packet[16..18].copy_from_slice(&identifier.to_be_bytes());
    packet[18..20].copy_from_slice(&sequence.to_be_bytes());
    // The kernel fills in ICMPv6 checksums (it needs the IPv6 pseudo-header) and those of ICMP
    // datagram sockets; for raw IPv4 sockets it is our job. Computing it always is harmless.
    if family == Family::V4 {
        let checksum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
    packet
}

/// Whether `received` (as read from a socket of `family` and `kind`) is the echo reply to our
/// request `identifier`/`sequence`. Everything else — our own request looped back to a raw
/// socket, other processes' pings, replies to earlier (timed-out) requests — is not.
fn is_echo_reply(
    family: Family,
    kind: SocketKind,
    received: &[u8],
    identifier: u16,
    sequence: u16,
) -> bool {
    let icmp = if family == Family::V4 && kind == SocketKind::Raw {
        // Raw IPv4 sockets hand us the IP header too; ICMPv6 and datagram sockets do not.
        let Some(&first) = received.first() else {
            return false;
        };
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < 20 {
            return false;
        }
        match received.get(header_len..) {
            Some(icmp) => icmp,
            None => return false,
        }
    } else {
        received
    };
    if icmp.len() < PACKET_LEN || icmp[0] != family.echo_reply_type() || icmp[1] != 0 {
        return false;
    }
    if family == Family::V4 && kind == SocketKind::Raw && internet_checksum(icmp) != 0 {
        return false;
    }
    let be16 = |at: usize| u16::from_be_bytes([icmp[at], icmp[at + 1]]);
    // A datagram socket's kernel replaced the header's identifier with its own (and only gives
    // us replies to it), so only a raw socket can check it.
    let header_identifier_ok = kind == SocketKind::Datagram || be16(4) == identifier;
    header_identifier_ok
        && be16(6) == sequence
        && icmp[8..16] == MAGIC
        && be16(16) == identifier
        && be16(18) == sequence
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
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(source)) => Err(PingError::Io { target, source }),
            Err(_elapsed) => Err(PingError::Timeout { target, timeout }),
        }
    }
}

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PingEvent {
    /// The host answered; resets the count of consecutive misses.
    Reply {
        /// Round-trip time of this ping.
        rtt: Duration,
    },
    /// The host did not answer (timeout, or sending/receiving failed).
    Missed {
        /// Misses in a row so far, this one included (1 for the first).
        consecutive: u32,
        /// Why, for people: the error and its causes.
        error: String,
    },
    /// ICMP is not permitted for this process: said once, then the watcher stops and the client
    /// relies on IRC PING.
    Unavailable {
        /// Why, and what to do about it.
        reason: String,
    },
    /// The configured number of consecutive misses was reached: the watcher returns after
    /// sending this (it follows the `Missed` event of the last miss).
    Failed {
        /// How many pings in a row went unanswered (= `max_misses`).
        misses: u32,
        /// The host that stopped answering.
        target: IpAddr,
    },
}

/// How [`watch`] pings.
#[derive(Debug, Clone, PartialEq)]
pub struct PingConfig {
    /// Time between the starts of consecutive pings; the first ping goes out at once. If a ping
    /// takes longer than this, the next one starts as soon as it finishes and the schedule
    /// shifts (no burst of catch-up pings). Default 5 s; zero is treated as 1 ms.
    pub interval: Duration,
    /// How long each ping waits for its reply. Default 2 s: far beyond any sane round trip, and
    /// shorter than the default interval so that pings stay on schedule. Keep it at most
    /// `interval`.
    pub timeout: Duration,
    /// Consecutive misses after which the host counts as gone. Default 3; 1 is strict (the
    /// first miss fails); 0 is treated as 1.
    pub max_misses: u32,
}

impl Default for PingConfig {
    fn default() -> Self {
        PingConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            max_misses: 3,
        }
    }
}

/// `error` followed by its chain of sources, separated by ": ".
fn describe(error: &PingError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Pings `target` every `interval` until `max_misses` consecutive failures, reporting each result on `events`. Returns when it failed, when ICMP is unavailable, or when `events` is closed.
pub async fn watch<P: Pinger>(
    mut pinger: P,
    target: IpAddr,
    config: PingConfig,
    events: mpsc::Sender<PingEvent>,
) {
    let max_misses = config.max_misses.max(1);
    let mut ticks = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut consecutive: u32 = 0;
    loop {
        tokio::select! {
            biased;
            () = events.closed() => return,
            _ = ticks.tick() => {}
        }
        let result = tokio::select! {
            biased;
            () = events.closed() => return,
            result = pinger.ping(target, config.timeout) => result,
        };
        let event = match result {
            Ok(rtt) => {
                consecutive = 0;
                PingEvent::Reply { rtt }
            }
            Err(error @ PingError::NotPermitted { .. }) => {
                let reason = describe(&error);
                tracing::warn!(%target, %reason, "ICMP unavailable, not pinging");
                let _ = events.send(PingEvent::Unavailable { reason }).await;
                return;
            }
            Err(error) => {
                consecutive = consecutive.saturating_add(1);
                PingEvent::Missed {
                    consecutive,
                    error: describe(&error),
                }
            }
        };
        tracing::trace!(%target, ?event, "ping result");
        if events.send(event).await.is_err() {
            return;
        }
        if consecutive >= max_misses {
            tracing::debug!(%target, misses = consecutive, "host stopped answering pings");
            let _ = events
                .send(PingEvent::Failed {
                    misses: consecutive,
                    target,
                })
                .await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::VecDeque;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::process::Command;
    use std::sync::{Arc, Mutex};

    // ----- watch() with a scripted pinger, in paused (virtual) time -----

    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[derive(Debug, Clone)]
    enum Step {
        /// Answer after this round trip.
        Reply(Duration),
        /// No answer: wait out the timeout, then `Timeout`.
        Miss,
        /// Fail at once, like `ENETUNREACH`.
        Unreachable,
        /// `NotPermitted`.
        Deny,
        /// Never finish.
        Hang,
    }

    struct ScriptedPinger {
        steps: VecDeque<Step>,
        /// Virtual time since the start of the test at which each ping was started.
        calls: Arc<Mutex<Vec<Duration>>>,
        start: Instant,
    }

    impl Pinger for ScriptedPinger {
        fn ping(
            &mut self,
            target: IpAddr,
            timeout: Duration,
        ) -> impl Future<Output = Result<Duration, PingError>> + Send {
            assert_eq!(target, TARGET);
            self.calls.lock().unwrap().push(self.start.elapsed());
            let step = self.steps.pop_front().unwrap_or(Step::Hang);
            async move {
                match step {
                    Step::Reply(rtt) => {
                        tokio::time::sleep(rtt).await;
                        Ok(rtt)
                    }
                    Step::Miss => {
                        tokio::time::sleep(timeout).await;
                        Err(PingError::Timeout { target, timeout })
                    }
                    Step::Unreachable => Err(PingError::Io {
                        target,
                        source: io::Error::from(Errno::ENETUNREACH),
                    }),
                    Step::Deny => Err(PingError::NotPermitted {
                        family: "IPv4",
                        source: io::Error::from(Errno::EPERM),
                    }),
                    Step::Hang => std::future::pending().await,
                }
            }
        }
    }

    struct Watched {
        events: mpsc::Receiver<PingEvent>,
        watcher: tokio::task::JoinHandle<()>,
        calls: Arc<Mutex<Vec<Duration>>>,
        start: Instant,
    }

    impl Watched {
        fn start(steps: Vec<Step>, config: PingConfig) -> Self {
            let start = Instant::now();
            let calls = Arc::new(Mutex::new(Vec::new()));
            let pinger = ScriptedPinger {
                steps: steps.into(),
                calls: calls.clone(),
                start,
            };
            let (sender, events) = mpsc::channel(16);
            let watcher = tokio::spawn(watch(pinger, TARGET, config, sender));
            Watched {
                events,
                watcher,
                calls,
                start,
            }
        }

        /// The next `n` events with the virtual time at which each arrived.
        async fn next(&mut self, n: usize) -> Vec<(Duration, PingEvent)> {
            let mut events = Vec::new();
            for _ in 0..n {
                let event = self.events.recv().await.expect("watcher ended early");
                events.push((self.start.elapsed(), event));
            }
            events
        }

        /// Waits for the watcher to return and checks that it sent nothing more.
        async fn finished(mut self) -> (Duration, Vec<Duration>) {
            self.watcher.await.unwrap();
            let ended = self.start.elapsed();
            assert_eq!(self.events.recv().await, None, "events after the end");
            (ended, self.calls.lock().unwrap().clone())
        }
    }

    fn config(interval_s: u64, timeout_s: u64, max_misses: u32) -> PingConfig {
        PingConfig {
            interval: Duration::from_secs(interval_s),
            timeout: Duration::from_secs(timeout_s),
            max_misses,
        }
    }

    fn s(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    fn reply(ms: u64) -> PingEvent {
        PingEvent::Reply {
            rtt: Duration::from_millis(ms),
        }
    }

    fn missed(consecutive: u32) -> PingEvent {
        PingEvent::Missed {
            consecutive,
            error: format!("no echo reply from {TARGET} within 2s"),
        }
    }

    #[test]
    fn default_config() {
        let config = PingConfig::default();
        assert_eq!(config.interval, Duration::from_secs(5));
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.max_misses, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_and_returns_when_receiver_dropped_between_pings() {
        let mut w = Watched::start(
            vec![Step::Reply(Duration::from_millis(10)); 3],
            config(5, 2, 3),
        );
        let events = w.next(3).await;
        assert_eq!(
            events,
            vec![
                (s(0.010), reply(10)),
                (s(5.010), reply(10)),
                (s(10.010), reply(10)),
            ]
        );
        w.events.close();
        w.watcher.await.unwrap();
        // Returned at once, without waiting for the next tick.
        assert_eq!(w.start.elapsed(), s(10.010));
        assert_eq!(*w.calls.lock().unwrap(), vec![s(0.0), s(5.0), s(10.0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_resets_the_miss_counter() {
        use Step::{Miss, Reply};
        let rtt = Duration::from_millis(10);
        let mut w = Watched::start(
            vec![
                Miss,
                Miss,
                Reply(rtt),
                Miss,
                Miss,
                Reply(rtt),
                Miss,
                Miss,
                Miss,
            ],
            config(5, 2, 3),
        );
        let events = w.next(10).await;
        assert_eq!(
            events,
            vec![
                (s(2.0), missed(1)),
                (s(7.0), missed(2)),
                (s(10.010), reply(10)),
                (s(17.0), missed(1)),
                (s(22.0), missed(2)),
                (s(25.010), reply(10)),
                (s(32.0), missed(1)),
                (s(37.0), missed(2)),
                (s(42.0), missed(3)),
                (
                    s(42.0),
                    PingEvent::Failed {
                        misses: 3,
                        target: TARGET
                    }
                ),
            ]
        );
        let (ended, calls) = w.finished().await;
        assert_eq!(ended, s(42.0));
        assert_eq!(calls, (0..9).map(|i| s(5.0 * i as f64)).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn fails_after_exactly_max_misses_counting_io_errors_too() {
        use Step::{Miss, Unreachable};
        let mut w = Watched::start(
            vec![Miss, Unreachable, Miss, Unreachable, Miss],
            config(5, 2, 4),
        );
        let events = w.next(5).await;
        let unreachable = |consecutive| PingEvent::Missed {
            consecutive,
            error: format!(
                "pinging {TARGET} failed: {}",
                io::Error::from(Errno::ENETUNREACH)
            ),
        };
        assert_eq!(
            events,
            vec![
                (s(2.0), missed(1)),
                (s(5.0), unreachable(2)),
                (s(12.0), missed(3)),
                (s(15.0), unreachable(4)),
                (
                    s(15.0),
                    PingEvent::Failed {
                        misses: 4,
                        target: TARGET
                    }
                ),
            ]
        );
        let (ended, calls) = w.finished().await;
        assert_eq!(ended, s(15.0));
        assert_eq!(calls.len(), 4, "no ping after the failure");
    }

    #[tokio::test(start_paused = true)]
    async fn max_misses_one_is_strict() {
        let mut w = Watched::start(
            vec![Step::Reply(Duration::from_millis(10)), Step::Miss],
            config(5, 2, 1),
        );
        let events = w.next(3).await;
        assert_eq!(
            events,
            vec![
                (s(0.010), reply(10)),
                (s(7.0), missed(1)),
                (
                    s(7.0),
                    PingEvent::Failed {
                        misses: 1,
                        target: TARGET
                    }
                ),
            ]
        );
        let (ended, calls) = w.finished().await;
        assert_eq!(ended, s(7.0));
        assert_eq!(calls, vec![s(0.0), s(5.0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn max_misses_zero_behaves_like_one() {
        let mut w = Watched::start(vec![Step::Miss], config(5, 2, 0));
        let events = w.next(2).await;
        assert_eq!(
            events[1].1,
            PingEvent::Failed {
                misses: 1,
                target: TARGET
            }
        );
        w.finished().await;
    }

    #[tokio::test(start_paused = true)]
    async fn not_permitted_is_reported_once_and_stops() {
        let mut w = Watched::start(
            vec![Step::Deny, Step::Reply(Duration::ZERO)],
            config(5, 2, 3),
        );
        let events = w.next(1).await;
        let (at, PingEvent::Unavailable { reason }) = &events[0] else {
            panic!("expected Unavailable, got {events:?}");
        };
        assert_eq!(*at, Duration::ZERO);
        assert!(reason.contains("setcap cap_net_raw+ep"), "{reason}");
        assert!(reason.contains("net.ipv4.ping_group_range"), "{reason}");
        assert!(
            reason.ends_with(&io::Error::from(Errno::EPERM).to_string()),
            "{reason}"
        );
        let (ended, calls) = w.finished().await;
        assert_eq!(ended, Duration::ZERO);
        assert_eq!(calls.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn returns_at_once_when_receiver_is_already_closed() {
        let start = Instant::now();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let pinger = ScriptedPinger {
            steps: VecDeque::new(),
            calls: calls.clone(),
            start,
        };
        let (sender, receiver) = mpsc::channel(1);
        drop(receiver);
        watch(pinger, TARGET, config(5, 2, 3), sender).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(calls.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn returns_when_receiver_closes_during_a_ping() {
        let w = Watched::start(vec![Step::Hang], config(5, 2, 3));
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(w.events);
        w.watcher.await.unwrap();
        assert_eq!(w.start.elapsed(), Duration::from_secs(1));
        assert_eq!(*w.calls.lock().unwrap(), vec![Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_longer_than_the_interval_delays_the_schedule() {
        let mut w = Watched::start(vec![Step::Miss, Step::Miss], config(5, 8, 3));
        w.next(2).await;
        w.events.close();
        w.watcher.await.unwrap();
        // Late by 3 s, so the second ping starts when the first ends and the third one interval
        // after that — no burst of catch-up pings.
        assert_eq!(*w.calls.lock().unwrap(), vec![s(0.0), s(8.0), s(16.0)]);
    }

    // ----- packet building and matching -----

    #[test]
    fn checksum_matches_rfc_1071_example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2, complemented 220d.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        assert_eq!(internet_checksum(&[0xff]), !0xff00);
        let request = echo_request(Family::V4, 0x1234, 7);
        assert_eq!(
            internet_checksum(&request),
            0,
            "a valid packet sums to zero"
        );
    }

    /// Turns our request into the reply a host would send (type changed, checksum fixed).
    fn reply_to(request: &[u8], family: Family) -> Vec<u8> {
        let mut reply = request.to_vec();
        reply[0] = family.echo_reply_type();
        reply[2..4].fill(0);
        if family == Family::V4 {
            let checksum = internet_checksum(&reply);
            reply[2..4].copy_from_slice(&checksum.to_be_bytes());
        }
        reply
    }

    fn with_ipv4_header(icmp: &[u8]) -> Vec<u8> {
        // Version 4, IHL 6 (one word of options) to check that the header length is honoured.
        let mut packet = vec![
            0x46, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        packet.extend_from_slice(&[1, 1, 1, 0]);
        packet.extend_from_slice(icmp);
        packet
    }

    #[test]
    fn matches_only_our_reply() {
        use SocketKind::{Datagram, Raw};
        for family in [Family::V4, Family::V6] {
            let request = echo_request(family, 0xbeef, 42);
            let reply = reply_to(&request, family);
            let raw = |icmp: &[u8]| match family {
                Family::V4 => with_ipv4_header(icmp),
                Family::V6 => icmp.to_vec(),
            };
            assert!(is_echo_reply(family, Raw, &raw(&reply), 0xbeef, 42));
            assert!(is_echo_reply(family, Datagram, &reply, 0xbeef, 42));
            // Our own request, looped back to a raw socket.
            assert!(!is_echo_reply(family, Raw, &raw(&request), 0xbeef, 42));
            // A stale reply to an earlier sequence number.
            let stale = reply_to(&echo_request(family, 0xbeef, 41), family);
            assert!(!is_echo_reply(family, Raw, &raw(&stale), 0xbeef, 42));
            assert!(!is_echo_reply(family, Datagram, &stale, 0xbeef, 42));
            // Another pinger's reply (different identifier).
            let other = reply_to(&echo_request(family, 0xcafe, 42), family);
            assert!(!is_echo_reply(family, Raw, &raw(&other), 0xbeef, 42));
            assert!(!is_echo_reply(family, Datagram, &other, 0xbeef, 42));
            // A datagram socket's kernel rewrote the header identifier: still ours.
            let mut rewritten = reply.clone();
            rewritten[4..6].copy_from_slice(&0x0102u16.to_be_bytes());
            assert!(is_echo_reply(family, Datagram, &rewritten, 0xbeef, 42));
            // Truncated, empty, or foreign payload.
            assert!(!is_echo_reply(
                family,
                Datagram,
                &reply[..PACKET_LEN - 1],
                0xbeef,
                42
            ));
            assert!(!is_echo_reply(family, Raw, &[], 0xbeef, 42));
            let mut foreign = reply.clone();
            foreign[8] ^= 0xff;
            assert!(!is_echo_reply(family, Datagram, &foreign, 0xbeef, 42));
        }
        // A corrupted IPv4 packet on a raw socket.
        let mut corrupt = reply_to(&echo_request(Family::V4, 1, 2), Family::V4);
        corrupt[19] ^= 0x01;
        corrupt[8] ^= 0x01;
        assert!(!is_echo_reply(
            Family::V4,
            Raw,
            &with_ipv4_header(&corrupt),
            1,
            2
        ));
    }

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
        let watcher = watch(IcmpPinger::new(), TARGET, PingConfig::default(), sender);
        assert_send(&watcher);
    }

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

    /// Pings `target` a few times. `Ok(false)` = ICMP not permitted (acceptable when not root).
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
                    eprintln!("not root, ICMP not permitted: {}", describe(&error));
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
                eprintln!("cannot run `unshare` ({error}); namespace checks not run");
                return;
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("--- child stdout ---\n{stdout}\n--- child stderr ---\n{stderr}");
        if !stdout.contains(CHILD_STARTED) {
            // E.g. no namespaces in this container, or user namespaces disabled.
            eprintln!(
                "`unshare {}` did not start the test ({}); namespace checks not run",
                namespace_args.join(" "),
                output.status
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
                println!(
                    "cannot bring lo up (`ip link set lo up`: {other:?}); only checking ENETUNREACH"
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
            Err(error) => println!(
                "cannot set ping_group_range to \"1 0\" ({error}); NotPermitted not checked"
            ),
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
