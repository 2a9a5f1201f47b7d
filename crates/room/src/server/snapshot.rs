//! The core's part of a cluster's snapshot ([`crate::cluster::Replica::snapshot`]): the state
//! the log decided, which a starting server takes instead of replaying the log up to there.
//!
//! What is serialized is decided on [`Server`]'s fields (`#[serde(skip)]` marks this server's
//! own business). A restored core must make exactly the decisions of one that replayed: it
//! holds the same maps in the same order (every map that is iterated is ordered; the hash maps
//! are only looked up), and every connection in it is another server's (a starting server has
//! no number yet), so nothing of it is timed here.

use std::mem;

use super::{Conn, Server};
use crate::cluster::{SnapshotError, put_part, take_part};
use crate::history::{History, MemoryHistory};
use crate::time::Millis;

/// The history a deserialized core holds until it is given the server's own.
pub(super) fn no_history() -> Box<dyn History> {
    Box::new(MemoryHistory::default())
}

impl Server {
    /// Appends the state the log decided to `out`, then everything its history keeps. An
    /// error if its history store cannot be snapshotted (one on disk).
    pub fn save_state(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        self.save_core(out)?;
        self.save_history(out)
    }

    /// The first half of [`Server::save_state`]: the state the log decided, but the history.
    pub fn save_core(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        put_part(out, self, "the core's state")
    }

    /// The second half of [`Server::save_state`]: everything its history keeps.
    pub fn save_history(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        self.history.save(out)
    }

    /// A copy of its history as it is now, to serialize later ([`History::copy`]).
    pub fn history_copy(&self) -> Option<Box<dyn History>> {
        self.history.copy()
    }

    /// Replaces the state the log decided with the one [`Server::save_state`] wrote in `bytes`
    /// (on any server of the cluster); this server's settings, clock and history store stay
    /// its own, and every connection in it is another server's. Unchanged on an error.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let (mut state, history): (Server, &[u8]) = take_part(bytes, "chat state")?;
        self.history.load(history)?;
        mem::swap(&mut state.config, &mut self.config);
        mem::swap(&mut state.history, &mut self.history);
        mem::swap(&mut state.out, &mut self.out);
        state.started = self.started;
        state.next_id = self.next_id;
        state.cluster = self.cluster;
        for id in state.conns.ids().collect::<Vec<_>>() {
            let conn: &mut Conn = state.conns.live_mut(id);
            conn.timer_due = Millis(u64::MAX);
            conn.ping_sent = None;
        }
        *self = state;
        Ok(())
    }
}
