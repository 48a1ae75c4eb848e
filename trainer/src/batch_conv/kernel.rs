//! One conv block of a whole batch — stride-1 convolution + bias, ReLU, 2x2 max pooling — in
//! the channel-major `[C, N, H, W]` ("CNHW") layout, forward and backward, as a few large GEMMs.
//!
//! In CNHW the im2col matrix of a batch is `col[tap][image·pixel]` (a tap being one
//! `(channel, ky, kx)`), and the convolution `[O, N, OH, OW]` is exactly `W[O][taps] · col`: no
//! transpose on either side. The images are taken in groups whose `col` holds about
//! [`COL_BUDGET`] floats (cache-sized); the groups run in parallel, each as single-threaded
//! GEMMs on its own buffers. A group's convolution output never leaves its buffer: it is
//! pooled straight into the block's output (keeping one winner byte per output for the
//! gradient), so the full-size activation is never written, zeroed or read back.
//! The backward pass takes the same groups: it expands the pooled gradient into the group's
//! `dY`, then `dW += dY · colᵀ`, `dcol = Wᵀ · dY`, and scatters `dcol` back (col2im) into the
//! group's images of `dX`. The sums run in a fixed order whatever the thread count, so results
//! are bit-for-bit reproducible (which `train --resume` relies on).

use std::ops::Range;

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, matmul};
use super::pool::{pool_plane, unpool_plane};

/// Floats of im2col matrix per image group (1 MiB): big enough for well-shaped GEMMs, small
/// enough that a group's im2col and output stay in a core's 2 MiB L2 cache.
pub const COL_BUDGET: usize = 1 << 18;

/// Shapes of one convolution: input `[channels, batch, height, width]` (CNHW), weights
/// `[filters, channels, kernel, kernel]` (OIHW, burn's and ONNX's layout), stride 1, `padding`
/// zeros on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub channels: usize,
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub filters: usize,
    pub kernel: usize,
    pub padding: usize,
}

impl ConvGeometry {
    pub fn out_height(&self) -> usize {
        self.height + 2 * self.padding + 1 - self.kernel
    }

    pub fn out_width(&self) -> usize {
        self.width + 2 * self.padding + 1 - self.kernel
    }

    /// Rows of the im2col matrix: one per `(channel, ky, kx)`.
    pub fn taps(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    pub fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    pub fn input_len(&self) -> usize {
        self.channels * self.batch * self.height * self.width
    }

    pub fn weight_len(&self) -> usize {
        self.filters * self.taps()
    }

    /// Pixels of a pooled output plane (`⌊OH/2⌋ × ⌊OW/2⌋`).
    pub fn pooled_pixels(&self) -> usize {
        self.out_height() / 2 * (self.out_width() / 2)
    }

    /// Elements of the block's (pooled) output.
    pub fn pooled_len(&self) -> usize {
        self.filters * self.batch * self.pooled_pixels()
    }

    /// The block's output shape `[filters, batch, OH/2, OW/2]`.
    pub fn pooled_dims(&self) -> [usize; 4] {
        [
            self.filters,
            self.batch,
            self.out_height() / 2,
            self.out_width() / 2,
        ]
    }

    /// Consecutive image ranges whose im2col matrices hold about [`COL_BUDGET`] floats each.
    fn image_groups(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let per_image = (self.taps() * self.out_pixels()).max(1);
        let size = (COL_BUDGET / per_image).clamp(1, self.batch.max(1));
        let batch = self.batch;
        (0..batch)
            .step_by(size)
            .map(move |start| start..(start + size).min(batch))
    }

    fn check(&self, x: &[f32], weight: &[f32]) {
        assert!(
            self.height + 2 * self.padding >= self.kernel,
            "kernel larger than the padded input"
        );
        assert!(
            self.width + 2 * self.padding >= self.kernel,
            "kernel larger than the padded input"
        );
        assert!(
            self.padding < self.kernel,
            "padding must be smaller than the kernel"
        );
        assert_eq!(x.len(), self.input_len(), "input length");
        assert_eq!(weight.len(), self.weight_len(), "weight length");
    }

    /// For a kernel column `kx`: output columns `lo..hi` read input columns `lo + kx - padding ..`;
    /// the rest fall on padding.
    fn valid_columns(&self, kx: usize) -> (usize, usize) {
        let lo = self.padding.saturating_sub(kx);
        let hi = self.out_width().min(self.width + self.padding - kx);
        (lo, hi.max(lo))
    }

    /// The input row a kernel row `ky` reads for output row `oy`, if not padding.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy + ky)
            .checked_sub(self.padding)
            .filter(|&iy| iy < self.height)
    }
}

