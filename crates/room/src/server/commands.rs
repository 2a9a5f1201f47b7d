//! The command table: one entry per command the core knows, and [`Server::dispatch`], the one
//! place that checks what every command needs (registered yet? enough parameters?) before its
//! handler runs (ergo's `irc/commands.go`, `Command.Run`). Adding a command means one entry in
//! [`COMMANDS`] plus its handler, nothing else.
//!
//! A handler cannot index past the parameters it got. Its type says how many it requires:
//! [`Handler::Needs1`] holds a `fn(.., Params<'_, 1>)`, and dispatch builds a `Params<'_, 1>` only
//! from a line with at least one parameter (otherwise it answers `461`), so the handler takes
//! the required ones as an array, `let [rooms] = p.required();`, and an optional one as an
//! `Option`, `p.get(1)` (positions as in the IRC syntax). The minimum parameter count is
//! therefore not a number beside the handler that could disagree with it; it is the handler's
//! type.

use super::{ConnId, Server};
use crate::message::Message;
use crate::numerics::*;
use crate::time::Millis;
use Handler::{Needs0, Needs1, Needs4};
use Usable::{Always, OnceRegistered};
/// One command: its verb, when it may be used, and its handler.
struct Command {
    /// The verb, upper-case; the line's verb matches it case-insensitively.
    name: &'static str,
    usable: Usable,
    handler: Handler,
}

/// When a command may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Usable {
    /// Also before registration completes (the commands that register, and the ones that keep
    /// a connection alive or end it).
    Always,
    /// Only once registered; before, the reply is `451`.
    OnceRegistered,
}

/// A command's handler, by how many parameters it requires. A command that checks its own
/// (NICK, PRIVMSG and NOTICE answer a missing one with their own numerics) requires none. A
/// command requiring another count needs a variant here and an arm in [`Server::dispatch`].
#[derive(Clone, Copy)]
enum Handler {
    /// Requires no parameter (or checks its own).
    Needs0(fn(&mut Server, Millis, ConnId, Params<'_, 0>)),
    /// Requires one.
    Needs1(fn(&mut Server, Millis, ConnId, Params<'_, 1>)),
    /// Requires four (USER).
    Needs4(fn(&mut Server, Millis, ConnId, Params<'_, 4>)),
}

impl Handler {
    /// The parameters the handler requires.
    #[cfg(test)]
    fn min_params(self) -> usize {
        match self {
            Handler::Needs0(_) => 0,
            Handler::Needs1(_) => 1,
            Handler::Needs4(_) => 4,
        }
    }
}

const fn command(name: &'static str, usable: Usable, handler: Handler) -> Command {
    Command {
        name,
        usable,
        handler,
    }
}

/// Every command the core knows, most frequent first: the lookup scans this slice (as the old
/// verb table did), and nearly every line is a PRIVMSG, PING or PONG, so the scan stops within
/// the first few entries. The order is only about speed.
static COMMANDS: &[Command] = &[
    command("PRIVMSG", OnceRegistered, Needs0(Server::on_privmsg)),
    command("PING", Always, Needs1(Server::on_ping)),
    command("PONG", Always, Needs0(Server::on_pong)),
    command("NOTICE", OnceRegistered, Needs0(Server::on_notice)),
    command("JOIN", OnceRegistered, Needs1(Server::on_join)),
    command("PART", OnceRegistered, Needs1(Server::on_part)),
    command("NICK", Always, Needs0(Server::on_nick)),
    command("USER", Always, Needs4(Server::on_user)),
    command("CAP", Always, Needs1(Server::on_cap)),
    command("PASS", Always, Needs1(Server::on_pass)),
    command("QUIT", Always, Needs0(Server::on_quit)),
    command("NAMES", OnceRegistered, Needs0(Server::on_names)),
    command("TOPIC", OnceRegistered, Needs1(Server::on_topic)),
    command("WHO", OnceRegistered, Needs0(Server::on_who)),
    command("WHOIS", OnceRegistered, Needs1(Server::on_whois)),
    command("MODE", OnceRegistered, Needs1(Server::on_mode)),
    command("LUSERS", OnceRegistered, Needs0(Server::on_lusers)),
    command("MOTD", OnceRegistered, Needs0(Server::on_motd)),
    command("AWAY", OnceRegistered, Needs0(Server::on_away)),
    command("ISON", OnceRegistered, Needs1(Server::on_ison)),
    command("USERHOST", OnceRegistered, Needs1(Server::on_userhost)),
    command("VERSION", OnceRegistered, Needs0(Server::on_version)),
    command("TIME", OnceRegistered, Needs0(Server::on_time)),
    command("LIST", OnceRegistered, Needs0(Server::on_list)),
    command("KICK", OnceRegistered, Needs1(Server::on_kick)),
    command("INVITE", OnceRegistered, Needs1(Server::on_invite)),
    command("OPER", OnceRegistered, Needs1(Server::on_oper)),
    command("KILL", OnceRegistered, Needs1(Server::on_kill)),
    command("WALLOPS", OnceRegistered, Needs1(Server::on_wallops)),
    command("INFO", OnceRegistered, Needs0(Server::on_info)),
    command("WHOWAS", OnceRegistered, Needs0(Server::on_whowas)),
    command("HELP", OnceRegistered, Needs0(Server::on_help)),
    command("HELPOP", OnceRegistered, Needs0(Server::on_help)),
    command("SETNAME", OnceRegistered, Needs1(Server::on_setname)),
    command("TAGMSG", OnceRegistered, Needs0(Server::on_tagmsg)),
    command("MONITOR", OnceRegistered, Needs1(Server::on_monitor)),
    command("MARKREAD", OnceRegistered, Needs0(Server::on_markread)),
    command("REDACT", OnceRegistered, Needs1(Server::on_redact)),
    command("BATCH", OnceRegistered, Needs1(Server::on_batch)),
    command(
        "CHATHISTORY",
        OnceRegistered,
        Needs0(Server::on_chathistory),
    ),
];

/// Every command's name (for HELP's test).
#[cfg(test)]
pub(super) fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|c| c.name)
}

impl Command {
    /// The command `verb` names (case-insensitively), if the core knows it.
    fn find(verb: &str) -> Option<&'static Command> {
        COMMANDS.iter().find(|c| c.name.eq_ignore_ascii_case(verb))
    }
}

/// A command's parameters, the first `N` of which (the ones it requires) are known to be there.
#[derive(Debug, Clone, Copy)]
pub(super) struct Params<'a, const N: usize> {
    required: [&'a str; N],
    all: &'a [&'a str],
}

impl<'a, const N: usize> Params<'a, N> {
    /// `all` as the parameters of a command requiring `N`, or `None` if there are fewer.
    fn check(all: &'a [&'a str]) -> Option<Self> {
        let required = *all.first_chunk::<N>()?;
        Some(Params { required, all })
    }

    /// The required parameters.
    pub(super) fn required(&self) -> [&'a str; N] {
        self.required
    }

    /// Parameter `i` (counting the required ones), if the line has it.
    pub(super) fn get(&self, i: usize) -> Option<&'a str> {
        self.all.get(i).copied()
    }

