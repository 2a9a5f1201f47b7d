//! State-machine tests for the chat core: fake clients, no sockets, asserting on drained outputs
//! (the shape of quinn-proto's `tests/util.rs`).

mod common;

use common::Harness;
use parla_room::{Config, ConnId, Output};
use rstest::rstest;

#[test]
fn registration_sends_welcome_isupport_motd_and_joins_the_lobby() {
    let mut h = Harness::new();
    let c = h.connect();
    h.send(c, "NICK alice");
    assert!(h.lines(c).is_empty(), "no reply before USER");
    h.send(c, "USER al 0 * :Alice Liddell");
    let codes: Vec<&str> = h
        .lines(c)
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or(""))
        .collect();
    let expected_start = [
        "001", "002", "003", "004", "005", "005", "251", "252", "254", "255", "265", "266", "375",
        "372", "376", "JOIN", "353", "366",
    ];
    assert_eq!(codes, expected_start);
    let lines = h.lines(c);
    assert_eq!(
        lines[0],
        ":parla.local 001 alice :Welcome to the Parla IRC network, alice!~al@192.0.2.7"
    );
    let isupport = lines[4..6].join(" ");
    for token in [
        "CASEMAPPING=ascii",
        "CHANTYPES=#",
        "NICKLEN=30",
        "CHANNELLEN=50",
        "NETWORK=Parla",
        "PREFIX=(ov)@+",
        "CHANMODES=beI,k,l,imnst",
        "BOT=B",
    ] {
        assert!(isupport.contains(token), "005 lacks {token}: {isupport}");
    }
    assert_eq!(lines[15], ":alice!~al@192.0.2.7 JOIN #lobby");
    assert_eq!(lines[16], ":parla.local 353 alice = #lobby :alice");
}

#[test]
fn no_default_room_gives_plain_irc_semantics() {
    let mut h = Harness::with(Config {
        default_room: None,
        ..Config::default()
    });
    let c = h.user("alice");
    h.send(c, "JOIN #lobby");
    assert!(h.saw(c, "JOIN #lobby"));
    h.clear();
    h.send(c, "PART #lobby");
    assert!(h.saw(c, "PART :#lobby"));
    assert_eq!(
        h.server.room_members("#lobby"),
        None,
        "an emptied room is dropped"
    );
}

#[test]
fn empty_motd_sends_422() {
    let mut h = Harness::with(Config {
        motd: vec![],
        ..Config::default()
    });
    let c = h.connect();
    h.send(c, "NICK a");
    h.send(c, "USER a 0 * :a");
    assert!(h.saw(c, " 422 a :MOTD File is missing"));
    assert!(!h.saw(c, " 375 "));
}

#[rstest]
#[case::missing("NICK", "431 * :No nickname given")]
#[case::empty("NICK :", "431 * :No nickname given")]
#[case::digit_first(
    "NICK 9lives",
    "432 * 9lives :Erroneous nickname: it must start with a letter"
)]
#[case::space("NICK :a b", "432 * a_b :Erroneous nickname")]
#[case::too_long(
    "NICK abcdefghijabcdefghijabcdefghijX",
    "432 * abcdefghijabcdefghijabcdefghijX :Erroneous nickname: it is 31 characters long"
)]
#[case::taken_exact("NICK alice", "433 * alice :Nickname is already in use")]
#[case::taken_other_case("NICK ALICE", "433 * ALICE :Nickname is already in use")]
#[case::taken_mixed_case("NICK aLiCe", "433 * aLiCe :Nickname is already in use")]
fn bad_names_are_refused_and_the_user_can_try_again(#[case] line: &str, #[case] expected: &str) {
    let mut h = Harness::new();
    h.user("alice");
    let c = h.connect();
    h.send(c, line);
    h.send(c, "USER b 0 * :B");
    assert!(h.saw(c, expected), "{line}: {:?}", h.lines(c));
    assert!(!h.saw(c, " 001 "), "not registered after a refused name");
    assert!(!h.saw(c, "CLOSE"), "the connection stays open");
    h.send(c, "NICK bob");
    assert!(
        h.saw(c, ":parla.local 001 bob "),
        "a valid name is then accepted"
    );
}

#[test]
fn two_connections_claiming_one_name_at_one_instant_exactly_one_wins() {
    let mut h = Harness::new();
    let (a, b) = (h.connect(), h.connect());
    h.server.handle_line(h.now, a, b"NICK carol");
    h.server.handle_line(h.now, b, b"NICK Carol");
    h.server.handle_line(h.now, a, b"USER c 0 * :c");
    h.server.handle_line(h.now, b, b"USER c 0 * :c");
    h.drain();
    assert!(h.saw(a, " 001 carol "));
    assert!(h.saw(b, "433 * Carol :Nickname is already in use"));
    assert_eq!(h.server.holder_of("CAROL"), Some(a));
}

#[test]
fn a_name_is_reserved_from_nick_on_even_before_user() {
    let mut h = Harness::new();
    let a = h.connect();
    h.send(a, "NICK dave");
    let b = h.user("erin");
    h.send(b, "NICK dave");
    assert!(h.saw(b, "433 erin dave"));
    // ...and released when that unregistered connection picks another.
    h.send(a, "NICK dave2");
    h.clear();
    h.send(b, "NICK dave");
    assert!(h.saw(b, ":erin!~erin@192.0.2.7 NICK dave"));
}

#[rstest]
#[case("JOIN #x")]
#[case("PRIVMSG #lobby :hi")]
#[case("NAMES #lobby")]
#[case("WHO *")]
#[case("MODE a")]
fn commands_before_registration_get_451(#[case] line: &str) {
    let mut h = Harness::new();
    let c = h.connect();
    h.send(c, line);
    assert_eq!(
        h.lines(c),
        [":parla.local 451 * :You have not registered; send NICK and USER first"]
    );
}

#[rstest]
#[case("FOO bar", "421 alice FOO :Unknown command")]
#[case("JOIN", "461 alice JOIN :Not enough parameters")]
#[case("TOPIC", "461 alice TOPIC :Not enough parameters")]
#[case("PING", "461 alice PING :Not enough parameters")]
#[case("WHOIS", "461 alice WHOIS :Not enough parameters")]
#[case("PRIVMSG", "411 alice :No recipient given (PRIVMSG)")]
#[case("PRIVMSG #lobby", "412 alice :No text to send")]
#[case("PRIVMSG #lobby :", "412 alice :No text to send")]
#[case("PRIVMSG nobody :hi", "401 alice nobody :No such nick/channel")]
#[case("PRIVMSG #nowhere :hi", "403 alice #nowhere :No such channel")]
#[case("PRIVMSG a,b,c,d,e :hi", "407 alice e :Too many recipients")]
#[case("PART #nowhere", "403 alice #nowhere :No such channel")]
#[case("JOIN bad", "403 alice bad :No such channel: room names start with #")]
#[case("USER a b c d", "462 alice :You may not reregister")]
#[case("CAP FOO", "410 alice FOO :Invalid CAP command")]
#[case("MODE bob", "502 alice :Can't view or change mode for other users")]
#[case("MODE alice +x", "501 alice :Unknown MODE flag")]
#[case("MODE #lobby +m", "482 alice #lobby :You're not channel operator")]
fn errors(#[case] line: &str, #[case] expected: &str) {
    let mut h = Harness::new();
    let a = h.user("alice");
    h.user("bob");
    h.send(a, line);
    assert!(h.saw(a, expected), "{line}: {:?}", h.lines(a));
}

#[test]
fn notice_errors_are_never_answered() {
    let mut h = Harness::new();
    let a = h.user("alice");
    for line in [
        "NOTICE",
        "NOTICE #lobby",
        "NOTICE nobody :x",
        "NOTICE #nowhere :x",
    ] {
        h.send(a, line);
    }
    assert!(h.lines(a).is_empty(), "{:?}", h.lines(a));
}

#[test]
fn cannot_send_to_a_room_you_are_not_in() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "JOIN #side");
    h.send(b, "PRIVMSG #side :hi");
    assert!(h.saw(b, "404 bob #side :Cannot send to channel"));
    assert!(!h.saw(a, "PRIVMSG"));
}

