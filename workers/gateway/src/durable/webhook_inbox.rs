//! `WebhookInbox`: one per integration. The webhook request path's only storage round trip.
//!
//! `/accept` de-duplicates the delivery id and the pull request head against this object's own
//! SQLite and, for a new delivery, records it in the outbox — all synchronously, so the three
//! writes commit together before the platform is answered. The alarm then drains the outbox in
//! order: one D1 batch writes the delivery rows and the reviews (and supersedes older heads),
//! then the review jobs go to the queue, then the drained entries are deleted. A failure at any
//! step leaves the entries in place and re-arms the alarm with backoff; every step is idempotent
//! (`INSERT OR IGNORE` on unique keys, and the review worker ignores a job for a review that is
//! already under way), so a repeated drain changes nothing twice.

use std::cell::Cell;

use edgeplane_core::queue::ReviewQueueMessage;
use edgeplane_core::webhook::inbox::{
    decide, retry_delay_ms, Delivery, Intent, Outcome, DRAIN_BATCH, RETENTION_MS,
};
use edgeplane_core::ApiError;
use edgeplane_runtime::db::{Db, OrInternal, Stmt};
use edgeplane_runtime::{args, log};
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use super::sql::{self, alarm_at, int, text};
use crate::http::ctx::now_ms;
use crate::rpc::reply;

#[durable_object]
pub struct WebhookInbox {
    state: State,
    env: Env,
    schema_ready: Cell<bool>,
    failures: Cell<u32>,
    /// An alarm is set and has not started yet: accepts need not set another.
    armed: Cell<bool>,
}

#[derive(Deserialize)]
struct ReviewIdRow {
    review_id: String,
}

#[derive(Deserialize)]
struct OutboxRow {
    seq: i64,
    delivery: String,
    outcome: String,
}

