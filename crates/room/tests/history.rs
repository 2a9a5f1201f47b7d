//! History in the core: `CHATHISTORY` (every subcommand, its refusals), the default room's
//! replay on join, who may read a conversation, and what outlives a restart (the store is
//! shared, as the simulation shares it).

mod common;

use std::sync::{Arc, Mutex};

use common::{Harness, T0};
use parla_room::history::{MemoryHistory, Retention};
use parla_room::{Config, ConnId, Millis, Server};

const ALL: &str = "message-tags server-time echo-message batch labeled-response draft/chathistory";

/// The texts of the PRIVMSGs in `c`'s newest `chathistory` batch, checking its frame.
fn batch_texts(h: &Harness, c: ConnId) -> Vec<String> {
    let lines = h.lines(c);
    let start = (lines.iter())
        .rposition(|l| l.contains(" BATCH +") && l.contains(" chathistory "))
        .unwrap_or_else(|| panic!("no chathistory batch in {lines:#?}"));
    let name = lines[start].split(" BATCH +").nth(1).unwrap();
    let name = name.split(' ').next().unwrap();
    let end = format!("BATCH -{name}");
    let mut texts = Vec::new();
    for l in &lines[start + 1..] {
        if l.ends_with(&end) {
            return texts;
        }
        assert!(
            l.starts_with(&format!("@batch={name};")) || l.starts_with(&format!("@batch={name} ")),
            "inside the batch: {l}"
        );
        texts.push(l.split(" :").last().unwrap().to_owned());
    }
    panic!("batch {name} never ended: {lines:#?}");
}

/// The msgid and time tags of the echo of `text` in `c`'s log.
fn ids_of(h: &Harness, c: ConnId, text: &str) -> (String, String) {
    let line = (h.lines(c).into_iter())
        .find(|l| l.ends_with(&format!(" :{text}")) && !l.contains("batch="))
        .unwrap_or_else(|| panic!("{text} not echoed"));
    let tag = |k: &str| {
        let tags = line[1..].split(' ').next().unwrap();
        let v = tags
            .split(';')
            .find_map(|t| t.strip_prefix(&format!("{k}=")));
        v.unwrap().to_owned()
    };
    (tag("msgid"), tag("time"))
}

/// alice, with every history capability, says "m0" … "m9" in #den, 10 ms apart.
fn ten_messages() -> (Harness, ConnId, Vec<(String, String)>) {
    let mut h = Harness::new();
    let a = h.user_with("alice", "192.0.2.7", ALL);
    h.send(a, "JOIN #den");
    let mut ids = Vec::new();
    for i in 0..10 {
        h.advance(10);
        h.send(a, &format!("PRIVMSG #den :m{i}"));
        ids.push(ids_of(&h, a, &format!("m{i}")));
    }
    (h, a, ids)
}

