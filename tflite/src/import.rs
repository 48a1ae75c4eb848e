//! From a TFLite model to a tinyconv v2 graph ([`tinyconv::graph::GraphSpec`]).
//!
//! The importer maps the int8 TinyML op set one to one: CONV_2D, DEPTHWISE_CONV_2D,
//! FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE and SOFTMAX, with the
//! activation tensors renumbered densely and the constants moved into the ops. Every
//! multiplier is left to [`GraphSpec::to_bytes`] under [`Rule::Tflite`], so the file carries
//! the model's scales and nothing derived from them.
//!
//! What it does not map it refuses, naming the operator (index and name), the tensor when one
//! is at fault, and what is supported. A QUANTIZE as the first op (float input to int8) and a
//! DEQUANTIZE as the last op are dropped: the graph then starts and ends at the int8 tensors,
//! and [`ImportReport::dropped`] says so.

use std::collections::BTreeMap;

use tinyconv::graph::{Clamp, GraphSpec, OpSpec, Pads, Rule, TensorSpec, WeightsSpec, Window};
use tinyconv::{QuantParams, Shape};

use crate::{Activation, BuiltinOp, Model, Operator, Options, Padding, Tensor, TensorType};

/// The ops [`to_graph`] maps, as the refusal messages list them.
pub const SUPPORTED_OPS: &str = "CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, \
     AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE, SOFTMAX (and QUANTIZE as the first op, DEQUANTIZE \
     as the last, which are dropped)";

/// Why a model cannot be imported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the model's graph {problem}")]
    Graph { problem: String },
    #[error("operator {index} ({op}) is not supported; tinyconv imports {SUPPORTED_OPS}")]
    UnsupportedOp { index: usize, op: String },
    #[error("operator {index} ({op}): {problem}")]
    Operator {
        index: usize,
        op: String,
        problem: String,
    },
    #[error("operator {index} ({op}), tensor {tensor} ({name}): {problem}")]
    Tensor {
        index: usize,
        op: String,
        tensor: usize,
        name: String,
        problem: String,
    },
    #[error(
        "operator {index} ({op}), weights tensor {tensor} ({name}): {count} weight(s) equal -128 \
         (the first at element {first}); tinyconv's kernels take int8 weights in -127..=127 \
         (TFLite's symmetric weight range), so the model cannot be imported as it is"
    )]
    WeightMinus128 {
        index: usize,
        op: String,
        tensor: usize,
        name: String,
        count: usize,
        first: usize,
    },
}

/// An op the importer left out of the graph, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Index in the TFLite model's operators.
    pub index: usize,
    pub op: String,
    pub reason: String,
}

/// What the import did besides the graph.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// TFLite op name → how many were mapped.
    pub op_counts: BTreeMap<String, usize>,
    /// QUANTIZE / DEQUANTIZE ops left out.
    pub dropped: Vec<Dropped>,
    /// For each op of the graph, the index of the TFLite operator it came from.
    pub source_op: Vec<usize>,
    /// For each tensor of the graph, the index of the TFLite tensor it came from.
    pub source_tensor: Vec<usize>,
}

/// A graph and its report.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub spec: GraphSpec,
    pub report: ImportReport,
}

/// The model as a tinyconv v2 graph.
pub fn to_graph(model: &Model) -> Result<GraphSpec, ImportError> {
    import(model).map(|i| i.spec)
}

/// The model as a tinyconv v2 graph, with what was mapped and dropped.
pub fn import(model: &Model) -> Result<Imported, ImportError> {
    Importer::new(model).run()
}

struct Importer<'m> {
    model: &'m Model,
    /// TFLite tensor index → graph tensor index.
    map: BTreeMap<usize, usize>,
    tensors: Vec<TensorSpec>,
    ops: Vec<OpSpec>,
    report: ImportReport,
}

/// The context of the operator being mapped, for messages.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    index: usize,
    op: &'a Operator,
}

impl Ctx<'_> {
    fn name(&self) -> String {
        self.op.code.name()
    }

    fn err(&self, problem: impl Into<String>) -> ImportError {
        ImportError::Operator {
            index: self.index,
            op: self.name(),
            problem: problem.into(),
        }
    }

    fn tensor_err(&self, model: &Model, tensor: usize, problem: impl Into<String>) -> ImportError {
        ImportError::Tensor {
            index: self.index,
            op: self.name(),
            tensor,
            name: model
                .graph
                .tensors
                .get(tensor)
                .map_or_else(String::new, |t| t.name.clone()),
            problem: problem.into(),
        }
    }
}

