//! The X25519 agreements of SecAgg+. Each device holds two key pairs: `sk1`/`pk1` for the
//! pairwise masks and `sk2`/`pk2` for encrypting the Shamir shares it sends its peers. Both
//! agreements are hashed with HKDF-SHA256 (no salt) under a purpose string, so the two keys a pair
//! of devices shares can never be confused. The server uses only the first: after a device
//! drops, it rebuilds that device's `sk1` and recomputes the pairwise seeds with the survivors.
//! (`crypto::kdf` derives the deployment's own keys under its fixed salt; the SDK's HKDF has none,
//! so this calls `hkdf` directly. X25519 is `ed25519-compact`'s, already in the workspace.)

use ed25519_compact::x25519;
use hkdf::Hkdf;
use sha2::Sha256;

use super::prg::MaskSign;

/// HKDF info for the seed of a pairwise mask, as the SDK names it.
const PAIRWISE_MASK_INFO: &[u8] = b"secagg-pairwise-mask";
/// HKDF info for the AES-256-GCM key that protects shares in transit.
const SHARE_ENCRYPTION_INFO: &[u8] = b"secagg-share-encryption";

/// An X25519 key is 32 raw bytes on the wire (private and public alike).
pub const KEY_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The agreement produced the all-zero point: the peer's public key has small order.
    #[error("the public key has small order; no shared secret exists")]
    WeakPublicKey,
}

/// The public key X25519 derives from a raw private key (the scalar is clamped, as every
/// X25519 implementation does). The server compares this with the advertised `pk1` before it
/// trusts a rebuilt `sk1`.
pub fn public_key(private_key: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], KeyError> {
    x25519::SecretKey::new(*private_key)
        .recover_public_key()
        .map(|pk| *pk)
        .map_err(|_| KeyError::WeakPublicKey)
}

/// The 32-byte seed of the pairwise mask between the owner of `private_key` (an `sk1`) and the
/// owner of `peer_public_key` (a `pk1`). Symmetric: both devices arrive at the same seed. The
/// mask is the PRG over all 32 bytes.
pub fn pairwise_seed(
    private_key: &[u8; KEY_LEN],
    peer_public_key: &[u8; KEY_LEN],
) -> Result<[u8; 32], KeyError> {
    derive(private_key, peer_public_key, PAIRWISE_MASK_INFO)
}

/// The AES-256-GCM key for shares sent between the owner of `private_key` (an `sk2`) and the
/// owner of `peer_public_key` (a `pk2`). Only devices can compute it; the server implements it
/// so tests can prove the relay format byte for byte.
pub fn share_encryption_key(
    private_key: &[u8; KEY_LEN],
    peer_public_key: &[u8; KEY_LEN],
) -> Result<[u8; 32], KeyError> {
    derive(private_key, peer_public_key, SHARE_ENCRYPTION_INFO)
}

fn derive(
    private_key: &[u8; KEY_LEN],
    peer_public_key: &[u8; KEY_LEN],
    info: &[u8],
) -> Result<[u8; 32], KeyError> {
    let shared = x25519::PublicKey::new(*peer_public_key)
        .dh(&x25519::SecretKey::new(*private_key))
        .map_err(|_| KeyError::WeakPublicKey)?;
    let mut out = [0u8; 32];
    // HKDF-SHA256 can expand up to 8160 bytes; 32 always succeeds, but the error stays typed.
    Hkdf::<Sha256>::new(None, &shared[..])
        .expand(info, &mut out)
        .map_err(|_| KeyError::WeakPublicKey)?;
    Ok(out)
}

/// How device `own` applied the pairwise mask it shares with device `peer` (1-based indices):
/// the higher index adds it, the lower subtracts it, so the two cancel in the sum.
pub fn pairwise_sign(own: u32, peer: u32) -> MaskSign {
    if own > peer {
        MaskSign::Add
    } else {
        MaskSign::Subtract
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn both_ends_of_a_pair_derive_the_same_seed(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let (pk_a, pk_b) = (public_key(&a).unwrap(), public_key(&b).unwrap());
            prop_assert_eq!(pairwise_seed(&a, &pk_b).unwrap(), pairwise_seed(&b, &pk_a).unwrap());
            prop_assert_ne!(pairwise_seed(&a, &pk_b).unwrap(), share_encryption_key(&a, &pk_b).unwrap());
        }
    }

    #[test]
    fn a_small_order_public_key_is_refused() {
        assert_eq!(
            pairwise_seed(&[9u8; 32], &[0u8; 32]),
            Err(KeyError::WeakPublicKey)
        );
    }

    #[test]
    fn the_higher_index_adds() {
        assert_eq!(pairwise_sign(3, 1), MaskSign::Add);
        assert_eq!(pairwise_sign(1, 3), MaskSign::Subtract);
    }
}
