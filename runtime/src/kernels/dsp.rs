//! The multiply-accumulate building blocks of the blocked kernels ([`super::blocked`]), in two
//! implementations that compute exactly the same thing:
//!
//! * [`Emulated`]: portable Rust, a lane-by-lane model of the instructions. It runs everywhere;
//!   the host tests drive the blocked kernels through it against the scalar references.
//! * `Asm` (only with `cfg(tinyconv_dsp)`, i.e. Armv7E-M such as the Cortex-M4): the same
//!   loops written with the DSP extension's `SXTB16` (two int8 lanes sign-extended to int16)
//!   and `SMLAD` (two 16x16 products added to an accumulator) in `core::arch::asm!`.
//!
//! This is the only module of the runtime with `unsafe` code, and it is here because a
//! measurement showed it pays: on the Cortex-M4 (QEMU, instructions counted with
//! `-icount shift=0`) the portable kernels take 61.3 M instructions per inference of the seed
//! network, the blocked kernels with these blocks 7.80 M (7.90 M in the smallest arena plan,
//! whose lean passes and row widening are blocks of their own: without them 8.27 M;
//! docs/performance.md). LLVM does not
//! form SMLAD/SXTB16 from portable code on its own.
//!
//! ## Data layout
//!
//! Weights stay as they are in the model (int8, OHWI, in flash). Activations are *widened*
//! into a scratch buffer as int16 values `x - zero_point`, four input channels (a "group") at a
//! time in the order `[x0, x2, x1, x3]`: a word load then gives the lanes `(x0, x2)` and the
//! next `(x1, x3)`, which are exactly the lanes `SXTB16 w` and `SXTB16 w, ROR #8` extract from
//! the weight word `[w0 w1 w2 w3]`. So two `SMLAD`s make the exact 4-term dot product
//! `w0*x0 + w1*x1 + w2*x2 + w3*x3` (no int32 overflow is possible: [`crate::Model::parse`]
//! bounds every accumulator).
//!
//! A *patch* is the widened input of one tile of 2x4 output pixels of a 3x3 convolution:
//! [`PATCH_ROWS`] x [`PATCH_COLS`] cells, stored group-major: `[group][row][col][4 x i16]`, so
//! one group of the whole patch is [`GROUP_STRIDE`] bytes. Then the 8 output pixels of all 9
//! taps of a group read cells at constant byte offsets ([`tap_offset`]) from one pointer,
//! whatever the channel count, and `LDRD`'s immediate offsets reach all of them.

/// Rows and columns of cells in a patch: 2 output rows and 4 output columns, plus the 3x3
/// kernel's border.
pub const PATCH_ROWS: usize = 4;
pub const PATCH_COLS: usize = 6;
/// int16 values in one cell (one group of four channels).
pub const CELL: usize = 4;
/// int16 values of one group of a whole patch.
pub const GROUP_HALVES: usize = PATCH_ROWS * PATCH_COLS * CELL;
/// Bytes of one group of a whole patch.
pub const GROUP_STRIDE: usize = GROUP_HALVES * 2;
/// Output pixels of a tile: 2 rows x 4 columns, row-major.
pub const TILE_PIXELS: usize = 8;

/// Byte offset of the cell that output pixel `p` reads at tap (`ty`, `tx`) within one group
/// of a patch.
pub const fn tap_offset(ty: usize, tx: usize, p: usize) -> usize {
    ((ty + p / 4) * PATCH_COLS + tx + p % 4) * CELL * 2
}

/// Halves of a prepared single-channel filter (see [`Mac::quad`]): per kernel row `ky`, the
/// pairs `(w0, w1), (w2, 0), (0, w0), (w1, w2)` of its three weights.
pub const QUAD_FILTER: usize = 24;

/// Writes the prepared single-channel filter of the 3x3 weights `f` (row-major) into `out`.
pub fn prepare_quad_filter(f: &[i8], out: &mut [i16]) {
    for ky in 0..3 {
        let [w0, w1, w2] = [f[3 * ky], f[3 * ky + 1], f[3 * ky + 2]].map(i16::from);
        out[8 * ky..8 * ky + 8].copy_from_slice(&[w0, w1, w2, 0, 0, w0, w1, w2]);
    }
}

/// The building blocks. `patch` is a widened patch (layout above), `w` int8 weights.
pub trait Mac {
    /// A 3x3 tile from zero, whole filters: [`Mac::tile_onto`] with `acc` zero and
    /// `stride == groups`.
    fn tile(&self, patch: &[i16], w: &[i8], groups: usize) -> [i32; TILE_PIXELS] {
        let mut acc = [0; TILE_PIXELS];
        self.tile_onto(&mut acc, patch, w, groups, groups);
        acc
    }

    /// A 3x3 tile: adds to `acc[p]` the products of output pixel `p` over the 9 taps of
    /// `groups` groups each: tap (`ty`, `tx`), group `g` reads the cell at row `ty + p / 4`,
    /// column `tx + p % 4` of group `g`, and the 4 weights at
    /// `w[((ty * 3 + tx) * stride + g) * 4..]`: OHWI weights of a filter with `stride` groups,
    /// `w` starting at the first group of this call (`stride == groups` for a whole filter, more
    /// for one pass of the lean tile). Needs `1 <= groups <= stride`,
    /// `patch.len() >= groups * GROUP_HALVES`, `w.len() >= (8 * stride + groups) * 4`.
    fn tile_onto(
        &self,
        acc: &mut [i32; TILE_PIXELS],
        patch: &[i16],
        w: &[i8],
        groups: usize,
        stride: usize,
    );

    /// A 2x2 block of a single-channel 3x3 convolution from zero: `img` is the widened, padded
    /// image with rows of `stride` values (`stride` even), `at` (even) the index of the block's
    /// top-left input value; `w` the prepared filter ([`prepare_quad_filter`]). Returns the
    /// outputs (row 0 col 0, row 0 col 1, row 1 col 0, row 1 col 1): output (`r`, `c`) is
    /// `sum_{ky,kx} w[ky][kx] * img[at + (r + ky) * stride + c + kx]`. Reads the 4x4 values
    /// at `at + i * stride + j` (`i, j < 4`). Needs `at + 3 * stride + 4 <= img.len()`,
    /// `w.len() >= QUAD_FILTER`.
    fn quad(&self, img: &[i16], stride: usize, at: usize, w: &[i16]) -> [i32; 4];

