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
    if !c.node.wide {
        c.weights(output.c, per)?;
        let weights = c.node.weights;
        return c.channels(true, |ch| {
            weights[ch * per..(ch + 1) * per]
                .iter()
                .enumerate()
                .map(move |(k, &w)| (ch * per + k, w))
        });
    }
    if !output.c.is_multiple_of(WIDE_ROWS) || !per.is_multiple_of(4) {
        return Err(c.invalid("wide dense weights (rows must be a multiple of 8 and inputs of 4)"));
    }
    c.weights(output.c, 2 * per)?;
    let node = c.node;
    // Every stored int16 must be an int8 weight's value (the kernels read them as such).
    for (i, v) in node.weights.chunks_exact(2).enumerate() {
        let v = i16::from_le_bytes([v[0] as u8, v[1] as u8]);
        if i8::try_from(v).is_err() {
            return Err(Error::WeightOutOfRange {
                layer: c.index,
                index: i,
            });
        }
    }
    // Row `ch`'s values: in each quad of inputs its 4 consecutive int16s (in lane order,
    // which the sum of magnitudes does not see), the quads 4 * WIDE_ROWS values apart.
    let values = |ch: usize| {
        let first = wide_index(ch, 0, per);
        (0..per / 4).flat_map(move |q| {
            (0..4).map(move |l| {
                let i = first + 4 * WIDE_ROWS * q + l;
                (i, node.weights[2 * i])
            })
        })
    };
    c.channels(true, values)
}

/// Rows of one group of the wide layout.
pub const WIDE_ROWS: usize = 8;

/// Where weight `(row, k)` of a wide dense layer with `len` inputs is stored, in int16 values:
/// rows in groups of [`WIDE_ROWS`], each group input by input in quads, each quad the group's
/// rows one after another as `[w0, w2, w1, w3]` — the lanes `SXTB16` gives an input word
/// (`kernels::dense`), so that one `LDRD` feeds two `SMLAD`s.
pub const fn wide_index(row: usize, k: usize, len: usize) -> usize {
    const LANE: [usize; 4] = [0, 2, 1, 3];
    ((row / WIDE_ROWS * (len / 4) + k / 4) * WIDE_ROWS + row % WIDE_ROWS) * 4 + LANE[k % 4]
}

/// Weight `(row, k)` of a validated dense node with `len` inputs, in either layout.
#[inline]
pub fn weight(n: &Node<'_>, row: usize, k: usize, len: usize) -> i8 {
    if n.wide {
        let i = 2 * wide_index(row, k, len);
        i16::from_le_bytes([n.weights[i] as u8, n.weights[i + 1] as u8]) as i8
    } else {
        n.weights[row * len + k]
    }
}

/// Scratch bytes the fast kernel needs (`const`, for the planner): the widened input vector
/// (`graph::kernels::dense`), the same on every target; none for wide weights, whose kernel
/// widens the input in registers.
pub const fn scratch_len(raw: &RawOp, input: &RawTensor, _output: &RawTensor) -> usize {
    if raw.flags & crate::graph::format::op_flags::WIDE != 0 {
        return 0;
    }
    dense::scratch_len(input.len_u64() as usize)
}

/// Runs the op with the fast kernel (the DSP blocks on Armv7E-M, their portable twins
/// elsewhere), bit-exact with [`reference`].
pub fn run(n: &Node<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    if n.wide {
        return dense::wide(n, input, output);
    }
    let words = conv::Words::new(n.channels.bias, n.channels.multipliers);
    dense::fast(n, words, input, output, scratch)
}

/// The scalar reference.
pub fn reference(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    let zp = n.input.quant.zero_point as i32;
    let per = input.len();
    for (oc, y) in output.iter_mut().enumerate() {
        let mut acc = n.channels.bias(oc);
        for (k, &x) in input.iter().enumerate() {
            acc += weight(n, oc, k, per) as i32 * (x as i32 - zp);
        }
        *y = n.finish(n.rescale(acc, oc));
    }
}
