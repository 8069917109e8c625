//! A round as people watch it: the stragglers (joined, no accepted update yet), the refused
//! updates grouped by reason with the devices that sent them, and participation over time.
//!
//! Computed from the coordinator's records each time a round is read, like `metrics`, and
//! bounded whatever the round's size: at most [`MAX_STRAGGLERS`] stragglers (the longest
//! waiting), [`MAX_DEVICES_PER_REASON`] devices per reason (the latest) and
//! [`MAX_PARTICIPATION_POINTS`] points over time; the totals are always exact, so a reader can
//! say how many were left out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::participation::ParticipationState;
use super::round::RejectReason;
use crate::ids::DeviceId;
use crate::time::IsoMillis;

/// The most stragglers a read lists.
pub const MAX_STRAGGLERS: usize = 50;
/// The most devices a read lists under one rejection reason.
pub const MAX_DEVICES_PER_REASON: usize = 20;
/// The most points of participation over time a read returns.
pub const MAX_PARTICIPATION_POINTS: usize = 120;

/// A participation as these summaries need it.
#[derive(Debug, Clone, Copy)]
pub struct Joined<'a> {
    pub device_id: &'a DeviceId,
    pub state: ParticipationState,
    pub joined_at_ms: i64,
}

/// A refused update as these summaries need it.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    pub device_id: &'a DeviceId,
    pub reason: RejectReason,
    pub message: &'a str,
    pub at_ms: i64,
}

/// A device that joined and has no accepted update yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Straggler {
    pub device_id: DeviceId,
    /// `joined` (no upload in flight, maybe after a refused one) or `uploading`.
    pub state: ParticipationState,
    pub joined_at: IsoMillis,
    /// Its updates this round refused so far.
    pub rejected_updates: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stragglers {
    /// Every straggler, listed or not.
    pub total: u64,
    /// The longest waiting first, at most [`MAX_STRAGGLERS`].
    pub longest_waiting: Vec<Straggler>,
}

/// One refused update of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedUpdate {
    pub device_id: DeviceId,
    pub message: String,
    /// When its upload started.
    pub at: IsoMillis,
}

/// The refused updates of one reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectionGroup {
    pub reason: RejectReason,
    /// Every refused update of this reason, listed or not.
    pub count: u64,
    /// The latest first, at most [`MAX_DEVICES_PER_REASON`].
    pub latest: Vec<RefusedUpdate>,
}

/// The round's counts as they stood at `at` (each counts participations, so it only grows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipationPoint {
    pub at: IsoMillis,
    pub joined: u64,
    /// Participations with a finished upload (accepted or refused).
    pub uploaded: u64,
    pub accepted: u64,
}

/// The stragglers: participations neither accepted nor revoked, the longest waiting first.
pub fn stragglers(joined: &[Joined<'_>], refused: &[Refused<'_>]) -> Stragglers {
    let mut waiting: Vec<&Joined<'_>> = joined
        .iter()
        .filter(|p| {
            matches!(
                p.state,
                ParticipationState::Joined | ParticipationState::Uploading
            )
        })
        .collect();
    waiting.sort_by(|a, b| {
        (a.joined_at_ms, a.device_id.as_str()).cmp(&(b.joined_at_ms, b.device_id.as_str()))
    });
    let mut refusals: BTreeMap<&str, u64> = BTreeMap::new();
    for r in refused {
        *refusals.entry(r.device_id.as_str()).or_default() += 1;
    }
    Stragglers {
        total: waiting.len() as u64,
        longest_waiting: waiting
            .into_iter()
            .take(MAX_STRAGGLERS)
            .map(|p| Straggler {
                device_id: p.device_id.clone(),
                state: p.state,
                joined_at: IsoMillis(p.joined_at_ms),
                rejected_updates: refusals.get(p.device_id.as_str()).copied().unwrap_or(0),
            })
            .collect(),
    }
}

