//! The graph a [`super::SpecNet`] runs: one [`Step`] per layer of the resolved spec, over
//! numbered values (0 = the input; step `i` writes value `i + 1`).

use crate::fgraph::Pads;

/// One layer with its concrete parameters. `index` numbers the layer among those of its kind
/// (the position of its weights in the network's vectors).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Conv {
        index: usize,
        in_channels: usize,
        filters: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: Pads,
        depthwise: bool,
        bias: bool,
    },
    BatchNorm {
        index: usize,
        channels: usize,
        epsilon: f64,
        momentum: f64,
    },
    Relu,
    Relu6,
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: Pads,
    },
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: Pads,
    },
    GlobalAvgPool,
    Dropout {
        index: usize,
        rate: f64,
    },
    Flatten,
    Dense {
        index: usize,
        in_features: usize,
        units: usize,
    },
    /// The sum of the two values the step reads.
    Add,
}

/// A layer and the values it reads, with its output shape `[h, w, c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub op: Op,
    pub inputs: Vec<usize>,
    pub shape: [usize; 3],
}

/// The whole graph, with the input's shape `[h, w, c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Steps {
    pub input: [usize; 3],
    pub steps: Vec<Step>,
}

/// A conv → ReLU → 2x2 max pool run that the batch-wide kernel computes in one op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FusedBlock {
    /// The conv's index among the convs.
    pub conv: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Steps {
    /// How many steps read value `v`.
    pub fn readers(&self, v: usize) -> usize {
        self.steps
            .iter()
            .map(|s| s.inputs.iter().filter(|&&i| i == v).count())
            .sum()
    }

    /// The fused block starting at step `i`, if steps `i..i + 3` are a square stride-1
    /// convolution with a bias and symmetric padding, a ReLU of it and an unpadded 2x2 / 2 max
    /// pool of that, and nothing else reads the conv's or the ReLU's output.
    pub fn fused_block(&self, i: usize) -> Option<FusedBlock> {
        let [conv, act, pool] = self.steps.get(i..i + 3)? else {
            return None;
        };
        let Op::Conv {
            index,
            kernel,
            stride: [1, 1],
            pads,
            depthwise: false,
            bias: true,
            ..
        } = conv.op
        else {
            return None;
        };
        let square = kernel[0] == kernel[1]
            && pads.top == pads.left
            && pads.top == pads.bottom
            && pads.top == pads.right;
        let pool_2x2 = matches!(
            pool.op,
            Op::MaxPool { kernel: [2, 2], stride: [2, 2], pads } if pads == Pads::default()
        );
        let chained = act.op == Op::Relu
            && act.inputs == [i + 1]
            && pool.inputs == [i + 2]
            && self.readers(i + 1) == 1
            && self.readers(i + 2) == 1;
        (square && pool_2x2 && chained).then_some(FusedBlock {
            conv: index,
            padding: pads.top,
        })
    }
}

/// burn's pools take symmetric padding only; the spec resolver refuses asymmetric pool
/// padding for training, so this never sees one.
pub fn symmetric(pads: Pads) -> burn::nn::PaddingConfig2d {
    debug_assert!(pads.top == pads.bottom && pads.left == pads.right);
    burn::nn::PaddingConfig2d::Explicit(pads.top, pads.left, pads.bottom, pads.right)
}

/// A resolved spec that the trainer cannot train yet.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepsError {
    #[error(
        "{path}: pooling with asymmetric padding {pads:?} (top, left, bottom, right) cannot be \
         trained yet (burn's pools pad symmetrically); use padding = \"valid\" or a symmetric \
         padding"
    )]
    AsymmetricPool { path: String, pads: [usize; 4] },
}

fn pads(p: tinyconv_spec::Pads) -> Pads {
    Pads {
        top: p.top,
        left: p.left,
        bottom: p.bottom,
        right: p.right,
    }
}

impl Steps {
    /// The steps of a resolved spec (its node 0 is the input; node `k` is value `k`).
    pub fn from_resolved(spec: &tinyconv_spec::Resolved) -> Result<Steps, StepsError> {
        use tinyconv_spec::Op as S;
        let shape = |s: tinyconv_spec::Shape| [s.h, s.w, s.c];
        let (mut convs, mut norms, mut denses, mut drops) = (0, 0, 0, 0);
        let next = |n: &mut usize| {
            *n += 1;
            *n - 1
        };
        let mut steps = Vec::new();
        for node in spec.nodes.iter().skip(1) {
            let pool_pads = |p: tinyconv_spec::Pads| {
                if p.top == p.bottom && p.left == p.right {
                    Ok(pads(p))
                } else {
                    Err(StepsError::AsymmetricPool {
                        path: node.path.clone(),
                        pads: [p.top, p.left, p.bottom, p.right],
                    })
                }
            };
            let op = match node.op {
                S::Input => continue,
                S::Conv {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    pads: p,
                    depthwise,
                    bias,
                } => Op::Conv {
                    index: next(&mut convs),
                    in_channels,
                    filters: out_channels,
                    kernel,
                    stride,
                    pads: pads(p),
                    depthwise,
                    bias,
                },
                S::BatchNorm {
                    channels,
                    epsilon,
                    momentum,
                } => Op::BatchNorm {
                    index: next(&mut norms),
                    channels,
                    epsilon,
                    momentum,
                },
                S::Relu => Op::Relu,
                S::Relu6 => Op::Relu6,
                S::MaxPool {
                    kernel,
                    stride,
                    pads: p,
                } => Op::MaxPool {
                    kernel,
                    stride,
                    pads: pool_pads(p)?,
                },
                S::AvgPool {
                    kernel,
                    stride,
                    pads: p,
                } => Op::AvgPool {
                    kernel,
                    stride,
                    pads: pool_pads(p)?,
                },
                S::GlobalAvgPool => Op::GlobalAvgPool,
                S::Dropout { rate } => Op::Dropout {
                    index: next(&mut drops),
                    rate,
                },
                S::Flatten => Op::Flatten,
                S::Dense {
                    in_features,
                    out_features,
                } => Op::Dense {
                    index: next(&mut denses),
                    in_features,
                    units: out_features,
                },
                S::Add => Op::Add,
            };
            steps.push(Step {
                op,
                inputs: node.inputs.clone(),
                shape: shape(node.output),
            });
        }
        Ok(Steps {
            input: shape(spec.input),
            steps,
        })
    }
}
