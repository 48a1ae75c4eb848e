//! Fast conv2d (pointwise 1x1, general KxK, strided, 1- and 3-channel first layers) and dense
//! kernels: see `super`.
//!
//! ## conv2d: blocks of 8 output pixels over an im2col of the block
//!
//! Every conv2d is one inner kernel. The output pixels are taken in raster order, 8 at a time
//! (a block may span output rows). The block's im2col — for each of its 8 pixels the
//! `K_h * K_w * C_in` input values its filter taps read, in the weights' OHWI order, as int16
//! `x - z_in` (padded taps and the depth's tail up to a multiple of 4 are 0) — is widened once
//! into the scratch, *group-major*: depth group `g` (4 values) of pixel `p` is the cell
//! `col[g * 32 + 4 * p..][..4]`, lanes `[x0, x2, x1, x3]` as in `crate::kernels::dsp`. Then
//! every output channel runs [`Blocks::mac8`] over its contiguous OHWI filter row: per group
//! one weight word (`LDR`, unaligned allowed), `SXTB16` twice, and for each of the 8 pixels an
//! `LDRD` of the cell (constant offsets) and two `SMLAD`s: 27 instructions per 32 MACs, 8
//! accumulators in registers, four groups an iteration. A depth that is not a multiple of 4
//! ends with one more group whose weight word is the row's tail padded with zeros (its cells
//! are zero there anyway). The accumulators start at the bias; a full block of a tflite channel
//! whose shift the fused form takes is requantized by [`Blocks::requant8`] (`super::requant`,
//! proved equal to TFLM's two steps), everything else with the node's own rule.
//!
//! When `C_in % 4 == 0`, a pixel's taps of one kernel row are one contiguous run of input
//! bytes and of depth groups, widened by [`Blocks::widen`] (`LDR`, 2 `SXTB16`, 2 `SSUB16`,
//! `STRD` a group); other channel counts (the 1- and 3-channel first layers) are widened
//! value by value.
//!
//! Scratch: `8 * 4 * ceil(K_h K_w C_in / 4)` int16 values (+3 bytes to align), e.g. 2,304 B for
//! a 3x3 conv over 16 channels, 4,096 B for a 1x1 over 256.
//!
//! ## dense
//!
//! The input vector is widened once into the scratch (`ceil(in / 4)` groups); rows whose length
//! is a multiple of 4 run four at a time through `crate::kernels::dsp`'s dense blocks (21
//! instructions per 16 MACs); other lengths run lane by lane in portable code.
//!
//! Every block has a portable twin ([`Emulated`]) computing exactly what the assembly does;
//! the host runs the same drivers with it (`runtime/tests/graph_conv.rs`), the Cortex-M4 the
//! assembly (`cfg(tinyconv_dsp)`).

use crate::graph::format::Rule;
use crate::graph::io::Io;
use crate::graph::kernels::requant::{Fused, Layer};
use crate::graph::ops::{Channels, Node, rescale, taps};
use crate::kernels::dsp::{self as v1, Mac};
use crate::tflite_rule::QuantizedMultiplier;

/// Output pixels of a conv block.
pub const PIXELS: usize = 8;
/// int16 values of one depth group of a block's im2col (8 pixels x 4 values).
pub const GROUP_HALVES: usize = PIXELS * 4;

/// Depth groups of one output pixel of a conv: `ceil(K_h * K_w * C_in / 4)`.
pub const fn conv_groups(kernel_h: usize, kernel_w: usize, in_c: usize) -> usize {
    (kernel_h * kernel_w * in_c).div_ceil(4)
}

/// Scratch bytes of [`conv2d`]: the block's im2col plus 3 bytes of alignment slack, and for a
/// channel count that is not a multiple of 4 a pixel's patch as int8 (`4 * groups` bytes).
pub const fn conv_scratch_len(kernel_h: usize, kernel_w: usize, in_c: usize) -> usize {
    let groups = conv_groups(kernel_h, kernel_w, in_c);
    let patch = if in_c.is_multiple_of(4) {
        0
    } else {
        4 * groups
    };
    groups * GROUP_HALVES * 2 + 3 + patch
}

/// The building blocks of the conv kernel.
pub trait Blocks {
    /// `acc[p] + sum_{g < groups} sum_{l < 4} w[4g + l] * x(g, p, l)`, where `x(g, p, l)` is
    /// lane `l` of the cell `col[g * 32 + 4p..][..4]` stored as `[x0, x2, x1, x3]`. Needs
    /// `col.len() >= groups * 32` (word-aligned), `w.len() >= 4 * groups`.
    fn mac8(&self, acc: [i32; PIXELS], col: &[i16], w: &[i8], groups: usize) -> [i32; PIXELS];

    /// [`Blocks::mac8`] for pixels 0..4 only (a block's tail of at most 4 pixels). Needs
    /// `col.len() >= (groups - 1) * 32 + 16` (word-aligned), `w.len() >= 4 * groups` when
    /// `groups > 0`.
    fn mac4(&self, acc: [i32; 4], col: &[i16], w: &[i8], groups: usize) -> [i32; 4];

    /// Requantizes 8 accumulators in the fused tflite form ([`Fused`]) and stores them
    /// `stride` bytes apart: `out[k * stride]`. Needs `out.len() > 7 * stride`.
    fn requant8(&self, acc: &[i32; PIXELS], q: &Fused, out: &mut [i8], stride: usize);

    /// [`Blocks::widen`] of `rows` runs of `groups` groups, run `r` from `x[r * stride..]`,
    /// into consecutive groups (run `r` from group `r * groups`). Needs `rows >= 1`,
    /// `x.len() >= (rows - 1) * stride + 4 * groups`, `out.len() >= (rows * groups - 1) * 32
    /// + 4` (word-aligned) when `groups > 0`.
    fn widen_rows(
        &self,
        x: &[i8],
        stride: usize,
        rows: usize,
        groups: usize,
        z: i8,
        out: &mut [i16],
    ) {
        for r in 0..rows {
            self.widen(
                &x[r * stride..],
                groups,
                z,
                &mut out[r * groups * GROUP_HALVES..],
            );
        }
    }

    /// An unpadded window for a depth that is not a multiple of 4 (the 1- and 3-channel
    /// first layers): `rows` runs of `run` bytes, run `r` from `x[r * stride..]`, one after
    /// another into `patch` (whose bytes past `rows * run` hold the zero point), then
    /// [`Blocks::widen`] of the patch's `groups` groups into `out`. Needs `rows >= 1`,
    /// `run >= 1`, `groups >= 1`, `x.len() >= (rows - 1) * stride + run`,
    /// `patch.len() >= 4 * groups >= rows * run`, `out` as [`Blocks::widen`] needs.
    #[allow(clippy::too_many_arguments)]
    fn gather_widen(
        &self,
        x: &[i8],
        stride: usize,
        rows: usize,
        run: usize,
        patch: &mut [i8],
        groups: usize,
        z: i8,
        out: &mut [i16],
    ) {
        for (r, dst) in patch.chunks_exact_mut(run).take(rows).enumerate() {
            copy_small(dst, &x[r * stride..][..run]);
        }
        self.widen(patch, groups, z, out);
    }

