//! The model of moderation, as the README states it: room modes (`MODE #room …`), who may join
//! (`+b`/`+e`, `+i`/`+I` and invitations, `+k`, `+l`) and speak (`+m`, `+v`, `+b`), KICK and
//! INVITE. Written from the rules, not from the server's code.

use super::*;

/// A room's mask list entry: the mask in full `nick!user@host` form, who set it, when.
#[derive(Debug, Clone)]
pub(super) struct Mask {
    pub(super) mask: String,
    pub(super) setter: String,
    pub(super) at: Millis,
}

/// The modes a room has beyond `+n`, `+t` and `+k` (see [`Room`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Modes {
    pub(super) voiced: BTreeSet<u64>,
    pub(super) bans: Vec<Mask>,
    pub(super) excepts: Vec<Mask>,
    pub(super) invex: Vec<Mask>,
    pub(super) invite_only: bool,
    pub(super) moderated: bool,
    pub(super) secret: bool,
    pub(super) limit: Option<usize>,
    /// Who was invited and has not joined since (at most [`MAX_INVITES`], oldest dropped).
    pub(super) invited: Vec<u64>,
}

/// One change as shown in the `MODE` line: on or off, the letter, its parameter.
type Change = (bool, char, Option<String>);

/// `mask` completed to `nick!user@host`: a bare name is `name!*@*`, something with a dot or
/// colon (an address) is `*!*@address`, and missing parts are `*`.
pub(super) fn full_mask(mask: &str) -> String {
    let (left, host) = match mask.split_once('@') {
        Some((l, h)) => (l, h),
        None if !mask.contains('!') && mask.contains(['.', ':']) => ("*", mask),
        None => (mask, "*"),
    };
    let (nick, user) = left.split_once('!').unwrap_or((left, "*"));
    let or_star = |s: &str| {
        if s.is_empty() {
            "*".to_owned()
        } else {
            s.to_owned()
        }
    };
    format!("{}!{}@{}", or_star(nick), or_star(user), or_star(host))
}

impl Room {
    fn list(&mut self, letter: char) -> &mut Vec<Mask> {
        match letter {
            'e' => &mut self.modes.excepts,
            'I' => &mut self.modes.invex,
            _ => &mut self.modes.bans,
        }
    }

    /// Banned (and not excepted).
    pub(super) fn bans(&self, prefix: &str) -> bool {
        let hit = |list: &[Mask]| list.iter().any(|m| glob(&m.mask, prefix));
        hit(&self.modes.bans) && !hit(&self.modes.excepts)
    }

    /// The refusal of a `JOIN` by `id` with `prefix` giving `key`, if refused.
    pub(super) fn refuses_join(
        &self,
        id: u64,
        prefix: &str,
        key: Option<&str>,
    ) -> Option<&'static str> {
        let m = &self.modes;
        if m.invited.contains(&id) {
            return None;
        }
        if self.bans(prefix) {
            return Some("474");
        }
        if m.invite_only && !m.invex.iter().any(|i| glob(&i.mask, prefix)) {
            return Some("473");
        }
        if self.key.as_deref().is_some_and(|k| Some(k) != key) {
            return Some("475");
        }
        if m.limit.is_some_and(|l| self.members.len() >= l) {
            return Some("471");
        }
        None
    }

    /// Whether `id` with `prefix` may send to the room.
    pub(super) fn may_send(&self, id: u64, prefix: &str) -> bool {
        if !self.members.contains(&id) {
            return !self.no_external && !self.bans(prefix);
        }
        if self.ops.contains(&id) || self.modes.voiced.contains(&id) {
            return true;
        }
        !self.modes.moderated && !self.bans(prefix)
    }

    /// Member `m`'s status as shown: `@`, `+`, both with `multi-prefix`, or nothing.
    pub(super) fn status(&self, m: u64, all: bool) -> &'static str {
        match (self.ops.contains(&m), self.modes.voiced.contains(&m)) {
            (true, true) if all => "@+",
            (true, _) => "@",
            (false, true) => "+",
            _ => "",
        }
    }

    /// Whether `id` may see that the room exists (`+s` hides it from outsiders).
    pub(super) fn visible_to(&self, id: u64) -> bool {
        !self.modes.secret || self.members.contains(&id)
    }
}

