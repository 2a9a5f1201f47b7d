//! The server runtime: accepts connections on any [`Listener`], frames their lines, feeds the
//! sans-IO core, and moves the bytes it decides on.
//!
//! Shape (mini-redis's, with one core instead of a database):
//! - One task per connection, a single `select!` over one timer (flood wait or flush deadline)
//!   and one poll of its socket and outbound queue. Nothing else happens there.
//! - Per-connection memory is what limits how many connections a server holds, so an idle
//!   connection keeps no buffers: input is read into a stack buffer (only a partial line goes to
//!   the heap), output is written with `writev` straight from the queue the task takes whole,
//!   and the task's future is kept small (a test guards its size). At 10,000 idle connections
//!   the server's RSS grows by ~1.7 KB per connection.
//! - Outgoing lines are copied once into shared append-only blocks (`Lines`); an outbox holds
//!   runs of consecutive lines in a block, so a recipient of a busy room takes one reference per
//!   burst, not one per line, and the kernel copies each burst from one iovec.
//! - The core lives behind a `std::sync::Mutex` (never held across an `.await`): each task locks
//!   it to feed one input and to hand the outputs to the per-connection `Outbox`es. A lock
//!   instead of a core task saves a channel hop per line, and the critical section is short.
//! - One timer task wakes the core at its `poll_timeout` (the style guide puts the timeout in
//!   each connection's `select!`; our core is shared, so its timers are too).
//! - Each outbox is bounded in bytes (the SendQ). A client that cannot keep up is disconnected
//!   with `SendQ exceeded`; the room never waits for it and memory never grows without bound.
//! - Shutdown: the caller's token fires → the core says goodbye to everyone → the connection tasks
//!   flush within `shutdown_grace` (each has its own flush deadline once closed) → `run`
//!   returns.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use append_only_bytes::{AppendOnlyBytes, BytesSlice};
use bytes::BytesMut;
use futures_util::task::AtomicWaker;
use parla_room::{ConnId, Millis, Output, Server};
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::codec::{DEFAULT_MAX_LINE, Frame, LineCodec};
use crate::transport::Listener;

/// Bytes read per `read` call, into a buffer on the stack: only a partial line is kept on the
/// heap between reads, so an idle connection holds no read buffer at all.
const READ_CHUNK: usize = 4096;
/// Runs of lines handed to one `writev` call.
const MAX_IOVECS: usize = 512;
/// Size of the blocks the outgoing lines are copied into (see [`Lines`]).
const LINES_BLOCK: usize = 16 * 1024;
/// Size of the blocks a client's lines are copied into once it holds runs in too many shared
/// blocks (see [`Outbox::push`]).
const SPILL_BLOCK: usize = 1024;

/// Input flood control: a token bucket per connection. Each line costs one token; with none
/// left, the server stops reading that connection until one refills (ergo's "fakelag"): a
/// flooder slows itself down through TCP backpressure, nobody is dropped, nothing is lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodControl {
    /// Lines a client may send at once after being quiet.
    pub burst: u32,
    /// Lines per second it may keep sending after that.
    pub per_second: f64,
}

impl Default for FloodControl {
    fn default() -> Self {
        FloodControl {
            burst: 20,
            per_second: 5.0,
        }
    }
}

/// Watches the server from inside: what the core decided, as it decided it. The simulation's
/// invariant checkers use it; it costs one branch per output when absent.
pub trait Observer: Send + Sync + 'static {
    /// A connection was accepted and given `conn`.
    fn connected(&self, conn: ConnId, peer: SocketAddr) {
        let _ = (conn, peer);
    }
    /// The core produced `output` (before the runtime carries it out).
    fn output(&self, output: &Output) {
        let _ = output;
    }
    /// The core handled an input; `core` is its new state.
    fn changed(&self, core: &Server) {
        let _ = core;
    }
}

/// An optional [`Observer`] in [`ServerOptions`].
#[derive(Clone, Default)]
pub struct ObserverSlot(pub Option<Arc<dyn Observer>>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(Observer)"
        } else {
            "None"
        })
    }
}