#[test]
fn room_messages_reach_every_member_but_the_sender_sharing_one_encoding() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    let c = h.user("carol");
    h.server
        .handle_line(h.now, a, b"PRIVMSG #lobby :hello everyone");
    let mut sends = Vec::new();
    while let Some(out) = h.server.poll_output() {
        match out {
            Output::Send { to, line } => sends.push((to, line)),
            Output::Broadcast { to, line } => {
                sends.extend(to.into_iter().map(|to| (to, line.clone())));
            }
            Output::Close { .. } => {}
        }
    }
    let recipients: Vec<ConnId> = sends.iter().map(|(to, _)| *to).collect();
    assert_eq!(recipients, [b, c]);
    assert_eq!(
        &sends[0].1[..],
        b":alice!~alice@192.0.2.7 PRIVMSG #lobby :hello everyone\r\n"
    );
    assert_eq!(
        sends[0].1.as_ptr(),
        sends[1].1.as_ptr(),
        "encoded once, shared"
    );
}

#[test]
fn direct_messages_and_away() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(b, "AWAY :lunch");
    assert!(h.saw(b, "306 bob :You have been marked as being away"));
    h.send(a, "PRIVMSG BOB :psst");
    assert_eq!(
        h.lines(b).last().unwrap(),
        &":alice!~alice@192.0.2.7 PRIVMSG bob :psst"
    );
    assert!(h.saw(a, "301 alice bob :lunch"));
    h.send(b, "AWAY");
    assert!(h.saw(b, "305 bob :You are no longer marked as being away"));
}

#[test]
fn echo_message_and_server_time_capabilities() {
    let mut h = Harness::new();
    let c = h.connect();
    h.send(c, "CAP LS 302");
    assert_eq!(
        h.lines(c),
        [
            ":parla.local CAP * LS :away-notify draft/chathistory draft/read-marker draft/message-redaction draft/multiline=max-bytes=4096,max-lines=32 batch echo-message extended-monitor invite-notify labeled-response message-tags multi-prefix server-time setname userhost-in-names"
        ]
    );
    h.send(c, "NICK alice");
    h.send(c, "USER a 0 * :A");
    assert!(!h.saw(c, " 001 "), "registration waits for CAP END");
    h.send(c, "CAP REQ :echo-message server-time");
    assert!(h.saw(c, ":parla.local CAP alice ACK :echo-message server-time"));
    h.send(c, "CAP REQ :echo-message bogus");
    assert!(h.saw(c, "CAP alice NAK :echo-message bogus"));
    h.send(c, "CAP LIST");
    assert!(h.saw(c, "CAP alice LIST :echo-message server-time"));
    h.send(c, "CAP END");
    assert!(h.saw(c, " 001 alice "));
    let b = h.user("bob");
    h.clear();
    h.send(c, "PRIVMSG #lobby :hi");
    let mine = h.lines(c);
    assert_eq!(mine.len(), 1, "echoed to the sender: {mine:?}");
    assert!(mine[0].starts_with("@time=2026-11-18T"), "{}", mine[0]);
    assert!(mine[0].ends_with(" :alice!~a@192.0.2.7 PRIVMSG #lobby :hi"));
    assert_eq!(
        h.lines(b),
        [":alice!~a@192.0.2.7 PRIVMSG #lobby :hi"],
        "bob asked for neither"
    );
    // Capabilities changed after joining apply to room messages at once, both ways.
    h.send(b, "CAP REQ server-time");
    h.send(c, "CAP REQ -server-time");
    h.clear();
    h.send(c, "PRIVMSG #lobby :again");
    let bobs = h.lines(b);
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert!(bobs[0].starts_with("@time="), "{}", bobs[0]);
    assert_eq!(h.lines(c), [":alice!~a@192.0.2.7 PRIVMSG #lobby :again"]);
}

#[test]
fn password_protected_server() {
    let cfg = Config {
        password: Some("sesame".into()),
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let bad = h.connect();
    h.send(bad, "PASS wrong");
    h.send(bad, "NICK a");
    h.send(bad, "USER a 0 * :a");
    assert!(h.saw(bad, "464 a :Password incorrect"));
    assert_eq!(h.lines(bad).last().unwrap(), &"CLOSE Bad password");
    assert_eq!(h.server.holder_of("a"), None, "name freed");
    let good = h.connect();
    h.send(good, "PASS sesame");
    h.send(good, "NICK a");
    h.send(good, "USER a 0 * :a");
    assert!(h.saw(good, " 001 a "));
}

#[test]
fn joins_parts_renames_and_topics_are_seen_by_the_room() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    assert!(h.lines(a).is_empty());
    h.send(a, "JOIN #rust,#go");
    h.send(b, "JOIN #Rust");
    assert!(
        h.saw(a, ":bob!~bob@192.0.2.7 JOIN #rust"),
        "room names fold case: {:?}",
        h.lines(a)
    );
    assert!(
        h.saw(b, "353 bob = #rust :@alice bob"),
        "the creator is its operator"
    );
    h.send(a, "TOPIC #rust :Borrow checking");
    assert!(h.saw(b, ":alice!~alice@192.0.2.7 TOPIC #rust :Borrow checking"));
    h.send(b, "TOPIC #rust");
    assert!(h.saw(b, "332 bob #rust :Borrow checking"));
    assert!(h.saw(b, "333 bob #rust alice"));
    h.send(b, "NICK robert");
    assert!(h.saw(a, ":bob!~bob@192.0.2.7 NICK robert"));
    assert!(
        h.saw(b, ":bob!~bob@192.0.2.7 NICK robert"),
        "the renamer sees it too"
    );
    assert_eq!(h.server.holder_of("bob"), None, "old name freed");
    h.send(b, "PART #rust :bye");
    assert!(h.saw(a, ":robert!~bob@192.0.2.7 PART #rust :bye"));
    h.send(a, "PART #lobby");
    assert_eq!(h.server.room_members("#lobby"), Some(vec!["robert"]));
    h.send(a, "PART #lobby");
    assert!(h.saw(a, "442 alice #lobby :You're not on that channel"));
}

#[test]
fn quit_tells_the_room_closes_and_frees_the_name() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "quit :see you");
    assert_eq!(h.lines(b), [":alice!~alice@192.0.2.7 QUIT :Quit: see you"]);
    assert_eq!(
        h.lines(a),
        [
            "ERROR :Closing Link: 192.0.2.7 (Quit: see you)",
            "CLOSE Quit: see you"
        ]
    );
    let newcomer = h.user("ALICE");
    assert!(h.server.nick(newcomer) == Some("ALICE"));
    assert_eq!(h.server.room_members("#lobby"), Some(vec!["bob", "ALICE"]));
}

#[test]
fn a_disconnect_without_quit_frees_the_name_and_tells_the_room() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    h.server
        .handle_disconnect(h.now, a, "Connection reset by peer");
    h.drain();
    assert_eq!(
        h.lines(b),
        [":alice!~alice@192.0.2.7 QUIT :Connection reset by peer"]
    );
    assert!(
        h.lines(a).is_empty(),
        "nothing is sent to a closed connection"
    );
    assert_eq!(h.server.holder_of("alice"), None);
    h.server.handle_disconnect(h.now, a, "again");
    assert!(h.drain().is_empty(), "a second disconnect is ignored");
}

#[test]
fn silent_users_are_pinged_then_timed_out() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    h.advance(59_999);
    assert!(h.lines(a).is_empty());
    h.advance(1);
    assert_eq!(h.lines(a), ["PING :parla.local"]);
    h.send(b, "PONG :parla.local");
    h.advance(29_999);
    assert!(!h.saw(a, "CLOSE"));
    h.advance(1);
    assert!(h.saw(
        a,
        "ERROR :Closing Link: 192.0.2.7 (Ping timeout: 90 seconds)"
    ));
    assert!(h.saw(a, "CLOSE Ping timeout: 90 seconds"));
    assert!(h.saw(b, ":alice!~alice@192.0.2.7 QUIT :Ping timeout: 90 seconds"));
    assert!(!h.saw(b, "CLOSE"), "bob answered and stays");
    assert_eq!(h.server.holder_of("alice"), None);
}

