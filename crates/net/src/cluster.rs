//! The cluster's shared log (issue 15; the design is in `docs/cluster.md`, the replica that
//! applies it in `parla_room::cluster`): a [`Log`] every server of a cluster publishes its
//! inputs to and reads everyone's from, in one order. [`NatsLog`] is a NATS JetStream stream;
//! the simulation has its own broker behind the same trait.
//!
//! What a log must guarantee (what JetStream gives, and all the servers rely on):
//! - one order: every reader sees the same entries at the same positions, counted from 1;
//! - a published entry that was acknowledged is in the log for good (within its retention);
//! - a publish retried with the same id within the dedupe window is stored once (an ack lost on
//!   the way back does not duplicate an entry; the replica also drops a batch seen before);
//! - a reader resumes from any position after a break.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::{Stream, StreamExt};

/// A log operation that failed: the log could not be reached, or refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LogError(pub String);

/// Entries of the log from some position on: `(position, bytes)`, in order.
pub type Entries = Pin<Box<dyn Stream<Item = Result<(u64, Vec<u8>), LogError>> + Send>>;

/// A boxed future of the log's (the trait is used as `dyn Log`).
pub type LogFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LogError>> + Send + 'a>>;

/// The cluster's shared log; see the module docs for what it guarantees.
pub trait Log: Send + Sync + 'static {
    /// Appends `bytes`; a retry with the same `id` is stored once. Returns its position.
    fn publish(&self, id: String, bytes: Vec<u8>) -> LogFuture<'_, u64>;
    /// Every entry from position `from` on, in order; the stream ends (or yields an error) if
    /// the log is lost, and the caller reads again from where it got to.
    fn read(&self, from: u64) -> LogFuture<'_, Entries>;
    /// Whether the log is reachable right now (a cheap check, before taking a line).
    fn reachable(&self) -> bool;

    /// Stores `bytes` as the snapshot of the state at log position `position` (see
    /// `parla_room::cluster::Replica::snapshot`), replacing one stored there before.
    fn put_snapshot(&self, position: u64, bytes: Vec<u8>) -> LogFuture<'_, ()>;
    /// The positions of the stored snapshots, in ascending order.
    fn snapshots(&self) -> LogFuture<'_, Vec<u64>>;
    /// The snapshot at `position`; `None` if there is none (it may have just been deleted).
    fn snapshot(&self, position: u64) -> LogFuture<'_, Option<Vec<u8>>>;
    /// Deletes the snapshot at `position`, if there is one.
    fn delete_snapshot(&self, position: u64) -> LogFuture<'_, ()>;
    /// Drops every entry before position `before` for good (a snapshot holds what they did):
    /// a read from an earlier position starts at the first entry kept.
    fn trim(&self, before: u64) -> LogFuture<'_, ()>;
}

/// A snapshot's name in a store: its position, zero-padded so that names sort as positions.
pub fn snapshot_name(position: u64) -> String {
    format!("snapshot-{position:020}")
}

/// The position a snapshot name stands for (`None`: not a snapshot's name).
pub fn snapshot_position(name: &str) -> Option<u64> {
    name.strip_prefix("snapshot-")?.parse().ok()
}

/// How to reach NATS: `--cluster` and its companions.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// `nats://host:4222` (several, comma-separated, for a NATS cluster).
    pub url: String,
    /// A `.creds` file (NATS decentralised auth: JWT and nkey seed).
    pub creds: Option<PathBuf>,
    /// A CA certificate (PEM) to verify NATS's TLS certificate with; TLS is then required.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and key (PEM), if NATS asks for one.
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// The stream's name (one per cluster; `PARLA` by default).
    pub stream: String,
    /// This server's name, as NATS shows its connection.
    pub client_name: String,
}

/// The cluster's log as a NATS JetStream stream (file storage, one subject).
pub struct NatsLog {
    client: async_nats::Client,
    /// Counts the connections made to NATS: a reader restarts from where it got to when it
    /// changes (a restarted NATS has forgotten its consumer).
    connections: tokio::sync::watch::Receiver<u64>,
    js: jetstream::Context,
    stream: String,
    subject: String,
    /// Where snapshots are kept: an object store beside the stream (`<stream>_snapshots`).
    snapshots: jetstream::object_store::ObjectStore,
}

