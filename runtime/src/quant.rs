//! Requantization: an int32 accumulator back to int8, integer-only.
//!
//! The semantics are those of ONNX `QLinearConv` as tract evaluates it with per-channel weight
//! scales (see `docs/quantization.md`):
//!
//! ```text
//! S = s_w[c] * (s_in * (1 / s_out))                  -- f32, in that order
//! y = clamp(sign(acc) * rne(f32(f32(|acc|) * S)) + z_out, lo, hi)
//! ```
//!
//! where every `f32(..)` is an IEEE round-to-nearest-even conversion and `rne` rounds half to
//! even. `S` is an f32, so it is exactly `mantissa * 2^-shift` with a 24-bit mantissa; the
//! [`Multiplier`] holds that pair and [`requantize`] reproduces the f32 arithmetic above bit for
//! bit with integer operations only (no FPU needed), which the tests check against the host's FPU.

/// Smallest and largest binary exponent a combined scale may have: `2^-40 <= S < 2^16`.
/// Outside this range a model is rejected; real networks sit around `2^-20..2^0`.
pub const MIN_SCALE_EXPONENT: i32 = -40;
pub const MAX_SCALE_EXPONENT: i32 = 15;

const MANTISSA_BITS: u32 = 24;

/// A positive f32 scale as an exact integer pair: `scale = mantissa * 2^-shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Multiplier {
    /// 24 significant bits: `2^23 <= mantissa < 2^24`.
    pub mantissa: u32,
    /// Right shift; within `23 - MAX_SCALE_EXPONENT ..= 23 - MIN_SCALE_EXPONENT`.
    pub shift: i32,
}

impl Multiplier {
    /// Decomposes a normal, positive f32 within the supported exponent range.
    pub const fn from_scale(scale: f32) -> Option<Self> {
        let bits = scale.to_bits();
        let biased_exponent = ((bits >> 23) & 0xff) as i32;
        let negative = bits >> 31 != 0;
        // Zero, subnormals, infinities and NaN are not scales.
        if negative || biased_exponent == 0 || biased_exponent == 0xff {
            return None;
        }
        let exponent = biased_exponent - 127;
        if exponent < MIN_SCALE_EXPONENT || exponent > MAX_SCALE_EXPONENT {
            return None;
        }
        Some(Multiplier {
            mantissa: (bits & 0x7f_ffff) | 0x80_0000,
            shift: 23 - exponent,
        })
    }

    /// Whether the pair is one that [`Multiplier::from_scale`] can produce.
    pub const fn is_valid(self) -> bool {
        self.mantissa >= 1 << 23
            && self.mantissa < 1 << 24
            && self.shift >= 23 - MAX_SCALE_EXPONENT
            && self.shift <= 23 - MIN_SCALE_EXPONENT
    }

    /// The f32 this pair represents (exact).
    pub fn to_scale(self) -> f32 {
        let exponent = 23 - self.shift;
        let bits = (((exponent + 127) as u32) << 23) | (self.mantissa & 0x7f_ffff);
        f32::from_bits(bits)
    }
}

/// The combined requantization scale `s_in * s_w / s_out` in f32: `s_w * (s_in * (1 / s_out))`.
/// tract's graph says `(s_w * s_in) / s_out`, but its optimizer turns the division by a constant
/// into a multiplication by the reciprocal and folds the constants in an order that depends on
/// the layer (in the seed network: this one in conv1, `(s_in * s_w) * (1 / s_out)` in conv2,
/// conv3 and fc1). The orders differ in the last bit for some scales unless `s_out` is a power
/// of two, where all of them are `f32(s_in * s_w) / s_out`; the exporter requires that (see
/// `docs/quantization.md`, "Which scales are exact").
pub fn combined_scale(input_scale: f32, weight_scale: f32, output_scale: f32) -> f32 {
    weight_scale * (input_scale * (1.0 / output_scale))
}

/// Rounds `value / 2^shift` to the nearest integer, ties to even. `value < 2^63`.
#[inline]
const fn shift_right_rne(value: u64, shift: u32) -> u64 {
    if shift == 0 {
        return value;
    }
    if shift >= 64 {
        return 0; // value < 2^63, so the quotient is below one half
    }
    let quotient = value >> shift;
    let remainder = value & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    if remainder > half || (remainder == half && quotient & 1 == 1) {
        quotient + 1
    } else {
        quotient
    }
}

