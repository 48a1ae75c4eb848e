//! Fast depthwise conv2d for 3x3 kernels at stride 1 (DS-CNN's and most of MobileNetV1's):
//! one channel at a time, by column sweeps, its nine weights in registers.
//!
//! ## Algorithm
//!
//! For each channel, and each band of up to [`BAND`] output rows:
//!
//! 1. The band's padded input rows (zero outside the input) are widened into a *plane* of
//!    int16 `x - z`, one row every `ROW` bytes ([`row_bytes`]: a power of two from 16 to 256,
//!    so that the assembly steps rows with an immediate).
//! 2. Each output column `x` is one sweep down the plane ([`Columns::column`]): input row `r`
//!    is two loads, the word `(p[x], p[x+1])` and the word whose low half is `p[x+2]`, and
//!    adds to the three outputs that read it (rows `r - 2`, `r - 1` and `r` of the band) one
//!    `SMLAD` for kernel taps 0 and 1 and one `SMLABB`/`SMLABT` for tap 2: 9 MACs in 6
//!    instructions, the 9 weights packed into 5 registers, three accumulators rotating
//!    (unrolled three rows a turn; a band's last turn may compute up to two rows past it,
//!    which are never stored). The finished accumulators go to a column buffer.
//! 3. The column is requantized into the output, `W_out * C` bytes apart (the fused tflite
//!    form where the channel's shift allows it, else the node's rule).
//!
//! Sums of valid rows cannot overflow (validated at parse time), so the order of the products
//! does not matter: they are the reference's accumulators exactly. [`Emulated`] computes the
//! sweep in portable Rust; `Asm` (`cfg(tinyconv_dsp)`) is the Cortex-M4 inline assembly.

use super::depthwise::Rescale;
use super::requant::Fused;
use crate::graph::io::Io;
use crate::graph::ops::Node;

/// Output rows of one band (a multiple of 3: one turn of the assembly is three rows).
pub const BAND: usize = 48;
const _: () = assert!(BAND.is_multiple_of(3));

/// Plane row strides the assembly is built for, in bytes.
pub const ROWS: [usize; 5] = [16, 32, 64, 128, 256];

/// The plane's row stride for a padded width of `pw` int16 values: the smallest of [`ROWS`]
/// holding `pw + 1` values (the sweep's second load of the last column reads one past the
/// row); 0 when none does.
pub const fn row_bytes(pw: usize) -> usize {
    let mut i = 0;
    while i < ROWS.len() {
        if ROWS[i] >= 2 * (pw + 1) {
            return ROWS[i];
        }
        i += 1;
    }
    0
}

/// Turns (three rows each) of the sweep for a band of `rows` output rows.
pub const fn turns(rows: usize) -> usize {
    rows.div_ceil(3)
}

/// Scratch bytes of the column path (0 when the op has none): the [`PLANES`] planes of one
/// band, plus 4 bytes to align them.
pub const fn scratch_bytes(
    kernel_h: usize,
    kernel_w: usize,
    stride_h: usize,
    stride_w: usize,
    out_h: usize,
    out_w: usize,
) -> usize {
    let s = stride_h;
    if kernel_h != 3 || kernel_w != 3 || stride_w != s || (s != 1 && s != 2) || out_h == 0 {
        return 0;
    }
    let row = row_bytes(padded_width(s, out_w));
    if row == 0 {
        return 0;
    }
    PLANES * plane_rows(s, band(s, out_h)) * row + 4
}

/// Planes the column path keeps: two channels are widened together ([`Columns::widen2`]).
pub const PLANES: usize = 2;

/// Output rows of one band at stride 2 (the plane holds `2 * BAND2 + 1` input rows).
pub const BAND2: usize = 16;

/// Output rows of the first band: at most [`BAND`] (stride 1) or [`BAND2`] (stride 2).
const fn band(stride: usize, out_h: usize) -> usize {
    let most = if stride == 1 { BAND } else { BAND2 };
    if out_h < most { out_h } else { most }
}

/// The padded input columns the plane holds for `out_w` output columns.
const fn padded_width(stride: usize, out_w: usize) -> usize {
    (out_w - 1) * stride + 3
}

/// Plane rows of a band of `rows` output rows: whole turns of three rows and the two the
/// last turn reads past them (stride 1), or the `2 * rows + 1` input rows (stride 2).
const fn plane_rows(stride: usize, rows: usize) -> usize {
    if stride == 1 {
        3 * turns(rows) + 2
    } else {
        2 * rows + 1
    }
}

/// The 9 weights `w[ky * 3 + kx]` packed as the sweep uses them: `(w00, w01)`, `(w10, w11)`,
/// `(w20, w21)`, `(w02, w12)`, `(w22, 0)`, low half first.
pub fn pack(w: [i8; 9]) -> [u32; 5] {
    let pair = |a: i8, b: i8| (a as i16 as u16 as u32) | ((b as i16 as u16 as u32) << 16);
    [
        pair(w[0], w[1]),
        pair(w[3], w[4]),
        pair(w[6], w[7]),
        pair(w[2], w[5]),
        pair(w[8], 0),
    ]
}

