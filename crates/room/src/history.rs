//! What the server keeps of what was said, behind [`History`]: the core appends every room
//! message and direct message it relays and reads them back for `CHATHISTORY`, the replay on
//! join and reconnecting clients. The core never knows where they are kept.
//!
//! Backends: [`MemoryHistory`] here (the simulation and tests; shared through an
//! `Arc<Mutex<_>>` it outlives a server, so a restarted one finds it), an embedded store on disk
//! in `parla-net` (`parla-server`'s default), and later a cluster's. The query logic
//! (`LATEST`, `BEFORE`, `AFTER`, `BETWEEN`, `AROUND`) is the core's, over two primitives every
//! backend has: [`History::find`] and [`History::scan`].
//!
//! Messages are ordered by [`Pos`]: the server's time when it was relayed, then a sequence
//! number that grows within a server's run. A server's clock never goes back within a run and a
//! restarted server starts later, so the order is the order they were relayed in.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

pub use crate::cluster::SnapshotError;
use crate::names::{casefold, is_channel_name};
use crate::time::Millis;

/// Where a message sits in its target's history.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Pos {
    /// When the server relayed it.
    pub at: Millis,
    /// Its order among messages relayed in the same millisecond.
    pub seq: u64,
}

impl Pos {
    /// Before every message at `at` or later.
    pub fn first_at(at: Millis) -> Pos {
        Pos { at, seq: 0 }
    }

    /// After every message at `at` or earlier.
    pub fn last_at(at: Millis) -> Pos {
        Pos { at, seq: u64::MAX }
    }

    /// The position just before this one: a range after it starts with this one.
    pub fn pred(self) -> Pos {
        match self.seq.checked_sub(1) {
            Some(seq) => Pos { at: self.at, seq },
            None => Pos::last_at(Millis(self.at.0.saturating_sub(1))),
        }
    }
}

/// `PRIVMSG` or `NOTICE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verb {
    Privmsg,
    Notice,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Privmsg => "PRIVMSG",
            Verb::Notice => "NOTICE",
        }
    }
}

/// One kept message, as it was relayed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stored {
    pub pos: Pos,
    pub msgid: String,
    /// `nick!user@host` of its sender then.
    pub source: String,
    pub verb: Verb,
    /// The target as relayed: the room's name, or the recipient's nick then.
    pub target: String,
    /// The tags that went with it to those with `message-tags` (client-only tags, `bot`),
    /// besides `msgid` and `time`.
    pub tags: Vec<(String, String)>,
    /// Its text: one line, or a multiline message's lines, each with whether it continues the
    /// line before it (`draft/multiline-concat`).
    pub lines: Vec<(bool, String)>,
}

impl Stored {
    /// Its sender's nick then.
    pub fn sender(&self) -> &str {
        self.source.split('!').next().unwrap_or(&self.source)
    }

    /// Bytes it takes in memory, roughly (for bounds and figures).
    pub fn weight(&self) -> usize {
        let tags: usize = self.tags.iter().map(|(k, v)| k.len() + v.len()).sum();
        let lines: usize = self.lines.iter().map(|(_, l)| l.len()).sum();
        64 + self.msgid.len() + self.source.len() + self.target.len() + tags + lines
    }
}

/// The key of a target's history: a room's folded name, or for a conversation both folded
/// nicks in order, apart by a space (which neither can hold).
pub fn target_key(me: &str, target: &str) -> String {
    if is_channel_name(target) {
        return casefold(target);
    }
    let (a, b) = (casefold(me), casefold(target));
    if a <= b {
        format!("{a} {b}")
    } else {
        format!("{b} {a}")
    }
}

/// Who held a name, for deciding whose conversations a new holder may read: its address, since
/// when, and when it left (`None` while held, or if the server stopped while it was).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub host: String,
    pub since: Millis,
    pub left: Option<Millis>,
}

/// How long, and how much, history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Messages older than this are not returned and are deleted; `None`: kept for ever.
    pub max_age_ms: Option<u64>,
    /// At most this many messages per room or conversation (the oldest go first); `None`: no
    /// bound.
    pub max_per_target: Option<usize>,
}

impl Default for Retention {
    /// 30 days, and 100,000 messages per room or conversation.
    fn default() -> Self {
        Retention {
            max_age_ms: Some(30 * 24 * 3600 * 1000),
            max_per_target: Some(100_000),
        }
    }
}

impl Retention {
    /// Whether a message from `at` is still kept at `now`.
    pub fn keeps(&self, at: Millis, now: Millis) -> bool {
        self.max_age_ms.is_none_or(|age| now.since(at) <= age)
    }
}

