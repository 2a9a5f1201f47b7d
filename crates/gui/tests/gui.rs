//! The window, driven headlessly by egui_kittest against a real Parla server on 127.0.0.1.
//!
//! Every test runs the real app (its network thread, the real client session, real TCP) and a
//! real in-process server; other people are raw IRC clients speaking bytes over TCP. Widgets
//! are found by their labels and roles, the way a screen reader finds them. Waiting for the
//! network is a bounded loop of harness steps that checks the state each step, never a fixed
//! sleep.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eframe::egui::{self, Key, Modifiers, Role, ViewportCommand, ViewportEvent, ViewportId};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use parla_gui::app::{ConnState, Screen};
use parla_gui::{AppConfig, ParlaApp};
use parla_net::client::{ClientConfig, Reconnect};
use parla_net::ping::PingConfig;
use parla_net::{LocalServer, ServerOptions};
use parla_testkit::irc::blocking::RawClient;
use parla_testkit::{Answer, FakePinger};

/// How long any one wait for the network may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(5);

// ---- A real server -------------------------------------------------------------------------

/// A Parla server on 127.0.0.1 with its own runtime.
struct TestServer {
    addr: SocketAddr,
    server: LocalServer,
}

impl TestServer {
    fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// A server with its options changed by `change`.
    fn with(change: impl FnOnce(&mut ServerOptions)) -> TestServer {
        let mut options = ServerOptions {
            shutdown_grace: Duration::from_secs(1),
            // Real wall-clock time, so that message times read like the time of day.
            epoch_millis: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
            ..ServerOptions::default()
        };
        change(&mut options);
        let server = LocalServer::start_own(options).expect("start the server on 127.0.0.1");
        TestServer {
            addr: server.addr(),
            server,
        }
    }

    /// What a person types into the address field.
    fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Ctrl-C on the server: every client is told it is shutting down.
    fn shut_down(&mut self) {
        self.server.shut_down_own();
    }
}

// ---- The app ---------------------------------------------------------------------------------

/// The app's settings as `--no-ping` would make them, unless `ping` is given; fatal reasons
/// stay on screen for 300 ms before the window closes.
fn config(ping: Option<PingConfig>) -> AppConfig {
    config_reconnecting(ping, None)
}

/// [`config`], connecting again by itself when the connection is lost (after `first`, then
/// longer), as `parla` does unless given --no-reconnect.
fn config_reconnecting(ping: Option<PingConfig>, first: Option<Duration>) -> AppConfig {
    let mut config = AppConfig::new(Box::new(move |addr| {
        let mut session = ClientConfig::new(addr);
        session.ping = ping.clone();
        session.connect_timeout = Duration::from_secs(3);
        session.reconnect = first.map(|first| Reconnect {
            first,
            max: first * 4,
        });
        session
    }));
    config.close_delay = Duration::from_millis(300);
    config
}

type App = Harness<'static, ParlaApp>;

fn open(config: AppConfig, pinger: FakePinger) -> App {
    Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .build_eframe(move |cc| ParlaApp::new(&cc.egui_ctx, config, move || pinger.clone()))
}

/// A pinger that never gets an answer (the tests without ICMP never ask it).
fn no_ping() -> FakePinger {
    FakePinger::always(Answer::Timeout)
}

