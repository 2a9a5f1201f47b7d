//! `MONITOR`: a user's list of names to be told about when they come online or go offline
//! (IRCv3 monitor), at most [`MONITOR_MAX`] names each.

use super::commands::Params;
use super::{ConnId, Server};
use crate::names::casefold;
use crate::numerics::*;
use crate::time::Millis;

/// Names one user may monitor (`MONITOR=100`).
pub const MONITOR_MAX: usize = 100;

impl Server {
    /// `MONITOR + <nick>[,<nick>…]`, `- <nicks>`, `C`, `L`, `S`
    pub(super) fn on_monitor(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [op] = p.required();
        let targets: Vec<&str> = p
            .get(1)
            .unwrap_or("")
            .split(',')
            .filter(|n| !n.is_empty())
            .collect();
        match op {
            "+" => {
                let mut online = Vec::new();
                let mut offline = Vec::new();
                for (i, nick) in targets.iter().enumerate() {
                    let key = casefold(nick);
                    let mine = &self.conns.live(id).monitoring;
                    if !mine.contains(&key) {
                        if mine.len() >= MONITOR_MAX {
                            let rest = targets[i..].join(",");
                            let max = MONITOR_MAX.to_string();
                            self.numeric(
                                now,
                                id,
                                ERR_MONLISTFULL,
                                &[&max, &rest, "Monitor list is full"],
                            );
                            break;
                        }
                        self.conns.live_mut(id).monitoring.push(key.clone());
                        self.watchers.entry(key.clone()).or_default().push(id);
                    }
                    match self.online_prefix(&key) {
                        Some(prefix) => online.push(prefix),
                        None => offline.push((*nick).to_owned()),
                    }
                }
                self.monitor_replies(now, id, &online, &offline);
            }
            "-" => {
                for nick in targets {
                    self.unwatch(id, &casefold(nick));
                }
            }
            "C" | "c" => self.forget_monitoring(id),
            "L" | "l" => {
                let list = self.conns.live(id).monitoring.clone();
                self.numeric_list_by(now, id, RPL_MONLIST, &[], &list, false, ',');
                self.numeric(now, id, RPL_ENDOFMONLIST, &["End of MONITOR list"]);
            }
            "S" | "s" => {
                let list = self.conns.live(id).monitoring.clone();
                let (mut online, mut offline) = (Vec::new(), Vec::new());
                for key in list {
                    match self.online_prefix(&key) {
                        Some(prefix) => online.push(prefix),
                        None => offline.push(key),
                    }
                }
                self.monitor_replies(now, id, &online, &offline);
            }
            _ => {}
        }
    }

    /// `730`s for `online` (prefixes), `731`s for `offline` (names), as few lines as fit.
    fn monitor_replies(&mut self, now: Millis, id: ConnId, online: &[String], offline: &[String]) {
        if !online.is_empty() {
            self.numeric_list_by(now, id, RPL_MONONLINE, &[], online, false, ',');
        }
        if !offline.is_empty() {
            self.numeric_list_by(now, id, RPL_MONOFFLINE, &[], offline, false, ',');
        }
    }

    /// The prefix of the registered holder of folded name `key`, if online.
    fn online_prefix(&self, key: &str) -> Option<String> {
        let &holder = self.nicks.get(key)?;
        let c = self.conns.get(holder).filter(|c| c.registered)?;
        Some(c.prefix.clone())
    }

    /// Stops `id` watching folded name `key`.
    fn unwatch(&mut self, id: ConnId, key: &str) {
        if let Some(c) = self.conns.get_mut(id) {
            c.monitoring.retain(|k| k != key);
        }
        if let Some(ids) = self.watchers.get_mut(key) {
            ids.retain(|&w| w != id);
            if ids.is_empty() {
                self.watchers.remove(key);
            }
        }
    }

    /// Tells those who monitor registered connection `id`'s name that it came online (`730`)
    /// or went offline (`731`).
    pub(super) fn notify_monitors(&mut self, now: Millis, id: ConnId, online: bool) {
        let Some(c) = self.conns.get(id).filter(|c| c.registered) else {
            return;
        };
        let Some(nick) = c.nick.clone() else { return };
        let Some(watchers) = self.watchers.get(&casefold(&nick)).cloned() else {
            return;
        };
        let shown = if online { c.prefix.clone() } else { nick };
        let code = if online {
            RPL_MONONLINE
        } else {
            RPL_MONOFFLINE
        };
        for w in watchers.into_iter().filter(|&w| w != id) {
            self.numeric(now, w, code, &[&shown]);
        }
    }

    /// Those who share a room with `id`, and those who monitor its name and asked for
    /// `extended-monitor` (who are then told of its AWAY and SETNAME as if they shared one).
    pub(super) fn peers_and_monitors(&self, id: ConnId) -> std::collections::BTreeSet<ConnId> {
        let mut all = self.peers(id);
        let nick = self.conns.get(id).and_then(|c| c.nick.as_deref());
        if let Some(watchers) = nick.and_then(|n| self.watchers.get(&casefold(n))) {
            all.extend(watchers.iter().copied().filter(|&w| {
                w != id && self.conns.get(w).is_some_and(|c| c.caps.extended_monitor())
            }));
        }
        all
    }

    /// Forgets every name `id` monitors (`MONITOR C`, and a departing connection).
    pub(super) fn forget_monitoring(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        for key in std::mem::take(&mut c.monitoring) {
            self.unwatch(id, &key);
        }
    }
}
