//! The chat state machine: every IRC behaviour of the server, with no I/O.
//!
//! Inputs are `handle_*` calls that take the current time; outputs are drained with
//! [`Server::poll_output`] and the next wake-up is [`Server::poll_timeout`] (quinn-proto's shape).
//! Handlers only append to the output queue; the runtime moves the bytes.
//!
//! Determinism: every collection that is ever iterated is ordered (`BTreeMap`/`BTreeSet` keyed by
//! connection id or folded name); the one `HashMap` (nick → connection) is only used for lookups.
//!
//! There is one [`Server`] type; its `impl` is spread over one child module per concern
//! (quinn-proto's `connection/` shape), so that a command's rules are read in one place:
//!
//! - this file: the state, the inputs (`handle_*`) other than timeouts, the outputs
//!   (`poll_*`) and the getters.
//! - `config`: [`Config`], and the bugs a test may plant (`Bug`).
//! - `state`: what the core remembers of one connection and one room.
//! - `commands`: the command table, and the one place that checks registration and parameter
//!   counts before a handler runs.
//! - `registration`: CAP, PASS, NICK, USER and the welcome burst (ISUPPORT, LUSERS, MOTD).
//! - `rooms`: JOIN, PART, TOPIC, NAMES, LIST, and who shares a room with whom.
//! - `messaging`: PRIVMSG and NOTICE, the hot path.
//! - `queries`: WHO, WHOIS, MODE, AWAY, ISON, USERHOST, VERSION, TIME.
//! - `leaving`: QUIT, and forgetting a connection however it ends.
//! - `timers`: PING and PONG, liveness pings, the registration deadline, the timer heap.
//! - `replies`: encoding lines and queueing them (numerics, one recipient, a fan-out).

mod chathistory;
mod commands;
mod config;
mod help;
mod leaving;
mod messaging;
mod moderation;
mod monitor;
mod multiline;
mod operators;
mod queries;
mod read_marker;
mod redaction;
mod registration;
mod replies;
mod rooms;
mod snapshot;
mod state;
mod timers;
mod whowas;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::fmt;

use bytes::Bytes;

#[cfg(feature = "deliberate-bugs")]
pub use self::config::Bug;
pub use self::config::{Config, RoomBudget, Window};
pub use self::operators::Operator;
pub use self::replies::{error_line, quit_reason};
use self::state::{Conn, Conns, Room};
use crate::history::{History, MemoryHistory, Retention};
use crate::limits::*;
use crate::message::{Message, ParseError};
use crate::names::casefold;
use crate::time::Millis;

/// Identifies one connection for its whole life. The core hands them out and never reuses one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ConnId(pub u64);

impl ConnId {
    /// In a cluster: the number of the server this connection is on (the top half of its id).
    pub fn server(self) -> u64 {
        self.0 >> 32
    }
}

/// Whether `id` is one of this server's own connections, `cluster` being the server's number
/// in a cluster (always, outside one).
fn is_local_to(cluster: Option<u64>, id: ConnId) -> bool {
    cluster.is_none_or(|n| id.server() == n)
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// An effect the runtime must carry out, in the order they are drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Queue `line` (a whole IRC line with its CR LF) for `to`. The same `Bytes` is shared by
    /// every recipient of a broadcast: it is encoded once.
    Send { to: ConnId, line: Bytes },
    /// Queue the same `line` for each of `to`, in that order: a fan-out (a room message, a
    /// QUIT to everyone who shared a room) as one entry rather than one per recipient.
    Broadcast { to: Vec<ConnId>, line: Bytes },
    /// Flush what is queued for `conn`, then close it. The core has already forgotten it.
    Close { conn: ConnId, reason: String },
}