/// Steps the app until `done` holds, for at most [`PATIENCE`]; polls every 10 ms.
#[track_caller]
fn wait_for(app: &mut App, what: &str, mut done: impl FnMut(&App) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        app.step();
        if done(app) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; connection: {:?}, screen: {:?}, input: {:?}, last lines: {:#?}",
            app.state().conn(),
            app.state().screen(),
            app.state().input_text(),
            app.state()
                .chat()
                .lines
                .iter()
                .rev()
                .take(5)
                .map(|l| l.plain())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The current room's member list as shown: `@alice`, `+bob`, `carol`.
fn members(app: &App) -> Vec<String> {
    app.state()
        .chat()
        .current_members()
        .iter()
        .map(|m| format!("{}{}", m.prefix(), m.name))
        .collect()
}

/// Some visible widget's label contains `text`.
fn shows(app: &App, text: &str) -> bool {
    app.query_all_by_label_contains(text).next().is_some()
}

#[track_caller]
fn wait_to_see(app: &mut App, text: &str) {
    wait_for(app, &format!("{text:?} on screen"), |app| shows(app, text));
}

/// The app asked the window to close (in the last frame).
fn asked_to_close(app: &App) -> bool {
    app.output()
        .viewport_output
        .get(&ViewportId::ROOT)
        .is_some_and(|v| v.commands.contains(&ViewportCommand::Close))
}

/// Replaces the text of the field labelled `label` the way a person would: click, select all,
/// type.
fn fill(app: &mut App, label: &str, text: &str) {
    app.get_by_label(label).click();
    app.run_steps(2);
    app.key_press_modifiers(Modifiers::COMMAND, Key::A);
    app.step();
    app.get_by_label(label).type_text(text);
    app.step();
}

/// Types a line into the message box and presses Enter.
fn type_and_enter(app: &mut App, text: &str) {
    app.get_by_label("Message").type_text(text);
    app.step();
    app.key_press(Key::Enter);
    app.run_steps(2);
}

/// Opens the app, connects to `server` through the connect screen as `name`, and waits for
/// the chat screen.
fn connect_as(
    server: &TestServer,
    name: &str,
    pinger: FakePinger,
    ping: Option<PingConfig>,
) -> App {
    let mut cfg = config(ping);
    cfg.addr = Some(server.address());
    cfg.name = Some(name.to_owned());
    let mut app = open(cfg, pinger);
    wait_for(&mut app, "the chat screen", |app| {
        app.state().screen() == Screen::Chat
    });
    wait_for(&mut app, "the member list", |app| {
        !app.state().chat().current_members().is_empty()
    });
    app
}

// ---- The tests -------------------------------------------------------------------------------

#[test]
fn connects_from_the_connect_screen_and_sends_with_enter_and_with_the_button() {
    let server = TestServer::start();
    let mut bob = RawClient::join(server.addr, "bob");
    let mut app = open(config(None), no_ping());

    // The connect screen: address and name fields, found by their labels.
    assert_eq!(app.state().screen(), Screen::Connect);
    app.check_accessibility();
    fill(&mut app, "Server address", &server.address());
    fill(&mut app, "Your name", "alice");
    app.key_press(Key::Enter);
    wait_for(&mut app, "the chat screen", |app| {
        app.state().screen() == Screen::Chat
    });

    // The chat screen: member list, status bar, focused text box.
    wait_for(&mut app, "alice and bob in the member list", |app| {
        members(app) == ["alice", "bob"]
    });
    app.run_steps(2);
    assert!(shows(&app, "Members (2)"));
    app.get_by_label("alice");
    app.get_by_label("bob");
    assert!(shows(&app, "connected"));
    assert!(shows(&app, &format!("server {}", server.addr)));
    assert!(shows(&app, "you are alice"));
    assert!(shows(&app, "ping off"));
    assert!(
        app.get_by_label("Message").accesskit_node().is_focused(),
        "the text box has the focus"
    );
    app.check_accessibility();

    // Enter sends and clears.
    type_and_enter(&mut app, "hello from Enter");
    assert!(
        bob.expect_has(" PRIVMSG ")
            .ends_with("PRIVMSG #lobby :hello from Enter")
    );
    wait_to_see(&mut app, "alice: hello from Enter");
    assert_eq!(app.state().input_text(), "");
    assert!(app.get_by_label("Message").accesskit_node().is_focused());

    // Empty input sends nothing: the next thing bob gets is the next real line.
    type_and_enter(&mut app, "");
    type_and_enter(&mut app, "   ");

    // The Send button sends too, and gives the focus back to the box.
    app.get_by_label("Message")
        .type_text("hello from the button");
    app.step();
    app.get_by_role_and_label(Role::Button, "Send").click();
    app.run_steps(3);
    assert!(
        bob.expect_has(" PRIVMSG ")
            .ends_with("PRIVMSG #lobby :hello from the button")
    );
    wait_to_see(&mut app, "alice: hello from the button");
    assert_eq!(app.state().input_text(), "");
    assert!(app.get_by_label("Message").accesskit_node().is_focused());
}

#[test]
fn a_refused_name_is_explained_next_to_the_field_and_can_be_retried() {
    let server = TestServer::start();
    let _bob = RawClient::join(server.addr, "bob");
    let mut cfg = config(None);
    // An address on the command line: straight to connecting, no connect screen first.
    cfg.addr = Some(server.address());
    cfg.name = Some("bob".into());
    let mut app = open(cfg, no_ping());

    wait_to_see(&mut app, "“bob” was refused");
    assert!(shows(&app, "in use"), "the server's reason is shown");
    assert_eq!(app.state().screen(), Screen::Connect);
    assert!(matches!(app.state().conn(), ConnState::Registering { .. }));

    // Try again with a name the server finds invalid: refused again, with its reason.
    fill(&mut app, "Your name", "9lives");
    app.get_by_role_and_label(Role::Button, "Join").click();
    wait_to_see(&mut app, "“9lives” was refused");

    // And again, with Enter this time: accepted.
    fill(&mut app, "Your name", "carol");
    app.key_press(Key::Enter);
    wait_for(&mut app, "the chat screen", |app| {
        app.state().screen() == Screen::Chat
    });
    wait_for(&mut app, "carol and bob in the member list", |app| {
        members(app) == ["bob", "carol"]
    });
    app.run_steps(2);
    assert!(shows(&app, "you are carol"));
}

#[test]
fn other_peoples_messages_joins_and_quits_appear() {
    let server = TestServer::start();
    let mut app = connect_as(&server, "alice", no_ping(), None);
    assert_eq!(members(&app), ["alice"]);

    // Someone arrives: the member list grows and a quiet line says so.
    let mut dave = RawClient::join(server.addr, "dave");
    wait_for(&mut app, "dave in the member list", |app| {
        members(app) == ["alice", "dave"]
    });
    wait_to_see(&mut app, "dave joined #lobby");
    app.get_by_label("dave");
    assert!(shows(&app, "Members (2)"));

    // What they say appears, with their name.
    dave.say("#lobby", "hi alice, how are you?");
    wait_to_see(&mut app, "dave: hi alice, how are you?");

    // A direct message is marked as one.
    dave.say("alice", "a secret");
    wait_to_see(&mut app, "dave: (direct) a secret");

    // Long lines wrap inside the message area instead of running off the side.
    let long = format!("start {} end", "lorem ipsum dolor sit amet ".repeat(12));
    dave.say("#lobby", &long);
    wait_to_see(&mut app, "lorem ipsum dolor sit amet lorem");
    let rect = app
        .get_by_label_contains("lorem ipsum dolor sit amet lorem")
        .rect();
    assert!(
        rect.right() <= 900.0 - 170.0,
        "the line stays left of the member list: {rect:?}"
    );
    assert!(
        rect.height() > 30.0,
        "a long line takes several rows: {rect:?}"
    );

    // They leave: the member list shrinks and a quiet line says why.
    dave.send("QUIT :bye now");
    wait_for(&mut app, "dave gone from the member list", |app| {
        members(app) == ["alice"]
    });
    wait_to_see(&mut app, "dave quit");
    assert!(app.query_by_label("dave").is_none());
    assert!(shows(&app, "Members (1)"));
}

#[test]
fn slash_commands_work_and_mistakes_are_explained() {
    let server = TestServer::start();
    let mut bob = RawClient::join(server.addr, "bob");
    let mut app = connect_as(&server, "alice", no_ping(), None);

    type_and_enter(&mut app, "/me waves");
    assert!(
        bob.expect_has(" PRIVMSG ")
            .ends_with("PRIVMSG #lobby :\u{1}ACTION waves\u{1}")
    );
    wait_to_see(&mut app, "* alice waves");

    type_and_enter(&mut app, "/msg bob just between us");
    assert!(
        bob.expect_has(" PRIVMSG ")
            .ends_with("PRIVMSG bob :just between us")
    );
    wait_to_see(&mut app, "alice: (direct to bob) just between us");

    // A mistake is explained above the box, and what was typed is kept for fixing.
    type_and_enter(&mut app, "/frobnicate");
    wait_to_see(&mut app, "/frobnicate is not a command here");
    assert_eq!(app.state().input_text(), "/frobnicate");
    fill(&mut app, "Message", "/help");
    app.key_press(Key::Enter);
    wait_to_see(&mut app, "/nick NAME renames you");

    type_and_enter(&mut app, "/nick alicia");
    wait_to_see(&mut app, "You are now known as alicia");
    wait_to_see(&mut app, "you are alicia");
    bob.expect_has("NICK");

    type_and_enter(&mut app, "/join #rust");
    wait_for(&mut app, "#rust as the current room", |app| {
        app.state().chat().room.as_deref() == Some("#rust")
    });
    wait_to_see(&mut app, "You joined #rust");
    // The member list comes with the end of NAMES, after the JOIN: wait for it, then check it.
    wait_for(&mut app, "the member list of #rust", |app| {
        !app.state().chat().current_members().is_empty()
    });
    // She made the room, so she is its operator.
    assert_eq!(members(&app), ["@alicia"]);
    // bob, in #lobby, now appears with the room named.
    bob.say("#lobby", "still here");
    wait_to_see(&mut app, "[#lobby] bob: still here");

    // Leaving #rust goes back to #lobby, where bob is.
    type_and_enter(&mut app, "/part done here");
    wait_to_see(&mut app, "You left #rust; messages now go to #lobby.");
    assert_eq!(app.state().chat().room.as_deref(), Some("#lobby"));
    type_and_enter(&mut app, "back");
    assert!(
        bob.expect_has(" PRIVMSG ")
            .ends_with("PRIVMSG #lobby :back")
    );
}

/// Right-clicks `name` in the member list and picks `item` from its menu.
fn member_menu(app: &mut App, name: &str, item: &str) {
    app.get_by_label(name).click_secondary();
    app.run_steps(2);
    app.get_by_label(item).click();
    app.run_steps(2);
}

#[test]
fn an_operator_moderates_from_the_member_list_and_the_room_bar() {
    let server = TestServer::start();
    let mut app = connect_as(&server, "alice", no_ping(), None);
    type_and_enter(&mut app, "/join #ops");
    wait_for(&mut app, "alice as the operator of #ops", |app| {
        members(app) == ["@alice"]
    });
    let mut bob = RawClient::join(server.addr, "bob");
    bob.send("JOIN #ops");
    bob.expect_has(" 366 bob #ops ");
    let mut carol = RawClient::join(server.addr, "carol");
    wait_for(&mut app, "bob in the list", |app| {
        members(app) == ["@alice", "bob"]
    });

    member_menu(&mut app, "bob", "Make operator");
    bob.expect_has("MODE #ops +o bob");
    wait_for(&mut app, "bob as an operator", |app| {
        members(app) == ["@alice", "@bob"]
    });
    wait_to_see(&mut app, "alice sets mode +o bob on #ops");
    member_menu(&mut app, "@bob", "Give voice");
    bob.expect_has("MODE #ops +v bob");
    wait_for(&mut app, "bob voiced as well", |app| {
        app.state().chat().current_members()[1].prefixes == "@+"
    });

    // The topic editor starts from the topic, takes the typing, and sets it with Enter.
    app.get_by_label("Edit topic").click();
    app.run_steps(2);
    assert!(
        app.get_by_label("Topic").is_focused(),
        "the topic field has the focus"
    );
    fill(&mut app, "Topic", "Ops only");
    app.key_press(Key::Enter);
    app.run_steps(2);
    bob.expect_has("TOPIC #ops :Ops only");
    wait_to_see(&mut app, "Topic of #ops: Ops only");
    assert!(
        app.query_by_label("Set topic").is_none(),
        "the editor closes"
    );

    // The invite prompt: a name, then the button.
    app.get_by_label("Invite…").click();
    app.run_steps(2);
    fill(&mut app, "Invite", "carol");
    app.get_by_label("Invite to #ops").click();
    app.run_steps(2);
    assert!(carol.expect_has("INVITE carol").ends_with("#ops"));
    wait_to_see(&mut app, "You invited carol to #ops");
    assert!(
        app.get_by_label("Message").is_focused(),
        "the message box has the focus back"
    );

    // Kick… puts the command in the box for a reason to be added.
    member_menu(&mut app, "@bob", "Kick…");
    assert_eq!(app.state().input_text(), "/kick bob ");
    type_and_enter(&mut app, "enough");
    bob.expect_has("KICK #ops bob :enough");
    wait_to_see(&mut app, "alice removed bob from #ops (enough)");
    wait_for(&mut app, "bob gone from the list", |app| {
        members(app) == ["@alice"]
    });
}

#[test]
fn someone_without_status_gets_no_moderation_menu_and_can_accept_an_invitation() {
    let server = TestServer::start();
    let mut bob = RawClient::join(server.addr, "bob");
    bob.send("JOIN #den");
    bob.expect_has(" 366 bob #den ");
    bob.send("MODE #den +i");
    bob.expect_has("MODE #den +i");
    let mut app = connect_as(&server, "alice", no_ping(), None);
    // In #lobby nobody is an operator: the menu has only what anyone may do.
    member_menu(&mut app, "bob", "Who is this?");
    wait_to_see(&mut app, "bob is ~bob@127.0.0.1");
    app.get_by_label("bob").click_secondary();
    app.run_steps(2);
    assert!(shows(&app, "Send a direct message"));
    assert!(app.query_by_label("Make operator").is_none());
    assert!(app.query_by_label("Kick…").is_none());
    app.key_press(Key::Escape);
    app.run_steps(2);

    bob.send("INVITE alice #den");
    wait_to_see(&mut app, "bob invited you to #den.");
    app.get_by_label("Join #den").click();
    wait_for(&mut app, "#den as the current room", |app| {
        app.state().chat().room.as_deref() == Some("#den")
    });
    assert!(app.state().chat().invitation.is_none());
    wait_for(&mut app, "the list of #den", |app| {
        members(app) == ["alice", "@bob"]
    });
}

#[test]
fn typing_is_sent_while_typing_and_shown_for_others() {
    let server = TestServer::start();
    let mut bob = RawClient::join(server.addr, "bob");
    bob.send("CAP REQ :message-tags");
    bob.expect_has("ACK :message-tags");
    let mut app = connect_as(&server, "alice", no_ping(), None);

    app.get_by_label("Message").type_text("hel");
    app.run_steps(2);
    assert!(bob.expect_has("TAGMSG").contains("+typing=active"));
    // Sending is the end of typing: the message comes next, no "done" before it.
    app.key_press(Key::Enter);
    app.run_steps(2);
    let next = bob.expect(|l| l.contains("TAGMSG") || l.contains("PRIVMSG"));
    assert!(next.ends_with("PRIVMSG #lobby :hel"), "{next}");
    // Emptying the box is "done"; a command being typed is not typing to the room.
    app.get_by_label("Message").type_text("x");
    app.run_steps(2);
    assert!(bob.expect_has("TAGMSG").contains("+typing=active"));
    app.key_press(Key::Backspace);
    app.run_steps(2);
    assert!(bob.expect_has("TAGMSG").contains("+typing=done"));

    bob.send("@+typing=active TAGMSG #lobby");
    wait_to_see(&mut app, "bob is typing…");
    bob.say("#lobby", "done typing");
    wait_to_see(&mut app, "bob: done typing");
    assert!(!shows(&app, "bob is typing…"));
}

#[test]
fn long_input_is_split_with_a_note_and_too_long_input_is_refused() {
    let server = TestServer::start();
    let mut bob = RawClient::join(server.addr, "bob");
    let mut app = connect_as(&server, "alice", no_ping(), None);

    // About 1 KB: the note says it will go out as several messages, and it all arrives.
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(23);
    app.get_by_label("Message").type_text(&long);
    app.run_steps(2);
    assert!(shows(&app, "Long message: it will go out as 3 messages"));
    app.key_press(Key::Enter);
    app.run_steps(2);
    let mut received = String::new();
    for _ in 0..3 {
        let line = bob.expect_has(" PRIVMSG ");
        received.push_str(line.split_once(" :").unwrap().1);
    }
    assert_eq!(received, long.trim_end(), "nothing is cut");

    // Over 4 KB: refused with the reason, the Send button is disabled, nothing is sent.
    let huge = "x".repeat(5000);
    app.get_by_label("Message").type_text(&huge);
    app.run_steps(2);
    assert!(shows(&app, "Too long to send: 5000 bytes"));
    assert!(
        app.get_by_role_and_label(Role::Button, "Send")
            .accesskit_node()
            .is_disabled(),
        "Send is disabled"
    );
    app.key_press(Key::Enter);
    app.run_steps(2);
    assert_eq!(app.state().input_text().len(), 5000, "the text is kept");
    fill(&mut app, "Message", "short again");
    app.key_press(Key::Enter);
    app.run_steps(2);
    assert!(
        bob.expect_has(" PRIVMSG ")
            .ends_with("PRIVMSG #lobby :short again"),
        "the refused text was never sent"
    );
}

#[test]
fn typing_quit_sends_quit_and_closes() {
    let server = TestServer::start();
    let mut bob = RawClient::join(server.addr, "bob");
    let mut app = connect_as(&server, "alice", no_ping(), None);
    type_and_enter(&mut app, "quit");
    bob.expect_has(" QUIT ");
    wait_for(&mut app, "the window to close", asked_to_close);
    assert_eq!(app.state().exit_code(), 0);
}

#[test]
fn the_close_button_sends_quit_then_closes() {
    let server = TestServer::start();
    let mut bob = RawClient::join(server.addr, "bob");
    let mut app = connect_as(&server, "alice", no_ping(), None);

    // The window manager's close button.
    app.input_mut()
        .viewports
        .entry(ViewportId::ROOT)
        .or_default()
        .events
        .push(ViewportEvent::Close);
    app.step();
    let commands = &app.output().viewport_output[&ViewportId::ROOT].commands;
    assert!(
        commands.contains(&ViewportCommand::CancelClose),
        "closing waits for the QUIT to go out"
    );
    let quit = bob.expect_has(" QUIT ");
    assert!(quit.starts_with(":alice!"), "{quit}");
    wait_for(&mut app, "the window to close", asked_to_close);
    assert_eq!(app.state().exit_code(), 0);
}

#[test]
fn ctrl_c_in_the_terminal_sends_quit_and_closes() {
    let server = TestServer::start();
    let mut bob = RawClient::join(server.addr, "bob");
    let (press, pressed) = tokio::sync::oneshot::channel::<()>();
    let mut cfg = config(None);
    cfg.addr = Some(server.address());
    cfg.name = Some("alice".into());
    // The same path as tokio::signal::ctrl_c(), fired by the test.
    cfg.interrupt = Some(Box::pin(async move {
        let _ = pressed.await;
    }));
    let mut app = open(cfg, no_ping());
    wait_for(&mut app, "the chat screen", |app| {
        app.state().screen() == Screen::Chat
    });

    press.send(()).unwrap();
    let quit = bob.expect_has(" QUIT ");
    assert!(quit.contains("Ctrl-C"), "{quit}");
    wait_for(&mut app, "the window to close", asked_to_close);
    assert_eq!(app.state().exit_code(), 0);
}

#[test]
fn a_server_shutdown_is_shown_and_closes_the_window() {
    let mut server = TestServer::start();
    let mut app = connect_as(&server, "alice", no_ping(), None);

    server.shut_down();
    wait_to_see(&mut app, "Disconnected: the server shut down.");
    assert!(shows(&app, "The server is shutting down"));
    assert!(!app.state().is_closed(), "the reason stays up for a moment");
    wait_for(&mut app, "the window to close", asked_to_close);
    assert_eq!(app.state().exit_code(), 0);
}

#[test]
fn a_ping_failure_is_explained_and_closes_the_window() {
    let server = TestServer::start();
    let ping = PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(20),
        max_misses: 3,
    };
    let mut bob = RawClient::join(server.addr, "bob");
    let mut app = connect_as(
        &server,
        "alice",
        FakePinger::always(Answer::Timeout),
        Some(ping),
    );

    wait_to_see(
        &mut app,
        "Disconnected: server 127.0.0.1 stopped answering pings (3 missed in a row)",
    );
    assert!(shows(&app, "The window closes in a moment."));
    assert!(!app.state().is_closed(), "the reason stays up for a moment");
    let quit = bob.expect_has(" QUIT ");
    assert!(quit.contains("Ping to server failed"), "{quit}");
    wait_for(&mut app, "the window to close", asked_to_close);
    assert_eq!(app.state().exit_code(), 1);
}

#[test]
fn the_status_bar_shows_the_last_ping_time() {
    let server = TestServer::start();
    let ping = PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        max_misses: 3,
    };
    let pinger = FakePinger::always(Answer::Reply(Duration::from_micros(3200)));
    let mut app = connect_as(&server, "alice", pinger, Some(ping));
    wait_to_see(&mut app, "ping 3.2 ms");
}

