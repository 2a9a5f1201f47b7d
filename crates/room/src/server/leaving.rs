//! Leaving: `QUIT`, and forgetting a connection however it ends (QUIT, a timeout, a bad
//! password, a dropped socket), so that a name, a room seat and a counter are freed in exactly
//! one place.

use super::commands::Params;
#[cfg(feature = "deliberate-bugs")]
use super::config::Bug;
use super::{ConnId, Server};
use crate::time::Millis;

impl Server {
    /// `QUIT [<reason>]`
    pub(super) fn on_quit(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        self.quit(now, id, &super::quit_reason(p.get(0)));
    }

    /// The connection leaves with `reason`: peers see a `QUIT`, it gets `ERROR` and is closed.
    pub(super) fn quit(&mut self, now: Millis, id: ConnId, reason: &str) {
        let host = match self.conns.get(id) {
            Some(c) => c.host.clone(),
            None => return,
        };
        self.remove_conn(now, id, reason);
        self.close(id, &format!("Closing Link: {host} ({reason})"), reason);
    }

    /// Forgets `id`: frees its name, tells everyone who shared a room with it.
    pub(super) fn remove_conn(&mut self, now: Millis, id: ConnId, reason: &str) {
        let peers = self.peers_told_of_leaving(id);
        self.remember_name(now, id);
        self.release_history(now, id);
        self.notify_monitors(now, id, false);
        self.forget_monitoring(id);
        let Some(c) = self.conns.get(id) else { return };
        let (registered, prefix) = (c.registered, c.prefix.clone());
        if registered {
            self.users -= 1;
            if self.is_local(id) {
                self.local_users -= 1;
            }
            if c.invisible {
                self.invisible_users -= 1;
                #[cfg(feature = "deliberate-bugs")]
                if self.config.bug == Some(Bug::InvisibleCountKept) {
                    self.invisible_users += 2;
                }
            }
        }
        let rooms: Vec<String> = c.rooms.iter().cloned().collect();
        if let Some(nick) = c.nick.clone() {
            let key = self.nick_key(&nick);
            #[cfg(feature = "deliberate-bugs")]
            let keep =
                self.config.bug == Some(Bug::NameKeptOnDisconnect) && !reason.starts_with("Quit");
            #[cfg(not(feature = "deliberate-bugs"))]
            let keep = false;
            if !keep {
                self.nicks.remove(&key);
            }
        }
        for key in rooms {
            self.leave_room(id, &key);
        }
        self.conns.remove(id);
        self.compact_timers();
        if registered {
            #[cfg(feature = "deliberate-bugs")]
            let peers: std::collections::BTreeSet<ConnId> =
                if self.config.bug == Some(Bug::QuitUntoldToOne) {
                    peers.into_iter().skip(1).collect()
                } else {
                    peers
                };
            self.fanout(now, peers.into_iter(), Some(&prefix), "QUIT", &[reason]);
        }
    }
}
