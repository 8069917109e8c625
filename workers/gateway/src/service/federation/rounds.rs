//! Rounds: the D1 row, joined with its base version, turned into the shared view; single reads
//! add the coordinator's live progress and the health of the devices taking part.

use std::collections::BTreeMap;

use edgeplane_core::fl::metrics::{Funnel, Point};
use edgeplane_core::fl::presence::ONLINE_WITHIN_MS;
use edgeplane_core::fl::round::{AggregationSpec, RoundFailure};
use edgeplane_core::fl::RoundState;
use edgeplane_core::ids::{OrgId, RoundId};
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{
    DeviceHealth, Failure, Round, RoundList, RoundMetrics, RoundProgress,
};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;
use serde::Deserialize;
use worker::Env;

use super::{corrupt, stored_id};
use crate::clients::round::RoundClient;
use crate::http::ctx::now_ms;

#[derive(Debug, Clone, Deserialize)]
pub struct RoundRow {
    pub id: String,
    pub org_id: String,
    pub model_id: String,
    pub base_version_id: String,
    pub base_version: i64,
    pub plan_id: String,
    pub state: String,
    pub target: i64,
    pub min_updates: i64,
    pub max_participants: i64,
    pub deadline_at_ms: i64,
    pub device_group_id: Option<String>,
    pub aggregation: String,
    pub plan: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub closed_at_ms: Option<i64>,
    pub published_version_id: Option<String>,
    pub failure: Option<String>,
}

pub const ROUND_COLUMNS: &str = "r.id, r.org_id, r.model_id, r.base_version_id, v.version AS base_version, \
     r.plan_id, r.state, r.target, r.min_updates, r.max_participants, r.deadline_at_ms, r.device_group_id, \
     r.aggregation, r.plan, r.created_by, r.created_at_ms, r.closed_at_ms, r.published_version_id, r.failure";

/// SQL (for `WHERE`; binds one parameter, the device id) true when that device may take part in
/// a round `r` targeting a group: explicit membership, or every tag of a tag group present on
/// the device.
pub const ELIGIBLE: &str = "(r.device_group_id IS NULL OR EXISTS (SELECT 1 FROM fl_device_groups g \
     JOIN fl_devices d ON d.id = ? WHERE g.id = r.device_group_id AND ( \
       (g.tags IS NULL AND EXISTS (SELECT 1 FROM fl_device_group_members m WHERE m.group_id = g.id AND m.device_id = d.id)) \
       OR (g.tags IS NOT NULL AND NOT EXISTS (SELECT 1 FROM json_each(g.tags) t \
            WHERE t.value NOT IN (SELECT value FROM json_each(d.tags)))))))";

/// SQL (for `WHERE`) true for a round `r` a device may join now: in its org, open or collecting,
/// before its deadline, and the device eligible. Binds the org id, now (ms), and the device id.
/// Offers list these rounds; a device downloads only their base versions.
pub fn offered_clause() -> String {
    format!(
        "r.org_id = ? AND r.state IN ('open', 'collecting') AND r.deadline_at_ms > ? AND {ELIGIBLE}"
    )
}

impl RoundRow {
    pub fn round_id(&self) -> Result<RoundId, ApiError> {
        self.id.parse().map_err(|_| corrupt("round id"))
    }

    pub fn state(&self) -> Result<RoundState, ApiError> {
        RoundState::parse(&self.state).ok_or_else(|| corrupt("round state"))
    }
}

/// A round of `org`, or 404 (another org's round answers the same).
pub async fn round_in_org(db: &Db, round_id: &RoundId, org_id: &str) -> Result<RoundRow, ApiError> {
    db.first(
        &format!(
            "SELECT {ROUND_COLUMNS} FROM fl_rounds r JOIN fl_model_versions v ON v.id = r.base_version_id \
             WHERE r.id = ? AND r.org_id = ?"
        ),
        args![round_id.as_str(), org_id],
    )
    .await?
    .ok_or_else(|| ApiError::not_found("round"))
}

