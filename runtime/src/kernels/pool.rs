//! 2x2 stride-2 max pooling on int8 NHWC (floor: an odd last row or column is dropped, as in
//! ONNX MaxPool with `ceil_mode = 0`).

use crate::error::Shape;

/// Pools `input` (shape `input_shape`) into `output` (`h/2 x w/2 x c`).
pub fn maxpool2x2(input_shape: Shape, input: &[i8], output: &mut [i8]) {
    let Shape { h: _, w, c } = input_shape;
    let out = Shape::new(input_shape.h / 2, w / 2, c);
    if out.is_empty() {
        return;
    }
    let row = w * c;
    for (oy, out_row) in output[..out.len()].chunks_exact_mut(out.w * c).enumerate() {
        let top = &input[2 * oy * row..][..row];
        let bottom = &input[(2 * oy + 1) * row..][..row];
        for (ox, out_px) in out_row.chunks_exact_mut(c).enumerate() {
            let a = &top[2 * ox * c..][..2 * c];
            let b = &bottom[2 * ox * c..][..2 * c];
            for (ch, o) in out_px.iter_mut().enumerate() {
                *o = a[ch].max(a[c + ch]).max(b[ch].max(b[c + ch]));
            }
        }
    }
}
