//! The weighted FedAvg fold and the publish step.
//!
//! An accumulator holds `sum_i w_i * s_i * delta_i` in `f64` for its slice of the model, where
//! `w_i` is the update's sample count and `s_i = min(1, clip_norm / ||delta_i||)` its clipping
//! factor. Each update is folded straight from its (staged) bytes, so memory is the accumulator
//! plus one read window: O(model), never O(participants x model). Publishing divides by
//! `sum_i w_i`, adds Gaussian noise once if configured, adds the base, and rounds to the base dtype.

use half::bf16;

use super::dtype::DType;
use super::noise::Gaussian;

/// Folds contiguous little-endian elements of `dtype` into `sum` (one element per `f64`).
/// `bytes.len()` must be `sum.len() * dtype.size()`; extra bytes or slots are ignored.
///
/// This is the hot loop of aggregation, and it is bound by memory traffic, so each dtype's arm is
/// one element-wise loop that LLVM vectorizes: on wasm32 with `simd128` (`.cargo/config.toml`)
/// a promote, a multiply and an add on `f64x2` lanes; natively on SSE2/AVX lanes. Every element
/// still computes `sum[i] + weight * x[i]` with the same two roundings (no fused multiply-add, no
/// reassociation), so the sums are bit for bit those of [`fold_slice_reference`]; a test holds
/// them to it, and the bench checks it again inside the wasm32 build.
#[inline]
pub fn fold_slice(dtype: DType, bytes: &[u8], sum: &mut [f64], weight: f64) {
    match dtype {
        DType::F32 => fold_elements(bytes, sum, weight, |e| f32::from_le_bytes(e) as f64),
        DType::F64 => fold_elements(bytes, sum, weight, f64::from_le_bytes),
        // A bfloat16 is the upper half of an f32, so widening through f32 is exact; `half`'s
        // `to_f32` is a shift and a select that vectorizes, its `to_f64` branches per element.
        DType::BF16 => fold_elements(bytes, sum, weight, |e| {
            bf16::from_le_bytes(e).to_f32() as f64
        }),
        // float16 stays scalar: wasm32 has no f16 instructions and `half`'s software conversion
        // branches on zero, subnormal, infinity and NaN.
        DType::F16 => fold_elements(bytes, sum, weight, |e: [u8; 2]| DType::F16.decode(&e)),
    }
}

/// One element-wise loop over `N`-byte elements. Fixed-size arrays leave no bounds checks in the
/// loop body, which is what lets LLVM vectorize it.
#[inline(always)]
fn fold_elements<const N: usize>(
    bytes: &[u8],
    sum: &mut [f64],
    weight: f64,
    widen: impl Fn([u8; N]) -> f64,
) {
    let (elements, _) = bytes.as_chunks::<N>();
    for (s, e) in sum.iter_mut().zip(elements) {
        *s += weight * widen(*e);
    }
}

/// The definition [`fold_slice`] must equal bit for bit: one element at a time, decoded by
/// [`DType::decode`]. Kept as the oracle for the vectorized fold (native tests; the wasm32 check
/// in `bench/fl-kernel`), never on a hot path.
pub fn fold_slice_reference(dtype: DType, bytes: &[u8], sum: &mut [f64], weight: f64) {
    for (s, b) in sum.iter_mut().zip(bytes.chunks_exact(dtype.size())) {
        *s += weight * dtype.decode(b);
    }
}

/// Elements per tile in [`fold_batch`]: the tile's partial sums stay in L1 cache.
const TILE: usize = 1024;

/// Folds several updates at once: `sum[i] += sum_k w_k * x_k[i]`. Each source holds
/// `sum.len()` elements of `dtype`. The running sum is read and written once per batch instead
/// of once per update, which is what bounds a single fold (memory traffic, not arithmetic); the
/// result is the same `f64` sum up to floating-point association within the batch.
pub fn fold_batch(dtype: DType, sources: &[(&[u8], f64)], sum: &mut [f64]) {
    let size = dtype.size();
    let mut tile = [0.0f64; TILE];
    let mut at = 0;
    while at < sum.len() {
        let n = TILE.min(sum.len() - at);
        let t = &mut tile[..n];
        t.iter_mut().for_each(|x| *x = 0.0);
        for (bytes, w) in sources {
            if let Some(b) = bytes.get(at * size..(at + n) * size) {
                fold_slice(dtype, b, t, *w);
            }
        }
        for (s, x) in sum[at..at + n].iter_mut().zip(t.iter()) {
            *s += x;
        }
        at += n;
    }
}

