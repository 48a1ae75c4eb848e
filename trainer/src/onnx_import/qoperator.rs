//! Int8 ONNX models in QOperator form (onnxruntime's `quantize_static` with
//! `quant_format=QuantFormat.QOperator`): each quantized op is rewritten into its QDQ form —
//! `DequantizeLinear` of its int8 inputs and of its integer weights and bias, the float op,
//! `QuantizeLinear` with its output scale and zero point — which [`super::qdq`] then takes as
//! quantized. The definitions agree: ONNX defines `QLinearConv` and `QLinearMatMul` as that
//! composition, and onnxruntime's contrib ops (`com.microsoft` `QGemm`, `QLinearAdd`,
//! `QLinearAveragePool`, `QLinearGlobalAveragePool`, `QLinearSoftmax`) likewise. An op that
//! only moves int8 values (MaxPool, Reshape, Squeeze, Flatten, Transpose, Identity) keeps its
//! input's scale and zero point.

use std::collections::HashMap;

use prost::Message;
use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, TensorProto, tensor_proto::DataType};

use super::OnnxImportError;
use super::consts::{self, attr, attr_i};

/// The QOperator ops rewritten here.
const QOPERATOR: [&str; 7] = [
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "QLinearAdd",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearSoftmax",
];

/// Ops that move int8 values without changing them.
const MOVES_CODES: [&str; 7] = [
    "MaxPool",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Transpose",
    "Identity",
];

/// Whether `op` is one of the QOperator ops rewritten here.
pub fn is_qoperator_op(op: &str) -> bool {
    QOPERATOR.contains(&op)
}

/// Whether `graph` has QOperator nodes.
pub fn has_qoperator(graph: &GraphProto) -> bool {
    graph.node.iter().any(|n| is_qoperator_op(&n.op_type))
}

/// The model `bytes` with its QOperator nodes in QDQ form (what tract, which has none of
/// onnxruntime's contrib ops, can run); `None` if it has none or does not decode.
pub fn qdq_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut model = tract_onnx::pb::ModelProto::decode(bytes).ok()?;
    let graph = model.graph.as_ref()?;
    if !has_qoperator(graph) {
        return None;
    }
    let (rewritten, _) = to_qdq(graph).ok()?;
    model.graph = Some(rewritten);
    Some(model.encode_to_vec())
}

struct Rewrite<'g> {
    inits: HashMap<&'g str, &'g TensorProto>,
    /// An int8 value -> the names of its scale and zero point.
    int8: HashMap<String, (String, String)>,
    nodes: Vec<NodeProto>,
    origin: Vec<usize>,
    new_inits: Vec<TensorProto>,
    index: usize,
}

