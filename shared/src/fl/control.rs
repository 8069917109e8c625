//! The Octomil control contract as the pinned SDK (`octomil.control.OctomilControl`) speaks it:
//! device registration, assignments, desired state, sync and observed state. Field names are
//! the SDK's (snake_case for registration, camelCase for the rest); every request is read
//! strictly (an unknown field is a 422) and bounded.
//!
//! The SDK reads a desired-state answer's `models` at the top level, also from `sync` (whose
//! contract nests them in `desiredState`), so the sync answer carries both.

use serde::{Deserialize, Serialize};

use super::rollout::{Desired, ObservedStatus, NEXT_POLL_SECONDS};
use crate::crypto::hash::sha256_hex;
use crate::time::IsoMillis;
use crate::ApiError;

/// The contract version of desired-state and sync answers.
pub const SCHEMA_VERSION: &str = "1.12.0";
/// At most this many model entries in one report.
pub const MAX_MODELS: usize = 64;
/// Longest string the SDK may send in a field.
const MAX_TEXT: usize = 256;

fn bounded(v: &Option<String>, what: &str) -> Result<(), ApiError> {
    match v {
        Some(s) if s.len() > MAX_TEXT || s.chars().any(char::is_control) => {
            Err(ApiError::validation(format!(
                "{what} must be at most {MAX_TEXT} printable characters"
            )))
        }
        _ => Ok(()),
    }
}

/// `POST /api/v1/devices/register`: `DeviceInfo.to_registration_dict()` plus the identifier,
/// the org and the SDK version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub device_identifier: String,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub sdk_version: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub cpu_architecture: Option<String>,
    #[serde(default)]
    pub gpu_available: Option<bool>,
    #[serde(default)]
    pub total_memory_mb: Option<f64>,
    #[serde(default)]
    pub available_storage_mb: Option<f64>,
    #[serde(default)]
    pub battery_pct: Option<f64>,
    #[serde(default)]
    pub charging: Option<bool>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub capabilities: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

impl RegisterRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        for (v, what) in [
            (&self.org_id, "org_id"),
            (&self.sdk_version, "sdk_version"),
            (&self.platform, "platform"),
            (&self.os_version, "os_version"),
            (&self.manufacturer, "manufacturer"),
            (&self.model, "model"),
            (&self.cpu_architecture, "cpu_architecture"),
            (&self.locale, "locale"),
            (&self.region, "region"),
            (&self.timezone, "timezone"),
        ] {
            bounded(v, what)?;
        }
        if self.capabilities.as_ref().is_some_and(|c| c.len() > 32) {
            return Err(ApiError::validation("at most 32 capabilities"));
        }
        Ok(())
    }
}

/// The registration answer (`DeviceRegistration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub id: String,
    pub device_identifier: String,
    pub org_id: String,
    pub status: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A model on the device (`installedModels` / `modelInventory` / `activeVersions` entries; the
/// device agent passes its own snake_case dicts through).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryItem {
    #[serde(rename = "modelId", alias = "model_id")]
    pub model_id: String,
    pub version: String,
    #[serde(default, rename = "artifactId", alias = "artifact_id")]
    pub artifact_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// `POST /devices/{id}/desired-state`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DesiredStateRequest {
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub sdk_version: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub installed_models: Option<Vec<InventoryItem>>,
    #[serde(default)]
    pub active_versions: Option<Vec<InventoryItem>>,
}

/// `POST /devices/{id}/sync`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncRequest {
    #[serde(default)]
    pub schema_version: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub requested_at: Option<String>,
    #[serde(default)]
    pub sdk_version: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub app_version: Option<String>,
    #[serde(default)]
    pub model_inventory: Option<Vec<InventoryItem>>,
    #[serde(default)]
    pub active_versions: Option<Vec<InventoryItem>>,
    #[serde(default)]
    pub known_state_version: Option<String>,
    #[serde(default)]
    pub available_storage_bytes: Option<u64>,
}