    /// Dense rows: `acc[i] += sum_j w[i * n + j] * x_j` for `i < acc.len() <= 4`, where `x` holds
    /// `n` widened values (`n / 4` groups). Needs `n % 4 == 0`, `x.len() >= n`,
    /// `w.len() >= acc.len() * n`.
    fn dense(&self, acc: &mut [i32], x: &[i16], w: &[i8], n: usize);

    /// One lean pass for `sums.len() / 8` consecutive output channels: channel `i`'s filter
    /// starts `9 * stride * 4` bytes after channel `i - 1`'s in `w`, and [`Mac::tile_onto`]
    /// adds its `groups` groups onto `sums[8 * i..8 * i + 8]`.
    fn tile_pass(&self, sums: &mut [i32], patch: &[i16], w: &[i8], groups: usize, stride: usize) {
        let filter = 36 * stride;
        for (i, acc) in sums.chunks_exact_mut(TILE_PIXELS).enumerate() {
            let acc: &mut [i32; TILE_PIXELS] = acc.try_into().unwrap();
            self.tile_onto(acc, patch, &w[i * filter..], groups, stride);
        }
    }

    /// Widens the cells of `cells` input pixels `pixel_stride` bytes apart in `x` (e.g. one
    /// patch row): `groups` groups of four int8 values of pixel `k` ([`widen_group`] each, zero
    /// point `z`), group `g` to `out[g * GROUP_HALVES + k * CELL..][..4]`. Needs
    /// `x.len() >= (cells - 1) * pixel_stride + 4 * groups`, `pixel_stride >= 4 * groups` and
    /// `out` long enough, when `cells, groups > 0`.
    fn widen_cells(
        &self,
        x: &[i8],
        pixel_stride: usize,
        cells: usize,
        z: i16,
        out: &mut [i16],
        groups: usize,
    ) {
        for k in 0..cells {
            for g in 0..groups {
                let v = &x[k * pixel_stride + 4 * g..][..4];
                let at = g * GROUP_HALVES + k * CELL;
                widen_group([v[0], v[1], v[2], v[3]], z, &mut out[at..at + 4]);
            }
        }
    }
}

/// Writes the widened group `[x0 - z, x2 - z, x1 - z, x3 - z]` of four int8 values.
#[inline(always)]
pub fn widen_group(x: [i8; 4], zero_point: i16, out: &mut [i16]) {
    out[0] = x[0] as i16 - zero_point;
    out[1] = x[2] as i16 - zero_point;
    out[2] = x[1] as i16 - zero_point;
    out[3] = x[3] as i16 - zero_point;
}

/// `SMLAD acc, a, b`: `acc + a.lo * b.lo + a.hi * b.hi` (wrapping, like the instruction).
#[inline(always)]
fn smlad(acc: i32, a: [i16; 2], b: [i16; 2]) -> i32 {
    acc.wrapping_add(a[0] as i32 * b[0] as i32)
        .wrapping_add(a[1] as i32 * b[1] as i32)
}

/// One group: `SXTB16` of the weight word and its `ROR #8`, two `SMLAD`s against the cell.
#[inline(always)]
fn group(acc: i32, w: &[i8], cell: &[i16]) -> i32 {
    let w02 = [w[0] as i16, w[2] as i16];
    let w13 = [w[1] as i16, w[3] as i16];
    let acc = smlad(acc, w02, [cell[0], cell[1]]);
    smlad(acc, w13, [cell[2], cell[3]])
}

/// The portable model of the DSP blocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Emulated;

impl Mac for Emulated {
    fn tile_onto(
        &self,
        acc: &mut [i32; TILE_PIXELS],
        patch: &[i16],
        w: &[i8],
        groups: usize,
        stride: usize,
    ) {
        for g in 0..groups {
            for ty in 0..3 {
                for tx in 0..3 {
                    let wi = ((ty * 3 + tx) * stride + g) * 4;
                    let ws = &w[wi..wi + 4];
                    for (p, a) in acc.iter_mut().enumerate() {
                        let at = g * GROUP_HALVES + tap_offset(ty, tx, p) / 2;
                        *a = group(*a, ws, &patch[at..at + CELL]);
                    }
                }
            }
        }
    }

    fn quad(&self, img: &[i16], stride: usize, at: usize, w: &[i16]) -> [i32; 4] {
        let mut acc = [0i32; 4];
        for (o, a) in acc.iter_mut().enumerate() {
            let (r, c) = (o / 2, o % 2);
            for ky in 0..3 {
                // Two SMLADs: the pairs of filter row `ky` for output column `c` against the
                // input pairs (x0, x1), (x2, x3) of the input row.
                let x = &img[at + (r + ky) * stride..][..4];
                let f = &w[8 * ky + 4 * c..][..4];
                *a = smlad(*a, [f[0], f[1]], [x[0], x[1]]);
                *a = smlad(*a, [f[2], f[3]], [x[2], x[3]]);
            }
        }
        acc
    }

    fn dense(&self, acc: &mut [i32], x: &[i16], w: &[i8], n: usize) {
        for (i, a) in acc.iter_mut().enumerate() {
            for g in 0..n / 4 {
                *a = group(*a, &w[i * n + 4 * g..], &x[4 * g..4 * g + 4]);
            }
        }
    }
}

#[cfg(tinyconv_dsp)]
pub use asm::Asm;
#[cfg(tinyconv_dsp)]
pub(crate) use asm::{dense2_row, dense2_step, dense2_steps};

/// The row length from which the Cortex-M4's [`Mac::dense`] takes rows in pairs rather than
/// four at a time (counting the instructions of both, the crossover is near 48).
pub const DENSE_PAIRS_MIN: usize = 64;

#[cfg(tinyconv_dsp)]
#[allow(unsafe_code)]
mod asm {
    //! The Cortex-M4 versions. Register budget: the tile blocks keep 8 accumulators, the
    //! activation and weight pointers, two activation words and two weight words live: 14
    //! registers. LLVM may allocate r0-r6, r8-r12 and lr to operands (13); the 14th is r7 (the
    //! Thumb frame pointer, which asm! cannot name as an operand), saved and restored inside
    //! each block. Nothing here calls or returns through r7, so a debugger walking frames while
    //! a block runs sees a stale frame pointer for a few hundred instructions; nothing else does.

