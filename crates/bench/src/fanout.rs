//! `fanout`: C members in one room; S of them send M messages each. Every member records the
//! end-to-end latency of every message from the send timestamp carried in its text, and checks
//! that each sender's messages arrive complete and in order.
//!
//! Phases, so that each figure measures one thing:
//! 1. *Ramp*: all clients connect, register and join (at most `connect_concurrency` at once);
//!    the ramp time runs from the first connect to the last `366` (end of NAMES).
//! 2. *Drain*: everyone sends `PING` and waits for its `PONG`, so the JOIN lines of the ramp are
//!    out of the way before the clock starts.
//! 3. *Measure*: the senders send; the server's CPU is sampled before the first message and after
//!    the last delivery. Full speed keeps at most `window` messages per sender in flight, as
//!    seen by one member that does not send (the witness); a `rate` spreads sends evenly instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore, watch};

use crate::client::{self, LineReader, Target, Writer};
use crate::procfs;
use crate::report::Record;

/// What to run.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub target: Target,
    /// Members of the room (C).
    pub clients: usize,
    /// Members that send (S); the first S clients.
    pub senders: usize,
    /// Messages each sender sends (M).
    pub messages: usize,
    /// Full speed: messages per sender in flight at most (sent, not yet seen by the witness).
    pub window: usize,
    /// Fixed aggregate rate in messages per second instead of full speed.
    pub rate: Option<f64>,
    /// Registrations in progress at once during the ramp.
    pub connect_concurrency: usize,
    /// The run stops (and reports loss) when no delivery arrives for this long.
    pub stall_timeout: Duration,
    /// The server's PID, for CPU and RSS; `None` leaves those figures out.
    pub server_pid: Option<u32>,
    /// The other servers of a cluster, whose CPU and RSS are added to the server's.
    pub also_pids: Vec<u32>,
    /// Bytes of message text (at least the timestamp header).
    pub text_len: usize,
    /// Read buffer per client.
    pub read_capacity: usize,
}