impl Model {
    /// `MODE #room [<changes> [<args>…]]`.
    pub(super) fn room_mode(
        &mut self,
        now: Millis,
        id: u64,
        target: &str,
        p: &[&str],
        owed: &mut Owed,
    ) {
        let key = fold(target);
        let Some(room) = self.rooms.get(&key) else {
            return self.numeric(owed, id, "403", &[target, ANY]);
        };
        let name = room.name.clone();
        let Some(changes) = p.first() else {
            let m = &room.modes;
            let mut letters = String::from("+");
            for (on, c) in [
                (m.invite_only, 'i'),
                (m.moderated, 'm'),
                (room.no_external, 'n'),
                (m.secret, 's'),
                (room.topic_ops, 't'),
            ] {
                if on {
                    letters.push(c);
                }
            }
            let mut params = vec![name.clone()];
            let mut values = Vec::new();
            if let Some(k) = &room.key {
                letters.push('k');
                values.push(if room.members.contains(&id) {
                    k.clone()
                } else {
                    "*".into()
                });
            }
            if let Some(l) = m.limit {
                letters.push('l');
                values.push(l.to_string());
            }
            params.push(letters);
            params.extend(values);
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            self.numeric(owed, id, "324", &params);
            let created = room.created.map(|t| t.as_secs().to_string());
            return self.numeric(owed, id, "329", &[&name, created.as_deref().unwrap_or(ANY)]);
        };
        let may = self.may_moderate(&key, id);
        let mut args = p[1..].iter().copied();
        let (mut on, mut refused) = (true, false);
        let mut done: Vec<Change> = Vec::new();
        for letter in changes.chars() {
            match letter {
                '+' | '-' => on = letter == '+',
                'b' | 'e' | 'I' => {
                    let Some(mask) = args.next() else {
                        self.mask_list(id, &key, letter, owed);
                        continue;
                    };
                    if !may {
                        refused = true;
                        continue;
                    }
                    let full = full_mask(mask);
                    let setter = self.conns[&id].shown();
                    let room = self.rooms.get_mut(&key).expect("looked up");
                    let list = room.list(letter);
                    let at = list.iter().position(|m| fold(&m.mask) == fold(&full));
                    match (on, at) {
                        (false, Some(i)) => done.push((false, letter, Some(list.remove(i).mask))),
                        (false, None) | (true, Some(_)) => {}
                        (true, None) if full.len() > BAN_MASK_LEN || full.contains(',') => {
                            let shown = cut(&full, BAN_MASK_LEN).to_owned();
                            let l = letter.to_string();
                            self.numeric(owed, id, "696", &[&name, &l, &shown, ANY]);
                        }
                        (true, None) if list.len() >= MAX_BANS => {
                            self.numeric(owed, id, "478", &[&name, &full, ANY]);
                        }
                        (true, None) => {
                            list.push(Mask {
                                mask: full.clone(),
                                setter,
                                at: now,
                            });
                            done.push((true, letter, Some(full)));
                        }
                    }
                }
                'o' | 'v' => {
                    let Some(nick) = args.next() else { continue };
                    if !may {
                        refused = true;
                        continue;
                    }
                    let Some(shown) = self.registered_holder(nick).map(Conn::shown) else {
                        self.numeric(owed, id, "401", &[nick, ANY]);
                        continue;
                    };
                    let who = self.nicks[&fold(nick)];
                    let room = self.rooms.get_mut(&key).expect("looked up");
                    if !room.members.contains(&who) {
                        self.numeric(owed, id, "441", &[&shown, &name, ANY]);
                        continue;
                    }
                    let set = if letter == 'o' {
                        &mut room.ops
                    } else {
                        &mut room.modes.voiced
                    };
                    let changed = if on {
                        set.insert(who)
                    } else {
                        set.remove(&who)
                    };
                    if changed {
                        done.push((on, letter, Some(shown)));
                    }
                }
                'k' => {
                    let arg = args.next();
                    if !may {
                        refused |= on || arg.is_some();
                        continue;
                    }
                    let room = self.rooms.get_mut(&key).expect("looked up");
                    if !on {
                        if room.key.take().is_some() {
                            done.push((false, 'k', Some("*".into())));
                        }
                        continue;
                    }
                    let valid = arg.filter(|k| {
                        !k.is_empty()
                            && k.len() <= KEY_LEN
                            && k.bytes().all(|b| b.is_ascii_graphic() && b != b',')
                    });
                    match valid {
                        Some(k) => {
                            room.key = Some(k.to_owned());
                            done.push((true, 'k', Some(k.to_owned())));
                        }
                        None => self.numeric(owed, id, "696", &[&name, "k", "*", ANY]),
                    }
                }
                'l' => {
                    let arg = if on { args.next() } else { None };
                    if !may {
                        refused = true;
                        continue;
                    }
                    let room = self.rooms.get_mut(&key).expect("looked up");
                    if !on {
                        if room.modes.limit.take().is_some() {
                            done.push((false, 'l', None));
                        }
                        continue;
                    }
                    match arg.and_then(|a| a.parse::<usize>().ok()).filter(|&n| n > 0) {
                        Some(n) => {
                            room.modes.limit = Some(n);
                            done.push((true, 'l', Some(n.to_string())));
                        }
                        None => {
                            let shown = cut(arg.unwrap_or("*"), 20).to_owned();
                            self.numeric(owed, id, "696", &[&name, "l", &shown, ANY]);
                        }
                    }
                }
                'i' | 'm' | 'n' | 's' | 't' => {
                    if !may {
                        refused = true;
                        continue;
                    }
                    let room = self.rooms.get_mut(&key).expect("looked up");
                    let flag = match letter {
                        'i' => &mut room.modes.invite_only,
                        'm' => &mut room.modes.moderated,
                        'n' => &mut room.no_external,
                        's' => &mut room.modes.secret,
                        _ => &mut room.topic_ops,
                    };
                    if std::mem::replace(flag, on) != on {
                        done.push((on, letter, None));
                    }
                }
                other => self.numeric(owed, id, "472", &[&other.to_string(), ANY]),
            }
        }
        if refused {
            self.numeric(owed, id, "482", &[&name, ANY]);
        }
        self.show_modes(id, &key, &done, owed);
    }

