//! Becoming a user: capability negotiation, PASS, NICK, USER, and the welcome burst that
//! registration ends with. ISUPPORT, LUSERS and MOTD live here because the burst sends them;
//! their commands and VERSION ask for the same lines later.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use super::commands::Params;
use super::replies::truncate;
use super::state::within;
use super::{ConnId, Server};
use crate::limits::*;
use crate::names::{casefold, nick_problem};
use crate::numerics::*;
use crate::time::Millis;

impl Server {
    /// `CAP LS [302]` / `CAP LIST` / `CAP REQ :caps` / `CAP END`
    pub(super) fn on_cap(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [sub] = p.required();
        let c = self.conns.live_mut(id);
        let nick = c.display_nick().to_owned();
        match sub.to_ascii_uppercase().as_str() {
            "LS" => {
                if !c.registered {
                    c.cap_negotiating = true;
                }
                // Values (draft/multiline's limits) only to clients of CAP version 302.
                let v302 = p.get(1).and_then(|v| v.parse::<u32>().ok()) >= Some(302);
                let offered = if v302 {
                    cap_ls(
                        self.config.multiline_max_bytes,
                        self.config.multiline_max_lines,
                    )
                } else {
                    CAPS.join(" ")
                };
                self.send_server(now, id, "CAP", &[&nick, "LS", &offered]);
            }
            "LIST" => {
                let list = c.caps.list();
                self.send_server(now, id, "CAP", &[&nick, "LIST", &list]);
            }
            "REQ" => {
                if !c.registered {
                    c.cap_negotiating = true;
                }
                let requested = p.get(1).unwrap_or("");
                // A request is granted or refused whole (CAP spec): try it on a copy.
                let mut caps = c.caps;
                let ok = !requested.trim().is_empty()
                    && requested.split(' ').filter(|s| !s.is_empty()).all(|cap| {
                        match cap.strip_prefix('-') {
                            Some(name) => caps.set(name, false),
                            None => caps.set(cap, true),
                        }
                    });
                if ok {
                    c.caps = caps;
                    for key in c.rooms.iter() {
                        if let Some(member) =
                            self.rooms.get_mut(key).and_then(|r| r.members.get_mut(&id))
                        {
                            member.caps = caps;
                        }
                    }
                }
                let verdict = if ok { "ACK" } else { "NAK" };
                self.send_server(now, id, "CAP", &[&nick, verdict, requested]);
            }
            "END" => {
                c.cap_negotiating = false;
                self.try_register(now, id);
            }
            _ => self.numeric(
                now,
                id,
                ERR_INVALIDCAPCMD,
                &[sub, "Invalid CAP command; use LS, LIST, REQ or END"],
            ),
        }
    }

    /// `PASS <password>`
    pub(super) fn on_pass(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [password] = p.required();
        let c = self.conns.live_mut(id);
        if c.registered {
            return self.numeric(now, id, ERR_ALREADYREGISTERED, &["You may not reregister"]);
        }
        c.password = Some(password.to_owned());
    }

    /// `NICK <nickname>`
    pub(super) fn on_nick(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        let Some(nick) = p.get(0).filter(|n| !n.is_empty()) else {
            return self.numeric(
                now,
                id,
                ERR_NONICKNAMEGIVEN,
                &["No nickname given; send NICK <name>"],
            );
        };
        if let Some(problem) = nick_problem(nick, self.config.nick_len) {
            let text = format!("Erroneous nickname: it {problem}");
            return self.numeric(now, id, ERR_ERRONEUSNICKNAME, &[nick, &text]);
        }
        let key = self.nick_key(nick);
        if let Some(&holder) = self.nicks.get(&key)
            && holder != id
        {
            return self.numeric(
                now,
                id,
                ERR_NICKNAMEINUSE,
                &[nick, "Nickname is already in use; pick another name"],
            );
        }
        let c = self.conns.live_mut(id);
        if c.nick.as_deref() == Some(nick) {
            return;
        }
        if c.registered
            && let Some(window) = self.config.nick_changes
        {
            let recent = &mut c.recent.get_or_insert_with(Box::default).renames;
            if let Err(wait) = within(window, recent, now) {
                let text = format!(
                    "Nick change too fast: at most {} per {} seconds; wait {wait} seconds",
                    window.count,
                    window.ms / 1000
                );
                return self.numeric(now, id, ERR_NICKTOOFAST, &[nick, &text]);
            }
            recent.push_back(now);
        }
        // A change of case only is the same name: monitors are not told.
        let renamed = c
            .nick
            .as_deref()
            .is_none_or(|old| casefold(old) != casefold(nick));
        if c.registered {
            self.remember_name(now, id);
            if renamed {
                self.notify_monitors(now, id, false);
                self.release_history(now, id);
            }
        }
        let c = self.conns.live_mut(id);
        if let Some(old) = c.nick.replace(nick.to_owned()) {
            let old_key = self.nick_key(&old);
            self.nicks.remove(&old_key);
        }
        self.nicks.insert(key, id);
        let c = self.conns.live(id);
        if !c.registered {
            return self.try_register(now, id);
        }
        // A rename: the user and everyone who shares a room with it see it.
        let old_prefix = c.prefix.clone();
        let mut to: BTreeSet<ConnId> = self.peers(id);
        to.insert(id);
        self.fanout(now, to.iter().copied(), Some(&old_prefix), "NICK", &[nick]);
        let c = self.conns.live_mut(id);
        c.prefix = format!("{nick}!{}@{}", c.user.as_deref().unwrap_or(""), c.host);
        if renamed {
            self.notify_monitors(now, id, true);
            self.claim_history(now, id);
        }
    }

