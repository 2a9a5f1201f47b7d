//! Rooms and their members: the client's picture of who is where, kept from `JOIN`, `PART`,
//! `QUIT`, `NICK` and the `NAMES` replies. A large room's list may be left out by the server
//! (Parla's quiet joins); the picture is then marked incomplete and grows as people speak,
//! until `/names` fetches all of it.

use super::{Event, Member, Session, same_name};
use crate::names::casefold;
use crate::time::Millis;

impl Session {
    /// `JOIN <room>`: the server confirms with our own `JOIN`. A room we are already in just
    /// becomes the current one.
    pub(super) fn command_join(&mut self, room: &str) {
        if let Some(known) = self.rooms.iter().find(|r| same_name(r, room)).cloned() {
            self.room = Some(known.clone());
            return self.emit(Event::Switched { room: known });
        }
        self.send(format!("JOIN {room}"));
    }

    /// `NAMES <current room>`: the whole member list, even of a room too large to list on join.
    pub(super) fn command_names(&mut self) {
        let Some(room) = self.room.clone() else {
            self.emit(Event::ServerError {
                text: "You are not in a room yet; /join #room first".into(),
            });
            return;
        };
        self.send(format!("NAMES {room}"));
    }

    /// `353 <me> <symbol> <room> :<names>`: one part of a member list, each name with its
    /// status prefixes (all of them, with `multi-prefix`).
    pub(super) fn on_names_reply(&mut self, room: &str, names: &str) {
        let names: Vec<_> = names
            .split(' ')
            .filter(|n| !n.is_empty())
            .map(|n| self.member_of(n))
            .collect();
        self.pending_names
            .entry(casefold(room))
            .or_default()
            .extend(names);
    }

    /// `366 <me> <room> :End of /NAMES list`: the list collected from `353`s is complete.
    pub(super) fn on_end_of_names(&mut self, room: &str) {
        let key = casefold(room);
        let mut names = self.pending_names.remove(&key).unwrap_or_default();
        // Every member list includes the member asking; one without us was left out.
        if names.iter().any(|m| self.is_me(&m.name)) {
            self.partial.remove(&key);
        } else if self.members.contains_key(&key) {
            self.partial.insert(key.clone());
            names.push(Member::new(self.nick.clone().unwrap_or_default()));
        }
        self.members.insert(key, names);
        self.emit_members(room);
    }

    /// `332 <me> <room> :<topic>` and `:<who> TOPIC <room> :<topic>`.
    pub(super) fn on_topic(&mut self, room: &str, topic: &str) {
        self.emit(Event::Topic {
            room: room.to_owned(),
            topic: topic.to_owned(),
        });
    }

    /// `:<who> JOIN <room>`: ours makes it the current room (its list follows in `353`/`366`);
    /// someone else's adds them to its list.
    pub(super) fn on_join(&mut self, now: Millis, from: &str, room: &str) {
        if self.is_me(from) {
            self.room = Some(room.to_owned());
            self.rooms.retain(|r| !same_name(r, room));
            self.rooms.push(room.to_owned());
            self.members.insert(casefold(room), Vec::new());
            self.emit(Event::Joined {
                room: room.to_owned(),
            });
            self.history_on_join(now, room);
        } else if let Some(list) = self.members.get_mut(&casefold(room)) {
            list.push(Member::new(from));
            self.emit(Event::UserJoined {
                room: room.to_owned(),
                name: from.to_owned(),
            });
            self.emit_members(room);
        }
    }

    /// `:<who> PART <room> [:<reason>]`: ours forgets the room.
    pub(super) fn on_part(&mut self, from: &str, room: &str, reason: Option<&str>) {
        let key = casefold(room);
        if self.is_me(from) {
            if self.members.contains_key(&key) {
                self.leave_room(room);
            }
        } else if let Some(list) = self.members.get_mut(&key) {
            list.retain(|m| !same_name(&m.name, from));
            self.emit(Event::UserLeft {
                room: room.to_owned(),
                name: from.to_owned(),
                reason: reason.map(str::to_owned),
            });
            self.emit_members(room);
        }
    }

    /// We are out of `room` (parted or kicked): it is forgotten, and if it was the current room
    /// the one joined most recently of those left becomes current.
    pub(super) fn leave_room(&mut self, room: &str) {
        let key = casefold(room);
        self.members.remove(&key);
        self.partial.remove(&key);
        self.rooms.retain(|r| !same_name(r, room));
        let current = self.room.as_deref().is_some_and(|r| casefold(r) == key);
        #[cfg(feature = "deliberate-bugs")]
        let current = current && self.config.bug != Some(crate::Bug::ClientPartKeepsRoom);
        if current {
            self.room = self.rooms.last().cloned();
        }
        self.emit(Event::Left {
            room: room.to_owned(),
            current: self.room.clone(),
        });
    }

    /// `:<who> QUIT :<reason>`: gone from every room we share. If it is our lost connection,
    /// holding the name we had, we take the name back.
    pub(super) fn on_quit(&mut self, from: &str, reason: &str) {
        if let Some(resumed) = &self.resumed
            && same_name(from, &resumed.nick)
            && !self.is_me(from)
        {
            let line = format!("NICK :{}", resumed.nick);
            self.send(line);
        }
        let rooms: Vec<String> = self
            .members
            .iter_mut()
            .filter_map(|(room, list)| {
                let before = list.len();
                list.retain(|m| !same_name(&m.name, from));
                (list.len() != before).then(|| room.clone())
            })
            .collect();
        self.emit(Event::UserQuit {
            name: from.to_owned(),
            reason: reason.to_owned(),
        });
        // The rooms are named by their folded keys here.
        for room in rooms {
            self.emit_members(&room);
        }
    }

    /// `:<old> NICK <new>`: renamed in every room we share (ours renames us).
    pub(super) fn on_nick(&mut self, from: &str, new: &str) {
        if self.is_me(from) {
            self.nick = Some(new.to_owned());
        }
        let rooms: Vec<String> = self
            .members
            .iter_mut()
            .filter_map(|(room, list)| {
                let m = list.iter_mut().find(|m| same_name(&m.name, from))?;
                m.name = new.to_owned();
                Some(room.clone())
            })
            .collect();
        self.emit(Event::Renamed {
            old: from.to_owned(),
            new: new.to_owned(),
        });
        for room in rooms {
            self.emit_members(&room);
        }
    }

    /// Reports `room`'s member list, sorted by folded name, if we are in it.
    pub(super) fn emit_members(&mut self, room: &str) {
        let key = casefold(room);
        let Some(list) = self.members.get(&key) else {
            return;
        };
        let mut members = list.clone();
        members.sort_by_key(|m| casefold(&m.name));
        let complete = !self.partial.contains(&key);
        self.emit(Event::Members {
            room: room.to_owned(),
            members,
            complete,
        });
    }
}
