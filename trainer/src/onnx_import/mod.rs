//! Import of float ONNX models, as PyTorch's `torch.onnx.export` and Keras via tf2onnx write
//! them, into a [`FloatGraph`] (NHWC, batch norm folded), which [`crate::fgraph::quantize`]
//! then calibrates and quantizes like a model the trainer made; and of int8 ONNX models in QDQ
//! form (onnxruntime's `quantize_static`), whose own quantization becomes the int8 graph
//! ([`qdq`]).
//!
//! The model is folded for its one fixed input shape (a dynamic batch dim becomes 1): shape
//! arithmetic becomes constants, Transposes become a tracked axis order, batch norm and
//! constant Mul/Add go into the convolution before them, activations into the op before them.
//! Anything else is refused with [`OnnxImportError::Node`], which names the node.

mod consts;
mod fold;
mod lower;
pub mod qdq;
pub mod qoperator;

use crate::fgraph::{FloatGraph, FloatGraphError};
use prost::Message;

/// The ONNX ops the importer maps (with the conditions in `docs/importing.md`).
pub const SUPPORTED_OPS: &str = "Conv (group 1 or depthwise), BatchNormalization / Mul / Add by a \
constant (folded into the Conv or Gemm before), Gemm, MatMul, Relu, Clip (0..6 or 0..inf), \
MaxPool, AveragePool, GlobalAveragePool, ReduceMean (over H and W), Add (two activations), \
Flatten, Reshape, Squeeze, Transpose, Identity, Dropout, a final Softmax, Constant, Shape, and \
Gather / Unsqueeze / Concat / Cast / CastLike / Slice / Expand on constants";

/// The default-domain opsets accepted. 13..=18 is the contract; 19..=21 change none of the
/// ops above for float tensors (they add types and attributes this importer refuses), and
/// PyTorch's dynamo exporter writes 18 or 20.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// How the ONNX model's 4-D input is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputLayout {
    /// `[N, C, H, W]` (PyTorch).
    Nchw,
    /// `[N, H, W, C]` (Keras via tf2onnx, whose first node transposes it to NCHW).
    Nhwc,
    /// `[N, F]`: a feature vector.
    Features,
}

/// What became of one ONNX node.
#[derive(Clone, Debug, PartialEq)]
pub struct MappedNode {
    pub index: usize,
    pub name: String,
    pub op_type: String,
    /// e.g. "conv2d (op 0)", "folded into op 0 (conv2d)", "constant", "layout".
    pub became: String,
}

/// What the importer did, for the import report.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportReport {
    pub producer: String,
    pub opset: i64,
    pub input_name: String,
    /// The input's ONNX dims with the batch fixed to 1.
    pub input_shape: Vec<usize>,
    pub input_layout: InputLayout,
    /// Whether the batch dim was dynamic (fixed to 1).
    pub dynamic_batch: bool,
    pub output_name: String,
    pub nodes: Vec<MappedNode>,
    /// One line per fold: batch norms, constant Mul/Add, activations, weight permutations.
    pub folded: Vec<String>,
    /// A final Softmax was dropped: the graph outputs logits (argmax unchanged).
    pub dropped_softmax: bool,
}

impl ImportReport {
    /// The report as text lines, for the CLI's import report.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![
            format!("producer: {} (opset {})", self.producer, self.opset),
            format!(
                "input `{}`: {:?} {:?}{}",
                self.input_name,
                self.input_shape,
                self.input_layout,
                if self.dynamic_batch {
                    " (dynamic batch fixed to 1)"
                } else {
                    ""
                }
            ),
            format!(
                "output `{}`{}",
                self.output_name,
                if self.dropped_softmax {
                    " (final Softmax dropped: logits)"
                } else {
                    ""
                }
            ),
        ];
        v.extend(
            self.nodes
                .iter()
                .map(|n| format!("node {} `{}` {}: {}", n.index, n.name, n.op_type, n.became)),
        );
        v.extend(self.folded.iter().cloned());
        v
    }
}

/// An ONNX model read into a [`FloatGraph`].
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedOnnx {
    /// `pixel_scale` is `None`: the file does not say what its input values are; the caller
    /// sets it (e.g. `Some(1/255)` for inputs `pixel / 255`). For an int8 model, its float
    /// reading (the dequantized weights).
    pub graph: FloatGraph,
    pub report: ImportReport,
    /// An int8 (QDQ) model's own quantization as the runtime's graph (`pixel_scale` `None`
    /// here too); `None` for a float model.
    pub quantized: Option<tinyconv::graph::GraphSpec>,
}

/// Why a model is not imported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnnxImportError {
    #[error("not an ONNX model (protobuf decode failed: {0}); give a .onnx file")]
    Decode(String),
    #[error("the ONNX model has no graph")]
    NoGraph,
    #[error(
        "the model imports default-domain opset {found:?}; supported are opsets 13 to 21: re-export with opset_version=17 (torch.onnx.export) or --opset 17 (tf2onnx)"
    )]
    Opset { found: Option<i64> },
    #[error("the graph has {count} inputs besides its initializers; exactly one is supported")]
    InputCount { count: usize },
    #[error("the graph has {count} outputs; exactly one is supported")]
    OutputCount { count: usize },
    #[error("input `{name}`: {problem}")]
    Input { name: String, problem: String },
    #[error("output `{name}`: {problem}")]
    Output { name: String, problem: String },
    #[error("node {index} `{name}` ({op}): {problem}. Supported: {SUPPORTED_OPS}")]
    Node {
        index: usize,
        name: String,
        op: String,
        problem: String,
    },
    #[error("the int8 model cannot be taken as quantized: {problem}")]
    Quantized { problem: String },
    #[error("the imported float graph is invalid ({0}); please report this model")]
    Graph(#[from] FloatGraphError),
}

