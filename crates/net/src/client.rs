//! The client session: one connection to a Parla (or any IRC) server, driven by commands from a
//! front end (the terminal client, the desktop window, a simulated user) and reporting what
//! happens as typed [`Event`]s.
//!
//! It is generic over [`Transport`] and [`Pinger`], so the same code runs on TCP with ICMP and
//! inside the simulation. One task owns the connection and `select!`s over the server's lines,
//! the front end's commands and the pinger's reports; the front end talks to it through two
//! bounded channels and never blocks on the network.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parla_room::Message;
use parla_room::message::split_source;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tracing::{debug, info};

use crate::addr::ServerAddr;
use crate::codec::{DEFAULT_MAX_LINE, Frame, LineCodec};
use crate::ping::{PingConfig, PingEvent, Pinger, watch};
use crate::transport::{Stream, Transport};

/// How the session connects and watches the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server.
    pub addr: ServerAddr,
    /// The IRC username (`USER`); shown as `~username` by Parla.
    pub username: String,
    /// The real name shown by `WHOIS`.
    pub realname: String,
    /// The server password, if it has one.
    pub password: Option<String>,
    /// The room to be in after registering (Parla puts everyone in `#lobby` anyway).
    pub room: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// ICMP liveness pings to the server's IP; `None` turns them off.
    pub ping: Option<PingConfig>,
    /// After this long without a line from the server, send it an IRC `PING`...
    pub irc_ping_interval: Duration,
    /// ...and give up if nothing arrives for this long after that.
    pub irc_ping_timeout: Duration,
}

