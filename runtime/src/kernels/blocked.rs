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
//!   With less scratch than a whole patch ([`lean_scratch_len`], the arena plan's memory
//!   mode) the tile runs *lean*: the input channels are split into [`lean_groups`] passes and
//!   the output channels into chunks; per chunk each pass widens its part of the patch and
//!   adds its products onto the chunk's int32 partial sums, which are requantized after the
//!   last pass. The same sums in another order, so bit-identical, in a quarter of the patch
//!   memory, for the cost of widening the patch once a chunk instead of once a tile (less
//!   the part the previous chunk ended with: the pass order alternates).
//! * **3x3 conv, one input channel** (conv1): the input is widened once into a zero-padded
//!   int16 image, the filters are prepared once as int16 pairs ([`dsp::prepare_quad_filter`]),
//!   and each output channel runs [`dsp::Mac::quad`] over 2x2 blocks of conv outputs (one
//!   pooling window): 37 instructions for 36 MACs.
//! * **dense, inputs a multiple of 4**: the input vector is widened once; rows go four at a
//!   time, sharing every activation load.
//!
//! Anything else (other kernel sizes, channel counts) is left to the portable kernels:
//! [`plan`] says which applies.

use super::dsp::{self, CELL, GROUP_HALVES, Mac, PATCH_COLS, PATCH_ROWS, QUAD_FILTER, TILE_PIXELS};
use super::requant::Requant;
use super::{Conv, Separate, Tensors};
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

/// Output channels a chunk of the lean 3x3 tile holds partial sums for, at most (fewer when
/// the layer has fewer): each chunk widens the patch again, so fewer, larger chunks are faster.
pub const LEAN_CHANNELS: usize = 32;

/// Bytes of int32 partial sums per output channel of a lean chunk (one a tile pixel).
const PARTIAL_BYTES: usize = TILE_PIXELS * 4;

/// Groups of four input channels a lean 3x3 pass widens: a quarter of them, when the layer has
/// 16 or more groups in a multiple of 4 (smaller layers have small patches and no lean mode).
pub const fn lean_groups(groups: usize) -> Option<usize> {
    if groups >= 16 && groups.is_multiple_of(4) {
        Some(groups / 4)
    } else {
        None
    }
}

/// Scratch bytes a layer needs with its blocked kernel at full speed (0 when none applies).
pub const fn scratch_len(
    kernel: usize,
    in_h: usize,
    in_w: usize,
    in_c: usize,
    pad: usize,
    out_c: usize,
) -> usize {
    match plan(kernel, in_h, in_w, in_c, pad) {
        Some(p) => full_scratch_len(p, in_h, in_w, in_c, pad, out_c),
        None => 0,
    }
}

/// Scratch bytes of the lean mode (the arena plan's memory mode): [`lean_groups`] of the patch
/// plus the partial sums of a chunk of [`LEAN_CHANNELS`]; the full scratch when the layer has
/// no lean mode or it would not be smaller (0 when no blocked kernel applies).
pub const fn lean_scratch_len(
    kernel: usize,
    in_h: usize,
    in_w: usize,
    in_c: usize,
    pad: usize,
    out_c: usize,
) -> usize {
    match plan(kernel, in_h, in_w, in_c, pad) {
        Some(p) => {
            let full = full_scratch_len(p, in_h, in_w, in_c, pad, out_c);
            min(lean_len(p, in_c, out_c, min(LEAN_CHANNELS, out_c)), full)
        }
        None => 0,
    }
}

/// The least scratch with which the blocked kernel `plan` runs (lean with one-channel chunks
/// when it has a lean mode); with less, the portable kernel runs.
pub const fn min_scratch_len(
    plan: Plan,
    in_h: usize,
    in_w: usize,
    in_c: usize,
    pad: usize,
    out_c: usize,
) -> usize {
    min(
        lean_len(plan, in_c, out_c, 1),
        full_scratch_len(plan, in_h, in_w, in_c, pad, out_c),
    )
}

const fn min(a: usize, b: usize) -> usize {
    if a < b { a } else { b }
}

const fn full_scratch_len(
    plan: Plan,
    in_h: usize,
    in_w: usize,
    in_c: usize,
    pad: usize,
    out_c: usize,
) -> usize {
    match plan {
        Plan::Conv3x3 => in_c / 4 * GROUP_HALVES * 2 + SCRATCH_ALIGN,
        Plan::Conv3x3Single => {
            let (rows, stride) = single_image(in_h, in_w, pad);
            (rows * stride + out_c * QUAD_FILTER) * 2 + SCRATCH_ALIGN
        }
        Plan::Dense => in_c * 2 + SCRATCH_ALIGN,
    }
}

