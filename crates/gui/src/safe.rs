//! Received text made safe to show. Everything in an [`Event`] came from the network: a
//! message, a name, a topic, a quit reason, an error. None of its bytes may drive the terminal
//! (an escape sequence can retitle it, recolour it, erase lines, or worse) or the window.
//!
//! - IRC's own formatting codes (bold `^B`, colour `^C` with its digits, hex colour `^D`, italic
//!   `^]`, underline `^_`, strikethrough `^^`, monospace `^Q`, reverse `^V`, reset `^O`) are
//!   understood as [`Style`]s of [`Span`]s: the window shows them with its own text styles, the
//!   terminal with escape sequences Parla writes itself (only on a terminal), and both can drop
//!   them.
//! - Every other control character is shown, not obeyed: C0 controls (ESC, BEL, CR, BS, …) as
//!   their Unicode control pictures (`␛`, `␇`, …), DEL as `␡`, C1 controls (U+0080–U+009F, which
//!   some terminals obey like ESC sequences) and the bidirectional overrides, embeddings and
//!   isolates (which reorder what is shown, "Trojan Source") as `�`.

use parla_net::client::{Disconnect, Event, Member, Said};

/// The look of a piece of text, from IRC formatting codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub bold: bool,
    pub italic: bool,
    pub underline: bool,
    pub strike: bool,
    pub monospace: bool,
    pub reverse: bool,
    /// IRC colour numbers 0–15 (higher ones are ignored).
    pub fg: Option<u8>,
    pub bg: Option<u8>,
}

impl Style {
    fn is_plain(&self) -> bool {
        *self == Style::default()
    }
}

/// A run of text in one style; its text holds no control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub style: Style,
}

/// What a control character (or other character that must not act) is shown as; `None` for an
/// ordinary character.
fn shown_as(c: char) -> Option<char> {
    match c {
        '\u{00}'..='\u{1f}' => char::from_u32(0x2400 + c as u32),
        '\u{7f}' => Some('\u{2421}'),
        '\u{80}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{fff9}'..='\u{fffb}' => Some('\u{fffd}'),
        _ => None,
    }
}

/// Up to two decimal digits at the start of `s`: the number and how many bytes they took.
fn colour_number(s: &str) -> Option<(u8, usize)> {
    let digits = s.bytes().take(2).take_while(u8::is_ascii_digit).count();
    (digits > 0).then(|| (s[..digits].parse().unwrap_or(0), digits))
}

/// Splits received text into styled spans, every control character neutralised.
pub fn spans(raw: &str) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut style = Style::default();
    let mut text = String::new();
    // A style switched on and off again with no text between leaves the run going on.
    let flush = |text: &mut String, style: Style, out: &mut Vec<Span>| {
        if text.is_empty() {
            return;
        }
        match out.last_mut() {
            Some(last) if last.style == style => last.text.push_str(text),
            _ => out.push(Span {
                text: text.clone(),
                style,
            }),
        }
        text.clear();
    };
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        let before = style;
        match c {
            '\u{02}' => style.bold = !style.bold,
            '\u{1d}' => style.italic = !style.italic,
            '\u{1f}' => style.underline = !style.underline,
            '\u{1e}' => style.strike = !style.strike,
            '\u{11}' => style.monospace = !style.monospace,
            '\u{16}' => style.reverse = !style.reverse,
            '\u{0f}' => style = Style::default(),
            '\u{03}' => match colour_number(rest) {
                None => (style.fg, style.bg) = (None, None),
                Some((fg, n)) => {
                    rest = &rest[n..];
                    style.fg = (fg < 16).then_some(fg);
                    if let Some(after) = rest.strip_prefix(',')
                        && let Some((bg, n)) = colour_number(after)
                    {
                        rest = &after[n..];
                        style.bg = (bg < 16).then_some(bg);
                    }
                }
            },
            '\u{04}' => {
                // A hex colour: understood (skipped), not shown.
                let hex =
                    |s: &str| s.len() >= 6 && s.as_bytes()[..6].iter().all(u8::is_ascii_hexdigit);
                if hex(rest) {
                    rest = &rest[6..];
                    if let Some(after) = rest.strip_prefix(',')
                        && hex(after)
                    {
                        rest = &after[6..];
                    }
                }
            }
            c => match shown_as(c) {
                Some(shown) => text.push(shown),
                None => text.push(c),
            },
        }
        if style != before {
            flush(&mut text, before, &mut out);
        }
    }
    flush(&mut text, style, &mut out);
    out
}