    /// v1's dense rows (`crate::kernels::dsp::Mac::dense`: 4 rows at 21 instructions per 16
    /// MACs) with this target's instructions, for the pointwise blocks of one or two pixels.
    fn dense_rows(&self, acc: &mut [i32], x: &[i16], w: &[i8], n: usize) {
        v1::Emulated.dense(acc, x, w, n)
    }

    /// A full block's every output channel in the fused form: for `oc < bias.len()`,
    /// [`Blocks::mac8`] from `bias[oc]` over the `groups` weight words from `w[oc * row..]`,
    /// then [`Blocks::requant8`] with `layer`'s channel of `mult[oc]` into `out[oc..]`,
    /// `stride` bytes apart. Needs every channel to have the fused form (`Layer::channel` is
    /// `Some`), `mult.len() >= bias.len()`, `w.len() >= (bias.len() - 1) * row + 4 * groups`,
    /// `groups >= 1`. With `late`, the late-zero-point form instead (`Layer::late_channel`,
    /// `Fused::apply_late`), for a layer whose clamp is all of int8 and whose depth is a
    /// multiple of 4 (`row == 4 * groups`).
    #[allow(clippy::too_many_arguments)]
    fn channels8(
        &self,
        col: &[i16],
        w: &[i8],
        groups: usize,
        row: usize,
        bias: &[i32],
        mult: &[[i32; 2]],
        layer: &Layer,
        out: &mut [i8],
        stride: usize,
        late: bool,
    ) {
        for (oc, (&b, &[m, shift])) in bias.iter().zip(mult).enumerate() {
            let m = QuantizedMultiplier {
                multiplier: m,
                shift,
            };
            let acc = self.mac8([b; PIXELS], col, &w[oc * row..], groups);
            if late {
                let q = layer
                    .late_channel(m)
                    .expect("every channel in the late form");
                let z = layer.parts().0;
                for (y, &a) in out[oc..].iter_mut().step_by(stride).zip(&acc) {
                    *y = q.apply_late(a, z);
                }
            } else {
                let q = layer.channel(m).expect("every channel in the fused form");
                self.requant8(&acc, &q, &mut out[oc..], stride);
            }
        }
    }

    /// Widens `groups` groups of 4 int8 values `x[4g..4g + 4]` to
    /// `out[g * 32..][..4] = [x0 - z, x2 - z, x1 - z, x3 - z]`. Needs `x.len() >= 4 * groups`,
    /// `out.len() >= (groups - 1) * 32 + 4` (word-aligned) when `groups > 0`.
    fn widen(&self, x: &[i8], groups: usize, z: i8, out: &mut [i16]);
}

/// `SMLAD`: `acc + a.lo * b.lo + a.hi * b.hi` (wrapping, like the instruction).
#[inline(always)]
fn smlad(acc: i32, a: [i16; 2], b: [i16; 2]) -> i32 {
    acc.wrapping_add(a[0] as i32 * b[0] as i32)
        .wrapping_add(a[1] as i32 * b[1] as i32)
}

/// The portable model of the blocks, lane by lane.
#[derive(Clone, Copy, Debug, Default)]
pub struct Emulated;

/// `mac8`/`mac4` lane by lane: per group, `SXTB16 w` and `SXTB16 w, ROR #8`, then two SMLADs
/// for each of the `N` pixels' cells.
fn emulated_mac<const N: usize>(
    mut acc: [i32; N],
    col: &[i16],
    w: &[i8],
    groups: usize,
) -> [i32; N] {
    for g in 0..groups {
        let ws = &w[4 * g..4 * g + 4];
        let w02 = [ws[0] as i16, ws[2] as i16];
        let w13 = [ws[1] as i16, ws[3] as i16];
        for (p, a) in acc.iter_mut().enumerate() {
            let cell = &col[g * GROUP_HALVES + 4 * p..][..4];
            *a = smlad(*a, w02, [cell[0], cell[1]]);
            *a = smlad(*a, w13, [cell[2], cell[3]]);
        }
    }
    acc
}

impl Blocks for Emulated {
    fn mac8(&self, acc: [i32; PIXELS], col: &[i16], w: &[i8], groups: usize) -> [i32; PIXELS] {
        emulated_mac(acc, col, w, groups)
    }

    fn mac4(&self, acc: [i32; 4], col: &[i16], w: &[i8], groups: usize) -> [i32; 4] {
        emulated_mac(acc, col, w, groups)
    }

    fn requant8(&self, acc: &[i32; PIXELS], q: &Fused, out: &mut [i8], stride: usize) {
        for (k, &a) in acc.iter().enumerate() {
            out[k * stride] = q.apply(a);
        }
    }

    fn widen(&self, x: &[i8], groups: usize, z: i8, out: &mut [i16]) {
        for g in 0..groups {
            let v = &x[4 * g..4 * g + 4];
            v1::widen_group(
                [v[0], v[1], v[2], v[3]],
                z as i16,
                &mut out[g * GROUP_HALVES..],
            );
        }
    }
}

#[cfg(tinyconv_dsp)]
pub use asm::Asm;

#[cfg(tinyconv_dsp)]
#[allow(unsafe_code)]
mod asm {
    //! The Cortex-M4 blocks. `mac8` keeps 8 accumulators, the two pointers, two weight
    //! halves and two activation words live: 14 registers, so r7 (the Thumb frame pointer,
    //! which `asm!` cannot name as an operand) is saved and restored inside the block and the
    //! group counter lives on the stack, as in `crate::kernels::dsp`.

    use super::{Blocks, Fused, GROUP_HALVES, Layer, PIXELS};
    use crate::graph::kernels::requant;
    use crate::kernels::dsp::Mac;
    use core::arch::asm;

    /// The DSP blocks.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Asm;

