//! Moderation and the rest of a room's life beyond talking: leaving, topics, kicks,
//! invitations, modes (and the member statuses they change), away, server operators, `WHOIS`,
//! typing notifications, and the server's informational replies to all of these.
//!
//! Commands that name no room act on the current one. Every argument a person types goes out
//! on one line: one holding a CR, LF or NUL is refused before anything is sent.

use super::{Event, Member, Session, Typing, same_name};
use crate::message::Message;
use crate::names::casefold;
use crate::numerics::*;
use crate::time::Millis;

/// `Typing::Active` goes out at most this often to the same room (the IRCv3 recommendation:
/// receivers let it lapse after 6 s).
pub const TYPING_ACTIVE_EVERY_MS: u64 = 3_000;

impl Session {
    /// The room a command acts on: the one named, else the current one. `None` (and an error
    /// for the person) when there is neither.
    fn room_for(&mut self, room: Option<String>, what: &str) -> Option<String> {
        let room = room.or_else(|| self.room.clone());
        if room.is_none() {
            self.emit(Event::ServerError {
                text: format!("You are not in a room yet, so there is no room to {what}; name one or /join #room first"),
            });
        }
        room
    }

    /// Refuses (with an error) text that would not stay one line.
    fn one_line(&mut self, parts: &[&str]) -> bool {
        if parts.iter().any(|p| p.contains(['\r', '\n', '\0'])) {
            self.emit(Event::ServerError {
                text: "Not sent: a name, room or reason cannot contain a line break or a NUL"
                    .into(),
            });
            return false;
        }
        true
    }

    /// `PART <room> [:<reason>]`; the server confirms with our own `PART`.
    pub(super) fn command_part(&mut self, room: Option<String>, reason: Option<String>) {
        let Some(room) = self.room_for(room, "leave") else {
            return;
        };
        let reason = reason.unwrap_or_default();
        if !self.one_line(&[&room, &reason]) {
            return;
        }
        self.send(trailing(format!("PART {room}"), &reason));
    }

    /// `TOPIC <room>` asks; `TOPIC <room> :<topic>` sets (an empty one clears).
    pub(super) fn command_topic(&mut self, room: Option<String>, topic: Option<String>) {
        let Some(room) = self.room_for(room, "show the topic of") else {
            return;
        };
        let text = topic.clone().unwrap_or_default();
        if !self.one_line(&[&room, &text]) {
            return;
        }
        match topic {
            None => self.send(format!("TOPIC {room}")),
            Some(topic) => self.send(format!("TOPIC {room} :{topic}")),
        }
    }

    /// `KICK <room> <name> [:<reason>]`.
    pub(super) fn command_kick(
        &mut self,
        room: Option<String>,
        name: &str,
        reason: Option<String>,
    ) {
        let Some(room) = self.room_for(room, "remove someone from") else {
            return;
        };
        let reason = reason.unwrap_or_default();
        if !self.one_line(&[&room, name, &reason]) {
            return;
        }
        self.send(trailing(format!("KICK {room} {}", name.trim()), &reason));
    }

    /// `MODE <target> <args>` (the current room when no target).
    pub(super) fn command_mode(&mut self, target: Option<String>, args: &str) {
        let Some(target) = self.room_for(target, "change the modes of") else {
            return;
        };
        if !self.one_line(&[&target, args]) {
            return;
        }
        let args = args.trim();
        if args.is_empty() {
            self.send(format!("MODE {target}"));
        } else {
            self.send(format!("MODE {target} {args}"));
        }
    }

    /// `INVITE <name> <room>`.
    pub(super) fn command_invite(&mut self, name: &str, room: Option<String>) {
        let Some(room) = self.room_for(room, "invite someone to") else {
            return;
        };
        if !self.one_line(&[name, &room]) {
            return;
        }
        self.send(format!("INVITE {} {room}", name.trim()));
    }

    /// `OPER <name> :<password>`.
    pub(super) fn command_oper(&mut self, name: &str, password: &str) {
        if self.one_line(&[name, password]) {
            self.send(format!("OPER {} :{password}", name.trim()));
        }
    }

    /// `AWAY :<message>`, or `AWAY` to come back.
    pub(super) fn command_away(&mut self, message: Option<String>) {
        let message = message.unwrap_or_default();
        if self.one_line(&[&message]) {
            self.send(trailing("AWAY".to_owned(), &message));
        }
    }

    /// `WHOIS <name>`.
    pub(super) fn command_whois(&mut self, name: &str) {
        if self.one_line(&[name]) {
            self.send(format!("WHOIS {}", name.trim()));
        }
    }

