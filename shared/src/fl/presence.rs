//! When a device was last heard from, in three words: `online` (a heartbeat in the last ten
//! minutes), `stale` (within a day) and `offline` (longer ago, or never). The device list's
//! filter and each device's label are computed here, and a round's health summary counts a
//! heartbeat older than [`ONLINE_WITHIN_MS`] as stale by the same threshold.

use serde::{Deserialize, Serialize};

/// A heartbeat at most this old counts as online.
pub const ONLINE_WITHIN_MS: i64 = 10 * 60 * 1000;
/// A heartbeat older than online but at most this old counts as stale; older is offline.
pub const STALE_WITHIN_MS: i64 = 24 * 60 * 60 * 1000;

/// The largest integer a D1 (JavaScript number) parameter holds exactly: an open upper bound.
const NO_UPPER_BOUND: i64 = (1 << 53) - 1;
/// Below every stored time: a device that never sent a heartbeat reads as this.
pub const NEVER: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastSeen {
    Online,
    Stale,
    Offline,
}

impl LastSeen {
    /// Every heartbeat time, and never: the window of no filter.
    pub const ANY: (i64, i64) = (NEVER, NO_UPPER_BOUND);
    pub const ALL: [LastSeen; 3] = [LastSeen::Online, LastSeen::Stale, LastSeen::Offline];

    /// The class of a device whose last heartbeat was at `heartbeat_at_ms` (none: never).
    pub fn of(heartbeat_at_ms: Option<i64>, now_ms: i64) -> LastSeen {
        let at = heartbeat_at_ms.unwrap_or(NEVER);
        LastSeen::ALL
            .into_iter()
            .find(|c| {
                let (lo, hi) = c.window(now_ms);
                lo <= at && at < hi
            })
            .unwrap_or(LastSeen::Offline)
    }

    /// The heartbeat times `[lo, hi)` of this class at `now_ms`, a never-seen device counted
    /// at [`NEVER`]: what a SQL filter binds against `coalesce(heartbeat_at_ms, -1)`. The
    /// three windows tile every time, so each device is in exactly one class. A heartbeat
    /// stamped a little in the future (another isolate's clock) is online.
    pub fn window(self, now_ms: i64) -> (i64, i64) {
        let online_from = now_ms - ONLINE_WITHIN_MS;
        let stale_from = now_ms - STALE_WITHIN_MS;
        match self {
            LastSeen::Online => (online_from, NO_UPPER_BOUND),
            LastSeen::Stale => (stale_from, online_from),
            LastSeen::Offline => (NEVER, stale_from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const MIN: i64 = 60_000;

    #[test]
    fn heartbeats_are_classified_by_age() {
        assert_eq!(LastSeen::of(Some(NOW), NOW), LastSeen::Online);
        assert_eq!(LastSeen::of(Some(NOW + MIN), NOW), LastSeen::Online);
        assert_eq!(LastSeen::of(Some(NOW - 10 * MIN), NOW), LastSeen::Online);
        assert_eq!(LastSeen::of(Some(NOW - 10 * MIN - 1), NOW), LastSeen::Stale);
        assert_eq!(
            LastSeen::of(Some(NOW - 24 * 60 * MIN), NOW),
            LastSeen::Stale
        );
        assert_eq!(
            LastSeen::of(Some(NOW - 24 * 60 * MIN - 1), NOW),
            LastSeen::Offline
        );
        assert_eq!(LastSeen::of(Some(0), NOW), LastSeen::Offline);
        assert_eq!(LastSeen::of(None, NOW), LastSeen::Offline);
    }

    /// The SQL filter's windows and the label agree, and every time falls in exactly one.
    #[test]
    fn windows_tile_time_and_agree_with_the_label() {
        let probes = [
            NEVER,
            0,
            NOW - 24 * 60 * MIN - 1,
            NOW - 24 * 60 * MIN,
            NOW - 10 * MIN - 1,
            NOW - 10 * MIN,
            NOW,
            NOW + 60 * MIN,
        ];
        for at in probes {
            let holding: Vec<LastSeen> = LastSeen::ALL
                .into_iter()
                .filter(|c| {
                    let (lo, hi) = c.window(NOW);
                    lo <= at && at < hi
                })
                .collect();
            let stored = (at != NEVER).then_some(at);
            assert_eq!(holding, vec![LastSeen::of(stored, NOW)], "at {at}");
        }
    }

    #[test]
    fn wire_names() {
        assert_eq!(
            serde_json::to_string(&LastSeen::Stale).ok().as_deref(),
            Some("\"stale\"")
        );
        assert!(serde_json::from_str::<LastSeen>("\"away\"").is_err());
    }
}
