//! The room-emptying attack from the safety issue, measured: `innocents` members of the room
//! (each from its own 127.0.1.x address) chat, one of them saying a timestamped probe every
//! `probe_every`; then `attackers` fresh connections (each from its own 127.0.2.x … address)
//! register and, once all are in, each send one burst of `burst` room messages of `line_bytes`
//! bytes at the same instant, and never read. Reported: how many innocents the server cut (and
//! why), the probes' delivery latency to the other innocents (p50/p99/max), and the server's
//! memory before, at the end of the attack, and after the attackers are gone.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;

use crate::client::{Session, command, open_session_from, pong_for, trailing};
use crate::procfs::{ProcSample, sample_opt};
use crate::{Record, Target};

/// How long a connection may take to register (and be in the room).
const REGISTER: Duration = Duration::from_secs(30);

/// The attack's shape.
#[derive(Debug, Clone)]
pub struct AttackConfig {
    pub target: Target,
    pub pid: Option<u32>,
    pub innocents: usize,
    pub attackers: usize,
    pub burst: usize,
    pub line_bytes: usize,
    pub probe_every: Duration,
    /// How long the innocents chat after the attack starts.
    pub duration: Duration,
    /// After the last probe, how long to wait for it to arrive (at most), and then how long
    /// the attackers are gone before the server's memory is sampled again.
    pub settle: Duration,
}

/// What the attack did.
#[derive(Debug, Default)]
pub struct AttackReport {
    pub innocents_cut: Vec<String>,
    pub probes_sent: u64,
    pub probes_seen: u64,
    pub latency_ms: Option<(f64, f64, f64)>,
    pub attackers_in: usize,
    pub attackers_refused: usize,
    /// The server's resources before the attack, at its end, and once the attackers left.
    pub before: Option<ProcSample>,
    pub during: Option<ProcSample>,
    pub after: Option<ProcSample>,
}

impl AttackReport {
    pub fn record(&self, server: &str, workload: &str) -> Record {
        let mut r = Record::new(server, workload);
        r.set("innocents_cut", self.innocents_cut.len() as f64);
        r.set("probes_sent", self.probes_sent as f64);
        r.set("probes_seen", self.probes_seen as f64);
        if let Some((p50, p99, max)) = self.latency_ms {
            r.set("probe_p50_ms", p50);
            r.set("probe_p99_ms", p99);
            r.set("probe_max_ms", max);
        }
        r.set("attackers_in", self.attackers_in as f64);
        r.set("attackers_refused", self.attackers_refused as f64);
        for (when, sample) in [
            ("before", self.before),
            ("attack", self.during),
            ("after", self.after),
        ] {
            // RSS, and of it only the server's own memory (`RssAnon`).
            if let Some(s) = sample {
                r.set(&format!("rss_{when}_kib"), s.rss_kib as f64);
                r.set(&format!("anon_{when}_kib"), s.anon_kib as f64);
            }
        }
        r
    }
}

fn source(block: u8, i: usize) -> IpAddr {
    // 127.0.<block + i / 250>.<1 + i % 250>
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        block + (i / 250) as u8,
        1 + (i % 250) as u8,
    ))
}

