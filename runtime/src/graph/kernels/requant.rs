//! The tflite rule's requantization fused into one 64-bit multiply-accumulate.
//!
//! For a channel without a left shift (`shift = -e`, `2 <= e <= 23`) and a positive Q31
//! multiplier `M`, TFLM's `clamp(sat(RoundingDivideByPOT(SRDHM(acc, M), e) + z), lo, hi)` is
//!
//! ```text
//! clamp(((acc * M + K) >> 32) >> (e - 1), lo, hi),
//! K = 2^30 + 2^(30 + e) + z * 2^(31 + e) - [acc < 0] * 2^31        (exact, in 64 bits)
//! ```
//!
//! Why: `SRDHM(acc, M) = h = floor((acc M + 2^30) / 2^31)` (see `conv::Requant`); gemmlowp's
//! rounding divide of `h` by `2^e` (`e >= 1`) is `floor((h + 2^(e-1) - [h < 0]) / 2^e)`
//! (write `h = q 2^e + r`: both add 1 to `q` exactly when `r >= 2^(e-1) + [h < 0]`); nested
//! floors of divisions by integers with an integer offset combine into one,
//! `floor((floor(a / b) + c) / d) = floor((a + c b) / (b d))`, and adding `z` inside adds it
//! outside. `[h < 0]` may be replaced by `[acc < 0]`: they differ only when `acc < 0` and
//! `h = 0`, where both give 0 (`floor((2^(e-1) - 1) / 2^e) = 0`). The 64-bit sum never
//! overflows for `e <= 23` (`|acc M| < 2^62`, `|z 2^(31+e)| <= 2^61`), and its high word is
//! the exact `floor(X / 2^32)`, so `>> (e - 1)` ends the floor; the value before the clamp is
//! `scaled + z` without saturation, which the clamp to a range inside int8 makes equal.
//!
//! For `e >= 2` the low word of `K` is `2^30` (`acc >= 0`) or `2^30 + 2^31` with a borrow of
//! one from the high word (`acc < 0`): `lo = (acc & 2^31) | 2^30`, `hi = khi + (acc >> 31)`,
//! `khi = 2^(e-2) + z 2^(e-1)`. On the Cortex-M4: `AND`, `ORR`, `ADD` (with `ASR #31`),
//! `SMLAL`, `ASR`, then the clamp (`SSAT` when `hi = 127`): 6 to 9 instructions an output,
//! where the two-step form takes 17.

use crate::tflite_rule::QuantizedMultiplier;

/// One channel's fused requantization (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fused {
    /// The Q31 multiplier, positive.
    pub m: i32,
    /// High word of `K` for `acc >= 0`: `2^(e-2) + z 2^(e-1)`.
    pub khi: i32,
    /// `e - 1`, the shift of the high word.
    pub sh: u32,
    /// The clamp, in output codes (within int8).
    pub lo: i32,
    pub hi: i32,
}

/// The low word of `K` for `acc >= 0`; `acc < 0` adds `2^31`.
pub const K_LO: u32 = 1 << 30;

/// What the fused form of a layer's channels shares: the zero point and the clamp, checked
/// once a layer so that each channel's form is a few instructions ([`Layer::channel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer {
    zero_point: i32,
    lo: i32,
    hi: i32,
}

impl Layer {
    /// `Some` for a zero point and a clamp inside int8.
    #[inline]
    pub fn new(zero_point: i32, lo: i32, hi: i32) -> Option<Layer> {
        let int8 = i8::MIN as i32..=i8::MAX as i32;
        (int8.contains(&zero_point) && int8.contains(&lo) && int8.contains(&hi) && lo <= hi)
            .then_some(Layer { zero_point, lo, hi })
    }

    /// The output zero point and the clamp `(z, lo, hi)`.
    pub fn parts(&self) -> (i32, i32, i32) {
        (self.zero_point, self.lo, self.hi)
    }

    /// The channel with multiplier `m`: `Some` for a positive multiplier with
    /// `-23 <= shift <= -2`.
    #[inline(always)]
    pub fn channel(&self, m: QuantizedMultiplier) -> Option<Fused> {
        let e = m.shift.wrapping_neg();
        if m.multiplier <= 0 || !(2..=23).contains(&e) {
            return None;
        }
        Some(Fused {
            m: m.multiplier,
            khi: (1 << (e - 2)) + self.zero_point * (1 << (e - 1)),
            sh: (e - 1) as u32,
            lo: self.lo,
            hi: self.hi,
        })
    }
}

