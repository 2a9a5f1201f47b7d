//! The reference model: an executable statement of what Parla promises, written apart from the
//! server's code, that every simulated server is checked against as it runs.
//!
//! The model follows one server incarnation's inputs in the one order its core handled them
//! (connections, lines, disconnections, timer wake-ups, shutdown; see
//! [`parla_net::server::Observer`]) and keeps its own books: who holds which name (compared
//! case-insensitively), who is in which room, each room's topic, each connection's capabilities
//! and liveness. From those it predicts, for every input, exactly what each connection is owed:
//!
//! - every room message, direct message, join, part, quit, rename and topic change, from the
//!   right source with the right parameters, exactly once, to exactly the right people (and to
//!   nobody else);
//! - the welcome (`001`) when, and only when, registration completes;
//! - the `ERROR` that ends a connection the server closes (a `QUIT`, a timeout, a shutdown), and
//!   the shutdown notice;
//! - the member list of a room (`353` on `JOIN` and `NAMES`, `352` on `WHO`) for a member;
//! - which connections are closed.
//!
//! After each input the model compares its prediction with what the core queued; the first
//! difference is reported with the connection, the simulated time, and the expected and actual
//! lines. Together with [`crate::check`]'s delivery check (every line queued reaches its client,
//! in order, unless the link broke), that checks each client's whole transcript of relayed
//! events. Replies to queries beyond the member lists (`WHOIS`, `LUSERS`, error numerics, ...)
//! are not modelled.

use std::collections::{BTreeMap, BTreeSet};

use parla_net::server::Input;
use parla_room::limits::{
    CAPS, CHANNEL_LEN, MAX_BODY_LEN, MAX_ROOMS_PER_USER, MAX_TARGETS, NICK_LEN, SHUTDOWN_ERROR,
    SHUTDOWN_NOTICE, TOPIC_LEN, USER_LEN,
};
use parla_room::{ConnId, Millis, Output};

/// The server settings the model needs (the simulation's `server` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The room everyone joins on registering.
    pub default_room: Option<String>,
    /// Silence before the server pings a user, in ms.
    pub ping_interval_ms: u64,
    /// Time to answer a ping, in ms.
    pub ping_timeout_ms: u64,
    /// Time to register, in ms.
    pub registration_timeout_ms: u64,
}

/// A line as the model compares it: its source, verb and parameters, whatever the encoding
/// (tags, and whether the last parameter was written with a colon, do not matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    source: Option<String>,
    verb: String,
    params: Vec<String>,
}

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(source) = &self.source {
            write!(f, ":{source} ")?;
        }
        write!(f, "{}", self.verb)?;
        for (i, p) in self.params.iter().enumerate() {
            if i + 1 == self.params.len() && (p.is_empty() || p.contains(' ') || p.starts_with(':'))
            {
                write!(f, " :{p}")?;
            } else {
                write!(f, " {p}")?;
            }
        }
        Ok(())
    }
}

/// Splits an IRC line into tags-less source, verb and parameters (one or more spaces between
/// words; a word starting with `:` begins the last parameter). `None` if there is no verb.
pub fn parse(line: &str) -> Option<(Option<&str>, &str, Vec<&str>)> {
    let mut rest = line;
    if rest.starts_with('@') {
        rest = rest.split_once(' ').map_or("", |(_, r)| r);
    }
    rest = rest.trim_start_matches(' ');
    let mut source = None;
    if let Some(r) = rest.strip_prefix(':') {
        let (s, r) = r.split_once(' ').unwrap_or((r, ""));
        source = Some(s);
        rest = r.trim_start_matches(' ');
    }
    let (verb, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if verb.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(last) = rest.strip_prefix(':') {
            params.push(last);
            break;
        }
        let (word, r) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(word);
        rest = r;
    }
    Some((source, verb, params))
}

