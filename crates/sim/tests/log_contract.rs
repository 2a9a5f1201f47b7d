//! The simulated broker keeps the cluster log's contract as NATS JetStream does: the same
//! operations against both (the simulated one inside turmoil, a real `nats-server -js` on
//! loopback) give the same observable results.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use parla_net::cluster::{Entries, Log, NatsLog, NatsOptions};
use parla_sim::broker::{SimLog, Store, broker};

/// What a log must do, as a trace of observations.
async fn contract(log: &dyn Log) -> Vec<String> {
    let mut trace = Vec::new();
    let publish = async |id: &str, bytes: &str, trace: &mut Vec<String>| {
        let seq = log.publish(id.into(), bytes.as_bytes().to_vec()).await;
        trace.push(format!(
            "publish {id} {bytes} -> {}",
            seq.expect("published")
        ));
    };
    publish("a", "one", &mut trace).await;
    publish("b", "two", &mut trace).await;
    // A retry (its acknowledgement was lost) is stored once, at its first position.
    publish("a", "one", &mut trace).await;
    let mut from_start = log.read(1).await.expect("read from 1");
    let mut from_two = log.read(2).await.expect("read from 2");
    for _ in 0..2 {
        trace.push(format!("from 1: {}", next(&mut from_start).await));
    }
    trace.push(format!("from 2: {}", next(&mut from_two).await));
    // Readers already open get what comes next, in order.
    publish("c", "three", &mut trace).await;
    publish("d", "four", &mut trace).await;
    for _ in 0..2 {
        trace.push(format!("from 1: {}", next(&mut from_start).await));
        trace.push(format!("from 2: {}", next(&mut from_two).await));
    }
    // A reader from a position past the end waits for it.
    let mut later = log.read(5).await.expect("read from 5");
    publish("e", "five", &mut trace).await;
    trace.push(format!("from 5: {}", next(&mut later).await));
    trace.push(format!("reachable: {}", log.reachable()));

    // Snapshots: none in a store never written to (a case `NatsLog` answers without asking
    // the object store for its list), one per position, in ascending order.
    trace.push(format!("snapshots: {:?}", snapshots(log).await));
    put_snapshot(log, 5, "at five").await;
    put_snapshot(log, 3, "at three").await;
    trace.push(format!("snapshots: {:?}", snapshots(log).await));
    trace.push(format!("snapshot 5: {}", snapshot(log, 5).await));
    trace.push(format!("snapshot 4: {}", snapshot(log, 4).await));
    // A put at a position taken replaces the snapshot there.
    put_snapshot(log, 5, "at five, again").await;
    trace.push(format!("snapshots: {:?}", snapshots(log).await));
    trace.push(format!("snapshot 5: {}", snapshot(log, 5).await));
    log.delete_snapshot(3).await.expect("snapshot 3 deleted");
    trace.push(format!("snapshots: {:?}", snapshots(log).await));
    trace.push(format!("snapshot 3: {}", snapshot(log, 3).await));
    // Deleting one that is not there (any more, or ever) is no error.
    let again = log.delete_snapshot(3).await;
    let never = log.delete_snapshot(4).await;
    trace.push(format!("delete 3 again: {again:?}, delete 4: {never:?}"));

    // Trimming: nothing is before position 1 (JetStream's purge takes 1 as "everything").
    log.trim(1).await.expect("trimmed before 1");
    let mut all = log.read(1).await.expect("read from 1");
    trace.push(format!("trim 1, from 1: {}", next(&mut all).await));
    // A read from a trimmed position starts at the first entry kept, at its real position.
    log.trim(4).await.expect("trimmed before 4");
    let mut from_trimmed = log.read(1).await.expect("read from 1");
    trace.push(format!("trim 4, from 1: {}", next(&mut from_trimmed).await));
    let mut from_two = log.read(2).await.expect("read from 2");
    trace.push(format!("trim 4, from 2: {}", next(&mut from_two).await));
    // Positions go on from where they were, and the snapshots are not the log's to trim.
    publish("f", "six", &mut trace).await;
    trace.push(format!("from 1: {}", next(&mut from_trimmed).await));
    trace.push(format!("from 1: {}", next(&mut from_trimmed).await));
    trace.push(format!("snapshots: {:?}", snapshots(log).await));
    // Past the end, a trim drops every entry, and the next publish still gets the next
    // position (JetStream's purge alone would jump to the trim point).
    log.trim(10).await.expect("trimmed before 10");
    publish("g", "seven", &mut trace).await;
    let mut after_all = log.read(1).await.expect("read from 1");
    trace.push(format!("trim 10, from 1: {}", next(&mut after_all).await));
    trace.push(format!("reachable: {}", log.reachable()));
    trace
}

