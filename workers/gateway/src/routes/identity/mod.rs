//! Identity: sign-in (magic link, identity providers), sessions, users and their orgs, CLI tokens
//! (device-code grant). Each module is one surface; the decisions live in
//! `edgeplane_core::identity`.

mod dev;
mod device;
mod magic;
mod me;
pub(crate) mod providers;
mod sessions;

use edgeplane_core::auth::{Action, Principal, PrincipalKind};
use edgeplane_core::http::{BodyLimit, Method::*};
use edgeplane_core::identity::session::SessionKind;
use edgeplane_core::ApiError;
use serde::Deserialize;

use super::{route, Access, Cx, Route, RouteId};
use crate::http::respond::{self, HttpResult};
use crate::service::identity::{issue, limits, refresh, signin};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    RequestMagicLink,
    VerifyMagicLink,
    ListProviders,
    StartProvider,
    ProviderCallback,
    Refresh,
    SignOut,
    ListSessions,
    RevokeAllSessions,
    RevokeSession,
    GetMe,
    UpdateMe,
    ListOrgs,
    CreateOrg,
    OrgMe,
    DeviceAuthorization,
    Token,
    VerifyUserCode,
    ApproveUserCode,
    DenyUserCode,
    DevOutbox,
}

const fn r(id: Id) -> RouteId {
    RouteId::Identity(id)
}

const S: BodyLimit = BodyLimit::SMALL;
const N: BodyLimit = BodyLimit::NONE;

pub const ROUTES: &[Route] = &[
    route(
        r(Id::RequestMagicLink),
        Post,
        "/v1/auth/magic-link",
        S,
        Access::Public,
    ),
    route(
        r(Id::VerifyMagicLink),
        Post,
        "/v1/auth/magic-link/verify",
        S,
        Access::Public,
    ),
    route(
        r(Id::ListProviders),
        Get,
        "/v1/auth/providers",
        N,
        Access::Public,
    ),
    route(
        r(Id::StartProvider),
        Get,
        "/v1/auth/providers/{provider}/start",
        N,
        Access::Public,
    ),
    route(
        r(Id::ProviderCallback),
        Get,
        "/v1/auth/providers/{provider}/callback",
        N,
        Access::Public,
    ),
    route(r(Id::Refresh), Post, "/v1/auth/refresh", S, Access::Public),
    route(
        r(Id::SignOut),
        Post,
        "/v1/auth/sign-out",
        N,
        Access::Authenticated,
    ),
    route(
        r(Id::ListSessions),
        Get,
        "/v1/sessions",
        N,
        Access::Authenticated,
    ),
    route(
        r(Id::RevokeAllSessions),
        Delete,
        "/v1/sessions",
        N,
        Access::Authenticated,
    ),
    route(
        r(Id::RevokeSession),
        Delete,
        "/v1/sessions/{session}",
        N,
        Access::Authenticated,
    ),
    route(r(Id::GetMe), Get, "/v1/me", N, Access::Authenticated),
    route(r(Id::UpdateMe), Patch, "/v1/me", S, Access::Authenticated),
    route(r(Id::ListOrgs), Get, "/v1/orgs", N, Access::Authenticated),
    route(r(Id::CreateOrg), Post, "/v1/orgs", S, Access::Authenticated),
    route(
        r(Id::OrgMe),
        Get,
        "/v1/orgs/{org}/me",
        N,
        Access::Org(Action::ReadOrg),
    ),
    route(
        r(Id::DeviceAuthorization),
        Post,
        "/oauth/device_authorization",
        S,
        Access::SelfAuthenticated,
    ),
    route(
        r(Id::Token),
        Post,
        "/oauth/token",
        S,
        Access::SelfAuthenticated,
    ),
    route(
        r(Id::VerifyUserCode),
        Post,
        "/v1/device/verify",
        S,
        Access::Authenticated,
    ),
    route(
        r(Id::ApproveUserCode),
        Post,
        "/v1/device/approve",
        S,
        Access::Authenticated,
    ),
    route(
        r(Id::DenyUserCode),
        Post,
        "/v1/device/deny",
        S,
        Access::Authenticated,
    ),
    route(
        r(Id::DevOutbox),
        Get,
        "/v1/dev/outbox/{recipient}",
        N,
        Access::Public,
    ),
];

pub async fn handle(id: Id, cx: &mut Cx<'_>) -> HttpResult {
    match id {
        Id::RequestMagicLink => magic::request(cx).await,
        Id::VerifyMagicLink => magic::verify(cx).await,
        Id::ListProviders => providers::list(cx).await,
        Id::StartProvider => providers::start(cx).await,
        Id::ProviderCallback => providers::callback(cx).await,
        Id::Refresh => refresh_session(cx).await,
        Id::SignOut => sessions::sign_out(cx).await,
        Id::ListSessions => sessions::list(cx).await,
        Id::RevokeAllSessions => sessions::revoke_all(cx).await,
        Id::RevokeSession => sessions::revoke(cx).await,
        Id::GetMe => me::get_me(cx).await,
        Id::UpdateMe => me::update_me(cx).await,
        Id::ListOrgs => me::list_orgs(cx).await,
        Id::CreateOrg => me::create_org(cx).await,
        Id::OrgMe => me::org_me(cx).await,
        Id::DeviceAuthorization => device::authorize(cx).await,
        Id::Token => device::token(cx).await,
        Id::VerifyUserCode => device::verify(cx).await,
        Id::ApproveUserCode => device::approve(cx).await,
        Id::DenyUserCode => device::deny(cx).await,
        Id::DevOutbox => dev::outbox(cx).await,
    }
}

/// Routes only a signed-in person's own session may call (not API keys, CLI tokens or devices):
/// managing sessions, approving CLI tokens, creating orgs. Returns the user and session ids.
pub fn require_user(p: &Principal) -> Result<(&str, &str), ApiError> {
    match (p.kind, p.user_id.as_deref(), p.session_id.as_deref()) {
        (PrincipalKind::User, Some(user), Some(session)) => Ok((user, session)),
        _ => Err(ApiError::forbidden(
            "this route requires a signed-in user's session token",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

/// `POST /v1/auth/refresh`: rotates a web session's refresh token.
async fn refresh_session(cx: &mut Cx<'_>) -> HttpResult {
    let body: RefreshBody = cx.json().await?;
    limits::per_ip(cx, "refresh", limits::REFRESH_PER_IP).await?;
    let r = refresh::rotate(cx, &body.refresh_token, SessionKind::Web).await?;
    let user = signin::user_by_id(cx, &r.user_id).await?.view()?;
    respond::ok(&issue::session_body(r.issued, user)?)
}
