//! Removing the masks from the sum of the survivors' masked vectors, one element range at a time.
//!
//! Each survivor s uploaded `q_s + PRG(rd_seed_s) + Σ_{j≠s} ±PRG(seed_sj)` mod 2^32. Summed over
//! the survivors, the pairwise masks between two survivors cancel (one adds, the other
//! subtracts). What remains is every survivor's self-mask, and the pairwise masks each survivor
//! shares with a device that dropped after stage 2. The server rebuilds the survivors' `rd_seed`
//! and the dropped devices' `sk1` from shares and removes exactly those. Only a device's own
//! `rd_seed` or its `sk1` is ever rebuilt, never both: with both, its masked vector would be
//! readable on its own.
//!
//! An [`Unmasker`] holds only seeds (32 bytes per mask), and [`Unmasker::unmask_range`] works on
//! one slice of the sum: memory is O(range) whatever the number of devices, and each aggregator
//! shard unmasks its own range. A canary element, 0.0 on every device, must come out as exactly
//! `n · T/2`; any other value means a mask was not removed (for instance the SDK 4.17.42 client
//! seeds its self-mask with more than it shares) and nothing may be published.

use std::collections::BTreeSet;

use super::keys::{self, KeyError, KEY_LEN};
use super::prg::{self, MaskSign};
use super::quantize::{TARGET_RANGE, ZERO_QUANTIZED};

/// The most survivors whose quantized sum still fits a u32: n · T must stay below 2^32.
pub const MAX_SURVIVORS: usize = (u32::MAX / TARGET_RANGE) as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnmaskError {
    #[error("there are no survivors to unmask")]
    NoSurvivors,
    #[error("{0} survivors overflow the 32-bit sum of quantized values")]
    TooManySurvivors(usize),
    #[error("device index 0 does not exist; indices are 1-based")]
    ZeroIndex,
    #[error("device {0} is listed twice")]
    DuplicateDevice(u32),
    #[error("device {0} is listed both as a survivor and as dropped; that would reveal its input")]
    SurvivorAndDropped(u32),
    #[error("the sk1 rebuilt for dropped device {0} does not match the pk1 it advertised")]
    Sk1DoesNotMatchPk1(u32),
    #[error("a key agreement failed: {0}")]
    Key(#[from] KeyError),
    #[error("the element range starting at {start} with {len} elements passes index 2^32 − 1")]
    RangeOverflow { start: u32, len: usize },
    #[error("the canary element is {got} after unmasking, expected {expected}: the masks did not cancel")]
    CanaryMismatch { expected: u32, got: u32 },
}

/// A device that uploaded a masked vector, with its advertised `pk1` and its rebuilt self-mask
/// seed (`shamir::reconstruct_self_mask_seed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Survivor {
    pub index: u32,
    pub pk1: [u8; KEY_LEN],
    pub self_mask_seed: [u8; 32],
}

/// A device that shared its keys but uploaded no masked vector, with its advertised `pk1` and
/// its rebuilt `sk1` (`shamir::reconstruct_sk1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub index: u32,
    pub pk1: [u8; KEY_LEN],
    pub sk1: [u8; KEY_LEN],
}

/// The masks to remove from the survivors' sum, as seeds and signs.
#[derive(Debug, Clone)]
pub struct Unmasker {
    survivors: u32,
    /// (seed, sign to apply to the sum) for every mask that did not cancel.
    removals: Vec<([u8; 32], MaskSign)>,
}

impl Unmasker {
    /// Checks the roster and derives the seeds: each dropped device's rebuilt `sk1` must give the
    /// `pk1` it advertised, else a wrong key would add a second mask instead of removing one.
    pub fn new(survivors: &[Survivor], dropped: &[Dropped]) -> Result<Self, UnmaskError> {
        if survivors.is_empty() {
            return Err(UnmaskError::NoSurvivors);
        }
        if survivors.len() > MAX_SURVIVORS {
            return Err(UnmaskError::TooManySurvivors(survivors.len()));
        }
        let mut survivor_indices = BTreeSet::new();
        for survivor in survivors {
            if survivor.index == 0 {
                return Err(UnmaskError::ZeroIndex);
            }
            if !survivor_indices.insert(survivor.index) {
                return Err(UnmaskError::DuplicateDevice(survivor.index));
            }
        }
        let mut dropped_indices = BTreeSet::new();
        for device in dropped {
            if device.index == 0 {
                return Err(UnmaskError::ZeroIndex);
            }
            if survivor_indices.contains(&device.index) {
                return Err(UnmaskError::SurvivorAndDropped(device.index));
            }
            if !dropped_indices.insert(device.index) {
                return Err(UnmaskError::DuplicateDevice(device.index));
            }
        }

        let mut removals = Vec::with_capacity(survivors.len() * (1 + dropped.len()));
        // Every survivor added its own self-mask.
        for survivor in survivors {
            removals.push((survivor.self_mask_seed, MaskSign::Subtract));
        }
        for device in dropped {
            if keys::public_key(&device.sk1)? != device.pk1 {
                return Err(UnmaskError::Sk1DoesNotMatchPk1(device.index));
            }
            for survivor in survivors {
                let seed = keys::pairwise_seed(&device.sk1, &survivor.pk1)?;
                // Undo what the survivor applied for this pair.
                let applied = keys::pairwise_sign(survivor.index, device.index);
                removals.push((seed, applied.opposite()));
            }
        }
        Ok(Self {
            survivors: survivors.len() as u32,
            removals,
        })
    }

