//! What happened in a simulation: the transcript a person reads, and the records the invariant
//! checkers compare (what the server's core queued for each connection, what each client read).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use parla_net::server::{Input, Observer};
use parla_net::tls::{self, Fingerprint, Trust};
use parla_net::transport::Transport;
use parla_room::{ConnId, Millis, Output, Server};

use crate::model::{self, Divergence, Model};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use crate::transport::Sim;

/// Timer wake-ups in a row (no line, connection or disconnection between them) within one
/// simulated second after which a server is taken to spin. A real server wakes once per
/// deadline, a few times a second at most here; a core whose deadline is never handled is woken
/// for it at every tick, and the run would crawl on for ever.
const SPIN_LIMIT: u32 = 1_000;

/// The shared record of one simulation run. Cheap to clone; every host writes into it.
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Records>>);

/// Everything recorded.
#[derive(Debug, Default)]
pub struct Records {
    /// Transcript lines, in the order they happened.
    pub transcript: Vec<String>,
    /// Per client host.
    pub clients: BTreeMap<String, ClientRecord>,
    /// Per server connection: (server incarnation, connection id).
    pub conns: BTreeMap<(u32, u64), ConnRecord>,
    /// The last state of each server incarnation's core.
    pub servers: BTreeMap<u32, ServerSnapshot>,
    /// Broken invariants seen while running.
    pub violations: Vec<String>,
    /// When the run ended (simulated time).
    pub ended_at: Duration,
    /// Set when the run cannot go on (a server that spins on its timer): the runner stops.
    pub stuck: bool,
    /// In a cluster: per log position, each server's picture of the chat there (its names and
    /// rooms with their members), by server host — every server must have the same.
    pub replicas: BTreeMap<u64, BTreeMap<String, String>>,
    /// The run is a cluster's (`server --cluster N`).
    pub cluster: bool,
}

impl Records {
    /// The client host that connected from `peer` (each connection has its own address).
    pub fn client_at(&self, peer: SocketAddr) -> Option<(&String, &ClientRecord)> {
        self.clients
            .iter()
            .find(|(_, c)| c.received.contains_key(&peer))
    }
}

/// One client host's view.
#[derive(Debug, Default, Clone)]
pub struct ClientRecord {
    /// The local address of its current (latest) connection.
    pub local: Option<SocketAddr>,
    /// Every line it read from the server, per connection (by local address), in order.
    pub received: BTreeMap<SocketAddr, Vec<String>>,
    /// How many lines it wrote, per connection (by local address).
    pub sent: BTreeMap<SocketAddr, usize>,
    /// Everything it saw or did, for `expect` (lines read and event summaries).
    pub seen: Vec<String>,
    /// Set once its session ended, with the reason.
    pub closed: Option<String>,
    /// Its host was crashed by the script.
    pub crashed: bool,
    /// Its session started (it connected).
    pub connected: bool,
    /// It stopped reading on purpose (a slow reader): what it did not read is not lost.
    pub stopped_reading: bool,
    /// When it last read a line from the server.
    pub last_read: Option<Duration>,
    /// A raw host: a bare socket with no liveness of its own, so it cannot notice a dead link
    /// or a server that went away without closing it, and is not expected to.
    pub raw: bool,
    /// Everything a session client was told and did, in order, with when (checked by
    /// [`crate::conduct`]).
    pub log: Vec<(Duration, Conduct)>,
    /// The server password its session was given (it opens each connection with `PASS`).
    pub password: Option<String>,
}

impl ClientRecord {
    /// Its last connection was lost and it is connecting again (`--reconnect`): it has no
    /// connection now, and did not hear whatever the server said after the loss.
    pub fn reconnecting(&self) -> bool {
        let last = |f: fn(&Conduct) -> bool| self.log.iter().rposition(|(_, c)| f(c));
        let again = last(|c| {
            matches!(
                c,
                Conduct::Event(parla_net::client::Event::Reconnecting { .. })
            )
        });
        let since = last(|c| matches!(c, Conduct::Connected | Conduct::Restarted));
        again > since
    }
}

