//! `parla-sim`: run scenario scripts, explore random ones, replay a seed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::{Parser, Subcommand};
use parla_sim::explore::{self, Workload};
use parla_sim::{Bug, Outcome, RunOptions, Script, run};

/// Parla's deterministic simulation: the real server and client in a simulated network.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a scenario script; print its transcript and any failure.
    Run {
        /// The script, e.g. tests/scenarios/01-three-users-chat.scn.
        file: PathBuf,
        /// The seed (default: the script's `seed` line, else 1).
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        timing: Timing,
    },
    /// Run random workloads and faults for many seeds; print the failing ones.
    Explore {
        /// How many seeds.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Clients at the start of each run.
        #[arg(long, default_value_t = Workload::default().clients)]
        clients: usize,
        /// Random steps in each run.
        #[arg(long, default_value_t = Workload::default().steps)]
        steps: usize,
        /// Three servers as one cluster on a simulated broker, instead of one server.
        #[arg(long)]
        cluster: bool,
        /// Seeds run at once, one per thread (default: every core). The results do not depend
        /// on it: each seed is its own simulation, and failures are listed in seed order.
        #[arg(long, default_value_t = explore::default_jobs())]
        jobs: usize,
        /// Print a progress line (seeds done, seeds/s, failures so far) on stderr.
        #[arg(long)]
        progress: bool,
        /// Plant a deliberate bug in the core, to see the checkers catch it.
        #[arg(long, hide = true, value_parser = parse_bug)]
        plant_bug: Option<Bug>,
        #[command(flatten)]
        timing: Timing,
    },
    /// Rebuild the explorer's run for one seed; print its script and transcript.
    Replay {
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Clients at the start (as explored).
        #[arg(long, default_value_t = Workload::default().clients)]
        clients: usize,
        /// Random steps (as explored).
        #[arg(long, default_value_t = Workload::default().steps)]
        steps: usize,
        /// A cluster run (as explored).
        #[arg(long)]
        cluster: bool,
        #[command(flatten)]
        timing: Timing,
    },
}

/// How simulated time passes (the transcript does not depend on it).
#[derive(Debug, clap::Args)]
struct Timing {
    /// Tick through idle time one millisecond at a time instead of skipping it (slower; the
    /// same transcript: for checking that skipping changes nothing).
    #[arg(long)]
    no_skip_idle: bool,
    /// Run every host in every step instead of only those with work (slower; the same
    /// transcript: for checking that leaving idle hosts out changes nothing).
    #[arg(long)]
    tick_every_host: bool,
    /// How long to let things settle after a script's last step before the final checks
    /// (timeouts need it: the explorer's clients give up on a silent server within ~15 s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    settle: Duration,
}

impl Timing {
    fn options(&self) -> RunOptions {
        RunOptions {
            skip_idle: !self.no_skip_idle,
            lazy_hosts: !self.tick_every_host,
            settle: self.settle,
            ..RunOptions::default()
        }
    }
}

#[cfg(feature = "deliberate-bugs")]
fn parse_bug(name: &str) -> Result<Bug, String> {
    match name {
        "case-sensitive-names" => Ok(Bug::CaseSensitiveNames),
        "drop-for-one-member" => Ok(Bug::DropForOneMember),
        "name-kept-on-disconnect" => Ok(Bug::NameKeptOnDisconnect),
        "quit-untold-to-one" => Ok(Bug::QuitUntoldToOne),
        "part-unseen-by-leaver" => Ok(Bug::PartUnseenByLeaver),
        "relay-limit-off-by-one" => Ok(Bug::RelayLimitOffByOne),
        "history-page-short" => Ok(Bug::HistoryPageShort),
        "invisible-count-kept" => Ok(Bug::InvisibleCountKept),
        "timeouts-ignored" => Ok(Bug::TimeoutsIgnored),
        _ => Err("known bugs: case-sensitive-names, drop-for-one-member, name-kept-on-disconnect, quit-untold-to-one, part-unseen-by-leaver, relay-limit-off-by-one, history-page-short, invisible-count-kept, timeouts-ignored".into()),
    }
}

