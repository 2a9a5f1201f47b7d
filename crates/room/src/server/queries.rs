//! Commands that ask about users and the server (WHO, WHOIS, ISON, USERHOST, VERSION, TIME) or
//! set a user's own state (MODE, AWAY). Clients send them on their own, on join or on a timer,
//! so most answer minimally rather than with an error.

use super::commands::Params;
#[cfg(feature = "deliberate-bugs")]
use super::config::Bug;
use super::replies::truncate;
use super::state::Conn;
use super::{ConnId, Server};
use crate::limits::*;
use crate::names::{casefold, is_channel_name, mask_matches};
use crate::numerics::*;
use crate::time::Millis;

/// A user's modes as `221` shows them: `+`, then `i`, `o`, `w` as set.
fn user_modes(c: &Conn) -> String {
    let mut shown = String::from("+");
    for (on, letter) in [
        (c.bot, 'B'),
        (c.invisible, 'i'),
        (c.oper.is_some(), 'o'),
        (c.wallops, 'w'),
    ] {
        if on {
            shown.push(letter);
        }
    }
    shown
}

impl Server {
    /// `WHO <mask>`: a room's members, or users whose nick matches the mask.
    pub(super) fn on_who(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        let mask = p.get(0).unwrap_or("*");
        let mut rows: Vec<[String; 8]> = Vec::new();
        let all = self.conns.live(id).caps.multi_prefix();
        // room, user, host, nick, flags, real name, seconds idle, server (in a cluster, the
        // one each person is on)
        let row = |room: &str, who: ConnId, c: &Conn, status: &str| -> [String; 8] {
            let away = if c.away.is_some() { "G" } else { "H" };
            let bot = if c.bot { "B" } else { "" };
            let oper = if c.oper.is_some() { "*" } else { "" };
            let flags = format!("{away}{bot}{oper}{status}");
            [
                room.to_owned(),
                c.user.clone().unwrap_or_default(),
                c.host.clone(),
                c.nick.clone().unwrap_or_default(),
                flags,
                c.realname.clone(),
                (now.since(c.last_spoke) / 1000).to_string(),
                self.server_name_of(who),
            ]
        };
        let my_rooms = &self.conns.live(id).rooms;
        if is_channel_name(mask) {
            if let Some(room) = self.rooms.get(&casefold(mask)) {
                let inside = room.members.contains_key(&id);
                for (m, c, member) in room
                    .members
                    .iter()
                    .filter_map(|(&m, member)| Some((m, self.conns.get(m)?, member)))
                {
                    if inside || !(c.invisible || room.modes.secret) {
                        rows.push(row(&room.name, m, c, member.prefixes(all)));
                    }
                }
            }
        } else {
            let all = mask == "*" || mask == "0";
            // `+i` hides a user from masks, not from someone who names it exactly.
            let exact = !mask.contains(['*', '?']);
            for (other, c) in self.conns.iter() {
                let visible =
                    exact || other == id || !c.invisible || !c.rooms.is_disjoint(my_rooms);
                let matches = c.registered
                    && c.nick
                        .as_deref()
                        .is_some_and(|n| all || mask_matches(mask, n));
                if visible && matches {
                    rows.push(row("*", other, c, ""));
                }
            }
        }
        // WHOX: `WHO <mask> %<fields>[,<token>]` answers 354 with just those fields, in the
        // fixed order `tcuihsnfdlaor` (no accounts here: `a` is 0; no op levels: `o` is n/a).
        let whox = p.get(1).and_then(|f| f.strip_prefix('%')).map(|f| {
            let (fields, token) = f.split_once(',').unwrap_or((f, ""));
            let token: String = token.chars().take(3).collect();
            (fields.to_owned(), token)
        });
        for [room, user, host, nick, flags, real, idle, server] in rows {
            let Some((fields, token)) = &whox else {
                let real = format!("0 {real}");
                self.numeric(
                    now,
                    id,
                    RPL_WHOREPLY,
                    &[&room, &user, &host, &server, &nick, &flags, &real],
                );
                continue;
            };
            let mut out: Vec<&str> = Vec::new();
            for field in "tcuihsnfdlaor".chars().filter(|&f| fields.contains(f)) {
                out.push(match field {
                    't' => token.as_str(),
                    'c' => &room,
                    'u' => &user,
                    'i' | 'h' => &host,
                    's' => &server,
                    'n' => &nick,
                    'f' => &flags,
                    'd' => "0",
                    'l' => &idle,
                    'a' => "0",
                    'o' => "n/a",
                    _ => &real,
                });
            }
            if !out.is_empty() {
                self.numeric(now, id, RPL_WHOSPCRPL, &out);
            }
        }
        self.numeric(now, id, RPL_ENDOFWHO, &[mask, "End of WHO list"]);
    }