/// One thing a client was told or did.
#[derive(Debug, Clone)]
pub enum Conduct {
    /// It connected: a new session starts.
    Connected,
    /// Its host was restarted: a new process, which carries nothing on from before.
    Restarted,
    /// A line it read.
    Got(String),
    /// A line it wrote.
    Sent(String),
    /// A command the script handed its session.
    Command(parla_net::client::Command),
    /// An event its session reported.
    Event(parla_net::client::Event),
    /// Its writes started (`true`) or stopped (`false`) waiting for the server to take them.
    Blocked(bool),
    /// Its connection's reading side ended (end of stream, or a read error).
    Closed,
    /// Its pinger's probe of the server came back (`ok`) or not; it gives up after
    /// `max_misses` in a row.
    Probe {
        /// Answered.
        ok: bool,
        /// Its miss limit.
        max_misses: u32,
    },
}

/// What the server's core queued for one connection.
#[derive(Debug, Default, Clone)]
pub struct ConnRecord {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// Every line the core queued for it, in order, with when.
    pub queued: Vec<(Duration, String)>,
    /// The core closed it (after queueing `ERROR`).
    pub closed: bool,
    /// How many lines the core read from it (over-long ones too).
    pub read: usize,
}

/// The last state a server's core reported.
#[derive(Debug, Default, Clone)]
pub struct ServerSnapshot {
    /// Held names with their connections.
    pub nicks: Vec<(u64, String)>,
    /// Open connections.
    pub conns: usize,
    /// Shut down by Ctrl-C.
    pub shut_down: bool,
    /// Crashed by the script.
    pub crashed: bool,
}

/// The current simulated time, as seen from the host that is running (or the harness).
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl Journal {
    /// Locks the records.
    pub fn lock(&self) -> MutexGuard<'_, Records> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a transcript line for `host` at time `at`.
    pub fn line_at(&self, at: Duration, host: &str, text: &str) {
        let line = format!("{:>9.3}s {host:<8} {text}", at.as_secs_f64());
        self.lock().transcript.push(line);
    }

    /// Adds a transcript line for `host` at the current simulated time.
    pub fn line(&self, host: &str, text: &str) {
        self.line_at(now(), host, text);
    }

    /// Records something a client saw or did (also in the transcript).
    pub fn client_saw(&self, host: &str, text: &str) {
        self.line(host, text);
        self.lock()
            .clients
            .entry(host.to_owned())
            .or_default()
            .seen
            .push(text.to_owned());
    }

    /// Logs what a session client was told or did (for [`crate::conduct`]).
    pub fn conduct(&self, host: &str, what: Conduct) {
        self.lock()
            .clients
            .entry(host.to_owned())
            .or_default()
            .log
            .push((now(), what));
    }

    /// Records a broken invariant.
    pub fn violation(&self, text: String) {
        let line = format!("{:>9.3}s VIOLATION {text}", now().as_secs_f64());
        let mut records = self.lock();
        if records.violations.contains(&text) {
            return;
        }
        records.transcript.push(line);
        records.violations.push(text);
    }

    /// The transcript as one string.
    pub fn transcript(&self) -> String {
        let mut out = self.lock().transcript.join("\n");
        out.push('\n');
        out
    }

    /// An observer for server incarnation `incarnation`, checked against a model of a server
    /// with `settings`.
    pub fn server_observer(
        &self,
        incarnation: u32,
        settings: model::Settings,
        started: Millis,
        books: model::SharedBooks,
    ) -> ServerWatch {
        self.lock()
            .servers
            .insert(incarnation, ServerSnapshot::default());
        ServerWatch {
            journal: self.clone(),
            incarnation,
            relayed: Mutex::default(),
            sends: Default::default(),
            wakeups: Mutex::default(),
            model: Mutex::new((Model::with_history(settings, started, books), false)),
        }
    }
}

/// Watches one server incarnation's core: records what it queues, and at every change checks
/// that names are unique and that each room message went to every member of the room.
pub struct ServerWatch {
    journal: Journal,
    incarnation: u32,
    /// Room messages queued during the current input: (line without tags, recipient).
    relayed: Mutex<Vec<(String, ConnId)>>,
    /// Whether the input being handled is a line that sends a message (PRIVMSG, NOTICE, the
    /// end of a multiline BATCH): only then is a room message queued a relay that every member
    /// is owed. A JOIN's replay of the room's history goes to the joiner alone.
    sends: std::sync::atomic::AtomicBool,
    /// Timer wake-ups in a row: (when the first of them was, how many).
    wakeups: Mutex<(Millis, u32)>,
    /// The reference model of this incarnation, and whether it has diverged (only the first
    /// divergence is reported: what follows it is usually its consequence).
    model: Mutex<(Model, bool)>,
}