impl Layer {
    /// The **late-zero-point** form of the channel with multiplier `m`, for shifts the fused
    /// form cannot take: `K` without the zero point's term (`khi = 2^(e-2)`), the zero point
    /// added after the shift ([`Fused::apply_late`]). The 64-bit sum then stays inside i64 up
    /// to `e = 31` (`|acc M| < 2^62`, `K < 2^62`), and `scaled + z` is exact in i32 (the
    /// clamp to int8 makes it TFLM's saturating add). `Some` for a positive multiplier with
    /// `-31 <= shift <= -2`, and for a zero multiplier (any shift: TFLM's result is then 0,
    /// which `e = 2` gives).
    #[inline(always)]
    pub fn late_channel(&self, m: QuantizedMultiplier) -> Option<Fused> {
        let (mult, e) = match m.multiplier {
            0 => (0, 2),
            mult => (mult, m.shift.wrapping_neg()),
        };
        if mult < 0 || !(2..=31).contains(&e) {
            return None;
        }
        Some(Fused {
            m: mult,
            khi: 1 << (e - 2),
            sh: (e - 1) as u32,
            lo: self.lo,
            hi: self.hi,
        })
    }
}

impl Fused {
    /// One accumulator in [`Layer::late_channel`]'s form, `z` the layer's zero point, exactly
    /// as the assembly does it.
    #[inline(always)]
    pub fn apply_late(&self, acc: i32, z: i32) -> i8 {
        let lo = (acc as u32 & 0x8000_0000) | K_LO;
        let hi = self.khi.wrapping_add(acc >> 31);
        let k = ((hi as i64) << 32) | lo as i64;
        let x = (acc as i64 * self.m as i64).wrapping_add(k);
        let v = (((x >> 32) as i32) >> self.sh) + z;
        v.clamp(self.lo, self.hi) as i8
    }

    /// `Some` for a positive multiplier with `-23 <= shift <= -2`, a zero point and a clamp
    /// inside int8; `None` otherwise (the caller keeps the two-step form).
    #[inline]
    pub fn new(m: QuantizedMultiplier, zero_point: i32, lo: i32, hi: i32) -> Option<Fused> {
        Layer::new(zero_point, lo, hi)?.channel(m)
    }

    /// One accumulator, exactly as the assembly does it (the zero point is inside `khi`).
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> i8 {
        self.apply_late(acc, 0)
    }
}

/// One channel's tflite requantization as one `SMLAL` and a shift, for any positive multiplier
/// with a right shift `e <= 23` or a left shift up to 31 (the dense layers, whose shifts are
/// mostly outside [`Fused`]'s). `x = acc << left` (wrapping, as TFLM's), then:
///
/// - `e >= 1`: [`Fused`]'s `K` in two words: for `e >= 2` as there; for `e = 1`,
///   `K = 2^30 + 2^31 + z 2^32 - [x < 0] 2^31` has the high word `z` and the low word
///   `2^30 | [x >= 0] 2^31` (no borrow). The value is the high word of `x M + K` shifted
///   right by `e - 1`, clamped.
/// - `e = 0`: the rounding divide is the identity, so the value is
///   `h = floor((x M + 2^30) / 2^31)` (inside int32 for `M > 0`: `|x M| < 2^62`) plus `z`
///   with saturation, then the clamp — equal to `clamp(h, lo - z, hi - z) + z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wide {
    m: i32,
    left: u32,
    /// High word of `K` for `x >= 0`.
    khi: i32,
    /// XORed into `x`'s sign bit for the low word's bit 31 (`e = 1`: `2^31`).
    flip: u32,
    /// ANDed into `x >> 31` for the high word's borrow (`e >= 2`: all ones).
    borrow: i32,
    /// `e - 1`; unused for `e = 0`.
    sh: u32,
    e0: bool,
    /// The clamp, minus `z` when `e = 0`.
    lo: i32,
    hi: i32,
    /// Added after the clamp: `z` when `e = 0`, else 0.
    add: i32,
}

impl Wide {
    /// `Some` for a positive multiplier with `-23 <= shift <= 31`, a zero point and a clamp
    /// inside int8.
    #[inline(always)]
    pub fn new(m: QuantizedMultiplier, zero_point: i32, lo: i32, hi: i32) -> Option<Wide> {
        Layer::new(zero_point, lo, hi)?.wide(m)
    }

