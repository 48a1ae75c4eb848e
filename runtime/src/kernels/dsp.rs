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
//! network, the blocked kernels with these blocks ~7.6 M (docs/performance.md). LLVM does not
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
//! one group of the whole patch is [`GROUP_STRIDE`] bytes. Then the 8 output pixels of a tap
//! read cells at the constant byte offsets [`PIXEL_OFFSETS`] from one pointer, whatever the
//! channel count, and `LDRD`'s immediate offsets reach all of them.

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
/// Byte offset of output pixel `p` (row `p / 4`, column `p % 4`) relative to pixel 0's cell.
pub const PIXEL_OFFSETS: [usize; TILE_PIXELS] = {
    let mut o = [0; TILE_PIXELS];
    let mut p = 0;
    while p < TILE_PIXELS {
        o[p] = ((p / 4) * PATCH_COLS + p % 4) * CELL * 2;
        p += 1;
    }
    o
};

/// The building blocks. `patch` is a widened patch (layout above), `w` int8 weights.
pub trait Mac {
    /// Adds to `acc[p]` the products of output pixel `p` over `ky x kx` taps of `groups`
    /// groups each: tap `(ty, tx)`, group `g` reads the cell at row `ty + p / 4`, column
    /// `tx + p % 4` of group `g`, and the 4 weights at `w[((ty * kx + tx) * groups + g) * 4..]`.
    /// Needs `kx <= 3`, `ky <= 3`, `patch.len() >= groups * GROUP_HALVES`,
    /// `w.len() >= ky * kx * groups * 4`.
    fn tile(
        &self,
        acc: &mut [i32; TILE_PIXELS],
        patch: &[i16],
        w: &[i8],
        groups: usize,
        kx: usize,
        ky: usize,
    );

