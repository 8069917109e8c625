//! The signed-in person: `GET/PATCH /v1/me`, `GET/POST /v1/orgs`, `GET /v1/orgs/{org}/me`.

use edgeplane_core::validate;
use serde::Deserialize;

use super::require_user;
use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::identity::me;

pub async fn get_me(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&me::get_me(cx).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateMe {
    display_name: String,
}

pub async fn update_me(cx: &mut Cx<'_>) -> HttpResult {
    let user = require_user(&cx.principal)?.0.to_owned();
    let body: UpdateMe = cx.json().await?;
    let name = validate::display_name(&body.display_name, "display_name")?;
    respond::ok(&me::update_me(cx, &user, &name).await?)
}

pub async fn list_orgs(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&me::list_orgs(cx).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrg {
    name: String,
    #[serde(default)]
    slug: Option<String>,
}

pub async fn create_org(cx: &mut Cx<'_>) -> HttpResult {
    let user = require_user(&cx.principal)?.0.to_owned();
    let body: CreateOrg = cx.json().await?;
    respond::created(&me::create_org(cx, &user, &body.name, body.slug.as_deref()).await?)
}

pub async fn org_me(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&me::org_me(cx)?)
}