impl ServerWatch {
    /// Records `line` as queued for `to` (and, for a room message, as relayed to it).
    fn queued(&self, r: &mut Records, to: ConnId, line: &[u8]) {
        let text = String::from_utf8_lossy(line)
            .trim_end_matches("\r\n")
            .to_owned();
        let (tags, untagged) = match text.strip_prefix('@') {
            Some(rest) => rest.split_once(' ').unwrap_or((rest, "")),
            None => ("", text.as_str()),
        };
        // A multiline message reaches those with the capability as a batch and the others as
        // its non-blank lines: each non-blank line reaches every member one way or the other,
        // a blank one only those who take the batch.
        let batched = tags.split(';').any(|t| t.starts_with("batch="));
        let blank = untagged.ends_with(" :");
        let sends = self.sends.load(std::sync::atomic::Ordering::Relaxed);
        if sends && !(batched && blank) && room_message(untagged).is_some() {
            self.relayed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((untagged.to_owned(), to));
        }
        r.conns
            .entry((self.incarnation, to.0))
            .or_default()
            .queued
            .push((now(), text));
    }
}

impl ServerWatch {
    /// Runs `f` on the model and reports its first divergence, naming the client.
    fn with_model(&self, f: impl FnOnce(&mut Model) -> Vec<Divergence>) {
        let mut guard = self.model.lock().unwrap_or_else(|e| e.into_inner());
        let (model, diverged) = &mut *guard;
        let found = f(model);
        if *diverged {
            return;
        }
        let Some(first) = found.into_iter().next() else {
            return;
        };
        *diverged = true;
        drop(guard);
        let who = first.conn.map(|conn| {
            let r = self.journal.lock();
            let client = r
                .conns
                .get(&(self.incarnation, conn))
                .and_then(|c| c.peer)
                .and_then(|peer| r.client_at(peer))
                .map_or("no client".to_owned(), |(name, _)| format!("client {name}"));
            format!(" [connection {conn} is {client}]")
        });
        self.journal.violation(format!(
            "at {:.3}s the server diverged from the model (server {}): {}{}",
            now().as_secs_f64(),
            self.incarnation,
            first.text,
            who.unwrap_or_default()
        ));
    }
}

impl Observer for ServerWatch {
    fn connected(&self, now: Millis, conn: ConnId, peer: SocketAddr) {
        self.journal
            .line("server", &format!("accepted {conn} from {peer}"));
        {
            let mut r = self.journal.lock();
            r.conns.entry((self.incarnation, conn.0)).or_default().peer = Some(peer);
        }
        self.with_model(|m| m.connected(now, conn, &peer.ip().to_string()));
    }

