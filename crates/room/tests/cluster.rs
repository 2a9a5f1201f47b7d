//! Many servers as one chat (`parla_room::cluster`): replicas fed one log agree on names, rooms
//! and the order of messages; each sends lines only to its own connections; a silent server's
//! users quit everywhere; a retried publish is applied once.

use parla_room::cluster::{Batch, Entry, Event, Replica};
use parla_room::{Config, ConnId, Millis, Output, Server};

const T0: u64 = 1_795_000_000_000;

/// One server of a test cluster: its core, its replica, what it sent its own connections.
struct Node {
    name: String,
    core: Server,
    replica: Replica,
    /// Its number in the cluster (the top half of its connections' ids).
    home: u64,
    /// Batches this server published so far (its next batch number is one more).
    batches: u64,
    /// Lines to its own connections, as (connection, line without CRLF); closes as `CLOSE`.
    seen: Vec<(ConnId, String)>,
}

/// Servers sharing one log. Publishing appends to the log; `sync` has every server apply what
/// it has not applied yet, in log order.
struct Cluster {
    nodes: Vec<Node>,
    log: Vec<Vec<u8>>,
    now: Millis,
}

impl Cluster {
    fn new(servers: usize) -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            log: Vec::new(),
            now: Millis(T0),
        };
        for i in 0..servers {
            cluster.add(&format!("s{}", i + 1));
        }
        cluster
    }

    /// A new server says hello and catches up with the log.
    fn add(&mut self, name: &str) -> usize {
        self.add_from(name, None)
    }

    /// A new server that starts from `snapshot` (or, with none, from the log's beginning),
    /// says hello and catches up with the log.
    fn add_from(&mut self, name: &str, snapshot: Option<&[u8]>) -> usize {
        let mut core = Server::new(Config::default(), self.now);
        let nonce = 1000 + self.nodes.len() as u64;
        let mut replica = Replica::new(&mut core, nonce);
        if let Some(bytes) = snapshot {
            (replica.restore(&mut core, bytes)).expect("a valid snapshot");
        }
        let hello = replica.hello(name).encode();
        self.nodes.push(Node {
            name: name.to_owned(),
            core,
            replica,
            home: 0,
            batches: 0,
            seen: Vec::new(),
        });
        self.log.push(hello);
        self.sync();
        let i = self.nodes.len() - 1;
        let number = self.nodes[i].replica.number().expect("joined");
        self.nodes[i].home = number;
        assert_eq!(
            self.nodes[i].replica.poll_event(),
            Some(Event::Joined { number })
        );
        i
    }

    fn publish(&mut self, node: usize, entries: Vec<Entry>) {
        let n = &mut self.nodes[node];
        n.batches += 1;
        let batch = Batch {
            origin: n.replica.number().expect("joined"),
            number: n.batches,
            entries,
        };
        self.log.push(batch.encode());
    }

    fn sync(&mut self) {
        for n in &mut self.nodes {
            let from = n.replica.applied() as usize;
            for (i, bytes) in self.log.iter().enumerate().skip(from) {
                n.replica
                    .apply(&mut n.core, i as u64 + 1, bytes)
                    .expect("a valid batch");
            }
            let own = |conn: ConnId| conn.server() == n.home;
            while let Some(out) = n.core.poll_output() {
                match out {
                    Output::Send { to, line } => {
                        if own(to) {
                            n.seen.push((to, text(&line)));
                        }
                    }
                    Output::Broadcast { to, line } => {
                        for to in to {
                            if own(to) {
                                n.seen.push((to, text(&line)));
                            }
                        }
                    }
                    Output::Close { conn, reason } => {
                        if own(conn) {
                            n.seen.push((conn, format!("CLOSE {reason}")));
                        }
                    }
                }
            }
        }
    }

    /// A connection opens on `node` and registers as `nick` (one batch per line, as a runtime
    /// publishes them when they arrive one by one).
    fn connect(&mut self, node: usize) -> ConnId {
        let conn = self.nodes[node].core.reserve_id();
        let now = self.now;
        self.publish(
            node,
            vec![Entry::Connect {
                conn,
                now,
                host: "192.0.2.7".into(),
            }],
        );
        conn
    }

    fn say(&mut self, node: usize, conn: ConnId, line: &str) {
        let now = self.now;
        self.publish(
            node,
            vec![Entry::Line {
                conn,
                now,
                line: line.as_bytes().to_vec(),
            }],
        );
    }

    fn user(&mut self, node: usize, nick: &str) -> ConnId {
        let conn = self.connect(node);
        self.say(node, conn, &format!("NICK {nick}"));
        self.say(node, conn, &format!("USER {nick} 0 * :{nick}"));
        self.say(node, conn, "JOIN #lobby");
        self.sync();
        assert!(self.saw(node, conn, " 001 "), "{nick} registered");
        conn
    }

    fn beat(&mut self, node: usize) {
        let now = self.now;
        self.publish(node, vec![Entry::Beat { now }]);
    }

    /// `conn` on `node` sends `line`, and every server applies it.
    fn ask(&mut self, node: usize, conn: ConnId, line: &str) {
        self.say(node, conn, line);
        self.sync();
    }

    /// `conn` on `node` was sent a line containing `part`.
    #[track_caller]
    fn expect(&self, node: usize, conn: ConnId, part: &str) {
        assert!(
            self.saw(node, conn, part),
            "no {part:?} in {:?}",
            self.lines(node, conn)
        );
    }

    fn lines(&self, node: usize, conn: ConnId) -> Vec<&str> {
        (self.nodes[node].seen.iter())
            .filter(|(c, _)| *c == conn)
            .map(|(_, l)| l.as_str())
            .collect()
    }

    fn saw(&self, node: usize, conn: ConnId, needle: &str) -> bool {
        self.lines(node, conn).iter().any(|l| l.contains(needle))
    }
}

