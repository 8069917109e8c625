//! Webhook intake: `POST /hooks/{platform}/{integration}`.
//!
//! Order matters and is the point: look up the integration's secrets, read the raw body within
//! the limit, verify the signature over those exact bytes (401 on any failure, with nothing
//! parsed, stored or queued), and only then parse the event. A verified delivery is recorded
//! once per delivery id, and a review trigger starts one review per (repository, pull request,
//! head commit): both decided by the integration's `WebhookInbox` Durable Object, which records
//! the delivery durably before the answer (202 for a new review) and then writes D1 and enqueues
//! the job (ids only) from its outbox.

use edgeplane_core::ids::{looks_like_id, new_id};
use edgeplane_core::webhook::event::{classify, Disposition};
use edgeplane_core::webhook::inbox::{Delivery, Intent, Outcome};
use edgeplane_core::webhook::{
    bitbucket, github, gitlab, Headers, Platform, VerifiedWebhook, VerifyError,
};
use edgeplane_core::{ApiError, ErrorCode};
use serde_json::json;

use super::hook_secrets::{self, HookSecrets};
use crate::http::ctx::{now_ms, now_secs};
use crate::http::log;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;
use crate::rpc;

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
        Err(_) if cached && hook_secrets::worth_rereading(&id) => {
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
    let intent = if !hook.enabled {
        Intent::Ignore {
            reason: "integration_disabled".into(),
        }
    } else {
        match classify(&verified).map_err(|e| ApiError::validation(e.0))? {
            Disposition::Ignore(reason) => Intent::Ignore {
                reason: reason.to_owned(),
            },
            Disposition::Review(pr) => Intent::Review {
                review_id: new_id("rev", now)?,
                pr,
            },
        }
    };
    hand_to_inbox(cx, &id, &hook.org_id, &verified, intent, now).await
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

/// Hands a verified delivery to its integration's inbox: one Durable Object round trip, which
/// de-duplicates and durably records it; D1 and the review queue follow from the inbox's drain.
async fn hand_to_inbox(
    cx: &Cx<'_>,
    integration_id: &str,
    org_id: &str,
    w: &VerifiedWebhook,
    intent: Intent,
    now: i64,
) -> HttpResult {
    let delivery = Delivery {
        row_id: new_id("whd", now)?,
        org_id: org_id.to_owned(),
        integration_id: integration_id.to_owned(),
        platform: w.platform().as_str().to_owned(),
        delivery_id: w.delivery_id().to_owned(),
        event: w.event().to_owned(),
        secret_slot: w.slot().as_str().to_owned(),
        received_at_ms: now,
        intent,
    };
    let stub = cx
        .env
        .durable_object("WEBHOOK_INBOX")
        .and_then(|ns| ns.get_by_name(integration_id))
        .map_err(|e| {
            log::error("webhook inbox binding", &e.to_string());
            unavailable()
        })?;
    let outcome: Outcome = rpc::call(&stub, "/accept", &delivery).await.map_err(|e| {
        log::error("webhook inbox", &e.message);
        unavailable()
    })?;
    let id = w.delivery_id();
    match outcome {
        Outcome::Queued { review_id } => respond::json(
            202,
            &json!({"status": "queued", "delivery_id": id, "review_id": review_id}),
        ),
        Outcome::DuplicateHead { review_id } => respond::ok(
            &json!({"status": "duplicate_head", "delivery_id": id, "review_id": review_id}),
        ),
        Outcome::Ignored { reason } => {
            respond::ok(&json!({"status": "ignored", "reason": reason, "delivery_id": id}))
        }
        Outcome::Duplicate => respond::ok(&json!({"status": "duplicate", "delivery_id": id})),
    }
}

/// The platform retries a delivery that was not accepted; say when.
fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        "the delivery could not be recorded; retry",
    )
    .with_retry_after(5)
}