/// One model in `POST /devices/{id}/observed-state`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObservedModel {
    pub model_id: String,
    #[serde(default)]
    pub installed_version: Option<String>,
    #[serde(default)]
    pub active_version: Option<String>,
    pub status: String,
    #[serde(default)]
    pub health: Option<Health>,
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
    Unknown,
}

/// `POST /devices/{id}/observed-state`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObservedStateRequest {
    #[serde(default)]
    pub schema_version: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub reported_at: Option<String>,
    #[serde(default)]
    pub models: Vec<ObservedModel>,
    #[serde(default)]
    pub sdk_version: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub available_storage_bytes: Option<u64>,
}

/// What to record about one model of the device (and, read back, what is recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub model_id: String,
    pub installed_version: Option<String>,
    pub active_version: Option<String>,
    pub status: ObservedStatus,
    pub last_error: Option<String>,
}

fn text(v: &str, what: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "{what} must be 1-128 printable characters"
        )));
    }
    Ok(())
}

fn status_of(name: &str) -> Result<ObservedStatus, ApiError> {
    ObservedStatus::parse_sdk(name)
        .ok_or_else(|| ApiError::validation(format!("unknown model status {name:?}")))
}

impl ObservedStateRequest {
    /// The reports, one per model (a later entry for the same model wins).
    pub fn reports(&self) -> Result<Vec<Report>, ApiError> {
        if self.models.len() > MAX_MODELS {
            return Err(ApiError::validation(format!("at most {MAX_MODELS} models")));
        }
        let mut out: Vec<Report> = Vec::with_capacity(self.models.len());
        for m in &self.models {
            text(&m.model_id, "modelId")?;
            for (v, what) in [
                (&m.installed_version, "installedVersion"),
                (&m.active_version, "activeVersion"),
            ] {
                if let Some(v) = v {
                    text(v, what)?;
                }
            }
            let last_error = m
                .last_error
                .as_ref()
                .map(|e| e.chars().filter(|c| !c.is_control()).take(200).collect());
            let r = Report {
                model_id: m.model_id.clone(),
                installed_version: m.installed_version.clone(),
                active_version: m.active_version.clone(),
                status: status_of(&m.status)?,
                last_error,
            };
            out.retain(|o| o.model_id != r.model_id);
            out.push(r);
        }
        Ok(out)
    }
}

/// Reports from a sync or desired-state request's inventory: each installed model with its
/// status (installed when none is given), active where `active` names the same version.
pub fn inventory_reports(
    installed: Option<&[InventoryItem]>,
    active: Option<&[InventoryItem]>,
) -> Result<Vec<Report>, ApiError> {
    let installed = installed.unwrap_or_default();
    let active = active.unwrap_or_default();
    if installed.len() > MAX_MODELS || active.len() > MAX_MODELS {
        return Err(ApiError::validation(format!("at most {MAX_MODELS} models")));
    }
    let mut out: Vec<Report> = Vec::new();
    for i in installed.iter().chain(active) {
        text(&i.model_id, "modelId")?;
        text(&i.version, "version")?;
    }
    for i in installed {
        let active_version = active
            .iter()
            .find(|a| a.model_id == i.model_id)
            .map(|a| a.version.clone());
        let status = match (&i.status, &active_version) {
            (Some(s), _) => status_of(s)?,
            (None, Some(a)) if *a == i.version => ObservedStatus::Active,
            (None, _) => ObservedStatus::Installed,
        };
        out.retain(|o| o.model_id != i.model_id);
        out.push(Report {
            model_id: i.model_id.clone(),
            installed_version: Some(i.version.clone()),
            active_version,
            status,
            last_error: None,
        });
    }
    for a in active {
        if !out.iter().any(|o| o.model_id == a.model_id) {
            out.push(Report {
                model_id: a.model_id.clone(),
                installed_version: Some(a.version.clone()),
                active_version: Some(a.version.clone()),
                status: ObservedStatus::Active,
                last_error: None,
            });
        }
    }
    Ok(out)
}

