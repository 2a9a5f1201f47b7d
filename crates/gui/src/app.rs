//! The desktop window: [`ParlaApp`] holds the state and implements [`eframe::App`].
//!
//! Each frame, [`eframe::App::logic`] drains what the network thread reported (never waiting)
//! and decides whether it is time to close; [`eframe::App::ui`] draws the connect screen or the
//! chat screen. Widgets only record [`Intent`]s while drawing; they are carried out after the
//! frame is drawn (egui's `wrap_app.rs` does the same with its `Command`), so drawing never
//! mutates what it is iterating over and the order of effects is easy to follow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use eframe::egui::{
    self, Align, Button, CentralPanel, Color32, FontId, Key, Layout, Panel, RichText, ScrollArea,
    TextEdit, TextFormat, ViewportCommand, text::LayoutJob,
};
use parla_net::Pinger;
use parla_net::addr::ServerAddr;
use parla_net::client::{Command, Disconnect, Event, MessageKind};
use tokio::sync::mpsc::error::TryRecvError;

use crate::chat::{self, Chat, LineKind, PingStatus, SendPlan};
use crate::input::{self, Input};
use crate::net_thread::{self, Interrupt, NetCommand, NetEvent, NetHandle, SessionConfig};

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
}

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
                if self.command(NetCommand::Connect {
                    addr: addr.clone(),
                    name,
                }) {
                    self.chat = Chat::default();
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

    fn send_line(&mut self) {
        let line = std::mem::take(&mut self.input);
        self.focus_pending = true;
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
        match cmd {
            Command::Say(text) => Some(chat::send_plan(text, me, room, false)),
            Command::Action(text) => Some(chat::send_plan(text, me, room, true)),
            Command::Msg { to, text } => Some(chat::send_plan(text, me, to, false)),
            _ => None,
        }
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
        }
    }

    // ---- Drawing ---------------------------------------------------------------------------

    fn connect_screen(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>) {
        let connecting = matches!(self.conn, ConnState::Connecting { .. });
        let registering = matches!(self.conn, ConnState::Registering { .. });
        let busy = connecting || (registering && self.name_pending);
        CentralPanel::default().show(ui, |ui| {
            ui.vertical_centered(|ui| {
                ui.add_space((ui.available_height() * 0.12).min(80.0));
                ui.label(RichText::new("Parla").size(34.0).strong());
                ui.weak("Chat with the people on a Parla or IRC server");
                ui.add_space(16.0);
                let width = 380.0f32.min(ui.available_width() - 16.0);
                egui::Frame::group(ui.style())
                    .inner_margin(16)
                    .corner_radius(8)
                    .show(ui, |ui| {
                        ui.set_width(width);
                        ui.with_layout(Layout::top_down(Align::Min), |ui| {
                            self.connect_form(ui, intents, busy, connecting, registering);
                        });
                    });
            });
        });
    }

    fn connect_form(
        &mut self,
        ui: &mut egui::Ui,
        intents: &mut Vec<Intent>,
        busy: bool,
        connecting: bool,
        registering: bool,
    ) {
        let enter = ui.input(|i| i.key_pressed(Key::Enter));
        let label = ui.label("Server address");
        let addr_edit = ui
            .add_enabled(
                !busy && !registering,
                TextEdit::singleline(&mut self.addr_text)
                    .id_salt("address")
                    .hint_text("host, host:port or [::1]:8080")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
        if let Some(err) = &self.addr_error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        } else if let ConnState::Registering { server } = &self.conn {
            ui.weak(format!("Connected to {server}"));
        } else {
            ui.weak("The port is 8080 unless you give one.");
        }
        ui.add_space(8.0);
        let label = ui.label("Your name");
        let name_edit = ui
            .add_enabled(
                !busy,
                TextEdit::singleline(&mut self.name_text)
                    .id_salt("name")
                    .hint_text("how others will see you")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
        if let Some(err) = &self.name_error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        }
        if self.focus_pending {
            self.focus_pending = false;
            // The field to fix first: the address after a failed connection (or when empty),
            // else the name.
            let addr_first = self.addr_text.trim().is_empty()
                || self.addr_error.is_some()
                || self.connect_error.is_some();
            if addr_first && !registering {
                addr_edit.request_focus();
            } else {
                name_edit.request_focus();
            }
        }
        if (addr_edit.lost_focus() || name_edit.lost_focus()) && enter && !busy {
            intents.push(Intent::Submit);
        }
        ui.add_space(12.0);
        ui.horizontal(|ui| {
            let text = if registering { "Join" } else { "Connect" };
            if ui
                .add_enabled(!busy, Button::new(text).min_size(egui::vec2(96.0, 0.0)))
                .clicked()
            {
                intents.push(Intent::Submit);
            }
            if busy {
                ui.spinner();
                match &self.conn {
                    ConnState::Connecting { addr } => ui.label(format!("Connecting to {addr}…")),
                    _ => ui.label("Asking the server for your name…"),
                };
            }
            if connecting && ui.button("Cancel").clicked() {
                intents.push(Intent::Cancel);
            }
        });
        if let Some(err) = &self.connect_error {
            ui.add_space(8.0);
            ui.colored_label(ui.visuals().error_fg_color, format!("⚠ {err}"));
        }
    }

    fn chat_screen(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>) {
        let online = matches!(self.conn, ConnState::Online { .. }) && self.closing.is_none();
        Panel::top("room").show(ui, |ui| self.room_bar(ui, intents));
        Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        Panel::bottom("compose").show(ui, |ui| self.compose(ui, intents, online));
        Panel::right("members")
            .resizable(false)
            .exact_size(170.0)
            .show(ui, |ui| self.member_list(ui));
        CentralPanel::default().show(ui, |ui| self.messages(ui));
    }

    fn room_bar(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let room = self.chat.room.as_deref().unwrap_or("(no room)");
            ui.label(RichText::new(room).size(18.0).strong());
            if let Some(topic) = self.chat.current_topic() {
                ui.separator();
                ui.add(egui::Label::new(RichText::new(topic).weak()).truncate());
            }
        });
        if let ConnState::Ended { reason, .. } = &self.conn {
            let reason = reason.clone();
            let closing = self.closing.is_some();
            egui::Frame::new()
                .fill(ui.visuals().error_fg_color.gamma_multiply(0.18))
                .corner_radius(6)
                .inner_margin(8)
                .show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    ui.horizontal_wrapped(|ui| {
                        ui.label(RichText::new(format!("Disconnected: {reason}.")).strong());
                        if closing {
                            ui.label("The window closes in a moment.");
                        } else if ui.button("Reconnect…").clicked() {
                            intents.push(Intent::Reconnect);
                        }
                    });
                });
        }
        ui.add_space(2.0);
    }

    fn status_bar(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let (dot, colour) = match &self.conn {
                ConnState::Online { .. } => ("●", Color32::from_rgb(60, 180, 90)),
                ConnState::Ended { .. } => ("●", ui.visuals().error_fg_color),
                _ => ("●", ui.visuals().warn_fg_color),
            };
            ui.colored_label(colour, dot);
            ui.label(self.conn.describe());
            ui.separator();
            let server = match &self.conn {
                ConnState::Online { server }
                | ConnState::Registering { server }
                | ConnState::Ended { server, .. } => server.to_string(),
                ConnState::Connecting { addr } => addr.to_string(),
                ConnState::Offline => "-".to_owned(),
            };
            match &self.chat.server_name {
                Some(name) => ui.label(format!("server {server} ({name})")),
                None => ui.label(format!("server {server}")),
            };
            ui.separator();
            ui.label(format!(
                "you are {}",
                self.chat.me.as_deref().unwrap_or("-")
            ));
            ui.separator();
            let ping = self.chat.ping.describe();
            match self.chat.ping {
                PingStatus::Missed(_) => ui.colored_label(ui.visuals().warn_fg_color, ping),
                _ => ui.label(ping),
            };
        });
    }

    fn compose(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>, online: bool) {
        ui.add_space(4.0);
        // The note above the box: why the last line was refused, or what sending will do.
        let plan = match input::parse(&self.input) {
            Input::Command(cmd) => self.plan_for(&cmd),
            _ => None,
        };
        let refuse = matches!(plan, Some(SendPlan::TooLong(_)));
        if let Some(err) = &self.compose_error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        } else {
            match plan {
                Some(SendPlan::TooLong(bytes)) => {
                    ui.colored_label(ui.visuals().error_fg_color, too_long(bytes));
                }
                Some(SendPlan::Split(n)) => {
                    ui.weak(format!(
                        "Long message: it will go out as {n} messages (nothing is cut)."
                    ));
                }
                _ => {}
            }
        }
        ui.horizontal(|ui| {
            let label = ui.label("Message");
            let send_width = 64.0;
            let edit_width = ui.available_width() - send_width - ui.spacing().item_spacing.x;
            let edit = ui
                .add_enabled(
                    online,
                    TextEdit::singleline(&mut self.input)
                        // A fixed id: the note above the box comes and goes, and an automatic
                        // id would change with it, taking the focus away mid-typing.
                        .id_salt("message")
                        .hint_text("Say something — /help lists the commands")
                        .desired_width(edit_width),
                )
                .labelled_by(label.id);
            if edit.changed() {
                self.compose_error = None;
            }
            let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
            let send = ui.add_enabled(
                online && !refuse,
                Button::new("Send").min_size(egui::vec2(send_width, 0.0)),
            );
            if online && (entered || send.clicked()) {
                intents.push(Intent::SendLine);
            }
            // Keep the typing where it belongs: after sending, on entering the room, and
            // whenever nothing else has the focus.
            let nothing_focused = ui.memory(|m| m.focused().is_none());
            if online && (self.focus_pending || entered || send.clicked() || nothing_focused) {
                self.focus_pending = false;
                edit.request_focus();
            }
        });
        ui.add_space(4.0);
    }

    fn member_list(&self, ui: &mut egui::Ui) {
        let members = self.chat.current_members();
        let (heading, note) = self.chat.members_heading();
        ui.add_space(4.0);
        ui.label(RichText::new(heading).strong());
        if let Some(note) = note {
            ui.weak(note);
        }
        ui.separator();
        ScrollArea::vertical()
            .id_salt("members")
            .auto_shrink(false)
            .show(ui, |ui| {
                let dark = ui.visuals().dark_mode;
                for name in members {
                    let colour = name_colour(name, dark);
                    let me = self
                        .chat
                        .me
                        .as_deref()
                        .is_some_and(|m| chat::fold(m) == chat::fold(name));
                    let text = RichText::new(name).color(colour);
                    if me {
                        ui.horizontal(|ui| {
                            ui.label(text.strong());
                            ui.weak("(you)");
                        });
                    } else {
                        ui.label(text);
                    }
                }
            });
    }

    fn messages(&self, ui: &mut egui::Ui) {
        let visuals = ui.visuals().clone();
        let dark = visuals.dark_mode;
        let body = FontId::proportional(14.0);
        let small = FontId::monospace(11.5);
        let fmt = |font: &FontId, color: Color32| TextFormat::simple(font.clone(), color);
        ScrollArea::vertical()
            .id_salt("messages")
            .auto_shrink(false)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                ui.spacing_mut().item_spacing.y = 3.0;
                for line in &self.chat.lines {
                    let mut job = LayoutJob::default();
                    let mut own_line = false;
                    match &line.kind {
                        LineKind::System(text) => {
                            let mut f = fmt(&body, visuals.weak_text_color());
                            f.italics = true;
                            job.append(text, 0.0, f);
                        }
                        LineKind::Error(text) => {
                            job.append(text, 0.0, fmt(&body, visuals.error_fg_color));
                        }
                        LineKind::Message {
                            from,
                            text,
                            kind,
                            own,
                            direct,
                            room,
                        } => {
                            own_line = *own;
                            let name = fmt(&body, name_colour(from, dark));
                            let plain = fmt(&body, visuals.strong_text_color());
                            if let Some(room) = room {
                                job.append(
                                    &format!("[{room}] "),
                                    0.0,
                                    fmt(&body, visuals.weak_text_color()),
                                );
                            }
                            let tag = |job: &mut LayoutJob, text: &str| {
                                let mut f = fmt(&small, visuals.strong_text_color());
                                f.background = visuals.selection.bg_fill.gamma_multiply(0.6);
                                job.append(text, 0.0, f);
                                job.append(" ", 0.0, plain.clone());
                            };
                            match kind {
                                MessageKind::Normal => {
                                    job.append(from, 0.0, name);
                                    job.append(": ", 0.0, fmt(&body, visuals.weak_text_color()));
                                    if let Some(to) = direct {
                                        let t = if *own {
                                            format!("(direct to {to})")
                                        } else {
                                            "(direct)".to_owned()
                                        };
                                        tag(&mut job, &t);
                                    }
                                    job.append(text, 0.0, plain);
                                }
                                MessageKind::Action => {
                                    let mut italic = plain.clone();
                                    italic.italics = true;
                                    job.append("* ", 0.0, italic.clone());
                                    job.append(from, 0.0, name);
                                    job.append(" ", 0.0, italic.clone());
                                    if let Some(to) = direct.as_ref().filter(|_| *own) {
                                        tag(&mut job, &format!("(direct to {to})"));
                                    } else if direct.is_some() {
                                        tag(&mut job, "(direct)");
                                    }
                                    job.append(text, 0.0, italic);
                                }
                                MessageKind::Notice => {
                                    job.append(&format!("-{from}- "), 0.0, name);
                                    job.append(text, 0.0, fmt(&body, visuals.text_color()));
                                }
                            }
                        }
                    }
                    // Time in a column of its own, so that wrapped rows keep a hanging indent.
                    let fill = if own_line {
                        visuals.faint_bg_color.gamma_multiply(4.0)
                    } else {
                        Color32::TRANSPARENT
                    };
                    egui::Frame::new()
                        .fill(fill)
                        .corner_radius(4)
                        .inner_margin(egui::Margin::symmetric(4, 1))
                        .show(ui, |ui| {
                            ui.set_width(ui.available_width());
                            ui.horizontal_top(|ui| {
                                let time = RichText::new(&line.time)
                                    .font(body.clone())
                                    .color(visuals.weak_text_color());
                                ui.allocate_ui_with_layout(
                                    egui::vec2(TIME_WIDTH, 0.0),
                                    Layout::top_down(Align::Min),
                                    |ui| {
                                        ui.set_min_width(TIME_WIDTH);
                                        ui.add(egui::Label::new(time).selectable(false));
                                    },
                                );
                                ui.add(egui::Label::new(job).wrap());
                            });
                        });
                }
            });
    }
}

