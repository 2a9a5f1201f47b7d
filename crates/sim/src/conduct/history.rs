//! What a session owes for history (`draft/chathistory`), derived from what it read: on its own
//! `JOIN` it asks for the room's latest page (or, if it saw messages of that room before, for
//! everything after the newest of them); each page it asked for is reported once it ends, without
//! the messages it already reported; live messages of that conversation read meanwhile are
//! reported after the page (and not if the page held them); a full page of missed messages asks
//! for the next; a refused `msgid` is asked for again by time; a page 15 s late is given up.

use std::collections::VecDeque;
use std::time::Duration;

use parla_net::client::{Event, HistoryPage, Said};

use super::{ClientModel, Line, Owed};
use crate::model::fold;

/// A page on joining, and the most a session asks for before the server says its limit.
pub(super) const PAGE: usize = 50;

/// How long a page may be late.
const WAIT: Duration = Duration::from_secs(15);

/// How many ids of a conversation a session remembers.
const IDS: usize = 1_000;

/// What a session reported of one conversation.
#[derive(Default, Clone)]
pub(super) struct Seen {
    /// An older page came back short: there is nothing before.
    exhausted: bool,
    ids: VecDeque<String>,
    /// Oldest and newest reported (id, time).
    oldest: Option<(String, Option<String>)>,
    newest: Option<(String, Option<String>)>,
}

/// A page asked for.
pub(super) struct Asked {
    key: String,
    target: String,
    page: HistoryPage,
    limit: usize,
    by_id: bool,
    /// Its batch's reference, once it started.
    batch: Option<String>,
    got: Vec<Said>,
    held: Vec<Said>,
    at: Duration,
}

impl Seen {
    fn has(&self, id: &str) -> bool {
        self.ids.contains(&id.to_owned())
    }

    fn add(&mut self, s: &Said, older: bool) {
        let Some(id) = &s.id else { return };
        if self.ids.len() == IDS {
            self.ids.pop_front();
        }
        self.ids.push_back(id.clone());
        let mark = Some((id.clone(), s.time.clone()));
        if older || self.oldest.is_none() {
            self.oldest = mark.clone();
        }
        if !older || self.newest.is_none() {
            self.newest = mark;
        }
    }
}

impl ClientModel {
    fn offers_history(&self) -> bool {
        self.caps.contains("batch") && self.caps.contains("draft/chathistory")
    }

    fn ask(
        &mut self,
        at: Duration,
        target: &str,
        page: HistoryPage,
        reference: String,
        limit: usize,
        owed: &mut Owed,
    ) {
        let verb = match page {
            _ if reference == "*" => "LATEST",
            HistoryPage::Recent => "LATEST",
            HistoryPage::Older => "BEFORE",
            HistoryPage::Missed => "AFTER",
        };
        owed.auto.push((
            at,
            format!("CHATHISTORY {verb} {target} {reference} {limit}"),
        ));
        let key = fold(target);
        let held = match self.asked.iter().position(|a| a.key == key) {
            Some(i) => self.asked.remove(i).held,
            None => Vec::new(),
        };
        self.asked.push(Asked {
            key,
            target: target.to_owned(),
            page,
            limit,
            by_id: reference != "*",
            batch: None,
            got: Vec::new(),
            held,
            at,
        });
    }

    /// Its own `JOIN` of `room`.
    pub(super) fn joined_history(&mut self, at: Duration, room: &str, owed: &mut Owed) {
        if !self.offers_history() {
            return;
        }
        match self.seen.get(&fold(room)).and_then(|s| s.newest.clone()) {
            Some((id, _)) => {
                let limit = self.history_max;
                self.ask(
                    at,
                    room,
                    HistoryPage::Missed,
                    format!("msgid={id}"),
                    limit,
                    owed,
                )
            }
            None => {
                let limit = PAGE.min(self.history_max);
                self.ask(at, room, HistoryPage::Recent, "*".into(), limit, owed)
            }
        }
    }

