//! Moderating a room: its modes (`MODE #room …`: `+o`/`+v`, bans, `+i`, `+k`, `+l`, `+m`,
//! `+n`, `+s`, `+t`), KICK and INVITE, and the checks JOIN and PRIVMSG make against them. The
//! first member of a new room is its operator; the default room has none but server operators.

use super::commands::Params;
use super::replies::truncate;
use super::state::{Ban, Room};
use super::{ConnId, Server};
use crate::limits::*;
use crate::message::MAX_BODY_LEN;
use crate::names::{casefold, mask_matches};
use crate::numerics::*;
use crate::time::Millis;

/// One mode change as it took effect: `+`/`-`, the letter, its parameter.
type Change = (bool, char, Option<String>);

/// Why a JOIN is refused: the numeric and its text.
pub(super) type Refused = (&'static str, &'static str);

impl Room {
    /// Whether `prefix` (`nick!user@host`) matches one of the room's bans.
    pub(super) fn is_banned(&self, prefix: &str) -> bool {
        let matches = |list: &[Ban]| list.iter().any(|b| mask_matches(&b.mask, prefix));
        matches(&self.modes.bans) && !matches(&self.modes.excepts)
    }

    /// One of the room's mask lists: bans (`b`), ban exceptions (`e`), invite exceptions (`I`).
    fn list_mut(&mut self, letter: char) -> &mut Vec<Ban> {
        match letter {
            'e' => &mut self.modes.excepts,
            'I' => &mut self.modes.invex,
            _ => &mut self.modes.bans,
        }
    }

    /// Whether member `id` is an operator of the room.
    pub(super) fn is_op(&self, id: ConnId) -> bool {
        self.members.get(&id).is_some_and(|m| m.op)
    }

    /// The modes as `324` shows them: `+nt`, with the key's and limit's values for a member.
    fn mode_string(&self, member: bool) -> (String, Vec<String>) {
        let m = &self.modes;
        let mut letters = String::from("+");
        let mut params = Vec::new();
        for (on, c) in [
            (m.invite_only, 'i'),
            (m.moderated, 'm'),
            (m.no_external, 'n'),
            (m.secret, 's'),
            (m.topic_ops, 't'),
        ] {
            if on {
                letters.push(c);
            }
        }
        if let Some(key) = &m.key {
            letters.push('k');
            params.push(if member { key.clone() } else { "*".into() });
        }
        if let Some(limit) = m.limit {
            letters.push('l');
            params.push(limit.to_string());
        }
        (letters, params)
    }

    /// Whether a connection with `prefix` may join now, or which numeric refuses it. The
    /// invited pass `+i`, `+k`, `+l` and bans.
    pub(super) fn may_join(
        &self,
        id: ConnId,
        prefix: &str,
        key: Option<&str>,
    ) -> Result<(), Refused> {
        let m = &self.modes;
        if m.invited.contains(&id) {
            return Ok(());
        }
        if self.is_banned(prefix) {
            return Err((
                ERR_BANNEDFROMCHAN,
                "Cannot join channel (+b): you are banned",
            ));
        }
        if m.invite_only && !m.invex.iter().any(|b| mask_matches(&b.mask, prefix)) {
            return Err((
                ERR_INVITEONLYCHAN,
                "Cannot join channel (+i): it is invite-only; ask an operator to INVITE you",
            ));
        }
        if m.key.as_deref().is_some_and(|k| Some(k) != key) {
            return Err((
                ERR_BADCHANNELKEY,
                "Cannot join channel (+k): give its key, JOIN <room> <key>",
            ));
        }
        if m.limit.is_some_and(|l| self.members.len() >= l) {
            return Err((ERR_CHANNELISFULL, "Cannot join channel (+l): it is full"));
        }
        Ok(())
    }

    /// Why member (or outsider) `id` with `prefix` may not send to the room, if it may not.
    pub(super) fn may_send(&self, id: ConnId, prefix: &str) -> Result<(), &'static str> {
        let Some(member) = self.members.get(&id) else {
            if self.modes.no_external {
                return Err("Cannot send to channel (+n): you are not in it; join it first");
            }
            if self.is_banned(prefix) {
                return Err("Cannot send to channel (+b): you are banned");
            }
            return Ok(());
        };
        if member.op || member.voice {
            return Ok(());
        }
        if self.modes.moderated {
            return Err("Cannot send to channel (+m): only voiced members may speak");
        }
        if self.is_banned(prefix) {
            return Err("Cannot send to channel (+b): you are banned");
        }
        Ok(())
    }
}

