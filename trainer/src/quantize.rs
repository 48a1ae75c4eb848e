//! Post-training quantization of the float [`Cnn`] to int8 (see `docs/quantization.md`):
//! per-output-channel symmetric weights, per-tensor asymmetric activations calibrated by
//! min/max on a training subset, int32 biases. The result converts to the runtime's `.tcm`
//! ([`QuantizedCnn::to_spec`]) and to ONNX QLinearConv form (`crate::onnx`), with identical
//! numbers in both.

use burn::prelude::*;
use burn::tensor::activation::relu;
use tinyconv::writer::{LayerSpec, ModelSpec, Weights};
use tinyconv::{Padding, QuantParams, Shape};

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE, Split};
use crate::model::{Cnn, input_tensor};

/// Real value of one raw pixel unit: the float model sees `pixel / 255`.
pub const PIXEL_SCALE: f32 = 1.0 / 255.0;

/// A quantized conv or dense layer, weights in the float model's (ONNX) order.
#[derive(Clone, Debug)]
pub struct QuantLayer {
    /// Conv: `[out, in, k, k]` (OIHW). Dense: `[out, in]` with `in` in NCHW-flatten order.
    pub weights: Vec<i8>,
    pub weight_scales: Vec<f32>,
    pub bias: Vec<i32>,
    pub input: QuantParams,
    pub output: QuantParams,
    pub out_channels: usize,
    pub in_channels: usize,
    pub kernel: usize,
}

/// The quantized seed network.
#[derive(Clone, Debug)]
pub struct QuantizedCnn {
    pub input: QuantParams,
    /// conv1, conv2, conv3 (each followed by ReLU and a 2x2 max pool), fc1 (ReLU), fc2.
    pub layers: [QuantLayer; 5],
}

/// Observed min/max of every tensor that gets its own quantization.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Ranges {
    /// conv1..conv3 after ReLU (pooling keeps the range's top and cannot go below 0),
    /// fc1 after ReLU, fc2 logits.
    pub tensors: [(f32, f32); 5],
}

/// Images used for calibration: `n` training images evenly spread over the set
/// (deterministic, and covering every part of the file rather than its first pages).
pub fn calibration_indices(train_len: usize, n: usize) -> Vec<usize> {
    let n = n.clamp(1, train_len);
    (0..n).map(|i| i * train_len / n).collect()
}

/// Runs the float model in evaluation mode over the calibration images and records the range
/// of each quantized tensor.
pub fn calibrate(model: &Cnn, train: &Split, n: usize, device: &Device) -> Ranges {
    let model = model.valid();
    let indices = calibration_indices(train.len(), n);
    let mut ranges = Ranges {
        tensors: [(f32::INFINITY, f32::NEG_INFINITY); 5],
    };
    let mut observe = |slot: usize, t: &Tensor<2>| {
        let (min, max): (f32, f32) = (t.clone().min().into_scalar(), t.clone().max().into_scalar());
        let r = &mut ranges.tensors[slot];
        *r = (r.0.min(min), r.1.max(max));
    };
    for chunk in indices.chunks(500) {
        let mut pixels = Vec::with_capacity(chunk.len() * IMAGE_PIXELS);
        for &i in chunk {
            pixels.extend_from_slice(train.image(i));
        }
        let x = input_tensor(&pixels, device);
        let mut x = x;
        for (slot, conv) in [&model.conv1, &model.conv2, &model.conv3]
            .into_iter()
            .enumerate()
        {
            let a = relu(conv.forward(x));
            observe(slot, &a.clone().flatten(1, 3));
            x = model.pool.forward(a);
        }
        let flat: Tensor<2> = x.flatten(1, 3);
        let hidden = relu(model.fc1.forward(flat));
        observe(3, &hidden);
        observe(4, &model.fc2.forward(hidden));
    }
    ranges
}

/// How the calibrator turns a tensor's range into its scale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationScales {
    /// The smallest power of two covering the range ([`activation_params`]): every f32
    /// evaluation order of a layer's `s_in * s_w / s_out` is then the same number, so tract and
    /// the runtime agree whatever order tract folds them in. Costs up to one bit of resolution.
    #[default]
    PowerOfTwo,
    /// The range divided by 255 ([`free_activation_params`]) for the hidden tensors, so every
    /// int8 code is used; the logits keep a power of two (their scale is what `Prediction`
    /// dequantizes with, and the exporter needs a power of two there). Export it through
    /// [`QuantizedCnn::fold_to_pow2`], which moves each non-power-of-two factor into the
    /// neighbouring weight scales without changing a single int8 computation.
    Free,
}

