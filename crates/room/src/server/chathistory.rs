//! History: every room message and direct message is kept ([`crate::history::History`]), and
//! given back with IRCv3 `draft/chathistory` (`CHATHISTORY LATEST|BEFORE|AFTER|BETWEEN|AROUND
//! <target> <ref> <limit>`, `CHATHISTORY TARGETS <from> <to> <limit>`) and, to clients that did
//! not ask for it, as the default room's last messages when they join it.
//!
//! Who sees what: a room's history, its members (all of it that is kept, including what was said
//! before they joined, as in ergo). A conversation's, its two parties: Parla has no accounts, so
//! a name is its holder's; a new holder of a name reads its earlier conversations only if it
//! comes from the address of the holder before it within [`Config::history_reclaim_ms`] of that
//! one leaving (a reconnect), otherwise only what is said from its arrival on.

use std::borrow::Cow;

use super::commands::Params;
use super::replies::{encode, time_tag};
use super::state::Caps;
use super::{ConnId, Output, Server};
use crate::history::{Owner, Pos, Stored, Verb, target_key};
use crate::message::Tag;
use crate::names::{casefold, is_channel_name, is_valid_nick};
use crate::time::Millis;

/// A message reference in a `CHATHISTORY` command.
#[derive(Debug, Clone, Copy)]
enum Ref {
    At(Pos),
    Time(Millis),
}

impl Ref {
    /// As the exclusive lower bound of a range: messages after it.
    fn after(self) -> Pos {
        match self {
            Ref::At(p) => p,
            Ref::Time(t) => Pos::last_at(t),
        }
    }

    /// As the exclusive upper bound: messages before it.
    fn before(self) -> Pos {
        match self {
            Ref::At(p) => p,
            Ref::Time(t) => Pos::first_at(t),
        }
    }
}

/// Parses `YYYY-MM-DDThh:mm:ss.sssZ`.
pub(super) fn parse_timestamp(ts: &str) -> Option<Millis> {
    if !super::read_marker::valid_timestamp(ts) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ts[r].parse::<u32>().ok();
    let date = chrono::NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)?;
    let t = date.and_hms_milli_opt(n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?)?;
    u64::try_from(t.and_utc().timestamp_millis())
        .ok()
        .map(Millis)
}

impl Server {
    /// Keeps a message `id` just sent to `target` (a room's name or a nick as relayed) with id
    /// `msgid`, if history keeps such messages.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn keep(
        &mut self,
        now: Millis,
        id: ConnId,
        verb: &str,
        target: &str,
        msgid: &str,
        tags: &[Tag<'_>],
        lines: Vec<(bool, String)>,
    ) {
        let room = is_channel_name(target);
        if !room && !self.config.history_direct_messages {
            return;
        }
        let verb = match verb {
            "PRIVMSG" => Verb::Privmsg,
            "NOTICE" => Verb::Notice,
            _ => return,
        };
        let c = self.conns.live(id);
        let key = target_key(c.nick.as_deref().unwrap_or_default(), target);
        // A name's first conversation records who holds it (see `claim_history`).
        if !room {
            let peer = self.nicks.get(&casefold(target)).copied();
            for party in std::iter::once(id).chain(peer) {
                if self
                    .conns
                    .get(party)
                    .is_some_and(|p| p.registered && !p.owner_kept)
                {
                    self.record_owner(party, None);
                }
            }
        }
        let c = self.conns.live(id);
        let m = Stored {
            pos: Pos {
                at: now,
                seq: self.msgids,
            },
            msgid: msgid.to_owned(),
            source: c.prefix.clone(),
            verb,
            target: target.to_owned(),
            tags: (tags.iter())
                .filter(|t| t.key != "msgid")
                .map(|t| (t.key.to_owned(), t.value.to_string()))
                .collect(),
            lines,
        };
        self.history.append(&key, &m);
    }

