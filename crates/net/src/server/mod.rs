//! The server runtime: accepts connections on any [`Listener`], frames their lines, feeds the
//! sans-IO core, and moves the bytes it decides on. This module owns the options, the accept
//! loop and shutdown; the layers below it are:
//!
//! - `shared`: the core behind its lock, carrying out the core's outputs, and the timer task;
//!   also where the panic policy is enforced (its module doc states the policy).
//! - `outbox`: the bounded per-client outbox and the shared append-only blocks of lines.
//! - `connection`: the per-connection I/O loop.
//! - `flood`: input flood control, a token bucket per connection.
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
//!   each connection's `select!`; our core is shared, so its timers are too). `run` watches it:
//!   if it ends while the server runs, the server shuts down and `run` panics.
//! - Each outbox is bounded in bytes (the SendQ). A client that cannot keep up is disconnected
//!   with `SendQ exceeded`; the room never waits for it and memory never grows without bound.
//! - Shutdown: the caller's token fires → the core says goodbye to everyone → the connection tasks
//!   flush within `shutdown_grace` (each has its own flush deadline once closed) → `run`
//!   returns.

mod admission;
mod cluster;
mod connection;
mod flood;
mod memory;
mod outbox;
mod shared;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parla_room::{ConnId, Millis, Output, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug_span, error, info, warn};

use crate::clock;
use crate::codec::DEFAULT_MAX_LINE;
use crate::transport::Listener;
use admission::{Admission, Refusal};
use connection::Connection;
use outbox::Outbox;
use shared::{Shared, timer_task};

pub use admission::Limits;
pub use cluster::ClusterOptions;
pub use flood::FloodControl;
pub use memory::Trim;

/// Watches the server from inside: what the core decided, as it decided it. The simulation's
/// invariant checkers use it; it costs one branch per output when absent.
pub trait Observer: Send + Sync + 'static {
    /// A connection was accepted and given `conn` (at `now` on the core's clock).
    fn connected(&self, now: Millis, conn: ConnId, peer: SocketAddr) {
        let _ = (now, conn, peer);
    }
    /// The runtime is about to give the core `input` (at `now` on the core's clock), under the
    /// core's lock: the observer sees every input in the one order the core handles them.
    fn input(&self, now: Millis, input: Input<'_>) {
        let _ = (now, input);
    }
    /// The core produced `output` (before the runtime carries it out).
    fn output(&self, output: &Output) {
        let _ = output;
    }
    /// The core handled an input; `core` is its new state.
    fn changed(&self, core: &Server) {
        let _ = core;
    }
    /// In a cluster: the core applied the log's entry at position `seq`; `core` is its state
    /// there (the same on every server at the same position).
    fn applied(&self, seq: u64, core: &Server) {
        let _ = (seq, core);
    }
}

/// What the runtime tells the core (besides a new connection, [`Observer::connected`]).
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A line from `conn`, without its line ending.
    Line {
        /// Who sent it.
        conn: ConnId,
        /// Its bytes.
        line: &'a [u8],
    },
    /// `conn` sent a line longer than the codec accepts (the line was discarded).
    LineTooLong {
        /// Who sent it.
        conn: ConnId,
    },
    /// `conn` is gone (its socket closed or failed, or its SendQ overflowed).
    Disconnect {
        /// Who left.
        conn: ConnId,
        /// Why, as its room will be told.
        reason: &'a str,
    },
    /// The core's timer came due.
    Timeout,
    /// The server is shutting down.
    Shutdown,
}

/// An optional [`Observer`] in [`ServerOptions`].
#[derive(Clone, Default)]
pub struct ObserverSlot(pub Option<Arc<dyn Observer>>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        slot(f, self.0.is_some(), "Observer")
    }
}

/// How an optional trait object in [`ServerOptions`] shows in `Debug`.
fn slot(f: &mut std::fmt::Formatter<'_>, some: bool, what: &str) -> std::fmt::Result {
    match some {
        true => write!(f, "Some({what})"),
        false => f.write_str("None"),
    }
}

/// Where the core keeps history ([`ServerOptions::history`]): shared, so that it outlives one
/// run of the server (a simulated restart finds it; `parla-server` syncs it at exit). Empty:
/// the core's own in-memory history.
#[derive(Clone, Default)]
pub struct HistorySlot(pub Option<Arc<std::sync::Mutex<dyn parla_room::history::History>>>);

