//! The runtimes' view of time, shared by the server runtime, the client driver and the pinger:
//! the clock the sans-IO cores read (`tokio::time`, so simulated under turmoil and pausable in
//! tests, as `Millis`), and every timer they arm ([`sleep_until`], [`sleep`], [`timeout`],
//! [`Ticks`]).
//!
//! Every timer goes through here so that a simulation can be told when each one is due
//! ([`watch_timers`]): knowing that no host has a timer before some instant and nothing is on
//! the wire, it skips the idle time in one step instead of a thousand one-millisecond ticks. A
//! timer armed with `tokio::time` directly would still fire, but the simulation would not know
//! of it (it reports such a host as having woken unannounced).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
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
        Some(at) => Box::pin(sleep_until(at)).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at` (announced to a timer watcher, if this thread has one). Give whole
/// milliseconds after the clock's start: tokio fires timers on millisecond ticks, so a
/// deadline between two would be announced a tick before it fires.
pub fn sleep_until(at: Instant) -> tokio::time::Sleep {
    armed(at);
    tokio::time::sleep_until(at)
}

/// Sleeps for `d`.
pub fn sleep(d: Duration) -> tokio::time::Sleep {
    sleep_until(Instant::now() + d)
}

/// `future`, or [`tokio::time::error::Elapsed`] if it takes longer than `d`.
pub fn timeout<F: Future>(d: Duration, future: F) -> tokio::time::Timeout<F> {
    armed(Instant::now() + d);
    tokio::time::timeout(d, future)
}

/// A fixed-period tick, like `tokio::time::interval` with `MissedTickBehavior::Delay`: the first
/// tick is at once; a tick taken late puts the next one a full period after it.
#[derive(Debug)]
pub struct Ticks {
    period: Duration,
    next: Instant,
}

impl Ticks {
    /// Ticks every `period` (at least 1 ms), starting now.
    pub fn every(period: Duration) -> Ticks {
        Ticks {
            period: period.max(Duration::from_millis(1)),
            next: Instant::now(),
        }
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        sleep_until(self.next).await;
        let now = Instant::now();
        // tokio's interval allows the same 5 ms before it counts a tick as late.
        self.next = if now > self.next + Duration::from_millis(5) {
            now + self.period
        } else {
            self.next + self.period
        };
    }
}

/// Told of every timer armed on its thread.
type Watcher = Rc<dyn Fn(Instant)>;

thread_local! {
    /// Who is told of every timer armed on this thread (a simulation; nobody otherwise).
    static WATCHER: RefCell<Option<Watcher>> = const { RefCell::new(None) };
}

/// Calls `watcher` with the deadline of every timer armed on this thread through this module,
/// until the returned guard is dropped. A simulation that runs every host on one thread uses it
/// to know when the next timer is due; a timer that was armed and then dropped is still reported
/// (the watcher only learns of more instants to look at, never of fewer).
pub fn watch_timers(watcher: impl Fn(Instant) + 'static) -> TimerWatch {
    let previous = WATCHER.with(|w| w.borrow_mut().replace(Rc::new(watcher)));
    TimerWatch { previous }
}

/// Stops a [`watch_timers`] watcher when dropped (restoring the one before it).
#[must_use = "the watcher stops when this is dropped"]
pub struct TimerWatch {
    previous: Option<Watcher>,
}

impl Drop for TimerWatch {
    fn drop(&mut self) {
        let previous = self.previous.take();
        WATCHER.with(|w| *w.borrow_mut() = previous);
    }
}

/// Tells this thread's watcher, if any, that a timer is due at `at`.
fn armed(at: Instant) {
    let watcher = WATCHER.with(|w| w.borrow().clone());
    if let Some(watcher) = watcher {
        watcher(at);
    }
}
