//! Int8 ONNX models in QDQ form, as onnxruntime's `quantize_static` writes them
//! (`QuantFormat.QDQ`, int8 activations, symmetric int8 weights per channel or per tensor,
//! int32 biases): taken as quantized, with the file's own scales, zero points, weights and
//! biases, under the runtime's `onnx` rule.
//!
//! Two steps:
//! 1. [`strip`] removes the QuantizeLinear / DequantizeLinear pairs: a `DequantizeLinear` of an
//!    int8 or int32 initializer becomes the float constant it stands for (its integers and
//!    scales kept in [`Annotations::consts`]); a `QuantizeLinear` of an activation followed by
//!    `DequantizeLinear`s with the same parameters becomes nothing, its parameters kept in
//!    [`Annotations::acts`] for the float value it quantized. What is left is a float ONNX graph
//!    that the float lowering ([`super::lower`]) reads as it reads any other.
//! 2. [`quantized_spec`] gives every tensor of the lowered graph the parameters the file stated
//!    for it, and every op the file's integers: weights are the file's int8 values (recovered
//!    exactly from their float reading and checked), biases the file's int32 values.
//!
//! What the source computes and what the runtime computes differ in one place: onnxruntime and
//! tract run a QDQ convolution as a float convolution of the dequantized values (onnxruntime's
//! CPU provider did not fuse this model into QLinearConv; its optimized graph keeps
//! `DequantizeLinear -> Conv -> QuantizeLinear`), the runtime as the integer convolution that
//! ONNX's QLinearConv defines. The two agree except where a value lands within f32 rounding of
//! a half; `tinyconv import` measures how often on the test images (docs/importing.md).

use std::collections::HashMap;

use tinyconv::QuantParams;
use tinyconv::graph::{GraphSpec, WeightsSpec};
use tract_onnx::pb::{GraphProto, NodeProto, TensorProto, tensor_proto::DataType};

use super::OnnxImportError;
use super::consts::{self, attr_i};
use super::lower::Trace;
use crate::fgraph::{FloatGraph, FloatOp};

/// Dynamically quantized ops: refused with what to do instead (the QOperator ones are rewritten
/// into QDQ before [`strip`]: `super::qoperator`).
const DYNAMIC: [&str; 3] = ["ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"];

const DYNAMIC_REFUSED: &str = "a dynamically quantized int8 ONNX model (ConvInteger, \
    MatMulInteger, DynamicQuantizeLinear): tinyconv imports int8 ONNX as onnxruntime's \
    quantize_static writes it (QuantFormat.QDQ or QuantFormat.QOperator, \
    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8), float ONNX (calibrated on \
    --data), and int8 TFLite";

/// One constant the file stores as integers: a `DequantizeLinear` of an initializer.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantConst {
    /// int8 weights or int32 biases, as stored.
    pub values: Vec<i64>,
    /// One scale, or one per index of the DequantizeLinear's axis.
    pub scales: Vec<f32>,
    /// "int8" or "int32".
    pub kind: &'static str,
}

/// The quantization the QDQ file stated, keyed by the value names of the stripped graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annotations {
    /// A float activation value -> the int8 parameters its QuantizeLinear gave it.
    pub acts: HashMap<String, QuantParams>,
    /// A float constant that was a `DequantizeLinear` of integers -> those integers.
    pub consts: HashMap<String, QuantConst>,
    /// The lowered graph's node `i` is the file's node `original_index[i]`.
    pub original_index: Vec<usize>,
    /// One line per Q/DQ node, for the import report: `(file index, name, op, what it became)`.
    pub removed: Vec<(usize, String, String, String)>,
}

/// Whether `op` is an op of quantized ONNX models (QDQ, QOperator or dynamic quantization).
pub fn is_quantized_op(op: &str) -> bool {
    matches!(op, "QuantizeLinear" | "DequantizeLinear")
        || DYNAMIC.contains(&op)
        || super::qoperator::is_qoperator_op(op)
}

/// Whether `graph` holds quantized ops (QDQ or any other form).
pub fn is_quantized(graph: &GraphProto) -> bool {
    graph.node.iter().any(|n| is_quantized_op(&n.op_type))
}

