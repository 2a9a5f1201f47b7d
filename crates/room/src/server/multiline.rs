//! `draft/multiline`: one message of several lines. A client opens `BATCH +<ref>
//! draft/multiline <target>`, sends `@batch=<ref> PRIVMSG <target> :<line>` lines (with
//! `draft/multiline-concat` on a line that continues the one before without a line break), and
//! closes it with `BATCH -<ref>`. Then the message goes out at once, with one `msgid`: as a
//! batch to those with `draft/multiline` (and `batch`), as its non-blank lines to the others
//! (the `msgid` on the first). At most [`Config::multiline_max_lines`] lines and
//! [`Config::multiline_max_bytes`] bytes of text; a batch that breaks a rule is refused whole
//! with `FAIL BATCH …` and its remaining lines are dropped until its end.
//!
//! [`Config::multiline_max_lines`]: super::Config::multiline_max_lines
//! [`Config::multiline_max_bytes`]: super::Config::multiline_max_bytes

use std::borrow::Cow;

use super::commands::Params;
use super::replies::{encode, time_tag};
use super::state::Caps;
use super::{ConnId, Output, Server};
use crate::message::{MAX_BODY_LEN, Message, Tag};
use crate::names::{casefold, is_channel_name};
use crate::numerics::*;
use crate::time::Millis;

/// The batch type.
const BATCH_TYPE: &str = "draft/multiline";
/// The tag of a line that continues the one before it.
const CONCAT: &str = "draft/multiline-concat";

/// A multiline message being received.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Multiline {
    /// The client's reference for the batch.
    reference: String,
    target: String,
    /// `PRIVMSG` or `NOTICE`, from its first line.
    verb: Option<String>,
    /// Each line's text and whether it continues the one before.
    lines: Vec<(String, bool)>,
    bytes: usize,
    /// The label of the line that opened it (labeled-response answers with the batch).
    label: Option<String>,
    /// The client-only tags of the opening line, which travel with the message.
    client_tags: Vec<(String, String)>,
    /// It broke a rule (and was told): its lines are dropped until its end.
    failed: bool,
}

impl Server {
    /// `BATCH +<ref> draft/multiline <target>` and `BATCH -<ref>`.
    pub(super) fn on_batch(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [reference] = p.required();
        if let Some(reference) = reference.strip_prefix('+') {
            if p.get(1) != Some(BATCH_TYPE) {
                let text = "Only draft/multiline batches can be sent to this server";
                return self.batch_fail(now, id, "UNKNOWN_TYPE", &[text]);
            }
            if !self.conns.live(id).caps.multiline() {
                let text = "Negotiate draft/multiline and batch before sending a multiline batch";
                return self.batch_fail(now, id, "MULTILINE_INVALID", &[text]);
            }
            let Some(target) = p.get(2).filter(|t| !t.is_empty()) else {
                let text = "BATCH +<ref> draft/multiline <target>: the target is missing";
                return self.batch_fail(now, id, "MULTILINE_INVALID", &[text]);
            };
            let label = self.label.take();
            let client_tags = std::mem::take(&mut self.client_tags);
            self.conns.live_mut(id).multiline = Some(Box::new(Multiline {
                reference: reference.to_owned(),
                target: target.to_owned(),
                verb: None,
                lines: Vec::new(),
                bytes: 0,
                label,
                client_tags,
                failed: false,
            }));
            return;
        }
        let reference = reference.strip_prefix('-').unwrap_or(reference);
        let open = self.conns.live_mut(id).multiline.take();
        match open {
            Some(ml) if ml.reference == reference => {
                if !ml.failed {
                    self.deliver_multiline(now, id, *ml);
                }
            }
            other => {
                self.conns.live_mut(id).multiline = other;
                let text = "No such batch is open: BATCH +<ref> draft/multiline <target> first";
                self.batch_fail(now, id, "MULTILINE_INVALID", &[text]);
            }
        }
    }

