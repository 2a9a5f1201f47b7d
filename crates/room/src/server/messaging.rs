//! PRIVMSG and NOTICE: the hot path. A room message is encoded at most twice and fanned out
//! from the room's member list, which carries each member's capabilities, so a message costs
//! no lookup per recipient.

use super::commands::Params;
#[cfg(feature = "deliberate-bugs")]
use super::config::Bug;
use std::borrow::Cow;

use super::replies::fanout_tagged;
use super::state::Caps;
use super::{ConnId, Server};
use crate::limits::*;
use crate::message::Tag;
use crate::names::{casefold, is_channel_name, same_name};
use crate::numerics::*;
use crate::time::Millis;

/// A sender whose previous room message is at least this old is not paused by a room's
/// budget (see `Config::room_budget`).
const CONVERSATIONAL_MS: u64 = 1000;

impl Server {
    /// `PRIVMSG <target>{,<target>} <text>`
    pub(super) fn on_privmsg(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        self.on_message(now, id, "PRIVMSG", p);
    }

    /// `NOTICE <target>{,<target>} <text>`
    pub(super) fn on_notice(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        self.on_message(now, id, "NOTICE", p);
    }

    /// `TAGMSG <target>{,<target>}`: only tags (`+typing=active`), to those who asked for
    /// `message-tags`.
    pub(super) fn on_tagmsg(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        self.on_message(now, id, "TAGMSG", p);
    }

    /// A fresh message id (`msgid`): the server's start time and a counter, so ids differ
    /// across restarts too.
    pub(super) fn next_msgid(&mut self) -> String {
        self.msgids += 1;
        format!("{:x}-{:x}", self.msgid_epoch.0, self.msgids)
    }

