//! Calibration and quantization of a [`FloatGraph`] into the runtime's int8 v2 graph under
//! [`Rule::Onnx`], so that tract can referee it bit for bit (`onnx_graph::int8_onnx`).
//!
//! Choices (see `docs/quantization.md`; the per-value maps are the seed quantizer's functions
//! in [`crate::quantize`]):
//! - **ranges**: min/max of every tensor over the calibration inputs, from the float
//!   interpreter ([`calibrate`]); each is widened to include 0, so a real 0 (ReLU's floor, the
//!   padding value) is an exact code, and mapped to an asymmetric zero point.
//! - **weights**: per output channel symmetric int8 ([`quantize_weights`]; a depthwise filter is
//!   one channel's `KH x KW` taps); **biases** int32 at `s_in * s_w[c]` ([`quantize_bias`]).
//! - **conv, depthwise and dense outputs**: power-of-two scales ([`activation_params`]), the
//!   only ones whose requantization tract computes exactly whatever order it folds
//!   `s_in * s_w / s_out` in. The graph's output is calibrated the same way.
//! - **max pool, average pool and reshape outputs** keep their input's scale and zero point:
//!   the runtime requires it (a pool's values stay within its input's range, so nothing is
//!   lost), and max pooling then commutes with the quantization.
//! - **add outputs** get their own calibrated parameters; tract's QDQ add is exact at any scale,
//!   so with [`Options::free_scales`] they use the whole int8 range ([`free_activation_params`]).
//! - **fused ReLU / ReLU6** become the output clamp in codes: `[z, 127]`, and for ReLU6 the upper
//!   bound `6.0` quantized with the output's parameters, saturating.
//! - **the input**: with `pixel_scale = Some(p)`, scale `p` and zero point -128, as the seed
//!   model (1/255): the runtime's pixel multiplier `p / s_in` is then exactly 1, so raw pixel
//!   `v` becomes code `v - 128` with no rounding (`Graph::infer_pixels`), the int8 ONNX export's
//!   `QuantizeLinear` agrees (docs/quantization.md, "The input"), and every pixel value has its
//!   own code. Otherwise it is calibrated like an add output (any input scale is exact).

use tinyconv::QuantParams;
use tinyconv::graph::{Clamp, GraphSpec, OpSpec, Rule, TensorSpec, WeightsSpec};

use super::interpret::{self, FloatGraphError};
use super::{Act, FloatGraph, FloatOp};
use crate::quantize::{activation_params, free_activation_params, quantize_bias, quantize_weights};

/// Observed `(min, max)` of every tensor of a graph, indexed as [`FloatGraph::tensors`].
#[derive(Clone, Debug, PartialEq)]
pub struct Ranges {
    pub tensors: Vec<(f32, f32)>,
}

/// Quantizer settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Give the tensors whose scale tract handles exactly at any value — add outputs and a
    /// non-pixel input — the range divided by 255 instead of the power of two above it (up to
    /// one bit finer). Default `true`.
    pub free_scales: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { free_scales: true }
    }
}

/// Why a graph is not calibrated or quantized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    #[error("the float graph is invalid: {0}")]
    Graph(#[from] FloatGraphError),
    #[error("calibration needs at least one input")]
    NoCalibrationInputs,
    #[error(
        "calibration input {input}: tensor {tensor} holds {value} (a NaN or infinity); check the weights and the input's scale"
    )]
    NonFiniteActivation {
        input: usize,
        tensor: usize,
        value: f32,
    },
    #[error("the ranges cover {actual} tensors, the graph has {expected}: calibrate this graph")]
    RangesLength { expected: usize, actual: usize },
    #[error("the range of tensor {tensor} is ({min}, {max}): it must be finite with min <= max")]
    BadRange { tensor: usize, min: f32, max: f32 },
    #[error("the runtime's writer refuses the quantized graph: {0}")]
    Write(tinyconv::Error),
}