/// A ban mask in full `nick!user@host` form: `bob` → `bob!*@*`, `*@host` → `*!*@host`.
fn full_mask(mask: &str) -> String {
    let (nick_user, host) = match mask.split_once('@') {
        Some((nu, h)) => (nu, if h.is_empty() { "*" } else { h }),
        None if mask.contains('!') => (mask, "*"),
        None if mask.contains('.') || mask.contains(':') => ("*", mask),
        None => (mask, "*"),
    };
    let (nick, user) = match nick_user.split_once('!') {
        Some((n, u)) => (n, if u.is_empty() { "*" } else { u }),
        None => (nick_user, "*"),
    };
    let nick = if nick.is_empty() { "*" } else { nick };
    format!("{nick}!{user}@{host}")
}

/// Whether `key` is a valid room key: 1–23 printable ASCII characters, no space or comma.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

impl Server {
    /// The registered user called `nick`, or `401` to `id`.
    pub(super) fn registered_target(
        &mut self,
        now: Millis,
        id: ConnId,
        nick: &str,
    ) -> Option<ConnId> {
        let target = self.nicks.get(&casefold(nick)).copied();
        let found = target.filter(|&t| self.conns.live(t).registered);
        if found.is_none() {
            self.numeric(now, id, ERR_NOSUCHNICK, &[nick, "No such nick/channel"]);
        }
        found
    }

    /// Room `name`'s key and display name if `id` is in it; else `403` or `442` to `id`.
    fn my_room(&mut self, now: Millis, id: ConnId, name: &str) -> Option<(String, String)> {
        let key = casefold(name);
        let Some(room) = self.rooms.get(&key) else {
            self.numeric(now, id, ERR_NOSUCHCHANNEL, &[name, "No such channel"]);
            return None;
        };
        let room_name = room.name.clone();
        if !room.members.contains_key(&id) {
            let text = "You're not on that channel";
            self.numeric(now, id, ERR_NOTONCHANNEL, &[&room_name, text]);
            return None;
        }
        Some((key, room_name))
    }

    /// `482`: `id` is not an operator of room `room_name`.
    fn not_channel_operator(&mut self, now: Millis, id: ConnId, room_name: &str) {
        let text = "You're not channel operator";
        self.numeric(now, id, ERR_CHANOPRIVSNEEDED, &[room_name, text]);
    }

    /// Whether `id` may moderate room `key`: one of its operators, or a server operator.
    pub(super) fn can_moderate(&self, key: &str, id: ConnId) -> bool {
        self.rooms.get(key).is_some_and(|r| r.is_op(id)) || self.is_oper(id)
    }

