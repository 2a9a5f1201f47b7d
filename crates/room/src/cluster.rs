//! Many servers as one chat: every server is a replica of the same state machine, fed the same
//! inputs in the same order from one shared log (a NATS JetStream stream in production, a
//! simulated broker in the simulation; the log itself is the runtime's business).
//!
//! The core ([`Server`]) is deterministic: the same inputs at the same times give the same
//! state and the same lines. So instead of a server-to-server protocol, each server *publishes*
//! what its own connections did — a connection opened, a line arrived, a connection closed — and
//! applies everything the log delivers, its own entries included, in log order. Every server then
//! holds the same rooms, members, names, topics and modes; a name is taken by whichever `NICK`
//! comes first in the log (never two holders, on any server, at any point of the log); every
//! room's messages have one order, the log's. Each server sends lines only to its own
//! connections (a room message costs it its own members, see `Server::local_ids`), and
//! liveness (PING, timeouts) is its own business until a timeout's departure is published.
//!
//! This module is the sans-IO part: the log's entries and their encoding ([`Batch`]), and the
//! [`Replica`], which applies them to a [`Server`] and keeps track of the cluster's servers:
//!
//! - A server starts by publishing [`Entry::Hello`]; the log position its hello lands at is its
//!   number, the top half of its connections' ids.
//! - It publishes [`Entry::Beat`] every few seconds. A server is **gone** once another server
//!   has beaten [`Replica::MISSES`] times since its last beat: every replica decides it at the
//!   same position of the log, without clocks, and its users quit everywhere (their names are
//!   free). A server that finds itself declared gone (it lost the log for too long) closes its
//!   connections and joins again under a new number.
//! - [`Entry::Leave`] is a clean shutdown: its users quit at once.
//! - Entries from a server that is gone, or a batch seen before (a publish retried after a lost
//!   acknowledgement), are ignored: each batch is applied once.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use crate::server::{ConnId, Server};
use crate::time::Millis;

/// One input of one server, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A server joins the cluster; `nonce` tells it its own hello, `name` is what others show,
    /// `config` is its [`crate::Config::cluster_fingerprint`].
    Hello {
        nonce: u64,
        name: String,
        config: u64,
    },
    /// A connection from `host` opened.
    Connect {
        conn: ConnId,
        now: Millis,
        host: String,
    },
    /// A line arrived from `conn` (without its line ending).
    Line {
        conn: ConnId,
        now: Millis,
        line: Vec<u8>,
    },
    /// `conn` sent a line longer than the codec accepts.
    LineTooLong { conn: ConnId, now: Millis },
    /// `conn` closed without `QUIT`, or timed out.
    Disconnect {
        conn: ConnId,
        now: Millis,
        reason: String,
    },
    /// The server is alive.
    Beat { now: Millis },
    /// The server shuts down: its users quit with `reason`.
    Leave { now: Millis, reason: String },
}

/// What one publish carries: some entries of one server, numbered so that a batch published
/// twice (a retry after a lost acknowledgement) is applied once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The publishing server's number (0 for a hello: it has none yet).
    pub origin: u64,
    /// Counts from 1 for each server number.
    pub number: u64,
    pub entries: Vec<Entry>,
}

/// A log entry that is not a batch Parla wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a Parla cluster entry: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

const MAGIC: &[u8; 4] = b"PRL1";

