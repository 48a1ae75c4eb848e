//! dense (fully connected) over the flattened input, weights `[out][in]`.

use super::super::kernels::{conv, dense};
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

/// Scratch bytes the fast kernel needs (`const`, for the planner): the widened input vector
/// (`graph::kernels::dense`), the same on every target.
pub const fn scratch_len(_raw: &RawOp, input: &RawTensor, _output: &RawTensor) -> usize {
    dense::scratch_len(input.len_u64() as usize)
}

/// Runs the op with the fast kernel (the DSP blocks on Armv7E-M, their portable twins
/// elsewhere), bit-exact with [`reference`].
pub fn run(n: &Node<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    let words = conv::Words::new(n.channels.bias, n.channels.multipliers);
    dense::fast(n, words, input, output, scratch)
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
