//! `parla-sim`: run scenario scripts and explore random ones.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use parla_sim::{RunOptions, Script, run};

/// Parla's deterministic simulation: the real server and client in a simulated network.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a scenario script and print its transcript.
    Run {
        /// The script (e.g. tests/scenarios/01-three-users-chat.scn).
        file: std::path::PathBuf,
        /// The seed (default: the script's `seed` line, else 1).
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
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
            for v in outcome
                .violations
                .iter()
                .chain(&outcome.failed_expectations)
            {
                eprintln!("FAILED: {v}");
            }
            if outcome.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
