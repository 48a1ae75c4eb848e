//! The int8 ONNX export of a model-format-v2 graph ([`tinyconv::graph::Graph`]) under
//! [`Rule::Onnx`], for the host referee: tract runs it with its integer kernels and must give
//! the runtime's output bytes exactly.
//!
//! The ONNX model's input and output are the runtime's int8 tensors, NHWC (`[1, H, W, C]`), byte
//! for byte; inside, every tensor is NCHW (`[1, C, H, W]`, ONNX's layout), with a `Transpose`
//! after the input and before the output.
//!
//! | runtime op | ONNX |
//! | --- | --- |
//! | conv2d | `QLinearConv`, weights OHWI → OIHW, `pads` `[top, left, bottom, right]`, `strides` |
//! | depthwise conv2d | `QLinearConv` with `group = C`, weights HWC → `[C, 1, KH, KW]` |
//! | dense | `QLinearConv` whose kernel is the whole `H x W` input: weights `[out][NHWC index]` → `[out, C, H, W]`, so the runtime's NHWC flatten order needs no transpose |
//! | max pool | `MaxPool` on int8 with `pads` (padding never wins, as in the runtime) |
//! | reshape | NCHW → NHWC `Transpose`, `Reshape`, NHWC → NCHW `Transpose` (the runtime reshapes NHWC bytes); just a `Reshape` when both shapes have `H = W = 1` |
//! | add | QDQ: `DequantizeLinear` of each input (its own scale and zero point), `Add`, `QuantizeLinear` (tract-onnx 0.23.9 has no `QLinearAdd`; it runs the Add in f32) |
//! | avg pool | QDQ: `DequantizeLinear`, `AveragePool` with `pads` and `count_include_pad = 0`, `QuantizeLinear` (no `QLinearAveragePool` either); a global pool is the window of the whole map |
//! | fused clamp | `Clip` on int8 with int8 bounds (tract: int8 `Max` then `Min`); none when it is the whole int8 range |
//!
//! Requantization is exact only with power-of-two output scales of conv, depthwise and dense
//! (see `docs/quantization.md`, "Which scales are exact"): [`int8_onnx`] refuses others,
//! [`int8_onnx_any_scales`] exports them for experiments. The QDQ add and average pool are exact
//! at any scales: the runtime emulates tract's f32 arithmetic bit for bit (`tinyconv::soft_f32`).
//! softmax has no exact ONNX form here and is refused (the runtime refuses it under the onnx
//! rule too).

use prost::Message;
use tinyconv::QuantParams;
use tinyconv::graph::{Clamp, Graph, Node, OpKind, Rule};
use tract_onnx::pb::{
    GraphProto, ModelProto, OperatorSetIdProto, TensorProto, ValueInfoProto, tensor_proto::DataType,
};

use crate::onnx::{Builder, f32s, i8s, i32s, int, ints, is_power_of_two};

/// Opset 13: QLinearConv with per-channel weight scales, int8 MaxPool, Clip with int8 bounds.
const OPSET: i64 = 13;
/// The graph input: the runtime's int8 input tensor, `[1, H, W, C]`.
pub const INPUT: &str = "input";
/// The graph output: the runtime's int8 output tensor, `[1, H, W, C]`.
pub const OUTPUT: &str = "output";

/// Why a graph is not exported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnnxGraphError {
    #[error("the graph's rule is {rule}: only onnx-rule graphs have an exact ONNX form")]
    Rule { rule: &'static str },
    #[error(
        "op {op} ({name}) has no exact int8 ONNX export (tract has no QLinearSoftmax; \
         the runtime refuses it under the onnx rule too)"
    )]
    Unsupported { op: usize, name: &'static str },
    #[error(
        "op {op} ({name}): output scale {scale:e} is not a power of two; tract folds \
         s_in * s_w / s_out in an order that depends on the layer, and only power-of-two output \
         scales make every order the runtime's f32 multiplier (docs/quantization.md); \
         int8_onnx_any_scales exports it anyway"
    )]
    OutputScale {
        op: usize,
        name: &'static str,
        scale: f32,
    },
}

/// An int8 graph input or output of fixed shape.
fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let dims: Vec<Option<usize>> = dims.iter().map(|&d| Some(d)).collect();
    crate::onnx::value_info(name, DataType::Int8, &dims)
}

