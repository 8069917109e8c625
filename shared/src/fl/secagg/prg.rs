//! The SDK's mask generator: element `i` of the stream for `seed` is the first four bytes of
//! SHA-256(seed || u32be(i)), read big-endian. Every element depends only on its own index, so a
//! shard regenerates exactly its slice `[start, end)` without producing the elements before it;
//! this is what keeps unmasking O(range) in memory and spreads it over the aggregator shards.
//! It hashes with `sha2` directly rather than `crypto::sha256` so the seed is absorbed once and
//! the per-element hash never allocates: this loop is the floor of a secure round's cost.

use sha2::{Digest, Sha256};

/// Whether a mask is added to or subtracted from a vector (mod 2^32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskSign {
    Add,
    Subtract,
}

impl MaskSign {
    pub fn opposite(self) -> Self {
        match self {
            MaskSign::Add => MaskSign::Subtract,
            MaskSign::Subtract => MaskSign::Add,
        }
    }
}

/// Element `index` of the stream for `seed`.
pub fn element(seed: &[u8], index: u32) -> u32 {
    let digest = Sha256::new()
        .chain_update(seed)
        .chain_update(index.to_be_bytes())
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The elements `[start, start + len)` of the stream for `seed`.
pub fn elements(seed: &[u8], start: u32, len: usize) -> Vec<u32> {
    let mut out = vec![0u32; len];
    apply(seed, start, &mut out, MaskSign::Add);
    out
}

/// Adds (or subtracts) the stream's elements `[start, start + acc.len())` into `acc`, wrapping
/// mod 2^32, without allocating: the server applies one mask after another to the same slice.
/// Indices past `u32::MAX` do not exist in the SDK's format; the caller bounds the range (see
/// `unmask::ElementRange`).
pub fn apply(seed: &[u8], start: u32, acc: &mut [u32], sign: MaskSign) {
    let prefix = Sha256::new().chain_update(seed);
    for (offset, slot) in acc.iter_mut().enumerate() {
        let index = start.wrapping_add(offset as u32);
        let digest = prefix.clone().chain_update(index.to_be_bytes()).finalize();
        let value = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        *slot = match sign {
            MaskSign::Add => slot.wrapping_add(value),
            MaskSign::Subtract => slot.wrapping_sub(value),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_slice_equals_the_same_slice_of_the_whole_stream(
            seed in proptest::collection::vec(any::<u8>(), 0..40),
            start in 0u32..64,
            len in 0usize..64,
        ) {
            let whole = elements(&seed, 0, 128);
            let slice = elements(&seed, start, len);
            prop_assert_eq!(&slice[..], &whole[start as usize..start as usize + len]);
            for (offset, value) in slice.iter().enumerate() {
                prop_assert_eq!(*value, element(&seed, start + offset as u32));
            }
        }

        #[test]
        fn subtracting_undoes_adding(seed in any::<[u8; 32]>(), base in proptest::collection::vec(any::<u32>(), 0..32)) {
            let mut acc = base.clone();
            apply(&seed, 7, &mut acc, MaskSign::Add);
            apply(&seed, 7, &mut acc, MaskSign::Subtract);
            prop_assert_eq!(acc, base);
        }
    }
}
