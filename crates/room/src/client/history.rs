//! History from the server (IRCv3 `draft/chathistory`): the recent past of a room on joining
//! it, older pages on request, and what was missed while away, each reported once and in order.
//!
//! The session remembers, per conversation (a room, or the other person of a direct one), the
//! ids of the messages it reported and the oldest and newest of them ([`Recall`]). On our own
//! `JOIN` it asks for the room's latest messages, or, if it saw some of that room before (a
//! rejoin, or a session resumed after the connection was lost), for everything after the newest
//! it saw, page after page until the gap is closed. A page arrives as a `chathistory` batch;
//! live messages of that conversation that arrive meanwhile wait until the page is reported, so
//! nothing is shown out of order, and a message already reported is never reported again. A
//! server that refuses a `msgid` reference (it forgot the message) is asked again by time.
//!
//! Everything here comes from the network and is bounded: how many conversations are
//! remembered, how many ids each, how many batches may be open, how many messages a page holds.

use std::collections::{BTreeMap, VecDeque};

use super::{Event, HistoryPage, Said, Session};
use crate::message::Message;
use crate::names::casefold;
use crate::time::Millis;

/// How many messages of a room are asked for on joining it, and per older page.
pub const HISTORY_PAGE: usize = 50;

/// How long a page may take to arrive before the messages waiting for it are shown without it.
pub const HISTORY_WAIT_MS: u64 = 15_000;

/// The most message ids remembered per conversation (to tell a message already shown).
const RECALL_IDS: usize = 1_000;

/// The most conversations remembered (a hostile server could invent any number).
const RECALL_TARGETS: usize = 512;

/// The most batches open at once (others' messages are taken as live ones).
const OPEN_BATCHES: usize = 16;

/// What the session remembers of one conversation's messages.
#[derive(Debug, Clone, Default)]
pub struct Recall {
    /// The oldest message reported that has an id: where an older page starts.
    oldest: Option<Mark>,
    /// The newest: where the gap after a reconnection starts.
    newest: Option<Mark>,
    /// The ids reported, the newest last.
    ids: VecDeque<String>,
    /// An older page came back short: there is nothing older.
    exhausted: bool,
}

/// A message's place: its id and its server time.
#[derive(Debug, Clone)]
struct Mark {
    id: String,
    time: Option<String>,
}

impl Recall {
    fn seen(&self, id: &str) -> bool {
        self.ids.iter().any(|i| i == id)
    }

    fn remember(&mut self, said: &Said, older: bool) {
        let Some(id) = &said.id else { return };
        if self.ids.len() == RECALL_IDS {
            self.ids.pop_front();
        }
        self.ids.push_back(id.clone());
        let mark = Some(Mark {
            id: id.clone(),
            time: said.time.clone(),
        });
        if older || self.oldest.is_none() {
            self.oldest = mark.clone();
        }
        if !older || self.newest.is_none() {
            self.newest = mark;
        }
    }
}

/// A page asked for and not yet reported.
#[derive(Debug)]
pub(super) struct Fetch {
    /// The conversation (folded).
    key: String,
    /// The conversation as we name it to the server.
    target: String,
    page: HistoryPage,
    /// How many messages were asked for.
    limit: usize,
    /// The reference is a `msgid` (a refusal is then retried by time, if we have one).
    by_id: bool,
    /// The batch it arrives in has started.
    started: bool,
    /// The page so far, oldest first.
    messages: Vec<Said>,
    /// Live messages of the conversation that arrived meanwhile.
    held: Vec<Said>,
    /// When to give up waiting for it.
    deadline: Millis,
}

/// What a session resumed on a new connection keeps of the one that was lost.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The name we had.
    pub(super) nick: String,
    /// The rooms we were in, the current one last.
    pub(super) rooms: Vec<String>,
    /// What we saw of each conversation.
    pub(super) recall: BTreeMap<String, Recall>,
}