fn m(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

#[test]
fn every_subcommand_selects_by_id_and_by_time() {
    let (mut h, a, ids) = ten_messages();
    let (id, time) = (|i: usize| ids[i].0.clone(), |i: usize| ids[i].1.clone());
    let cases = [
        ("LATEST #den * 20".to_owned(), m(0..10)),
        ("LATEST #den * 3".to_owned(), m(7..10)),
        (format!("LATEST #den msgid={} 20", id(4)), m(5..10)),
        (format!("LATEST #den timestamp={} 20", time(4)), m(5..10)),
        (format!("BEFORE #den msgid={} 20", id(6)), m(0..6)),
        (format!("BEFORE #den timestamp={} 2", time(6)), m(4..6)),
        (format!("AFTER #den msgid={} 20", id(3)), m(4..10)),
        (format!("AFTER #den timestamp={} 3", time(3)), m(4..7)),
        (
            format!("BETWEEN #den msgid={} msgid={} 20", id(0), id(9)),
            m(1..9),
        ),
        (
            format!("BETWEEN #den msgid={} msgid={} 3", id(0), id(9)),
            m(1..4),
        ),
        (
            format!("BETWEEN #den msgid={} msgid={} 3", id(9), id(0)),
            m(6..9),
        ),
        (
            format!("BETWEEN #den timestamp={} timestamp={} 3", time(9), time(0)),
            m(6..9),
        ),
        (format!("AROUND #den msgid={} 1", id(7)), m(7..8)),
        (format!("AROUND #den msgid={} 3", id(7)), m(6..9)),
        (format!("AROUND #den timestamp={} 3", time(7)), m(6..9)),
        (format!("after #DEN msgid={} 1", id(8)), m(9..10)),
    ];
    for (query, want) in cases {
        h.clear();
        h.send(a, &format!("CHATHISTORY {query}"));
        assert_eq!(batch_texts(&h, a), want, "CHATHISTORY {query}");
    }
}

#[test]
fn replayed_messages_keep_their_ids_times_tags_and_sources() {
    let (mut h, a, ids) = ten_messages();
    h.clear();
    h.send(a, "CHATHISTORY LATEST #den * 1");
    let line = h.lines(a)[1].to_owned();
    let (msgid, time) = &ids[9];
    assert!(line.contains(&format!("msgid={msgid}")), "{line}");
    assert!(line.contains(&format!("time={time}")), "{line}");
    assert!(
        line.ends_with(":alice!~alice@192.0.2.7 PRIVMSG #den :m9"),
        "{line}"
    );
    assert!(h.lines(a)[0].starts_with(":parla.local BATCH +"));
    assert!(h.lines(a)[0].ends_with(" chathistory #den"));
}

#[test]
fn a_labelled_request_labels_its_batch() {
    let (mut h, a, _) = ten_messages();
    h.clear();
    h.send(a, "@label=q1 CHATHISTORY LATEST #den * 2");
    let lines = h.lines(a);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with("@label=q1 :parla.local BATCH +"),
        "{lines:#?}"
    );
    assert!(lines[1..].iter().all(|l| !l.contains("label=")));
    assert_eq!(batch_texts(&h, a), m(8..10));
}

#[test]
fn refusals_say_what_was_wrong() {
    let (mut h, a, _) = ten_messages();
    let b = h.user_with("bob", "192.0.2.8", ALL);
    let cases = [
        (a, "CHATHISTORY", "FAIL CHATHISTORY NEED_MORE_PARAMS *"),
        (
            a,
            "CHATHISTORY LATEST #den *",
            "FAIL CHATHISTORY NEED_MORE_PARAMS LATEST",
        ),
        (
            a,
            "CHATHISTORY SIDEWAYS #den * 5",
            "FAIL CHATHISTORY UNKNOWN_COMMAND SIDEWAYS",
        ),
        (
            a,
            "CHATHISTORY LATEST #den * 0",
            "FAIL CHATHISTORY INVALID_PARAMS LATEST",
        ),
        (
            a,
            "CHATHISTORY LATEST #den * lots",
            "FAIL CHATHISTORY INVALID_PARAMS LATEST",
        ),
        (
            a,
            "CHATHISTORY BEFORE #den * 5",
            "FAIL CHATHISTORY INVALID_PARAMS BEFORE",
        ),
        (
            a,
            "CHATHISTORY AFTER #den msgid=nope 5",
            "FAIL CHATHISTORY INVALID_PARAMS AFTER msgid=nope",
        ),
        (
            a,
            "CHATHISTORY AFTER #den timestamp=yesterday 5",
            "FAIL CHATHISTORY INVALID_PARAMS AFTER",
        ),
        (
            b,
            "CHATHISTORY LATEST #den * 5",
            "FAIL CHATHISTORY INVALID_TARGET LATEST #den",
        ),
        (
            b,
            "CHATHISTORY LATEST #nowhere * 5",
            "FAIL CHATHISTORY INVALID_TARGET LATEST #nowhere",
        ),
        (
            b,
            "CHATHISTORY LATEST bad,nick * 5",
            "FAIL CHATHISTORY INVALID_TARGET LATEST bad,nick",
        ),
    ];
    for (who, line, want) in cases {
        h.clear();
        h.send(who, line);
        let got = h.lines(who);
        assert!(got.len() == 1 && got[0].contains(want), "{line}: {got:#?}");
    }
    // An empty history is an empty batch, not silence.
    h.clear();
    h.send(b, "CHATHISTORY LATEST carol * 5");
    assert_eq!(batch_texts(&h, b), Vec::<String>::new());
}

