//! `HELP [<subject>]` (and `HELPOP`, its other name): what each command does and how to write
//! it. Every command the core knows has an entry; a test checks that none is missing.

use super::commands::Params;
use super::{ConnId, Server};
use crate::numerics::*;
use crate::time::Millis;

/// Each subject, upper-case, with its lines (the first is its syntax).
pub(super) static HELP: &[(&str, &[&str])] = &[
    (
        "AWAY",
        &[
            "AWAY [:<message>]",
            "Marks you away with a message, or back without one.",
        ],
    ),
    (
        "CAP",
        &[
            "CAP LS 302 | LIST | REQ :<caps> | END",
            "Negotiates IRCv3 capabilities.",
        ],
    ),
    ("INFO", &["INFO", "About this server."]),
    (
        "INVITE",
        &[
            "INVITE <nick> <#room>",
            "Invites someone into a room (past +i, +k, +l and bans).",
        ],
    ),
    (
        "ISON",
        &["ISON <nick> [<nick>…]", "Which of these people are here."],
    ),
    (
        "JOIN",
        &[
            "JOIN <#room>[,<#room>…] [<key>[,<key>…]]",
            "Joins rooms (making them if new: you are then their operator). JOIN 0 leaves all.",
        ],
    ),
    (
        "KICK",
        &[
            "KICK <#room> <nick>[,<nick>…] [:<reason>]",
            "Removes someone from a room (its operators only).",
        ],
    ),
    (
        "KILL",
        &[
            "KILL <nick> [:<reason>]",
            "Disconnects someone (server operators only).",
        ],
    ),
    (
        "LIST",
        &[
            "LIST [<#room>[,<#room>…]]",
            "Lists rooms with their size and topic.",
        ],
    ),
    (
        "LUSERS",
        &["LUSERS", "How many people and rooms there are."],
    ),
    (
        "MARKREAD",
        &[
            "MARKREAD <target> [timestamp=<time>]",
            "Shows or moves how far you have read a room or conversation (draft/read-marker).",
        ],
    ),
    (
        "BATCH",
        &[
            "BATCH +<ref> draft/multiline <target>, then @batch=<ref> PRIVMSG lines, then BATCH -<ref>",
            "Sends one message of several lines (draft/multiline); people without it get each line.",
        ],
    ),
    (
        "CHATHISTORY",
        &[
            "CHATHISTORY LATEST <target> <*|msgid=<id>|timestamp=<time>> <limit>",
            "CHATHISTORY BEFORE|AFTER|AROUND <target> <msgid=<id>|timestamp=<time>> <limit>",
            "CHATHISTORY BETWEEN <target> <ref> <ref> <limit>",
            "CHATHISTORY TARGETS <timestamp=<time>> <timestamp=<time>> <limit>",
            "Gives back what was said in a room you are in, or between you and someone",
            "(draft/chathistory). Times are written YYYY-MM-DDThh:mm:ss.sssZ (UTC).",
        ],
    ),
    (
        "REDACT",
        &[
            "REDACT <target> <msgid> [:<reason>]",
            "Removes a recent message (draft/message-redaction): your own, or in a room you",
            "operate anyone's. Only the room's recent messages can be redacted.",
        ],
    ),
    (
        "MONITOR",
        &[
            "MONITOR + <nick>[,<nick>…] | - <nicks> | C | L | S",
            "Be told when people come online or go offline (up to 100 names).",
        ],
    ),
    (
        "HELP",
        &["HELP [<command>]", "These lines; HELPOP is the same."],
    ),
    ("HELPOP", &["HELPOP [<command>]", "The same as HELP."]),
    (
        "TAGMSG",
        &[
            "TAGMSG <target>[,<target>…]",
            "Only tags (such as +typing), to those who asked for message-tags.",
        ],
    ),
    (
        "MODE",
        &[
            "MODE <#room> [<+/-modes> [<params>…]] | MODE <nick> [<+/-modes>]",
            "Room modes: o v b e I k l i m n s t. Your modes: i (invisible), w (wallops), B (bot).",
        ],
    ),
    ("MOTD", &["MOTD", "The message of the day."]),
    (
        "NAMES",
        &[
            "NAMES <#room>[,<#room>…]",
            "Who is in a room (@ operator, + voice).",
        ],
    ),
    ("NICK", &["NICK <nick>", "Picks or changes your name."]),
    (
        "NOTICE",
        &[
            "NOTICE <target>[,<target>…] :<text>",
            "Like PRIVMSG, but never answered automatically.",
        ],
    ),
    (
        "OPER",
        &["OPER <name> <password>", "Makes you a server operator."],
    ),
    (
        "PART",
        &["PART <#room>[,<#room>…] [:<reason>]", "Leaves rooms."],
    ),
    (
        "PASS",
        &[
            "PASS <password>",
            "The server's password, before NICK and USER.",
        ],
    ),
    (
        "PING",
        &["PING <token>", "Asks the server to answer PONG <token>."],
    ),
    ("PONG", &["PONG <token>", "Answers the server's PING."]),
    (
        "PRIVMSG",
        &[
            "PRIVMSG <target>[,<target>…] :<text>",
            "Sends a message to rooms or people; @#room reaches a room's operators only.",
        ],
    ),
    ("QUIT", &["QUIT [:<reason>]", "Leaves the server."]),
    (
        "SETNAME",
        &["SETNAME :<real name>", "Changes your real name."],
    ),
    ("TIME", &["TIME", "The server's time."]),
    (
        "TOPIC",
        &[
            "TOPIC <#room> [:<topic>]",
            "Shows or sets a room's topic (only operators, if +t).",
        ],
    ),
    (
        "USER",
        &[
            "USER <username> 0 * :<real name>",
            "Registers you, with NICK.",
        ],
    ),
    (
        "USERHOST",
        &["USERHOST <nick> [<nick>…]", "People's user and host."],
    ),
    (
        "VERSION",
        &["VERSION", "The server's software and features."],
    ),
    (
        "WALLOPS",
        &[
            "WALLOPS :<text>",
            "A message to everyone with +w (server operators only).",
        ],
    ),
    (
        "WHO",
        &[
            "WHO <#room>|<mask>",
            "Who is in a room, or whose name matches a mask.",
        ],
    ),
    ("WHOIS", &["WHOIS <nick>", "About someone."]),
    (
        "WHOWAS",
        &["WHOWAS <nick> [<count>]", "Who held a name recently."],
    ),
];

