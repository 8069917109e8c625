//! One aggregator shard's part of a secure round: the wrapping sum of the survivors' masked
//! vectors over the shard's element range, and, once the masks can be removed, the unmasked,
//! de-quantized average of that range.
//!
//! Devices upload `q + masks` as u32 (mod 2^32), so the fold is a wrapping addition and its
//! order does not matter; the shard holds 4 bytes per element of its range whatever the number
//! of devices, and unmasking regenerates the masks over that range only ([`Unmasker`]), so
//! memory stays O(range).
//!
//! **The canary is the last element.** A masked vector has one element more than the model:
//! elements `0..D` are the model's flattened values in the layout's order (so shard ranges and
//! segments are the plain round's), and element `D` is 0.0 on every device, which quantizes to
//! exactly T/2 ([`quantize::ZERO_QUANTIZED`]). It belongs to the last shard, whose range
//! [`masked_ranges`] extends by one. Last, not first, because the SDK's vectors put it there
//! (`tests/sdk/secagg_vectors.py`) and because no model index moves. Only that shard can check
//! it, so the coordinator asks it first ([`MaskedSum::masked_canary`], [`check_canary`]: one
//! element to unmask) and lets no shard publish unless it passed; the shard's own
//! [`MaskedSum::unmask`] checks it again.
//!
//! Secure rounds average with equal weights: the server never sees a device's sample count
//! next to its values, and weighting would need it inside the mask. So the average is the
//! de-quantized sum divided by n, the number of survivors.

use std::ops::Range;

use super::quantize::{self, dequantize_sum};
use super::unmask::{UnmaskError, Unmasker};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskedError {
    /// The SDK indexes masks with a u32: a masked vector has at most 2^32 elements.
    #[error("element range {start}..{end} passes the masks' 32-bit index space")]
    RangeBeyondIndexSpace { start: u64, end: u64 },
    #[error("{len} values at offset {offset} do not fit a shard of {shard_len}")]
    WindowOutOfRange {
        offset: usize,
        len: usize,
        shard_len: usize,
    },
}

/// The index of the canary in the masked vector of a model of `model_elements` elements; a
/// model whose canary would pass the masks' u32 index space is refused.
pub fn canary_index(model_elements: u64) -> Result<u32, MaskedError> {
    u32::try_from(model_elements).map_err(|_| MaskedError::RangeBeyondIndexSpace {
        start: model_elements,
        end: model_elements + 1,
    })
}

/// The shards' ranges over the masked vector: the model's ranges (`shard::plan`) with the last
/// one extended to hold the canary.
pub fn masked_ranges(model_ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = model_ranges.to_vec();
    if let Some(last) = out.last_mut() {
        last.end += 1;
    }
    out
}

/// A shard's running sum of masked vectors over `start..start + values.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedSum {
    start: u32,
    values: Vec<u32>,
}

impl MaskedSum {
    /// An empty sum over `range` of the masked vector.
    pub fn new(range: Range<u64>) -> Result<Self, MaskedError> {
        let beyond = MaskedError::RangeBeyondIndexSpace {
            start: range.start,
            end: range.end,
        };
        // The last index must be a u32; `end` itself may be 2^32.
        if range.end > u64::from(u32::MAX) + 1 || range.start > range.end {
            return Err(beyond);
        }
        let start = u32::try_from(range.start).map_err(|_| beyond)?;
        let len = (range.end - range.start) as usize;
        Ok(Self {
            start,
            values: vec![0; len],
        })
    }

    pub fn range(&self) -> Range<u64> {
        let start = u64::from(self.start);
        start..start + self.values.len() as u64
    }

    /// The sum so far (to checkpoint it).
    pub fn values(&self) -> &[u32] {
        &self.values
    }

    /// Adds a window of one masked vector, its values for shard slots `offset..offset + len`,
    /// wrapping mod 2^32. A vector streams in window by window; nothing else is held.
    pub fn fold(&mut self, offset: usize, window: &[u32]) -> Result<(), MaskedError> {
        let shard_len = self.values.len();
        let slots = offset
            .checked_add(window.len())
            .and_then(|end| self.values.get_mut(offset..end))
            .ok_or(MaskedError::WindowOutOfRange {
                offset,
                len: window.len(),
                shard_len,
            })?;
        for (slot, value) in slots.iter_mut().zip(window) {
            *slot = slot.wrapping_add(*value);
        }
        Ok(())
    }