/// The chat server's state machine. See the module docs.
///
/// In a cluster, its state is what a snapshot carries (`snapshot`): every field the log decides
/// is serialized; what is this server's own business (its settings, its timers, its output,
/// its number, the line being handled) is `#[serde(skip)]`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Server {
    #[serde(skip)]
    config: Config,
    #[serde(skip)]
    started: Millis,
    #[serde(skip)]
    next_id: u64,
    conns: Conns,
    /// Folded nick → its holder (registered or not: a name is reserved from `NICK` on, so that
    /// two connections can never hold one name, even mid-registration).
    nicks: HashMap<String, ConnId>,
    rooms: BTreeMap<String, Room>,
    /// Each live connection has exactly one entry; stale entries are re-armed lazily when popped,
    /// so activity costs no heap operation (see `handle_timeout`).
    #[serde(skip)]
    timers: BinaryHeap<Reverse<(Millis, ConnId)>>,
    #[serde(skip)]
    out: VecDeque<Output>,
    /// Registered users, and those of them with `+i`: kept as counts because every
    /// registration reports them (`LUSERS`), and counting the map each time is O(n) per user.
    users: usize,
    invisible_users: usize,
    /// Registered users connected to this server (all of them, outside a cluster).
    #[serde(skip)]
    local_users: usize,
    /// Servers in the cluster (1 outside one), as LUSERS shows them.
    servers: usize,
    /// In a cluster: each server's name by its number (WHOIS shows a person's server).
    server_names: BTreeMap<u64, String>,
    max_users: usize,
    #[serde(skip)]
    shutting_down: bool,
    /// Set while a line is handled whose message overdrew a room's budget: its sender is not
    /// to be read again before then ([`Server::take_pause`]).
    #[serde(skip)]
    pause: Option<(ConnId, Millis)>,
    /// Recent `OPER` password checks, server-wide.
    oper_checks: operators::OperChecks,
    /// Who recently held which name (`WHOWAS`).
    whowas: whowas::History,
    /// Recent direct messages that may still be redacted, oldest first.
    recent_direct: redaction::Direct,
    /// Message ids given so far (see `next_msgid`).
    msgids: u64,
    /// The client-only tags (`+key`, value) of the line being handled.
    #[serde(skip)]
    client_tags: Vec<(String, String)>,
    /// The label of the line being handled, until its replies are labelled (labeled-response).
    #[serde(skip)]
    label: Option<String>,
    /// Positions in `out` of lines to the sender that are not replies to its line (its own
    /// message delivered to itself), which labeled-response leaves unlabelled.
    #[serde(skip)]
    not_replies: Vec<usize>,
    /// Folded name → who monitors it (`MONITOR`).
    watchers: HashMap<String, Vec<ConnId>>,
    /// Where what was said is kept (`CHATHISTORY`, the replay on join).
    #[serde(skip, default = "snapshot::no_history")]
    history: Box<dyn History>,
    /// In a cluster ([`crate::cluster`]): this server's number, the top half of its own
    /// connections' ids (0 until it has joined: nothing is its own yet). `None`: a single server,
    /// every connection its own.
    #[serde(skip)]
    cluster: Option<u64>,
    /// Connections whose liveness timer ran out in a cluster, with the reason: the runtime
    /// publishes their departure ([`Server::take_expired`]).
    #[serde(skip)]
    expired: Vec<(ConnId, String)>,
    /// The first half of every message id (see `next_msgid`): when this server started, or, in
    /// a cluster, when the cluster's log began (the same on every server).
    msgid_epoch: Millis,
    /// Room messages relayed so far (drives `Bug::DropForOneMember`).
    #[cfg(feature = "deliberate-bugs")]
    #[serde(skip)]
    relayed: u64,
}

/// In a cluster: the ids of server `number`'s connections (`number << 32 | n`).
fn ids_of(number: u64) -> std::ops::RangeInclusive<ConnId> {
    ConnId(number << 32)..=ConnId((number << 32) | u64::from(u32::MAX))
}

impl Server {
    /// A server that started at `now`, keeping history in memory (the default [`Retention`]).
    pub fn new(config: Config, now: Millis) -> Server {
        let history = MemoryHistory::new(Retention::default());
        Server::with_history(config, now, Box::new(history))
    }

    /// A server that started at `now`, keeping history in `history`.
    pub fn with_history(config: Config, now: Millis, history: Box<dyn History>) -> Server {
        let mut server = Server {
            config,
            started: now,
            next_id: 1,
            conns: Conns::default(),
            nicks: HashMap::new(),
            rooms: BTreeMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            users: 0,
            invisible_users: 0,
            local_users: 0,
            servers: 1,
            server_names: BTreeMap::new(),
            max_users: 0,
            shutting_down: false,
            pause: None,
            oper_checks: Default::default(),
            whowas: Default::default(),
            recent_direct: Default::default(),
            msgids: 0,
            client_tags: Vec::new(),
            label: None,
            not_replies: Vec::new(),
            watchers: HashMap::new(),
            history,
            cluster: None,
            expired: Vec::new(),
            msgid_epoch: now,
            #[cfg(feature = "deliberate-bugs")]
            relayed: 0,
        };
        if let Some(name) = server.config.default_room.clone() {
            server
                .rooms
                .insert(casefold(&name), Room::new(name, now, true));
        }
        server
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----------------------------------------------------------------------------------------
    // Inputs (`handle_timeout` is in `timers`)
    // ----------------------------------------------------------------------------------------

    /// A connection from `host` (the peer's address, shown in its user's `nick!user@host`) opened.
    pub fn handle_connect(&mut self, now: Millis, host: &str) -> ConnId {
        let id = self.reserve_id();
        self.handle_connect_as(now, id, host);
        id
    }

    /// The id the next connection of this server gets. A cluster's runtime takes it when a
    /// connection opens and tells every server with [`Server::handle_connect_as`].
    pub fn reserve_id(&mut self) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        id
    }