    /// The entries of list `letter` of room `key`, then its end.
    fn mask_list(&self, id: u64, key: &str, letter: char, owed: &mut Owed) {
        let room = &self.rooms[key];
        let (list, item, end) = match letter {
            'e' => (&room.modes.excepts, "348", "349"),
            'I' => (&room.modes.invex, "346", "347"),
            _ => (&room.modes.bans, "367", "368"),
        };
        for m in list {
            let at = m.at.as_secs().to_string();
            self.numeric(owed, id, item, &[&room.name, &m.mask, &m.setter, &at]);
        }
        self.numeric(owed, id, end, &[&room.name, ANY]);
    }

    /// The changes, to every member, from `id`: as many per `MODE` line as 512 bytes hold,
    /// signs written where they switch.
    fn show_modes(&self, id: u64, key: &str, done: &[Change], owed: &mut Owed) {
        if done.is_empty() {
            return;
        }
        let room = &self.rooms[key];
        let prefix = self.conns[&id].prefix();
        let head = format!(":{prefix} MODE {} \r\n", room.name).len();
        let mut lines: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
        let (mut sign, mut used) = (None, head);
        for (on, letter, param) in done {
            let cost = 2 + param.as_ref().map_or(0, |p| p.len() + 1);
            let (letters, _) = lines.last().expect("one at least");
            if used + cost > MAX_BODY_LEN && !letters.is_empty() {
                lines.push((String::new(), Vec::new()));
                (sign, used) = (None, head);
            }
            let (letters, params) = lines.last_mut().expect("one at least");
            if sign != Some(*on) {
                letters.push(if *on { '+' } else { '-' });
                sign = Some(*on);
            }
            letters.push(*letter);
            params.extend(param.clone());
            used += cost;
        }
        for (letters, params) in &lines {
            let mut all = vec![room.name.as_str(), letters.as_str()];
            all.extend(params.iter().map(String::as_str));
            for &m in &room.members {
                owed.line(m, Some(&prefix), "MODE", &all);
            }
        }
    }