/// Reads a float ONNX model into a [`FloatGraph`] with a report of what was mapped and folded;
/// an int8 QDQ model also into its int8 graph ([`ImportedOnnx::quantized`]).
pub fn read_onnx(bytes: &[u8]) -> Result<ImportedOnnx, OnnxImportError> {
    let model = tract_onnx::pb::ModelProto::decode(bytes)
        .map_err(|e| OnnxImportError::Decode(e.to_string()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version);
    match opset {
        Some(v) if OPSETS.contains(&v) => {}
        found => return Err(OnnxImportError::Opset { found }),
    }
    let graph = model.graph.as_ref().ok_or(OnnxImportError::NoGraph)?;
    let producer = format!("{} {}", model.producer_name, model.producer_version)
        .trim()
        .to_string();
    if !qdq::is_quantized(graph) {
        let (graph, mut report, _) = lower::lower(graph)?;
        crate::fgraph::validate(&graph)?;
        report.producer = producer;
        report.opset = opset.unwrap_or_default();
        return Ok(ImportedOnnx {
            graph,
            report,
            quantized: None,
        });
    }
    // QOperator nodes become their QDQ form first; `origin` maps its nodes to the file's.
    let (qdq_graph, origin) = if qoperator::has_qoperator(graph) {
        let (g, o) = qoperator::to_qdq(graph)?;
        (std::borrow::Cow::Owned(g), Some(o))
    } else {
        (std::borrow::Cow::Borrowed(graph), None)
    };
    let to_file = |i: usize| {
        origin
            .as_ref()
            .map_or(i, |o| o.get(i).copied().unwrap_or(i))
    };
    // An error names the file's node.
    let at_file = |index: usize, problem: String| {
        let node = &graph.node[index.min(graph.node.len().saturating_sub(1))];
        OnnxImportError::Node {
            index,
            name: node.name.clone(),
            op: node.op_type.clone(),
            problem,
        }
    };
    let (stripped, ann) = qdq::strip(&qdq_graph).map_err(|e| match e {
        OnnxImportError::Node { index, problem, .. } => at_file(to_file(index), problem),
        other => other,
    })?;
    // The lowering's node indices are the stripped graph's: report the file's.
    let original = |i: usize| to_file(ann.original_index.get(i).copied().unwrap_or(i));
    let (float, mut report, trace) = lower::lower(&stripped).map_err(|e| match e {
        OnnxImportError::Node { index, problem, .. } => at_file(original(index), problem),
        other => other,
    })?;
    crate::fgraph::validate(&float)?;
    let spec = qdq::quantized_spec(
        &float,
        &trace,
        &ann,
        &to_file,
        graph,
        &report.input_name,
        &report.folded,
        &stripped,
        (report.dropped_softmax)
            .then(|| stripped.output.first().map(|o| o.name.as_str()))
            .flatten(),
    )?;
    for n in report.nodes.iter_mut() {
        n.index = original(n.index);
    }
    report.nodes.extend(
        ann.removed
            .iter()
            .map(|(index, name, op, became)| MappedNode {
                index: to_file(*index),
                name: name.clone(),
                op_type: op.clone(),
                became: became.clone(),
            }),
    );
    report.nodes.sort_by_key(|n| n.index);
    if origin.is_some() {
        // One line per file node: what its QDQ form's nodes became.
        let mut merged: Vec<MappedNode> = Vec::new();
        for n in report.nodes.drain(..) {
            match merged.last_mut() {
                Some(m) if m.index == n.index => m.became = format!("{}; {}", m.became, n.became),
                _ => {
                    let file = &graph.node[n.index];
                    merged.push(MappedNode {
                        name: file.name.clone(),
                        op_type: file.op_type.clone(),
                        ..n
                    });
                }
            }
        }
        report.nodes = merged;
    }
    // The stripped graph outputs the value the last DequantizeLinear stood for: name the file's.
    if let Some(o) = graph.output.first() {
        report.output_name = o.name.clone();
    }
    report.producer = producer;
    report.opset = opset.unwrap_or_default();
    Ok(ImportedOnnx {
        graph: float,
        report,
        quantized: Some(spec),
    })
}

/// [`read_onnx`] of a float model only: an int8 model is refused, naming its first quantized
/// node.
pub fn read_float_onnx(bytes: &[u8]) -> Result<ImportedOnnx, OnnxImportError> {
    let model = tract_onnx::pb::ModelProto::decode(bytes)
        .map_err(|e| OnnxImportError::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or(OnnxImportError::NoGraph)?;
    if let Some((index, node)) =
        (graph.node.iter().enumerate()).find(|(_, n)| qdq::is_quantized_op(&n.op_type))
    {
        return Err(OnnxImportError::Node {
            index,
            name: node.name.clone(),
            op: node.op_type.clone(),
            problem: "an int8 model where a float model is needed: use read_onnx".into(),
        });
    }
    read_onnx(bytes)
}