impl ClientConfig {
    /// Defaults for connecting to `addr`.
    pub fn new(addr: ServerAddr) -> ClientConfig {
        ClientConfig {
            addr,
            username: "parla".to_owned(),
            realname: "Parla user".to_owned(),
            password: None,
            room: Some("#lobby".to_owned()),
            connect_timeout: Duration::from_secs(10),
            ping: Some(PingConfig::default()),
            irc_ping_interval: Duration::from_secs(30),
            irc_ping_timeout: Duration::from_secs(30),
        }
    }
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens there.
    #[error(
        "could not connect to {addr}: the connection was refused. Is the server running, and is the port right?"
    )]
    Refused {
        /// Where we tried.
        addr: ServerAddr,
    },
    /// No answer in time.
    #[error("could not connect to {addr}: no answer within {}s. Check the address and your network.", timeout.as_secs())]
    TimedOut {
        /// Where we tried.
        addr: ServerAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// Any other failure (unknown host, unreachable network...).
    #[error("could not connect to {addr}: {source}. Check the address and your network.")]
    Io {
        /// Where we tried.
        addr: ServerAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

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
    /// The member list of `room`, sorted, after any change.
    Members {
        /// The room.
        room: String,
        /// Its members.
        names: Vec<String>,
        /// Whether this is everyone. A server may leave the list out when we join a large room
        /// (Parla does above `--quiet-joins-above` members, and then tells nobody of joins and
        /// quits either): the list then holds us and the people seen speaking there, until
        /// [`Command::Names`] fetches the whole of it.
        complete: bool,
    },
    /// A message in a room or to us.
    Message {
        /// The sender's name (or the server's).
        from: String,
        /// The room, or our name for a direct message (the recipient's, for our own).
        target: String,
        /// The text (without CTCP framing for actions).
        text: String,
        /// Message, action or notice.
        kind: MessageKind,
        /// We sent it (echoed back by the server).
        own: bool,
        /// The server's timestamp (`server-time`), if any.
        time: Option<String>,
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
    /// The session is over; no more events follow.
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

/// A running session: send [`Command`]s, receive [`Event`]s.
#[derive(Debug)]
pub struct Client {
    /// Commands to the session.
    pub commands: mpsc::Sender<Command>,
    /// Events from the session; closed after [`Event::Disconnected`].
    pub events: mpsc::Receiver<Event>,
    /// The server's address, as connected.
    pub server: SocketAddr,
}

/// Connects to the server and starts the session (which then waits for a [`Command::Nick`]).
pub async fn connect<T: Transport, P: Pinger>(
    transport: &T,
    pinger: P,
    config: ClientConfig,
) -> Result<Client, ConnectError> {
    let addr = config.addr.clone();
    let connected = tokio::time::timeout(
        config.connect_timeout,
        transport.connect(&addr.host, addr.port),
    )
    .await;
    let (stream, server) = match connected {
        Err(_) => {
            return Err(ConnectError::TimedOut {
                addr,
                timeout: config.connect_timeout,
            });
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(ConnectError::Refused { addr });
        }
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(pair)) => pair,
    };
    info!(%server, "connected");
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let (ping_tx, ping_rx) = mpsc::channel(16);
    let watcher = config
        .ping
        .clone()
        .map(|ping| tokio::spawn(watch(pinger, server.ip(), ping, ping_tx)));
    let session = Session {
        framed: Framed::new(stream, LineCodec::new(DEFAULT_MAX_LINE)),
        events: ev_tx,
        config,
        nick: None,
        registered: false,
        user_sent: false,
        room: None,
        members: BTreeMap::new(),
        pending_names: BTreeMap::new(),
        partial: BTreeSet::new(),
        quitting: false,
        last_rx: Instant::now(),
        irc_ping_sent: false,
    };
    tokio::spawn(async move {
        session.run(cmd_rx, ping_rx).await;
        if let Some(w) = watcher {
            w.abort();
        }
    });
    Ok(Client {
        commands: cmd_tx,
        events: ev_rx,
        server,
    })
}

struct Session<S> {
    framed: Framed<S, LineCodec>,
    events: mpsc::Sender<Event>,
    config: ClientConfig,
    nick: Option<String>,
    registered: bool,
    user_sent: bool,
    /// The current room (display form).
    room: Option<String>,
    /// Members per room we are in (folded room name → names).
    members: BTreeMap<String, Vec<String>>,
    /// `353` lines collected until `366`.
    pending_names: BTreeMap<String, Vec<String>>,
    /// Rooms whose member list the server left out (folded names): see [`Event::Members`].
    partial: BTreeSet<String>,
    quitting: bool,
    last_rx: Instant,
    irc_ping_sent: bool,
}

/// What ended the session's loop.
type End = Disconnect;

impl<S: Stream> Session<S> {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut pings: mpsc::Receiver<PingEvent>,
    ) {
        let end = match self.start().await {
            Err(end) => end,
            Ok(()) => self.serve(&mut commands, &mut pings).await,
        };
        info!(reason = %end, "session ended");
        let _ = self.events.send(Event::Disconnected(end)).await;
    }

    async fn start(&mut self) -> Result<(), End> {
        self.send("CAP LS 302").await?;
        if let Some(pass) = self.config.password.clone() {
            self.send(&format!("PASS :{pass}")).await?;
        }
        Ok(())
    }

    async fn serve(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        pings: &mut mpsc::Receiver<PingEvent>,
    ) -> End {
        let mut pings_open = self.config.ping.is_some();
        loop {
            // ICMP says the server's host is up; only traffic says our connection still is (a
            // restarted server leaves a half-open connection that pings can't see). So the
            // session always probes a silent server with an IRC PING, ICMP or not.
            let silence_deadline = if self.irc_ping_sent {
                Some(self.last_rx + self.config.irc_ping_interval + self.config.irc_ping_timeout)
            } else {
                Some(self.last_rx + self.config.irc_ping_interval)
            };
            let step = tokio::select! {
                biased;
                frame = self.framed.next() => match frame {
                    Some(Ok(Frame::Line(line))) => self.on_line(&line).await,
                    Some(Ok(Frame::TooLong)) => Ok(()),
                    Some(Err(err)) => Err(Disconnect::ConnectionLost { reason: err.to_string() }),
                    None if self.quitting => Err(Disconnect::Quit),
                    None => Err(Disconnect::ConnectionLost { reason: "the server closed the connection without a word".into() }),
                },
                cmd = commands.recv(), if !self.quitting => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    // The front end is gone: leave politely.
                    None => self.on_command(Command::Quit(None)).await,
                },
                ev = pings.recv(), if pings_open => match ev {
                    Some(ev) => self.on_ping(ev).await,
                    None => {
                        pings_open = false;
                        Ok(())
                    }
                },
                _ = sleep_until_opt(silence_deadline) => self.on_silence().await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), End> {
        debug!(%line, "send");
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.framed
            .send(Bytes::from(bytes))
            .await
            .map_err(|e| Disconnect::ConnectionLost {
                reason: e.to_string(),
            })
    }

    async fn emit(&mut self, event: Event) {
        // A front end that stopped listening is handled by the commands channel closing.
        let _ = self.events.send(event).await;
    }

    async fn on_command(&mut self, cmd: Command) -> Result<(), End> {
        match cmd {
            Command::Nick(name) => {
                let name = name.trim().to_owned();
                self.send(&format!("NICK :{name}")).await?;
                if !self.user_sent {
                    self.user_sent = true;
                    let (user, real) = (self.config.username.clone(), self.config.realname.clone());
                    self.send(&format!("USER {user} 0 * :{real}")).await?;
                }
            }
            Command::Say(text) => {
                let Some(room) = self.room.clone() else {
                    self.emit(Event::ServerError {
                        text: "You are not in a room yet; nothing was sent".into(),
                    })
                    .await;
                    return Ok(());
                };
                self.say(&room, &text, false).await?;
            }
            Command::Action(text) => {
                let Some(room) = self.room.clone() else {
                    return Ok(());
                };
                self.say(&room, &text, true).await?;
            }
            Command::Msg { to, text } => self.say(&to, &text, false).await?,
            Command::Join(room) => self.send(&format!("JOIN {room}")).await?,
            Command::Names => {
                let Some(room) = self.room.clone() else {
                    self.emit(Event::ServerError {
                        text: "You are not in a room yet; /join #room first".into(),
                    })
                    .await;
                    return Ok(());
                };
                self.send(&format!("NAMES {room}")).await?;
            }
            Command::Quit(reason) => {
                self.quitting = true;
                let reason = reason.unwrap_or_else(|| "Leaving".to_owned());
                self.send(&format!("QUIT :{reason}")).await?;
                // The server answers with ERROR and closes; don't wait forever for it.
                let deadline = Instant::now() + Duration::from_secs(3);
                loop {
                    match tokio::time::timeout_at(deadline, self.framed.next()).await {
                        Ok(Some(Ok(Frame::Line(line)))) => self.on_line(&line).await?,
                        Ok(Some(Ok(Frame::TooLong))) => {}
                        _ => return Err(Disconnect::Quit),
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends `text` to `target` as the pieces [`message_pieces`] cuts it into.
    async fn say(&mut self, target: &str, text: &str, action: bool) -> Result<(), End> {
        // Before registering, assume the longest name the server allows.
        let nick = self.nick.clone().unwrap_or_else(|| "x".repeat(30));
        for chunk in message_pieces(text, &nick, target, action) {
            let body = if action {
                format!("\x01ACTION {chunk}\x01")
            } else {
                chunk.to_owned()
            };
            self.send(&format!("PRIVMSG {target} :{body}")).await?;
        }
        Ok(())
    }

    async fn on_ping(&mut self, ev: PingEvent) -> Result<(), End> {
        match ev {
            PingEvent::Reply { rtt } => self.emit(Event::PingReply { rtt }).await,
            PingEvent::Missed { consecutive, error } => {
                self.emit(Event::PingMissed { consecutive, error }).await
            }
            PingEvent::Unavailable { reason } => {
                self.emit(Event::PingUnavailable { reason }).await;
            }
            PingEvent::Failed { misses, target } => {
                let _ = self.send("QUIT :Ping to server failed").await;
                return Err(Disconnect::PingFailed { target, misses });
            }
        }
        Ok(())
    }

    async fn on_silence(&mut self) -> Result<(), End> {
        if self.irc_ping_sent {
            return Err(Disconnect::ServerNotResponding {
                silent: self.last_rx.elapsed(),
            });
        }
        self.irc_ping_sent = true;
        self.send("PING :parla-liveness").await
    }

    async fn on_line(&mut self, raw: &[u8]) -> Result<(), End> {
        self.last_rx = Instant::now();
        self.irc_ping_sent = false;
        let Ok(text) = std::str::from_utf8(raw) else {
            debug!("ignoring a line that is not UTF-8");
            return Ok(());
        };
        let Ok(msg) = Message::parse(text) else {
            debug!(%text, "ignoring a malformed line");
            return Ok(());
        };
        let from = msg
            .source
            .map(|s| split_source(s).0)
            .unwrap_or("")
            .to_owned();
        let p = &msg.params;
        let last = p.last().copied().unwrap_or("").to_owned();
        let verb = msg.verb.to_ascii_uppercase();
        let me = self.nick.clone().unwrap_or_default();
        let is_me = |n: &str| n.eq_ignore_ascii_case(&me);
        match verb.as_str() {
            "PING" => self.send(&format!("PONG :{last}")).await?,
            "CAP" => self.on_cap(p).await?,
            "001" => {
                self.registered = true;
                let name = p.first().copied().unwrap_or("").to_owned();
                self.nick = Some(name.clone());
                self.emit(Event::Registered { name, server: from }).await;
                self.emit(Event::ServerInfo { text: last }).await;
                if let Some(room) = self.config.room.clone() {
                    // Parla has already put us in its default room; this is a no-op there.
                    self.send(&format!("JOIN {room}")).await?;
                }
            }
            "431" | "432" | "433" if !self.registered => {
                let name = p.get(1).copied().unwrap_or("").to_owned();
                self.emit(Event::NameRefused { name, reason: last }).await;
            }
            "353" if p.len() >= 4 => {
                let names = p[3]
                    .split(' ')
                    .filter(|n| !n.is_empty())
                    .map(|n| n.trim_start_matches(['@', '+', '~', '&', '%']).to_owned());
                self.pending_names
                    .entry(fold(p[2]))
                    .or_default()
                    .extend(names);
            }
            "366" if p.len() >= 2 => {
                let key = fold(p[1]);
                let mut names = self.pending_names.remove(&key).unwrap_or_default();
                // Every member list includes the member asking; one without us was left out.
                if names.iter().any(|n| is_me(n)) {
                    self.partial.remove(&key);
                } else if self.members.contains_key(&key) {
                    self.partial.insert(key.clone());
                    names.push(me.clone());
                }
                self.members.insert(key, names);
                self.emit_members(p[1]).await;
            }
            "332" if p.len() >= 3 => {
                self.emit(Event::Topic {
                    room: p[1].to_owned(),
                    topic: last,
                })
                .await
            }
            "372" | "375" | "376" | "422" | "002" | "003" => {
                self.emit(Event::ServerInfo { text: last }).await
            }
            code if code.len() == 3 && (code.starts_with('4') || code.starts_with('5')) => {
                // "<me> <subject> :<text>": show the subject with the text.
                let text = match p.len() {
                    3.. => format!("{}: {last}", p[1]),
                    _ => last,
                };
                self.emit(Event::ServerError { text }).await;
            }
            "PRIVMSG" | "NOTICE" if p.len() >= 2 => {
                let target = p[0].to_owned();
                let time = msg
                    .tags
                    .iter()
                    .find(|t| t.key == "time")
                    .map(|t| t.value.to_string());
                let (text, kind) = match (verb.as_str(), last.strip_prefix("\x01ACTION ")) {
                    ("PRIVMSG", Some(rest)) => (
                        rest.trim_end_matches('\x01').to_owned(),
                        MessageKind::Action,
                    ),
                    ("PRIVMSG", None) if last.starts_with('\x01') => return Ok(()), // other CTCP
                    ("PRIVMSG", None) => (last, MessageKind::Normal),
                    _ => (last, MessageKind::Notice),
                };
                // Users' messages carry `nick!user@host`; the server's own carry its bare name.
                if msg.source.is_none_or(|s| !s.contains('!')) {
                    self.emit(Event::ServerInfo { text }).await;
                } else {
                    let own = is_me(&from);
                    // In a room whose list was left out, whoever speaks is a member we now know.
                    let key = fold(&target);
                    if self.partial.contains(&key)
                        && let Some(list) = self.members.get_mut(&key)
                        && !list.iter().any(|n| n.eq_ignore_ascii_case(&from))
                    {
                        list.push(from.clone());
                        self.emit_members(&target).await;
                    }
                    self.emit(Event::Message {
                        from,
                        target,
                        text,
                        kind,
                        own,
                        time,
                    })
                    .await;
                }
            }
            "JOIN" if !p.is_empty() => {
                let room = p[0].to_owned();
                if is_me(&from) {
                    self.room = Some(room.clone());
                    self.members.insert(fold(&room), Vec::new());
                    self.emit(Event::Joined { room }).await;
                } else if let Some(list) = self.members.get_mut(&fold(&room)) {
                    list.push(from.clone());
                    self.emit(Event::UserJoined {
                        room: room.clone(),
                        name: from,
                    })
                    .await;
                    self.emit_members(&room).await;
                }
            }
            "PART" if !p.is_empty() => {
                let room = p[0].to_owned();
                let reason = p.get(1).map(|r| r.to_string());
                if is_me(&from) {
                    self.members.remove(&fold(&room));
                    self.partial.remove(&fold(&room));
                    if self.room.as_deref().is_some_and(|r| fold(r) == fold(&room)) {
                        self.room = None;
                    }
                } else if let Some(list) = self.members.get_mut(&fold(&room)) {
                    list.retain(|n| !n.eq_ignore_ascii_case(&from));
                    self.emit(Event::UserLeft {
                        room: room.clone(),
                        name: from,
                        reason,
                    })
                    .await;
                    self.emit_members(&room).await;
                }
            }
            "QUIT" => {
                let rooms: Vec<String> = self
                    .members
                    .iter_mut()
                    .filter_map(|(room, list)| {
                        let before = list.len();
                        list.retain(|n| !n.eq_ignore_ascii_case(&from));
                        (list.len() != before).then(|| room.clone())
                    })
                    .collect();
                self.emit(Event::UserQuit {
                    name: from,
                    reason: last,
                })
                .await;
                for room in rooms {
                    self.emit_members(&room).await;
                }
            }
            "NICK" if !p.is_empty() => {
                let new = p[0].to_owned();
                if is_me(&from) {
                    self.nick = Some(new.clone());
                }
                let rooms: Vec<String> = self
                    .members
                    .iter_mut()
                    .filter_map(|(room, list)| {
                        let n = list.iter_mut().find(|n| n.eq_ignore_ascii_case(&from))?;
                        *n = new.clone();
                        Some(room.clone())
                    })
                    .collect();
                self.emit(Event::Renamed { old: from, new }).await;
                for room in rooms {
                    self.emit_members(&room).await;
                }
            }
            "TOPIC" if p.len() >= 2 => {
                self.emit(Event::Topic {
                    room: p[0].to_owned(),
                    topic: last,
                })
                .await
            }
            "ERROR" => {
                if self.quitting {
                    return Err(Disconnect::Quit);
                }
                if last.to_ascii_lowercase().contains("shutting down") {
                    self.emit(Event::ServerShutdown { message: last }).await;
                    return Err(Disconnect::ServerShutdown);
                }
                return Err(Disconnect::ClosedByServer { reason: last });
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_cap(&mut self, p: &[&str]) -> Result<(), End> {
        let sub = p.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        let caps = p.last().copied().unwrap_or("");
        match sub.as_str() {
            "LS" => {
                let wanted: Vec<&str> = caps
                    .split(' ')
                    .map(|c| c.split('=').next().unwrap_or(""))
                    .filter(|c| matches!(*c, "echo-message" | "server-time"))
                    .collect();
                if wanted.is_empty() {
                    self.send("CAP END").await?;
                } else {
                    self.send(&format!("CAP REQ :{}", wanted.join(" "))).await?;
                }
            }
            "ACK" | "NAK" if !self.registered => self.send("CAP END").await?,
            _ => {}
        }
        Ok(())
    }

    async fn emit_members(&mut self, room: &str) {
        let Some(list) = self.members.get(&fold(room)) else {
            return;
        };
        let mut names = list.clone();
        names.sort_by_key(|n| n.to_ascii_lowercase());
        let complete = !self.partial.contains(&fold(room));
        self.emit(Event::Members {
            room: room.to_owned(),
            names,
            complete,
        })
        .await;
    }
}

fn fold(room: &str) -> String {
    room.to_ascii_lowercase()
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The messages `text` goes out as: one per non-blank line, each line split where needed so that
/// the relayed `:nick!~user@host PRIVMSG target :piece` fits IRC's 512 bytes (leaving room for a
/// 16-byte user and a 64-byte host, which the server adds). Front ends use it to tell the person
/// in advance.
pub fn message_pieces<'a>(text: &'a str, nick: &str, target: &str, action: bool) -> Vec<&'a str> {
    let ctcp = if action { "\x01ACTION \x01".len() } else { 0 };
    let overhead = ":".len()
        + nick.len()
        + "!".len()
        + 16
        + "@".len()
        + 64
        + " PRIVMSG ".len()
        + target.len()
        + " :".len()
        + "\r\n".len()
        + ctcp;
    let budget = 512usize.saturating_sub(overhead).max(64);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|line| split_text(line, budget))
        .collect()
}

/// Splits `text` into pieces of at most `max` bytes, at spaces where possible and always at
/// character boundaries. Nothing is dropped.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = rest[..cut].rfind(' ').filter(|&i| i > max / 2) {
            cut = space + 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_text_keeps_every_byte_and_respects_the_limit() {
        let text = "héllo wörld ".repeat(100);
        let parts = split_text(&text, 50);
        assert!(parts.iter().all(|p| p.len() <= 50));
        assert_eq!(parts.concat(), text);
        assert_eq!(split_text("short", 50), ["short"]);
        let nospace = "é".repeat(40);
        let parts = split_text(&nospace, 15);
        assert!(parts.iter().all(|p| p.len() <= 15 && !p.is_empty()));
        assert_eq!(parts.concat(), nospace);
    }

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
