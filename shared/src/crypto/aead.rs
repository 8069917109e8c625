//! Secrets at rest: AES-256-GCM with a purpose-derived key and the owning row's id as associated
//! data, so a sealed value copied into another row (or another purpose) fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::kdf::{KeyPurpose, RootSecret};
use super::random::random_bytes;
use crate::error::ApiError;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// A sealing key for one purpose. Deliberately has no `Debug` that shows bytes.
pub struct SealingKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

/// Why a sealed value did not open. Callers map this to an internal error: it means tampering, a
/// wrong root secret, or a value moved between rows, never bad user input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

impl SealingKey {
    pub fn derive(root: &RootSecret, purpose: KeyPurpose) -> Self {
        let key = root.derive(purpose);
        Self {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    /// `version || nonce || ciphertext+tag`.
    pub fn seal(&self, row_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, ApiError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let nonce = Nonce::from_slice(&nonce_bytes);
        let ct = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: row_id.as_bytes(),
                },
            )
            .map_err(|_| ApiError::internal())?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, row_id: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(OpenError);
        }
        let nonce = Nonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        self.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: row_id.as_bytes(),
                },
            )
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(purpose: KeyPurpose) -> SealingKey {
        SealingKey::derive(&RootSecret::new(&[9u8; 32]).unwrap(), purpose)
    }

    #[test]
    fn round_trips_and_binds_the_row_id() {
        let k = key(KeyPurpose::IntegrationSecrets);
        let sealed = k.seal("int_1", b"ghp_secret").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"ghp_secret"));
        assert_eq!(k.open("int_1", &sealed).unwrap(), b"ghp_secret");
        assert_eq!(k.open("int_2", &sealed), Err(OpenError));
    }

    #[test]
    fn another_purpose_cannot_open() {
        let sealed = key(KeyPurpose::IntegrationSecrets)
            .seal("row", b"value")
            .unwrap();
        assert_eq!(
            key(KeyPurpose::LlmProviderKeys).open("row", &sealed),
            Err(OpenError)
        );
    }

    #[test]
    fn tampering_and_truncation_fail() {
        let k = key(KeyPurpose::IntegrationSecrets);
        let mut sealed = k.seal("row", b"value").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(k.open("row", &sealed), Err(OpenError));
        assert_eq!(k.open("row", &[1, 2, 3]), Err(OpenError));
    }
}