/// Gradient accumulators for the weights: image group `i` adds into slot `i % WEIGHT_SLOTS`,
/// and the slots are summed in order at the end. Fixed (not the thread count), so the sums,
/// and hence training, are the same on any machine.
const WEIGHT_SLOTS: usize = 8;

// The rows im2col/col2im move are short (4 floats for conv3's 4x4 output): `copy_from_slice`
// would call `memcpy` for each. Blocks of 4 move and add inline instead.
const BLOCK: usize = 4;

/// `dst.copy_from_slice(src)` for short rows.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    let (mut d, mut s) = (dst.chunks_exact_mut(BLOCK), src.chunks_exact(BLOCK));
    for (d, s) in (&mut d).zip(&mut s) {
        let d: &mut [f32; BLOCK] = d.try_into().expect("a whole block");
        *d = s.try_into().expect("a whole block");
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// `dst += src` elementwise, for short rows.
#[inline(always)]
fn add_row(dst: &mut [f32], src: &[f32]) {
    let (mut d, mut s) = (dst.chunks_exact_mut(BLOCK), src.chunks_exact(BLOCK));
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[f32; BLOCK] = s.try_into().expect("a whole block");
        for (d, s) in d.iter_mut().zip(s) {
            *d += s;
        }
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d += s;
    }
}

/// The sum of `values` in f64, from 16 f32 lanes of partial sums (so it vectorizes; a lane
/// adds a sixteenth of one group's gradient row, ~1,800 values for conv1's groups of 37 images).
fn sum(values: &[f32]) -> f64 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

/// `col[tap][(image - images.start)·P + pixel]` for the images of one group.
fn im2col(g: &ConvGeometry, x: &[f32], images: Range<usize>, col: &mut Vec<f32>) {
    let (h, w, k, ow) = (g.height, g.width, g.kernel, g.out_width());
    let cols = images.len() * g.out_pixels();
    col.resize(g.taps() * cols, 0.0);
    if g.padding == 0 {
        // No padding: every output row reads `ow` input values, with no bounds to check.
        let (pixels, plane_len) = (g.out_pixels(), h * w);
        for (tap, row) in col.chunks_mut(cols).enumerate() {
            let (channel, ky, kx) = (tap / (k * k), tap / k % k, tap % k);
            let planes =
                &x[(channel * g.batch + images.start) * plane_len..][..images.len() * plane_len];
            for (plane, block) in planes
                .chunks_exact(plane_len)
                .zip(row.chunks_exact_mut(pixels))
            {
                let window = &plane[ky * w + kx..];
                for (dst, src) in block.chunks_exact_mut(ow).zip(window.chunks(w)) {
                    copy_row(dst, &src[..ow]);
                }
            }
        }
        return;
    }
    for (tap, row) in col.chunks_mut(cols).enumerate() {
        let (channel, ky, kx) = (tap / (k * k), tap / k % k, tap % k);
        let (lo, hi) = g.valid_columns(kx);
        for (i, image) in images.clone().enumerate() {
            let plane = &x[(channel * g.batch + image) * h * w..][..h * w];
            for oy in 0..g.out_height() {
                let dst = &mut row[(i * g.out_height() + oy) * ow..][..ow];
                match g.input_row(oy, ky) {
                    None => dst.fill(0.0),
                    Some(iy) => {
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        let src = iy * w + lo + kx - g.padding;
                        copy_row(&mut dst[lo..hi], &plane[src..src + (hi - lo)]);
                    }
                }
            }
        }
    }
}

