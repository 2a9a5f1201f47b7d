//! Who may connect, and the flood credit an address shares: limits per address (an IPv4
//! address, or an IPv6 /64 — what one machine or one home usually holds), so that one machine
//! can neither hold every slot nor multiply its burst by opening more connections.
//!
//! - At most [`Limits::per_ip`] connections at once per address.
//! - At most [`Limits::connects`] new connections per address (a token bucket): a reconnect
//!   loop or a connection flood is refused before it costs the core anything.
//! - At most [`Limits::max_unregistered`] connections still registering, server-wide: they hold
//!   memory and names without being anyone yet.
//! - Every connection of one address draws its input flood credit from one shared bucket.
//! - Addresses in [`Limits::trusted`] (a school or office behind a few NAT addresses) are exempt
//!   from the per-address limits and get a flood bucket per connection.
//!
//! A refused connection is told why in one `ERROR` line and closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use tokio::time::Instant;

use super::flood::{Bucket, FloodControl};

/// The per-address limits (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Connections at once per address; 0 = no limit.
    pub per_ip: usize,
    /// New connections per address: a burst, then a rate; `None` = no limit.
    pub connects: Option<FloodControl>,
    /// Connections that have not registered yet, server-wide; 0 = no limit.
    pub max_unregistered: usize,
    /// Exempt from the per-address limits.
    pub trusted: Vec<IpNet>,
    /// How much of an IPv6 address is one address here (64: a /64, what one home or host
    /// usually gets).
    pub ipv6_prefix: u8,
}

impl Default for Limits {
    /// ergo's defaults, about: 16 at once, a burst of 16 new connections then one every 6 s,
    /// 1,000 registering.
    fn default() -> Self {
        Limits {
            per_ip: 16,
            connects: Some(FloodControl {
                burst: 16,
                per_second: 1.0 / 6.0,
            }),
            max_unregistered: 1000,
            trusted: Vec::new(),
            ipv6_prefix: 64,
        }
    }
}

impl Limits {
    /// No per-address limits at all (benchmarks, tests of other things).
    pub fn none() -> Limits {
        Limits {
            per_ip: 0,
            connects: None,
            max_unregistered: 0,
            trusted: Vec::new(),
            ipv6_prefix: 64,
        }
    }
}

/// Why a connection was refused: its `ERROR` line says it, with what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    TooMany(usize),
    TooFast,
    Registering(usize),
}

impl Refusal {
    pub(super) fn error_line(self) -> String {
        let why = match self {
            Refusal::TooMany(n) => format!(
                "too many connections from your address (at most {n} at once); close one and try again"
            ),
            Refusal::TooFast => {
                "too many new connections from your address; wait a minute and try again".into()
            }
            Refusal::Registering(n) => {
                format!("too many connections are still registering ({n}); try again in a minute")
            }
        };
        format!("ERROR :Closing Link: {why}\r\n")
    }
}

/// One address's standing.
#[derive(Debug)]
struct PerAddress {
    open: usize,
    connects: Option<Bucket>,
    /// The flood credit its connections share.
    flood: Option<Flood>,
}

/// An address's flood credit: shared by its open connections, or, once none is open, kept in
/// the address's entry itself until it comes back (so reconnecting does not refill it). Kept
/// inline because an attack leaves hundreds of such entries behind for a while: as a block
/// each, they sat scattered among the pages the attack's connections had used and kept those
/// pages resident after everything around them was freed (docs/benchmarks.md,
/// attack-200x20).
#[derive(Debug)]
enum Flood {
    Shared(Credit),
    Idle(Bucket),
}

impl Flood {
    /// The credit for one more connection, shared again if it was idle.
    fn share(&mut self) -> Credit {
        if let Flood::Idle(bucket) = self {
            *self = Flood::Shared(Credit(Arc::new(Mutex::new(bucket.clone()))));
        }
        match self {
            Flood::Shared(credit) => credit.clone(),
            Flood::Idle(_) => unreachable!("made shared above"),
        }
    }

