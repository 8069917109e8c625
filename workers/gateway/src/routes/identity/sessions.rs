//! A person's sessions and CLI tokens: `GET/DELETE /v1/sessions`, `DELETE /v1/sessions/{session}`,
//! `POST /v1/auth/sign-out`.

use edgeplane_core::auth::PrincipalKind;
use edgeplane_core::ids::{SessionId, TypedId};
use edgeplane_core::ApiError;

use super::require_user;
use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::identity::sessions;

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let (user, current) = require_user(&cx.principal)?;
    respond::ok(&sessions::list(cx, user, current).await?)
}

pub async fn revoke(cx: &mut Cx<'_>) -> HttpResult {
    let user = require_user(&cx.principal)?.0.to_owned();
    let id: SessionId = cx.id("session")?;
    sessions::revoke(cx, &user, &id, "revoked_by_user").await?;
    respond::no_content()
}

/// `POST /v1/auth/sign-out`: ends the session (or CLI token) the request authenticated with.
pub async fn sign_out(cx: &mut Cx<'_>) -> HttpResult {
    let refused = || ApiError::forbidden("only a session or CLI token can sign out");
    let p = &cx.principal;
    if !matches!(p.kind, PrincipalKind::User | PrincipalKind::CliToken) {
        return Err(refused());
    }
    let (Some(user), Some(sid)) = (p.user_id.clone(), p.session_id.as_deref()) else {
        return Err(refused());
    };
    let id = SessionId::parse(sid).map_err(|_| ApiError::internal())?;
    sessions::revoke(cx, &user, &id, "signed_out").await?;
    respond::no_content()
}

/// `DELETE /v1/sessions`: signs out everywhere — every session and CLI token of the caller.
pub async fn revoke_all(cx: &mut Cx<'_>) -> HttpResult {
    let user = require_user(&cx.principal)?.0.to_owned();
    respond::ok(&sessions::revoke_all(cx, &user, None).await?)
}