    /// `MODE <room> [<modestring> [<params>…]]`
    pub(super) fn on_room_mode(&mut self, now: Millis, id: ConnId, name: &str, p: Params<'_, 1>) {
        let key = casefold(name);
        let Some(room) = self.rooms.get(&key) else {
            return self.numeric(now, id, ERR_NOSUCHCHANNEL, &[name, "No such channel"]);
        };
        let room_name = room.name.clone();
        let Some(modestring) = p.get(1) else {
            let (letters, params) = room.mode_string(room.members.contains_key(&id));
            let created = room.created.as_secs().to_string();
            let mut all: Vec<&str> = vec![&room_name, &letters];
            all.extend(params.iter().map(String::as_str));
            self.numeric(now, id, RPL_CHANNELMODEIS, &all);
            return self.numeric(now, id, RPL_CREATIONTIME, &[&room_name, &created]);
        };
        let mut args = (2..).map_while(|i| p.get(i));
        let may = self.can_moderate(&key, id);
        let mut refused = false;
        let mut changes: Vec<Change> = Vec::new();
        let mut on = true;
        for letter in modestring.chars() {
            match letter {
                '+' => on = true,
                '-' => on = false,
                'b' | 'e' | 'I' => {
                    let Some(mask) = args.next() else {
                        self.send_mask_list(now, id, &key, letter);
                        continue;
                    };
                    if !may {
                        refused = true;
                        continue;
                    }
                    if let Some(change) = self.change_mask(now, id, &key, letter, on, mask) {
                        changes.push(change);
                    }
                }
                'o' | 'v' => {
                    let Some(nick) = args.next() else { continue };
                    if !may {
                        refused = true;
                        continue;
                    }
                    let Some(target) = self.registered_target(now, id, nick) else {
                        continue;
                    };
                    let shown = self.conns.live(target).display_nick().to_owned();
                    let room = self.rooms.get_mut(&key).expect("looked up above");
                    let Some(member) = room.members.get_mut(&target) else {
                        self.numeric(
                            now,
                            id,
                            ERR_USERNOTINCHANNEL,
                            &[&shown, &room_name, "They aren't on that channel"],
                        );
                        continue;
                    };
                    let flag = if letter == 'o' {
                        &mut member.op
                    } else {
                        &mut member.voice
                    };
                    if *flag != on {
                        *flag = on;
                        changes.push((on, letter, Some(shown)));
                    }
                }
                'k' => {
                    let arg = args.next();
                    if !may {
                        refused |= on || arg.is_some();
                        continue;
                    }
                    let room = self.rooms.get_mut(&key).expect("looked up above");
                    if on {
                        let Some(k) = arg.filter(|k| valid_key(k)) else {
                            let text = format!(
                                "Invalid key: 1 to {KEY_LEN} characters, no spaces or commas"
                            );
                            // Not echoed: a key is a secret, and an invalid one may be
                            // anything.
                            self.numeric(
                                now,
                                id,
                                ERR_INVALIDMODEPARAM,
                                &[&room_name, "k", "*", &text],
                            );
                            continue;
                        };
                        room.modes.key = Some(k.to_owned());
                        changes.push((true, 'k', Some(k.to_owned())));
                    } else if room.modes.key.take().is_some() {
                        changes.push((false, 'k', Some("*".into())));
                    }
                }
                'l' => {
                    let arg = if on { args.next() } else { None };
                    if !may {
                        refused = true;
                        continue;
                    }
                    let room = self.rooms.get_mut(&key).expect("looked up above");
                    if !on {
                        if room.modes.limit.take().is_some() {
                            changes.push((false, 'l', None));
                        }
                        continue;
                    }
                    match arg.and_then(|a| a.parse::<usize>().ok()).filter(|&l| l > 0) {
                        Some(limit) => {
                            room.modes.limit = Some(limit);
                            changes.push((true, 'l', Some(limit.to_string())));
                        }
                        None => {
                            let shown = truncate(arg.unwrap_or("*"), 20).to_owned();
                            self.numeric(
                                now,
                                id,
                                ERR_INVALIDMODEPARAM,
                                &[
                                    &room_name,
                                    "l",
                                    &shown,
                                    "Invalid limit: give a number of members above 0",
                                ],
                            );
                        }
                    }
                }
                'i' | 'm' | 'n' | 's' | 't' => {
                    if !may {
                        refused = true;
                        continue;
                    }
                    let m = &mut self.rooms.get_mut(&key).expect("looked up above").modes;
                    let flag = match letter {
                        'i' => &mut m.invite_only,
                        'm' => &mut m.moderated,
                        'n' => &mut m.no_external,
                        's' => &mut m.secret,
                        _ => &mut m.topic_ops,
                    };
                    if *flag != on {
                        *flag = on;
                        changes.push((on, letter, None));
                    }
                }
                other => {
                    let shown = other.to_string();
                    self.numeric(
                        now,
                        id,
                        ERR_UNKNOWNMODE,
                        &[&shown, "is an unknown mode char to me"],
                    );
                }
            }
        }
        if refused {
            self.not_channel_operator(now, id, &room_name);
        }
        self.announce_modes(now, id, &key, &changes);
    }