    /// `KICK <room>{,<room>} <nick>{,<nick>} [<reason>]`: one room and several names, or pairs.
    pub(super) fn kick(&mut self, id: u64, p: &[&str], owed: &mut Owed) {
        let Some(nicks) = p.get(1) else {
            return self.numeric(owed, id, "461", &["KICK", ANY]);
        };
        let rooms: Vec<&str> = p[0].split(',').filter(|r| !r.is_empty()).collect();
        let nicks: Vec<&str> = nicks.split(',').filter(|n| !n.is_empty()).collect();
        let pairs: Vec<(&str, &str)> = if rooms.len() == 1 {
            nicks.iter().map(|n| (rooms[0], *n)).collect()
        } else {
            rooms.iter().copied().zip(nicks.iter().copied()).collect()
        };
        for (room, nick) in pairs.into_iter().take(MAX_TARGETS) {
            self.kick_one(id, room, nick, p.get(2).copied(), owed);
        }
    }

    /// Room `name`'s key and name as shown, if `id` is in it; else `403` or `442`.
    fn my_room(&self, id: u64, name: &str, owed: &mut Owed) -> Option<(String, String)> {
        let key = fold(name);
        let Some(room) = self.rooms.get(&key) else {
            self.numeric(owed, id, "403", &[name, ANY]);
            return None;
        };
        if !room.members.contains(&id) {
            self.numeric(owed, id, "442", &[&room.name, ANY]);
            return None;
        }
        Some((key, room.name.clone()))
    }

    fn kick_one(&mut self, id: u64, name: &str, nick: &str, reason: Option<&str>, owed: &mut Owed) {
        let Some((key, room_name)) = self.my_room(id, name, owed) else {
            return;
        };
        if !self.may_moderate(&key, id) {
            return self.numeric(owed, id, "482", &[&room_name, ANY]);
        }
        let kicker = &self.conns[&id];
        let (prefix, kicker_nick) = (kicker.prefix(), kicker.shown());
        let reason = match reason {
            Some(r) if !r.is_empty() => cut(r, KICK_LEN).to_owned(),
            _ => kicker_nick,
        };
        let Some(shown) = self.registered_holder(nick).map(Conn::shown) else {
            return self.numeric(owed, id, "401", &[nick, ANY]);
        };
        let who = self.nicks[&fold(nick)];
        let room = &self.rooms[&key];
        if !room.members.contains(&who) {
            return self.numeric(owed, id, "441", &[&shown, &room_name, ANY]);
        }
        for &m in &room.members {
            owed.line(m, Some(&prefix), "KICK", &[&room_name, &shown, &reason]);
        }
        self.leave_room(who, &key);
    }

