//! First-run setup: creates the first organization, its owner and an owner API key.
//!
//! A fresh deployment has no users to sign in as and no keys to call the API with. The operator
//! sets the `SETUP_TOKEN` secret, calls this once, and gets an owner key; afterwards the endpoint
//! refuses (409) because an organization exists. `scripts/dev` uses it to seed the demo org.

use edgeplane_core::crypto::constant_time_eq;
use edgeplane_core::{validate, ApiError, ErrorCode};
use serde::Deserialize;

use crate::authn;
use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::core::{self, SetupRequest};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    org_name: String,
    #[serde(default)]
    org_slug: Option<String>,
    owner_email: String,
}

pub async fn setup(cx: &mut Cx<'_>) -> HttpResult {
    let Some(expected) = cx.cfg.setup_token.clone() else {
        return Err(ApiError::forbidden(
            "setup is disabled: SETUP_TOKEN is not configured",
        ));
    };
    let presented = authn::bearer(&cx.req)?
        .ok_or_else(|| ApiError::unauthenticated("setup requires the setup token as a bearer"))?;
    if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the setup token is not valid",
        ));
    }
    let body: SetupBody = cx.json().await?;
    let org_name = validate::display_name(&body.org_name, "org_name")?;
    let org_slug = body
        .org_slug
        .unwrap_or_else(|| validate::slugify(&org_name));
    validate::slug(&org_slug)?;
    let owner_email = validate::email(&body.owner_email)?;
    let view = core::setup(
        cx,
        SetupRequest {
            org_name,
            org_slug,
            owner_email,
        },
    )
    .await?;
    respond::created(&view)
}
