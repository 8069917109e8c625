//! What draining an outbox entry writes to D1, as data: the gateway runs these statements as one
//! batch; the native tests run them against SQLite loaded with `schema.sql`. Every statement is
//! idempotent (`INSERT OR IGNORE` on the unique keys, an `UPDATE` that finds nothing the second
//! time), so a batch repeated after a crash records nothing twice.

use super::{Delivery, Intent, Outcome};
use crate::ids::ReviewId;
use crate::review::status::ReviewStatus;
use crate::store::Value;
use crate::vals;

/// One statement with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct D1Write {
    pub sql: String,
    pub args: Vec<Value>,
}

impl D1Write {
    fn new(sql: impl Into<String>, args: impl Into<Vec<Value>>) -> Self {
        Self {
            sql: sql.into(),
            args: args.into(),
        }
    }
}

/// The statements recording one delivery (and starting its review).
pub fn records(d: &Delivery, o: &Outcome) -> Vec<D1Write> {
    let Some(outcome) = o.recorded() else {
        return Vec::new();
    };
    if let (Outcome::Queued { review_id }, Intent::Review { pr, .. }) = (o, &d.intent) {
        return vec![
            // One review per head (the unique key makes a repeated drain harmless).
            D1Write::new(
                "INSERT OR IGNORE INTO reviews (id, org_id, integration_id, platform, repo_id, \
                 repo_name, pr_number, head_sha, base_sha, trigger, status, attempts, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?)",
                vals![
                    review_id,
                    &d.org_id,
                    &d.integration_id,
                    d.platform.as_str(),
                    pr.repo_id.as_str(),
                    pr.repo_name.as_str(),
                    pr.number,
                    pr.head_sha.as_str(),
                    pr.base_sha.as_deref(),
                    pr.trigger.as_str(),
                    d.received_at_ms
                ],
            ),
            // The delivery names the review of its head, whichever delivery created it.
            D1Write::new(
                "INSERT OR IGNORE INTO webhook_deliveries (id, org_id, integration_id, delivery_id, \
                 event, outcome, reason, review_id, secret_slot, received_at_ms) SELECT ?, ?, ?, ?, ?, \
                 CASE WHEN EXISTS (SELECT 1 FROM reviews WHERE id = ?) THEN 'queued' \
                 ELSE 'duplicate_head' END, NULL, (SELECT id FROM reviews WHERE integration_id = ? \
                 AND repo_id = ? AND pr_number = ? AND head_sha = ?), ?, ?",
                vals![
                    &d.row_id,
                    &d.org_id,
                    &d.integration_id,
                    d.delivery_id.as_str(),
                    d.event.as_str(),
                    review_id,
                    &d.integration_id,
                    pr.repo_id.as_str(),
                    pr.number,
                    pr.head_sha.as_str(),
                    d.secret_slot.as_str(),
                    d.received_at_ms
                ],
            ),
            // A newer head supersedes older reviews of the same pull request that have not ended.
            D1Write::new(
                format!(
                    "UPDATE reviews SET status = 'skipped', status_reason = 'superseded', \
                     superseded_by = ?, finished_at_ms = ?, lease_until_ms = NULL, work_sealed = NULL \
                     WHERE integration_id = ? AND repo_id = ? AND pr_number = ? AND head_sha <> ? \
                     AND status IN {} AND EXISTS (SELECT 1 FROM reviews WHERE id = ?)",
                    ReviewStatus::UNFINISHED_SQL
                ),
                vals![
                    review_id,
                    d.received_at_ms,
                    &d.integration_id,
                    pr.repo_id.as_str(),
                    pr.number,
                    pr.head_sha.as_str(),
                    review_id
                ],
            ),
        ];
    }
    let (reason, review_id) = match o {
        Outcome::Ignored { reason } => (Some(reason.as_str()), None),
        Outcome::Queued { review_id } | Outcome::DuplicateHead { review_id } => {
            (None, Some(review_id))
        }
        Outcome::Duplicate => (None, None),
    };
    vec![D1Write::new(
        "INSERT OR IGNORE INTO webhook_deliveries (id, org_id, integration_id, delivery_id, event, \
         outcome, reason, review_id, secret_slot, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vals![
            &d.row_id,
            &d.org_id,
            &d.integration_id,
            d.delivery_id.as_str(),
            d.event.as_str(),
            outcome.as_str(),
            reason,
            review_id,
            d.secret_slot.as_str(),
            d.received_at_ms
        ],
    )]
}

/// `SELECT id FROM reviews WHERE id IN (…)`, or nothing to ask.
pub fn existing_reviews(ids: &[&ReviewId]) -> Option<D1Write> {
    if ids.is_empty() {
        return None;
    }
    let marks = vec!["?"; ids.len()].join(", ");
    Some(D1Write::new(
        format!("SELECT id FROM reviews WHERE id IN ({marks})"),
        ids.iter().map(|id| Value::from(*id)).collect::<Vec<_>>(),
    ))
}