    /// `INVITE <nick> <room>`.
    pub(super) fn invite(&mut self, id: u64, p: &[&str], owed: &mut Owed) {
        let Some(name) = p.get(1) else {
            return self.numeric(owed, id, "461", &["INVITE", ANY]);
        };
        let Some(guest) = self.registered_holder(p[0]) else {
            return self.numeric(owed, id, "401", &[p[0], ANY]);
        };
        let (shown, away) = (guest.shown(), guest.away.clone());
        let who = self.nicks[&fold(p[0])];
        let Some((key, room_name)) = self.my_room(id, name, owed) else {
            return;
        };
        let room = &self.rooms[&key];
        if room.modes.invite_only && !self.may_moderate(&key, id) {
            return self.numeric(owed, id, "482", &[&room_name, ANY]);
        }
        if room.members.contains(&who) {
            return self.numeric(owed, id, "443", &[&shown, &room_name, ANY]);
        }
        let room = self.rooms.get_mut(&key).expect("looked up");
        let invited = &mut room.modes.invited;
        if !invited.contains(&who) {
            if invited.len() >= MAX_INVITES {
                invited.remove(0);
            }
            invited.push(who);
        }
        let prefix = self.conns[&id].prefix();
        self.numeric(owed, id, "341", &[&shown, &room_name]);
        owed.line(who, Some(&prefix), "INVITE", &[&shown, &room_name]);
        // Members who asked for invite-notify see it too.
        for &m in &self.rooms[&key].members {
            if m != id && self.conns[&m].caps.contains("invite-notify") {
                owed.line(m, Some(&prefix), "INVITE", &[&shown, &room_name]);
            }
        }
        if let Some(away) = away {
            self.numeric(owed, id, "301", &[&shown, &away]);
        }
    }
}

/// A multiline message being received (`draft/multiline`), as the model follows it.
#[derive(Debug, Clone)]
pub(super) struct Batch {
    reference: String,
    target: String,
    verb: Option<String>,
    lines: Vec<String>,
    bytes: usize,
    labelled: bool,
    failed: bool,
}

impl Model {
    /// `BATCH +ref draft/multiline target` and `BATCH -ref`. Whether the line's label was
    /// taken (by a batch it opened: the message answers it when sent).
    pub(super) fn batch(
        &mut self,
        now: Millis,
        id: u64,
        p: &[&str],
        labelled: bool,
        owed: &mut Owed,
    ) -> bool {
        let fail = |m: &Model, owed: &mut Owed, code: &str| {
            m.server_line(owed, id, "FAIL", &["BATCH", code, ANY]);
        };
        if let Some(reference) = p[0].strip_prefix('+') {
            if p.get(1) != Some(&"draft/multiline") {
                fail(self, owed, "UNKNOWN_TYPE");
                return false;
            }
            let caps = &self.conns[&id].caps;
            if !(caps.contains("draft/multiline") && caps.contains("batch")) {
                fail(self, owed, "MULTILINE_INVALID");
                return false;
            }
            let Some(target) = p.get(2).filter(|t| !t.is_empty()) else {
                fail(self, owed, "MULTILINE_INVALID");
                return false;
            };
            self.conns.get_mut(&id).expect("live").batch = Some(Batch {
                reference: reference.to_owned(),
                target: (*target).to_owned(),
                verb: None,
                lines: Vec::new(),
                bytes: 0,
                labelled,
                failed: false,
            });
            return labelled;
        }
        let reference = p[0].strip_prefix('-').unwrap_or(p[0]);
        let c = self.conns.get_mut(&id).expect("live");
        match c.batch.take() {
            Some(b) if b.reference == reference => {
                if !b.failed {
                    self.send_batch(now, id, b, owed);
                }
            }
            other => {
                c.batch = other;
                fail(self, owed, "MULTILINE_INVALID");
            }
        }
        false
    }

    /// A line tagged `batch=<reference>`: one more line of the open multiline message, or a
    /// refusal that drops the message.
    pub(super) fn batched_line(
        &mut self,
        id: u64,
        reference: &str,
        concat: bool,
        verb: &str,
        p: &[&str],
        owed: &mut Owed,
    ) {
        let (max_lines, max_bytes) = (
            self.settings.multiline_max_lines,
            self.settings.multiline_max_bytes,
        );
        let c = self.conns.get_mut(&id).expect("live");
        let Some(b) = c.batch.as_mut().filter(|b| b.reference == reference) else {
            return self.server_line(owed, id, "FAIL", &["BATCH", "MULTILINE_INVALID", ANY]);
        };
        if b.failed {
            return;
        }
        let verb = verb.to_ascii_uppercase();
        let text = p.get(1).copied().unwrap_or("");
        let wrong = !matches!(verb.as_str(), "PRIVMSG" | "NOTICE")
            || b.verb.as_deref().is_some_and(|v| v != verb)
            || p.first().is_none_or(|t| fold(t) != fold(&b.target));
        let refusal: Option<Vec<String>> = if wrong || (concat && text.is_empty()) {
            Some(vec!["MULTILINE_INVALID".into()])
        } else if b.lines.len() >= max_lines {
            Some(vec!["MULTILINE_MAX_LINES".into(), max_lines.to_string()])
        } else if b.bytes + text.len() > max_bytes {
            Some(vec!["MULTILINE_MAX_BYTES".into(), max_bytes.to_string()])
        } else {
            None
        };
        if let Some(refusal) = refusal {
            b.failed = true;
            let mut params = vec!["BATCH"];
            params.extend(refusal.iter().map(String::as_str));
            params.push(ANY);
            return self.server_line(owed, id, "FAIL", &params);
        }
        b.verb = Some(verb);
        b.bytes += text.len();
        b.lines.push(text.to_owned());
    }

