//! The float graph's reference: [`validate`] checks that a [`FloatGraph`] is well formed (order,
//! shapes, parameter lengths, and the runtime's window limits), [`run`] evaluates it plainly.
//!
//! Arithmetic: every sum (a conv's, dense's or average pool's) is accumulated in f64 in a fixed
//! order — bias first, then the taps in `ky, kx, c` (dense: input index) order — and rounded to
//! f32 once, after the fused activation. So the interpreter is at least as accurate as any f32
//! engine's, and its result does not depend on a summation order.

use super::{Act, FloatGraph, FloatOp, Shape, Window};

/// What is wrong with a float graph or its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FloatGraphError {
    #[error("the graph has no ops: give it at least one op writing the output tensor")]
    NoOps,
    #[error("tensor {tensor} has an empty shape {shape}: every dimension must be at least 1")]
    EmptyShape { tensor: usize, shape: Shape },
    #[error("{what} names tensor {tensor}, but the graph has {count} tensors")]
    TensorIndex {
        what: String,
        tensor: usize,
        count: usize,
    },
    #[error(
        "op {op} ({name}) reads tensor {tensor} before any op writes it: order the ops topologically"
    )]
    ReadBeforeWrite {
        op: usize,
        name: &'static str,
        tensor: usize,
    },
    #[error(
        "op {op} ({name}) writes tensor {tensor}, which the graph input or an earlier op already holds"
    )]
    WrittenTwice {
        op: usize,
        name: &'static str,
        tensor: usize,
    },
    #[error("tensor {tensor} is neither the input nor written by any op: remove it or add its op")]
    NeverWritten { tensor: usize },
    #[error("op {op} ({name}): {problem}")]
    Window {
        op: usize,
        name: &'static str,
        problem: &'static str,
    },
    #[error("op {op} ({name}): {what} has shape {actual}, but the op gives {expected}")]
    ShapeMismatch {
        op: usize,
        name: &'static str,
        what: &'static str,
        expected: Shape,
        actual: Shape,
    },
    #[error(
        "op {op} (reshape): input {input} has {input_len} values but output {output} has {output_len}"
    )]
    ReshapeSize {
        op: usize,
        input: Shape,
        output: Shape,
        input_len: usize,
        output_len: usize,
    },
    #[error("op {op} ({name}): {what} has {actual} values, expected {expected}")]
    ParamLength {
        op: usize,
        name: &'static str,
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("op {op} ({name}): {what} holds a NaN or infinity at index {index}")]
    NonFinite {
        op: usize,
        name: &'static str,
        what: &'static str,
        index: usize,
    },
    #[error(
        "pixel_scale {scale:e} must be a positive normal f32 (1/255 for pixels scaled to 0..1)"
    )]
    PixelScale { scale: f32 },
    #[error("the input has {actual} values, the input tensor {shape} needs {expected}")]
    InputSize {
        shape: Shape,
        expected: usize,
        actual: usize,
    },
}

/// Output height and width of `window` over an `h x w` input, or why there is none. The
/// limits are the runtime's (`docs/model-format.md`): padding smaller than the kernel (so every
/// window holds an input pixel) and a kernel that fits the padded input.
pub fn window_output(window: &Window, h: usize, w: usize) -> Result<(usize, usize), &'static str> {
    let p = window.pads;
    if window.kernel_h == 0 || window.kernel_w == 0 {
        return Err("the kernel must be at least 1x1");
    }
    if window.stride_h == 0 || window.stride_w == 0 {
        return Err("the stride must be at least 1");
    }
    if p.top >= window.kernel_h
        || p.bottom >= window.kernel_h
        || p.left >= window.kernel_w
        || p.right >= window.kernel_w
    {
        return Err("each pad must be smaller than the kernel along its axis");
    }
    let (ph, pw) = (h + p.top + p.bottom, w + p.left + p.right);
    if window.kernel_h > ph || window.kernel_w > pw {
        return Err("the kernel is larger than the padded input");
    }
    Ok((
        (ph - window.kernel_h) / window.stride_h + 1,
        (pw - window.kernel_w) / window.stride_w + 1,
    ))
}

fn finite(
    op: usize,
    name: &'static str,
    what: &'static str,
    v: &[f32],
) -> Result<(), FloatGraphError> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(FloatGraphError::NonFinite {
            op,
            name,
            what,
            index,
        }),
        None => Ok(()),
    }
}

fn length(
    op: usize,
    name: &'static str,
    what: &'static str,
    expected: usize,
    actual: usize,
) -> Result<(), FloatGraphError> {
    if expected != actual {
        return Err(FloatGraphError::ParamLength {
            op,
            name,
            what,
            expected,
            actual,
        });
    }
    Ok(())
}