impl NatsLog {
    /// Connects to NATS and finds or creates the stream. Fails with what to check if NATS
    /// cannot be reached within 10 s or has no JetStream.
    pub async fn connect(options: &NatsOptions) -> anyhow::Result<NatsLog> {
        use anyhow::Context;
        let (connected, connections) = tokio::sync::watch::channel(0u64);
        let url = options.url.clone();
        let mut connect = async_nats::ConnectOptions::new()
            .name(&options.client_name)
            .connection_timeout(Duration::from_secs(10))
            // Keep trying for ever once connected (the runtime refuses lines meanwhile), at
            // most 2 s apart, so that the chat resumes soon after NATS does.
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64).saturating_mul(250).min(2000))
            })
            .event_callback(move |event| {
                let connected = connected.clone();
                let url = url.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            connected.send_modify(|n| *n += 1);
                            tracing::info!(%url, "connected to NATS");
                        }
                        async_nats::Event::Disconnected => tracing::warn!(
                            %url,
                            "lost NATS: lines and new connections are refused until it is back"
                        ),
                        async_nats::Event::ClientError(err) => {
                            tracing::debug!(%url, cause = %err, "NATS client error");
                        }
                        other => tracing::info!(%url, event = %other, "NATS"),
                    }
                }
            });
        if let Some(creds) = &options.creds {
            connect = connect.credentials_file(creds).await.with_context(|| {
                format!(
                    "could not read the NATS credentials file {}",
                    creds.display()
                )
            })?;
        }
        if let Some(ca) = &options.tls_ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &options.tls_cert {
            connect = connect.add_client_certificate(cert.clone(), key.clone());
        }
        let client = connect
            .connect(options.url.as_str())
            .await
            .with_context(|| {
                format!(
                    "could not connect to NATS at {} (is nats-server running there with -js? \
                 check --cluster, --cluster-creds and --cluster-tls-ca)",
                    options.url
                )
            })?;
        let js = jetstream::new(client.clone());
        let subject = format!("parla.{}", options.stream.to_lowercase());
        js.get_or_create_stream(jetstream::stream::Config {
            name: options.stream.clone(),
            subjects: vec![subject.clone()],
            storage: jetstream::stream::StorageType::File,
            // A retried publish within this window is stored once.
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))
        .with_context(|| {
            format!(
                "NATS at {} has no usable JetStream for stream {} (start nats-server with -js)",
                options.url, options.stream
            )
        })?;
        let bucket = format!("{}_snapshots", options.stream);
        let snapshots = match js.get_object_store(&bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(jetstream::object_store::Config {
                    bucket: bucket.clone(),
                    description: Some("Parla's snapshots of the chat at a log position".into()),
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|err| anyhow::anyhow!("{err}"))
                .with_context(|| {
                    format!(
                        "NATS at {} could not make the object store {bucket} for snapshots",
                        options.url
                    )
                })?,
        };
        Ok(NatsLog {
            client,
            connections,
            js,
            stream: options.stream.clone(),
            subject,
            snapshots,
        })
    }
}

