//! `idle`: N registered connections that only answer PINGs; the server's RSS per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore, watch};

use crate::client::{self, Target};
use crate::procfs;
use crate::report::Record;

/// What to run.
#[derive(Debug, Clone)]
pub struct IdleConfig {
    pub target: Target,
    /// Connections to hold (N).
    pub conns: usize,
    /// Registrations in progress at once.
    pub connect_concurrency: usize,
    /// How long to hold them once all are registered (RSS is sampled at the end).
    pub hold: Duration,
    /// The server's PID, for RSS.
    pub server_pid: Option<u32>,
    /// Give up if the ramp takes longer.
    pub timeout: Duration,
}

impl IdleConfig {
    pub fn new(target: Target, conns: usize) -> IdleConfig {
        IdleConfig {
            target,
            conns,
            connect_concurrency: 500,
            hold: Duration::from_secs(2),
            server_pid: None,
            timeout: Duration::from_secs(300),
        }
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct IdleReport {
    pub conns: usize,
    pub registered: usize,
    pub ramp_s: f64,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub server_cpu_s: Option<f64>,
}

impl IdleReport {
    /// Server RSS growth per registered connection, in bytes.
    pub fn rss_per_conn_bytes(&self) -> Option<f64> {
        let (b, a) = (self.rss_before_kib?, self.rss_after_kib?);
        Some((a.saturating_sub(b) as f64 * 1024.0) / self.registered.max(1) as f64)
    }

    pub fn record(&self, server: &str, workload: &str) -> Record {
        let mut r = Record::new(server, workload);
        r.set("conns", self.conns as f64);
        r.set("registered", self.registered as f64);
        r.set("lost", (self.conns - self.registered) as f64);
        r.set("ramp_s", self.ramp_s);
        if let Some(per) = self.rss_per_conn_bytes() {
            r.set("rss_per_conn_bytes", per);
        }
        if let (Some(b), Some(a)) = (self.rss_before_kib, self.rss_after_kib) {
            r.set("server_rss_before_mib", b as f64 / 1024.0);
            r.set("server_rss_after_mib", a as f64 / 1024.0);
        }
        if let Some(cpu) = self.server_cpu_s {
            r.set("server_cpu_s", cpu);
        }
        r
    }
}

impl std::fmt::Display for IdleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "idle: {} of {} connections registered in {:.3} s",
            self.registered, self.conns, self.ramp_s
        )?;
        match (
            self.rss_before_kib,
            self.rss_after_kib,
            self.rss_per_conn_bytes(),
        ) {
            (Some(b), Some(a), Some(per)) => write!(
                f,
                "  server RSS {b} KiB → {a} KiB: {per:.0} bytes per connection"
            ),
            _ => write!(f, "  (no server PID: RSS not measured)"),
        }
    }
}

/// Opens the connections, holds them, samples the server, then closes them all.
pub async fn run(cfg: &IdleConfig) -> anyhow::Result<IdleReport> {
    let before = procfs::sample_opt(cfg.server_pid);
    let permits = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
    let registered = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.conns);
    for i in 0..cfg.conns {
        let (target, permits, registered, failed, progress, mut stop) = (
            cfg.target.clone(),
            permits.clone(),
            registered.clone(),
            failed.clone(),
            progress.clone(),
            stop_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let session = {
                let _permit = permits.acquire().await.ok()?;
                client::open_session(
                    &target,
                    i,
                    &format!("i{i}"),
                    false,
                    512,
                    Duration::from_secs(120),
                )
                .await
            };
            let mut session = match session {
                Ok(s) => s,
                Err(err) => {
                    if failed.fetch_add(1, Ordering::AcqRel) == 0 {
                        eprintln!("idle: first failure: {err:#}");
                    }
                    progress.notify_one();
                    return None;
                }
            };
            registered.fetch_add(1, Ordering::AcqRel);
            progress.notify_one();
            // Hold: answer PINGs until told to stop.
            loop {
                while let Some(line) = session.reader.next_line() {
                    if let Some(pong) = client::pong_for(line) {
                        let _ = session.writer.write_all(&pong).await;
                    }
                }
                if *stop.borrow() {
                    break;
                }
                tokio::select! {
                    more = session.reader.fill() => if !matches!(more, Ok(true)) { break },
                    _ = stop.changed() => {}
                }
            }
            Some(session)
        }));
    }
    while registered.load(Ordering::Acquire) + failed.load(Ordering::Acquire) < cfg.conns
        && t0.elapsed() < cfg.timeout
    {
        let _ = tokio::time::timeout(Duration::from_millis(20), progress.notified()).await;
    }
    let ramp_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(cfg.hold).await;
    let after = procfs::sample_opt(cfg.server_pid);
    let report = IdleReport {
        conns: cfg.conns,
        registered: registered.load(Ordering::Acquire),
        ramp_s,
        rss_before_kib: before.map(|s| s.rss_kib),
        rss_after_kib: after.map(|s| s.rss_kib),
        server_cpu_s: before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s),
    };
    let _ = stop_tx.send(true);
    for task in tasks {
        if let Ok(Some(mut s)) = task.await {
            let _ = s.writer.write_all(b"QUIT :bench done\r\n").await;
        }
    }
    Ok(report)
}
