//! A burn network built from a model spec ([`tinyconv_spec`]): the trainable form of any
//! architecture written as data.
//!
//! The spec's resolved graph becomes a list of [`Step`]s over numbered values (value 0 is the
//! input, step `i` writes value `i + 1`); the weight-bearing layers live in three vectors the
//! steps index into, so burn sees an ordinary module (records, optimizer state and
//! checkpoints work as for the seed network). [`export`] turns the trained network into the
//! [`crate::fgraph::FloatGraph`] the quantizer and the ONNX exporter take, folding batch norm.
//!
//! Fast path: a 3x3 stride-1 convolution with symmetric padding followed by ReLU and a 2x2
//! max pool (the seed's block) runs through [`crate::batch_conv`]'s batch-wide kernel, as the
//! seed network does; everything else runs on stock burn layers.

pub mod export;
pub mod steps;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::batch_conv::conv_block_cnhw;
use crate::dropout::dropout;
pub use steps::{ConvPaths, Op, Step, Steps};

/// The network of a resolved spec.
#[derive(Module, Debug)]
pub struct SpecNet {
    pub convs: Vec<Conv2d>,
    pub norms: Vec<BatchNorm>,
    pub denses: Vec<Linear>,
    pub dropouts: Vec<Dropout>,
    /// The graph: which layer each step runs and what it reads.
    #[module(skip)]
    pub steps: Steps,
}

/// Keras' default initialization (as the seed network): Glorot-uniform kernels, zero biases.
fn glorot() -> Initializer {
    Initializer::XavierUniform { gain: 1.0 }
}

impl SpecNet {
    /// The network with its parameters not drawn yet (see [`crate::model::Cnn::lazy`]).
    pub fn lazy(steps: &Steps, device: &Device) -> Self {
        let (mut convs, mut norms, mut denses, mut dropouts) = (vec![], vec![], vec![], vec![]);
        for step in &steps.steps {
            match step.op {
                Op::Conv {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    pads,
                    depthwise,
                    bias,
                } => {
                    let groups = if depthwise { in_channels } else { 1 };
                    let mut conv = Conv2dConfig::new([in_channels, out_channels], kernel)
                        .with_stride(stride)
                        .with_groups(groups)
                        .with_padding(PaddingConfig2d::Explicit(
                            pads.top,
                            pads.left,
                            pads.bottom,
                            pads.right,
                        ))
                        .with_bias(bias)
                        .with_initializer(glorot())
                        .init(device);
                    if bias {
                        conv.bias = Some(Initializer::Zeros.init([out_channels], device));
                    }
                    convs.push(conv);
                }
                Op::BatchNorm {
                    channels,
                    epsilon,
                    momentum,
                } => norms.push(
                    BatchNormConfig::new(channels)
                        .with_epsilon(epsilon)
                        .with_momentum(momentum)
                        .init(device),
                ),
                Op::Dense {
                    in_features,
                    out_features,
                } => {
                    let mut l = LinearConfig::new(in_features, out_features)
                        .with_initializer(glorot())
                        .init(device);
                    l.bias = Some(Initializer::Zeros.init([out_features], device));
                    denses.push(l);
                }
                Op::Dropout { rate } => dropouts.push(DropoutConfig::new(rate).init()),
                _ => {}
            }
        }
        Self {
            convs,
            norms,
            denses,
            dropouts,
            steps: steps.clone(),
        }
    }

    /// A freshly initialized network: every parameter drawn now, in module order, from the
    /// device RNG (seed it first, as [`crate::model::Cnn::new`] says).
    pub fn new(steps: &Steps, device: &Device) -> Self {
        let model = Self::lazy(steps, device);
        model.visit(&mut crate::model::Materialize);
        model
    }

