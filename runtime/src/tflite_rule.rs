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

/// TFLM's left shift of int8 ADD inputs.
pub const ADD_LEFT_SHIFT: u32 = 20;

/// The three rescale factors of an int8 ADD, as TFLM's `add_common.cc` prepares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddParams {
    /// `s1 / (2 max(s1, s2))`, at most 0.5.
    pub input1: QuantizedMultiplier,
    /// `s2 / (2 max(s1, s2))`, at most 0.5.
    pub input2: QuantizedMultiplier,
    /// `2 max(s1, s2) / (2^20 s_out)`, below 1.
    pub output: QuantizedMultiplier,
}

/// A quantization scale TFLite accepts: positive and finite.
const fn is_valid_scale(scale: f32) -> bool {
    scale > 0.0 && scale.is_finite()
}

/// TFLite's `QuantizeMultiplierSmallerThanOneExp`: [`quantize_multiplier`] of a factor in
/// `(0, 1)` whose exponent comes out `<= 0`; `None` where TFLite's checks fail.
const fn quantize_multiplier_smaller_than_one(real: f64) -> Option<QuantizedMultiplier> {
    if !(real > 0.0 && real < 1.0) {
        return None;
    }
    match quantize_multiplier(real) {
        Some(q) if q.shift <= 0 => Some(q),
        _ => None,
    }
}

/// TFLM add_common.cc's Prepare: twice_max = 2*(double)max(s1,s2); real1 = (double)s1/twice_max; real2 = (double)s2/twice_max;
/// real_out = twice_max / ((1<<20) * (double)s_out); each through QuantizeMultiplier (QuantizeMultiplierSmallerThanOneExp: shift must be <= 0, else None). None for non-positive/non-finite scales.
///
/// The f64 arithmetic runs once, when the model is prepared (on the host, or at compile time:
/// the function is `const`); inference uses only the integers.
pub const fn add_params(
    input1_scale: f32,
    input2_scale: f32,
    output_scale: f32,
) -> Option<AddParams> {
    if !(is_valid_scale(input1_scale)
        && is_valid_scale(input2_scale)
        && is_valid_scale(output_scale))
    {
        return None;
    }
    // std::max(a, b) is `a < b ? b : a`.
    let max = if input1_scale < input2_scale {
        input2_scale
    } else {
        input1_scale
    };
    let twice_max = 2.0 * max as f64;
    let real1 = input1_scale as f64 / twice_max;
    let real2 = input2_scale as f64 / twice_max;
    let real_out = twice_max / ((1u32 << ADD_LEFT_SHIFT) as f64 * output_scale as f64);
    let (Some(input1), Some(input2), Some(output)) = (
        quantize_multiplier_smaller_than_one(real1),
        quantize_multiplier_smaller_than_one(real2),
        quantize_multiplier_smaller_than_one(real_out),
    ) else {
        return None;
    };
    Some(AddParams {
        input1,
        input2,
        output,
    })
}

/// One element: v_i = (x_i - zp_i) << 20; s_i = rounding_divide_by_pot(srdhm(v_i, M_i), -shift_i); raw = s_1 + s_2;
/// out = rounding_divide_by_pot(srdhm(raw, M_out), -shift_out) + zp_out, clamped to [min, max].
///
/// This is TFLM's `reference_integer_ops::AddFunc` (`MultiplyByQuantizedMultiplierSmallerThanOneExp`
/// for each rescale; with `shift <= 0` it is [`multiply_by_quantized_multiplier`]) and CMSIS-NN's
/// `arm_elementwise_add_s8`. The clamp is C++'s `min(max, max(min, out))`; `min`/`max` are the
/// activation range, within `-128..=127`. Integer operations wrap as on the MCU (they cannot
/// overflow for zero points in `-128..=127`).
pub const fn add(
    x1: i8,
    x2: i8,
    zero_points: [i32; 3],
    params: &AddParams,
    min: i32,
    max: i32,
) -> i8 {
    let v1 = (x1 as i32)
        .wrapping_sub(zero_points[0])
        .wrapping_mul(1 << ADD_LEFT_SHIFT);
    let v2 = (x2 as i32)
        .wrapping_sub(zero_points[1])
        .wrapping_mul(1 << ADD_LEFT_SHIFT);
    let s1 = multiply_by_quantized_multiplier(v1, params.input1);
    let s2 = multiply_by_quantized_multiplier(v2, params.input2);
    let raw = s1.wrapping_add(s2);
    let out = multiply_by_quantized_multiplier(raw, params.output).wrapping_add(zero_points[2]);
    let lower = if min < out { out } else { min };
    let clamped = if lower < max { lower } else { max };
    clamped as i8
}

/// TFLite's int8 average pool rounding: sum > 0 ? (sum + count/2)/count : (sum - count/2)/count (C division truncating toward zero). count >= 1.
///
/// That is the mean rounded to nearest with halves away from zero (for even `count`). The add
/// and subtract wrap, as they would on the MCU; real pools are far from `i32::MAX`.
pub const fn average(sum: i32, count: i32) -> i32 {
    debug_assert!(count >= 1);
    if sum > 0 {
        sum.wrapping_add(count / 2) / count
    } else {
        sum.wrapping_sub(count / 2) / count
    }
}

