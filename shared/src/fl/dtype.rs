//! Tensor element types the aggregator reads. Every value is widened to `f64` before it touches
//! the running sum, so precision is decided once, at publish, by the base version's dtype.

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
            DType::F16 => 65504.0,
            DType::BF16 => 3.389_531_389_251_535_5e38,
        }
    }

    /// Decodes one little-endian element. `b` holds exactly `self.size()` bytes.
    #[inline]
    pub fn decode(self, b: &[u8]) -> f64 {
        match self {
            DType::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            DType::F16 => f16_to_f64(u16::from_le_bytes([b[0], b[1]])),
            DType::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64,
        }
    }

    /// Encodes `v` (already rounded by the caller where it matters) as little-endian bytes.
    pub fn encode(self, v: f64, out: &mut Vec<u8>) {
        match self {
            DType::F64 => out.extend_from_slice(&v.to_le_bytes()),
            DType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            DType::F16 => out.extend_from_slice(&f64_to_f16(v).to_le_bytes()),
            DType::BF16 => out.extend_from_slice(&f32_to_bf16(v as f32).to_le_bytes()),
        }
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Round-to-nearest-even conversion to IEEE half precision.
fn f64_to_f16(v: f64) -> u16 {
    let x = v as f32;
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1 << shift) - 1);
        let mut r = m >> shift;
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    ((bits + round) >> 16) as u16
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
}
