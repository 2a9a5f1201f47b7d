//! The scenario language: one step per line. `tests/scenarios/README.md` documents it.

use std::fmt;
use std::time::Duration;

use parla_net::PingConfig;
use parla_net::server::FloodControl;

/// A parsed scenario.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it came from, for error messages.
    pub file: String,
    /// The seed it asks for (`seed N`), if any.
    pub seed: Option<u64>,
    /// Its steps: line number, the line as written, the step.
    pub steps: Vec<(usize, String, Step)>,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Start the server host `server`.
    Server(ServerFlags),
    /// Add a client host that connects with Parla's client session.
    Client {
        name: String,
        flags: ClientFlags,
    },
    /// Add a host that speaks raw bytes (for malformed input).
    Raw {
        name: String,
    },
    /// A client picks a name.
    Name {
        client: String,
        nick: String,
    },
    /// A client says something in the room.
    Say {
        client: String,
        text: String,
    },
    /// A client does something in the room (`/me TEXT`, a CTCP `ACTION`).
    Me {
        client: String,
        text: String,
    },
    /// A client says `TEXT 1` ... `TEXT N` in quick succession.
    SayMany {
        client: String,
        count: usize,
        text: String,
    },
    /// A client joins a room (`/join`).
    Join {
        client: String,
        room: String,
    },
    /// A client sends a direct message (`/msg`).
    Msg {
        client: String,
        to: String,
        text: String,
    },
    /// A client sends an IRC line as typed (`/quote`).
    Quote {
        client: String,
        line: String,
    },
    /// A client asks for the current room's member list (`/names`).
    Names {
        client: String,
    },
    /// A client gives one of its other commands: `part`, `topic`, `kick`, `mode`, `invite`,
    /// `oper`, `away`, `whois`, `typing` (see [`client_command`]).
    Command {
        client: String,
        command: parla_net::client::Command,
    },
    /// A client types `quit`.
    Quit {
        client: String,
    },
    /// A client's window is closed.
    Close {
        client: String,
    },
    /// Ctrl-C on a host (the server, or a client's terminal).
    CtrlC {
        host: String,
    },
    /// A raw host writes bytes (escapes `\r \n \t \\ \xHH`).
    Write {
        client: String,
        bytes: Vec<u8>,
    },
    /// A raw host stops reading what the server sends (a slow reader).
    StopReading {
        client: String,
    },
    /// Let the simulation run.
    Wait(Duration),
    /// Network faults between two hosts.
    Partition(String, String),
    Repair(String, String),
    Hold(String, String),
    Release(String, String),
    /// Cut / restore only the direction from the first host to the second.
    PartitionOneway(String, String),
    RepairOneway(String, String),
    /// Crash a host as if it lost power (its links go silent first, so nothing more leaves it) /
    /// restart its software with its links back.
    Crash(String),
    Restart(String),
    /// Set the latency of the link between two hosts.
    Latency(String, String, Duration),
    /// Let messages take up to this long (random per message, from the seed).
    Jitter(Duration),
    /// Drop this fraction of messages between two hosts.
    Loss(String, String, f64),
    /// The server stops / resumes answering pings (a firewall dropping ICMP).
    BlockPings,
    UnblockPings,
    /// Check what a client has seen so far.
    Expect {
        client: String,
        what: Expectation,
    },
    /// Exactly one of these clients has seen a line or event containing the text.
    ExpectOne {
        clients: Vec<String>,
        text: String,
    },
}

/// What `expect` checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// A line or event containing the text was seen.
    Saw(String),
    /// No line or event containing the text was seen.
    NotSaw(String),
    /// The session ended, with a reason containing the text if given.
    Closed(Option<String>),
    /// The session is still running.
    Open,
}

/// Server settings a script can change.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFlags {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub registration_timeout: Duration,
    pub sendq_bytes: usize,
    pub flood: Option<FloodControl>,
    pub room: Option<String>,
    pub max_clients: usize,
    /// Members above which the default room goes quiet (joins and parts shown only to the one
    /// joining or leaving; `--quiet-joins-above`, 1000 as in `parla-server`).
    pub quiet_joins_above: Option<usize>,
    /// The password clients must send (`PASS`) before registering.
    pub password: Option<String>,
    /// Also serve TLS (port 6697, a self-signed certificate the clients pin), through the same
    /// TLS layer as `parla-server --tls-listen`.
    pub tls: bool,
    /// Run this many servers as one cluster (`--cluster N`: hosts `server`, `server2`, …) on a
    /// simulated broker host `broker`; 0: one server, no broker.
    pub cluster: usize,
    /// How often each server of a cluster says it is alive (`--beat`).
    pub beat: Duration,
    /// A cluster snapshots the chat every this many inputs in its log (`--snapshot-every`; 0: never).
    pub snapshot_every: u64,
    /// Snapshots a cluster keeps (`--snapshots-kept`); its log keeps what came after the oldest.
    pub snapshots_kept: usize,
}