/// [`pack`]'s weights as the taps of kernel rows 0, 1 and 2: `[w_k0, w_k1, w_k2]`.
fn unpack(w: &[u32; 5]) -> [[i32; 3]; 3] {
    let lo = |v: u32| v as u16 as i16 as i32;
    let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
    [
        [lo(w[0]), hi(w[0]), lo(w[3])],
        [lo(w[1]), hi(w[1]), hi(w[3])],
        [lo(w[2]), hi(w[2]), lo(w[4])],
    ]
}

/// The sweep of one column.
pub trait Columns {
    /// For `y < 3 * turns`: `out[y] = bias + sum_{ky, kx < 3} w[ky * 3 + kx] *
    /// plane[(y + ky) * row + x + kx]` (wrapping), `w` as [`pack`] packs it, `row` the plane's
    /// row stride in int16 values (half of one of [`ROWS`]). Needs `turns >= 1`,
    /// `out.len() >= 3 * turns`, `plane.len() >= (3 * turns + 1) * row + x + 4`, the plane
    /// word-aligned.
    #[allow(clippy::too_many_arguments)]
    fn column(
        &self,
        plane: &[i16],
        row: usize,
        x: usize,
        w: &[u32; 5],
        bias: i32,
        turns: usize,
        out: &mut [i32],
    );

    /// For every column `x < cols`: [`Columns::column`] into `accs`, then the first `rows`
    /// sums requantized by `q` into `out[x * c + k * stride]` (as `requant::run`). Needs also
    /// `1 <= rows <= 3 * turns`, `cols >= 1`, the plane as [`Columns::column`] needs for
    /// `x = cols - 1`, `out.len() > (cols - 1) * c + (rows - 1) * stride`.
    #[allow(clippy::too_many_arguments)]
    fn columns_fused(
        &self,
        plane: &[i16],
        row: usize,
        cols: usize,
        w: &[u32; 5],
        bias: i32,
        turns: usize,
        accs: &mut [i32],
        q: &Fused,
        rows: usize,
        out: &mut [i8],
        c: usize,
        stride: usize,
    ) {
        for x in 0..cols {
            self.column(plane, row, x, w, bias, turns, accs);
            super::requant::run(q, &accs[..rows], &mut out[x * c..], stride);
        }
    }

    /// The stride-2 sweep of output column `x`: for `y < rows`, `out[y] = bias +
    /// sum_{ky, kx < 3} w[ky * 3 + kx] * plane[(2y + ky) * row + 2x + kx]` (wrapping), `w` as
    /// [`pack`] packs it. Needs `rows >= 1`, `out.len() >= rows`,
    /// `plane.len() >= 2 * rows * row + 2x + 4`.
    #[allow(clippy::too_many_arguments)]
    fn column2(
        &self,
        plane: &[i16],
        row: usize,
        x: usize,
        w: &[u32; 5],
        bias: i32,
        rows: usize,
        out: &mut [i32],
    ) {
        let taps = unpack(w);
        for (y, acc) in out[..rows].iter_mut().enumerate() {
            let mut a = bias;
            for (ky, t) in taps.iter().enumerate() {
                let p = &plane[(2 * y + ky) * row + 2 * x..][..3];
                for (&tap, &v) in t.iter().zip(p) {
                    a = a.wrapping_add(tap * v as i32);
                }
            }
            *acc = a;
        }
    }

    /// For every column `x < cols`: [`Columns::column2`] into `accs`, then the `rows` sums
    /// requantized by `q` into `out[x * c + k * stride]`. Needs also `cols >= 1`, the plane
    /// as [`Columns::column2`] needs for `x = cols - 1`,
    /// `out.len() > (cols - 1) * c + (rows - 1) * stride`.
    #[allow(clippy::too_many_arguments)]
    fn columns2_fused(
        &self,
        plane: &[i16],
        row: usize,
        cols: usize,
        w: &[u32; 5],
        bias: i32,
        accs: &mut [i32],
        q: &Fused,
        rows: usize,
        out: &mut [i8],
        c: usize,
        stride: usize,
    ) {
        for x in 0..cols {
            self.column2(plane, row, x, w, bias, rows, accs);
            super::requant::run(q, &accs[..rows], &mut out[x * c..], stride);
        }
    }

    /// One channel of `rows` input rows into the plane: `plane[r * row + k] =
    /// src[r * src_row + k * stride] - z` for `r < rows`, `k < cols`. Needs, when `rows` and
    /// `cols` are not 0, `src.len() > (rows - 1) * src_row + (cols - 1) * stride` and
    /// `plane.len() >= (rows - 1) * row + cols`.
    #[allow(clippy::too_many_arguments)]
    fn widen(
        &self,
        src: &[i8],
        stride: usize,
        src_row: usize,
        z: i16,
        plane: &mut [i16],
        row: usize,
        rows: usize,
        cols: usize,
    ) {
        for r in 0..rows {
            for k in 0..cols {
                plane[r * row + k] = src[r * src_row + k * stride] as i16 - z;
            }
        }
    }

