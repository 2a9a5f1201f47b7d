//! The client core against a hostile server: random lines built from the verbs and numerics it
//! understands, with parameters of every length (up to the 8 KiB a line may have), control
//! characters and multi-byte text, mixed with commands from its person. It must never panic,
//! and every line it sends must be one line of at most 510 bytes (512 with CR LF): a server
//! cannot make it break the protocol toward itself.

use parla_room::Millis;
use parla_room::client::{Command, Config, Event, Session};
use proptest::prelude::*;

const VERBS: &[&str] = &[
    "PING", "PONG", "ERROR", "PRIVMSG", "NOTICE", "JOIN", "PART", "QUIT", "NICK", "TOPIC", "CAP",
    "001", "005", "332", "353", "366", "401", "403", "404", "417", "432", "433", "438", "442",
    "451", "464", "FAIL", "KICK", "MODE",
];

fn param() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z#]{0,12}",
        1 => proptest::collection::vec(
            prop_oneof![Just('a'), Just(' '), Just(':'), Just('\u{1}'), Just('語'), Just('\u{0}')],
            0..1200,
        )
        .prop_map(|cs| cs.into_iter().collect::<String>()),
        1 => (400usize..8000).prop_map(|n| "x".repeat(n)),
    ]
}

fn line() -> impl Strategy<Value = String> {
    (
        proptest::option::of("[a-z]{1,8}(![a-z]{1,8}@[a-z.]{1,12})?"),
        proptest::sample::select(VERBS),
        proptest::collection::vec(param(), 0..5),
    )
        .prop_map(|(source, verb, params)| {
            let mut l = String::new();
            if let Some(s) = source {
                l.push(':');
                l.push_str(&s);
                l.push(' ');
            }
            l.push_str(verb);
            let n = params.len();
            for (i, p) in params.into_iter().enumerate() {
                l.push(' ');
                if i + 1 == n {
                    l.push(':');
                }
                l.push_str(&p);
            }
            l
        })
}

#[derive(Debug, Clone)]
enum Step {
    Line(String),
    Say(String),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => line().prop_map(Step::Line),
        1 => "[a-z ]{0,600}".prop_map(Step::Say),
        1 => (1u64..30_000).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn a_hostile_server_cannot_make_the_client_break_the_protocol(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let mut now = Millis(0);
        let mut s = Session::new(Config::default(), now);
        s.handle_command(now, Command::Nick("me".into()));
        for step in steps {
            match step {
                Step::Line(l) => s.handle_line(now, l.as_bytes()),
                Step::Say(t) => s.handle_command(now, Command::Say(t)),
                Step::Wait(ms) => {
                    now = now.plus(ms);
                    s.handle_timeout(now);
                }
            }
            while s.poll_event().is_some() {}
            while let Some(out) = s.poll_transmit() {
                prop_assert!(out.len() <= 510, "{} bytes: {:?}", out.len(), &out[..60.min(out.len())]);
                prop_assert!(!out.contains(['\r', '\n', '\0']), "{:?}", out);
            }
        }
    }
}

/// The case above at its edge: the longest `PING` a line may carry gets a `PONG` that fits
/// exactly; a longer line is not IRC (over 512 bytes) and is ignored, not answered.
#[test]
fn the_longest_ping_gets_a_pong_that_fits_and_a_longer_line_is_ignored() {
    let mut s = Session::new(Config::default(), Millis(0));
    while s.poll_transmit().is_some() {}
    let token = "x".repeat(504);
    s.handle_line(Millis(0), format!("PING :{token}").as_bytes());
    assert_eq!(s.poll_transmit(), Some(format!("PONG :{token}")));
    s.handle_line(Millis(0), format!("PING :{token}y").as_bytes());
    assert_eq!(s.poll_transmit(), None);
}

/// Found by the case above: a hostile server puts us in a room whose name takes most of a
/// line. What we say there is cut to fit our own line; a name that leaves no room at all gets
/// nothing sent and an error that says so.
#[test]
fn a_room_with_a_huge_name_gets_lines_that_fit_or_nothing() {
    for (len, sent) in [(440, true), (500, false)] {
        let now = Millis(0);
        let mut s = Session::new(Config::default(), now);
        s.handle_command(now, Command::Nick("me".into()));
        s.handle_line(now, b":srv 001 me :hi");
        let room = format!("#{}", "x".repeat(len));
        s.handle_line(now, format!(":me!u@h JOIN {room}").as_bytes());
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
        s.handle_command(now, Command::Say("word ".repeat(60)));
        let lines: Vec<String> = std::iter::from_fn(|| s.poll_transmit()).collect();
        assert!(lines.iter().all(|l| l.len() <= 510), "{lines:?}");
        let said: String = (lines.iter())
            .filter_map(|l| l.strip_prefix(&format!("PRIVMSG {room} :")))
            .collect();
        let errors: Vec<String> = std::iter::from_fn(|| s.poll_event())
            .filter_map(|e| match e {
                Event::ServerError { text } => Some(text),
                _ => None,
            })
            .collect();
        if sent {
            assert_eq!(said, "word ".repeat(60), "{lines:?}");
            assert!(errors.is_empty(), "{errors:?}");
        } else {
            assert!(lines.is_empty(), "{lines:?}");
            assert!(errors[0].contains("nothing was sent"), "{errors:?}");
        }
    }
}
