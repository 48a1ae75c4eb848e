//! Running a validated graph in one arena.

use core::ops::Range;

use super::io::Io;
use super::{Graph, OpKind, ops};
use crate::error::Error;
use crate::quant::requantize;

/// Splits the arena into the op's output and scratch (mutable) and its inputs, which the
/// planner placed apart from both (checked by `Graph::parse`).
fn split<'a>(
    arena: &'a mut [i8],
    out: Range<usize>,
    scratch: Range<usize>,
    inputs: [Range<usize>; 2],
) -> (&'a mut [i8], &'a mut [i8], [&'a [i8]; 2]) {
    // An empty scratch sits right after the output.
    let scratch = if scratch.is_empty() {
        out.end..out.end
    } else {
        scratch
    };
    let out_first = out.start <= scratch.start;
    let (lo, hi) = if out_first {
        (out.clone(), scratch.clone())
    } else {
        (scratch.clone(), out.clone())
    };
    let (a, rest) = arena.split_at_mut(lo.start);
    let (lo_bytes, rest) = rest.split_at_mut(lo.end - lo.start);
    let (b, rest) = rest.split_at_mut(hi.start - lo.end);
    let (hi_bytes, c) = rest.split_at_mut(hi.end - hi.start);
    let (a, b, c): (&'a [i8], &'a [i8], &'a [i8]) = (a, b, c);
    let pick = |r: Range<usize>| -> &'a [i8] {
        if r.end <= lo.start {
            &a[r]
        } else if r.end <= hi.start {
            &b[r.start - lo.end..r.end - lo.end]
        } else {
            &c[r.start - hi.end..r.end - hi.end]
        }
    };
    let [x, y] = inputs;
    let inputs = [pick(x), pick(y)];
    if out_first {
        (lo_bytes, hi_bytes, inputs)
    } else {
        (hi_bytes, lo_bytes, inputs)
    }
}

/// Whether two non-empty byte ranges share a byte.
pub(super) fn overlap(a: &Range<usize>, b: &Range<usize>) -> bool {
    !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end
}

impl<'m> Graph<'m> {
    /// Runs the model on its int8 input tensor; returns the output tensor (in the arena).
    pub fn infer_int8<'a>(&self, input: &[i8], arena: &'a mut [i8]) -> Result<&'a [i8], Error> {
        self.infer_observed(input, arena, &mut |_, _| {})
    }

    /// [`Graph::infer_int8`], calling `observer(op, output)` after every op with that op's
    /// output tensor (a reshape's is its input's bytes).
    pub fn infer_observed<'a>(
        &self,
        input: &[i8],
        arena: &'a mut [i8],
        observer: &mut dyn FnMut(usize, &[i8]),
    ) -> Result<&'a [i8], Error> {
        let arena = self.check_arena(input.len(), arena)?;
        arena[self.tensor_range(self.input)].copy_from_slice(input);
        self.run(arena, observer)
    }

    /// Runs the model on raw u8 pixels, quantized inside:
    /// `q = clamp(rne(p * pixel_scale / input_scale) + z_in)` (the model must take pixels).
    pub fn infer_pixels<'a>(&self, pixels: &[u8], arena: &'a mut [i8]) -> Result<&'a [i8], Error> {
        let (_, m) = self.pixel.ok_or(Error::NoPixelInput)?;
        let arena = self.check_arena(pixels.len(), arena)?;
        let zp = self.input().quant.zero_point as i32;
        let mut table = [0i8; 256];
        for (p, q) in table.iter_mut().enumerate() {
            *q = requantize(p as i32, m, zp, i8::MIN as i32, i8::MAX as i32);
        }
        for (q, &p) in arena[self.tensor_range(self.input)].iter_mut().zip(pixels) {
            *q = table[p as usize];
        }
        self.run(arena, &mut |_, _| {})
    }

    fn check_arena<'a>(
        &self,
        input_len: usize,
        arena: &'a mut [i8],
    ) -> Result<&'a mut [i8], Error> {
        let expected = self.input().shape.len();
        if input_len != expected {
            return Err(Error::InputSize {
                expected,
                actual: input_len,
            });
        }
        if arena.len() < self.plan.len {
            return Err(Error::ArenaTooSmall {
                needed: self.plan.len,
                actual: arena.len(),
            });
        }
        Ok(&mut arena[..self.plan.len])
    }

    fn run<'a>(
        &self,
        arena: &'a mut [i8],
        observer: &mut dyn FnMut(usize, &[i8]),
    ) -> Result<&'a [i8], Error> {
        for node in self.nodes() {
            let out = self.tensor_range(node.output);
            if node.kind != OpKind::Reshape {
                // Never for a parsed graph: its plan was checked against the ops' streaming rules.
                let unstreamable = Error::GraphOrder {
                    op: Some(node.index),
                    what: "overlaps its input in the plan, which this op cannot stream over",
                    tensor: node.output,
                };
                let inputs = node.inputs.map(|t| self.tensor_range(t));
                let scratch = self.scratch_range(node.index);
                let slots = if node.kind == OpKind::Add { 2 } else { 1 };
                match (0..slots).find(|&s| overlap(&inputs[s], &out)) {
                    // The plan streams the output over this input (checked by the parse).
                    Some(slot) => {
                        let (lo, hi) = (
                            inputs[slot].start.min(out.start),
                            inputs[slot].end.max(out.end),
                        );
                        let other = if slots == 2 {
                            inputs[1 - slot].clone()
                        } else {
                            0..0
                        };
                        let (window, scratch, [other, _]) =
                            split(arena, lo..hi, scratch, [other, 0..0]);
                        let mut io = Io::overlapping(
                            window,
                            inputs[slot].start - lo..inputs[slot].end - lo,
                            out.start - lo..out.end - lo,
                        )
                        .ok_or(unstreamable)?;
                        if !ops::run_overlapping(&node, &mut io, slot, other, scratch) {
                            return Err(unstreamable);
                        }
                    }
                    None => {
                        let (output, scratch, inputs) = split(arena, out.clone(), scratch, inputs);
                        ops::run(&node, inputs, output, scratch);
                    }
                }
            }
            observer(node.index, &arena[out]);
        }
        Ok(&arena[self.tensor_range(self.output)])
    }
}
