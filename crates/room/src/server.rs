//! The chat state machine: every IRC behaviour of the server, with no I/O.
//!
//! Inputs are `handle_*` calls that take the current time; outputs are drained with
//! [`Server::poll_output`] and the next wake-up is [`Server::poll_timeout`] (quinn-proto's shape).
//! Handlers only append to the output queue; the runtime moves the bytes.
//!
//! Determinism: every collection that is ever iterated is ordered (`BTreeMap`/`BTreeSet` keyed by
//! connection id or folded name); the one `HashMap` (nick → connection) is only used for lookups.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::limits::*;
use crate::message::{Message, ParseError, Tag};
use crate::names::{casefold, is_channel_name, is_valid_channel, mask_matches, nick_problem};
use crate::numerics::*;
use crate::time::Millis;

/// Identifies one connection for its whole life. The core hands them out and never reuses one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

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

/// How the core behaves. The defaults are what `parla-server` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's name, used as the source of its own messages.
    pub server_name: String,
    /// The network name advertised in `005 NETWORK=` and the welcome line.
    pub network: String,
    /// The room every user joins on registering; `None` gives plain IRC semantics.
    pub default_room: Option<String>,
    /// Message-of-the-day lines; empty sends `422`.
    pub motd: Vec<String>,
    /// The connection password (`PASS`), if the server has one.
    pub password: Option<String>,
    /// A registered connection silent this long is sent a `PING`.
    pub ping_interval_ms: u64,
    /// After a `PING`, how long the connection has to show any sign of life.
    pub ping_timeout_ms: u64,
    /// How long a new connection has to finish registering.
    pub registration_timeout_ms: u64,
    /// Longest nick, in bytes (`NICKLEN`).
    pub nick_len: usize,
    /// Longest room name, in bytes (`CHANNELLEN`).
    pub channel_len: usize,
    /// Longest topic, in bytes (`TOPICLEN`); longer topics are cut at a character boundary.
    pub topic_len: usize,
    /// How many rooms one user may be in (`CHANLIMIT`).
    pub max_rooms_per_user: usize,
    /// The software version shown in `002`/`004`/`351`.
    pub version: String,
    /// Above this many members, the default room stops broadcasting individual JOIN, PART and
    /// QUIT lines (everyone is in it, so 10,000 joins would be ~50 million lines), and a join
    /// gets only its own `JOIN`, the topic and an empty NAMES (`366`); `NAMES` still lists
    /// everyone on request, and members see a person when they speak. `None` always broadcasts.
    /// Other rooms are not affected: people join those on purpose and expect to see each other.
    pub quiet_joins_above: Option<usize>,
    /// A deliberate bug to plant (tests of the simulation's checkers only).
    #[cfg(feature = "deliberate-bugs")]
    pub bug: Option<Bug>,
}

/// Bugs the simulation's explorer must be able to find (feature `deliberate-bugs`).
#[cfg(feature = "deliberate-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Name uniqueness is checked case-sensitively: `Alice` and `alice` can both be taken.
    CaseSensitiveNames,
    /// Every 5th room message is not delivered to the room's second member.
    DropForOneMember,
    /// `VERSION` panics halfway through its handler, after a reply was queued (tests of the
    /// server runtime's panic policy).
    PanicInHandler,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "parla.local".to_owned(),
            network: "Parla".to_owned(),
            default_room: Some("#lobby".to_owned()),
            motd: vec!["Welcome to Parla. Be kind; type /quit or quit to leave.".to_owned()],
            password: None,
            ping_interval_ms: 60_000,
            ping_timeout_ms: 30_000,
            registration_timeout_ms: 60_000,
            nick_len: NICK_LEN,
            channel_len: CHANNEL_LEN,
            topic_len: TOPIC_LEN,
            max_rooms_per_user: MAX_ROOMS_PER_USER,
            version: concat!("parla-", env!("CARGO_PKG_VERSION")).to_owned(),
            quiet_joins_above: Some(1000),
            #[cfg(feature = "deliberate-bugs")]
            bug: None,
        }
    }
}


/// Capabilities a client enabled with `CAP REQ`.
#[derive(Debug, Clone, Copy, Default)]
struct Caps {
    echo_message: bool,
    server_time: bool,
}

impl Caps {
    fn set(&mut self, name: &str, on: bool) -> bool {
        match name {
            "echo-message" => self.echo_message = on,
            "server-time" => self.server_time = on,
            _ => return false,
        }
        true
    }

    fn list(&self) -> String {
        let mut v = Vec::new();
        if self.echo_message {
            v.push("echo-message");
        }
        if self.server_time {
            v.push("server-time");
        }
        v.join(" ")
    }
}

#[derive(Debug)]
struct Conn {
    host: String,
    /// Display form; when `Some`, the folded form is reserved in `Server::nicks`.
    nick: Option<String>,
    user: Option<String>,
    realname: String,
    /// `nick!user@host`, kept current once registered.
    prefix: String,
    password: Option<String>,
    registered: bool,
    /// Registration waits while a `CAP LS`/`REQ` negotiation is open.
    cap_negotiating: bool,
    caps: Caps,
    invisible: bool,
    away: Option<String>,
    /// Folded names of the rooms this user is in.
    rooms: RoomKeys,
    connected_at: Millis,
    last_seen: Millis,
    last_spoke: Millis,
    ping_sent: Option<Millis>,
    /// When this connection's live timer entry is due; heap entries with another time are stale.
    timer_due: Millis,
}

/// A user's rooms as a sorted vector: a user is in a handful of rooms (at most
/// `max_rooms_per_user`), and a `BTreeSet` would allocate a whole 11-slot node for the first.
#[derive(Debug, Default)]
struct RoomKeys(Vec<String>);