/// The model's view of a server line, if the model checks that kind of line: relayed events
/// (a user source), `ERROR`, server `NOTICE`s, and `001` (by its target only). Member lists are
/// collected separately ([`Model::output`]).
fn checked(line: &str) -> Option<Said> {
    let (source, verb, params) = parse(line)?;
    let from_user = source.is_some_and(|s| s.contains('!'));
    let relayed = matches!(
        verb,
        "PRIVMSG" | "NOTICE" | "JOIN" | "PART" | "QUIT" | "NICK" | "TOPIC"
    );
    let keep = (from_user && relayed) || verb == "ERROR" || (verb == "NOTICE" && !from_user);
    if verb == "001" {
        return Some(Said {
            source: None,
            verb: "001".into(),
            params: params.first().map(|p| p.to_string()).into_iter().collect(),
        });
    }
    keep.then(|| Said {
        source: source.filter(|_| from_user).map(str::to_owned),
        verb: verb.to_owned(),
        params: params.iter().map(|p| p.to_string()).collect(),
    })
}

/// The model's own name rules (RFC 2812 nicknames; Parla's `#` rooms; `CASEMAPPING=ascii`).
fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn valid_nick(nick: &str) -> bool {
    let special = |b: u8| b"[]\\`_^{|}".contains(&b);
    let b = nick.as_bytes();
    !b.is_empty()
        && b.len() <= NICK_LEN
        && (b[0].is_ascii_alphabetic() || special(b[0]))
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || special(c) || c == b'-')
}

fn valid_room(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= CHANNEL_LEN
        && b[0] == b'#'
        && b[1..]
            .iter()
            .all(|&c| c != b' ' && c != b',' && c >= 0x20 && c != 0x7f)
}

/// Cuts `text` to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Debug, Clone)]
struct Conn {
    host: String,
    nick: Option<String>,
    user: Option<String>,
    registered: bool,
    negotiating: bool,
    echo: bool,
    rooms: BTreeSet<String>,
    connected_at: Millis,
    last_heard: Millis,
    ping_sent: Option<Millis>,
}

impl Conn {
    fn prefix(&self) -> String {
        format!(
            "{}!{}@{}",
            self.nick.as_deref().unwrap_or("*"),
            self.user.as_deref().unwrap_or(""),
            self.host
        )
    }
}

#[derive(Debug, Clone)]
struct Room {
    name: String,
    members: BTreeSet<u64>,
}

/// What one input owes each connection.
#[derive(Debug, Default)]
struct Owed {
    /// What the input was, for reports.
    what: String,
    lines: BTreeMap<u64, Vec<Said>>,
    closes: BTreeSet<u64>,
    /// Member lists owed: (connection, room name) → nicks, from `353` or `352` replies.
    lists: BTreeMap<(u64, String, &'static str), BTreeSet<String>>,
    /// Whether the input's error replies are modelled (those of `PRIVMSG` and `NOTICE`): then
    /// `errors` holds the numerics owed, in order.
    errors_modelled: bool,
    errors: BTreeMap<u64, Vec<String>>,
}

/// What the core queued during one input.
#[derive(Debug, Default)]
struct Queued {
    lines: BTreeMap<u64, Vec<Said>>,
    /// Error numerics (`4xx`), by code.
    errors: BTreeMap<u64, Vec<String>>,
    closes: BTreeSet<u64>,
    lists: BTreeMap<(u64, String, &'static str), BTreeSet<String>>,
}

/// A difference between the model and the server.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// The connection it concerns, if one.
    pub conn: Option<u64>,
    /// What happened, expected and actual.
    pub text: String,
}

/// The model of one server incarnation.
#[derive(Debug)]
pub struct Model {
    settings: Settings,
    conns: BTreeMap<u64, Conn>,
    nicks: BTreeMap<String, u64>,
    ever_held: BTreeSet<String>,
    rooms: BTreeMap<String, Room>,
    shutting_down: bool,
    owed: Option<Owed>,
    queued: Queued,
}

impl Model {
    /// A model of a server just started with `settings`.
    pub fn new(settings: Settings) -> Model {
        let mut rooms = BTreeMap::new();
        if let Some(room) = &settings.default_room {
            rooms.insert(
                fold(room),
                Room {
                    name: room.clone(),
                    members: BTreeSet::new(),
                },
            );
        }
        Model {
            settings,
            conns: BTreeMap::new(),
            nicks: BTreeMap::new(),
            ever_held: BTreeSet::new(),
            rooms,
            shutting_down: false,
            owed: None,
            queued: Queued::default(),
        }
    }

