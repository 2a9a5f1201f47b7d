//! State-machine tests for the client core: server lines, commands and time go in, the lines it
//! sends and the events it reports come out. No sockets (the client-side twin of `core.rs`).

use std::time::Duration;

use parla_room::Millis;
use parla_room::client::{
    Command, Config, Disconnect, Event, HISTORY_WAIT_MS, HistoryPage, Member, MessageKind,
    PingReport, QUIT_WAIT_MS, Said, Session, TYPING_ACTIVE_EVERY_MS, Typing,
};
use parla_room::limits::{MAX_BODY_LEN, SHUTDOWN_ERROR, SHUTDOWN_NOTICE};
use rstest::rstest;

const T0: u64 = 1_000;
const SERVER: &str = ":parla.local";

/// A socket-free driver: feeds the core and drains what it decided after every input.
struct Harness {
    session: Session,
    now: Millis,
}

/// What one input made the core do.
#[derive(Debug, Default, PartialEq)]
struct Step {
    sent: Vec<String>,
    events: Vec<Event>,
}

impl Harness {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        Harness {
            session: Session::new(config, Millis(T0)),
            now: Millis(T0),
        }
    }

    /// A session that negotiated its capabilities, registered as `nick` and joined `#lobby`
    /// with `others` in it.
    fn registered(nick: &str, others: &[&str]) -> Self {
        let mut h = Self::new();
        h.drain();
        h.line(&format!("{SERVER} CAP * LS :echo-message server-time"));
        h.line(&format!("{SERVER} CAP * ACK :echo-message server-time"));
        h.cmd(Command::Nick(nick.into()));
        h.line(&format!("{SERVER} 001 {nick} :Welcome, {nick}"));
        h.line(&format!(":{nick}!~{nick}@192.0.2.1 JOIN #lobby"));
        let mut names = vec![nick];
        names.extend(others);
        h.line(&format!(
            "{SERVER} 353 {nick} = #lobby :{}",
            names.join(" ")
        ));
        h.line(&format!("{SERVER} 366 {nick} #lobby :End of /NAMES list"));
        h
    }

    fn line(&mut self, line: &str) -> Step {
        self.session.handle_line(self.now, line.as_bytes());
        self.drain()
    }

    fn cmd(&mut self, command: Command) -> Step {
        self.session.handle_command(self.now, command);
        self.drain()
    }

    fn ping(&mut self, report: PingReport) -> Step {
        self.session.handle_ping(self.now, report);
        self.drain()
    }

    /// Moves the clock to `T0 + ms` and lets the core act on its deadlines.
    fn at(&mut self, ms: u64) -> Step {
        self.now = Millis(T0 + ms);
        self.session.handle_timeout(self.now);
        self.drain()
    }

    fn drain(&mut self) -> Step {
        let mut step = Step::default();
        while let Some(line) = self.session.poll_transmit() {
            assert!(!line.contains(['\r', '\n']), "one line, no CR LF: {line:?}");
            step.sent.push(line);
        }
        while let Some(event) = self.session.poll_event() {
            assert!(
                !matches!(event, Event::Disconnected(_)),
                "the driver reports the end, not the core"
            );
            step.events.push(event);
        }
        step
    }

    fn ended(&self) -> Option<&Disconnect> {
        self.session.ended()
    }
}

fn sent(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| (*l).to_owned()).collect()
}

/// A member list as the server would write it (`@alice`, `+bob`, `@+carol`).
fn members(room: &str, names: &[&str], complete: bool) -> Event {
    Event::Members {
        room: room.into(),
        members: names
            .iter()
            .map(|n| {
                let name = n.trim_start_matches(['@', '+']);
                Member {
                    name: name.into(),
                    prefixes: n[..n.len() - name.len()].into(),
                }
            })
            .collect(),
        complete,
    }
}

fn message(from: &str, target: &str, text: &str, kind: MessageKind, own: bool) -> Event {
    Event::Message(Said {
        from: from.into(),
        target: target.into(),
        text: text.into(),
        kind,
        own,
        time: None,
        id: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Registration and CAP
// ---------------------------------------------------------------------------------------------

#[test]
fn a_session_opens_with_cap_ls_and_the_password() {
    let mut h = Harness::new();
    assert_eq!(h.drain().sent, sent(&["CAP LS 302"]));
    let mut h = Harness::with(Config {
        password: Some("sesame".into()),
        ..Config::default()
    });
    assert_eq!(h.drain().sent, sent(&["CAP LS 302", "PASS :sesame"]));
    assert_eq!(h.session.poll_timeout(), Some(Millis(T0 + 30_000)));
}

#[rstest]
#[case::both("echo-message server-time", "CAP REQ :echo-message server-time")]
#[case::all_four(
    "away-notify echo-message message-tags multi-prefix server-time",
    "CAP REQ :echo-message message-tags multi-prefix server-time"
)]
#[case::in_the_servers_order(
    "server-time batch away-notify echo-message",
    "CAP REQ :server-time batch echo-message"
)]
#[case::history("draft/chathistory batch", "CAP REQ :draft/chathistory batch")]
#[case::values_are_ignored("sasl=PLAIN server-time=1", "CAP REQ :server-time")]
#[case::none_wanted("away-notify sasl", "CAP END")]
#[case::none_offered("", "CAP END")]
fn cap_ls_requests_what_the_client_uses(#[case] offered: &str, #[case] answer: &str) {
    let mut h = Harness::new();
    h.drain();
    let step = h.line(&format!("{SERVER} CAP * LS :{offered}"));
    assert_eq!(step.sent, sent(&[answer]));
}

#[rstest]
#[case::ack("ACK")]
#[case::nak("NAK")]
fn cap_ack_or_nak_ends_negotiation_before_registering(#[case] sub: &str) {
    let mut h = Harness::new();
    h.drain();
    let step = h.line(&format!("{SERVER} CAP * {sub} :echo-message"));
    assert_eq!(step.sent, sent(&["CAP END"]));
}

#[test]
fn registering_sends_nick_and_user_once_then_joins_the_configured_room() {
    let mut h = Harness::new();
    h.drain();
    let step = h.cmd(Command::Nick("  alice ".into()));
    assert_eq!(
        step.sent,
        sent(&["NICK :alice", "USER parla 0 * :Parla user"])
    );
    assert_eq!(h.session.nick(), None, "not ours until the server says so");

    let step = h.line(&format!("{SERVER} 001 alice :Welcome to Parla, alice"));
    assert_eq!(
        step.events,
        [
            Event::Registered {
                name: "alice".into(),
                server: "parla.local".into()
            },
            Event::ServerInfo {
                text: "Welcome to Parla, alice".into()
            },
        ]
    );
    assert_eq!(step.sent, sent(&["JOIN #lobby"]));
    assert!(h.session.is_registered());
    assert_eq!(h.session.nick(), Some("alice"));

    // After registering, a CAP reply needs nothing, and a new name is just NICK.
    assert_eq!(
        h.line(&format!("{SERVER} CAP alice ACK :x")),
        Step::default()
    );
    assert_eq!(
        h.cmd(Command::Nick("alicia".into())).sent,
        sent(&["NICK :alicia"])
    );
}

