//! What the chat screen shows, kept apart from how it is drawn: the lines of the room, the
//! members, the status, and the rules for long input. [`Chat::apply`] folds session events into
//! it; `app/` draws it. No egui here, so it is tested on its own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use parla_net::client::{
    Command, Event, HistoryPage, Member, MessageKind, Said, Typing, casefold, message_pieces,
};

/// Lines kept in the scrollback; older ones are dropped so memory stays bounded (and so does
/// the work of each frame: egui lays out every line of the scroll area).
pub const MAX_LINES: usize = 2000;

/// The most a person may send in one go. The session splits anything longer than one IRC line
/// (512 bytes with the prefix) into several messages, so this is about the flood a paste may
/// cause (about ten messages), not about the protocol.
pub const MAX_INPUT_BYTES: usize = 4096;

/// Shown under the member list of a room the server did not list (Parla leaves the list out
/// above `--quiet-joins-above` members).
pub const PARTIAL_MEMBERS: &str = "This room is too large for the server to list on joining: people appear here as they speak. Type /names for everyone.";

/// How long someone's "is typing" lasts without another notification (the IRCv3
/// recommendation: senders repeat it every 3 s while typing).
pub const TYPING_LAPSES_AFTER: Duration = Duration::from_secs(6);

/// One line in the message area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Local wall-clock time, `HH:MM`.
    pub time: String,
    /// What it is.
    pub kind: LineKind,
}

/// The kinds of line, each drawn differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// Someone (maybe us) said something.
    Message {
        /// The sender.
        from: String,
        /// The text.
        text: String,
        /// Message, `/me` action, or notice.
        kind: MessageKind,
        /// We sent it.
        own: bool,
        /// A direct message: the other person (the recipient of ours, the sender of theirs).
        direct: Option<String>,
        /// The room, when it is not the current one.
        room: Option<String>,
        /// Someone else's message that names us (highlighted).
        mention: bool,
    },
    /// Joins, leaves, renames, server notices: quieter.
    System(String),
    /// Something went wrong or was refused: stands out.
    Error(String),
    /// A divider across the scrollback, e.g. "— earlier messages in #lobby —".
    Divider(String),
}

impl Line {
    /// The line as plain text: what a screen reader reads and what tests look for.
    pub fn plain(&self) -> String {
        let body = match &self.kind {
            LineKind::Message {
                from,
                text,
                kind,
                own,
                direct,
                room,
                ..
            } => {
                let room = room.as_ref().map(|r| format!("[{r}] ")).unwrap_or_default();
                let dm = match (direct, own) {
                    (Some(to), true) => format!("(direct to {to}) "),
                    (Some(_), false) => "(direct) ".to_owned(),
                    (None, _) => String::new(),
                };
                match kind {
                    MessageKind::Normal => format!("{room}{from}: {dm}{text}"),
                    MessageKind::Action => format!("{room}* {from} {dm}{text}"),
                    MessageKind::Notice => format!("{room}-{from}- {dm}{text}"),
                }
            }
            LineKind::System(text) | LineKind::Error(text) => text.clone(),
            LineKind::Divider(text) => format!("— {text} —"),
        };
        // Received text keeps its IRC styles for the window to draw; the plain form drops them.
        format!("{} {}", self.time, crate::safe::plain(&body))
    }
}

/// The state of the ICMP liveness pings, for the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PingStatus {
    /// Not pinging (`--no-ping`, or not connected).
    #[default]
    Off,
    /// Pinging; no answer yet.
    Waiting,
    /// The last ping came back after this long.
    Rtt(Duration),
    /// This many pings in a row went unanswered.
    Missed(u32),
    /// ICMP is not permitted here; the session watches the server with IRC `PING` instead.
    Unavailable,
}

impl PingStatus {
    /// For the status bar.
    pub fn describe(&self) -> String {
        match self {
            PingStatus::Off => "ping off".to_owned(),
            PingStatus::Waiting => "ping …".to_owned(),
            PingStatus::Rtt(rtt) => format!("ping {:.1} ms", rtt.as_secs_f64() * 1000.0),
            PingStatus::Missed(n) => format!("ping missed ({n} in a row)"),
            PingStatus::Unavailable => "ping unavailable (IRC PING instead)".to_owned(),
        }
    }
}

