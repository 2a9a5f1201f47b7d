//! The cluster's log inside the simulation: a broker host with the guarantees NATS JetStream
//! gives the cluster (`parla_net::cluster`'s module docs) and no more, and [`SimLog`], the
//! [`Log`] a simulated Parla server uses to reach it over simulated TCP.
//!
//! - One order: the broker appends to one sequence, positions from 1.
//! - Durable: the sequence, the snapshots and the trim point live in a [`Store`] outside the
//!   host, so a crashed and restarted broker still has them (JetStream's file storage, and the
//!   object store beside the stream).
//! - Dedupe: a publish whose id was seen before is not stored again; its first position is the
//!   answer (JetStream's duplicate window; here every id is remembered, even once its entry is
//!   trimmed).
//! - Snapshots: at most one per position (a put replaces the one there), listed in ascending
//!   order; a delete of one that is not there does nothing (the object store `NatsLog` keeps
//!   them in).
//! - Trim: the entries before the trim point are gone for good (their memory freed). A reader
//!   from an earlier position starts at the first entry kept, told its real position, so it
//!   sees the jump; one reading there when the trim comes still gets what was already on its
//!   way, then jumps (a JetStream consumer's buffered messages). Positions are never reused: a
//!   trim past the end drops every entry, and the next publish still gets the next position
//!   (`NatsLog::trim` makes sure of it: JetStream's purge alone would jump to the trim point).
//! - Nothing more: an answer can be lost with its connection (a partition, a crash), so a
//!   publisher retries; a reader's stream ends when its connection breaks, and it reads again
//!   from a position; nothing is delivered to a reader that cannot be reached.
//!
//! Wire format (both ways): `kind: u8, value: u64, len: u32, bytes`. Requests, each answered by
//! one `A` on the same connection:
//! - `P` publish (`bytes` = the id's length as u32, the id, the entry) → `A` (`value` = the
//!   entry's position);
//! - `N` put a snapshot (`value` = its position, `bytes` = the snapshot) → `A`;
//! - `L` list the snapshots → `A` (`bytes` = their positions, ascending, a u64 each);
//! - `G` get a snapshot (`value` = its position) → `A` (`value` = 1 and `bytes` = the snapshot
//!   if there is one, `value` = 0 if not);
//! - `D` delete a snapshot (`value` = its position) → `A`;
//! - `T` trim (`value` = the first position to keep) → `A`.
//!
//! And `S` subscribe from `value` → `M` entry (`value` = position, `bytes` = the entry), one
//! after another, for ever, with `H` heartbeats (`value` = the next position) while idle.
//! Integers are little-endian.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream;
use parla_net::clock;
use parla_net::cluster::{Entries, Log, LogError, LogFuture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use turmoil::net::{TcpListener, TcpStream};

/// The broker's port.
pub const BROKER_PORT: u16 = 4222;

/// How long a request (a publish, a snapshot operation, a trim) waits for its answer, connecting
/// included, before it counts as failed (then the server retries a publish, with the same id).
const ACK_WAIT: Duration = Duration::from_secs(2);

/// How often an idle subscription gets a heartbeat, and how many missed ones end it.
const HEARTBEAT: Duration = Duration::from_secs(1);
const MISSED_HEARTBEATS: u32 = 3;

/// What the broker keeps across its restarts.
#[derive(Clone, Default)]
pub struct Store(Arc<Mutex<Kept>>);

#[derive(Default)]
struct Kept {
    /// The entries kept, the first at position `trimmed + 1`.
    entries: VecDeque<Vec<u8>>,
    /// How many positions the trims dropped: the entries before `trimmed + 1` are gone.
    trimmed: u64,
    /// Each id published and the position it got (remembered for ever: the dedupe window).
    ids: HashMap<String, u64>,
    /// The snapshots by their positions.
    snapshots: BTreeMap<u64, Vec<u8>>,
}

impl Kept {
    /// The highest position so far (0 before the first publish); trimmed ones count.
    fn last(&self) -> u64 {
        self.trimmed + self.entries.len() as u64
    }

    /// The entry at `seq`, if it is kept.
    fn entry(&self, seq: u64) -> Option<&Vec<u8>> {
        let i = usize::try_from(seq.checked_sub(self.trimmed + 1)?).ok()?;
        self.entries.get(i)
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `bytes` unless `id` was published before; its position either way.
    fn publish(&self, id: String, bytes: Vec<u8>) -> u64 {
        let mut kept = self.lock();
        if let Some(&seq) = kept.ids.get(&id) {
            return seq;
        }
        kept.entries.push_back(bytes);
        let seq = kept.last();
        kept.ids.insert(id, seq);
        seq
    }

    /// The entry at `seq` (from 1), if there is one yet and it was not trimmed.
    pub fn get(&self, seq: u64) -> Option<Vec<u8>> {
        self.lock().entry(seq).cloned()
    }

    /// The first entry kept at `seq` or after, with its position: what a reader at `seq` gets
    /// next (past the trim point if `seq` is before it), if there is one yet.
    fn next_from(&self, seq: u64) -> Option<(u64, Vec<u8>)> {
        let kept = self.lock();
        let seq = seq.max(kept.trimmed + 1);
        kept.entry(seq).map(|entry| (seq, entry.clone()))
    }

    /// Drops the entries before position `before` for good and frees them. Past the end it
    /// drops them all and no more: the next publish still gets the next position.
    fn trim(&self, before: u64) {
        let mut kept = self.lock();
        let behind = before.saturating_sub(kept.trimmed + 1);
        let dropped =
            usize::try_from(behind).map_or(kept.entries.len(), |n| n.min(kept.entries.len()));
        kept.entries.drain(..dropped);
        kept.trimmed += dropped as u64;
    }

    /// Stores `bytes` as the snapshot at `position`, replacing one there before.
    fn put_snapshot(&self, position: u64, bytes: Vec<u8>) {
        self.lock().snapshots.insert(position, bytes);
    }

    /// The positions of the stored snapshots, ascending.
    pub fn snapshots(&self) -> Vec<u64> {
        self.lock().snapshots.keys().copied().collect()
    }

    /// The snapshot at `position`, if there is one.
    fn snapshot(&self, position: u64) -> Option<Vec<u8>> {
        self.lock().snapshots.get(&position).cloned()
    }

    /// Deletes the snapshot at `position`, if there is one.
    fn delete_snapshot(&self, position: u64) {
        self.lock().snapshots.remove(&position);
    }

    /// The highest position so far (positions are never reused: trimmed ones still count).
    pub fn len(&self) -> u64 {
        self.lock().last()
    }

    /// Whether nothing was ever published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The broker host's program: serves `store` on [`BROKER_PORT`] until the host is crashed.
pub async fn broker(store: Store) -> turmoil::Result {
    let listener =
        TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, BROKER_PORT))).await?;
    let appended = Arc::new(Notify::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let (store, appended) = (store.clone(), appended.clone());
        tokio::spawn(async move {
            let _ = serve(stream, store, appended).await;
        });
    }
}

