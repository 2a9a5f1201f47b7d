//! `parla-bench`: drives any IRC server on loopback with the `fanout`, `idle` and `churn`
//! workloads, and prints the side-by-side `table` of their results. See the crate docs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use parla_bench::attack::{self, AttackConfig};
use parla_bench::churn::{self, ChurnConfig};
use parla_bench::fanout::{self, FanoutConfig};
use parla_bench::idle::{self, IdleConfig};
use parla_bench::{Record, Target, report};

/// A load bench for IRC servers (Parla, ngircd, InspIRCd, …), on loopback only.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The server's address (127.0.0.x only).
    #[arg(long, default_value = "127.0.0.1:6667")]
    addr: SocketAddr,
    /// The server's PID, for its CPU seconds and RSS from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// The server's name in the results.
    #[arg(long, default_value = "server")]
    label: String,
    /// The workload's name in the results (defaults to one built from its parameters).
    #[arg(long)]
    name: Option<String>,
    /// Append the result as a JSON line to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The room to use.
    #[arg(long, default_value = "#bench")]
    channel: String,
    /// The server puts users in the room itself (Parla's default room): don't send JOIN.
    #[arg(long)]
    auto_join: bool,
    /// Spread connections over 127.0.0.1 … 127.0.0.N (each has ~28,000 ephemeral ports).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Registrations in progress at once.
    #[arg(long, default_value_t = 250)]
    connect_concurrency: usize,
    /// Speak TLS to the server, trusting exactly the certificate in this PEM file (the one it
    /// serves, e.g. made by `parla-server self-signed`).
    #[arg(long, value_name = "CERT_PEM")]
    tls_cert: Option<PathBuf>,
    /// Another server of the same chat (a Parla cluster; repeat the flag): clients are spread
    /// over --addr and these in turn.
    #[arg(long)]
    also: Vec<SocketAddr>,
    /// The PIDs of the --also servers (their CPU and RSS are added to --pid's).
    #[arg(long)]
    also_pid: Vec<u32>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// C members in one room, S of them sending M messages each.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[arg(long, short = 'c', default_value_t = 1000)]
        clients: usize,
        #[arg(long, short = 's', default_value_t = 10)]
        senders: usize,
        /// Messages per sender.
        #[arg(long, short = 'm', default_value_t = 400)]
        messages: usize,
        /// Messages per sender in flight at most (full speed).
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Aggregate messages per second instead of full speed.
        #[arg(long)]
        rate: Option<f64>,
        /// Stop and report loss after this long without a delivery.
        #[arg(long, default_value = "10", value_parser = secs)]
        stall_timeout: Duration,
    },
    /// N registered idle connections; the server's RSS per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, short = 'n', default_value_t = 10_000)]
        conns: usize,
        /// Seconds to hold them before sampling.
        #[arg(long, default_value = "2", value_parser = secs)]
        hold: Duration,
    },
    /// Sessions that connect, register, join, speak and quit, in a loop.
    Churn {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Sessions before the baseline RSS is taken (default: 5%, at most 2,000).
        #[arg(long)]
        warmup: Option<usize>,
    },
    /// The room-emptying attack: innocents chatting with a latency probe, then many fresh
    /// connections (one address each) that each send one burst into the room and never read.
    Attack {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 20)]
        innocents: usize,
        #[arg(long, default_value_t = 200)]
        attackers: usize,
        /// Messages in each attacker's burst.
        #[arg(long, default_value_t = 20)]
        burst: usize,
        /// Bytes per attack message.
        #[arg(long, default_value_t = 400)]
        line_bytes: usize,
        /// Seconds between the innocents' probes.
        #[arg(long, default_value = "0.25", value_parser = secs)]
        probe_every: Duration,
        /// Seconds the innocents chat once the attack starts.
        #[arg(long, default_value = "10", value_parser = secs)]
        duration: Duration,
        /// Seconds to wait for the last probes, and for memory after the attackers left.
        #[arg(long, default_value = "5", value_parser = secs)]
        settle: Duration,
    },
    /// The history store alone, in this process: appends (one commit each, as the server
    /// makes them), then LATEST 100 scans over all of them.
    Store {
        /// Where to make the store (a fresh temporary directory in it).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        #[arg(long, default_value_t = 2000)]
        queries: u64,
        /// The name in the results.
        #[arg(long, default_value = "parla")]
        label: String,
        /// Append the result as a JSON line to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// History through a running server: SENDERS fill the room with MESSAGES (pipelined), then
    /// one client asks CHATHISTORY LATEST <room> * 100, QUERIES times, one after another.
    History {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1)]
        senders: usize,
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        #[arg(long, default_value_t = 2000)]
        queries: u64,
        /// Seconds between filling the room and the first query.
        #[arg(long, default_value = "0", value_parser = secs)]
        settle: Duration,
    },
    /// Prints the Markdown table of JSON-lines results, with baseline/peer ratios.
    Table {
        files: Vec<PathBuf>,
        #[arg(long, default_value = "parla")]
        baseline: String,
    },
}

fn secs(s: &str) -> Result<Duration, String> {
    s.trim_end_matches('s')
        .parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| e.to_string())
}

