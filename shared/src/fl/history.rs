//! A device's history, as its page and the JSON API show it: its heartbeats counted per hour,
//! and the rounds it took part in with how each ended for it.
//!
//! **Heartbeats.** A heartbeat overwrites the device's row (the latest values drive presence,
//! targeting and round health). Keeping every heartbeat would grow without bound — a phone
//! beating each minute is 10,080 rows a week — so each one also counts in its hour's row
//! (`fl_heartbeat_hours`: a count and the hour's last signals, written in the heartbeat's own
//! D1 batch), and the cron deletes hours older than the window. A device keeps at most
//! [`RETENTION_HOURS`] rows, however often it beats.
//!
//! **Participations.** While a round runs, its coordinator decides every join and update, and
//! D1 is not written on that path (100,000 devices may join in ten minutes). When the round
//! ends, the coordinator writes one row per participation (`fl_participations`) in the same
//! guarded D1 batch as the round's end, so they are written exactly once, and never for a
//! round that has not ended: a live round's devices are on the round's page.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fl::ledger::records::{ParticipantRecord, UploadOutcome};
use crate::fl::participation::{ParticipationState, UploadState};
use crate::fl::round::RejectReason;
use crate::fl::wire::ParticipationId;
use crate::ids::DeviceId;
use crate::store::Value;
use crate::time::IsoMillis;
use crate::views::federation::{HeartbeatHour, HeartbeatTimeline};

/// One bucket of the heartbeat timeline: an hour.
pub const BUCKET_MS: i64 = 3_600_000;
/// How many hours of heartbeats are kept: a week, which shows a daily rhythm and a weekend
/// while bounding each device's rows.
pub const RETENTION_HOURS: i64 = 7 * 24;

/// The start of the hour `at_ms` falls in (UTC; also before 1970).
pub fn hour_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// The first hour of the window at `now_ms`: the current hour and the 167 before it. Hours
/// that start earlier are pruned by the cron and never shown.
pub fn window_start(now_ms: i64) -> i64 {
    hour_of(now_ms) - (RETENTION_HOURS - 1) * BUCKET_MS
}

/// The heartbeat's hour: one row per device and hour, counted up by each heartbeat in it.
pub struct HeartbeatHourRow;

impl HeartbeatHourRow {
    pub const TABLE: &'static str = "fl_heartbeat_hours";
    /// The columns after `org_id`; [`HeartbeatHourRow::values`] binds them.
    pub const COLUMNS: &'static [&'static str] = &[
        "device_id",
        "hour_ms",
        "count",
        "last_heartbeat",
        "last_at_ms",
    ];
    pub const KEY: &'static str = "device_id, hour_ms";
    /// What a heartbeat does to its hour's row when one exists.
    pub const ON_CONFLICT: &'static str = "count = count + 1, \
         last_heartbeat = excluded.last_heartbeat, last_at_ms = excluded.last_at_ms";
    /// Deletes up to [`HeartbeatHourRow::PRUNE_LIMIT`] hours before the window, oldest first;
    /// binds [`window_start`] and the limit.
    pub const PRUNE: &'static str = "DELETE FROM fl_heartbeat_hours WHERE rowid IN \
         (SELECT rowid FROM fl_heartbeat_hours WHERE hour_ms < ? ORDER BY hour_ms LIMIT ?)";
    /// Rows one cron run deletes at most, so a run stays bounded. The cron runs every 5
    /// minutes: 600,000 rows an hour, a fleet of that many devices each beating every hour.
    pub const PRUNE_LIMIT: i64 = 50_000;

    /// `heartbeat_json` is the validated heartbeat as the device row keeps it.
    pub fn values(device_id: &str, heartbeat_json: &str, at_ms: i64) -> Vec<Value> {
        vec![
            device_id.into(),
            hour_of(at_ms).into(),
            1i64.into(),
            heartbeat_json.into(),
            at_ms.into(),
        ]
    }
}

