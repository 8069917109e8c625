//! The edgeplane gateway Worker: every HTTP surface, the Durable Object classes, and cron.
//!
//! This crate is a thin shell. It parses requests, asks `edgeplane-core` for decisions, and binds
//! D1, Durable Objects, Queues and R2. See ARCHITECTURE.md for the request path.
#![forbid(unsafe_code)]

pub mod audit;
pub mod authn;
pub mod clients;
pub mod config;
pub mod cron;
pub mod cx;
pub mod durable;
pub mod http;
pub mod ratelimit;
pub mod routes;
pub mod rpc;
pub mod service;
pub mod storage;

use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

pub use durable::audit_sequencer::AuditSequencer;
pub use durable::rate_limiter::RateLimiter;
pub use durable::round_aggregator::RoundAggregator;
pub use durable::round_coordinator::RoundCoordinator;
pub use durable::webhook_inbox::WebhookInbox;

use http::log::{self, AccessLine};
use http::respond;
use http::RequestCtx;

/// One access line per request, whichever surface (API or console) answered it.
fn log_access(rc: &RequestCtx, method: &str, status: u16, error_code: Option<&str>) {
    log::access(&AccessLine {
        level: if status >= 500 { "error" } else { "info" },
        msg: "request",
        request_id: &rc.request_id,
        method,
        route: rc.route,
        status,
        duration_ms: http::ctx::now_ms() - rc.started_ms,
        principal: rc.principal_kind.as_str(),
        org_id: rc.org_id.as_deref(),
        error_code,
    });
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let mut rc = RequestCtx::new(&req);
    let method = rc.method.clone();
    // The web console answers HTML, with its own headers (CSP, caching of hashed assets).
    if routes::console::serves(&req.path()) {
        let resp = routes::console::dispatch(req, &env, &ctx, &mut rc).await;
        log_access(&rc, &method, resp.status_code(), None);
        return Ok(resp);
    }
    // OAuth clients expect RFC 6749 error bodies from the OAuth endpoints, for every failure.
    let oauth = req.path().starts_with("/oauth/");
    // SCIM clients (IdPs) expect RFC 7644 error bodies from /scim/v2, for every failure too.
    let scim = routes::scim::serves(&req.path());
    let (mut resp, error_code) = match routes::dispatch(req, &env, &ctx, &mut rc).await {
        Ok(resp) => (resp, None),
        Err(err) if oauth => (respond::oauth_error(&err), Some(err.code.as_str())),
        Err(err) if scim => (
            respond::scim_error(&err.clone().into()),
            Some(err.code.as_str()),
        ),
        Err(err) => (
            respond::error(&err, &rc.request_id),
            Some(err.code.as_str()),
        ),
    };
    respond::finish(&mut resp, &rc.request_id);
    log_access(&rc, &method, resp.status_code(), error_code);
    Ok(resp)
}

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    cron::run(&env, &event.cron()).await;
}
