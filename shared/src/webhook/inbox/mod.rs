//! The webhook inbox: what one integration's `WebhookInbox` Durable Object decides for a verified
//! delivery, and how it hands the work on.
//!
//! The request path does one round trip to the inbox. [`Inbox::accept`] de-duplicates the
//! delivery — by its id, by its body where the platform's authenticator does not cover the id
//! ([`VerifiedWebhook::replay_key`](super::VerifiedWebhook::replay_key)), and by the pull
//! request head it would review — and records a new one durably, together with its outbox entry,
//! before the platform gets its answer. The outbox is drained afterwards: [`Inbox::next_batch`]
//! plans the D1 records and the review jobs, the object writes them, and [`Inbox::drained`]
//! retires the entries. Every step is idempotent, so a drain repeated after a crash or a failure
//! at any point changes nothing twice, and an accepted delivery is never lost: an entry leaves the
//! outbox only after its records and its job were written.
//!
//! [`Inbox`] is a plain struct over an [`InboxStore`]; [`SqlInbox`] is the store over a Durable
//! Object's SQLite (and, in tests, SQLite itself), so the very statements production runs are
//! tested natively, crashes included.

mod d1;
mod schedule;
mod store;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use super::event::PullRequestRef;
use super::{Platform, Slot};
use crate::ids::{DeliveryRowId, IntegrationId, OrgId, ReviewId};
use crate::queue::ReviewQueueMessage;
use crate::store::StoreError;

pub use d1::D1Write;
pub use schedule::{retry_delay_ms, Schedule};
pub use store::{Entry, InboxStore, Memory, SqlInbox};

/// How long delivery ids, replay keys and reviewed heads are remembered. Platforms redeliver
/// within hours (GitHub's manual redelivery window is days); D1's `webhook_deliveries` rows are
/// kept as long.
pub const RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// Outbox entries written to D1 per drain step (each is at most three statements).
pub const DRAIN_BATCH: usize = 25;

/// A verified delivery, as the inbox records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The `webhook_deliveries` row id this delivery will have.
    pub row_id: DeliveryRowId,
    pub org_id: OrgId,
    pub integration_id: IntegrationId,
    pub platform: Platform,
    pub delivery_id: String,
    pub event: String,
    pub secret_slot: Slot,
    pub received_at_ms: i64,
    pub intent: Intent,
    /// What recognises a replay of this delivery under another id (the verified body's
    /// SHA-256), when the authenticator does not cover the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_key: Option<String>,
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
        review_id: ReviewId,
        pr: PullRequestRef,
    },
}

/// The inbox's answer, which is also the platform's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// A new head: a review will be queued.
    Queued {
        review_id: ReviewId,
    },
    /// Another delivery already started the review of this head.
    DuplicateHead {
        review_id: ReviewId,
    },
    Ignored {
        reason: String,
    },
    /// This delivery was accepted before (a redelivery, or a replay of its body under another
    /// id): nothing happens.
    Duplicate,
}

/// What a recorded delivery became (`webhook_deliveries.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Queued,
    Ignored,
    DuplicateHead,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Queued => "queued",
            DeliveryOutcome::Ignored => "ignored",
            DeliveryOutcome::DuplicateHead => "duplicate_head",
        }
    }
}

impl Outcome {
    /// Whether the delivery is new and must be recorded (everything but a duplicate).
    pub fn is_new(&self) -> bool {
        !matches!(self, Outcome::Duplicate)
    }

    /// How the delivery is recorded in D1; `None` for a duplicate, which is not recorded.
    pub fn recorded(&self) -> Option<DeliveryOutcome> {
        match self {
            Outcome::Queued { .. } => Some(DeliveryOutcome::Queued),
            Outcome::DuplicateHead { .. } => Some(DeliveryOutcome::DuplicateHead),
            Outcome::Ignored { .. } => Some(DeliveryOutcome::Ignored),
            Outcome::Duplicate => None,
        }
    }
}

