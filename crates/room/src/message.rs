//! The IRC message model: parse a received line, serialize an outgoing one.
//!
//! The grammar is modern IRC's "Message format" (<https://modern.ircdocs.horse>)
//! with IRCv3 message tags, checked against the community `irc-parser-tests`
//! vectors (`tests/parser_vectors.rs`). Parsing borrows from the input line and
//! allocates only the tag and parameter vectors (plus an owned value for a tag
//! that actually contains an escape); serializing writes straight into the
//! caller's buffer after a single `reserve`.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::{BufMut, BytesMut};

/// Longest non-tag part of a line, CRLF included (modern IRC, "Message format").
pub const MAX_BODY_LEN: usize = 512;
/// Longest tag section, the leading `@` and the trailing space included (IRCv3 message-tags).
pub const MAX_TAGS_LEN: usize = 8191;

/// One message tag. `value` is unescaped; a tag sent without a value has `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The key as sent, client-only `+` prefix and vendor included (`+example.com/typing`).
    pub key: &'a str,
    /// The unescaped value; borrowed from the line unless it held an escape.
    pub value: Cow<'a, str>,
}

/// A parsed IRC line, borrowing from the input.
///
/// After [`Message::parse`], `tags` holds each key once (the last occurrence
/// on the line wins, as IRCv3 asks) and never an empty key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message<'a> {
    /// The IRCv3 tags, in line order; written in this order too.
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
    /// The line held nothing but spaces (or tags/source and no command), or
    /// its command starts with `@` or `:`.
    #[error("the line has no command")]
    NoCommand,
    /// The non-tag part is longer than the 512 bytes IRC allows.
    #[error("the message is {len} bytes long; IRC allows {MAX_BODY_LEN} including CR LF")]
    BodyTooLong { len: usize },
    /// The tag section is longer than IRCv3 allows.
    #[error("the tags are {len} bytes long; IRCv3 allows {MAX_TAGS_LEN}")]
    TagsTooLong { len: usize },
    /// The line contains NUL, or CR / LF other than a final CR. IRC forbids
    /// them inside a message; relaying a bare CR would let a client inject
    /// lines into other clients that treat CR as a line end.
    #[error(
        "the message contains the byte {byte:#04x} (NUL, CR or LF), which IRC forbids inside a line; remove it"
    )]
    ForbiddenByte { byte: u8 },
}

impl<'a> Message<'a> {
    /// Parses one line, given without its CR LF.
    ///
    /// A single stray trailing `\r` (left by a framer that splits on LF only)
    /// is ignored. Atoms may be separated by several spaces (RFC 1459
    /// leniency); empty tags (`@a;;b`) and tags with an empty key are skipped.
    pub fn parse(line: &'a str) -> Result<Self, ParseError> {
        let line = line.strip_suffix('\r').unwrap_or(line);

        // Limits first, so that nothing below ever works on an oversized line.
        let (tag_section, body) = match line.strip_prefix('@') {
            Some(after_at) => match after_at.find(' ') {
                Some(space) => {
                    // '@' + tags + the one space that ends them.
                    let tags_len = space + 2;
                    if tags_len > MAX_TAGS_LEN {
                        return Err(ParseError::TagsTooLong { len: tags_len });
                    }
                    (&after_at[..space], &after_at[space + 1..])
                }
                None => {
                    if line.len() > MAX_TAGS_LEN {
                        return Err(ParseError::TagsTooLong { len: line.len() });
                    }
                    check_bytes(line)?;
                    return Err(ParseError::NoCommand);
                }
            },
            None => ("", line),
        };
        let body_len = body.len() + 2;
        if body_len > MAX_BODY_LEN {
            return Err(ParseError::BodyTooLong { len: body_len });
        }
        check_bytes(line)?;

        let mut rest = body.trim_start_matches(' ');
        let source = match rest.strip_prefix(':') {
            Some(after_colon) => {
                let (source, after) = split_atom(after_colon);
                rest = after.trim_start_matches(' ');
                Some(source)
            }
            None => None,
        };

        let (verb, mut rest) = split_atom(rest);
        // A "verb" starting with '@' or ':' could not be written back
        // unambiguously (it would read as tags or a source); it is junk anyway.
        if verb.is_empty() || verb.starts_with(['@', ':']) {
            return Err(ParseError::NoCommand);
        }

        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            let (param, after) = split_atom(rest);
            params.push(param);
            rest = after;
        }

