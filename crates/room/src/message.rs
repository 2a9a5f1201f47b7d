//! The IRC message model: parse a received line, serialize an outgoing one.
//!
//! TEMPORARY SKELETON: the bodies are being written (see the helper task); the
//! signatures are the contract the rest of the crate codes against.

use std::borrow::Cow;

use bytes::BytesMut;

/// Longest non-tag part of a line, CRLF included (modern IRC, "Message format").
pub const MAX_BODY_LEN: usize = 512;
/// Longest tag section, the leading `@` and the trailing space included (IRCv3 message-tags).
pub const MAX_TAGS_LEN: usize = 8191;

/// One message tag. `value` is unescaped; a tag sent without a value has `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    pub key: &'a str,
    pub value: Cow<'a, str>,
}

/// A parsed IRC line, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message<'a> {
    pub tags: Vec<Tag<'a>>,
    /// The source (prefix) without its leading `:`.
    pub source: Option<&'a str>,
    /// The command or numeric, as received (callers compare case-insensitively).
    pub verb: &'a str,
    /// Middle parameters and the trailing one, the latter without its `:`.
    pub params: Vec<&'a str>,
}

/// Why a line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line held nothing but spaces (or tags/source and no command).
    #[error("the line has no command")]
    NoCommand,
    /// The non-tag part is longer than the 512 bytes IRC allows.
    #[error("the message is {len} bytes long; IRC allows {MAX_BODY_LEN} including CR LF")]
    BodyTooLong { len: usize },
    /// The tag section is longer than IRCv3 allows.
    #[error("the tags are {len} bytes long; IRCv3 allows {MAX_TAGS_LEN}")]
    TagsTooLong { len: usize },
}

impl<'a> Message<'a> {
    /// Parses one line, given without its CR LF.
    pub fn parse(line: &'a str) -> Result<Self, ParseError> {
        let _ = line;
        todo!("helper")
    }

    /// Appends the line and its CR LF to `out`, using a `:` trailing parameter only where needed.
    pub fn write_to(&self, out: &mut BytesMut) {
        let _ = out;
        todo!("helper")
    }

    /// Like [`Message::write_to`], but the last parameter is always written as a `:` trailing one.
    pub fn write_to_trailing(&self, out: &mut BytesMut) {
        let _ = out;
        todo!("helper")
    }
}

/// Splits a source `nick!user@host` into its parts; `user` and `host` are optional.
pub fn split_source(source: &str) -> (&str, Option<&str>, Option<&str>) {
    let _ = source;
    todo!("helper")
}