    use super::{
        CELL, DENSE_PAIRS_MIN, GROUP_HALVES, GROUP_STRIDE, Mac, PATCH_COLS, QUAD_FILTER,
        TILE_PIXELS,
    };
    use core::arch::asm;

    /// The DSP blocks.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Asm;

    // ---- 3x3 tiles, group-major: one group's 9 taps at constant offsets ----
    //
    // Within one group of the patch, output pixel `p` reads at tap (ty, tx) the cell at byte
    // offset (ty * 6 + tx) * 8 (the tap's base: 0, 8, 16, 48, 56, 64, 96, 104, 112) plus the
    // pixel's offset (0, 8, 16, 24, 48, 56, 64, 72): all immediates of LDRD. The weights of a
    // group's tap t are at t * 4G bytes (OHWI), an immediate of LDR for a constant G. So a
    // group is 9 x 27 = 243 straight instructions; the last load of the group (tap 0,
    // pixel 0) post-increments {act} to the next group, the last weight load (tap 0)
    // post-increments {w} by 4.

    // One pixel `$p` of a tap at base `$b`: the cell's LDRD, two SMLADs (or SMUAD + SMLAD to
    // start the accumulator from zero: `first`).
    macro_rules! px {
        (acc, $p:literal, $b:literal, $o:literal) => {
            concat!(
                "ldrd {x0}, {x1}, [{act}, #(",
                $b,
                "+",
                $o,
                ")]\n",
                "smlad {a",
                $p,
                "}, {w02}, {x0}, {a",
                $p,
                "}\n",
                "smlad {a",
                $p,
                "}, r7, {x1}, {a",
                $p,
                "}\n",
            )
        };
        (first, $p:literal, $b:literal, $o:literal) => {
            concat!(
                "ldrd {x0}, {x1}, [{act}, #(",
                $b,
                "+",
                $o,
                ")]\n",
                "smuad {a",
                $p,
                "}, {w02}, {x0}\n",
                "smlad {a",
                $p,
                "}, r7, {x1}, {a",
                $p,
                "}\n",
            )
        };
    }

    // Tap `$t` (1..=8) at base `$b`: the weight word, SXTB16 twice, the 8 pixels.
    macro_rules! tap {
        ($m:ident, $t:literal, $b:literal) => {
            concat!(
                "ldr r7, [{w}, #(",
                $t,
                "*{g4})]\n",
                "sxtb16 {w02}, r7\n",
                "sxtb16 r7, r7, ror #8\n",
                px!($m, 0, $b, 0),
                px!($m, 1, $b, 8),
                px!($m, 2, $b, 16),
                px!($m, 3, $b, 24),
                px!($m, 4, $b, 48),
                px!($m, 5, $b, 56),
                px!($m, 6, $b, 64),
                px!($m, 7, $b, 72),
            )
        };
    }

    // Tap 0, last of the group: post-increments {w} by 4 and {act} by one group (192 bytes).
    macro_rules! tap0 {
        () => {
            concat!(
                "ldr r7, [{w}], #4\n",
                "sxtb16 {w02}, r7\n",
                "sxtb16 r7, r7, ror #8\n",
                px!(acc, 1, 0, 8),
                px!(acc, 2, 0, 16),
                px!(acc, 3, 0, 24),
                px!(acc, 4, 0, 48),
                px!(acc, 5, 0, 56),
                px!(acc, 6, 0, 64),
                px!(acc, 7, 0, 72),
                "ldrd {x0}, {x1}, [{act}], #192\n",
                "smlad {a0}, {w02}, {x0}, {a0}\n",
                "smlad {a0}, r7, {x1}, {a0}\n",
            )
        };
    }

    // One group: taps 1..=8, then tap 0. `first` starts the accumulators (at tap 1).
    macro_rules! group {
        ($m:ident) => {
            concat!(
                tap!($m, 1, 8),
                tap!(acc, 2, 16),
                tap!(acc, 3, 48),
                tap!(acc, 4, 56),
                tap!(acc, 5, 64),
                tap!(acc, 6, 96),
                tap!(acc, 7, 104),
                tap!(acc, 8, 112),
                tap0!(),
            )
        };
    }
    const _: () = assert!(GROUP_STRIDE == 192 && PATCH_COLS == 6);
    const _: () =
        assert!(super::tap_offset(2, 2, 7) == 112 + 72 && super::tap_offset(1, 0, 4) == 96);

