//! History on disk: the core's [`History`] in an embedded LSM store ([fjall]), under
//! `--data-dir`.
//!
//! Why fjall (measured in docs/benchmarks.md, "History store"): its journal is written to the
//! operating system with one `write` per commit, so a message is safe from `kill -9` as soon
//! as the core has appended it, at ~260,000 appends/s on this machine; redb makes a commit
//! survive a crash of the process only with an `fsync` (~60,000/s, and an `fsync` in front of
//! every echo). Both answer `CHATHISTORY LATEST … 100` over 1,000,000 messages well under a
//! millisecond.
//!
//! Durability, as the README states it: every message the core appended is in the operating
//! system's hands before any line about it is queued for a client (each append is one
//! journal commit with [`PersistMode::Buffer`]), so it survives the server's process dying
//! any way at all; an `fsync` every `--history-sync-every` (1 s) bounds what a crash of the
//! whole machine or a power cut can lose to that long.
//!
//! Layout (keyspaces): `messages` (target NUL time seq → the message), `ids` (msgid → its
//! `messages` key), `targets` (target → its newest time: what the sweeper walks),
//! `conversations` (nick NUL peer → newest time, peer as written), `markers` and `owners`
//! (nick → theirs). A background thread syncs, and deletes what retention no longer keeps.
//!
//! [fjall]: https://docs.rs/fjall

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parla_room::Millis;
use parla_room::history::{History, Owner, Pos, Retention, Stored, Verb, sides};
use tracing::{error, info, warn};

/// How often the sweeper looks for what retention no longer keeps.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Errors are logged at most this often (a full disk would otherwise log every message).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// History kept under a directory. See the module doc.
pub struct DiskHistory {
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

struct Store {
    db: Database,
    messages: Keyspace,
    ids: Keyspace,
    targets: Keyspace,
    conversations: Keyspace,
    markers: Keyspace,
    owners: Keyspace,
    retention: Retention,
    dir: PathBuf,
    /// When an error was last logged, and how many were not logged since.
    errors: Mutex<(Option<Instant>, u64)>,
    /// The newest messages of the busiest targets, in memory (see [`Tails`]).
    tails: Mutex<Tails>,
}

/// Messages kept in memory per target: the newest this many (a `CHATHISTORY` page is at most
/// `--chathistory-max`, 100 by default).
const TAIL: usize = 128;
/// Targets whose newest messages are kept in memory; the least recently used goes first.
const TAIL_TARGETS: usize = 256;

/// The newest messages of recently used targets, so that what clients ask most (`LATEST` on
/// joining, `AFTER` the last message seen on reconnecting) is answered from memory: the store's
/// reverse scan over an LSM tree and the decoding cost ~2.5 µs a message. Each tail is the
/// newest messages of its target with none missing (a contiguous suffix), loaded from the store
/// on first use and kept up to date by every append and removal; a target the sweeper deleted
/// from is dropped and loaded again when next asked.
#[derive(Default)]
struct Tails {
    by_target: std::collections::HashMap<String, Tail>,
    /// Use counter, for the least recently used.
    clock: u64,
}

struct Tail {
    /// Ascending.
    newest: std::collections::VecDeque<Arc<Stored>>,
    /// Whether it holds every message of the target (the store had no more when loaded).
    whole: bool,
    used: u64,
}

impl Tail {
    /// `limit` messages strictly between `after` and `before`, the newest or the oldest such,
    /// if this tail is sure to hold them.
    fn answer(
        &self,
        after: Option<Pos>,
        before: Option<Pos>,
        newest: bool,
        limit: usize,
        keeps: impl Fn(&Stored) -> bool,
    ) -> Option<Vec<Arc<Stored>>> {
        let first = self.newest.front().map(|m| m.pos);
        // Everything after `after` is here when `after` is at or past our first message.
        let covers_after = self.whole || after.zip(first).is_some_and(|(a, f)| a >= f);
        let inside = |m: &&Arc<Stored>| {
            after.is_none_or(|a| m.pos > a) && before.is_none_or(|b| m.pos < b) && keeps(m)
        };
        if newest {
            let mut got: Vec<Arc<Stored>> = (self.newest.iter().rev())
                .filter(inside)
                .take(limit)
                .cloned()
                .collect();
            // Enough found, or none older could exist outside the tail.
            if got.len() < limit && !covers_after {
                return None;
            }
            got.reverse();
            Some(got)
        } else {
            covers_after.then(|| {
                self.newest
                    .iter()
                    .filter(inside)
                    .take(limit)
                    .cloned()
                    .collect()
            })
        }
    }

