//! The blocked kernels: conv (3x3) and dense layers computed with the multiply-accumulate
//! blocks of [`super::dsp`], generic over their implementation ([`dsp::Mac`]), so the same
//! driver code runs with the Cortex-M4 instructions on the MCU and with their exact portable
//! model on the host (where the tests hold it bit-exact with the scalar reference).
//!
//! * **3x3 conv, channels a multiple of 4** (conv2, conv3): output tiles of 2x4 pixels. For
//!   each tile the 4x6-pixel input patch is widened once into the scratch (int16 `x - z`,
//!   [`dsp`]'s group-major layout, padding as zeros), then every output channel runs the tile
//!   block over the 9 taps: 8 accumulators sharing each weight word. With pooling a tile is two
//!   2x2 windows: the max of each window's four int32 accumulators is requantized once
//!   (requantization is monotonic, so this equals pooling the requantized values).
//! * **3x3 conv, one input channel** (conv1): the patch cells hold the three horizontal taps
//!   of a pixel (`[x(c), x(c+2), x(c+1), 0]`), the filters are repacked into the scratch as
//!   `[w(ky,0), w(ky,1), w(ky,2), 0]` per kernel row, and the tile block runs as a 3x1 conv
//!   with one group.
//! * **dense, inputs a multiple of 4**: the input vector is widened once; rows go four at a
//!   time, sharing every activation load.
//!
//! Anything else (other kernel sizes, channel counts) is left to the portable kernels:
//! [`plan`] says which applies.

use super::Conv;
use super::dsp::{self, CELL, GROUP_HALVES, Mac, PATCH_COLS, PATCH_ROWS, TILE_PIXELS};
use super::requant::requantize_fast as requantize;
use crate::quant::Multiplier;

/// Which blocked kernel a convolution can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// 3x3, input channels a multiple of 4.
    Conv3x3,
    /// 3x3, one input channel.
    Conv3x3Single,
    /// A 1x1 conv over a 1x1 input (a dense layer), inputs a multiple of 4.
    Dense,
}

/// The blocked kernel for a layer's shape, if any (a `const fn` so that the arena size can
/// include the scratch at compile time).
pub const fn plan(
    kernel: usize,
    in_h: usize,
    in_w: usize,
    in_c: usize,
    pad: usize,
) -> Option<Plan> {
    if kernel == 3 && pad <= 2 && in_c > 0 {
        if in_c.is_multiple_of(4) {
            return Some(Plan::Conv3x3);
        }
        if in_c == 1 {
            return Some(Plan::Conv3x3Single);
        }
    }
    if kernel == 1 && in_h == 1 && in_w == 1 && pad == 0 && in_c.is_multiple_of(4) && in_c > 0 {
        return Some(Plan::Dense);
    }
    None
}

/// Alignment slack included in every scratch size (the scratch is aligned inside the slice).
pub const SCRATCH_ALIGN: usize = 8;

/// Scratch bytes a layer needs with its blocked kernel (0 when none applies).
pub const fn scratch_len(
    kernel: usize,
    in_h: usize,
    in_w: usize,
    in_c: usize,
    pad: usize,
    out_c: usize,
) -> usize {
    match plan(kernel, in_h, in_w, in_c, pad) {
        Some(Plan::Conv3x3) => in_c / 4 * GROUP_HALVES * 2 + SCRATCH_ALIGN,
        Some(Plan::Conv3x3Single) => GROUP_HALVES * 2 + out_c * 12 + SCRATCH_ALIGN,
        Some(Plan::Dense) => in_c * 2 + SCRATCH_ALIGN,
        None => 0,
    }
}

/// The plan for a [`Conv`].
pub fn plan_of(conv: &Conv<'_>) -> Option<Plan> {
    plan(
        conv.kernel,
        conv.input.h,
        conv.input.w,
        conv.input.c,
        conv.pad,
    )
}