impl Batch {
    /// The bytes to publish: little-endian fixed-size fields and length-prefixed strings.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.entries.len() * 64);
        b.extend_from_slice(MAGIC);
        put_u64(&mut b, self.origin);
        put_u64(&mut b, self.number);
        put_u32(&mut b, self.entries.len());
        for e in &self.entries {
            match e {
                Entry::Hello {
                    nonce,
                    name,
                    config,
                } => {
                    b.push(1);
                    put_u64(&mut b, *nonce);
                    put_bytes(&mut b, name.as_bytes());
                    put_u64(&mut b, *config);
                }
                Entry::Connect { conn, now, host } => {
                    b.push(2);
                    put_u64(&mut b, conn.0);
                    put_u64(&mut b, now.0);
                    put_bytes(&mut b, host.as_bytes());
                }
                Entry::Line { conn, now, line } => {
                    b.push(3);
                    put_u64(&mut b, conn.0);
                    put_u64(&mut b, now.0);
                    put_bytes(&mut b, line);
                }
                Entry::LineTooLong { conn, now } => {
                    b.push(4);
                    put_u64(&mut b, conn.0);
                    put_u64(&mut b, now.0);
                }
                Entry::Disconnect { conn, now, reason } => {
                    b.push(5);
                    put_u64(&mut b, conn.0);
                    put_u64(&mut b, now.0);
                    put_bytes(&mut b, reason.as_bytes());
                }
                Entry::Beat { now } => {
                    b.push(6);
                    put_u64(&mut b, now.0);
                }
                Entry::Leave { now, reason } => {
                    b.push(7);
                    put_u64(&mut b, now.0);
                    put_bytes(&mut b, reason.as_bytes());
                }
            }
        }
        b
    }

    /// The batch in `bytes`; an error (never a panic) for anything else.
    pub fn decode(bytes: &[u8]) -> Result<Batch, DecodeError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(DecodeError("unknown format"));
        }
        let origin = r.u64()?;
        let number = r.u64()?;
        let count = r.u32()?;
        // Each entry takes at least 9 bytes: a hostile count cannot make us reserve much.
        let mut entries = Vec::with_capacity(count.min(r.0.len() / 9));
        for _ in 0..count {
            let entry = match r.take(1)?[0] {
                1 => Entry::Hello {
                    nonce: r.u64()?,
                    name: r.string()?,
                    config: r.u64()?,
                },
                2 => Entry::Connect {
                    conn: ConnId(r.u64()?),
                    now: Millis(r.u64()?),
                    host: r.string()?,
                },
                3 => Entry::Line {
                    conn: ConnId(r.u64()?),
                    now: Millis(r.u64()?),
                    line: r.bytes()?.to_vec(),
                },
                4 => Entry::LineTooLong {
                    conn: ConnId(r.u64()?),
                    now: Millis(r.u64()?),
                },
                5 => Entry::Disconnect {
                    conn: ConnId(r.u64()?),
                    now: Millis(r.u64()?),
                    reason: r.string()?,
                },
                6 => Entry::Beat {
                    now: Millis(r.u64()?),
                },
                7 => Entry::Leave {
                    now: Millis(r.u64()?),
                    reason: r.string()?,
                },
                _ => return Err(DecodeError("unknown entry kind")),
            };
            entries.push(entry);
        }
        if !r.0.is_empty() {
            return Err(DecodeError("bytes after the last entry"));
        }
        Ok(Batch {
            origin,
            number,
            entries,
        })
    }
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut Vec<u8>, v: usize) {
    let v = u32::try_from(v).expect("a batch's parts are far below 4 GiB");
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    put_u32(b, v.len());
    b.extend_from_slice(v);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("eight bytes")))
    }

    fn u32(&mut self) -> Result<usize, DecodeError> {
        let b = self.take(4)?;
        let v = u32::from_le_bytes(b.try_into().expect("four bytes"));
        usize::try_from(v).map_err(|_| DecodeError("length too large"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("a string is not UTF-8"))
    }
}

/// A snapshot that could not be made or taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError(String);

impl SnapshotError {
    pub fn new(what: impl Into<String>) -> SnapshotError {
        SnapshotError(what.into())
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SnapshotError {}

const SNAPSHOT_MAGIC: &[u8; 4] = b"PRS1";

/// Appends `value` to `out` as one part of a snapshot: its length, then its MessagePack with
/// field names (a field added to a type later, with `#[serde(default)]`, reads from an older
/// snapshot as its default; a field removed is skipped).
pub(crate) fn put_part<T: serde::Serialize>(
    out: &mut Vec<u8>,
    value: &T,
    what: &str,
) -> Result<(), SnapshotError> {
    let bytes = rmp_serde::to_vec_named(value)
        .map_err(|e| SnapshotError::new(format!("{what} does not serialize: {e}")))?;
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(&bytes);
    Ok(())
}

/// The part of a snapshot at the start of `bytes` ([`put_part`]), and the bytes after it.
pub(crate) fn take_part<'a, T: serde::de::DeserializeOwned>(
    bytes: &'a [u8],
    what: &str,
) -> Result<(T, &'a [u8]), SnapshotError> {
    let cut = |_| SnapshotError::new(format!("the snapshot's {what} is cut short"));
    let mut r = Reader(bytes);
    let len = usize::try_from(r.u64().map_err(cut)?).map_err(|_| cut(DecodeError("")))?;
    let body = r.take(len).map_err(cut)?;
    let value = rmp_serde::from_slice(body)
        .map_err(|e| SnapshotError::new(format!("the snapshot's {what}: {e}")))?;
    Ok((value, r.0))
}

/// The layout of a snapshot. Fields are stored by name, so a field added with
/// `#[serde(default)]` or a field removed keeps the format; bump it for a change an older
/// snapshot cannot be read as (a field retyped or renamed, a meaning changed): a server refuses
/// a snapshot of another format rather than misread it. `crates/room/tests/cluster.rs` keeps a
/// snapshot of format 1 and requires that it still loads as the chat it was taken of.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// What a snapshot holds of the replica besides the core: the cluster as the log showed it.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReplicaState {
    cluster_config: Option<u64>,
    peers: BTreeMap<u64, Peer>,
    applied: u64,
    entries: u64,
    now: Millis,
}