    /// Logits `[N, classes]` for a batch `[N, C, H, W]` (pixel / 255).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.run(x, true)
    }

    /// [`SpecNet::forward`] on stock burn layers only (no fused fast path): what the tests
    /// hold the fast path to.
    pub fn forward_reference(&self, x: Tensor<4>) -> Tensor<2> {
        self.run(x, false)
    }

    fn run(&self, x: Tensor<4>, fast: bool) -> Tensor<2> {
        // Values are 4-d until a flatten; a flat value is kept as [N, F, 1, 1].
        let mut values: Vec<Option<Tensor<4>>> = vec![Some(x)];
        values.resize(self.steps.steps.len() + 1, None);
        let mut skip_until = 0;
        for (i, step) in self.steps.steps.iter().enumerate() {
            if i < skip_until {
                continue;
            }
            let input = |k: usize| {
                values[step.inputs[k]]
                    .clone()
                    .expect("a step reads an earlier value")
            };
            if fast && let Some(fused) = self.steps.fused_block(i) {
                let conv = &self.convs[fused.conv];
                let bias = conv.bias.as_ref().map(|b| b.val()).unwrap_or_else(|| {
                    Tensor::zeros([conv.weight.dims()[0]], &conv.weight.device())
                });
                let x = input(0).swap_dims(0, 1);
                let y = conv_block_cnhw(x, conv.weight.val(), bias, fused.padding);
                // The block's three steps share its output: the relu and pool values are the
                // same tensor, and only the pool's is read later.
                values[i + 3] = Some(y.swap_dims(0, 1));
                skip_until = i + 3;
                continue;
            }
            let index = step.index;
            let y = match step.op {
                Op::Input => unreachable!("the steps start after the input"),
                Op::Conv { .. } => self.convs[index].forward(input(0)),
                Op::BatchNorm { .. } => self.norms[index].forward(input(0)),
                Op::Relu => relu(input(0)),
                Op::Relu6 => relu(input(0)).clamp_max(6.0),
                Op::MaxPool {
                    kernel,
                    stride,
                    pads,
                } => MaxPool2dConfig::new(kernel)
                    .with_strides(stride)
                    .with_padding(steps::symmetric(pads))
                    .init()
                    .forward(input(0)),
                Op::AvgPool {
                    kernel,
                    stride,
                    pads,
                } => avg_pool(kernel, stride, pads).forward(input(0)),
                Op::GlobalAvgPool => {
                    let x = input(0);
                    let [n, c, h, w] = x.dims();
                    x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c, 1, 1])
                }
                Op::Dropout { .. } => dropout(&self.dropouts[index], input(0)),
                Op::Flatten => {
                    let x = input(0);
                    let [n, c, h, w] = x.dims();
                    x.reshape([n, c * h * w, 1, 1])
                }
                Op::Dense { .. } => {
                    let x = input(0);
                    let [n, f, _, _] = x.dims();
                    let y = self.denses[index].forward(x.reshape([n, f]));
                    let units = y.dims()[1];
                    y.reshape([n, units, 1, 1])
                }
                Op::Add => input(0) + input(1),
            };
            values[i + 1] = Some(y);
        }
        let out = values
            .pop()
            .flatten()
            .expect("the last step writes the logits");
        let [n, classes, _, _] = out.dims();
        out.reshape([n, classes])
    }
}

/// burn's average pool for a window: padding never counts (`count_include_pad = false`), as
/// in the runtime and ONNX.
fn avg_pool(kernel: [usize; 2], stride: [usize; 2], pads: steps::Pads) -> AvgPool2d {
    AvgPool2dConfig::new(kernel)
        .with_strides(stride)
        .with_padding(steps::symmetric(pads))
        .with_count_include_pad(false)
        .init()
}

impl crate::net::Net for SpecNet {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        SpecNet::forward(self, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{input_tensor, label_tensor};

    fn steps(preset: &str, shape: (usize, usize, usize), classes: usize) -> Steps {
        let (h, w, c) = shape;
        let resolved = tinyconv_spec::load(preset)
            .unwrap()
            .resolve(tinyconv_spec::Shape { h, w, c }, classes)
            .unwrap();
        Steps::from_resolved(&resolved).unwrap()
    }

    #[test]
    fn which_convolutions_take_the_batch_wide_kernel() {
        let paths = |p: &str| steps(p, (28, 28, 1), 10).conv_paths();
        // The seed: three conv → ReLU → 2x2 max pool blocks.
        assert_eq!(paths("seed"), ConvPaths { fused: 3, stock: 0 });
        // ResNet-8 (strided, batch norm between conv and ReLU) and DS-CNN (strided, depthwise,
        // batch norm): none.
        assert_eq!(paths("resnet8").fused, 0);
        assert!(paths("resnet8").stock >= 7);
        assert_eq!(paths("dscnn").fused, 0);
    }

    /// The fast path computes what stock burn's layers compute (the logits and every conv
    /// weight's gradient, dropout masks alike), and it really runs: on the seed preset's spec,
    /// whose three convolutions all take it.
    #[test]
    fn fast_path_matches_stock_burn_layers() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Device::flex().autodiff();
        device.seed(3);
        let steps = steps("seed", (28, 28, 1), 10);
        let net = SpecNet::new(&steps, &device);
        let pixels: Vec<u8> = (0..4 * 784).map(|i| ((i * 7919) % 256) as u8).collect();
        let labels = label_tensor(&[0, 1, 2, 3], &device);
        let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
        let run = |fast: bool| {
            device.seed(11); // the same dropout masks for both paths
            let x = input_tensor(&pixels, &device);
            let logits = net.run(x, fast);
            let loss = loss_fn.forward(logits.clone(), labels.clone());
            let grads = loss.backward();
            let values = |t: Tensor<1>| -> Vec<f32> { t.try_into_vec_as().unwrap() };
            let mut out = vec![values(logits.inner().flatten(0, 1))];
            for conv in &net.convs {
                out.push(values(conv.weight.grad(&grads).unwrap().flatten(0, 3)));
            }
            out
        };
        let (fast, stock) = (run(true), run(false));
        assert_eq!(fast.len(), 4);
        let differ = crate::model::assert_close_to_stock(&fast, &stock);
        // Bit-identical results would mean both runs took the same path: the batch-wide
        // kernel sums in another order than burn's per-image GEMM.
        assert!(differ > 0, "the fast path gave stock burn's exact bits");
    }
}
