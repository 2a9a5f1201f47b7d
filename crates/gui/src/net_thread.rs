//! The window's network side: one background thread that owns a tokio runtime and at most one
//! client session, and talks to the UI over two bounded channels.
//!
//! The UI sends [`NetCommand`]s with `try_send` and drains [`NetEvent`]s with `try_recv` once per
//! frame, so it never waits on the network. After each event it pushes, this thread calls
//! [`egui::Context::request_repaint`] so that the UI wakes up even when nothing else happens
//! (egui's `http_app.rs` does the same for its fetches).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use eframe::egui;
use parla_net::Pinger;
use parla_net::addr::ServerAddr;
use parla_net::client::{self, Client, ClientConfig, Command, ConnectError, Disconnect, Event};
use parla_net::transport::Tcp;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// What the UI asks the network thread to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCommand {
    /// Connect to `addr` and register as `name`.
    Connect {
        /// The server.
        addr: ServerAddr,
        /// The name to ask for first.
        name: String,
    },
    /// Give up on a connection attempt that has not finished yet.
    CancelConnect,
    /// Ask for another name (after a refusal) or change it.
    Nick(String),
    /// Pass a command to the session (say, act, message, join).
    Send(Command),
    /// Leave: sends `QUIT` (with the reason, if any) and ends the session.
    Quit(Option<String>),
}

/// What the network thread reports to the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum NetEvent {
    /// The TCP connection is up; registration follows.
    Connected {
        /// The address reached.
        server: std::net::SocketAddr,
    },
    /// Connecting failed; the text names the address tried and what to check.
    ConnectFailed {
        /// For the person.
        error: String,
    },
    /// Something from the session; [`Event::Disconnected`] ends it.
    Session(Event),
    /// Ctrl-C in the terminal: the session (if any) has been told to quit.
    Interrupted,
}

/// A future that completes when the person presses Ctrl-C in the terminal (or when a test says
/// so). The real one is `tokio::signal::ctrl_c()`.
pub type Interrupt = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Builds the session configuration for an address (the command-line flags decide the rest).
pub type SessionConfig = Box<dyn Fn(ServerAddr) -> ClientConfig + Send + 'static>;

/// The UI's ends of the two channels.
#[derive(Debug)]
pub struct NetHandle {
    /// Commands to the network thread. Bounded: the UI uses `try_send`.
    pub commands: mpsc::Sender<NetCommand>,
    /// Events from the network thread. Bounded: the thread waits when the UI falls behind, and
    /// the session behind it then stops reading the socket (backpressure, nothing dropped).
    pub events: mpsc::Receiver<NetEvent>,
}

/// How long the thread waits for the session to finish its `QUIT` when the UI goes away
/// without one (the window was destroyed).
const QUIT_GRACE: Duration = Duration::from_secs(2);

