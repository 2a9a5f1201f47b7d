//! Turning a reply into bytes and queueing it: numerics, a line to one connection, one line to
//! many. Every line the core sends is encoded here, so that the wire format (trailing
//! parameters, the `server-time` tag, cleaning of echoed user text) is decided in one place.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::state::Caps;
use super::{ConnId, Output, Server};
use crate::message::MAX_BODY_LEN;
use crate::message::{Message, Tag};
use crate::numerics::*;
use crate::time::Millis;

impl Server {
    /// Sends a numeric: `:<server> <code> <client> <params…>`, the last param as trailing.
    pub(super) fn numeric(&mut self, now: Millis, id: ConnId, code: &str, params: &[&str]) {
        let Some(c) = self.conns.get(id) else { return };
        let mut all: Vec<&str> = Vec::with_capacity(params.len() + 1);
        all.push(c.display_nick());
        all.extend_from_slice(params);
        let line = encode(
            &time_tag(now, c.caps),
            Some(&self.config.server_name),
            code,
            &all,
        );
        self.out.push_back(Output::Send { to: id, line });
    }

    /// Sends numerics `code` carrying `items` as a space-separated last parameter after `head`,
    /// in as many lines as it takes for each to fit in 512 bytes (`NAMES`, `ISON`, `USERHOST`,
    /// the rooms of a `WHOIS`). With no items, one line with an empty list if `even_empty`.
    pub(super) fn numeric_list(
        &mut self,
        now: Millis,
        id: ConnId,
        code: &str,
        head: &[&str],
        items: &[impl AsRef<str>],
        even_empty: bool,
    ) {
        self.numeric_list_by(now, id, code, head, items, even_empty, ' ');
    }