    /// Adds or removes a mask of list `letter` (`b`, `e`, `I`); the change, if it made one.
    fn change_mask(
        &mut self,
        now: Millis,
        id: ConnId,
        key: &str,
        letter: char,
        on: bool,
        mask: &str,
    ) -> Option<Change> {
        let full = full_mask(mask);
        let room = self.rooms.get_mut(key)?;
        let room_name = room.name.clone();
        let list = room.list_mut(letter);
        let found = list
            .iter()
            .position(|b| casefold(&b.mask) == casefold(&full));
        if !on {
            let ban = list.remove(found?);
            return Some((false, letter, Some(ban.mask)));
        }
        if found.is_some() {
            return None;
        }
        if full.len() > BAN_MASK_LEN || full.contains(',') {
            let shown = truncate(&full, BAN_MASK_LEN).to_owned();
            let text = format!("Invalid mask: at most {BAN_MASK_LEN} bytes, no commas");
            let letter = letter.to_string();
            self.numeric(
                now,
                id,
                ERR_INVALIDMODEPARAM,
                &[&room_name, &letter, &shown, &text],
            );
            return None;
        }
        if list.len() >= MAX_BANS {
            let text = format!("Channel list is full ({MAX_BANS} masks); remove one first");
            self.numeric(now, id, ERR_BANLISTFULL, &[&room_name, &full, &text]);
            return None;
        }
        let setter = self.conns.live(id).display_nick().to_owned();
        let room = self.rooms.get_mut(key)?;
        room.list_mut(letter).push(Ban {
            mask: full.clone(),
            setter,
            at: now,
        });
        Some((true, letter, Some(full)))
    }

