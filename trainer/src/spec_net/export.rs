//! A trained [`SpecNet`] as a [`FloatGraph`]: batch norm folded into the convolution or dense
//! layer before it, ReLU / ReLU6 fused into the op that produces their input, dropout gone,
//! weights moved to the runtime's layouts (OHWI, HWC, `[out][in]` in NHWC flatten order).
//!
//! Folding (`docs/model-spec.md`): a batch norm `y = γ (x − μ) / √(σ² + ε) + β` after a layer
//! `x = W·a + b` is the layer `W' = W·s`, `b' = (b − μ)·s + β` with `s = γ / √(σ² + ε)` per
//! output channel, using the running mean and variance (inference statistics).

use burn::prelude::*;

use super::{Op, SpecNet};
use crate::fgraph::{Act, FloatGraph, FloatOp, Pads, Shape, Window};

/// Why a network has no float-graph form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    #[error(
        "step {step} ({what}) must directly follow a conv or dense layer whose output nothing \
         else reads (batch norm is folded into that layer)"
    )]
    BatchNormPlacement { step: usize, what: &'static str },
    #[error(
        "step {step} ({what}) must directly follow a conv, dense, batch norm or residual add \
         whose output nothing else reads (activations are fused into the op before them)"
    )]
    ActivationPlacement { step: usize, what: &'static str },
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 parameters read back")
}

/// A layer's bias, or zeros for a layer without one.
fn bias_or_zeros(bias: &Option<burn::module::Param<Tensor<1>>>, len: usize) -> Vec<f32> {
    match bias {
        Some(b) => floats(b.val()),
        None => vec![0.0; len],
    }
}

/// The graph's window of a spec layer's kernel, stride and padding.
fn window(kernel: [usize; 2], stride: [usize; 2], p: tinyconv_spec::Pads) -> Window {
    Window {
        kernel_h: kernel[0],
        kernel_w: kernel[1],
        stride_h: stride[0],
        stride_w: stride[1],
        pads: Pads {
            top: p.top,
            left: p.left,
            bottom: p.bottom,
            right: p.right,
        },
    }
}

fn shape(s: [usize; 3]) -> Shape {
    Shape::new(s[0], s[1], s[2])
}

/// Where a value of the network lives in the graph being built.
#[derive(Clone, Copy, Debug)]
struct Value {
    tensor: usize,
    /// A flattened value whose burn order is NCHW of this `[h, w, c]` shape (the graph's
    /// order is NHWC: a dense reading it permutes its weight columns).
    nchw_of: Option<[usize; 3]>,
}

