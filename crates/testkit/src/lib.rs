//! What Parla's tests share, so that each helper exists once (dev-only; never a normal
//! dependency):
//!
//! * [`irc`]: [`RawClient`], a raw IRC connection that speaks bytes and asserts on lines, for
//!   playing "another person" against a server or a scripted server against a client session
//!   ([`irc::blocking`] wraps it for the synchronous window tests).
//! * [`nats`]: [`nats::Nats`], a `nats-server -js` on a loopback port, stopped by a guard.
//! * [`ping`]: [`FakePinger`], a [`parla_net::Pinger`] whose answers the test scripts.
//! * [`process`]: [`process::Watched`], a program a test started, killed by a guard.
//! * [`require`]: the one rule for a test that needs something from outside (a program, a
//!   permission): a clear skip line locally, a failure under `CI=true`, where
//!   `ci/install-test-deps` must have provided it.
//!
//! Every wait is bounded by [`WAIT`], so a hang fails the test instead of blocking it.

use std::time::Duration;

pub mod irc;
pub mod nats;
pub mod ping;
pub mod process;
pub mod require;

pub use irc::RawClient;
pub use ping::{Answer, FakePinger};
pub use require::{icmp_permitted, on_path, require, require_tool};

/// The longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);
