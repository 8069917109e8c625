//! Deployments: the D1 rows, the deployments that target one device (for its desired state),
//! a rollout's per-stage progress, and what the JSON routes and the console do with them:
//! create, list, show, and the transitions. The decisions are `edgeplane_core::fl::rollout`'s.
//!
//! Devices ask for their desired state far more often than operators change a rollout, so each
//! org's deliverable deployments and their groups' rules are read through a per-isolate cache
//! (`identity::cache::read_through`, as sessions and API keys are: single flight, nothing used
//! more than `STALENESS_BOUND_MS`, 3 s, after it was read) and matched against the calling
//! device in memory (`fl::targeting`). Whatever changes an org's rollouts or groups calls
//! [`forget_rollouts`] once its batch is done, so the isolate that made the change serves it
//! from the very next request; another isolate serves it within the bound.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::fl::rollout::{
    self, Candidate, Observed, ObservedStatus, Position, RolloutState, Stages, Transition,
    MAX_GROUPS,
};
use edgeplane_core::fl::targeting::{
    rollout_cache, DeviceTargets, GroupRow, GroupRule, OrgRollouts, Targeted, CANDIDATE_BYTES,
    MAX_CACHED_BYTES_PER_ORG, MAX_CACHED_DEPLOYMENTS,
};
use edgeplane_core::identity::cache::{read_through, TtlCache};
use edgeplane_core::ids::{DeploymentId, DeviceGroupId, ModelId, TypedId};
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{Deployment, DeploymentList};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::{Db, OnDuplicate, OrgBatch};
use serde::Deserialize;
use serde_json::json;

use super::versions::load_version;
use super::{corrupt, stored_id};
use crate::cx::Cx;
use crate::http::ctx::now_ms;

#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentRow {
    pub id: String,
    pub model_id: String,
    pub version_id: String,
    pub version: i64,
    pub sha256: String,
    pub size_bytes: i64,
    pub previous_version_id: Option<String>,
    pub group_ids: String,
    pub stages: String,
    pub stage_index: i64,
    pub state: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Columns of a deployment `dp` joined with its version `v`.
pub const DEPLOYMENT_SELECT: &str =
    "SELECT dp.id, dp.model_id, dp.version_id, v.version, v.sha256, \
     v.size_bytes, dp.previous_version_id, \
     (SELECT json_group_array(group_id) FROM (SELECT group_id FROM fl_deployment_groups \
        WHERE deployment_id = dp.id ORDER BY group_id)) AS group_ids, \
     dp.stages, dp.stage_index, dp.state, dp.created_at_ms, dp.updated_at_ms \
     FROM fl_deployments dp JOIN fl_model_versions v ON v.id = dp.version_id";

/// SQL (for `WHERE`; binds the device id) true when a group of deployment `dp` selects that
/// device: explicit membership, or every tag of a tag group present on the device.
pub const TARGETS_DEVICE: &str = "EXISTS (SELECT 1 FROM fl_deployment_groups dg \
     JOIN fl_device_groups g ON g.id = dg.group_id JOIN fl_devices d ON d.id = ? \
     WHERE dg.deployment_id = dp.id AND ( \
       (g.tags IS NULL AND EXISTS (SELECT 1 FROM fl_device_group_members m WHERE m.group_id = g.id AND m.device_id = d.id)) \
       OR (g.tags IS NOT NULL AND NOT EXISTS (SELECT 1 FROM json_each(g.tags) t \
            WHERE t.value NOT IN (SELECT value FROM json_each(d.tags))))))";

impl DeploymentRow {
    pub fn state(&self) -> Result<RolloutState, ApiError> {
        RolloutState::parse(&self.state).ok_or_else(|| corrupt("deployment state"))
    }

    pub fn stages(&self) -> Result<Stages, ApiError> {
        serde_json::from_str(&self.stages).map_err(|_| corrupt("deployment stages"))
    }

    pub fn stage(&self) -> Result<usize, ApiError> {
        usize::try_from(self.stage_index).map_err(|_| corrupt("deployment stage"))
    }

    pub fn candidate(&self) -> Result<Candidate, ApiError> {
        Ok(Candidate {
            deployment_id: self.id.clone(),
            model_id: self.model_id.clone(),
            version_id: self.version_id.clone(),
            version: self.version,
            sha256: self.sha256.clone(),
            size_bytes: u64::try_from(self.size_bytes).map_err(|_| corrupt("version size"))?,
            state: self.state()?,
            stage: self.stage()?,
            stages: self.stages()?,
            created_at_ms: self.created_at_ms,
        })
    }

