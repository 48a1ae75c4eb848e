//! depthwise_conv2d: one `K_h x K_w` filter per channel (groups = channels, multiplier 1),
//! any stride, explicit padding; weights HWC (TFLite's `[1, K_h, K_w, C]`).

use super::super::record::{RawOp, RawTensor};
use super::{Check, Node, taps};
use crate::error::Error;
use crate::graph::io::Io;
use crate::graph::kernels::{depthwise, dw3x3};

pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    c.unused(false, false, true, false)?;
    let input = c.node.input.shape;
    let output = c.node.output_info.shape;
    if output.c != input.c {
        return Err(c.invalid("depthwise output channels (must equal the input's: multiplier 1)"));
    }
    c.window_output(input.c)?;
    let w = c.raw.window;
    let taps = w.kernel_h * w.kernel_w;
    c.weights(input.c, taps)?;
    let weights = c.node.weights;
    let channels = input.c;
    c.channels(false, |ch| {
        (0..taps).map(move |k| (k * channels + ch, weights[k * channels + ch]))
    })
}

/// Scratch bytes the fastest kernel for this op needs on this target (`const`, for the
/// planner): for a 3x3 kernel at stride 1 the column sweep's plane of one channel
/// (`kernels::dw3x3`), else the group kernel's weight cells and ring of widened rows of one
/// channel group (`kernels::depthwise`); none without a fast path (fewer than 4 channels, a
/// kernel taller than 16 rows).
pub const fn scratch_len(raw: &RawOp, input: &RawTensor, output: &RawTensor) -> usize {
    let w = raw.window;
    let columns = dw3x3::scratch_bytes(
        w.kernel_h, w.kernel_w, w.stride_h, w.stride_w, output.h, output.w,
    );
    if columns > 0 {
        return columns;
    }
    depthwise::scratch_bytes(input.c, w.kernel_h, w.kernel_w, w.stride_w, output.w)
}

/// How far the output may stream over the input (`const`, for the planner): exactly in place
/// (lead 0, and `Graph::parse` checks a given plan keeps exactly 0) when the 3x3 stride-1
/// column sweep runs it in one band over an output of the input's shape
/// ([`dw3x3::in_place`]); otherwise never (the group kernel reads every row of a channel
/// group before writing it, out of raster order).
pub const fn stream_lead(raw: &RawOp, input: &RawTensor, output: &RawTensor) -> Option<i64> {
    let w = raw.window;
    if dw3x3::in_place(
        w.kernel_h,
        w.kernel_w,
        w.stride_h,
        w.stride_w,
        (input.h, input.w, input.c),
        (output.h, output.w, output.c),
    ) {
        Some(0)
    } else {
        None
    }
}

/// Runs the op in place over its input (the planner's [`stream_lead`]): `io` one window.
/// `false` (nothing run) when the column sweep cannot (never under a plan `Graph::parse`
/// accepted).
pub fn run_in_place(n: &Node<'_>, io: &mut Io<'_>, scratch: &mut [i8]) -> bool {
    #[cfg(tinyconv_dsp)]
    let m = &dw3x3::Asm;
    #[cfg(not(tinyconv_dsp))]
    let m = &dw3x3::Emulated;
    dw3x3::depthwise_io(m, n, io, scratch)
}

/// Runs the op with the fastest kernel for its shape on this target: the DSP blocks on
/// Armv7E-M, their portable model elsewhere (both bit-exact with [`reference`]).
pub fn run(n: &Node<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    #[cfg(tinyconv_dsp)]
    let done = depthwise::depthwise(&depthwise::Asm, n, input, output, scratch);
    #[cfg(not(tinyconv_dsp))]
    let done = depthwise::depthwise(&depthwise::Emulated, n, input, output, scratch);
    if !done {
        reference(n, input, output)
    }
}

/// The scalar reference.
pub fn reference(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    let (i, o, w) = (n.input.shape, n.output_info.shape, n.window);
    let zp = n.input.quant.zero_point as i32;
    for oy in 0..o.h {
        let (ky0, ky1, iy0) = taps(oy, w.stride_h, w.pad_top, w.kernel_h, i.h);
        for ox in 0..o.w {
            let (kx0, kx1, ix0) = taps(ox, w.stride_w, w.pad_left, w.kernel_w, i.w);
            let out = &mut output[(oy * o.w + ox) * o.c..][..o.c];
            for (ch, y) in out.iter_mut().enumerate() {
                let mut acc = n.channels.bias(ch);
                for ky in ky0..ky1 {
                    let iy = (iy0 + ky as isize) as usize;
                    for kx in kx0..kx1 {
                        let ix = (ix0 + kx as isize) as usize;
                        let x = input[(iy * i.w + ix) * i.c + ch] as i32;
                        let wt = n.weights[(ky * w.kernel_w + kx) * i.c + ch] as i32;
                        acc += wt * (x - zp);
                    }
                }
                *y = n.finish(n.rescale(acc, ch));
            }
        }
    }
}