    /// A connection from `host` was accepted as `conn`.
    pub fn connected(&mut self, now: Millis, conn: ConnId, host: &str) -> Vec<Divergence> {
        let found = self.settle();
        let mut owed = Owed {
            what: format!("connection {} opened", conn.0),
            ..Owed::default()
        };
        if self.shutting_down {
            owe_error(&mut owed, conn.0, SHUTDOWN_ERROR);
        } else {
            self.conns.insert(
                conn.0,
                Conn {
                    host: host.to_owned(),
                    nick: None,
                    user: None,
                    registered: false,
                    negotiating: false,
                    echo: false,
                    rooms: BTreeSet::new(),
                    connected_at: now,
                    last_heard: now,
                    ping_sent: None,
                },
            );
        }
        self.owed = Some(owed);
        found
    }

    /// The core is about to handle `input`.
    pub fn input(&mut self, now: Millis, input: &Input<'_>) -> Vec<Divergence> {
        let found = self.settle();
        let mut owed = Owed::default();
        match *input {
            Input::Line { conn, line } => {
                owed.what = format!(
                    "connection {}'s line {:?}",
                    conn.0,
                    String::from_utf8_lossy(line)
                );
                self.line(now, conn.0, line, &mut owed);
            }
            Input::LineTooLong { conn } => {
                owed.what = format!("connection {}'s over-long line", conn.0);
                if let Some(c) = self.conns.get_mut(&conn.0) {
                    c.last_heard = now;
                }
            }
            Input::Disconnect { conn, reason } => {
                owed.what = format!("connection {} going away ({reason})", conn.0);
                self.leave(conn.0, reason, &mut owed);
            }
            Input::Timeout => {
                owed.what = "the timer".into();
                self.timeout(now, &mut owed);
            }
            Input::Shutdown => {
                owed.what = "the shutdown".into();
                self.shutting_down = true;
                for (&id, c) in &self.conns {
                    let nick = c.nick.clone().unwrap_or_else(|| "*".into());
                    owe_server(&mut owed, id, "NOTICE", &[&nick, SHUTDOWN_NOTICE]);
                    owe_error(&mut owed, id, SHUTDOWN_ERROR);
                }
                self.conns.clear();
                self.nicks.clear();
                self.rooms.clear();
            }
        }
        self.owed = Some(owed);
        found
    }

    /// The core produced `output` for the input being handled.
    pub fn output(&mut self, output: &Output) {
        let mut line = |to: u64, bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim_end_matches("\r\n");
            if let Some(said) = checked(text) {
                self.queued.lines.entry(to).or_default().push(said);
            } else if let Some((_, code, _)) =
                parse(text).filter(|(_, v, _)| v.starts_with('4') && v.len() == 3)
            {
                self.queued
                    .errors
                    .entry(to)
                    .or_default()
                    .push(code.to_owned());
            } else if let Some((_, verb @ ("353" | "352"), params)) = parse(text) {
                let (room, names): (&str, Vec<&str>) = if verb == "353" {
                    (
                        params.get(2).copied().unwrap_or(""),
                        params.get(3).map_or(Vec::new(), |n| n.split(' ').collect()),
                    )
                } else {
                    (
                        params.get(1).copied().unwrap_or(""),
                        params.get(5).copied().into_iter().collect(),
                    )
                };
                let kind = if verb == "353" { "NAMES" } else { "WHO" };
                self.queued
                    .lists
                    .entry((to, room.to_owned(), kind))
                    .or_default()
                    .extend(
                        names
                            .iter()
                            .filter(|n| !n.is_empty())
                            .map(|n| n.to_string()),
                    );
            }
        };
        match output {
            Output::Send { to, line: l } => line(to.0, l),
            Output::Broadcast { to, line: l } => {
                for to in to {
                    line(to.0, l);
                }
            }
            Output::Close { conn, .. } => {
                self.queued.closes.insert(conn.0);
            }
        }
    }

