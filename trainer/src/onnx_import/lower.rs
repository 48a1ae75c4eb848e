//! The lowering pass: walks the ONNX nodes in order (ONNX requires a topological order),
//! keeping each value either a constant or an activation with its ONNX axis order, and emits
//! [`FloatOp`]s.

use std::collections::HashMap;

use tract_onnx::pb::{GraphProto, NodeProto, ValueInfoProto, type_proto};

use super::consts::{self, Const, attr_f, attr_i, attr_ints, attr_s};
use super::fold::{self, FOLDABLE, axis_index, reshape_dims, squeeze_dims};
use super::{ImportReport, InputLayout, MappedNode, OnnxImportError};
use crate::fgraph::{Act, FloatGraph, FloatOp, Pads, Shape, Window};

/// Why a quantized ONNX op is refused here: `read_onnx` takes int8 models through
/// `qoperator` and `qdq` first, so only a graph given to the lowering directly can hold one.
const INT8_ONNX: &str = "a quantized op in a graph lowered as float: read int8 ONNX models \
    (QDQ or QOperator form) with read_onnx, which takes their own quantization";

/// What an ONNX axis of a 4-D activation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Axis {
    N,
    C,
    H,
    W,
}

const NCHW: [Axis; 4] = [Axis::N, Axis::C, Axis::H, Axis::W];
const NHWC: [Axis; 4] = [Axis::N, Axis::H, Axis::W, Axis::C];

/// How an ONNX activation's values sit in its FloatGraph tensor (always NHWC).
#[derive(Clone, Debug, PartialEq)]
enum Layout {
    /// A 4-D tensor; `axes[i]` is what ONNX axis `i` is.
    Spatial([Axis; 4]),
    /// `[1, F]` (or `[F]` when `rank1`): ONNX feature `j` is element `perm[j]` of the tensor
    /// (`None`: the same index, NHWC order).
    Flat {
        perm: Option<Vec<usize>>,
        rank1: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
struct Activation {
    tensor: usize,
    layout: Layout,
    /// Written by a conv, dense or add with no activation yet, and read by nothing else: a
    /// following BatchNormalization, Mul/Add by a constant, Relu or Clip may fold into it.
    open_op: Option<usize>,
    /// Past a Softmax that was dropped: nothing but the graph output may read it.
    after_softmax: bool,
}

#[derive(Clone, Debug)]
enum Value {
    Const(Const),
    Act(Activation),
}

struct Lowering {
    values: HashMap<String, Value>,
    uses: HashMap<String, usize>,
    tensors: Vec<Shape>,
    ops: Vec<FloatOp>,
    folded: Vec<String>,
    dropped_softmax: bool,
    /// Per op: the ONNX node that emitted it, and that node's inputs 1 and 2 (a Conv's or
    /// Gemm's weights and bias).
    op_sources: Vec<OpSource>,
    /// The node being lowered.
    node_index: usize,
}

/// Where a [`FloatOp`] came from: what the int8 ONNX importer needs to find the quantization
/// of its weights and bias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpSource {
    /// The emitting node's index in the lowered graph.
    pub node: usize,
    pub weights: Option<String>,
    pub bias: Option<String>,
}

/// What the lowering did besides the graph: which tensor every ONNX activation value became,
/// and where every op came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// ONNX value name -> FloatGraph tensor (values folded into an op share its tensor).
    pub tensor_of: HashMap<String, usize>,
    pub op_sources: Vec<OpSource>,
}

type NodeResult = Result<String, String>;