    // One pixel `$p` of a group: the cell's LDRD at 8p, two SMLADs.
    macro_rules! px {
        ($p:literal) => {
            concat!(
                "ldrd {x0}, {x1}, [{act}, #(8*",
                $p,
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
    }

    // One group: the weight word (post-incremented), SXTB16 twice, pixels 1..7, then pixel 0
    // whose LDRD post-increments {act} to the next group (64 bytes). 27 instructions.
    macro_rules! group {
        () => {
            concat!(
                "ldr r7, [{w}], #4\n",
                "sxtb16 {w02}, r7\n",
                "sxtb16 r7, r7, ror #8\n",
                px!(1),
                px!(2),
                px!(3),
                px!(4),
                px!(5),
                px!(6),
                px!(7),
                "ldrd {x0}, {x1}, [{act}], #64\n",
                "smlad {a0}, {w02}, {x0}, {a0}\n",
                "smlad {a0}, r7, {x1}, {a0}\n",
            )
        };
    }
    const _: () = assert!(GROUP_HALVES * 2 == 64 && PIXELS == 8);

    // All `[sp]` groups (the counter on the stack, r7 the weight word): eight a turn, then
    // four if at least four are left, then one at a time. Ends at label 4.
    macro_rules! group_loop {
        () => {
            concat!(
                "1:\n",
                "ldr r7, [sp]\n",
                "subs r7, r7, #8\n",
                "blo 5f\n",
                "str r7, [sp]\n",
                group!(),
                group!(),
                group!(),
                group!(),
                group!(),
                group!(),
                group!(),
                group!(),
                "b 1b\n",
                "5:\n",
                "adds r7, r7, #8\n",
                "beq 4f\n",
                "cmp r7, #4\n",
                "blo 7f\n",
                "subs r7, r7, #4\n",
                "str r7, [sp]\n",
                group!(),
                group!(),
                group!(),
                group!(),
                "ldr r7, [sp]\n",
                "cmp r7, #0\n",
                "beq 4f\n",
                "7:\n",
                "str r7, [sp]\n",
                "3:\n",
                group!(),
                "ldr r7, [sp]\n",
                "subs r7, r7, #1\n",
                "str r7, [sp]\n",
                "bne 3b\n",
                "4:\n",
            )
        };
    }

    /// # Safety
    /// `act` must point to `groups * 32` readable int16 values (4-byte aligned), `w` to
    /// `groups * 4` readable bytes (any alignment: the Cortex-M4's LDR takes unaligned
    /// addresses); `groups >= 1`.
    #[inline(always)]
    unsafe fn mac8(
        acc: [i32; PIXELS],
        act: *const i16,
        w: *const i8,
        groups: usize,
    ) -> [i32; PIXELS] {
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
        // SAFETY: `groups` groups are read: the weights at w + 4g (LDR, unaligned allowed)
        // and the cells at act + 64g + 8p (LDRD, aligned): inside the caller's ranges. The
        // counter takes 4 bytes of stack, released before the block ends; r7 is saved and
        // restored; the flags are clobbered; no other memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                "push {{{x0}}}",
                group_loop!(),
                "add sp, sp, #4",
                "pop {{r7}}",
                w = inout(reg) w => _,
                act = inout(reg) act => _,
                w02 = out(reg) _,
                x0 = inout(reg) groups => _,
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

    /// # Safety
    /// `act` must point to `(groups - 1) * 32 + 16` readable int16 values (4-byte aligned),
    /// `w` to `groups * 4` readable bytes (any alignment); `groups >= 1`.
    #[inline(always)]
    unsafe fn mac4(acc: [i32; 4], act: *const i16, w: *const i8, groups: usize) -> [i32; 4] {
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        // SAFETY: `groups` groups are read: the weights at w + 4g (LDR, unaligned allowed),
        // the cells at act + 64g + 8p for p < 4 (LDRD, aligned): inside the caller's ranges.
        // r7 is saved and restored; the flags are clobbered; no memory is written.
        unsafe {
            asm!(
                "push {{r7}}",
                "1:",
                "ldr r7, [{w}], #4",
                "sxtb16 {w02}, r7",
                "sxtb16 r7, r7, ror #8",
                px!(1),
                px!(2),
                px!(3),
                "ldrd {x0}, {x1}, [{act}], #64",
                "smlad {a0}, {w02}, {x0}, {a0}",
                "smlad {a0}, r7, {x1}, {a0}",
                "subs {n}, {n}, #1",
                "bne 1b",
                "pop {{r7}}",
                w = inout(reg) w => _,
                act = inout(reg) act => _,
                n = inout(reg) groups => _,
                w02 = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
            );
        }
        [a0, a1, a2, a3]
    }

    /// # Safety
    /// `x` must point to `4 * groups` readable bytes (any alignment), `out` to
    /// `(groups - 1) * 32 + 4` writable int16 values (4-byte aligned); `groups >= 1`.
    #[inline(always)]
    unsafe fn widen(x: *const i8, groups: usize, z: i8, out: *mut i16) {
        let z2 = (z as u16 as u32) | (z as u16 as u32) << 16;
        // SAFETY: reads 4 * groups bytes from x (LDR, unaligned allowed) and writes 4 int16
        // values at out + 32g for g < groups (STRD, aligned): inside the caller's ranges.
        // SSUB16 sets only the GE flags; SUBS the others (clobbered).
        unsafe {
            asm!(
                "1:",
                "ldr {t}, [{x}], #4",
                "sxtb16 {a}, {t}",
                "sxtb16 {b}, {t}, ror #8",
                "ssub16 {a}, {a}, {z2}",
                "ssub16 {b}, {b}, {z2}",
                "strd {a}, {b}, [{out}], #64",
                "subs {n}, {n}, #1",
                "bne 1b",
                x = inout(reg) x => _,
                out = inout(reg) out => _,
                n = inout(reg) groups => _,
                z2 = in(reg) z2,
                t = out(reg) _,
                a = out(reg) _,
                b = out(reg) _,
                options(nostack),
            );
        }
    }

    /// The state of [`channels8`]'s channel loop, read and written by the assembly at fixed
    /// offsets.
    #[repr(C)]
    struct Frame {
        col: *const i16,       // 0
        w: *const i8,          // 4
        groups: usize,         // 8
        bias: *const i32,      // 12
        mult: *const [i32; 2], // 16
        out: *mut i8,          // 20
        stride: usize,         // 24
        left: usize,           // 28
        kz: i32,               // 32: 1 + 2 z, the zero point as the fused form's khi takes it
        lo: i32,               // 36
        spill: [i32; 2],       // 40: two accumulators while the others are requantized
        skip: isize,           // 48
    }
    const _: () = assert!(core::mem::offset_of!(Frame, spill) == 40);
    const _: () = assert!(core::mem::offset_of!(Frame, skip) == 48);

    // One output of the channel: `Fused::apply` of the accumulator `$acc` (consumed) with
    // m = {act}, khi = {w02}, sh = {x1}, `$lo`, `$hi` the temporaries; stored at {w}, which
    // steps by the stride ({x0}). 8 instructions (11 with the lower clamp).
    macro_rules! requant_out {
        ($acc:literal, $lo:literal, $hi:literal, $clamp:tt) => {
            concat!(
                "and {",
                $lo,
                "}, {",
                $acc,
                "}, #0x80000000\n",
                "orr {",
                $lo,
                "}, {",
                $lo,
                "}, #0x40000000\n",
                "add {",
                $hi,
                "}, {w02}, {",
                $acc,
                "}, asr #31\n",
                "smlal {",
                $lo,
                "}, {",
                $hi,
                "}, {",
                $acc,
                "}, {act}\n",
                "asr {",
                $hi,
                "}, {",
                $hi,
                "}, {x1}\n",
                late_z!($clamp, $hi),
                "ssat {",
                $hi,
                "}, #8, {",
                $hi,
                "}\n",
                clamp_lo!($clamp, $hi),
                "strb {",
                $hi,
                "}, [{w}]\n",
                "add {w}, {w}, {x0}\n",
            )
        };
    }

    // The lower clamp (r7) of `requant_out!`'s value register, or none (`full`: -128; `late`:
    // the late form, whose clamp is all of int8).
    macro_rules! clamp_lo {
        (full, $hi:literal) => {
            ""
        };
        (late, $hi:literal) => {
            ""
        };
        (lower, $hi:literal) => {
            concat!("cmp {", $hi, "}, r7\nit lt\nmovlt {", $hi, "}, r7\n")
        };
    }

    // The late form's zero point (r7), added after the shift and before the saturation.
    macro_rules! late_z {
        (late, $hi:literal) => {
            concat!("add {", $hi, "}, {", $hi, "}, r7\n")
        };
        ($other:tt, $hi:literal) => {
            ""
        };
    }

    // The late form takes a zero multiplier (any stored shift) with sh = 1 (e = 2): its
    // result is then the zero point, as TFLM's.
    macro_rules! zero_multiplier {
        (late) => {
            "cmp {act}, #0\nit eq\nmoveq {x1}, #1\n"
        };
        ($other:tt) => {
            ""
        };
    }

    // The lower clamp into r7, from the frame at {x0} (none for `full`).
    macro_rules! load_lo {
        (full) => {
            ""
        };
        (lower) => {
            "ldr r7, [{x0}, #36]"
        };
        (late) => {
            "ldr r7, [{x0}, #36]"
        };
    }

    // The whole channel loop; `$clamp` the lower clamp after SSAT (`full` for -128, else
    // `lower`: r7).
    macro_rules! channel_loop {
        ($frame:expr, $clamp:tt, $next:expr) => {
            asm!(
                "push {{r7}}",
                "push {{{x0}}}",
                "sub sp, sp, #4",
                "0:",
                // The channel's bias into the 8 accumulators, the row, the block, the count.
                "ldr {x0}, [sp, #4]",
                "ldr {a1}, [{x0}, #12]",
                "ldr {a0}, [{a1}], #4",
                "str {a1}, [{x0}, #12]",
                "ldr {w}, [{x0}, #4]",
                "ldr {act}, [{x0}]",
                "ldr {x1}, [{x0}, #8]",
                "str {x1}, [sp]",
                "mov {a1}, {a0}",
                "mov {a2}, {a0}",
                "mov {a3}, {a0}",
                "mov {a4}, {a0}",
                "mov {a5}, {a0}",
                "mov {a6}, {a0}",
                "mov {a7}, {a0}",
                // mac8's loop: four groups a turn, then one at a time.
                group_loop!(),
                // The next row (`{w}` is past this row's groups; a depth with a tail steps
                // back by the frame's `skip`); two accumulators to the frame, freeing their
                // registers for the requantization of the other six.
                "ldr {x0}, [sp, #4]",
                $next,
                "str {w}, [{x0}, #4]",
                "strd {a6}, {a7}, [{x0}, #40]",
                // The channel's fused form: sh = e - 1 = !shift, khi = (1 + 2z) 2^sh / 2
                // (= 2^(e-2) + z 2^(e-1)); the output pointer, stepped to the next channel.
                "ldr {x1}, [{x0}, #16]",
                "ldrd {act}, {w02}, [{x1}], #8",
                "str {x1}, [{x0}, #16]",
                "mvn {x1}, {w02}",
                zero_multiplier!($clamp),
                "ldr {w02}, [{x0}, #32]",
                "lsl {w02}, {w02}, {x1}",
                "asr {w02}, {w02}, #1",
                "ldr {w}, [{x0}, #20]",
                "add {a6}, {w}, #1",
                "str {a6}, [{x0}, #20]",
                load_lo!($clamp),
                "ldr {x0}, [{x0}, #24]",
                requant_out!("a0", "a6", "a7", $clamp),
                requant_out!("a1", "a6", "a7", $clamp),
                requant_out!("a2", "a6", "a7", $clamp),
                requant_out!("a3", "a6", "a7", $clamp),
                requant_out!("a4", "a6", "a7", $clamp),
                requant_out!("a5", "a6", "a7", $clamp),
                "ldr {a0}, [sp, #4]",
                "ldrd {a6}, {a7}, [{a0}, #40]",
                requant_out!("a6", "a0", "a1", $clamp),
                requant_out!("a7", "a0", "a1", $clamp),
                "ldr {x0}, [sp, #4]",
                "ldr {a0}, [{x0}, #28]",
                "subs {a0}, {a0}, #1",
                "str {a0}, [{x0}, #28]",
                "bne 0b",
                "add sp, sp, #8",
                "pop {{r7}}",
                w = out(reg) _,
                act = out(reg) _,
                w02 = out(reg) _,
                x0 = inout(reg) $frame => _,
                x1 = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                a4 = out(reg) _,
                a5 = out(reg) _,
                a6 = out(reg) _,
                a7 = out(reg) _,
            )
        };
    }

    /// # Safety
    /// `frame.left >= 1` channels: the weights `frame.w + (4 * groups + skip) * oc + 4g` (any
    /// alignment), the cells `frame.col + 32g + 4p` (aligned; `groups >= 1`), the biases
    /// and multiplier pairs of every channel readable, and `out + oc + k * stride` for
    /// `k < 8` writable; every channel's shift in `-23..=-2` with a positive multiplier.
    #[inline(always)]
    unsafe fn channels8(frame: &mut Frame, full_clamp: bool) {
        let f: *mut Frame = frame;
        let aligned = frame.skip == 0;
        macro_rules! skip {
            () => {
                "ldr {x1}, [{x0}, #48]\nadd {w}, {w}, {x1}\n"
            };
        }
        // SAFETY: reads and writes only the caller's ranges and the frame; 12 bytes of stack
        // are pushed and released; r7 is saved and restored; the flags are clobbered.
        unsafe {
            match (full_clamp, aligned) {
                (true, true) => channel_loop!(f, full, ""),
                (false, true) => channel_loop!(f, lower, ""),
                (true, false) => channel_loop!(f, full, skip!()),
                (false, false) => channel_loop!(f, lower, skip!()),
            }
        }
    }

    /// # Safety
    /// As [`channels8`], with every channel's multiplier 0 or positive with a shift in
    /// `-31..=-2` (the late form), `frame.kz == 1` and `frame.lo` the zero point.
    #[inline(always)]
    unsafe fn channels8_late(frame: &mut Frame) {
        let f: *mut Frame = frame;
        // SAFETY: as `channels8`; `frame.skip == 0` (a depth that is a multiple of 4: asserted
        // by the caller, which keeps the flash of a second copy of the loop).
        unsafe { channel_loop!(f, late, "") }
    }

    #[inline(always)]
    fn aligned4<T>(p: *const T) -> bool {
        (p as usize).is_multiple_of(4)
    }

    /// # Safety
    /// For `r < rows`: `x + r * stride` points to `4 * groups` readable bytes (any
    /// alignment); `out` to `(rows * groups - 1) * 32 + 4` writable int16 values (4-byte
    /// aligned); `rows >= 1`, `groups >= 1`.
    #[inline(always)]
    unsafe fn widen_rows(
        x: *const i8,
        stride: usize,
        rows: usize,
        groups: usize,
        z: i8,
        out: *mut i16,
    ) {
        let z2 = (z as u16 as u32) | (z as u16 as u32) << 16;
        let skip = stride - 4 * groups;
        // SAFETY: reads 4 * groups bytes from each run (LDR, unaligned allowed), writes 4 int16
        // values at out + 32g for g < rows * groups (STRD, aligned): inside the caller's
        // ranges. SSUB16 sets only the GE flags; SUBS the others (clobbered).
        unsafe {
            asm!(
                "2:",
                "mov {n}, {groups}",
                "1:",
                "ldr {t}, [{x}], #4",
                "sxtb16 {a}, {t}",
                "sxtb16 {b}, {t}, ror #8",
                "ssub16 {a}, {a}, {z2}",
                "ssub16 {b}, {b}, {z2}",
                "strd {a}, {b}, [{out}], #64",
                "subs {n}, {n}, #1",
                "bne 1b",
                "add {x}, {x}, {skip}",
                "subs {rows}, {rows}, #1",
                "bne 2b",
                x = inout(reg) x => _,
                out = inout(reg) out => _,
                rows = inout(reg) rows => _,
                groups = in(reg) groups,
                skip = in(reg) skip,
                z2 = in(reg) z2,
                n = out(reg) _,
                t = out(reg) _,
                a = out(reg) _,
                b = out(reg) _,
                options(nostack),
            );
        }
    }

    /// # Safety
    /// For `r < rows`: `x + r * stride` points to `run` readable bytes (any alignment:
    /// unaligned `LDR`/`STR`); `patch` to `4 * groups >= rows * run` bytes, readable and
    /// writable, the bytes past `rows * run` the zero point; `out` to
    /// `(groups - 1) * 32 + 4` writable int16 values (4-byte aligned); `rows`, `run`,
    /// `groups >= 1`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn gather_widen(
        x: *const i8,
        stride: usize,
        rows: usize,
        run: usize,
        patch: *mut i8,
        groups: usize,
        z: i8,
        out: *mut i16,
    ) {
        let z2 = (z as u16 as u32) | (z as u16 as u32) << 16;
        // SAFETY: as the caller guarantees: per run, 9 bytes as two words and a byte (the
        // RGB 3x3 first layer's run) or words while 4 or more bytes are left, then bytes;
        // then the patch's groups widened as `widen` does; the flags are clobbered.
        unsafe {
            asm!(
                "mov {d}, {patch}",
                "cmp {run}, #9",
                "bne 2f",
                "6:",
                "ldr {t}, [{x}]",
                "str {t}, [{d}]",
                "ldr {t}, [{x}, #4]",
                "str {t}, [{d}, #4]",
                "ldrb {t}, [{x}, #8]",
                "strb {t}, [{d}, #8]",
                "add {d}, {d}, #9",
                "add {x}, {x}, {stride}",
                "subs {rows}, {rows}, #1",
                "bne 6b",
                "b 7f",
                "2:",
                "mov {s}, {x}",
                "subs {n}, {run}, #4",
                "blo 3f",
                "1:",
                "ldr {t}, [{s}], #4",
                "str {t}, [{d}], #4",
                "subs {n}, {n}, #4",
                "bhs 1b",
                "3:",
                "adds {n}, {n}, #4",
                "beq 4f",
                "5:",
                "ldrb {t}, [{s}], #1",
                "strb {t}, [{d}], #1",
                "subs {n}, {n}, #1",
                "bne 5b",
                "4:",
                "add {x}, {x}, {stride}",
                "subs {rows}, {rows}, #1",
                "bne 2b",
                // The patch's groups: LDR, SXTB16 twice, SSUB16 twice, STRD.
                "7:",
                "ldr {t}, [{patch}], #4",
                "sxtb16 {s}, {t}",
                "sxtb16 {n}, {t}, ror #8",
                "ssub16 {s}, {s}, {z2}",
                "ssub16 {n}, {n}, {z2}",
                "strd {s}, {n}, [{out}], #64",
                "subs {groups}, {groups}, #1",
                "bne 7b",
                x = inout(reg) x => _,
                d = out(reg) _,
                rows = inout(reg) rows => _,
                run = in(reg) run,
                stride = in(reg) stride,
                patch = inout(reg) patch => _,
                groups = inout(reg) groups => _,
                z2 = in(reg) z2,
                out = inout(reg) out => _,
                s = out(reg) _,
                n = out(reg) _,
                t = out(reg) _,
                options(nostack),
            );
        }
    }

    impl Blocks for Asm {
        #[inline]
        fn dense_rows(&self, acc: &mut [i32], x: &[i16], w: &[i8], n: usize) {
            crate::kernels::dsp::Asm.dense(acc, x, w, n)
        }

        #[inline]
        #[allow(clippy::too_many_arguments)]
        fn gather_widen(
            &self,
            x: &[i8],
            stride: usize,
            rows: usize,
            run: usize,
            patch: &mut [i8],
            groups: usize,
            z: i8,
            out: &mut [i16],
        ) {
            assert!(rows >= 1 && run >= 1 && groups >= 1);
            assert!(x.len() >= (rows - 1) * stride + run);
            assert!(patch.len() >= 4 * groups && 4 * groups >= rows * run);
            assert!(out.len() >= (groups - 1) * GROUP_HALVES + 4 && aligned4(out.as_ptr()));
            let (x, patch, out) = (x.as_ptr(), patch.as_mut_ptr(), out.as_mut_ptr());
            // SAFETY: the asserts above (the patch's tail holds the zero point: the caller's).
            unsafe { gather_widen(x, stride, rows, run, patch, groups, z, out) }
        }

        #[inline]
        fn widen_rows(
            &self,
            x: &[i8],
            stride: usize,
            rows: usize,
            groups: usize,
            z: i8,
            out: &mut [i16],
        ) {
            if groups == 0 || rows == 0 {
                return;
            }
            assert!(stride >= 4 * groups && x.len() >= (rows - 1) * stride + 4 * groups);
            assert!(out.len() >= (rows * groups - 1) * GROUP_HALVES + 4 && aligned4(out.as_ptr()));
            // SAFETY: the asserts above.
            unsafe { widen_rows(x.as_ptr(), stride, rows, groups, z, out.as_mut_ptr()) }
        }

        #[inline]
        fn channels8(
            &self,
            col: &[i16],
            w: &[i8],
            groups: usize,
            row: usize,
            bias: &[i32],
            mult: &[[i32; 2]],
            layer: &Layer,
            out: &mut [i8],
            stride: usize,
            late: bool,
        ) {
            let channels = bias.len();
            let (z, lo, hi) = layer.parts();
            if channels == 0 {
                return;
            }
            assert!(groups >= 1 && col.len() >= groups * GROUP_HALVES && aligned4(col.as_ptr()));
            assert!(mult.len() >= channels && w.len() >= (channels - 1) * row + 4 * groups);
            assert!(out.len() > channels - 1 + 7 * stride && hi == i8::MAX as i32);
            if late {
                // The late form: the zero point added after the shift (in the frame's `lo`
                // slot, as there is no lower clamp), `khi = 2^(e-2)` from `kz = 1`; a zero
                // multiplier is taken with e = 2 by the assembly.
                assert!(lo == i8::MIN as i32);
                assert!(
                    mult[..channels]
                        .iter()
                        .all(|&[m, s]| { m == 0 || (m > 0 && (-31..=-2).contains(&s)) })
                );
                let mut frame = Frame {
                    col: col.as_ptr(),
                    w: w.as_ptr(),
                    groups,
                    bias: bias.as_ptr(),
                    mult: mult.as_ptr(),
                    out: out.as_mut_ptr(),
                    stride,
                    left: channels,
                    kz: 1,
                    lo: z,
                    spill: [0; 2],
                    skip: row as isize - 4 * groups as isize,
                };
                assert!(frame.skip == 0);
                // SAFETY: the asserts above.
                return unsafe { channels8_late(&mut frame) };
            }
            assert!(
                mult[..channels]
                    .iter()
                    .all(|&[m, s]| m > 0 && (-23..=-2).contains(&s))
            );
            let mut frame = Frame {
                col: col.as_ptr(),
                w: w.as_ptr(),
                groups,
                bias: bias.as_ptr(),
                mult: mult.as_ptr(),
                out: out.as_mut_ptr(),
                stride,
                left: channels,
                kz: 1 + 2 * z,
                lo,
                spill: [0; 2],
                skip: row as isize - 4 * groups as isize,
            };
            // SAFETY: the asserts above.
            unsafe { channels8(&mut frame, lo == i8::MIN as i32) }
        }

        #[inline]
        fn mac8(&self, acc: [i32; PIXELS], col: &[i16], w: &[i8], groups: usize) -> [i32; PIXELS] {
            if groups == 0 {
                return acc;
            }
            assert!(col.len() >= groups * GROUP_HALVES && w.len() >= 4 * groups);
            assert!(aligned4(col.as_ptr()));
            // SAFETY: the asserts above.
            unsafe { mac8(acc, col.as_ptr(), w.as_ptr(), groups) }
        }

        #[inline]
        fn mac4(&self, acc: [i32; 4], col: &[i16], w: &[i8], groups: usize) -> [i32; 4] {
            if groups == 0 {
                return acc;
            }
            assert!(col.len() >= (groups - 1) * GROUP_HALVES + 16 && w.len() >= 4 * groups);
            assert!(aligned4(col.as_ptr()));
            // SAFETY: the asserts above.
            unsafe { mac4(acc, col.as_ptr(), w.as_ptr(), groups) }
        }

        #[inline]
        fn requant8(&self, acc: &[i32; PIXELS], q: &Fused, out: &mut [i8], stride: usize) {
            assert!(out.len() > 7 * stride);
            // SAFETY: the assert above; `acc` is an aligned array of 8 int32 values.
            unsafe { requant::block8(acc.as_ptr(), q, out.as_mut_ptr(), stride) }
        }

        #[inline]
        fn widen(&self, x: &[i8], groups: usize, z: i8, out: &mut [i16]) {
            if groups == 0 {
                return;
            }
            assert!(x.len() >= 4 * groups && out.len() >= (groups - 1) * GROUP_HALVES + 4);
            assert!(aligned4(out.as_ptr()));
            // SAFETY: the asserts above.
            unsafe { widen(x.as_ptr(), groups, z, out.as_mut_ptr()) }
        }
    }
}

/// The scratch as word-aligned int16 values (the slack bytes of the scratch lengths above).
pub(crate) fn halves(scratch: &mut [i8]) -> &mut [i16] {
    let (_, words, _) = bytemuck::pod_align_to_mut::<i8, u32>(scratch);
    bytemuck::cast_slice_mut::<u32, i16>(words)
}

/// Where a kernel reads the per-channel bias and multiplier words: the node's
/// [`Channels`] (byte reads), or [`Words`], the same blobs as aligned int32 slices.
pub trait ChannelParams {
    fn bias(&self, c: usize) -> i32;
    fn words(&self, c: usize) -> (i32, i32);
    /// The biases and multiplier pairs as slices, when they can be read so.
    fn slices(&self) -> Option<(&[i32], &[[i32; 2]])> {
        None
    }
}

impl ChannelParams for Channels<'_> {
    #[inline(always)]
    fn bias(&self, c: usize) -> i32 {
        Channels::bias(self, c)
    }

    #[inline(always)]
    fn words(&self, c: usize) -> (i32, i32) {
        Channels::words(self, c)
    }
}

/// The bias and multiplier blobs of a node read as int32 words (little-endian targets, blobs
/// 4-byte aligned in memory: the model's blobs are 16-byte aligned in the file, so whenever the
/// file is), equal to [`Channels`]'s byte reads.
#[derive(Clone, Copy, Debug)]
pub struct Words<'m> {
    bias: &'m [i32],
    multipliers: &'m [[i32; 2]],
}