    pub fn view(&self) -> Result<Deployment, ApiError> {
        let stages = self.stages()?;
        let stage = self.stage()?;
        let groups: Vec<String> =
            serde_json::from_str(&self.group_ids).map_err(|_| corrupt("deployment groups"))?;
        Ok(Deployment {
            id: stored_id(&self.id)?,
            model_id: stored_id(&self.model_id)?,
            version_id: stored_id(&self.version_id)?,
            version: self.version,
            previous_version_id: self
                .previous_version_id
                .as_deref()
                .map(stored_id)
                .transpose()?,
            device_group_ids: groups
                .iter()
                .map(|g| stored_id(g))
                .collect::<Result<_, _>>()?,
            state: self.state()?,
            percent: stages.percent(stage),
            stages: stages.percents().to_vec(),
            stage,
            created_at: IsoMillis(self.created_at_ms),
            updated_at: IsoMillis(self.updated_at_ms),
            progress: None,
        })
    }
}

/// A deployment of `org_id`, or 404 (another org's answers the same).
pub async fn deployment_in_org(
    db: &Db,
    id: &DeploymentId,
    org_id: &str,
) -> Result<DeploymentRow, ApiError> {
    db.first(
        &format!("{DEPLOYMENT_SELECT} WHERE dp.id = ? AND dp.org_id = ?"),
        args![id.as_str(), org_id],
    )
    .await?
    .ok_or_else(|| ApiError::not_found("deployment"))
}

thread_local! {
    static ROLLOUTS: RefCell<TtlCache<Rc<OrgRollouts>>> = RefCell::new(rollout_cache());
}

/// Drops an org's rollouts from this isolate's cache. Everything that creates or moves a
/// deployment, or changes a device group, calls this after its batch (whatever the batch's
/// outcome: a conflict means someone else changed it), so this isolate's next desired state
/// reflects the change.
pub fn forget_rollouts(org_id: &str) {
    ROLLOUTS.with(|c| c.borrow_mut().remove(org_id));
}

/// The org's deliverable deployments with their groups' rules, from D1 (two reads: the
/// deployments, then the rules of the groups they name).
async fn read_rollouts(db: &Db, org_id: &str) -> Result<Option<Rc<OrgRollouts>>, ApiError> {
    let rows: Vec<DeploymentRow> = db
        .all(
            &format!(
                "{DEPLOYMENT_SELECT} WHERE dp.org_id = ? AND dp.state != 'rolled_back' \
                 ORDER BY dp.created_at_ms DESC, dp.id DESC LIMIT ?"
            ),
            args![org_id, (MAX_CACHED_DEPLOYMENTS + 1) as i64],
        )
        .await?;
    let uncached = || Ok(Some(Rc::new(OrgRollouts::Uncached)));
    if rows.len() > MAX_CACHED_DEPLOYMENTS {
        return uncached();
    }
    let mut deployments = Vec::with_capacity(rows.len());
    let mut named = BTreeSet::new();
    let mut bytes = 0;
    // A stored row that does not parse (logged by `corrupt`) sends the org to the per-device
    // query, as before the cache: there it fails only the devices that row targets, instead of
    // every device of the org.
    for row in &rows {
        bytes += CANDIDATE_BYTES + row.group_ids.len();
        let Ok(groups) = serde_json::from_str::<Vec<String>>(&row.group_ids) else {
            corrupt("deployment groups");
            return uncached();
        };
        let Ok(candidate) = row.candidate() else {
            return uncached();
        };
        named.extend(groups.iter().cloned());
        deployments.push(Targeted { candidate, groups });
    }
    let mut rules = BTreeMap::new();
    if !named.is_empty() {
        let groups: Vec<GroupRow> = db
            .all(
                "SELECT id, tags FROM fl_device_groups WHERE org_id = ? \
                 AND id IN (SELECT value FROM json_each(?))",
                args![
                    org_id,
                    serde_json::to_string(&named).map_err(|_| ApiError::internal())?
                ],
            )
            .await?;
        bytes += groups
            .iter()
            .map(|g| g.id.len() + g.tags.as_ref().map_or(0, String::len))
            .sum::<usize>();
        if bytes > MAX_CACHED_BYTES_PER_ORG {
            return uncached();
        }
        for g in groups {
            let Ok(rule) = GroupRule::from_stored(g.tags.as_deref()) else {
                corrupt("device group tags");
                return uncached();
            };
            rules.insert(g.id, rule);
        }
    }
    Ok(Some(Rc::new(OrgRollouts::new(deployments, rules))))
}