    /// `USER <username> <mode> <unused> :<realname>`
    pub(super) fn on_user(&mut self, now: Millis, id: ConnId, p: Params<'_, 4>) {
        let [username, _mode, _unused, realname] = p.required();
        let c = self.conns.live_mut(id);
        if c.registered {
            return self.numeric(now, id, ERR_ALREADYREGISTERED, &["You may not reregister"]);
        }
        if realname.is_empty() || username.is_empty() {
            return self.numeric(
                now,
                id,
                ERR_NEEDMOREPARAMS,
                &[
                    "USER",
                    "Not enough parameters: USER <username> 0 * :<real name>, neither empty",
                ],
            );
        }
        // No ident lookup: mark the username as unverified with `~`, as ircds do.
        let mut user: String = username
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
            .take(USER_LEN - 1)
            .collect();
        if user.is_empty() {
            user = "user".to_owned();
        }
        c.user = Some(format!("~{user}"));
        c.realname = truncate(realname, REALNAME_LEN).to_owned();
        self.try_register(now, id);
    }

    /// Completes registration once NICK and USER are in and no CAP negotiation is open: checks
    /// the password, then sends the welcome burst and joins the default room.
    pub(super) fn try_register(&mut self, now: Millis, id: ConnId) {
        let c = self.conns.live_mut(id);
        if c.registered || c.cap_negotiating || c.nick.is_none() || c.user.is_none() {
            return;
        }
        if let Some(expected) = &self.config.password
            && c.password.as_deref() != Some(expected.as_str())
        {
            self.numeric(
                now,
                id,
                ERR_PASSWDMISMATCH,
                &["Password incorrect; this server needs the right PASS before NICK and USER"],
            );
            return self.quit(now, id, "Bad password");
        }
        c.registered = true;
        self.users += 1;
        if super::is_local_to(self.cluster, id) {
            self.local_users += 1;
        }
        c.last_spoke = now;
        // From now on liveness pings, not the registration deadline, decide the next wake-up.
        // (In a cluster, only its own server times it.)
        if super::is_local_to(self.cluster, id) {
            c.timer_due = now.plus(self.config.ping_interval_ms);
            self.timers.push(Reverse((c.timer_due, id)));
        }
        let nick = c.nick.clone().expect("checked above");
        c.prefix = format!("{nick}!{}@{}", c.user.as_deref().unwrap_or(""), c.host);
        let prefix = c.prefix.clone();
        let users = self.user_count();
        self.max_users = self.max_users.max(users);

        let cfg = &self.config;
        let (network, server, version) = (
            cfg.network.clone(),
            cfg.server_name.clone(),
            cfg.version.clone(),
        );
        let welcome = format!("Welcome to the {network} IRC network, {prefix}");
        self.numeric(now, id, RPL_WELCOME, &[&welcome]);
        let yourhost = format!("Your host is {server}, running version {version}");
        self.numeric(now, id, RPL_YOURHOST, &[&yourhost]);
        let created = format!("This server was created {}", self.started.to_human());
        self.numeric(now, id, RPL_CREATED, &[&created]);
        self.numeric(
            now,
            id,
            RPL_MYINFO,
            &[&server, &version, "Biow", "beIiklmnostv"],
        );
        self.send_isupport(now, id);
        self.send_lusers(now, id);
        self.send_motd(now, id);
        self.notify_monitors(now, id, true);
        self.claim_history(now, id);
        if let Some(room) = self.config.default_room.clone() {
            self.join(now, id, &room);
        }
    }

