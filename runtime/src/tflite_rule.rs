//! TensorFlow Lite's integer requantization, as TensorFlow Lite Micro and Arm's CMSIS-NN compute
//! it: the arithmetic of the `tflite` rule of model format v2 (issue 13; not yet wired into a
//! model). Everything here is integer-only and `const`, so it costs no FPU on the MCU.
//!
//! A real rescale factor `r > 0` is stored as a Q31 multiplier `M` (`2^30 <= M < 2^31`) and a
//! power-of-two exponent `shift`, `r ≈ M * 2^(shift - 31)` ([`quantize_multiplier`], TFLite's
//! `QuantizeMultiplier`). An int32 accumulator is rescaled by one of two roundings:
//!
//! - [`multiply_by_quantized_multiplier`] — TFLM's default and CMSIS-NN's `arm_nn_requantize`:
//!   round twice, `rounding_divide_by_pot(srdhm(acc << max(shift, 0), M), max(-shift, 0))`. Conv,
//!   depthwise, add and fully-connected layers of TFLM and CMSIS-NN all use it.
//! - [`multiply_by_quantized_multiplier_single_round`] — TensorFlow Lite's reference
//!   FULLY_CONNECTED (TF 2.21, `TFLITE_SINGLE_ROUNDING`): `(acc * M + 2^(30 - shift)) >> (31 - shift)`.
//!
//! The two differ by at most 1 (see `../shared/models/mlperf-tiny/README.md`, which measured it
//! on the MLPerf Tiny models); the golden outputs tinyconv is checked against use the first.

/// A real multiplier as TensorFlow Lite stores it: `real ≈ multiplier * 2^(shift - 31)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantizedMultiplier {
    /// Q31 mantissa, `2^30 <= multiplier < 2^31` (0 only for a zero multiplier).
    pub multiplier: i32,
    /// Power-of-two exponent: positive shifts left, negative shifts right.
    pub shift: i32,
}

/// TFLite's `QuantizeMultiplier(double)`: `frexp` then round the mantissa to Q31 (half away from
/// zero, as `std::round`), renormalizing when it rounds up to `2^31`, and flushing factors below
/// `2^-32` to zero. `None` for a negative, infinite or NaN factor (TFLite asserts on those).
///
/// Done on the f64's bits rather than with `frexp`, so it is `const` and needs no libm: the
/// mantissa of a normal f64 is `m53 * 2^-53` with 53 significant bits, so `q * 2^31` is
/// `m53 / 2^22` exactly and rounding it is an integer add and shift.
pub const fn quantize_multiplier(real: f64) -> Option<QuantizedMultiplier> {
    let bits = real.to_bits();
    if bits >> 63 != 0 && real != 0.0 {
        return None; // negative
    }
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0x7ff {
        return None; // infinite or NaN
    }
    if real == 0.0 || biased == 0 {
        // Zero, and subnormals (below 2^-1022, far below TFLite's 2^-32 flush) are zero.
        return Some(QuantizedMultiplier {
            multiplier: 0,
            shift: 0,
        });
    }
    // real = q * 2^e with q in [0.5, 1): frexp's e is the IEEE exponent plus one.
    let mut shift = biased - 1022;
    let m53 = (bits & ((1 << 52) - 1)) | (1 << 52);
    let mut q_fixed = (m53 + (1 << 21)) >> 22; // round(q * 2^31), halves away from zero
    if q_fixed == 1 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return Some(QuantizedMultiplier {
            multiplier: 0,
            shift: 0,
        });
    }
    Some(QuantizedMultiplier {
        multiplier: q_fixed as i32,
        shift,
    })
}

/// The real factor of a per-channel conv or depthwise layer, as TFLite computes it:
/// `(double)s_in * (double)s_w / (double)s_out`.
pub fn conv_real_multiplier(input_scale: f32, weight_scale: f32, output_scale: f32) -> f64 {
    input_scale as f64 * weight_scale as f64 / output_scale as f64
}

