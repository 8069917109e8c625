//! Per-request context: the id that ties a response, its log line and its audit records together.

use edgeplane_core::audit::{Actor, NewEvent, PLATFORM_CHAIN};
use edgeplane_core::auth::{Principal, PrincipalKind};
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

    /// An audit event attributed to `principal`, stamped with this request's facts. (The
    /// routes that commit through `Cx::commit` describe events with `audit::Event` instead;
    /// this form remains for callers of `Db::commit_audited`.)
    pub fn audit(
        &self,
        principal: &Principal,
        org_id: Option<&str>,
        action: &str,
        resource_type: &str,
        resource_id: &str,
        metadata: serde_json::Value,
    ) -> NewEvent {
        self.audit_as(
            Actor::of(principal),
            org_id,
            action,
            resource_type,
            resource_id,
            metadata,
        )
    }

    pub fn audit_as(
        &self,
        actor: Actor,
        org_id: Option<&str>,
        action: &str,
        resource_type: &str,
        resource_id: &str,
        metadata: serde_json::Value,
    ) -> NewEvent {
        NewEvent {
            chain: org_id.unwrap_or(PLATFORM_CHAIN).to_owned(),
            org_id: org_id.map(str::to_owned),
            actor,
            action: action.into(),
            resource_type: resource_type.into(),
            resource_id: resource_id.into(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: Some(self.request_id.clone()),
            metadata,
        }
    }
}
