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
/names lists everyone in the room; /quote LINE sends an IRC line as typed (e.g. /quote TOPIC #rust :Rust talk); /help shows this. Anything else is said to the room (start with // to say something that begins with /).";

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
        "quote" | "raw" if arg.is_empty() => {
            need("an IRC line, e.g. /quote TOPIC #rust :Rust talk")
        }
        "quote" | "raw" => Input::Command(Command::Raw(arg.to_owned())),
        "help" => Input::Help,
        _ => Input::Invalid(format!(
            "/{cmd} is not a command here; type /help for the list"
        )),
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
    #[case("/frobnicate", Input::Invalid("/frobnicate is not a command here; type /help for the list".into()))]
    fn parses(#[case] line: &str, #[case] expected: Input) {
        assert_eq!(parse(line), expected);
    }
}
