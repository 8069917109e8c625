//! A training round: its configuration, its states, and why an update can be refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};

/// open -> collecting -> aggregating -> published | insufficient_updates | failed;
/// open/collecting -> cancelled; open/collecting -> insufficient_updates at the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundState {
    /// Created; offered to devices, none joined yet.
    Open,
    /// At least one device joined; updates are arriving.
    Collecting,
    /// Closed to new work (quorum or deadline); the new version is being written.
    Aggregating,
    Published,
    InsufficientUpdates,
    Cancelled,
    /// Aggregation finished but its result could not be published (see [`RoundFailure`]).
    Failed,
}

/// Why a round ended `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundFailure {
    /// Some averaged values overflow the base version's dtype (e.g. beyond ±65504 in float16):
    /// publishing them would ship infinities to devices.
    NonFiniteResult,
    /// A secure round fell below its threshold `t` at some stage (too few devices answered, or
    /// too few shares of some device's secret arrived): nothing was unmasked.
    InsufficientParticipants,
    /// A secure round's masks could not be removed: a secret rebuilt from shares did not match
    /// what its device advertised, or the canary element did not come out as `n·T/2`.
    UnmaskFailed,
}

impl RoundFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            RoundFailure::NonFiniteResult => "non_finite_result",
            RoundFailure::InsufficientParticipants => "insufficient_participants",
            RoundFailure::UnmaskFailed => "unmask_failed",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            RoundFailure::NonFiniteResult => {
                "the averaged model has values that are not finite in the base version's dtype"
            }
            RoundFailure::InsufficientParticipants => {
                "fewer devices than the secure-aggregation threshold completed a stage"
            }
            RoundFailure::UnmaskFailed => {
                "the secure-aggregation masks could not be removed, so nothing was published"
            }
        }
    }
}

impl RoundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RoundState::Open => "open",
            RoundState::Collecting => "collecting",
            RoundState::Aggregating => "aggregating",
            RoundState::Published => "published",
            RoundState::InsufficientUpdates => "insufficient_updates",
            RoundState::Cancelled => "cancelled",
            RoundState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use RoundState::*;
        [
            Open,
            Collecting,
            Aggregating,
            Published,
            InsufficientUpdates,
            Cancelled,
            Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RoundState::Published
                | RoundState::InsufficientUpdates
                | RoundState::Cancelled
                | RoundState::Failed
        )
    }

    /// Whether devices may still join and upload.
    pub fn is_accepting(self) -> bool {
        matches!(self, RoundState::Open | RoundState::Collecting)
    }

    pub fn can_become(self, next: RoundState) -> bool {
        use RoundState::*;
        matches!(
            (self, next),
            (Open, Collecting)
                | (Open | Collecting, Aggregating)
                | (Open | Collecting, Cancelled)
                | (Open | Collecting, InsufficientUpdates)
                | (Aggregating, Published)
                | (Aggregating, InsufficientUpdates)
                | (Aggregating, Failed)
        )
    }
}

/// Why an update (or an attempt to send one) was refused. The string form is reported in round
/// progress (`rejected` by reason) and in the error message the device receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    Malformed,
    TensorMismatch,
    NonFinite,
    Sha256Mismatch,
    SizeMismatch,
    TooLarge,
    InvalidSampleCount,
    IncompleteUpload,
    RoundClosed,
    NotParticipant,
    DeviceRevoked,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::TensorMismatch => "tensor_mismatch",
            RejectReason::NonFinite => "non_finite",
            RejectReason::Sha256Mismatch => "sha256_mismatch",
            RejectReason::SizeMismatch => "size_mismatch",
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidSampleCount => "invalid_sample_count",
            RejectReason::IncompleteUpload => "incomplete_upload",
            RejectReason::RoundClosed => "round_closed",
            RejectReason::NotParticipant => "not_participant",
            RejectReason::DeviceRevoked => "device_revoked",
        }
    }

    /// The one place a refusal becomes an HTTP answer: bad content is 422, an oversized one 413,
    /// a closed round 409, a stranger 403, a revoked device 401.
    pub fn to_error(self, detail: &str) -> ApiError {
        let code = match self {
            RejectReason::TooLarge => ErrorCode::PayloadTooLarge,
            RejectReason::RoundClosed => ErrorCode::Conflict,
            RejectReason::NotParticipant => ErrorCode::Forbidden,
            RejectReason::DeviceRevoked => ErrorCode::InvalidToken,
            _ => ErrorCode::ValidationFailed,
        };
        ApiError::new(
            code,
            format!("update rejected ({}): {detail}", self.as_str()),
        )
    }
}