    fn push(&mut self, m: &Stored) {
        if self.newest.back().is_some_and(|last| last.pos > m.pos) {
            // Out of order (another server's clock): not a suffix any more; start again.
            self.newest.clear();
            self.whole = false;
            return;
        }
        if self.newest.len() == TAIL {
            self.newest.pop_front();
            self.whole = false;
        }
        self.newest.push_back(Arc::new(m.clone()));
    }
}

impl std::fmt::Debug for DiskHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskHistory")
            .field("dir", &self.store.dir)
            .field("retention", &self.store.retention)
            .finish()
    }
}

impl DiskHistory {
    /// Opens (or creates) the history under `dir`, keeping what `retention` says and syncing
    /// to disk every `sync_every` (`None`: only when the OS decides, and at shutdown).
    pub fn open(
        dir: &Path,
        retention: Retention,
        sync_every: Option<Duration>,
    ) -> anyhow::Result<DiskHistory> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        // Memory: fjall's defaults (64 MiB memtables per keyspace, a 32 MiB block cache) took a
        // server that had just kept 1,000,000 messages to 370 MB; 8 MiB memtables and a 16 MiB
        // cache keep it to a fraction (docs/benchmarks.md).
        let db = Database::builder(dir)
            .manual_journal_persist(true)
            .cache_size(16 * 1024 * 1024)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => anyhow::anyhow!(
                    "another parla-server is using the data directory {}; stop it, or give this one its own with --data-dir (or --history memory)",
                    dir.display()
                ),
                e => anyhow::anyhow!(
                    "cannot open the history in {}: {e}; move the directory aside to start afresh",
                    dir.display()
                ),
            })?;
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(8 * 1024 * 1024)
            })
            .with_context(|| format!("cannot open the {name} keyspace in {}", dir.display()))
        };
        let store = Arc::new(Store {
            messages: ks("messages")?,
            ids: ks("ids")?,
            targets: ks("targets")?,
            conversations: ks("conversations")?,
            markers: ks("markers")?,
            owners: ks("owners")?,
            db,
            retention,
            dir: dir.to_owned(),
            errors: Mutex::new((None, 0)),
            tails: Mutex::default(),
        });
        info!(dir = %dir.display(), messages = store.messages.approximate_len(), "history opened");
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::Builder::new()
                .name("parla-history".into())
                .spawn(move || background(&store, &stop, sync_every))
                .context("cannot start the history's background thread")?
        };
        Ok(DiskHistory {
            store,
            stop,
            worker: Some(worker),
        })
    }

    /// Deletes what retention no longer keeps at `now`; how many messages went.
    pub fn sweep(&self, now: Millis) -> usize {
        self.store.sweep(now)
    }

    /// Messages kept, roughly (a figure for logs and benchmarks).
    pub fn approximate_len(&self) -> usize {
        self.store.messages.approximate_len()
    }

    /// Syncs everything to disk now.
    pub fn sync(&self) {
        let r = self.store.db.persist(PersistMode::SyncAll);
        self.store.check(r, "sync");
    }
}

impl Drop for DiskHistory {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            worker.thread().unpark();
            let _ = worker.join();
        }
        self.sync();
    }
}