    /// `WHOIS [<server>] <nick>`
    pub(super) fn on_whois(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [first] = p.required();
        // The nick is the last parameter, after the optional server.
        let nick = p.last().unwrap_or(first);
        let found = self
            .nicks
            .get(&casefold(nick))
            .and_then(|&t| Some((t, self.conns.get(t)?)))
            .filter(|(_, c)| c.registered);
        let Some((target, c)) = found else {
            self.numeric(now, id, ERR_NOSUCHNICK, &[nick, "No such nick/channel"]);
            return self.numeric(now, id, RPL_ENDOFWHOIS, &[nick, "End of /WHOIS list"]);
        };
        let name = c.nick.clone().unwrap_or_default();
        let (user, host, real) = (
            c.user.clone().unwrap_or_default(),
            c.host.clone(),
            c.realname.clone(),
        );
        // Secret rooms only to those who share them.
        let all = self.conns.live(id).caps.multi_prefix();
        let rooms: Vec<String> = c
            .rooms
            .iter()
            .filter_map(|k| self.rooms.get(k))
            .filter(|r| !r.modes.secret || r.members.contains_key(&id))
            .filter_map(|r| {
                let member = r.members.get(&target)?;
                Some(format!("{}{}", member.prefixes(all), r.name))
            })
            .collect();
        let away = c.away.clone();
        let oper = c.oper.is_some();
        let bot = c.bot;
        let idle = (now.since(c.last_spoke) / 1000).to_string();
        let signon = c.connected_at.as_secs().to_string();
        let server = self.server_name_of(target);
        self.numeric(now, id, RPL_WHOISUSER, &[&name, &user, &host, "*", &real]);
        self.numeric_list(now, id, RPL_WHOISCHANNELS, &[&name], &rooms, false);
        self.numeric(
            now,
            id,
            RPL_WHOISSERVER,
            &[&name, &server, "Parla chat server"],
        );
        if oper {
            self.numeric(now, id, RPL_WHOISOPERATOR, &[&name, "is an IRC operator"]);
        }
        if bot {
            let text = format!("is a bot on {}", self.config.network);
            self.numeric(now, id, RPL_WHOISBOT, &[&name, &text]);
        }
        if let Some(away) = away {
            self.numeric(now, id, RPL_AWAY, &[&name, &away]);
        }
        self.numeric(
            now,
            id,
            RPL_WHOISIDLE,
            &[&name, &idle, &signon, "seconds idle, signon time"],
        );
        self.numeric(now, id, RPL_ENDOFWHOIS, &[&name, "End of /WHOIS list"]);
    }

    /// `MODE <nick> [<modestring>]` (a room's modes: [`Server::on_room_mode`]).
    pub(super) fn on_mode(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [target] = p.required();
        let modes = p.get(1);
        if is_channel_name(target) {
            return self.on_room_mode(now, id, target, p);
        }
        let c = self.conns.live_mut(id);
        let me = c.nick.clone().unwrap_or_default();
        if casefold(target) != casefold(&me) {
            return self.numeric(
                now,
                id,
                ERR_USERSDONTMATCH,
                &["Can't view or change mode for other users"],
            );
        }
        let Some(modes) = modes else {
            let shown = user_modes(c);
            return self.numeric(now, id, RPL_UMODEIS, &[&shown]);
        };
        // Each letter that changed something, in order: `+i`, `+w`, `-o` (an operator who
        // gives it up; `+o` comes only from OPER, and is ignored here).
        let (mut adding, mut unknown) = (true, false);
        let mut changes = String::new();
        let mut sign = None;
        let was_invisible = c.invisible;
        for ch in modes.chars() {
            let changed = match ch {
                '+' | '-' => {
                    adding = ch == '+';
                    continue;
                }
                'i' => std::mem::replace(&mut c.invisible, adding) != adding,
                'w' => std::mem::replace(&mut c.wallops, adding) != adding,
                'B' => std::mem::replace(&mut c.bot, adding) != adding,
                'o' => !adding && c.oper.take().is_some(),
                _ => {
                    unknown = true;
                    false
                }
            };
            if changed {
                if sign != Some(adding) {
                    changes.push(if adding { '+' } else { '-' });
                    sign = Some(adding);
                }
                changes.push(ch);
            }
        }
        match (was_invisible, c.invisible) {
            (false, true) => self.invisible_users += 1,
            (true, false) => self.invisible_users -= 1,
            _ => {}
        }
        if !changes.is_empty() {
            let prefix = c.prefix.clone();
            self.fanout(
                now,
                std::iter::once(id),
                Some(&prefix),
                "MODE",
                &[&me, &changes],
            );
        }
        if unknown {
            self.numeric(
                now,
                id,
                ERR_UMODEUNKNOWNFLAG,
                &["Unknown MODE flag; Parla's user modes are +i (invisible), +w (wallops), +B (bot) and +o (operator, from OPER)"],
            );
        }
    }