impl Common {
    fn target(&self) -> anyhow::Result<Target> {
        let tls = match &self.tls_cert {
            Some(path) => Some(parla_net::tls::Fingerprint::of_pem_file(path)?),
            None => None,
        };
        Ok(Target {
            addr: self.addr,
            channel: self.channel.clone(),
            auto_join: self.auto_join,
            sources: self.sources,
            tls,
            also: self.also.clone(),
        })
    }

    fn save(&self, record: Record) -> anyhow::Result<()> {
        save(self.out.as_deref(), record)
    }
}

/// Appends `record` as a JSON line to `out`, if given.
fn save(out: Option<&std::path::Path>, record: Record) -> anyhow::Result<()> {
    if let Some(path) = out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(&record)?)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Cmd::Table { files, baseline } = &args.cmd {
        let mut records = Vec::new();
        for f in files {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            records.extend(report::parse_lines(&text)?);
        }
        print!("{}", report::table(&records, baseline));
        return Ok(());
    }
    parla_net::process::raise_fd_limit(Some(1 << 20));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args.cmd))
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Fanout {
            common,
            clients,
            senders,
            messages,
            window,
            rate,
            stall_timeout,
        } => {
            let mut cfg = FanoutConfig::new(common.target()?, clients, senders, messages);
            cfg.window = window;
            cfg.rate = rate;
            cfg.stall_timeout = stall_timeout;
            cfg.server_pid = common.pid;
            cfg.also_pids = common.also_pid.clone();
            cfg.connect_concurrency = common.connect_concurrency;
            let report = fanout::run(&cfg).await?;
            println!("[{}] {report}", common.label);
            let name = common.name.clone().unwrap_or_else(|| match rate {
                Some(r) => format!("fanout-{clients}x{senders}-rate{r}"),
                None => format!("fanout-{clients}x{senders}"),
            });
            common.save(report.record(&common.label, &name))?;
            anyhow::ensure!(
                report.lost() == 0 && report.disordered == 0,
                "{} deliveries lost, {} out of order",
                report.lost(),
                report.disordered
            );
        }
        Cmd::Idle {
            common,
            conns,
            hold,
        } => {
            let mut cfg = IdleConfig::new(common.target()?, conns);
            cfg.hold = hold;
            cfg.server_pid = common.pid;
            cfg.connect_concurrency = common.connect_concurrency;
            let report = idle::run(&cfg).await?;
            println!("[{}] {report}", common.label);
            let name = common
                .name
                .clone()
                .unwrap_or_else(|| format!("idle-{conns}"));
            common.save(report.record(&common.label, &name))?;
            anyhow::ensure!(
                report.registered == conns,
                "only {} of {conns} connections registered",
                report.registered
            );
        }
        Cmd::Churn {
            common,
            sessions,
            concurrency,
            warmup,
        } => {
            let mut cfg = ChurnConfig::new(common.target()?, sessions);
            cfg.concurrency = concurrency;
            cfg.server_pid = common.pid;
            if let Some(w) = warmup {
                cfg.warmup = w;
            }
            let report = churn::run(&cfg).await?;
            println!("[{}] {report}", common.label);
            let name = common
                .name
                .clone()
                .unwrap_or_else(|| format!("churn-{sessions}"));
            common.save(report.record(&common.label, &name))?;
            anyhow::ensure!(report.failed == 0, "{} sessions failed", report.failed);
        }
        Cmd::Attack {
            common,
            innocents,
            attackers,
            burst,
            line_bytes,
            probe_every,
            duration,
            settle,
        } => {
            let cfg = AttackConfig {
                settle,
                target: common.target()?,
                pid: common.pid,
                innocents,
                attackers,
                burst,
                line_bytes,
                probe_every,
                duration,
            };
            let report = attack::run(&cfg).await?;
            println!("[{}] {report:#?}", common.label);
            let name = common
                .name
                .clone()
                .unwrap_or_else(|| format!("attack-{attackers}x{burst}"));
            common.save(report.record(&common.label, &name))?;
        }
        Cmd::Store {
            dir,
            messages,
            queries,
            label,
            out,
        } => {
            let tmp = tempfile::tempdir_in(&dir)
                .with_context(|| format!("making a directory in {}", dir.display()))?;
            let report = tokio::task::spawn_blocking(move || {
                parla_bench::history::store(tmp.path(), messages, queries)
            })
            .await??;
            println!("[{label}] {report}");
            save(
                out.as_deref(),
                report.record(&label, &format!("store-{messages}")),
            )?;
        }
        Cmd::History {
            common,
            senders,
            messages,
            queries,
            settle,
        } => {
            let target = common.target()?;
            let report =
                parla_bench::history::through_server(&target, senders, messages, queries, settle)
                    .await?;
            println!("[{}] {report}", common.label);
            let name = common
                .name
                .clone()
                .unwrap_or_else(|| format!("history-{messages}"));
            common.save(report.record(&common.label, &name))?;
        }
        Cmd::Table { .. } => unreachable!("handled before the runtime starts"),
    }
    Ok(())
}