impl<'m> Words<'m> {
    /// `None` unless both blobs can be read as words.
    pub fn new(bias: &'m [u8], multipliers: &'m [u8]) -> Option<Self> {
        if cfg!(target_endian = "big") {
            return None;
        }
        Some(Words {
            bias: bytemuck::try_cast_slice(bias).ok()?,
            multipliers: bytemuck::try_cast_slice(multipliers).ok()?,
        })
    }
}

impl ChannelParams for Words<'_> {
    #[inline(always)]
    fn bias(&self, c: usize) -> i32 {
        self.bias[c]
    }

    #[inline(always)]
    fn words(&self, c: usize) -> (i32, i32) {
        let [m, s] = self.multipliers[c];
        (m, s)
    }

    fn slices(&self) -> Option<(&[i32], &[[i32; 2]])> {
        Some((self.bias, self.multipliers))
    }
}

/// One output channel's requantization, prepared once a block: exactly
/// `node.finish(node.rescale(acc, c))`. Under the tflite rule with the multipliers TFLite's
/// `QuantizeMultiplier` makes (positive, right shifts up to 31) it is TFLM's double rounding
/// in 32-bit steps: `SaturatingRoundingDoublingHighMul(x, M)` is
/// `trunc((x M + nudge) / 2^31)` with `nudge = 2^30` for `x M >= 0`, else `1 - 2^30`, which
/// equals `floor((x M + 2^30) / 2^31)` in both cases (for `x M < 0`,
/// `trunc(v / 2^31) = floor((v + 2^31 - 1) / 2^31)`): one `SMULL`, an add with carry and a
/// funnel shift, then gemmlowp's `RoundingDivideByPOT`. Everything else takes the node's own
/// functions.
#[derive(Clone, Copy, Debug)]
pub struct Requant {
    words: (i32, i32),
    fast: bool,
    left: u32,
    right: u32,
    mask: i32,
    zero_point: i32,
    lo: i32,
    hi: i32,
}