/// Where the core keeps history. Every method is infallible to the core: a backend that fails
/// (a full disk) says so in its own log and answers with what it has; the chat goes on.
pub trait History: Send + fmt::Debug {
    /// Keeps `m` as the newest message of `target` (a [`target_key`]).
    fn append(&mut self, target: &str, m: &Stored);

    /// Where message `msgid` of `target` is, if it is kept.
    fn find(&self, target: &str, msgid: &str) -> Option<Pos>;

    /// Up to `limit` messages of `target` strictly after `after` and strictly before `before`
    /// (either may be open), still kept at `now`: the oldest such if `!newest`, the newest if
    /// `newest`; in ascending order either way. Shared, not copied: a page is a hundred of them.
    fn scan(
        &self,
        target: &str,
        after: Option<Pos>,
        before: Option<Pos>,
        newest: bool,
        limit: usize,
        now: Millis,
    ) -> Vec<Arc<Stored>>;

    /// Forgets message `msgid` of `target` (a redaction); whether it was kept.
    fn remove(&mut self, target: &str, msgid: &str) -> bool;

    /// When the newest kept message of `target` was relayed.
    fn latest(&self, target: &str, now: Millis) -> Option<Millis>;

    /// The conversations `nick` (folded) has had: each peer's nick as last written and the
    /// time of their newest message.
    fn conversations(&self, nick: &str, now: Millis) -> Vec<(String, Millis)>;

    /// `nick`'s read markers (folded target, timestamp), and replacing them.
    fn markers(&self, nick: &str) -> Vec<(String, String)>;
    fn set_markers(&mut self, nick: &str, markers: &[(String, String)]);

    /// Who held `nick` (folded) last, and recording it.
    fn owner(&self, nick: &str) -> Option<Owner>;
    fn set_owner(&mut self, nick: &str, owner: Owner);

    /// For a cluster's snapshot ([`crate::cluster::Replica::snapshot`]): everything kept,
    /// appended to `out` in a form [`History::load`] takes back. A store that cannot (one on
    /// disk, which a cluster does not use) says so.
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        let _ = out;
        Err(SnapshotError::new(
            "this history store cannot be part of a cluster's snapshot",
        ))
    }

    /// A copy of everything kept, as it is now, for a snapshot to serialize while this store
    /// goes on changing; `None` if it cannot (then it is serialized at once).
    fn copy(&self) -> Option<Box<dyn History>> {
        None
    }

    /// Replaces everything kept with what [`History::save`] wrote in `bytes`; unchanged on an
    /// error.
    fn load(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let _ = bytes;
        Err(SnapshotError::new(
            "this history store cannot start from a cluster's snapshot",
        ))
    }
}

impl<H: History + ?Sized> History for Arc<Mutex<H>> {
    fn append(&mut self, target: &str, m: &Stored) {
        lock(self).append(target, m)
    }
    fn find(&self, target: &str, msgid: &str) -> Option<Pos> {
        lock(self).find(target, msgid)
    }
    fn scan(
        &self,
        target: &str,
        after: Option<Pos>,
        before: Option<Pos>,
        newest: bool,
        limit: usize,
        now: Millis,
    ) -> Vec<Arc<Stored>> {
        lock(self).scan(target, after, before, newest, limit, now)
    }
    fn remove(&mut self, target: &str, msgid: &str) -> bool {
        lock(self).remove(target, msgid)
    }
    fn latest(&self, target: &str, now: Millis) -> Option<Millis> {
        lock(self).latest(target, now)
    }
    fn conversations(&self, nick: &str, now: Millis) -> Vec<(String, Millis)> {
        lock(self).conversations(nick, now)
    }
    fn markers(&self, nick: &str) -> Vec<(String, String)> {
        lock(self).markers(nick)
    }
    fn set_markers(&mut self, nick: &str, markers: &[(String, String)]) {
        lock(self).set_markers(nick, markers)
    }
    fn owner(&self, nick: &str) -> Option<Owner> {
        lock(self).owner(nick)
    }
    fn set_owner(&mut self, nick: &str, owner: Owner) {
        lock(self).set_owner(nick, owner)
    }
    fn save(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        lock(self).save(out)
    }
    fn copy(&self) -> Option<Box<dyn History>> {
        lock(self).copy()
    }
    fn load(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        lock(self).load(bytes)
    }
}

fn lock<H: ?Sized>(h: &Mutex<H>) -> std::sync::MutexGuard<'_, H> {
    h.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A conversation's message seen from each of its two parties (`target` is its key): each
/// party (folded), the other (folded), and the other's nick as the message wrote it (the
/// recipient's when that is the other, else the sender's). `None` for a room. Every backend
/// keeps its list of conversations by this one rule.
pub fn sides<'a>(target: &'a str, m: &'a Stored) -> Option<[(&'a str, &'a str, &'a str); 2]> {
    let (a, b) = target.split_once(' ')?;
    let (from, to) = (m.sender(), m.target.as_str());
    let shown = |peer: &str| if casefold(to) == peer { to } else { from };
    Some([(a, b, shown(b)), (b, a, shown(a))])
}

