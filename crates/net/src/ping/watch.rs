//! The liveness policy: ping at a fixed interval, count consecutive misses, and declare the
//! host gone at the configured number. It only sees [`Pinger`] results, so its timing is tested
//! in paused tokio time with a scripted pinger.

use std::net::IpAddr;
use std::time::Duration;

use crate::clock::Ticks;
use tokio::sync::mpsc;

use super::{PingError, Pinger, describe};

/// What the watcher reports: the client core's own input type, so the session driver hands it
/// over as it is (the watcher decides when a host counts as gone; the core decides what that
/// means for the session).
pub use parla_room::client::PingReport as PingEvent;

/// How [`watch`] pings.
#[derive(Debug, Clone, PartialEq)]
pub struct PingConfig {
    /// Time between the starts of consecutive pings; the first ping goes out at once. If a ping
    /// takes longer than this, the next one starts as soon as it finishes and the schedule
    /// shifts (no burst of catch-up pings). Default 5 s; zero is treated as 1 ms.
    pub interval: Duration,
    /// How long each ping waits for its reply. Default 2 s: far beyond any sane round trip, and
    /// shorter than the default interval so that pings stay on schedule. Keep it at most
    /// `interval`.
    pub timeout: Duration,
    /// Consecutive misses after which the host counts as gone. Default 3; 1 is strict (the
    /// first miss fails); 0 is treated as 1.
    pub max_misses: u32,
}

impl Default for PingConfig {
    fn default() -> Self {
        PingConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            max_misses: 3,
        }
    }
}

