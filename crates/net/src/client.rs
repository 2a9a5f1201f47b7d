//! The client session: one connection to a Parla (or any IRC) server, driven by commands from a
//! front end (the terminal client, the desktop window, a simulated user) and reporting what
//! happens as typed [`Event`]s.
//!
//! The protocol is decided by the sans-IO core, [`parla_room::client::Session`]; this module is
//! its async driver. It is generic over [`Transport`] and [`Pinger`], so the same code runs on
//! TCP with ICMP and inside the simulation. One task owns the connection and `select!`s over the
//! server's lines, the front end's commands, the pinger's reports and the core's next deadline,
//! feeds each to the core, and carries out what it decided: events to the front end, lines to
//! the server. The front end talks to it through two bounded channels and never blocks on the
//! network.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
pub use parla_room::client::Config as SessionConfig;
use parla_room::client::{Resume, Session};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tracing::{debug, info};

use crate::addr::ServerAddr;
use crate::clock::{Clock, sleep_until_opt};
use crate::codec::{DEFAULT_MAX_LINE, Frame, LineCodec};
use crate::ping::{PingConfig, PingEvent, Pinger, watch};
use crate::tls::{TlsConnectError, Trust};
use crate::transport::{Stream, Transport};

// The protocol-level vocabulary lives with the core; front ends keep importing it from here.
pub use parla_room::client::{
    Command, Disconnect, Event, HISTORY_PAGE, HistoryPage, Member, MessageKind, Said,
    TYPING_ACTIVE_EVERY_MS, Typing, message_pieces, split_text,
};
/// How the session compares names (the server's casemapping), for front ends that key names
/// the same way.
pub use parla_room::names::casefold;

/// How the session connects and watches the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server.
    pub addr: ServerAddr,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// ICMP liveness pings to the server's IP; `None` turns them off.
    pub ping: Option<PingConfig>,
    /// What the session says about itself (username, real name, password, room) and how it
    /// watches a silent server with IRC `PING`: the client core's own configuration.
    pub session: SessionConfig,
    /// Whom to trust when `addr` asks for TLS.
    pub trust: Trust,
    /// Connect again by itself when a registered session's connection is lost; `None` ends
    /// the session instead.
    pub reconnect: Option<Reconnect>,
}

