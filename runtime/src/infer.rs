//! Running a parsed model: raw pixels in, int8 logits and the class out, all in a caller-owned
//! arena laid out by the model's arena plan ([`crate::plan`]).

use crate::error::Error;
use crate::kernels::{Separate, Tensors, conv, pool};
use crate::model::{Layer, Model, Op};
use crate::plan::Placements;
use crate::quant::QuantParams;

/// Hooks called around every layer, e.g. to time layers on an MCU or to record activations.
pub trait Observer {
    fn layer_started(&mut self, _index: usize, _layer: &Layer<'_>) {}
    fn layer_finished(&mut self, _index: usize, _layer: &Layer<'_>, _output: &[i8]) {}
}

/// An observer that does nothing.
pub struct NoObserver;
impl Observer for NoObserver {}

/// The result of one inference, borrowing the logits from the arena.
#[derive(Clone, Copy, Debug)]
pub struct Prediction<'a> {
    /// The final layer's int8 output.
    pub logits: &'a [i8],
    /// Index of the largest logit (the first one on ties, like `argmax`).
    pub class: usize,
    /// Quantization of `logits`.
    pub quant: QuantParams,
}

impl Prediction<'_> {
    /// Softmax of the dequantized logits, for display: `out` must have one entry a class.
    pub fn probabilities(&self, out: &mut [f32]) -> Result<(), Error> {
        if out.len() != self.logits.len() {
            return Err(Error::OutputSize {
                expected: self.logits.len(),
                actual: out.len(),
            });
        }
        let max = self.logits.iter().copied().max().unwrap_or(0);
        let mut total = 0.0;
        for (p, &q) in out.iter_mut().zip(self.logits) {
            // Subtracting the max keeps exp() in range; the scale is the logits' own.
            *p = micromath::F32((q as i32 - max as i32) as f32 * self.quant.scale)
                .exp()
                .0;
            total += *p;
        }
        for p in out.iter_mut() {
            *p /= total;
        }
        Ok(())
    }
}

/// Quantizes raw u8 pixels to the model's int8 input, integer-only:
/// `q = clamp(rne(p * pixel_scale / input_scale) + z_in)`. The function of a pixel takes 256
/// values, so `Model::parse` tabulates it once: one lookup a pixel (on the Cortex-M4 the
/// per-pixel requantization took ~75 K instructions for 784 pixels, the table made per inference
/// ~34 K: "other" fell from 48,164 to 14,346).
pub fn quantize_pixels(model: &Model<'_>, pixels: &[u8], out: &mut [i8]) {
    for (q, &p) in out.iter_mut().zip(pixels) {
        *q = model.pixel_code(p);
    }
}

/// Runs one layer from `input` into `output` (sized for the layer's shapes) with the portable
/// kernels.
pub fn run_layer(layer: &Layer<'_>, input: &[i8], output: &mut [i8]) {
    run_layer_scratch(layer, input, output, &mut [])
}

/// Runs one layer with the fastest kernel for the target: `scratch` should hold
/// `format::layer_scratch_len` bytes (with less, a lean or the portable kernel runs).
pub fn run_layer_scratch(layer: &Layer<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    run_layer_in(layer, &mut Separate { input, output }, scratch)
}

fn run_layer_in(layer: &Layer<'_>, t: &mut dyn Tensors, scratch: &mut [i8]) {
    match layer.op {
        Op::Conv2d | Op::Dense => {
            if let Some(c) = layer.as_conv() {
                conv::conv2d_scratch_in(&c, t, scratch);
            }
        }
        Op::MaxPool2d => pool::maxpool2x2_in(layer.input, t),
        Op::Flatten => {
            // In an arena a flatten's output is its input: nothing to move.
            if let Some((input, output)) = t.split() {
                output[..input.len()].copy_from_slice(input);
            }
        }
    }
}

