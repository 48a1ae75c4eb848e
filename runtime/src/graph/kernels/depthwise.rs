//! Fast depthwise conv2d: see `super`.
//!
//! ## Algorithm
//!
//! Channels go in *groups* of four (`C / 4` groups; the `C % 4` tail channels run the scalar
//! loop of the reference). For one group, the kernel
//!
//! 1. widens the group's weights once into the scratch as int16 *cells* `[w0, w2, w1, w3]`
//!    (one cell per tap, HWC order, so tap `t` is cell `t`), and
//! 2. keeps a ring of `K_h` widened input rows: padded row `r` (row `r - pad_top` of the input,
//!    zero outside it) lives in slot `r % K_h`, each slot `PW = (W_out - 1) * stride_w + K_w`
//!    cells of `[x0 - z, x2 - z, x1 - z, x3 - z]`, zero in the left and right padding. Moving to
//!    the next output row widens only the `stride_h` rows that are new (every input row is
//!    widened once per group when `stride_h <= K_h`).
//! 3. Each output pixel of the group starts its four accumulators at the biases and adds, for
//!    every tap, the cell of its weights times the cell of its input: a word of a cell holds two
//!    int16 lanes of two *different* channels (0 and 2, or 1 and 3), so the products are
//!    `SMLABB` (bottom lanes) and `SMLATT` (top lanes), one MAC each, with the cells loaded by
//!    `LDRD`. Padding taps multiply zeros, which is what the reference's skipped taps add.
//!    Sums cannot overflow (validated at parse time), so the order of the products does not
//!    matter: the result is the reference's accumulator exactly.
//! 4. The accumulators are requantized a chunk and channel at a time: the fused tflite form
//!    (`super::requant::column`) where the channel's shift allows it, else the node's rule.
//!
//! [`Emulated`] computes the blocks lane by lane in portable Rust (the host tests run the same
//! driver with it); `Asm` (`cfg(tinyconv_dsp)`) is the Cortex-M4 inline assembly.

use crate::graph::Rule;
use crate::graph::kernels::requant::{self, Fused};
use crate::graph::ops::{Node, taps};
use crate::kernels::dsp::Mac;
use crate::kernels::requant::{Requant, requantize_fast};
use crate::quant::Multiplier;
use crate::tflite_rule::{self, QuantizedMultiplier};

/// int16 values of one cell (four channels).
pub const CELL: usize = 4;
/// Output pixels whose accumulators are kept at once (on the stack).
const CHUNK: usize = 32;
/// Largest kernel height with a fast path (the ring's slot table is on the stack).
pub const MAX_KERNEL_H: usize = 16;

/// Where each cell half goes: channel `j` of a group is half `LANE[j]` of its cell.
pub const LANE: [usize; 4] = [0, 2, 1, 3];

/// Cells of one padded row: `(W_out - 1) * stride_w + K_w`.
pub const fn padded_cells(out_w: usize, stride_w: usize, kernel_w: usize) -> usize {
    (out_w - 1) * stride_w + kernel_w
}

/// Scratch bytes of the fast path (0 when the op has no fast path): the weight cells and the
/// ring of rows of one group, plus 4 bytes to align them to a word.
pub const fn scratch_bytes(
    channels: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride_w: usize,
    out_w: usize,
) -> usize {
    if channels < 4 || kernel_h == 0 || kernel_h > MAX_KERNEL_H || kernel_w == 0 || out_w == 0 {
        return 0;
    }
    let cells = kernel_h * kernel_w + kernel_h * padded_cells(out_w, stride_w, kernel_w);
    cells * CELL * 2 + 4
}