impl Default for ServerFlags {
    fn default() -> Self {
        ServerFlags {
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(10),
            registration_timeout: Duration::from_secs(60),
            sendq_bytes: 64 * 1024,
            flood: Some(FloodControl::default()),
            room: Some("#lobby".into()),
            max_clients: 1000,
            quiet_joins_above: Some(1000),
            password: None,
            tls: false,
            cluster: 0,
            beat: Duration::from_secs(1),
            snapshot_every: 0,
            snapshots_kept: 2,
        }
    }
}

/// Client settings a script can change.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFlags {
    /// `None` with `--no-ping`.
    pub ping: Option<PingConfig>,
    /// The server password the session sends (`--password`).
    pub password: Option<String>,
    /// Connect to the server's TLS port (`--tls`); what it reads and writes is recorded above
    /// TLS, as plain lines.
    pub tls: bool,
    /// Connect again by itself when the connection is lost (`--reconnect`), as the real
    /// clients do by default; the simulation's sessions otherwise end there.
    pub reconnect: bool,
    /// The server host it connects to (`--server`; in a cluster, `server2`…).
    pub server: String,
}

impl Default for ClientFlags {
    fn default() -> Self {
        ClientFlags {
            ping: Some(PingConfig {
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
                max_misses: 3,
            }),
            password: None,
            tls: false,
            reconnect: false,
            server: "server".into(),
        }
    }
}

/// A mistake in a script: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ScriptError {
    /// The script file.
    pub file: String,
    /// The line number (1-based).
    pub line: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl Script {
    /// Parses a script; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Script, ScriptError> {
        let mut script = Script {
            file: file.to_owned(),
            seed: None,
            steps: Vec::new(),
        };
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| ScriptError {
                file: file.to_owned(),
                line: i + 1,
                message,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            if words[0] == "seed" {
                let n = words
                    .get(1)
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| err("`seed` needs a number, e.g. `seed 7`".into()))?;
                script.seed = Some(n);
                continue;
            }
            let step = parse_step(line, &words).map_err(err)?;
            script.steps.push((i + 1, line.to_owned(), step));
        }
        Ok(script)
    }

    /// The client and raw hosts the script adds.
    pub fn names(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|(_, _, s)| match s {
                Step::Client { name, .. } | Step::Raw { name } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }
}

fn duration(word: Option<&&str>, what: &str) -> Result<Duration, String> {
    let w = word.ok_or_else(|| format!("{what} needs a duration, e.g. 5s or 250ms"))?;
    humantime::parse_duration(w)
        .map_err(|e| format!("{w:?} is not a duration ({e}); write e.g. 5s or 250ms"))
}

fn rest_after(line: &str, words: usize) -> &str {
    let mut rest = line;
    for _ in 0..words {
        rest = rest.trim_start();
        rest = rest.find(char::is_whitespace).map_or("", |i| &rest[i..]);
    }
    rest.trim()
}

fn two_hosts(words: &[&str], verb: &str) -> Result<(String, String), String> {
    match words {
        [_, a, b] => Ok((a.to_string(), b.to_string())),
        _ => Err(format!(
            "`{verb}` needs two hosts, e.g. `{verb} alice server`"
        )),
    }
}

