//! Deployments and staged rollouts: which version of a model each device should run.
//!
//! A deployment ships one approved version to one or more device groups through stages, each a
//! percentage of the targeted devices (1% -> 10% -> 50% -> 100% by default). Which devices a
//! stage covers is decided by a per-device *bucket* in `0..10_000`, a hash of the deployment
//! and the device: a device belongs to the rollout while `bucket < percent × 100`. Stages only
//! grow, so a device that received the version keeps it through every promotion, and a device
//! never flips back and forth (the bucket is the same on every request, every isolate, every
//! restart). Pausing freezes the stage; rolling back sends every device back to what it ran
//! before (the newest older deployment of the model that still applies to it).
//!
//! Everything here is pure: the gateway loads the deployments that target a device, calls
//! [`desired_for_device`], and serves the answer in the Octomil control contract.

use serde::{Deserialize, Serialize};

use crate::crypto::hash::sha256;
use crate::ApiError;

/// Buckets per rollout: a stage's percentage covers `percent × 100` of them.
pub const BUCKETS: u32 = 10_000;
/// The stages a deployment gets when none are given.
pub const DEFAULT_STAGES: [u8; 4] = [1, 10, 50, 100];
/// At most this many stages.
pub const MAX_STAGES: usize = 10;
/// At most this many device groups per deployment.
pub const MAX_GROUPS: usize = 16;
/// How often a device should sync (the `nextPollIntervalSeconds` hint).
pub const NEXT_POLL_SECONDS: u32 = 300;

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Serving its current stage; may be promoted, paused or rolled back.
    Active,
    /// Frozen at its current stage: devices already in it keep the version, nobody new gets it.
    Paused,
    /// Promoted to its last stage (100%).
    Completed,
    /// Withdrawn: devices go back to what they ran before. Final.
    RolledBack,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Active => "active",
            RolloutState::Paused => "paused",
            RolloutState::Completed => "completed",
            RolloutState::RolledBack => "rolled_back",
        }
    }

    /// A stored state; an unknown value is an error, never a default.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(RolloutState::Active),
            "paused" => Some(RolloutState::Paused),
            "completed" => Some(RolloutState::Completed),
            "rolled_back" => Some(RolloutState::RolledBack),
            _ => None,
        }
    }

    /// Whether devices may receive the deployment's version in this state.
    pub fn delivers(self) -> bool {
        !matches!(self, RolloutState::RolledBack)
    }

    /// Whether the rollout is still under way (another rollout of the model must wait).
    pub fn in_progress(self) -> bool {
        matches!(self, RolloutState::Active | RolloutState::Paused)
    }
}

/// A rollout plan: strictly increasing percentages, each 1–100, the last 100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<u8>", into = "Vec<u8>")]
pub struct Stages(Vec<u8>);

impl Stages {
    pub fn new(percents: Vec<u8>) -> Result<Self, String> {
        if percents.is_empty() || percents.len() > MAX_STAGES {
            return Err(format!("a rollout has 1 to {MAX_STAGES} stages"));
        }
        if percents.iter().any(|p| *p == 0 || *p > 100) {
            return Err("each stage is a percentage from 1 to 100".into());
        }
        if percents.windows(2).any(|w| w[0] >= w[1]) {
            return Err("stage percentages must strictly increase".into());
        }
        if percents.last() != Some(&100) {
            return Err("the last stage must be 100 (every targeted device)".into());
        }
        Ok(Stages(percents))
    }

    pub fn default_plan() -> Self {
        Stages(DEFAULT_STAGES.to_vec())
    }