#[test]
fn without_a_configured_room_the_welcome_joins_nothing() {
    let mut h = Harness::with(Config {
        room: None,
        username: "al".into(),
        realname: "Al Example".into(),
        ..Config::default()
    });
    h.drain();
    assert_eq!(
        h.cmd(Command::Nick("al".into())).sent,
        sent(&["NICK :al", "USER al 0 * :Al Example"])
    );
    assert!(h.line(&format!("{SERVER} 001 al :Hi")).sent.is_empty());
}

#[test]
fn a_taken_name_asks_for_another_and_the_retry_registers() {
    let mut h = Harness::new();
    h.drain();
    h.cmd(Command::Nick("alice".into()));
    let step = h.line(&format!(
        "{SERVER} 433 * alice :Nickname is already in use; pick another name"
    ));
    assert_eq!(
        step.events,
        [Event::NameRefused {
            name: "alice".into(),
            reason: "Nickname is already in use; pick another name".into()
        }]
    );
    assert!(step.sent.is_empty());
    assert!(h.ended().is_none());

    // The retry is NICK alone: USER went out with the first one.
    assert_eq!(
        h.cmd(Command::Nick("alice2".into())).sent,
        sent(&["NICK :alice2"])
    );
    let step = h.line(&format!("{SERVER} 001 alice2 :Welcome"));
    assert!(step.events.contains(&Event::Registered {
        name: "alice2".into(),
        server: "parla.local".into()
    }));
}

#[rstest]
#[case::erroneous(
    "432 * b@d :Erroneous nickname: contains '@'",
    "b@d",
    "Erroneous nickname: contains '@'"
)]
#[case::in_use(
    "433 * bob :Nickname is already in use",
    "bob",
    "Nickname is already in use"
)]
fn an_invalid_name_is_refused_with_the_servers_reason(
    #[case] reply: &str,
    #[case] name: &str,
    #[case] reason: &str,
) {
    let mut h = Harness::new();
    h.drain();
    h.cmd(Command::Nick(name.into()));
    let step = h.line(&format!("{SERVER} {reply}"));
    assert_eq!(
        step.events,
        [Event::NameRefused {
            name: name.into(),
            reason: reason.into()
        }]
    );
}

#[test]
fn no_name_given_is_refused_too() {
    let mut h = Harness::new();
    h.drain();
    let step = h.line(&format!("{SERVER} 431 * :No nickname given"));
    assert!(
        matches!(&step.events[..], [Event::NameRefused { reason, .. }] if reason == "No nickname given"),
        "{step:?}"
    );
}

#[test]
fn after_registering_a_refused_rename_is_an_ordinary_error() {
    let mut h = Harness::registered("alice", &["bob"]);
    let step = h.line(&format!(
        "{SERVER} 433 alice bob :Nickname is already in use"
    ));
    assert_eq!(
        step.events,
        [Event::ServerError {
            text: "bob: Nickname is already in use".into()
        }]
    );
    let step = h.line(&format!("{SERVER} 421 alice :Unknown command"));
    assert_eq!(
        step.events,
        [Event::ServerError {
            text: "Unknown command".into()
        }]
    );
}

