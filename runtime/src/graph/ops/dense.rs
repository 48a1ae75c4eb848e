//! dense (fully connected) over the flattened input, weights `[out][in]`.

use super::super::record::{RawOp, RawTensor};
use super::{Check, Node};
use crate::error::{Error, Shape};

pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    c.unused(true, false, true, false)?;
    let output = c.node.output_info.shape;
    let expected = Shape::new(1, 1, output.len());
    if output != expected {
        return Err(c.shape_mismatch("dense output (must be 1x1xN)", expected, output));
    }
    let per = c.node.input.shape.len();
    c.weights(output.c, per)?;
    let weights = c.node.weights;
    c.channels(true, |ch| {
        weights[ch * per..(ch + 1) * per]
            .iter()
            .enumerate()
            .map(move |(k, w)| (ch * per + k, w))
    })
}

/// Scratch bytes the fastest kernel for this op needs on this target (`const`, for the
/// planner). The scalar reference needs none.
pub const fn scratch_len(_raw: &RawOp, _input: &RawTensor, _output: &RawTensor) -> usize {
    0
}

/// Runs the op with the fastest kernel for its shape on this target.
pub fn run(n: &Node<'_>, input: &[i8], output: &mut [i8], _scratch: &mut [i8]) {
    reference(n, input, output)
}

/// The scalar reference.
pub fn reference(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    let zp = n.input.quant.zero_point as i32;
    let per = input.len();
    for (oc, y) in output.iter_mut().enumerate() {
        let mut acc = n.channels.bias(oc);
        for (&x, &w) in input.iter().zip(&n.weights[oc * per..][..per]) {
            acc += w as i32 * (x as i32 - zp);
        }
        *y = n.finish(n.rescale(acc, oc));
    }
}