/// The parameters of TFLite's int8 SOFTMAX (`SoftmaxParams` of `softmax_common.cc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SoftmaxParams {
    /// Q31 mantissa of `beta * s_in * 2^26` (clamped to `2^31 - 1`).
    pub input_multiplier: i32,
    /// Its exponent, `>= 0`: `beta * s_in * 2^26 ≈ input_multiplier * 2^(input_left_shift - 31)`.
    pub input_left_shift: i32,
    /// The most negative `x - max(row)` that still counts (`<= 0`); entries below give -128.
    pub diff_min: i32,
}

/// gemmlowp integer bits of the rescaled differences, `FixedPoint<int32, 5>` (TFLite's
/// `kScaledDiffIntegerBits`).
const SCALED_DIFF_INTEGER_BITS: i32 = 5;
/// gemmlowp integer bits of the sum of exponentials, `FixedPoint<int32, 12>`
/// (`kAccumulationIntegerBits`).
const ACCUMULATION_INTEGER_BITS: i32 = 12;

/// TFLM softmax_common.cc for int8: PreprocessSoftmaxScaling(beta, input_scale, kScaledDiffIntegerBits = 5) and diff_min = -CalculateInputRadius(5, left_shift, 31).
///
/// - `PreprocessSoftmaxScaling`: `real = min((double)beta * (double)s_in * 2^26, 2^31 - 1)`, then
///   `QuantizeMultiplierGreaterThanOne(real)`: [`quantize_multiplier`], with TFLite's checks
///   `real > 1` and `shift >= 0` (`None` where they fail).
/// - `CalculateInputRadius(5, left_shift, 31) = floor(31 * 2^26 / 2^left_shift)` (in f64, exact:
///   the division is by a power of two), and `diff_min` is its negation.
///
/// `None` also for a non-positive or non-finite `beta` or `input_scale`.
pub const fn softmax_params(beta: f32, input_scale: f32) -> Option<SoftmaxParams> {
    if !(is_valid_scale(beta) && is_valid_scale(input_scale)) {
        return None;
    }
    let product =
        beta as f64 * input_scale as f64 * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64;
    let max_real = (1i64 << 31) as f64 - 1.0;
    // std::min(a, b) is `b < a ? b : a`.
    let real = if max_real < product {
        max_real
    } else {
        product
    };
    if real <= 1.0 {
        return None;
    }
    let q = match quantize_multiplier(real) {
        Some(q) if q.shift >= 0 => q,
        _ => return None,
    };
    let radius = ((1i64 << SCALED_DIFF_INTEGER_BITS) - 1) as f64
        * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64
        / (1i64 << q.shift) as f64;
    // floor of a positive value: the truncating cast.
    let radius = radius as i32;
    Some(SoftmaxParams {
        input_multiplier: q.multiplier,
        input_left_shift: q.shift,
        diff_min: -radius,
    })
}

/// gemmlowp's `SaturatingRoundingMultiplyByPOT<exponent>` on a raw value: for `exponent > 0` a
/// left shift saturating to `i32::MIN`/`i32::MAX` beyond `±(2^(31 - exponent) - 1)`; for
/// `exponent < 0` [`rounding_divide_by_pot`] by `-exponent`. `exponent` in `-31..=30`.
/// `Rescale<dst>(FixedPoint<src>)` is this with `exponent = src - dst`.
const fn saturating_rounding_multiply_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent > 0 {
        let threshold = (1i32 << (31 - exponent)) - 1;
        if x > threshold {
            i32::MAX
        } else if x < -threshold {
            i32::MIN
        } else {
            x << exponent
        }
    } else if exponent < 0 {
        rounding_divide_by_pot(x, (-exponent) as u32)
    } else {
        x
    }
}

/// [`rounding_divide_by_pot`] for any `exponent` in `0..=62` (in i64): `x / 2^exponent`
/// rounded to nearest, halves away from zero. TFLite's softmax can ask for an exponent above 31
/// (a row whose sum of exponentials is 512 or more); there gemmlowp's `RoundingDivideByPOT`
/// shifts an int32 by 32 or more, undefined in C, and the exact rounding (0 for the
/// non-negative products it divides) is what this returns.
const fn rounding_divide_by_pot_wide(x: i32, exponent: u32) -> i32 {
    if exponent <= 31 {
        return rounding_divide_by_pot(x, exponent);
    }
    let x = x as i64;
    let mask = (1i64 << exponent) - 1;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i64;
    ((x >> exponent) + (remainder > threshold) as i64) as i32
}

/// gemmlowp's `RoundingHalfSum` for int32: `(a + b + sign) / 2` in i64, `sign = 1` if `a + b >= 0`
/// else `-1`, the division truncating toward zero (so halves go away from zero).
const fn rounding_half_sum(a: i32, b: i32) -> i32 {
    let sum = a as i64 + b as i64;
    let sign = if sum >= 0 { 1 } else { -1 };
    ((sum + sign) / 2) as i32
}

