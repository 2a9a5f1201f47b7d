//! The client core fed arbitrary lines from a hostile server: it must never panic, and every
//! line it sends must be one line (no CR, LF or NUL inside) of at most 512 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parla_room::Millis;
use parla_room::client::{Command, Config, Session};

fuzz_target!(|data: &[u8]| {
    let mut now = Millis(0);
    let mut session = Session::new(Config::default(), now);
    session.handle_command(now, Command::Nick("fuzzer".into()));
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        session.handle_line(now, line.strip_suffix(b"\r").unwrap_or(line));
        if i % 7 == 3 {
            session.handle_command(now, Command::Say("hello there".into()));
        }
        now = now.plus(250);
        session.handle_timeout(now);
        while session.poll_event().is_some() {}
        while let Some(out) = session.poll_transmit() {
            assert!(out.len() <= 510, "{} bytes: {out:?}", out.len());
            assert!(!out.contains(['\r', '\n', '\0']), "{out:?}");
        }
    }
});