/// The `(min, max)` of every tensor of `graph` over `inputs` (each the input tensor, NHWC).
pub fn calibrate(graph: &FloatGraph, inputs: &[Vec<f32>]) -> Result<Ranges, QuantizeError> {
    if inputs.is_empty() {
        return Err(QuantizeError::NoCalibrationInputs);
    }
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); graph.tensors.len()];
    for (n, x) in inputs.iter().enumerate() {
        for (tensor, values) in interpret::run(graph, x)?.iter().enumerate() {
            let r = &mut ranges[tensor];
            for &value in values {
                if !value.is_finite() {
                    return Err(QuantizeError::NonFiniteActivation {
                        input: n,
                        tensor,
                        value,
                    });
                }
                *r = (r.0.min(value), r.1.max(value));
            }
        }
    }
    Ok(Ranges { tensors: ranges })
}

/// The fused activation as a clamp in the codes of `q`.
fn clamp(act: Act, q: QuantParams) -> Clamp {
    let z = q.zero_point;
    match act {
        Act::None => Clamp::NONE,
        Act::Relu => Clamp { min: z, max: 127 },
        Act::Relu6 => {
            let six = (6.0 / q.scale as f64).round_ties_even() + z as f64;
            Clamp {
                min: z,
                max: six.clamp(-128.0, 127.0) as i8,
            }
        }
    }
}

/// Per-channel weights of a depthwise filter (`[kh][kw][c]`): channel `c`'s taps are strided,
/// so they are gathered into `[c][taps]` for [`quantize_weights`] and scattered back.
fn quantize_depthwise(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let taps = w.len() / channels;
    let by_channel: Vec<f32> = (0..channels)
        .flat_map(|c| (0..taps).map(move |k| w[k * channels + c]))
        .collect();
    let (q, scales) = quantize_weights(&by_channel, channels);
    let mut hwc = vec![0i8; w.len()];
    for c in 0..channels {
        for k in 0..taps {
            hwc[k * channels + c] = q[c * taps + k];
        }
    }
    (hwc, scales)
}

fn weights_spec(weights: &[f32], bias: &[f32], depthwise: bool, input: QuantParams) -> WeightsSpec {
    let (weights, weight_scales) = if depthwise {
        quantize_depthwise(weights, bias.len())
    } else {
        quantize_weights(weights, bias.len())
    };
    WeightsSpec {
        bias: quantize_bias(bias, input.scale, &weight_scales),
        weights,
        weight_scales,
    }
}

/// The parameters of tensor `t`, set by the op that wrote it (the order is validated).
fn known(quant: &[Option<QuantParams>], t: usize) -> QuantParams {
    quant[t].expect("a tensor is written before it is read")
}

/// The runtime op of `op` with its output quantized as `y` (a fused activation becomes the
/// clamp in `y`'s codes); `params` gives a conv's, depthwise's or dense's int8 weights from its
/// float weights, bias and whether it is depthwise. Shared by this quantizer and the int8 ONNX
/// importer, which differ only in where the numbers come from.
pub(crate) fn op_spec<E>(
    op: &FloatOp,
    y: QuantParams,
    params: impl FnOnce(&[f32], &[f32], bool) -> Result<WeightsSpec, E>,
) -> Result<OpSpec, E> {
    Ok(match op {
        FloatOp::Conv2d {
            input,
            output,
            window,
            depthwise,
            weights,
            bias,
            act,
        } => OpSpec::Conv2d {
            input: *input,
            output: *output,
            window: *window,
            depthwise: *depthwise,
            clamp: clamp(*act, y),
            params: params(weights, bias, *depthwise)?,
        },
        FloatOp::Dense {
            input,
            output,
            weights,
            bias,
            act,
        } => OpSpec::Dense {
            input: *input,
            output: *output,
            clamp: clamp(*act, y),
            params: params(weights, bias, false)?,
        },
        FloatOp::MaxPool {
            input,
            output,
            window,
        } => OpSpec::MaxPool {
            input: *input,
            output: *output,
            window: *window,
            clamp: Clamp::NONE,
        },
        FloatOp::AvgPool {
            input,
            output,
            window,
        } => OpSpec::AvgPool {
            input: *input,
            output: *output,
            window: *window,
            clamp: Clamp::NONE,
        },
        FloatOp::Add {
            inputs,
            output,
            act,
        } => OpSpec::Add {
            inputs: *inputs,
            output: *output,
            clamp: clamp(*act, y),
        },
        FloatOp::Reshape { input, output } => OpSpec::Reshape {
            input: *input,
            output: *output,
        },
    })
}

