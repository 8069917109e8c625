//! Federated-learning devices as bearers.
//!
//! A device access token is an EdDSA JWT (audience `AUD_DEVICE`) whose signature, issuer and
//! expiry the caller already checked. What remains is revocation, which is immediate: every
//! request looks up the token's family and its device, so an admin's revocation (or the device's
//! own logout) takes effect on the very next request rather than at expiry.

use edgeplane_core::auth::access_token::AUD_DEVICE;
use edgeplane_core::auth::{OrgAccess, Principal, PrincipalKind, Scopes};
use edgeplane_core::crypto::jwt::{Claims, JwtKey};
use edgeplane_core::fl::device_scope::DeviceScopes;
use edgeplane_core::ids::new_id;
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;
use serde::{Deserialize, Serialize};

use super::invalid_token;
use crate::config::Config;

/// The device-specific claims of a device access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceClaims {
    pub org_id: String,
    /// The token family (one per bootstrap), revoked as a whole.
    pub sid: String,
    /// Space-separated device scopes.
    pub scope: String,
    /// The customer's identifier for the device.
    pub did: String,
}

#[derive(Deserialize)]
struct LiveRow {
    device_revoked: Option<i64>,
    family_revoked: Option<i64>,
}

pub async fn resolve(db: &Db, claims: &Claims<serde_json::Value>) -> Result<Principal, ApiError> {
    let extra: DeviceClaims =
        serde_json::from_value(claims.extra.clone()).map_err(|_| invalid_token())?;
    let row: LiveRow = db
        .first(
            "SELECT d.revoked_at_ms AS device_revoked, f.revoked_at_ms AS family_revoked \
             FROM fl_device_families f JOIN fl_devices d ON d.id = f.device_id \
             WHERE f.id = ? AND d.id = ? AND d.org_id = ?",
            args![&extra.sid, &claims.sub, &extra.org_id],
        )
        .await?
        .ok_or_else(invalid_token)?;
    if row.device_revoked.is_some() || row.family_revoked.is_some() {
        return Err(invalid_token());
    }
    Ok(Principal {
        kind: PrincipalKind::Device,
        id: claims.sub.clone(),
        user_id: None,
        session_id: Some(extra.sid),
        // Devices hold no org scopes: the control plane is closed to them whatever they claim.
        bound: Some(OrgAccess::for_credential(
            extra.org_id,
            Scopes::empty(),
            None,
        )),
    })
}

/// Signs a device access token.
pub fn mint_access_token(
    key: &JwtKey,
    issuer: &str,
    device_id: &str,
    claims: DeviceClaims,
    now_s: i64,
    ttl_s: i64,
) -> Result<String, ApiError> {
    key.sign(&Claims {
        iss: issuer.to_owned(),
        aud: AUD_DEVICE.to_owned(),
        sub: device_id.to_owned(),
        iat: now_s,
        nbf: now_s,
        exp: now_s + ttl_s,
        jti: new_id("jti", now_s * 1000)?,
        extra: claims,
    })
    .map_err(|_| ApiError::internal())
}

/// The device scopes of the bearer on this request. Dispatch already verified this exact token
/// and its revocation; the scopes are read from it again (signature included) rather than
/// carried in the principal, which knows only org scopes.
pub fn scopes_of(
    cfg: &Config,
    bearer: Option<&str>,
    now_s: i64,
) -> Result<(DeviceClaims, DeviceScopes), ApiError> {
    let token = bearer.ok_or_else(invalid_token)?;
    let claims: Claims<DeviceClaims> = cfg
        .jwt_keys
        .verify(token, &cfg.issuer, &[AUD_DEVICE], now_s)
        .map_err(|_| invalid_token())?;
    let scopes = DeviceScopes::parse_list(claims.extra.scope.split_whitespace())
        .map_err(|_| invalid_token())?;
    Ok((claims.extra, scopes))
}