/// How the runtime behaves around the core.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The chat core's own settings.
    pub core: parla_room::Config,
    /// Connections served at once; more are told the server is full and closed.
    pub max_clients: usize,
    /// Bytes that may wait for one client before it is disconnected (`SendQ exceeded`).
    pub sendq_bytes: usize,
    /// Input flood control; `None` disables it (benchmarks).
    pub flood: Option<FloodControl>,
    /// Longest input line accepted; longer ones are answered with `417`.
    pub max_line: usize,
    /// How long queued output may take to flush at shutdown (and after a close).
    pub shutdown_grace: Duration,
    /// Wall-clock milliseconds since the Unix epoch when `run` starts; the core's clock counts
    /// from here on `tokio::time`. The binary passes the real time, a simulation a fixed one.
    pub epoch_millis: u64,
    /// Sees every decision of the core (the simulation's checkers); usually empty.
    pub observer: ObserverSlot,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            core: parla_room::Config::default(),
            max_clients: 10_000,
            sendq_bytes: 512 * 1024,
            flood: Some(FloodControl::default()),
            max_line: DEFAULT_MAX_LINE,
            shutdown_grace: Duration::from_secs(5),
            epoch_millis: 0,
            observer: ObserverSlot::default(),
        }
    }
}

/// The core's clock: `epoch_millis` plus the `tokio::time` elapsed since start (simulated under
/// turmoil, paused in tests).
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    epoch_millis: u64,
}

impl Clock {
    fn now(&self) -> Millis {
        Millis(self.epoch_millis + self.start.elapsed().as_millis() as u64)
    }

    fn instant_of(&self, at: Millis) -> Instant {
        self.start + Duration::from_millis(at.0.saturating_sub(self.epoch_millis))
    }
}

/// What a connection task and the core share: the lines waiting to be written.
#[derive(Debug, Default)]
struct Outbox {
    inner: Mutex<OutboxInner>,
    /// The connection task, while it waits. (Lock-free and kept here rather than in the task's
    /// future, unlike `Notify`: every byte of that future is paid per idle connection.)
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct OutboxInner {
    /// Runs of consecutive lines of one [`Lines`] block.
    queue: VecDeque<BytesSlice>,
    bytes: usize,
    /// Shared blocks the queue has runs in.
    blocks: u32,
    /// This client's own blocks, once its runs would keep too many shared ones alive (see
    /// [`Outbox::push`]); dropped when the queue is taken.
    spill: Option<Lines<SPILL_BLOCK>>,
    state: OutboxState,
    /// Something changed since the task last looked. Kept under the lock, beside the queue:
    /// the core's fan-out then touches one cache line per recipient, not two (an atomic flag
    /// of its own cost a third of the fan-out's time in a profile, in cache misses).
    changed: bool,
}

#[derive(Debug, Default, Clone, PartialEq)]
enum OutboxState {
    #[default]
    Open,
    /// Flush what is queued, then close.
    Closing,
    /// Close now, dropping what is queued (the client stopped reading).
    Killed,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, OutboxInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `line`; `false` if that would pass `cap` bytes (the outbox is then killed).
    /// A line that continues the last one queued in its block extends that run: no new
    /// reference to the block, and one iovec for the run when it is written.
    ///
    /// A run keeps its whole block alive, so a client that stopped reading and gets a line now
    /// and then, far apart in the shared blocks, could hold a block per line while its SendQ
    /// counts only the lines. Once its shared blocks past the first would fill more than its
    /// SendQ and more than twice its queued bytes, its lines are copied into blocks of its own
    /// instead: all it holds stays within three times its SendQ plus 17 KiB. (A client merely
    /// behind in a busy room has most lines of its blocks queued, and never copies.)
    fn push(&self, line: &BytesSlice, cap: usize) -> bool {
        let mut inner = self.lock();
        if inner.state != OutboxState::Open {
            return true;
        }
        let fits = inner.bytes + line.len() <= cap;
        if fits {
            let inner = &mut *inner;
            inner.bytes += line.len();
            let merged = inner
                .queue
                .back_mut()
                .is_some_and(|run| run.try_merge(line).is_ok());
            if !merged {
                // Blocks fill in order, so a run in another block than the last run's is in a
                // block the queue holds no run in yet (until it spills; then it always copies).
                let new_block = inner.queue.back().is_none_or(|run| !run.ptr_eq(line));
                let extra = inner.blocks as usize * LINES_BLOCK;
                let spill =
                    new_block && (inner.spill.is_some() || extra > (2 * inner.bytes).max(cap));
                let run = if spill {
                    inner.spill.get_or_insert_with(Lines::new).put(line)
                } else {
                    inner.blocks += u32::from(new_block);
                    line.clone()
                };
                // A copy may continue the last copy.
                let merged = spill
                    && inner
                        .queue
                        .back_mut()
                        .is_some_and(|last| last.try_merge(&run).is_ok());
                if !merged {
                    inner.queue.push_back(run);
                }
            }
        } else {
            inner.state = OutboxState::Killed;
            inner.queue = VecDeque::new();
            inner.spill = None;
        }
        Self::changed(inner, &self.waker);
        fits
    }