/// Folds already-decoded values (the JSON envelope path).
#[inline]
pub fn fold_values(values: impl Iterator<Item = f64>, sum: &mut [f64], weight: f64) {
    for (s, v) in sum.iter_mut().zip(values) {
        *s += weight * v;
    }
}

/// The clipping factor for an update of L2 norm `norm` under `clip_norm`.
pub fn clip_scale(norm: f64, clip_norm: Option<f64>) -> f64 {
    match clip_norm {
        Some(c) if norm > c && norm > 0.0 => c / norm,
        _ => 1.0,
    }
}

/// New values for one run of elements: `base + sum / total_weight (+ noise)`, encoded in
/// `dtype` onto `out`. `base` holds the base version's bytes for the same elements. Returns how
/// many of the encoded values are not finite in `dtype` (an overflow: float16 stops at ±65504),
/// which the caller must refuse to publish: a device would load infinities.
pub fn publish_slice(
    dtype: DType,
    base: &[u8],
    sum: &[f64],
    total_weight: f64,
    mut noise: Option<(&mut Gaussian, f64)>,
    out: &mut Vec<u8>,
) -> u64 {
    let inv = if total_weight > 0.0 {
        1.0 / total_weight
    } else {
        0.0
    };
    let size = dtype.size();
    let mut non_finite = 0;
    for (s, b) in sum.iter().zip(base.chunks_exact(size)) {
        let mut v = dtype.decode(b) + s * inv;
        if let Some((g, sigma)) = noise.as_mut() {
            v += *sigma * g.next_normal();
        }
        let at = out.len();
        dtype.encode(v, out);
        // Judge what was stored, after rounding: 65519 rounds to a finite float16, 65520 does not.
        if !out
            .get(at..at + size)
            .is_some_and(|e| dtype.decode(e).is_finite())
        {
            non_finite += 1;
        }
    }
    non_finite
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_fedavg_matches_the_definition() {
        let updates: [(f64, [f64; 3]); 3] = [
            (10.0, [1.0, 2.0, 3.0]),
            (30.0, [-1.0, 0.5, 0.0]),
            (60.0, [0.25, 0.25, 0.25]),
        ];
        let mut sum = vec![0.0; 3];
        for (w, d) in &updates {
            let mut bytes = Vec::new();
            for v in d {
                DType::F32.encode(*v, &mut bytes);
            }
            fold_slice(DType::F32, &bytes, &mut sum, *w);
        }
        let base = [1.0f32, 1.0, 1.0];
        let mut base_bytes = Vec::new();
        for v in base {
            base_bytes.extend_from_slice(&v.to_le_bytes());
        }
        let mut out = Vec::new();
        assert_eq!(
            publish_slice(DType::F32, &base_bytes, &sum, 100.0, None, &mut out),
            0
        );
        let got: Vec<f32> = out
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        for j in 0..3 {
            let want = 1.0 + updates.iter().map(|(w, d)| w * d[j]).sum::<f64>() / 100.0;
            assert!(
                (got[j] as f64 - want).abs() < 1e-6,
                "{j}: {} vs {want}",
                got[j]
            );
        }
    }

    /// Bitwise equality, except that any NaN equals any NaN: the payload of a NaN that went
    /// through arithmetic is not specified (wasm32 leaves it open), only that it is a NaN.
    fn same_f64(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    fn assert_folds_like_the_reference(dtype: DType, bytes: &[u8], start: &[f64], weight: f64) {
        let mut fast = start.to_vec();
        let mut slow = start.to_vec();
        fold_slice(dtype, bytes, &mut fast, weight);
        fold_slice_reference(dtype, bytes, &mut slow, weight);
        for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
            assert!(
                same_f64(*a, *b),
                "{dtype:?} element {i}: {a:e} ({:#x}) vs reference {b:e} ({:#x})",
                a.to_bits(),
                b.to_bits()
            );
        }
    }

    /// Every float16 and bfloat16 bit pattern (zeros, subnormals, infinities, NaNs included)
    /// folds exactly as the element-at-a-time reference does.
    #[test]
    fn every_half_precision_pattern_folds_like_the_reference() {
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        let start: Vec<f64> = (0..=u16::MAX).map(|i| f64::from(i) * 0.37 - 9e3).collect();
        for dtype in [DType::F16, DType::BF16] {
            for weight in [1.0, -0.3, 7.0e-5, 3.0e38] {
                assert_folds_like_the_reference(dtype, &bytes, &start, weight);
            }
        }
    }

    proptest::proptest! {
        /// The vectorized fold equals the scalar reference bit for bit on the f64 sums, for
        /// arbitrary element bits (every class of value), weights and running sums, at lengths
        /// that are mostly not multiples of any lane width, with trailing bytes and slots that
        /// both must ignore.
        #[test]
        fn vectorized_fold_equals_the_scalar_reference(
            dtype in proptest::sample::select(vec![DType::F64, DType::F32, DType::F16, DType::BF16]),
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..1200),
            start in proptest::collection::vec(proptest::num::f64::ANY, 0..160),
            weight in proptest::num::f64::ANY,
        ) {
            let mut fast = start.clone();
            let mut slow = start.clone();
            fold_slice(dtype, &raw, &mut fast, weight);
            fold_slice_reference(dtype, &raw, &mut slow, weight);
            for (a, b) in fast.iter().zip(&slow) {
                proptest::prop_assert!(same_f64(*a, *b), "{:?}: {:e} vs {:e}", dtype, a, b);
            }
        }
    }

    #[test]
    fn batch_fold_equals_sequential_folds() {
        let mk = |seed: u64, n: usize| -> Vec<u8> {
            let mut out = Vec::new();
            for i in 0..n {
                DType::F32.encode(
                    ((i as u64 * 2654435761 + seed) % 1000) as f64 / 997.0 - 0.5,
                    &mut out,
                );
            }
            out
        };
        let n = 3000;
        let srcs: Vec<(Vec<u8>, f64)> = (0..5).map(|k| (mk(k, n), (k + 1) as f64)).collect();
        let mut seq = vec![0.25; n];
        for (b, w) in &srcs {
            fold_slice(DType::F32, b, &mut seq, *w);
        }
        let mut bat = vec![0.25; n];
        let refs: Vec<(&[u8], f64)> = srcs.iter().map(|(b, w)| (b.as_slice(), *w)).collect();
        fold_batch(DType::F32, &refs, &mut bat);
        for (a, b) in seq.iter().zip(&bat) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{a} {b}");
        }
    }

    /// Defect 9: a float16 base of 20.0 plus a finite delta of 65504 is not a float16.
    #[test]
    fn overflow_in_the_base_dtype_is_counted() {
        let mut base = Vec::new();
        DType::F16.encode(20.0, &mut base);
        DType::F16.encode(1.0, &mut base);
        let mut out = Vec::new();
        let n = publish_slice(DType::F16, &base, &[65504.0, 2.0], 1.0, None, &mut out);
        assert_eq!(n, 1);
        assert_eq!(DType::F16.decode(&out[2..4]), 3.0);
        // Rounding decides: 65519 still rounds down to the largest float16.
        let mut out = Vec::new();
        assert_eq!(
            publish_slice(DType::F16, &base[..2], &[65499.0], 1.0, None, &mut out),
            0
        );
    }

    #[test]
    fn other_dtypes_and_clipping() {
        let mut sum = vec![0.0; 2];
        let mut b = Vec::new();
        DType::F16.encode(0.5, &mut b);
        DType::F16.encode(-2.0, &mut b);
        fold_slice(DType::F16, &b, &mut sum, 2.0);
        assert_eq!(sum, vec![1.0, -4.0]);
        let mut sum = vec![0.0; 1];
        fold_values([3.0].into_iter(), &mut sum, 0.5);
        assert_eq!(sum, vec![1.5]);
        assert_eq!(clip_scale(10.0, Some(2.0)), 0.2);
        assert_eq!(clip_scale(1.0, Some(2.0)), 1.0);
        assert_eq!(clip_scale(10.0, None), 1.0);
    }
}
