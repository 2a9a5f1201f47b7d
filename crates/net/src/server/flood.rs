//! Input flood control: one token bucket per connection, over `tokio::time` so that it runs on
//! virtual time under the simulation and in paused tests. The connection task asks it before
//! each read; the bucket never touches the socket or the core.

use std::time::Duration;

use tokio::time::Instant;

/// Input flood control: a token bucket per connection. Each line costs one token; with none
/// left, the server stops reading that connection until one refills (ergo's "fakelag"): a
/// flooder slows itself down through TCP backpressure, nobody is dropped, nothing is lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodControl {
    /// Lines a client may send at once after being quiet.
    pub burst: u32,
    /// Lines per second it may keep sending after that.
    pub per_second: f64,
}

impl Default for FloodControl {
    fn default() -> Self {
        FloodControl {
            burst: 20,
            per_second: 5.0,
        }
    }
}

/// A token bucket over `tokio::time` (so it is virtual under simulation and paused tests).
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    config: FloodControl,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    pub(super) fn new(config: FloodControl, now: Instant) -> Bucket {
        Bucket {
            config,
            tokens: f64::from(config.burst.max(1)),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.config.per_second)
            .min(f64::from(self.config.burst.max(1)));
        self.updated = now;
    }

    /// Spends a token for one line.
    pub(super) fn take(&mut self, now: Instant) {
        self.take_n(now, 1.0);
    }

    /// Spends `tokens` (may go below zero: the wait then grows with the debt).
    pub(super) fn take_n(&mut self, now: Instant, tokens: f64) {
        self.refill(now);
        self.tokens -= tokens;
    }

    /// Refilled to its burst: as if never used.
    pub(super) fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= f64::from(self.config.burst.max(1)) - 1e-9
    }

    /// `None` if a line may be read now, else when the next token will be there.
    pub(super) fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        // Float refills can stop a hair short of a whole token; that counts as one.
        if self.tokens >= 1.0 - 1e-9 {
            return None;
        }
        if self.config.per_second <= 0.0 {
            return Some(now + MAX_WAIT);
        }
        // Never less than a millisecond: a zero wait would be ready at once, and under simulated
        // time (which stands still within a tick) the task would spin forever.
        // Never more than an hour either: an absurdly small rate (`--flood-rate 1e-300`) must not
        // overflow the conversion (it panicked, found while stating the panic policy).
        // Whole milliseconds, rounded up: tokio's timers fire on millisecond ticks, and a
        // simulation told of a deadline between two ticks would step the host a tick early
        // (found when replies started costing fractions of a token: a 4 s stall under
        // `--tick-every-host`-free stepping).
        let wait = Duration::try_from_secs_f64((1.0 - self.tokens) / self.config.per_second)
            .unwrap_or(MAX_WAIT)
            .clamp(Duration::from_millis(1), MAX_WAIT);
        let wait = Duration::from_millis(
            u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX),
        );
        Some(now + wait)
    }
}

/// The longest a flooder is made to wait before the bucket is looked at again.
const MAX_WAIT: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a rate so small that the wait overflowed `Duration` panicked the connection.
    #[test]
    fn a_vanishing_rate_waits_at_most_an_hour() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            FloodControl {
                burst: 1,
                per_second: 1e-300,
            },
            t0,
        );
        b.take(t0);
        assert_eq!(b.ready_at(t0), Some(t0 + MAX_WAIT));
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            FloodControl {
                burst: 3,
                per_second: 2.0,
            },
            t0,
        );
        for _ in 0..3 {
            assert_eq!(b.ready_at(t0), None);
            b.take(t0);
        }
        let next = b.ready_at(t0).expect("empty after the burst");
        assert_eq!(next - t0, Duration::from_millis(500));
        assert_eq!(b.ready_at(t0 + Duration::from_millis(500)), None);
        // Refill is capped at the burst.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(b.ready_at(later), None);
            b.take(later);
        }
        assert!(b.ready_at(later).is_some());
    }

    /// Regression (found by the simulation, scenario 07 with seed 3): a refill that stopped a
    /// hair short of a whole token gave a zero wait, and the connection task spun forever under
    /// simulated time.
    #[test]
    fn bucket_never_asks_for_a_zero_wait() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            FloodControl {
                burst: 1,
                per_second: 5.0,
            },
            t0,
        );
        b.take(t0);
        b.tokens = 1.0 - 1e-12;
        assert_eq!(
            b.ready_at(t0),
            None,
            "within rounding of a token counts as one"
        );
        b.tokens = 0.999_999;
        let at = b.ready_at(t0).expect("not yet a token");
        assert!(at - t0 >= Duration::from_millis(1), "{:?}", at - t0);
    }
}