#[test]
fn the_limit_is_capped_at_what_isupport_says() {
    let mut h = Harness::with(Config {
        chathistory_max: 4,
        ..Config::default()
    });
    let c = h.connect();
    h.send(c, "NICK alice");
    h.send(c, "USER alice 0 * :A");
    assert!(h.saw(c, "CHATHISTORY=4 "), "{:#?}", h.lines(c));
    assert!(h.saw(c, "MSGREFTYPES=msgid,timestamp"));
    h.send(c, "CAP REQ :batch draft/chathistory");
    for i in 0..10 {
        h.send(c, &format!("PRIVMSG #lobby :m{i}"));
    }
    h.clear();
    h.send(c, "CHATHISTORY LATEST #lobby * 100");
    assert_eq!(batch_texts(&h, c), m(6..10));
}

#[test]
fn joining_the_default_room_replays_its_last_messages_to_clients_without_chathistory() {
    let mut h = Harness::with(Config {
        history_replay: 3,
        ..Config::default()
    });
    let a = h.user("alice");
    for i in 0..5 {
        h.advance(60_000);
        h.send(a, &format!("PRIVMSG #lobby :m{i}"));
    }
    h.send(a, "JOIN #den");
    h.send(a, "PRIVMSG #den :not replayed: only the default room is");
    // A stock client: no tags, so each line says when it was said.
    let b = h.user_with("bob", "192.0.2.8", "");
    let seen: Vec<String> = (h.lines(b).into_iter())
        .filter(|l| l.contains(" PRIVMSG "))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        seen,
        [
            ":alice!~alice@192.0.2.7 PRIVMSG #lobby :[11:09 UTC] m2",
            ":alice!~alice@192.0.2.7 PRIVMSG #lobby :[11:10 UTC] m3",
            ":alice!~alice@192.0.2.7 PRIVMSG #lobby :[11:11 UTC] m4",
        ]
    );
    // With batch and server-time: a chathistory batch of the lines as they were.
    let c = h.user_with("carol", "192.0.2.9", "batch server-time");
    assert_eq!(batch_texts(&h, c), m(2..5));
    // Asking for draft/chathistory: nothing is pushed; the client asks.
    let d = h.user_with("dave", "192.0.2.10", "batch server-time draft/chathistory");
    assert!(!h.saw(d, " PRIVMSG #lobby "), "{:#?}", h.lines(d));
}

#[test]
fn a_conversation_is_read_only_by_its_parties_and_a_reconnecting_holder() {
    let mut h = Harness::new();
    let a = h.user_with("alice", "192.0.2.7", ALL);
    let b = h.user_with("bob", "192.0.2.8", ALL);
    h.send(a, "PRIVMSG bob :hi bob");
    h.send(b, "PRIVMSG alice :hi alice");
    h.send(a, "PRIVMSG carol :nobody here");
    h.clear();
    h.send(a, "CHATHISTORY LATEST Bob * 10");
    assert_eq!(batch_texts(&h, a), ["hi bob", "hi alice"]);
    h.clear();
    h.send(b, "CHATHISTORY LATEST alice * 10");
    assert_eq!(batch_texts(&h, b), ["hi bob", "hi alice"]);

    // bob leaves; someone from another address takes the name: none of bob's past.
    h.send(b, "QUIT :bye");
    h.advance(1000);
    let m = h.user_with("bob", "198.51.100.1", ALL);
    h.send(m, "CHATHISTORY LATEST alice * 10");
    assert_eq!(batch_texts(&h, m), Vec::<String>::new());
    h.send(a, "PRIVMSG bob :are you still bob?");
    h.clear();
    h.send(m, "CHATHISTORY LATEST alice * 10");
    assert_eq!(batch_texts(&h, m), ["are you still bob?"]);
    h.send(m, "QUIT");

    // The real bob, back from his address within the hour: his conversation, all of it? No:
    // the name's last holder was the stranger, so bob starts afresh too.
    h.advance(1000);
    let b2 = h.user_with("bob", "192.0.2.8", ALL);
    h.send(b2, "CHATHISTORY LATEST alice * 10");
    assert_eq!(batch_texts(&h, b2), Vec::<String>::new());
}