/// The integers of an int8, uint8 or int32 initializer.
fn integers(t: &TensorProto) -> Result<(Vec<usize>, Vec<i64>, i32), String> {
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let count: usize = dims.iter().product();
    let raw = &t.raw_data;
    let values: Vec<i64> = match DataType::try_from(t.data_type) {
        Ok(DataType::Int8) if !raw.is_empty() => raw.iter().map(|&b| b as i8 as i64).collect(),
        Ok(DataType::Uint8) if !raw.is_empty() => raw.iter().map(|&b| b as i64).collect(),
        Ok(DataType::Int32) if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
            .collect(),
        Ok(DataType::Int8 | DataType::Uint8 | DataType::Int32) => {
            t.int32_data.iter().map(|&v| v as i64).collect()
        }
        _ => {
            return Err(format!(
                "tensor `{}` has data type {}; a DequantizeLinear of a constant must read int8 \
                 weights or int32 biases",
                t.name, t.data_type
            ));
        }
    };
    if values.len() != count {
        return Err(format!(
            "tensor `{}` holds {} values but its dims {dims:?} need {count}",
            t.name,
            values.len()
        ));
    }
    Ok((dims, values, t.data_type))
}

/// Whether the zero-point input of a Q/DQ node makes it int8 (absent means uint8 in ONNX).
fn zero_point_type(inits: &HashMap<&str, &TensorProto>, node: &NodeProto) -> Option<i32> {
    let zp = node.input.get(2).filter(|s| !s.is_empty())?;
    inits.get(zp.as_str()).map(|t| t.data_type)
}

/// The per-tensor (scale, zero point) of a Q/DQ node on an activation.
fn activation_params(
    inits: &HashMap<&str, &TensorProto>,
    node: &NodeProto,
) -> Result<QuantParams, String> {
    let scale_name = node.input.get(1).ok_or("it has no scale input")?;
    let scale_t = inits
        .get(scale_name.as_str())
        .ok_or_else(|| format!("its scale `{scale_name}` is not a constant initializer"))?;
    let scale = consts::decode(scale_t)?;
    let scales = scale.f32s()?;
    if scales.len() != 1 {
        return Err(format!(
            "its scale has {} values: activations must be quantized per tensor",
            scales.len()
        ));
    }
    match zero_point_type(inits, node) {
        Some(t) if t == DataType::Int8 as i32 => {}
        Some(t) if t == DataType::Uint8 as i32 => {
            return Err(
                "its activations are uint8: quantize with activation_type=QuantType.QInt8 \
                 (the runtime's activations are int8)"
                    .into(),
            );
        }
        None => {
            return Err(
                "it has no zero point, which in ONNX means uint8 activations: quantize \
                 with activation_type=QuantType.QInt8"
                    .into(),
            );
        }
        Some(t) => return Err(format!("its zero point has data type {t}, not int8 (3)")),
    }
    let zp_name = &node.input[2];
    let (_, zp, _) = integers(inits[zp_name.as_str()])?;
    if zp.len() != 1 {
        return Err("its zero point must be one value (per-tensor)".into());
    }
    let scale = scales[0];
    if !(scale.is_normal() && scale > 0.0) {
        return Err(format!(
            "its scale {scale:e} is not a positive normal number"
        ));
    }
    Ok(QuantParams {
        scale,
        zero_point: zp[0] as i8,
    })
}

