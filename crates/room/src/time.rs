//! Time as the core sees it: a number the caller passes in.

use std::fmt;

/// Milliseconds since the Unix epoch (in a simulation, since the simulation's epoch).
///
/// The core never reads a clock; every handler takes the current `Millis` as a parameter, which
/// keeps it deterministic and lets transcripts print times as plain numbers.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
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
    /// Written by hand (a history page formats a hundred of them; chrono's formatter parses its
    /// pattern each time): the civil date from the day count, Howard Hinnant's way.
    pub fn to_rfc3339(self) -> String {
        let (days, ms) = (self.0 / 86_400_000, self.0 % 86_400_000);
        // Years past 9999 do not fit the form; chrono gave the epoch for them too.
        if days > 2_932_896 {
            return "1970-01-01T00:00:00.000Z".to_owned();
        }
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
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
        // The same as chrono's, across leap years, centuries and the form's last year.
        for ms in (0..253_402_300_799_999u64).step_by(7_919_876_543) {
            let chrono = chrono::DateTime::from_timestamp_millis(ms as i64)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            assert_eq!(Millis(ms).to_rfc3339(), chrono, "{ms}");
        }
        assert_eq!(
            Millis(951_782_400_000).to_rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
