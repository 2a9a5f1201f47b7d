//! The explorer: for each seed, a random workload (clients joining, renaming, chatting, quitting,
//! crashing) and a random fault schedule (partitions, held links, latency, blocked pings, server
//! crashes and restarts, shutdown), written as a scenario script, run, and checked.
//!
//! The script is generated from the seed alone, so `parla-sim replay --seed N` rebuilds it
//! exactly and prints it with its transcript.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Bug;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::runner::{Outcome, RunOptions, run};
use crate::script::Script;

/// How big a random run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Clients at the start (more may join later).
    pub clients: usize,
    /// Random steps after everyone picked a name.
    pub steps: usize,
    /// Three servers as one cluster on a simulated broker instead of one server: clients on
    /// any of them; the faults are servers cut off from the broker, and crashed servers and
    /// broker.
    pub cluster: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: 4,
            steps: 30,
            cluster: false,
        }
    }
}

/// Names clients pick from: some differ only in case, so clashes and case-only renames are
/// common.
const NAMES: &[&str] = &["ann", "Ann", "bob", "BOB", "cy", "dee", "Dee", "eve"];
/// The servers of a cluster run.
const CLUSTER: &[&str] = &["server", "server2", "server3"];
/// Rooms besides the default one (two differ only in case).
const ROOMS: &[&str] = &["#lobby", "#a", "#b", "#B"];

/// What a random step can be. Each seed weighs them differently (its *shape*, printed at the top
/// of its script), so some seeds are mostly chat, others mostly faults or renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Room messages, sometimes the word `quit` as a message.
    Chat,
    /// Renames: to free, taken and case-only variants of names.
    Rename,
    /// Joins and parts of several rooms (`JOIN 0` too).
    Rooms,
    /// Direct messages, and messages to several targets at once.
    Direct,
    /// Topic changes and clears.
    Topic,
    /// NAMES, WHO, WHOIS, LIST, ISON, USERHOST, AWAY, MODE.
    Query,
    /// Moderation through the session's own commands and raw lines: room modes (`+o +v +b +e
    /// +I +i +k +l +m +n +s +t`, lists, bad arguments), KICK, INVITE, `/part`, `/topic`,
    /// `/away`, `/whois`, typing notifications.
    Moderate,
    /// Lines the server must refuse: missing parameters, unknown commands, commands out of
    /// turn; and from a raw host, over-long lines, NUL, bare CR and invalid UTF-8.
    Malformed,
    /// Bursts that hit flood control; a reader that stops reading until its SendQ overflows.
    Flood,
    /// `quit`, a closed window, Ctrl-C in a terminal.
    Leave,
    /// A client host crashes (and may come back).
    Crash,
    /// Partitions (both ways and one way), holds, latency, jitter, blocked pings.
    Network,
    /// The server crashes and restarts, or shuts down with Ctrl-C.
    Server,
    /// Someone new connects.
    Arrive,
    /// A crowd with long names arrives (raw hosts that never answer a ping): member lists
    /// longer than one 512-byte line.
    Crowd,
    /// Time passes.
    Wait,
}

const KINDS: [Kind; 16] = [
    Kind::Chat,
    Kind::Rename,
    Kind::Rooms,
    Kind::Direct,
    Kind::Topic,
    Kind::Query,
    Kind::Moderate,
    Kind::Malformed,
    Kind::Flood,
    Kind::Leave,
    Kind::Crash,
    Kind::Network,
    Kind::Server,
    Kind::Arrive,
    Kind::Crowd,
    Kind::Wait,
];

/// A seed's mix of step kinds: a weight for each.
#[derive(Debug, Clone)]
pub struct Shape(Vec<(Kind, u32)>);

impl Shape {
    fn random(rng: &mut SmallRng) -> Shape {
        Shape(
            KINDS
                .iter()
                .map(|&k| {
                    let w = match k {
                        // Rarer by nature: each of these ends or resets a lot.
                        Kind::Server | Kind::Crash | Kind::Leave => rng.random_range(0..=2),
                        // Costly (a host per member): in one seed in three, at most.
                        Kind::Crowd => u32::from(rng.random_ratio(1, 3)),
                        Kind::Chat | Kind::Wait => rng.random_range(2..=8),
                        _ => rng.random_range(0..=6),
                    };
                    (k, w)
                })
                .collect(),
        )
    }

    fn pick(&self, rng: &mut SmallRng) -> Kind {
        let total: u32 = self.0.iter().map(|(_, w)| w).sum();
        let mut n = rng.random_range(0..total.max(1));
        for &(k, w) in &self.0 {
            if n < w {
                return k;
            }
            n -= w;
        }
        Kind::Wait
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u32 = self.0.iter().map(|(_, w)| w).sum::<u32>().max(1);
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(k, w)| format!("{k:?} {}%", w * 100 / total))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// The state of the script being generated (what the generator knows; the server decides the
/// rest, and the model checks it).
struct Gen {
    rng: SmallRng,
    s: String,
    /// Client hosts whose session is running (as far as the script knows).
    live: Vec<String>,
    /// Raw hosts that may still be connected.
    raw: Vec<String>,
    /// Crashed client hosts (may be restarted).
    crashed: Vec<String>,
    next_client: usize,
    next_raw: usize,
    said: usize,
    partitioned: BTreeSet<String>,
    oneway: BTreeSet<(String, String)>,
    held: BTreeSet<String>,
    pings_blocked: bool,
    /// Whether a crowd has come.
    crowded: bool,
    /// Whether the short sessions by the dozen have come.
    churned: bool,
    /// The server's password, if it has one.
    password: Option<&'static str>,
    /// The server also serves TLS: some clients use it.
    tls: bool,
    /// The name each client last asked for (it may have been refused): whom moderation acts
    /// on.
    asked: BTreeMap<String, String>,
    /// A cluster run ([`Workload::cluster`]).
    cluster: bool,
    /// In a cluster: servers cut off from the broker.
    cut: BTreeSet<String>,
}

impl Gen {
    fn line(&mut self, text: impl AsRef<str>) {
        let text = text.as_ref();
        if let Some((client, rest)) = text.split_once(' ')
            && let Some(nick) = rest.strip_prefix("name ")
        {
            self.asked.insert(client.to_owned(), nick.to_owned());
        }
        self.s.push_str(text);
        self.s.push('\n');
    }