/// The folded key of a message's conversation: the room, or the other person.
fn conversation(said: &Said, me_is_target: bool) -> String {
    if me_is_target && !said.own {
        casefold(&said.from)
    } else {
        casefold(&said.target)
    }
}

impl Session {
    /// Whether the server keeps history we can ask for.
    fn history_offered(&self) -> bool {
        self.caps.contains("draft/chathistory") && self.caps.contains("batch")
    }

    /// Our own `JOIN` of `room`: ask for what we missed of it since we last saw it, or for its
    /// recent past.
    pub(super) fn history_on_join(&mut self, now: Millis, room: &str) {
        if !self.history_offered() {
            return;
        }
        let key = casefold(room);
        let newest = self.recall.get(&key).and_then(|r| r.newest.clone());
        match newest {
            Some(mark) => self.fetch(now, room, HistoryPage::Missed, &mark),
            None => {
                let limit = HISTORY_PAGE.min(self.history_max);
                self.request(now, room, HistoryPage::Recent, "*", limit);
            }
        }
    }

    /// `/older`: the page before the oldest message shown.
    pub(super) fn command_older(&mut self, now: Millis, target: Option<String>) {
        let Some(target) = target.or_else(|| self.room.clone()) else {
            return self.emit(Event::ServerError {
                text: "You are not in a room yet; /join #room first".into(),
            });
        };
        let key = casefold(&target);
        if self.fetches.iter().any(|f| f.key == key) {
            return; // one page at a time; that one will answer
        }
        let recall = self.recall.get(&key);
        if !self.history_offered() || recall.is_some_and(|r| r.exhausted) {
            return self.emit(Event::History {
                target,
                page: HistoryPage::Older,
                messages: Vec::new(),
                more: false,
            });
        }
        let limit = HISTORY_PAGE.min(self.history_max);
        match recall.and_then(|r| r.oldest.clone()) {
            Some(mark) => {
                let reference = format!("msgid={}", mark.id);
                self.request(now, &target, HistoryPage::Older, &reference, limit);
            }
            None => self.request(now, &target, HistoryPage::Older, "*", limit),
        }
    }

    /// `CHATHISTORY AFTER` the message `mark`, as large a page as the server gives.
    fn fetch(&mut self, now: Millis, target: &str, page: HistoryPage, mark: &Mark) {
        let reference = format!("msgid={}", mark.id);
        self.request(now, target, page, &reference, self.history_max);
    }

    /// `CHATHISTORY <sub> <target> <reference> <limit>`, and the page it will answer with.
    fn request(
        &mut self,
        now: Millis,
        target: &str,
        page: HistoryPage,
        reference: &str,
        limit: usize,
    ) {
        // Without a reference (nothing shown yet), the latest page is the one before "now".
        let sub = match page {
            _ if reference == "*" => "LATEST",
            HistoryPage::Recent => "LATEST",
            HistoryPage::Older => "BEFORE",
            HistoryPage::Missed => "AFTER",
        };
        self.send(format!("CHATHISTORY {sub} {target} {reference} {limit}"));
        let key = casefold(target);
        // A rejoin while a page is still coming keeps what waits for it.
        let held = match self.fetches.iter().position(|f| f.key == key) {
            Some(i) => self.fetches.remove(i).map(|f| f.held).unwrap_or_default(),
            None => Vec::new(),
        };
        self.fetches.push_back(Fetch {
            key,
            target: target.to_owned(),
            page,
            limit,
            by_id: reference.starts_with("msgid="),
            started: false,
            messages: Vec::new(),
            held,
            deadline: now.plus(HISTORY_WAIT_MS),
        });
    }

    /// The earliest time a page is given up on.
    pub(super) fn history_deadline(&self) -> Option<Millis> {
        self.fetches.iter().map(|f| f.deadline).min()
    }

