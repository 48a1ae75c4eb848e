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
//! * **3x3 conv, one input channel** (conv1): the input is widened once into a zero-padded
//!   int16 image, the filters are prepared once as int16 pairs ([`dsp::prepare_quad_filter`]),
//!   and each output channel runs [`dsp::Mac::quad`] over 2x2 blocks of conv outputs (one
//!   pooling window): 37 instructions for 36 MACs.
//! * **dense, inputs a multiple of 4**: the input vector is widened once; rows go four at a
//!   time, sharing every activation load.
//!
//! Anything else (other kernel sizes, channel counts) is left to the portable kernels:
//! [`plan`] says which applies.

use super::Conv;
use super::dsp::{self, CELL, GROUP_HALVES, Mac, PATCH_COLS, PATCH_ROWS, QUAD_FILTER};
use super::requant::Requant;
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
        Some(Plan::Conv3x3Single) => {
            let (rows, stride) = single_image(in_h, in_w, pad);
            (rows * stride + out_c * QUAD_FILTER) * 2 + SCRATCH_ALIGN
        }
        Some(Plan::Dense) => in_c * 2 + SCRATCH_ALIGN,
        None => 0,
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
        Some(Plan::Conv3x3) => tiled(mac, conv, input, output, scratch),
        Some(Plan::Conv3x3Single) => single(mac, conv, input, output, scratch),
        Some(Plan::Dense) => dense(mac, conv, input, output, scratch),
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

fn dense<M: Mac>(mac: &M, conv: &Conv<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    let n = conv.input.c;
    let (x, _) = carve(scratch, n);
    let z = conv.input_zero_point as i16;
    for (g, cell) in x.chunks_exact_mut(CELL).enumerate() {
        let v = &input[4 * g..4 * g + 4];
        dsp::widen_group([v[0], v[1], v[2], v[3]], z, cell);
    }
    let params = Params::new(conv.channels);
    let out = &mut output[..conv.out_channels];
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
fn single<M: Mac>(mac: &M, conv: &Conv<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
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
    for (src, dst) in input[..h * w]
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

/// The 3x3 kernel for input channels a multiple of 4: tiles of 2x4 conv output pixels.
fn tiled<M: Mac>(mac: &M, conv: &Conv<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    let full = conv.conv_output();
    let out = conv.output();
    if out.is_empty() {
        return;
    }
    let groups = conv.input.c / 4;
    let (patch, _) = carve(scratch, groups * GROUP_HALVES);
    let patch: &mut [i16] = patch;
    let out_c = conv.out_channels;
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
            widen_patch(conv, input, patch, oy, ox);
            let patch: &[i16] = patch;
            if conv.pool && 2 * tx + 1 < out.w {
                // Both pooling windows inside the output: the common case.
                let at = (ty * out.w + 2 * tx) * out_c;
                let (o0, o1) = output[at..at + 2 * out_c].split_at_mut(out_c);
                for (co, ((w, y0), y1)) in weights
                    .chunks_exact(filter_len)
                    .zip(o0.iter_mut())
                    .zip(o1.iter_mut())
                    .enumerate()
                {
                    let a = mac.tile(patch, w, groups);
                    let (bias, rq) = requant(conv, &params, co);
                    *y0 = rq.apply(max4(a[0], a[1], a[4], a[5]) + bias);
                    *y1 = rq.apply(max4(a[2], a[3], a[6], a[7]) + bias);
                }
                continue;
            }
            for (co, w) in weights.chunks_exact(filter_len).enumerate() {
                let acc = mac.tile(patch, w, groups);
                let (bias, rq) = requant(conv, &params, co);
                if conv.pool {
                    let px = 2 * tx; // the second window lies outside
                    let best = max4(acc[0], acc[1], acc[4], acc[5]);
                    output[(ty * out.w + px) * out_c + co] = rq.apply(best + bias);
                } else {
                    for (p, &a) in acc.iter().enumerate() {
                        let (y, x) = (oy + p / 4, ox + p % 4);
                        if y < full.h && x < full.w {
                            output[(y * full.w + x) * out_c + co] = rq.apply(a + bias);
                        }
                    }
                }
            }
        }
    }
}

/// Widens the input patch of the tile whose top-left conv output pixel is (`oy`, `ox`).
fn widen_patch(conv: &Conv<'_>, input: &[i8], patch: &mut [i16], oy: usize, ox: usize) {
    let (h, w, c) = (conv.input.h, conv.input.w, conv.input.c);
    let z = conv.input_zero_point as i16;
    let pad = conv.pad;
    // Input coordinate of patch row/column `i` (None in the padding or beyond the input).
    let at = |o: usize, i: usize, len: usize| (o + i).checked_sub(pad).filter(|&v| v < len);
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