    /// A line with a `batch` tag: one more line of the multiline message it names.
    pub(super) fn on_batched_line(
        &mut self,
        now: Millis,
        id: ConnId,
        reference: &str,
        msg: &Message<'_>,
    ) {
        let max_lines = self.config.multiline_max_lines;
        let max_bytes = self.config.multiline_max_bytes;
        let c = self.conns.live_mut(id);
        let Some(ml) = c.multiline.as_mut().filter(|ml| ml.reference == reference) else {
            let text = "That batch is not open: BATCH +<ref> draft/multiline <target> first";
            return self.batch_fail(now, id, "MULTILINE_INVALID", &[text]);
        };
        if ml.failed {
            return;
        }
        let verb = msg.verb.to_ascii_uppercase();
        let concat = msg.tags.iter().any(|t| t.key == CONCAT);
        let text = msg.params.get(1).copied().unwrap_or("");
        let problem: Option<(&str, Vec<String>)> = if !matches!(verb.as_str(), "PRIVMSG" | "NOTICE")
            || ml.verb.as_deref().is_some_and(|v| v != verb)
            || msg
                .params
                .first()
                .is_none_or(|t| casefold(t) != casefold(&ml.target))
        {
            let text = "Every line of a multiline message is a PRIVMSG (or every one a NOTICE) to the batch's target";
            Some(("MULTILINE_INVALID", vec![text.to_owned()]))
        } else if concat && text.is_empty() {
            let text = "A blank line cannot continue the one before (draft/multiline-concat)";
            Some(("MULTILINE_INVALID", vec![text.to_owned()]))
        } else if ml.lines.len() >= max_lines {
            let text = format!("A multiline message has at most {max_lines} lines");
            Some(("MULTILINE_MAX_LINES", vec![max_lines.to_string(), text]))
        } else if ml.bytes + text.len() > max_bytes {
            let text = format!("A multiline message has at most {max_bytes} bytes of text");
            Some(("MULTILINE_MAX_BYTES", vec![max_bytes.to_string(), text]))
        } else {
            None
        };
        if let Some((code, params)) = problem {
            ml.failed = true;
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            return self.batch_fail(now, id, code, &params);
        }
        ml.verb = Some(verb);
        ml.bytes += text.len();
        ml.lines.push((text.to_owned(), concat));
    }

    fn batch_fail(&mut self, now: Millis, id: ConnId, code: &str, rest: &[&str]) {
        let mut params = vec!["BATCH", code];
        params.extend_from_slice(rest);
        self.send_server(now, id, "FAIL", &params);
    }

