//! The client's side of the bargain, checked after every run: what each session client owes its
//! person and the server, derived here from what it read and what the script asked of it, without
//! the client core's code.
//!
//! - **Events.** Every line the client read becomes the event (or events) its person must see, in
//!   the order read: a message with its sender, target, text, kind and server time; joins, parts,
//!   quits and renames of others (and the member lists they change, sorted, with whether the list
//!   is complete); topics; the welcome and a refused name; every refusal numeric as an error; the
//!   shutdown. The events the session reported must be exactly those, in that order (a session
//!   that ended may stop early).
//! - **Lines out.** Every `PING` it read is answered with a `PONG` of the same token, in order;
//!   every connection opens with `CAP LS 302` (and `PASS` when it has a password); every command
//!   the script gave it goes out as its lines (`NICK`, with `USER` after the first, `JOIN`,
//!   `NAMES`, `QUIT`, a raw line, and a message or action cut into exactly the pieces that fit
//!   once relayed), in order, unless the session was quitting; and the capability requests and
//!   the default room it asks for on its own.
//!
//! What it read or was told at least 5 s before its session ended (or before the run did, if it
//! is still open) it must have acted on, but what waits behind a write the server is not taking.
//!
//! Together with the reference model (which checks what the server sent) this is what makes a
//! mutation of the client core visible to the explorer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use parla_net::client::{Command, Disconnect, Event, Member, MessageKind, Said, Typing};
use parla_room::limits::{HOST_LEN, MAX_BODY_LEN, NICK_LEN, SHUTDOWN_ERROR, USER_LEN};

use crate::journal::{ClientRecord, Conduct, Records};
use crate::model::fold;

mod history;

/// The real name the simulation's sessions give in `USER` (the client's default).
const REALNAME: &str = "Parla user";

/// However long the name and target, a piece of a message may be this long: a very long name
/// still gets its message through, a little at a time.
const SHORTEST_PIECE: usize = 64;

/// A rename read this soon after a message command may have reached the session first: the
/// message may be cut for either name.
const RENAME_RACE: Duration = Duration::from_millis(100);

/// What was read or asked this close to the end of a run may not have been acted on yet.
const GRACE: Duration = Duration::from_secs(5);

/// Texts of the errors a session reports for a command it cannot carry out: reported when the
/// command is handled, so their place among the line-driven events is not fixed.
const COMMAND_ERRORS: &[&str] = &[
    "You are not in a room yet; nothing was sent",
    "You are not in a room yet; /join #room first",
    "Not sent: a raw line cannot contain a line break or a NUL; send one line at a time",
    "Not sent: a name, room or reason cannot contain a line break or a NUL",
    parla_room::client::RECONNECTING,
];

/// The start of the error for a command about the current room given without one.
const NO_ROOM_FOR: &str = "You are not in a room yet, so there is no room to ";

/// The capabilities a session asks for, of those the server offers.
const WANTED: [&str; 6] = [
    "batch",
    "draft/chathistory",
    "echo-message",
    "message-tags",
    "multi-prefix",
    "server-time",
];

/// How often a session may tell a room it is typing (the IRCv3 recommendation).
const TYPING_EVERY: Duration = Duration::from_secs(3);

/// Every broken promise of every session client.
pub fn check(r: &Records) -> Vec<String> {
    let mut v = Vec::new();
    for (name, c) in &r.clients {
        if c.raw {
            continue;
        }
        let open_at_end = c.closed.is_none() && !c.crashed && c.connected;
        let sessions = split_sessions(c);
        let last = sessions.len().saturating_sub(1);
        // A session that reconnected hands what it knew to the next one.
        let mut carried = None;
        for (i, session) in sessions.iter().enumerate() {
            let open = open_at_end && i == last;
            carried = check_session(name, c, session, carried, open, r.ended_at, &mut v);
        }
    }
    v
}

/// The log, one slice per connection the client made.
fn split_sessions(c: &ClientRecord) -> Vec<&[(Duration, Conduct)]> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, (_, what)) in c.log.iter().enumerate() {
        if matches!(what, Conduct::Connected) {
            if let Some(s) = start {
                out.push(&c.log[s..i]);
            }
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&c.log[s..]);
    }
    out
}

/// What a command owes on the wire. The session's driver takes lines read and commands in the
/// order they reach it, which may differ from the order they were logged in by a moment: a
/// command that depends on what was read (the current room, the name a message is cut for, a
/// closing `ERROR`) is matched loosely, and owed only maybe when the check cannot tell.
#[derive(Debug)]
enum Out {
    /// This exact line.
    Line(String),
    /// `NAMES <a room it has joined>`.
    Names,
    /// `<before><a room it has joined><after>`: a command for the current room.
    InRoom { before: String, after: String },
    /// `text` as `PRIVMSG`s to `to`, or to a room it has joined: each non-blank line of it cut
    /// into the longest pieces that fit once relayed (see [`pieces`]) for the name it had then
    /// (`nick`; `None` before registering), or for one it took a moment later.
    Say {
        to: Option<String>,
        text: String,
        action: bool,
        nick: Option<String>,
    },
}

/// What the client is owed or owes, in order, each with when it became due.
#[derive(Default)]
struct Owed {
    /// With whether owed only maybe (a shutdown it may have read before or after quitting).
    events: Vec<(Duration, Event, bool)>,
    pongs: Vec<(Duration, String, bool)>,
    /// Lines for the script's commands, with whether they are owed only maybe (see
    /// [`Out`]).
    lines: Vec<(Duration, Out, bool)>,
    /// Lines the session sends on its own after a line it read: the room it asks for once
    /// registered. Its driver may act on a command first, so these are matched on their own.
    auto: Vec<(Duration, String)>,
}