/// Lowers `graph`; the report's producer and opset are filled by the caller.
pub fn lower(graph: &GraphProto) -> Result<(FloatGraph, ImportReport, Trace), OnnxImportError> {
    // Before the initializers: an int8 model's int8 weights would otherwise be refused as a
    // tensor type, which does not tell the user what the model is.
    if let Some((index, node)) =
        (graph.node.iter().enumerate()).find(|(_, n)| super::qdq::is_quantized_op(&n.op_type))
    {
        return Err(OnnxImportError::Node {
            index,
            name: node.name.clone(),
            op: node.op_type.clone(),
            problem: INT8_ONNX.into(),
        });
    }
    let mut values = HashMap::new();
    for init in &graph.initializer {
        let c = consts::decode(init).map_err(|problem| OnnxImportError::Input {
            name: init.name.clone(),
            problem,
        })?;
        values.insert(init.name.clone(), Value::Const(c));
    }
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !values.contains_key(&i.name))
        .collect();
    if inputs.len() != 1 {
        return Err(OnnxImportError::InputCount {
            count: inputs.len(),
        });
    }
    if graph.output.len() != 1 {
        return Err(OnnxImportError::OutputCount {
            count: graph.output.len(),
        });
    }
    let input = inputs[0];
    let (dims, dynamic_batch) = input_dims(input)?;
    let mut uses: HashMap<String, usize> = HashMap::new();
    for n in &graph.node {
        for (k, i) in n.input.iter().enumerate().filter(|(_, i)| !i.is_empty()) {
            if !reads_only_type_or_shape(n, k) {
                *uses.entry(i.clone()).or_default() += 1;
            }
        }
    }
    for o in &graph.output {
        *uses.entry(o.name.clone()).or_default() += 1;
    }
    let first_is_nhwc_transpose = input_is_nhwc(graph, &input.name, &dims);
    let (shape, layout, input_layout) = match dims.as_slice() {
        [1, c, h, w] if !first_is_nhwc_transpose => (
            Shape::new(*h, *w, *c),
            Layout::Spatial(NCHW),
            InputLayout::Nchw,
        ),
        [1, h, w, c] => (
            Shape::new(*h, *w, *c),
            Layout::Spatial(NHWC),
            InputLayout::Nhwc,
        ),
        [1, f] => (
            Shape::new(1, 1, *f),
            Layout::Flat {
                perm: None,
                rank1: false,
            },
            InputLayout::Features,
        ),
        _ => {
            return Err(OnnxImportError::Input {
                name: input.name.clone(),
                problem: format!(
                    "shape {dims:?}: supported are [N, C, H, W], [N, H, W, C] and [N, F] with N = 1"
                ),
            });
        }
    };
    let mut l = Lowering {
        values,
        uses,
        tensors: vec![shape],
        ops: vec![],
        folded: vec![],
        dropped_softmax: false,
        op_sources: vec![],
        node_index: 0,
    };
    l.values.insert(
        input.name.clone(),
        Value::Act(Activation {
            tensor: 0,
            layout,
            open_op: None,
            after_softmax: false,
        }),
    );
    let mut nodes = Vec::new();
    for (index, node) in graph.node.iter().enumerate() {
        l.node_index = index;
        let err = |problem: String| OnnxImportError::Node {
            index,
            name: node.name.clone(),
            op: node.op_type.clone(),
            problem,
        };
        let became = l.node(node).map_err(err)?;
        nodes.push(MappedNode {
            index,
            name: node.name.clone(),
            op_type: node.op_type.clone(),
            became,
        });
    }
    let out_name = &graph.output[0].name;
    let out_err = |problem: &str| OnnxImportError::Output {
        name: out_name.clone(),
        problem: problem.to_string(),
    };
    let out = match l.values.get(out_name) {
        Some(Value::Act(a)) => a.clone(),
        Some(Value::Const(_)) => return Err(out_err("it is a constant")),
        None => return Err(out_err("no node writes it")),
    };
    let t = l.tensors[out.tensor];
    let ok_order = match &out.layout {
        Layout::Flat { perm, .. } => perm.is_none(),
        Layout::Spatial(axes) => *axes == NHWC || t.h * t.w == 1 || t.c == 1,
    };
    if !ok_order {
        return Err(out_err(
            "its values are in NCHW order, which the NHWC graph cannot output: end the model with a flatten into a Gemm/MatMul, or global pooling",
        ));
    }
    let trace = Trace {
        tensor_of: (l.values.iter())
            .filter_map(|(name, v)| match v {
                Value::Act(a) => Some((name.clone(), a.tensor)),
                Value::Const(_) => None,
            })
            .collect(),
        op_sources: l.op_sources,
    };
    let graph = FloatGraph {
        tensors: l.tensors,
        input: 0,
        output: out.tensor,
        ops: l.ops,
        pixel_scale: None,
    };
    let report = ImportReport {
        producer: String::new(),
        opset: 0,
        input_name: input.name.clone(),
        input_shape: dims,
        input_layout,
        dynamic_batch,
        output_name: out_name.clone(),
        nodes,
        folded: l.folded,
        dropped_softmax: l.dropped_softmax,
    };
    Ok((graph, report, trace))
}

/// Whether input `k` of `n` is read only for its type or shape (CastLike's target, Shape's
/// input: PyTorch's exporter writes both against activations), which stay fixed when an op
/// folds into its producer, so such a read must not keep the producer from folding.
fn reads_only_type_or_shape(n: &NodeProto, k: usize) -> bool {
    matches!((n.op_type.as_str(), k), ("CastLike", 1) | ("Shape", 0))
}

/// Whether the graph reads its 4-D input as NHWC: its first consumer transposes it to NCHW
/// (tf2onnx), or, with one channel, reshapes `[1, H, W, 1]` to `[1, 1, H, W]` (tf2onnx writes
/// that Transpose as a Reshape when C = 1).
fn input_is_nhwc(graph: &GraphProto, input: &str, dims: &[usize]) -> bool {
    let Some(n) = graph
        .node
        .iter()
        .find(|n| n.input.iter().any(|i| i == input))
    else {
        return false;
    };
    if n.input.first().map(String::as_str) != Some(input) {
        return false;
    }
    if n.op_type == "Transpose" {
        return attr_ints(n, "perm").as_deref() == Some(&[0i64, 3, 1, 2][..]);
    }
    if n.op_type != "Reshape" || dims.len() != 4 || dims[3] != 1 {
        return false;
    }
    let Some(shape_name) = n.input.get(1) else {
        return false;
    };
    let from_init = graph
        .initializer
        .iter()
        .find(|t| &t.name == shape_name)
        .and_then(|t| consts::decode(t).ok());
    let from_node = || {
        graph
            .node
            .iter()
            .find(|c| c.op_type == "Constant" && c.output.first() == Some(shape_name))
            .and_then(|c| consts::constant_node(c).ok())
    };
    let target = from_init.or_else(from_node).and_then(|c| c.i64s_of().ok());
    target.is_some_and(|t| {
        reshape_dims(dims, &t).ok() == Some(vec![1, 1, dims[1], dims[2]]) && dims[1] > 1
    })
}

/// The input's dims, the batch fixed to 1; whether the batch was dynamic.
fn input_dims(input: &ValueInfoProto) -> Result<(Vec<usize>, bool), OnnxImportError> {
    let err = |problem: String| OnnxImportError::Input {
        name: input.name.clone(),
        problem,
    };
    let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(err("it is not a tensor".into()));
    };
    if t.elem_type != 1 {
        return Err(err(format!(
            "element type {} is not float32 (1): export the float model",
            t.elem_type
        )));
    }
    let shape = t
        .shape
        .as_ref()
        .ok_or_else(|| err("it has no shape: export with a fixed input shape".into()))?;
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as D;
    let mut dims = Vec::new();
    let mut dynamic_batch = false;
    for (i, d) in shape.dim.iter().enumerate() {
        match (&d.value, i) {
            (Some(D::DimValue(v)), _) if *v > 0 => dims.push(*v as usize),
            (_, 0) => {
                dynamic_batch = true;
                dims.push(1);
            }
            (v, _) => {
                return Err(err(format!(
                    "dim {i} is dynamic ({v:?}): only the batch dim may be; export with a fixed input shape (e.g. tf2onnx --inputs-as-nchw or an input_signature with fixed H, W, C)"
                )));
            }
        }
    }
    if dims.first() != Some(&1) {
        return Err(err(format!(
            "dims {dims:?}: a batch of 1 first (N = 1) is supported"
        )));
    }
    Ok((dims, dynamic_batch))
}