/// Messages [`MemoryHistory`] keeps in all, whatever its retention: the oldest go first.
pub const MEMORY_MAX_MESSAGES: usize = 200_000;

/// History in memory, bounded by its [`Retention`] and by [`MEMORY_MAX_MESSAGES`] in all.
///
/// Serialized whole in a cluster's snapshot, but for its retention (a setting of the server
/// that loads it) and the index of ids (rebuilt).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct MemoryHistory {
    #[serde(skip)]
    retention: Retention,
    targets: BTreeMap<String, VecDeque<Arc<Stored>>>,
    /// Every kept message's target and id, oldest first (for the bound in all).
    /// Shared strings: a snapshot copies this deque while the chat waits (`History::copy`).
    order: VecDeque<(Arc<str>, Arc<str>)>,
    #[serde(skip)]
    ids: HashMap<String, Pos>,
    /// Folded nick → folded peer → (peer as last written, newest message).
    conversations: BTreeMap<String, BTreeMap<String, (String, Millis)>>,
    markers: BTreeMap<String, Vec<(String, String)>>,
    owners: BTreeMap<String, Owner>,
}

impl MemoryHistory {
    pub fn new(retention: Retention) -> MemoryHistory {
        MemoryHistory {
            retention,
            ..MemoryHistory::default()
        }
    }