async fn serve(mut stream: TcpStream, store: Store, appended: Arc<Notify>) -> std::io::Result<()> {
    loop {
        let (kind, value, bytes) = read_frame(&mut stream).await?;
        match kind {
            b'P' => {
                let (id, entry) = split_publish(&bytes)?;
                let seq = store.publish(id, entry);
                appended.notify_waiters();
                write_frame(&mut stream, b'A', seq, &[]).await?;
            }
            b'N' => {
                store.put_snapshot(value, bytes);
                write_frame(&mut stream, b'A', 0, &[]).await?;
            }
            b'L' => {
                let positions: Vec<u8> = (store.snapshots().iter())
                    .flat_map(|position| position.to_le_bytes())
                    .collect();
                write_frame(&mut stream, b'A', 0, &positions).await?;
            }
            b'G' => match store.snapshot(value) {
                Some(snapshot) => write_frame(&mut stream, b'A', 1, &snapshot).await?,
                None => write_frame(&mut stream, b'A', 0, &[]).await?,
            },
            b'D' => {
                store.delete_snapshot(value);
                write_frame(&mut stream, b'A', 0, &[]).await?;
            }
            b'T' => {
                // An open subscription needs no wake-up: one waiting has delivered up to the
                // end, which a trim never passes; one still delivering skips to the first
                // entry kept with its next step.
                store.trim(value);
                write_frame(&mut stream, b'A', 0, &[]).await?;
            }
            b'S' => {
                let mut next = value.max(1);
                loop {
                    let wake = appended.notified();
                    while let Some((seq, entry)) = store.next_from(next) {
                        write_frame(&mut stream, b'M', seq, &entry).await?;
                        next = seq + 1;
                    }
                    // A heartbeat when idle: a reader cut off by a partition (whose stream
                    // then stays silent for ever) notices and reads again (as JetStream's
                    // ordered consumers do with their idle heartbeats).
                    tokio::select! {
                        biased;
                        _ = wake => {}
                        _ = clock::sleep(HEARTBEAT) => {
                            write_frame(&mut stream, b'H', next, &[]).await?;
                        }
                    }
                }
            }
            other => {
                return Err(std::io::Error::other(format!(
                    "unknown request kind {:?}",
                    other as char
                )));
            }
        }
    }
}

