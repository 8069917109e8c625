//! Org API keys: `GET/POST …/api-keys`, `POST …/api-keys/{key}/rotate`, `DELETE …/api-keys/{key}`.

use edgeplane_core::auth::Scopes;
use edgeplane_core::ids::ApiKeyId;
use edgeplane_core::{ApiError, ErrorCode};
use serde::Deserialize;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::access::api_keys::{self, NewKey};

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    let mut include_inactive = false;
    for (k, v) in cx.query()? {
        match (k.as_str(), v.as_str()) {
            ("include_inactive", "true") => include_inactive = true,
            ("include_inactive", "false") => include_inactive = false,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    "the only query parameter is include_inactive=true|false",
                ))
            }
        }
    }
    respond::ok(&api_keys::list(cx, include_inactive).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    scopes: Scopes,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
}

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateKey = cx.json().await?;
    let issued = api_keys::create(
        cx,
        NewKey {
            name: body.name,
            scopes: body.scopes,
            expires_in_seconds: body.expires_in_seconds,
        },
    )
    .await?;
    respond::created(&issued)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    overlap_seconds: Option<u64>,
}

pub async fn rotate(cx: &mut Cx<'_>) -> HttpResult {
    let body: Rotate = cx.json_or_default().await?;
    let id: ApiKeyId = cx.id("key")?;
    respond::created(&api_keys::rotate(cx, &id, body.overlap_seconds).await?)
}

pub async fn revoke(cx: &mut Cx<'_>) -> HttpResult {
    let id: ApiKeyId = cx.id("key")?;
    api_keys::revoke(cx, &id).await?;
    respond::no_content()
}
