//! Access tokens: compact JWS with EdDSA (Ed25519) only.
//!
//! Deliberately small and strict rather than general: exactly one algorithm is accepted (no `alg`
//! confusion, no `none`), the `kid` must name a key we hold, the signature is checked over the raw
//! signing input *before* the claims are parsed, and time is passed in so validation is pure.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_compact::{KeyPair, PublicKey, Seed, Signature};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::hash::sha256;
use super::kdf::{KeyPurpose, RootSecret};

/// Tokens are accepted up to this many seconds past `exp` / before `nbf`, for clock skew.
pub const LEEWAY_SECONDS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not a JWT, bad encoding, wrong algorithm, unknown key, bad signature, bad claims shape.
    Invalid,
    /// Well-formed and signed by us, but outside its validity window.
    Expired,
    /// Signed by us, but meant for another audience or issuer.
    WrongAudience,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// The claims every access token carries; `T` adds the kind-specific ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims<T> {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(flatten)]
    pub extra: T,
}

/// One Ed25519 signing key with its id.
pub struct JwtKey {
    kid: String,
    pair: KeyPair,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtKey({})", self.kid)
    }
}

impl JwtKey {
    /// Keys are derived, not stored: the root secret and a version number fully determine them,
    /// so every isolate agrees without a key table, and bumping the version rotates.
    pub fn derive(root: &RootSecret, version: u32) -> Self {
        let seed = root.derive(KeyPurpose::JwtSigning { version });
        let pair = KeyPair::from_seed(Seed::new(seed));
        let digest = sha256(pair.pk.as_ref());
        let kid = format!("v{version}-{}", URL_SAFE_NO_PAD.encode(&digest[..9]));
        Self { kid, pair }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.pair.pk
    }

    pub fn sign<T: Serialize>(&self, claims: &Claims<T>) -> Result<String, JwtError> {
        let header = Header {
            alg: "EdDSA".into(),
            typ: "JWT".into(),
            kid: self.kid.clone(),
        };
        let h = serde_json::to_vec(&header).map_err(|_| JwtError::Invalid)?;
        let c = serde_json::to_vec(claims).map_err(|_| JwtError::Invalid)?;
        Ok(self.sign_parts(&h, &c))
    }

    fn sign_parts(&self, header: &[u8], claims: &[u8]) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = self.pair.sk.sign(signing_input.as_bytes(), None);
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// Signs arbitrary header and claims bytes, so a fuzzer reaches the parsers behind the
    /// signature check. Only in fuzzing builds (`--cfg fuzzing`, which cargo-fuzz sets).
    #[cfg(fuzzing)]
    pub fn sign_raw_for_fuzzing(&self, header: &[u8], claims: &[u8]) -> String {
        self.sign_parts(header, claims)
    }

    /// The JWK for `/.well-known/jwks.json` (RFC 8037 OKP key).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.pair.pk.as_ref()),
        })
    }
}

/// The keys a verifier accepts: the current signing key first, then older ones still in their
/// overlap window.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<JwtKey>,
}

impl KeySet {
    /// `current` signs; versions `current-1 ..= current-keep_previous` still verify.
    pub fn derive(root: &RootSecret, current: u32, keep_previous: u32) -> Self {
        let oldest = current.saturating_sub(keep_previous).max(1);
        let mut keys = vec![JwtKey::derive(root, current)];
        keys.extend((oldest..current).rev().map(|v| JwtKey::derive(root, v)));
        Self { keys }
    }

