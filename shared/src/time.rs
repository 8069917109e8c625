//! Time as plain numbers. Nothing in this crate reads a clock: callers pass `now`, so logic is
//! deterministic under test and the same on Workers (where `std::time` is unavailable).

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 / ISO 8601 in UTC with an explicit offset, e.g. `2026-11-22T08:00:00Z`.
pub fn rfc3339(unix_seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix_seconds, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Milliseconds variant, for timestamps where ordering within a second matters.
pub fn rfc3339_millis(unix_millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 timestamp (any offset) to unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(
            parse_rfc3339("2026-11-18T12:06:40+01:00"),
            Some(1_795_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(rfc3339_millis(1_500), "1970-01-01T00:00:01.500Z");
    }
}
