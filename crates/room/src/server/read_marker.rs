//! `draft/read-marker`: how far a user has read each room and conversation (`MARKREAD`), at
//! most [`MAX_MARKERS`] targets (the oldest is forgotten). They are kept with the name in
//! history, so the name's next connection (after a reconnect, a server restart) has them too.

use super::commands::Params;
use super::{ConnId, Server};
use crate::names::casefold;
use crate::time::Millis;

/// Targets one connection keeps a read marker for.
pub(super) const MAX_MARKERS: usize = 100;

/// Whether `ts` is a timestamp as IRCv3 writes them: `YYYY-MM-DDThh:mm:ss.sssZ`.
pub(super) fn valid_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

impl Server {
    /// `MARKREAD <target> [timestamp=<ts>]`
    pub(super) fn on_markread(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        let Some(target) = p.get(0).filter(|t| !t.is_empty()) else {
            return self.send_server(
                now,
                id,
                "FAIL",
                &[
                    "MARKREAD",
                    "NEED_MORE_PARAMS",
                    "MARKREAD <target> [timestamp=<time>]",
                ],
            );
        };
        let key = casefold(target);
        if let Some(given) = p.get(1) {
            let Some(ts) = given
                .strip_prefix("timestamp=")
                .filter(|t| valid_timestamp(t))
            else {
                return self.send_server(
                    now,
                    id,
                    "FAIL",
                    &[
                        "MARKREAD",
                        "INVALID_PARAMS",
                        target,
                        "The timestamp must be timestamp=YYYY-MM-DDThh:mm:ss.sssZ",
                    ],
                );
            };
            let markers = &mut self.conns.live_mut(id).read_markers;
            match markers.iter_mut().find(|(k, _)| *k == key) {
                // A marker never moves back.
                Some((_, stored)) if stored.as_str() < ts => *stored = ts.to_owned(),
                Some(_) => {}
                None => {
                    if markers.len() >= MAX_MARKERS {
                        markers.remove(0);
                    }
                    markers.push((key.clone(), ts.to_owned()));
                }
            }
            // Kept with the name, for its next connection too.
            let c = self.conns.live(id);
            if let Some(nick) = c.nick.as_deref() {
                let markers = c.read_markers.clone();
                self.history.set_markers(&casefold(nick), &markers);
            }
        }
        self.send_markread(now, id, target);
    }

    /// `MARKREAD <target> timestamp=<ts>` (or `*` when none) to `id`.
    pub(super) fn send_markread(&mut self, now: Millis, id: ConnId, target: &str) {
        let key = casefold(target);
        let c = self.conns.live(id);
        let shown = match c.read_markers.iter().find(|(k, _)| *k == key) {
            Some((_, ts)) => format!("timestamp={ts}"),
            None => "*".to_owned(),
        };
        let prefix = self.config.server_name.clone();
        self.fanout(
            now,
            std::iter::once(id),
            Some(&prefix),
            "MARKREAD",
            &[target, &shown],
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_checked_for_their_form() {
        assert!(super::valid_timestamp("2026-12-01T18:50:00.000Z"));
        assert!(!super::valid_timestamp("2026-12-01T18:50:00Z"));
        assert!(!super::valid_timestamp("not-a-timestamp"));
        assert!(!super::valid_timestamp("*"));
    }
}
