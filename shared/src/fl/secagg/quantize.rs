//! The SDK's quantization, and the server's way back from a sum.
//!
//! A device clips each value to ±c, maps `[−c, c]` onto `[0, T]` and rounds stochastically
//! (up with probability equal to the fractional part), so the rounding is unbiased and the sum of
//! n devices' integers, scaled back, is an unbiased estimate of the sum of their values. The
//! server sees only that sum: `S · 2c/T − n·c`, which is why it must know n, the number of
//! survivors. c = 3 and T = 2^16 are the SDK's defaults; devices and server must agree on them.

/// c: values are clipped to `[−3, 3]`.
pub const CLIPPING_RANGE: f64 = 3.0;
/// T: a clipped value maps onto `[0, 65536]`.
pub const TARGET_RANGE: u32 = 1 << 16;
/// The quantized value of 0.0, exact and the same on every device: what the canary must hold.
pub const ZERO_QUANTIZED: u32 = TARGET_RANGE / 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantizeError {
    /// NaN has no place on the scale (the SDK would silently map it to +c).
    #[error("a NaN cannot be quantized")]
    NotANumber,
}

/// Quantizes one value with the uniform draw `uniform ∈ [0, 1)` deciding the rounding, with the
/// same float operations in the same order as the SDK, so a recorded draw reproduces its output.
pub fn quantize(value: f64, uniform: f64) -> Result<u32, QuantizeError> {
    if value.is_nan() {
        return Err(QuantizeError::NotANumber);
    }
    let scale = f64::from(TARGET_RANGE) / (2.0 * CLIPPING_RANGE);
    let scaled = (value.clamp(-CLIPPING_RANGE, CLIPPING_RANGE) + CLIPPING_RANGE) * scale;
    let up = scaled.ceil();
    let rounded = if uniform < up - scaled { up - 1.0 } else { up };
    // `scaled` lies in [0, T], so `rounded` does too and the cast is exact.
    Ok(rounded as u32)
}

/// The sum of `devices` values from the (unmasked, wrapping) sum of their quantized integers.
pub fn dequantize_sum(sum: u32, devices: u32) -> f64 {
    f64::from(sum) * (2.0 * CLIPPING_RANGE) / f64::from(TARGET_RANGE)
        - f64::from(devices) * CLIPPING_RANGE
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_ends_and_zero_are_exact() {
        assert_eq!(quantize(0.0, 0.5), Ok(ZERO_QUANTIZED));
        assert_eq!(quantize(-3.0, 0.0), Ok(0));
        assert_eq!(quantize(3.0, 0.99), Ok(TARGET_RANGE));
        assert_eq!(quantize(-100.0, 0.3), Ok(0));
        assert_eq!(quantize(f64::INFINITY, 0.3), Ok(TARGET_RANGE));
        assert_eq!(quantize(f64::NAN, 0.3), Err(QuantizeError::NotANumber));
    }

    proptest! {
        #[test]
        fn one_value_comes_back_within_one_step(value in -3.0f64..3.0, uniform in 0.0f64..1.0) {
            let q = quantize(value, uniform).unwrap();
            let step = 2.0 * CLIPPING_RANGE / f64::from(TARGET_RANGE);
            prop_assert!((dequantize_sum(q, 1) - value).abs() <= step);
        }
    }
}
