//! Starting and cancelling rounds. Creating one validates the request like any other (quorum,
//! deadline, aggregation, plan), reads the base version's layout and file header, starts the
//! round's coordinator, then writes the D1 row with its audit record; cancelling asks the
//! coordinator, which records the cancel. The JSON routes and the console call these.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::fl::pieces::{BlobError, Blobs};
use edgeplane_core::fl::round::{validate_deadline, AggregationSpec, Quorum};
use edgeplane_core::fl::safetensors;
use edgeplane_core::fl::shard;
use edgeplane_core::fl::wire::{CancelRequest, Requester, RoundConfig};
use edgeplane_core::fl::RoundState;
use edgeplane_core::ids::{looks_like_id, PlanId, RoundId};
use edgeplane_core::views::federation::Round;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use serde::Deserialize;
use serde_json::json;

use super::rounds::{self, round_in_org};
use super::versions::load_version;
use crate::clients::round::RoundClient;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::storage::R2Blobs;

/// The base version a round starts from: its number, or its id.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VersionRef {
    Number(i64),
    Id(String),
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    #[serde(default)]
    pub hyperparams: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub max_steps: Option<u32>,
    #[serde(default)]
    pub max_duration_sec: Option<f64>,
}

/// `POST /v1/orgs/{org}/rounds`'s body, and what the console's form builds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRound {
    pub model_id: String,
    pub base_version: VersionRef,
    pub target: u32,
    pub min: u32,
    pub max: u32,
    pub deadline_seconds: u64,
    #[serde(default)]
    pub device_group: Option<String>,
    pub aggregation: AggregationSpec,
    #[serde(default)]
    pub plan: Option<PlanSpec>,
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

/// Starts a round in the org `cx` acts in and answers its live view.
pub async fn create(cx: &Cx<'_>, body: CreateRound) -> Result<Round, ApiError> {
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
    let event = Event::new(AuditAction::RoundCreated, "round", round_id.as_str()).meta(json!({
        "model_id": base.model_id, "base_version": base.version, "target": q.target, "min": q.min,
        "max": q.max, "deadline_seconds": body.deadline_seconds, "device_group": body.device_group,
        "aggregation": body.aggregation, "shards": shards.len(),
    }));
    let batch = OrgBatch::new(&org_id).insert(
        "fl_rounds",
        &[
            "id",
            "model_id",
            "base_version_id",
            "plan_id",
            "state",
            "target",
            "min_updates",
            "max_participants",
            "deadline_at_ms",
            "device_group_id",
            "aggregation",
            "plan",
            "created_by",
            "created_at_ms",
        ],
        args![
            round_id.as_str(),
            &base.model_id,
            &base.id,
            plan_id.as_str(),
            RoundState::Open.as_str(),
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
    );
    cx.commit(batch, [event]).await?;
    let row = round_in_org(cx.db(), &round_id, &org_id).await?;
    rounds::live(cx.db(), cx.env, &row).await
}

/// What a cancel did: the round as it is now, and whether D1 already has the cancel (`false`
/// while the coordinator still retries that write; the round is cancelled either way).
pub struct Cancelled {
    pub round: Round,
    pub recorded: bool,
}

/// Cancels a round of the org `cx` acts in. The coordinator stops accepting at once and writes
/// the cancel to D1 with its audit record; a repeat is harmless.
pub async fn cancel(cx: &Cx<'_>, id: &RoundId) -> Result<Cancelled, ApiError> {
    let org_id = cx.org()?.org_id.clone();
    let row = round_in_org(cx.db(), id, &org_id).await?;
    let reply = RoundClient::for_round(cx.env, id)?
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
    Ok(Cancelled {
        round: rounds::live(cx.db(), cx.env, &row).await?,
        recorded: reply.recorded,
    })
}
