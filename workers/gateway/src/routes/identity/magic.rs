//! Magic-link sign-in: `POST /v1/auth/magic-link` sends a link (the same answer for every
//! address: no account enumeration), `POST /v1/auth/magic-link/verify` spends it for a session.

use edgeplane_core::validate;
use serde::Deserialize;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::identity::magic;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestLink {
    email: String,
}

pub async fn request(cx: &mut Cx<'_>) -> HttpResult {
    let body: RequestLink = cx.json().await?;
    let email = validate::email(&body.email)?;
    respond::json(202, &magic::request(cx, &email).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyLink {
    token: String,
}

pub async fn verify(cx: &mut Cx<'_>) -> HttpResult {
    let body: VerifyLink = cx.json().await?;
    respond::ok(&magic::verify(cx, &body.token).await?)
}