    /// Two adjacent channels at once: [`Columns::widen`] of `src` into `plane` and of
    /// `src[1..]` into `plane[gap..]`. Needs, when `rows` and `cols` are not 0,
    /// `src.len() > (rows - 1) * src_row + (cols - 1) * stride + 1` and
    /// `plane.len() >= gap + (rows - 1) * row + cols`.
    #[allow(clippy::too_many_arguments)]
    fn widen2(
        &self,
        src: &[i8],
        stride: usize,
        src_row: usize,
        z: i16,
        plane: &mut [i16],
        gap: usize,
        row: usize,
        rows: usize,
        cols: usize,
    ) {
        if rows == 0 || cols == 0 {
            return;
        }
        self.widen(src, stride, src_row, z, plane, row, rows, cols);
        self.widen(
            &src[1..],
            stride,
            src_row,
            z,
            &mut plane[gap..],
            row,
            rows,
            cols,
        );
    }
}

/// The portable model of the sweep.
pub use crate::kernels::dsp::Emulated;

impl Columns for Emulated {
    fn column(
        &self,
        plane: &[i16],
        row: usize,
        x: usize,
        w: &[u32; 5],
        bias: i32,
        turns: usize,
        out: &mut [i32],
    ) {
        // Row ky's taps 0, 1 (the SMLAD pair) and 2 (a half of w[3] or w[4]).
        let taps = unpack(w);
        for (y, acc) in out[..3 * turns].iter_mut().enumerate() {
            let mut a = bias;
            for (ky, t) in taps.iter().enumerate() {
                let p = &plane[(y + ky) * row + x..][..3];
                for (&tap, &v) in t.iter().zip(p) {
                    a = a.wrapping_add(tap * v as i32);
                }
            }
            *acc = a;
        }
    }
}

#[cfg(tinyconv_dsp)]
pub use crate::kernels::dsp::Asm;

#[cfg(tinyconv_dsp)]
#[allow(unsafe_code)]
mod asm {
    use super::{Columns, Fused};
    use crate::kernels::dsp::Asm;
    use core::arch::asm;

    // One input row of the sweep: the row's two words, then the output finishing here
    // (kernel row 2, stored), the one in the middle (kernel row 1) and the one starting here
    // (kernel row 0, from the bias in r7).
    macro_rules! row {
        ($done:literal, $mid:literal, $new:literal) => {
            concat!(
                "ldr {xb}, [{p}, #4]\n",
                "ldr {xa}, [{p}], #{row}\n",
                "smlad {",
                $done,
                "}, {xa}, {w2}, {",
                $done,
                "}\n",
                "smlabb {",
                $done,
                "}, {xb}, {w4}, {",
                $done,
                "}\n",
                "str {",
                $done,
                "}, [{out}], #4\n",
                "smlad {",
                $mid,
                "}, {xa}, {w1}, {",
                $mid,
                "}\n",
                "smlabt {",
                $mid,
                "}, {xb}, {w3}, {",
                $mid,
                "}\n",
                "smlad {",
                $new,
                "}, {xa}, {w0}, r7\n",
                "smlabb {",
                $new,
                "}, {xb}, {w3}, {",
                $new,
                "}\n",
            )
        };
    }

    /// # Safety
    /// `p` points to the column's first plane value (2-byte aligned; the Cortex-M4's LDR takes
    /// unaligned words), with `3 * turns + 2` rows of `ROW` bytes readable from it, each
    /// 8 bytes from `p`'s column on; `out` to `3 * turns` writable int32 values; `turns >= 1`.
    #[inline(always)]
    unsafe fn column<const ROW: usize>(
        p: *const i16,
        w: &[u32; 5],
        bias: i32,
        turns: usize,
        out: *mut i32,
    ) {
        // SAFETY: reads the plane rows and writes the outputs the caller guarantees; r7 is
        // saved and restored around its use as the bias; the flags are clobbered.
        unsafe {
            asm!(
                "push {{r7}}",
                "mov r7, {xa}",
                // Rows 0 and 1: output 0 from kernel rows 0 and 1, output 1 from row 0.
                "ldr {xb}, [{p}, #4]",
                "ldr {xa}, [{p}], #{row}",
                "smlad {a0}, {xa}, {w0}, r7",
                "smlabb {a0}, {xb}, {w3}, {a0}",
                "ldr {xb}, [{p}, #4]",
                "ldr {xa}, [{p}], #{row}",
                "smlad {a0}, {xa}, {w1}, {a0}",
                "smlabt {a0}, {xb}, {w3}, {a0}",
                "smlad {a1}, {xa}, {w0}, r7",
                "smlabb {a1}, {xb}, {w3}, {a1}",
                "1:",
                row!("a0", "a1", "a2"),
                row!("a1", "a2", "a0"),
                row!("a2", "a0", "a1"),
                "subs {n}, {n}, #1",
                "bne 1b",
                "pop {{r7}}",
                row = const ROW,
                p = inout(reg) p => _,
                out = inout(reg) out => _,
                n = inout(reg) turns => _,
                xa = inout(reg) bias => _,
                xb = out(reg) _,
                w0 = in(reg) w[0],
                w1 = in(reg) w[1],
                w2 = in(reg) w[2],
                w3 = in(reg) w[3],
                w4 = in(reg) w[4],
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
            );
        }
    }

