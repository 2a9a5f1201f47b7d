//! The reference model: an executable statement of what Parla promises, written apart from the
//! server's code, that every simulated server is checked against as it runs.
//!
//! The model follows one server incarnation's inputs in the one order its core handled them
//! (connections, lines, disconnections, timer wake-ups, shutdown; see
//! [`parla_net::server::Observer`]) and keeps its own books: who holds which name (compared
//! case-insensitively), who is in which room, each room's topic and creation time, each
//! connection's capabilities, modes, away message, real name and liveness, and the server's
//! counters. From those it predicts, for every input, **every line** each connection is owed, in
//! order:
//!
//! - every room message, direct message, join, part, quit, rename, mode and topic change, from
//!   the right source with the right parameters, exactly once, to exactly the right people (and
//!   to nobody else);
//! - every reply: the welcome burst (`001`–`005`, the `LUSERS` counts, the MOTD) when, and only
//!   when, registration completes; member lists (`353`, split as full as 512 bytes allow, `366`);
//!   `WHO`, `WHOIS`, `LIST`, `ISON`, `USERHOST`, `MODE`, `AWAY`, `TOPIC`, `CAP`, `PONG`, `TIME`,
//!   `VERSION` replies with their parameters; every error numeric and `FAIL` for a refused line;
//! - the server's liveness `PING`s, when they fall due;
//! - the `ERROR` that ends a connection the server closes (a `QUIT`, a timeout, a shutdown), the
//!   shutdown notice, and which connections are closed.
//!
//! Lines are compared by source, verb and parameters (tags and the colon convention do not
//! matter); a parameter the model leaves open (a human-readable text with no data in it, a
//! clock reading) matches anything. After each input the model compares its prediction with
//! what the core queued; the first difference is reported with the connection, the simulated
//! time, and the expected and actual lines. Together with [`crate::check`]'s delivery check
//! (every line queued reaches its client, in order, unless the link broke), that checks each
//! client's whole transcript.

use std::collections::{BTreeMap, BTreeSet};

use parla_net::server::Input;
use parla_room::limits::{
    AWAY_LEN, BAN_MASK_LEN, CAPS, CHANNEL_LEN, KEY_LEN, KICK_LEN, MAX_BANS, MAX_BODY_LEN,
    MAX_INVITES, MAX_ROOMS_PER_USER, MAX_TAGS_LEN, MAX_TARGETS, NICK_LEN, REALNAME_LEN,
    SHUTDOWN_ERROR, SHUTDOWN_NOTICE, TOPIC_LEN, USER_LEN, cap_ls,
};

mod history;
mod moderation;
pub use history::{Books, SharedBooks};
use moderation::{Batch, Modes};
use parla_room::{ConnId, Millis, Output};

/// The server settings the model follows: the core's own configuration (its names, MOTD,
/// password, timers and quiet threshold; the model keeps its own name rules and limits).
pub type Settings = parla_room::Config;

/// The capabilities Parla offers, in the order `CAP LIST` shows them.
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

/// A parameter the model leaves open: any value matches.
const ANY: &str = "\u{0}any";
/// Any number of further parameters, of any value (the `005` tokens).
const ANY_REST: &str = "\u{0}any…";

/// A line as the model compares it: its source, verb and parameters, whatever the encoding
/// (tags, and whether the last parameter was written with a colon, do not matter). In a
/// prediction a parameter may be [`ANY`] or end with [`ANY_REST`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    source: Option<String>,
    verb: String,
    params: Vec<String>,
}

