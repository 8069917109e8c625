//! The aggregation kernel exactly as the round aggregators run it — parse the update's
//! safetensors header, match it against the base layout, fold every tensor into the `f64`
//! running sum weighted by sample count — packaged so `scripts/bench` can time it natively and as
//! wasm32 under Node (the runtime family the Workers isolate belongs to). Optionally the
//! validation pass too (SHA-256, size, finiteness, L2 norm), which production runs on every
//! update before it may be folded.
#![forbid(unsafe_code)]

use edgeplane_core::fl::aggregate::{fold_batch, fold_slice, fold_slice_reference};
use edgeplane_core::fl::dtype::DType;
use edgeplane_core::fl::layout::ModelLayout;
use edgeplane_core::fl::safetensors;
use edgeplane_core::fl::shard::segments;
use edgeplane_core::fl::validate::{UpdateFormat, UpdateMeta, Validator};

/// One round's accumulator over a whole model (one shard).
pub struct Kernel {
    layout: ModelLayout,
    sum: Vec<f64>,
    total_weight: f64,
    folded: u64,
}

impl Kernel {
    /// The layout is read from a base (or any matching) safetensors file.
    pub fn from_base(base: &[u8]) -> Result<Self, String> {
        let n = safetensors::header_len(base).map_err(|e| format!("{e:?}"))? as usize;
        let h = safetensors::parse_header(base.get(8..8 + n).ok_or("short file")?)
            .map_err(|e| format!("{e:?}"))?;
        let layout = h.layout();
        let total = layout.total_elements() as usize;
        Ok(Self {
            layout,
            sum: vec![0.0; total],
            total_weight: 0.0,
            folded: 0,
        })
    }

    /// Folds one update (a complete safetensors file) with `weight`.
    pub fn fold(&mut self, update: &[u8], weight: f64) -> Result<(), String> {
        let n = safetensors::header_len(update).map_err(|e| format!("{e:?}"))? as usize;
        let h = safetensors::parse_header(update.get(8..8 + n).ok_or("short file")?)
            .map_err(|e| format!("{e:?}"))?;
        let starts = h.match_base(&self.layout).map_err(|e| format!("{e:?}"))?;
        let total = self.layout.total_elements();
        for seg in segments(&self.layout, &starts, 0..total) {
            let bytes = update
                .get(seg.byte_start as usize..seg.byte_end() as usize)
                .ok_or("truncated update")?;
            let at = seg.acc_offset as usize;
            let slot = self
                .sum
                .get_mut(at..at + seg.count as usize)
                .ok_or("layout mismatch")?;
            fold_slice(seg.dtype, bytes, slot, weight);
        }
        self.total_weight += weight;
        self.folded += 1;
        Ok(())
    }

    /// Folds several updates in one pass over the sum (what an aggregator does when several
    /// accepted updates are waiting).
    pub fn fold_batch(&mut self, updates: &[(&[u8], f64)]) -> Result<(), String> {
        let total = self.layout.total_elements();
        let mut per_update = Vec::with_capacity(updates.len());
        for (u, w) in updates {
            let n = safetensors::header_len(u).map_err(|e| format!("{e:?}"))? as usize;
            let h = safetensors::parse_header(u.get(8..8 + n).ok_or("short file")?)
                .map_err(|e| format!("{e:?}"))?;
            let starts = h.match_base(&self.layout).map_err(|e| format!("{e:?}"))?;
            per_update.push((segments(&self.layout, &starts, 0..total), *u, *w));
        }
        let Some((first, _, _)) = per_update.first() else {
            return Ok(());
        };
        for (j, seg) in first.iter().enumerate() {
            let mut sources = Vec::with_capacity(per_update.len());
            for (segs, u, w) in &per_update {
                let s = segs.get(j).ok_or("layout mismatch")?;
                sources.push((
                    u.get(s.byte_start as usize..s.byte_end() as usize)
                        .ok_or("truncated update")?,
                    *w,
                ));
            }
            let at = seg.acc_offset as usize;
            let slot = self
                .sum
                .get_mut(at..at + seg.count as usize)
                .ok_or("layout mismatch")?;
            fold_batch(seg.dtype, &sources, slot);
        }
        for (_, _, w) in &per_update {
            self.total_weight += w;
            self.folded += 1;
        }
        Ok(())
    }

