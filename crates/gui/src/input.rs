//! Turning a typed line into what the session should do. Shared by every front end.

use parla_net::client::Command;

/// What a typed line means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Something for the session.
    Command(Command),
    /// Nothing to do (an empty line).
    Nothing,
    /// Show the help text.
    Help,
    /// A mistake, explained for the person.
    Invalid(String),
}

/// The help text for slash commands.
pub const HELP: &str = "Commands: quit or /quit [reason] leaves; /nick NAME renames you; \
/me ACTION describes an action; /msg NAME TEXT sends a direct message; /join #ROOM joins a room; \
/part [#ROOM] [reason] leaves a room; /names lists everyone in the room; \
/older [#ROOM or NAME] shows earlier messages the server kept; \
/topic [TEXT] shows or sets the topic (/topic -delete clears it); /away [MESSAGE] marks you away (no message: back); \
/whois NAME tells about someone; /invite NAME [#ROOM] invites someone; \
room operators: /kick NAME [reason], /ban NAME or MASK, /unban MASK, /op and /deop NAME, /voice and /devoice NAME, /mode [#ROOM] +m (modes: see the README); \
/oper NAME PASSWORD makes you a server operator; \
/quote LINE sends an IRC line as typed (e.g. /quote LIST); /help shows this. Anything else is said to the room (start with // to say something that begins with /).";

/// Interprets one typed line.
pub fn parse(line: &str) -> Input {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Input::Nothing;
    }
    if trimmed.eq_ignore_ascii_case("quit") {
        return Input::Command(Command::Quit(None));
    }
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Input::Command(Command::Say(line.trim_end().to_owned()));
    };
    if rest.starts_with('/') {
        return Input::Command(Command::Say(rest.to_owned()));
    }
    let (cmd, arg) = rest
        .split_once(' ')
        .map_or((rest, ""), |(c, a)| (c, a.trim()));
    let need =
        |what: &str| Input::Invalid(format!("/{cmd} needs {what}; type /help for the commands"));
    match cmd.to_ascii_lowercase().as_str() {
        "quit" | "exit" => Input::Command(Command::Quit((!arg.is_empty()).then(|| arg.to_owned()))),
        "nick" | "name" if arg.is_empty() || arg.contains(' ') => {
            need("one name, e.g. /nick alice")
        }
        "nick" | "name" => Input::Command(Command::Nick(arg.to_owned())),
        "me" if arg.is_empty() => need("an action, e.g. /me waves"),
        "me" => Input::Command(Command::Action(arg.to_owned())),
        "msg" | "query" => match arg.split_once(' ') {
            Some((to, text)) if !text.trim().is_empty() => Input::Command(Command::Msg {
                to: to.to_owned(),
                text: text.trim().to_owned(),
            }),
            _ => need("a name and a message, e.g. /msg bob hi"),
        },
        "join" if !arg.starts_with('#') || arg.contains(' ') => {
            need("a room name starting with #, e.g. /join #rust")
        }
        "join" => Input::Command(Command::Join(arg.to_owned())),
        "names" | "who" => Input::Command(Command::Names),
        "older" | "history" if arg.contains(' ') => {
            need("at most one room or name, e.g. /older or /older #rust")
        }
        "older" | "history" => {
            Input::Command(Command::Older((!arg.is_empty()).then(|| arg.to_owned())))
        }
        "quote" | "raw" if arg.is_empty() => {
            need("an IRC line, e.g. /quote TOPIC #rust :Rust talk")
        }
        "quote" | "raw" => Input::Command(Command::Raw(arg.to_owned())),
        "part" | "leave" => {
            let (room, reason) = match arg.split_once(' ') {
                Some((room, reason)) if room.starts_with('#') => (Some(room), reason.trim()),
                None if arg.starts_with('#') => (Some(arg), ""),
                _ => (None, arg),
            };
            Input::Command(Command::Part {
                room: room.map(str::to_owned),
                reason: (!reason.is_empty()).then(|| reason.to_owned()),
            })
        }
        "topic" => Input::Command(Command::Topic {
            room: None,
            topic: match arg {
                "" => None,
                "-delete" => Some(String::new()),
                text => Some(text.to_owned()),
            },
        }),
        "kick" => match arg.split_once(' ') {
            _ if arg.is_empty() => need("a name, e.g. /kick bob spamming"),
            Some((name, reason)) => Input::Command(Command::Kick {
                room: None,
                name: name.to_owned(),
                reason: Some(reason.trim().to_owned()),
            }),
            None => Input::Command(Command::Kick {
                room: None,
                name: arg.to_owned(),
                reason: None,
            }),
        },
        "ban" | "unban" if arg.is_empty() || arg.contains(' ') => {
            need("one name or mask, e.g. /ban bob or /ban *!*@203.0.113.7")
        }
        "ban" | "unban" => {
            let sign = if cmd.eq_ignore_ascii_case("ban") {
                '+'
            } else {
                '-'
            };
            Input::Command(Command::Mode {
                target: None,
                args: format!("{sign}b {}", ban_mask(arg)),
            })
        }
        "op" | "deop" | "voice" | "devoice" if arg.is_empty() => {
            need("one or more names, e.g. /op bob")
        }
        "op" | "deop" | "voice" | "devoice" => {
            let (sign, mode) = match cmd.to_ascii_lowercase().as_str() {
                "op" => ('+', 'o'),
                "deop" => ('-', 'o'),
                "voice" => ('+', 'v'),
                _ => ('-', 'v'),
            };
            let names: Vec<&str> = arg.split_whitespace().collect();
            let modes: String = std::iter::once(sign)
                .chain(names.iter().map(|_| mode))
                .collect();
            Input::Command(Command::Mode {
                target: None,
                args: format!("{modes} {}", names.join(" ")),
            })
        }
        "mode" => match arg.split_once(' ') {
            _ if arg.is_empty() || arg.starts_with(['+', '-']) => Input::Command(Command::Mode {
                target: None,
                args: arg.to_owned(),
            }),
            Some((target, args)) => Input::Command(Command::Mode {
                target: Some(target.to_owned()),
                args: args.trim().to_owned(),
            }),
            None => Input::Command(Command::Mode {
                target: Some(arg.to_owned()),
                args: String::new(),
            }),
        },
        "invite" => match arg.split_whitespace().collect::<Vec<_>>()[..] {
            [name] => Input::Command(Command::Invite {
                name: name.to_owned(),
                room: None,
            }),
            [name, room] if room.starts_with('#') => Input::Command(Command::Invite {
                name: name.to_owned(),
                room: Some(room.to_owned()),
            }),
            _ => need("a name and maybe a room, e.g. /invite bob #rust"),
        },
        "oper" => match arg.split_once(' ') {
            Some((name, password)) if !password.trim().is_empty() => {
                Input::Command(Command::Oper {
                    name: name.to_owned(),
                    password: password.trim().to_owned(),
                })
            }
            _ => need("an operator name and its password, e.g. /oper admin s3cret"),
        },
        "away" => Input::Command(Command::Away((!arg.is_empty()).then(|| arg.to_owned()))),
        "back" => Input::Command(Command::Away(None)),
        "whois" if arg.is_empty() || arg.contains(' ') => need("one name, e.g. /whois bob"),
        "whois" => Input::Command(Command::Whois(arg.to_owned())),
        "help" => Input::Help,
        _ => Input::Invalid(format!(
            "/{cmd} is not a command here; type /help for the list"
        )),
    }
}

