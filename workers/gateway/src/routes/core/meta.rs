//! Service metadata: liveness, deep health, version, OpenAPI, JWKS.

use edgeplane_core::views::core::{
    CheckView, CronView, HealthChecks, HealthView, LivezView, VersionView,
};
use serde::Deserialize;
use worker::Response;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrInternal;

pub const OPENAPI: &str = include_str!("../../../../../openapi.json");

/// Shallow: the isolate runs and routes. For load balancers, and the benchmark floor.
pub fn livez() -> HttpResult {
    respond::ok(&LivezView {
        status: "ok".into(),
    })
}

fn check<T, E>(r: Result<T, E>, what: &str) -> CheckView {
    CheckView {
        ok: r.is_ok(),
        detail: r.is_err().then(|| what.to_owned()),
    }
}

#[derive(Deserialize)]
struct LastCron {
    finished_at_ms: Option<i64>,
}

/// Deep: really touches D1, a Durable Object, R2 and the queue binding (without enqueueing).
/// 200 when all pass, 503 with the same report when any fails.
pub async fn healthz(cx: &mut Cx<'_>) -> HttpResult {
    let d1 = cx
        .db()
        .first::<serde_json::Value>("SELECT 1 AS ok", args![])
        .await;
    let last_cron = cx
        .db()
        .first::<LastCron>(
            "SELECT finished_at_ms FROM cron_runs ORDER BY started_at_ms DESC LIMIT 1",
            args![],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.finished_at_ms);
    let durable = ping_durable_object(cx).await;
    let r2 = match cx.env.bucket("MODELS") {
        Ok(b) => b.head("__healthz").await.map(|_| ()),
        Err(e) => Err(e),
    };
    let queue = cx.env.queue("REVIEW_QUEUE").map(|_| ());

    let checks = HealthChecks {
        d1: check(d1, "D1 query failed"),
        durable_object: check(durable, "Durable Object did not answer"),
        r2: check(r2, "R2 head failed"),
        queue: check(queue, "queue binding missing"),
    };
    let all_ok = checks.all_ok();
    respond::json(
        if all_ok { 200 } else { 503 },
        &HealthView {
            status: if all_ok { "ok" } else { "degraded" }.into(),
            checks,
            cron: CronView {
                last_run_finished_at_ms: last_cron,
            },
        },
    )
}

async fn ping_durable_object(cx: &Cx<'_>) -> worker::Result<()> {
    let stub = cx
        .env
        .durable_object("RATE_LIMITER")?
        .get_by_name("__healthz")?;
    let resp = stub.fetch_with_str("https://rate-limiter/ping").await?;
    if resp.status_code() == 200 {
        Ok(())
    } else {
        Err(worker::Error::RustError(
            "durable object ping failed".into(),
        ))
    }
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