/// The width of the time column in the message area ("23:59" and a gap).
const TIME_WIDTH: f32 = 40.0;

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

        // The window's close button: say goodbye to the server first.
        if ctx.input(|i| i.viewport().close_requested()) && !self.closed {
            if self.conn.session_alive() || self.closing.is_some() {
                ctx.send_viewport_cmd(ViewportCommand::CancelClose);
                self.quit(None);
            } else {
                self.closed = true;
            }
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

/// A name's colour: a stable pick from a palette readable on the theme's background.
pub fn name_colour(name: &str, dark: bool) -> Color32 {
    // Twelve hues around the colour wheel, light on dark and dark on light.
    const DARK: [Color32; 12] = [
        Color32::from_rgb(255, 120, 120),
        Color32::from_rgb(255, 165, 85),
        Color32::from_rgb(230, 210, 90),
        Color32::from_rgb(165, 220, 90),
        Color32::from_rgb(100, 210, 120),
        Color32::from_rgb(80, 210, 185),
        Color32::from_rgb(90, 200, 245),
        Color32::from_rgb(120, 160, 255),
        Color32::from_rgb(165, 140, 255),
        Color32::from_rgb(205, 130, 250),
        Color32::from_rgb(245, 120, 210),
        Color32::from_rgb(200, 200, 200),
    ];
    const LIGHT: [Color32; 12] = [
        Color32::from_rgb(200, 40, 40),
        Color32::from_rgb(190, 90, 0),
        Color32::from_rgb(140, 115, 0),
        Color32::from_rgb(80, 125, 10),
        Color32::from_rgb(30, 130, 50),
        Color32::from_rgb(0, 125, 110),
        Color32::from_rgb(0, 115, 170),
        Color32::from_rgb(40, 80, 200),
        Color32::from_rgb(95, 60, 200),
        Color32::from_rgb(135, 40, 180),
        Color32::from_rgb(180, 30, 130),
        Color32::from_rgb(90, 90, 90),
    ];
    let palette = if dark { &DARK } else { &LIGHT };
    palette[chat::colour_index(name, palette.len())]
}

/// egui's fonts, with Hack (the monospace font) as a fallback for the proportional text too:
/// Ubuntu Light has no arrows or geometric shapes (→ ← ●), which the join lines and the status
/// bar use. Emoji come from the monochrome emoji fonts (the `monochrome_emoji_fonts` feature).
fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    if let Some(family) = fonts.families.get_mut(&egui::FontFamily::Proportional) {
        family.insert(1.min(family.len()), "Hack".to_owned());
    }
    ctx.set_fonts(fonts);
}

fn too_long(bytes: usize) -> String {
    format!(
        "Too long to send: {bytes} bytes, and the limit is {} bytes. Shorten it or send it in parts.",
        chat::MAX_INPUT_BYTES
    )
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