/// Two servers, alice on the first and bob on the second, both in #lobby.
fn alice_and_bob() -> (Cluster, ConnId, ConnId) {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    (c, alice, bob)
}

fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).trim_end().to_owned()
}

#[test]
fn a_room_spans_servers_and_each_server_sends_only_to_its_own() {
    let mut c = Cluster::new(3);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    let carol = c.user(2, "carol");
    c.say(1, bob, "PRIVMSG #lobby :hello from s2");
    c.sync();
    for (node, conn) in [(0, alice), (2, carol)] {
        c.expect(
            node,
            conn,
            ":bob!~bob@192.0.2.7 PRIVMSG #lobby :hello from s2",
        );
    }
    // Each server's lines went to its own connections only.
    for (i, n) in c.nodes.iter().enumerate() {
        assert!(
            n.seen
                .iter()
                .all(|(conn, _)| conn.server() == n.replica.number().unwrap()),
            "server {i} sent to another's connection"
        );
    }
    // Every server holds the same room.
    for n in &c.nodes {
        assert_eq!(
            n.core.room_members("#lobby"),
            Some(vec!["alice", "bob", "carol"]),
            "on {}",
            n.name
        );
    }
    // NAMES on any server lists people of every server.
    c.ask(2, carol, "NAMES #lobby");
    c.expect(2, carol, " 353 carol = #lobby :");
    let names = c
        .lines(2, carol)
        .into_iter()
        .rfind(|l| l.contains(" 353 "))
        .unwrap();
    for nick in ["alice", "bob", "carol"] {
        assert!(names.contains(nick), "{names}");
    }
    // WHOIS names the server each person is on.
    c.ask(2, carol, "WHOIS bob");
    c.expect(2, carol, " 312 carol bob s2 :");
    // So does WHO, in its server column (and WHOX's s field).
    c.ask(2, carol, "WHO #lobby");
    for (nick, server) in [("alice", "s1"), ("bob", "s2"), ("carol", "s3")] {
        let row = format!(" 352 carol #lobby ~{nick} 192.0.2.");
        let line = (c.lines(2, carol).into_iter())
            .find(|l| l.contains(&row))
            .unwrap_or_else(|| panic!("no WHO row for {nick}: {:?}", c.lines(2, carol)));
        assert!(line.contains(&format!(" {server} {nick} H")), "{line}");
    }
    c.ask(2, carol, "WHO bob %ns");
    c.expect(2, carol, " 354 carol s2 :bob");
    // LUSERS counts the cluster, and this server's own.
    c.say(2, carol, "LUSERS");
    c.sync();
    c.expect(
        2,
        carol,
        " 251 carol :There are 3 users and 0 invisible on 3 servers",
    );
    c.expect(2, carol, " 255 carol :I have 1 clients and 2 servers");
    c.expect(2, carol, " 265 carol 1 3 :Current local users 1, max 3");
}