impl Builder {
    /// `Clip(x, min, max)` with int8 bounds, or `x` itself for the whole int8 range.
    fn clamp(&mut self, name: &str, x: String, clamp: Clamp, out: &str) -> String {
        if clamp == Clamp::NONE {
            return x;
        }
        let (lo, hi) = (format!("{name}.clip.min"), format!("{name}.clip.max"));
        self.init.push(i8s(&lo, &[], &[clamp.min]));
        self.init.push(i8s(&hi, &[], &[clamp.max]));
        self.node(
            "Clip",
            &format!("{name}.clip"),
            &[&x, &lo, &hi],
            out,
            vec![],
        );
        out.to_string()
    }
}

impl Builder {
    /// `DequantizeLinear(x, {op}.{which}_scale, {op}.{which}_zero_point)` (f32, NCHW).
    fn dequantize_op(&mut self, op: &str, which: &str, x: &str, q: QuantParams) -> String {
        let (s, z) = (
            format!("{op}.{which}_scale"),
            format!("{op}.{which}_zero_point"),
        );
        let out = format!("{op}.{which}.f32");
        self.init.push(f32s(&s, &[], &[q.scale]));
        self.init.push(i8s(&z, &[], &[q.zero_point]));
        self.node(
            "DequantizeLinear",
            &format!("{op}.{which}.dq"),
            &[x, &s, &z],
            &out,
            vec![],
        );
        out
    }

    /// `QuantizeLinear(x, {op}.y_scale, {op}.y_zero_point)` (int8).
    fn quantize_op(&mut self, op: &str, x: &str, q: QuantParams) -> String {
        let (s, z) = (format!("{op}.y_scale"), format!("{op}.y_zero_point"));
        let out = format!("{op}.q");
        self.init.push(f32s(&s, &[], &[q.scale]));
        self.init.push(i8s(&z, &[], &[q.zero_point]));
        self.node(
            "QuantizeLinear",
            &format!("{op}.q"),
            &[x, &s, &z],
            &out,
            vec![],
        );
        out
    }
}

/// ONNX name of runtime tensor `t` (NCHW).
fn tname(t: usize) -> String {
    format!("t{t}")
}

/// Weights in ONNX's `[out, in / group, KH, KW]` order, and that shape.
fn onnx_weights(n: &Node<'_>) -> (Vec<i8>, [usize; 4]) {
    let (i, o, w) = (n.input.shape, n.output_info.shape, n.window);
    let (kh, kw) = (w.kernel_h, w.kernel_w);
    match n.kind {
        OpKind::Conv2d => {
            // OHWI → OIHW.
            let mut v = vec![0i8; n.weights.len()];
            for oc in 0..o.c {
                for y in 0..kh {
                    for x in 0..kw {
                        for ic in 0..i.c {
                            v[((oc * i.c + ic) * kh + y) * kw + x] =
                                n.weights[((oc * kh + y) * kw + x) * i.c + ic];
                        }
                    }
                }
            }
            (v, [o.c, i.c, kh, kw])
        }
        OpKind::DepthwiseConv2d => {
            // HWC → [C, 1, KH, KW].
            let c = i.c;
            let mut v = vec![0i8; n.weights.len()];
            for ch in 0..c {
                for k in 0..kh * kw {
                    v[ch * kh * kw + k] = n.weights[k * c + ch];
                }
            }
            (v, [c, 1, kh, kw])
        }
        _ => {
            // Dense, [out][(y * W + x) * C + c] → [out, C, H, W]: a conv whose kernel is the
            // whole input reads the runtime's NHWC flatten order with no transpose.
            // (`dense::weight` reads either storage layout, the wide one included.)
            let per = i.len();
            let mut v = vec![0i8; o.c * per];
            for oc in 0..o.c {
                for y in 0..i.h {
                    for x in 0..i.w {
                        for ic in 0..i.c {
                            v[oc * per + (ic * i.h + y) * i.w + x] =
                                tinyconv::graph::ops::dense::weight(
                                    n,
                                    oc,
                                    (y * i.w + x) * i.c + ic,
                                    per,
                                );
                        }
                    }
                }
            }
            (v, [o.c, i.c, i.h, i.w])
        }
    }
}

