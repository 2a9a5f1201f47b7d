//! The shared core handle: the sans-IO core and every client's outbox behind one lock, the
//! core's clock, and the timer task. Every change to the chat state goes through here, which is
//! why the runtime's panic policy is enforced here.
//!
//! Panic policy:
//! - A panic while the core's state is being changed (under its lock: any `Server::handle_*`,
//!   carrying out its outputs, the [`Observer`]) cannot be rolled back: names, rooms and
//!   outboxes may disagree. So the server aborts the process, with a line on stderr, instead of
//!   serving anyone from that state. [`CoreGuard`] does it; the lock is therefore never
//!   poisoned, and nothing recovers a poisoned one.
//! - A connection task that panics in its own I/O code (outside the core) still tells the core
//!   it left, with the reason `Internal error`: its name is freed and its rooms see it quit at
//!   once. The other connections carry on (see `connection.rs`).
//! - The timer task below is supervised: if it ever ends while the server runs, `run` says
//!   goodbye to every client as at a shutdown and then panics with the cause (see `mod.rs`).
//!   A server without timers would never ping anyone or time anyone out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use append_only_bytes::BytesSlice;
use parla_room::cluster::{Entry, Event as ReplicaEvent, Replica, SnapshotError};
use parla_room::server::error_line;
use parla_room::{ConnId, Millis, Output, Server};
use rustc_hash::FxHashMap;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::cluster::Link;
use super::outbox::{Lines, Outbox};
use super::{Input, Observer, ServerOptions};
use crate::clock::{Clock, sleep_until_opt};

/// What a panic under the core's lock prints before the process aborts.
const ABORT_MESSAGE: &str = "parla-server: a panic while changing the chat state; aborting so \
                             that no client is served from half-changed state";

struct State {
    core: Server,
    lines: Lines,
    /// Looked up once per delivery: a multiply-and-shift hash instead of SipHash (the ids are
    /// ours, not an attacker's).
    outboxes: FxHashMap<ConnId, Arc<Outbox>>,
    /// While a line of this connection is handled: the bytes queued for it (its replies),
    /// which its flood credit pays for.
    replies_to: Option<(ConnId, usize)>,
    /// In a cluster: applies the shared log to `core`.
    replica: Option<Replica>,
    /// In a cluster: until when a connection must not be read (its message, applied from the
    /// log, overdrew a room's budget); taken with its next line.
    pauses: FxHashMap<ConnId, Millis>,
    /// In a cluster: each open connection's peer address, as its `ERROR` names it.
    hosts: FxHashMap<ConnId, String>,
}

/// The core's lock, held. If a panic starts while it is held, its drop aborts the process: the
/// core was in the middle of a change that cannot be rolled back (see the module doc).
///
/// It costs what the std lock's own poisoning check costs: a look at the thread's panic count
/// when locking and when unlocking.
struct CoreGuard<'a> {
    state: MutexGuard<'a, State>,
    /// The thread was already unwinding when it locked: a connection task whose I/O code
    /// panicked, telling the core it left. Its call is not the panic; a panic inside it would be
    /// a panic during a panic, which Rust aborts on by itself.
    unwinding: bool,
    /// [`ServerOptions::abort_on_core_panic`].
    abort: bool,
}

impl Drop for CoreGuard<'_> {
    fn drop(&mut self) {
        if self.abort && !self.unwinding && std::thread::panicking() {
            abort_half_changed();
        }
    }
}

#[cold]
fn abort_half_changed() -> ! {
    // Straight to stderr, after the panic hook's own message: a subscriber might buffer, and
    // the process ends on the next line.
    eprintln!("{ABORT_MESSAGE}");
    std::process::abort();
}

impl Deref for CoreGuard<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for CoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

/// The core, the outboxes it fills, and what every task needs to reach them.
pub(super) struct Shared {
    state: Mutex<State>,
    clock: Clock,
    sendq_bytes: usize,
    /// See [`ServerOptions::reply_bytes_per_token`].
    pub(super) reply_bytes_per_token: usize,
    pub(super) max_line: usize,
    /// How long a closed connection may take to flush.
    pub(super) grace: Duration,
    observer: Option<Arc<dyn Observer>>,
    abort_on_core_panic: bool,
    /// Wakes the timer task when the core may have an earlier deadline.
    timer: Notify,
    /// In a cluster (`--cluster`): the log and the tasks' shared state.
    pub(super) cluster: Option<Arc<Link>>,
    /// Fires when the cluster declared this server gone (see `cluster::rejoin`).
    pub(super) evicted: Notify,
}