#[test]
fn a_name_is_taken_by_whichever_nick_comes_first_in_the_log() {
    let mut c = Cluster::new(2);
    let a = c.connect(0);
    let b = c.connect(1);
    // Both ask for "dana" before either hears of the other: the log decides.
    c.say(1, b, "NICK dana");
    c.say(0, a, "NICK Dana");
    c.say(0, a, "USER dana 0 * :Dana");
    c.say(1, b, "USER dana 0 * :Dana");
    c.sync();
    c.expect(1, b, " 001 dana ");
    c.expect(0, a, " 433 * Dana ");
    for n in &c.nodes {
        assert_eq!(n.core.holder_of("DANA"), Some(b), "on {}", n.name);
    }
}

#[test]
fn messages_from_many_servers_have_one_order_everywhere() {
    let mut c = Cluster::new(3);
    let users: Vec<ConnId> = (0..3).map(|i| c.user(i, &format!("u{i}"))).collect();
    for round in 0..5 {
        for (i, &u) in users.iter().enumerate() {
            c.say(i, u, &format!("PRIVMSG #lobby :m{round}-{i}"));
        }
    }
    c.sync();
    // What each saw of the others' messages, with its own in place as the log put it.
    let order = |node: usize, me: ConnId| -> Vec<String> {
        c.lines(node, me)
            .iter()
            .filter_map(|l| l.split(" :m").nth(1).map(|m| format!("m{m}")))
            .collect()
    };
    let expected: Vec<String> = (0..5)
        .flat_map(|r| (0..3).map(move |i| format!("m{r}-{i}")))
        .collect();
    for (i, &u) in users.iter().enumerate() {
        let mine = format!("-{i}");
        let others: Vec<String> = expected
            .iter()
            .filter(|m| !m.ends_with(&mine))
            .cloned()
            .collect();
        assert_eq!(order(i, u), others, "server {i}");
    }
}

#[test]
fn a_silent_server_is_gone_after_three_beats_of_another_and_its_users_quit() {
    let mut c = Cluster::new(3);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    let carol = c.user(2, "carol");
    // s1 and s3 beat; s2 has stopped.
    c.beat(0);
    c.beat(2);
    c.beat(0);
    c.sync();
    assert!(
        !c.saw(0, alice, " QUIT "),
        "not yet: {:?}",
        c.lines(0, alice)
    );
    c.beat(0);
    c.sync();
    for (node, conn) in [(0, alice), (2, carol)] {
        c.expect(
            node,
            conn,
            ":bob!~bob@192.0.2.7 QUIT :Server s2 stopped answering",
        );
        assert_eq!(c.nodes[node].core.holder_of("bob"), None);
    }
    // The name is free: someone else takes it.
    let again = c.user(2, "bob");
    c.expect(2, again, " 001 bob ");
    // What s2 publishes now is ignored everywhere; it learns it was declared gone.
    assert_eq!(c.nodes[1].replica.number(), None);
    let mut events = Vec::new();
    while let Some(e) = c.nodes[1].replica.poll_event() {
        events.push(e);
    }
    assert!(
        matches!(&events[..], [Event::Gone { name, .. }, Event::Evicted] if name == "s2"),
        "{events:?}"
    );
    // Its own users were closed, with the reason.
    c.expect(1, bob, "CLOSE Server s2 stopped answering");
}

