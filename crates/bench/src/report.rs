//! Results as JSON lines (one [`Record`] per run), and the side-by-side table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One run of one workload against one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The server's label (`parla`, `ngircd`, `inspircd`, …).
    pub server: String,
    /// The workload's name (`fanout-1000x10`, `idle-10000`, …).
    pub workload: String,
    /// The figures, by name (units in the name: `_s`, `_ms`, `_mib`, `_bytes`, `_per_s`).
    pub metrics: BTreeMap<String, f64>,
}

impl Record {
    pub fn new(server: &str, workload: &str) -> Record {
        Record {
            server: server.to_owned(),
            workload: workload.to_owned(),
            metrics: BTreeMap::new(),
        }
    }

    pub fn set(&mut self, name: &str, value: f64) {
        self.metrics.insert(name.to_owned(), value);
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }
}

/// Figures the table leaves out: they restate the workload's parameters.
const PARAMETERS: &[&str] = &[
    "clients",
    "senders",
    "messages_per_sender",
    "expected",
    "conns",
    "sessions",
];

/// Figures where a smaller value is better (for the "better" column).
fn lower_is_better(metric: &str) -> bool {
    !(metric.ends_with("_per_s") || metric == "received" || metric == "registered")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if v.abs() >= 1000.0 {
        let s = format!("{v:.0}");
        // Thousands separators make the big counts readable.
        let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        format!("{sign}{out}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A Markdown table per workload: the median of each figure per server (servers in order of
/// first appearance, `baseline` first), then `baseline/peer` for every other server.
pub fn table(records: &[Record], baseline: &str) -> String {
    let mut servers: Vec<&str> = Vec::new();
    let mut workloads: Vec<&str> = Vec::new();
    for r in records {
        if !servers.contains(&r.server.as_str()) {
            servers.push(&r.server);
        }
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    if let Some(pos) = servers.iter().position(|s| *s == baseline) {
        let b = servers.remove(pos);
        servers.insert(0, b);
    }
    let peers: Vec<&str> = servers.iter().copied().filter(|s| *s != baseline).collect();
    let has_baseline = servers.first() == Some(&baseline);
    let mut out = String::new();
    for w in workloads {
        let runs: Vec<&Record> = records.iter().filter(|r| r.workload == w).collect();
        let mut metrics: Vec<&str> = Vec::new();
        for r in &runs {
            for m in r.metrics.keys() {
                if !metrics.contains(&m.as_str()) && !PARAMETERS.contains(&m.as_str()) {
                    metrics.push(m);
                }
            }
        }
        let present: Vec<&str> = servers
            .iter()
            .copied()
            .filter(|s| runs.iter().any(|r| r.server == *s))
            .collect();
        let n_runs = |s: &str| runs.iter().filter(|r| r.server == s).count();
        let _ = writeln!(out, "\n### {w}\n");
        let mut header = "| figure |".to_owned();
        let mut rule = "| --- |".to_owned();
        for s in &present {
            let _ = write!(header, " {s} (n={}) |", n_runs(s));
            rule.push_str(" ---: |");
        }
        if has_baseline && present.contains(&baseline) {
            for p in peers.iter().filter(|p| present.contains(p)) {
                let _ = write!(header, " {baseline}/{p} |");
                rule.push_str(" ---: |");
            }
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for m in metrics {
            let value = |s: &str| -> Option<f64> {
                let v: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.server == s)
                    .filter_map(|r| r.get(m))
                    .collect();
                (!v.is_empty()).then(|| median(v))
            };
            let arrow = if lower_is_better(m) { "↓" } else { "↑" };
            let mut row = format!("| {m} {arrow} |");
            for s in &present {
                let _ = write!(row, " {} |", value(s).map(fmt_value).unwrap_or_default());
            }
            if has_baseline && present.contains(&baseline) {
                for p in peers.iter().filter(|p| present.contains(p)) {
                    let ratio = match (value(baseline), value(p)) {
                        (Some(b), Some(v)) if v != 0.0 => format!("{:.2}", b / v),
                        _ => String::new(),
                    };
                    let _ = write!(row, " {ratio} |");
                }
            }
            let _ = writeln!(out, "{row}");
        }
    }
    out
}

/// Parses JSON lines, skipping blank ones.
pub fn parse_lines(text: &str) -> anyhow::Result<Vec<Record>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_medians_and_ratios() {
        let mut rs = Vec::new();
        for (s, v) in [
            ("parla", 4.0),
            ("parla", 2.0),
            ("parla", 3.0),
            ("ngircd", 1.5),
        ] {
            let mut r = Record::new(s, "fanout");
            r.set("deliveries_per_s", v);
            rs.push(r);
        }
        let t = table(&rs, "parla");
        assert!(
            t.contains("| deliveries_per_s ↑ | 3.000 | 1.500 | 2.00 |"),
            "{t}"
        );
    }
}