    /// `005 RPL_ISUPPORT`: the limits and features a client should adapt to.
    pub(super) fn send_isupport(&mut self, now: Millis, id: ConnId) {
        let cfg = &self.config;
        let tokens = [
            format!("AWAYLEN={AWAY_LEN}"),
            "BOT=B".to_owned(),
            "CASEMAPPING=ascii".to_owned(),
            format!("CHANLIMIT=#:{}", cfg.max_rooms_per_user),
            "CHANMODES=beI,k,l,imnst".to_owned(),
            format!("CHANNELLEN={}", cfg.channel_len),
            format!("CHATHISTORY={}", cfg.chathistory_max),
            "CHANTYPES=#".to_owned(),
            "EXCEPTS=e".to_owned(),
            "INVEX=I".to_owned(),
            format!("KICKLEN={KICK_LEN}"),
            format!("MAXLIST=b:{MAX_BANS},e:{MAX_BANS},I:{MAX_BANS}"),
            format!("MAXTARGETS={MAX_TARGETS}"),
            format!("MONITOR={}", super::monitor::MONITOR_MAX),
            "MODES=4".to_owned(),
            "MSGREFTYPES=msgid,timestamp".to_owned(),
            format!("NETWORK={}", cfg.network),
            format!("NICKLEN={}", cfg.nick_len),
            "PREFIX=(ov)@+".to_owned(),
            "STATUSMSG=@+".to_owned(),
            format!(
                "TARGMAX=PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},JOIN:,PART:,NAMES:,WHOIS:1,KICK:{MAX_TARGETS}"
            ),
            format!("TOPICLEN={}", cfg.topic_len),
            format!("USERLEN={USER_LEN}"),
            "WHOX".to_owned(),
            "UTF8ONLY".to_owned(),
        ];
        for chunk in tokens.chunks(13) {
            let mut params: Vec<&str> = chunk.iter().map(String::as_str).collect();
            params.push("are supported by this server");
            self.numeric(now, id, RPL_ISUPPORT, &params);
        }
    }

    /// `LUSERS`
    pub(super) fn on_lusers(&mut self, now: Millis, id: ConnId, _: Params<'_, 0>) {
        self.send_lusers(now, id);
    }

    fn send_lusers(&mut self, now: Millis, id: ConnId) {
        let users = self.user_count();
        let invisible = self.invisible_users;
        let unknown = self.conns.len() - users;
        let rooms = self.rooms.len();
        let max = self.max_users;
        let servers = self.servers;
        let text = format!(
            "There are {} users and {invisible} invisible on {servers} servers",
            users - invisible
        );
        self.numeric(now, id, RPL_LUSERCLIENT, &[&text]);
        self.numeric(now, id, RPL_LUSEROP, &["0", "operator(s) online"]);
        if unknown > 0 {
            self.numeric(
                now,
                id,
                RPL_LUSERUNKNOWN,
                &[&unknown.to_string(), "unknown connection(s)"],
            );
        }
        self.numeric(
            now,
            id,
            RPL_LUSERCHANNELS,
            &[&rooms.to_string(), "channels formed"],
        );
        let mine = self.local_users;
        let me = format!("I have {mine} clients and {} servers", servers - 1);
        self.numeric(now, id, RPL_LUSERME, &[&me]);
        let (u, m) = (users.to_string(), max.to_string());
        let local = format!("Current local users {mine}, max {max}");
        self.numeric(now, id, RPL_LOCALUSERS, &[&mine.to_string(), &m, &local]);
        let global = format!("Current global users {users}, max {max}");
        self.numeric(now, id, RPL_GLOBALUSERS, &[&u, &m, &global]);
    }

    /// `MOTD`
    pub(super) fn on_motd(&mut self, now: Millis, id: ConnId, _: Params<'_, 0>) {
        self.send_motd(now, id);
    }

    fn send_motd(&mut self, now: Millis, id: ConnId) {
        if self.config.motd.is_empty() {
            return self.numeric(now, id, ERR_NOMOTD, &["MOTD File is missing"]);
        }
        let start = format!("- {} Message of the day - ", self.config.server_name);
        self.numeric(now, id, RPL_MOTDSTART, &[&start]);
        for line in self.config.motd.clone() {
            self.numeric(now, id, RPL_MOTD, &[&format!("- {line}")]);
        }
        self.numeric(now, id, RPL_ENDOFMOTD, &["End of /MOTD command."]);
    }
}
