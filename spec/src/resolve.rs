//! [`ModelSpec`] + input shape + classes → [`Resolved`].
//!
//! Walks the layers once, appending nodes in topological order; a residual block appends its
//! main branch, then its shortcut, then the add that reads both ends.

use crate::error::SpecError;
use crate::graph::{Node, NodeId, Op, Pads, Params, Resolved};
use crate::layer::{ConvLayer, Layer, ModelSpec, Padding, PoolLayer, Shape};

/// The largest class count a model may have.
pub const MAX_CLASSES: usize = 1000;

/// TensorFlow's SAME padding along one axis: `(pad_before, pad_after, output)`.
///
/// `output = ceil(input / stride)`, `total = max((output - 1) * stride + kernel - input, 0)`,
/// `before = total / 2` (rounded down: the odd pixel goes after, i.e. bottom/right).
/// `input` and `stride` must be at least 1.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let output = input.div_ceil(stride);
    let total = ((output - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2, output)
}

impl ModelSpec {
    /// Checks that the layers chain on `input` and that the last one yields `classes`
    /// logits, and produces the flat graph.
    pub fn resolve(&self, input: Shape, classes: usize) -> Result<Resolved, SpecError> {
        if classes == 0 || classes > MAX_CLASSES {
            return Err(SpecError::Classes {
                classes,
                max: MAX_CLASSES,
            });
        }
        for (what, size) in [
            ("height", input.h),
            ("width", input.w),
            ("channels", input.c),
        ] {
            if size == 0 {
                return Err(zero("input", &format!("the input {what}")));
            }
        }
        let last = self.layers.last().ok_or(SpecError::EmptyModel)?;
        if !matches!(last, Layer::Dense(_)) {
            return Err(SpecError::LastNotDense {
                path: format!("layers[{}]", self.layers.len() - 1),
                found: last.type_name().to_string(),
                classes,
            });
        }
        let mut walk = Walk {
            classes,
            nodes: vec![Node {
                path: "input".to_string(),
                op: Op::Input,
                inputs: vec![],
                output: input,
                params: Params::default(),
                macs: 0,
            }],
        };
        walk.list(&self.layers, 0, "layers", true)?;
        Ok(Resolved {
            name: self.name.clone(),
            input,
            classes,
            nodes: walk.nodes,
        })
    }
}

struct Walk {
    classes: usize,
    nodes: Vec<Node>,
}

fn zero(path: &str, what: &str) -> SpecError {
    SpecError::ZeroSize {
        path: path.to_string(),
        what: what.to_string(),
    }
}

fn field(path: &str, message: String) -> SpecError {
    SpecError::Field {
        path: path.to_string(),
        message,
    }
}

/// The product of `factors`, or `TooLarge` naming `path`.
fn product(path: &str, factors: &[usize]) -> Result<u64, SpecError> {
    factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(f as u64))
        .ok_or_else(|| SpecError::TooLarge {
            path: path.to_string(),
        })
}

fn sum(path: &str, a: u64, b: u64) -> Result<u64, SpecError> {
    a.checked_add(b).ok_or_else(|| SpecError::TooLarge {
        path: path.to_string(),
    })
}

/// A conv or pool window placed on `input`: its pads and output size.
struct Window {
    pads: Pads,
    out_h: usize,
    out_w: usize,
}

fn window(
    path: &str,
    input: Shape,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
) -> Result<Window, SpecError> {
    let [kh, kw] = kernel;
    if kh == 0 || kw == 0 {
        return Err(zero(path, &format!("kernel {kh}x{kw}")));
    }
    if stride[0] == 0 || stride[1] == 0 {
        return Err(zero(path, &format!("stride {:?}", stride)));
    }
    let pads = match padding {
        Padding::Valid => Pads::default(),
        Padding::Explicit([top, left, bottom, right]) => Pads {
            top,
            left,
            bottom,
            right,
        },
        Padding::Same => {
            let (top, bottom, _) = same_padding(input.h, kh, stride[0]);
            let (left, right, _) = same_padding(input.w, kw, stride[1]);
            Pads {
                top,
                left,
                bottom,
                right,
            }
        }
    };
    if pads.top.max(pads.bottom) >= kh || pads.left.max(pads.right) >= kw {
        return Err(SpecError::PaddingTooLarge {
            path: path.to_string(),
            pads: [pads.top, pads.left, pads.bottom, pads.right],
            kh,
            kw,
        });
    }
    // Pads are smaller than the kernel, so these sums cannot overflow unless the kernel
    // itself is near usize::MAX; checked anyway.
    let too_large = || SpecError::TooLarge {
        path: path.to_string(),
    };
    let ph = input
        .h
        .checked_add(pads.top + pads.bottom)
        .ok_or_else(too_large)?;
    let pw = input
        .w
        .checked_add(pads.left + pads.right)
        .ok_or_else(too_large)?;
    if ph < kh || pw < kw {
        return Err(SpecError::KernelTooLarge {
            path: path.to_string(),
            kh,
            kw,
            input,
            ph,
            pw,
        });
    }
    Ok(Window {
        pads,
        out_h: (ph - kh) / stride[0] + 1,
        out_w: (pw - kw) / stride[1] + 1,
    })
}