/// The refused updates by reason (in the reasons' order), each with its latest devices.
pub fn rejections(refused: &[Refused<'_>]) -> Vec<RejectionGroup> {
    let mut by_reason: BTreeMap<RejectReason, Vec<&Refused<'_>>> = BTreeMap::new();
    for r in refused {
        by_reason.entry(r.reason).or_default().push(r);
    }
    by_reason
        .into_iter()
        .map(|(reason, mut list)| {
            list.sort_by(|a, b| {
                (b.at_ms, b.device_id.as_str()).cmp(&(a.at_ms, a.device_id.as_str()))
            });
            RejectionGroup {
                reason,
                count: list.len() as u64,
                latest: list
                    .into_iter()
                    .take(MAX_DEVICES_PER_REASON)
                    .map(|r| RefusedUpdate {
                        device_id: r.device_id.clone(),
                        message: r.message.to_owned(),
                        at: IsoMillis(r.at_ms),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Participation over time from the moments devices joined, finished an upload and had one
/// accepted: the counts after each moment something changed. Past
/// [`MAX_PARTICIPATION_POINTS`] moments, the span from the first to the last is cut into that
/// many equal buckets and each non-empty bucket keeps the counts at its end, so the last point
/// is always the present count.
pub fn participation(joins: &[i64], uploads: &[i64], accepts: &[i64]) -> Vec<ParticipationPoint> {
    // (when, which count): 0 joined, 1 uploaded, 2 accepted.
    let mut events: Vec<(i64, usize)> = joins
        .iter()
        .map(|t| (*t, 0))
        .chain(uploads.iter().map(|t| (*t, 1)))
        .chain(accepts.iter().map(|t| (*t, 2)))
        .collect();
    events.sort_unstable();
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Vec::new();
    };
    let (first, span) = (first.0, (last.0 - first.0).max(1) as i128);
    let distinct = events.windows(2).filter(|w| w[0].0 != w[1].0).count() + 1;
    let bucket = |t: i64| -> i64 {
        if distinct <= MAX_PARTICIPATION_POINTS {
            t
        } else {
            let n = MAX_PARTICIPATION_POINTS as i128;
            // The bucket's index, the last bucket closed at the end.
            (((t - first) as i128 * n / span).min(n - 1)) as i64
        }
    };
    let mut counts = [0u64; 3];
    let mut points: Vec<ParticipationPoint> = Vec::new();
    for (i, (at, which)) in events.iter().enumerate() {
        counts[*which] += 1;
        let next_bucket = events.get(i + 1).map(|(t, _)| bucket(*t));
        if next_bucket != Some(bucket(*at)) {
            points.push(ParticipationPoint {
                at: IsoMillis(*at),
                joined: counts[0],
                uploaded: counts[1],
                accepted: counts[2],
            });
        }
    }
    points
}

/// How long a straggler has waited, and what share of its time between joining and the
/// deadline that is (0 to 1; 1 once the deadline passed).
pub fn waited(joined_at_ms: i64, now_ms: i64, deadline_at_ms: i64) -> (i64, f64) {
    let waited = (now_ms - joined_at_ms).max(0);
    let window = deadline_at_ms - joined_at_ms;
    let share = if window <= 0 {
        1.0
    } else {
        (waited as f64 / window as f64).clamp(0.0, 1.0)
    };
    (waited, share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TypedId;

    fn dev(n: u32) -> DeviceId {
        DeviceId::parse(&format!("dev_{n:028x}")).unwrap()
    }

    #[test]
    fn stragglers_are_the_waiting_participations_longest_first_and_bounded() {
        let ids: Vec<DeviceId> = (0..(MAX_STRAGGLERS as u32 + 10)).map(dev).collect();
        let mut joined: Vec<Joined<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, d)| Joined {
                device_id: d,
                state: if i % 2 == 0 {
                    ParticipationState::Joined
                } else {
                    ParticipationState::Uploading
                },
                // Joined in reverse order of their ids.
                joined_at_ms: 10_000 - i as i64,
            })
            .collect();
        let (acc, rev) = (dev(9_000), dev(9_001));
        joined.push(Joined {
            device_id: &acc,
            state: ParticipationState::Accepted,
            joined_at_ms: 0,
        });
        joined.push(Joined {
            device_id: &rev,
            state: ParticipationState::Revoked,
            joined_at_ms: 0,
        });
        let last = &ids[ids.len() - 1];
        let refused = [
            Refused {
                device_id: last,
                reason: RejectReason::NonFinite,
                message: "NaN",
                at_ms: 1,
            },
            Refused {
                device_id: last,
                reason: RejectReason::Sha256Mismatch,
                message: "sha",
                at_ms: 2,
            },
        ];
        let s = stragglers(&joined, &refused);
        assert_eq!(
            s.total,
            ids.len() as u64,
            "accepted and revoked are not waiting"
        );
        assert_eq!(s.longest_waiting.len(), MAX_STRAGGLERS);
        assert_eq!(
            &s.longest_waiting[0].device_id, last,
            "the earliest join first"
        );
        assert_eq!(s.longest_waiting[0].rejected_updates, 2);
        assert_eq!(s.longest_waiting[1].rejected_updates, 0);
        assert!(s
            .longest_waiting
            .windows(2)
            .all(|w| w[0].joined_at <= w[1].joined_at));
        assert_eq!(stragglers(&[], &refused), Stragglers::default());
    }

    #[test]
    fn rejections_group_by_reason_count_all_and_list_the_latest() {
        let ids: Vec<DeviceId> = (0..(MAX_DEVICES_PER_REASON as u32 + 5)).map(dev).collect();
        let mut refused: Vec<Refused<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, d)| Refused {
                device_id: d,
                reason: RejectReason::NonFinite,
                message: "a value is not finite",
                at_ms: i as i64,
            })
            .collect();
        refused.push(Refused {
            device_id: &ids[0],
            reason: RejectReason::Malformed,
            message: "not safetensors",
            at_ms: 7,
        });
        let groups = rejections(&refused);
        assert_eq!(
            groups.iter().map(|g| g.reason).collect::<Vec<_>>(),
            vec![RejectReason::Malformed, RejectReason::NonFinite]
        );
        assert_eq!(groups[0].count, 1);
        assert_eq!(groups[0].latest[0].device_id, ids[0]);
        assert_eq!(groups[0].latest[0].message, "not safetensors");
        let nf = &groups[1];
        assert_eq!(nf.count, ids.len() as u64);
        assert_eq!(nf.latest.len(), MAX_DEVICES_PER_REASON);
        assert_eq!(nf.latest[0].device_id, ids[ids.len() - 1], "latest first");
        assert_eq!(nf.latest[0].at, IsoMillis(ids.len() as i64 - 1));
        assert!(rejections(&[]).is_empty());
    }

    #[test]
    fn participation_counts_each_moment_in_order() {
        // Two joins at 10, one at 20; an upload and its acceptance at 30; a refused upload at 40.
        let p = participation(&[20, 10, 10], &[30, 40], &[30]);
        let at: Vec<i64> = p.iter().map(|x| x.at.millis()).collect();
        assert_eq!(at, vec![10, 20, 30, 40]);
        let counts: Vec<(u64, u64, u64)> = p
            .iter()
            .map(|x| (x.joined, x.uploaded, x.accepted))
            .collect();
        assert_eq!(counts, vec![(2, 0, 0), (3, 0, 0), (3, 1, 1), (3, 2, 1)]);
        assert!(participation(&[], &[], &[]).is_empty());
    }

    #[test]
    fn participation_is_bounded_monotone_and_ends_at_the_present() {
        let joins: Vec<i64> = (0..5_000).map(|i| i * 7).collect();
        let uploads: Vec<i64> = (0..3_000).map(|i| 100 + i * 11).collect();
        let accepts: Vec<i64> = (0..2_500).map(|i| 101 + i * 13).collect();
        let p = participation(&joins, &uploads, &accepts);
        assert!(
            p.len() <= MAX_PARTICIPATION_POINTS && p.len() > 100,
            "{}",
            p.len()
        );
        assert!(p.windows(2).all(|w| w[0].at < w[1].at
            && w[0].joined <= w[1].joined
            && w[0].uploaded <= w[1].uploaded
            && w[0].accepted <= w[1].accepted));
        let end = p[p.len() - 1];
        assert_eq!(
            (end.joined, end.uploaded, end.accepted),
            (5_000, 3_000, 2_500)
        );
        assert_eq!(end.at.millis(), 4_999 * 7, "the last moment of all");
        // All at one moment: one point.
        assert_eq!(participation(&[5; 300], &[], &[]).len(), 1);
    }

    #[test]
    fn waited_is_a_share_of_the_time_left_at_joining() {
        assert_eq!(waited(1_000, 3_000, 5_000), (2_000, 0.5));
        assert_eq!(waited(1_000, 9_000, 5_000), (8_000, 1.0));
        assert_eq!(
            waited(1_000, 500, 5_000),
            (0, 0.0),
            "clock skew is no negative wait"
        );
        assert_eq!(
            waited(6_000, 7_000, 5_000),
            (1_000, 1.0),
            "joined after the deadline"
        );
    }
}