/// Checks one op's shapes and parameters against its input shapes.
fn check_op(i: usize, op: &FloatOp, t: &[Shape]) -> Result<(), FloatGraphError> {
    let name = op.name();
    let mismatch = |what, expected, actual| {
        if expected == actual {
            Ok(())
        } else {
            Err(FloatGraphError::ShapeMismatch {
                op: i,
                name,
                what,
                expected,
                actual,
            })
        }
    };
    let windowed = |window: &Window, input: Shape, channels: usize| {
        window_output(window, input.h, input.w)
            .map(|(h, w)| Shape::new(h, w, channels))
            .map_err(|problem| FloatGraphError::Window {
                op: i,
                name,
                problem,
            })
    };
    match op {
        FloatOp::Conv2d {
            input,
            output,
            window,
            depthwise,
            weights,
            bias,
            ..
        } => {
            let (x, y) = (t[*input], t[*output]);
            let taps = window.kernel_h * window.kernel_w;
            if *depthwise {
                mismatch("output", windowed(window, x, x.c)?, y)?;
                length(i, name, "weights (HWC)", taps * x.c, weights.len())?;
            } else {
                mismatch("output", windowed(window, x, y.c)?, y)?;
                length(i, name, "weights (OHWI)", y.c * taps * x.c, weights.len())?;
            }
            length(i, name, "bias", y.c, bias.len())?;
            finite(i, name, "weights", weights)?;
            finite(i, name, "bias", bias)
        }
        FloatOp::Dense {
            input,
            output,
            weights,
            bias,
            ..
        } => {
            let (x, y) = (t[*input], t[*output]);
            mismatch("output", Shape::new(1, 1, y.c), y)?;
            length(i, name, "weights ([out][in])", y.c * x.len(), weights.len())?;
            length(i, name, "bias", y.c, bias.len())?;
            finite(i, name, "weights", weights)?;
            finite(i, name, "bias", bias)
        }
        FloatOp::MaxPool {
            input,
            output,
            window,
        }
        | FloatOp::AvgPool {
            input,
            output,
            window,
        } => {
            let x = t[*input];
            mismatch("output", windowed(window, x, x.c)?, t[*output])
        }
        FloatOp::Add { inputs, output, .. } => {
            let a = t[inputs[0]];
            mismatch("second input", a, t[inputs[1]])?;
            mismatch("output", a, t[*output])
        }
        FloatOp::Reshape { input, output } => {
            let (x, y) = (t[*input], t[*output]);
            if x.len() != y.len() {
                return Err(FloatGraphError::ReshapeSize {
                    op: i,
                    input: x,
                    output: y,
                    input_len: x.len(),
                    output_len: y.len(),
                });
            }
            Ok(())
        }
    }
}

/// Checks that `graph` is well formed: tensor indices in range and shapes non-empty; ops in
/// topological order (every op reads the input or an earlier op's output, writes a tensor no
/// one else writes, and every tensor but the input is written); every op's output shape the
/// one it computes (conv and pool windows within the runtime's limits, depthwise keeping the
/// channels, dense giving `1x1xO`, add over equal shapes, reshape keeping the size); weight and
/// bias lengths and finite values; a positive normal `pixel_scale`.
pub fn validate(graph: &FloatGraph) -> Result<(), FloatGraphError> {
    let count = graph.tensors.len();
    let index = |what: String, tensor: usize| {
        if tensor < count {
            Ok(())
        } else {
            Err(FloatGraphError::TensorIndex {
                what,
                tensor,
                count,
            })
        }
    };
    index("the graph input".into(), graph.input)?;
    index("the graph output".into(), graph.output)?;
    for (tensor, &shape) in graph.tensors.iter().enumerate() {
        if shape.h == 0 || shape.w == 0 || shape.c == 0 {
            return Err(FloatGraphError::EmptyShape { tensor, shape });
        }
    }
    if let Some(scale) = graph.pixel_scale
        && !(scale.is_normal() && scale > 0.0)
    {
        return Err(FloatGraphError::PixelScale { scale });
    }
    if graph.ops.is_empty() {
        return Err(FloatGraphError::NoOps);
    }
    let mut written = vec![false; count];
    written[graph.input] = true;
    for (i, op) in graph.ops.iter().enumerate() {
        let name = op.name();
        for tensor in op.inputs() {
            index(format!("op {i} ({name}) input"), tensor)?;
            if !written[tensor] {
                return Err(FloatGraphError::ReadBeforeWrite {
                    op: i,
                    name,
                    tensor,
                });
            }
        }
        let out = op.output();
        index(format!("op {i} ({name}) output"), out)?;
        if written[out] {
            return Err(FloatGraphError::WrittenTwice {
                op: i,
                name,
                tensor: out,
            });
        }
        written[out] = true;
        check_op(i, op, &graph.tensors)?;
    }
    if let Some(tensor) = written.iter().position(|w| !w) {
        return Err(FloatGraphError::NeverWritten { tensor });
    }
    Ok(())
}

/// Input rows (or columns) a window position covers: `(first tap, last tap + 1, first input
/// index)` of the taps that land inside `0..size`.
fn taps(
    out: usize,
    stride: usize,
    pad: usize,
    kernel: usize,
    size: usize,
) -> (usize, usize, usize) {
    let start = (out * stride) as isize - pad as isize;
    let k0 = (-start).max(0) as usize;
    let k1 = kernel.min((size as isize - start).max(0) as usize);
    (k0, k1, (start + k0 as isize) as usize)
}

