//! Members and roles: `GET/PATCH/DELETE …/members[/{user}]`, `POST …/leave`.

use edgeplane_core::auth::Role;
use edgeplane_core::ids::UserId;
use edgeplane_core::views::access::MemberEnvelope;
use edgeplane_core::ApiError;
use serde::Deserialize;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::access::members;

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&members::list(cx).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRole {
    role: String,
}

pub async fn change_role(cx: &mut Cx<'_>) -> HttpResult {
    let body: ChangeRole = cx.json().await?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::validation("role must be one of owner, admin, member"))?;
    let user: UserId = cx.id("user")?;
    let member = members::change_role(cx, &user, role).await?;
    respond::ok(&MemberEnvelope { member })
}

pub async fn remove(cx: &mut Cx<'_>) -> HttpResult {
    let user: UserId = cx.id("user")?;
    members::remove(cx, &user).await?;
    respond::no_content()
}

pub async fn leave(cx: &mut Cx<'_>) -> HttpResult {
    members::leave(cx).await?;
    respond::no_content()
}