    /// One accumulator.
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> i8 {
        let x = acc.wrapping_shl(self.left);
        let v = if self.e0 {
            let p = (x as i64 * self.m as i64).wrapping_add(K_LO as i64);
            (p >> 31) as i32
        } else {
            let lo = ((x as u32 ^ self.flip) & 0x8000_0000) | K_LO;
            let hi = self.khi.wrapping_add((x >> 31) & self.borrow);
            let k = ((hi as i64) << 32) | lo as i64;
            let p = (x as i64 * self.m as i64).wrapping_add(k);
            ((p >> 32) as i32) >> self.sh
        };
        (v.clamp(self.lo, self.hi) + self.add) as i8
    }
}

impl Layer {
    /// The channel with multiplier `m` in the [`Wide`] form: `Some` for a positive multiplier
    /// with `-23 <= shift <= 31`.
    #[inline(always)]
    pub fn wide(&self, m: QuantizedMultiplier) -> Option<Wide> {
        if m.multiplier <= 0 || !(-23..=31).contains(&m.shift) {
            return None;
        }
        let z = self.zero_point;
        let e = m.shift.wrapping_neg();
        let base = Wide {
            m: m.multiplier,
            left: 0,
            khi: 0,
            flip: 0,
            borrow: -1,
            sh: 0,
            e0: false,
            lo: self.lo,
            hi: self.hi,
            add: 0,
        };
        Some(if e >= 2 {
            Wide {
                khi: (1 << (e - 2)) + z * (1 << (e - 1)),
                sh: (e - 1) as u32,
                ..base
            }
        } else if e == 1 {
            Wide {
                khi: z,
                flip: 0x8000_0000,
                borrow: 0,
                ..base
            }
        } else {
            Wide {
                left: m.shift as u32,
                e0: true,
                lo: self.lo - z,
                hi: self.hi - z,
                add: z,
                ..base
            }
        })
    }
}

/// Channel `j < 4` of every accumulator cell in `accs`, requantized by `q` into
/// `out[k * stride]` (the depthwise kernel's chunks): the assembly loop on the Cortex-M4,
/// [`Fused::apply`] elsewhere. Needs `out.len() > (accs.len() - 1) * stride`.
pub fn column(q: &Fused, accs: &[[i32; 4]], j: usize, out: &mut [i8], stride: usize) {
    if accs.is_empty() {
        return;
    }
    assert!(j < 4 && out.len() > (accs.len() - 1) * stride);
    #[cfg(tinyconv_dsp)]
    // SAFETY: the assert above: `accs.len()` words 16 bytes apart from `accs[0][j]`, and the
    // bytes `out[k * stride]`.
    #[allow(unsafe_code)]
    unsafe {
        let first = accs.as_ptr().cast::<i32>().add(j);
        strided(first, 16, accs.len(), q, out.as_mut_ptr(), stride)
    }
    #[cfg(not(tinyconv_dsp))]
    for (k, acc) in accs.iter().enumerate() {
        out[k * stride] = q.apply(acc[j]);
    }
}

/// Every accumulator of `accs` requantized by `q` into `out[k * stride]` (the depthwise
/// column sweep's columns): the assembly loop on the Cortex-M4, [`Fused::apply`] elsewhere.
/// Needs `out.len() > (accs.len() - 1) * stride`.
pub fn run(q: &Fused, accs: &[i32], out: &mut [i8], stride: usize) {
    if accs.is_empty() {
        return;
    }
    assert!(out.len() > (accs.len() - 1) * stride);
    #[cfg(tinyconv_dsp)]
    // SAFETY: the assert above: `accs.len()` contiguous words, and the bytes `out[k * stride]`.
    #[allow(unsafe_code)]
    unsafe {
        strided(accs.as_ptr(), 4, accs.len(), q, out.as_mut_ptr(), stride)
    }
    #[cfg(not(tinyconv_dsp))]
    for (k, &acc) in accs.iter().enumerate() {
        out[k * stride] = q.apply(acc);
    }
}

#[cfg(tinyconv_dsp)]
pub use asm::{block8, strided};

#[cfg(tinyconv_dsp)]
#[allow(unsafe_code)]
mod asm {
    use super::Fused;
    const _: () = assert!(super::K_LO == 0x4000_0000);
    use core::arch::asm;