impl Walk {
    fn push(&mut self, path: &str, op: Op, input: NodeId, output: Shape) -> NodeId {
        self.push_node(Node {
            path: path.to_string(),
            op,
            inputs: vec![input],
            output,
            params: Params::default(),
            macs: 0,
        })
    }

    fn push_node(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Resolves `layers` reading node `from`; returns the last node. `top_level` marks the
    /// model's own list, whose last layer is the output.
    fn list(
        &mut self,
        layers: &[Layer],
        from: NodeId,
        list_path: &str,
        top_level: bool,
    ) -> Result<NodeId, SpecError> {
        let mut current = from;
        for (i, layer) in layers.iter().enumerate() {
            let path = format!("{list_path}[{i}]");
            if let Layer::BatchNorm(_) = layer {
                let after = match i.checked_sub(1).map(|p| &layers[p]) {
                    Some(Layer::Conv(_) | Layer::Dense(_)) => None,
                    Some(other) => Some(format!("{} ({list_path}[{}])", other.type_name(), i - 1)),
                    None if top_level => Some("the input".to_string()),
                    None => Some("the start of the residual branch".to_string()),
                };
                if let Some(after) = after {
                    return Err(SpecError::BatchNormPlacement { path, after });
                }
            }
            let is_output = top_level && i + 1 == layers.len();
            current = self.layer(layer, current, &path, is_output)?;
        }
        Ok(current)
    }

    fn layer(
        &mut self,
        layer: &Layer,
        from: NodeId,
        path: &str,
        is_output: bool,
    ) -> Result<NodeId, SpecError> {
        let input = self.nodes[from].output;
        let same = |op| (op, input);
        let (op, output) = match layer {
            Layer::Conv(conv) => return self.conv(conv, from, path),
            Layer::MaxPool(pool) | Layer::AvgPool(pool) => {
                let max = matches!(layer, Layer::MaxPool(_));
                return self.pool(pool, max, from, path);
            }
            Layer::Dense(dense) => {
                if !input.is_flat() {
                    return Err(SpecError::DenseNotFlat {
                        path: path.to_string(),
                        input,
                    });
                }
                let units = match (dense.units, is_output) {
                    (Some(0), _) => return Err(zero(path, "units")),
                    (Some(units), true) if units != self.classes => {
                        return Err(SpecError::OutputUnits {
                            path: path.to_string(),
                            units,
                            classes: self.classes,
                        });
                    }
                    (Some(units), _) => units,
                    (None, true) => self.classes,
                    (None, false) => {
                        return Err(SpecError::MissingUnits {
                            path: path.to_string(),
                        });
                    }
                };
                let macs = product(path, &[input.c, units])?;
                return Ok(self.push_node(Node {
                    path: path.to_string(),
                    op: Op::Dense {
                        in_features: input.c,
                        out_features: units,
                    },
                    inputs: vec![from],
                    output: Shape::new(1, 1, units),
                    params: Params {
                        trainable: sum(path, macs, units as u64)?,
                        non_trainable: 0,
                    },
                    macs,
                }));
            }
            Layer::BatchNorm(bn) => {
                if !(bn.epsilon.is_finite() && bn.epsilon > 0.0) {
                    return Err(field(
                        path,
                        format!("batch_norm: epsilon must be > 0, found {}", bn.epsilon),
                    ));
                }
                if !(bn.momentum > 0.0 && bn.momentum <= 1.0) {
                    return Err(field(
                        path,
                        format!(
                            "batch_norm: momentum (the new batch's weight, PyTorch convention) must be in (0, 1], found {}",
                            bn.momentum
                        ),
                    ));
                }
                let c = input.c as u64;
                let id = self.push(
                    path,
                    Op::BatchNorm {
                        channels: input.c,
                        epsilon: bn.epsilon,
                        momentum: bn.momentum,
                    },
                    from,
                    input,
                );
                self.nodes[id].params = Params {
                    trainable: 2 * c,
                    non_trainable: 2 * c,
                };
                return Ok(id);
            }
            Layer::Residual(residual) => {
                if residual.main.is_empty() {
                    return Err(SpecError::EmptyBranch {
                        path: path.to_string(),
                    });
                }
                let main = self.list(&residual.main, from, &format!("{path}.main"), false)?;
                let (shortcut, shortcut_path) = if residual.shortcut.is_empty() {
                    (from, "identity".to_string())
                } else {
                    let list_path = format!("{path}.shortcut");
                    let end = self.list(&residual.shortcut, from, &list_path, false)?;
                    (end, format!("{list_path}[{}]", residual.shortcut.len() - 1))
                };
                let (main_shape, shortcut_shape) =
                    (self.nodes[main].output, self.nodes[shortcut].output);
                if main_shape != shortcut_shape {
                    return Err(SpecError::ResidualMismatch {
                        path: path.to_string(),
                        main_path: format!("{path}.main[{}]", residual.main.len() - 1),
                        main: main_shape,
                        shortcut_path,
                        shortcut: shortcut_shape,
                    });
                }
                let id = self.push(path, Op::Add, main, main_shape);
                self.nodes[id].inputs.push(shortcut);
                return Ok(id);
            }
            Layer::Dropout(d) => {
                if !(d.rate >= 0.0 && d.rate < 1.0) {
                    return Err(field(
                        path,
                        format!("dropout: rate must be in [0, 1), found {}", d.rate),
                    ));
                }
                same(Op::Dropout { rate: d.rate })
            }
            Layer::Relu => same(Op::Relu),
            Layer::Relu6 => same(Op::Relu6),
            Layer::GlobalAvgPool => (Op::GlobalAvgPool, Shape::new(1, 1, input.c)),
            Layer::Flatten => {
                let n = input.elements().ok_or_else(|| SpecError::TooLarge {
                    path: path.to_string(),
                })?;
                (Op::Flatten, Shape::new(1, 1, n))
            }
        };
        Ok(self.push(path, op, from, output))
    }

    fn conv(&mut self, conv: &ConvLayer, from: NodeId, path: &str) -> Result<NodeId, SpecError> {
        let input = self.nodes[from].output;
        let out_c = match (conv.depthwise, conv.filters) {
            (_, Some(0)) => return Err(zero(path, "filters")),
            (true, Some(filters)) if filters != input.c => {
                return Err(SpecError::DepthwiseFilters {
                    path: path.to_string(),
                    filters,
                    channels: input.c,
                });
            }
            (true, _) => input.c,
            (false, Some(filters)) => filters,
            (false, None) => {
                return Err(SpecError::MissingFilters {
                    path: path.to_string(),
                });
            }
        };
        if conv.stride.iter().any(|&s| s > 2) {
            return Err(SpecError::Stride {
                path: path.to_string(),
                stride: conv.stride,
            });
        }
        let win = window(path, input, conv.kernel, conv.stride, conv.padding)?;
        let [kh, kw] = conv.kernel;
        // A depthwise filter sees one input channel.
        let in_per_filter = if conv.depthwise { 1 } else { input.c };
        let weights = product(path, &[kh, kw, in_per_filter, out_c])?;
        let bias = if conv.bias { out_c as u64 } else { 0 };
        let macs = product(path, &[win.out_h, win.out_w, out_c, kh, kw, in_per_filter])?;
        Ok(self.push_node(Node {
            path: path.to_string(),
            op: Op::Conv {
                in_channels: input.c,
                out_channels: out_c,
                kernel: conv.kernel,
                stride: conv.stride,
                pads: win.pads,
                depthwise: conv.depthwise,
                bias: conv.bias,
            },
            inputs: vec![from],
            output: Shape::new(win.out_h, win.out_w, out_c),
            params: Params {
                trainable: sum(path, weights, bias)?,
                non_trainable: 0,
            },
            macs,
        }))
    }

    fn pool(
        &mut self,
        pool: &PoolLayer,
        max: bool,
        from: NodeId,
        path: &str,
    ) -> Result<NodeId, SpecError> {
        let input = self.nodes[from].output;
        let win = window(path, input, pool.kernel, pool.stride, pool.padding)?;
        let (kernel, stride, pads) = (pool.kernel, pool.stride, win.pads);
        let op = if max {
            Op::MaxPool {
                kernel,
                stride,
                pads,
            }
        } else {
            Op::AvgPool {
                kernel,
                stride,
                pads,
            }
        };
        Ok(self.push(path, op, from, Shape::new(win.out_h, win.out_w, input.c)))
    }
}