    /// `@+typing=<state> TAGMSG <current room>`, when the server took `message-tags`: `Active`
    /// at most every [`TYPING_ACTIVE_EVERY_MS`] to the same room, `Paused` and `Done` only
    /// after something else was sent there. Nothing happens without a current room.
    pub(super) fn command_typing(&mut self, now: Millis, state: Typing) {
        let Some(room) = self.room.clone() else {
            return;
        };
        if !self.caps.contains("message-tags") {
            return;
        }
        let key = casefold(&room);
        let due = match (&self.typing_sent, state) {
            (Some((to, last, _)), _) if *to != key => {
                state != Typing::Done || *last != Typing::Done
            }
            (None, Typing::Active) => true,
            (None, _) => false,
            (Some((_, Typing::Active, at)), Typing::Active) => {
                now.since(*at) >= TYPING_ACTIVE_EVERY_MS
            }
            (Some((_, last, _)), state) => *last != state,
        };
        if due {
            self.typing_sent = Some((key, state, now));
            self.send(format!("@+typing={} TAGMSG {room}", state.as_str()));
        }
    }

    /// A message we sent to the current room ends our typing there (receivers take it as
    /// `Done`, so none is sent).
    pub(super) fn typing_done(&mut self, now: Millis) {
        let current = self.room.as_deref().map(casefold);
        if let Some((to, _, _)) = &self.typing_sent
            && Some(to) == current.as_ref()
        {
            self.typing_sent = Some((to.clone(), Typing::Done, now));
        }
    }

    /// `:<who> TAGMSG <target>` with `+typing`: someone's typing state in a room, or in our
    /// direct conversation with them. Our own (echoed) and other tags are not shown.
    pub(super) fn on_tagmsg(&mut self, msg: &Message<'_>, from: &str, target: &str) {
        if self.is_me(from) || msg.source.is_none_or(|s| !s.contains('!')) {
            return;
        }
        let Some(state) = msg
            .tags
            .iter()
            .find(|t| t.key == "+typing")
            .and_then(|t| Typing::parse(&t.value))
        else {
            return;
        };
        let target = if self.is_me(target) { from } else { target };
        self.emit(Event::Typing {
            target: target.to_owned(),
            name: from.to_owned(),
            state,
        });
    }

    /// `:<op> KICK <room> <name> [:<reason>]`: they are out of the room's list; if it is us, we
    /// are out of the room.
    pub(super) fn on_kick(&mut self, by: &str, room: &str, name: &str, reason: Option<&str>) {
        let key = casefold(room);
        if !self.members.contains_key(&key) {
            return;
        }
        self.emit(Event::Kicked {
            room: room.to_owned(),
            name: name.to_owned(),
            by: by.to_owned(),
            reason: reason.unwrap_or("").to_owned(),
        });
        if self.is_me(name) {
            self.leave_room(room);
        } else if let Some(list) = self.members.get_mut(&key) {
            list.retain(|m| !same_name(&m.name, name));
            self.emit_members(room);
        }
    }

    /// `:<who> INVITE <name> <room>`: to us, or (`invite-notify`) to someone else.
    pub(super) fn on_invite(&mut self, by: &str, name: &str, room: &str) {
        self.emit(Event::Invited {
            room: room.to_owned(),
            name: name.to_owned(),
            by: by.to_owned(),
        });
    }

    /// `:<who> MODE <target> <changes> [<args>…]`: reported as it reads; status changes
    /// (`+o bob`, `-v carol`) update the room's member list.
    pub(super) fn on_mode(&mut self, by: &str, p: &[&str]) {
        let target = p[0];
        self.emit(Event::ModeChanged {
            target: target.to_owned(),
            by: by.to_owned(),
            change: p[1..].join(" "),
        });
        let key = casefold(target);
        if !self.members.contains_key(&key) {
            return;
        }
        let mut args = p[2..].iter();
        let mut adding = true;
        let mut changed = false;
        for mode in p[1].chars() {
            let status = self
                .prefixes
                .iter()
                .find(|(m, _)| *m == mode)
                .map(|&(_, p)| p);
            match (mode, status) {
                ('+', _) => adding = true,
                ('-', _) => adding = false,
                (_, Some(prefix)) => {
                    let Some(name) = args.next() else { break };
                    changed |= self.set_status(&key, name, prefix, adding);
                }
                _ if self.chanmodes[0].contains(mode) || self.chanmodes[1].contains(mode) => {
                    args.next();
                }
                _ if adding && self.chanmodes[2].contains(mode) => {
                    args.next();
                }
                _ => {}
            }
        }
        if changed {
            self.emit_members(target);
        }
    }

    /// Gives or takes `prefix` of member `name` of room `key`, keeping the prefixes in the
    /// server's order. Whether anything changed.
    fn set_status(&mut self, key: &str, name: &str, prefix: char, on: bool) -> bool {
        let order: Vec<char> = self.prefixes.iter().map(|&(_, p)| p).collect();
        let Some(member) = self
            .members
            .get_mut(key)
            .and_then(|list| list.iter_mut().find(|m| same_name(&m.name, name)))
        else {
            return false;
        };
        if member.prefixes.contains(prefix) == on {
            return false;
        }
        let mut have: Vec<char> = member.prefixes.chars().filter(|&c| c != prefix).collect();
        if on {
            have.push(prefix);
        }
        member.prefixes = order.iter().filter(|c| have.contains(c)).collect();
        true
    }

