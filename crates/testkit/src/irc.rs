//! A raw IRC connection for tests: lines in, lines out, every read bounded by [`WAIT`].
//!
//! One type plays both sides. Against a server it is "another person" (and answers the server's
//! `PING`s while reading, as every real client does, so a long wait does not get it timed out);
//! accepted from a listener it is a scripted server for a client session, and then answers
//! nothing on its own: the test decides what the session hears.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::WAIT;

/// One raw IRC connection. Lines come back without their line ending.
pub struct RawClient {
    label: String,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Whether reading a `PING` line answers it with a `PONG` (the line is still returned).
    answer_pings: bool,
}

impl RawClient {
    /// Connects to `addr` (within [`WAIT`]); `label` names it in failure messages.
    pub async fn connect(addr: SocketAddr, label: &str) -> RawClient {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("{label}: no connection to {addr} within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{label}: connecting to {addr} failed: {e}"));
        RawClient::from_stream(stream, label)
    }

    /// Connects and [registers](RawClient::register) as `nick`, which also labels it.
    pub async fn join(addr: SocketAddr, nick: &str) -> RawClient {
        let mut client = RawClient::connect(addr, nick).await;
        client.register(nick).await;
        client
    }

    /// Accepts one connection on `listener` (within [`WAIT`]), to play the server for a client
    /// session: `PING`s from the session are returned, not answered.
    pub async fn accept(listener: &TcpListener, label: &str) -> RawClient {
        let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .unwrap_or_else(|_| panic!("{label}: nobody connected within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{label}: accept failed: {e}"));
        let mut server = RawClient::from_stream(stream, label);
        server.answer_pings = false;
        server
    }

    /// Wraps a stream the test connected itself (e.g. with a small receive buffer).
    pub fn from_stream(stream: TcpStream, label: &str) -> RawClient {
        let (r, w) = stream.into_split();
        RawClient {
            label: label.to_owned(),
            reader: BufReader::new(r),
            writer: w,
            answer_pings: true,
        }
    }

    /// Stops answering `PING`s while reading: for a client that plays dead.
    pub fn answering_no_pings(mut self) -> RawClient {
        self.answer_pings = false;
        self
    }

    /// The name this connection has in failure messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends one line (CR LF added).
    pub async fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\r\n").as_bytes()).await;
    }

    /// Sends bytes as they are (nothing added): for malformed input and bursts.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.writer.write_all(bytes))
            .await
            .unwrap_or_else(|_| panic!("{}: write timed out", self.label))
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.label));
    }

    /// `PRIVMSG target :text`.
    pub async fn say(&mut self, target: &str, text: &str) {
        self.send(&format!("PRIVMSG {target} :{text}")).await;
    }

    /// `NICK` + `USER`, without waiting for any answer.
    pub async fn send_registration(&mut self, nick: &str) {
        self.send(&format!("NICK {nick}")).await;
        self.send(&format!("USER {nick} 0 * :{nick}")).await;
    }

    /// `NICK` + `USER`, then waits for the welcome and the end of `#lobby`'s names (Parla puts
    /// everyone in `#lobby`, so the user is in the room when this returns).
    pub async fn register(&mut self, nick: &str) {
        self.send_registration(nick).await;
        self.expect_has(&format!(" 001 {nick} :Welcome")).await;
        self.expect_has(&format!(" 366 {nick} #lobby ")).await;
    }

    /// Asks for `batch` and `draft/chathistory`, then `NICK` + `USER` and `CAP END`, without
    /// waiting for any answer.
    pub async fn send_registration_for_history(&mut self, nick: &str) {
        self.send("CAP REQ :batch draft/chathistory").await;
        self.send_registration(nick).await;
        self.send("CAP END").await;
    }

    /// Sends the `CHATHISTORY` `request` and returns the lines of the `chathistory` batch that
    /// answers it (between its `BATCH +` and `BATCH -`, both left out).
    pub async fn history_page(&mut self, request: &str) -> Vec<String> {
        self.send(request).await;
        self.expect(|l| l.contains(" BATCH +") && l.contains(" chathistory "))
            .await;
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            if line.contains(" BATCH -") {
                return lines;
            }
            lines.push(line);
        }
    }

    /// The next line, `Ok(None)` at EOF, `Err(())` at `deadline`.
    pub async fn try_next_line_until(&mut self, deadline: Instant) -> Result<Option<String>, ()> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout_at(deadline, self.reader.read_until(b'\n', &mut buf))
            .await
            .map_err(|_| ())?
            .unwrap_or_else(|e| panic!("{}: read failed: {e}", self.label));
        if n == 0 {
            return Ok(None);
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf).into_owned();
        if self.answer_pings
            && let Some(token) = line.strip_prefix("PING ")
        {
            // The connection may already be closed, which is fine.
            let _ = self
                .writer
                .write_all(format!("PONG {token}\r\n").as_bytes())
                .await;
        }
        Ok(Some(line))
    }

    /// The next line, or `None` at EOF; fails after `deadline`.
    pub async fn next_line_until(&mut self, deadline: Instant) -> Option<String> {
        self.try_next_line_until(deadline)
            .await
            .unwrap_or_else(|()| panic!("{}: no line in time", self.label))
    }

    /// The next line within [`WAIT`], or `None` at EOF.
    pub async fn next_line(&mut self) -> Option<String> {
        self.next_line_until(Instant::now() + WAIT).await
    }

    /// The next line within [`WAIT`]; fails at EOF.
    pub async fn line(&mut self) -> String {
        self.next_line()
            .await
            .unwrap_or_else(|| panic!("{}: the other side closed the connection", self.label))
    }

    /// Reads lines until one matches `pred` (within [`WAIT`]) and returns it. Fails on EOF or
    /// timeout, showing the lines that did not match.
    pub async fn expect(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            match self.try_next_line_until(deadline).await {
                Ok(Some(line)) if pred(&line) => return line,
                Ok(Some(line)) => skipped.push(line),
                Ok(None) => panic!(
                    "{}: EOF before the expected line; got {skipped:#?}",
                    self.label
                ),
                Err(()) => panic!(
                    "{}: no expected line within {WAIT:?}; got {skipped:#?}",
                    self.label
                ),
            }
        }
    }

    /// Reads lines until one contains `needle`.
    pub async fn expect_has(&mut self, needle: &str) -> String {
        self.expect(|l| l.contains(needle)).await
    }

    /// Reads lines until one starts with `prefix`.
    pub async fn expect_prefix(&mut self, prefix: &str) -> String {
        self.expect(|l| l.starts_with(prefix)).await
    }

    /// Reads lines until the numeric reply `code` (e.g. `"433"`).
    pub async fn expect_numeric(&mut self, code: &str) -> String {
        self.expect(|l| numeric(l) == Some(code)).await
    }

    /// Reads the rest of the stream as bytes, up to EOF (within [`WAIT`]); `Err` if the
    /// connection ends with an error instead.
    pub async fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, self.reader.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| {
                panic!("{}: the connection did not end within {WAIT:?}", self.label)
            })?;
        Ok(rest)
    }

    /// Reads to EOF (within [`WAIT`]) and returns the lines read.
    pub async fn expect_eof(&mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut lines = Vec::new();
        while let Some(line) = self.next_line_until(deadline).await {
            lines.push(line);
            assert!(lines.len() < 10_000, "{}: endless output", self.label);
        }
        lines
    }
}