#[test]
fn a_reconnect_from_the_same_address_reads_what_was_said_meanwhile() {
    let mut h = Harness::new();
    let a = h.user_with("alice", "192.0.2.7", ALL);
    let b = h.user_with("bob", "192.0.2.8", ALL);
    h.send(a, "PRIVMSG bob :before");
    h.send(b, "QUIT :connection reset");
    h.advance(30_000);
    h.send(a, "PRIVMSG #lobby :meanwhile in the lobby");
    let b = h.user_with("bob", "192.0.2.8", ALL);
    h.send(b, "CHATHISTORY LATEST alice * 10");
    assert_eq!(batch_texts(&h, b), ["before"]);
    h.clear();
    h.send(b, "CHATHISTORY LATEST #lobby * 1");
    assert_eq!(batch_texts(&h, b), ["meanwhile in the lobby"]);
    // Past the reclaim window the name starts afresh even from the same address.
    h.send(b, "QUIT");
    h.advance(3600 * 1000 + 1);
    let b = h.user_with("bob", "192.0.2.8", ALL);
    h.send(b, "CHATHISTORY LATEST alice * 10");
    assert_eq!(batch_texts(&h, b), Vec::<String>::new());
}

#[test]
fn targets_lists_rooms_and_people_by_their_newest_message() {
    let mut h = Harness::new();
    let a = h.user_with("alice", "192.0.2.7", ALL);
    let _b = h.user_with("Bob", "192.0.2.8", ALL);
    h.send(a, "JOIN #den");
    let times: Vec<Millis> = [
        "PRIVMSG #den :one",
        "PRIVMSG Bob :two",
        "PRIVMSG #lobby :three",
    ]
    .iter()
    .map(|line| {
        h.advance(5);
        h.send(a, line);
        h.now
    })
    .collect();
    let ts = |t: Millis| t.to_rfc3339();
    h.clear();
    h.send(
        a,
        "CHATHISTORY TARGETS timestamp=2020-01-01T00:00:00.000Z timestamp=2262-01-01T00:00:00.000Z 10",
    );
    let listed: Vec<&str> = (h.lines(a).into_iter())
        .filter(|l| l.contains(" CHATHISTORY TARGETS "))
        .map(|l| l.split(" CHATHISTORY TARGETS ").nth(1).unwrap())
        .collect();
    let want = [
        format!("#den {}", ts(times[0])),
        format!("Bob {}", ts(times[1])),
        format!("#lobby {}", ts(times[2])),
    ];
    assert_eq!(listed, want);
    assert!(h.lines(a)[0].ends_with(" draft/chathistory-targets"));
    // Both ends are exclusive.
    h.clear();
    h.send(
        a,
        &format!(
            "CHATHISTORY TARGETS timestamp={} timestamp={} 10",
            ts(times[0]),
            ts(times[2])
        ),
    );
    assert!(h.saw(a, &format!("TARGETS Bob {}", ts(times[1]))));
    assert_eq!(h.lines(a).len(), 3, "{:#?}", h.lines(a));
}

#[test]
fn a_redacted_message_leaves_history() {
    let (mut h, a, ids) = ten_messages();
    h.send(a, &format!("REDACT #den {} :oops", ids[9].0));
    h.clear();
    h.send(a, "CHATHISTORY LATEST #den * 2");
    assert_eq!(batch_texts(&h, a), m(7..9));
}

