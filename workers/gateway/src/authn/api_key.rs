//! Org API keys as bearer credentials: looked up by SHA-256, checked for expiry and revocation.

use edgeplane_core::auth::credential::{hash_presented, CredentialKind};
use edgeplane_core::auth::{OrgAccess, Principal, PrincipalKind, Scopes};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;
use serde::Deserialize;

use super::{invalid_token, Followups};
use crate::http::ctx::now_ms;

/// `last_used_at` is refreshed at most this often per key, so most requests stay read-only.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

#[derive(Deserialize)]
struct ApiKeyRow {
    id: String,
    org_id: String,
    scopes: String,
    created_by: Option<String>,
    expires_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
    last_used_at_ms: Option<i64>,
}

pub async fn resolve(db: &Db, token: &str) -> Result<(Principal, Followups), ApiError> {
    let hash = hash_presented(CredentialKind::ApiKey, token).ok_or_else(invalid_token)?;
    let row: ApiKeyRow = db
        .first(
            "SELECT id, org_id, scopes, created_by, expires_at_ms, revoked_at_ms, last_used_at_ms \
             FROM api_keys WHERE key_hash = ?",
            args![hash],
        )
        .await?
        .ok_or_else(invalid_token)?;
    let now = now_ms();
    if row.revoked_at_ms.is_some() || row.expires_at_ms.is_some_and(|e| e <= now) {
        return Err(invalid_token());
    }
    let scopes = Scopes::parse_list(row.scopes.split_whitespace()).map_err(|_| invalid_token())?;
    let touch = row
        .last_used_at_ms
        .is_none_or(|t| now - t > LAST_USED_GRANULARITY_MS)
        .then(|| row.id.clone());
    Ok((
        Principal {
            kind: PrincipalKind::ApiKey,
            id: row.id,
            user_id: row.created_by,
            session_id: None,
            bound: Some(OrgAccess::for_credential(row.org_id, scopes, None)),
        },
        Followups {
            touch_api_key: touch,
            ..Followups::default()
        },
    ))
}