/// Largest `sample_count` one update may claim. A weight beyond it would let one device outvote
/// the whole round, which is an attack or a bug, never a phone's training set.
pub const MAX_SAMPLE_COUNT: u64 = 10_000_000;
/// The default cap on the weight one update carries (`aggregation.max_sample_count`): a device
/// may report more samples, but counts as this many, so no single self-reported number can
/// outweigh the rest of the round.
pub const DEFAULT_SAMPLE_CAP: u64 = 10_000;
pub const MAX_PARTICIPANTS: u32 = 10_000;
pub const MAX_DEADLINE_SECONDS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationSpec {
    pub algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_multiplier: Option<f64>,
    /// The most samples one update is weighted by (default [`DEFAULT_SAMPLE_CAP`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sample_count: Option<u64>,
}

impl AggregationSpec {
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.algorithm != "fedavg" {
            return Err(ApiError::validation(
                "aggregation.algorithm must be \"fedavg\"",
            ));
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(ApiError::validation(
                    "aggregation.clip_norm must be a positive number",
                ));
            }
        }
        if let Some(z) = self.noise_multiplier {
            if !(z.is_finite() && z >= 0.0) {
                return Err(ApiError::validation(
                    "aggregation.noise_multiplier must be a non-negative number",
                ));
            }
            if self.clip_norm.is_none() {
                return Err(ApiError::validation(
                    "aggregation.noise_multiplier needs clip_norm: the noise is calibrated to it",
                ));
            }
        }
        if let Some(m) = self.max_sample_count {
            if m == 0 || m > MAX_SAMPLE_COUNT {
                return Err(ApiError::validation(format!(
                    "aggregation.max_sample_count must be between 1 and {MAX_SAMPLE_COUNT}"
                )));
            }
        }
        Ok(())
    }

    /// The cap on one update's sample weight.
    pub fn sample_cap(&self) -> u64 {
        self.max_sample_count.unwrap_or(DEFAULT_SAMPLE_CAP)
    }

    /// An update's weight: its sample count (capped) times its clipping factor. Returns the
    /// weight and whether the cap applied.
    pub fn weight(&self, sample_count: i64, norm: f64) -> (f64, bool) {
        let cap = self.sample_cap();
        let samples = sample_count.max(0) as u64;
        let capped = samples > cap;
        let counted = samples.min(cap) as f64;
        (
            counted * super::aggregate::clip_scale(norm, self.clip_norm),
            capped,
        )
    }

    /// Standard deviation of the Gaussian noise added once to the averaged delta:
    /// noise_multiplier x clip_norm / participants.
    pub fn noise_sigma(&self, participants: u64) -> Option<f64> {
        match (self.noise_multiplier, self.clip_norm) {
            (Some(z), Some(c)) if z > 0.0 && participants > 0 => Some(z * c / participants as f64),
            _ => None,
        }
    }
}

/// Participation limits of a round, validated together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    /// Accepted updates that close the round early.
    pub target: u32,
    /// Accepted updates needed to publish at the deadline.
    pub min: u32,
    /// Devices admitted (over-selection: some drop out).
    pub max: u32,
}

impl Quorum {
    pub fn new(target: u32, min: u32, max: u32) -> Result<Self, ApiError> {
        if min == 0 || min > target || target > max || max > MAX_PARTICIPANTS {
            return Err(ApiError::validation(format!(
                "participation must satisfy 1 <= min <= target <= max <= {MAX_PARTICIPANTS}"
            )));
        }
        Ok(Self { target, min, max })
    }
}

pub fn validate_deadline(seconds: u64) -> Result<(), ApiError> {
    if seconds == 0 || seconds > MAX_DEADLINE_SECONDS {
        return Err(ApiError::validation(format!(
            "deadline_seconds must be between 1 and {MAX_DEADLINE_SECONDS}"
        )));
    }
    Ok(())
}

/// What closes a round, decided from its counts. Pure, so the coordinator's alarm and its
/// completion path agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    StayOpen,
    Publish,
    Insufficient,
}

pub fn closing(q: Quorum, accepted: u32, deadline_passed: bool) -> Closing {
    if accepted >= q.target {
        Closing::Publish
    } else if deadline_passed {
        if accepted >= q.min {
            Closing::Publish
        } else {
            Closing::Insufficient
        }
    } else {
        Closing::StayOpen
    }
}

