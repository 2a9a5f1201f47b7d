//! The desktop window: [`ParlaApp`] holds the state and implements [`eframe::App`].
//!
//! Each frame, [`eframe::App::logic`] drains what the network thread reported (never waiting)
//! and decides whether it is time to close; [`eframe::App::ui`] draws the connect screen or the
//! chat screen. Widgets only record [`Intent`]s while drawing; they are carried out after the
//! frame is drawn (egui's `wrap_app.rs` does the same with its `Command`), so drawing never
//! mutates what it is iterating over and the order of effects is easy to follow.
//!
//! This file owns the state, what happens to it (network events, intents, closing) and the
//! `App` impl. Drawing lives beside it, one screen per file, as more `impl ParlaApp` blocks:
//! `connect` (the connect screen), `chat_view` (the chat screen), `theme` (colours and fonts).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use eframe::egui::{self, ViewportCommand};
use parla_net::Pinger;
use parla_net::addr::ServerAddr;
use parla_net::client::{Command, Disconnect, Event, Typing};
use tokio::sync::mpsc::error::TryRecvError;

use crate::chat::{self, Chat, Notice, PingStatus, SendPlan};
use crate::input::{self, Input};
use crate::net_thread::{self, Interrupt, NetCommand, NetEvent, NetHandle, SessionConfig};

mod chat_view;
mod connect;
mod theme;

use theme::install_fonts;
pub use theme::name_colour;

/// How the window starts and behaves. [`AppConfig::new`] gives the defaults.
pub struct AppConfig {
    /// The server from the command line: connect at once instead of asking.
    pub addr: Option<String>,
    /// The name from the command line (else `$USER`, else "guest"; asked again if refused).
    pub name: Option<String>,
    /// The session settings for an address (ping, password, room...).
    pub session: SessionConfig,
    /// Ctrl-C in the terminal (`None`: not watched, as in tests that don't need it).
    pub interrupt: Option<Interrupt>,
    /// How long the reason stays on screen before the window closes by itself (ping failure,
    /// server shutdown).
    pub close_delay: Duration,
    /// How long closing waits for the server to confirm our `QUIT`.
    pub quit_wait: Duration,
    /// Where the process's exit code is left for `main`: 0, or 1 after a ping failure.
    pub exit_code: Arc<AtomicI32>,
    /// Show desktop notifications for mentions and direct messages while not focused.
    pub notify: bool,
}

impl AppConfig {
    /// Defaults: ask for the address, no Ctrl-C watch, close 4 s after a fatal reason, wait up
    /// to 2 s for a `QUIT` to be confirmed.
    pub fn new(session: SessionConfig) -> AppConfig {
        AppConfig {
            addr: None,
            name: None,
            session,
            interrupt: None,
            close_delay: Duration::from_secs(4),
            quit_wait: Duration::from_secs(2),
            exit_code: Arc::new(AtomicI32::new(0)),
            notify: false,
        }
    }
}

/// Which screen is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Address and name.
    Connect,
    /// The room.
    Chat,
}

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// No session.
    Offline,
    /// Opening the TCP connection.
    Connecting {
        /// Where to.
        addr: ServerAddr,
    },
    /// Connected; the server has not accepted a name yet.
    Registering {
        /// The address reached.
        server: SocketAddr,
    },
    /// Registered and chatting.
    Online {
        /// The address reached.
        server: SocketAddr,
    },
    /// The session ended; the reason is shown.
    Ended {
        /// The address it was connected to.
        server: SocketAddr,
        /// Why, for the person.
        reason: String,
    },
}

impl ConnState {
    fn session_alive(&self) -> bool {
        matches!(
            self,
            ConnState::Connecting { .. } | ConnState::Registering { .. } | ConnState::Online { .. }
        )
    }