    fn close(&self) {
        let mut inner = self.lock();
        if inner.state == OutboxState::Open {
            inner.state = OutboxState::Closing;
        }
        Self::changed(inner, &self.waker);
    }

    /// Marks a change and wakes the task, but only on the first change since it last looked:
    /// a burst of lines for one connection costs one wake-up, not one per line.
    fn changed(mut inner: MutexGuard<'_, OutboxInner>, waker: &AtomicWaker) {
        let first = !std::mem::replace(&mut inner.changed, true);
        drop(inner);
        if first {
            waker.wake();
        }
    }

    /// Ready once something changed since the task last looked.
    fn poll_changed(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before looking: a change after the look finds the waker.
        self.waker.register(cx.waker());
        if std::mem::take(&mut self.lock().changed) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Takes everything queued, leaving the outbox with no buffer at all, and the state seen.
    /// With `coalesce`, the lines come as one buffer: a stream without vectored writes then
    /// still gets one write per batch.
    fn take(&self, coalesce: bool) -> (VecDeque<BytesSlice>, OutboxState) {
        let mut inner = self.lock();
        inner.changed = false;
        let queue = std::mem::take(&mut inner.queue);
        let bytes = std::mem::replace(&mut inner.bytes, 0);
        inner.blocks = 0;
        inner.spill = None;
        let state = inner.state.clone();
        drop(inner);
        if coalesce && queue.len() > 1 {
            let mut buf = AppendOnlyBytes::with_capacity(bytes);
            for run in &queue {
                buf.push_slice(run);
            }
            return (VecDeque::from([buf.to_slice()]), state);
        }
        (queue, state)
    }

    /// The state, for a task still writing its last batch (what is queued stays queued).
    fn state(&self) -> OutboxState {
        let mut inner = self.lock();
        inner.changed = false;
        inner.state.clone()
    }
}

struct State {
    core: Server,
    lines: Lines,
    /// Looked up once per delivery: a multiply-and-shift hash instead of SipHash (the ids are
    /// ours, not an attacker's).
    outboxes: FxHashMap<ConnId, Arc<Outbox>>,
}

/// Where outgoing lines are kept until written: the core's lines are copied, one after
/// another, into shared append-only blocks of [`LINES_BLOCK`] bytes, and each outbox holds runs
/// of them. Consecutive lines for one client are usually consecutive in the block (a busy room
/// sends everyone the same lines in the same order), so a burst costs its recipient one
/// reference to the block and is written as one iovec, instead of a reference count per line
/// per recipient (contended between the two sides of the handoff) and an iovec per line.
///
/// A block is freed once the last run in it is written. A client that stops reading gets its
/// own copies before its runs keep more than its SendQ's worth of shared blocks alive (see
/// [`Outbox::push`]).
struct Lines<const BLOCK: usize = LINES_BLOCK> {
    block: AppendOnlyBytes,
}

impl<const BLOCK: usize> std::fmt::Debug for Lines<BLOCK> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("used", &self.block.len())
            .finish()
    }
}

impl<const BLOCK: usize> Lines<BLOCK> {
    fn new() -> Self {
        Lines {
            block: AppendOnlyBytes::with_capacity(BLOCK),
        }
    }

    /// Copies `line` into the current block (or a new one, when it is full) and returns it.
    fn put(&mut self, line: &[u8]) -> BytesSlice {
        if self.block.capacity() - self.block.len() < line.len() {
            self.block = AppendOnlyBytes::with_capacity(BLOCK.max(line.len()));
        }
        let start = self.block.len();
        self.block.push_slice(line);
        self.block.slice(start..)
    }
}

struct Shared {
    state: Mutex<State>,
    clock: Clock,
    sendq_bytes: usize,
    flood: Option<FloodControl>,
    max_line: usize,
    /// How long a closed connection may take to flush.
    grace: Duration,
    observer: Option<Arc<dyn Observer>>,
    /// Wakes the timer task when the core may have an earlier deadline.
    timer: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in the core; keep serving the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the core, then carries out every output it produced.
    fn with_core<R>(&self, f: impl FnOnce(&mut Server, Millis) -> R) -> R {
        let now = self.clock.now();
        let mut state = self.lock();
        let before = state.core.poll_timeout();
        let r = f(&mut state.core, now);
        self.apply(&mut state, now);
        let after = state.core.poll_timeout();
        drop(state);
        // Any input may bring the core's next deadline forward (registering schedules the first
        // PING): the timer task sleeps until the old one, so wake it to look again.
        if after.is_some_and(|a| before.is_none_or(|b| a < b)) {
            self.timer.notify_one();
        }
        r
    }

