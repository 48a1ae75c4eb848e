//! softmax over the channels of each pixel, int8 output with scale 1/256 and zero point -128;
//! TensorFlow Lite's integer rule ([`crate::tflite_rule::softmax`]). Refused under the `onnx`
//! rule.

use super::{Check, Node};
use crate::error::Error;
use crate::graph::format::Rule;
use crate::quant::QuantParams;
use crate::tflite_rule::{self, SoftmaxParams};

/// The output quantization every int8 softmax has.
pub const OUTPUT: QuantParams = QuantParams {
    scale: 1.0 / 256.0,
    zero_point: -128,
};

/// The six parameter words: input multiplier, left shift, diff_min, beta's f32 bits, 0, 0.
pub fn params_words(p: &SoftmaxParams, beta: f32) -> [i32; 6] {
    [
        p.input_multiplier,
        p.input_left_shift,
        p.diff_min,
        beta.to_bits() as i32,
        0,
        0,
    ]
}

pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    if c.node.rule != Rule::Tflite {
        return Err(c.not_under_rule());
    }
    c.unused(true, true, false, true)?;
    let (i, o) = (c.node.input, c.node.output_info);
    if o.shape != i.shape {
        return Err(c.shape_mismatch("output shape", i.shape, o.shape));
    }
    if o.quant != OUTPUT {
        return Err(c.bad_quant("softmax output must have scale 1/256 and zero point -128"));
    }
    let beta = f32::from_bits(c.raw.params[3] as u32);
    if !(beta.is_normal() && beta > 0.0) {
        return Err(c.invalid("softmax beta (must be positive)"));
    }
    let expected = tflite_rule::softmax_params(beta, i.quant.scale)
        .ok_or(c.bad_quant("softmax beta * input scale out of range"))?;
    if c.raw.params != params_words(&expected, beta) {
        return Err(c.bad_quant("stored softmax parameters differ from beta and the scale's"));
    }
    Ok(())
}

/// The scalar reference: one softmax per pixel.
pub fn reference(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    let p = SoftmaxParams {
        input_multiplier: n.params[0],
        input_left_shift: n.params[1],
        diff_min: n.params[2],
    };
    let depth = n.input.shape.c;
    for (x, y) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        tflite_rule::softmax(x, &p, y);
    }
}