/// At most this often a report that changes nothing is written again (its `reported_at_ms`
/// and the device's `last_seen_at_ms`), so a fleet polling with an unchanged inventory costs
/// reads, not writes, while "last seen" stays within a minute.
pub const UNCHANGED_REPORT_GRANULARITY_MS: i64 = 60_000;

/// What `fl_device_models` holds for one model of the device, as this isolate last read or
/// wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    #[serde(flatten)]
    pub report: Report,
    pub reported_at_ms: i64,
}

impl StoredReport {
    /// The device's stored reports from their `json_group_array` (an unknown status is an
    /// error, never a default).
    pub fn list_from_json(json: &str) -> Result<Vec<StoredReport>, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// What is stored once `written` (what [`reports_to_write`] chose) is written at `now_ms`,
    /// as the JSON [`list_from_json`](Self::list_from_json) reads. A report of a model the org
    /// does not have is kept too, though the write skipped it, so that it is not tried again on
    /// every poll but once per [`UNCHANGED_REPORT_GRANULARITY_MS`].
    pub fn after_writing(
        stored: &[StoredReport],
        written: &[&Report],
        now_ms: i64,
    ) -> Result<String, serde_json::Error> {
        let mut out: Vec<StoredReport> = stored
            .iter()
            .filter(|s| !written.iter().any(|w| w.model_id == s.report.model_id))
            .cloned()
            .collect();
        out.extend(written.iter().map(|w| StoredReport {
            report: (*w).clone(),
            reported_at_ms: now_ms,
        }));
        serde_json::to_string(&out)
    }
}

/// The reports worth writing: each one that differs from what is stored for its model (or has
/// nothing stored), and, once [`UNCHANGED_REPORT_GRANULARITY_MS`] has passed since the stored
/// one, an unchanged one too. `stored` is what this isolate last read or wrote for the device
/// (its facts are cached, see the gateway's `authn::device`): every state change is written
/// unless this very isolate already wrote it, and where another isolate wrote something else in
/// between, the stored row is rewritten within the granularity.
pub fn reports_to_write<'a>(
    stored: &[StoredReport],
    reports: &'a [Report],
    now_ms: i64,
) -> Vec<&'a Report> {
    reports
        .iter()
        .filter(
            |r| match stored.iter().find(|s| s.report.model_id == r.model_id) {
                Some(s) => {
                    s.report != **r || now_ms - s.reported_at_ms >= UNCHANGED_REPORT_GRANULARITY_MS
                }
                None => true,
            },
        )
        .collect()
}

/// Whether the device's `last_seen_at_ms` is due for a write on a report that changed nothing.
pub fn last_seen_due(last_seen_at_ms: Option<i64>, now_ms: i64) -> bool {
    last_seen_at_ms.is_none_or(|t| now_ms - t >= UNCHANGED_REPORT_GRANULARITY_MS)
}

/// One chunk of an artifact (the whole file here: versions are one safetensors file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub index: u32,
    pub offset: u64,
    pub size: u64,
    pub sha256: String,
}

/// A file of an artifact, as the device agent's downloader and verifier read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Where this device downloads it (with its own device token; nobody else may).
    #[serde(rename = "downloadUrl")]
    pub download_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactManifest {
    pub artifact_id: String,
    pub model_id: String,
    pub version: String,
    pub format: String,
    pub total_bytes: u64,
    pub sha256: String,
    pub chunks: Vec<Chunk>,
    pub files: Vec<ArtifactFile>,
    pub download_url: String,
    pub entrypoint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredModelEntry {
    pub model_id: String,
    pub desired_version: String,
    pub activation_policy: String,
    pub delivery_mode: String,
    pub artifact_manifest: ArtifactManifest,
    pub rollout_id: String,
    pub deployment_id: String,
}

/// The desired state of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredState {
    pub schema_version: String,
    pub device_id: String,
    pub generated_at: IsoMillis,
    /// Changes exactly when `models` does.
    pub sync_revision: String,
    pub models: Vec<DesiredModelEntry>,
    pub gc_eligible_artifact_ids: Vec<String>,
    pub next_poll_interval_seconds: u32,
}

