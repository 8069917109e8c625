//! Webhook intake: `POST /hooks/{platform}/{integration}`.
//!
//! Order matters and is the point: look up the integration's secrets, read the raw body within
//! the limit, verify the signature over those exact bytes (401 on any failure, with nothing
//! parsed, stored or queued), and only then decode and classify the event. An id that names no
//! integration on this platform is verified against a decoy secret and refused with the very
//! same 401, so the endpoint does not tell which integrations exist. A verified delivery is
//! recorded once per delivery id — and once per body where the platform's authenticator does not
//! cover the id — and a review trigger starts one review per (repository, pull request, head
//! commit): all decided by the integration's `WebhookInbox` Durable Object, which records the
//! delivery durably before the answer and then writes D1 and enqueues the job (ids only).

use edgeplane_core::ids::{DeliveryRowId, IntegrationId, ReviewId, TypedId};
use edgeplane_core::review::git_platform::Platform;
use edgeplane_core::views::review::HookAnswer;
use edgeplane_core::webhook::event::{classify, Disposition};
use edgeplane_core::webhook::inbox::{Delivery, Intent, Outcome};
use edgeplane_core::webhook::{self, Headers, Refused, VerifiedWebhook, VerifyError};
use edgeplane_core::{ApiError, ErrorCode};

use super::hook_secrets::{self, HookSecrets, Owner};
use crate::cx::Cx;
use crate::http::ctx::{now_ms, now_secs};
use crate::http::log;
use crate::rpc;

/// The one refusal for every delivery that does not verify, whatever the reason — including an
/// integration that does not exist.
fn refused_answer(id: Option<&IntegrationId>, e: VerifyError) -> ApiError {
    log::warn(
        "webhook refused",
        &format!(
            "integration {}: {}",
            id.map_or("(not an id)", IntegrationId::as_str),
            e.as_str()
        ),
    );
    ApiError::new(
        ErrorCode::InvalidSignature,
        "the webhook signature is missing or does not verify",
    )
}

/// Receives one delivery for `platform`; `segment` is the path's integration id as given.
pub async fn receive(
    cx: &mut Cx<'_>,
    platform: Platform,
    segment: &str,
) -> Result<HookAnswer, ApiError> {
    let id = IntegrationId::parse(segment).ok();
    let (hook, cached) = hook_secrets::load(cx, id.as_ref(), true).await?;
    // The body is read once and never copied: a refusal hands it back for the re-check below.
    let body = cx.raw_body().await?;
    let headers = wanted_headers(cx);
    let (verified, hook) = match verify(&headers, &hook, platform, body) {
        Ok(v) => (v, hook),
        // Cached secrets may be stale (just rotated, or the integration just created): re-read
        // once before refusing.
        Err(refused) if cached && hook_secrets::worth_rereading(id.as_ref()) => {
            let (fresh, _) = hook_secrets::load(cx, id.as_ref(), false).await?;
            let v = verify(&headers, &fresh, platform, refused.body)
                .map_err(|r| refused_answer(id.as_ref(), r.error))?;
            (v, fresh)
        }
        Err(r) => return Err(refused_answer(id.as_ref(), r.error)),
    };
    // Verified with an owner's secret, so both are present; without them it was the decoy,
    // which no sender holds.
    let (Some(id), Some(owner)) = (id, hook.owner_on(platform).cloned()) else {
        return Err(refused_answer(None, VerifyError::Mismatch));
    };
    let now = now_ms();
    let intent = if !owner.enabled {
        Intent::Ignore {
            reason: "integration_disabled".into(),
        }
    } else {
        match classify(&verified).map_err(|e| ApiError::validation(e.0))? {
            Disposition::Ignore(reason) => Intent::Ignore {
                reason: reason.to_owned(),
            },
            Disposition::Review(pr) => Intent::Review {
                review_id: ReviewId::generate(now)?,
                pr,
            },
        }
    };
    hand_to_inbox(cx, id, owner, &verified, intent, now).await
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

fn verify(
    headers: &Headers,
    hook: &HookSecrets,
    platform: Platform,
    body: Vec<u8>,
) -> Result<VerifiedWebhook, Refused> {
    webhook::verify(
        platform,
        headers,
        body,
        &hook.secrets(platform, now_ms()),
        now_secs(),
    )
}

/// Hands a verified delivery to its integration's inbox: one Durable Object round trip, which
/// de-duplicates and durably records it; D1 and the review queue follow from the inbox's drain.
async fn hand_to_inbox(
    cx: &Cx<'_>,
    integration_id: IntegrationId,
    owner: Owner,
    w: &VerifiedWebhook,
    intent: Intent,
    now: i64,
) -> Result<HookAnswer, ApiError> {
    let delivery = Delivery {
        row_id: DeliveryRowId::generate(now)?,
        org_id: owner.org_id,
        integration_id,
        platform: w.platform(),
        delivery_id: w.delivery_id().to_owned(),
        event: w.event().to_owned(),
        secret_slot: w.slot(),
        received_at_ms: now,
        intent,
        replay_key: w.replay_key(),
    };
    let stub = cx
        .env
        .durable_object("WEBHOOK_INBOX")
        .and_then(|ns| ns.get_by_name(delivery.integration_id.as_str()))
        .map_err(|e| {
            log::error("webhook inbox binding", &e.to_string());
            unavailable()
        })?;
    let outcome: Outcome = rpc::call(&stub, "/accept", &delivery).await.map_err(|e| {
        log::error("webhook inbox", &e.message);
        unavailable()
    })?;
    let delivery_id = delivery.delivery_id;
    Ok(match outcome {
        Outcome::Queued { review_id } => HookAnswer::Queued {
            delivery_id,
            review_id,
        },
        Outcome::DuplicateHead { review_id } => HookAnswer::DuplicateHead {
            delivery_id,
            review_id,
        },
        Outcome::Ignored { reason } => HookAnswer::Ignored {
            reason,
            delivery_id,
        },
        Outcome::Duplicate => HookAnswer::Duplicate { delivery_id },
    })
}

/// The platform retries a delivery that was not accepted; say when.
fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        "the delivery could not be recorded; retry",
    )
    .with_retry_after(5)
}