/// Adds `dcol` (laid out like [`im2col`]'s output) onto the group's images: `dx[channel]` is
/// that channel's planes of the group's images.
fn col2im_add(g: &ConvGeometry, dcol: &[f32], images: usize, dx: &mut [&mut [f32]]) {
    let (h, w, k, ow) = (g.height, g.width, g.kernel, g.out_width());
    let cols = images * g.out_pixels();
    for (channel, planes) in dx.iter_mut().enumerate() {
        for ky in 0..k {
            for kx in 0..k {
                let (lo, hi) = g.valid_columns(kx);
                let row = &dcol[((channel * k + ky) * k + kx) * cols..][..cols];
                for i in 0..images {
                    for oy in 0..g.out_height() {
                        let Some(iy) = g.input_row(oy, ky) else {
                            continue;
                        };
                        let src = &row[(i * g.out_height() + oy) * ow..][lo..hi];
                        let at = i * h * w + iy * w + lo + kx - g.padding;
                        add_row(&mut planes[at..at + (hi - lo)], src);
                    }
                }
            }
        }
    }
}

/// The planes a group's filter row (`cols` values: its images' outputs one after another) is
/// pooled in, and their pooled sizes. With an even output height the images' planes stack into
/// one tall plane whose 2x2 windows are exactly theirs, so it is pooled in one call (conv3's
/// planes are 4x4: per-image calls cost more than the pooling); with an odd one each image
/// drops its own last row.
fn pooling_planes(g: &ConvGeometry, cols: usize) -> (usize, usize) {
    let (pixels, pooled) = (g.out_pixels().max(1), g.pooled_pixels().max(1));
    if g.out_height().is_multiple_of(2) {
        (cols.max(1), cols / pixels * pooled)
    } else {
        (pixels, pooled)
    }
}

/// Splits `rows` (consecutive rows of `row_len` elements) into, per image group, the list of
/// each row's segment for that group's images (`unit` elements an image): disjoint mutable
/// views, so groups can fill their part of a CNHW tensor in parallel.
fn split_rows<'a, T>(
    rows: &'a mut [T],
    row_len: usize,
    unit: usize,
    groups: &[Range<usize>],
) -> Vec<Vec<&'a mut [T]>> {
    let mut per_group: Vec<Vec<&mut [T]>> = groups.iter().map(|_| Vec::new()).collect();
    for row in rows.chunks_mut(row_len.max(1)) {
        let mut rest = row;
        for (images, segments) in groups.iter().zip(&mut per_group) {
            let (segment, tail) = rest.split_at_mut(images.len() * unit);
            segments.push(segment);
            rest = tail;
        }
    }
    per_group
}

/// The forward pass: `out = maxpool2x2(relu(conv(x, weight) + bias))` (`[O, N, OH/2, OW/2]`),
/// with each output's winning input in `winners` for [`backward`].
pub fn forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
    winners: &mut [u8],
) {
    g.check(x, weight);
    assert_eq!(bias.len(), g.filters, "bias length");
    assert_eq!(out.len(), g.pooled_len(), "output length");
    assert_eq!(winners.len(), g.pooled_len(), "winner length");
    let groups: Vec<Range<usize>> = g.image_groups().collect();
    let (row_len, unit) = (g.batch * g.pooled_pixels(), g.pooled_pixels());
    let outs = split_rows(out, row_len, unit, &groups);
    let wins = split_rows(winners, row_len, unit, &groups);
    let weight = MatRef::rows(weight, g.filters, g.taps(), g.taps());
    let (pixels, ow) = (g.out_pixels(), g.out_width());
    groups.into_par_iter().zip(outs).zip(wins).for_each_init(
        || (Vec::new(), Vec::new()),
        |(col, conv), ((images, mut outs), mut wins)| {
            let cols = images.len() * pixels;
            im2col(g, x, images, col);
            conv.clear();
            for &b in bias {
                conv.extend(std::iter::repeat_n(b, cols));
            }
            matmul(
                MatMut::rows(conv, g.filters, cols, cols),
                true,
                weight,
                MatRef::rows(col, g.taps(), cols, cols),
            );
            let (plane, pooled) = pooling_planes(g, cols);
            for ((planes, out), win) in conv.chunks(cols.max(1)).zip(&mut outs).zip(&mut wins) {
                let per_plane = planes
                    .chunks(plane)
                    .zip(out.chunks_mut(pooled))
                    .zip(win.chunks_mut(pooled));
                for ((plane, out), win) in per_plane {
                    pool_plane(plane, ow, out, win);
                }
            }
        },
    );
}

