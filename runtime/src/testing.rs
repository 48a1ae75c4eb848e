//! Deterministic models with pseudo-random weights (std only), for tests and benchmarks that
//! need a model of a given architecture but not a trained one.

use std::vec::Vec;

use crate::error::Shape;
use crate::model::Padding;
use crate::quant::QuantParams;
use crate::writer::{LayerSpec, ModelSpec, Weights};

/// A small, dependency-free PRNG (SplitMix64): reproducible across platforms.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Random weights for a layer with `fan_in` inputs per output, scaled so that outputs use a
/// good part of the int8 range instead of saturating.
pub fn random_weights(
    rng: &mut SplitMix64,
    fan_in: usize,
    out: usize,
    input_scale: f32,
) -> Weights {
    let weights: Vec<i8> = (0..fan_in * out)
        .map(|_| rng.range(-127, 127) as i8)
        .collect();
    let weight_scales: Vec<f32> = (0..out).map(|_| 0.002 + 0.01 * rng.unit()).collect();
    // acc ~ sqrt(fan_in) * 75 * 73 in integer units; aim for about 40 output steps.
    let typical = (fan_in as f32).sqrt() * 75.0 * 73.0;
    let mean_scale = weight_scales.iter().sum::<f32>() / out as f32;
    let output_scale = input_scale * mean_scale * typical / 40.0;
    let bias = (0..out).map(|_| rng.range(-2000, 2000) as i32).collect();
    Weights {
        weights,
        bias,
        weight_scales,
        output: QuantParams {
            scale: output_scale,
            zero_point: rng.range(-20, 20) as i8,
        },
    }
}

/// The seed network (the MNIST CNN tinyconv was founded on) with pseudo-random weights:
/// conv 3x3 1→16 same +pool, conv 3x3 16→128 valid +pool, conv 3x3 128→256 valid +pool,
/// flatten 1024, dense 500 ReLU, dense 10.
pub fn seed_network(seed: u64) -> ModelSpec {
    network(seed, 16, 128, 256, 500)
}

/// The seed architecture with other widths (small ones make fast tests).
pub fn network(seed: u64, c1: usize, c2: usize, c3: usize, hidden: usize) -> ModelSpec {
    let mut rng = SplitMix64(seed);
    let input_quant = QuantParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };
    let mut layers = Vec::new();
    let mut scale = input_quant.scale;
    let conv = |rng: &mut SplitMix64, cin: usize, cout: usize, padding, scale: &mut f32| {
        let params = random_weights(rng, 9 * cin, cout, *scale);
        *scale = params.output.scale;
        LayerSpec::Conv2d {
            kernel: 3,
            padding,
            relu: true,
            pool: true,
            params,
        }
    };
    layers.push(conv(&mut rng, 1, c1, Padding::Same, &mut scale));
    layers.push(conv(&mut rng, c1, c2, Padding::Valid, &mut scale));
    layers.push(conv(&mut rng, c2, c3, Padding::Valid, &mut scale));
    layers.push(LayerSpec::Flatten);
    let fc1 = random_weights(&mut rng, 4 * c3, hidden, scale);
    scale = fc1.output.scale;
    layers.push(LayerSpec::Dense {
        relu: true,
        params: fc1,
    });
    layers.push(LayerSpec::Dense {
        relu: false,
        params: random_weights(&mut rng, hidden, 10, scale),
    });
    ModelSpec {
        input: Shape::new(28, 28, 1),
        input_quant,
        pixel_scale: 1.0 / 255.0,
        layers,
    }
}