/// Splits the scratch into an 8-byte-aligned int16 region of `halves` values and the bytes
/// after it.
fn carve(scratch: &mut [i8], halves: usize) -> (&mut [i16], &mut [i8]) {
    let skip = scratch
        .as_ptr()
        .align_offset(SCRATCH_ALIGN)
        .min(SCRATCH_ALIGN);
    let (head, rest) = scratch[skip..].split_at_mut(halves * 2);
    let head: &mut [i16] = bytemuck::cast_slice_mut(head);
    (head, rest)
}

/// Per-channel bias and multiplier, read as words when the blobs allow it.
#[derive(Clone, Copy)]
struct Params<'a> {
    bytes: super::ChannelParams<'a>,
    words: Option<(&'a [i32], &'a [u32])>,
}

impl<'a> Params<'a> {
    fn new(bytes: super::ChannelParams<'a>) -> Self {
        Params {
            bytes,
            words: bytes.words(),
        }
    }

    #[inline(always)]
    fn get(&self, channel: usize) -> (i32, Multiplier) {
        match self.words {
            Some((bias, m)) => (
                bias[channel],
                Multiplier {
                    mantissa: m[2 * channel],
                    shift: m[2 * channel + 1] as i32,
                },
            ),
            None => (self.bytes.bias(channel), self.bytes.multiplier(channel)),
        }
    }
}

/// Runs `conv` with its blocked kernel. `scratch` must hold at least
/// [`scratch_len`] bytes; the caller checked [`plan_of`] is `Some`.
pub fn conv2d<M: Mac>(
    mac: &M,
    conv: &Conv<'_>,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
) {
    match plan_of(conv) {
        Some(Plan::Conv3x3) => tiled(mac, conv, input, output, scratch, false),
        Some(Plan::Conv3x3Single) => tiled(mac, conv, input, output, scratch, true),
        Some(Plan::Dense) => dense(mac, conv, input, output, scratch),
        None => panic!("no blocked kernel for this layer"),
    }
}

fn dense<M: Mac>(mac: &M, conv: &Conv<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    let n = conv.input.c;
    let (x, _) = carve(scratch, n);
    let z = conv.input_zero_point as i16;
    for (g, cell) in x.chunks_exact_mut(CELL).enumerate() {
        let v = &input[4 * g..4 * g + 4];
        dsp::widen_group([v[0], v[1], v[2], v[3]], z, cell);
    }
    let zy = conv.output_zero_point as i32;
    let floor = conv.output_floor();
    let params = Params::new(conv.channels);
    let out = &mut output[..conv.out_channels];
    for (block, ys) in out.chunks_mut(4).enumerate() {
        let first = block * 4;
        let mut acc = [0i32; 4];
        let acc = &mut acc[..ys.len()];
        mac.dense(acc, x, &conv.weights[first * n..(first + ys.len()) * n], n);
        for (i, y) in ys.iter_mut().enumerate() {
            let (bias, m) = params.get(first + i);
            *y = requantize(acc[i] + bias, m, zy, floor, i8::MAX as i32);
        }
    }
}