    /// The name `id` now holds becomes its own in history: from when it may read that name's
    /// conversations (see the module doc).
    pub(super) fn claim_history(&mut self, now: Millis, id: ConnId) {
        let c = self.conns.live(id);
        let Some(nick) = c.nick.as_deref() else {
            return;
        };
        let key = casefold(nick);
        let host = c.host.clone();
        let since = match self.history.owner(&key) {
            Some(o)
                if o.host == host
                    && o.left
                        .is_none_or(|l| now.since(l) <= self.config.history_reclaim_ms) =>
            {
                o.since
            }
            _ => now,
        };
        let markers = self.history.markers(&key);
        let c = self.conns.live_mut(id);
        c.history_since = since;
        c.read_markers = markers;
        c.owner_kept = false;
        // Recorded only for a name with conversations (the record decides who may read them;
        // a store of every name ever used would grow with each visitor); a name's first
        // conversation records its holder then (`keep`).
        if !self.history.conversations(&key, now).is_empty() {
            self.record_owner(id, None);
        }
    }

    /// Records `id` as its name's holder (since its `history_since`), left at `left`.
    fn record_owner(&mut self, id: ConnId, left: Option<Millis>) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let Some(key) = c.nick.as_deref().map(casefold) else {
            return;
        };
        c.owner_kept = true;
        let owner = Owner {
            host: c.host.clone(),
            since: c.history_since,
            left,
        };
        self.history.set_owner(&key, owner);
    }

    /// `id` gives up the name it holds (leaving, or renaming): recorded if its holder was.
    pub(super) fn release_history(&mut self, now: Millis, id: ConnId) {
        let Some(c) = self.conns.get(id) else { return };
        if c.registered && c.owner_kept {
            self.record_owner(id, Some(now));
        }
    }

    /// `CHATHISTORY <subcommand> …`
    pub(super) fn on_chathistory(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        let sub = p.get(0).unwrap_or_default().to_ascii_uppercase();
        let fail = |server: &mut Server, code: &str, rest: &[&str]| {
            let mut params = vec!["CHATHISTORY", code];
            params.extend_from_slice(rest);
            server.send_server(now, id, "FAIL", &params);
        };
        let needed = match sub.as_str() {
            "BETWEEN" => 5,
            "LATEST" | "BEFORE" | "AFTER" | "AROUND" | "TARGETS" => 4,
            "" => 2,
            _ => {
                let text =
                    "Unknown subcommand: use LATEST, BEFORE, AFTER, BETWEEN, AROUND or TARGETS";
                return fail(self, "UNKNOWN_COMMAND", &[&sub, text]);
            }
        };
        if p.get(needed - 1).is_none() {
            let text = match sub.as_str() {
                "BETWEEN" => "Missing parameters: CHATHISTORY BETWEEN <target> <ref> <ref> <limit>",
                "TARGETS" => {
                    "Missing parameters: CHATHISTORY TARGETS <timestamp> <timestamp> <limit>"
                }
                _ => "Missing parameters: CHATHISTORY <subcommand> <target> <ref> <limit>",
            };
            let sub = if sub.is_empty() { "*" } else { sub.as_str() };
            return fail(self, "NEED_MORE_PARAMS", &[sub, text]);
        }
        let max = self.config.chathistory_max;
        let Some(limit) = p
            .get(needed - 1)
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|&l| l > 0)
        else {
            let text = format!("The limit must be a number from 1 to {max}");
            return fail(self, "INVALID_PARAMS", &[&sub, &text]);
        };
        let limit = limit.min(max);
        #[cfg(feature = "deliberate-bugs")]
        let limit = match self.config.bug {
            Some(super::config::Bug::HistoryPageShort) => limit.saturating_sub(1).max(1),
            _ => limit,
        };
        if sub == "TARGETS" {
            let (Some(a), Some(b)) = (
                p.get(1)
                    .and_then(|r| parse_timestamp(r.strip_prefix("timestamp=")?)),
                p.get(2)
                    .and_then(|r| parse_timestamp(r.strip_prefix("timestamp=")?)),
            ) else {
                let text = "TARGETS takes two timestamp=YYYY-MM-DDThh:mm:ss.sssZ";
                return fail(self, "INVALID_PARAMS", &[&sub, text]);
            };
            return self.send_targets(now, id, a.min(b), a.max(b), limit);
        }
        let target = p.get(1).unwrap_or_default();
        // Which history, and from when this connection may read it.
        let c = self.conns.live(id);
        let me = c.nick.clone().unwrap_or_default();
        let (key, since) = if is_channel_name(target) {
            let key = casefold(target);
            let member = (self.rooms.get(&key)).is_some_and(|r| r.members.contains_key(&id));
            if !member {
                let text = "You are not in that room: join it to read its history";
                return fail(self, "INVALID_TARGET", &[&sub, target, text]);
            }
            (key, None)
        } else if is_valid_nick(target, self.config.nick_len) && self.config.history_direct_messages
        {
            (target_key(&me, target), Some(c.history_since))
        } else {
            let text = "No such room or nick to read history of";
            return fail(self, "INVALID_TARGET", &[&sub, target, text]);
        };
        let mut refs = Vec::new();
        for given in (2..needed - 1).filter_map(|i| p.get(i)) {
            let r = match given.split_once('=') {
                _ if given == "*" && sub == "LATEST" => None,
                Some(("timestamp", ts)) => match parse_timestamp(ts) {
                    Some(t) => Some(Ref::Time(t)),
                    None => {
                        let text = "A timestamp is written timestamp=YYYY-MM-DDThh:mm:ss.sssZ";
                        return fail(self, "INVALID_PARAMS", &[&sub, text]);
                    }
                },
                Some(("msgid", msgid)) => match self.history.find(&key, msgid) {
                    Some(pos) => Some(Ref::At(pos)),
                    None => {
                        let text = "No message with that id is kept here (it may have expired); ask by timestamp instead";
                        return fail(self, "INVALID_PARAMS", &[&sub, given, text]);
                    }
                },
                _ => {
                    let text = "A message is referred to as msgid=<id> or timestamp=<time>";
                    return fail(self, "INVALID_PARAMS", &[&sub, text]);
                }
            };
            refs.push(r);
        }
        // A conversation's messages from before this holder's time are not theirs to read.
        let floor = since.map(|s| Pos::last_at(Millis(s.0.saturating_sub(1))));
        let lo = |r: Option<Pos>| match (r, floor) {
            (Some(r), Some(f)) => Some(r.max(f)),
            (r, f) => r.or(f),
        };
        let h = &self.history;
        let found = match (sub.as_str(), refs.as_slice()) {
            ("LATEST", [r]) => h.scan(&key, lo(r.map(Ref::after)), None, true, limit, now),
            ("BEFORE", [Some(r)]) => h.scan(&key, lo(None), Some(r.before()), true, limit, now),
            ("AFTER", [Some(r)]) => h.scan(&key, lo(Some(r.after())), None, false, limit, now),
            ("BETWEEN", [Some(a), Some(b)]) => {
                // From the first reference towards the second, either way in time.
                let forwards = a.after() <= b.before();
                if forwards {
                    h.scan(
                        &key,
                        lo(Some(a.after())),
                        Some(b.before()),
                        false,
                        limit,
                        now,
                    )
                } else {
                    h.scan(
                        &key,
                        lo(Some(b.after())),
                        Some(a.before()),
                        true,
                        limit,
                        now,
                    )
                }
            }
            ("AROUND", [Some(r)]) => {
                // Half before it, the rest from it on (the message itself first).
                let at = r.before();
                let mut got = h.scan(&key, lo(None), Some(at), true, limit / 2, now);
                let rest = limit - got.len();
                got.extend(h.scan(&key, lo(Some(at.pred())), None, false, rest, now));
                got
            }
            _ => {
                let text = "Only LATEST takes *; the others take msgid=<id> or timestamp=<time>";
                return fail(self, "INVALID_PARAMS", &[&sub, text]);
            }
        };
        self.send_history(now, id, target, &found, false);
    }

    /// `CHATHISTORY TARGETS`: the rooms `id` is in and the people it has talked with whose
    /// newest message is strictly between `from` and `to`, oldest first.
    fn send_targets(&mut self, now: Millis, id: ConnId, from: Millis, to: Millis, limit: usize) {
        let c = self.conns.live(id);
        let since = c.history_since;
        let mut found: Vec<(Millis, String)> = Vec::new();
        for key in c.rooms.iter() {
            if let (Some(at), Some(room)) = (self.history.latest(key, now), self.rooms.get(key)) {
                found.push((at, room.name.clone()));
            }
        }
        if self.config.history_direct_messages
            && let Some(nick) = c.nick.as_deref()
        {
            for (peer, at) in self.history.conversations(&casefold(nick), now) {
                if at >= since {
                    found.push((at, peer));
                }
            }
        }
        found.retain(|(at, _)| from < *at && *at < to);
        found.sort();
        found.truncate(limit);
        let caps = self.conns.live(id).caps;
        let batch = caps.batch().then(|| self.history_batch_name());
        let server = self.config.server_name.clone();
        if let Some(b) = &batch {
            let start = format!("+{b}");
            self.reply_line(id, &[], "BATCH", &[&start, "draft/chathistory-targets"]);
        }
        for (at, name) in found {
            let mut tags = time_tag(now, caps);
            if let Some(b) = &batch {
                // In a batch, its start answers a label and carries it.
                self.not_replies.push(self.out.len());
                tags.push(Tag {
                    key: "batch",
                    value: Cow::Borrowed(b.as_str()),
                });
            }
            let line = encode(
                &tags,
                Some(&server),
                "CHATHISTORY",
                &["TARGETS", &name, &at.to_rfc3339()],
            );
            self.out.push_back(Output::Send { to: id, line });
        }
        if let Some(b) = &batch {
            self.not_replies.push(self.out.len());
            self.reply_line(id, &[], "BATCH", &[&format!("-{b}")]);
        }
    }

    fn history_batch_name(&mut self) -> String {
        self.msgids += 1;
        format!("H{:x}", self.msgids)
    }

    /// Sends `found` (ascending) to `id` as the history of `target`: in a `chathistory` batch
    /// to a client that takes batches; each message with its time and id as those were. A
    /// replay (`!asked`): its lines are not replies to the line being handled, and a client
    /// without `server-time` sees each message's time at the front of its text.
    pub(super) fn send_history(
        &mut self,
        now: Millis,
        id: ConnId,
        target: &str,
        found: &[std::sync::Arc<Stored>],
        replay: bool,
    ) {
        let caps = self.conns.live(id).caps;
        let batch = caps.batch().then(|| self.history_batch_name());
        let mark = |server: &mut Server| {
            if replay {
                server.not_replies.push(server.out.len());
            }
        };
        if let Some(b) = &batch {
            mark(self);
            self.reply_line(id, &[], "BATCH", &[&format!("+{b}"), "chathistory", target]);
        }
        // In a batch, its start answers a label (labeled-response) and carries it.
        let quiet = replay || batch.is_some();
        for m in found {
            self.send_kept(now, id, caps, m, batch.as_deref(), replay, quiet);
        }
        if let Some(b) = &batch {
            self.not_replies.push(self.out.len());
            self.reply_line(id, &[], "BATCH", &[&format!("-{b}")]);
        }
    }

    /// One kept message to `id`, inside `batch`; `quiet`: its lines answer no label.
    #[allow(clippy::too_many_arguments)]
    fn send_kept(
        &mut self,
        now: Millis,
        id: ConnId,
        caps: Caps,
        m: &Stored,
        batch: Option<&str>,
        replay: bool,
        quiet: bool,
    ) {
        let time = m.pos.at.to_rfc3339();
        let mut tags: Vec<Tag<'_>> = Vec::new();
        if let Some(b) = batch {
            tags.push(Tag {
                key: "batch",
                value: Cow::Borrowed(b),
            });
        }
        if caps.server_time() {
            tags.push(Tag {
                key: "time",
                value: Cow::Borrowed(time.as_str()),
            });
        }
        let gated: Vec<Tag<'_>> = if caps.message_tags() {
            std::iter::once(Tag {
                key: "msgid",
                value: Cow::Borrowed(m.msgid.as_str()),
            })
            .chain(m.tags.iter().map(|(k, v)| Tag {
                key: k.as_str(),
                value: Cow::Borrowed(v.as_str()),
            }))
            .collect()
        } else {
            Vec::new()
        };
        // Without server-time a replayed line says when it was said.
        let stamp = (replay && !caps.server_time()).then(|| when(m.pos.at, now));
        let verb = m.verb.as_str();
        let push = |server: &mut Server, tags: &[Tag<'_>], verb: &str, params: &[&str]| {
            if quiet {
                server.not_replies.push(server.out.len());
            }
            let line = encode(tags, Some(&m.source), verb, params);
            server.out.push_back(Output::Send { to: id, line });
        };
        if m.lines.len() > 1 && caps.multiline() {
            let inner = self.history_batch_name();
            let mut start = tags.clone();
            start.extend(gated.iter().cloned());
            let open = format!("+{inner}");
            push(
                self,
                &start,
                "BATCH",
                &[&open, "draft/multiline", &m.target],
            );
            for (concat, text) in &m.lines {
                let mut t = vec![Tag {
                    key: "batch",
                    value: Cow::Borrowed(inner.as_str()),
                }];
                if *concat {
                    t.push(Tag {
                        key: "draft/multiline-concat",
                        value: Cow::Borrowed(""),
                    });
                }
                push(self, &t, verb, &[&m.target, text]);
            }
            let mut end = tags.clone();
            end.retain(|t| t.key == "batch");
            push(self, &end, "BATCH", &[&format!("-{inner}")]);
            return;
        }
        let lines = m.lines.iter().filter(|(_, t)| !t.is_empty());
        for (i, (_, text)) in lines.enumerate() {
            let mut all = tags.clone();
            if i == 0 {
                all.extend(gated.iter().cloned());
            }
            let text: Cow<'_, str> = match &stamp {
                Some(s) => Cow::Owned(stamped(s, text)),
                None => Cow::Borrowed(text),
            };
            push(self, &all, verb, &[&m.target, &text]);
        }
    }

    /// After `id` joined the default room: its last [`Config::history_replay`] messages, to a
    /// client that did not ask for `draft/chathistory` (one that did asks for what it wants).
    pub(super) fn replay_on_join(&mut self, now: Millis, id: ConnId, key: &str) {
        let n = self.config.history_replay;
        let caps = self.conns.live(id).caps;
        if n == 0 || caps.chathistory() || !self.is_default_room(key) {
            return;
        }
        let found = self.history.scan(key, None, None, true, n, now);
        if found.is_empty() {
            return;
        }
        let name = self.rooms[key].name.clone();
        self.send_history(now, id, &name, &found, true);
    }
}

