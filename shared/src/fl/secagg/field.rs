//! Arithmetic in GF(p) with p = 2^127 − 1, the field the SDK's Shamir shares live in.
//!
//! p is a Mersenne prime, so a product reduces with shifts and adds instead of a division: no
//! big-integer crate is needed and every value fits in a `u128`. Elements are kept canonical
//! (`< p`) at all times, which is what lets `==` compare them.

/// p = 2^127 − 1.
pub const MODULUS: u128 = (1u128 << 127) - 1;

/// A canonical element of GF(2^127 − 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldElement(u128);

impl FieldElement {
    pub const ZERO: Self = Self(0);
    pub const ONE: Self = Self(1);

    /// The element for a value already below p; `None` for a non-canonical value, so a share
    /// can never smuggle in a second encoding of the same number.
    pub fn new(value: u128) -> Option<Self> {
        (value < MODULUS).then_some(Self(value))
    }

    /// Reduces any `u128` (used for small integers such as share indices).
    pub fn reduce(value: u128) -> Self {
        Self(fold(value >> 127, value & MODULUS))
    }

    pub fn value(self) -> u128 {
        self.0
    }

    /// The multiplicative inverse by Fermat (a^(p−2)); `None` for zero, which has none.
    pub fn inverse(self) -> Option<Self> {
        if self.0 == 0 {
            return None;
        }
        let mut exponent = MODULUS - 2;
        let mut base = self;
        let mut result = Self::ONE;
        while exponent > 0 {
            if exponent & 1 == 1 {
                result = result * base;
            }
            base = base * base;
            exponent >>= 1;
        }
        Some(result)
    }
}

impl std::ops::Add for FieldElement {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        // Both are below 2^127 − 1, so the sum fits in a u128.
        Self(fold(0, self.0 + other.0))
    }
}

impl std::ops::Sub for FieldElement {
    type Output = Self;

    fn sub(self, other: Self) -> Self {
        if self.0 >= other.0 {
            Self(self.0 - other.0)
        } else {
            Self(MODULUS - (other.0 - self.0))
        }
    }
}

impl std::ops::Neg for FieldElement {
    type Output = Self;

    fn neg(self) -> Self {
        Self::ZERO - self
    }
}

impl std::ops::Mul for FieldElement {
    type Output = Self;

    fn mul(self, other: Self) -> Self {
        let (high, low) = wide_mul(self.0, other.0);
        // product = high·2^128 + low = (2·high + low>>127)·2^127 + (low & p), and 2^127 ≡ 1.
        let upper = (high << 1) | (low >> 127);
        Self(fold(upper, low & MODULUS))
    }
}

/// `upper·2^127 + lower` reduced mod p, for `upper, lower < 2^127`.
fn fold(upper: u128, lower: u128) -> u128 {
    // upper + lower < 2^128, and 2^127 ≡ 1, so one conditional subtraction after a second fold.
    let sum = upper + lower;
    let folded = (sum & MODULUS) + (sum >> 127);
    if folded >= MODULUS {
        folded - MODULUS
    } else {
        folded
    }
}

/// The full 256-bit product of two 128-bit values as (high, low) halves.
fn wide_mul(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a_hi, a_lo) = (a >> 64, a & MASK);
    let (b_hi, b_lo) = (b >> 64, b & MASK);
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    let middle = (lo_lo >> 64) + (hi_lo & MASK) + (lo_hi & MASK);
    let low = (lo_lo & MASK) | (middle << 64);
    let high = hi_hi + (hi_lo >> 64) + (lo_hi >> 64) + (middle >> 64);
    (high, low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An independent oracle: a + b mod p by plain comparison, for a, b < p.
    fn slow_add(a: u128, b: u128) -> u128 {
        let (sum, carry) = a.overflowing_add(b);
        if carry || sum >= MODULUS {
            sum.wrapping_sub(MODULUS)
        } else {
            sum
        }
    }

    /// a · b mod p by double-and-add, sharing no code with `mul`.
    fn slow_mul(a: u128, b: u128) -> u128 {
        let mut result = 0;
        for bit in (0..128).rev() {
            result = slow_add(result, result);
            if (b >> bit) & 1 == 1 {
                result = slow_add(result, a);
            }
        }
        result
    }

    fn element() -> impl Strategy<Value = FieldElement> {
        prop_oneof![
            (0..MODULUS).prop_map(FieldElement),
            Just(FieldElement(MODULUS - 1)),
            Just(FieldElement(0)),
            Just(FieldElement(1)),
        ]
    }

    proptest! {
        #[test]
        fn operations_agree_with_a_plain_oracle(a in element(), b in element()) {
            prop_assert_eq!((a * b).value(), slow_mul(a.0, b.0));
            prop_assert_eq!((a + b).value(), slow_add(a.0, b.0));
            prop_assert_eq!(a - b + b, a);
            prop_assert_eq!(a + (-a), FieldElement::ZERO);
        }

        #[test]
        fn inverse_inverts(a in element()) {
            match a.inverse() {
                Some(inverse) => prop_assert_eq!(a * inverse, FieldElement::ONE),
                None => prop_assert_eq!(a, FieldElement::ZERO),
            }
        }

        #[test]
        fn reduce_matches_the_remainder(value in any::<u128>()) {
            prop_assert_eq!(FieldElement::reduce(value).value(), value % MODULUS);
        }
    }

    #[test]
    fn non_canonical_values_are_refused() {
        assert!(FieldElement::new(MODULUS).is_none());
        assert!(FieldElement::new(u128::MAX).is_none());
        assert_eq!(
            FieldElement::new(MODULUS - 1).map(|e| e.value()),
            Some(MODULUS - 1)
        );
        assert_eq!(
            FieldElement(MODULUS - 1) * FieldElement(MODULUS - 1),
            FieldElement::ONE
        );
    }
}