impl FanoutConfig {
    /// Defaults for `clients` members and `senders` senders of `messages` each.
    pub fn new(target: Target, clients: usize, senders: usize, messages: usize) -> FanoutConfig {
        FanoutConfig {
            target,
            clients,
            senders,
            messages,
            window: 64,
            rate: None,
            connect_concurrency: 250,
            stall_timeout: Duration::from_secs(10),
            server_pid: None,
            also_pids: Vec::new(),
            text_len: 64,
            read_capacity: 16 * 1024,
        }
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct FanoutReport {
    pub clients: usize,
    pub senders: usize,
    pub messages: usize,
    /// Deliveries that should have arrived: every member gets every message it did not send.
    pub expected: u64,
    pub received: u64,
    /// Messages that arrived out of order or twice.
    pub disordered: u64,
    pub ramp_s: f64,
    pub drain_s: f64,
    /// From the first send to the last delivery.
    pub duration_s: f64,
    pub deliveries_per_s: f64,
    pub latency_us: Histogram<u64>,
    /// With several servers (a cluster): latencies of deliveries whose sender is on another
    /// server than the receiver, and on the same one.
    pub cross_us: Option<(Histogram<u64>, Histogram<u64>)>,
    pub server_cpu_s: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub bench_cpu_s: f64,
}

impl FanoutReport {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Server CPU nanoseconds per delivery.
    pub fn server_ns_per_delivery(&self) -> Option<f64> {
        self.server_cpu_s
            .map(|cpu| cpu * 1e9 / self.received.max(1) as f64)
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// The figures as a [`Record`].
    pub fn record(&self, server: &str, workload: &str) -> Record {
        let mut r = Record::new(server, workload);
        r.set("clients", self.clients as f64);
        r.set("senders", self.senders as f64);
        r.set("messages_per_sender", self.messages as f64);
        r.set("expected", self.expected as f64);
        r.set("received", self.received as f64);
        r.set("lost", self.lost() as f64);
        r.set("disordered", self.disordered as f64);
        r.set("ramp_s", self.ramp_s);
        r.set("duration_s", self.duration_s);
        r.set("deliveries_per_s", self.deliveries_per_s);
        r.set("p50_ms", self.ms(0.5));
        r.set("p99_ms", self.ms(0.99));
        r.set("p999_ms", self.ms(0.999));
        r.set("max_ms", self.latency_us.max() as f64 / 1000.0);
        if let Some((cross, same)) = &self.cross_us {
            r.set("cross_p50_ms", cross.value_at_quantile(0.5) as f64 / 1000.0);
            r.set(
                "cross_p99_ms",
                cross.value_at_quantile(0.99) as f64 / 1000.0,
            );
            r.set("same_p50_ms", same.value_at_quantile(0.5) as f64 / 1000.0);
            r.set("same_p99_ms", same.value_at_quantile(0.99) as f64 / 1000.0);
        }
        if let Some(cpu) = self.server_cpu_s {
            r.set("server_cpu_s", cpu);
        }
        if let Some(ns) = self.server_ns_per_delivery() {
            r.set("server_ns_per_delivery", ns);
        }
        if let Some(rss) = self.server_rss_kib {
            r.set("server_rss_mib", rss as f64 / 1024.0);
        }
        r.set("bench_cpu_s", self.bench_cpu_s);
        r
    }
}

impl std::fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "fanout: {} members, {} senders × {} messages",
            self.clients, self.senders, self.messages
        )?;
        writeln!(
            f,
            "  deliveries: {} expected, {} received, {} lost, {} out of order",
            self.expected,
            self.received,
            self.lost(),
            self.disordered
        )?;
        writeln!(
            f,
            "  ramp {:.3} s (connect+register+join), drain {:.3} s, measured {:.3} s",
            self.ramp_s, self.drain_s, self.duration_s
        )?;
        writeln!(f, "  {:.0} deliveries/s", self.deliveries_per_s)?;
        writeln!(
            f,
            "  latency ms: p50 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}",
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.latency_us.max() as f64 / 1000.0
        )?;
        if let Some((cross, same)) = &self.cross_us {
            let ms = |h: &Histogram<u64>, q| h.value_at_quantile(q) as f64 / 1000.0;
            writeln!(
                f,
                "  across servers ms: p50 {:.3}  p99 {:.3}; same server: p50 {:.3}  p99 {:.3}",
                ms(cross, 0.5),
                ms(cross, 0.99),
                ms(same, 0.5),
                ms(same, 0.99)
            )?;
        }
        if let (Some(cpu), Some(ns)) = (self.server_cpu_s, self.server_ns_per_delivery()) {
            writeln!(
                f,
                "  server CPU {cpu:.3} s ({ns:.0} ns/delivery), RSS {} KiB",
                self.server_rss_kib.unwrap_or(0)
            )?;
        }
        write!(f, "  bench CPU {:.3} s", self.bench_cpu_s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Ramp,
    Drain,
    Measure,
    Stop,
}

struct Shared {
    base: Instant,
    /// Per sender: its messages the witness has seen.
    acked: Vec<AtomicU64>,
    ack_notify: Vec<Notify>,
    joined: AtomicUsize,
    drained: AtomicUsize,
    finished: AtomicUsize,
    received: AtomicU64,
    progress: Notify,
}

impl Shared {
    fn nanos(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

struct ClientResult {
    received: u64,
    disordered: u64,
    /// Nanoseconds since `base` of the last delivery.
    last_rx: u64,
    hist: Histogram<u64>,
    /// Of `hist`, in a cluster: from senders on other servers, and on this one.
    cross: Histogram<u64>,
    same: Histogram<u64>,
    first_send: Option<u64>,
    writer: Option<Writer>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Runs the workload. Errors are setup failures (a refused registration, a timeout); loss is
/// reported in the figures, not as an error, so that the caller can print it.
pub async fn run(cfg: &FanoutConfig) -> anyhow::Result<FanoutReport> {
    anyhow::ensure!(cfg.senders >= 1, "at least one sender");
    anyhow::ensure!(
        cfg.clients > cfg.senders,
        "need a member that does not send (the witness): clients > senders"
    );
    let shared = Arc::new(Shared {
        base: Instant::now(),
        acked: (0..cfg.senders).map(|_| AtomicU64::new(0)).collect(),
        ack_notify: (0..cfg.senders).map(|_| Notify::new()).collect(),
        joined: AtomicUsize::new(0),
        drained: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        received: AtomicU64::new(0),
        progress: Notify::new(),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Ramp);
    let permits = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
    let bench_cpu0 = procfs::sample(std::process::id())?.cpu_s;
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.clients);
    for i in 0..cfg.clients {
        let task = client_task(
            i,
            cfg.clone(),
            shared.clone(),
            phase_rx.clone(),
            permits.clone(),
        );
        tasks.push(tokio::spawn(task));
    }
    // Phase 1: the ramp. A failed client ends the run early with its error.
    let failed = wait_for(&shared, &shared.joined, cfg.clients, &tasks, None).await;
    let ramp_s = t0.elapsed().as_secs_f64();
    if let Some(err) = failed {
        let _ = phase_tx.send(Phase::Stop);
        return Err(first_error(tasks)
            .await
            .unwrap_or(err)
            .context("during the ramp"));
    }
    // Phase 2: drain the JOIN storm.
    let t1 = Instant::now();
    let _ = phase_tx.send(Phase::Drain);
    let stall = Some(cfg.stall_timeout.max(Duration::from_secs(30)));
    if let Some(err) = wait_for(&shared, &shared.drained, cfg.clients, &tasks, stall).await {
        let _ = phase_tx.send(Phase::Stop);
        let err = first_error(tasks).await.unwrap_or(err);
        return Err(err.context("while draining the ramp's JOIN lines"));
    }
    let drain_s = t1.elapsed().as_secs_f64();
    // Phase 3: measure.
    let before = servers_sample(cfg);
    let _ = phase_tx.send(Phase::Measure);
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    while shared.finished.load(Ordering::Acquire) < cfg.clients {
        let _ = tokio::time::timeout(Duration::from_millis(20), shared.progress.notified()).await;
        let now = shared.received.load(Ordering::Relaxed);
        if now != last_count {
            last_count = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > cfg.stall_timeout {
            break;
        }
        if tasks.iter().any(|t| t.is_finished()) && shared.finished.load(Ordering::Acquire) == 0 {
            // A client died (its error is collected below).
            break;
        }
    }
    let after = servers_sample(cfg);
    let _ = phase_tx.send(Phase::Stop);
    let mut hist = new_hist();
    let (mut cross, mut same) = (new_hist(), new_hist());
    let (mut received, mut disordered, mut last_rx) = (0, 0, 0);
    let mut first_send = u64::MAX;
    let mut writers = Vec::new();
    for task in tasks {
        let r = task.await.context("a client task panicked")??;
        received += r.received;
        disordered += r.disordered;
        last_rx = last_rx.max(r.last_rx);
        if let Some(t) = r.first_send {
            first_send = first_send.min(t);
        }
        hist.add(&r.hist).expect("same histogram bounds");
        cross.add(&r.cross).expect("same histogram bounds");
        same.add(&r.same).expect("same histogram bounds");
        writers.extend(r.writer);
    }
    for mut w in writers {
        let _ = w.write_all(b"QUIT :bench done\r\n").await;
    }
    let duration_s = if first_send == u64::MAX || last_rx < first_send {
        0.0
    } else {
        (last_rx - first_send) as f64 / 1e9
    };
    let expected = (cfg.senders * cfg.messages) as u64 * (cfg.clients as u64 - 1);
    Ok(FanoutReport {
        clients: cfg.clients,
        senders: cfg.senders,
        messages: cfg.messages,
        expected,
        received,
        disordered,
        ramp_s,
        drain_s,
        duration_s,
        deliveries_per_s: if duration_s > 0.0 {
            received as f64 / duration_s
        } else {
            0.0
        },
        latency_us: hist,
        cross_us: (!cfg.target.also.is_empty()).then_some((cross, same)),
        server_cpu_s: before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s),
        server_rss_kib: after.map(|a| a.rss_kib),
        bench_cpu_s: procfs::sample(std::process::id())?.cpu_s - bench_cpu0,
    })
}

/// CPU and RSS of the server, or of all a cluster's servers together.
fn servers_sample(cfg: &FanoutConfig) -> Option<procfs::ProcSample> {
    let mut total = procfs::sample_opt(cfg.server_pid)?;
    for &pid in &cfg.also_pids {
        let more = procfs::sample(pid).ok()?;
        total.cpu_s += more.cpu_s;
        total.rss_kib += more.rss_kib;
        total.anon_kib += more.anon_kib;
    }
    Some(total)
}

/// The error of the first client task that failed, if any finished with one.
async fn first_error(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<ClientResult>>>,
) -> Option<anyhow::Error> {
    for task in tasks.into_iter().filter(|t| t.is_finished()) {
        match task.await {
            Ok(Err(err)) => return Some(err),
            Err(err) => return Some(err.into()),
            Ok(Ok(_)) => {}
        }
    }
    None
}

/// Waits until `counter` reaches `n`; returns the first client error if a task ends first, or
/// a timeout error after `stall` without any change.
async fn wait_for(
    shared: &Shared,
    counter: &AtomicUsize,
    n: usize,
    tasks: &[tokio::task::JoinHandle<anyhow::Result<ClientResult>>],
    stall: Option<Duration>,
) -> Option<anyhow::Error> {
    let mut last = (counter.load(Ordering::Acquire), Instant::now());
    loop {
        let c = counter.load(Ordering::Acquire);
        if c >= n {
            return None;
        }
        if c != last.0 {
            last = (c, Instant::now());
        }
        if let Some(stall) = stall
            && last.1.elapsed() > stall
        {
            return Some(anyhow::anyhow!(
                "only {c} of {n} clients got there within {stall:?}"
            ));
        }
        if tasks.iter().any(|t| t.is_finished()) {
            return Some(anyhow::anyhow!(
                "a client stopped early (run with fewer clients or check the server's limits)"
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(10), shared.progress.notified()).await;
    }
}

fn nick(i: usize) -> String {
    format!("b{i}")
}

async fn client_task(
    i: usize,
    cfg: FanoutConfig,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    permits: Arc<Semaphore>,
) -> anyhow::Result<ClientResult> {
    let session = {
        let _permit = permits.acquire().await?;
        client::open_session(
            &cfg.target,
            i,
            &nick(i),
            true,
            cfg.read_capacity,
            Duration::from_secs(60),
        )
        .await?
    };
    shared.joined.fetch_add(1, Ordering::AcqRel);
    shared.progress.notify_one();
    let (mut reader, mut writer) = (session.reader, session.writer);

    // Ramp: keep reading (others' JOINs) until everyone is in.
    discard_until(&mut reader, &mut writer, &mut phase, Phase::Drain).await?;
    if *phase.borrow() == Phase::Stop {
        return Ok(empty_result(Some(writer)));
    }
    // Drain: our PONG comes after every JOIN line queued for us.
    writer.write_all(b"PING :parla-bench-drain\r\n").await?;
    loop {
        let mut done = false;
        while let Some(line) = reader.next_line() {
            if client::command(line) == b"PONG" && line.ends_with(b"parla-bench-drain") {
                done = true;
            } else if let Some(pong) = client::pong_for(line) {
                writer.write_all(&pong).await?;
            }
        }
        if done {
            break;
        }
        if !reader.fill().await? {
            anyhow::bail!("{}: the server closed the connection", nick(i));
        }
    }
    shared.drained.fetch_add(1, Ordering::AcqRel);
    shared.progress.notify_one();
    discard_until(&mut reader, &mut writer, &mut phase, Phase::Measure).await?;
    if *phase.borrow() == Phase::Stop {
        return Ok(empty_result(Some(writer)));
    }

    // Measure.
    let (sender, writer) = if i < cfg.senders {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        let task = tokio::spawn(async move {
            let r = send(i, &cfg, &shared, &mut writer).await;
            (r, writer)
        });
        (Some(task), None)
    } else {
        (None, Some(writer))
    };
    let mut result = receive(i, &cfg, &shared, &mut reader, &mut phase).await;
    result.writer = writer;
    if let Some(sender) = sender {
        let (sent, writer) = sender.await.context("a sender panicked")?;
        result.first_send = Some(sent?);
        result.writer = Some(writer);
    }
    Ok(result)
}

fn empty_result(writer: Option<Writer>) -> ClientResult {
    ClientResult {
        received: 0,
        disordered: 0,
        last_rx: 0,
        hist: new_hist(),
        cross: new_hist(),
        same: new_hist(),
        first_send: None,
        writer,
    }
}

/// Reads and drops lines (answering PINGs) until the phase reaches `until` (or Stop).
async fn discard_until(
    reader: &mut LineReader,
    writer: &mut Writer,
    phase: &mut watch::Receiver<Phase>,
    until: Phase,
) -> anyhow::Result<()> {
    loop {
        // The phase first: bytes read before it changed can't hold anything sent after, but
        // bytes read after could, and those must reach the next phase.
        if *phase.borrow_and_update() >= until {
            return Ok(());
        }
        while let Some(line) = reader.next_line() {
            if let Some(pong) = client::pong_for(line) {
                writer.write_all(&pong).await?;
            }
        }
        tokio::select! {
            more = reader.fill() => {
                if !more? {
                    anyhow::bail!("the server closed the connection");
                }
            }
            _ = phase.changed() => {}
        }
    }
}

/// Sends this sender's messages; returns when the first was sent (ns since base).
async fn send(
    s: usize,
    cfg: &FanoutConfig,
    shared: &Shared,
    writer: &mut Writer,
) -> anyhow::Result<u64> {
    let prefix = format!("PRIVMSG {} :", cfg.target.channel);
    let mut buf = Vec::with_capacity(64 * (prefix.len() + cfg.text_len + 2));
    let mut seq = 0u64;
    let m = cfg.messages as u64;
    let mut first = None;
    let write_msg = |buf: &mut Vec<u8>, seq: u64, now: u64| {
        use std::io::Write;
        let start = buf.len();
        buf.extend_from_slice(prefix.as_bytes());
        let text_start = buf.len();
        let _ = write!(buf, "pb {s} {seq} {now} ");
        let pad = cfg.text_len.saturating_sub(buf.len() - text_start);
        buf.resize(buf.len() + pad, b'x');
        buf.extend_from_slice(b"\r\n");
        debug_assert!(buf.len() - start <= 512);
    };
    match cfg.rate {
        None => {
            while seq < m {
                let acked = shared.acked[s].load(Ordering::Acquire);
                let room = (cfg.window as u64).saturating_sub(seq - acked.min(seq));
                if room == 0 {
                    shared.ack_notify[s].notified().await;
                    continue;
                }
                buf.clear();
                let now = shared.nanos();
                first.get_or_insert(now);
                for _ in 0..room.min(m - seq).min(64) {
                    write_msg(&mut buf, seq, now);
                    seq += 1;
                }
                writer.write_all(&buf).await?;
            }
        }
        Some(rate) => {
            // Each sender sends rate/S per second; senders are staggered to spread the load.
            let period = Duration::from_secs_f64(cfg.senders as f64 / rate.max(1e-3));
            let offset = period.mul_f64(s as f64 / cfg.senders as f64);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            while seq < m {
                tick.tick().await;
                buf.clear();
                let now = shared.nanos();
                first.get_or_insert(now);
                write_msg(&mut buf, seq, now);
                seq += 1;
                writer.write_all(&buf).await?;
            }
        }
    }
    Ok(first.unwrap_or(0))
}

/// Receives until every expected message arrived or the run is stopped.
async fn receive(
    i: usize,
    cfg: &FanoutConfig,
    shared: &Shared,
    reader: &mut LineReader,
    phase: &mut watch::Receiver<Phase>,
) -> ClientResult {
    let witness = i == cfg.clients - 1;
    let mut next = vec![0u64; cfg.senders];
    let own = u64::from(i < cfg.senders) * cfg.messages as u64;
    let expected = (cfg.senders * cfg.messages) as u64 - own;
    let mut r = empty_result(None);
    let mut changed = vec![false; cfg.senders];
    while r.received < expected {
        let mut batch = 0;
        while let Some(line) = reader.next_line() {
            let Some(text) = client::trailing(line) else {
                continue;
            };
            let Some(rest) = text.strip_prefix(b"pb ") else {
                continue;
            };
            let mut it = rest.split(|&b| b == b' ');
            let mut num = || -> Option<u64> { std::str::from_utf8(it.next()?).ok()?.parse().ok() };
            let (Some(s), Some(seq), Some(sent)) = (num(), num(), num()) else {
                continue;
            };
            let s = s as usize;
            if s >= cfg.senders {
                continue;
            }
            let now = shared.nanos();
            let us = (now.saturating_sub(sent) / 1000).max(1);
            r.hist.saturating_record(us);
            if !cfg.target.also.is_empty() {
                let across = cfg.target.server_of(s).0 != cfg.target.server_of(i).0;
                if across { &mut r.cross } else { &mut r.same }.saturating_record(us);
            }
            if seq != next[s] {
                r.disordered += 1;
            }
            next[s] = next[s].max(seq + 1);
            r.received += 1;
            r.last_rx = now;
            batch += 1;
            if witness {
                changed[s] = true;
            }
        }
        if batch > 0 {
            shared.received.fetch_add(batch, Ordering::Relaxed);
            if witness {
                for (s, c) in changed.iter_mut().enumerate() {
                    if std::mem::take(c) {
                        shared.acked[s].store(next[s], Ordering::Release);
                        shared.ack_notify[s].notify_one();
                    }
                }
            }
        }
        if r.received >= expected {
            break;
        }
        if *phase.borrow() == Phase::Stop {
            break;
        }
        tokio::select! {
            more = reader.fill() => match more {
                Ok(true) => {}
                _ => break,
            },
            _ = phase.changed() => {}
        }
    }
    shared.finished.fetch_add(1, Ordering::AcqRel);
    shared.progress.notify_one();
    r
}
