//! Resolving the caller: a bearer credential becomes exactly one [`Principal`], and an `{org}`
//! path segment becomes [`OrgAccess`] only if that principal is tied to the org.

use edgeplane_core::auth::credential::{hash_presented, CredentialKind};
use edgeplane_core::auth::{OrgAccess, Principal, PrincipalKind, Role, Scopes};
use edgeplane_core::{ApiError, ErrorCode};
use serde::Deserialize;
use worker::Request;

use crate::http::ctx::now_ms;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;

/// `last_used_at` is refreshed at most this often per credential, to keep reads read-only.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// A bearer token from `Authorization`, if one was sent. A malformed header is an error, not
/// "anonymous": a client that meant to authenticate should hear why it did not.
pub fn bearer(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("authorization").ok().flatten() else {
        return Ok(None);
    };
    let mut parts = value.splitn(2, ' ');
    match (parts.next(), parts.next()) {
        (Some(scheme), Some(token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                Err(invalid_token())
            } else {
                Ok(Some(token.to_owned()))
            }
        }
        _ => Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "Authorization must use the Bearer scheme",
        )),
    }
}

pub fn invalid_token() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidToken,
        "the credential is invalid, expired or revoked",
    )
}

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

/// Side effects a resolution wants done after the response (e.g. `last_used_at`).
#[derive(Default)]
pub struct Followups {
    pub touch_api_key: Option<String>,
}

/// Resolves the credential on a request. No credential: anonymous. Any presented credential that
/// does not verify: 401 (never silently anonymous).
pub async fn resolve(db: &Db, token: Option<&str>) -> Result<(Principal, Followups), ApiError> {
    let Some(token) = token else {
        return Ok((Principal::anonymous(), Followups::default()));
    };
    match CredentialKind::of(token) {
        Some(CredentialKind::ApiKey) => resolve_api_key(db, token).await,
        _ => Err(invalid_token()),
    }
}

async fn resolve_api_key(db: &Db, token: &str) -> Result<(Principal, Followups), ApiError> {
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
        },
    ))
}

pub async fn run_followups(db: &Db, f: Followups) {
    if let Some(id) = f.touch_api_key {
        let _ = db
            .run_unaudited(
                "UPDATE api_keys SET last_used_at_ms = ? WHERE id = ?",
                args![now_ms(), id],
            )
            .await;
    }
}

#[derive(Deserialize)]
struct OrgRow {
    id: String,
}

#[derive(Deserialize)]
struct MemberRow {
    org_id: String,
    role: String,
}

/// The org named in the path (id or slug) as seen by `principal`. Anything the principal is not
/// tied to — another tenant's org, or one that does not exist — is the same 404.
pub async fn org_access(
    db: &Db,
    principal: &Principal,
    org_ref: &str,
) -> Result<OrgAccess, ApiError> {
    let not_found = || ApiError::not_found("organization");
    match (&principal.kind, &principal.bound) {
        (PrincipalKind::User, _) => {
            let user_id = principal.user_id.as_deref().ok_or_else(not_found)?;
            let row: MemberRow = db
                .first(
                    "SELECT m.org_id, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id \
                     WHERE m.user_id = ? AND (o.id = ? OR o.slug = ?) AND o.deleted_at_ms IS NULL",
                    args![user_id, org_ref, org_ref],
                )
                .await?
                .ok_or_else(not_found)?;
            let role = Role::parse(&row.role).ok_or_else(ApiError::internal)?;
            Ok(OrgAccess::for_member(row.org_id, role))
        }
        (_, Some(bound)) => {
            if bound.org_id == org_ref {
                return Ok(bound.clone());
            }
            // A slug: resolve it, then compare ids.
            let row: OrgRow = db
                .first(
                    "SELECT id FROM orgs WHERE slug = ? AND deleted_at_ms IS NULL",
                    args![org_ref],
                )
                .await?
                .ok_or_else(not_found)?;
            if row.id == bound.org_id {
                Ok(bound.clone())
            } else {
                Err(not_found())
            }
        }
        _ => Err(not_found()),
    }
}