/// The head of a snapshot: its format and the log position it was taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHead {
    pub format: u32,
    pub position: u64,
}

impl SnapshotHead {
    /// The head of the snapshot in `bytes`, without decoding the rest.
    pub fn of(bytes: &[u8]) -> Result<SnapshotHead, SnapshotError> {
        let mut r = Reader(bytes);
        let not = |_| SnapshotError::new("not a Parla snapshot (cut short)");
        if r.take(4).map_err(not)? != SNAPSHOT_MAGIC {
            return Err(SnapshotError::new("not a Parla snapshot"));
        }
        let format = u32::from_le_bytes(r.take(4).map_err(not)?.try_into().expect("four"));
        let position = r.u64().map_err(not)?;
        Ok(SnapshotHead { format, position })
    }

    const LEN: usize = 16;
}

/// A snapshot begun by [`Replica::start_snapshot`]: what remains is to serialize its copy of
/// the history.
#[derive(Debug)]
pub struct Snapshot {
    out: Vec<u8>,
    /// The history's copy; `None` if it is in `out` already (a store that cannot be copied
    /// was serialized at once).
    history: Option<Box<dyn crate::history::History>>,
}

impl Snapshot {
    /// The snapshot's bytes, history included.
    pub fn finish(mut self) -> Result<Vec<u8>, SnapshotError> {
        if let Some(history) = &self.history {
            history.save(&mut self.out)?;
        }
        Ok(self.out)
    }
}

/// What the runtime hears from the [`Replica`] besides the core's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Our hello was applied: this server's number is `number`; it may take connections.
    Joined { number: u64 },
    /// Server `number` (`name`) is gone (it left, or stopped beating); its users quit.
    Gone { number: u64, name: String },
    /// This server was declared gone (it could not reach the log for too long): its
    /// connections are closed, and it must say hello again to take new ones.
    Evicted,
    /// Our hello was refused: the cluster runs with other chat settings (its first server's
    /// [`crate::Config::cluster_fingerprint`] is `expected`, ours `ours`). Every server ignores
    /// this one; it must not serve.
    Refused { expected: u64, ours: u64 },
}

/// One server of the cluster, as the log shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Peer {
    name: String,
    /// The last batch number applied from it.
    last_batch: u64,
    /// Log position of its last beat (its hello counts as one).
    last_beat: u64,
    /// Positions of its last [`Replica::MISSES`] beats, oldest first.
    beats: VecDeque<u64>,
}

/// Applies the log to a [`Server`]; see the module docs.
#[derive(Debug)]
pub struct Replica {
    nonce: u64,
    /// Our [`crate::Config::cluster_fingerprint`].
    config: u64,
    /// The live servers' (they all have the same): set by the first hello applied while no
    /// server is alive.
    cluster_config: Option<u64>,
    me: Option<u64>,
    peers: BTreeMap<u64, Peer>,
    /// The last log position applied (positions count from 1).
    applied: u64,
    /// Entries applied so far, of every server (a position holds a batch of them).
    entries: u64,
    /// The time of the last entry applied: entries carry their server's clock, and the core
    /// is given the latest seen, so its time never runs backwards.
    now: Millis,
    events: VecDeque<Event>,
    /// Connections paused by a room's budget while their lines were applied, with until when.
    pauses: Vec<(ConnId, Millis)>,
}

impl Replica {
    /// A server is gone once another has beaten this many times since its last beat.
    pub const MISSES: usize = 3;

    /// A replica for a server that will say hello with `nonce` (random: it tells this server's
    /// hello from others'). Puts `core` in cluster mode: nothing is its own until it joins.
    pub fn new(core: &mut Server, nonce: u64) -> Replica {
        core.set_cluster(0);
        Replica {
            nonce,
            config: core.config().cluster_fingerprint(),
            cluster_config: None,
            me: None,
            peers: BTreeMap::new(),
            applied: 0,
            entries: 0,
            now: Millis(0),
            events: VecDeque::new(),
            pauses: Vec::new(),
        }
    }