/// Everything the chat screen shows.
#[derive(Debug, Clone, Default)]
pub struct Chat {
    /// The scrollback, oldest first, at most [`MAX_LINES`].
    pub lines: VecDeque<Line>,
    /// Our name, once registered.
    pub me: Option<String>,
    /// The server's name (from its welcome).
    pub server_name: Option<String>,
    /// The room that `Say` goes to.
    pub room: Option<String>,
    /// Topics by casefolded room.
    pub topics: BTreeMap<String, String>,
    /// Members by casefolded room, sorted.
    pub members: BTreeMap<String, Vec<Member>>,
    /// Casefolded rooms whose list the server left out (too large): their `members` are only
    /// the people seen speaking there.
    pub partial: BTreeSet<String>,
    /// Liveness.
    pub ping: PingStatus,
    /// Who is typing, by casefolded room (or, for a direct conversation, name), until when.
    pub typing: BTreeMap<String, Vec<(String, Instant)>>,
    /// The last invitation to a room, until joined or dismissed: (who, room).
    pub invitation: Option<(String, String)>,
    /// The connection was lost and the client tries again at this time.
    pub reconnect_at: Option<Instant>,
    /// An older page was asked for and has not come (rooms and people, casefolded).
    pub fetching_older: BTreeSet<String>,
    /// Conversations whose history was shown back to its start (casefolded).
    pub history_start: BTreeSet<String>,
    /// Lines put at the top of the scrollback since the last frame (the view keeps its place).
    pub prepended: usize,
    /// Lines added at the bottom since the start (never goes down).
    pub appended: u64,
    /// The window has the focus (the person is looking): nothing counts as unread then.
    pub focused: bool,
    /// Messages from others since the window lost the focus...
    pub unread: usize,
    /// ... and of those, how many name us or were sent to us directly.
    pub unread_for_me: usize,
    /// Desktop notifications to show (for us, while not focused), oldest first.
    pub notices: Vec<Notice>,
    /// The rooms we are in, in the order joined (the room bar shows them as tabs when more
    /// than one).
    pub rooms: Vec<String>,
    /// Messages in rooms other than the current one since it was last current (casefolded).
    pub room_unread: BTreeMap<String, usize>,
}

/// A desktop notification: a mention or a direct message that arrived while the window was not
/// focused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Who, and where: "ben in #lobby", "ben (direct message)".
    pub title: String,
    /// What they said (plain, at most [`NOTICE_CHARS`] characters).
    pub body: String,
}

/// How much of a message a notification shows.
pub const NOTICE_CHARS: usize = 200;

impl Chat {
    /// Adds a line at `time` (`HH:MM`), dropping the oldest beyond [`MAX_LINES`].
    pub fn push(&mut self, time: String, kind: LineKind) {
        self.push_line(Line { time, kind });
    }

    fn push_line(&mut self, line: Line) {
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        self.appended += 1;
    }

    /// The window's title: the room, and what arrived while the person looked elsewhere.
    pub fn title(&self) -> String {
        let mut title = match &self.room {
            Some(room) => format!("Parla — {room}"),
            None => "Parla".to_owned(),
        };
        match (self.unread, self.unread_for_me) {
            (0, _) => {}
            (n, 0) => title.push_str(&format!(" ({n} new)")),
            (n, m) => title.push_str(&format!(" ({n} new, {m} for you)")),
        }
        title
    }

    /// The window got the focus back: everything is read.
    pub fn set_focused(&mut self, focused: bool) {
        self.focused = focused;
        if focused {
            self.unread = 0;
            self.unread_for_me = 0;
        }
    }

    /// A live message from someone else, while the person may not be looking.
    fn count_unread(&mut self, m: &Said) {
        if m.own || self.focused {
            return;
        }
        self.unread += 1;
        let direct = !is_room(&m.target);
        if direct || self.names_me(&m.text) {
            self.unread_for_me += 1;
            let title = match direct {
                true => format!("{} (direct message)", m.from),
                false => format!("{} in {}", m.from, m.target),
            };
            let text = crate::safe::plain(&m.text);
            let mut body: String = text.chars().take(NOTICE_CHARS).collect();
            if body.len() < text.len() {
                body.push('…');
            }
            self.notices.push(Notice { title, body });
        }
    }