impl Shared {
    /// A fresh core under `options`, its clock starting now.
    pub(super) fn new(options: &ServerOptions) -> Shared {
        let clock = Clock::starting_at(options.epoch_millis);
        let mut core = match &options.history.0 {
            Some(history) => {
                Server::with_history(options.core.clone(), clock.now(), Box::new(history.clone()))
            }
            None => Server::new(options.core.clone(), clock.now()),
        };
        let replica = (options.cluster.as_ref()).map(|c| Replica::new(&mut core, c.nonce));
        Shared {
            state: Mutex::new(State {
                core,
                lines: Lines::new(),
                outboxes: FxHashMap::default(),
                replies_to: None,
                replica,
                pauses: FxHashMap::default(),
                hosts: FxHashMap::default(),
            }),
            clock,
            sendq_bytes: options.sendq_bytes,
            reply_bytes_per_token: options.reply_bytes_per_token.max(1),
            max_line: options.max_line,
            grace: options.shutdown_grace,
            observer: options.observer.0.clone(),
            abort_on_core_panic: options.abort_on_core_panic,
            timer: Notify::new(),
            cluster: options.cluster.as_ref().map(|c| Arc::new(Link::new(c))),
            evicted: Notify::new(),
        }
    }

    /// The core's clock, now.
    pub(super) fn now(&self) -> Millis {
        self.clock.now()
    }

    /// In a cluster: this server's hello, encoded.
    pub(super) fn hello(&self, name: &str) -> Vec<u8> {
        let state = self.lock();
        let replica = state.replica.as_ref().expect("in a cluster");
        replica.hello(name).encode()
    }

    /// In a cluster: the last log position applied.
    pub(super) fn applied(&self) -> u64 {
        self.lock().replica.as_ref().map_or(0, Replica::applied)
    }

    /// In a cluster: applies the log's entry at `seq`, then carries out the outputs. `false`
    /// (and nothing applied) if entries before it are missing: the log was trimmed past where
    /// this server got to, and it must start over from a snapshot.
    pub(super) fn apply_log(&self, seq: u64, bytes: &[u8]) -> bool {
        let now = self.clock.now();
        let mut state = self.lock();
        let before = state.core.poll_timeout();
        let State { core, replica, .. } = &mut *state;
        let Some(replica) = replica.as_mut() else {
            return true;
        };
        if seq > replica.applied() + 1 {
            return false;
        }
        let entries_before = replica.entries();
        if let Err(err) = replica.apply(core, seq, bytes) {
            warn!(seq, cause = %err, "skipping an entry of the cluster's log");
        }
        let link = self.cluster.as_ref().expect("a replica has a link");
        if link.snapshot_due(entries_before, replica) {
            // Begun under the core's lock (it is the state at this position): what that costs
            // is logged, as it holds up this server's chat while it lasts. The history, most
            // of it, is serialized from a copy by the task that stores it.
            let started = std::time::Instant::now();
            match replica.start_snapshot(core) {
                Ok(snapshot) => {
                    let took = started.elapsed();
                    info!(seq, ?took, "took a snapshot of the chat");
                    link.offer_snapshot(seq, snapshot);
                }
                Err(err) => warn!(seq, cause = %err, "could not take a snapshot"),
            }
        }
        for (conn, until) in replica.take_pauses() {
            if state.outboxes.contains_key(&conn) {
                state.pauses.insert(conn, until);
            }
        }
        self.apply(&mut state, now);
        if let Some(observer) = &self.observer {
            observer.applied(seq, &state.core);
        }
        while let Some(event) = state.replica.as_mut().and_then(Replica::poll_event) {
            match event {
                ReplicaEvent::Joined { number } => link.joined(number),
                ReplicaEvent::Gone { number, name } => {
                    info!(number, %name, "a server left the cluster; its users quit");
                }
                ReplicaEvent::Refused { expected, ours } => {
                    error!(
                        expected = format_args!("{expected:016x}"),
                        ours = format_args!("{ours:016x}"),
                        "the cluster runs with other chat settings than this server (room, \
                         limits, operators, history rules or version): start it with the same \
                         flags as the running servers, or stop them all to change settings"
                    );
                    link.refuse(
                        "the cluster refused this server: it runs with other chat settings (see \
                         the log above); start it with the same flags as the running servers"
                            .to_owned(),
                    );
                }
                ReplicaEvent::Evicted => {
                    link.evicted();
                    self.evicted.notify_one();
                }
            }
        }
        let after = state.core.poll_timeout();
        drop(state);
        self.wake_timer_if_earlier(before, after);
        true
    }