fn check_session(
    name: &str,
    client: &ClientRecord,
    log: &[(Duration, Conduct)],
    resumed: Option<Carried>,
    open: bool,
    end: Duration,
    v: &mut Vec<String>,
) -> Option<Carried> {
    let mut model = ClientModel {
        user: name.to_owned(),
        history_max: history::PAGE,
        ..ClientModel::default()
    };
    // Every connection opens with the capability negotiation and, given one, the password;
    // one that carries on a lost one asks for its name at once.
    let mut opening = vec!["CAP LS 302".to_owned()];
    opening.extend(client.password.as_ref().map(|p| format!("PASS :{p}")));
    if let Some(carried) = resumed {
        opening.push(format!("NICK :{}", carried.nick));
        opening.push(format!("USER {name} 0 * :{REALNAME}"));
        model.user_owed = true;
        model.seen = carried.seen.clone();
        model.resumed = Some(carried);
    }
    // It reconnects (the session ends there, and the next one carries on, unless its host
    // was restarted meanwhile: a new process).
    let reconnecting = log
        .iter()
        .position(|(_, what)| matches!(what, Conduct::Event(Event::Reconnecting { .. })));
    let reconnected = reconnecting.map(|i| log[i].0);
    let restarted = log
        .iter()
        .any(|(_, what)| matches!(what, Conduct::Restarted));
    let mut write_blocked = false;
    let mut disconnected = None;
    for (at, what) in log {
        if let Conduct::Got(line) = what
            && let Some(l) = take_apart(line)
            && matches!(l.verb.as_str(), "JOIN" | "PART" | "KICK" | "ERROR" | "001")
        {
            model.unsettled.insert(*at);
        }
    }
    let mut owed = Owed::default();
    // Its pinger's probes, as the ping events they owe (each only maybe once it quit, when
    // reports are no longer taken), and when the miss limit was reached.
    let (mut probes_owed, mut probes_seen) = (Vec::new(), Vec::new());
    let (mut misses, mut ping_failed, mut quit_at) = (0u32, None, None);
    // When the server's side of the connection ended.
    let mut closed_at = None;
    // When it last heard from the server (or connected): its liveness check counts from here.
    let mut last_heard: Option<Duration> = None;
    let mut events = Vec::new();
    let (mut pongs, mut lines) = (Vec::new(), Vec::new());
    for (i, (at, what)) in log.iter().enumerate() {
        match what {
            Conduct::Connected => last_heard = Some(*at),
            Conduct::Restarted => {}
            Conduct::Got(line) => {
                last_heard = Some(*at);
                model.read(*at, line, &mut owed);
            }
            Conduct::Command(cmd) => {
                if matches!(cmd, Command::Quit(_)) {
                    quit_at.get_or_insert(*at);
                }
                // Between connections a command goes nowhere (it is answered so; a quit ends
                // it all, with nothing to send it on). One handed over before the session
                // reported its end, even in the same instant, was the session's: it takes
                // commands before its timers.
                if reconnecting.is_some_and(|r| i > r) {
                    model.quitting |= matches!(cmd, Command::Quit(_));
                    continue;
                }
                model.command(*at, cmd, &mut owed);
            }
            Conduct::Sent(line) => {
                if let Some(token) = pong_token(line) {
                    pongs.push(token);
                } else if !is_session_own(line) {
                    lines.push((*at, line.clone()));
                }
            }
            Conduct::Blocked(b) => write_blocked = *b,
            Conduct::Closed => {
                closed_at.get_or_insert(*at);
            }
            Conduct::Probe { ok, max_misses } => {
                if ping_failed.is_some() {
                    continue; // the pinger stops at its limit
                }
                misses = if *ok { 0 } else { misses + 1 };
                probes_owed.push((*at, Probe::of(*ok, misses), quit_at.is_some()));
                if misses >= *max_misses {
                    ping_failed = Some((*at, quit_at.is_some()));
                }
            }

            Conduct::Event(Event::Disconnected(why)) => {
                disconnected = Some((*at, why.clone()));
            }
            Conduct::Event(Event::PingReply { .. }) => probes_seen.push(Probe::Reply),
            Conduct::Event(Event::PingMissed { consecutive, .. }) => {
                probes_seen.push(Probe::Missed(*consecutive))
            }
            Conduct::Event(
                Event::PingUnavailable { .. } | Event::Switched { .. } | Event::Reconnecting { .. },
            ) => {}
            Conduct::Event(Event::ServerError { text })
                if COMMAND_ERRORS.contains(&text.as_str()) || text.starts_with(NO_ROOM_FOR) => {}
            Conduct::Event(e) => events.push(e.clone()),
        }
    }
    // What it read or was told at least 5 s before its session ended (or the run, if it is
    // still open) it must have acted on. A session that reconnected ended there (a quit while
    // reconnecting comes later).
    let session_end = match (disconnected.as_ref().map(|(at, _)| *at), reconnected) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let alive_until = match session_end {
        Some(at) => Some(at),
        None if open => Some(end),
        None => None, // crashed: its last moments are unknown
    };
    // Pages late by the end are given up by then (and what waited for them shown, which the
    // next session carries on from).
    let last_sign = log
        .iter()
        .rev()
        .find(|(_, what)| !matches!(what, Conduct::Restarted))
        .map(|(at, _)| *at);
    // A crashed session's pages late by its last sign of life were given up by then.
    if let Some(until) = alive_until.or(last_sign) {
        model.late_pages(until, true, &mut owed);
    }
    let carried = reconnected.filter(|_| !restarted).map(|_| {
        // Turned away before registering, it still carries on the one before it.
        if let Some(before) = model.resumed.as_ref().filter(|_| !model.registered) {
            return Carried {
                seen: model.seen.clone(),
                ..before.clone()
            };
        }
        let mut rooms = model.rooms.clone();
        if let Some(i) = rooms.iter().position(|r| Some(fold(r)) == model.current) {
            let current = rooms.remove(i);
            rooms.push(current);
        }
        Carried {
            nick: model.nick.clone().unwrap_or_default(),
            rooms,
            seen: model.seen.clone(),
        }
    });
    let must_have = |due: Duration| alive_until.is_some_and(|until| due + GRACE < until);
    // After the server's `ERROR`, the session must end for the reason it gave.
    if let (Some(reason), Some((_, why))) = (&model.closing, &disconnected) {
        let ok = match why {
            Disconnect::Quit => model.quitting,
            Disconnect::ServerShutdown => reason == SHUTDOWN_ERROR,
            Disconnect::ClosedByServer { reason: r } => r == reason && reason != SHUTDOWN_ERROR,
            _ => false,
        };
        if !ok {
            v.push(format!(
                "{name} read ERROR :{reason} but its session ended with {why:?}"
            ));
        }
    }
    // A connection the server's side closed ends the session at once.
    if let Some(closed) = closed_at {
        let late = match session_end {
            Some(at) => at > closed + GRACE,
            None => open && closed + GRACE < end,
        };
        if late {
            v.push(format!(
                "{name}'s connection was closed at {:.3}s but its session {}",
                closed.as_secs_f64(),
                match &disconnected {
                    Some((at, why)) => format!("ended only at {:.3}s ({why:?})", at.as_secs_f64()),
                    None => "went on".to_owned(),
                }
            ));
        }
    }
    // Every probe's outcome reported; its miss limit reached ends the session for that reason.
    compare(
        name,
        "reported a ping",
        &probes_owed,
        &probes_seen,
        must_have,
        v,
    );
    if let Some((failed, false)) = ping_failed
        && must_have(failed)
        && !matches!(&disconnected, Some((_, Disconnect::PingFailed { .. })))
        && model.closing.is_none()
    {
        v.push(format!(
            "{name}'s pings failed {misses} times in a row by {:.3}s, but its session {}",
            failed.as_secs_f64(),
            match &disconnected {
                Some((at, why)) => format!("ended at {:.3}s with {why:?}", at.as_secs_f64()),
                None => "went on".to_owned(),
            }
        ));
    }
    // An end for its own reasons must have them: a quit it was asked for, or a server silent
    // for the whole liveness check.
    if let Some((at, why)) = &disconnected {
        let silence = Duration::from_millis(
            crate::runner::CLIENT_IRC_PING_INTERVAL_MS + crate::runner::CLIENT_IRC_PING_TIMEOUT_MS,
        );
        let wrong = match why {
            Disconnect::Quit if model.closing.is_none() => !model.quitting,
            Disconnect::ServerNotResponding { .. } => {
                last_heard.is_some_and(|heard| *at < heard + silence)
            }
            _ => false,
        };
        if wrong {
            v.push(format!(
                "{name} ended its session with {why:?} at {:.3}s, which nothing justified (last heard from the server at {:.3}s; asked to quit: {})",
                at.as_secs_f64(),
                last_heard.unwrap_or_default().as_secs_f64(),
                model.quitting
            ));
        }
    }
    // What it has yet to write waits behind a write the server is not taking.
    let must_send = |due: Duration| must_have(due) && !write_blocked;
    compare(name, "reported", &owed.events, &events, must_have, v);
    compare(
        name,
        "answered a PING with",
        &owed.pongs,
        &pongs,
        must_send,
        v,
    );
    let connected_at = log.first().map(|(at, _)| *at).unwrap_or_default();
    let lines = match check_opening(name, &opening, &lines, must_send(connected_at), v) {
        Some(rest) => rest,
        None => return carried,
    };
    compare_lines(name, &owed, &model, lines, must_send, v);
    carried
}

