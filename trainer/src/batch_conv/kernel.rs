//! Stride-1 convolution of a whole batch in the channel-major `[C, N, H, W]` ("CNHW") layout,
//! forward and backward, as a few large GEMMs.
//!
//! In CNHW the im2col matrix of a batch is `col[tap][image·pixel]` (a tap being one
//! `(channel, ky, kx)`), and the output `[O, N, OH, OW]` is exactly `W[O][taps] · col`: no
//! transpose on either side. The images are taken in groups whose `col` stays near
//! [`COL_BUDGET`] floats (cache-sized), and each group's product is one GEMM spread over the
//! rayon pool. The backward pass reuses the same groups: `dW += dY_g · col_gᵀ`,
//! `dcol = Wᵀ · dY_g`, then `dcol` is scattered back (col2im) into the group's images of `dX`.
//! Everything runs in a fixed order, so results are bit-for-bit reproducible run to run (which
//! `train --resume` relies on).

use std::ops::Range;

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, matmul};

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

    pub fn output_len(&self) -> usize {
        self.filters * self.batch * self.out_pixels()
    }

    /// Output shape `[filters, batch, out_height, out_width]`.
    pub fn output_dims(&self) -> [usize; 4] {
        [
            self.filters,
            self.batch,
            self.out_height(),
            self.out_width(),
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

/// `col[tap][(image - images.start)·P + pixel]` for the images of one group.
fn im2col(g: &ConvGeometry, x: &[f32], images: Range<usize>, col: &mut Vec<f32>) {
    let (h, w, k, ow) = (g.height, g.width, g.kernel, g.out_width());
    let cols = images.len() * g.out_pixels();
    col.resize(g.taps() * cols, 0.0);
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
                        dst[lo..hi].copy_from_slice(&plane[src..src + (hi - lo)]);
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
                        for (d, s) in planes[at..at + (hi - lo)].iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

/// Splits `rows` (consecutive rows of `row_len` elements) into, per image group, the list of
/// each row's segment for that group's images (`unit` elements an image): disjoint mutable
/// views, so groups can fill their part of a CNHW tensor in parallel.
fn split_rows<'a>(
    rows: &'a mut [f32],
    row_len: usize,
    unit: usize,
    groups: &[Range<usize>],
) -> Vec<Vec<&'a mut [f32]>> {
    let mut per_group: Vec<Vec<&mut [f32]>> = groups.iter().map(|_| Vec::new()).collect();
    for row in rows.chunks_mut(row_len) {
        let mut rest = row;
        for (images, segments) in groups.iter().zip(&mut per_group) {
            let (segment, tail) = rest.split_at_mut(images.len() * unit);
            segments.push(segment);
            rest = tail;
        }
    }
    per_group
}

/// `out = conv(x, weight) + bias`, all CNHW/OIHW; `out` has [`ConvGeometry::output_len`]
/// elements. The image groups run in parallel, each as one single-threaded GEMM.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    g.check(x, weight);
    assert_eq!(bias.len(), g.filters, "bias length");
    assert_eq!(out.len(), g.output_len(), "output length");
    if out.is_empty() {
        return;
    }
    let groups: Vec<Range<usize>> = g.image_groups().collect();
    let targets = split_rows(out, g.batch * g.out_pixels(), g.out_pixels(), &groups);
    let weight = MatRef::rows(weight, g.filters, g.taps(), g.taps());
    groups.into_par_iter().zip(targets).for_each_init(
        || (Vec::new(), Vec::new()),
        |(col, local), (images, mut rows)| {
            let cols = images.len() * g.out_pixels();
            im2col(g, x, images, col);
            local.clear();
            for &b in bias {
                local.extend(std::iter::repeat_n(b, cols));
            }
            matmul(
                MatMut::rows(local, g.filters, cols, cols),
                true,
                weight,
                MatRef::rows(col, g.taps(), cols, cols),
            );
            for (row, values) in rows.iter_mut().zip(local.chunks(cols)) {
                row.copy_from_slice(values);
            }
        },
    );
}

/// Gradients of [`forward`] given the output gradient: weights and bias always, the input
/// when asked for.
pub struct Gradients {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub input: Option<Vec<f32>>,
}