/// The timeline from the stored hours: those inside the window at `now_ms`, oldest first (an
/// hour the cron has not pruned yet is left out, so the answer does not depend on when it ran).
pub fn timeline(
    device_id: DeviceId,
    mut hours: Vec<HeartbeatHour>,
    now_ms: i64,
) -> HeartbeatTimeline {
    let from = window_start(now_ms);
    hours.retain(|h| h.hour.millis() >= from && h.hour.millis() <= now_ms);
    hours.sort_by_key(|h| h.hour);
    hours.dedup_by_key(|h| h.hour);
    HeartbeatTimeline {
        device_id,
        bucket_seconds: BUCKET_MS / 1000,
        from: IsoMillis(from),
        to: IsoMillis(now_ms),
        total: hours.iter().map(|h| h.count).sum(),
        hours,
    }
}

impl HeartbeatTimeline {
    /// Every hour of the window with its count, empty hours as 0: what a chart draws.
    pub fn counts(&self) -> Vec<(i64, u64)> {
        let mut stored = self.hours.iter().peekable();
        let mut out = Vec::with_capacity(RETENTION_HOURS as usize);
        let mut hour = self.from.millis();
        while hour <= self.to.millis() && out.len() < RETENTION_HOURS as usize {
            let mut n = 0;
            while let Some(h) = stored.next_if(|h| h.hour.millis() <= hour) {
                if h.hour.millis() == hour {
                    n += h.count;
                }
            }
            out.push((hour, n));
            hour += BUCKET_MS;
        }
        out
    }
}

/// How a round went for one device, once it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipationOutcome {
    /// An update of the device's was accepted into the round.
    Accepted,
    /// It sent updates and every one was refused (the last refusal says why).
    Rejected,
    /// It joined and never completed an update.
    Dropped,
    /// The device was revoked while the round ran.
    Revoked,
}

impl ParticipationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipationOutcome::Accepted => "accepted",
            ParticipationOutcome::Rejected => "rejected",
            ParticipationOutcome::Dropped => "dropped",
            ParticipationOutcome::Revoked => "revoked",
        }
    }
}

/// A refused update: why, in the validator's words, and when (a refused upload keeps only its
/// start, so that is its time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: RejectReason,
    pub message: String,
    pub at_ms: i64,
}

/// One participation of an ended round, as the coordinator writes it to D1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipationSummary {
    pub device_id: DeviceId,
    pub participation_id: ParticipationId,
    pub outcome: ParticipationOutcome,
    pub joined_at_ms: i64,
    pub accepted_at_ms: Option<i64>,
    pub rejected_updates: u32,
    pub last_rejection: Option<Refusal>,
}

/// Each participation's outcome from the coordinator's rows, in join order. A revoked device is
/// `revoked` whatever it sent; otherwise an accepted update makes it `accepted`, refused ones
/// only `rejected`, and none completed `dropped`.
pub fn summarize(
    participants: &[ParticipantRecord],
    uploads: &[UploadOutcome],
) -> Vec<ParticipationSummary> {
    let mut by_participation: BTreeMap<&ParticipationId, Vec<&UploadOutcome>> = BTreeMap::new();
    for u in uploads {
        by_participation
            .entry(&u.participation_id)
            .or_default()
            .push(u);
    }
    participants
        .iter()
        .map(|p| {
            let mine = by_participation.get(&p.id).into_iter().flatten();
            let mut accepted_at_ms: Option<i64> = None;
            let mut rejected_updates = 0u32;
            let mut last_rejection: Option<Refusal> = None;
            for u in mine {
                match u.state {
                    UploadState::Accepted => {
                        let at = u.completed_at_ms.unwrap_or(u.created_at_ms);
                        accepted_at_ms = Some(accepted_at_ms.map_or(at, |a| a.min(at)));
                    }
                    UploadState::Rejected => {
                        rejected_updates += 1;
                        if let Some((reason, message)) = &u.reject {
                            if last_rejection
                                .as_ref()
                                .is_none_or(|l| u.created_at_ms >= l.at_ms)
                            {
                                last_rejection = Some(Refusal {
                                    reason: *reason,
                                    message: message.clone(),
                                    at_ms: u.created_at_ms,
                                });
                            }
                        }
                    }
                    UploadState::Uploading | UploadState::Completing | UploadState::Abandoned => {}
                }
            }
            let outcome = if p.state == ParticipationState::Revoked {
                ParticipationOutcome::Revoked
            } else if accepted_at_ms.is_some() {
                ParticipationOutcome::Accepted
            } else if rejected_updates > 0 {
                ParticipationOutcome::Rejected
            } else {
                ParticipationOutcome::Dropped
            };
            ParticipationSummary {
                device_id: p.device_id.clone(),
                participation_id: p.id.clone(),
                outcome,
                joined_at_ms: p.joined_at_ms,
                accepted_at_ms,
                rejected_updates,
                last_rejection,
            }
        })
        .collect()
}