fn parse_step(line: &str, w: &[&str]) -> Result<Step, String> {
    let verb = w[0];
    Ok(match verb {
        "server" => Step::Server(server_flags(&w[1..])?),
        "client" => {
            let name = w
                .get(1)
                .ok_or("`client` needs a host name, e.g. `client alice`")?;
            Step::Client {
                name: name.to_string(),
                flags: client_flags(&w[2..])?,
            }
        }
        "raw" => Step::Raw {
            name: w.get(1).ok_or("`raw` needs a host name")?.to_string(),
        },
        "wait" => Step::Wait(duration(w.get(1), "`wait`")?),
        "partition" => two_hosts(w, verb).map(|(a, b)| Step::Partition(a, b))?,
        "repair" => two_hosts(w, verb).map(|(a, b)| Step::Repair(a, b))?,
        "hold" => two_hosts(w, verb).map(|(a, b)| Step::Hold(a, b))?,
        "partition-oneway" => two_hosts(w, verb).map(|(a, b)| Step::PartitionOneway(a, b))?,
        "repair-oneway" => two_hosts(w, verb).map(|(a, b)| Step::RepairOneway(a, b))?,
        "release" => two_hosts(w, verb).map(|(a, b)| Step::Release(a, b))?,
        "crash" => Step::Crash(w.get(1).ok_or("`crash` needs a host")?.to_string()),
        "restart" => Step::Restart(w.get(1).ok_or("`restart` needs a host")?.to_string()),
        "latency" => {
            match w {
                [_, a, b, d] => Step::Latency(
                    a.to_string(),
                    b.to_string(),
                    duration(Some(d), "`latency`")?,
                ),
                _ => return Err(
                    "`latency` needs two hosts and a duration, e.g. `latency alice server 50ms`"
                        .into(),
                ),
            }
        }
        "jitter" => Step::Jitter(duration(w.get(1), "`jitter`")?),
        "loss" => match w {
            [_, a, b, r] => {
                let rate: f64 = r
                    .parse()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or(format!("{r:?} is not a rate between 0 and 1"))?;
                Step::Loss(a.to_string(), b.to_string(), rate)
            }
            _ => {
                return Err(
                    "`loss` needs two hosts and a rate, e.g. `loss alice server 0.1`".into(),
                );
            }
        },
        "block-pings" => Step::BlockPings,
        "unblock-pings" => Step::UnblockPings,
        "ctrl-c" => Step::CtrlC {
            host: w
                .get(1)
                .ok_or("`ctrl-c` needs a host, e.g. `ctrl-c server`")?
                .to_string(),
        },
        "expect-one" => {
            let clients: Vec<String> = w
                .get(1)
                .map(|c| c.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            let text = rest_after(line, 3);
            if clients.len() < 2 || w.get(2) != Some(&"saw") || text.is_empty() {
                return Err("`expect-one` needs two or more clients and a text, e.g. `expect-one ann,bob saw registered as dana`".into());
            }
            Step::ExpectOne {
                clients,
                text: text.to_owned(),
            }
        }
        "expect" => {
            let client = w
                .get(1)
                .ok_or("`expect` needs a client, e.g. `expect alice saw hello`")?
                .to_string();
            let text = rest_after(line, 3);
            let what = match w.get(2).copied() {
                Some("saw") if !text.is_empty() => Expectation::Saw(text.to_owned()),
                Some("not-saw") if !text.is_empty() => Expectation::NotSaw(text.to_owned()),
                Some("closed") => Expectation::Closed((!text.is_empty()).then(|| text.to_owned())),
                Some("open") => Expectation::Open,
                _ => {
                    return Err(
                        "`expect NAME` needs `saw TEXT`, `not-saw TEXT`, `closed [TEXT]` or `open`"
                            .into(),
                    );
                }
            };
            Step::Expect { client, what }
        }
        client => {
            let action = w.get(1).ok_or(format!(
                "unknown step {client:?}; see tests/scenarios/README.md for the steps"
            ))?;
            let client = client.to_owned();
            let text = rest_after(line, 2);
            match *action {
                "name" if !text.is_empty() => Step::Name {
                    client,
                    nick: text.to_owned(),
                },
                "say" if !text.is_empty() => Step::Say {
                    client,
                    text: text.to_owned(),
                },
                "me" if !text.is_empty() => Step::Me {
                    client,
                    text: text.to_owned(),
                },
                "say-many" => {
                    let count = w.get(2).and_then(|n| n.parse().ok()).ok_or(
                        "`say-many` needs a count and a text, e.g. `bob say-many 100 hello`",
                    )?;
                    let text = rest_after(line, 3);
                    if text.is_empty() {
                        return Err("`say-many` needs a text after the count".into());
                    }
                    Step::SayMany {
                        client,
                        count,
                        text: text.to_owned(),
                    }
                }
                "join" if text.starts_with('#') && !text.contains(' ') => Step::Join {
                    client,
                    room: text.to_owned(),
                },
                "msg" if w.len() > 3 => Step::Msg {
                    client,
                    to: w[2].to_owned(),
                    text: rest_after(line, 3).to_owned(),
                },
                "quote" if !text.is_empty() => Step::Quote {
                    client,
                    line: text.to_owned(),
                },
                "names" => Step::Names { client },
                "quit" => Step::Quit { client },
                "close" => Step::Close { client },
                "write" if !text.is_empty() => Step::Write {
                    client,
                    bytes: unescape(text)?,
                },
                "stop-reading" => Step::StopReading { client },
                verb if let Some(command) = client_command(verb, text) => {
                    Step::Command { client, command }
                }
                _ => {
                    return Err(format!(
                        "{client:?} {action:?}: expected a step (server, client, wait, partition, ...) or a client action: name NICK, say TEXT, me TEXT, say-many N TEXT, join #ROOM, msg NICK TEXT, quote LINE, names, part [#ROOM] [REASON], topic [TEXT], kick NICK [REASON], mode ARGS, invite NICK [#ROOM], oper NAME PASSWORD, away [TEXT], whois NICK, typing active|paused|done, quit, close, write BYTES, stop-reading"
                    ));
                }
            }
        }
    })
}

/// A session command from its script words: `part [#ROOM] [REASON]`, `topic [TEXT]` (none: ask;
/// `-` clears), `kick NICK [REASON]`, `mode ARGS` (of the current room), `invite NICK [#ROOM]`,
/// `oper NAME PASSWORD`, `away [TEXT]`, `whois NICK`, `typing active|paused|done`. `None` if it
/// is none of these.
fn client_command(verb: &str, text: &str) -> Option<parla_net::client::Command> {
    use parla_net::client::{Command, Typing};
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Some(match verb {
        "part" if first.starts_with('#') => Command::Part {
            room: Some(first.to_owned()),
            reason: opt(rest),
        },
        "part" => Command::Part {
            room: None,
            reason: opt(text),
        },
        "topic" => Command::Topic {
            room: None,
            topic: match text {
                "" => None,
                "-" => Some(String::new()),
                t => Some(t.to_owned()),
            },
        },
        "kick" if !first.is_empty() => Command::Kick {
            room: None,
            name: first.to_owned(),
            reason: opt(rest),
        },
        "mode" => Command::Mode {
            target: None,
            args: text.to_owned(),
        },
        "older" => Command::Older(opt(first)),
        "invite" if !first.is_empty() => Command::Invite {
            name: first.to_owned(),
            room: opt(rest),
        },
        "oper" if !rest.is_empty() => Command::Oper {
            name: first.to_owned(),
            password: rest.to_owned(),
        },
        "away" => Command::Away(opt(text)),
        "whois" if !first.is_empty() => Command::Whois(first.to_owned()),
        "typing" => Command::Typing(Typing::parse(text)?),
        _ => return None,
    })
}

fn server_flags(w: &[&str]) -> Result<ServerFlags, String> {
    let mut f = ServerFlags::default();
    let mut i = 0;
    while i < w.len() {
        let value = w.get(i + 1);
        match w[i] {
            "--ping-interval" => f.ping_interval = duration(value, "--ping-interval")?,
            "--ping-timeout" => f.ping_timeout = duration(value, "--ping-timeout")?,
            "--registration-timeout" => {
                f.registration_timeout = duration(value, "--registration-timeout")?
            }
            "--sendq-bytes" => {
                f.sendq_bytes = value
                    .and_then(|v| v.parse().ok())
                    .ok_or("--sendq-bytes needs a number")?
            }
            "--max-clients" => {
                f.max_clients = value
                    .and_then(|v| v.parse().ok())
                    .ok_or("--max-clients needs a number")?
            }
            "--quiet-joins-above" => {
                f.quiet_joins_above = Some(
                    value
                        .and_then(|v| v.parse().ok())
                        .ok_or("--quiet-joins-above needs a number")?,
                )
            }
            "--password" => {
                f.password = Some(value.ok_or("--password needs a password")?.to_string())
            }
            "--room" => f.room = Some(value.ok_or("--room needs a room name")?.to_string()),
            "--cluster" => {
                f.cluster = value
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| (1..=9).contains(&n))
                    .ok_or("--cluster needs a number of servers from 1 to 9")?
            }
            "--beat" => f.beat = duration(value, "--beat")?,
            "--snapshot-every" => {
                f.snapshot_every = value
                    .and_then(|v| v.parse().ok())
                    .ok_or("--snapshot-every needs a number of inputs")?
            }
            "--snapshots-kept" => {
                f.snapshots_kept = value
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n >= 1)
                    .ok_or("--snapshots-kept needs a number from 1")?
            }
            "--no-default-room" => {
                f.room = None;
                i += 1;
                continue;
            }
            "--no-flood-control" => {
                f.flood = None;
                i += 1;
                continue;
            }
            "--tls" => {
                f.tls = true;
                i += 1;
                continue;
            }
            other => {
                return Err(format!(
                    "unknown server flag {other:?}; known: --ping-interval, --ping-timeout, --registration-timeout, --sendq-bytes, --max-clients, --quiet-joins-above, --password, --room, --no-default-room, --no-flood-control, --tls, --cluster, --beat"
                ));
            }
        }
        i += 2;
    }
    Ok(f)
}

