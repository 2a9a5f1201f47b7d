//! The client core's vocabulary with its front ends: the commands a person gives, the events the
//! session reports, why it ended, and the liveness reports of an ICMP pinger. They are protocol
//! level (no sockets, no channels), so they live beside the state machine; `parla_net::client`
//! re-exports them for the front ends.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// What a front end asks the session to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Pick (or change) the name.
    Nick(String),
    /// Say something in the current room. Long text is split into several messages, and each
    /// line of a multi-line text is its own message: nothing is cut.
    Say(String),
    /// `/me`: an action in the current room.
    Action(String),
    /// A direct message.
    Msg {
        /// Who receives it.
        to: String,
        /// What it says.
        text: String,
    },
    /// Join a room and make it the current one.
    Join(String),
    /// Ask for the full member list of the current room (a large room's list is not sent on
    /// join; see [`Event::Members`]).
    Names,
    /// Leave, with an optional reason; the session ends.
    Quit(Option<String>),
    /// Send one line as typed (`/quote`), for a command this client has no verb for. A line
    /// with a CR, LF or NUL would be more than one line and is refused.
    Raw(String),
    /// Leave a room (the current one when `room` is `None`), with an optional reason.
    Part {
        /// The room; the current one when `None`.
        room: Option<String>,
        /// Why, shown to those who stay.
        reason: Option<String>,
    },
    /// Ask for a room's topic (`topic: None`), set it, or clear it (`Some("")`).
    Topic {
        /// The room; the current one when `None`.
        room: Option<String>,
        /// The new topic; `None` asks for the current one.
        topic: Option<String>,
    },
    /// Remove someone from a room (room operators).
    Kick {
        /// The room; the current one when `None`.
        room: Option<String>,
        /// Who.
        name: String,
        /// Why, shown to the room.
        reason: Option<String>,
    },
    /// `MODE <target> <args>`: change or list modes, e.g. `+o bob`, `+b`, `+m`, `-t`.
    Mode {
        /// A room or our own name; the current room when `None`.
        target: Option<String>,
        /// The mode changes and their arguments, as IRC writes them (may be empty: ask).
        args: String,
    },
    /// Invite someone to a room (the way into a `+i` room).
    Invite {
        /// Who.
        name: String,
        /// The room; the current one when `None`.
        room: Option<String>,
    },
    /// Become a server operator with a name and password from the server's operators file.
    Oper {
        /// The operator name.
        name: String,
        /// Its password.
        password: String,
    },
    /// Mark ourselves away with a message, or back (`None`).
    Away(Option<String>),
    /// Ask the server about someone (`WHOIS`).
    Whois(String),
    /// Fetch a page of older messages of a room or conversation (the current room when
    /// `None`), before the oldest one reported; answered by an [`Event::History`] (an empty one,
    /// with `more: false`, when there is nothing older or the server keeps no history).
    Older(Option<String>),
    /// What we are doing in the input box of the current room, for the typing notifications of
    /// the others (`+typing`; sent only if the server offers message-tags, and `Active` at
    /// most every [`TYPING_ACTIVE_EVERY_MS`](super::TYPING_ACTIVE_EVERY_MS)).
    Typing(Typing),
}

/// A typing notification's state (IRCv3 `+typing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typing {
    /// Typing now. Lapses after 6 s without another.
    Active,
    /// Stopped typing with text still in the box. Lapses after 30 s.
    Paused,
    /// The box was emptied or sent.
    Done,
}

impl Typing {
    /// The tag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Typing::Active => "active",
            Typing::Paused => "paused",
            Typing::Done => "done",
        }
    }

    /// From the tag's value; `None` for anything else.
    pub fn parse(value: &str) -> Option<Typing> {
        match value {
            "active" => Some(Typing::Active),
            "paused" => Some(Typing::Paused),
            "done" => Some(Typing::Done),
            _ => None,
        }
    }
}

/// A member of a room as its list shows them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Their name.
    pub name: String,
    /// Their status in the room as the server's prefix characters, highest first: `@` room
    /// operator, `+` voice (other servers add `~`, `&` and `%`). Empty for none.
    pub prefixes: String,
}

impl Member {
    /// A member without status.
    pub fn new(name: impl Into<String>) -> Member {
        Member {
            name: name.into(),
            prefixes: String::new(),
        }
    }

    /// The highest prefix, as shown before the name (`@`, `+` or nothing).
    pub fn prefix(&self) -> &str {
        let end = self.prefixes.chars().next().map_or(0, char::len_utf8);
        &self.prefixes[..end]
    }

    /// A room operator (or higher, or a half-operator on servers that have them): may kick, ban
    /// and change modes.
    pub fn is_operator(&self) -> bool {
        self.prefixes.contains(['~', '&', '@', '%'])
    }

    /// Voiced (may speak in a moderated room).
    pub fn is_voiced(&self) -> bool {
        self.prefixes.contains('+')
    }

