//! Org API keys: created with scopes no wider than the creator's, shown once, stored as SHA-256;
//! rotated without downtime (the old key keeps working for a chosen overlap); revoked at once.

use edgeplane_core::access::api_keys::{
    expires_at_ms, grantable, rotated_expiry_ms, status, KeyStatus,
};
use edgeplane_core::audit::{AuditAction, Event};
use edgeplane_core::auth::credential::{mint, CredentialKind, Minted};
use edgeplane_core::auth::Scopes;
use edgeplane_core::ids::{ApiKeyId, TypedId};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::views::access::{ApiKeyIssued, ApiKeyView, ApiKeysView, PreviousKey};
use edgeplane_core::{validate, ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::OrgBatch;
use serde::Deserialize;
use serde_json::json;

use crate::authn;
use crate::cx::Cx;
use crate::http::ctx::now_ms;

#[derive(Deserialize)]
struct KeyRow {
    id: String,
    name: String,
    hint: String,
    scopes: String,
    created_by: Option<String>,
    created_at_ms: i64,
    expires_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
    last_used_at_ms: Option<i64>,
    rotated_from: Option<String>,
}

const COLUMNS: &str = "id, name, hint, scopes, created_by, created_at_ms, expires_at_ms, \
                       revoked_at_ms, last_used_at_ms, rotated_from";

fn key_id(s: &str) -> Result<ApiKeyId, ApiError> {
    ApiKeyId::parse(s).map_err(|_| ApiError::internal())
}

impl KeyRow {
    fn scopes(&self) -> Result<Scopes, ApiError> {
        Scopes::parse_list(self.scopes.split_whitespace()).map_err(|_| ApiError::internal())
    }

    fn status(&self, now: i64) -> KeyStatus {
        status(self.revoked_at_ms, self.expires_at_ms, now)
    }

    fn view(&self, now: i64) -> Result<ApiKeyView, ApiError> {
        Ok(ApiKeyView {
            id: key_id(&self.id)?,
            name: self.name.clone(),
            hint: self.hint.clone(),
            scopes: self.scopes()?,
            status: self.status(now),
            created_by: self.created_by.clone(),
            created_at: rfc3339_millis(self.created_at_ms),
            expires_at: self.expires_at_ms.map(rfc3339_millis),
            revoked_at: self.revoked_at_ms.map(rfc3339_millis),
            last_used_at: self.last_used_at_ms.map(rfc3339_millis),
            rotated_from: self.rotated_from.as_deref().map(key_id).transpose()?,
        })
    }
}

async fn load(cx: &Cx<'_>, id: &ApiKeyId) -> Result<KeyRow, ApiError> {
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ? AND org_id = ?"),
            args![id.as_str(), &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))
}

pub async fn list(cx: &Cx<'_>, include_inactive: bool) -> Result<ApiKeysView, ApiError> {
    let now = now_ms();
    let rows: Vec<KeyRow> = cx
        .db()
        .all(
            &format!(
                "SELECT {COLUMNS} FROM api_keys WHERE org_id = ? \
                 AND (? OR (revoked_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > ?))) \
                 ORDER BY created_at_ms DESC LIMIT 500"
            ),
            args![&cx.org()?.org_id, include_inactive, now],
        )
        .await?;
    Ok(ApiKeysView {
        api_keys: rows.iter().map(|r| r.view(now)).collect::<Result<_, _>>()?,
    })
}

/// A key's row. Only the hash of the key is stored, and a hint for listings.
pub struct NewKeyRow<'a> {
    pub id: &'a ApiKeyId,
    pub name: &'a str,
    pub key: &'a Minted,
    pub scopes: Scopes,
    pub created_by: Option<&'a str>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub rotated_from: Option<&'a str>,
}

/// Adds the insert of `row` to an org's batch (setup makes the first key this way too).
pub fn insert_key(batch: OrgBatch, row: &NewKeyRow<'_>) -> OrgBatch {
    batch.insert(
        "api_keys",
        &[
            "id",
            "name",
            "key_hash",
            "hint",
            "scopes",
            "created_by",
            "created_at_ms",
            "expires_at_ms",
            "rotated_from",
        ],
        args![
            row.id.as_str(),
            row.name,
            &row.key.hash,
            &row.key.hint,
            row.scopes.to_space_separated(),
            row.created_by,
            row.created_at_ms,
            row.expires_at_ms,
            row.rotated_from
        ],
    )
}