/// The backward pass of [`forward`]. Image groups run in parallel (in [`WEIGHT_SLOTS`]
/// fixed lanes), each one single-threaded: im2col, `dW_slot += dY_g · col_gᵀ`, and for the
/// input gradient `dcol = Wᵀ · dY_g` scattered back into its own images of `dX`.
pub fn backward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    want_input: bool,
) -> Gradients {
    g.check(x, weight);
    assert_eq!(dy.len(), g.output_len(), "output-gradient length");
    let row_len = g.batch * g.out_pixels();
    let bias: Vec<f32> = dy
        .par_chunks(row_len.max(1))
        .map(|row| row.iter().map(|&v| f64::from(v)).sum::<f64>() as f32)
        .collect();
    let mut dx = want_input.then(|| vec![0.0; g.input_len()]);
    if dy.is_empty() {
        return Gradients {
            weight: vec![0.0; g.weight_len()],
            bias,
            input: dx,
        };
    }
    let groups: Vec<Range<usize>> = g.image_groups().collect();
    let mut targets: Vec<Option<Vec<&mut [f32]>>> = match dx.as_mut() {
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
    let mut lanes: Vec<Vec<(Range<usize>, Option<Vec<&mut [f32]>>)>> =
        (0..WEIGHT_SLOTS).map(|_| Vec::new()).collect();
    for (index, (images, target)) in groups.into_iter().zip(targets.drain(..)).enumerate() {
        lanes[index % WEIGHT_SLOTS].push((images, target));
    }
    let weight = MatRef::rows(weight, g.filters, g.taps(), g.taps());
    let partials: Vec<Vec<f32>> = lanes
        .into_par_iter()
        .map(|lane| {
            let mut dw = vec![0.0; g.weight_len()];
            let (mut col, mut dcol) = (Vec::new(), Vec::new());
            for (images, target) in lane {
                let cols = images.len() * g.out_pixels();
                let dy_group = MatRef::rows(
                    &dy[images.start * g.out_pixels()..],
                    g.filters,
                    cols,
                    row_len,
                );
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
            dw
        })
        .collect();
    let mut weight_grad = vec![0.0; g.weight_len()];
    for partial in &partials {
        weight_grad
            .par_iter_mut()
            .zip(partial)
            .for_each(|(sum, v)| *sum += v);
    }
    Gradients {
        weight: weight_grad,
        bias,
        input: dx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output at a time.
    fn reference(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
        let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
        let mut out = vec![0.0f64; g.output_len()];
        for o in 0..g.filters {
            for n in 0..g.batch {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = f64::from(bias[o]);
                        for c in 0..g.channels {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (oy + ky, ox + kx);
                                    if iy < g.padding || ix < g.padding {
                                        continue;
                                    }
                                    let (iy, ix) = (iy - g.padding, ix - g.padding);
                                    if iy >= g.height || ix >= g.width {
                                        continue;
                                    }
                                    let xv = x[((c * g.batch + n) * g.height + iy) * g.width + ix];
                                    let wv = weight[((o * g.channels + c) * k + ky) * k + kx];
                                    acc += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        out[((o * g.batch + n) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out.into_iter().map(|v| v as f32).collect()
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

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum()
    }

    fn close(a: &[f32], b: &[f32], tolerance: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            assert!(
                (p - q).abs() <= tolerance * (1.0 + q.abs()),
                "element {i}: {p} vs {q}"
            );
        }
    }

    /// Shapes covering padding 0/1/2, odd sizes, 1x1 and 5x5 kernels, and several image
    /// groups (the last one short).
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
            g(3, 2, 6, 6, 5, 3, 0),
            g(2, 2, 5, 7, 3, 5, 2),
            g(4, 3, 3, 3, 2, 1, 0),
            // 1152 taps × 100 pixels an image: groups of 9 images, so 9 + 9 + 2.
            g(128, 20, 12, 12, 8, 3, 0),
            g(2, 1, 3, 3, 1, 3, 2),
        ]
    }

    #[test]
    fn forward_matches_the_definition() {
        for (i, g) in geometries().into_iter().enumerate() {
            let x = values(g.input_len(), 1 + i as u32);
            let w = values(g.weight_len(), 100 + i as u32);
            let b = values(g.filters, 200 + i as u32);
            let mut out = vec![f32::NAN; g.output_len()];
            forward(&g, &x, &w, &b, &mut out);
            // f32 sums of up to 1,152 products against f64 ones.
            close(&out, &reference(&g, &x, &w, &b), 1e-4);
        }
    }

    /// The backward pass is the adjoint of the forward one: for any `dy`,
    /// `<dy, conv(x, w)> = <dx, x>` (linear in x) and `= <dw, w>` (linear in w), `db` sums `dy`.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for (i, g) in geometries().into_iter().enumerate() {
            let x = values(g.input_len(), 11 + i as u32);
            let w = values(g.weight_len(), 111 + i as u32);
            let dy = values(g.output_len(), 211 + i as u32);
            let zero_bias = vec![0.0; g.filters];
            let y = reference(&g, &x, &w, &zero_bias);
            let grads = backward(&g, &x, &w, &dy, true);
            let lhs = dot(&dy, &y);
            let dx = grads.input.expect("input gradient requested");
            let tol = 1e-4 * (1.0 + lhs.abs());
            assert!(
                (dot(&dx, &x) - lhs).abs() < tol,
                "dx: {} vs {lhs}",
                dot(&dx, &x)
            );
            assert!(
                (dot(&grads.weight, &w) - lhs).abs() < tol,
                "dw: {} vs {lhs}",
                dot(&grads.weight, &w)
            );
            let row = g.batch * g.out_pixels();
            let sums: Vec<f32> = dy
                .chunks(row)
                .map(|r| r.iter().map(|&v| f64::from(v)).sum::<f64>() as f32)
                .collect();
            close(&grads.bias, &sums, 1e-6);
            // And element by element, against finite sums of the definition: dx at one input
            // element is the output change when that element changes by 1.
            let probe = x.len() / 2;
            let mut bumped = x.clone();
            bumped[probe] += 1.0;
            let y2 = reference(&g, &bumped, &w, &zero_bias);
            let change: f64 = dy
                .iter()
                .zip(y2.iter().zip(&y))
                .map(|(&d, (&b, &a))| f64::from(d) * f64::from(b - a))
                .sum();
            assert!(
                (f64::from(dx[probe]) - change).abs() < 1e-3,
                "dx[{probe}] {} vs {change}",
                dx[probe]
            );
            assert!(backward(&g, &x, &w, &dy, false).input.is_none());
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let g = geometries()[4];
        let x = values(g.input_len(), 5);
        let w = values(g.weight_len(), 6);
        let dy = values(g.output_len(), 7);
        let run = || {
            let mut out = vec![0.0; g.output_len()];
            forward(&g, &x, &w, &[0.5; 8], &mut out);
            let grads = backward(&g, &x, &w, &dy, true);
            (out, grads.weight, grads.bias, grads.input)
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