    /// [`Server::numeric_list`] with the items separated by `sep` (`MONITOR`'s are by commas).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn numeric_list_by(
        &mut self,
        now: Millis,
        id: ConnId,
        code: &str,
        head: &[&str],
        items: &[impl AsRef<str>],
        even_empty: bool,
        sep: char,
    ) {
        let Some(c) = self.conns.get(id) else { return };
        let mut params: Vec<&str> = vec![c.display_nick()];
        params.extend_from_slice(head);
        params.push("");
        let overhead = Message {
            tags: Vec::new(),
            source: Some(&self.config.server_name),
            verb: code,
            params,
        }
        .body_len_trailing();
        let budget = MAX_BODY_LEN.saturating_sub(overhead);
        let mut lines: Vec<String> = Vec::new();
        let mut current = String::new();
        for item in items.iter().map(AsRef::as_ref) {
            if !current.is_empty() && current.len() + 1 + item.len() > budget {
                lines.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(sep);
            }
            current.push_str(item);
        }
        if !current.is_empty() || (lines.is_empty() && even_empty) {
            lines.push(current);
        }
        for line in lines {
            let mut all: Vec<&str> = head.to_vec();
            all.push(&line);
            self.numeric(now, id, code, &all);
        }
    }

    /// Sends `:<server> <verb> <params…>`.
    pub(super) fn send_server(&mut self, now: Millis, id: ConnId, verb: &str, params: &[&str]) {
        let server = self.config.server_name.clone();
        self.send_msg(now, id, Some(&server), verb, params);
    }

    pub(super) fn send_msg(
        &mut self,
        now: Millis,
        id: ConnId,
        source: Option<&str>,
        verb: &str,
        params: &[&str],
    ) {
        let Some(c) = self.conns.get(id) else { return };
        let line = encode(&time_tag(now, c.caps), source, verb, params);
        self.out.push_back(Output::Send { to: id, line });
    }

    /// Sends one message to many: it is encoded at most twice (with and without `server-time`),
    /// and every recipient shares those bytes.
    pub(super) fn fanout(
        &mut self,
        now: Millis,
        to: impl Iterator<Item = ConnId>,
        source: Option<&str>,
        verb: &str,
        params: &[&str],
    ) {
        let conns = &self.conns;
        let to = to.filter_map(|id| Some((id, conns.get(id)?.caps)));
        fanout_to(&mut self.out, now, to, source, verb, params);
    }

    /// Queues `ERROR :<error>` for `id`, then its close.
    pub(super) fn close(&mut self, id: ConnId, error: &str, reason: &str) {
        self.out.push_back(Output::Send {
            to: id,
            line: encode(&[], None, "ERROR", &[error]),
        });
        self.out.push_back(Output::Close {
            conn: id,
            reason: reason.to_owned(),
        });
    }

    /// labeled-response: the replies to `id` queued since `mark` answer a line labelled
    /// `label`. One reply carries the label; several come in a `labeled-response` batch; none
    /// is an `ACK`. Lines to others are left as they are (a broadcast that included `id` is
    /// split, keeping everyone's order).
    pub(super) fn label_replies(&mut self, id: ConnId, mark: usize, label: &str) {
        if self.conns.get(id).is_none() {
            return; // it closed (QUIT): its last lines go as they are
        }
        let skip: Vec<usize> = std::mem::take(&mut self.not_replies)
            .into_iter()
            .filter_map(|at| at.checked_sub(mark))
            .collect();
        let new: Vec<(bool, Output)> = (self.out.drain(mark..).enumerate())
            .map(|(i, o)| (!skip.contains(&i), o))
            .collect();
        let is_mine = |reply: bool, o: &Output| {
            reply
                && match o {
                    Output::Send { to, .. } => *to == id,
                    Output::Broadcast { to, .. } => to.contains(&id),
                    Output::Close { .. } => false,
                }
        };
        let count = new.iter().filter(|(r, o)| is_mine(*r, o)).count();
        if count == 0 {
            self.out.extend(new.into_iter().map(|(_, o)| o));
            return self.ack(id, Some(label));
        }
        let mut label_tag = BytesMut::new();
        label_tag.extend_from_slice(b"label=");
        crate::message::escape_tag_value(label, &mut label_tag);
        let server = self.config.server_name.clone();
        let batch = (count > 1).then(|| {
            self.msgids += 1;
            format!("L{:x}", self.msgids)
        });
        let tag: Vec<u8> = match &batch {
            Some(name) => format!("batch={name}").into_bytes(),
            None => label_tag.to_vec(),
        };
        let mut seen = 0;
        for (reply, o) in new {
            if !is_mine(reply, &o) {
                self.out.push_back(o);
                continue;
            }
            if seen == 0
                && let Some(name) = &batch
            {
                let start = encode(
                    &[],
                    Some(&server),
                    "BATCH",
                    &[&format!("+{name}"), "labeled-response"],
                );
                let line = retag(&start, &label_tag);
                self.out.push_back(Output::Send { to: id, line });
            }
            seen += 1;
            let line = match o {
                Output::Send { line, .. } => line,
                Output::Broadcast { mut to, line } => {
                    to.retain(|&t| t != id);
                    if !to.is_empty() {
                        self.out.push_back(Output::Broadcast {
                            to,
                            line: line.clone(),
                        });
                    }
                    line
                }
                Output::Close { .. } => unreachable!("not a line"),
            };
            self.out.push_back(Output::Send {
                to: id,
                line: retag(&line, &tag),
            });
            if seen == count
                && let Some(name) = &batch
            {
                let end = encode(&[], Some(&server), "BATCH", &[&format!("-{name}")]);
                self.out.push_back(Output::Send { to: id, line: end });
            }
        }
    }

    /// `ACK` with `label` to `id`, if there is a label: a labelled line that sent nothing back.
    pub(super) fn ack(&mut self, id: ConnId, label: Option<&str>) {
        let Some(label) = label else { return };
        let tags = [Tag {
            key: "label",
            value: Cow::Borrowed(label),
        }];
        self.reply_line(id, &tags, "ACK", &[]);
    }

    /// A line from the server to `id` with exactly `tags` (no `server-time`: batch frames, ACK).
    pub(super) fn reply_line(&mut self, id: ConnId, tags: &[Tag<'_>], verb: &str, params: &[&str]) {
        let line = encode(tags, Some(&self.config.server_name), verb, params);
        self.out.push_back(Output::Send { to: id, line });
    }

    pub(super) fn reply_too_long(&mut self, now: Millis, id: ConnId) {
        self.numeric(
            now,
            id,
            ERR_INPUTTOOLONG,
            &["Input line was too long: IRC allows 512 bytes per line (8191 more for tags); it was dropped"],
        );
    }
}

/// [`Server::fanout`] to recipients whose capabilities are known (a room's members), onto
/// `out` (the core's output queue; a free function so that its caller may still read other
/// parts of the core while it runs).
pub(super) fn fanout_to(
    out: &mut VecDeque<Output>,
    now: Millis,
    to: impl Iterator<Item = (ConnId, Caps)>,
    source: Option<&str>,
    verb: &str,
    params: &[&str],
) {
    fanout_tagged(out, now, to, source, verb, params, &[]);
}

/// [`fanout_to`] with `tags` (a message's `msgid` and client-only tags) for the recipients
/// that asked for `message-tags`: each line is encoded at most four times (with and without
/// `server-time`, with and without the tags).
pub(super) fn fanout_tagged(
    out: &mut VecDeque<Output>,
    now: Millis,
    to: impl Iterator<Item = (ConnId, Caps)>,
    source: Option<&str>,
    verb: &str,
    params: &[&str],
    tags: &[Tag<'_>],
) {
    let mut encoded: [Option<Bytes>; 4] = [None, None, None, None];
    // Consecutive recipients of the same encoding form one `Broadcast`, so the deliveries
    // keep the recipients' order exactly.
    let mut run: Option<(Bytes, Vec<ConnId>)> = None;
    for (id, caps) in to {
        let tagged = caps.message_tags() && !tags.is_empty();
        let line = encoded[usize::from(caps.server_time()) + 2 * usize::from(tagged)]
            .get_or_insert_with(|| {
                let mut all = time_tag(now, caps);
                if tagged {
                    all.extend(tags.iter().cloned());
                }
                encode(&all, source, verb, params)
            });
        match &mut run {
            Some((current, ids)) if current.as_ptr() == line.as_ptr() => ids.push(id),
            _ => {
                if let Some((line, ids)) = run.take() {
                    push_broadcast(out, ids, line);
                }
                run = Some((line.clone(), vec![id]));
            }
        }
    }
    if let Some((line, ids)) = run {
        push_broadcast(out, ids, line);
    }
}

fn push_broadcast(out: &mut VecDeque<Output>, to: Vec<ConnId>, line: Bytes) {
    out.push_back(if to.len() == 1 {
        Output::Send { to: to[0], line }
    } else {
        Output::Broadcast { to, line }
    });
}

pub(super) fn time_tag(now: Millis, caps: Caps) -> Vec<Tag<'static>> {
    if caps.server_time() {
        vec![Tag {
            key: "time",
            value: Cow::Owned(now.to_rfc3339()),
        }]
    } else {
        Vec::new()
    }
}

