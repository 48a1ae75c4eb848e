//! The tinyconv CNN, as a burn module.
//!
//! ```text
//! Conv2d(1→16, 3x3, same) → ReLU → MaxPool 2x2        [N, 16, 14, 14]
//! Conv2d(16→128, 3x3, valid) → ReLU → MaxPool 2x2     [N, 128, 6, 6]
//! Conv2d(128→256, 3x3, valid) → ReLU → MaxPool 2x2    [N, 256, 2, 2]
//! Dropout 0.5 → Flatten (NCHW order)                  [N, 1024]
//! Linear 1024→500 → ReLU → Dropout 0.25               [N, 500]
//! Linear 500→10                                       [N, 10] logits
//! ```
//!
//! Input: `[N, 1, 28, 28]` f32, pixel / 255. 831 398 parameters.
//!
//! Burn 0.22 has no backend type parameter: a tensor's backend (and whether it records a graph
//! for autodiff) lives in its [`Device`]. The same `Cnn` trains on `Device::flex().autodiff()`
//! and evaluates on `Device::flex()`.
//!
//! Weight layouts, for code that reads them: `convN.weight` is `[out, in, kh, kw]` (OIHW),
//! `convN.bias` `[out]`; `fcN.weight` is `[in, out]` (burn's row layout, computing `x · W + b`,
//! i.e. the transpose of ONNX Gemm's default `[out, in]`), `fcN.bias` `[out]`.

use burn::module::{ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::batch_conv::conv_block_cnhw;
use crate::data::{IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES};
use crate::dropout::dropout;

/// Total trainable parameters of [`Cnn`].
pub const NUM_PARAMS: usize = 831_398;
/// Flattened features entering `fc1`: 256 channels × 2 × 2.
pub const FLAT_FEATURES: usize = 256 * 2 * 2;
/// Zero padding of conv1..conv3 (3x3 kernels): conv1 is "same", the others "valid".
pub const CONV_PADDING: [usize; 3] = [1, 0, 0];
/// Drop probability after the last pooling layer.
pub const DROPOUT_CONV: f64 = 0.5;
/// Drop probability after `fc1`.
pub const DROPOUT_FC: f64 = 0.25;

/// The network. The five weight-bearing layers are public so that quantization and export can
/// read their weights.
#[derive(Module, Debug)]
pub struct Cnn {
    /// 1→16, 3x3, padding 1 ("same").
    pub conv1: Conv2d,
    /// 16→128, 3x3, no padding.
    pub conv2: Conv2d,
    /// 128→256, 3x3, no padding.
    pub conv3: Conv2d,
    /// 1024→500.
    pub fc1: Linear,
    /// 500→10.
    pub fc2: Linear,
    /// 2x2 max pooling, stride 2 (shared by the three conv blocks; it has no state). Used by
    /// [`Cnn::forward_reference`]; [`Cnn::forward`] pools with the fused kernel.
    pub pool: MaxPool2d,
    /// Dropout 0.5 before flattening.
    pub dropout_conv: Dropout,
    /// Dropout 0.25 after `fc1`.
    pub dropout_fc: Dropout,
}

/// Keras' default initialization: Glorot/Xavier-uniform kernels (`U(±sqrt(6/(fan_in+fan_out)))`,
/// with conv fans `channels × kh × kw`) and zero biases.
fn glorot() -> Initializer {
    Initializer::XavierUniform { gain: 1.0 }
}

fn conv(cin: usize, cout: usize, padding: usize, device: &Device) -> Conv2d {
    let mut c = Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_initializer(glorot())
        .init(device);
    c.bias = Some(Initializer::Zeros.init([cout], device));
    c
}

fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut l = LinearConfig::new(d_in, d_out)
        .with_initializer(glorot())
        .init(device);
    l.bias = Some(Initializer::Zeros.init([d_out], device));
    l
}

/// Touches every float parameter so lazily-initialized ones draw their values now.
pub(crate) struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

