//! The cluster's log inside the simulation: a broker host with the guarantees NATS JetStream
//! gives the cluster (`parla_net::cluster`'s module docs) and no more, and [`SimLog`], the
//! [`Log`] a simulated Parla server uses to reach it over simulated TCP.
//!
//! - One order: the broker appends to one sequence, positions from 1.
//! - Durable: the sequence lives in a [`Store`] outside the host, so a crashed and restarted
//!   broker still has it (JetStream's file storage).
//! - Dedupe: a publish whose id was seen before is not stored again; its first position is the
//!   answer (JetStream's duplicate window; here every id is remembered).
//! - Nothing more: an acknowledgement can be lost with its connection (a partition, a crash), so
//!   a publisher retries; a reader's stream ends when its connection breaks, and it reads again
//!   from a position; nothing is delivered to a reader that cannot be reached.
//!
//! Wire format (both ways): `kind: u8, value: u64, len: u32, bytes`. `P` publish (`bytes` = the
//! id's length as u32, the id, the entry) → `A` ack (`value` = position); `S` subscribe from
//! `value` → `M` entry (`value` = position, `bytes` = the entry), one after another, for ever.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream;
use parla_net::clock;
use parla_net::cluster::{Entries, Log, LogError, LogFuture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use turmoil::net::{TcpListener, TcpStream};

/// The broker's port.
pub const BROKER_PORT: u16 = 4222;

/// How long a publish waits for its acknowledgement before it counts as failed (then the
/// server retries, with the same id).
const ACK_WAIT: Duration = Duration::from_secs(2);

/// How often an idle subscription gets a heartbeat, and how many missed ones end it.
const HEARTBEAT: Duration = Duration::from_secs(1);
const MISSED_HEARTBEATS: u32 = 3;

/// What the broker keeps across its restarts.
#[derive(Clone, Default)]
pub struct Store(Arc<Mutex<Kept>>);

#[derive(Default)]
struct Kept {
    entries: Vec<Vec<u8>>,
    ids: HashMap<String, u64>,
}

impl Store {
    /// Appends `bytes` unless `id` was published before; its position either way.
    fn publish(&self, id: String, bytes: Vec<u8>) -> u64 {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&seq) = kept.ids.get(&id) {
            return seq;
        }
        kept.entries.push(bytes);
        let seq = kept.entries.len() as u64;
        kept.ids.insert(id, seq);
        seq
    }

    /// The entry at `seq` (from 1), if there is one yet.
    fn get(&self, seq: u64) -> Option<Vec<u8>> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        kept.entries.get(i).cloned()
    }

    /// How many entries the log holds.
    pub fn len(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len() as u64
    }

    /// Whether the log is empty.
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
            b'S' => {
                let mut next = value.max(1);
                loop {
                    let wake = appended.notified();
                    while let Some(entry) = store.get(next) {
                        write_frame(&mut stream, b'M', next, &entry).await?;
                        next += 1;
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
            _ => return Err(std::io::Error::other("unknown frame")),
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
    /// The connection publishes go over (one at a time), if it is up.
    publisher: tokio::sync::Mutex<Option<TcpStream>>,
    /// Whether the last attempt to reach the broker worked.
    up: AtomicBool,
}

impl SimLog {
    pub fn new(broker: &str) -> SimLog {
        SimLog {
            broker: broker.to_owned(),
            publisher: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(true),
        }
    }

    async fn try_publish(&self, id: &str, bytes: &[u8]) -> std::io::Result<u64> {
        let mut publisher = self.publisher.lock().await;
        if publisher.is_none() {
            *publisher = Some(TcpStream::connect((self.broker.as_str(), BROKER_PORT)).await?);
        }
        let stream = publisher.as_mut().expect("connected above");
        let mut frame = Vec::with_capacity(4 + id.len() + bytes.len());
        frame.extend_from_slice(&(id.len() as u32).to_le_bytes());
        frame.extend_from_slice(id.as_bytes());
        frame.extend_from_slice(bytes);
        let result = clock::timeout(ACK_WAIT, async {
            write_frame(stream, b'P', 0, &frame).await?;
            match read_frame(stream).await? {
                (b'A', seq, _) => Ok(seq),
                _ => Err(std::io::Error::other("not an acknowledgement")),
            }
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no acknowledgement in time")));
        if result.is_err() {
            // Whatever was on the way is lost with the connection.
            *publisher = None;
        }
        result
    }
}

impl Log for SimLog {
    fn publish(&self, id: String, bytes: Vec<u8>) -> LogFuture<'_, u64> {
        Box::pin(async move {
            let result = self.try_publish(&id, &bytes).await;
            self.up.store(result.is_ok(), Ordering::Release);
            result.map_err(|err| LogError(format!("publish to the simulated broker: {err}")))
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
}
