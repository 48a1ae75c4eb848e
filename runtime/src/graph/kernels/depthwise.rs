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
//! 4. The accumulators are requantized with the node's rule (`Node::rescale`, `Node::finish`).
//!
//! [`Emulated`] computes the blocks lane by lane in portable Rust (the host tests run the same
//! driver with it); `Asm` (`cfg(tinyconv_dsp)`) is the Cortex-M4 inline assembly.

use crate::graph::ops::{Node, taps};
use crate::kernels::dsp::Mac;

/// int16 values of one cell (four channels).
pub const CELL: usize = 4;
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

/// The multiply blocks of one group.
pub trait DwMac: Mac {
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
    for g in 0..groups {
        let c0 = 4 * g;
        // The group's weights, tap t to cell t.
        m.widen_cells(&n.weights[c0..], c, taps_n, 0, wcells, 1);
        let bias = [0, 1, 2, 3].map(|j| n.channels.bias(c0 + j));
        let mut next_row = 0;
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
            let out_row = &mut output[oy * o.w * c..][..o.w * c];
            for ox in 0..o.w {
                let acc = m.pixel(bias, ring, &rows[..kh], ox * win.stride_w, wcells, kw);
                let out = &mut out_row[ox * c + c0..][..4];
                for (j, y) in out.iter_mut().enumerate() {
                    *y = n.finish(n.rescale(acc[j], c0 + j));
                }
            }
        }
    }
    if groups * 4 < c {
        tail(n, input, output, groups * 4);
    }
    true
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