    /// What [`column_q`] requantizes its sums with, read by the assembly at fixed offsets.
    #[repr(C)]
    struct ColumnOut {
        accs: *const i32, // 0
        out: *mut i8,     // 4
        stride: usize,    // 8
        rows: usize,      // 12
        m: i32,           // 16
        khi: i32,         // 20
        sh: u32,          // 24
        lo: i32,          // 28
        rem: usize,       // 32: rows past the sweep's whole turns (1 or 2), for `tail!`
    }

    impl ColumnOut {
        /// The requantization of `rows` sums from `accs` into `out`, `stride` bytes apart, by
        /// `q` (whose upper clamp must be 127: `SSAT` does it).
        #[inline(always)]
        fn new(
            accs: &[i32],
            out: &mut [i8],
            stride: usize,
            rows: usize,
            q: &Fused,
            rem: usize,
        ) -> Self {
            assert!(q.hi == i8::MAX as i32);
            ColumnOut {
                accs: accs.as_ptr(),
                out: out.as_mut_ptr(),
                stride,
                rows,
                m: q.m,
                khi: q.khi,
                sh: q.sh,
                lo: q.lo,
                rem,
            }
        }
    }

    // One sum from {p} requantized into {out}, which steps by the stride {n}.
    macro_rules! requant_one {
        ($clamp:expr) => {
            concat!(
                "ldr {a0}, [{p}], #4\n",
                "and {a1}, {a0}, #0x80000000\n",
                "orr {a1}, {a1}, #0x40000000\n",
                "add {a2}, {w1}, {a0}, asr #31\n",
                "smlal {a1}, {a2}, {a0}, {w0}\n",
                "asr {a2}, {a2}, {w2}\n",
                "ssat {a2}, #8, {a2}\n",
                $clamp,
                "strb {a2}, [{out}]\n",
                "add {out}, {out}, {n}\n",
            )
        };
    }

    // `column_q!`'s sweep past its whole turns (`{n}` of them, possibly none): `rem` (1 or
    // 2, from the params) more input rows, finishing the column's last one or two outputs.
    macro_rules! tail_skip {
        (whole) => {
            ""
        };
        (rem) => {
            "cmp {n}, #0\nbeq 5f\n"
        };
    }
    macro_rules! tail {
        (whole) => {
            ""
        };
        (rem) => {
            concat!(
                "5:\n",
                "ldr {n}, [sp]\n",
                "ldr {n}, [{n}, #32]\n",
                "cmp {n}, #1\n",
                row!("a0", "a1", "a2"),
                "beq 6f\n",
                row!("a1", "a2", "a0"),
                "6:\n",
            )
        };
    }

    // The requantization loop over a column's sums (the fused form, `super::super::requant`),
    // `$clamp` after SSAT: sums from {p}, outputs at {out}, {stride} apart, the parameters
    // from the `ColumnOut` at [sp].
    macro_rules! requant_column {
        ($clamp:expr) => {
            concat!(
                "ldr {xa}, [sp]\n",
                "ldrd {p}, {out}, [{xa}]\n",
                "ldrd {n}, {xb}, [{xa}, #8]\n",
                "ldrd {w0}, {w1}, [{xa}, #16]\n",
                "ldrd {w2}, r7, [{xa}, #24]\n",
                // An odd count: one output first, then two a turn.
                "tst {xb}, #1\n",
                "beq 3f\n",
                requant_one!($clamp),
                "subs {xb}, {xb}, #1\n",
                "beq 4f\n",
                "3:\n",
                requant_one!($clamp),
                requant_one!($clamp),
                "subs {xb}, {xb}, #2\n",
                "bne 3b\n",
                "4:\n",
            )
        };
    }

    // The sweep of [`column`], then [`requant_column!`].
    macro_rules! column_q {
        ($row:expr, $p:expr, $w:expr, $bias:expr, $turns:expr, $params:expr, $clamp:expr,
         $tail:tt) => {
            asm!(
                "push {{r7}}",
                "push {{{xb}}}",
                "mov r7, {xa}",
                "ldr {xb}, [{p}, #4]",
                "ldr {xa}, [{p}], #{row}",
                "smlad {a0}, {xa}, {w0}, r7",
                "smlabb {a0}, {xb}, {w3}, {a0}",
                "ldr {xb}, [{p}, #4]",
                "ldr {xa}, [{p}], #{row}",
                "smlad {a0}, {xa}, {w1}, {a0}",
                "smlabt {a0}, {xb}, {w3}, {a0}",
                "smlad {a1}, {xa}, {w0}, r7",
                "smlabb {a1}, {xb}, {w3}, {a1}",
                tail_skip!($tail),
                "1:",
                row!("a0", "a1", "a2"),
                row!("a1", "a2", "a0"),
                row!("a2", "a0", "a1"),
                "subs {n}, {n}, #1",
                "bne 1b",
                tail!($tail),
                requant_column!($clamp),
                "add sp, sp, #4",
                "pop {{r7}}",
                row = const $row,
                p = inout(reg) $p => _,
                out = inout(reg) $params.accs => _,
                n = inout(reg) $turns => _,
                xa = inout(reg) $bias => _,
                xb = inout(reg) $params as *const ColumnOut => _,
                w0 = inout(reg) $w[0] => _,
                w1 = inout(reg) $w[1] => _,
                w2 = inout(reg) $w[2] => _,
                w3 = in(reg) $w[3],
                w4 = in(reg) $w[4],
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
            )
        };
    }

