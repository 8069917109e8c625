//! Org API keys as bearer credentials: looked up by SHA-256, checked for expiry and revocation.
//!
//! A key's row is read through the per-isolate cache of `identity::cache::read_through`, keyed
//! by the key's SHA-256 — the same single flight and staleness bound (`STALENESS_BOUND_MS`, 3 s)
//! as sessions. Expiry (the end of a rotation's overlap) is checked against the cached row on
//! every request. The isolate that revokes or rotates a key drops it from its cache once its
//! batch commits ([`forget_api_key`]), so there the very next request sees the change; another
//! isolate sees it within the bound. A hash the cache does not know is always read from D1, so a
//! new key works at once everywhere.

use std::cell::RefCell;
use std::rc::Rc;

use edgeplane_core::auth::credential::{hash_presented, CredentialKind};
use edgeplane_core::auth::{OrgAccess, Principal, PrincipalKind, Scopes};
use edgeplane_core::identity::cache::{read_through, TtlCache, REVOCABLE_TTL_MS};
use edgeplane_core::ApiError;
use edgeplane_runtime::args;
use edgeplane_runtime::db::Db;
use serde::Deserialize;

use super::{invalid_token, Followups};
use crate::http::ctx::now_ms;

/// `last_used_at` is refreshed at most this often per key, so most requests stay read-only.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;
const MAX_ENTRIES: usize = 10_000;

/// What a request needs to know about a key.
#[derive(Debug, Clone)]
struct KeyState {
    id: String,
    org_id: String,
    scopes: Scopes,
    created_by: Option<String>,
    expires_at_ms: Option<i64>,
    revoked: bool,
    last_used_at_ms: Option<i64>,
}

thread_local! {
    static KEYS: RefCell<TtlCache<Rc<KeyState>>> =
        RefCell::new(TtlCache::new(REVOCABLE_TTL_MS, MAX_ENTRIES));
}

/// Drops a key from this isolate's cache. Whatever revokes a key or shortens its life (rotation)
/// calls this after its batch commits, so this isolate refuses it from the next request on.
pub fn forget_api_key(id: &str) {
    KEYS.with(|c| c.borrow_mut().retain(|_, k| k.id != id));
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

async fn read_key(db: &Db, hash: &str) -> Result<Option<Rc<KeyState>>, ApiError> {
    let row: Option<ApiKeyRow> = db
        .first(
            "SELECT id, org_id, scopes, created_by, expires_at_ms, revoked_at_ms, last_used_at_ms \
             FROM api_keys WHERE key_hash = ?",
            args![hash],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let scopes = Scopes::parse_list(row.scopes.split_whitespace()).map_err(|_| invalid_token())?;
    Ok(Some(Rc::new(KeyState {
        id: row.id,
        org_id: row.org_id,
        scopes,
        created_by: row.created_by,
        expires_at_ms: row.expires_at_ms,
        revoked: row.revoked_at_ms.is_some(),
        last_used_at_ms: row.last_used_at_ms,
    })))
}

pub async fn resolve(db: &Db, token: &str) -> Result<(Principal, Followups), ApiError> {
    let hash = hash_presented(CredentialKind::ApiKey, token).ok_or_else(invalid_token)?;
    let key = read_through(&KEYS, &hash, now_ms(), || read_key(db, &hash))
        .await?
        .ok_or_else(invalid_token)?;
    let now = now_ms();
    if key.revoked || key.expires_at_ms.is_some_and(|e| e <= now) {
        return Err(invalid_token());
    }
    let touch = key
        .last_used_at_ms
        .is_none_or(|t| now - t > LAST_USED_GRANULARITY_MS)
        .then(|| key.id.clone());
    if touch.is_some() {
        // Do not ask again from this isolate until the row (and so the cache) is re-read.
        KEYS.with(|c| {
            c.borrow_mut().update(&hash, |k| {
                let mut fresh = (**k).clone();
                fresh.last_used_at_ms = Some(now);
                *k = Rc::new(fresh);
            })
        });
    }
    Ok((
        Principal {
            kind: PrincipalKind::ApiKey,
            id: key.id.clone(),
            user_id: key.created_by.clone(),
            session_id: None,
            bound: Some(OrgAccess::for_credential(
                key.org_id.clone(),
                key.scopes,
                None,
            )),
        },
        Followups {
            touch_api_key: touch,
            ..Followups::default()
        },
    ))
}
