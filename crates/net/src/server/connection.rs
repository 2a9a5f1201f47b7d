//! One connection's task: a single loop that writes what its outbox holds, reads and frames
//! the client's lines (under flood control) and feeds each to the core. It holds no buffer
//! while idle; every byte of its future is paid per connection.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use append_only_bytes::BytesSlice;
use bytes::BytesMut;
use parla_room::ConnId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tracing::{debug, error};

use super::admission::Ticket;
use super::outbox::{Outbox, OutboxState};
use super::shared::Shared;
use crate::clock::sleep_until_opt;
use crate::codec::{Frame, LineCodec};

/// Bytes read per `read` call, into a buffer on the stack: only a partial line is kept on the
/// heap between reads, so an idle connection holds no read buffer at all.
const READ_CHUNK: usize = 4096;
/// Runs of lines handed to one `writev` call.
const MAX_IOVECS: usize = 512;

/// One client's task.
pub(super) struct Connection {
    pub(super) shared: Arc<Shared>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) conn: ConnId,
    /// Its place under the per-address limits and the flood credit it draws from.
    pub(super) ticket: Ticket,
}

impl Connection {
    pub(super) async fn run<S: crate::transport::Stream>(self, mut stream: S) {
        // Nothing is kept per connection between bursts: no read buffer unless a line is
        // partial, no write buffer (the shared lines are written as they are, vectored), no
        // queue, no split of the stream. Idle connections are most of a server's connections,
        // and their memory is what limits how many it holds.
        let mut lines = LineReader::new(LineCodec::new(self.shared.max_line));
        // Streams without vectored writes (the simulation's) get each batch as one buffer.
        let coalesce = !stream.is_write_vectored();
        let mut out: VecDeque<BytesSlice> = VecDeque::new();
        let mut reading = true;
        let mut state = OutboxState::Open;
        let mut notified = false;
        // Set once the core closed us: flushing must end by then; while open, when a room this
        // client overdrew lets it be read again. One field for both (they never overlap): every
        // byte of this future is paid per connection.
        let mut timer = Timer::None;
        let reason: String = loop {
            // Take the next batch once the last one is written; while one is still being
            // written (a slow reader), only look whether the core closed us meanwhile: what
            // waits in the outbox counts against the SendQ, what we took does not.
            if out.is_empty() {
                (out, state) = self.outbox.take(coalesce);
            } else if std::mem::take(&mut notified) {
                state = self.outbox.state();
            }
            match state {
                OutboxState::Killed => break "SendQ exceeded".into(),
                OutboxState::Closing if out.is_empty() => break "closed by server".into(),
                OutboxState::Closing => {
                    if !matches!(timer, Timer::Flush(_)) {
                        timer = Timer::Flush(Instant::now() + self.shared.grace);
                    }
                }
                OutboxState::Open => {}
            }
            let open = reading && state == OutboxState::Open;
            // One timer for all: the flush deadline (closing), or while open the flood wait
            // and the pause of a room this client overdrew, whichever is later. Computed in a
            // block so that only its result is kept across the wait.
            let (can_read, wake_at) = {
                let now = Instant::now();
                let flood = (self.ticket.flood.as_ref())
                    .filter(|_| open)
                    .and_then(|credit| credit.ready_at(now));
                let throttled = match timer {
                    Timer::Paused(until) if open && until > now => {
                        Some(flood.map_or(until, |t| t.max(until)))
                    }
                    _ => flood,
                };
                let wake_at = match timer {
                    Timer::Flush(at) => Some(at),
                    _ => throttled,
                };
                (open && throttled.is_none(), wake_at)
            };
            // Socket and outbox in one poll, in this order: write what we hold, notice what
            // the core queued or decided, read the next line.
            let io = std::future::poll_fn(|cx| {
                if !out.is_empty()
                    && let Poll::Ready(written) = poll_write_lines(cx, &mut stream, &mut out)
                {
                    return Poll::Ready(Io::Wrote(written));
                }
                if self.outbox.poll_changed(cx).is_ready() {
                    return Poll::Ready(Io::Changed);
                }
                if can_read && let Poll::Ready(frame) = lines.poll_next(cx, &mut stream) {
                    return Poll::Ready(Io::Read(frame));
                }
                Poll::Pending
            });
            let io = tokio::select! {
                biased;
                _ = sleep_until_opt(wake_at) => {
                    if matches!(timer, Timer::Flush(d) if Instant::now() >= d) {
                        break "flush deadline passed".into();
                    }
                    continue;
                }
                io = io => io,
            };
            match io {
                Io::Wrote(Ok(0)) => {
                    break "write error: the connection accepts no more data".into();
                }
                Io::Wrote(Ok(_)) => {}
                Io::Wrote(Err(err)) => break format!("write error: {err}"),
                Io::Changed => notified = true,
                Io::Read(Some(Ok(frame))) => {
                    let (replies, pause) = self.shared.feed_line(
                        self.conn,
                        match &frame {
                            Frame::Line(line) => Some(line),
                            Frame::TooLong => None,
                        },
                    );
                    if let Some(credit) = &self.ticket.flood {
                        // A line costs one token, and its replies one more per
                        // `reply_bytes_per_token` bytes: a WHO of a big room is not free.
                        let cost = 1.0 + replies as f64 / self.shared.reply_bytes_per_token as f64;
                        credit.take(Instant::now(), cost);
                    }
                    if let Some(until) = pause
                        && !matches!(timer, Timer::Flush(_))
                    {
                        timer = Timer::Paused(until);
                    }
                }
                Io::Read(Some(Err(err))) => {
                    self.disconnect(&format!("Read error: {err}"));
                    reading = false;
                }
                Io::Read(None) => {
                    self.disconnect("Connection closed");
                    reading = false;
                }
            }
        };
        // Tell the core (a no-op if it closed us), then close our side.
        self.disconnect(&format!("Connection closed: {reason}"));
        debug!(%reason, "connection ended");
        // Boxed, like every timer here: it would otherwise widen the whole future.
        let _ = Box::pin(crate::clock::timeout(
            Duration::from_secs(1),
            stream.shutdown(),
        ))
        .await;
    }

