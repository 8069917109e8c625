//! Rounds in the control plane: create (which starts the round's coordinator), list, read live
//! progress, cancel.

use edgeplane_core::auth::{authorize, Action};
use edgeplane_core::fl::round::{validate_deadline, AggregationSpec, Quorum};
use edgeplane_core::fl::safetensors;
use edgeplane_core::fl::shard;
use edgeplane_core::ids::looks_like_id;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;

use super::common::{iso, query, round_in_org, RoundRow, ROUND_COLUMNS};
use super::models::load_version;
use crate::authn;
use crate::clients::round::RoundClient;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;
use crate::storage::R2Blobs;
use edgeplane_core::fl::pieces::{BlobError, Blobs};
use edgeplane_core::fl::wire::{CancelRequest, Progress, Requester, RoundConfig};
use edgeplane_core::ids::{PlanId, RoundId};

#[derive(Deserialize)]
#[serde(untagged)]
enum VersionRef {
    Number(i64),
    Id(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PlanSpec {
    #[serde(default)]
    hyperparams: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    max_steps: Option<u32>,
    #[serde(default)]
    max_duration_sec: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRound {
    model_id: String,
    base_version: VersionRef,
    target: u32,
    min: u32,
    max: u32,
    deadline_seconds: u64,
    #[serde(default)]
    device_group: Option<String>,
    aggregation: AggregationSpec,
    #[serde(default)]
    plan: Option<PlanSpec>,
}

/// A stored base version that cannot be read: logged with its cause, answered as internal.
fn stored(e: BlobError) -> ApiError {
    edgeplane_runtime::log::error("base version read", &e.to_string());
    ApiError::internal()
}

fn max_shard_elements(cx: &Cx<'_>) -> u64 {
    cx.env
        .var("FL_MAX_SHARD_ELEMENTS")
        .ok()
        .and_then(|v| v.to_string().parse::<u64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(shard::DEFAULT_MAX_SHARD_ELEMENTS)
}

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateRound = cx.json().await?;
    let q = Quorum::new(body.target, body.min, body.max)?;
    validate_deadline(body.deadline_seconds)?;
    body.aggregation.validate()?;
    let plan = body.plan.unwrap_or_default();
    if plan.max_steps.is_some_and(|s| s == 0 || s > 1_000_000)
        || plan
            .max_duration_sec
            .is_some_and(|d| !(d.is_finite() && d > 0.0 && d <= 86_400.0))
    {
        return Err(ApiError::validation(
            "plan.max_steps must be 1..=1000000 and plan.max_duration_sec 0..=86400",
        ));
    }
    let plan_json = serde_json::json!({
        "hyperparams": plan.hyperparams,
        "max_steps": plan.max_steps.unwrap_or(100),
        "max_duration_sec": plan.max_duration_sec.unwrap_or(300.0),
    });
    if plan_json.to_string().len() > 8 * 1024 {
        return Err(ApiError::validation("plan must be at most 8 KiB of JSON"));
    }
    let org_id = cx.org()?.org_id.clone();
    if !looks_like_id(&body.model_id, "mdl") {
        return Err(ApiError::not_found("model"));
    }
    let which = match &body.base_version {
        VersionRef::Number(n) => n.to_string(),
        VersionRef::Id(s) => s.clone(),
    };
    let base = load_version(cx, &body.model_id, &org_id, &which).await?;
    if let Some(g) = &body.device_group {
        let found: Option<serde_json::Value> = if looks_like_id(g, "dgr") {
            cx.db()
                .first(
                    "SELECT id FROM fl_device_groups WHERE id = ? AND org_id = ?",
                    args![g, &org_id],
                )
                .await?
        } else {
            None
        };
        if found.is_none() {
            return Err(ApiError::not_found("device group"));
        }
    }
    let layout = base.layout()?;
    let shards = shard::plan(layout.total_elements(), max_shard_elements(cx))
        .map_err(ApiError::validation)?;
    // Where each base tensor's data starts in the base file (its header says).
    let pieces = base.pieces()?;
    let blobs = R2Blobs::from_env(cx.env)?;
    let read = |range| blobs.read(&pieces, range);
    let first8 = read(0..8).await.map_err(stored)?;
    let n = safetensors::header_len(&first8).map_err(|_| ApiError::internal())?;
    let head = read(8..8 + n).await.map_err(stored)?;
    let header = safetensors::parse_header(&head).map_err(|_| ApiError::internal())?;
    let base_tensor_starts = header
        .match_base(&layout)
        .map_err(|_| ApiError::internal())?;

    let now = now_ms();
    let round_id = RoundId::generate(now)?;
    let plan_id = PlanId::generate(now)?;
    let deadline = now + body.deadline_seconds as i64 * 1000;
    let internal = |_| ApiError::internal();
    let cfg = RoundConfig {
        round_id: round_id.clone(),
        org_id: org_id.parse().map_err(internal)?,
        model_id: base.model_id.parse().map_err(internal)?,
        base_version_id: base.id.parse().map_err(internal)?,
        base_version: base.version,
        plan_id: plan_id.clone(),
        layout,
        base_pieces: pieces,
        base_tensor_starts,
        shards: shards.iter().map(|r| (r.start, r.end)).collect(),
        target: q.target,
        min: q.min,
        max: q.max,
        deadline_at_ms: deadline,
        aggregation: body.aggregation.clone(),
    };
    // The coordinator first: a D1 row never points at a round that has no coordinator.
    RoundClient::for_round(cx.env, &round_id)?
        .init(&cfg)
        .await?;
    let aggregation = serde_json::to_string(&body.aggregation).map_err(|_| ApiError::internal())?;
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "round.created",
        "round",
        round_id.as_str(),
        serde_json::json!({
            "model_id": base.model_id, "base_version": base.version, "target": q.target, "min": q.min,
            "max": q.max, "deadline_seconds": body.deadline_seconds, "device_group": body.device_group,
            "aggregation": body.aggregation, "shards": shards.len(),
        }),
    );
    cx.db()
        .commit_audited(
            vec![Stmt::new(
                "INSERT INTO fl_rounds (id, org_id, model_id, base_version_id, plan_id, state, target, min_updates, \
                 max_participants, deadline_at_ms, device_group_id, aggregation, plan, created_by, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                args![
                    round_id.as_str(),
                    &org_id,
                    &base.model_id,
                    &base.id,
                    plan_id.as_str(),
                    q.target,
                    q.min,
                    q.max,
                    deadline,
                    body.device_group.clone(),
                    aggregation,
                    plan_json.to_string(),
                    &cx.principal.id,
                    now
                ],
            )],
            vec![event],
            now,
        )
        .await?;
    let row = round_in_org(cx.db(), &round_id, &org_id).await?;
    let view = round_view(cx, &row, true).await?;
    respond::created(&serde_json::json!({"round": view}))
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

/// A heartbeat older than this counts as stale in the health summary.
const STALE_HEARTBEAT_MS: i64 = 10 * 60 * 1000;

async fn round_view(cx: &Cx<'_>, r: &RoundRow, live: bool) -> Result<serde_json::Value, ApiError> {
    let mut v = serde_json::json!({
        "id": r.id,
        "org_id": r.org_id,
        "model_id": r.model_id,
        "base_version_id": r.base_version_id,
        "base_version": r.base_version,
        "plan_id": r.plan_id,
        "state": r.state,
        "target": r.target,
        "min": r.min_updates,
        "max": r.max_participants,
        "deadline_at": iso(r.deadline_at_ms),
        "device_group": r.device_group_id,
        "aggregation": serde_json::from_str::<serde_json::Value>(&r.aggregation).unwrap_or_default(),
        "created_by": r.created_by,
        "created_at": iso(r.created_at_ms),
        "closed_at": r.closed_at_ms.map(iso),
        "published_version_id": r.published_version_id,
    });
    if !live {
        return Ok(v);
    }
    let round_id: RoundId = r.id.parse().map_err(|_| ApiError::internal())?;
    let p: Progress = RoundClient::for_round(cx.env, &round_id)?
        .progress()
        .await?;
    // Eligible devices right now (the group's, or the org's), not revoked.
    let selected: Option<N> = match &r.device_group_id {
        None => cx.db().first(
            "SELECT count(*) AS n FROM fl_devices WHERE org_id = ? AND revoked_at_ms IS NULL",
            args![&r.org_id],
        ),
        Some(g) => cx.db().first(
            "SELECT CASE WHEN g.tags IS NULL THEN (SELECT count(*) FROM fl_device_group_members m JOIN fl_devices d \
             ON d.id = m.device_id WHERE m.group_id = g.id AND d.revoked_at_ms IS NULL) ELSE (SELECT count(*) \
             FROM fl_devices d WHERE d.org_id = g.org_id AND d.revoked_at_ms IS NULL AND NOT EXISTS (SELECT 1 \
             FROM json_each(g.tags) t WHERE t.value NOT IN (SELECT value FROM json_each(d.tags)))) END AS n \
             FROM fl_device_groups g WHERE g.id = ?",
            args![g],
        ),
    }
    .await?;
    let selected = selected.map(|s| s.n).unwrap_or(0).max(p.joined as i64);
    let ids = serde_json::to_string(&p.device_ids).map_err(|_| ApiError::internal())?;
    let now = now_ms();
    let health: Option<Health> = cx
        .db()
        .first(
            "SELECT count(heartbeat_at_ms) AS reporting, avg(json_extract(heartbeat, '$.battery_pct')) AS battery_avg, \
             sum(CASE WHEN json_extract(heartbeat, '$.charging') THEN 1 ELSE 0 END) AS charging, \
             sum(CASE WHEN heartbeat_at_ms < ? THEN 1 ELSE 0 END) AS stale \
             FROM fl_devices WHERE id IN (SELECT value FROM json_each(?))",
            args![now - STALE_HEARTBEAT_MS, ids.clone()],
        )
        .await?;
    let nets: Vec<NetCount> = cx
        .db()
        .all(
            "SELECT json_extract(heartbeat, '$.network_type') AS network_type, count(*) AS n FROM fl_devices \
             WHERE id IN (SELECT value FROM json_each(?)) AND heartbeat IS NOT NULL GROUP BY 1",
            args![ids],
        )
        .await?;
    let rejected_total: u64 = p.rejected.values().sum();
    let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
    v["state"] = serde_json::json!(p.state.as_str());
    v["failure"] = serde_json::json!(p.failure.map(|f| serde_json::json!({
        "reason": f.as_str(),
        "message": f.describe(),
    })));
    v["closed_at"] = serde_json::json!(p.closed_at_ms.map(iso));
    if p.published_version_id.is_some() {
        v["published_version_id"] = serde_json::json!(p.published_version_id);
    }
    let h = health.unwrap_or(Health {
        reporting: 0,
        battery_avg: None,
        charging: None,
        stale: None,
    });
    v["progress"] = serde_json::json!({
        "selected": selected,
        "joined": p.joined,
        "uploading": p.uploading,
        "accepted": p.accepted,
        "rejected": p.rejected,
        "rejected_total": rejected_total,
        "participation_rate": ratio(p.joined as f64, selected as f64),
        "completion_rate": ratio(p.accepted as f64, p.joined as f64),
        "total_samples": p.total_samples,
        "capped_weights": p.capped_weights,
        "metrics": p.metrics,
        "folded": p.folded,
        "shards": p.shards,
        "device_health": {
            "participants": p.device_ids.len(),
            "reporting": h.reporting,
            "stale": h.stale.unwrap_or(0),
            "battery_pct_avg": h.battery_avg,
            "charging": h.charging.unwrap_or(0),
            "network_types": nets.into_iter().map(|n| (n.network_type.unwrap_or_else(|| "unknown".into()), n.n)).collect::<std::collections::BTreeMap<_, _>>(),
        },
    });
    Ok(v)
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let org_id = cx.org()?.org_id.clone();
    let state = query(cx, "state")?;
    if let Some(s) = &state {
        if edgeplane_core::fl::RoundState::parse(s).is_none() {
            return Err(ApiError::new(ErrorCode::InvalidQuery, "unknown state"));
        }
    }
    let rows: Vec<RoundRow> = cx
        .db()
        .all(
            &format!(
                "SELECT {ROUND_COLUMNS} FROM fl_rounds r JOIN fl_model_versions v ON v.id = r.base_version_id \
                 WHERE r.org_id = ? AND (? IS NULL OR r.state = ?) ORDER BY r.created_at_ms DESC LIMIT 200"
            ),
            args![&org_id, state.clone(), state],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(round_view(cx, r, false).await?);
    }
    respond::ok(&serde_json::json!({"rounds": out}))
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let org_id = cx.org()?.org_id.clone();
    let id: RoundId = cx.id("round")?;
    let row = round_in_org(cx.db(), &id, &org_id).await?;
    let view = round_view(cx, &row, true).await?;
    respond::ok(&serde_json::json!({"round": view}))
}

/// `GET /v1/rounds/{round}`: the same view, for any principal with access to the round's org.
pub async fn get_by_id(cx: &mut Cx<'_>) -> HttpResult {
    let id: RoundId = cx.id("round")?;
    #[derive(Deserialize)]
    struct OrgOf {
        org_id: String,
    }
    let org: OrgOf = cx
        .db()
        .first(
            "SELECT org_id FROM fl_rounds WHERE id = ?",
            args![id.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("round"))?;
    let access = authn::org_access(cx.db(), &cx.principal, &org.org_id)
        .await
        .map_err(|_| ApiError::not_found("round"))?;
    authorize(&access, Action::ReadRounds)?;
    let row = round_in_org(cx.db(), &id, &org.org_id).await?;
    let view = round_view(cx, &row, true).await?;
    respond::ok(&serde_json::json!({"round": view}))
}

/// Cancels a round. The coordinator stops accepting at once and writes the cancel to D1 with its
/// audit record; a repeat is harmless. Answers 200 when D1 has the cancel, 202 while the
/// coordinator is still retrying that write (the round is cancelled either way).
pub async fn cancel(cx: &mut Cx<'_>) -> HttpResult {
    let org_id = cx.org()?.org_id.clone();
    let id: RoundId = cx.id("round")?;
    let row = round_in_org(cx.db(), &id, &org_id).await?;
    let reply = RoundClient::for_round(cx.env, &id)?
        .cancel(&CancelRequest {
            requester: Requester {
                actor_type: cx.principal.kind.as_str().to_owned(),
                actor_id: cx.principal.id.clone(),
                ip: cx.rc.ip.clone(),
                user_agent: cx.rc.user_agent.clone(),
                request_id: Some(cx.rc.request_id.clone()),
            },
        })
        .await?;
    let row = round_in_org(cx.db(), &row_id(&row)?, &org_id).await?;
    let view = round_view(cx, &row, true).await?;
    let body = serde_json::json!({"round": view});
    if reply.recorded {
        respond::ok(&body)
    } else {
        respond::json(202, &body)
    }
}

fn row_id(r: &RoundRow) -> Result<RoundId, ApiError> {
    r.id.parse().map_err(|_| ApiError::internal())
}
