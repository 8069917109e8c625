//! Invitations: `POST/GET …/invitations`, `DELETE …/invitations/{invitation}`,
//! `POST /v1/invitations/accept`.

use edgeplane_core::auth::Role;
use edgeplane_core::ids::{InvitationId, TypedId, UserId};
use edgeplane_core::{validate, ApiError, ErrorCode};
use serde::Deserialize;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::routes::identity::require_user;
use crate::service::access::invitations::{self, NewInvitation};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInvitation {
    email: String,
    role: String,
    #[serde(default)]
    ttl_hours: Option<u32>,
}

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateInvitation = cx.json().await?;
    let email = validate::email(&body.email)?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::validation("role must be one of owner, admin, member"))?;
    let created = invitations::create(
        cx,
        NewInvitation {
            email,
            role,
            ttl_hours: body.ttl_hours,
        },
    )
    .await?;
    respond::created(&created)
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let mut include_all = false;
    for (k, v) in cx.query()? {
        match (k.as_str(), v.as_str()) {
            ("status", "pending") => include_all = false,
            ("status", "all") => include_all = true,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    "the only query parameter is status=pending|all",
                ))
            }
        }
    }
    respond::ok(&invitations::list(cx, include_all).await?)
}

pub async fn revoke(cx: &mut Cx<'_>) -> HttpResult {
    let id: InvitationId = cx.id("invitation")?;
    invitations::revoke(cx, &id).await?;
    respond::no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Accept {
    token: String,
}

pub async fn accept(cx: &mut Cx<'_>) -> HttpResult {
    let body: Accept = cx.json().await?;
    let user = UserId::parse(require_user(&cx.principal)?.0).map_err(|_| ApiError::internal())?;
    respond::ok(&invitations::accept(cx, &user, &body.token).await?)
}
