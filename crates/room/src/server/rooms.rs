//! Rooms: joining, leaving, topics, member lists, the room list, and who shares a room with
//! whom (which decides who sees a rename or a quit). The default room's quiet mode, which keeps
//! a room of thousands from costing O(n) lines per join, is decided here too.

use std::collections::BTreeSet;

use super::commands::Params;
use super::replies::truncate;
use super::state::{Member, Room, Topic, within};
use super::{ConnId, Server};
use crate::names::{casefold, is_valid_channel};
use crate::numerics::*;
use crate::time::Millis;

impl Server {
    /// `JOIN <room>{,<room>} [<key>{,<key>}]` and `JOIN 0`
    pub(super) fn on_join(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [rooms] = p.required();
        if rooms == "0" {
            let mine: Vec<String> = self.conns.live(id).rooms.iter().cloned().collect();
            for key in mine {
                self.part(now, id, &key, None);
            }
            return;
        }
        let mut keys = p.get(1).unwrap_or("").split(',');
        for name in rooms.split(',').filter(|n| !n.is_empty()) {
            let given_key = keys.next().filter(|k| !k.is_empty());
            if !is_valid_channel(name, self.config.channel_len) {
                let text = format!(
                    "No such channel: room names start with # and have at most {} characters, no spaces or commas",
                    self.config.channel_len
                );
                self.numeric(now, id, ERR_NOSUCHCHANNEL, &[name, &text]);
                continue;
            }
            let c = self.conns.live(id);
            if c.rooms.contains(&casefold(name)) {
                continue;
            }
            if c.rooms.len() >= self.config.max_rooms_per_user {
                let text = format!(
                    "You have joined too many channels (at most {}); leave one first",
                    self.config.max_rooms_per_user
                );
                self.numeric(now, id, ERR_TOOMANYCHANNELS, &[name, &text]);
                continue;
            }
            if let Some(room) = self.rooms.get(&casefold(name))
                && let Err((code, text)) = room.may_join(id, &c.prefix, given_key)
            {
                let name = room.name.clone();
                self.numeric(now, id, code, &[&name, text]);
                continue;
            }
            self.join(now, id, name);
        }
    }

    /// Puts `id` in room `name` (creating it), shows the join, and sends the topic and names.
    pub(super) fn join(&mut self, now: Millis, id: ConnId, name: &str) {
        let key = casefold(name);
        let Some(caps) = self.conns.get(id).map(|c| c.caps) else {
            return;
        };
        let is_default = self.is_default_room(&key);
        let room = self
            .rooms
            .entry(key.clone())
            .or_insert_with(|| Room::new(name.to_owned(), now, is_default));
        // The first member of a new room is its operator; the default room has no creator.
        let member = Member {
            caps,
            op: room.members.is_empty() && !is_default,
            voice: false,
        };
        if room.members.insert(id, member).is_some() {
            return;
        }
        room.modes.invited.retain(|&i| i != id);
        let room_name = room.name.clone();
        let c = self.conns.live_mut(id);
        c.rooms.insert(key.clone());
        let prefix = c.prefix.clone();
        let room = &self.rooms[&key];
        let quiet = self.is_quiet(&key, room.members.len());
        // A quiet room: only the joiner sees its JOIN, and the member list is not pushed (it
        // would be O(n) lines per join); `NAMES` gives it on request.
        let members: Vec<ConnId> = if quiet {
            vec![id]
        } else {
            room.members.keys().copied().collect()
        };
        self.fanout(
            now,
            members.into_iter(),
            Some(&prefix),
            "JOIN",
            &[&room_name],
        );
        if self.conns.live(id).caps.read_marker() {
            self.send_markread(now, id, &room_name);
        }
        // Members who asked for away-notify learn that the newcomer is away.
        if self.conns.live(id).away.is_some() {
            let told: Vec<ConnId> = self.rooms[&key]
                .members
                .iter()
                .filter(|&(&m, member)| m != id && member.caps.away_notify())
                .map(|(&m, _)| m)
                .collect();
            for m in told {
                self.notify_away(now, id, Some(m));
            }
        }
        self.send_topic(now, id, &key, false);
        if quiet {
            self.numeric(now, id, RPL_ENDOFNAMES, &[&room_name, "End of /NAMES list"]);
        } else {
            self.send_names(now, id, &key, true);
        }
        self.replay_on_join(now, id, &key);
    }

    /// `PART <room>{,<room>} [<reason>]`
    pub(super) fn on_part(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [rooms] = p.required();
        let reason = p.get(1);
        for name in rooms.split(',').filter(|n| !n.is_empty()) {
            let key = casefold(name);
            let Some(room) = self.rooms.get(&key) else {
                self.numeric(now, id, ERR_NOSUCHCHANNEL, &[name, "No such channel"]);
                continue;
            };
            if !room.members.contains_key(&id) {
                let name = room.name.clone();
                self.numeric(
                    now,
                    id,
                    ERR_NOTONCHANNEL,
                    &[&name, "You're not on that channel"],
                );
                continue;
            }
            self.part(now, id, &key, reason);
        }
    }