#[test]
fn a_refused_connection_is_shown_on_the_connect_screen() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut app = open(config(None), no_ping());

    // A malformed address is explained before anything is tried.
    fill(&mut app, "Server address", "[::1");
    app.get_by_role_and_label(Role::Button, "Connect").click();
    app.run_steps(2);
    assert!(shows(&app, "opens an IPv6 bracket but does not close it"));

    fill(&mut app, "Server address", &format!("127.0.0.1:{port}"));
    fill(&mut app, "Your name", "alice");
    app.get_by_role_and_label(Role::Button, "Connect").click();
    wait_to_see(
        &mut app,
        &format!("Could not connect to 127.0.0.1:{port}: the connection was refused"),
    );
    assert_eq!(app.state().screen(), Screen::Connect);
    assert_eq!(app.state().conn(), &ConnState::Offline);
    // Still usable: the button is back for another try.
    assert!(
        !app.get_by_role_and_label(Role::Button, "Connect")
            .accesskit_node()
            .is_disabled()
    );
    assert!(!app.state().is_closed());
}

#[test]
fn a_lost_connection_comes_back_by_itself_and_keeps_the_conversation() {
    // A "server" that welcomes us, hangs up without a word, and takes us back.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (hang_up, when) = std::sync::mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let mut server = RawClient::accept(listener.try_clone().unwrap(), "fake server");
        server.expect(|l| l.starts_with("USER"));
        server.send(":fake 001 alice :Welcome");
        server.send(":alice!a@h JOIN #lobby");
        server.send(":fake 353 alice = #lobby :alice bob");
        server.send(":fake 366 alice #lobby :End");
        server.send(":bob!b@h PRIVMSG #lobby :before the cut");
        when.recv().unwrap();
        drop(server);
        let mut server = RawClient::accept(listener, "fake server, again");
        server.expect(|l| l == "NICK :alice");
        server.expect(|l| l.starts_with("USER"));
        server.send(":fake 001 alice :Welcome back");
        server.send(":alice!a@h JOIN #lobby");
        server.send(":fake 353 alice = #lobby :alice bob");
        server.send(":fake 366 alice #lobby :End");
        server
    });
    let mut cfg = config_reconnecting(None, Some(Duration::from_millis(300)));
    cfg.addr = Some(addr.to_string());
    cfg.name = Some("alice".into());
    let mut app = open(cfg, no_ping());
    wait_to_see(&mut app, "before the cut");
    wait_for(&mut app, "the member list", |app| {
        app.state().chat().members.len() == 1
    });
    hang_up.send(()).unwrap();
    wait_to_see(
        &mut app,
        "Connection lost: the server closed the connection without a word. Reconnecting in 1 s",
    );
    assert!(
        shows(&app, "reconnecting in 1 s…"),
        "the status bar counts down"
    );
    assert!(
        app.state().chat().members.is_empty(),
        "nobody is shown as present meanwhile"
    );
    // Back by itself: the same room, the conversation still on screen, the status connected.
    let server = fake.join().unwrap();
    wait_for(&mut app, "the member list again", |app| {
        app.state().chat().members.values().any(|m| m.len() == 2)
    });
    wait_for(&mut app, "the status bar", |app| shows(app, "connected"));
    assert!(shows(&app, "before the cut"), "the scrollback stays");
    assert!(!shows(&app, "reconnecting in"));
    assert_eq!(app.state().screen(), Screen::Chat);
    drop(server);
}

