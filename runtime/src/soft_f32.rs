//! IEEE-754 binary32 arithmetic in integers: what tract computes on the FPU for the QDQ add and
//! average pool of the `onnx` rule (docs/quantization.md), bit for bit, on an MCU without one.
//!
//! Values are f32 bit patterns (`u32`). [`mul`], [`add`] and [`recip`] round to nearest, ties to
//! even, exactly as IEEE-754 (and the host FPU) does, with gradual underflow (subnormal inputs
//! and results) and overflow to infinity. Domain: every bit pattern. Infinities follow IEEE
//! (`inf - inf`, `0 * inf` and `1 / NaN` are NaN); a NaN result is always the canonical quiet
//! NaN [`NAN`] (the FPU may return another payload: the tests compare NaN-ness only). The
//! inference paths only reach finite values — dequantized codes `(q - z) * s` with
//! `|q - z| <= 255` and a positive normal scale, their sums, and reciprocals of positive normal
//! scales and of window counts `1..=65025` — but nothing here relies on that.
//!
//! [`from_i32`] is Rust's `x as f32` (rounding to nearest even above 2^24) and [`rne_i32`] is
//! `f.round_ties_even() as i32` (saturating, NaN to 0). Everything is a `const fn` on
//! integers, `u64` at most; no `unsafe`, no float operation.

/// The sign bit.
pub const SIGN: u32 = 0x8000_0000;
/// Positive infinity.
pub const INF: u32 = 0x7f80_0000;
/// The canonical quiet NaN every NaN result is.
pub const NAN: u32 = 0x7fc0_0000;

const fn is_nan(a: u32) -> bool {
    a & !SIGN > INF
}

const fn is_inf(a: u32) -> bool {
    a & !SIGN == INF
}

const fn is_zero(a: u32) -> bool {
    a & !SIGN == 0
}

/// A finite value as `(sign bit, significand, exponent)`: `significand * 2^exponent`, the
/// significand below 2^24 (below 2^23 for subnormals and zero).
const fn unpack(a: u32) -> (u32, u64, i32) {
    let sign = a & SIGN;
    let exp = ((a >> 23) & 0xff) as i32;
    let frac = (a & 0x7f_ffff) as u64;
    if exp == 0 {
        (sign, frac, -149)
    } else {
        (sign, frac | 1 << 23, exp - 150)
    }
}

/// `sign * m * 2^e` rounded to the nearest f32 (ties to even): a subnormal when it is below
/// 2^-126, infinity when it is too large. `sign` is the sign bit (`SIGN` or 0).
const fn round_pack(sign: u32, m: u64, e: i32) -> u32 {
    if m == 0 {
        return sign;
    }
    let bits = 64 - m.leading_zeros() as i32;
    // Keep 24 significant bits, but no bit below 2^-149 (the subnormals' last bit).
    let mut shift = bits - 24;
    if e + shift < -149 {
        shift = -149 - e;
    }
    let q = if shift <= 0 {
        // Exact: `-shift <= 23`, since `shift >= bits - 24 >= -23`.
        m << (-shift) as u32
    } else if shift >= 64 {
        // Everything is below the last bit: m < 2^shift, half is 2^(shift - 1).
        (shift == 64 && m > 1 << 63) as u64
    } else {
        let s = shift as u32;
        let q = m >> s;
        let rem = m & ((1u64 << s) - 1);
        let half = 1u64 << (s - 1);
        q + (rem > half || (rem == half && q & 1 == 1)) as u64
    };
    // `q * 2^(e + shift)`, the last bit's exponent at least -149: the biased exponent field is
    // `e + shift + 149` plus q's bit 23 (the implicit bit), and a rounding carry to 2^24
    // increments it, as it must.
    let packed = (((e + shift + 149) as u64) << 23) + q;
    if packed >= INF as u64 {
        return sign | INF;
    }
    sign | packed as u32
}

/// `a * b`, rounded to nearest even.
pub const fn mul(a: u32, b: u32) -> u32 {
    let sign = (a ^ b) & SIGN;
    if is_nan(a) || is_nan(b) {
        return NAN;
    }
    if is_inf(a) || is_inf(b) {
        if is_zero(a) || is_zero(b) {
            return NAN;
        }
        return sign | INF;
    }
    let (_, ma, ea) = unpack(a);
    let (_, mb, eb) = unpack(b);
    // Both below 2^24: the product is exact in 48 bits.
    round_pack(sign, ma * mb, ea + eb)
}