    /// The last parameter, if any.
    pub(super) fn last(&self) -> Option<&'a str> {
        self.all.last().copied()
    }

    /// All the parameters, the required ones first.
    pub(super) fn iter(self) -> impl Iterator<Item = &'a str> {
        self.all.iter().copied()
    }
}

impl Server {
    /// Runs `msg`'s command for `id` if `id` may use it and sent enough parameters; otherwise
    /// answers `421`, `451` or `461`.
    pub(super) fn dispatch(&mut self, now: Millis, id: ConnId, msg: &Message<'_>) {
        // labeled-response: whatever this line makes the server send back is labelled.
        let label = msg
            .tags
            .iter()
            .find(|t| t.key == "label")
            .filter(|t| !t.value.is_empty() && t.value.len() <= 64)
            .filter(|_| self.conns.live(id).caps.labeled_response())
            .map(|t| t.value.clone().into_owned());
        // A line of a multiline message being sent (draft/multiline): collected, not run.
        if let Some(batch) = msg.tags.iter().find(|t| t.key == "batch") {
            return self.on_batched_line(now, id, &batch.value, msg);
        }
        // The handler may take the label (a multiline batch answers it when it is sent).
        self.label = label;
        let mark = self.out.len();
        self.run(now, id, msg);
        if let Some(label) = self.label.take() {
            self.label_replies(id, mark, &label);
        }
        self.not_replies.clear();
    }