/// The command of a line with a source (`:server 001 nick ...` gives `001`), tags skipped.
pub fn numeric(line: &str) -> Option<&str> {
    let line = skip_tags(line)?;
    let (_source, rest) = line.strip_prefix(':')?.split_once(' ')?;
    let command = rest.split(' ').next()?;
    (command.len() == 3 && command.bytes().all(|b| b.is_ascii_digit())).then_some(command)
}

/// `(nick, target, text)` of a `PRIVMSG` line (tags skipped).
pub fn privmsg(line: &str) -> Option<(String, String, String)> {
    let line = skip_tags(line)?;
    let (source, rest) = line.strip_prefix(':')?.split_once(' ')?;
    let rest = rest.strip_prefix("PRIVMSG ")?;
    let (target, text) = rest.split_once(" :")?;
    let nick = source.split('!').next()?;
    Some((nick.to_owned(), target.to_owned(), text.to_owned()))
}

fn skip_tags(line: &str) -> Option<&str> {
    match line.strip_prefix('@') {
        Some(rest) => Some(rest.split_once(' ')?.1),
        None => Some(line),
    }
}

/// The same client for synchronous tests (the window tests step an egui harness between
/// reads): each call runs the async one to completion on a runtime of its own.
pub mod blocking {
    use std::net::SocketAddr;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the raw client")
    }

    /// A [`super::RawClient`] with its own single-threaded runtime.
    pub struct RawClient {
        runtime: tokio::runtime::Runtime,
        inner: super::RawClient,
    }

    impl RawClient {
        /// Connects and registers as `nick` (see [`super::RawClient::join`]).
        pub fn join(addr: SocketAddr, nick: &str) -> RawClient {
            let runtime = runtime();
            let inner = runtime.block_on(super::RawClient::join(addr, nick));
            RawClient { runtime, inner }
        }

        /// Accepts one connection on `listener` to play the server for a client session (see
        /// [`super::RawClient::accept`]).
        pub fn accept(listener: std::net::TcpListener, label: &str) -> RawClient {
            let runtime = runtime();
            let inner = runtime.block_on(async {
                listener
                    .set_nonblocking(true)
                    .expect("a non-blocking listener");
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                super::RawClient::accept(&listener, label).await
            });
            RawClient { runtime, inner }
        }

        /// Sends one line (CR LF added).
        pub fn send(&mut self, line: &str) {
            self.runtime.block_on(self.inner.send(line));
        }

        /// `PRIVMSG target :text`.
        pub fn say(&mut self, target: &str, text: &str) {
            self.runtime.block_on(self.inner.say(target, text));
        }

        /// Reads lines until one matches `pred` (see [`super::RawClient::expect`]).
        pub fn expect(&mut self, pred: impl Fn(&str) -> bool) -> String {
            self.runtime.block_on(self.inner.expect(pred))
        }

        /// Reads lines until one contains `needle`.
        pub fn expect_has(&mut self, needle: &str) -> String {
            self.runtime.block_on(self.inner.expect_has(needle))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_and_privmsgs_are_recognised() {
        assert_eq!(numeric(":parla.local 433 * bob :in use"), Some("433"));
        assert_eq!(
            numeric("@time=x :parla.local 001 bob :Welcome"),
            Some("001")
        );
        assert_eq!(numeric(":bob!~b@h PRIVMSG #lobby :433"), None);
        assert_eq!(numeric("PING :x"), None);
        assert_eq!(
            privmsg("@time=x :bob!~b@h PRIVMSG #lobby :hi there"),
            Some(("bob".into(), "#lobby".into(), "hi there".into()))
        );
        assert_eq!(privmsg(":bob!~b@h NOTICE #lobby :hi"), None);
    }

    #[tokio::test]
    async fn a_client_answers_pings_and_a_server_does_not() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut client, mut server) = tokio::join!(
            RawClient::connect(addr, "client"),
            RawClient::accept(&listener, "server")
        );
        server.send("PING :one").await;
        assert_eq!(client.line().await, "PING :one");
        assert_eq!(server.line().await, "PONG :one");
        client.send("PING :two").await;
        client.send_bytes(b"NICK bob\r\n").await;
        assert_eq!(server.expect_prefix("NICK").await, "NICK bob");
        server.send(":s 433 * bob :in use").await;
        assert_eq!(client.expect_numeric("433").await, ":s 433 * bob :in use");
        drop(server);
        assert_eq!(client.expect_eof().await, Vec::<String>::new());
    }
}