/// Lean scratch with chunks of `channels` output channels (`usize::MAX` when there is no lean
/// mode).
const fn lean_len(plan: Plan, in_c: usize, out_c: usize, channels: usize) -> usize {
    match (plan, lean_groups(in_c / 4)) {
        (Plan::Conv3x3, Some(pass)) if out_c > 0 => {
            pass * GROUP_HALVES * 2 + channels * PARTIAL_BYTES + SCRATCH_ALIGN
        }
        _ => usize::MAX,
    }
}

/// Rows and row stride (int16 values, even) of the widened, zero-padded image of the
/// single-channel kernel: the padded input plus one row and column, which a 2x2 block at an
/// odd-sized edge reads (and ignores).
const fn single_image(in_h: usize, in_w: usize, pad: usize) -> (usize, usize) {
    (in_h + 2 * pad + 1, (in_w + 2 * pad + 1).next_multiple_of(2))
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

/// Runs `conv` with its blocked kernel. `scratch` must hold at least [`min_scratch_len`]
/// bytes; the caller checked [`plan_of`] is `Some`.
pub fn conv2d<M: Mac>(
    mac: &M,
    conv: &Conv<'_>,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
) {
    conv2d_in(mac, conv, &mut Separate { input, output }, scratch)
}

/// [`conv2d`] on [`Tensors`]. Every kernel here reads an output row's receptive field before
/// it writes the row (the row order [`crate::plan`] relies on). A trait object, not a generic:
/// the tile blocks are large, and one copy of them serves both kinds of tensors.
pub fn conv2d_in<M: Mac>(mac: &M, conv: &Conv<'_>, t: &mut dyn Tensors, scratch: &mut [i8]) {
    match plan_of(conv) {
        Some(Plan::Conv3x3) => tiled(mac, conv, t, scratch),
        Some(Plan::Conv3x3Single) => single(mac, conv, t, scratch),
        Some(Plan::Dense) => dense(mac, conv, t, scratch),
        None => panic!("no blocked kernel for this layer"),
    }
}

/// The requantization of output channel `channel`, prepared.
#[inline(always)]
fn requant(conv: &Conv<'_>, params: &Params<'_>, channel: usize) -> (i32, Requant) {
    let (bias, m) = params.get(channel);
    let rq = Requant::new(m, conv.output_zero_point as i32, conv.output_floor());
    (bias, rq)
}

#[inline(always)]
fn max4(a: i32, b: i32, c: i32, d: i32) -> i32 {
    a.max(b).max(c.max(d))
}

fn dense<M: Mac>(mac: &M, conv: &Conv<'_>, t: &mut dyn Tensors, scratch: &mut [i8]) {
    let n = conv.input.c;
    let (x, _) = carve(scratch, n);
    let z = conv.input_zero_point as i16;
    let input = t.input();
    for (g, cell) in x.chunks_exact_mut(CELL).enumerate() {
        let v = &input[4 * g..4 * g + 4];
        dsp::widen_group([v[0], v[1], v[2], v[3]], z, cell);
    }
    let params = Params::new(conv.channels);
    let out = &mut t.output()[..conv.out_channels];
    for (block, ys) in out.chunks_mut(4).enumerate() {
        let first = block * 4;
        let mut acc = [0i32; 4];
        let acc = &mut acc[..ys.len()];
        mac.dense(acc, x, &conv.weights[first * n..(first + ys.len()) * n], n);
        for (i, y) in ys.iter_mut().enumerate() {
            let (bias, rq) = requant(conv, &params, first + i);
            *y = rq.apply(acc[i] + bias);
        }
    }
}

/// The single-channel 3x3 kernel: 2x2 blocks of conv outputs, channel by channel.
fn single<M: Mac>(mac: &M, conv: &Conv<'_>, t: &mut dyn Tensors, scratch: &mut [i8]) {
    let full = conv.conv_output();
    let out = conv.output();
    if out.is_empty() {
        return;
    }
    let (h, w, pad) = (conv.input.h, conv.input.w, conv.pad);
    let (rows, stride) = single_image(h, w, pad);
    let out_c = conv.out_channels;
    let (scratch, _) = carve(scratch, rows * stride + out_c * QUAD_FILTER);
    let (img, filters) = scratch.split_at_mut(rows * stride);
    img.fill(0);
    let z = conv.input_zero_point as i16;
    for (src, dst) in t.input()[..h * w]
        .chunks_exact(w)
        .zip(img[pad * stride + pad..].chunks_mut(stride))
    {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s as i16 - z;
        }
    }
    for (co, f) in filters.chunks_exact_mut(QUAD_FILTER).enumerate() {
        dsp::prepare_quad_filter(conv.filter(co), f);
    }
    let img: &[i16] = img;
    let params = Params::new(conv.channels);
    // The whole input is widened: from here on only the output is touched.
    let output = t.output();
    for (co, f) in filters.chunks_exact(QUAD_FILTER).enumerate() {
        let (bias, rq) = requant(conv, &params, co);
        if conv.pool {
            let mut o = co;
            for by in 0..out.h {
                let mut at = 2 * by * stride;
                for _ in 0..out.w {
                    let a = mac.quad(img, stride, at, f);
                    output[o] = rq.apply(max4(a[0], a[1], a[2], a[3]) + bias);
                    o += out_c;
                    at += 2;
                }
            }
        } else {
            for by in 0..full.h.div_ceil(2) {
                for bx in 0..full.w.div_ceil(2) {
                    let a = mac.quad(img, stride, 2 * (by * stride + bx), f);
                    for (o, &v) in a.iter().enumerate() {
                        let (y, x) = (2 * by + o / 2, 2 * bx + o % 2);
                        if y < full.h && x < full.w {
                            output[(y * full.w + x) * out_c + co] = rq.apply(v + bias);
                        }
                    }
                }
            }
        }
    }
}