/// The range of `[min, max]` widened to include 0 (so that 0 — ReLU's floor and the padding
/// value — is exact), as f64.
fn widened(min: f32, max: f32) -> (f64, f64) {
    (min.min(0.0) as f64, max.max(0.0) as f64)
}

fn params_for(min: f64, scale: f64) -> QuantParams {
    let zero_point = (-128.0 - min / scale)
        .round_ties_even()
        .clamp(-128.0, 127.0);
    QuantParams {
        scale: scale as f32,
        zero_point: zero_point as i8,
    }
}

/// Asymmetric int8 parameters covering `[min, max]` (widened to include 0). A range starting
/// at 0 gets zero point -128, which makes a fused ReLU's clamp the same as int8 saturation.
///
/// The scale is rounded up to a power of two. tract folds the three factors of a layer's
/// requantization scale `s_in * s_w / s_out` in an order that differs between layers, and f32
/// multiplication is not associative; with `s_out` a power of two every order gives the same
/// f32 (whatever `s_in` and `s_w` are), so the runtime and tract agree bit for bit whatever
/// tract does (see docs/quantization.md). It costs at most one bit of activation resolution.
pub fn activation_params(min: f32, max: f32) -> QuantParams {
    let (min, max) = widened(min, max);
    let needed = if max > min { (max - min) / 255.0 } else { 1.0 };
    params_for(min, 2f64.powi(needed.log2().ceil() as i32))
}

/// [`activation_params`] without rounding the scale: `(max - min) / 255`, rounded to f32 once.
pub fn free_activation_params(min: f32, max: f32) -> QuantParams {
    let (min, max) = widened(min, max);
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    // The f32 scale, so that the zero point is computed from the scale actually stored.
    params_for(min, scale as f32 as f64)
}

/// The largest power of two not above `scale` (a normal positive f32): its exponent bits alone.
fn power_of_two_below(scale: f32) -> f32 {
    f32::from_bits(scale.to_bits() & 0x7f80_0000)
}

