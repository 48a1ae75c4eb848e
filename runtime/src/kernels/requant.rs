//! Faster routes to exactly [`crate::quant::requantize`], used by the blocked kernels. On a
//! 32-bit core the general version's 64-bit arithmetic costs ~130 instructions; [`Requant`]
//! takes ~15 in the common case, [`requantize_fast`] ~30-60; both fall back to the general
//! version where their shortcuts do not apply. The tests compare them with it on random and
//! boundary values (including exact ties).
//!
//! ## The single-rounding shortcut ([`Requant::apply`])
//!
//! `requantize` computes `r = rne(R24(a * m) / 2^s)` for `a = |acc|`: the f32 product rounded
//! to 24 significant bits (`R24`), then the final rounding shift. For `0 < acc < 2^24`
//! (`f32(acc)` exact) rounding twice gives the same as rounding `Q = a * m / 2^s` once, except
//! when the first rounding lands exactly on a tie of the second, i.e. when `Q` lies within
//! the first rounding's error of a half-integer. That error is at most `2^(b - 25)` for a
//! product of `b` bits, so relative to `Q < 2^9` (anything larger saturates) at most `2^-16`
//! of a unit: outside a window of `2^-15` around the half, `r = floor(Q + 1/2)`. One
//! `UMULL` gives `Q` with 16 fraction bits in its high word (the operands are pre-shifted
//! per channel so that the binary point is always there), so the window test and the
//! rounding need only that word and constant shifts. Inside the window (probability
//! ~2^-14), for accumulators `>= 2^23` and for scales outside `2^-25..2^-9` the exact slower
//! path runs.

use crate::quant::{Multiplier, requantize};

/// Rounds `v / 2^s` to nearest, ties to even, for `1 <= s <= 31`.
#[inline(always)]
fn shift_rne(v: u32, s: u32) -> u32 {
    let q = v >> s;
    let rem = v & ((1 << s) - 1);
    let half = 1 << (s - 1);
    q + (rem > half || (rem == half && q & 1 == 1)) as u32
}

/// The general version, kept out of line so that the fast paths stay small.
#[cold]
#[inline(never)]
fn general(acc: i32, m: Multiplier, zero_point: i32, lo: i32, hi: i32) -> i8 {
    requantize(acc, m, zero_point, lo, hi)
}

/// One output channel's requantization (to int8, upper clamp 127), prepared for
/// [`Requant::apply`]. Preparing costs a few instructions; a conv kernel prepares once a
/// channel (and tile) and applies it to every pooled output.
#[derive(Clone, Copy, Debug)]
pub struct Requant {
    /// `mantissa << e`, with `acc << pre`: `Q = (acc << pre) * mult / 2^48`, so the high word
    /// of the product is `Q` with 16 fraction bits.
    mult: u32,
    pre: u32,
    zero_point: i32,
    /// `2^23 - 1` when the shortcut applies to this scale and clamp, else 0 (every value
    /// takes the exact path). Below `2^23`, `Q + 1/2 < 2^15 + 1` cannot overflow the word.
    limit: u32,
    /// A fused ReLU (the lower clamp is the zero point).
    relu: bool,
    lo: i32,
    m: Multiplier,
}

impl Requant {
    /// `lo` is the lower clamp (the zero point with a fused ReLU, else -128); the upper is 127.
    #[inline(always)]
    pub fn new(m: Multiplier, zero_point: i32, lo: i32) -> Self {
        // Scales 2^-25 <= S < 2^-9 (shift 32..=48: `shift + pre + e = 48` with both shifts
        // in 0..=8) and a lower clamp at or below the zero point (so a positive accumulator
        // needs only the upper clamp).
        let fast = (m.shift - 32) as u32 <= 16 && lo <= zero_point;
        let pre = (40 - m.shift).clamp(0, 8) as u32;
        let e = (48 - m.shift).clamp(0, 8) as u32;
        Requant {
            mult: m.mantissa << e,
            pre,
            zero_point,
            limit: if fast { (1 << 23) - 1 } else { 0 },
            relu: lo == zero_point,
            lo,
            m,
        }
    }

    /// Exactly `quant::requantize(acc, m, zero_point, lo, 127)`.
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> i8 {
        if (acc.wrapping_sub(1) as u32) < self.limit {
            // 0 < acc < 2^23: Q + 1/2 with 16 fraction bits.
            let p = ((acc as u32) << self.pre) as u64 * self.mult as u64;
            let h = ((p >> 32) as u32).wrapping_add(1 << 15);
            // Away from a tie, i.e. from a whole Q + 1/2 (fraction bits within 2^-15 of 0
            // or 1: the 16 bits are 0xfffe..=0x0001).
            if (h << 16).wrapping_add(1 << 17) >= 1 << 18 {
                let y = (h >> 16) as i32 + self.zero_point;
                return y.clamp(i8::MIN as i32, i8::MAX as i32) as i8;
            }
        } else if acc <= 0 && self.relu {
            // zero_point - |r| clamps to the zero point.
            return self.lo as i8;
        }
        requantize_fast(acc, self.m, self.zero_point, self.lo, i8::MAX as i32)
    }
}

/// Exactly [`requantize`], through 32-bit arithmetic for `|acc| < 2^24`: the 48-bit
/// product `|acc| * mantissa` is rounded to 24 bits by normalizing it once, and the final
/// rounding shift is 32-bit; everything else (large accumulators, scales >= 1) goes to the
/// general version.
#[inline(never)]
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
