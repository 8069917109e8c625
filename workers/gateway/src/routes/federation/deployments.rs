//! Deployments in the control plane: create a staged rollout of an approved version to device
//! groups, list, show with per-stage progress, and the transitions (promote, pause, resume,
//! roll back), each audited in the batch that makes it.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::fl::rollout::{self, Position, Stages, Transition, MAX_GROUPS};
use edgeplane_core::ids::{DeploymentId, DeviceGroupId, ModelId, TypedId};
use edgeplane_core::views::federation::{DeploymentBody, DeploymentList};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::{OnDuplicate, OrgBatch};
use serde::Deserialize;
use serde_json::json;

use super::common::query;
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::service::federation::deployments::{
    deployment_in_org, with_progress, DeploymentRow, DEPLOYMENT_SELECT,
};
use crate::service::federation::versions::load_version;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDeployment {
    model_id: String,
    /// The version's number or id.
    version: serde_json::Value,
    device_group_ids: Vec<String>,
    #[serde(default)]
    stages: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct PreviousRow {
    version_id: String,
}

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateDeployment = cx.json().await?;
    let org_id = cx.org()?.org_id.clone();
    let model_id = ModelId::parse(&body.model_id).map_err(|_| ApiError::not_found("model"))?;
    let which = match &body.version {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => {
            return Err(ApiError::validation(
                "version must be a number or a version id",
            ))
        }
    };
    let stages = match body.stages {
        Some(s) => Stages::new(s).map_err(ApiError::validation)?,
        None => Stages::default_plan(),
    };
    if body.device_group_ids.is_empty() || body.device_group_ids.len() > MAX_GROUPS {
        return Err(ApiError::validation(format!(
            "device_group_ids must name 1 to {MAX_GROUPS} device groups"
        )));
    }
    let mut groups: Vec<DeviceGroupId> = body
        .device_group_ids
        .iter()
        .map(|g| DeviceGroupId::parse(g).map_err(|_| ApiError::not_found("device group")))
        .collect::<Result<_, _>>()?;
    groups.sort();
    groups.dedup();
    let version = load_version(cx, model_id.as_str(), &org_id, &which).await?;
    if version.status != "approved" {
        return Err(ApiError::conflict(
            "only an approved version can be deployed: approve it first",
        ));
    }
    #[derive(Deserialize)]
    struct N {
        n: i64,
    }
    let ids: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
    let found: Option<N> = cx
        .db()
        .first(
            "SELECT count(*) AS n FROM fl_device_groups WHERE org_id = ? AND id IN (SELECT value FROM json_each(?))",
            args![&org_id, serde_json::to_string(&ids).map_err(|_| ApiError::internal())?],
        )
        .await?;
    if found.map(|f| f.n).unwrap_or(0) != groups.len() as i64 {
        return Err(ApiError::not_found("device group"));
    }
    let previous: Option<PreviousRow> = cx
        .db()
        .first(
            "SELECT version_id FROM fl_deployments WHERE org_id = ? AND model_id = ? \
             AND state != 'rolled_back' ORDER BY created_at_ms DESC, id DESC LIMIT 1",
            args![&org_id, model_id.as_str()],
        )
        .await?;
    let now = now_ms();
    let id = DeploymentId::generate(now)?;
    let stages_json = serde_json::to_string(&stages).map_err(|_| ApiError::internal())?;
    let mut batch = OrgBatch::new(&org_id)
        .guard(
            "NOT EXISTS (SELECT 1 FROM fl_deployments WHERE org_id = ? AND model_id = ? \
             AND state IN ('active', 'paused'))",
            args![&org_id, model_id.as_str()],
            ApiError::conflict(
                "a rollout of this model is in progress: promote it to 100% or roll it back first",
            ),
        )
        .insert(
            "fl_deployments",
            &[
                "id",
                "model_id",
                "version_id",
                "previous_version_id",
                "stages",
                "stage_index",
                "state",
                "created_by",
                "created_at_ms",
                "updated_at_ms",
            ],
            args![
                id.as_str(),
                model_id.as_str(),
                &version.id,
                previous.as_ref().map(|p| p.version_id.clone()),
                &stages_json,
                0i64,
                "active",
                &cx.principal.id,
                now,
                now
            ],
        );
    for g in &groups {
        batch = batch.insert_linked(
            "fl_deployment_groups",
            &["deployment_id", "group_id"],
            args![id.as_str(), g.as_str()],
            &[
                ("fl_deployments", id.as_str()),
                ("fl_device_groups", g.as_str()),
            ],
            OnDuplicate::Fail,
        );
    }
    let event = Event::new(AuditAction::RolloutCreated, "deployment", id.as_str()).meta(json!({
        "model_id": model_id.as_str(),
        "version_id": version.id,
        "version": version.version,
        "previous_version_id": previous.map(|p| p.version_id),
        "device_group_ids": ids,
        "stages": stages.percents(),
    }));
    cx.commit(batch, [event]).await?;
    let row = deployment_in_org(cx.db(), &id, &org_id).await?;
    let view = with_progress(cx.db(), &org_id, &row).await?;
    respond::created(&DeploymentBody { deployment: view })
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let org_id = cx.org()?.org_id.clone();
    let model = query(cx, "model_id")?;
    let rows: Vec<DeploymentRow> = match model {
        Some(m) => {
            let m = ModelId::parse(&m).map_err(|_| ApiError::not_found("model"))?;
            cx.db()
                .all(
                    &format!(
                        "{DEPLOYMENT_SELECT} WHERE dp.org_id = ? AND dp.model_id = ? \
                         ORDER BY dp.created_at_ms DESC, dp.id DESC LIMIT 200"
                    ),
                    args![&org_id, m.as_str()],
                )
                .await?
        }
        None => {
            cx.db()
                .all(
                    &format!(
                        "{DEPLOYMENT_SELECT} WHERE dp.org_id = ? \
                         ORDER BY dp.created_at_ms DESC, dp.id DESC LIMIT 200"
                    ),
                    args![&org_id],
                )
                .await?
        }
    };
    respond::ok(&DeploymentList {
        deployments: rows
            .iter()
            .map(DeploymentRow::view)
            .collect::<Result<_, _>>()?,
    })
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let org_id = cx.org()?.org_id.clone();
    let id: DeploymentId = cx.id("deployment")?;
    let row = deployment_in_org(cx.db(), &id, &org_id).await?;
    let view = with_progress(cx.db(), &org_id, &row).await?;
    respond::ok(&DeploymentBody { deployment: view })
}