/// What a session that reconnected carries into the next: its name, its rooms (the current
/// one last) and what it saw of each conversation.
#[derive(Clone)]
struct Carried {
    nick: String,
    rooms: Vec<String>,
    seen: BTreeMap<String, history::Seen>,
}

/// What a probe of the pinger owes the person: a reply, or the how-manieth miss in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Reply,
    Missed(u32),
}

impl Probe {
    fn of(ok: bool, misses: u32) -> Probe {
        if ok {
            Probe::Reply
        } else {
            Probe::Missed(misses)
        }
    }
}

/// The first lines of a connection must be `opening`; the rest of `sent` is returned (`None`
/// after a violation).
fn check_opening<'a>(
    name: &str,
    opening: &[String],
    sent: &'a [(Duration, String)],
    must_have: bool,
    v: &mut Vec<String>,
) -> Option<&'a [(Duration, String)]> {
    for (i, want) in opening.iter().enumerate() {
        match sent.get(i) {
            Some((_, line)) if line == want => {}
            Some((_, line)) => {
                v.push(format!(
                    "{name} sent {line:?} where its connection opens with {want:?}"
                ));
                return None;
            }
            None if must_have => {
                v.push(format!(
                    "{name} never opened its connection with {want:?} though it went on for 5 s"
                ));
                return None;
            }
            None => return Some(&[]),
        }
    }
    Some(&sent[opening.len()..])
}

/// The lines sent for commands and on the session's own account, each stream in order.
fn compare_lines(
    name: &str,
    owed: &Owed,
    model: &ClientModel,
    sent: &[(Duration, String)],
    must_have: impl Fn(Duration) -> bool,
    v: &mut Vec<String>,
) {
    let (mut next, mut i) = (0, 0);
    let mut auto_done = vec![false; owed.auto.len()];
    while i < sent.len() {
        // What the next owed command line accounts for, if anything: how many lines.
        let taken = owed
            .lines
            .get(next)
            .and_then(|(at, out, _)| matches(*at, out, model, &sent[i..]));
        let auto =
            owed.auto.iter().enumerate().position(|(k, (due, want))| {
                !auto_done[k] && *want == sent[i].1 && *due <= sent[i].0
            });
        // A line both a command owed only maybe and the session owes on its own is the
        // session's (the command may have found it done: a `/join` of the room it had just
        // been put in).
        let maybe_next = owed.lines.get(next).is_some_and(|(_, _, maybe)| *maybe);
        if let (Some(k), true) = (auto, maybe_next || taken.is_none()) {
            auto_done[k] = true;
            i += 1;
        } else if let Some(n) = taken {
            next += 1;
            i += n;
        } else if owed.lines.get(next).is_some_and(|(_, _, maybe)| *maybe) {
            next += 1; // owed only maybe, and not sent
        } else {
            let line = &sent[i].1;
            v.push(match owed.lines.get(next) {
                Some((at, want, _)) => format!(
                    "{name} sent {line:?} where it owed {want:?} (for a command at {:.3}s)",
                    at.as_secs_f64()
                ),
                None => format!("{name} sent {line:?}, which nothing called for"),
            });
            return;
        }
    }
    let missing = owed.lines[next..]
        .iter()
        .find(|(_, _, maybe)| !maybe)
        .map(|(at, want, _)| (*at, format!("{want:?}")))
        .or(owed
            .auto
            .iter()
            .zip(&auto_done)
            .find(|(_, done)| !**done)
            .map(|((at, want), _)| (*at, format!("{want:?}"))));
    if let Some((at, want)) = missing
        && must_have(at)
    {
        v.push(format!(
            "{name} never sent {want} (due at {:.3}s) though its session went on for 5 s more",
            at.as_secs_f64()
        ));
    }
}