#[rstest]
#[case::yourhost("002")]
#[case::created("003")]
#[case::motdstart("375")]
#[case::motd("372")]
#[case::endofmotd("376")]
#[case::nomotd("422")]
fn welcome_and_motd_lines_are_server_information(#[case] code: &str) {
    let mut h = Harness::registered("alice", &[]);
    let step = h.line(&format!("{SERVER} {code} alice :some text"));
    assert_eq!(
        step.events,
        [Event::ServerInfo {
            text: "some text".into()
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Rooms and members
// ---------------------------------------------------------------------------------------------

#[test]
fn joining_makes_the_room_current_and_lists_its_members_sorted() {
    let mut h = Harness::new();
    h.drain();
    h.cmd(Command::Nick("alice".into()));
    h.line(&format!("{SERVER} 001 alice :Welcome"));
    let step = h.line(":alice!~alice@192.0.2.1 JOIN #lobby");
    assert_eq!(
        step.events,
        [Event::Joined {
            room: "#lobby".into()
        }]
    );
    assert_eq!(h.session.room(), Some("#lobby"));
    assert!(
        h.line(&format!("{SERVER} 353 alice = #lobby :alice @Carol +bob"))
            .events
            .is_empty()
    );
    let step = h.line(&format!("{SERVER} 366 alice #lobby :End of /NAMES list"));
    assert_eq!(
        step.events,
        [members("#lobby", &["alice", "+bob", "@Carol"], true)]
    );
}

#[test]
fn joins_parts_quits_and_renames_keep_the_member_list() {
    let mut h = Harness::registered("alice", &["bob"]);

    let step = h.line(":carol!~carol@192.0.2.3 JOIN #lobby");
    assert_eq!(
        step.events,
        [
            Event::UserJoined {
                room: "#lobby".into(),
                name: "carol".into()
            },
            members("#lobby", &["alice", "bob", "carol"], true),
        ]
    );

    let step = h.line(":bob!~bob@192.0.2.2 PART #lobby :lunch");
    assert_eq!(
        step.events,
        [
            Event::UserLeft {
                room: "#lobby".into(),
                name: "bob".into(),
                reason: Some("lunch".into())
            },
            members("#lobby", &["alice", "carol"], true),
        ]
    );

    let step = h.line(":carol!~carol@192.0.2.3 NICK :Caro");
    assert_eq!(
        step.events,
        [
            Event::Renamed {
                old: "carol".into(),
                new: "Caro".into()
            },
            members("#lobby", &["alice", "Caro"], true),
        ]
    );

    // A QUIT names the rooms by their folded keys.
    h.line(":dave!~dave@192.0.2.4 JOIN #Lobby");
    let step = h.line(":DAVE!~dave@192.0.2.4 QUIT :Quit: bye");
    assert_eq!(
        step.events,
        [
            Event::UserQuit {
                name: "DAVE".into(),
                reason: "Quit: bye".into()
            },
            members("#lobby", &["alice", "Caro"], true),
        ]
    );

    // Someone we share no room with: reported, no list changes.
    let step = h.line(":erin!~erin@192.0.2.5 QUIT :gone");
    assert_eq!(
        step.events,
        [Event::UserQuit {
            name: "erin".into(),
            reason: "gone".into()
        }]
    );
    // A join to a room we are not in is not ours to track.
    assert!(
        h.line(":erin!~erin@192.0.2.5 JOIN #elsewhere")
            .events
            .is_empty()
    );
}

#[test]
fn our_own_rename_and_part_change_our_state() {
    let mut h = Harness::registered("alice", &["bob"]);
    let step = h.line(":alice!~alice@192.0.2.1 NICK :Alicia");
    assert_eq!(h.session.nick(), Some("Alicia"));
    assert_eq!(step.events[1], members("#lobby", &["Alicia", "bob"], true));

    let step = h.line(":ALICIA!~alice@192.0.2.1 PART #LOBBY");
    assert_eq!(
        step.events,
        [Event::Left {
            room: "#LOBBY".into(),
            current: None
        }]
    );
    assert_eq!(h.session.room(), None);
    assert_eq!(
        h.cmd(Command::Say("anyone?".into())),
        Step {
            sent: vec![],
            events: vec![Event::ServerError {
                text: "You are not in a room yet; nothing was sent".into()
            }]
        }
    );
    assert_eq!(h.cmd(Command::Action("waves".into())), Step::default());
    assert_eq!(
        h.cmd(Command::Names).events,
        [Event::ServerError {
            text: "You are not in a room yet; /join #room first".into()
        }]
    );
    assert_eq!(
        h.cmd(Command::Join("#rust".into())).sent,
        sent(&["JOIN #rust"])
    );
}

#[test]
fn a_quiet_rooms_list_holds_us_and_its_speakers_until_names_fetches_it() {
    let mut h = Harness::registered("alice", &[]);
    h.cmd(Command::Join("#big".into()));
    h.line(":alice!~alice@192.0.2.1 JOIN #big");
    // The server left the list out: the end of NAMES comes without us in it.
    let step = h.line(&format!("{SERVER} 366 alice #big :End of /NAMES list"));
    assert_eq!(step.events, [members("#big", &["alice"], false)]);

    // Joins are not announced there; whoever speaks is a member we now know.
    let step = h.line(":zed!~zed@192.0.2.9 PRIVMSG #big :hello");
    assert_eq!(
        step.events,
        [
            members("#big", &["alice", "zed"], false),
            message("zed", "#big", "hello", MessageKind::Normal, false),
        ]
    );
    // Only once.
    let step = h.line(":Zed!~zed@192.0.2.9 PRIVMSG #big :again");
    assert_eq!(step.events.len(), 1);

    // /names asks for everyone; a list with us in it is complete.
    assert_eq!(h.cmd(Command::Names).sent, sent(&["NAMES #big"]));
    h.line(&format!("{SERVER} 353 alice = #big :alice bob zed yan"));
    let step = h.line(&format!("{SERVER} 366 alice #big :End of /NAMES list"));
    assert_eq!(
        step.events,
        [members("#big", &["alice", "bob", "yan", "zed"], true)]
    );
}

#[test]
fn topics_are_reported_from_the_reply_and_from_changes() {
    let mut h = Harness::registered("alice", &[]);
    let step = h.line(&format!("{SERVER} 332 alice #lobby :Welcome all"));
    let topic = |t: &str| Event::Topic {
        room: "#lobby".into(),
        topic: t.into(),
    };
    assert_eq!(step.events, [topic("Welcome all")]);
    let step = h.line(":bob!~bob@192.0.2.2 TOPIC #lobby :");
    assert_eq!(step.events, [topic("")]);
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

#[test]
fn room_messages_actions_and_notices_arrive_with_their_kind_and_time() {
    let mut h = Harness::registered("alice", &["bob"]);
    let step = h.line("@time=2026-11-18T11:06:40.028Z :bob!~bob@192.0.2.2 PRIVMSG #lobby :hi all");
    assert_eq!(
        step.events,
        [Event::Message(Said {
            from: "bob".into(),
            target: "#lobby".into(),
            text: "hi all".into(),
            kind: MessageKind::Normal,
            own: false,
            time: Some("2026-11-18T11:06:40.028Z".into()),
            id: None,
        })]
    );
    let step = h.line(":bob!~bob@192.0.2.2 PRIVMSG #lobby :\x01ACTION waves\x01");
    assert_eq!(
        step.events,
        [message(
            "bob",
            "#lobby",
            "waves",
            MessageKind::Action,
            false
        )]
    );
    let step = h.line(":bob!~bob@192.0.2.2 NOTICE #lobby :psst");
    assert_eq!(
        step.events,
        [message("bob", "#lobby", "psst", MessageKind::Notice, false)]
    );
    // Other CTCP is not shown.
    assert_eq!(
        h.line(":bob!~bob@192.0.2.2 PRIVMSG alice :\x01VERSION\x01"),
        Step::default()
    );
    // The server's own notices are information.
    let step = h.line(&format!("{SERVER} NOTICE alice :Server notice"));
    assert_eq!(
        step.events,
        [Event::ServerInfo {
            text: "Server notice".into()
        }]
    );
}

#[test]
fn what_we_say_goes_out_and_comes_back_as_our_own_echo() {
    let mut h = Harness::registered("alice", &["bob"]);
    let step = h.cmd(Command::Say("hello".into()));
    assert_eq!(
        step,
        Step {
            sent: sent(&["PRIVMSG #lobby :hello"]),
            events: vec![],
        }
    );
    assert_eq!(
        h.cmd(Command::Action("waves".into())).sent,
        sent(&["PRIVMSG #lobby :\x01ACTION waves\x01"])
    );
    // echo-message: the server sends it back; only then is it shown, as ours.
    let step = h.line(":Alice!~alice@192.0.2.1 PRIVMSG #lobby :hello");
    assert_eq!(
        step.events,
        [message(
            "Alice",
            "#lobby",
            "hello",
            MessageKind::Normal,
            true
        )]
    );
}

#[test]
fn direct_messages_go_to_the_person_and_arrive_addressed_to_us() {
    let mut h = Harness::registered("alice", &["bob"]);
    let step = h.cmd(Command::Msg {
        to: "bob".into(),
        text: "psst".into(),
    });
    assert_eq!(step.sent, sent(&["PRIVMSG bob :psst"]));
    let step = h.line(":alice!~alice@192.0.2.1 PRIVMSG bob :psst");
    assert_eq!(
        step.events,
        [message("alice", "bob", "psst", MessageKind::Normal, true)]
    );
    let step = h.line(":bob!~bob@192.0.2.2 PRIVMSG alice :hi back");
    assert_eq!(
        step.events,
        [message(
            "bob",
            "alice",
            "hi back",
            MessageKind::Normal,
            false
        )]
    );
}

#[test]
fn a_long_text_is_split_so_every_relayed_line_fits_and_nothing_is_cut() {
    let mut h = Harness::registered("alice", &[]);
    let text = "word ".repeat(300);
    let step = h.cmd(Command::Say(text.clone()));
    assert!(step.sent.len() > 1, "{step:?}");
    let mut rebuilt = String::new();
    for line in &step.sent {
        let piece = line.strip_prefix("PRIVMSG #lobby :").expect(line);
        // What the server relays: our prefix with the longest user and host it may add.
        let relayed = format!(":alice!~{}@{} {line}\r\n", "u".repeat(15), "h".repeat(64));
        assert!(relayed.len() <= MAX_BODY_LEN, "{} bytes", relayed.len());
        rebuilt.push_str(piece);
    }
    assert_eq!(rebuilt, text);

    // Each non-blank line of a multi-line text is its own message.
    let step = h.cmd(Command::Say("one\n\n  \ntwo\r\nthree".into()));
    assert_eq!(
        step.sent,
        sent(&[
            "PRIVMSG #lobby :one",
            "PRIVMSG #lobby :two",
            "PRIVMSG #lobby :three"
        ])
    );
}

#[test]
fn before_registering_the_split_assumes_the_longest_name() {
    let mut h = Harness::new();
    h.drain();
    // A direct message before the welcome: budgeted for a NICK_LEN name.
    let text = "x".repeat(400);
    let step = h.cmd(Command::Msg {
        to: "bob".into(),
        text: text.clone(),
    });
    assert_eq!(step.sent.len(), 2, "{step:?}");
    assert_eq!(
        parla_room::client::message_pieces(&text, &"x".repeat(30), "bob", false).len(),
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Liveness: IRC PING and ICMP
// ---------------------------------------------------------------------------------------------

fn watched() -> Harness {
    let mut h = Harness::with(Config {
        irc_ping_interval_ms: 10_000,
        irc_ping_timeout_ms: 5_000,
        ..Config::default()
    });
    h.drain();
    h
}

#[test]
fn the_servers_ping_is_answered() {
    let mut h = Harness::registered("alice", &[]);
    assert_eq!(h.line("PING :abc123").sent, sent(&["PONG :abc123"]));
}

#[test]
fn a_silent_server_is_pinged_then_given_up_on() {
    let mut h = watched();
    assert_eq!(h.session.poll_timeout(), Some(Millis(T0 + 10_000)));
    assert_eq!(h.at(9_999), Step::default());
    assert_eq!(h.at(10_000).sent, sent(&["PING :parla-liveness"]));
    assert_eq!(h.session.poll_timeout(), Some(Millis(T0 + 15_000)));
    assert_eq!(h.at(14_999), Step::default());
    assert!(h.ended().is_none());
    assert_eq!(h.at(15_000), Step::default());
    assert_eq!(
        h.ended(),
        Some(&Disconnect::ServerNotResponding {
            silent: Duration::from_secs(15)
        })
    );
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn any_line_answers_the_liveness_ping_and_restarts_the_watch() {
    let mut h = watched();
    assert_eq!(h.at(10_000).sent, sent(&["PING :parla-liveness"]));
    h.now = Millis(T0 + 12_000);
    h.line(":parla.local PONG parla.local :parla-liveness");
    assert_eq!(h.session.poll_timeout(), Some(Millis(T0 + 22_000)));
    // Even a line that is not UTF-8, or not IRC, is a sign of life.
    h.now = Millis(T0 + 20_000);
    h.session.handle_line(h.now, b"\xff\xfe");
    assert_eq!(h.session.poll_timeout(), Some(Millis(T0 + 30_000)));
    h.now = Millis(T0 + 21_000);
    h.line("   ");
    assert_eq!(h.session.poll_timeout(), Some(Millis(T0 + 31_000)));
    assert_eq!(h.at(31_000).sent, sent(&["PING :parla-liveness"]));
    assert!(h.ended().is_none());
}

#[test]
fn icmp_replies_and_misses_are_reported_and_the_miss_limit_ends_the_session() {
    let mut h = Harness::registered("alice", &[]);
    let rtt = Duration::from_millis(12);
    assert_eq!(
        h.ping(PingReport::Reply { rtt }).events,
        [Event::PingReply { rtt }]
    );
    for n in 1..=3 {
        let step = h.ping(PingReport::Missed {
            consecutive: n,
            error: "timed out".into(),
        });
        assert_eq!(
            step.events,
            [Event::PingMissed {
                consecutive: n,
                error: "timed out".into()
            }]
        );
        assert!(h.ended().is_none());
    }
    let target = "192.0.2.10".parse().unwrap();
    let step = h.ping(PingReport::Failed { misses: 3, target });
    assert_eq!(step.sent, sent(&["QUIT :Ping to server failed"]));
    assert_eq!(
        h.ended(),
        Some(&Disconnect::PingFailed { target, misses: 3 })
    );
    // Nothing is taken after the end.
    assert_eq!(h.line("PING :x"), Step::default());
    assert_eq!(h.cmd(Command::Say("hi".into())), Step::default());
}

#[test]
fn without_icmp_rights_the_session_says_so_and_stays_up() {
    let mut h = Harness::registered("alice", &[]);
    let step = h.ping(PingReport::Unavailable {
        reason: "not permitted".into(),
    });
    assert_eq!(
        step.events,
        [Event::PingUnavailable {
            reason: "not permitted".into()
        }]
    );
    assert!(h.ended().is_none());
}

// ---------------------------------------------------------------------------------------------
// Endings: ERROR, shutdown, QUIT, a broken link
// ---------------------------------------------------------------------------------------------

#[test]
fn a_shutdown_is_told_by_the_error_reason() {
    let mut h = Harness::registered("alice", &[]);
    let step = h.line(&format!("{SERVER} NOTICE alice :{SHUTDOWN_NOTICE}"));
    assert_eq!(
        step.events,
        [Event::ServerInfo {
            text: SHUTDOWN_NOTICE.into()
        }]
    );
    assert!(h.ended().is_none(), "a notice ends nothing");
    let step = h.line(&format!("ERROR :{SHUTDOWN_ERROR}"));
    assert_eq!(
        step.events,
        [Event::ServerShutdown {
            message: "Server shutting down".into()
        }]
    );
    assert_eq!(h.ended(), Some(&Disconnect::ServerShutdown));
    assert!(h.ended().unwrap().is_clean());
}

#[test]
fn words_about_shutting_down_are_not_a_shutdown() {
    let mut h = Harness::registered("alice", &["bob"]);
    let step =
        h.line(":bob!~bob@192.0.2.2 NOTICE #lobby :the server is shutting down soon, they say");
    assert_eq!(step.events.len(), 1);
    let step = h.line(&format!(
        "{SERVER} NOTICE alice :Server is shutting down. Goodbye!"
    ));
    assert!(matches!(&step.events[..], [Event::ServerInfo { .. }]));
    assert!(h.ended().is_none());
}

#[rstest]
#[case::kill("Closing link: killed by an operator")]
#[case::flood("Excess flood")]
#[case::mentions_shutting_down("The network is shutting down this server for maintenance")]
#[case::shutdown_in_other_case("SERVER SHUTTING DOWN")]
fn any_other_error_closes_the_session_with_its_reason(#[case] reason: &str) {
    let mut h = Harness::registered("alice", &[]);
    let step = h.line(&format!("ERROR :{reason}"));
    assert!(step.events.is_empty(), "{step:?}");
    assert_eq!(
        h.ended(),
        Some(&Disconnect::ClosedByServer {
            reason: reason.into()
        })
    );
    assert!(!h.ended().unwrap().is_clean());
}

#[test]
fn quitting_sends_quit_and_ends_when_the_server_says_goodbye() {
    let mut h = Harness::registered("alice", &[]);
    h.now = Millis(T0 + 5_000);
    assert_eq!(h.cmd(Command::Quit(None)).sent, sent(&["QUIT :Leaving"]));
    assert!(h.session.is_quitting());
    assert_eq!(
        h.session.poll_timeout(),
        Some(Millis(T0 + 5_000 + QUIT_WAIT_MS))
    );
    // No more commands or ping reports; lines are still read (and PINGs answered).
    assert_eq!(h.cmd(Command::Say("wait".into())), Step::default());
    assert_eq!(
        h.ping(PingReport::Failed {
            misses: 3,
            target: "192.0.2.10".parse().unwrap()
        }),
        Step::default()
    );
    assert_eq!(h.line("PING :x").sent, sent(&["PONG :x"]));
    // Whatever the server's reason, after our QUIT its ERROR is the goodbye.
    h.line(&format!("ERROR :{SHUTDOWN_ERROR}"));
    assert_eq!(h.ended(), Some(&Disconnect::Quit));
}

#[test]
fn a_server_that_does_not_close_after_quit_is_left_after_the_wait() {
    let mut h = Harness::registered("alice", &[]);
    assert_eq!(
        h.cmd(Command::Quit(Some("bye now".into()))).sent,
        sent(&["QUIT :bye now"])
    );
    assert_eq!(h.at(QUIT_WAIT_MS - 1), Step::default());
    assert!(h.ended().is_none());
    h.at(QUIT_WAIT_MS);
    assert_eq!(h.ended(), Some(&Disconnect::Quit));
}

#[test]
fn a_closed_link_is_a_lost_connection_unless_we_quit() {
    let mut h = Harness::registered("alice", &[]);
    h.session.handle_closed(h.now, None);
    assert_eq!(
        h.ended(),
        Some(&Disconnect::ConnectionLost {
            reason: "the server closed the connection without a word".into()
        })
    );

    let mut h = Harness::registered("alice", &[]);
    h.session
        .handle_closed(h.now, Some("connection reset by peer".into()));
    assert_eq!(
        h.ended(),
        Some(&Disconnect::ConnectionLost {
            reason: "connection reset by peer".into()
        })
    );

    let mut h = Harness::registered("alice", &[]);
    h.cmd(Command::Quit(None));
    h.session
        .handle_closed(h.now, Some("connection reset by peer".into()));
    assert_eq!(h.ended(), Some(&Disconnect::Quit));
}

#[test]
fn a_failed_write_loses_the_connection_and_drops_the_lines_after_it() {
    let mut h = Harness::registered("alice", &[]);
    h.session
        .handle_command(h.now, Command::Say("one\ntwo".into()));
    assert_eq!(
        h.session.poll_transmit().as_deref(),
        Some("PRIVMSG #lobby :one")
    );
    h.session.handle_send_failed(h.now, "broken pipe".into());
    assert_eq!(h.session.poll_transmit(), None);
    assert_eq!(
        h.ended(),
        Some(&Disconnect::ConnectionLost {
            reason: "broken pipe".into()
        })
    );

    // After the miss limit, the courtesy QUIT failing keeps the real reason.
    let mut h = Harness::registered("alice", &[]);
    let target = "192.0.2.10".parse().unwrap();
    h.session
        .handle_ping(h.now, PingReport::Failed { misses: 2, target });
    h.session.handle_send_failed(h.now, "broken pipe".into());
    assert_eq!(
        h.ended(),
        Some(&Disconnect::PingFailed { target, misses: 2 })
    );
}

#[test]
fn a_raw_line_goes_out_as_typed_but_only_as_one_line() {
    let mut h = Harness::registered("alice", &[]);
    assert_eq!(
        h.cmd(Command::Raw("TOPIC #lobby :new topic".into())).sent,
        sent(&["TOPIC #lobby :new topic"])
    );
    assert_eq!(h.cmd(Command::Raw("   ".into())), Step::default());
    for smuggled in ["PRIVMSG #x :a\r\nQUIT", "NICK a\nb", "PART #x\0"] {
        let step = h.cmd(Command::Raw(smuggled.into()));
        assert!(step.sent.is_empty(), "{smuggled:?} was sent");
        assert!(
            matches!(&step.events[..], [Event::ServerError { text }] if text.contains("one line at a time")),
            "{:?}",
            step.events
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Moderation, topics, away, operators and typing
// ---------------------------------------------------------------------------------------------

fn part(room: Option<&str>, reason: Option<&str>) -> Command {
    Command::Part {
        room: room.map(Into::into),
        reason: reason.map(Into::into),
    }
}

#[rstest]
#[case(part(None, None), "PART #lobby")]
#[case(part(Some("#rust"), Some("bye now")), "PART #rust :bye now")]
#[case(Command::Topic { room: None, topic: None }, "TOPIC #lobby")]
#[case(Command::Topic { room: None, topic: Some("Rust talk".into()) }, "TOPIC #lobby :Rust talk")]
#[case(Command::Topic { room: Some("#rust".into()), topic: Some(String::new()) }, "TOPIC #rust :")]
#[case(Command::Kick { room: None, name: "bob".into(), reason: None }, "KICK #lobby bob")]
#[case(Command::Kick { room: None, name: "bob".into(), reason: Some("be nice".into()) }, "KICK #lobby bob :be nice")]
#[case(Command::Mode { target: None, args: "+o bob".into() }, "MODE #lobby +o bob")]
#[case(Command::Mode { target: None, args: "  ".into() }, "MODE #lobby")]
#[case(Command::Mode { target: Some("alice".into()), args: "+w".into() }, "MODE alice +w")]
#[case(Command::Invite { name: "bob".into(), room: None }, "INVITE bob #lobby")]
#[case(Command::Invite { name: "bob".into(), room: Some("#rust".into()) }, "INVITE bob #rust")]
#[case(Command::Oper { name: "admin".into(), password: "pass word".into() }, "OPER admin :pass word")]
#[case(Command::Away(Some("lunch, back at 2".into())), "AWAY :lunch, back at 2")]
#[case(Command::Away(None), "AWAY")]
#[case(Command::Whois("bob".into()), "WHOIS bob")]
fn moderation_commands_go_out_as_irc_lines(#[case] command: Command, #[case] line: &str) {
    let mut h = Harness::registered("alice", &["bob"]);
    assert_eq!(
        h.cmd(command),
        Step {
            sent: sent(&[line]),
            events: vec![]
        }
    );
}

#[rstest]
#[case(part(None, None), "leave")]
#[case(Command::Topic { room: None, topic: None }, "show the topic of")]
#[case(Command::Kick { room: None, name: "bob".into(), reason: None }, "remove someone from")]
#[case(Command::Mode { target: None, args: "+m".into() }, "change the modes of")]
#[case(Command::Invite { name: "bob".into(), room: None }, "invite someone to")]
fn commands_for_the_current_room_say_so_without_one(#[case] command: Command, #[case] what: &str) {
    let mut h = Harness::registered("alice", &[]);
    h.line(":alice!~alice@192.0.2.1 PART #lobby");
    assert_eq!(
        h.cmd(command),
        Step {
            sent: vec![],
            events: vec![Event::ServerError {
                text: format!(
                    "You are not in a room yet, so there is no room to {what}; name one or /join #room first"
                )
            }]
        }
    );
}

#[rstest]
#[case(part(None, Some("bye\r\nQUIT")))]
#[case(Command::Topic { room: None, topic: Some("a\nb".into()) })]
#[case(Command::Kick { room: None, name: "bob\0".into(), reason: None })]
#[case(Command::Mode { target: None, args: "+b x\r\nKILL y".into() })]
#[case(Command::Oper { name: "admin".into(), password: "pw\nQUIT".into() })]
#[case(Command::Away(Some("gone\r".into())))]
fn a_command_never_smuggles_a_second_line(#[case] command: Command) {
    let mut h = Harness::registered("alice", &["bob"]);
    let step = h.cmd(command);
    assert!(step.sent.is_empty(), "{step:?}");
    assert_eq!(
        step.events,
        [Event::ServerError {
            text: "Not sent: a name, room or reason cannot contain a line break or a NUL".into()
        }]
    );
}

#[test]
fn leaving_the_current_room_goes_back_to_the_room_joined_before() {
    let mut h = Harness::registered("alice", &["bob"]);
    h.line(":alice!~alice@192.0.2.1 JOIN #rust");
    h.line(":alice!~alice@192.0.2.1 JOIN #go");
    assert_eq!(h.session.room(), Some("#go"));
    // Leaving a room that is not the current one keeps the current one.
    let step = h.line(":alice!~alice@192.0.2.1 PART #rust :bye");
    assert_eq!(
        step.events,
        [Event::Left {
            room: "#rust".into(),
            current: Some("#go".into())
        }]
    );
    let step = h.line(":alice!~alice@192.0.2.1 PART #go");
    assert_eq!(
        step.events,
        [Event::Left {
            room: "#go".into(),
            current: Some("#lobby".into())
        }]
    );
    assert_eq!(
        h.cmd(Command::Say("back".into())).sent,
        ["PRIVMSG #lobby :back"]
    );
    // A PART for a room we are not in (a confused server) changes nothing.
    assert_eq!(
        h.line(":alice!~alice@192.0.2.1 PART #nowhere"),
        Step::default()
    );
}

#[test]
fn a_kick_removes_the_member_and_kicking_us_leaves_the_room() {
    let mut h = Harness::registered("alice", &["@bob", "carol"]);
    let step = h.line(":bob!~bob@192.0.2.2 KICK #lobby carol :spam");
    assert_eq!(
        step.events,
        [
            Event::Kicked {
                room: "#lobby".into(),
                name: "carol".into(),
                by: "bob".into(),
                reason: "spam".into()
            },
            members("#lobby", &["alice", "@bob"], true),
        ]
    );
    let step = h.line(":bob!~bob@192.0.2.2 KICK #lobby ALICE");
    assert_eq!(
        step.events,
        [
            Event::Kicked {
                room: "#lobby".into(),
                name: "ALICE".into(),
                by: "bob".into(),
                reason: String::new()
            },
            Event::Left {
                room: "#lobby".into(),
                current: None
            },
        ]
    );
    assert_eq!(h.session.room(), None);
    // A kick from a room we are not in is not ours to show.
    assert_eq!(
        h.line(":bob!~bob@192.0.2.2 KICK #lobby carol"),
        Step::default()
    );
}

#[test]
fn mode_changes_are_reported_and_keep_the_statuses_of_members() {
    let mut h = Harness::registered("alice", &["@+bob", "carol"]);
    // Arguments of list, key and limit modes are skipped, so +o finds its own.
    let step = h.line(":bob!~bob@192.0.2.2 MODE #lobby +bklov *!*@spam sesame 10 carol carol");
    assert_eq!(
        step.events,
        [
            Event::ModeChanged {
                target: "#lobby".into(),
                by: "bob".into(),
                change: "+bklov *!*@spam sesame 10 carol carol".into()
            },
            members("#lobby", &["alice", "@+bob", "@+carol"], true),
        ]
    );
    // -l takes no argument; -o takes one; a change that changes nothing lists nothing.
    let step = h.line(":bob!~bob@192.0.2.2 MODE #lobby -lo+v carol CAROL");
    assert_eq!(
        step.events[1],
        members("#lobby", &["alice", "@+bob", "+carol"], true)
    );
    assert_eq!(
        h.line(":bob!~bob@192.0.2.2 MODE #lobby +v carol")
            .events
            .len(),
        1
    );
    // Our own modes, from the server.
    assert_eq!(
        h.line(":parla.local MODE alice :+w").events,
        [Event::ModeChanged {
            target: "alice".into(),
            by: "parla.local".into(),
            change: "+w".into()
        }]
    );
}

#[test]
fn the_servers_own_prefixes_are_read_from_its_005() {
    let mut h = Harness::new();
    h.drain();
    h.cmd(Command::Nick("alice".into()));
    h.line(&format!("{SERVER} 001 alice :Welcome"));
    h.line(&format!(
        "{SERVER} 005 alice PREFIX=(qaohv)~&@%+ CHANMODES=beI,k,lf,imnst :are supported"
    ));
    h.line(":alice!~alice@192.0.2.1 JOIN #lobby");
    h.line(&format!("{SERVER} 353 alice = #lobby :alice ~&bob %carol"));
    let step = h.line(&format!("{SERVER} 366 alice #lobby :End"));
    let Event::Members { members, .. } = &step.events[0] else {
        panic!("{step:?}")
    };
    assert_eq!(members[1].prefixes, "~&");
    assert!(members[1].is_operator() && members[2].is_operator());
    assert_eq!(members[2].prefix(), "%");
    // `f` takes an argument when set here, `h` is half-operator.
    let step = h.line(":bob!~bob@192.0.2.2 MODE #lobby +fh 5:10 alice");
    let Event::Members { members, .. } = &step.events[1] else {
        panic!("{step:?}")
    };
    assert_eq!(
        (members[0].name.as_str(), members[0].prefix()),
        ("alice", "%")
    );
}

#[test]
fn invitations_are_reported() {
    let mut h = Harness::registered("alice", &["bob"]);
    assert_eq!(
        h.line(":bob!~bob@192.0.2.2 INVITE alice #secret").events,
        [Event::Invited {
            room: "#secret".into(),
            name: "alice".into(),
            by: "bob".into()
        }]
    );
}

#[test]
fn typing_notifications_are_reported_for_rooms_and_conversations() {
    let mut h = Harness::registered("alice", &["bob"]);
    let typing = |target: &str, state| Event::Typing {
        target: target.into(),
        name: "bob".into(),
        state,
    };
    assert_eq!(
        h.line("@+typing=active :bob!~bob@192.0.2.2 TAGMSG #lobby")
            .events,
        [typing("#lobby", Typing::Active)]
    );
    // To us directly: the conversation is bob's.
    assert_eq!(
        h.line("@msgid=x;+typing=paused :bob!~bob@192.0.2.2 TAGMSG alice")
            .events,
        [typing("bob", Typing::Paused)]
    );
    // Our own echo, other tags, unknown states and a server's TAGMSG show nothing.
    for line in [
        "@+typing=active :alice!~alice@192.0.2.1 TAGMSG #lobby",
        "@+react=👍 :bob!~bob@192.0.2.2 TAGMSG #lobby",
        "@+typing=shouting :bob!~bob@192.0.2.2 TAGMSG #lobby",
        "@+typing=active :parla.local TAGMSG #lobby",
    ] {
        assert_eq!(h.line(line), Step::default(), "{line}");
    }
}

#[test]
fn typing_goes_out_only_with_message_tags_and_not_too_often() {
    let mut h = Harness::registered("alice", &["bob"]);
    // The server took echo-message and server-time only.
    assert_eq!(h.cmd(Command::Typing(Typing::Active)), Step::default());

    let mut h = Harness::new();
    h.drain();
    h.line(&format!("{SERVER} CAP * ACK :echo-message message-tags"));
    h.cmd(Command::Nick("alice".into()));
    h.line(&format!("{SERVER} 001 alice :Welcome"));
    h.line(":alice!~alice@192.0.2.1 JOIN #lobby");
    h.drain();
    let typing = |h: &mut Harness, state| h.cmd(Command::Typing(state)).sent;
    // Nothing to say done about before anything was said.
    assert!(typing(&mut h, Typing::Done).is_empty());
    assert_eq!(
        typing(&mut h, Typing::Active),
        ["@+typing=active TAGMSG #lobby"]
    );
    assert!(typing(&mut h, Typing::Active).is_empty());
    h.at(TYPING_ACTIVE_EVERY_MS - 1);
    assert!(typing(&mut h, Typing::Active).is_empty());
    h.at(TYPING_ACTIVE_EVERY_MS);
    assert_eq!(
        typing(&mut h, Typing::Active),
        ["@+typing=active TAGMSG #lobby"]
    );
    assert_eq!(
        typing(&mut h, Typing::Paused),
        ["@+typing=paused TAGMSG #lobby"]
    );
    assert!(typing(&mut h, Typing::Paused).is_empty());
    assert_eq!(
        typing(&mut h, Typing::Active),
        ["@+typing=active TAGMSG #lobby"]
    );
    // Sending the message is the end of typing: no `done` follows it.
    assert_eq!(
        h.cmd(Command::Say("hi".into())).sent,
        ["PRIVMSG #lobby :hi"]
    );
    assert!(typing(&mut h, Typing::Done).is_empty());
    assert_eq!(
        typing(&mut h, Typing::Active),
        ["@+typing=active TAGMSG #lobby"]
    );
    assert_eq!(
        typing(&mut h, Typing::Done),
        ["@+typing=done TAGMSG #lobby"]
    );
    // A new room is a new conversation.
    h.line(":alice!~alice@192.0.2.1 JOIN #rust");
    assert_eq!(
        typing(&mut h, Typing::Active),
        ["@+typing=active TAGMSG #rust"]
    );
}

#[rstest]
#[case("221 alice +iw", "Your modes: +iw")]
#[case("324 alice #lobby +ntk sesame", "Modes of #lobby: +ntk sesame")]
#[case("301 alice bob :at lunch", "bob is away: at lunch")]
#[case(
    "306 alice :You have been marked as being away",
    "You have been marked as being away"
)]
#[case(
    "381 alice :You are now an IRC operator",
    "You are now an IRC operator"
)]
#[case("341 alice bob #secret", "You invited bob to #secret")]
#[case(
    "311 alice bob ~bob 192.0.2.2 * :Bob Smith",
    "bob is ~bob@192.0.2.2 (Bob Smith)"
)]
#[case("319 alice bob :@#lobby #rust", "bob is in @#lobby #rust")]
#[case(
    "317 alice bob 42 1700000000 :seconds idle, signon time",
    "bob has been idle 42s"
)]
#[case(
    "367 alice #lobby *!*@spam bob 1700000000",
    "#lobby: *!*@spam is banned"
)]
#[case(
    "368 alice #lobby :End of channel ban list",
    "#lobby: End of channel ban list"
)]
#[case("322 alice #rust 3 :Rust talk", "#rust (3 people): Rust talk")]
fn replies_to_moderation_commands_are_shown_in_words(#[case] line: &str, #[case] text: &str) {
    let mut h = Harness::registered("alice", &["bob"]);
    assert_eq!(
        h.line(&format!("{SERVER} {line}")).events,
        [Event::ServerInfo { text: text.into() }]
    );
}