    /// `AWAY [<text>]`
    pub(super) fn on_away(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        let c = self.conns.live_mut(id);
        match p.get(0).filter(|t| !t.is_empty()) {
            Some(t) => {
                c.away = Some(truncate(t, AWAY_LEN).to_owned());
                self.numeric(
                    now,
                    id,
                    RPL_NOWAWAY,
                    &["You have been marked as being away"],
                );
            }
            None => {
                c.away = None;
                self.numeric(
                    now,
                    id,
                    RPL_UNAWAY,
                    &["You are no longer marked as being away"],
                );
            }
        }
        self.notify_away(now, id, None);
    }

    /// Tells those who share a room with `id` and asked for `away-notify` (or only `to`) that
    /// it is away, with its message, or back.
    pub(super) fn notify_away(&mut self, now: Millis, id: ConnId, to: Option<ConnId>) {
        let c = self.conns.live(id);
        let (prefix, away) = (c.prefix.clone(), c.away.clone());
        let peers: Vec<ConnId> = match to {
            Some(one) => vec![one],
            None => self.peers_and_monitors(id).into_iter().collect(),
        };
        let told = peers
            .into_iter()
            .filter(|&p| self.conns.get(p).is_some_and(|c| c.caps.away_notify()))
            .collect::<Vec<_>>()
            .into_iter();
        match away {
            Some(text) => self.fanout(now, told, Some(&prefix), "AWAY", &[&text]),
            None => self.fanout(now, told, Some(&prefix), "AWAY", &[]),
        }
    }

    /// `SETNAME :<real name>`: to itself, and to those who share a room with it and asked for
    /// `setname`.
    pub(super) fn on_setname(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [name] = p.required();
        if name.is_empty() || name.len() > REALNAME_LEN {
            let text = format!("Real name must be 1 to {REALNAME_LEN} bytes");
            return self.send_server(now, id, "FAIL", &["SETNAME", "INVALID_REALNAME", &text]);
        }
        let c = self.conns.live_mut(id);
        c.realname = name.to_owned();
        let prefix = c.prefix.clone();
        let mut to: Vec<ConnId> = self
            .peers_and_monitors(id)
            .into_iter()
            .filter(|&p| self.conns.get(p).is_some_and(|c| c.caps.setname()))
            .collect();
        to.push(id);
        self.fanout(now, to.into_iter(), Some(&prefix), "SETNAME", &[name]);
    }

    /// `ISON <nick>{ <nick>}`
    pub(super) fn on_ison(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let online: Vec<String> = p
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|n| self.nicks.get(&casefold(n)))
            .filter_map(|&t| self.conns.get(t))
            .filter(|c| c.registered)
            .filter_map(|c| c.nick.clone())
            .collect();
        self.numeric_list(now, id, RPL_ISON, &[], &online, true);
    }

    /// `USERHOST <nick>{ <nick>}` (at most 5)
    pub(super) fn on_userhost(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let replies: Vec<String> = p
            .iter()
            .take(5)
            .filter_map(|n| self.nicks.get(&casefold(n)))
            .filter_map(|&t| self.conns.get(t))
            .filter(|c| c.registered)
            .map(|c| {
                let away = if c.away.is_some() { '-' } else { '+' };
                let (nick, user) = (
                    c.nick.as_deref().unwrap_or(""),
                    c.user.as_deref().unwrap_or(""),
                );
                format!("{nick}={away}{user}@{}", c.host)
            })
            .collect();
        self.numeric_list(now, id, RPL_USERHOST, &[], &replies, true);
    }

    /// `VERSION`: `351`, then the `005` lines again (as ircds do).
    pub(super) fn on_version(&mut self, now: Millis, id: ConnId, _: Params<'_, 0>) {
        let (version, server) = (self.config.version.clone(), self.config.server_name.clone());
        self.numeric(
            now,
            id,
            RPL_VERSION,
            &[&version, &server, "Parla chat server"],
        );
        #[cfg(feature = "deliberate-bugs")]
        if self.config.bug == Some(Bug::PanicInHandler) {
            panic!("deliberate bug: a panic in the VERSION handler");
        }
        self.send_isupport(now, id);
    }

    /// `TIME`
    pub(super) fn on_time(&mut self, now: Millis, id: ConnId, _: Params<'_, 0>) {
        let server = self.config.server_name.clone();
        self.numeric(now, id, RPL_TIME, &[&server, &now.to_human()]);
    }
}
