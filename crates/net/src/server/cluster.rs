//! The runtime's side of a cluster (`--cluster`): what this server's connections do is
//! published to the shared [`Log`], and everything the log holds — every server's entries, this
//! one's included — is applied to the core in log order by the [`parla_room::cluster::Replica`].
//!
//! Tasks, beside the usual ones:
//! - the **publisher** takes entries from a queue in the order the connections produced them,
//!   numbers them in batches (one publish for whatever is waiting), and publishes each batch
//!   until it is acknowledged (the same id on every retry: stored once);
//! - the **reader** applies the log from where this server got to, reading again after a break;
//! - the **beat** publishes a sign of life every `beat` (a server silent for three of another's
//!   beats is gone, its users quit everywhere).
//!
//! While the log cannot be reached, lines are refused with a notice (never queued out of
//! sight), and new connections are turned away; what was already queued is published when it
//! comes back, once and in order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use parla_room::ConnId;
use parla_room::cluster::{Batch, Entry};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::shared::Shared;
use crate::clock;
use crate::cluster::Log;

/// What [`super::ServerOptions::cluster`] holds: the log, and how this server shows in it.
#[derive(Clone)]
pub struct ClusterOptions {
    /// The shared log (NATS JetStream: [`crate::cluster::NatsLog`]).
    pub log: Arc<dyn Log>,
    /// This server's name in the cluster (in the reason its users quit with if it dies).
    pub name: String,
    /// How often it says it is alive; a server silent for three of another's beats is gone.
    pub beat: Duration,
    /// Tells this server's hello from others' (random in production).
    pub nonce: u64,
    /// Take a snapshot of the chat every this many entries of the log (inputs: lines,
    /// connections, departures; the server with the lowest number does; 0: never, and the log
    /// is kept whole). A starting server loads the newest and reads only what came after it.
    pub snapshot_every: u64,
    /// Snapshots kept (at least 1); the log keeps only the entries after the oldest of them.
    pub snapshots_kept: usize,
    /// Set, with the reason, if this server cannot be one of the cluster (it runs with other
    /// chat settings; the log no longer holds what it needs and no snapshot it can read does);
    /// `run` then returns, and the caller should exit with an error that says why.
    pub refused: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("name", &self.name)
            .field("beat", &self.beat)
            .field("snapshot_every", &self.snapshot_every)
            .field("snapshots_kept", &self.snapshots_kept)
            .finish_non_exhaustive()
    }
}

/// A snapshot taken: its log position, and the snapshot to finish and store.
type Taken = (u64, parla_room::cluster::Snapshot);

/// The shared state of the cluster tasks and the connections.
pub(super) struct Link {
    pub(super) log: Arc<dyn Log>,
    pub(super) name: String,
    beat: Duration,
    queue: mpsc::UnboundedSender<Entry>,
    queued: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Entry>>>,
    /// This server's number once its hello was applied; 0 before, and after it was evicted.
    number: AtomicU64,
    joined: Notify,
    refused: Arc<OnceLock<String>>,
    /// Cancelled when `refused` is set: a server that had joined stops.
    refused_token: CancellationToken,
    snapshot_every: u64,
    snapshots_kept: usize,
    /// Snapshots taken and not yet stored (one at a time: while one is on its way, the next
    /// is skipped).
    taken: mpsc::Sender<Taken>,
    taken_rx: std::sync::Mutex<Option<mpsc::Receiver<Taken>>>,
    /// A beat is queued and not yet in the log: no other is queued behind it (a beat says
    /// "alive now"; a backlog of them, published at once after an outage, would count as
    /// several and could have another server declared gone).
    beat_queued: AtomicBool,
    /// Told when a publish gets through: the log is back, and a reader waiting to retry
    /// reads again at once (a server that just joined learns it before it is missed).
    back: Notify,
}

impl Link {
    pub(super) fn new(options: &ClusterOptions) -> Link {
        let (queue, queued) = mpsc::unbounded_channel();
        let (taken, taken_rx) = mpsc::channel(1);
        Link {
            log: options.log.clone(),
            name: options.name.clone(),
            beat: options.beat,
            queue,
            queued: std::sync::Mutex::new(Some(queued)),
            number: AtomicU64::new(0),
            joined: Notify::new(),
            refused: options.refused.clone(),
            refused_token: CancellationToken::new(),
            snapshot_every: options.snapshot_every,
            snapshots_kept: options.snapshots_kept.max(1),
            taken,
            taken_rx: std::sync::Mutex::new(Some(taken_rx)),
            beat_queued: AtomicBool::new(false),
            back: Notify::new(),
        }
    }

    /// Queues `entry` for the log, behind everything queued before it.
    pub(super) fn publish(&self, entry: Entry) {
        let _ = self.queue.send(entry);
    }