pub async fn run(cfg: &AttackConfig) -> anyhow::Result<AttackReport> {
    let start = Instant::now();
    let latencies = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds"),
    ));
    let seen = Arc::new(Mutex::new(0u64));
    let cut: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for i in 0..cfg.innocents {
        let nick = format!("innocent{i}");
        let Session {
            mut reader,
            writer: wr,
        } = open_session_from(
            &cfg.target,
            Some(source(1, i)),
            &nick,
            true,
            64 * 1024,
            REGISTER,
        )
        .await?;
        let (latencies, seen, cut) = (latencies.clone(), seen.clone(), cut.clone());
        let wr = Arc::new(tokio::sync::Mutex::new(wr));
        writers.push(wr.clone());
        readers.push(tokio::spawn(async move {
            loop {
                while let Some(line) = reader.next_line() {
                    if let Some(pong) = pong_for(line) {
                        let _ = wr.lock().await.write_all(&pong).await;
                        continue;
                    }
                    if command(line) == b"ERROR" {
                        cut.lock()
                            .unwrap()
                            .insert(nick.clone(), String::from_utf8_lossy(line).into_owned());
                    }
                    if let Some(text) = trailing(line)
                        && let Some(at) = text.strip_prefix(b"probe ")
                        && let Some(sent) = std::str::from_utf8(at)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                    {
                        let now = start.elapsed().as_micros() as u64;
                        let _ = latencies
                            .lock()
                            .unwrap()
                            .record(now.saturating_sub(sent).max(1));
                        *seen.lock().unwrap() += 1;
                    }
                }
                match reader.fill().await {
                    Ok(true) => {}
                    _ => {
                        cut.lock()
                            .unwrap()
                            .entry(nick.clone())
                            .or_insert_with(|| "connection closed".into());
                        return;
                    }
                }
            }
        }));
    }
    let mut report = AttackReport {
        before: sample_opt(cfg.pid),
        ..AttackReport::default()
    };

    // The probe: innocent0 says a timestamp every probe_every until the end.
    let prober = writers.first().cloned().context("at least one innocent")?;
    let (every, duration, channel) = (cfg.probe_every, cfg.duration, cfg.target.channel.clone());
    let probes = tokio::spawn(async move {
        let mut sent = 0u64;
        let end = Instant::now() + duration;
        let mut next = tokio::time::Instant::now();
        while Instant::now() < end {
            tokio::time::sleep_until(next).await;
            next += every;
            let line = format!(
                "PRIVMSG {channel} :probe {}\r\n",
                start.elapsed().as_micros()
            );
            if prober
                .lock()
                .await
                .write_all(line.as_bytes())
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        sent
    });

    // The attack: every attacker registers, then all burst at once (the worst case, and the
    // same whatever the machine's load), one burst each, never reading.
    let text = "A".repeat(cfg.line_bytes.saturating_sub(20).max(1));
    let all_in = Arc::new(tokio::sync::Barrier::new(cfg.attackers));
    let mut attackers = Vec::new();
    for i in 0..cfg.attackers {
        let (cfg, text, all_in) = (cfg.clone(), text.clone(), all_in.clone());
        attackers.push(tokio::spawn(async move {
            let nick = format!("attacker{i}");
            let session = open_session_from(
                &cfg.target,
                Some(source(2, i)),
                &nick,
                true,
                16 * 1024,
                REGISTER,
            )
            .await;
            all_in.wait().await;
            // Refused (the per-address limits, a full server): counted, not an error.
            let Session {
                reader,
                writer: mut wr,
            } = session.ok()?;
            let mut burst = String::new();
            for n in 0..cfg.burst {
                burst.push_str(&format!("PRIVMSG {} :{n} {text}\r\n", cfg.target.channel));
            }
            let _ = wr.write_all(burst.as_bytes()).await;
            // Hold the connection, never reading, until the bench ends.
            Some((reader, wr))
        }));
    }
    let mut held = Vec::new();
    for a in attackers {
        match a.await? {
            Some(conn) => {
                report.attackers_in += 1;
                held.push(conn);
            }
            None => report.attackers_refused += 1,
        }
    }
    report.probes_sent = probes.await?;
    // Let the last probes arrive (each innocent but the prober gets each probe).
    let expected = report.probes_sent * (cfg.innocents as u64).saturating_sub(1);
    let deadline = Instant::now() + cfg.settle;
    while *seen.lock().unwrap() < expected
        && cut.lock().unwrap().is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    report.during = sample_opt(cfg.pid);
    drop(held);
    tokio::time::sleep(cfg.settle).await;
    report.after = sample_opt(cfg.pid);
    report.probes_seen = *seen.lock().unwrap();
    let h = latencies.lock().unwrap();
    if !h.is_empty() {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        report.latency_ms = Some((ms(0.5), ms(0.99), h.max() as f64 / 1000.0));
    }
    report.innocents_cut = cut
        .lock()
        .unwrap()
        .iter()
        .map(|(n, why)| format!("{n}: {why}"))
        .collect();
    for r in readers {
        r.abort();
    }
    Ok(report)
}