/// Calls `f(oy, ox, taps)` for every output pixel of `window` over `x`, with the in-bounds
/// taps as `(ky, kx, input pixel index)` in row-major window order.
fn for_each_window(
    window: &Window,
    x: Shape,
    y: Shape,
    mut f: impl FnMut(usize, &[(usize, usize, usize)]),
) {
    let mut list = Vec::with_capacity(window.kernel_h * window.kernel_w);
    for oy in 0..y.h {
        let (ky0, ky1, iy0) = taps(oy, window.stride_h, window.pads.top, window.kernel_h, x.h);
        for ox in 0..y.w {
            let (kx0, kx1, ix0) = taps(ox, window.stride_w, window.pads.left, window.kernel_w, x.w);
            list.clear();
            for ky in ky0..ky1 {
                for kx in kx0..kx1 {
                    let pixel = (iy0 + ky - ky0) * x.w + (ix0 + kx - kx0);
                    list.push((ky, kx, pixel));
                }
            }
            f(oy * y.w + ox, &list);
        }
    }
}

fn conv(
    window: &Window,
    depthwise: bool,
    weights: &[f32],
    bias: &[f32],
    act: Act,
    x: (&[f32], Shape),
    shape: Shape,
) -> Vec<f32> {
    let (input, xs) = x;
    let (kw, cin) = (window.kernel_w, xs.c);
    let mut out = vec![0f32; shape.len()];
    for_each_window(window, xs, shape, |pixel, taps| {
        for oc in 0..shape.c {
            let mut acc = bias[oc] as f64;
            for &(ky, kx, p) in taps {
                if depthwise {
                    acc += input[p * cin + oc] as f64 * weights[(ky * kw + kx) * cin + oc] as f64;
                } else {
                    let w = &weights[((oc * window.kernel_h + ky) * kw + kx) * cin..][..cin];
                    for (ic, &w) in w.iter().enumerate() {
                        acc += input[p * cin + ic] as f64 * w as f64;
                    }
                }
            }
            out[pixel * shape.c + oc] = act.apply(acc as f32);
        }
    });
    out
}

fn dense(weights: &[f32], bias: &[f32], act: Act, input: &[f32]) -> Vec<f32> {
    bias.iter()
        .zip(weights.chunks_exact(input.len()))
        .map(|(&b, row)| {
            let acc = row
                .iter()
                .zip(input)
                .fold(b as f64, |acc, (&w, &x)| acc + w as f64 * x as f64);
            act.apply(acc as f32)
        })
        .collect()
}

fn pool(window: &Window, average: bool, input: &[f32], xs: Shape, shape: Shape) -> Vec<f32> {
    let mut out = vec![0f32; shape.len()];
    for_each_window(window, xs, shape, |pixel, taps| {
        for c in 0..shape.c {
            let values = taps.iter().map(|&(_, _, p)| input[p * xs.c + c]);
            out[pixel * shape.c + c] = if average {
                (values.map(f64::from).sum::<f64>() / taps.len() as f64) as f32
            } else {
                values.fold(f32::NEG_INFINITY, f32::max)
            };
        }
    });
    out
}

/// Runs `graph` on `input` (the input tensor, NHWC) and returns every tensor's values (NHWC),
/// indexed as [`FloatGraph::tensors`]. Validates the graph first.
pub fn run(graph: &FloatGraph, input: &[f32]) -> Result<Vec<Vec<f32>>, FloatGraphError> {
    validate(graph)?;
    let shape = graph.tensors[graph.input];
    if input.len() != shape.len() {
        return Err(FloatGraphError::InputSize {
            shape,
            expected: shape.len(),
            actual: input.len(),
        });
    }
    let t = &graph.tensors;
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); t.len()];
    values[graph.input] = input.to_vec();
    for op in &graph.ops {
        let out = match op {
            FloatOp::Conv2d {
                input,
                output,
                window,
                depthwise,
                weights,
                bias,
                act,
            } => conv(
                window,
                *depthwise,
                weights,
                bias,
                *act,
                (&values[*input], t[*input]),
                t[*output],
            ),
            FloatOp::Dense {
                input,
                weights,
                bias,
                act,
                ..
            } => dense(weights, bias, *act, &values[*input]),
            FloatOp::MaxPool {
                input,
                output,
                window,
            } => pool(window, false, &values[*input], t[*input], t[*output]),
            FloatOp::AvgPool {
                input,
                output,
                window,
            } => pool(window, true, &values[*input], t[*input], t[*output]),
            FloatOp::Add { inputs, act, .. } => values[inputs[0]]
                .iter()
                .zip(&values[inputs[1]])
                .map(|(&a, &b)| act.apply(a + b))
                .collect(),
            FloatOp::Reshape { input, .. } => values[*input].clone(),
        };
        values[op.output()] = out;
    }
    Ok(values)
}