/// Starts the network thread. `pinger` makes one [`Pinger`] per connection; `interrupt`
/// (usually Ctrl-C) makes the session quit and is reported as [`NetEvent::Interrupted`].
pub fn spawn<P, F>(
    ctx: egui::Context,
    session_config: SessionConfig,
    pinger: F,
    interrupt: Option<Interrupt>,
) -> NetHandle
where
    P: Pinger,
    F: FnMut() -> P + Send + 'static,
{
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let worker = Worker {
        ctx,
        session_config,
        pinger,
        events: ev_tx,
    };
    std::thread::Builder::new()
        .name("parla-net".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    warn!(cause = %err, "could not start the network runtime");
                    let _ = worker.events.try_send(NetEvent::ConnectFailed {
                        error: format!("the network could not start: {err}"),
                    });
                    worker.ctx.request_repaint();
                    return;
                }
            };
            runtime.block_on(worker.run(cmd_rx, interrupt));
            // Sessions still sending their last lines get a moment, not forever.
            runtime.shutdown_timeout(Duration::from_millis(200));
        })
        .expect("the OS starts a thread");
    NetHandle {
        commands: cmd_tx,
        events: ev_rx,
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<Client, ConnectError>> + Send>>;

struct Worker<F> {
    ctx: egui::Context,
    session_config: SessionConfig,
    pinger: F,
    events: mpsc::Sender<NetEvent>,
}

/// The UI has gone away: stop.
struct UiGone;

impl<P: Pinger, F: FnMut() -> P + Send + 'static> Worker<F> {
    async fn run(mut self, mut commands: mpsc::Receiver<NetCommand>, interrupt: Option<Interrupt>) {
        let mut interrupt = interrupt;
        let mut connecting: Option<(Connecting, String)> = None;
        let mut session: Option<Client> = None;
        loop {
            let step: Result<(), UiGone> = tokio::select! {
                biased;
                () = wait_opt(&mut interrupt) => {
                    interrupt = None;
                    info!("interrupted (Ctrl-C): quitting");
                    connecting = None;
                    if let Some(client) = &session {
                        let _ = client.commands.send(Command::Quit(Some("Ctrl-C".into()))).await;
                    }
                    self.push(NetEvent::Interrupted).await
                }
                event = next_event(&mut session) => match event {
                    Some(event) => {
                        let over = matches!(event, Event::Disconnected(_));
                        if over {
                            session = None;
                        }
                        // Received text is made safe once, here, for everything the window
                        // shows: IRC styles kept (the window draws them), nothing else that acts.
                        self.push(NetEvent::Session(crate::safe::event(&event, crate::safe::formatted))).await
                    }
                    None => {
                        // The session ended without saying why (it always says; be safe).
                        session = None;
                        self.push(NetEvent::Session(Event::Disconnected(Disconnect::ConnectionLost {
                            reason: "the session stopped".into(),
                        }))).await
                    }
                },
                result = connect_opt(&mut connecting) => {
                    let name = connecting.take().map(|(_, name)| name).unwrap_or_default();
                    match result {
                        Ok(client) => {
                            let server = client.server;
                            let _ = client.commands.send(Command::Nick(name)).await;
                            session = Some(client);
                            self.push(NetEvent::Connected { server }).await
                        }
                        Err(err) => self.push(NetEvent::ConnectFailed { error: err.to_string() }).await,
                    }
                }
                cmd = commands.recv() => match cmd {
                    None => Err(UiGone),
                    Some(cmd) => {
                        self.on_command(cmd, &mut connecting, &session).await;
                        Ok(())
                    }
                },
            };
            if step.is_err() {
                break;
            }
        }
        // The window is gone. If a session is still up, let it say goodbye (bounded).
        if let Some(mut client) = session {
            debug!("UI gone: quitting the session");
            let _ = client.commands.send(Command::Quit(None)).await;
            let _ = tokio::time::timeout(QUIT_GRACE, async {
                while let Some(ev) = client.events.recv().await {
                    if matches!(ev, Event::Disconnected(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }

    async fn on_command(
        &mut self,
        cmd: NetCommand,
        connecting: &mut Option<(Connecting, String)>,
        session: &Option<Client>,
    ) {
        debug!(?cmd, "command from the UI");
        match cmd {
            NetCommand::Connect { addr, name } => {
                if session.is_some() {
                    warn!("already connected; ignoring a second connect");
                    return;
                }
                let config = (self.session_config)(addr);
                let pinger = (self.pinger)();
                *connecting = Some((
                    Box::pin(async move { client::connect(&Tcp, pinger, config).await }),
                    name,
                ));
            }
            NetCommand::CancelConnect => *connecting = None,
            NetCommand::Nick(name) => send(session, Command::Nick(name)).await,
            NetCommand::Send(cmd) => send(session, cmd).await,
            NetCommand::Quit(reason) => {
                *connecting = None;
                send(session, Command::Quit(reason)).await;
            }
        }
    }

    /// Hands an event to the UI and wakes it up.
    async fn push(&self, event: NetEvent) -> Result<(), UiGone> {
        self.events.send(event).await.map_err(|_| UiGone)?;
        self.ctx.request_repaint();
        Ok(())
    }
}

async fn send(session: &Option<Client>, cmd: Command) {
    match session {
        // If the session has just ended, its Disconnected event is on its way; nothing to add.
        Some(client) => {
            let _ = client.commands.send(cmd).await;
        }
        None => debug!(?cmd, "no session; dropping the command"),
    }
}

async fn wait_opt(interrupt: &mut Option<Interrupt>) {
    match interrupt {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

async fn next_event(session: &mut Option<Client>) -> Option<Event> {
    match session {
        Some(client) => client.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn connect_opt(
    connecting: &mut Option<(Connecting, String)>,
) -> Result<Client, ConnectError> {
    match connecting {
        Some((fut, _)) => fut.await,
        None => std::future::pending().await,
    }
}
