//! `WHOWAS`: who recently held a name. A bounded history of departed users and of names given
//! up by a rename, the newest first ([`Config::whowas_history`](super::Config::whowas_history)
//! entries; the oldest is forgotten).

use std::collections::VecDeque;

use super::commands::Params;
use super::{ConnId, Server};
use crate::names::{casefold, mask_matches};
use crate::numerics::*;
use crate::time::Millis;

/// One name as it was held.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Was {
    nick: String,
    user: String,
    host: String,
    realname: String,
    /// When it was given up.
    at: Millis,
}

/// The history, the newest at the front.
pub(super) type History = VecDeque<Was>;

impl Server {
    /// Remembers the name registered connection `id` holds now, as it gives it up.
    pub(super) fn remember_name(&mut self, now: Millis, id: ConnId) {
        let max = self.config.whowas_history;
        let Some(c) = self.conns.get(id).filter(|c| c.registered) else {
            return;
        };
        if max == 0 {
            return;
        }
        let was = Was {
            nick: c.nick.clone().unwrap_or_default(),
            user: c.user.clone().unwrap_or_default(),
            host: c.host.clone(),
            realname: c.realname.clone(),
            at: now,
        };
        self.whowas.truncate(max - 1);
        self.whowas.push_front(was);
    }

    /// `WHOWAS <nick>[,<nick>…] [<count>]`: the newest `count` entries (all if ≤ 0) per name.
    pub(super) fn on_whowas(&mut self, now: Millis, id: ConnId, p: Params<'_, 0>) {
        let Some(nicks) = p.get(0).filter(|n| !n.is_empty()) else {
            return self.numeric(
                now,
                id,
                ERR_NONICKNAMEGIVEN,
                &["No nickname given: WHOWAS <nick> [<count>]"],
            );
        };
        let count = p
            .get(1)
            .and_then(|c| c.parse::<i64>().ok())
            .filter(|&c| c > 0)
            .map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX));
        let server = self.config.server_name.clone();
        for nick in nicks
            .split(',')
            .filter(|n| !n.is_empty())
            .take(crate::limits::MAX_TARGETS)
        {
            let folded = casefold(nick);
            let found: Vec<Was> = self
                .whowas
                .iter()
                .filter(|w| casefold(&w.nick) == folded || mask_matches(nick, &w.nick))
                .take(count)
                .cloned()
                .collect();
            if found.is_empty() {
                self.numeric(
                    now,
                    id,
                    ERR_WASNOSUCHNICK,
                    &[nick, "There was no such nickname"],
                );
            }
            for w in found {
                let when = format!("left at {}", w.at.to_rfc3339());
                self.numeric(
                    now,
                    id,
                    RPL_WHOWASUSER,
                    &[&w.nick, &w.user, &w.host, "*", &w.realname],
                );
                self.numeric(now, id, RPL_WHOISSERVER, &[&w.nick, &server, &when]);
            }
            self.numeric(now, id, RPL_ENDOFWHOWAS, &[nick, "End of WHOWAS"]);
        }
    }
}