/// Regression (found by the simulation, scenario 05): the first PING after registering waited
/// for the registration deadline whenever the ping interval was shorter than it.
#[test]
fn the_first_ping_comes_after_the_ping_interval_not_the_registration_timeout() {
    let cfg = Config {
        ping_interval_ms: 10_000,
        ping_timeout_ms: 5_000,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let a = h.user("alice");
    h.advance(9_999);
    assert!(!h.saw(a, "PING"));
    h.advance(1);
    assert_eq!(h.lines(a), ["PING :parla.local"]);
    h.advance(5_000);
    assert!(h.saw(a, "CLOSE Ping timeout: 15 seconds"));
    assert!(h.server.poll_timeout().is_none() || h.server.conn_count() == 0);
}

#[test]
fn timers_stay_one_live_entry_per_connection() {
    let cfg = Config {
        ping_interval_ms: 1_000,
        ping_timeout_ms: 500,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let a = h.user("alice");
    // Each quiet second brings exactly one PING (no duplicate timer entries), and answering it
    // keeps the client.
    for round in 1..=100 {
        h.advance(1_000);
        let pings = h.lines(a).iter().filter(|l| l.starts_with("PING")).count();
        assert_eq!(pings, round, "round {round}");
        h.send(a, "PONG :parla.local");
    }
    assert!(!h.saw(a, "CLOSE"), "an answering client stays");
}

#[test]
fn activity_postpones_the_ping() {
    let mut h = Harness::new();
    let a = h.user("alice");
    h.advance(50_000);
    h.send(a, "PRIVMSG #lobby :still here");
    h.advance(59_000);
    assert!(!h.saw(a, "PING"));
    h.advance(1_000);
    assert!(h.saw(a, "PING :parla.local"));
}

#[test]
fn unregistered_connections_time_out() {
    let mut h = Harness::new();
    let c = h.connect();
    h.send(c, "NICK slow");
    h.advance(60_000);
    assert_eq!(
        h.lines(c),
        [
            "ERROR :Closing Link: 192.0.2.7 (Registration timeout: no valid NICK and USER within 60 seconds)",
            "CLOSE Registration timeout: no valid NICK and USER within 60 seconds"
        ]
    );
    assert_eq!(h.server.holder_of("slow"), None);
    assert_eq!(h.server.conn_count(), 0);
}

#[test]
fn shutdown_notifies_and_closes_everyone_then_refuses_newcomers() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let pending = h.connect();
    h.server.handle_shutdown(h.now);
    h.drain();
    assert_eq!(
        h.lines(a),
        [
            ":parla.local NOTICE alice :Server is shutting down. Goodbye!",
            "ERROR :Server shutting down",
            "CLOSE Server shutting down"
        ]
    );
    assert_eq!(h.lines(pending)[1], "ERROR :Server shutting down");
    assert_eq!(h.server.conn_count(), 0);
    let late = h.connect();
    h.drain();
    assert_eq!(
        h.lines(late),
        ["ERROR :Server shutting down", "CLOSE Server shutting down"]
    );
}

#[test]
fn bad_input_gets_errors_and_the_connection_survives() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    h.server.handle_line(h.now, a, b"PRIVMSG #lobby :caf\xe9");
    h.server.handle_line_too_long(h.now, a);
    let long = format!("PRIVMSG #lobby :{}", "x".repeat(600));
    h.server.handle_line(h.now, a, long.as_bytes());
    h.server.handle_line(h.now, a, b"PRIVMSG #lobby :a\rQUIT");
    h.server.handle_line(h.now, a, b"   ");
    h.server.handle_line(h.now, a, b":only-a-source");
    h.drain();
    let lines = h.lines(a);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with(":parla.local FAIL * INVALID_UTF8 :"));
    assert!(lines[1].starts_with(":parla.local 417 alice :Input line was too long"));
    assert!(lines[2].starts_with(":parla.local 417 alice :"));
    assert!(lines[3].starts_with(":parla.local FAIL * INVALID_MESSAGE :"));
    assert!(h.lines(b).is_empty(), "the room saw none of it");
    h.send(a, "PRIVMSG #lobby :fine now");
    assert!(h.saw(b, "PRIVMSG #lobby :fine now"));
}

#[test]
fn a_message_that_would_exceed_512_bytes_once_prefixed_is_refused_not_cut() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    // Fits as sent (PRIVMSG #lobby : + 480 = 497 + CRLF), too long with ":alice!~alice@192.0.2.7 ".
    h.send(a, &format!("PRIVMSG #lobby :{}", "y".repeat(480)));
    assert!(h.saw(a, "417 alice :Message not sent: it is"));
    assert!(h.lines(b).is_empty());
}

#[rstest]
#[case("NAMES :#a b", "366 alice #a_b :End of /NAMES list")]
#[case("WHOIS :x y", "401 alice x_y :No such nick/channel")]
#[case("JOIN :#a b", "403 alice #a_b :No such channel")]
fn user_text_echoed_in_a_middle_parameter_cannot_corrupt_the_line(
    #[case] line: &str,
    #[case] expected: &str,
) {
    let mut h = Harness::new();
    let a = h.user("alice");
    h.send(a, line);
    assert!(h.saw(a, expected), "{line}: {:?}", h.lines(a));
}

#[test]
fn names_replies_are_split_to_fit_512_bytes() {
    let mut h = Harness::new();
    for i in 0..120 {
        h.user(&format!("user_with_a_long_name_{i:03}"));
    }
    let a = h.user("alice");
    h.send(a, "NAMES #lobby");
    let names: Vec<&str> = h
        .lines(a)
        .into_iter()
        .filter(|l| l.contains(" 353 "))
        .collect();
    assert!(names.len() > 5, "{} lines", names.len());
    let listed: usize = names
        .iter()
        .map(|l| l.rsplit(':').next().unwrap().split(' ').count())
        .sum();
    assert_eq!(listed, 121);
}

#[test]
fn queries_who_whois_mode_lusers_ison_userhost_list() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let _b = h.user("bob");
    h.send(a, "WHO #lobby");
    assert!(h.saw(
        a,
        "352 alice #lobby ~bob 192.0.2.7 parla.local bob H :0 bob Example"
    ));
    assert!(h.saw(a, "315 alice #lobby :End of WHO list"));
    h.send(a, "WHOIS bob");
    for code in [
        "311 alice bob ~bob 192.0.2.7 * :bob Example",
        "319 alice bob :#lobby",
        "312 alice bob parla.local",
        "317 alice bob 0 ",
        "318 alice bob :End of /WHOIS list",
    ] {
        assert!(h.saw(a, code), "missing {code}");
    }
    h.send(a, "WHOIS ghost");
    assert!(h.saw(a, "401 alice ghost"));
    h.send(a, "MODE #lobby");
    assert!(h.saw(a, "324 alice #lobby :+n"));
    h.send(a, "MODE #lobby b");
    assert!(h.saw(a, "368 alice #lobby :End of channel ban list"));
    h.send(a, "MODE alice +i");
    assert!(h.saw(a, ":alice!~alice@192.0.2.7 MODE alice +i"));
    h.send(a, "MODE alice");
    assert!(h.saw(a, "221 alice :+i"));
    h.send(a, "LUSERS");
    assert!(h.saw(
        a,
        "251 alice :There are 1 users and 1 invisible on 1 servers"
    ));
    h.send(a, "ISON bob ghost BOB");
    assert!(h.saw(a, "303 alice :bob bob"));
    h.send(a, "USERHOST bob");
    assert!(h.saw(a, "302 alice :bob=+~bob@192.0.2.7"));
    h.send(a, "LIST");
    assert!(h.saw(a, "322 alice #lobby 2 :"));
    h.send(a, "PING :abc");
    assert!(h.saw(a, ":parla.local PONG parla.local :abc"));
}

#[test]
fn the_core_is_deterministic() {
    fn run() -> Vec<(ConnId, String)> {
        let mut h = Harness::new();
        let a = h.user("alice");
        let b = h.user("bob");
        h.send(a, "JOIN #x");
        h.send(b, "JOIN #x");
        h.send(a, "PRIVMSG #x,#lobby :hi");
        h.advance(200_000);
        h.log.clone()
    }
    let first = run();
    assert!(!first.is_empty());
    assert_eq!(first, run());
}