    /// Where the member goes in a list shown to people: by status (`~ & @ % +`, then none),
    /// as IRC clients list them, the name breaking ties.
    pub fn rank(&self) -> usize {
        self.prefixes
            .chars()
            .filter_map(|c| "~&@%+".find(c))
            .min()
            .unwrap_or(5)
    }
}

/// A message: in a room or direct, live or from history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    /// The sender's name (or the server's).
    pub from: String,
    /// The room, or our name for a direct message (the recipient's, for our own).
    pub target: String,
    /// The text (without CTCP framing for actions).
    pub text: String,
    /// Message, action or notice.
    pub kind: MessageKind,
    /// We sent it (echoed back by the server).
    pub own: bool,
    /// The server's timestamp (`server-time`), if any.
    pub time: Option<String>,
    /// The server's id of the message (`msgid`), if any.
    pub id: Option<String>,
}

/// Which part of a conversation's history a [`Event::History`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryPage {
    /// The last messages before we joined: shown above a divider ("earlier messages").
    Recent,
    /// Messages before the oldest shown, asked for with [`Command::Older`].
    Older,
    /// What was said while we were away (disconnected, or out of the room), after the last
    /// message we saw.
    Missed,
}

/// How a message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `PRIVMSG`.
    Normal,
    /// `PRIVMSG` with a CTCP ACTION (`/me`).
    Action,
    /// `NOTICE`.
    Notice,
}

/// What the session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The name was refused before registration: ask for another.
    NameRefused {
        /// The refused name.
        name: String,
        /// The server's reason, e.g. "Nickname is already in use; pick another name".
        reason: String,
    },
    /// Registered under `name`.
    Registered {
        /// Our name.
        name: String,
        /// The server's name.
        server: String,
    },
    /// We are in `room` (and it is now the current room).
    Joined {
        /// The room.
        room: String,
    },
    /// `room`, which we are already in, is now the current one (a `/join` of it).
    Switched {
        /// The room.
        room: String,
    },
    /// The member list of `room`, sorted by name, after any change (of its members or of
    /// their status).
    Members {
        /// The room.
        room: String,
        /// Its members.
        members: Vec<Member>,
        /// Whether this is everyone. A server may leave the list out when we join a large room
        /// (Parla does above `--quiet-joins-above` members, and then tells nobody of joins and
        /// quits either): the list then holds us and the people seen speaking there, until
        /// [`Command::Names`] fetches the whole of it.
        complete: bool,
    },
    /// A message in a room or to us, as it is said.
    Message(Said),
    /// Messages from the server's history of a room or a direct conversation (IRCv3
    /// `draft/chathistory`), oldest first, none of them reported before (told apart by their
    /// `msgid`). Live messages of `target` that arrive while a page is on its way wait for it, so
    /// that a conversation is always reported in order.
    History {
        /// The room, or the other person's name for a direct conversation.
        target: String,
        /// Which page this is: the recent past on joining, an older page asked for, or what was
        /// said while we were away.
        page: HistoryPage,
        /// The messages, oldest first (possibly none).
        messages: Vec<Said>,
        /// There may be more in the same direction (the page was full): older ones for
        /// [`HistoryPage::Recent`] and [`HistoryPage::Older`]. A gap is always filled whole.
        more: bool,
    },
    /// Someone joined a room we are in.
    UserJoined {
        /// The room.
        room: String,
        /// Who.
        name: String,
    },
    /// Someone left a room we are in.
    UserLeft {
        /// The room.
        room: String,
        /// Who.
        name: String,
        /// Why, if they said.
        reason: Option<String>,
    },
    /// Someone disconnected.
    UserQuit {
        /// Who.
        name: String,
        /// Why.
        reason: String,
    },
    /// Someone (maybe us) changed name.
    Renamed {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// A room's topic.
    Topic {
        /// The room.
        room: String,
        /// The topic (empty when cleared).
        topic: String,
    },
    /// We left `room` (we parted, or were kicked: [`Event::Kicked`] comes first).
    Left {
        /// The room.
        room: String,
        /// The room `Say` goes to now (the one most recently joined of those we are still
        /// in), if any.
        current: Option<String>,
    },
    /// Someone (maybe us) was removed from a room by an operator.
    Kicked {
        /// The room.
        room: String,
        /// Who was removed.
        name: String,
        /// The operator.
        by: String,
        /// Their reason.
        reason: String,
    },
    /// An invitation to a room: ours, or (with `invite-notify`, to its operators) someone
    /// else's.
    Invited {
        /// The room.
        room: String,
        /// Who is invited.
        name: String,
        /// Who invited them.
        by: String,
    },
    /// Modes changed: a room's (`+m`, `+o bob`, `+b mask`, …) or our own.
    ModeChanged {
        /// The room, or our name.
        target: String,
        /// Who changed them (a person or the server).
        by: String,
        /// The changes as IRC writes them, e.g. `+o bob` or `-t`.
        change: String,
    },
    /// Someone's typing notification (`+typing`), for a room or, for a direct conversation,
    /// under their own name. A front end lets `Active` lapse after 6 s and `Paused` after
    /// 30 s, and treats a message from them as `Done`.
    Typing {
        /// The room, or the sender's name for a direct conversation.
        target: String,
        /// Who.
        name: String,
        /// What they are doing.
        state: Typing,
    },
    /// Text from the server: welcome, MOTD, notices.
    ServerInfo {
        /// The text.
        text: String,
    },
    /// The server refused something we did (e.g. "Cannot send to channel").
    ServerError {
        /// The server's explanation.
        text: String,
    },
    /// An ICMP ping was answered.
    PingReply {
        /// Round-trip time.
        rtt: Duration,
    },
    /// An ICMP ping went unanswered (not yet fatal).
    PingMissed {
        /// Misses in a row so far.
        consecutive: u32,
        /// What went wrong.
        error: String,
    },
    /// ICMP is not permitted here; the session watches the server with IRC `PING` instead.
    PingUnavailable {
        /// Why, and how to enable it.
        reason: String,
    },
    /// The server announced it is shutting down.
    ServerShutdown {
        /// Its words.
        message: String,
    },
    /// The connection was lost and the client will connect again by itself `after` this long
    /// (its `attempt`-th try since the loss, counting from 1). The new session registers under the
    /// same name (or, while the server still holds it, the same with `_` added), rejoins the
    /// rooms and fills what was missed ([`HistoryPage::Missed`]); commands given meanwhile are
    /// refused with an [`Event::ServerError`] that says so, except a quit, which ends it all.
    Reconnecting {
        /// Why the last connection ended, or why the last attempt failed.
        reason: String,
        /// How long until the next try.
        after: Duration,
        /// Which try this is (1 for the first after the loss).
        attempt: u32,
    },
    /// The session is over; no more events follow. The core never queues this one: it reports
    /// the end through [`Session::ended`](super::Session::ended), and the driver sends this
    /// event last, after writing the final lines.
    Disconnected(Disconnect),
}