impl Cnn {
    /// A freshly initialized network on `device`.
    ///
    /// Burn initializes parameters lazily, on first use; this forces every parameter to draw
    /// its values now, in a fixed order, so that the draws come from the device RNG as it is
    /// when `new` is called (seed it first with `device.seed(..)`, holding
    /// [`crate::rng::backend_rng_lock`], for reproducible weights).
    pub fn new(device: &Device) -> Self {
        let model = Self::lazy(device);
        model.visit(&mut Materialize);
        model
    }

    /// The network with its parameters not drawn yet: they draw from the backend RNG on first
    /// use. Loading a record into it (`try_load_record`) replaces them without ever drawing,
    /// which is the way to build a network for stored weights.
    pub fn lazy(device: &Device) -> Self {
        Self {
            conv1: conv(1, 16, CONV_PADDING[0], device),
            conv2: conv(16, 128, CONV_PADDING[1], device),
            conv3: conv(128, 256, CONV_PADDING[2], device),
            fc1: linear(FLAT_FEATURES, 500, device),
            fc2: linear(500, NUM_CLASSES, device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout_conv: DropoutConfig::new(DROPOUT_CONV).init(),
            dropout_fc: DropoutConfig::new(DROPOUT_FC).init(),
        }
    }

    /// Logits `[N, 10]` for a batch of images `[N, 1, 28, 28]` (pixel / 255).
    ///
    /// Dropout is active only when the input is on an autodiff device and the module is in
    /// training mode (i.e. not a [`Module::valid`] copy).
    ///
    /// The conv blocks run channel-major (`[C, N, H, W]`) through [`crate::batch_conv`]'s
    /// batch-wide convolution with ReLU and pooling fused, much faster to train than burn-flex's
    /// per-image convolution; the features are back in NCHW before flattening, so `fc1` sees
    /// them in ONNX's order. [`Cnn::forward_reference`] is the same function with stock burn
    /// layers, which the tests hold this one to.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x.swap_dims(0, 1);
        for (conv, padding) in [&self.conv1, &self.conv2, &self.conv3]
            .into_iter()
            .zip(CONV_PADDING)
        {
            let bias = conv.bias.as_ref().expect("conv layers have biases").val();
            x = conv_block_cnhw(x, conv.weight.val(), bias, padding);
        }
        self.head(x.swap_dims(0, 1))
    }

    /// [`Cnn::forward`] with burn's own `Conv2d`, ReLU and `MaxPool2d` (NCHW throughout).
    pub fn forward_reference(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let x = self.pool.forward(relu(self.conv3.forward(x)));
        self.head(x)
    }

    /// Dropout, flatten and the dense layers, from the last pooled features `[N, 256, 2, 2]`.
    fn head(&self, x: Tensor<4>) -> Tensor<2> {
        let x = dropout(&self.dropout_conv, x);
        let x: Tensor<2> = x.flatten(1, 3);
        let x = dropout(&self.dropout_fc, relu(self.fc1.forward(x)));
        self.fc2.forward(x)
    }