    fn one<'a>(&mut self, of: &'a [&'a str]) -> &'a str {
        of[self.rng.random_range(0..of.len())]
    }

    fn someone(&mut self) -> Option<String> {
        (!self.live.is_empty())
            .then(|| self.live[self.rng.random_range(0..self.live.len())].clone())
    }

    fn add_client(&mut self) -> String {
        let name = format!("c{}", self.next_client);
        self.next_client += 1;
        let misses = self.rng.random_range(1..=3);
        let password = match self.password {
            // Now and then someone has it wrong: refused (464) and closed.
            Some(_) if self.rng.random_ratio(1, 10) => " --password wrong",
            Some(_) => " --password sesame",
            None => "",
        };
        let tls = if self.tls && self.rng.random_bool(0.5) {
            " --tls"
        } else {
            ""
        };
        let again = if self.rng.random_bool(0.5) {
            " --reconnect"
        } else {
            ""
        };
        if self.cluster {
            // The simulated servers of a cluster answer no ICMP: the session's own IRC pings
            // watch the link.
            let server = self.one(CLUSTER);
            self.line(format!(
                "client {name} --no-ping --server {server}{password}{again}"
            ));
            self.live.push(name.clone());
            return name;
        }
        self.line(format!(
            "client {name} --ping-interval 3s --ping-misses {misses}{password}{tls}{again}"
        ));
        self.live.push(name.clone());
        name
    }

    /// A multiline message (draft/multiline) from `c` to `room` or someone: a few lines, now
    /// and then a continued one, a blank one, a wrong one, too many, or a batch left open.
    fn multiline(&mut self, c: &str, room: &str) {
        if self.rng.random_ratio(2, 3) {
            self.line(format!("{c} quote CAP REQ :batch draft/multiline"));
        }
        let n = self.rng.random_range(0..1000);
        let target = if self.rng.random_ratio(1, 4) {
            self.one(NAMES)
        } else {
            room
        };
        let label = if self.rng.random_ratio(1, 4) {
            "@label=ml "
        } else {
            ""
        };
        self.line(format!(
            "{c} quote {label}BATCH +b{n} draft/multiline {target}"
        ));
        let lines = self.rng.random_range(0..5);
        for i in 0..lines {
            let line = match self.rng.random_range(0..10) {
                0 => format!("@batch=b{n} PRIVMSG {target} :"),
                1 => format!("@batch=b{n};draft/multiline-concat PRIVMSG {target} :, and more"),
                2 => format!("@batch=b{n};draft/multiline-concat PRIVMSG {target} :"),
                3 => format!("@batch=b{n} NOTICE {target} :a notice in it"),
                4 => format!("@batch=other PRIVMSG {target} :astray"),
                _ => format!("@batch=b{n} PRIVMSG {target} :line {i} of {n}"),
            };
            self.line(format!("{c} quote {line}"));
        }
        if self.rng.random_ratio(1, 8) {
            for _ in 0..33 {
                self.line(format!("{c} quote @batch=b{n} PRIVMSG {target} :again"));
            }
        }
        if self.rng.random_ratio(7, 8) {
            self.line(format!("{c} quote BATCH -b{n}"));
        }
    }

    /// A room's rule in action: operator `c` and member `d` (who asked to be `nick`) in
    /// `room`.
    /// A `CHATHISTORY` request from `c`: any subcommand (and some that are none), of a room,
    /// a person or nothing valid, by message ids as the server makes them (the latest
    /// likeliest) and times around the run's, with limits fair and foul; often from a client
    /// that just asked for the capability (and batches, multiline), sometimes labelled.
    fn history(&mut self, c: &str, room: &str, nick: &str) {
        if self.rng.random_ratio(2, 3) {
            let caps = self.one(&[
                "batch draft/chathistory",
                "draft/chathistory",
                "batch draft/chathistory server-time",
                "batch draft/chathistory draft/multiline labeled-response",
                "-draft/chathistory",
            ]);
            self.line(format!("{c} quote CAP REQ :{caps}"));
        }
        let reference = |g: &mut Self| -> String {
            match g.rng.random_range(0..6) {
                0 => "*".to_owned(),
                1 | 2 => {
                    let n = g.rng.random_range(1..=(g.said as u64 + 2).min(60));
                    format!("msgid={:x}-{n:x}", crate::runner::EPOCH_SECS * 1000)
                }
                3 | 4 => {
                    // Mostly within the run's first seconds, where its messages are.
                    let ms = match g.rng.random_range(0..4) {
                        0 => g.rng.random_range(0..120_000),
                        _ => g.rng.random_range(0..12_000),
                    };
                    let at = parla_room::Millis(crate::runner::EPOCH_SECS * 1000 + ms);
                    format!("timestamp={}", at.to_rfc3339())
                }
                _ => g
                    .one(&[
                        "msgid=nope",
                        "timestamp=yesterday",
                        "timestamp=2026-02-30T00:00:00.000Z",
                        "x",
                    ])
                    .to_owned(),
            }
        };
        // Half the time what a client would ask: a page of a room it is in, or of a person.
        if self.rng.random_bool(0.5) {
            let target = if self.rng.random_ratio(3, 4) {
                "#lobby"
            } else {
                nick
            };
            let n = self.one(&["1", "3", "10", "100"]);
            let line = match self.rng.random_range(0..5) {
                0 | 1 => format!("CHATHISTORY LATEST {target} * {n}"),
                2 => format!("CHATHISTORY BEFORE {target} {} {n}", reference(self)),
                3 => format!("CHATHISTORY AFTER {target} {} {n}", reference(self)),
                _ => format!("CHATHISTORY AROUND {target} {} {n}", reference(self)),
            };
            return self.line(format!("{c} quote {line}"));
        }
        let target = match self.rng.random_range(0..8) {
            0..=2 => "#lobby",
            3..=4 => room,
            5..=6 => nick,
            _ => self.one(&["*", "bad,nick", "#nowhere"]),
        };
        let limit = self.one(&["1", "2", "3", "5", "50", "1000", "0", "x"]);
        let sub = self.one(&[
            "LATEST", "LATEST", "BEFORE", "AFTER", "BETWEEN", "AROUND", "TARGETS", "latest",
            "SIDEWAYS",
        ]);
        let line = match sub {
            "TARGETS" => {
                let (a, b) = (reference(self), reference(self));
                format!("CHATHISTORY TARGETS {a} {b} {limit}")
            }
            "BETWEEN" => {
                let (a, b) = (reference(self), reference(self));
                format!("CHATHISTORY BETWEEN {target} {a} {b} {limit}")
            }
            _ if self.rng.random_ratio(1, 12) => format!("CHATHISTORY {sub} {target}"),
            _ => format!("CHATHISTORY {sub} {target} {} {limit}", reference(self)),
        };
        let label = if self.rng.random_ratio(1, 4) {
            "@label=h1 "
        } else {
            ""
        };
        self.line(format!("{c} quote {label}{line}"));
    }

    fn story(&mut self, c: &str, d: &str, room: &str, nick: &str) {
        let lines: Vec<String> = match self.rng.random_range(0..5) {
            // Invite-only: out, refused, invited, in.
            0 => vec![
                format!("{c} mode +i"),
                format!("{d} part {room}"),
                "wait 300ms".into(),
                format!("{d} join {room}"),
                "wait 300ms".into(),
                format!("{c} invite {nick}"),
                "wait 300ms".into(),
                format!("{d} join {room}"),
            ],
            // Moderated: silent until voiced.
            1 => vec![
                format!("{c} mode +m"),
                "wait 200ms".into(),
                format!("{d} say may I speak?"),
                format!("{c} mode +v {nick}"),
                "wait 200ms".into(),
                format!("{d} say thank you"),
                format!("{c} mode -mv {nick}"),
            ],
            // Banned: silent, kicked, refused, excepted, back.
            2 => vec![
                format!("{c} mode +b {nick}"),
                "wait 200ms".into(),
                format!("{d} say am I banned?"),
                format!("{c} kick {nick} banned"),
                "wait 300ms".into(),
                format!("{d} join {room}"),
                format!("{c} quote MODE {room} +e {nick}!*@*"),
                "wait 300ms".into(),
                format!("{d} join {room}"),
                format!("{c} quote MODE {room} b"),
            ],
            // Full, and a key.
            3 => vec![
                format!("{c} mode +l 1"),
                format!("{d} part {room}"),
                "wait 300ms".into(),
                format!("{d} join {room}"),
                format!("{c} mode -l+k sesame"),
                "wait 300ms".into(),
                format!("{d} join {room}"),
                format!("{d} quote JOIN {room} sesame"),
            ],
            // Operators pass it on; a secret room; the topic is theirs.
            _ => vec![
                format!("{c} mode +o {nick}"),
                "wait 200ms".into(),
                format!("{d} mode -o+s {nick}"),
                format!("{d} topic ours now"),
                format!("{c} quote LIST"),
                format!("{c} quote WHO {room}"),
                format!("{d} whois {nick}"),
            ],
        };
        for line in lines {
            self.line(line);
        }
    }

    /// What a raw host sends first: the server's password (rarely a wrong one, or none).
    fn pass(&mut self) -> &'static str {
        match self.password {
            Some(_) if self.rng.random_ratio(1, 10) => "PASS wrong\\r\\n",
            Some(_) if self.rng.random_ratio(1, 10) => "",
            Some(_) => "PASS sesame\\r\\n",
            None => "",
        }
    }

