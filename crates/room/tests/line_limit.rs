//! No line the core sends is longer than IRC's 512 bytes (CR LF included, tags not counted), or
//! carries a CR, LF or NUL inside it, whatever any client sends: a property test over random
//! sessions aimed at the long cases (longest names, many rooms, long reasons and tokens, lists of
//! names, multi-byte text), then every `Output` the core produced is checked.

use parla_room::{Config, ConnId, Millis, Output, Server};
use proptest::prelude::*;

const T0: u64 = 1_795_000_000_000;
const MAX_BODY: usize = 512;

/// What one step of a session does.
#[derive(Debug, Clone)]
enum Act {
    Connect { host: usize },
    Line { conn: usize, line: String },
    TooLong { conn: usize },
    Wait { millis: u64 },
    Disconnect { conn: usize },
}

/// Hosts as the runtime gives them, up to the longest IPv6 text.
const HOSTS: &[&str] = &[
    "192.0.2.7",
    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
];

/// Text with the characters that make lines long or tricky: multi-byte ones, spaces, colons,
/// commas, control characters.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just('a'),
            1 => Just(' '),
            1 => Just(':'),
            1 => Just(','),
            1 => Just('é'),
            1 => Just('語'),
            1 => Just('🎉'),
            1 => Just('\u{1}'),
            1 => Just('\u{7f}'),
        ],
        0..max,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

/// Names of every length up to beyond the limits, from a small pool so they collide.
fn nick() -> impl Strategy<Value = String> {
    (0usize..6, 1usize..40).prop_map(|(i, len)| {
        let mut n = format!("n{i}");
        while n.len() < len {
            n.push('x');
        }
        n
    })
}

fn room() -> impl Strategy<Value = String> {
    (0usize..25, 1usize..60).prop_map(|(i, len)| {
        let mut r = format!("#r{i}");
        while r.len() < len {
            r.push('y');
        }
        r
    })
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        nick().prop_map(|n| format!("NICK {n}")),
        (text(40), text(120)).prop_map(|(u, r)| format!("USER {u}x 0 * :{r}")),
        proptest::collection::vec(room(), 1..8).prop_map(|rs| format!("JOIN {}", rs.join(","))),
        (room(), text(500)).prop_map(|(r, t)| format!("PART {r} :{t}")),
        (room(), text(500)).prop_map(|(r, t)| format!("PRIVMSG {r} :{t}")),
        (nick(), text(500)).prop_map(|(n, t)| format!("NOTICE {n} :{t}")),
        text(500).prop_map(|t| format!("QUIT :{t}")),
        (room(), text(500)).prop_map(|(r, t)| format!("TOPIC {r} :{t}")),
        room().prop_map(|r| format!("TOPIC {r}")),
        text(508).prop_map(|t| format!("PING :{t}")),
        text(508).prop_map(|t| format!("PING {}", t.replace(' ', "a"))),
        text(500).prop_map(|t| format!("CAP REQ :{t}")),
        Just("CAP LS 302".to_owned()),
        Just("CAP END".to_owned()),
        proptest::collection::vec(nick(), 1..40).prop_map(|ns| format!("ISON {}", ns.join(" "))),
        proptest::collection::vec(nick(), 1..8).prop_map(|ns| format!("USERHOST {}", ns.join(" "))),
        nick().prop_map(|n| format!("WHOIS {n}")),
        room().prop_map(|r| format!("WHO {r}")),
        text(60).prop_map(|m| format!("WHO {}", m.replace(' ', "*"))),
        room().prop_map(|r| format!("NAMES {r}")),
        Just("LIST".to_owned()),
        room().prop_map(|r| format!("MODE {r}")),
        nick().prop_map(|n| format!("MODE {n} +i")),
        text(500).prop_map(|t| format!("AWAY :{t}")),
        text(500).prop_map(|t| format!("{} :{t}", t.replace([' ', ':'], "Z"))),
        Just("VERSION".to_owned()),
        Just("TIME".to_owned()),
        Just("MOTD".to_owned()),
        Just("LUSERS".to_owned()),
    ]
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        2 => (0..HOSTS.len()).prop_map(|host| Act::Connect { host }),
        12 => (0usize..8, line()).prop_map(|(conn, line)| Act::Line { conn, line }),
        1 => (0usize..8).prop_map(|conn| Act::TooLong { conn }),
        1 => (0u64..200_000).prop_map(|millis| Act::Wait { millis }),
        1 => (0usize..8).prop_map(|conn| Act::Disconnect { conn }),
    ]
}