    // One output: the accumulator (post-incremented by `$step` bytes), K, SMLAL, the shift.
    macro_rules! fused {
        ($step:literal) => {
            concat!(
                "ldr {a}, [{acc}], #",
                $step,
                "\n",
                "and {lo}, {a}, #0x80000000\n",
                "orr {lo}, {lo}, #0x40000000\n",
                "add {v}, {khi}, {a}, asr #31\n",
                "smlal {lo}, {v}, {a}, {m}\n",
                "asr {v}, {v}, {sh}\n",
            )
        };
    }

    // Output `$k` of an unrolled block: the accumulator at 4k bytes, the store at `{out}`,
    // then `{out}` steps by the stride.
    macro_rules! out8 {
        ($k:literal, $clamp:expr) => {
            concat!(
                "ldr {a}, [{acc}, #(4*",
                $k,
                ")]\n",
                "and {lo}, {a}, #0x80000000\n",
                "orr {lo}, {lo}, #0x40000000\n",
                "add {v}, {khi}, {a}, asr #31\n",
                "smlal {lo}, {v}, {a}, {m}\n",
                "asr {v}, {v}, {sh}\n",
                $clamp,
                "strb {v}, [{out}]\n",
                "add {out}, {out}, {stride}\n",
            )
        };
    }

    /// [`strided`] for 8 contiguous accumulators, unrolled.
    ///
    /// # Safety
    /// `acc` must point to 8 readable, aligned int32 values, `out` to `7 * stride + 1`
    /// writable bytes.
    #[inline(always)]
    pub unsafe fn block8(acc: *const i32, q: &Fused, out: *mut i8, stride: usize) {
        // SAFETY (both arms): reads acc[0..8], writes out[k * stride] for k < 8: the caller's
        // ranges. No stack; the flags are clobbered.
        unsafe {
            if q.hi == i8::MAX as i32 && q.lo == i8::MIN as i32 {
                // SSAT is the whole clamp.
                asm!(
                    out8!(0, "ssat {v}, #8, {v}\n"),
                    out8!(1, "ssat {v}, #8, {v}\n"),
                    out8!(2, "ssat {v}, #8, {v}\n"),
                    out8!(3, "ssat {v}, #8, {v}\n"),
                    out8!(4, "ssat {v}, #8, {v}\n"),
                    out8!(5, "ssat {v}, #8, {v}\n"),
                    out8!(6, "ssat {v}, #8, {v}\n"),
                    out8!(7, "ssat {v}, #8, {v}\n"),
                    acc = in(reg) acc,
                    out = inout(reg) out => _,
                    stride = in(reg) stride,
                    m = in(reg) q.m,
                    khi = in(reg) q.khi,
                    sh = in(reg) q.sh,
                    a = out(reg) _,
                    lo = out(reg) _,
                    v = out(reg) _,
                    options(nostack),
                );
            } else if q.hi == i8::MAX as i32 {
                macro_rules! c {
                    () => {
                        "ssat {v}, #8, {v}\ncmp {v}, {qlo}\nit lt\nmovlt {v}, {qlo}\n"
                    };
                }
                asm!(
                    out8!(0, c!()),
                    out8!(1, c!()),
                    out8!(2, c!()),
                    out8!(3, c!()),
                    out8!(4, c!()),
                    out8!(5, c!()),
                    out8!(6, c!()),
                    out8!(7, c!()),
                    acc = in(reg) acc,
                    out = inout(reg) out => _,
                    stride = in(reg) stride,
                    m = in(reg) q.m,
                    khi = in(reg) q.khi,
                    sh = in(reg) q.sh,
                    qlo = in(reg) q.lo,
                    a = out(reg) _,
                    lo = out(reg) _,
                    v = out(reg) _,
                    options(nostack),
                );
            } else {
                macro_rules! c {
                    () => {
                        "cmp {v}, {qlo}\nit lt\nmovlt {v}, {qlo}\ncmp {v}, {qhi}\nit gt\nmovgt {v}, {qhi}\n"
                    };
                }
                asm!(
                    out8!(0, c!()),
                    out8!(1, c!()),
                    out8!(2, c!()),
                    out8!(3, c!()),
                    out8!(4, c!()),
                    out8!(5, c!()),
                    out8!(6, c!()),
                    out8!(7, c!()),
                    acc = in(reg) acc,
                    out = inout(reg) out => _,
                    stride = in(reg) stride,
                    m = in(reg) q.m,
                    khi = in(reg) q.khi,
                    sh = in(reg) q.sh,
                    qlo = in(reg) q.lo,
                    qhi = in(reg) q.hi,
                    a = out(reg) _,
                    lo = out(reg) _,
                    v = out(reg) _,
                    options(nostack),
                );
            }
        }
    }

