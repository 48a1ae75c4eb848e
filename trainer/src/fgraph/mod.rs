//! A float CNN as a graph: what the trainer exports a spec-built burn model to, and what the
//! ONNX importer reads a PyTorch or Keras model into. One calibrator and quantizer
//! ([`quantize`]) turns it into the runtime's int8 [`tinyconv::graph::GraphSpec`] under the
//! `onnx` rule, so a trained model and an imported one take the same road to the chip, and
//! the same referee (tract) checks both.
//!
//! Layout conventions (the runtime's, so that quantizing is a per-value map):
//! - activations are NHWC with N = 1, `[h][w][c]`, f32;
//! - conv weights are OHWI (`[out][kh][kw][in]`), depthwise weights HWC (`[kh][kw][c]`),
//!   dense weights `[out][in]` with `in` in the input's NHWC flatten order;
//! - batch norm is already folded into the convolution before it (the exporter and the
//!   importer fold it; see `docs/quantization.md`).

pub mod interpret;
pub mod onnx_float;
pub mod quantize;

pub use interpret::{FloatGraphError, validate};

pub use tinyconv::Shape;
pub use tinyconv::graph::spec::{Pads, Window};

/// The activation fused into an op's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    None,
    Relu,
    /// min(max(x, 0), 6)
    Relu6,
}

impl Act {
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::None => x,
            Act::Relu => x.max(0.0),
            Act::Relu6 => x.clamp(0.0, 6.0),
        }
    }
}

/// One float op. Tensors are named by their index in [`FloatGraph::tensors`]; tensor 0 is
/// not special: [`FloatGraph::input`] names the input.
#[derive(Clone, Debug, PartialEq)]
pub enum FloatOp {
    /// Full convolution (`depthwise = false`, weights OHWI) or depthwise with multiplier 1
    /// (`depthwise = true`, weights HWC, input channels = output channels).
    Conv2d {
        input: usize,
        output: usize,
        window: Window,
        depthwise: bool,
        weights: Vec<f32>,
        bias: Vec<f32>,
        act: Act,
    },
    /// Fully connected over the flattened (NHWC) input; weights `[out][in]`.
    Dense {
        input: usize,
        output: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
        act: Act,
    },
    /// Padding never wins (as in ONNX and TFLite).
    MaxPool {
        input: usize,
        output: usize,
        window: Window,
    },
    /// Average over the window's in-bounds pixels (`count_include_pad = 0`); a global
    /// average pool is the window of the whole input.
    AvgPool {
        input: usize,
        output: usize,
        window: Window,
    },
    /// Elementwise sum of two tensors of one shape.
    Add {
        inputs: [usize; 2],
        output: usize,
        act: Act,
    },
    /// The same values under another shape, in NHWC order (flatten is `1 x 1 x (h*w*c)`).
    Reshape { input: usize, output: usize },
}

impl FloatOp {
    /// The tensors this op reads.
    pub fn inputs(&self) -> Vec<usize> {
        match *self {
            FloatOp::Conv2d { input, .. }
            | FloatOp::Dense { input, .. }
            | FloatOp::MaxPool { input, .. }
            | FloatOp::AvgPool { input, .. }
            | FloatOp::Reshape { input, .. } => vec![input],
            FloatOp::Add { inputs, .. } => inputs.to_vec(),
        }
    }

    /// The tensor this op writes.
    pub fn output(&self) -> usize {
        match *self {
            FloatOp::Conv2d { output, .. }
            | FloatOp::Dense { output, .. }
            | FloatOp::MaxPool { output, .. }
            | FloatOp::AvgPool { output, .. }
            | FloatOp::Reshape { output, .. }
            | FloatOp::Add { output, .. } => output,
        }
    }

    /// Lower-case op name, for reports and errors.
    pub fn name(&self) -> &'static str {
        match self {
            FloatOp::Conv2d {
                depthwise: true, ..
            } => "depthwise_conv2d",
            FloatOp::Conv2d { .. } => "conv2d",
            FloatOp::Dense { .. } => "dense",
            FloatOp::MaxPool { .. } => "max_pool",
            FloatOp::AvgPool { .. } => "avg_pool",
            FloatOp::Add { .. } => "add",
            FloatOp::Reshape { .. } => "reshape",
        }
    }
}

/// A whole float model: tensor shapes, the ops in topological order, and how raw input
/// pixels map to the input tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatGraph {
    /// The shape of every activation tensor (NHWC, N = 1).
    pub tensors: Vec<Shape>,
    pub input: usize,
    pub output: usize,
    /// In the order they run; every op reads the input or earlier ops' outputs.
    pub ops: Vec<FloatOp>,
    /// Real input value of one unit of a raw u8 pixel (`1/255` for inputs in 0..1, `1` for
    /// 0..255), `None` when the model's input is not pixels (features, a vector).
    pub pixel_scale: Option<f32>,
}