    /// Every name any connection of this server has held (folded): the names whose holder
    /// [`Model::changed`] compares.
    pub fn names_ever_held(&self) -> impl Iterator<Item = &str> {
        self.ever_held.iter().map(String::as_str)
    }

    /// The core finished the input: compares what it queued with what the model owed, the
    /// names its users go by (`held`) and who holds each name ever held (`holders`, from the
    /// core's name table) with the model's.
    pub fn changed(
        &mut self,
        held: &[(u64, String)],
        holders: &[(String, Option<u64>)],
    ) -> Vec<Divergence> {
        let mut found = self.settle();
        for (name, holder) in holders {
            let mine = self.nicks.get(name).copied();
            if mine != *holder {
                let show =
                    |h: Option<u64>| h.map_or("nobody".to_owned(), |c| format!("connection {c}"));
                found.push(Divergence {
                    conn: None,
                    text: format!(
                        "the server's name table gives {name:?} to {}, but it belongs to {}",
                        show(*holder),
                        show(mine)
                    ),
                });
            }
        }
        let mine: Vec<(u64, String)> = self
            .conns
            .iter()
            .filter_map(|(&id, c)| Some((id, c.nick.clone()?)))
            .collect();
        let mut theirs = held.to_vec();
        theirs.sort();
        if mine != theirs {
            found.push(Divergence {
                conn: None,
                text: format!("the server holds the names {theirs:?}, but should hold {mine:?}"),
            });
        }
        found
    }

