//! Operator self-tests. A queue probe travels the same path as review jobs — gateway → Queue →
//! review worker → D1 — so "are reviews stuck?" can be answered without a git platform. A probe
//! can be told to fail its first N deliveries, exercising retries, backoff and dead-lettering.

use edgeplane_core::ids::{looks_like_id, new_id};
use edgeplane_core::queue::ReviewQueueMessage;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::http::ctx::now_ms;
use crate::http::log;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;

/// More than the queue's `max_retries` can fail, which is the point: it proves dead-lettering.
const MAX_FAIL_TIMES: u32 = 20;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateProbe {
    #[serde(default)]
    fail_times: u32,
}

#[derive(Deserialize, Serialize)]
struct ProbeRow {
    id: String,
    status: String,
    fail_times: i64,
    attempts: i64,
    created_at_ms: i64,
    processed_at_ms: Option<i64>,
    last_error: Option<String>,
}

fn view(p: ProbeRow) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "status": p.status,
        "fail_times": p.fail_times,
        "attempts": p.attempts,
        "created_at": rfc3339_millis(p.created_at_ms),
        "processed_at": p.processed_at_ms.map(rfc3339_millis),
        "last_error": p.last_error,
    })
}

pub async fn create_queue_probe(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateProbe = cx.json_or_default().await?;
    if body.fail_times > MAX_FAIL_TIMES {
        return Err(ApiError::validation(format!(
            "fail_times must be at most {MAX_FAIL_TIMES}"
        )));
    }
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let id = new_id("qpr", now)?;
    let stmts = vec![Stmt::new(
        "INSERT INTO queue_probes (id, org_id, status, fail_times, attempts, created_at_ms) \
         VALUES (?, ?, 'queued', ?, 0, ?)",
        args![&id, &org_id, body.fail_times, now],
    )];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "diagnostics.queue_probe_created",
        "queue_probe",
        &id,
        serde_json::json!({"fail_times": body.fail_times}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;

    let msg = ReviewQueueMessage::Probe {
        org_id: org_id.clone(),
        probe_id: id.clone(),
    };
    let sent = match cx.env.queue("REVIEW_QUEUE") {
        Ok(q) => q.send(&msg).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        log::error("enqueue probe", &e.to_string());
        let _ = cx
            .db()
            .run_unaudited(
                "UPDATE queue_probes SET status = 'enqueue_failed' WHERE id = ?",
                args![&id],
            )
            .await;
        return Err(
            ApiError::new(ErrorCode::Unavailable, "the queue did not accept the job")
                .with_retry_after(5),
        );
    }
    respond::json(
        202,
        &serde_json::json!({"probe": {"id": id, "status": "queued", "fail_times": body.fail_times}}),
    )
}

pub async fn get_queue_probe(cx: &mut Cx<'_>) -> HttpResult {
    let id = cx.param("probe")?.to_owned();
    if !looks_like_id(&id, "qpr") {
        return Err(ApiError::not_found("queue probe"));
    }
    let row: ProbeRow = cx
        .db()
        .first(
            "SELECT id, status, fail_times, attempts, created_at_ms, processed_at_ms, last_error \
             FROM queue_probes WHERE id = ? AND org_id = ?",
            args![&id, &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("queue probe"))?;
    respond::ok(&serde_json::json!({"probe": view(row)}))
}
