//! The client side of one IRC connection as a sans-IO state machine, in the server core's shape:
//! the protocol decisions of Parla's client (registration, rooms, messages, liveness, how it
//! ends) live here, so they are tested without sockets and the TCP session and the simulation
//! drive the very same code.
//!
//! Inputs are `handle_*` calls that take the current time: a line from the server
//! ([`Session::handle_line`]), a person's [`Command`], an ICMP [`PingReport`], a timeout, the
//! connection closing. Outputs are drained: lines to send ([`Session::poll_transmit`]), events
//! for the front end ([`Session::poll_event`]), the next wake-up ([`Session::poll_timeout`]),
//! and, once over, why ([`Session::ended`]).
//!
//! Every handler queues its events before its lines (no handler needs a line out before an
//! event), so a driver that forwards the events of an input, then writes its lines, keeps the
//! order in which things happened.
//!
//! - `events`: the vocabulary: [`Command`], [`Event`], [`MessageKind`], [`Disconnect`],
//!   [`PingReport`].
//! - `registration`: `CAP`, `PASS`/`NICK`/`USER`, the welcome, refused names.
//! - `rooms`: joins, parts, quits, renames, topics and the member lists.
//! - `messages`: `PRIVMSG`/`NOTICE` in and out, and splitting long text ([`message_pieces`]).
//! - `liveness`: `PING`/`PONG`, the silence watch, ICMP reports, `ERROR`, quitting.
//! - `history`: the server's history of our conversations (`draft/chathistory`): the recent
//!   past on joining, older pages, what was missed while away, each message reported once.
//! - `moderation`: kicks, invitations, modes, topics, away, operators, `WHOIS`, and typing
//!   notifications, in and out.

mod events;
mod history;
mod liveness;
mod messages;
mod moderation;
mod registration;
mod rooms;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::message::{Message, split_source};
use crate::names::same_name;
use crate::numerics::*;
use crate::time::Millis;

pub use events::{
    Command, Disconnect, Event, HistoryPage, Member, MessageKind, PingReport, Said, Typing,
};
pub use history::{HISTORY_PAGE, HISTORY_WAIT_MS, Resume};
pub use liveness::QUIT_WAIT_MS;
pub use messages::{message_pieces, split_text};
pub use moderation::TYPING_ACTIVE_EVERY_MS;

/// What a command given while the connection is being made again is answered with.
pub const RECONNECTING: &str =
    "Not sent: the connection is lost and Parla is reconnecting; send it again once back";

/// What the session says about itself and how it watches the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The IRC username (`USER`); shown as `~username` by Parla.
    pub username: String,
    /// The real name shown by `WHOIS`.
    pub realname: String,
    /// The server password, if it has one.
    pub password: Option<String>,
    /// The room to be in after registering (Parla puts everyone in `#lobby` anyway).
    pub room: Option<String>,
    /// After this long without a line from the server, send it an IRC `PING`...
    pub irc_ping_interval_ms: u64,
    /// ...and give up if nothing arrives for this long after that.
    pub irc_ping_timeout_ms: u64,
    /// A deliberate bug to plant (tests of the simulation's checkers).
    #[cfg(feature = "deliberate-bugs")]
    pub bug: Option<crate::Bug>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            username: "parla".to_owned(),
            realname: "Parla user".to_owned(),
            password: None,
            room: Some("#lobby".to_owned()),
            irc_ping_interval_ms: 30_000,
            irc_ping_timeout_ms: 30_000,
            #[cfg(feature = "deliberate-bugs")]
            bug: None,
        }
    }
}

/// One client session: what we know of the server, our name and our rooms, and the lines and
/// events waiting to be drained.
#[derive(Debug)]
pub struct Session {
    config: Config,
    /// Our name, once asked for (and as the server last confirmed it).
    nick: Option<String>,
    /// `001` arrived.
    registered: bool,
    /// `USER` goes out once, with the first `NICK`.
    user_sent: bool,
    /// The current room (display form).
    room: Option<String>,
    /// The rooms we are in (display form), in the order we joined them.
    rooms: Vec<String>,
    /// Members per room we are in (folded room name → members).
    members: BTreeMap<String, Vec<Member>>,
    /// `353` lines collected until `366` (folded room name → members).
    pending_names: BTreeMap<String, Vec<Member>>,
    /// The capabilities the server acknowledged.
    caps: BTreeSet<String>,
    /// The server's status modes and their prefixes, highest first (`PREFIX` in `005`).
    prefixes: Vec<(char, char)>,
    /// The server's other room modes by kind (`CHANMODES` in `005`): lists, always with an
    /// argument, with one only when set, never with one.
    chanmodes: [String; 4],
    /// The last typing notification sent: to which target (folded), what, and when.
    typing_sent: Option<(String, Typing, Millis)>,
    /// Rooms whose member list the server left out (folded names): see [`Event::Members`].
    partial: BTreeSet<String>,
    /// When the server last sent a line.
    last_rx: Millis,
    /// A liveness `PING` is out and unanswered.
    irc_ping_sent: bool,
    /// We sent `QUIT` and wait until then for the server to close the link.
    quit_deadline: Option<Millis>,
    /// Why the session is over, once it is.
    ended: Option<Disconnect>,
    /// What we reported of each conversation (folded room or person), for history.
    recall: BTreeMap<String, history::Recall>,
    /// Open `chathistory` batches: reference → folded conversation.
    batches: BTreeMap<String, String>,
    /// History pages asked for and not yet reported, in the order asked.
    fetches: VecDeque<history::Fetch>,
    /// The most messages the server gives per history request (`CHATHISTORY` in `005`).
    history_max: usize,
    /// This session carries on one whose connection was lost: it registers under the name it
    /// had (or that name with `_` added while the server still holds it) and rejoins its rooms.
    resumed: Option<Resume>,
    /// Lines to send, without CR LF.
    transmits: VecDeque<String>,
    /// Events for the front end.
    events: VecDeque<Event>,
}

