//! The server core fed arbitrary lines from three connections (the first byte of each line
//! picks the connection; a line starting 0xff is a one-second wait): it must never panic, and
//! every line it queues must fit IRC's 512 bytes (tags aside) with no CR, LF or NUL inside.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parla_room::{Config, Millis, Output, Server};

fuzz_target!(|data: &[u8]| {
    let mut now = Millis(1_795_000_000_000);
    let mut core = Server::new(Config::default(), now);
    let conns = [
        core.handle_connect(now, "192.0.2.1"),
        core.handle_connect(now, "2001:db8::1"),
        core.handle_connect(now, "192.0.2.3"),
    ];
    for line in data.split(|&b| b == b'\n') {
        match line.split_first() {
            Some((0xff, _)) => {
                now = now.plus(1_000);
                core.handle_timeout(now);
            }
            Some((&pick, rest)) => {
                let conn = conns[usize::from(pick) % conns.len()];
                core.handle_line(now, conn, rest.strip_suffix(b"\r").unwrap_or(rest));
            }
            None => {}
        }
        while let Some(out) = core.poll_output() {
            let line = match &out {
                Output::Send { line, .. } | Output::Broadcast { line, .. } => line,
                Output::Close { .. } => continue,
            };
            let body = match line.first() {
                Some(b'@') => &line[line.iter().position(|&b| b == b' ').map_or(0, |i| i + 1)..],
                _ => &line[..],
            };
            assert!(
                body.len() <= 512,
                "{} bytes: {:?}",
                body.len(),
                String::from_utf8_lossy(line)
            );
            let inner = &line[..line.len() - 2];
            assert!(line.ends_with(b"\r\n"), "{line:?}");
            assert!(
                !inner.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
                "{line:?}"
            );
        }
    }
});
