//! The server's resource use, read from `/proc/PID` (Linux only).

use std::io;

/// One sample of a process's resource use.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Of it, the process's own memory (`RssAnon`: heap, stacks), in KiB, without the pages of
    /// its code and libraries it happened to touch (shared, and dropped by the kernel at will).
    pub anon_kib: u64,
    /// It has exited and waits to be reaped (state `Z`): gone, in all but its entry.
    pub zombie: bool,
}

/// `/proc` reports CPU times in clock ticks of `USER_HZ`, which Linux fixes at 100 for
/// user space whatever the kernel's internal `HZ` (see proc(5), `sysconf(_SC_CLK_TCK)`).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads `/proc/PID/stat` (fields 14 `utime` and 15 `stime`) and `/proc/PID/status` (`VmRSS`,
/// `RssAnon`).
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces and parentheses: split after the last `)`.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = fields.first() == Some(&"Z");
    // `rest` starts at field 3 (state): utime is field 14 → index 11, stime index 12.
    let ticks = |i: usize| -> io::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
    };
    let cpu_s = (ticks(11)? + ticks(12)?) / TICKS_PER_SECOND;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_s,
        rss_kib: kib("VmRSS:"),
        anon_kib: kib("RssAnon:"),
        zombie,
    })
}

/// Samples `pid` if there is one; the bench still runs (without server figures) if not.
pub fn sample_opt(pid: Option<u32>) -> Option<ProcSample> {
    pid.and_then(|p| sample(p).ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_our_own_process() {
        let s = super::sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(s.anon_kib > 0 && s.anon_kib <= s.rss_kib);
        assert!(!s.zombie);
        assert!(s.cpu_s >= 0.0);
    }
}