    /// A whole tile of `G` groups from zero, straight-line code (`G * 243` instructions + 2;
    /// the first tap starts the accumulators with SMUAD, so no register is zeroed).
    ///
    /// # Safety
    /// `act` must point to `G * GROUP_HALVES` readable int16 values (a patch, 4-byte aligned),
    /// `w` to `9 * G * 4` readable bytes (4-byte aligned); `1 <= G <= 100`.
    #[inline(always)]
    unsafe fn tile_unrolled<const G: usize>(act: *const i16, w: *const i8) -> [i32; TILE_PIXELS] {
        let (a0, a1, a2, a3, a4, a5, a6, a7);
        // SAFETY: group g reads the patch at g * 192 + 0..192 bytes and the weights at
        // (t * G + g) * 4 + 0..4 for taps t < 9: in bounds and aligned by the caller's
        // guarantee (immediate offsets t * 4G <= 3200 fit LDR's 12 bits). r7 is saved and
        // restored around its use; the flags are not used; no memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                group!(first),
                ".rept {rest}",
                group!(acc),
                ".endr",
                "pop {{r7}}",
                rest = const G - 1,
                g4 = const 4 * G,
                w = inout(reg) w => _,
                act = inout(reg) act => _,
                w02 = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                a0 = out(reg) a0,
                a1 = out(reg) a1,
                a2 = out(reg) a2,
                a3 = out(reg) a3,
                a4 = out(reg) a4,
                a5 = out(reg) a5,
                a6 = out(reg) a6,
                a7 = out(reg) a7,
                options(preserves_flags),
            );
        }
        [a0, a1, a2, a3, a4, a5, a6, a7]
    }

    /// `G` groups (`G` even) of a tile whose filter has `S` groups (the weights of tap `t` at
    /// `t * 4S`), onto `acc`, looping two groups an iteration (the counter lives on the stack:
    /// no register is free).
    ///
    /// # Safety
    /// `act` must point to `G * GROUP_HALVES` readable int16 values (4-byte aligned), `w` to
    /// `(8 * S + G) * 4` readable bytes (4-byte aligned); `G` even, `2 <= G <= S <= 100`.
    #[inline(always)]
    unsafe fn tile_looped<const G: usize, const S: usize>(
        acc: [i32; TILE_PIXELS],
        act: *const i16,
        w: *const i8,
    ) -> [i32; TILE_PIXELS] {
        let [
            mut a0,
            mut a1,
            mut a2,
            mut a3,
            mut a4,
            mut a5,
            mut a6,
            mut a7,
        ] = acc;
        // SAFETY: as for `tile_unrolled` (the same reads, G / 2 iterations of two groups).
        // 4 bytes of stack hold the counter and are released before the block ends; r7 is
        // saved and restored; the flags are clobbered; no other memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                "movs r7, #{iters}",
                "push {{r7}}",
                "1:",
                group!(acc),
                group!(acc),
                "ldr r7, [sp]",
                "subs r7, r7, #1",
                "str r7, [sp]",
                "bne 1b",
                "add sp, sp, #4",
                "pop {{r7}}",
                iters = const G / 2,
                g4 = const 4 * S,
                w = inout(reg) w => _,
                act = inout(reg) act => _,
                w02 = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                a4 = inout(reg) a4,
                a5 = inout(reg) a5,
                a6 = inout(reg) a6,
                a7 = inout(reg) a7,
            );
        }
        [a0, a1, a2, a3, a4, a5, a6, a7]
    }

    // ---- 3x3 tiles, tap-major, any group count (the fallback) ----

    // One group of a tap: the weight word into r7 and {w02}, 8 LDRDs at the pixel offsets
    // (the last one post-increments the patch pointer to the next group), 16 SMLADs.
    macro_rules! tap_group {
        () => {
            concat!(
                "ldr r7, [{w}], #4\n",
                "sxtb16 {w02}, r7\n",
                "sxtb16 r7, r7, ror #8\n",
                px!(acc, 1, 0, 8),
                px!(acc, 2, 0, 16),
                px!(acc, 3, 0, 24),
                px!(acc, 4, 0, 48),
                px!(acc, 5, 0, 56),
                px!(acc, 6, 0, 64),
                px!(acc, 7, 0, 72),
                "ldrd {x0}, {x1}, [{act}], #192\n",
                "smlad {a0}, {w02}, {x0}, {a0}\n",
                "smlad {a0}, r7, {x1}, {a0}\n",
            )
        };
    }

    /// A 3x3 tile for run-time group counts (`1 <= groups <= stride < 65536`; the weights of
    /// tap `t` at `t * 4 * stride`), onto `acc`: the 9 taps unrolled, each looping over its
    /// groups 4 at a time then one at a time. No register is free for the counters, so they
    /// live on the stack: `[sp]` the running count, `[sp, #4]` the 4-group chunks a tap,
    /// `[sp, #8]` the single groups, `[sp, #12]` how far to step the patch back after a tap
    /// (`groups * GROUP_STRIDE - 8`), `[sp, #16]` how far to step the weights on
    /// (`(stride - groups) * 4`); r7 is saved at `[sp, #20]`.
    ///
    /// # Safety
    /// As [`tile_looped`] with `G = groups`, `S = stride`.
    #[inline(always)]
    unsafe fn tile_3x3(
        acc: [i32; TILE_PIXELS],
        act: *const i16,
        w: *const i8,
        groups: usize,
        stride: usize,
    ) -> [i32; TILE_PIXELS] {
        let [
            mut a0,
            mut a1,
            mut a2,
            mut a3,
            mut a4,
            mut a5,
            mut a6,
            mut a7,
        ] = acc;
        // One register for both counts: 13 are all there are.
        let counts = (groups / 4) | (groups % 4) << 16;
        let back = groups * GROUP_STRIDE - 8;
        let skip = (stride - groups) * 4;
        // SAFETY: `groups` groups of each of the 9 taps are read, which the caller guarantees
        // are readable and aligned. 24 bytes of stack are used and released before the block
        // ends; r7 is saved and restored; no other memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                "push {{{skip}}}",
                "push {{{back}}}",
                "lsrs r7, {counts}, #16",
                "push {{r7}}",
                "uxth r7, {counts}",
                "push {{r7}}",
                "sub sp, sp, #4",
                ".rept 3",
                ".rept 3",
                "ldr r7, [sp, #4]",
                "str r7, [sp]",
                "cmp r7, #0",
                "beq 2f",
                "1:",
                tap_group!(),
                tap_group!(),
                tap_group!(),
                tap_group!(),
                "ldr r7, [sp]",
                "subs r7, r7, #1",
                "str r7, [sp]",
                "bne 1b",
                "2:",
                "ldr r7, [sp, #8]",
                "str r7, [sp]",
                "cmp r7, #0",
                "beq 4f",
                "3:",
                tap_group!(),
                "ldr r7, [sp]",
                "subs r7, r7, #1",
                "str r7, [sp]",
                "bne 3b",
                "4:",
                "ldr r7, [sp, #12]",
                "sub {act}, {act}, r7",
                "ldr r7, [sp, #16]",
                "add {w}, {w}, r7",
                ".endr",
                "add {act}, {act}, #24",
                ".endr",
                "add sp, sp, #20",
                "pop {{r7}}",
                counts = in(reg) counts,
                back = in(reg) back,
                skip = in(reg) skip,
                w = inout(reg) w => _,
                act = inout(reg) act => _,
                w02 = lateout(reg) _,
                x0 = lateout(reg) _,
                x1 = lateout(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                a4 = inout(reg) a4,
                a5 = inout(reg) a5,
                a6 = inout(reg) a6,
                a7 = inout(reg) a7,
            );
        }
        [a0, a1, a2, a3, a4, a5, a6, a7]
    }

    // ---- single-channel 3x3, 2x2 output block ----

    /// See [`Mac::quad`]. Input rows 0..4 of the block are loaded once each (one LDRD: four
    /// int16 values), row `i` feeding output row 0 with filter row `i` and output row 1 with
    /// filter row `i - 1`; the filter pairs come two words at a time. 4 + 6 LDRD, 3 ADD,
    /// 24 SMUAD/SMLAD: 37 instructions for 36 MACs.
    ///
    /// # Safety
    /// `img` must point to a readable int16 value with `img + 3 * stride_bytes + 8` bytes
    /// readable, 4-byte aligned, `stride_bytes` a multiple of 4; `w` to [`QUAD_FILTER`]
    /// readable int16 values, 4-byte aligned.
    #[inline(always)]
    unsafe fn quad(img: *const i16, stride_bytes: usize, w: *const i16) -> [i32; 4] {
        let (a0, a1, a2, a3);
        // SAFETY: reads 8 bytes at img + i * stride_bytes for i < 4 and the 48 bytes at w,
        // in bounds and aligned by the caller's guarantee; no memory is written, no stack
        // used, the flags are not touched.
        unsafe {
            asm!(
                // Rows 0 (x) and 1 (y); filter row 0.
                "ldrd {x0}, {x1}, [{img}]",
                "add {img}, {img}, {stride}",
                "ldrd {y0}, {y1}, [{img}]",
                "add {img}, {img}, {stride}",
                "ldrd {v0}, {v1}, [{w}]",
                "smuad {a0}, {v0}, {x0}",
                "smlad {a0}, {v1}, {x1}, {a0}",
                "smuad {a2}, {v0}, {y0}",
                "smlad {a2}, {v1}, {y1}, {a2}",
                "ldrd {v0}, {v1}, [{w}, #8]",
                "smuad {a1}, {v0}, {x0}",
                "smlad {a1}, {v1}, {x1}, {a1}",
                "smuad {a3}, {v0}, {y0}",
                "smlad {a3}, {v1}, {y1}, {a3}",
                // Row 2 into x; filter row 1: output row 0 with row 1 (y), row 1 with row 2.
                "ldrd {x0}, {x1}, [{img}]",
                "add {img}, {img}, {stride}",
                "ldrd {v0}, {v1}, [{w}, #16]",
                "smlad {a0}, {v0}, {y0}, {a0}",
                "smlad {a0}, {v1}, {y1}, {a0}",
                "smlad {a2}, {v0}, {x0}, {a2}",
                "smlad {a2}, {v1}, {x1}, {a2}",
                "ldrd {v0}, {v1}, [{w}, #24]",
                "smlad {a1}, {v0}, {y0}, {a1}",
                "smlad {a1}, {v1}, {y1}, {a1}",
                "smlad {a3}, {v0}, {x0}, {a3}",
                "smlad {a3}, {v1}, {x1}, {a3}",
                // Row 3 into y; filter row 2: output row 0 with row 2 (x), row 1 with row 3.
                "ldrd {y0}, {y1}, [{img}]",
                "ldrd {v0}, {v1}, [{w}, #32]",
                "smlad {a0}, {v0}, {x0}, {a0}",
                "smlad {a0}, {v1}, {x1}, {a0}",
                "smlad {a2}, {v0}, {y0}, {a2}",
                "smlad {a2}, {v1}, {y1}, {a2}",
                "ldrd {v0}, {v1}, [{w}, #40]",
                "smlad {a1}, {v0}, {x0}, {a1}",
                "smlad {a1}, {v1}, {x1}, {a1}",
                "smlad {a3}, {v0}, {y0}, {a3}",
                "smlad {a3}, {v1}, {y1}, {a3}",
                img = inout(reg) img => _,
                stride = in(reg) stride_bytes,
                w = in(reg) w,
                x0 = out(reg) _,
                x1 = out(reg) _,
                y0 = out(reg) _,
                y1 = out(reg) _,
                v0 = out(reg) _,
                v1 = out(reg) _,
                a0 = out(reg) a0,
                a1 = out(reg) a1,
                a2 = out(reg) a2,
                a3 = out(reg) a3,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        [a0, a1, a2, a3]
    }
    const _: () = assert!(QUAD_FILTER * 2 == 48);

    // ---- dense ----

    // One dense group for the weight pointer {wN} into accumulator {aN}: 5 instructions.
    macro_rules! dense_row {
        ($w:literal, $a:literal) => {
            concat!(
                "ldr r7, [{",
                $w,
                "}], #4\n",
                "sxtb16 {t}, r7\n",
                "sxtb16 r7, r7, ror #8\n",
                "smlad {",
                $a,
                "}, {t}, {x0}, {",
                $a,
                "}\n",
                "smlad {",
                $a,
                "}, r7, {x1}, {",
                $a,
                "}\n",
            )
        };
    }

    macro_rules! dense4_group {
        () => {
            concat!(
                "ldrd {x0}, {x1}, [{x}], #8\n",
                dense_row!("w0", "a0"),
                dense_row!("w1", "a1"),
                dense_row!("w2", "a2"),
                dense_row!("w3", "a3"),
            )
        };
    }

    /// Four dense rows at once: per group one LDRD of activations shared by the four rows
    /// (21 instructions per 16 MACs), four groups an iteration, then the remaining groups one
    /// at a time.
    ///
    /// # Safety
    /// `x` must point to `groups * 4` readable int16 values (4-byte aligned), `w0..w3` each to
    /// `groups * 4` readable bytes (4-byte aligned); `groups >= 1`.
    #[inline(always)]
    unsafe fn dense4(acc: &mut [i32; 4], x: *const i16, w: [*const i8; 4], groups: usize) {
        let [mut a0, mut a1, mut a2, mut a3] = *acc;
        // SAFETY: `groups` groups are read through each pointer, readable and aligned by the
        // caller's guarantee; r7 is saved and restored; no memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                "subs {n}, {n}, #4",
                "blo 2f",
                "1:",
                dense4_group!(),
                dense4_group!(),
                dense4_group!(),
                dense4_group!(),
                "subs {n}, {n}, #4",
                "bhs 1b",
                "2:",
                "adds {n}, {n}, #4",
                "beq 4f",
                "3:",
                dense4_group!(),
                "subs {n}, {n}, #1",
                "bne 3b",
                "4:",
                "pop {{r7}}",
                n = inout(reg) groups => _,
                x = inout(reg) x => _,
                w0 = inout(reg) w[0] => _,
                w1 = inout(reg) w[1] => _,
                w2 = inout(reg) w[2] => _,
                w3 = inout(reg) w[3] => _,
                t = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
            );
        }
        *acc = [a0, a1, a2, a3];
    }

    // One row's half of a two-row step: 8 weights (LDRD) against the 8 activations in r0-r3
    // (cells `[x0 x2] [x1 x3]`, then the next cell): 9 instructions per 8 MACs.
    macro_rules! dense2_row {
        ($w:literal, $a:literal) => {
            concat!(
                "ldrd {p}, {q}, [{",
                $w,
                "}], #8\n",
                "sxtb16 r7, {p}\n",
                "sxtb16 {p}, {p}, ror #8\n",
                "smlad {",
                $a,
                "}, r7, r0, {",
                $a,
                "}\n",
                "smlad {",
                $a,
                "}, {p}, r1, {",
                $a,
                "}\n",
                "sxtb16 r7, {q}\n",
                "sxtb16 {q}, {q}, ror #8\n",
                "smlad {",
                $a,
                "}, r7, r2, {",
                $a,
                "}\n",
                "smlad {",
                $a,
                "}, {q}, r3, {",
                $a,
                "}\n",
            )
        };
    }

    // One step of two rows: 8 activations (two cells) in one LDM, shared by both rows: 19
    // instructions per 16 MACs.
    macro_rules! dense2_step {
        () => {
            concat!(
                "ldm {x}!, {{r0, r1, r2, r3}}\n",
                dense2_row!("wa", "a0"),
                dense2_row!("wb", "a1"),
            )
        };
    }

    // `{n}` steps: eight a turn, then one at a time (local labels 1 to 4).
    macro_rules! dense2_steps {
        () => {
            concat!(
                "subs {n}, {n}, #8\n",
                "blo 2f\n",
                "1:\n",
                dense2_step!(),
                dense2_step!(),
                dense2_step!(),
                dense2_step!(),
                dense2_step!(),
                dense2_step!(),
                dense2_step!(),
                dense2_step!(),
                "subs {n}, {n}, #8\n",
                "bhs 1b\n",
                "2:\n",
                "adds {n}, {n}, #8\n",
                "beq 4f\n",
                "3:\n",
                dense2_step!(),
                "subs {n}, {n}, #1\n",
                "bne 3b\n",
                "4:\n",
            )
        };
    }

    // The graph's dense kernel (`graph::kernels::dense`) runs the same steps.
    pub(crate) use {dense2_row, dense2_step, dense2_steps};

    /// Two dense rows at once: `steps` steps of 8 activations (LDM into r0-r3, fixed
    /// registers so that the list is in order) shared by the two rows, each loading its 8
    /// weights with one LDRD (19 instructions per 16 MACs, where four rows sharing 4
    /// activations took 21); eight steps a turn, then one at a time; then, when `tail`, one
    /// group of 4.
    ///
    /// # Safety
    /// `x` must point to `8 * steps + 4 * tail` readable int16 values, `wa` and `wb` each to
    /// as many readable bytes; all three 4-byte aligned; `8 * steps + 4 * tail >= 4`.
    #[inline(always)]
    unsafe fn dense2(
        acc: &mut [i32; 2],
        x: *const i16,
        wa: *const i8,
        wb: *const i8,
        steps: usize,
        tail: bool,
    ) {
        let [mut a0, mut a1] = *acc;
        // SAFETY: `8 * steps + 4 * tail` values are read through `x` (LDM, LDRD: aligned) and
        // as many bytes through `wa` and `wb` (LDRD, LDR: aligned), the caller's ranges; r7 is
        // saved and restored; the flags are clobbered; no memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                dense2_steps!(),
                "cmp {tail}, #0",
                "beq 5f",
                "ldrd r0, r1, [{x}]",
                "ldr {p}, [{wa}]",
                "ldr {q}, [{wb}]",
                "sxtb16 r7, {p}",
                "sxtb16 {p}, {p}, ror #8",
                "smlad {a0}, r7, r0, {a0}",
                "smlad {a0}, {p}, r1, {a0}",
                "sxtb16 r7, {q}",
                "sxtb16 {q}, {q}, ror #8",
                "smlad {a1}, r7, r0, {a1}",
                "smlad {a1}, {q}, r1, {a1}",
                "5:",
                "pop {{r7}}",
                n = inout(reg) steps => _,
                tail = in(reg) tail as u32,
                x = inout(reg) x => _,
                wa = inout(reg) wa => _,
                wb = inout(reg) wb => _,
                p = out(reg) _,
                q = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
            );
        }
        *acc = [a0, a1];
    }

    /// One dense row.
    ///
    /// # Safety
    /// `x` must point to `groups * 4` readable int16 values (4-byte aligned), `w0` to
    /// `groups * 4` readable bytes (any alignment); `groups >= 1`.
    #[inline(always)]
    unsafe fn dense1(acc: &mut i32, x: *const i16, w0: *const i8, groups: usize) {
        let mut a0 = *acc;
        // SAFETY: `groups` groups are read through each pointer, readable and aligned by the
        // caller's guarantee; r7 is saved and restored; no memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                "1:",
                "ldrd {x0}, {x1}, [{x}], #8",
                dense_row!("w0", "a0"),
                "subs {n}, {n}, #1",
                "bne 1b",
                "pop {{r7}}",
                n = inout(reg) groups => _,
                x = inout(reg) x => _,
                w0 = inout(reg) w0 => _,
                t = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                a0 = inout(reg) a0,
            );
        }
        *acc = a0;
    }

    /// See [`Mac::tile_pass`]: `channels` passes of `G` groups (filters of `S` groups), each
    /// loading its channel's 8 sums (4 LDRD), running the `G` groups as straight-line code,
    /// storing the sums back (4 STRD), then stepping the weights to the next filter and the
    /// patch back to its start. The sums pointer and the channel counter live on the stack:
    /// `[sp, #4]` the channels left, `[sp, #8]` the sums pointer (`[sp]` unused); r7 is saved at
    /// `[sp, #12]`. Code: `G * 243` instructions, so only the common pass widths have one.
    ///
    /// # Safety
    /// `sums` must point to `8 * channels` writable, word-aligned i32s, `act` as in
    /// [`tile_looped`], `w` to `(channels - 1) * 36 * S + (8 * S + G) * 4` readable bytes
    /// (word-aligned); `G` even, `2 <= G <= S`, `36 * S - 4 * G < 4096`, `192 * G < 4096`,
    /// `channels >= 1`.
    #[inline(always)]
    unsafe fn tile_pass<const G: usize, const S: usize>(
        sums: *mut i32,
        act: *const i16,
        w: *const i8,
        channels: usize,
    ) {
        // SAFETY: per channel the reads of `tile_looped` plus 32 bytes of sums read and
        // written, all inside the caller's guarantee; 12 bytes of stack are used and released;
        // r7 is saved and restored; the flags are clobbered.
        unsafe {
            asm!(
                "push {{r7}}",
                "push {{{sums}}}",
                "push {{{channels}}}",
                "sub sp, sp, #4",
                "2:",
                "ldr r7, [sp, #8]",
                "ldrd {a0}, {a1}, [r7]",
                "ldrd {a2}, {a3}, [r7, #8]",
                "ldrd {a4}, {a5}, [r7, #16]",
                "ldrd {a6}, {a7}, [r7, #24]",
                ".rept {groups}",
                group!(acc),
                ".endr",
                "ldr r7, [sp, #8]",
                "strd {a0}, {a1}, [r7]",
                "strd {a2}, {a3}, [r7, #8]",
                "strd {a4}, {a5}, [r7, #16]",
                "strd {a6}, {a7}, [r7, #24]",
                "adds r7, r7, #32",
                "str r7, [sp, #8]",
                "addw {w}, {w}, #{wstep}",
                "subw {act}, {act}, #{aback}",
                "ldr r7, [sp, #4]",
                "subs r7, r7, #1",
                "str r7, [sp, #4]",
                "bne 2b",
                "add sp, sp, #12",
                "pop {{r7}}",
                groups = const G,
                g4 = const 4 * S,
                wstep = const 36 * S - 4 * G,
                aback = const 192 * G,
                sums = in(reg) sums,
                channels = in(reg) channels,
                w = inout(reg) w => _,
                act = inout(reg) act => _,
                w02 = lateout(reg) _,
                x0 = lateout(reg) _,
                x1 = lateout(reg) _,
                a0 = lateout(reg) _,
                a1 = lateout(reg) _,
                a2 = lateout(reg) _,
                a3 = lateout(reg) _,
                a4 = lateout(reg) _,
                a5 = lateout(reg) _,
                a6 = lateout(reg) _,
                a7 = lateout(reg) _,
            );
        }
    }

    /// See [`Mac::widen_cells`]: per group one LDR, two SXTB16, two SSUB16 and one
    /// post-incrementing STRD to the next group's cell, and a step to the next pixel.
    ///
    /// # Safety
    /// As [`Mac::widen_cells`]' asserts: `x` readable for `(cells - 1) * pixel_stride +
    /// 4 * groups` bytes, `out` word-aligned and writable as described; `cells, groups >= 1`.
    #[inline(always)]
    unsafe fn widen_cells(
        x: *const i8,
        pixel_stride: usize,
        cells: usize,
        z: i16,
        out: *mut i16,
        groups: usize,
    ) {
        let z2 = (z as u16 as u32) * 0x0001_0001;
        let skip = pixel_stride - 4 * groups;
        let back = groups * GROUP_STRIDE - 2 * CELL;
        // SAFETY: as the caller guarantees; the flags are clobbered, no stack is used.
        unsafe {
            asm!(
                "1:",
                "mov {n}, {groups}",
                "2:",
                "ldr {v}, [{x}], #4",
                "sxtb16 {lo}, {v}",
                "sxtb16 {v}, {v}, ror #8",
                "ssub16 {lo}, {lo}, {z2}",
                "ssub16 {v}, {v}, {z2}",
                "strd {lo}, {v}, [{out}], #{gstride}",
                "subs {n}, {n}, #1",
                "bne 2b",
                "add {x}, {x}, {skip}",
                "sub {out}, {out}, {back}",
                "subs {cells}, {cells}, #1",
                "bne 1b",
                gstride = const GROUP_STRIDE,
                x = inout(reg) x => _,
                out = inout(reg) out => _,
                cells = inout(reg) cells => _,
                groups = in(reg) groups,
                skip = in(reg) skip,
                back = in(reg) back,
                z2 = in(reg) z2,
                n = out(reg) _,
                v = out(reg) _,
                lo = out(reg) _,
            );
        }
    }

    #[inline(always)]
    fn aligned4<T>(p: *const T) -> bool {
        (p as usize).is_multiple_of(4)
    }

    impl Mac for Asm {
        #[inline]
        fn tile(&self, patch: &[i16], w: &[i8], groups: usize) -> [i32; TILE_PIXELS] {
            // The bounds and alignment every block below relies on, checked once a tile.
            assert!(groups >= 1 && patch.len() >= groups * GROUP_HALVES && w.len() >= 36 * groups);
            assert!(aligned4(patch.as_ptr()) && aligned4(w.as_ptr()));
            let (act, wp) = (patch.as_ptr(), w.as_ptr());
            let zero = [0; TILE_PIXELS];
            // SAFETY (all calls): checked by the asserts above; the const group counts equal
            // `groups`.
            unsafe {
                match groups {
                    4 => tile_unrolled::<4>(act, wp),
                    8 => tile_looped::<8, 8>(zero, act, wp),
                    16 => tile_looped::<16, 16>(zero, act, wp),
                    32 => tile_looped::<32, 32>(zero, act, wp),
                    64 => tile_looped::<64, 64>(zero, act, wp),
                    _ => tile_3x3(zero, act, wp, groups, groups),
                }
            }
        }

        #[inline]
        fn tile_onto(
            &self,
            acc: &mut [i32; TILE_PIXELS],
            patch: &[i16],
            w: &[i8],
            groups: usize,
            stride: usize,
        ) {
            assert!(
                groups >= 1
                    && groups <= stride
                    && stride < 1 << 16
                    && patch.len() >= groups * GROUP_HALVES
                    && w.len() >= (8 * stride + groups) * 4
            );
            assert!(aligned4(patch.as_ptr()) && aligned4(w.as_ptr()));
            let (act, wp) = (patch.as_ptr(), w.as_ptr());
            // SAFETY (all calls): checked by the asserts above; the const group counts and
            // strides equal `groups` and `stride`.
            *acc = unsafe {
                match (groups, stride) {
                    // Lean passes (a quarter of the groups) of two more widths; 32 groups
                    // (conv3 of the seed network) has a whole-chunk block, `tile_pass`.
                    (4, 16) => tile_looped::<4, 16>(*acc, act, wp),
                    (16, 64) => tile_looped::<16, 64>(*acc, act, wp),
                    _ => tile_3x3(*acc, act, wp, groups, stride),
                }
            }
        }

        #[inline]
        fn quad(&self, img: &[i16], stride: usize, at: usize, w: &[i16]) -> [i32; 4] {
            assert!(at + 3 * stride + 4 <= img.len() && w.len() >= QUAD_FILTER);
            assert!(
                at.is_multiple_of(2)
                    && stride.is_multiple_of(2)
                    && aligned4(img.as_ptr())
                    && aligned4(w.as_ptr())
            );
            // SAFETY: the asserts above: the 4x4 values from `at` lie inside `img`, word
            // aligned (even indices of a word-aligned slice); the filter inside `w`.
            unsafe { quad(img.as_ptr().add(at), 2 * stride, w.as_ptr()) }
        }

        #[inline]
        fn tile_pass(
            &self,
            sums: &mut [i32],
            patch: &[i16],
            w: &[i8],
            groups: usize,
            stride: usize,
        ) {
            let channels = sums.len() / TILE_PIXELS;
            if channels == 0 {
                return;
            }
            assert!(
                groups >= 1
                    && groups <= stride
                    && patch.len() >= groups * GROUP_HALVES
                    && w.len() >= (channels - 1) * 36 * stride + (8 * stride + groups) * 4
            );
            assert!(aligned4(patch.as_ptr()) && aligned4(w.as_ptr()));
            let (s, act, wp) = (sums.as_mut_ptr(), patch.as_ptr(), w.as_ptr());
            // SAFETY (all calls): the asserts above: `channels` filters' passes lie inside `w`,
            // the patch inside `patch`, 8 sums a channel inside `sums` (word-aligned i32s).
            unsafe {
                // One width only: the block is `G * 243` straight instructions (7.8 KB of
                // flash for this one).
                match (groups, stride) {
                    (8, 32) => tile_pass::<8, 32>(s, act, wp, channels),
                    _ => {
                        let filter = 36 * stride;
                        for (i, acc) in sums.chunks_exact_mut(TILE_PIXELS).enumerate() {
                            let acc: &mut [i32; TILE_PIXELS] = acc.try_into().unwrap();
                            self.tile_onto(acc, patch, &w[i * filter..], groups, stride);
                        }
                    }
                }
            }
        }

        #[inline]
        fn widen_cells(
            &self,
            x: &[i8],
            pixel_stride: usize,
            cells: usize,
            z: i16,
            out: &mut [i16],
            groups: usize,
        ) {
            if cells == 0 || groups == 0 {
                return;
            }
            assert!(
                x.len() >= (cells - 1) * pixel_stride + 4 * groups && pixel_stride >= 4 * groups
            );
            assert!(
                out.len() >= (groups - 1) * GROUP_HALVES + (cells - 1) * CELL + 4
                    && aligned4(out.as_ptr())
            );
            // SAFETY: reads 4 * groups bytes at x + k * pixel_stride and writes 4 int16 values at
            // out + (g * GROUP_HALVES + k * CELL) for k < cells, g < groups: inside the slices,
            // word-aligned, as asserted above.
            unsafe { widen_cells(x.as_ptr(), pixel_stride, cells, z, out.as_mut_ptr(), groups) }
        }

        /// Four rows sharing each load of 4 activations ([`dense4`]) for short rows; from
        /// [`DENSE_PAIRS_MIN`] values, rows in pairs sharing each load of 8 ([`dense2`]: fewer
        /// instructions per MAC, twice the set-up per row).
        #[inline]
        fn dense(&self, acc: &mut [i32], x: &[i16], w: &[i8], n: usize) {
            assert!(
                n.is_multiple_of(4) && x.len() >= n && w.len() >= acc.len() * n && acc.len() <= 4
            );
            assert!(aligned4(x.as_ptr()) && aligned4(w.as_ptr()));
            if n == 0 {
                return;
            }
            let (xp, wp) = (x.as_ptr(), w.as_ptr());
            if n >= DENSE_PAIRS_MIN {
                let (steps, tail) = (n / 8, !n.is_multiple_of(8));
                let last = acc.len() - 1;
                let mut pairs = acc.chunks_exact_mut(2);
                for (i, pair) in (&mut pairs).enumerate() {
                    let pair: &mut [i32; 2] = pair.try_into().unwrap();
                    // SAFETY: rows 2i and 2i + 1 (`n` bytes each, at multiples of `n`: 4-byte
                    // aligned since n % 4 == 0) lie inside `w`; `n` widened values inside `x`
                    // (asserted above).
                    unsafe {
                        let wa = wp.add(2 * i * n);
                        dense2(pair, xp, wa, wa.add(n), steps, tail)
                    }
                }
                if let [a] = pairs.into_remainder() {
                    // SAFETY: row `last` lies inside `w`, as asserted above.
                    unsafe { dense1(a, xp, wp.add(last * n), n / 4) }
                }
            } else if let Ok(acc4) = <&mut [i32; 4]>::try_from(&mut *acc) {
                // SAFETY: four rows of `n` bytes at multiples of `n` (4-byte aligned since
                // n % 4 == 0) lie inside `w`; `n` widened values inside `x` (asserted above).
                unsafe {
                    dense4(
                        acc4,
                        xp,
                        [wp, wp.add(n), wp.add(2 * n), wp.add(3 * n)],
                        n / 4,
                    )
                }
            } else {
                for (i, a) in acc.iter_mut().enumerate() {
                    // SAFETY: row `i < acc.len()` lies inside `w`, as asserted above.
                    unsafe { dense1(a, xp, wp.add(i * n), n / 4) }
                }
            }
        }
    }
}