/// The multiply blocks of one group (and the 3x3 column sweep, `super::dw3x3`).
pub trait DwMac: Mac + super::dw3x3::Columns {
    /// One output pixel of one group: adds to `acc[j]` (channel `j` of the group), for every
    /// `ky < rows.len()`, `kx < kw`, the product of half `LANE[j]` of the cells
    /// `w[(ky * kw + kx) * CELL..]` and `buf[rows[ky] + (col + kx) * CELL..]`.
    /// Needs every `rows[ky] + (col + kw) * CELL <= buf.len()`, `rows[ky]` a multiple of
    /// `CELL`, `w.len() >= rows.len() * kw * CELL`, `rows.len() >= 1`, `kw >= 1`.
    fn pixel(
        &self,
        acc: [i32; 4],
        buf: &[i16],
        rows: &[usize],
        col: usize,
        w: &[i16],
        kw: usize,
    ) -> [i32; 4];

    /// `out.len()` pixels of one output row: pixel `p` is [`DwMac::pixel`] from `bias` at
    /// column `p * stride` (same needs for the last pixel's column).
    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        bias: [i32; 4],
        buf: &[i16],
        rows: &[usize],
        stride: usize,
        w: &[i16],
        kw: usize,
        out: &mut [[i32; 4]],
    ) {
        for (p, acc) in out.iter_mut().enumerate() {
            *acc = self.pixel(bias, buf, rows, p * stride, w, kw);
        }
    }
}

/// The portable model of the blocks.
pub use crate::kernels::dsp::Emulated;

impl DwMac for Emulated {
    fn pixel(
        &self,
        mut acc: [i32; 4],
        buf: &[i16],
        rows: &[usize],
        col: usize,
        w: &[i16],
        kw: usize,
    ) -> [i32; 4] {
        for (ky, &row) in rows.iter().enumerate() {
            for kx in 0..kw {
                let x = &buf[row + (col + kx) * CELL..][..CELL];
                let wc = &w[(ky * kw + kx) * CELL..][..CELL];
                for (j, a) in acc.iter_mut().enumerate() {
                    // SMLABB / SMLATT: one 16x16 product added, wrapping like the instruction.
                    *a = a.wrapping_add(x[LANE[j]] as i32 * wc[LANE[j]] as i32);
                }
            }
        }
        acc
    }
}

#[cfg(tinyconv_dsp)]
pub use crate::kernels::dsp::Asm;

#[cfg(tinyconv_dsp)]
#[allow(unsafe_code)]
mod asm {
    use super::{CELL, DwMac};
    use crate::kernels::dsp::Asm;
    use core::arch::asm;

    // Four MACs of one tap: the input cell's words {x0} = (x0, x2), {x1} = (x1, x3) against the
    // weight cell's {w0} = (w0, w2), {w1} = (w1, w3).
    macro_rules! mac4 {
        () => {
            concat!(
                "smlabb {a0}, {x0}, {w0}, {a0}\n",
                "smlatt {a2}, {x0}, {w0}, {a2}\n",
                "smlabb {a1}, {x1}, {w1}, {a1}\n",
                "smlatt {a3}, {x1}, {w1}, {a3}\n",
            )
        };
    }

    /// A 3-wide kernel: per row the slot offset (in halves) from `rows`, the row's three input
    /// cells at immediate offsets from `base + 2 * offset`, the weight cells post-incremented.
    ///
    /// # Safety
    /// `rows` points to `kh >= 1` readable offsets; for each, the 3 cells (24 bytes) at
    /// `base + 2 * offset` are readable and word-aligned; `w` points to `3 * kh` readable,
    /// word-aligned cells.
    #[inline(always)]
    unsafe fn pixel3(
        acc: [i32; 4],
        base: *const i16,
        rows: *const usize,
        kh: usize,
        w: *const i16,
    ) -> [i32; 4] {
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        // SAFETY: reads only what the caller guarantees; the flags are clobbered, no stack or
        // memory is written.
        unsafe {
            asm!(
                "1:",
                "ldr {xp}, [{rp}], #4",
                "add {xp}, {base}, {xp}, lsl #1",
                "ldrd {x0}, {x1}, [{xp}]",
                "ldrd {w0}, {w1}, [{wp}], #8",
                mac4!(),
                "ldrd {x0}, {x1}, [{xp}, #8]",
                "ldrd {w0}, {w1}, [{wp}], #8",
                mac4!(),
                "ldrd {x0}, {x1}, [{xp}, #16]",
                "ldrd {w0}, {w1}, [{wp}], #8",
                mac4!(),
                "subs {kh}, {kh}, #1",
                "bne 1b",
                rp = inout(reg) rows => _,
                wp = inout(reg) w => _,
                kh = inout(reg) kh => _,
                base = in(reg) base,
                xp = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                w0 = out(reg) _,
                w1 = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                options(nostack, readonly),
            );
        }
        [a0, a1, a2, a3]
    }