/// How many of the lines `sent` starts with `out`, owed for a command at `at`, accounts for
/// (`None`: it does not match).
fn matches(
    at: Duration,
    out: &Out,
    model: &ClientModel,
    sent: &[(Duration, String)],
) -> Option<usize> {
    let in_room = |target: &str| model.joined.contains(&fold(target));
    // A line written before the command was given is not for it.
    let (when, first) = sent.first()?;
    if *when < at {
        return None;
    }
    match out {
        Out::Line(want) => (first == want).then_some(1),
        Out::Names => {
            let room = first.strip_prefix("NAMES ")?;
            in_room(room).then_some(1)
        }
        Out::InRoom { before, after } => {
            let room = first
                .strip_prefix(before.as_str())?
                .strip_suffix(after.as_str())?;
            (!room.contains(' ') && in_room(room)).then_some(1)
        }
        Out::Say {
            to,
            text,
            action,
            nick,
        } => {
            let target = match to {
                Some(to) => to.as_str(),
                None => {
                    let (target, _) = first.strip_prefix("PRIVMSG ")?.split_once(" :")?;
                    in_room(target).then_some(target)?
                }
            };
            // The name it had, or one it took a moment later (cut for either).
            let later = model
                .renamed
                .iter()
                .filter(|(when, _)| *when >= at && *when <= at + RENAME_RACE)
                .map(|(_, n)| Some(n.as_str()));
            std::iter::once(nick.as_deref())
                .chain(later)
                .find_map(|nick| {
                    let want = pieces(text, nick, target, *action);
                    let got = sent.iter().take(want.len()).map(|(_, l)| l);
                    got.eq(want.iter()).then_some(want.len())
                })
        }
    }
}

/// The lines that say `text` to `target` as `nick` (the longest name the server allows, before
/// registering): each non-blank line of the text cut into the longest pieces whose relayed line,
/// `:nick!user@host PRIVMSG target :piece` with the longest user and host the server may add,
/// fits IRC's 512 bytes; at the last space if that falls in the second half of what fits,
/// otherwise at the last character that fits. Nothing is dropped, and a piece may always be
/// [`SHORTEST_PIECE`] bytes.
fn pieces(text: &str, nick: Option<&str>, target: &str, action: bool) -> Vec<String> {
    let nick_len = nick.map_or(NICK_LEN, str::len);
    let frame = if action { "\u{1}ACTION \u{1}".len() } else { 0 };
    let relayed = format!(
        ":{}!{}@{} PRIVMSG {target} :\r\n",
        "n".repeat(nick_len),
        "u".repeat(USER_LEN),
        "h".repeat(HOST_LEN)
    );
    let room = MAX_BODY_LEN
        .saturating_sub(relayed.len() + frame)
        .max(SHORTEST_PIECE);
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut rest = line;
        while rest.len() > room {
            let fits = rest
                .char_indices()
                .map(|(i, _)| i)
                .take_while(|&i| i <= room)
                .last()
                .unwrap_or(0);
            let cut = match rest[..fits].rfind(' ') {
                Some(space) if space > room / 2 => space + 1,
                _ => fits,
            };
            out.push(&rest[..cut]);
            rest = &rest[cut..];
        }
        out.push(rest);
    }
    out.into_iter()
        .map(|piece| match action {
            true => format!("PRIVMSG {target} :\u{1}ACTION {piece}\u{1}"),
            false => format!("PRIVMSG {target} :{piece}"),
        })
        .collect()
}

/// `actual` must be `owed` in order (skipping what is owed only maybe); it may stop early,
/// except before what `must_have` says.
fn compare<T: std::fmt::Debug + PartialEq>(
    name: &str,
    what: &str,
    owed: &[(Duration, T, bool)],
    actual: &[T],
    must_have: impl Fn(Duration) -> bool,
    v: &mut Vec<String>,
) {
    let mut next = 0;
    for got in actual {
        while let Some((_, want, true)) = owed.get(next)
            && want != got
        {
            next += 1;
        }
        match owed.get(next) {
            Some((_, want, _)) if want == got => next += 1,
            Some((at, want, _)) => {
                v.push(format!(
                    "{name} {what} {got:?} where it owed {want:?} (due at {:.3}s)",
                    at.as_secs_f64()
                ));
                return;
            }
            None => {
                v.push(format!("{name} {what} {got:?}, which nothing called for"));
                return;
            }
        }
    }
    if let Some((at, want, _)) = owed[next..].iter().find(|(_, _, maybe)| !maybe)
        && must_have(*at)
    {
        v.push(format!(
            "{name} never {what} {want:?} (due at {:.3}s) though its session went on for 5 s more",
            at.as_secs_f64()
        ));
    }
}

/// The token of a `PONG` the client sent.
fn pong_token(line: &str) -> Option<String> {
    let rest = line.strip_prefix("PONG ")?;
    Some(rest.strip_prefix(':').unwrap_or(rest).to_owned())
}

/// Lines the session sends on its own account (and the check does not derive): its liveness
/// `PING`, and the `QUIT` when its pinger gave up on the server. (A raw command may send the
/// same; those are left out on both sides.)
fn is_session_own(line: &str) -> bool {
    line.starts_with("PING ") || line == "QUIT :Ping to server failed"
}

/// What a client knows, as the check follows it.
#[derive(Default)]
struct ClientModel {
    /// Its user name (the simulation's sessions use their host's name).
    user: String,
    nick: Option<String>,
    /// Its own renames (and the welcome's name), with when read.
    renamed: Vec<(Duration, String)>,
    /// `USER` went out with its first `NICK`.
    user_owed: bool,
    registered: bool,
    /// Folded room → members (with their `@`/`+`) as learnt.
    members: BTreeMap<String, Vec<Member>>,
    pending_names: BTreeMap<String, Vec<Member>>,
    /// The rooms it is in, as written when it joined, in the order joined: the last is where
    /// it goes back to when it leaves the current one.
    rooms: Vec<String>,
    /// The capabilities the server acknowledged.
    caps: BTreeSet<String>,
    /// Its last typing notification: the room (folded), the state, when.
    typing: Option<(String, Typing, Duration)>,
    /// Rooms whose member list was left out (joined above the quiet threshold).
    partial: BTreeSet<String>,
    quitting: bool,
    /// The reason of the `ERROR` it read, if it did: its session is over.
    closing: Option<String>,
    /// Every room it was in during the session (folded): where a command for "the current
    /// room" may go, as the check cannot always tell which one is current when it is handled.
    joined: BTreeSet<String>,
    /// The room it joined last and has not left (folded): its current room, where `say` and
    /// `/names` go. A command met while it has one is owed for sure (unless unsettled).
    current: Option<String>,
    /// The instants in which it read something that may change whether it has a current room or
    /// a session (a `JOIN`, `PART`, `ERROR`): a command in the same instant may have been handled
    /// before or after it, whichever was logged first.
    unsettled: BTreeSet<Duration>,
    /// What it reported of each conversation (folded), for history.
    seen: BTreeMap<String, history::Seen>,
    /// History pages it asked for and has not reported, in the order asked.
    asked: Vec<history::Asked>,
    /// The most messages the server gives per history request (`CHATHISTORY=` in `005`).
    history_max: usize,
    /// What it carries on from a lost session, if it does.
    resumed: Option<Carried>,
}