        Ok(Message {
            tags: parse_tags(tag_section),
            source,
            verb,
            params,
        })
    }

    /// Appends the line and its CR LF to `out`, using a `:` trailing parameter only where needed.
    ///
    /// The last parameter gets its `:` when it is empty, contains a space or
    /// starts with `:`. Every other parameter must be a valid middle one (not
    /// empty, no space, no leading `:`); that is checked in debug builds only.
    pub fn write_to(&self, out: &mut BytesMut) {
        self.write(out, false);
    }

    /// Like [`Message::write_to`], but the last parameter is always written as a `:` trailing one.
    pub fn write_to_trailing(&self, out: &mut BytesMut) {
        self.write(out, true);
    }

    /// Bytes of the tag section as written: `@`, the escaped tags, the space; 0 without tags.
    ///
    /// Compare it with [`MAX_TAGS_LEN`].
    pub fn tags_len(&self) -> usize {
        if self.tags.is_empty() {
            return 0;
        }
        // '@', the ';' separators, the final space.
        let mut len = 1 + (self.tags.len() - 1) + 1;
        for tag in &self.tags {
            len += tag.key.len();
            if !tag.value.is_empty() {
                len += 1 + escaped_len(&tag.value);
            }
        }
        len
    }

    /// Bytes of everything after the tag section as [`Message::write_to`]
    /// writes it, CR LF included.
    ///
    /// Compare it with [`MAX_BODY_LEN`]; [`Message::write_to_trailing`] may
    /// write one byte more (see [`Message::body_len_trailing`]).
    pub fn body_len(&self) -> usize {
        self.body_len_with(false)
    }

    /// Like [`Message::body_len`], for [`Message::write_to_trailing`].
    pub fn body_len_trailing(&self) -> usize {
        self.body_len_with(true)
    }

    fn body_len_with(&self, force_trailing: bool) -> usize {
        let mut len = self.verb.len() + 2;
        if let Some(source) = self.source {
            len += 1 + source.len() + 1;
        }
        for param in &self.params {
            len += 1 + param.len();
        }
        if let Some(last) = self.params.last()
            && (force_trailing || needs_colon(last))
        {
            len += 1;
        }
        len
    }

    fn write(&self, out: &mut BytesMut, force_trailing: bool) {
        out.reserve(self.tags_len() + self.body_len_with(force_trailing));

        if let Some((first, others)) = self.tags.split_first() {
            out.put_u8(b'@');
            write_tag(first, out);
            for tag in others {
                out.put_u8(b';');
                write_tag(tag, out);
            }
            out.put_u8(b' ');
        }

        if let Some(source) = self.source {
            debug_assert!(!source.contains(' '), "source {source:?} contains a space");
            out.put_u8(b':');
            out.put_slice(source.as_bytes());
            out.put_u8(b' ');
        }

        debug_assert!(
            !self.verb.is_empty() && !self.verb.contains(' ') && !self.verb.starts_with(['@', ':']),
            "verb {:?} is empty, contains a space or starts with '@' or ':'",
            self.verb
        );
        out.put_slice(self.verb.as_bytes());

        if let Some((last, middle)) = self.params.split_last() {
            for param in middle {
                debug_assert!(
                    !param.is_empty() && !param.contains(' ') && !param.starts_with(':'),
                    "middle parameter {param:?} is empty, contains a space or starts with ':'"
                );
                out.put_u8(b' ');
                out.put_slice(param.as_bytes());
            }
            out.put_u8(b' ');
            if force_trailing || needs_colon(last) {
                out.put_u8(b':');
            }
            out.put_slice(last.as_bytes());
        }

        out.put_slice(b"\r\n");
    }
}

/// Splits a source `nick!user@host` into its parts; `user` and `host` are optional.
///
/// The nick ends at the first `!` or `@`; the user runs from the `!` to the
/// next `@`; the host is everything after that `@`. An empty user or host
/// (`nick!@host`, `nick!user@`) is `None`, like a missing one.
pub fn split_source(source: &str) -> (&str, Option<&str>, Option<&str>) {
    let Some(nick_end) = source.find(['!', '@']) else {
        return (source, None, None);
    };
    let nick = &source[..nick_end];
    let after = &source[nick_end + 1..];
    if source.as_bytes()[nick_end] == b'@' {
        return (nick, None, non_empty(after));
    }
    match after.split_once('@') {
        Some((user, host)) => (nick, non_empty(user), non_empty(host)),
        None => (nick, non_empty(after), None),
    }
}