fn split_publish(bytes: &[u8]) -> std::io::Result<(String, Vec<u8>)> {
    let bad = || std::io::Error::other("bad publish frame");
    let len = u32::from_le_bytes(
        bytes
            .get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let end = 4 + len as usize;
    let id = std::str::from_utf8(bytes.get(4..end).ok_or_else(bad)?).map_err(|_| bad())?;
    Ok((id.to_owned(), bytes[end..].to_vec()))
}

async fn write_frame(
    stream: &mut TcpStream,
    kind: u8,
    value: u64,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(13 + bytes.len());
    frame.push(kind);
    frame.extend_from_slice(&value.to_le_bytes());
    frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame).await
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, u64, Vec<u8>)> {
    let mut head = [0u8; 13];
    stream.read_exact(&mut head).await?;
    let value = u64::from_le_bytes(head[1..9].try_into().expect("eight bytes"));
    let len = u32::from_le_bytes(head[9..13].try_into().expect("four bytes")) as usize;
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).await?;
    Ok((head[0], value, bytes))
}

/// A simulated server's way to the broker host `broker`.
pub struct SimLog {
    broker: String,
    /// The connection requests (publishes, snapshot operations, trims) go over, one at a time,
    /// if it is up.
    requests: tokio::sync::Mutex<Option<TcpStream>>,
    /// Whether the last attempt to reach the broker worked.
    up: AtomicBool,
}

impl SimLog {
    pub fn new(broker: &str) -> SimLog {
        SimLog {
            broker: broker.to_owned(),
            requests: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(true),
        }
    }

