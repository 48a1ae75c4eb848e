//! Scalar references, written to be obviously right rather than fast: one output value at a
//! time, every tap bounds-checked, nothing fused. The optimized kernels must match them bit for
//! bit (see the tests in `tests/kernels.rs`).

use super::Conv;
use crate::error::Shape;
use crate::quant::requantize;

/// Convolution + bias + requantization (+ ReLU clamp); ignores `conv.pool` (pool separately
/// with [`maxpool2x2`]). Output shape: `conv.conv_output()`.
pub fn conv2d(conv: &Conv<'_>, input: &[i8], output: &mut [i8]) {
    let Shape { h, w, c } = conv.input;
    let out = conv.conv_output();
    let k = conv.kernel;
    for oy in 0..out.h {
        for ox in 0..out.w {
            for co in 0..out.c {
                let mut acc: i32 = conv.channels.bias(co);
                for ky in 0..k {
                    for kx in 0..k {
                        // Input coordinates, in a frame shifted by the padding.
                        let iy = oy as isize + ky as isize - conv.pad as isize;
                        let ix = ox as isize + kx as isize - conv.pad as isize;
                        for ci in 0..c {
                            let x = if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                conv.input_zero_point as i32 // padding is a real zero
                            } else {
                                input[(iy as usize * w + ix as usize) * c + ci] as i32
                            };
                            let weight = conv.weights[((co * k + ky) * k + kx) * c + ci] as i32;
                            acc += (x - conv.input_zero_point as i32) * weight;
                        }
                    }
                }
                output[(oy * out.w + ox) * out.c + co] = requantize(
                    acc,
                    conv.channels.multiplier(co),
                    conv.output_zero_point as i32,
                    conv.output_floor(),
                    127,
                );
            }
        }
    }
}

/// 2x2 stride-2 max pooling, floor mode.
pub fn maxpool2x2(input_shape: Shape, input: &[i8], output: &mut [i8]) {
    let Shape { h, w, c } = input_shape;
    for oy in 0..h / 2 {
        for ox in 0..w / 2 {
            for ch in 0..c {
                let mut m = i8::MIN;
                for dy in 0..2 {
                    for dx in 0..2 {
                        m = m.max(input[((2 * oy + dy) * w + 2 * ox + dx) * c + ch]);
                    }
                }
                output[(oy * (w / 2) + ox) * c + ch] = m;
            }
        }
    }
}