    fn run(&mut self, now: Millis, id: ConnId, msg: &Message<'_>) {
        let Some(cmd) = Command::find(msg.verb) else {
            return self.numeric(now, id, ERR_UNKNOWNCOMMAND, &[msg.verb, "Unknown command"]);
        };
        if cmd.usable == OnceRegistered && !self.conns.live(id).registered {
            return self.numeric(
                now,
                id,
                ERR_NOTREGISTERED,
                &["You have not registered; send NICK and USER first"],
            );
        }
        let p = &msg.params[..];
        // Client-only tags travel with the message they came on (message-tags).
        self.client_tags = msg
            .tags
            .iter()
            .filter(|t| t.key.starts_with('+') && t.key.len() > 1)
            .map(|t| (t.key.to_owned(), t.value.clone().into_owned()))
            .collect();
        // A client may send at most 4094 bytes of tags (message-tags; 4096 with the `@` and
        // the space): a line with more is refused whole, since what the server adds to a
        // relayed line must still fit in its 8191.
        if msg.tags_len() > 4096 {
            self.client_tags.clear();
            return self.reply_too_long(now, id);
        }
        let ran = match cmd.handler {
            Needs0(handler) => Params::check(p).map(|p| handler(self, now, id, p)),
            Needs1(handler) => Params::check(p).map(|p| handler(self, now, id, p)),
            Needs4(handler) => Params::check(p).map(|p| handler(self, now, id, p)),
        };
        self.client_tags.clear();
        if ran.is_none() {
            self.numeric(
                now,
                id,
                ERR_NEEDMOREPARAMS,
                &[cmd.name, "Not enough parameters"],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command the core answered before the table existed (the old `Cmd::parse`), with
    /// the parameters it required and whether it was usable before registration.
    const EXPECTED: &[(&str, usize, Usable)] = &[
        ("CAP", 1, Always),
        ("PASS", 1, Always),
        ("NICK", 0, Always),
        ("USER", 4, Always),
        ("PING", 1, Always),
        ("PONG", 0, Always),
        ("QUIT", 0, Always),
        ("JOIN", 1, OnceRegistered),
        ("PART", 1, OnceRegistered),
        ("PRIVMSG", 0, OnceRegistered),
        ("NOTICE", 0, OnceRegistered),
        ("NAMES", 0, OnceRegistered),
        ("TOPIC", 1, OnceRegistered),
        ("WHO", 0, OnceRegistered),
        ("WHOIS", 1, OnceRegistered),
        ("MODE", 1, OnceRegistered),
        ("LUSERS", 0, OnceRegistered),
        ("MOTD", 0, OnceRegistered),
        ("AWAY", 0, OnceRegistered),
        ("ISON", 1, OnceRegistered),
        ("USERHOST", 1, OnceRegistered),
        ("VERSION", 0, OnceRegistered),
        ("TIME", 0, OnceRegistered),
        ("LIST", 0, OnceRegistered),
        ("KICK", 1, OnceRegistered),
        ("INVITE", 1, OnceRegistered),
        ("OPER", 1, OnceRegistered),
        ("KILL", 1, OnceRegistered),
        ("WALLOPS", 1, OnceRegistered),
        ("INFO", 0, OnceRegistered),
        ("WHOWAS", 0, OnceRegistered),
        ("HELP", 0, OnceRegistered),
        ("HELPOP", 0, OnceRegistered),
        ("SETNAME", 1, OnceRegistered),
        ("TAGMSG", 0, OnceRegistered),
        ("MONITOR", 1, OnceRegistered),
        ("MARKREAD", 0, OnceRegistered),
        ("REDACT", 1, OnceRegistered),
        ("BATCH", 1, OnceRegistered),
        ("CHATHISTORY", 0, OnceRegistered),
    ];

    #[test]
    fn names_are_unique_and_upper_case() {
        for (i, cmd) in COMMANDS.iter().enumerate() {
            assert_eq!(
                cmd.name,
                cmd.name.to_ascii_uppercase(),
                "{} is not upper-case",
                cmd.name
            );
            assert!(
                COMMANDS[..i].iter().all(|c| c.name != cmd.name),
                "{} is in the table twice",
                cmd.name
            );
        }
    }

    #[test]
    fn the_table_covers_exactly_the_commands_the_core_always_knew() {
        assert_eq!(COMMANDS.len(), EXPECTED.len());
        for &(name, min_params, usable) in EXPECTED {
            let cmd = Command::find(name).unwrap_or_else(|| panic!("{name} is missing"));
            assert_eq!(cmd.handler.min_params(), min_params, "{name}'s parameters");
            assert_eq!(cmd.usable, usable, "when {name} is usable");
            let lower = name.to_ascii_lowercase();
            assert!(Command::find(&lower).is_some_and(|c| c.name == name));
        }
        assert!(Command::find("KNOCK").is_none());
    }

    #[test]
    fn params_hold_the_required_ones_and_refuse_too_few() {
        let all = ["#a", "bye now"];
        let p = Params::<1>::check(&all).unwrap();
        assert_eq!(p.required(), ["#a"]);
        assert_eq!(
            (p.get(1), p.get(2), p.last()),
            (Some("bye now"), None, Some("bye now"))
        );
        assert_eq!(p.iter().collect::<Vec<_>>(), all);
        assert!(Params::<4>::check(&all).is_none());
        assert!(Params::<0>::check(&[]).is_some());
    }
}