impl Requant {
    /// Channel `c` of node `n`.
    #[inline(always)]
    pub fn new(n: &Node<'_>, c: usize) -> Self {
        Self::with_words(n, n.channels.words(c))
    }

    /// The channel whose multiplier words are `words`.
    #[inline(always)]
    pub fn with_words(n: &Node<'_>, words: (i32, i32)) -> Self {
        let (m, shift) = words;
        let left = if shift > 0 { shift as u32 } else { 0 };
        let right = if shift < 0 { shift.unsigned_abs() } else { 0 };
        let fast = n.rule == Rule::Tflite && m > 0 && right <= 31;
        let zero_point = n.output_info.quant.zero_point as i32;
        let (lo, hi) = (n.clamp.min as i32, n.clamp.max as i32);
        Requant {
            words,
            fast,
            left,
            right,
            mask: ((1i64 << right.min(31)) - 1) as i32,
            zero_point,
            lo,
            hi,
        }
    }

    /// `node.finish(node.rescale(acc, c))`, `rule` the node's.
    #[inline(always)]
    pub fn apply(&self, rule: Rule, acc: i32) -> i8 {
        let scaled = if self.fast {
            let x = acc.wrapping_shl(self.left);
            let high = ((x as i64 * self.words.0 as i64 + (1 << 30)) >> 31) as i32;
            let remainder = high & self.mask;
            let threshold = (self.mask >> 1) + (high < 0) as i32;
            (high >> self.right) + (remainder > threshold) as i32
        } else {
            rescale(rule, acc, self.words)
        };
        scaled
            .saturating_add(self.zero_point)
            .clamp(self.lo, self.hi) as i8
    }
}

