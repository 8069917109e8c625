//! Shamir secret sharing over GF(2^127 − 1) in the SDK's encodings, and reconstruction at x = 0.
//!
//! Each device shares two secrets with its peers: `rd_seed` (the self-mask seed, one field
//! element) and `sk1` (its 32-byte pairwise key, which does not fit one element, so it is cut
//! into three 15-byte chunks, each shared on its own). A share's x is the index of the device
//! holding it. Reconstruction refuses fewer than `t` shares, a repeated or zero x, and any value
//! outside the field: with too few shares Lagrange interpolation still returns a number, just
//! not the secret, and the server must never unmask with it.

use super::field::{FieldElement, MODULUS};

/// One share on the wire: `u32be(x) || u128be(y) || u32be(16) || u128be(p)`.
pub const SHARE_LEN: usize = 40;
/// `sk1` is shared in chunks of 15 bytes (120 bits, below the field's 127).
pub const SK1_CHUNK_LEN: usize = 15;
/// 32 bytes zero-padded to 45 make three chunks.
pub const SK1_CHUNKS: usize = 3;
/// A share of `sk1`: `u32be(x) || u32be(3) || u32be(32) || 3 × share`.
pub const SK1_SHARE_LEN: usize = 12 + SK1_CHUNKS * SHARE_LEN;

const SK1_LEN: usize = 32;
/// The modulus as the SDK writes it inside every share: 16 bytes, big-endian.
const MODULUS_LEN: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShareFormatError {
    #[error("a share is {expected} bytes, got {got}")]
    Length { expected: usize, got: usize },
    #[error("the share is over a different field (modulus length {0}, or another modulus)")]
    Modulus(u32),
    #[error("the share's value is not below p")]
    ValueOutOfField,
    #[error("an sk1 share must hold 3 chunks of a 32-byte secret, not {chunks} of {secret_len}")]
    Sk1Shape { chunks: u32, secret_len: u32 },
    #[error("an sk1 share's chunks name holder {chunk}, its header {header}")]
    Sk1ChunkHolder { header: u32, chunk: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReconstructError {
    #[error("{have} shares cannot rebuild a secret shared with threshold {need}")]
    TooFewShares { have: usize, need: usize },
    #[error("the threshold must be at least 1")]
    ZeroThreshold,
    #[error("two shares have the same x = {0}")]
    DuplicateX(u32),
    #[error("a share has x = 0, which is where the secret sits")]
    ZeroX,
    #[error("the rebuilt sk1 chunk {0} does not fit 15 bytes: the shares are inconsistent")]
    Sk1ChunkOverflow(usize),
    #[error("the rebuilt sk1's padding is not zero: the shares are inconsistent")]
    Sk1Padding,
}

/// One point `(x, y)` of a sharing polynomial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub x: u32,
    pub y: FieldElement,
}

impl Share {
    pub fn parse(bytes: &[u8]) -> Result<Self, ShareFormatError> {
        let bytes: &[u8; SHARE_LEN] = bytes.try_into().map_err(|_| ShareFormatError::Length {
            expected: SHARE_LEN,
            got: bytes.len(),
        })?;
        let x = read_u32(bytes, 0);
        let y = read_u128(bytes, 4);
        let modulus_len = read_u32(bytes, 20);
        if modulus_len != MODULUS_LEN || read_u128(bytes, 24) != MODULUS {
            return Err(ShareFormatError::Modulus(modulus_len));
        }
        let y = FieldElement::new(y).ok_or(ShareFormatError::ValueOutOfField)?;
        Ok(Self { x, y })
    }

    pub fn to_bytes(&self) -> [u8; SHARE_LEN] {
        let mut out = [0u8; SHARE_LEN];
        out[0..4].copy_from_slice(&self.x.to_be_bytes());
        out[4..20].copy_from_slice(&self.y.value().to_be_bytes());
        out[20..24].copy_from_slice(&MODULUS_LEN.to_be_bytes());
        out[24..40].copy_from_slice(&MODULUS.to_be_bytes());
        out
    }
}

/// One holder's share of an `sk1`: a share of each of its three chunks, all at the same x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sk1Share {
    pub x: u32,
    pub chunks: [FieldElement; SK1_CHUNKS],
}

impl Sk1Share {
    pub fn parse(bytes: &[u8]) -> Result<Self, ShareFormatError> {
        if bytes.len() != SK1_SHARE_LEN {
            return Err(ShareFormatError::Length {
                expected: SK1_SHARE_LEN,
                got: bytes.len(),
            });
        }
        let x = read_u32(bytes, 0);
        let (chunks, secret_len) = (read_u32(bytes, 4), read_u32(bytes, 8));
        if chunks as usize != SK1_CHUNKS || secret_len as usize != SK1_LEN {
            return Err(ShareFormatError::Sk1Shape { chunks, secret_len });
        }
        let mut values = [FieldElement::ZERO; SK1_CHUNKS];
        for (chunk, value) in values.iter_mut().enumerate() {
            let start = 12 + chunk * SHARE_LEN;
            let share = Share::parse(&bytes[start..start + SHARE_LEN])?;
            if share.x != x {
                return Err(ShareFormatError::Sk1ChunkHolder {
                    header: x,
                    chunk: share.x,
                });
            }
            *value = share.y;
        }
        Ok(Self { x, chunks: values })
    }