    /// Queues `line` for `to`; a client whose SendQ it would overflow is noted in `overflowed`.
    fn deliver(
        &self,
        state: &mut State,
        to: ConnId,
        line: &BytesSlice,
        overflowed: &mut Vec<ConnId>,
    ) {
        if let Some(outbox) = state.outboxes.get(&to)
            && !outbox.push(line, self.sendq_bytes)
        {
            state.outboxes.remove(&to);
            overflowed.push(to);
        }
    }

    fn apply(&self, state: &mut State, now: Millis) {
        loop {
            let mut overflowed = Vec::new();
            while let Some(out) = state.core.poll_output() {
                if let Some(observer) = &self.observer {
                    observer.output(&out);
                }
                match out {
                    Output::Send { to, line } => {
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
                        if let Some(outbox) = state.outboxes.remove(&conn) {
                            outbox.close();
                        }
                    }
                }
            }
            if overflowed.is_empty() {
                if let Some(observer) = &self.observer {
                    observer.changed(&state.core);
                }
                return;
            }
            // Their QUITs go to others, whose queues may overflow in turn: loop until quiet.
            for conn in overflowed {
                warn!(%conn, limit = self.sendq_bytes, "client too slow; disconnecting (SendQ exceeded)");
                state.core.handle_disconnect(now, conn, "SendQ exceeded");
            }
        }
    }
}

/// Serves IRC on `listener` until `shutdown` is cancelled, then says goodbye to every client,
/// lets their output drain for at most `options.shutdown_grace`, and returns.
pub async fn run<L: Listener>(
    mut listener: L,
    options: ServerOptions,
    shutdown: CancellationToken,
) {
    let clock = Clock {
        start: Instant::now(),
        epoch_millis: options.epoch_millis,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            core: Server::new(options.core.clone(), clock.now()),
            lines: Lines::new(),
            outboxes: FxHashMap::default(),
        }),
        clock,
        sendq_bytes: options.sendq_bytes,
        flood: options.flood,
        max_line: options.max_line,
        grace: options.shutdown_grace,
        observer: options.observer.0.clone(),
        timer: Notify::new(),
    });
    let limit = Arc::new(Semaphore::new(options.max_clients));
    let tracker = TaskTracker::new();
    let timer_stop = CancellationToken::new();
    tokio::spawn(timer_task(shared.clone(), timer_stop.clone()));
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "listening");
    }

    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Usually out of file descriptors: back off rather than spin.
                warn!(cause = %err, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, max = options.max_clients, "server full; refusing connection");
            tracker.spawn(refuse_full(stream, options.max_clients));
            continue;
        };
        let outbox = Arc::new(Outbox::default());
        let conn = {
            let now = shared.clock.now();
            let mut state = shared.lock();
            let conn = state.core.handle_connect(now, &peer.ip().to_string());
            if let Some(observer) = &shared.observer {
                observer.connected(conn, peer);
            }
            // Registered before the outputs are applied, so even an immediate refusal arrives.
            state.outboxes.insert(conn, outbox.clone());
            shared.apply(&mut state, now);
            conn
        };
        shared.timer.notify_one();
        // At debug level only: an enabled span costs memory per connection for its whole life.
        let span = debug_span!("conn", %conn, %peer);
        let task = Connection {
            shared: shared.clone(),
            outbox,
            conn,
        };
        let fut = async move {
            task.run(stream).await;
            drop(permit);
        };
        // An instrumented future is larger: only pay for it when the span is on.
        if span.is_disabled() {
            tracker.spawn(fut);
        } else {
            tracker.spawn(fut.instrument(span));
        }
    }

    info!("shutting down: telling every client");
    shared.with_core(|core, now| core.handle_shutdown(now));
    tracker.close();
    if tokio::time::timeout(options.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        // Each of them closes at its own flush deadline (the grace period after its close).
        warn!(grace = ?options.shutdown_grace, "some clients did not take their output in time; closing them");
        tracker.wait().await;
    }
    timer_stop.cancel();
    info!("shut down");
}

/// Tells a connection over the limit why it is refused.
async fn refuse_full<S: crate::transport::Stream>(mut stream: S, max: usize) {
    let line =
        format!("ERROR :Closing Link: the server is full ({max} clients); try again later\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn timer_task(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let next = shared.lock().core.poll_timeout();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(shared.clock.instant_of(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = shared.timer.notified() => {}
            _ = sleep => shared.with_core(|core, now| core.handle_timeout(now)),
        }
    }
}

