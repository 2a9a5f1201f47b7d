//! `parla-sim`: run scenario scripts, explore random ones, replay a seed.

use std::path::PathBuf;
use std::process::ExitCode;

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
        /// Plant a deliberate bug in the core, to see the checkers catch it.
        #[arg(long, hide = true, value_parser = parse_bug)]
        plant_bug: Option<Bug>,
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
    },
}

#[cfg(feature = "deliberate-bugs")]
fn parse_bug(name: &str) -> Result<Bug, String> {
    match name {
        "case-sensitive-names" => Ok(Bug::CaseSensitiveNames),
        "drop-for-one-member" => Ok(Bug::DropForOneMember),
        _ => Err("known bugs: case-sensitive-names, drop-for-one-member".into()),
    }
}

#[cfg(not(feature = "deliberate-bugs"))]
fn parse_bug(_: &str) -> Result<Bug, String> {
    Err("this parla-sim was built without the planted bugs; \
         run it with `cargo run -p parla-sim --features deliberate-bugs -- …`"
        .into())
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

fn main() -> ExitCode {
    match Args::parse().command {
        Cmd::Run { file, seed } => {
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
                ..RunOptions::default()
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
            plant_bug,
        } => {
            let workload = Workload { clients, steps };
            let (failures, took) = explore::explore(start, seeds, workload, plant_bug);
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
                "explored {seeds} seeds ({start}..{}) with {clients} clients and {steps} steps each in {secs:.1}s ({:.1} seeds/s): {} failed",
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
        } => {
            let explored = explore::run_seed(seed, Workload { clients, steps }, None);
            println!("{}", explored.script);
            print!("{}", explored.outcome.transcript);
            report(&explored.outcome)
        }
    }
}
