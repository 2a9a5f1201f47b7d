//! Server operators: `OPER` against the configured operators (their passwords checked by the
//! front end's verifier, argon2 in `parla-server`), and what an operator may do: `KILL`,
//! `WALLOPS`, and moderate any room. Also `INFO`.

use std::collections::VecDeque;

use super::commands::Params;
use super::replies::truncate;
use super::{ConnId, Server};
use crate::limits::*;
use crate::numerics::*;
use crate::time::Millis;

/// Password checks (`OPER`) the whole server makes per [`OPER_WINDOW_MS`]: a check is slow on
/// purpose (argon2), and it runs in the core, so guessing cannot cost the room more than this.
pub(super) const OPER_CHECKS: usize = 5;
pub(super) const OPER_WINDOW_MS: u64 = 10_000;

/// A server operator: the name `OPER` gives, and the stored form of its password that
/// [`Config::verify_password`](super::Config::verify_password) checks a password against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub password_hash: String,
}

impl Server {
    /// Whether `id` is a server operator.
    pub(super) fn is_oper(&self, id: ConnId) -> bool {
        self.conns.get(id).is_some_and(|c| c.oper.is_some())
    }

    /// `OPER <name> <password>`
    pub(super) fn on_oper(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [name] = p.required();
        let Some(password) = p.get(1) else {
            return self.numeric(
                now,
                id,
                ERR_NEEDMOREPARAMS,
                &["OPER", "Not enough parameters: OPER <name> <password>"],
            );
        };
        let checks = &mut self.oper_checks;
        while checks
            .front()
            .is_some_and(|t| now.since(*t) >= OPER_WINDOW_MS)
        {
            checks.pop_front();
        }
        if checks.len() >= OPER_CHECKS {
            let text = format!(
                "Too many OPER attempts on this server (at most {OPER_CHECKS} per {} seconds); try again in a few seconds",
                OPER_WINDOW_MS / 1000
            );
            return self.send_server(now, id, "FAIL", &["OPER", "RATE_LIMITED", &text]);
        }
        checks.push_back(now);
        let found = self.config.operators.iter().find(|o| o.name == name);
        let verified = match (found, self.config.verify_password) {
            (Some(op), Some(verify)) => verify(&op.password_hash, password),
            _ => false,
        };
        if found.is_none() {
            return self.numeric(
                now,
                id,
                ERR_NOOPERHOST,
                &["No such operator: check the name given to OPER"],
            );
        }
        if !verified {
            return self.numeric(now, id, ERR_PASSWDMISMATCH, &["Password incorrect"]);
        }
        let c = self.conns.live_mut(id);
        let first = c.oper.is_none();
        c.oper = Some(name.to_owned());
        let (me, prefix) = (c.display_nick().to_owned(), c.prefix.clone());
        self.numeric(now, id, RPL_YOUREOPER, &["You are now an IRC operator"]);
        if first {
            self.fanout(
                now,
                std::iter::once(id),
                Some(&prefix),
                "MODE",
                &[&me, "+o"],
            );
        }
    }

    /// `KILL <nick> [<reason>]`
    pub(super) fn on_kill(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [nick] = p.required();
        let Some(oper) = self.conns.live(id).oper.clone() else {
            return self.no_privileges(now, id);
        };
        let Some(target) = self.registered_target(now, id, nick) else {
            return;
        };
        let reason = p
            .get(1)
            .filter(|r| !r.is_empty())
            .unwrap_or("no reason given");
        let reason = format!("Killed ({oper} ({}))", truncate(reason, KICK_LEN));
        self.quit(now, target, &reason);
    }

    /// `WALLOPS <text>`: to every user with `+w`, and back to its operator.
    pub(super) fn on_wallops(&mut self, now: Millis, id: ConnId, p: Params<'_, 1>) {
        let [text] = p.required();
        if !self.is_oper(id) {
            return self.no_privileges(now, id);
        }
        let prefix = self.conns.live(id).prefix.clone();
        let to: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|&(other, c)| c.registered && (c.wallops || other == id))
            .map(|(other, _)| other)
            .collect();
        self.fanout(now, to.into_iter(), Some(&prefix), "WALLOPS", &[text]);
    }

    /// `INFO`
    pub(super) fn on_info(&mut self, now: Millis, id: ConnId, _: Params<'_, 0>) {
        let version = format!("Parla {}", self.config.version);
        for line in [
            version.as_str(),
            "A group-chat server that speaks IRC, written in Rust.",
            "Source and documentation: see the README of the Parla project.",
        ] {
            self.numeric(now, id, RPL_INFO, &[line]);
        }
        self.numeric(now, id, RPL_ENDOFINFO, &["End of /INFO list"]);
    }

    fn no_privileges(&mut self, now: Millis, id: ConnId) {
        self.numeric(
            now,
            id,
            ERR_NOPRIVILEGES,
            &["Permission Denied- You're not an IRC operator"],
        );
    }
}

/// The server-wide record of recent `OPER` checks (see [`OPER_CHECKS`]).
pub(super) type OperChecks = VecDeque<Millis>;
