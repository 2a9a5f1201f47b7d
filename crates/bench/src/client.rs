//! One bench connection: plain IRC over TCP (or TLS) from a chosen loopback source address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};
use parla_net::tls::{self, Fingerprint, Trust};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// The server under test and how to use its room.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where the server listens (loopback only).
    pub addr: SocketAddr,
    /// The room the workloads use.
    pub channel: String,
    /// The server puts every user in `channel` on registering (Parla's default room): the bench
    /// then waits for the server's `366` instead of sending `JOIN`.
    pub auto_join: bool,
    /// Connections are spread over the source addresses 127.0.0.1 … 127.0.0.`sources`, each of
    /// which has its own ~28,000 ephemeral ports.
    pub sources: u8,
    /// Speak TLS, trusting exactly the server certificate with this fingerprint.
    pub tls: Option<Fingerprint>,
    /// More servers of the same chat (a Parla cluster): client `i` connects to the
    /// `i % (1 + also.len())`th of `addr`, `also…`.
    pub also: Vec<SocketAddr>,
}

impl Target {
    /// Which server client `i` uses: its index among `addr`, `also…`, and its address.
    pub fn server_of(&self, i: usize) -> (usize, SocketAddr) {
        let k = i % (1 + self.also.len());
        (k, if k == 0 { self.addr } else { self.also[k - 1] })
    }

    /// A target with an explicit `JOIN` of `#bench`, one source address, no TLS.
    pub fn new(addr: SocketAddr) -> Target {
        Target {
            addr,
            channel: "#bench".to_owned(),
            auto_join: false,
            sources: 1,
            tls: None,
            also: Vec::new(),
        }
    }

    /// Picks the source address for connection number `i`.
    pub fn source(&self, i: usize) -> IpAddr {
        let n = usize::from(self.sources.max(1));
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % n) as u8))
    }
}

/// Opens connection number `i` (from [`Target::source`]).
pub async fn connect(target: &Target, i: usize) -> io::Result<(Reader, Writer)> {
    let source = (target.sources > 1).then(|| target.source(i));
    connect_from(target, source).await
}

/// Opens a connection from `source` (any loopback address; `None`: the system's choice) with
/// `TCP_NODELAY` (the bench itself must not add delay), and starts TLS if the target speaks it.
pub async fn connect_from(target: &Target, source: Option<IpAddr>) -> io::Result<(Reader, Writer)> {
    if !target.addr.ip().is_loopback() {
        return Err(io::Error::other(
            "the bench only drives servers on loopback",
        ));
    }
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    Ok(match target.tls {
        None => {
            let (rd, wr) = stream.into_split();
            (Reader::Tcp(rd), Writer::Tcp(wr))
        }
        Some(pin) => {
            let stream = tls::connect(stream, "localhost", &Trust::Pinned(pin))
                .await
                .map_err(io::Error::other)?;
            let (rd, wr) = tokio::io::split(stream);
            (Reader::Tls(rd), Writer::Tls(wr))
        }
    })
}