/// The view of a round as D1 has it (no live counts).
pub fn view(r: &RoundRow) -> Result<Round, ApiError> {
    let failure = match &r.failure {
        Some(f) => Some(
            serde_json::from_value::<RoundFailure>(serde_json::Value::String(f.clone()))
                .map_err(|_| corrupt("round failure"))?,
        ),
        None => None,
    };
    Ok(Round {
        id: r.round_id()?,
        org_id: stored_id(&r.org_id)?,
        model_id: stored_id(&r.model_id)?,
        base_version_id: stored_id(&r.base_version_id)?,
        base_version: r.base_version,
        plan_id: stored_id(&r.plan_id)?,
        state: r.state()?,
        target: r.target as u32,
        min: r.min_updates as u32,
        max: r.max_participants as u32,
        deadline_at: IsoMillis(r.deadline_at_ms),
        device_group: r.device_group_id.as_deref().map(stored_id).transpose()?,
        aggregation: serde_json::from_str::<AggregationSpec>(&r.aggregation)
            .map_err(|_| corrupt("round aggregation"))?,
        created_by: r.created_by.clone(),
        created_at: IsoMillis(r.created_at_ms),
        closed_at: r.closed_at_ms.map(IsoMillis),
        published_version_id: r
            .published_version_id
            .as_deref()
            .map(stored_id)
            .transpose()?,
        failure: failure.map(Failure::from),
        progress: None,
    })
}

#[derive(Deserialize)]
struct Health {
    reporting: i64,
    battery_avg: Option<f64>,
    charging: Option<i64>,
    stale: Option<i64>,
}

#[derive(Deserialize)]
struct NetCount {
    network_type: Option<String>,
    n: i64,
}

#[derive(Deserialize)]
struct N {
    n: i64,
}

/// Devices eligible for the round right now (the group's, or the org's), not revoked.
async fn selected(db: &Db, r: &RoundRow) -> Result<i64, ApiError> {
    let n: Option<N> = match &r.device_group_id {
        None => db.first(
            "SELECT count(*) AS n FROM fl_devices WHERE org_id = ? AND revoked_at_ms IS NULL",
            args![&r.org_id],
        ),
        Some(g) => db.first(
            "SELECT CASE WHEN g.tags IS NULL THEN (SELECT count(*) FROM fl_device_group_members m JOIN fl_devices d \
             ON d.id = m.device_id WHERE m.group_id = g.id AND d.revoked_at_ms IS NULL) ELSE (SELECT count(*) \
             FROM fl_devices d WHERE d.org_id = g.org_id AND d.revoked_at_ms IS NULL AND NOT EXISTS (SELECT 1 \
             FROM json_each(g.tags) t WHERE t.value NOT IN (SELECT value FROM json_each(d.tags)))) END AS n \
             FROM fl_device_groups g WHERE g.id = ?",
            args![g],
        ),
    }
    .await?;
    Ok(n.map(|s| s.n).unwrap_or(0))
}

/// The round with its coordinator's live state and counts, and the health of its participants.
pub async fn live(db: &Db, env: &Env, r: &RoundRow) -> Result<Round, ApiError> {
    Ok(live_with_series(db, env, r).await?.0)
}

