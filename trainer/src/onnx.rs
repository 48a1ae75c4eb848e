//! ONNX exports, built with tract-onnx's protobuf types (`tract_onnx::pb`):
//!
//! - the float model, op for op what burn computes (Conv, Relu, MaxPool, Flatten, Gemm);
//! - the int8 model in ONNX's operator form: `QLinearConv` for the convolutions and for the
//!   dense layers as 1x1 convolutions, `MaxPool` on int8, carrying exactly the weights, scales
//!   and zero points of the `.tcm`. tract runs it with integer kernels, so the host can check the
//!   runtime bit for bit. It takes the same float input as the float model (pixel / 255) and
//!   quantizes it itself with `QuantizeLinear`, so the runtime's pixel quantization is checked
//!   too.
//!
//! [`int8_model`] only exports models whose every requantization tract computes exactly as the
//! runtime does (see `docs/quantization.md`, "Which scales are exact"): the input scale is the
//! pixel scale and every layer's output scale is a power of two.

use prost::Message;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension, tensor_shape_proto::dimension,
    type_proto,
};

use crate::model::Cnn;
use crate::quantize::{PIXEL_SCALE, QuantLayer, QuantizedCnn};

/// Opset 13: QLinearConv with per-channel weight scales, int8 MaxPool, Flatten, Gemm.
const OPSET: i64 = 13;
/// The batch dimension's name in both graphs.
pub const BATCH: &str = "N";
pub const FLOAT_INPUT: &str = "input";
pub const FLOAT_OUTPUT: &str = "logits";
/// The int8 model's quantized input: the output of its `QuantizeLinear` (the graph's input is
/// [`FLOAT_INPUT`]).
pub const INT8_INPUT: &str = "input_q";
pub const INT8_OUTPUT: &str = "logits_q";

pub(crate) fn tensor(name: &str, dims: &[usize], data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}

pub(crate) fn f32s(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    tensor(
        name,
        dims,
        DataType::Float,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

pub(crate) fn i8s(name: &str, dims: &[usize], v: &[i8]) -> TensorProto {
    tensor(
        name,
        dims,
        DataType::Int8,
        v.iter().map(|&x| x as u8).collect(),
    )
}

pub(crate) fn i32s(name: &str, dims: &[usize], v: &[i32]) -> TensorProto {
    tensor(
        name,
        dims,
        DataType::Int32,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

pub(crate) fn i64s(name: &str, dims: &[usize], v: &[i64]) -> TensorProto {
    tensor(
        name,
        dims,
        DataType::Int64,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

pub(crate) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

pub(crate) fn value_info(
    name: &str,
    data_type: DataType,
    dims: &[Option<usize>],
) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam(BATCH.into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: data_type as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Nodes and initializers of a graph under construction, shared by the graph exporters
/// (`onnx_graph`, `fgraph::onnx_float`); each adds its own op helpers in an `impl Builder`.
#[derive(Default)]
pub(crate) struct Builder {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) init: Vec<TensorProto>,
}

impl Builder {
    /// Appends node `name`: `output = op(inputs)` with `attrs`.
    pub(crate) fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        });
    }

    /// A 4-d `Transpose` by `perm`.
    pub(crate) fn transpose(&mut self, name: &str, x: &str, out: &str, perm: [i64; 4]) {
        self.node("Transpose", name, &[x], out, vec![ints("perm", &perm)]);
    }

    /// A `Reshape` to `dims`, its shape an initializer `{name}.shape`.
    pub(crate) fn reshape(&mut self, name: &str, x: &str, out: &str, dims: [usize; 4]) {
        let shape = format!("{name}.shape");
        self.init.push(i64s(&shape, &[4], &dims.map(|d| d as i64)));
        self.node("Reshape", name, &[x, &shape], out, vec![]);
    }
}

/// The opset-13 model of `graph`, encoded: the frame every tinyconv ONNX export shares.
pub(crate) fn model(graph: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "tinyconv".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn pool_attributes() -> Vec<AttributeProto> {
    vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])]
}

fn conv_attributes(kernel: usize, pad: usize) -> Vec<AttributeProto> {
    let (k, p) = (kernel as i64, pad as i64);
    vec![
        ints("kernel_shape", &[k, k]),
        ints("strides", &[1, 1]),
        ints("pads", &[p, p, p, p]),
    ]
}

fn param_values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as().expect("float parameters read back")
}