#[test]
fn a_lost_connection_shows_the_reason_and_offers_to_reconnect() {
    // A "server" that welcomes us and then hangs up without a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (hang_up, when) = std::sync::mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let mut server = RawClient::accept(listener, "fake server");
        server.expect(|l| l.starts_with("USER"));
        server.send(":fake 001 alice :Welcome");
        server.send(":alice!a@h JOIN #lobby");
        server.send(":fake 353 alice = #lobby :alice");
        server.send(":fake 366 alice #lobby :End");
        when.recv().unwrap();
    });
    let mut cfg = config(None);
    cfg.addr = Some(addr.to_string());
    cfg.name = Some("alice".into());
    let mut app = open(cfg, no_ping());
    wait_for(&mut app, "the chat screen", |app| {
        app.state().screen() == Screen::Chat
    });

    wait_for(&mut app, "the member list", |app| {
        app.state().chat().members.len() == 1
    });
    hang_up.send(()).unwrap();
    fake.join().unwrap();
    wait_to_see(&mut app, "Disconnected: the connection was lost");
    assert!(shows(&app, "disconnected"), "the status bar says so");
    // Nobody is shown as present on a lost connection.
    assert!(app.state().chat().members.is_empty());
    // Not fatal: the window stays, and offers a way back.
    for _ in 0..20 {
        app.step();
    }
    assert!(!asked_to_close(&app) && !app.state().is_closed());
    app.get_by_role_and_label(Role::Button, "Reconnect…")
        .click();
    app.run_steps(2);
    assert_eq!(app.state().screen(), Screen::Connect);
    assert_eq!(
        app.get_by_label("Server address").value().as_deref(),
        Some(addr.to_string().as_str())
    );

    // Connecting again (to a server that is back): the conversation so far stays on screen,
    // with a line where the new session begins.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let again = listener.local_addr().unwrap();
    let fake = std::thread::spawn(move || {
        let mut server = RawClient::accept(listener, "fake server, again");
        server.expect(|l| l.starts_with("USER"));
        server.send(":fake 001 alice :Welcome back");
        server.send(":alice!a@h JOIN #lobby");
        server.send(":fake 366 alice #lobby :End");
        server
    });
    fill(&mut app, "Server address", &again.to_string());
    app.get_by_role_and_label(Role::Button, "Connect").click();
    wait_for(&mut app, "the chat screen again", |app| {
        app.state().screen() == Screen::Chat
    });
    wait_to_see(&mut app, &format!("— Reconnecting to {again} —"));
    assert!(
        shows(&app, "Disconnected: the connection was lost"),
        "the old lines are still there"
    );
    drop(fake.join().unwrap());
}