/// `a + b`, rounded to nearest even (an exact zero sum is +0 unless both are -0).
pub const fn add(a: u32, b: u32) -> u32 {
    if is_nan(a) || is_nan(b) {
        return NAN;
    }
    if is_inf(a) {
        if is_inf(b) && (a ^ b) & SIGN != 0 {
            return NAN;
        }
        return a;
    }
    if is_inf(b) {
        return b;
    }
    let (sa, ma, ea) = unpack(a);
    let (sb, mb, eb) = unpack(b);
    if ma == 0 && mb == 0 {
        return sa & sb;
    }
    if ma == 0 {
        return b;
    }
    if mb == 0 {
        return a;
    }
    // x has the larger exponent.
    let (sx, mx, ex, sy, my, ey) = if ea >= eb {
        (sa, ma, ea, sb, mb, eb)
    } else {
        (sb, mb, eb, sa, ma, ea)
    };
    let d = (ex - ey) as u32;
    // Both on the grid 2^(ex - 32): x exactly (below 2^56); y exactly when d <= 32, else
    // truncated with the lost bits ORed into bit 0 (a sticky bit). Then x is normal (its
    // exponent exceeds the subnormals'), the exact sum or difference is above 2^54, rounding
    // cuts at bit 30 or higher, and the sticky bit decides only what it must: whether the true
    // value is above a truncation that lands exactly on a half.
    let xm = mx << 32;
    let ym = if d <= 32 {
        my << (32 - d)
    } else if d - 32 >= 24 {
        1
    } else {
        let s = d - 32;
        (my >> s) | ((my & ((1u64 << s) - 1)) != 0) as u64
    };
    let e = ex - 32;
    if sx == sy {
        round_pack(sx, xm + ym, e)
    } else if xm > ym {
        round_pack(sx, xm - ym, e)
    } else if xm < ym {
        round_pack(sy, ym - xm, e)
    } else {
        0
    }
}

/// `1 / a`, rounded to nearest even (the reciprocal of ±0 is ±infinity, of ±infinity ±0).
pub const fn recip(a: u32) -> u32 {
    let sign = a & SIGN;
    if is_nan(a) {
        return NAN;
    }
    if is_inf(a) {
        return sign;
    }
    if is_zero(a) {
        return sign | INF;
    }
    let (_, m, e) = unpack(a);
    // 1 / (m 2^e) = (2^50 / m) 2^(-50 - e); the quotient has at least 26 bits (m < 2^24), and
    // the remainder becomes a sticky bit below it.
    let num = 1u64 << 50;
    let (q, r) = (num / m, num % m);
    round_pack(sign, (q << 1) | (r != 0) as u64, -51 - e)
}

/// `x as f32`: exact up to 2^24 in magnitude, rounded to nearest even above.
pub const fn from_i32(x: i32) -> u32 {
    let sign = if x < 0 { SIGN } else { 0 };
    round_pack(sign, x.unsigned_abs() as u64, 0)
}

