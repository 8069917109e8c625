//! Deployments: the D1 rows, the deployments that target one device (for its desired state),
//! and a rollout's per-stage progress. The decisions are `edgeplane_core::fl::rollout`'s.

use edgeplane_core::fl::rollout::{
    self, Candidate, Observed, ObservedStatus, RolloutState, Stages,
};
use edgeplane_core::ids::DeploymentId;
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::Deployment;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;
use serde::Deserialize;

use super::{corrupt, stored_id};

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

/// Every deployment that targets `device_id` and still delivers (not rolled back).
pub async fn candidates_for_device(
    db: &Db,
    org_id: &str,
    device_id: &str,
) -> Result<Vec<Candidate>, ApiError> {
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
