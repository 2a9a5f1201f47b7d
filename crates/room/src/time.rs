//! Time as the core sees it: a number the caller passes in.

use std::fmt;

/// Milliseconds since the Unix epoch (in a simulation, since the simulation's epoch).
///
/// The core never reads a clock; every handler takes the current `Millis` as a parameter, which
/// keeps it deterministic and lets transcripts print times as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Whole seconds since the epoch.
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// The IRCv3 `server-time` form: `2026-11-24T13:05:00.123Z` (UTC, millisecond precision).
    pub fn to_rfc3339(self) -> String {
        match i64::try_from(self.0)
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
        {
            Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            None => "1970-01-01T00:00:00.000Z".to_owned(),
        }
    }

    /// A human form for RPL_CREATED: `2026-11-24 13:05:00 UTC`.
    pub fn to_human(self) -> String {
        match i64::try_from(self.0)
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
        {
            Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            None => "an unknown date".to_owned(),
        }
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_format_has_millisecond_precision() {
        assert_eq!(
            Millis(1_795_957_500_123).to_rfc3339(),
            "2026-11-29T13:05:00.123Z"
        );
        assert_eq!(Millis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
    }
}