    /// A text too long for one line once relayed (200 to 1,400 bytes): words of random
    /// lengths, one endless word, words of two- and three-byte characters (with or without
    /// spaces), a word that fills the line after an early space (too early to cut at), or a
    /// text at the very edge of a piece (in half the draws): the shapes that move the client's
    /// cut points (a space past the middle, a character boundary, a piece that just fits).
    fn long_text(&mut self) -> String {
        let len = self.rng.random_range(200..=1400);
        let mut text = String::new();
        match self.rng.random_range(0..8) {
            0 => {
                while text.len() < len {
                    let word = self.rng.random_range(1..=14);
                    text.extend(std::iter::repeat_n('w', word));
                    text.push(' ');
                }
            }
            1 => text.extend(std::iter::repeat_n('x', len)),
            2 => {
                // Spaces in one text of two: without them, a cut must find a character boundary.
                let spaced = self.rng.random_bool(0.5);
                while text.len() < len {
                    text.push_str(self.one(&[
                        "\u{e9}t\u{e9}",
                        "\u{65e5}\u{672c}\u{8a9e}",
                        "na\u{ef}ve",
                    ]));
                    if spaced && self.rng.random_ratio(1, 4) {
                        text.push(' ');
                    }
                }
            }
            3 => {
                text.push_str("a ");
                text.extend(std::iter::repeat_n('y', len));
            }
            _ => {
                // At the edge of a cut: about as long as a piece may be for a room message in
                // #lobby from a name of two or three letters (407 or 406 bytes once a
                // `PRIVMSG #lobby :` is relayed with the longest user and host), give or take a
                // byte, with its one space about halfway: a piece that just fits, and a space
                // just at, before or past the middle.
                let fits = 409 - self.rng.random_range(2..=3);
                let total = fits + self.rng.random_range(0..=2) - 1;
                let space = fits / 2 + self.rng.random_range(0..=2) - 1;
                text.extend(std::iter::repeat_n('v', space));
                text.push(' ');
                text.extend(std::iter::repeat_n('v', total - space - 1));
            }
        }
        text.trim_end().to_owned()
    }

    fn forget(&mut self, c: &str) {
        self.live.retain(|x| x != c);
        self.partitioned.remove(c);
        self.held.remove(c);
        self.oneway.retain(|(a, b)| a != c && b != c);
    }

