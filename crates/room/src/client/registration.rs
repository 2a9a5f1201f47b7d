//! Registration: capability negotiation, `PASS`/`NICK`/`USER`, the welcome, and a refused name.
//! A refused name is not an error but a question for the person (another name, please), which
//! is why it is an event and registration simply goes on with the next `NICK`.

use super::{Event, Session};
use crate::limits::NICK_LEN;
use crate::names::casefold;

/// The capabilities the client asks for when the server offers them: it takes groups of
/// lines (`batch`) and the server's history of its conversations (`draft/chathistory`), shows
/// its own messages as the server echoes them (`echo-message`), takes tags on messages
/// (`message-tags`: typing notifications, message ids), sees every status of a room's members
/// (`multi-prefix`: `@+bob`), and stamps messages with the server's clock (`server-time`).
const WANTED_CAPS: &[&str] = &[
    "batch",
    "draft/chathistory",
    "echo-message",
    "message-tags",
    "multi-prefix",
    "server-time",
];

impl Session {
    /// The connection's first lines: `CAP LS` holds registration open until `CAP END`, so the
    /// capabilities are settled before the welcome; `PASS` must precede `NICK`.
    pub(super) fn start(&mut self) {
        self.send("CAP LS 302".to_owned());
        if let Some(pass) = self.config.password.clone() {
            self.send(format!("PASS :{pass}"));
        }
    }

    /// `NICK :<name>`, with `USER <username> 0 * :<realname>` after the first one.
    pub(super) fn command_nick(&mut self, name: &str) {
        let name = name.trim();
        self.send(format!("NICK :{name}"));
        if !self.user_sent {
            self.user_sent = true;
            let (user, real) = (&self.config.username, &self.config.realname);
            let line = format!("USER {user} 0 * :{real}");
            self.send(line);
        }
    }

    /// `CAP * LS :<caps>` → `CAP REQ` what we want (or `CAP END` if none);
    /// `CAP * ACK|NAK :<caps>` → `CAP END` (before registering; a later change needs nothing).
    pub(super) fn on_cap(&mut self, p: &[&str]) {
        let sub = p.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        let caps = p.last().copied().unwrap_or("");
        match sub.as_str() {
            "LS" => {
                let wanted: Vec<&str> = caps
                    .split(' ')
                    .map(|c| c.split('=').next().unwrap_or(""))
                    .filter(|c| WANTED_CAPS.contains(c))
                    .collect();
                if wanted.is_empty() {
                    self.send("CAP END".to_owned());
                } else {
                    self.send(format!("CAP REQ :{}", wanted.join(" ")));
                }
            }
            "ACK" => {
                for cap in caps.split(' ').filter(|c| !c.is_empty()) {
                    match cap.strip_prefix('-') {
                        Some(off) => self.caps.remove(off),
                        None => self.caps.insert(cap.to_owned()),
                    };
                }
                if !self.registered {
                    self.send("CAP END".to_owned());
                }
            }
            "NAK" if !self.registered => self.send("CAP END".to_owned()),
            _ => {}
        }
    }

    /// `:<server> 001 <nick> :<welcome>`: registered under the name the server confirms. Then
    /// join the configured room (Parla has already put us in its default room; this is a no-op
    /// there).
    pub(super) fn on_welcome(&mut self, server: &str, p: &[&str], last: &str) {
        self.registered = true;
        let name = p.first().copied().unwrap_or("").to_owned();
        self.nick = Some(name.clone());
        self.emit(Event::Registered {
            name,
            server: server.to_owned(),
        });
        self.emit(Event::ServerInfo { text: last.into() });
        let mut rooms: Vec<String> = self.config.room.clone().into_iter().collect();
        // A resumed session goes back to its rooms, the current one last.
        for room in self
            .resumed
            .as_ref()
            .map_or(Vec::new(), |r| r.rooms.clone())
        {
            rooms.retain(|r| casefold(r) != casefold(&room));
            rooms.push(room);
        }
        for room in rooms {
            self.send(format!("JOIN {room}"));
        }
    }

    /// `431`/`432`/`433 <me> <name> :<reason>` before registering: ask for another name.
    /// A resumed session does not ask: its name is most likely still held by its own lost
    /// connection (until the server notices that one is gone), so it takes the name with `_`
    /// added (a character more each time) and says so.
    pub(super) fn on_name_refused(&mut self, p: &[&str], last: &str) {
        let name = p.get(1).copied().unwrap_or("").to_owned();
        if let Some(resumed) = &self.resumed
            && !name.is_empty()
            && name.len() < NICK_LEN
        {
            let next = format!("{name}_");
            let text = format!(
                "The name {name} is taken ({last}), probably still by your lost connection until the server notices it is gone. Going on as {next}; /nick {} takes it back once it is free",
                resumed.nick
            );
            self.emit(Event::ServerInfo { text });
            return self.command_nick(&next);
        }
        self.emit(Event::NameRefused {
            name,
            reason: last.into(),
        });
    }
}