impl WebhookInbox {
    fn sql(&self) -> SqlStorage {
        let sql = self.state.storage().sql();
        if !self.schema_ready.get() {
            for ddl in [
                "CREATE TABLE IF NOT EXISTS seen (delivery_id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
                "CREATE INDEX IF NOT EXISTS seen_by_time ON seen (at_ms)",
                "CREATE TABLE IF NOT EXISTS heads (repo_id TEXT NOT NULL, pr_number INTEGER NOT NULL, \
                 head_sha TEXT NOT NULL, review_id TEXT NOT NULL, at_ms INTEGER NOT NULL, \
                 PRIMARY KEY (repo_id, pr_number, head_sha))",
                "CREATE INDEX IF NOT EXISTS heads_by_time ON heads (at_ms)",
                "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
                 delivery TEXT NOT NULL, outcome TEXT NOT NULL)",
            ] {
                if sql.exec(ddl, None).is_err() {
                    return sql;
                }
            }
            self.schema_ready.set(true);
        }
        sql
    }

    /// Decides and, for a new delivery, records it: no `await` between the reads and the writes,
    /// so they are one transaction.
    fn accept(&self, d: &Delivery) -> std::result::Result<Outcome, ApiError> {
        let sql = self.sql();
        let seen = sql::one::<serde_json::Value>(
            &sql,
            "SELECT 1 AS x FROM seen WHERE delivery_id = ?",
            vec![text(&d.delivery_id)],
        )?
        .is_some();
        let head = match &d.intent {
            Intent::Review { pr, .. } if !seen => sql::one::<ReviewIdRow>(
                &sql,
                "SELECT review_id FROM heads WHERE repo_id = ? AND pr_number = ? AND head_sha = ?",
                vec![text(&pr.repo_id), int(pr.number as i64), text(&pr.head_sha)],
            )?
            .map(|r| r.review_id),
            _ => None,
        };
        let outcome = decide(seen, head, &d.intent);
        if !outcome.is_new() {
            return Ok(outcome);
        }
        let now = now_ms();
        sql::exec(
            &sql,
            "INSERT INTO seen (delivery_id, at_ms) VALUES (?, ?)",
            vec![text(&d.delivery_id), int(now)],
        )?;
        if let (Outcome::Queued { review_id }, Intent::Review { pr, .. }) = (&outcome, &d.intent) {
            sql::exec(
                &sql,
                "INSERT INTO heads (repo_id, pr_number, head_sha, review_id, at_ms) VALUES (?, ?, ?, ?, ?)",
                vec![
                    text(&pr.repo_id),
                    int(pr.number as i64),
                    text(&pr.head_sha),
                    text(review_id),
                    int(now),
                ],
            )?;
        }
        let delivery = serde_json::to_string(d).map_err(|_| ApiError::internal())?;
        let recorded = serde_json::to_string(&outcome).map_err(|_| ApiError::internal())?;
        sql::exec(
            &sql,
            "INSERT INTO outbox (delivery, outcome) VALUES (?, ?)",
            vec![text(delivery), text(recorded)],
        )?;
        Ok(outcome)
    }

    async fn arm(&self, at_ms: i64) {
        // The alarm itself is persistent (it survives eviction); this flag only spares a storage
        // call per accept while one is already pending.
        self.armed.set(true);
        if let Err(e) = self.state.storage().set_alarm(alarm_at(at_ms)).await {
            self.armed.set(false);
            log::error("webhook inbox alarm", &e.to_string());
        }
    }

    /// One drain step: up to [`DRAIN_BATCH`] entries, oldest first. Returns whether more remain.
    async fn drain_step(&self) -> std::result::Result<bool, ApiError> {
        let rows: Vec<OutboxRow> = sql::rows(
            &self.sql(),
            "SELECT seq, delivery, outcome FROM outbox ORDER BY seq LIMIT ?",
            vec![int(DRAIN_BATCH as i64)],
        )?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            return Ok(false);
        };
        let mut stmts = Vec::new();
        let mut queued: Vec<(String, String)> = Vec::new();
        for row in &rows {
            let (Ok(d), Ok(o)) = (
                serde_json::from_str::<Delivery>(&row.delivery),
                serde_json::from_str::<Outcome>(&row.outcome),
            ) else {
                // Written by this object; unreadable means a bug, not a retryable failure.
                log::error("webhook inbox", "unreadable outbox entry dropped");
                continue;
            };
            stmts.extend(records(&d, &o));
            if let Outcome::Queued { review_id } = o {
                queued.push((d.org_id.clone(), review_id));
            }
        }
        let db = Db::from_env(&self.env)?;
        db.batch_unaudited(stmts).await?;
        // Jobs only for reviews that exist in D1 (a head reviewed before this inbox remembered it
        // keeps its earlier review, and the delivery row says `duplicate_head`).
        let messages = existing_reviews(&db, &queued).await?;
        if !messages.is_empty() {
            let queue = self
                .env
                .queue("REVIEW_QUEUE")
                .or_internal("review queue binding")?;
            queue
                .send_batch(messages)
                .await
                .or_internal("review queue send")?;
        }
        sql::exec(
            &self.sql(),
            "DELETE FROM outbox WHERE seq <= ?",
            vec![int(last)],
        )?;
        Ok(rows.len() == DRAIN_BATCH)
    }

    fn prune(&self) -> std::result::Result<(), ApiError> {
        let cutoff = now_ms() - RETENTION_MS;
        let sql = self.sql();
        sql::exec(&sql, "DELETE FROM seen WHERE at_ms < ?", vec![int(cutoff)])?;
        sql::exec(&sql, "DELETE FROM heads WHERE at_ms < ?", vec![int(cutoff)])
    }
}