    fn step(&mut self, kind: Kind) {
        match kind {
            Kind::Chat => {
                let Some(c) = self.someone() else { return };
                self.said += 1;
                if self.rng.random_ratio(1, 8) {
                    self.line(format!("{c} say quit"));
                } else if self.rng.random_ratio(1, 6) {
                    let room = self.one(ROOMS);
                    let n = self.said;
                    self.line(format!("{c} quote PRIVMSG {room} :message {n} from {c}"));
                } else if self.rng.random_ratio(1, 6) {
                    let n = self.said;
                    self.line(format!("{c} me waves {n}"));
                } else if self.rng.random_ratio(1, 8) {
                    // A CTCP request other than ACTION: not a message to show.
                    let to = if self.rng.random_bool(0.5) {
                        "#lobby"
                    } else {
                        self.one(NAMES)
                    };
                    let what = self.one(&["VERSION", "PING 12345", "TIME", "CLIENTINFO"]);
                    self.line(format!("{c} quote PRIVMSG {to} :\u{1}{what}\u{1}"));
                } else if self.rng.random_ratio(1, 5) {
                    // Longer than one line can carry once relayed: cut into pieces.
                    let text = self.long_text();
                    match self.rng.random_range(0..4) {
                        0 => self.line(format!("{c} me {text}")),
                        1 => {
                            let to = self.one(NAMES);
                            self.line(format!("{c} msg {to} {text}"));
                        }
                        _ => self.line(format!("{c} say {text}")),
                    }
                } else {
                    let n = self.said;
                    self.line(format!("{c} say message {n} from {c}"));
                }
            }
            Kind::Rename => {
                let Some(c) = self.someone() else { return };
                // One rename in four is a burst of three, to reach the rename limit.
                let times = if self.rng.random_ratio(1, 4) { 3 } else { 1 };
                for _ in 0..times {
                    let nick = self.one(NAMES);
                    self.line(format!("{c} name {nick}"));
                }
            }
            Kind::Rooms => {
                let Some(c) = self.someone() else { return };
                let room = self.one(ROOMS);
                match self.rng.random_range(0..10) {
                    0..=4 => self.line(format!("{c} join {room}")),
                    5 => self.line(format!("{c} quote PART {room} :see you")),
                    6 => self.line(format!("{c} quote PART {room} :")),
                    7..=8 => self.line(format!("{c} quote PART {room},#a")),
                    _ => self.line(format!("{c} quote JOIN 0")),
                }
            }
            Kind::Direct => {
                let Some(c) = self.someone() else { return };
                let to = self.one(NAMES);
                self.said += 1;
                let n = self.said;
                if self.rng.random_ratio(1, 3) {
                    let other = self.one(NAMES);
                    // Four targets are allowed (MAXTARGETS); five are refused whole.
                    let more = if self.rng.random_bool(0.3) { ",#a" } else { "" };
                    self.line(format!(
                        "{c} quote PRIVMSG {to},{other},#lobby,#lobby{more} :to several {n}"
                    ));
                } else if self.rng.random_ratio(1, 4) {
                    self.line(format!("{c} quote NOTICE {to} :notice {n}"));
                } else {
                    self.line(format!("{c} msg {to} direct {n} from {c}"));
                }
            }
            Kind::Topic => {
                let Some(c) = self.someone() else { return };
                let room = self.one(ROOMS);
                let n = self.rng.random_range(0..100);
                match self.rng.random_range(0..5) {
                    0 => self.line(format!("{c} quote TOPIC {room} :")),
                    1 => self.line(format!("{c} quote TOPIC {room}")),
                    // A burst of three changes, to reach the topic limit.
                    2 => {
                        for i in 0..3 {
                            self.line(format!("{c} quote TOPIC {room} :topic number {n}.{i}"));
                        }
                    }
                    _ => self.line(format!("{c} quote TOPIC {room} :topic number {n}")),
                }
            }
            Kind::Query => {
                let Some(c) = self.someone() else { return };
                let (room, nick) = (self.one(ROOMS), self.one(NAMES));
                let away = if self.rng.random_bool(0.5) {
                    "lunch"
                } else {
                    ""
                };
                let pick = self.rng.random_range(0..80);
                if pick >= 62 {
                    // Often a few at once, paging as a client would.
                    for _ in 0..self.rng.random_range(1..=3) {
                        self.history(&c, room, nick);
                    }
                    return;
                }
                // A labelled line, half the time from a client that just asked for labels.
                if (52..56).contains(&pick) && self.rng.random_bool(0.5) {
                    self.line(format!("{c} quote CAP REQ :batch labeled-response"));
                }
                let q = match pick {
                    50..=51 => self
                        .one(&[
                            "quote CAP REQ :batch labeled-response",
                            "quote CAP REQ :labeled-response",
                        ])
                        .to_owned(),
                    52 => format!("quote @label=w1 WHOIS {nick}"),
                    53 => {
                        let me = self.asked.get(&c).cloned().unwrap_or_else(|| nick.into());
                        format!("quote @label=dm PRIVMSG {me} :a note to myself")
                    }
                    54 => {
                        let line = self.one(&[
                            "PING :x",
                            "AWAY",
                            "FROBNICATE",
                            "NAMES #lobby",
                            "MODE #a +m",
                            "PRIVMSG #lobby :labelled",
                        ]);
                        format!("quote @label=q{} {line}", self.rng.random_range(0..9))
                    }
                    55 => format!("quote @label=j JOIN {room}"),
                    56 => self
                        .one(&[
                            "quote CAP REQ :away-notify setname invite-notify",
                            "quote CAP REQ :userhost-in-names extended-monitor",
                            "quote CAP REQ :-multi-prefix",
                        ])
                        .to_owned(),
                    57 => {
                        let n = self.rng.random_range(0..100);
                        self.one(&[
                            "quote SETNAME :Someone New {n}",
                            "quote SETNAME :",
                            "quote SETNAME",
                        ])
                        .replace("{n}", &n.to_string())
                    }
                    58 => {
                        let me = self.asked.get(&c).cloned().unwrap_or_else(|| nick.into());
                        let sign = self.one(&["+", "-"]);
                        format!("quote MODE {me} {sign}B")
                    }
                    59 => {
                        let to = self.one(&["@", "+"]);
                        format!("quote PRIVMSG {to}{room} :for some of {room}")
                    }
                    60 => format!("quote NOTICE @{room} :operators, a notice"),
                    61 => "quote INFO".to_owned(),
                    46 => "quote CAP REQ :draft/read-marker".to_owned(),
                    47 => format!("quote MARKREAD {room}"),
                    48 => {
                        let second = self.rng.random_range(10..60);
                        format!("quote MARKREAD {room} timestamp=2026-11-18T11:06:{second}.000Z")
                    }
                    49 => self
                        .one(&[
                            "quote MARKREAD",
                            "quote MARKREAD #a timestamp=yesterday",
                            "quote MARKREAD bob timestamp=2026-11-18T11:06:40.000Z",
                        ])
                        .to_owned(),
                    40..=41 => {
                        let other = self.one(NAMES);
                        format!("quote MONITOR + {nick},{other},nobody")
                    }
                    42 => format!("quote MONITOR - {nick}"),
                    43 => self
                        .one(&["quote MONITOR L", "quote MONITOR S", "quote MONITOR s"])
                        .to_owned(),
                    44 => self
                        .one(&["quote MONITOR C", "quote MONITOR", "quote MONITOR X a"])
                        .to_owned(),
                    45 => format!("quote MONITOR + {}", NAMES.join(",")),
                    34 => format!("quote WHOWAS {nick}"),
                    35 => self
                        .one(&[
                            "quote WHOWAS ann,BOB,cy 1",
                            "quote WHOWAS *e*",
                            "quote WHOWAS",
                        ])
                        .to_owned(),
                    36 => format!("quote WHOWAS {nick} 0"),
                    37 => format!("quote WHO {room} %tcuihsnfdlaor,42"),
                    38 => format!("quote WHO {nick} %nfl"),
                    39 => self
                        .one(&["quote WHO * %", "quote WHO a* %tn,toolong"])
                        .to_owned(),
                    0..=2 => "names".to_owned(),
                    3 => format!("quote NAMES {room},#lobby"),
                    4 => self
                        .one(&["quote NAMES", "quote NAMES #nowhere,,#a"])
                        .to_owned(),
                    5..=6 => format!("quote WHO {room}"),
                    7..=8 => format!("quote WHO {nick}"),
                    9 => {
                        let mask = self.one(&["*", "0", "a*", "?ob", "*E*", "d?e", "x*"]);
                        format!("quote WHO {mask}")
                    }
                    10..=11 => format!("quote WHOIS {nick}"),
                    12 => format!("quote WHOIS parla.local {nick}"),
                    13 => "quote LIST".to_owned(),
                    14 => format!("quote LIST {room},#nowhere"),
                    15 => format!("quote ISON {nick} ann bob"),
                    16 => format!("quote ISON :{nick} cy dee"),
                    17 => format!("quote USERHOST {nick} ann bob cy dee eve"),
                    18..=19 => format!("quote AWAY :{away}"),
                    20 => format!("quote MODE {nick} +i"),
                    21 => format!("quote MODE {nick} -i"),
                    22 => format!("quote MODE {nick}"),
                    23 => format!("quote MODE {nick} +iw-x"),
                    24 => format!("quote MODE {room}"),
                    25 => {
                        let modes = self.one(&["+b", "b", "+k key", "-n"]);
                        format!("quote MODE {room} {modes}")
                    }
                    26 => "quote LUSERS".to_owned(),
                    27 => "quote MOTD".to_owned(),
                    28 => "quote VERSION".to_owned(),
                    29 => "quote TIME".to_owned(),
                    30 => {
                        let cap = self.one(&["CAP LS 302", "CAP LIST", "CAP END", "CAP BOGUS"]);
                        format!("quote {cap}")
                    }
                    31 => "quote PASS secret".to_owned(),
                    32 => format!("quote TOPIC {room}"),
                    _ => format!("quote PING :{nick}"),
                };
                self.line(format!("{c} {q}"));
            }
            Kind::Moderate => {
                let Some(c) = self.someone() else { return };
                let (room, mut nick, other) = (self.one(ROOMS), self.one(NAMES), self.one(NAMES));
                // One time in two, into a room with someone else first, and about them: the
                // first to join a room is its operator, so the change has someone to act on.
                if self.rng.random_bool(0.5)
                    && let Some(d) = self.someone()
                {
                    let there = self.one(&["#a", "#b"]);
                    self.line(format!("{c} join {there}"));
                    self.line(format!("{d} join {there}"));
                    // Until both are in (a join takes a round trip, and more on a slow link).
                    self.line("wait 500ms");
                    if let Some(theirs) = self.asked.get(&d).cloned() {
                        nick = NAMES
                            .iter()
                            .find(|n| **n == theirs)
                            .copied()
                            .unwrap_or(nick);
                    }
                    // Now and then a whole story of a room's rules, as people live them.
                    if self.rng.random_ratio(1, 2) {
                        self.story(&c, &d, there, nick);
                        return;
                    }
                }
                let mask = self.one(&[
                    "ann",
                    "b*",
                    "*!*@192.168.0.*",
                    "*!~cy@*",
                    "192.168.0.5",
                    "Dee!*@*",
                    "*",
                ]);
                let sign = self.one(&["+", "-"]);
                let step = match self.rng.random_range(0..40) {
                    34..=36 => return self.multiline(&c, room),
                    37..=39 => {
                        // A message id as the server makes them, the latest few likeliest.
                        if self.rng.random_ratio(1, 2) {
                            self.line(format!("{c} quote CAP REQ :draft/message-redaction"));
                        }
                        let n = self.rng.random_range(1..=(self.said as u64 + 2).min(60));
                        let id = format!("{:x}-{n:x}", crate::runner::EPOCH_SECS * 1000);
                        match self.rng.random_range(0..5) {
                            0 => format!("quote REDACT {nick} {id}"),
                            1 => format!("quote REDACT {room} {id} :not here"),
                            2 => "quote REDACT #a".to_owned(),
                            _ => format!("quote REDACT {room} {id}"),
                        }
                    }
                    0..=2 => format!("mode {sign}o {nick}"),
                    3..=4 => format!("mode {sign}v {nick}"),
                    5 => format!("mode +ov {nick} {other}"),
                    6..=7 => format!("mode {sign}b {mask}"),
                    8 => format!("mode {sign}e {mask}"),
                    9 => format!("mode {sign}I {mask}"),
                    10..=11 => {
                        let flag = self.one(&["i", "m", "s", "t", "n", "mi", "ts"]);
                        format!("mode {sign}{flag}")
                    }
                    12 => {
                        let change = self.one(&[
                            "+l 2", "+l 3", "-l", "+l x", "+k key", "-k", "+k", "+z", "+bl",
                        ]);
                        format!("mode {change}")
                    }
                    13 => {
                        let list = self.one(&["b", "e", "I", "+b"]);
                        format!("quote MODE {room} {list}")
                    }
                    14..=16 => match self.rng.random_range(0..3) {
                        0 => format!("kick {nick}"),
                        1 => format!("kick {nick} go away"),
                        _ => format!("quote KICK #a,{room} {nick},{other} :out"),
                    },
                    17..=19 => match self.rng.random_range(0..3) {
                        0 => format!("invite {nick}"),
                        1 => format!("invite {nick} {room}"),
                        _ => format!("quote INVITE {nick}"),
                    },
                    20..=21 => {
                        if self.rng.random_bool(0.5) {
                            "part".to_owned()
                        } else {
                            format!("part {room} enough")
                        }
                    }
                    22 => {
                        let n = self.rng.random_range(0..100);
                        let topic = self.one(&["", "-", "news"]);
                        match topic {
                            "news" => format!("topic news {n}"),
                            t => format!("topic {t}"),
                        }
                    }
                    23 => self.one(&["away lunch", "away"]).to_owned(),
                    24 => format!("whois {nick}"),
                    25..=27 => {
                        let state = self.one(&["active", "active", "paused", "done"]);
                        format!("typing {state}")
                    }
                    28 => format!("quote @+typing=active TAGMSG {room},{nick}"),
                    30..=31 => self
                        .one(&[
                            "oper boss hunter2",
                            "oper boss hunter2",
                            "oper boss guess",
                            "oper root hunter2",
                            "quote OPER boss",
                        ])
                        .to_owned(),
                    32 => format!("quote KILL {nick} :enough"),
                    33 => match self.rng.random_range(0..3) {
                        0 => "quote WALLOPS :server going down at noon".to_owned(),
                        1 => "quote KILL".to_owned(),
                        _ => {
                            let me = self.asked.get(&c).cloned().unwrap_or_else(|| nick.into());
                            format!("quote MODE {me} -o")
                        }
                    },
                    _ => format!("quote TAGMSG {nick}"),
                };
                self.line(format!("{c} {step}"));
            }
            Kind::Malformed => {
                if self.rng.random_ratio(1, 3) || self.live.is_empty() {
                    self.raw_host();
                    return;
                }
                let Some(c) = self.someone() else { return };
                let bad = self.one(&[
                    "PRIVMSG",
                    "PRIVMSG #lobby",
                    "PRIVMSG nobody-here :hello?",
                    "PRIVMSG #nowhere :hello?",
                    "JOIN",
                    "JOIN lobby",
                    "PART #nowhere",
                    "TOPIC",
                    "NICK",
                    "NICK 9lives",
                    "NICK way-too-long-a-name-for-this-server-to-take",
                    "USER again 0 * :again",
                    "FROBNICATE now",
                    "CAP REQ :no-such-cap",
                    "CAP REQ :-echo-message",
                    "CAP REQ :echo-message",
                    "CAP REQ",
                    "CAP REQ :",
                    "CAP REQ :echo-message no-such-cap",
                    "CAP REQ :server-time -echo-message",
                    "NICK :",
                    "PING",
                    "PING :token",
                    "NOTICE",
                ]);
                self.line(format!("{c} quote {bad}"));
            }
            Kind::Flood => {
                if self.rng.random_ratio(1, 3) {
                    self.slow_reader();
                    return;
                }
                let Some(c) = self.someone() else { return };
                let n = self.rng.random_range(20..60);
                self.line(format!("{c} say-many {n} flood from {c}"));
            }
            Kind::Leave => {
                let Some(c) = self.someone() else { return };
                let how = self.one(&["quit", "close", "ctrl-c", "empty", "reason"]);
                match how {
                    "ctrl-c" => self.line(format!("ctrl-c {c}")),
                    // QUIT with an empty reason, and with one of the person's own.
                    "empty" => self.line(format!("{c} quote QUIT :")),
                    "reason" => self.line(format!("{c} quote QUIT :off to lunch")),
                    "quit" => {
                        self.line(format!("{c} quit"));
                        // Typed while the goodbye is under way: the session must not send it.
                        if self.rng.random_ratio(1, 3) {
                            self.line(format!("{c} say typed after quit"));
                        }
                    }
                    _ => self.line(format!("{c} {how}")),
                }
                self.forget(&c);
            }
            Kind::Crash => {
                if !self.crashed.is_empty() && self.rng.random_bool(0.5) {
                    let c = self
                        .crashed
                        .remove(self.rng.random_range(0..self.crashed.len()));
                    self.line(format!("restart {c}"));
                    self.line("wait 100ms");
                    let nick = self.one(NAMES);
                    self.line(format!("{c} name {nick}"));
                    self.live.push(c);
                    return;
                }
                let Some(c) = self.someone() else { return };
                self.line(format!("crash {c}"));
                self.forget(&c);
                self.crashed.push(c);
            }
            Kind::Network if self.cluster => {
                // A client cut off from (or back to) every server: its session must notice and,
                // if it reconnects, come back to the chat where it left it.
                if self.rng.random_ratio(1, 3) {
                    let Some(c) = self.someone() else { return };
                    let verb = if toggle(&mut self.partitioned, c.clone()) {
                        "partition"
                    } else {
                        "repair"
                    };
                    for server in CLUSTER {
                        self.line(format!("{verb} {c} {server}"));
                    }
                    return;
                }
                let server = self.one(CLUSTER).to_owned();
                if self.rng.random_ratio(2, 3) {
                    let verb = if toggle(&mut self.cut, server.clone()) {
                        "partition"
                    } else {
                        "repair"
                    };
                    self.line(format!("{verb} {server} broker"));
                } else {
                    let ms = self.rng.random_range(0..300);
                    self.line(format!("latency {server} broker {ms}ms"));
                }
            }
            Kind::Server if self.cluster => {
                let host = if self.rng.random_ratio(1, 4) {
                    "broker"
                } else {
                    self.one(CLUSTER)
                };
                self.line(format!("crash {host}"));
                let ms = self.rng.random_range(100..20_000);
                self.line(format!("wait {ms}ms"));
                self.line(format!("restart {host}"));
            }
            Kind::Network => {
                let Some(c) = self.someone() else { return };
                match self.rng.random_range(0..12) {
                    0..=2 => {
                        let verb = if toggle(&mut self.partitioned, c.clone()) {
                            "partition"
                        } else {
                            "repair"
                        };
                        self.line(format!("{verb} {c} server"));
                    }
                    3..=4 => {
                        let (a, b) = if self.rng.random_bool(0.5) {
                            (c.clone(), "server".to_owned())
                        } else {
                            ("server".to_owned(), c.clone())
                        };
                        let cut = toggle(&mut self.oneway, (a.clone(), b.clone()));
                        let verb = if cut {
                            "partition-oneway"
                        } else {
                            "repair-oneway"
                        };
                        self.line(format!("{verb} {a} {b}"));
                    }
                    5..=6 => {
                        let verb = if toggle(&mut self.held, c.clone()) {
                            "hold"
                        } else {
                            "release"
                        };
                        self.line(format!("{verb} {c} server"));
                    }
                    7..=8 => {
                        let ms = self.rng.random_range(0..300);
                        self.line(format!("latency {c} server {ms}ms"));
                    }
                    9 => {
                        let ms = self.rng.random_range(1..150);
                        self.line(format!("jitter {ms}ms"));
                    }
                    _ => {
                        self.pings_blocked = !self.pings_blocked;
                        self.line(if self.pings_blocked {
                            "block-pings"
                        } else {
                            "unblock-pings"
                        });
                    }
                }
            }
            Kind::Server => {
                if self.rng.random_ratio(1, 6) {
                    self.line("ctrl-c server");
                    self.live.clear();
                    return;
                }
                self.line("crash server");
                let ms = self.rng.random_range(100..20_000);
                self.line(format!("wait {ms}ms"));
                self.line("restart server");
            }
            Kind::Arrive => {
                let c = self.add_client();
                self.line("wait 100ms");
                let nick = self.one(NAMES);
                self.line(format!("{c} name {nick}"));
            }
            Kind::Crowd => self.crowd(),
            Kind::Wait => {
                let ms = if self.rng.random_bool(0.7) {
                    self.rng.random_range(1..200)
                } else {
                    self.rng.random_range(200..3000)
                };
                self.line(format!("wait {ms}ms"));
            }
        }
    }