#[test]
fn no_topic_is_an_empty_topic_and_counts_are_not_shown() {
    let mut h = Harness::registered("alice", &["bob"]);
    assert_eq!(
        h.line(&format!("{SERVER} 331 alice #lobby :No topic is set"))
            .events,
        [Event::Topic {
            room: "#lobby".into(),
            topic: String::new()
        }]
    );
    for line in [
        "251 alice :There are 2 users",
        "318 alice bob :End of /WHOIS list",
    ] {
        assert_eq!(h.line(&format!("{SERVER} {line}")), Step::default());
    }
}

// ---------------------------------------------------------------------------------------------
// History (draft/chathistory)
// ---------------------------------------------------------------------------------------------

const HISTORY_CAPS: &str = "batch draft/chathistory echo-message message-tags server-time";

/// A session with the history capabilities, registered as alice (the server says it gives up to
/// 100 messages a request), whose own `JOIN #lobby` was just read; returns what that did.
fn joined_with_history() -> (Harness, Step) {
    let mut h = Harness::new();
    h.drain();
    h.line(&format!("{SERVER} CAP * LS :{HISTORY_CAPS}"));
    h.line(&format!("{SERVER} CAP * ACK :{HISTORY_CAPS}"));
    h.cmd(Command::Nick("alice".into()));
    h.line(&format!("{SERVER} 001 alice :Welcome, alice"));
    h.line(&format!(
        "{SERVER} 005 alice CHATHISTORY=100 MSGREFTYPES=msgid,timestamp :are supported"
    ));
    let step = h.line(":alice!~alice@192.0.2.1 JOIN #lobby");
    (h, step)
}

