//! `parla-sim`: Parla's deterministic simulation on turmoil.
//!
//! The real server runtime and client session run unchanged inside a simulated network whose
//! time, ordering and faults are decided by a seed, so every run replays exactly.
//!
//! - [`broker`]: the cluster's log as a simulated broker host ([`broker::SimLog`]).
//! - [`transport`]: [`Sim`], turmoil's TCP behind [`parla_net::Transport`].
//! - [`ping`]: a [`parla_net::Pinger`] that sends real datagrams through the simulated network.
//! - [`script`]: the scenario language (`tests/scenarios/*.scn`).
//! - [`journal`]: the transcript, and the records the checkers compare.
//! - [`runner`]: runs a script under a seed ([`runner::run`]).
//! - [`model`]: the reference model every server is checked against as it runs.
//! - [`check`]: the invariants checked after every run.
//! - [`explore`]: random workloads and faults from a seed.
//!
//! Keep this crate (and so turmoil, which turns on tokio's `test-util`) out of the release
//! binaries' builds: build them with `-p parla-net` / `-p parla-gui`.

pub mod broker;
pub mod check;
pub mod conduct;
pub mod explore;
pub mod journal;
pub mod model;
pub mod ping;
pub mod runner;
pub mod script;
pub mod transport;

pub use runner::{Outcome, RunOptions, run};

/// A deliberate bug to plant in the core, to prove the checkers catch it. The planted bugs are
/// compiled into the core only with this crate's `deliberate-bugs` feature (its own tests turn it
/// on), so no ordinary build of the workspace puts them in `parla-server`; without it this type
/// has no values and `None` is the only choice.
#[cfg(feature = "deliberate-bugs")]
pub use parla_room::Bug;
/// A deliberate bug to plant in the core: none exist in this build (feature `deliberate-bugs`).
#[cfg(not(feature = "deliberate-bugs"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {}
pub use script::Script;
pub use transport::Sim;
