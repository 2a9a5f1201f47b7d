//! Liveness: answering a client's `PING`, pinging silent users, timing out those that stay
//! silent or never register, and keeping the timer heap small. One heap entry per connection,
//! re-armed lazily, so that a line from a client costs no heap operation.

use std::cmp::Reverse;

use super::commands::Params;
use super::{ConnId, Server};
use crate::time::Millis;

impl Server {
    /// The time is now `now`: send due `PING`s and close connections that timed out.
    pub fn handle_timeout(&mut self, now: Millis) {
        #[cfg(feature = "deliberate-bugs")]
        if self.config.bug == Some(super::config::Bug::TimeoutsIgnored) {
            return;
        }
        while let Some(&Reverse((due, id))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.conns.get_mut(id) else {
                continue; // A stale entry of a connection that is gone.
            };
            if c.timer_due != due {
                continue; // Superseded by an earlier deadline (see `try_register`).
            }
            if !c.registered {
                let deadline = c.connected_at.plus(self.config.registration_timeout_ms);
                if now >= deadline {
                    let secs = self.config.registration_timeout_ms / 1000;
                    let reason = format!(
                        "Registration timeout: no valid NICK and USER within {secs} seconds"
                    );
                    self.time_out(now, id, reason);
                } else {
                    self.timers.push(Reverse((deadline, id)));
                }
                continue;
            }
            match c.ping_sent {
                Some(sent) if c.last_seen < sent => {
                    let deadline = sent.plus(self.config.ping_timeout_ms);
                    if now >= deadline {
                        let secs = now.since(c.last_seen) / 1000;
                        self.time_out(now, id, format!("Ping timeout: {secs} seconds"));
                    } else {
                        c.timer_due = deadline;
                        self.timers.push(Reverse((deadline, id)));
                    }
                }
                _ => {
                    c.ping_sent = None;
                    let due = c.last_seen.plus(self.config.ping_interval_ms);
                    if now >= due {
                        c.ping_sent = Some(now);
                        c.timer_due = now.plus(self.config.ping_timeout_ms);
                        self.timers.push(Reverse((c.timer_due, id)));
                        let server = self.config.server_name.clone();
                        self.send_msg(now, id, None, "PING", &[&server]);
                    } else {
                        c.timer_due = due;
                        self.timers.push(Reverse((due, id)));
                    }
                }
            }
        }
    }

    /// `id`'s timer ran out: it leaves, or in a cluster its departure is handed to the runtime
    /// to publish (every server, this one too, applies it from the log).
    fn time_out(&mut self, now: Millis, id: ConnId, reason: String) {
        if self.cluster.is_some() {
            if let Some(c) = self.conns.get_mut(id) {
                c.timer_due = Millis(u64::MAX);
            }
            self.expired.push((id, reason));
        } else {
            self.quit(now, id, &reason);
        }
    }

    /// `PING <token>`
    pub(super) fn on_ping(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [token] = p.required();
        let server = self.config.server_name.clone();
        self.send_server(now, id, "PONG", &[&server, token]);
    }

    /// `PONG [<token>]`: nothing to do, as any line counts as a sign of life and `handle_line`
    /// noted it.
    pub(super) fn on_pong(&mut self, _: Millis, _: ConnId, _: Params<'_, 0>) {}

    /// Drops the timer entries of departed connections once they outnumber the live ones.
    /// Entries are removed lazily when due, but a departed user's entry is due only at its next
    /// PING: under churn (many short sessions) the heap would otherwise hold every recent
    /// session, and its capacity would never come back. Amortised O(1) per departure.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.conns.len() + 64 {
            return;
        }
        let conns = &self.conns;
        self.timers
            .retain(|Reverse((due, id))| conns.get(*id).is_some_and(|c| c.timer_due == *due));
        self.timers.shrink_to(2 * self.timers.len() + 64);
    }
}