    /// A complete multiline message: to those with `draft/multiline` and `batch` as a batch
    /// (`BATCH +<any> draft/multiline <target>`, its lines, `BATCH -<any>`), to the others as its
    /// non-blank lines; an `ACK` for a label when the sender gets nothing back.
    fn send_batch(&mut self, now: Millis, id: u64, b: Batch, owed: &mut Owed) {
        let server = self.settings.server_name.clone();
        let ack = |owed: &mut Owed| {
            if b.labelled {
                owed.line(id, Some(&server), "ACK", &[]);
            }
        };
        let Some(verb) = b.verb.clone() else {
            return ack(owed);
        };
        let notice = verb == "NOTICE";
        let c = self.conns.get_mut(&id).expect("live");
        if !notice {
            c.last_spoke = now;
        }
        let (prefix, echo) = (c.prefix(), c.caps.contains("echo-message"));
        let longest = b.lines.iter().map(String::len).max().unwrap_or(0);
        let relayed = format!(":{prefix} {verb} {} :\r\n", b.target).len() + longest;
        if relayed > MAX_BODY_LEN {
            return self.numeric(owed, id, "417", &[ANY]);
        }
        let (name, mut to): (String, Vec<u64>) = if b.target.starts_with('#') {
            let Some(room) = self.rooms.get(&fold(&b.target)) else {
                if !notice {
                    self.numeric(owed, id, "403", &[&b.target, ANY]);
                }
                return ack(owed);
            };
            if !room.may_send(id, &prefix) {
                if !notice {
                    self.numeric(owed, id, "404", &[&room.name, ANY]);
                }
                return ack(owed);
            }
            let to = room
                .members
                .iter()
                .copied()
                .filter(|&m| echo || m != id)
                .collect();
            (room.name.clone(), to)
        } else {
            let Some(peer) = self.registered_holder(&b.target) else {
                if !notice {
                    self.numeric(owed, id, "401", &[&b.target, ANY]);
                }
                return ack(owed);
            };
            (peer.shown(), vec![self.nicks[&fold(&b.target)]])
        };
        if echo && !to.contains(&id) {
            to.push(id);
        }
        // Its id, and the batch's name after it.
        let msgid = self.next_msgid();
        self.msgids += 1;
        let lines = b.lines.clone();
        self.keep(now, id, &verb, &name, &msgid, self.msgids, lines);
        match b.target.starts_with('#') {
            true => self.remember_room(&fold(&b.target), msgid, id),
            false => {
                let peer = self.nicks[&fold(&b.target)];
                self.remember_direct(msgid, id, peer);
            }
        }
        for &who in &to {
            let caps = &self.conns[&who].caps;
            if caps.contains("draft/multiline") && caps.contains("batch") {
                owed.line(
                    who,
                    Some(&prefix),
                    "BATCH",
                    &[ANY, "draft/multiline", &name],
                );
                for line in &b.lines {
                    owed.line(who, Some(&prefix), &verb, &[&name, line]);
                }
                owed.line(who, Some(&prefix), "BATCH", &[ANY]);
            } else {
                for line in b.lines.iter().filter(|l| !l.is_empty()) {
                    owed.line(who, Some(&prefix), &verb, &[&name, line]);
                }
            }
        }
        if !to.contains(&id) {
            ack(owed);
        }
    }
}

