//! History figures: how fast the store takes messages, and how fast `CHATHISTORY LATEST … 100`
//! answers with a million of them stored.
//!
//! - [`store`]: the disk store on its own, in this process, as the server uses it: one append
//!   (one journal commit written to the operating system) per message, then `LATEST`-shaped
//!   scans of 100 over everything appended.
//! - [`through_server`]: the same through a running server over TCP: senders pipeline
//!   messages into the room (each one relayed and appended), then one client asks
//!   `CHATHISTORY LATEST <room> * 100` again and again, each timed from the request to the end
//!   of its batch.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use hdrhistogram::Histogram;
use parla_net::history::DiskHistory;
use parla_room::Millis;
use parla_room::history::{History, Pos, Retention, Stored, Verb};
use tokio::io::AsyncWriteExt;

use crate::client::{Target, command, open_session, pong_for};
use crate::report::Record;

/// A message of the length people write (about 60 bytes of text), as the server keeps it.
fn message(i: u64, at: Millis) -> Stored {
    Stored {
        pos: Pos { at, seq: i },
        msgid: format!("19a0b0c0d0e-{i:x}"),
        source: format!("user{}!~user@127.0.0.1", i % 1000),
        verb: Verb::Privmsg,
        target: "#lobby".to_owned(),
        tags: Vec::new(),
        lines: vec![(
            false,
            format!("message {i}: about as long as what people usually write here"),
        )],
    }
}

/// What [`store`] measured.
#[derive(Debug)]
pub struct StoreReport {
    pub messages: u64,
    pub append_per_s: f64,
    pub latest_p50_us: f64,
    pub latest_p99_us: f64,
    /// The server's core answering `CHATHISTORY LATEST #lobby * 100` over this store: the
    /// request handled and every line of the answer encoded (no network).
    pub answer_p50_us: f64,
    pub answer_p99_us: f64,
    pub disk_mib: f64,
}

impl std::fmt::Display for StoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages appended at {:.0}/s (one commit each, written to the OS); LATEST 100 scan: p50 {:.0} µs, p99 {:.0} µs; the core's whole answer: p50 {:.0} µs, p99 {:.0} µs; {:.0} MiB on disk",
            self.messages,
            self.append_per_s,
            self.latest_p50_us,
            self.latest_p99_us,
            self.answer_p50_us,
            self.answer_p99_us,
            self.disk_mib
        )
    }
}

impl StoreReport {
    pub fn record(&self, label: &str, name: &str) -> Record {
        let mut r = Record::new(label, name);
        r.set("messages", self.messages as f64);
        r.set("append_per_s", self.append_per_s);
        r.set("latest100_p50_us", self.latest_p50_us);
        r.set("latest100_p99_us", self.latest_p99_us);
        r.set("answer100_p50_us", self.answer_p50_us);
        r.set("answer100_p99_us", self.answer_p99_us);
        r.set("disk_mib", self.disk_mib);
        r
    }
}