    /// The number of survivors: the n of de-quantization and of the canary.
    pub fn survivors(&self) -> u32 {
        self.survivors
    }

    /// Removes every mask from `sum`, the wrapping sum of the survivors' masked vectors over the
    /// elements `[start, start + sum.len())`. The result is the sum of their quantized values.
    pub fn unmask_range(&self, start: u32, sum: &mut [u32]) -> Result<(), UnmaskError> {
        let fits = u32::try_from(sum.len())
            .ok()
            .and_then(|len| start.checked_add(len.saturating_sub(1)))
            .is_some();
        if !fits {
            return Err(UnmaskError::RangeOverflow {
                start,
                len: sum.len(),
            });
        }
        for (seed, sign) in &self.removals {
            prg::apply(seed, start, sum, *sign);
        }
        Ok(())
    }

    /// Checks the unmasked canary element: n devices each contributed exactly T/2.
    pub fn check_canary(&self, unmasked: u32) -> Result<(), UnmaskError> {
        // n ≤ MAX_SURVIVORS keeps n · T/2 within a u32.
        let expected = self.survivors * ZERO_QUANTIZED;
        if unmasked == expected {
            Ok(())
        } else {
            Err(UnmaskError::CanaryMismatch {
                expected,
                got: unmasked,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A device of a simulated round: its keys, self-mask seed and quantized update.
    struct Device {
        index: u32,
        sk1: [u8; 32],
        pk1: [u8; 32],
        seed: [u8; 32],
        quantized: Vec<u32>,
    }

    fn roster(secrets: &[([u8; 32], [u8; 32])], len: usize) -> Vec<Device> {
        secrets
            .iter()
            .enumerate()
            .map(|(i, (sk1, seed))| Device {
                index: i as u32 + 1,
                sk1: *sk1,
                pk1: keys::public_key(sk1).unwrap(),
                seed: *seed,
                // Canary (element 0) is 0.0 → T/2; the rest are arbitrary values on the scale.
                quantized: (0..len)
                    .map(|e| {
                        if e == 0 {
                            ZERO_QUANTIZED
                        } else {
                            u32::from(seed[e % 32]) * 257
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// What device `me` uploads, masked against every other device of the roster.
    fn masked(me: &Device, all: &[Device]) -> Vec<u32> {
        let mut out = me.quantized.clone();
        prg::apply(&me.seed, 0, &mut out, MaskSign::Add);
        for peer in all.iter().filter(|peer| peer.index != me.index) {
            let seed = keys::pairwise_seed(&me.sk1, &peer.pk1).unwrap();
            prg::apply(
                &seed,
                0,
                &mut out,
                keys::pairwise_sign(me.index, peer.index),
            );
        }
        out
    }

    fn split(all: &[Device], dropped: &BTreeSet<u32>) -> (Vec<Survivor>, Vec<Dropped>) {
        let survivors = all
            .iter()
            .filter(|d| !dropped.contains(&d.index))
            .map(|d| Survivor {
                index: d.index,
                pk1: d.pk1,
                self_mask_seed: d.seed,
            })
            .collect();
        let gone = all
            .iter()
            .filter(|d| dropped.contains(&d.index))
            .map(|d| Dropped {
                index: d.index,
                pk1: d.pk1,
                sk1: d.sk1,
            })
            .collect();
        (survivors, gone)
    }

    fn masked_sum(all: &[Device], dropped: &BTreeSet<u32>, len: usize) -> Vec<u32> {
        let mut sum = vec![0u32; len];
        for device in all.iter().filter(|d| !dropped.contains(&d.index)) {
            for (acc, value) in sum.iter_mut().zip(masked(device, all)) {
                *acc = acc.wrapping_add(value);
            }
        }
        sum
    }

    /// Per device (sk1, self-mask seed), the dropped indices, and the vector length.
    type RoundShape = (Vec<([u8; 32], [u8; 32])>, BTreeSet<u32>, usize);

    fn round() -> impl Strategy<Value = RoundShape> {
        (2usize..7, 1usize..24).prop_flat_map(|(n, len)| {
            (
                proptest::collection::vec(any::<([u8; 32], [u8; 32])>(), n),
                proptest::collection::btree_set(1..=(n as u32), 0..n),
                Just(len),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn masks_cancel_for_any_roster_and_dropouts((secrets, dropped, len) in round()) {
            let all = roster(&secrets, len);
            let (survivors, gone) = split(&all, &dropped);
            let unmasker = Unmasker::new(&survivors, &gone).unwrap();
            let mut sum = masked_sum(&all, &dropped, len);
            unmasker.unmask_range(0, &mut sum).unwrap();
            let expected: Vec<u32> = (0..len)
                .map(|e| survivors.iter().fold(0u32, |acc, s| {
                    acc.wrapping_add(all[s.index as usize - 1].quantized[e])
                }))
                .collect();
            prop_assert_eq!(&sum, &expected);
            prop_assert_eq!(unmasker.check_canary(sum[0]), Ok(()));
        }

        #[test]
        fn unmasking_range_by_range_equals_the_whole_vector(
            (secrets, dropped, len) in round(),
            cuts in proptest::collection::vec(0usize..24, 0..4),
        ) {
            let all = roster(&secrets, len);
            let (survivors, gone) = split(&all, &dropped);
            let unmasker = Unmasker::new(&survivors, &gone).unwrap();
            let masked = masked_sum(&all, &dropped, len);
            let mut whole = masked.clone();
            unmasker.unmask_range(0, &mut whole).unwrap();
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % (len + 1)).collect();
            bounds.extend([0, len]);
            bounds.sort_unstable();
            let mut pieced = Vec::with_capacity(len);
            for pair in bounds.windows(2) {
                let mut slice = masked[pair[0]..pair[1]].to_vec();
                unmasker.unmask_range(pair[0] as u32, &mut slice).unwrap();
                pieced.extend(slice);
            }
            prop_assert_eq!(pieced, whole);
        }
    }

    #[test]
    fn a_device_both_survivor_and_dropped_is_refused() {
        let all = roster(&[([1; 32], [2; 32]), ([3; 32], [4; 32])], 4);
        let (survivors, _) = split(&all, &BTreeSet::new());
        let both = Dropped {
            index: 2,
            pk1: all[1].pk1,
            sk1: all[1].sk1,
        };
        assert_eq!(
            Unmasker::new(&survivors, &[both]).unwrap_err(),
            UnmaskError::SurvivorAndDropped(2)
        );
        assert_eq!(
            Unmasker::new(&[survivors[0], survivors[0]], &[]).unwrap_err(),
            UnmaskError::DuplicateDevice(1)
        );
        assert_eq!(
            Unmasker::new(&[], &[]).unwrap_err(),
            UnmaskError::NoSurvivors
        );
    }

    #[test]
    fn a_rebuilt_sk1_that_does_not_match_its_pk1_is_refused() {
        let all = roster(
            &[([1; 32], [2; 32]), ([3; 32], [4; 32]), ([5; 32], [6; 32])],
            4,
        );
        let (survivors, mut gone) = split(&all, &BTreeSet::from([3]));
        gone[0].sk1[0] ^= 0x80;
        assert_eq!(
            Unmasker::new(&survivors, &gone).unwrap_err(),
            UnmaskError::Sk1DoesNotMatchPk1(3)
        );
    }

    #[test]
    fn a_self_mask_left_in_the_sum_fails_the_canary() {
        let all = roster(&[([1; 32], [2; 32]), ([3; 32], [4; 32])], 3);
        let dropped = BTreeSet::new();
        let (mut survivors, gone) = split(&all, &dropped);
        survivors[1].self_mask_seed[0] ^= 1;
        let unmasker = Unmasker::new(&survivors, &gone).unwrap();
        let mut sum = masked_sum(&all, &dropped, 3);
        unmasker.unmask_range(0, &mut sum).unwrap();
        assert!(matches!(
            unmasker.check_canary(sum[0]),
            Err(UnmaskError::CanaryMismatch {
                expected: 65536,
                ..
            })
        ));
    }

    #[test]
    fn a_range_past_the_last_index_is_refused() {
        let all = roster(&[([1; 32], [2; 32]), ([3; 32], [4; 32])], 1);
        let (survivors, gone) = split(&all, &BTreeSet::new());
        let unmasker = Unmasker::new(&survivors, &gone).unwrap();
        assert!(unmasker.unmask_range(u32::MAX, &mut [0u32; 1]).is_ok());
        assert_eq!(
            unmasker.unmask_range(u32::MAX, &mut [0u32; 2]),
            Err(UnmaskError::RangeOverflow {
                start: u32::MAX,
                len: 2
            })
        );
    }
}
