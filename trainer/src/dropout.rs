//! Dropout whose mask is drawn in parallel, for training.
//!
//! burn's `Dropout` draws one Bernoulli sample per element from the backend's single,
//! sequential RNG and applies it with two tensor multiplies: 1.5 M draws on one core per
//! training step of the seed network, ~35 ms of a ~0.3 s step (measured with
//! `examples/step_speed.rs`). Here one draw from that same RNG (so `Device::seed` still makes
//! runs reproducible, and the trainer's per-epoch re-seeding still applies) seeds a
//! counter-based generator — SplitMix64 of `seed + element index` — that every thread can
//! evaluate for its own share of the mask, and the scaled mask is applied with one multiply.
//! Same distribution as burn's (keep with probability `1 - p`, scale kept values by
//! `1 / (1 - p)`), different draws.

use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::Distribution;
use rayon::prelude::*;

use crate::rng::splitmix64;

/// `layer`'s dropout of `x`: the identity unless `x` is on an autodiff device and the layer is
/// in training mode (the same rule as burn's `Dropout::forward`).
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !layer.training.is_enabled() || !device.is_autodiff() || layer.prob == 0.0 {
        return x;
    }
    // Two uniform f32 draws from the backend RNG make the 64-bit seed of this mask.
    let draws: Vec<f32> = Tensor::<1>::random([2], Distribution::Uniform(0.0, 1.0), &device)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 draws");
    let seed = (u64::from(draws[0].to_bits()) << 32) | u64::from(draws[1].to_bits());
    let shape = x.shape();
    let mask = Tensor::from_data(
        TensorData::new(mask(seed, layer.prob, shape.num_elements()), shape),
        &device,
    );
    x * mask
}

/// `len` mask values: `1 / (1 - prob)` with probability `1 - prob`, else 0; element `i` is a
/// function of `(seed, i)` only, so the mask doesn't depend on how the work is split.
pub fn mask(seed: u64, prob: f64, len: usize) -> Vec<f32> {
    let keep = 1.0 - prob;
    let scale = (1.0 / keep) as f32;
    // Keep when the top 32 bits of the hash fall below keep·2³².
    let threshold = (keep * 4_294_967_296.0) as u64;
    let mut values = vec![0.0; len];
    values
        .par_chunks_mut(4096)
        .enumerate()
        .for_each(|(chunk, values)| {
            for (offset, value) in values.iter_mut().enumerate() {
                let index = (chunk * 4096 + offset) as u64;
                *value = if splitmix64(seed.wrapping_add(index)) >> 32 < threshold {
                    scale
                } else {
                    0.0
                };
            }
        });
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_keeps_the_right_share_scaled_and_is_a_function_of_the_seed() {
        for prob in [0.25, 0.5] {
            let values = mask(42, prob, 200_000);
            let kept = values.iter().filter(|&&v| v != 0.0).count() as f64 / values.len() as f64;
            assert!((kept - (1.0 - prob)).abs() < 0.005, "p {prob}: kept {kept}");
            let scale = (1.0 / (1.0 - prob)) as f32;
            assert!(values.iter().all(|&v| v == 0.0 || v == scale));
            // The expectation is preserved: mean of the mask ≈ 1.
            let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64;
            assert!((mean - 1.0).abs() < 0.01, "p {prob}: mean {mean}");
        }
        assert_eq!(mask(7, 0.5, 10_000), mask(7, 0.5, 10_000));
        assert_ne!(mask(7, 0.5, 10_000), mask(8, 0.5, 10_000));
        // A prefix of a longer mask is the shorter mask (split-independent).
        assert_eq!(mask(7, 0.5, 5_000)[..], mask(7, 0.5, 10_000)[..5_000]);
    }

    #[test]
    fn dropout_is_active_only_when_training_on_an_autodiff_device() {
        let _rng = crate::rng::backend_rng_lock();
        let layer = burn::nn::DropoutConfig::new(0.5).init();
        let plain = Device::flex();
        let x = Tensor::<2>::ones([50, 40], &plain);
        let same: Vec<f32> = dropout(&layer, x).into_data().try_to_vec::<f32>().unwrap();
        assert!(same.iter().all(|&v| v == 1.0));
        let device = Device::flex().autodiff();
        let run = |seed| {
            device.seed(seed);
            let x = Tensor::<2>::ones([50, 40], &device);
            let y: Vec<f32> = dropout(&layer, x).into_data().try_to_vec::<f32>().unwrap();
            y
        };
        let a = run(3);
        assert!(a.contains(&0.0) && a.contains(&2.0));
        assert_eq!(a, run(3), "seeded device: same mask");
        assert_ne!(a, run(4));
    }
}
