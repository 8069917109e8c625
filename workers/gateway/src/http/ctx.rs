//! Per-request context: the id that ties a response, its log line and its audit records together.

use edgeplane_core::auth::PrincipalKind;
use worker::Request;

pub struct RequestCtx {
    pub request_id: String,
    pub started_ms: i64,
    pub method: String,
    pub route: &'static str,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub principal_kind: PrincipalKind,
    pub org_id: Option<String>,
}

pub use edgeplane_runtime::clock::{now_ms, now_secs};

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

impl RequestCtx {
    pub fn new(req: &Request) -> Self {
        let started_ms = now_ms();
        let rand = edgeplane_core::crypto::random_bytes::<8>()
            .map(hex::encode)
            .unwrap_or_default();
        Self {
            request_id: format!("req_{started_ms:012x}{rand}"),
            started_ms,
            // The raw method: `req.method()` turns one workers-rs does not know into GET.
            method: req.inner().method(),
            route: "unmatched",
            // Set by Cloudflare's edge; absent under a bare local runtime.
            ip: header(req, "cf-connecting-ip"),
            user_agent: header(req, "user-agent").map(|ua| ua.chars().take(256).collect()),
            principal_kind: PrincipalKind::Anonymous,
            org_id: None,
        }
    }
}