/// Unescapes a raw tag value (IRCv3 message-tags, "Escaping values").
///
/// `\:` → `;`, `\s` → space, `\\` → `\`, `\r` → CR, `\n` → LF; any other
/// escaped character stands for itself and a lone trailing `\` is dropped.
/// Borrows unless the value holds a backslash.
pub fn unescape_tag_value(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut value = String::with_capacity(raw.len());
    // Char at a time, so that an escaped backslash is never re-read as the
    // start of another escape (`\\n` is `\` then `n`).
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => value.push(';'),
            Some('s') => value.push(' '),
            Some('r') => value.push('\r'),
            Some('n') => value.push('\n'),
            Some(other) => value.push(other),
            None => {}
        }
    }
    Cow::Owned(value)
}

/// Appends `value` escaped for a tag (the inverse of [`unescape_tag_value`]) to `out`.
pub fn escape_tag_value(value: &str, out: &mut BytesMut) {
    let bytes = value.as_bytes();
    let mut start = 0;
    // Copy unescaped runs whole; the escaped bytes are all ASCII, so every
    // split point is a char boundary.
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b';' => b"\\:",
            b' ' => b"\\s",
            b'\\' => b"\\\\",
            b'\r' => b"\\r",
            b'\n' => b"\\n",
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        out.put_slice(escaped);
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
}

/// Length of `value` once escaped by [`escape_tag_value`].
fn escaped_len(value: &str) -> usize {
    value.len()
        + value
            .bytes()
            .filter(|b| matches!(b, b';' | b' ' | b'\\' | b'\r' | b'\n'))
            .count()
}

/// `None` for an empty part of a source, like a missing one.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Whether `param`, written last, needs the `:` that marks a trailing parameter.
fn needs_colon(param: &str) -> bool {
    param.is_empty() || param.starts_with(':') || param.contains(' ')
}

fn write_tag(tag: &Tag<'_>, out: &mut BytesMut) {
    debug_assert!(
        !tag.key.is_empty() && !tag.key.contains([' ', ';', '=']),
        "tag key {:?} is empty or contains ' ', ';' or '='",
        tag.key
    );
    out.put_slice(tag.key.as_bytes());
    // A tag without a value and one with an empty value mean the same; the
    // shorter form is the usual one.
    if !tag.value.is_empty() {
        out.put_u8(b'=');
        escape_tag_value(&tag.value, out);
    }
}

/// Rejects NUL, CR and LF anywhere in the (already length-checked) line.
fn check_bytes(line: &str) -> Result<(), ParseError> {
    match line.bytes().find(|b| matches!(b, b'\0' | b'\r' | b'\n')) {
        Some(byte) => Err(ParseError::ForbiddenByte { byte }),
        None => Ok(()),
    }
}

/// Splits off the atom before the first space; the rest starts after that space.
fn split_atom(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((atom, rest)) => (atom, rest),
        None => (s, ""),
    }
}

/// Parses the tag section (without `@` and the final space).
fn parse_tags(section: &str) -> Vec<Tag<'_>> {
    if section.is_empty() {
        return Vec::new();
    }
    let mut tags = Vec::new();
    for item in section.split(';') {
        let (key, raw) = item.split_once('=').unwrap_or((item, ""));
        if key.is_empty() {
            continue;
        }
        tags.push(Tag {
            key,
            value: unescape_tag_value(raw),
        });
    }
    keep_last_of_duplicates(&mut tags);
    tags
}