    /// For the status bar.
    pub fn describe(&self) -> &'static str {
        match self {
            ConnState::Offline => "not connected",
            ConnState::Connecting { .. } => "connecting…",
            ConnState::Registering { .. } => "registering…",
            ConnState::Online { .. } => "connected",
            ConnState::Ended { .. } => "disconnected",
        }
    }
}

/// What a widget asked for during a frame; carried out after drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Intent {
    /// Connect (or, when connected, ask for the typed name).
    Submit,
    /// Stop connecting.
    Cancel,
    /// Send what is in the input box.
    SendLine,
    /// Back to the connect screen after the connection ended.
    Reconnect,
    /// Hand this command to the session (a menu item, the topic editor, the invite prompt).
    Send(Command),
    /// Put this text in the message box, to be finished and sent (e.g. `/kick bob `).
    Prefill(String),
    /// The text in the message box changed (typing notifications).
    Typed,
    /// Open the topic editor with the current topic.
    EditTopic,
    /// Open the invite prompt.
    OpenInvite,
    /// Close the topic editor or the invite prompt.
    CloseEditors,
    /// Join the room of the last invitation.
    AcceptInvitation,
    /// Forget the last invitation.
    DismissInvitation,
}

/// After this long without a keystroke, text left in the box counts as paused typing.
const TYPING_PAUSES_AFTER: Duration = Duration::from_secs(5);

/// Why and when the window closes by itself.
#[derive(Debug, Clone)]
struct Closing {
    /// Close at this time at the latest.
    deadline: Instant,
    /// Close as soon as the session has ended (we sent `QUIT` and wait for the server's word).
    early_when_ended: bool,
}

/// The Parla window.
pub struct ParlaApp {
    net: NetHandle,
    close_delay: Duration,
    quit_wait: Duration,
    exit_code: Arc<AtomicI32>,
    /// The height of the scrollback's content at the last frame (to keep the view in place
    /// when an older page is put on top).
    messages_height: f32,
    /// Where to put the scrollback's view at the next frame.
    messages_scroll_to: Option<f32>,
    /// The window's title as last set.
    title: String,
    /// Desktop notifications go to this thread (`None`: off).
    notifier: Option<std::sync::mpsc::SyncSender<Notice>>,
    /// Scroll the messages to the newest at the next frame (after sending, or asked).
    jump_to_newest: bool,
    /// How many lines had been appended when the view was last at the newest.
    seen_lines: u64,
    /// The window is narrow: the member list is folded away unless opened.
    narrow: bool,
    /// The member list is opened in a narrow window.
    members_open: bool,
    screen: Screen,
    conn: ConnState,
    /// The connect form.
    addr_text: String,
    name_text: String,
    addr_error: Option<String>,
    name_error: Option<String>,
    connect_error: Option<String>,
    /// A name has been sent and no answer has come yet.
    name_pending: bool,
    /// The chat.
    chat: Chat,
    input: String,
    /// Why the last line could not be sent (cleared when the input changes).
    compose_error: Option<String>,
    /// Give the main input focus in the next frame.
    focus_pending: bool,
    /// Put the message box's cursor after its text in the next frame (it was filled in).
    cursor_to_end: bool,
    /// The topic editor's text, while it is open.
    topic_edit: Option<String>,
    /// The invite prompt's text, while it is open.
    invite_edit: Option<String>,
    /// Give the topic editor's or invite prompt's field the focus in the next frame.
    form_focus: bool,
    /// We told the room we are typing, and the last keystroke was then.
    typing_since: Option<Instant>,
    closing: Option<Closing>,
    /// [`ViewportCommand::Close`] has been sent.
    closed: bool,
}

