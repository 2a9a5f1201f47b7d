//! What the core remembers about one connection and one room: plain data, so that the rules
//! live in the handlers and the memory layout (which decides how many users fit) lives here.

use std::collections::BTreeMap;

use super::ConnId;
use crate::time::Millis;

/// Capabilities a client enabled with `CAP REQ`: one bit each, in [`CAP_ORDER`]. Every
/// room membership keeps a copy (for fan-out without looking the connection up), so they are
/// two bytes, not twelve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Caps(u16);

/// The capabilities a client may enable, in `CAP LIST`'s order; a capability's bit is its
/// place here.
const CAP_ORDER: [&str; 15] = [
    "echo-message",
    "server-time",
    "multi-prefix",
    "invite-notify",
    "userhost-in-names",
    "away-notify",
    "setname",
    "message-tags",
    "batch",
    "labeled-response",
    "extended-monitor",
    "draft/read-marker",
    "draft/message-redaction",
    "draft/multiline",
    "draft/chathistory",
];

impl Caps {
    /// Turns capability `name` on or off; `false` if the core doesn't offer it.
    pub(super) fn set(&mut self, name: &str, on: bool) -> bool {
        let Some(i) = CAP_ORDER.iter().position(|c| *c == name) else {
            return false;
        };
        if on {
            self.0 |= 1 << i;
        } else {
            self.0 &= !(1 << i);
        }
        true
    }

    /// The enabled capabilities, as `CAP LIST` shows them.
    pub(super) fn list(&self) -> String {
        let on: Vec<&str> = (CAP_ORDER.iter().enumerate())
            .filter(|&(i, _)| self.has(i))
            .map(|(_, name)| *name)
            .collect();
        on.join(" ")
    }

    const fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    pub(super) const fn echo_message(self) -> bool {
        self.has(0)
    }

    pub(super) const fn server_time(self) -> bool {
        self.has(1)
    }

    pub(super) const fn multi_prefix(self) -> bool {
        self.has(2)
    }

    pub(super) const fn invite_notify(self) -> bool {
        self.has(3)
    }

    pub(super) const fn userhost_in_names(self) -> bool {
        self.has(4)
    }

    pub(super) const fn away_notify(self) -> bool {
        self.has(5)
    }

    pub(super) const fn setname(self) -> bool {
        self.has(6)
    }

    pub(super) const fn message_tags(self) -> bool {
        self.has(7)
    }

    pub(super) const fn batch(self) -> bool {
        self.has(8)
    }

    pub(super) const fn chathistory(self) -> bool {
        self.has(14)
    }

    pub(super) const fn labeled_response(self) -> bool {
        self.has(9)
    }

    pub(super) const fn extended_monitor(self) -> bool {
        self.has(10)
    }

    pub(super) const fn read_marker(self) -> bool {
        self.has(11)
    }

    pub(super) const fn message_redaction(self) -> bool {
        self.has(12)
    }