/// Appends `messages` to a fresh store under `dir` (a room every 8th to another room, as a
/// server with several rooms would), then runs `queries` scans of the newest 100 of `#lobby`.
pub fn store(dir: &Path, messages: u64, queries: u64) -> anyhow::Result<StoreReport> {
    let retention = Retention {
        max_age_ms: None,
        max_per_target: None,
    };
    let mut h = DiskHistory::open(dir, retention, Some(Duration::from_secs(1)))?;
    let t0 = Millis(1_795_000_000_000);
    let start = Instant::now();
    for i in 0..messages {
        let target = if i % 8 == 7 { "#other" } else { "#lobby" };
        h.append(target, &message(i, Millis(t0.0 + i / 20)));
    }
    let append_per_s = messages as f64 / start.elapsed().as_secs_f64();
    let now = Millis(t0.0 + messages);
    let mut hist = Histogram::<u64>::new(3)?;
    for _ in 0..queries {
        let t = Instant::now();
        let got = h.scan("#lobby", None, None, true, 100, now);
        hist.record(t.elapsed().as_micros() as u64)?;
        ensure!(
            got.len() == 100.min(messages as usize),
            "LATEST gave {}",
            got.len()
        );
    }
    // The core over the same store, as the server runs it.
    let shared: std::sync::Arc<std::sync::Mutex<dyn History>> =
        std::sync::Arc::new(std::sync::Mutex::new(h));
    let config = parla_room::Config {
        history_replay: 0,
        ..parla_room::Config::default()
    };
    let mut core = parla_room::Server::with_history(config, now, Box::new(shared.clone()));
    let c = core.handle_connect(now, "127.0.0.1");
    for line in [
        "CAP REQ :batch draft/chathistory server-time message-tags",
        "NICK reader",
        "USER reader 0 * :reader",
        "CAP END",
    ] {
        core.handle_line(now, c, line.as_bytes());
    }
    while core.poll_output().is_some() {}
    let mut answers = Histogram::<u64>::new(3)?;
    for _ in 0..queries {
        let t = Instant::now();
        core.handle_line(now, c, b"CHATHISTORY LATEST #lobby * 100");
        let mut lines = 0;
        while let Some(out) = core.poll_output() {
            lines += usize::from(matches!(out, parla_room::Output::Send { .. }));
        }
        answers.record(t.elapsed().as_micros() as u64)?;
        ensure!(lines >= 2, "no answer");
    }
    drop(core);
    drop(shared);
    Ok(StoreReport {
        messages,
        append_per_s,
        latest_p50_us: hist.value_at_quantile(0.5) as f64,
        latest_p99_us: hist.value_at_quantile(0.99) as f64,
        answer_p50_us: answers.value_at_quantile(0.5) as f64,
        answer_p99_us: answers.value_at_quantile(0.99) as f64,
        disk_mib: dir_bytes(dir) as f64 / (1024.0 * 1024.0),
    })
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// What [`through_server`] measured.
#[derive(Debug)]
pub struct ServerReport {
    pub messages: u64,
    pub sent_per_s: f64,
    pub queries: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for ServerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages taken at {:.0}/s; CHATHISTORY LATEST * 100 ({} requests): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.messages, self.sent_per_s, self.queries, self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

impl ServerReport {
    pub fn record(&self, label: &str, name: &str) -> Record {
        let mut r = Record::new(label, name);
        r.set("messages", self.messages as f64);
        r.set("taken_per_s", self.sent_per_s);
        r.set("latest100_p50_ms", self.p50_ms);
        r.set("latest100_p99_ms", self.p99_ms);
        r.set("latest100_max_ms", self.max_ms);
        r
    }
}

/// Fills the server's `target.channel` with `messages` (from `senders` connections, pipelined;
/// `0` sends none, for a server whose store was filled before), waits `settle`, then times
/// `queries` requests for the newest 100.
pub async fn through_server(
    target: &Target,
    senders: usize,
    messages: u64,
    queries: u64,
    settle: Duration,
) -> anyhow::Result<ServerReport> {
    let timeout = Duration::from_secs(30);
    let room = target.channel.clone();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders.max(1) {
        let share = messages / senders.max(1) as u64
            + u64::from((s as u64) < messages % senders.max(1) as u64);
        if share == 0 {
            continue;
        }
        let session = open_session(target, s, &format!("hist{s}"), true, 1 << 16, timeout)
            .await
            .with_context(|| format!("sender {s}"))?;
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            // Written in chunks while whatever comes back (the other senders' messages) is
            // read; a PING after the last: its PONG says all were handled.
            let crate::client::Session {
                mut reader,
                mut writer,
            } = session;
            let write = async {
                let mut buf = Vec::with_capacity(64 * 1024);
                for i in 0..share {
                    let line = format!(
                        "PRIVMSG {room} :message {i} from {s}: about as long as what people write\r\n"
                    );
                    buf.extend_from_slice(line.as_bytes());
                    if buf.len() > 60 * 1024 {
                        writer.write_all(&buf).await?;
                        buf.clear();
                    }
                }
                buf.extend_from_slice(b"PING :done\r\n");
                writer.write_all(&buf).await?;
                anyhow::Ok(())
            };
            let read = async {
                loop {
                    while let Some(line) = reader.next_line() {
                        if command(line) == b"PONG" {
                            return anyhow::Ok(());
                        }
                    }
                    if !reader.fill().await? {
                        bail!("sender {s}: the server closed the connection");
                    }
                }
            };
            let (w, r) = tokio::join!(write, read);
            w.and(r)
        }));
    }
    for t in tasks {
        t.await??;
    }
    let sent_per_s = messages as f64 / start.elapsed().as_secs_f64();
    // The store's background work after a bulk load (flushing, compacting) would otherwise
    // share the cores with the first queries.
    tokio::time::sleep(settle).await;

    let mut reader = open_session(target, senders + 1, "histreader", true, 1 << 20, timeout)
        .await
        .context("reader")?;
    reader
        .writer
        .write_all(b"CAP REQ :batch draft/chathistory\r\n")
        .await?;
    let mut hist = Histogram::<u64>::new(3)?;
    let mut max = Duration::ZERO;
    let ask = format!("CHATHISTORY LATEST {room} * 100\r\n");
    for q in 0..queries {
        let t = Instant::now();
        reader.writer.write_all(ask.as_bytes()).await?;
        let mut lines = 0;
        'reply: loop {
            while let Some(line) = reader.reader.next_line() {
                if let Some(pong) = pong_for(line) {
                    reader.writer.write_all(&pong).await?;
                    continue;
                }
                match command(line) {
                    // Inside the batch (the room's replay on joining came before, unbatched).
                    b"PRIVMSG" if line.starts_with(b"@batch=") => lines += 1,
                    b"FAIL" => bail!("refused: {}", String::from_utf8_lossy(line)),
                    b"BATCH" if line.windows(2).any(|w| w == b" -") => break 'reply,
                    _ => {}
                }
            }
            if !reader.reader.fill().await? {
                bail!("the server closed the reader's connection");
            }
        }
        let took = t.elapsed();
        max = max.max(took);
        hist.record(took.as_micros() as u64)?;
        ensure!(
            lines == 100 || (q == 0 && messages < 100),
            "a LATEST 100 answered with {lines} messages"
        );
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(ServerReport {
        messages,
        sent_per_s,
        queries,
        p50_ms: ms(hist.value_at_quantile(0.5)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: max.as_secs_f64() * 1000.0,
    })
}
