//! Runs the community `irc-parser-tests` vectors (CC0, copied into
//! `tests/data/irc-parser-tests/`) against `parla_room::message`.
//!
//! Each test runs every vector of its file, collects all failures with the
//! vector's input, and checks that the file was not silently empty.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::BytesMut;
use parla_room::message::{Message, Tag, split_source};
use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Deserialize)]
struct VectorFile<T> {
    tests: Vec<T>,
}

/// The atoms of a message, as both msg-split and msg-join describe them.
#[derive(Deserialize, Debug)]
struct Atoms {
    /// A mapping rather than a map type: serde_yaml's `Mapping` keeps the
    /// file's order, which msg-join's `matches` rely on.
    #[serde(default)]
    tags: Option<serde_yaml::Mapping>,
    #[serde(default)]
    source: Option<String>,
    verb: String,
    #[serde(default)]
    params: Vec<String>,
}

#[derive(Deserialize)]
struct SplitVector {
    input: String,
    atoms: Atoms,
}

#[derive(Deserialize)]
struct JoinVector {
    #[serde(default)]
    desc: Option<String>,
    atoms: Atoms,
    matches: Vec<String>,
}

#[derive(Deserialize)]
struct UserhostVector {
    source: String,
    atoms: UserhostAtoms,
}

#[derive(Deserialize)]
struct UserhostAtoms {
    #[serde(default)]
    nick: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    host: String,
}

fn load<T: DeserializeOwned>(name: &str) -> Vec<T> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests/data/irc-parser-tests",
        name,
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file: VectorFile<T> = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()));
    assert!(!file.tests.is_empty(), "{name} holds no vectors");
    file.tests
}

/// The tags of `atoms` in file order, as (key, value) pairs.
fn tag_pairs(atoms: &Atoms) -> Vec<(String, String)> {
    let Some(tags) = &atoms.tags else {
        return Vec::new();
    };
    tags.iter()
        .map(|(k, v)| {
            let key = k
                .as_str()
                .unwrap_or_else(|| panic!("tag key {k:?} is not a string"));
            // "tags with no value are an empty string"; tolerate a YAML null too.
            let value = if v.is_null() {
                ""
            } else {
                v.as_str()
                    .unwrap_or_else(|| panic!("tag value {v:?} is not a string"))
            };
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// Panics with every failure if there are any.
fn report(file: &str, ran: usize, failures: &[String]) {
    assert!(ran > 0, "{file}: no vector ran");
    assert!(
        failures.is_empty(),
        "{file}: {} of {ran} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{file}: {ran} vectors passed");
}

#[test]
fn msg_split() {
    let vectors: Vec<SplitVector> = load("msg-split.yaml");
    let mut failures = Vec::new();
    for v in &vectors {
        let msg = match Message::parse(&v.input) {
            Ok(msg) => msg,
            Err(e) => {
                failures.push(format!("input {:?}: parse error: {e}", v.input));
                continue;
            }
        };
        // The vectors give tags as a dict, so compare as one; the parser must
        // also have dropped duplicate keys (the last occurrence wins).
        let want_tags: BTreeMap<String, String> = tag_pairs(&v.atoms).into_iter().collect();
        let got_tags: BTreeMap<String, String> = msg
            .tags
            .iter()
            .map(|t| (t.key.to_owned(), t.value.clone().into_owned()))
            .collect();
        if got_tags.len() != msg.tags.len() {
            failures.push(format!(
                "input {:?}: duplicate tag keys left in {:?}",
                v.input, msg.tags
            ));
        }
        if got_tags != want_tags {
            failures.push(format!(
                "input {:?}: tags {got_tags:?}, expected {want_tags:?}",
                v.input
            ));
        }
        if msg.source != v.atoms.source.as_deref() {
            failures.push(format!(
                "input {:?}: source {:?}, expected {:?}",
                v.input, msg.source, v.atoms.source
            ));
        }
        if msg.verb != v.atoms.verb {
            failures.push(format!(
                "input {:?}: verb {:?}, expected {:?}",
                v.input, msg.verb, v.atoms.verb
            ));
        }
        if msg.params != v.atoms.params {
            failures.push(format!(
                "input {:?}: params {:?}, expected {:?}",
                v.input, msg.params, v.atoms.params
            ));
        }
    }
    report("msg-split.yaml", vectors.len(), &failures);
}

#[test]
fn msg_join() {
    let vectors: Vec<JoinVector> = load("msg-join.yaml");
    let mut failures = Vec::new();
    for v in &vectors {
        let pairs = tag_pairs(&v.atoms);
        let msg = Message {
            tags: pairs
                .iter()
                .map(|(key, value)| Tag {
                    key,
                    value: Cow::Borrowed(value),
                })
                .collect(),
            source: v.atoms.source.as_deref(),
            verb: &v.atoms.verb,
            params: v.atoms.params.iter().map(String::as_str).collect(),
        };
        let mut out = BytesMut::new();
        msg.write_to(&mut out);
        let what = v.desc.as_deref().unwrap_or("(no desc)");
        let Some(line) = out.strip_suffix(b"\r\n") else {
            failures.push(format!("{what}: {out:?} does not end in CR LF"));
            continue;
        };
        let line = String::from_utf8_lossy(line);
        if !v.matches.iter().any(|m| *m == line) {
            failures.push(format!(
                "{what}: atoms {:?} wrote {line:?}, expected one of {:?}",
                v.atoms, v.matches
            ));
        }
    }
    report("msg-join.yaml", vectors.len(), &failures);
}

#[test]
fn userhost_split() {
    let vectors: Vec<UserhostVector> = load("userhost-split.yaml");
    let mut failures = Vec::new();
    for v in &vectors {
        // "if a key does not exist, assume it is an empty string"
        let (nick, user, host) = split_source(&v.source);
        let got = (nick, user.unwrap_or(""), host.unwrap_or(""));
        let want = (
            v.atoms.nick.as_str(),
            v.atoms.user.as_str(),
            v.atoms.host.as_str(),
        );
        if got != want {
            failures.push(format!(
                "source {:?}: got {got:?}, expected {want:?}",
                v.source
            ));
        }
    }
    report("userhost-split.yaml", vectors.len(), &failures);
}