/// Symmetric per-channel quantization of `out` filters of `per_filter` weights each.
/// Returns the int8 weights and the scales (`max|w| / 127`; a dead all-zero filter gets 1/127).
pub fn quantize_weights(w: &[f32], out: usize) -> (Vec<i8>, Vec<f32>) {
    let per_filter = w.len() / out;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(out);
    for filter in w.chunks_exact(per_filter) {
        let max = filter.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 / 127.0 };
        q.extend(
            filter
                .iter()
                .map(|&v| (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (q, scales)
}

/// int32 bias with scale `s_in * s_w[c]` (the f32 product, as in ONNX).
pub fn quantize_bias(b: &[f32], input_scale: f32, weight_scales: &[f32]) -> Vec<i32> {
    b.iter()
        .zip(weight_scales)
        .map(|(&b, &s)| {
            (b as f64 / (input_scale * s) as f64)
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as().expect("float parameters read back")
}

/// Which way a weight layout changes: to the runtime's (`.tcm`: OHWI, NHWC-flatten) or to
/// ONNX's and burn's (OIHW, NCHW-flatten).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToRuntime,
    ToOnnx,
}

/// Conv weights of `o` filters over `i` channels, `k`x`k`: OIHW to OHWI, or back.
fn reorder_conv(w: &[i8], o: usize, i: usize, k: usize, direction: Direction) -> Vec<i8> {
    let mut out = vec![0i8; w.len()];
    for oc in 0..o {
        for ic in 0..i {
            for y in 0..k {
                for x in 0..k {
                    let oihw = ((oc * i + ic) * k + y) * k + x;
                    let ohwi = ((oc * k + y) * k + x) * i + ic;
                    match direction {
                        Direction::ToRuntime => out[ohwi] = w[oihw],
                        Direction::ToOnnx => out[oihw] = w[ohwi],
                    }
                }
            }
        }
    }
    out
}

/// Dense weights `[outputs, channels * pixels]` reading a flattened feature map: its input
/// index from NCHW-flatten (`c * pixels + p`) to NHWC-flatten (`p * channels + c`), or back.
fn reorder_flatten(
    w: &[i8],
    outputs: usize,
    channels: usize,
    pixels: usize,
    direction: Direction,
) -> Vec<i8> {
    let n = channels * pixels;
    let mut out = vec![0i8; w.len()];
    for o in 0..outputs {
        for c in 0..channels {
            for p in 0..pixels {
                let (nchw, nhwc) = (o * n + c * pixels + p, o * n + p * channels + c);
                match direction {
                    Direction::ToRuntime => out[nhwc] = w[nchw],
                    Direction::ToOnnx => out[nchw] = w[nhwc],
                }
            }
        }
    }
    out
}

impl QuantizedCnn {
    /// Quantizes `model` with the calibrated `ranges` and power-of-two activation scales.
    pub fn new(model: &Cnn, ranges: &Ranges) -> Self {
        Self::with_scales(model, ranges, ActivationScales::PowerOfTwo)
    }

    /// Quantizes `model` with the calibrated `ranges` and the activation scales `scales`
    /// (the true scales: with [`ActivationScales::Free`] export [`QuantizedCnn::fold_to_pow2`]
    /// of the result; [`QuantizedCnn::for_export`] does both).
    pub fn with_scales(model: &Cnn, ranges: &Ranges, scales: ActivationScales) -> Self {
        // The input keeps 1/255: a raw pixel p is then exactly the int8 code p - 128.
        let input = QuantParams {
            scale: PIXEL_SCALE,
            zero_point: -128,
        };
        let mut outputs = ranges.tensors.map(|(lo, hi)| activation_params(lo, hi));
        if scales == ActivationScales::Free {
            // The logits (slot 4) keep the power of two.
            for (slot, &(lo, hi)) in ranges.tensors.iter().enumerate().take(4) {
                outputs[slot] = free_activation_params(lo, hi);
            }
        }
        let layer = |w: Vec<f32>,
                     b: Vec<f32>,
                     out: usize,
                     kernel: usize,
                     input: QuantParams,
                     output: QuantParams| {
            let (weights, weight_scales) = quantize_weights(&w, out);
            let bias = quantize_bias(&b, input.scale, &weight_scales);
            let in_channels = w.len() / out / (kernel * kernel);
            QuantLayer {
                weights,
                weight_scales,
                bias,
                input,
                output,
                out_channels: out,
                in_channels,
                kernel,
            }
        };
        let conv = |c: &burn::nn::conv::Conv2d, input, output| {
            let [out, _, k, _] = c.weight.val().dims();
            let bias = c.bias.as_ref().map_or(vec![0.0; out], |b| values(b.val()));
            layer(values(c.weight.val()), bias, out, k, input, output)
        };
        let dense = |l: &burn::nn::Linear, input, output| {
            // burn stores [in, out]; ONNX and the runtime want [out][in].
            let w = l.weight.val();
            let [_, out] = w.dims();
            let bias = l.bias.as_ref().map_or(vec![0.0; out], |b| values(b.val()));
            layer(values(w.transpose()), bias, out, 1, input, output)
        };
        let conv1 = conv(&model.conv1, input, outputs[0]);
        let conv2 = conv(&model.conv2, outputs[0], outputs[1]);
        let conv3 = conv(&model.conv3, outputs[1], outputs[2]);
        let fc1 = dense(&model.fc1, outputs[2], outputs[3]);
        let fc2 = dense(&model.fc2, outputs[3], outputs[4]);
        QuantizedCnn {
            input,
            layers: [conv1, conv2, conv3, fc1, fc2],
        }
    }

    /// What `tinyconv train` exports: [`QuantizedCnn::with_scales`], folded to power-of-two
    /// tensor scales (a no-op for [`ActivationScales::PowerOfTwo`]).
    pub fn for_export(model: &Cnn, ranges: &Ranges, scales: ActivationScales) -> Self {
        Self::with_scales(model, ranges, scales).fold_to_pow2()
    }

    /// The same int8 network with every hidden tensor's scale stated as a power of two.
    ///
    /// A hidden tensor of scale `s = p * f` (`p` a power of two, `1 <= f < 2`) is declared with
    /// scale `p`: its int8 codes stay what they are, the real values it claims are those of
    /// the float network with that layer's outputs divided by `f` (ReLU and max pooling commute
    /// with a positive factor), and the weight scales absorb `f`: the producing layer's
    /// `s_w / f`, the consuming layer's `s_w * f`. Every layer's requantization scale
    /// `s_in * s_w / s_out` is unchanged up to the rounding of the new f32 weight scales, and its
    /// output scale is now a power of two, which makes it exact in tract (see
    /// `docs/quantization.md`). The input (1/255) and the logits keep their scales: the input
    /// is what the pixels are quantized with, the logits' scale is what `Prediction` dequantizes
    /// with (a non-power-of-two logit scale stays and is rejected at export).
    pub fn fold_to_pow2(&self) -> Self {
        let mut q = self.clone();
        let last = q.layers.len() - 1;
        // factor[i]: f of layer i's output (1 for the logits).
        let factor: Vec<f64> = q
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == last {
                    1.0
                } else {
                    l.output.scale as f64 / power_of_two_below(l.output.scale) as f64
                }
            })
            .collect();
        for i in 0..q.layers.len() {
            let f_in = if i == 0 { 1.0 } else { factor[i - 1] };
            let f_out = factor[i];
            let l = &mut q.layers[i];
            for s in &mut l.weight_scales {
                *s = (*s as f64 * f_in / f_out) as f32;
            }
            if i != last {
                l.output.scale = power_of_two_below(l.output.scale);
            }
            if i > 0 {
                l.input.scale = power_of_two_below(l.input.scale);
            }
        }
        q
    }

    /// Reads a quantized model back from the runtime's model file (the inverse of
    /// [`QuantizedCnn::to_spec`]), e.g. to regenerate its ONNX form. Fails unless the file has
    /// this network's architecture.
    pub fn from_model(model: &tinyconv::Model<'_>) -> anyhow::Result<Self> {
        use tinyconv::Op;
        let layers: Vec<_> = model.layers().collect();
        let ops: Vec<Op> = layers.iter().map(|l| l.op).collect();
        anyhow::ensure!(
            ops == [
                Op::Conv2d,
                Op::Conv2d,
                Op::Conv2d,
                Op::Flatten,
                Op::Dense,
                Op::Dense
            ] && layers[..3].iter().all(|l| l.relu && l.fused_pool)
                && layers[4].relu
                && !layers[5].relu
                && layers[0].padding == Padding::Same
                && layers[1..3].iter().all(|l| l.padding == Padding::Valid)
                && model.input_shape() == Shape::new(IMAGE_SIDE, IMAGE_SIDE, 1)
                && model.pixel_scale() == PIXEL_SCALE,
            "not the seed network's architecture: {ops:?}"
        );
        let quant_layer = |l: &tinyconv::Layer<'_>, weights: Vec<i8>| {
            let out = l.output.c;
            let per_out = l.weights.len() / out;
            QuantLayer {
                weights,
                weight_scales: (0..out).map(|c| l.weight_scale(c)).collect(),
                bias: (0..out).map(|c| l.bias(c)).collect(),
                input: l.input_quant,
                output: l.output_quant,
                out_channels: out,
                in_channels: per_out / (l.kernel * l.kernel),
                kernel: l.kernel,
            }
        };
        let oihw = |l: &tinyconv::Layer<'_>| {
            reorder_conv(
                l.weights,
                l.output.c,
                l.input.c,
                l.kernel,
                Direction::ToOnnx,
            )
        };
        let conv1 = quant_layer(&layers[0], oihw(&layers[0]));
        let conv2 = quant_layer(&layers[1], oihw(&layers[1]));
        let conv3 = quant_layer(&layers[2], oihw(&layers[2]));
        // fc1: NHWC-flatten -> NCHW-flatten (see to_spec).
        let fc1_layer = &layers[4];
        let conv3_out = layers[2].output;
        let fc1_w = reorder_flatten(
            fc1_layer.weights,
            fc1_layer.output.c,
            conv3_out.c,
            conv3_out.h * conv3_out.w,
            Direction::ToOnnx,
        );
        let fc1 = quant_layer(fc1_layer, fc1_w);
        let fc2 = quant_layer(&layers[5], layers[5].weights.to_vec());
        Ok(QuantizedCnn {
            input: model.input_quant(),
            layers: [conv1, conv2, conv3, fc1, fc2],
        })
    }

    /// The runtime's model description: conv weights to OHWI, fc1's input from NCHW-flatten
    /// to NHWC-flatten order, pooling and ReLU fused.
    pub fn to_spec(&self) -> ModelSpec {
        let ohwi = |l: &QuantLayer| {
            reorder_conv(
                &l.weights,
                l.out_channels,
                l.in_channels,
                l.kernel,
                Direction::ToRuntime,
            )
        };
        let params = |l: &QuantLayer, weights: Vec<i8>| Weights {
            weights,
            bias: l.bias.clone(),
            weight_scales: l.weight_scales.clone(),
            output: l.output,
        };
        let [conv1, conv2, conv3, fc1, fc2] = &self.layers;
        let conv = |l: &QuantLayer, padding| LayerSpec::Conv2d {
            kernel: l.kernel,
            padding,
            relu: true,
            pool: true,
            params: params(l, ohwi(l)),
        };
        // fc1 reads the 2x2x256 map: NCHW index c*4 + y*2 + x, NHWC index (y*2 + x)*256 + c.
        let fc1_w = reorder_flatten(
            &fc1.weights,
            fc1.out_channels,
            conv3.out_channels,
            2 * 2,
            Direction::ToRuntime,
        );
        ModelSpec {
            input: Shape::new(IMAGE_SIDE, IMAGE_SIDE, 1),
            input_quant: self.input,
            pixel_scale: PIXEL_SCALE,
            layers: vec![
                conv(conv1, Padding::Same),
                conv(conv2, Padding::Valid),
                conv(conv3, Padding::Valid),
                LayerSpec::Flatten,
                LayerSpec::Dense {
                    relu: true,
                    params: params(fc1, fc1_w),
                },
                LayerSpec::Dense {
                    relu: false,
                    params: params(fc2, fc2.weights.clone()),
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_scales_are_powers_of_two_covering_the_range() {
        let p = activation_params(0.0, 6.0);
        assert_eq!(p.zero_point, -128);
        // 6/255 = 0.0235 rounds up to 2^-5: the range [0, 7.97] covers [0, 6].
        assert_eq!(p.scale, 0.03125);
        // 8/255 = 0.0314 is just above 2^-5, so 2^-4.
        let p = activation_params(-3.0, 5.0);
        assert_eq!(p.scale, 0.0625);
        // Real 0 maps onto an integer code, and the range is covered.
        assert_eq!(p.zero_point, -80);
        assert!((-128 - p.zero_point as i32) as f32 * p.scale <= -3.0);
        assert!((127 - p.zero_point as i32) as f32 * p.scale >= 5.0);
    }

    #[test]
    fn weights_are_symmetric_per_channel() {
        let w = [0.5, -1.0, 0.25, 0.0, 2.0, -2.0, 0.0, 0.0];
        let (q, s) = quantize_weights(&w, 4);
        assert_eq!(s, vec![1.0 / 127.0, 0.25 / 127.0, 2.0 / 127.0, 1.0 / 127.0]);
        assert_eq!(q, vec![64, -127, 127, 0, 127, -127, 0, 0]);
        assert!(q.iter().all(|&v| v != -128));
    }

    #[test]
    fn bias_uses_the_product_of_input_and_weight_scales() {
        assert_eq!(
            quantize_bias(&[0.5, -0.25], 0.5, &[0.01, 0.1]),
            vec![100, -5]
        );
    }

    #[test]
    fn free_scales_use_the_whole_range() {
        let p = free_activation_params(0.0, 6.0);
        assert_eq!((p.scale, p.zero_point), ((6.0f64 / 255.0) as f32, -128));
        let p = free_activation_params(-3.0, 5.0);
        assert_eq!(p.scale, (8.0f64 / 255.0) as f32);
        assert_eq!(p.zero_point, -32); // -128 + 3 / (8 / 255) = -32.4
    }

    /// Folding leaves every int8 computation alone: same weights, biases and zero points, the
    /// same requantization scales up to the rounding of the new weight scales, and every hidden
    /// tensor's scale a power of two.
    #[test]
    fn folding_to_powers_of_two_keeps_the_int8_network() {
        let bytes = tinyconv::testing::seed_network(3).to_bytes().unwrap();
        let q = QuantizedCnn::from_model(&tinyconv::Model::parse(&bytes).unwrap()).unwrap();
        assert_eq!(q.to_spec().to_bytes().unwrap(), bytes);
        let f = q.fold_to_pow2();
        for (a, b) in q.layers.iter().zip(&f.layers) {
            assert_eq!((&a.weights, &a.bias), (&b.weights, &b.bias));
            assert_eq!(a.output.zero_point, b.output.zero_point);
            for (&sa, &sb) in a.weight_scales.iter().zip(&b.weight_scales) {
                let ra = (a.input.scale as f64) * sa as f64 / a.output.scale as f64;
                let rb = (b.input.scale as f64) * sb as f64 / b.output.scale as f64;
                assert!((ra / rb - 1.0).abs() < 1e-7, "{ra} vs {rb}");
            }
        }
        for l in &f.layers[..4] {
            assert!(crate::onnx::is_power_of_two(l.output.scale));
        }
        assert_eq!(f.input, q.input);
        assert_eq!(f.layers[4].output, q.layers[4].output);
        // A second fold changes nothing.
        let twice = f.fold_to_pow2();
        for (a, b) in f.layers.iter().zip(&twice.layers) {
            assert_eq!(a.weight_scales, b.weight_scales);
        }
    }
}