/// The real factor of a FULLY_CONNECTED layer, as TFLM (`GetQuantizedConvolutionMultipler`)
/// computes it: the scale product in f32 first, `(double)(float)(s_in * s_w) / (double)s_out`.
pub fn dense_real_multiplier(input_scale: f32, weight_scale: f32, output_scale: f32) -> f64 {
    (input_scale * weight_scale) as f64 / output_scale as f64
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: the high 32 bits of `2·a·b`, rounded to
/// nearest with halves toward +∞ (the nudge `2^30` or `1 - 2^30`, then division truncating
/// toward zero); the one overflowing case `a = b = i32::MIN` saturates to `i32::MAX`.
pub const fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest, halves away from zero.
/// `exponent` in `0..=31`.
pub const fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    debug_assert!(exponent <= 31);
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> exponent) + (remainder > threshold) as i32
}

/// TFLM's `MultiplyByQuantizedMultiplier` and CMSIS-NN's `arm_nn_requantize` (double rounding).
/// The left shift is an int32 multiplication that wraps, as it does on the MCU (in C it is
/// undefined on overflow; real models keep `acc << shift` in range).
pub const fn multiply_by_quantized_multiplier(x: i32, m: QuantizedMultiplier) -> i32 {
    let left = if m.shift > 0 { m.shift as u32 } else { 0 };
    let right = if m.shift < 0 { (-m.shift) as u32 } else { 0 };
    let shifted = x.wrapping_mul(1i32.wrapping_shl(left));
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(shifted, m.multiplier),
        right,
    )
}

/// TensorFlow Lite's single-rounding rescale (`TFLITE_SINGLE_ROUNDING`, its reference
/// FULLY_CONNECTED): `(x * M + 2^(30 - shift)) >> (31 - shift)`, an arithmetic shift (rounds
/// halves toward +∞). `shift` in `-31..=30`; the result saturates to i32 (TFLite asserts it fits).
pub const fn multiply_by_quantized_multiplier_single_round(x: i32, m: QuantizedMultiplier) -> i32 {
    debug_assert!(m.shift >= -31 && m.shift <= 30);
    let total_shift = (31 - m.shift) as u32;
    let round = 1i64 << (total_shift - 1);
    let result = (x as i64 * m.multiplier as i64 + round) >> total_shift;
    if result > i32::MAX as i64 {
        i32::MAX
    } else if result < i32::MIN as i64 {
        i32::MIN
    } else {
        result as i32
    }
}

#[cfg(test)]
mod tests {
    //! Every expected value below is worked out by hand from the definitions in the doc
    //! comments (the arithmetic is in each comment), not taken from the code.
    use super::*;

    const HALF: QuantizedMultiplier = QuantizedMultiplier {
        multiplier: 1 << 30,
        shift: 0,
    };

