//! Webhook intake: `POST /hooks/{platform}/{integration}`.
//!
//! Order matters and is the point: look up the integration's secrets, read the raw body within
//! the limit, verify the signature over those exact bytes (401 on any failure, with nothing
//! parsed, stored or queued), and only then parse the event. A verified delivery is recorded
//! once per delivery id; a review trigger inserts one review per (repository, pull request,
//! head commit) and enqueues a message with ids only, answering 202 without waiting for work.

use edgeplane_core::ids::{looks_like_id, new_id};
use edgeplane_core::queue::ReviewQueueMessage;
use edgeplane_core::webhook::event::{classify, Disposition, PullRequestRef};
use edgeplane_core::webhook::{
    bitbucket, github, gitlab, Headers, Platform, VerifiedWebhook, VerifyError,
};
use edgeplane_core::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::json;

use super::hook_secrets::{self, HookSecrets};
use super::update::enqueue;
use crate::http::ctx::{now_ms, now_secs};
use crate::http::log;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;

fn not_found() -> ApiError {
    ApiError::not_found("webhook endpoint")
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidSignature,
        "the webhook signature is missing or does not verify",
    )
}

pub async fn receive(cx: &mut Cx<'_>, platform: Platform) -> HttpResult {
    let id = cx.param("integration")?.to_owned();
    if !looks_like_id(&id, "int") {
        return Err(not_found());
    }
    let (hook, cached) = hook_secrets::load(cx, &id, true)
        .await?
        .ok_or_else(not_found)?;
    if hook.platform != platform.as_str() {
        return Err(not_found());
    }
    let mut body = cx.raw_body().await?;
    let headers = wanted_headers(cx);
    let first = if cached {
        body.clone()
    } else {
        std::mem::take(&mut body)
    };
    let verified = match verify(&headers, &hook, platform, first) {
        Ok(v) => (v, hook),
        // Cached secrets may be stale (just rotated): re-read once before refusing.
        Err(_) if cached => {
            let (fresh, _) = hook_secrets::load(cx, &id, false)
                .await?
                .ok_or_else(not_found)?;
            if fresh.platform != platform.as_str() {
                return Err(not_found());
            }
            let v = verify(&headers, &fresh, platform, body).map_err(|e| refused(&id, e))?;
            (v, fresh)
        }
        Err(e) => return Err(refused(&id, e)),
    };
    let (verified, hook) = verified;
    let now = now_ms();
    if !hook.enabled {
        return record_ignored(
            cx,
            &id,
            &hook.org_id,
            &verified,
            "integration_disabled",
            now,
        )
        .await;
    }
    let disposition = classify(&verified).map_err(|e| ApiError::validation(e.0))?;
    match disposition {
        Disposition::Ignore(reason) => {
            record_ignored(cx, &id, &hook.org_id, &verified, reason, now).await
        }
        Disposition::Review(pr) => record_review(cx, &id, &hook.org_id, &verified, &pr, now).await,
    }
}

fn wanted_headers(cx: &Cx<'_>) -> Headers {
    let mut headers = Headers::new();
    for name in Headers::WANTED {
        if let Some(v) = cx.req.headers().get(name).ok().flatten() {
            headers.insert(name, &v);
        }
    }
    headers
}

fn refused(id: &str, e: VerifyError) -> ApiError {
    log::warn(
        "webhook refused",
        &format!("integration {id}: {}", e.as_str()),
    );
    unauthorized()
}

fn verify(
    headers: &Headers,
    hook: &HookSecrets,
    platform: Platform,
    body: Vec<u8>,
) -> Result<VerifiedWebhook, VerifyError> {
    let secrets = hook.secrets(now_ms()).ok_or(VerifyError::Mismatch)?;
    match platform {
        Platform::GitHub => github::verify(headers, body, &secrets),
        Platform::GitLab => gitlab::verify(headers, body, &secrets, now_secs()),
        Platform::Bitbucket => bitbucket::verify(headers, body, &secrets),
    }
}

fn delivery_insert(
    row_id: &str,
    org_id: &str,
    integration_id: &str,
    w: &VerifiedWebhook,
    outcome: &str,
    reason: Option<&str>,
    now: i64,
) -> Stmt {
    Stmt::new(
        "INSERT INTO webhook_deliveries (id, org_id, integration_id, delivery_id, event, outcome, reason, \
         review_id, secret_slot, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        args![row_id, org_id, integration_id, w.delivery_id(), w.event(), outcome, reason, w.slot().as_str(), now],
    )
}

fn duplicate(w: &VerifiedWebhook) -> HttpResult {
    respond::ok(&json!({"status": "duplicate", "delivery_id": w.delivery_id()}))
}