impl Session {
    /// A session on a connection that opened at `now`. Its first lines (`CAP LS`, and `PASS`
    /// when there is a password) are queued at once; it then waits for a [`Command::Nick`].
    pub fn new(config: Config, now: Millis) -> Session {
        let mut session = Session::blank(config, now);
        session.start();
        session
    }

    /// A session on a new connection that carries on from one whose connection was lost
    /// ([`Session::resume`]): it asks for the same name at once, rejoins the same rooms once
    /// registered, and fills in from the server's history what was said meanwhile.
    pub fn resumed(config: Config, now: Millis, mut resume: Resume) -> Session {
        let mut session = Session::blank(config, now);
        session.recall = std::mem::take(&mut resume.recall);
        let nick = resume.nick.clone();
        session.resumed = Some(resume);
        session.start();
        session.command_nick(&nick);
        session
    }

    fn blank(config: Config, now: Millis) -> Session {
        Session {
            config,
            nick: None,
            registered: false,
            user_sent: false,
            room: None,
            rooms: Vec::new(),
            members: BTreeMap::new(),
            pending_names: BTreeMap::new(),
            caps: BTreeSet::new(),
            prefixes: vec![('o', '@'), ('v', '+')],
            chanmodes: ["beI", "k", "l", "imnst"].map(str::to_owned),
            typing_sent: None,
            partial: BTreeSet::new(),
            last_rx: now,
            irc_ping_sent: false,
            quit_deadline: None,
            ended: None,
            recall: BTreeMap::new(),
            batches: BTreeMap::new(),
            fetches: VecDeque::new(),
            history_max: history::HISTORY_PAGE,
            resumed: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// A line from the server, without its CR LF. Any line, even one that is not UTF-8 or not
    /// IRC, shows the server is alive; those are otherwise ignored.
    pub fn handle_line(&mut self, now: Millis, line: &[u8]) {
        if self.ended.is_some() {
            return;
        }
        self.heard_from_server(now);
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        let Ok(msg) = Message::parse(text) else {
            return;
        };
        self.dispatch(now, &msg);
    }

    /// What the person asked for. Ignored once quitting: the session is on its way out.
    pub fn handle_command(&mut self, now: Millis, command: Command) {
        if self.ended.is_some() || self.quit_deadline.is_some() {
            return;
        }
        // A session carrying on a lost one registers and rejoins on its own; until it has, what
        // the person asks for would go nowhere (no room yet) or be refused by the server.
        if self.resumed.is_some() && !self.registered && !matches!(command, Command::Quit(_)) {
            return self.emit(Event::ServerError {
                text: RECONNECTING.to_owned(),
            });
        }
        match command {
            Command::Nick(name) => self.command_nick(&name),
            Command::Say(text) => {
                self.command_say(&text);
                self.typing_done(now);
            }
            Command::Action(text) => {
                self.command_action(&text);
                self.typing_done(now);
            }
            Command::Msg { to, text } => self.say(&to, &text, false),
            Command::Join(room) => self.command_join(&room),
            Command::Names => self.command_names(),
            Command::Quit(reason) => self.command_quit(now, reason),
            Command::Raw(line) => self.command_raw(&line),
            Command::Part { room, reason } => self.command_part(room, reason),
            Command::Topic { room, topic } => self.command_topic(room, topic),
            Command::Kick { room, name, reason } => self.command_kick(room, &name, reason),
            Command::Mode { target, args } => self.command_mode(target, &args),
            Command::Invite { name, room } => self.command_invite(&name, room),
            Command::Oper { name, password } => self.command_oper(&name, &password),
            Command::Away(message) => self.command_away(message),
            Command::Whois(name) => self.command_whois(&name),
            Command::Typing(state) => self.command_typing(now, state),
            Command::Older(target) => self.command_older(now, target),
        }
    }

    /// `/quote LINE`: the line as typed, if it is one line.
    fn command_raw(&mut self, line: &str) {
        if line.contains(['\r', '\n', '\0']) {
            return self.emit(Event::ServerError {
                text: "Not sent: a raw line cannot contain a line break or a NUL; send one line at a time".into(),
            });
        }
        if !line.trim().is_empty() {
            self.send(line.to_owned());
        }
    }

    /// Lines to send, in order, without CR LF (the driver frames them).
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.transmits.pop_front()
    }

    /// Events for the front end, in order. [`Event::Disconnected`] never comes from here: see
    /// [`Session::ended`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Why the session is over, once it is. The driver then writes what
    /// [`Session::poll_transmit`] still holds, reports [`Event::Disconnected`] and closes.
    pub fn ended(&self) -> Option<&Disconnect> {
        self.ended.as_ref()
    }

    /// We sent `QUIT` and wait for the server to close; commands and ping reports are not
    /// taken any more.
    pub fn is_quitting(&self) -> bool {
        self.quit_deadline.is_some()
    }

    /// Our name: the one asked for, then as the server confirmed it.
    pub fn nick(&self) -> Option<&str> {
        self.nick.as_deref()
    }

    /// The current room (display form).
    pub fn room(&self) -> Option<&str> {
        self.room.as_deref()
    }

    /// The server accepted our name (`001`).
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// One line from the server, already parsed. The order of the arms matters: a refused name
    /// after registration, for one, is an ordinary error.
    fn dispatch(&mut self, now: Millis, msg: &Message<'_>) {
        let from = msg.source.map(|s| split_source(s).0).unwrap_or("");
        let p = &msg.params;
        let last = p.last().copied().unwrap_or("");
        let verb = msg.verb.to_ascii_uppercase();
        match verb.as_str() {
            "PING" => self.on_ping(last),
            "CAP" => self.on_cap(p),
            RPL_WELCOME => self.on_welcome(from, p, last),
            RPL_ISUPPORT => self.on_isupport(p),
            ERR_NONICKNAMEGIVEN | ERR_ERRONEUSNICKNAME | ERR_NICKNAMEINUSE if !self.registered => {
                self.on_name_refused(p, last)
            }
            RPL_NAMREPLY if p.len() >= 4 => self.on_names_reply(p[2], p[3]),
            RPL_ENDOFNAMES if p.len() >= 2 => self.on_end_of_names(p[1]),
            RPL_TOPIC if p.len() >= 3 => self.on_topic(p[1], last),
            RPL_NOTOPIC if p.len() >= 2 => self.on_topic(p[1], ""),
            RPL_MOTD | RPL_MOTDSTART | RPL_ENDOFMOTD | ERR_NOMOTD | RPL_YOURHOST | RPL_CREATED => {
                self.emit(Event::ServerInfo { text: last.into() })
            }
            code if code.len() == 3 && (code.starts_with('4') || code.starts_with('5')) => {
                self.on_error_numeric(p, last)
            }
            code if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => {
                self.on_info_numeric(code, p)
            }
            "PRIVMSG" | "NOTICE" if p.len() >= 2 => self.on_message(msg, &verb, from, last),
            "JOIN" if !p.is_empty() => self.on_join(now, from, p[0]),
            "PART" if !p.is_empty() => self.on_part(from, p[0], p.get(1).copied()),
            "QUIT" => self.on_quit(from, last),
            "NICK" if !p.is_empty() => self.on_nick(from, p[0]),
            "TOPIC" if p.len() >= 2 => self.on_topic(p[0], last),
            "KICK" if p.len() >= 2 => self.on_kick(from, p[0], p[1], p.get(2).copied()),
            "INVITE" if p.len() >= 2 => self.on_invite(from, p[0], p[1]),
            "MODE" if p.len() >= 2 => self.on_mode(from, p),
            "TAGMSG" if !p.is_empty() => self.on_tagmsg(msg, from, p[0]),
            "ERROR" => self.on_error(last),
            "BATCH" => self.on_batch(now, p),
            "FAIL" => self.on_fail(now, p),
            _ => {}
        }
    }

    /// `<me> <subject> :<text>`: a refusal, shown with its subject.
    fn on_error_numeric(&mut self, p: &[&str], last: &str) {
        let text = match p.len() {
            3.. => format!("{}: {last}", p[1]),
            _ => last.to_owned(),
        };
        self.emit(Event::ServerError { text });
    }

    /// Whether `name` is ours (as the server last confirmed it).
    fn is_me(&self, name: &str) -> bool {
        same_name(name, self.nick.as_deref().unwrap_or(""))
    }

    fn send(&mut self, line: String) {
        self.transmits.push_back(line);
    }

    fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Ends the session for `why`, unless it already ended.
    fn end(&mut self, why: Disconnect) {
        if self.ended.is_none() {
            self.ended = Some(why);
        }
    }
}
