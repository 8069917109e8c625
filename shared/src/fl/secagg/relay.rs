//! The share ciphertexts the server relays between devices in stage 2.
//!
//! Device i encrypts, for each peer j, its share of its own `rd_seed` and of its `sk1` under an
//! AES-256-GCM key only i and j can derive (`keys::share_encryption_key`). The server cannot
//! open them; it checks only their shape, so a malformed upload is refused when it arrives
//! instead of failing on the peer. The wire form is `nonce(12) || ciphertext || tag(16)`, and the
//! plaintext is `u32be(40) || rd_seed share (40) || sk1 share (132)`, 176 bytes, so every valid
//! ciphertext is exactly 204 bytes.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

use super::shamir::{Share, ShareFormatError, Sk1Share, SHARE_LEN, SK1_SHARE_LEN};

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// `u32be(40) || rd_seed share || sk1 share`.
pub const PLAINTEXT_LEN: usize = 4 + SHARE_LEN + SK1_SHARE_LEN;
pub const CIPHERTEXT_LEN: usize = NONCE_LEN + PLAINTEXT_LEN + TAG_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("a share ciphertext is {CIPHERTEXT_LEN} bytes, got {0}")]
    CiphertextLength(usize),
    #[error("a share plaintext is {PLAINTEXT_LEN} bytes, got {0}")]
    PlaintextLength(usize),
    #[error("the plaintext's rd_seed share length is {0}, not 40")]
    SeedShareLength(u32),
    #[error("the share ciphertext does not authenticate under this key")]
    Authentication,
    #[error(transparent)]
    Share(#[from] ShareFormatError),
}

/// A relayed share ciphertext whose shape has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareCiphertext(Vec<u8>);

impl ShareCiphertext {
    pub fn parse(bytes: &[u8]) -> Result<Self, RelayError> {
        if bytes.len() != CIPHERTEXT_LEN {
            return Err(RelayError::CiphertextLength(bytes.len()));
        }
        Ok(Self(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Opens the ciphertext with the pair's share key: what the receiving device does. The
    /// server never holds this key; it is here so tests prove the format against the SDK.
    pub fn open(&self, key: &[u8; 32]) -> Result<SharePlaintext, RelayError> {
        let (nonce, sealed) = self.0.split_at(NONCE_LEN);
        let plaintext = Aes256Gcm::new(key.into())
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| RelayError::Authentication)?;
        SharePlaintext::parse(&plaintext)
    }
}

/// What one device tells one peer: the peer's share of the sender's `rd_seed` and `sk1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharePlaintext {
    pub rd_seed: Share,
    pub sk1: Sk1Share,
}

impl SharePlaintext {
    pub fn parse(bytes: &[u8]) -> Result<Self, RelayError> {
        if bytes.len() != PLAINTEXT_LEN {
            return Err(RelayError::PlaintextLength(bytes.len()));
        }
        let (prefix, rest) = bytes.split_at(4);
        let seed_len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if seed_len as usize != SHARE_LEN {
            return Err(RelayError::SeedShareLength(seed_len));
        }
        let (seed, sk1) = rest.split_at(SHARE_LEN);
        Ok(Self {
            rd_seed: Share::parse(seed)?,
            sk1: Sk1Share::parse(sk1)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_add_up_to_the_sdk_format() {
        assert_eq!(PLAINTEXT_LEN, 176);
        assert_eq!(CIPHERTEXT_LEN, 204);
    }

    #[test]
    fn a_ciphertext_of_another_length_is_refused() {
        assert_eq!(
            ShareCiphertext::parse(&[0u8; 203]),
            Err(RelayError::CiphertextLength(203))
        );
        assert_eq!(
            ShareCiphertext::parse(&[]),
            Err(RelayError::CiphertextLength(0))
        );
    }

    #[test]
    fn a_wrong_key_does_not_authenticate() {
        let ciphertext = ShareCiphertext::parse(&[7u8; CIPHERTEXT_LEN]).unwrap();
        assert_eq!(ciphertext.open(&[1u8; 32]), Err(RelayError::Authentication));
    }
}