/// Rounds `value` to 24 significant bits, as an f32 conversion does: `value ≈ m * 2^e`.
/// `m` may be exactly `2^24` after a carry, which is still the exact rounded value.
#[inline]
const fn round_to_f32_precision(value: u64) -> (u64, i32) {
    let bits = 64 - value.leading_zeros();
    if bits <= MANTISSA_BITS {
        (value, 0)
    } else {
        let dropped = bits - MANTISSA_BITS;
        (shift_right_rne(value, dropped), dropped as i32)
    }
}

/// Scales `acc` by `m` and rounds like tract's f32 `Scale` op, returning the signed result
/// before the zero point is added. Saturates far outside the int8 range, never overflows.
#[inline]
pub const fn scale_accumulator(acc: i32, m: Multiplier) -> i32 {
    let magnitude = acc.unsigned_abs() as u64;
    // f32(|acc|): at most 32 bits, so at most 8 are rounded off.
    let (acc_mantissa, acc_exponent) = round_to_f32_precision(magnitude);
    // The f32 product, rounded to 24 bits: below 2^25 * 2^24, so it fits easily.
    let (product, product_exponent) = round_to_f32_precision(acc_mantissa * m.mantissa as u64);
    let exponent = acc_exponent + product_exponent - m.shift;
    let rounded = if exponent >= 0 {
        // Only for scales >= 1 with large accumulators; the result saturates anyway.
        if exponent >= 30 || product >= (1u64 << (30 - exponent)) {
            1 << 30
        } else {
            product << exponent
        }
    } else {
        shift_right_rne(product, (-exponent) as u32)
    };
    let rounded = if rounded > (1 << 30) {
        1 << 30
    } else {
        rounded
    } as i32;
    if acc < 0 { -rounded } else { rounded }
}

/// The full requantization of one accumulator: scale, add the output zero point, saturate to
/// `[lo, hi]` (`lo` is the zero point itself when a ReLU is fused).
#[inline]
pub const fn requantize(acc: i32, m: Multiplier, zero_point: i32, lo: i32, hi: i32) -> i8 {
    let y = scale_accumulator(acc, m) + zero_point;
    (if y < lo {
        lo
    } else if y > hi {
        hi
    } else {
        y
    }) as i8
}

/// Requantization parameters of one output tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    pub scale: f32,
    pub zero_point: i8,
}

