//! The messages between the gateway, a round's coordinator and its aggregator shards.
//!
//! These are internal (never seen by devices or the API), but they cross Durable Object
//! boundaries as JSON, so they are typed here, once, for every side.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::layout::ModelLayout;
use super::participation::{ParticipationState, UploadState};
use super::pieces::Piece;
use super::round::{AggregationSpec, Quorum, RejectReason, RoundFailure, RoundState};
use super::shard::Segment;
use super::validate::{UpdateMeta, Validated};
use crate::error::ApiError;
use crate::ids::{DeviceId, ModelId, ModelVersionId, OrgId, PlanId, RoundId, UploadId};

/// A device-chosen participation id (Octomil devices pick their own): 1–64 of `A-Z a-z 0-9 - _`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ParticipationId(String);

impl ParticipationId {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ApiError::validation(
                "participation_id must be 1-64 of A-Z, a-z, 0-9, '-' and '_'",
            ))
        }
    }

    /// A fresh server-chosen id, for devices that do not pick one.
    pub fn generate(now_ms: i64) -> Result<Self, ApiError> {
        crate::ids::new_id("par", now_ms).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ParticipationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl std::fmt::Display for ParticipationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a round needs to run, fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundConfig {
    pub round_id: RoundId,
    pub org_id: OrgId,
    pub model_id: ModelId,
    pub base_version_id: ModelVersionId,
    pub base_version: i64,
    pub plan_id: PlanId,
    pub layout: ModelLayout,
    pub base_pieces: Vec<Piece>,
    pub base_tensor_starts: Vec<u64>,
    /// Each shard's element range `[start, end)`, contiguous and covering the model.
    pub shards: Vec<(u64, u64)>,
    pub target: u32,
    pub min: u32,
    pub max: u32,
    pub deadline_at_ms: i64,
    pub aggregation: AggregationSpec,
}

impl RoundConfig {
    pub fn quorum(&self) -> Result<Quorum, ApiError> {
        Quorum::new(self.target, self.min, self.max)
    }

    pub fn shard_ranges(&self) -> Vec<Range<u64>> {
        self.shards.iter().map(|(a, b)| *a..*b).collect()
    }

    pub fn shard_starts(&self) -> Vec<u64> {
        self.shards.iter().map(|(a, _)| *a).collect()
    }

    /// The name of shard `k`'s aggregator object.
    pub fn shard_name(&self, k: usize) -> String {
        format!("{}/{k}", self.round_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub participation_id: ParticipationId,
    pub device_id: DeviceId,
    pub capabilities: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReply {
    pub participation_id: ParticipationId,
    pub state: ParticipationState,
    pub joined_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitiateRequest {
    pub upload_id: UploadId,
    pub participation_id: ParticipationId,
    pub device_id: DeviceId,
    pub meta: UpdateMeta,
    pub part_count: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitiateReply {
    pub upload_id: UploadId,
    pub parts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRequest {
    pub upload_id: UploadId,
    pub part: u32,
}

/// May a part be written, and how large may it be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartGrant {
    pub device_id: DeviceId,
    /// The most bytes this part may carry: what the declared size leaves after the other parts
    /// recorded so far (one byte kept for each part still missing), never above the per-part cap.
    pub max_bytes: u64,
    /// Present when this part is the next one in order: validate it while it streams in,
    /// continuing from here, and hand the new state back with [`PartDone::stream_state`].
    pub stream: Option<StreamResume>,
}

/// Where an upload's in-order validation stands, for the writer of its next part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamResume {
    pub meta: UpdateMeta,
    pub layout: ModelLayout,
    pub shard_starts: Vec<u64>,
    /// The saved validation (`None` before the first part).
    #[serde(default, with = "b64_opt")]
    pub state: Option<Vec<u8>>,
}

/// Bytes in JSON as base64 (a saved validation holds binary state).
mod b64_opt {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartDone {
    pub upload_id: UploadId,
    pub part: u32,
    pub key: String,
    pub size: u64,
    /// The validation after this part, when it was validated while streaming (see
    /// [`PartGrant::stream`]).
    #[serde(default, with = "b64_opt")]
    pub stream_state: Option<Vec<u8>>,
}

/// What the writer of a part must do after the coordinator recorded (or refused) it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecorded {
    /// Staged objects no longer referenced (a replaced part): delete them.
    pub delete: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteBegin {
    pub upload_id: UploadId,
    pub device_id: DeviceId,
    pub meta: Option<UpdateMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Accepted {
        participation_id: ParticipationId,
        seq: i64,
        sample_count: i64,
    },
    Rejected {
        reason: RejectReason,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum CompleteBeginReply {
    /// Stream these staged bytes through the validator, then call `complete-finish`.
    Validate {
        meta: UpdateMeta,
        pieces: Vec<Piece>,
        layout: ModelLayout,
        shard_starts: Vec<u64>,
    },
    /// Every part was validated while it streamed in: finish this saved validation, no read.
    Finish {
        meta: UpdateMeta,
        layout: ModelLayout,
        shard_starts: Vec<u64>,
        #[serde(with = "b64_opt")]
        state: Option<Vec<u8>>,
        /// The staged bytes, should the saved state not resume (written by another release).
        pieces: Vec<Piece>,
    },
    /// Already decided (a repeated complete, or refused before validation).
    Done { outcome: Outcome },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteFinish {
    pub upload_id: UploadId,
    pub verdict: Result<Validated, (RejectReason, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRequest {
    pub device_id: DeviceId,
}

/// Who asked for a change the coordinator records in D1 on their behalf (a cancel), so the
/// audit record names them even when the coordinator writes it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requester {
    pub actor_type: String,
    pub actor_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelRequest {
    pub requester: Requester,
}

/// The answer to a cancel, first or repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelReply {
    /// The state the round was cancelled from.
    pub previous: RoundState,
    /// Whether D1 and the audit log already say so (otherwise the coordinator keeps retrying,
    /// and a repeated cancel retries at once).
    pub recorded: bool,
}

/// A round's live counts, from its coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub state: RoundState,
    pub failure: Option<RoundFailure>,
    pub target: u32,
    pub min: u32,
    pub max: u32,
    pub deadline_at_ms: i64,
    pub joined: u64,
    pub uploading: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
    pub total_samples: i64,
    /// Updates whose claimed sample count was above the round's cap and counted at the cap.
    pub capped_weights: u64,
    pub metrics: BTreeMap<String, f64>,
    /// Each metric's sample-weighted mean with its spread.
    #[serde(default)]
    pub metric_spread: BTreeMap<String, super::metrics::Spread>,
    /// Accepted updates' metrics in acceptance order.
    #[serde(default)]
    pub series: Vec<super::metrics::Point>,
    /// Participations that completed an upload (accepted or rejected).
    #[serde(default)]
    pub uploaded: u64,
    /// Participations that never completed an upload, once the round has closed.
    #[serde(default)]
    pub dropped: Option<u64>,
    pub folded: i64,
    pub shards: usize,
    pub published_version_id: Option<ModelVersionId>,
    pub closed_at_ms: Option<i64>,
    /// Joined, no accepted update yet (bounded: see `live`).
    #[serde(default)]
    pub stragglers: super::live::Stragglers,
    /// Refused updates by reason, with their latest devices.
    #[serde(default)]
    pub rejections: Vec<super::live::RejectionGroup>,
    /// Joined, uploaded and accepted over time.
    #[serde(default)]
    pub participation: Vec<super::live::ParticipationPoint>,
    pub device_ids: Vec<DeviceId>,
}

// ---- coordinator -> aggregator ------------------------------------------------------------

/// Where a shard reads its slice of one accepted update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FoldSource {
    Safetensors {
        pieces: Vec<Piece>,
        segments: Vec<Segment>,
    },
    PlaintextJson {
        pieces: Vec<Piece>,
        start: u64,
        end: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldRequest {
    /// The shard's element count (every request carries it, so a shard never needs the config).
    pub len: u64,
    pub seq: i64,
    pub weight: f64,
    pub source: FoldSource,
}

/// A shard's position: the last sequence number in its sum, and in its last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggStatus {
    pub folded_through: i64,
    pub checkpointed_through: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoldReply {
    /// False when the request was not the next sequence number (see `status`).
    pub applied: bool,
    pub status: AggStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseSpec {
    pub sigma: f64,
    /// Hex of 32 secret random bytes, fresh per round.
    pub seed: String,
    pub stream: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRequest {
    pub len: u64,
    pub expect_folded: i64,
    pub total_weight: f64,
    pub base_pieces: Vec<Piece>,
    pub base_segments: Vec<Segment>,
    pub noise: Option<NoiseSpec>,
    pub out_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PublishReply {
    Written {
        pieces: Vec<Piece>,
    },
    /// Some new values are not finite in the base dtype (overflow): nothing was kept.
    NonFinite {
        count: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    pub len: u64,
}

/// Uploads and participations as the coordinator reports them (progress, console).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadSummary {
    pub upload_id: UploadId,
    pub state: UploadState,
}