    /// `draft/multiline`, and `batch` with it (a multiline message comes as a batch).
    pub(super) const fn multiline(self) -> bool {
        self.has(13) && self.has(8)
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Conn {
    pub(super) host: String,
    /// Display form; when `Some`, the folded form is reserved in `Server::nicks`.
    pub(super) nick: Option<String>,
    pub(super) user: Option<String>,
    pub(super) realname: String,
    /// `nick!user@host`, kept current once registered.
    pub(super) prefix: String,
    pub(super) password: Option<String>,
    pub(super) registered: bool,
    /// Registration waits while a `CAP LS`/`REQ` negotiation is open.
    pub(super) cap_negotiating: bool,
    pub(super) caps: Caps,
    pub(super) invisible: bool,
    /// `+w`: receives WALLOPS.
    pub(super) wallops: bool,
    /// `+B`: a bot (its messages carry the `bot` tag).
    pub(super) bot: bool,
    /// The operator name it gave `OPER` (`+o`).
    pub(super) oper: Option<String>,
    /// Folded names it monitors (`MONITOR`).
    pub(super) monitoring: Vec<String>,
    /// (folded target, timestamp) it has read up to (`MARKREAD`).
    pub(super) read_markers: Vec<(String, String)>,
    /// From when this connection may read its name's conversations (see `chathistory`).
    pub(super) history_since: Millis,
    /// Whether the store records it as its name's holder (names with conversations only).
    pub(super) owner_kept: bool,
    /// A multiline message it is sending (`BATCH +ref draft/multiline`), until `BATCH -ref`.
    pub(super) multiline: Option<Box<super::multiline::Multiline>>,
    pub(super) away: Option<String>,
    /// Folded names of the rooms this user is in.
    pub(super) rooms: RoomKeys,
    pub(super) connected_at: Millis,
    pub(super) last_seen: Millis,
    pub(super) last_spoke: Millis,
    /// Its last message to a room (PRIVMSG or NOTICE), for the room budget: someone who spoke
    /// a second or more ago is not paused by a room an attack has overdrawn.
    pub(super) last_said: Option<Millis>,
    pub(super) ping_sent: Option<Millis>,
    /// When this connection's live timer entry is due; heap entries with another time are stale.
    pub(super) timer_due: Millis,
    /// Its recent renames and topic changes, for their limits; allocated at the first one
    /// (most connections never rename), so an idle connection pays one pointer.
    pub(super) recent: Option<Box<Recent>>,
}

/// When a connection last renamed and changed topics (the newest at the back).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Recent {
    pub(super) renames: std::collections::VecDeque<Millis>,
    pub(super) topics: std::collections::VecDeque<Millis>,
}

/// Whether one more within `window` is allowed after `recent` (forgetting what is older than
/// the window): `Err(seconds to wait)` if not, else `Ok` (the caller records it).
pub(super) fn within(
    window: crate::server::Window,
    recent: &mut std::collections::VecDeque<Millis>,
    now: Millis,
) -> Result<(), u64> {
    while recent
        .front()
        .is_some_and(|t| now.0 >= t.0.saturating_add(window.ms))
    {
        recent.pop_front();
    }
    match recent.front() {
        Some(oldest) if recent.len() >= window.count => {
            let wait_ms = oldest.0.saturating_add(window.ms) - now.0;
            Err(wait_ms.div_ceil(1000))
        }
        _ => Ok(()),
    }
}

impl Conn {
    /// A connection from `host` that opened at `now` and must register by `deadline`.
    pub(super) fn new(host: &str, now: Millis, deadline: Millis) -> Conn {
        Conn {
            host: host.to_owned(),
            nick: None,
            user: None,
            realname: String::new(),
            prefix: String::new(),
            password: None,
            registered: false,
            cap_negotiating: false,
            caps: Caps::default(),
            invisible: false,
            wallops: false,
            bot: false,
            oper: None,
            monitoring: Vec::new(),
            read_markers: Vec::new(),
            history_since: Millis::default(),
            owner_kept: false,
            multiline: None,
            away: None,
            rooms: RoomKeys::default(),
            recent: None,
            connected_at: now,
            last_seen: now,
            last_spoke: now,
            last_said: None,
            ping_sent: None,
            timer_due: deadline,
        }
    }

    /// The nick, or `*` before there is one (as numerics address an unnamed client).
    pub(super) fn display_nick(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }
}

/// The open connections, in id order (the order every broadcast and listing follows).
///
/// A type of its own so that the one "the caller knows it is open" accessor ([`Conns::live`],
/// [`Conns::live_mut`]) borrows only this field of the server, and a handler may hold a
/// connection while it touches the rooms or the counters.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Conns(
    /// Boxed: a B-tree node holds 11 entries and is often half full, so inline values would
    /// cost twice their size per connection.
    BTreeMap<ConnId, Box<Conn>>,
);

impl Conns {
    /// Connection `id`, which the caller knows is open: a handler's own connection (dispatch
    /// found it, and a handler doesn't close it before it is done with it), or one an index of
    /// the core names (`nicks`, a room's members), which never outlives its connection. A miss
    /// is a bug in the core.
    #[inline]
    pub(super) fn live(&self, id: ConnId) -> &Conn {
        self.0
            .get(&id)
            .expect("the caller knows the connection is open")
    }

    /// [`Conns::live`], mutably.
    #[inline]
    pub(super) fn live_mut(&mut self, id: ConnId) -> &mut Conn {
        self.0
            .get_mut(&id)
            .expect("the caller knows the connection is open")
    }

    /// Connection `id`, if it is open.
    #[inline]
    pub(super) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.0.get(&id).map(|c| &**c)
    }

    /// Connection `id`, if it is open.
    #[inline]
    pub(super) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.0.get_mut(&id).map(|c| &mut **c)
    }

    pub(super) fn insert(&mut self, id: ConnId, conn: Conn) {
        self.0.insert(id, Box::new(conn));
    }

    pub(super) fn remove(&mut self, id: ConnId) {
        self.0.remove(&id);
    }

    /// Every connection, in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.0.iter().map(|(&id, c)| (id, &**c))
    }

    /// Every connection's id, in order.
    pub(super) fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.0.keys().copied()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// A user's rooms as a sorted vector: a user is in a handful of rooms (at most
/// `max_rooms_per_user`), and a `BTreeSet` would allocate a whole 11-slot node for the first.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct RoomKeys(Vec<String>);