impl RoomKeys {
    fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Where `key` is, or where it would go.
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|k| k.as_str().cmp(key))
    }

    fn contains(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    fn insert(&mut self, key: String) -> bool {
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

    fn remove(&mut self, key: &str) -> bool {
        match self.find(key) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    fn is_disjoint(&self, other: &RoomKeys) -> bool {
        !self.0.iter().any(|k| other.contains(k))
    }
}

impl Conn {
    fn display_nick(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }
}

#[derive(Debug)]
struct Topic {
    text: String,
    setter: String,
    at: Millis,
}

#[derive(Debug)]
struct Room {
    name: String,
    /// Each member with its capabilities: a room message goes to every member, and what the
    /// line looks like depends only on these, so the fan-out needs no lookup per recipient.
    members: BTreeMap<ConnId, Caps>,
    topic: Option<Topic>,
    created: Millis,
}

/// The commands the core knows. Parsing the verb once keeps dispatch a plain `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Cap,
    Pass,
    Nick,
    User,
    Ping,
    Pong,
    Quit,
    Join,
    Part,
    Privmsg,
    Notice,
    Names,
    Topic,
    Who,
    Whois,
    Mode,
    Lusers,
    Motd,
    Away,
    Ison,
    Userhost,
    Version,
    Time,
    List,
}

impl Cmd {
    fn parse(verb: &str) -> Option<Cmd> {
        const TABLE: &[(&str, Cmd)] = &[
            ("PRIVMSG", Cmd::Privmsg),
            ("PING", Cmd::Ping),
            ("PONG", Cmd::Pong),
            ("NOTICE", Cmd::Notice),
            ("JOIN", Cmd::Join),
            ("PART", Cmd::Part),
            ("NICK", Cmd::Nick),
            ("USER", Cmd::User),
            ("CAP", Cmd::Cap),
            ("PASS", Cmd::Pass),
            ("QUIT", Cmd::Quit),
            ("NAMES", Cmd::Names),
            ("TOPIC", Cmd::Topic),
            ("WHO", Cmd::Who),
            ("WHOIS", Cmd::Whois),
            ("MODE", Cmd::Mode),
            ("LUSERS", Cmd::Lusers),
            ("MOTD", Cmd::Motd),
            ("AWAY", Cmd::Away),
            ("ISON", Cmd::Ison),
            ("USERHOST", Cmd::Userhost),
            ("VERSION", Cmd::Version),
            ("TIME", Cmd::Time),
            ("LIST", Cmd::List),
        ];
        TABLE
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(verb))
            .map(|&(_, cmd)| cmd)
    }

    fn name(self) -> &'static str {
        match self {
            Cmd::Cap => "CAP",
            Cmd::Pass => "PASS",
            Cmd::Nick => "NICK",
            Cmd::User => "USER",
            Cmd::Ping => "PING",
            Cmd::Pong => "PONG",
            Cmd::Quit => "QUIT",
            Cmd::Join => "JOIN",
            Cmd::Part => "PART",
            Cmd::Privmsg => "PRIVMSG",
            Cmd::Notice => "NOTICE",
            Cmd::Names => "NAMES",
            Cmd::Topic => "TOPIC",
            Cmd::Who => "WHO",
            Cmd::Whois => "WHOIS",
            Cmd::Mode => "MODE",
            Cmd::Lusers => "LUSERS",
            Cmd::Motd => "MOTD",
            Cmd::Away => "AWAY",
            Cmd::Ison => "ISON",
            Cmd::Userhost => "USERHOST",
            Cmd::Version => "VERSION",
            Cmd::Time => "TIME",
            Cmd::List => "LIST",
        }
    }

    /// Parameters the command needs before its handler runs (checked once, before dispatch).
    /// NICK, PRIVMSG and NOTICE check their own, because they answer with specific numerics.
    fn min_params(self) -> usize {
        match self {
            Cmd::Cap | Cmd::Pass | Cmd::Ping | Cmd::Join | Cmd::Part | Cmd::Topic => 1,
            Cmd::Whois | Cmd::Mode | Cmd::Ison | Cmd::Userhost => 1,
            Cmd::User => 4,
            _ => 0,
        }
    }

    /// Whether the command may be used before registration completes.
    fn allowed_unregistered(self) -> bool {
        matches!(
            self,
            Cmd::Cap | Cmd::Pass | Cmd::Nick | Cmd::User | Cmd::Ping | Cmd::Pong | Cmd::Quit
        )
    }
}

/// The chat server's state machine. See the module docs.
#[derive(Debug)]
pub struct Server {
    config: Config,
    started: Millis,
    next_id: u64,
    /// Boxed: a B-tree node holds 11 entries and is often half full, so inline values would
    /// cost twice their size per connection.
    conns: BTreeMap<ConnId, Box<Conn>>,
    /// Folded nick → its holder (registered or not: a name is reserved from `NICK` on, so that
    /// two connections can never hold one name, even mid-registration).
    nicks: HashMap<String, ConnId>,
    rooms: BTreeMap<String, Room>,
    /// Each live connection has exactly one entry; stale entries are re-armed lazily when popped,
    /// so activity costs no heap operation (see `handle_timeout`).
    timers: BinaryHeap<Reverse<(Millis, ConnId)>>,
    out: VecDeque<Output>,
    /// Registered users, and those of them with `+i`: kept as counts because every
    /// registration reports them (`LUSERS`), and counting the map each time is O(n) per user.
    users: usize,
    invisible_users: usize,
    max_users: usize,
    shutting_down: bool,
    /// Room messages relayed so far (drives `Bug::DropForOneMember`).
    #[cfg(feature = "deliberate-bugs")]
    relayed: u64,
}

impl Server {
    /// A server that started at `now`.
    pub fn new(config: Config, now: Millis) -> Server {
        let mut server = Server {
            config,
            started: now,
            next_id: 1,
            conns: BTreeMap::new(),
            nicks: HashMap::new(),
            rooms: BTreeMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            users: 0,
            invisible_users: 0,
            max_users: 0,
            shutting_down: false,
            #[cfg(feature = "deliberate-bugs")]
            relayed: 0,
        };
        if let Some(name) = server.config.default_room.clone() {
            server.rooms.insert(
                casefold(&name),
                Room {
                    name,
                    members: BTreeMap::new(),
                    topic: None,
                    created: now,
                },
            );
        }
        server
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----------------------------------------------------------------------------------------
    // Inputs
    // ----------------------------------------------------------------------------------------

    /// A connection from `host` (the peer's address, shown in its user's `nick!user@host`) opened.
    pub fn handle_connect(&mut self, now: Millis, host: &str) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        if self.shutting_down {
            self.close(id, SHUTDOWN_ERROR, SHUTDOWN_ERROR);
            return id;
        }
        self.conns.insert(
            id,
            Box::new(Conn {
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
                away: None,
                rooms: RoomKeys::default(),
                connected_at: now,
                last_seen: now,
                last_spoke: now,
                ping_sent: None,
                timer_due: now.plus(self.config.registration_timeout_ms),
            }),
        );
        self.timers
            .push(Reverse((now.plus(self.config.registration_timeout_ms), id)));
        id
    }