/// The 3x3 kernel for input channels a multiple of 4: tiles of 2x4 conv output pixels, with
/// the whole patch when the scratch holds one, else lean (see the module docs).
fn tiled<M: Mac>(mac: &M, conv: &Conv<'_>, t: &mut dyn Tensors, scratch: &mut [i8]) {
    let full = conv.conv_output();
    let out = conv.output();
    if out.is_empty() {
        return;
    }
    let groups = conv.input.c / 4;
    let out_c = conv.out_channels;
    let whole = full_scratch_len(Plan::Conv3x3, 0, 0, conv.input.c, 0, out_c);
    let (pass, chunk) = match lean_groups(groups) {
        Some(pass) if scratch.len() < whole => {
            let room = scratch
                .len()
                .saturating_sub(SCRATCH_ALIGN + pass * GROUP_HALVES * 2);
            let chunk = (room / PARTIAL_BYTES).min(out_c);
            assert!(chunk > 0, "scratch below blocked::min_scratch_len");
            (pass, chunk)
        }
        _ => (groups, out_c),
    };
    let passes = groups / pass;
    let (patch, rest) = carve(scratch, pass * GROUP_HALVES);
    // The lean mode's int32 sums (empty with a whole patch: one pass, nothing to carry).
    let partial: &mut [i32] = if passes > 1 {
        bytemuck::cast_slice_mut(&mut rest[..chunk * PARTIAL_BYTES])
    } else {
        &mut []
    };
    let filter_len = 9 * conv.input.c;
    let weights = &conv.weights[..out_c * filter_len];
    let params = Params::new(conv.channels);
    let (tiles_y, tiles_x) = (full.h.div_ceil(2), full.w.div_ceil(4));
    for ty in 0..tiles_y {
        for tx in 0..tiles_x {
            let (oy, ox) = (2 * ty, 4 * tx);
            if conv.pool && (ty >= out.h || 2 * tx >= out.w) {
                continue; // a pooled layer drops an odd last conv row and column
            }
            let tile = Tile { ty, tx, oy, ox };
            if passes == 1 {
                // The whole patch: widened once, every output channel runs on it.
                widen_patch(mac, conv, t.input(), patch, oy, ox, 0, groups);
                let patch: &[i16] = patch;
                let output = t.output();
                // Both pooling windows inside the output: the common case.
                let both = conv.pool && 2 * tx + 1 < out.w;
                let at = (ty * out.w + 2 * tx) * out_c;
                for (co, w) in weights.chunks_exact(filter_len).enumerate() {
                    // One call site: the block is inlined once.
                    let a = mac.tile(patch, w, groups);
                    if both {
                        let (bias, rq) = requant(conv, &params, co);
                        output[at + co] = rq.apply(max4(a[0], a[1], a[4], a[5]) + bias);
                        output[at + out_c + co] = rq.apply(max4(a[2], a[3], a[6], a[7]) + bias);
                    } else {
                        emit(conv, &params, &tile, co, a, output);
                    }
                }
                continue;
            }
            // Lean: per chunk of output channels, each pass adds onto the partial sums.
            // The passes run forwards in even chunks and backwards in odd ones, so each chunk
            // starts with the part of the patch the last one ended with: one widening saved.
            let mut widened = None;
            for (c, first) in (0..out_c).step_by(chunk).enumerate() {
                let count = chunk.min(out_c - first);
                let sums = &mut partial[..count * TILE_PIXELS];
                sums.fill(0);
                for i in 0..passes {
                    let p = if c % 2 == 0 { i } else { passes - 1 - i };
                    if widened != Some(p) {
                        widen_patch(mac, conv, t.input(), patch, oy, ox, p * pass, pass);
                        widened = Some(p);
                    }
                    let w = &weights[first * filter_len + p * pass * 4..];
                    mac.tile_pass(sums, patch, w, pass, groups);
                }
                let output = t.output();
                for (i, acc) in sums.chunks_exact(TILE_PIXELS).enumerate() {
                    let acc = acc.try_into().unwrap();
                    emit(conv, &params, &tile, first + i, acc, output);
                }
            }
        }
    }
}