impl Rewrite<'_> {
    fn push(&mut self, op: &str, name: String, inputs: Vec<String>, output: String) -> String {
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name,
            input: inputs,
            output: vec![output.clone()],
            ..Default::default()
        });
        self.origin.push(self.index);
        output
    }

    fn with_attrs(&mut self, attrs: Vec<AttributeProto>) {
        self.nodes.last_mut().unwrap().attribute = attrs;
    }

    /// `DequantizeLinear(x, scale, zero point)` (per-channel along `axis` for weights).
    fn dequantize(&mut self, x: &str, s: &str, z: Option<&str>, axis: Option<i64>) -> String {
        let mut inputs = vec![x.to_string(), s.to_string()];
        if let Some(z) = z.filter(|z| !z.is_empty()) {
            inputs.push(z.to_string());
        }
        let out = self.push(
            "DequantizeLinear",
            format!("{x}.dq"),
            inputs,
            format!("{x}.dequantized"),
        );
        if let Some(a) = axis {
            self.with_attrs(vec![AttributeProto {
                name: "axis".into(),
                r#type: 2,
                i: a,
                ..Default::default()
            }]);
        }
        out
    }

    /// The float reading of activation input `x` of the node (its int8 parameters recorded).
    fn activation(&mut self, x: &str, s: &str, z: &str) -> String {
        self.dequantize(x, s, Some(z), None)
    }

    fn quantize(&mut self, y: &str, s: &str, z: &str, out: &str) {
        self.push(
            "QuantizeLinear",
            format!("{out}.q"),
            vec![y.into(), s.into(), z.into()],
            out.into(),
        );
        self.int8.insert(out.into(), (s.into(), z.into()));
    }

    /// A new f32 initializer: `x_scale * w_scale[c]`, the int32 bias's scale.
    fn bias_scale(&mut self, name: &str, xs: &str, ws: &str) -> Result<String, String> {
        let scalar = |n: &str| -> Result<Vec<f32>, String> {
            let t = self
                .inits
                .get(n)
                .ok_or_else(|| format!("`{n}` is not a constant initializer"))?;
            Ok(consts::decode(t)?.f32s()?.to_vec())
        };
        let x = scalar(xs)?;
        let w = scalar(ws)?;
        if x.len() != 1 {
            return Err(format!("input scale `{xs}` must be one value"));
        }
        let product: Vec<f32> = w.iter().map(|&w| x[0] * w).collect();
        let out = format!("{name}.bias_scale");
        self.new_inits.push(TensorProto {
            name: out.clone(),
            dims: if product.len() == 1 {
                vec![]
            } else {
                vec![product.len() as i64]
            },
            data_type: DataType::Float as i32,
            float_data: product,
            ..Default::default()
        });
        Ok(out)
    }

    fn node(&mut self, node: &NodeProto) -> Result<(), String> {
        let i = |k: usize| node.input.get(k).cloned().unwrap_or_default();
        let out = node.output.first().cloned().ok_or("no output")?;
        let keep_attrs = |skip: &[&str]| -> Vec<AttributeProto> {
            (node.attribute.iter())
                .filter(|a| !skip.contains(&a.name.as_str()))
                .cloned()
                .collect()
        };
        match node.op_type.as_str() {
            "QuantizeLinear" => {
                self.int8.insert(out, (i(1), i(2)));
                self.nodes.push(node.clone());
                self.origin.push(self.index);
            }
            "DequantizeLinear" => {
                self.nodes.push(node.clone());
                self.origin.push(self.index);
            }
            "QLinearConv" => {
                let x = self.activation(&i(0), &i(1), &i(2));
                let w = self.dequantize(&i(3), &i(4), Some(&i(5)), Some(0));
                let mut inputs = vec![x, w];
                if !i(8).is_empty() {
                    let s = self.bias_scale(&out, &i(1), &i(4))?;
                    inputs.push(self.dequantize(&i(8), &s, None, Some(0)));
                }
                let y = self.push("Conv", node.name.clone(), inputs, format!("{out}.f32"));
                self.with_attrs(keep_attrs(&[]));
                self.quantize(&y, &i(6), &i(7), &out);
            }
            "QLinearMatMul" => {
                let a = self.activation(&i(0), &i(1), &i(2));
                let b = self.dequantize(&i(3), &i(4), Some(&i(5)), Some(1));
                let y = self.push(
                    "MatMul",
                    node.name.clone(),
                    vec![a, b],
                    format!("{out}.f32"),
                );
                self.quantize(&y, &i(6), &i(7), &out);
            }
            "QGemm" => {
                if attr(node, "alpha").is_some_and(|a| a.f != 1.0) || attr_i(node, "transA", 0) != 0
                {
                    return Err("alpha must be 1 and transA 0".into());
                }
                let trans_b = attr_i(node, "transB", 0);
                let a = self.activation(&i(0), &i(1), &i(2));
                let b = self.dequantize(
                    &i(3),
                    &i(4),
                    Some(&i(5)),
                    Some(if trans_b == 1 { 0 } else { 1 }),
                );
                let mut inputs = vec![a, b];
                if !i(6).is_empty() {
                    let s = self.bias_scale(&out, &i(1), &i(4))?;
                    inputs.push(self.dequantize(&i(6), &s, None, Some(0)));
                }
                let quantized = !i(7).is_empty();
                let y_name = if quantized {
                    format!("{out}.f32")
                } else {
                    out.clone()
                };
                let y = self.push("Gemm", node.name.clone(), inputs, y_name);
                self.with_attrs(keep_attrs(&["alpha", "transA"]));
                if quantized {
                    self.quantize(&y, &i(7), &i(8), &out);
                }
            }
            "QLinearAdd" => {
                let a = self.activation(&i(0), &i(1), &i(2));
                let b = self.activation(&i(3), &i(4), &i(5));
                let y = self.push("Add", node.name.clone(), vec![a, b], format!("{out}.f32"));
                self.quantize(&y, &i(6), &i(7), &out);
            }
            "QLinearAveragePool" | "QLinearGlobalAveragePool" | "QLinearSoftmax" => {
                if attr_i(node, "channels_last", 0) != 0 {
                    return Err("channels_last = 1 is not supported".into());
                }
                let op = &node.op_type["QLinear".len()..];
                let x = self.activation(&i(0), &i(1), &i(2));
                let y = self.push(op, node.name.clone(), vec![x], format!("{out}.f32"));
                self.with_attrs(keep_attrs(&["channels_last", "opset"]));
                self.quantize(&y, &i(3), &i(4), &out);
            }
            op => {
                let int8_inputs: Vec<usize> = (0..node.input.len())
                    .filter(|&k| self.int8.contains_key(&node.input[k]))
                    .collect();
                if int8_inputs.is_empty() {
                    self.nodes.push(node.clone());
                    self.origin.push(self.index);
                    return Ok(());
                }
                if !MOVES_CODES.contains(&op) || int8_inputs != [0] {
                    return Err(format!(
                        "it reads the int8 value `{}`; of the ops that are not quantized, only {} \
                         may (they keep its scale and zero point)",
                        node.input[int8_inputs[0]],
                        MOVES_CODES.join(", ")
                    ));
                }
                let (s, z) = self.int8[&node.input[0]].clone();
                let mut n = node.clone();
                n.input[0] = self.activation(&node.input[0], &s, &z);
                n.output[0] = format!("{out}.f32");
                let y = n.output[0].clone();
                self.nodes.push(n);
                self.origin.push(self.index);
                self.quantize(&y, &s, &z, &out);
            }
        }
        Ok(())
    }
}

/// `graph` with every QOperator node in QDQ form, and for each of its nodes the index of the
/// file's node it came from.
pub fn to_qdq(graph: &GraphProto) -> Result<(GraphProto, Vec<usize>), OnnxImportError> {
    let mut r = Rewrite {
        inits: graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect(),
        int8: HashMap::new(),
        nodes: Vec::new(),
        origin: Vec::new(),
        new_inits: Vec::new(),
        index: 0,
    };
    for (index, node) in graph.node.iter().enumerate() {
        r.index = index;
        r.node(node).map_err(|problem| OnnxImportError::Node {
            index,
            name: node.name.clone(),
            op: node.op_type.clone(),
            problem,
        })?;
    }
    let mut out = graph.clone();
    out.node = r.nodes;
    out.initializer.extend(r.new_inits);
    Ok((out, r.origin))
}
