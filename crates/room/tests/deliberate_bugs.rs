//! The planted bugs behave as the tests that rely on them expect (feature `deliberate-bugs`).

#![cfg(feature = "deliberate-bugs")]

use std::panic::{AssertUnwindSafe, catch_unwind};

use parla_room::{Bug, Config, Millis, Output, Server};

/// The runtime's panic-policy test relies on VERSION panicking after its `351` was queued and
/// before the `005` lines that normally follow.
#[test]
fn panic_in_handler_panics_in_version_after_queuing_351() {
    let config = Config {
        bug: Some(Bug::PanicInHandler),
        ..Config::default()
    };
    let mut server = Server::new(config, Millis(0));
    let c = server.handle_connect(Millis(0), "192.0.2.7");
    server.handle_line(Millis(0), c, b"NICK alice");
    server.handle_line(Millis(0), c, b"USER alice 0 * :Alice");
    while server.poll_output().is_some() {}

    let panicked = catch_unwind(AssertUnwindSafe(|| {
        server.handle_line(Millis(0), c, b"VERSION");
    }));
    assert!(panicked.is_err(), "VERSION panics");
    let mut lines = Vec::new();
    while let Some(out) = server.poll_output() {
        match out {
            Output::Send { line, .. } => lines.push(String::from_utf8_lossy(&line).into_owned()),
            other => panic!("only sends are queued, got {other:?}"),
        }
    }
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(" 351 alice "), "{lines:?}");
}