    pub fn percents(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The percentage of stage `index` (the last stage's beyond the end).
    pub fn percent(&self, index: usize) -> u8 {
        self.0.get(index).or(self.0.last()).copied().unwrap_or(100)
    }

    /// The first stage whose percentage covers `bucket`.
    pub fn stage_of(&self, bucket: u32) -> usize {
        self.0
            .iter()
            .position(|p| bucket < u32::from(*p) * (BUCKETS / 100))
            .unwrap_or(self.0.len().saturating_sub(1))
    }
}

impl TryFrom<Vec<u8>> for Stages {
    type Error = String;
    fn try_from(v: Vec<u8>) -> Result<Self, String> {
        Stages::new(v)
    }
}

impl From<Stages> for Vec<u8> {
    fn from(s: Stages) -> Self {
        s.0
    }
}

/// The bucket of `device_id` in `deployment_id`'s rollout, in `0..BUCKETS`: the first eight
/// bytes of SHA-256 over both ids, reduced modulo [`BUCKETS`] (the bias is below 10⁻¹⁵).
pub fn bucket(deployment_id: &str, device_id: &str) -> u32 {
    let mut input = Vec::with_capacity(24 + deployment_id.len() + device_id.len());
    input.extend_from_slice(b"edgeplane/rollout/v1\0");
    input.extend_from_slice(deployment_id.as_bytes());
    input.push(0);
    input.extend_from_slice(device_id.as_bytes());
    let h = sha256(&input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

/// Whether a device in `bucket` is covered by a stage of `percent`.
pub fn covers(percent: u8, bucket: u32) -> bool {
    bucket < u32::from(percent) * (BUCKETS / 100)
}

/// A change an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Promote,
    Pause,
    Resume,
    Rollback,
}

/// Where a rollout is: its state and the index of its current stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub state: RolloutState,
    pub stage: usize,
}

/// The rollout state machine. Promote: active -> next stage (completed on the last); pause:
/// active -> paused; resume: paused -> active; rollback: anything but rolled back -> rolled
/// back. Every other pair is a conflict, with a message saying why.
pub fn transition(at: Position, stages: &Stages, t: Transition) -> Result<Position, ApiError> {
    use RolloutState::*;
    let last = stages.len().saturating_sub(1);
    match (t, at.state) {
        (Transition::Promote, Active) => {
            let stage = (at.stage + 1).min(last);
            let state = if stage >= last { Completed } else { Active };
            Ok(Position { state, stage })
        }
        (Transition::Promote, Paused) => Err(ApiError::conflict(
            "this rollout is paused: resume it before promoting",
        )),
        (Transition::Pause, Active) => Ok(Position {
            state: Paused,
            stage: at.stage,
        }),
        (Transition::Pause, Paused) => Err(ApiError::conflict("this rollout is already paused")),
        (Transition::Resume, Paused) => Ok(Position {
            state: Active,
            stage: at.stage,
        }),
        (Transition::Resume, Active) => Err(ApiError::conflict("this rollout is not paused")),
        (Transition::Rollback, Active | Paused | Completed) => Ok(Position {
            state: RolledBack,
            stage: at.stage,
        }),
        (_, Completed) => Err(ApiError::conflict(
            "this rollout is complete: every targeted device has the version",
        )),
        (_, RolledBack) => Err(ApiError::conflict("this rollout was rolled back")),
    }
}

/// A deployment that targets the device asking (its groups include the device).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub deployment_id: String,
    pub model_id: String,
    pub version_id: String,
    /// The version's number within its model.
    pub version: i64,
    pub sha256: String,
    pub size_bytes: u64,
    pub state: RolloutState,
    pub stage: usize,
    pub stages: Stages,
    pub created_at_ms: i64,
}

/// What one device should run of one model, and through which deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired<'a> {
    pub candidate: &'a Candidate,
}

/// For each model, the version this device should run: the newest deployment (by creation, then
/// id) that is not rolled back and whose current stage covers the device. A rollout that does
/// not (yet) cover the device leaves it on the older deployment that does; a rolled-back one is
/// skipped, which sends devices back to the version before it. Models are answered in id order.
pub fn desired_for_device<'a>(device_id: &str, candidates: &'a [Candidate]) -> Vec<Desired<'a>> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| {
        (
            a.model_id.as_str(),
            b.created_at_ms,
            b.deployment_id.as_str(),
        )
            .cmp(&(
                b.model_id.as_str(),
                a.created_at_ms,
                a.deployment_id.as_str(),
            ))
    });
    let mut out: Vec<Desired<'a>> = Vec::new();
    for c in sorted {
        if out
            .last()
            .is_some_and(|d| d.candidate.model_id == c.model_id)
        {
            continue;
        }
        if !c.state.delivers() {
            continue;
        }
        let percent = c.stages.percent(c.stage);
        if covers(percent, bucket(&c.deployment_id, device_id)) {
            out.push(Desired { candidate: c });
        }
    }
    out
}

