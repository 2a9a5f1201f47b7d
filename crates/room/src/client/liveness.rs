//! Liveness and endings: answering the server's `PING`, probing a silent server with our own,
//! what an ICMP pinger's reports mean, the server's `ERROR`, our `QUIT`, and a link that broke.
//! Every way a session ends is decided here, so each has one [`Disconnect`] and one wording.

use std::time::Duration;

use super::{Disconnect, Event, PingReport, Session};
use crate::limits::SHUTDOWN_ERROR;
use crate::time::Millis;

/// How long after our `QUIT` we wait for the server to close the link before closing it
/// ourselves (it answers with `ERROR` and closes; a dead one never would).
pub const QUIT_WAIT_MS: u64 = 3_000;

/// The token of our liveness `PING`; the server echoes it in its `PONG`.
const LIVENESS_TOKEN: &str = "parla-liveness";

impl Session {
    /// ICMP says the server's host is up; only traffic says our connection still is (a
    /// restarted server leaves a half-open connection that pings can't see). So the session
    /// always probes a silent server with an IRC `PING`, ICMP or not: after
    /// `irc_ping_interval_ms` of silence it sends one, and gives up `irc_ping_timeout_ms`
    /// later. While quitting, the only deadline is the end of the wait for the server to close.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.ended.is_some() {
            return None;
        }
        if let Some(deadline) = self.quit_deadline {
            return Some(deadline);
        }
        let liveness = self.liveness_deadline();
        Some(
            self.history_deadline()
                .map_or(liveness, |h| h.min(liveness)),
        )
    }

    /// When the silence watch acts next: a `PING` after `irc_ping_interval_ms` of silence, the
    /// end `irc_ping_timeout_ms` after that.
    fn liveness_deadline(&self) -> Millis {
        let silence = self.last_rx.plus(self.config.irc_ping_interval_ms);
        if self.irc_ping_sent {
            silence.plus(self.config.irc_ping_timeout_ms)
        } else {
            silence
        }
    }

    /// The time is `now`: whatever deadline of [`Session::poll_timeout`] has passed is acted on.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.ended.is_some() {
            return;
        }
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.quit_deadline.is_none() && self.history_deadline().is_some_and(|h| h <= now) {
            self.history_timeout(now);
        }
        if self.quit_deadline.is_none() && now < self.liveness_deadline() {
            return;
        }
        if self.quit_deadline.is_some() {
            self.end(Disconnect::Quit);
        } else if self.irc_ping_sent {
            self.end(Disconnect::ServerNotResponding {
                silent: Duration::from_millis(now.since(self.last_rx)),
            });
        } else {
            self.irc_ping_sent = true;
            self.send(format!("PING :{LIVENESS_TOKEN}"));
        }
    }

    /// A report of the ICMP pinger. A reached miss limit ends the session (with a `QUIT` for a
    /// server that may still be there); the rest is news for the person. Not taken while
    /// quitting.
    pub fn handle_ping(&mut self, _now: Millis, report: PingReport) {
        if self.ended.is_some() || self.quit_deadline.is_some() {
            return;
        }
        match report {
            PingReport::Reply { rtt } => self.emit(Event::PingReply { rtt }),
            PingReport::Missed { consecutive, error } => {
                self.emit(Event::PingMissed { consecutive, error })
            }
            PingReport::Unavailable { reason } => self.emit(Event::PingUnavailable { reason }),
            PingReport::Failed { misses, target } => {
                self.send("QUIT :Ping to server failed".to_owned());
                self.end(Disconnect::PingFailed { target, misses });
            }
        }
    }

    /// The connection closed under us (`error` says how, if it broke). After our `QUIT` that is
    /// the expected end.
    pub fn handle_closed(&mut self, _now: Millis, error: Option<String>) {
        let why = if self.quit_deadline.is_some() {
            Disconnect::Quit
        } else {
            Disconnect::ConnectionLost {
                reason: error.unwrap_or_else(|| {
                    "the server closed the connection without a word".to_owned()
                }),
            }
        };
        self.end(why);
    }

    /// Writing a line failed: the connection is lost, and the lines after it are dropped. (A
    /// session that already ended keeps its reason: its last `QUIT` was a courtesy.)
    pub fn handle_send_failed(&mut self, _now: Millis, error: String) {
        self.transmits.clear();
        self.end(Disconnect::ConnectionLost { reason: error });
    }

    /// Any line at all: the server is alive, and an outstanding liveness `PING` is answered.
    pub(super) fn heard_from_server(&mut self, now: Millis) {
        self.last_rx = now;
        self.irc_ping_sent = false;
    }

    /// `PING :<token>` → `PONG :<token>`.
    pub(super) fn on_ping(&mut self, token: &str) {
        self.send(format!("PONG :{token}"));
    }

    /// `ERROR :<reason>`: the server closes the link. After our `QUIT` that is the goodbye; a
    /// shutdown is told apart from any other reason by the exact reason every Parla server
    /// gives ([`SHUTDOWN_ERROR`]), never by the wording of a notice.
    pub(super) fn on_error(&mut self, reason: &str) {
        if self.quit_deadline.is_some() {
            self.end(Disconnect::Quit);
        } else if reason == SHUTDOWN_ERROR {
            self.emit(Event::ServerShutdown {
                message: reason.to_owned(),
            });
            self.end(Disconnect::ServerShutdown);
        } else {
            self.end(Disconnect::ClosedByServer {
                reason: reason.to_owned(),
            });
        }
    }

    /// `QUIT :<reason>` ("Leaving" by default), then wait up to [`QUIT_WAIT_MS`] for the
    /// server to close.
    pub(super) fn command_quit(&mut self, now: Millis, reason: Option<String>) {
        self.quit_deadline = Some(now.plus(QUIT_WAIT_MS));
        let reason = reason.unwrap_or_else(|| "Leaving".to_owned());
        self.send(format!("QUIT :{reason}"));
    }
}
