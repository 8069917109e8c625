//! Views of the review area: integrations, LLM providers, webhook deliveries, reviews, and the
//! answer a platform gets for a webhook. Secrets never appear in a view: an integration or a
//! provider only says whether each is set (`has_…`).

use serde::{Deserialize, Serialize};

use crate::ids::{DeliveryRowId, IntegrationId, ProviderId, ReviewId};
use crate::review::config::{Deployment, ProviderKind};
use crate::review::diff::Side;
use crate::review::git_platform::Platform;
use crate::review::select::SkipReason;
use crate::review::status::{CommentState, ReviewStatus};
use crate::time::rfc3339_millis;
use crate::webhook::event::Trigger;
use crate::webhook::inbox::DeliveryOutcome;
use crate::webhook::Slot;

/// An org's connection to a git platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationView {
    pub id: IntegrationId,
    pub name: String,
    pub platform: Platform,
    pub deployment: Deployment,
    pub api_base_url: String,
    pub llm_provider_id: Option<ProviderId>,
    pub enabled: bool,
    /// Where the platform delivers webhooks.
    pub webhook_url: String,
    pub has_access_token: bool,
    pub has_webhook_secret: bool,
    pub has_signing_token: bool,
    /// Set while a rotated-away secret still verifies.
    pub previous_webhook_secret_expires_at: Option<String>,
    pub secret_rotated_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationBody {
    pub integration: IntegrationView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationList {
    pub integrations: Vec<IntegrationView>,
}

/// A verified webhook delivery and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub id: DeliveryRowId,
    /// The platform's delivery id (or `sha256:<body hash>` when it sent none).
    pub delivery_id: String,
    pub event: String,
    pub outcome: DeliveryOutcome,
    /// Why an ignored delivery was ignored.
    pub reason: Option<String>,
    pub review_id: Option<ReviewId>,
    /// Which webhook secret verified it: `previous` means the platform still signs with a
    /// secret being rotated away.
    pub secret: Slot,
    pub received_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

/// A BYOK LLM provider. The key itself is never shown; `api_key_sealed_to` names the review
/// worker key it is sealed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderView {
    pub id: ProviderId,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub model: String,
    pub embedding_model: Option<String>,
    pub max_input_tokens: u32,
    pub max_output_tokens: u32,
    pub is_default: bool,
    pub has_api_key: bool,
    pub api_key_sealed_to: String,
    pub api_key_set_at: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderBody {
    pub llm_provider: ProviderView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderList {
    pub llm_providers: Vec<ProviderView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRef {
    pub id: String,
    pub name: String,
}

/// When each phase started and how long it lasted (a phase lasts until the next one started,
/// or the review ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewTimings {
    pub queued_at: String,
    pub fetching_at: Option<String>,
    pub indexing_at: Option<String>,
    pub reviewing_at: Option<String>,
    pub commenting_at: Option<String>,
    pub finished_at: Option<String>,
    pub queue_ms: Option<i64>,
    pub fetching_ms: Option<i64>,
    pub indexing_ms: Option<i64>,
    pub reviewing_ms: Option<i64>,
    pub commenting_ms: Option<i64>,
    pub total_ms: Option<i64>,
}

/// The phase stamps of a review, in milliseconds, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseStamps {
    pub created: i64,
    pub fetching: Option<i64>,
    pub indexing: Option<i64>,
    pub reviewing: Option<i64>,
    pub commenting: Option<i64>,
    pub finished: Option<i64>,
}

fn span(from: Option<i64>, to: Option<i64>) -> Option<i64> {
    Some(to? - from?).filter(|d| *d >= 0)
}

impl From<PhaseStamps> for ReviewTimings {
    fn from(s: PhaseStamps) -> Self {
        let phases = [
            s.fetching,
            s.indexing,
            s.reviewing,
            s.commenting,
            s.finished,
        ];
        // A skipped phase (a review that ended early) lasts until whatever came next.
        let next = |i: usize| phases[i + 1..].iter().copied().flatten().next();
        let at = |t: Option<i64>| t.map(rfc3339_millis);
        Self {
            queued_at: rfc3339_millis(s.created),
            fetching_at: at(s.fetching),
            indexing_at: at(s.indexing),
            reviewing_at: at(s.reviewing),
            commenting_at: at(s.commenting),
            finished_at: at(s.finished),
            queue_ms: span(Some(s.created), s.fetching.or(s.finished)),
            fetching_ms: span(s.fetching, next(0)),
            indexing_ms: span(s.indexing, next(1)),
            reviewing_ms: span(s.reviewing, next(2)),
            commenting_ms: span(s.commenting, next(3)),
            total_ms: span(Some(s.created), s.finished),
        }
    }
}

/// What a review looked at and produced; `None` until the phase that counts it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewCounts {
    pub files_changed: Option<i64>,
    pub files_reviewed: Option<i64>,
    pub files_skipped: Option<i64>,
    pub chunks_indexed: Option<i64>,
    pub context_chunks: Option<i64>,
    pub embeddings_used: Option<bool>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub findings: Option<i64>,
    pub findings_dropped: Option<i64>,
    pub comments_posted: Option<i64>,
    pub comments_in_summary: Option<i64>,
}