impl ParlaApp {
    /// Starts the network thread and the first screen. `pinger` makes the ICMP pinger for each
    /// connection (tests pass fakes).
    pub fn new<P, F>(ctx: &egui::Context, config: AppConfig, pinger: F) -> ParlaApp
    where
        P: Pinger,
        F: FnMut() -> P + Send + 'static,
    {
        let AppConfig {
            addr,
            name,
            session,
            interrupt,
            close_delay,
            quit_wait,
            exit_code,
            notify,
        } = config;
        install_fonts(ctx);
        let net = net_thread::spawn(ctx.clone(), session, pinger, interrupt);
        let default_name = name.clone().unwrap_or_else(|| {
            std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "guest".into())
        });
        let mut app = ParlaApp {
            net,
            close_delay,
            quit_wait,
            exit_code,
            messages_height: 0.0,
            messages_scroll_to: None,
            title: "Parla".to_owned(),
            notifier: notify.then(notifier),
            jump_to_newest: false,
            seen_lines: 0,
            narrow: false,
            members_open: false,
            screen: Screen::Connect,
            conn: ConnState::Offline,
            addr_text: addr.clone().unwrap_or_default(),
            name_text: default_name,
            addr_error: None,
            name_error: None,
            connect_error: None,
            name_pending: false,
            chat: Chat::default(),
            input: String::new(),
            compose_error: None,
            focus_pending: true,
            cursor_to_end: false,
            topic_edit: None,
            invite_edit: None,
            form_focus: false,
            typing_since: None,
            closing: None,
            closed: false,
        };
        if addr.is_some() {
            // An address on the command line: no need to ask.
            app.submit();
        }
        app
    }

    /// The screen shown.
    pub fn screen(&self) -> Screen {
        self.screen
    }

    /// Where the connection stands.
    pub fn conn(&self) -> &ConnState {
        &self.conn
    }

    /// What the chat screen shows.
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// The text in the message box.
    pub fn input_text(&self) -> &str {
        &self.input
    }

    /// Whether the window has been told to close.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The exit code the process will end with.
    pub fn exit_code(&self) -> i32 {
        self.exit_code.load(Ordering::SeqCst)
    }

    fn command(&mut self, cmd: NetCommand) -> bool {
        match self.net.commands.try_send(cmd) {
            Ok(()) => true,
            Err(err) => {
                // Full: the network thread is far behind (64 commands); closed: it is gone.
                // Either way say so rather than dropping the person's input quietly.
                tracing::warn!(cause = %err, "could not hand a command to the network thread");
                self.compose_error = Some(
                    "The connection is not keeping up; nothing was sent. Try again.".to_owned(),
                );
                false
            }
        }
    }

    // ---- Lifecycle -------------------------------------------------------------------------

    /// The connect form's button or Enter: connect, or (when connected) ask for the name.
    fn submit(&mut self) {
        let name = self.name_text.trim().to_owned();
        self.name_error = None;
        self.addr_error = None;
        self.connect_error = None;
        if name.is_empty() {
            self.name_error = Some("Type the name you want to be known by.".to_owned());
            self.focus_pending = true;
            return;
        }
        if name.contains(' ') {
            self.name_error = Some("A name cannot contain spaces.".to_owned());
            self.focus_pending = true;
            return;
        }
        match self.conn.clone() {
            ConnState::Registering { .. } if !self.name_pending => {
                self.name_pending = self.command(NetCommand::Nick(name));
            }
            ConnState::Offline | ConnState::Ended { .. } => {
                let addr = match self.addr_text.parse::<ServerAddr>() {
                    Ok(addr) => addr,
                    Err(err) => {
                        self.addr_error = Some(capitalize(&err.to_string()));
                        self.focus_pending = true;
                        return;
                    }
                };
                self.addr_error = None;
                let again =
                    matches!(self.conn, ConnState::Ended { .. }) && !self.chat.lines.is_empty();
                if self.command(NetCommand::Connect {
                    addr: addr.clone(),
                    name,
                }) {
                    // After a lost connection the conversation so far stays on screen.
                    if again {
                        self.chat.reconnecting(&addr.to_string());
                    } else {
                        self.chat = Chat::default();
                    }
                    self.conn = ConnState::Connecting { addr };
                    self.name_pending = true;
                }
            }
            _ => {}
        }
    }

    /// Leave: `QUIT` if there is a session, then close (once the server confirmed, or after
    /// `quit_wait`).
    fn quit(&mut self, reason: Option<String>) {
        if self.closing.is_some() {
            return;
        }
        self.exit_code.store(0, Ordering::SeqCst);
        let now = Instant::now();
        let deadline = match self.conn {
            ConnState::Registering { .. } | ConnState::Online { .. } => {
                let _ = self.command(NetCommand::Quit(reason));
                self.chat.system("Leaving…");
                now + self.quit_wait
            }
            ConnState::Connecting { .. } => {
                // Nobody to say goodbye to yet: stop connecting and go.
                let _ = self.command(NetCommand::CancelConnect);
                now
            }
            ConnState::Offline | ConnState::Ended { .. } => now,
        };
        self.closing = Some(Closing {
            deadline,
            early_when_ended: true,
        });
    }

    /// Close by itself after showing `reason` for a moment (ping failure, server shutdown).
    fn close_soon(&mut self, reason: &str, code: i32) {
        eprintln!("parla: {reason}");
        // Shown if this happens on the connect screen (the chat screen has its banner).
        self.connect_error = Some(format!(
            "Disconnected: {reason}. The window closes in a moment."
        ));
        self.exit_code.store(code, Ordering::SeqCst);
        if self.closing.is_none() {
            self.closing = Some(Closing {
                deadline: Instant::now() + self.close_delay,
                early_when_ended: false,
            });
        }
    }

    fn on_net_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Connected { server } => {
                self.conn = ConnState::Registering { server };
            }
            NetEvent::ConnectFailed { error } => {
                self.conn = ConnState::Offline;
                self.name_pending = false;
                self.connect_error = Some(capitalize(&error));
                self.screen = Screen::Connect;
                self.focus_pending = true;
            }
            NetEvent::Interrupted => self.quit(Some("Ctrl-C".into())),
            NetEvent::Session(event) => self.on_session_event(event),
        }
    }

    fn on_session_event(&mut self, event: Event) {
        match &event {
            Event::NameRefused { name, reason } => {
                self.name_pending = false;
                self.name_error = Some(format!("“{name}” was refused: {reason}"));
                self.screen = Screen::Connect;
                self.focus_pending = true;
            }
            Event::Registered { name, .. } => {
                self.name_pending = false;
                self.name_error = None;
                self.name_text = name.clone();
                if let ConnState::Registering { server } = self.conn {
                    self.conn = ConnState::Online { server };
                }
                self.screen = Screen::Chat;
                self.focus_pending = true;
            }
            Event::Disconnected(why) => self.on_disconnected(why),
            _ => {}
        }
        self.chat.apply(&event);
    }

    fn on_disconnected(&mut self, why: &Disconnect) {
        self.name_pending = false;
        self.chat.ping = PingStatus::Off;
        // Display texts from the library are made to follow "parla: " or "Disconnected: ".
        let reason = why.to_string();
        let server = match &self.conn {
            ConnState::Registering { server } | ConnState::Online { server } => *server,
            ConnState::Ended { server, .. } => *server,
            _ => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let was_online = matches!(self.conn, ConnState::Online { .. });
        self.chat.offline();
        self.conn = ConnState::Ended {
            server,
            reason: reason.clone(),
        };
        if self.closing.is_some() {
            // We are leaving anyway (quit, Ctrl-C, close button): nothing more to show.
            return;
        }
        match why {
            Disconnect::Quit => self.quit(None),
            Disconnect::PingFailed { .. } => {
                self.chat.error(format!("Disconnected: {reason}."));
                self.close_soon(&reason, 1);
            }
            // The shutdown notice is already in the room; the banner says the rest.
            Disconnect::ServerShutdown => self.close_soon(&reason, 0),
            _ if !was_online => {
                // Lost before we ever chatted: back to the form, with the reason.
                self.screen = Screen::Connect;
                self.focus_pending = true;
                self.connect_error = Some(format!("Disconnected from {server}: {reason}."));
            }
            _ => self.chat.error(format!("Disconnected: {reason}.")),
        }
    }

    /// A typing notification for the session; dropped if the network thread is behind (it is
    /// only a hint, and the next keystroke sends another).
    fn typing(&mut self, state: Typing) {
        let _ = self
            .net
            .commands
            .try_send(NetCommand::Send(Command::Typing(state)));
    }

    /// The message box changed: typing while it holds text to say (not a command), done when
    /// it is emptied.
    fn typed(&mut self) {
        let text = self.input.trim_start();
        let saying = !text.is_empty() && (!text.starts_with('/') || text.starts_with("//"));
        if saying {
            self.typing_since = Some(Instant::now());
            self.typing(Typing::Active);
        } else if self.typing_since.take().is_some() {
            self.typing(Typing::Done);
        }
    }

    fn send_line(&mut self) {
        let line = std::mem::take(&mut self.input);
        self.focus_pending = true;
        // What you send, you see: back to the newest.
        self.jump_to_newest = true;
        // The message itself ends the typing (the session sends no `done` after it).
        self.typing_since = None;
        let cmd = match input::parse(&line) {
            Input::Nothing => return,
            Input::Help => {
                for part in input::HELP.split("; ") {
                    self.chat.system(part.trim_end_matches('.').to_owned());
                }
                return;
            }
            Input::Invalid(why) => {
                self.compose_error = Some(why);
                self.input = line;
                return;
            }
            Input::Command(cmd) => cmd,
        };
        if let Some(SendPlan::TooLong(bytes)) = self.plan_for(&cmd) {
            self.compose_error = Some(too_long(bytes));
            self.input = line;
            return;
        }
        match cmd {
            Command::Quit(reason) => self.quit(reason),
            cmd => {
                if !self.command(NetCommand::Send(cmd)) {
                    self.input = line;
                }
            }
        }
    }

    /// How a command's text will go out (None: it sends no text).
    fn plan_for(&self, cmd: &Command) -> Option<SendPlan> {
        let me = self.chat.me.as_deref().unwrap_or("");
        let room = self.chat.room.as_deref().unwrap_or("#lobby");
        chat::plan_for(cmd, me, room)
    }

    fn apply(&mut self, intent: Intent) {
        match intent {
            Intent::Submit => self.submit(),
            Intent::Cancel => {
                if matches!(self.conn, ConnState::Connecting { .. }) {
                    let _ = self.command(NetCommand::CancelConnect);
                    self.conn = ConnState::Offline;
                    self.name_pending = false;
                }
            }
            Intent::SendLine => self.send_line(),
            Intent::Reconnect => {
                self.screen = Screen::Connect;
                self.connect_error = None;
                self.focus_pending = true;
            }
            Intent::Send(cmd) => {
                if matches!(cmd, Command::Topic { .. } | Command::Invite { .. }) {
                    self.topic_edit = None;
                    self.invite_edit = None;
                    self.focus_pending = true;
                }
                let _ = self.command(NetCommand::Send(cmd));
            }
            Intent::Prefill(text) => {
                self.input = text;
                self.compose_error = None;
                self.focus_pending = true;
                self.cursor_to_end = true;
            }
            Intent::Typed => self.typed(),
            Intent::EditTopic => {
                self.invite_edit = None;
                self.topic_edit = Some(self.chat.current_topic().unwrap_or("").to_owned());
                self.form_focus = true;
            }
            Intent::OpenInvite => {
                self.topic_edit = None;
                self.invite_edit = Some(String::new());
                self.form_focus = true;
            }
            Intent::CloseEditors => {
                self.topic_edit = None;
                self.invite_edit = None;
                self.focus_pending = true;
            }
            Intent::AcceptInvitation => {
                if let Some((_, room)) = self.chat.invitation.take() {
                    let _ = self.command(NetCommand::Send(Command::Join(room)));
                }
            }
            Intent::DismissInvitation => self.chat.invitation = None,
        }
    }
}