impl Model<'_> {
    /// Classifies one image of `input_shape().len()` raw pixels using `arena`
    /// (at least [`Model::arena_len`] bytes).
    pub fn infer<'a>(&self, pixels: &[u8], arena: &'a mut [i8]) -> Result<Prediction<'a>, Error> {
        self.infer_observed(pixels, arena, &mut NoObserver)
    }

    /// [`Model::infer`] with an [`Observer`] called around each layer.
    pub fn infer_observed<'a>(
        &self,
        pixels: &[u8],
        arena: &'a mut [i8],
        observer: &mut impl Observer,
    ) -> Result<Prediction<'a>, Error> {
        let input_len = self.input_shape().len();
        if pixels.len() != input_len {
            return Err(Error::InputSize {
                expected: input_len,
                actual: pixels.len(),
            });
        }
        if arena.len() < self.arena_len() {
            return Err(Error::ArenaTooSmall {
                needed: self.arena_len(),
                actual: arena.len(),
            });
        }
        let plan = self.plan_for_arena(arena.len());
        let arena = &mut arena[..plan.len];
        let mut places = Placements::new(self.bytes(), plan);
        let mut current = places.input();
        quantize_pixels(self, pixels, &mut arena[current.clone()]);
        for ((index, layer), place) in self.layers().enumerate().zip(&mut places) {
            observer.layer_started(index, &layer);
            if layer.op != Op::Flatten {
                let (scratch, mut tensors) = place.split(arena);
                run_layer_in(&layer, &mut tensors, scratch);
            }
            current = place.output;
            observer.layer_finished(index, &layer, &arena[current.clone()]);
        }
        let logits: &'a [i8] = &arena[current];
        let mut class = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[class] {
                class = i;
            }
        }
        Ok(Prediction {
            logits,
            class,
            quant: self.output_quant(),
        })
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::testing::{SplitMix64, network};
    use std::vec::Vec;

    /// The closed form: `clamp(rne(p * M) + z_in)` with `M = f32(pixel_scale / s_in)`, in f64,
    /// where `p * M` is exact (8 and 24 significant bits).
    fn closed_form(p: u8, pixel_scale: f32, input: QuantParams) -> i8 {
        let m = (pixel_scale / input.scale) as f64;
        ((p as f64 * m).round_ties_even() + input.zero_point as f64).clamp(-128.0, 127.0) as i8
    }

    fn check(pixel_scale: f32, input: QuantParams) {
        let mut spec = network(7, 2, 2, 2, 4);
        spec.pixel_scale = pixel_scale;
        spec.input_quant = input;
        let bytes = spec.to_bytes().unwrap();
        let model = Model::parse(&bytes).unwrap();
        let pixels: Vec<u8> = (0..=255).collect();
        let mut out = [0i8; 256];
        quantize_pixels(&model, &pixels, &mut out);
        for (&p, &q) in pixels.iter().zip(&out) {
            assert_eq!(
                q,
                closed_form(p, pixel_scale, input),
                "pixel {p}, pixel scale {pixel_scale:e}, {input:?}"
            );
        }
    }

    #[test]
    fn pixels_quantize_to_the_closed_form() {
        // The quantizer's input: s_in = pixel scale, so q = p - 128 exactly.
        let input = QuantParams {
            scale: 1.0 / 255.0,
            zero_point: -128,
        };
        check(1.0 / 255.0, input);
        let mut arena = [0i8; 256];
        let spec = network(7, 2, 2, 2, 4);
        let bytes = spec.to_bytes().unwrap();
        let model = Model::parse(&bytes).unwrap();
        let pixels: Vec<u8> = (0..=255).collect();
        quantize_pixels(&model, &pixels, &mut arena);
        assert!(arena.iter().zip(0..).all(|(&q, p)| q as i32 == p - 128));
        // Ties: M = 0.5 makes every odd pixel a tie, rounded to even (5 * 0.5 = 2.5 -> 2).
        check(
            1.0 / 255.0,
            QuantParams {
                scale: 2.0 / 255.0,
                zero_point: 0,
            },
        );
        // Saturation at both ends, and random scales and zero points.
        check(
            1.0 / 255.0,
            QuantParams {
                scale: 0.5 / 255.0,
                zero_point: 3,
            },
        );
        let mut rng = SplitMix64(12);
        for _ in 0..200 {
            let input = QuantParams {
                scale: (0.2 + 3.0 * rng.unit()) / 255.0,
                zero_point: rng.range(-128, 127) as i8,
            };
            check((0.5 + rng.unit()) / 255.0, input);
        }
    }
}
