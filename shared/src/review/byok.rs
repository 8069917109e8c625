//! BYOK provider keys sealed so that only the review worker can open them.
//!
//! The gateway and the review worker share `ROOT_SECRET`, so any key derived from it would let
//! the gateway decrypt too. Instead the review worker alone holds `REVIEW_SECRET`; from it an
//! X25519 key pair is derived, and the gateway is configured with the public half only
//! (`REVIEW_BYOK_PUBLIC_KEY`). The gateway seals each key to that public key with an ephemeral
//! X25519 exchange, HKDF-SHA256 and AES-256-GCM (the row id and field bound as associated
//! data); it can seal but never open.
//!
//! Sealed format: `0x01 || kid (8) || ephemeral public key (32) || nonce (12) || ciphertext+tag`.
//! `kid` names the review key pair, so a rotation of `REVIEW_SECRET` is detected rather than
//! surfacing as a decryption failure.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_compact::x25519;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::crypto::{random_bytes, sha256};
use crate::error::ApiError;

const VERSION: u8 = 1;
const KID_LEN: usize = 8;
const HEADER_LEN: usize = 1 + KID_LEN + 32 + 12;

fn kid_of(pk: &x25519::PublicKey) -> [u8; KID_LEN] {
    let d = sha256(pk.as_ref());
    let mut kid = [0u8; KID_LEN];
    kid.copy_from_slice(&d[..KID_LEN]);
    kid
}

fn hkdf32(ikm: &[u8], salt: &[u8], info: &str) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = [0u8; 32];
    // 32 bytes is within HKDF-SHA256's output limit, so expand cannot fail.
    let _ = hk.expand(info.as_bytes(), &mut out);
    out
}

fn seal_key(shared: &[u8], epk: &[u8], rpk: &[u8]) -> Aes256Gcm {
    let mut salt = Vec::with_capacity(64);
    salt.extend_from_slice(epk);
    salt.extend_from_slice(rpk);
    let key = hkdf32(shared, &salt, "edgeplane/v1/byok-seal/aes-256-gcm");
    Aes256Gcm::new(&key.into())
}

/// A sealed value did not open: tampering, a value moved between rows, or a key sealed to
/// another review key pair (see [`SealedKeyInfo::kid`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

/// The public half, configured on the gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct ByokPublicKey {
    pk: x25519::PublicKey,
}

impl std::fmt::Debug for ByokPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByokPublicKey({})", self.kid())
    }
}

impl ByokPublicKey {
    /// Base64url (no padding) of the 32-byte X25519 public key: the `REVIEW_BYOK_PUBLIC_KEY`
    /// format.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim()).ok()?;
        let pk = x25519::PublicKey::from_slice(&bytes).ok()?;
        // An all-zero (or other low-order) point would make the shared secret predictable.
        pk.clear_cofactor().ok()?;
        Some(Self { pk })
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pk.as_ref())
    }

    /// Hex key id, stored next to each sealed key.
    pub fn kid(&self) -> String {
        hex::encode(kid_of(&self.pk))
    }

    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, ApiError> {
        let eph = x25519::SecretKey::new(random_bytes::<32>()?);
        let epk = eph.recover_public_key().map_err(|_| ApiError::internal())?;
        let shared = self.pk.dh(&eph).map_err(|_| ApiError::internal())?;
        if shared.iter().all(|b| *b == 0) {
            return Err(ApiError::internal());
        }
        let cipher = seal_key(shared.as_ref(), epk.as_ref(), self.pk.as_ref());
        let nonce = random_bytes::<12>()?;
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| ApiError::internal())?;
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&kid_of(&self.pk));
        out.extend_from_slice(epk.as_ref());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

/// What can be read from a sealed value without opening it.
pub struct SealedKeyInfo;

impl SealedKeyInfo {
    pub fn kid(sealed: &[u8]) -> Option<String> {
        (sealed.len() > HEADER_LEN && sealed[0] == VERSION)
            .then(|| hex::encode(&sealed[1..1 + KID_LEN]))
    }
}

/// The review worker's secrets, derived from `REVIEW_SECRET` (hex, 32+ bytes).
pub struct ReviewSecret {
    sk: x25519::SecretKey,
    pk: x25519::PublicKey,
    work: Aes256Gcm,
}

impl std::fmt::Debug for ReviewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReviewSecret(<redacted>)")
    }
}

