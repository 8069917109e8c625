//! Splitting a model's flattened elements across aggregator Durable Objects.
//!
//! One isolate has 128 MB for JavaScript heap and wasm memory together. An aggregator holds its
//! slice of the running sum as `f64` (8 bytes per element) plus a bounded read buffer (one staged
//! piece) and the runtime itself, so a slice is capped at [`DEFAULT_MAX_SHARD_ELEMENTS`]
//! (8 Mi elements = 64 MiB of sum) and a round uses at most [`MAX_SHARDS`] aggregators:
//! 128 Mi parameters (512 MiB as f32) is the largest model one round supports.

use std::ops::Range;

use super::dtype::DType;
use super::layout::ModelLayout;

pub const DEFAULT_MAX_SHARD_ELEMENTS: u64 = 8 * 1024 * 1024;
pub const MAX_SHARDS: u64 = 16;

/// Contiguous, near-equal element ranges covering `0..total`.
pub fn plan(total: u64, max_per_shard: u64) -> Result<Vec<Range<u64>>, String> {
    if total == 0 {
        return Err("the model has no elements".into());
    }
    let max_per_shard = max_per_shard.max(1);
    let shards = total.div_ceil(max_per_shard);
    if shards > MAX_SHARDS {
        return Err(format!(
            "the model has {total} parameters; one round aggregates at most {} ({} shards of {})",
            MAX_SHARDS * max_per_shard,
            MAX_SHARDS,
            max_per_shard
        ));
    }
    let base = total / shards;
    let extra = total % shards;
    let mut out = Vec::with_capacity(shards as usize);
    let mut at = 0;
    for k in 0..shards {
        let len = base + u64::from(k < extra);
        out.push(at..at + len);
        at += len;
    }
    Ok(out)
}

/// A run of elements of one dtype, contiguous in a safetensors file, that maps onto a contiguous
/// run of a shard's accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub dtype: DType,
    /// Absolute byte offset in the file.
    pub byte_start: u64,
    pub count: u64,
    /// Index into the shard's accumulator.
    pub acc_offset: u64,
}

impl Segment {
    pub fn byte_end(&self) -> u64 {
        self.byte_start + self.count * self.dtype.size() as u64
    }
}

/// The byte runs of a safetensors file (whose tensors start at `tensor_starts`, in the layout's
/// canonical order) that hold elements `range` of the flattened model.
pub fn segments(layout: &ModelLayout, tensor_starts: &[u64], range: Range<u64>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut elem = 0u64;
    for (t, start) in layout.tensors.iter().zip(tensor_starts) {
        let n = t.numel();
        let (lo, hi) = (elem.max(range.start), (elem + n).min(range.end));
        if lo < hi {
            out.push(Segment {
                dtype: t.dtype,
                byte_start: start + (lo - elem) * t.dtype.size() as u64,
                count: hi - lo,
                acc_offset: lo - range.start,
            });
        }
        elem += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::layout::TensorSpec;

    #[test]
    fn plans_cover_exactly() {
        let p = plan(10, 4).unwrap();
        assert_eq!(p, vec![0..4, 4..7, 7..10]);
        assert_eq!(plan(8, 8).unwrap(), vec![0..8]);
        assert!(plan(0, 8).is_err());
        assert!(plan(MAX_SHARDS * 10 + 1, 10).is_err());
        assert_eq!(plan(MAX_SHARDS * 10, 10).unwrap().len() as u64, MAX_SHARDS);
    }

    #[test]
    fn segments_split_tensors_at_shard_edges() {
        let layout = ModelLayout {
            tensors: vec![
                TensorSpec {
                    name: "a".into(),
                    dtype: DType::F32,
                    shape: vec![5],
                },
                TensorSpec {
                    name: "b".into(),
                    dtype: DType::F16,
                    shape: vec![3],
                },
            ],
        };
        // a at byte 100 (20 bytes), b at byte 40 (6 bytes): file order need not be layout order.
        let s = segments(&layout, &[100, 40], 3..7);
        assert_eq!(
            s,
            vec![
                Segment {
                    dtype: DType::F32,
                    byte_start: 112,
                    count: 2,
                    acc_offset: 0
                },
                Segment {
                    dtype: DType::F16,
                    byte_start: 40,
                    count: 2,
                    acc_offset: 2
                },
            ]
        );
        assert_eq!(s[1].byte_end(), 44);
    }
}