/// A `DequantizeLinear` of initializer `t`: the float constant and the integers behind it.
fn dequantize_const(
    inits: &HashMap<&str, &TensorProto>,
    node: &NodeProto,
    t: &TensorProto,
) -> Result<(TensorProto, QuantConst), String> {
    let (dims, values, dtype) = integers(t)?;
    let kind = match DataType::try_from(dtype) {
        Ok(DataType::Int8) => "int8",
        Ok(DataType::Int32) => "int32",
        _ => {
            return Err(format!(
                "constant `{}` is {}: weights must be int8 (weight_type=QuantType.QInt8) and \
                 biases int32",
                t.name,
                if dtype == DataType::Uint8 as i32 {
                    "uint8".to_string()
                } else {
                    format!("of data type {dtype}")
                }
            ));
        }
    };
    let scale_name = node.input.get(1).ok_or("it has no scale input")?;
    let scales = inits
        .get(scale_name.as_str())
        .ok_or_else(|| format!("its scale `{scale_name}` is not a constant initializer"))
        .and_then(|s| consts::decode(s))?
        .f32s()?
        .to_vec();
    if let Some(zp) = node.input.get(2).filter(|s| !s.is_empty()) {
        let zp_t = inits
            .get(zp.as_str())
            .ok_or_else(|| format!("its zero point `{zp}` is not a constant initializer"))?;
        let (_, zps, _) = integers(zp_t)?;
        if zps.iter().any(|&z| z != 0) {
            return Err(format!(
                "constant `{}` has a non-zero zero point: the runtime takes symmetric weights \
                 (quantize_static's default for int8 weights)",
                t.name
            ));
        }
    }
    let rank = dims.len() as i64;
    let axis = attr_i(node, "axis", 1);
    let axis = if axis < 0 { axis + rank } else { axis };
    let per_axis = if scales.len() == 1 {
        None
    } else if (0..rank).contains(&axis) && dims[axis as usize] == scales.len() {
        Some(axis as usize)
    } else {
        return Err(format!(
            "constant `{}` of dims {dims:?} has {} scales along axis {axis}",
            t.name,
            scales.len()
        ));
    };
    if let Some(bad) = scales.iter().find(|s| !(s.is_normal() && **s > 0.0)) {
        return Err(format!(
            "constant `{}` has scale {bad:e}, not a positive normal number",
            t.name
        ));
    }
    let inner: usize = per_axis.map_or(1, |a| dims[a + 1..].iter().product());
    let float: Vec<f32> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = per_axis.map_or(0, |a| i / inner % dims[a]);
            v as f32 * scales[ch]
        })
        .collect();
    let proto = TensorProto {
        name: node.output[0].clone(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        float_data: float,
        ..Default::default()
    };
    let q = QuantConst {
        values,
        scales,
        kind,
    };
    Ok((proto, q))
}