fn said(from: &str, text: &str, id: &str, time: &str) -> Said {
    Said {
        from: from.into(),
        target: "#lobby".into(),
        text: text.into(),
        kind: MessageKind::Normal,
        own: from == "alice",
        time: Some(time.into()),
        id: Some(id.into()),
    }
}

/// The line that carries `m` (in batch `batch`, if any).
fn said_line(m: &Said, batch: Option<&str>) -> String {
    let batch = batch.map(|b| format!(";batch={b}")).unwrap_or_default();
    format!(
        "@time={};msgid={}{batch} :{}!~{}@192.0.2.9 PRIVMSG {} :{}",
        m.time.as_deref().unwrap(),
        m.id.as_deref().unwrap(),
        m.from,
        m.from,
        m.target,
        m.text
    )
}

#[test]
fn joining_shows_the_recent_past_first_and_every_message_once() {
    let (mut h, step) = joined_with_history();
    assert_eq!(step.sent, sent(&["CHATHISTORY LATEST #lobby * 50"]));
    let (h1, h2) = (
        said("bob", "yesterday", "H1", "2026-11-29T10:00:00.000Z"),
        said("carol", "earlier", "H2", "2026-11-30T09:00:00.000Z"),
    );
    // Said just after we joined: it may come live before the page, and in it too.
    let live = said("bob", "just now", "L1", "2026-11-30T10:00:00.000Z");
    let step = h.line(&said_line(&live, None));
    assert_eq!(
        step.events,
        [],
        "a live message waits for the page before it"
    );
    h.line(&format!("{SERVER} BATCH +b1 chathistory #lobby"));
    for m in [&h1, &h2, &live] {
        assert_eq!(h.line(&said_line(m, Some("b1"))).events, []);
    }
    let step = h.line(&format!("{SERVER} BATCH -b1"));
    assert_eq!(
        step.events,
        [Event::History {
            target: "#lobby".into(),
            page: HistoryPage::Recent,
            messages: vec![h1.clone(), h2, live.clone()],
            more: false,
        }],
        "the live message is in the page, so it is not reported again"
    );
    // Live messages flow again; one the server sends twice is shown once.
    let next = said("carol", "hello", "L2", "2026-11-30T10:01:00.000Z");
    assert_eq!(
        h.line(&said_line(&next, None)).events,
        [Event::Message(next.clone())]
    );
    // An older page starts before the oldest shown; a short one is the start of it all.
    let step = h.cmd(Command::Older(None));
    assert_eq!(step.sent, sent(&["CHATHISTORY BEFORE #lobby msgid=H1 50"]));
    h.line(&format!("{SERVER} BATCH +b2 chathistory #lobby"));
    let h0 = said("dave", "first", "H0", "2026-11-28T10:00:00.000Z");
    h.line(&said_line(&h0, Some("b2")));
    h.line(&said_line(&h1, Some("b2"))); // overlapping: shown already
    let step = h.line(&format!("{SERVER} BATCH -b2"));
    assert_eq!(
        step.events,
        [Event::History {
            target: "#lobby".into(),
            page: HistoryPage::Older,
            messages: vec![h0],
            more: false,
        }]
    );
    // Nothing older: answered at once, without asking the server.
    let step = h.cmd(Command::Older(Some("#lobby".into())));
    assert_eq!(step.sent, Vec::<String>::new());
    assert!(matches!(
        &step.events[..],
        [Event::History { page: HistoryPage::Older, messages, more: false, .. }] if messages.is_empty()
    ));
}