/// The text alone: formatting dropped, controls shown as pictures.
pub fn plain(raw: &str) -> String {
    if !raw.chars().any(|c| shown_as(c).is_some()) {
        return raw.to_owned();
    }
    spans(raw).into_iter().map(|s| s.text).collect()
}

/// The text with its IRC formatting kept, in a canonical form of Parla's own (each change of
/// style is a reset followed by the codes of the new style), and every other control character
/// shown as a picture: for a front end that draws the styles itself ([`spans`] takes it apart
/// again into the same spans).
pub fn formatted(raw: &str) -> String {
    let mut out = String::new();
    let mut current = Style::default();
    for span in spans(raw) {
        let s = span.style;
        if s != current {
            out.push('\u{0f}');
            for (on, code) in [
                (s.bold, '\u{02}'),
                (s.italic, '\u{1d}'),
                (s.underline, '\u{1f}'),
                (s.strike, '\u{1e}'),
                (s.monospace, '\u{11}'),
                (s.reverse, '\u{16}'),
            ] {
                if on {
                    out.push(code);
                }
            }
            // Both numbers, always two digits (99, "the default", for one not set): text that
            // starts with digits or a comma cannot be taken for part of the code.
            if s.fg.is_some() || s.bg.is_some() {
                let n = |c: Option<u8>| c.unwrap_or(99);
                out.push_str(&format!("\u{03}{:02},{:02}", n(s.fg), n(s.bg)));
            }
            current = s;
        }
        out.push_str(&span.text);
    }
    out
}

/// ANSI colour numbers (SGR 30–37 / 90–97 offsets) for IRC's 16 colours.
const ANSI: [u8; 16] = [
    97, 30, 34, 32, 91, 31, 35, 33, 93, 92, 36, 96, 94, 95, 90, 37,
];

/// The text for a terminal: IRC formatting as escape sequences Parla writes itself, every
/// received control character shown as a picture, and the style reset at the end.
pub fn ansi(raw: &str) -> String {
    let mut out = String::new();
    let mut styled = false;
    for span in spans(raw) {
        let s = span.style;
        if s.is_plain() {
            if styled {
                out.push_str("\x1b[0m");
                styled = false;
            }
        } else {
            let mut codes = vec!["0".to_owned()];
            for (on, code) in [
                (s.bold, "1"),
                (s.italic, "3"),
                (s.underline, "4"),
                (s.reverse, "7"),
                (s.strike, "9"),
            ] {
                if on {
                    codes.push(code.to_owned());
                }
            }
            if let Some(fg) = s.fg {
                codes.push(ANSI[usize::from(fg)].to_string());
            }
            if let Some(bg) = s.bg {
                codes.push((ANSI[usize::from(bg)] + 10).to_string());
            }
            out.push_str(&format!("\x1b[{}m", codes.join(";")));
            styled = true;
        }
        out.push_str(&span.text);
    }
    if styled {
        out.push_str("\x1b[0m");
    }
    out
}

/// A message with its text made safe by `render`, the rest as [`plain`].
fn said(m: &Said, render: fn(&str) -> String) -> Said {
    Said {
        from: plain(&m.from),
        target: plain(&m.target),
        text: render(&m.text),
        kind: m.kind,
        own: m.own,
        time: m.time.as_deref().map(plain),
        id: m.id.as_deref().map(plain),
    }
}

