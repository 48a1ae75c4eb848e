//! Holding out a seeded, stratified fraction of every class as a validation split.

use std::path::PathBuf;

use crate::rng::{SplitMix64, splitmix64};
use crate::{DatasetError, Split};

/// `(rest, held_out)`: `fraction` of every class of `split` (rounded, at least one image and
/// never all of them) moved to `held_out`, chosen by a shuffle seeded from `seed` and the
/// class, so one class's choice does not depend on the others. Both keep `split`'s order.
/// `class_path(c)` names class `c` in the error when it has fewer than 2 images.
pub(crate) fn hold_out(
    split: &Split,
    fraction: f32,
    seed: u64,
    class_path: impl Fn(usize) -> PathBuf,
) -> Result<(Split, Split), DatasetError> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); split.num_classes];
    for (i, &l) in split.labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let (mut rest, mut held) = (Vec::new(), Vec::new());
    for (class, indices) in by_class.iter_mut().enumerate() {
        let n = indices.len();
        if n < 2 {
            return Err(DatasetError::TooFewToSplit(class_path(class), n));
        }
        let n_held = ((fraction as f64 * n as f64).round() as usize).clamp(1, n - 1);
        SplitMix64::new(splitmix64(seed) ^ splitmix64(class as u64)).shuffle(indices);
        held.extend_from_slice(&indices[..n_held]);
        rest.extend_from_slice(&indices[n_held..]);
    }
    rest.sort_unstable();
    held.sort_unstable();
    Ok((split.select(&rest), split.select(&held)))
}