/// The shared room at scale: above `quiet_joins_above` members, the default room stops
/// broadcasting individual JOIN/PART/QUIT lines (O(n²) lines for n joins) and pushes no member
/// list on join; NAMES still lists everyone on request, and messages still reach everyone.
#[test]
fn default_room_goes_quiet_above_the_threshold() {
    let mut h = Harness::with(Config {
        quiet_joins_above: Some(3),
        ..Config::default()
    });
    let a = h.user("a");
    let b = h.user("b");
    let c = h.user("c");
    // The third member joined a room of 3: still at the threshold, so a and b saw it.
    let d_conn = h.connect();
    h.send(d_conn, "NICK d");
    h.send(d_conn, "USER d 0 * :d");
    // The fourth makes 4 > 3: only d sees its own JOIN, and gets an empty NAMES (366 only).
    assert!(h.saw(d_conn, ":d!~d@192.0.2.7 JOIN #lobby"));
    assert!(h.saw(d_conn, " 366 d #lobby :End of /NAMES list"));
    assert!(
        !h.saw(d_conn, " 353 "),
        "no member list pushed: {:?}",
        h.lines(d_conn)
    );
    for x in [a, b, c] {
        assert!(!h.saw(x, "JOIN"), "{:?}", h.lines(x));
    }
    h.clear();
    // NAMES on request lists everyone.
    h.send(d_conn, "NAMES #lobby");
    assert!(
        h.saw(d_conn, " 353 d = #lobby :a b c d"),
        "{:?}",
        h.lines(d_conn)
    );
    // A message reaches everyone but the sender.
    h.clear();
    h.send(d_conn, "PRIVMSG #lobby :hi");
    for x in [a, b, c] {
        assert!(h.saw(x, ":d!~d@192.0.2.7 PRIVMSG #lobby :hi"));
    }
    // Leaving while quiet: nobody else is told.
    h.clear();
    h.send(d_conn, "QUIT :bye");
    for x in [a, b, c] {
        assert!(h.lines(x).is_empty(), "{:?}", h.lines(x));
    }
    // Back at 3 members the room is loud again: a PART is seen by all.
    h.send(c, "PART #lobby");
    assert!(h.saw(a, ":c!~c@192.0.2.7 PART :#lobby") || h.saw(a, ":c!~c@192.0.2.7 PART #lobby"));
    assert!(h.saw(b, "PART"));
    // Another room is never quiet: its members see each other whatever the size.
    h.clear();
    h.send(a, "JOIN #side");
    h.send(b, "JOIN #side");
    assert!(h.saw(a, ":b!~b@192.0.2.7 JOIN #side"));
    assert_eq!(h.server.user_count(), 3);
}

/// Churn: a departed user's timer entry is due only at its next PING, so without compaction the
/// heap would hold every recent session. It stays within about twice the live connections, and
/// the users who stay are still pinged.
#[test]
fn churn_leaves_no_pile_of_stale_timers() {
    let mut h = Harness::new();
    let stay = h.user("stayer");
    for i in 0..5_000 {
        let c = h.user(&format!("u{i}"));
        h.send(c, "QUIT :bye");
        assert!(
            h.server.timer_entries() <= 2 * h.server.conn_count() + 64,
            "{} timer entries for {} connections after {i} sessions",
            h.server.timer_entries(),
            h.server.conn_count()
        );
    }
    h.log.clear();
    h.advance(Config::default().ping_interval_ms + 1);
    assert!(h.saw(stay, "PING"), "{:?}", h.lines(stay));
}

/// A fan-out comes out as `Broadcast`s of consecutive recipients sharing an encoding, so the
/// deliveries keep the members' order even when their capabilities differ.
#[test]
fn broadcasts_keep_member_order_across_encodings() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    let c = h.user("carol");
    h.send(c, "CAP REQ server-time");
    let d = h.user("dave");
    let e = h.user("erin");
    h.drain();
    h.server.handle_line(h.now, a, b"PRIVMSG #lobby :hi");
    let mut shapes = Vec::new();
    while let Some(out) = h.server.poll_output() {
        match out {
            Output::Send { to, line } => shapes.push((vec![to], line[0] == b'@')),
            Output::Broadcast { to, line } => shapes.push((to, line[0] == b'@')),
            Output::Close { .. } => panic!("nobody closes"),
        }
    }
    assert_eq!(
        shapes,
        [(vec![b], false), (vec![c], true), (vec![d, e], false)]
    );
}

/// A target named twice, in any case, gets one copy: `PRIVMSG #lobby,#LOBBY,bob,BOB` is not an
/// amplifier. Duplicates do not count against the target limit either.
#[test]
fn a_target_named_twice_gets_one_copy() {
    let mut h = Harness::new();
    let alice = h.user("alice");
    let bob = h.user("bob");
    h.clear();
    h.send(alice, "PRIVMSG #lobby,#LOBBY,#lobby,bob,BOB :hello");
    let got: Vec<&str> = h
        .lines(bob)
        .into_iter()
        .filter(|l| l.contains("hello"))
        .collect();
    assert_eq!(got.len(), 2, "one room copy and one direct copy: {got:?}");
    assert!(got[0].ends_with("PRIVMSG #lobby :hello"), "{got:?}");
    assert!(got[1].ends_with("PRIVMSG bob :hello"), "{got:?}");
    assert!(
        h.lines(alice).is_empty(),
        "no 407 for five names of two targets"
    );
}

/// A room's budget: messages within it go out and pause nobody; the one that overdraws it
/// is still relayed, and its sender is told to wait as long as the budget takes to refill;
/// a quiet spell refills it. Direct messages don't count.
#[test]
fn a_room_message_that_overdraws_the_rooms_budget_pauses_its_sender() {
    let mut h = Harness::with(Config {
        room_budget: Some(parla_room::server::RoomBudget {
            burst_bytes: 1000,
            bytes_per_second: 500,
        }),
        ..Config::default()
    });
    let alice = h.user("alice");
    let bob = h.user("bob");
    h.clear();
    let text = "x".repeat(300);
    // Each relayed line: ":alice!~alice@192.0.2.7 PRIVMSG #lobby :" (40) + 300 + CR LF = 342.
    for _ in 0..2 {
        h.send(alice, &format!("PRIVMSG #lobby :{text}"));
        assert_eq!(h.server.take_pause(alice), None, "within the burst");
    }
    h.send(alice, &format!("PRIVMSG #lobby :{text}"));
    // 1000 - 3 * 342 = -26 bytes: 26 bytes at 500 bytes/s is 52 ms.
    assert_eq!(h.server.take_pause(alice), Some(h.now.plus(52)));
    assert_eq!(h.server.take_pause(alice), None, "taken once");
    // Someone who was not talking is not held up by the overdrawn room (it still pays in).
    h.send(bob, "PRIVMSG #lobby :hi");
    assert_eq!(
        h.server.take_pause(bob),
        None,
        "bob's first word in a while"
    );
    h.send(bob, "PRIVMSG #lobby :again");
    assert!(
        h.server.take_pause(bob).is_some(),
        "but talking on, bob waits too"
    );
    h.send(alice, &format!("PRIVMSG bob :{text}"));
    assert_eq!(
        h.server.take_pause(alice),
        None,
        "a direct message is not the room's"
    );
    assert_eq!(
        h.lines(bob).iter().filter(|l| l.contains(&text)).count(),
        4,
        "every message was relayed"
    );
    // Three seconds later the burst is back.
    h.advance(3_000);
    for _ in 0..2 {
        h.send(alice, &format!("PRIVMSG #lobby :{text}"));
        assert_eq!(h.server.take_pause(alice), None);
    }
}

/// Renames and topic changes reach everyone who shares a room, so each user gets a few per
/// window: one more is refused (`438`, `FAIL TOPIC RATE_LIMITED`) with the wait, and nobody
/// else sees it; once the oldest is a window old, one more goes through.
#[test]
fn renames_and_topic_changes_are_limited_per_window() {
    let window = parla_room::server::Window {
        count: 2,
        ms: 10_000,
    };
    let mut h = Harness::with(Config {
        nick_changes: Some(window),
        topic_changes: Some(window),
        ..Config::default()
    });
    let alice = h.user("alice");
    let bob = h.user("bob");
    h.clear();
    h.send(alice, "NICK al");
    h.advance(1_000);
    h.send(alice, "NICK ali");
    h.advance(1_000);
    h.send(alice, "NICK alic");
    assert_eq!(
        h.lines(alice).last().copied(),
        Some(
            ":parla.local 438 ali alic :Nick change too fast: at most 2 per 10 seconds; wait 8 seconds"
        )
    );
    assert!(!h.saw(bob, "NICK alic"), "{:?}", h.lines(bob));
    h.advance(8_000);
    h.send(alice, "NICK alic");
    assert!(
        h.saw(bob, ":ali!~alice@192.0.2.7 NICK alic"),
        "{:?}",
        h.lines(bob)
    );
    // Registration's NICK does not count, nor does a refused or unchanged one.
    h.clear();
    for n in 1..=2 {
        h.send(bob, &format!("TOPIC #lobby :topic {n}"));
    }
    h.send(bob, "TOPIC #lobby :topic 3");
    assert_eq!(
        h.lines(bob).last().copied(),
        Some(
            ":parla.local FAIL TOPIC RATE_LIMITED #lobby :Topic changed too often: at most 2 per 10 seconds; wait 10 seconds"
        )
    );
    assert!(!h.saw(alice, "topic 3"));
    h.send(bob, "TOPIC #lobby");
    assert!(
        h.saw(bob, ":parla.local 332 bob #lobby :topic 2"),
        "asking is free: {:?}",
        h.lines(bob)
    );
}