/// Syncs every `sync_every` and sweeps every [`SWEEP_EVERY`] until `stop`.
fn background(store: &Store, stop: &AtomicBool, sync_every: Option<Duration>) {
    let tick = sync_every.unwrap_or(SWEEP_EVERY).min(SWEEP_EVERY);
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(tick);
        if sync_every.is_some() {
            let r = store.db.persist(PersistMode::SyncData);
            store.check(r, "sync");
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            let gone = store.sweep(wall_clock());
            if gone > 0 {
                info!(
                    messages = gone,
                    "history: deleted what retention no longer keeps"
                );
            }
        }
    }
}

fn wall_clock() -> Millis {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// `target` NUL: every key of a target starts so (no target holds a NUL).
fn prefix(target: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(target.len() + 17);
    k.extend_from_slice(target.as_bytes());
    k.push(0);
    k
}

fn message_key(target: &str, pos: Pos) -> Vec<u8> {
    let mut k = prefix(target);
    k.extend_from_slice(&pos.at.0.to_be_bytes());
    k.extend_from_slice(&pos.seq.to_be_bytes());
    k
}

fn pos_of(key: &[u8]) -> Option<Pos> {
    let tail = key.get(key.len().checked_sub(16)?..)?;
    Some(Pos {
        at: Millis(u64::from_be_bytes(tail[..8].try_into().ok()?)),
        seq: u64::from_be_bytes(tail[8..].try_into().ok()?),
    })
}

impl Store {
    fn tails(&self) -> std::sync::MutexGuard<'_, Tails> {
        self.tails.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `limit` messages of `target` strictly between `after` and `before` from the
    /// store itself, ascending: the newest such if `newest`, else the oldest.
    fn scan_store(
        &self,
        target: &str,
        after: Option<Pos>,
        before: Option<Pos>,
        newest: bool,
        limit: usize,
        keeps: impl Fn(&Stored) -> bool,
    ) -> Vec<Arc<Stored>> {
        let p = prefix(target);
        // The exclusive bounds as keys: just past `after` (a key with a byte more), and up to
        // `before`; open ends are the target's first and past its last key.
        let lo = match after {
            Some(a) => {
                let mut k = message_key(target, a);
                k.push(0);
                k
            }
            None => p.clone(),
        };
        let hi = match before {
            Some(b) => message_key(target, b),
            None => {
                let mut end = p;
                end.extend_from_slice(&[0xff; 17]);
                end
            }
        };
        if lo >= hi {
            return Vec::new();
        }
        let decoded = |g: fjall::Guard| g.value().ok().and_then(|v| decode(&v));
        let kept = |m: Stored| keeps(&m).then(|| Arc::new(m));
        let range = self.messages.range(lo..hi);
        if newest {
            let mut got: Vec<Arc<Stored>> = (range.rev().filter_map(decoded))
                .filter_map(kept)
                .take(limit)
                .collect();
            got.reverse();
            got
        } else {
            (range.filter_map(decoded))
                .filter_map(kept)
                .take(limit)
                .collect()
        }
    }

    /// Logs a failed store operation (at most every [`ERROR_LOG_EVERY`]); the chat goes on.
    fn check<T>(&self, r: fjall::Result<T>, what: &str) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
                let due = errors.0.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY);
                if due {
                    error!(
                        dir = %self.dir.display(),
                        error = %e,
                        also_failed = errors.1,
                        "history: cannot {what}; messages are still delivered but may be missing from history (is the disk full?)"
                    );
                    *errors = (Some(Instant::now()), 0);
                } else {
                    errors.1 += 1;
                }
                None
            }
        }
    }

    fn sweep(&self, now: Millis) -> usize {
        let mut gone = 0;
        let targets: Vec<Vec<u8>> = self
            .targets
            .iter()
            .filter_map(|g| g.key().ok().map(|k| k.to_vec()))
            .collect();
        for target in targets {
            let Ok(target) = String::from_utf8(target) else {
                continue;
            };
            gone += self.sweep_target(&target, now);
        }
        if let Some(age) = self.retention.max_age_ms {
            let cutoff = now.0.saturating_sub(age);
            let old: Vec<Vec<u8>> = (self.conversations.iter())
                .filter_map(|g| g.into_inner().ok())
                .filter(|(_, v)| read_u64(v).is_some_and(|at| at < cutoff))
                .map(|(k, _)| k.to_vec())
                .collect();
            for k in old {
                let r = self.conversations.remove(k);
                self.check(r, "forget an old conversation");
            }
            // A name nobody has held for longer than history is kept: its holder record and
            // its read markers go (each name ever used would otherwise stay for good).
            let left_long_ago: Vec<Vec<u8>> = (self.owners.iter())
                .filter_map(|g| g.into_inner().ok())
                .filter(|(_, v)| {
                    decode_owner(v)
                        .and_then(|o| o.left)
                        .is_some_and(|l| l.0 < cutoff)
                })
                .map(|(k, _)| k.to_vec())
                .collect();
            for nick in left_long_ago {
                let mut batch = self.db.batch();
                batch.remove(&self.markers, nick.clone());
                batch.remove(&self.owners, nick);
                self.check(batch.commit(), "forget a name long unused");
            }
        }
        gone
    }

    /// Deletes `target`'s messages older than the age limit or beyond the count limit.
    fn sweep_target(&self, target: &str, now: Millis) -> usize {
        let p = prefix(target);
        let mut doomed: Vec<(Vec<u8>, String)> = Vec::new();
        let mut doom = |k: &[u8], v: &[u8]| {
            if let Some(m) = decode(v) {
                doomed.push((k.to_vec(), m.msgid));
            }
        };
        if let Some(age) = self.retention.max_age_ms {
            let end = message_key(target, Pos::first_at(Millis(now.0.saturating_sub(age))));
            for g in self.messages.range(p.clone()..end) {
                if let Ok((k, v)) = g.into_inner() {
                    doom(&k, &v);
                }
            }
        }
        if let Some(max) = self.retention.max_per_target {
            let from_newest = self.messages.prefix(&p).rev().skip(max);
            for g in from_newest {
                if let Ok((k, v)) = g.into_inner() {
                    doom(&k, &v);
                }
            }
        }
        doomed.sort();
        doomed.dedup();
        let mut batch = self.db.batch();
        for (k, msgid) in &doomed {
            batch.remove(&self.messages, k.clone());
            batch.remove(&self.ids, msgid.as_bytes().to_vec());
        }
        self.check(batch.commit(), "delete old messages");
        if !doomed.is_empty() {
            self.tails().by_target.remove(target);
        }
        // An emptied target is forgotten (one written meanwhile is listed again by its next
        // message).
        if self.messages.prefix(&p).next().is_none() {
            let r = self.targets.remove(target.as_bytes().to_vec());
            self.check(r, "forget an emptied room");
        }
        doomed.len()
    }
}

fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

impl History for DiskHistory {
    fn append(&mut self, target: &str, m: &Stored) {
        let s = &*self.store;
        let key = message_key(target, m.pos);
        let mut batch = s.db.batch().durability(Some(PersistMode::Buffer));
        batch.insert(&s.messages, key.clone(), encode(m));
        batch.insert(&s.ids, m.msgid.as_bytes().to_vec(), key);
        batch.insert(
            &s.targets,
            target.as_bytes().to_vec(),
            m.pos.at.0.to_be_bytes(),
        );
        for (me, peer, shown) in sides(target, m).into_iter().flatten() {
            let mut k = prefix(me);
            k.extend_from_slice(peer.as_bytes());
            let mut v = m.pos.at.0.to_be_bytes().to_vec();
            v.extend_from_slice(shown.as_bytes());
            batch.insert(&s.conversations, k, v);
        }
        if s.check(batch.commit(), "keep a message").is_some()
            && let Some(tail) = s.tails().by_target.get_mut(target)
        {
            tail.push(m);
        }
    }

    fn find(&self, target: &str, msgid: &str) -> Option<Pos> {
        let s = &*self.store;
        let key = s.check(s.ids.get(msgid.as_bytes()), "look a message up")??;
        let p = prefix(target);
        if !key.starts_with(&p) || key.len() != p.len() + 16 {
            return None;
        }
        // Still there (a message deleted by retention may leave its id a moment).
        s.check(s.messages.contains_key(&key), "look a message up")?
            .then(|| pos_of(&key))?
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
        let s = &*self.store;
        let keeps = |m: &Stored| s.retention.keeps(m.pos.at, now);
        let mut tails = s.tails();
        tails.clock += 1;
        let clock = tails.clock;
        if !tails.by_target.contains_key(target) {
            // Load its tail: the newest TAIL, and whether that is all of them.
            let mut newest = s.scan_store(target, None, None, true, TAIL + 1, |_| true);
            let whole = newest.len() <= TAIL;
            if !whole {
                newest.remove(0);
            }
            if tails.by_target.len() >= TAIL_TARGETS
                && let Some(oldest) = (tails.by_target.iter())
                    .min_by_key(|(_, t)| t.used)
                    .map(|(k, _)| k.clone())
            {
                tails.by_target.remove(&oldest);
            }
            let tail = Tail {
                newest: newest.into(),
                whole,
                used: clock,
            };
            tails.by_target.insert(target.to_owned(), tail);
        }
        let tail = tails.by_target.get_mut(target).expect("loaded above");
        tail.used = clock;
        if let Some(found) = tail.answer(after, before, newest, limit, keeps) {
            return found;
        }
        drop(tails);
        s.scan_store(target, after, before, newest, limit, keeps)
    }