    /// The validation pass production runs before a fold (hash, size, format, finiteness, norm),
    /// in 4 MiB windows as updates are read from R2. Returns the update's L2 norm.
    pub fn validate(&self, update: &[u8], sha256_hex: &str, samples: i64) -> Result<f64, String> {
        let meta = UpdateMeta {
            sample_count: samples,
            metrics: Default::default(),
            format: UpdateFormat::Safetensors,
            sha256: sha256_hex.to_owned(),
            size: update.len() as u64,
        };
        let mut v = Validator::new(&meta, &self.layout, vec![0]);
        for w in update.chunks(4 * 1024 * 1024) {
            v.feed(w).map_err(|(r, m)| format!("{}: {m}", r.as_str()))?;
        }
        v.finish()
            .map(|x| x.norm)
            .map_err(|(r, m)| format!("{}: {m}", r.as_str()))
    }

    /// A checksum of the weighted average (to check implementations agree, and that the work was
    /// not optimized away).
    pub fn average_checksum(&self) -> f64 {
        if self.total_weight == 0.0 {
            return 0.0;
        }
        self.sum.iter().sum::<f64>() / self.total_weight
    }

    pub fn folded(&self) -> u64 {
        self.folded
    }

    pub fn parameters(&self) -> u64 {
        self.layout.total_elements()
    }
}

/// SplitMix64: the deterministic generator behind the bench's inputs and the fold check, so every
/// implementation and both builds see the same numbers.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// What the fold check covered and found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FoldCheck {
    pub cases: u64,
    pub elements: u64,
    /// Sums whose bits differ from the scalar reference's.
    pub mismatches: u64,
}

/// Runs [`fold_slice`] against [`fold_slice_reference`] on `cases` random cases in the build
/// this runs in (the bench calls it inside wasm32, where the `simd128` fold runs): every dtype,
/// lengths that are mostly not multiples of a lane width, arbitrary element bits (non-finite
/// ones replaced, so no NaN arises whose payload the platform may choose), and weights and
/// running sums of the sizes a round produces.
pub fn check_fold(seed: u64, cases: u64) -> FoldCheck {
    let mut rng = SplitMix(seed);
    let mut out = FoldCheck::default();
    for case in 0..cases {
        let dtype = [DType::F32, DType::F64, DType::BF16, DType::F16][(case % 4) as usize];
        let n = (rng.next_u64() % 4099) as usize;
        let mut bytes = Vec::with_capacity(n * dtype.size());
        for _ in 0..n {
            let bits = rng.next_u64().to_le_bytes();
            let e = &bits[..dtype.size()];
            if dtype.decode(e).is_finite() {
                bytes.extend_from_slice(e);
            } else {
                dtype.encode(f64::from(rng.unit()), &mut bytes);
            }
        }
        let start: Vec<f64> = (0..n).map(|_| f64::from(rng.unit()) * 1e3).collect();
        let weight = 1.0 + (rng.next_u64() % 500) as f64 * f64::from(rng.unit()).abs();
        let (mut fast, mut slow) = (start.clone(), start);
        fold_slice(dtype, &bytes, &mut fast, weight);
        fold_slice_reference(dtype, &bytes, &mut slow, weight);
        out.cases += 1;
        out.elements += n as u64;
        out.mismatches += fast
            .iter()
            .zip(&slow)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count() as u64;
    }
    out
}

/// The floor of a secure round's unmasking: `masks` masks of `elements` elements each, generated
/// with the SDK's PRG and removed from one accumulator exactly as the aggregators will
/// (`fl::secagg::prg::apply`, wrapping mod 2^32). Returns the seconds and a checksum of the
/// accumulator (so the work cannot be optimised away, and native and wasm32 can be compared).
pub fn prg_floor(masks: u32, elements: u32) -> (f64, u32) {
    use edgeplane_core::fl::secagg::prg::{apply, MaskSign};
    let mut acc = vec![0u32; elements as usize];
    let start = now_seconds();
    for m in 0..masks {
        let seed = [m as u8; 32];
        let sign = if m % 2 == 0 {
            MaskSign::Add
        } else {
            MaskSign::Subtract
        };
        apply(&seed, 0, &mut acc, sign);
    }
    let seconds = now_seconds() - start;
    (seconds, acc.iter().fold(0u32, |a, v| a.wrapping_add(*v)))
}