    /// A Keras-like table of layers, output shapes and parameter counts.
    pub fn summary(&self) -> String {
        let rows: Vec<(&str, &str, String)> = vec![
            ("input", "Input", shape(&[1, IMAGE_SIDE, IMAGE_SIDE])),
            ("conv1", "Conv2d 3x3 same", shape(&[16, 28, 28])),
            ("relu1", "ReLU", shape(&[16, 28, 28])),
            ("pool1", "MaxPool 2x2", shape(&[16, 14, 14])),
            ("conv2", "Conv2d 3x3 valid", shape(&[128, 12, 12])),
            ("relu2", "ReLU", shape(&[128, 12, 12])),
            ("pool2", "MaxPool 2x2", shape(&[128, 6, 6])),
            ("conv3", "Conv2d 3x3 valid", shape(&[256, 4, 4])),
            ("relu3", "ReLU", shape(&[256, 4, 4])),
            ("pool3", "MaxPool 2x2", shape(&[256, 2, 2])),
            ("dropout_conv", "Dropout 0.5", shape(&[256, 2, 2])),
            ("flatten", "Flatten (NCHW)", shape(&[FLAT_FEATURES])),
            ("fc1", "Linear", shape(&[500])),
            ("relu4", "ReLU", shape(&[500])),
            ("dropout_fc", "Dropout 0.25", shape(&[500])),
            ("fc2", "Linear (logits)", shape(&[NUM_CLASSES])),
        ];
        let params = |name: &str| -> usize {
            match name {
                "conv1" => self.conv1.num_params(),
                "conv2" => self.conv2.num_params(),
                "conv3" => self.conv3.num_params(),
                "fc1" => self.fc1.num_params(),
                "fc2" => self.fc2.num_params(),
                _ => 0,
            }
        };
        let rule = "-".repeat(66);
        let mut s = String::new();
        s.push_str(&format!(
            "{:<14}{:<20}{:<20}{:>12}\n{}\n",
            "Layer",
            "Type",
            "Output shape",
            "Params",
            "=".repeat(66)
        ));
        for (name, kind, out) in &rows {
            s.push_str(&format!(
                "{name:<14}{kind:<20}{out:<20}{:>12}\n",
                group_digits(params(name))
            ));
        }
        let total = self.num_params();
        s.push_str(&format!(
            "{}\nTotal params: {}\nTrainable params: {}\n",
            rule,
            group_digits(total),
            group_digits(total)
        ));
        s
    }
}

fn shape(dims: &[usize]) -> String {
    let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[N, {}]", dims.join(", "))
}

/// `831398` → `"831,398"`.
pub fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A batch of images as the network's input: `[n, 1, 28, 28]` f32, pixel / 255.
///
/// `pixels` holds `n * 784` bytes, each image row-major.
pub fn input_tensor(pixels: &[u8], device: &Device) -> Tensor<4> {
    assert_eq!(
        pixels.len() % IMAGE_PIXELS,
        0,
        "pixel buffer is not a whole number of 28x28 images"
    );
    let n = pixels.len() / IMAGE_PIXELS;
    let floats: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    Tensor::from_data(
        TensorData::new(floats, [n, 1, IMAGE_SIDE, IMAGE_SIDE]),
        device,
    )
}

/// Labels as the `Int` tensor the loss takes.
pub fn label_tensor(labels: &[u8], device: &Device) -> Tensor<1, Int> {
    let ints: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    Tensor::from_data(TensorData::new(ints, [labels.len()]), device)
}