/// Every deployment that targets the device and still delivers (not rolled back): from the
/// org's cached rollouts matched against the device's `targets` (its tags and groups as read on
/// this request), or, for an org with more deployments than the cache holds, from D1.
pub async fn candidates_for_device(
    db: &Db,
    org_id: &str,
    device_id: &str,
    targets: &DeviceTargets,
) -> Result<Vec<Candidate>, ApiError> {
    let org = read_through(&ROLLOUTS, org_id, now_ms(), || read_rollouts(db, org_id)).await?;
    if let Some(held) = org.and_then(|o| o.candidates_for(targets)) {
        return Ok(held);
    }
    let rows: Vec<DeploymentRow> = db
        .all(
            &format!(
                "{DEPLOYMENT_SELECT} WHERE dp.org_id = ? AND dp.state != 'rolled_back' AND {TARGETS_DEVICE}"
            ),
            args![org_id, device_id],
        )
        .await?;
    rows.iter().map(DeploymentRow::candidate).collect()
}

#[derive(Deserialize)]
struct TargetRow {
    id: String,
    installed_version: Option<String>,
    active_version: Option<String>,
    status: Option<String>,
}

/// The rollout's devices per stage, with what they report about its version.
pub async fn with_progress(
    db: &Db,
    org_id: &str,
    row: &DeploymentRow,
) -> Result<Deployment, ApiError> {
    let targets: Vec<TargetRow> = db
        .all(
            "SELECT d.id, s.installed_version, s.active_version, s.status FROM fl_devices d \
             LEFT JOIN fl_device_models s ON s.device_id = d.id AND s.model_id = ? \
             WHERE d.org_id = ? AND d.revoked_at_ms IS NULL AND EXISTS (SELECT 1 FROM fl_deployment_groups dg \
               JOIN fl_device_groups g ON g.id = dg.group_id WHERE dg.deployment_id = ? AND ( \
               (g.tags IS NULL AND EXISTS (SELECT 1 FROM fl_device_group_members m WHERE m.group_id = g.id AND m.device_id = d.id)) \
               OR (g.tags IS NOT NULL AND NOT EXISTS (SELECT 1 FROM json_each(g.tags) t \
                    WHERE t.value NOT IN (SELECT value FROM json_each(d.tags))))))",
            args![&row.model_id, org_id, &row.id],
        )
        .await?;
    let observed: Vec<Observed> = targets
        .into_iter()
        .map(|t| {
            let status = t
                .status
                .map(|s| ObservedStatus::parse(&s).ok_or_else(|| corrupt("device model status")))
                .transpose()?;
            Ok(Observed {
                device_id: t.id,
                installed_version: t.installed_version,
                active_version: t.active_version,
                status,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let mut view = row.view()?;
    view.progress = Some(rollout::progress(
        &row.id,
        &row.stages()?,
        &row.version.to_string(),
        &observed,
    ));
    Ok(view)
}

/// `POST /v1/orgs/{org}/deployments`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    pub model_id: String,
    /// The version's number or id.
    pub version: serde_json::Value,
    pub device_group_ids: Vec<String>,
    #[serde(default)]
    pub stages: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct PreviousRow {
    version_id: String,
}

/// Creates a staged rollout of an approved version to device groups (one rollout per model
/// under way at a time), audited in the same batch.
pub async fn create(cx: &Cx<'_>, body: CreateDeployment) -> Result<Deployment, ApiError> {
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
    let committed = cx.commit(batch, [event]).await;
    forget_rollouts(&org_id);
    committed?;
    get(cx, &id).await
}

/// The org's deployments, newest first (of one model, if given).
pub async fn list(cx: &Cx<'_>, model: Option<&str>) -> Result<DeploymentList, ApiError> {
    let org_id = cx.org()?.org_id.clone();
    let rows: Vec<DeploymentRow> = match model {
        Some(m) => {
            let m = ModelId::parse(m).map_err(|_| ApiError::not_found("model"))?;
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
    Ok(DeploymentList {
        deployments: rows
            .iter()
            .map(DeploymentRow::view)
            .collect::<Result<_, _>>()?,
    })
}

/// Deployment `id` of the org `cx` acts in (another org's: 404), with its per-stage progress.
pub async fn get(cx: &Cx<'_>, id: &DeploymentId) -> Result<Deployment, ApiError> {
    let org_id = cx.org()?.org_id.clone();
    let row = deployment_in_org(cx.db(), id, &org_id).await?;
    with_progress(cx.db(), &org_id, &row).await
}

/// A transition, applied only if the rollout is still where the decision saw it (a guard in
/// the same batch: two operators promoting at once move it one stage, the other gets 409).
pub async fn transition(
    cx: &Cx<'_>,
    id: &DeploymentId,
    t: Transition,
) -> Result<Deployment, ApiError> {
    let org_id = cx.org()?.org_id.clone();
    let row = deployment_in_org(cx.db(), id, &org_id).await?;
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
    let committed = cx.commit(batch, [event]).await;
    forget_rollouts(&org_id);
    committed?;
    get(cx, id).await
}

#[cfg(test)]
mod tests;