/// A line read, taken apart: the `time` tag, the source's nick (if a source), whether the source
/// is a user (`nick!user@host`; otherwise the server, or no source), the verb (upper case) and
/// the parameters.
struct Line<'a> {
    time: Option<&'a str>,
    /// The `msgid` and `batch` tags.
    msgid: Option<&'a str>,
    batch: Option<&'a str>,
    /// The `+typing` tag.
    typing: Option<&'a str>,
    from: &'a str,
    from_user: bool,
    verb: String,
    params: Vec<&'a str>,
}

fn take_apart(line: &str) -> Option<Line<'_>> {
    let tags = line
        .strip_prefix('@')
        .and_then(|tagged| tagged.split_once(' '))
        .map_or("", |(tags, _)| tags);
    let tag = |key: &str| tags.split(';').find_map(|t| t.strip_prefix(key));
    let (source, verb, params) = crate::model::parse(line)?;
    Some(Line {
        time: tag("time="),
        msgid: tag("msgid="),
        batch: tag("batch="),
        typing: tag("+typing="),
        from: source.map_or("", |s| s.split(['!', '@']).next().unwrap_or("")),
        from_user: source.is_some_and(|s| s.contains('!')),
        verb: verb.to_ascii_uppercase(),
        params,
    })
}

impl ClientModel {
    fn is_me(&self, name: &str) -> bool {
        fold(name) == fold(self.nick.as_deref().unwrap_or(""))
    }

    fn members_event(&self, room: &str, owed: &mut Owed, at: Duration) {
        let key = fold(room);
        let Some(list) = self.members.get(&key) else {
            return;
        };
        let mut members = list.clone();
        members.sort_by_key(|m| fold(&m.name));
        owed.events.push((
            at,
            Event::Members {
                room: room.to_owned(),
                members,
                complete: !self.partial.contains(&key),
            },
            false,
        ));
    }

    /// It is out of `room` (parted or kicked): back in the room joined last of those left, if
    /// that one was current.
    fn leave(&mut self, room: &str, owed: &mut Owed, at: Duration) {
        let key = fold(room);
        self.members.remove(&key);
        self.partial.remove(&key);
        self.rooms.retain(|r| fold(r) != key);
        if self.current.as_ref() == Some(&key) {
            self.current = self.rooms.last().map(|r| fold(r));
        }
        let current = self
            .current
            .as_ref()
            .and_then(|c| self.rooms.iter().find(|r| fold(r) == *c).cloned());
        owed.events.push((
            at,
            Event::Left {
                room: room.to_owned(),
                current,
            },
            false,
        ));
    }

    /// Statuses given and taken by a room's `MODE` (Parla's `PREFIX=(ov)@+`,
    /// `CHANMODES=beI,k,l,imnst`): whether any member's changed.
    fn statuses(&mut self, key: &str, modes: &str, args: &[&str]) -> bool {
        let mut args = args.iter();
        let (mut on, mut changed) = (true, false);
        for mode in modes.chars() {
            match mode {
                '+' | '-' => on = mode == '+',
                'o' | 'v' => {
                    let Some(name) = args.next() else { break };
                    let prefix = if mode == 'o' { '@' } else { '+' };
                    let Some(m) = self
                        .members
                        .get_mut(key)
                        .and_then(|l| l.iter_mut().find(|m| fold(&m.name) == fold(name)))
                    else {
                        continue;
                    };
                    if m.prefixes.contains(prefix) != on {
                        let (op, voice) = (
                            if prefix == '@' {
                                on
                            } else {
                                m.prefixes.contains('@')
                            },
                            if prefix == '+' {
                                on
                            } else {
                                m.prefixes.contains('+')
                            },
                        );
                        m.prefixes = format!(
                            "{}{}",
                            if op { "@" } else { "" },
                            if voice { "+" } else { "" }
                        );
                        changed = true;
                    }
                }
                'b' | 'e' | 'I' | 'k' => {
                    args.next();
                }
                'l' if on => {
                    args.next();
                }
                _ => {}
            }
        }
        changed
    }