/// The fused requantization's per-layer part ([`Layer`]): tflite rule only.
#[inline]
pub fn fused_layer(n: &Node<'_>) -> Option<Layer> {
    if n.rule != Rule::Tflite {
        return None;
    }
    let z = n.output_info.quant.zero_point as i32;
    Layer::new(z, n.clamp.min as i32, n.clamp.max as i32)
}

/// Whether every output channel of a validated node with weights has the fused form (what
/// [`Node::fused`] records at parse time).
pub fn every_channel_fused(n: &Node<'_>) -> bool {
    let layer = fused_layer(n);
    layer.is_some()
        && n.kind.has_weights()
        && (0..n.channels.len()).all(|c| fused_channel(layer, n.channels.words(c)).is_some())
}

/// The fused form of the channel with multiplier words `words`, when it has one.
#[inline(always)]
pub fn fused_channel(layer: Option<Layer>, words: (i32, i32)) -> Option<Fused> {
    layer?.channel(QuantizedMultiplier {
        multiplier: words.0,
        shift: words.1,
    })
}

/// The late-zero-point form of the channel with multiplier `words` in `layer`, when it has one.
#[inline(always)]
fn late_channel(layer: Option<Layer>, words: (i32, i32)) -> Option<Fused> {
    layer?.late_channel(QuantizedMultiplier {
        multiplier: words.0,
        shift: words.1,
    })
}