/// `exp(-1/8)` in Q0.31 (gemmlowp's `constant_term`).
const EXP_MINUS_ONE_EIGHTH: i32 = 1_895_147_668;
/// `1/3` in Q0.31.
const ONE_THIRD: i32 = 715_827_883;
/// `exp(-2^k)` in Q0.31 for `k = -2..=4`: the barrel shifter of `exp_on_negative_values`.
const EXP_BARREL_MULTIPLIERS: [i32; 7] = [
    1_672_461_947, // exp(-1/4)
    1_302_514_674, // exp(-1/2)
    790_015_084,   // exp(-1)
    290_630_308,   // exp(-2)
    39_332_535,    // exp(-4)
    720_401,       // exp(-8)
    242,           // exp(-16)
];

/// gemmlowp's `exp_on_interval_between_negative_one_quarter_and_0_excl` on `FixedPoint<int32, 0>`
/// raws: with `x = a + 1/8`, `exp(a) ≈ e^(-1/8) (1 + x + x²/2 + x³/6 + x⁴/24)`, evaluated as
/// `c + c·(x + SRMulByPOT<-1>(((SRMulByPOT<-2>(x⁴) + x³)·(1/3)) + x²))`, every product a
/// [`saturating_rounding_doubling_high_mul`] and every sum a wrapping add.
const fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    let x = a.wrapping_add(1 << 28); // ConstantPOT<-3> of F0
    let x2 = saturating_rounding_doubling_high_mul(x, x);
    let x3 = saturating_rounding_doubling_high_mul(x2, x);
    let x4 = saturating_rounding_doubling_high_mul(x2, x2);
    let x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2);
    let cubic = saturating_rounding_doubling_high_mul(x4_over_4.wrapping_add(x3), ONE_THIRD);
    let poly = saturating_rounding_multiply_by_pot(cubic.wrapping_add(x2), -1);
    EXP_MINUS_ONE_EIGHTH.wrapping_add(saturating_rounding_doubling_high_mul(
        EXP_MINUS_ONE_EIGHTH,
        x.wrapping_add(poly),
    ))
}

/// gemmlowp's `exp_on_negative_values` for `FixedPoint<int32, 5>` input `a <= 0` (26 fractional
/// bits), returning the `FixedPoint<int32, 0>` raw of `exp(a)`: `a` is split into
/// `a_mod = (a & (2^24 - 1)) - 2^24` in `[-1/4, 0)`, whose exp comes from the polynomial (after
/// `Rescale<0>`, a saturating `<< 5`), and `remainder = a_mod - a`, a multiple of `1/4` whose
/// bit `26 + k` (`k = -2..=4`) multiplies the result by `exp(-2^k)` from `barrel`. `a = 0` gives
/// `One()` (`i32::MAX`). No clamp below -32 (gemmlowp clamps only for more than 5 integer bits).
const fn exp_on_negative_values(a: i32, barrel: &[i32; 7]) -> i32 {
    const FRACTIONAL_BITS: i32 = 31 - SCALED_DIFF_INTEGER_BITS;
    let one_quarter = 1i32 << (FRACTIONAL_BITS - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot(
            a_mod_quarter_minus_one_quarter,
            SCALED_DIFF_INTEGER_BITS,
        ),
    );
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    let mut i = 0;
    while i < barrel.len() {
        let bit = FRACTIONAL_BITS + i as i32 - 2;
        if remainder & (1 << bit) != 0 {
            result = saturating_rounding_doubling_high_mul(result, barrel[i]);
        }
        i += 1;
    }
    if a == 0 { i32::MAX } else { result }
}

/// gemmlowp's `one_over_one_plus_x_for_x_in_0_1` on a `FixedPoint<int32, 0>` raw `a` in
/// `[0, 1)`: Newton–Raphson on `d = RoundingHalfSum(a, One())` (that is `(1 + a)/2`), in
/// `FixedPoint<int32, 2>`: `x0 = 48/17 - 32/17·d` (raws 1515870810 and -1010580540), then three
/// times `x += Rescale<2>(x·(1 - d·x))` (`F2·F2` is an F4, rescaled by a saturating `<< 2`).
/// `x ≈ 1/d`; the result `1/(1 + a) = x/2` is `Rescale<0>(ExactMulByPot<-1>(x))`:
/// `ExactMulByPot<-1>` keeps the raw and relabels it `FixedPoint<int32, 1>`, and `Rescale<0>` of
/// that is a saturating `<< 1` of the raw.
const fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    const FORTY_EIGHT_OVER_17: i32 = 1_515_870_810;
    const MINUS_32_OVER_17: i32 = -1_010_580_540;
    const F2_ONE: i32 = 1 << 29;
    let half_denominator = rounding_half_sum(a, i32::MAX);
    let mut x = FORTY_EIGHT_OVER_17.wrapping_add(saturating_rounding_doubling_high_mul(
        half_denominator,
        MINUS_32_OVER_17,
    ));
    let mut i = 0;
    while i < 3 {
        let half_denominator_times_x = saturating_rounding_doubling_high_mul(half_denominator, x);
        let one_minus = F2_ONE.wrapping_sub(half_denominator_times_x);
        let correction = saturating_rounding_doubling_high_mul(x, one_minus);
        x = x.wrapping_add(saturating_rounding_multiply_by_pot(correction, 2));
        i += 1;
    }
    saturating_rounding_multiply_by_pot(x, 1)
}

