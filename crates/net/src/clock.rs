//! The runtimes' view of time, shared by the server runtime and the client driver: the clock the
//! sans-IO cores read (`tokio::time`, so simulated under turmoil and pausable in tests, as
//! `Millis`), and the one timer their event loops select on (a deadline that may be absent).

use std::time::Duration;

use parla_room::Millis;
use tokio::time::Instant;

/// How far ahead an unrepresentable deadline is put (see [`Clock::instant_of`]).
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

/// A core's clock: `epoch_millis` plus the `tokio::time` elapsed since it started, in whole
/// milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
    epoch_millis: u64,
}

impl Clock {
    /// A clock reading `epoch_millis` now.
    pub(crate) fn starting_at(epoch_millis: u64) -> Clock {
        Clock {
            start: Instant::now(),
            epoch_millis,
        }
    }

    pub(crate) fn now(&self) -> Millis {
        Millis(
            self.epoch_millis
                .saturating_add(millis(self.start.elapsed())),
        )
    }

    /// When the core's `at` comes. A deadline beyond what `Instant` can hold (a timeout of
    /// centuries) becomes "in a year" instead of a panic (in the server's timer task the panic
    /// policy would turn that into a shutdown); the core is woken then and sets its next
    /// deadline again.
    pub(crate) fn instant_of(&self, at: Millis) -> Instant {
        let after = Duration::from_millis(at.0.saturating_sub(self.epoch_millis));
        self.start
            .checked_add(after)
            .unwrap_or_else(|| Instant::now() + FAR_FUTURE)
    }
}

/// A duration in whole milliseconds, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sleeps until `at`, or forever. The timer is boxed: a server connection's is rarely armed (a
/// flooding client, a closing one), and inline it would make every connection's future larger.
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => Box::pin(tokio::time::sleep_until(at)).await,
        None => std::future::pending().await,
    }
}