    /// `text` names us: our name as a word of its own, in any case.
    pub fn names_me(&self, text: &str) -> bool {
        let Some(me) = self.me.as_deref().filter(|m| !m.is_empty()) else {
            return false;
        };
        let (text, me) = (casefold(text), casefold(me));
        let part_of_name = |c: char| c.is_alphanumeric() || "-_[]{}\\`^|".contains(c);
        text.match_indices(&me).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + me.len()..].chars().next();
            !before.is_some_and(part_of_name) && !after.is_some_and(part_of_name)
        })
    }

    /// The line that shows a message.
    fn line_of(&self, m: &Said) -> Line {
        let room = is_room(&m.target);
        let direct = (!room).then(|| if m.own { &m.target } else { &m.from }.clone());
        Line {
            time: clock(m.time.as_deref()),
            kind: LineKind::Message {
                from: m.from.clone(),
                text: m.text.clone(),
                kind: m.kind,
                own: m.own,
                direct,
                room: (room && !self.is_current(&m.target)).then(|| m.target.clone()),
                mention: !m.own && self.names_me(&m.text),
            },
        }
    }

    /// A page of history: the recent past under a divider, what was missed likewise, an older
    /// page at the top of the scrollback (if it has room for it).
    fn history(&mut self, target: &str, page: HistoryPage, messages: &[Said], more: bool) {
        let key = casefold(target);
        // Whichever page came, the one asked for was answered or never will be.
        self.fetching_older.remove(&key);
        if page != HistoryPage::Missed && !more {
            self.history_start.insert(key);
        }
        if messages.is_empty() && page != HistoryPage::Older {
            return;
        }
        let lines: Vec<Line> = messages.iter().map(|m| self.line_of(m)).collect();
        let divider = |text: String| Line {
            time: String::new(),
            kind: LineKind::Divider(text),
        };
        match page {
            HistoryPage::Recent | HistoryPage::Missed => {
                let heading = match page {
                    HistoryPage::Recent => format!("earlier messages in {target}"),
                    _ => format!("missed in {target} while you were away"),
                };
                self.push_line(divider(heading));
                for line in lines {
                    self.push_line(line);
                }
                self.push_line(divider("now".to_owned()));
            }
            HistoryPage::Older => {
                let before = self.lines.len();
                for line in lines.into_iter().rev() {
                    if self.lines.len() == MAX_LINES {
                        break;
                    }
                    self.lines.push_front(line);
                }
                if !more && self.lines.len() < MAX_LINES {
                    self.lines.push_front(divider(format!(
                        "the start of what the server kept of {target}"
                    )));
                }
                self.prepended += self.lines.len() - before;
            }
        }
    }

    /// Whether to ask for an older page of the current room now (the view is at the top of the
    /// scrollback): not while one is coming, not past the start, not into a full scrollback.
    /// Marks it asked.
    pub fn want_older(&mut self) -> Option<String> {
        let room = self.room.clone()?;
        let key = casefold(&room);
        if self.fetching_older.contains(&key)
            || self.history_start.contains(&key)
            || self.lines.len() + parla_net::client::HISTORY_PAGE > MAX_LINES
        {
            return None;
        }
        self.fetching_older.insert(key);
        Some(room)
    }

    /// The connection is gone: nobody is "here" any more (the member lists, who is typing, an
    /// invitation go), but what was said stays on screen.
    pub fn offline(&mut self) {
        self.fetching_older.clear();
        self.members.clear();
        self.partial.clear();
        self.typing.clear();
        self.invitation = None;
    }

    /// Connecting again: the scrollback stays, with a line where the new session begins; the
    /// rest starts afresh.
    pub fn reconnecting(&mut self, to: &str) {
        let lines = std::mem::take(&mut self.lines);
        *self = Chat {
            lines,
            ..Chat::default()
        };
        self.system(format!("— Reconnecting to {to} —"));
    }

    /// A quiet line, stamped now.
    pub fn system(&mut self, text: impl Into<String>) {
        self.push(clock(None), LineKind::System(text.into()));
    }

    /// A line that stands out, stamped now.
    pub fn error(&mut self, text: impl Into<String>) {
        self.push(clock(None), LineKind::Error(text.into()));
    }

    /// The members of the current room.
    pub fn current_members(&self) -> &[Member] {
        self.room
            .as_ref()
            .and_then(|r| self.members.get(&casefold(r)))
            .map_or(&[], Vec::as_slice)
    }

    /// We are an operator of the current room (and may kick, ban, op, voice, set the topic).
    pub fn operator_here(&self) -> bool {
        self.current_members()
            .iter()
            .any(|m| m.is_operator() && self.is_me(&m.name))
    }

    /// "bob is typing…" for the current room, as of `now` (`None` when nobody is).
    pub fn typing_text(&self, now: Instant) -> Option<String> {
        let room = casefold(self.room.as_deref()?);
        let names: Vec<&str> = self
            .typing
            .get(&room)?
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(name, _)| name.as_str())
            .collect();
        match names[..] {
            [] => None,
            [one] => Some(format!("{one} is typing…")),
            [a, b] => Some(format!("{a} and {b} are typing…")),
            [a, b, c] => Some(format!("{a}, {b} and {c} are typing…")),
            _ => Some(format!("{} people are typing…", names.len())),
        }
    }

    /// When the next "is typing" lapses (to redraw then).
    pub fn next_typing_lapse(&self) -> Option<Instant> {
        self.typing
            .values()
            .flatten()
            .map(|(_, until)| *until)
            .min()
    }

    /// `name` stopped typing in `target` (or everywhere, for `None`).
    fn stopped_typing(&mut self, target: Option<&str>, name: &str) {
        let key = target.map(casefold);
        for (room, list) in &mut self.typing {
            if key.as_ref().is_none_or(|k| k == room) {
                list.retain(|(n, _)| casefold(n) != casefold(name));
            }
        }
        self.typing.retain(|_, list| !list.is_empty());
    }

    /// The heading over the current room's member list: a count, or, when the server left the
    /// list out, how many were seen so far and how to get everyone.
    pub fn members_heading(&self) -> (String, Option<&'static str>) {
        let n = self.current_members().len();
        let partial = self
            .room
            .as_ref()
            .is_some_and(|r| self.partial.contains(&casefold(r)));
        if partial {
            (format!("Members: {n} seen"), Some(PARTIAL_MEMBERS))
        } else {
            (format!("Members ({n})"), None)
        }
    }

    /// The topic of the current room, if it has one.
    pub fn current_topic(&self) -> Option<&str> {
        self.room
            .as_ref()
            .and_then(|r| self.topics.get(&casefold(r)))
            .map(String::as_str)
            .filter(|t| !t.is_empty())
    }

    fn is_me(&self, name: &str) -> bool {
        self.me
            .as_deref()
            .is_some_and(|me| casefold(me) == casefold(name))
    }

    fn is_current(&self, room: &str) -> bool {
        self.room
            .as_deref()
            .is_some_and(|r| casefold(r) == casefold(room))
    }

    /// Folds one session event into what is shown. Lifecycle events (name refused,
    /// disconnected) are the app's business; this only records what the person should see.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Registered { name, server } => {
                self.reconnect_at = None;
                self.me = Some(name.clone());
                self.server_name = (!server.is_empty()).then(|| server.clone());
            }
            Event::Joined { room } => {
                if !self.rooms.iter().any(|r| casefold(r) == casefold(room)) {
                    self.rooms.push(room.clone());
                }
                self.room_unread.remove(&casefold(room));
                self.room = Some(room.clone());
                if self
                    .invitation
                    .as_ref()
                    .is_some_and(|(_, to)| casefold(to) == casefold(room))
                {
                    self.invitation = None;
                }
                self.system(format!("You joined {room}."));
            }
            Event::Switched { room } => {
                self.room_unread.remove(&casefold(room));
                self.room = Some(room.clone());
                self.system(format!("Now talking in {room}."));
            }
            Event::Members {
                room,
                members,
                complete,
            } => {
                self.members.insert(casefold(room), members.clone());
                if *complete {
                    self.partial.remove(&casefold(room));
                } else {
                    self.partial.insert(casefold(room));
                }
            }
            Event::Message(m) => {
                // A message is the end of its sender's typing.
                let conversation = if is_room(&m.target) {
                    &m.target
                } else {
                    &m.from
                };
                self.stopped_typing(Some(conversation), &m.from);
                self.count_unread(m);
                if is_room(&m.target) && !m.own && !self.is_current(&m.target) {
                    *self.room_unread.entry(casefold(&m.target)).or_default() += 1;
                }
                let line = self.line_of(m);
                self.push_line(line);
            }
            Event::History {
                target,
                page,
                messages,
                more,
            } => self.history(target, *page, messages, *more),
            Event::Reconnecting {
                reason,
                after,
                attempt,
            } => {
                self.offline();
                self.reconnect_at = Some(Instant::now() + *after);
                let wait = reconnect_wait(*after, *attempt);
                self.error(format!("Connection lost: {reason}. Reconnecting {wait}…"));
            }
            Event::UserJoined { room, name } => self.system(format!("→ {name} joined {room}")),
            Event::UserLeft { room, name, reason } => {
                self.stopped_typing(Some(room), name);
                match reason {
                    Some(r) if !r.is_empty() => self.system(format!("← {name} left {room} ({r})")),
                    _ => self.system(format!("← {name} left {room}")),
                }
            }
            Event::UserQuit { name, reason } => {
                self.stopped_typing(None, name);
                self.system(format!("← {name} quit ({reason})"));
            }
            Event::Left { room, current } => {
                self.rooms.retain(|r| casefold(r) != casefold(room));
                self.room_unread.remove(&casefold(room));
                if let Some(now) = current {
                    self.room_unread.remove(&casefold(now));
                }
                self.members.remove(&casefold(room));
                self.partial.remove(&casefold(room));
                self.typing.remove(&casefold(room));
                self.room = current.clone();
                match current {
                    Some(now) => self.system(format!("You left {room}; messages now go to {now}.")),
                    None => self.system(format!("You left {room}; /join #room to talk again.")),
                }
            }
            Event::Kicked {
                room,
                name,
                by,
                reason,
            } => {
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                if self.is_me(name) {
                    self.error(format!("{by} removed you from {room}{reason}"));
                } else {
                    self.stopped_typing(Some(room), name);
                    self.system(format!("← {by} removed {name} from {room}{reason}"));
                }
            }
            Event::Invited { room, name, by } => {
                if self.is_me(name) {
                    self.invitation = Some((by.clone(), room.clone()));
                    self.system(format!("{by} invites you to {room}; /join {room} to go in"));
                } else {
                    self.system(format!("{by} invited {name} to {room}"));
                }
            }
            Event::ModeChanged { target, by, change } => {
                if self.is_me(target) {
                    self.system(format!("Your modes changed: {change}"));
                } else {
                    self.system(format!("{by} sets mode {change} on {target}"));
                }
            }
            Event::Typing {
                target,
                name,
                state,
            } => {
                self.stopped_typing(Some(target), name);
                if *state == Typing::Active {
                    let until = Instant::now() + TYPING_LAPSES_AFTER;
                    self.typing
                        .entry(casefold(target))
                        .or_default()
                        .push((name.clone(), until));
                }
            }
            Event::Renamed { old, new } => {
                self.stopped_typing(None, old);
                if self.is_me(old) {
                    self.me = Some(new.clone());
                    self.system(format!("You are now known as {new}"));
                } else {
                    self.system(format!("{old} is now known as {new}"));
                }
            }
            Event::Topic { room, topic } => {
                self.topics.insert(casefold(room), topic.clone());
                if topic.is_empty() {
                    self.system(format!("The topic of {room} was cleared"));
                } else {
                    self.system(format!("Topic of {room}: {topic}"));
                }
            }
            Event::ServerInfo { text } => self.system(text.clone()),
            Event::ServerError { text } => self.error(text.clone()),
            Event::PingReply { rtt } => self.ping = PingStatus::Rtt(*rtt),
            Event::PingMissed { consecutive, error } => {
                self.ping = PingStatus::Missed(*consecutive);
                self.error(format!("Ping {consecutive} unanswered: {error}"));
            }
            Event::PingUnavailable { reason } => {
                self.ping = PingStatus::Unavailable;
                self.system(format!(
                    "ICMP pings are not possible here; watching the connection with IRC PING instead. ({reason})"
                ));
            }
            Event::ServerShutdown { message } => {
                self.error(format!("The server is shutting down: {message}"));
            }
            Event::NameRefused { .. } | Event::Disconnected(_) => {}
        }
    }
}

