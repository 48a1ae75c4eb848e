//! Fast add under the tflite rule: TFLM's per-element arithmetic with its two input rescales
//! looked up instead of computed.
//!
//! TFLM's int8 add (`tflite_rule::add`) rescales each input on its own,
//! `s_i = MBQM((x_i - z_i) << 20, M_i)`, then requantizes `s_1 + s_2`. `s_i` depends on the
//! int8 code `x_i` only, so the kernel computes both 256-entry tables once a call with the
//! reference's own function (2 KB of stack; 512 rescales against one per element each
//! before), and the output requantization takes the fused form of [`super::requant`] when the
//! output multiplier allows it (every add TFLite makes: its shift is `<= 0`), else the
//! reference's. Every value is the reference's by construction.

use super::requant::Fused;
use crate::graph::ops::Node;
use crate::tflite_rule::{self, ADD_LEFT_SHIFT, AddParams, QuantizedMultiplier};

/// `s(x) = MBQM((x - z) << 20, m)` for every int8 code `x`, indexed by `x as u8`.
fn rescale_table(zero_point: i32, m: QuantizedMultiplier) -> [i32; 256] {
    let mut t = [0i32; 256];
    for (code, s) in t.iter_mut().enumerate() {
        let v = (code as u8 as i8 as i32)
            .wrapping_sub(zero_point)
            .wrapping_mul(1 << ADD_LEFT_SHIFT);
        *s = tflite_rule::multiply_by_quantized_multiplier(v, m);
    }
    t
}

/// The tflite add of `a` and `b` into `output` (equal lengths), bit-exact with
/// `ops::add::tflite`.
pub fn tflite(n: &Node<'_>, p: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) {
    let t1 = rescale_table(n.input.quant.zero_point as i32, p.input1);
    let t2 = rescale_table(n.input2.quant.zero_point as i32, p.input2);
    let z = n.output_info.quant.zero_point as i32;
    let (lo, hi) = (n.clamp.min as i32, n.clamp.max as i32);
    let sums = a
        .iter()
        .zip(b)
        .map(|(&x1, &x2)| t1[x1 as u8 as usize].wrapping_add(t2[x2 as u8 as usize]));
    match Fused::new(p.output, z, lo, hi) {
        Some(q) => {
            for (y, raw) in output.iter_mut().zip(sums) {
                *y = q.apply(raw);
            }
        }
        None => {
            for (y, raw) in output.iter_mut().zip(sums) {
                let out =
                    tflite_rule::multiply_by_quantized_multiplier(raw, p.output).wrapping_add(z);
                // The reference's clamp order: min(max, max(min, out)).
                let lower = if lo < out { out } else { lo };
                *y = (if lower < hi { lower } else { hi }) as i8;
            }
        }
    }
}