impl Said {
    /// Whether the line `got` is this predicted line.
    fn admits(&self, got: &Said) -> bool {
        if self.source != got.source || self.verb != got.verb {
            return false;
        }
        let mut i = 0;
        for want in &self.params {
            if want == ANY_REST {
                return true;
            }
            match got.params.get(i) {
                Some(p) if want == ANY || want == p => i += 1,
                _ => return false,
            }
        }
        i == got.params.len()
    }
}

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(source) = &self.source {
            write!(f, ":{source} ")?;
        }
        write!(f, "{}", self.verb)?;
        for (i, p) in self.params.iter().enumerate() {
            let p = match p.as_str() {
                ANY => "<any>",
                ANY_REST => "<any…>",
                p => p,
            };
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

/// A server line as the model compares it.
fn said(line: &str) -> Said {
    match parse(line) {
        Some((source, verb, params)) => Said {
            source: source.map(str::to_owned),
            verb: verb.to_owned(),
            params: params.iter().map(|p| p.to_string()).collect(),
        },
        None => Said {
            source: None,
            verb: format!("<unparseable {line:?}>"),
            params: Vec::new(),
        },
    }
}

/// What the server promises of every line it sends: at most 512 bytes with CR LF (tags not
/// counted), by cutting the end of the last parameter, then of the longest other one (to one
/// character). Lines with open parameters are fixed texts, short by construction.
fn fit(source: Option<&str>, verb: &str, params: &mut [String]) {
    if params.iter().any(|p| p == ANY || p == ANY_REST) {
        return;
    }
    let trailing = !matches!(verb, "JOIN" | "NICK" | "MODE");
    loop {
        let mut len = source.map_or(0, |s| 1 + s.len() + 1) + verb.len() + 2;
        len += params.iter().map(|p| 1 + p.len()).sum::<usize>();
        if let Some(last) = params.last()
            && (trailing || last.is_empty() || last.starts_with(':') || last.contains(' '))
        {
            len += 1;
        }
        if len <= MAX_BODY_LEN {
            return;
        }
        let excess = len - MAX_BODY_LEN;
        let n = params.len();
        let (i, floor) = if params.last().is_some_and(|p| !p.is_empty()) {
            (n - 1, 0)
        } else {
            match (0..n.saturating_sub(1)).max_by_key(|&i| params[i].len()) {
                Some(i) if params[i].len() > 1 => (i, 1),
                _ => return,
            }
        };
        let mut keep = params[i].len().saturating_sub(excess).max(floor);
        while !params[i].is_char_boundary(keep) {
            keep -= 1;
        }
        if keep == params[i].len() {
            return;
        }
        params[i].truncate(keep);
    }
}

/// The model's own name rules (RFC 2812 nicknames; Parla's `#` rooms; `CASEMAPPING=ascii`).
pub(crate) fn fold(name: &str) -> String {
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

/// An IRC glob (`*` any run, `?` any one character), case-insensitive: the classic dynamic
/// programme, `ok[j]` = the mask so far matches the first `j` bytes of the text.
fn glob(mask: &str, text: &str) -> bool {
    let text = text.as_bytes();
    let mut ok = vec![false; text.len() + 1];
    ok[0] = true;
    for m in mask.bytes() {
        let before = ok.clone();
        ok[0] = m == b'*' && before[0];
        for j in 1..=text.len() {
            ok[j] = match m {
                b'*' => before[j] || ok[j - 1],
                b'?' => before[j - 1],
                m => before[j - 1] && m.eq_ignore_ascii_case(&text[j - 1]),
            };
        }
    }
    ok[text.len()]
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

/// A parameter echoed back in a middle position, as a well-formed line must carry it: a space
/// or a leading `:` would corrupt the line, so they are replaced (`_`, dropped), and an empty
/// one is `*`.
fn middle(p: &str) -> String {
    if !(p.is_empty() || p.contains(' ') || p.starts_with(':')) {
        return p.to_owned();
    }
    let s = p.trim_start_matches(':').replace(' ', "_");
    if s.is_empty() { "*".to_owned() } else { s }
}

#[derive(Debug, Clone)]
struct Conn {
    host: String,
    nick: Option<String>,
    user: Option<String>,
    realname: String,
    password: Option<String>,
    registered: bool,
    negotiating: bool,
    /// The capabilities it enabled (tags themselves are not compared; what the others change
    /// is: echoes, statuses, who gets a TAGMSG, AWAY, SETNAME or INVITE, labelled replies…).
    caps: BTreeSet<&'static str>,
    /// The operator name it took with `OPER`, if it did (and has not dropped `+o`).
    oper: Option<String>,
    /// Its read markers: folded target and timestamp, oldest first, at most 100 (kept with
    /// its name in history).
    markers: Vec<(String, String)>,
    /// From when it may read its name's conversations.
    history_since: Millis,
    invisible: bool,
    wallops: bool,
    /// `+B`: a bot.
    bot: bool,
    away: Option<String>,
    rooms: BTreeSet<String>,
    connected_at: Millis,
    last_heard: Millis,
    last_spoke: Millis,
    ping_sent: Option<Millis>,
    /// The names it monitors (folded), in the order added.
    monitoring: Vec<String>,
    /// The multiline message it is sending, if any.
    batch: Option<Batch>,
    /// When its accepted renames and topic changes happened (for their limits).
    renamed_at: Vec<Millis>,
    topic_set_at: Vec<Millis>,
}

/// The rule for renames and topic changes, stated on its own: one more is allowed while fewer
/// than `count` were accepted in the `ms` before `now`.
fn allowed(limit: Option<parla_room::server::Window>, accepted: &[Millis], now: Millis) -> bool {
    limit.is_none_or(|w| accepted.iter().filter(|t| now.0 < t.0 + w.ms).count() < w.count)
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

    /// The name numerics address it by.
    fn shown(&self) -> String {
        self.nick.clone().unwrap_or_else(|| "*".into())
    }
}

#[derive(Debug, Clone)]
struct Room {
    name: String,
    members: BTreeSet<u64>,
    /// Its operators (`@`): the member who made it (the default room has none).
    ops: BTreeSet<u64>,
    /// `+t` (every room but the default one starts with it), `+n` (all start with it), `+k`.
    topic_ops: bool,
    no_external: bool,
    key: Option<String>,
    /// Text, setter, when.
    topic: Option<(String, String, Millis)>,
    /// When it was made (unknown for the default room, made when the server started).
    created: Option<Millis>,
    /// Voices, masks, `+i +m +s +l`, invitations.
    modes: Modes,
    /// Its recent messages that may still be redacted: id and author, oldest first.
    recent: std::collections::VecDeque<(String, u64)>,
}

/// What one input owes each connection.
#[derive(Debug, Default)]
struct Owed {
    /// What the input was, for reports.
    what: String,
    lines: BTreeMap<u64, Vec<Said>>,
    closes: BTreeSet<u64>,
    /// Lines to a connection that do not answer its line (labeled-response): the delivery of
    /// a message it sent itself, whose echo is the answer. By connection and index.
    not_replies: Vec<(u64, usize)>,
}

/// What the core queued during one input.
#[derive(Debug, Default)]
struct Queued {
    lines: BTreeMap<u64, Vec<Said>>,
    closes: BTreeSet<u64>,
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
    /// The most users registered at once since the server started.
    max_users: usize,
    /// When the server's recent password checks (`OPER`) were made: at most 5 per 10 s.
    oper_checks: std::collections::VecDeque<Millis>,
    /// Names given up (by leaving or renaming), the newest first: nick, user, host, real name,
    /// when; at most `settings.whowas_history`.
    whowas: std::collections::VecDeque<(String, String, String, String, Millis)>,
    /// The time of the input being handled.
    now: Millis,
    /// When this incarnation started (its message ids begin with it).
    started: Millis,
    /// What history must hold, shared with the incarnations before and after this one.
    history: SharedBooks,
    /// Message ids given so far (the server's counter: one per target of a message, one per
    /// labelled batch of several replies, two per multiline message sent).
    msgids: u64,
    /// Recent direct messages that may still be redacted: id, author, recipient.
    direct: std::collections::VecDeque<(String, u64, u64)>,
    /// The line being handled has a label (labeled-response), and a batch it opened took it.
    labelled: bool,
    label_taken: bool,
    shutting_down: bool,
    owed: Option<Owed>,
    queued: Queued,
}

/// What one input is about to cost a connection: the lines a handler owes, built in order.
impl Owed {
    fn line(&mut self, to: u64, source: Option<&str>, verb: &str, params: &[&str]) {
        let mut params: Vec<String> = params.iter().map(|p| p.to_string()).collect();
        fit(source, verb, &mut params);
        self.lines.entry(to).or_default().push(Said {
            source: source.map(str::to_owned),
            verb: verb.to_owned(),
            params,
        });
    }

    fn error(&mut self, to: u64, reason: &str) {
        self.line(to, None, "ERROR", &[reason]);
        self.closes.insert(to);
    }
}

impl Model {
    /// A model of a server just started with `settings` at the simulation's epoch, with an
    /// empty history.
    pub fn new(settings: Settings) -> Model {
        let started = Millis(crate::runner::EPOCH_SECS * 1000);
        Model::with_history(settings, started, SharedBooks::default())
    }

    /// A model of a server started at `started` with `settings`, whose history is `books` (as
    /// the incarnations before it left them).
    pub fn with_history(settings: Settings, started: Millis, books: SharedBooks) -> Model {
        let mut rooms = BTreeMap::new();
        if let Some(room) = &settings.default_room {
            rooms.insert(
                fold(room),
                Room {
                    name: room.clone(),
                    members: BTreeSet::new(),
                    ops: BTreeSet::new(),
                    topic_ops: false,
                    no_external: true,
                    key: None,
                    topic: None,
                    created: None,
                    modes: Modes::default(),
                    recent: Default::default(),
                },
            );
        }
        Model {
            settings,
            conns: BTreeMap::new(),
            nicks: BTreeMap::new(),
            ever_held: BTreeSet::new(),
            rooms,
            max_users: 0,
            oper_checks: std::collections::VecDeque::new(),
            whowas: std::collections::VecDeque::new(),
            now: Millis(0),
            started,
            history: books,
            msgids: 0,
            direct: Default::default(),
            labelled: false,
            label_taken: false,
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
            owed.error(conn.0, SHUTDOWN_ERROR);
        } else {
            self.conns.insert(
                conn.0,
                Conn {
                    host: host.to_owned(),
                    nick: None,
                    user: None,
                    realname: String::new(),
                    password: None,
                    registered: false,
                    negotiating: false,
                    caps: BTreeSet::new(),
                    oper: None,
                    markers: Vec::new(),
                    history_since: Millis::default(),
                    invisible: false,
                    wallops: false,
                    bot: false,
                    away: None,
                    rooms: BTreeSet::new(),
                    connected_at: now,
                    last_heard: now,
                    last_spoke: now,
                    ping_sent: None,
                    monitoring: Vec::new(),
                    batch: None,
                    renamed_at: Vec::new(),
                    topic_set_at: Vec::new(),
                },
            );
        }
        self.owed = Some(owed);
        found
    }

    /// The core is about to handle `input`.
    pub fn input(&mut self, now: Millis, input: &Input<'_>) -> Vec<Divergence> {
        self.now = now;
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
                    self.numeric(&mut owed, conn.0, "417", &[ANY]);
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
                let server = self.settings.server_name.clone();
                for (&id, c) in &self.conns {
                    let nick = c.shown();
                    owed.line(id, Some(&server), "NOTICE", &[&nick, SHUTDOWN_NOTICE]);
                    owed.error(id, SHUTDOWN_ERROR);
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
            self.queued.lines.entry(to).or_default().push(said(text));
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
            let first = (0..want.len().max(got.len())).find(|&i| match (want.get(i), got.get(i)) {
                (Some(w), Some(g)) => !w.admits(g),
                _ => true,
            });
            if let Some(i) = first {
                let show = |s: Option<&Said>| s.map_or("nothing more".into(), |s| format!("`{s}`"));
                let text = format!(
                    "after {}, connection {id} was owed {} but the server queued {}",
                    owed.what,
                    show(want.get(i)),
                    show(got.get(i)),
                );
                found.push(Divergence {
                    conn: Some(id),
                    text,
                });
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
        found
    }

    /// Owes `id` the numeric `code`, addressed to it by its name as it is now.
    fn numeric(&self, owed: &mut Owed, id: u64, code: &str, params: &[&str]) {
        let Some(c) = self.conns.get(&id) else { return };
        let mut all = vec![c.shown()];
        let last = params.len().saturating_sub(1);
        for (i, p) in params.iter().enumerate() {
            all.push(if i == last || *p == ANY || *p == ANY_REST {
                p.to_string()
            } else {
                middle(p)
            });
        }
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        owed.line(id, Some(&self.settings.server_name), code, &all);
    }

    /// Owes `id` numerics `code` carrying `items` space-separated after `head`, as many per line
    /// as fit in 512 bytes; with no items, one empty list if `even_empty`.
    fn numeric_list(
        &self,
        owed: &mut Owed,
        id: u64,
        code: &str,
        head: &[&str],
        items: &[impl AsRef<str>],
        even_empty: bool,
    ) {
        self.numeric_list_by(owed, id, code, head, items, even_empty, ' ');
    }

    /// [`Model::numeric_list`] with the items joined by `sep` (`MONITOR` uses commas).
    #[allow(clippy::too_many_arguments)]
    fn numeric_list_by(
        &self,
        owed: &mut Owed,
        id: u64,
        code: &str,
        head: &[&str],
        items: &[impl AsRef<str>],
        even_empty: bool,
        sep: char,
    ) {
        let me = self.conns[&id].shown();
        let server = &self.settings.server_name;
        let head_text: String = head.iter().map(|h| format!(" {h}")).collect();
        let fits = |list: &str| {
            format!(":{server} {code} {me}{head_text} :{list}\r\n").len() <= MAX_BODY_LEN
        };
        let mut lines: Vec<String> = Vec::new();
        for item in items.iter().map(AsRef::as_ref) {
            match lines.last_mut() {
                Some(last) if fits(&format!("{last}{sep}{item}")) => {
                    last.push(sep);
                    last.push_str(item);
                }
                _ => lines.push(item.to_owned()),
            }
        }
        if lines.is_empty() && even_empty {
            lines.push(String::new());
        }
        for list in &lines {
            let mut params = head.to_vec();
            params.push(list);
            self.numeric(owed, id, code, &params);
        }
    }

    /// Owes `id` a line from the server that is not a numeric.
    fn server_line(&self, owed: &mut Owed, id: u64, verb: &str, params: &[&str]) {
        owed.line(id, Some(&self.settings.server_name), verb, params);
    }

    fn users(&self) -> usize {
        self.conns.values().filter(|c| c.registered).count()
    }

    fn line(&mut self, now: Millis, id: u64, bytes: &[u8], owed: &mut Owed) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.last_heard = now;
        let Ok(text) = std::str::from_utf8(bytes) else {
            return self.server_line(owed, id, "FAIL", &["*", "INVALID_UTF8", ANY]);
        };
        if text.bytes().all(|b| b == b' ') {
            return;
        }
        let text = text.strip_suffix('\r').unwrap_or(text);
        // Lengths first (tags, then the rest), then forbidden bytes, then the verb.
        let (tags_len, body) = match text.strip_prefix('@') {
            Some(after) => match after.split_once(' ') {
                Some((tags, body)) => (tags.len() + 2, body),
                None => (text.len(), ""),
            },
            None => (0, text),
        };
        if tags_len > MAX_TAGS_LEN || body.len() + 2 > MAX_BODY_LEN {
            return self.numeric(owed, id, "417", &[ANY]);
        }
        if text.contains(['\0', '\r', '\n']) {
            return self.server_line(owed, id, "FAIL", &["*", "INVALID_MESSAGE", ANY]);
        }
        if text.starts_with('@') && !text.contains(' ') {
            return;
        }
        let Some((_, verb, p)) = parse(text) else {
            return;
        };
        if verb.starts_with(['@', ':']) {
            return;
        }
        // labeled-response: whatever the line makes the server send back is labelled.
        let label = text
            .strip_prefix('@')
            .and_then(|t| t.split_once(' '))
            .and_then(|(tags, _)| tags.split(';').find_map(|t| t.strip_prefix("label=")))
            .filter(|l| !l.is_empty() && l.len() <= 64)
            .filter(|_| self.conns[&id].caps.contains("labeled-response"));
        // A line of a multiline message being sent: collected, not run.
        let tags = text
            .strip_prefix('@')
            .and_then(|t| t.split_once(' '))
            .map_or("", |(tags, _)| tags);
        if let Some(reference) = tags.split(';').find_map(|t| t.strip_prefix("batch=")) {
            let concat = tags.split(';').any(|t| t == "draft/multiline-concat");
            return self.batched_line(id, reference, concat, verb, &p, owed);
        }
        let mark = owed.lines.get(&id).map_or(0, Vec::len);
        self.label_taken = false;
        self.labelled = label.is_some();
        self.dispatch(now, id, verb, &p, owed);
        if label.is_some() && !self.label_taken {
            self.label_replies(id, mark, owed);
        }
        owed.not_replies.clear();
    }

    /// A labelled line's replies to `id` (its lines since `mark`, but a message to itself):
    /// none is an `ACK`; one keeps its place (the label is a tag, not compared); several come
    /// between `BATCH +<id> labeled-response` and `BATCH -<id>`.
    fn label_replies(&mut self, id: u64, mark: usize, owed: &mut Owed) {
        if !self.conns.contains_key(&id) {
            return; // it quit: its last lines go as they are
        }
        let server = self.settings.server_name.clone();
        let said = |verb: &str, params: &[&str]| Said {
            source: Some(server.clone()),
            verb: verb.to_owned(),
            params: params.iter().map(|p| (*p).to_owned()).collect(),
        };
        let lines = owed.lines.entry(id).or_default();
        let replies: Vec<usize> = (mark..lines.len())
            .filter(|i| !owed.not_replies.contains(&(id, *i)))
            .collect();
        match replies[..] {
            [] => lines.push(said("ACK", &[])),
            [_] => {}
            [first, .., last] => {
                self.msgids += 1;
                lines.insert(last + 1, said("BATCH", &[ANY]));
                lines.insert(first, said("BATCH", &[ANY, "labeled-response"]));
            }
        }
    }

    /// Runs a parsed line's command (the server's `dispatch`): `421`, `451` or `461` when it
    /// is unknown, out of turn or short.
    fn dispatch(&mut self, now: Millis, id: u64, verb: &str, p: &[&str], owed: &mut Owed) {
        let sent_verb = verb;
        let verb = verb.to_ascii_uppercase();
        let (needs, before_registration) = match verb.as_str() {
            "USER" => (4, true),
            "PING" | "CAP" | "PASS" => (1, true),
            "PONG" | "NICK" | "QUIT" => (0, true),
            "JOIN" | "PART" | "TOPIC" | "WHOIS" | "MODE" | "ISON" | "USERHOST" | "KICK"
            | "INVITE" | "MONITOR" | "OPER" | "KILL" | "WALLOPS" | "SETNAME" | "BATCH"
            | "REDACT" => (1, false),
            "PRIVMSG" | "NOTICE" | "TAGMSG" | "NAMES" | "WHO" | "WHOWAS" | "LUSERS" | "MOTD"
            | "AWAY" | "VERSION" | "TIME" | "LIST" | "MARKREAD" | "INFO" | "CHATHISTORY" => {
                (0, false)
            }
            _ => return self.numeric(owed, id, "421", &[sent_verb, ANY]),
        };
        if !self.conns[&id].registered && !before_registration {
            return self.numeric(owed, id, "451", &[ANY]);
        }
        if p.len() < needs {
            return self.numeric(owed, id, "461", &[&verb, ANY]);
        }
        let get = |i: usize| p.get(i).copied();
        match verb.as_str() {
            "NICK" => self.nick(now, id, get(0).unwrap_or(""), owed),
            "USER" => {
                if self.conns[&id].registered {
                    return self.numeric(owed, id, "462", &[ANY]);
                }
                let c = self.conns.get_mut(&id).expect("live");
                let mut user: String = p[0]
                    .chars()
                    .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
                    .take(USER_LEN - 1)
                    .collect();
                if user.is_empty() {
                    user = "user".into();
                }
                c.user = Some(format!("~{user}"));
                c.realname = cut(p[3], REALNAME_LEN).to_owned();
                self.register(now, id, owed);
            }
            "PASS" => {
                let c = self.conns.get_mut(&id).expect("live");
                if c.registered {
                    return self.numeric(owed, id, "462", &[ANY]);
                }
                c.password = Some(p[0].to_owned());
            }
            "CAP" => self.cap(now, id, p, owed),
            "PING" => {
                let server = self.settings.server_name.clone();
                self.server_line(owed, id, "PONG", &[&server, p[0]]);
            }
            "PONG" => {}
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
                let mut keys = get(1).unwrap_or("").split(',');
                for name in p[0].split(',').filter(|n| !n.is_empty()) {
                    let key = keys.next().filter(|k| !k.is_empty());
                    let c = &self.conns[&id];
                    if !valid_room(name) {
                        self.numeric(owed, id, "403", &[name, ANY]);
                    } else if c.rooms.contains(&fold(name)) {
                    } else if c.rooms.len() >= MAX_ROOMS_PER_USER {
                        self.numeric(owed, id, "405", &[name, ANY]);
                    } else if let Some(room) = self.rooms.get(&fold(name))
                        && let Some(code) = room.refuses_join(id, &c.prefix(), key)
                    {
                        let name = room.name.clone();
                        self.numeric(owed, id, code, &[&name, ANY]);
                    } else {
                        self.join(now, id, name, owed);
                    }
                }
            }
            "PART" => {
                let reason = get(1);
                for name in p[0].split(',').filter(|n| !n.is_empty()) {
                    let key = fold(name);
                    match self.rooms.get(&key) {
                        None => self.numeric(owed, id, "403", &[name, ANY]),
                        Some(r) if !r.members.contains(&id) => {
                            let name = r.name.clone();
                            self.numeric(owed, id, "442", &[&name, ANY]);
                        }
                        Some(_) => self.part(id, &key, reason, owed),
                    }
                }
            }
            "TAGMSG" => {
                if let Some(targets) = get(0).filter(|t| !t.is_empty()) {
                    self.message(now, id, "TAGMSG", targets, "", owed);
                }
            }
            "KICK" => self.kick(id, p, owed),
            "REDACT" => self.redact(id, p, owed),
            "CHATHISTORY" => self.chathistory(now, id, p, owed),
            "BATCH" => self.label_taken = self.batch(now, id, p, self.labelled, owed),
            "OPER" => self.oper(now, id, p[0], get(1), owed),
            "KILL" => self.kill(id, p[0], get(1), owed),
            "WALLOPS" => self.wallops(id, p[0], owed),
            "MONITOR" => self.monitor(id, p[0], get(1).unwrap_or(""), owed),
            "MARKREAD" => self.markread(id, get(0), get(1), owed),
            "INVITE" => self.invite(id, p, owed),
            "PRIVMSG" | "NOTICE" => {
                let notice = verb == "NOTICE";
                match (
                    get(0).filter(|t| !t.is_empty()),
                    get(1).filter(|t| !t.is_empty()),
                ) {
                    (Some(targets), Some(text)) => {
                        self.message(now, id, &verb, targets, text, owed)
                    }
                    (None, _) if !notice => self.numeric(owed, id, "411", &[ANY]),
                    (Some(_), None) if !notice => self.numeric(owed, id, "412", &[ANY]),
                    _ => {}
                }
            }
            "TOPIC" => self.topic(now, id, p[0], get(1), owed),
            "NAMES" => {
                let Some(names) = get(0) else {
                    return self.numeric(owed, id, "366", &["*", ANY]);
                };
                // Several rooms: their 353s, then one 366 naming them all (RFC 2812).
                let rooms: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
                let single = rooms.len() == 1;
                for name in &rooms {
                    let key = fold(name);
                    if self.rooms.get(&key).is_some_and(|r| r.visible_to(id)) {
                        self.names(id, &key, single, owed);
                    } else if single {
                        self.numeric(owed, id, "366", &[name, ANY]);
                    }
                }
                if !single {
                    self.numeric(owed, id, "366", &[names, ANY]);
                }
            }
            "WHO" => self.who(now, id, get(0).unwrap_or("*"), get(1), owed),
            "WHOWAS" => self.whowas(id, get(0), get(1), owed),
            "WHOIS" => self.whois(now, id, p.last().copied().unwrap_or(p[0]), owed),
            "MODE" if p[0].starts_with('#') => self.room_mode(now, id, p[0], &p[1..], owed),
            "MODE" => self.mode(id, p[0], get(1), owed),
            "AWAY" => {
                let away = get(0).filter(|t| !t.is_empty());
                self.conns.get_mut(&id).expect("live").away =
                    away.map(|t| cut(t, AWAY_LEN).to_owned());
                let code = if away.is_some() { "306" } else { "305" };
                self.numeric(owed, id, code, &[ANY]);
                let told: Vec<u64> = self.peers_and_monitors(id).into_iter().collect();
                self.tell_away(id, &told, owed);
            }
            "SETNAME" => {
                let name = p[0];
                if name.is_empty() || name.len() > REALNAME_LEN {
                    let params = ["SETNAME", "INVALID_REALNAME", ANY];
                    return self.server_line(owed, id, "FAIL", &params);
                }
                let c = self.conns.get_mut(&id).expect("live");
                c.realname = name.to_owned();
                let prefix = c.prefix();
                let told = self.peers_and_monitors(id);
                for t in told {
                    if self.conns[&t].caps.contains("setname") {
                        owed.line(t, Some(&prefix), "SETNAME", &[name]);
                    }
                }
                owed.line(id, Some(&prefix), "SETNAME", &[name]);
            }
            "INFO" => {
                for _ in 0..3 {
                    self.numeric(owed, id, "371", &[ANY]);
                }
                self.numeric(owed, id, "374", &[ANY]);
            }
            "ISON" => {
                let online: Vec<String> = p
                    .iter()
                    .flat_map(|s| s.split(' '))
                    .filter_map(|n| self.registered_holder(n))
                    .map(|c| c.shown())
                    .collect();
                self.numeric_list(owed, id, "303", &[], &online, true);
            }
            "USERHOST" => {
                let replies: Vec<String> = p
                    .iter()
                    .take(5)
                    .filter_map(|n| self.registered_holder(n))
                    .map(|c| {
                        let away = if c.away.is_some() { '-' } else { '+' };
                        let user = c.user.as_deref().unwrap_or("");
                        format!("{}={away}{user}@{}", c.shown(), c.host)
                    })
                    .collect();
                self.numeric_list(owed, id, "302", &[], &replies, true);
            }
            "LUSERS" => self.lusers(id, owed),
            "MOTD" => self.motd(id, owed),
            "VERSION" => {
                let s = &self.settings;
                let (version, server) = (s.version.clone(), s.server_name.clone());
                self.numeric(owed, id, "351", &[&version, &server, ANY]);
                self.isupport(id, owed);
            }
            "TIME" => {
                let server = self.settings.server_name.clone();
                self.numeric(owed, id, "391", &[&server, ANY]);
            }
            "LIST" => {
                self.numeric(owed, id, "321", &["Channel", ANY]);
                let wanted: Option<BTreeSet<String>> =
                    get(0).map(|f| f.split(',').map(fold).collect());
                for (key, room) in &self.rooms {
                    if wanted.as_ref().is_some_and(|w| !w.contains(key)) || !room.visible_to(id) {
                        continue;
                    }
                    let count = room.members.len().to_string();
                    let topic = room.topic.as_ref().map_or("", |t| t.0.as_str());
                    self.numeric(owed, id, "322", &[&room.name, &count, topic]);
                }
                self.numeric(owed, id, "323", &[ANY]);
            }
            _ => unreachable!("every verb above has an arm"),
        }
    }

    /// The registered connection holding `nick`, if any.
    fn registered_holder(&self, nick: &str) -> Option<&Conn> {
        let c = &self.conns[self.nicks.get(&fold(nick))?];
        c.registered.then_some(c)
    }

    fn cap(&mut self, now: Millis, id: u64, p: &[&str], owed: &mut Owed) {
        let c = self.conns.get_mut(&id).expect("live");
        let nick = c.shown();
        match p[0].to_ascii_uppercase().as_str() {
            "LS" => {
                c.negotiating |= !c.registered;
                // Capability values only for version 302 and later.
                let s = &self.settings;
                let offered = match p.get(1).and_then(|v| v.parse::<u32>().ok()) {
                    Some(v) if v >= 302 => cap_ls(s.multiline_max_bytes, s.multiline_max_lines),
                    _ => CAPS.join(" "),
                };
                self.server_line(owed, id, "CAP", &[&nick, "LS", &offered]);
            }
            "LIST" => {
                // In the order Parla lists them.
                let on: Vec<&str> = CAP_ORDER
                    .iter()
                    .copied()
                    .filter(|name| c.caps.contains(name))
                    .collect();
                let list = on.join(" ");
                self.server_line(owed, id, "CAP", &[&nick, "LIST", &list]);
            }
            "REQ" => {
                c.negotiating |= !c.registered;
                let asked = p.get(1).copied().unwrap_or("");
                // Granted or refused whole.
                let mut caps = c.caps.clone();
                let ok = !asked.trim().is_empty()
                    && asked.split(' ').filter(|s| !s.is_empty()).all(|cap| {
                        let (name, on) = match cap.strip_prefix('-') {
                            Some(n) => (n, false),
                            None => (cap, true),
                        };
                        let Some(&known) = CAP_ORDER.iter().find(|c| **c == name) else {
                            return false;
                        };
                        if on {
                            caps.insert(known);
                        } else {
                            caps.remove(known);
                        }
                        true
                    });
                if ok {
                    c.caps = caps;
                }
                let verdict = if ok { "ACK" } else { "NAK" };
                self.server_line(owed, id, "CAP", &[&nick, verdict, asked]);
            }
            "END" => {
                c.negotiating = false;
                self.register(now, id, owed);
            }
            _ => self.numeric(owed, id, "410", &[p[0], ANY]),
        }
    }

    /// Owes `id` the member list of room `key`: every member's name if it is a member, the
    /// visible ones' otherwise; as many names per `353` as fit in 512 bytes, then `366`.
    fn names(&self, id: u64, key: &str, end: bool, owed: &mut Owed) {
        let room = &self.rooms[key];
        let inside = room.members.contains(&id);
        let names: Vec<String> = room
            .members
            .iter()
            .map(|m| (m, &self.conns[m]))
            .filter(|(_, c)| inside || !c.invisible)
            .filter_map(|(m, c)| {
                let asker = &self.conns[&id].caps;
                let status = room.status(*m, asker.contains("multi-prefix"));
                let nick = c.nick.as_deref()?;
                Some(if asker.contains("userhost-in-names") {
                    format!("{status}{}", c.prefix())
                } else {
                    format!("{status}{nick}")
                })
            })
            .collect();
        let kind = if room.modes.secret { "@" } else { "=" };
        self.numeric_list(owed, id, "353", &[kind, &room.name], &names, false);
        if end {
            self.numeric(owed, id, "366", &[&room.name, ANY]);
        }
    }

    /// Owes `id` the topic of room `key` (`332`, `333`), or `331` if it has none and `say_none`.
    fn send_topic(&self, id: u64, key: &str, say_none: bool, owed: &mut Owed) {
        let room = &self.rooms[key];
        match &room.topic {
            Some((text, setter, at)) => {
                self.numeric(owed, id, "332", &[&room.name, text]);
                let at = at.as_secs().to_string();
                self.numeric(owed, id, "333", &[&room.name, setter, &at]);
            }
            None if say_none => self.numeric(owed, id, "331", &[&room.name, ANY]),
            None => {}
        }
    }

    fn topic(&mut self, now: Millis, id: u64, name: &str, text: Option<&str>, owed: &mut Owed) {
        let key = fold(name);
        let Some(room) = self.rooms.get(&key) else {
            return self.numeric(owed, id, "403", &[name, ANY]);
        };
        let Some(text) = text else {
            return self.send_topic(id, &key, true, owed);
        };
        if !room.members.contains(&id) {
            let name = room.name.clone();
            return self.numeric(owed, id, "442", &[&name, ANY]);
        }
        if room.topic_ops && !self.may_moderate(&key, id) {
            let name = room.name.clone();
            return self.numeric(owed, id, "482", &[&name, ANY]);
        }
        let limit = self.settings.topic_changes;
        let c = self.conns.get_mut(&id).expect("live");
        if !allowed(limit, &c.topic_set_at, now) {
            let name = room.name.clone();
            return self.server_line(owed, id, "FAIL", &["TOPIC", "RATE_LIMITED", &name, ANY]);
        }
        c.topic_set_at.push(now);
        let room = &self.rooms[&key];
        let c = &self.conns[&id];
        let (prefix, setter) = (c.prefix(), c.shown());
        let text = cut(text, TOPIC_LEN);
        for &m in &room.members {
            owed.line(m, Some(&prefix), "TOPIC", &[&room.name, text]);
        }
        let room = self.rooms.get_mut(&key).expect("checked");
        room.topic = (!text.is_empty()).then(|| (text.to_owned(), setter, now));
    }

    /// `WHO <mask> [%<fields>[,<token>]]`: `352` per match, or with WHOX `354` with the
    /// fields asked for, in the order `tcuihsnfdlaor` whatever order they were asked in.
    fn who(&self, now: Millis, id: u64, mask: &str, whox: Option<&str>, owed: &mut Owed) {
        let server = self.settings.server_name.clone();
        let whox = whox.and_then(|f| f.strip_prefix('%')).map(|f| {
            let (fields, token) = f.split_once(',').unwrap_or((f, ""));
            (fields.to_owned(), token.chars().take(3).collect::<String>())
        });
        let row = |owed: &mut Owed, room: &str, c: &Conn, status: &str| {
            let away = if c.away.is_some() { "G" } else { "H" };
            let oper = if c.oper.is_some() { "*" } else { "" };
            let bot = if c.bot { "B" } else { "" };
            let flags = format!("{away}{bot}{oper}{status}");
            let user = c.user.clone().unwrap_or_default();
            let Some((fields, token)) = &whox else {
                let real = format!("0 {}", c.realname);
                let params = [room, &user, &c.host, &server, &c.shown(), &flags, &real];
                return self.numeric(owed, id, "352", &params);
            };
            let idle = (now.since(c.last_spoke) / 1000).to_string();
            let nick = c.shown();
            let out: Vec<&str> = "tcuihsnfdlaor"
                .chars()
                .filter(|f| fields.contains(*f))
                .map(|f| match f {
                    't' => token.as_str(),
                    'c' => room,
                    'u' => &user,
                    'i' | 'h' => &c.host,
                    's' => &server,
                    'n' => &nick,
                    'f' => &flags,
                    'd' | 'a' => "0",
                    'l' => &idle,
                    'o' => "n/a",
                    _ => &c.realname,
                })
                .collect();
            if !out.is_empty() {
                self.numeric(owed, id, "354", &out);
            }
        };
        let mine = &self.conns[&id].rooms;
        if mask.starts_with('#') {
            if let Some(room) = self.rooms.get(&fold(mask)) {
                let inside = room.members.contains(&id);
                let all = self.conns[&id].caps.contains("multi-prefix");
                for m in &room.members {
                    let c = &self.conns[m];
                    if inside || !(c.invisible || room.modes.secret) {
                        row(owed, &room.name, c, room.status(*m, all));
                    }
                }
            }
        } else {
            let all = mask == "*" || mask == "0";
            // `+i` hides a user from masks, not from someone who names it exactly.
            let exact = !mask.contains(['*', '?']);
            for (&other, c) in &self.conns {
                let visible = exact || other == id || !c.invisible || !c.rooms.is_disjoint(mine);
                let matches =
                    c.registered && c.nick.as_deref().is_some_and(|n| all || glob(mask, n));
                if visible && matches {
                    row(owed, "*", c, "");
                }
            }
        }
        self.numeric(owed, id, "315", &[mask, ANY]);
    }

    fn whois(&self, now: Millis, id: u64, nick: &str, owed: &mut Owed) {
        let Some(c) = self.registered_holder(nick) else {
            self.numeric(owed, id, "401", &[nick, ANY]);
            return self.numeric(owed, id, "318", &[nick, ANY]);
        };
        let name = c.shown();
        let user = c.user.clone().unwrap_or_default();
        self.numeric(owed, id, "311", &[&name, &user, &c.host, "*", &c.realname]);
        let holder = self.nicks[&fold(nick)];
        let all = self.conns[&id].caps.contains("multi-prefix");
        let rooms: Vec<String> = c
            .rooms
            .iter()
            .map(|k| &self.rooms[k])
            .filter(|r| r.visible_to(id))
            .map(|r| format!("{}{}", r.status(holder, all), r.name))
            .collect();
        self.numeric_list(owed, id, "319", &[&name], &rooms, false);
        let server = self.settings.server_name.clone();
        self.numeric(owed, id, "312", &[&name, &server, ANY]);
        if c.oper.is_some() {
            self.numeric(owed, id, "313", &[&name, ANY]);
        }
        if c.bot {
            self.numeric(owed, id, "335", &[&name, ANY]);
        }
        if let Some(away) = &c.away {
            self.numeric(owed, id, "301", &[&name, away]);
        }
        let idle = (now.since(c.last_spoke) / 1000).to_string();
        let signon = c.connected_at.as_secs().to_string();
        self.numeric(owed, id, "317", &[&name, &idle, &signon, ANY]);
        self.numeric(owed, id, "318", &[&name, ANY]);
    }

    /// `MODE <nick> [<changes>]`: our own user modes (a room's are in `moderation`).
    fn mode(&mut self, id: u64, target: &str, modes: Option<&str>, owed: &mut Owed) {
        let c = self.conns.get_mut(&id).expect("live");
        let me = c.shown();
        if fold(target) != fold(&me) {
            return self.numeric(owed, id, "502", &[ANY]);
        }
        let Some(modes) = modes else {
            let mut shown = String::from("+");
            shown.push_str(if c.bot { "B" } else { "" });
            shown.push_str(if c.invisible { "i" } else { "" });
            shown.push_str(if c.oper.is_some() { "o" } else { "" });
            shown.push_str(if c.wallops { "w" } else { "" });
            return self.numeric(owed, id, "221", &[&shown]);
        };
        // Every letter that changed something, signs as they switch (`o` only comes from OPER,
        // and only goes).
        let (mut adding, mut unknown) = (true, false);
        let (mut changes, mut sign) = (String::new(), None);
        for ch in modes.chars() {
            let changed = match ch {
                '+' | '-' => {
                    adding = ch == '+';
                    continue;
                }
                'i' => std::mem::replace(&mut c.invisible, adding) != adding,
                'w' => std::mem::replace(&mut c.wallops, adding) != adding,
                'B' => std::mem::replace(&mut c.bot, adding) != adding,
                'o' => !adding && c.oper.take().is_some(),
                _ => {
                    unknown = true;
                    false
                }
            };
            if changed {
                if sign != Some(adding) {
                    changes.push(if adding { '+' } else { '-' });
                    sign = Some(adding);
                }
                changes.push(ch);
            }
        }
        if !changes.is_empty() {
            owed.line(id, Some(&c.prefix()), "MODE", &[&me, &changes]);
        }
        if unknown {
            self.numeric(owed, id, "501", &[ANY]);
        }
    }

    fn lusers(&self, id: u64, owed: &mut Owed) {
        let users = self.users();
        let invisible = self
            .conns
            .values()
            .filter(|c| c.registered && c.invisible)
            .count();
        let unknown = self.conns.len() - users;
        let client = format!(
            "There are {} users and {invisible} invisible on 1 servers",
            users - invisible
        );
        self.numeric(owed, id, "251", &[&client]);
        self.numeric(owed, id, "252", &["0", ANY]);
        if unknown > 0 {
            self.numeric(owed, id, "253", &[&unknown.to_string(), ANY]);
        }
        self.numeric(owed, id, "254", &[&self.rooms.len().to_string(), ANY]);
        let me = format!("I have {users} clients and 0 servers");
        self.numeric(owed, id, "255", &[&me]);
        let (u, m) = (users.to_string(), self.max_users.to_string());
        let local = format!("Current local users {users}, max {}", self.max_users);
        self.numeric(owed, id, "265", &[&u, &m, &local]);
        self.numeric(owed, id, "266", &[&u, &m, ANY]);
    }

    fn motd(&self, id: u64, owed: &mut Owed) {
        if self.settings.motd.is_empty() {
            return self.numeric(owed, id, "422", &[ANY]);
        }
        self.numeric(owed, id, "375", &[ANY]);
        for line in &self.settings.motd {
            self.numeric(owed, id, "372", &[&format!("- {line}")]);
        }
        self.numeric(owed, id, "376", &[ANY]);
    }

    /// The `005` lines: their tokens are the server's configuration, not the model's business;
    /// two lines of them.
    fn isupport(&self, id: u64, owed: &mut Owed) {
        for _ in 0..2 {
            self.numeric(owed, id, "005", &[ANY_REST]);
        }
    }

    fn nick(&mut self, now: Millis, id: u64, nick: &str, owed: &mut Owed) {
        if nick.is_empty() {
            return self.numeric(owed, id, "431", &[ANY]);
        }
        if !valid_nick(nick) {
            return self.numeric(owed, id, "432", &[nick, ANY]);
        }
        let key = fold(nick);
        if self.nicks.get(&key).is_some_and(|&holder| holder != id) {
            return self.numeric(owed, id, "433", &[nick, ANY]);
        }
        let c = self.conns.get_mut(&id).expect("live");
        if c.nick.as_deref() == Some(nick) {
            return;
        }
        if c.registered {
            if !allowed(self.settings.nick_changes, &c.renamed_at, now) {
                return self.numeric(owed, id, "438", &[nick, ANY]);
            }
            c.renamed_at.push(now);
            self.remember(id);
        }
        // A change of case only is the same name: its monitors are not told.
        let renamed = self.conns[&id]
            .nick
            .as_deref()
            .is_none_or(|old| fold(old) != fold(nick));
        if renamed {
            self.tell_monitors(id, false, owed);
            self.release(now, id);
        }
        let c = self.conns.get_mut(&id).expect("live");
        let old_prefix = c.prefix();
        if let Some(old) = c.nick.replace(nick.to_owned()) {
            self.nicks.remove(&fold(&old));
        }
        self.ever_held.insert(key.clone());
        self.nicks.insert(key, id);
        if !self.conns[&id].registered {
            return self.register(now, id, owed);
        }
        let mut told = self.peers(id);
        told.insert(id);
        for to in told {
            owed.line(to, Some(&old_prefix), "NICK", &[nick]);
        }
        if renamed {
            self.tell_monitors(id, true, owed);
            self.claim(now, id);
        }
    }

    /// Those who monitor registered `id`'s name (but itself) learn it came online (`730`, its
    /// full prefix) or went offline (`731`, its name).
    fn tell_monitors(&self, id: u64, online: bool, owed: &mut Owed) {
        let Some(c) = self.conns.get(&id).filter(|c| c.registered) else {
            return;
        };
        let Some(nick) = c.nick.clone() else { return };
        let (code, shown) = if online {
            ("730", c.prefix())
        } else {
            ("731", nick.clone())
        };
        for (&w, watcher) in &self.conns {
            if w != id && watcher.monitoring.contains(&fold(&nick)) {
                self.numeric(owed, w, code, &[&shown]);
            }
        }
    }

    /// `MARKREAD <target> [timestamp=<ts>]`: sets the marker (never back; a well-formed
    /// `YYYY-MM-DDThh:mm:ss.sssZ` only, else `FAIL`), then tells it as it stands.
    fn markread(&mut self, id: u64, target: Option<&str>, given: Option<&str>, owed: &mut Owed) {
        let Some(target) = target.filter(|t| !t.is_empty()) else {
            return self.server_line(owed, id, "FAIL", &["MARKREAD", "NEED_MORE_PARAMS", ANY]);
        };
        if let Some(given) = given {
            let well_formed = |ts: &str| {
                ts.len() == 24
                    && ts.char_indices().all(|(i, ch)| match i {
                        4 | 7 => ch == '-',
                        10 => ch == 'T',
                        13 | 16 => ch == ':',
                        19 => ch == '.',
                        23 => ch == 'Z',
                        _ => ch.is_ascii_digit(),
                    })
            };
            let Some(ts) = given.strip_prefix("timestamp=").filter(|t| well_formed(t)) else {
                let params = ["MARKREAD", "INVALID_PARAMS", target, ANY];
                return self.server_line(owed, id, "FAIL", &params);
            };
            let markers = &mut self.conns.get_mut(&id).expect("live").markers;
            match markers.iter_mut().find(|(k, _)| *k == fold(target)) {
                Some((_, stored)) => {
                    if stored.as_str() < ts {
                        *stored = ts.to_owned();
                    }
                }
                None => {
                    if markers.len() >= 100 {
                        markers.remove(0);
                    }
                    markers.push((fold(target), ts.to_owned()));
                }
            }
            self.save_markers(id);
        }
        self.tell_marker(id, target, owed);
    }

    /// `MARKREAD <target> timestamp=<ts>`, or `*` without a marker, to `id`.
    fn tell_marker(&self, id: u64, target: &str, owed: &mut Owed) {
        let shown = self.conns[&id]
            .markers
            .iter()
            .find(|(k, _)| *k == fold(target))
            .map_or("*".to_owned(), |(_, ts)| format!("timestamp={ts}"));
        let server = self.settings.server_name.clone();
        owed.line(id, Some(&server), "MARKREAD", &[target, &shown]);
    }

    /// `MONITOR + <nicks>`, `- <nicks>`, `C`, `L`, `S` (at most 100 names each; `734` for the
    /// rest once full).
    fn monitor(&mut self, id: u64, op: &str, list: &str, owed: &mut Owed) {
        let names: Vec<&str> = list.split(',').filter(|n| !n.is_empty()).collect();
        let online = |model: &Model, key: &str| {
            let holder = model.nicks.get(key)?;
            let c = model.conns.get(holder).filter(|c| c.registered)?;
            Some(c.prefix())
        };
        match op {
            "+" => {
                let (mut on, mut off) = (Vec::new(), Vec::new());
                for (i, name) in names.iter().enumerate() {
                    let key = fold(name);
                    let mine = &mut self.conns.get_mut(&id).expect("live").monitoring;
                    if !mine.contains(&key) {
                        if mine.len() >= 100 {
                            let rest = names[i..].join(",");
                            self.numeric(owed, id, "734", &["100", &rest, ANY]);
                            break;
                        }
                        mine.push(key.clone());
                    }
                    match online(self, &key) {
                        Some(prefix) => on.push(prefix),
                        None => off.push((*name).to_owned()),
                    }
                }
                self.numeric_list_by(owed, id, "730", &[], &on, false, ',');
                self.numeric_list_by(owed, id, "731", &[], &off, false, ',');
            }
            "-" => {
                let mine = &mut self.conns.get_mut(&id).expect("live").monitoring;
                for name in names {
                    mine.retain(|k| *k != fold(name));
                }
            }
            "C" | "c" => self.conns.get_mut(&id).expect("live").monitoring.clear(),
            "L" | "l" => {
                let mine = self.conns[&id].monitoring.clone();
                self.numeric_list_by(owed, id, "732", &[], &mine, false, ',');
                self.numeric(owed, id, "733", &[ANY]);
            }
            "S" | "s" => {
                let (mut on, mut off) = (Vec::new(), Vec::new());
                for key in &self.conns[&id].monitoring {
                    match online(self, key) {
                        Some(prefix) => on.push(prefix),
                        None => off.push(key.clone()),
                    }
                }
                self.numeric_list_by(owed, id, "730", &[], &on, false, ',');
                self.numeric_list_by(owed, id, "731", &[], &off, false, ',');
            }
            _ => {}
        }
    }

    fn register(&mut self, now: Millis, id: u64, owed: &mut Owed) {
        let c = self.conns.get_mut(&id).expect("live");
        if c.registered || c.negotiating || c.user.is_none() || c.nick.is_none() {
            return;
        }
        if let Some(expected) = &self.settings.password
            && c.password.as_ref() != Some(expected)
        {
            self.numeric(owed, id, "464", &[ANY]);
            return self.quit(id, "Bad password", owed);
        }
        let c = self.conns.get_mut(&id).expect("live");
        c.registered = true;
        c.last_spoke = now;
        let users = self.users();
        self.max_users = self.max_users.max(users);
        let s = self.settings.clone();
        self.numeric(owed, id, "001", &[ANY]);
        self.numeric(owed, id, "002", &[ANY]);
        self.numeric(owed, id, "003", &[ANY]);
        self.numeric(
            owed,
            id,
            "004",
            &[&s.server_name, &s.version, "Biow", "beIiklmnostv"],
        );
        self.isupport(id, owed);
        self.lusers(id, owed);
        self.motd(id, owed);
        self.tell_monitors(id, true, owed);
        self.claim(now, id);
        if let Some(room) = &s.default_room {
            self.join(now, id, room, owed);
        }
    }

    fn join(&mut self, now: Millis, id: u64, name: &str, owed: &mut Owed) {
        let key = fold(name);
        let room = self.rooms.entry(key.clone()).or_insert_with(|| Room {
            name: name.to_owned(),
            members: BTreeSet::new(),
            ops: BTreeSet::new(),
            topic_ops: true,
            no_external: true,
            key: None,
            topic: None,
            created: Some(now),
            modes: Modes::default(),
            recent: Default::default(),
        });
        // A new room's first member is its operator (the default room is never new).
        if room.members.is_empty() && room.created.is_some() {
            room.ops.insert(id);
        }
        room.members.insert(id);
        room.modes.invited.retain(|&i| i != id);
        let room_name = room.name.clone();
        let c = self.conns.get_mut(&id).expect("live");
        c.rooms.insert(key.clone());
        let prefix = c.prefix();
        let quiet = self.is_quiet(&key);
        for &m in self.rooms[&key]
            .members
            .iter()
            .filter(|&&m| !quiet || m == id)
        {
            owed.line(m, Some(&prefix), "JOIN", &[&room_name]);
        }
        if self.conns[&id].caps.contains("draft/read-marker") {
            self.tell_marker(id, &room_name, owed);
        }
        // Members with away-notify learn that the newcomer is away.
        if self.conns[&id].away.is_some() {
            let others: Vec<u64> = self.rooms[&key]
                .members
                .iter()
                .copied()
                .filter(|&m| m != id)
                .collect();
            self.tell_away(id, &others, owed);
        }
        self.send_topic(id, &key, false, owed);
        if quiet {
            self.numeric(owed, id, "366", &[&room_name, ANY]);
        } else {
            self.names(id, &key, true, owed);
        }
        self.replay(now, id, &key, owed);
    }

    /// Whether room `key` is the default room with more members than the quiet threshold.
    fn is_quiet(&self, key: &str) -> bool {
        let s = &self.settings;
        s.default_room.as_deref().map(fold).as_deref() == Some(key)
            && s.quiet_joins_above
                .is_some_and(|above| self.rooms[key].members.len() > above)
    }

    fn part(&mut self, id: u64, key: &str, reason: Option<&str>, owed: &mut Owed) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let prefix = self.conns[&id].prefix();
        let quiet = self.is_quiet(key);
        for &m in room.members.iter().filter(|&&m| !quiet || m == id) {
            match reason {
                Some(r) if !r.is_empty() => {
                    owed.line(m, Some(&prefix), "PART", &[&room.name, r]);
                }
                _ => owed.line(m, Some(&prefix), "PART", &[&room.name]),
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
            room.ops.remove(&id);
            room.modes.voiced.remove(&id);
            if room.members.is_empty() && default.as_deref() != Some(key) {
                self.rooms.remove(key);
            }
        }
    }

    /// Its peers, and those who monitor its name with `extended-monitor` (told of its AWAY and
    /// SETNAME as if they shared a room).
    fn peers_and_monitors(&self, id: u64) -> BTreeSet<u64> {
        let mut all = self.peers(id);
        if let Some(nick) = self.conns[&id].nick.as_deref() {
            all.extend(self.conns.iter().filter_map(|(&w, c)| {
                let watches = c.monitoring.contains(&fold(nick));
                (w != id && watches && c.caps.contains("extended-monitor")).then_some(w)
            }));
        }
        all
    }

    /// `AWAY :<message>` (or `AWAY`, back) from `id` to those of `to` with `away-notify`.
    fn tell_away(&self, id: u64, to: &[u64], owed: &mut Owed) {
        let c = &self.conns[&id];
        let prefix = c.prefix();
        for &t in to {
            if self.conns[&t].caps.contains("away-notify") {
                match &c.away {
                    Some(text) => owed.line(t, Some(&prefix), "AWAY", &[text]),
                    None => owed.line(t, Some(&prefix), "AWAY", &[]),
                }
            }
        }
    }

    /// Everyone who shares a room with `id`, but `id` (a rename is shown to all of them).
    fn peers(&self, id: u64) -> BTreeSet<u64> {
        self.conns[&id]
            .rooms
            .iter()
            .flat_map(|k| self.rooms[k].members.iter().copied())
            .filter(|&m| m != id)
            .collect()
    }

    fn message(
        &mut self,
        now: Millis,
        id: u64,
        verb: &str,
        targets: &str,
        text: &str,
        owed: &mut Owed,
    ) {
        let tagmsg = verb == "TAGMSG";
        // Neither NOTICE nor TAGMSG is ever answered with an error.
        let notice = verb == "NOTICE" || tagmsg;
        let refuse = |model: &Model, owed: &mut Owed, code: &str, params: &[&str]| {
            if !notice {
                model.numeric(owed, id, code, params);
            }
        };
        // Each target once, whatever its case.
        let mut seen = BTreeSet::new();
        let targets: Vec<&str> = targets
            .split(',')
            .filter(|t| !t.is_empty() && seen.insert(fold(t)))
            .collect();
        if targets.len() > MAX_TARGETS {
            return refuse(self, owed, "407", &[targets[MAX_TARGETS], ANY]);
        }
        let c = self.conns.get_mut(&id).expect("live");
        if !notice {
            c.last_spoke = now;
        }
        let (prefix, echo) = (c.prefix(), c.caps.contains("echo-message"));
        for target in targets {
            let msgid = self.next_msgid();
            let seq = self.msgids;
            let relayed = format!(":{prefix} {verb} {target} :{text}\r\n").len();
            if relayed > MAX_BODY_LEN {
                // The one refusal whose text carries a figure the person needs.
                let over = relayed - MAX_BODY_LEN;
                let text = format!(
                    "Message not sent: it is {over} bytes too long once your name is added; send it in shorter parts"
                );
                refuse(self, owed, "417", &[&text]);
                continue;
            }
            // STATUSMSG: `@#room` reaches its operators, `+#room` its operators and voiced.
            let (status, room_name) = match target.split_at_checked(1) {
                Some((s @ ("@" | "+"), rest)) if rest.starts_with('#') => (Some(s), rest),
                _ => (None, target),
            };
            if room_name.starts_with('#') {
                let Some(room) = self.rooms.get(&fold(room_name)) else {
                    refuse(self, owed, "403", &[target, ANY]);
                    continue;
                };
                let shown = format!("{}{}", status.unwrap_or(""), room.name);
                let reaches = |m: &u64| match status {
                    Some("@") => room.ops.contains(m),
                    Some(_) => room.ops.contains(m) || room.modes.voiced.contains(m),
                    None => true,
                };
                if !room.may_send(id, &prefix) {
                    refuse(self, owed, "404", &[&room.name, ANY]);
                    continue;
                }
                // A TAGMSG goes only to those who take tags.
                let takes = |m: &u64| !tagmsg || self.conns[m].caps.contains("message-tags");
                let params: &[&str] = if tagmsg { &[&shown] } else { &[&shown, text] };
                let to: Vec<u64> = (room.members.iter().copied())
                    .filter(|m| reaches(m) && (echo || *m != id))
                    .collect();
                for &m in &to {
                    if takes(&m) {
                        owed.line(m, Some(&prefix), verb, params);
                    }
                }
                // A sender the message does not reach (from outside, or below the status it
                // wrote to) gets its echo all the same.
                if echo && !to.contains(&id) && takes(&id) {
                    owed.line(id, Some(&prefix), verb, params);
                }
                let key = fold(room_name);
                if status.is_none() {
                    let lines = vec![text.to_owned()];
                    self.keep(now, id, verb, &shown, &msgid, seq, lines);
                }
                self.remember_room(&key, msgid, id);
            } else {
                let Some(peer) = self.registered_holder(target) else {
                    refuse(self, owed, "401", &[target, ANY]);
                    continue;
                };
                let to = self.nicks[&fold(target)];
                let (name, away) = (peer.shown(), peer.away.clone());
                let params: &[&str] = if tagmsg { &[&name] } else { &[&name, text] };
                if to == id {
                    let at = owed.lines.get(&id).map_or(0, Vec::len);
                    owed.not_replies.push((id, at));
                }
                if !tagmsg || peer.caps.contains("message-tags") {
                    owed.line(to, Some(&prefix), verb, params);
                }
                // To oneself with echo-message: the message, then its echo.
                if echo && (!tagmsg || self.conns[&id].caps.contains("message-tags")) {
                    owed.line(id, Some(&prefix), verb, params);
                }
                if let Some(away) = away {
                    refuse(self, owed, "301", &[&name, &away]);
                }
                self.keep(now, id, verb, &name, &msgid, seq, vec![text.to_owned()]);
                self.remember_direct(msgid, id, to);
            }
        }
    }

    /// `id` leaves with `reason` and is closed with an `ERROR`.
    fn quit(&mut self, id: u64, reason: &str, owed: &mut Owed) {
        let Some(host) = self.conns.get(&id).map(|c| c.host.clone()) else {
            return;
        };
        self.leave(id, reason, owed);
        owed.error(id, &format!("Closing Link: {host} ({reason})"));
    }

    /// Whether `id` may moderate room `key`: one of its operators, or a server operator.
    fn may_moderate(&self, key: &str, id: u64) -> bool {
        self.rooms.get(key).is_some_and(|r| r.ops.contains(&id))
            || self.conns.get(&id).is_some_and(|c| c.oper.is_some())
    }

    /// `OPER <name> <password>`: at most 5 checks per 10 s server-wide (`FAIL … RATE_LIMITED`),
    /// `491` for an unknown name, `464` for a wrong password, else `381` (and `+o` the first
    /// time).
    fn oper(&mut self, now: Millis, id: u64, name: &str, password: Option<&str>, owed: &mut Owed) {
        let Some(password) = password else {
            return self.numeric(owed, id, "461", &["OPER", ANY]);
        };
        while self
            .oper_checks
            .front()
            .is_some_and(|t| now.since(*t) >= 10_000)
        {
            self.oper_checks.pop_front();
        }
        if self.oper_checks.len() >= 5 {
            return self.server_line(owed, id, "FAIL", &["OPER", "RATE_LIMITED", ANY]);
        }
        self.oper_checks.push_back(now);
        let Some(op) = self.settings.operators.iter().find(|o| o.name == name) else {
            return self.numeric(owed, id, "491", &[ANY]);
        };
        let right = self
            .settings
            .verify_password
            .is_some_and(|verify| verify(&op.password_hash, password));
        if !right {
            return self.numeric(owed, id, "464", &[ANY]);
        }
        let c = self.conns.get_mut(&id).expect("live");
        let first = c.oper.replace(name.to_owned()).is_none();
        let (me, prefix) = (c.shown(), c.prefix());
        self.numeric(owed, id, "381", &[ANY]);
        if first {
            owed.line(id, Some(&prefix), "MODE", &[&me, "+o"]);
        }
    }

    /// `KILL <nick> [<reason>]` (server operators): the user is closed, `Killed (<oper>
    /// (<reason>))`.
    fn kill(&mut self, id: u64, nick: &str, reason: Option<&str>, owed: &mut Owed) {
        let Some(oper) = self.conns[&id].oper.clone() else {
            return self.numeric(owed, id, "481", &[ANY]);
        };
        if self.registered_holder(nick).is_none() {
            return self.numeric(owed, id, "401", &[nick, ANY]);
        }
        let who = self.nicks[&fold(nick)];
        let reason = reason
            .filter(|r| !r.is_empty())
            .unwrap_or("no reason given");
        let reason = format!("Killed ({oper} ({}))", cut(reason, KICK_LEN));
        self.quit(who, &reason, owed);
    }

    /// `WALLOPS <text>` (server operators): to every user with `+w`, and back.
    fn wallops(&mut self, id: u64, text: &str, owed: &mut Owed) {
        if self.conns[&id].oper.is_none() {
            return self.numeric(owed, id, "481", &[ANY]);
        }
        let prefix = self.conns[&id].prefix();
        let to: Vec<u64> = self
            .conns
            .iter()
            .filter(|&(&o, c)| c.registered && (c.wallops || o == id))
            .map(|(&o, _)| o)
            .collect();
        for o in to {
            owed.line(o, Some(&prefix), "WALLOPS", &[text]);
        }
    }

    /// Remembers the name `id` holds as it gives it up (if registered), for `WHOWAS`.
    fn remember(&mut self, id: u64) {
        let max = self.settings.whowas_history;
        let Some(c) = self.conns.get(&id).filter(|c| c.registered && max > 0) else {
            return;
        };
        let user = c.user.clone().unwrap_or_default();
        let was = (
            c.shown(),
            user,
            c.host.clone(),
            c.realname.clone(),
            self.now,
        );
        self.whowas.truncate(max - 1);
        self.whowas.push_front(was);
    }

    /// `WHOWAS <nick>[,<nick>…] [<count>]`: per name (at most four), the newest `count`
    /// entries whose name is it or matches it as a mask (all of them when `count` is not
    /// above 0), `314` and `312` each, else `406`; then `369`.
    fn whowas(&self, id: u64, nicks: Option<&str>, count: Option<&str>, owed: &mut Owed) {
        let Some(nicks) = nicks.filter(|n| !n.is_empty()) else {
            return self.numeric(owed, id, "431", &[ANY]);
        };
        let count = count
            .and_then(|c| c.parse::<i64>().ok())
            .filter(|&c| c > 0)
            .map_or(usize::MAX, |c| c as usize);
        let server = self.settings.server_name.clone();
        for nick in nicks.split(',').filter(|n| !n.is_empty()).take(MAX_TARGETS) {
            let found: Vec<_> = self
                .whowas
                .iter()
                .filter(|w| fold(&w.0) == fold(nick) || glob(nick, &w.0))
                .take(count)
                .collect();
            if found.is_empty() {
                self.numeric(owed, id, "406", &[nick, ANY]);
            }
            for (was, user, host, real, at) in found {
                self.numeric(owed, id, "314", &[was, user, host, "*", real]);
                let when = format!("left at {}", at.to_rfc3339());
                self.numeric(owed, id, "312", &[was, &server, &when]);
            }
            self.numeric(owed, id, "369", &[nick, ANY]);
        }
    }

    /// `id` is forgotten; everyone who shared a room with it sees it quit.
    fn leave(&mut self, id: u64, reason: &str, owed: &mut Owed) {
        self.remember(id);
        self.release(self.now, id);
        self.tell_monitors(id, false, owed);
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        // Everyone sharing a room that is not quiet.
        let told: BTreeSet<u64> = c
            .rooms
            .iter()
            .filter(|k| !self.is_quiet(k))
            .flat_map(|k| self.rooms[k].members.iter().copied())
            .filter(|&m| m != id)
            .collect();
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
                owed.line(to, Some(&prefix), "QUIT", &[reason]);
            }
        }
    }

    /// The timer came due at `now`: liveness pings and timeouts, in the order they fell due
    /// (then by connection).
    fn timeout(&mut self, now: Millis, owed: &mut Owed) {
        let (registration_ms, ping_timeout_ms, ping_interval_ms) = (
            self.settings.registration_timeout_ms,
            self.settings.ping_timeout_ms,
            self.settings.ping_interval_ms,
        );
        // (when it fell due, connection, the reason it is closed for; none: a ping)
        let mut due: Vec<(Millis, u64, Option<String>)> = Vec::new();
        for (&id, c) in &mut self.conns {
            if !c.registered {
                let deadline = c.connected_at.plus(registration_ms);
                if now >= deadline {
                    let secs = registration_ms / 1000;
                    let reason = format!(
                        "Registration timeout: no valid NICK and USER within {secs} seconds"
                    );
                    due.push((deadline, id, Some(reason)));
                }
                continue;
            }
            match c.ping_sent {
                Some(sent) if c.last_heard < sent => {
                    let deadline = sent.plus(ping_timeout_ms);
                    if now >= deadline {
                        let secs = now.since(c.last_heard) / 1000;
                        due.push((deadline, id, Some(format!("Ping timeout: {secs} seconds"))));
                    }
                }
                _ => {
                    c.ping_sent = None;
                    let at = c.last_heard.plus(ping_interval_ms);
                    if now >= at {
                        c.ping_sent = Some(now);
                        due.push((at, id, None));
                    }
                }
            }
        }
        due.sort();
        for (_, id, reason) in due {
            match reason {
                Some(reason) => self.quit(id, &reason, owed),
                None => owed.line(id, None, "PING", &[&self.settings.server_name]),
            }
        }
    }
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
    fn shows_a_said_line_as_irc_and_matches_open_parameters() {
        let s = said(":a!b@c PRIVMSG #r :hi there");
        assert_eq!(s.to_string(), ":a!b@c PRIVMSG #r :hi there");
        let want = |params: &[&str]| Said {
            source: Some("srv".into()),
            verb: "005".into(),
            params: params.iter().map(|p| p.to_string()).collect(),
        };
        let got = said(":srv 005 me A=1 B :are supported");
        assert!(want(&["me", ANY_REST]).admits(&got));
        assert!(want(&["me", "A=1", ANY, ANY]).admits(&got));
        assert!(!want(&["me", "A=2", ANY, ANY]).admits(&got));
        assert!(!want(&["me", ANY]).admits(&got));
        assert!(!want(&["me", "A=1", "B", ANY, ANY]).admits(&got));
        assert_eq!(want(&["me", ANY]).to_string(), ":srv 005 me <any>");
    }

    #[test]
    fn globs_and_middle_parameters() {
        assert!(glob("a*", "ABC") && glob("*b?", "abc") && glob("*", "") && glob("a**c", "ac"));
        assert!(!glob("a?", "a") && !glob("b*", "abc") && !glob("", "a"));
        assert_eq!(middle("#a b"), "#a_b");
        assert_eq!(middle(":x"), "x");
        assert_eq!(middle(""), "*");
        assert_eq!(middle("ok"), "ok");
    }

    #[test]
    fn name_rules() {
        assert!(valid_nick("ann") && valid_nick("[x]-1") && !valid_nick("1ann"));
        assert!(!valid_nick(&"a".repeat(NICK_LEN + 1)));
        assert!(valid_room("#a") && !valid_room("#") && !valid_room("#a b") && !valid_room("a"));
        assert_eq!(cut("héllo", 2), "h");
    }
}