    // One kernel row of the 3x3 block: the three input cells from `$r`, the weight cells at
    // `$w`, `$w + 8`, `$w + 16`.
    macro_rules! row3 {
        ($r:literal, $w:literal) => {
            concat!(
                "ldrd {x0}, {x1}, [{",
                $r,
                "}]\n",
                "ldrd {w0}, {w1}, [{wp}, #",
                $w,
                "]\n",
                mac4!(),
                "ldrd {x0}, {x1}, [{",
                $r,
                "}, #8]\n",
                "ldrd {w0}, {w1}, [{wp}, #(",
                $w,
                "+8)]\n",
                mac4!(),
                "ldrd {x0}, {x1}, [{",
                $r,
                "}, #16]\n",
                "ldrd {w0}, {w1}, [{wp}, #(",
                $w,
                "+16)]\n",
                mac4!(),
            )
        };
    }

    /// `count >= 1` pixels of a 3x3 kernel: pixel `p` reads the three input rows from
    /// `rows[k] + p * step` bytes and the 9 weight cells at `w`, and stores its four sums
    /// (started at `bias`) to `out[p]`. The bias, step and pixel counter live on the stack
    /// (`[sp]` the pixels left, `[sp, #4]` the step, `[sp, #8..24]` the bias): 13 operands.
    ///
    /// # Safety
    /// For every `p < count` and `k < 3`, the 3 cells (24 bytes) at `rows[k] + p * step` are
    /// readable; `w` points to 9 readable cells; `out` to `count` writable `[i32; 4]`; all
    /// word-aligned, `step` a multiple of 4.
    #[inline(always)]
    unsafe fn pixels33(
        bias: [i32; 4],
        rows: [*const i16; 3],
        step: usize,
        w: *const i16,
        out: *mut [i32; 4],
        count: usize,
    ) {
        let [a0, a1, a2, a3] = bias;
        // SAFETY: reads and writes only what the caller guarantees; 24 bytes of stack are
        // pushed and released; the flags are clobbered.
        unsafe {
            asm!(
                "push {{{a3}}}",
                "push {{{a2}}}",
                "push {{{a1}}}",
                "push {{{a0}}}",
                "push {{{x1}}}",
                "push {{{x0}}}",
                "1:",
                "ldrd {a0}, {a1}, [sp, #8]",
                "ldrd {a2}, {a3}, [sp, #16]",
                row3!("r0", "0"),
                row3!("r1", "24"),
                row3!("r2", "48"),
                "strd {a0}, {a1}, [{out}], #8",
                "strd {a2}, {a3}, [{out}], #8",
                "ldr {x0}, [sp, #4]",
                "add {r0}, {r0}, {x0}",
                "add {r1}, {r1}, {x0}",
                "add {r2}, {r2}, {x0}",
                "ldr {x0}, [sp]",
                "subs {x0}, {x0}, #1",
                "str {x0}, [sp]",
                "bne 1b",
                "add sp, sp, #24",
                a0 = inout(reg) a0 => _,
                a1 = inout(reg) a1 => _,
                a2 = inout(reg) a2 => _,
                a3 = inout(reg) a3 => _,
                x0 = inout(reg) count => _,
                x1 = inout(reg) step => _,
                r0 = inout(reg) rows[0] => _,
                r1 = inout(reg) rows[1] => _,
                r2 = inout(reg) rows[2] => _,
                wp = in(reg) w,
                out = inout(reg) out => _,
                w0 = out(reg) _,
                w1 = out(reg) _,
            );
        }
    }