    pub fn to_bytes(&self) -> [u8; SK1_SHARE_LEN] {
        let mut out = [0u8; SK1_SHARE_LEN];
        out[0..4].copy_from_slice(&self.x.to_be_bytes());
        out[4..8].copy_from_slice(&(SK1_CHUNKS as u32).to_be_bytes());
        out[8..12].copy_from_slice(&(SK1_LEN as u32).to_be_bytes());
        for (chunk, y) in self.chunks.iter().enumerate() {
            let start = 12 + chunk * SHARE_LEN;
            out[start..start + SHARE_LEN].copy_from_slice(&Share { x: self.x, y: *y }.to_bytes());
        }
        out
    }

    fn chunk(&self, chunk: usize) -> Share {
        Share {
            x: self.x,
            y: self.chunks[chunk],
        }
    }
}

/// The secret (the polynomial at x = 0) from at least `threshold` shares at distinct non-zero x.
pub fn reconstruct(shares: &[Share], threshold: usize) -> Result<FieldElement, ReconstructError> {
    if threshold == 0 {
        return Err(ReconstructError::ZeroThreshold);
    }
    if shares.len() < threshold {
        return Err(ReconstructError::TooFewShares {
            have: shares.len(),
            need: threshold,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for share in shares {
        if share.x == 0 {
            return Err(ReconstructError::ZeroX);
        }
        if !seen.insert(share.x) {
            return Err(ReconstructError::DuplicateX(share.x));
        }
    }
    // Lagrange at 0: secret = Σ y_i · Π_{j≠i} x_j / (x_j − x_i).
    let mut secret = FieldElement::ZERO;
    for (i, share) in shares.iter().enumerate() {
        let x_i = FieldElement::reduce(u128::from(share.x));
        let mut numerator = FieldElement::ONE;
        let mut denominator = FieldElement::ONE;
        for (j, other) in shares.iter().enumerate() {
            if i != j {
                let x_j = FieldElement::reduce(u128::from(other.x));
                numerator = numerator * x_j;
                denominator = denominator * (x_j - x_i);
            }
        }
        // Distinct x below 2^32 < p make every difference non-zero, so the inverse exists.
        let inverse = denominator
            .inverse()
            .ok_or(ReconstructError::DuplicateX(share.x))?;
        secret = secret + share.y * numerator * inverse;
    }
    Ok(secret)
}

/// A survivor's self-mask seed: the rebuilt element as the 32 big-endian bytes the PRG is seeded
/// with. (The SDK shares `rd_seed mod p`; a device that seeded its mask with a larger `rd_seed`
/// cannot be unmasked, which the canary check then reports.)
pub fn reconstruct_self_mask_seed(
    shares: &[Share],
    threshold: usize,
) -> Result<[u8; 32], ReconstructError> {
    let secret = reconstruct(shares, threshold)?;
    let mut seed = [0u8; 32];
    seed[16..].copy_from_slice(&secret.value().to_be_bytes());
    Ok(seed)
}

/// A dropped device's `sk1` from at least `threshold` holders' shares: each chunk rebuilt,
/// written as 15 big-endian bytes, the 45 bytes cut back to 32. Any chunk too wide for 15 bytes
/// or non-zero padding means the shares do not lie on one polynomial, and is refused.
pub fn reconstruct_sk1(
    shares: &[Sk1Share],
    threshold: usize,
) -> Result<[u8; SK1_LEN], ReconstructError> {
    let mut padded = [0u8; SK1_CHUNKS * SK1_CHUNK_LEN];
    for chunk in 0..SK1_CHUNKS {
        let points: Vec<Share> = shares.iter().map(|share| share.chunk(chunk)).collect();
        let value = reconstruct(&points, threshold)?.value();
        if value >> (SK1_CHUNK_LEN * 8) != 0 {
            return Err(ReconstructError::Sk1ChunkOverflow(chunk));
        }
        let bytes = value.to_be_bytes();
        padded[chunk * SK1_CHUNK_LEN..(chunk + 1) * SK1_CHUNK_LEN]
            .copy_from_slice(&bytes[16 - SK1_CHUNK_LEN..]);
    }
    let (key, padding) = padded.split_at(SK1_LEN);
    if padding.iter().any(|byte| *byte != 0) {
        return Err(ReconstructError::Sk1Padding);
    }
    let mut out = [0u8; SK1_LEN];
    out.copy_from_slice(key);
    Ok(out)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

fn read_u128(bytes: &[u8], at: usize) -> u128 {
    let mut word = [0u8; 16];
    word.copy_from_slice(&bytes[at..at + 16]);
    u128::from_be_bytes(word)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Shares at x = 1..=n of the polynomial `secret + Σ c_k x^k` (test-only; devices share).
    pub(crate) fn split(secret: FieldElement, coefficients: &[FieldElement], n: u32) -> Vec<Share> {
        (1..=n)
            .map(|x| {
                let point = FieldElement::reduce(u128::from(x));
                let mut y = FieldElement::ZERO;
                for c in coefficients.iter().rev() {
                    y = y * point + *c;
                }
                Share {
                    x,
                    y: y * point + secret,
                }
            })
            .collect()
    }

    fn element() -> impl Strategy<Value = FieldElement> {
        (0..MODULUS).prop_map(FieldElement::reduce)
    }

    proptest! {
        #[test]
        fn any_t_shares_rebuild_the_secret(
            secret in element(),
            coefficients in proptest::collection::vec(element(), 0..6),
            extra in 0u32..4,
            pick in any::<u64>(),
        ) {
            let t = coefficients.len() + 1;
            let n = t as u32 + extra;
            let shares = split(secret, &coefficients, n);
            // A rotating window of t shares, so subsets other than the first t are used too.
            let start = (pick % u64::from(n)) as usize;
            let chosen: Vec<Share> = (0..t).map(|k| shares[(start + k) % n as usize]).collect();
            prop_assert_eq!(reconstruct(&chosen, t).unwrap(), secret);
            prop_assert_eq!(reconstruct(&shares, t).unwrap(), secret);
            for share in &shares {
                prop_assert_eq!(Share::parse(&share.to_bytes()).unwrap(), *share);
            }
        }

        #[test]
        fn fewer_than_t_shares_are_refused(
            secret in element(),
            coefficients in proptest::collection::vec(element(), 1..6),
        ) {
            let t = coefficients.len() + 1;
            let shares = split(secret, &coefficients, t as u32);
            prop_assert_eq!(
                reconstruct(&shares[..t - 1], t),
                Err(ReconstructError::TooFewShares { have: t - 1, need: t })
            );
        }

        #[test]
        fn sk1_round_trips_through_chunks(key in any::<[u8; 32]>(), c in proptest::collection::vec(element(), 2)) {
            let mut padded = [0u8; 45];
            padded[..32].copy_from_slice(&key);
            let per_chunk: Vec<Vec<Share>> = padded
                .chunks(SK1_CHUNK_LEN)
                .map(|chunk| {
                    let mut wide = [0u8; 16];
                    wide[1..].copy_from_slice(chunk);
                    split(FieldElement::reduce(u128::from_be_bytes(wide)), &c, 4)
                })
                .collect();
            let holders: Vec<Sk1Share> = (0..4)
                .map(|h| Sk1Share {
                    x: h as u32 + 1,
                    chunks: [per_chunk[0][h].y, per_chunk[1][h].y, per_chunk[2][h].y],
                })
                .collect();
            for holder in &holders {
                prop_assert_eq!(Sk1Share::parse(&holder.to_bytes()).unwrap(), *holder);
            }
            prop_assert_eq!(reconstruct_sk1(&holders[1..], 3).unwrap(), key);
            prop_assert!(reconstruct_sk1(&holders[..2], 3).is_err());
        }
    }

    #[test]
    fn duplicate_and_zero_x_are_refused() {
        let one = FieldElement::ONE;
        let shares = split(one, &[one], 3);
        assert_eq!(
            reconstruct(&[shares[0], shares[1], shares[0]], 2),
            Err(ReconstructError::DuplicateX(1))
        );
        let zero = Share { x: 0, y: one };
        assert_eq!(
            reconstruct(&[zero, shares[1]], 2),
            Err(ReconstructError::ZeroX)
        );
        assert_eq!(
            reconstruct(&shares, 0),
            Err(ReconstructError::ZeroThreshold)
        );
    }

    #[test]
    fn malformed_shares_are_refused() {
        let share = Share {
            x: 2,
            y: FieldElement::ONE,
        }
        .to_bytes();
        assert!(matches!(
            Share::parse(&share[..39]),
            Err(ShareFormatError::Length { .. })
        ));
        let mut other_field = share;
        other_field[39] ^= 2;
        assert!(matches!(
            Share::parse(&other_field),
            Err(ShareFormatError::Modulus(16))
        ));
        let mut too_big = share;
        too_big[4..20].copy_from_slice(&MODULUS.to_be_bytes());
        assert_eq!(
            Share::parse(&too_big),
            Err(ShareFormatError::ValueOutOfField)
        );
    }
}