/// The onnx-rule int8 graph of `graph` with activation ranges `ranges` (see the module doc).
pub fn quantize(
    graph: &FloatGraph,
    ranges: &Ranges,
    options: &Options,
) -> Result<GraphSpec, QuantizeError> {
    interpret::validate(graph)?;
    if ranges.tensors.len() != graph.tensors.len() {
        return Err(QuantizeError::RangesLength {
            expected: graph.tensors.len(),
            actual: ranges.tensors.len(),
        });
    }
    let range = |tensor: usize| {
        let (min, max) = ranges.tensors[tensor];
        if min.is_finite() && max.is_finite() && min <= max {
            Ok((min, max))
        } else {
            Err(QuantizeError::BadRange { tensor, min, max })
        }
    };
    let free = |tensor: usize| -> Result<QuantParams, QuantizeError> {
        let (min, max) = range(tensor)?;
        Ok(if options.free_scales {
            free_activation_params(min, max)
        } else {
            activation_params(min, max)
        })
    };
    let pow2 = |tensor: usize| -> Result<QuantParams, QuantizeError> {
        let (min, max) = range(tensor)?;
        Ok(activation_params(min, max))
    };

    // Every tensor is the input or written by exactly one op (validated), so one pass in op
    // order fills them all.
    let mut quant = vec![None; graph.tensors.len()];
    quant[graph.input] = Some(match graph.pixel_scale {
        Some(scale) => QuantParams {
            scale,
            zero_point: -128,
        },
        None => free(graph.input)?,
    });
    let mut ops = Vec::with_capacity(graph.ops.len());
    for op in &graph.ops {
        let x = known(&quant, op.inputs()[0]);
        let y = match op {
            FloatOp::Conv2d { output, .. } | FloatOp::Dense { output, .. } => pow2(*output)?,
            FloatOp::MaxPool { .. } | FloatOp::AvgPool { .. } | FloatOp::Reshape { .. } => x,
            FloatOp::Add { output, .. } => free(*output)?,
        };
        let spec = op_spec(op, y, |weights, bias, depthwise| {
            Ok::<_, QuantizeError>(weights_spec(weights, bias, depthwise, x))
        })?;
        quant[op.output()] = Some(y);
        ops.push(spec);
    }
    Ok(graph_spec(graph, &quant, ops))
}

/// The onnx-rule graph of `graph`'s shapes with every tensor's quantization `quant` (each set:
/// every tensor is the input or an op's output) and `ops`.
pub(crate) fn graph_spec(
    graph: &FloatGraph,
    quant: &[Option<QuantParams>],
    ops: Vec<OpSpec>,
) -> GraphSpec {
    let tensors = (graph.tensors.iter().zip(quant))
        .map(|(&shape, q)| TensorSpec {
            shape,
            quant: q.expect("every tensor is the input or an op's output"),
        })
        .collect();
    GraphSpec {
        rule: Rule::Onnx,
        tensors,
        input: graph.input,
        output: graph.output,
        pixel_scale: graph.pixel_scale,
        ops,
    }
}

/// [`calibrate`] on `inputs`, [`quantize`], and the `.tcm` bytes ([`GraphSpec::to_bytes`], which
/// parses its own output).
pub fn to_tcm(
    graph: &FloatGraph,
    inputs: &[Vec<f32>],
    options: &Options,
) -> Result<Vec<u8>, QuantizeError> {
    let ranges = calibrate(graph, inputs)?;
    quantize(graph, &ranges, options)?
        .to_bytes()
        .map_err(QuantizeError::Write)
}