/// Inserts a key and answers with its plaintext, the only time it is ever shown.
async fn issue(
    cx: &Cx<'_>,
    name: &str,
    scopes: Scopes,
    expires_at: Option<i64>,
    rotated_from: Option<(&KeyRow, i64)>,
) -> Result<ApiKeyIssued, ApiError> {
    let now = now_ms();
    let id = ApiKeyId::generate(now)?;
    let key = mint(CredentialKind::ApiKey)?;
    let mut batch = OrgBatch::new(&cx.org()?.org_id);
    let mut events = Vec::new();
    if let Some((old, old_expiry)) = rotated_from {
        batch = batch
            .guard(
                "(SELECT revoked_at_ms IS NULL FROM api_keys WHERE id = ?)",
                args![&old.id],
                ApiError::conflict("the key was revoked concurrently"),
            )
            .update(
                "api_keys",
                "expires_at_ms = ?",
                args![old_expiry],
                "id = ?",
                args![&old.id],
            );
        events.push(
            Event::new(AuditAction::ApiKeyRotated, "api_key", &old.id)
                .meta(json!({"replacement_id": id, "old_key_expires_at_ms": old_expiry})),
        );
    }
    batch = insert_key(
        batch,
        &NewKeyRow {
            id: &id,
            name,
            key: &key,
            scopes,
            created_by: cx.principal.user_id.as_deref(),
            created_at_ms: now,
            expires_at_ms: expires_at,
            rotated_from: rotated_from.map(|(o, _)| o.id.as_str()),
        },
    );
    events.push(
        Event::new(AuditAction::ApiKeyCreated, "api_key", id.as_str()).meta(json!({
            "name": name, "scopes": scopes.names(), "expires_at_ms": expires_at,
            "rotated_from": rotated_from.map(|(o, _)| o.id.clone()),
        })),
    );
    cx.commit(batch, events).await?;
    if let Some((old, _)) = rotated_from {
        authn::forget_api_key(&old.id);
    }
    let row = load(cx, &id).await?;
    Ok(ApiKeyIssued {
        api_key: row.view(now)?,
        key: key.plaintext,
        previous_key: rotated_from
            .map(|(old, old_expiry)| {
                Ok::<_, ApiError>(PreviousKey {
                    id: key_id(&old.id)?,
                    expires_at: rfc3339_millis(old_expiry),
                })
            })
            .transpose()?,
    })
}

/// What a creator asks for.
pub struct NewKey {
    pub name: String,
    pub scopes: Scopes,
    pub expires_in_seconds: Option<u64>,
}

pub async fn create(cx: &Cx<'_>, req: NewKey) -> Result<ApiKeyIssued, ApiError> {
    let name = validate::display_name(&req.name, "name")?;
    let scopes = grantable(req.scopes, cx.org()?)?;
    let expires_at = expires_at_ms(now_ms(), req.expires_in_seconds)?;
    issue(cx, &name, scopes, expires_at, None).await
}

/// Zero-downtime rotation: a new key with the same name and scopes (no wider than the rotator's
/// own) and the same lifetime; the old key keeps working until the overlap ends.
pub async fn rotate(
    cx: &Cx<'_>,
    id: &ApiKeyId,
    overlap_seconds: Option<u64>,
) -> Result<ApiKeyIssued, ApiError> {
    let old = load(cx, id).await?;
    let now = now_ms();
    if !old.status(now).is_active() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "only an active key can be rotated",
        ));
    }
    let scopes = grantable(old.scopes()?, cx.org()?)?;
    let old_expiry = rotated_expiry_ms(now, overlap_seconds, old.expires_at_ms)?;
    // The replacement lives as long as the original was meant to (measured from now).
    let new_expiry = old
        .expires_at_ms
        .map(|e| now + (e - old.created_at_ms).max(60_000));
    let name = old.name.clone();
    issue(cx, &name, scopes, new_expiry, Some((&old, old_expiry))).await
}

pub async fn revoke(cx: &Cx<'_>, id: &ApiKeyId) -> Result<(), ApiError> {
    let row = load(cx, id).await?;
    if row.revoked_at_ms.is_some() {
        return Ok(());
    }
    let now = now_ms();
    let batch = OrgBatch::new(&cx.org()?.org_id).update(
        "api_keys",
        "revoked_at_ms = ?",
        args![now],
        "id = ? AND revoked_at_ms IS NULL",
        args![id.as_str()],
    );
    let event = Event::new(AuditAction::ApiKeyRevoked, "api_key", id.as_str())
        .meta(json!({"name": row.name}));
    cx.commit(batch, [event]).await?;
    authn::forget_api_key(id.as_str());
    Ok(())
}