    /// One row of any width `kw >= 1`: `kw` cells of input from `x`, of weights from `w`.
    ///
    /// # Safety
    /// `x` and `w` point to `kw` readable, word-aligned cells each.
    #[inline(always)]
    unsafe fn row(acc: [i32; 4], x: *const i16, w: *const i16, kw: usize) -> [i32; 4] {
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        // SAFETY: reads only what the caller guarantees; the flags are clobbered.
        unsafe {
            asm!(
                "1:",
                "ldrd {x0}, {x1}, [{xp}], #8",
                "ldrd {w0}, {w1}, [{wp}], #8",
                mac4!(),
                "subs {k}, {k}, #1",
                "bne 1b",
                xp = inout(reg) x => _,
                wp = inout(reg) w => _,
                k = inout(reg) kw => _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                w0 = out(reg) _,
                w1 = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                options(nostack, readonly),
            );
        }
        [a0, a1, a2, a3]
    }

    #[inline(always)]
    fn aligned4<T>(p: *const T) -> bool {
        (p as usize).is_multiple_of(4)
    }

    impl DwMac for Asm {
        #[inline]
        fn row(
            &self,
            bias: [i32; 4],
            buf: &[i16],
            rows: &[usize],
            stride: usize,
            w: &[i16],
            kw: usize,
            out: &mut [[i32; 4]],
        ) {
            let Some(last) = out.len().checked_sub(1) else {
                return;
            };
            let kh = rows.len();
            assert!(kh >= 1 && kw >= 1 && w.len() >= kh * kw * CELL);
            let end = (last * stride + kw) * CELL;
            assert!(
                rows.iter()
                    .all(|&r| r.is_multiple_of(CELL) && r + end <= buf.len())
            );
            assert!(aligned4(buf.as_ptr()) && aligned4(w.as_ptr()));
            let step = stride * CELL;
            let mut base = buf.as_ptr();
            // SAFETY (every pixel): the asserts above: for every pixel p <= last, every row's
            // `kw` cells from column `p * stride` and the `kh * kw` weight cells lie inside the
            // slices, word-aligned (cells are 8 bytes, the slices word-aligned); `base` stays
            // inside `buf` (or one step past the last pixel, never read).
            unsafe {
                if kw == 3 && kh == 3 {
                    let p = |k: usize| base.add(rows[k]);
                    let rows = [p(0), p(1), p(2)];
                    pixels33(
                        bias,
                        rows,
                        2 * step,
                        w.as_ptr(),
                        out.as_mut_ptr(),
                        out.len(),
                    );
                } else if kw == 3 {
                    for acc in out.iter_mut() {
                        *acc = pixel3(bias, base, rows.as_ptr(), kh, w.as_ptr());
                        base = base.wrapping_add(step);
                    }
                } else {
                    for acc in out.iter_mut() {
                        let mut a = bias;
                        for (ky, &r) in rows.iter().enumerate() {
                            a = row(a, base.add(r), w.as_ptr().add(ky * kw * CELL), kw);
                        }
                        *acc = a;
                        base = base.wrapping_add(step);
                    }
                }
            }
        }

        #[inline]
        fn pixel(
            &self,
            acc: [i32; 4],
            buf: &[i16],
            rows: &[usize],
            col: usize,
            w: &[i16],
            kw: usize,
        ) -> [i32; 4] {
            let kh = rows.len();
            assert!(kh >= 1 && kw >= 1 && w.len() >= kh * kw * CELL);
            let end = (col + kw) * CELL;
            assert!(
                rows.iter()
                    .all(|&r| r.is_multiple_of(CELL) && r + end <= buf.len())
            );
            assert!(aligned4(buf.as_ptr()) && aligned4(w.as_ptr()));
            // SAFETY (both arms): the asserts above: every row's `kw` cells from `col` and the
            // `kh * kw` weight cells lie inside the slices, word-aligned (cells are 8 bytes,
            // the slices word-aligned).
            unsafe {
                let base = buf.as_ptr().add(col * CELL);
                if kw == 3 {
                    pixel3(acc, base, rows.as_ptr(), kh, w.as_ptr())
                } else {
                    let mut acc = acc;
                    for (ky, &r) in rows.iter().enumerate() {
                        acc = row(acc, base.add(r), w.as_ptr().add(ky * kw * CELL), kw);
                    }
                    acc
                }
            }
        }
    }
}