fn activation_name(a: Activation) -> String {
    match a {
        Activation::None => "NONE".into(),
        Activation::Relu => "RELU".into(),
        Activation::ReluN1To1 => "RELU_N1_TO_1".into(),
        Activation::Relu6 => "RELU6".into(),
        Activation::Tanh => "TANH".into(),
        Activation::SignBit => "SIGN_BIT".into(),
        Activation::Other(v) => format!("activation {v}"),
    }
}

/// TFLite's quantization of a real value to an output code, before clamping to int8
/// (`CalculateActivationRangeQuantized`: `zp + round(f / scale)` in f32, halves away from 0).
fn quantize(q: QuantParams, f: f32) -> i32 {
    let r = (f / q.scale).round();
    // Saturate far outside the int8 range; the clamp below only needs the side.
    let r = r.clamp(-1.0e6, 1.0e6) as i32;
    q.zero_point as i32 + r
}

/// The fused activation as a clamp in the output tensor's codes.
pub fn clamp_for(activation: Activation, out: QuantParams) -> Option<Clamp> {
    let (lo, hi) = match activation {
        Activation::None => (i8::MIN as i32, i8::MAX as i32),
        Activation::Relu => (quantize(out, 0.0).max(-128), 127),
        Activation::Relu6 => (quantize(out, 0.0).max(-128), quantize(out, 6.0).min(127)),
        Activation::ReluN1To1 => (quantize(out, -1.0).max(-128), quantize(out, 1.0).min(127)),
        _ => return None,
    };
    if lo > hi || lo > 127 || hi < -128 {
        return None;
    }
    Some(Clamp {
        min: lo as i8,
        max: hi as i8,
    })
}

/// TFLite's output size and padding for one spatial dimension.
fn window_dim(
    padding: Padding,
    input: usize,
    kernel: usize,
    stride: usize,
) -> Option<(usize, usize, usize)> {
    match padding {
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = ((out - 1) * stride + kernel).saturating_sub(input);
            let before = total / 2;
            Some((out, before, total - before))
        }
        Padding::Valid => {
            if input < kernel {
                return None;
            }
            Some(((input - kernel) / stride + 1, 0, 0))
        }
    }
}

fn padding_name(p: Padding) -> &'static str {
    match p {
        Padding::Same => "SAME",
        Padding::Valid => "VALID",
    }
}

impl<'m> Importer<'m> {
    fn new(model: &'m Model) -> Self {
        Importer {
            model,
            map: BTreeMap::new(),
            tensors: Vec::new(),
            ops: Vec::new(),
            report: ImportReport::default(),
        }
    }

