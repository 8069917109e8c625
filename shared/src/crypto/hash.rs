//! Hashing and MACs.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lower-case hex SHA-256: the form every stored token and key hash takes, so look-ups by hash are
/// plain equality on an indexed column.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha256(data))
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    hmac_sha256_parts(key, &[data])
}

/// HMAC-SHA256 over the concatenation of `parts`, without building it (a signed message that is
/// a few header bytes and a large body is MACed in place).
pub fn hmac_sha256_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac_key(),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac_key() -> ! {
    // `Hmac::new_from_slice` only rejects keys for fixed-key-size MACs; SHA-256 HMAC has none.
    panic!("HMAC-SHA256 rejected a key, which its specification does not allow")
}

/// SHA-256 that can be stopped and resumed: its running state serializes (as the 104 bytes of
/// sha2's own `SerializableState`), so hashing a large upload can continue in a later request —
/// the next part of the upload — on any isolate.
#[derive(Debug, Clone, Default)]
pub struct ResumableSha256(sha2_resumable::Sha256);

impl ResumableSha256 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        sha2_resumable::Digest::update(&mut self.0, data);
    }

    /// Lower-case hex of the digest of everything fed.
    pub fn finalize_hex(self) -> String {
        hex::encode(sha2_resumable::Digest::finalize(self.0))
    }
}

impl serde::Serialize for ResumableSha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use sha2_resumable::digest::common::hazmat::SerializableState;
        s.serialize_bytes(&self.0.serialize())
    }
}

impl<'de> serde::Deserialize<'de> for ResumableSha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use sha2_resumable::digest::common::hazmat::SerializableState;
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a serialized SHA-256 state")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        let bytes = d.deserialize_bytes(Bytes)?;
        let state = bytes
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::custom("a SHA-256 state of the wrong length"))?;
        sha2_resumable::Sha256::deserialize(state)
            .map(Self)
            .map_err(|_| serde::de::Error::custom("not a SHA-256 state"))
    }
}

/// Compares secrets without leaking, through timing, where they first differ. Lengths are not
/// secret (every value compared here has a public, fixed format).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_resumed_hash_equals_the_whole_hash() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for cut in [0, 1, 63, 64, 65, 4_999, 10_000] {
            let mut h = super::ResumableSha256::new();
            h.update(&data[..cut]);
            let saved = postcard::to_allocvec(&h).unwrap();
            let mut back: super::ResumableSha256 = postcard::from_bytes(&saved).unwrap();
            back.update(&data[cut..]);
            assert_eq!(
                back.finalize_hex(),
                super::sha256_hex(&data),
                "cut at {cut}"
            );
        }
        assert!(postcard::from_bytes::<super::ResumableSha256>(&[3, 1, 2, 3]).is_err());
    }

    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"samf"));
        assert!(!constant_time_eq(b"same", b"same-but-longer"));
    }
}