/// The fast path of [`crate::graph::ops::depthwise_conv2d::run`] with the blocks `m`.
/// Returns `false` (writing nothing) when the op has no fast path or `scratch` is too short;
/// the caller then runs the reference.
pub fn depthwise<M: DwMac>(
    m: &M,
    n: &Node<'_>,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
) -> bool {
    if super::dw3x3::depthwise(m, n, input, output, scratch) {
        return true;
    }
    let (i, o, win) = (n.input.shape, n.output_info.shape, n.window);
    let c = i.c;
    let (kh, kw) = (win.kernel_h, win.kernel_w);
    let need = scratch_bytes(c, kh, kw, win.stride_w, o.w);
    if need == 0 || scratch.len() < need || o.h == 0 {
        return false;
    }
    let (_, words, _) = bytemuck::pod_align_to_mut::<i8, u32>(scratch);
    let buf: &mut [i16] = bytemuck::cast_slice_mut(words);
    let pw = padded_cells(o.w, win.stride_w, kw);
    let taps_n = kh * kw;
    if buf.len() < (taps_n + kh * pw) * CELL {
        return false;
    }
    let (wcells, ring) = buf.split_at_mut(taps_n * CELL);
    let ring = &mut ring[..kh * pw * CELL];
    let slot = pw * CELL;
    let z = n.input.quant.zero_point as i16;
    let groups = c / 4;
    let mut accs = [[0i32; 4]; CHUNK];
    for g in 0..groups {
        let c0 = 4 * g;
        // The group's weights, tap t to cell t.
        m.widen_cells(&n.weights[c0..], c, taps_n, 0, wcells, 1);
        let bias = [0, 1, 2, 3].map(|j| n.channels.bias(c0 + j));
        let rq = [0, 1, 2, 3].map(|j| Rescale::new(n, c0 + j));
        let mut next_row = 0;
        let (mut filled, mut pixel) = (0, 0);
        let mut rows = [0usize; MAX_KERNEL_H];
        for oy in 0..o.h {
            let start = oy * win.stride_h;
            for r in next_row.max(start)..start + kh {
                let s = &mut ring[(r % kh) * slot..][..slot];
                widen_row(m, n, input, r, g, pw, z, s);
            }
            next_row = start + kh;
            for (ky, row) in rows[..kh].iter_mut().enumerate() {
                *row = ((start + ky) % kh) * slot;
            }
            // Pixels in raster order into the chunk of accumulators, requantized a chunk at a
            // time (a chunk may span output rows: the outputs of a channel are `c` apart).
            let mut x = 0;
            while x < o.w {
                let count = (o.w - x).min(CHUNK - filled);
                let ring_from = &ring[x * win.stride_w * CELL..];
                let part = &mut accs[filled..filled + count];
                m.row(bias, ring_from, &rows[..kh], win.stride_w, wcells, kw, part);
                filled += count;
                x += count;
                if filled == CHUNK {
                    flush(n, &rq, &accs[..filled], pixel, c0, output);
                    pixel += filled;
                    filled = 0;
                }
            }
        }
        flush(n, &rq, &accs[..filled], pixel, c0, output);
    }
    if groups * 4 < c {
        tail(n, input, output, groups * 4);
    }
    true
}

/// One channel's requantization, prepared once a group: exactly
/// `n.finish(n.rescale(acc, c))`.
#[derive(Clone, Copy, Debug)]
pub enum Rescale {
    /// The tflite rule's fused form ([`Fused`]), the Cortex-M4 loop of `requant::column`.
    Fused(Fused),
    /// TFLM's double rounding ([`tflite_rescale`]), then [`Node::finish`].
    Tflite(QuantizedMultiplier),
    /// The onnx rule with an upper clamp of 127: [`Requant`].
    Onnx(Requant),
    /// The onnx rule with a lower upper clamp: [`requantize_fast`].
    OnnxClamped(Multiplier),
    /// Anything else: the node's own functions.
    Node,
}