    /// Sends a complete multiline message from `id`.
    fn deliver_multiline(&mut self, now: Millis, id: ConnId, ml: Multiline) {
        let Some(verb) = ml.verb.clone() else {
            // An empty batch says nothing; a label on it is answered all the same.
            return self.ack(id, ml.label.as_deref());
        };
        let notice = verb == "NOTICE";
        let target = ml.target.as_str();
        let c = self.conns.live_mut(id);
        if !notice {
            c.last_spoke = now;
        }
        let (prefix, echo, my_caps) = (c.prefix.clone(), c.caps.echo_message(), c.caps);
        // Every line must fit once relayed, as a single message must.
        let longest = ml.lines.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
        let relayed = 1 + prefix.len() + 1 + verb.len() + 1 + target.len() + 2 + longest + 2;
        if relayed > MAX_BODY_LEN {
            let over = relayed - MAX_BODY_LEN;
            let text = format!(
                "Message not sent: a line is {over} bytes too long once your name is added; send it in shorter lines"
            );
            return self.numeric(now, id, ERR_INPUTTOOLONG, &[&text]);
        }
        let (name, mut to, room) = if is_channel_name(target) {
            let key = casefold(target);
            let Some(room) = self.rooms.get(&key) else {
                if !notice {
                    self.numeric(now, id, ERR_NOSUCHCHANNEL, &[target, "No such channel"]);
                }
                return self.ack(id, ml.label.as_deref());
            };
            if let Err(why) = room.may_send(id, &prefix) {
                if !notice {
                    let name = room.name.clone();
                    self.numeric(now, id, ERR_CANNOTSENDTOCHAN, &[&name, why]);
                }
                return self.ack(id, ml.label.as_deref());
            }
            let to: Vec<(ConnId, Caps)> = (room.members.iter())
                .map(|(&m, member)| (m, member.caps))
                .filter(|&(m, _)| echo || m != id)
                .collect();
            (room.name.clone(), to, Some(key))
        } else {
            let registered = |c: &ConnId| self.conns.get(*c).is_some_and(|c| c.registered);
            let found = self.nicks.get(&casefold(target)).copied();
            let Some(peer) = found.filter(registered) else {
                if !notice {
                    self.numeric(now, id, ERR_NOSUCHNICK, &[target, "No such nick/channel"]);
                }
                return self.ack(id, ml.label.as_deref());
            };
            let p = self.conns.live(peer);
            let name = p.nick.clone().unwrap_or_default();
            (name, vec![(peer, p.caps)], None)
        };
        if echo && !to.iter().any(|&(m, _)| m == id) {
            to.push((id, my_caps));
        }
        let msgid = self.next_msgid();
        self.msgids += 1;
        let reference = format!("M{:x}", self.msgids);
        let client_tags: Vec<Tag<'_>> = (ml.client_tags.iter())
            .map(|(k, v)| Tag {
                key: k.as_str(),
                value: Cow::Borrowed(v.as_str()),
            })
            .collect();
        // The sender's copy answers its labelled batch; without one (no echo-message) an ACK.
        let answered = to.iter().any(|&(m, _)| m == id);
        let label = ml.label.as_deref().map(|l| Tag {
            key: "label",
            value: Cow::Borrowed(l),
        });
        let msgid_tag = Tag {
            key: "msgid",
            value: Cow::Borrowed(msgid.as_str()),
        };
        // One line to one recipient: `always` tags whatever it asked for, `gated` ones
        // (msgid, client tags) only with message-tags, the time with server-time.
        let mut send = |who: ConnId,
                        caps: Caps,
                        always: &[Tag<'_>],
                        gated: &[Tag<'_>],
                        verb: &str,
                        params: &[&str]| {
            let mut tags = time_tag(now, caps);
            if caps.message_tags() {
                tags.extend(gated.iter().cloned());
            }
            tags.extend(always.iter().cloned());
            let line = encode(&tags, Some(&prefix), verb, params);
            self.out.push_back(Output::Send { to: who, line });
        };
        for (who, caps) in to {
            let label: Vec<Tag<'_>> = label.iter().filter(|_| who == id).cloned().collect();
            if caps.multiline() {
                let mut gated = vec![msgid_tag.clone()];
                gated.extend(client_tags.iter().cloned());
                let start = format!("+{reference}");
                send(
                    who,
                    caps,
                    &label,
                    &gated,
                    "BATCH",
                    &[&start, BATCH_TYPE, &name],
                );
                for (text, concat) in &ml.lines {
                    let mut always = vec![Tag {
                        key: "batch",
                        value: Cow::Borrowed(reference.as_str()),
                    }];
                    if *concat {
                        always.push(Tag {
                            key: CONCAT,
                            value: Cow::Borrowed(""),
                        });
                    }
                    send(who, caps, &always, &[], &verb, &[&name, text]);
                }
                send(who, caps, &[], &[], "BATCH", &[&format!("-{reference}")]);
            } else {
                // Its non-blank lines, each a message; the id (and the label) on the first.
                let lines = ml.lines.iter().filter(|(t, _)| !t.is_empty());
                for (i, (text, _)) in lines.enumerate() {
                    let first = i == 0;
                    let mut gated: Vec<Tag<'_>> =
                        first.then(|| msgid_tag.clone()).into_iter().collect();
                    gated.extend(client_tags.iter().cloned());
                    let always = if first { &label[..] } else { &[] };
                    send(who, caps, always, &gated, &verb, &[&name, text]);
                }
            }
        }
        let lines = (ml.lines.iter())
            .map(|(text, concat)| (*concat, text.clone()))
            .collect();
        self.keep(now, id, &verb, &name, &msgid, &client_tags, lines);
        match room {
            Some(key) => self.remember_room_message(&key, &msgid, id),
            None => {
                if let Some(&peer) = self.nicks.get(&casefold(target)) {
                    self.remember_direct_message(&msgid, id, peer);
                }
            }
        }
        if !answered {
            self.ack(id, ml.label.as_deref());
        }
    }
}