    /// Sends one request and waits for its answer (`value`, `bytes`), at most [`ACK_WAIT`] in
    /// all, connecting first if need be (a connection to a crashed broker can hang until it is
    /// back, and the caller must hear at once that the broker is out of reach).
    async fn try_request(
        &self,
        kind: u8,
        value: u64,
        bytes: &[u8],
    ) -> std::io::Result<(u64, Vec<u8>)> {
        let mut requests = self.requests.lock().await;
        let result = clock::timeout(ACK_WAIT, async {
            if requests.is_none() {
                *requests = Some(TcpStream::connect((self.broker.as_str(), BROKER_PORT)).await?);
            }
            let stream = requests.as_mut().expect("connected above");
            write_frame(stream, kind, value, bytes).await?;
            match read_frame(stream).await? {
                (b'A', value, bytes) => Ok((value, bytes)),
                (other, _, _) => Err(std::io::Error::other(format!(
                    "{:?} instead of an answer",
                    other as char
                ))),
            }
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no answer in time")));
        if result.is_err() {
            // Whatever was on the way is lost with the connection.
            *requests = None;
        }
        result
    }

    /// [`SimLog::try_request`], noting whether the broker was reached; `what` failed if not.
    async fn request(
        &self,
        what: &str,
        kind: u8,
        value: u64,
        bytes: &[u8],
    ) -> Result<(u64, Vec<u8>), LogError> {
        let result = self.try_request(kind, value, bytes).await;
        self.up.store(result.is_ok(), Ordering::Release);
        result.map_err(|err| LogError(format!("{what} on the simulated broker: {err}")))
    }
}

impl Log for SimLog {
    fn publish(&self, id: String, bytes: Vec<u8>) -> LogFuture<'_, u64> {
        Box::pin(async move {
            let mut frame = Vec::with_capacity(4 + id.len() + bytes.len());
            frame.extend_from_slice(&(id.len() as u32).to_le_bytes());
            frame.extend_from_slice(id.as_bytes());
            frame.extend_from_slice(&bytes);
            let (seq, _) = self.request("publishing", b'P', 0, &frame).await?;
            Ok(seq)
        })
    }

    fn read(&self, from: u64) -> LogFuture<'_, Entries> {
        Box::pin(async move {
            let connect = TcpStream::connect((self.broker.as_str(), BROKER_PORT));
            let mut stream = clock::timeout(ACK_WAIT, connect)
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("no answer in time")))
                .map_err(|err| {
                    self.up.store(false, Ordering::Release);
                    LogError(format!("reach the simulated broker: {err}"))
                })?;
            write_frame(&mut stream, b'S', from, &[])
                .await
                .map_err(|err| LogError(format!("subscribe: {err}")))?;
            self.up.store(true, Ordering::Release);
            let entries = stream::unfold(Some(stream), |stream| async move {
                let mut stream = stream?;
                loop {
                    let frame =
                        clock::timeout(HEARTBEAT * MISSED_HEARTBEATS, read_frame(&mut stream))
                            .await;
                    return match frame {
                        Ok(Ok((b'M', seq, bytes))) => Some((Ok((seq, bytes)), Some(stream))),
                        Ok(Ok((b'H', _, _))) => continue,
                        Ok(Ok(_)) => Some((Err(LogError("unexpected frame".into())), None)),
                        Ok(Err(err)) => Some((Err(LogError(format!("reading: {err}"))), None)),
                        Err(_) => {
                            Some((Err(LogError("no heartbeat from the broker".into())), None))
                        }
                    };
                }
            });
            Ok(Box::pin(entries) as Entries)
        })
    }

    fn reachable(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn put_snapshot(&self, position: u64, bytes: Vec<u8>) -> LogFuture<'_, ()> {
        Box::pin(async move {
            let what = format!("storing the snapshot at {position}");
            self.request(&what, b'N', position, &bytes).await?;
            Ok(())
        })
    }

    fn snapshots(&self) -> LogFuture<'_, Vec<u64>> {
        Box::pin(async move {
            let (_, bytes) = self.request("listing the snapshots", b'L', 0, &[]).await?;
            if bytes.len() % 8 != 0 {
                return Err(LogError(format!(
                    "listing the snapshots on the simulated broker: {} bytes are not whole \
                     positions",
                    bytes.len()
                )));
            }
            let positions = bytes
                .chunks_exact(8)
                .map(|position| u64::from_le_bytes(position.try_into().expect("eight bytes")));
            Ok(positions.collect())
        })
    }

    fn snapshot(&self, position: u64) -> LogFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let what = format!("reading the snapshot at {position}");
            let (found, bytes) = self.request(&what, b'G', position, &[]).await?;
            Ok((found == 1).then_some(bytes))
        })
    }

    fn delete_snapshot(&self, position: u64) -> LogFuture<'_, ()> {
        Box::pin(async move {
            let what = format!("deleting the snapshot at {position}");
            self.request(&what, b'D', position, &[]).await?;
            Ok(())
        })
    }

    fn trim(&self, before: u64) -> LogFuture<'_, ()> {
        Box::pin(async move {
            let what = format!("trimming the log before {before}");
            self.request(&what, b'T', before, &[]).await?;
            Ok(())
        })
    }
}
