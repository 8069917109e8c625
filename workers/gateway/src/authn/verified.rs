//! Access tokens whose signature this isolate already verified.
//!
//! Checking an Ed25519 signature is the largest CPU cost of an authenticated request in wasm, and
//! a client sends the same access token until it expires (15 minutes by default, a device's up
//! to an hour). A token string identical to one verified before is the same token, so its claims
//! are reused for [`TTL_MS`]; expiry is still checked on every request, and revocation is
//! checked by the caller (session state, device facts) as always. Entries are keyed by the
//! token's SHA-256, not the token (a few microseconds against a signature check, and a fleet's
//! worth of keys stays small). The key set a signature was checked against never changes within
//! an isolate: new keys come with a new deployment, and so with new isolates.
//!
//! The cache holds [`MAX_ENTRIES`] tokens (a fleet polling every few minutes through one isolate
//! must fit: a cache that resets before a device's next poll verifies every request again), each
//! about 700 bytes of claims: about 12 MB at most.

use std::cell::RefCell;
use std::rc::Rc;

use edgeplane_core::auth::access_token::API_AUDIENCES;
use edgeplane_core::crypto::hash::sha256_hex;
use edgeplane_core::crypto::jwt::{Claims, JwtError, LEEWAY_SECONDS};
use edgeplane_core::identity::cache::TtlCache;

use crate::config::Config;

const TTL_MS: i64 = 15 * 60_000;
const MAX_ENTRIES: usize = 16_384;

thread_local! {
    static VERIFIED: RefCell<TtlCache<Rc<Claims<serde_json::Value>>>> =
        RefCell::new(TtlCache::new(TTL_MS, MAX_ENTRIES));
}

/// Signature, issuer, audience and time, as `KeySet::verify`, remembered per isolate.
pub fn verify(
    cfg: &Config,
    token: &str,
    now_secs: i64,
) -> Result<Rc<Claims<serde_json::Value>>, JwtError> {
    let now_ms = now_secs * 1000;
    let key = sha256_hex(token.as_bytes());
    if let Some(claims) = VERIFIED.with(|c| c.borrow().get(&key, now_ms)) {
        if now_secs > claims.exp + LEEWAY_SECONDS || now_secs + LEEWAY_SECONDS < claims.nbf {
            return Err(JwtError::Expired);
        }
        return Ok(claims);
    }
    let claims = Rc::new(cfg.jwt_keys.verify::<serde_json::Value>(
        token,
        &cfg.issuer,
        API_AUDIENCES,
        now_secs,
    )?);
    VERIFIED.with(|c| c.borrow_mut().put(&key, claims.clone(), now_ms));
    Ok(claims)
}