    fn remove(&mut self, target: &str, msgid: &str) -> bool {
        let Some(pos) = self.find(target, msgid) else {
            return false;
        };
        let s = &*self.store;
        let mut batch = s.db.batch().durability(Some(PersistMode::Buffer));
        batch.remove(&s.messages, message_key(target, pos));
        batch.remove(&s.ids, msgid.as_bytes().to_vec());
        if let Some(tail) = s.tails().by_target.get_mut(target) {
            tail.newest.retain(|m| m.msgid != msgid);
        }
        s.check(batch.commit(), "forget a redacted message")
            .is_some()
    }

    fn latest(&self, target: &str, now: Millis) -> Option<Millis> {
        let s = &*self.store;
        let v = s.check(s.targets.get(target.as_bytes()), "look a room up")??;
        let at = Millis(read_u64(&v)?);
        s.retention.keeps(at, now).then_some(at)
    }

    fn conversations(&self, nick: &str, now: Millis) -> Vec<(String, Millis)> {
        let s = &*self.store;
        (s.conversations.prefix(prefix(nick)))
            .filter_map(|g| g.value().ok())
            .filter_map(|v| {
                let at = Millis(read_u64(&v)?);
                let shown = std::str::from_utf8(v.get(8..)?).ok()?.to_owned();
                Some((shown, at))
            })
            .filter(|(_, at)| s.retention.keeps(*at, now))
            .collect()
    }

    fn markers(&self, nick: &str) -> Vec<(String, String)> {
        let s = &*self.store;
        let Some(Some(v)) = s.check(s.markers.get(nick.as_bytes()), "read read markers") else {
            return Vec::new();
        };
        let mut r = Reader(&v);
        let mut out = Vec::new();
        while let (Some(t), Some(ts)) = (r.str(), r.str()) {
            out.push((t, ts));
        }
        out
    }

    fn set_markers(&mut self, nick: &str, markers: &[(String, String)]) {
        let s = &*self.store;
        let mut v = Vec::new();
        for (t, ts) in markers {
            put_str(&mut v, t);
            put_str(&mut v, ts);
        }
        let mut batch = s.db.batch().durability(Some(PersistMode::Buffer));
        batch.insert(&s.markers, nick.as_bytes().to_vec(), v);
        s.check(batch.commit(), "keep read markers");
    }

