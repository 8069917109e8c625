//! The inbox's storage: one row per accepted delivery in the object's SQLite.
//!
//! The row is both the memory that de-duplicates later deliveries (delivery id, replay key,
//! the head whose review it started) and, until drained, its outbox entry. So recording a
//! delivery is a single `INSERT`: it cannot half happen, whatever the runtime's transaction
//! boundaries. Draining clears `entry`; pruning deletes drained rows past retention.

use serde::{Deserialize, Serialize};

use super::{Delivery, Outcome};
use crate::ids::ReviewId;
use crate::store::{SqlExec, StoreError};
use crate::vals;
use crate::webhook::event::PullRequestRef;

/// What the inbox remembers that bears on a new delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Its delivery id was accepted before.
    pub delivery_seen: bool,
    /// Its replay key (the verified body) was accepted before, under any id.
    pub body_seen: bool,
    /// The review an earlier delivery started for its head.
    pub head_review: Option<ReviewId>,
}

/// One outbox entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: i64,
    pub delivery: Delivery,
    pub outcome: Outcome,
}

/// Storage for [`Inbox`](super::Inbox).
pub trait InboxStore {
    /// What is remembered about a delivery id, a replay key and a pull request head.
    fn recall(
        &self,
        delivery_id: &str,
        replay_key: Option<&str>,
        pr: Option<&PullRequestRef>,
    ) -> Result<Memory, StoreError>;
    /// Records an accepted delivery and its outbox entry as one write.
    fn record(&self, d: &Delivery, outcome: &Outcome, at_ms: i64) -> Result<(), StoreError>;
    /// Up to `limit` outbox entries, oldest first.
    fn pending(&self, limit: usize) -> Result<Vec<Entry>, StoreError>;
    /// Retires every entry up to `seq`.
    fn drained_through(&self, seq: i64) -> Result<(), StoreError>;
    /// Forgets drained deliveries accepted before `cutoff_ms`.
    fn forget_before(&self, cutoff_ms: i64) -> Result<(), StoreError>;
}

/// The stored form of an outbox entry.
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    delivery: Delivery,
    outcome: Outcome,
}

const SCHEMA: &[&str] = &[
    // `delivery_id` is NULL only for heads carried over from the first layout (below).
    "CREATE TABLE IF NOT EXISTS accepted (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
     delivery_id TEXT UNIQUE, replay_key TEXT UNIQUE, repo_id TEXT, pr_number INTEGER, \
     head_sha TEXT, review_id TEXT, at_ms INTEGER NOT NULL, entry TEXT)",
    "CREATE UNIQUE INDEX IF NOT EXISTS accepted_heads ON accepted (repo_id, pr_number, head_sha) \
     WHERE review_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS accepted_pending ON accepted (seq) WHERE entry IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS accepted_by_time ON accepted (at_ms)",
];

/// [`InboxStore`] over SQL: a Durable Object's SQLite, or SQLite itself in tests.
pub struct SqlInbox<E> {
    db: E,
}

impl<E: SqlExec> SqlInbox<E> {
    /// Opens the store, creating its table, and folds in what an inbox of the first layout
    /// (`seen`, `heads`, `outbox` tables) kept, so no delivery it accepted is lost or accepted
    /// twice across the upgrade.
    pub fn open(db: E) -> Result<Self, StoreError> {
        for ddl in SCHEMA {
            db.exec(ddl, &[])?;
        }
        let store = Self { db };
        store.fold_first_layout()?;
        Ok(store)
    }

    fn fold_first_layout(&self) -> Result<(), StoreError> {
        let legacy = self.db.one(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'",
            &[],
        )?;
        if legacy.is_none() {
            return Ok(());
        }
        for row in self
            .db
            .query("SELECT delivery, outcome FROM outbox ORDER BY seq", &[])?
        {
            let delivery: Delivery = parse(&row.get::<String>(0)?, "outbox delivery")?;
            let outcome: Outcome = parse(&row.get::<String>(1)?, "outbox outcome")?;
            let at = delivery.received_at_ms;
            self.record(&delivery, &outcome, at)?;
        }
        for sql in [
            "INSERT OR IGNORE INTO accepted (delivery_id, at_ms) SELECT delivery_id, at_ms FROM seen",
            "INSERT OR IGNORE INTO accepted (repo_id, pr_number, head_sha, review_id, at_ms) \
             SELECT repo_id, pr_number, head_sha, review_id, at_ms FROM heads",
            "DROP TABLE outbox",
            "DROP TABLE seen",
            "DROP TABLE heads",
        ] {
            self.db.exec(sql, &[])?;
        }
        Ok(())
    }
}

