//! A v2 model as plain data (std only): what an importer or the trainer builds, and what
//! [`GraphSpec::to_bytes`] serializes. Everything derivable from the scales — requantization
//! multipliers, the add and softmax parameters — is derived by the writer under the model's
//! [`Rule`], never supplied by the caller, so a file cannot disagree with its own scales.

use std::vec::Vec;

use crate::error::Shape;
use crate::quant::QuantParams;

pub use super::Clamp;
pub use super::format::Rule;

/// An activation tensor: its shape (NHWC with N = 1) and its per-tensor quantization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorSpec {
    pub shape: Shape,
    pub quant: QuantParams,
}

/// Explicit padding, in input pixels on each side (TensorFlow's SAME padding puts the odd
/// pixel at the bottom and right).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pads {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

/// A sliding window: kernel, stride and padding of a conv or pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pads: Pads,
}

impl Window {
    /// A square kernel, stride 1, no padding.
    pub const fn square(kernel: usize) -> Self {
        Window {
            kernel_h: kernel,
            kernel_w: kernel,
            stride_h: 1,
            stride_w: 1,
            pads: Pads {
                top: 0,
                left: 0,
                bottom: 0,
                right: 0,
            },
        }
    }
}

/// The weights of a conv, depthwise conv or dense op.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightsSpec {
    /// conv2d: OHWI (`[out][kh][kw][in]`); depthwise: HWC (`[kh][kw][channels]`, TFLite's
    /// `[1, kh, kw, c]`); dense: `[out][in]`, `in` in the input's NHWC order.
    pub weights: Vec<i8>,
    /// int32, scale `s_in * s_w[c]`, zero point 0; one a channel.
    pub bias: Vec<i32>,
    /// Symmetric weight scales, one a channel (a per-tensor scale repeated).
    pub weight_scales: Vec<f32>,
}

/// One op. Tensors are named by their index in [`GraphSpec::tensors`].
#[derive(Clone, Debug, PartialEq)]
pub enum OpSpec {
    Conv2d {
        input: usize,
        output: usize,
        window: Window,
        /// One filter a channel (groups = channels, multiplier 1) instead of a full conv.
        depthwise: bool,
        clamp: Clamp,
        params: WeightsSpec,
    },
    /// Fully connected over the flattened input.
    Dense {
        input: usize,
        output: usize,
        clamp: Clamp,
        params: WeightsSpec,
    },
    MaxPool {
        input: usize,
        output: usize,
        window: Window,
        clamp: Clamp,
    },
    /// Average over the window's in-bounds pixels (a global average pool is the window of the
    /// whole input).
    AvgPool {
        input: usize,
        output: usize,
        window: Window,
        clamp: Clamp,
    },
    /// Elementwise sum of two tensors of one shape, each with its own scale and zero point.
    Add {
        inputs: [usize; 2],
        output: usize,
        clamp: Clamp,
    },
    /// Softmax over the channels; the output is int8 with scale 1/256 and zero point -128.
    Softmax {
        input: usize,
        output: usize,
        beta: f32,
    },
    /// The same bytes under another shape (a view: no copy at run time).
    Reshape { input: usize, output: usize },
}

/// A whole v2 model.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphSpec {
    pub rule: Rule,
    /// Every activation tensor; constants live in the ops.
    pub tensors: Vec<TensorSpec>,
    pub input: usize,
    pub output: usize,
    /// Real value of one unit of a raw u8 pixel, when the model also takes raw pixels
    /// (quantized inside the runtime); `None` for a model that takes its int8 tensor only.
    pub pixel_scale: Option<f32>,
    /// In the order they run; every op's inputs are the graph input or earlier ops' outputs.
    pub ops: Vec<OpSpec>,
}