#[test]
fn a_multiline_message_comes_back_whole() {
    let mut h = Harness::new();
    let caps = format!("{ALL} draft/multiline");
    let a = h.user_with("alice", "192.0.2.7", &caps);
    let b = h.user_with("bob", "192.0.2.8", ALL);
    h.send(a, "BATCH +ml draft/multiline #lobby");
    h.send(a, "@batch=ml PRIVMSG #lobby :first");
    h.send(a, "@batch=ml;draft/multiline-concat PRIVMSG #lobby :+more");
    h.send(a, "BATCH -ml");
    h.clear();
    h.send(a, "CHATHISTORY LATEST #lobby * 1");
    let lines = h.lines(a);
    assert!(lines[1].contains(" BATCH +") && lines[1].ends_with(" draft/multiline #lobby"));
    assert!(lines[3].contains("draft/multiline-concat") && lines[3].ends_with(":+more"));
    // Without multiline: each line as a message, the id on the first.
    h.send(b, "CHATHISTORY LATEST #lobby * 1");
    assert_eq!(batch_texts(&h, b), ["first", "+more"]);
}

#[test]
fn history_and_read_markers_outlive_a_restart_of_the_server() {
    let store = Arc::new(Mutex::new(MemoryHistory::new(Retention::default())));
    let server = |now| Server::with_history(Config::default(), now, Box::new(store.clone()));
    let mut h = Harness::new();
    h.server = server(Millis(T0));
    let caps = format!("{ALL} draft/read-marker");
    let a = h.user_with("alice", "192.0.2.7", &caps);
    h.user_with("bob", "192.0.2.8", "");
    h.send(a, "PRIVMSG #lobby :before the restart");
    h.send(a, "MARKREAD #lobby timestamp=2026-11-30T10:00:00.000Z");
    h.send(a, "PRIVMSG bob :are you there?");
    h.advance(5000);
    // The server stops without anyone leaving (a crash) and comes back.
    let now = h.now.plus(5000);
    h.server = server(now);
    h.now = now;
    let a = h.user_with("alice", "192.0.2.7", &caps);
    assert!(
        h.saw(a, "MARKREAD #lobby timestamp=2026-11-30T10:00:00.000Z"),
        "{:#?}",
        h.lines(a)
    );
    h.clear();
    h.send(a, "CHATHISTORY LATEST #lobby * 10");
    assert_eq!(batch_texts(&h, a), ["before the restart"]);
    h.clear();
    h.send(a, "CHATHISTORY LATEST bob * 10");
    assert_eq!(batch_texts(&h, a), ["are you there?"]);
}

#[test]
fn only_names_with_conversations_are_recorded() {
    use parla_room::history::History;
    let store = Arc::new(Mutex::new(MemoryHistory::new(Retention::default())));
    let mut h = Harness::new();
    h.server = Server::with_history(Config::default(), Millis(T0), Box::new(store.clone()));
    // A visitor who only talks in the room leaves no trace of its name.
    let v = h.user_with("visitor", "192.0.2.9", "");
    h.send(v, "PRIVMSG #lobby :just passing through");
    h.send(v, "QUIT");
    assert!(store.lock().unwrap().owner("visitor").is_none());
    // A conversation records both of its names, and a departure records when.
    let a = h.user_with("alice", "192.0.2.7", ALL);
    h.user_with("bob", "192.0.2.8", ALL);
    h.send(a, "PRIVMSG bob :hi");
    let owner = store.lock().unwrap().owner("bob").expect("bob is recorded");
    assert_eq!((owner.host.as_str(), owner.left), ("192.0.2.8", None));
    h.advance(1000);
    h.send(a, "QUIT");
    let left = store.lock().unwrap().owner("alice").and_then(|o| o.left);
    assert_eq!(left, Some(h.now));
}
