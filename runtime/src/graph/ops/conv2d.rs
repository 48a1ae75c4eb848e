//! conv2d: any `K_h x K_w` kernel, any stride, explicit top/left/bottom/right padding (padded
//! taps read the input zero point, so they add nothing), weights OHWI, per-channel scales.
//! A 1x1 convolution is the plain case `K = 1`.

use super::super::kernels::conv;
use super::super::record::{RawOp, RawTensor};
use super::{Check, Node, taps};
use crate::error::Error;
use crate::graph::io::Io;

pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    c.unused(false, false, true, false)?;
    let channels = c.node.output_info.shape.c;
    c.window_output(channels)?;
    let w = c.raw.window;
    let per = w.kernel_h * w.kernel_w * c.node.input.shape.c;
    c.weights(channels, per)?;
    let weights = c.node.weights;
    c.channels(false, |ch| {
        weights[ch * per..(ch + 1) * per]
            .iter()
            .enumerate()
            .map(move |(k, &w)| (ch * per + k, w))
    })
}

/// Scratch bytes the fast kernel needs (`const`, for the planner): the int16 im2col of one
/// block of output pixels (`graph::kernels::conv`), the same on every target.
pub const fn scratch_len(raw: &RawOp, input: &RawTensor, _output: &RawTensor) -> usize {
    conv::conv_scratch_len(raw.window.kernel_h, raw.window.kernel_w, input.c)
}

/// How far the output may stream over the input (`const`, for the planner): the op writes
/// its output pixels in raster order, each after reading its window, so it may start at most
/// `lead` bytes after its input (a negative lead: before it). See [`super::window_lead`].
pub const fn stream_lead(raw: &RawOp, input: &RawTensor, output: &RawTensor) -> Option<i64> {
    super::window_lead(&raw.window, input, output)
}

/// Runs the op with the fast kernel (the DSP blocks on Armv7E-M, their portable twins
/// elsewhere), bit-exact with [`reference`].
pub fn run(n: &Node<'_>, io: &mut Io<'_>, scratch: &mut [i8]) {
    let words = conv::Words::new(n.channels.bias, n.channels.multipliers);
    conv::conv2d_fast(n, words, io, scratch)
}

/// The scalar reference: one output channel at a time, taps in OHWI order.
pub fn reference(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    reference_io(n, &mut Io::apart(input, output))
}

/// [`reference`] on any [`Io`]: pixels in raster order, each channel's taps read before its
/// output is written (within the planner's streaming rule).
pub fn reference_io(n: &Node<'_>, io: &mut Io<'_>) {
    let (i, o, w) = (n.input.shape, n.output_info.shape, n.window);
    let zp = n.input.quant.zero_point as i32;
    let per = w.kernel_h * w.kernel_w * i.c;
    for oy in 0..o.h {
        let (ky0, ky1, iy0) = taps(oy, w.stride_h, w.pad_top, w.kernel_h, i.h);
        for ox in 0..o.w {
            let (kx0, kx1, ix0) = taps(ox, w.stride_w, w.pad_left, w.kernel_w, i.w);
            let at = (oy * o.w + ox) * o.c;
            for oc in 0..o.c {
                let filter = &n.weights[oc * per..][..per];
                let mut acc = n.channels.bias(oc);
                for ky in ky0..ky1 {
                    let iy = (iy0 + ky as isize) as usize;
                    for kx in kx0..kx1 {
                        let ix = (ix0 + kx as isize) as usize;
                        let x0 = (iy * i.w + ix) * i.c;
                        let xs = io.input(x0..x0 + i.c);
                        let ws = &filter[(ky * w.kernel_w + kx) * i.c..][..i.c];
                        for (&x, &wt) in xs.iter().zip(ws) {
                            acc += wt as i32 * (x as i32 - zp);
                        }
                    }
                }
                io.output(at + oc..at + oc + 1)[0] = n.finish(n.rescale(acc, oc));
            }
        }
    }
}