    /// What reading `line` owes.
    fn read(&mut self, at: Duration, line: &str, owed: &mut Owed) {
        if self.closing.is_some() {
            return;
        }
        self.late_pages(at, false, owed);
        let Some(l) = take_apart(line) else { return };
        let p = &l.params;
        let last = p.last().copied().unwrap_or("");
        let ev = |owed: &mut Owed, e: Event| owed.events.push((at, e, false));
        match l.verb.as_str() {
            "BATCH" => self.batch(at, p, owed),
            "FAIL" => self.fail(at, p, owed),
            "005" => {
                let max = p.iter().find_map(|t| t.strip_prefix("CHATHISTORY="));
                if let Some(max) = max.and_then(|m| m.parse::<usize>().ok()).filter(|&m| m > 0) {
                    self.history_max = max.min(1000);
                }
            }
            "PING" => owed.pongs.push((at, last.to_owned(), false)),
            "CAP" => {
                // The capabilities it wants, from what the server offers; then the end of the
                // negotiation once the server answered (before registering).
                let sub = p.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
                match sub.as_str() {
                    "LS" => {
                        let wanted: Vec<&str> = last
                            .split(' ')
                            .map(|c| c.split('=').next().unwrap_or(""))
                            .filter(|c| WANTED.contains(c))
                            .collect();
                        owed.auto.push((
                            at,
                            if wanted.is_empty() {
                                "CAP END".to_owned()
                            } else {
                                format!("CAP REQ :{}", wanted.join(" "))
                            },
                        ));
                    }
                    "ACK" | "NAK" => {
                        if sub == "ACK" {
                            for cap in last.split(' ').filter(|c| !c.is_empty()) {
                                match cap.strip_prefix('-') {
                                    Some(off) => self.caps.remove(off),
                                    None => self.caps.insert(cap.to_owned()),
                                };
                            }
                        }
                        if !self.registered {
                            owed.auto.push((at, "CAP END".to_owned()));
                        }
                    }
                    _ => {}
                }
            }
            "001" => {
                self.registered = true;
                let name = p.first().copied().unwrap_or("").to_owned();
                self.nick = Some(name.clone());
                self.renamed.push((at, name.clone()));
                ev(
                    owed,
                    Event::Registered {
                        name,
                        server: l.from.to_owned(),
                    },
                );
                ev(owed, Event::ServerInfo { text: last.into() });
                // The simulation's clients ask for the default room after registering; one
                // that carries on a lost session goes back to its rooms, the current one last.
                let mut rooms = vec!["#lobby".to_owned()];
                for room in self.resumed.iter().flat_map(|c| &c.rooms) {
                    rooms.retain(|r| fold(r) != fold(room));
                    rooms.push(room.clone());
                }
                for room in rooms {
                    owed.auto.push((at, format!("JOIN {room}")));
                }
            }
            "431" | "432" | "433" if !self.registered => {
                let name = p.get(1).copied().unwrap_or("");
                match &self.resumed {
                    // Its name is likely still held by its lost connection: it takes another.
                    Some(c) if !name.is_empty() && name.len() < NICK_LEN => {
                        let next = format!("{name}_");
                        let text = format!(
                            "The name {name} is taken ({last}), probably still by your lost connection until the server notices it is gone. Going on as {next}; /nick {} takes it back once it is free",
                            c.nick
                        );
                        ev(owed, Event::ServerInfo { text });
                        owed.auto.push((at, format!("NICK :{next}")));
                    }
                    _ => ev(
                        owed,
                        Event::NameRefused {
                            name: name.to_owned(),
                            reason: last.to_owned(),
                        },
                    ),
                }
            }
            "353" if p.len() >= 4 => {
                let names = p[3].split(' ').filter(|n| !n.is_empty()).map(|n| {
                    let name = n.trim_start_matches(['@', '+']);
                    Member {
                        name: name.to_owned(),
                        prefixes: n[..n.len() - name.len()].to_owned(),
                    }
                });
                self.pending_names
                    .entry(fold(p[2]))
                    .or_default()
                    .extend(names);
            }
            "366" if p.len() >= 2 => {
                let key = fold(p[1]);
                let mut names = self.pending_names.remove(&key).unwrap_or_default();
                if names.iter().any(|m| self.is_me(&m.name)) {
                    self.partial.remove(&key);
                } else if self.members.contains_key(&key) {
                    self.partial.insert(key.clone());
                    names.push(Member::new(self.nick.clone().unwrap_or_default()));
                }
                self.members.insert(key, names);
                self.members_event(p[1], owed, at);
            }
            "332" if p.len() >= 3 => ev(
                owed,
                Event::Topic {
                    room: p[1].to_owned(),
                    topic: last.to_owned(),
                },
            ),
            "331" if p.len() >= 2 => ev(
                owed,
                Event::Topic {
                    room: p[1].to_owned(),
                    topic: String::new(),
                },
            ),
            "372" | "375" | "376" | "422" | "002" | "003" => {
                ev(owed, Event::ServerInfo { text: last.into() })
            }
            code if code.len() == 3 && (code.starts_with('4') || code.starts_with('5')) => {
                let text = if p.len() >= 3 {
                    format!("{}: {last}", p[1])
                } else {
                    last.to_owned()
                };
                ev(owed, Event::ServerError { text });
            }
            code if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => {
                if let Some(text) = in_words(code, p) {
                    ev(owed, Event::ServerInfo { text });
                }
            }
            "PRIVMSG" | "NOTICE" if p.len() >= 2 => self.message(at, &l, last, owed),
            "JOIN" if !p.is_empty() => {
                let room = p[0];
                if self.is_me(l.from) {
                    self.joined.insert(fold(room));
                    self.current = Some(fold(room));
                    self.rooms.retain(|r| fold(r) != fold(room));
                    self.rooms.push(room.to_owned());
                    self.members.insert(fold(room), Vec::new());
                    ev(owed, Event::Joined { room: room.into() });
                    self.joined_history(at, room, owed);
                } else if let Some(list) = self.members.get_mut(&fold(room)) {
                    list.push(Member::new(l.from));
                    ev(
                        owed,
                        Event::UserJoined {
                            room: room.into(),
                            name: l.from.into(),
                        },
                    );
                    self.members_event(room, owed, at);
                }
            }
            "PART" if !p.is_empty() => {
                let (room, key) = (p[0], fold(p[0]));
                if self.is_me(l.from) {
                    if self.members.contains_key(&key) {
                        self.leave(room, owed, at);
                    }
                } else if let Some(list) = self.members.get_mut(&key) {
                    list.retain(|m| fold(&m.name) != fold(l.from));
                    ev(
                        owed,
                        Event::UserLeft {
                            room: room.into(),
                            name: l.from.into(),
                            reason: p.get(1).map(|r| (*r).to_owned()),
                        },
                    );
                    self.members_event(room, owed, at);
                }
            }
            "QUIT" => {
                // Its lost connection is gone: it takes its name back.
                if let Some(c) = &self.resumed
                    && fold(&c.nick) == fold(l.from)
                    && !self.is_me(l.from)
                {
                    owed.auto.push((at, format!("NICK :{}", c.nick)));
                }
                let mut changed = Vec::new();
                for (room, list) in &mut self.members {
                    let before = list.len();
                    list.retain(|m| fold(&m.name) != fold(l.from));
                    if list.len() != before {
                        changed.push(room.clone());
                    }
                }
                ev(
                    owed,
                    Event::UserQuit {
                        name: l.from.into(),
                        reason: last.into(),
                    },
                );
                for room in changed {
                    self.members_event(&room, owed, at);
                }
            }
            "NICK" if !p.is_empty() => {
                let new = p[0];
                if self.is_me(l.from) {
                    self.nick = Some(new.to_owned());
                    self.renamed.push((at, new.to_owned()));
                }
                let mut changed = Vec::new();
                for (room, list) in &mut self.members {
                    if let Some(m) = list.iter_mut().find(|m| fold(&m.name) == fold(l.from)) {
                        m.name = new.to_owned();
                        changed.push(room.clone());
                    }
                }
                ev(
                    owed,
                    Event::Renamed {
                        old: l.from.into(),
                        new: new.into(),
                    },
                );
                for room in changed {
                    self.members_event(&room, owed, at);
                }
            }
            "TOPIC" if p.len() >= 2 => ev(
                owed,
                Event::Topic {
                    room: p[0].to_owned(),
                    topic: last.to_owned(),
                },
            ),
            "KICK" if p.len() >= 2 && self.members.contains_key(&fold(p[0])) => {
                let (room, victim) = (p[0], p[1]);
                ev(
                    owed,
                    Event::Kicked {
                        room: room.into(),
                        name: victim.into(),
                        by: l.from.into(),
                        reason: p.get(2).copied().unwrap_or("").into(),
                    },
                );
                if self.is_me(victim) {
                    self.leave(room, owed, at);
                } else {
                    let list = self.members.get_mut(&fold(room)).expect("checked");
                    list.retain(|m| fold(&m.name) != fold(victim));
                    self.members_event(room, owed, at);
                }
            }
            "INVITE" if p.len() >= 2 => ev(
                owed,
                Event::Invited {
                    room: p[1].into(),
                    name: p[0].into(),
                    by: l.from.into(),
                },
            ),
            "MODE" if p.len() >= 2 => {
                ev(
                    owed,
                    Event::ModeChanged {
                        target: p[0].into(),
                        by: l.from.into(),
                        change: p[1..].join(" "),
                    },
                );
                let key = fold(p[0]);
                if self.members.contains_key(&key) && self.statuses(&key, p[1], &p[2..]) {
                    self.members_event(p[0], owed, at);
                }
            }
            "TAGMSG" if !p.is_empty() && l.from_user && !self.is_me(l.from) => {
                let state = match l.typing {
                    Some("active") => Typing::Active,
                    Some("paused") => Typing::Paused,
                    Some("done") => Typing::Done,
                    _ => return,
                };
                let target = if self.is_me(p[0]) { l.from } else { p[0] };
                ev(
                    owed,
                    Event::Typing {
                        target: target.into(),
                        name: l.from.into(),
                        state,
                    },
                );
            }
            "ERROR" => {
                if last == SHUTDOWN_ERROR {
                    // Once it asked to quit it says nothing of it; it may have read this first.
                    let shutdown = Event::ServerShutdown {
                        message: last.to_owned(),
                    };
                    owed.events.push((at, shutdown, self.quitting));
                }
                self.closing = Some(last.to_owned());
            }
            _ => {}
        }
    }