/// Why the session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Disconnect {
    /// We quit.
    Quit,
    /// The server shut down.
    ServerShutdown,
    /// The server's IP stopped answering ICMP pings.
    PingFailed {
        /// The server's IP.
        target: IpAddr,
        /// Misses in a row.
        misses: u32,
    },
    /// The server stopped answering IRC `PING`s.
    ServerNotResponding {
        /// How long it has been silent.
        silent: Duration,
    },
    /// The server closed the link with an `ERROR`.
    ClosedByServer {
        /// Its reason.
        reason: String,
    },
    /// The connection broke.
    ConnectionLost {
        /// What happened.
        reason: String,
    },
}

impl Disconnect {
    /// Whether this is a normal end (the exit status of a front end can follow it).
    pub fn is_clean(&self) -> bool {
        matches!(self, Disconnect::Quit | Disconnect::ServerShutdown)
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Quit => write!(f, "you left the chat"),
            Disconnect::ServerShutdown => write!(f, "the server shut down"),
            Disconnect::PingFailed { target, misses } => write!(
                f,
                "server {target} stopped answering pings ({misses} missed in a row); check your network"
            ),
            Disconnect::ServerNotResponding { silent } => write!(
                f,
                "the server stopped responding (silent for {}s); check your network and reconnect",
                silent.as_secs()
            ),
            Disconnect::ClosedByServer { reason } => {
                write!(f, "the server closed the connection: {reason}")
            }
            Disconnect::ConnectionLost { reason } => write!(
                f,
                "the connection was lost: {reason}; reconnect to continue"
            ),
        }
    }
}

/// What an ICMP pinger watching the server's host reports. The pinger counts the misses and
/// says when they reached its limit; the core decides what each report means for the session.
/// (`parla_net::ping::PingEvent` is this type: the ICMP watcher reports in the core's terms.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingReport {
    /// The host answered.
    Reply {
        /// Round-trip time of this ping.
        rtt: Duration,
    },
    /// The host did not answer this time.
    Missed {
        /// Misses in a row so far, this one included.
        consecutive: u32,
        /// Why, for people.
        error: String,
    },
    /// ICMP is not permitted for this process; the pinger has stopped.
    Unavailable {
        /// Why, and what to do about it.
        reason: String,
    },
    /// The configured number of misses in a row was reached: the host counts as gone.
    Failed {
        /// How many pings in a row went unanswered.
        misses: u32,
        /// The host that stopped answering.
        target: IpAddr,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_reasons_say_what_to_do() {
        let d = Disconnect::PingFailed {
            target: "10.0.0.5".parse().unwrap(),
            misses: 3,
        };
        assert_eq!(
            d.to_string(),
            "server 10.0.0.5 stopped answering pings (3 missed in a row); check your network"
        );
        assert!(!d.is_clean());
        assert!(Disconnect::Quit.is_clean());
    }
}
