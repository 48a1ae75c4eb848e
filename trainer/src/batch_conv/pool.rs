//! ReLU followed by 2x2/stride-2 max pooling of one image plane, and its gradient. Odd trailing
//! rows/columns are dropped, as burn's and Keras' "valid" pooling do.
//!
//! `max(0, max(a, b, c, d)) = max(relu(a), …)`, so the fused form is exact. The forward pass
//! records, per output, which of the four inputs won (row-major order, the first on ties), or
//! [`NO_GRADIENT`] when the result was clamped to 0; the backward pass routes each output
//! gradient to that one input. One byte per output instead of keeping the 4x larger input.

/// Winner code of an output that ReLU clamped to 0 (its gradient is 0 everywhere).
pub const NO_GRADIENT: u8 = 4;

/// Pools `plane` (rows of `width`) into `out` (rows of `width / 2`), recording `winners`.
pub fn pool_plane(plane: &[f32], width: usize, out: &mut [f32], winners: &mut [u8]) {
    let ow = width / 2;
    assert_eq!(out.len(), plane.len() / width / 2 * ow, "output length");
    assert_eq!(winners.len(), out.len(), "winner length");
    let rows = plane
        .chunks_exact(2 * width)
        .zip(out.chunks_exact_mut(ow.max(1)))
        .zip(winners.chunks_exact_mut(ow.max(1)));
    for ((pair, out), winners) in rows {
        let (top, bottom) = pair.split_at(width);
        let quads = top.chunks_exact(2).zip(bottom.chunks_exact(2));
        // Branch-free selects (ties go to the earlier input), which LLVM vectorizes.
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
}

/// The gradient of [`pool_plane`]: overwrites all of `plane` (rows of `width`) with `dy`
/// routed to each window's winner and 0 elsewhere.
pub fn unpool_plane(dy: &[f32], winners: &[u8], width: usize, plane: &mut [f32]) {
    let ow = width / 2;
    assert_eq!(dy.len(), plane.len() / width / 2 * ow, "gradient length");
    assert_eq!(winners.len(), dy.len(), "winner length");
    plane.fill(0.0); // the dropped odd row/column, if any
    let rows = plane
        .chunks_exact_mut(2 * width)
        .zip(dy.chunks_exact(ow.max(1)))
        .zip(winners.chunks_exact(ow.max(1)));
    for ((pair, dy), winners) in rows {
        let (top, bottom) = pair.split_at_mut(width);
        let quads = top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2));
        for ((t, b), (&d, &winner)) in quads.zip(dy.iter().zip(winners)) {
            let pick = |code: u8| if winner == code { d } else { 0.0 };
            (t[0], t[1], b[0], b[1]) = (pick(0), pick(1), pick(2), pick(3));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_is_relu_then_max_and_its_gradient_goes_to_the_winner() {
        // 5 x 4: the odd last row is dropped.
        #[rustfmt::skip]
        let plane = [
            1.0, 2.0,   -1.0, -2.0,
            3.0, 3.0,   -3.0, -0.5,
            -1.0, 0.0,  7.0, 7.0,
            0.0, -4.0,  7.0, 9.0,
            99.0, 99.0, 99.0, 99.0,
        ];
        let mut out = [f32::NAN; 4];
        let mut winners = [9; 4];
        pool_plane(&plane, 4, &mut out, &mut winners);
        assert_eq!(out, [3.0, 0.0, 0.0, 9.0]);
        assert_eq!(winners, [2, NO_GRADIENT, NO_GRADIENT, 3]);

        // Ties resolve to the first input in row-major order.
        #[rustfmt::skip]
        let ties = [
            5.0, 5.0,  -1.0, 2.0,  1.0,
            5.0, 5.0,   2.0, 2.0,  1.0,
        ];
        let mut out = [0.0; 2];
        let mut tie_winners = [9; 2];
        pool_plane(&ties, 5, &mut out, &mut tie_winners);
        assert_eq!((out, tie_winners), ([5.0, 2.0], [0, 1]));

        let mut dx = [f32::NAN; 20];
        unpool_plane(&[10.0, 20.0, 30.0, 40.0], &winners, 4, &mut dx);
        let mut expected = [0.0; 20];
        expected[4] = 10.0; // row 1, column 0
        expected[15] = 40.0; // row 3, column 3
        assert_eq!(dx, expected);
    }
}