/// The sync answer: the contract's `DeviceSyncResponse`, plus `models` at the top level where
/// the SDK reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResponse {
    pub schema_version: String,
    pub device_id: String,
    pub generated_at: IsoMillis,
    pub server_timestamp: IsoMillis,
    pub state_changed: bool,
    pub sync_revision: String,
    pub desired_state: DesiredState,
    pub models: Vec<DesiredModelEntry>,
    pub gc_eligible_artifact_ids: Vec<String>,
    pub next_poll_interval_seconds: u32,
}

/// `GET /devices/{id}/assignments`: what `OctomilControl.refresh()` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignments {
    pub updated: bool,
    pub config_version: String,
    pub assignments: Vec<Assignment>,
    pub rollouts: Vec<RolloutRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub model_id: String,
    pub version: String,
    pub deployment_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRef {
    pub deployment_id: String,
    pub model_id: String,
    pub version: String,
    pub stage: usize,
    pub percent: u8,
}

/// The download path of a version for devices.
pub fn download_path(model_id: &str, version_id: &str) -> String {
    format!("/api/v1/models/{model_id}/versions/{version_id}/download")
}

/// The desired state of `device_id` from what the rollouts decided; download URLs under `origin`.
pub fn desired_state(
    device_id: &str,
    desired: &[Desired<'_>],
    origin: &str,
    now_ms: i64,
) -> DesiredState {
    let models: Vec<DesiredModelEntry> = desired
        .iter()
        .map(|d| {
            let c = d.candidate;
            let url = format!("{origin}{}", download_path(&c.model_id, &c.version_id));
            let version = c.version.to_string();
            let file = format!("model-v{version}.safetensors");
            DesiredModelEntry {
                model_id: c.model_id.clone(),
                desired_version: version.clone(),
                activation_policy: "immediate".into(),
                delivery_mode: "managed".into(),
                artifact_manifest: ArtifactManifest {
                    artifact_id: c.version_id.clone(),
                    model_id: c.model_id.clone(),
                    version,
                    format: "safetensors".into(),
                    total_bytes: c.size_bytes,
                    sha256: c.sha256.clone(),
                    chunks: vec![Chunk {
                        index: 0,
                        offset: 0,
                        size: c.size_bytes,
                        sha256: c.sha256.clone(),
                    }],
                    files: vec![ArtifactFile {
                        path: file.clone(),
                        size: c.size_bytes,
                        sha256: c.sha256.clone(),
                        download_url: url.clone(),
                    }],
                    download_url: url,
                    entrypoint: file,
                },
                rollout_id: c.deployment_id.clone(),
                deployment_id: c.deployment_id.clone(),
            }
        })
        .collect();
    DesiredState {
        schema_version: SCHEMA_VERSION.into(),
        device_id: device_id.to_owned(),
        generated_at: IsoMillis(now_ms),
        sync_revision: revision(desired),
        models,
        gc_eligible_artifact_ids: Vec::new(),
        next_poll_interval_seconds: NEXT_POLL_SECONDS,
    }
}

/// A digest of what the device should run: equal revisions mean nothing changed.
pub fn revision(desired: &[Desired<'_>]) -> String {
    let mut s = String::new();
    for d in desired {
        let c = d.candidate;
        s.push_str(&format!(
            "{}={}@{};",
            c.model_id, c.version_id, c.deployment_id
        ));
    }
    let mut h = sha256_hex(s.as_bytes());
    h.truncate(16);
    h
}

/// The sync answer for a desired state and the revision the device knew.
pub fn sync_response(state: DesiredState, known: Option<&str>, now_ms: i64) -> SyncResponse {
    SyncResponse {
        schema_version: SCHEMA_VERSION.into(),
        device_id: state.device_id.clone(),
        generated_at: IsoMillis(now_ms),
        server_timestamp: IsoMillis(now_ms),
        state_changed: known != Some(state.sync_revision.as_str()),
        sync_revision: state.sync_revision.clone(),
        models: state.models.clone(),
        gc_eligible_artifact_ids: Vec::new(),
        next_poll_interval_seconds: state.next_poll_interval_seconds,
        desired_state: state,
    }
}

/// The assignments answer from the same decision.
pub fn assignments(desired: &[Desired<'_>], known: Option<&str>) -> Assignments {
    let config_version = revision(desired);
    Assignments {
        updated: known != Some(config_version.as_str()),
        config_version,
        assignments: desired
            .iter()
            .map(|d| Assignment {
                model_id: d.candidate.model_id.clone(),
                version: d.candidate.version.to_string(),
                deployment_id: d.candidate.deployment_id.clone(),
            })
            .collect(),
        rollouts: desired
            .iter()
            .map(|d| RolloutRef {
                deployment_id: d.candidate.deployment_id.clone(),
                model_id: d.candidate.model_id.clone(),
                version: d.candidate.version.to_string(),
                stage: d.candidate.stage,
                percent: d.candidate.stages.percent(d.candidate.stage),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::rollout::{desired_for_device, Candidate, ObservedStatus, RolloutState, Stages};

    fn one() -> Vec<Candidate> {
        vec![Candidate {
            deployment_id: "dep_1".into(),
            model_id: "mdl_1".into(),
            version_id: "mv_1".into(),
            version: 3,
            sha256: "ab".repeat(32),
            size_bytes: 42,
            state: RolloutState::Completed,
            stage: 0,
            stages: Stages::new(vec![100]).unwrap(),
            created_at_ms: 1,
        }]
    }

    fn report(model: &str, version: &str, status: ObservedStatus) -> Report {
        Report {
            model_id: model.into(),
            installed_version: Some(version.into()),
            active_version: (status == ObservedStatus::Active).then(|| version.to_string()),
            status,
            last_error: None,
        }
    }

    #[test]
    fn only_changed_reports_are_written_until_the_granularity_passes() {
        let stored = StoredReport::list_from_json(
            r#"[{"model_id":"mdl_1","installed_version":"1","active_version":"1","status":"active","last_error":null,"reported_at_ms":1000},
                {"model_id":"mdl_2","installed_version":"2","active_version":null,"status":"installed","last_error":null,"reported_at_ms":1000}]"#,
        )
        .unwrap();
        let same = [
            report("mdl_1", "1", ObservedStatus::Active),
            report("mdl_2", "2", ObservedStatus::Installed),
        ];
        assert!(reports_to_write(&stored, &same, 2_000).is_empty());
        // A new version installed, a status change, a model never reported: all written.
        let changed = [
            report("mdl_1", "2", ObservedStatus::Installed),
            report("mdl_2", "2", ObservedStatus::Active),
            report("mdl_3", "1", ObservedStatus::Downloading),
        ];
        assert_eq!(reports_to_write(&stored, &changed, 2_000).len(), 3);
        // A failure is a change even with the same versions.
        let mut failed = report("mdl_2", "2", ObservedStatus::Installed);
        failed.last_error = Some("disk full".into());
        assert_eq!(reports_to_write(&stored, &[failed], 2_000).len(), 1);
        // Unchanged reports are written again once the granularity has passed.
        let due = 1_000 + UNCHANGED_REPORT_GRANULARITY_MS;
        assert_eq!(reports_to_write(&stored, &same, due - 1).len(), 0);
        assert_eq!(reports_to_write(&stored, &same, due).len(), 2);
        assert!(!last_seen_due(Some(1_000), due - 1));
        assert!(last_seen_due(Some(1_000), due));
        assert!(last_seen_due(None, 0));
        // After writing, the changed models carry the write's time and the rest stay: the same
        // reports are not written again until the granularity passes from then.
        let after =
            StoredReport::after_writing(&stored, &[&changed[0], &changed[2]], 5_000).unwrap();
        let after = StoredReport::list_from_json(&after).unwrap();
        assert_eq!(after.len(), 3);
        let written = [changed[0].clone(), changed[2].clone()];
        assert!(reports_to_write(&after, &written, 5_001).is_empty());
        assert_eq!(
            reports_to_write(&after, &written, 5_000 + UNCHANGED_REPORT_GRANULARITY_MS).len(),
            2
        );
        assert_eq!(
            after.iter().find(|s| s.report.model_id == "mdl_2"),
            stored.get(1)
        );
        // An unknown stored status is an error, not a default.
        assert!(StoredReport::list_from_json(
            r#"[{"model_id":"m","installed_version":null,"active_version":null,"status":"weird","last_error":null,"reported_at_ms":1}]"#
        )
        .is_err());
    }

    #[test]
    fn desired_state_in_the_sdks_shape() {
        let c = one();
        let d = desired_for_device("dev_1", &c);
        let s = desired_state("dev_1", &d, "https://x", 5);
        let v = serde_json::to_value(&s).unwrap();
        let m = &v["models"][0];
        assert_eq!(m["modelId"], "mdl_1");
        assert_eq!(m["desiredVersion"], "3");
        assert_eq!(m["artifactManifest"]["artifactId"], "mv_1");
        assert_eq!(m["artifactManifest"]["totalBytes"], 42);
        assert_eq!(
            m["artifactManifest"]["files"][0]["downloadUrl"],
            "https://x/api/v1/models/mdl_1/versions/mv_1/download"
        );
        assert_eq!(v["nextPollIntervalSeconds"], NEXT_POLL_SECONDS);
        let sync = sync_response(s.clone(), Some(&s.sync_revision), 6);
        assert!(!sync.state_changed);
        assert_eq!(sync.models, s.models);
        assert!(sync_response(s.clone(), None, 6).state_changed);
        let empty = desired_state("dev_1", &[], "https://x", 5);
        assert_ne!(empty.sync_revision, s.sync_revision);
    }

    #[test]
    fn requests_are_strict_and_bounded() {
        let ok: ObservedStateRequest = serde_json::from_str(
            r#"{"schemaVersion":"1.4.0","deviceId":"dev_1","reportedAt":"x","models":[
                {"modelId":"mdl_1","installedVersion":"3","activeVersion":"3","status":"ACTIVE"}],
                "sdkVersion":"4","osVersion":"linux"}"#,
        )
        .unwrap();
        assert_eq!(ok.reports().unwrap()[0].status, ObservedStatus::Active);
        assert!(
            serde_json::from_str::<ObservedStateRequest>(r#"{"models":[],"extra":1}"#).is_err()
        );
        let bad: ObservedStateRequest =
            serde_json::from_str(r#"{"models":[{"modelId":"m","status":"sideways"}]}"#).unwrap();
        assert!(bad.reports().is_err());
        let inv: SyncRequest = serde_json::from_str(
            r#"{"modelInventory":[{"modelId":"m","version":"2","artifactId":null,"status":"UNKNOWN"}],
                "activeVersions":[{"model_id":"m","version":"1"}]}"#,
        )
        .unwrap();
        let r = inventory_reports(
            inv.model_inventory.as_deref(),
            inv.active_versions.as_deref(),
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].installed_version.as_deref(), Some("2"));
        assert_eq!(r[0].active_version.as_deref(), Some("1"));
        assert_eq!(r[0].status, ObservedStatus::Pending);
        let many = format!(
            "{{\"models\":[{}]}}",
            vec![r#"{"modelId":"m","status":"active"}"#; MAX_MODELS + 1].join(",")
        );
        let many: ObservedStateRequest = serde_json::from_str(&many).unwrap();
        assert!(many.reports().is_err());
    }
}
