//! Resolving the caller: a bearer credential becomes exactly one [`Principal`], and an `{org}`
//! path segment becomes [`OrgAccess`] only if that principal is tied to the org.

mod api_key;
pub mod device;
mod session;
mod verified;

pub use api_key::forget_api_key;
pub use device::forget_device_facts;
pub use session::{
    email as session_email, find_membership, forget_memberships, forget_org_memberships,
    forget_sessions, forget_user_sessions, membership, read_memberships, Membership,
};

use std::rc::Rc;

use edgeplane_core::auth::access_token::{looks_like_jwt, AUD_CLI, AUD_DEVICE, AUD_USER};
use edgeplane_core::auth::credential::CredentialKind;
use edgeplane_core::auth::{OrgAccess, Principal, PrincipalKind};
use edgeplane_core::crypto::jwt::JwtError;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;
use serde::Deserialize;
use worker::Request;

use crate::config::Config;
use crate::http::ctx::{now_ms, now_secs};

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

pub async fn run_followups(db: &Db, f: Followups) {
    if let Some(id) = f.touch_api_key {
        let _ = db
            .run_unaudited(
                "UPDATE api_keys SET last_used_at_ms = ? WHERE id = ?",
                args![now_ms(), id],
            )
            .await;
    }
    if let Some(id) = f.touch_session {
        let _ = db
            .run_unaudited(
                "UPDATE sessions SET last_used_at_ms = ? WHERE id = ?",
                args![now_ms(), id],
            )
            .await;
    }
}

/// Side effects a resolution wants done after the response (e.g. `last_used_at`).
#[derive(Default)]
pub struct Followups {
    pub touch_api_key: Option<String>,
    /// A session (or CLI token) whose `last_used_at` is due for an update.
    pub touch_session: Option<String>,
}

/// Who is calling, as resolving the credential found it.
pub struct Resolved {
    pub principal: Principal,
    pub followups: Followups,
    /// For a device, the facts its revocation check read with it (the control routes decide
    /// with them, so they need no read of their own).
    pub device: Option<Rc<device::DeviceSession>>,
}

impl Resolved {
    /// No credential.
    pub fn anonymous() -> Self {
        Self::of(Principal::anonymous(), Followups::default())
    }

    fn of(principal: Principal, followups: Followups) -> Self {
        Self {
            principal,
            followups,
            device: None,
        }
    }
}

/// Resolves the credential on a request. No credential: anonymous. Any presented credential that
/// does not verify: 401 (never silently anonymous).
pub async fn resolve(db: &Db, cfg: &Config, token: Option<&str>) -> Result<Resolved, ApiError> {
    let Some(token) = token else {
        return Ok(Resolved::anonymous());
    };
    match CredentialKind::of(token) {
        Some(CredentialKind::ApiKey) => {
            let (principal, followups) = api_key::resolve(db, token).await?;
            Ok(Resolved::of(principal, followups))
        }
        // Refresh tokens, bootstrap tokens, device codes and the like are exchanged at their own
        // endpoints; they are never API bearers.
        Some(_) => Err(invalid_token()),
        None if looks_like_jwt(token) => access_token(db, cfg, token).await,
        None => Err(invalid_token()),
    }
}

/// A JWT access token: signature, issuer, expiry and audience first, then the kind-specific
/// revocation check chosen by audience.
async fn access_token(db: &Db, cfg: &Config, token: &str) -> Result<Resolved, ApiError> {
    let claims = verified::verify(cfg, token, now_secs()).map_err(|e| match e {
        JwtError::Expired => ApiError::new(ErrorCode::TokenExpired, "the access token has expired"),
        JwtError::Invalid | JwtError::WrongAudience => invalid_token(),
    })?;
    match claims.aud.as_str() {
        AUD_USER => {
            let (principal, followups) = session::resolve_user(db, &claims).await?;
            Ok(Resolved::of(principal, followups))
        }
        AUD_CLI => {
            let (principal, followups) = session::resolve_cli(db, &claims).await?;
            Ok(Resolved::of(principal, followups))
        }
        AUD_DEVICE => {
            let (principal, facts) = device::resolve(db, &claims).await?;
            Ok(Resolved {
                principal,
                followups: Followups::default(),
                device: Some(Rc::new(facts)),
            })
        }
        _ => Err(invalid_token()),
    }
}

#[derive(Deserialize)]
struct OrgRow {
    id: String,
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
            let (org_id, role) = session::membership(db, user_id, org_ref)
                .await?
                .ok_or_else(not_found)?;
            Ok(OrgAccess::for_member(org_id, role))
        }
        // A CLI token acts in its one org, with its scopes capped by the person's *current*
        // role there: a demoted member's token loses what the demotion took away, a removed
        // member's token reaches nothing.
        (PrincipalKind::CliToken, Some(bound)) => {
            let user_id = principal.user_id.as_deref().ok_or_else(not_found)?;
            match session::membership(db, user_id, org_ref).await? {
                Some((org_id, role)) if org_id == bound.org_id => {
                    Ok(OrgAccess::for_credential(org_id, bound.scopes, Some(role)))
                }
                _ => Err(not_found()),
            }
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