    /// A connection `id` (from [`Server::reserve_id`] here or on another server of the
    /// cluster) from `host` opened. Only this server's own connections are timed.
    pub fn handle_connect_as(&mut self, now: Millis, id: ConnId, host: &str) {
        if self.conns.get(id).is_some() {
            return;
        }
        let local = self.is_local(id);
        if self.shutting_down && local {
            self.close(id, SHUTDOWN_ERROR, SHUTDOWN_ERROR);
            return;
        }
        let deadline = now.plus(self.config.registration_timeout_ms);
        let mut conn = Conn::new(host, now, deadline);
        if local {
            self.timers.push(Reverse((deadline, id)));
        } else {
            conn.timer_due = Millis(u64::MAX);
        }
        self.conns.insert(id, conn);
    }

    /// This server is one of a cluster's replicas (see [`crate::cluster`]): every server applies
    /// the same inputs in the same order. `number` is its own number there (0 until it has
    /// one): its connections' ids start at `number << 32`, and only they are timed and
    /// fanned out to.
    pub fn set_cluster(&mut self, number: u64) {
        self.cluster = Some(number);
        if number != 0 {
            self.next_id = (number << 32) | 1;
        }
    }

    /// Whether `id` is one of this server's own connections (always, outside a cluster).
    pub fn is_local(&self, id: ConnId) -> bool {
        is_local_to(self.cluster, id)
    }

    /// The ids of this server's own connections, as a range (a contiguous one: a room's
    /// members are ordered by id, so a fan-out walks only its own).
    pub(super) fn local_ids(&self) -> std::ops::RangeInclusive<ConnId> {
        match self.cluster {
            None => ConnId(0)..=ConnId(u64::MAX),
            Some(n) => ids_of(n),
        }
    }

    /// In a cluster: how many servers it has (LUSERS).
    pub fn set_servers(&mut self, servers: usize) {
        self.servers = servers.max(1);
    }

    /// In a cluster: server `number` is called `name` (`None`: it is gone).
    pub fn set_server_name(&mut self, number: u64, name: Option<&str>) {
        match name {
            Some(name) => self.server_names.insert(number, name.to_owned()),
            None => self.server_names.remove(&number),
        };
    }

    /// The name of the server `id` is connected to, as WHOIS shows it.
    pub(super) fn server_name_of(&self, id: ConnId) -> String {
        (self
            .cluster
            .and_then(|_| self.server_names.get(&id.server())))
        .unwrap_or(&self.config.server_name)
        .clone()
    }

    /// In a cluster: message ids begin with `epoch` (when the cluster's log began), so that
    /// every server gives a message the same id.
    pub fn set_msgid_epoch(&mut self, epoch: Millis) {
        self.msgid_epoch = epoch;
    }

    /// Every connection of server `number` leaves with `reason` (it shut down, or stopped
    /// answering): its users quit in every room; its names are free.
    pub fn handle_server_gone(&mut self, now: Millis, number: u64, reason: &str) {
        let theirs = ids_of(number);
        let ids: Vec<ConnId> = self.conns.ids().filter(|id| theirs.contains(id)).collect();
        for id in ids {
            self.quit(now, id, reason);
        }
    }

    /// In a cluster, the connections whose liveness timer ran out since the last call, with
    /// the reason: the runtime publishes their departure, which every server then applies.
    pub fn take_expired(&mut self) -> Vec<(ConnId, String)> {
        std::mem::take(&mut self.expired)
    }