/// One image group of the backward pass, with its images' segments of `dX` if wanted.
type GroupWork<'a> = (Range<usize>, Option<Vec<&'a mut [f32]>>);

/// Gradients of [`forward`] given the output gradient: weights and bias always, the input
/// when asked for.
pub struct Gradients {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub input: Option<Vec<f32>>,
}

/// The backward pass of [`forward`], from the gradient of its (pooled) output and the winners
/// it recorded. Image groups run in parallel in [`WEIGHT_SLOTS`] fixed lanes.
pub fn backward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    dpooled: &[f32],
    winners: &[u8],
    want_input: bool,
) -> Gradients {
    g.check(x, weight);
    assert_eq!(dpooled.len(), g.pooled_len(), "output-gradient length");
    assert_eq!(winners.len(), g.pooled_len(), "winner length");
    let mut dx = want_input.then(|| vec![0.0; g.input_len()]);
    let groups: Vec<Range<usize>> = g.image_groups().collect();
    let targets: Vec<Option<Vec<&mut [f32]>>> = match dx.as_mut() {
        Some(dx) => {
            let plane = g.height * g.width;
            split_rows(dx, g.batch * plane, plane, &groups)
                .into_iter()
                .map(Some)
                .collect()
        }
        None => groups.iter().map(|_| None).collect(),
    };
    // Lane `s` takes groups s, s + WEIGHT_SLOTS, ... in order.
    let mut lanes: Vec<Vec<GroupWork>> = (0..WEIGHT_SLOTS).map(|_| Vec::new()).collect();
    for (index, (images, target)) in groups.into_iter().zip(targets).enumerate() {
        lanes[index % WEIGHT_SLOTS].push((images, target));
    }
    let weight = MatRef::rows(weight, g.filters, g.taps(), g.taps());
    let (pixels, ow, unit) = (g.out_pixels(), g.out_width(), g.pooled_pixels());
    let partials: Vec<(Vec<f32>, Vec<f64>)> = lanes
        .into_par_iter()
        .map(|lane| {
            let mut dw = vec![0.0; g.weight_len()];
            let mut db = vec![0.0f64; g.filters];
            let (mut col, mut dcol, mut dy) = (Vec::new(), Vec::new(), Vec::new());
            for (images, target) in lane {
                let cols = images.len() * pixels;
                // The group's convolution-output gradient, from the pooled one.
                dy.resize(g.filters * cols, 0.0);
                let (plane, pooled) = pooling_planes(g, cols);
                for (filter, (dy_row, db)) in dy.chunks_mut(cols.max(1)).zip(&mut db).enumerate() {
                    let from = (filter * g.batch + images.start) * unit;
                    let (dp, win) = (
                        &dpooled[from..][..images.len() * unit],
                        &winners[from..][..images.len() * unit],
                    );
                    for ((plane, dp), win) in dy_row
                        .chunks_mut(plane)
                        .zip(dp.chunks(pooled))
                        .zip(win.chunks(pooled))
                    {
                        unpool_plane(dp, win, ow, plane);
                    }
                    *db += sum(dy_row);
                }
                let dy_group = MatRef::rows(&dy, g.filters, cols, cols);
                im2col(g, x, images.clone(), &mut col);
                matmul(
                    MatMut::rows(&mut dw, g.filters, g.taps(), g.taps()),
                    true,
                    dy_group,
                    MatRef::rows(&col, g.taps(), cols, cols).t(),
                );
                if let Some(mut planes) = target {
                    dcol.resize(g.taps() * cols, 0.0);
                    matmul(
                        MatMut::rows(&mut dcol, g.taps(), cols, cols),
                        false,
                        weight.t(),
                        dy_group,
                    );
                    col2im_add(g, &dcol, images.len(), &mut planes);
                }
            }
            (dw, db)
        })
        .collect();
    let mut weight_grad = vec![0.0; g.weight_len()];
    let mut bias_grad = vec![0.0f64; g.filters];
    for (dw, db) in &partials {
        weight_grad
            .par_iter_mut()
            .zip(dw)
            .for_each(|(sum, v)| *sum += v);
        bias_grad.iter_mut().zip(db).for_each(|(sum, v)| *sum += v);
    }
    Gradients {
        weight: weight_grad,
        bias: bias_grad.into_iter().map(|v| v as f32).collect(),
        input: dx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_conv::pool::NO_GRADIENT;

    /// The convolution by its definition, in f64: `[O, N, OH, OW]`.
    fn conv_reference(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f64> {
        let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
        let mut out = vec![0.0f64; g.filters * g.batch * oh * ow];
        for o in 0..g.filters {
            for n in 0..g.batch {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = f64::from(bias[o]);
                        for (c, ky, kx, xv) in taps(g, x, n, oy, ox) {
                            acc += xv * f64::from(weight[((o * g.channels + c) * k + ky) * k + kx]);
                        }
                        out[((o * g.batch + n) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    /// The in-range inputs an output pixel reads: `(channel, ky, kx, value)`.
    fn taps(
        g: &ConvGeometry,
        x: &[f32],
        n: usize,
        oy: usize,
        ox: usize,
    ) -> Vec<(usize, usize, usize, f64)> {
        let mut found = Vec::new();
        for c in 0..g.channels {
            for ky in 0..g.kernel {
                for kx in 0..g.kernel {
                    let (iy, ix) = (oy + ky, ox + kx);
                    if iy < g.padding
                        || ix < g.padding
                        || iy - g.padding >= g.height
                        || ix - g.padding >= g.width
                    {
                        continue;
                    }
                    let at =
                        ((c * g.batch + n) * g.height + iy - g.padding) * g.width + ix - g.padding;
                    found.push((c, ky, kx, f64::from(x[at])));
                }
            }
        }
        found
    }

    /// What the definition says of one pooled output.
    #[derive(Clone, Copy, Debug)]
    struct Pooled {
        /// ReLU of the window's maximum.
        value: f64,
        /// The winner code the kernel must record: the window position (row-major, the first
        /// on exact ties) or `NO_GRADIENT` when ReLU clamps the maximum to 0.
        code: u8,
        /// Whether f32 rounding may legitimately pick another code: the runner-up is within
        /// `TIE_EPSILON` of the maximum, or the maximum is within it of 0.
        near_tie: bool,
    }

    /// Relative closeness under which two f32 sums of up to 1,152 products (each off the
    /// exact f64 sum by ~1e-6 relative) may compare either way.
    const TIE_EPSILON: f64 = 1e-4;

    /// ReLU + 2x2 max pool of `[O, N, OH, OW]` by the definition, with each output's winner.
    fn pool_reference(g: &ConvGeometry, conv: &[f64]) -> Vec<Pooled> {
        let (oh, ow) = (g.out_height(), g.out_width());
        let mut pooled = Vec::new();
        for plane in 0..g.filters * g.batch {
            for py in 0..oh / 2 {
                for px in 0..ow / 2 {
                    let window = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .map(|(dy, dx)| conv[(plane * oh + 2 * py + dy) * ow + 2 * px + dx]);
                    let best = (0..4).fold(0, |b, i| if window[i] > window[b] { i } else { b });
                    let max = window[best];
                    let runner_up = (0..4)
                        .filter(|&i| i != best)
                        .map(|i| window[i])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let epsilon = TIE_EPSILON * (1.0 + max.abs());
                    pooled.push(Pooled {
                        value: max.max(0.0),
                        code: if max > 0.0 { best as u8 } else { NO_GRADIENT },
                        near_tie: max - runner_up <= epsilon || max.abs() <= epsilon,
                    });
                }
            }
        }
        pooled
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn close(what: &str, a: &[f32], b: &[f64], tolerance: f64) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (&p, &q)) in a.iter().zip(b).enumerate() {
            assert!(
                (f64::from(p) - q).abs() <= tolerance * (1.0 + q.abs()),
                "{what} element {i}: {p} vs {q}"
            );
        }
    }

    /// Shapes covering padding 0/1/2, odd sizes (a dropped pooling row/column), 1x1 and 5x5
    /// kernels, and several image groups (the last one short).
    fn geometries() -> Vec<ConvGeometry> {
        let g = |channels, batch, height, width, filters, kernel, padding| ConvGeometry {
            channels,
            batch,
            height,
            width,
            filters,
            kernel,
            padding,
        };
        vec![
            g(1, 3, 7, 6, 4, 3, 1),
            g(3, 2, 6, 7, 5, 3, 0),
            g(2, 2, 5, 7, 3, 5, 2),
            g(4, 3, 3, 3, 2, 1, 0),
            // 1152 taps × 100 pixels an image: groups of 2 images, the last one short.
            g(128, 5, 12, 12, 8, 3, 0),
            g(2, 1, 3, 3, 1, 3, 2),
        ]
    }

    fn run_forward(g: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32]) -> (Vec<f32>, Vec<u8>) {
        let mut out = vec![f32::NAN; g.pooled_len()];
        let mut winners = vec![99; g.pooled_len()];
        forward(g, x, w, b, &mut out, &mut winners);
        (out, winners)
    }

    #[test]
    fn forward_matches_the_definition() {
        let (mut routed, mut clamped, mut near_ties, mut total) = (0, 0, 0, 0);
        for (i, g) in geometries().into_iter().enumerate() {
            let x = values(g.input_len(), 1 + i as u32);
            let w = values(g.weight_len(), 100 + i as u32);
            let b = values(g.filters, 200 + i as u32);
            let (out, winners) = run_forward(&g, &x, &w, &b);
            let expected = pool_reference(&g, &conv_reference(&g, &x, &w, &b));
            let values: Vec<f64> = expected.iter().map(|p| p.value).collect();
            // f32 sums of up to 1,152 products against f64 ones.
            close(&format!("geometry {i} output"), &out, &values, 1e-4);
            // Every winner exactly, except where rounding may decide a near-tie.
            for (at, (&won, p)) in winners.iter().zip(&expected).enumerate() {
                assert!(
                    won == p.code || p.near_tie,
                    "geometry {i} output {at}: winner {won}, the definition says {} ({p:?})",
                    p.code
                );
            }
            routed += expected.iter().filter(|p| p.code != NO_GRADIENT).count();
            clamped += expected.iter().filter(|p| p.code == NO_GRADIENT).count();
            near_ties += expected.iter().filter(|p| p.near_tie).count();
            total += expected.len();
        }
        assert!(
            routed > 0 && clamped > 0,
            "both kinds of outputs are covered"
        );
        // The exemption must stay an exception, or the check above checks nothing.
        assert!(
            near_ties * 100 <= total,
            "{near_ties} of {total} outputs are near-ties"
        );
    }

    /// Exact ties: with zero weights every output of a window is the bias, so the first
    /// position wins when the bias is positive and ReLU clamps (no gradient) when it is not.
    #[test]
    fn exact_ties_go_to_the_first_position() {
        for g in geometries() {
            let x = values(g.input_len(), 3);
            let w = vec![0.0; g.weight_len()];
            for (bias, code) in [(0.25f32, 0u8), (-0.25, NO_GRADIENT), (0.0, NO_GRADIENT)] {
                let (out, winners) = run_forward(&g, &x, &w, &vec![bias; g.filters]);
                assert!(
                    winners.iter().all(|&c| c == code),
                    "bias {bias}: {winners:?}"
                );
                assert!(out.iter().all(|&v| v == bias.max(0.0)), "bias {bias}");
            }
        }
    }

    /// Gradients against the definition: `dY` is the pooled gradient routed to each window's
    /// winner, and `dW`, `db`, `dX` are the sums the convolution's definition gives.
    #[test]
    fn backward_matches_the_definition() {
        for (i, g) in geometries().into_iter().enumerate() {
            let x = values(g.input_len(), 11 + i as u32);
            let w = values(g.weight_len(), 111 + i as u32);
            let b = values(g.filters, 311 + i as u32);
            let dp = values(g.pooled_len(), 211 + i as u32);
            // The winners the definition gives, not the kernel's: the backward pass is checked
            // on its own, whatever the forward pass records.
            let winners: Vec<u8> = pool_reference(&g, &conv_reference(&g, &x, &w, &b))
                .iter()
                .map(|p| p.code)
                .collect();
            let grads = backward(&g, &x, &w, &dp, &winners, true);
            let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
            let mut dy = vec![0.0f64; g.filters * g.batch * oh * ow];
            for (at, (&d, &win)) in dp.iter().zip(&winners).enumerate() {
                if win < 4 {
                    let (plane, py, px) = (
                        at / g.pooled_pixels(),
                        at % g.pooled_pixels() / (ow / 2),
                        at % (ow / 2),
                    );
                    let (y, x) = (2 * py + usize::from(win) / 2, 2 * px + usize::from(win) % 2);
                    dy[(plane * oh + y) * ow + x] = f64::from(d);
                }
            }
            let (mut dw, mut db, mut dx) = (
                vec![0.0; g.weight_len()],
                vec![0.0; g.filters],
                vec![0.0; g.input_len()],
            );
            for o in 0..g.filters {
                for n in 0..g.batch {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let d = dy[((o * g.batch + n) * oh + oy) * ow + ox];
                            db[o] += d;
                            for (c, ky, kx, xv) in taps(&g, &x, n, oy, ox) {
                                let wi = ((o * g.channels + c) * k + ky) * k + kx;
                                dw[wi] += d * xv;
                                let xi = ((c * g.batch + n) * g.height + oy + ky - g.padding)
                                    * g.width
                                    + ox
                                    + kx
                                    - g.padding;
                                dx[xi] += d * f64::from(w[wi]);
                            }
                        }
                    }
                }
            }
            close(&format!("geometry {i} dW"), &grads.weight, &dw, 1e-4);
            close(&format!("geometry {i} db"), &grads.bias, &db, 1e-5);
            close(
                &format!("geometry {i} dX"),
                grads.input.as_ref().expect("input gradient requested"),
                &dx,
                1e-4,
            );
            let without = backward(&g, &x, &w, &dp, &winners, false);
            assert!(without.input.is_none());
            assert_eq!(without.weight, grads.weight);
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let g = geometries()[4];
        let x = values(g.input_len(), 5);
        let w = values(g.weight_len(), 6);
        let dp = values(g.pooled_len(), 7);
        let run = || {
            let (out, winners) = run_forward(&g, &x, &w, &[0.5; 8]);
            let grads = backward(&g, &x, &w, &dp, &winners, true);
            (out, winners, grads.weight, grads.bias, grads.input)
        };
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(run);
        let triple = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(run);
        assert!(single == triple, "results differ between 1 and 3 threads");
    }
}
