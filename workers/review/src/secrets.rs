//! The review worker's secrets: `ROOT_SECRET` (shared with the gateway) opens integration
//! tokens; `REVIEW_SECRET` (the review worker's alone) opens BYOK provider keys and the sealed
//! work in progress.

use edgeplane_core::crypto::aead::SealingKey;
use edgeplane_core::crypto::kdf::{KeyPurpose, RootSecret};
use edgeplane_core::review::byok::ReviewSecret;
use edgeplane_core::review::sealed::{self, Field};
use worker::Env;

fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty())
}

pub fn integration_key(env: &Env) -> Result<SealingKey, String> {
    let raw = secret(env, "ROOT_SECRET").ok_or("ROOT_SECRET is not set")?;
    let root = RootSecret::from_hex(&raw).map_err(|_| "ROOT_SECRET is not 64+ hex characters")?;
    Ok(SealingKey::derive(&root, KeyPurpose::IntegrationSecrets))
}

pub fn review_secret(env: &Env) -> Result<ReviewSecret, String> {
    let raw = secret(env, "REVIEW_SECRET").ok_or("REVIEW_SECRET is not set")?;
    ReviewSecret::from_hex(&raw).ok_or_else(|| "REVIEW_SECRET is not 64+ hex characters".to_owned())
}

pub fn open_integration(
    key: &SealingKey,
    row_id: &str,
    field: Field,
    stored: &str,
) -> Option<String> {
    let bytes = key
        .open(&sealed::aad(row_id, field), &sealed::decode(stored)?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

pub fn open_api_key(rs: &ReviewSecret, provider_id: &str, stored: &str) -> Option<String> {
    let bytes = rs
        .open(
            &sealed::aad(provider_id, Field::ApiKey),
            &sealed::decode(stored)?,
        )
        .ok()?;
    String::from_utf8(bytes).ok()
}

pub fn allow_loopback(env: &Env) -> bool {
    env.var("ALLOW_LOOPBACK_EGRESS")
        .map(|v| v.to_string() == "true")
        .unwrap_or(false)
}
