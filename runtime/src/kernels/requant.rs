//! A faster route to exactly [`crate::quant::requantize`] for the common case, used by the
//! blocked kernels: on a 32-bit core the general version's 64-bit shifts cost ~100
//! instructions, this one ~30. For `|acc| < 2^24` (exact as an f32) the f32 product
//! `|acc| * S` is rounded to 24 bits by normalizing the 48-bit integer product once, and the
//! final rounding shift is 32-bit; everything else (large accumulators, scales >= 1) goes to
//! the general version. The tests compare the two on random and boundary values.

use crate::quant::{Multiplier, requantize};

/// Rounds `v / 2^s` to nearest, ties to even, for `1 <= s <= 31`.
#[inline(always)]
fn shift_rne(v: u32, s: u32) -> u32 {
    let q = v >> s;
    let rem = v & ((1 << s) - 1);
    let half = 1 << (s - 1);
    q + (rem > half || (rem == half && q & 1 == 1)) as u32
}

/// The general version, kept out of line so that the fast path stays small.
#[cold]
#[inline(never)]
fn general(acc: i32, m: Multiplier, zero_point: i32, lo: i32, hi: i32) -> i8 {
    requantize(acc, m, zero_point, lo, hi)
}

/// Bit-exact with [`requantize`] for all inputs.
#[inline]
pub fn requantize_fast(acc: i32, m: Multiplier, zero_point: i32, lo: i32, hi: i32) -> i8 {
    let a = acc.unsigned_abs();
    if a >= 1 << 24 {
        return general(acc, m, zero_point, lo, hi);
    }
    let p = a as u64 * m.mantissa as u64; // < 2^48
    let (high, low) = ((p >> 32) as u32, p as u32);
    let bits = if high != 0 {
        64 - high.leading_zeros()
    } else {
        32 - low.leading_zeros()
    };
    let (p24, dropped) = if bits <= 24 {
        (low, 0)
    } else {
        // Round to 24 significant bits: drop `d <= 24` bits, all of which lie in `low`.
        let d = bits - 24;
        let q = (high << (32 - d)) | (low >> d);
        let rem = low & ((1 << d) - 1);
        let half = 1 << (d - 1);
        (q + (rem > half || (rem == half && q & 1 == 1)) as u32, d)
    };
    let s = m.shift - dropped as i32;
    if s <= 0 {
        return general(acc, m, zero_point, lo, hi);
    }
    let magnitude = if s >= 32 { 0 } else { shift_rne(p24, s as u32) };
    let y = if acc < 0 {
        -(magnitude as i32)
    } else {
        magnitude as i32
    } + zero_point;
    (if y < lo {
        lo
    } else if y > hi {
        hi
    } else {
        y
    }) as i8
}
