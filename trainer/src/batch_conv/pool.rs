//! ReLU followed by 2x2/stride-2 max pooling, fused, on planes of `height × width` floats (any
//! layout whose last two dimensions are the image: CNHW here). Odd trailing rows/columns are
//! dropped, as burn's and Keras' "valid" pooling do.
//!
//! `max(0, max(a, b, c, d)) = max(relu(a), …)`, so the fused form is exact. The forward pass
//! records, per output, which of the four inputs won (row-major order, the first on ties), or
//! [`NO_GRADIENT`] when the result was clamped to 0; the backward pass routes each output
//! gradient to that one input. One byte per output instead of keeping the 4x larger input.

use rayon::prelude::*;

/// Winner code of an output that ReLU clamped to 0 (its gradient is 0 everywhere).
pub const NO_GRADIENT: u8 = 4;

/// Plane geometry: `planes` images of `height × width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub planes: usize,
    pub height: usize,
    pub width: usize,
}

impl PoolGeometry {
    pub fn out_height(&self) -> usize {
        self.height / 2
    }

    pub fn out_width(&self) -> usize {
        self.width / 2
    }

    pub fn input_len(&self) -> usize {
        self.planes * self.height * self.width
    }

    pub fn output_len(&self) -> usize {
        self.planes * self.out_height() * self.out_width()
    }
}

/// `out = maxpool2x2(relu(x))`; `winners` gets each output's winning input (0..4 for
/// top-left, top-right, bottom-left, bottom-right) or [`NO_GRADIENT`].
pub fn forward(g: &PoolGeometry, x: &[f32], out: &mut [f32], winners: &mut [u8]) {
    assert_eq!(x.len(), g.input_len(), "input length");
    assert_eq!(out.len(), g.output_len(), "output length");
    assert_eq!(winners.len(), g.output_len(), "winner length");
    let (w, ow) = (g.width, g.out_width());
    let plane_out = g.out_height() * ow;
    if plane_out == 0 {
        return;
    }
    x.par_chunks(g.height * w)
        .zip(out.par_chunks_mut(plane_out))
        .zip(winners.par_chunks_mut(plane_out))
        .for_each(|((plane, out), winners)| {
            let rows = plane
                .chunks_exact(2 * w)
                .zip(out.chunks_exact_mut(ow))
                .zip(winners.chunks_exact_mut(ow));
            for ((pair, out), winners) in rows {
                let (top, bottom) = pair.split_at(w);
                let quads = top.chunks_exact(2).zip(bottom.chunks_exact(2));
                // Branch-free selects (ties go to the earlier input), so LLVM vectorizes it.
                for ((t, b), (out, winner)) in quads.zip(out.iter_mut().zip(winners.iter_mut())) {
                    let (upper, upper_at) = if t[1] > t[0] { (t[1], 1) } else { (t[0], 0) };
                    let (lower, lower_at) = if b[1] > b[0] { (b[1], 3) } else { (b[0], 2) };
                    let (best, at) = if lower > upper {
                        (lower, lower_at)
                    } else {
                        (upper, upper_at)
                    };
                    let positive = best > 0.0;
                    *out = if positive { best } else { 0.0 };
                    *winner = if positive { at } else { NO_GRADIENT };
                }
            }
        });
}

/// The input gradient of [`forward`] given the output gradient `dy`.
pub fn backward(g: &PoolGeometry, winners: &[u8], dy: &[f32]) -> Vec<f32> {
    assert_eq!(dy.len(), g.output_len(), "output-gradient length");
    assert_eq!(winners.len(), g.output_len(), "winner length");
    let mut dx = vec![0.0; g.input_len()];
    let (w, ow) = (g.width, g.out_width());
    let plane_out = g.out_height() * ow;
    if plane_out == 0 {
        return dx;
    }
    dx.par_chunks_mut(g.height * w)
        .zip(dy.par_chunks(plane_out))
        .zip(winners.par_chunks(plane_out))
        .for_each(|((plane, dy), winners)| {
            let rows = plane
                .chunks_exact_mut(2 * w)
                .zip(dy.chunks_exact(ow))
                .zip(winners.chunks_exact(ow));
            for ((pair, dy), winners) in rows {
                let (top, bottom) = pair.split_at_mut(w);
                let quads = top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2));
                // Every input of a window is written (the winner gets the gradient, the rest 0).
                for ((t, b), (&d, &winner)) in quads.zip(dy.iter().zip(winners)) {
                    let pick = |code: u8| if winner == code { d } else { 0.0 };
                    (t[0], t[1], b[0], b[1]) = (pick(0), pick(1), pick(2), pick(3));
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_is_relu_then_max_and_backward_routes_to_the_winner() {
        let g = PoolGeometry {
            planes: 2,
            height: 5,
            width: 4,
        }; // an odd row to drop
        #[rustfmt::skip]
        let x = vec![
            1.0, 2.0,   -1.0, -2.0,
            3.0, 3.0,   -3.0, -0.5,
            -1.0, 0.0,  7.0, 7.0,
            0.0, -4.0,  7.0, 9.0,
            99.0, 99.0, 99.0, 99.0,
            // plane 2: ties resolve to the first in row-major order
            5.0, 5.0,   0.0, 0.0,
            5.0, 5.0,   0.0, 0.0,
            -1.0, 2.0,  1.0, 1.0,
            2.0, 2.0,   1.0, 1.0,
            -99.0, -99.0, -99.0, -99.0,
        ];
        let mut out = vec![f32::NAN; g.output_len()];
        let mut winners = vec![9; g.output_len()];
        forward(&g, &x, &mut out, &mut winners);
        assert_eq!(out, [3.0, 0.0, 0.0, 9.0, 5.0, 0.0, 2.0, 1.0]);
        assert_eq!(
            winners,
            [2, NO_GRADIENT, NO_GRADIENT, 3, 0, NO_GRADIENT, 1, 0]
        );

        let dy = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0];
        let dx = backward(&g, &winners, &dy);
        let mut expected = vec![0.0; x.len()];
        expected[4] = 10.0; // plane 1 (row 1, col 0)
        expected[15] = 40.0; // plane 1 (row 3, col 3)
        expected[20] = 50.0; // plane 2 (row 0, col 0)
        expected[20 + 9] = 70.0; // plane 2 (row 2, col 1)
        expected[20 + 10] = 80.0; // plane 2 (row 2, col 2)
        assert_eq!(dx, expected);
    }
}
