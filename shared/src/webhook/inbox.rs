//! The webhook inbox: what one integration's `WebhookInbox` Durable Object decides for a verified
//! delivery, and how it schedules the work it hands on.
//!
//! The request path does one round trip to the inbox, which de-duplicates the delivery id and
//! the pull request head in its own storage and durably records the delivery in an outbox before
//! the platform gets its answer. The outbox is drained afterwards — the D1 records, then the
//! review job — with retries, so an accepted delivery is never lost, and each step is idempotent,
//! so a drain repeated after a failure changes nothing twice.

use serde::{Deserialize, Serialize};

use super::event::PullRequestRef;

/// How long delivery ids and reviewed heads are remembered. Platforms redeliver within hours
/// (GitHub's manual redelivery window is days); D1's `webhook_deliveries` rows are kept as long.
pub const RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// Outbox entries written to D1 per drain step (each is at most three statements).
pub const DRAIN_BATCH: usize = 25;

/// A verified delivery, as the inbox records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The `webhook_deliveries` row id this delivery will have.
    pub row_id: String,
    pub org_id: String,
    pub integration_id: String,
    pub platform: String,
    pub delivery_id: String,
    pub event: String,
    pub secret_slot: String,
    pub received_at_ms: i64,
    pub intent: Intent,
}

/// What the delivery asks for, as classified by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    Ignore {
        reason: String,
    },
    /// `review_id` is the id a new review gets if this head has not been seen.
    Review {
        review_id: String,
        pr: PullRequestRef,
    },
}

/// The inbox's answer, which is also the platform's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// A new head: a review will be queued.
    Queued {
        review_id: String,
    },
    /// Another delivery already started the review of this head.
    DuplicateHead {
        review_id: String,
    },
    Ignored {
        reason: String,
    },
    /// This delivery id was accepted before (a redelivery): nothing happens.
    Duplicate,
}

impl Outcome {
    /// Whether the delivery is new and must be recorded (everything but a redelivery).
    pub fn is_new(&self) -> bool {
        !matches!(self, Outcome::Duplicate)
    }

    /// The `webhook_deliveries.outcome` column value.
    pub fn column(&self) -> &'static str {
        match self {
            Outcome::Queued { .. } => "queued",
            Outcome::DuplicateHead { .. } => "duplicate_head",
            Outcome::Ignored { .. } | Outcome::Duplicate => "ignored",
        }
    }
}

/// Decides a delivery from what the inbox remembers: whether the delivery id was seen, and the
/// review already started for the delivery's head, if any.
pub fn decide(seen: bool, head_review: Option<String>, intent: &Intent) -> Outcome {
    if seen {
        return Outcome::Duplicate;
    }
    match intent {
        Intent::Ignore { reason } => Outcome::Ignored {
            reason: reason.clone(),
        },
        Intent::Review { review_id, .. } => match head_review {
            Some(existing) => Outcome::DuplicateHead {
                review_id: existing,
            },
            None => Outcome::Queued {
                review_id: review_id.clone(),
            },
        },
    }
}

/// Delay before retrying a drain after `failures` consecutive failures: 1 s doubling to 5 min.
pub fn retry_delay_ms(failures: u32) -> i64 {
    let exp = failures.saturating_sub(1).min(9);
    (1000i64 << exp).min(300_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::event::Trigger;

    fn review(id: &str) -> Intent {
        Intent::Review {
            review_id: id.into(),
            pr: PullRequestRef {
                repo_id: "1".into(),
                repo_name: "o/r".into(),
                number: 7,
                head_sha: "abc".into(),
                base_sha: None,
                trigger: Trigger::Opened,
            },
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(
            decide(false, None, &review("rev_new")),
            Outcome::Queued {
                review_id: "rev_new".into()
            }
        );
        assert_eq!(
            decide(false, Some("rev_old".into()), &review("rev_new")),
            Outcome::DuplicateHead {
                review_id: "rev_old".into()
            }
        );
        assert_eq!(decide(true, None, &review("rev_new")), Outcome::Duplicate);
        assert_eq!(
            decide(true, Some("rev_old".into()), &review("rev_new")),
            Outcome::Duplicate
        );
        let ignore = Intent::Ignore {
            reason: "ping".into(),
        };
        assert_eq!(
            decide(false, None, &ignore),
            Outcome::Ignored {
                reason: "ping".into()
            }
        );
        assert!(!Outcome::Duplicate.is_new());
        assert_eq!(decide(false, None, &ignore).column(), "ignored");
    }

    #[test]
    fn wire_format_round_trips() {
        let d = Delivery {
            row_id: "whd_1".into(),
            org_id: "org_1".into(),
            integration_id: "int_1".into(),
            platform: "github".into(),
            delivery_id: "d-1".into(),
            event: "pull_request".into(),
            secret_slot: "current".into(),
            received_at_ms: 5,
            intent: review("rev_1"),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Delivery>(&json).unwrap(), d);
        let o = serde_json::to_value(Outcome::Queued {
            review_id: "rev_1".into(),
        })
        .unwrap();
        assert_eq!(
            o,
            serde_json::json!({"status": "queued", "review_id": "rev_1"})
        );
    }

    #[test]
    fn drain_backoff() {
        assert_eq!(retry_delay_ms(1), 1000);
        assert_eq!(retry_delay_ms(3), 4000);
        assert_eq!(retry_delay_ms(40), 300_000);
    }
}