    /// The state at the last applied position (the core's, its history, and the cluster as
    /// the log showed it), for another server to start from ([`Replica::restore`]). Any server
    /// may take it: every replica holds the same state at the same position.
    pub fn snapshot(&self, core: &Server) -> Result<Vec<u8>, SnapshotError> {
        self.start_snapshot(core)?.finish()
    }

    /// [`Replica::snapshot`] in two steps, so that the state need not stay still while all of
    /// it is serialized: this step serializes the cluster's state and the core's (small next
    /// to the history) and takes a copy of the history kept in memory (its messages are shared,
    /// not copied); [`Snapshot::finish`], later and elsewhere, serializes the copy.
    pub fn start_snapshot(&self, core: &Server) -> Result<Snapshot, SnapshotError> {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
        put_u64(&mut out, self.applied);
        let state = ReplicaState {
            cluster_config: self.cluster_config,
            peers: self.peers.clone(),
            applied: self.applied,
            entries: self.entries,
            now: self.now,
        };
        put_part(&mut out, &state, "the cluster's state")?;
        core.save_core(&mut out)?;
        let history = core.history_copy();
        if history.is_none() {
            core.save_history(&mut out)?;
        }
        Ok(Snapshot { out, history })
    }

    /// Starts over from `snapshot` instead of the log's beginning: `core` (this server's, with
    /// its settings) and the replica take the snapshot's state, and the log is to be read from
    /// the position after [`Replica::applied`]. Nothing in it is this server's: it has not
    /// joined (again) yet. A snapshot of another [`SNAPSHOT_FORMAT`] is refused; `core` and
    /// the replica are unchanged on an error.
    pub fn restore(&mut self, core: &mut Server, snapshot: &[u8]) -> Result<(), SnapshotError> {
        let head = SnapshotHead::of(snapshot)?;
        if head.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::new(format!(
                "the snapshot is of format {} and this server reads format {SNAPSHOT_FORMAT} \
                 (it was taken by another version of Parla)",
                head.format
            )));
        }
        let (state, rest): (ReplicaState, &[u8]) =
            take_part(&snapshot[SnapshotHead::LEN..], "cluster state")?;
        if state.applied != head.position {
            return Err(SnapshotError::new("the snapshot contradicts its own head"));
        }
        core.load_state(rest)?;
        core.set_cluster(0);
        *self = Replica {
            cluster_config: state.cluster_config,
            peers: state.peers,
            applied: state.applied,
            entries: state.entries,
            now: state.now,
            ..Replica::new(core, self.nonce)
        };
        Ok(())
    }

    /// The hello this server publishes (again, after [`Event::Evicted`]).
    pub fn hello(&self, name: &str) -> Batch {
        Batch {
            origin: 0,
            number: 0,
            entries: vec![Entry::Hello {
                nonce: self.nonce,
                name: name.to_owned(),
                config: self.config,
            }],
        }
    }

    /// This server's number, once its hello was applied.
    pub fn number(&self) -> Option<u64> {
        self.me
    }

    /// The last log position applied: a restarted subscription resumes after it.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Entries applied so far, of every server: the inputs (lines, connections, departures,
    /// beats) that a server starting from the log's beginning would apply up to here.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The servers the log shows alive, by number, with their names.
    pub fn servers(&self) -> Vec<(u64, &str)> {
        self.peers
            .iter()
            .map(|(&n, p)| (n, p.name.as_str()))
            .collect()
    }

    /// The connections whose message overdrew a room's budget since the last call, with until
    /// when they must not be read ([`Server::take_pause`]).
    pub fn take_pauses(&mut self) -> Vec<(ConnId, Millis)> {
        std::mem::take(&mut self.pauses)
    }

    /// The next event for the runtime, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Applies the entry the log holds at position `seq` (positions seen before are skipped,
    /// so a redelivery is harmless). An entry that is not a Parla batch is skipped with an
    /// error for the log; the replica is unchanged by it.
    pub fn apply(&mut self, core: &mut Server, seq: u64, bytes: &[u8]) -> Result<(), DecodeError> {
        if seq <= self.applied {
            return Ok(());
        }
        self.applied = seq;
        let batch = Batch::decode(bytes)?;
        if batch.origin == 0 {
            for entry in batch.entries {
                if let Entry::Hello {
                    nonce,
                    name,
                    config,
                } = entry
                {
                    self.hello_applied(core, seq, nonce, name, config);
                }
            }
            return Ok(());
        }
        let origin = batch.origin;
        match self.peers.get_mut(&origin) {
            // A server that is gone (or never said hello) has no say.
            None => return Ok(()),
            Some(peer) if batch.number <= peer.last_batch => return Ok(()),
            Some(peer) => peer.last_batch = batch.number,
        }
        for entry in batch.entries {
            if !self.peers.contains_key(&origin) {
                break; // it left in this batch
            }
            self.entries += 1;
            self.apply_entry(core, seq, origin, entry);
        }
        Ok(())
    }

    fn hello_applied(
        &mut self,
        core: &mut Server,
        seq: u64,
        nonce: u64,
        name: String,
        config: u64,
    ) {
        if self.peers.is_empty() {
            // Nobody to disagree with (a new cluster, or every server was stopped for an
            // upgrade): this server's settings are the cluster's from now on.
            self.cluster_config = Some(config);
        }
        let expected = *self.cluster_config.get_or_insert(config);
        if config != expected {
            if nonce == self.nonce && self.me.is_none() {
                let ours = config;
                self.events.push_back(Event::Refused { expected, ours });
            }
            return;
        }
        self.peers.insert(
            seq,
            Peer {
                name,
                last_batch: 0,
                last_beat: seq,
                beats: VecDeque::from([seq]),
            },
        );
        core.set_servers(self.peers.len());
        core.set_server_name(seq, Some(&self.peers[&seq].name));
        if nonce == self.nonce && self.me.is_none() {
            self.me = Some(seq);
            core.set_cluster(seq);
            self.events.push_back(Event::Joined { number: seq });
        }
    }

    fn apply_entry(&mut self, core: &mut Server, seq: u64, origin: u64, entry: Entry) {
        // A server speaks only for its own connections.
        let own = |conn: ConnId| conn.server() == origin;
        match entry {
            Entry::Hello { .. } => {}
            Entry::Connect { conn, now, host } if own(conn) => {
                let now = self.tick(core, now);
                core.handle_connect_as(now, conn, &host);
            }
            Entry::Line { conn, now, line } if own(conn) => {
                let now = self.tick(core, now);
                core.handle_line(now, conn, &line);
                if let Some(until) = core.take_pause(conn) {
                    self.pauses.push((conn, until));
                }
            }
            Entry::LineTooLong { conn, now } if own(conn) => {
                let now = self.tick(core, now);
                core.handle_line_too_long(now, conn);
            }
            Entry::Disconnect { conn, now, reason } if own(conn) => {
                let now = self.tick(core, now);
                core.handle_disconnect(now, conn, &reason);
            }
            Entry::Connect { .. }
            | Entry::Line { .. }
            | Entry::LineTooLong { .. }
            | Entry::Disconnect { .. } => {}
            Entry::Beat { now } => {
                let now = self.tick(core, now);
                self.beat(core, now, seq, origin);
            }
            Entry::Leave { now, reason } => {
                let now = self.tick(core, now);
                self.gone(core, now, origin, &reason);
            }
        }
    }

    /// The core's time for an entry stamped `at`: never earlier than the last.
    fn tick(&mut self, core: &mut Server, at: Millis) -> Millis {
        if self.now == Millis(0) {
            core.set_msgid_epoch(at);
        }
        self.now = self.now.max(at);
        self.now
    }

    fn beat(&mut self, core: &mut Server, now: Millis, seq: u64, origin: u64) {
        let Some(peer) = self.peers.get_mut(&origin) else {
            return;
        };
        // Beats published together (queued while the log was out of reach) are one beat:
        // a server is not declared gone by another's backlog.
        if peer.last_beat == seq {
            return;
        }
        peer.last_beat = seq;
        peer.beats.push_back(seq);
        while peer.beats.len() > Self::MISSES {
            peer.beats.pop_front();
        }
        let beats = peer.beats.clone();
        if beats.len() < Self::MISSES {
            return;
        }
        let oldest = beats[0];
        let silent: Vec<u64> = (self.peers.iter())
            .filter(|&(&n, p)| n != origin && p.last_beat < oldest)
            .map(|(&n, _)| n)
            .collect();
        for number in silent {
            let name = self.peers[&number].name.clone();
            let reason = format!("Server {name} stopped answering");
            self.gone(core, now, number, &reason);
        }
    }

    fn gone(&mut self, core: &mut Server, now: Millis, number: u64, reason: &str) {
        let Some(peer) = self.peers.remove(&number) else {
            return;
        };
        core.set_servers(self.peers.len());
        core.set_server_name(number, None);
        core.handle_server_gone(now, number, reason);
        self.events.push_back(Event::Gone {
            number,
            name: peer.name,
        });
        if self.me == Some(number) {
            self.me = None;
            core.set_cluster(0);
            self.events.push_back(Event::Evicted);
        }
    }
}
