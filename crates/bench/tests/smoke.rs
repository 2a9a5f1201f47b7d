//! A CI-sized bench run: proves that the bench, Parla's fan-out and the peers' configs in
//! `bench/` still work. The full numbers are `just bench-peers`, not part of the test suite.
//!
//! - Parla in-process (`parla_net::run` on 127.0.0.1:0, flood control off): a tiny fan-out in
//!   a plain room and in the default room, and 50 idle connections.
//! - ngircd and InspIRCd, started with `bench/run-peer` and stopped by PID, when installed
//!   (`ci/install-test-deps` installs them; with `CI=true` a missing one fails the test).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use parla_bench::attack::{self, AttackConfig};
use parla_bench::fanout::{self, FanoutConfig};
use parla_bench::idle::{self, IdleConfig};
use parla_bench::{Target, procfs};
use parla_net::LocalServer;
use parla_net::server::{Limits, ServerOptions};
use parla_testkit::require_tool;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The tiny fan-out: 20 members, 2 senders × 50 messages; every delivery must arrive, in order.
async fn tiny_fanout(target: Target, pid: u32) {
    let mut cfg = FanoutConfig::new(target, 20, 2, 50);
    cfg.server_pid = Some(pid);
    cfg.stall_timeout = Duration::from_secs(5);
    let r = fanout::run(&cfg).await.expect("the fan-out runs");
    println!("{r}");
    assert_eq!(r.expected, 2 * 50 * 19);
    assert_eq!(r.received, r.expected, "no delivery may be lost");
    assert_eq!(r.disordered, 0, "each sender's messages arrive in order");
    assert!(r.deliveries_per_s > 100.0, "{r}");
    assert_eq!(r.latency_us.len(), r.received);
    assert!(r.latency_us.max() < 5_000_000, "latency under 5 s: {r}");
    assert!(r.ramp_s > 0.0 && r.ramp_s < 10.0, "{r}");
    assert!(r.server_cpu_s.is_some_and(|c| c >= 0.0));
    assert!(r.server_rss_kib.is_some_and(|k| k > 0));
}

async fn tiny_idle(target: Target, pid: u32) {
    let mut cfg = IdleConfig::new(target, 50);
    cfg.server_pid = Some(pid);
    cfg.hold = Duration::from_millis(200);
    cfg.timeout = Duration::from_secs(10);
    let r = idle::run(&cfg).await.expect("the idle run");
    println!("{r}");
    assert_eq!(r.registered, 50, "{r}");
    assert!(r.rss_per_conn_bytes().is_some(), "{r}");
}

#[test]
fn parla_in_process_fanout_and_idle() {
    runtime().block_on(async {
        parla_net::process::raise_fd_limit(Some(4096));
        let pid = std::process::id();
        for default_room in [false, true] {
            let options = ServerOptions {
                flood: None,
                // One machine on a few 127.x addresses, as in bench/run-peer.
                limits: Limits::none(),
                core: parla_room::Config {
                    default_room: default_room.then(|| "#lobby".to_owned()),
                    ..parla_room::Config::default()
                },
                ..ServerOptions::default()
            };
            let mut server = LocalServer::start(options).await.expect("start the server");
            let mut target = Target::new(server.addr());
            if default_room {
                target.channel = "#lobby".to_owned();
                target.auto_join = true;
            }
            tiny_fanout(target.clone(), pid).await;
            if !default_room {
                tiny_idle(target, pid).await;
            }
            server.shut_down().await;
        }
    });
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `name` with the repo's config, runs the tiny workloads, stops it by PID.
fn smoke_peer(name: &str) {
    if !require_tool(name) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("parla-bench-smoke-{name}-{}", std::process::id()));
    let port = free_port();
    let status = Command::new(repo().join("bench/run-peer"))
        .args([name, &port.to_string(), dir.to_str().unwrap()])
        .status()
        .expect("bench/run-peer runs");
    assert!(
        status.success(),
        "{name} did not start with bench/{name}.conf.in"
    );
    let pid: u32 = std::fs::read_to_string(dir.join(format!("{name}.pid")))
        .expect("run-peer writes the PID")
        .trim()
        .parse()
        .expect("a PID");
    // Stopped by PID: asked first, then killed if it has not gone within 5 s (an ngircd whose
    // directory was removed under it once stayed for good), and its directory removed after.
    struct Stop(u32, PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            use nix::sys::signal::{Signal, kill};
            let pid = nix::unistd::Pid::from_raw(self.0 as i32);
            let _ = kill(pid, Signal::SIGTERM);
            // Gone, or a zombie (a daemon's parent here may not reap it).
            let gone = (0..50).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                procfs::sample(self.0).map_or(true, |s| s.zombie)
            });
            if !gone {
                let _ = kill(pid, Signal::SIGKILL);
            }
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _stop = Stop(pid, dir);
    assert!(procfs::sample(pid).is_ok(), "{name} runs as PID {pid}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    runtime().block_on(async {
        tiny_fanout(Target::new(addr), pid).await;
        tiny_idle(Target::new(addr), pid).await;
    });
}

#[test]
fn ngircd_with_the_repo_config() {
    smoke_peer("ngircd");
}

#[test]
fn inspircd_with_the_repo_config() {
    smoke_peer("inspircd");
}

/// The room-emptying attack at small scale, against servers whose SendQ it overflows: with the
/// room budget nobody innocent is cut and every probe arrives; without it (the control), the
/// same attack cuts innocents — so the test shows what the budget does.
#[test]
fn the_room_budget_keeps_innocents_in_the_room_under_attack() {
    runtime().block_on(async {
        for budget in [true, false] {
            let options = ServerOptions {
                sendq_bytes: 16 * 1024,
                core: parla_room::Config {
                    room_budget: budget.then_some(parla_room::server::RoomBudget {
                        burst_bytes: 4 * 1024,
                        bytes_per_second: 2 * 1024,
                    }),
                    ..parla_room::Config::default()
                },
                ..ServerOptions::default()
            };
            let mut server = LocalServer::start(options).await.expect("start the server");
            let mut target = Target::new(server.addr());
            target.channel = "#lobby".to_owned();
            target.auto_join = true;
            let cfg = AttackConfig {
                target,
                pid: Some(std::process::id()),
                innocents: 3,
                attackers: 12,
                burst: 20,
                line_bytes: 400,
                probe_every: Duration::from_millis(1500),
                duration: Duration::from_secs(3),
                settle: Duration::from_secs(2),
            };
            let r = attack::run(&cfg).await.expect("the attack runs");
            println!("budget {budget}: {r:?}");
            assert_eq!(r.attackers_in, 12, "{r:?}");
            if budget {
                assert!(r.innocents_cut.is_empty(), "{r:?}");
                assert_eq!(r.probes_seen, r.probes_sent * 2, "{r:?}");
            } else {
                assert!(!r.innocents_cut.is_empty(), "the control: {r:?}");
            }
            server.shut_down().await;
        }
    });
}