// Moderation: room operators, modes, KICK, INVITE (issue 13).

/// alice makes `#m` (and is its operator); bob joins it; the log is cleared.
fn moderated_room() -> (Harness, ConnId, ConnId) {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "JOIN #m");
    h.send(b, "JOIN #m");
    h.log.clear();
    (h, a, b)
}

#[test]
fn the_creator_is_operator_and_only_operators_change_modes() {
    let (mut h, a, b) = moderated_room();
    h.send(b, "MODE #m +m");
    assert!(h.saw(b, "482 bob #m :You're not channel operator"));
    h.send(a, "MODE #m");
    assert!(h.saw(a, "324 alice #m :+nt"), "{:?}", h.lines(a));
    assert!(h.saw(a, "329 alice #m "));
    h.send(a, "MODE #m +m");
    assert!(h.saw(b, ":alice!~alice@192.0.2.7 MODE #m +m"));
    h.send(b, "PRIVMSG #m :hello?");
    assert!(h.saw(b, "404 bob #m :Cannot send to channel (+m)"));
    assert!(!h.saw(a, "hello?"));
    h.send(a, "MODE #m +v bob");
    assert!(h.saw(b, ":alice!~alice@192.0.2.7 MODE #m +v bob"));
    h.send(b, "PRIVMSG #m :hello!");
    assert!(h.saw(a, ":bob!~bob@192.0.2.7 PRIVMSG #m :hello!"));
    h.send(a, "MODE #m +o bob");
    h.send(b, "NAMES #m");
    assert!(h.saw(b, "353 bob = #m :@alice @bob"), "{:?}", h.lines(b));
    h.send(a, "MODE #m +x");
    assert!(h.saw(a, "472 alice x :is an unknown mode char to me"));
    h.send(a, "MODE #m +o nobody");
    assert!(h.saw(a, "401 alice nobody "));
}

#[test]
fn a_key_an_invitation_a_limit_and_a_ban_each_keep_people_out() {
    let (mut h, a, b) = moderated_room();
    let c = h.user("carol");
    h.send(a, "MODE #m +k sesame");
    assert!(h.saw(b, "MODE #m +k sesame"));
    h.send(c, "JOIN #m");
    assert!(h.saw(c, "475 carol #m :Cannot join channel (+k)"));
    h.send(c, "JOIN #m wrong");
    assert!(!h.saw(c, "JOIN #m\u{0}"));
    h.send(c, "JOIN #m sesame");
    assert!(h.saw(a, ":carol!~carol@192.0.2.7 JOIN #m"));
    h.send(c, "PART #m");
    h.send(a, "MODE #m -k *");
    h.send(a, "MODE #m +i");
    h.send(c, "JOIN #m");
    assert!(h.saw(c, "473 carol #m :Cannot join channel (+i)"));
    h.send(b, "INVITE carol #m");
    assert!(
        h.saw(b, "482 bob #m :You're not channel operator"),
        "only operators invite to +i"
    );
    h.send(a, "INVITE carol #m");
    assert!(h.saw(a, "341 alice carol :#m"));
    assert!(h.saw(c, ":alice!~alice@192.0.2.7 INVITE carol :#m"));
    h.log.clear();
    h.send(c, "JOIN #m");
    assert!(
        h.saw(a, ":carol!~carol@192.0.2.7 JOIN #m"),
        "{:?}",
        h.lines(c)
    );
    h.send(c, "PART #m");
    h.log.clear();
    h.send(c, "JOIN #m");
    assert!(h.saw(c, " 473 "), "an invitation is used up by joining");
    h.send(a, "MODE #m -i+l 2");
    assert!(h.saw(b, "MODE #m -i+l 2"), "{:?}", h.lines(b));
    h.send(c, "JOIN #m");
    assert!(h.saw(c, "471 carol #m :Cannot join channel (+l)"));
    h.send(a, "MODE #m -l+b carol");
    assert!(h.saw(b, "MODE #m -l+b carol!*@*"), "{:?}", h.lines(b));
    h.send(c, "JOIN #m");
    assert!(h.saw(c, "474 carol #m :Cannot join channel (+b)"));
    h.send(b, "MODE #m b");
    assert!(h.saw(b, "367 bob #m carol!*@* alice "));
    assert!(h.saw(b, "368 bob #m :End of channel ban list"));
    h.send(a, "MODE #m +b bob");
    h.send(b, "PRIVMSG #m :still here?");
    assert!(h.saw(b, "404 bob #m :Cannot send to channel (+b)"));
}

#[test]
fn invalid_mode_parameters_are_refused_with_696() {
    let (mut h, a, _) = moderated_room();
    h.send(a, "MODE #m +k :two words");
    assert!(
        h.saw(a, "696 alice #m k * :Invalid key"),
        "{:?}",
        h.lines(a)
    );
    h.send(a, "MODE #m +l lots");
    assert!(h.saw(a, "696 alice #m l lots :Invalid limit"));
    h.send(a, "MODE #m");
    assert!(h.saw(a, "324 alice #m :+nt"));
}

#[test]
fn an_operator_kicks_and_everyone_sees_it() {
    let (mut h, a, b) = moderated_room();
    h.send(b, "KICK #m alice");
    assert!(h.saw(b, "482 bob #m :You're not channel operator"));
    h.send(a, "KICK #m bob :be nice");
    for c in [a, b] {
        assert!(h.saw(c, ":alice!~alice@192.0.2.7 KICK #m bob :be nice"));
    }
    h.send(b, "PRIVMSG #m :hey");
    assert!(h.saw(b, "404 bob #m "), "bob is out");
    h.send(a, "KICK #m bob");
    assert!(h.saw(a, "441 alice bob #m :They aren't on that channel"));
    h.send(a, "KICK #m nobody");
    assert!(h.saw(a, "401 alice nobody "));
    h.send(a, "KICK #m");
    assert!(h.saw(a, "461 alice KICK "));
}

#[test]
fn the_topic_is_for_operators_unless_the_room_is_minus_t() {
    let (mut h, a, b) = moderated_room();
    h.send(b, "TOPIC #m :mine now");
    assert!(h.saw(b, "482 bob #m :You're not channel operator"));
    h.send(a, "MODE #m -t");
    h.send(b, "TOPIC #m :mine now");
    assert!(h.saw(a, ":bob!~bob@192.0.2.7 TOPIC #m :mine now"));
}

#[test]
fn the_default_room_has_no_operator_and_an_open_topic() {
    let mut h = Harness::with(Config {
        default_room: Some("#lobby".into()),
        ..Config::default()
    });
    let a = h.user("alice");
    h.send(a, "NAMES #lobby");
    assert!(h.saw(a, "353 alice = #lobby :alice"), "{:?}", h.lines(a));
    h.send(a, "MODE #lobby");
    assert!(h.saw(a, "324 alice #lobby :+n"));
    h.send(a, "TOPIC #lobby :welcome");
    assert!(h.saw(a, "TOPIC #lobby :welcome"));
}

#[test]
fn member_lists_show_every_prefix_with_multi_prefix_and_hosts_with_userhost_in_names() {
    let (mut h, a, b) = moderated_room();
    h.send(a, "MODE #m +v alice");
    h.send(b, "NAMES #m");
    assert!(h.saw(b, "353 bob = #m :@alice bob"), "{:?}", h.lines(b));
    h.send(b, "CAP REQ :multi-prefix userhost-in-names");
    assert!(h.saw(b, "CAP bob ACK :multi-prefix userhost-in-names"));
    h.send(b, "NAMES #m");
    assert!(
        h.saw(
            b,
            "353 bob = #m :@+alice!~alice@192.0.2.7 bob!~bob@192.0.2.7"
        ),
        "{:?}",
        h.lines(b)
    );
    h.send(b, "WHO #m");
    assert!(
        h.saw(b, "352 bob #m ~alice 192.0.2.7 parla.local alice H@+ "),
        "{:?}",
        h.lines(b)
    );
}