/// One client's task.
struct Connection {
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    conn: ConnId,
}

impl Connection {
    async fn run<S: crate::transport::Stream>(self, mut stream: S) {
        // Nothing is kept per connection between bursts: no read buffer unless a line is
        // partial, no write buffer (the shared lines are written as they are, vectored), no
        // queue, no split of the stream. Idle connections are most of a server's connections,
        // and their memory is what limits how many it holds.
        let mut lines = LineReader::new(LineCodec::new(self.shared.max_line));
        // Streams without vectored writes (the simulation's) get each batch as one buffer.
        let coalesce = !stream.is_write_vectored();
        let mut out: VecDeque<BytesSlice> = VecDeque::new();
        let mut bucket = self.shared.flood.map(|f| Bucket::new(f, Instant::now()));
        let mut reading = true;
        let mut state = OutboxState::Open;
        let mut notified = false;
        // Set once the core closed us: flushing must end by then.
        let mut deadline: Option<Instant> = None;
        let reason: String = loop {
            // Take the next batch once the last one is written; while one is still being
            // written (a slow reader), only look whether the core closed us meanwhile: what
            // waits in the outbox counts against the SendQ, what we took does not.
            if out.is_empty() {
                (out, state) = self.outbox.take(coalesce);
            } else if std::mem::take(&mut notified) {
                state = self.outbox.state();
            }
            match state {
                OutboxState::Killed => break "SendQ exceeded".into(),
                OutboxState::Closing if out.is_empty() => break "closed by server".into(),
                OutboxState::Closing => {
                    deadline.get_or_insert_with(|| Instant::now() + self.shared.grace);
                }
                OutboxState::Open => {}
            }
            let open = reading && state == OutboxState::Open;
            let throttled_until = bucket
                .as_mut()
                .filter(|_| open)
                .and_then(|b| b.ready_at(Instant::now()));
            let can_read = open && throttled_until.is_none();
            // One timer for both: the flush deadline (closing) and the flood wait (open).
            let wake_at = deadline.or(throttled_until);
            // Socket and outbox in one poll, in this order: write what we hold, notice what
            // the core queued or decided, read the next line.
            let io = std::future::poll_fn(|cx| {
                if !out.is_empty()
                    && let Poll::Ready(written) = poll_write_lines(cx, &mut stream, &mut out)
                {
                    return Poll::Ready(Io::Wrote(written));
                }
                if self.outbox.poll_changed(cx).is_ready() {
                    return Poll::Ready(Io::Changed);
                }
                if can_read && let Poll::Ready(frame) = lines.poll_next(cx, &mut stream) {
                    return Poll::Ready(Io::Read(frame));
                }
                Poll::Pending
            });
            let io = tokio::select! {
                biased;
                _ = sleep_until_opt(wake_at) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break "flush deadline passed".into();
                    }
                    continue;
                }
                io = io => io,
            };
            match io {
                Io::Wrote(Ok(0)) => {
                    break "write error: the connection accepts no more data".into();
                }
                Io::Wrote(Ok(_)) => {}
                Io::Wrote(Err(err)) => break format!("write error: {err}"),
                Io::Changed => notified = true,
                Io::Read(Some(Ok(frame))) => {
                    if let Some(b) = bucket.as_mut() {
                        b.take(Instant::now());
                    }
                    let conn = self.conn;
                    self.shared.with_core(|core, now| match &frame {
                        Frame::Line(line) => core.handle_line(now, conn, line),
                        Frame::TooLong => core.handle_line_too_long(now, conn),
                    });
                }
                Io::Read(Some(Err(err))) => {
                    self.disconnect(&format!("Read error: {err}"));
                    reading = false;
                }
                Io::Read(None) => {
                    self.disconnect("Connection closed");
                    reading = false;
                }
            }
        };
        // Tell the core (a no-op if it closed us), then close our side.
        self.disconnect(&format!("Connection closed: {reason}"));
        debug!(%reason, "connection ended");
        // Boxed, like every timer here: it would otherwise widen the whole future.
        let _ = Box::pin(tokio::time::timeout(
            Duration::from_secs(1),
            stream.shutdown(),
        ))
        .await;
    }

    /// Tells the core this client is gone (a no-op if the core closed it first), and switches
    /// the outbox to flush-then-close so that the task ends.
    fn disconnect(&self, reason: &str) {
        let now = self.shared.clock.now();
        let mut state = self.shared.lock();
        state.core.handle_disconnect(now, self.conn, reason);
        self.shared.apply(&mut state, now);
        if let Some(outbox) = state.outboxes.remove(&self.conn) {
            outbox.close();
        }
    }
}