impl QuantParams {
    /// The real value an int8 code stands for.
    pub fn dequantize(self, q: i8) -> f32 {
        (q as i32 - self.zero_point as i32) as f32 * self.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What tract computes, on the FPU (tract-core `scale_by` with `round_ties_to_even`).
    fn tract_reference(acc: i32, scale: f32, zp: i32) -> i8 {
        let magnitude = (acc as f32).abs() * scale;
        let rounded = magnitude.round_ties_even() * (acc as f32).signum();
        ((rounded as i32).saturating_add(zp)).clamp(-128, 127) as i8
    }

    fn m(scale: f32) -> Multiplier {
        Multiplier::from_scale(scale).unwrap()
    }

    #[test]
    fn decomposition_is_exact() {
        for scale in [
            1.0f32,
            0.5,
            0.75,
            1.0 / 255.0,
            3.1e-5,
            1.2e-12,
            1.0e4,
            2.0f32.powi(-40),
        ] {
            let mult = m(scale);
            assert!(mult.is_valid());
            assert_eq!(mult.to_scale(), scale);
            assert_eq!(mult.mantissa as f64 * 2f64.powi(-mult.shift), scale as f64);
        }
    }

    #[test]
    fn rejects_non_scales() {
        for bad in [
            0.0f32,
            -1.0,
            f32::NAN,
            f32::INFINITY,
            1e-40,
            2.0f32.powi(16),
            2.0f32.powi(-41),
        ] {
            assert_eq!(Multiplier::from_scale(bad), None, "{bad}");
        }
    }

    #[test]
    fn exact_ties_round_to_even_in_both_directions() {
        // S = 0.5: every odd accumulator is an exact tie.
        let half = m(0.5);
        assert_eq!(requantize(1, half, 0, -128, 127), 0); // 0.5 -> 0
        assert_eq!(requantize(3, half, 0, -128, 127), 2); // 1.5 -> 2
        assert_eq!(requantize(5, half, 0, -128, 127), 2); // 2.5 -> 2
        assert_eq!(requantize(7, half, 0, -128, 127), 4); // 3.5 -> 4
        assert_eq!(requantize(-1, half, 0, -128, 127), 0); // -0.5 -> 0
        assert_eq!(requantize(-3, half, 0, -128, 127), -2); // -1.5 -> -2
        assert_eq!(requantize(-5, half, 0, -128, 127), -2); // -2.5 -> -2
        // S = 0.25: ties at x.5 only for accumulators that are 2 mod 4.
        let quarter = m(0.25);
        assert_eq!(requantize(10, quarter, 0, -128, 127), 2); // 2.5 -> 2
        assert_eq!(requantize(11, quarter, 0, -128, 127), 3); // 2.75 -> 3
        assert_eq!(requantize(-14, quarter, 0, -128, 127), -4); // -3.5 -> -4
        assert_eq!(requantize(-9, quarter, 0, -128, 127), -2); // -2.25 -> -2
        // The zero point is added after rounding: 2.5 -> 2, + 7.
        assert_eq!(requantize(5, half, 7, -128, 127), 9);
        assert_eq!(requantize(-5, half, -7, -128, 127), -9);
    }

    #[test]
    fn the_f32_product_is_rounded_before_the_integer_rounding() {
        // tract rounds f32(|acc|) * S to f32 before rounding to an integer; these witnesses
        // (found by search) are where that double rounding differs from the exact product, in
        // both directions. We follow the FPU, not the exact product.
        let witnesses = [
            // (acc, scale bits, f32 result, exact result)
            (1_650_877, 0x3f17_dd8e, 979_340, 979_341), // f32 lands on x.5 from above -> even
            (2_664_940, 0x3f4d_f98c, 2_144_182, 2_144_181), // f32 lands on x.5 from below -> even
        ];
        for (acc, bits, fpu, exact) in witnesses {
            let scale = f32::from_bits(bits);
            assert_eq!((acc as f64 * scale as f64).round_ties_even() as i32, exact);
            assert_eq!(((acc as f32) * scale).round_ties_even() as i32, fpu);
            assert_eq!(scale_accumulator(acc, m(scale)), fpu);
            assert_eq!(scale_accumulator(-acc, m(scale)), -fpu);
        }
    }

    #[test]
    fn saturation() {
        let one = m(1.0);
        assert_eq!(requantize(1000, one, 0, -128, 127), 127);
        assert_eq!(requantize(-1000, one, 0, -128, 127), -128);
        assert_eq!(requantize(100, one, 27, -128, 127), 127);
        assert_eq!(requantize(-100, one, -28, -128, 127), -128);
        // Fused ReLU: the floor is the output zero point.
        assert_eq!(requantize(-100, one, -20, -20, 127), -20);
        assert_eq!(requantize(10, one, -20, -20, 127), -10);
    }

    #[test]
    fn very_small_and_very_large_scales() {
        let tiny = m(2.0f32.powi(-40));
        assert_eq!(requantize(i32::MAX, tiny, 3, -128, 127), 3);
        assert_eq!(requantize(i32::MIN, tiny, 3, -128, 127), 3);
        let large = m(30000.0);
        assert_eq!(requantize(1, large, 0, -128, 127), 127);
        assert_eq!(requantize(-1, large, 0, -128, 127), -128);
        assert_eq!(requantize(0, large, 5, -128, 127), 5);
        assert_eq!(scale_accumulator(i32::MAX, large), 1 << 30);
        assert_eq!(scale_accumulator(i32::MIN, large), -(1 << 30));
    }

    #[test]
    fn accumulators_near_the_i32_limits() {
        // |acc| above 2^24 is itself rounded to f32 first, as tract does.
        let s = m(2.0f32.powi(-24));
        for acc in [
            i32::MAX,
            i32::MAX - 1,
            i32::MIN,
            i32::MIN + 1,
            (1 << 24) + 1,
            -(1 << 24) - 3,
        ] {
            assert_eq!(
                requantize(acc, s, 0, -128, 127),
                tract_reference(acc, 2.0f32.powi(-24), 0),
                "acc {acc}"
            );
        }
        assert_eq!(requantize(i32::MAX, s, 0, -128, 127), 127); // 2^31 * 2^-24 = 128 -> saturates
        assert_eq!(requantize(i32::MIN, s, 0, -128, 127), -128);
        assert_eq!(requantize(i32::MIN, s, 0, -128, 127), -128);
    }

    #[test]
    fn matches_the_fpu_on_random_cases() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 200_000,
            ..Default::default()
        });
        runner
            .run(
                &(any::<i32>(), -30i32..2, 0u32..(1 << 23), -128i32..128),
                |(acc, exponent, fraction, zp)| {
                    let scale = f32::from_bits((((exponent + 127) as u32) << 23) | fraction);
                    let acc = acc >> (acc as u32 % 31); // spread the magnitudes
                    prop_assert_eq!(
                        requantize(acc, m(scale), zp, -128, 127),
                        tract_reference(acc, scale, zp)
                    );
                    Ok(())
                },
            )
            .unwrap();
    }
}