#[test]
fn scrolled_up_new_messages_are_announced_and_sending_jumps_to_the_newest() {
    let server = TestServer::start();
    let mut app = connect_as(&server, "alice", no_ping(), None);
    let mut dave = RawClient::join(server.addr, "dave");
    // More than fits (each line wraps over a few rows), within the server's flood allowance.
    let filler = "words to fill the view ".repeat(12);
    for i in 0..20 {
        dave.say("#lobby", &format!("line {i} {filler}"));
    }
    wait_to_see(&mut app, "dave: line 19");
    // Scroll up to the first of them.
    let scroll_up = |app: &mut App| {
        app.get_by_label_contains("dave: line 0").scroll_to_me();
        app.run_steps(3);
    };
    scroll_up(&mut app);
    assert!(!shows(&app, "new message"), "nothing new yet");
    dave.say("#lobby", "are you there?");
    wait_to_see(&mut app, "1 new message ↓");
    dave.say("#lobby", "hello?");
    wait_to_see(&mut app, "2 new messages ↓");
    app.get_by_label("2 new messages ↓").click();
    wait_for(&mut app, "the view at the newest", |app| {
        !shows(app, "new messages ↓")
    });
    // Scrolled up again, sending takes the view to the newest (your own line among them).
    scroll_up(&mut app);
    dave.say("#lobby", "one more");
    wait_to_see(&mut app, "1 new message ↓");
    type_and_enter(&mut app, "here!");
    wait_to_see(&mut app, "alice: here!");
    wait_for(&mut app, "the view at the newest", |app| {
        !shows(app, "new message")
    });
}