/// Sample-weighted means of the metrics devices reported with accepted updates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricMeans {
    sums: BTreeMap<String, (f64, f64)>,
}

impl MetricMeans {
    pub fn add(&mut self, weight: f64, metrics: &BTreeMap<String, f64>) {
        for (k, v) in metrics {
            let e = self.sums.entry(k.clone()).or_insert((0.0, 0.0));
            e.0 += weight * v;
            e.1 += weight;
        }
    }

    pub fn means(&self) -> BTreeMap<String, f64> {
        self.sums
            .iter()
            .filter(|(_, (_, w))| *w > 0.0)
            .map(|(k, (s, w))| (k.clone(), s / w))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use RoundState::*;
        assert!(Open.can_become(Collecting));
        assert!(Collecting.can_become(Aggregating));
        assert!(Aggregating.can_become(Published));
        assert!(Collecting.can_become(Cancelled));
        assert!(!Published.can_become(Cancelled));
        assert!(!Aggregating.can_become(Cancelled));
        assert!(!Cancelled.can_become(Open));
        assert!(Aggregating.can_become(Failed) && !Collecting.can_become(Failed));
        assert!(Failed.is_terminal());
        assert!(Published.is_terminal() && !Collecting.is_terminal());
        for s in [
            Open,
            Collecting,
            Aggregating,
            Published,
            InsufficientUpdates,
            Cancelled,
            Failed,
        ] {
            assert_eq!(RoundState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn quorum_and_closing() {
        assert!(Quorum::new(10, 5, 13).is_ok());
        assert!(Quorum::new(10, 11, 13).is_err());
        assert!(Quorum::new(10, 5, 9).is_err());
        assert!(Quorum::new(1, 0, 1).is_err());
        let q = Quorum::new(10, 5, 13).unwrap();
        assert_eq!(closing(q, 10, false), Closing::Publish);
        assert_eq!(closing(q, 9, false), Closing::StayOpen);
        assert_eq!(closing(q, 5, true), Closing::Publish);
        assert_eq!(closing(q, 4, true), Closing::Insufficient);
    }

    #[test]
    fn aggregation_spec_rules() {
        let ok = AggregationSpec {
            algorithm: "fedavg".into(),
            clip_norm: Some(1.0),
            noise_multiplier: Some(0.5),
            max_sample_count: None,
        };
        assert!(ok.validate().is_ok());
        // Weights: the sample cap bounds what one self-reported count carries; clipping scales.
        assert_eq!(ok.weight(500, 0.5), (500.0, false));
        assert_eq!(ok.weight(50_000, 0.5), (DEFAULT_SAMPLE_CAP as f64, true));
        assert_eq!(ok.weight(100, 4.0), (25.0, false));
        let bad_cap = AggregationSpec {
            max_sample_count: Some(0),
            ..ok.clone()
        };
        assert!(bad_cap.validate().is_err());
        assert_eq!(ok.noise_sigma(10), Some(0.05));
        let no_clip = AggregationSpec {
            clip_norm: None,
            ..ok.clone()
        };
        assert!(no_clip.validate().is_err());
        let other = AggregationSpec {
            algorithm: "fedprox".into(),
            ..ok
        };
        assert!(other.validate().is_err());
    }

    #[test]
    fn reasons_map_to_statuses() {
        assert_eq!(RejectReason::NonFinite.to_error("x").status(), 422);
        assert_eq!(RejectReason::TooLarge.to_error("x").status(), 413);
        assert_eq!(RejectReason::RoundClosed.to_error("x").status(), 409);
        assert_eq!(RejectReason::NotParticipant.to_error("x").status(), 403);
        assert_eq!(RejectReason::DeviceRevoked.to_error("x").status(), 401);
        assert!(RejectReason::Sha256Mismatch
            .to_error("x")
            .message
            .contains("sha256_mismatch"));
    }

    #[test]
    fn weighted_metric_means() {
        let mut m = MetricMeans::default();
        m.add(1.0, &BTreeMap::from([("loss".to_string(), 1.0)]));
        m.add(
            3.0,
            &BTreeMap::from([("loss".to_string(), 2.0), ("acc".to_string(), 0.5)]),
        );
        let means = m.means();
        assert_eq!(means["loss"], 1.75);
        assert_eq!(means["acc"], 0.5);
    }
}