/// Where `text` holds web links (`http://` or `https://`, up to a space, less the punctuation
/// that ends a sentence or closes a bracket around it): byte ranges, in order.
pub fn links(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("http").map(|i| from + i) {
        let rest = &text[at..];
        let scheme = ["https://", "http://"]
            .iter()
            .find(|s| rest.starts_with(**s));
        // A link starts a word.
        let starts_word = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "(<[\"'".contains(c));
        match scheme {
            Some(scheme) if starts_word => {
                let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let link = rest[..len]
                    .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '>', '"', '\'']);
                if link.len() > scheme.len() {
                    out.push(at..at + link.len());
                }
                from = at + len.max(1);
            }
            _ => from = at + 4,
        }
    }
    out
}

/// How long until the next try to reconnect, in words: "in 4 s", and which try it is when not
/// the first ("in 8 s (attempt 3)"). Seconds are rounded up, as the status bar counts them down.
pub fn reconnect_wait(after: Duration, attempt: u32) -> String {
    let secs = after.as_millis().div_ceil(1000).max(1);
    match attempt {
        1 => format!("in {secs} s"),
        n => format!("in {secs} s (attempt {n})"),
    }
}

/// A room's name (rather than a person's).
pub(crate) fn is_room(target: &str) -> bool {
    target.starts_with(['#', '&'])
}

