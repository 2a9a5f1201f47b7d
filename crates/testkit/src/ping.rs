//! A [`Pinger`] whose answers the test decides, so liveness logic is tested without ICMP.
//!
//! Clones share one script, so a test can hand one clone to the code under test and change
//! the answers (or read when pings went out) through another.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parla_net::ping::{PingError, Pinger};
use tokio::time::Instant;

/// What the fake answers to one ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The host answers at once, reporting this round trip.
    Reply(Duration),
    /// The host answers after this round trip (waited out, in tokio time).
    ReplyAfter(Duration),
    /// No answer, and no waiting: `PingError::Timeout` at once.
    Timeout,
    /// No answer: waits out the ping's timeout (in tokio time), then `PingError::Timeout`.
    Miss,
    /// Fails at once like a host without a route (`PingError::Io`, `ENETUNREACH`).
    Unreachable,
    /// `PingError::NotPermitted` for IPv4 (`EPERM`), like a process without ICMP rights.
    NotPermitted,
    /// Never finishes.
    Hang,
}

#[derive(Debug)]
struct Script {
    /// Answers still to give, in order.
    next: VecDeque<Answer>,
    /// The answer once `next` is used up.
    then: Answer,
    /// When each ping started.
    calls: Vec<Instant>,
}

/// A scripted pinger. Cloning shares the script.
#[derive(Debug, Clone)]
pub struct FakePinger {
    script: Arc<Mutex<Script>>,
}

impl FakePinger {
    /// Gives `answer` to every ping.
    pub fn always(answer: Answer) -> FakePinger {
        FakePinger::scripted([], answer)
    }

    /// Gives `answers` in order, then `then` to every further ping.
    pub fn scripted(answers: impl IntoIterator<Item = Answer>, then: Answer) -> FakePinger {
        FakePinger {
            script: Arc::new(Mutex::new(Script {
                next: answers.into_iter().collect(),
                then,
                calls: Vec::new(),
            })),
        }
    }

    /// From the next ping on, answers `answer` (dropping what was left of the script).
    pub fn set(&self, answer: Answer) {
        let mut script = self.script.lock().unwrap();
        script.next.clear();
        script.then = answer;
    }

    /// When each ping so far started (tokio time).
    pub fn calls(&self) -> Vec<Instant> {
        self.script.lock().unwrap().calls.clone()
    }
}

impl Pinger for FakePinger {
    fn ping(
        &mut self,
        target: IpAddr,
        timeout: Duration,
    ) -> impl Future<Output = Result<Duration, PingError>> + Send {
        let answer = {
            let mut script = self.script.lock().unwrap();
            script.calls.push(Instant::now());
            let then = script.then.clone();
            script.next.pop_front().unwrap_or(then)
        };
        async move {
            match answer {
                Answer::Reply(rtt) => Ok(rtt),
                Answer::ReplyAfter(rtt) => {
                    tokio::time::sleep(rtt).await;
                    Ok(rtt)
                }
                Answer::Timeout => Err(PingError::Timeout { target, timeout }),
                Answer::Miss => {
                    tokio::time::sleep(timeout).await;
                    Err(PingError::Timeout { target, timeout })
                }
                Answer::Unreachable => Err(PingError::Io {
                    target,
                    source: io::Error::from(nix::errno::Errno::ENETUNREACH),
                }),
                Answer::NotPermitted => Err(PingError::NotPermitted {
                    family: "IPv4",
                    source: io::Error::from(nix::errno::Errno::EPERM),
                }),
                Answer::Hang => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[tokio::test(start_paused = true)]
    async fn answers_follow_the_script_then_the_fallback_and_clones_share_it() {
        let control = FakePinger::scripted(
            [Answer::ReplyAfter(Duration::from_millis(10)), Answer::Miss],
            Answer::Reply(Duration::from_millis(1)),
        );
        let mut pinger = control.clone();
        let second = Duration::from_secs(1);
        let start = Instant::now();
        assert_eq!(
            pinger.ping(TARGET, second).await.unwrap(),
            Duration::from_millis(10)
        );
        assert!(matches!(
            pinger.ping(TARGET, second).await,
            Err(PingError::Timeout { .. })
        ));
        assert_eq!(start.elapsed(), Duration::from_millis(1010));
        assert_eq!(
            pinger.ping(TARGET, second).await.unwrap(),
            Duration::from_millis(1)
        );
        control.set(Answer::NotPermitted);
        assert!(matches!(
            pinger.ping(TARGET, second).await,
            Err(PingError::NotPermitted { .. })
        ));
        assert_eq!(control.calls().len(), 4);
    }
}
