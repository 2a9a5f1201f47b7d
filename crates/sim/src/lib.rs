//! `parla-sim`: Parla's deterministic simulation on turmoil.
//!
//! The real server runtime and client session run unchanged inside a simulated network whose
//! time, ordering and faults are decided by a seed, so every run replays exactly.
//!
//! - [`transport`]: [`Sim`], turmoil's TCP behind [`parla_net::Transport`].
//! - [`ping`]: a [`parla_net::Pinger`] that sends real datagrams through the simulated network.
//! - [`script`]: the scenario language (`tests/scenarios/*.scn`).
//! - [`journal`]: the transcript, and the records the checkers compare.
//! - [`runner`]: runs a script under a seed ([`runner::run`]).
//! - [`check`]: the invariants checked after every run.
//! - [`explore`]: random workloads and faults from a seed.
//!
//! Keep this crate (and so turmoil, which turns on tokio's `test-util`) out of the release
//! binaries' builds: build them with `-p parla-net` / `-p parla-gui`.

pub mod check;
pub mod explore;
pub mod journal;
pub mod ping;
pub mod runner;
pub mod script;
pub mod transport;

pub use runner::{Outcome, RunOptions, run};
pub use script::Script;
pub use transport::Sim;