fn qlinear_conv(b: &mut Builder, n: &Node<'_>, form: ScaleForm) -> String {
    let name = format!("op{}", n.index);
    let p = |s: &str| format!("{name}.{s}");
    let (weights, dims) = onnx_weights(n);
    let o = dims[0];
    let bias: Vec<i32> = (0..o).map(|c| n.channels.bias(c)).collect();
    let (x_scale, y_scale) = (n.input.quant.scale, n.output_info.quant.scale);
    // The multiplier form: unit activation scales and the runtime's multiplier as the weight
    // scale, so tract's product of the three is that multiplier in every order.
    let multipliers = form == ScaleForm::Multipliers && !is_power_of_two(y_scale);
    let scales: Vec<f32> = (0..o)
        .map(|c| match multipliers {
            true => tinyconv::quant::combined_scale(x_scale, n.weight_scale(c), y_scale),
            false => n.weight_scale(c),
        })
        .collect();
    let (x_scale, y_scale) = match multipliers {
        true => (1.0, 1.0),
        false => (x_scale, y_scale),
    };
    b.init.push(f32s(&p("x_scale"), &[], &[x_scale]));
    b.init
        .push(i8s(&p("x_zero_point"), &[], &[n.input.quant.zero_point]));
    b.init.push(i8s(&p("w"), &dims, &weights));
    b.init.push(f32s(&p("w_scale"), &[o], &scales));
    b.init.push(i8s(&p("w_zero_point"), &[o], &vec![0; o]));
    b.init.push(f32s(&p("y_scale"), &[], &[y_scale]));
    b.init.push(i8s(
        &p("y_zero_point"),
        &[],
        &[n.output_info.quant.zero_point],
    ));
    b.init.push(i32s(&p("bias"), &[o], &bias));
    let w = n.window;
    let attrs = match n.kind {
        OpKind::Dense => vec![ints("kernel_shape", &[dims[2] as i64, dims[3] as i64])],
        _ => {
            let pads = [w.pad_top, w.pad_left, w.pad_bottom, w.pad_right].map(|v| v as i64);
            let mut a = vec![
                ints("kernel_shape", &[w.kernel_h as i64, w.kernel_w as i64]),
                ints("strides", &[w.stride_h as i64, w.stride_w as i64]),
                ints("pads", &pads),
            ];
            if n.kind == OpKind::DepthwiseConv2d {
                a.push(int("group", o as i64));
            }
            a
        }
    };
    let inputs = [
        tname(n.inputs[0]),
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
    let out = p("conv");
    b.node("QLinearConv", &name, &inputs, &out, attrs);
    out
}

fn check_rule(graph: &Graph<'_>) -> Result<(), OnnxGraphError> {
    if graph.rule() != Rule::Onnx {
        return Err(OnnxGraphError::Rule {
            rule: graph.rule().name(),
        });
    }
    Ok(())
}

/// The int8 ONNX model of an onnx-rule graph whose every conv, depthwise and dense output scale
/// is a power of two: input and output int8 `[1, H, W, C]` (the runtime's bytes). tract's
/// integer evaluation of it equals [`Graph::infer_int8`] on every byte.
pub fn int8_onnx(graph: &Graph<'_>) -> Result<Vec<u8>, OnnxGraphError> {
    check_rule(graph)?;
    for n in graph.nodes() {
        let scale = n.output_info.quant.scale;
        if n.kind.has_weights() && !is_power_of_two(scale) {
            return Err(OnnxGraphError::OutputScale {
                op: n.index,
                name: n.kind.name(),
                scale,
            });
        }
    }
    export(graph, ScaleForm::Stated)
}

/// How a conv, depthwise or dense layer states its scales in the export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScaleForm {
    /// The tensors' own scales (exact when the output scale is a power of two).
    Stated,
    /// Where the output scale is not a power of two: input and output scale 1 and the runtime's
    /// f32 multiplier `s_w * (s_in * (1 / s_out))` as the weight scale of each channel.
    Multipliers,
}

/// [`int8_onnx`] without the power-of-two check, for experiments (tract and the runtime may
/// then differ by one step where tract's folded f32 multiplier differs from the runtime's).
pub fn int8_onnx_any_scales(graph: &Graph<'_>) -> Result<Vec<u8>, OnnxGraphError> {
    export(graph, ScaleForm::Stated)
}

/// The int8 ONNX model of any onnx-rule graph, exact at any scales: a conv, depthwise or dense
/// layer whose output scale is not a power of two states input and output scale 1 and, as its
/// per-channel weight scale, the runtime's f32 multiplier (`tinyconv::quant::combined_scale`),
/// so that tract's folded product is that multiplier whatever its order. tract then checks the
/// integer arithmetic (accumulation, zero points, bias, rounding, saturation, clamps) bit for
/// bit; what it no longer checks is the multiplier's derivation from the three scales, which
/// ONNX defines in real numbers and engines round in different orders (docs/quantization.md).
/// Layers with power-of-two output scales are exported as [`int8_onnx`] writes them.
pub fn int8_onnx_multipliers(graph: &Graph<'_>) -> Result<Vec<u8>, OnnxGraphError> {
    export(graph, ScaleForm::Multipliers)
}

