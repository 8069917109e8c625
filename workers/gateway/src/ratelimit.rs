//! Asking the `RateLimiter` Durable Object whether a keyed action may proceed.

use edgeplane_core::ratelimit::{Decision, Limit};
use edgeplane_core::{ApiError, ErrorCode};
use worker::{Env, Method, Request, RequestInit};

use crate::durable::rate_limiter::CheckRequest;
use edgeplane_runtime::db::OrInternal;

/// Takes `cost` from the bucket named `key`; 429 with `Retry-After` when it is empty.
pub async fn check(env: &Env, key: &str, limit: Limit, cost: u32) -> Result<(), ApiError> {
    let stub = env
        .durable_object("RATE_LIMITER")
        .or_internal("rate limiter binding")?
        .get_by_name(key)
        .or_internal("rate limiter stub")?;
    let body =
        serde_json::to_string(&CheckRequest { limit, cost }).map_err(|_| ApiError::internal())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let req = Request::new_with_init("https://rate-limiter/check", &init)
        .or_internal("rate limiter request")?;
    let mut resp = stub
        .fetch_with_request(req)
        .await
        .or_internal("rate limiter fetch")?;
    let decision: Decision = resp.json().await.or_internal("rate limiter decision")?;
    if decision.allowed {
        Ok(())
    } else {
        Err(
            ApiError::new(ErrorCode::RateLimited, "too many requests; slow down")
                .with_retry_after(decision.retry_after_seconds),
        )
    }
}