/// The float model: input `[N, 1, 28, 28]` f32 (pixel / 255), output `[N, 10]` logits.
pub fn float_model(cnn: &Cnn) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut init = Vec::new();
    let mut x = FLOAT_INPUT.to_string();
    for (i, (conv, pad)) in [(&cnn.conv1, 1), (&cnn.conv2, 0), (&cnn.conv3, 0)]
        .into_iter()
        .enumerate()
    {
        let name = format!("conv{}", i + 1);
        let dims = conv.weight.val().dims();
        init.push(f32s(
            &format!("{name}.weight"),
            &dims,
            &param_values(conv.weight.val()),
        ));
        let bias = conv
            .bias
            .as_ref()
            .map_or(vec![0.0; dims[0]], |b| param_values(b.val()));
        init.push(f32s(&format!("{name}.bias"), &[dims[0]], &bias));
        let (w, b) = (format!("{name}.weight"), format!("{name}.bias"));
        nodes.push(node(
            "Conv",
            &name,
            &[&x, &w, &b],
            &format!("{name}.out"),
            conv_attributes(3, pad),
        ));
        nodes.push(node(
            "Relu",
            &format!("relu{}", i + 1),
            &[&format!("{name}.out")],
            &format!("relu{}.out", i + 1),
            vec![],
        ));
        x = format!("pool{}.out", i + 1);
        nodes.push(node(
            "MaxPool",
            &format!("pool{}", i + 1),
            &[&format!("relu{}.out", i + 1)],
            &x,
            pool_attributes(),
        ));
    }
    nodes.push(node(
        "Flatten",
        "flatten",
        &[&x],
        "flatten.out",
        vec![int("axis", 1)],
    ));
    x = "flatten.out".into();
    for (i, fc) in [&cnn.fc1, &cnn.fc2].into_iter().enumerate() {
        let name = format!("fc{}", i + 1);
        // burn computes x·W + b with W [in, out]: Gemm's B without transposition.
        let w = fc.weight.val();
        let dims = w.dims();
        init.push(f32s(&format!("{name}.weight"), &dims, &param_values(w)));
        let bias = fc
            .bias
            .as_ref()
            .map_or(vec![0.0; dims[1]], |b| param_values(b.val()));
        init.push(f32s(&format!("{name}.bias"), &[dims[1]], &bias));
        let out = if i == 1 {
            FLOAT_OUTPUT.to_string()
        } else {
            format!("{name}.out")
        };
        let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
        nodes.push(node("Gemm", &name, &[&x, &wn, &bn], &out, vec![]));
        x = out;
        if i == 0 {
            nodes.push(node("Relu", "relu4", &[&x], "relu4.out", vec![]));
            x = "relu4.out".into();
        }
    }
    model(GraphProto {
        name: "tinyconv_mnist_cnn".into(),
        node: nodes,
        initializer: init,
        input: vec![value_info(
            FLOAT_INPUT,
            DataType::Float,
            &[None, Some(1), Some(28), Some(28)],
        )],
        output: vec![value_info(FLOAT_OUTPUT, DataType::Float, &[None, Some(10)])],
        ..Default::default()
    })
}

/// Adds one `QLinearConv` (with its initializers) reading `x`; returns its output's name.
fn qlinear_conv(
    nodes: &mut Vec<NodeProto>,
    init: &mut Vec<TensorProto>,
    name: &str,
    x: &str,
    l: &QuantLayer,
    pad: usize,
) -> String {
    let (o, i, k) = (l.out_channels, l.in_channels, l.kernel);
    let p = |s: &str| format!("{name}.{s}");
    init.push(f32s(&p("x_scale"), &[], &[l.input.scale]));
    init.push(i8s(&p("x_zero_point"), &[], &[l.input.zero_point]));
    init.push(i8s(&p("w"), &[o, i, k, k], &l.weights));
    init.push(f32s(&p("w_scale"), &[o], &l.weight_scales));
    init.push(i8s(&p("w_zero_point"), &[o], &vec![0; o]));
    init.push(f32s(&p("y_scale"), &[], &[l.output.scale]));
    init.push(i8s(&p("y_zero_point"), &[], &[l.output.zero_point]));
    init.push(i32s(&p("bias"), &[o], &l.bias));
    let inputs = [
        x.to_string(),
        p("x_scale"),
        p("x_zero_point"),
        p("w"),
        p("w_scale"),
        p("w_zero_point"),
        p("y_scale"),
        p("y_zero_point"),
        p("bias"),
    ];
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let out = p("out");
    nodes.push(node(
        "QLinearConv",
        name,
        &inputs,
        &out,
        conv_attributes(k, pad),
    ));
    out
}

/// Why an int8 export cannot be expressed in ONNX operators, or would not be checked bit for bit
/// by tract.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "layer {layer}: a fused ReLU needs the output zero point -128 to be plain int8 saturation in ONNX, \
         found {zero_point}; recalibrate (ReLU outputs have range [0, max])"
    )]
    ReluZeroPoint { layer: &'static str, zero_point: i8 },
    #[error(
        "layer {layer}: output scale {scale:e} is not a power of two; tract folds the scales of a \
         layer in an order that depends on the layer, and only with power-of-two output scales does \
         every order give the runtime's f32 multiplier (docs/quantization.md); quantize with \
         power-of-two scales or fold the scales into the weight scales (QuantizedCnn::fold_to_pow2)"
    )]
    OutputScale { layer: &'static str, scale: f32 },
    #[error(
        "input scale {scale:e} is not the pixel scale 1/255: tract's QuantizeLinear of pixel / 255 \
         and the runtime's pixel quantization agree exactly only when the two are equal"
    )]
    InputScale { scale: f32 },
}

