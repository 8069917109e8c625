//! Service metadata: liveness, deep health, version, OpenAPI, JWKS.

use edgeplane_core::views::core::{LivezView, VersionView};
use worker::Response;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use edgeplane_runtime::db::OrInternal;

pub const OPENAPI: &str = include_str!("../../../../../openapi.json");

/// Shallow: the isolate runs and routes. For load balancers, and the benchmark floor.
pub fn livez() -> HttpResult {
    respond::ok(&LivezView {
        status: "ok".into(),
    })
}

/// Deep: really touches D1, a Durable Object, R2 and the queue binding (without enqueueing).
/// 200 when all pass, 503 with the same report when any fails.
pub async fn healthz(cx: &mut Cx<'_>) -> HttpResult {
    let health = crate::service::core::health(cx).await;
    respond::json(if health.checks.all_ok() { 200 } else { 503 }, &health)
}

pub fn version(cx: &Cx<'_>) -> HttpResult {
    let git_sha = cx
        .env
        .var("GIT_SHA")
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty());
    respond::ok(&VersionView {
        name: "edgeplane".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        api: "v1".into(),
        git_sha,
        environment: cx.cfg.environment.clone(),
    })
}

/// `GET /v1/audit/checkpoint-key`: the public key of audit checkpoints.
pub fn checkpoint_key(cx: &Cx<'_>) -> HttpResult {
    respond::ok(&crate::service::core::checkpoint_key(cx)?)
}

pub fn openapi() -> HttpResult {
    let mut resp = Response::ok(OPENAPI).or_internal("openapi")?;
    let _ = resp.headers_mut().set("content-type", "application/json");
    Ok(resp)
}

pub fn jwks(cx: &Cx<'_>) -> HttpResult {
    let mut resp = respond::ok(&cx.cfg.jwt_keys.jwks())?;
    let _ = resp
        .headers_mut()
        .set("content-type", "application/jwk-set+json");
    Ok(resp)
}
