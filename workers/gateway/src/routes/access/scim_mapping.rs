//! The SCIM group → role mapping: `GET/PUT /v1/orgs/{org}/scim/group-roles` (owners only).

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::scim::mapping;

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&mapping::get(cx).await?)
}

pub async fn put(cx: &mut Cx<'_>) -> HttpResult {
    let body = cx.json().await?;
    respond::ok(&mapping::put(cx, body).await?)
}
