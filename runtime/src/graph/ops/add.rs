//! add: the elementwise sum of two tensors of one shape, each with its own scale and zero
//! point (a residual connection), then the fused clamp; TensorFlow Lite's integer rule
//! ([`crate::tflite_rule::add`]). Refused under the `onnx` rule (tract runs a float Add
//! between DequantizeLinear and QuantizeLinear; see docs/quantization.md).

use super::{Check, Node};
use crate::error::Error;
use crate::graph::format::Rule;
use crate::tflite_rule::{self, AddParams, QuantizedMultiplier};

/// The six parameter words: input 1, input 2 and output multiplier and shift.
pub fn params_words(p: &AddParams) -> [i32; 6] {
    [
        p.input1.multiplier,
        p.input1.shift,
        p.input2.multiplier,
        p.input2.shift,
        p.output.multiplier,
        p.output.shift,
    ]
}

fn params(words: &[i32; 6]) -> AddParams {
    let m = |i: usize| QuantizedMultiplier {
        multiplier: words[i],
        shift: words[i + 1],
    };
    AddParams {
        input1: m(0),
        input2: m(2),
        output: m(4),
    }
}

pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    if c.node.rule != Rule::Tflite {
        return Err(c.not_under_rule());
    }
    c.unused(true, true, false, false)?;
    let (a, b, o) = (c.node.input, c.node.input2, c.node.output_info);
    if b.shape != a.shape {
        return Err(c.shape_mismatch("second input shape", a.shape, b.shape));
    }
    if o.shape != a.shape {
        return Err(c.shape_mismatch("output shape", a.shape, o.shape));
    }
    let expected = tflite_rule::add_params(a.quant.scale, b.quant.scale, o.quant.scale)
        .ok_or(c.bad_quant("add scales out of range"))?;
    if c.raw.params != params_words(&expected) {
        return Err(c.bad_quant("stored add parameters differ from the scales'"));
    }
    Ok(())
}

/// The scalar reference.
pub fn reference(n: &Node<'_>, a: &[i8], b: &[i8], output: &mut [i8]) {
    let p = params(&n.params);
    let zero_points = [
        n.input.quant.zero_point as i32,
        n.input2.quant.zero_point as i32,
        n.output_info.quant.zero_point as i32,
    ];
    let (lo, hi) = (n.clamp.min as i32, n.clamp.max as i32);
    for ((y, &x1), &x2) in output.iter_mut().zip(a).zip(b) {
        *y = tflite_rule::add(x1, x2, zero_points, &p, lo, hi);
    }
}
