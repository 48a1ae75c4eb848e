//! The conv blocks of the network — convolution + bias, ReLU, 2x2 max pooling — as one
//! batch-wide op for training, plugged into burn's autodiff.
//!
//! burn-flex 0.22 runs a convolution — and both of its gradients — as one small GEMM per image
//! (`W[out × taps] · col[taps × ≤512 pixels]`), which leaves its GEMM crate on thin, slow
//! micro-kernels, and its pooling and ReLU each write and read back the full-size activation;
//! that made an epoch 3.6x slower than Keras (docs/performance.md). This op keeps activations
//! channel-major (`[C, N, H, W]`), where a batch's convolution is a few well-shaped GEMMs over
//! groups of images, and pools each group's result while it is still in cache ([`kernel`]).
//! It is one node in burn's autodiff graph with its own backward step, so the rest of the model
//! (dropout, dense layers, loss, Adam) stays stock burn.
//!
//! [`conv_block_cnhw`] runs the fast kernels on the Flex backend (with or without autodiff)
//! and burn's own ops on anything else, so the model stays backend-agnostic.

mod gemm;
pub mod kernel;
pub mod pool;

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::pool::MaxPool2dConfig;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, TensorData};

use kernel::ConvGeometry;

/// `maxpool2x2(relu(conv(x, weight) + bias))` with stride 1 and `padding` zeros around, for
/// `x` in `[C, N, H, W]` layout; the output is `[O, N, OH/2, OW/2]`. `weight` is burn's
/// `[O, C, K, K]` (a square kernel), `bias` `[O]`.
///
/// # Panics
/// If the shapes disagree (as burn's own `conv2d` does).
pub fn conv_block_cnhw(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    padding: usize,
) -> Tensor<4> {
    let [channels, batch, height, width] = x.dims();
    let [filters, weight_channels, kh, kw] = weight.dims();
    assert_eq!(
        weight_channels, channels,
        "weight has {weight_channels} input channels, x has {channels}"
    );
    assert_eq!(kh, kw, "only square kernels");
    assert_eq!(bias.dims(), [filters], "bias length");
    let geometry = ConvGeometry {
        channels,
        batch,
        height,
        width,
        filters,
        kernel: kh,
        padding,
    };
    match [path(&x), path(&weight), path(&bias)] {
        [Path::Tracked, Path::Tracked, Path::Tracked] => Tensor::from_primitive::<Autodiff<Flex>>(
            tracked_forward(geometry, tracked(x), tracked(weight), tracked(bias)),
        ),
        [Path::Plain, Path::Plain, Path::Plain] => Tensor::from_primitive::<Flex>(
            forward(&geometry, &plain(x), &plain(weight), &plain(bias)).0,
        ),
        _ => reference_conv_block_cnhw(x, weight, bias, padding),
    }
}

/// The same block with burn's `conv2d`, ReLU and `MaxPool2d` (NCHW), for other backends and
/// as the reference the fast path is tested against.
pub fn reference_conv_block_cnhw(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    padding: usize,
) -> Tensor<4> {
    let options = ConvOptions::new([1, 1], [padding, padding], [1, 1], 1);
    let y = conv2d(x.swap_dims(0, 1), weight, Some(bias), options);
    MaxPool2dConfig::new([2, 2])
        .init()
        .forward(relu(y))
        .swap_dims(0, 1)
}

/// Which implementation a tensor gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// An f32 tensor on Flex with autodiff: the fast kernels, recorded in the graph.
    Tracked,
    /// An f32 tensor on plain Flex: the fast forward kernels.
    Plain,
    /// Anything else: burn's own ops.
    Stock,
}

/// The implementation [`conv_block_cnhw`] uses for `tensor`.
pub fn path<const D: usize>(tensor: &Tensor<D>) -> Path {
    if let Ok(t) = tensor.clone().try_into_primitive::<Autodiff<Flex>>()
        && is_f32(t.primitive())
    {
        Path::Tracked
    } else if let Ok(t) = tensor.clone().try_into_primitive::<Flex>()
        && is_f32(&t)
    {
        Path::Plain
    } else {
        Path::Stock
    }
}

fn tracked<const D: usize>(tensor: Tensor<D>) -> AutodiffFlexTensor {
    tensor
        .try_into_primitive::<Autodiff<Flex>>()
        .expect("checked by `path`")
}