    /// Tells the core this client is gone (a no-op if the core closed it first), and switches
    /// the outbox to flush-then-close so that the task ends.
    fn disconnect(&self, reason: &str) {
        self.shared.disconnect(self.conn, reason);
    }
}

/// The panic policy's second rule (see [`super::shared`]): a task that unwinds, because its own
/// I/O code panicked, still tells the core it left, so that its name is freed and its rooms see
/// it quit now rather than at its ping timeout. (A panic inside the core has aborted the process
/// before this runs.) tokio drops a task's future inside the panic, which is how this sees it.
/// A task dropped without a panic, by its runtime shutting down (or a simulated crash), is the
/// whole server going away: the core is not told.
impl Drop for Connection {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!(conn = %self.conn, "a connection task panicked; telling the core it left");
            self.shared.disconnect(self.conn, "Internal error");
        }
    }
}

/// A connection's one timer besides flood control.
#[derive(Clone, Copy)]
enum Timer {
    None,
    /// A room it overdrew lets it be read again then.
    Paused(Instant),
    /// The core closed it: flushing ends then.
    Flush(Instant),
}

/// What one poll of a connection's socket and outbox brought.
enum Io {
    Wrote(io::Result<usize>),
    Changed,
    Read(Option<io::Result<Frame>>),
}

/// Writes from the front of `out` with one vectored write (up to [`MAX_IOVECS`] runs of lines),
/// and drops what was written. The runs are views of the shared
/// [`Lines`](super::outbox::Lines) blocks: nothing is copied here.
fn poll_write_lines<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    writer: &mut W,
    out: &mut VecDeque<BytesSlice>,
) -> Poll<io::Result<usize>> {
    let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
    let mut n = 0;
    for (slot, line) in iov.iter_mut().zip(out.iter()) {
        *slot = IoSlice::new(line);
        n += 1;
    }
    let written = match Pin::new(writer).poll_write_vectored(cx, &iov[..n]) {
        Poll::Ready(Ok(written)) => written,
        other => return other,
    };
    let mut left = written;
    while left > 0 {
        let Some(front) = out.front_mut() else { break };
        if front.len() > left {
            front.slice_(left..);
            break;
        }
        left -= front.len();
        out.pop_front();
    }
    Poll::Ready(Ok(written))
}

/// Frames input lines like tokio-util's `FramedRead`, but reads into a buffer on the stack and
/// keeps bytes on the heap only while a line is incomplete.
struct LineReader {
    codec: LineCodec,
    buf: BytesMut,
    eof: bool,
}

