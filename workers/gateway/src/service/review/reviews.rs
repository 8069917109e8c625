//! Review status: what the pipeline did with each pull request head, with timings and counts.

use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::ids::{IntegrationId, ProviderId, ReviewId, TypedId};
use edgeplane_core::queue::ReviewQueueMessage;
use edgeplane_core::review::diff::Side;
use edgeplane_core::review::git_platform::Platform;
use edgeplane_core::review::status::{CommentState, ReviewStatus};
use edgeplane_core::views::review::{
    PhaseStamps, RepositoryRef, ReviewCounts, ReviewFinding, ReviewList, ReviewView, SkippedFile,
};
use edgeplane_core::webhook::event::Trigger;
use edgeplane_core::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::json;

use super::update::enqueue;
use crate::cx::Cx;
use crate::http::log;
use edgeplane_runtime::args;
use edgeplane_runtime::db::{OrgBatch, Val};

#[derive(Deserialize)]
struct ReviewRow {
    id: ReviewId,
    integration_id: IntegrationId,
    platform: Platform,
    repo_id: String,
    repo_name: String,
    pr_number: u64,
    head_sha: String,
    base_sha: Option<String>,
    trigger: Trigger,
    status: ReviewStatus,
    status_reason: Option<String>,
    error: Option<String>,
    attempts: u32,
    superseded_by: Option<ReviewId>,
    llm_provider_id: Option<ProviderId>,
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

fn view(r: ReviewRow) -> Result<ReviewView, ApiError> {
    // Written by the review worker from typed values: unreadable means a bug, never `[]`.
    let skipped_files: Vec<SkippedFile> = match r.skipped_files.as_deref() {
        None => Vec::new(),
        Some(s) => serde_json::from_str(s).map_err(|e| {
            log::error("review skipped_files", &format!("{}: {e}", r.id));
            ApiError::internal()
        })?,
    };
    Ok(ReviewView {
        timings: PhaseStamps {
            created: r.created_at_ms,
            fetching: r.fetching_at_ms,
            indexing: r.indexing_at_ms,
            reviewing: r.reviewing_at_ms,
            commenting: r.commenting_at_ms,
            finished: r.finished_at_ms,
        }
        .into(),
        counts: ReviewCounts {
            files_changed: r.files_changed,
            files_reviewed: r.files_reviewed,
            files_skipped: r.files_skipped,
            chunks_indexed: r.chunks_indexed,
            context_chunks: r.context_chunks,
            embeddings_used: r.embeddings_used.map(|e| e != 0),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            findings: r.findings_total,
            findings_dropped: r.findings_dropped,
            comments_posted: r.comments_posted,
            comments_in_summary: r.comments_fallback,
        },
        id: r.id,
        integration_id: r.integration_id,
        platform: r.platform,
        repository: RepositoryRef {
            id: r.repo_id,
            name: r.repo_name,
        },
        pull_request: r.pr_number,
        head_sha: r.head_sha,
        base_sha: r.base_sha,
        trigger: r.trigger,
        status: r.status,
        reason: r.status_reason,
        error: r.error,
        attempts: r.attempts,
        superseded_by: r.superseded_by,
        llm_provider_id: r.llm_provider_id,
        model: r.model,
        platform_review_id: r.platform_review_id,
        skipped_files,
    })
}

async fn load(cx: &Cx<'_>, id: &ReviewId) -> Result<ReviewRow, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM reviews WHERE id = ? AND org_id = ?"),
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("review"))
}

/// Which reviews to list, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewFilter {
    pub status: Option<ReviewStatus>,
    pub integration: Option<IntegrationId>,
    pub pull_request: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<ReviewId>,
    /// 1 to 100.
    pub limit: u32,
}

impl Default for ReviewFilter {
    fn default() -> Self {
        Self {
            status: None,
            integration: None,
            pull_request: None,
            cursor: None,
            limit: 50,
        }
    }
}