    /// `/older [target]`: the page before the oldest message shown of the target (the current
    /// room by default): asked for, unless one of that conversation is on its way; answered at
    /// once, empty, when there is nothing older or the server keeps no history. (In the instant
    /// its rooms changed it may have met either state: owed only maybe then.)
    pub(super) fn older(
        &mut self,
        at: Duration,
        target: Option<&str>,
        maybe: bool,
        owed: &mut Owed,
    ) {
        let target = match target {
            Some(t) => t.to_owned(),
            None => match self.rooms.iter().find(|r| Some(fold(r)) == self.current) {
                Some(room) => room.clone(),
                None => return, // "not in a room yet": a command error
            },
        };
        let key = fold(&target);
        if self.asked.iter().any(|a| a.key == key) {
            return;
        }
        let seen = self.seen.get(&key);
        if !self.offers_history() || seen.is_some_and(|s| s.exhausted) {
            let event = Event::History {
                target,
                page: HistoryPage::Older,
                messages: Vec::new(),
                more: false,
            };
            // Reported when the command is handled: its place among what was read is not fixed.
            owed.events.push((at, event, true));
            return;
        }
        let limit = PAGE.min(self.history_max);
        let reference = match seen.and_then(|s| s.oldest.clone()) {
            Some((id, _)) => format!("msgid={id}"),
            None => "*".to_owned(),
        };
        if maybe {
            return; // either state may have been met; nothing certain is owed
        }
        self.ask(at, &target, HistoryPage::Older, reference, limit, owed);
    }

    /// `BATCH +ref chathistory <target>` / `BATCH -ref`.
    pub(super) fn batch(&mut self, at: Duration, p: &[&str], owed: &mut Owed) {
        let Some(name) = p.first() else { return };
        if let Some(r) = name.strip_prefix('+') {
            if p.get(1)
                .is_some_and(|k| k.eq_ignore_ascii_case("chathistory"))
                && let Some(target) = p.get(2)
                && let Some(a) = self
                    .asked
                    .iter_mut()
                    .find(|a| a.key == fold(target) && a.batch.is_none())
            {
                a.batch = Some(r.to_owned());
            }
        } else if let Some(r) = name.strip_prefix('-')
            && let Some(i) = self
                .asked
                .iter()
                .position(|a| a.batch.as_deref() == Some(r))
        {
            let a = self.asked.remove(i);
            self.page_ended(at, a, owed);
        }
    }

    fn page_ended(&mut self, at: Duration, mut a: Asked, owed: &mut Owed) {
        let full = a.got.len() >= a.limit;
        let seen = self.seen.get(&a.key).cloned().unwrap_or_default();
        let mut fresh: Vec<Said> = Vec::new();
        for s in a.got.drain(..) {
            let dup = s
                .id
                .as_ref()
                .is_some_and(|id| seen.has(id) || fresh.iter().any(|f| f.id.as_ref() == Some(id)));
            if !dup {
                fresh.push(s);
            }
        }
        let entry = self.seen.entry(a.key.clone()).or_default();
        if a.page == HistoryPage::Older {
            fresh.iter().rev().for_each(|s| entry.add(s, true));
            entry.exhausted |= !full;
        } else {
            fresh.iter().for_each(|s| entry.add(s, false));
        }
        let missed = a.page == HistoryPage::Missed;
        let again = missed && full && !fresh.is_empty();
        if !(missed && fresh.is_empty()) {
            let event = Event::History {
                target: a.target.clone(),
                page: a.page,
                messages: fresh,
                more: !missed && full,
            };
            owed.events.push((at, event, false));
        }
        if again && let Some((id, _)) = self.seen.get(&a.key).and_then(|s| s.newest.clone()) {
            let limit = self.history_max;
            self.ask(
                at,
                &a.target,
                HistoryPage::Missed,
                format!("msgid={id}"),
                limit,
                owed,
            );
            self.asked.last_mut().expect("just asked").held = a.held;
            return;
        }
        self.release(at, a.held, owed);
    }

