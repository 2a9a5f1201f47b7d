//! Every scenario in `tests/scenarios` runs under its seed, passes its expectations and the
//! invariants, and produces the transcript reviewed in `snapshots/` (a changed transcript fails
//! until `cargo insta review` accepts it; with `CI=true` nothing is ever written).

use std::path::{Path, PathBuf};

use parla_sim::{Outcome, RunOptions, Script, run};
use rstest::rstest;

fn run_file(path: &Path, seed: Option<u64>) -> Outcome {
    let text = std::fs::read_to_string(path).expect("scenario readable");
    let name = path
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned();
    let script =
        Script::parse(&format!("tests/scenarios/{name}"), &text).unwrap_or_else(|e| panic!("{e}"));
    let seed = seed.or(script.seed).unwrap_or(1);
    run(
        &script,
        &RunOptions {
            seed,
            ..RunOptions::default()
        },
    )
}

fn assert_passed(path: &Path, outcome: &Outcome) {
    assert!(
        outcome.passed(),
        "{} (seed {}) failed:\n{}\n\nreplay with: cargo run -p parla-sim -- run {} --seed {}",
        path.display(),
        outcome.seed,
        outcome
            .violations
            .iter()
            .chain(&outcome.failed_expectations)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        path.display(),
        outcome.seed
    );
}

#[test]
fn scenarios_match_their_reviewed_transcripts() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../../snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::glob!("../../../tests/scenarios", "*.scn", |path| {
            let outcome = run_file(path, None);
            assert_passed(path, &outcome);
            insta::assert_snapshot!(outcome.transcript);
        });
    });
}

/// The scenarios' claims hold under other seeds too (other latencies, other orders).
#[rstest]
fn scenarios_hold_under_other_seeds(
    #[files("tests/scenarios/*.scn")]
    #[base_dir = "../.."]
    path: PathBuf,
    #[values(2, 3, 4)] seed: u64,
) {
    assert_passed(&path, &run_file(&path, Some(seed)));
}

/// Same scenario, same seed: byte-identical transcripts.
#[rstest]
fn scenarios_are_deterministic(
    #[files("tests/scenarios/*.scn")]
    #[base_dir = "../.."]
    path: PathBuf,
) {
    let first = run_file(&path, Some(9));
    let second = run_file(&path, Some(9));
    assert!(first.transcript.lines().count() > 20, "a real transcript");
    assert_eq!(
        first.transcript,
        second.transcript,
        "{} is not deterministic",
        path.display()
    );
}

#[test]
fn a_script_error_names_file_line_and_what_was_expected() {
    let err = Script::parse("tests/scenarios/x.scn", "server\nalice say\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(
        err.to_string()
            .starts_with("tests/scenarios/x.scn:2: \"alice\" \"say\": expected a step"),
        "{err}"
    );
}

#[test]
fn a_failed_expectation_names_file_and_line() {
    let script = Script::parse("t.scn", "server\nclient a\nwait 100ms\na name alice\nwait 1s\nexpect a saw something never said\nexpect a closed\n").unwrap();
    let outcome = run(&script, &RunOptions::default());
    assert_eq!(
        outcome.failed_expectations.len(),
        2,
        "{:?}",
        outcome.failed_expectations
    );
    assert!(
        outcome.failed_expectations[0]
            .starts_with("t.scn:6: expected a to have seen \"something never said\"")
    );
    assert!(
        outcome.failed_expectations[1]
            .starts_with("t.scn:7: expected a to have closed, but it is still open")
    );
}
