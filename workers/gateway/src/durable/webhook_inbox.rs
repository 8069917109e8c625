//! `WebhookInbox`: one per integration. The webhook request path's only storage round trip.
//!
//! The logic is `edgeplane_core::webhook::inbox` (decisions, storage layout, D1 records, retry
//! schedule); this class loads it over the object's SQLite, calls it, and does the I/O it plans:
//! `/accept` records a delivery before the platform is answered, and the alarm drains the outbox
//! — one D1 batch of records, then the review jobs to the queue, then the entries are retired. A
//! failure at any step leaves the entries in place and re-arms the alarm with backoff.

use std::cell::OnceCell;

use edgeplane_core::ids::{IntegrationId, ReviewId};
use edgeplane_core::store::{StoreError, Value};
use edgeplane_core::webhook::inbox::{
    retry_delay_ms, Batch, D1Write, Delivery, Inbox, Outcome, SqlInbox,
};
use edgeplane_core::ApiError;
use edgeplane_runtime::clock::now_ms;
use edgeplane_runtime::db::{Db, OrInternal, Stmt, Val};
use edgeplane_runtime::log;
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::sql::{alarm_at, DoSql};
use crate::rpc::reply;

#[durable_object]
pub struct WebhookInbox {
    state: State,
    env: Env,
    inbox: OnceCell<Inbox<SqlInbox<DoSql>>>,
}

fn stored(e: StoreError) -> ApiError {
    log::error("webhook inbox storage", &e.to_string());
    ApiError::internal()
}

fn d1_val(v: Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Int(i) => Val::Int(i),
        Value::Real(f) => Val::Real(f),
        Value::Text(s) => Val::Text(s),
        Value::Blob(b) => Val::Blob(b),
    }
}

fn stmt(w: D1Write) -> Stmt {
    Stmt::new(w.sql, w.args.into_iter().map(d1_val).collect())
}

#[derive(Deserialize)]
struct IdRow {
    id: ReviewId,
}

impl WebhookInbox {
    fn inbox(&self) -> std::result::Result<&Inbox<SqlInbox<DoSql>>, ApiError> {
        if let Some(inbox) = self.inbox.get() {
            return Ok(inbox);
        }
        let store = SqlInbox::open(DoSql(self.state.storage().sql())).map_err(stored)?;
        Ok(self.inbox.get_or_init(|| Inbox::new(store)))
    }

    async fn arm(&self, at_ms: i64) {
        if let Err(e) = self.state.storage().set_alarm(alarm_at(at_ms)).await {
            if let Ok(inbox) = self.inbox() {
                inbox.schedule().arm_failed();
            }
            log::error("webhook inbox alarm", &e.to_string());
        }
    }

    /// Writes one batch's records and jobs, then retires it.
    async fn drain(&self, batch: &Batch) -> std::result::Result<(), ApiError> {
        let db = Db::from_env(&self.env)?;
        db.batch_unaudited(batch.d1_writes().into_iter().map(stmt).collect())
            .await?;
        let existing: Vec<ReviewId> = match batch.existing_reviews() {
            Some(q) => db
                .all::<IdRow>(&q.sql, q.args.into_iter().map(d1_val).collect())
                .await?
                .into_iter()
                .map(|r| r.id)
                .collect(),
            None => Vec::new(),
        };
        let jobs = batch.jobs(&existing);
        if !jobs.is_empty() {
            let queue = self
                .env
                .queue("REVIEW_QUEUE")
                .or_internal("review queue binding")?;
            queue
                .send_batch(jobs)
                .await
                .or_internal("review queue send")?;
        }
        self.inbox()?.drained(batch).map_err(stored)
    }
}

impl DurableObject for WebhookInbox {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            inbox: OnceCell::new(),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path() != "/accept" {
            return Response::error("not found", 404);
        }
        let Ok(delivery) = req.json::<Delivery>().await else {
            return reply::<Outcome>(Err(ApiError::internal()));
        };
        let now = now_ms();
        let accepted = self.inbox().and_then(|inbox| {
            let outcome = inbox.accept(&delivery, now).map_err(stored)?;
            let alarm = inbox.schedule().after_accept(&outcome, now);
            Ok((outcome, alarm))
        });
        let outcome = match accepted {
            Ok((outcome, alarm)) => {
                if let Some(at) = alarm {
                    self.arm(at).await;
                }
                Ok(outcome)
            }
            Err(e) => Err(e),
        };
        reply(outcome)
    }

    async fn alarm(&self) -> Result<Response> {
        let inbox = match self.inbox() {
            Ok(inbox) => inbox,
            Err(_) => {
                self.arm(now_ms() + retry_delay_ms(1)).await;
                return Response::ok("storage unavailable");
            }
        };
        inbox.schedule().alarm_started();
        let mut integration: Option<IntegrationId> = None;
        let mut written = 0;
        loop {
            let failed = match inbox.next_batch() {
                Ok(None) => break,
                Ok(Some(batch)) => {
                    integration = batch.integration_id().cloned().or(integration);
                    match self.drain(&batch).await {
                        Ok(()) if batch.is_full() => {
                            written += batch.entries().len();
                            continue;
                        }
                        Ok(()) => {
                            written += batch.entries().len();
                            break;
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => stored(e),
            };
            let at = inbox.schedule().drain_failed(now_ms());
            log::warn(
                "webhook inbox drain failed; retrying",
                &format!(
                    "integration {}: {} (attempt {})",
                    integration.as_ref().map_or("?", |i| i.as_str()),
                    failed.message,
                    inbox.schedule().failures()
                ),
            );
            self.arm(at).await;
            return Response::ok("retrying");
        }
        inbox.schedule().drained();
        if let Err(e) = inbox.prune(now_ms()) {
            log::warn("webhook inbox prune", &e.to_string());
        }
        log::info(
            "webhook inbox drained",
            serde_json::json!({"integration": integration, "entries": written, "outbox": "empty"}),
        );
        Response::ok("drained")
    }
}