#[test]
fn in_two_rooms_tabs_switch_between_them_and_count_what_came() {
    let server = TestServer::start();
    let mut app = connect_as(&server, "alice", no_ping(), None);
    let mut dave = RawClient::join(server.addr, "dave");
    assert!(
        app.query_by_label("#lobby (1)").is_none(),
        "one room: no tabs"
    );
    type_and_enter(&mut app, "/join #rust");
    wait_to_see(&mut app, "You joined #rust.");
    wait_for(&mut app, "the tabs", |app| {
        app.state().chat().rooms.len() == 2
    });
    dave.say("#lobby", "over here");
    wait_to_see(&mut app, "#lobby (1)");
    app.get_by_label("#lobby (1)").click();
    wait_for(&mut app, "#lobby current", |app| {
        app.state().chat().room.as_deref() == Some("#lobby")
    });
    wait_to_see(&mut app, "Now talking in #lobby.");
    assert!(
        app.query_by_label("#lobby (1)").is_none(),
        "read once current"
    );
    // What is typed now goes to #lobby.
    type_and_enter(&mut app, "back in the lobby");
    dave.expect(|l| l.ends_with("PRIVMSG #lobby :back in the lobby"));
}

#[test]
fn joining_shows_earlier_messages_and_scrolling_to_the_top_fetches_older_ones() {
    // Without flood control, so that dave's sixty messages go in at once.
    let server = TestServer::with(|o| o.flood = None);
    let mut dave = RawClient::join(server.addr, "dave");
    for i in 0..60 {
        dave.say("#lobby", &format!("msg {i}"));
    }
    // Handled in order: once the PONG is back, all sixty are kept.
    dave.send("PING :kept");
    dave.expect(|l| l.contains("PONG") && l.ends_with("kept"));

    let mut app = connect_as(&server, "alice", no_ping(), None);
    // The last fifty, under a divider.
    wait_to_see(&mut app, "dave: msg 59");
    assert!(shows(&app, "— earlier messages in #lobby —"));
    assert!(shows(&app, "dave: msg 10"));
    assert!(!shows(&app, "dave: msg 9"), "one page on joining");
    // At the top of the scrollback, the page before it comes, and the start of it all.
    app.get_by_label_contains("dave: msg 10").scroll_to_me();
    wait_to_see(&mut app, "dave: msg 0");
    wait_to_see(&mut app, "— the start of what the server kept of #lobby —");
    let lines: Vec<String> = app.state().chat().lines.iter().map(|l| l.plain()).collect();
    let at = |text: &str| lines.iter().position(|l| l.ends_with(text)).unwrap();
    assert!(at("dave: msg 0") < at("dave: msg 9") && at("dave: msg 9") < at("dave: msg 10"));
    assert_eq!(
        lines.iter().filter(|l| l.ends_with("dave: msg 10")).count(),
        1,
        "each message once"
    );
}
