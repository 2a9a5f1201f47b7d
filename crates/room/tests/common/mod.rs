//! The core's socket-free test driver, shared by the core's test files.
#![allow(dead_code)]

use parla_room::{Config, ConnId, Millis, Output, Server};

/// A socket-free driver: feeds lines to the core and collects what it sends, per connection.
pub struct Harness {
    pub server: Server,
    pub now: Millis,
    /// Everything drained so far, as `(connection, line without CRLF)`; closes are `CLOSE <reason>`.
    pub log: Vec<(ConnId, String)>,
}

pub const T0: u64 = 1_795_000_000_000;

impl Harness {
    pub fn new() -> Self {
        Self::with(Config::default())
    }

    pub fn with(config: Config) -> Self {
        Harness {
            server: Server::new(config, Millis(T0)),
            now: Millis(T0),
            log: Vec::new(),
        }
    }

    pub fn connect(&mut self) -> ConnId {
        self.connect_from("192.0.2.7")
    }

    pub fn connect_from(&mut self, host: &str) -> ConnId {
        self.server.handle_connect(self.now, host)
    }

    /// Connects from `host` and registers `nick` after asking for `caps` (what it was sent
    /// stays in the log).
    pub fn user_with(&mut self, nick: &str, host: &str, caps: &str) -> ConnId {
        let c = self.connect_from(host);
        if !caps.is_empty() {
            self.send(c, &format!("CAP REQ :{caps}"));
        }
        self.send(c, &format!("NICK {nick}"));
        self.send(c, &format!("USER {nick} 0 * :{nick} Example"));
        if !caps.is_empty() {
            self.send(c, "CAP END");
        }
        assert!(
            self.saw(c, " 001 "),
            "{nick} registered: {:?}",
            self.lines(c)
        );
        c
    }

    pub fn send(&mut self, c: ConnId, line: &str) {
        self.server.handle_line(self.now, c, line.as_bytes());
        self.drain();
    }

    /// Drains outputs into the log; returns the new ones.
    pub fn drain(&mut self) -> Vec<(ConnId, String)> {
        let mut new = Vec::new();
        while let Some(out) = self.server.poll_output() {
            let sends = match out {
                Output::Send { to, line } => vec![(to, line)],
                Output::Broadcast { to, line } => {
                    assert!(to.len() > 1, "a broadcast to one is a Send");
                    to.into_iter().map(|to| (to, line.clone())).collect()
                }
                Output::Close { conn, reason } => {
                    new.push((conn, format!("CLOSE {reason}")));
                    continue;
                }
            };
            new.extend(sends.into_iter().map(|(to, line)| {
                let text = std::str::from_utf8(&line)
                    .expect("core sends UTF-8")
                    .to_owned();
                assert!(
                    text.ends_with("\r\n"),
                    "every line ends with CRLF: {text:?}"
                );
                assert!(
                    line.len() <= 512 || text.starts_with('@'),
                    "line over 512 bytes: {text:?}"
                );
                (to, text.trim_end_matches("\r\n").to_owned())
            }));
        }
        self.log.extend(new.iter().cloned());
        new
    }

    /// Connects and registers `nick`, clearing the log.
    pub fn user(&mut self, nick: &str) -> ConnId {
        let c = self.connect();
        self.send(c, &format!("NICK {nick}"));
        self.send(c, &format!("USER {nick} 0 * :{nick} Example"));
        assert!(
            self.saw(c, " 001 "),
            "{nick} registered: {:?}",
            self.lines(c)
        );
        self.log.clear();
        c
    }

    /// Advances the clock by `ms`, firing the core's timers on the way like a runtime would.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now.plus(ms);
        while let Some(due) = self.server.poll_timeout().filter(|&d| d <= end) {
            self.now = due.max(self.now);
            self.server.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    pub fn lines(&self, c: ConnId) -> Vec<&str> {
        self.log
            .iter()
            .filter(|(to, _)| *to == c)
            .map(|(_, l)| l.as_str())
            .collect()
    }

    pub fn saw(&self, c: ConnId, needle: &str) -> bool {
        self.lines(c).iter().any(|l| l.contains(needle))
    }

    pub fn clear(&mut self) {
        self.log.clear();
    }
}