fn pair(v: &[i64], what: &str) -> Result<(usize, usize), String> {
    match v {
        [a, b] if *a > 0 && *b > 0 => Ok((*a as usize, *b as usize)),
        _ => Err(format!("{what} {v:?}: two positive values (2-D) expected")),
    }
}

/// The window of a Conv or pool node over an `h x w` input.
fn window(node: &NodeProto, kernel: (usize, usize), h: usize, w: usize) -> Result<Window, String> {
    let (sh, sw) = pair(&attr_ints(node, "strides").unwrap_or(vec![1, 1]), "strides")?;
    if let Some(d) = attr_ints(node, "dilations")
        && d.iter().any(|&x| x != 1)
    {
        return Err(format!("dilations {d:?}: only 1 is supported"));
    }
    let auto = attr_s(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    let pads = match auto.as_str() {
        "NOTSET" => match attr_ints(node, "pads").unwrap_or(vec![0; 4]).as_slice() {
            [t, l, b, r] if [*t, *l, *b, *r].iter().all(|&p| p >= 0) => Pads {
                top: *t as usize,
                left: *l as usize,
                bottom: *b as usize,
                right: *r as usize,
            },
            p => return Err(format!("pads {p:?}: four non-negative values expected")),
        },
        "VALID" => Pads::default(),
        "SAME_UPPER" | "SAME_LOWER" => {
            let total =
                |n: usize, k: usize, s: usize| ((n.div_ceil(s) - 1) * s + k).saturating_sub(n);
            let (th, tw) = (total(h, kernel.0, sh), total(w, kernel.1, sw));
            let upper = auto == "SAME_UPPER";
            let split = |t: usize| {
                if upper {
                    (t / 2, t - t / 2)
                } else {
                    (t - t / 2, t / 2)
                }
            };
            let ((top, bottom), (left, right)) = (split(th), split(tw));
            Pads {
                top,
                left,
                bottom,
                right,
            }
        }
        other => return Err(format!("auto_pad {other}")),
    };
    Ok(Window {
        kernel_h: kernel.0,
        kernel_w: kernel.1,
        stride_h: sh,
        stride_w: sw,
        pads,
    })
}

fn out_hw(win: &Window, h: usize, w: usize) -> Result<(usize, usize), String> {
    crate::fgraph::interpret::window_output(win, h, w).map_err(|e| format!("window {win:?}: {e}"))
}

impl Lowering {
    fn get(&self, name: &str) -> Result<&Value, String> {
        self.values
            .get(name)
            .ok_or_else(|| format!("input `{name}` is not produced by an earlier node"))
    }

    fn input(&self, node: &NodeProto, i: usize) -> Result<Option<&Value>, String> {
        match node.input.get(i) {
            Some(n) if !n.is_empty() => self.get(n).map(Some),
            _ => Ok(None),
        }
    }

    fn act(&self, node: &NodeProto, i: usize) -> Result<Activation, String> {
        match self.input(node, i)? {
            Some(Value::Act(a)) if a.after_softmax => Err(
                "it reads the output of a Softmax; Softmax is supported only as the last op".into(),
            ),
            Some(Value::Act(a)) => Ok(a.clone()),
            Some(Value::Const(_)) => {
                Err(format!("input {i} is a constant, an activation expected"))
            }
            None => Err(format!("input {i} is missing")),
        }
    }

    fn konst(&self, node: &NodeProto, i: usize) -> Result<Option<&Const>, String> {
        match self.input(node, i)? {
            Some(Value::Const(c)) => Ok(Some(c)),
            Some(Value::Act(_)) => Err(format!(
                "input {i} is computed from the model's input, a constant expected"
            )),
            None => Ok(None),
        }
    }

    fn set(&mut self, node: &NodeProto, v: Value) {
        if let Some(o) = node.output.first() {
            self.values.insert(o.clone(), v);
        }
    }

    fn single_use(&self, node: &NodeProto, i: usize) -> bool {
        self.uses.get(&node.input[i]).copied() == Some(1)
    }

    /// An activation that carries `a` on under a new name, still open if only `node` reads it.
    fn alias(&self, node: &NodeProto, a: &Activation, layout: Layout) -> Value {
        Value::Act(Activation {
            layout,
            open_op: a.open_op.filter(|_| self.single_use(node, 0)),
            ..a.clone()
        })
    }

    fn new_tensor(&mut self, s: Shape) -> usize {
        self.tensors.push(s);
        self.tensors.len() - 1
    }

    /// Appends `op` writing a new tensor of shape `s`; the activation it yields.
    fn emit(
        &mut self,
        node: &NodeProto,
        op: impl FnOnce(usize) -> FloatOp,
        s: Shape,
        layout: Layout,
        open: bool,
    ) -> String {
        let t = self.new_tensor(s);
        let op = op(t);
        let name = op.name();
        self.ops.push(op);
        let named = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).cloned();
        self.op_sources.push(OpSource {
            node: self.node_index,
            weights: named(1),
            bias: named(2),
        });
        let idx = self.ops.len() - 1;
        self.set(
            node,
            Value::Act(Activation {
                tensor: t,
                layout,
                open_op: open.then_some(idx),
                after_softmax: false,
            }),
        );
        format!("{name} (op {idx})")
    }

    fn node(&mut self, node: &NodeProto) -> NodeResult {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(format!(
                "domain `{}` is not supported (only the default ONNX domain)",
                node.domain
            ));
        }
        let op = node.op_type.as_str();
        if op == "Constant" {
            let c = consts::constant_node(node)?;
            self.set(node, Value::Const(c));
            return Ok("constant".into());
        }
        if op == "Shape" {
            let dims = match self.input(node, 0)? {
                Some(Value::Act(a)) => self.onnx_dims(a),
                Some(Value::Const(c)) => c.dims.clone(),
                None => return Err("input 0 is missing".into()),
            };
            let rank = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let (start, end) = (
                clamp(attr_i(node, "start", 0)),
                clamp(attr_i(node, "end", rank)),
            );
            let v: Vec<i64> = dims[start..end.max(start)]
                .iter()
                .map(|&d| d as i64)
                .collect();
            self.set(node, Value::Const(Const::i64s(vec![v.len()], v)));
            return Ok("constant (the fixed shape)".into());
        }
        if op == "CastLike" {
            // The target type is float32 (an activation) or the second constant's type.
            let c = self.konst(node, 0)?.ok_or("input 0 is missing")?.clone();
            let to_float = match self.input(node, 1)? {
                Some(Value::Act(_)) => true,
                Some(Value::Const(t)) => matches!(t.data, consts::Data::F32(_)),
                None => return Err("input 1 is missing".into()),
            };
            let data = match (to_float, c.data) {
                (true, consts::Data::I64(v)) => {
                    consts::Data::F32(v.iter().map(|&i| i as f32).collect())
                }
                (false, consts::Data::F32(v)) => {
                    consts::Data::I64(v.iter().map(|&f| f as i64).collect())
                }
                (_, d) => d,
            };
            self.set(node, Value::Const(Const { dims: c.dims, data }));
            return Ok("constant-folded".into());
        }
        let all_const = node
            .input
            .iter()
            .filter(|i| !i.is_empty())
            .all(|i| matches!(self.values.get(i), Some(Value::Const(_))));
        if all_const && FOLDABLE.contains(&op) {
            let ins: Vec<Option<&Const>> = (0..node.input.len())
                .map(|i| self.konst(node, i))
                .collect::<Result<_, _>>()?;
            let c = fold::fold(node, &ins)?;
            self.set(node, Value::Const(c));
            return Ok("constant-folded".into());
        }
        if node.output.len() > 1 && node.output[1..].iter().any(|o| self.uses.contains_key(o)) {
            return Err("only the first output may be used".into());
        }
        match op {
            "Identity" | "Dropout" => {
                if op == "Dropout"
                    && let Some(Value::Const(c)) = self.input(node, 2)?
                    && c.i64s_of()? != [0]
                {
                    return Err("training_mode is true: export in eval mode".into());
                }
                let a = self.act(node, 0)?;
                let v = self.alias(node, &a, a.layout.clone());
                self.set(node, v);
                Ok("identity".into())
            }
            "Conv" => self.conv(node),
            "BatchNormalization" => self.batch_norm(node),
            "Gemm" | "MatMul" => self.dense(node),
            "Relu" => self.fuse_act(node, Act::Relu),
            "Clip" => {
                let lo = self.konst(node, 1)?.map(|c| c.scalar_f32()).transpose()?;
                let hi = self.konst(node, 2)?.map(|c| c.scalar_f32()).transpose()?;
                match (lo, hi) {
                    (Some(l), Some(h)) if l == 0.0 && h == 6.0 => self.fuse_act(node, Act::Relu6),
                    (Some(l), None) if l == 0.0 => self.fuse_act(node, Act::Relu),
                    (Some(l), Some(h)) if l == 0.0 && h == f32::INFINITY => {
                        self.fuse_act(node, Act::Relu)
                    }
                    _ => Err(format!(
                        "Clip({lo:?}, {hi:?}): only min 0 with max 6 (ReLU6) or no max (ReLU)"
                    )),
                }
            }
            "MaxPool" | "AveragePool" | "GlobalAveragePool" => self.pool(node),
            "ReduceMean" => self.reduce_mean(node),
            "Add" | "Mul" | "Sub" => self.binary(node),
            "Flatten" | "Reshape" | "Squeeze" => self.flatten(node),
            "Transpose" => {
                let a = self.act(node, 0)?;
                let Layout::Spatial(axes) = a.layout else {
                    return Err("Transpose of a flattened tensor".into());
                };
                let perm = attr_ints(node, "perm").unwrap_or(vec![3, 2, 1, 0]);
                let mut p = [0usize; 4];
                if perm.len() != 4 {
                    return Err(format!("perm {perm:?} is not a permutation of 4 axes"));
                }
                for (i, &x) in perm.iter().enumerate() {
                    if !(0..4).contains(&x) || perm[..i].contains(&x) {
                        return Err(format!("perm {perm:?} is not a permutation of 4 axes"));
                    }
                    p[i] = x as usize;
                }
                let new = p.map(|i| axes[i]);
                let v = self.alias(node, &a, Layout::Spatial(new));
                self.set(node, v);
                Ok(format!("layout {new:?} (folded)"))
            }
            "Softmax" => {
                let a = self.act(node, 0)?;
                let Layout::Flat { perm: None, rank1 } = a.layout else {
                    return Err(
                        "Softmax over a 4-D tensor; only over a flat vector of logits".into(),
                    );
                };
                let rank = if rank1 { 1 } else { 2 };
                if axis_index(attr_i(node, "axis", -1), rank)? != rank - 1 {
                    return Err("Softmax over an axis other than the last".into());
                }
                self.dropped_softmax = true;
                self.set(
                    node,
                    Value::Act(Activation {
                        after_softmax: true,
                        open_op: None,
                        ..a
                    }),
                );
                self.folded.push(format!(
                    "Softmax `{}` dropped: the graph outputs logits (the argmax is the same)",
                    node.name
                ));
                Ok("dropped (final Softmax)".into())
            }
            _ => Err("this op is not supported".into()),
        }
    }

    /// The ONNX dims of an activation.
    fn onnx_dims(&self, a: &Activation) -> Vec<usize> {
        let t = self.tensors[a.tensor];
        match &a.layout {
            Layout::Spatial(axes) => axes
                .iter()
                .map(|ax| match ax {
                    Axis::N => 1,
                    Axis::C => t.c,
                    Axis::H => t.h,
                    Axis::W => t.w,
                })
                .collect(),
            Layout::Flat { rank1: true, .. } => vec![t.len()],
            Layout::Flat { .. } => vec![1, t.len()],
        }
    }

    fn conv(&mut self, node: &NodeProto) -> NodeResult {
        let x = self.act(node, 0)?;
        if x.layout != Layout::Spatial(NCHW) {
            return Err(format!(
                "its input is laid out {:?}, Conv reads NCHW",
                x.layout
            ));
        }
        let s = self.tensors[x.tensor];
        let wt = self.konst(node, 1)?.ok_or("no weights")?;
        let [o, ipg, kh, kw] = wt.dims[..] else {
            return Err(format!(
                "weights of dims {:?}: 2-D conv weights [O, I/group, KH, KW] expected",
                wt.dims
            ));
        };
        let w = wt.f32s()?.to_vec();
        let bias = match self.konst(node, 2)? {
            Some(b) if b.len() == o => b.f32s()?.to_vec(),
            Some(b) => return Err(format!("bias of {} values for {o} outputs", b.len())),
            None => vec![0.0; o],
        };
        let group = attr_i(node, "group", 1) as usize;
        let depthwise = match group {
            1 if ipg == s.c => false,
            g if g == s.c && ipg == 1 && o == g && g > 1 => true,
            g => {
                return Err(format!(
                    "group {g} with {} input and {o} output channels: only group 1 or depthwise (group = channels, multiplier 1)",
                    s.c
                ));
            }
        };
        if let Some(k) = attr_ints(node, "kernel_shape")
            && k != [kh as i64, kw as i64]
        {
            return Err(format!(
                "kernel_shape {k:?} differs from the weights' {kh}x{kw}"
            ));
        }
        let win = window(node, (kh, kw), s.h, s.w)?;
        let (oh, ow) = out_hw(&win, s.h, s.w)?;
        let weights = if depthwise {
            // [C][1][KH][KW] -> HWC
            let mut v = vec![0.0; kh * kw * o];
            for c in 0..o {
                for y in 0..kh {
                    for xx in 0..kw {
                        v[(y * kw + xx) * o + c] = w[(c * kh + y) * kw + xx];
                    }
                }
            }
            v
        } else {
            // OIHW -> OHWI
            let i_n = ipg;
            let mut v = vec![0.0; o * kh * kw * i_n];
            for oc in 0..o {
                for ic in 0..i_n {
                    for y in 0..kh {
                        for xx in 0..kw {
                            v[((oc * kh + y) * kw + xx) * i_n + ic] =
                                w[((oc * i_n + ic) * kh + y) * kw + xx];
                        }
                    }
                }
            }
            v
        };
        let input = x.tensor;
        Ok(self.emit(
            node,
            |output| FloatOp::Conv2d {
                input,
                output,
                window: win,
                depthwise,
                weights,
                bias,
                act: Act::None,
            },
            Shape::new(oh, ow, o),
            Layout::Spatial(NCHW),
            true,
        ))
    }

    /// The open op `x` folds into, or why there is none.
    fn open(&self, node: &NodeProto, x: &Activation, what: &str) -> Result<usize, String> {
        match x.open_op {
            Some(i) if self.single_use(node, 0) => Ok(i),
            _ => Err(format!(
                "{what} must follow a Conv, Gemm/MatMul or Add whose output nothing else reads (and with no activation yet)"
            )),
        }
    }

    /// Scales (when `mul`) or shifts output channel `c` of conv or dense op `i` by `v[c]`.
    fn fold_channels(&mut self, i: usize, v: &[f32], mul: bool) {
        let (weights, bias, depthwise) = match &mut self.ops[i] {
            FloatOp::Conv2d {
                weights,
                bias,
                depthwise,
                ..
            } => (weights, bias, *depthwise),
            FloatOp::Dense { weights, bias, .. } => (weights, bias, false),
            _ => unreachable!("callers fold only into conv and dense ops"),
        };
        let channels = bias.len();
        if mul {
            // OHWI and [out][in] hold an output channel's weights together; HWC interleaves.
            let per_out = weights.len() / channels;
            for (k, w) in weights.iter_mut().enumerate() {
                let c = if depthwise { k % channels } else { k / per_out };
                *w = (*w as f64 * v[c] as f64) as f32;
            }
            for (c, b) in bias.iter_mut().enumerate() {
                *b = (*b as f64 * v[c] as f64) as f32;
            }
        } else {
            for (c, b) in bias.iter_mut().enumerate() {
                *b = (*b as f64 + v[c] as f64) as f32;
            }
        }
    }

    fn batch_norm(&mut self, node: &NodeProto) -> NodeResult {
        let x = self.act(node, 0)?;
        let i = self.open(node, &x, "BatchNormalization")?;
        if !matches!(self.ops[i], FloatOp::Conv2d { .. }) || x.layout != Layout::Spatial(NCHW) {
            return Err("BatchNormalization is folded only into the Conv before it (NCHW)".into());
        }
        let c = self.tensors[x.tensor].c;
        let p = |k: usize, what: &str| -> Result<Vec<f32>, String> {
            let v = self.konst(node, k)?.ok_or(format!("no {what}"))?;
            if v.len() != c {
                return Err(format!("{what} has {} values for {c} channels", v.len()));
            }
            Ok(v.f32s()?.to_vec())
        };
        let (gamma, beta, mean, var) = (p(1, "scale")?, p(2, "B")?, p(3, "mean")?, p(4, "var")?);
        let eps = attr_f(node, "epsilon", 1e-5) as f64;
        // y = (x - mean) * s + beta with s = gamma / sqrt(var + eps), into w and b.
        let s: Vec<f32> = (0..c)
            .map(|k| (gamma[k] as f64 / (var[k] as f64 + eps).sqrt()) as f32)
            .collect();
        let shift: Vec<f32> = (0..c)
            .map(|k| (beta[k] as f64 - mean[k] as f64 * s[k] as f64) as f32)
            .collect();
        self.fold_channels(i, &s, true);
        self.fold_channels(i, &shift, false);
        let v = self.alias(node, &x, x.layout.clone());
        self.set(node, v);
        self.folded.push(format!(
            "BatchNormalization `{}` folded into op {i} (conv)",
            node.name
        ));
        Ok(format!("folded into op {i}"))
    }

    fn fuse_act(&mut self, node: &NodeProto, act: Act) -> NodeResult {
        let x = self.act(node, 0)?;
        let i = self.open(node, &x, &node.op_type)?;
        match &mut self.ops[i] {
            FloatOp::Conv2d { act: a, .. }
            | FloatOp::Dense { act: a, .. }
            | FloatOp::Add { act: a, .. } => *a = act,
            _ => unreachable!("open ops are conv, dense and add"),
        }
        self.set(node, Value::Act(Activation { open_op: None, ..x }));
        self.folded.push(format!(
            "{} `{}` fused into op {i} as {act:?}",
            node.op_type, node.name
        ));
        Ok(format!("fused into op {i}"))
    }

    fn pool(&mut self, node: &NodeProto) -> NodeResult {
        let x = self.act(node, 0)?;
        if x.layout != Layout::Spatial(NCHW) {
            return Err(format!(
                "its input is laid out {:?}, pools read NCHW",
                x.layout
            ));
        }
        let s = self.tensors[x.tensor];
        let global = node.op_type == "GlobalAveragePool";
        let win = if global {
            Window {
                kernel_h: s.h,
                kernel_w: s.w,
                stride_h: 1,
                stride_w: 1,
                pads: Pads::default(),
            }
        } else {
            let k = pair(
                &attr_ints(node, "kernel_shape").unwrap_or_default(),
                "kernel_shape",
            )?;
            window(node, k, s.h, s.w)?
        };
        let (oh, ow) = out_hw(&win, s.h, s.w)?;
        if attr_i(node, "ceil_mode", 0) != 0 {
            let p = win.pads;
            let ceil = |n: usize, k: usize, st: usize| (n - k).div_ceil(st) + 1;
            if ceil(s.h + p.top + p.bottom, win.kernel_h, win.stride_h) != oh
                || ceil(s.w + p.left + p.right, win.kernel_w, win.stride_w) != ow
            {
                return Err(
                    "ceil_mode 1 changes the output size here: only floor is supported".into(),
                );
            }
        }
        let avg = node.op_type != "MaxPool";
        if avg && attr_i(node, "count_include_pad", 0) != 0 && win.pads != Pads::default() {
            return Err(
                "count_include_pad 1 with padding: only averages over in-bounds pixels".into(),
            );
        }
        let input = x.tensor;
        Ok(self.emit(
            node,
            |output| {
                if avg {
                    FloatOp::AvgPool {
                        input,
                        output,
                        window: win,
                    }
                } else {
                    FloatOp::MaxPool {
                        input,
                        output,
                        window: win,
                    }
                }
            },
            Shape::new(oh, ow, s.c),
            Layout::Spatial(NCHW),
            false,
        ))
    }

    /// ReduceMean over exactly the two spatial axes: a global average pool.
    fn reduce_mean(&mut self, node: &NodeProto) -> NodeResult {
        let x = self.act(node, 0)?;
        let Layout::Spatial(axes) = x.layout else {
            return Err("ReduceMean of a flat tensor".into());
        };
        let list = match self.konst(node, 1)? {
            Some(c) => c.i64s_of()?,
            None => attr_ints(node, "axes").unwrap_or_default(),
        };
        let mut over: Vec<Axis> = list
            .iter()
            .map(|&a| axis_index(a, 4).map(|i| axes[i]))
            .collect::<Result<_, _>>()?;
        over.sort_by_key(|a| *a as u8);
        if over != [Axis::H, Axis::W] {
            return Err(format!(
                "ReduceMean over axes {list:?}: only over the two spatial axes (global average pool)"
            ));
        }
        let s = self.tensors[x.tensor];
        let win = Window {
            kernel_h: s.h,
            kernel_w: s.w,
            stride_h: 1,
            stride_w: 1,
            pads: Pads::default(),
        };
        let layout = if attr_i(node, "keepdims", 1) != 0 {
            Layout::Spatial(axes)
        } else {
            Layout::Flat {
                perm: None,
                rank1: false,
            }
        };
        let input = x.tensor;
        Ok(self.emit(
            node,
            |output| FloatOp::AvgPool {
                input,
                output,
                window: win,
            },
            Shape::new(1, 1, s.c),
            layout,
            false,
        ))
    }

    /// A per-channel vector from a constant broadcast against activation `a`, or why not.
    fn channel_vector(&self, c: &Const, a: &Activation) -> Result<Vec<f32>, String> {
        let v = c.f32s()?;
        let dims = self.onnx_dims(a);
        let channels = match &a.layout {
            Layout::Spatial(_) => self.tensors[a.tensor].c,
            Layout::Flat { .. } => self.tensors[a.tensor].len(),
        };
        if v.len() == 1 {
            return Ok(vec![v[0]; channels]);
        }
        if c.dims.len() > dims.len() {
            return Err(format!("constant of dims {:?} against {dims:?}", c.dims));
        }
        let off = dims.len() - c.dims.len();
        for (j, &d) in c.dims.iter().enumerate() {
            let channel_axis = match &a.layout {
                Layout::Spatial(axes) => axes[off + j] == Axis::C,
                Layout::Flat { perm: None, .. } => off + j == dims.len() - 1,
                Layout::Flat { .. } => false,
            };
            if d != 1 && !(channel_axis && d == channels) {
                return Err(format!(
                    "constant of dims {:?} varies along an axis other than the channels of {dims:?}",
                    c.dims
                ));
            }
        }
        Ok(v.to_vec())
    }

    fn binary(&mut self, node: &NodeProto) -> NodeResult {
        let op = node.op_type.as_str();
        let a = self.input(node, 0)?.cloned().ok_or("input 0 missing")?;
        let b = self.input(node, 1)?.cloned().ok_or("input 1 missing")?;
        match (a, b) {
            (Value::Act(x), Value::Act(y)) if op == "Add" => {
                if x.after_softmax || y.after_softmax {
                    return Err("it reads the output of a Softmax".into());
                }
                let same = self.tensors[x.tensor] == self.tensors[y.tensor]
                    && match (&x.layout, &y.layout) {
                        (Layout::Spatial(p), Layout::Spatial(q)) => p == q,
                        (Layout::Flat { perm: None, .. }, Layout::Flat { perm: None, .. }) => true,
                        _ => false,
                    };
                if !same {
                    return Err(format!(
                        "Add of activations of shapes {:?} and {:?} (layouts {:?}, {:?}): only two of one shape and layout",
                        self.onnx_dims(&x),
                        self.onnx_dims(&y),
                        x.layout,
                        y.layout
                    ));
                }
                let inputs = [x.tensor, y.tensor];
                let s = self.tensors[x.tensor];
                Ok(self.emit(
                    node,
                    |output| FloatOp::Add {
                        inputs,
                        output,
                        act: Act::None,
                    },
                    s,
                    x.layout,
                    true,
                ))
            }
            (Value::Act(x), Value::Const(c)) | (Value::Const(c), Value::Act(x)) => {
                let first_is_act = matches!(self.input(node, 0)?, Some(Value::Act(_)));
                if op == "Sub" && !first_is_act {
                    return Err("constant minus activation is not supported".into());
                }
                if x.after_softmax {
                    return Err("it reads the output of a Softmax".into());
                }
                let idx = if first_is_act { 0 } else { 1 };
                let i = match x.open_op {
                    Some(i) if self.single_use(node, idx) => i,
                    _ => {
                        return Err(format!(
                            "{op} by a constant must follow a Conv or Gemm/MatMul whose output nothing else reads"
                        ));
                    }
                };
                if matches!(self.ops[i], FloatOp::Add { .. }) {
                    return Err(format!("{op} by a constant after an Add of activations"));
                }
                let mut v = self.channel_vector(&c, &x)?;
                if op == "Sub" {
                    v.iter_mut().for_each(|x| *x = -*x);
                }
                self.fold_channels(i, &v, op == "Mul");
                self.set(node, Value::Act(x.clone()));
                self.folded.push(format!(
                    "{op} `{}` by a constant folded into op {i}",
                    node.name
                ));
                Ok(format!("folded into op {i}"))
            }
            _ => Err(format!(
                "{op} of activations (only Add) or of constants (not folded)"
            )),
        }
    }

    fn flatten(&mut self, node: &NodeProto) -> NodeResult {
        let x = self.act(node, 0)?;
        let dims = self.onnx_dims(&x);
        let target = match node.op_type.as_str() {
            "Flatten" => {
                let a = attr_i(node, "axis", 1);
                let axis = if a < 0 { a + dims.len() as i64 } else { a };
                if axis < 0 || axis > dims.len() as i64 {
                    return Err(format!("axis {a} for rank {}", dims.len()));
                }
                let axis = axis as usize;
                let (a, b): (usize, usize) =
                    (dims[..axis].iter().product(), dims[axis..].iter().product());
                vec![a, b]
            }
            "Reshape" => {
                let shape = self.konst(node, 1)?.ok_or("no shape input")?.i64s_of()?;
                if attr_i(node, "allowzero", 0) != 0 && shape.contains(&0) {
                    return Err("allowzero with a 0 in the shape".into());
                }
                reshape_dims(&dims, &shape)?
            }
            _ => {
                let axes = match self.konst(node, 1)? {
                    Some(c) => Some(c.i64s_of()?),
                    None => attr_ints(node, "axes"),
                };
                squeeze_dims(&dims, axes.as_deref())?
            }
        };
        if target == dims {
            let v = self.alias(node, &x, x.layout.clone());
            self.set(node, v);
            return Ok("identity (same shape)".into());
        }
        let rank1 = match target.as_slice() {
            [1, _] => false,
            [_] => true,
            [_, _, _, _] => return self.relabel(node, &x, &dims, &target),
            _ => {
                return Err(format!(
                    "reshape of {dims:?} to {target:?}: only flattening to [1, F] is supported"
                ));
            }
        };
        let s = self.tensors[x.tensor];
        let perm = match &x.layout {
            Layout::Flat { perm, .. } => perm.clone(),
            Layout::Spatial(axes) => {
                // ONNX flattens row-major over its axes; the tensor holds NHWC.
                let size = |ax: Axis| match ax {
                    Axis::N => 1,
                    Axis::C => s.c,
                    Axis::H => s.h,
                    Axis::W => s.w,
                };
                let mut perm = Vec::with_capacity(s.len());
                let mut idx = [0usize; 4];
                let sizes = axes.map(size);
                for _ in 0..s.len() {
                    let at = |ax: Axis| (0..4).find(|&k| axes[k] == ax).map_or(0, |k| idx[k]);
                    perm.push((at(Axis::H) * s.w + at(Axis::W)) * s.c + at(Axis::C));
                    for k in (0..4).rev() {
                        idx[k] += 1;
                        if idx[k] < sizes[k] {
                            break;
                        }
                        idx[k] = 0;
                    }
                }
                let identity = perm.iter().enumerate().all(|(j, &p)| j == p);
                (!identity).then_some(perm)
            }
        };
        let layout = Layout::Flat { perm, rank1 };
        if s.h * s.w == 1 {
            let v = self.alias(node, &x, layout);
            self.set(node, v);
            return Ok("flatten (a view: already 1x1)".into());
        }
        let input = x.tensor;
        let became = self.emit(
            node,
            |output| FloatOp::Reshape { input, output },
            Shape::new(1, 1, s.len()),
            layout,
            false,
        );
        Ok(became)
    }

    /// A 4-D reshape that only moves size-1 axes (tf2onnx's Transpose of a one-channel
    /// tensor): the same values, the axes renamed. The size-1 target axes take the input's
    /// size-1 meanings in their order.
    fn relabel(
        &mut self,
        node: &NodeProto,
        x: &Activation,
        dims: &[usize],
        target: &[usize],
    ) -> NodeResult {
        let Layout::Spatial(axes) = x.layout else {
            return Err(format!("reshape of a flat tensor to {target:?}"));
        };
        let big = |d: &[usize]| (0..4).filter(|&i| d[i] > 1).collect::<Vec<_>>();
        let (from, to) = (big(dims), big(target));
        let sizes_match =
            from.len() == to.len() && from.iter().zip(&to).all(|(&a, &b)| dims[a] == target[b]);
        if !sizes_match {
            return Err(format!(
                "reshape of {dims:?} to {target:?}: only flattening to [1, F], or a 4-D reshape that moves size-1 axes"
            ));
        }
        let mut new = [Axis::N; 4];
        for (&a, &b) in from.iter().zip(&to) {
            new[b] = axes[a];
        }
        let mut ones = (0..4).filter(|i| !from.contains(i)).map(|i| axes[i]);
        for (b, slot) in new.iter_mut().enumerate() {
            if !to.contains(&b) {
                *slot = ones.next().expect("as many size-1 axes on both sides");
            }
        }
        let v = self.alias(node, x, Layout::Spatial(new));
        self.set(node, v);
        Ok(format!(
            "layout {new:?} (a reshape that moves size-1 axes, folded)"
        ))
    }

    fn dense(&mut self, node: &NodeProto) -> NodeResult {
        let x = self.act(node, 0)?;
        let Layout::Flat { perm, .. } = x.layout.clone() else {
            return Err(format!(
                "its input is 4-D ({:?}): flatten it first",
                self.onnx_dims(&x)
            ));
        };
        let f = self.tensors[x.tensor].len();
        let b = self.konst(node, 1)?.ok_or("no weights (a constant B)")?;
        let gemm = node.op_type == "Gemm";
        if gemm && attr_i(node, "transA", 0) != 0 {
            return Err("transA 1".into());
        }
        let trans_b = gemm && attr_i(node, "transB", 0) != 0;
        let (alpha, beta) = if gemm {
            (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0))
        } else {
            (1.0, 1.0)
        };
        let (rows, cols) = match b.dims[..] {
            [r, c] => (r, c),
            _ => return Err(format!("weights of dims {:?}: 2-D expected", b.dims)),
        };
        let (n, k) = if trans_b { (rows, cols) } else { (cols, rows) };
        if k != f {
            return Err(format!(
                "weights of dims {:?} for {f} input features",
                b.dims
            ));
        }
        let bv = b.f32s()?;
        let mut weights = vec![0.0f32; n * f];
        for o in 0..n {
            for j in 0..f {
                let v = if trans_b {
                    bv[o * f + j]
                } else {
                    bv[j * n + o]
                };
                let col = perm.as_ref().map_or(j, |p| p[j]);
                weights[o * f + col] = (alpha as f64 * v as f64) as f32;
            }
        }
        let bias = match self.konst(node, 2)? {
            Some(c) if c.len() == 1 => vec![beta * c.f32s()?[0]; n],
            Some(c) if c.len() == n => c
                .f32s()?
                .iter()
                .map(|&v| (beta as f64 * v as f64) as f32)
                .collect(),
            Some(c) => return Err(format!("bias C of dims {:?} for {n} outputs", c.dims)),
            None => vec![0.0; n],
        };
        if perm.is_some() {
            self.folded.push(format!(
                "{} `{}`: weight columns permuted from NCHW to NHWC flatten order",
                node.op_type, node.name
            ));
        }
        let input = x.tensor;
        Ok(self.emit(
            node,
            |output| FloatOp::Dense {
                input,
                output,
                weights,
                bias,
                act: Act::None,
            },
            Shape::new(1, 1, n),
            Layout::Flat {
                perm: None,
                rank1: false,
            },
            true,
        ))
    }
}