/// Where a tile sits: tile row/column and its top-left conv output pixel.
struct Tile {
    ty: usize,
    tx: usize,
    oy: usize,
    ox: usize,
}

/// Requantizes (and pools) output channel `co` of a tile from its 8 accumulators.
#[inline(always)]
fn emit(
    conv: &Conv<'_>,
    params: &Params<'_>,
    tile: &Tile,
    co: usize,
    acc: [i32; TILE_PIXELS],
    output: &mut [i8],
) {
    let (full, out, out_c) = (conv.conv_output(), conv.output(), conv.out_channels);
    let (bias, rq) = requant(conv, params, co);
    if conv.pool {
        let at = (tile.ty * out.w + 2 * tile.tx) * out_c + co;
        output[at] = rq.apply(max4(acc[0], acc[1], acc[4], acc[5]) + bias);
        if 2 * tile.tx + 1 < out.w {
            output[at + out_c] = rq.apply(max4(acc[2], acc[3], acc[6], acc[7]) + bias);
        }
    } else {
        for (p, &a) in acc.iter().enumerate() {
            let (y, x) = (tile.oy + p / 4, tile.ox + p % 4);
            if y < full.h && x < full.w {
                output[(y * full.w + x) * out_c + co] = rq.apply(a + bias);
            }
        }
    }
}

/// Widens groups `first..first + count` of the input patch of the tile whose top-left conv
/// output pixel is (`oy`, `ox`) into `patch` (`count` groups, [`dsp`]'s layout).
#[allow(clippy::too_many_arguments)]
fn widen_patch<M: Mac>(
    mac: &M,
    conv: &Conv<'_>,
    input: &[i8],
    patch: &mut [i16],
    oy: usize,
    ox: usize,
    first: usize,
    count: usize,
) {
    let (h, w, c) = (conv.input.h, conv.input.w, conv.input.c);
    let z = conv.input_zero_point as i16;
    let pad = conv.pad;
    // Input coordinate of patch row/column `i` (None in the padding or beyond the input).
    let at = |o: usize, i: usize, len: usize| (o + i).checked_sub(pad).filter(|&v| v < len);
    for r in 0..PATCH_ROWS {
        let iy = at(oy, r, h);
        if let (Some(y), Some(x0), Some(_)) = (iy, at(ox, 0, w), at(ox, PATCH_COLS - 1, w)) {
            // The whole row inside the input: its 6 pixels in one block.
            let px = &input[(y * w + x0) * c + 4 * first..];
            let cells = &mut patch[r * PATCH_COLS * CELL..];
            mac.widen_cells(px, c, PATCH_COLS, z, cells, count);
            continue;
        }
        for col in 0..PATCH_COLS {
            let cell = (r * PATCH_COLS + col) * CELL;
            match (iy, at(ox, col, w)) {
                (Some(y), Some(x)) => {
                    let px = &input[(y * w + x) * c + 4 * first..][..4 * count];
                    mac.widen_cells(px, c, 1, z, &mut patch[cell..], count);
                }
                _ => {
                    for g in 0..count {
                        patch[g * GROUP_HALVES + cell..][..CELL].fill(0);
                    }
                }
            }
        }
    }
}