    /// Pages that did not come in time are given up: what waited for them is shown.
    pub(super) fn history_timeout(&mut self, now: Millis) {
        while let Some(i) = self.fetches.iter().position(|f| f.deadline <= now) {
            let fetch = self.fetches.remove(i).expect("found");
            self.batches.retain(|_, key| *key != fetch.key);
            self.emit(Event::ServerError {
                text: format!(
                    "The server did not send the history of {} within {} s; going on without it",
                    fetch.target,
                    HISTORY_WAIT_MS / 1000
                ),
            });
            self.release(fetch.held);
        }
    }

    /// `BATCH +<ref> chathistory <target>` opens a page; `BATCH -<ref>` closes it.
    pub(super) fn on_batch(&mut self, now: Millis, p: &[&str]) {
        let Some(name) = p.first() else { return };
        if let Some(reference) = name.strip_prefix('+') {
            let kind = p.get(1).copied().unwrap_or("");
            let Some(target) = p
                .get(2)
                .filter(|_| kind.eq_ignore_ascii_case("chathistory"))
            else {
                return;
            };
            let key = casefold(target);
            if self.batches.len() >= OPEN_BATCHES {
                return;
            }
            if let Some(fetch) = self.fetches.iter_mut().find(|f| f.key == key && !f.started) {
                fetch.started = true;
                self.batches.insert(reference.to_owned(), key);
            }
        } else if let Some(reference) = name.strip_prefix('-')
            && let Some(key) = self.batches.remove(reference)
            && let Some(i) = self.fetches.iter().position(|f| f.key == key && f.started)
        {
            let fetch = self.fetches.remove(i).expect("found");
            self.page_done(now, fetch);
        }
    }

    /// A message inside one of our history batches joins its page (`true`); any other is a
    /// live one (`false`).
    pub(super) fn history_batch_takes(&mut self, msg: &Message<'_>, said: &Said) -> bool {
        let batch = msg.tags.iter().find(|t| t.key == "batch");
        let Some(key) = batch.and_then(|b| self.batches.get(b.value.as_ref())) else {
            return false;
        };
        let key = key.clone();
        if let Some(fetch) = self.fetches.iter_mut().find(|f| f.key == key && f.started) {
            // A server sending more than asked for is not believed beyond that.
            if fetch.messages.len() < fetch.limit {
                fetch.messages.push(said.clone());
            }
        }
        true
    }

    /// A live message: it waits if a page of its conversation is coming (`true`), or is
    /// remembered as shown (`false`: the caller reports it).
    pub(super) fn history_holds(&mut self, said: &Said) -> bool {
        let key = conversation(said, self.is_me(&said.target));
        if let Some(fetch) = self.fetches.iter_mut().find(|f| f.key == key) {
            fetch.held.push(said.clone());
            return true;
        }
        self.remember(&key, said, false);
        false
    }

    /// `FAIL CHATHISTORY <code> … :<description>`: the oldest page asked for is refused. A
    /// `msgid` the server no longer knows is asked for again by its time.
    pub(super) fn on_fail(&mut self, now: Millis, p: &[&str]) {
        if !p
            .first()
            .is_some_and(|c| c.eq_ignore_ascii_case("CHATHISTORY"))
        {
            return;
        }
        let Some(fetch) = self.fetches.pop_front() else {
            return;
        };
        let code = p.get(1).copied().unwrap_or("");
        let time = self
            .recall
            .get(&fetch.key)
            .and_then(|r| match fetch.page {
                HistoryPage::Older => r.oldest.clone(),
                _ => r.newest.clone(),
            })
            .and_then(|m| m.time);
        if fetch.by_id
            && matches!(
                code,
                "INVALID_PARAMS" | "INVALID_MSGREFTYPE" | "MESSAGE_ERROR"
            )
            && let Some(time) = time
        {
            let sub = if fetch.page == HistoryPage::Older {
                "BEFORE"
            } else {
                "AFTER"
            };
            self.send(format!(
                "CHATHISTORY {sub} {} timestamp={time} {}",
                fetch.target, fetch.limit
            ));
            self.fetches.push_front(Fetch {
                by_id: false,
                deadline: now.plus(HISTORY_WAIT_MS),
                ..fetch
            });
            return;
        }
        let why = p.last().copied().unwrap_or("");
        self.emit(Event::ServerError {
            text: format!("No history of {}: {why}", fetch.target),
        });
        self.release(fetch.held);
    }