async fn record_ignored(
    cx: &Cx<'_>,
    integration_id: &str,
    org_id: &str,
    w: &VerifiedWebhook,
    reason: &str,
    now: i64,
) -> HttpResult {
    let row_id = new_id("whd", now)?;
    let stmt = delivery_insert(
        &row_id,
        org_id,
        integration_id,
        w,
        "ignored",
        Some(reason),
        now,
    );
    match cx.db().commit_audited(vec![stmt], vec![], now).await {
        Ok(_) => respond::ok(
            &json!({"status": "ignored", "reason": reason, "delivery_id": w.delivery_id()}),
        ),
        Err(e) if e.code == ErrorCode::AlreadyExists => duplicate(w),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct ExistingReview {
    id: String,
}

async fn record_review(
    cx: &Cx<'_>,
    integration_id: &str,
    org_id: &str,
    w: &VerifiedWebhook,
    pr: &PullRequestRef,
    now: i64,
) -> HttpResult {
    let review_id = new_id("rev", now)?;
    let row_id = new_id("whd", now)?;
    let number = pr.number as i64;
    let stmts = vec![
        // One review per head commit: a second trigger for the same head changes nothing.
        Stmt::new(
            "INSERT OR IGNORE INTO reviews (id, org_id, integration_id, platform, repo_id, repo_name, \
             pr_number, head_sha, base_sha, trigger, status, attempts, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?)",
            args![
                &review_id,
                org_id,
                integration_id,
                w.platform().as_str(),
                &pr.repo_id,
                &pr.repo_name,
                number,
                &pr.head_sha,
                pr.base_sha.clone(),
                pr.trigger.as_str(),
                now
            ],
        ),
        // The delivery, once (its unique key fails the whole batch on a redelivery).
        Stmt::new(
            "INSERT INTO webhook_deliveries (id, org_id, integration_id, delivery_id, event, outcome, reason, \
             review_id, secret_slot, received_at_ms) SELECT ?, ?, ?, ?, ?, \
             CASE WHEN EXISTS (SELECT 1 FROM reviews WHERE id = ?) THEN 'queued' ELSE 'duplicate_head' END, \
             NULL, (SELECT id FROM reviews WHERE integration_id = ? AND repo_id = ? AND pr_number = ? AND head_sha = ?), \
             ?, ?",
            args![
                &row_id,
                org_id,
                integration_id,
                w.delivery_id(),
                w.event(),
                &review_id,
                integration_id,
                &pr.repo_id,
                number,
                &pr.head_sha,
                w.slot().as_str(),
                now
            ],
        ),
        // A newer head supersedes older reviews of the same pull request that have not ended.
        Stmt::new(
            "UPDATE reviews SET status = 'skipped', status_reason = 'superseded', superseded_by = ?, \
             finished_at_ms = ?, lease_until_ms = NULL, work_sealed = NULL \
             WHERE integration_id = ? AND repo_id = ? AND pr_number = ? AND head_sha <> ? \
             AND status IN ('queued', 'fetching', 'indexing', 'reviewing', 'commenting') \
             AND EXISTS (SELECT 1 FROM reviews WHERE id = ?)",
            args![&review_id, now, integration_id, &pr.repo_id, number, &pr.head_sha, &review_id],
        ),
    ];
    let changes = match cx.db().commit_audited(stmts, vec![], now).await {
        Ok(c) => c,
        Err(e) if e.code == ErrorCode::AlreadyExists => return duplicate(w),
        Err(e) => return Err(e),
    };
    if changes.first().copied().unwrap_or(0) == 0 {
        let existing: Option<ExistingReview> = cx
            .db()
            .first(
                "SELECT id FROM reviews WHERE integration_id = ? AND repo_id = ? AND pr_number = ? AND head_sha = ?",
                args![integration_id, &pr.repo_id, number, &pr.head_sha],
            )
            .await?;
        return respond::ok(
            &json!({"status": "duplicate_head", "delivery_id": w.delivery_id(),
                                    "review_id": existing.map(|e| e.id)}),
        );
    }
    let msg = ReviewQueueMessage::Review {
        org_id: org_id.to_owned(),
        review_id: review_id.clone(),
    };
    if let Err(e) = enqueue(cx, &msg).await {
        // Undo, so the platform's retry of this delivery is not taken for a duplicate.
        let _ = cx
            .db()
            .batch_unaudited(vec![
                Stmt::new(
                    "DELETE FROM webhook_deliveries WHERE id = ?",
                    args![&row_id],
                ),
                Stmt::new(
                    "DELETE FROM reviews WHERE id = ? AND status = 'queued'",
                    args![&review_id],
                ),
            ])
            .await;
        return Err(e);
    }
    respond::json(
        202,
        &json!({"status": "queued", "delivery_id": w.delivery_id(), "review_id": review_id}),
    )
}