impl RoomKeys {
    pub(super) fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Where `key` is, or where it would go.
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|k| k.as_str().cmp(key))
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub(super) fn insert(&mut self, key: String) -> bool {
        match self.find(&key) {
            Ok(_) => false,
            Err(at) => {
                // Exact growth: most users are in one room, and the default would make room
                // for four.
                self.0.reserve_exact(1);
                self.0.insert(at, key);
                true
            }
        }
    }

    pub(super) fn remove(&mut self, key: &str) -> bool {
        match self.find(key) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn is_disjoint(&self, other: &RoomKeys) -> bool {
        !self.0.iter().any(|k| other.contains(k))
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Topic {
    pub(super) text: String,
    pub(super) setter: String,
    pub(super) at: Millis,
}

/// One member of a room: its capabilities (a room message goes to every member, and what the
/// line looks like depends only on these, so the fan-out needs no lookup per recipient) and
/// its standing in the room.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Member {
    pub(super) caps: Caps,
    /// `@`: may change the room's modes and topic, kick, invite.
    pub(super) op: bool,
    /// `+`: may speak in a moderated room.
    pub(super) voice: bool,
}

impl Member {
    /// Its prefixes in a member list: the highest (`@` before `+`), or all with
    /// `multi-prefix`.
    pub(super) fn prefixes(self, all: bool) -> &'static str {
        match (self.op, self.voice) {
            (true, true) if all => "@+",
            (true, _) => "@",
            (false, true) => "+",
            (false, false) => "",
        }
    }
}

/// A ban: who set it, when.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Ban {
    /// `nick!user@host` with `*` and `?`, as set (the match is case-insensitive).
    pub(super) mask: String,
    pub(super) setter: String,
    pub(super) at: Millis,
}

/// A room's modes (`CHANMODES=b,k,l,imnst`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Modes {
    /// `+i`: only the invited (and operators) may join.
    pub(super) invite_only: bool,
    /// `+m`: only voiced members and operators may speak.
    pub(super) moderated: bool,
    /// `+n`: only members may send to it.
    pub(super) no_external: bool,
    /// `+s`: not listed, not shown in WHOIS or WHO to outsiders.
    pub(super) secret: bool,
    /// `+t`: only operators change the topic.
    pub(super) topic_ops: bool,
    /// `+k`: the key JOIN must give.
    pub(super) key: Option<String>,
    /// `+l`: at most this many members.
    pub(super) limit: Option<usize>,
    /// `+b`: who may not join or speak.
    pub(super) bans: Vec<Ban>,
    /// `+e`: who a ban does not stop.
    pub(super) excepts: Vec<Ban>,
    /// `+I`: who may join an invite-only room without an invitation.
    pub(super) invex: Vec<Ban>,
    /// Who was invited (until they join, or the room goes): let in past `+i`, `+k`, `+l`.
    pub(super) invited: Vec<ConnId>,
}

impl Default for Modes {
    /// `+nt`, as ircds create rooms.
    fn default() -> Self {
        Modes {
            invite_only: false,
            moderated: false,
            no_external: true,
            secret: false,
            topic_ops: true,
            key: None,
            limit: None,
            bans: Vec::new(),
            excepts: Vec::new(),
            invex: Vec::new(),
            invited: Vec::new(),
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Room {
    pub(super) name: String,
    pub(super) members: BTreeMap<ConnId, Member>,
    pub(super) topic: Option<Topic>,
    pub(super) created: Millis,
    /// What its messages may still put in each member's queue (see `Config::room_budget`).
    pub(super) budget: Budget,
    pub(super) modes: Modes,
    /// Its recent messages that may still be redacted: their ids and authors, oldest first
    /// (see `Config::redactable`).
    pub(super) recent: std::collections::VecDeque<(Box<str>, ConnId)>,
}

/// A room's budget as a token bucket in byte-milliseconds (bytes × 1000, so that refills at
/// any rate stay exact in integers): full at `burst × 1000`, `rate` added per millisecond.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Budget {
    tokens: i64,
    updated: Millis,
    started: bool,
}

impl Budget {
    /// Takes `bytes` at `now`; returns when the sender may go on, if it overdrew.
    pub(super) fn charge(
        &mut self,
        now: Millis,
        bytes: usize,
        limit: crate::server::RoomBudget,
    ) -> Option<Millis> {
        let full = i64::try_from(limit.burst_bytes.saturating_mul(1000)).unwrap_or(i64::MAX);
        let rate = i64::try_from(limit.bytes_per_second)
            .unwrap_or(i64::MAX)
            .max(1);
        if !self.started {
            (self.tokens, self.updated, self.started) = (full, now, true);
        }
        let elapsed = i64::try_from(now.0.saturating_sub(self.updated.0)).unwrap_or(i64::MAX);
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(full);
        self.updated = now;
        let cost = i64::try_from(bytes)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        self.tokens = self.tokens.saturating_sub(cost);
        (self.tokens < 0).then(|| {
            let wait = (-self.tokens + rate - 1) / rate;
            Millis(
                now.0
                    .saturating_add(u64::try_from(wait).unwrap_or(u64::MAX)),
            )
        })
    }
}

impl Room {
    /// An empty room called `name`, created at `now`: `+nt`, or for the default room `+n`
    /// (it has no creator to be its operator, so anyone may set its topic until a server
    /// operator sets `+t`).
    pub(super) fn new(name: String, now: Millis, default: bool) -> Room {
        Room {
            name,
            members: BTreeMap::new(),
            topic: None,
            created: now,
            budget: Budget::default(),
            recent: Default::default(),
            modes: Modes {
                topic_ops: !default,
                ..Modes::default()
            },
        }
    }
}
