//! avg_pool: the mean of each window's in-bounds values (padding is not counted), rounded as
//! TensorFlow Lite rounds it ([`crate::tflite_rule::average`]), then the fused clamp. A global
//! average pool is the window of the whole input. Scale and zero point pass through.
//!
//! Under the `onnx` rule the op is refused: tract runs a quantized AveragePool as a float op
//! between DequantizeLinear and QuantizeLinear, whose rounding this runtime does not reproduce
//! yet (docs/quantization.md).

use super::{Check, Node, taps};
use crate::error::Error;
use crate::graph::format::Rule;
use crate::tflite_rule;

pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    if c.node.rule != Rule::Tflite {
        return Err(c.not_under_rule());
    }
    c.unused(false, true, true, false)?;
    c.same_quant()?;
    c.window_output(c.node.input.shape.c)
}

/// The scalar reference. At most 255x255 taps of |x| <= 128: the sum fits an i32.
pub fn reference(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    let (i, o, w) = (n.input.shape, n.output_info.shape, n.window);
    for oy in 0..o.h {
        let (ky0, ky1, iy0) = taps(oy, w.stride_h, w.pad_top, w.kernel_h, i.h);
        for ox in 0..o.w {
            let (kx0, kx1, ix0) = taps(ox, w.stride_w, w.pad_left, w.kernel_w, i.w);
            let count = ((ky1 - ky0) * (kx1 - kx0)) as i32;
            for ch in 0..o.c {
                let mut sum = 0i32;
                for ky in ky0..ky1 {
                    let iy = (iy0 + ky as isize) as usize;
                    for kx in kx0..kx1 {
                        let ix = (ix0 + kx as isize) as usize;
                        sum += input[(iy * i.w + ix) * i.c + ch] as i32;
                    }
                }
                let mean = tflite_rule::average(sum, count);
                output[(oy * o.w + ox) * o.c + ch] =
                    mean.clamp(n.clamp.min as i32, n.clamp.max as i32) as i8;
            }
        }
    }
}