/// Decides a delivery from what the inbox remembers.
pub fn decide(memory: &Memory, intent: &Intent) -> Outcome {
    if memory.delivery_seen || memory.body_seen {
        return Outcome::Duplicate;
    }
    match intent {
        Intent::Ignore { reason } => Outcome::Ignored {
            reason: reason.clone(),
        },
        Intent::Review { review_id, .. } => match &memory.head_review {
            Some(existing) => Outcome::DuplicateHead {
                review_id: existing.clone(),
            },
            None => Outcome::Queued {
                review_id: review_id.clone(),
            },
        },
    }
}

/// One integration's inbox: the decisions, over its store, and the alarm schedule of its drain.
pub struct Inbox<S> {
    store: S,
    schedule: Schedule,
}

/// The oldest outbox entries, and what draining them writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    entries: Vec<Entry>,
}

impl<S: InboxStore> Inbox<S> {
    pub fn new(store: S) -> Self {
        Self {
            store,
            schedule: Schedule::default(),
        }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Decides a delivery and, when it is new, records it with its outbox entry in one write:
    /// from then on it de-duplicates later deliveries and will be drained, whatever happens to
    /// the object. The store must see no other call between the reads and the write (a Durable
    /// Object guarantees that for synchronous code).
    pub fn accept(&self, d: &Delivery, now_ms: i64) -> Result<Outcome, StoreError> {
        let pr = match &d.intent {
            Intent::Review { pr, .. } => Some(pr),
            Intent::Ignore { .. } => None,
        };
        let memory = self
            .store
            .recall(&d.delivery_id, d.replay_key.as_deref(), pr)?;
        let outcome = decide(&memory, &d.intent);
        if outcome.is_new() {
            self.store.record(d, &outcome, now_ms)?;
        }
        Ok(outcome)
    }

    /// The next [`DRAIN_BATCH`] entries, oldest first; `None` when the outbox is empty.
    pub fn next_batch(&self) -> Result<Option<Batch>, StoreError> {
        let entries = self.store.pending(DRAIN_BATCH)?;
        Ok((!entries.is_empty()).then_some(Batch { entries }))
    }

    /// Retires a batch whose records and jobs were written. Entries accepted since the batch
    /// was planned stay.
    pub fn drained(&self, batch: &Batch) -> Result<(), StoreError> {
        self.store.drained_through(batch.through())
    }

    /// Forgets deliveries older than [`RETENTION_MS`]; entries not yet drained are kept
    /// whatever their age.
    pub fn prune(&self, now_ms: i64) -> Result<(), StoreError> {
        self.store.forget_before(now_ms - RETENTION_MS)
    }
}

impl Batch {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The last sequence number in the batch.
    pub fn through(&self) -> i64 {
        self.entries.last().map(|e| e.seq).unwrap_or(0)
    }

    /// Whether the outbox may hold more entries after this batch.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= DRAIN_BATCH
    }

    /// The integration the entries belong to (one inbox per integration), for log lines.
    pub fn integration_id(&self) -> Option<&IntegrationId> {
        self.entries.first().map(|e| &e.delivery.integration_id)
    }

    /// The D1 statements recording every entry, to run as one batch.
    pub fn d1_writes(&self) -> Vec<D1Write> {
        self.entries
            .iter()
            .flat_map(|e| d1::records(&e.delivery, &e.outcome))
            .collect()
    }

    fn queued(&self) -> impl Iterator<Item = (&OrgId, &ReviewId)> {
        self.entries.iter().filter_map(|e| match &e.outcome {
            Outcome::Queued { review_id } => Some((&e.delivery.org_id, review_id)),
            _ => None,
        })
    }

    /// After the writes: which of the reviews this batch queues exist in D1 (`SELECT id`). A
    /// head reviewed before the inbox remembered it keeps its earlier review and gets no job.
    pub fn existing_reviews(&self) -> Option<D1Write> {
        let ids: Vec<&ReviewId> = self.queued().map(|(_, r)| r).collect();
        d1::existing_reviews(&ids)
    }

    /// The review jobs for the queued reviews among `existing`.
    pub fn jobs(&self, existing: &[ReviewId]) -> Vec<ReviewQueueMessage> {
        self.queued()
            .filter(|(_, r)| existing.contains(r))
            .map(|(org, r)| ReviewQueueMessage::Review {
                org_id: org.to_string(),
                review_id: r.to_string(),
            })
            .collect()
    }
}
