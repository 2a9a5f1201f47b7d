//! How Parla's history store was chosen (issue 14): fjall against redb, 1,000,000 appends in
//! commits of 64 (a group commit), then LATEST-shaped reverse scans of 100. For each: what a
//! commit costs when it must survive `kill -9` of the process (fjall: written to the OS,
//! `PersistMode::Buffer`; redb: only an `fsync`ed commit, `Durability::Immediate`, survives it)
//! and with an `fsync` (fjall `SyncData`). docs/benchmarks.md has the figures.
//!
//! ```sh
//! cargo run --release -p parla-bench --example store_choice -- fjall        # kill -9 safe
//! cargo run --release -p parla-bench --example store_choice -- fjall sync   # fdatasync each
//! cargo run --release -p parla-bench --example store_choice -- redb         # Durability::None
//! cargo run --release -p parla-bench --example store_choice -- redb sync    # Immediate
//! ```
use std::time::Instant;

const N: u64 = 1_000_000;
const BATCH: u64 = 64;
const TARGETS: u64 = 8;

fn key(target: u64, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&format!("#room{:03}", target % 1000).as_bytes()[..8]);
    k[8..16].copy_from_slice(&(1_700_000_000_000u64 + seq).to_be_bytes());
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}
fn value(seq: u64) -> Vec<u8> {
    format!("alice!~alice@203.0.113.9 PRIVMSG hello everyone, this is message number {seq} of the benchmark run, fine").into_bytes()
}
fn pct(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "fjall".into());
    let sync = std::env::args().nth(2).as_deref() == Some("sync");
    let dir = tempfile::tempdir_in(".").unwrap();
    match which.as_str() {
        "fjall" => {
            use fjall::{Database, KeyspaceCreateOptions, PersistMode};
            let db = Database::builder(dir.path())
                .manual_journal_persist(true)
                .open()
                .unwrap();
            let ks = db
                .keyspace("messages", KeyspaceCreateOptions::default)
                .unwrap();
            let t = Instant::now();
            let mut seq = 0;
            while seq < N {
                for _ in 0..BATCH {
                    ks.insert(key(seq % TARGETS, seq), value(seq)).unwrap();
                    seq += 1;
                }
                db.persist(if sync {
                    PersistMode::SyncData
                } else {
                    PersistMode::Buffer
                })
                .unwrap();
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "fjall append{}: {:.0} msgs/s ({} per batch)",
                if sync { " fdatasync" } else { "" },
                N as f64 / s,
                BATCH
            );
            let mut lat = vec![];
            for i in 0..2000u64 {
                let target = i % TARGETS;
                let t = Instant::now();
                let mut lo = [0u8; 8];
                lo.copy_from_slice(&key(target, 0)[..8]);
                let got: Vec<_> = ks
                    .prefix(lo)
                    .rev()
                    .take(100)
                    .map(|g| g.into_inner().unwrap())
                    .collect();
                assert_eq!(got.len(), 100);
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let (p50, p99) = pct(lat);
            println!("fjall LATEST 100: p50 {p50:.0} us p99 {p99:.0} us");
            let mut lat = vec![];
            for i in 0..2000u64 {
                let target = i % TARGETS;
                let at = (i * 7919 * 997) % N;
                let t = Instant::now();
                let got: Vec<_> = ks
                    .range(key(target, at)..)
                    .take(100)
                    .map(|g| g.into_inner().unwrap())
                    .collect();
                assert!(!got.is_empty());
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let (p50, p99) = pct(lat);
            println!("fjall AFTER x 100 (random, cold-ish): p50 {p50:.0} us p99 {p99:.0} us");
        }
        "redb" => {
            use redb::{Database, Durability, ReadableDatabase, TableDefinition};
            const T: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");
            let db = Database::create(dir.path().join("h.redb")).unwrap();
            let t = Instant::now();
            let mut seq = 0;
            while seq < N {
                let mut tx = db.begin_write().unwrap();
                tx.set_durability(if sync {
                    Durability::Immediate
                } else {
                    Durability::None
                })
                .unwrap();
                {
                    let mut table = tx.open_table(T).unwrap();
                    for _ in 0..BATCH {
                        table
                            .insert(&key(seq % TARGETS, seq)[..], &value(seq)[..])
                            .unwrap();
                        seq += 1;
                    }
                }
                tx.commit().unwrap();
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "redb append{}: {:.0} msgs/s ({} per batch)",
                if sync {
                    " Immediate (fsync)"
                } else {
                    " Durability::None (NOT kill -9 safe)"
                },
                N as f64 / s,
                BATCH
            );
            let rx = db.begin_read().unwrap();
            let table = rx.open_table(T).unwrap();
            let mut lat = vec![];
            for i in 0..2000u64 {
                let target = i % TARGETS;
                let t = Instant::now();
                let lo = key(target, 0);
                let hi = key(target, u64::MAX >> 1);
                let got: Vec<_> = table
                    .range(&lo[..]..&hi[..])
                    .unwrap()
                    .rev()
                    .take(100)
                    .map(|r| {
                        let (k, v) = r.unwrap();
                        (k.value().to_vec(), v.value().to_vec())
                    })
                    .collect();
                assert_eq!(got.len(), 100);
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let (p50, p99) = pct(lat);
            println!("redb LATEST 100: p50 {p50:.0} us p99 {p99:.0} us");
        }
        other => panic!("{other}: give fjall or redb (then sync, or nothing)"),
    }
    println!(
        "disk: {}",
        String::from_utf8(
            std::process::Command::new("du")
                .arg("-sh")
                .arg(dir.path())
                .output()
                .unwrap()
                .stdout
        )
        .unwrap()
        .trim()
    );
}