    fn message(&mut self, at: Duration, l: &Line<'_>, last: &str, owed: &mut Owed) {
        let target = l.params[0];
        let (text, kind) = if l.verb == "NOTICE" {
            (last, MessageKind::Notice)
        } else if let Some(rest) = last.strip_prefix("\u{1}ACTION ") {
            (rest.trim_end_matches('\u{1}'), MessageKind::Action)
        } else if last.starts_with('\u{1}') {
            return;
        } else {
            (last, MessageKind::Normal)
        };
        if !l.from_user {
            owed.events
                .push((at, Event::ServerInfo { text: text.into() }, false));
            return;
        }
        let said = Said {
            from: l.from.to_owned(),
            target: target.to_owned(),
            text: text.to_owned(),
            kind,
            own: self.is_me(l.from),
            time: l.time.map(str::to_owned),
            id: l.msgid.map(str::to_owned),
        };
        if self.in_page(l, &said) {
            return;
        }
        let key = fold(target);
        if self.partial.contains(&key)
            && let Some(list) = self.members.get_mut(&key)
            && !list.iter().any(|m| fold(&m.name) == fold(l.from))
        {
            list.push(Member::new(l.from));
            self.members_event(target, owed, at);
        }
        self.live(at, said, owed);
    }

    /// What a command from the script owes (nothing once the session is quitting; only maybe
    /// once it read the server's closing `ERROR`, or in the instant it read something that may
    /// change that or its rooms, or when it goes to the current room).
    fn command(&mut self, at: Duration, cmd: &Command, owed: &mut Owed) {
        if self.quitting {
            return;
        }
        // In the very instant its state changed, the command may have met either state.
        let maybe = self.closing.is_some() || self.unsettled.contains(&at);
        // Carrying on a lost session, it takes no command but a quit until registered.
        if self.resumed.is_some() && !self.registered && !matches!(cmd, Command::Quit(_)) && !maybe
        {
            return;
        }
        let mut owe = |out: Out, maybe: bool| owed.lines.push((at, out, maybe));
        match cmd {
            Command::Nick(name) => {
                owe(Out::Line(format!("NICK :{}", name.trim())), maybe);
                // Its first name goes with who it is.
                if !self.user_owed {
                    self.user_owed = true;
                    let user = format!("USER {} 0 * :{REALNAME}", self.user);
                    owe(Out::Line(user), maybe);
                }
            }
            // Without a current room it sends nothing (and says so); with one, the lines are
            // owed (maybe only, in the instant its rooms changed: either may come first).
            Command::Say(_) | Command::Action(_) | Command::Names
                if !maybe && self.current.is_none() => {}
            Command::Say(text) | Command::Action(text) => owe(
                Out::Say {
                    to: None,
                    text: text.clone(),
                    action: matches!(cmd, Command::Action(_)),
                    nick: self.nick.clone(),
                },
                maybe,
            ),
            Command::Msg { to, text } => owe(
                Out::Say {
                    to: Some(to.clone()),
                    text: text.clone(),
                    action: false,
                    nick: self.nick.clone(),
                },
                maybe,
            ),
            // A room it is in becomes the current one, with nothing sent (and an event that,
            // like a command's error, comes when the command is handled).
            Command::Join(room) if self.rooms.iter().any(|r| fold(r) == fold(room)) => {
                if maybe {
                    owe(Out::Line(format!("JOIN {room}")), true);
                } else {
                    self.current = Some(fold(room));
                }
            }
            Command::Join(room) => owe(Out::Line(format!("JOIN {room}")), maybe),
            Command::Names => owe(Out::Names, maybe),
            Command::Older(target) => self.older(at, target.as_deref(), maybe, owed),
            Command::Quit(reason) => {
                let reason = reason.as_deref().unwrap_or("Leaving");
                owe(Out::Line(format!("QUIT :{reason}")), maybe);
                self.quitting = true;
            }
            Command::Raw(line) => {
                if !line.contains(['\r', '\n', '\0'])
                    && !line.trim().is_empty()
                    && !is_session_own(line)
                {
                    owe(Out::Line(line.clone()), maybe);
                }
            }
            Command::Part { room, reason } => {
                let after = reason
                    .as_deref()
                    .map(|r| format!(" :{r}"))
                    .unwrap_or_default();
                self.about_room(room, "PART ", &after, &[reason.as_deref()], maybe, &mut owe);
            }
            Command::Topic { room, topic } => {
                let after = topic
                    .as_deref()
                    .map(|t| format!(" :{t}"))
                    .unwrap_or_default();
                self.about_room(room, "TOPIC ", &after, &[topic.as_deref()], maybe, &mut owe);
            }
            Command::Kick { room, name, reason } => {
                let mut after = format!(" {}", name.trim());
                after.extend(reason.as_deref().map(|r| format!(" :{r}")));
                let texts = [Some(name.as_str()), reason.as_deref()];
                self.about_room(room, "KICK ", &after, &texts, maybe, &mut owe);
            }
            Command::Mode { target, args } => {
                let args = args.trim();
                let after = if args.is_empty() {
                    String::new()
                } else {
                    format!(" {args}")
                };
                self.about_room(target, "MODE ", &after, &[Some(args)], maybe, &mut owe);
            }
            Command::Invite { name, room } => {
                let before = format!("INVITE {} ", name.trim());
                self.about_room(room, &before, "", &[Some(name.as_str())], maybe, &mut owe);
            }
            Command::Oper { name, password } => {
                if one_line(&[name, password]) {
                    owe(
                        Out::Line(format!("OPER {} :{password}", name.trim())),
                        maybe,
                    );
                }
            }
            Command::Away(message) => match message.as_deref() {
                Some(m) if !one_line(&[m]) => {}
                Some(m) if !m.is_empty() => owe(Out::Line(format!("AWAY :{m}")), maybe),
                _ => owe(Out::Line("AWAY".into()), maybe),
            },
            Command::Whois(name) => {
                if one_line(&[name]) {
                    owe(Out::Line(format!("WHOIS {}", name.trim())), maybe);
                }
            }
            Command::Typing(state) => {
                let Some(room) = self.current.clone() else {
                    // In the instant it joined, it may already have had the room.
                    if maybe && self.caps.contains("message-tags") {
                        let before = format!("@+typing={} TAGMSG ", state.as_str());
                        let after = String::new();
                        owe(Out::InRoom { before, after }, true);
                    }
                    return;
                };
                if !self.caps.contains("message-tags") {
                    return;
                }
                let due = match &self.typing {
                    None => *state == Typing::Active,
                    Some((to, last, _)) if *to != room => {
                        *state != Typing::Done || *last != Typing::Done
                    }
                    Some((_, Typing::Active, when)) if *state == Typing::Active => {
                        at.saturating_sub(*when) >= TYPING_EVERY
                    }
                    Some((_, last, _)) => last != state,
                };
                if due {
                    self.typing = Some((room, *state, at));
                    let before = format!("@+typing={} TAGMSG ", state.as_str());
                    owe(
                        Out::InRoom {
                            before,
                            after: String::new(),
                        },
                        maybe,
                    );
                }
            }
        }
        // A message to the current room ends typing there, unsaid.
        if matches!(cmd, Command::Say(_) | Command::Action(_))
            && let Some((to, _, _)) = &self.typing
            && Some(to) == self.current.as_ref()
        {
            self.typing = Some((to.clone(), Typing::Done, at));
        }
    }