    /// Compares the finished input's outputs with what it owed.
    fn settle(&mut self) -> Vec<Divergence> {
        let queued = std::mem::take(&mut self.queued);
        let Some(owed) = self.owed.take() else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let ids: BTreeSet<u64> = owed
            .lines
            .keys()
            .chain(queued.lines.keys())
            .copied()
            .collect();
        let none = Vec::new();
        for id in ids {
            let (want, got) = (
                owed.lines.get(&id).unwrap_or(&none),
                queued.lines.get(&id).unwrap_or(&none),
            );
            let first = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i));
            if let Some(i) = first {
                let text = format!(
                    "after {}, connection {id} was owed {} but the server queued {}",
                    owed.what,
                    want.get(i)
                        .map_or("nothing more".into(), |s| format!("`{s}`")),
                    got.get(i)
                        .map_or("nothing more".into(), |s| format!("`{s}`")),
                );
                found.push(Divergence {
                    conn: Some(id),
                    text,
                });
            }
        }
        if owed.errors_modelled {
            let ids: BTreeSet<u64> = owed
                .errors
                .keys()
                .chain(queued.errors.keys())
                .copied()
                .collect();
            for id in ids {
                let want = owed.errors.get(&id).cloned().unwrap_or_default();
                let got = queued.errors.get(&id).cloned().unwrap_or_default();
                if want != got {
                    found.push(Divergence {
                        conn: Some(id),
                        text: format!(
                            "after {}, connection {id} was owed the error replies {want:?} but the server queued {got:?}",
                            owed.what
                        ),
                    });
                }
            }
        }
        if owed.closes != queued.closes {
            found.push(Divergence {
                conn: None,
                text: format!(
                    "after {}, the server closed {:?} but should have closed {:?}",
                    owed.what, queued.closes, owed.closes
                ),
            });
        }
        for (key, want) in &owed.lists {
            let got = queued.lists.get(key).cloned().unwrap_or_default();
            if &got != want {
                found.push(Divergence {
                    conn: Some(key.0),
                    text: format!(
                        "after {}, connection {} was owed the {} list of {} {want:?} but got {got:?}",
                        owed.what, key.0, key.2, key.1
                    ),
                });
            }
        }
        found
    }

    fn line(&mut self, now: Millis, id: u64, bytes: &[u8], owed: &mut Owed) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.last_heard = now;
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        if text.contains(['\0', '\r']) {
            return;
        }
        let body = if text.starts_with('@') {
            text.split_once(' ').map_or("", |(_, b)| b)
        } else {
            text
        };
        if body.len() + 2 > MAX_BODY_LEN {
            return;
        }
        let Some((_, verb, p)) = parse(text) else {
            return;
        };
        let verb = verb.to_ascii_uppercase();
        let needs = match verb.as_str() {
            "USER" => 4,
            "PING" | "JOIN" | "PART" | "CAP" | "PASS" | "TOPIC" | "WHOIS" | "MODE" | "ISON"
            | "USERHOST" => 1,
            _ => 0,
        };
        let before_registration = matches!(
            verb.as_str(),
            "PING" | "PONG" | "NICK" | "USER" | "CAP" | "PASS" | "QUIT"
        );
        if !c.registered && !before_registration {
            return;
        }
        if p.len() < needs {
            return;
        }
        let get = |i: usize| p.get(i).copied();
        match verb.as_str() {
            "NICK" => self.nick(id, get(0).unwrap_or(""), owed),
            "USER" => {
                let c = self.conns.get_mut(&id).expect("live");
                if c.registered {
                    return;
                }
                let mut user: String = p[0]
                    .chars()
                    .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
                    .take(USER_LEN - 1)
                    .collect();
                if user.is_empty() {
                    user = "user".into();
                }
                c.user = Some(format!("~{user}"));
                self.register(id, owed);
            }
            "CAP" => {
                let c = self.conns.get_mut(&id).expect("live");
                match p[0].to_ascii_uppercase().as_str() {
                    "LS" => c.negotiating |= !c.registered,
                    "REQ" => {
                        c.negotiating |= !c.registered;
                        let asked = get(1).unwrap_or("");
                        let mut echo = c.echo;
                        let ok = !asked.trim().is_empty()
                            && asked.split(' ').filter(|s| !s.is_empty()).all(|cap| {
                                let (name, on) = match cap.strip_prefix('-') {
                                    Some(n) => (n, false),
                                    None => (cap, true),
                                };
                                if name == "echo-message" {
                                    echo = on;
                                }
                                CAPS.contains(&name)
                            });
                        if ok {
                            c.echo = echo;
                        }
                    }
                    "END" => {
                        c.negotiating = false;
                        self.register(id, owed);
                    }
                    _ => {}
                }
            }
            "QUIT" => {
                let reason = match get(0) {
                    Some(r) if !r.is_empty() => format!("Quit: {r}"),
                    _ => "Quit".into(),
                };
                self.quit(id, &reason, owed);
            }
            "JOIN" => {
                if p[0] == "0" {
                    let mine: Vec<String> = self.conns[&id].rooms.iter().cloned().collect();
                    for key in mine {
                        self.part(id, &key, None, owed);
                    }
                    return;
                }
                for name in p[0].split(',').filter(|n| !n.is_empty()) {
                    let c = &self.conns[&id];
                    if valid_room(name)
                        && !c.rooms.contains(&fold(name))
                        && c.rooms.len() < MAX_ROOMS_PER_USER
                    {
                        self.join(id, name, owed);
                    }
                }
            }
            "PART" => {
                let reason = get(1);
                for name in p[0].split(',').filter(|n| !n.is_empty()) {
                    let key = fold(name);
                    if self
                        .rooms
                        .get(&key)
                        .is_some_and(|r| r.members.contains(&id))
                    {
                        self.part(id, &key, reason, owed);
                    }
                }
            }
            "PRIVMSG" | "NOTICE" => {
                owed.errors_modelled = true;
                let notice = verb == "NOTICE";
                match (
                    get(0).filter(|t| !t.is_empty()),
                    get(1).filter(|t| !t.is_empty()),
                ) {
                    (Some(targets), Some(text)) => self.message(id, &verb, targets, text, owed),
                    (None, _) if !notice => owe_numeric(owed, id, "411"),
                    (Some(_), None) if !notice => owe_numeric(owed, id, "412"),
                    _ => {}
                }
            }
            "TOPIC" => {
                let key = fold(p[0]);
                let (Some(room), Some(text)) = (self.rooms.get(&key), get(1)) else {
                    return;
                };
                if !room.members.contains(&id) {
                    return;
                }
                let prefix = self.conns[&id].prefix();
                let text = cut(text, TOPIC_LEN);
                for &m in &room.members {
                    owe(owed, m, Some(&prefix), "TOPIC", &[&room.name, text]);
                }
            }
            "NAMES" => {
                for name in get(0).unwrap_or("").split(',').filter(|n| !n.is_empty()) {
                    self.owe_names(id, &fold(name), "NAMES", owed);
                }
            }
            "WHO" => {
                let mask = get(0).unwrap_or("*");
                if mask.starts_with('#') {
                    self.owe_names(id, &fold(mask), "WHO", owed);
                }
            }
            _ => {}
        }
    }

    /// Owes `id` the member list of room `key` if it is a member (outsiders may be shown fewer).
    fn owe_names(&self, id: u64, key: &str, kind: &'static str, owed: &mut Owed) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        if !room.members.contains(&id) {
            return;
        }
        let names = room
            .members
            .iter()
            .filter_map(|m| self.conns[m].nick.clone())
            .collect();
        owed.lists.insert((id, room.name.clone(), kind), names);
    }

    fn nick(&mut self, id: u64, nick: &str, owed: &mut Owed) {
        if !valid_nick(nick) {
            return;
        }
        let key = fold(nick);
        if self.nicks.get(&key).is_some_and(|&holder| holder != id) {
            return;
        }
        let c = self.conns.get_mut(&id).expect("live");
        if c.nick.as_deref() == Some(nick) {
            return;
        }
        let old_prefix = c.prefix();
        if let Some(old) = c.nick.replace(nick.to_owned()) {
            self.nicks.remove(&fold(&old));
        }
        self.ever_held.insert(key.clone());
        self.nicks.insert(key, id);
        if !self.conns[&id].registered {
            return self.register(id, owed);
        }
        let mut told = self.peers(id);
        told.insert(id);
        for to in told {
            owe(owed, to, Some(&old_prefix), "NICK", &[nick]);
        }
    }

    fn register(&mut self, id: u64, owed: &mut Owed) {
        let c = self.conns.get_mut(&id).expect("live");
        if c.registered || c.negotiating || c.user.is_none() {
            return;
        }
        let Some(nick) = c.nick.clone() else { return };
        c.registered = true;
        owed.lines.entry(id).or_default().push(Said {
            source: None,
            verb: "001".into(),
            params: vec![nick],
        });
        if let Some(room) = self.settings.default_room.clone() {
            self.join(id, &room, owed);
        }
    }

    fn join(&mut self, id: u64, name: &str, owed: &mut Owed) {
        let key = fold(name);
        let room = self.rooms.entry(key.clone()).or_insert_with(|| Room {
            name: name.to_owned(),
            members: BTreeSet::new(),
        });
        room.members.insert(id);
        let room_name = room.name.clone();
        let c = self.conns.get_mut(&id).expect("live");
        c.rooms.insert(key.clone());
        let prefix = c.prefix();
        for &m in &self.rooms[&key].members {
            owe(owed, m, Some(&prefix), "JOIN", &[&room_name]);
        }
        self.owe_names(id, &key, "NAMES", owed);
    }

    fn part(&mut self, id: u64, key: &str, reason: Option<&str>, owed: &mut Owed) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let prefix = self.conns[&id].prefix();
        for &m in &room.members {
            match reason {
                Some(r) if !r.is_empty() => owe(owed, m, Some(&prefix), "PART", &[&room.name, r]),
                _ => owe(owed, m, Some(&prefix), "PART", &[&room.name]),
            }
        }
        self.leave_room(id, key);
    }

    fn leave_room(&mut self, id: u64, key: &str) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.rooms.remove(key);
        }
        let default = self.settings.default_room.as_deref().map(fold);
        if let Some(room) = self.rooms.get_mut(key) {
            room.members.remove(&id);
            if room.members.is_empty() && default.as_deref() != Some(key) {
                self.rooms.remove(key);
            }
        }
    }

    /// Everyone who shares a room with `id`, but `id`.
    fn peers(&self, id: u64) -> BTreeSet<u64> {
        self.conns[&id]
            .rooms
            .iter()
            .flat_map(|k| self.rooms[k].members.iter().copied())
            .filter(|&m| m != id)
            .collect()
    }

    fn message(&mut self, id: u64, verb: &str, targets: &str, text: &str, owed: &mut Owed) {
        if targets.is_empty() || text.is_empty() {
            return;
        }
        let notice = verb == "NOTICE";
        let targets: Vec<&str> = targets.split(',').filter(|t| !t.is_empty()).collect();
        if targets.len() > MAX_TARGETS {
            if !notice {
                owe_numeric(owed, id, "407");
            }
            return;
        }
        let c = &self.conns[&id];
        let (prefix, echo) = (c.prefix(), c.echo);
        for target in targets {
            let relayed = 1 + prefix.len() + 1 + verb.len() + 1 + target.len() + 2 + text.len() + 2;
            let refuse = |owed: &mut Owed, code: &str| {
                if !notice {
                    owe_numeric(owed, id, code);
                }
            };
            if relayed > MAX_BODY_LEN {
                refuse(owed, "417");
                continue;
            }
            if target.starts_with('#') {
                let Some(room) = self.rooms.get(&fold(target)) else {
                    refuse(owed, "403");
                    continue;
                };
                if !room.members.contains(&id) {
                    refuse(owed, "404");
                    continue;
                }
                for &m in room.members.iter().filter(|&&m| echo || m != id) {
                    owe(owed, m, Some(&prefix), verb, &[&room.name, text]);
                }
            } else {
                let Some(&to) = self.nicks.get(&fold(target)) else {
                    refuse(owed, "401");
                    continue;
                };
                let peer = &self.conns[&to];
                if !peer.registered {
                    refuse(owed, "401");
                    continue;
                }
                let name = peer.nick.clone().unwrap_or_default();
                owe(owed, to, Some(&prefix), verb, &[&name, text]);
                if echo && to != id {
                    owe(owed, id, Some(&prefix), verb, &[&name, text]);
                }
            }
        }
    }

    /// `id` leaves with `reason` and is closed with an `ERROR`.
    fn quit(&mut self, id: u64, reason: &str, owed: &mut Owed) {
        let Some(host) = self.conns.get(&id).map(|c| c.host.clone()) else {
            return;
        };
        self.leave(id, reason, owed);
        owe_error(owed, id, &format!("Closing Link: {host} ({reason})"));
    }

    /// `id` is forgotten; everyone who shared a room with it sees it quit.
    fn leave(&mut self, id: u64, reason: &str, owed: &mut Owed) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let told = self.peers(id);
        let (registered, prefix) = (c.registered, c.prefix());
        if let Some(nick) = &c.nick {
            self.nicks.remove(&fold(nick));
        }
        let rooms: Vec<String> = c.rooms.iter().cloned().collect();
        for key in rooms {
            self.leave_room(id, &key);
        }
        self.conns.remove(&id);
        if registered {
            for to in told {
                owe(owed, to, Some(&prefix), "QUIT", &[reason]);
            }
        }
    }

    /// The timer came due at `now`: pings and timeouts, in the order they fell due.
    fn timeout(&mut self, now: Millis, owed: &mut Owed) {
        let s = self.settings.clone();
        let mut due: Vec<(Millis, u64, String)> = Vec::new();
        for (&id, c) in &mut self.conns {
            if !c.registered {
                let deadline = c.connected_at.plus(s.registration_timeout_ms);
                if now >= deadline {
                    let secs = s.registration_timeout_ms / 1000;
                    due.push((
                        deadline,
                        id,
                        format!(
                            "Registration timeout: no valid NICK and USER within {secs} seconds"
                        ),
                    ));
                }
                continue;
            }
            match c.ping_sent {
                Some(sent) if c.last_heard < sent => {
                    let deadline = sent.plus(s.ping_timeout_ms);
                    if now >= deadline {
                        let secs = now.since(c.last_heard) / 1000;
                        due.push((deadline, id, format!("Ping timeout: {secs} seconds")));
                    }
                }
                _ => {
                    c.ping_sent = None;
                    if now >= c.last_heard.plus(s.ping_interval_ms) {
                        c.ping_sent = Some(now);
                    }
                }
            }
        }
        due.sort();
        for (_, id, reason) in due {
            self.quit(id, &reason, owed);
        }
    }
}

