//! Federated-learning devices as bearers.
//!
//! A device access token is an EdDSA JWT (audience `AUD_DEVICE`) whose signature, issuer and
//! expiry the caller already checked. What remains is revocation, which is immediate: every
//! request looks up the token's family and its device, so an admin's revocation (or the device's
//! own logout) takes effect on the very next request rather than at expiry.
//!
//! That one read also brings what the device control routes decide with — the device's tags,
//! its explicit group memberships and what it last reported per model — so a desired-state or
//! sync request reads D1 once (the org's rollouts come from a per-isolate cache, see
//! `service::federation::deployments`), and these facts are never staler than the request.
//! The token's claims and device scopes travel with them, so no handler verifies the token again.

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
    tags: String,
    group_ids: String,
    reports: String,
    last_seen_at_ms: Option<i64>,
}

/// The device behind a request, as its one read found it: its token's claims and scopes, and
/// the stored facts the control routes need (kept as the stored JSON, parsed only by the routes
/// that use them, so other device routes pay nothing for them).
#[derive(Debug, Clone)]
pub struct DeviceSession {
    pub claims: DeviceClaims,
    pub scopes: DeviceScopes,
    /// `fl_devices.tags` (a JSON list).
    pub tags: String,
    /// The groups listing the device as a member (a JSON list of ids).
    pub group_ids: String,
    /// Its `fl_device_models` rows (a JSON list of `fl::control::StoredReport`).
    pub reports: String,
    pub last_seen_at_ms: Option<i64>,
}

pub async fn resolve(
    db: &Db,
    claims: &Claims<serde_json::Value>,
) -> Result<(Principal, DeviceSession), ApiError> {
    let extra: DeviceClaims =
        serde_json::from_value(claims.extra.clone()).map_err(|_| invalid_token())?;
    let scopes =
        DeviceScopes::parse_list(extra.scope.split_whitespace()).map_err(|_| invalid_token())?;
    let row: LiveRow = db
        .first(
            "SELECT d.revoked_at_ms AS device_revoked, f.revoked_at_ms AS family_revoked, \
             d.tags, d.last_seen_at_ms, \
             (SELECT json_group_array(m.group_id) FROM fl_device_group_members m \
               WHERE m.device_id = d.id) AS group_ids, \
             (SELECT json_group_array(json_object('model_id', s.model_id, \
               'installed_version', s.installed_version, 'active_version', s.active_version, \
               'status', s.status, 'last_error', s.last_error, 'reported_at_ms', s.reported_at_ms)) \
               FROM fl_device_models s WHERE s.device_id = d.id) AS reports \
             FROM fl_device_families f JOIN fl_devices d ON d.id = f.device_id \
             WHERE f.id = ? AND d.id = ? AND d.org_id = ?",
            args![&extra.sid, &claims.sub, &extra.org_id],
        )
        .await?
        .ok_or_else(invalid_token)?;
    if row.device_revoked.is_some() || row.family_revoked.is_some() {
        return Err(invalid_token());
    }
    let principal = Principal {
        kind: PrincipalKind::Device,
        id: claims.sub.clone(),
        user_id: None,
        session_id: Some(extra.sid.clone()),
        // Devices hold no org scopes: the control plane is closed to them whatever they claim.
        bound: Some(OrgAccess::for_credential(
            extra.org_id.clone(),
            Scopes::empty(),
            None,
        )),
    };
    Ok((
        principal,
        DeviceSession {
            claims: extra,
            scopes,
            tags: row.tags,
            group_ids: row.group_ids,
            reports: row.reports,
            last_seen_at_ms: row.last_seen_at_ms,
        },
    ))
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