impl Server {
    /// `HELP [<subject>]`, `HELPOP [<subject>]`
    pub(super) fn on_help(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        let Some(subject) = p.get(0).filter(|s| !s.is_empty()) else {
            let all: Vec<&str> = HELP.iter().map(|(s, _)| *s).collect();
            self.numeric(
                now,
                id,
                RPL_HELPSTART,
                &["*", "Commands (HELP <command> for one):"],
            );
            for chunk in all.chunks(10) {
                self.numeric(now, id, RPL_HELPTXT, &["*", &chunk.join(" ")]);
            }
            return self.numeric(now, id, RPL_ENDOFHELP, &["*", "End of /HELP"]);
        };
        let Some((name, lines)) = HELP.iter().find(|(s, _)| s.eq_ignore_ascii_case(subject)) else {
            return self.numeric(
                now,
                id,
                ERR_HELPNOTFOUND,
                &[subject, "No help for that subject; HELP lists the commands"],
            );
        };
        let (first, rest) = lines.split_first().expect("every entry has its syntax");
        self.numeric(now, id, RPL_HELPSTART, &[name, first]);
        for line in rest {
            self.numeric(now, id, RPL_HELPTXT, &[name, line]);
        }
        self.numeric(now, id, RPL_ENDOFHELP, &[name, "End of /HELP"]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_has_help() {
        for name in super::super::commands::names() {
            assert!(
                super::HELP.iter().any(|(s, _)| *s == name),
                "no HELP for {name}"
            );
        }
    }
}
