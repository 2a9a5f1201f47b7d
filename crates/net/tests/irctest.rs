//! The IRC conformance suite irctest against this build of `parla-server`, a fresh server per
//! test, through `tests/irctest/run` (which fails below the pass-rate target it holds; the
//! failures and skips are listed in docs/conformance.md). Needs Python 3 and the suite at
//! `../shared/irctest` beside the checkout (or `IRCTEST`); pytest comes from PyPI on first use.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn irctest_passes_its_target() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let suite = std::env::var_os("IRCTEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("../shared/irctest"));
    let found = if suite.join("conftest.py").is_file() {
        Ok(())
    } else {
        Err(format!("no irctest at {}; set IRCTEST", suite.display()))
    };
    if !parla_testkit::require("the irctest suite", found)
        || !parla_testkit::require_tool("python3")
    {
        return;
    }
    let output = Command::new(repo.join("tests/irctest/run"))
        .env("IRCTEST", &suite)
        .env("PARLA_SERVER", env!("CARGO_BIN_EXE_parla-server"))
        .output()
        .expect("tests/irctest/run starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "irctest below its target, or did not run ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