/// The D1 statements recording one delivery (and starting its review).
fn records(d: &Delivery, o: &Outcome) -> Vec<Stmt> {
    let mut stmts = Vec::new();
    let (reason, review_id) = match o {
        Outcome::Ignored { reason } => (Some(reason.as_str()), None),
        Outcome::Queued { review_id } | Outcome::DuplicateHead { review_id } => {
            (None, Some(review_id.as_str()))
        }
        Outcome::Duplicate => return stmts,
    };
    if let (Outcome::Queued { review_id }, Intent::Review { pr, .. }) = (o, &d.intent) {
        let number = pr.number as i64;
        // One review per head (the unique key makes a repeated drain harmless).
        stmts.push(Stmt::new(
            "INSERT OR IGNORE INTO reviews (id, org_id, integration_id, platform, repo_id, repo_name, \
             pr_number, head_sha, base_sha, trigger, status, attempts, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?)",
            args![
                review_id,
                &d.org_id,
                &d.integration_id,
                &d.platform,
                &pr.repo_id,
                &pr.repo_name,
                number,
                &pr.head_sha,
                pr.base_sha.clone(),
                pr.trigger.as_str(),
                d.received_at_ms
            ],
        ));
        // The delivery names the review of its head, whichever delivery created it.
        stmts.push(Stmt::new(
            "INSERT OR IGNORE INTO webhook_deliveries (id, org_id, integration_id, delivery_id, event, \
             outcome, reason, review_id, secret_slot, received_at_ms) SELECT ?, ?, ?, ?, ?, \
             CASE WHEN EXISTS (SELECT 1 FROM reviews WHERE id = ?) THEN 'queued' ELSE 'duplicate_head' END, \
             NULL, (SELECT id FROM reviews WHERE integration_id = ? AND repo_id = ? AND pr_number = ? \
             AND head_sha = ?), ?, ?",
            args![
                &d.row_id,
                &d.org_id,
                &d.integration_id,
                &d.delivery_id,
                &d.event,
                review_id,
                &d.integration_id,
                &pr.repo_id,
                number,
                &pr.head_sha,
                &d.secret_slot,
                d.received_at_ms
            ],
        ));
        // A newer head supersedes older reviews of the same pull request that have not ended.
        stmts.push(Stmt::new(
            "UPDATE reviews SET status = 'skipped', status_reason = 'superseded', superseded_by = ?, \
             finished_at_ms = ?, lease_until_ms = NULL, work_sealed = NULL \
             WHERE integration_id = ? AND repo_id = ? AND pr_number = ? AND head_sha <> ? \
             AND status IN ('queued', 'fetching', 'indexing', 'reviewing', 'commenting') \
             AND EXISTS (SELECT 1 FROM reviews WHERE id = ?)",
            args![
                review_id,
                d.received_at_ms,
                &d.integration_id,
                &pr.repo_id,
                number,
                &pr.head_sha,
                review_id
            ],
        ));
        return stmts;
    }
    stmts.push(Stmt::new(
        "INSERT OR IGNORE INTO webhook_deliveries (id, org_id, integration_id, delivery_id, event, \
         outcome, reason, review_id, secret_slot, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        args![
            &d.row_id,
            &d.org_id,
            &d.integration_id,
            &d.delivery_id,
            &d.event,
            o.column(),
            reason,
            review_id,
            &d.secret_slot,
            d.received_at_ms
        ],
    ));
    stmts
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

/// Review jobs for the queued reviews that exist in D1.
async fn existing_reviews(
    db: &Db,
    queued: &[(String, String)],
) -> std::result::Result<Vec<ReviewQueueMessage>, ApiError> {
    if queued.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; queued.len()].join(", ");
    let ids: Vec<IdRow> = db
        .all(
            &format!("SELECT id FROM reviews WHERE id IN ({placeholders})"),
            queued.iter().map(|(_, r)| r.as_str().into()).collect(),
        )
        .await?;
    Ok(queued
        .iter()
        .filter(|(_, r)| ids.iter().any(|i| &i.id == r))
        .map(|(org_id, review_id)| ReviewQueueMessage::Review {
            org_id: org_id.clone(),
            review_id: review_id.clone(),
        })
        .collect())
}

impl DurableObject for WebhookInbox {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            schema_ready: Cell::new(false),
            failures: Cell::new(0),
            armed: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path() != "/accept" {
            return Response::error("not found", 404);
        }
        let delivery: Delivery = match req.json().await {
            Ok(d) => d,
            Err(_) => return reply::<Outcome>(Err(ApiError::internal())),
        };
        let outcome = self.accept(&delivery);
        if matches!(&outcome, Ok(o) if o.is_new()) && !self.armed.get() {
            // Drain right away; under load several accepts share one drain.
            self.arm(now_ms()).await;
        }
        reply(outcome)
    }

    async fn alarm(&self) -> Result<Response> {
        // Entries accepted from here on need a new alarm.
        self.armed.set(false);
        loop {
            match self.drain_step().await {
                Ok(true) => continue,
                Ok(false) => {
                    self.failures.set(0);
                    if let Err(e) = self.prune() {
                        log::warn("webhook inbox prune", &e.message);
                    }
                    break;
                }
                Err(e) => {
                    let n = self.failures.get() + 1;
                    self.failures.set(n);
                    log::warn("webhook inbox drain failed; retrying", &e.message);
                    self.arm(now_ms() + retry_delay_ms(n)).await;
                    break;
                }
            }
        }
        Response::ok("drained")
    }
}