impl eframe::App for ParlaApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Drain what the network said, without waiting. A cap per frame keeps a flood from
        // stalling drawing; the rest is taken in the next frame, which we ask for at once.
        for _ in 0..2000 {
            match self.net.events.try_recv() {
                Ok(event) => self.on_net_event(event),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if self.conn.session_alive() {
                        self.on_disconnected(&Disconnect::ConnectionLost {
                            reason: "the network thread stopped".into(),
                        });
                    }
                    break;
                }
            }
        }
        if !self.net.events.is_empty() {
            ctx.request_repaint();
        }
        // What arrived while the person looked elsewhere, in the title (read once they look),
        // and, for what is for them, as a desktop notification.
        for notice in std::mem::take(&mut self.chat.notices) {
            // A full queue drops the rest: the title still counts them.
            if let Some(tx) = &self.notifier {
                let _ = tx.try_send(notice);
            }
        }
        self.chat.set_focused(ctx.input(|i| i.focused));
        let title = self.chat.title();
        if title != self.title {
            ctx.send_viewport_cmd(ViewportCommand::Title(title.clone()));
            self.title = title;
        }

        // The window's close button: say goodbye to the server first.
        if ctx.input(|i| i.viewport().close_requested()) && !self.closed {
            if self.conn.session_alive() || self.closing.is_some() {
                ctx.send_viewport_cmd(ViewportCommand::CancelClose);
                self.quit(None);
            } else {
                self.closed = true;
            }
        }

        // Typing notifications: text left in the box for a while is paused typing; someone
        // else's lapses after a few seconds without news, so redraw then.
        let now = Instant::now();
        if let Some(since) = self.typing_since {
            if now >= since + TYPING_PAUSES_AFTER {
                self.typing_since = None;
                self.typing(Typing::Paused);
            } else {
                ctx.request_repaint_after(since + TYPING_PAUSES_AFTER - now);
            }
        }
        for list in self.chat.typing.values_mut() {
            list.retain(|(_, until)| *until > now);
        }
        self.chat.typing.retain(|_, list| !list.is_empty());
        if let Some(lapse) = self.chat.next_typing_lapse() {
            ctx.request_repaint_after(lapse.saturating_duration_since(now));
        }

        if let Some(closing) = &self.closing {
            let now = Instant::now();
            let ended = !self.conn.session_alive();
            if now >= closing.deadline || (closing.early_when_ended && ended) {
                self.closed = true;
            } else {
                ctx.request_repaint_after(closing.deadline - now);
            }
        }
        if self.closed {
            ctx.send_viewport_cmd(ViewportCommand::Close);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let mut intents = Vec::new();
        match self.screen {
            Screen::Connect => self.connect_screen(ui, &mut intents),
            Screen::Chat => self.chat_screen(ui, &mut intents),
        }
        for intent in intents {
            self.apply(intent);
        }
    }
}

/// Starts the thread that shows desktop notifications (over D-Bus; a desktop without a
/// notification service logs why once and the rest is dropped quietly).
fn notifier() -> std::sync::mpsc::SyncSender<Notice> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Notice>(4);
    std::thread::spawn(move || {
        let mut failed = false;
        for notice in rx {
            let shown = notify_rust::Notification::new()
                .appname("Parla")
                .summary(&notice.title)
                .body(&notice.body)
                .show();
            if let Err(err) = shown
                && !failed
            {
                failed = true;
                tracing::info!(%err, "desktop notifications are not available here");
            }
        }
    });
    tx
}

fn too_long(bytes: usize) -> String {
    SendPlan::TooLong(bytes).note().unwrap_or_default()
}

/// Error texts from the library start in lower case (they are made to follow "parla: ");
/// on their own in the window they read better capitalised.
fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