    fn owner(&self, nick: &str) -> Option<Owner> {
        let s = &*self.store;
        let v = s.check(s.owners.get(nick.as_bytes()), "look a name up")??;
        decode_owner(&v)
    }

    fn set_owner(&mut self, nick: &str, owner: Owner) {
        let s = &*self.store;
        let mut v = Vec::new();
        v.extend_from_slice(&owner.since.0.to_be_bytes());
        v.extend_from_slice(&owner.left.map_or(0, |l| l.0.max(1)).to_be_bytes());
        put_str(&mut v, &owner.host);
        // Not written out on its own (a system call at every arrival and departure cost churn
        // a fifth): it goes to the operating system with the next message or the next second's
        // sync. Losing it in a crash errs on the safe side: the name's next holder starts
        // afresh.
        let r = s.owners.insert(nick.as_bytes().to_vec(), v);
        s.check(r, "record a name's holder");
    }
}

/// A holder record back from its bytes (`set_owner`: since, left or 0, host).
fn decode_owner(v: &[u8]) -> Option<Owner> {
    let mut r = Reader(v);
    let since = Millis(r.u64()?);
    let left = match r.u64()? {
        0 => None,
        t => Some(Millis(t)),
    };
    Some(Owner {
        host: r.str()?,
        since,
        left,
    })
}

// A message's bytes: a version, then its fields, strings as a length (u32) and their bytes.

const VERSION: u8 = 1;

fn put_str(v: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&s.as_bytes()[..len as usize]);
}