/// The float graph of `net`, in evaluation form (running statistics), with `pixel_scale` the
/// real value of one unit of a raw u8 pixel (the network is trained on pixel / 255).
pub fn export(net: &SpecNet, pixel_scale: Option<f32>) -> Result<FloatGraph, ExportError> {
    let steps = &net.steps;
    let mut graph = FloatGraph {
        tensors: vec![shape(steps.input)],
        input: 0,
        output: 0,
        ops: Vec::new(),
        pixel_scale,
    };
    let mut values = vec![Value {
        tensor: 0,
        nchw_of: None,
    }];
    // The graph op that wrote each value, when it is the value's first and only producer.
    let mut producer: Vec<Option<usize>> = vec![None];
    for (i, step) in steps.steps.iter().enumerate() {
        let inp = |k: usize| values[step.inputs[k]];
        let new_tensor = |graph: &mut FloatGraph, s: Shape| {
            graph.tensors.push(s);
            graph.tensors.len() - 1
        };
        // The op a fold or fusion changes: the producer of the step's only input, when
        // nothing but this step reads that value.
        let foldable = |graph: &FloatGraph| -> Option<usize> {
            let v = step.inputs[0];
            let op = producer[v]?;
            (steps.readers(v) == 1 && graph.ops[op].output() == values[v].tensor).then_some(op)
        };
        let index = step.index;
        let (value, made) = match step.op {
            Op::Input => unreachable!("the steps start after the input"),
            Op::Conv {
                kernel,
                stride,
                pads,
                depthwise,
                ..
            } => {
                let conv = &net.convs[index];
                let [o, ci, kh, kw] = conv.weight.dims();
                let w = floats(conv.weight.val());
                let mut weights = vec![0f32; w.len()];
                for oc in 0..o {
                    for y in 0..kh {
                        for x in 0..kw {
                            for ic in 0..ci {
                                let src = ((oc * ci + ic) * kh + y) * kw + x;
                                // OHWI, or HWC for depthwise (ci = 1, oc = channel).
                                let dst = if depthwise {
                                    (y * kw + x) * o + oc
                                } else {
                                    ((oc * kh + y) * kw + x) * ci + ic
                                };
                                weights[dst] = w[src];
                            }
                        }
                    }
                }
                let bias = bias_or_zeros(&conv.bias, o);
                let output = new_tensor(&mut graph, shape(step.shape));
                graph.ops.push(FloatOp::Conv2d {
                    input: inp(0).tensor,
                    output,
                    window: window(kernel, stride, pads),
                    depthwise,
                    weights,
                    bias,
                    act: Act::None,
                });
                (
                    Value {
                        tensor: output,
                        nchw_of: None,
                    },
                    true,
                )
            }
            Op::Dense { .. } => {
                let dense = &net.denses[index];
                let [fin, units] = dense.weight.dims();
                let w = floats(dense.weight.val());
                let mut weights = vec![0f32; w.len()];
                for j in 0..fin {
                    // burn's flatten is NCHW; the graph's input index is NHWC.
                    let col = match inp(0).nchw_of {
                        Some([h, wd, c]) => {
                            let (ch, rest) = (j / (h * wd), j % (h * wd));
                            rest * c + ch
                        }
                        None => j,
                    };
                    for u in 0..units {
                        weights[u * fin + col] = w[j * units + u];
                    }
                }
                let bias = bias_or_zeros(&dense.bias, units);
                let output = new_tensor(&mut graph, shape(step.shape));
                graph.ops.push(FloatOp::Dense {
                    input: inp(0).tensor,
                    output,
                    weights,
                    bias,
                    act: Act::None,
                });
                (
                    Value {
                        tensor: output,
                        nchw_of: None,
                    },
                    true,
                )
            }
            Op::BatchNorm { epsilon, .. } => {
                let what = "batch_norm";
                let op =
                    foldable(&graph).ok_or(ExportError::BatchNormPlacement { step: i, what })?;
                let bn = &net.norms[index];
                let gamma = floats(bn.gamma.val());
                let beta = floats(bn.beta.val());
                let mean = floats(bn.running_mean.value());
                let var = floats(bn.running_var.value());
                let scale: Vec<f32> = gamma
                    .iter()
                    .zip(&var)
                    .map(|(g, v)| g / (v + epsilon as f32).sqrt())
                    .collect();
                match &mut graph.ops[op] {
                    FloatOp::Conv2d {
                        weights,
                        bias,
                        depthwise,
                        act: Act::None,
                        ..
                    } => fold(weights, bias, &scale, &beta, &mean, *depthwise),
                    FloatOp::Dense {
                        weights,
                        bias,
                        act: Act::None,
                        ..
                    } => fold(weights, bias, &scale, &beta, &mean, false),
                    _ => return Err(ExportError::BatchNormPlacement { step: i, what }),
                }
                (inp(0), false)
            }
            Op::Relu | Op::Relu6 => {
                let what = if step.op == Op::Relu { "relu" } else { "relu6" };
                let op =
                    foldable(&graph).ok_or(ExportError::ActivationPlacement { step: i, what })?;
                let new = if step.op == Op::Relu {
                    Act::Relu
                } else {
                    Act::Relu6
                };
                match &mut graph.ops[op] {
                    FloatOp::Conv2d { act, .. }
                    | FloatOp::Dense { act, .. }
                    | FloatOp::Add { act, .. }
                        if *act == Act::None =>
                    {
                        *act = new
                    }
                    _ => return Err(ExportError::ActivationPlacement { step: i, what }),
                }
                (inp(0), false)
            }
            Op::MaxPool {
                kernel,
                stride,
                pads,
            }
            | Op::AvgPool {
                kernel,
                stride,
                pads,
            } => {
                let window = window(kernel, stride, pads);
                let output = new_tensor(&mut graph, shape(step.shape));
                let input = inp(0).tensor;
                graph.ops.push(if matches!(step.op, Op::MaxPool { .. }) {
                    FloatOp::MaxPool {
                        input,
                        output,
                        window,
                    }
                } else {
                    FloatOp::AvgPool {
                        input,
                        output,
                        window,
                    }
                });
                (
                    Value {
                        tensor: output,
                        nchw_of: None,
                    },
                    true,
                )
            }
            Op::GlobalAvgPool => {
                let s = graph.tensors[inp(0).tensor];
                let window = Window {
                    kernel_h: s.h,
                    kernel_w: s.w,
                    stride_h: 1,
                    stride_w: 1,
                    pads: Pads::default(),
                };
                let output = new_tensor(&mut graph, shape(step.shape));
                graph.ops.push(FloatOp::AvgPool {
                    input: inp(0).tensor,
                    output,
                    window,
                });
                (
                    Value {
                        tensor: output,
                        nchw_of: None,
                    },
                    true,
                )
            }
            Op::Dropout { .. } => (inp(0), false),
            Op::Flatten => {
                let s = graph.tensors[inp(0).tensor];
                let output = new_tensor(&mut graph, Shape::new(1, 1, s.h * s.w * s.c));
                graph.ops.push(FloatOp::Reshape {
                    input: inp(0).tensor,
                    output,
                });
                // Only a spatial map has an NCHW order that differs from NHWC.
                let nchw_of = (s.h * s.w > 1 && s.c > 1).then_some([s.h, s.w, s.c]);
                (
                    Value {
                        tensor: output,
                        nchw_of,
                    },
                    true,
                )
            }
            Op::Add => {
                let output = new_tensor(&mut graph, shape(step.shape));
                graph.ops.push(FloatOp::Add {
                    inputs: [inp(0).tensor, inp(1).tensor],
                    output,
                    act: Act::None,
                });
                (
                    Value {
                        tensor: output,
                        nchw_of: None,
                    },
                    true,
                )
            }
        };
        values.push(value);
        producer.push(if made {
            Some(graph.ops.len() - 1)
        } else {
            producer[step.inputs[0]]
        });
    }
    graph.output = values.last().expect("at least the input").tensor;
    Ok(graph)
}

/// Scale each output channel of `weights` by `scale` and shift the bias: the batch-norm fold.
/// `channel_innermost` for HWC depthwise weights, else the channel is outermost.
fn fold(
    weights: &mut [f32],
    bias: &mut [f32],
    scale: &[f32],
    beta: &[f32],
    mean: &[f32],
    channel_innermost: bool,
) {
    let channels = bias.len();
    let per = weights.len() / channels;
    for (k, w) in weights.iter_mut().enumerate() {
        let c = if channel_innermost {
            k % channels
        } else {
            k / per
        };
        *w *= scale[c];
    }
    for c in 0..channels {
        bias[c] = (bias[c] - mean[c]) * scale[c] + beta[c];
    }
}