/// The local wall-clock time of a message: the server's `server-time` if given, else now.
pub fn clock(time: Option<&str>) -> String {
    let now = chrono::Local::now();
    let local = time
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Local))
        .unwrap_or(now);
    // Another day's message (from history) says which day.
    if local.date_naive() == now.date_naive() {
        local.format("%H:%M").to_string()
    } else {
        local.format("%b %-d %H:%M").to_string()
    }
}

/// Which colour of a palette of `len` a name gets: FNV-1a of the casefolded name, so the same
/// person keeps the same colour across messages, renames of case, runs and machines (std's
/// hasher is randomly seeded).
pub fn colour_index(name: &str, len: usize) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in casefold(name).bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as usize % len.max(1)
}

/// What sending a typed text will do, for the note above the input box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPlan {
    /// One message.
    One,
    /// Split by the session into this many messages (nothing is cut).
    Split(usize),
    /// Refused: too long (this many bytes, more than [`MAX_INPUT_BYTES`]).
    TooLong(usize),
}

impl SendPlan {
    /// What to tell the person before sending: why it is refused, or how it will go out.
    pub fn note(&self) -> Option<String> {
        match self {
            SendPlan::One => None,
            SendPlan::Split(n) => Some(format!(
                "Long message: it will go out as {n} messages (nothing is cut)."
            )),
            SendPlan::TooLong(bytes) => Some(format!(
                "Too long to send: {bytes} bytes, and the limit is {MAX_INPUT_BYTES} bytes. Shorten it or send it in parts."
            )),
        }
    }
}

/// How a command's text will go out when `me` sends it with `room` current (None: it sends
/// no text).
pub fn plan_for(cmd: &Command, me: &str, room: &str) -> Option<SendPlan> {
    match cmd {
        Command::Say(text) => Some(send_plan(text, me, room, false)),
        Command::Action(text) => Some(send_plan(text, me, room, true)),
        Command::Msg { to, text } => Some(send_plan(text, me, to, false)),
        _ => None,
    }
}

