//! Views of the federated-learning area: rounds and their live progress, devices, device groups,
//! and the device protocol's answers (which keep the Octomil SDK's field names).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fl::device_scope::DeviceScopes;
use crate::fl::history::ParticipationOutcome;
use crate::fl::layout::{ElementSpan, ModelLayout};
use crate::fl::live::{ParticipationPoint, RejectionGroup, Stragglers};
use crate::fl::metrics::{Funnel, Point, Spread};
use crate::fl::participation::ParticipationState;
use crate::fl::presence::LastSeen;
use crate::fl::rollout::{RolloutState, StageCount};
use crate::fl::round::{AggregationSpec, RejectReason, RoundFailure, RoundState};
use crate::fl::validate::UpdateFormat;
use crate::fl::wire::ParticipationId;
use crate::ids::{
    DeploymentId, DeviceGroupId, DeviceId, ModelId, ModelVersionId, OrgId, PlanId, RoundId,
    TypedId, UploadId,
};
use crate::time::IsoMillis;

/// Why a round failed, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: RoundFailure,
    pub message: String,
}

impl From<RoundFailure> for Failure {
    fn from(f: RoundFailure) -> Self {
        Failure {
            reason: f,
            message: f.describe().to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub id: RoundId,
    pub org_id: OrgId,
    pub model_id: ModelId,
    pub base_version_id: ModelVersionId,
    pub base_version: i64,
    pub plan_id: PlanId,
    pub state: RoundState,
    pub target: u32,
    pub min: u32,
    pub max: u32,
    pub deadline_at: IsoMillis,
    pub device_group: Option<DeviceGroupId>,
    pub aggregation: AggregationSpec,
    pub created_by: String,
    pub created_at: IsoMillis,
    pub closed_at: Option<IsoMillis>,
    pub published_version_id: Option<ModelVersionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Live counts from the round's coordinator (single-round reads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RoundProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundProgress {
    /// Devices eligible right now (the group's, or the org's), not revoked.
    pub selected: i64,
    pub joined: u64,
    pub uploading: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
    pub rejected_total: u64,
    pub participation_rate: Option<f64>,
    pub completion_rate: Option<f64>,
    pub total_samples: i64,
    /// Updates weighted at the round's sample cap rather than their claimed count.
    pub capped_weights: u64,
    /// Sample-weighted means of the metrics devices reported with accepted updates.
    pub metrics: BTreeMap<String, f64>,
    /// Each metric's sample-weighted mean, standard deviation, range and percentiles.
    pub metric_spread: BTreeMap<String, Spread>,
    /// Offered, joined, uploaded, accepted, rejected by reason, dropped.
    pub funnel: Funnel,
    /// Accepted updates folded into every aggregator shard.
    pub folded: i64,
    pub shards: usize,
    pub device_health: DeviceHealth,
    /// Joined, no accepted update yet: the total and the longest waiting (bounded).
    #[serde(default)]
    pub stragglers: Stragglers,
    /// Refused updates by reason, each with its latest devices (bounded).
    #[serde(default)]
    pub rejections: Vec<RejectionGroup>,
    /// Joined, uploaded and accepted over time (bounded).
    #[serde(default)]
    pub participation: Vec<ParticipationPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceHealth {
    pub participants: usize,
    pub reporting: i64,
    pub stale: i64,
    pub battery_pct_avg: Option<f64>,
    pub charging: i64,
    pub network_types: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundBody {
    pub round: Round,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundList {
    pub rounds: Vec<Round>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub device_identifier: String,
    pub tags: Vec<String>,
    pub created_at: IsoMillis,
    pub last_seen_at: Option<IsoMillis>,
    pub revoked_at: Option<IsoMillis>,
    pub revoked_reason: Option<String>,
    /// The device's last heartbeat.
    pub heartbeat: Option<Heartbeat>,
    pub heartbeat_at: Option<IsoMillis>,
}

/// Device telemetry as the device reports it (the latest values are kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charging: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_free_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Runtime signals as the Octomil SDK's `OctomilControl.heartbeat()` nests them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<HeartbeatMetadata>,
}

/// `DeviceInfo.update_metadata()`: battery level and connectivity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_level: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_type: Option<String>,
}

impl Heartbeat {
    /// Bounds every field, so what is kept per device stays small and printable.
    pub fn validate(&self) -> Result<(), crate::ApiError> {
        use crate::ApiError;
        if self
            .battery_pct
            .is_some_and(|b| !(0.0..=100.0).contains(&b))
        {
            return Err(ApiError::validation(
                "battery_pct must be between 0 and 100",
            ));
        }
        if self
            .storage_free_mb
            .is_some_and(|s| !(s.is_finite() && s >= 0.0))
        {
            return Err(ApiError::validation(
                "storage_free_mb must be a non-negative number",
            ));
        }
        let meta = self.metadata.clone().unwrap_or_default();
        if meta
            .battery_level
            .is_some_and(|b| !(0.0..=100.0).contains(&b))
        {
            return Err(ApiError::validation(
                "metadata.battery_level must be between 0 and 100",
            ));
        }
        for (v, what) in [
            (&meta.network_type, "metadata.network_type"),
            (&self.network_type, "network_type"),
            (&self.app_version, "app_version"),
            (&self.sdk_version, "sdk_version"),
            (&self.os_version, "os_version"),
            (&self.platform, "platform"),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
                    return Err(ApiError::validation(format!(
                        "{what} must be 1-64 printable characters"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub device_id: DeviceId,
    pub received_at: IsoMillis,
}

/// One hour of a device's heartbeats: how many arrived, and the last one's signals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatHour {
    /// The hour's start (UTC).
    pub hour: IsoMillis,
    pub count: u64,
    pub last_at: IsoMillis,
    pub last: Heartbeat,
}

/// `GET /v1/orgs/{org}/devices/{device}/heartbeats`: the retention window (the last 168 hours,
/// `fl::history`), hours with heartbeats only, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatTimeline {
    pub device_id: DeviceId,
    pub bucket_seconds: i64,
    pub from: IsoMillis,
    pub to: IsoMillis,
    /// Heartbeats in the window.
    pub total: u64,
    pub hours: Vec<HeartbeatHour>,
}

/// A refused update of a device's, in the round it was sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub round_id: RoundId,
    pub reason: RejectReason,
    pub message: String,
    pub at: IsoMillis,
}

/// How an ended round went for one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceParticipation {
    pub round_id: RoundId,
    pub model_id: ModelId,
    /// How the round itself ended.
    pub round_state: RoundState,
    pub participation_id: ParticipationId,
    pub outcome: ParticipationOutcome,
    pub joined_at: IsoMillis,
    pub accepted_at: Option<IsoMillis>,
    pub rejected_updates: u32,
    /// The last of its refused updates in this round, if any.
    pub last_rejection: Option<Rejection>,
}

/// `GET /v1/orgs/{org}/devices/{device}/participations`: ended rounds the device joined, newest
/// first, a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipationList {
    pub participations: Vec<DeviceParticipation>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<RoundId>,
    /// The device's most recent refused update in any ended round, whatever the page.
    pub last_rejection: Option<Rejection>,
}

/// Which page of a device's participations to show: older than `before` (a round id), `limit`
/// of them (the service clamps it to 1..=100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipationPage {
    pub before: Option<RoundId>,
    pub limit: u32,
}

impl ParticipationPage {
    pub const DEFAULT_LIMIT: u32 = 20;

    /// The page a query string names (`before`, `limit`; other names are someone else's). An
    /// empty value is no condition; a malformed one is an error in words.
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut page = ParticipationPage {
            before: None,
            limit: Self::DEFAULT_LIMIT,
        };
        for (k, v) in pairs {
            let v = v.trim();
            match k {
                _ if v.is_empty() => {}
                "before" => {
                    page.before = Some(
                        RoundId::parse(v).map_err(|_| "before must be a round id".to_owned())?,
                    )
                }
                "limit" => {
                    page.limit = v.parse().map_err(|_| "limit must be a number".to_owned())?
                }
                _ => {}
            }
        }
        Ok(page)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceBody {
    pub device: Device,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceList {
    pub devices: Vec<Device>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<DeviceId>,
}

/// Which devices `GET /v1/orgs/{org}/devices` (and the console's list) shows: a group's
/// members, one platform (as the heartbeat reports it), one last-seen class. None: all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<DeviceGroupId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<LastSeen>,
}

impl DeviceFilter {
    /// The filter a query string names (`group`, `platform`, `last_seen`; other names are
    /// someone else's, such as `after`). An empty value is no condition, as a form's "any"
    /// sends it; a value that names nothing is an error in words.
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut f = DeviceFilter::default();
        for (k, v) in pairs {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            match k {
                "group" => {
                    f.group = Some(
                        DeviceGroupId::parse(v)
                            .map_err(|_| "group is not a device group id".to_owned())?,
                    )
                }
                "platform" if v.len() <= 64 => f.platform = Some(v.to_owned()),
                "platform" => return Err("platform must be at most 64 characters".to_owned()),
                "last_seen" => {
                    f.last_seen = Some(
                        serde_json::from_value(serde_json::Value::String(v.to_owned()))
                            .map_err(|_| "last_seen must be online, stale or offline".to_owned())?,
                    )
                }
                _ => {}
            }
        }
        Ok(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupSelector {
    /// Devices carrying every tag of the group.
    Tags,
    /// Devices listed as members.
    Explicit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceGroup {
    pub id: DeviceGroupId,
    pub name: String,
    pub selector: GroupSelector,
    pub tags: Option<Vec<String>>,
    /// Devices in the group right now, revoked ones excluded.
    pub members: i64,
    /// Of them, the ones eligible right now: online (a heartbeat in the last ten minutes,
    /// `fl::presence`).
    pub eligible_now: i64,
    pub created_at: IsoMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceGroupBody {
    pub device_group: DeviceGroup,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceGroupList {
    pub device_groups: Vec<DeviceGroup>,
}

/// A bootstrap token as minted for the customer's backend: the secret is in this answer only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapTokenMinted {
    pub id: String,
    pub token: String,
    pub expires_at: IsoMillis,
    pub device_identifier: String,
    pub scopes: DeviceScopes,
}

/// The device credentials every exchange answers with, in the Octomil SDK's `DeviceAuthClient`
/// fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: TokenType,
    pub expires_in: i64,
    pub expires_at: IsoMillis,
    pub org_id: OrgId,
    pub device_identifier: String,
    pub device_id: DeviceId,
    pub scopes: DeviceScopes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenType {
    Bearer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: ModelId,
    pub name: String,
    pub description: Option<String>,
    pub latest_version: Option<i64>,
    pub created_at: IsoMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelBody {
    pub model: Model,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub models: Vec<Model>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Stored and checked; not yet approved for use.
    Ready,
    Approved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    Safetensors,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub id: ModelVersionId,
    pub model_id: ModelId,
    pub version: i64,
    pub parent_id: Option<ModelVersionId>,
    pub parent_version: Option<i64>,
    /// The round that produced it (none for an uploaded base).
    pub round_id: Option<RoundId>,
    pub status: VersionStatus,
    pub sha256: String,
    pub size_bytes: i64,
    pub parameters: i64,
    pub tensors: usize,
    pub format: ModelFormat,
    /// How a round's version was aggregated (algorithm, clipping, noise, participants, ...).
    pub aggregation: Option<serde_json::Value>,
    pub created_at: IsoMillis,
    pub approved_at: Option<IsoMillis>,
    /// The tensors (single-version reads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<ModelLayout>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersionBody {
    pub version: ModelVersion,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersionList {
    pub versions: Vec<ModelVersion>,
}

// ---- the device protocol -----------------------------------------------------------------

/// A round a device may join now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub round_id: RoundId,
    pub plan_id: PlanId,
    pub model_id: ModelId,
    pub base_version: i64,
    pub base_version_id: ModelVersionId,
    pub deadline_at: IsoMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    pub participation_id: ParticipationId,
    pub round_id: RoundId,
    pub plan_id: PlanId,
    pub model_id: ModelId,
    pub base_version: i64,
    pub state: ParticipationState,
    pub joined_at: IsoMillis,
    pub deadline_at: IsoMillis,
}

/// A round's training plan, in the fields the Octomil device agent reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub plan_id: PlanId,
    pub round_id: RoundId,
    pub model_id: ModelId,
    pub base_version: i64,
    pub algorithm: String,
    pub hyperparams: serde_json::Map<String, serde_json::Value>,
    /// The L2 bound the device clips its update to. A round without clipping serves the largest
    /// finite float ([`f64::MAX`]) with `clipping: none`: the Octomil SDK's `prepare_update`
    /// compares the update's norm with it (`null` made it raise `TypeError`, and an absent key
    /// makes it clip at its default 1.0), so no finite update is scaled.
    pub clip_norm: f64,
    pub clipping: Clipping,
    /// Noise is added once, centrally, at publish; devices add none of their own.
    pub noise_sigma: f64,
    pub secure_agg_config: Option<serde_json::Value>,
    pub max_duration_sec: f64,
    pub max_steps: u32,
    pub update_formats: Vec<UpdateFormat>,
    /// The base version's tensors in the order an update is flattened (a `plaintext_json`
    /// envelope's list): name, dtype, shape, element offset and count. A device that flattens
    /// its parameters in another order must reorder them to this one.
    pub element_layout: Vec<ElementSpan>,
}

/// Whether a round clips updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clipping {
    /// Updates are clipped to `clip_norm` (L2).
    L2,
    /// No clipping (`clip_norm` is the largest finite float).
    None,
}

impl Clipping {
    /// The plan's `(clip_norm, clipping)` for a round's optional clip norm.
    pub fn of(clip_norm: Option<f64>) -> (f64, Clipping) {
        match clip_norm {
            Some(c) => (c, Clipping::L2),
            None => (f64::MAX, Clipping::None),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadStarted {
    pub upload_id: UploadId,
    pub part_urls: Vec<String>,
    pub expires_at: IsoMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartStored {
    pub upload_id: UploadId,
    pub part: u32,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    Accepted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateAccepted {
    pub status: UpdateStatus,
    pub round_id: RoundId,
    pub upload_id: UploadId,
    pub participation_id: ParticipationId,
    pub sequence: i64,
    pub sample_count: i64,
}

/// A deployment: one version shipped to device groups through a staged rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub model_id: ModelId,
    pub version_id: ModelVersionId,
    pub version: i64,
    /// What the model's newest earlier deployment delivered (where a rollback returns to).
    pub previous_version_id: Option<ModelVersionId>,
    pub device_group_ids: Vec<DeviceGroupId>,
    pub state: RolloutState,
    /// The rollout plan, in percent of the targeted devices.
    pub stages: Vec<u8>,
    /// Index of the current stage in `stages`.
    pub stage: usize,
    /// The current stage's percentage.
    pub percent: u8,
    pub created_at: IsoMillis,
    pub updated_at: IsoMillis,
    /// Per stage: targeted devices first covered by it, and how many have the version installed,
    /// active, or failed (single reads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Vec<StageCount>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentBody {
    pub deployment: Deployment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentList {
    pub deployments: Vec<Deployment>,
}

/// `GET /v1/orgs/{org}/rounds/{round}/metrics`: a round's training metrics and fleet health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundMetrics {
    pub round_id: RoundId,
    pub state: RoundState,
    pub funnel: Funnel,
    /// Per metric: sample-weighted mean and spread over the accepted updates.
    pub metrics: BTreeMap<String, Spread>,
    /// Accepted updates in acceptance order, with running sample-weighted means (for charts).
    pub series: Vec<Point>,
    pub device_health: DeviceHealth,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_filter_reads_the_query_and_skips_empty_values() {
        let group = "dgr_0000000000000000000000000001";
        let f = DeviceFilter::from_query([
            ("group", group),
            ("platform", " android "),
            ("last_seen", "stale"),
            ("after", "dev_x"),
        ]);
        let f = f.unwrap_or_default();
        assert_eq!(f.group.as_ref().map(|g| g.as_str()), Some(group));
        assert_eq!(f.platform.as_deref(), Some("android"));
        assert_eq!(f.last_seen, Some(LastSeen::Stale));
        let any = DeviceFilter::from_query([("group", ""), ("platform", ""), ("last_seen", "")]);
        assert_eq!(any, Ok(DeviceFilter::default()));
        assert!(DeviceFilter::from_query([("last_seen", "away")]).is_err());
        assert!(DeviceFilter::from_query([("group", "mdl_1")]).is_err());
    }

    #[test]
    fn the_participation_page_reads_before_and_limit_and_refuses_junk() {
        let round = "rnd_0000000000000000000000000001";
        let p = ParticipationPage::from_query([("before", round), ("limit", "5"), ("x", "y")]);
        assert_eq!(
            p.map(|p| (p.before.map(|b| b.into_string()), p.limit)),
            Ok((Some(round.to_owned()), 5))
        );
        let default = ParticipationPage::from_query([("before", ""), ("limit", " ")]);
        assert_eq!(
            default,
            Ok(ParticipationPage {
                before: None,
                limit: ParticipationPage::DEFAULT_LIMIT
            })
        );
        assert!(ParticipationPage::from_query([("before", "yesterday")]).is_err());
        assert!(
            ParticipationPage::from_query([("before", "dev_0000000000000000000000000001")])
                .is_err()
        );
        assert!(ParticipationPage::from_query([("limit", "-1")]).is_err());
    }
}