    /// The entries of the room's list `letter` and its end: bans `367`/`368`, exceptions
    /// `348`/`349`, invite exceptions `346`/`347`.
    fn send_mask_list(&mut self, now: Millis, id: ConnId, key: &str, letter: char) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let name = room.name.clone();
        let entries = room.list_mut(letter).clone();
        let (item, end, text) = match letter {
            'e' => (
                RPL_EXCEPTLIST,
                RPL_ENDOFEXCEPTLIST,
                "End of channel exception list",
            ),
            'I' => (
                RPL_INVEXLIST,
                RPL_ENDOFINVEXLIST,
                "End of channel invite exception list",
            ),
            _ => (RPL_BANLIST, RPL_ENDOFBANLIST, "End of channel ban list"),
        };
        for ban in entries {
            let at = ban.at.as_secs().to_string();
            self.numeric(now, id, item, &[&name, &ban.mask, &ban.setter, &at]);
        }
        self.numeric(now, id, end, &[&name, text]);
    }

    /// Shows `changes` to every member as `MODE` lines from `id`, as many changes per line as
    /// fit in 512 bytes.
    fn announce_modes(&mut self, now: Millis, id: ConnId, key: &str, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let name = room.name.clone();
        let members: Vec<ConnId> = room.members.keys().copied().collect();
        let prefix = self.conns.live(id).prefix.clone();
        // `:prefix MODE #room <letters> <params…>\r\n`
        let fixed = 1 + prefix.len() + " MODE ".len() + name.len() + 1 + 2;
        let mut lines: Vec<(String, Vec<String>)> = Vec::new();
        let mut letters = String::new();
        let mut params: Vec<String> = Vec::new();
        let mut sign: Option<bool> = None;
        let mut used = fixed;
        for (on, letter, param) in changes {
            let cost = 2 + param.as_ref().map_or(0, |p| 1 + p.len());
            if used + cost > MAX_BODY_LEN && !letters.is_empty() {
                lines.push((std::mem::take(&mut letters), std::mem::take(&mut params)));
                (sign, used) = (None, fixed);
            }
            if sign != Some(*on) {
                letters.push(if *on { '+' } else { '-' });
                sign = Some(*on);
            }
            letters.push(*letter);
            params.extend(param.clone());
            used += cost;
        }
        lines.push((letters, params));
        for (letters, params) in lines {
            let mut all: Vec<&str> = vec![&name, &letters];
            all.extend(params.iter().map(String::as_str));
            self.fanout(now, members.iter().copied(), Some(&prefix), "MODE", &all);
        }
    }

    /// `KICK <room> <nick>{,<nick>} [<reason>]`
    pub(super) fn on_kick(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [names] = p.required();
        let Some(nicks) = p.get(1) else {
            return self.numeric(
                now,
                id,
                ERR_NEEDMOREPARAMS,
                &[
                    "KICK",
                    "Not enough parameters: KICK <room> <nick> [<reason>]",
                ],
            );
        };
        // One room and many names, or rooms and names in pairs (RFC 2812).
        let rooms: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
        let nicks: Vec<&str> = nicks.split(',').filter(|n| !n.is_empty()).collect();
        let pairs: Vec<(&str, &str)> = match rooms.as_slice() {
            [one] => nicks.iter().map(|n| (*one, *n)).collect(),
            many => many.iter().copied().zip(nicks.iter().copied()).collect(),
        };
        for (name, nick) in pairs.into_iter().take(MAX_TARGETS) {
            self.kick(now, id, name, nick, p.get(2));
        }
    }

    /// One KICK of `nick` from room `name` by `id`.
    fn kick(&mut self, now: Millis, id: ConnId, name: &str, nick: &str, reason: Option<&str>) {
        let Some((key, room_name)) = self.my_room(now, id, name) else {
            return;
        };
        if !self.can_moderate(&key, id) {
            return self.not_channel_operator(now, id, &room_name);
        }
        let kicker = self.conns.live(id);
        let (prefix, kicker_nick) = (kicker.prefix.clone(), kicker.display_nick().to_owned());
        let reason = reason
            .filter(|r| !r.is_empty())
            .map_or(kicker_nick, |r| truncate(r, KICK_LEN).to_owned());
        let Some(target) = self.registered_target(now, id, nick) else {
            return;
        };
        let shown = self.conns.live(target).display_nick().to_owned();
        let Some(room) = self.rooms.get(&key) else {
            return;
        };
        if !room.members.contains_key(&target) {
            return self.numeric(
                now,
                id,
                ERR_USERNOTINCHANNEL,
                &[&shown, &room_name, "They aren't on that channel"],
            );
        }
        let members: Vec<ConnId> = room.members.keys().copied().collect();
        self.fanout(
            now,
            members.into_iter(),
            Some(&prefix),
            "KICK",
            &[&room_name, &shown, &reason],
        );
        self.leave_room(target, &key);
    }

    /// `INVITE <nick> <room>`
    pub(super) fn on_invite(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [nick] = p.required();
        let Some(name) = p.get(1) else {
            return self.numeric(
                now,
                id,
                ERR_NEEDMOREPARAMS,
                &["INVITE", "Not enough parameters: INVITE <nick> <room>"],
            );
        };
        let Some(target) = self.registered_target(now, id, nick) else {
            return;
        };
        let Some((key, room_name)) = self.my_room(now, id, name) else {
            return;
        };
        let room = &self.rooms[&key];
        if room.modes.invite_only && !self.can_moderate(&key, id) {
            return self.not_channel_operator(now, id, &room_name);
        }
        let peer = self.conns.live(target);
        let (shown, away) = (peer.display_nick().to_owned(), peer.away.clone());
        if room.members.contains_key(&target) {
            return self.numeric(
                now,
                id,
                ERR_USERONCHANNEL,
                &[&shown, &room_name, "is already on channel"],
            );
        }
        let room = self.rooms.get_mut(&key).expect("looked up above");
        if !room.modes.invited.contains(&target) {
            if room.modes.invited.len() >= MAX_INVITES {
                room.modes.invited.remove(0);
            }
            room.modes.invited.push(target);
        }
        let notify: Vec<ConnId> = room
            .members
            .iter()
            .filter(|&(&m, member)| m != id && member.caps.invite_notify())
            .map(|(&m, _)| m)
            .collect();
        let prefix = self.conns.live(id).prefix.clone();
        self.numeric(now, id, RPL_INVITING, &[&shown, &room_name]);
        self.fanout(
            now,
            std::iter::once(target),
            Some(&prefix),
            "INVITE",
            &[&shown, &room_name],
        );
        self.fanout(
            now,
            notify.into_iter(),
            Some(&prefix),
            "INVITE",
            &[&shown, &room_name],
        );
        if let Some(away) = away {
            self.numeric(now, id, RPL_AWAY, &[&shown, &away]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_masks_are_completed() {
        assert_eq!(full_mask("bob"), "bob!*@*");
        assert_eq!(full_mask("bob!x"), "bob!x@*");
        assert_eq!(full_mask("*@10.0.0.1"), "*!*@10.0.0.1");
        assert_eq!(full_mask("10.0.0.1"), "*!*@10.0.0.1");
        assert_eq!(full_mask("bob!*@*"), "bob!*@*");
        assert_eq!(full_mask("!@"), "*!*@*");
    }

    #[test]
    fn keys_are_validated() {
        assert!(valid_key("beer"));
        assert!(!valid_key(""));
        assert!(!valid_key("two words"));
        assert!(!valid_key("a,b"));
        assert!(!valid_key(&"long".repeat(10)));
    }
}