    /// One line arrived from `conn`, without its line ending.
    pub fn handle_line(&mut self, now: Millis, conn: ConnId, line: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
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
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_seen = now;
            self.reply_too_long(now, conn);
        }
    }

    /// `conn` closed without `QUIT` (the peer went away, a socket error, its send queue
    /// overflowed): its user leaves with `reason`. Unknown or already-closed ids are ignored.
    pub fn handle_disconnect(&mut self, now: Millis, conn: ConnId, reason: &str) {
        self.remove_conn(now, conn, reason);
    }

    /// The time is now `now`: send due `PING`s and close connections that timed out.
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(&Reverse((due, id))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.conns.get_mut(&id) else {
                continue; // A stale entry of a connection that is gone.
            };
            if c.timer_due != due {
                continue; // Superseded by an earlier deadline (see `try_register`).
            }
            if !c.registered {
                let deadline = c.connected_at.plus(self.config.registration_timeout_ms);
                if now >= deadline {
                    let secs = self.config.registration_timeout_ms / 1000;
                    let reason = format!(
                        "Registration timeout: no valid NICK and USER within {secs} seconds"
                    );
                    self.quit(now, id, &reason);
                } else {
                    self.timers.push(Reverse((deadline, id)));
                }
                continue;
            }
            match c.ping_sent {
                Some(sent) if c.last_seen < sent => {
                    let deadline = sent.plus(self.config.ping_timeout_ms);
                    if now >= deadline {
                        let secs = now.since(c.last_seen) / 1000;
                        self.quit(now, id, &format!("Ping timeout: {secs} seconds"));
                    } else {
                        c.timer_due = deadline;
                        self.timers.push(Reverse((deadline, id)));
                    }
                }
                _ => {
                    c.ping_sent = None;
                    let due = c.last_seen.plus(self.config.ping_interval_ms);
                    if now >= due {
                        c.ping_sent = Some(now);
                        c.timer_due = now.plus(self.config.ping_timeout_ms);
                        self.timers.push(Reverse((c.timer_due, id)));
                        let server = self.config.server_name.clone();
                        self.send_msg(now, id, None, "PING", &[&server]);
                    } else {
                        c.timer_due = due;
                        self.timers.push(Reverse((due, id)));
                    }
                }
            }
        }
    }

    /// Shut down: every connection gets a notice and `ERROR :Server shutting down`, then is
    /// closed. Later connections are refused the same way.
    pub fn handle_shutdown(&mut self, now: Millis) {
        self.shutting_down = true;
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let nick = self.conns[&id].display_nick().to_owned();
            self.send_server(
                now,
                id,
                "NOTICE",
                &[&nick, SHUTDOWN_NOTICE],
            );
            self.close(id, SHUTDOWN_ERROR, SHUTDOWN_ERROR);
        }
        self.conns.clear();
        self.users = 0;
        self.invisible_users = 0;
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
        self.conns.get(&conn)?.nick.as_deref()
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
            .filter_map(|(id, c)| Some((*id, c.nick.as_deref()?)))
            .collect()
    }

    /// The display names of a room's members, in join order of their connections, or `None`
    /// if there is no such room.
    pub fn room_members(&self, room: &str) -> Option<Vec<&str>> {
        let room = self.rooms.get(&casefold(room))?;
        Some(
            room.members
                .keys()
                .filter_map(|id| self.conns.get(id)?.nick.as_deref())
                .collect(),
        )
    }

    /// Whether `handle_shutdown` was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    // ----------------------------------------------------------------------------------------
    // Dispatch
    // ----------------------------------------------------------------------------------------

    fn dispatch(&mut self, now: Millis, id: ConnId, msg: &Message<'_>) {
        let Some(cmd) = Cmd::parse(msg.verb) else {
            let verb = msg.verb.to_owned();
            return self.numeric(now, id, ERR_UNKNOWNCOMMAND, &[&verb, "Unknown command"]);
        };
        let registered = self.conns[&id].registered;
        if !registered && !cmd.allowed_unregistered() {
            return self.numeric(
                now,
                id,
                ERR_NOTREGISTERED,
                &["You have not registered; send NICK and USER first"],
            );
        }
        if msg.params.len() < cmd.min_params() {
            return self.numeric(
                now,
                id,
                ERR_NEEDMOREPARAMS,
                &[cmd.name(), "Not enough parameters"],
            );
        }
        let p = &msg.params;
        match cmd {
            Cmd::Cap => self.on_cap(now, id, p),
            Cmd::Pass => self.on_pass(now, id, p[0]),
            Cmd::Nick => self.on_nick(now, id, p.first().copied()),
            Cmd::User => self.on_user(now, id, p),
            Cmd::Ping => {
                let server = self.config.server_name.clone();
                self.send_server(now, id, "PONG", &[&server, p[0]]);
            }
            Cmd::Pong => {} // Any line counts as a sign of life; `handle_line` noted it.
            Cmd::Quit => {
                let reason = match p.first() {
                    Some(r) if !r.is_empty() => format!("Quit: {r}"),
                    _ => "Quit".to_owned(),
                };
                self.quit(now, id, &reason);
            }
            Cmd::Join => self.on_join(now, id, p[0]),
            Cmd::Part => self.on_part(now, id, p[0], p.get(1).copied()),
            Cmd::Privmsg => self.on_message(now, id, "PRIVMSG", p),
            Cmd::Notice => self.on_message(now, id, "NOTICE", p),
            Cmd::Names => self.on_names(now, id, p.first().copied()),
            Cmd::Topic => self.on_topic(now, id, p[0], p.get(1).copied()),
            Cmd::Who => self.on_who(now, id, p.first().copied().unwrap_or("*")),
            Cmd::Whois => self.on_whois(now, id, p[p.len() - 1]),
            Cmd::Mode => self.on_mode(now, id, p),
            Cmd::Lusers => self.send_lusers(now, id),
            Cmd::Motd => self.send_motd(now, id),
            Cmd::Away => self.on_away(now, id, p.first().copied()),
            Cmd::Ison => self.on_ison(now, id, p),
            Cmd::Userhost => self.on_userhost(now, id, p),
            Cmd::Version => {
                let (version, server) =
                    (self.config.version.clone(), self.config.server_name.clone());
                self.numeric(
                    now,
                    id,
                    RPL_VERSION,
                    &[&version, &server, "Parla chat server"],
                );
                #[cfg(feature = "deliberate-bugs")]
                if self.config.bug == Some(Bug::PanicInHandler) {
                    panic!("deliberate bug: a panic in the VERSION handler");
                }
                self.send_isupport(now, id);
            }
            Cmd::Time => {
                let server = self.config.server_name.clone();
                self.numeric(now, id, RPL_TIME, &[&server, &now.to_human()]);
            }
            Cmd::List => self.on_list(now, id, p.first().copied()),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Registration
    // ----------------------------------------------------------------------------------------

    /// `CAP LS [302]` / `CAP LIST` / `CAP REQ :caps` / `CAP END`
    fn on_cap(&mut self, now: Millis, id: ConnId, p: &[&str]) {
        let sub = p[0].to_ascii_uppercase();
        let c = self
            .conns
            .get_mut(&id)
            .expect("dispatch checked the connection");
        let nick = c.display_nick().to_owned();
        match sub.as_str() {
            "LS" => {
                if !c.registered {
                    c.cap_negotiating = true;
                }
                self.send_server(now, id, "CAP", &[&nick, "LS", &CAPS.join(" ")]);
            }
            "LIST" => {
                let list = c.caps.list();
                self.send_server(now, id, "CAP", &[&nick, "LIST", &list]);
            }
            "REQ" => {
                if !c.registered {
                    c.cap_negotiating = true;
                }
                let requested = p.get(1).copied().unwrap_or("");
                // A request is granted or refused whole (CAP spec): try it on a copy.
                let mut caps = c.caps;
                let ok = !requested.trim().is_empty()
                    && requested.split(' ').filter(|s| !s.is_empty()).all(|cap| {
                        match cap.strip_prefix('-') {
                            Some(name) => caps.set(name, false),
                            None => caps.set(cap, true),
                        }
                    });
                if ok {
                    c.caps = caps;
                    for key in c.rooms.iter() {
                        if let Some(member) =
                            self.rooms.get_mut(key).and_then(|r| r.members.get_mut(&id))
                        {
                            *member = caps;
                        }
                    }
                }
                let verdict = if ok { "ACK" } else { "NAK" };
                self.send_server(now, id, "CAP", &[&nick, verdict, requested]);
            }
            "END" => {
                c.cap_negotiating = false;
                self.try_register(now, id);
            }
            _ => self.numeric(
                now,
                id,
                ERR_INVALIDCAPCMD,
                &[p[0], "Invalid CAP command; use LS, LIST, REQ or END"],
            ),
        }
    }

    /// `PASS <password>`
    fn on_pass(&mut self, now: Millis, id: ConnId, password: &str) {
        let c = self
            .conns
            .get_mut(&id)
            .expect("dispatch checked the connection");
        if c.registered {
            return self.numeric(now, id, ERR_ALREADYREGISTERED, &["You may not reregister"]);
        }
        c.password = Some(password.to_owned());
    }

    /// `NICK <nickname>`
    fn on_nick(&mut self, now: Millis, id: ConnId, nick: Option<&str>) {
        let Some(nick) = nick.filter(|n| !n.is_empty()) else {
            return self.numeric(
                now,
                id,
                ERR_NONICKNAMEGIVEN,
                &["No nickname given; send NICK <name>"],
            );
        };
        if let Some(problem) = nick_problem(nick, self.config.nick_len) {
            let text = format!("Erroneous nickname: it {problem}");
            return self.numeric(now, id, ERR_ERRONEUSNICKNAME, &[nick, &text]);
        }
        let key = self.nick_key(nick);
        if let Some(&holder) = self.nicks.get(&key)
            && holder != id
        {
            return self.numeric(
                now,
                id,
                ERR_NICKNAMEINUSE,
                &[nick, "Nickname is already in use; pick another name"],
            );
        }
        let c = self
            .conns
            .get_mut(&id)
            .expect("dispatch checked the connection");
        if c.nick.as_deref() == Some(nick) {
            return;
        }
        if let Some(old) = c.nick.replace(nick.to_owned()) {
            let old_key = self.nick_key(&old);
            self.nicks.remove(&old_key);
        }
        self.nicks.insert(key, id);
        let c = &self.conns[&id];
        if !c.registered {
            return self.try_register(now, id);
        }
        // A rename: the user and everyone who shares a room with it see it.
        let old_prefix = c.prefix.clone();
        let mut to: BTreeSet<ConnId> = self.peers(id);
        to.insert(id);
        self.fanout(now, to.iter().copied(), Some(&old_prefix), "NICK", &[nick]);
        let c = self.conns.get_mut(&id).expect("still there");
        c.prefix = format!("{nick}!{}@{}", c.user.as_deref().unwrap_or(""), c.host);
    }

    /// `USER <username> <mode> <unused> :<realname>`
    fn on_user(&mut self, now: Millis, id: ConnId, p: &[&str]) {
        let c = self
            .conns
            .get_mut(&id)
            .expect("dispatch checked the connection");
        if c.registered {
            return self.numeric(now, id, ERR_ALREADYREGISTERED, &["You may not reregister"]);
        }
        // No ident lookup: mark the username as unverified with `~`, as ircds do.
        let mut user: String = p[0]
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
            .take(USER_LEN - 1)
            .collect();
        if user.is_empty() {
            user = "user".to_owned();
        }
        c.user = Some(format!("~{user}"));
        c.realname = truncate(p[3], REALNAME_LEN).to_owned();
        self.try_register(now, id);
    }

    fn try_register(&mut self, now: Millis, id: ConnId) {
        let c = self
            .conns
            .get_mut(&id)
            .expect("caller checked the connection");
        if c.registered || c.cap_negotiating || c.nick.is_none() || c.user.is_none() {
            return;
        }
        if let Some(expected) = &self.config.password
            && c.password.as_deref() != Some(expected.as_str())
        {
            self.numeric(
                now,
                id,
                ERR_PASSWDMISMATCH,
                &["Password incorrect; this server needs the right PASS before NICK and USER"],
            );
            return self.quit(now, id, "Bad password");
        }
        c.registered = true;
        self.users += 1;
        c.last_spoke = now;
        // From now on liveness pings, not the registration deadline, decide the next wake-up.
        c.timer_due = now.plus(self.config.ping_interval_ms);
        self.timers.push(Reverse((c.timer_due, id)));
        let nick = c.nick.clone().expect("checked above");
        c.prefix = format!("{nick}!{}@{}", c.user.as_deref().unwrap_or(""), c.host);
        let prefix = c.prefix.clone();
        let users = self.user_count();
        self.max_users = self.max_users.max(users);

        let cfg = &self.config;
        let (network, server, version) = (
            cfg.network.clone(),
            cfg.server_name.clone(),
            cfg.version.clone(),
        );
        let welcome = format!("Welcome to the {network} IRC network, {prefix}");
        self.numeric(now, id, RPL_WELCOME, &[&welcome]);
        let yourhost = format!("Your host is {server}, running version {version}");
        self.numeric(now, id, RPL_YOURHOST, &[&yourhost]);
        let created = format!("This server was created {}", self.started.to_human());
        self.numeric(now, id, RPL_CREATED, &[&created]);
        self.numeric(now, id, RPL_MYINFO, &[&server, &version, "i", "n"]);
        self.send_isupport(now, id);
        self.send_lusers(now, id);
        self.send_motd(now, id);
        if let Some(room) = self.config.default_room.clone() {
            self.join(now, id, &room);
        }
    }

    fn send_isupport(&mut self, now: Millis, id: ConnId) {
        let cfg = &self.config;
        let tokens = [
            format!("AWAYLEN={AWAY_LEN}"),
            "CASEMAPPING=ascii".to_owned(),
            format!("CHANLIMIT=#:{}", cfg.max_rooms_per_user),
            "CHANMODES=,,,n".to_owned(),
            format!("CHANNELLEN={}", cfg.channel_len),
            "CHANTYPES=#".to_owned(),
            format!("MAXTARGETS={MAX_TARGETS}"),
            format!("NETWORK={}", cfg.network),
            format!("NICKLEN={}", cfg.nick_len),
            "PREFIX=(o)@".to_owned(),
            format!(
                "TARGMAX=PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},JOIN:,PART:,NAMES:,WHOIS:1"
            ),
            format!("TOPICLEN={}", cfg.topic_len),
            format!("USERLEN={USER_LEN}"),
            "UTF8ONLY".to_owned(),
        ];
        for chunk in tokens.chunks(12) {
            let mut params: Vec<&str> = chunk.iter().map(String::as_str).collect();
            params.push("are supported by this server");
            self.numeric(now, id, RPL_ISUPPORT, &params);
        }
    }

    fn send_lusers(&mut self, now: Millis, id: ConnId) {
        let users = self.user_count();
        let invisible = self.invisible_users;
        let unknown = self.conns.len() - users;
        let rooms = self.rooms.len();
        let max = self.max_users;
        let text = format!(
            "There are {} users and {invisible} invisible on 1 servers",
            users - invisible
        );
        self.numeric(now, id, RPL_LUSERCLIENT, &[&text]);
        self.numeric(now, id, RPL_LUSEROP, &["0", "operator(s) online"]);
        if unknown > 0 {
            self.numeric(
                now,
                id,
                RPL_LUSERUNKNOWN,
                &[&unknown.to_string(), "unknown connection(s)"],
            );
        }
        self.numeric(
            now,
            id,
            RPL_LUSERCHANNELS,
            &[&rooms.to_string(), "channels formed"],
        );
        let me = format!("I have {users} clients and 0 servers");
        self.numeric(now, id, RPL_LUSERME, &[&me]);
        let (u, m) = (users.to_string(), max.to_string());
        let local = format!("Current local users {users}, max {max}");
        self.numeric(now, id, RPL_LOCALUSERS, &[&u, &m, &local]);
        let global = format!("Current global users {users}, max {max}");
        self.numeric(now, id, RPL_GLOBALUSERS, &[&u, &m, &global]);
    }

    fn send_motd(&mut self, now: Millis, id: ConnId) {
        if self.config.motd.is_empty() {
            return self.numeric(now, id, ERR_NOMOTD, &["MOTD File is missing"]);
        }
        let start = format!("- {} Message of the day - ", self.config.server_name);
        self.numeric(now, id, RPL_MOTDSTART, &[&start]);
        for line in self.config.motd.clone() {
            self.numeric(now, id, RPL_MOTD, &[&format!("- {line}")]);
        }
        self.numeric(now, id, RPL_ENDOFMOTD, &["End of /MOTD command."]);
    }

    // ----------------------------------------------------------------------------------------
    // Rooms
    // ----------------------------------------------------------------------------------------

    /// `JOIN <room>{,<room>} [<key>{,<key>}]` and `JOIN 0`
    fn on_join(&mut self, now: Millis, id: ConnId, rooms: &str) {
        if rooms == "0" {
            let mine: Vec<String> = self.conns[&id].rooms.iter().cloned().collect();
            for key in mine {
                self.part(now, id, &key, None);
            }
            return;
        }
        for name in rooms.split(',').filter(|n| !n.is_empty()) {
            if !is_valid_channel(name, self.config.channel_len) {
                let text = format!(
                    "No such channel: room names start with # and have at most {} characters, no spaces or commas",
                    self.config.channel_len
                );
                self.numeric(now, id, ERR_NOSUCHCHANNEL, &[name, &text]);
                continue;
            }
            let c = &self.conns[&id];
            if c.rooms.contains(&casefold(name)) {
                continue;
            }
            if c.rooms.len() >= self.config.max_rooms_per_user {
                let text = format!(
                    "You have joined too many channels (at most {}); leave one first",
                    self.config.max_rooms_per_user
                );
                self.numeric(now, id, ERR_TOOMANYCHANNELS, &[name, &text]);
                continue;
            }
            self.join(now, id, name);
        }
    }

    fn join(&mut self, now: Millis, id: ConnId, name: &str) {
        let key = casefold(name);
        let Some(caps) = self.conns.get(&id).map(|c| c.caps) else {
            return;
        };
        let room = self.rooms.entry(key.clone()).or_insert_with(|| Room {
            name: name.to_owned(),
            members: BTreeMap::new(),
            topic: None,
            created: now,
        });
        if room.members.insert(id, caps).is_some() {
            return;
        }
        let room_name = room.name.clone();
        let c = self
            .conns
            .get_mut(&id)
            .expect("caller checked the connection");
        c.rooms.insert(key.clone());
        let prefix = c.prefix.clone();
        let room = &self.rooms[&key];
        let quiet = self.is_quiet(&key, room.members.len());
        // A quiet room: only the joiner sees its JOIN, and the member list is not pushed (it
        // would be O(n) lines per join); `NAMES` gives it on request.
        let members: Vec<ConnId> = if quiet {
            vec![id]
        } else {
            room.members.keys().copied().collect()
        };
        self.fanout(
            now,
            members.into_iter(),
            Some(&prefix),
            "JOIN",
            &[&room_name],
        );
        self.send_topic(now, id, &key, false);
        if quiet {
            self.numeric(now, id, RPL_ENDOFNAMES, &[&room_name, "End of /NAMES list"]);
        } else {
            self.send_names(now, id, &key);
        }
    }

    /// `PART <room>{,<room>} [<reason>]`
    fn on_part(&mut self, now: Millis, id: ConnId, rooms: &str, reason: Option<&str>) {
        for name in rooms.split(',').filter(|n| !n.is_empty()) {
            let key = casefold(name);
            let Some(room) = self.rooms.get(&key) else {
                self.numeric(now, id, ERR_NOSUCHCHANNEL, &[name, "No such channel"]);
                continue;
            };
            if !room.members.contains_key(&id) {
                let name = room.name.clone();
                self.numeric(
                    now,
                    id,
                    ERR_NOTONCHANNEL,
                    &[&name, "You're not on that channel"],
                );
                continue;
            }
            self.part(now, id, &key, reason);
        }
    }

    fn part(&mut self, now: Millis, id: ConnId, key: &str, reason: Option<&str>) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let name = room.name.clone();
        let members: Vec<ConnId> = if self.is_quiet(key, room.members.len()) {
            vec![id]
        } else {
            room.members.keys().copied().collect()
        };
        let prefix = self.conns[&id].prefix.clone();
        match reason {
            Some(r) if !r.is_empty() => {
                self.fanout(now, members.into_iter(), Some(&prefix), "PART", &[&name, r])
            }
            _ => self.fanout(now, members.into_iter(), Some(&prefix), "PART", &[&name]),
        }
        self.leave_room(id, key);
    }

    /// Removes `id` from room `key`, dropping the room when it empties (the default room stays).
    fn leave_room(&mut self, id: ConnId, key: &str) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.rooms.remove(key);
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.members.remove(&id);
        let is_default = self
            .config
            .default_room
            .as_deref()
            .is_some_and(|d| casefold(d) == key);
        if room.members.is_empty() && !is_default {
            self.rooms.remove(key);
        }
    }

    /// `TOPIC <room> [<topic>]`
    fn on_topic(&mut self, now: Millis, id: ConnId, name: &str, topic: Option<&str>) {
        let key = casefold(name);
        let Some(room) = self.rooms.get_mut(&key) else {
            return self.numeric(now, id, ERR_NOSUCHCHANNEL, &[name, "No such channel"]);
        };
        let Some(text) = topic else {
            return self.send_topic(now, id, &key, true);
        };
        if !room.members.contains_key(&id) {
            let name = room.name.clone();
            return self.numeric(
                now,
                id,
                ERR_NOTONCHANNEL,
                &[
                    &name,
                    "You're not on that channel; join it to set its topic",
                ],
            );
        }
        let text = truncate(text, self.config.topic_len).to_owned();
        let c = &self.conns[&id];
        room.topic = (!text.is_empty()).then(|| Topic {
            text: text.clone(),
            setter: c.nick.clone().unwrap_or_default(),
            at: now,
        });
        let (room_name, prefix) = (room.name.clone(), c.prefix.clone());
        let members: Vec<ConnId> = room.members.keys().copied().collect();
        self.fanout(
            now,
            members.into_iter(),
            Some(&prefix),
            "TOPIC",
            &[&room_name, &text],
        );
    }

    fn send_topic(&mut self, now: Millis, id: ConnId, key: &str, say_if_none: bool) {
        let room = &self.rooms[key];
        let name = room.name.clone();
        match &room.topic {
            Some(t) => {
                let (text, setter, at) =
                    (t.text.clone(), t.setter.clone(), t.at.as_secs().to_string());
                self.numeric(now, id, RPL_TOPIC, &[&name, &text]);
                self.numeric(now, id, RPL_TOPICWHOTIME, &[&name, &setter, &at]);
            }
            None if say_if_none => self.numeric(now, id, RPL_NOTOPIC, &[&name, "No topic is set"]),
            None => {}
        }
    }

    /// `NAMES [<room>{,<room>}]`
    fn on_names(&mut self, now: Millis, id: ConnId, rooms: Option<&str>) {
        let Some(rooms) = rooms else {
            return self.numeric(now, id, RPL_ENDOFNAMES, &["*", "End of /NAMES list"]);
        };
        for name in rooms.split(',').filter(|n| !n.is_empty()) {
            let key = casefold(name);
            if self.rooms.contains_key(&key) {
                self.send_names(now, id, &key);
            } else {
                self.numeric(now, id, RPL_ENDOFNAMES, &[name, "End of /NAMES list"]);
            }
        }
    }

    /// `353`s (as many as fit in 512 bytes each) and `366` for room `key`.
    fn send_names(&mut self, now: Millis, id: ConnId, key: &str) {
        let room = &self.rooms[key];
        let inside = room.members.contains_key(&id);
        let names: Vec<&str> = room
            .members
            .keys()
            .filter_map(|m| self.conns.get(m))
            .filter(|c| inside || !c.invisible)
            .filter_map(|c| c.nick.as_deref())
            .collect();
        let me = self.conns[&id].display_nick();
        // ":server 353 me = #room :" + names + CRLF must fit the 512-byte limit.
        let overhead =
            1 + self.config.server_name.len() + 5 + me.len() + 3 + room.name.len() + 2 + 2;
        let budget = MAX_BODY_LEN
            .saturating_sub(overhead)
            .max(self.config.nick_len + 1);
        let mut lines: Vec<String> = Vec::new();
        let mut current = String::new();
        for name in names {
            if !current.is_empty() && current.len() + 1 + name.len() > budget {
                lines.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(name);
        }
        if !current.is_empty() {
            lines.push(current);
        }
        let room_name = room.name.clone();
        for line in lines {
            self.numeric(now, id, RPL_NAMREPLY, &["=", &room_name, &line]);
        }
        self.numeric(now, id, RPL_ENDOFNAMES, &[&room_name, "End of /NAMES list"]);
    }

    /// `LIST [<room>{,<room>}]`
    fn on_list(&mut self, now: Millis, id: ConnId, filter: Option<&str>) {
        self.numeric(now, id, RPL_LISTSTART, &["Channel", "Users  Name"]);
        let wanted: Option<BTreeSet<String>> = filter.map(|f| f.split(',').map(casefold).collect());
        let rows: Vec<(String, String, String)> = self
            .rooms
            .iter()
            .filter(|(key, _)| wanted.as_ref().is_none_or(|w| w.contains(*key)))
            .map(|(_, r)| {
                let topic = r.topic.as_ref().map(|t| t.text.clone()).unwrap_or_default();
                (r.name.clone(), r.members.len().to_string(), topic)
            })
            .collect();
        for (name, count, topic) in rows {
            self.numeric(now, id, RPL_LIST, &[&name, &count, &topic]);
        }
        self.numeric(now, id, RPL_LISTEND, &["End of /LIST"]);
    }

    // ----------------------------------------------------------------------------------------
    // Messages
    // ----------------------------------------------------------------------------------------

    /// `PRIVMSG <target>{,<target>} <text>` and `NOTICE` (which never gets an error reply).
    fn on_message(&mut self, now: Millis, id: ConnId, verb: &str, p: &[&str]) {
        let notice = verb == "NOTICE";
        let Some(&targets) = p.first().filter(|t| !t.is_empty()) else {
            if !notice {
                let text = format!("No recipient given ({verb})");
                self.numeric(now, id, ERR_NORECIPIENT, &[&text]);
            }
            return;
        };
        let Some(&text) = p.get(1).filter(|t| !t.is_empty()) else {
            if !notice {
                self.numeric(now, id, ERR_NOTEXTTOSEND, &["No text to send"]);
            }
            return;
        };
        let targets: Vec<&str> = targets.split(',').filter(|t| !t.is_empty()).collect();
        if targets.len() > MAX_TARGETS {
            if !notice {
                let text = format!("Too many recipients; send to at most {MAX_TARGETS} at once");
                self.numeric(now, id, ERR_TOOMANYTARGETS, &[targets[MAX_TARGETS], &text]);
            }
            return;
        }
        let c = self
            .conns
            .get_mut(&id)
            .expect("dispatch checked the connection");
        if !notice {
            c.last_spoke = now;
        }
        let (prefix, echo) = (c.prefix.clone(), c.caps.echo_message);
        for target in targets {
            // The relayed line carries our longer source; refuse rather than cut the text.
            let relayed = 1 + prefix.len() + 1 + verb.len() + 1 + target.len() + 2 + text.len() + 2;
            if relayed > MAX_BODY_LEN {
                if !notice {
                    let over = relayed - MAX_BODY_LEN;
                    let text = format!(
                        "Message not sent: it is {over} bytes too long once your name is added; send it in shorter parts"
                    );
                    self.numeric(now, id, ERR_INPUTTOOLONG, &[&text]);
                }
                continue;
            }
            if is_channel_name(target) {
                let Some(room) = self.rooms.get(&casefold(target)) else {
                    if !notice {
                        self.numeric(now, id, ERR_NOSUCHCHANNEL, &[target, "No such channel"]);
                    }
                    continue;
                };
                if !room.members.contains_key(&id) {
                    if !notice {
                        let name = room.name.clone();
                        self.numeric(
                            now,
                            id,
                            ERR_CANNOTSENDTOCHAN,
                            &[
                                &name,
                                "Cannot send to channel: you are not in it; join it first",
                            ],
                        );
                    }
                    continue;
                }
                let name = room.name.clone();
                #[allow(unused_mut)]
                let mut to: Vec<(ConnId, Caps)> = room
                    .members
                    .iter()
                    .map(|(&m, &caps)| (m, caps))
                    .filter(|&(m, _)| echo || m != id)
                    .collect();
                #[cfg(feature = "deliberate-bugs")]
                {
                    self.relayed += 1;
                    if self.config.bug == Some(Bug::DropForOneMember)
                        && self.relayed.is_multiple_of(5)
                    {
                        let second = room.members.keys().nth(1).copied();
                        to.retain(|&(m, _)| Some(m) != second);
                    }
                }
                fanout_to(
                    &mut self.out,
                    now,
                    to.into_iter(),
                    Some(&prefix),
                    verb,
                    &[&name, text],
                );
            } else {
                let Some(&to) = self.nicks.get(&casefold(target)) else {
                    if !notice {
                        self.numeric(now, id, ERR_NOSUCHNICK, &[target, "No such nick/channel"]);
                    }
                    continue;
                };
                let peer = &self.conns[&to];
                if !peer.registered {
                    if !notice {
                        self.numeric(now, id, ERR_NOSUCHNICK, &[target, "No such nick/channel"]);
                    }
                    continue;
                }
                let name = peer.nick.clone().unwrap_or_default();
                let away = peer.away.clone();
                let mut recipients = vec![to];
                if echo && to != id {
                    recipients.push(id);
                }
                self.fanout(
                    now,
                    recipients.into_iter(),
                    Some(&prefix),
                    verb,
                    &[&name, text],
                );
                if let (Some(away), false) = (away, notice) {
                    self.numeric(now, id, RPL_AWAY, &[&name, &away]);
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Queries
    // ----------------------------------------------------------------------------------------

    /// `WHO <mask>`: a room's members, or users whose nick matches the mask.
    fn on_who(&mut self, now: Millis, id: ConnId, mask: &str) {
        let server = self.config.server_name.clone();
        let mut rows: Vec<[String; 6]> = Vec::new();
        let row = |room: &str, c: &Conn| -> [String; 6] {
            let flags = if c.away.is_some() { "G" } else { "H" };
            [
                room.to_owned(),
                c.user.clone().unwrap_or_default(),
                c.host.clone(),
                c.nick.clone().unwrap_or_default(),
                flags.to_owned(),
                format!("0 {}", c.realname),
            ]
        };
        let my_rooms = &self.conns[&id].rooms;
        if is_channel_name(mask) {
            if let Some(room) = self.rooms.get(&casefold(mask)) {
                let inside = room.members.contains_key(&id);
                for c in room.members.keys().filter_map(|m| self.conns.get(m)) {
                    if inside || !c.invisible {
                        rows.push(row(&room.name, c));
                    }
                }
            }
        } else {
            let all = mask == "*" || mask == "0";
            for (&other, c) in &self.conns {
                let visible = other == id || !c.invisible || !c.rooms.is_disjoint(my_rooms);
                let matches = c.registered
                    && c.nick
                        .as_deref()
                        .is_some_and(|n| all || mask_matches(mask, n));
                if visible && matches {
                    rows.push(row("*", c));
                }
            }
        }
        for [room, user, host, nick, flags, real] in rows {
            self.numeric(
                now,
                id,
                RPL_WHOREPLY,
                &[&room, &user, &host, &server, &nick, &flags, &real],
            );
        }
        self.numeric(now, id, RPL_ENDOFWHO, &[mask, "End of WHO list"]);
    }

    /// `WHOIS [<server>] <nick>`
    fn on_whois(&mut self, now: Millis, id: ConnId, nick: &str) {
        let found = self
            .nicks
            .get(&casefold(nick))
            .and_then(|t| self.conns.get(t))
            .filter(|c| c.registered);
        let Some(c) = found else {
            self.numeric(now, id, ERR_NOSUCHNICK, &[nick, "No such nick/channel"]);
            return self.numeric(now, id, RPL_ENDOFWHOIS, &[nick, "End of /WHOIS list"]);
        };
        let name = c.nick.clone().unwrap_or_default();
        let (user, host, real) = (
            c.user.clone().unwrap_or_default(),
            c.host.clone(),
            c.realname.clone(),
        );
        let rooms: Vec<String> = c
            .rooms
            .iter()
            .filter_map(|k| self.rooms.get(k))
            .map(|r| r.name.clone())
            .collect();
        let away = c.away.clone();
        let idle = (now.since(c.last_spoke) / 1000).to_string();
        let signon = c.connected_at.as_secs().to_string();
        let server = self.config.server_name.clone();
        self.numeric(now, id, RPL_WHOISUSER, &[&name, &user, &host, "*", &real]);
        if !rooms.is_empty() {
            self.numeric(now, id, RPL_WHOISCHANNELS, &[&name, &rooms.join(" ")]);
        }
        self.numeric(
            now,
            id,
            RPL_WHOISSERVER,
            &[&name, &server, "Parla chat server"],
        );
        if let Some(away) = away {
            self.numeric(now, id, RPL_AWAY, &[&name, &away]);
        }
        self.numeric(
            now,
            id,
            RPL_WHOISIDLE,
            &[&name, &idle, &signon, "seconds idle, signon time"],
        );
        self.numeric(now, id, RPL_ENDOFWHOIS, &[&name, "End of /WHOIS list"]);
    }

    /// `MODE <target> [<modestring>]`: answered minimally so that clients don't stall.
    fn on_mode(&mut self, now: Millis, id: ConnId, p: &[&str]) {
        let target = p[0];
        let modes = p.get(1).copied();
        if is_channel_name(target) {
            let Some(room) = self.rooms.get(&casefold(target)) else {
                return self.numeric(now, id, ERR_NOSUCHCHANNEL, &[target, "No such channel"]);
            };
            let (name, created) = (room.name.clone(), room.created.as_secs().to_string());
            match modes {
                None => {
                    self.numeric(now, id, RPL_CHANNELMODEIS, &[&name, "+n"]);
                    self.numeric(now, id, RPL_CREATIONTIME, &[&name, &created]);
                }
                // Clients ask for the ban list on join; there are no bans.
                Some("b" | "+b") => {
                    self.numeric(now, id, RPL_ENDOFBANLIST, &[&name, "End of channel ban list"])
                }
                Some(_) => self.numeric(
                    now,
                    id,
                    ERR_CHANOPRIVSNEEDED,
                    &[&name, "You're not a channel operator: Parla rooms have no operators, so their modes cannot be changed"],
                ),
            }
            return;
        }
        let c = self
            .conns
            .get_mut(&id)
            .expect("dispatch checked the connection");
        let me = c.nick.clone().unwrap_or_default();
        if casefold(target) != casefold(&me) {
            return self.numeric(
                now,
                id,
                ERR_USERSDONTMATCH,
                &["Can't view or change mode for other users"],
            );
        }
        let Some(modes) = modes else {
            let shown = if c.invisible { "+i" } else { "+" };
            return self.numeric(now, id, RPL_UMODEIS, &[shown]);
        };
        let (mut adding, mut unknown, before) = (true, false, c.invisible);
        for ch in modes.chars() {
            match ch {
                '+' => adding = true,
                '-' => adding = false,
                'i' => c.invisible = adding,
                _ => unknown = true,
            }
        }
        let after = c.invisible;
        if before != after {
            if after {
                self.invisible_users += 1;
            } else {
                self.invisible_users -= 1;
            }
            let change = if after { "+i" } else { "-i" };
            let prefix = c.prefix.clone();
            self.fanout(
                now,
                std::iter::once(id),
                Some(&prefix),
                "MODE",
                &[&me, change],
            );
        }
        if unknown {
            self.numeric(
                now,
                id,
                ERR_UMODEUNKNOWNFLAG,
                &["Unknown MODE flag; Parla supports only +i"],
            );
        }
    }

    /// `AWAY [<text>]`
    fn on_away(&mut self, now: Millis, id: ConnId, text: Option<&str>) {
        let c = self
            .conns
            .get_mut(&id)
            .expect("dispatch checked the connection");
        match text.filter(|t| !t.is_empty()) {
            Some(t) => {
                c.away = Some(truncate(t, AWAY_LEN).to_owned());
                self.numeric(
                    now,
                    id,
                    RPL_NOWAWAY,
                    &["You have been marked as being away"],
                );
            }
            None => {
                c.away = None;
                self.numeric(
                    now,
                    id,
                    RPL_UNAWAY,
                    &["You are no longer marked as being away"],
                );
            }
        }
    }

    /// `ISON <nick>{ <nick>}`
    fn on_ison(&mut self, now: Millis, id: ConnId, p: &[&str]) {
        let online: Vec<String> = p
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|n| self.nicks.get(&casefold(n)))
            .filter_map(|t| self.conns.get(t))
            .filter(|c| c.registered)
            .filter_map(|c| c.nick.clone())
            .collect();
        self.numeric(now, id, RPL_ISON, &[&online.join(" ")]);
    }

    /// `USERHOST <nick>{ <nick>}` (at most 5)
    fn on_userhost(&mut self, now: Millis, id: ConnId, p: &[&str]) {
        let replies: Vec<String> = p
            .iter()
            .take(5)
            .filter_map(|n| self.nicks.get(&casefold(n)))
            .filter_map(|t| self.conns.get(t))
            .filter(|c| c.registered)
            .map(|c| {
                let away = if c.away.is_some() { '-' } else { '+' };
                let (nick, user) = (
                    c.nick.as_deref().unwrap_or(""),
                    c.user.as_deref().unwrap_or(""),
                );
                format!("{nick}={away}{user}@{}", c.host)
            })
            .collect();
        self.numeric(now, id, RPL_USERHOST, &[&replies.join(" ")]);
    }

    // ----------------------------------------------------------------------------------------
    // Leaving
    // ----------------------------------------------------------------------------------------

    /// The connection leaves with `reason`: peers see a `QUIT`, it gets `ERROR` and is closed.
    fn quit(&mut self, now: Millis, id: ConnId, reason: &str) {
        let host = match self.conns.get(&id) {
            Some(c) => c.host.clone(),
            None => return,
        };
        self.remove_conn(now, id, reason);
        self.close(id, &format!("Closing Link: {host} ({reason})"), reason);
    }

    /// Forgets `id`: frees its name, tells everyone who shared a room with it.
    fn remove_conn(&mut self, now: Millis, id: ConnId, reason: &str) {
        let peers = self.peers_told_of_leaving(id);
        let Some(c) = self.conns.get(&id) else { return };
        let (registered, prefix) = (c.registered, c.prefix.clone());
        if registered {
            self.users -= 1;
            if c.invisible {
                self.invisible_users -= 1;
            }
        }
        let rooms: Vec<String> = c.rooms.iter().cloned().collect();
        if let Some(nick) = c.nick.clone() {
            let key = self.nick_key(&nick);
            self.nicks.remove(&key);
        }
        for key in rooms {
            self.leave_room(id, &key);
        }
        self.conns.remove(&id);
        self.compact_timers();
        if registered {
            self.fanout(now, peers.into_iter(), Some(&prefix), "QUIT", &[reason]);
        }
    }

    /// Drops the timer entries of departed connections once they outnumber the live ones.
    /// Entries are removed lazily when due, but a departed user's entry is due only at its next
    /// PING: under churn (many short sessions) the heap would otherwise hold every recent
    /// session, and its capacity would never come back. Amortised O(1) per departure.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.conns.len() + 64 {
            return;
        }
        let conns = &self.conns;
        self.timers
            .retain(|Reverse((due, id))| conns.get(id).is_some_and(|c| c.timer_due == *due));
        self.timers.shrink_to(2 * self.timers.len() + 64);
    }

    /// Queues `ERROR :<error>` for `id`, then its close.
    fn close(&mut self, id: ConnId, error: &str, reason: &str) {
        self.out.push_back(Output::Send {
            to: id,
            line: encode(&[], None, "ERROR", &[error]),
        });
        self.out.push_back(Output::Close {
            conn: id,
            reason: reason.to_owned(),
        });
    }

    fn reply_too_long(&mut self, now: Millis, id: ConnId) {
        self.numeric(
            now,
            id,
            ERR_INPUTTOOLONG,
            &["Input line was too long: IRC allows 512 bytes per line (8191 more for tags); it was dropped"],
        );
    }

    // ----------------------------------------------------------------------------------------
    // Encoding and delivery
    // ----------------------------------------------------------------------------------------

    /// Everyone who shares a room with `id`, without `id` itself.
    fn peers(&self, id: ConnId) -> BTreeSet<ConnId> {
        let Some(c) = self.conns.get(&id) else {
            return BTreeSet::new();
        };
        c.rooms
            .iter()
            .filter_map(|k| self.rooms.get(k))
            .flat_map(|r| r.members.keys().copied())
            .filter(|&m| m != id)
            .collect()
    }

    /// Who sees `id` leave: everyone who shares a room with it, except in a quiet room (see
    /// [`Config::quiet_joins_above`]), whose members only learn it if they share another room.
    fn peers_told_of_leaving(&self, id: ConnId) -> BTreeSet<ConnId> {
        let Some(c) = self.conns.get(&id) else {
            return BTreeSet::new();
        };
        c.rooms
            .iter()
            .filter_map(|k| self.rooms.get(k).map(|r| (k, r)))
            .filter(|(k, r)| !self.is_quiet(k, r.members.len()))
            .flat_map(|(_, r)| r.members.keys().copied())
            .filter(|&m| m != id)
            .collect()
    }

    /// Whether room `key` with `members` members is past the quiet threshold: only the default
    /// room ever is.
    fn is_quiet(&self, key: &str, members: usize) -> bool {
        self.config
            .quiet_joins_above
            .is_some_and(|above| members > above)
            && self
                .config
                .default_room
                .as_deref()
                .is_some_and(|d| casefold(d) == key)
    }

    /// Sends a numeric: `:<server> <code> <client> <params…>`, the last param as trailing.
    fn numeric(&mut self, now: Millis, id: ConnId, code: &str, params: &[&str]) {
        let Some(c) = self.conns.get(&id) else { return };
        let mut all: Vec<&str> = Vec::with_capacity(params.len() + 1);
        all.push(c.display_nick());
        all.extend_from_slice(params);
        let line = encode(
            &time_tag(now, c.caps),
            Some(&self.config.server_name),
            code,
            &all,
        );
        self.out.push_back(Output::Send { to: id, line });
    }

    /// Sends `:<server> <verb> <params…>`.
    fn send_server(&mut self, now: Millis, id: ConnId, verb: &str, params: &[&str]) {
        let server = self.config.server_name.clone();
        self.send_msg(now, id, Some(&server), verb, params);
    }

    fn send_msg(
        &mut self,
        now: Millis,
        id: ConnId,
        source: Option<&str>,
        verb: &str,
        params: &[&str],
    ) {
        let Some(c) = self.conns.get(&id) else { return };
        let line = encode(&time_tag(now, c.caps), source, verb, params);
        self.out.push_back(Output::Send { to: id, line });
    }

    /// Sends one message to many: it is encoded at most twice (with and without `server-time`),
    /// and every recipient shares those bytes.
    fn fanout(
        &mut self,
        now: Millis,
        to: impl Iterator<Item = ConnId>,
        source: Option<&str>,
        verb: &str,
        params: &[&str],
    ) {
        let conns = &self.conns;
        let to = to.filter_map(|id| Some((id, conns.get(&id)?.caps)));
        fanout_to(&mut self.out, now, to, source, verb, params);
    }
}

/// [`Server::fanout`] to recipients whose capabilities are known (a room's members), onto
/// `out` (the core's output queue; a free function so that its caller may still read other
/// parts of the core while it runs).
fn fanout_to(
    out: &mut VecDeque<Output>,
    now: Millis,
    to: impl Iterator<Item = (ConnId, Caps)>,
    source: Option<&str>,
    verb: &str,
    params: &[&str],
) {
    let (mut plain, mut timed): (Option<Bytes>, Option<Bytes>) = (None, None);
    // Consecutive recipients of the same encoding form one `Broadcast`, so the deliveries
    // keep the recipients' order exactly.
    let mut run: Option<(Bytes, Vec<ConnId>)> = None;
    for (id, caps) in to {
        let line = if caps.server_time {
            timed.get_or_insert_with(|| encode(&time_tag(now, caps), source, verb, params))
        } else {
            plain.get_or_insert_with(|| encode(&[], source, verb, params))
        };
        match &mut run {
            Some((current, ids)) if current.as_ptr() == line.as_ptr() => ids.push(id),
            _ => {
                if let Some((line, ids)) = run.take() {
                    push_broadcast(out, ids, line);
                }
                run = Some((line.clone(), vec![id]));
            }
        }
    }
    if let Some((line, ids)) = run {
        push_broadcast(out, ids, line);
    }
}

fn push_broadcast(out: &mut VecDeque<Output>, to: Vec<ConnId>, line: Bytes) {
    out.push_back(if to.len() == 1 {
        Output::Send { to: to[0], line }
    } else {
        Output::Broadcast { to, line }
    });
}

fn time_tag(now: Millis, caps: Caps) -> Vec<Tag<'static>> {
    if caps.server_time {
        vec![Tag {
            key: "time",
            value: Cow::Owned(now.to_rfc3339()),
        }]
    } else {
        Vec::new()
    }
}

/// Encodes one line. Text-carrying messages and numerics always use a `:` trailing parameter
/// (what clients expect); JOIN, NICK and MODE use the plain form, as ircds send them.
fn encode(tags: &[Tag<'_>], source: Option<&str>, verb: &str, params: &[&str]) -> Bytes {
    // A parameter a user sent in trailing form (`NAMES :#a b`) may be echoed back in a middle
    // position, where a space or leading `:` would corrupt the line: such params are cleaned.
    let cleaned: Vec<Cow<'_, str>> = params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i + 1 == params.len() || !(p.is_empty() || p.contains(' ') || p.starts_with(':')) {
                Cow::Borrowed(*p)
            } else {
                let s = p.trim_start_matches(':').replace(' ', "_");
                Cow::Owned(if s.is_empty() { "*".to_owned() } else { s })
            }
        })
        .collect();
    let msg = Message {
        tags: tags.to_vec(),
        source,
        verb,
        params: cleaned.iter().map(|p| p.as_ref()).collect(),
    };
    let mut buf = BytesMut::new();
    if matches!(verb, "JOIN" | "NICK" | "MODE") {
        msg.write_to(&mut buf);
    } else {
        msg.write_to_trailing(&mut buf);
    }
    buf.freeze()
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