/// Asserts that each tensor of `fast` (logits, gradients) is within 1e-4 of its largest value
/// of the same tensor of `stock`, and that none is all zero; returns how many values differ at
/// all (the batch-wide kernels sum in another order than burn's, so some must).
#[cfg(test)]
pub(crate) fn assert_close_to_stock(fast: &[Vec<f32>], stock: &[Vec<f32>]) -> usize {
    assert_eq!(fast.len(), stock.len());
    let mut differ = 0;
    for (i, (a, b)) in fast.iter().zip(stock).enumerate() {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "tensor {i} is all zero");
        for (p, q) in a.iter().zip(b) {
            assert!(
                (p - q).abs() <= 1e-4 * scale,
                "tensor {i}: {p} vs {q} (scale {scale})"
            );
            differ += (p != q) as usize;
        }
    }
    differ
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_conv;

    #[test]
    fn parameter_count_and_output_shape() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Device::flex();
        device.seed(1);
        let model = Cnn::new(&device);
        assert_eq!(model.num_params(), NUM_PARAMS);
        let x = input_tensor(&vec![128u8; 3 * IMAGE_PIXELS], &device);
        assert_eq!(model.forward(x).dims(), [3, 10]);
        let s = model.summary();
        assert!(s.contains("Total params: 831,398"), "{s}");
        assert!(s.contains("295,168"), "{s}");
    }

    /// Logits and every parameter's gradient (dropout active, same masks) from the batch-wide
    /// path equal stock burn's, up to f32 summation order.
    #[test]
    fn forward_and_gradients_match_stock_burn_layers() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Device::flex().autodiff();
        device.seed(5);
        let model = Cnn::new(&device);
        let pixels: Vec<u8> = (0..6 * IMAGE_PIXELS)
            .map(|i| ((i * 7919) % 256) as u8)
            .collect();
        let labels = label_tensor(&[0, 1, 2, 3, 4, 5], &device);
        let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
        let run = |fast: bool| {
            device.seed(9); // the same dropout masks for both paths
            let x = input_tensor(&pixels, &device);
            // Training really takes the batch-wide kernels (not their stock fallback).
            assert_eq!(batch_conv::path(&x), batch_conv::Path::Tracked);
            assert_eq!(
                batch_conv::path(&model.conv3.weight.val()),
                batch_conv::Path::Tracked
            );
            let logits = if fast {
                model.forward(x)
            } else {
                model.forward_reference(x)
            };
            let loss = loss_fn.forward(logits.clone(), labels.clone());
            let grads = loss.backward();
            let values = |t: Tensor<1>| -> Vec<f32> { t.try_into_vec_as().unwrap() };
            let mut out = vec![values(logits.inner().flatten(0, 1))];
            for conv in [&model.conv1, &model.conv2, &model.conv3] {
                out.push(values(conv.weight.grad(&grads).unwrap().flatten(0, 3)));
                out.push(values(conv.bias.as_ref().unwrap().grad(&grads).unwrap()));
            }
            out.push(values(model.fc1.weight.grad(&grads).unwrap().flatten(0, 1)));
            out
        };
        let (fast, stock) = (run(true), run(false));
        assert_close_to_stock(&fast, &stock);
        // And without autodiff (evaluation), the same logits.
        let valid = model.valid();
        let plain = Device::flex();
        let x = input_tensor(&pixels, &plain);
        assert_eq!(batch_conv::path(&x), batch_conv::Path::Plain);
        assert_eq!(
            batch_conv::path(&valid.conv3.weight.val()),
            batch_conv::Path::Plain
        );
        let a: Vec<f32> = valid
            .forward(x.clone())
            .flatten::<1>(0, 1)
            .try_into_vec_as()
            .unwrap();
        let b: Vec<f32> = valid
            .forward_reference(x)
            .flatten::<1>(0, 1)
            .try_into_vec_as()
            .unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    #[test]
    fn keras_like_initialization() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Device::flex();
        device.seed(7);
        let model = Cnn::new(&device);
        let bias: Vec<f32> = model
            .conv2
            .bias
            .as_ref()
            .unwrap()
            .val()
            .try_into_vec_as()
            .unwrap();
        assert!(bias.iter().all(|&b| b == 0.0));
        let w: Vec<f32> = model.fc1.weight.val().try_into_vec_as().unwrap();
        let limit = (6.0f32 / (1024.0 + 500.0)).sqrt();
        let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max <= limit && max > 0.9 * limit, "max {max} limit {limit}");
        assert_eq!(model.fc1.weight.dims(), [1024, 500]);
        assert_eq!(model.conv3.weight.dims(), [256, 128, 3, 3]);
    }

    #[test]
    fn seeded_init_is_reproducible() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Device::flex();
        device.seed(3);
        let a: Vec<f32> = Cnn::new(&device)
            .conv1
            .weight
            .val()
            .try_into_vec_as()
            .unwrap();
        device.seed(3);
        let b: Vec<f32> = Cnn::new(&device)
            .conv1
            .weight
            .val()
            .try_into_vec_as()
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn digit_grouping() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(160), "160");
        assert_eq!(group_digits(5010), "5,010");
        assert_eq!(group_digits(831398), "831,398");
        assert_eq!(group_digits(1234567), "1,234,567");
    }
}