/// The reading half of a bench connection.
pub enum Reader {
    Tcp(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a bench connection.
pub enum Writer {
    Tcp(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Writer::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Writer::Tcp(w) => w.is_write_vectored(),
            Writer::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_flush(cx),
            Writer::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// Reads a byte stream and hands out complete lines (without CR LF) from its own buffer.
pub struct LineReader {
    rd: Reader,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl LineReader {
    /// A reader with a buffer of `capacity` bytes (it grows for a longer line).
    pub fn new(rd: Reader, capacity: usize) -> LineReader {
        LineReader {
            rd,
            buf: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
        }
    }

    /// Waits for more bytes; `false` at end of stream.
    pub async fn fill(&mut self) -> io::Result<bool> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
        let n = self.rd.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// The next complete line already buffered, if any.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let nl = memchr::memchr(b'\n', &self.buf[self.start..self.end])?;
        let line = &self.buf[self.start..self.start + nl];
        self.start += nl + 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// The IRC command (verb or numeric) of a line, skipping tags and the source.
pub fn command(line: &[u8]) -> &[u8] {
    let mut rest = line;
    if rest.first() == Some(&b'@') {
        rest = split_word(rest).1;
    }
    if rest.first() == Some(&b':') {
        rest = split_word(rest).1;
    }
    split_word(rest).0
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', s) {
        Some(i) => (&s[..i], s[i + 1..].trim_ascii_start()),
        None => (s, &[]),
    }
}

/// The trailing parameter (after ` :`), if any.
pub fn trailing(line: &[u8]) -> Option<&[u8]> {
    let start = if line.first() == Some(&b'@') || line.first() == Some(&b':') {
        memchr::memchr(b' ', line)? + 1
    } else {
        0
    };
    memchr::memmem::find(&line[start..], b" :").map(|i| &line[start + i + 2..])
}

/// If `line` is a `PING`, the `PONG` that answers it.
pub fn pong_for(line: &[u8]) -> Option<Vec<u8>> {
    if command(line) != b"PING" {
        return None;
    }
    let token = trailing(line)
        .or_else(|| line.rsplit(|&b| b == b' ').next())
        .unwrap_or(b"x");
    let mut out = b"PONG :".to_vec();
    out.extend_from_slice(token);
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// A registered (and, if asked, joined) connection.
pub struct Session {
    pub reader: LineReader,
    pub writer: Writer,
}

/// Connects as connection `i`, registers as `nick`, and joins `target.channel` if `join`
/// (waiting for the `366` end of NAMES, so the member is in the room when this returns).
pub async fn open_session(
    target: &Target,
    i: usize,
    nick: &str,
    join: bool,
    read_capacity: usize,
    timeout: Duration,
) -> anyhow::Result<Session> {
    let source = (target.sources > 1).then(|| target.source(i));
    if target.also.is_empty() {
        return open_session_from(target, source, nick, join, read_capacity, timeout).await;
    }
    let mut this = target.clone();
    this.addr = target.server_of(i).1;
    open_session_from(&this, source, nick, join, read_capacity, timeout).await
}

/// [`open_session`] from `source` (any loopback address; `None`: the system's choice).
pub async fn open_session_from(
    target: &Target,
    source: Option<IpAddr>,
    nick: &str,
    join: bool,
    read_capacity: usize,
    timeout: Duration,
) -> anyhow::Result<Session> {
    tokio::time::timeout(timeout, async {
        let (rd, mut writer) = connect_from(target, source)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        let mut reader = LineReader::new(rd, read_capacity);
        let hello = format!("NICK {nick}\r\nUSER {nick} 0 * :parla-bench\r\n");
        writer.write_all(hello.as_bytes()).await?;
        let wait_join = join || target.auto_join;
        let mut registered = false;
        loop {
            while let Some(line) = reader.next_line() {
                if let Some(pong) = pong_for(line) {
                    writer.write_all(&pong).await?;
                    continue;
                }
                match command(line) {
                    b"001" => {
                        registered = true;
                        if !wait_join {
                            return Ok(Session { reader, writer });
                        }
                        if !target.auto_join {
                            // Only after 001: InspIRCd answers a JOIN sent before registration
                            // completes with 451 even when it arrived after USER.
                            let join = format!("JOIN {}\r\n", target.channel);
                            writer.write_all(join.as_bytes()).await?;
                        }
                    }
                    b"366" if registered => return Ok(Session { reader, writer }),
                    b"432" | b"433" | b"436" | b"437" | b"465" | b"ERROR" => {
                        bail!(
                            "{nick}: refused by the server: {}",
                            String::from_utf8_lossy(line)
                        )
                    }
                    b"405" | b"451" | b"471" | b"473" | b"474" | b"475" | b"403" => {
                        bail!("{nick}: JOIN refused: {}", String::from_utf8_lossy(line))
                    }
                    _ => {}
                }
            }
            if !reader.fill().await? {
                bail!("{nick}: the server closed the connection during registration");
            }
        }
    })
    .await
    .with_context(|| format!("{nick}: registration took longer than {timeout:?}"))?
}