/// `f.round_ties_even() as i32`: rounds half to even, saturates to `i32::MIN..=i32::MAX`
/// (infinities too), NaN is 0.
pub const fn rne_i32(a: u32) -> i32 {
    if is_nan(a) {
        return 0;
    }
    let negative = a & SIGN != 0;
    let saturated = if negative { i32::MIN } else { i32::MAX };
    if is_inf(a) {
        return saturated;
    }
    let (_, m, e) = unpack(a);
    let magnitude: u64 = if e >= 0 {
        if e >= 40 {
            return saturated;
        }
        m << e as u32
    } else if e <= -25 {
        // m < 2^24 <= half of 2^-e: below one half.
        0
    } else {
        let s = (-e) as u32;
        let q = m >> s;
        let rem = m & ((1u64 << s) - 1);
        let half = 1u64 << (s - 1);
        q + (rem > half || (rem == half && q & 1 == 1)) as u64
    };
    if negative {
        if magnitude >= 1 << 31 {
            i32::MIN
        } else {
            -(magnitude as i64) as i32
        }
    } else if magnitude > i32::MAX as u64 {
        i32::MAX
    } else {
        magnitude as i32
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testing::SplitMix64;
    use std::vec::Vec;

    fn same(ours: u32, fpu: f32) -> bool {
        if fpu.is_nan() {
            ours == NAN
        } else {
            ours == fpu.to_bits()
        }
    }

    /// Edge bit patterns: zeros, subnormals (smallest, largest), the smallest normals, ones,
    /// powers of two, values next to them, the largest finite, infinities, NaNs, and codes of
    /// the inference paths.
    fn edges() -> Vec<u32> {
        let mut v = std::vec![
            0,
            1,
            2,
            3,
            0x7f_ffff,
            0x7f_fffe,
            0x40_0000,
            0x80_0000,
            0x80_0001,
            0xff_ffff,
            0x3f80_0000,
            0x3f80_0001,
            0x3f7f_ffff,
            0x3fc0_0000,
            0x4000_0000,
            0x4b00_0000,
            0x4b00_0001,
            0x4b7f_ffff,
            0x4f00_0000,
            0x4eff_ffff,
            0x3f00_0000,
            0x3f00_0001,
            0x3eff_ffff,
            0x7f7f_ffff,
            0x7f7f_fffe,
            0x7f00_0000,
            0x0100_0000,
            0x3400_0000,
            0x3380_0000,
            INF,
            NAN,
            0x7f80_0001,
            0x7fff_ffff,
        ];
        for s in [
            0.05f32,
            0.07,
            0.1,
            1.0 / 255.0,
            0.0123,
            0.0311,
            0.0456,
            0.125,
        ] {
            v.push(s.to_bits());
            v.push(s.recip().to_bits());
        }
        for k in [
            1i32,
            2,
            3,
            5,
            7,
            127,
            128,
            255,
            65025,
            1 << 24,
            (1 << 24) + 1,
        ] {
            v.push((k as f32).to_bits());
        }
        let n = v.len();
        for i in 0..n {
            v.push(v[i] | SIGN);
        }
        v
    }

    /// A random bit pattern biased toward hard cases: any pattern; a nearby exponent of
    /// `other` (cancellation, ties on alignment); few mantissa bits (exact ties); subnormals.
    fn pattern(rng: &mut SplitMix64, other: u32) -> u32 {
        let r = rng.next_u64();
        let bits = (r >> 32) as u32;
        match r % 8 {
            0 | 1 => bits,
            2 => {
                // Same exponent +-2 as `other`, any mantissa and sign.
                let e = ((other >> 23) & 0xff) as i32 + (r >> 8) as i32 % 5 - 2;
                ((e.clamp(0, 254) as u32) << 23) | (bits & 0x807f_ffff)
            }
            3 => {
                // Exponent within 40 of other's: sticky-bit alignments.
                let e = ((other >> 23) & 0xff) as i32 + (r >> 8) as i32 % 81 - 40;
                ((e.clamp(0, 254) as u32) << 23) | (bits & 0x807f_ffff)
            }
            4 => {
                // Few mantissa bits: products and sums land on exact halves.
                (bits & 0xff80_0000) | (bits & 0x7f_f000 & (bits << 7))
            }
            5 => bits & 0x807f_ffff,                 // subnormal
            6 => (bits & 0x8fff_ffff) | 0x3000_0000, // mid exponents
            _ => other ^ SIGN ^ (bits & 0x7),        // near -other: cancellation
        }
    }

    #[test]
    fn soft_f32_edges_against_the_fpu() {
        let e = edges();
        let mut checked = 0;
        for &a in &e {
            let fa = f32::from_bits(a);
            assert!(same(recip(a), 1.0 / fa), "recip {a:#x}");
            assert_eq!(rne_i32(a), fa.round_ties_even() as i32, "rne {a:#x}");
            for &b in &e {
                let fb = f32::from_bits(b);
                assert!(same(mul(a, b), fa * fb), "mul {a:#x} {b:#x}");
                assert!(same(add(a, b), fa + fb), "add {a:#x} {b:#x}");
                // Neighbours: exponent carries and ties.
                for d in [1u32, 2] {
                    let c = b.wrapping_add(d);
                    let fc = f32::from_bits(c);
                    assert!(same(mul(a, c), fa * fc), "mul {a:#x} {c:#x}");
                    assert!(same(add(a, c), fa + fc), "add {a:#x} {c:#x}");
                    let c = b.wrapping_sub(d);
                    let fc = f32::from_bits(c);
                    assert!(same(mul(a, c), fa * fc), "mul {a:#x} {c:#x}");
                    assert!(same(add(a, c), fa + fc), "add {a:#x} {c:#x}");
                }
                checked += 1;
            }
        }
        std::println!("soft_f32 edges: {checked} pairs, each x5 for mul and add");
    }

    #[test]
    fn soft_f32_random_against_the_fpu() {
        const N: usize = 16_000_000;
        let mut rng = SplitMix64(0x05ee_df32);
        for i in 0..N {
            let seed = rng.next_u64() as u32;
            let a = pattern(&mut rng, seed);
            let b = pattern(&mut rng, a);
            let (fa, fb) = (f32::from_bits(a), f32::from_bits(b));
            assert!(same(mul(a, b), fa * fb), "case {i}: mul {a:#x} {b:#x}");
            assert!(same(add(a, b), fa + fb), "case {i}: add {a:#x} {b:#x}");
            assert!(same(recip(a), 1.0 / fa), "case {i}: recip {a:#x}");
            assert_eq!(
                rne_i32(a),
                fa.round_ties_even() as i32,
                "case {i}: rne {a:#x}"
            );
            let x = rng.next_u64() as i32 >> (rng.next_u64() % 32);
            assert_eq!(from_i32(x), (x as f32).to_bits(), "case {i}: from_i32 {x}");
        }
        std::println!("soft_f32 random: {N} cases of mul, add, recip, rne_i32, from_i32");
    }

    /// rne_i32 on every half and near-half below 2^24, and around the i32 bounds.
    #[test]
    fn soft_f32_rne_ties_and_bounds() {
        let mut n = 0;
        for k in -(1 << 12)..(1 << 12) {
            for frac in [0.5f32, 0.25, 0.75, 0.0] {
                let f = k as f32 + if k < 0 { -frac } else { frac };
                for b in [f.to_bits(), f.to_bits() + 1, f.to_bits().wrapping_sub(1)] {
                    assert_eq!(rne_i32(b), f32::from_bits(b).round_ties_even() as i32);
                    n += 1;
                }
            }
        }
        for f in [
            2147483648.0f32,
            -2147483648.0,
            2147483520.0,
            -2147483520.0,
            1e30,
            -1e30,
        ] {
            for b in [f.to_bits(), f.to_bits() + 1, f.to_bits() - 1] {
                assert_eq!(rne_i32(b), f32::from_bits(b).round_ties_even() as i32);
                n += 1;
            }
        }
        std::println!("soft_f32 rne_i32: {n} ties and bounds");
    }

    /// The inference domain exhaustively: every dequantized code `(q - z) * s`, every
    /// reciprocal of a count up to 255x255, and every sum of two codes of two scales.
    #[test]
    fn soft_f32_inference_domain() {
        let mut rng = SplitMix64(42);
        let mut n = 0usize;
        for c in 1..=65025 {
            let f = c as f32;
            assert_eq!(from_i32(c), f.to_bits());
            assert_eq!(recip(from_i32(c)), (1.0 / f).to_bits(), "1/{c}");
            n += 1;
        }
        for _ in 0..40 {
            let sa = f32::from_bits(0x3000_0000 + (rng.next_u64() as u32 % 0x1000_0000));
            let sb = f32::from_bits(0x3000_0000 + (rng.next_u64() as u32 % 0x1000_0000));
            let sy = f32::from_bits(0x3000_0000 + (rng.next_u64() as u32 % 0x1000_0000));
            let r = recip(sy.to_bits());
            assert_eq!(r, sy.recip().to_bits());
            for da in -255..=255 {
                let fa = da as f32 * sa;
                let qa = mul(from_i32(da), sa.to_bits());
                assert_eq!(qa, fa.to_bits());
                for db in (-255..=255).step_by(3) {
                    let fb = db as f32 * sb;
                    let qb = mul(from_i32(db), sb.to_bits());
                    let sum = add(qa, qb);
                    assert_eq!(sum, (fa + fb).to_bits(), "{fa} + {fb}");
                    let y = mul(sum, r);
                    assert_eq!(y, ((fa + fb) * sy.recip()).to_bits());
                    assert_eq!(
                        rne_i32(y),
                        ((fa + fb) * sy.recip()).round_ties_even() as i32
                    );
                    n += 1;
                }
            }
        }
        std::println!("soft_f32 inference domain: {n} cases");
    }

    #[test]
    fn soft_f32_is_const() {
        const ONE_THIRD: u32 = recip(from_i32(3));
        const SUM: u32 = add(ONE_THIRD, mul(ONE_THIRD, from_i32(2)));
        assert_eq!(ONE_THIRD, (1.0f32 / 3.0).to_bits());
        assert_eq!(SUM, ((1.0f32 / 3.0) + (1.0f32 / 3.0) * 2.0).to_bits());
        assert_eq!(rne_i32(SUM), 1);
    }
}
