//! The simulated broker keeps the cluster log's contract as NATS JetStream does: the same
//! operations against both (the simulated one inside turmoil, a real `nats-server -js` on
//! loopback) give the same observable results.

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
    trace
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
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn the_simulated_broker_keeps_the_contract() {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .build();
    let store = Store::default();
    sim.host("broker", move || broker(store.clone()));
    let trace = Arc::new(Mutex::new(Vec::new()));
    let out = trace.clone();
    sim.client("server", async move {
        let log = SimLog::new("broker");
        *out.lock().unwrap() = contract(&log).await;
        Ok(())
    });
    sim.run().expect("the simulation runs");
    assert_eq!(*trace.lock().unwrap(), expected());
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