#[test]
fn a_secret_room_is_hidden_from_outsiders() {
    let (mut h, a, _) = moderated_room();
    let c = h.user("carol");
    h.send(a, "MODE #m +s");
    h.send(c, "LIST");
    assert!(!h.saw(c, "322 carol #m"), "{:?}", h.lines(c));
    h.send(c, "NAMES #m");
    assert!(!h.saw(c, "353"));
    h.log.clear();
    h.send(c, "WHOIS alice");
    assert!(h.saw(c, "319 carol alice :#lobby"), "{:?}", h.lines(c));
    assert!(!h.saw(c, "#m"));
    h.send(a, "NAMES #m");
    assert!(h.saw(a, "353 alice @ #m :"));
}

// Server operators (issue 13).

/// A test verifier: the stored form of password `p` is `h:p`.
fn test_verify(hash: &str, password: &str) -> bool {
    hash.strip_prefix("h:") == Some(password)
}

fn with_operator() -> Harness {
    Harness::with(Config {
        operators: vec![parla_room::server::Operator {
            name: "root".into(),
            password_hash: "h:secret".into(),
        }],
        verify_password: Some(test_verify),
        ..Config::default()
    })
}

#[test]
fn oper_with_the_right_password_makes_an_operator() {
    let mut h = with_operator();
    let a = h.user("alice");
    h.send(a, "OPER root wrong");
    assert!(h.saw(a, "464 alice :Password incorrect"));
    h.send(a, "OPER nobody secret");
    assert!(h.saw(a, "491 alice :No such operator"));
    h.send(a, "OPER root");
    assert!(h.saw(a, "461 alice OPER "));
    h.send(a, "OPER root secret");
    assert!(h.saw(a, "381 alice :You are now an IRC operator"));
    assert!(h.saw(a, ":alice!~alice@192.0.2.7 MODE alice +o"));
    h.send(a, "MODE alice");
    assert!(h.saw(a, "221 alice :+o"), "{:?}", h.lines(a));
    let b = h.user("bob");
    h.send(b, "WHOIS alice");
    assert!(h.saw(b, "313 bob alice :is an IRC operator"));
    h.send(b, "WHO alice");
    assert!(h.saw(b, " alice H* :0 "), "{:?}", h.lines(b));
    h.send(a, "MODE alice -o");
    assert!(h.saw(a, "MODE alice -o"));
    h.send(a, "KILL bob");
    assert!(h.saw(a, "481 alice :Permission Denied"));
}

#[test]
fn password_guessing_is_bounded_server_wide() {
    let mut h = with_operator();
    let a = h.user("alice");
    for _ in 0..5 {
        h.send(a, "OPER root guess");
    }
    h.log.clear();
    h.send(a, "OPER root secret");
    assert!(
        h.saw(a, "FAIL OPER RATE_LIMITED :Too many OPER attempts"),
        "{:?}",
        h.lines(a)
    );
    h.advance(10_000);
    h.send(a, "OPER root secret");
    assert!(h.saw(a, " 381 "));
}

#[test]
fn an_operator_kills_wallops_and_moderates_any_room() {
    let mut h = with_operator();
    let a = h.user("alice");
    let b = h.user("bob");
    let c = h.user("carol");
    h.send(b, "JOIN #b");
    h.send(c, "MODE carol +w");
    assert!(h.saw(c, "MODE carol +w"));
    h.send(b, "KILL carol :no");
    assert!(h.saw(b, "481 bob "));
    h.send(a, "OPER root secret");
    h.send(a, "MODE #b +m");
    assert!(
        h.saw(b, ":alice!~alice@192.0.2.7 MODE #b +m"),
        "an operator moderates from outside"
    );
    // The default room has no operator of its own: a +t there leaves its topic to them.
    h.send(a, "JOIN #lobby");
    h.send(a, "MODE #lobby +t");
    h.send(b, "TOPIC #lobby :bob's topic");
    assert!(h.saw(b, "482 bob #lobby "));
    h.send(a, "TOPIC #lobby :Maintenance at noon");
    assert!(h.saw(
        b,
        ":alice!~alice@192.0.2.7 TOPIC #lobby :Maintenance at noon"
    ));
    h.send(a, "WALLOPS :maintenance at noon");
    for who in [a, c] {
        assert!(h.saw(who, ":alice!~alice@192.0.2.7 WALLOPS :maintenance at noon"));
    }
    assert!(!h.saw(b, "WALLOPS"), "bob has no +w");
    h.send(a, "KILL carol :spamming");
    assert!(
        h.saw(
            c,
            "ERROR :Closing Link: 192.0.2.7 (Killed (root (spamming)))"
        ),
        "{:?}",
        h.lines(c)
    );
    assert!(h.saw(b, ":carol!~carol@192.0.2.7 QUIT :Killed (root (spamming))"));
    h.send(b, "WHOIS carol");
    assert!(h.saw(b, "401 bob carol "));
}

#[test]
fn whowas_remembers_departed_users_and_old_names_newest_first_within_its_bound() {
    let mut h = Harness::with(Config {
        whowas_history: 3,
        ..Config::default()
    });
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(b, "NICK robert");
    h.send(b, "QUIT :bye");
    h.send(a, "WHOWAS bob");
    assert!(
        h.saw(a, "314 alice bob ~bob 192.0.2.7 * :bob Example"),
        "{:?}",
        h.lines(a)
    );
    assert!(h.saw(a, "312 alice bob parla.local :left at "));
    assert!(h.saw(a, "369 alice bob :End of WHOWAS"));
    h.send(a, "WHOWAS robert 1");
    assert!(h.saw(a, "314 alice robert ~bob "));
    h.send(a, "WHOWAS nobody");
    assert!(h.saw(a, "406 alice nobody :There was no such nickname"));
    assert!(h.saw(a, "369 alice nobody "));
    h.send(a, "WHOWAS");
    assert!(h.saw(a, "431 alice :No nickname given"));
    for n in ["c1", "c2", "c3"] {
        let c = h.user(n);
        h.send(c, "QUIT");
    }
    h.log.clear();
    h.send(a, "WHOWAS robert");
    assert!(
        h.saw(a, "406 alice robert "),
        "the oldest is forgotten past the bound"
    );
}

#[test]
fn who_of_an_exact_nick_shows_an_invisible_user_but_a_mask_does_not() {
    let mut h = Harness::with(Config {
        default_room: None,
        ..Config::default()
    });
    let a = h.user("evan");
    let b = h.user("shiv");
    h.send(a, "MODE evan +i");
    h.send(b, "WHO eva*");
    assert!(!h.saw(b, " 352 "), "{:?}", h.lines(b));
    h.send(b, "WHO evan");
    assert!(h.saw(b, "352 shiv * ~evan "), "{:?}", h.lines(b));
}

#[test]
fn help_covers_a_command_and_says_when_a_subject_is_unknown() {
    let mut h = Harness::new();
    let a = h.user("alice");
    h.send(a, "HELP kick");
    assert!(
        h.saw(a, "704 alice KICK :KICK <#room> <nick>"),
        "{:?}",
        h.lines(a)
    );
    assert!(h.saw(a, "706 alice KICK :End of /HELP"));
    h.send(a, "HELPOP nonsense");
    assert!(h.saw(a, "524 alice nonsense :No help for that subject"));
    h.send(a, "HELP");
    assert!(h.saw(a, "705 alice * :AWAY CAP "));
}

#[test]
fn setname_and_away_notify_reach_those_who_asked() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    let c = h.user("carol");
    h.send(b, "CAP REQ :setname away-notify");
    h.send(a, "SETNAME :Alice Liddell");
    assert!(h.saw(a, ":alice!~alice@192.0.2.7 SETNAME :Alice Liddell"));
    assert!(h.saw(b, ":alice!~alice@192.0.2.7 SETNAME :Alice Liddell"));
    assert!(!h.saw(c, "SETNAME"));
    h.send(b, "WHOIS alice");
    assert!(h.saw(b, "311 bob alice ~alice 192.0.2.7 * :Alice Liddell"));
    h.send(a, "AWAY :lunch");
    assert!(h.saw(b, ":alice!~alice@192.0.2.7 AWAY :lunch"));
    h.send(a, "AWAY");
    assert!(
        h.lines(b)
            .iter()
            .any(|l| l.ends_with("alice!~alice@192.0.2.7 AWAY")),
        "{:?}",
        h.lines(b)
    );
    assert!(!h.saw(c, " AWAY"));
    h.send(a, &format!("SETNAME :{}", "x".repeat(200)));
    assert!(h.saw(a, "FAIL SETNAME INVALID_REALNAME"));
}

