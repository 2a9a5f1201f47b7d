//! Bytes ↔ lines. The codec frames input on LF (CRLF accepted) and never touches chat state.
//!
//! An over-long line is not a decode error: `Framed` ends the stream after an error, and we want
//! to answer `417` and keep the client. So it comes out as [`Frame::TooLong`], and the rest of
//! that line is skipped.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The longest line accepted by default: 8191 bytes of tags plus the 512-byte message.
pub const DEFAULT_MAX_LINE: usize = 8191 + 512;

/// One unit of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A line without its CR LF (possibly not UTF-8: the core checks).
    Line(Bytes),
    /// A line longer than the maximum arrived; it was discarded.
    TooLong,
}

/// A line codec with a maximum length.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_len: usize,
    /// Skipping the rest of an over-long line, up to its LF.
    discarding: bool,
    /// Where to resume looking for LF, so a line arriving in pieces is scanned once.
    scanned: usize,
}

impl LineCodec {
    /// A codec that accepts lines of at most `max_len` bytes (line ending excluded).
    pub fn new(max_len: usize) -> LineCodec {
        LineCodec {
            max_len,
            discarding: false,
            scanned: 0,
        }
    }
}

impl Default for LineCodec {
    fn default() -> Self {
        LineCodec::new(DEFAULT_MAX_LINE)
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        loop {
            let newline = buf[self.scanned..].iter().position(|&b| b == b'\n');
            match (self.discarding, newline) {
                (true, Some(i)) => {
                    buf.advance(self.scanned + i + 1);
                    self.scanned = 0;
                    self.discarding = false;
                }
                (true, None) => {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                (false, Some(i)) => {
                    let end = self.scanned + i;
                    self.scanned = 0;
                    let mut line = buf.split_to(end + 1);
                    line.truncate(end);
                    if line.last() == Some(&b'\r') {
                        line.truncate(end - 1);
                    }
                    if line.len() > self.max_len {
                        return Ok(Some(Frame::TooLong));
                    }
                    return Ok(Some(Frame::Line(line.freeze())));
                }
                (false, None) => {
                    if buf.len() > self.max_len + 1 {
                        // Report it now (the client learns at once), then skip to its end.
                        self.discarding = true;
                        buf.clear();
                        self.scanned = 0;
                        return Ok(Some(Frame::TooLong));
                    }
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // A last line without a line ending still counts (netcat users send those).
        if buf.is_empty() || self.discarding {
            buf.clear();
            return Ok(None);
        }
        self.scanned = 0;
        let line = buf.split().freeze();
        let line = line.slice(..line.len() - usize::from(line.ends_with(b"\r")));
        Ok((!line.is_empty()).then_some(Frame::Line(line)))
    }
}

impl Encoder<Bytes> for LineCodec {
    type Error = std::io::Error;

    fn encode(&mut self, line: Bytes, dst: &mut BytesMut) -> Result<(), Self::Error> {
        dst.extend_from_slice(&line);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn decode_all(codec: &mut LineCodec, chunks: &[&[u8]], eof: bool) -> Vec<Frame> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        if eof {
            while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
                out.push(f);
            }
        }
        out
    }

    fn line(s: &[u8]) -> Frame {
        Frame::Line(Bytes::copy_from_slice(s))
    }

    #[rstest]
    #[case::crlf(&[b"NICK a\r\nUSER b\r\n".as_slice()], vec![line(b"NICK a"), line(b"USER b")])]
    #[case::lf(&[b"NICK a\nUSER b\n".as_slice()], vec![line(b"NICK a"), line(b"USER b")])]
    #[case::split_across_reads(&[b"NI".as_slice(), b"CK a\r".as_slice(), b"\nUS".as_slice(), b"ER b\n".as_slice()], vec![line(b"NICK a"), line(b"USER b")])]
    #[case::empty_lines(&[b"\r\n\n".as_slice()], vec![line(b""), line(b"")])]
    #[case::invalid_utf8_passes_through(&[b"PRIVMSG #a :\xff\r\n".as_slice()], vec![line(b"PRIVMSG #a :\xff")])]
    fn frames(#[case] chunks: &[&[u8]], #[case] expected: Vec<Frame>) {
        assert_eq!(decode_all(&mut LineCodec::new(64), chunks, false), expected);
    }

    #[test]
    fn a_line_at_the_limit_passes_one_over_is_too_long() {
        let mut codec = LineCodec::new(10);
        let frames = decode_all(&mut codec, &[b"0123456789\r\n01234567890\r\nok\r\n"], false);
        assert_eq!(
            frames,
            vec![line(b"0123456789"), Frame::TooLong, line(b"ok")]
        );
    }

    #[test]
    fn an_endless_line_is_reported_once_and_its_rest_skipped_without_buffering() {
        let mut codec = LineCodec::new(10);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for _ in 0..100 {
            buf.extend_from_slice(&[b'x'; 7]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                frames.push(f);
            }
            assert!(buf.len() <= 11, "the buffer stays bounded: {}", buf.len());
        }
        buf.extend_from_slice(b"xx\r\nPING a\r\n");
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
        assert_eq!(frames, vec![Frame::TooLong, line(b"PING a")]);
    }

    #[test]
    fn a_last_line_without_newline_counts_at_eof() {
        let mut codec = LineCodec::new(64);
        assert_eq!(
            decode_all(&mut codec, &[b"a\r\nquit"], true),
            vec![line(b"a"), line(b"quit")]
        );
    }
}
