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

/// A point in time (unix milliseconds) in an API body: RFC 3339 in UTC with milliseconds and an
/// explicit `+00:00` offset, e.g. `2026-12-01T08:00:00.000+00:00`. That is the form every
/// Octomil SDK parses (Python's `fromisoformat` before 3.11 refuses a `Z`), so the federated
/// learning surfaces, device and control plane alike, use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoMillis(pub i64);

impl IsoMillis {
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for IsoMillis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default();
        f.write_str(&t.to_rfc3339_opts(SecondsFormat::Millis, false))
    }
}

impl serde::Serialize for IsoMillis {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IsoMillis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| IsoMillis(t.timestamp_millis()))
            .map_err(serde::de::Error::custom)
    }
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
        let t = IsoMillis(1_795_000_000_250);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-18T11:06:40.250+00:00\"");
        assert_eq!(serde_json::from_str::<IsoMillis>(&json).unwrap(), t);
    }
}