#[test]
fn a_statusmsg_reaches_a_rooms_operators_only() {
    let (mut h, a, b) = moderated_room();
    let c = h.user("carol");
    h.send(c, "JOIN #m");
    h.send(a, "MODE #m +v bob");
    h.send(c, "PRIVMSG @#m :ops, a question");
    assert!(h.saw(a, ":carol!~carol@192.0.2.7 PRIVMSG @#m :ops, a question"));
    assert!(!h.saw(b, "ops, a question"));
    h.send(c, "PRIVMSG +#m :voiced ones");
    assert!(h.saw(a, "PRIVMSG +#m :voiced ones") && h.saw(b, "PRIVMSG +#m :voiced ones"));
}

#[test]
fn message_tags_carry_a_msgid_and_client_tags_to_those_who_asked() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    let c = h.user("carol");
    h.send(b, "CAP REQ :message-tags");
    h.log.clear();
    h.send(
        a,
        "@+typing=active;+draft/reply=x\\sy;secret=1 PRIVMSG #lobby :hi",
    );
    let got = h
        .lines(b)
        .into_iter()
        .find(|l| l.contains("PRIVMSG"))
        .unwrap()
        .to_owned();
    assert!(got.starts_with("@msgid="), "{got}");
    assert!(
        got.contains(";+typing=active;+draft/reply=x\\sy :alice!"),
        "client tags relayed: {got}"
    );
    assert!(
        !got.contains("secret"),
        "only client-only tags are relayed: {got}"
    );
    assert!(
        h.saw(c, ":alice!~alice@192.0.2.7 PRIVMSG #lobby :hi"),
        "no tags without the cap"
    );
    h.send(a, "@+typing=paused TAGMSG #lobby");
    assert!(
        h.lines(b)
            .iter()
            .any(|l| l.contains("+typing=paused") && l.ends_with("TAGMSG #lobby")),
        "{:?}",
        h.lines(b)
    );
    assert!(
        !h.saw(c, "TAGMSG"),
        "TAGMSG only to those who asked for message-tags"
    );
}

#[test]
fn labeled_responses_are_tagged_batched_or_acknowledged() {
    let mut h = Harness::new();
    let a = h.user("alice");
    h.send(a, "CAP REQ :labeled-response batch echo-message");
    h.log.clear();
    h.send(a, "@label=one PING x");
    assert_eq!(h.lines(a), ["@label=one :parla.local PONG parla.local :x"]);
    h.log.clear();
    h.send(a, "@label=none PONG x");
    assert_eq!(h.lines(a), ["@label=none :parla.local ACK"]);
    h.log.clear();
    h.send(a, "@label=many WHOIS alice");
    let lines = h.lines(a);
    assert!(
        lines[0].starts_with("@label=many :parla.local BATCH +"),
        "{lines:?}"
    );
    let name = lines[0]
        .split('+')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        lines[1..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with(&format!("@batch={name} "))),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!(":parla.local BATCH -{name}")
    );
}

#[test]
fn exceptions_let_people_past_bans_and_invite_only() {
    let (mut h, a, b) = moderated_room();
    let c = h.user("carol");
    h.send(a, "MODE #m +b *!*@192.0.2.7");
    h.send(a, "MODE #m +e carol");
    assert!(h.saw(b, "MODE #m +e carol!*@*"), "{:?}", h.lines(b));
    h.send(c, "JOIN #m");
    assert!(
        h.saw(a, ":carol!~carol@192.0.2.7 JOIN #m"),
        "an exception beats the ban"
    );
    h.send(b, "PRIVMSG #m :muted?");
    assert!(h.saw(b, "404 bob #m :Cannot send to channel (+b)"));
    h.send(c, "PART #m");
    h.send(a, "MODE #m -b+i *!*@192.0.2.7");
    h.send(a, "MODE #m +I carol");
    h.log.clear();
    h.send(c, "JOIN #m");
    assert!(
        h.saw(a, ":carol!~carol@192.0.2.7 JOIN #m"),
        "an invite exception passes +i"
    );
    h.send(b, "MODE #m e");
    assert!(h.saw(b, "348 bob #m carol!*@* alice "));
    assert!(h.saw(b, "349 bob #m :End of channel exception list"));
    h.send(b, "MODE #m I");
    assert!(h.saw(b, "346 bob #m carol!*@* alice "));
    assert!(h.saw(b, "347 bob #m :End of channel invite exception list"));
}

#[test]
fn a_bot_is_marked_in_whois_who_and_its_messages() {
    let mut h = Harness::new();
    let bot = h.user("beep");
    let a = h.user("alice");
    h.send(a, "CAP REQ :message-tags");
    h.send(bot, "MODE beep +B");
    assert!(h.saw(bot, "MODE beep +B"));
    h.send(a, "WHOIS beep");
    assert!(h.saw(a, "335 alice beep :is a bot on Parla"));
    h.send(a, "WHO beep");
    assert!(h.saw(a, " beep HB :0 "), "{:?}", h.lines(a));
    h.send(bot, "PRIVMSG #lobby :boop");
    let got = h
        .lines(a)
        .into_iter()
        .find(|l| l.contains("boop"))
        .unwrap()
        .to_owned();
    assert!(got.contains(";bot ") || got.contains(";bot;"), "{got}");
}

#[test]
fn whox_answers_the_fields_asked_for_in_the_fixed_order_with_the_token() {
    let mut h = Harness::new();
    let a = h.user("alice");
    h.user("bob");
    h.send(a, "WHO bob %rnt,42");
    assert!(
        h.saw(a, "354 alice 42 bob :bob Example"),
        "{:?}",
        h.lines(a)
    );
    h.send(a, "WHO #lobby %cnf");
    assert!(h.saw(a, "354 alice #lobby bob :H"), "{:?}", h.lines(a));
    assert!(h.saw(a, "315 alice #lobby :End of WHO list"));
}

#[test]
fn monitor_tells_when_a_watched_name_comes_and_goes() {
    let mut h = Harness::new();
    let a = h.user("alice");
    h.send(a, "MONITOR + bob,carol");
    assert!(h.saw(a, "731 alice :bob,carol"), "{:?}", h.lines(a));
    let b = h.connect();
    h.send(b, "NICK bob");
    h.send(b, "USER bob 0 * :Bob");
    assert!(
        h.saw(a, "730 alice :bob!~bob@192.0.2.7"),
        "{:?}",
        h.lines(a)
    );
    h.send(b, "NICK robert");
    assert!(h.saw(a, "731 alice :bob"));
    h.send(a, "MONITOR L");
    assert!(
        h.saw(a, "732 alice :bob carol") || h.saw(a, "732 alice :bob,carol"),
        "{:?}",
        h.lines(a)
    );
    h.send(a, "MONITOR - bob");
    h.send(b, "NICK bob");
    h.log.clear();
    h.send(a, "MONITOR S");
    assert_eq!(h.lines(a), [":parla.local 731 alice :carol"]);
    h.send(a, "MONITOR C");
    h.send(a, "MONITOR L");
    assert!(h.saw(a, "733 alice :End of MONITOR list"));
}

#[test]
fn extended_monitor_tells_watchers_of_away_and_setname() {
    let mut h = Harness::with(Config {
        default_room: None,
        ..Config::default()
    });
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "CAP REQ :extended-monitor away-notify setname");
    h.send(a, "MONITOR + bob");
    h.send(b, "AWAY :out");
    assert!(
        h.saw(a, ":bob!~bob@192.0.2.7 AWAY :out"),
        "{:?}",
        h.lines(a)
    );
    h.send(b, "SETNAME :Robert");
    assert!(h.saw(a, ":bob!~bob@192.0.2.7 SETNAME :Robert"));
}