/// The float graph of a QDQ model, and the quantization it stated (see the module doc).
pub fn strip(graph: &GraphProto) -> Result<(GraphProto, Annotations), OnnxImportError> {
    let node_err = |index: usize, node: &NodeProto, problem: String| OnnxImportError::Node {
        index,
        name: node.name.clone(),
        op: node.op_type.clone(),
        problem,
    };
    if let Some((index, node)) =
        (graph.node.iter().enumerate()).find(|(_, n)| DYNAMIC.contains(&n.op_type.as_str()))
    {
        return Err(node_err(index, node, DYNAMIC_REFUSED.into()));
    }
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut ann = Annotations::default();
    // A QuantizeLinear's output -> (the float value it quantized, its parameters).
    let mut quantized: HashMap<String, (String, QuantParams)> = HashMap::new();
    // A DequantizeLinear's output -> the float value it stands for again.
    let mut alias: HashMap<String, String> = HashMap::new();
    let mut new_consts: Vec<TensorProto> = Vec::new();
    let mut nodes: Vec<NodeProto> = Vec::new();
    for (index, node) in graph.node.iter().enumerate() {
        let err = |problem: String| node_err(index, node, problem);
        let resolve = |name: &String| alias.get(name).cloned().unwrap_or_else(|| name.clone());
        match node.op_type.as_str() {
            "QuantizeLinear" => {
                let x = node.input.first().ok_or_else(|| err("no input".into()))?;
                if inits.contains_key(x.as_str()) {
                    return Err(err(format!(
                        "it quantizes the constant `{x}`: store the constant as integers \
                         behind a DequantizeLinear, as quantize_static does"
                    )));
                }
                let params = activation_params(&inits, node).map_err(err)?;
                let source = resolve(x);
                if let Some(prev) = ann.acts.get(&source)
                    && *prev != params
                {
                    return Err(err(format!(
                        "`{source}` is quantized twice, with scale {:e} / zero point {} and \
                         scale {:e} / zero point {}: one tensor has one quantization here",
                        prev.scale, prev.zero_point, params.scale, params.zero_point
                    )));
                }
                ann.acts.insert(source.clone(), params);
                quantized.insert(node.output[0].clone(), (source.clone(), params));
                ann.removed.push((
                    index,
                    node.name.clone(),
                    node.op_type.clone(),
                    format!(
                        "the int8 quantization of `{source}` (scale {:e}, zero point {})",
                        params.scale, params.zero_point
                    ),
                ));
            }
            "DequantizeLinear" => {
                let x = node.input.first().ok_or_else(|| err("no input".into()))?;
                let became = if let Some(t) = inits.get(x.as_str()) {
                    let (proto, q) = dequantize_const(&inits, node, t).map_err(err)?;
                    let line = format!(
                        "{} {} `{x}` ({} values, {} scale{})",
                        q.kind,
                        if q.kind == "int8" { "weights" } else { "bias" },
                        q.values.len(),
                        q.scales.len(),
                        if q.scales.len() == 1 { "" } else { "s" }
                    );
                    ann.consts.insert(node.output[0].clone(), q);
                    new_consts.push(proto);
                    line
                } else if let Some((source, params)) = quantized.get(x) {
                    let own = activation_params(&inits, node).map_err(err)?;
                    if own != *params {
                        return Err(err(format!(
                            "it dequantizes `{x}` with scale {:e} / zero point {}, but its \
                             QuantizeLinear used scale {:e} / zero point {}",
                            own.scale, own.zero_point, params.scale, params.zero_point
                        )));
                    }
                    alias.insert(node.output[0].clone(), source.clone());
                    format!("`{source}` again (the int8 tensor read as float)")
                } else {
                    return Err(err(format!(
                        "it dequantizes `{x}`, which no QuantizeLinear wrote and is no \
                         constant: the model must take a float input and quantize it first"
                    )));
                };
                ann.removed
                    .push((index, node.name.clone(), node.op_type.clone(), became));
            }
            _ => {
                if let Some(q) = node.input.iter().find(|i| quantized.contains_key(*i)) {
                    return Err(err(format!(
                        "it reads `{q}`, the int8 output of a QuantizeLinear, directly: \
                         every op of a QDQ model reads DequantizeLinear outputs"
                    )));
                }
                let mut n = node.clone();
                for i in n.input.iter_mut() {
                    *i = resolve(i);
                }
                nodes.push(n);
                ann.original_index.push(index);
            }
        }
    }
    let mut out = graph.clone();
    for o in out.output.iter_mut() {
        if quantized.contains_key(&o.name) {
            return Err(OnnxImportError::Output {
                name: o.name.clone(),
                problem: "the model outputs int8 (a QuantizeLinear): end it with the \
                          DequantizeLinear quantize_static writes, so it outputs float"
                    .into(),
            });
        }
        if let Some(a) = alias.get(&o.name) {
            o.name = a.clone();
        }
    }
    // Keep the initializers the remaining nodes read (shapes, float constants); the integers,
    // scales and zero points now live in the annotations.
    let read: std::collections::HashSet<&String> =
        nodes.iter().flat_map(|n| n.input.iter()).collect();
    out.initializer = graph
        .initializer
        .iter()
        .filter(|t| read.contains(&t.name))
        .cloned()
        .chain(new_consts.into_iter().filter(|t| read.contains(&t.name)))
        .collect();
    out.node = nodes;
    Ok((out, ann))
}

/// The folds the float lowering may do in a QDQ model: those that keep every value (an
/// activation into its op, a flatten's weight permutation). Batch norm or a constant Mul/Add
/// would change the file's integers.
fn value_changing_fold(line: &str) -> bool {
    line.starts_with("BatchNormalization") || line.contains("by a constant folded")
}

