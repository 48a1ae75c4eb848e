//! The graph a [`super::SpecNet`] runs: one [`Step`] per layer of the resolved spec, over
//! numbered values (0 = the input; step `i` writes value `i + 1`).

pub use tinyconv_spec::{Op, Pads};

/// A layer of the resolved spec (never [`Op::Input`]), the values it reads, and its output
/// shape `[h, w, c]`. `index` numbers a conv, batch norm, dense or dropout among the layers of
/// its kind: the position of its module in the network's vectors (0 for the others).
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub op: Op,
    pub index: usize,
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
            conv: conv.index,
            padding: pads.top,
        })
    }
}

/// Which training path a network's convolutions take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConvPaths {
    /// Convolutions trained on the batch-wide kernel (as a [`FusedBlock`]).
    pub fused: usize,
    /// Convolutions trained on stock burn layers (strided, depthwise, not followed by ReLU and
    /// a 2x2 max pool, ...).
    pub stock: usize,
}

impl Steps {
    /// How many convolutions train on the batch-wide kernel and how many on stock burn.
    pub fn conv_paths(&self) -> ConvPaths {
        let mut paths = ConvPaths::default();
        for (i, step) in self.steps.iter().enumerate() {
            if matches!(step.op, Op::Conv { .. }) {
                match self.fused_block(i) {
                    Some(_) => paths.fused += 1,
                    None => paths.stock += 1,
                }
            }
        }
        paths
    }
}

/// burn's pools take symmetric padding only; [`Steps::from_resolved`] refuses asymmetric pool
/// padding, so this never sees one.
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

impl Steps {
    /// The steps of a resolved spec (its node 0 is the input; node `k` is value `k`).
    pub fn from_resolved(spec: &tinyconv_spec::Resolved) -> Result<Steps, StepsError> {
        let shape = |s: tinyconv_spec::Shape| [s.h, s.w, s.c];
        // Modules so far of each kind: conv, batch norm, dense, dropout.
        let mut counts = [0usize; 4];
        let mut steps = Vec::new();
        for node in spec.nodes.iter().skip(1) {
            let kind = match &node.op {
                Op::Conv { .. } => Some(0),
                Op::BatchNorm { .. } => Some(1),
                Op::Dense { .. } => Some(2),
                Op::Dropout { .. } => Some(3),
                Op::MaxPool { pads: p, .. } | Op::AvgPool { pads: p, .. }
                    if p.top != p.bottom || p.left != p.right =>
                {
                    return Err(StepsError::AsymmetricPool {
                        path: node.path.clone(),
                        pads: [p.top, p.left, p.bottom, p.right],
                    });
                }
                _ => None,
            };
            let index = kind.map_or(0, |k| {
                counts[k] += 1;
                counts[k] - 1
            });
            steps.push(Step {
                op: node.op.clone(),
                index,
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
