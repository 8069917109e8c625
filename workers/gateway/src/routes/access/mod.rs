//! Organization access administration: members and roles, invitations, API keys, the audit log.
//! Sign-in, sessions and CLI tokens live in `identity`; this area governs who belongs to an org
//! and with what.

mod api_keys;
mod audit;
mod invitations;
mod members;
mod scim_mapping;

use edgeplane_core::auth::Action;
use edgeplane_core::http::{BodyLimit, Method::*};

use super::{route, Access, Cx, Route, RouteId};
use crate::http::respond::HttpResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    ListMembers,
    ChangeRole,
    RemoveMember,
    Leave,
    CreateInvitation,
    ListInvitations,
    RevokeInvitation,
    AcceptInvitation,
    ListApiKeys,
    CreateApiKey,
    RotateApiKey,
    RevokeApiKey,
    ListAuditEvents,
    VerifyAuditChain,
    ExportAuditEvents,
    CreateAuditExportJob,
    GetAuditExportJob,
    DownloadAuditExport,
    GetScimGroupRoles,
    PutScimGroupRoles,
}

const fn r(id: Id) -> RouteId {
    RouteId::Access(id)
}

const MEMBERS: &str = "/v1/orgs/{org}/members";
const MEMBER: &str = "/v1/orgs/{org}/members/{user}";
const INVITATIONS: &str = "/v1/orgs/{org}/invitations";
const INVITATION: &str = "/v1/orgs/{org}/invitations/{invitation}";
const KEYS: &str = "/v1/orgs/{org}/api-keys";
const KEY: &str = "/v1/orgs/{org}/api-keys/{key}";
const SCIM_GROUP_ROLES: &str = "/v1/orgs/{org}/scim/group-roles";
const KEY_ROTATE: &str = "/v1/orgs/{org}/api-keys/{key}/rotate";

pub const ROUTES: &[Route] = &[
    route(
        r(Id::ListMembers),
        Get,
        MEMBERS,
        BodyLimit::NONE,
        Access::Org(Action::ReadMembers),
    ),
    route(
        r(Id::ChangeRole),
        Patch,
        MEMBER,
        BodyLimit::SMALL,
        Access::Org(Action::ManageMembers),
    ),
    route(
        r(Id::RemoveMember),
        Delete,
        MEMBER,
        BodyLimit::NONE,
        Access::Org(Action::ManageMembers),
    ),
    route(
        r(Id::Leave),
        Post,
        "/v1/orgs/{org}/leave",
        BodyLimit::NONE,
        Access::Org(Action::ReadOrg),
    ),
    route(
        r(Id::CreateInvitation),
        Post,
        INVITATIONS,
        BodyLimit::SMALL,
        Access::Org(Action::ManageMembers),
    ),
    route(
        r(Id::ListInvitations),
        Get,
        INVITATIONS,
        BodyLimit::NONE,
        Access::Org(Action::ReadMembers),
    ),
    route(
        r(Id::RevokeInvitation),
        Delete,
        INVITATION,
        BodyLimit::NONE,
        Access::Org(Action::ManageMembers),
    ),
    route(
        r(Id::AcceptInvitation),
        Post,
        "/v1/invitations/accept",
        BodyLimit::SMALL,
        Access::Authenticated,
    ),
    route(
        r(Id::ListApiKeys),
        Get,
        KEYS,
        BodyLimit::NONE,
        Access::Org(Action::ReadApiKeys),
    ),
    route(
        r(Id::CreateApiKey),
        Post,
        KEYS,
        BodyLimit::SMALL,
        Access::Org(Action::ManageApiKeys),
    ),
    route(
        r(Id::RotateApiKey),
        Post,
        KEY_ROTATE,
        BodyLimit::SMALL,
        Access::Org(Action::ManageApiKeys),
    ),
    route(
        r(Id::RevokeApiKey),
        Delete,
        KEY,
        BodyLimit::NONE,
        Access::Org(Action::ManageApiKeys),
    ),
    route(
        r(Id::ListAuditEvents),
        Get,
        "/v1/orgs/{org}/audit-events",
        BodyLimit::NONE,
        Access::Org(Action::ReadAudit),
    ),
    route(
        r(Id::VerifyAuditChain),
        Get,
        "/v1/orgs/{org}/audit-events/verify",
        BodyLimit::NONE,
        Access::Org(Action::ReadAudit),
    ),
    // Owners and admins (and keys with audit:read): the whole chain, streamed.
    route(
        r(Id::ExportAuditEvents),
        Get,
        "/v1/orgs/{org}/audit-events/export",
        BodyLimit::NONE,
        Access::Org(Action::ReadAudit),
    ),
    // The same rule as the streaming export: a job is an export, written to R2 by the cron.
    route(
        r(Id::CreateAuditExportJob),
        Post,
        "/v1/orgs/{org}/audit-events/export-jobs",
        BodyLimit::SMALL,
        Access::Org(Action::ReadAudit),
    ),
    route(
        r(Id::GetAuditExportJob),
        Get,
        "/v1/orgs/{org}/audit-events/export-jobs/{job}",
        BodyLimit::NONE,
        Access::Org(Action::ReadAudit),
    ),
    // The signed link is the authority (like a presigned object-store URL): no bearer needed.
    route(
        r(Id::DownloadAuditExport),
        Get,
        "/v1/audit-export-jobs/{job}/download",
        BodyLimit::NONE,
        Access::SelfAuthenticated,
    ),
    // Owners only: the mapping decides which IdP groups make admins.
    route(
        r(Id::GetScimGroupRoles),
        Get,
        SCIM_GROUP_ROLES,
        BodyLimit::NONE,
        Access::Org(Action::ManageScimMapping),
    ),
    route(
        r(Id::PutScimGroupRoles),
        Put,
        SCIM_GROUP_ROLES,
        BodyLimit::SMALL,
        Access::Org(Action::ManageScimMapping),
    ),
];

pub async fn handle(id: Id, cx: &mut Cx<'_>) -> HttpResult {
    match id {
        Id::ListMembers => members::list(cx).await,
        Id::ChangeRole => members::change_role(cx).await,
        Id::RemoveMember => members::remove(cx).await,
        Id::Leave => members::leave(cx).await,
        Id::CreateInvitation => invitations::create(cx).await,
        Id::ListInvitations => invitations::list(cx).await,
        Id::RevokeInvitation => invitations::revoke(cx).await,
        Id::AcceptInvitation => invitations::accept(cx).await,
        Id::ListApiKeys => api_keys::list(cx).await,
        Id::CreateApiKey => api_keys::create(cx).await,
        Id::RotateApiKey => api_keys::rotate(cx).await,
        Id::RevokeApiKey => api_keys::revoke(cx).await,
        Id::ListAuditEvents => audit::list(cx).await,
        Id::VerifyAuditChain => audit::verify(cx).await,
        Id::ExportAuditEvents => audit::export(cx).await,
        Id::CreateAuditExportJob => audit::create_job(cx).await,
        Id::GetAuditExportJob => audit::get_job(cx).await,
        Id::DownloadAuditExport => audit::download_job(cx).await,
        Id::GetScimGroupRoles => scim_mapping::get(cx).await,
        Id::PutScimGroupRoles => scim_mapping::put(cx).await,
    }
}