/// The int8 weights of `weights` (a float reading of the file's integers), per output channel
/// `channel_of(i)`, with the file's scales; an error unless each is an int8 value exactly.
fn recover_weights(
    weights: &[f32],
    scales: &[f32],
    channel_of: impl Fn(usize) -> usize,
) -> Result<Vec<i8>, String> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let s = scales[channel_of(i)];
            let q = (w as f64 / s as f64).round_ties_even();
            if !(-127.0..=127.0).contains(&q) || q as f32 * s != w {
                return Err(format!(
                    "weight {i} ({w:e}) is not an int8 value in -127..=127 of scale {s:e}"
                ));
            }
            Ok(q as i8)
        })
        .collect()
}

/// The file's int8 graph: every tensor with its stated quantization, every op with the file's
/// integers, under the `onnx` rule. `to_file` maps a node of the graph [`strip`] read to the
/// file's (`file`), for errors.
pub fn quantized_spec(
    graph: &FloatGraph,
    trace: &Trace,
    ann: &Annotations,
    to_file: &dyn Fn(usize) -> usize,
    file: &GraphProto,
    input_name: &str,
    folded: &[String],
    lowered: &GraphProto,
    dropped_softmax_output: Option<&str>,
) -> Result<GraphSpec, OnnxImportError> {
    if let Some(line) = folded.iter().find(|l| value_changing_fold(l)) {
        return Err(OnnxImportError::Quantized {
            problem: format!(
                "{line}: folding would change the quantized model's integers; quantize the \
                 model with its batch norms and constant Mul/Add already folded into the \
                 convolutions (onnxruntime's quant_pre_process)"
            ),
        });
    }
    let node_err = |op: usize, problem: String| {
        let lowered_index = trace.op_sources[op].node;
        let index = to_file(ann.original_index[lowered_index]);
        let node = file.node.get(index).unwrap_or(&lowered.node[lowered_index]);
        OnnxImportError::Node {
            index,
            name: node.name.clone(),
            op: node.op_type.clone(),
            problem,
        }
    };
    let mut quant: Vec<Option<QuantParams>> = vec![None; graph.tensors.len()];
    let mut names: Vec<Option<&str>> = vec![None; graph.tensors.len()];
    for (name, p) in &ann.acts {
        // A dropped final Softmax's output is the logits' tensor; its quantization (1/256) is
        // the softmax's, not the logits'.
        if Some(name.as_str()) == dropped_softmax_output {
            continue;
        }
        let Some(&t) = trace.tensor_of.get(name) else {
            continue; // a value the lowering turned into a constant (none in practice)
        };
        if let Some(q) = quant[t]
            && q != *p
        {
            return Err(OnnxImportError::Output {
                name: name.clone(),
                problem: format!(
                    "`{name}` and `{}` are one tensor of the graph but are quantized \
                     differently (scale {:e} / zero point {} against {:e} / {}); an op between \
                     them has no int8 form here (e.g. a Relu after its QuantizeLinear, or a \
                     Softmax)",
                    names[t].unwrap_or("?"),
                    p.scale,
                    p.zero_point,
                    q.scale,
                    q.zero_point
                ),
            });
        }
        quant[t] = Some(*p);
        names[t] = Some(name);
    }
    if quant[graph.input].is_none() {
        return Err(OnnxImportError::Input {
            name: input_name.into(),
            problem: "no QuantizeLinear quantizes it: a QDQ model starts by quantizing its \
                      float input"
                .into(),
        });
    }
    let mut ops = Vec::with_capacity(graph.ops.len());
    for (k, op) in graph.ops.iter().enumerate() {
        let x = quant[op.inputs()[0]].expect("inputs are quantized before they are read");
        let stated = quant[op.output()];
        // Max pool and reshape keep their input's quantization in the runtime (and in
        // quantize_static); an average pool may requantize under the onnx rule.
        let keeps_input = matches!(op, FloatOp::MaxPool { .. } | FloatOp::Reshape { .. });
        let passes_through = keeps_input || matches!(op, FloatOp::AvgPool { .. });
        let y = match (stated, passes_through) {
            (Some(y), true) if keeps_input && y != x => {
                return Err(node_err(
                    k,
                    format!(
                        "its output is quantized with scale {:e} / zero point {}, its input with \
                         {:e} / {}: the runtime's {} keeps its input's quantization (as \
                         quantize_static writes it)",
                        y.scale,
                        y.zero_point,
                        x.scale,
                        x.zero_point,
                        op.name()
                    ),
                ));
            }
            (Some(y), _) => y,
            (None, true) => x,
            (None, false) => {
                return Err(node_err(
                    k,
                    format!(
                        "its output ({}) has no QuantizeLinear: a float op inside an int8 model; \
                         quantize every op (quantize_static's op_types_to_quantize)",
                        op.name()
                    ),
                ));
            }
        };
        quant[op.output()] = Some(y);
        let spec = crate::fgraph::quantize::op_spec(op, y, |weights, bias, depthwise| {
            let source = &trace.op_sources[k];
            let channels = bias.len();
            let w = source
                .weights
                .as_ref()
                .and_then(|n| ann.consts.get(n))
                .filter(|q| q.kind == "int8")
                .ok_or_else(|| {
                    node_err(
                        k,
                        "its weights are no DequantizeLinear of int8 constants: a float op \
                         inside an int8 model"
                            .into(),
                    )
                })?;
            let weight_scales = match w.scales.len() {
                1 => vec![w.scales[0]; channels],
                n if n == channels => w.scales.clone(),
                n => {
                    return Err(node_err(
                        k,
                        format!("its weights have {n} scales for {channels} output channels"),
                    ));
                }
            };
            // Output channel of weight i: depthwise HWC, conv OHWI and dense [out][in].
            let per = weights.len() / channels.max(1);
            let channel_of = |i: usize| if depthwise { i % channels } else { i / per };
            let weights =
                recover_weights(weights, &weight_scales, channel_of).map_err(|p| node_err(k, p))?;
            // The file's int32 bias when it is at the scale the runtime assumes, s_in * s_w[c]
            // (quantize_static writes exactly that product); otherwise its float value in
            // those units.
            let file_bias = source
                .bias
                .as_ref()
                .and_then(|n| ann.consts.get(n))
                .filter(|q| {
                    q.kind == "int32"
                        && q.values.len() == channels
                        && (0..channels).all(|c| {
                            q.scales[if q.scales.len() == 1 { 0 } else { c }]
                                == x.scale * weight_scales[c]
                        })
                });
            let bias = match file_bias {
                Some(q) => q.values.iter().map(|&v| v as i32).collect(),
                None => crate::quantize::quantize_bias(bias, x.scale, &weight_scales),
            };
            Ok(WeightsSpec {
                weights,
                bias,
                weight_scales,
            })
        })?;
        ops.push(spec);
    }
    Ok(crate::fgraph::quantize::graph_spec(graph, &quant, ops))
}

/// `bytes` with its graph output moved to the value a final Softmax reads (through the Q/DQ
/// pair after it), so that it outputs the logits the importer keeps; `None` if the model does
/// not end in a Softmax. tract-onnx 0.23.9 computes a QDQ model's final int8 Softmax
/// differently from onnxruntime (every probability of `keras_resnet.qdq.onnx` differs) while
/// agreeing on everything before it, so an int8 source is compared there.
pub fn cut_before_final_softmax(bytes: &[u8]) -> Option<Vec<u8>> {
    use prost::Message;
    let mut model = tract_onnx::pb::ModelProto::decode(bytes).ok()?;
    let graph = model.graph.as_mut()?;
    let producer = |name: &str| {
        graph
            .node
            .iter()
            .find(|n| n.output.iter().any(|o| o == name))
    };
    let mut value = graph.output.first()?.name.clone();
    loop {
        let node = producer(&value)?;
        match node.op_type.as_str() {
            "DequantizeLinear" | "QuantizeLinear" | "Identity" => {
                value = node.input.first()?.clone()
            }
            "Softmax" => {
                value = node.input.first()?.clone();
                break;
            }
            _ => return None,
        }
    }
    graph.output[0].name = value;
    Some(model.encode_to_vec())
}