/// Lane of depth value `l` (0..4) within its cell.
pub(crate) const LANE: [usize; 4] = [0, 2, 1, 3];

/// conv2d of a validated node with the blocks `b`; `scratch` of [`conv_scratch_len`] bytes.
pub fn conv2d<B: Blocks>(b: &B, n: &Node<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    conv2d_with(b, n, &n.channels, &mut Io::apart(input, output), scratch)
}

/// [`conv2d`] reading the bias and multipliers through `ch`.
///
/// Output pixels go in raster order, a block at a time: the block's input is read (widened
/// into the scratch) before any of its outputs is written, so the output may stream over the
/// consumed input (`ops::conv2d::stream_lead`).
pub fn conv2d_with<B: Blocks, C: ChannelParams>(
    b: &B,
    n: &Node<'_>,
    ch: &C,
    io: &mut Io<'_>,
    scratch: &mut [i8],
) {
    let (i, o, win) = (n.input.shape, n.output_info.shape, n.window);
    let (kh, kw) = (win.kernel_h, win.kernel_w);
    let per = kh * kw * i.c;
    let groups = per.div_ceil(4);
    let full = per / 4;
    let aligned = i.c.is_multiple_of(4);
    let (col, rest) = halves(scratch).split_at_mut(groups * GROUP_HALVES);
    let z = n.input.quant.zero_point;
    // Unaligned channel counts (the 1- and 3-channel first layers): each pixel's patch is
    // gathered as int8 in OHWI order, padded taps and the depth's tail set to the zero point
    // (widened to 0), then widened in whole groups like an aligned run.
    let patch: &mut [i8] = if aligned {
        &mut []
    } else {
        let p = &mut bytemuck::cast_slice_mut::<i16, i8>(rest)[..4 * groups];
        p.fill(z);
        p
    };
    let pixels = o.h * o.w;
    // A pointwise conv (1x1, stride 1, no padding) reads input pixel `q` for output pixel `q`.
    let pointwise = kh == 1
        && kw == 1
        && win.stride_h == 1
        && win.stride_w == 1
        && win.pad_top + win.pad_left + win.pad_bottom + win.pad_right == 0
        && aligned;
    let layer = fused_layer(n);
    // The late-zero-point form applies to channels of a layer whose clamp is all of int8.
    let late_layer =
        layer.filter(|l| l.parts().1 == i8::MIN as i32 && l.parts().2 == i8::MAX as i32);
    // Every channel in the fused form with an upper clamp of 127, the parameters as slices:
    // full blocks take the channel loop of [`Blocks::channels8`] for every channel whose
    // last group lies inside the weights (all of them but, for a depth with a tail, the
    // last few — one unless the depth is below 4 — which the loop below takes).
    let lean_channels = match n.weights.len().checked_sub(4 * groups) {
        Some(slack) if per > 0 => (slack / per + 1).min(o.c),
        _ => 0,
    };
    // Every channel in the fused form, or (with a clamp that is all of int8) in the
    // late-zero-point form (MobileNetV1's late layers, whose shifts reach -31).
    let lean = match (layer, ch.slices()) {
        (Some(l), Some((bias, mult)))
            if lean_channels > 0
                && groups > 0
                && l.parts().2 == i8::MAX as i32
                && bias.len() >= o.c
                && mult.len() >= o.c =>
        {
            let qm = |&[m, s]: &[i32; 2]| QuantizedMultiplier {
                multiplier: m,
                shift: s,
            };
            let mult_c = &mult[..o.c];
            let late = if mult_c.iter().all(|w| l.channel(qm(w)).is_some()) {
                Some(false)
            } else if l.parts().1 == i8::MIN as i32
                && per.is_multiple_of(4)
                && mult_c.iter().all(|w| l.late_channel(qm(w)).is_some())
            {
                Some(true)
            } else {
                None
            };
            late.map(|late| (&bias[..lean_channels], &mult[..lean_channels], l, late))
        }
        _ => None,
    };
    // The output rows and columns whose windows lie inside the input (no padded tap).
    let inside = |pad: usize, stride: usize, k: usize, size: usize| {
        let first = pad.div_ceil(stride.max(1));
        let end = if size + pad >= k {
            (size + pad - k) / stride.max(1) + 1
        } else {
            0
        };
        (first, end.max(first))
    };
    let rows = inside(win.pad_top, win.stride_h, kh, i.h);
    let cols = inside(win.pad_left, win.stride_w, kw, i.w);
    let run = kw * i.c;
    let mut start = 0;
    // The output position of the block's first pixel, kept without divisions.
    let (mut oy, mut ox) = (0, 0);
    while start < pixels {
        let count = (pixels - start).min(PIXELS);
        if pointwise && count <= 2 {
            // One or two pixels (the end of a small image, e.g. 9 = 8 + 1): the block would
            // pay all 8 pixels' MACs, so each pixel runs as a dense layer instead, its input
            // widened contiguously (both pixels before any output is written).
            let xs = io.input(start * i.c..(start + count) * i.c);
            for (cells, x) in col.chunks_exact_mut(i.c).zip(xs.chunks_exact(i.c)) {
                for (cell, v) in cells.chunks_exact_mut(4).zip(x.chunks_exact(4)) {
                    v1::widen_group([v[0], v[1], v[2], v[3]], z as i16, cell);
                }
            }
            let out = io.output(start * o.c..(start + count) * o.c);
            for (x, out) in col.chunks_exact(i.c).zip(out.chunks_exact_mut(o.c)) {
                let mut oc = 0;
                while oc < o.c {
                    let rows = (o.c - oc).min(4);
                    let mut acc = [0i32; 4];
                    for (r, a) in acc[..rows].iter_mut().enumerate() {
                        *a = ch.bias(oc + r);
                    }
                    b.dense_rows(&mut acc[..rows], x, &n.weights[oc * per..], per);
                    for (r, &a) in acc[..rows].iter().enumerate() {
                        let words = ch.words(oc + r);
                        out[oc + r] = match fused_channel(layer, words) {
                            Some(q) => q.apply(a),
                            None => match late_channel(late_layer, words) {
                                Some(q) => q.apply_late(a, n.output_info.quant.zero_point as i32),
                                None => Requant::with_words(n, words).apply(n.rule, a),
                            },
                        };
                    }
                    oc += rows;
                }
            }
            start += count;
            continue;
        }
        if pointwise {
            let xs = io.input(start * i.c..(start + count) * i.c);
            for (p, x) in xs.chunks_exact(i.c).enumerate() {
                b.widen(x, i.c / 4, z, &mut col[4 * p..]);
            }
        }
        for p in 0..if pointwise { 0 } else { count } {
            if p > 0 {
                ox += 1;
                if ox == o.w {
                    (oy, ox) = (oy + 1, 0);
                }
            }
            if (rows.0..rows.1).contains(&oy) && (cols.0..cols.1).contains(&ox) && run > 0 {
                // The whole window: `kh` runs of `kw * C` bytes, `W * C` apart, into
                // consecutive groups — through the patch for a depth that is not a multiple
                // of 4 (whose tail stays at the zero point).
                let at = ((oy * win.stride_h - win.pad_top) * i.w + ox * win.stride_w
                    - win.pad_left)
                    * i.c;
                let xs = io.input(at..at + (kh - 1) * i.w * i.c + run);
                if aligned {
                    b.widen_rows(xs, i.w * i.c, kh, run / 4, z, &mut col[4 * p..]);
                } else {
                    let out = &mut col[4 * p..];
                    b.gather_widen(xs, i.w * i.c, kh, run, patch, groups, z, out);
                }
                continue;
            }
            let (ky0, ky1, iy0) = taps(oy, win.stride_h, win.pad_top, kh, i.h);
            let (kx0, kx1, ix0) = taps(ox, win.stride_w, win.pad_left, kw, i.w);
            let padded = ky1 - ky0 != kh || kx1 - kx0 != kw;
            if !aligned {
                if padded {
                    patch.fill(z);
                }
                for ky in ky0..ky1 {
                    let iy = (iy0 + ky as isize) as usize;
                    let ix = (ix0 + kx0 as isize) as usize;
                    let len = (kx1 - kx0) * i.c;
                    let at = (iy * i.w + ix) * i.c;
                    let j0 = (ky * kw + kx0) * i.c;
                    copy_small(&mut patch[j0..j0 + len], io.input(at..at + len));
                }
                b.widen(patch, groups, z, &mut col[4 * p..]);
                continue;
            }
            if padded {
                // Padded taps read zeros. (Cells left over from another pixel or block, of
                // the pixels past `count` and of the depth's tail only meet zero weights or
                // feed discarded sums.)
                for cell in col.chunks_exact_mut(4).skip(p).step_by(PIXELS) {
                    cell.fill(0);
                }
            }
            if kx0 == kx1 {
                continue;
            }
            for ky in ky0..ky1 {
                let iy = (iy0 + ky as isize) as usize;
                let ix = (ix0 + kx0 as isize) as usize;
                let len = (kx1 - kx0) * i.c;
                let at = (iy * i.w + ix) * i.c;
                let xs = io.input(at..at + len);
                let j0 = (ky * kw + kx0) * i.c;
                b.widen(xs, len / 4, z, &mut col[(j0 / 4) * GROUP_HALVES + 4 * p..]);
            }
        }
        // On to the next block's first pixel.
        if pointwise {
            oy = (start + count) / o.w.max(1);
            ox = (start + count) % o.w.max(1);
        } else {
            ox += 1;
            if ox == o.w {
                (oy, ox) = (oy + 1, 0);
            }
        }
        let out = io.output(start * o.c..(start + count) * o.c);
        let mut first = 0;
        if let (Some((bias, mult, layer, late)), PIXELS) = (lean, count) {
            b.channels8(
                col, n.weights, groups, per, bias, mult, &layer, out, o.c, late,
            );
            first = bias.len();
        }
        for oc in first..o.c {
            let words = ch.words(oc);
            let bias = ch.bias(oc);
            let at = oc * per;
            // The depth's tail (when `per % 4 != 0`) runs as a whole group: the bytes past the
            // row are the next row's weights, which meet the tail's zero cells. The last
            // row has none past it and takes its tail as a word padded with zeros.
            let acc = match n.weights.get(at..at + 4 * groups) {
                Some(row) if count > 4 => b.mac8([bias; PIXELS], col, row, groups),
                Some(row) => widen4(b.mac4([bias; 4], col, row, groups)),
                None => {
                    let row = &n.weights[at..at + per];
                    let mut last = [0i8; 4];
                    for (l, &wt) in last.iter_mut().zip(&row[4 * full..]) {
                        *l = wt;
                    }
                    let tail_col = &col[full * GROUP_HALVES..];
                    if count > 4 {
                        let acc = b.mac8([bias; PIXELS], col, row, full);
                        b.mac8(acc, tail_col, &last, 1)
                    } else {
                        let acc = b.mac4([bias; 4], col, row, full);
                        widen4(b.mac4(acc, tail_col, &last, 1))
                    }
                }
            };
            match fused_channel(layer, words) {
                Some(q) if count == PIXELS => b.requant8(&acc, &q, &mut out[oc..], o.c),
                _ => match late_channel(late_layer, words) {
                    Some(q) => {
                        let z = n.output_info.quant.zero_point as i32;
                        for (y, &a) in out[oc..].iter_mut().step_by(o.c).zip(&acc[..count]) {
                            *y = q.apply_late(a, z);
                        }
                    }
                    None => {
                        let rq = Requant::with_words(n, words);
                        for (y, &a) in out[oc..].iter_mut().step_by(o.c).zip(&acc[..count]) {
                            *y = rq.apply(n.rule, a);
                        }
                    }
                },
            }
        }
        start += count;
    }
}

