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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use parla_room::ConnId;
use parla_room::cluster::{Batch, Entry};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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
    /// Set if the cluster refused this server (it runs with other chat settings); `run` then
    /// returns at once, and the caller should exit with an error.
    pub refused: Arc<AtomicBool>,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("name", &self.name)
            .field("beat", &self.beat)
            .finish_non_exhaustive()
    }
}

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
    refused: Arc<AtomicBool>,
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
        Link {
            log: options.log.clone(),
            name: options.name.clone(),
            beat: options.beat,
            queue,
            queued: std::sync::Mutex::new(Some(queued)),
            number: AtomicU64::new(0),
            joined: Notify::new(),
            refused: options.refused.clone(),
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

    /// Our hello was refused (other settings than the cluster's): `join` gives up.
    pub(super) fn refused(&self) {
        self.refused.store(true, Ordering::Release);
        self.joined.notify_waiters();
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
            if self.refused.load(Ordering::Acquire) {
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
    tasks.spawn(reader(shared.clone(), link.clone(), stop.clone()));
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
    info!(name = %link.name, "joining the cluster");
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
                        shared.apply_log(seq, &bytes);
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
