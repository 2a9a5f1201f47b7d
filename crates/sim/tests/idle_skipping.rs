//! Skipping idle time, and running only the hosts with work in each step, change nothing but the
//! speed: every scenario and a range of explored seeds give byte-identical transcripts with and
//! without them; and a host that wakes in the middle of a skipped stretch (a timer nobody
//! announced) is caught, not silently shifted.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use parla_sim::explore::{Workload, run_seed};
use parla_sim::{RunOptions, Script, run};

/// Every host ticked through every millisecond: what the fast paths must reproduce.
fn naive(options: &RunOptions) -> RunOptions {
    RunOptions {
        skip_idle: false,
        lazy_hosts: false,
        ..options.clone()
    }
}

fn both_ways(script: &Script, seed: u64) -> (String, String) {
    let skip = RunOptions {
        seed,
        ..RunOptions::default()
    };
    let tick = naive(&skip);
    let a = run(script, &skip);
    let b = run(script, &tick);
    assert!(a.passed(), "{}: {:?}", script.file, a.violations);
    (a.transcript, b.transcript)
}

#[test]
fn every_scenario_reads_the_same_with_idle_time_skipped() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the scenarios directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "scn"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "found {} scenarios", files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        let script = Script::parse(&path.display().to_string(), &text).expect("parses");
        let (skipped, ticked) = both_ways(&script, script.seed.unwrap_or(1));
        assert_eq!(skipped, ticked, "{}", path.display());
    }
}

#[test]
fn explored_seeds_read_the_same_with_idle_time_skipped() {
    let workload = Workload::default();
    for seed in 500..510 {
        let skipped = run_seed(seed, workload, &RunOptions::default());
        let ticked = run_seed(seed, workload, &naive(&RunOptions::default()));
        assert_eq!(
            skipped.outcome.transcript, ticked.outcome.transcript,
            "seed {seed}"
        );
    }
}

/// The same for clusters: three servers and a broker, with partitions and crashes of each.
#[test]
fn explored_cluster_seeds_read_the_same_with_idle_time_skipped() {
    let workload = Workload {
        cluster: true,
        ..Workload::default()
    };
    for seed in [976, 2198, 21492] {
        let skipped = run_seed(seed, workload, &RunOptions::default());
        let ticked = run_seed(seed, workload, &naive(&RunOptions::default()));
        assert_eq!(
            skipped.outcome.transcript, ticked.outcome.transcript,
            "cluster seed {seed}"
        );
    }
}

/// Running only the hosts with work is checked on many more seeds against running every host in
/// every step (idle time skipped in both, so it is quick): crowds, floods that fill a connection
/// (a reader waking its writer directly) and connections being accepted (the listener waking the
/// connecting host directly) are where a host left out could have run its work late.
/// `PARLA_SIM_LAZY_SEEDS=N` checks N seeds instead of 150.
#[test]
fn explored_seeds_read_the_same_running_only_the_hosts_with_work() {
    let workload = Workload::default();
    let seeds: u64 = std::env::var("PARLA_SIM_LAZY_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(150);
    let every_host = RunOptions {
        lazy_hosts: false,
        ..RunOptions::default()
    };
    for seed in 30_000..30_000 + seeds {
        let lazy = run_seed(seed, workload, &RunOptions::default());
        let all = run_seed(seed, workload, &every_host);
        assert_eq!(
            lazy.outcome.transcript, all.outcome.transcript,
            "seed {seed}"
        );
    }
    let cluster = Workload {
        cluster: true,
        ..workload
    };
    for seed in 30_000..30_000 + seeds / 3 {
        let lazy = run_seed(seed, cluster, &RunOptions::default());
        let all = run_seed(seed, cluster, &every_host);
        assert_eq!(
            lazy.outcome.transcript, all.outcome.transcript,
            "cluster seed {seed}"
        );
    }
}

/// The patched turmoil reports a host that wakes inside a long step: here a host sleeps 5 ms with
/// a bare tokio timer (announced to nobody) and then sends, inside a 50 ms step.
#[test]
fn a_host_waking_inside_a_skipped_stretch_is_reported() {
    let mut sim = turmoil::Builder::new().rng_seed(7).build();
    sim.host("sleeper", || async {
        let socket =
            turmoil::net::UdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 9)).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        socket.send_to(b"late", ("other", 9)).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    sim.host("other", || async {
        std::future::pending::<()>().await;
        Ok(())
    });
    sim.step().expect("the first tick");
    assert!(sim.woke_early().is_empty(), "a 1 ms tick has no inside");
    sim.step_for(Duration::from_millis(50))
        .expect("the long step");
    sleeper_woke_once(&sim);
}

/// A host left out of steps (nothing announced for it) that had work after all is reported when
/// it catches up: here the same unannounced 5 ms sleep, with ten 1 ms steps leaving it out.
#[test]
fn a_host_left_out_that_had_work_is_reported_when_it_catches_up() {
    let mut sim = turmoil::Builder::new().rng_seed(7).build();
    sim.host("sleeper", || async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        std::future::pending::<()>().await;
        Ok(())
    });
    sim.step().expect("the first tick");
    for _ in 0..10 {
        sim.step_only(Duration::from_millis(1), |_| false)
            .expect("a step leaving it out");
        assert!(sim.woke_early().is_empty(), "it did not run");
    }
    sim.catch_up_all().expect("catching up");
    sleeper_woke_once(&sim);
}

/// The only early wake-up is the sleeper's, 3 to 5 ms in (its 5 ms sleep, counted from the end
/// of its first tick).
fn sleeper_woke_once(sim: &turmoil::Sim<'_>) {
    let woke = sim.woke_early();
    assert_eq!(woke.len(), 1, "{woke:?}");
    assert_eq!(woke[0].0, "sleeper");
    assert!(
        woke[0].1 >= Duration::from_millis(3) && woke[0].1 <= Duration::from_millis(5),
        "{woke:?}"
    );
}