/// How `text` sent by `nick` to `target` will go out, by the session's own rule
/// ([`message_pieces`], which the client core sends by): 512 bytes minus the prefix the server adds
/// (`:nick!~user@host`, allowing a 16-byte user and a 64-byte host), the verb and target, and
/// the CTCP framing of an action; one message per non-blank line.
pub fn send_plan(text: &str, nick: &str, target: &str, action: bool) -> SendPlan {
    if text.len() > MAX_INPUT_BYTES {
        return SendPlan::TooLong(text.len());
    }
    let pieces = message_pieces(text, nick, target, action).len();
    if pieces > 1 {
        SendPlan::Split(pieces)
    } else {
        SendPlan::One
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parla_net::client::Disconnect;

    fn msg(from: &str, target: &str, text: &str, own: bool) -> Event {
        Event::Message(Said {
            from: from.into(),
            target: target.into(),
            text: text.into(),
            kind: MessageKind::Normal,
            own,
            // Today's (another day's would show its date).
            time: Some(chrono::Utc::now().to_rfc3339()),
            id: None,
        })
    }

    #[test]
    fn colours_are_stable_and_ignore_case() {
        assert_eq!(colour_index("Alice", 12), colour_index("alice", 12));
        assert_eq!(colour_index("ALICE", 12), colour_index("alice", 12));
        // Pinned: the colour of a name must not change between releases.
        assert_eq!(colour_index("alice", 12), 11);
        let spread: std::collections::BTreeSet<_> = ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|n| colour_index(n, 12))
            .collect();
        assert!(spread.len() >= 3, "names should not all share a colour");
    }

    #[test]
    fn messages_direct_messages_and_other_rooms_read_well() {
        let mut chat = Chat::default();
        chat.apply(&Event::Registered {
            name: "alice".into(),
            server: "parla.local".into(),
        });
        chat.apply(&Event::Joined {
            room: "#lobby".into(),
        });
        chat.apply(&msg("bob", "#lobby", "hi", false));
        chat.apply(&msg("alice", "bob", "psst", true));
        chat.apply(&msg("bob", "alice", "yes?", false));
        chat.apply(&msg("carol", "#rust", "borrowck", false));
        let texts: Vec<String> = chat
            .lines
            .iter()
            .map(|l| l.plain()[6..].to_owned())
            .collect();
        assert_eq!(
            texts,
            [
                "You joined #lobby.",
                "bob: hi",
                "alice: (direct to bob) psst",
                "bob: (direct) yes?",
                "[#rust] carol: borrowck",
            ]
        );
        assert!(matches!(
            &chat.lines[2].kind,
            LineKind::Message { own: true, direct: Some(to), .. } if to == "bob"
        ));
    }

    #[test]
    fn a_room_the_server_did_not_list_says_so_until_the_whole_list_comes() {
        let mut chat = Chat::default();
        chat.apply(&Event::Joined {
            room: "#lobby".into(),
        });
        let list = |names: &[&str], complete| Event::Members {
            room: "#Lobby".into(),
            members: names.iter().map(|n| Member::new(*n)).collect(),
            complete,
        };
        chat.apply(&list(&["alice", "carol"], false));
        assert_eq!(
            chat.members_heading(),
            ("Members: 2 seen".into(), Some(PARTIAL_MEMBERS))
        );
        chat.apply(&list(&["alice", "bob", "carol"], true));
        assert_eq!(chat.members_heading(), ("Members (3)".into(), None));
        assert_eq!(names(&chat), ["alice", "bob", "carol"]);
    }

    #[test]
    fn members_follow_the_current_room_and_renames_of_me() {
        let mut chat = Chat::default();
        chat.apply(&Event::Registered {
            name: "alice".into(),
            server: String::new(),
        });
        chat.apply(&Event::Joined {
            room: "#Lobby".into(),
        });
        chat.apply(&Event::Members {
            room: "#lobby".into(),
            members: vec![Member::new("alice"), Member::new("bob")],
            complete: true,
        });
        assert_eq!(names(&chat), ["alice", "bob"]);
        assert_eq!(chat.members_heading(), ("Members (2)".into(), None));
        chat.apply(&Event::Renamed {
            old: "Alice".into(),
            new: "al".into(),
        });
        assert_eq!(chat.me.as_deref(), Some("al"));
        chat.apply(&Event::Disconnected(Disconnect::Quit));
        assert_eq!(
            chat.lines.back().unwrap().kind,
            LineKind::System("You are now known as al".into())
        );
    }

    /// The current room's members as listed: `@alice`, `bob`.
    fn names(chat: &Chat) -> Vec<String> {
        chat.current_members()
            .iter()
            .map(|m| format!("{}{}", m.prefix(), m.name))
            .collect()
    }

    fn in_lobby(me: &str, members: &[(&str, &str)]) -> Chat {
        let mut chat = Chat::default();
        chat.apply(&Event::Registered {
            name: me.into(),
            server: String::new(),
        });
        chat.apply(&Event::Joined {
            room: "#lobby".into(),
        });
        chat.apply(&Event::Members {
            room: "#lobby".into(),
            members: members
                .iter()
                .map(|(prefixes, name)| Member {
                    name: (*name).into(),
                    prefixes: (*prefixes).into(),
                })
                .collect(),
            complete: true,
        });
        chat
    }

    fn last(chat: &Chat) -> String {
        chat.lines.back().unwrap().plain()[6..].to_owned()
    }

    #[test]
    fn operators_are_known_and_moderation_reads_well() {
        let mut chat = in_lobby("alice", &[("@", "alice"), ("+", "bob")]);
        assert!(chat.operator_here());
        assert_eq!(names(&chat), ["@alice", "+bob"]);
        chat.apply(&Event::ModeChanged {
            target: "#lobby".into(),
            by: "alice".into(),
            change: "+m".into(),
        });
        assert_eq!(last(&chat), "alice sets mode +m on #lobby");
        chat.apply(&Event::Kicked {
            room: "#lobby".into(),
            name: "bob".into(),
            by: "alice".into(),
            reason: "spam".into(),
        });
        assert_eq!(last(&chat), "← alice removed bob from #lobby (spam)");
        chat.apply(&Event::Invited {
            room: "#lobby".into(),
            name: "carol".into(),
            by: "alice".into(),
        });
        assert_eq!(last(&chat), "alice invited carol to #lobby");
        assert!(chat.invitation.is_none());
        // Not an operator: a plain member, even when voiced.
        let chat = in_lobby("bob", &[("@", "alice"), ("+", "bob")]);
        assert!(!chat.operator_here());
    }

    #[test]
    fn being_kicked_or_leaving_moves_to_the_room_left_and_an_invitation_waits() {
        let mut chat = in_lobby("alice", &[("", "alice")]);
        chat.apply(&Event::Joined {
            room: "#rust".into(),
        });
        chat.apply(&Event::Kicked {
            room: "#rust".into(),
            name: "Alice".into(),
            by: "bob".into(),
            reason: String::new(),
        });
        assert!(matches!(
            chat.lines.back().unwrap().kind,
            LineKind::Error(_)
        ));
        assert_eq!(last(&chat), "bob removed you from #rust");
        chat.apply(&Event::Left {
            room: "#rust".into(),
            current: Some("#lobby".into()),
        });
        assert_eq!(chat.room.as_deref(), Some("#lobby"));
        assert_eq!(last(&chat), "You left #rust; messages now go to #lobby.");
        chat.apply(&Event::Invited {
            room: "#rust".into(),
            name: "alice".into(),
            by: "bob".into(),
        });
        assert_eq!(chat.invitation, Some(("bob".into(), "#rust".into())));
        assert_eq!(
            last(&chat),
            "bob invites you to #rust; /join #rust to go in"
        );
        chat.apply(&Event::Joined {
            room: "#RUST".into(),
        });
        assert_eq!(chat.invitation, None);
    }

    #[test]
    fn typing_shows_who_until_it_lapses_or_they_speak() {
        let mut chat = in_lobby("alice", &[("", "alice"), ("", "bob"), ("", "carol")]);
        let typing = |name: &str, target: &str, state| Event::Typing {
            target: target.into(),
            name: name.into(),
            state,
        };
        let now = Instant::now();
        assert_eq!(chat.typing_text(now), None);
        chat.apply(&typing("bob", "#lobby", Typing::Active));
        assert_eq!(
            chat.typing_text(Instant::now()).as_deref(),
            Some("bob is typing…")
        );
        chat.apply(&typing("carol", "#LOBBY", Typing::Active));
        assert_eq!(
            chat.typing_text(Instant::now()).as_deref(),
            Some("bob and carol are typing…")
        );
        // In another conversation: not shown here.
        chat.apply(&typing("dave", "dave", Typing::Active));
        // Lapses after six seconds without news.
        let later = Instant::now() + TYPING_LAPSES_AFTER;
        assert_eq!(chat.typing_text(later), None);
        // A message, a pause, or leaving ends it.
        chat.apply(&msg("bob", "#lobby", "hi", false));
        assert_eq!(
            chat.typing_text(Instant::now()).as_deref(),
            Some("carol is typing…")
        );
        chat.apply(&typing("carol", "#lobby", Typing::Paused));
        assert_eq!(chat.typing_text(Instant::now()), None);
        chat.apply(&typing("carol", "#lobby", Typing::Active));
        chat.apply(&Event::UserQuit {
            name: "Carol".into(),
            reason: "bye".into(),
        });
        assert_eq!(chat.typing_text(Instant::now()), None);
        for n in ["a", "b", "c", "d"] {
            chat.apply(&typing(n, "#lobby", Typing::Active));
        }
        assert_eq!(
            chat.typing_text(Instant::now()).as_deref(),
            Some("4 people are typing…")
        );
    }

    #[test]
    fn scrollback_is_bounded() {
        let mut chat = Chat::default();
        for i in 0..MAX_LINES + 10 {
            chat.system(format!("line {i}"));
        }
        assert_eq!(chat.lines.len(), MAX_LINES);
        assert_eq!(chat.lines[0].kind, LineKind::System("line 10".into()));
    }

    #[test]
    fn long_input_is_split_or_refused_never_cut() {
        assert_eq!(send_plan("hello", "alice", "#lobby", false), SendPlan::One);
        assert_eq!(
            send_plan(&"word ".repeat(200), "alice", "#lobby", false),
            SendPlan::Split(3)
        );
        assert_eq!(
            send_plan("one\ntwo\n\nthree", "alice", "#lobby", false),
            SendPlan::Split(3)
        );
        let huge = "x".repeat(MAX_INPUT_BYTES + 1);
        assert_eq!(
            send_plan(&huge, "alice", "#lobby", false),
            SendPlan::TooLong(MAX_INPUT_BYTES + 1)
        );
        assert_eq!(
            send_plan(&"x".repeat(MAX_INPUT_BYTES), "alice", "#lobby", false),
            SendPlan::Split(11)
        );
    }

    fn page(page: HistoryPage, texts: &[&str], more: bool) -> Event {
        let messages = texts
            .iter()
            .map(|t| match msg("bob", "#lobby", t, false) {
                Event::Message(m) => m,
                _ => unreachable!(),
            })
            .collect();
        Event::History {
            target: "#lobby".into(),
            page,
            messages,
            more,
        }
    }

    #[test]
    fn history_reads_as_the_past_and_older_pages_go_on_top() {
        let mut chat = Chat::default();
        chat.apply(&Event::Joined {
            room: "#lobby".into(),
        });
        chat.apply(&page(HistoryPage::Recent, &["one", "two"], true));
        chat.apply(&msg("carol", "#lobby", "live", false));
        let texts = |chat: &Chat| -> Vec<String> {
            chat.lines
                .iter()
                .map(|l| {
                    l.plain()
                        .trim_start_matches(|c: char| c.is_ascii_digit() || c == ':')
                        .trim()
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(
            texts(&chat),
            [
                "You joined #lobby.",
                "— earlier messages in #lobby —",
                "bob: one",
                "bob: two",
                "— now —",
                "carol: live",
            ]
        );
        // At the top: one older page is asked for at a time.
        assert_eq!(chat.want_older().as_deref(), Some("#lobby"));
        assert_eq!(chat.want_older(), None, "one page at a time");
        chat.apply(&page(HistoryPage::Older, &["zero"], false));
        assert_eq!(chat.prepended, 2);
        assert_eq!(
            texts(&chat)[..3],
            [
                "— the start of what the server kept of #lobby —",
                "bob: zero",
                "You joined #lobby."
            ]
        );
        assert_eq!(chat.want_older(), None, "nothing older");
        // What was missed while away comes under its own divider; nothing missed, no line.
        let before = chat.lines.len();
        chat.apply(&page(HistoryPage::Missed, &[], false));
        assert_eq!(chat.lines.len(), before);
        chat.apply(&page(HistoryPage::Missed, &["meanwhile"], false));
        assert_eq!(
            texts(&chat)[before..],
            [
                "— missed in #lobby while you were away —",
                "bob: meanwhile",
                "— now —"
            ]
        );
    }

    #[test]
    fn mentions_are_whole_names_and_the_title_counts_what_came_while_away() {
        let mut chat = Chat::default();
        chat.apply(&Event::Registered {
            name: "Ann".into(),
            server: String::new(),
        });
        chat.apply(&Event::Joined {
            room: "#lobby".into(),
        });
        assert!(chat.names_me("hi ann!") && chat.names_me("ANN: look") && chat.names_me("ann"));
        assert!(!chat.names_me("annie, hi") && !chat.names_me("joann") && !chat.names_me("ann_"));
        assert_eq!(chat.title(), "Parla — #lobby");
        chat.set_focused(false);
        chat.apply(&msg("bob", "#lobby", "hello all", false));
        chat.apply(&msg("bob", "#lobby", "ann, are you there?", false));
        chat.apply(&msg("bob", "ann", "psst", false));
        chat.apply(&msg("ann", "#lobby", "my own", true));
        assert_eq!(chat.title(), "Parla — #lobby (3 new, 2 for you)");
        // Those for us are desktop notifications too.
        let notices: Vec<(&str, &str)> = chat
            .notices
            .iter()
            .map(|n| (n.title.as_str(), n.body.as_str()))
            .collect();
        assert_eq!(
            notices,
            [
                ("bob in #lobby", "ann, are you there?"),
                ("bob (direct message)", "psst")
            ]
        );
        let mention = |l: &Line| matches!(l.kind, LineKind::Message { mention: true, .. });
        assert_eq!(chat.lines.iter().filter(|l| mention(l)).count(), 1);
        chat.set_focused(true);
        assert_eq!(chat.title(), "Parla — #lobby");
        chat.apply(&msg("bob", "#lobby", "ann?", false));
        assert_eq!(chat.title(), "Parla — #lobby", "seen as it arrives");
    }

    #[test]
    fn links_are_found_without_the_punctuation_around_them() {
        let text = "see https://example.org/a?b=1, (http://x.y/z) and https://ok.example. \
                    not xhttps://no or http:// alone; 日本 https://例え.jp/パス!";
        let found: Vec<&str> = links(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(
            found,
            [
                "https://example.org/a?b=1",
                "http://x.y/z",
                "https://ok.example",
                "https://例え.jp/パス"
            ]
        );
        assert!(links("no links here").is_empty());
    }

    #[test]
    fn the_wait_before_reconnecting_is_said_in_whole_seconds_rounded_up() {
        assert_eq!(reconnect_wait(Duration::from_millis(300), 1), "in 1 s");
        assert_eq!(reconnect_wait(Duration::from_millis(4_100), 1), "in 5 s");
        assert_eq!(
            reconnect_wait(Duration::from_secs(8), 3),
            "in 8 s (attempt 3)"
        );
        assert_eq!(reconnect_wait(Duration::ZERO, 1), "in 1 s");
    }
}