    // The stride-2 sweep of one output column ([`Columns::column2`]): per output, its kernel
    // rows 1 and 2 (two input rows, two words each), stored, and the next output started on
    // the same register from the shared row (kernel row 0, from the bias in r7): 9 MACs in 6
    // multiplies, 13 instructions with the loads and the loop; then [`requant_column!`].
    macro_rules! column2_q {
        ($row:expr, $p:expr, $w:expr, $bias:expr, $rows:expr, $params:expr, $clamp:expr) => {
            asm!(
                "push {{r7}}",
                "push {{{xb}}}",
                "mov r7, {xa}",
                "ldr {xb}, [{p}, #4]",
                "ldr {xa}, [{p}], #{row}",
                "smlad {a0}, {xa}, {w0}, r7",
                "smlabb {a0}, {xb}, {w3}, {a0}",
                "1:",
                "ldr {xb}, [{p}, #4]",
                "ldr {xa}, [{p}], #{row}",
                "smlad {a0}, {xa}, {w1}, {a0}",
                "smlabt {a0}, {xb}, {w3}, {a0}",
                "ldr {xb}, [{p}, #4]",
                "ldr {xa}, [{p}], #{row}",
                "smlad {a0}, {xa}, {w2}, {a0}",
                "smlabb {a0}, {xb}, {w4}, {a0}",
                "str {a0}, [{out}], #4",
                "smlad {a0}, {xa}, {w0}, r7",
                "smlabb {a0}, {xb}, {w3}, {a0}",
                "subs {n}, {n}, #1",
                "bne 1b",
                requant_column!($clamp),
                "add sp, sp, #4",
                "pop {{r7}}",
                row = const $row,
                p = inout(reg) $p => _,
                out = inout(reg) $params.accs => _,
                n = inout(reg) $rows => _,
                xa = inout(reg) $bias => _,
                xb = inout(reg) $params as *const ColumnOut => _,
                w0 = inout(reg) $w[0] => _,
                w1 = inout(reg) $w[1] => _,
                w2 = inout(reg) $w[2] => _,
                w3 = in(reg) $w[3],
                w4 = in(reg) $w[4],
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
            )
        };
    }

    /// # Safety
    /// `p` points to output column `x`'s first plane value (`2x`; 2-byte aligned), with
    /// `2 * rows + 1` rows of `ROW` bytes readable from it, each 8 bytes from `p`'s column on
    /// (the last row's two words too); `params.accs` to `rows` writable int32 values,
    /// `params.out + k * params.stride` writable for `k < params.rows == rows`; `rows >= 1`.
    #[inline(always)]
    unsafe fn column2_q<const ROW: usize>(
        p: *const i16,
        w: &[u32; 5],
        bias: i32,
        rows: usize,
        params: &ColumnOut,
        full_clamp: bool,
    ) {
        // SAFETY: reads the plane rows and writes the sums and outputs the caller guarantees;
        // r7 is saved and restored, 8 bytes of stack are pushed and released; the flags are
        // clobbered.
        unsafe {
            if full_clamp {
                column2_q!(ROW, p, w, bias, rows, params, "")
            } else {
                column2_q!(
                    ROW,
                    p,
                    w,
                    bias,
                    rows,
                    params,
                    "cmp {a2}, r7\nit lt\nmovlt {a2}, r7\n"
                )
            }
        }
    }

    /// # Safety
    /// As [`column`] for `turns` whole turns and `params.rem` (0, 1 or 2) more rows (`turns`
    /// may be 0 when `params.rem` is not), with `params.accs` the sweep's output
    /// (`3 * turns + rem` int32 values), and `params.out + k * params.stride` writable for
    /// `k < params.rows`, `params.rows == 3 * turns + rem` or, when `rem` is 0,
    /// `1 <= params.rows <= 3 * turns`.
    #[inline(always)]
    unsafe fn column_q<const ROW: usize>(
        p: *const i16,
        w: &[u32; 5],
        bias: i32,
        turns: usize,
        params: &ColumnOut,
        full_clamp: bool,
    ) {
        // SAFETY: as `column` for the sweep (with `params.rem` more rows when it is not 0: at
        // most the rows of the next whole turn); the requantization reads the `rows` sums the
        // sweep wrote and writes the caller's output bytes; r7 is saved and restored, 8 bytes
        // of stack are pushed and released; the flags are clobbered.
        unsafe {
            match (full_clamp, params.rem != 0) {
                (true, false) => column_q!(ROW, p, w, bias, turns, params, "", whole),
                (false, false) => {
                    column_q!(
                        ROW,
                        p,
                        w,
                        bias,
                        turns,
                        params,
                        "cmp {a2}, r7\nit lt\nmovlt {a2}, r7\n",
                        whole
                    )
                }
                (true, true) => column_q!(ROW, p, w, bias, turns, params, "", rem),
                (false, true) => {
                    column_q!(
                        ROW,
                        p,
                        w,
                        bias,
                        turns,
                        params,
                        "cmp {a2}, r7\nit lt\nmovlt {a2}, r7\n",
                        rem
                    )
                }
            }
        }
    }