    /// Requantizes `count >= 1` accumulators `step` bytes apart (`step` 4 or 16) and stores
    /// them `stride` bytes apart.
    ///
    /// # Safety
    /// `acc` must point to `count` readable, aligned int32 values `step` bytes apart, `out` to
    /// `(count - 1) * stride + 1` writable bytes; `count >= 1`.
    #[inline(always)]
    pub unsafe fn strided(
        acc: *const i32,
        step: usize,
        count: usize,
        q: &Fused,
        out: *mut i8,
        stride: usize,
    ) {
        // SAFETY (every arm): reads `count` words at `acc + k * step`, writes `count` bytes at
        // `out + k * stride`: the caller's ranges. No stack; the flags are clobbered.
        unsafe {
            // With an upper clamp of 127, SSAT does it and the lower half of int8's range.
            macro_rules! relu {
                ($step:literal) => {
                    asm!(
                        "1:",
                        fused!($step),
                        "ssat {v}, #8, {v}",
                        "cmp {v}, {qlo}",
                        "it lt",
                        "movlt {v}, {qlo}",
                        "strb {v}, [{out}]",
                        "add {out}, {out}, {stride}",
                        "subs {n}, {n}, #1",
                        "bne 1b",
                        acc = inout(reg) acc => _,
                        out = inout(reg) out => _,
                        n = inout(reg) count => _,
                        stride = in(reg) stride,
                        m = in(reg) q.m,
                        khi = in(reg) q.khi,
                        sh = in(reg) q.sh,
                        qlo = in(reg) q.lo,
                        a = out(reg) _,
                        lo = out(reg) _,
                        v = out(reg) _,
                        options(nostack),
                    )
                };
            }
            // With the clamp the whole int8 range, SSAT alone.
            macro_rules! full {
                ($step:literal) => {
                    asm!(
                        "1:",
                        fused!($step),
                        "ssat {v}, #8, {v}",
                        "strb {v}, [{out}]",
                        "add {out}, {out}, {stride}",
                        "subs {n}, {n}, #1",
                        "bne 1b",
                        acc = inout(reg) acc => _,
                        out = inout(reg) out => _,
                        n = inout(reg) count => _,
                        stride = in(reg) stride,
                        m = in(reg) q.m,
                        khi = in(reg) q.khi,
                        sh = in(reg) q.sh,
                        a = out(reg) _,
                        lo = out(reg) _,
                        v = out(reg) _,
                        options(nostack),
                    )
                };
            }
            macro_rules! both {
                ($step:literal) => {
                    asm!(
                        "1:",
                        fused!($step),
                        "cmp {v}, {qlo}",
                        "it lt",
                        "movlt {v}, {qlo}",
                        "cmp {v}, {qhi}",
                        "it gt",
                        "movgt {v}, {qhi}",
                        "strb {v}, [{out}]",
                        "add {out}, {out}, {stride}",
                        "subs {n}, {n}, #1",
                        "bne 1b",
                        acc = inout(reg) acc => _,
                        out = inout(reg) out => _,
                        n = inout(reg) count => _,
                        stride = in(reg) stride,
                        m = in(reg) q.m,
                        khi = in(reg) q.khi,
                        sh = in(reg) q.sh,
                        qlo = in(reg) q.lo,
                        qhi = in(reg) q.hi,
                        a = out(reg) _,
                        lo = out(reg) _,
                        v = out(reg) _,
                        options(nostack),
                    )
                };
            }
            let full = q.hi == i8::MAX as i32 && q.lo == i8::MIN as i32;
            match (step, q.hi == i8::MAX as i32, full) {
                (16, _, true) => full!("16"),
                (16, true, _) => relu!("16"),
                (16, false, _) => both!("16"),
                (_, _, true) => full!("4"),
                (_, true, _) => relu!("4"),
                (_, false, _) => both!("4"),
            }
        }
    }
}