fn encode(m: &Stored) -> Vec<u8> {
    let mut v = Vec::with_capacity(m.weight());
    v.push(VERSION);
    v.extend_from_slice(&m.pos.at.0.to_be_bytes());
    v.extend_from_slice(&m.pos.seq.to_be_bytes());
    v.push(match m.verb {
        Verb::Privmsg => 0,
        Verb::Notice => 1,
    });
    put_str(&mut v, &m.msgid);
    put_str(&mut v, &m.source);
    put_str(&mut v, &m.target);
    v.extend_from_slice(&(m.tags.len() as u32).to_be_bytes());
    for (k, val) in &m.tags {
        put_str(&mut v, k);
        put_str(&mut v, val);
    }
    v.extend_from_slice(&(m.lines.len() as u32).to_be_bytes());
    for (concat, text) in &m.lines {
        v.push(u8::from(*concat));
        put_str(&mut v, text);
    }
    v
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// A message back from its bytes; `None` (and a warning) for bytes this version can't read.
fn decode(v: &[u8]) -> Option<Stored> {
    let mut r = Reader(v);
    let m = (|| {
        if r.u8()? != VERSION {
            return None;
        }
        let pos = Pos {
            at: Millis(r.u64()?),
            seq: r.u64()?,
        };
        let verb = match r.u8()? {
            0 => Verb::Privmsg,
            _ => Verb::Notice,
        };
        let (msgid, source, target) = (r.str()?, r.str()?, r.str()?);
        let tags = (0..r.u32()?)
            .map(|_| Some((r.str()?, r.str()?)))
            .collect::<Option<Vec<_>>>()?;
        let lines = (0..r.u32()?)
            .map(|_| Some((r.u8()? != 0, r.str()?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Stored {
            pos,
            msgid,
            source,
            verb,
            target,
            tags,
            lines,
        })
    })();
    if m.is_none() {
        warn!("history: a stored message could not be read and is skipped");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(at: u64, seq: u64, target: &str, text: &str) -> Stored {
        Stored {
            pos: Pos {
                at: Millis(at),
                seq,
            },
            msgid: format!("id{at}-{seq}"),
            source: "alice!~a@192.0.2.7".into(),
            verb: Verb::Privmsg,
            target: target.into(),
            tags: vec![("+draft/react".into(), "🎉".into())],
            lines: vec![(false, text.into())],
        }
    }

    fn texts(v: &[Arc<Stored>]) -> Vec<&str> {
        v.iter().map(|m| m.lines[0].1.as_str()).collect()
    }

    #[test]
    fn messages_round_trip_and_scan_like_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = DiskHistory::open(dir.path(), Retention::default(), None).unwrap();
        for i in 1..=5 {
            h.append("#den", &msg(1000 + i, i, "#den", &format!("t{i}")));
            h.append("#denx", &msg(1000 + i, 10 + i, "#denx", "other room"));
        }
        let now = Millis(2000);
        let all = h.scan("#den", None, None, true, 10, now);
        assert_eq!(
            *all[0],
            msg(1001, 1, "#den", "t1"),
            "every field comes back"
        );
        let p2 = h.find("#den", "id1002-2").unwrap();
        assert!(
            h.find("#denx", "id1002-2").is_none(),
            "an id belongs to its target"
        );
        // Scans in every direction: `scans_answer_as_the_memory_store_does`.
        assert_eq!(
            texts(&h.scan("#den", Some(p2), None, false, 2, now)),
            ["t3", "t4"]
        );
        assert!(h.remove("#den", "id1003-3"));
        assert_eq!(
            texts(&h.scan("#den", None, None, false, 9, now)),
            ["t1", "t2", "t4", "t5"]
        );
        assert_eq!(h.latest("#den", now), Some(Millis(1005)));
    }

    /// The disk store (its in-memory tails and its LSM scans) answers every scan as the memory
    /// store does: 400 messages over two targets (more than a tail), some redacted, then
    /// thousands of scans with random bounds, directions and limits.
    #[test]
    fn scans_answer_as_the_memory_store_does() {
        use parla_room::history::MemoryHistory;
        let dir = tempfile::tempdir().unwrap();
        let unbounded = Retention {
            max_age_ms: None,
            max_per_target: None,
        };
        let mut disk = DiskHistory::open(dir.path(), unbounded, None).unwrap();
        let mut memory = MemoryHistory::new(unbounded);
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let now = Millis(100_000);
        for i in 0..400u64 {
            let target = if next(3) == 0 { "#b" } else { "#a" };
            // Several in the same millisecond now and then.
            let m = msg(1000 + i / 2, i, target, &format!("t{i}"));
            disk.append(target, &m);
            memory.append(target, &m);
            // Ask early and often, so that tails are loaded and then kept up to date.
            if i % 50 == 0 {
                let _ = disk.scan("#a", None, None, true, 5, now);
            }
        }
        for i in (0..400).step_by(37) {
            let id = format!("id{}-{i}", 1000 + i / 2);
            for t in ["#a", "#b"] {
                assert_eq!(disk.remove(t, &id), memory.remove(t, &id), "{id}");
            }
        }
        let pos = |n: u64| Pos {
            at: Millis(1000 + n / 2),
            seq: n,
        };
        for _ in 0..3000 {
            let target = if next(3) == 0 { "#b" } else { "#a" };
            let after = (next(3) > 0).then(|| pos(next(420)));
            let before = (next(3) > 0).then(|| pos(next(420)));
            let newest = next(2) == 0;
            let limit = 1 + next(150) as usize;
            let want = memory.scan(target, after, before, newest, limit, now);
            let got = disk.scan(target, after, before, newest, limit, now);
            assert_eq!(
                texts(&got),
                texts(&want),
                "{target} after {after:?} before {before:?} newest {newest} limit {limit}"
            );
        }
    }

    /// Both stores list conversations by the one rule (`sides`), a note to oneself in
    /// another case included.
    #[test]
    fn conversations_are_listed_as_the_memory_store_lists_them() {
        use parla_room::history::{MemoryHistory, target_key};
        let dir = tempfile::tempdir().unwrap();
        let mut disk = DiskHistory::open(dir.path(), Retention::default(), None).unwrap();
        let mut memory = MemoryHistory::new(Retention::default());
        for (i, (to, text)) in [("Bob", "hi"), ("ALICE", "note to self")]
            .iter()
            .enumerate()
        {
            let m = msg(1000 + i as u64, i as u64, to, text);
            let key = target_key("alice", to);
            disk.append(&key, &m);
            memory.append(&key, &m);
        }
        for nick in ["alice", "bob"] {
            let now = Millis(2000);
            assert_eq!(
                disk.conversations(nick, now),
                memory.conversations(nick, now)
            );
        }
        assert!(
            disk.conversations("alice", Millis(2000))
                .contains(&("ALICE".into(), Millis(1001)))
        );
    }

    #[test]
    fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut h = DiskHistory::open(dir.path(), Retention::default(), None).unwrap();
            h.append("alice bob", &msg(1000, 1, "Bob", "hi bob"));
            h.set_markers(
                "alice",
                &[("#den".into(), "2026-12-01T00:00:00.000Z".into())],
            );
            h.set_owner(
                "alice",
                Owner {
                    host: "192.0.2.7".into(),
                    since: Millis(900),
                    left: None,
                },
            );
        }
        let h = DiskHistory::open(dir.path(), Retention::default(), None).unwrap();
        let now = Millis(1000);
        // Read back from disk (a reopened store has no tails yet): every field.
        let read = h.scan("alice bob", None, None, true, 9, now);
        assert_eq!(*read[0], msg(1000, 1, "Bob", "hi bob"));
        assert_eq!(
            h.conversations("alice", now),
            [("Bob".to_owned(), Millis(1000))]
        );
        assert_eq!(
            h.conversations("bob", now),
            [("alice".to_owned(), Millis(1000))]
        );
        assert_eq!(h.markers("alice")[0].0, "#den");
        assert_eq!(h.owner("alice").unwrap().since, Millis(900));
        assert!(h.owner("alice").unwrap().left.is_none());
    }

    #[test]
    fn a_second_server_on_the_same_directory_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let _first = DiskHistory::open(dir.path(), Retention::default(), None).unwrap();
        let err = DiskHistory::open(dir.path(), Retention::default(), None).unwrap_err();
        assert!(
            err.to_string().contains("another parla-server is using"),
            "{err}"
        );
    }

    #[test]
    fn the_sweeper_deletes_by_age_and_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_age_ms: Some(100),
            max_per_target: Some(3),
        };
        let mut h = DiskHistory::open(dir.path(), retention, None).unwrap();
        for i in 1..=6 {
            h.append("#den", &msg(1000 + 10 * i, i, "#den", &format!("t{i}")));
        }
        // At 1145: t1..t3 are beyond the newest three; t4 (1040) is older than 100 ms.
        assert_eq!(h.sweep(Millis(1145)), 4);
        assert_eq!(
            texts(&h.scan("#den", None, None, false, 9, Millis(1145))),
            ["t5", "t6"]
        );
        assert!(h.find("#den", "id1010-1").is_none());
        assert_eq!(h.sweep(Millis(10_000)), 2);
        assert_eq!(h.latest("#den", Millis(10_000)), None);
        // A name left long ago is forgotten with its markers; one still held is not.
        for (nick, left) in [("gone", Some(Millis(1000))), ("here", None)] {
            let owner = Owner {
                host: "192.0.2.7".into(),
                since: Millis(900),
                left,
            };
            h.set_owner(nick, owner);
            h.set_markers(nick, &[("#den".into(), "2026-12-01T00:00:00.000Z".into())]);
        }
        h.sweep(Millis(10_000));
        assert!(h.owner("gone").is_none() && h.markers("gone").is_empty());
        assert!(h.owner("here").is_some() && !h.markers("here").is_empty());
    }
}