/// When `at` was, as a person reads it at `now`: the time of day if the same day, else the date
/// too (UTC, said so).
fn when(at: Millis, now: Millis) -> String {
    let t = at.to_rfc3339();
    if at.0 / 86_400_000 == now.0 / 86_400_000 {
        format!("[{} UTC]", &t[11..16])
    } else {
        format!("[{} {} UTC]", &t[..10], &t[11..16])
    }
}

/// `text` with `stamp` in front; a CTCP ACTION keeps its frame (`\x01ACTION [12:00 UTC] waves\x01`).
fn stamped(stamp: &str, text: &str) -> String {
    match text.strip_prefix("\x01ACTION ") {
        Some(rest) => format!("\x01ACTION {stamp} {rest}"),
        None => format!("{stamp} {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_milliseconds() {
        let t = parse_timestamp("2026-11-29T13:05:00.123Z").unwrap();
        assert_eq!(t, Millis(1_795_957_500_123));
        assert_eq!(t.to_rfc3339(), "2026-11-29T13:05:00.123Z");
        assert!(parse_timestamp("2026-02-30T13:05:00.123Z").is_none());
        assert!(parse_timestamp("2026-11-29 13:05:00").is_none());
    }

    #[test]
    fn replayed_text_says_when() {
        let now = Millis(1_795_957_500_123);
        assert_eq!(when(Millis(now.0 - 60_000), now), "[13:04 UTC]");
        assert_eq!(
            when(Millis(now.0 - 86_400_000), now),
            "[2026-11-28 13:05 UTC]"
        );
        assert_eq!(
            stamped("[x]", "\x01ACTION waves\x01"),
            "\x01ACTION [x] waves\x01"
        );
        assert_eq!(stamped("[x]", "hi"), "[x] hi");
    }
}
