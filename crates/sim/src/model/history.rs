//! What the model knows of history: every room message and direct message the server must
//! have kept, in order, and what `CHATHISTORY` and the default room's replay on join must give
//! back; who may read a conversation (its two names; a new holder of a name only what came
//! after it, unless it is the last holder back from the same address within the reclaim
//! window); read markers kept with the name.
//!
//! The books outlive a server incarnation, as the store they mirror does: a restarted server
//! (the simulation's crash and restart) must give back what the one before it kept.
//! Retention never applies in a simulated run (30 days, 100,000 per target).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use parla_room::Millis;

use super::{ANY, Model, Owed, fold, valid_nick};

/// One kept message.
#[derive(Debug, Clone)]
struct Kept {
    at: Millis,
    seq: u64,
    msgid: String,
    source: String,
    verb: String,
    /// The target as relayed (the room's name, the recipient's nick then).
    target: String,
    lines: Vec<String>,
}

impl Kept {
    fn pos(&self) -> (Millis, u64) {
        (self.at, self.seq)
    }
}

/// What the server's store must hold. See the module doc.
#[derive(Debug, Default)]
pub struct Books {
    /// Target (a folded room name, or both folded nicks of a conversation in order, apart by a
    /// space) → its messages, oldest first.
    kept: BTreeMap<String, Vec<Kept>>,
    /// Folded nick → folded peer → (the peer as last written, the newest message's time).
    conversations: BTreeMap<String, BTreeMap<String, (String, Millis)>>,
    /// Folded nick → its read markers.
    markers: BTreeMap<String, Vec<(String, String)>>,
    /// Folded nick → its last holder's address, since when, and when it left.
    owners: BTreeMap<String, (String, Millis, Option<Millis>)>,
}

/// The books, shared by every incarnation's model of one run.
pub type SharedBooks = Arc<Mutex<Books>>;

/// A message reference: a kept message's place, or a time.
#[derive(Debug, Clone, Copy)]
enum Ref {
    At((Millis, u64)),
    Time(Millis),
}

impl Ref {
    /// Messages after it start past this place.
    fn after(self) -> (Millis, u64) {
        match self {
            Ref::At(p) => p,
            Ref::Time(t) => (t, u64::MAX),
        }
    }

