//! Review status: what the pipeline did with each pull request head, with timings and counts.

use edgeplane_core::ids::looks_like_id;
use edgeplane_core::queue::ReviewQueueMessage;
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::json;

use super::update::enqueue;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;
use edgeplane_runtime::args;
use edgeplane_runtime::db::{Stmt, Val};

const STATUSES: &[&str] = &[
    "queued",
    "fetching",
    "indexing",
    "reviewing",
    "commenting",
    "done",
    "failed",
    "skipped",
];

#[derive(Deserialize)]
struct ReviewRow {
    id: String,
    integration_id: String,
    platform: String,
    repo_id: String,
    repo_name: String,
    pr_number: i64,
    head_sha: String,
    base_sha: Option<String>,
    trigger: String,
    status: String,
    status_reason: Option<String>,
    error: Option<String>,
    attempts: i64,
    superseded_by: Option<String>,
    llm_provider_id: Option<String>,
    model: Option<String>,
    created_at_ms: i64,
    fetching_at_ms: Option<i64>,
    indexing_at_ms: Option<i64>,
    reviewing_at_ms: Option<i64>,
    commenting_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    files_changed: Option<i64>,
    files_reviewed: Option<i64>,
    files_skipped: Option<i64>,
    chunks_indexed: Option<i64>,
    context_chunks: Option<i64>,
    embeddings_used: Option<i64>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    findings_total: Option<i64>,
    findings_dropped: Option<i64>,
    comments_posted: Option<i64>,
    comments_fallback: Option<i64>,
    skipped_files: Option<String>,
    platform_review_id: Option<String>,
}

const COLUMNS: &str = "id, integration_id, platform, repo_id, repo_name, pr_number, head_sha, base_sha, \
    trigger, status, status_reason, error, attempts, superseded_by, llm_provider_id, model, created_at_ms, \
    fetching_at_ms, indexing_at_ms, reviewing_at_ms, commenting_at_ms, finished_at_ms, files_changed, \
    files_reviewed, files_skipped, chunks_indexed, context_chunks, embeddings_used, prompt_tokens, \
    completion_tokens, findings_total, findings_dropped, comments_posted, comments_fallback, skipped_files, \
    platform_review_id";

fn span(from: Option<i64>, to: Option<i64>) -> Option<i64> {
    Some(to? - from?).filter(|d| *d >= 0)
}

fn view(r: ReviewRow) -> serde_json::Value {
    // Each phase lasts until the next one started (or the review ended).
    let phases = [
        r.fetching_at_ms,
        r.indexing_at_ms,
        r.reviewing_at_ms,
        r.commenting_at_ms,
        r.finished_at_ms,
    ];
    let next = |i: usize| phases[i + 1..].iter().copied().flatten().next();
    let skipped_files: serde_json::Value = r
        .skipped_files
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(json!([]));
    json!({
        "id": r.id,
        "integration_id": r.integration_id,
        "platform": r.platform,
        "repository": {"id": r.repo_id, "name": r.repo_name},
        "pull_request": r.pr_number,
        "head_sha": r.head_sha,
        "base_sha": r.base_sha,
        "trigger": r.trigger,
        "status": r.status,
        "reason": r.status_reason,
        "error": r.error,
        "attempts": r.attempts,
        "superseded_by": r.superseded_by,
        "llm_provider_id": r.llm_provider_id,
        "model": r.model,
        "platform_review_id": r.platform_review_id,
        "timings": {
            "queued_at": rfc3339_millis(r.created_at_ms),
            "fetching_at": r.fetching_at_ms.map(rfc3339_millis),
            "indexing_at": r.indexing_at_ms.map(rfc3339_millis),
            "reviewing_at": r.reviewing_at_ms.map(rfc3339_millis),
            "commenting_at": r.commenting_at_ms.map(rfc3339_millis),
            "finished_at": r.finished_at_ms.map(rfc3339_millis),
            "queue_ms": span(Some(r.created_at_ms), r.fetching_at_ms.or(r.finished_at_ms)),
            "fetching_ms": span(r.fetching_at_ms, next(0)),
            "indexing_ms": span(r.indexing_at_ms, next(1)),
            "reviewing_ms": span(r.reviewing_at_ms, next(2)),
            "commenting_ms": span(r.commenting_at_ms, next(3)),
            "total_ms": span(Some(r.created_at_ms), r.finished_at_ms),
        },
        "counts": {
            "files_changed": r.files_changed,
            "files_reviewed": r.files_reviewed,
            "files_skipped": r.files_skipped,
            "chunks_indexed": r.chunks_indexed,
            "context_chunks": r.context_chunks,
            "embeddings_used": r.embeddings_used.map(|e| e != 0),
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "findings": r.findings_total,
            "findings_dropped": r.findings_dropped,
            "comments_posted": r.comments_posted,
            "comments_in_summary": r.comments_fallback,
        },
        "skipped_files": skipped_files,
    })
}