/// A changed file the review did not look at, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: SkipReason,
}

/// One review of one pull request head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewView {
    pub id: ReviewId,
    pub integration_id: IntegrationId,
    pub platform: Platform,
    pub repository: RepositoryRef,
    pub pull_request: u64,
    pub head_sha: String,
    pub base_sha: Option<String>,
    pub trigger: Trigger,
    pub status: ReviewStatus,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub attempts: u32,
    pub superseded_by: Option<ReviewId>,
    pub llm_provider_id: Option<ProviderId>,
    pub model: Option<String>,
    pub platform_review_id: Option<String>,
    pub timings: ReviewTimings,
    pub counts: ReviewCounts,
    pub skipped_files: Vec<SkippedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewBody {
    pub review: ReviewView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewList {
    pub reviews: Vec<ReviewView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<ReviewId>,
}

/// A finding the review placed on the pull request: the file and line it is about, and whether
/// it became an inline comment (`posted`) or went into the summary (`fallback`, the platform
/// refused the position). Positions only: the text is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewFinding {
    pub path: String,
    pub line: u32,
    #[serde(with = "crate::review::findings::side_serde")]
    pub side: Side,
    pub state: CommentState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewFindingList {
    pub findings: Vec<ReviewFinding>,
}

/// The answer to a platform's webhook delivery (202 for `queued`, 200 otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HookAnswer {
    /// A review of a new head was queued.
    Queued {
        delivery_id: String,
        review_id: ReviewId,
    },
    /// Another delivery already started the review of this head.
    DuplicateHead {
        delivery_id: String,
        review_id: ReviewId,
    },
    /// Verified and recorded; nothing to review.
    Ignored { reason: String, delivery_id: String },
    /// Accepted before (a redelivery, or the same body under another id): nothing happens.
    Duplicate { delivery_id: String },
}

impl HookAnswer {
    pub fn status_code(&self) -> u16 {
        match self {
            HookAnswer::Queued { .. } => 202,
            _ => 200,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_last_until_the_next_one_started() {
        let t = ReviewTimings::from(PhaseStamps {
            created: 1_000,
            fetching: Some(1_500),
            indexing: Some(2_000),
            reviewing: None,
            commenting: Some(4_000),
            finished: Some(4_500),
        });
        assert_eq!(t.queue_ms, Some(500));
        assert_eq!(t.fetching_ms, Some(500));
        assert_eq!(t.indexing_ms, Some(2_000), "reviewing was skipped");
        assert_eq!(t.reviewing_ms, None);
        assert_eq!(t.commenting_ms, Some(500));
        assert_eq!(t.total_ms, Some(3_500));
        assert_eq!(t.queued_at, "1970-01-01T00:00:01.000Z");
        // Ended before a worker claimed it (superseded while queued).
        let t = ReviewTimings::from(PhaseStamps {
            created: 1_000,
            finished: Some(1_200),
            ..PhaseStamps::default()
        });
        assert_eq!((t.queue_ms, t.fetching_ms), (Some(200), None));
    }

    #[test]
    fn hook_answers_keep_their_wire_shape() {
        let r = ReviewId::generate(1).unwrap();
        let q = HookAnswer::Queued {
            delivery_id: "d".into(),
            review_id: r.clone(),
        };
        assert_eq!(q.status_code(), 202);
        assert_eq!(
            serde_json::to_value(&q).unwrap(),
            serde_json::json!({"status": "queued", "delivery_id": "d", "review_id": r.as_str()})
        );
        let i = HookAnswer::Ignored {
            reason: "ping".into(),
            delivery_id: "d".into(),
        };
        assert_eq!(
            serde_json::to_value(&i).unwrap(),
            serde_json::json!({"status": "ignored", "reason": "ping", "delivery_id": "d"})
        );
        assert_eq!(
            serde_json::to_value(HookAnswer::Duplicate {
                delivery_id: "d".into()
            })
            .unwrap(),
            serde_json::json!({"status": "duplicate", "delivery_id": "d"})
        );
    }
}
