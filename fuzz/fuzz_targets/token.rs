//! Bearer tokens: the JWT verifier on any string (header parsing, base64, key look-up all
//! happen before the signature check) and on tokens signed over arbitrary header and claims
//! bytes (the claims parser behind the signature), plus the opaque credential shape checks.
#![no_main]

use edgeplane_core::auth::access_token::{looks_like_jwt, API_AUDIENCES};
use edgeplane_core::auth::credential::{hash_presented, CredentialKind};
use edgeplane_core::crypto::jwt::{JwtError, KeySet};
use edgeplane_core::crypto::kdf::RootSecret;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const ISSUER: &str = "https://edgeplane.test";
const KINDS: [CredentialKind; 8] = [
    CredentialKind::ApiKey,
    CredentialKind::SessionRefresh,
    CredentialKind::CliRefresh,
    CredentialKind::DeviceBootstrap,
    CredentialKind::DeviceRefresh,
    CredentialKind::DeviceCode,
    CredentialKind::MagicLink,
    CredentialKind::Invitation,
];

fuzz_target!(|data: &[u8]| {
    let Ok(root) = RootSecret::new(&[7u8; 32]) else {
        return;
    };
    let keys = KeySet::derive(&root, 2, 1);
    let (ctl, rest) = common::split_first(data);
    let now = 1_800_000_000 + i64::from(ctl) * 1000;
    if let Ok(s) = std::str::from_utf8(rest) {
        let _ = looks_like_jwt(s);
        let r = keys.verify::<serde_json::Value>(s, ISSUER, API_AUDIENCES, now);
        assert!(
            matches!(r, Err(JwtError::Invalid)),
            "an unsigned string verified: {r:?}"
        );
        if let Some(kind) = CredentialKind::of(s) {
            assert!(s.starts_with(kind.prefix()));
        }
        for kind in KINDS {
            if let Some(hash) = hash_presented(kind, s) {
                assert_eq!(s.len(), kind.prefix().len() + 43);
                assert_eq!(hash.len(), 64);
            }
        }
    }
    // header \0 claims, signed by the current key.
    let mut parts = rest.splitn(2, |b| *b == 0);
    let (header, claims) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let token = keys.signing_key().sign_raw_for_fuzzing(header, claims);
    match keys.verify::<serde_json::Value>(&token, ISSUER, API_AUDIENCES, now) {
        Ok(c) => {
            assert_eq!(c.iss, ISSUER);
            assert!(API_AUDIENCES.contains(&c.aud.as_str()));
        }
        Err(_) => {}
    }
});