/// A transition, applied only if the rollout is still where the decision saw it (a guard in
/// the same batch: two operators promoting at once move it one stage, the other gets 409).
pub async fn transition(cx: &mut Cx<'_>, t: Transition) -> HttpResult {
    let org_id = cx.org()?.org_id.clone();
    let id: DeploymentId = cx.id("deployment")?;
    let row = deployment_in_org(cx.db(), &id, &org_id).await?;
    let stages = row.stages()?;
    let from = Position {
        state: row.state()?,
        stage: row.stage()?,
    };
    let to = rollout::transition(from, &stages, t)?;
    let now = now_ms();
    let batch = OrgBatch::new(&org_id)
        .guard(
            "EXISTS (SELECT 1 FROM fl_deployments WHERE id = ? AND org_id = ? AND state = ? AND stage_index = ?)",
            args![id.as_str(), &org_id, from.state.as_str(), from.stage as i64],
            ApiError::conflict("this rollout changed meanwhile: reload it and try again"),
        )
        .update(
            "fl_deployments",
            "state = ?, stage_index = ?, updated_at_ms = ?",
            args![to.state.as_str(), to.stage as i64, now],
            "id = ?",
            args![id.as_str()],
        );
    let action = match t {
        Transition::Promote => AuditAction::RolloutPromoted,
        Transition::Pause => AuditAction::RolloutPaused,
        Transition::Resume => AuditAction::RolloutResumed,
        Transition::Rollback => AuditAction::RolloutRolledBack,
    };
    let event = Event::new(action, "deployment", id.as_str()).meta(json!({
        "model_id": row.model_id,
        "version_id": row.version_id,
        "from_state": from.state.as_str(),
        "to_state": to.state.as_str(),
        "from_percent": stages.percent(from.stage),
        "to_percent": stages.percent(to.stage),
    }));
    cx.commit(batch, [event]).await?;
    let row = deployment_in_org(cx.db(), &id, &org_id).await?;
    let view = with_progress(cx.db(), &org_id, &row).await?;
    respond::ok(&DeploymentBody { deployment: view })
}