/// Pings `target` every `interval` until `max_misses` consecutive failures, reporting each result on `events`. Returns when it failed, when ICMP is unavailable, or when `events` is closed, handing the pinger back (for the next connection's watch).
pub async fn watch<P: Pinger>(
    mut pinger: P,
    target: IpAddr,
    config: PingConfig,
    events: mpsc::Sender<PingEvent>,
) -> P {
    let max_misses = config.max_misses.max(1);
    let mut ticks = Ticks::every(config.interval);
    let mut consecutive: u32 = 0;
    loop {
        tokio::select! {
            biased;
            () = events.closed() => return pinger,
            _ = ticks.tick() => {}
        }
        let result = tokio::select! {
            biased;
            () = events.closed() => return pinger,
            result = pinger.ping(target, config.timeout) => result,
        };
        let event = match result {
            Ok(rtt) => {
                consecutive = 0;
                PingEvent::Reply { rtt }
            }
            Err(error @ PingError::NotPermitted { .. }) => {
                let reason = describe(&error);
                tracing::warn!(%target, %reason, "ICMP unavailable, not pinging");
                let _ = events.send(PingEvent::Unavailable { reason }).await;
                return pinger;
            }
            Err(error) => {
                consecutive = consecutive.saturating_add(1);
                PingEvent::Missed {
                    consecutive,
                    error: describe(&error),
                }
            }
        };
        tracing::trace!(%target, ?event, "ping result");
        if events.send(event).await.is_err() {
            return pinger;
        }
        if consecutive >= max_misses {
            tracing::debug!(%target, misses = consecutive, "host stopped answering pings");
            let _ = events
                .send(PingEvent::Failed {
                    misses: consecutive,
                    target,
                })
                .await;
            return pinger;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::VecDeque;
    use std::future::Future;
    use std::io;
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};

    use nix::errno::Errno;
    use tokio::time::Instant;

    // ----- watch() with a scripted pinger, in paused (virtual) time -----

    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[derive(Debug, Clone)]
    enum Step {
        /// Answer after this round trip.
        Reply(Duration),
        /// No answer: wait out the timeout, then `Timeout`.
        Miss,
        /// Fail at once, like `ENETUNREACH`.
        Unreachable,
        /// `NotPermitted`.
        Deny,
        /// Never finish.
        Hang,
    }

    struct ScriptedPinger {
        steps: VecDeque<Step>,
        /// Virtual time since the start of the test at which each ping was started.
        calls: Arc<Mutex<Vec<Duration>>>,
        start: Instant,
    }

    impl Pinger for ScriptedPinger {
        fn ping(
            &mut self,
            target: IpAddr,
            timeout: Duration,
        ) -> impl Future<Output = Result<Duration, PingError>> + Send {
            assert_eq!(target, TARGET);
            self.calls.lock().unwrap().push(self.start.elapsed());
            let step = self.steps.pop_front().unwrap_or(Step::Hang);
            async move {
                match step {
                    Step::Reply(rtt) => {
                        tokio::time::sleep(rtt).await;
                        Ok(rtt)
                    }
                    Step::Miss => {
                        tokio::time::sleep(timeout).await;
                        Err(PingError::Timeout { target, timeout })
                    }
                    Step::Unreachable => Err(PingError::Io {
                        target,
                        source: io::Error::from(Errno::ENETUNREACH),
                    }),
                    Step::Deny => Err(PingError::NotPermitted {
                        family: "IPv4",
                        source: io::Error::from(Errno::EPERM),
                    }),
                    Step::Hang => std::future::pending().await,
                }
            }
        }
    }

    struct Watched {
        events: mpsc::Receiver<PingEvent>,
        watcher: tokio::task::JoinHandle<ScriptedPinger>,
        calls: Arc<Mutex<Vec<Duration>>>,
        start: Instant,
    }

    impl Watched {
        fn start(steps: Vec<Step>, config: PingConfig) -> Self {
            let start = Instant::now();
            let calls = Arc::new(Mutex::new(Vec::new()));
            let pinger = ScriptedPinger {
                steps: steps.into(),
                calls: calls.clone(),
                start,
            };
            let (sender, events) = mpsc::channel(16);
            let watcher = tokio::spawn(watch(pinger, TARGET, config, sender));
            Watched {
                events,
                watcher,
                calls,
                start,
            }
        }

        /// The next `n` events with the virtual time at which each arrived.
        async fn next(&mut self, n: usize) -> Vec<(Duration, PingEvent)> {
            let mut events = Vec::new();
            for _ in 0..n {
                let event = self.events.recv().await.expect("watcher ended early");
                events.push((self.start.elapsed(), event));
            }
            events
        }

        /// Waits for the watcher to return and checks that it sent nothing more.
        async fn finished(mut self) -> (Duration, Vec<Duration>) {
            self.watcher.await.unwrap();
            let ended = self.start.elapsed();
            assert_eq!(self.events.recv().await, None, "events after the end");
            (ended, self.calls.lock().unwrap().clone())
        }
    }

    fn config(interval_s: u64, timeout_s: u64, max_misses: u32) -> PingConfig {
        PingConfig {
            interval: Duration::from_secs(interval_s),
            timeout: Duration::from_secs(timeout_s),
            max_misses,
        }
    }

    fn s(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    fn reply(ms: u64) -> PingEvent {
        PingEvent::Reply {
            rtt: Duration::from_millis(ms),
        }
    }

    fn missed(consecutive: u32) -> PingEvent {
        PingEvent::Missed {
            consecutive,
            error: format!("no echo reply from {TARGET} within 2s"),
        }
    }

    #[test]
    fn default_config() {
        let config = PingConfig::default();
        assert_eq!(config.interval, Duration::from_secs(5));
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.max_misses, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_and_returns_when_receiver_dropped_between_pings() {
        let mut w = Watched::start(
            vec![Step::Reply(Duration::from_millis(10)); 3],
            config(5, 2, 3),
        );
        let events = w.next(3).await;
        assert_eq!(
            events,
            vec![
                (s(0.010), reply(10)),
                (s(5.010), reply(10)),
                (s(10.010), reply(10)),
            ]
        );
        w.events.close();
        w.watcher.await.unwrap();
        // Returned at once, without waiting for the next tick.
        assert_eq!(w.start.elapsed(), s(10.010));
        assert_eq!(*w.calls.lock().unwrap(), vec![s(0.0), s(5.0), s(10.0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_resets_the_miss_counter() {
        use Step::{Miss, Reply};
        let rtt = Duration::from_millis(10);
        let mut w = Watched::start(
            vec![
                Miss,
                Miss,
                Reply(rtt),
                Miss,
                Miss,
                Reply(rtt),
                Miss,
                Miss,
                Miss,
            ],
            config(5, 2, 3),
        );
        let events = w.next(10).await;
        assert_eq!(
            events,
            vec![
                (s(2.0), missed(1)),
                (s(7.0), missed(2)),
                (s(10.010), reply(10)),
                (s(17.0), missed(1)),
                (s(22.0), missed(2)),
                (s(25.010), reply(10)),
                (s(32.0), missed(1)),
                (s(37.0), missed(2)),
                (s(42.0), missed(3)),
                (
                    s(42.0),
                    PingEvent::Failed {
                        misses: 3,
                        target: TARGET
                    }
                ),
            ]
        );
        let (ended, calls) = w.finished().await;
        assert_eq!(ended, s(42.0));
        assert_eq!(calls, (0..9).map(|i| s(5.0 * i as f64)).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn fails_after_exactly_max_misses_counting_io_errors_too() {
        use Step::{Miss, Unreachable};
        let mut w = Watched::start(
            vec![Miss, Unreachable, Miss, Unreachable, Miss],
            config(5, 2, 4),
        );
        let events = w.next(5).await;
        let unreachable = |consecutive| PingEvent::Missed {
            consecutive,
            error: format!(
                "pinging {TARGET} failed: {}",
                io::Error::from(Errno::ENETUNREACH)
            ),
        };
        assert_eq!(
            events,
            vec![
                (s(2.0), missed(1)),
                (s(5.0), unreachable(2)),
                (s(12.0), missed(3)),
                (s(15.0), unreachable(4)),
                (
                    s(15.0),
                    PingEvent::Failed {
                        misses: 4,
                        target: TARGET
                    }
                ),
            ]
        );
        let (ended, calls) = w.finished().await;
        assert_eq!(ended, s(15.0));
        assert_eq!(calls.len(), 4, "no ping after the failure");
    }

    #[tokio::test(start_paused = true)]
    async fn max_misses_one_is_strict() {
        let mut w = Watched::start(
            vec![Step::Reply(Duration::from_millis(10)), Step::Miss],
            config(5, 2, 1),
        );
        let events = w.next(3).await;
        assert_eq!(
            events,
            vec![
                (s(0.010), reply(10)),
                (s(7.0), missed(1)),
                (
                    s(7.0),
                    PingEvent::Failed {
                        misses: 1,
                        target: TARGET
                    }
                ),
            ]
        );
        let (ended, calls) = w.finished().await;
        assert_eq!(ended, s(7.0));
        assert_eq!(calls, vec![s(0.0), s(5.0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn max_misses_zero_behaves_like_one() {
        let mut w = Watched::start(vec![Step::Miss], config(5, 2, 0));
        let events = w.next(2).await;
        assert_eq!(
            events[1].1,
            PingEvent::Failed {
                misses: 1,
                target: TARGET
            }
        );
        w.finished().await;
    }

    #[tokio::test(start_paused = true)]
    async fn not_permitted_is_reported_once_and_stops() {
        let mut w = Watched::start(
            vec![Step::Deny, Step::Reply(Duration::ZERO)],
            config(5, 2, 3),
        );
        let events = w.next(1).await;
        let (at, PingEvent::Unavailable { reason }) = &events[0] else {
            panic!("expected Unavailable, got {events:?}");
        };
        assert_eq!(*at, Duration::ZERO);
        assert!(reason.contains("setcap cap_net_raw+ep"), "{reason}");
        assert!(reason.contains("net.ipv4.ping_group_range"), "{reason}");
        assert!(
            reason.ends_with(&io::Error::from(Errno::EPERM).to_string()),
            "{reason}"
        );
        let (ended, calls) = w.finished().await;
        assert_eq!(ended, Duration::ZERO);
        assert_eq!(calls.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn returns_at_once_when_receiver_is_already_closed() {
        let start = Instant::now();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let pinger = ScriptedPinger {
            steps: VecDeque::new(),
            calls: calls.clone(),
            start,
        };
        let (sender, receiver) = mpsc::channel(1);
        drop(receiver);
        watch(pinger, TARGET, config(5, 2, 3), sender).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(calls.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn returns_when_receiver_closes_during_a_ping() {
        let w = Watched::start(vec![Step::Hang], config(5, 2, 3));
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(w.events);
        w.watcher.await.unwrap();
        assert_eq!(w.start.elapsed(), Duration::from_secs(1));
        assert_eq!(*w.calls.lock().unwrap(), vec![Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_longer_than_the_interval_delays_the_schedule() {
        let mut w = Watched::start(vec![Step::Miss, Step::Miss], config(5, 8, 3));
        w.next(2).await;
        w.events.close();
        w.watcher.await.unwrap();
        // Late by 3 s, so the second ping starts when the first ends and the third one interval
        // after that — no burst of catch-up pings.
        assert_eq!(*w.calls.lock().unwrap(), vec![s(0.0), s(8.0), s(16.0)]);
    }
}