fn parse<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::corrupt(format!("{what}: {e}")))
}

impl<E: SqlExec> InboxStore for SqlInbox<E> {
    fn recall(
        &self,
        delivery_id: &str,
        replay_key: Option<&str>,
        pr: Option<&PullRequestRef>,
    ) -> Result<Memory, StoreError> {
        let seen = self
            .db
            .one(
                "SELECT EXISTS (SELECT 1 FROM accepted WHERE delivery_id = ?), \
                 EXISTS (SELECT 1 FROM accepted WHERE replay_key = ?)",
                &vals![delivery_id, replay_key],
            )?
            .ok_or_else(|| StoreError::corrupt("no row from EXISTS"))?;
        let head_review = match pr {
            Some(pr) => self
                .db
                .one(
                    "SELECT review_id FROM accepted WHERE repo_id = ? AND pr_number = ? \
                     AND head_sha = ? AND review_id IS NOT NULL",
                    &vals![pr.repo_id.as_str(), pr.number, pr.head_sha.as_str()],
                )?
                .map(|r| r.get::<ReviewId>(0))
                .transpose()?,
            None => None,
        };
        Ok(Memory {
            delivery_seen: seen.get(0)?,
            body_seen: seen.get(1)?,
            head_review,
        })
    }

    fn record(&self, d: &Delivery, outcome: &Outcome, at_ms: i64) -> Result<(), StoreError> {
        // Only the delivery that starts a review claims its head.
        let head = match (outcome, &d.intent) {
            (Outcome::Queued { review_id }, super::Intent::Review { pr, .. }) => {
                Some((pr, review_id))
            }
            _ => None,
        };
        let entry = serde_json::to_string(&StoredEntry {
            delivery: d.clone(),
            outcome: outcome.clone(),
        })
        .map_err(|e| StoreError::corrupt(format!("outbox entry: {e}")))?;
        self.db.exec(
            "INSERT INTO accepted (delivery_id, replay_key, repo_id, pr_number, head_sha, \
             review_id, at_ms, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            &vals![
                d.delivery_id.as_str(),
                d.replay_key.as_deref(),
                head.map(|(pr, _)| pr.repo_id.as_str()),
                head.map(|(pr, _)| pr.number),
                head.map(|(pr, _)| pr.head_sha.as_str()),
                head.map(|(_, r)| r),
                at_ms,
                entry
            ],
        )
    }

    fn pending(&self, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.db
            .query(
                "SELECT seq, entry FROM accepted WHERE entry IS NOT NULL ORDER BY seq LIMIT ?",
                &vals![limit as u64],
            )?
            .into_iter()
            .map(|row| {
                // Written by this object: unreadable means a bug, which must stop the drain
                // loudly rather than drop a delivery.
                let stored: StoredEntry = parse(&row.get::<String>(1)?, "outbox entry")?;
                Ok(Entry {
                    seq: row.get(0)?,
                    delivery: stored.delivery,
                    outcome: stored.outcome,
                })
            })
            .collect()
    }

    fn drained_through(&self, seq: i64) -> Result<(), StoreError> {
        self.db.exec(
            "UPDATE accepted SET entry = NULL WHERE seq <= ? AND entry IS NOT NULL",
            &vals![seq],
        )
    }

    fn forget_before(&self, cutoff_ms: i64) -> Result<(), StoreError> {
        self.db.exec(
            "DELETE FROM accepted WHERE at_ms < ? AND entry IS NULL",
            &vals![cutoff_ms],
        )
    }
}