/// TFLite's `GetReciprocal(x, x_integer_digits)` for a positive `FixedPoint<int32,
/// x_integer_digits>` raw: `h = clz(x as u32)`, `num_bits_over_unit = x_integer_digits - h`,
/// and the Q0.31 raw of `1 / (x·2^h / 2^31)` via [`one_over_one_plus_x_for_x_in_0_1`] of
/// `(x << h) - 2^31` (u32 arithmetic; a shift by 32 gives 0). Returns
/// `(reciprocal, num_bits_over_unit)`: `1/x ≈ reciprocal · 2^-31 · 2^-num_bits_over_unit`.
const fn get_reciprocal(x: i32, x_integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros();
    let num_bits_over_unit = x_integer_digits - headroom_plus_one as i32;
    let shifted = match (x as u32).checked_shl(headroom_plus_one) {
        Some(v) => v,
        None => 0,
    };
    let shifted_sum_minus_one = shifted.wrapping_sub(1 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one),
        num_bits_over_unit,
    )
}

/// The F5 raw of an entry's rescaled difference: TFLite's
/// `MultiplyByQuantizedMultiplierGreaterThanOne(diff, M, left_shift)`, that is
/// `srdhm(diff · 2^left_shift, M)` (cannot overflow for `diff >= diff_min`).
const fn scaled_diff(diff: i32, params: &SoftmaxParams) -> i32 {
    let factor = 1i32.wrapping_shl(params.input_left_shift as u32);
    saturating_rounding_doubling_high_mul(diff.wrapping_mul(factor), params.input_multiplier)
}

/// TFLite's reference int8 Softmax over one row (gemmlowp fixed point: exp_on_negative_values on FixedPoint<int32, 5>,
/// sum in FixedPoint<int32, 12>, GetReciprocal with one_over_one_plus_x_for_x_in_0_1, output scale 1/256 zero point -128:
/// unsat = rounding_divide_by_pot(srdhm(shifted_scale, exp), num_bits_over_unit + 31 - 8) - 128, clamped; entries with diff < diff_min give -128).
/// Panics only if the lengths differ (callers guarantee it).
///
/// In full: `diff = x - max(row)`; entries with `diff >= diff_min` contribute
/// `Rescale<12>(exp)` (`rounding_divide_by_pot(exp, 12)`) to a wrapping int32 sum; `(shifted_scale,
/// num_bits_over_unit) = GetReciprocal(sum, 12)`. The sum cannot wrap for rows of fewer than
/// 4096 entries (each term is at most `2^19`). An empty row does nothing.
pub fn softmax(input: &[i8], params: &SoftmaxParams, output: &mut [i8]) {
    softmax_with(input, params, output, &EXP_BARREL_MULTIPLIERS);
}

