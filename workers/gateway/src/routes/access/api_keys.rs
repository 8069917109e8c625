//! Org API keys: created with scopes no wider than the creator's, shown once, stored as SHA-256;
//! rotated without downtime (the old key keeps working for a chosen overlap); revoked at once.

use edgeplane_core::access::api_keys::{expires_at_ms, grantable, rotated_expiry_ms, status};
use edgeplane_core::auth::credential::{mint, CredentialKind};
use edgeplane_core::auth::Scopes;
use edgeplane_core::ids::{looks_like_id, new_id};
use edgeplane_core::time::rfc3339_millis;
use edgeplane_core::{validate, ApiError, ErrorCode};
use edgeplane_runtime::args;
use edgeplane_runtime::db::Stmt;
use serde::Deserialize;
use serde_json::json;

use crate::http::ctx::now_ms;
use crate::http::respond::{self, HttpResult};
use crate::routes::Cx;

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

fn scopes_of(row: &KeyRow) -> Result<Scopes, ApiError> {
    Scopes::parse_list(row.scopes.split_whitespace()).map_err(|_| ApiError::internal())
}

fn view(row: &KeyRow, now: i64) -> Result<serde_json::Value, ApiError> {
    Ok(json!({
        "id": row.id,
        "name": row.name,
        "hint": row.hint,
        "scopes": scopes_of(row)?,
        "status": status(row.revoked_at_ms, row.expires_at_ms, now),
        "created_by": row.created_by,
        "created_at": rfc3339_millis(row.created_at_ms),
        "expires_at": row.expires_at_ms.map(rfc3339_millis),
        "revoked_at": row.revoked_at_ms.map(rfc3339_millis),
        "last_used_at": row.last_used_at_ms.map(rfc3339_millis),
        "rotated_from": row.rotated_from,
    }))
}

async fn load(cx: &Cx<'_>, id: &str) -> Result<KeyRow, ApiError> {
    if !looks_like_id(id, "key") {
        return Err(ApiError::not_found("API key"));
    }
    cx.db()
        .first(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ? AND org_id = ?"),
            args![id, &cx.org()?.org_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))
}

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
    let keys = rows
        .iter()
        .map(|r| view(r, now))
        .collect::<Result<Vec<_>, _>>()?;
    respond::ok(&json!({"api_keys": keys}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    scopes: Scopes,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
}

/// Inserts a key and answers with its plaintext, the only time it is ever shown.
async fn issue(
    cx: &mut Cx<'_>,
    name: &str,
    scopes: Scopes,
    expires_at: Option<i64>,
    rotated_from: Option<(&KeyRow, i64)>,
) -> HttpResult {
    let org_id = cx.org()?.org_id.clone();
    let now = now_ms();
    let id = new_id("key", now)?;
    let key = mint(CredentialKind::ApiKey)?;
    let mut stmts = Vec::new();
    let mut events = Vec::new();
    if let Some((old, old_expiry)) = rotated_from {
        stmts.push(Stmt::guard(
            "(SELECT revoked_at_ms IS NULL FROM api_keys WHERE id = ?)",
            args![&old.id],
            ApiError::conflict("the key was revoked concurrently"),
        ));
        stmts.push(Stmt::new(
            "UPDATE api_keys SET expires_at_ms = ? WHERE id = ?",
            args![old_expiry, &old.id],
        ));
        events.push(cx.rc.audit(
            &cx.principal,
            Some(&org_id),
            "api_key.rotated",
            "api_key",
            &old.id,
            json!({"replacement_id": id, "old_key_expires_at_ms": old_expiry}),
        ));
    }
    stmts.push(Stmt::new(
        "INSERT INTO api_keys (id, org_id, name, key_hash, hint, scopes, created_by, \
         created_at_ms, expires_at_ms, rotated_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        args![
            &id,
            &org_id,
            name,
            &key.hash,
            &key.hint,
            scopes.to_space_separated(),
            cx.principal.user_id.clone(),
            now,
            expires_at,
            rotated_from.map(|(o, _)| o.id.clone())
        ],
    ));
    events.push(cx.rc.audit(
        &cx.principal,
        Some(&org_id),
        "api_key.created",
        "api_key",
        &id,
        json!({"name": name, "scopes": scopes.names(), "expires_at_ms": expires_at,
               "rotated_from": rotated_from.map(|(o, _)| o.id.clone())}),
    ));
    cx.db().commit_audited(stmts, events, now).await?;
    let row = load(cx, &id).await?;
    let mut body = json!({"api_key": view(&row, now)?, "key": key.plaintext});
    if let Some((old, old_expiry)) = rotated_from {
        body["previous_key"] = json!({"id": old.id, "expires_at": rfc3339_millis(old_expiry)});
    }
    respond::created(&body)
}

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateKey = cx.json().await?;
    let name = validate::display_name(&body.name, "name")?;
    let scopes = grantable(body.scopes, cx.org()?)?;
    let expires_at = expires_at_ms(now_ms(), body.expires_in_seconds)?;
    issue(cx, &name, scopes, expires_at, None).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    overlap_seconds: Option<u64>,
}

/// Zero-downtime rotation: a new key with the same name and scopes (no wider than the rotator's
/// own) and the same lifetime; the old key keeps working until the overlap ends.
pub async fn rotate(cx: &mut Cx<'_>) -> HttpResult {
    let body: Rotate = cx.json_or_default().await?;
    let id = cx.param("key")?.to_owned();
    let old = load(cx, &id).await?;
    let now = now_ms();
    if status(old.revoked_at_ms, old.expires_at_ms, now) == "revoked"
        || old.expires_at_ms.is_some_and(|e| e <= now)
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "only an active key can be rotated",
        ));
    }
    let scopes = grantable(scopes_of(&old)?, cx.org()?)?;
    let old_expiry = rotated_expiry_ms(now, body.overlap_seconds, old.expires_at_ms)?;
    // The replacement lives as long as the original was meant to (measured from now).
    let new_expiry = old
        .expires_at_ms
        .map(|e| now + (e - old.created_at_ms).max(60_000));
    let name = old.name.clone();
    issue(cx, &name, scopes, new_expiry, Some((&old, old_expiry))).await
}

pub async fn revoke(cx: &mut Cx<'_>) -> HttpResult {
    let id = cx.param("key")?.to_owned();
    let row = load(cx, &id).await?;
    if row.revoked_at_ms.is_some() {
        return respond::no_content();
    }
    let now = now_ms();
    let stmts = vec![Stmt::new(
        "UPDATE api_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL",
        args![now, &id],
    )];
    let event = cx.rc.audit(
        &cx.principal,
        Some(&cx.org()?.org_id),
        "api_key.revoked",
        "api_key",
        &id,
        json!({"name": row.name}),
    );
    cx.db().commit_audited(stmts, vec![event], now).await?;
    respond::no_content()
}