/// `ERROR :<text>` as the server sends it (at most 512 bytes: a long text loses its end), for a
/// runtime that must close a connection on its own (a cluster server cut off from its log).
pub fn error_line(text: &str) -> Bytes {
    encode(&[], None, "ERROR", &[text])
}

/// The reason a `QUIT` with `param` gives its rooms, as the core words it.
pub fn quit_reason(param: Option<&str>) -> String {
    match param {
        Some(r) if !r.is_empty() => format!("Quit: {r}"),
        _ => "Quit".to_owned(),
    }
}

/// Encodes one line. Text-carrying messages and numerics always use a `:` trailing parameter
/// (what clients expect); JOIN, NICK, MODE, BATCH, TAGMSG and MARKREAD use the plain form, as ircds send
/// them.
///
/// No line leaves longer than IRC's 512 bytes (CR LF included, tags not counted): what would be
/// longer loses the end of its last parameter (a reason, a topic, an echoed token), or, if that
/// is not enough, of its longest other one. Lists are split before they get here
/// ([`Server::numeric_list`]); this is the guarantee, not the way to fit.
pub(super) fn encode(tags: &[Tag<'_>], source: Option<&str>, verb: &str, params: &[&str]) -> Bytes {
    // A parameter a user sent in trailing form (`NAMES :#a b`) may be echoed back in a middle
    // position, where a space or leading `:` would corrupt the line: such params are cleaned.
    let cleaned: Vec<Cow<'_, str>> = params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i + 1 == params.len() || !(p.is_empty() || p.contains(' ') || p.starts_with(':')) {
                Cow::Borrowed(*p)
            } else {
                let s = p.trim_start_matches(':').replace(' ', "_");
                Cow::Owned(if s.is_empty() { "*".to_owned() } else { s })
            }
        })
        .collect();
    let mut msg = Message {
        tags: tags.to_vec(),
        source,
        verb,
        params: cleaned.iter().map(|p| p.as_ref()).collect(),
    };
    let trailing = !matches!(
        verb,
        "JOIN" | "NICK" | "MODE" | "BATCH" | "TAGMSG" | "MARKREAD" | "CHATHISTORY"
    );
    fit(&mut msg, trailing);
    let mut buf = BytesMut::new();
    if trailing {
        msg.write_to_trailing(&mut buf);
    } else {
        msg.write_to(&mut buf);
    }
    buf.freeze()
}

/// Cuts `msg`'s parameters until its body fits in [`MAX_BODY_LEN`]: the last one first (down to
/// nothing), then the longest of the others (down to one character, so each stays a valid
/// middle parameter).
fn fit(msg: &mut Message<'_>, trailing: bool) {
    loop {
        let len = if trailing {
            msg.body_len_trailing()
        } else {
            msg.body_len()
        };
        let Some(excess) = len.checked_sub(MAX_BODY_LEN).filter(|&e| e > 0) else {
            return;
        };
        let last = msg.params.len().saturating_sub(1);
        let (i, floor) = match msg.params.last() {
            Some(p) if !p.is_empty() => (last, 0),
            _ => match (0..last).max_by_key(|&i| msg.params[i].len()) {
                Some(i) if msg.params[i].len() > 1 => (i, 1),
                _ => return, // nothing left to cut: cannot happen with Parla's bounded names
            },
        };
        let p = msg.params[i];
        let keep = p.len().saturating_sub(excess).max(floor);
        // A non-trailing last parameter cut to nothing gains a ':' — the loop takes it off the
        // next one.
        msg.params[i] = truncate(p, keep);
        if msg.params[i].len() == p.len() {
            return; // a character longer than the excess at the floor: stop rather than loop
        }
    }
}

/// `line` with one more tag (`key=value`, escaped) in front of its others.
fn retag(line: &[u8], tag: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(line.len() + tag.len() + 2);
    out.extend_from_slice(b"@");
    out.extend_from_slice(tag);
    match line.strip_prefix(b"@") {
        Some(rest) => {
            out.extend_from_slice(b";");
            out.extend_from_slice(rest);
        }
        None => {
            out.extend_from_slice(b" ");
            out.extend_from_slice(line);
        }
    }
    out.freeze()
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
