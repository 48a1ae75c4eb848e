//! avg_pool: the mean of each window's in-bounds values (padding is not counted), then the
//! fused clamp. A global average pool is the window of the whole input.
//!
//! * `tflite` rule: the integer mean rounded as TensorFlow Lite rounds it
//!   ([`crate::tflite_rule::average`]); scale and zero point pass through (TFLite requires it).
//! * `onnx` rule: what tract computes for the QDQ form (DequantizeLinear, AveragePool with
//!   `count_include_pad = 0`, QuantizeLinear), in f32, emulated bit for bit in integers by
//!   [`crate::soft_f32`]: `y = sat8(rne(f32(f32(Σ dequant(x)) * f32(1 / count)) * f32(1 /
//!   s_out)) + z_out)`, the sum over the in-bounds taps in row-major window order, each partial
//!   sum rounded to f32 (docs/quantization.md). The output may have its own scale and zero point
//!   (onnxruntime's quantizer gives a global average pool its own). Nothing is stored: the
//!   kernel derives its table of dequantized codes and the reciprocals from the scales and the
//!   window.

use super::add::{dequantize_table, quantize};
use super::{Check, Node, taps};
use crate::error::Error;
use crate::graph::format::Rule;
use crate::graph::kernels::pool;
use crate::soft_f32;
use crate::tflite_rule;

pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    c.unused(false, true, true, false)?;
    if c.node.rule == Rule::Tflite {
        c.same_quant()?;
    }
    c.window_output(c.node.input.shape.c)
}

/// Runs the op: a global pool under the tflite rule with the fast kernel
/// (`kernels::pool`: the DSP instructions on Armv7E-M, their portable model elsewhere), any
/// other with [`reference`]; bit-exact with it.
pub fn run(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    #[cfg(tinyconv_dsp)]
    let m = &pool::Asm;
    #[cfg(not(tinyconv_dsp))]
    let m = &pool::Emulated;
    if !pool::global_avg_pool(m, n, input, output) {
        reference(n, input, output)
    }
}

/// The scalar reference, under the node's rule.
pub fn reference(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    match n.rule {
        Rule::Onnx => onnx(n, input, output),
        Rule::Tflite => tflite(n, input, output),
    }
}

/// The onnx rule: tract's f32 QDQ average pool, in integers.
pub fn onnx(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    let (i, o, w) = (n.input.shape, n.output_info.shape, n.window);
    let (q, out) = (n.input.quant, n.output_info.quant);
    let table = dequantize_table(q.zero_point, q.scale);
    let recip = soft_f32::recip(out.scale.to_bits());
    // f32(1 / count), recomputed only where the count changes (the borders of a padded window).
    let (mut count, mut recip_count) = (1i32, soft_f32::recip(soft_f32::from_i32(1)));
    for oy in 0..o.h {
        let (ky0, ky1, iy0) = taps(oy, w.stride_h, w.pad_top, w.kernel_h, i.h);
        for ox in 0..o.w {
            let (kx0, kx1, ix0) = taps(ox, w.stride_w, w.pad_left, w.kernel_w, i.w);
            let taps_here = ((ky1 - ky0) * (kx1 - kx0)) as i32;
            if taps_here != count {
                count = taps_here;
                recip_count = soft_f32::recip(soft_f32::from_i32(count));
            }
            for ch in 0..o.c {
                let mut sum = 0u32;
                for ky in ky0..ky1 {
                    let iy = (iy0 + ky as isize) as usize;
                    for kx in kx0..kx1 {
                        let ix = (ix0 + kx as isize) as usize;
                        let x = input[(iy * i.w + ix) * i.c + ch];
                        sum = soft_f32::add(sum, table[x as u8 as usize]);
                    }
                }
                let mean = soft_f32::mul(sum, recip_count);
                output[(oy * o.w + ox) * o.c + ch] =
                    quantize(mean, recip, out.zero_point, n.clamp.min, n.clamp.max);
            }
        }
    }
}

/// The tflite rule. At most 255x255 taps of |x| <= 128: the sum fits an i32.
pub fn tflite(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
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