    /// `rows` rows of `cols` values: per row, two values a turn (two `LDRSB`, `PKHBT`,
    /// `SSUB16`, one unaligned word store) and the odd one.
    ///
    /// # Safety
    /// For `r < rows`, `k < cols`: `src + r * src_row + k * stride` readable,
    /// `dst + r * row_bytes + 2k` writable (2-byte aligned); `rows >= 1`, `cols >= 1`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn widen_rows(
        src: *const i8,
        stride: usize,
        src_row: usize,
        z: i16,
        dst: *mut i16,
        row_bytes: usize,
        rows: usize,
        cols: usize,
    ) {
        let z2 = (z as u16 as u32) * 0x0001_0001;
        // SAFETY: as the caller guarantees; 8 bytes of stack hold the row counter and the
        // row stride; the flags are clobbered.
        unsafe {
            asm!(
                "push {{{rows}}}",
                "push {{{rowb}}}",
                "2:",
                "mov {s}, {src}",
                "mov {d}, {dst}",
                "lsrs {n}, {cols}, #1",
                "beq 3f",
                "1:",
                "ldrsb {a}, [{s}]",
                "ldrsb {b}, [{s}, {stride}]",
                "add {s}, {s}, {stride}, lsl #1",
                "pkhbt {a}, {a}, {b}, lsl #16",
                "ssub16 {a}, {a}, {z2}",
                "str {a}, [{d}], #4",
                "subs {n}, {n}, #1",
                "bne 1b",
                "3:",
                "tst {cols}, #1",
                "beq 4f",
                "ldrsb {a}, [{s}]",
                "sub {a}, {a}, {z2}, asr #16",
                "strh {a}, [{d}]",
                "4:",
                "add {src}, {src}, {srow}",
                "ldr {a}, [sp]",
                "add {dst}, {dst}, {a}",
                "ldr {a}, [sp, #4]",
                "subs {a}, {a}, #1",
                "str {a}, [sp, #4]",
                "bne 2b",
                "add sp, sp, #8",
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                rows = in(reg) rows,
                rowb = in(reg) row_bytes,
                cols = in(reg) cols,
                stride = in(reg) stride,
                srow = in(reg) src_row,
                z2 = in(reg) z2,
                s = out(reg) _,
                d = out(reg) _,
                n = out(reg) _,
                a = out(reg) _,
                b = out(reg) _,
            );
        }
    }

    /// Two adjacent channels' `rows` rows of `cols` values into two planes `gap_bytes` apart,
    /// rows `ROW` bytes apart:
    /// per row, two pixels a turn (two `LDRH` of the channel pair, `PKHBT`, `SXTB16` twice,
    /// `SSUB16` twice, two unaligned word stores: 3 instructions a value) and the odd one.
    ///
    /// # Safety
    /// For `r < rows`, `k < cols`, `j < 2`: `src + r * src_row + k * stride + j` readable,
    /// `dst + j * gap_bytes + r * ROW + 2k` writable (2-byte aligned); `rows >= 1`,
    /// `cols >= 1`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn widen2_rows<const ROW: usize>(
        src: *const i8,
        stride: usize,
        src_row: usize,
        z: i16,
        dst: *mut i16,
        gap_bytes: usize,
        rows: usize,
        cols: usize,
    ) {
        let z2 = (z as u16 as u32) * 0x0001_0001;
        // SAFETY: as the caller guarantees; the flags are clobbered.
        unsafe {
            asm!(
                "2:",
                "mov {s}, {src}",
                "mov {d}, {dst}",
                "lsrs {n}, {cols}, #1",
                "beq 3f",
                "1:",
                "ldrh {a}, [{s}]",
                "ldrh {b}, [{s}, {stride}]",
                "add {s}, {s}, {stride}, lsl #1",
                "pkhbt {a}, {a}, {b}, lsl #16",
                "sxtb16 {b}, {a}, ror #8",
                "sxtb16 {a}, {a}",
                "ssub16 {b}, {b}, {z2}",
                "ssub16 {a}, {a}, {z2}",
                "str {b}, [{d}, {gap}]",
                "str {a}, [{d}], #4",
                "subs {n}, {n}, #1",
                "bne 1b",
                "3:",
                "tst {cols}, #1",
                "beq 4f",
                "ldrsb {a}, [{s}]",
                "ldrsb {b}, [{s}, #1]",
                "sub {a}, {a}, {z2}, asr #16",
                "sub {b}, {b}, {z2}, asr #16",
                "strh {b}, [{d}, {gap}]",
                "strh {a}, [{d}]",
                "4:",
                "add {src}, {src}, {srow}",
                "add {dst}, {dst}, #{row}",
                "subs {rows}, {rows}, #1",
                "bne 2b",
                row = const ROW,
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                rows = inout(reg) rows => _,
                cols = in(reg) cols,
                stride = in(reg) stride,
                srow = in(reg) src_row,
                z2 = in(reg) z2,
                gap = in(reg) gap_bytes,
                s = out(reg) _,
                d = out(reg) _,
                n = out(reg) _,
                a = out(reg) _,
                b = out(reg) _,
            );
        }
    }

    // `$f::<ROW>(args)` for the plane row stride `$bytes` (one of [`super::ROWS`]).
    macro_rules! by_row {
        ($bytes:expr, $f:ident($($a:expr),*)) => {
            match $bytes {
                16 => $f::<16>($($a),*),
                32 => $f::<32>($($a),*),
                64 => $f::<64>($($a),*),
                128 => $f::<128>($($a),*),
                256 => $f::<256>($($a),*),
                _ => panic!("plane row stride not one of ROWS"),
            }
        };
    }

    impl Columns for Asm {
        #[inline]
        fn columns_fused(
            &self,
            plane: &[i16],
            row: usize,
            cols: usize,
            w: &[u32; 5],
            bias: i32,
            turns: usize,
            accs: &mut [i32],
            q: &Fused,
            rows: usize,
            out: &mut [i8],
            c: usize,
            stride: usize,
        ) {
            assert!(turns >= 1 && accs.len() >= 3 * turns && cols >= 1);
            assert!(plane.len() >= (3 * turns + 1) * row + (cols - 1) + 4);
            assert!(rows >= 1 && rows <= 3 * turns);
            assert!(out.len() > (cols - 1) * c + (rows - 1) * stride);
            // The sweep stops after the band's last output row: `rows / 3` whole turns and
            // `rows % 3` rows of the next (which `turns` covers: `rows <= 3 * turns`).
            let mut params = ColumnOut::new(accs, out, stride, rows, q, rows % 3);
            let whole = rows / 3;
            let full = q.lo == i8::MIN as i32;
            let mut p = plane.as_ptr();
            for _ in 0..cols {
                // SAFETY (every arm): the asserts above, as in `column` for every column
                // `x < cols`, and the `rows` output bytes `stride` apart from `x * c`.
                unsafe { by_row!(row * 2, column_q(p, w, bias, whole, &params, full)) }
                p = p.wrapping_add(1);
                params.out = params.out.wrapping_add(c);
            }
        }

        #[inline]
        #[allow(clippy::too_many_arguments)]
        fn widen(
            &self,
            src: &[i8],
            stride: usize,
            src_row: usize,
            z: i16,
            plane: &mut [i16],
            row: usize,
            rows: usize,
            cols: usize,
        ) {
            if rows == 0 || cols == 0 {
                return;
            }
            assert!(src.len() > (rows - 1) * src_row + (cols - 1) * stride);
            assert!(plane.len() >= (rows - 1) * row + cols);
            // SAFETY: the asserts above.
            unsafe {
                widen_rows(
                    src.as_ptr(),
                    stride,
                    src_row,
                    z,
                    plane.as_mut_ptr(),
                    2 * row,
                    rows,
                    cols,
                )
            }
        }

        #[inline]
        fn columns2_fused(
            &self,
            plane: &[i16],
            row: usize,
            cols: usize,
            w: &[u32; 5],
            bias: i32,
            accs: &mut [i32],
            q: &Fused,
            rows: usize,
            out: &mut [i8],
            c: usize,
            stride: usize,
        ) {
            assert!(rows >= 1 && accs.len() >= rows && cols >= 1);
            assert!(plane.len() >= 2 * rows * row + 2 * (cols - 1) + 4);
            assert!(out.len() > (cols - 1) * c + (rows - 1) * stride);
            let mut params = ColumnOut::new(accs, out, stride, rows, q, 0);
            let full = q.lo == i8::MIN as i32;
            let mut p = plane.as_ptr();
            for _ in 0..cols {
                // SAFETY (every arm): the asserts above: `2 * rows + 1` rows of `row` values
                // from column `2x`, each read at 2x..2x+4 (the last row too: the plane's
                // length), and the `rows` output bytes `stride` apart from `x * c`.
                unsafe { by_row!(row * 2, column2_q(p, w, bias, rows, &params, full)) }
                p = p.wrapping_add(2);
                params.out = params.out.wrapping_add(c);
            }
        }

        #[inline]
        #[allow(clippy::too_many_arguments)]
        fn widen2(
            &self,
            src: &[i8],
            stride: usize,
            src_row: usize,
            z: i16,
            plane: &mut [i16],
            gap: usize,
            row: usize,
            rows: usize,
            cols: usize,
        ) {
            if rows == 0 || cols == 0 {
                return;
            }
            assert!(src.len() > (rows - 1) * src_row + (cols - 1) * stride + 1);
            assert!(plane.len() >= gap + (rows - 1) * row + cols);
            let (src, dst, gap) = (src.as_ptr(), plane.as_mut_ptr(), 2 * gap);
            // SAFETY (every arm): the asserts above.
            unsafe {
                by_row!(
                    row * 2,
                    widen2_rows(src, stride, src_row, z, dst, gap, rows, cols)
                )
            }
        }

        #[inline]
        fn column(
            &self,
            plane: &[i16],
            row: usize,
            x: usize,
            w: &[u32; 5],
            bias: i32,
            turns: usize,
            out: &mut [i32],
        ) {
            assert!(turns >= 1 && out.len() >= 3 * turns);
            assert!(plane.len() >= (3 * turns + 1) * row + x + 4);
            let p = plane[x..].as_ptr();
            let out = out.as_mut_ptr();
            // SAFETY (every arm): the asserts above: `3 * turns + 2` rows of `row` values from
            // column `x`, each read at x..x+4 (the last row too: the plane's length), and
            // `3 * turns` outputs.
            unsafe { by_row!(row * 2, column(p, w, bias, turns, out)) }
        }
    }
}