    fn input(&self, now: Millis, input: Input<'_>) {
        if matches!(input, Input::Timeout) {
            let mut w = self.wakeups.lock().unwrap_or_else(|e| e.into_inner());
            *w = if w.1 > 0 && now.since(w.0) <= 1000 {
                (w.0, w.1 + 1)
            } else {
                (now, 1)
            };
            if w.1 == SPIN_LIMIT {
                self.journal.violation(format!(
                    "at {:.3}s the server (incarnation {}) woke for its timer {SPIN_LIMIT} times in a row within a second: it spins (a deadline that is never handled)",
                    self::now().as_secs_f64(),
                    self.incarnation
                ));
                self.journal.lock().stuck = true;
                // The timer task loops inside one step of the simulation (no time passes while
                // it has work), so the runner would never get to stop the run: end the task
                // here. Unwinding skips the panic hook, so this is not also reported as a panic.
                std::panic::resume_unwind(Box::new("the server spins on its timer"));
            }
        } else {
            *self.wakeups.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
        }
        let sends = match input {
            Input::Line { line, .. } => {
                let text = String::from_utf8_lossy(line);
                let untagged = match text.strip_prefix('@') {
                    Some(rest) => rest.split_once(' ').map_or("", |(_, l)| l),
                    None => &text,
                };
                let verb = untagged
                    .split(' ')
                    .find(|w| !w.is_empty() && !w.starts_with(':'));
                verb.is_some_and(|v| {
                    ["PRIVMSG", "NOTICE", "BATCH"]
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(v))
                })
            }
            _ => false,
        };
        self.sends
            .store(sends, std::sync::atomic::Ordering::Relaxed);
        if let Input::Line { conn, .. } | Input::LineTooLong { conn } = input {
            let mut r = self.journal.lock();
            r.conns.entry((self.incarnation, conn.0)).or_default().read += 1;
        }
        self.with_model(|m| m.input(now, &input));
    }

    fn output(&self, output: &Output) {
        self.model
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .output(output);
        let mut r = self.journal.lock();
        match output {
            Output::Send { to, line } => self.queued(&mut r, *to, line),
            Output::Broadcast { to, line } => {
                for &to in to {
                    self.queued(&mut r, to, line);
                }
            }
            Output::Close { conn, reason } => {
                r.conns
                    .entry((self.incarnation, conn.0))
                    .or_default()
                    .closed = true;
                drop(r);
                self.journal
                    .line("server", &format!("closed {conn}: {reason}"));
            }
        }
    }

    fn changed(&self, core: &Server) {
        let nicks: Vec<(u64, String)> = core
            .nicks()
            .into_iter()
            .map(|(c, n)| (c.0, n.to_owned()))
            .collect();
        // Names unique at every instant, compared the way IRC compares them.
        let mut folded: Vec<String> = nicks
            .iter()
            .map(|(_, n)| parla_room::names::casefold(n))
            .collect();
        folded.sort();
        let dup = folded
            .windows(2)
            .find(|w| w[0] == w[1])
            .map(|w| w[0].clone());
        self.with_model(|m| {
            let holders: Vec<(String, Option<u64>)> = m
                .names_ever_held()
                .map(|n| (n.to_owned(), core.holder_of(n).map(|c| c.0)))
                .collect();
            m.changed(&nicks, &holders)
        });
        let mut r = self.journal.lock();
        let snapshot = r.servers.entry(self.incarnation).or_default();
        snapshot.nicks = nicks;
        snapshot.conns = core.conn_count();
        drop(r);
        if let Some(name) = dup {
            self.journal
                .violation(format!("names not unique: {name:?} is held twice"));
        }
        // Every room message went to every member of the room but (maybe) its sender.
        let relayed = std::mem::take(&mut *self.relayed.lock().unwrap_or_else(|e| e.into_inner()));
        let mut by_line: BTreeMap<&str, Vec<ConnId>> = BTreeMap::new();
        for (line, to) in &relayed {
            by_line.entry(line).or_default().push(*to);
        }
        for (line, recipients) in by_line {
            let Some((sender, room)) = room_message(line) else {
                continue;
            };
            let got: Vec<&str> = recipients.iter().filter_map(|c| core.nick(*c)).collect();
            for member in core.room_members(room).unwrap_or_default() {
                if !member.eq_ignore_ascii_case(sender) && !got.contains(&member) {
                    self.journal
                        .violation(format!("{member} is in {room} but was not sent {line:?}"));
                }
            }
        }
    }
}

/// `(sender, room)` if `line` (without tags) is a message relayed to a room.
fn room_message(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix(':')?;
    let (source, rest) = rest.split_once(' ')?;
    let (verb, rest) = rest.split_once(' ')?;
    let room = rest.split(' ').next()?;
    let sender = source.split('!').next()?;
    (matches!(verb, "PRIVMSG" | "NOTICE") && room.starts_with('#') && source.contains('!'))
        .then_some((sender, room))
}

/// A transport that records, per client host, every line read and written: above TLS when it
/// speaks TLS, so that what is recorded is what the session read and wrote.
#[derive(Clone)]
pub struct Recorder {
    /// The client host's name.
    pub host: String,
    /// Where to record.
    pub journal: Journal,
    /// Speak TLS to the server, trusting exactly the certificate with this fingerprint.
    pub tls: Option<Fingerprint>,
}

/// A client host's connection: plain, or TLS over it.
type Conn = Either<turmoil::net::TcpStream, TlsStream<turmoil::net::TcpStream>>;