    /// Messages kept, all targets together.
    pub fn len(&self) -> usize {
        self.targets.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl History for MemoryHistory {
    fn append(&mut self, target: &str, m: &Stored) {
        if self.retention.max_per_target == Some(0) {
            return; // keeps nothing (`--history off`)
        }
        if self.order.len() >= MEMORY_MAX_MESSAGES
            && let Some((t, msgid)) = self.order.pop_front()
        {
            self.remove(&t, &msgid);
        }
        let kept = self.targets.entry(target.to_owned()).or_default();
        if let Some(max) = self.retention.max_per_target {
            while kept.len() >= max {
                if let Some(old) = kept.pop_front() {
                    self.ids.remove(&old.msgid);
                }
            }
        }
        // Appends come in order; a message from a server whose clock went back (another
        // machine's) still goes where it belongs.
        let at = kept.partition_point(|k| k.pos <= m.pos);
        kept.insert(at, Arc::new(m.clone()));
        self.ids.insert(m.msgid.clone(), m.pos);
        self.order
            .push_back((target.into(), m.msgid.as_str().into()));
        for (me, peer, shown) in sides(target, m).into_iter().flatten() {
            self.conversations
                .entry(me.to_owned())
                .or_default()
                .insert(peer.to_owned(), (shown.to_owned(), m.pos.at));
        }
    }

    fn find(&self, target: &str, msgid: &str) -> Option<Pos> {
        let pos = *self.ids.get(msgid)?;
        let kept = self.targets.get(target)?;
        let i = kept.partition_point(|k| k.pos < pos);
        (kept.get(i)?.msgid == msgid).then_some(pos)
    }

    fn scan(
        &self,
        target: &str,
        after: Option<Pos>,
        before: Option<Pos>,
        newest: bool,
        limit: usize,
        now: Millis,
    ) -> Vec<Arc<Stored>> {
        let Some(kept) = self.targets.get(target) else {
            return Vec::new();
        };
        let lo = after.map_or(0, |p| kept.partition_point(|k| k.pos <= p));
        let hi = before.map_or(kept.len(), |p| kept.partition_point(|k| k.pos < p));
        let fresh = |k: &&Arc<Stored>| self.retention.keeps(k.pos.at, now);
        let range = kept.range(lo..hi.max(lo));
        if newest {
            let mut got: Vec<Arc<Stored>> =
                range.rev().filter(fresh).take(limit).cloned().collect();
            got.reverse();
            got
        } else {
            range.filter(fresh).take(limit).cloned().collect()
        }
    }

    fn remove(&mut self, target: &str, msgid: &str) -> bool {
        let Some(pos) = self.find(target, msgid) else {
            return false;
        };
        let kept = self.targets.get_mut(target).expect("found above");
        let i = kept.partition_point(|k| k.pos < pos);
        kept.remove(i);
        self.ids.remove(msgid);
        true
    }

    fn latest(&self, target: &str, now: Millis) -> Option<Millis> {
        let newest = self.targets.get(target)?.back()?.pos.at;
        self.retention.keeps(newest, now).then_some(newest)
    }

    fn conversations(&self, nick: &str, now: Millis) -> Vec<(String, Millis)> {
        self.conversations.get(nick).map_or_else(Vec::new, |peers| {
            peers
                .values()
                .filter(|(_, at)| self.retention.keeps(*at, now))
                .cloned()
                .collect()
        })
    }

    fn markers(&self, nick: &str) -> Vec<(String, String)> {
        self.markers.get(nick).cloned().unwrap_or_default()
    }

    fn set_markers(&mut self, nick: &str, markers: &[(String, String)]) {
        self.markers.insert(nick.to_owned(), markers.to_vec());
    }

    fn owner(&self, nick: &str) -> Option<Owner> {
        self.owners.get(nick).cloned()
    }

    fn set_owner(&mut self, nick: &str, owner: Owner) {
        self.owners.insert(nick.to_owned(), owner);
    }

    fn copy(&self) -> Option<Box<dyn History>> {
        // Its messages are shared (`Arc`): the copy costs the maps, not the texts; and only
        // what a snapshot serializes (the index of ids is rebuilt when one is loaded).
        Some(Box::new(MemoryHistory {
            retention: self.retention,
            targets: self.targets.clone(),
            order: self.order.clone(),
            ids: HashMap::new(),
            conversations: self.conversations.clone(),
            markers: self.markers.clone(),
            owners: self.owners.clone(),
        }))
    }

    fn save(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        crate::cluster::put_part(out, self, "the history")
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let (mut loaded, _): (MemoryHistory, _) = crate::cluster::take_part(bytes, "history")?;
        loaded.retention = self.retention;
        loaded.ids = (loaded.targets.values().flatten())
            .map(|m| (m.msgid.clone(), m.pos))
            .collect();
        *self = loaded;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(at: u64, seq: u64, text: &str) -> Stored {
        Stored {
            pos: Pos {
                at: Millis(at),
                seq,
            },
            msgid: format!("m{seq}"),
            source: "alice!a@h".into(),
            verb: Verb::Privmsg,
            target: "#den".into(),
            tags: vec![],
            lines: vec![(false, text.into())],
        }
    }

    fn texts(v: &[Arc<Stored>]) -> Vec<&str> {
        v.iter().map(|m| m.lines[0].1.as_str()).collect()
    }

    #[test]
    fn scans_are_exclusive_and_ascending_from_either_end() {
        let mut h = MemoryHistory::new(Retention::default());
        for i in 1..=5 {
            h.append("#den", &msg(1000 + i, i, &format!("t{i}")));
        }
        let now = Millis(2000);
        let p2 = h.find("#den", "m2").unwrap();
        let p5 = h.find("#den", "m5").unwrap();
        assert_eq!(
            texts(&h.scan("#den", Some(p2), None, false, 2, now)),
            ["t3", "t4"]
        );
        assert_eq!(
            texts(&h.scan("#den", Some(p2), None, true, 2, now)),
            ["t4", "t5"]
        );
        assert_eq!(
            texts(&h.scan("#den", Some(p2), Some(p5), false, 9, now)),
            ["t3", "t4"]
        );
        assert_eq!(texts(&h.scan("#den", None, Some(p2), true, 9, now)), ["t1"]);
        assert!(
            h.find("#other", "m2").is_none(),
            "an id belongs to its target"
        );
        assert!(h.remove("#den", "m3"));
        assert_eq!(
            texts(&h.scan("#den", None, None, true, 9, now)),
            ["t1", "t2", "t4", "t5"]
        );
    }

    #[test]
    fn retention_bounds_count_and_age() {
        let mut h = MemoryHistory::new(Retention {
            max_age_ms: Some(100),
            max_per_target: Some(3),
        });
        for i in 1..=5 {
            h.append("#den", &msg(1000 + 10 * i, i, &format!("t{i}")));
        }
        assert_eq!(h.len(), 3);
        assert!(h.find("#den", "m1").is_none(), "the oldest went first");
        let all = h.scan("#den", None, None, true, 9, Millis(1135));
        assert_eq!(
            texts(&all),
            ["t4", "t5"],
            "t3 (1030) is more than 100 ms old at 1135"
        );
    }

    #[test]
    fn a_conversation_is_known_to_both_parties() {
        let mut h = MemoryHistory::new(Retention::default());
        let mut m = msg(1000, 1, "hi bob");
        m.target = "Bob".into();
        h.append(&target_key("alice", "Bob"), &m);
        assert_eq!(target_key("Bob", "alice"), "alice bob");
        assert_eq!(
            h.conversations("alice", Millis(1000)),
            [("Bob".to_owned(), Millis(1000))]
        );
        assert_eq!(
            h.conversations("bob", Millis(1000)),
            [("alice".to_owned(), Millis(1000))]
        );
    }
}