/// A line cut to what the codec would hand the core (510 bytes before CR LF), at a character
/// boundary.
fn as_received(line: &str) -> &str {
    let mut end = line.len().min(510);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

fn check(out: Output) -> Result<(), TestCaseError> {
    let line = match out {
        Output::Send { line, .. } | Output::Broadcast { line, .. } => line,
        Output::Close { .. } => return Ok(()),
    };
    let body = match line.first() {
        Some(b'@') => {
            let space = line.iter().position(|&b| b == b' ');
            prop_assert!(space.is_some(), "tags with no body: {line:?}");
            &line[space.unwrap_or(0) + 1..]
        }
        _ => &line[..],
    };
    prop_assert!(
        body.len() <= MAX_BODY,
        "{} bytes: {:?}",
        body.len(),
        String::from_utf8_lossy(&line)
    );
    prop_assert!(body.ends_with(b"\r\n"), "no CR LF: {line:?}");
    let inner = &line[..line.len() - 2];
    prop_assert!(
        !inner.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
        "CR, LF or NUL inside: {line:?}"
    );
    prop_assert!(std::str::from_utf8(&line).is_ok(), "not UTF-8: {line:?}");
    Ok(())
}

fn run(acts: &[Act]) -> Result<(), TestCaseError> {
    let mut now = Millis(T0);
    let mut server = Server::new(Config::default(), now);
    let mut conns: Vec<ConnId> = Vec::new();
    let pick = |conns: &[ConnId], i: usize| (!conns.is_empty()).then(|| conns[i % conns.len()]);
    for act in acts {
        match act {
            Act::Connect { host } => conns.push(server.handle_connect(now, HOSTS[*host])),
            Act::Line { conn, line } => {
                if let Some(c) = pick(&conns, *conn) {
                    server.handle_line(now, c, as_received(line).as_bytes());
                }
            }
            Act::TooLong { conn } => {
                if let Some(c) = pick(&conns, *conn) {
                    server.handle_line_too_long(now, c);
                }
            }
            Act::Wait { millis } => {
                now = Millis(now.0 + millis);
                server.handle_timeout(now);
            }
            Act::Disconnect { conn } => {
                if let Some(c) = pick(&conns, *conn) {
                    server.handle_disconnect(now, c, "Connection reset by peer");
                }
            }
        }
        while let Some(out) = server.poll_output() {
            check(out)?;
        }
    }
    server.handle_shutdown(now);
    while let Some(out) = server.poll_output() {
        check(out)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_line_the_core_sends_is_over_512_bytes(acts in proptest::collection::vec(act(), 1..120)) {
        run(&acts)?;
    }
}

/// The cases the issue measured, each as one session: a QUIT and a PART with the longest nick and
/// a long reason, a PONG for a 510-byte PING, a CAP NAK echo, an ISON of many names, a WHOIS of a
/// member of 20 long-named rooms.
#[test]
fn the_measured_over_long_replies_fit() {
    let nick = "n".repeat(30);
    let reason = "r".repeat(490);
    let mut acts = vec![
        Act::Connect { host: 1 },
        Act::Connect { host: 2 },
        Act::Line {
            conn: 0,
            line: format!("NICK {nick}"),
        },
        Act::Line {
            conn: 0,
            line: format!("USER {} 0 * :{}", "u".repeat(40), "x".repeat(200)),
        },
        Act::Line {
            conn: 1,
            line: "NICK watcher".to_owned(),
        },
        Act::Line {
            conn: 1,
            line: "USER w 0 * :w".to_owned(),
        },
    ];
    for i in 0..20 {
        let room = format!("#{i:02}{}", "y".repeat(47));
        acts.push(Act::Line {
            conn: 0,
            line: format!("JOIN {room}"),
        });
        acts.push(Act::Line {
            conn: 1,
            line: format!("JOIN {room}"),
        });
    }
    acts.extend([
        Act::Line {
            conn: 1,
            line: format!("WHOIS {nick}"),
        },
        Act::Line {
            conn: 0,
            line: format!("PART #00{} :{reason}", "y".repeat(47)),
        },
        Act::Line {
            conn: 0,
            line: format!("PING :{}", "p".repeat(503)),
        },
        Act::Line {
            conn: 0,
            line: format!("CAP REQ :{}", "c".repeat(500)),
        },
        Act::Line {
            conn: 1,
            line: format!("ISON {}", [nick.as_str(); 16].join(" ")),
        },
        Act::Line {
            conn: 0,
            line: format!("QUIT :{reason}"),
        },
    ]);
    run(&acts).expect("every line fits");
}
