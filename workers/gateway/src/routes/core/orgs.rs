//! Organizations (tenants): `GET /v1/orgs/{org}`.

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::core;

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&core::get_org(cx).await?)
}