    /// Adds the next raw host to the script and returns its name.
    fn new_raw(&mut self) -> String {
        let r = format!("r{}", self.next_raw);
        self.next_raw += 1;
        self.line(format!("raw {r}"));
        r
    }

    /// A raw host that registers and then sends lines no client would.
    fn raw_host(&mut self) {
        match self.rng.random_range(0..7) {
            0 => return self.hermit(),
            1 => return self.silent(),
            // Costly (80 hosts): in one pick of 21.
            2 if self.rng.random_ratio(1, 3) => return self.churn(),
            _ => {}
        }
        let r = self.new_raw();
        // Its address: turmoil numbers hosts in the order they are added, the server first.
        let ip = format!("192.168.0.{}", self.next_client + self.next_raw - 1);
        // One in three aims at the 512-byte limit of the line relayed with its source, so it
        // needs a name of its own (a taken one would leave it unregistered).
        let edge = self.rng.random_ratio(1, 3);
        let nick = if edge {
            format!("edge-{r}")
        } else {
            self.one(NAMES).to_owned()
        };
        self.line("wait 50ms");
        let cap = if self.rng.random_ratio(1, 4) {
            self.one(&[
                "CAP REQ :echo-message\\r\\n",
                "CAP LS 302\\r\\nCAP REQ :server-time\\r\\n",
            ])
        } else {
            ""
        };
        let pass = self.pass();
        self.line(format!(
            "{r} write {pass}{cap}NICK {nick}\\r\\nUSER {r} 0 * :raw {r}\\r\\n"
        ));
        if !cap.is_empty() {
            // Capabilities asked for before registering hold registration until CAP END.
            self.line("wait 50ms");
            self.line(format!("{r} write CAP LIST\\r\\nCAP END\\r\\n"));
        }
        self.line("wait 50ms");
        let junk = self.one(&[
            "PRIVMSG #lobby :ok from raw\\r\\n",
            "PRIVMSG #lobby :nul\\x00byte\\r\\n",
            "PRIVMSG #lobby :bare\\rcarriage return\\r\\n",
            "PRIVMSG #lobby :bad utf-8 \\xff\\xfe\\r\\n",
            "\\r\\n   \\r\\n",
            ":fake!source@x PRIVMSG #lobby :spoofed source\\r\\n",
            "@tag=1;+x=y PRIVMSG #lobby :with tags\\r\\n",
            "privmsg #lobby :lower case verb\\r\\n",
            "PRIVMSG   #lobby   :extra spaces\\r\\n",
            "JOIN #a\\nPRIVMSG #a :lf only\\n",
        ]);
        self.line(format!("{r} write {junk}"));
        if edge {
            // Relayed as `:edge-rN!~rN@IP VERB TARGET :TEXT` + CR LF: 510 to 514 bytes, the
            // two sides of the limit (only what fits is relayed; the rest is refused with 417).
            let (verb, target) = match self.rng.random_range(0..3) {
                0 => ("PRIVMSG", "#lobby".to_owned()),
                1 => ("NOTICE", "#lobby".to_owned()),
                _ => ("PRIVMSG", self.one(NAMES).to_owned()),
            };
            let fixed = format!(":{nick}!~{r}@{ip} {verb} {target} :\r\n").len();
            for relayed in 510..=514 {
                let text = "e".repeat(relayed - fixed);
                self.line(format!("{r} write {verb} {target} :{text}\\r\\n"));
            }
        }
        if self.rng.random_ratio(1, 3) {
            // Invisible, then perhaps gone at once: the counts in LUSERS (and every later
            // welcome) and who sees it in WHO and NAMES must follow.
            let quit = if self.rng.random_bool(0.5) {
                "QUIT\\r\\n"
            } else {
                ""
            };
            self.line(format!("{r} write MODE {nick} +i\\r\\nLUSERS\\r\\n{quit}"));
        } else if !edge && self.rng.random_bool(0.5) {
            // Some fit the 512 bytes only without the relayed source: refused with 417.
            let long = "x".repeat(self.rng.random_range(440..700));
            self.line(format!("{r} write PRIVMSG #lobby :{long}\\r\\n"));
        }
        self.raw.push(r);
    }