/// Removes every tag whose key occurs again later (IRCv3: the final occurrence wins).
///
/// The survivors keep their relative order. A small set (the usual case) is
/// scanned pairwise; a large one uses a hash map so that a hostile line full
/// of tags cannot make this quadratic.
fn keep_last_of_duplicates(tags: &mut Vec<Tag<'_>>) {
    const PAIRWISE_MAX: usize = 16;
    if tags.len() < 2 {
        return;
    }
    if tags.len() <= PAIRWISE_MAX {
        let mut i = 0;
        while i < tags.len() {
            let key = tags[i].key;
            if tags[i + 1..].iter().any(|t| t.key == key) {
                tags.remove(i);
            } else {
                i += 1;
            }
        }
        return;
    }
    let mut last = HashMap::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        last.insert(tag.key, i);
    }
    if last.len() == tags.len() {
        return;
    }
    let mut i = 0;
    tags.retain(|tag| {
        let keep = last[tag.key] == i;
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn written(msg: &Message<'_>, trailing: bool) -> String {
        let mut out = BytesMut::new();
        if trailing {
            msg.write_to_trailing(&mut out);
        } else {
            msg.write_to(&mut out);
        }
        String::from_utf8(out.to_vec()).expect("serializer wrote UTF-8")
    }

    fn tag<'a>(key: &'a str, value: &'a str) -> Tag<'a> {
        Tag {
            key,
            value: Cow::Borrowed(value),
        }
    }

    // "PRIVMSG #c :" is 12 bytes; 498 more make 510, i.e. 512 with CR LF.
    #[rstest]
    #[case::exactly_512(498, Ok(()))]
    #[case::one_over(499, Err(ParseError::BodyTooLong { len: 513 }))]
    #[case::far_over(2000, Err(ParseError::BodyTooLong { len: 2014 }))]
    fn body_length_limit(#[case] text_len: usize, #[case] expected: Result<(), ParseError>) {
        let line = format!("PRIVMSG #c :{}", "a".repeat(text_len));
        assert_eq!(Message::parse(&line).map(|_| ()), expected);
        // A stray CR is the CR of the CR LF, not an extra byte.
        assert_eq!(Message::parse(&format!("{line}\r")).map(|_| ()), expected);
        // Tags do not count towards the body.
        assert_eq!(
            Message::parse(&format!("@a=b {line}")).map(|_| ()),
            expected
        );
    }

    // "@k=" + value + " " is 4 bytes plus the value.
    #[rstest]
    #[case::exactly_8191(8187, Ok(()))]
    #[case::one_over(8188, Err(ParseError::TagsTooLong { len: 8192 }))]
    fn tags_length_limit(#[case] value_len: usize, #[case] expected: Result<(), ParseError>) {
        let line = format!("@k={} PING x", "v".repeat(value_len));
        assert_eq!(Message::parse(&line).map(|_| ()), expected);
    }

    #[test]
    fn both_limits_at_once() {
        // The space keeps the ':' in the re-serialized form, so the lengths match.
        let line = format!("@k={} PRIVMSG #c :a {}", "v".repeat(8187), "a".repeat(496));
        let msg = Message::parse(&line).unwrap();
        assert_eq!(msg.tags_len(), MAX_TAGS_LEN);
        assert_eq!(msg.body_len(), MAX_BODY_LEN);
        assert_eq!(msg.tags_len() + msg.body_len(), line.len() + 2);
    }

    #[test]
    fn tags_without_command_too_long() {
        let line = format!("@k={}", "v".repeat(MAX_TAGS_LEN));
        assert_eq!(
            Message::parse(&line),
            Err(ParseError::TagsTooLong {
                len: MAX_TAGS_LEN + 3
            })
        );
    }

    #[rstest]
    #[case::plain("plain")]
    #[case::empty("")]
    #[case::all_specials("a;b c\\d\re\nf")]
    #[case::only_backslash("\\")]
    #[case::escape_lookalike("\\s\\:\\\\")]
    #[case::multibyte("é✓;ü 🦀\\")]
    fn tag_value_round_trip(#[case] value: &str) {
        let msg = Message {
            tags: vec![tag("k", value), tag("+vendor.example/x", value)],
            verb: "TAGMSG",
            params: vec!["#c"],
            ..Message::default()
        };
        let line = written(&msg, false);
        assert_eq!(line.len(), msg.tags_len() + msg.body_len());
        let parsed = Message::parse(line.strip_suffix("\r\n").unwrap()).unwrap();
        assert_eq!(parsed, msg);
        if !value.contains(['\\', ';', ' ', '\r', '\n']) {
            assert!(
                parsed
                    .tags
                    .iter()
                    .all(|t| matches!(t.value, Cow::Borrowed(_)))
            );
        }
    }

    #[rstest]
    #[case::colon("a\\:b", ";")]
    #[case::space("a\\sb", " ")]
    #[case::backslash("a\\\\b", "\\")]
    #[case::cr("a\\rb", "\r")]
    #[case::lf("a\\nb", "\n")]
    #[case::unknown("a\\qb", "q")]
    #[case::unknown_multibyte("a\\éb", "é")]
    fn unescape_table(#[case] raw: &str, #[case] middle: &str) {
        assert_eq!(unescape_tag_value(raw), format!("a{middle}b"));
    }

    #[rstest]
    #[case::lone_trailing_backslash("ab\\", "ab")]
    #[case::only_backslash("\\", "")]
    #[case::escaped_then_n("\\\\n", "\\n")]
    #[case::none("abc", "abc")]
    fn unescape_edges(#[case] raw: &str, #[case] expected: &str) {
        assert_eq!(unescape_tag_value(raw), expected);
    }

    #[rstest]
    #[case::no_params(&[], "CMD", "CMD")]
    #[case::plain(&["a", "b"], "CMD a b", "CMD a :b")]
    #[case::empty_last(&["a", ""], "CMD a :", "CMD a :")]
    #[case::space_in_last(&["a", "b c"], "CMD a :b c", "CMD a :b c")]
    #[case::colon_first(&["a", ":b"], "CMD a ::b", "CMD a ::b")]
    #[case::colon_inside(&["a", "b:c"], "CMD a b:c", "CMD a :b:c")]
    #[case::only_spaces(&["  "], "CMD :  ", "CMD :  ")]
    fn trailing_rules(
        #[case] params: &[&str],
        #[case] minimal: &str,
        #[case] always_trailing: &str,
    ) {
        let msg = Message {
            verb: "CMD",
            params: params.to_vec(),
            ..Message::default()
        };
        assert_eq!(written(&msg, false), format!("{minimal}\r\n"));
        assert_eq!(written(&msg, true), format!("{always_trailing}\r\n"));
        assert_eq!(msg.body_len(), minimal.len() + 2);
        assert_eq!(msg.body_len_trailing(), always_trailing.len() + 2);
    }

    #[test]
    fn writes_tags_source_and_appends() {
        let msg = Message {
            tags: vec![tag("time", "2024-01-01T00:00:00.000Z"), tag("k", "")],
            source: Some("nick!user@host"),
            verb: "PRIVMSG",
            params: vec!["#chan", "hello world"],
        };
        let mut out = BytesMut::from(&b"prev\r\n"[..]);
        msg.write_to(&mut out);
        assert_eq!(
            &out[..],
            b"prev\r\n@time=2024-01-01T00:00:00.000Z;k :nick!user@host PRIVMSG #chan :hello world\r\n"
        );
    }

    #[rstest]
    #[case::empty("", ParseError::NoCommand)]
    #[case::spaces("   ", ParseError::NoCommand)]
    #[case::at("@", ParseError::NoCommand)]
    #[case::tags_only("@a ", ParseError::NoCommand)]
    #[case::colon(":", ParseError::NoCommand)]
    #[case::source_only(":src ", ParseError::NoCommand)]
    #[case::colon_verb(":src :verb", ParseError::NoCommand)]
    #[case::at_verb(" @verb", ParseError::NoCommand)]
    #[case::at_verb_after_empty_tags("@; @verb", ParseError::NoCommand)]
    #[case::nul("PRIVMSG #c :a\0b", ParseError::ForbiddenByte { byte: 0 })]
    #[case::inner_cr("PRIVMSG #c :a\rb", ParseError::ForbiddenByte { byte: b'\r' })]
    #[case::lf("PRIVMSG #c :a\n", ParseError::ForbiddenByte { byte: b'\n' })]
    #[case::two_crs("PING x\r\r", ParseError::ForbiddenByte { byte: b'\r' })]
    #[case::cr_in_tags("@a=\rb x", ParseError::ForbiddenByte { byte: b'\r' })]
    fn parse_errors(#[case] line: &str, #[case] expected: ParseError) {
        assert_eq!(Message::parse(line), Err(expected));
    }

    #[test]
    fn lenient_shapes() {
        let msg = Message::parse("@;;=x;a= :  PING   x  ").unwrap();
        assert_eq!(msg.tags, vec![tag("a", "")]);
        assert_eq!(msg.source, Some(""));
        assert_eq!(msg.verb, "PING");
        assert_eq!(msg.params, vec!["x"]);
        let msg = Message::parse("  NICK  n\r").unwrap();
        assert_eq!((msg.verb, msg.params), ("NICK", vec!["n"]));
    }

    #[test]
    fn duplicate_tags_keep_the_last() {
        let msg = Message::parse("@a=1;b=2;a=3;c;b COMMAND").unwrap();
        assert_eq!(msg.tags, vec![tag("a", "3"), tag("c", ""), tag("b", "")]);

        // Enough tags to take the hash-map path.
        let mut line = String::from("@");
        for i in 0..40 {
            line.push_str(&format!("k{}={i};", i % 10));
        }
        line.push_str(" COMMAND");
        let msg = Message::parse(&line).unwrap();
        let got: Vec<_> = msg
            .tags
            .iter()
            .map(|t| (t.key.to_owned(), t.value.to_string()))
            .collect();
        let want: Vec<_> = (30..40)
            .map(|i| (format!("k{}", i % 10), i.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn parse_borrows_without_escapes() {
        let msg = Message::parse("@a=b;c=d\\se :src CMD x").unwrap();
        assert!(matches!(msg.tags[0].value, Cow::Borrowed("b")));
        assert!(matches!(&msg.tags[1].value, Cow::Owned(v) if v == "d e"));
    }

    #[rstest]
    #[case::full("nick!user@host", ("nick", Some("user"), Some("host")))]
    #[case::nick_only("nick", ("nick", None, None))]
    #[case::server("irc.example.com", ("irc.example.com", None, None))]
    #[case::no_user("nick@host", ("nick", None, Some("host")))]
    #[case::no_host("nick!user", ("nick", Some("user"), None))]
    #[case::empty_user("nick!@host", ("nick", None, Some("host")))]
    #[case::at_in_host("n!u@h@x", ("n", Some("u"), Some("h@x")))]
    #[case::empty("", ("", None, None))]
    fn split_source_table(
        #[case] source: &str,
        #[case] expected: (&str, Option<&str>, Option<&str>),
    ) {
        assert_eq!(split_source(source), expected);
    }

    /// Parses `line`; when it parses, re-serializing must give a line that
    /// parses back to the same message and is no longer than the original.
    fn check_no_panic_and_round_trip(line: &str) {
        let _ = split_source(line);
        let _ = unescape_tag_value(line);
        let Ok(msg) = Message::parse(line) else {
            return;
        };
        for trailing in [false, true] {
            let out = written(&msg, trailing);
            let out = out.strip_suffix("\r\n").unwrap();
            assert_eq!(Message::parse(out).as_ref(), Ok(&msg), "{line:?} → {out:?}");
        }
        assert_eq!(msg.tags_len() + msg.body_len(), written(&msg, false).len());
    }

    #[test]
    fn never_panics_on_odd_input() {
        let fixed = [
            "",
            "@",
            ":",
            "@a ",
            ": x",
            " ",
            "  ",
            "\r",
            "@ ",
            "@ :",
            "@;",
            "@=",
            "@=;= x",
            ": ",
            ":  :",
            "x :",
            "x ::",
            "@a=\\",
            "@a=\\ x",
            "@\\ x",
            "é",
            "@é=é :é é :é",
            "@a=é\\",
            "x\u{10FFFF}",
            ":\u{0301} \u{0301}",
            "\u{FEFF}PING",
        ];
        for line in fixed {
            check_no_panic_and_round_trip(line);
        }

        // Every string of up to 5 atoms from an alphabet of the bytes that
        // matter to the grammar, plus multibyte characters next to them.
        let alphabet = [" ", ":", "@", ";", "=", "\\", "a", "é", "🦀", "\r"];
        let mut line = String::new();
        let mut idx = [0usize; 5];
        for len in 0..=idx.len() {
            idx.fill(0);
            loop {
                line.clear();
                for &i in &idx[..len] {
                    line.push_str(alphabet[i]);
                }
                check_no_panic_and_round_trip(&line);
                // Next combination (odometer).
                let mut pos = 0;
                while pos < len {
                    idx[pos] += 1;
                    if idx[pos] < alphabet.len() {
                        break;
                    }
                    idx[pos] = 0;
                    pos += 1;
                }
                if pos == len {
                    break;
                }
            }
        }

        // Multibyte characters straddling the length limits.
        for pad in 0..8 {
            let body = format!("PRIVMSG #c :{}{}", "a".repeat(495 + pad), "€".repeat(3));
            check_no_panic_and_round_trip(&body);
            let tags = format!("@k={}{} PING", "v".repeat(8182 + pad), "€".repeat(3));
            check_no_panic_and_round_trip(&tags);
        }
        // Every prefix of a busy line, cut at each char boundary.
        let busy = "@a=é\\s;b;+c/d=\\:🦀 :ñ!ü@h PRIVMSG  #ç  :héllo wörld 🦀";
        for (i, _) in busy.char_indices() {
            check_no_panic_and_round_trip(&busy[..i]);
            check_no_panic_and_round_trip(&busy[i..]);
        }
    }
}
