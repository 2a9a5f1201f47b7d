//! `draft/message-redaction`: `REDACT <target> <msgid> [<reason>]` removes a recent message.
//! Its author may redact it, and in a room so may the room's operators (and server
//! operators); the `REDACT` goes to those who asked for the capability among the room's
//! members, or the two people of a direct conversation. Only recent messages are known: the
//! last [`Config::redactable`](super::Config::redactable) of each room, and as many direct
//! messages server-wide. A redacted message cannot be redacted again.

use std::collections::VecDeque;

use super::commands::Params;
use super::replies::truncate;
use super::{ConnId, Server};
use crate::history::target_key;
use crate::limits::KICK_LEN;
use crate::names::{casefold, is_channel_name};
use crate::numerics::*;
use crate::time::Millis;

/// Recent direct messages: id, author, recipient; oldest first.
pub(super) type Direct = VecDeque<(Box<str>, ConnId, ConnId)>;

impl Server {
    /// Remembers message `msgid` by `author` to room `key`, for `REDACT`.
    pub(super) fn remember_room_message(&mut self, key: &str, msgid: &str, author: ConnId) {
        let max = self.config.redactable;
        if let Some(room) = self.rooms.get_mut(key) {
            push_bounded(&mut room.recent, max, (msgid.into(), author));
        }
    }

    /// Remembers direct message `msgid` from `author` to `to`, for `REDACT`.
    pub(super) fn remember_direct_message(&mut self, msgid: &str, author: ConnId, to: ConnId) {
        let max = self.config.redactable;
        push_bounded(&mut self.recent_direct, max, (msgid.into(), author, to));
    }

    /// `REDACT <target> <msgid> [<reason>]`
    pub(super) fn on_redact(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [target] = p.required();
        let Some(msgid) = p.get(1) else {
            return self.numeric(
                now,
                id,
                ERR_NEEDMOREPARAMS,
                &[
                    "REDACT",
                    "Not enough parameters: REDACT <target> <msgid> [:<reason>]",
                ],
            );
        };
        let reason = p
            .get(2)
            .filter(|r| !r.is_empty())
            .map(|r| truncate(r, KICK_LEN).to_owned());
        let fail = |server: &mut Server, code: &str, with_id: bool, text: &str| {
            let mut params = vec!["REDACT", code, target];
            if with_id {
                params.push(msgid);
            }
            params.push(text);
            server.send_server(now, id, "FAIL", &params);
        };
        // Who gets the REDACT (those with the capability), if it is allowed.
        let told: Vec<ConnId> = if is_channel_name(target) {
            let key = casefold(target);
            let member = (self.rooms.get(&key)).is_some_and(|r| r.members.contains_key(&id));
            if !member {
                let text = "You are not in that room: you can redact only where you are";
                return fail(self, "INVALID_TARGET", false, text);
            }
            let may_moderate = self.can_moderate(&key, id);
            let room = self.rooms.get_mut(&key).expect("a member's room");
            let Some(at) = room.recent.iter().position(|(m, _)| &**m == msgid) else {
                let text = format!(
                    "No such message among the room's last {}: only recent messages can be redacted",
                    self.config.redactable
                );
                return fail(self, "UNKNOWN_MSGID", true, &text);
            };
            if room.recent[at].1 != id && !may_moderate {
                let text =
                    "You may redact only your own messages, or anyone's as the room's operator";
                return fail(self, "REDACT_FORBIDDEN", true, text);
            }
            room.recent.remove(at);
            (room.members.iter())
                .filter(|(_, m)| m.caps.message_redaction())
                .map(|(&m, _)| m)
                .collect()
        } else {
            let Some(peer) = self.nicks.get(&casefold(target)).copied() else {
                let text = "No such nick: give the room or the person of the conversation";
                return fail(self, "INVALID_TARGET", false, text);
            };
            let found = self.recent_direct.iter().position(|(m, from, to)| {
                &**m == msgid && ((*from == id && *to == peer) || (*from == peer && *to == id))
            });
            let Some(at) = found else {
                let text = format!(
                    "No such message among the last {} direct messages: only recent messages can be redacted",
                    self.config.redactable
                );
                return fail(self, "UNKNOWN_MSGID", true, &text);
            };
            if self.recent_direct[at].1 != id {
                let text = "You may redact only your own direct messages";
                return fail(self, "REDACT_FORBIDDEN", true, text);
            }
            self.recent_direct.remove(at);
            let mut both = vec![id];
            if peer != id {
                both.push(peer);
            }
            both.retain(|&c| {
                self.conns
                    .get(c)
                    .is_some_and(|c| c.caps.message_redaction())
            });
            both
        };
        // A redacted message leaves history too.
        let me = self.conns.live(id).nick.clone().unwrap_or_default();
        self.history.remove(&target_key(&me, target), msgid);
        let prefix = self.conns.live(id).prefix.clone();
        let mut params = vec![target, msgid];
        params.extend(reason.as_deref());
        self.fanout(now, told.into_iter(), Some(&prefix), "REDACT", &params);
    }
}

/// Appends `item` to a ring of at most `max` (the oldest goes); with `max` 0, keeps nothing.
fn push_bounded<T>(ring: &mut VecDeque<T>, max: usize, item: T) {
    if max == 0 {
        return;
    }
    if ring.len() >= max {
        ring.pop_front();
    }
    ring.push_back(item);
}