impl std::fmt::Debug for HistorySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        slot(f, self.0.is_some(), "History")
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
    /// Input flood control; `None` disables it (benchmarks). Shared by the connections of one
    /// address (see [`Limits`]).
    pub flood: Option<FloodControl>,
    /// Per-address limits on connections.
    pub limits: Limits,
    /// Bytes of replies to a client that cost it one line of flood credit (a `WHO` of a big
    /// room costs more than a `PING`).
    pub reply_bytes_per_token: usize,
    /// Longest input line accepted; longer ones are answered with `417`.
    pub max_line: usize,
    /// How long queued output may take to flush at shutdown (and after a close).
    pub shutdown_grace: Duration,
    /// Wall-clock milliseconds since the Unix epoch when `run` starts; the core's clock counts
    /// from here on `tokio::time`. The binary passes the real time, a simulation a fixed one.
    pub epoch_millis: u64,
    /// Sees every decision of the core (the simulation's checkers); usually empty.
    pub observer: ObserverSlot,
    /// Where history is kept; empty: in memory, for this run only.
    pub history: HistorySlot,
    /// A panic under the core's lock aborts the process (the panic policy; `true` in every
    /// real server). A simulation turns it off so that such a panic fails the seed that found
    /// it instead of ending the whole exploration: the panic then unwinds like any other, and
    /// the half-changed core is used as is (only ever inside a run already failed).
    pub abort_on_core_panic: bool,
    /// Gives memory the allocator holds free back to the system (after mass disconnects);
    /// `None` never does (tests, the simulation).
    pub trim: Option<Trim>,
    pub cluster: Option<ClusterOptions>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            core: parla_room::Config::default(),
            max_clients: 10_000,
            sendq_bytes: 512 * 1024,
            flood: Some(FloodControl::default()),
            limits: Limits::default(),
            reply_bytes_per_token: 8192,
            max_line: DEFAULT_MAX_LINE,
            shutdown_grace: Duration::from_secs(5),
            epoch_millis: 0,
            observer: ObserverSlot::default(),
            history: HistorySlot::default(),
            abort_on_core_panic: true,
            trim: None,
            cluster: None,
        }
    }
}

/// Serves IRC on `listener` until `shutdown` is cancelled, then says goodbye to every client,
/// lets their output drain for at most `options.shutdown_grace`, and returns.
///
/// # Panics
/// If the core's timer task ends while the server runs (a bug): the clients are told as at a
/// shutdown, then `run` panics with the timer task's panic. (A panic inside the core aborts the
/// process instead; see the panic policy in `server/shared.rs`.)
pub async fn run<L: Listener>(listener: L, options: ServerOptions, shutdown: CancellationToken) {
    let trim_stop = CancellationToken::new();
    let trimmer = options
        .trim
        .map(|trim| tokio::spawn(memory::trim_task(trim, trim_stop.clone())));
    serve(listener, options, shutdown, |shared, stop| {
        tokio::spawn(timer_task(shared, stop))
    })
    .await;
    trim_stop.cancel();
    if let Some(trimmer) = trimmer {
        let _ = trimmer.await;
    }
}