impl ReviewFilter {
    /// From a query string's pairs. Unknown parameters are refused: a typo in a filter must not
    /// silently widen a listing.
    pub fn from_query(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::new(ErrorCode::InvalidQuery, m);
        let mut f = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "status" => {
                    f.status = Some(ReviewStatus::parse(&v).ok_or_else(|| {
                        bad(format!("status must be one of {}", ReviewStatus::names()))
                    })?)
                }
                "integration" => {
                    f.integration = Some(
                        IntegrationId::parse(&v)
                            .map_err(|_| bad(format!("{k} is not a valid id")))?,
                    )
                }
                "cursor" => {
                    f.cursor = Some(
                        ReviewId::parse(&v).map_err(|_| bad(format!("{k} is not a valid id")))?,
                    )
                }
                "pull_request" => {
                    f.pull_request = Some(
                        v.parse()
                            .map_err(|_| bad("pull_request must be a number".into()))?,
                    )
                }
                "limit" => {
                    f.limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| bad("limit must be 1-100".into()))?
                }
                _ => return Err(bad(format!("unknown query parameter `{k}`"))),
            }
        }
        Ok(f)
    }
}

pub async fn list(cx: &Cx<'_>, f: &ReviewFilter) -> Result<ReviewList, ApiError> {
    let mut sql = format!("SELECT {COLUMNS} FROM reviews WHERE org_id = ?");
    let mut vals: Vec<Val> = args![&cx.org()?.org_id];
    if let Some(s) = f.status {
        sql.push_str(" AND status = ?");
        vals.push(s.as_str().into());
    }
    if let Some(i) = &f.integration {
        sql.push_str(" AND integration_id = ?");
        vals.push(i.as_str().into());
    }
    if let Some(n) = f.pull_request {
        sql.push_str(" AND pr_number = ?");
        vals.push(Val::Int(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    if let Some(c) = &f.cursor {
        sql.push_str(" AND id < ?");
        vals.push(c.as_str().into());
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    let limit = f.limit as usize;
    vals.push(Val::Int(limit as i64 + 1));
    let mut rows: Vec<ReviewRow> = cx.db().all(&sql, vals).await?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(ReviewList {
        reviews: rows.into_iter().map(view).collect::<Result<_, _>>()?,
        next_cursor,
    })
}

pub async fn get(cx: &Cx<'_>, id: &ReviewId) -> Result<ReviewView, ApiError> {
    view(load(cx, id).await?)
}

#[derive(Deserialize)]
struct FindingRow {
    path: String,
    line: u32,
    side: String,
    state: CommentState,
}

/// The findings review `id` placed on its pull request, in the order it placed them.
pub async fn findings(cx: &Cx<'_>, id: &ReviewId) -> Result<Vec<ReviewFinding>, ApiError> {
    load(cx, id).await?;
    let rows: Vec<FindingRow> = cx
        .db()
        .all(
            "SELECT path, line, side, state FROM review_comments WHERE review_id = ? \
             ORDER BY idx LIMIT 1000",
            args![id.as_str()],
        )
        .await?;
    rows.into_iter()
        .map(|r| {
            // Written by the review worker from `Side::as_str`: anything else is a bug.
            let side = Side::parse(&r.side).ok_or_else(|| {
                log::error("review_comments side", &format!("{id}: {}", r.side));
                ApiError::internal()
            })?;
            Ok(ReviewFinding {
                path: r.path,
                line: r.line,
                side,
                state: r.state,
            })
        })
        .collect()
}

/// Re-sends a review's job. A failed review starts over (a new attempt, e.g. after fixing the
/// provider key); any other review's message is sent as it was, which the worker's idempotency
/// makes harmless — the operator's way to nudge a review whose message was lost.
pub async fn requeue(cx: &Cx<'_>, id: &ReviewId) -> Result<ReviewView, ApiError> {
    let row = load(cx, id).await?;
    let org_id = cx.org()?.org_id.clone();
    let restart = row.status == ReviewStatus::Failed;
    let mut batch = OrgBatch::new(&org_id);
    if restart {
        batch = batch.update(
            "reviews",
            "status = 'queued', status_reason = NULL, error = NULL, attempts = 0, \
             lease_until_ms = NULL, finished_at_ms = NULL",
            args![],
            "id = ? AND status = 'failed'",
            args![id.as_str()],
        );
    }
    let event = Event::new(AuditAction::ReviewRequeued, "review", id.as_str())
        .meta(json!({"previous_status": row.status, "restarted": restart}));
    cx.commit(batch, [event]).await?;
    let msg = ReviewQueueMessage::Review {
        org_id: org_id.clone(),
        review_id: id.to_string(),
    };
    enqueue(cx, &msg).await?;
    view(load(cx, id).await?)
}