    /// Dense rows: `acc[i] += sum_j w[i * n + j] * x_j` for `i < acc.len() <= 4`, where `x` holds
    /// `n` widened values (`n / 4` groups). Needs `n % 4 == 0`, `x.len() >= n`,
    /// `w.len() >= acc.len() * n`.
    fn dense(&self, acc: &mut [i32], x: &[i16], w: &[i8], n: usize);
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
    fn tile(
        &self,
        acc: &mut [i32; TILE_PIXELS],
        patch: &[i16],
        w: &[i8],
        groups: usize,
        kx: usize,
        ky: usize,
    ) {
        for ty in 0..ky {
            for tx in 0..kx {
                for g in 0..groups {
                    let wi = ((ty * kx + tx) * groups + g) * 4;
                    let ws = &w[wi..wi + 4];
                    let tap = g * GROUP_HALVES + (ty * PATCH_COLS + tx) * CELL;
                    for (p, a) in acc.iter_mut().enumerate() {
                        let at = tap + PIXEL_OFFSETS[p] / 2;
                        *a = group(*a, ws, &patch[at..at + CELL]);
                    }
                }
            }
        }
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
#[allow(unsafe_code)]
mod asm {
    //! The Cortex-M4 versions. Register budget: the tile blocks keep 8 accumulators, the
    //! activation and weight pointers, two activation words and two weight words live: 14
    //! registers. LLVM may allocate r0-r6, r8-r12 and lr to operands (13); the 14th is r7 (the
    //! Thumb frame pointer, which asm! cannot name as an operand), saved and restored inside
    //! each block. Nothing here calls or returns through r7, so a debugger walking frames while
    //! a block runs sees a stale frame pointer for a few hundred instructions; nothing else does.

    use super::{GROUP_HALVES, GROUP_STRIDE, Mac, PATCH_COLS, TILE_PIXELS};
    use core::arch::asm;

    /// The DSP blocks.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Asm;

    // One group of a tile: the weight word into r7 and {w02}, 8 LDRDs at the PIXEL_OFFSETS
    // (the last one post-increments the patch pointer to the next group), 16 SMLADs.
    macro_rules! tile_group {
        () => {
            concat!(
                "ldr r7, [{w}], #4\n",
                "sxtb16 {w02}, r7\n",
                "sxtb16 r7, r7, ror #8\n",
                "ldrd {x0}, {x1}, [{act}, #8]\n",
                "smlad {a1}, {w02}, {x0}, {a1}\n",
                "smlad {a1}, r7, {x1}, {a1}\n",
                "ldrd {x0}, {x1}, [{act}, #16]\n",
                "smlad {a2}, {w02}, {x0}, {a2}\n",
                "smlad {a2}, r7, {x1}, {a2}\n",
                "ldrd {x0}, {x1}, [{act}, #24]\n",
                "smlad {a3}, {w02}, {x0}, {a3}\n",
                "smlad {a3}, r7, {x1}, {a3}\n",
                "ldrd {x0}, {x1}, [{act}, #48]\n",
                "smlad {a4}, {w02}, {x0}, {a4}\n",
                "smlad {a4}, r7, {x1}, {a4}\n",
                "ldrd {x0}, {x1}, [{act}, #56]\n",
                "smlad {a5}, {w02}, {x0}, {a5}\n",
                "smlad {a5}, r7, {x1}, {a5}\n",
                "ldrd {x0}, {x1}, [{act}, #64]\n",
                "smlad {a6}, {w02}, {x0}, {a6}\n",
                "smlad {a6}, r7, {x1}, {a6}\n",
                "ldrd {x0}, {x1}, [{act}, #72]\n",
                "smlad {a7}, {w02}, {x0}, {a7}\n",
                "smlad {a7}, r7, {x1}, {a7}\n",
                "ldrd {x0}, {x1}, [{act}], #192\n",
                "smlad {a0}, {w02}, {x0}, {a0}\n",
                "smlad {a0}, r7, {x1}, {a0}\n",
            )
        };
    }
    const _: () = assert!(GROUP_STRIDE == 192 && PATCH_COLS == 6);
    const _: () = assert!(super::PIXEL_OFFSETS[7] == 72 && super::PIXEL_OFFSETS[4] == 48);

    /// A whole tile with the taps and groups unrolled at compile time (no loop counter): for
    /// each tap, `G` groups, then the patch pointer goes back `G` groups and one cell right; at
    /// the end of a row of taps, to the next row. Straight-line code: `27 * G * KX * KY`
    /// instructions plus `2 * KX * KY + KY + 2`.
    ///
    /// # Safety
    /// `act` must point to `G * GROUP_HALVES` readable int16 values (a patch, 8-byte aligned),
    /// `w` to `KX * KY * G * 4` readable bytes (4-byte aligned).
    #[inline(always)]
    unsafe fn tile_unrolled<const G: usize, const KX: usize, const KY: usize>(
        acc: &mut [i32; TILE_PIXELS],
        act: *const i16,
        w: *const i8,
    ) {
        let [
            mut a0,
            mut a1,
            mut a2,
            mut a3,
            mut a4,
            mut a5,
            mut a6,
            mut a7,
        ] = *acc;
        // SAFETY: the caller guarantees the reads are in bounds (the largest offset read is
        // (G - 1) * 192 + 2 * 48 + 3 * 8 + 72 + 8 bytes < G * GROUP_STRIDE for KX, KY <= 3) and
        // aligned (LDRD needs 4-byte alignment). r7 is saved and restored around its use; the
        // flags are not used; no memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                ".rept {ky}",
                ".rept {kx}",
                ".rept {g}",
                tile_group!(),
                ".endr",
                "movw r7, #{back}",
                "sub {act}, {act}, r7",
                ".endr",
                "add {act}, {act}, #{down}",
                ".endr",
                "pop {{r7}}",
                g = const G,
                kx = const KX,
                ky = const KY,
                back = const G * GROUP_STRIDE - 8,
                down = const (PATCH_COLS - KX) * 8,
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
        *acc = [a0, a1, a2, a3, a4, a5, a6, a7];
    }

    /// One tap of `groups >= 1` groups, looping: 4 groups an iteration while at least 4 are
    /// left (the counter lives on the stack, as no register is free), then one at a time.
    ///
    /// # Safety
    /// `act` must point to `groups * GROUP_HALVES - (offset of the tap)` readable int16 values
    /// as in [`tile_unrolled`], `w` to `groups * 4` readable bytes; both 4-byte aligned.
    #[inline(always)]
    unsafe fn tile_tap(acc: &mut [i32; TILE_PIXELS], act: *const i16, w: *const i8, groups: usize) {
        let [
            mut a0,
            mut a1,
            mut a2,
            mut a3,
            mut a4,
            mut a5,
            mut a6,
            mut a7,
        ] = *acc;
        let chunks = groups / 4;
        let singles = groups % 4;
        // SAFETY: as for `tile_unrolled`: `groups` groups are read from each pointer, which
        // the caller guarantees are readable and aligned. The two counters are pushed on the
        // stack (8 bytes, popped before the block ends); r7 is saved and restored; the flags
        // are clobbered (not `preserves_flags`); no memory is written except that stack space.
        unsafe {
            asm!(
                "push {{r7}}",
                "push {{{singles}}}",
                "push {{{chunks}}}",
                "cmp {chunks}, #0",
                "beq 2f",
                "1:",
                tile_group!(),
                tile_group!(),
                tile_group!(),
                tile_group!(),
                "ldr r7, [sp]",
                "subs r7, r7, #1",
                "str r7, [sp]",
                "bne 1b",
                "2:",
                "ldr r7, [sp, #4]",
                "cmp r7, #0",
                "beq 4f",
                "3:",
                tile_group!(),
                "ldr r7, [sp, #4]",
                "subs r7, r7, #1",
                "str r7, [sp, #4]",
                "bne 3b",
                "4:",
                "add sp, sp, #8",
                "pop {{r7}}",
                chunks = in(reg) chunks,
                singles = in(reg) singles,
                w = inout(reg) w => _,
                act = inout(reg) act => _,
                w02 = out(reg) _,
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
        *acc = [a0, a1, a2, a3, a4, a5, a6, a7];
    }

    /// A whole 3x3 tile for a run-time group count `groups >= 1`: the 9 taps unrolled, each
    /// looping over its groups 4 at a time then one at a time. No register is free for the
    /// counters, so they live on the stack: `[sp]` the running count, `[sp, #4]` the 4-group
    /// chunks a tap, `[sp, #8]` the single groups, `[sp, #12]` how far to step back after a
    /// tap (`groups * GROUP_STRIDE - 8`); r7 is saved at `[sp, #16]`.
    ///
    /// # Safety
    /// As [`tile_unrolled`] with `G = groups`, `KX = KY = 3`.
    #[inline(always)]
    unsafe fn tile_3x3(acc: &mut [i32; TILE_PIXELS], act: *const i16, w: *const i8, groups: usize) {
        let [
            mut a0,
            mut a1,
            mut a2,
            mut a3,
            mut a4,
            mut a5,
            mut a6,
            mut a7,
        ] = *acc;
        let chunks = groups / 4;
        let singles = groups % 4;
        let back = groups * GROUP_STRIDE - 8;
        // SAFETY: as for `tile_unrolled`: `groups` groups of each of the 9 taps are read, which
        // the caller guarantees are readable and aligned. 20 bytes of stack are used and
        // released before the block ends; r7 is saved and restored; no other memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                "push {{{back}}}",
                "push {{{singles}}}",
                "push {{{chunks}}}",
                "sub sp, sp, #4",
                ".rept 3",
                ".rept 3",
                "ldr r7, [sp, #4]",
                "str r7, [sp]",
                "cmp r7, #0",
                "beq 2f",
                "1:",
                tile_group!(),
                tile_group!(),
                tile_group!(),
                tile_group!(),
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
                tile_group!(),
                "ldr r7, [sp]",
                "subs r7, r7, #1",
                "str r7, [sp]",
                "bne 3b",
                "4:",
                "ldr r7, [sp, #12]",
                "sub {act}, {act}, r7",
                ".endr",
                "add {act}, {act}, #24",
                ".endr",
                "add sp, sp, #16",
                "pop {{r7}}",
                chunks = in(reg) chunks,
                singles = in(reg) singles,
                back = in(reg) back,
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
        *acc = [a0, a1, a2, a3, a4, a5, a6, a7];
    }

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

    /// Four dense rows at once: per group one LDRD of activations shared by the four rows.
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
                "1:",
                "ldrd {x0}, {x1}, [{x}], #8",
                dense_row!("w0", "a0"),
                dense_row!("w1", "a1"),
                dense_row!("w2", "a2"),
                dense_row!("w3", "a3"),
                "subs {n}, {n}, #1",
                "bne 1b",
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

    /// One dense row.
    ///
    /// # Safety
    /// As [`dense4`] for one weight pointer.
    #[inline(always)]
    unsafe fn dense1(acc: &mut i32, x: *const i16, w0: *const i8, groups: usize) {
        let mut a0 = *acc;
        // SAFETY: as for `dense4`.
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

    impl Mac for Asm {
        #[inline]
        fn tile(
            &self,
            acc: &mut [i32; TILE_PIXELS],
            patch: &[i16],
            w: &[i8],
            groups: usize,
            kx: usize,
            ky: usize,
        ) {
            // The bounds and alignment every block below relies on, checked once a tile.
            assert!(kx <= 3 && ky <= 3 && groups >= 1);
            assert!(patch.len() >= groups * GROUP_HALVES && w.len() >= ky * kx * groups * 4);
            assert!(
                (patch.as_ptr() as usize).is_multiple_of(4)
                    && (w.as_ptr() as usize).is_multiple_of(4)
            );
            let (act, wp) = (patch.as_ptr(), w.as_ptr());
            match (groups, kx, ky) {
                // SAFETY (all three calls): checked by the asserts above.
                (4, 3, 3) => unsafe { tile_unrolled::<4, 3, 3>(acc, act, wp) },
                (1, 1, 3) => unsafe { tile_unrolled::<1, 1, 3>(acc, act, wp) },
                (_, 3, 3) => unsafe { tile_3x3(acc, act, wp, groups) },
                _ => {
                    for ty in 0..ky {
                        for tx in 0..kx {
                            let cell = (ty * PATCH_COLS + tx) * super::CELL;
                            let wi = (ty * kx + tx) * groups * 4;
                            // SAFETY: the tap's cell offset is below GROUP_HALVES, so its
                            // `groups` groups lie inside the patch; the tap's weights lie
                            // inside `w`; offsets keep the 4-byte alignment (cells are 8
                            // bytes, weight runs multiples of 4).
                            unsafe { tile_tap(acc, act.add(cell), wp.add(wi), groups) }
                        }
                    }
                }
            }
        }

        #[inline]
        fn dense(&self, acc: &mut [i32], x: &[i16], w: &[i8], n: usize) {
            assert!(
                n.is_multiple_of(4) && x.len() >= n && w.len() >= acc.len() * n && acc.len() <= 4
            );
            assert!(
                (x.as_ptr() as usize).is_multiple_of(4) && (w.as_ptr() as usize).is_multiple_of(4)
            );
            if n == 0 {
                return;
            }
            let (xp, wp) = (x.as_ptr(), w.as_ptr());
            if let Ok(acc4) = <&mut [i32; 4]>::try_from(&mut *acc) {
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