impl Rescale {
    pub fn new(n: &Node<'_>, c: usize) -> Rescale {
        let (a, b) = n.channels.words(c);
        let zp = n.output_info.quant.zero_point as i32;
        let m = QuantizedMultiplier {
            multiplier: a,
            shift: b,
        };
        let (lo, hi) = (n.clamp.min as i32, n.clamp.max as i32);
        match n.rule {
            Rule::Tflite if a != i32::MIN => match Fused::new(m, zp, lo, hi) {
                Some(q) => Rescale::Fused(q),
                None => Rescale::Tflite(m),
            },
            Rule::Onnx => {
                let m = Multiplier {
                    mantissa: a as u32,
                    shift: b,
                };
                if n.clamp.max == i8::MAX {
                    Rescale::Onnx(Requant::new(m, zp, n.clamp.min as i32))
                } else {
                    Rescale::OnnxClamped(m)
                }
            }
            _ => Rescale::Node,
        }
    }

    /// Output `k * stride` of `out` from channel `j` of `accs[k]`, for every `k`.
    #[inline(never)]
    pub fn apply_all(
        &self,
        n: &Node<'_>,
        accs: &[[i32; 4]],
        j: usize,
        c: usize,
        out: &mut [i8],
        stride: usize,
    ) {
        let mut at = 0;
        macro_rules! each {
            (|$a:ident| $e:expr) => {
                for acc in accs {
                    let $a = acc[j];
                    out[at] = $e;
                    at += stride;
                }
            };
        }
        match *self {
            Rescale::Fused(q) => requant::column(&q, accs, j, out, stride),
            // A multiplier below 1: no left shift), with the rounding
            // divide's mask and threshold prepared once.
            Rescale::Tflite(m) if m.shift <= 0 && m.shift >= -31 && m.multiplier != i32::MIN => {
                let right = (-m.shift) as u32;
                let mask = ((1i64 << right) - 1) as i32;
                let half = mask >> 1;
                let mult = m.multiplier as i64;
                each!(|a| {
                    let high = ((a as i64 * mult + (1 << 30)) >> 31) as i32;
                    let threshold = half + ((high as u32) >> 31) as i32;
                    let q = (high >> right) + ((high & mask) > threshold) as i32;
                    n.finish(q)
                })
            }
            Rescale::Tflite(m) => each!(|a| n.finish(tflite_rescale(a, m))),
            Rescale::Onnx(r) => each!(|a| r.apply(a)),
            Rescale::OnnxClamped(_) | Rescale::Node => each!(|a| self.apply(n, a, c)),
        }
    }

    /// Output `k * stride` of `out` from `accs[k]`, for every `k` (channel `c`).
    pub fn apply_column(
        &self,
        n: &Node<'_>,
        accs: &[i32],
        c: usize,
        out: &mut [i8],
        stride: usize,
    ) {
        match self {
            Rescale::Fused(q) => requant::run(q, accs, out, stride),
            _ => {
                for (y, &a) in out.iter_mut().step_by(stride).zip(accs) {
                    *y = self.apply(n, a, c);
                }
            }
        }
    }

    /// `n.finish(n.rescale(acc, c))`.
    #[inline(always)]
    pub fn apply(&self, n: &Node<'_>, acc: i32, c: usize) -> i8 {
        match *self {
            Rescale::Fused(q) => q.apply(acc),
            Rescale::Tflite(m) => n.finish(tflite_rescale(acc, m)),
            Rescale::Onnx(r) => r.apply(acc),
            Rescale::OnnxClamped(m) => requantize_fast(
                acc,
                m,
                n.output_info.quant.zero_point as i32,
                n.clamp.min as i32,
                n.clamp.max as i32,
            ),
            Rescale::Node => n.finish(n.rescale(acc, c)),
        }
    }
}

