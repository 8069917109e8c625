//! Tensor element types the aggregator reads. Every value is widened to `f64` before it touches
//! the running sum, so precision is decided once, at publish, by the base version's dtype: one
//! correctly rounded conversion from `f64` (the `half` crate does the half-precision formats).

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
}

impl DType {
    /// The safetensors spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "F64" => Some(DType::F64),
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DType::F64 => "F64",
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }

    pub const fn size(self) -> usize {
        match self {
            DType::F64 => 8,
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The largest finite magnitude of the type: a value beyond it would be infinite once stored.
    pub fn max_finite(self) -> f64 {
        match self {
            DType::F64 => f64::MAX,
            DType::F32 => f32::MAX as f64,
            DType::F16 => f16::MAX.to_f64(),
            DType::BF16 => bf16::MAX.to_f64(),
        }
    }

    /// Decodes one little-endian element. `b` holds exactly `self.size()` bytes.
    #[inline]
    pub fn decode(self, b: &[u8]) -> f64 {
        match self {
            DType::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            DType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f64(),
            DType::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f64(),
        }
    }

    /// Encodes `v` as little-endian bytes, rounded once to nearest (ties to even).
    pub fn encode(self, v: f64, out: &mut Vec<u8>) {
        match self {
            DType::F64 => out.extend_from_slice(&v.to_le_bytes()),
            DType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            DType::F16 => out.extend_from_slice(&f16::from_f32(f32_round_to_odd(v)).to_le_bytes()),
            DType::BF16 => {
                out.extend_from_slice(&bf16::from_f32(f32_round_to_odd(v)).to_le_bytes())
            }
        }
    }
}

/// `v` rounded to `f32` *to odd*: exact values stay, any other goes to whichever neighbour has an
/// odd last significand bit. Rounding that result to nearest in a format with at least two fewer
/// significand bits (f16 has 11, bf16 8, against f32's 24) gives exactly the correctly rounded
/// value of `v`, which rounding `v` to nearest `f32` first does not: a value just above a tie of
/// the narrow format lands exactly on the tie and then goes to even. `half`'s own `from_f64` has
/// the same flaw (it drops the low 32 significand bits in software, and goes through `f32` with
/// F16C), so `half` only does the last step here, from an `f32` that is safe to round.
fn f32_round_to_odd(v: f64) -> f32 {
    let y = v as f32;
    if v.is_nan() || y as f64 == v || y.to_bits() & 1 == 1 {
        return y;
    }
    // Inexact with an even last bit: the other neighbour of `v` is odd. Adjacent floats of one
    // sign are adjacent bit patterns, so step the magnitude toward `v`.
    let toward_zero = (y as f64).abs() > v.abs();
    f32::from_bits(if toward_zero {
        y.to_bits() - 1
    } else {
        y.to_bits() + 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(d: DType, v: f64) -> f64 {
        let mut b = Vec::new();
        d.encode(v, &mut b);
        assert_eq!(b.len(), d.size());
        d.decode(&b)
    }

    #[test]
    fn encode_decode_round_trips() {
        for v in [0.0, 1.0, -2.5, 0.333_333, 1e-3, 65504.0, -1e-5] {
            assert_eq!(roundtrip(DType::F64, v), v);
            assert_eq!(roundtrip(DType::F32, v), v as f32 as f64);
            assert!(
                (roundtrip(DType::F16, v) - v).abs() <= v.abs() * 1e-3 + 1e-7,
                "{v}"
            );
            assert!(
                (roundtrip(DType::BF16, v) - v).abs() <= v.abs() * 1e-2 + 1e-38,
                "{v}"
            );
        }
        assert_eq!(roundtrip(DType::F16, 1e6), f64::INFINITY);
        assert!(DType::parse("I8").is_none());
        assert_eq!(DType::parse("BF16"), Some(DType::BF16));
    }

    fn bits(d: DType, v: f64) -> u16 {
        let mut b = Vec::new();
        d.encode(v, &mut b);
        u16::from_le_bytes([b[0], b[1]])
    }

    /// Rounding f64 -> f32 -> f16 rounds twice: 1 + 2^-11 + 2^-30 is just above the tie between
    /// the f16 values 1 (0x3c00) and 1 + 2^-10 (0x3c01), so it must round up, but its nearest
    /// f32 is the tie itself, which then goes to the even 0x3c00. The same for bf16 at its tie.
    #[test]
    fn half_precision_rounds_once_from_f64() {
        let v = 1.0 + 2f64.powi(-11) + 2f64.powi(-30);
        assert_eq!(f16::from_f32(v as f32).to_bits(), 0x3c00, "two roundings");
        assert_eq!(bits(DType::F16, v), 0x3c01);
        assert_eq!(bits(DType::F16, -v), 0xbc01);
        let w = 1.0 + 2f64.powi(-8) + 2f64.powi(-30);
        assert_eq!(bf16::from_f32(w as f32).to_bits(), 0x3f80, "two roundings");
        assert_eq!(bits(DType::BF16, w), 0x3f81);
        // Exact ties still go to even, and everything else is unchanged.
        assert_eq!(bits(DType::F16, 1.0 + 2f64.powi(-11)), 0x3c00);
        assert_eq!(bits(DType::F16, 1.0 + 3.0 * 2f64.powi(-11)), 0x3c02);
        assert_eq!(bits(DType::F16, 65504.0), 0x7bff);
        assert_eq!(bits(DType::F16, 65520.0), 0x7c00);
        assert_eq!(bits(DType::F16, 2f64.powi(-25) * 1.000001), 0x0001);
        assert_eq!(bits(DType::F16, 2f64.powi(-25)), 0x0000);
        assert_eq!(bits(DType::F16, 1e-300), 0x0000);
        assert_eq!(bits(DType::F16, -1e-300), 0x8000);
        assert_eq!(bits(DType::BF16, 1e300), 0x7f80);
        assert!(roundtrip(DType::F16, f64::NAN).is_nan());
        assert!(roundtrip(DType::BF16, f64::NAN).is_nan());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Whether `got` is the value nearest to `v` among itself and its neighbours `lo < got < hi`,
    /// ties to even. The differences are exact: the values are within a factor of two.
    fn nearest(v: f64, got: f64, lo: f64, hi: f64, got_even: bool) -> bool {
        let d = (v - got).abs();
        let (dl, dh) = ((v - lo).abs(), (v - hi).abs());
        (d < dl || (d == dl && got_even)) && (d < dh || (d == dh && got_even))
    }

    /// Checks `v` against the 16-bit encoding of `d` (`value` reads a bit pattern).
    fn rounds_to_nearest(d: DType, v: f64, value: fn(u16) -> f64) -> bool {
        let mut b = Vec::new();
        d.encode(v, &mut b);
        let bits = u16::from_le_bytes([b[0], b[1]]);
        let got = value(bits);
        let n1 = value(bits.wrapping_sub(1));
        let n2 = value(bits.wrapping_add(1));
        // Neighbours in bit order are neighbours in value (NaN past the ends is ignored by
        // min/max).
        nearest(v, got, n1.min(n2), n1.max(n2), bits & 1 == 0)
    }

    /// Values a tiny distance (far below f32 precision) either side of the midpoint between two
    /// adjacent finite values of a 16-bit type: where rounding through f32 goes wrong.
    fn near_tie(value: fn(u16) -> f64, top: u16) -> impl Strategy<Value = f64> {
        (0u16..top, any::<bool>(), 1u32..1000, any::<bool>()).prop_map(move |(b, above, k, neg)| {
            let (lo, hi) = (value(b), value(b + 1));
            let mid = (lo + hi) / 2.0;
            let eps = (hi - lo) * f64::from(k) * 2f64.powi(-40);
            let v = if above { mid + eps } else { mid - eps };
            if neg {
                -v
            } else {
                v
            }
        })
    }

    fn f16_value(b: u16) -> f64 {
        f16::from_bits(b).to_f64()
    }

    fn bf16_value(b: u16) -> f64 {
        bf16::from_bits(b).to_f64()
    }

    proptest! {
        /// f64 -> f16 rounds once, to nearest, ties to even, over the finite range and just
        /// around its ties.
        #[test]
        fn f16_encoding_is_correctly_rounded(
            v in prop_oneof![-65504.0f64..65504.0, near_tie(f16_value, 0x7bff)]
        ) {
            prop_assert!(rounds_to_nearest(DType::F16, v, f16_value), "{v}");
        }

        /// The same for bf16.
        #[test]
        fn bf16_encoding_is_correctly_rounded(
            v in prop_oneof![
                (1.0f64..2.0, -60i32..60, any::<bool>())
                    .prop_map(|(m, e, neg)| if neg { -m } else { m } * 2f64.powi(e)),
                near_tie(bf16_value, 0x7f7f),
            ]
        ) {
            prop_assert!(rounds_to_nearest(DType::BF16, v, bf16_value), "{v}");
        }

        /// Values of the type survive encode/decode exactly.
        #[test]
        fn representable_values_round_trip(bits in any::<u16>(), x in any::<f32>()) {
            for (d, v) in [
                (DType::F16, f16_value(bits)),
                (DType::BF16, bf16_value(bits)),
                (DType::F32, x as f64),
                (DType::F64, x as f64 * 1.000_000_1),
            ] {
                let mut b = Vec::new();
                d.encode(v, &mut b);
                let back = d.decode(&b);
                prop_assert!(back == v || (back.is_nan() && v.is_nan()), "{d:?} {v} -> {back}");
            }
        }
    }
}