    /// Keeps the credit inline once no connection holds it any more.
    fn idle(&mut self) {
        if let Flood::Shared(credit) = self
            && Arc::strong_count(&credit.0) == 1
        {
            let bucket = credit.bucket().clone();
            *self = Flood::Idle(bucket);
        }
    }
}

/// The admission state, shared by the accept loop and every connection task (which gives its
/// place back when it ends, through its [`Ticket`]).
#[derive(Debug)]
pub(super) struct Admission {
    limits: Limits,
    flood: Option<FloodControl>,
    by_address: HashMap<IpAddr, PerAddress>,
    /// Admissions since the last sweep of forgotten addresses.
    since_sweep: usize,
}

/// Sweep addresses with nothing open and a full connect bucket after this many admissions
/// (or when the map holds this many entries beyond the open connections).
const SWEEP_EVERY: usize = 1024;

impl Admission {
    pub(super) fn new(limits: Limits, flood: Option<FloodControl>) -> Arc<Mutex<Admission>> {
        Arc::new(Mutex::new(Admission {
            limits,
            flood,
            by_address: HashMap::new(),
            since_sweep: 0,
        }))
    }

    /// The key an address (IPv4-mapped IPv6 already unmapped by [`Admission::admit`]) is
    /// counted under: IPv4 as it is, IPv6 cut to its prefix.
    fn key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(_) => IpNet::new(ip, self.limits.ipv6_prefix.min(128))
                .map(|net| net.network())
                .unwrap_or(ip),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.limits.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Admits a connection from `ip` (with `registering` connections not registered yet), or
    /// says why not.
    pub(super) fn admit(
        this: &Arc<Mutex<Admission>>,
        ip: IpAddr,
        registering: usize,
        now: Instant,
    ) -> Result<Ticket, Refusal> {
        let mut me = this.lock().unwrap_or_else(|e| e.into_inner());
        let max = me.limits.max_unregistered;
        if max > 0 && registering >= max {
            return Err(Refusal::Registering(max));
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if me.trusted(ip) {
            let flood = me.flood.map(|f| Credit::new(f, now));
            return Ok(Ticket {
                admission: this.clone(),
                key: None,
                flood,
            });
        }
        me.since_sweep += 1;
        if me.since_sweep >= SWEEP_EVERY {
            me.sweep(now);
        }
        let key = me.key(ip);
        let (per_ip, connects, flood) = (me.limits.per_ip, me.limits.connects, me.flood);
        let entry = me.by_address.entry(key).or_insert_with(|| PerAddress {
            open: 0,
            connects: connects.map(|c| Bucket::new(c, now)),
            flood: flood.map(|f| Flood::Idle(Bucket::new(f, now))),
        });
        if per_ip > 0 && entry.open >= per_ip {
            return Err(Refusal::TooMany(per_ip));
        }
        if let Some(bucket) = &mut entry.connects {
            if bucket.ready_at(now).is_some() {
                return Err(Refusal::TooFast);
            }
            bucket.take(now);
        }
        entry.open += 1;
        let flood = entry.flood.as_mut().map(Flood::share);
        Ok(Ticket {
            admission: this.clone(),
            key: Some(key),
            flood,
        })
    }

    /// Forgets addresses with nothing open whose connect bucket has refilled: they are as if
    /// never seen.
    fn sweep(&mut self, now: Instant) {
        self.since_sweep = 0;
        self.by_address
            .retain(|_, a| a.open > 0 || a.connects.as_mut().is_some_and(|b| !b.is_full(now)));
    }

    fn release(&mut self, key: IpAddr) {
        if let Some(entry) = self.by_address.get_mut(&key) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 && entry.connects.is_none() {
                self.by_address.remove(&key);
            } else if entry.open == 0
                && let Some(flood) = &mut entry.flood
            {
                flood.idle();
            }
        }
    }

    /// Addresses remembered (for tests: the map must not grow without bound).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.by_address.len()
    }
}