    pub fn signing_key(&self) -> &JwtKey {
        &self.keys[0]
    }

    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys.iter().map(JwtKey::jwk).collect::<Vec<_>>() })
    }

    /// Verifies signature, issuer, audience (one of `audiences`) and time; returns the claims only
    /// if all hold. Callers dispatch on `claims.aud` afterwards.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audiences: &[&str],
        now: i64,
    ) -> Result<Claims<T>, JwtError> {
        let mut parts = token.split('.');
        let (Some(h64), Some(c64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Invalid);
        };
        let header_bytes = URL_SAFE_NO_PAD.decode(h64).map_err(|_| JwtError::Invalid)?;
        let header: Header =
            serde_json::from_slice(&header_bytes).map_err(|_| JwtError::Invalid)?;
        if header.alg != "EdDSA" || header.typ != "JWT" {
            return Err(JwtError::Invalid);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == header.kid)
            .ok_or(JwtError::Invalid)?;
        let sig_bytes = URL_SAFE_NO_PAD.decode(s64).map_err(|_| JwtError::Invalid)?;
        let sig = Signature::from_slice(&sig_bytes).map_err(|_| JwtError::Invalid)?;
        let signing_input_len = h64.len() + 1 + c64.len();
        key.pair
            .pk
            .verify(&token.as_bytes()[..signing_input_len], &sig)
            .map_err(|_| JwtError::Invalid)?;
        let claim_bytes = URL_SAFE_NO_PAD.decode(c64).map_err(|_| JwtError::Invalid)?;
        let claims: Claims<T> =
            serde_json::from_slice(&claim_bytes).map_err(|_| JwtError::Invalid)?;
        if claims.iss != issuer || !audiences.contains(&claims.aud.as_str()) {
            return Err(JwtError::WrongAudience);
        }
        if now > claims.exp + LEEWAY_SECONDS || now + LEEWAY_SECONDS < claims.nbf {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Extra {
        sid: String,
    }

    fn root() -> RootSecret {
        RootSecret::new(&[3u8; 32]).unwrap()
    }

    fn claims(now: i64) -> Claims<Extra> {
        Claims {
            iss: "https://ep.test".into(),
            aud: "edgeplane:user".into(),
            sub: "usr_1".into(),
            iat: now,
            nbf: now,
            exp: now + 900,
            jti: "jti_1".into(),
            extra: Extra {
                sid: "ses_1".into(),
            },
        }
    }

    #[test]
    fn signs_and_verifies() {
        let ks = KeySet::derive(&root(), 1, 0);
        let t = ks.signing_key().sign(&claims(1000)).unwrap();
        let back: Claims<Extra> = ks
            .verify(&t, "https://ep.test", &["edgeplane:user"], 1001)
            .unwrap();
        assert_eq!(back, claims(1000));
    }

    #[test]
    fn rejects_expiry_audience_tampering_and_foreign_keys() {
        let ks = KeySet::derive(&root(), 1, 0);
        let t = ks.signing_key().sign(&claims(1000)).unwrap();
        let v = |tok: &str, aud: &str, now| {
            ks.verify::<Extra>(tok, "https://ep.test", &[aud], now)
                .map(|_| ())
        };
        assert_eq!(
            v(&t, "edgeplane:user", 1000 + 900 + LEEWAY_SECONDS + 1),
            Err(JwtError::Expired)
        );
        assert_eq!(
            v(&t, "edgeplane:device", 1001),
            Err(JwtError::WrongAudience)
        );
        // Flip one character of the claims segment.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut c = parts[1].clone().into_bytes();
        c[5] = if c[5] == b'A' { b'B' } else { b'A' };
        parts[1] = String::from_utf8(c).unwrap();
        assert_eq!(
            v(&parts.join("."), "edgeplane:user", 1001),
            Err(JwtError::Invalid)
        );
        // A token from another deployment's root secret.
        let other = KeySet::derive(&RootSecret::new(&[4u8; 32]).unwrap(), 1, 0);
        let foreign = other.signing_key().sign(&claims(1000)).unwrap();
        assert_eq!(v(&foreign, "edgeplane:user", 1001), Err(JwtError::Invalid));
        assert_eq!(
            v("not.a.jwt", "edgeplane:user", 1001),
            Err(JwtError::Invalid)
        );
        assert_eq!(v("", "edgeplane:user", 1001), Err(JwtError::Invalid));
    }

    #[test]
    fn alg_none_is_rejected() {
        let ks = KeySet::derive(&root(), 1, 0);
        let t = ks.signing_key().sign(&claims(1000)).unwrap();
        let body = t.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(
                &serde_json::json!({"alg":"none","typ":"JWT","kid": ks.signing_key().kid()}),
            )
            .unwrap(),
        );
        let forged = format!("{header}.{body}.");
        assert_eq!(
            ks.verify::<Extra>(&forged, "https://ep.test", &["edgeplane:user"], 1001)
                .map(|_| ()),
            Err(JwtError::Invalid)
        );
    }

    #[test]
    fn rotation_keeps_previous_key_valid() {
        let old = KeySet::derive(&root(), 1, 0);
        let t = old.signing_key().sign(&claims(1000)).unwrap();
        let new = KeySet::derive(&root(), 2, 1);
        assert_ne!(new.signing_key().kid(), old.signing_key().kid());
        assert!(new
            .verify::<Extra>(&t, "https://ep.test", &["edgeplane:user"], 1001)
            .is_ok());
        let newer = KeySet::derive(&root(), 3, 0);
        assert!(newer
            .verify::<Extra>(&t, "https://ep.test", &["edgeplane:user"], 1001)
            .is_err());
        assert_eq!(new.jwks()["keys"].as_array().unwrap().len(), 2);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the claims, a token verifies to exactly them, and changing any one character
        /// of it makes it invalid.
        #[test]
        fn tokens_round_trip_and_any_change_breaks_them(
            sub in "\\PC{0,40}",
            sid in "[a-z0-9_]{0,20}",
            at in 0usize..400,
            to in prop::sample::select(vec!['A', 'x', '-', '_', '.', '0']),
        ) {
            let ks = KeySet::derive(&RootSecret::new(&[9u8; 32]).unwrap(), 1, 0);
            let claims = Claims {
                iss: "https://ep.test".into(),
                aud: "edgeplane:user".into(),
                sub,
                iat: 1000,
                nbf: 1000,
                exp: 2000,
                jti: "j".into(),
                extra: serde_json::json!({ "sid": sid }),
            };
            let t = ks.signing_key().sign(&claims).unwrap();
            let back: Claims<serde_json::Value> =
                ks.verify(&t, "https://ep.test", &["edgeplane:user"], 1500).unwrap();
            prop_assert_eq!(back, claims);
            let i = at % t.len();
            if t.as_bytes()[i] as char != to {
                let mut b = t.clone().into_bytes();
                b[i] = to as u8;
                let changed = String::from_utf8(b).unwrap();
                prop_assert_eq!(
                    ks.verify::<serde_json::Value>(&changed, "https://ep.test", &["edgeplane:user"], 1500)
                        .map(|_| ()),
                    Err(JwtError::Invalid)
                );
            }
        }

        /// Arbitrary strings never verify (and never panic the verifier).
        #[test]
        fn arbitrary_strings_never_verify(s in "[A-Za-z0-9_.-]{0,200}") {
            let ks = KeySet::derive(&RootSecret::new(&[9u8; 32]).unwrap(), 1, 0);
            prop_assert!(ks.verify::<serde_json::Value>(&s, "i", &["a"], 0).is_err());
        }
    }
}