fn review_id(cx: &Cx<'_>) -> Result<String, ApiError> {
    let id = cx.param("review")?;
    if looks_like_id(id, "rev") {
        Ok(id.to_owned())
    } else {
        Err(ApiError::not_found("review"))
    }
}

async fn load(cx: &Cx<'_>, id: &str) -> Result<ReviewRow, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM reviews WHERE id = ? AND org_id = ?"),
            args![id, &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("review"))
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let mut sql = format!("SELECT {COLUMNS} FROM reviews WHERE org_id = ?");
    let mut vals: Vec<Val> = args![&cx.org()?.org_id];
    let mut limit = 50i64;
    let bad = |m: &str| ApiError::new(ErrorCode::InvalidQuery, m.to_owned());
    for (k, v) in cx.query()? {
        match k.as_str() {
            "status" if STATUSES.contains(&v.as_str()) => {
                sql.push_str(" AND status = ?");
                vals.push(v.into());
            }
            "status" => return Err(bad("status must be one of queued, fetching, indexing, reviewing, commenting, done, failed, skipped")),
            "integration" if looks_like_id(&v, "int") => {
                sql.push_str(" AND integration_id = ?");
                vals.push(v.into());
            }
            "pull_request" => {
                let n: i64 = v.parse().map_err(|_| bad("pull_request must be a number"))?;
                sql.push_str(" AND pr_number = ?");
                vals.push(n.into());
            }
            "cursor" if looks_like_id(&v, "rev") => {
                sql.push_str(" AND id < ?");
                vals.push(v.into());
            }
            "limit" => {
                limit = v.parse().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| bad("limit must be 1-100"))?;
            }
            "integration" | "cursor" => return Err(bad(&format!("{k} is not a valid id"))),
            _ => return Err(bad(&format!("unknown query parameter `{k}`"))),
        }
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    vals.push((limit + 1).into());
    let mut rows: Vec<ReviewRow> = cx.db().all(&sql, vals).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    respond::ok(
        &json!({"reviews": rows.into_iter().map(view).collect::<Vec<_>>(), "next_cursor": next}),
    )
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let row = load(cx, &review_id(cx)?).await?;
    respond::ok(&json!({"review": view(row)}))
}

/// Re-sends a review's job. A failed review starts over (a new attempt, e.g. after fixing the
/// provider key); any other review's message is sent as it was, which the worker's idempotency
/// makes harmless — the operator's way to nudge a review whose message was lost.
pub async fn requeue(cx: &mut Cx<'_>) -> HttpResult {
    let id = review_id(cx)?;
    let row = load(cx, &id).await?;
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let restart = row.status == "failed";
    let stmts = if restart {
        vec![Stmt::new(
            "UPDATE reviews SET status = 'queued', status_reason = NULL, error = NULL, attempts = 0, \
             lease_until_ms = NULL, finished_at_ms = NULL WHERE id = ? AND org_id = ? AND status = 'failed'",
            args![&id, &org_id],
        )]
    } else {
        vec![]
    };
    let event = cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "review.requeued",
        "review",
        &id,
        json!({"previous_status": row.status, "restarted": restart}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    let msg = ReviewQueueMessage::Review {
        org_id: org_id.clone(),
        review_id: id.clone(),
    };
    enqueue(cx, &msg).await?;
    let row = load(cx, &id).await?;
    respond::json(202, &json!({"review": view(row)}))
}