impl Transport for Recorder {
    type Stream = Recorded;
    type Listener = NoListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<NoListener> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "client hosts record what they connect to; they do not listen (asked for {addr})"
            ),
        ))
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<(Recorded, SocketAddr)> {
        let (stream, peer) = Sim.connect(host, port).await?;
        let local = stream.local_addr()?;
        let stream = match self.tls {
            None => Either::Left(stream),
            Some(pin) => Either::Right(
                tls::connect(stream, host, &Trust::Pinned(pin))
                    .await
                    .map_err(io::Error::other)?,
            ),
        };
        {
            let mut r = self.journal.lock();
            let c = r.clients.entry(self.host.clone()).or_default();
            c.local = Some(local);
            c.connected = true;
            c.received.entry(local).or_default();
            c.log.push((now(), Conduct::Connected));
        }
        self.journal
            .line(&self.host, &format!("connected from {local} to {peer}"));
        let recorded = Recorded {
            inner: stream,
            host: self.host.clone(),
            journal: self.journal.clone(),
            local,
            rpartial: Vec::new(),
            wpartial: Vec::new(),
            write_blocked: false,
        };
        Ok((recorded, peer))
    }
}

/// [`Recorder`] only connects; this is the listener type it never returns.
pub struct NoListener;

impl parla_net::transport::Listener for NoListener {
    type Stream = Recorded;

    async fn accept(&mut self) -> io::Result<(Recorded, SocketAddr)> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "not a listener"))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "not a listener"))
    }
}

/// A simulated TCP stream that records complete lines in both directions.
pub struct Recorded {
    inner: Conn,
    host: String,
    journal: Journal,
    local: SocketAddr,
    rpartial: Vec<u8>,
    wpartial: Vec<u8>,
    /// Its last write could not go out (the server was not reading): logged when it changes.
    write_blocked: bool,
}

impl Recorded {
    fn record(&self, incoming: bool, line: &[u8]) {
        let text = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_owned();
        let arrow = if incoming { "<-" } else { "->" };
        self.journal.line(&self.host, &format!("{arrow} {text}"));
        let mut r = self.journal.lock();
        let c = r.clients.entry(self.host.clone()).or_default();
        if incoming {
            c.last_read = Some(now());
            c.received.entry(self.local).or_default().push(text.clone());
            c.log.push((now(), Conduct::Got(text.clone())));
            c.seen.push(text);
        } else {
            *c.sent.entry(self.local).or_default() += 1;
            c.log.push((now(), Conduct::Sent(text)));
        }
    }

    fn split_lines(&mut self, incoming: bool, data: &[u8]) {
        let mut buf = std::mem::take(if incoming {
            &mut self.rpartial
        } else {
            &mut self.wpartial
        });
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
            self.record(incoming, &buf[start..start + i]);
            start += i + 1;
        }
        buf.drain(..start);
        *(if incoming {
            &mut self.rpartial
        } else {
            &mut self.wpartial
        }) = buf;
    }
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) => {
                let new = buf.filled()[before..].to_vec();
                if new.is_empty() {
                    self.journal.line(&self.host.clone(), "<- (end of stream)");
                    self.journal.conduct(&self.host.clone(), Conduct::Closed);
                } else {
                    self.split_lines(true, &new);
                }
            }
            Poll::Ready(Err(_)) => self.journal.conduct(&self.host.clone(), Conduct::Closed),
            Poll::Pending => {}
        }
        poll
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            let written = buf[..*n].to_vec();
            self.split_lines(false, &written);
        }
        let blocked = poll.is_pending();
        if blocked != self.write_blocked {
            self.write_blocked = blocked;
            if let Some(c) = self.journal.lock().clients.get_mut(&self.host) {
                c.log.push((now(), Conduct::Blocked(blocked)));
            }
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Watches one server of a simulated cluster: its picture of the chat after each log entry it
/// applies, for [`crate::check::cluster`].
pub struct ReplicaWatch {
    pub host: String,
    pub journal: Journal,
}

impl parla_net::server::Observer for ReplicaWatch {
    fn applied(&self, seq: u64, core: &parla_room::Server) {
        let picture = core.digest();
        self.journal
            .lock()
            .replicas
            .entry(seq)
            .or_default()
            .insert(self.host.clone(), picture);
    }
}