impl ReviewSecret {
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s.trim()).ok()?;
        if bytes.len() < 32 {
            return None;
        }
        let seed = hkdf32(
            &bytes,
            b"edgeplane-review-v1",
            "edgeplane/v1/x25519/byok-keys",
        );
        let sk = x25519::SecretKey::new(seed);
        let pk = sk.recover_public_key().ok()?;
        let work = hkdf32(
            &bytes,
            b"edgeplane-review-v1",
            "edgeplane/v1/aead/review-work",
        );
        Some(Self {
            sk,
            pk,
            work: Aes256Gcm::new(&work.into()),
        })
    }

    pub fn public_key(&self) -> ByokPublicKey {
        ByokPublicKey { pk: self.pk }
    }

    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < HEADER_LEN + 16
            || sealed[0] != VERSION
            || sealed[1..1 + KID_LEN] != kid_of(&self.pk)
        {
            return Err(OpenError);
        }
        let epk = x25519::PublicKey::from_slice(&sealed[1 + KID_LEN..1 + KID_LEN + 32])
            .map_err(|_| OpenError)?;
        let shared = epk.dh(&self.sk).map_err(|_| OpenError)?;
        let cipher = seal_key(shared.as_ref(), epk.as_ref(), self.pk.as_ref());
        let nonce = &sealed[1 + KID_LEN + 32..HEADER_LEN];
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| OpenError)
    }

    /// Seals a review's work in progress (findings between the provider call and the last
    /// posted comment) so a retry resumes without asking the provider again, and nothing of it
    /// is readable at rest. Format: `nonce (12) || ciphertext+tag`, review id as AAD.
    pub fn seal_work(&self, review_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, ApiError> {
        let nonce = random_bytes::<12>()?;
        let ct = self
            .work
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: review_id.as_bytes(),
                },
            )
            .map_err(|_| ApiError::internal())?;
        Ok([nonce.as_slice(), &ct].concat())
    }

    pub fn open_work(&self, review_id: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < 12 + 16 {
            return Err(OpenError);
        }
        self.work
            .decrypt(
                Nonce::from_slice(&sealed[..12]),
                Payload {
                    msg: &sealed[12..],
                    aad: review_id.as_bytes(),
                },
            )
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> ReviewSecret {
        ReviewSecret::from_hex(&hex::encode([b; 32])).unwrap()
    }

    #[test]
    fn seal_to_public_open_with_private() {
        let rs = secret(1);
        let public = ByokPublicKey::parse(&rs.public_key().encode()).unwrap();
        let sealed = public
            .seal("llm_1/api_key", b"sk-ant-api03-secret")
            .unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(SealedKeyInfo::kid(&sealed), Some(public.kid()));
        assert_eq!(
            rs.open("llm_1/api_key", &sealed).unwrap(),
            b"sk-ant-api03-secret"
        );
        // Bound to the row.
        assert_eq!(rs.open("llm_2/api_key", &sealed), Err(OpenError));
        // Another review secret cannot open it.
        assert_eq!(secret(2).open("llm_1/api_key", &sealed), Err(OpenError));
        // Tampering fails.
        let mut t = sealed.clone();
        let n = t.len() - 1;
        t[n] ^= 1;
        assert_eq!(rs.open("llm_1/api_key", &t), Err(OpenError));
        // Every seal uses a fresh ephemeral key.
        assert_ne!(
            public.seal("a", b"x").unwrap(),
            public.seal("a", b"x").unwrap()
        );
    }

    #[test]
    fn rejects_weak_inputs() {
        assert!(ReviewSecret::from_hex("abcd").is_none());
        assert!(ByokPublicKey::parse(&URL_SAFE_NO_PAD.encode([0u8; 32])).is_none());
        assert!(ByokPublicKey::parse("not base64!").is_none());
        assert!(!format!("{:?}", secret(3)).contains("03"));
    }

    #[test]
    fn work_in_progress_round_trips() {
        let rs = secret(4);
        let w = rs.seal_work("rev_1", b"{\"findings\":[]}").unwrap();
        assert_eq!(rs.open_work("rev_1", &w).unwrap(), b"{\"findings\":[]}");
        assert!(rs.open_work("rev_2", &w).is_err());
        assert!(secret(5).open_work("rev_1", &w).is_err());
    }

    #[test]
    fn derivation_is_stable() {
        // The public key scripts compute from a REVIEW_SECRET must match (scripts/review-public-key).
        let rs = ReviewSecret::from_hex(&"11".repeat(32)).unwrap();
        assert_eq!(rs.public_key(), secret(0x11).public_key());
        assert_eq!(
            rs.public_key().encode(),
            "XUdJabEucjTya8Y6zOfruPVAA8DWGLRsktL5CL965ng"
        );
    }
}