    fn release(&mut self, at: Duration, held: Vec<Said>, owed: &mut Owed) {
        for s in held {
            let key = self.conversation_of(&s);
            let seen = self.seen.entry(key).or_default();
            if s.id.as_ref().is_some_and(|id| seen.has(id)) {
                continue;
            }
            seen.add(&s, false);
            owed.events.push((at, Event::Message(s), false));
        }
    }

    fn conversation_of(&self, s: &Said) -> String {
        if self.is_me(&s.target) && !s.own {
            fold(&s.from)
        } else {
            fold(&s.target)
        }
    }

    /// A message inside a page's batch joins the page.
    pub(super) fn in_page(&mut self, l: &Line<'_>, s: &Said) -> bool {
        let Some(batch) = l.batch else { return false };
        let Some(a) = self
            .asked
            .iter_mut()
            .find(|a| a.batch.as_deref() == Some(batch))
        else {
            return false;
        };
        if a.got.len() < a.limit {
            a.got.push(s.clone());
        }
        true
    }

    /// A live message: held while a page of its conversation is coming, else reported.
    pub(super) fn live(&mut self, at: Duration, s: Said, owed: &mut Owed) {
        let key = self.conversation_of(&s);
        if let Some(a) = self.asked.iter_mut().find(|a| a.key == key) {
            a.held.push(s);
            return;
        }
        self.seen.entry(key).or_default().add(&s, false);
        owed.events.push((at, Event::Message(s), false));
    }

    /// `FAIL CHATHISTORY <code> … :<text>`: the oldest page asked for is refused.
    pub(super) fn fail(&mut self, at: Duration, p: &[&str], owed: &mut Owed) {
        if !p
            .first()
            .is_some_and(|c| c.eq_ignore_ascii_case("CHATHISTORY"))
            || self.asked.is_empty()
        {
            return;
        }
        let a = self.asked.remove(0);
        let code = p.get(1).copied().unwrap_or("");
        let seen = self.seen.get(&a.key);
        let time = match a.page {
            HistoryPage::Older => seen.and_then(|s| s.oldest.clone()),
            _ => seen.and_then(|s| s.newest.clone()),
        }
        .and_then(|(_, t)| t);
        if a.by_id
            && ["INVALID_PARAMS", "INVALID_MSGREFTYPE", "MESSAGE_ERROR"].contains(&code)
            && let Some(time) = time
        {
            let verb = if a.page == HistoryPage::Older {
                "BEFORE"
            } else {
                "AFTER"
            };
            owed.auto.push((
                at,
                format!(
                    "CHATHISTORY {verb} {} timestamp={time} {}",
                    a.target, a.limit
                ),
            ));
            self.asked.insert(
                0,
                Asked {
                    by_id: false,
                    at,
                    ..a
                },
            );
            return;
        }
        let text = format!(
            "No history of {}: {}",
            a.target,
            p.last().copied().unwrap_or("")
        );
        owed.events.push((at, Event::ServerError { text }, false));
        self.release(at, a.held, owed);
    }

    /// Pages asked for at least [`WAIT`] before `now` are given up (`inclusive`), or more than
    /// that: before a line read at `now` is handled, since the session reads a line before it
    /// runs a timer due in the same instant.
    pub(super) fn late_pages(&mut self, now: Duration, inclusive: bool, owed: &mut Owed) {
        let late = |a: &Asked| a.at + WAIT < now || (inclusive && a.at + WAIT == now);
        while let Some(i) = self.asked.iter().position(late) {
            let a = self.asked.remove(i);
            let due = a.at + WAIT;
            let text = format!(
                "The server did not send the history of {} within {} s; going on without it",
                a.target,
                WAIT.as_secs()
            );
            owed.events.push((due, Event::ServerError { text }, false));
            self.release(due, a.held, owed);
        }
    }
}
