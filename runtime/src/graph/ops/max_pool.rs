//! max_pool: the largest in-bounds value of each window (padding is never the maximum), then
//! the fused clamp. Scale and zero point pass through unchanged, under either rule.

use super::{Check, Node, taps};
use crate::error::Error;

pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    c.unused(false, true, true, false)?;
    c.same_quant()?;
    c.window_output(c.node.input.shape.c)
}

/// The scalar reference.
pub fn reference(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    let (i, o, w) = (n.input.shape, n.output_info.shape, n.window);
    for oy in 0..o.h {
        let (ky0, ky1, iy0) = taps(oy, w.stride_h, w.pad_top, w.kernel_h, i.h);
        for ox in 0..o.w {
            let (kx0, kx1, ix0) = taps(ox, w.stride_w, w.pad_left, w.kernel_w, i.w);
            for ch in 0..o.c {
                let mut m = i8::MIN;
                for ky in ky0..ky1 {
                    let iy = (iy0 + ky as isize) as usize;
                    for kx in kx0..kx1 {
                        let ix = (ix0 + kx as isize) as usize;
                        m = m.max(input[(iy * i.w + ix) * i.c + ch]);
                    }
                }
                output[(oy * o.w + ox) * o.c + ch] = m.clamp(n.clamp.min, n.clamp.max);
            }
        }
    }
}