    pub(super) fn number(&self) -> u64 {
        self.number.load(Ordering::Acquire)
    }

    /// Our hello was applied: we are server `number`.
    pub(super) fn joined(&self, number: u64) {
        self.number.store(number, Ordering::Release);
        self.joined.notify_waiters();
        info!(number, name = %self.name, "joined the cluster");
    }

    /// The wait before the next try to say hello or to read the log, after `wait`: twice as
    /// long, but never over a beat (a server back on the log must see its own entries before
    /// the others have beaten three times) nor over 5 s.
    fn next_wait(&self, wait: Duration) -> Duration {
        (wait * 2).min(self.beat).min(Duration::from_secs(5))
    }

    /// We were declared gone: nothing more is published under the old number.
    pub(super) fn evicted(&self) {
        self.number.store(0, Ordering::Release);
    }

    /// This server cannot be one of the cluster, for `why`: `join` gives up, the server stops.
    pub(super) fn refuse(&self, why: String) {
        let _ = self.refused.set(why);
        self.refused_token.cancel();
        self.joined.notify_waiters();
    }

    /// Cancelled once this server cannot be one of the cluster ([`Link::refuse`]).
    pub(super) fn refused_token(&self) -> CancellationToken {
        self.refused_token.clone()
    }

    fn is_refused(&self) -> bool {
        self.refused.get().is_some()
    }

    /// Whether the replica, having applied entries up to `entries` (from `before`), should be
    /// snapshotted by this server: each time the count passes a multiple of `snapshot_every`,
    /// by the live server with the lowest number.
    pub(super) fn snapshot_due(&self, before: u64, replica: &parla_room::cluster::Replica) -> bool {
        let every = self.snapshot_every;
        every > 0
            && replica.entries() / every > before / every
            && replica.number().is_some()
            && replica.servers().first().map(|&(n, _)| n) == replica.number()
    }

    /// Hands a snapshot taken at `position` to the task that stores it; skipped (with a
    /// warning) while the one before is still being stored.
    pub(super) fn offer_snapshot(&self, position: u64, snapshot: parla_room::cluster::Snapshot) {
        if self.taken.try_send((position, snapshot)).is_err() {
            warn!(
                position,
                "skipping a snapshot: the one before is still being stored"
            );
        }
    }

    /// Whether a line may be taken now: the log is reachable and we are in the cluster.
    pub(super) fn ready(&self) -> bool {
        self.number() != 0 && self.log.reachable()
    }

    /// Until this server is in the cluster; `false` if it was refused.
    async fn wait_joined(&self) -> bool {
        loop {
            let joined = self.joined.notified();
            if self.number() != 0 {
                return true;
            }
            if self.is_refused() {
                return false;
            }
            joined.await;
        }
    }
}

/// Publishes `hello` until the log takes it.
async fn say_hello(link: &Link, hello: Vec<u8>, nonce: u64, attempt: u64) {
    let mut wait = Duration::from_millis(100);
    loop {
        match link
            .log
            .publish(format!("hello-{nonce:x}-{attempt}"), hello.clone())
            .await
        {
            Ok(_) => {
                link.back.notify_waiters();
                return;
            }
            Err(err) => {
                warn!(cause = %err, "could not say hello to the cluster; retrying");
                clock::sleep(wait).await;
                wait = link.next_wait(wait);
            }
        }
    }
}

/// Starts the cluster tasks and returns once this server has joined (its hello applied), or
/// when `stop` fires first.
pub(super) async fn join(
    shared: &Arc<Shared>,
    link: &Arc<Link>,
    hello: Vec<u8>,
    nonce: u64,
    stop: &CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> bool {
    info!(name = %link.name, "joining the cluster");
    if !start_from_snapshot(shared, link, stop, false).await {
        return false;
    }
    tasks.spawn(reader(shared.clone(), link.clone(), stop.clone()));
    let taken = link.taken_rx.lock().expect("never poisoned").take();
    if let Some(taken) = taken {
        tasks.spawn(snapshotter(link.clone(), taken, stop.clone()));
    }
    let queued = link.queued.lock().expect("never poisoned").take();
    if let Some(queued) = queued {
        tasks.spawn(publisher(link.clone(), queued));
    }
    tasks.spawn(beat(shared.clone(), link.clone(), stop.clone()));
    tasks.spawn(rejoin(
        shared.clone(),
        link.clone(),
        hello.clone(),
        nonce,
        stop.clone(),
    ));
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        joined = async {
            say_hello(link, hello, nonce, 0).await;
            link.wait_joined().await
        } => joined,
    }
}