/// What one poll of a connection's socket and outbox brought.
enum Io {
    Wrote(io::Result<usize>),
    Changed,
    Read(Option<io::Result<Frame>>),
}

/// Writes from the front of `out` with one vectored write (up to [`MAX_IOVECS`] runs of lines),
/// and drops what was written. The runs are views of the shared [`Lines`] blocks: nothing is
/// copied here.
fn poll_write_lines<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    writer: &mut W,
    out: &mut VecDeque<BytesSlice>,
) -> Poll<io::Result<usize>> {
    let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
    let mut n = 0;
    for (slot, line) in iov.iter_mut().zip(out.iter()) {
        *slot = IoSlice::new(line);
        n += 1;
    }
    let written = match Pin::new(writer).poll_write_vectored(cx, &iov[..n]) {
        Poll::Ready(Ok(written)) => written,
        other => return other,
    };
    let mut left = written;
    while left > 0 {
        let Some(front) = out.front_mut() else { break };
        if front.len() > left {
            front.slice_(left..);
            break;
        }
        left -= front.len();
        out.pop_front();
    }
    Poll::Ready(Ok(written))
}

/// Frames input lines like tokio-util's `FramedRead`, but reads into a buffer on the stack and
/// keeps bytes on the heap only while a line is incomplete.
struct LineReader {
    codec: LineCodec,
    buf: BytesMut,
    eof: bool,
}

impl LineReader {
    fn new(codec: LineCodec) -> LineReader {
        LineReader {
            codec,
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// The next frame from `inner`; `None` at end of stream. Bytes read that are not a whole
    /// line yet stay in `self`.
    fn poll_next<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        inner: &mut R,
    ) -> Poll<Option<io::Result<Frame>>> {
        loop {
            let decoded = if self.eof {
                self.codec.decode_eof(&mut self.buf)
            } else {
                self.codec.decode(&mut self.buf)
            };
            if self.buf.is_empty() {
                // Even empty (and with no capacity left), the buffer still holds a reference to
                // the allocation its lines were split from: let it go.
                self.buf = BytesMut::new();
            }
            match decoded {
                Err(err) => return Poll::Ready(Some(Err(err))),
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) if self.eof => return Poll::Ready(None),
                Ok(None) => {}
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut *inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(Ok(())) if read.filled().is_empty() => self.eof = true,
                Poll::Ready(Ok(())) => self.buf.extend_from_slice(read.filled()),
            }
        }
    }
}

/// Sleeps until `at`, or forever. The timer is boxed: it is rarely armed (a flooding client, a
/// closing one), and inline it would make every connection's future larger.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => Box::pin(tokio::time::sleep_until(at)).await,
        None => std::future::pending().await,
    }
}

/// A token bucket over `tokio::time` (so it is virtual under simulation and paused tests).
#[derive(Debug, Clone)]
struct Bucket {
    config: FloodControl,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(config: FloodControl, now: Instant) -> Bucket {
        Bucket {
            config,
            tokens: f64::from(config.burst.max(1)),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.config.per_second)
            .min(f64::from(self.config.burst.max(1)));
        self.updated = now;
    }