    /// The masked sum at the canary, if this shard holds it.
    pub fn masked_canary(&self, canary: u32) -> Option<u32> {
        let offset = canary.checked_sub(self.start)?;
        self.values.get(usize::try_from(offset).ok()?).copied()
    }

    /// Removes the masks from the range, checks the canary if this shard holds it, and leaves
    /// the model's elements as the sum of the survivors' quantized values.
    pub fn unmask(
        mut self,
        unmasker: &Unmasker,
        canary: u32,
    ) -> Result<UnmaskedSlice, UnmaskError> {
        unmasker.unmask_range(self.start, &mut self.values)?;
        // After unmasking, the value at the canary is no longer masked.
        if let Some(value) = self.masked_canary(canary) {
            unmasker.check_canary(value)?;
            // The canary is the vector's last element, so the range's last (`remove` is then
            // a pop); it is no model element.
            self.values.remove((canary - self.start) as usize);
        }
        Ok(UnmaskedSlice {
            start: u64::from(self.start),
            sums: self.values,
            survivors: unmasker.survivors(),
        })
    }
}

/// Checks the canary from its masked sum alone (one element to unmask), so the coordinator can
/// refuse the round before any shard writes a byte.
pub fn check_canary(unmasker: &Unmasker, canary: u32, masked: u32) -> Result<(), UnmaskError> {
    let mut value = [masked];
    unmasker.unmask_range(canary, &mut value)?;
    unmasker.check_canary(value[0])
}

/// A shard's model elements after unmasking: the survivors' quantized sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskedSlice {
    start: u64,
    sums: Vec<u32>,
    survivors: u32,
}

impl UnmaskedSlice {
    /// The model elements this slice covers.
    pub fn range(&self) -> Range<u64> {
        self.start..self.start + self.sums.len() as u64
    }

    /// n, the number of survivors the sums add up.
    pub fn survivors(&self) -> u32 {
        self.survivors
    }

    /// The equal-weight average of the survivors' values, element by element, computed as it is
    /// read so the slice stays at 4 bytes per element. Each value is within one quantization
    /// step (2c/T) of the mean of the clipped updates, and unbiased.
    pub fn averages(&self) -> impl Iterator<Item = f64> + '_ {
        let n = self.survivors.max(1);
        self.sums
            .iter()
            .map(move |sum| dequantize_sum(*sum, n) / f64::from(n))
    }
}

/// One quantization step: the bound on how far an averaged value is from the clipped mean.
pub const QUANTIZATION_STEP: f64 = 2.0 * quantize::CLIPPING_RANGE / quantize::TARGET_RANGE as f64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_range_holds_the_canary() {
        assert_eq!(masked_ranges(&[0..4, 4..7, 7..10]), vec![0..4, 4..7, 7..11]);
        assert_eq!(canary_index(10), Ok(10));
        assert!(canary_index(1u64 << 32).is_err());
        assert!(masked_ranges(&[]).is_empty());
    }

    #[test]
    fn folding_wraps_and_refuses_a_window_outside_the_shard() {
        let mut sum = MaskedSum::new(4..7).unwrap();
        sum.fold(0, &[u32::MAX, 1, 2]).unwrap();
        sum.fold(1, &[u32::MAX, 5]).unwrap();
        assert_eq!(sum.values(), &[u32::MAX, 0, 7]);
        assert_eq!(
            sum.fold(2, &[1, 1]),
            Err(MaskedError::WindowOutOfRange {
                offset: 2,
                len: 2,
                shard_len: 3
            })
        );
        assert_eq!(sum.values(), &[u32::MAX, 0, 7]);
        assert_eq!(sum.masked_canary(6), Some(7));
        assert_eq!(sum.masked_canary(7), None);
        assert_eq!(sum.masked_canary(3), None);
    }

    #[test]
    fn a_range_beyond_the_32_bit_index_space_is_refused() {
        assert!(MaskedSum::new((1u64 << 32) - 1..1u64 << 32).is_ok());
        assert!(MaskedSum::new((1u64 << 32) - 1..(1u64 << 32) + 1).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 5..4;
        assert!(MaskedSum::new(reversed).is_err());
    }
}