    #[test]
    fn quantize_multiplier_by_hand() {
        let q = |r| quantize_multiplier(r).unwrap();
        // 0.5 = 0.5 * 2^0: M = 0.5 * 2^31 = 2^30, shift 0.
        assert_eq!(q(0.5), HALF);
        // 1.0 = 0.5 * 2^1.
        assert_eq!(
            q(1.0),
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: 1
            }
        );
        // 0.75 = 0.75 * 2^0: M = 0.75 * 2^31 = 1,610,612,736.
        assert_eq!(
            q(0.75),
            QuantizedMultiplier {
                multiplier: 1_610_612_736,
                shift: 0
            }
        );
        // 3/1024 = 0.75 * 2^-8.
        assert_eq!(
            q(3.0 / 1024.0),
            QuantizedMultiplier {
                multiplier: 1_610_612_736,
                shift: -8
            }
        );
        // 1 - 2^-40 = q * 2^0 with q * 2^31 = 2^31 - 2^-9, which rounds to 2^31: renormalized to
        // M = 2^30, shift 1 (that is 1.0).
        assert_eq!(
            q(1.0 - 2f64.powi(-40)),
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: 1
            }
        );
        // 0.5 + 2^-33 = (0.5 + 2^-33) * 2^0: q * 2^31 = 2^30 + 0.25, rounds down to 2^30.
        assert_eq!(q(0.5 + 2f64.powi(-33)), HALF);
        // 0.5 + 2^-32: q * 2^31 = 2^30 + 0.5, a half: rounds away from zero to 2^30 + 1.
        assert_eq!(
            q(0.5 + 2f64.powi(-32)),
            QuantizedMultiplier {
                multiplier: (1 << 30) + 1,
                shift: 0
            }
        );
        // 2^-32 = 0.5 * 2^-31 is the smallest kept; 2^-33 = 0.5 * 2^-32 is flushed to zero.
        assert_eq!(
            q(2f64.powi(-32)),
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: -31
            }
        );
        assert_eq!(
            q(2f64.powi(-33)),
            QuantizedMultiplier {
                multiplier: 0,
                shift: 0
            }
        );
        assert_eq!(
            q(0.0),
            QuantizedMultiplier {
                multiplier: 0,
                shift: 0
            }
        );
        assert_eq!(quantize_multiplier(-0.5), None);
        assert_eq!(quantize_multiplier(f64::NAN), None);
        assert_eq!(quantize_multiplier(f64::INFINITY), None);
    }

    #[test]
    fn srdhm_by_hand() {
        let f = saturating_rounding_doubling_high_mul;
        // 2·2^30·2^30 / 2^32 = 2^29 exactly.
        assert_eq!(f(1 << 30, 1 << 30), 1 << 29);
        // 2·5·2^30 / 2^32 = 2.5: (5·2^30 + 2^30) / 2^31 = 3 — a positive half goes up.
        assert_eq!(f(5, 1 << 30), 3);
        // −2.5: (−5·2^30 + 1 − 2^30) / 2^31 = (−3·2^31 + 1) / 2^31 = −2.99…, truncated to −2:
        // a negative half goes up too (toward +∞).
        assert_eq!(f(-5, 1 << 30), -2);
        // 2·(−13)·2^29 / 2^32 = −3.25: (−13·2^29 + 1 − 2^30) / 2^31 = −3.75…, truncated to −3.
        assert_eq!(f(-13, 1 << 29), -3);
        // 2·3·2^29 / 2^32 = 0.75: (3·2^29 + 2^30) / 2^31 = 1.25 → 1.
        assert_eq!(f(3, 1 << 29), 1);
        // The overflow: (−2^31)·(−2^31)·2 = 2^63 does not fit; saturates.
        assert_eq!(f(i32::MIN, i32::MIN), i32::MAX);
        // (−2^31)·(2^31 − 1)·2 / 2^32 = −2^31 + 1/2 exactly; with the negative nudge:
        // (−2^62 + 2^31 + 1 − 2^30) / 2^31 = −2^31 + 0.5…, truncated toward zero: −2^31 + 1.
        assert_eq!(f(i32::MIN, i32::MAX), i32::MIN + 1);
        // i32::MAX²·2 / 2^32 = (2^31 − 1)² / 2^31 = 2^31 − 2 + 2^-31: rounds to 2^31 − 2.
        assert_eq!(f(i32::MAX, i32::MAX), i32::MAX - 1);
    }

    #[test]
    fn rounding_divide_by_pot_by_hand() {
        let f = rounding_divide_by_pot;
        // Halves away from zero, both signs.
        assert_eq!(f(5, 1), 3); // 2.5
        assert_eq!(f(-5, 1), -3); // −2.5
        assert_eq!(f(3, 1), 2); // 1.5
        assert_eq!(f(-3, 1), -2); // −1.5
        assert_eq!(f(6, 2), 2); // 1.5
        assert_eq!(f(-6, 2), -2); // −1.5
        // Not halves.
        assert_eq!(f(7, 2), 2); // 1.75
        assert_eq!(f(-7, 2), -2); // −1.75
        assert_eq!(f(5, 2), 1); // 1.25
        assert_eq!(f(-5, 2), -1); // −1.25
        assert_eq!(f(1000, 0), 1000);
        // The extremes: −2^31 / 2^31 = −1; (2^31 − 1) / 2^31 ≈ 1.0 → 1; −2^31 / 2 = −2^30.
        assert_eq!(f(i32::MIN, 31), -1);
        assert_eq!(f(i32::MAX, 31), 1);
        assert_eq!(f(i32::MIN, 1), -(1 << 30));
    }

    #[test]
    fn requantize_both_roundings_by_hand() {
        // ×0.5 with shift 0: srdhm(x, 2^30) = x/2 with halves up, no division after.
        assert_eq!(multiply_by_quantized_multiplier(5, HALF), 3);
        assert_eq!(multiply_by_quantized_multiplier(-5, HALF), -2);
        // Single rounding, same factor: (x·2^30 + 2^30) >> 31 = floor((x + 1) / 2).
        assert_eq!(multiply_by_quantized_multiplier_single_round(5, HALF), 3);
        assert_eq!(multiply_by_quantized_multiplier_single_round(-5, HALF), -2);
        // ×2^-3 as M = 2^30, shift −2 (0.5 · 2^-2 = 1/8). x = 20 → 2.5.
        // Double: srdhm(20, 2^30) = 10 exactly, then 10 / 4 = 2.5 → 3 (away from zero).
        // Single: (20·2^30 + 2^32) >> 33 = floor(2.5 + 0.5) = 3.
        let eighth = QuantizedMultiplier {
            multiplier: 1 << 30,
            shift: -2,
        };
        assert_eq!(multiply_by_quantized_multiplier(20, eighth), 3);
        assert_eq!(multiply_by_quantized_multiplier_single_round(20, eighth), 3);
        // x = −20 → −2.5: double rounds the exact −10 / 4 away from zero to −3; single takes
        // floor(−2.5 + 0.5) = −2. The roundings differ by one on negative halves.
        assert_eq!(multiply_by_quantized_multiplier(-20, eighth), -3);
        assert_eq!(
            multiply_by_quantized_multiplier_single_round(-20, eighth),
            -2
        );
        // x = 11, ×1/8 = 1.375. Double: srdhm(11, 2^30) = 5.5 → 6, then 6/4 = 1.5 → 2 — the
        // double rounding overshoots; single: floor(1.375 + 0.5) = 1.
        assert_eq!(multiply_by_quantized_multiplier(11, eighth), 2);
        assert_eq!(multiply_by_quantized_multiplier_single_round(11, eighth), 1);
        // A positive shift: ×1.5 = M 0.75·2^31, shift 1. x = 3: 3 << 1 = 6, srdhm(6, 0.75·2^31)
        // = 6·0.75 = 4.5 → 5 (half up). Single: (3·M + 2^29) >> 30 = floor(4.5 + 0.5) = 5.
        let one_and_half = QuantizedMultiplier {
            multiplier: 1_610_612_736,
            shift: 1,
        };
        assert_eq!(multiply_by_quantized_multiplier(3, one_and_half), 5);
        assert_eq!(
            multiply_by_quantized_multiplier_single_round(3, one_and_half),
            5
        );
        // Saturation of the single-rounding path: (2^31 − 1)·1.5 does not fit.
        assert_eq!(
            multiply_by_quantized_multiplier_single_round(i32::MAX, one_and_half),
            i32::MAX
        );
    }

    #[test]
    fn the_two_real_multipliers_differ_only_in_the_f32_product() {
        // s_in·s_w = 0.1·0.3 in f32 is not the f64 product of the same two f32s.
        let (a, b, c) = (0.1f32, 0.3f32, 0.7f32);
        let conv = conv_real_multiplier(a, b, c);
        let dense = dense_real_multiplier(a, b, c);
        assert_eq!(conv, a as f64 * b as f64 / c as f64);
        assert_eq!(dense, (a * b) as f64 / c as f64);
        assert_ne!(conv, dense, "the f32 product rounds");
    }
}