/// Whether the column path may run in place (`ops::depthwise_conv2d::stream_lead`): one
/// band, and the output the input's shape, so that channel `c`'s outputs land exactly on
/// channel `c`'s inputs, all of which the plane holds before the first output is written.
pub const fn in_place(
    kernel_h: usize,
    kernel_w: usize,
    stride_h: usize,
    stride_w: usize,
    input: (usize, usize, usize),
    output: (usize, usize, usize),
) -> bool {
    scratch_bytes(kernel_h, kernel_w, stride_h, stride_w, output.0, output.1) > 0
        && output.0 <= BAND
        && input.0 == output.0
        && input.1 == output.1
        && input.2 == output.2
}

/// The column path of [`crate::graph::ops::depthwise_conv2d::run`] with the sweep `m`.
/// Returns `false` (writing nothing) when the op has no column path or `scratch` is too
/// short; the caller then tries the next kernel.
pub fn depthwise<M: Columns>(
    m: &M,
    n: &Node<'_>,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
) -> bool {
    depthwise_io(m, n, &mut Io::apart(input, output), scratch)
}

/// [`depthwise`] on any [`Io`]: in place (one window, input and output the same bytes) when
/// [`in_place`] holds — a channel's input rows are all widened into the plane before any of
/// its outputs is written, and its outputs are its inputs' bytes.
pub fn depthwise_io<M: Columns>(m: &M, n: &Node<'_>, io: &mut Io<'_>, scratch: &mut [i8]) -> bool {
    let (i, o, win) = (n.input.shape, n.output_info.shape, n.window);
    let need = scratch_bytes(
        win.kernel_h,
        win.kernel_w,
        win.stride_h,
        win.stride_w,
        o.h,
        o.w,
    );
    if need == 0 || scratch.len() < need || o.w == 0 {
        return false;
    }
    let (_, words, _) = bytemuck::pod_align_to_mut::<i8, u32>(scratch);
    let plane: &mut [i16] = bytemuck::cast_slice_mut(words);
    let s = win.stride_h;
    let pw = padded_width(s, o.w);
    let row = row_bytes(pw) / 2;
    let c = i.c;
    let z = n.input.quant.zero_point as i16;
    let (left, top) = (win.pad_left, win.pad_top);
    // Input columns that land in the plane (after `l` columns of left padding).
    let l = left.min(pw);
    let cols = i.w.min(pw - l);
    let mut accs = [0i32; BAND];
    let stride = o.w * c;
    let mut y0 = 0;
    while y0 < o.h {
        let rows = band(s, o.h - y0);
        let t = turns(rows);
        let plane_rows = plane_rows(s, rows);
        let gap = plane_rows * row;
        let planes = &mut plane[..PLANES * gap];
        // The padding (rows outside the input, columns left and right of it) is zero for
        // every channel: cleared once a band, each channel then overwrites the same values.
        planes.fill(0);
        // The band's padded rows s y0 .. s y0 + plane_rows that hold input rows.
        let first = top.saturating_sub(s * y0).min(plane_rows);
        let last = (top + i.h).saturating_sub(s * y0).clamp(first, plane_rows);
        let mut ch = 0;
        while ch < c {
            // Two channels a turn (the last alone when C is odd): both widened, then each
            // swept from its plane.
            let pair = ch + 1 < c;
            if last > first {
                let from = (s * y0 + first - top) * i.w * c + ch;
                let src = io.input(from..io.input_len());
                let dst = &mut planes[first * row + l..];
                if pair {
                    m.widen2(src, c, i.w * c, z, dst, gap, row, last - first, cols);
                } else {
                    m.widen(src, c, i.w * c, z, dst, row, last - first, cols);
                }
            }
            for (j, plane) in planes.chunks_exact(gap).take(1 + pair as usize).enumerate() {
                let ch = ch + j;
                let wt: [i8; 9] = core::array::from_fn(|k| n.weights[k * c + ch]);
                let w = pack(wt);
                let bias = n.channels.bias(ch);
                let rq = Rescale::new(n, ch);
                let base = y0 * stride + ch;
                let out = io.output(base..base + (rows - 1) * stride + (o.w - 1) * c + 1);
                match rq {
                    Rescale::Fused(q) if q.hi == i8::MAX as i32 && s == 1 => {
                        let a = &mut accs;
                        m.columns_fused(plane, row, o.w, &w, bias, t, a, &q, rows, out, c, stride);
                    }
                    Rescale::Fused(q) if q.hi == i8::MAX as i32 => {
                        let a = &mut accs;
                        m.columns2_fused(plane, row, o.w, &w, bias, a, &q, rows, out, c, stride);
                    }
                    _ => {
                        for x in 0..o.w {
                            if s == 1 {
                                m.column(plane, row, x, &w, bias, t, &mut accs);
                            } else {
                                m.column2(plane, row, x, &w, bias, rows, &mut accs);
                            }
                            rq.apply_column(n, &accs[..rows], ch, &mut out[x * c..], stride);
                        }
                    }
                }
            }
            ch += 1 + pair as usize;
        }
        y0 += rows;
    }
    true
}