fn client_flags(w: &[&str]) -> Result<ClientFlags, String> {
    let mut f = ClientFlags::default();
    let mut i = 0;
    while i < w.len() {
        let value = w.get(i + 1);
        match (w[i], f.ping.as_mut()) {
            ("--password", _) => {
                f.password = Some(value.ok_or("--password needs a password")?.to_string())
            }
            ("--no-ping", _) => {
                f.ping = None;
                i += 1;
                continue;
            }
            ("--tls", _) => {
                f.tls = true;
                i += 1;
                continue;
            }
            ("--reconnect", _) => {
                f.reconnect = true;
                i += 1;
                continue;
            }
            ("--server", _) => f.server = value.ok_or("--server needs a host")?.to_string(),
            ("--ping-interval", Some(p)) => p.interval = duration(value, "--ping-interval")?,
            ("--ping-timeout", Some(p)) => p.timeout = duration(value, "--ping-timeout")?,
            ("--ping-misses", Some(p)) => {
                p.max_misses = value
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n >= 1)
                    .ok_or("--ping-misses needs a number ≥ 1")?
            }
            (other, _) => {
                return Err(format!(
                    "unknown client flag {other:?} (after --no-ping, ping flags don't apply); known: --password, --tls, --reconnect, --server, --no-ping, --ping-interval, --ping-timeout, --ping-misses"
                ));
            }
        }
        i += 2;
    }
    Ok(f)
}

