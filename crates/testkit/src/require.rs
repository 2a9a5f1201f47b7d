//! The one rule for a test that needs something from outside the repository (a program such as
//! WeeChat or ngircd, `unshare`, permission to send ICMP).
//!
//! Locally a missing tool skips the test with a line on stderr saying which test and why, so a
//! developer without it still gets a green run and knows what did not run. Under `CI=true` the
//! same absence fails the test: CI installs every tool with `ci/install-test-deps` and runs as
//! root, so there a skip would only hide a broken setup.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use parla_net::IcmpPinger;
use parla_net::ping::{PingError, Pinger};

/// Whether the test may go on. `available` is `Ok` when `what` is there, else why not.
/// When it is missing: panics under `CI=true`; otherwise prints
/// `skipped: <test>: <what> is missing: <reason>` to stderr and returns `false`, and the test
/// returns early (or skips the part that needs it).
#[track_caller]
pub fn require(what: &str, available: Result<(), String>) -> bool {
    let Err(reason) = available else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI must have {what}: install it in ci/install-test-deps (CI runs as root) ({reason})"
        );
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    eprintln!("skipped: {test}: {what} is missing: {reason}");
    false
}

/// [`require`] for a program on the `PATH`.
#[track_caller]
pub fn require_tool(program: &str) -> bool {
    require(program, on_path(program))
}

/// `Ok` if `program` is an executable file in a directory of `$PATH`.
pub fn on_path(program: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        Path::new(&dir)
            .join(program)
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    if found {
        Ok(())
    } else {
        Err(format!("`{program}` is not on the PATH"))
    }
}

/// `Ok` if this process may send ICMP echo requests (a datagram or a raw socket): one ping to
/// 127.0.0.1. Run it inside a tokio runtime.
pub async fn icmp_permitted() -> Result<(), String> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    match IcmpPinger::new()
        .ping(localhost, Duration::from_secs(2))
        .await
    {
        Err(error @ PingError::NotPermitted { .. }) => Err(parla_net::error_chain(&error)),
        // Anything else (even a lost reply) means sending was allowed.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_the_path() {
        assert_eq!(on_path("sh"), Ok(()));
        let missing = on_path("parla-no-such-program");
        assert_eq!(
            missing,
            Err("`parla-no-such-program` is not on the PATH".into())
        );
    }

    #[test]
    fn present_is_true_and_missing_skips_or_fails_under_ci() {
        assert!(require("sh", on_path("sh")));
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let missing = std::panic::catch_unwind(|| require("a tool", Err("gone".into())));
        match missing {
            Ok(go_on) => assert!(!ci && !go_on),
            Err(panic) => {
                assert!(ci);
                let text = panic.downcast_ref::<String>().unwrap();
                assert!(text.contains("CI must have a tool"), "{text}");
                assert!(text.contains("ci/install-test-deps"), "{text}");
            }
        }
    }
}