#[cfg(not(feature = "deliberate-bugs"))]
fn parse_bug(_: &str) -> Result<Bug, String> {
    Err("this parla-sim was built without the planted bugs; \
         run it with `cargo run -p parla-sim --features deliberate-bugs -- …`"
        .into())
}

/// The explorer's progress on stderr, redrawn in place on a terminal (at most ~4 times a
/// second), else a line every 10 seconds.
#[derive(Default)]
struct ProgressLine {
    last: Mutex<Option<Duration>>,
}

impl ProgressLine {
    fn show(&self, p: explore::Progress) {
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(10)
        };
        let mut last = self.last.lock().expect("progress printing never panics");
        if p.done < p.total && last.is_some_and(|l| p.elapsed < l + every) {
            return;
        }
        *last = Some(p.elapsed);
        let rate = p.done as f64 / p.elapsed.as_secs_f64().max(1e-9);
        let text = format!(
            "{}/{} seeds, {rate:.1} seeds/s, {} failed",
            p.done, p.total, p.failed
        );
        if tty {
            eprint!("\r{text}   ");
        } else {
            eprintln!("{text}");
        }
    }
}

fn report(outcome: &Outcome) -> ExitCode {
    for v in &outcome.violations {
        eprintln!("VIOLATION: {v}");
    }
    for f in &outcome.failed_expectations {
        eprintln!("EXPECTATION FAILED: {f}");
    }
    if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Log lines stamped with the simulation's time and the host whose software logged them.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        match turmoil::current_host() {
            Some(host) => write!(w, "{:>9.3}s {host}", at.as_secs_f64()),
            None => write!(w, "{:>9.3}s", at.as_secs_f64()),
        }
    }
}

fn main() -> ExitCode {
    // The hosts' own logs (server and clients), only when asked for: RUST_LOG=parla_net=debug.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_timer(SimTime)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    match Args::parse().command {
        Cmd::Run { file, seed, timing } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("parla-sim: could not read {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            let script = match Script::parse(&file.display().to_string(), &text) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("parla-sim: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = RunOptions {
                seed: seed.or(script.seed).unwrap_or(1),
                ..timing.options()
            };
            let outcome = run(&script, &options);
            print!("{}", outcome.transcript);
            report(&outcome)
        }
        Cmd::Explore {
            seeds,
            start,
            clients,
            steps,
            cluster,
            jobs,
            progress,
            plant_bug,
            timing,
        } => {
            let workload = Workload {
                clients,
                steps,
                cluster,
            };
            let options = RunOptions {
                bug: plant_bug,
                ..timing.options()
            };
            let (failures, took) = if progress {
                let line = ProgressLine::default();
                let result = explore::explore_with(start, seeds, workload, &options, jobs, &|p| {
                    line.show(p)
                });
                if std::io::stderr().is_terminal() {
                    eprintln!();
                }
                result
            } else {
                explore::explore_with(start, seeds, workload, &options, jobs, &|_| {})
            };
            for f in &failures {
                println!("seed {} FAILED:", f.seed);
                for v in f
                    .outcome
                    .violations
                    .iter()
                    .chain(&f.outcome.failed_expectations)
                {
                    println!("  {v}");
                }
                println!("  replay: {}", explore::replay_command(f.seed, workload));
            }
            let secs = took.as_secs_f64();
            println!(
                "explored {seeds} seeds ({start}..{}) with {clients} clients and {steps} steps each on {jobs} threads in {secs:.1}s ({:.1} seeds/s): {} failed",
                start + seeds,
                seeds as f64 / secs.max(1e-9),
                failures.len()
            );
            if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Replay {
            seed,
            clients,
            steps,
            cluster,
            timing,
        } => {
            let workload = Workload {
                clients,
                steps,
                cluster,
            };
            let explored = explore::run_seed(seed, workload, &timing.options());
            println!("{}", explored.script);
            print!("{}", explored.outcome.transcript);
            report(&explored.outcome)
        }
    }
}