/// `event` with every received string made safe by `render` (names, rooms and reasons always
/// as [`plain`]; message text and topics by `render`).
pub fn event(event: &Event, render: fn(&str) -> String) -> Event {
    let p = |s: &String| plain(s);
    match event.clone() {
        Event::NameRefused { name, reason } => Event::NameRefused {
            name: p(&name),
            reason: p(&reason),
        },
        Event::Registered { name, server } => Event::Registered {
            name: p(&name),
            server: p(&server),
        },
        Event::Joined { room } => Event::Joined { room: p(&room) },
        Event::Switched { room } => Event::Switched { room: p(&room) },
        Event::Members {
            room,
            members,
            complete,
        } => Event::Members {
            room: p(&room),
            members: members
                .iter()
                .map(|m| Member {
                    name: p(&m.name),
                    prefixes: p(&m.prefixes),
                })
                .collect(),
            complete,
        },
        Event::Left { room, current } => Event::Left {
            room: p(&room),
            current: current.as_ref().map(p),
        },
        Event::Kicked {
            room,
            name,
            by,
            reason,
        } => Event::Kicked {
            room: p(&room),
            name: p(&name),
            by: p(&by),
            reason: render(&reason),
        },
        Event::Invited { room, name, by } => Event::Invited {
            room: p(&room),
            name: p(&name),
            by: p(&by),
        },
        Event::ModeChanged { target, by, change } => Event::ModeChanged {
            target: p(&target),
            by: p(&by),
            change: p(&change),
        },
        Event::Typing {
            target,
            name,
            state,
        } => Event::Typing {
            target: p(&target),
            name: p(&name),
            state,
        },
        Event::Message(m) => Event::Message(said(&m, render)),
        Event::History {
            target,
            page,
            messages,
            more,
        } => Event::History {
            target: p(&target),
            page,
            messages: messages.iter().map(|m| said(m, render)).collect(),
            more,
        },
        Event::Reconnecting {
            reason,
            after,
            attempt,
        } => Event::Reconnecting {
            reason: p(&reason),
            after,
            attempt,
        },
        Event::UserJoined { room, name } => Event::UserJoined {
            room: p(&room),
            name: p(&name),
        },
        Event::UserLeft { room, name, reason } => Event::UserLeft {
            room: p(&room),
            name: p(&name),
            reason: reason.as_ref().map(|r| render(r)),
        },
        Event::UserQuit { name, reason } => Event::UserQuit {
            name: p(&name),
            reason: render(&reason),
        },
        Event::Renamed { old, new } => Event::Renamed {
            old: p(&old),
            new: p(&new),
        },
        Event::Topic { room, topic } => Event::Topic {
            room: p(&room),
            topic: render(&topic),
        },
        Event::ServerInfo { text } => Event::ServerInfo {
            text: render(&text),
        },
        Event::ServerError { text } => Event::ServerError { text: p(&text) },
        Event::PingMissed { consecutive, error } => Event::PingMissed {
            consecutive,
            error: p(&error),
        },
        Event::PingUnavailable { reason } => Event::PingUnavailable { reason: p(&reason) },
        Event::ServerShutdown { message } => Event::ServerShutdown {
            message: p(&message),
        },
        Event::Disconnected(why) => Event::Disconnected(match why {
            Disconnect::ClosedByServer { reason } => {
                Disconnect::ClosedByServer { reason: p(&reason) }
            }
            Disconnect::ConnectionLost { reason } => {
                Disconnect::ConnectionLost { reason: p(&reason) }
            }
            other => other,
        }),
        other @ Event::PingReply { .. } => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a server sends: the plain form holds no control character at all, and the
        /// terminal form none but the SGR sequences Parla writes itself.
        #[test]
        fn no_received_text_yields_a_control_character(raw in "(?s).{0,200}") {
            let p = plain(&raw);
            prop_assert!(!p.chars().any(|c| c.is_control()), "{:?}", p);
            let a = ansi(&raw);
            let mut rest = a.as_str();
            while let Some(i) = rest.find('\x1b') {
                let (before, seq) = rest.split_at(i);
                prop_assert!(!before.chars().any(|c| c.is_control()), "{:?}", a);
                let end = seq.find('m').expect("an SGR sequence ends with m");
                prop_assert!(seq[2..end].chars().all(|c| c.is_ascii_digit() || c == ';'), "{:?}", a);
                prop_assert!(seq.starts_with("\x1b["), "{:?}", a);
                rest = &seq[end + 1..];
            }
            prop_assert!(!rest.chars().any(|c| c.is_control()), "{:?}", a);
        }
    }

    proptest! {
        /// The window's form keeps exactly the styles and text, and no control character but
        /// IRC's formatting codes.
        #[test]
        fn formatted_text_keeps_the_spans_and_nothing_else(raw in "(?s)[\x00-\x20a-c\u{80}-\u{9f}\u{202e}0-9,]{0,80}") {
            let f = formatted(&raw);
            prop_assert_eq!(spans(&f), spans(&raw));
            let codes = ['\u{02}', '\u{03}', '\u{0f}', '\u{11}', '\u{16}', '\u{1d}', '\u{1e}', '\u{1f}'];
            prop_assert!(
                f.chars().all(|c| !c.is_control() || codes.contains(&c)),
                "{:?}", f
            );
        }
    }

    const ATTACK: &str = "\x1b]2;PWNED\x07 \x1b[31mRED\x1b[2K\r\x08\u{9b}31m\u{202e}evil";

    #[test]
    fn no_received_control_character_survives() {
        for shown in [plain(ATTACK), ansi(ATTACK)] {
            assert!(
                !shown
                    .chars()
                    .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
                "{shown:?}"
            );
        }
        assert_eq!(
            plain(ATTACK),
            "␛]2;PWNED␇ ␛[31mRED␛[2K␍␈\u{fffd}31m\u{fffd}evil"
        );
    }

    #[test]
    fn irc_formatting_becomes_styles() {
        let got = spans("a\x02bold\x02 \x0304,02red on blue\x03 \x1dit\x0f end");
        let texts: Vec<(&str, Style)> = got.iter().map(|s| (s.text.as_str(), s.style)).collect();
        let bold = Style {
            bold: true,
            ..Style::default()
        };
        let red = Style {
            fg: Some(4),
            bg: Some(2),
            ..Style::default()
        };
        let italic = Style {
            italic: true,
            ..Style::default()
        };
        assert_eq!(
            texts,
            vec![
                ("a", Style::default()),
                ("bold", bold),
                (" ", Style::default()),
                ("red on blue", red),
                (" ", Style::default()),
                ("it", italic),
                (" end", Style::default()),
            ]
        );
        assert_eq!(plain("\x0312,5x\x04ff00aa,000000y\x0399z"), "xyz");
    }

    #[test]
    fn a_style_switched_off_and_on_with_no_text_between_leaves_one_run() {
        assert_eq!(
            spans("\u{202e}\u{2}\u{2}\u{80}"),
            [Span {
                text: "\u{fffd}\u{fffd}".into(),
                style: Style::default()
            }]
        );
    }

    #[test]
    fn the_window_gets_canonical_formatting_and_pictures() {
        assert_eq!(formatted("plain"), "plain");
        assert_eq!(
            formatted("\x02b\x1b[2J\x02 \x0304,2r"),
            "\x0f\x02b␛[2J\x0f \x0f\x0304,02r"
        );
        // A colour followed by text that looks like more of it.
        assert_eq!(formatted("\x034\x02\x02,5"), "\x0f\x0304,99,5");
    }

    #[test]
    fn the_terminal_gets_only_parlas_own_escapes_reset_at_the_end() {
        assert_eq!(ansi("plain"), "plain");
        assert_eq!(ansi("\x02b\x02 n"), "\x1b[0;1mb\x1b[0m n");
        assert_eq!(ansi("\x0304red"), "\x1b[0;91mred\x1b[0m");
    }

    #[test]
    fn every_field_of_an_event_is_made_safe() {
        let m = Said {
            from: "x\x1b".into(),
            target: "#r\x07".into(),
            text: ATTACK.into(),
            kind: parla_net::client::MessageKind::Normal,
            own: false,
            time: Some("\x1b[2J".into()),
            id: Some("id\x1b]0;title\x07".into()),
        };
        let history = Event::History {
            target: "#r\x1b".into(),
            page: parla_net::client::HistoryPage::Recent,
            messages: vec![m.clone()],
            more: false,
        };
        for ev in [Event::Message(m), history] {
            let safe = format!("{:?}", event(&ev, plain));
            assert!(
                !safe.contains("\\u{1b}") && !safe.contains("\\u{7}"),
                "{safe}"
            );
        }
        let quit = event(
            &Event::Disconnected(Disconnect::ClosedByServer {
                reason: "bye\x1b[2J".into(),
            }),
            plain,
        );
        assert_eq!(
            quit,
            Event::Disconnected(Disconnect::ClosedByServer {
                reason: "bye␛[2J".into()
            })
        );
    }
}