#[cfg(not(target_arch = "wasm32"))]
fn now_seconds() -> f64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(target_arch = "wasm32")]
fn now_seconds() -> f64 {
    js_sys::Date::now() / 1000.0
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use wasm_bindgen::prelude::*;

    /// The kernel for JavaScript hosts: update bytes arrive as a `Uint8Array` (copied into wasm
    /// memory, as R2 bytes are in a Worker), or are staged in wasm memory once so that the fold
    /// alone can be timed against the native one.
    #[wasm_bindgen]
    pub struct WasmKernel {
        kernel: super::Kernel,
        staged: Vec<Vec<u8>>,
    }

    #[wasm_bindgen]
    impl WasmKernel {
        #[wasm_bindgen(constructor)]
        pub fn new(base: &[u8]) -> Result<WasmKernel, JsError> {
            super::Kernel::from_base(base)
                .map(|kernel| WasmKernel {
                    kernel,
                    staged: Vec::new(),
                })
                .map_err(|e| JsError::new(&e))
        }

        /// Keeps a copy of `update` in wasm memory; returns its index for [`Self::fold_staged`].
        pub fn stage(&mut self, update: &[u8]) -> usize {
            self.staged.push(update.to_vec());
            self.staged.len() - 1
        }

        /// Folds a staged update: no copy from JavaScript, the same work as the native fold.
        pub fn fold_staged(&mut self, index: usize, weight: f64) -> Result<(), JsError> {
            let update = self
                .staged
                .get(index)
                .ok_or_else(|| JsError::new("no such staged update"))?;
            self.kernel
                .fold(update, weight)
                .map_err(|e| JsError::new(&e))
        }

        pub fn fold(&mut self, update: &[u8], weight: f64) -> Result<(), JsError> {
            self.kernel
                .fold(update, weight)
                .map_err(|e| JsError::new(&e))
        }

        pub fn validate(
            &self,
            update: &[u8],
            sha256_hex: &str,
            samples: f64,
        ) -> Result<f64, JsError> {
            self.kernel
                .validate(update, sha256_hex, samples as i64)
                .map_err(|e| JsError::new(&e))
        }

        /// Folds `updates.length` updates at once (an array of Uint8Array) with their weights.
        pub fn fold_batch(
            &mut self,
            updates: Vec<js_sys::Uint8Array>,
            weights: Vec<f64>,
        ) -> Result<(), JsError> {
            let owned: Vec<Vec<u8>> = updates.iter().map(|u| u.to_vec()).collect();
            let refs: Vec<(&[u8], f64)> = owned.iter().map(Vec::as_slice).zip(weights).collect();
            self.kernel.fold_batch(&refs).map_err(|e| JsError::new(&e))
        }

        pub fn checksum(&self) -> f64 {
            self.kernel.average_checksum()
        }
    }

    /// [`super::prg_floor`] inside wasm32: `[seconds, checksum]`.
    #[wasm_bindgen]
    pub fn prg_floor(masks: u32, elements: u32) -> Vec<f64> {
        let (seconds, checksum) = super::prg_floor(masks, elements);
        vec![seconds, f64::from(checksum)]
    }

    /// [`super::check_fold`] inside wasm32: `[cases, elements, mismatches]`.
    #[wasm_bindgen]
    pub fn check_fold(seed: u32, cases: u32) -> Vec<f64> {
        let c = super::check_fold(u64::from(seed), u64::from(cases));
        vec![c.cases as f64, c.elements as f64, c.mismatches as f64]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(vals: &[f32]) -> Vec<u8> {
        let h = format!(
            "{{\"w\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[0,{}]}}}}",
            vals.len(),
            vals.len() * 4
        );
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(h.as_bytes());
        for v in vals {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    #[test]
    fn the_fold_check_finds_no_difference_natively() {
        let c = check_fold(7, 64);
        assert_eq!((c.cases, c.mismatches), (64, 0));
        assert!(c.elements > 64 * 1000, "{c:?}");
    }

    #[test]
    fn the_prg_floor_applies_masks_that_cancel() {
        // Mask 0 added and mask 1 subtracted: the checksum is what the SDK's streams give.
        use edgeplane_core::fl::secagg::prg::elements;
        let (_, checksum) = prg_floor(2, 16);
        let a = elements(&[0u8; 32], 0, 16);
        let b = elements(&[1u8; 32], 0, 16);
        let want = a
            .iter()
            .zip(&b)
            .fold(0u32, |s, (x, y)| s.wrapping_add(x.wrapping_sub(*y)));
        assert_eq!(checksum, want);
    }

    #[test]
    fn folds_a_weighted_average() {
        let mut k = Kernel::from_base(&file(&[0.0, 0.0])).unwrap();
        k.fold(&file(&[1.0, 3.0]), 1.0).unwrap();
        k.fold(&file(&[3.0, 5.0]), 3.0).unwrap();
        // Averages: (1+9)/4 = 2.5 and (3+15)/4 = 4.5.
        assert_eq!(k.average_checksum(), 7.0);
        assert!(k.fold(&file(&[1.0]), 1.0).is_err());
        let f = file(&[1.0, 1.0]);
        let sha = {
            use edgeplane_core::crypto::sha256_hex;
            sha256_hex(&f)
        };
        assert_eq!(k.validate(&f, &sha, 3).unwrap(), 2f64.sqrt());
    }
}
