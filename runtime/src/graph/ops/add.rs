//! add: the elementwise sum of two tensors of one shape, each with its own scale and zero
//! point (a residual connection), then the fused clamp.
//!
//! * `tflite` rule: TensorFlow Lite's integer rule ([`crate::tflite_rule::add`]), its six
//!   multiplier words in the op's params.
//! * `onnx` rule: what tract computes for the QDQ form (DequantizeLinear x2, Add,
//!   QuantizeLinear), in f32, emulated bit for bit in integers by [`crate::soft_f32`]:
//!   `y = sat8(rne(f32(f32(f32((a - za) * sa) + f32((b - zb) * sb)) * f32(1 / sy))) + zy)`,
//!   then the clamp (docs/quantization.md). Nothing is stored: the kernel derives the two
//!   256-entry tables of dequantized codes and the reciprocal from the tensor scales; params
//!   must be zero.

use super::{Check, Node};
use crate::error::Error;
use crate::graph::format::Rule;
use crate::graph::io::Io;
use crate::graph::kernels;
use crate::soft_f32;
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

/// The op's params words as [`AddParams`].
pub fn params(words: &[i32; 6]) -> AddParams {
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
    c.unused(true, true, c.node.rule == Rule::Onnx, false)?;
    let (a, b, o) = (c.node.input, c.node.input2, c.node.output_info);
    if b.shape != a.shape {
        return Err(c.shape_mismatch("second input shape", a.shape, b.shape));
    }
    if o.shape != a.shape {
        return Err(c.shape_mismatch("output shape", a.shape, o.shape));
    }
    if c.node.rule == Rule::Onnx {
        // Any positive normal scales (the tensor records guarantee them): soft_f32 computes
        // every f32 the formula meets, overflow to infinity included.
        return Ok(());
    }
    let expected = tflite_rule::add_params(a.quant.scale, b.quant.scale, o.quant.scale)
        .ok_or(c.bad_quant("add scales out of range"))?;
    if c.raw.params != params_words(&expected) {
        return Err(c.bad_quant("stored add parameters differ from the scales'"));
    }
    Ok(())
}

/// The streaming lead of both inputs (`const`, for the planner): every kernel reads element
/// `i` of both inputs before it writes element `i`, so the output may sit on either input or
/// start before it.
pub const fn stream_lead() -> Option<i64> {
    Some(0)
}

/// Runs the op: the fast kernel under the tflite rule (`graph::kernels::add`, bit-exact with
/// [`tflite`]), the reference under the onnx rule. `io` holds the input `slot` (0: the
/// first, 1: the second) and the output; `other` is the other input.
pub fn run(n: &Node<'_>, io: &mut Io<'_>, slot: usize, other: &[i8]) {
    match n.rule {
        Rule::Onnx => onnx_io(n, io, slot, other),
        Rule::Tflite => kernels::add::tflite_io(n, &params(&n.params), io, slot, other),
    }
}

/// The scalar reference, under the node's rule.
pub fn reference(n: &Node<'_>, a: &[i8], b: &[i8], output: &mut [i8]) {
    match n.rule {
        Rule::Onnx => onnx(n, a, b, output),
        Rule::Tflite => tflite(n, a, b, output),
    }
}

/// The f32 bits of `f32((q - z) * s)` for every int8 code `q`, indexed by `q as u8`: what
/// tract's DequantizeLinear gives (`(q - z)` in i32, converted to f32 exactly, times `s`).
pub const fn dequantize_table(zero_point: i8, scale: f32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let s = scale.to_bits();
    let mut i = 0;
    while i < 256 {
        let q = i as u8 as i8 as i32;
        t[i] = soft_f32::mul(soft_f32::from_i32(q - zero_point as i32), s);
        i += 1;
    }
    t
}

/// tract's QuantizeLinear of the f32 `x`: `rne(f32(x * recip)) + z` (saturating), clamped to
/// `lo..=hi` (within the int8 range, so this is also int8 saturation). `recip` is the f32
/// bits of `1 / s`, rounded once.
#[inline]
pub const fn quantize(x: u32, recip: u32, zero_point: i8, lo: i8, hi: i8) -> i8 {
    let q = soft_f32::rne_i32(soft_f32::mul(x, recip)).saturating_add(zero_point as i32);
    if q < lo as i32 {
        lo
    } else if q > hi as i32 {
        hi
    } else {
        q as i8
    }
}

/// The onnx rule: tract's f32 QDQ add, in integers.
pub fn onnx(n: &Node<'_>, a: &[i8], b: &[i8], output: &mut [i8]) {
    onnx_io(n, &mut Io::apart(a, output), 0, b)
}

/// [`onnx`] with input `slot` and the output in `io`, element by element.
pub fn onnx_io(n: &Node<'_>, io: &mut Io<'_>, slot: usize, other: &[i8]) {
    let (qa, qb, qy) = (n.input.quant, n.input2.quant, n.output_info.quant);
    let ta = dequantize_table(qa.zero_point, qa.scale);
    let tb = dequantize_table(qb.zero_point, qb.scale);
    let recip = soft_f32::recip(qy.scale.to_bits());
    let len = io.output_len().min(io.input_len()).min(other.len());
    for (i, &x) in other.iter().enumerate().take(len) {
        let (x1, x2) = if slot == 0 {
            (io.get(i), x)
        } else {
            (x, io.get(i))
        };
        let sum = soft_f32::add(ta[x1 as u8 as usize], tb[x2 as u8 as usize]);
        io.output(i..i + 1)[0] = quantize(sum, recip, qy.zero_point, n.clamp.min, n.clamp.max);
    }
}

/// The tflite rule: TensorFlow Lite's integer add.
pub fn tflite(n: &Node<'_>, a: &[i8], b: &[i8], output: &mut [i8]) {
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
