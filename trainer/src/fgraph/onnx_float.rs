//! The float ONNX model (opset 13) of a [`FloatGraph`], so that tract's float run is a reading
//! of the graph independent of [`super::interpret`].
//!
//! Input `[1, H, W, C]` f32 NHWC and output `[1, H, W, C]` NHWC, as the graph's tensors; inside,
//! NCHW with a `Transpose` after the input and before the output (as `onnx_graph` does).
//!
//! | float op | ONNX |
//! | --- | --- |
//! | conv2d | `Conv`, weights OHWI → OIHW, `pads` `[top, left, bottom, right]`, `strides` |
//! | depthwise | `Conv` with `group = C`, weights HWC → `[C, 1, KH, KW]` |
//! | dense | `Conv` whose kernel is the whole input: weights `[out][NHWC index]` → `[out, C, H, W]`, so the NHWC flatten order needs no transpose |
//! | max pool | `MaxPool` with `pads` (padding never wins) |
//! | avg pool | `GlobalAveragePool` for an unpadded window of the whole input, else `AveragePool` with `pads` and `count_include_pad = 0` |
//! | add | `Add` |
//! | reshape | NCHW → NHWC `Transpose`, `Reshape`, back; just `Reshape` between `1x1` shapes |
//! | ReLU / ReLU6 | `Relu` / `Clip(0, 6)` |

use tract_onnx::pb::{AttributeProto, GraphProto, tensor_proto::DataType};

use super::{Act, FloatGraph, FloatOp, Shape, Window};
use crate::onnx::{Builder, f32s, int, ints, value_info};

/// The graph input: the input tensor, f32 `[1, H, W, C]`.
pub const INPUT: &str = "input";
/// The graph output: the output tensor, f32 `[1, H, W, C]`.
pub const OUTPUT: &str = "output";

/// ONNX name of graph tensor `t` (NCHW).
fn tname(t: usize) -> String {
    format!("t{t}")
}

impl Builder {
    /// The name the op's own node writes: `out`, or `{name}.raw` when an activation follows.
    fn raw(name: &str, act: Act, out: &str) -> String {
        match act {
            Act::None => out.to_string(),
            _ => format!("{name}.raw"),
        }
    }

    /// The activation node `out = act({name}.raw)`, after the op's node (nodes in order).
    fn act(&mut self, name: &str, act: Act, out: &str) {
        let raw = format!("{name}.raw");
        match act {
            Act::None => {}
            Act::Relu => self.node("Relu", &format!("{name}.relu"), &[&raw], out, vec![]),
            Act::Relu6 => {
                let (lo, hi) = (format!("{name}.clip.min"), format!("{name}.clip.max"));
                self.init.push(f32s(&lo, &[], &[0.0]));
                self.init.push(f32s(&hi, &[], &[6.0]));
                self.node(
                    "Clip",
                    &format!("{name}.relu6"),
                    &[&raw, &lo, &hi],
                    out,
                    vec![],
                );
            }
        }
    }
}

fn window_attrs(w: &Window) -> Vec<AttributeProto> {
    let p = w.pads;
    vec![
        ints("kernel_shape", &[w.kernel_h as i64, w.kernel_w as i64]),
        ints("strides", &[w.stride_h as i64, w.stride_w as i64]),
        ints(
            "pads",
            &[p.top, p.left, p.bottom, p.right].map(|v| v as i64),
        ),
    ]
}

/// Conv weights in ONNX's `[out, in / group, KH, KW]` order, and that shape.
fn conv_weights(
    w: &Window,
    depthwise: bool,
    weights: &[f32],
    x: Shape,
    y: Shape,
) -> (Vec<f32>, [usize; 4]) {
    let (kh, kw) = (w.kernel_h, w.kernel_w);
    let mut v = vec![0f32; weights.len()];
    if depthwise {
        // HWC → [C, 1, KH, KW].
        for c in 0..x.c {
            for k in 0..kh * kw {
                v[c * kh * kw + k] = weights[k * x.c + c];
            }
        }
        return (v, [x.c, 1, kh, kw]);
    }
    // OHWI → OIHW.
    for oc in 0..y.c {
        for ky in 0..kh {
            for kx in 0..kw {
                for ic in 0..x.c {
                    v[((oc * x.c + ic) * kh + ky) * kw + kx] =
                        weights[((oc * kh + ky) * kw + kx) * x.c + ic];
                }
            }
        }
    }
    (v, [y.c, x.c, kh, kw])
}

/// Dense weights `[out][(y * W + x) * C + c]` → `[out, C, H, W]`.
fn dense_weights(weights: &[f32], x: Shape, outputs: usize) -> (Vec<f32>, [usize; 4]) {
    let per = x.len();
    let mut v = vec![0f32; weights.len()];
    for o in 0..outputs {
        for py in 0..x.h {
            for px in 0..x.w {
                for c in 0..x.c {
                    v[o * per + (c * x.h + py) * x.w + px] =
                        weights[o * per + (py * x.w + px) * x.c + c];
                }
            }
        }
    }
    (v, [outputs, x.c, x.h, x.w])
}