    fn tensor(&self, ctx: Ctx, index: usize) -> Result<&'m Tensor, ImportError> {
        self.model
            .graph
            .tensors
            .get(index)
            .ok_or_else(|| ctx.err(format!("refers to tensor {index}, which does not exist")))
    }

    /// The shape of an activation tensor as (h, w, c).
    fn shape(&self, ctx: Ctx, index: usize) -> Result<Shape, ImportError> {
        let t = self.tensor(ctx, index)?;
        let bad =
            |why: &str| ctx.tensor_err(self.model, index, format!("shape {:?} {why}", t.shape));
        if t.shape.iter().any(|&d| d <= 0) {
            return Err(bad(
                "has an unknown or empty dimension; tinyconv needs fixed positive sizes",
            ));
        }
        let d: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let batch_ok = |n: usize| {
            if n == 1 {
                Ok(())
            } else {
                Err(bad(
                    "has a batch other than 1; tinyconv runs one sample at a time",
                ))
            }
        };
        match d.as_slice() {
            [n, h, w, c] => {
                batch_ok(*n)?;
                Ok(Shape::new(*h, *w, *c))
            }
            [n, w, c] => {
                batch_ok(*n)?;
                Ok(Shape::new(1, *w, *c))
            }
            [n, c] => {
                batch_ok(*n)?;
                Ok(Shape::new(1, 1, *c))
            }
            [c] => Ok(Shape::new(1, 1, *c)),
            _ => Err(bad(
                "has a rank tinyconv does not map (it takes ranks 1 to 4)",
            )),
        }
    }

    /// The int8 per-tensor quantization of an activation tensor.
    fn quant(&self, ctx: Ctx, index: usize) -> Result<QuantParams, ImportError> {
        let t = self.tensor(ctx, index)?;
        if t.dtype != TensorType::Int8 {
            return Err(ctx.tensor_err(
                self.model,
                index,
                format!(
                    "the activation is {}; tinyconv runs int8 activations only",
                    t.dtype.name()
                ),
            ));
        }
        let q = t.quantization.as_ref().ok_or_else(|| {
            ctx.tensor_err(self.model, index, "the int8 activation has no quantization")
        })?;
        if q.scale.len() != 1 || q.zero_point.len() != 1 {
            return Err(ctx.tensor_err(
                self.model,
                index,
                format!(
                    "the activation is quantized per channel ({} scales); tinyconv needs one \
                     scale and zero point per activation tensor",
                    q.scale.len()
                ),
            ));
        }
        let (scale, zp) = (q.scale[0], q.zero_point[0]);
        if !(scale.is_normal() && scale > 0.0) {
            return Err(ctx.tensor_err(
                self.model,
                index,
                format!("scale {scale} is not a positive normal number"),
            ));
        }
        let zero_point = i8::try_from(zp).map_err(|_| {
            ctx.tensor_err(
                self.model,
                index,
                format!("zero point {zp} is outside int8"),
            )
        })?;
        Ok(QuantParams { scale, zero_point })
    }

    /// The graph tensor of TFLite activation tensor `index`, created on first use.
    fn activation(&mut self, ctx: Ctx, index: usize) -> Result<usize, ImportError> {
        if let Some(&i) = self.map.get(&index) {
            return Ok(i);
        }
        let t = self.tensor(ctx, index)?;
        if t.data.is_some() {
            return Err(ctx.tensor_err(
                self.model,
                index,
                "is a constant where tinyconv expects an activation (constant operands of \
                 this op are not supported)",
            ));
        }
        let quant = self.quant(ctx, index)?;
        let shape = self.shape(ctx, index)?;
        let i = self.tensors.len();
        self.tensors.push(TensorSpec { shape, quant });
        self.report.source_tensor.push(index);
        self.map.insert(index, i);
        Ok(i)
    }

    /// The op's input `slot` (required).
    fn input(&self, ctx: Ctx, slot: usize) -> Result<usize, ImportError> {
        ctx.op
            .inputs
            .get(slot)
            .copied()
            .flatten()
            .ok_or_else(|| ctx.err(format!("input {slot} is missing")))
    }

    fn output(&self, ctx: Ctx) -> Result<usize, ImportError> {
        match ctx.op.outputs.as_slice() {
            [o] => Ok(*o),
            other => Err(ctx.err(format!(
                "has {} outputs; tinyconv maps ops with exactly one",
                other.len()
            ))),
        }
    }

    fn expect_inputs(
        &self,
        ctx: Ctx,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<(), ImportError> {
        if range.contains(&ctx.op.inputs.len()) {
            Ok(())
        } else {
            Err(ctx.err(format!(
                "has {} inputs; {} expects {} to {}",
                ctx.op.inputs.len(),
                ctx.name(),
                range.start(),
                range.end()
            )))
        }
    }

    fn clamp(
        &self,
        ctx: Ctx,
        activation: Activation,
        out: QuantParams,
    ) -> Result<Clamp, ImportError> {
        clamp_for(activation, out).ok_or_else(|| {
            ctx.err(format!(
                "fused activation {} is not supported with output scale {} and zero point {} \
                 (tinyconv fuses NONE, RELU, RELU6 and RELU_N1_TO_1 as a clamp that must leave \
                 a non-empty int8 range)",
                activation_name(activation),
                out.scale,
                out.zero_point
            ))
        })
    }

    /// The weights, bias and weight scales of a conv, depthwise or dense op. `shape` is the
    /// filter shape the op requires, `channels` the output channel count, `axis` the
    /// per-channel quantization axis.
    fn weights(&self, ctx: Ctx, channels: usize, axis: usize) -> Result<WeightsSpec, ImportError> {
        let wi = self.input(ctx, 1)?;
        let w = self.tensor(ctx, wi)?;
        let werr = |p: String| ctx.tensor_err(self.model, wi, p);
        let data = w.data.as_ref().ok_or_else(|| {
            werr("the weights are not a constant; tinyconv needs constant weights".into())
        })?;
        if w.dtype != TensorType::Int8 {
            return Err(werr(format!(
                "the weights are {}; tinyconv takes int8 weights",
                w.dtype.name()
            )));
        }
        let q = w
            .quantization
            .as_ref()
            .ok_or_else(|| werr("the int8 weights have no quantization".into()))?;
        if q.zero_point.iter().any(|&z| z != 0) {
            return Err(werr(
                "the weights have a nonzero zero point; tinyconv takes symmetric weights".into(),
            ));
        }
        let weight_scales = match q.scale.len() {
            1 => vec![q.scale[0]; channels],
            n if n == channels && q.dimension == axis => q.scale.clone(),
            n => {
                return Err(werr(format!(
                    "{n} weight scales along axis {}; tinyconv takes one scale or one a \
                     output channel ({channels}, along axis {axis})",
                    q.dimension
                )));
            }
        };
        if q.zero_point.len() != q.scale.len() {
            return Err(werr(format!(
                "{} scales but {} zero points",
                q.scale.len(),
                q.zero_point.len()
            )));
        }
        if let Some(s) = weight_scales.iter().find(|s| !(s.is_normal() && **s > 0.0)) {
            return Err(werr(format!(
                "weight scale {s} is not a positive normal number"
            )));
        }
        let weights: Vec<i8> = data.iter().map(|&b| b as i8).collect();
        let count = weights.iter().filter(|&&v| v == -128).count();
        if count > 0 {
            return Err(ImportError::WeightMinus128 {
                index: ctx.index,
                op: ctx.name(),
                tensor: wi,
                name: w.name.clone(),
                count,
                first: weights.iter().position(|&v| v == -128).unwrap_or(0),
            });
        }
        let bias = match ctx.op.inputs.get(2).copied().flatten() {
            None => vec![0; channels],
            Some(bi) => {
                let b = self.tensor(ctx, bi)?;
                let berr = |p: String| ctx.tensor_err(self.model, bi, p);
                let data = b
                    .data
                    .as_ref()
                    .ok_or_else(|| berr("the bias is not a constant".into()))?;
                if b.dtype != TensorType::Int32 {
                    return Err(berr(format!(
                        "the bias is {}; tinyconv takes an int32 bias",
                        b.dtype.name()
                    )));
                }
                if b.elements() != Some(channels) || data.len() != 4 * channels {
                    return Err(berr(format!(
                        "the bias has shape {:?}; expected {channels} values, one a channel",
                        b.shape
                    )));
                }
                data.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
        };
        Ok(WeightsSpec {
            weights,
            bias,
            weight_scales,
        })
    }

    /// The filter tensor's shape, checked against the op's.
    fn filter_shape(&self, ctx: Ctx) -> Result<Vec<usize>, ImportError> {
        let wi = self.input(ctx, 1)?;
        let w = self.tensor(ctx, wi)?;
        if w.shape.iter().any(|&d| d <= 0) {
            return Err(ctx.tensor_err(
                self.model,
                wi,
                format!(
                    "filter shape {:?} has an unknown or empty dimension",
                    w.shape
                ),
            ));
        }
        Ok(w.shape.iter().map(|&d| d as usize).collect())
    }

    #[allow(clippy::too_many_arguments)]
    fn window(
        &self,
        ctx: Ctx,
        input: Shape,
        output_tensor: usize,
        output: Shape,
        padding: Padding,
        (kh, kw): (i32, i32),
        (sh, sw): (i32, i32),
        out_c: usize,
    ) -> Result<Window, ImportError> {
        if kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 {
            return Err(ctx.err(format!(
                "kernel {kh}x{kw} and stride {sh}x{sw} must be positive"
            )));
        }
        let (kh, kw, sh, sw) = (kh as usize, kw as usize, sh as usize, sw as usize);
        let too_small = || {
            ctx.err(format!(
                "the {kh}x{kw} window does not fit the {input} input with VALID padding"
            ))
        };
        let (oh, top, bottom) = window_dim(padding, input.h, kh, sh).ok_or_else(too_small)?;
        let (ow, left, right) = window_dim(padding, input.w, kw, sw).ok_or_else(too_small)?;
        let expected = Shape::new(oh, ow, out_c);
        if expected != output {
            return Err(ctx.tensor_err(
                self.model,
                output_tensor,
                format!(
                    "the output is {output}, but a {kh}x{kw} window with stride {sh}x{sw} and \
                     {} padding over the {input} input gives {expected}",
                    padding_name(padding)
                ),
            ));
        }
        Ok(Window {
            kernel_h: kh,
            kernel_w: kw,
            stride_h: sh,
            stride_w: sw,
            pads: Pads {
                top,
                left,
                bottom,
                right,
            },
        })
    }

    fn run(mut self) -> Result<Imported, ImportError> {
        let model = self.model;
        let g = &model.graph;
        let (mut input, mut output) = match (g.inputs.as_slice(), g.outputs.as_slice()) {
            ([i], [o]) => (*i, *o),
            (i, o) => {
                return Err(ImportError::Graph {
                    problem: format!(
                        "has {} inputs and {} outputs; tinyconv imports graphs with exactly one \
                         of each",
                        i.len(),
                        o.len()
                    ),
                });
            }
        };
        let last = g.operators.len().checked_sub(1);
        if last.is_none() {
            return Err(ImportError::Graph {
                problem: "has no operators".into(),
            });
        }
        for (index, op) in g.operators.iter().enumerate() {
            let ctx = Ctx { index, op };
            match op.code {
                BuiltinOp::Quantize if index == 0 => {
                    let (i, o) = (self.input(ctx, 0)?, self.output(ctx)?);
                    let t = self.tensor(ctx, i)?;
                    if i != input || t.dtype != TensorType::Float32 {
                        return Err(ctx.err(
                            "QUANTIZE is dropped only as the first op from the float graph \
                             input to int8; this one is not (tinyconv does not requantize \
                             inside a graph)",
                        ));
                    }
                    self.quant(ctx, o)?;
                    input = o;
                    self.report.dropped.push(Dropped {
                        index,
                        op: op.code.name(),
                        reason: format!(
                            "the float input tensor {i} ({}) is quantized outside tinyconv; the \
                             graph starts at the int8 tensor {o} ({})",
                            t.name, g.tensors[o].name
                        ),
                    });
                }
                BuiltinOp::Dequantize if Some(index) == last => {
                    let (i, o) = (self.input(ctx, 0)?, self.output(ctx)?);
                    if o != output || self.tensor(ctx, o)?.dtype != TensorType::Float32 {
                        return Err(ctx.err(
                            "DEQUANTIZE is dropped only as the last op, from int8 to the float \
                             graph output; this one is not",
                        ));
                    }
                    self.quant(ctx, i)?;
                    output = i;
                    self.report.dropped.push(Dropped {
                        index,
                        op: op.code.name(),
                        reason: format!(
                            "the graph ends at the int8 tensor {i} ({}); dequantizing to the \
                             float output {o} is left to the caller",
                            g.tensors[i].name
                        ),
                    });
                }
                BuiltinOp::Quantize | BuiltinOp::Dequantize => {
                    return Err(ctx.err(format!(
                        "supported only as the {} op of the graph, where it is dropped; \
                         tinyconv imports {SUPPORTED_OPS}",
                        if op.code == BuiltinOp::Quantize {
                            "first"
                        } else {
                            "last"
                        }
                    )));
                }
                BuiltinOp::Conv2d | BuiltinOp::DepthwiseConv2d => self.conv(ctx)?,
                BuiltinOp::FullyConnected => self.dense(ctx)?,
                BuiltinOp::AveragePool2d | BuiltinOp::MaxPool2d => self.pool(ctx)?,
                BuiltinOp::Add => self.add(ctx)?,
                BuiltinOp::Reshape => self.reshape(ctx)?,
                BuiltinOp::Softmax => self.softmax(ctx)?,
                _ => {
                    return Err(ImportError::UnsupportedOp {
                        index,
                        op: op.code.name(),
                    });
                }
            }
            if !matches!(op.code, BuiltinOp::Quantize | BuiltinOp::Dequantize) {
                self.report.source_op.push(index);
                *self.report.op_counts.entry(op.code.name()).or_default() += 1;
            }
        }
        let graph_err = |what: &str, t: usize| ImportError::Graph {
            problem: format!(
                "{what} tensor {t} ({}) is not an input or output of any imported op",
                g.tensors.get(t).map_or("", |t| t.name.as_str())
            ),
        };
        let input = *self
            .map
            .get(&input)
            .ok_or_else(|| graph_err("input", input))?;
        let output = *self
            .map
            .get(&output)
            .ok_or_else(|| graph_err("output", output))?;
        Ok(Imported {
            spec: GraphSpec {
                rule: Rule::Tflite,
                tensors: self.tensors,
                input,
                output,
                pixel_scale: None,
                ops: self.ops,
            },
            report: self.report,
        })
    }

    fn conv(&mut self, ctx: Ctx) -> Result<(), ImportError> {
        self.expect_inputs(ctx, 2..=3)?;
        let depthwise = ctx.op.code == BuiltinOp::DepthwiseConv2d;
        let (padding, stride, activation, dilation) = match ctx.op.options {
            Options::Conv2d {
                padding,
                stride_w,
                stride_h,
                activation,
                dilation_w,
                dilation_h,
            } if !depthwise => (
                padding,
                (stride_h, stride_w),
                activation,
                (dilation_h, dilation_w),
            ),
            Options::DepthwiseConv2d {
                padding,
                stride_w,
                stride_h,
                depth_multiplier,
                activation,
                dilation_w,
                dilation_h,
            } if depthwise => {
                if depth_multiplier != 1 {
                    return Err(ctx.err(format!(
                        "depth multiplier {depth_multiplier}; tinyconv's depthwise conv takes \
                         multiplier 1 only (one filter a channel)"
                    )));
                }
                (
                    padding,
                    (stride_h, stride_w),
                    activation,
                    (dilation_h, dilation_w),
                )
            }
            ref other => return Err(ctx.err(format!("unexpected options {other:?}"))),
        };
        if dilation != (1, 1) {
            return Err(ctx.err(format!(
                "dilation {}x{}; tinyconv supports dilation 1 only",
                dilation.0, dilation.1
            )));
        }
        let (xi, oi) = (self.input(ctx, 0)?, self.output(ctx)?);
        let x = self.activation(ctx, xi)?;
        let o = self.activation(ctx, oi)?;
        let (in_shape, out) = (self.tensors[x].shape, self.tensors[o]);
        let f = self.filter_shape(ctx)?;
        let wi = self.input(ctx, 1)?;
        let (kh, kw, channels) = match (depthwise, f.as_slice()) {
            (false, [oc, kh, kw, ic]) => {
                if *ic != in_shape.c {
                    return Err(ctx.tensor_err(
                        self.model,
                        wi,
                        format!(
                            "the filter [O, KH, KW, I] = {f:?} takes {ic} input channels but the \
                             input has {} (grouped convolutions are not supported)",
                            in_shape.c
                        ),
                    ));
                }
                (*kh, *kw, *oc)
            }
            (true, [1, kh, kw, c]) => {
                if *c != in_shape.c || out.shape.c != in_shape.c {
                    return Err(ctx.tensor_err(
                        self.model,
                        wi,
                        format!(
                            "the filter [1, KH, KW, C] = {f:?} gives {c} output channels from \
                             {} input channels into {}; tinyconv's depthwise conv needs them \
                             all equal (depth multiplier 1)",
                            in_shape.c, out.shape.c
                        ),
                    ));
                }
                (*kh, *kw, *c)
            }
            _ => {
                return Err(ctx.tensor_err(
                    self.model,
                    wi,
                    format!(
                        "filter shape {f:?}; expected {}",
                        if depthwise {
                            "[1, KH, KW, C]"
                        } else {
                            "[O, KH, KW, I]"
                        }
                    ),
                ));
            }
        };
        let window = self.window(
            ctx,
            in_shape,
            oi,
            out.shape,
            padding,
            (kh as i32, kw as i32),
            stride,
            channels,
        )?;
        let clamp = self.clamp(ctx, activation, out.quant)?;
        let params = self.weights(ctx, channels, if depthwise { 3 } else { 0 })?;
        self.ops.push(OpSpec::Conv2d {
            input: x,
            output: o,
            window,
            depthwise,
            clamp,
            params,
        });
        Ok(())
    }

    fn dense(&mut self, ctx: Ctx) -> Result<(), ImportError> {
        self.expect_inputs(ctx, 2..=3)?;
        let activation = match ctx.op.options {
            Options::FullyConnected {
                activation,
                weights_format,
                keep_num_dims,
                asymmetric_quantize_inputs: _,
            } => {
                if weights_format != 0 {
                    return Err(ctx.err(format!(
                        "weights format {weights_format} (SHUFFLED4x16INT8); tinyconv takes the \
                         default [O, I] layout only"
                    )));
                }
                if keep_num_dims {
                    return Err(ctx.err(
                        "keep_num_dims is set; tinyconv's FULLY_CONNECTED flattens its input \
                         to one row",
                    ));
                }
                activation
            }
            ref other => return Err(ctx.err(format!("unexpected options {other:?}"))),
        };
        let (xi, oi) = (self.input(ctx, 0)?, self.output(ctx)?);
        let x = self.activation(ctx, xi)?;
        let o = self.activation(ctx, oi)?;
        let (in_shape, out) = (self.tensors[x].shape, self.tensors[o]);
        let f = self.filter_shape(ctx)?;
        let wi = self.input(ctx, 1)?;
        let [oc, ic] = f[..] else {
            return Err(ctx.tensor_err(
                self.model,
                wi,
                format!("weights shape {f:?}; expected [O, I]"),
            ));
        };
        if ic != in_shape.len() {
            return Err(ctx.tensor_err(
                self.model,
                wi,
                format!(
                    "the weights [O, I] = {f:?} take {ic} inputs but the input {in_shape} has {} \
                     values",
                    in_shape.len()
                ),
            ));
        }
        if out.shape != Shape::new(1, 1, oc) {
            return Err(ctx.tensor_err(
                self.model,
                oi,
                format!("the output is {}, expected 1x1x{oc}", out.shape),
            ));
        }
        let clamp = self.clamp(ctx, activation, out.quant)?;
        let params = self.weights(ctx, oc, 0)?;
        self.ops.push(OpSpec::Dense {
            input: x,
            output: o,
            clamp,
            params,
        });
        Ok(())
    }

    fn pool(&mut self, ctx: Ctx) -> Result<(), ImportError> {
        self.expect_inputs(ctx, 1..=1)?;
        let Options::Pool2d {
            padding,
            stride_w,
            stride_h,
            filter_w,
            filter_h,
            activation,
        } = ctx.op.options
        else {
            return Err(ctx.err(format!("unexpected options {:?}", ctx.op.options)));
        };
        let (xi, oi) = (self.input(ctx, 0)?, self.output(ctx)?);
        let x = self.activation(ctx, xi)?;
        let o = self.activation(ctx, oi)?;
        let (inp, out) = (self.tensors[x], self.tensors[o]);
        if inp.quant != out.quant {
            return Err(ctx.err(format!(
                "input quantization (scale {}, zero point {}) differs from the output's (scale \
                 {}, zero point {}); TFLite's int8 pools require them equal, and so does tinyconv",
                inp.quant.scale, inp.quant.zero_point, out.quant.scale, out.quant.zero_point
            )));
        }
        let window = self.window(
            ctx,
            inp.shape,
            oi,
            out.shape,
            padding,
            (filter_h, filter_w),
            (stride_h, stride_w),
            inp.shape.c,
        )?;
        let clamp = self.clamp(ctx, activation, out.quant)?;
        self.ops.push(if ctx.op.code == BuiltinOp::MaxPool2d {
            OpSpec::MaxPool {
                input: x,
                output: o,
                window,
                clamp,
            }
        } else {
            OpSpec::AvgPool {
                input: x,
                output: o,
                window,
                clamp,
            }
        });
        Ok(())
    }

    fn add(&mut self, ctx: Ctx) -> Result<(), ImportError> {
        self.expect_inputs(ctx, 2..=2)?;
        let Options::Add { activation, .. } = ctx.op.options else {
            return Err(ctx.err(format!("unexpected options {:?}", ctx.op.options)));
        };
        let (ai, bi, oi) = (self.input(ctx, 0)?, self.input(ctx, 1)?, self.output(ctx)?);
        let a = self.activation(ctx, ai)?;
        let b = self.activation(ctx, bi)?;
        let o = self.activation(ctx, oi)?;
        let (sa, sb, so) = (
            self.tensors[a].shape,
            self.tensors[b].shape,
            self.tensors[o].shape,
        );
        if sa != sb || sa != so {
            return Err(ctx.err(format!(
                "adds {sa} and {sb} into {so}; tinyconv adds two tensors of one shape (no \
                 broadcasting)"
            )));
        }
        let clamp = self.clamp(ctx, activation, self.tensors[o].quant)?;
        self.ops.push(OpSpec::Add {
            inputs: [a, b],
            output: o,
            clamp,
        });
        Ok(())
    }

    fn reshape(&mut self, ctx: Ctx) -> Result<(), ImportError> {
        self.expect_inputs(ctx, 1..=2)?;
        let (xi, oi) = (self.input(ctx, 0)?, self.output(ctx)?);
        let x = self.activation(ctx, xi)?;
        let o = self.activation(ctx, oi)?;
        let (inp, out) = (self.tensors[x], self.tensors[o]);
        if inp.shape.len() != out.shape.len() {
            return Err(ctx.err(format!(
                "reshapes {} values ({}) into {} ({})",
                inp.shape.len(),
                inp.shape,
                out.shape.len(),
                out.shape
            )));
        }
        if inp.quant != out.quant {
            return Err(ctx.err(format!(
                "the output quantization (scale {}, zero point {}) differs from the input's \
                 (scale {}, zero point {}); tinyconv's RESHAPE is a view of the same bytes",
                out.quant.scale, out.quant.zero_point, inp.quant.scale, inp.quant.zero_point
            )));
        }
        self.ops.push(OpSpec::Reshape {
            input: x,
            output: o,
        });
        Ok(())
    }

    fn softmax(&mut self, ctx: Ctx) -> Result<(), ImportError> {
        self.expect_inputs(ctx, 1..=1)?;
        let Options::Softmax { beta } = ctx.op.options else {
            return Err(ctx.err(format!("unexpected options {:?}", ctx.op.options)));
        };
        if !(beta.is_finite() && beta > 0.0) {
            return Err(ctx.err(format!("beta {beta} is not a positive finite number")));
        }
        let (xi, oi) = (self.input(ctx, 0)?, self.output(ctx)?);
        let x = self.activation(ctx, xi)?;
        let o = self.activation(ctx, oi)?;
        let (inp, out) = (self.tensors[x], self.tensors[o]);
        if inp.shape != out.shape {
            return Err(ctx.err(format!(
                "maps {} to {}; SOFTMAX keeps its shape",
                inp.shape, out.shape
            )));
        }
        if out.quant
            != (QuantParams {
                scale: 1.0 / 256.0,
                zero_point: -128,
            })
        {
            return Err(ctx.tensor_err(
                self.model,
                oi,
                format!(
                    "the output has scale {} and zero point {}; tinyconv's SOFTMAX writes scale \
                     1/256 and zero point -128 (as TFLite's int8 SOFTMAX requires)",
                    out.quant.scale, out.quant.zero_point
                ),
            ));
        }
        self.ops.push(OpSpec::Softmax {
            input: x,
            output: o,
            beta,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(scale: f32, zero_point: i8) -> QuantParams {
        QuantParams { scale, zero_point }
    }

    #[test]
    fn clamps_follow_calculate_activation_range_quantized() {
        let c = |a, s, z| clamp_for(a, q(s, z)).map(|c| (c.min, c.max));
        assert_eq!(c(Activation::None, 0.1, 5), Some((-128, 127)));
        assert_eq!(c(Activation::Relu, 0.1, -128), Some((-128, 127)));
        assert_eq!(c(Activation::Relu, 0.1, -3), Some((-3, 127)));
        // 6 / 0.1 = 60 (in f32, 59.999996 rounds to 60).
        assert_eq!(c(Activation::Relu6, 0.1, -128), Some((-128, -68)));
        // Halves round away from zero: 6 / 0.48 = 12.5 -> 13.
        assert_eq!(c(Activation::Relu6, 0.48, 0), Some((0, 13)));
        assert_eq!(c(Activation::Relu6, 0.01, 0), Some((0, 127)));
        assert_eq!(c(Activation::ReluN1To1, 0.25, 10), Some((6, 14)));
        assert_eq!(c(Activation::ReluN1To1, 0.001, 0), Some((-128, 127)));
        assert_eq!(c(Activation::Tanh, 0.1, 0), None);
        assert_eq!(c(Activation::SignBit, 0.1, 0), None);
    }

    #[test]
    fn same_padding_puts_the_odd_pixel_after() {
        // kws's first conv: 49x10 input, 10x4 kernel, stride 2.
        assert_eq!(window_dim(Padding::Same, 49, 10, 2), Some((25, 4, 5)));
        assert_eq!(window_dim(Padding::Same, 10, 4, 2), Some((5, 1, 1)));
        // vww's first conv: 96, 3x3, stride 2: out 48, total 1, all of it after.
        assert_eq!(window_dim(Padding::Same, 96, 3, 2), Some((48, 0, 1)));
        assert_eq!(window_dim(Padding::Same, 32, 3, 1), Some((32, 1, 1)));
        // A window smaller than its stride needs no padding.
        assert_eq!(window_dim(Padding::Same, 8, 1, 2), Some((4, 0, 0)));
        assert_eq!(window_dim(Padding::Valid, 25, 25, 1), Some((1, 0, 0)));
        assert_eq!(window_dim(Padding::Valid, 10, 3, 2), Some((4, 0, 0)));
        assert_eq!(window_dim(Padding::Valid, 2, 3, 1), None);
    }
}