impl ClientConfig {
    /// Defaults for connecting to `addr` (the session's own are the core's).
    pub fn new(addr: ServerAddr) -> ClientConfig {
        ClientConfig {
            addr,
            connect_timeout: Duration::from_secs(10),
            ping: Some(PingConfig::default()),
            session: SessionConfig::default(),
            trust: Trust::System,
            reconnect: Some(Reconnect::default()),
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
    /// Connected, but TLS could not be set up (its error says why and what to do).
    #[error("could not connect to {addr} securely: {cause}")]
    Tls {
        /// Where we tried.
        addr: ServerAddr,
        /// What went wrong.
        cause: TlsConnectError,
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
/// A connection lost later is made again by itself (see [`Reconnect`]).
pub async fn connect<T: Transport, P: Pinger>(
    transport: &T,
    pinger: P,
    config: ClientConfig,
) -> Result<Client, ConnectError> {
    let (stream, server) = open(transport, &config).await?;
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let link = Link {
        transport: transport.clone(),
        config,
        commands: cmd_rx,
        events: ev_tx,
        since: tokio::time::Instant::now(),
    };
    tokio::spawn(link.run(stream, server, pinger));
    Ok(Client {
        commands: cmd_tx,
        events: ev_rx,
        server,
    })
}

/// Connects (and sets up TLS when the address asks for it).
async fn open<T: Transport>(
    transport: &T,
    config: &ClientConfig,
) -> Result<(Box<dyn Stream>, SocketAddr), ConnectError> {
    let addr = config.addr.clone();
    let connected = crate::clock::timeout(
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
    info!(%server, tls = addr.tls, "connected");
    if !addr.tls {
        return Ok((Box::new(stream), server));
    }
    let secured = crate::clock::timeout(
        config.connect_timeout,
        crate::tls::connect(stream, &addr.host, &config.trust),
    )
    .await;
    match secured {
        Err(_) => Err(ConnectError::TimedOut {
            addr,
            timeout: config.connect_timeout,
        }),
        Ok(Err(cause)) => Err(ConnectError::Tls { addr, cause }),
        Ok(Ok(stream)) => {
            info!(%server, "TLS established");
            Ok((Box::new(stream), server))
        }
    }
}

/// How a lost connection is made again: after `first`, then twice as long each failed try, up
/// to `max`, each wait lengthened by up to a fifth (so that the clients of a restarted server
/// do not all come back in the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// The wait before the first try.
    pub first: Duration,
    /// The longest wait between tries.
    pub max: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Reconnect {
    /// The wait before try `attempt` (from 1); `spread` (any number) picks the lengthening.
    pub fn delay(&self, attempt: u32, spread: u64) -> Duration {
        let doubled = self
            .first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let extra = doubled.as_millis() as u64 * (spread % 1000) / 5000;
        doubled + Duration::from_millis(extra)
    }
}

/// Whether a session that ended so is worth connecting again: a lost link or a silent server
/// is; a quit, a shutdown the server announced, a server that closed the link on purpose (a
/// ban, a flood, a full server), or a server host that stopped answering pings (Parla's design:
/// the client then closes) is not.
fn worth_reconnecting(end: &Disconnect) -> bool {
    matches!(
        end,
        Disconnect::ConnectionLost { .. } | Disconnect::ServerNotResponding { .. }
    )
}

/// Why the connection was lost, in a few words for "Connection lost: …; reconnecting".
fn lost_because(end: &Disconnect) -> String {
    match end {
        Disconnect::ConnectionLost { reason } => reason.clone(),
        Disconnect::ServerNotResponding { silent } => {
            format!(
                "the server stopped responding (silent for {}s)",
                silent.as_secs()
            )
        }
        other => other.to_string(),
    }
}

/// One person's link to the server across connections: runs a session on each, and when one
/// is lost (and was registered), waits, connects again and resumes it.
struct Link<T> {
    transport: T,
    config: ClientConfig,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// When the link started.
    since: tokio::time::Instant,
}

impl<T: Transport> Link<T> {
    async fn run<P: Pinger>(
        mut self,
        mut stream: Box<dyn Stream>,
        mut server: SocketAddr,
        pinger: P,
    ) {
        let mut pinger = Some(pinger);
        let mut resume = None;
        // Tries made to connect again since the last connection that registered.
        let mut tries = 0;
        loop {
            let (ping_tx, ping_rx) = mpsc::channel(16);
            let watcher = match (self.config.ping.clone(), pinger.take()) {
                (Some(ping), Some(p)) => Some(tokio::spawn(watch(p, server.ip(), ping, ping_tx))),
                (_, p) => {
                    pinger = p;
                    None
                }
            };
            let clock = Clock::starting_at(0);
            let session = self.config.session.clone();
            let resuming = resume.is_some();
            let core = match resume.take() {
                Some(resume) => Session::resumed(session, clock.now(), resume),
                None => Session::new(session, clock.now()),
            };
            let driver = Driver::new(stream, self.events.clone(), core, clock, watcher.is_some());
            let (end, next, registered) = driver.run(&mut self.commands, ping_rx).await;
            // The watch ends as its channel closed: its pinger serves the next connection.
            if let Some(w) = watcher {
                pinger = w.await.ok();
            }
            // A server that turns a reconnection away before it registers (full, or cut off from
            // its cluster: "try again in a moment") is one more failed try, not the end.
            let refused_try =
                resuming && !registered && matches!(end, Disconnect::ClosedByServer { .. });
            let backoff = self
                .config
                .reconnect
                .filter(|_| refused_try || worth_reconnecting(&end));
            let (Some(backoff), Some(next)) = (backoff, next) else {
                let _ = self.events.send(Event::Disconnected(end)).await;
                return;
            };
            // Tries turned away go on counting, so their waits keep growing.
            tries = if refused_try { tries } else { 0 };
            match self.again(backoff, lost_because(&end), &mut tries).await {
                Some((s, a)) => (stream, server) = (s, a),
                None => return,
            }
            resume = Some(next);
        }
    }

    /// Waits and tries to connect until it works: `None` if the person quit meanwhile (or
    /// the front end went away). `tries` counts the tries made, across calls.
    async fn again(
        &mut self,
        backoff: Reconnect,
        mut reason: String,
        tries: &mut u32,
    ) -> Option<(Box<dyn Stream>, SocketAddr)> {
        // The milliseconds of how long the link has been up: as good as random among clients.
        let spread = self.since.elapsed().subsec_millis().into();
        loop {
            *tries += 1;
            let attempt = *tries;
            let after = backoff.delay(attempt, spread);
            info!(%reason, ?after, attempt, "connection lost; reconnecting");
            let event = Event::Reconnecting {
                reason: reason.clone(),
                after,
                attempt,
            };
            let _ = self.events.send(event).await;
            // Until the new connection is up, what is typed is answered here: a quit, during
            // the wait or while the connection is being made, ends it all (there is nobody to
            // say it to yet).
            let wait = crate::clock::sleep(after);
            between_connections(&mut self.commands, &self.events, wait).await?;
            let opening = open(&self.transport, &self.config);
            let opened = between_connections(&mut self.commands, &self.events, opening).await?;
            match opened {
                Ok(pair) => return Some(pair),
                Err(err) => reason = err.to_string(),
            }
        }
    }
}

/// Runs `work` while there is no connection, answering what is typed meanwhile: a command is
/// refused with a word; a quit (or the front end going away) ends it all, and gives `None`.
async fn between_connections<T>(
    commands: &mut mpsc::Receiver<Command>,
    events: &mpsc::Sender<Event>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            cmd = commands.recv() => match cmd {
                None | Some(Command::Quit(_)) => {
                    let _ = events.send(Event::Disconnected(Disconnect::Quit)).await;
                    return None;
                }
                Some(_) => {
                    let text = parla_room::client::RECONNECTING.to_owned();
                    let _ = events.send(Event::ServerError { text }).await;
                }
            },
        }
    }
}

/// The session task: the transport and the channels around the core.
///
/// Reading and writing are separate branches of one `select!`, so a connection that stops
/// taking our lines (a dead link whose send buffer filled, a server that stopped reading) never
/// stops the session from reading, taking commands or running its timers: its liveness check
/// still fires and ends it.
struct Driver<S> {
    reader: FramedRead<ReadHalf<S>, LineCodec>,
    writer: WriteHalf<S>,
    /// Bytes the core asked to send that the connection has not taken yet.
    unsent: BytesMut,
    events: mpsc::Sender<Event>,
    core: Session,
    clock: Clock,
    /// The pinger still reports (it stops after `Unavailable` or `Failed`, or was never started).
    pings_open: bool,
    /// The server's side may still send: false after end of stream or a read error, which the
    /// core was told once (a finished stream is never polled again, so nothing can spin on it).
    reading: bool,
    /// Timeouts in a row after which the core's deadline had not moved past the time: a core
    /// bug that would spin the task, stopped at [`STUCK_TIMEOUTS`].
    stuck: u32,
}

/// How many times in a row the core may leave its deadline in the past before the driver
/// gives up on it (a bug: the session would spin at full speed instead of waiting).
const STUCK_TIMEOUTS: u32 = 1000;

/// How long a session that ended may take to hand over its last lines (a `QUIT`).
const LAST_WRITE: Duration = Duration::from_secs(1);

impl<S: Stream> Driver<S> {
    fn new(
        stream: S,
        events: mpsc::Sender<Event>,
        core: Session,
        clock: Clock,
        pings_open: bool,
    ) -> Self {
        let (read, write) = tokio::io::split(stream);
        Driver {
            reader: FramedRead::new(read, LineCodec::new(DEFAULT_MAX_LINE)),
            writer: write,
            unsent: BytesMut::new(),
            events,
            core,
            clock,
            pings_open,
            reading: true,
            stuck: 0,
        }
    }

    /// Runs the session to its end: why it ended, what a new connection needs to resume it
    /// (if it registered, or was resuming), and whether it registered. The caller reports the
    /// end.
    async fn run(
        mut self,
        commands: &mut mpsc::Receiver<Command>,
        mut pings: mpsc::Receiver<PingEvent>,
    ) -> (Disconnect, Option<Resume>, bool) {
        // The core queued its first lines (CAP LS, PASS) when it was made.
        self.carry_out().await;
        let end = loop {
            if let Some(end) = self.core.ended() {
                break end.clone();
            }
            self.step(commands, &mut pings).await;
            self.carry_out().await;
        };
        // Whatever the core still had to say (a QUIT), if the connection takes it soon.
        if !self.unsent.is_empty() {
            let _ = crate::clock::timeout(LAST_WRITE, self.writer.write_all(&self.unsent)).await;
        }
        info!(reason = %end, "session ended");
        (end, self.core.resume(), self.core.is_registered())
    }

    /// Waits for the next input (or for the connection to take some of our lines) and feeds
    /// it to the core.
    async fn step(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        pings: &mut mpsc::Receiver<PingEvent>,
    ) {
        let deadline = self.core.poll_timeout().map(|at| self.clock.instant_of(at));
        // After QUIT the session only waits for the server to close the link.
        let quitting = self.core.is_quitting();
        let writing = !self.unsent.is_empty();
        tokio::select! {
            biased;
            frame = self.reader.next(), if self.reading => {
                let now = self.clock.now();
                match frame {
                    Some(Ok(Frame::Line(line))) => self.core.handle_line(now, &line),
                    // Discarded by the codec; not even a sign of life.
                    Some(Ok(Frame::TooLong)) => {}
                    Some(Err(err)) => {
                        self.reading = false;
                        self.core.handle_closed(now, Some(err.to_string()));
                    }
                    None => {
                        self.reading = false;
                        self.core.handle_closed(now, None);
                    }
                }
            }
            written = self.writer.write(&self.unsent), if writing => match written {
                Ok(0) => self.core.handle_send_failed(
                    self.clock.now(),
                    "the connection takes no more data".to_owned(),
                ),
                Ok(n) => self.unsent.advance(n),
                Err(err) => self.core.handle_send_failed(self.clock.now(), err.to_string()),
            },
            cmd = commands.recv(), if !quitting => {
                // The front end is gone: leave politely.
                let cmd = cmd.unwrap_or(Command::Quit(None));
                self.core.handle_command(self.clock.now(), cmd);
            }
            report = pings.recv(), if self.pings_open && !quitting => match report {
                Some(report) => self.core.handle_ping(self.clock.now(), report),
                None => self.pings_open = false,
            },
            () = sleep_until_opt(deadline) => {
                let now = self.clock.now();
                self.core.handle_timeout(now);
                if self.core.poll_timeout().is_some_and(|next| next <= now) {
                    self.stuck += 1;
                    assert!(
                        self.stuck < STUCK_TIMEOUTS,
                        "the client session's deadline stays in the past after {STUCK_TIMEOUTS} timeouts (a bug in the session core)"
                    );
                } else {
                    self.stuck = 0;
                }
            }
        }
    }

    /// Carries out what the core decided: its events to the front end, then its lines into the
    /// send buffer (the core queues an input's events before its lines, so this keeps their
    /// order); [`Driver::step`] writes them as the connection takes them.
    async fn carry_out(&mut self) {
        while let Some(event) = self.core.poll_event() {
            // A front end that stopped listening is handled by the commands channel closing.
            let _ = self.events.send(event).await;
        }
        while let Some(line) = self.core.poll_transmit() {
            debug!(%line, "send");
            self.unsent.extend_from_slice(line.as_bytes());
            self.unsent.extend_from_slice(b"\r\n");
        }
    }
}
