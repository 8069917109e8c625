//! Core routes: service metadata, first-run setup, organizations, diagnostics.

pub mod diagnostics;
pub mod meta;
pub mod orgs;
pub mod setup;

use edgeplane_core::auth::Action;
use edgeplane_core::http::{BodyLimit, Method::*};

use super::{route, Access, Cx, Route, RouteId};
use crate::http::respond::HttpResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Livez,
    Healthz,
    Version,
    OpenApi,
    Jwks,
    AuditCheckpointKey,
    Setup,
    GetOrg,
    SetAuditRetention,
    CreateQueueProbe,
    GetQueueProbe,
}

const fn r(id: Id) -> RouteId {
    RouteId::Core(id)
}

pub const ROUTES: &[Route] = &[
    route(r(Id::Livez), Get, "/livez", BodyLimit::NONE, Access::Public),
    route(
        r(Id::Healthz),
        Get,
        "/healthz",
        BodyLimit::NONE,
        Access::Public,
    ),
    route(
        r(Id::Version),
        Get,
        "/v1/version",
        BodyLimit::NONE,
        Access::Public,
    ),
    route(
        r(Id::OpenApi),
        Get,
        "/openapi.json",
        BodyLimit::NONE,
        Access::Public,
    ),
    route(
        r(Id::Jwks),
        Get,
        "/.well-known/jwks.json",
        BodyLimit::NONE,
        Access::Public,
    ),
    route(
        r(Id::AuditCheckpointKey),
        Get,
        "/v1/audit/checkpoint-key",
        BodyLimit::NONE,
        Access::Public,
    ),
    route(
        r(Id::Setup),
        Post,
        "/v1/setup",
        BodyLimit::SMALL,
        Access::SelfAuthenticated,
    ),
    route(
        r(Id::GetOrg),
        Get,
        "/v1/orgs/{org}",
        BodyLimit::NONE,
        Access::Org(Action::ReadOrg),
    ),
    // Owners only: a shorter retention deletes audit evidence sooner.
    route(
        r(Id::SetAuditRetention),
        Put,
        "/v1/orgs/{org}/audit-retention",
        BodyLimit::SMALL,
        Access::Org(Action::ManageAuditRetention),
    ),
    route(
        r(Id::CreateQueueProbe),
        Post,
        "/v1/orgs/{org}/diagnostics/queue-probes",
        BodyLimit::SMALL,
        Access::Org(Action::ManageOrg),
    ),
    route(
        r(Id::GetQueueProbe),
        Get,
        "/v1/orgs/{org}/diagnostics/queue-probes/{probe}",
        BodyLimit::NONE,
        Access::Org(Action::ManageOrg),
    ),
];

pub async fn handle(id: Id, cx: &mut Cx<'_>) -> HttpResult {
    match id {
        Id::Livez => meta::livez(),
        Id::Healthz => meta::healthz(cx).await,
        Id::Version => meta::version(cx),
        Id::OpenApi => meta::openapi(),
        Id::Jwks => meta::jwks(cx),
        Id::AuditCheckpointKey => meta::checkpoint_key(cx),
        Id::Setup => setup::setup(cx).await,
        Id::GetOrg => orgs::get(cx).await,
        Id::SetAuditRetention => orgs::set_audit_retention(cx).await,
        Id::CreateQueueProbe => diagnostics::create_queue_probe(cx).await,
        Id::GetQueueProbe => diagnostics::get_queue_probe(cx).await,
    }
}