/// Exactly [`tflite_rule::multiply_by_quantized_multiplier`] for a multiplier other than
/// `i32::MIN`, in 32-bit-friendly arithmetic: gemmlowp's doubling high multiply
/// `(ab + nudge) / 2^31` (truncating, nudge `2^30` or `1 - 2^30` by the sign of `ab`) equals
/// `(ab + 2^30) >> 31` (flooring) for every `ab`: for `ab >= 0` both floor the same value, for
/// `ab < 0` the sum is negative and truncating `t` equals flooring `t + 2^31 - 1`, which is
/// `ab + 2^30`. Its saturating case needs both operands `i32::MIN`.
#[inline(always)]
pub fn tflite_rescale(acc: i32, m: QuantizedMultiplier) -> i32 {
    let left = if m.shift > 0 { m.shift as u32 } else { 0 };
    let right = if m.shift < 0 { (-m.shift) as u32 } else { 0 };
    let shifted = acc.wrapping_shl(left);
    let high = if m.multiplier == i32::MIN {
        tflite_rule::saturating_rounding_doubling_high_mul(shifted, m.multiplier)
    } else {
        ((shifted as i64 * m.multiplier as i64 + (1 << 30)) >> 31) as i32
    };
    tflite_rule::rounding_divide_by_pot(high, right)
}

/// Requantizes the accumulators of pixels `pixel..pixel + accs.len()` (raster order) of the
/// group at channel `c0`.
fn flush(
    n: &Node<'_>,
    rq: &[Rescale; 4],
    accs: &[[i32; 4]],
    pixel: usize,
    c0: usize,
    out: &mut [i8],
) {
    if accs.is_empty() {
        return;
    }
    let c = n.output_info.shape.c;
    let out = &mut out[pixel * c + c0..];
    for (j, rq) in rq.iter().enumerate() {
        rq.apply_all(n, accs, j, c0 + j, &mut out[j..], c);
    }
}

/// Widens padded row `r` of group `g` into the slot `s` (`pw` cells).
#[allow(clippy::too_many_arguments)]
fn widen_row<M: DwMac>(
    m: &M,
    n: &Node<'_>,
    input: &[i8],
    r: usize,
    g: usize,
    pw: usize,
    z: i16,
    s: &mut [i16],
) {
    let (i, win) = (n.input.shape, n.window);
    let iy = r as isize - win.pad_top as isize;
    if iy < 0 || iy >= i.h as isize {
        s.fill(0);
        return;
    }
    let left = win.pad_left.min(pw);
    let cols = i.w.min(pw - left);
    let right = pw - left - cols;
    s[..left * CELL].fill(0);
    s[(left + cols) * CELL..][..right * CELL].fill(0);
    if cols > 0 {
        let x = &input[(iy as usize * i.w) * i.c + 4 * g..];
        m.widen_cells(x, i.c, cols, z, &mut s[left * CELL..], 1);
    }
}

/// The reference's loops for channels `first..C`.
fn tail(n: &Node<'_>, input: &[i8], output: &mut [i8], first: usize) {
    let (i, o, w) = (n.input.shape, n.output_info.shape, n.window);
    let zp = n.input.quant.zero_point as i32;
    for oy in 0..o.h {
        let (ky0, ky1, iy0) = taps(oy, w.stride_h, w.pad_top, w.kernel_h, i.h);
        for ox in 0..o.w {
            let (kx0, kx1, ix0) = taps(ox, w.stride_w, w.pad_left, w.kernel_w, i.w);
            let out = &mut output[(oy * o.w + ox) * o.c..][..o.c];
            for (ch, y) in out.iter_mut().enumerate().skip(first) {
                let mut acc = n.channels.bias(ch);
                for ky in ky0..ky1 {
                    let iy = (iy0 + ky as isize) as usize;
                    for kx in kx0..kx1 {
                        let ix = (ix0 + kx as isize) as usize;
                        let x = input[(iy * i.w + ix) * i.c + ch] as i32;
                        let wt = n.weights[(ky * w.kernel_w + kx) * i.c + ch] as i32;
                        acc += wt * (x - zp);
                    }
                }
                *y = n.finish(n.rescale(acc, ch));
            }
        }
    }
}