fn owe(owed: &mut Owed, to: u64, source: Option<&str>, verb: &str, params: &[&str]) {
    owed.lines.entry(to).or_default().push(Said {
        source: source.map(str::to_owned),
        verb: verb.to_owned(),
        params: params.iter().map(|p| p.to_string()).collect(),
    });
}

fn owe_numeric(owed: &mut Owed, to: u64, code: &str) {
    owed.errors.entry(to).or_default().push(code.to_owned());
}

fn owe_server(owed: &mut Owed, to: u64, verb: &str, params: &[&str]) {
    owe(owed, to, None, verb, params);
}

fn owe_error(owed: &mut Owed, to: u64, reason: &str) {
    owe(owed, to, None, "ERROR", &[reason]);
    owed.closes.insert(to);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_whatever_their_spacing_and_tags() {
        let (s, v, p) = parse("@time=x :a!b@c PRIVMSG #r :hi there").unwrap();
        assert_eq!(
            (s, v, p),
            (Some("a!b@c"), "PRIVMSG", vec!["#r", "hi there"])
        );
        let (s, v, p) = parse("JOIN  #a,#b   key").unwrap();
        assert_eq!((s, v, p), (None, "JOIN", vec!["#a,#b", "key"]));
        assert!(parse("").is_none());
        assert!(parse(":src").is_none());
    }

    #[test]
    fn shows_a_said_line_as_irc() {
        let s = checked(":a!b@c PRIVMSG #r :hi there").unwrap();
        assert_eq!(s.to_string(), ":a!b@c PRIVMSG #r :hi there");
        assert!(checked(":srv 353 me = #r :a b").is_none());
        assert_eq!(
            checked(":srv 001 me :Welcome").unwrap().to_string(),
            "001 me"
        );
    }

    #[test]
    fn name_rules() {
        assert!(valid_nick("ann") && valid_nick("[x]-1") && !valid_nick("1ann"));
        assert!(!valid_nick(&"a".repeat(NICK_LEN + 1)));
        assert!(valid_room("#a") && !valid_room("#") && !valid_room("#a b") && !valid_room("a"));
        assert_eq!(cut("héllo", 2), "h");
    }
}