#[test]
fn read_markers_are_kept_never_move_back_and_come_with_a_join() {
    let mut h = Harness::new();
    let a = h.user("alice");
    h.send(a, "CAP REQ :draft/read-marker");
    h.send(a, "MARKREAD #r");
    assert!(h.saw(a, ":parla.local MARKREAD #r *"), "{:?}", h.lines(a));
    h.send(a, "MARKREAD #r timestamp=2026-12-01T10:00:00.000Z");
    h.send(a, "MARKREAD #r timestamp=2026-12-01T09:00:00.000Z");
    h.log.clear();
    h.send(a, "JOIN #r");
    assert!(
        h.saw(a, "MARKREAD #r timestamp=2026-12-01T10:00:00.000Z"),
        "{:?}",
        h.lines(a)
    );
    h.send(a, "MARKREAD #r timestamp=yesterday");
    assert!(h.saw(a, "FAIL MARKREAD INVALID_PARAMS #r"));
    h.send(a, "MARKREAD");
    assert!(h.saw(a, "FAIL MARKREAD NEED_MORE_PARAMS"));
}

/// The msgid of the last line `c` got that contains `needle`.
fn msgid_in(h: &Harness, c: ConnId, needle: &str) -> String {
    let line = h
        .lines(c)
        .into_iter()
        .rev()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in {:?}", h.lines(c)));
    let tags = line
        .strip_prefix('@')
        .expect("tagged")
        .split(' ')
        .next()
        .unwrap();
    tags.split(';')
        .find_map(|t| t.strip_prefix("msgid="))
        .expect("a msgid")
        .to_owned()
}

#[test]
fn authors_and_room_operators_redact_recent_messages() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    let c = h.user("carol");
    for who in [a, b, c] {
        h.send(who, "CAP REQ :message-tags draft/message-redaction");
        h.send(who, "JOIN #den");
    }
    // carol has no redaction: she is told nothing of them.
    h.send(c, "CAP REQ :-draft/message-redaction");
    h.clear();
    h.send(b, "PRIVMSG #den :a mistake");
    let id = msgid_in(&h, a, "PRIVMSG #den :a mistake");
    // Not alice's message, but she made #den: its operator may.
    h.send(a, &format!("REDACT #den {id} :off topic"));
    let redact = format!(":alice!~alice@192.0.2.7 REDACT #den {id} :off topic");
    assert!(h.saw(a, &redact) && h.saw(b, &redact), "{:?}", h.lines(b));
    assert!(!h.saw(c, "REDACT"));
    // Once redacted it is gone.
    h.clear();
    h.send(a, &format!("REDACT #den {id}"));
    assert!(h.saw(
        a,
        &format!("FAIL REDACT UNKNOWN_MSGID #den {id} :No such message")
    ));
    // An author may redact their own; nobody else may.
    h.send(a, "PRIVMSG #den :mine");
    let mine = msgid_in(&h, b, "PRIVMSG #den :mine");
    h.send(b, &format!("REDACT #den {mine}"));
    assert!(h.saw(
        b,
        &format!("FAIL REDACT REDACT_FORBIDDEN #den {mine} :You may redact")
    ));
    h.send(c, "PRIVMSG #den :carol's");
    let hers = msgid_in(&h, b, "PRIVMSG #den :carol's");
    h.clear();
    h.send(c, &format!("REDACT #den {hers}"));
    assert!(h.saw(b, &format!(":carol!~carol@192.0.2.7 REDACT #den :{hers}")));
    // Only in rooms one is in, and only with both parameters.
    h.send(b, "REDACT #nowhere abc");
    assert!(h.saw(
        b,
        "FAIL REDACT INVALID_TARGET #nowhere :You are not in that room"
    ));
    h.send(b, "REDACT #den");
    assert!(h.saw(b, "461 bob REDACT :Not enough parameters"));
}

#[test]
fn direct_messages_are_redacted_by_their_author_only_and_only_recent_ones() {
    let mut h = Harness::with(Config {
        redactable: 2,
        ..Config::default()
    });
    let a = h.user("alice");
    let b = h.user("bob");
    for who in [a, b] {
        h.send(who, "CAP REQ :message-tags draft/message-redaction");
    }
    h.send(a, "PRIVMSG bob :first");
    let first = msgid_in(&h, b, "PRIVMSG bob :first");
    h.send(a, "PRIVMSG bob :second");
    let second = msgid_in(&h, b, "PRIVMSG bob :second");
    h.send(b, &format!("REDACT alice {second}"));
    assert!(h.saw(b, "FAIL REDACT REDACT_FORBIDDEN alice"));
    h.clear();
    h.send(a, &format!("REDACT bob {second} :typo"));
    let redact = format!(":alice!~alice@192.0.2.7 REDACT bob {second} :typo");
    assert!(h.saw(a, &redact) && h.saw(b, &redact));
    // Two are remembered: a third pushes the first out.
    h.send(a, "PRIVMSG bob :third");
    h.send(a, "PRIVMSG bob :fourth");
    h.send(a, &format!("REDACT bob {first}"));
    assert!(h.saw(a, &format!("FAIL REDACT UNKNOWN_MSGID bob {first}")));
    h.send(a, "REDACT nobody x");
    assert!(h.saw(a, "FAIL REDACT INVALID_TARGET nobody :No such nick"));
}

#[test]
fn a_multiline_message_is_one_batch_for_those_who_take_it_and_lines_for_the_others() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    let c = h.user("carol");
    h.send(
        a,
        "CAP REQ :batch draft/multiline message-tags echo-message labeled-response",
    );
    h.send(b, "CAP REQ :batch draft/multiline message-tags");
    h.send(c, "CAP REQ :message-tags");
    for who in [a, b, c] {
        h.send(who, "JOIN #den");
    }
    h.clear();
    h.send(a, "@label=l1;+draft/reply=x BATCH +r1 draft/multiline #den");
    h.send(a, "@batch=r1 PRIVMSG #den :first line");
    h.send(a, "@batch=r1 PRIVMSG #den :");
    h.send(
        a,
        "@batch=r1;draft/multiline-concat PRIVMSG #den :, continued",
    );
    assert!(h.lines(b).is_empty(), "nothing goes out before the end");
    h.send(a, "BATCH -r1");
    let got = h.lines(b);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got[0].contains("BATCH +") && got[0].contains(" draft/multiline #den"));
    assert!(got[0].contains("msgid=") && got[0].contains("+draft/reply=x"));
    assert!(got[1].contains("batch=") && got[1].ends_with("PRIVMSG #den :first line"));
    assert!(got[3].contains("draft/multiline-concat") && got[3].ends_with(":, continued"));
    assert!(got[4].contains("BATCH -"));
    // The sender's echo carries its label on the batch.
    assert!(h.lines(a)[0].contains("label=l1"), "{:?}", h.lines(a));
    // Without the capability: the non-blank lines, the id on the first only.
    let fallback = h.lines(c);
    assert_eq!(fallback.len(), 2, "{fallback:?}");
    assert!(fallback[0].contains("msgid=") && fallback[0].ends_with("PRIVMSG #den :first line"));
    assert!(!fallback[1].contains("msgid=") && fallback[1].ends_with("PRIVMSG #den :, continued"));
}

#[test]
fn a_multiline_message_that_breaks_a_rule_is_refused_whole() {
    let mut h = Harness::with(Config {
        multiline_max_lines: 2,
        multiline_max_bytes: 10,
        ..Config::default()
    });
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "CAP REQ :batch draft/multiline");
    h.send(a, "JOIN #den");
    h.send(b, "JOIN #den");
    h.clear();
    h.send(a, "BATCH +r draft/multiline #den");
    for _ in 0..3 {
        h.send(a, "@batch=r PRIVMSG #den :hi");
    }
    h.send(a, "BATCH -r");
    assert!(h.saw(a, "FAIL BATCH MULTILINE_MAX_LINES 2 :"));
    assert!(!h.saw(b, "PRIVMSG"), "nothing of it is sent");
    h.send(a, "BATCH +s draft/multiline #den");
    h.send(a, "@batch=s PRIVMSG #den :twelve bytes");
    assert!(h.saw(a, "FAIL BATCH MULTILINE_MAX_BYTES 10 :"));
    h.send(a, "BATCH -s");
    h.send(a, "@batch=zz PRIVMSG #den :hi");
    assert!(h.saw(a, "FAIL BATCH MULTILINE_INVALID :That batch is not open"));
    // Without the capability, no batch is taken.
    h.send(b, "BATCH +t draft/multiline #den");
    assert!(h.saw(b, "FAIL BATCH MULTILINE_INVALID :Negotiate draft/multiline"));
    assert!(!h.saw(b, "PRIVMSG"));
}