    /// Messages before it end before this place.
    fn before(self) -> (Millis, u64) {
        match self {
            Ref::At(p) => p,
            Ref::Time(t) => (t, 0),
        }
    }
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` as milliseconds since the epoch (days from the civil date, the
/// well-known way), or `None` if it is not one or is before 1970.
fn parse_time(ts: &str) -> Option<Millis> {
    let b = ts.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, s, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms;
    u64::try_from(ms).ok().map(Millis)
}

impl Model {
    pub(super) fn books(&self) -> MutexGuard<'_, Books> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The history key of `target` as `me` writes it.
    fn history_key(me: &str, target: &str) -> String {
        if target.starts_with('#') {
            return fold(target);
        }
        let (a, b) = (fold(me), fold(target));
        if a <= b {
            format!("{a} {b}")
        } else {
            format!("{b} {a}")
        }
    }

    /// `id`'s message with id `msgid` (the `seq`-th of the server's counter) just went to
    /// `target` (as relayed): kept, unless only a room's operators saw it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn keep(
        &mut self,
        now: Millis,
        id: u64,
        verb: &str,
        target: &str,
        msgid: &str,
        seq: u64,
        lines: Vec<String>,
    ) {
        if verb == "TAGMSG" || (!target.starts_with('#') && !self.settings.history_direct_messages)
        {
            return;
        }
        let c = &self.conns[&id];
        let me = c.nick.clone().unwrap_or_default();
        let key = Model::history_key(&me, target);
        let m = Kept {
            at: now,
            seq,
            msgid: msgid.to_owned(),
            source: c.prefix(),
            verb: verb.to_owned(),
            target: target.to_owned(),
            lines,
        };
        let mut books = self.books();
        if let Some((a, b)) = key.split_once(' ') {
            for (mine, peer) in [(a, b), (b, a)] {
                let shown = if fold(target) == peer { target } else { &me };
                books
                    .conversations
                    .entry(mine.to_owned())
                    .or_default()
                    .insert(peer.to_owned(), (shown.to_owned(), now));
            }
        }
        books.kept.entry(key).or_default().push(m);
    }

    /// A redacted message leaves history.
    pub(super) fn unkeep(&mut self, id: u64, target: &str, msgid: &str) {
        let me = self.conns[&id].nick.clone().unwrap_or_default();
        let key = Model::history_key(&me, target);
        if let Some(kept) = self.books().kept.get_mut(&key) {
            kept.retain(|m| m.msgid != msgid);
        }
    }

    /// `id` now holds its name: from when it may read the name's conversations, and the
    /// name's read markers.
    pub(super) fn claim(&mut self, now: Millis, id: u64) {
        let c = &self.conns[&id];
        let Some(nick) = c.nick.as_deref().map(fold) else {
            return;
        };
        let host = c.host.clone();
        let reclaim = self.settings.history_reclaim_ms;
        let mut books = self.books();
        let since = match books.owners.get(&nick) {
            Some((h, since, left))
                if *h == host && left.is_none_or(|l| now.since(l) <= reclaim) =>
            {
                *since
            }
            _ => now,
        };
        books.owners.insert(nick.clone(), (host, since, None));
        let markers = books.markers.get(&nick).cloned().unwrap_or_default();
        drop(books);
        let c = self.conns.get_mut(&id).expect("live");
        c.history_since = since;
        c.markers = markers;
    }

    /// `id` gives its (registered) name up.
    pub(super) fn release(&mut self, now: Millis, id: u64) {
        let Some(c) = self.conns.get(&id).filter(|c| c.registered) else {
            return;
        };
        let Some(nick) = c.nick.as_deref().map(fold) else {
            return;
        };
        let entry = (c.host.clone(), c.history_since, Some(now));
        self.books().owners.insert(nick, entry);
    }

    /// `id`'s read markers are kept with its name.
    pub(super) fn save_markers(&mut self, id: u64) {
        let c = &self.conns[&id];
        if let Some(nick) = c.nick.as_deref().map(fold) {
            let markers = c.markers.clone();
            self.books().markers.insert(nick, markers);
        }
    }

    /// After `id` joined room `key`: the default room's last messages, to a client that did
    /// not ask for `draft/chathistory`.
    pub(super) fn replay(&mut self, now: Millis, id: u64, key: &str, owed: &mut Owed) {
        let n = self.settings.history_replay;
        let default = self.settings.default_room.as_deref().map(fold);
        let asked = self.conns[&id].caps.contains("draft/chathistory");
        if n == 0 || asked || default.as_deref() != Some(key) {
            return;
        }
        let found: Vec<Kept> = {
            let books = self.books();
            let kept = books.kept.get(key).map_or(&[][..], Vec::as_slice);
            kept[kept.len().saturating_sub(n)..].to_vec()
        };
        if found.is_empty() {
            return;
        }
        let name = self.rooms[key].name.clone();
        self.send_history(now, id, &name, &found, true, owed);
    }

    /// `CHATHISTORY <subcommand> …`: the refusals in the server's order, then the batch.
    pub(super) fn chathistory(&mut self, now: Millis, id: u64, p: &[&str], owed: &mut Owed) {
        let sub = p.first().unwrap_or(&"").to_ascii_uppercase();
        let fail = |m: &Model, owed: &mut Owed, rest: &[&str]| {
            let mut params = vec!["CHATHISTORY"];
            params.extend_from_slice(rest);
            params.push(ANY);
            m.server_line(owed, id, "FAIL", &params);
        };
        let needed = match sub.as_str() {
            "BETWEEN" => 5,
            "LATEST" | "BEFORE" | "AFTER" | "AROUND" | "TARGETS" => 4,
            "" => 2,
            _ => return fail(self, owed, &["UNKNOWN_COMMAND", &sub]),
        };
        if p.len() < needed {
            let shown = if sub.is_empty() { "*" } else { sub.as_str() };
            return fail(self, owed, &["NEED_MORE_PARAMS", shown]);
        }
        let Some(limit) = p[needed - 1].parse::<usize>().ok().filter(|&l| l > 0) else {
            return fail(self, owed, &["INVALID_PARAMS", &sub]);
        };
        let limit = limit.min(self.settings.chathistory_max);
        if sub == "TARGETS" {
            let time = |s: &str| parse_time(s.strip_prefix("timestamp=")?);
            let (Some(a), Some(b)) = (time(p[1]), time(p[2])) else {
                return fail(self, owed, &["INVALID_PARAMS", &sub]);
            };
            return self.targets(now, id, a.min(b), a.max(b), limit, owed);
        }
        let target = p[1];
        let c = &self.conns[&id];
        let me = c.nick.clone().unwrap_or_default();
        let (key, since) = if target.starts_with('#') {
            let member = (self.rooms.get(&fold(target))).is_some_and(|r| r.members.contains(&id));
            if !member {
                return fail(self, owed, &["INVALID_TARGET", &sub, target]);
            }
            (fold(target), None)
        } else if valid_nick(target) && self.settings.history_direct_messages {
            (Model::history_key(&me, target), Some(c.history_since))
        } else {
            return fail(self, owed, &["INVALID_TARGET", &sub, target]);
        };
        let kept: Vec<Kept> = self.books().kept.get(&key).cloned().unwrap_or_default();
        let mut refs = Vec::new();
        for &given in &p[2..needed - 1] {
            let r = match given.split_once('=') {
                _ if given == "*" && sub == "LATEST" => None,
                Some(("timestamp", ts)) => match parse_time(ts) {
                    Some(t) => Some(Ref::Time(t)),
                    None => return fail(self, owed, &["INVALID_PARAMS", &sub]),
                },
                Some(("msgid", msgid)) => match kept.iter().find(|m| m.msgid == msgid) {
                    Some(m) => Some(Ref::At(m.pos())),
                    None => return fail(self, owed, &["INVALID_PARAMS", &sub, given]),
                },
                _ => return fail(self, owed, &["INVALID_PARAMS", &sub]),
            };
            refs.push(r);
        }
        // Of a conversation, only what came since this holder's time.
        let floor = since.map(|s| (Millis(s.0.saturating_sub(1)), u64::MAX));
        let lo = |r: Option<(Millis, u64)>| match (r, floor) {
            (Some(r), Some(f)) => Some(r.max(f)),
            (r, f) => r.or(f),
        };
        // Those strictly between `after` and `before`: the first or the last `n` of them.
        let pick = |after: Option<(Millis, u64)>,
                    before: Option<(Millis, u64)>,
                    newest: bool,
                    n: usize|
         -> Vec<Kept> {
            let all: Vec<&Kept> = (kept.iter())
                .filter(|m| after.is_none_or(|a| m.pos() > a))
                .filter(|m| before.is_none_or(|b| m.pos() < b))
                .collect();
            let range = if newest {
                &all[all.len().saturating_sub(n)..]
            } else {
                &all[..n.min(all.len())]
            };
            range.iter().map(|m| (*m).clone()).collect()
        };
        let found = match (sub.as_str(), refs.as_slice()) {
            ("LATEST", [r]) => pick(lo(r.map(Ref::after)), None, true, limit),
            ("BEFORE", [Some(r)]) => pick(lo(None), Some(r.before()), true, limit),
            ("AFTER", [Some(r)]) => pick(lo(Some(r.after())), None, false, limit),
            ("BETWEEN", [Some(a), Some(b)]) => {
                if a.after() <= b.before() {
                    pick(lo(Some(a.after())), Some(b.before()), false, limit)
                } else {
                    pick(lo(Some(b.after())), Some(a.before()), true, limit)
                }
            }
            ("AROUND", [Some(r)]) => {
                // Half before it; then it and what follows.
                let at = r.before();
                let mut got = pick(lo(None), Some(at), true, limit / 2);
                let rest = limit - got.len();
                let from: Vec<Kept> = (kept.iter())
                    .filter(|m| m.pos() >= at && lo(None).is_none_or(|f| m.pos() > f))
                    .take(rest)
                    .cloned()
                    .collect();
                got.extend(from);
                got
            }
            _ => return fail(self, owed, &["INVALID_PARAMS", &sub]),
        };
        self.send_history(now, id, target, &found, false, owed);
    }

    /// `CHATHISTORY TARGETS`: `id`'s rooms and correspondents whose newest message is strictly
    /// between `from` and `to`, oldest first.
    fn targets(
        &mut self,
        now: Millis,
        id: u64,
        from: Millis,
        to: Millis,
        limit: usize,
        owed: &mut Owed,
    ) {
        let _ = now;
        let c = &self.conns[&id];
        let mut found: Vec<(Millis, String)> = Vec::new();
        {
            let books = self.books();
            for key in &c.rooms {
                if let Some(m) = books.kept.get(key).and_then(|k| k.last()) {
                    found.push((m.at, self.rooms[key].name.clone()));
                }
            }
            if self.settings.history_direct_messages
                && let Some(mine) = c.nick.as_deref().map(fold)
                && let Some(peers) = books.conversations.get(&mine)
            {
                for (shown, at) in peers.values() {
                    if *at >= c.history_since {
                        found.push((*at, shown.clone()));
                    }
                }
            }
        }
        found.retain(|(at, _)| from < *at && *at < to);
        found.sort();
        found.truncate(limit);
        let batch = self.conns[&id].caps.contains("batch");
        let server = self.settings.server_name.clone();
        if batch {
            self.msgids += 1;
            owed.line(
                id,
                Some(&server),
                "BATCH",
                &[ANY, "draft/chathistory-targets"],
            );
        }
        for (at, name) in found {
            if batch {
                let at = owed.lines.get(&id).map_or(0, Vec::len);
                owed.not_replies.push((id, at));
            }
            let time = at.to_rfc3339();
            owed.line(id, Some(&server), "CHATHISTORY", &["TARGETS", &name, &time]);
        }
        if batch {
            let at = owed.lines.get(&id).map_or(0, Vec::len);
            owed.not_replies.push((id, at));
            owed.line(id, Some(&server), "BATCH", &[ANY]);
        }
    }

    /// `found` to `id` as `target`'s history: a `chathistory` batch to a client that takes
    /// batches (its start answers a label); a replay's lines answer nothing, and say when they
    /// were said to a client without `server-time`.
    fn send_history(
        &mut self,
        now: Millis,
        id: u64,
        target: &str,
        found: &[Kept],
        replay: bool,
        owed: &mut Owed,
    ) {
        let caps = self.conns[&id].caps.clone();
        let batch = caps.contains("batch");
        let multiline = batch && caps.contains("draft/multiline");
        let stamp = replay && !caps.contains("server-time");
        let server = self.settings.server_name.clone();
        let mark = |owed: &mut Owed, quiet: bool| {
            if quiet {
                let at = owed.lines.get(&id).map_or(0, Vec::len);
                owed.not_replies.push((id, at));
            }
        };
        if batch {
            self.msgids += 1;
            mark(owed, replay);
            owed.line(id, Some(&server), "BATCH", &[ANY, "chathistory", target]);
        }
        let quiet = replay || batch;
        for m in found {
            if m.lines.len() > 1 && multiline {
                self.msgids += 1;
                mark(owed, quiet);
                owed.line(
                    id,
                    Some(&m.source),
                    "BATCH",
                    &[ANY, "draft/multiline", &m.target],
                );
                for text in &m.lines {
                    mark(owed, quiet);
                    owed.line(id, Some(&m.source), &m.verb, &[&m.target, text]);
                }
                mark(owed, quiet);
                owed.line(id, Some(&m.source), "BATCH", &[ANY]);
                continue;
            }
            for text in m.lines.iter().filter(|t| !t.is_empty()) {
                let text = if stamp {
                    let t = m.at.to_rfc3339();
                    let when = if m.at.0 / 86_400_000 == now.0 / 86_400_000 {
                        format!("[{} UTC]", &t[11..16])
                    } else {
                        format!("[{} {} UTC]", &t[..10], &t[11..16])
                    };
                    match text.strip_prefix("\u{1}ACTION ") {
                        Some(rest) => format!("\u{1}ACTION {when} {rest}"),
                        None => format!("{when} {text}"),
                    }
                } else {
                    text.clone()
                };
                mark(owed, quiet);
                owed.line(id, Some(&m.source), &m.verb, &[&m.target, &text]);
            }
        }
        if batch {
            mark(owed, true);
            owed.line(id, Some(&server), "BATCH", &[ANY]);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_parse_as_the_server_writes_them() {
        for ms in [0, 1_795_957_500_123, 951_782_400_000, 4_102_444_799_999] {
            let t = parla_room::Millis(ms);
            assert_eq!(super::parse_time(&t.to_rfc3339()), Some(t));
        }
        assert_eq!(super::parse_time("2026-02-29T00:00:00.000Z"), None);
        assert_eq!(super::parse_time("2026-13-01T00:00:00.000Z"), None);
        assert_eq!(super::parse_time("1969-12-31T23:59:59.999Z"), None);
    }
}
