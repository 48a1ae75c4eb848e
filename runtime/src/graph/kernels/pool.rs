//! Fast global average pooling under the tflite rule (ResNet-8's, DS-CNN's and MobileNetV1's
//! last pool: the mean of every channel over the whole image).
//!
//! Channels go in groups of four, one word of the input a pixel: `SXTB16` splits it into the
//! lanes of channels (0, 2) and (1, 3), and `SADD16` adds each pair into two int16 sums, two
//! pixels a turn (11 instructions per 8 values; the reference takes ~12 a value). The int16
//! lanes cannot wrap for at most [`MAX_PIXELS`] pixels (`256 * -128 = -2^15`,
//! `256 * 127 < 2^15`), so the sums are the reference's exactly; the mean and the clamp are
//! the reference's functions. [`Emulated`] adds the lanes in portable Rust; `Asm`
//! (`cfg(tinyconv_dsp)`) is the Cortex-M4 inline assembly.

use crate::graph::format::Rule;
use crate::graph::ops::Node;
use crate::tflite_rule;

/// Most pixels whose int16 lane sums cannot wrap.
pub const MAX_PIXELS: usize = 256;

/// The lane sums of one group of four channels.
pub trait Sums {
    /// `[s0, s1, s2, s3]`, `sj = sum_p x[p * stride + j]` for `p < pixels`. Needs
    /// `1 <= pixels <= MAX_PIXELS` and `x.len() >= (pixels - 1) * stride + 4`.
    fn sums4(&self, x: &[i8], stride: usize, pixels: usize) -> [i32; 4];
}

/// The portable model.
pub use crate::kernels::dsp::Emulated;

impl Sums for Emulated {
    fn sums4(&self, x: &[i8], stride: usize, pixels: usize) -> [i32; 4] {
        // The two SADD16 accumulators, lane by lane (wrapping like the instruction).
        let mut lanes = [0i16; 4];
        for p in 0..pixels {
            let v = &x[p * stride..][..4];
            for (l, &b) in lanes.iter_mut().zip(v) {
                *l = l.wrapping_add(b as i16);
            }
        }
        lanes.map(|l| l as i32)
    }
}

#[cfg(tinyconv_dsp)]
pub use crate::kernels::dsp::Asm;

#[cfg(tinyconv_dsp)]
#[allow(unsafe_code)]
mod asm {
    use super::Sums;
    use crate::kernels::dsp::Asm;
    use core::arch::asm;

    impl Sums for Asm {
        #[inline]
        fn sums4(&self, x: &[i8], stride: usize, pixels: usize) -> [i32; 4] {
            assert!((1..=super::MAX_PIXELS).contains(&pixels));
            assert!(x.len() >= (pixels - 1) * stride + 4);
            let (mut s02, mut s13) = (0u32, 0u32);
            let (pairs, odd) = (pixels / 2, pixels % 2);
            let mut p = x.as_ptr();
            // SAFETY: the asserts above: words at p + k * stride for k < pixels (unaligned
            // LDR is allowed); no stack; the flags are clobbered.
            unsafe {
                if pairs > 0 {
                    asm!(
                        "1:",
                        "ldr {a}, [{p}]",
                        "ldr {b}, [{p}, {stride}]",
                        "add {p}, {p}, {stride}, lsl #1",
                        "sxtb16 {t}, {a}",
                        "sadd16 {s02}, {s02}, {t}",
                        "sxtb16 {t}, {a}, ror #8",
                        "sadd16 {s13}, {s13}, {t}",
                        "sxtb16 {t}, {b}",
                        "sadd16 {s02}, {s02}, {t}",
                        "sxtb16 {t}, {b}, ror #8",
                        "sadd16 {s13}, {s13}, {t}",
                        "subs {n}, {n}, #1",
                        "bne 1b",
                        p = inout(reg) p,
                        n = inout(reg) pairs => _,
                        stride = in(reg) stride,
                        s02 = inout(reg) s02,
                        s13 = inout(reg) s13,
                        a = out(reg) _,
                        b = out(reg) _,
                        t = out(reg) _,
                        options(nostack, readonly),
                    );
                }
                if odd == 1 {
                    asm!(
                        "ldr {a}, [{p}]",
                        "sxtb16 {t}, {a}",
                        "sadd16 {s02}, {s02}, {t}",
                        "sxtb16 {t}, {a}, ror #8",
                        "sadd16 {s13}, {s13}, {t}",
                        p = in(reg) p,
                        s02 = inout(reg) s02,
                        s13 = inout(reg) s13,
                        a = out(reg) _,
                        t = out(reg) _,
                        options(nostack, readonly),
                    );
                }
            }
            let lo = |v: u32| v as u16 as i16 as i32;
            let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
            [lo(s02), lo(s13), hi(s02), hi(s13)]
        }
    }
}

/// Whether the fast path runs the op: the tflite rule, one output pixel whose window is the
/// whole unpadded input of at most [`MAX_PIXELS`] pixels, channels a multiple of 4.
pub fn global(n: &Node<'_>) -> bool {
    let (i, o, w) = (n.input.shape, n.output_info.shape, n.window);
    let p = w.pad_top + w.pad_bottom + w.pad_left + w.pad_right;
    n.rule == Rule::Tflite
        && o.h == 1
        && o.w == 1
        && w.kernel_h == i.h
        && w.kernel_w == i.w
        && p == 0
        && (1..=MAX_PIXELS).contains(&(i.h * i.w))
        && i.c.is_multiple_of(4)
}

/// The fast global average pool with the sums `m`; `false` (nothing written) when [`global`]
/// does not hold.
pub fn global_avg_pool<M: Sums>(m: &M, n: &Node<'_>, input: &[i8], output: &mut [i8]) -> bool {
    if !global(n) {
        return false;
    }
    let i = n.input.shape;
    let (pixels, c) = (i.h * i.w, i.c);
    let (lo, hi) = (n.clamp.min as i32, n.clamp.max as i32);
    for (g, out) in output[..c].chunks_exact_mut(4).enumerate() {
        let sums = m.sums4(&input[4 * g..], c, pixels);
        for (y, s) in out.iter_mut().zip(sums) {
            *y = tflite_rule::average(s, pixels as i32).clamp(lo, hi) as i8;
        }
    }
    true
}