#[test]
fn a_server_that_leaves_takes_its_users_with_it_at_once() {
    let (mut c, alice, _bob) = alice_and_bob();
    let now = c.now;
    c.publish(
        1,
        vec![Entry::Leave {
            now,
            reason: "Server shutting down".into(),
        }],
    );
    c.sync();
    c.expect(0, alice, ":bob!~bob@192.0.2.7 QUIT :Server shutting down");
    assert_eq!(c.nodes[0].core.room_members("#lobby"), Some(vec!["alice"]));
}

#[test]
fn a_batch_published_twice_is_applied_once() {
    let (mut c, alice, bob) = alice_and_bob();
    c.say(1, bob, "PRIVMSG #lobby :once");
    // The acknowledgement was lost; the runtime publishes the same batch again.
    let again = c.log.last().unwrap().clone();
    c.log.push(again);
    c.sync();
    let got = c
        .lines(0, alice)
        .iter()
        .filter(|l| l.ends_with(":once"))
        .count();
    assert_eq!(got, 1);
}

#[test]
fn a_server_speaks_only_for_its_own_connections() {
    let (mut c, alice, _bob) = alice_and_bob();
    // s2 publishes a line as if alice (s1's) had sent it: every replica ignores it.
    let now = c.now;
    c.publish(
        1,
        vec![Entry::Line {
            conn: alice,
            now,
            line: b"PRIVMSG #lobby :forged".to_vec(),
        }],
    );
    c.sync();
    for n in &c.nodes {
        assert!(
            n.seen.iter().all(|(_, l)| !l.contains("forged")),
            "on {}",
            n.name
        );
    }
}

