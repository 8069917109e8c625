//! The gateway's side of review secrets: it seals and opens integration secrets (key derived
//! from ROOT_SECRET), and seals — but cannot open — BYOK provider keys (the review worker's
//! public key, `REVIEW_BYOK_PUBLIC_KEY`).

use edgeplane_core::crypto::aead::SealingKey;
use edgeplane_core::crypto::kdf::KeyPurpose;
use edgeplane_core::review::byok::ByokPublicKey;
use edgeplane_core::review::sealed::{self, Field};
use edgeplane_core::{ApiError, ErrorCode};
use worker::Env;

use crate::cx::Cx;
use crate::http::log;

pub fn integration_key(cx: &Cx<'_>) -> SealingKey {
    SealingKey::derive(&cx.cfg.root, KeyPurpose::IntegrationSecrets)
}

pub fn seal(
    key: &SealingKey,
    row_id: &str,
    field: Field,
    plaintext: &str,
) -> Result<String, ApiError> {
    Ok(sealed::encode(
        &key.seal(&sealed::aad(row_id, field), plaintext.as_bytes())?,
    ))
}

/// A stored sealed value that does not open means tampering or a changed root secret: an
/// operator problem, logged without detail and answered as an internal error.
pub fn open(
    key: &SealingKey,
    row_id: &str,
    field: Field,
    stored: &str,
) -> Result<Vec<u8>, ApiError> {
    sealed::decode(stored)
        .and_then(|b| key.open(&sealed::aad(row_id, field), &b).ok())
        .ok_or_else(|| {
            log::error(
                "integration secret",
                "a sealed value did not open (root secret changed?)",
            );
            ApiError::internal()
        })
}

/// The review worker's BYOK public key. Without it the gateway cannot accept provider keys
/// (it must never store one it could read), so the endpoint answers 503 with the reason.
pub fn byok_public_key(env: &Env) -> Result<ByokPublicKey, ApiError> {
    let raw = env
        .var("REVIEW_BYOK_PUBLIC_KEY")
        .ok()
        .map(|v| v.to_string())
        .unwrap_or_default();
    ByokPublicKey::parse(&raw).ok_or_else(|| {
        log::error("config", "REVIEW_BYOK_PUBLIC_KEY is missing or not an X25519 public key");
        ApiError::new(
            ErrorCode::Unavailable,
            "provider keys cannot be stored: the deployment has no review worker public key configured",
        )
    })
}

/// Local development only: lets integrations and providers point at loopback fakes.
pub fn allow_loopback(env: &Env) -> bool {
    env.var("ALLOW_LOOPBACK_EGRESS")
        .map(|v| v.to_string() == "true")
        .unwrap_or(false)
}