    /// `005`: the server's status prefixes (`PREFIX=(ov)@+`) and room modes
    /// (`CHANMODES=beI,k,l,imnst`), which say how to read `MODE` and `353`.
    pub(super) fn on_isupport(&mut self, p: &[&str]) {
        for token in p.iter().skip(1).take(p.len().saturating_sub(2)) {
            if let Some(value) = token.strip_prefix("PREFIX=") {
                let parsed = value
                    .strip_prefix('(')
                    .and_then(|v| v.split_once(')'))
                    .filter(|(modes, prefixes)| modes.chars().count() == prefixes.chars().count());
                if let Some((modes, prefixes)) = parsed {
                    self.prefixes = modes.chars().zip(prefixes.chars()).collect();
                }
            } else if let Some(value) = token.strip_prefix("CHATHISTORY=") {
                // 0 is "no limit"; ours stays a page then.
                if let Ok(max) = value.parse::<usize>()
                    && max > 0
                {
                    self.history_max = max.min(1000);
                }
            } else if let Some(value) = token.strip_prefix("CHANMODES=") {
                let kinds: Vec<&str> = value.split(',').collect();
                if kinds.len() >= 4 {
                    for (slot, kind) in self.chanmodes.iter_mut().zip(kinds) {
                        *slot = kind.to_owned();
                    }
                }
            }
        }
    }

    /// A member as a `353` lists them: the server's status prefixes, then the name.
    pub(super) fn member_of(&self, listed: &str) -> Member {
        let name = listed.trim_start_matches(|c| self.prefixes.iter().any(|&(_, p)| p == c));
        Member {
            name: name.to_owned(),
            prefixes: listed[..listed.len() - name.len()].to_owned(),
        }
    }

    /// The replies worth showing to the commands above (and to `/quote`d ones): what they say,
    /// in words. Others (the welcome's counts, `WHO` lines, ends of lists) are not shown.
    pub(super) fn on_info_numeric(&mut self, code: &str, p: &[&str]) {
        let at = |i: usize| p.get(i).copied().unwrap_or("");
        let last = p.last().copied().unwrap_or("");
        let text = match code {
            RPL_UMODEIS => format!("Your modes: {}", at(1)),
            RPL_CHANNELMODEIS => format!(
                "Modes of {}: {}",
                at(1),
                p.get(2..).unwrap_or(&[]).join(" ")
            ),
            RPL_AWAY if p.len() >= 3 => format!("{} is away: {last}", at(1)),
            RPL_UNAWAY | RPL_NOWAWAY | RPL_YOUREOPER | RPL_INFO | RPL_HELPTXT | RPL_LISTEND => {
                last.to_owned()
            }
            RPL_INVITING if p.len() >= 3 => format!("You invited {} to {}", at(1), at(2)),
            RPL_WHOISUSER if p.len() >= 6 => {
                format!("{} is {}@{} ({last})", at(1), at(2), at(3))
            }
            RPL_WHOWASUSER if p.len() >= 6 => {
                format!("{} was {}@{} ({last})", at(1), at(2), at(3))
            }
            RPL_WHOISSERVER if p.len() >= 4 => format!("{} is on {} ({last})", at(1), at(2)),
            RPL_WHOISOPERATOR if p.len() >= 3 => format!("{} is a server operator", at(1)),
            RPL_WHOISBOT if p.len() >= 3 => format!("{} is a bot", at(1)),
            RPL_WHOISIDLE if p.len() >= 4 => format!("{} has been idle {}s", at(1), at(2)),
            RPL_WHOISCHANNELS if p.len() >= 3 => format!("{} is in {last}", at(1)),
            RPL_LIST if p.len() >= 4 => format!("{} ({} people): {last}", at(1), at(2)),
            RPL_BANLIST | RPL_EXCEPTLIST | RPL_INVEXLIST if p.len() >= 3 => {
                let list = match code {
                    RPL_BANLIST => "banned",
                    RPL_EXCEPTLIST => "excepted from bans",
                    _ => "invited by mask",
                };
                format!("{}: {} is {list}", at(1), at(2))
            }
            RPL_ENDOFBANLIST | RPL_ENDOFEXCEPTLIST | RPL_ENDOFINVEXLIST if p.len() >= 3 => {
                format!("{}: {last}", at(1))
            }
            _ => return,
        };
        self.emit(Event::ServerInfo { text });
    }
}

/// `line` with `text` as its last parameter, if there is any text.
fn trailing(line: String, text: &str) -> String {
    if text.is_empty() {
        line
    } else {
        format!("{line} :{text}")
    }
}