impl Log for NatsLog {
    fn publish(&self, id: String, bytes: Vec<u8>) -> LogFuture<'_, u64> {
        Box::pin(async move {
            let message = jetstream::message::PublishMessage::build()
                .payload(bytes.into())
                .message_id(id);
            let ack = self
                .js
                .send_publish(self.subject.clone(), message)
                .await
                .map_err(|err| LogError(format!("publish failed: {err}")))?;
            let ack = ack
                .await
                .map_err(|err| LogError(format!("publish not acknowledged: {err}")))?;
            Ok(ack.sequence)
        })
    }

    fn read(&self, from: u64) -> LogFuture<'_, Entries> {
        Box::pin(async move {
            let stream = self
                .js
                .get_stream(&self.stream)
                .await
                .map_err(|err| LogError(format!("stream {} not found: {err}", self.stream)))?;
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: from.max(1),
                    },
                    ..Default::default()
                })
                .await
                .map_err(|err| LogError(format!("could not read the stream: {err}")))?;
            let messages = consumer
                .messages()
                .await
                .map_err(|err| LogError(format!("could not read the stream: {err}")))?;
            // Until NATS reconnects: its consumer may be gone, and the caller reads again.
            let mut connections = self.connections.clone();
            connections.mark_unchanged();
            let reconnected = async move {
                let _ = connections.changed().await;
            };
            let entries = messages.take_until(reconnected).map(|m| {
                let m = m.map_err(|err| LogError(format!("reading the stream: {err}")))?;
                let seq = m
                    .info()
                    .map_err(|err| LogError(format!("an entry without its position: {err}")))?
                    .stream_sequence;
                Ok((seq, m.payload.to_vec()))
            });
            Ok(Box::pin(entries) as Entries)
        })
    }

    fn reachable(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn put_snapshot(&self, position: u64, bytes: Vec<u8>) -> LogFuture<'_, ()> {
        Box::pin(async move {
            let mut data = std::io::Cursor::new(bytes);
            self.snapshots
                .put(snapshot_name(position).as_str(), &mut data)
                .await
                .map_err(|err| LogError(format!("storing a snapshot failed: {err}")))?;
            Ok(())
        })
    }

    fn snapshots(&self) -> LogFuture<'_, Vec<u64>> {
        Box::pin(async move {
            let fail = |err: &dyn std::fmt::Display| LogError(format!("listing snapshots: {err}"));
            // The list waits for a first object: a store never written to has none.
            let bucket = format!("OBJ_{}_snapshots", self.stream);
            let mut stream = self.js.get_stream(&bucket).await.map_err(|e| fail(&e))?;
            if stream.info().await.map_err(|e| fail(&e))?.state.messages == 0 {
                return Ok(Vec::new());
            }
            let list = self.snapshots.list().await.map_err(|e| fail(&e))?;
            let listed = crate::clock::timeout(Duration::from_secs(10), list.collect::<Vec<_>>())
                .await
                .map_err(|_| LogError("listing snapshots timed out".into()))?;
            let mut positions = Vec::new();
            for info in listed {
                let info = info.map_err(|e| fail(&e))?;
                positions.extend(snapshot_position(&info.name));
            }
            positions.sort_unstable();
            Ok(positions)
        })
    }

    fn snapshot(&self, position: u64) -> LogFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            use jetstream::object_store::GetErrorKind;
            use tokio::io::AsyncReadExt;
            let mut object = match self.snapshots.get(snapshot_name(position)).await {
                Ok(object) => object,
                Err(err) if err.kind() == GetErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(LogError(format!("reading a snapshot: {err}"))),
            };
            let mut bytes = Vec::new();
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|err| LogError(format!("reading a snapshot: {err}")))?;
            Ok(Some(bytes))
        })
    }

    fn delete_snapshot(&self, position: u64) -> LogFuture<'_, ()> {
        Box::pin(async move {
            use jetstream::object_store::DeleteErrorKind;
            match self.snapshots.delete(snapshot_name(position)).await {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == DeleteErrorKind::NotFound => Ok(()),
                Err(err) => Err(LogError(format!("deleting a snapshot: {err}"))),
            }
        })
    }

    fn trim(&self, before: u64) -> LogFuture<'_, ()> {
        Box::pin(async move {
            let stream = (self.js.get_stream(&self.stream).await)
                .map_err(|err| LogError(format!("stream {} not found: {err}", self.stream)))?;
            // JetStream's purge does not always read its sequence as "before this": 0 and 1
            // purge every message (nats-server 2.9.10), and a sequence past the next position
            // purges every message and makes the next publish jump to it. So: nothing to do
            // before position 1, and past the end the trim stops at the next position, as the
            // stream's info just fetched has it (an entry published since then is kept, which
            // a trim may do: it only bounds what the log must keep).
            let next = stream.cached_info().state.last_sequence + 1;
            let before = before.min(next);
            if before <= 1 {
                return Ok(());
            }
            stream
                .purge()
                .sequence(before)
                .await
                .map_err(|err| LogError(format!("trimming the log: {err}")))?;
            Ok(())
        })
    }
}