/// What a device reports about one model (observed state, or a sync's inventory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedStatus {
    /// Known to the device, not yet acted on (`none`, `discovered`, `assigned`, `registered`,
    /// `unknown`, `not_assigned`).
    Pending,
    /// Download or verification under way (`downloading`, `downloaded_partial`, `verifying`,
    /// `paused`).
    Downloading,
    /// On disk and verified (`verified`, `staged`, `ready`, `warming`, `loading`,
    /// `draining_old`, `finalized`, `gc_eligible`).
    Installed,
    /// Loaded and serving (`active`, `fallback_active`).
    Active,
    /// Failed (`failed_*`, `download_failed`, `load_failed`, `rollback_pending`, `rolled_back`,
    /// `failed_verification`).
    Failed,
}

impl ObservedStatus {
    /// Reads the Octomil SDK's status names (the contract's `ArtifactStatus` and
    /// `DeviceModelStatus` values, and the device agent's own upper-case states), in any case.
    /// An unknown name is an error.
    pub fn parse_sdk(name: &str) -> Option<Self> {
        use ObservedStatus::*;
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_str() {
            "none"
            | "discovered"
            | "assigned"
            | "not_assigned"
            | "registered"
            | "unknown"
            | "deprecated_assigned" => Pending,
            "downloading" | "downloaded_partial" | "verifying" | "paused" => Downloading,
            "verified" | "staged" | "ready" | "warming" | "loading" | "draining_old"
            | "finalized" | "gc_eligible" => Installed,
            "active" | "fallback_active" => Active,
            "failed_retryable"
            | "failed_corrupt"
            | "failed_healthcheck"
            | "download_failed"
            | "load_failed"
            | "rollback_pending"
            | "rolled_back"
            | "failed_verification" => Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ObservedStatus::Pending => "pending",
            ObservedStatus::Downloading => "downloading",
            ObservedStatus::Installed => "installed",
            ObservedStatus::Active => "active",
            ObservedStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// What a device last reported about the deployment's model.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub device_id: String,
    pub installed_version: Option<String>,
    pub active_version: Option<String>,
    pub status: Option<ObservedStatus>,
}

/// One stage's devices and how far they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCount {
    pub percent: u8,
    /// Targeted devices whose bucket first falls in this stage.
    pub devices: u64,
    /// Of them, devices with the version on disk (active ones included).
    pub installed: u64,
    /// Of them, devices running the version.
    pub active: u64,
    /// Of them, devices reporting a failure for the version (or for the model with nothing
    /// installed).
    pub failed: u64,
}

/// Counts, per stage, the targeted devices and what they report about `version`.
pub fn progress(
    deployment_id: &str,
    stages: &Stages,
    version: &str,
    devices: &[Observed],
) -> Vec<StageCount> {
    let mut out: Vec<StageCount> = stages
        .percents()
        .iter()
        .map(|p| StageCount {
            percent: *p,
            devices: 0,
            installed: 0,
            active: 0,
            failed: 0,
        })
        .collect();
    for d in devices {
        let Some(slot) = out.get_mut(stages.stage_of(bucket(deployment_id, &d.device_id))) else {
            continue;
        };
        slot.devices += 1;
        let active = d.active_version.as_deref() == Some(version);
        let installed = active || d.installed_version.as_deref() == Some(version);
        let failed = d.status == Some(ObservedStatus::Failed)
            && !active
            && d.installed_version.as_deref().is_none_or(|v| v == version);
        slot.installed += u64::from(installed && !failed);
        slot.active += u64::from(active);
        slot.failed += u64::from(failed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(p: &[u8]) -> Stages {
        Stages::new(p.to_vec()).unwrap()
    }

    fn candidate(
        id: &str,
        model: &str,
        version: i64,
        at: i64,
        state: RolloutState,
        stage: usize,
    ) -> Candidate {
        Candidate {
            deployment_id: id.into(),
            model_id: model.into(),
            version_id: format!("mv_{version}"),
            version,
            sha256: "00".repeat(32),
            size_bytes: 10,
            state,
            stage,
            stages: stages(&[1, 10, 50, 100]),
            created_at_ms: at,
        }
    }

    #[test]
    fn stage_plans_are_checked() {
        assert!(Stages::new(vec![]).is_err());
        assert!(Stages::new(vec![10, 50]).is_err(), "must end at 100");
        assert!(Stages::new(vec![0, 100]).is_err());
        assert!(Stages::new(vec![50, 10, 100]).is_err());
        assert!(Stages::new(vec![10, 10, 100]).is_err());
        assert!(Stages::new(vec![101]).is_err());
        assert!(Stages::new(vec![100]).is_ok());
        assert_eq!(Stages::default_plan().percents(), &[1, 10, 50, 100]);
        assert!(serde_json::from_str::<Stages>("[5, 100]").is_ok());
        assert!(serde_json::from_str::<Stages>("[100, 5]").is_err());
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("dep_a", "dev_1"), bucket("dep_a", "dev_1"));
        assert_ne!(
            (0..50)
                .map(|i| bucket("dep_a", &format!("dev_{i}")))
                .collect::<Vec<_>>(),
            (0..50)
                .map(|i| bucket("dep_b", &format!("dev_{i}")))
                .collect::<Vec<_>>(),
            "another deployment reshuffles devices"
        );
        // 20,000 devices: each stage covers close to its share.
        let n = 20_000;
        let bs: Vec<u32> = (0..n)
            .map(|i| bucket("dep_x", &format!("dev_{i}")))
            .collect();
        assert!(bs.iter().all(|b| *b < BUCKETS));
        for (p, lo, hi) in [(1u8, 120, 290), (10, 1_800, 2_200), (50, 9_700, 10_300)] {
            let c = bs.iter().filter(|b| covers(p, **b)).count();
            assert!((lo..=hi).contains(&c), "{p}%: {c} of {n}");
        }
        assert_eq!(bs.iter().filter(|b| covers(100, **b)).count(), n);
    }

    #[test]
    fn a_device_never_flips_while_a_rollout_is_promoted() {
        let s = stages(&[1, 5, 10, 25, 50, 100]);
        for i in 0..2_000 {
            let b = bucket("dep_flip", &format!("dev_{i}"));
            let mut had = false;
            for idx in 0..s.len() {
                let now = covers(s.percent(idx), b);
                assert!(!had || now, "device {i} lost the version at stage {idx}");
                had = now;
                assert_eq!(now, s.stage_of(b) <= idx);
            }
            assert!(had, "every device has it at 100%");
        }
    }

    #[test]
    fn the_state_machine() {
        use RolloutState::*;
        use Transition::*;
        let s = stages(&[10, 50, 100]);
        let at = |state, stage| Position { state, stage };
        assert_eq!(
            transition(at(Active, 0), &s, Promote).unwrap(),
            at(Active, 1)
        );
        assert_eq!(
            transition(at(Active, 1), &s, Promote).unwrap(),
            at(Completed, 2)
        );
        assert_eq!(transition(at(Active, 0), &s, Pause).unwrap(), at(Paused, 0));
        assert_eq!(
            transition(at(Paused, 0), &s, Resume).unwrap(),
            at(Active, 0)
        );
        for from in [Active, Paused, Completed] {
            assert_eq!(
                transition(at(from, 1), &s, Rollback).unwrap(),
                at(RolledBack, 1)
            );
        }
        for (from, t) in [
            (Paused, Promote),
            (Paused, Pause),
            (Active, Resume),
            (Completed, Promote),
            (Completed, Pause),
            (Completed, Resume),
            (RolledBack, Promote),
            (RolledBack, Pause),
            (RolledBack, Resume),
            (RolledBack, Rollback),
        ] {
            let e = transition(at(from, 1), &s, t).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::Conflict, "{from:?} {t:?}");
        }
        // A one-stage plan completes on its first promotion.
        let one = stages(&[100]);
        assert_eq!(
            transition(at(Active, 0), &one, Promote).unwrap(),
            at(Completed, 0)
        );
    }

    #[test]
    fn states_round_trip_and_unknown_names_are_errors() {
        for s in [
            RolloutState::Active,
            RolloutState::Paused,
            RolloutState::Completed,
            RolloutState::RolledBack,
        ] {
            assert_eq!(RolloutState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(RolloutState::parse("done"), None);
        assert_eq!(
            ObservedStatus::parse_sdk("STAGED"),
            Some(ObservedStatus::Installed)
        );
        assert_eq!(
            ObservedStatus::parse_sdk("active"),
            Some(ObservedStatus::Active)
        );
        assert_eq!(
            ObservedStatus::parse_sdk("FAILED_VERIFICATION"),
            Some(ObservedStatus::Failed)
        );
        assert_eq!(ObservedStatus::parse_sdk("sideways"), None);
        assert_eq!(
            ObservedStatus::parse("installed"),
            Some(ObservedStatus::Installed)
        );
        assert_eq!(ObservedStatus::parse("staged"), None);
    }

    /// Devices in the first stage get the new version, the others keep the old one; promotion
    /// widens it, a rollback sends everyone back, and nothing leaks across models.
    #[test]
    fn desired_state_follows_the_rollout() {
        use RolloutState::*;
        let devices: Vec<String> = (0..400).map(|i| format!("dev_{i:04}")).collect();
        let old = candidate("dep_old", "mdl_a", 1, 100, Completed, 3);
        let mut new = candidate("dep_new", "mdl_a", 2, 200, Active, 0);
        new.stages = stages(&[10, 50, 100]);
        let other = candidate("dep_other", "mdl_b", 7, 50, Completed, 3);
        let version_of = |set: &[Candidate], d: &str| -> Vec<(String, i64)> {
            desired_for_device(d, set)
                .into_iter()
                .map(|x| (x.candidate.model_id.clone(), x.candidate.version))
                .collect()
        };
        let set = vec![old.clone(), new.clone(), other.clone()];
        let mut first = 0;
        for d in &devices {
            let got = version_of(&set, d);
            let in_first = covers(10, bucket("dep_new", d));
            first += usize::from(in_first);
            let a = if in_first { 2 } else { 1 };
            assert_eq!(
                got,
                vec![("mdl_a".to_owned(), a), ("mdl_b".to_owned(), 7)],
                "{d}"
            );
        }
        assert!((10..=80).contains(&first), "about 10% of 400: {first}");

        // Promote to 50%: everyone who had it keeps it.
        let mut promoted = new.clone();
        promoted.stage = 1;
        let set2 = vec![old.clone(), promoted.clone(), other.clone()];
        for d in &devices {
            if version_of(&set, d)[0].1 == 2 {
                assert_eq!(version_of(&set2, d)[0].1, 2);
            }
        }
        // Paused keeps the stage.
        let mut paused = promoted.clone();
        paused.state = Paused;
        let set3 = vec![old.clone(), paused, other.clone()];
        for d in &devices {
            assert_eq!(version_of(&set3, d), version_of(&set2, d));
        }
        // Rolled back: every device is back on version 1.
        let mut back = promoted;
        back.state = RolledBack;
        let set4 = vec![old, back, other];
        for d in &devices {
            assert_eq!(version_of(&set4, d)[0].1, 1);
        }
        // No older deployment: a device outside the first stage is told nothing of the model.
        let alone = vec![new];
        let outside = devices
            .iter()
            .find(|d| !covers(10, bucket("dep_new", d)))
            .unwrap();
        assert!(version_of(&alone, outside).is_empty());
    }

    #[test]
    fn progress_counts_each_stage() {
        let s = stages(&[10, 50, 100]);
        let devices: Vec<Observed> = (0..300)
            .map(|i| {
                let id = format!("dev_{i}");
                let (installed, active, status) = match i % 4 {
                    0 => (Some("2"), Some("2"), Some(ObservedStatus::Active)),
                    1 => (Some("2"), Some("1"), Some(ObservedStatus::Installed)),
                    2 => (None, Some("1"), Some(ObservedStatus::Failed)),
                    _ => (Some("1"), Some("1"), Some(ObservedStatus::Active)),
                };
                Observed {
                    device_id: id,
                    installed_version: installed.map(str::to_owned),
                    active_version: active.map(str::to_owned),
                    status,
                }
            })
            .collect();
        let p = progress("dep_p", &s, "2", &devices);
        assert_eq!(
            p.iter().map(|c| c.percent).collect::<Vec<_>>(),
            vec![10, 50, 100]
        );
        assert_eq!(p.iter().map(|c| c.devices).sum::<u64>(), 300);
        // Reference: count by hand.
        let mut want = [(0u64, 0u64, 0u64, 0u64); 3];
        for (i, d) in devices.iter().enumerate() {
            let st = s.stage_of(bucket("dep_p", &d.device_id));
            want[st].0 += 1;
            match i % 4 {
                0 => {
                    want[st].1 += 1;
                    want[st].2 += 1
                }
                1 => want[st].1 += 1,
                2 => want[st].3 += 1,
                _ => {}
            }
        }
        for (c, w) in p.iter().zip(want) {
            assert_eq!((c.devices, c.installed, c.active, c.failed), w);
        }
    }
}
