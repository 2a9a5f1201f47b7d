//! Messages in and out: what people say (`PRIVMSG`, `/me` actions, `NOTICE`) in rooms and
//! directly, and how a long text is cut so that the line the server relays still fits IRC's
//! limit once it has added our full `nick!user@host` prefix. Nothing a person types is cut off.

use super::{Event, Member, MessageKind, Said, Session, same_name};
use crate::limits::{HOST_LEN, MAX_BODY_LEN, NICK_LEN, USER_LEN};
use crate::message::Message;
use crate::names::casefold;

/// The shortest piece a text is split into, whatever the overhead: a very long nick or target
/// still lets a message through, a few bytes at a time rather than not at all (if our own line
/// has room for them).
const MIN_PIECE_LEN: usize = 64;

impl Session {
    /// Say `text` in the current room.
    pub(super) fn command_say(&mut self, text: &str) {
        let Some(room) = self.room.clone() else {
            self.emit(Event::ServerError {
                text: "You are not in a room yet; nothing was sent".into(),
            });
            return;
        };
        self.say(&room, text, false);
    }

    /// `/me text` in the current room; nothing outside one.
    pub(super) fn command_action(&mut self, text: &str) {
        let Some(room) = self.room.clone() else {
            return;
        };
        self.say(&room, text, true);
    }

    /// Sends `text` to `target` (a room or a person) as the pieces [`message_pieces`] cuts it
    /// into: `PRIVMSG <target> :<piece>`, CTCP-framed for an action. Our own messages come back
    /// from the server (`echo-message`); they are shown then, not now.
    pub(super) fn say(&mut self, target: &str, text: &str, action: bool) {
        // Before registering, assume the longest name the server allows.
        let nick = self.nick.clone().unwrap_or_else(|| "x".repeat(NICK_LEN));
        // The planted mutant: `+ "!".len()` as `- "!".len()` in the overhead is a nick two
        // bytes shorter.
        #[cfg(feature = "deliberate-bugs")]
        let nick = match self.config.bug {
            Some(crate::Bug::ClientSplitOffByTwo) => {
                let shorter = nick.len().saturating_sub(2);
                nick.get(..shorter).unwrap_or(&nick).to_owned()
            }
            _ => nick,
        };
        // Our own line fits whatever the pieces' budget for the relayed one: a target whose
        // name (a hostile server's room) leaves too little room gets nothing.
        if own_room(target, action) < MIN_OWN_ROOM {
            self.emit(Event::ServerError {
                text: "That room's name is too long for a message to fit in an IRC line; \
                       nothing was sent"
                    .into(),
            });
            return;
        };
        for chunk in message_pieces(text, &nick, target, action) {
            let line = if action {
                format!("PRIVMSG {target} :\x01ACTION {chunk}\x01")
            } else {
                format!("PRIVMSG {target} :{chunk}")
            };
            self.send(line);
        }
    }

    /// `:<from> PRIVMSG|NOTICE <target> :<text>`, with `server-time` if enabled. The server's
    /// own notices (no `nick!user@host` source) are server information; CTCP other than ACTION
    /// is ignored.
    pub(super) fn on_message(&mut self, msg: &Message<'_>, verb: &str, from: &str, last: &str) {
        let target = msg.params[0];
        let time = msg
            .tags
            .iter()
            .find(|t| t.key == "time")
            .map(|t| t.value.to_string());
        let (text, kind) = match (verb, last.strip_prefix("\x01ACTION ")) {
            ("PRIVMSG", Some(rest)) => (rest.trim_end_matches('\x01'), MessageKind::Action),
            ("PRIVMSG", None) if last.starts_with('\x01') => return,
            ("PRIVMSG", None) => (last, MessageKind::Normal),
            _ => (last, MessageKind::Notice),
        };
        if msg.source.is_none_or(|s| !s.contains('!')) {
            self.emit(Event::ServerInfo { text: text.into() });
            return;
        }
        let said = Said {
            from: from.to_owned(),
            target: target.to_owned(),
            text: text.to_owned(),
            kind,
            own: self.is_me(from),
            time,
            id: msg
                .tags
                .iter()
                .find(|t| t.key == "msgid")
                .map(|t| t.value.to_string()),
        };
        if self.history_batch_takes(msg, &said) {
            return;
        }
        // In a room whose list was left out, whoever speaks is a member we now know.
        let key = casefold(target);
        if self.partial.contains(&key)
            && let Some(list) = self.members.get_mut(&key)
            && !list.iter().any(|m| same_name(&m.name, from))
        {
            list.push(Member::new(from));
            self.emit_members(target);
        }
        if !self.history_holds(&said) {
            self.emit(Event::Message(said));
        }
    }
}

/// The messages `text` goes out as: one per non-blank line, each line split where needed so that
/// the relayed `:nick!~user@host PRIVMSG target :piece` fits IRC's [`MAX_BODY_LEN`] (leaving room
/// for the longest user, [`USER_LEN`], and host, [`HOST_LEN`], which the server adds). Front
/// ends use it to tell the person in advance.
pub fn message_pieces<'a>(text: &'a str, nick: &str, target: &str, action: bool) -> Vec<&'a str> {
    let ctcp = if action { "\x01ACTION \x01".len() } else { 0 };
    let overhead = ":".len()
        + nick.len()
        + "!".len()
        + USER_LEN
        + "@".len()
        + HOST_LEN
        + " PRIVMSG ".len()
        + target.len()
        + " :".len()
        + "\r\n".len()
        + ctcp;
    let budget = (MAX_BODY_LEN.saturating_sub(overhead).max(MIN_PIECE_LEN))
        .min(own_room(target, action))
        .max(MIN_OWN_ROOM);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|line| split_text(line, budget))
        .collect()
}

/// Bytes of text our own `PRIVMSG <target> :<text>` line has room for.
fn own_room(target: &str, action: bool) -> usize {
    let ctcp = if action { "\x01ACTION \x01".len() } else { 0 };
    let fixed = "PRIVMSG ".len() + target.len() + " :".len() + ctcp + "\r\n".len();
    MAX_BODY_LEN.saturating_sub(fixed)
}

/// The least room for text worth sending a line for (and any character fits).
const MIN_OWN_ROOM: usize = 4;

/// Splits `text` into pieces of at most `max` bytes, at spaces where possible and always at
/// character boundaries. Nothing is dropped.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = rest[..cut].rfind(' ').filter(|&i| i > max / 2) {
            cut = space + 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_text_keeps_every_byte_and_respects_the_limit() {
        let text = "héllo wörld ".repeat(100);
        let parts = split_text(&text, 50);
        assert!(parts.iter().all(|p| p.len() <= 50));
        assert_eq!(parts.concat(), text);
        assert_eq!(split_text("short", 50), ["short"]);
        let nospace = "é".repeat(40);
        let parts = split_text(&nospace, 15);
        assert!(parts.iter().all(|p| p.len() <= 15 && !p.is_empty()));
        assert_eq!(parts.concat(), nospace);
    }
}