impl LineReader {
    fn new(codec: LineCodec) -> LineReader {
        LineReader {
            codec,
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// The next frame from `inner`; `None` at end of stream. Bytes read that are not a whole
    /// line yet stay in `self`.
    fn poll_next<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        inner: &mut R,
    ) -> Poll<Option<io::Result<Frame>>> {
        loop {
            let decoded = if self.eof {
                self.codec.decode_eof(&mut self.buf)
            } else {
                self.codec.decode(&mut self.buf)
            };
            if self.buf.is_empty() {
                // Even empty (and with no capacity left), the buffer still holds a reference to
                // the allocation its lines were split from: let it go.
                self.buf = BytesMut::new();
            }
            match decoded {
                Err(err) => return Poll::Ready(Some(Err(err))),
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) if self.eof => return Poll::Ready(None),
                Ok(None) => {}
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut *inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(Ok(())) if read.filled().is_empty() => self.eof = true,
                Poll::Ready(Ok(())) => self.buf.extend_from_slice(read.filled()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerOptions;
    use bytes::Bytes;

    /// Every idle connection pays for its task's future: keep it small (it was 824 bytes, task included, with
    /// inline timers and a `Notify`; tokio rounds task cells up to 128 bytes).
    #[tokio::test]
    async fn a_connection_future_stays_small() {
        let shared = Arc::new(Shared::new(&ServerOptions {
            sendq_bytes: 1024,
            flood: Some(crate::server::FloodControl::default()),
            shutdown_grace: Duration::from_secs(1),
            ..ServerOptions::default()
        }));
        let admission = super::super::admission::Admission::new(
            super::super::admission::Limits::default(),
            Some(crate::server::FloodControl::default()),
        );
        let ticket = super::super::admission::Admission::admit(
            &admission,
            std::net::Ipv4Addr::LOCALHOST.into(),
            0,
            Instant::now(),
        )
        .expect("admitted");
        let task = Connection {
            shared,
            outbox: Arc::new(Outbox::default()),
            conn: ConnId(1),
            ticket,
        };
        let (stream, _peer) = tokio::io::duplex(64);
        let size = std::mem::size_of_val(&task.run(stream));
        assert!(size <= 384, "the connection future grew to {size} bytes");
    }

    #[tokio::test]
    async fn write_lines_writes_partially_and_keeps_the_rest_in_order() {
        // A pipe that takes at most 5 bytes per write.
        let (mut tx, mut rx) = tokio::io::duplex(5);
        let mut out: VecDeque<BytesSlice> = [&b"hello\r\n"[..], b"world\r\n"]
            .into_iter()
            .map(BytesSlice::from_bytes)
            .collect();
        let mut got = Vec::new();
        while !out.is_empty() {
            let n = std::future::poll_fn(|cx| poll_write_lines(cx, &mut tx, &mut out))
                .await
                .expect("write");
            assert!(n > 0 && n <= 5, "{n}");
            let mut buf = [0u8; 16];
            let r = tokio::io::AsyncReadExt::read(&mut rx, &mut buf)
                .await
                .expect("read");
            got.extend_from_slice(&buf[..r]);
        }
        assert_eq!(got, b"hello\r\nworld\r\n");
    }

    #[tokio::test]
    async fn line_reader_frames_across_reads_and_frees_its_buffer() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        let mut reader = LineReader::new(LineCodec::new(16));
        async fn next(
            reader: &mut LineReader,
            rx: &mut tokio::io::DuplexStream,
        ) -> Option<io::Result<Frame>> {
            std::future::poll_fn(|cx| reader.poll_next(cx, rx)).await
        }
        async fn frame(reader: &mut LineReader, rx: &mut tokio::io::DuplexStream) -> Frame {
            next(reader, rx).await.expect("a frame").expect("no error")
        }
        use tokio::io::AsyncWriteExt as _;
        tx.write_all(b"PING a\r\nPI").await.expect("write");
        assert_eq!(
            frame(&mut reader, &mut rx).await,
            Frame::Line(Bytes::from_static(b"PING a"))
        );
        tx.write_all(b"NG b\n").await.expect("write");
        assert_eq!(
            frame(&mut reader, &mut rx).await,
            Frame::Line(Bytes::from_static(b"PING b"))
        );
        assert_eq!(reader.buf.capacity(), 0, "no buffer kept between lines");
        tx.write_all(&[b'x'; 40]).await.expect("write");
        tx.write_all(b"\nlast").await.expect("write");
        drop(tx);
        assert_eq!(frame(&mut reader, &mut rx).await, Frame::TooLong);
        assert_eq!(
            frame(&mut reader, &mut rx).await,
            Frame::Line(Bytes::from_static(b"last"))
        );
        assert!(next(&mut reader, &mut rx).await.is_none());
    }
}