#[test]
fn a_page_that_never_comes_lets_the_waiting_messages_through() {
    let (mut h, _) = joined_with_history();
    let live = said("bob", "hi", "L1", "2026-11-30T10:00:00.000Z");
    assert_eq!(h.line(&said_line(&live, None)).events, []);
    assert_eq!(h.at(HISTORY_WAIT_MS - 1).events, []);
    let step = h.at(HISTORY_WAIT_MS);
    assert!(
        matches!(&step.events[0], Event::ServerError { text } if text.contains("did not send the history of #lobby")),
        "{:?}",
        step.events
    );
    assert_eq!(step.events[1..], [Event::Message(live)]);
}

#[test]
fn a_resumed_session_takes_its_name_back_rejoins_and_fills_the_gap_once() {
    let (mut h, _) = joined_with_history();
    h.line(&format!("{SERVER} BATCH +b1 chathistory #lobby"));
    h.line(&format!("{SERVER} BATCH -b1"));
    h.cmd(Command::Join("#rust".into()));
    h.line(":alice!~alice@192.0.2.1 JOIN #rust");
    h.line(&format!("{SERVER} BATCH +b2 chathistory #rust"));
    h.line(&format!("{SERVER} BATCH -b2"));
    h.cmd(Command::Join("#lobby".into())); // back to #lobby: the current room
    let seen = said("bob", "last seen", "L1", "2026-11-30T10:00:00.000Z");
    h.line(&said_line(&seen, None));
    // The connection is lost; a new one carries on.
    let resume = h.session.resume().expect("registered");
    let mut r = Harness {
        session: Session::resumed(Config::default(), Millis(T0), resume),
        now: Millis(T0),
    };
    let step = r.drain();
    assert_eq!(
        step.sent,
        sent(&["CAP LS 302", "NICK :alice", "USER parla 0 * :Parla user"])
    );
    r.line(&format!("{SERVER} CAP * LS :{HISTORY_CAPS}"));
    r.line(&format!("{SERVER} CAP * ACK :{HISTORY_CAPS}"));
    // The lost connection still holds the name: no question, the next name is taken.
    let step = r.line(&format!("{SERVER} 433 * alice :Nickname is already in use"));
    assert_eq!(step.sent, sent(&["NICK :alice_"]));
    assert!(
        matches!(&step.events[..], [Event::ServerInfo { text }] if text.contains("/nick alice"))
    );
    let step = r.line(&format!("{SERVER} 001 alice_ :Welcome, alice_"));
    assert_eq!(
        step.sent,
        sent(&["JOIN #rust", "JOIN #lobby"]),
        "the current room last"
    );
    r.line(&format!(
        "{SERVER} 005 alice_ CHATHISTORY=100 :are supported"
    ));
    let step = r.line(":alice_!~alice@192.0.2.1 JOIN #lobby");
    assert_eq!(step.sent, sent(&["CHATHISTORY AFTER #lobby msgid=L1 100"]));
    // The server forgot that message: asked again by its time.
    let step = r.line(&format!(
        "{SERVER} FAIL CHATHISTORY INVALID_PARAMS msgid=L1 :Unknown message"
    ));
    assert_eq!(
        step.sent,
        sent(&["CHATHISTORY AFTER #lobby timestamp=2026-11-30T10:00:00.000Z 100"])
    );
    let missed = said("carol", "while away", "M1", "2026-11-30T10:05:00.000Z");
    let live = said("bob", "welcome back", "L2", "2026-11-30T10:06:00.000Z");
    r.line(&said_line(&live, None));
    r.line(&format!("{SERVER} BATCH +b3 chathistory #lobby"));
    r.line(&said_line(&seen, Some("b3"))); // the reference itself, by time: shown already
    r.line(&said_line(&missed, Some("b3")));
    let step = r.line(&format!("{SERVER} BATCH -b3"));
    assert_eq!(
        step.events,
        [
            Event::History {
                target: "#lobby".into(),
                page: HistoryPage::Missed,
                messages: vec![missed],
                more: false,
            },
            Event::Message(live),
        ]
    );
    // The lost connection is gone at last: the name is taken back.
    let step = r.line(":alice!~alice@192.0.2.1 QUIT :Ping timeout: 30 seconds");
    assert_eq!(step.sent, sent(&["NICK :alice"]));
}

#[test]
fn a_session_that_never_registered_has_nothing_to_resume() {
    let h = Harness::new();
    assert!(h.session.resume().is_none());
}

#[test]
fn an_older_page_with_nothing_shown_yet_is_the_latest_one() {
    let (mut h, _) = joined_with_history();
    h.line(&format!("{SERVER} BATCH +b1 chathistory #lobby"));
    h.line(&format!("{SERVER} BATCH -b1"));
    // Nothing shown: no message to be "before", so the page before now.
    let step = h.cmd(Command::Older(None));
    assert_eq!(step.sent, sent(&["CHATHISTORY LATEST #lobby * 50"]));
    // Asked again while it is on its way: one page at a time.
    assert_eq!(h.cmd(Command::Older(None)), Step::default());
}
