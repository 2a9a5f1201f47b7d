//! `churn`: sessions that connect, register, join, say one line and quit, `concurrency` at a
//! time, until `sessions` have completed; then whether the server's memory came back down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::client::{self, Target};
use crate::procfs;
use crate::report::Record;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    pub target: Target,
    /// Sessions to complete after the warm-up.
    pub sessions: usize,
    /// Sessions in progress at once.
    pub concurrency: usize,
    /// Sessions run first to warm the server's allocator up; the baseline RSS is taken after.
    pub warmup: usize,
    /// How long to wait after the last session before sampling the server's RSS.
    pub settle: Duration,
    pub server_pid: Option<u32>,
}

impl ChurnConfig {
    pub fn new(target: Target, sessions: usize) -> ChurnConfig {
        ChurnConfig {
            target,
            sessions,
            concurrency: 50,
            warmup: (sessions / 20).clamp(1, 2_000),
            settle: Duration::from_secs(2),
            server_pid: None,
        }
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct ChurnReport {
    pub sessions: usize,
    pub failed: usize,
    pub duration_s: f64,
    pub rss_start_kib: Option<u64>,
    /// After the warm-up sessions.
    pub rss_baseline_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub server_cpu_s: Option<f64>,
}

impl ChurnReport {
    pub fn sessions_per_s(&self) -> f64 {
        self.sessions as f64 / self.duration_s.max(1e-9)
    }

    /// RSS after all sessions relative to the warm baseline, in percent (+ is growth).
    pub fn rss_growth_pct(&self) -> Option<f64> {
        let (b, e) = (self.rss_baseline_kib? as f64, self.rss_end_kib? as f64);
        Some((e - b) / b.max(1.0) * 100.0)
    }

    pub fn record(&self, server: &str, workload: &str) -> Record {
        let mut r = Record::new(server, workload);
        r.set("sessions", self.sessions as f64);
        r.set("lost", self.failed as f64);
        r.set("duration_s", self.duration_s);
        r.set("sessions_per_s", self.sessions_per_s());
        if let Some(k) = self.rss_start_kib {
            r.set("server_rss_start_mib", k as f64 / 1024.0);
        }
        if let Some(k) = self.rss_baseline_kib {
            r.set("server_rss_baseline_mib", k as f64 / 1024.0);
        }
        if let Some(k) = self.rss_end_kib {
            r.set("server_rss_end_mib", k as f64 / 1024.0);
        }
        if let Some(g) = self.rss_growth_pct() {
            r.set("rss_growth_pct", g);
        }
        if let Some(cpu) = self.server_cpu_s {
            r.set("server_cpu_s", cpu);
            r.set(
                "server_us_per_session",
                cpu * 1e6 / self.sessions.max(1) as f64,
            );
        }
        r
    }
}

impl std::fmt::Display for ChurnReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "churn: {} sessions ({} failed) in {:.3} s: {:.0} sessions/s",
            self.sessions,
            self.failed,
            self.duration_s,
            self.sessions_per_s()
        )?;
        match (self.rss_start_kib, self.rss_baseline_kib, self.rss_end_kib) {
            (Some(s), Some(b), Some(e)) => write!(
                f,
                "  server RSS: start {s} KiB, after warm-up {b} KiB, end {e} KiB ({:+.1}% vs warm-up)",
                self.rss_growth_pct().unwrap_or(0.0)
            ),
            _ => write!(f, "  (no server PID: RSS not measured)"),
        }
    }
}

/// One session: connect, register, join, speak, quit, wait for the server to close.
async fn session(target: &Target, i: usize) -> anyhow::Result<()> {
    let nick = format!("c{i:x}");
    let mut s = client::open_session(target, i, &nick, true, 2048, Duration::from_secs(30)).await?;
    let bye = format!(
        "PRIVMSG {} :hello from {nick}\r\nQUIT :bye\r\n",
        target.channel
    );
    s.writer.write_all(bye.as_bytes()).await?;
    tokio::time::timeout(Duration::from_secs(30), async {
        // Until the server closes after its ERROR line.
        while s.reader.fill().await? {
            while s.reader.next_line().is_some() {}
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

async fn run_sessions(target: &Target, range: std::ops::Range<usize>, concurrency: usize) -> usize {
    let next = Arc::new(AtomicUsize::new(range.start));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (target, next, failed, end) = (target.clone(), next.clone(), failed.clone(), range.end);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::AcqRel);
                if i >= end {
                    break;
                }
                if let Err(err) = session(&target, i).await
                    && failed.fetch_add(1, Ordering::AcqRel) == 0
                {
                    eprintln!("churn: first failure: {err:#}");
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    failed.load(Ordering::Acquire)
}

pub async fn run(cfg: &ChurnConfig) -> anyhow::Result<ChurnReport> {
    let start = procfs::sample_opt(cfg.server_pid);
    let warmup = cfg.warmup;
    let mut failed = run_sessions(&cfg.target, 0..warmup, cfg.concurrency).await;
    tokio::time::sleep(cfg.settle).await;
    let baseline = procfs::sample_opt(cfg.server_pid);
    let t0 = Instant::now();
    failed += run_sessions(&cfg.target, warmup..warmup + cfg.sessions, cfg.concurrency).await;
    let duration_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(cfg.settle).await;
    let end = procfs::sample_opt(cfg.server_pid);
    Ok(ChurnReport {
        sessions: cfg.sessions,
        failed,
        duration_s,
        rss_start_kib: start.map(|s| s.rss_kib),
        rss_baseline_kib: baseline.map(|s| s.rss_kib),
        rss_end_kib: end.map(|s| s.rss_kib),
        server_cpu_s: baseline.zip(end).map(|(b, e)| e.cpu_s - b.cpu_s),
    })
}