    /// A raw host that hides: invisible, in no room, with a long user name (cut to `USERLEN`);
    /// it asks what an outsider may see (members of rooms it is not in, users it shares no room
    /// with, itself) and others may ask about it.
    fn hermit(&mut self) {
        let r = self.new_raw();
        let nick = format!("hermit-{r}");
        self.line("wait 50ms");
        let pass = self.pass();
        self.line(format!(
            "{r} write {pass}NICK {nick}\\r\\nUSER a-very_long.user-name-{r} 0 * :the {r} hermit\\r\\nMODE {nick} +i\\r\\nJOIN 0\\r\\nMODE {nick} -i\\r\\nLUSERS\\r\\nMODE {nick} +i-i+ix\\r\\n"
        ));
        self.line("wait 50ms");
        let asks = self.one(&[
            "WHO *\\r\\nWHO #lobby\\r\\nNAMES #lobby\\r\\n",
            "WHO 0\\r\\nWHO hermit*\\r\\nLIST\\r\\nLUSERS\\r\\n",
            "NAMES #lobby,#a\\r\\nWHO #a\\r\\nWHOIS hermit-r1\\r\\n",
        ]);
        self.line(format!("{r} write {asks}"));
        if let Some(c) = self.someone() {
            let q = match self.rng.random_range(0..4) {
                0 => "WHO *".to_owned(),
                1 => "WHO hermit*".to_owned(),
                2 => format!("WHOIS {nick}"),
                _ => "NAMES #lobby".to_owned(),
            };
            self.line(format!("{c} quote {q}"));
        }
        self.raw.push(r);
    }

