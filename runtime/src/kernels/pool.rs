//! 2x2 stride-2 max pooling on int8 NHWC (floor: an odd last row or column is dropped, as in
//! ONNX MaxPool with `ceil_mode = 0`).

use super::{Separate, Tensors};
use crate::error::Shape;

/// Pools `input` (shape `input_shape`) into `output` (`h/2 x w/2 x c`).
pub fn maxpool2x2(input_shape: Shape, input: &[i8], output: &mut [i8]) {
    maxpool2x2_in(input_shape, &mut Separate { input, output })
}

/// [`maxpool2x2`] on [`Tensors`]: output row `p` reads input rows `2p` and `2p + 1` only, and
/// is written after them (the row order [`crate::plan`] relies on).
pub fn maxpool2x2_in(input_shape: Shape, t: &mut dyn Tensors) {
    let Shape { h: _, w, c } = input_shape;
    let out = Shape::new(input_shape.h / 2, w / 2, c);
    if out.is_empty() {
        return;
    }
    let row = w * c;
    for oy in 0..out.h {
        for ox in 0..out.w {
            for ch in 0..c {
                let input = t.input();
                let top = 2 * oy * row + 2 * ox * c + ch;
                let bottom = top + row;
                let v = input[top]
                    .max(input[top + c])
                    .max(input[bottom].max(input[bottom + c]));
                t.output()[(oy * out.w + ox) * c + ch] = v;
            }
        }
    }
}