    /// `PRIVMSG` and `NOTICE` (which never gets an error reply). They check their own
    /// parameters: a missing one has its own numeric, not `461`.
    fn on_message(&mut self, now: Millis, id: ConnId, verb: &str, p: Params<'_, 0>) {
        let tagmsg = verb == "TAGMSG";
        // Neither NOTICE nor TAGMSG is ever answered with an error.
        let notice = verb == "NOTICE" || tagmsg;
        let Some(targets) = p.get(0).filter(|t| !t.is_empty()) else {
            if !notice {
                let text = format!("No recipient given ({verb})");
                self.numeric(now, id, ERR_NORECIPIENT, &[&text]);
            }
            return;
        };
        let text = match p.get(1).filter(|t| !t.is_empty()) {
            _ if tagmsg => "",
            Some(text) => text,
            None => {
                if !notice {
                    self.numeric(now, id, ERR_NOTEXTTOSEND, &["No text to send"]);
                }
                return;
            }
        };
        // A target named twice (in any case) gets one copy: `PRIVMSG #a,#a,#A` is not three
        // messages to everyone in `#a`.
        let mut unique: Vec<&str> = Vec::new();
        for t in targets.split(',').filter(|t| !t.is_empty()) {
            if !unique.iter().any(|u| same_name(u, t)) {
                unique.push(t);
            }
        }
        let targets = unique;
        if targets.len() > MAX_TARGETS {
            if !notice {
                let text = format!("Too many recipients; send to at most {MAX_TARGETS} at once");
                self.numeric(now, id, ERR_TOOMANYTARGETS, &[targets[MAX_TARGETS], &text]);
            }
            return;
        }
        let c = self.conns.live_mut(id);
        if !notice {
            c.last_spoke = now;
        }
        let (prefix, echo) = (c.prefix.clone(), c.caps.echo_message());
        let client_tags = std::mem::take(&mut self.client_tags);
        for target in targets {
            // Each target's copy has its own id; with it go the sender's client-only tags,
            // to those who asked for message-tags.
            let msgid = self.next_msgid();
            let mut tags = vec![Tag {
                key: "msgid",
                value: Cow::Borrowed(msgid.as_str()),
            }];
            if self.conns.live(id).bot {
                tags.push(Tag {
                    key: "bot",
                    value: Cow::Borrowed(""),
                });
            }
            tags.extend(client_tags.iter().map(|(k, v)| Tag {
                key: k.as_str(),
                value: Cow::Borrowed(v.as_str()),
            }));
            // The relayed line carries our longer source; refuse rather than cut the text.
            let relayed = 1 + prefix.len() + 1 + verb.len() + 1 + target.len() + 2 + text.len() + 2;
            #[cfg(feature = "deliberate-bugs")]
            let relayed = relayed + usize::from(self.config.bug == Some(Bug::RelayLimitOffByOne));
            if relayed > MAX_BODY_LEN {
                if !notice {
                    let over = relayed - MAX_BODY_LEN;
                    let text = format!(
                        "Message not sent: it is {over} bytes too long once your name is added; send it in shorter parts"
                    );
                    self.numeric(now, id, ERR_INPUTTOOLONG, &[&text]);
                }
                continue;
            }
            // STATUSMSG: `@#room` reaches its operators, `+#room` its operators and voiced.
            let (status, room_name) = match target.split_at_checked(1) {
                Some((s @ ("@" | "+"), rest)) if is_channel_name(rest) => (Some(s), rest),
                _ => (None, target),
            };
            if is_channel_name(room_name) {
                let key = casefold(room_name);
                let Some(room) = self.rooms.get(&key) else {
                    if !notice {
                        self.numeric(now, id, ERR_NOSUCHCHANNEL, &[target, "No such channel"]);
                    }
                    continue;
                };
                if let Err(why) = room.may_send(id, &prefix) {
                    if !notice {
                        let name = room.name.clone();
                        self.numeric(now, id, ERR_CANNOTSENDTOCHAN, &[&name, why]);
                    }
                    continue;
                }
                let name = match status {
                    Some(s) => format!("{s}{}", room.name),
                    None => room.name.clone(),
                };
                // In a cluster, each server delivers to its own members only.
                let mut to: Vec<(ConnId, Caps)> = room
                    .members
                    .range(self.local_ids())
                    .filter(|(_, member)| match status {
                        Some("@") => member.op,
                        Some(_) => member.op || member.voice,
                        None => true,
                    })
                    .map(|(&m, member)| (m, member.caps))
                    .filter(|&(m, _)| echo || m != id)
                    .collect();
                // A sender from outside (a `-n` room, or below the status it wrote to) gets
                // its echo too.
                if echo && !to.iter().any(|&(m, _)| m == id) {
                    to.push((id, self.conns.live(id).caps));
                }
                #[cfg(feature = "deliberate-bugs")]
                {
                    self.relayed += 1;
                    if self.config.bug == Some(Bug::DropForOneMember)
                        && self.relayed.is_multiple_of(5)
                    {
                        let second = room.members.keys().nth(1).copied();
                        to.retain(|&(m, _)| Some(m) != second);
                    }
                }
                let params: &[&str] = if tagmsg { &[&name] } else { &[&name, text] };
                fanout_tagged(
                    &mut self.out,
                    now,
                    to.into_iter()
                        .filter(|(_, caps)| !tagmsg || caps.message_tags()),
                    Some(&prefix),
                    verb,
                    params,
                    &tags,
                );
                self.remember_room_message(&key, &msgid, id);
                // What only a room's operators (or voiced) saw is not its history.
                if status.is_none() && !tagmsg {
                    let lines = vec![(false, text.to_owned())];
                    self.keep(now, id, verb, &name, &msgid, &tags, lines);
                }
                // Everyone pays into the room's budget; only a sender who was already talking
                // in the last second is paused when it runs out, so that a person who says
                // something now and then is never held up by a flood of others.
                let c = self.conns.live_mut(id);
                let talking = c
                    .last_said
                    .is_some_and(|t| now.since(t) < CONVERSATIONAL_MS);
                c.last_said = Some(now);
                if let Some(limit) = self.config.room_budget
                    && let Some(room) = self.rooms.get_mut(&key)
                    && let Some(until) = room.budget.charge(now, relayed, limit)
                    && talking
                {
                    let later = match self.pause {
                        Some((paused, other)) if paused == id => other.max(until),
                        _ => until,
                    };
                    self.pause = Some((id, later));
                }
            } else {
                let Some(&to) = self.nicks.get(&casefold(target)) else {
                    if !notice {
                        self.numeric(now, id, ERR_NOSUCHNICK, &[target, "No such nick/channel"]);
                    }
                    continue;
                };
                let peer = self.conns.live(to);
                if !peer.registered {
                    if !notice {
                        self.numeric(now, id, ERR_NOSUCHNICK, &[target, "No such nick/channel"]);
                    }
                    continue;
                }
                let name = peer.nick.clone().unwrap_or_default();
                let away = peer.away.clone();
                let params: &[&str] = if tagmsg { &[&name] } else { &[&name, text] };
                let deliver = |out: &mut std::collections::VecDeque<_>,
                               (who, caps): (ConnId, Caps)| {
                    if !tagmsg || caps.message_tags() {
                        let to = std::iter::once((who, caps));
                        fanout_tagged(out, now, to, Some(&prefix), verb, params, &tags);
                    }
                };
                let caps = self.conns.live(id).caps;
                // To oneself with echo-message: the message and its echo; only the echo
                // answers the line (labeled-response).
                if to == id {
                    self.not_replies.push(self.out.len());
                }
                deliver(&mut self.out, (to, peer.caps));
                if echo {
                    deliver(&mut self.out, (id, caps));
                }
                self.remember_direct_message(&msgid, id, to);
                if !tagmsg {
                    let lines = vec![(false, text.to_owned())];
                    self.keep(now, id, verb, &name, &msgid, &tags, lines);
                }
                if let (Some(away), false) = (away, notice) {
                    self.numeric(now, id, RPL_AWAY, &[&name, &away]);
                }
            }
        }
    }
}
