//! Device authentication, wire-compatible with the Octomil SDKs.
//!
//! The customer's backend mints a short-lived, single-use bootstrap token for one device
//! identifier (with an org API key). The device exchanges it once for a short access token (an
//! EdDSA JWT) and a refresh token. Refresh tokens rotate on every use; presenting a rotated one
//! again means it was copied, so the whole family is revoked. No long-lived credential ever lives
//! on the device, and every token is stored only as its SHA-256.

use edgeplane_core::audit::{Actor, AuditAction, Event};
use edgeplane_core::auth::credential::{hash_presented, mint, CredentialKind};
use edgeplane_core::fl::device_scope::DeviceScopes;
use edgeplane_core::ids::new_id;
use edgeplane_core::{ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::{DbError, OnDuplicate, OrgBatch};
use serde::Deserialize;
use serde_json::json;

use crate::authn::device::{mint_access_token, DeviceClaims};
use crate::authn::{self, forget_device_facts, invalid_token};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::service::federation::devices::identifier;
use edgeplane_core::time::IsoMillis;
use edgeplane_core::views::federation::{BootstrapTokenMinted, DeviceTokens, TokenType};

pub const MAX_BOOTSTRAP_TTL_S: i64 = 600;
pub const DEFAULT_ACCESS_TTL_S: i64 = 15 * 60;
pub const MIN_ACCESS_TTL_S: i64 = 60;
pub const MAX_ACCESS_TTL_S: i64 = 60 * 60;
pub const REFRESH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBootstrap {
    device_identifier: String,
    #[serde(default)]
    scopes: Option<DeviceScopes>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

pub async fn mint_bootstrap_token(cx: &mut Cx<'_>) -> HttpResult {
    let body: MintBootstrap = cx.json().await?;
    identifier(&body.device_identifier, "device_identifier")?;
    let ttl = body.ttl_seconds.unwrap_or(MAX_BOOTSTRAP_TTL_S);
    if !(1..=MAX_BOOTSTRAP_TTL_S).contains(&ttl) {
        return Err(ApiError::validation(format!(
            "ttl_seconds must be between 1 and {MAX_BOOTSTRAP_TTL_S}"
        )));
    }
    let scopes = body.scopes.unwrap_or_else(DeviceScopes::default_grant);
    if scopes.is_empty() {
        return Err(ApiError::validation("scopes must not be empty"));
    }
    let now = now_ms();
    let id = new_id("dbt", now)?;
    let token = mint(CredentialKind::DeviceBootstrap)?;
    let expires = now + ttl * 1000;
    let batch = OrgBatch::new(&cx.org()?.org_id).insert(
        "fl_bootstrap_tokens",
        &[
            "id",
            "token_hash",
            "device_identifier",
            "scopes",
            "created_by",
            "created_at_ms",
            "expires_at_ms",
        ],
        args![
            &id,
            &token.hash,
            &body.device_identifier,
            scopes.to_space_separated(),
            &cx.principal.id,
            now,
            expires
        ],
    );
    let event = Event::new(
        AuditAction::DeviceBootstrapTokenCreated,
        "bootstrap_token",
        &id,
    )
    .meta(
        json!({"device_identifier": body.device_identifier, "scopes": scopes, "ttl_seconds": ttl}),
    );
    cx.commit(batch, [event]).await?;
    respond::created(&BootstrapTokenMinted {
        id,
        token: token.plaintext,
        expires_at: IsoMillis(expires),
        device_identifier: body.device_identifier,
        scopes,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BootstrapRequest {
    org_id: String,
    device_identifier: String,
    #[serde(default)]
    scopes: Option<DeviceScopes>,
    #[serde(default)]
    access_ttl_seconds: Option<i64>,
    #[serde(default)]
    device_id: Option<String>,
}

#[derive(Deserialize)]
struct BootstrapRow {
    id: String,
    org_id: String,
    device_identifier: String,
    scopes: String,
    expires_at_ms: i64,
    used_at_ms: Option<i64>,
}

#[derive(Deserialize)]
struct DeviceRow {
    id: String,
    revoked_at_ms: Option<i64>,
}

/// Adds a refresh token to `family_id`, a family of the batch's org.
fn add_refresh_token(
    batch: OrgBatch,
    family_id: &str,
    hash: &str,
    now: i64,
) -> Result<OrgBatch, ApiError> {
    Ok(batch.insert_linked(
        "fl_device_refresh_tokens",
        &[
            "id",
            "family_id",
            "token_hash",
            "created_at_ms",
            "expires_at_ms",
        ],
        args![
            new_id("drt", now)?,
            family_id,
            hash,
            now,
            now + REFRESH_TTL_MS
        ],
        &[("fl_device_families", family_id)],
        OnDuplicate::Fail,
    ))
}

/// The token pair every exchange answers with (`POST /api/v1/device-auth/bootstrap|refresh`).
#[allow(clippy::too_many_arguments)]
fn token_pair(
    cx: &Cx<'_>,
    device_id: &str,
    org_id: &str,
    device_identifier: &str,
    family_id: &str,
    scopes: DeviceScopes,
    ttl_s: i64,
    refresh_token: &str,
    now: i64,
) -> Result<DeviceTokens, ApiError> {
    let access = mint_access_token(
        cx.cfg.jwt_keys.signing_key(),
        &cx.cfg.issuer,
        device_id,
        DeviceClaims {
            org_id: org_id.to_owned(),
            sid: family_id.to_owned(),
            scope: scopes.to_space_separated(),
            did: device_identifier.to_owned(),
        },
        now / 1000,
        ttl_s,
    )?;
    let internal = |_| ApiError::internal();
    Ok(DeviceTokens {
        access_token: access,
        refresh_token: refresh_token.to_owned(),
        token_type: TokenType::Bearer,
        expires_in: ttl_s,
        expires_at: IsoMillis((now / 1000 + ttl_s) * 1000),
        org_id: org_id.parse().map_err(internal)?,
        device_identifier: device_identifier.to_owned(),
        device_id: device_id.parse().map_err(internal)?,
        scopes,
    })
}

fn device_actor(device_id: &str) -> Actor {
    Actor {
        kind: "device".into(),
        id: device_id.to_owned(),
    }
}

pub async fn bootstrap(cx: &mut Cx<'_>) -> HttpResult {
    let presented = authn::bearer(&cx.req)?
        .ok_or_else(|| ApiError::unauthenticated("send the bootstrap token as a bearer"))?;
    let hash =
        hash_presented(CredentialKind::DeviceBootstrap, &presented).ok_or_else(invalid_token)?;
    let body: BootstrapRequest = cx.json().await?;
    let row: BootstrapRow = cx
        .db()
        .first(
            "SELECT id, org_id, device_identifier, scopes, expires_at_ms, used_at_ms \
             FROM fl_bootstrap_tokens WHERE token_hash = ?",
            args![&hash],
        )
        .await?
        .ok_or_else(invalid_token)?;
    let now = now_ms();
    // Every mismatch is the same 401: a bootstrap token proves nothing but itself.
    if row.used_at_ms.is_some()
        || row.expires_at_ms <= now
        || row.org_id != body.org_id
        || row.device_identifier != body.device_identifier
    {
        return Err(invalid_token());
    }
    let granted = DeviceScopes::parse_list(row.scopes.split_whitespace())
        .map_err(|_| ApiError::internal())?;
    let scopes = body.scopes.unwrap_or_else(DeviceScopes::default_grant);
    if scopes.is_empty() || !granted.contains_all(scopes) {
        return Err(ApiError::new(
            ErrorCode::InsufficientScope,
            "scopes can only narrow what the bootstrap token grants",
        ));
    }
    let ttl = body.access_ttl_seconds.unwrap_or(DEFAULT_ACCESS_TTL_S);
    if !(MIN_ACCESS_TTL_S..=MAX_ACCESS_TTL_S).contains(&ttl) {
        return Err(ApiError::validation(format!(
            "access_ttl_seconds must be between {MIN_ACCESS_TTL_S} and {MAX_ACCESS_TTL_S}"
        )));
    }
    let existing: Option<DeviceRow> = cx
        .db()
        .first(
            "SELECT id, revoked_at_ms FROM fl_devices WHERE org_id = ? AND device_identifier = ?",
            args![&row.org_id, &row.device_identifier],
        )
        .await?;
    // The token's org is the org of everything this exchange writes.
    let mut batch = OrgBatch::new(&row.org_id)
        .guard(
            "EXISTS (SELECT 1 FROM fl_bootstrap_tokens WHERE id = ? AND used_at_ms IS NULL AND expires_at_ms > ?)",
            args![&row.id, now],
            invalid_token(),
        )
        .update(
            "fl_bootstrap_tokens",
            "used_at_ms = ?",
            args![now],
            "id = ?",
            args![&row.id],
        );
    let device_id = match (&existing, &body.device_id) {
        (Some(d), _) if d.revoked_at_ms.is_some() => {
            return Err(ApiError::forbidden("this device has been revoked"));
        }
        (Some(d), Some(named)) if *named != d.id => return Err(ApiError::not_found("device")),
        (Some(d), _) => d.id.clone(),
        (None, Some(_)) => return Err(ApiError::not_found("device")),
        (None, None) => {
            let id = new_id("dev", now)?;
            batch = batch.insert(
                "fl_devices",
                &[
                    "id",
                    "device_identifier",
                    "created_at_ms",
                    "last_seen_at_ms",
                ],
                args![&id, &row.device_identifier, now, now],
            );
            id
        }
    };
    let family_id = new_id("dfm", now)?;
    let refresh = mint(CredentialKind::DeviceRefresh)?;
    let batch = batch.insert(
        "fl_device_families",
        &["id", "device_id", "scopes", "access_ttl_s", "created_at_ms"],
        args![
            &family_id,
            &device_id,
            scopes.to_space_separated(),
            ttl,
            now
        ],
    );
    let batch = add_refresh_token(batch, &family_id, &refresh.hash, now)?;
    let event = Event::new(AuditAction::DeviceBootstrapped, "device", &device_id)
        .by(device_actor(&device_id))
        .meta(json!({
            "device_identifier": row.device_identifier, "bootstrap_token_id": row.id,
            "family_id": family_id, "scopes": scopes, "new_device": existing.is_none(),
        }));
    cx.commit(batch, [event]).await?;
    let pair = token_pair(
        cx,
        &device_id,
        &row.org_id,
        &row.device_identifier,
        &family_id,
        scopes,
        ttl,
        &refresh.plaintext,
        now,
    )?;
    respond::created(&pair)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
    /// Sent by some SDK versions; the refresh token alone identifies the device.
    #[serde(default)]
    #[allow(dead_code)]
    device_id: Option<String>,
}

#[derive(Deserialize)]
struct RefreshRow {
    id: String,
    family_id: String,
    expires_at_ms: i64,
    rotated_at_ms: Option<i64>,
    family_revoked: Option<i64>,
    scopes: String,
    access_ttl_s: i64,
    org_id: String,
    device_id: String,
    device_identifier: String,
    device_revoked: Option<i64>,
}

async fn find_refresh(cx: &Cx<'_>, presented: &str) -> Result<Option<RefreshRow>, ApiError> {
    let Some(hash) = hash_presented(CredentialKind::DeviceRefresh, presented) else {
        return Ok(None);
    };
    cx.db()
        .first(
            "SELECT t.id, t.family_id, t.expires_at_ms, t.rotated_at_ms, f.revoked_at_ms AS family_revoked, \
             f.scopes, f.access_ttl_s, f.org_id, f.device_id, d.device_identifier, d.revoked_at_ms AS device_revoked \
             FROM fl_device_refresh_tokens t JOIN fl_device_families f ON f.id = t.family_id \
             JOIN fl_devices d ON d.id = f.device_id WHERE t.token_hash = ?",
            args![hash],
        )
        .await
}

/// Revokes a token family (and so every token in it), with its audit record.
async fn revoke_family(
    cx: &Cx<'_>,
    r: &RefreshRow,
    reason: &str,
    action: AuditAction,
) -> Result<(), ApiError> {
    let batch = OrgBatch::new(&r.org_id).update(
        "fl_device_families",
        "revoked_at_ms = ?, revoked_reason = ?",
        args![now_ms(), reason],
        "id = ? AND revoked_at_ms IS NULL",
        args![&r.family_id],
    );
    let event = Event::new(action, "device", &r.device_id)
        .by(device_actor(&r.device_id))
        .meta(json!({"family_id": r.family_id, "reason": reason}));
    let committed = cx.commit(batch, [event]).await;
    forget_device_facts(&r.org_id);
    committed?;
    Ok(())
}

/// A refresh token came back after it was rotated: someone kept a copy. The whole family ends.
async fn reused(cx: &Cx<'_>, r: &RefreshRow) -> HttpResult {
    revoke_family(
        cx,
        r,
        "refresh_token_reuse",
        AuditAction::DeviceTokenFamilyRevoked,
    )
    .await?;
    Err(invalid_token())
}

pub async fn refresh(cx: &mut Cx<'_>) -> HttpResult {
    let body: RefreshRequest = cx.json().await?;
    let r = find_refresh(cx, &body.refresh_token)
        .await?
        .ok_or_else(invalid_token)?;
    let now = now_ms();
    if r.family_revoked.is_some() || r.device_revoked.is_some() {
        return Err(invalid_token());
    }
    if r.rotated_at_ms.is_some() {
        return reused(cx, &r).await;
    }
    if r.expires_at_ms <= now {
        return Err(invalid_token());
    }
    let scopes =
        DeviceScopes::parse_list(r.scopes.split_whitespace()).map_err(|_| ApiError::internal())?;
    let next = mint(CredentialKind::DeviceRefresh)?;
    let batch = OrgBatch::new(&r.org_id)
        .guard(
            "EXISTS (SELECT 1 FROM fl_device_refresh_tokens t JOIN fl_device_families f ON f.id = t.family_id \
             WHERE t.id = ? AND t.rotated_at_ms IS NULL AND f.revoked_at_ms IS NULL)",
            args![&r.id],
            ApiError::new(ErrorCode::Conflict, "refresh token already rotated"),
        )
        .update_linked(
            "fl_device_refresh_tokens",
            "rotated_at_ms = ?",
            args![now],
            ("family_id", "fl_device_families"),
            "id = ?",
            args![&r.id],
        )
        .update(
            "fl_devices",
            "last_seen_at_ms = ?",
            args![now],
            "id = ?",
            args![&r.device_id],
        );
    let batch = add_refresh_token(batch, &r.family_id, &next.hash, now)?;
    let event = Event::new(AuditAction::DeviceTokenRefreshed, "device", &r.device_id)
        .by(device_actor(&r.device_id))
        .meta(json!({"family_id": r.family_id}));
    match cx.commit(batch, [event]).await {
        Ok(_) => {}
        // The batch's one guard: two refreshes raced with one token, and the loser is a reuse.
        Err(DbError::Guard(_)) => return reused(cx, &r).await,
        Err(e) => return Err(e.into()),
    }
    let pair = token_pair(
        cx,
        &r.device_id,
        &r.org_id,
        &r.device_identifier,
        &r.family_id,
        scopes,
        r.access_ttl_s,
        &next.plaintext,
        now,
    )?;
    respond::ok(&pair)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    refresh_token: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Logout: ends the token family. Unknown or already revoked tokens answer the same 204 (as in
/// RFC 7009), so the endpoint reveals nothing about tokens.
pub async fn revoke(cx: &mut Cx<'_>) -> HttpResult {
    let body: RevokeRequest = cx.json().await?;
    let reason: String = body
        .reason
        .unwrap_or_else(|| "device_revoke".into())
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if let Some(r) = find_refresh(cx, &body.refresh_token).await? {
        if r.family_revoked.is_none() {
            revoke_family(cx, &r, &reason, AuditAction::DeviceTokenRevoked).await?;
        }
    }
    respond::no_content()
}