async fn put_snapshot(log: &dyn Log, position: u64, bytes: &str) {
    log.put_snapshot(position, bytes.as_bytes().to_vec())
        .await
        .unwrap_or_else(|err| panic!("snapshot {position} stored: {err}"));
}

async fn snapshots(log: &dyn Log) -> Vec<u64> {
    tokio::time::timeout(Duration::from_secs(10), log.snapshots())
        .await
        .expect("the snapshots listed in time")
        .expect("the snapshots listed")
}

/// The snapshot at `position` as text, or `none`.
async fn snapshot(log: &dyn Log, position: u64) -> String {
    let bytes = log
        .snapshot(position)
        .await
        .unwrap_or_else(|err| panic!("snapshot {position} read: {err}"));
    bytes.map_or("none".into(), |bytes| String::from_utf8(bytes).unwrap())
}

async fn next(entries: &mut Entries) -> String {
    let (seq, bytes) = tokio::time::timeout(Duration::from_secs(10), entries.next())
        .await
        .expect("an entry in time")
        .expect("the stream goes on")
        .expect("an entry");
    format!("{seq} {}", String::from_utf8(bytes).unwrap())
}

fn expected() -> Vec<String> {
    [
        "publish a one -> 1",
        "publish b two -> 2",
        "publish a one -> 1",
        "from 1: 1 one",
        "from 1: 2 two",
        "from 2: 2 two",
        "publish c three -> 3",
        "publish d four -> 4",
        "from 1: 3 three",
        "from 2: 3 three",
        "from 1: 4 four",
        "from 2: 4 four",
        "publish e five -> 5",
        "from 5: 5 five",
        "reachable: true",
        "snapshots: []",
        "snapshots: [3, 5]",
        "snapshot 5: at five",
        "snapshot 4: none",
        "snapshots: [3, 5]",
        "snapshot 5: at five, again",
        "snapshots: [5]",
        "snapshot 3: none",
        "delete 3 again: Ok(()), delete 4: Ok(())",
        "trim 1, from 1: 1 one",
        "trim 4, from 1: 4 four",
        "trim 4, from 2: 4 four",
        "publish f six -> 6",
        "from 1: 5 five",
        "from 1: 6 six",
        "snapshots: [5]",
        "publish g seven -> 7",
        "trim 10, from 1: 7 seven",
        "reachable: true",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn the_simulated_broker_keeps_the_contract() {
    let trace = with_broker(&Store::default(), |log| async move { contract(&log).await });
    assert_eq!(trace, expected());
}

#[tokio::test]
async fn nats_jetstream_keeps_the_contract() {
    let Some(nats) = parla_testkit::nats::Nats::start() else {
        return;
    };
    let log = NatsLog::connect(&NatsOptions {
        url: nats.url(),
        creds: None,
        tls_ca: None,
        tls_cert: None,
        stream: "CONTRACT".into(),
        client_name: "contract".into(),
    })
    .await
    .expect("connected");
    assert_eq!(contract(&log).await, expected());
}

#[test]
fn a_publish_whose_ack_is_lost_is_retried_and_stored_once() {
    // The broker is cut off after it stored the entry, before its acknowledgement arrives.
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .build();
    let store = Store::default();
    let kept = store.clone();
    sim.host("broker", move || broker(store.clone()));
    let trace = Arc::new(Mutex::new(Vec::new()));
    let out = trace.clone();
    sim.client("server", async move {
        let log = SimLog::new("broker");
        let first = log.publish("x".into(), b"x".to_vec()).await;
        out.lock()
            .unwrap()
            .push(format!("first: {}", first.is_ok()));
        // Only the way back is cut: the broker stores y; its acknowledgement is lost.
        turmoil::partition_oneway("broker", "server");
        let cut = log.publish("y".into(), b"y".to_vec()).await;
        out.lock().unwrap().push(format!("cut: {}", cut.is_ok()));
        out.lock()
            .unwrap()
            .push(format!("reachable: {}", log.reachable()));
        turmoil::repair_oneway("broker", "server");
        let retried = log.publish("y".into(), b"y".to_vec()).await;
        out.lock().unwrap().push(format!("retried: {retried:?}"));
        out.lock()
            .unwrap()
            .push(format!("reachable: {}", log.reachable()));
        Ok(())
    });
    sim.run().expect("the simulation runs");
    assert_eq!(
        *trace.lock().unwrap(),
        [
            "first: true",
            "cut: false",
            "reachable: false",
            "retried: Ok(2)",
            "reachable: true"
        ]
    );
    assert_eq!(kept.len(), 2, "y stored once, though published twice");
}

#[test]
fn snapshots_and_the_trim_point_outlive_the_broker() {
    // Two simulations over one store: the second broker is the first one restarted.
    let store = Store::default();
    let before = with_broker(&store, |log| async move {
        let mut trace = Vec::new();
        for (id, entry) in [("a", "one"), ("b", "two"), ("c", "three"), ("d", "four")] {
            let seq = log.publish(id.into(), entry.into()).await;
            trace.push(format!(
                "publish {id} {entry} -> {}",
                seq.expect("published")
            ));
        }
        put_snapshot(&log, 3, "at three").await;
        log.trim(3).await.expect("trimmed before 3");
        trace
    });
    assert_eq!(
        before,
        [
            "publish a one -> 1",
            "publish b two -> 2",
            "publish c three -> 3",
            "publish d four -> 4",
        ]
    );
    // Gone for good, and the positions still count them.
    assert_eq!(store.get(1), None);
    assert_eq!(store.get(2), None);
    assert_eq!(store.get(3).as_deref(), Some(&b"three"[..]));
    assert_eq!(store.len(), 4);
    assert_eq!(store.snapshots(), [3]);

    let after = with_broker(&store, |log| async move {
        let mut trace = Vec::new();
        trace.push(format!("snapshots: {:?}", snapshots(&log).await));
        trace.push(format!("snapshot 3: {}", snapshot(&log, 3).await));
        let mut entries = log.read(1).await.expect("read from 1");
        trace.push(format!("from 1: {}", next(&mut entries).await));
        let seq = log.publish("e".into(), b"five".to_vec()).await;
        trace.push(format!("publish e five -> {}", seq.expect("published")));
        // A retry of a publish whose entry was trimmed is still not stored again.
        let seq = log.publish("a".into(), b"one".to_vec()).await;
        trace.push(format!("publish a one -> {}", seq.expect("published")));
        trace
    });
    assert_eq!(
        after,
        [
            "snapshots: [3]",
            "snapshot 3: at three",
            "from 1: 3 three",
            "publish e five -> 5",
            "publish a one -> 1",
        ]
    );
    assert_eq!(store.len(), 5);
}

/// Runs `client` as a server beside a broker host over `store`, in a simulation of its own,
/// and returns its trace.
fn with_broker<F>(store: &Store, client: impl FnOnce(SimLog) -> F + 'static) -> Vec<String>
where
    F: Future<Output = Vec<String>> + 'static,
{
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .build();
    let kept = store.clone();
    sim.host("broker", move || broker(kept.clone()));
    let trace = Arc::new(Mutex::new(Vec::new()));
    let out = trace.clone();
    sim.client("server", async move {
        *out.lock().unwrap() = client(SimLog::new("broker")).await;
        Ok(())
    });
    sim.run().expect("the simulation runs");
    trace.lock().unwrap().clone()
}
