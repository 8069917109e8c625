//! CLI tokens through the OAuth 2.0 Device Authorization Grant (RFC 8628).
//!
//! `POST /oauth/device_authorization` starts one; the person enters the user code on the web app,
//! which looks it up (`POST /v1/device/verify`) and approves it for one org
//! (`POST /v1/device/approve`) or denies it (`POST /v1/device/deny`); the CLI polls
//! `POST /oauth/token` until it gets its org-bound token. `/oauth/*` take form bodies and answer
//! RFC 6749 errors (rendered in `lib.rs`); unrecognized parameters are ignored, as RFC 6749 §3.1
//! requires.

use edgeplane_core::auth::Scopes;
use edgeplane_core::identity::form::{require_form_content_type, Form};
use edgeplane_core::identity::session::SessionKind;
use edgeplane_core::views::identity::DeviceAuthorizationEnvelope;
use edgeplane_core::{ApiError, ErrorCode};
use serde::Deserialize;

use super::require_user;
use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::identity::settings::{self, IdentitySettings};
use crate::service::identity::{device, issue, limits, refresh};

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn form(cx: &mut Cx<'_>) -> Result<Form, ApiError> {
    let ct = cx.req.headers().get("content-type").ok().flatten();
    require_form_content_type(ct.as_deref())?;
    Form::parse(&cx.raw_body().await?)
}

fn client(settings: &IdentitySettings, f: &Form) -> Result<String, ApiError> {
    let id = f.require("client_id")?;
    if settings.cli_client_ids.iter().any(|c| c == id) {
        Ok(id.to_owned())
    } else {
        Err(ApiError::new(ErrorCode::InvalidClient, "unknown client_id"))
    }
}

fn parse_scopes(raw: Option<&str>) -> Result<Option<Scopes>, ApiError> {
    match raw {
        None => Ok(None),
        Some(s) => {
            let scopes = Scopes::parse_list(s.split_whitespace())
                .map_err(|e| ApiError::new(ErrorCode::InvalidScope, e))?;
            if scopes.is_empty() {
                Err(ApiError::new(ErrorCode::InvalidScope, "scope is empty"))
            } else {
                Ok(Some(scopes))
            }
        }
    }
}

/// `POST /oauth/device_authorization`.
pub async fn authorize(cx: &mut Cx<'_>) -> HttpResult {
    let f = form(cx).await?;
    let settings = settings::load(cx.env, &cx.cfg);
    let client_id = client(&settings, &f)?;
    let scopes = parse_scopes(f.get("scope"))?;
    respond::ok(&device::authorize(cx, &settings, &client_id, scopes).await?)
}

/// `POST /oauth/token`: the device-code grant and CLI refresh.
pub async fn token(cx: &mut Cx<'_>) -> HttpResult {
    let f = form(cx).await?;
    let settings = settings::load(cx.env, &cx.cfg);
    match f.require("grant_type")? {
        DEVICE_CODE_GRANT => {
            let client_id = client(&settings, &f)?;
            respond::ok(
                &device::device_code_grant(cx, &client_id, f.require("device_code")?).await?,
            )
        }
        "refresh_token" => {
            client(&settings, &f)?;
            limits::per_ip(cx, "refresh", limits::REFRESH_PER_IP).await?;
            let r = refresh::rotate(cx, f.require("refresh_token")?, SessionKind::Cli).await?;
            respond::ok(&issue::oauth_body(r.issued, r.scopes.unwrap_or_default()))
        }
        _ => Err(ApiError::new(
            ErrorCode::UnsupportedGrantType,
            "grant_type must be urn:ietf:params:oauth:grant-type:device_code or refresh_token",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    user_code: String,
}

pub async fn verify(cx: &mut Cx<'_>) -> HttpResult {
    let user = require_user(&cx.principal)?.0.to_owned();
    let body: CodeBody = cx.json().await?;
    respond::ok(&DeviceAuthorizationEnvelope {
        device_authorization: device::verify(cx, &user, &body.user_code).await?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Approve {
    user_code: String,
    /// The one org the CLI token will act in (id or slug).
    org: String,
    /// Narrows the grant further (optional).
    #[serde(default)]
    scopes: Option<Scopes>,
}

pub async fn approve(cx: &mut Cx<'_>) -> HttpResult {
    let user = require_user(&cx.principal)?.0.to_owned();
    let body: Approve = cx.json().await?;
    respond::ok(&DeviceAuthorizationEnvelope {
        device_authorization: device::approve(cx, &user, &body.user_code, &body.org, body.scopes)
            .await?,
    })
}

pub async fn deny(cx: &mut Cx<'_>) -> HttpResult {
    let user = require_user(&cx.principal)?.0.to_owned();
    let body: CodeBody = cx.json().await?;
    respond::ok(&DeviceAuthorizationEnvelope {
        device_authorization: device::deny(cx, &user, &body.user_code).await?,
    })
}