    /// A raw host that connects and never registers (or only takes a name, to which someone
    /// writes): the registration timeout closes it.
    fn silent(&mut self) {
        let r = self.new_raw();
        if self.rng.random_bool(0.5) {
            // A name of its own, or one others use: a message to a name held by someone who
            // has not registered is refused (401) like one to nobody.
            let nick = if self.rng.random_bool(0.5) {
                format!("quiet-{r}")
            } else {
                self.one(NAMES).to_owned()
            };
            self.line("wait 50ms");
            self.line(format!("{r} write NICK {nick}\\r\\n"));
            if let Some(c) = self.someone() {
                let verb = self.one(&["PRIVMSG", "NOTICE"]);
                self.line(format!("{c} quote {verb} {nick} :are you there?"));
            }
        }
        self.raw.push(r);
    }

    /// Short visits by the dozen (once a seed): 75 to 85 raw hosts connect and leave at once
    /// (unregistered, so that they cost no broadcasts), so that the entries their timers leave
    /// behind outnumber the live ones and the server compacts its timer heap while others are
    /// still connected.
    fn churn(&mut self) {
        if std::mem::replace(&mut self.churned, true) {
            return self.silent();
        }
        let size = self.rng.random_range(75..=85);
        // In groups of 25, each accepted before the next knocks: turmoil's listener holds at
        // most 64 connections waiting to be accepted (more is a panic, not a refusal).
        let mut hosts = Vec::new();
        for _ in 0..size {
            hosts.push(self.new_raw());
            if hosts.len() % 25 == 0 {
                self.line("wait 20ms");
            }
        }
        self.line("wait 50ms");
        for r in hosts {
            self.line(format!("{r} write QUIT :just looking\\r\\n"));
        }
    }

    /// A crowd of 16 to 24 raw hosts with long names (24 to 30 bytes) joins the default room, then
    /// someone asks for its member list: more names than one `353` line holds. At most one a
    /// seed (later ones only ask for the list again).
    fn crowd(&mut self) {
        // One crowd a seed: each member is a host the simulation steps.
        if std::mem::replace(&mut self.crowded, true) {
            if let Some(c) = self.someone() {
                self.line(format!("{c} names"));
            }
            return;
        }
        let size = self.rng.random_range(16..=24);
        let mut hosts = Vec::new();
        for _ in 0..size {
            let r = self.new_raw();
            hosts.push(r);
        }
        self.line("wait 50ms");
        let mut nicks = Vec::new();
        for r in &hosts {
            let len = self.rng.random_range(24..=30);
            let nick = format!("{:-<len$}", format!("Crowd-{r}"));
            nicks.push(nick.clone());
            let hide = if self.rng.random_ratio(1, 4) {
                format!("MODE {nick} +i\\r\\n")
            } else {
                String::new()
            };
            let pass = self.pass();
            self.line(format!(
                "{r} write {pass}NICK {nick}\\r\\nUSER {r} 0 * :crowd\\r\\n{hide}"
            ));
        }
        self.line("wait 50ms");
        if let Some(c) = self.someone() {
            self.line(format!("{c} names"));
        }
        // Replies that would pass 512 bytes unless cut or split: a list of names as long as a line
        // allows, a ping token and a capability request near the limit (echoed with a longer
        // prefix).
        let lead = hosts[0].clone();
        let mut ison = String::from("ISON");
        for n in &nicks {
            if ison.len() + 1 + n.len() > 500 {
                break;
            }
            ison.push(' ');
            ison.push_str(n);
        }
        let token = "p".repeat(self.rng.random_range(480..=504));
        let caps = "c".repeat(self.rng.random_range(480..=500));
        self.line(format!(
            "{lead} write {ison}\\r\\nPING :{token}\\r\\nCAP REQ :{caps}\\r\\n"
        ));
        // Then it leaves together: a crowd's hosts are costly to keep stepping, and a burst of
        // departures is worth seeing too; some with reasons that, relayed with their long
        // names, pass 512 bytes.
        self.line("wait 50ms");
        for r in &hosts {
            let leave = match self.rng.random_range(0..4) {
                0 => {
                    let reason = "q".repeat(self.rng.random_range(400..=490));
                    format!("PART #lobby :{reason}\\r\\nQUIT :crowd leaving")
                }
                1 => format!("QUIT :{}", "q".repeat(self.rng.random_range(400..=495))),
                _ => "QUIT :crowd leaving".to_owned(),
            };
            self.line(format!("{r} write {leave}\\r\\n"));
        }
        self.raw.extend(hosts);
    }