const LAYER_NAMES: [&str; 5] = ["conv1", "conv2", "conv3", "fc1", "fc2"];

/// Whether a scale is a (normal) power of two: `f32` mantissa bits all zero.
pub fn is_power_of_two(scale: f32) -> bool {
    scale.is_normal() && scale > 0.0 && scale.to_bits() & 0x7f_ffff == 0
}

/// The int8 model: input `[N, 1, 28, 28]` f32 (pixel / 255, as the float model), quantized by
/// `QuantizeLinear` with the `.tcm`'s input scale and zero point; output `[N, 10]` int8 logits
/// with the `.tcm`'s output scale and zero point.
///
/// A ReLU fused into a layer is the clamp at its output zero point; the quantizer gives ReLU
/// outputs zero point -128, where that clamp is int8 saturation itself, so `QLinearConv` alone
/// expresses it (checked here). Also checked: the scales are ones tract computes exactly as the
/// runtime does (see [`ExportError`]); [`int8_model_any_scales`] skips that check.
pub fn int8_model(q: &QuantizedCnn) -> Result<Vec<u8>, ExportError> {
    if q.input.scale != PIXEL_SCALE {
        return Err(ExportError::InputScale {
            scale: q.input.scale,
        });
    }
    for (l, &layer) in q.layers.iter().zip(&LAYER_NAMES) {
        if !is_power_of_two(l.output.scale) {
            return Err(ExportError::OutputScale {
                layer,
                scale: l.output.scale,
            });
        }
    }
    int8_model_any_scales(q)
}

/// [`int8_model`] without the check of the scales: for experiments that show why the check
/// exists (tract and the runtime then disagree on some logits). The ReLU zero points are still
/// checked, since without them the graph would compute something else.
pub fn int8_model_any_scales(q: &QuantizedCnn) -> Result<Vec<u8>, ExportError> {
    let names = LAYER_NAMES;
    for (l, &name) in q.layers.iter().zip(&names).take(4) {
        if l.output.zero_point != -128 {
            return Err(ExportError::ReluZeroPoint {
                layer: name,
                zero_point: l.output.zero_point,
            });
        }
    }
    let mut nodes = Vec::new();
    let mut init = Vec::new();
    // ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zero_point).
    init.push(f32s("input.scale", &[], &[q.input.scale]));
    init.push(i8s("input.zero_point", &[], &[q.input.zero_point]));
    nodes.push(node(
        "QuantizeLinear",
        "quantize",
        &[FLOAT_INPUT, "input.scale", "input.zero_point"],
        INT8_INPUT,
        vec![],
    ));
    let mut x = INT8_INPUT.to_string();
    for (i, pad) in [1, 0, 0].into_iter().enumerate() {
        let out = qlinear_conv(&mut nodes, &mut init, names[i], &x, &q.layers[i], pad);
        x = format!("pool{}.out", i + 1);
        nodes.push(node(
            "MaxPool",
            &format!("pool{}", i + 1),
            &[&out],
            &x,
            pool_attributes(),
        ));
    }
    // Flatten in NCHW order, as the float model does, into a 1x1 map for the 1x1 convolutions.
    init.push(i64s("flatten.shape", &[4], &[-1, 1024, 1, 1]));
    nodes.push(node(
        "Reshape",
        "flatten",
        &[&x, "flatten.shape"],
        "flatten.out",
        vec![],
    ));
    let fc1 = qlinear_conv(&mut nodes, &mut init, "fc1", "flatten.out", &q.layers[3], 0);
    let fc2 = qlinear_conv(&mut nodes, &mut init, "fc2", &fc1, &q.layers[4], 0);
    init.push(i64s("logits.shape", &[2], &[-1, 10]));
    nodes.push(node(
        "Reshape",
        "logits",
        &[&fc2, "logits.shape"],
        INT8_OUTPUT,
        vec![],
    ));
    Ok(model(GraphProto {
        name: "tinyconv_mnist_cnn_int8".into(),
        node: nodes,
        initializer: init,
        input: vec![value_info(
            FLOAT_INPUT,
            DataType::Float,
            &[None, Some(1), Some(28), Some(28)],
        )],
        output: vec![value_info(INT8_OUTPUT, DataType::Int8, &[None, Some(10)])],
        ..Default::default()
    }))
}