/// [`softmax`] with the barrel-shifter constants given (the tests perturb one).
fn softmax_with(input: &[i8], params: &SoftmaxParams, output: &mut [i8], barrel: &[i32; 7]) {
    assert_eq!(
        input.len(),
        output.len(),
        "softmax: input and output lengths differ"
    );
    let max_in_row = input
        .iter()
        .fold(i8::MIN, |m, &x| if m < x { x } else { m }) as i32;
    let mut sum_of_exps: i32 = 0;
    for &x in input {
        let diff = x as i32 - max_in_row;
        if diff >= params.diff_min {
            let exp = exp_on_negative_values(scaled_diff(diff, params), barrel);
            sum_of_exps = sum_of_exps.wrapping_add(saturating_rounding_multiply_by_pot(
                exp,
                -ACCUMULATION_INTEGER_BITS,
            ));
        }
    }
    let (shifted_scale, num_bits_over_unit) =
        get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS);
    // num_bits_over_unit is in -20..=12 (clz of an i32 is at most 32), so this is in 3..=35.
    let exponent = (num_bits_over_unit + 31 - 8) as u32;
    for (out, &x) in output.iter_mut().zip(input) {
        let diff = x as i32 - max_in_row;
        *out = if diff >= params.diff_min {
            let exp = exp_on_negative_values(scaled_diff(diff, params), barrel);
            let unsat = rounding_divide_by_pot_wide(
                saturating_rounding_doubling_high_mul(shifted_scale, exp),
                exponent,
            );
            let shifted = unsat.wrapping_sub(128);
            shifted.clamp(i8::MIN as i32, i8::MAX as i32) as i8
        } else {
            i8::MIN
        };
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

    #[test]
    fn average_by_hand() {
        // count 4, count/2 = 2. Ties both ways: 6/4 = 1.5 → (6+2)/4 = 2; 10/4 = 2.5 → 12/4 = 3;
        // −6/4 = −1.5 → (−6−2)/4 = −2; −10/4 = −2.5 → −12/4 = −3 (halves away from zero).
        assert_eq!(average(6, 4), 2);
        assert_eq!(average(10, 4), 3);
        assert_eq!(average(-6, 4), -2);
        assert_eq!(average(-10, 4), -3);
        // Not ties: 5/4 = 1.25 → 7/4 = 1; −5/4 → −7/4 = −1 (truncation toward zero); 7/4 = 1.75
        // → 9/4 = 2; −7/4 → −9/4 = −2.
        assert_eq!(average(5, 4), 1);
        assert_eq!(average(-5, 4), -1);
        assert_eq!(average(7, 4), 2);
        assert_eq!(average(-7, 4), -2);
        // Zero takes the `else` branch: (0 − 2)/4 = −0.5, truncated to 0.
        assert_eq!(average(0, 4), 0);
        // count 3, count/2 = 1: 4/3 → 5/3 = 1; 5/3 → 6/3 = 2; −5/3 → −6/3 = −2; −4/3 → −5/3 = −1.
        assert_eq!(average(4, 3), 1);
        assert_eq!(average(5, 3), 2);
        assert_eq!(average(-5, 3), -2);
        assert_eq!(average(-4, 3), -1);
        // count 2: 3/2 → 4/2 = 2; −3/2 → −4/2 = −2; count 1 is the identity.
        assert_eq!(average(3, 2), 2);
        assert_eq!(average(-3, 2), -2);
        assert_eq!(average(-7, 1), -7);
    }

    const fn qm(multiplier: i32, shift: i32) -> QuantizedMultiplier {
        QuantizedMultiplier { multiplier, shift }
    }

    #[test]
    fn add_params_by_hand() {
        // s1 = s2 = s_out = 1: twice_max = 2, real1 = real2 = 1/2 = 0.5·2^0 → (2^30, 0);
        // real_out = 2 / (2^20 · 1) = 2^-19 = 0.5·2^-18 → (2^30, −18).
        const UNIT: AddParams = add_params(1.0, 1.0, 1.0).unwrap();
        assert_eq!(
            UNIT,
            AddParams {
                input1: qm(1 << 30, 0),
                input2: qm(1 << 30, 0),
                output: qm(1 << 30, -18)
            }
        );
        // s1 = 1, s2 = 0.5, s_out = 1: twice_max = 2, real1 = 0.5 → (2^30, 0), real2 = 0.25 =
        // 0.5·2^-1 → (2^30, −1), real_out = 2^-19 as above.
        assert_eq!(
            add_params(1.0, 0.5, 1.0).unwrap(),
            AddParams {
                input1: qm(1 << 30, 0),
                input2: qm(1 << 30, -1),
                output: qm(1 << 30, -18)
            }
        );
        // The max is taken either way round: s1 = 0.5, s2 = 1 swaps the inputs.
        assert_eq!(
            add_params(0.5, 1.0, 1.0).unwrap(),
            AddParams {
                input1: qm(1 << 30, -1),
                input2: qm(1 << 30, 0),
                output: qm(1 << 30, -18)
            }
        );
        // s = 0.75 both, s_out = 3: twice_max = 1.5, real1 = 0.5; real_out = 1.5 / (2^20·3) =
        // 2^-21 = 0.5·2^-20 → (2^30, −20).
        assert_eq!(
            add_params(0.75, 0.75, 3.0).unwrap().output,
            qm(1 << 30, -20)
        );
        // real_out must be below 1: s_out = 2^-18 gives 2/(2^20·2^-18) = 0.5 (fine), 2^-19 gives
        // exactly 1 (shift 1: rejected), 2^-20 gives 2.
        assert_eq!(
            add_params(1.0, 1.0, 2f32.powi(-18)).unwrap().output,
            qm(1 << 30, 0)
        );
        assert_eq!(add_params(1.0, 1.0, 2f32.powi(-19)), None);
        assert_eq!(add_params(1.0, 1.0, 2f32.powi(-20)), None);
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert_eq!(add_params(bad, 1.0, 1.0), None);
            assert_eq!(add_params(1.0, bad, 1.0), None);
            assert_eq!(add_params(1.0, 1.0, bad), None);
        }
    }

    #[test]
    fn add_by_hand() {
        let unit = add_params(1.0, 1.0, 1.0).unwrap();
        let full = |x1, x2, zp| add(x1, x2, zp, &unit, -128, 127);
        // Unit scales: v_i = d_i·2^20 (d_i = x_i − zp_i); srdhm(v_i, 2^30) = d_i·2^19 exactly,
        // no division (shift 0); raw = (d1 + d2)·2^19; srdhm(raw, 2^30) = (d1 + d2)·2^18, then
        // rounding_divide_by_pot by 18 = d1 + d2 exactly; plus zp_out.
        assert_eq!(full(3, 4, [0, 0, 0]), 7);
        assert_eq!(full(-3, 4, [0, 0, 0]), 1);
        // Zero points: (3 − 1) + (4 − (−2)) + 5 = 2 + 6 + 5 = 13.
        assert_eq!(full(3, 4, [1, -2, 5]), 13);
        // Saturation: 100 + 100 = 200 → 127; −100 − 100 = −200 → −128; with zp = −128 for all:
        // 127 + 128 = 255, 255 + 255 − 128 = 382 → 127.
        assert_eq!(full(100, 100, [0, 0, 0]), 127);
        assert_eq!(full(-100, -100, [0, 0, 0]), -128);
        assert_eq!(full(127, 127, [-128, -128, -128]), 127);
        // An activation clamp (ReLU6-like range [0, 6] in codes): −5 + 2 = −3 → 0; 4 + 5 = 9 → 6.
        assert_eq!(add(-5, 2, [0, 0, 0], &unit, 0, 6), 0);
        assert_eq!(add(4, 5, [0, 0, 0], &unit, 0, 6), 6);
        // s_out = 2: real_out = 2^-20 → (2^30, −19): out = rdbp((d1 + d2)·2^18, 19) =
        // (d1 + d2)/2 with halves away from zero: 1 + 2 = 3 → 1.5 → 2; −3 → −2; 1 → 0.5 → 1;
        // −1 → −1; 4 → 2.
        let half = add_params(1.0, 1.0, 2.0).unwrap();
        assert_eq!(half.output, qm(1 << 30, -19));
        assert_eq!(add(1, 2, [0, 0, 0], &half, -128, 127), 2);
        assert_eq!(add(-1, -2, [0, 0, 0], &half, -128, 127), -2);
        assert_eq!(add(1, 0, [0, 0, 0], &half, -128, 127), 1);
        assert_eq!(add(-1, 0, [0, 0, 0], &half, -128, 127), -1);
        assert_eq!(add(2, 2, [0, 0, 0], &half, -128, 127), 2);
        // s1 = 1, s2 = 0.5: s_2 = rdbp(d2·2^19, 1) = d2·2^18; raw = d1·2^19 + d2·2^18;
        // out = rdbp(d1·2^18 + d2·2^17, 18) = d1 + d2/2 rounded: 2 + 1.5 = 3.5 → 4;
        // 2 − 1.5 = 0.5 → 1; −2 + 1.5 = −0.5 → −1.
        let mixed = add_params(1.0, 0.5, 1.0).unwrap();
        assert_eq!(add(2, 3, [0, 0, 0], &mixed, -128, 127), 4);
        assert_eq!(add(2, -3, [0, 0, 0], &mixed, -128, 127), 1);
        assert_eq!(add(-2, 3, [0, 0, 0], &mixed, -128, 127), -1);
    }

    #[test]
    fn softmax_params_by_hand() {
        // beta = 1, s = 1/16: real = 2^-4·2^26 = 2^22 = 0.5·2^23 → (2^30, 23);
        // radius = floor(31·2^26 / 2^23) = 31·8 = 248.
        assert_eq!(
            softmax_params(1.0, 1.0 / 16.0),
            Some(SoftmaxParams {
                input_multiplier: 1 << 30,
                input_left_shift: 23,
                diff_min: -248
            })
        );
        // s = 1/256: real = 2^18 → (2^30, 19); radius = 31·2^26/2^19 = 31·128 = 3968.
        assert_eq!(
            softmax_params(1.0, 1.0 / 256.0),
            Some(SoftmaxParams {
                input_multiplier: 1 << 30,
                input_left_shift: 19,
                diff_min: -3968
            })
        );
        // beta = 3, s = 1/256: real = 3·2^18 = 0.75·2^20 → (0.75·2^31 = 1,610,612,736, 20);
        // radius = 31·2^26/2^20 = 31·64 = 1984.
        assert_eq!(
            softmax_params(3.0, 1.0 / 256.0),
            Some(SoftmaxParams {
                input_multiplier: 1_610_612_736,
                input_left_shift: 20,
                diff_min: -1984
            })
        );
        // s = 2^10: 2^36 is clamped to 2^31 − 1 = (2^31 − 1)/2^31 · 2^31 → (2^31 − 1, 31);
        // radius = floor(31·2^26/2^31) = floor(0.96875) = 0.
        assert_eq!(
            softmax_params(1.0, 1024.0),
            Some(SoftmaxParams {
                input_multiplier: i32::MAX,
                input_left_shift: 31,
                diff_min: 0
            })
        );
        // real must exceed 1: s = 2^-26 gives exactly 1.
        assert_eq!(softmax_params(1.0, 2f32.powi(-26)), None);
        assert_eq!(
            softmax_params(1.0, 2f32.powi(-25))
                .unwrap()
                .input_left_shift,
            2
        );
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert_eq!(softmax_params(bad, 0.1), None);
            assert_eq!(softmax_params(1.0, bad), None);
        }
    }

    fn run_softmax(input: &[i8], params: &SoftmaxParams) -> std::vec::Vec<i8> {
        let mut out = std::vec![0i8; input.len()];
        softmax(input, params, &mut out);
        out
    }

    #[test]
    fn softmax_by_hand() {
        let p = softmax_params(1.0, 1.0 / 16.0).unwrap();
        // Every entry equal: diff = 0, exp = One() = 2^31 − 1; Rescale<12> = rdbp(2^31 − 1, 12)
        // = 2^19 (the remainder 4095 rounds up). n equal entries sum to n·2^19.
        // n = 2: sum 2^20, clz 11, num_bits_over_unit 1, (2^20 << 11) − 2^31 = 0, so
        // shifted_scale ≈ 1/(1+0) ≈ 2^31; srdhm(≈2^31, 2^31 − 1) ≈ 2^31 (within a few units —
        // far less than the half-unit 2^23 of the final shift); rdbp(≈2^31, 1 + 23) = 128;
        // 128 − 128 = 0 (the code of 0.5).
        assert_eq!(run_softmax(&[5, 5], &p), [0, 0]);
        // n = 4: sum 2^21, clz 10, bits 2, shifted 0 again: 2^31 / 2^25 = 64 → −64 (0.25).
        assert_eq!(run_softmax(&[-7; 4], &p), [-64; 4]);
        // n = 3: sum 3·2^19 = 1.5·2^20, clz 11, bits 1, shifted = 3·2^30 − 2^31 = 2^30 (0.5):
        // 1/1.5 = 2/3 → ≈ 2/3·2^31; / 2^24 = 2/3·128 = 85.33 → 85 → −43.
        assert_eq!(run_softmax(&[0; 3], &p), [-43; 3]);
        // n = 5: sum 5·2^19 = 1.25·2^21, clz 10, bits 2, shifted 0.25: 0.8·2^31 / 2^25 = 51.2
        // → 51 → −77.
        assert_eq!(run_softmax(&[9; 5], &p), [-77; 5]);
        // n = 1: sum 2^19, clz 12, bits 0, shifted 0: 2^31/2^23 = 256 → 128 → clamped 127.
        assert_eq!(run_softmax(&[-3], &p), [127]);
        // One dominant entry: [127, 0] at s = 1/16: diff −127 → −7.94 real, e^-7.94 ≈ 3.6e-4.
        // p0 ≈ 0.99964 → 256·p0 ≈ 255.9 → 128 → clamped 127; p1·256 ≈ 0.09 → 0 → −128.
        assert_eq!(run_softmax(&[127, 0], &p), [127, -128]);
        // Below diff_min: [127, −128] has diff −255 < −248: that entry is −128 and not summed,
        // so the sum is 2^19 exactly and the max is 256 − 128 → 127 (as n = 1).
        assert_eq!(run_softmax(&[127, -128], &p), [127, -128]);
        // diff −248 is still counted (>= diff_min): e^-15.5 ≈ 1.9e-7 changes nothing visible.
        assert_eq!(run_softmax(&[120, -128], &p), [127, -128]);
        // Empty rows are allowed.
        assert_eq!(run_softmax(&[], &p), []);
    }

    #[test]
    #[should_panic]
    fn softmax_panics_on_length_mismatch() {
        let p = softmax_params(1.0, 1.0 / 16.0).unwrap();
        softmax(&[1, 2, 3], &p, &mut [0; 2]);
    }

    #[test]
    fn gemmlowp_helpers_by_hand() {
        // Saturating ×2^e: threshold 2^(31−e) − 1.
        assert_eq!(saturating_rounding_multiply_by_pot(1 << 29, 1), 1 << 30);
        assert_eq!(saturating_rounding_multiply_by_pot(1 << 30, 1), i32::MAX);
        assert_eq!(
            saturating_rounding_multiply_by_pot(-(1 << 30) + 1, 1),
            i32::MIN + 2
        );
        assert_eq!(saturating_rounding_multiply_by_pot(-(1 << 30), 1), i32::MIN);
        assert_eq!(saturating_rounding_multiply_by_pot(5, -1), 3); // 2.5 → 3
        // RoundingHalfSum: (3 + 4 + 1)/2 = 4; (−3 − 4 − 1)/2 = −4; (0 + 2^31 − 1 + 1)/2 = 2^30.
        assert_eq!(rounding_half_sum(3, 4), 4);
        assert_eq!(rounding_half_sum(-3, -4), -4);
        assert_eq!(rounding_half_sum(0, i32::MAX), 1 << 30);
        // The wide rounding agrees below 32 and rounds non-negative values to 0 above.
        assert_eq!(rounding_divide_by_pot_wide(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot_wide(i32::MAX, 32), 0); // 0.4999…
        assert_eq!(rounding_divide_by_pot_wide(i32::MIN, 32), -1); // −0.5 → −1
        assert_eq!(rounding_divide_by_pot_wide(i32::MAX, 35), 0);
    }

    /// SplitMix64, for reproducible random rows without a dependency.
    struct SplitMix64(u64);
    impl SplitMix64 {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn exp_and_reciprocal_against_f64() {
        // exp_on_negative_values on F5 raws a ≤ 0 (value a/2^26) down to −31.
        let mut rng = SplitMix64(7);
        let mut worst: f64 = 0.0;
        for _ in 0..200_000 {
            let a = -(rng.below(31u64 << 26) as i32);
            let got = exp_on_negative_values(a, &EXP_BARREL_MULTIPLIERS) as f64 / 2f64.powi(31);
            let want = (a as f64 / 2f64.powi(26)).exp();
            worst = worst.max((got - want).abs());
        }
        // The polynomial is Taylor to 4th order on an interval of half-width 1/8, whose
        // truncation is about (1/8)^5/5! = 2.5e-7; observed 2.29e-7.
        assert!(worst < 3e-7, "exp error {worst}");
        // one_over_one_plus_x on Q0.31 raws in [0, 1).
        let mut worst: f64 = 0.0;
        for _ in 0..200_000 {
            let a = rng.below(1 << 31) as i32;
            let got = one_over_one_plus_x_for_x_in_0_1(a) as f64 / 2f64.powi(31);
            let want = 1.0 / (1.0 + a as f64 / 2f64.powi(31));
            worst = worst.max((got - want).abs());
        }
        // Observed 3.2e-9 (Newton converges; the error is the rounding of the Q0.31 products).
        assert!(worst < 1e-8, "reciprocal error {worst}");
    }

    /// The largest |int8 softmax code − round(256·softmax_f64(beta·s·x)) + 128| over random rows
    /// (the f64 code clamped to int8 like the kernel's), computed with `barrel`.
    fn worst_softmax_error(barrel: &[i32; 7], seed: u64) -> i32 {
        let mut rng = SplitMix64(seed);
        let mut worst = 0;
        let betas = [0.5f32, 1.0, 1.0, 2.0];
        for _ in 0..20_000 {
            let beta = betas[rng.below(4) as usize];
            // Input scales from 1/512 to about 0.5 (log-uniform-ish).
            let scale = (2f64.powf(-(rng.below(8000) as f64) / 1000.0 - 1.0)) as f32;
            let params = softmax_params(beta, scale).unwrap();
            let n = 1 + rng.below(40) as usize;
            let spread = 1 + rng.below(256) as i32;
            let base = rng.below(256) as i32 - 128;
            let row: std::vec::Vec<i8> = (0..n)
                .map(|_| (base + rng.below(spread as u64) as i32).clamp(-128, 127) as i8)
                .collect();
            let mut out = std::vec![0i8; n];
            softmax_with(&row, &params, &mut out, barrel);
            let k = beta as f64 * scale as f64;
            let max = *row.iter().max().unwrap() as f64;
            let exps: std::vec::Vec<f64> =
                row.iter().map(|&x| (k * (x as f64 - max)).exp()).collect();
            let total: f64 = exps.iter().sum();
            for (e, &o) in exps.iter().zip(&out) {
                let want = ((256.0 * e / total).round() - 128.0).clamp(-128.0, 127.0) as i32;
                worst = worst.max((o as i32 - want).abs());
            }
        }
        worst
    }

    #[test]
    fn softmax_within_one_code_of_f64() {
        // 40,000 random rows (1..=40 entries, beta 0.5/1/2, s from 1/512 to 1/2): observed at
        // most 1 code off (where the f64 value sits within the fixed-point error of a half).
        assert!(worst_softmax_error(&EXP_BARREL_MULTIPLIERS, 1) <= 1);
        assert!(worst_softmax_error(&EXP_BARREL_MULTIPLIERS, 2) <= 1);
    }

    #[test]
    fn perturbed_barrel_constant_is_caught() {
        // exp(−1/2) one percent too large: the ±1-code softmax bound does not see it (observed
        // worst 1), but the exp check does (error ≈ 0.01·e^-0.5 on inputs with bit 25 set, far
        // above the 3e-7 bound) and so does the hand-picked row below.
        let mut bad = EXP_BARREL_MULTIPLIERS;
        bad[1] += bad[1] / 100;
        // −0.75 in F5: a & (2^24 − 1) = 0, a_mod = −1/4, remainder = −1/4 + 3/4 = 1/2 (bit 25).
        let a = -(3 << 24);
        let got = exp_on_negative_values(a, &bad) as f64 / 2f64.powi(31);
        assert!((got - (-0.75f64).exp()).abs() > 3e-7);
        // Five percent too large moves some softmax output by 2 or more codes (observed 4).
        let mut worse = EXP_BARREL_MULTIPLIERS;
        worse[1] += worse[1] / 20;
        assert!(worst_softmax_error(&worse, 1) > 1);
        // [0, −12] at s = 1/16: diff −12 is −0.75 (remainder bit 25, the exp(−1/2) multiplier).
        // e^-0.75 = 0.47237; 0.47237 / 1.47237 = 0.32082 → 82.13 → 82 → −46, and the max entry
        // 0.67918 → 173.87 → 174 → 46. With exp(−1/2) 1% high, e^-0.75 becomes 0.47709:
        // 0.32300·256 = 82.69 → 83 → −45.
        let p = softmax_params(1.0, 1.0 / 16.0).unwrap();
        let mut good_out = [0i8; 2];
        let mut bad_out = [0i8; 2];
        softmax_with(&[0, -12], &p, &mut good_out, &EXP_BARREL_MULTIPLIERS);
        softmax_with(&[0, -12], &p, &mut bad_out, &bad);
        assert_eq!(good_out, [46, -46]);
        assert_eq!(bad_out[1], -45);
        assert_ne!(good_out, bad_out);
    }
}