#[test]
fn message_ids_are_the_same_on_every_server() {
    let (mut c, alice, bob) = alice_and_bob();
    c.say(0, alice, "CAP REQ :message-tags echo-message");
    c.say(1, bob, "CAP REQ :message-tags");
    c.say(0, alice, "PRIVMSG #lobby :tagged");
    c.sync();
    let id = |node: usize, conn: ConnId| -> String {
        let line = c
            .lines(node, conn)
            .into_iter()
            .rfind(|l| l.ends_with(":tagged"))
            .unwrap();
        line.split(';')
            .chain(line.split(' '))
            .find_map(|t| {
                t.trim_start_matches('@')
                    .strip_prefix("msgid=")
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no msgid in {line}"))
    };
    assert_eq!(id(0, alice), id(1, bob));
}

#[test]
fn garbage_in_the_log_is_refused_without_changing_anything() {
    let mut core = Server::new(Config::default(), Millis(T0));
    let mut replica = Replica::new(&mut core, 1);
    for bytes in [
        &b""[..],
        b"PRL1",
        b"hello",
        b"PRL1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\xff\xff\xff\xff",
    ] {
        assert!(
            replica
                .apply(&mut core, replica.applied() + 1, bytes)
                .is_err()
        );
    }
    assert_eq!(replica.servers(), vec![]);
    // Every entry kind survives encoding.
    let batch = Batch {
        origin: 7,
        number: 3,
        entries: vec![
            Entry::Hello {
                nonce: 9,
                name: "s".into(),
                config: 11,
            },
            Entry::Connect {
                conn: ConnId(7 << 32 | 1),
                now: Millis(5),
                host: "::1".into(),
            },
            Entry::Line {
                conn: ConnId(1),
                now: Millis(6),
                line: b"PING x".to_vec(),
            },
            Entry::LineTooLong {
                conn: ConnId(1),
                now: Millis(7),
            },
            Entry::Disconnect {
                conn: ConnId(1),
                now: Millis(8),
                reason: "gone".into(),
            },
            Entry::Beat { now: Millis(9) },
            Entry::Leave {
                now: Millis(10),
                reason: "bye".into(),
            },
        ],
    };
    assert_eq!(Batch::decode(&batch.encode()), Ok(batch.clone()));
    let bytes = batch.encode();
    for cut in 0..bytes.len() {
        assert!(Batch::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn a_timeout_is_published_not_applied_and_only_the_own_server_times_anyone() {
    let (mut c, alice, _bob) = alice_and_bob();
    // Long after everyone went silent: s1 pings alice, then times her out; bob is s2's to time.
    let later = Millis(T0 + 10 * 60 * 1000);
    for n in &mut c.nodes {
        n.core.handle_timeout(later);
        n.core.handle_timeout(Millis(later.0 + 10 * 60 * 1000));
    }
    let expired = c.nodes[0].core.take_expired();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].0, alice);
    assert!(expired[0].1.starts_with("Ping timeout"), "{expired:?}");
    assert_eq!(c.nodes[1].core.take_expired().len(), 1, "s2 times bob");
    // Not applied until published: alice is still in the room everywhere.
    for n in &c.nodes {
        assert_eq!(
            n.core.room_members("#lobby"),
            Some(vec!["alice", "bob"]),
            "on {}",
            n.name
        );
    }
    let (conn, reason) = expired[0].clone();
    c.publish(
        0,
        vec![Entry::Disconnect {
            conn,
            now: c.now,
            reason,
        }],
    );
    c.sync();
    for n in &c.nodes {
        assert_eq!(
            n.core.room_members("#lobby"),
            Some(vec!["bob"]),
            "on {}",
            n.name
        );
    }
}

#[test]
fn a_server_with_other_chat_settings_is_refused_until_the_cluster_is_empty() {
    let mut c = Cluster::new(1);
    c.user(0, "alice");
    // A server with another nick length would decide NICKs differently from the same log.
    let config = Config {
        nick_len: 9,
        ..Config::default()
    };
    let mut core = Server::new(config.clone(), c.now);
    let mut replica = Replica::new(&mut core, 77);
    c.log.push(replica.hello("odd").encode());
    for (i, bytes) in c.log.iter().enumerate() {
        replica.apply(&mut core, i as u64 + 1, bytes).unwrap();
    }
    c.sync();
    assert_eq!(replica.number(), None);
    let expected = Config::default().cluster_fingerprint();
    let ours = config.cluster_fingerprint();
    assert_ne!(expected, ours);
    assert_eq!(
        replica.poll_event(),
        Some(Event::Refused { expected, ours })
    );
    assert_eq!(
        c.nodes[0].replica.servers().len(),
        1,
        "the others ignore it"
    );
    // Its server name and MOTD may differ: they shape only its own lines.
    let named = Config {
        server_name: "two.example".into(),
        motd: vec!["hi".into()],
        ..Config::default()
    };
    assert_eq!(named.cluster_fingerprint(), expected);
    // Once every server is gone (stopped for an upgrade), the next hello sets the settings.
    let now = c.now;
    c.publish(
        0,
        vec![Entry::Leave {
            now,
            reason: "Server shutting down".into(),
        }],
    );
    c.log.push(
        Replica::new(&mut Server::new(config.clone(), now), 78)
            .hello("new")
            .encode(),
    );
    c.sync();
    assert_eq!(
        c.nodes[0].replica.servers(),
        vec![(c.log.len() as u64, "new")]
    );
}

#[test]
fn beats_published_together_count_once() {
    // s1 lost the log for a while and its beats queued up; they land in one batch, right after
    // s2 (new) said hello. That is one beat of s1, not enough to declare s2 gone.
    let mut c = Cluster::new(1);
    let alice = c.user(0, "alice");
    let s2 = c.add("s2");
    c.user(s2, "bob");
    let now = c.now;
    c.publish(0, vec![Entry::Beat { now }; 5]);
    c.sync();
    assert!(!c.saw(0, alice, " QUIT "), "{:?}", c.lines(0, alice));
    assert_eq!(c.nodes[s2].replica.number(), Some(c.nodes[s2].home));
    // Three beats at three positions while s2 says nothing are another matter.
    c.beat(0);
    c.beat(0);
    c.sync();
    c.expect(
        0,
        alice,
        ":bob!~bob@192.0.2.7 QUIT :Server s2 stopped answering",
    );
}

/// The same story told twice, the third server starting from the log's beginning or from a
/// snapshot taken by the first: what every server then sends and holds is the same.
#[test]
fn a_server_started_from_a_snapshot_decides_as_one_that_replayed() {
    let replayed = snapshot_story(false);
    let restored = snapshot_story(true);
    assert_eq!(replayed.len(), restored.len());
    for (i, (a, b)) in replayed.iter().zip(&restored).enumerate() {
        assert_eq!(a, b, "server s{} differs", i + 1);
    }
}

/// Runs the story; returns each server's lines to its own and its digest.
fn snapshot_story(restore: bool) -> Vec<(Vec<(ConnId, String)>, String)> {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    let carol = c.user(0, "carol");
    for (node, conn, line) in [
        (
            0,
            alice,
            "CAP REQ :message-tags server-time batch draft/multiline draft/chathistory",
        ),
        (0, alice, "JOIN #ops"),
        (0, alice, "TOPIC #ops :Only ops here"),
        (0, alice, "MODE #ops +ik sesame"),
        (0, alice, "MODE #ops +b *!*@203.0.113.*"),
        (0, alice, "INVITE bob #ops"),
        (1, bob, "MONITOR + carol,dave"),
        (1, bob, "AWAY :lunch"),
        (1, bob, "PRIVMSG alice :a word in private"),
        (0, carol, "PRIVMSG #lobby :hello lobby"),
        (0, carol, "NICK carola"),
        (0, carol, "QUIT :bye"),
        (0, alice, "PRIVMSG #lobby :after carol"),
        (
            0,
            alice,
            "MARKREAD #lobby timestamp=2026-11-30T10:00:00.000Z",
        ),
        // A multiline message is being sent when the snapshot is taken.
        (0, alice, "BATCH +m1 draft/multiline #lobby"),
        (0, alice, "@batch=m1 PRIVMSG #lobby :first of two"),
    ] {
        c.say(node, conn, line);
    }
    c.sync();
    let snapshot = (c.nodes[0].replica.snapshot(&c.nodes[0].core)).expect("a snapshot");
    // More happens while the third server starts.
    c.say(0, alice, "@batch=m1 PRIVMSG #lobby :second of two");
    c.say(0, alice, "BATCH -m1");
    c.say(1, bob, "JOIN #ops");
    let s3 = c.add_from("s3", restore.then_some(&snapshot[..]));
    let dave = c.user(s3, "dave");
    for line in [
        "CAP REQ :message-tags server-time batch draft/chathistory",
        "CHATHISTORY LATEST #lobby * 10",
        "CHATHISTORY LATEST alice * 10",
        "WHOWAS carol",
        "WHOWAS carola",
        "WHOIS bob",
        "WHO #lobby",
        "LIST",
        "TOPIC #ops",
        "MODE #ops b",
        "JOIN #ops",
        "JOIN #ops sesame",
        "LUSERS",
        "NICK carol",
    ] {
        c.ask(s3, dave, line);
    }
    c.ask(0, alice, "PRIVMSG #lobby :the end");
    // What dave was told rests on what happened before the snapshot.
    for part in [
        ":carol!~carol@192.0.2.7 PRIVMSG #lobby :hello lobby",
        "PRIVMSG #lobby :second of two",
        " 314 dave carola ~carol 192.0.2.7 ",
        " 301 dave bob :lunch",
        " 473 dave #ops ",
        " 332 dave #ops :Only ops here",
        " 367 dave #ops *!*@203.0.113.* alice",
    ] {
        c.expect(s3, dave, part);
    }
    c.nodes
        .iter()
        .map(|n| (n.seen.clone(), n.core.digest()))
        .collect()
}

/// The small chat the format test snapshots: one server, alice with a topic, a ban, a monitor,
/// an away message, a message kept, a rename and a multiline message half-sent.
fn small_chat() -> Cluster {
    let mut c = Cluster::new(1);
    let alice = c.user(0, "alice");
    for line in [
        "CAP REQ :message-tags draft/multiline batch",
        "TOPIC #lobby :pinned",
        "MODE #lobby +b x!*@*",
        "MONITOR + bob",
        "AWAY :away",
        "PRIVMSG #lobby :kept",
        "NICK alicia",
        "MARKREAD #lobby timestamp=2026-11-30T10:00:00.000Z",
        "BATCH +b draft/multiline #lobby",
    ] {
        c.say(0, alice, line);
    }
    c.sync();
    c
}

/// Snapshots outlive upgrades: one taken by the first version of the format (kept in
/// `tests/data`) still loads, as the chat it was taken of. If a change to the core's types
/// breaks this, either make the change readable from the old snapshot (a new field with
/// `#[serde(default)]`) or bump `SNAPSHOT_FORMAT` (servers then refuse the old snapshots) and
/// keep a snapshot of the new format here. `PARLA_WRITE_SNAPSHOT=1` writes the current one.
#[test]
fn a_snapshot_of_format_1_still_loads_as_the_chat_it_was_taken_of() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/snapshot-format-1.bin"
    );
    let c = small_chat();
    if std::env::var_os("PARLA_WRITE_SNAPSHOT").is_some() {
        let bytes = c.nodes[0].replica.snapshot(&c.nodes[0].core).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let kept = std::fs::read(path).expect("the kept snapshot");
    assert_eq!(parla_room::cluster::SNAPSHOT_FORMAT, 1);
    let mut core = Server::new(Config::default(), Millis(T0));
    let mut replica = Replica::new(&mut core, 7);
    replica.restore(&mut core, &kept).expect("format 1 loads");
    assert_eq!(core.digest(), c.nodes[0].core.digest());
    assert_eq!(replica.applied(), c.nodes[0].replica.applied());
    assert_eq!(replica.servers(), c.nodes[0].replica.servers());
}

#[test]
fn a_snapshot_of_another_format_or_damaged_is_refused_and_changes_nothing() {
    let (c, _, _) = alice_and_bob();
    let good = c.nodes[0].replica.snapshot(&c.nodes[0].core).unwrap();
    let mut other = good.clone();
    other[4] = 99; // the format number
    let mut cut = good.clone();
    cut.truncate(good.len() / 2);
    for (bytes, why) in [
        (&other[..], "format 99"),
        (&cut[..], ""),
        (&b"PRL1 not a snapshot"[..], "not a Parla snapshot"),
    ] {
        let mut core = Server::new(Config::default(), Millis(T0));
        let mut replica = Replica::new(&mut core, 1);
        let err = replica.restore(&mut core, bytes).unwrap_err();
        assert_eq!(replica.applied(), 0);
        assert!(err.to_string().contains(why), "{err}");
        assert_eq!(
            core.digest(),
            Server::new(Config::default(), Millis(T0)).digest()
        );
    }
}

/// A snapshot is begun under the core's lock and its history serialized later, from a copy:
/// what happens in between is not in it.
#[test]
fn a_snapshot_holds_its_position_whatever_happens_before_it_is_finished() {
    let (mut c, alice, _) = alice_and_bob();
    c.ask(0, alice, "PRIVMSG #lobby :before");
    let whole = c.nodes[0].replica.snapshot(&c.nodes[0].core).unwrap();
    let begun = c.nodes[0].replica.start_snapshot(&c.nodes[0].core).unwrap();
    c.ask(0, alice, "PRIVMSG #lobby :after");
    assert_eq!(begun.finish().unwrap(), whole);
    assert_ne!(
        c.nodes[0].replica.snapshot(&c.nodes[0].core).unwrap(),
        whole
    );
}