    /// One line arrived from `conn`, without its line ending.
    pub fn handle_line(&mut self, now: Millis, conn: ConnId, line: &[u8]) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.last_seen = now;
        let Ok(text) = std::str::from_utf8(line) else {
            // ergo's behaviour: reject the line, keep the client (we advertise UTF8ONLY).
            self.send_server(
                now,
                conn,
                "FAIL",
                &[
                    "*",
                    "INVALID_UTF8",
                    "Your message was not valid UTF-8 and was dropped; set your client's character encoding to UTF-8",
                ],
            );
            return;
        };
        if text.bytes().all(|b| b == b' ') {
            return; // The spec says to ignore empty lines silently.
        }
        let msg = match Message::parse(text) {
            Ok(msg) => msg,
            Err(ParseError::BodyTooLong { .. } | ParseError::TagsTooLong { .. }) => {
                return self.reply_too_long(now, conn);
            }
            Err(ParseError::ForbiddenByte { .. }) => {
                // A NUL or bare CR relayed to others could inject lines into their clients.
                return self.send_server(
                    now,
                    conn,
                    "FAIL",
                    &[
                        "*",
                        "INVALID_MESSAGE",
                        "Your message contained a NUL or carriage-return character and was dropped",
                    ],
                );
            }
            Err(_) => return,
        };
        self.dispatch(now, conn, &msg);
    }

    /// `conn` sent a line longer than the codec accepts; the line itself was discarded.
    pub fn handle_line_too_long(&mut self, now: Millis, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.last_seen = now;
            self.reply_too_long(now, conn);
        }
    }

    /// `conn` closed without `QUIT` (the peer went away, a socket error, its send queue
    /// overflowed): its user leaves with `reason`. Unknown or already-closed ids are ignored.
    pub fn handle_disconnect(&mut self, now: Millis, conn: ConnId, reason: &str) {
        self.remove_conn(now, conn, reason);
    }

    /// Shut down: every connection gets a notice and `ERROR :Server shutting down`, then is
    /// closed. Later connections are refused the same way.
    pub fn handle_shutdown(&mut self, now: Millis) {
        self.shutting_down = true;
        let ids: Vec<ConnId> = self.conns.ids().filter(|&id| self.is_local(id)).collect();
        for id in ids {
            let nick = self.conns.live(id).display_nick().to_owned();
            self.send_server(now, id, "NOTICE", &[&nick, SHUTDOWN_NOTICE]);
            self.close(id, SHUTDOWN_ERROR, SHUTDOWN_ERROR);
        }
        if self.cluster.is_some() {
            // The other servers hear of it from the cluster's log; this one keeps its picture
            // of the chat until it exits.
            self.timers.clear();
            return;
        }
        self.conns.clear();
        self.users = 0;
        self.invisible_users = 0;
        self.local_users = 0;
        self.nicks.clear();
        self.rooms.clear();
        self.timers.clear();
    }

    // ----------------------------------------------------------------------------------------
    // Outputs and getters
    // ----------------------------------------------------------------------------------------

    /// The next effect to carry out, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// After a line from `conn`: until when its next lines must wait, because a message in it
    /// overdrew a room's budget ([`Config::room_budget`]). The runtime stops reading `conn`
    /// until then; the message itself was relayed.
    pub fn take_pause(&mut self, conn: ConnId) -> Option<Millis> {
        match self.pause.take() {
            Some((paused, until)) if paused == conn => Some(until),
            _ => None,
        }
    }

    /// When `handle_timeout` should next be called, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.peek().map(|Reverse((due, _))| *due)
    }

    /// Entries in the timer heap, live and stale (at most about twice the connections).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Open connections, registered or not.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Registered users.
    pub fn user_count(&self) -> usize {
        self.users
    }

    /// The nick `conn` holds (reserved or registered), if any.
    pub fn nick(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(conn)?.nick.as_deref()
    }

    /// Which connection holds `nick` (compared case-insensitively), if any.
    pub fn holder_of(&self, nick: &str) -> Option<ConnId> {
        self.nicks.get(&self.nick_key(nick)).copied()
    }

    /// The lookup key of a nick: its casefolded form.
    fn nick_key(&self, nick: &str) -> String {
        #[cfg(feature = "deliberate-bugs")]
        if self.config.bug == Some(Bug::CaseSensitiveNames) {
            return nick.to_owned();
        }
        casefold(nick)
    }

    /// Every held nick with its connection, in connection order.
    pub fn nicks(&self) -> Vec<(ConnId, &str)> {
        self.conns
            .iter()
            .filter_map(|(id, c)| Some((id, c.nick.as_deref()?)))
            .collect()
    }

    /// The display names of a room's members, in join order of their connections, or `None`
    /// if there is no such room.
    pub fn room_members(&self, room: &str) -> Option<Vec<&str>> {
        let room = self.rooms.get(&casefold(room))?;
        Some(
            room.members
                .keys()
                .filter_map(|&id| self.conns.get(id)?.nick.as_deref())
                .collect(),
        )
    }

    /// The chat's shared state as text, for a cluster's replicas to compare (the simulation
    /// does, at every log position): every connection's identity, modes and rooms, every
    /// room's members with their standing, topic, modes and budget, and the message counter.
    /// What each server keeps for itself (liveness, its own timers) is left out.
    pub fn digest(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (id, c) in self.conns.iter() {
            let _ = writeln!(
                out,
                "{id:?} {:?} {:?} {} {:?} reg={} i={} o={:?} away={:?} rooms={:?}",
                c.nick,
                c.user,
                c.host,
                c.realname,
                c.registered,
                c.invisible,
                c.oper,
                c.away,
                c.rooms
            );
        }
        for (key, room) in &self.rooms {
            let _ = writeln!(
                out,
                "{key} {} {:?} {:?} {:?} {:?}",
                room.name, room.members, room.topic, room.modes, room.budget
            );
        }
        let _ = writeln!(out, "msgids {} users {}", self.msgids, self.users);
        out
    }

    /// Whether `handle_shutdown` was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }
}
