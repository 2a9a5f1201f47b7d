//! `parla-sim`: Parla's deterministic simulation on turmoil.
//!
//! The real server runtime and client session run unchanged inside a simulated network whose
//! time, ordering and faults are decided by a seed. This crate provides what they need there:
//!
//! - [`transport`]: [`Sim`], the turmoil implementation of [`parla_net::Transport`].
//!
//! Keep this crate (and so turmoil, which turns on tokio's `test-util`) out of the release
//! binaries' builds: build them with `-p parla-net` / `-p parla-gui`.

pub mod transport;

pub use transport::Sim;