/// Whether [`int8_onnx`] exports `graph` with its stated scales (every conv, depthwise and
/// dense output scale a power of two).
pub fn has_stated_form(graph: &Graph<'_>) -> bool {
    graph
        .nodes()
        .all(|n| !n.kind.has_weights() || is_power_of_two(n.output_info.quant.scale))
}

fn export(graph: &Graph<'_>, form: ScaleForm) -> Result<Vec<u8>, OnnxGraphError> {
    check_rule(graph)?;
    let mut b = Builder::default();
    let input = graph.input();
    let s = input.shape;
    b.transpose(
        "input.nchw",
        INPUT,
        &tname(graph.input_index()),
        [0, 3, 1, 2],
    );
    for n in graph.nodes() {
        let out = tname(n.output);
        let name = format!("op{}", n.index);
        match n.kind {
            OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::Dense => {
                let conv = qlinear_conv(&mut b, &n, form);
                let y = b.clamp(&name, conv, n.clamp, &out);
                if y != out {
                    b.node("Identity", &format!("{name}.out"), &[&y], &out, vec![]);
                }
            }
            OpKind::MaxPool => {
                let w = n.window;
                let pads = [w.pad_top, w.pad_left, w.pad_bottom, w.pad_right].map(|v| v as i64);
                let attrs = vec![
                    ints("kernel_shape", &[w.kernel_h as i64, w.kernel_w as i64]),
                    ints("strides", &[w.stride_h as i64, w.stride_w as i64]),
                    ints("pads", &pads),
                ];
                let pooled = format!("{name}.pool");
                b.node("MaxPool", &name, &[&tname(n.inputs[0])], &pooled, attrs);
                let y = b.clamp(&name, pooled, n.clamp, &out);
                if y != out {
                    b.node("Identity", &format!("{name}.out"), &[&y], &out, vec![]);
                }
            }
            OpKind::Reshape => {
                let (i, o) = (n.input.shape, n.output_info.shape);
                let x = tname(n.inputs[0]);
                if i.h == 1 && i.w == 1 && o.h == 1 && o.w == 1 {
                    b.reshape(&name, &x, &out, [1, o.c, 1, 1]);
                } else {
                    let (a, r) = (format!("{name}.nhwc"), format!("{name}.reshaped"));
                    b.transpose(&format!("{name}.to_nhwc"), &x, &a, [0, 2, 3, 1]);
                    b.reshape(&name, &a, &r, [1, o.h, o.w, o.c]);
                    b.transpose(&format!("{name}.to_nchw"), &r, &out, [0, 3, 1, 2]);
                }
            }
            OpKind::Add => {
                let fa = b.dequantize_op(&name, "a", &tname(n.inputs[0]), n.input.quant);
                let fb = b.dequantize_op(&name, "b", &tname(n.inputs[1]), n.input2.quant);
                let sum = format!("{name}.sum");
                b.node("Add", &format!("{name}.add"), &[&fa, &fb], &sum, vec![]);
                let q = b.quantize_op(&name, &sum, n.output_info.quant);
                let y = b.clamp(&name, q, n.clamp, &out);
                if y != out {
                    b.node("Identity", &format!("{name}.out"), &[&y], &out, vec![]);
                }
            }
            OpKind::AvgPool => {
                let w = n.window;
                let pads = [w.pad_top, w.pad_left, w.pad_bottom, w.pad_right].map(|v| v as i64);
                let attrs = vec![
                    ints("kernel_shape", &[w.kernel_h as i64, w.kernel_w as i64]),
                    ints("strides", &[w.stride_h as i64, w.stride_w as i64]),
                    ints("pads", &pads),
                    int("count_include_pad", 0),
                ];
                let fx = b.dequantize_op(&name, "x", &tname(n.inputs[0]), n.input.quant);
                let pooled = format!("{name}.pool");
                b.node("AveragePool", &name, &[&fx], &pooled, attrs);
                let q = b.quantize_op(&name, &pooled, n.output_info.quant);
                let y = b.clamp(&name, q, n.clamp, &out);
                if y != out {
                    b.node("Identity", &format!("{name}.out"), &[&y], &out, vec![]);
                }
            }
            OpKind::Softmax => {
                return Err(OnnxGraphError::Unsupported {
                    op: n.index,
                    name: n.kind.name(),
                });
            }
        }
    }
    b.transpose(
        "output.nhwc",
        &tname(graph.output_index()),
        OUTPUT,
        [0, 2, 3, 1],
    );
    let o = graph.output().shape;
    let graph = GraphProto {
        name: "tinyconv_graph_int8".into(),
        node: b.nodes,
        initializer: b.init,
        input: vec![value_info(INPUT, &[1, s.h, s.w, s.c])],
        output: vec![value_info(OUTPUT, &[1, o.h, o.w, o.c])],
        ..Default::default()
    };
    Ok(crate::onnx::model(graph))
}