    /// A raw host that joins and stops reading while others talk.
    fn slow_reader(&mut self) {
        let r = self.new_raw();
        self.line("wait 50ms");
        let pass = self.pass();
        self.line(format!(
            "{r} write {pass}NICK slow{r}\\r\\nUSER {r} 0 * :slow\\r\\n"
        ));
        self.line("wait 50ms");
        self.line(format!("{r} stop-reading"));
        if let Some(c) = self.someone() {
            let text = "z".repeat(300);
            self.line(format!("{c} say-many 40 {text}"));
        }
        self.raw.push(r);
    }
}

/// Adds `key` to `set` if absent (`true`: the fault starts), else removes it (`false`: it ends).
fn toggle<K: Ord>(set: &mut BTreeSet<K>, key: K) -> bool {
    if set.remove(&key) {
        false
    } else {
        set.insert(key);
        true
    }
}

/// The script for `seed`.
pub fn generate(seed: u64, workload: Workload) -> String {
    let mut rng = SmallRng::seed_from_u64(seed);
    let shape = Shape::random(&mut rng);
    let small_sendq = rng.random_ratio(1, 4);
    let mut g = Gen {
        rng,
        s: String::new(),
        live: Vec::new(),
        raw: Vec::new(),
        crashed: Vec::new(),
        next_client: 1,
        next_raw: 1,
        said: 0,
        partitioned: BTreeSet::new(),
        oneway: BTreeSet::new(),
        held: BTreeSet::new(),
        pings_blocked: false,
        crowded: false,
        password: None,
        tls: false,
        asked: BTreeMap::new(),
        churned: false,
        cluster: workload.cluster,
        cut: BTreeSet::new(),
    };
    g.line(format!(
        "# Generated by the explorer from seed {seed} ({} clients, {} steps).",
        workload.clients, workload.steps
    ));
    g.line(format!("# Shape: {shape}."));
    let mut server = "server --ping-interval 10s --ping-timeout 5s".to_owned();
    if g.cluster {
        server.push_str(" --cluster 3 --beat 1s");
        // Snapshots in two seeds of three (so that restarted servers start from one beside
        // servers that replayed, and servers cut off for long find the log trimmed), at a rate
        // the seed decides without a draw of its own.
        match seed % 3 {
            1 => server.push_str(" --snapshot-every 20 --snapshots-kept 1"),
            2 => server.push_str(" --snapshot-every 60"),
            _ => {}
        }
    }
    // Time to register: short in some seeds, so that silent hosts and clients whose name was
    // refused are timed out within the run.
    let registration = g.one(&["5s", "12s", "60s"]);
    // A server with a password (`PASS`) in one seed in six.
    if g.rng.random_ratio(1, 6) {
        g.password = Some("sesame");
        server.push_str(" --password sesame");
    }
    server.push_str(&format!(" --registration-timeout {registration}"));
    // TLS beside the plain port in one seed in three; half its clients use it.
    if g.rng.random_ratio(1, 3) && !g.cluster {
        g.tls = true;
        server.push_str(" --tls");
    }
    if small_sendq {
        server.push_str(" --sendq-bytes 8192");
    }
    // A default room that goes quiet after a few members, as a big one does after 1,000.
    if g.rng.random_ratio(1, 4) {
        let above = g.rng.random_range(2..=6);
        server.push_str(&format!(" --quiet-joins-above {above}"));
    }
    g.line(server);
    for _ in 0..workload.clients {
        g.add_client();
    }
    g.line("wait 100ms");
    for c in g.live.clone() {
        let nick = g.one(NAMES);
        g.line(format!("{c} name {nick}"));
    }
    g.line("wait 1s");
    for _ in 0..workload.steps {
        let kind = shape.pick(&mut g.rng);
        g.step(kind);
        if g.s.ends_with("ctrl-c server\n") {
            break;
        }
    }
    // Heal the network so the final checks see settled state.
    let servers: &[&str] = if g.cluster { CLUSTER } else { &["server"] };
    for c in std::mem::take(&mut g.partitioned) {
        for server in servers {
            g.line(format!("repair {c} {server}"));
        }
    }
    for (a, b) in std::mem::take(&mut g.oneway) {
        g.line(format!("repair-oneway {a} {b}"));
    }
    for c in std::mem::take(&mut g.held) {
        g.line(format!("release {c} server"));
    }
    if g.pings_blocked {
        g.line("unblock-pings");
    }
    if g.cluster {
        for server in std::mem::take(&mut g.cut) {
            g.line(format!("repair {server} broker"));
        }
        // Long enough for a server that was cut off to be found gone (three beats) and rejoin.
        g.line("wait 5s");
    }
    let _ = writeln!(g.s, "wait 2s");
    g.s
}

/// One explored seed's result.
#[derive(Debug, Clone)]
pub struct Explored {
    /// The seed.
    pub seed: u64,
    /// The generated script.
    pub script: String,
    /// What running it gave.
    pub outcome: Outcome,
}

/// Generates and runs the script for `seed`, with `options` (whose seed is replaced by `seed`).
pub fn run_seed(seed: u64, workload: Workload, options: &RunOptions) -> Explored {
    let text = generate(seed, workload);
    let script = Script::parse(&format!("explore-seed-{seed}.scn"), &text)
        .expect("generated scripts are valid");
    let options = RunOptions {
        seed,
        ..options.clone()
    };
    // A panic outside the server core (in the simulation itself, say turmoil refusing what
    // the script asks) fails this seed, with its number, instead of the whole exploration.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&script, &options)))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            Outcome {
                seed,
                transcript: String::new(),
                violations: vec![format!("the simulation panicked: {why}")],
                failed_expectations: Vec::new(),
            }
        });
    Explored {
        seed,
        script: text,
        outcome,
    }
}

/// How far an exploration has got, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Seeds run so far.
    pub done: u64,
    /// Of those, how many failed.
    pub failed: u64,
    /// Seeds in the whole exploration.
    pub total: u64,
    /// Since the exploration began.
    pub elapsed: Duration,
}

/// Runs `count` seeds from `start` on every core; returns the failing ones in seed order, and
/// the time taken.
pub fn explore(
    start: u64,
    count: u64,
    workload: Workload,
    bug: Option<Bug>,
) -> (Vec<Explored>, Duration) {
    let options = RunOptions {
        bug,
        ..RunOptions::default()
    };
    explore_with(start, count, workload, &options, default_jobs(), &|_| {})
}

/// One worker per core the process may use.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `count` seeds from `start` with `options` (each under its own seed) on `jobs` threads,
/// one seed at a time per thread, calling
/// `progress` after each seed (from the worker that ran it). Each seed is its own simulation and
/// depends on nothing but the seed, so its outcome is the same at any `jobs`; the failing ones
/// come back in seed order.
pub fn explore_with(
    start: u64,
    count: u64,
    workload: Workload,
    options: &RunOptions,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> (Vec<Explored>, Duration) {
    explore_seeds(start, count, workload, options, jobs, progress, false)
}

/// Runs seeds from `start` like [`explore_with`] but stops handing out seeds once one has failed,
/// and returns the lowest failing seed found (seeds already running finish, so with several
/// workers it is not always the lowest of the range). This is mutation testing's test command:
/// a caught mutant costs its first failing seed, not the whole range.
pub fn first_failure(
    start: u64,
    count: u64,
    workload: Workload,
    options: &RunOptions,
    jobs: usize,
) -> Option<Explored> {
    let (failures, _) = explore_seeds(start, count, workload, options, jobs, &|_| {}, true);
    failures.into_iter().next()
}

fn explore_seeds(
    start: u64,
    count: u64,
    workload: Workload,
    options: &RunOptions,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
    stop_at_failure: bool,
) -> (Vec<Explored>, Duration) {
    let began = Instant::now();
    let next = AtomicU64::new(start);
    let (done, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= start + count
                        || stop_at_failure && failed.load(Ordering::Relaxed) > 0
                    {
                        break;
                    }
                    let explored = run_seed(seed, workload, options);
                    let failed = if explored.outcome.passed() {
                        failed.load(Ordering::Relaxed)
                    } else {
                        failures
                            .lock()
                            .expect("a worker panicked holding the failures")
                            .push(explored);
                        failed.fetch_add(1, Ordering::Relaxed) + 1
                    };
                    progress(Progress {
                        done: done.fetch_add(1, Ordering::Relaxed) + 1,
                        failed,
                        total: count,
                        elapsed: began.elapsed(),
                    });
                }
            });
        }
    });
    let mut failures = failures
        .into_inner()
        .expect("a worker panicked holding the failures");
    failures.sort_by_key(|e| e.seed);
    (failures, began.elapsed())
}

/// The one command that replays `seed` and prints its script and transcript.
pub fn replay_command(seed: u64, workload: Workload) -> String {
    let cluster = if workload.cluster { " --cluster" } else { "" };
    format!(
        "cargo run -p parla-sim -- replay --seed {seed} --clients {} --steps {}{cluster}",
        workload.clients, workload.steps
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_depends_only_on_the_seed() {
        let w = Workload::default();
        assert_eq!(generate(42, w), generate(42, w));
        assert_ne!(generate(42, w), generate(43, w));
        for seed in 0..50 {
            Script::parse("gen.scn", &generate(seed, w)).expect("every generated script parses");
        }
    }
}