/// [`run`], with the timer task started by `spawn_timer` (tests start one that dies).
async fn serve<L: Listener>(
    mut listener: L,
    options: ServerOptions,
    shutdown: CancellationToken,
    spawn_timer: impl FnOnce(Arc<Shared>, CancellationToken) -> JoinHandle<()>,
) {
    let shared = Arc::new(Shared::new(&options));
    let limit = Arc::new(Semaphore::new(options.max_clients));
    let admission = Admission::new(options.limits.clone(), options.flood);
    let mut refusals = RefusalLog::default();
    let tracker = TaskTracker::new();
    let timer_stop = CancellationToken::new();
    let mut timer = spawn_timer(shared.clone(), timer_stop.clone());
    let cluster_stop = CancellationToken::new();
    let cluster_tasks = TaskTracker::new();
    if let (Some(link), Some(cluster)) = (&shared.cluster, &options.cluster) {
        let hello = shared.hello(&cluster.name);
        let join = cluster::join(
            &shared,
            link,
            hello,
            cluster.nonce,
            &cluster_stop,
            &cluster_tasks,
        );
        tokio::pin!(join);
        // Joining takes a moment: who connects meanwhile waits for it. But while the log cannot
        // be reached, who connects is told so at once, rather than left waiting for an answer
        // that may be minutes away.
        let joined = loop {
            let refusing = !link.log.reachable();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break false,
                joined = &mut join => break joined,
                // Looks at the log again.
                _ = clock::sleep(Duration::from_millis(250)) => {}
                accepted = listener.accept(), if refusing => match accepted {
                    Ok((stream, peer)) => {
                        warn!(%peer, "not yet joined the cluster's log; refusing connection");
                        tracker.spawn(refuse(stream, UNREACHABLE.to_owned()));
                    }
                    Err(err) => {
                        warn!(cause = %err, "accept failed; retrying in 100 ms");
                        clock::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        };
        if !joined {
            cluster_stop.cancel();
            timer_stop.cancel();
            return;
        }
    }
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "listening");
    }

    // In a cluster: fires if this server finds it can no longer be one of it (it fell behind
    // a log that no longer holds what it needs); it then shuts down as on Ctrl-C.
    let cluster_refused =
        (shared.cluster.as_ref()).map_or_else(CancellationToken::new, |l| l.refused_token());
    let timer_ended = loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break None,
            _ = cluster_refused.cancelled() => break None,
            // Never ready while the server is well: the timer task only returns when told to.
            ended = &mut timer => break Some(ended),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Usually out of file descriptors: back off rather than spin.
                warn!(cause = %err, "accept failed; retrying in 100 ms");
                clock::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Some(link) = &shared.cluster
            && !link.ready()
        {
            warn!(%peer, "cannot reach the cluster's log; refusing connection");
            tracker.spawn(refuse(stream, UNREACHABLE.to_owned()));
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, max = options.max_clients, "server full; refusing connection");
            let line = format!(
                "ERROR :Closing Link: the server is full ({} clients); try again later\r\n",
                options.max_clients
            );
            tracker.spawn(refuse(stream, line));
            continue;
        };
        let now = tokio::time::Instant::now();
        let ticket = match Admission::admit(&admission, peer.ip(), shared.registering(), now) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                refusals.note(peer, refusal, now);
                tracker.spawn(refuse(stream, refusal.error_line()));
                continue;
            }
        };
        let outbox = Arc::new(Outbox::default());
        let conn = shared.connect(peer, outbox.clone());
        // At debug level only: an enabled span costs memory per connection for its whole life.
        let span = debug_span!("conn", %conn, %peer);
        let task = Connection {
            shared: shared.clone(),
            outbox,
            conn,
            ticket,
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
    };

    if let Some(ended) = &timer_ended {
        error!(cause = %timer_end_cause(ended), "the timer task ended; shutting the server down");
    }
    info!("shutting down: telling every client");
    shared.feed(Input::Shutdown);
    if let Some(link) = &shared.cluster {
        // The others see this server's users quit at once, with the reason they were given.
        link.publish(parla_room::cluster::Entry::Leave {
            now: shared.now(),
            reason: "Server shutting down".to_owned(),
        });
        cluster_tasks.close();
        cluster_stop.cancel();
        if clock::timeout(options.shutdown_grace, cluster_tasks.wait())
            .await
            .is_err()
        {
            warn!(
                "could not tell the cluster this server left; its users will quit when it is found silent"
            );
        }
    }
    tracker.close();
    if clock::timeout(options.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        // Each of them closes at its own flush deadline (the grace period after its close).
        warn!(grace = ?options.shutdown_grace, "some clients did not take their output in time; closing them");
        tracker.wait().await;
    }
    timer_stop.cancel();
    info!("shut down");
    if let Some(ended) = timer_ended {
        timer_died(ended);
    }
}

/// What ended the timer task, for the log.
fn timer_end_cause(ended: &Result<(), JoinError>) -> String {
    match ended {
        Ok(()) => "it returned".to_owned(),
        Err(err) => err.to_string(),
    }
}

/// A server without its timer task would never ping anyone nor time anyone out: once the
/// clients have been told, `run` fails the way the timer task did (with its panic, if it
/// panicked), so that the caller sees it (the binary exits non-zero).
fn timer_died(ended: Result<(), JoinError>) -> ! {
    match ended {
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        ended => panic!(
            "the server's timer task ended while the server ran ({})",
            timer_end_cause(&ended)
        ),
    }
}

/// Logs refused connections without letting a flood of them flood the log: the first at once,
/// then a count at most every ten seconds.
#[derive(Default)]
struct RefusalLog {
    last: Option<tokio::time::Instant>,
    unlogged: usize,
}