/// `onnx` with initializer `name` rewritten by `f` (for negative controls: a perturbed scale or
/// zero point must make tract and the runtime differ); `None` if the bytes do not decode or have
/// no such initializer.
pub fn with_initializer(
    onnx: &[u8],
    name: &str,
    f: impl FnOnce(&mut TensorProto),
) -> Option<Vec<u8>> {
    let mut model = ModelProto::decode(onnx).ok()?;
    let init = model
        .graph
        .as_mut()?
        .initializer
        .iter_mut()
        .find(|t| t.name == name)?;
    f(init);
    Some(model.encode_to_vec())
}

/// The quantization of one tensor of the QDQ experiments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Qdq {
    pub scale: f32,
    pub zero_point: i8,
}

fn qdq_model(
    b: Builder,
    inputs: Vec<ValueInfoProto>,
    output_dims: &[usize],
    name: &str,
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "tinyconv".into(),
        graph: Some(GraphProto {
            name: name.into(),
            node: b.nodes,
            initializer: b.init,
            input: inputs,
            output: vec![value_info(OUTPUT, output_dims)],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn dequantize(b: &mut Builder, x: &str, q: Qdq) -> String {
    let (s, z, out) = (format!("{x}.scale"), format!("{x}.zp"), format!("{x}.f32"));
    b.init.push(f32s(&s, &[], &[q.scale]));
    b.init.push(i8s(&z, &[], &[q.zero_point]));
    b.node(
        "DequantizeLinear",
        &format!("{x}.dq"),
        &[x, &s, &z],
        &out,
        vec![],
    );
    out
}

fn quantize(b: &mut Builder, x: &str, q: Qdq) {
    let (s, z) = ("y.scale".to_string(), "y.zp".to_string());
    b.init.push(f32s(&s, &[], &[q.scale]));
    b.init.push(i8s(&z, &[], &[q.zero_point]));
    b.node("QuantizeLinear", "y.q", &[x, &s, &z], OUTPUT, vec![]);
}

/// An experiment, not an export: the QDQ form of an int8 add, `QuantizeLinear(
/// DequantizeLinear(a) + DequantizeLinear(b))`, inputs `a` and `b` int8 `[1, len]`, output
/// int8 `[1, len]` (tract-onnx 0.23.9 has no `QLinearAdd`).
pub fn qdq_add_model(len: usize, a: Qdq, b: Qdq, y: Qdq) -> Vec<u8> {
    let mut m = Builder::default();
    let fa = dequantize(&mut m, "a", a);
    let fb = dequantize(&mut m, "b", b);
    m.node("Add", "add", &[&fa, &fb], "sum", vec![]);
    quantize(&mut m, "sum", y);
    let inputs = vec![value_info("a", &[1, len]), value_info("b", &[1, len])];
    qdq_model(m, inputs, &[1, len], "qdq_add")
}

/// An experiment, not an export: the QDQ form of an int8 average pool over NCHW `[1, c, h, w]`
/// (`count_include_pad = 0`), `QuantizeLinear(AveragePool(DequantizeLinear(x)))` (tract-onnx
/// 0.23.9 has no `QLinearAveragePool`).
pub fn qdq_avg_pool_model(
    chw: [usize; 3],
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    x: Qdq,
    y: Qdq,
) -> Vec<u8> {
    let mut m = Builder::default();
    let fx = dequantize(&mut m, "x", x);
    let [c, h, w] = chw;
    let attrs = vec![
        ints("kernel_shape", &kernel.map(|v| v as i64)),
        ints("strides", &strides.map(|v| v as i64)),
        ints("pads", &pads.map(|v| v as i64)),
        int("count_include_pad", 0),
    ];
    m.node("AveragePool", "pool", &[&fx], "pooled", attrs);
    quantize(&mut m, "pooled", y);
    let oh = (h + pads[0] + pads[2] - kernel[0]) / strides[0] + 1;
    let ow = (w + pads[1] + pads[3] - kernel[1]) / strides[1] + 1;
    let inputs = vec![value_info("x", &[1, c, h, w])];
    qdq_model(m, inputs, &[1, c, oh, ow], "qdq_avg_pool")
}