/// Says hello again whenever this server was evicted (declared gone while alive: it lost the
/// log for longer than three beats); its connections were closed by then.
async fn rejoin(
    shared: Arc<Shared>,
    link: Arc<Link>,
    hello: Vec<u8>,
    nonce: u64,
    stop: CancellationToken,
) {
    let mut attempt = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = shared.evicted.notified() => {}
        }
        attempt += 1;
        warn!(
            "this server was declared gone by the cluster (it lost NATS too long); joining again"
        );
        say_hello(&link, hello.clone(), nonce, attempt).await;
    }
}

/// Applies the log in order, from the position after the last applied, reading again after a
/// break.
async fn reader(shared: Arc<Shared>, link: Arc<Link>, stop: CancellationToken) {
    let mut wait = Duration::from_millis(100);
    loop {
        let from = shared.applied() + 1;
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            read = link.log.read(from) => read,
        };
        match read {
            Ok(mut entries) => loop {
                let next = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    next = entries.next() => next,
                };
                match next {
                    Some(Ok((seq, bytes))) => {
                        wait = Duration::from_millis(100);
                        if !shared.apply_log(seq, &bytes) {
                            warn!(
                                seq,
                                applied = shared.applied(),
                                "the cluster's log no longer holds the entries this server needs \
                                 next (a snapshot holds what they did): starting over from the \
                                 newest snapshot"
                            );
                            if !start_from_snapshot(&shared, &link, &stop, true).await {
                                return;
                            }
                            break;
                        }
                    }
                    Some(Err(err)) => {
                        warn!(cause = %err, "reading the cluster's log; reading again");
                        break;
                    }
                    None => break,
                }
            },
            Err(err) => warn!(cause = %err, from, "cannot read the cluster's log; retrying"),
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            () = link.back.notified() => {}
            () = clock::sleep(wait) => {}
        }
        wait = link.next_wait(wait);
    }
}

/// Starts the replica from the newest snapshot this server can read (trying older ones if
/// not), retrying while the log is out of reach; `false` if `stop` fired or this server cannot
/// go on. At start-up, with no snapshot stored (or none readable) the log is read from its
/// beginning. `after_gap` (the log's entries this server needs next are gone): one is needed,
/// or this server is refused, with why; and it says hello again afterwards (see
/// [`Shared::start_over`]).
async fn start_from_snapshot(
    shared: &Shared,
    link: &Link,
    stop: &CancellationToken,
    after_gap: bool,
) -> bool {
    let mut wait = Duration::from_millis(100);
    'list: loop {
        let Some(listed) = unless_stopped(stop, link.log.snapshots()).await else {
            return false;
        };
        let positions = match listed {
            Ok(positions) => positions,
            Err(err) => {
                warn!(cause = %err, "cannot list the cluster's snapshots; retrying");
                if unless_stopped(stop, clock::sleep(wait)).await.is_none() {
                    return false;
                }
                wait = link.next_wait(wait);
                continue;
            }
        };
        let mut unreadable = Vec::new();
        for &position in positions.iter().rev() {
            let Some(got) = unless_stopped(stop, link.log.snapshot(position)).await else {
                return false;
            };
            match got {
                // Deleted since the list (a newer one was stored): list again.
                Ok(None) => continue 'list,
                Err(err) => {
                    warn!(position, cause = %err, "cannot read a snapshot; retrying");
                    if unless_stopped(stop, clock::sleep(wait)).await.is_none() {
                        return false;
                    }
                    wait = link.next_wait(wait);
                    continue 'list;
                }
                Ok(Some(bytes)) => match shared.start_over(&bytes, after_gap) {
                    Ok(()) => {
                        info!(
                            position,
                            bytes = bytes.len(),
                            "started from the cluster's snapshot"
                        );
                        return true;
                    }
                    Err(err) => {
                        warn!(position, cause = %err, "cannot start from this snapshot");
                        unreadable.push(format!("at {position}: {err}"));
                    }
                },
            }
        }
        if !after_gap {
            if !positions.is_empty() {
                warn!("no snapshot this server can read; reading the cluster's log from its start");
            }
            return true;
        }
        let why = format!(
            "the cluster's log no longer holds its beginning, and no snapshot of it can be read by \
             this server ({}); run the same Parla version as the running servers",
            if unreadable.is_empty() {
                "none is stored".to_owned()
            } else {
                unreadable.join("; ")
            }
        );
        error!("{why}");
        link.refuse(why);
        return false;
    }
}

/// `future`'s output, or `None` if `stop` fires first.
async fn unless_stopped<T>(
    stop: &CancellationToken,
    future: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => None,
        out = future => Some(out),
    }
}