impl RefusalLog {
    fn note(&mut self, peer: SocketAddr, refusal: Refusal, now: tokio::time::Instant) {
        self.unlogged += 1;
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10))
        {
            warn!(%peer, ?refusal, refused = self.unlogged, "refusing connections over the per-address limits");
            self.last = Some(now);
            self.unlogged = 0;
        }
    }
}

/// The answer to a connection while this server cannot reach its cluster's log.
const UNREACHABLE: &str = "ERROR :Closing Link: this server cannot reach the chat network right \
                           now; try again in a moment, or another server\r\n";

/// Tells a refused connection why (`line`, an `ERROR`), then closes it.
async fn refuse<S: crate::transport::Stream>(mut stream: S, line: String) {
    let _ = clock::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Closing with what the client sent still unread would reset the connection, and a
        // reset can throw away the ERROR before the client reads it: read to its end first.
        let mut sink = [0u8; 512];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Tcp, Transport};
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpStream;

    const WAIT: Duration = Duration::from_secs(10);

    /// Serves with the timer task `timer` instead of the real one; returns the server's task and
    /// a client, once registered.
    async fn serve_with_timer(
        timer: impl Future<Output = ()> + Send + 'static,
    ) -> (JoinHandle<()>, BufReader<TcpStream>) {
        let listener = Tcp
            .bind((Ipv4Addr::LOCALHOST, 0).into())
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(
            listener,
            ServerOptions::default(),
            CancellationToken::new(),
            move |_, _| tokio::spawn(timer),
        ));
        let mut client = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
        client
            .get_mut()
            .write_all(b"NICK probe\r\nUSER probe 0 * :probe\r\n")
            .await
            .expect("write");
        let mut line = String::new();
        while !line.contains(" 001 probe ") {
            line.clear();
            tokio::time::timeout(WAIT, client.read_line(&mut line))
                .await
                .expect("registered in time")
                .expect("read");
        }
        (server, client)
    }

    /// Every line the client gets until the server closes the connection.
    async fn lines_to_eof(client: &mut BufReader<TcpStream>) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, client.read_line(&mut line))
                .await
                .expect("the server closes the connection in time")
                .expect("read");
            if n == 0 {
                return lines;
            }
            lines.push(line.trim_end().to_owned());
        }
    }

    /// Panic policy, third rule: a timer task that dies while the server runs (here one
    /// planted to panic once a client is in) is fatal. The clients are told as at a shutdown,
    /// and the server fails with the timer's panic instead of serving on without pings or
    /// timeouts.
    #[tokio::test]
    async fn a_timer_task_that_panics_shuts_the_server_down_and_fails_it() {
        let (die, dead) = tokio::sync::oneshot::channel::<()>();
        let (server, mut client) = serve_with_timer(async move {
            let _ = dead.await;
            panic!("planted: the timer task dies");
        })
        .await;
        die.send(()).expect("the timer task waits");
        let lines = lines_to_eof(&mut client).await;
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(":Server is shutting down. Goodbye!")),
            "{lines:?}"
        );
        assert_eq!(
            lines.last().map(String::as_str),
            Some("ERROR :Server shutting down")
        );
        let failed = tokio::time::timeout(WAIT, server)
            .await
            .expect("the server ends")
            .expect_err("the server fails");
        let panic = failed.into_panic();
        assert_eq!(
            panic.downcast_ref::<&str>(),
            Some(&"planted: the timer task dies"),
            "the timer's own panic"
        );
    }

    /// The same for a timer task that returns without panicking: the server does not carry on.
    #[tokio::test]
    async fn a_timer_task_that_returns_fails_the_server_too() {
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        let (server, mut client) = serve_with_timer(async move {
            let _ = ended.await;
        })
        .await;
        end.send(()).expect("the timer task waits");
        let lines = lines_to_eof(&mut client).await;
        assert_eq!(
            lines.last().map(String::as_str),
            Some("ERROR :Server shutting down"),
            "{lines:?}"
        );
        let failed = tokio::time::timeout(WAIT, server)
            .await
            .expect("the server ends")
            .expect_err("the server fails");
        let panic = failed.into_panic();
        let message = panic.downcast_ref::<String>().expect("a formatted panic");
        assert!(
            message.contains("timer task ended while the server ran"),
            "{message}"
        );
    }
}