/// [`live`], and the accepted updates' metrics in acceptance order.
pub async fn live_with_series(
    db: &Db,
    env: &Env,
    r: &RoundRow,
) -> Result<(Round, Vec<Point>), ApiError> {
    let mut v = view(r)?;
    let mut p = RoundClient::for_round(env, &v.id)?.progress().await?;
    let series = std::mem::take(&mut p.series);
    let selected = selected(db, r).await?.max(p.joined as i64);
    let ids = serde_json::to_string(&p.device_ids).map_err(|_| ApiError::internal())?;
    let health: Option<Health> = db
        .first(
            "SELECT count(heartbeat_at_ms) AS reporting, avg(coalesce(json_extract(heartbeat, '$.battery_pct'), \
             json_extract(heartbeat, '$.metadata.battery_level'))) AS battery_avg, \
             sum(CASE WHEN json_extract(heartbeat, '$.charging') THEN 1 ELSE 0 END) AS charging, \
             sum(CASE WHEN heartbeat_at_ms < ? THEN 1 ELSE 0 END) AS stale \
             FROM fl_devices WHERE id IN (SELECT value FROM json_each(?))",
            args![now_ms() - ONLINE_WITHIN_MS, ids.clone()],
        )
        .await?;
    let nets: Vec<NetCount> = db
        .all(
            "SELECT coalesce(json_extract(heartbeat, '$.network_type'), json_extract(heartbeat, '$.metadata.network_type')) \
             AS network_type, count(*) AS n FROM fl_devices \
             WHERE id IN (SELECT value FROM json_each(?)) AND heartbeat IS NOT NULL GROUP BY 1",
            args![ids],
        )
        .await?;
    let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
    let h = health.unwrap_or(Health {
        reporting: 0,
        battery_avg: None,
        charging: None,
        stale: None,
    });
    v.state = p.state;
    v.closed_at = p.closed_at_ms.map(IsoMillis);
    if p.published_version_id.is_some() {
        v.published_version_id = p.published_version_id.clone();
    }
    if let Some(f) = p.failure {
        v.failure = Some(f.into());
    }
    v.progress = Some(RoundProgress {
        selected,
        joined: p.joined,
        uploading: p.uploading,
        accepted: p.accepted,
        rejected_total: p.rejected.values().sum(),
        rejected: p.rejected.clone(),
        participation_rate: ratio(p.joined as f64, selected as f64),
        completion_rate: ratio(p.accepted as f64, p.joined as f64),
        total_samples: p.total_samples,
        capped_weights: p.capped_weights,
        metrics: p.metrics,
        metric_spread: p.metric_spread,
        funnel: Funnel {
            offered: selected,
            joined: p.joined,
            uploaded: p.uploaded,
            accepted: p.accepted,
            rejected: p.rejected,
            dropped: p.dropped,
        },
        folded: p.folded,
        shards: p.shards,
        stragglers: p.stragglers,
        rejections: p.rejections,
        participation: p.participation,
        device_health: DeviceHealth {
            participants: p.device_ids.len(),
            reporting: h.reporting,
            stale: h.stale.unwrap_or(0),
            battery_pct_avg: h.battery_avg,
            charging: h.charging.unwrap_or(0),
            network_types: nets
                .into_iter()
                .map(|n| (n.network_type.unwrap_or_else(|| "unknown".into()), n.n))
                .collect::<BTreeMap<_, _>>(),
        },
    });
    Ok((v, series))
}

/// A round's training metrics and fleet health.
pub async fn metrics(
    db: &Db,
    env: &Env,
    org: &OrgId,
    id: &RoundId,
) -> Result<RoundMetrics, ApiError> {
    let row = round_in_org(db, id, org.as_str()).await?;
    let (round, series) = live_with_series(db, env, &row).await?;
    let progress = round.progress.ok_or_else(ApiError::internal)?;
    Ok(RoundMetrics {
        round_id: round.id,
        state: round.state,
        funnel: progress.funnel,
        metrics: progress.metric_spread,
        series,
        device_health: progress.device_health,
    })
}

/// One round of `org`, live.
pub async fn get(db: &Db, env: &Env, org: &OrgId, id: &RoundId) -> Result<Round, ApiError> {
    let row = round_in_org(db, id, org.as_str()).await?;
    live(db, env, &row).await
}

/// The org's rounds, newest first (at most 200), optionally in one state.
pub async fn list(db: &Db, org: &OrgId, state: Option<RoundState>) -> Result<RoundList, ApiError> {
    let state = state.map(|s| s.as_str());
    let rows: Vec<RoundRow> = db
        .all(
            &format!(
                "SELECT {ROUND_COLUMNS} FROM fl_rounds r JOIN fl_model_versions v ON v.id = r.base_version_id \
                 WHERE r.org_id = ? AND (? IS NULL OR r.state = ?) ORDER BY r.created_at_ms DESC LIMIT 200"
            ),
            args![org.as_str(), state, state],
        )
        .await?;
    Ok(RoundList {
        rounds: rows.iter().map(view).collect::<Result<_, _>>()?,
    })
}