    /// What a command about a room (the current one when `room` is `None`) owes:
    /// `<before><room><after>`; nothing without a current room, or when some text of it
    /// holds a line break.
    fn about_room(
        &self,
        room: &Option<String>,
        before: &str,
        after: &str,
        texts: &[Option<&str>],
        maybe: bool,
        owe: &mut impl FnMut(Out, bool),
    ) {
        let mut all: Vec<&str> = texts.iter().flatten().copied().collect();
        all.extend(room.as_deref());
        if !one_line(&all) {
            return;
        }
        match room {
            Some(room) => owe(Out::Line(format!("{before}{room}{after}")), maybe),
            None if maybe || self.current.is_some() => owe(
                Out::InRoom {
                    before: before.to_owned(),
                    after: after.to_owned(),
                },
                maybe,
            ),
            None => {}
        }
    }
}

/// No CR, LF or NUL in any of `texts`.
fn one_line(texts: &[&str]) -> bool {
    !texts.iter().any(|t| t.contains(['\r', '\n', '\0']))
}

/// What a client shows of an informational reply, in words (`None`: not shown).
fn in_words(code: &str, p: &[&str]) -> Option<String> {
    let at = |i: usize| p.get(i).copied().unwrap_or("");
    let last = p.last().copied().unwrap_or("");
    let n = p.len();
    Some(match code {
        "221" => format!("Your modes: {}", at(1)),
        "324" => format!(
            "Modes of {}: {}",
            at(1),
            p.get(2..).unwrap_or(&[]).join(" ")
        ),
        "301" if n >= 3 => format!("{} is away: {last}", at(1)),
        "305" | "306" | "381" | "371" | "705" | "323" => last.to_owned(),
        "341" if n >= 3 => format!("You invited {} to {}", at(1), at(2)),
        "311" if n >= 6 => format!("{} is {}@{} ({last})", at(1), at(2), at(3)),
        "314" if n >= 6 => format!("{} was {}@{} ({last})", at(1), at(2), at(3)),
        "312" if n >= 4 => format!("{} is on {} ({last})", at(1), at(2)),
        "313" if n >= 3 => format!("{} is a server operator", at(1)),
        "335" if n >= 3 => format!("{} is a bot", at(1)),
        "317" if n >= 4 => format!("{} has been idle {}s", at(1), at(2)),
        "319" if n >= 3 => format!("{} is in {last}", at(1)),
        "322" if n >= 4 => format!("{} ({} people): {last}", at(1), at(2)),
        "367" if n >= 3 => format!("{}: {} is banned", at(1), at(2)),
        "348" if n >= 3 => format!("{}: {} is excepted from bans", at(1), at(2)),
        "346" if n >= 3 => format!("{}: {} is invited by mask", at(1), at(2)),
        "368" | "349" | "347" if n >= 3 => format!("{}: {last}", at(1)),
        _ => return None,
    })
}