fn plain<const D: usize>(tensor: Tensor<D>) -> FlexTensor {
    tensor
        .try_into_primitive::<Flex>()
        .expect("checked by `path`")
}

fn is_f32(tensor: &FlexTensor) -> bool {
    tensor.dtype() == DType::F32
}

/// The tensor's elements in row-major order (copied only if it is a strided view).
fn contiguous(tensor: &FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() {
        tensor.clone()
    } else {
        tensor.to_contiguous()
    }
}

fn slice(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().expect("a contiguous f32 tensor")
}

fn flex_tensor(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims))
}

/// The forward kernels on Flex tensors: the block's output and the pooling winners.
fn forward(
    g: &ConvGeometry,
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
) -> (FlexTensor, Vec<u8>) {
    let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
    let mut out = vec![0.0; g.pooled_len()];
    let mut winners = vec![0; g.pooled_len()];
    kernel::forward(
        g,
        slice(&x),
        slice(&weight),
        slice(&bias),
        &mut out,
        &mut winners,
    );
    (flex_tensor(out, g.pooled_dims().to_vec()), winners)
}

type AutodiffFlexTensor = <Autodiff<Flex> as burn::backend::BackendTypes>::FloatTensorPrimitive;

fn tracked_forward(
    g: ConvGeometry,
    x: AutodiffFlexTensor,
    weight: AutodiffFlexTensor,
    bias: AutodiffFlexTensor,
) -> AutodiffFlexTensor {
    // Made contiguous once: the forward pass reads them, the backward step keeps them.
    let (x_data, weight_data) = (contiguous(x.primitive()), contiguous(weight.primitive()));
    let (output, winners) = forward(&g, &x_data, &weight_data, bias.primitive());
    match BlockBackward
        .prepare::<NoCheckpointing>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = BlockState {
                x: x_data,
                weight: weight_data,
                winners: Arc::new(winners),
                geometry: g,
            };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// What the backward step of a block needs from its forward pass.
#[derive(Clone, Debug)]
struct BlockState {
    x: FlexTensor,
    weight: FlexTensor,
    /// The pooling winner of every output ([`pool::NO_GRADIENT`] where ReLU clamped it).
    winners: Arc<Vec<u8>>,
    geometry: ConvGeometry,
}

/// The autodiff step of [`conv_block_cnhw`].
#[derive(Debug)]
struct BlockBackward;

impl Backward<Flex, 3> for BlockBackward {
    type State = BlockState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let BlockState {
            x,
            weight,
            winners,
            geometry: g,
        } = ops.state;
        let result = kernel::backward(
            &g,
            slice(&x),
            slice(&weight),
            slice(&dy),
            &winners,
            node_x.is_some(),
        );
        if let (Some(node), Some(dx)) = (node_x, result.input) {
            grads.register::<Flex>(
                node.id,
                flex_tensor(dx, vec![g.channels, g.batch, g.height, g.width]),
            );
        }
        if let Some(node) = node_weight {
            let dims = vec![g.filters, g.channels, g.kernel, g.kernel];
            grads.register::<Flex>(node.id, flex_tensor(result.weight, dims));
        }
        if let Some(node) = node_bias {
            grads.register::<Flex>(node.id, flex_tensor(result.bias, vec![g.filters]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Tensors the fast kernels don't take (here f64) go through burn's own ops, and both
    /// paths compute the same block.
    #[test]
    fn other_tensors_take_burn_ops_with_the_same_result() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Device::flex();
        device.seed(11);
        let x = Tensor::<4>::random([3, 2, 9, 8], Distribution::Uniform(-1.0, 1.0), &device);
        let weight = Tensor::<4>::random([5, 3, 3, 3], Distribution::Uniform(-1.0, 1.0), &device);
        let bias = Tensor::<1>::random([5], Distribution::Uniform(-1.0, 1.0), &device);
        assert_eq!(path(&x), Path::Plain);
        let fast: Vec<f32> = conv_block_cnhw(x.clone(), weight.clone(), bias.clone(), 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let wide = |t: Tensor<4>| t.cast(DType::F64);
        let x64 = wide(x);
        assert_eq!(path(&x64), Path::Stock);
        let stock = conv_block_cnhw(x64, wide(weight), bias.cast(DType::F64), 1);
        assert_eq!(stock.dims(), [5, 2, 4, 4]);
        let stock: Vec<f64> = stock.into_data().try_to_vec::<f64>().unwrap();
        for (a, b) in fast.iter().zip(&stock) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