/// A `Conv` node `name` over `x` writing `out`.
fn conv_node(
    b: &mut Builder,
    name: &str,
    x: &str,
    out: &str,
    weights: (Vec<f32>, [usize; 4]),
    bias: &[f32],
    attrs: Vec<AttributeProto>,
) {
    let (w, dims) = weights;
    let (wn, bn) = (format!("{name}.w"), format!("{name}.b"));
    b.init.push(f32s(&wn, &dims, &w));
    b.init.push(f32s(&bn, &[bias.len()], bias));
    b.node("Conv", name, &[x, &wn, &bn], out, attrs);
}

/// The float ONNX model of `graph` (assumed valid: see [`super::interpret::validate`]).
pub fn float_onnx(graph: &FloatGraph) -> Vec<u8> {
    let t = &graph.tensors;
    let mut b = Builder::default();
    b.transpose("input.nchw", INPUT, &tname(graph.input), [0, 3, 1, 2]);
    for (i, op) in graph.ops.iter().enumerate() {
        let name = format!("op{i}");
        let out = tname(op.output());
        match op {
            FloatOp::Conv2d {
                input,
                output,
                window,
                depthwise,
                weights,
                bias,
                act,
            } => {
                let (x, y) = (t[*input], t[*output]);
                let mut attrs = window_attrs(window);
                if *depthwise {
                    attrs.push(int("group", x.c as i64));
                }
                let raw = Builder::raw(&name, *act, &out);
                let w = conv_weights(window, *depthwise, weights, x, y);
                conv_node(&mut b, &name, &tname(*input), &raw, w, bias, attrs);
                b.act(&name, *act, &out);
            }
            FloatOp::Dense {
                input,
                output,
                weights,
                bias,
                act,
            } => {
                let x = t[*input];
                let attrs = vec![ints("kernel_shape", &[x.h as i64, x.w as i64])];
                let raw = Builder::raw(&name, *act, &out);
                let w = dense_weights(weights, x, t[*output].c);
                conv_node(&mut b, &name, &tname(*input), &raw, w, bias, attrs);
                b.act(&name, *act, &out);
            }
            FloatOp::MaxPool { input, window, .. } => {
                b.node(
                    "MaxPool",
                    &name,
                    &[&tname(*input)],
                    &out,
                    window_attrs(window),
                );
            }
            FloatOp::AvgPool { input, window, .. } => {
                let x = t[*input];
                let p = window.pads;
                let global = window.kernel_h == x.h
                    && window.kernel_w == x.w
                    && p.top + p.left + p.bottom + p.right == 0;
                if global {
                    b.node("GlobalAveragePool", &name, &[&tname(*input)], &out, vec![]);
                } else {
                    let mut attrs = window_attrs(window);
                    attrs.push(int("count_include_pad", 0));
                    b.node("AveragePool", &name, &[&tname(*input)], &out, attrs);
                }
            }
            FloatOp::Add { inputs, act, .. } => {
                let raw = Builder::raw(&name, *act, &out);
                b.node(
                    "Add",
                    &name,
                    &[&tname(inputs[0]), &tname(inputs[1])],
                    &raw,
                    vec![],
                );
                b.act(&name, *act, &out);
            }
            FloatOp::Reshape { input, output } => {
                let (x, y) = (t[*input], t[*output]);
                if x.h == 1 && x.w == 1 && y.h == 1 && y.w == 1 {
                    b.reshape(&name, &tname(*input), &out, [1, y.c, 1, 1]);
                } else {
                    // The graph reshapes NHWC values: reshape them in that order.
                    let (a, r) = (format!("{name}.nhwc"), format!("{name}.reshaped"));
                    b.transpose(&format!("{name}.to_nhwc"), &tname(*input), &a, [0, 2, 3, 1]);
                    b.reshape(&name, &a, &r, [1, y.h, y.w, y.c]);
                    b.transpose(&format!("{name}.to_nchw"), &r, &out, [0, 3, 1, 2]);
                }
            }
        }
    }
    b.transpose("output.nhwc", &tname(graph.output), OUTPUT, [0, 2, 3, 1]);
    let dims = |s: Shape| [Some(1), Some(s.h), Some(s.w), Some(s.c)];
    let graph = GraphProto {
        name: "tinyconv_float_graph".into(),
        node: b.nodes,
        initializer: b.init,
        input: vec![value_info(INPUT, DataType::Float, &dims(t[graph.input]))],
        output: vec![value_info(OUTPUT, DataType::Float, &dims(t[graph.output]))],
        ..Default::default()
    };
    crate::onnx::model(graph)
}