    /// In a cluster: the core and the replica start over from `snapshot` (this server is
    /// starting, or, with `rejoin`, the log no longer holds what it needs next). With `rejoin`
    /// its connections, if any, are closed with an `ERROR` that says why, and it says hello
    /// again (`evicted` fires): its hello may be inside the snapshot, where nothing tells it
    /// apart (a hello of its that comes after is then one more server, found silent and gone
    /// like any). Unchanged on an error (a snapshot it cannot read).
    pub(super) fn start_over(&self, snapshot: &[u8], rejoin: bool) -> Result<(), SnapshotError> {
        let mut state = self.lock();
        let State { core, replica, .. } = &mut *state;
        let replica = replica.as_mut().expect("in a cluster");
        replica.restore(core, snapshot)?;
        let position = replica.applied();
        if let Some(observer) = &self.observer {
            observer.applied(position, &state.core);
        }
        if rejoin {
            let link = self.cluster.as_ref().expect("a replica has a link");
            let line = error_line(
                "Closing Link: this server fell behind the chat network and is starting over; \
                 reconnect",
            );
            let mut conns: Vec<ConnId> = state.outboxes.keys().copied().collect();
            conns.sort_unstable();
            for conn in conns {
                self.tell(&mut state, conn, &line);
                state.hosts.remove(&conn);
                if let Some(outbox) = state.outboxes.remove(&conn) {
                    outbox.close();
                }
            }
            link.evicted();
            self.evicted.notify_one();
        }
        Ok(())
    }

    /// In a cluster: a line of the runtime's own to `conn` (the core is not asked: it cannot
    /// be told anything while the log is unreachable). A SendQ overflow it causes is not acted
    /// on here.
    fn tell(&self, state: &mut State, conn: ConnId, line: &[u8]) {
        let line = state.lines.put(line);
        let mut overflowed = VecDeque::new();
        self.deliver(state, conn, &line, &mut overflowed);
    }

    /// In a cluster, a line is taken only while the log is reachable: otherwise `conn` is told
    /// so and the line dropped. `true` if it was refused.
    fn refuse_unreachable(&self, state: &mut State, conn: ConnId) -> bool {
        let Some(link) = &self.cluster else {
            return false;
        };
        if link.ready() {
            return false;
        }
        let nick = state.core.nick(conn).unwrap_or("*").to_owned();
        let line = format!(
            ":{} NOTICE {nick} :Not sent: this server cannot reach the chat network right now; \
             try again in a moment\r\n",
            state.core.config().server_name
        );
        self.tell(state, conn, line.as_bytes());
        true
    }