    fn part(&mut self, now: Millis, id: ConnId, key: &str, reason: Option<&str>) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let name = room.name.clone();
        let members: Vec<ConnId> = if self.is_quiet(key, room.members.len()) {
            vec![id]
        } else {
            room.members.keys().copied().collect()
        };
        let prefix = self.conns.live(id).prefix.clone();
        #[cfg(feature = "deliberate-bugs")]
        let members: Vec<ConnId> =
            if self.config.bug == Some(super::config::Bug::PartUnseenByLeaver) {
                members.into_iter().filter(|&m| m != id).collect()
            } else {
                members
            };
        match reason {
            Some(r) if !r.is_empty() => {
                self.fanout(now, members.into_iter(), Some(&prefix), "PART", &[&name, r])
            }
            _ => self.fanout(now, members.into_iter(), Some(&prefix), "PART", &[&name]),
        }
        self.leave_room(id, key);
    }

    /// Removes `id` from room `key`, dropping the room when it empties (the default room stays).
    pub(super) fn leave_room(&mut self, id: ConnId, key: &str) {
        if let Some(c) = self.conns.get_mut(id) {
            c.rooms.remove(key);
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.members.remove(&id);
        if room.members.is_empty() && !self.is_default_room(key) {
            self.rooms.remove(key);
        }
    }

    /// Whether `key` (folded) is the default room's.
    pub(super) fn is_default_room(&self, key: &str) -> bool {
        self.config
            .default_room
            .as_deref()
            .is_some_and(|d| casefold(d) == key)
    }

    /// `TOPIC <room> [<topic>]`
    pub(super) fn on_topic(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [name] = p.required();
        let key = casefold(name);
        // Room operators and server operators (the default room has only the latter).
        let may = self.can_moderate(&key, id);
        let Some(room) = self.rooms.get_mut(&key) else {
            return self.numeric(now, id, ERR_NOSUCHCHANNEL, &[name, "No such channel"]);
        };
        let Some(text) = p.get(1) else {
            return self.send_topic(now, id, &key, true);
        };
        if !room.members.contains_key(&id) {
            let name = room.name.clone();
            return self.numeric(
                now,
                id,
                ERR_NOTONCHANNEL,
                &[
                    &name,
                    "You're not on that channel; join it to set its topic",
                ],
            );
        }
        if room.modes.topic_ops && !may {
            let name = room.name.clone();
            return self.numeric(
                now,
                id,
                ERR_CHANOPRIVSNEEDED,
                &[
                    &name,
                    "You're not channel operator (+t: only operators set the topic)",
                ],
            );
        }
        if let Some(window) = self.config.topic_changes {
            let c = self.conns.live_mut(id);
            let recent = &mut c.recent.get_or_insert_with(Box::default).topics;
            if let Err(wait) = within(window, recent, now) {
                let name = room.name.clone();
                let text = format!(
                    "Topic changed too often: at most {} per {} seconds; wait {wait} seconds",
                    window.count,
                    window.ms / 1000
                );
                return self.send_server(now, id, "FAIL", &["TOPIC", "RATE_LIMITED", &name, &text]);
            }
            recent.push_back(now);
        }
        #[cfg(feature = "deliberate-bugs")]
        let diverge = self.config.bug == Some(super::config::Bug::TopicKeptByItsServerOnly)
            && !self.is_local(id);
        let room = self.rooms.get_mut(&key).expect("looked up above");
        let text = truncate(text, self.config.topic_len).to_owned();
        let c = self.conns.live(id);
        let topic = (!text.is_empty()).then(|| Topic {
            text: text.clone(),
            setter: c.nick.clone().unwrap_or_default(),
            at: now,
        });
        #[cfg(feature = "deliberate-bugs")]
        let topic = if diverge { room.topic.take() } else { topic };
        room.topic = topic;
        let (room_name, prefix) = (room.name.clone(), c.prefix.clone());
        let members: Vec<ConnId> = room.members.keys().copied().collect();
        self.fanout(
            now,
            members.into_iter(),
            Some(&prefix),
            "TOPIC",
            &[&room_name, &text],
        );
    }

    fn send_topic(&mut self, now: Millis, id: ConnId, key: &str, say_if_none: bool) {
        let room = &self.rooms[key];
        let name = room.name.clone();
        match &room.topic {
            Some(t) => {
                let (text, setter, at) =
                    (t.text.clone(), t.setter.clone(), t.at.as_secs().to_string());
                self.numeric(now, id, RPL_TOPIC, &[&name, &text]);
                self.numeric(now, id, RPL_TOPICWHOTIME, &[&name, &setter, &at]);
            }
            None if say_if_none => self.numeric(now, id, RPL_NOTOPIC, &[&name, "No topic is set"]),
            None => {}
        }
    }

    /// `NAMES [<room>{,<room>}]`
    pub(super) fn on_names(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        let Some(rooms) = p.get(0) else {
            return self.numeric(now, id, RPL_ENDOFNAMES, &["*", "End of /NAMES list"]);
        };
        // Several rooms get one `366` at the end naming them all (RFC 2812), one room its own.
        let names: Vec<&str> = rooms.split(',').filter(|n| !n.is_empty()).collect();
        let single = names.len() == 1;
        for name in &names {
            let key = casefold(name);
            // A secret room (`+s`) is not shown to those outside it.
            let visible = self
                .rooms
                .get(&key)
                .is_some_and(|r| !r.modes.secret || r.members.contains_key(&id));
            if visible {
                self.send_names(now, id, &key, single);
            } else if single {
                self.numeric(now, id, RPL_ENDOFNAMES, &[name, "End of /NAMES list"]);
            }
        }
        if !single {
            self.numeric(now, id, RPL_ENDOFNAMES, &[rooms, "End of /NAMES list"]);
        }
    }

    /// `353`s (as many as fit in 512 bytes each) for room `key`, and its `366` if `end`.
    fn send_names(&mut self, now: Millis, id: ConnId, key: &str, end: bool) {
        let room = &self.rooms[key];
        let inside = room.members.contains_key(&id);
        let caps = self.conns.live(id).caps;
        let names: Vec<String> = room
            .members
            .iter()
            .filter_map(|(&m, member)| Some((self.conns.get(m)?, member)))
            .filter(|(c, _)| inside || !c.invisible)
            .filter_map(|(c, member)| {
                let status = member.prefixes(caps.multi_prefix());
                let nick = c.nick.as_deref()?;
                Some(if caps.userhost_in_names() {
                    format!("{status}{}", c.prefix)
                } else {
                    format!("{status}{nick}")
                })
            })
            .collect();
        let room_name = room.name.clone();
        let kind = if room.modes.secret { "@" } else { "=" };
        self.numeric_list(now, id, RPL_NAMREPLY, &[kind, &room_name], &names, false);
        if end {
            self.numeric(now, id, RPL_ENDOFNAMES, &[&room_name, "End of /NAMES list"]);
        }
    }

    /// `LIST [<room>{,<room>}]`
    pub(super) fn on_list(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        self.numeric(now, id, RPL_LISTSTART, &["Channel", "Users  Name"]);
        let wanted: Option<BTreeSet<String>> =
            p.get(0).map(|f| f.split(',').map(casefold).collect());
        let rows: Vec<(String, String, String)> = self
            .rooms
            .iter()
            .filter(|(key, _)| wanted.as_ref().is_none_or(|w| w.contains(*key)))
            .filter(|(_, r)| !r.modes.secret || r.members.contains_key(&id))
            .map(|(_, r)| {
                let topic = r.topic.as_ref().map(|t| t.text.clone()).unwrap_or_default();
                (r.name.clone(), r.members.len().to_string(), topic)
            })
            .collect();
        for (name, count, topic) in rows {
            self.numeric(now, id, RPL_LIST, &[&name, &count, &topic]);
        }
        self.numeric(now, id, RPL_LISTEND, &["End of /LIST"]);
    }

    /// Everyone who shares a room with `id`, without `id` itself.
    pub(super) fn peers(&self, id: ConnId) -> BTreeSet<ConnId> {
        let Some(c) = self.conns.get(id) else {
            return BTreeSet::new();
        };
        c.rooms
            .iter()
            .filter_map(|k| self.rooms.get(k))
            .flat_map(|r| r.members.keys().copied())
            .filter(|&m| m != id)
            .collect()
    }

    /// Who sees `id` leave: everyone who shares a room with it, except in a quiet room (see
    /// [`Config::quiet_joins_above`](super::Config::quiet_joins_above)), whose members only
    /// learn it if they share another room.
    pub(super) fn peers_told_of_leaving(&self, id: ConnId) -> BTreeSet<ConnId> {
        let Some(c) = self.conns.get(id) else {
            return BTreeSet::new();
        };
        c.rooms
            .iter()
            .filter_map(|k| self.rooms.get(k).map(|r| (k, r)))
            .filter(|(k, r)| !self.is_quiet(k, r.members.len()))
            .flat_map(|(_, r)| r.members.keys().copied())
            .filter(|&m| m != id)
            .collect()
    }

    /// Whether room `key` with `members` members is past the quiet threshold: only the default
    /// room ever is.
    fn is_quiet(&self, key: &str, members: usize) -> bool {
        self.config
            .quiet_joins_above
            .is_some_and(|above| members > above)
            && self
                .config
                .default_room
                .as_deref()
                .is_some_and(|d| casefold(d) == key)
    }
}