impl Model {
    /// The next message id, as the server makes them: its start and its counter, in hex.
    pub(super) fn next_msgid(&mut self) -> String {
        self.msgids += 1;
        format!("{:x}-{:x}", self.started.0, self.msgids)
    }

    /// Remembers room `key`'s message `msgid` by `author`, for REDACT (the last `redactable`).
    pub(super) fn remember_room(&mut self, key: &str, msgid: String, author: u64) {
        let max = self.settings.redactable;
        if let Some(room) = self.rooms.get_mut(key).filter(|_| max > 0) {
            if room.recent.len() >= max {
                room.recent.pop_front();
            }
            room.recent.push_back((msgid, author));
        }
    }

    /// Remembers direct message `msgid` from `author` to `to`, for REDACT.
    pub(super) fn remember_direct(&mut self, msgid: String, author: u64, to: u64) {
        let max = self.settings.redactable;
        if max == 0 {
            return;
        }
        if self.direct.len() >= max {
            self.direct.pop_front();
        }
        self.direct.push_back((msgid, author, to));
    }

    /// `REDACT <target> <msgid> [<reason>]`: its author, or in a room its operators, remove a
    /// recent message; the REDACT to those with `draft/message-redaction` among the room's
    /// members, or of the two people.
    pub(super) fn redact(&mut self, id: u64, p: &[&str], owed: &mut Owed) {
        let target = p[0];
        let Some(&msgid) = p.get(1) else {
            return self.numeric(owed, id, "461", &["REDACT", ANY]);
        };
        let reason = p
            .get(2)
            .filter(|r| !r.is_empty())
            .map(|r| cut(r, KICK_LEN).to_owned());
        let fail = |m: &Model, owed: &mut Owed, code: &str, with_id: bool| {
            let mut params = vec!["REDACT", code, target];
            if with_id {
                params.push(msgid);
            }
            params.push(ANY);
            m.server_line(owed, id, "FAIL", &params);
        };
        let told: Vec<u64> = if target.starts_with('#') {
            let key = fold(target);
            if !self
                .rooms
                .get(&key)
                .is_some_and(|r| r.members.contains(&id))
            {
                return fail(self, owed, "INVALID_TARGET", false);
            }
            let may = self.may_moderate(&key, id);
            let room = self.rooms.get_mut(&key).expect("checked");
            let Some(at) = room.recent.iter().position(|(m, _)| m == msgid) else {
                return fail(self, owed, "UNKNOWN_MSGID", true);
            };
            if room.recent[at].1 != id && !may {
                return fail(self, owed, "REDACT_FORBIDDEN", true);
            }
            room.recent.remove(at);
            let room = &self.rooms[&key];
            (room.members.iter().copied())
                .filter(|m| self.conns[m].caps.contains("draft/message-redaction"))
                .collect()
        } else {
            let Some(&peer) = self.nicks.get(&fold(target)) else {
                return fail(self, owed, "INVALID_TARGET", false);
            };
            let found = self.direct.iter().position(|(m, from, to)| {
                m == msgid && ((*from == id && *to == peer) || (*from == peer && *to == id))
            });
            let Some(at) = found else {
                return fail(self, owed, "UNKNOWN_MSGID", true);
            };
            if self.direct[at].1 != id {
                return fail(self, owed, "REDACT_FORBIDDEN", true);
            }
            self.direct.remove(at);
            let mut both = vec![id];
            if peer != id {
                both.push(peer);
            }
            both.retain(|c| {
                self.conns
                    .get(c)
                    .is_some_and(|c| c.caps.contains("draft/message-redaction"))
            });
            both
        };
        self.unkeep(id, target, msgid);
        let prefix = self.conns[&id].prefix();
        let mut params = vec![target, msgid];
        params.extend(reason.as_deref());
        for t in told {
            owed.line(t, Some(&prefix), "REDACT", &params);
        }
    }
}