/// The 3x3 kernels: tiles of 2x4 conv output pixels.
fn tiled<M: Mac>(
    mac: &M,
    conv: &Conv<'_>,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
    single: bool,
) {
    let full = conv.conv_output();
    let out = conv.output();
    if out.is_empty() {
        return;
    }
    let c = conv.input.c;
    let groups = if single { 1 } else { c / 4 };
    let (patch, rest) = carve(scratch, groups * GROUP_HALVES);
    // One input channel: the filters repacked as [w(ky,0), w(ky,1), w(ky,2), 0] per row.
    let packed: &[i8] = if single {
        let packed = &mut rest[..conv.out_channels * 12];
        for (co, p) in packed.chunks_exact_mut(12).enumerate() {
            let f = conv.filter(co);
            for ky in 0..3 {
                p[4 * ky..4 * ky + 4].copy_from_slice(&[
                    f[3 * ky],
                    f[3 * ky + 1],
                    f[3 * ky + 2],
                    0,
                ]);
            }
        }
        packed
    } else {
        &[]
    };
    let filter_len = if single { 12 } else { 9 * c };
    let (kx, ky) = if single { (1, 3) } else { (3, 3) };
    let zy = conv.output_zero_point as i32;
    let floor = conv.output_floor();
    let params = Params::new(conv.channels);
    let (tiles_y, tiles_x) = (full.h.div_ceil(2), full.w.div_ceil(4));
    for ty in 0..tiles_y {
        for tx in 0..tiles_x {
            let (oy, ox) = (2 * ty, 4 * tx);
            if conv.pool && (oy + 1 >= full.h || ty >= out.h) {
                continue; // a pooled layer drops an odd last conv row
            }
            widen_patch(conv, input, patch, oy, ox, single);
            for co in 0..conv.out_channels {
                let w = if single {
                    &packed[co * 12..co * 12 + 12]
                } else {
                    &conv.weights[co * filter_len..(co + 1) * filter_len]
                };
                let mut acc = [0i32; TILE_PIXELS];
                mac.tile(&mut acc, patch, w, groups, kx, ky);
                let (bias, m) = params.get(co);
                if conv.pool {
                    for j in 0..2 {
                        let px = 2 * tx + j;
                        if px >= out.w {
                            break;
                        }
                        let best = acc[2 * j]
                            .max(acc[2 * j + 1])
                            .max(acc[4 + 2 * j].max(acc[5 + 2 * j]));
                        output[(ty * out.w + px) * out.c + co] =
                            requantize(best + bias, m, zy, floor, i8::MAX as i32);
                    }
                } else {
                    for (p, &a) in acc.iter().enumerate() {
                        let (y, x) = (oy + p / 4, ox + p % 4);
                        if y < full.h && x < full.w {
                            output[(y * full.w + x) * full.c + co] =
                                requantize(a + bias, m, zy, floor, i8::MAX as i32);
                        }
                    }
                }
            }
        }
    }
}

/// Widens the input patch of the tile whose top-left conv output pixel is (`oy`, `ox`).
fn widen_patch(
    conv: &Conv<'_>,
    input: &[i8],
    patch: &mut [i16],
    oy: usize,
    ox: usize,
    single: bool,
) {
    let (h, w, c) = (conv.input.h, conv.input.w, conv.input.c);
    let z = conv.input_zero_point as i16;
    let pad = conv.pad;
    // Input coordinate of patch row/column `i` (None in the padding or beyond the input).
    let at = |o: usize, i: usize, len: usize| (o + i).checked_sub(pad).filter(|&v| v < len);
    if single {
        for r in 0..PATCH_ROWS {
            let iy = at(oy, r, h);
            for col in 0..PATCH_COLS {
                let x = |k: usize| match (iy, at(ox, col + k, w)) {
                    (Some(y), Some(x)) => input[y * w + x] as i16 - z,
                    _ => 0,
                };
                let cell = &mut patch[(r * PATCH_COLS + col) * CELL..][..CELL];
                cell.copy_from_slice(&[x(0), x(2), x(1), 0]);
            }
        }
        return;
    }
    for r in 0..PATCH_ROWS {
        let iy = at(oy, r, h);
        for col in 0..PATCH_COLS {
            let cell = (r * PATCH_COLS + col) * CELL;
            match (iy, at(ox, col, w)) {
                (Some(y), Some(x)) => {
                    let px = &input[(y * w + x) * c..][..c];
                    for (g, v) in px.chunks_exact(4).enumerate() {
                        let dst = &mut patch[g * GROUP_HALVES + cell..][..CELL];
                        dsp::widen_group([v[0], v[1], v[2], v[3]], z, dst);
                    }
                }
                _ => {
                    for g in 0..c / 4 {
                        patch[g * GROUP_HALVES + cell..][..CELL].fill(0);
                    }
                }
            }
        }
    }
}