    /// Spends a token for one line.
    fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }

    /// `None` if a line may be read now, else when the next token will be there.
    fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        // Float refills can stop a hair short of a whole token; that counts as one.
        if self.tokens >= 1.0 - 1e-9 {
            return None;
        }
        if self.config.per_second <= 0.0 {
            return Some(now + Duration::from_secs(3600));
        }
        // Never less than a millisecond: a zero wait would be ready at once, and under simulated
        // time (which stands still within a tick) the task would spin forever.
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.config.per_second);
        Some(now + wait.max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            FloodControl {
                burst: 3,
                per_second: 2.0,
            },
            t0,
        );
        for _ in 0..3 {
            assert_eq!(b.ready_at(t0), None);
            b.take(t0);
        }
        let next = b.ready_at(t0).expect("empty after the burst");
        assert_eq!(next - t0, Duration::from_millis(500));
        assert_eq!(b.ready_at(t0 + Duration::from_millis(500)), None);
        // Refill is capped at the burst.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(b.ready_at(later), None);
            b.take(later);
        }
        assert!(b.ready_at(later).is_some());
    }

    /// Regression (found by the simulation, scenario 07 with seed 3): a refill that stopped a
    /// hair short of a whole token gave a zero wait, and the connection task spun forever under
    /// simulated time.
    #[test]
    fn bucket_never_asks_for_a_zero_wait() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            FloodControl {
                burst: 1,
                per_second: 5.0,
            },
            t0,
        );
        b.take(t0);
        b.tokens = 1.0 - 1e-12;
        assert_eq!(
            b.ready_at(t0),
            None,
            "within rounding of a token counts as one"
        );
        b.tokens = 0.999_999;
        let at = b.ready_at(t0).expect("not yet a token");
        assert!(at - t0 >= Duration::from_millis(1), "{:?}", at - t0);
    }

    fn runs(out: &VecDeque<BytesSlice>) -> Vec<&[u8]> {
        out.iter().map(|run| run.as_bytes()).collect()
    }

    #[test]
    fn outbox_kills_itself_past_its_cap() {
        let outbox = Outbox::default();
        let mut lines: Lines = Lines::new();
        assert!(outbox.push(&lines.put(b"12345"), 8));
        assert!(!outbox.push(&lines.put(b"6789"), 8));
        let (out, state) = outbox.take(false);
        assert_eq!(state, OutboxState::Killed);
        assert!(out.is_empty(), "a killed outbox drops its queue");
    }

    #[test]
    fn outbox_runs_consecutive_lines_together_and_keeps_no_buffer() {
        let outbox = Outbox::default();
        let mut lines: Lines = Lines::new();
        for line in [&b"a\r\n"[..], b"bc\r\n"] {
            assert!(outbox.push(&lines.put(line), 1024));
        }
        // A line for somebody else breaks the run; order is kept.
        let _other = lines.put(b"not yours\r\n");
        assert!(outbox.push(&lines.put(b"def\r\n"), 1024));
        let (out, state) = outbox.take(false);
        assert_eq!(state, OutboxState::Open);
        assert_eq!(runs(&out), [&b"a\r\nbc\r\n"[..], b"def\r\n"]);
        assert_eq!(outbox.lock().queue.capacity(), 0);
        assert_eq!(outbox.lock().bytes, 0);
        // Coalesced for streams that write one buffer at a time.
        assert!(outbox.push(&lines.put(b"g\r\n"), 1024));
        let _other = lines.put(b"not yours\r\n");
        assert!(outbox.push(&lines.put(b"h\r\n"), 1024));
        let (one, _) = outbox.take(true);
        assert_eq!(runs(&one), [&b"g\r\nh\r\n"[..]]);
    }

    #[test]
    fn lines_fill_a_block_then_start_another_and_free_the_old_one_when_written() {
        let mut lines: Lines = Lines::new();
        let line = [b'x'; 1000];
        let first = lines.put(&line);
        for _ in 1..LINES_BLOCK / line.len() {
            assert!(
                lines.put(&line).ptr_eq(&first),
                "same block while it has room"
            );
        }
        let next = lines.put(&line);
        assert!(!next.ptr_eq(&first), "a full block is left for a new one");
        assert_eq!(next.as_bytes(), line);
        // A line longer than a block gets a block of its own size.
        let long = vec![b'y'; LINES_BLOCK * 2];
        assert_eq!(lines.put(&long).as_bytes(), long);
        // Runs across blocks are not merged.
        let outbox = Outbox::default();
        assert!(outbox.push(&first, usize::MAX));
        assert!(outbox.push(&next, usize::MAX));
        assert_eq!(outbox.take(false).0.len(), 2);
    }

    #[test]
    fn a_stalled_client_with_sparse_lines_pins_few_shared_blocks() {
        let mut lines: Lines = Lines::new();
        let outbox = Outbox::default();
        let filler = [b'.'; 1000];
        let mut sent = Vec::new();
        let mut shared = Vec::new();
        for i in 0..20 {
            // Everybody else's traffic in between: each of our lines lands in a new block.
            for _ in 0..LINES_BLOCK / filler.len() {
                lines.put(&filler);
            }
            let line = format!("line {i}\r\n");
            let slice = lines.put(line.as_bytes());
            assert!(outbox.push(&slice, 4 * LINES_BLOCK));
            shared.push(slice);
            sent.extend_from_slice(line.as_bytes());
        }
        let (out, _) = outbox.take(false);
        let pinned = out
            .iter()
            .filter(|run| shared.iter().any(|s| s.ptr_eq(run)))
            .count();
        assert_eq!(
            pinned,
            1 + 4,
            "the first block, and the SendQ's worth of others"
        );
        assert_eq!(
            out.len(),
            pinned + 1,
            "the rest is copied into one run of its own"
        );
        let got: Vec<u8> = out.iter().flat_map(|run| run.iter().copied()).collect();
        assert_eq!(got, sent, "nothing lost, nothing reordered");
        // Taking the queue starts afresh: the next line is shared again.
        let next = lines.put(b"again\r\n");
        assert!(outbox.push(&next, usize::MAX));
        assert!(outbox.take(false).0[0].ptr_eq(&next));
        // A client merely behind in a busy room (most lines are for it) never copies, however
        // many blocks its queue spans.
        let mut blocks = Vec::new();
        for _ in 0..10 * LINES_BLOCK / filler.len() {
            let line = lines.put(&filler);
            if !blocks.iter().any(|b: &BytesSlice| b.ptr_eq(&line)) {
                blocks.push(line.clone());
            }
            assert!(outbox.push(&line, usize::MAX));
        }
        let (out, _) = outbox.take(false);
        assert!(blocks.len() >= 10, "{}", blocks.len());
        assert_eq!(out.len(), blocks.len(), "one shared run per block");
        assert!(out.iter().zip(&blocks).all(|(run, b)| run.ptr_eq(b)));
    }

    /// Every idle connection pays for its task's future: keep it small (it was 824 bytes, task included, with
    /// inline timers and a `Notify`; tokio rounds task cells up to 128 bytes).
    #[tokio::test]
    async fn a_connection_future_stays_small() {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core: Server::new(parla_room::Config::default(), Millis(0)),
                lines: Lines::new(),
                outboxes: FxHashMap::default(),
            }),
            clock: Clock {
                start: Instant::now(),
                epoch_millis: 0,
            },
            sendq_bytes: 1024,
            flood: Some(FloodControl::default()),
            max_line: DEFAULT_MAX_LINE,
            grace: Duration::from_secs(1),
            observer: None,
            timer: Notify::new(),
        });
        let task = Connection {
            shared,
            outbox: Arc::new(Outbox::default()),
            conn: ConnId(1),
        };
        let (stream, _peer) = tokio::io::duplex(64);
        let size = std::mem::size_of_val(&task.run(stream));
        assert!(size <= 384, "the connection future grew to {size} bytes");
    }

    #[tokio::test]
    async fn write_lines_writes_partially_and_keeps_the_rest_in_order() {
        // A pipe that takes at most 5 bytes per write.
        let (mut tx, mut rx) = tokio::io::duplex(5);
        let mut out: VecDeque<BytesSlice> = [&b"hello\r\n"[..], b"world\r\n"]
            .into_iter()
            .map(BytesSlice::from_bytes)
            .collect();
        let mut got = Vec::new();
        while !out.is_empty() {
            let n = std::future::poll_fn(|cx| poll_write_lines(cx, &mut tx, &mut out))
                .await
                .expect("write");
            assert!(n > 0 && n <= 5, "{n}");
            let mut buf = [0u8; 16];
            let r = tokio::io::AsyncReadExt::read(&mut rx, &mut buf)
                .await
                .expect("read");
            got.extend_from_slice(&buf[..r]);
        }
        assert_eq!(got, b"hello\r\nworld\r\n");
    }

    #[tokio::test]
    async fn line_reader_frames_across_reads_and_frees_its_buffer() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        let mut reader = LineReader::new(LineCodec::new(16));
        async fn next(
            reader: &mut LineReader,
            rx: &mut tokio::io::DuplexStream,
        ) -> Option<io::Result<Frame>> {
            std::future::poll_fn(|cx| reader.poll_next(cx, rx)).await
        }
        async fn frame(reader: &mut LineReader, rx: &mut tokio::io::DuplexStream) -> Frame {
            next(reader, rx).await.expect("a frame").expect("no error")
        }
        use tokio::io::AsyncWriteExt as _;
        tx.write_all(b"PING a\r\nPI").await.expect("write");
        assert_eq!(
            frame(&mut reader, &mut rx).await,
            Frame::Line(Bytes::from_static(b"PING a"))
        );
        tx.write_all(b"NG b\n").await.expect("write");
        assert_eq!(
            frame(&mut reader, &mut rx).await,
            Frame::Line(Bytes::from_static(b"PING b"))
        );
        assert_eq!(reader.buf.capacity(), 0, "no buffer kept between lines");
        tx.write_all(&[b'x'; 40]).await.expect("write");
        tx.write_all(b"\nlast").await.expect("write");
        drop(tx);
        assert_eq!(frame(&mut reader, &mut rx).await, Frame::TooLong);
        assert_eq!(
            frame(&mut reader, &mut rx).await,
            Frame::Line(Bytes::from_static(b"last"))
        );
        assert!(next(&mut reader, &mut rx).await.is_none());
    }
}