/// The participations of a round as D1 rows, inserted a chunk at a time from a JSON array
/// (`json_each`), so 10,000 participants are 20 statements, each far below D1's limits on a
/// bound value (1 MB) and a statement (100 KB).
pub struct ParticipationRows;

impl ParticipationRows {
    pub const TABLE: &'static str = "fl_participations";
    /// Rows per statement: a row's JSON is at most ~1 KB (a refusal's message is bounded).
    pub const CHUNK: usize = 500;
    /// The columns after `org_id`.
    pub const COLUMNS: &'static [&'static str] = &[
        "round_id",
        "device_id",
        "participation_id",
        "outcome",
        "joined_at_ms",
        "accepted_at_ms",
        "rejected_updates",
        "reject_reason",
        "reject_message",
        "rejected_at_ms",
    ];
    /// The rest of the `SELECT` after the org id; binds the round id, a chunk's JSON and the
    /// org id again. Only the org's own devices get a row.
    pub const SELECT: &'static str = "?, json_extract(p.value, '$.device_id'), \
         json_extract(p.value, '$.participation_id'), json_extract(p.value, '$.outcome'), \
         json_extract(p.value, '$.joined_at_ms'), json_extract(p.value, '$.accepted_at_ms'), \
         json_extract(p.value, '$.rejected_updates'), \
         json_extract(p.value, '$.last_rejection.reason'), \
         json_extract(p.value, '$.last_rejection.message'), \
         json_extract(p.value, '$.last_rejection.at_ms') \
         FROM json_each(?) p WHERE EXISTS (SELECT 1 FROM fl_devices d \
         WHERE d.id = json_extract(p.value, '$.device_id') AND d.org_id = ?)";

    /// The bound values of each statement (see [`ParticipationRows::SELECT`]).
    pub fn chunks(
        round_id: &str,
        org_id: &str,
        rows: &[ParticipationSummary],
    ) -> Result<Vec<Vec<Value>>, serde_json::Error> {
        rows.chunks(Self::CHUNK)
            .map(|chunk| {
                Ok(vec![
                    round_id.into(),
                    serde_json::to_string(chunk)?.into(),
                    org_id.into(),
                ])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::testing::MemSql;
    use crate::store::SqlExec;
    use crate::views::federation::Heartbeat;

    const H: i64 = BUCKET_MS;

    #[test]
    fn heartbeats_fall_in_their_hour_and_the_window_is_the_last_168_hours() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(H - 1), 0);
        assert_eq!(hour_of(H), H);
        assert_eq!(hour_of(5 * H + 17), 5 * H);
        // Before 1970 still rounds down, not towards zero.
        assert_eq!(hour_of(-1), -H);
        let now = 1000 * H + 1234;
        assert_eq!(window_start(now), (1000 - 167) * H);
        // The window holds exactly 168 hour starts, the current one included.
        let starts = (window_start(now)..=now).step_by(H as usize).count();
        assert_eq!(starts as i64, RETENTION_HOURS);
    }

    fn hour(start: i64, count: u64) -> HeartbeatHour {
        HeartbeatHour {
            hour: IsoMillis(start),
            count,
            last_at: IsoMillis(start + 10),
            last: Heartbeat::default(),
        }
    }

    #[test]
    fn the_timeline_keeps_the_window_in_order_and_charts_every_hour() {
        let now = 1000 * H + 5;
        let dev: DeviceId = format!("dev_{}", "0".repeat(28)).parse().unwrap();
        let stored = vec![
            hour(1000 * H, 2),
            hour(832 * H, 9), // just before the window: not yet pruned, not shown
            hour(998 * H, 3),
            hour(833 * H, 1), // the window's first hour
        ];
        let t = timeline(dev, stored, now);
        let starts: Vec<i64> = t.hours.iter().map(|h| h.hour.millis()).collect();
        assert_eq!(starts, vec![833 * H, 998 * H, 1000 * H]);
        assert_eq!(t.total, 6);
        assert_eq!(t.from, IsoMillis(833 * H));
        assert_eq!(t.bucket_seconds, 3600);
        let counts = t.counts();
        assert_eq!(counts.len(), 168);
        assert_eq!(counts[0], (833 * H, 1));
        assert_eq!(counts[165], (998 * H, 3));
        assert_eq!(counts[166], (999 * H, 0));
        assert_eq!(counts[167], (1000 * H, 2));
        assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 6);
    }

    fn d1() -> MemSql {
        let db = MemSql::with_d1_schema();
        db.exec(
            "INSERT INTO orgs (id, slug, name, created_at_ms, created_by) VALUES \
               ('org_a', 'a', 'A', 1, 'u'), ('org_b', 'b', 'B', 1, 'u')",
            &[],
        )
        .unwrap();
        db
    }

    fn count(db: &MemSql, sql: &str) -> i64 {
        db.one(sql, &[]).unwrap().unwrap().get(0).unwrap()
    }

    /// The statements the gateway runs (as `OrgBatch` builds them), against `schema.sql`: a
    /// heartbeat counts in its hour, a second one in the same hour adds to it, and the prune
    /// removes exactly the hours before the window.
    #[test]
    fn hours_are_upserted_and_pruned_at_the_window() {
        let db = d1();
        db.exec(
            "INSERT INTO fl_devices (id, org_id, device_identifier, created_at_ms) VALUES (printf('dev_%028x', 1), 'org_a', 'a', 1)",
            &[],
        )
        .unwrap();
        let upsert = format!(
            "INSERT INTO {} (org_id, {}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT ({}) DO UPDATE SET {} \
             WHERE {}.org_id = excluded.org_id",
            HeartbeatHourRow::TABLE,
            HeartbeatHourRow::COLUMNS.join(", "),
            HeartbeatHourRow::KEY,
            HeartbeatHourRow::ON_CONFLICT,
            HeartbeatHourRow::TABLE,
        );
        let now = 1000 * H;
        for (at, battery) in [
            (now + 5, "10"),
            (now + 60_000, "20"),
            (now - 168 * H, "5"),
            (now - 200 * H, "1"),
        ] {
            let mut args = vec![Value::from("org_a")];
            args.extend(HeartbeatHourRow::values(
                dev(1).as_str(),
                &format!("{{\"battery_pct\":{battery}}}"),
                at,
            ));
            db.exec(&upsert, &args).unwrap();
        }
        let row = db
            .one(
                "SELECT count, last_heartbeat, last_at_ms FROM fl_heartbeat_hours WHERE hour_ms = ?",
                &[Value::Int(now)],
            )
            .unwrap()
            .unwrap();
        assert_eq!(row.get::<i64>(0).unwrap(), 2);
        assert_eq!(row.get::<String>(1).unwrap(), "{\"battery_pct\":20}");
        assert_eq!(row.get::<i64>(2).unwrap(), now + 60_000);
        assert_eq!(count(&db, "SELECT count(*) FROM fl_heartbeat_hours"), 3);
        // A bounded run deletes at most its limit, oldest first; the window's own hours stay.
        let prune = || {
            db.exec(
                HeartbeatHourRow::PRUNE,
                &[Value::Int(window_start(now)), Value::Int(1)],
            )
            .unwrap()
        };
        prune();
        assert_eq!(
            count(&db, "SELECT min(hour_ms) FROM fl_heartbeat_hours"),
            now - 168 * H
        );
        prune();
        prune();
        assert_eq!(count(&db, "SELECT count(*) FROM fl_heartbeat_hours"), 1);
        assert_eq!(count(&db, "SELECT hour_ms FROM fl_heartbeat_hours"), now);
    }

    fn dev(n: u32) -> DeviceId {
        format!("dev_{n:028x}").parse().unwrap()
    }

    fn pid(n: u32) -> ParticipationId {
        ParticipationId::parse(&format!("p-{n}")).unwrap()
    }

    fn participant(n: u32, state: ParticipationState) -> ParticipantRecord {
        ParticipantRecord {
            id: pid(n),
            device_id: dev(n),
            state,
            joined_at_ms: 100 + i64::from(n),
            upload_id: None,
        }
    }

    fn upload(n: u32, state: UploadState, at: i64, reject: Option<RejectReason>) -> UploadOutcome {
        UploadOutcome {
            participation_id: pid(n),
            state,
            created_at_ms: at,
            completed_at_ms: (state == UploadState::Accepted).then_some(at + 5),
            reject: reject.map(|r| (r, format!("{} at {at}", r.as_str()))),
        }
    }

    #[test]
    fn each_participation_gets_one_outcome_and_its_last_refusal() {
        use ParticipationState as P;
        use UploadState as U;
        let participants = [
            participant(1, P::Accepted),
            participant(2, P::Uploading),
            participant(3, P::Joined),
            participant(4, P::Revoked),
        ];
        let uploads = [
            // 1: refused, then accepted.
            upload(1, U::Rejected, 200, Some(RejectReason::NonFinite)),
            upload(1, U::Accepted, 300, None),
            // 2: refused twice; the later refusal is the one kept.
            upload(2, U::Rejected, 400, Some(RejectReason::TensorMismatch)),
            upload(2, U::Rejected, 250, Some(RejectReason::NonFinite)),
            upload(2, U::Abandoned, 500, None),
            // 3: an upload cut off by the round's end.
            upload(3, U::Uploading, 600, None),
            // 4: revoked mid-upload.
            upload(4, U::Rejected, 700, Some(RejectReason::DeviceRevoked)),
        ];
        let s = summarize(&participants, &uploads);
        let outcomes: Vec<_> = s.iter().map(|p| p.outcome).collect();
        use ParticipationOutcome as O;
        assert_eq!(
            outcomes,
            vec![O::Accepted, O::Rejected, O::Dropped, O::Revoked]
        );
        assert_eq!(s[0].accepted_at_ms, Some(305));
        assert_eq!(s[0].rejected_updates, 1);
        assert_eq!(s[1].rejected_updates, 2);
        let last = s[1].last_rejection.as_ref().unwrap();
        assert_eq!(
            (last.reason, last.at_ms),
            (RejectReason::TensorMismatch, 400)
        );
        assert_eq!(last.message, "tensor_mismatch at 400");
        assert_eq!(s[2].last_rejection, None);
        assert_eq!(s[2].joined_at_ms, 103);
        assert_eq!(
            s[3].last_rejection.as_ref().map(|r| r.reason),
            Some(RejectReason::DeviceRevoked)
        );
    }

    /// The chunked insert against `schema.sql`: every participation of the org's devices lands
    /// with its outcome and refusal, across chunks; another org's device gets no row.
    #[test]
    fn participations_insert_in_chunks_for_the_orgs_devices_only() {
        let db = d1();
        db.exec(
            "WITH RECURSIVE n(value) AS (SELECT 0 UNION ALL SELECT value + 1 FROM n WHERE value < 1199) \
             INSERT INTO fl_devices (id, org_id, device_identifier, created_at_ms) \
             SELECT printf('dev_%028x', value), CASE WHEN value = 7 THEN 'org_b' ELSE 'org_a' END, \
             'd' || value, 1 FROM n",
            &[],
        )
        .unwrap();
        db.exec(
            "INSERT INTO fl_models (id, org_id, name, created_by, created_at_ms) VALUES ('mdl_a', 'org_a', 'm', 'u', 1)",
            &[],
        )
        .unwrap();
        db.exec(
            "INSERT INTO fl_model_versions (id, org_id, model_id, version, status, sha256, size_bytes, \
             parameters, layout, pieces, created_by, created_at_ms) VALUES \
             ('mv_a', 'org_a', 'mdl_a', 1, 'ready', 'h', 1, 1, '{}', '[]', 'u', 1)",
            &[],
        )
        .unwrap();
        db.exec(
            "INSERT INTO fl_rounds (id, org_id, model_id, base_version_id, plan_id, state, target, \
             min_updates, max_participants, deadline_at_ms, aggregation, plan, created_by, created_at_ms) \
             VALUES ('rnd_a', 'org_a', 'mdl_a', 'mv_a', 'pln_a', 'published', 1, 1, 1200, 9, '{}', '{}', 'u', 1)",
            &[],
        )
        .unwrap();
        let participants: Vec<ParticipantRecord> = (0..1200)
            .map(|n| participant(n, ParticipationState::Joined))
            .collect();
        let uploads = [upload(
            3,
            UploadState::Rejected,
            90,
            Some(RejectReason::NonFinite),
        )];
        let rows = summarize(&participants, &uploads);
        let chunks = ParticipationRows::chunks("rnd_a", "org_a", &rows).unwrap();
        assert_eq!(chunks.len(), 3);
        let sql = format!(
            "INSERT INTO {} (org_id, {}) SELECT ?, {}",
            ParticipationRows::TABLE,
            ParticipationRows::COLUMNS.join(", "),
            ParticipationRows::SELECT
        );
        for values in chunks {
            let mut args = vec![Value::from("org_a")];
            args.extend(values);
            db.exec(&sql, &args).unwrap();
        }
        assert_eq!(count(&db, "SELECT count(*) FROM fl_participations"), 1199);
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM fl_participations WHERE device_id = printf('dev_%028x', 7)"
            ),
            0
        );
        let r = db
            .one(
                "SELECT outcome, rejected_updates, reject_reason, reject_message, rejected_at_ms, \
                 accepted_at_ms, joined_at_ms, participation_id FROM fl_participations WHERE device_id = printf('dev_%028x', 3)",
                &[],
            )
            .unwrap()
            .unwrap();
        assert_eq!(r.get::<String>(0).unwrap(), "rejected");
        assert_eq!(r.get::<i64>(1).unwrap(), 1);
        assert_eq!(r.get::<String>(2).unwrap(), "non_finite");
        assert_eq!(r.get::<String>(3).unwrap(), "non_finite at 90");
        assert_eq!(r.get::<i64>(4).unwrap(), 90);
        assert_eq!(r.get::<Option<i64>>(5).unwrap(), None);
        assert_eq!(r.get::<i64>(6).unwrap(), 103);
        assert_eq!(r.get::<String>(7).unwrap(), "p-3");
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM fl_participations WHERE outcome = 'dropped'"
            ),
            1198
        );
    }
}