    /// A page arrived whole: it is reported without what was already shown, then what waited
    /// for it, without what the page showed. A full page of what was missed asks for the next.
    fn page_done(&mut self, now: Millis, mut fetch: Fetch) {
        let full = fetch.messages.len() >= fetch.limit;
        let older = fetch.page == HistoryPage::Older;
        let recall = self.recall.get(&fetch.key);
        let mut messages: Vec<Said> = Vec::new();
        for said in std::mem::take(&mut fetch.messages) {
            let shown = said.id.as_deref().is_some_and(|id| {
                recall.is_some_and(|r| r.seen(id))
                    || messages.iter().any(|m| m.id.as_deref() == Some(id))
            });
            if !shown {
                messages.push(said);
            }
        }
        // An older page is remembered newest first, so that its oldest ends up the oldest.
        if older {
            for said in messages.iter().rev() {
                self.remember(&fetch.key, said, true);
            }
            if !full && let Some(r) = self.recall.get_mut(&fetch.key) {
                r.exhausted = true;
            }
        } else {
            for said in &messages {
                self.remember(&fetch.key, said, false);
            }
        }
        let missed = fetch.page == HistoryPage::Missed;
        // A full page of what was missed may not be all of it (and each one that brought
        // something new moved the newest message seen on, so this ends).
        let gap_open = missed && full && !messages.is_empty();
        if !(missed && messages.is_empty()) {
            self.emit(Event::History {
                target: fetch.target.clone(),
                page: fetch.page,
                messages,
                more: !missed && full,
            });
        }
        if gap_open && let Some(mark) = self.recall.get(&fetch.key).and_then(|r| r.newest.clone()) {
            // What waits keeps waiting for the next page.
            let held = std::mem::take(&mut fetch.held);
            self.fetch(now, &fetch.target, HistoryPage::Missed, &mark);
            if let Some(next) = self.fetches.back_mut() {
                next.held = held;
            }
            return;
        }
        self.release(fetch.held);
    }

    /// Reports messages that waited for a page, but those it already reported.
    fn release(&mut self, held: Vec<Said>) {
        for said in held {
            let key = conversation(&said, self.is_me(&said.target));
            if said
                .id
                .as_deref()
                .is_some_and(|id| self.recall.get(&key).is_some_and(|r| r.seen(id)))
            {
                continue;
            }
            self.remember(&key, &said, false);
            self.emit(Event::Message(said));
        }
    }

    fn remember(&mut self, key: &str, said: &Said, older: bool) {
        if said.id.is_none() {
            return;
        }
        if !self.recall.contains_key(key) && self.recall.len() >= RECALL_TARGETS {
            return;
        }
        self.recall
            .entry(key.to_owned())
            .or_default()
            .remember(said, older);
    }

    /// What a new connection needs to carry on where this one stopped: `None` if this one
    /// never registered (there is nothing to resume), unless it was itself resuming an earlier
    /// one (then that one is still to be carried on).
    pub fn resume(&self) -> Option<Resume> {
        if !self.registered {
            return self.resumed.as_ref().map(|resumed| Resume {
                recall: self.recall.clone(),
                ..resumed.clone()
            });
        }
        let mut rooms = self.rooms.clone();
        if let Some(current) = &self.room
            && let Some(i) = rooms.iter().position(|r| casefold(r) == casefold(current))
        {
            let room = rooms.remove(i);
            rooms.push(room);
        }
        Some(Resume {
            nick: self.nick.clone()?,
            rooms,
            recall: self.recall.clone(),
        })
    }
}