/// A ban mask for `who`: a mask as given (it has `!` or `@`), else everyone using that name
/// (`name!*@*`).
pub fn ban_mask(who: &str) -> String {
    if who.contains(['!', '@']) {
        who.to_owned()
    } else {
        format!("{who}!*@*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn cmd(c: Command) -> Input {
        Input::Command(c)
    }

    #[rstest]
    #[case("hello", cmd(Command::Say("hello".into())))]
    #[case("  spaced out  ", cmd(Command::Say("  spaced out".into())))]
    #[case("", Input::Nothing)]
    #[case("   ", Input::Nothing)]
    #[case("quit", cmd(Command::Quit(None)))]
    #[case("QUIT", cmd(Command::Quit(None)))]
    #[case("/quit", cmd(Command::Quit(None)))]
    #[case("/quit gone fishing", cmd(Command::Quit(Some("gone fishing".into()))))]
    #[case("/nick bob", cmd(Command::Nick("bob".into())))]
    #[case("/nick", Input::Invalid("/nick needs one name, e.g. /nick alice; type /help for the commands".into()))]
    #[case("/me waves", cmd(Command::Action("waves".into())))]
    #[case("/msg bob hi there", cmd(Command::Msg { to: "bob".into(), text: "hi there".into() }))]
    #[case("/msg bob", Input::Invalid("/msg needs a name and a message, e.g. /msg bob hi; type /help for the commands".into()))]
    #[case("/join #rust", cmd(Command::Join("#rust".into())))]
    #[case("/join rust", Input::Invalid("/join needs a room name starting with #, e.g. /join #rust; type /help for the commands".into()))]
    #[case("//slash", cmd(Command::Say("/slash".into())))]
    #[case("/names", cmd(Command::Names))]
    #[case("/quote PART #rust :bye", cmd(Command::Raw("PART #rust :bye".into())))]
    #[case("/raw", Input::Invalid("/raw needs an IRC line, e.g. /quote TOPIC #rust :Rust talk; type /help for the commands".into()))]
    #[case("/help", Input::Help)]
    #[case("/part", cmd(Command::Part { room: None, reason: None }))]
    #[case("/part see you", cmd(Command::Part { room: None, reason: Some("see you".into()) }))]
    #[case("/leave #rust", cmd(Command::Part { room: Some("#rust".into()), reason: None }))]
    #[case("/part #rust bye all", cmd(Command::Part { room: Some("#rust".into()), reason: Some("bye all".into()) }))]
    #[case("/topic", cmd(Command::Topic { room: None, topic: None }))]
    #[case("/topic Rust 2026 talk", cmd(Command::Topic { room: None, topic: Some("Rust 2026 talk".into()) }))]
    #[case("/topic -delete", cmd(Command::Topic { room: None, topic: Some(String::new()) }))]
    #[case("/kick bob", cmd(Command::Kick { room: None, name: "bob".into(), reason: None }))]
    #[case("/kick bob stop spamming", cmd(Command::Kick { room: None, name: "bob".into(), reason: Some("stop spamming".into()) }))]
    #[case("/kick", Input::Invalid("/kick needs a name, e.g. /kick bob spamming; type /help for the commands".into()))]
    #[case("/ban bob", cmd(Command::Mode { target: None, args: "+b bob!*@*".into() }))]
    #[case("/ban *!*@203.0.113.7", cmd(Command::Mode { target: None, args: "+b *!*@203.0.113.7".into() }))]
    #[case("/unban bob!*@*", cmd(Command::Mode { target: None, args: "-b bob!*@*".into() }))]
    #[case("/ban a b", Input::Invalid("/ban needs one name or mask, e.g. /ban bob or /ban *!*@203.0.113.7; type /help for the commands".into()))]
    #[case("/op bob", cmd(Command::Mode { target: None, args: "+o bob".into() }))]
    #[case("/deop bob carol", cmd(Command::Mode { target: None, args: "-oo bob carol".into() }))]
    #[case("/voice bob", cmd(Command::Mode { target: None, args: "+v bob".into() }))]
    #[case("/DEVOICE bob", cmd(Command::Mode { target: None, args: "-v bob".into() }))]
    #[case("/op", Input::Invalid("/op needs one or more names, e.g. /op bob; type /help for the commands".into()))]
    #[case("/mode", cmd(Command::Mode { target: None, args: String::new() }))]
    #[case("/mode +m", cmd(Command::Mode { target: None, args: "+m".into() }))]
    #[case("/mode #rust +k sesame", cmd(Command::Mode { target: Some("#rust".into()), args: "+k sesame".into() }))]
    #[case("/mode alice", cmd(Command::Mode { target: Some("alice".into()), args: String::new() }))]
    #[case("/invite bob", cmd(Command::Invite { name: "bob".into(), room: None }))]
    #[case("/invite bob #rust", cmd(Command::Invite { name: "bob".into(), room: Some("#rust".into()) }))]
    #[case("/invite bob rust", Input::Invalid("/invite needs a name and maybe a room, e.g. /invite bob #rust; type /help for the commands".into()))]
    #[case("/oper admin s3cret word", cmd(Command::Oper { name: "admin".into(), password: "s3cret word".into() }))]
    #[case("/oper admin", Input::Invalid("/oper needs an operator name and its password, e.g. /oper admin s3cret; type /help for the commands".into()))]
    #[case("/away lunch", cmd(Command::Away(Some("lunch".into()))))]
    #[case("/away", cmd(Command::Away(None)))]
    #[case("/back", cmd(Command::Away(None)))]
    #[case("/whois bob", cmd(Command::Whois("bob".into())))]
    #[case("/whois", Input::Invalid("/whois needs one name, e.g. /whois bob; type /help for the commands".into()))]
    #[case("/frobnicate", Input::Invalid("/frobnicate is not a command here; type /help for the list".into()))]
    fn parses(#[case] line: &str, #[case] expected: Input) {
        assert_eq!(parse(line), expected);
    }
}