    /// Locks the core. Never poisoned: a panic under this lock aborts (see [`CoreGuard`]).
    fn lock(&self) -> CoreGuard<'_> {
        let unwinding = std::thread::panicking();
        let state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) if !self.abort_on_core_panic => poisoned.into_inner(),
            Err(_) => unreachable!("the core's lock is never poisoned (a panic under it aborts)"),
        };
        CoreGuard {
            state,
            unwinding,
            abort: self.abort_on_core_panic,
        }
    }

    /// Runs `f` on the core, then carries out every output it produced.
    pub(super) fn with_core<R>(&self, f: impl FnOnce(&mut Server, Millis) -> R) -> R {
        let now = self.clock.now();
        let mut state = self.lock();
        let before = state.core.poll_timeout();
        let r = f(&mut state.core, now);
        self.apply(&mut state, now);
        let after = state.core.poll_timeout();
        drop(state);
        self.wake_timer_if_earlier(before, after);
        r
    }

    /// Any input may bring the core's next deadline forward (registering schedules the first
    /// PING): the timer task sleeps until the old one, so wake it to look again.
    fn wake_timer_if_earlier(&self, before: Option<Millis>, after: Option<Millis>) {
        if after.is_some_and(|a| before.is_none_or(|b| a < b)) {
            self.timer.notify_one();
        }
    }

    /// Gives the core `input` (showing it to the observer first), then carries out its outputs.
    pub(super) fn feed(&self, input: Input<'_>) {
        self.with_core(|core, now| self.hand(core, now, input));
    }

    /// Shows `input` to the observer, then gives it to the core (its outputs are the caller's
    /// to carry out).
    fn hand(&self, core: &mut Server, now: Millis, input: Input<'_>) {
        if let Some(observer) = &self.observer {
            observer.input(now, input);
        }
        match input {
            Input::Line { conn, line } => core.handle_line(now, conn, line),
            Input::LineTooLong { conn } => core.handle_line_too_long(now, conn),
            Input::Disconnect { conn, reason } => core.handle_disconnect(now, conn, reason),
            Input::Timeout => core.handle_timeout(now),
            Input::Shutdown => core.handle_shutdown(now),
        }
    }

    /// Gives the core a line from `conn` (`None`: one too long, discarded); returns the bytes
    /// of the replies queued for `conn`, which its flood credit is charged for beyond the line,
    /// and until when `conn` must not be read because its message overdrew a room's budget.
    pub(super) fn feed_line(&self, conn: ConnId, line: Option<&[u8]>) -> (usize, Option<Instant>) {
        if let Some(link) = &self.cluster
            && !line.is_some_and(is_pong)
        {
            // To the log; its replies come when it is applied. A PONG is this server's own
            // business (liveness), handled here at once.
            let now = self.clock.now();
            let mut state = self.lock();
            if !link.ready()
                && let Some(reason) = line.and_then(quit_reason)
            {
                // Leaving always works: the connection closes now, and the others see the
                // QUIT once this server reaches the log again.
                let host = state.hosts.remove(&conn).unwrap_or_default();
                let error =
                    parla_room::server::error_line(&format!("Closing Link: {host} ({reason})"));
                self.tell(&mut state, conn, &error);
                if let Some(outbox) = state.outboxes.remove(&conn) {
                    outbox.close();
                }
                link.publish(Entry::Disconnect { conn, now, reason });
                return (0, None);
            }
            if !self.refuse_unreachable(&mut state, conn) {
                link.publish(match line {
                    Some(line) => Entry::Line {
                        conn,
                        now,
                        line: line.to_vec(),
                    },
                    None => Entry::LineTooLong { conn, now },
                });
            }
            let pause = state.pauses.remove(&conn);
            return (0, pause.map(|at| self.clock.instant_of(at)));
        }
        let now = self.clock.now();
        let mut state = self.lock();
        let before = state.core.poll_timeout();
        let input = match line {
            Some(line) => Input::Line { conn, line },
            None => Input::LineTooLong { conn },
        };
        self.hand(&mut state.core, now, input);
        state.replies_to = Some((conn, 0));
        self.apply(&mut state, now);
        let replies = state.replies_to.take().map_or(0, |(_, bytes)| bytes);
        let pause = state
            .core
            .take_pause(conn)
            .map(|at| self.clock.instant_of(at));
        let after = state.core.poll_timeout();
        drop(state);
        self.wake_timer_if_earlier(before, after);
        (replies, pause)
    }

    /// Connections that have not registered yet.
    pub(super) fn registering(&self) -> usize {
        let state = self.lock();
        state.core.conn_count() - state.core.user_count()
    }

    /// Tells the core about a connection from `peer`, whose lines go to `outbox`.
    pub(super) fn connect(&self, peer: SocketAddr, outbox: Arc<Outbox>) -> ConnId {
        if let Some(link) = &self.cluster {
            let now = self.clock.now();
            let mut state = self.lock();
            let conn = state.core.reserve_id();
            if let Some(observer) = &self.observer {
                observer.connected(now, conn, peer);
            }
            state.outboxes.insert(conn, outbox);
            let host = peer.ip().to_string();
            state.hosts.insert(conn, host.clone());
            link.publish(Entry::Connect { conn, now, host });
            return conn;
        }
        let conn = {
            let now = self.clock.now();
            let mut state = self.lock();
            let conn = state.core.handle_connect(now, &peer.ip().to_string());
            if let Some(observer) = &self.observer {
                observer.connected(now, conn, peer);
            }
            // Registered before the outputs are applied, so even an immediate refusal arrives.
            state.outboxes.insert(conn, outbox);
            self.apply(&mut state, now);
            conn
        };
        self.timer.notify_one();
        conn
    }

    /// Tells the core `conn` is gone (a no-op if the core closed it first), and switches its
    /// outbox to flush-then-close so that its task ends.
    pub(super) fn disconnect(&self, conn: ConnId, reason: &str) {
        let now = self.clock.now();
        let mut state = self.lock();
        if let Some(link) = &self.cluster {
            state.hosts.remove(&conn);
            // Unless the core closed it first (then its departure is already in the log).
            if let Some(outbox) = state.outboxes.remove(&conn) {
                outbox.close();
                link.publish(Entry::Disconnect {
                    conn,
                    now,
                    reason: reason.to_owned(),
                });
            }
            return;
        }
        self.hand(&mut state.core, now, Input::Disconnect { conn, reason });
        self.apply(&mut state, now);
        if let Some(outbox) = state.outboxes.remove(&conn) {
            outbox.close();
        }
    }

    /// Queues `line` for `to`; a client whose SendQ it would overflow is noted in `overflowed`.
    fn deliver(
        &self,
        state: &mut State,
        to: ConnId,
        line: &BytesSlice,
        overflowed: &mut VecDeque<ConnId>,
    ) {
        if let Some(outbox) = state.outboxes.get(&to)
            && !outbox.push(line, self.sendq_bytes)
        {
            state.outboxes.remove(&to);
            overflowed.push_back(to);
        }
    }

    fn apply(&self, state: &mut State, now: Millis) {
        // Connections whose SendQ overflowed, to disconnect one at a time: each departure's
        // outputs are carried out before the next one is handled, so an observer sees every
        // input followed by exactly its outputs.
        let mut overflowed = VecDeque::new();
        loop {
            while let Some(out) = state.core.poll_output() {
                if let Some(observer) = &self.observer {
                    observer.output(&out);
                }
                match out {
                    Output::Send { to, line } => {
                        if let Some((conn, bytes)) = &mut state.replies_to
                            && *conn == to
                        {
                            *bytes += line.len();
                        }
                        let line = state.lines.put(&line);
                        self.deliver(state, to, &line, &mut overflowed);
                    }
                    Output::Broadcast { to, line } => {
                        let line = state.lines.put(&line);
                        for to in to {
                            self.deliver(state, to, &line, &mut overflowed);
                        }
                    }
                    Output::Close { conn, reason } => {
                        debug!(%conn, %reason, "core closed connection");
                        state.hosts.remove(&conn);
                        if let Some(outbox) = state.outboxes.remove(&conn) {
                            outbox.close();
                        }
                    }
                }
            }
            if let Some(link) = &self.cluster {
                // In a cluster, departures are published; every server applies them.
                for (conn, reason) in state.core.take_expired() {
                    link.publish(Entry::Disconnect { conn, now, reason });
                }
                for conn in overflowed.drain(..) {
                    warn!(%conn, limit = self.sendq_bytes, "client too slow; disconnecting (SendQ exceeded)");
                    let reason = "SendQ exceeded".to_owned();
                    link.publish(Entry::Disconnect { conn, now, reason });
                }
            }
            // Its QUIT goes to others, whose queues may overflow in turn: loop until quiet.
            let Some(conn) = overflowed.pop_front() else {
                if let Some(observer) = &self.observer {
                    observer.changed(&state.core);
                }
                return;
            };
            warn!(%conn, limit = self.sendq_bytes, "client too slow; disconnecting (SendQ exceeded)");
            let reason = "SendQ exceeded";
            if let Some(observer) = &self.observer {
                observer.input(now, Input::Disconnect { conn, reason });
            }
            state.core.handle_disconnect(now, conn, reason);
        }
    }
}

/// Wakes the core at its `poll_timeout` (PINGs, ping and registration timeouts). `run` keeps
/// its handle and treats its end as fatal.
pub(super) async fn timer_task(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let next = shared.lock().core.poll_timeout();
        let sleep = sleep_until_opt(next.map(|at| shared.clock.instant_of(at)));
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = shared.timer.notified() => {}
            _ = sleep => shared.feed(Input::Timeout),
        }
    }
}

/// If `line` is a `QUIT`, the reason its room will see (as the core words it).
fn quit_reason(line: &[u8]) -> Option<String> {
    let msg = parla_room::Message::parse(std::str::from_utf8(line).ok()?).ok()?;
    msg.verb
        .eq_ignore_ascii_case("QUIT")
        .then(|| parla_room::server::quit_reason(msg.params.first().copied()))
}

/// Whether `line` is a `PONG` (with or without tags and a source).
fn is_pong(line: &[u8]) -> bool {
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let mut verb = words.next();
    if verb.is_some_and(|w| w.starts_with(b"@")) {
        verb = words.next();
    }
    if verb.is_some_and(|w| w.starts_with(b":")) {
        verb = words.next();
    }
    verb.is_some_and(|v| v.eq_ignore_ascii_case(b"PONG"))
}