/// Stores each snapshot taken, keeps the newest `snapshots_kept`, and trims the log to the
/// entries after the oldest kept (a server starting from any of them reads on from there).
async fn snapshotter(link: Arc<Link>, mut taken: mpsc::Receiver<Taken>, stop: CancellationToken) {
    loop {
        let (position, snapshot) = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            next = taken.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        let started = std::time::Instant::now();
        let bytes = match snapshot.finish() {
            Ok(bytes) => bytes,
            Err(err) => {
                warn!(position, cause = %err, "could not serialize a snapshot");
                continue;
            }
        };
        let size = bytes.len();
        info!(position, bytes = size, took = ?started.elapsed(), "serialized a snapshot of the chat");
        if let Err(err) = link.log.put_snapshot(position, bytes).await {
            warn!(position, cause = %err, "could not store a snapshot; the next one will be tried");
            continue;
        }
        info!(position, bytes = size, "stored a snapshot of the chat");
        let stored = match link.log.snapshots().await {
            Ok(stored) => stored,
            Err(err) => {
                warn!(cause = %err, "could not list the snapshots to drop old ones");
                continue;
            }
        };
        let old = stored.len().saturating_sub(link.snapshots_kept);
        for &p in &stored[..old] {
            if let Err(err) = link.log.delete_snapshot(p).await {
                warn!(position = p, cause = %err, "could not delete an old snapshot");
            }
        }
        if let Some(&oldest) = stored.get(old) {
            match link.log.trim(oldest + 1).await {
                Ok(()) => info!(
                    from = oldest + 1,
                    "the cluster's log now starts after the oldest snapshot kept"
                ),
                Err(err) => warn!(cause = %err, "could not trim the cluster's log"),
            }
        }
    }
}

/// Publishes what is queued, in order, a batch at a time; ends after publishing a `Leave`.
async fn publisher(link: Arc<Link>, mut queued: mpsc::UnboundedReceiver<Entry>) {
    /// A batch stays well under NATS's default 1 MB payload limit.
    const MAX_BATCH_BYTES: usize = 256 * 1024;
    let mut origin = 0;
    let mut number = 0;
    while let Some(first) = queued.recv().await {
        let mut entries = vec![first];
        let mut bytes = 0;
        while bytes < MAX_BATCH_BYTES
            && let Ok(more) = queued.try_recv()
        {
            bytes += size(&more);
            entries.push(more);
        }
        if !link.wait_joined().await {
            return;
        }
        let now_origin = link.number();
        if now_origin != origin {
            (origin, number) = (now_origin, 0);
        }
        // Entries of connections from before an eviction are of a server that is gone.
        entries.retain(|e| conn_of(e).is_none_or(|c| c.server() == origin));
        if entries.is_empty() {
            continue;
        }
        let leaving = entries.iter().any(|e| matches!(e, Entry::Leave { .. }));
        let mut beats = entries.iter().any(|e| matches!(e, Entry::Beat { .. }));
        number += 1;
        let mut batch = Batch {
            origin,
            number,
            entries,
        };
        let id = format!("{origin:x}-{number:x}");
        let mut wait = Duration::from_millis(50);
        loop {
            match link.log.publish(id.clone(), batch.encode()).await {
                Ok(_) => {
                    link.back.notify_waiters();
                    if beats {
                        link.beat_queued.store(false, Ordering::Release);
                    }
                    break;
                }
                Err(err) => {
                    warn!(cause = %err, "publishing to the cluster's log; retrying");
                    // A beat that did not get through is stale: "alive" then is not "alive"
                    // when the log takes it, and counted late it could have another server
                    // declared gone. Fresh ones follow once the log is back.
                    if beats {
                        batch.entries.retain(|e| !matches!(e, Entry::Beat { .. }));
                        link.beat_queued.store(false, Ordering::Release);
                        beats = false;
                        if batch.entries.is_empty() {
                            break;
                        }
                    }
                    clock::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        if leaving {
            return;
        }
    }
}

fn conn_of(entry: &Entry) -> Option<ConnId> {
    match entry {
        Entry::Connect { conn, .. }
        | Entry::Line { conn, .. }
        | Entry::LineTooLong { conn, .. }
        | Entry::Disconnect { conn, .. } => Some(*conn),
        Entry::Hello { .. } | Entry::Beat { .. } | Entry::Leave { .. } => None,
    }
}

fn size(entry: &Entry) -> usize {
    32 + match entry {
        Entry::Line { line, .. } => line.len(),
        Entry::Connect { host, .. } => host.len(),
        Entry::Disconnect { reason, .. } | Entry::Leave { reason, .. } => reason.len(),
        _ => 0,
    }
}

/// Says "alive" every `beat`, while in the cluster and the log is in reach.
async fn beat(shared: Arc<Shared>, link: Arc<Link>, stop: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = clock::sleep(link.beat) => {}
        }
        // Not while the log is out of reach, nor behind a beat still on its way.
        if link.ready() && !link.beat_queued.swap(true, Ordering::AcqRel) {
            link.publish(Entry::Beat { now: shared.now() });
        }
    }
}