/// A connection's place: given back when dropped (its task ended).
#[derive(Debug)]
pub(super) struct Ticket {
    admission: Arc<Mutex<Admission>>,
    /// `None` for a trusted address (not counted).
    key: Option<IpAddr>,
    /// The input flood credit this connection draws from (its address's, or its own).
    pub(super) flood: Option<Credit>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // The credit first, so that the address's entry holds the last reference to it.
        self.flood = None;
        if let Some(key) = self.key {
            self.admission
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(key);
        }
    }
}

/// Flood credit, possibly shared by several connections of one address.
#[derive(Debug, Clone)]
pub(super) struct Credit(Arc<Mutex<Bucket>>);

impl Credit {
    fn new(config: FloodControl, now: Instant) -> Credit {
        Credit(Arc::new(Mutex::new(Bucket::new(config, now))))
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `None` if a line may be read now, else when the next token will be there.
    pub(super) fn ready_at(&self, now: Instant) -> Option<Instant> {
        self.bucket().ready_at(now)
    }

    /// Spends `tokens` (a line is one; a large reply costs more).
    pub(super) fn take(&self, now: Instant, tokens: f64) {
        self.bucket().take_n(now, tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_holds_at_most_per_ip_connections_and_gets_its_place_back() {
        let now = Instant::now();
        let adm = Admission::new(
            Limits {
                per_ip: 2,
                connects: None,
                ..Limits::default()
            },
            None,
        );
        let a = Admission::admit(&adm, ip("10.0.0.1"), 0, now).expect("first");
        let _b = Admission::admit(&adm, ip("10.0.0.1"), 0, now).expect("second");
        assert_eq!(
            Admission::admit(&adm, ip("10.0.0.1"), 0, now).unwrap_err(),
            Refusal::TooMany(2)
        );
        // Another address is not affected; an IPv4-mapped IPv6 address is the same address.
        Admission::admit(&adm, ip("10.0.0.2"), 0, now).expect("another address");
        assert_eq!(
            Admission::admit(&adm, ip("::ffff:10.0.0.1"), 0, now).unwrap_err(),
            Refusal::TooMany(2)
        );
        drop(a);
        Admission::admit(&adm, ip("10.0.0.1"), 0, now).expect("a place was given back");
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let now = Instant::now();
        let adm = Admission::new(
            Limits {
                per_ip: 1,
                connects: None,
                ..Limits::default()
            },
            None,
        );
        let _a = Admission::admit(&adm, ip("2001:db8:1:2::1"), 0, now).expect("first");
        assert_eq!(
            Admission::admit(&adm, ip("2001:db8:1:2:ffff::9"), 0, now).unwrap_err(),
            Refusal::TooMany(1),
            "same /64"
        );
        Admission::admit(&adm, ip("2001:db8:1:3::1"), 0, now).expect("another /64");
    }

    #[test]
    fn new_connections_per_address_are_rate_limited() {
        let t0 = Instant::now();
        let adm = Admission::new(
            Limits {
                per_ip: 0,
                connects: Some(FloodControl {
                    burst: 3,
                    per_second: 0.5,
                }),
                ..Limits::default()
            },
            None,
        );
        for _ in 0..3 {
            drop(Admission::admit(&adm, ip("10.0.0.1"), 0, t0).expect("within the burst"));
        }
        assert_eq!(
            Admission::admit(&adm, ip("10.0.0.1"), 0, t0).unwrap_err(),
            Refusal::TooFast
        );
        Admission::admit(&adm, ip("10.0.0.1"), 0, t0 + Duration::from_secs(2))
            .expect("one more after 2 s");
    }

    #[test]
    fn trusted_ranges_are_exempt_and_get_their_own_flood_credit() {
        let now = Instant::now();
        let adm = Admission::new(
            Limits {
                per_ip: 1,
                trusted: vec!["10.0.0.0/8".parse().unwrap()],
                ..Limits::default()
            },
            Some(FloodControl {
                burst: 1,
                per_second: 1.0,
            }),
        );
        let a = Admission::admit(&adm, ip("10.1.2.3"), 0, now).expect("trusted");
        let b = Admission::admit(&adm, ip("10.1.2.3"), 0, now).expect("trusted again");
        a.flood.as_ref().unwrap().take(now, 1.0);
        assert!(a.flood.as_ref().unwrap().ready_at(now).is_some());
        assert_eq!(
            b.flood.as_ref().unwrap().ready_at(now),
            None,
            "credit of its own"
        );
        // An untrusted address shares one bucket between its connections.
        let adm = Admission::new(
            Limits {
                per_ip: 4,
                ..Limits::default()
            },
            Some(FloodControl {
                burst: 1,
                per_second: 1.0,
            }),
        );
        let c = Admission::admit(&adm, ip("192.0.2.1"), 0, now).unwrap();
        let d = Admission::admit(&adm, ip("192.0.2.1"), 0, now).unwrap();
        c.flood.as_ref().unwrap().take(now, 1.0);
        assert!(
            d.flood.as_ref().unwrap().ready_at(now).is_some(),
            "the burst is the address's, not each connection's"
        );
    }

    #[test]
    fn an_address_keeps_its_spent_credit_inline_while_none_of_its_connections_is_open() {
        let now = Instant::now();
        let adm = Admission::new(
            Limits::default(),
            Some(FloodControl {
                burst: 1,
                per_second: 1.0,
            }),
        );
        let a = Admission::admit(&adm, ip("192.0.2.1"), 0, now).unwrap();
        a.flood.as_ref().unwrap().take(now, 1.0);
        drop(a);
        let idle = |adm: &Arc<Mutex<Admission>>| {
            let me = adm.lock().unwrap();
            matches!(me.by_address[&ip("192.0.2.1")].flood, Some(Flood::Idle(_)))
        };
        assert!(
            idle(&adm),
            "no block of its own once its last connection left"
        );
        let b = Admission::admit(&adm, ip("192.0.2.1"), 0, now).unwrap();
        assert!(!idle(&adm));
        assert!(
            b.flood.as_ref().unwrap().ready_at(now).is_some(),
            "reconnecting does not refill the burst"
        );
        let c = Admission::admit(&adm, ip("192.0.2.1"), 0, now).unwrap();
        drop(b);
        assert!(!idle(&adm), "still shared with the connection left open");
        drop(c);
        assert!(idle(&adm));
    }

    #[test]
    fn registering_connections_are_capped_for_everyone() {
        let now = Instant::now();
        let adm = Admission::new(
            Limits {
                max_unregistered: 5,
                trusted: vec!["10.0.0.0/8".parse().unwrap()],
                ..Limits::default()
            },
            None,
        );
        assert_eq!(
            Admission::admit(&adm, ip("192.0.2.1"), 5, now).unwrap_err(),
            Refusal::Registering(5)
        );
        assert_eq!(
            Admission::admit(&adm, ip("10.0.0.1"), 5, now).unwrap_err(),
            Refusal::Registering(5)
        );
        Admission::admit(&adm, ip("192.0.2.1"), 4, now).expect("below the cap");
    }

    #[test]
    fn forgotten_addresses_do_not_pile_up() {
        let t0 = Instant::now();
        let adm = Admission::new(Limits::default(), None);
        for i in 0..5000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(Admission::admit(&adm, addr, 0, t0).expect("admitted"));
        }
        // Much later every bucket has refilled: the next sweep forgets them all.
        let later = t0 + Duration::from_secs(3600);
        for i in 0..SWEEP_EVERY as u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            drop(Admission::admit(&adm, addr, 0, later).expect("admitted"));
        }
        let remembered = adm.lock().unwrap().remembered();
        assert!(remembered < 2 * SWEEP_EVERY, "{remembered}");
    }

    #[test]
    fn refusals_say_what_to_do() {
        for r in [
            Refusal::TooMany(16),
            Refusal::TooFast,
            Refusal::Registering(1000),
        ] {
            let line = r.error_line();
            assert!(line.starts_with("ERROR :Closing Link: ") && line.ends_with("\r\n"));
            assert!(line.contains("try again"), "{line}");
            assert!(line.len() <= 512);
        }
    }
}
