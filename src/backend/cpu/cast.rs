//! bf16 to and from f32 by their bits: rounding to nearest, ties to even,
//! on the way in, exact on the way out. Plain integer arithmetic, so loops
//! of it vectorise; `half`'s conversions give the same bits (a test checks
//! every f32).

use half::bf16;

use super::strided::Element;

/// A floating-point element that kernels compute on in f32: f32 itself, or
/// bf16, widened on the way in and rounded on the way out (in registers,
/// inside the kernel's loop).
pub trait Float: Element {
    /// The element as f32 (exact).
    fn widen(self) -> f32;
    /// `x` as this element (bf16: rounded to nearest, ties to even).
    fn narrow(x: f32) -> Self;
}

impl Float for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[inline(always)]
    fn narrow(x: f32) -> f32 {
        x
    }
}

impl Float for bf16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        to_f32(self)
    }
    #[inline(always)]
    fn narrow(x: f32) -> bf16 {
        to_bf16(x)
    }
}

/// `x` rounded to the nearest bf16, ties to even: ±Inf and ±0 stay, values
/// past the largest bf16 become ±Inf, subnormals round as any other value,
/// and a NaN stays a NaN (quiet, its sign and top payload bits kept).
#[inline(always)]
pub fn to_bf16(x: f32) -> bf16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return bf16::from_bits((bits >> 16) as u16 | 0x0040);
    }
    // Adding 0x7fff, plus the bit that becomes the last one kept, carries
    // into it exactly when the dropped half is above a tie, or a tie with
    // an odd last bit.
    let rounding = 0x7fff + ((bits >> 16) & 1);
    bf16::from_bits((bits.wrapping_add(rounding) >> 16) as u16)
}

/// `x` as f32, exactly: its bits in the top half (a NaN keeps its
/// payload, signalling or not).
#[inline(always)]
pub fn to_f32(x: bf16) -> f32 {
    f32::from_bits((x.to_bits() as u32) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// Every f32 bit pattern rounds as `half` rounds it (NaNs: to a NaN of
    /// the same sign), and every bf16 comes back as `half` widens it (its
    /// bits in the top half: `half` also quiets a signalling NaN, which
    /// this keeps as it is).
    #[test]
    fn every_f32_rounds_to_nearest_even_as_half_does() {
        let mismatches: u64 = (0u32..=u16::MAX as u32)
            .into_par_iter()
            .map(|high| {
                let mut wrong = 0;
                for low in 0u32..=u16::MAX as u32 {
                    let x = f32::from_bits(high << 16 | low);
                    let (ours, theirs) = (to_bf16(x), bf16::from_f32(x));
                    let same = if x.is_nan() {
                        ours.is_nan() && ours.is_sign_negative() == x.is_sign_negative()
                    } else {
                        ours.to_bits() == theirs.to_bits()
                    };
                    wrong += u64::from(!same);
                }
                wrong
            })
            .sum();
        assert_eq!(mismatches, 0);
        for bits in 0..=u16::MAX {
            let b = bf16::from_bits(bits);
            let (ours, theirs) = (to_f32(b), b.to_f32());
            assert_eq!(ours.to_bits(), (bits as u32) << 16, "{bits:#06x}");
            if !b.is_nan() {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn ties_go_to_the_even_neighbour_and_overflow_to_infinity() {
        let bf = |x: f32| to_bf16(x).to_bits();
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: to 1 (even).
        assert_eq!(bf(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶: up.
        assert_eq!(bf(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf(f32::MAX), 0x7f80);
        assert_eq!(bf(f32::NEG_INFINITY), 0xff80);
        // The smallest f32 subnormal is below half the smallest bf16 one.
        assert_eq!(bf(f32::from_bits(1)), 0x0000);
        assert!(to_bf16(f32::NAN).is_nan());
    }
}