/// Four accumulators as a block's eight (the last four unused).
#[inline(always)]
fn widen4(a: [i32; 4]) -> [i32; PIXELS] {
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0]
}

/// `dst.copy_from_slice(src)` for the few bytes of a patch row (3 to 30 in the first layers),
/// a word at a time: cheaper than a `memcpy` call there.
#[inline(always)]
fn copy_small(dst: &mut [i8], src: &[i8]) {
    let mut d = dst.chunks_exact_mut(4);
    let mut s = src.chunks_exact(4);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// conv2d with the fastest blocks of this target and the channel words from `words`; the
/// scalar reference when the node's blobs cannot be read as words (`None`).
pub fn conv2d_fast(n: &Node<'_>, words: Option<Words<'_>>, io: &mut Io<'_>, scratch: &mut [i8]) {
    #[cfg(tinyconv_dsp)]
    let b = &Asm;
    #[cfg(not(tinyconv_dsp))]
    let b = &Emulated;
    match words {
        Some(w) => conv2d_with(b, n, &w, io, scratch),
        // Model bytes not word-aligned in memory (never for a model in a `static` aligned
        // as the firmware's): the scalar reference, rather than a second copy of the kernel
        // in flash.
        None => crate::graph::ops::conv2d::reference_io(n, io),
    }
}