/// `\r`, `\n`, `\t`, `\\`, `\xHH`.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let s = std::str::from_utf8(&hex).map_err(|_| "bad \\x escape")?;
                out.push(
                    u8::from_str_radix(s, 16).map_err(|_| format!("\\x{s} is not a hex byte"))?,
                );
            }
            other => {
                return Err(format!(
                    "unknown escape \\{}; use \\r \\n \\t \\\\ or \\xHH",
                    other.map(char::from).unwrap_or(' ')
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps_and_reports_errors_with_file_and_line() {
        let s = Script::parse("t.scn", "seed 3\n# c\nserver --ping-interval 5s\nclient alice --ping-misses 1\nalice name Alice B\nwait 2s\nexpect alice saw hello world\nraw r\nr write PING\\r\\n\\xff\n").unwrap();
        assert_eq!(s.seed, Some(3));
        assert_eq!(s.steps[2].0, 5);
        assert_eq!(
            s.steps[2].2,
            Step::Name {
                client: "alice".into(),
                nick: "Alice B".into()
            }
        );
        assert_eq!(
            s.steps[4].2,
            Step::Expect {
                client: "alice".into(),
                what: Expectation::Saw("hello world".into())
            }
        );
        assert_eq!(
            s.steps[6].2,
            Step::Write {
                client: "r".into(),
                bytes: b"PING\r\n\xff".to_vec()
            }
        );
        let err = Script::parse("bad.scn", "server\nwait forever\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad.scn:2: \"forever\" is not a duration (expected number at 0); write e.g. 5s or 250ms"
        );
        let err = Script::parse("bad.scn", "server --bogus\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad.scn:1: unknown server flag \"--bogus\""),
            "{err}"
        );
        let err = Script::parse("bad.scn", "\n\nalice dance\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad.scn:3: \"alice\" \"dance\": expected a step"),
            "{err}"
        );
    }
}
