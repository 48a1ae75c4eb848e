//! The resolved graph: concrete nodes in topological order, each with its inputs, output
//! shape, parameters and MACs.

use crate::layer::Shape;

/// Index of a node in [`Resolved::nodes`].
pub type NodeId = usize;

/// Explicit zero padding, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pads {
    /// Rows added above.
    pub top: usize,
    /// Columns added on the left.
    pub left: usize,
    /// Rows added below.
    pub bottom: usize,
    /// Columns added on the right.
    pub right: usize,
}

/// A node's operation with every parameter concrete.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The network input (always node 0; reads nothing).
    Input,
    /// Convolution. Depthwise: `out_channels == in_channels`, multiplier 1.
    Conv {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// `[h, w]`.
        kernel: [usize; 2],
        /// `[h, w]`, each 1 or 2.
        stride: [usize; 2],
        /// Explicit pads (SAME already computed).
        pads: Pads,
        /// Depthwise convolution.
        depthwise: bool,
        /// Has a bias.
        bias: bool,
    },
    /// Batch normalization over `channels`.
    BatchNorm {
        /// Channels normalized.
        channels: usize,
        /// Added to the variance.
        epsilon: f64,
        /// Weight of the new batch statistic (PyTorch/burn convention).
        momentum: f64,
    },
    /// ReLU.
    Relu,
    /// ReLU6.
    Relu6,
    /// Max pooling.
    MaxPool {
        /// `[h, w]`.
        kernel: [usize; 2],
        /// `[h, w]`.
        stride: [usize; 2],
        /// Explicit pads.
        pads: Pads,
    },
    /// Average pooling.
    AvgPool {
        /// `[h, w]`.
        kernel: [usize; 2],
        /// `[h, w]`.
        stride: [usize; 2],
        /// Explicit pads.
        pads: Pads,
    },
    /// Mean over the whole map.
    GlobalAvgPool,
    /// Dropout with drop probability `rate`.
    Dropout {
        /// Drop probability.
        rate: f64,
    },
    /// `HxWxC → 1x1x(H*W*C)`.
    Flatten,
    /// Fully connected.
    Dense {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
    },
    /// Element-wise sum of its two inputs (a residual block's end): `inputs = [main, shortcut]`.
    Add,
}

/// Parameter counts of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    /// Trained by gradient descent (weights, biases, batch-norm gamma and beta).
    pub trainable: u64,
    /// Stored but not trained (batch-norm running mean and variance).
    pub non_trainable: u64,
}

impl Params {
    /// `trainable + non_trainable`.
    pub fn total(&self) -> u64 {
        self.trainable + self.non_trainable
    }
}

/// One node of the resolved graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where it comes from in the spec, e.g. `layers[3].main[1]` (`input` for node 0).
    pub path: String,
    /// What it computes.
    pub op: Op,
    /// The nodes it reads, all earlier in the list (one, or two for [`Op::Add`]).
    pub inputs: Vec<NodeId>,
    /// Output shape.
    pub output: Shape,
    /// Parameters.
    pub params: Params,
    /// Multiply-accumulates of one inference (see `docs/model-spec.md` for the convention).
    pub macs: u64,
}

/// A spec resolved for one input shape and class count.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The spec's name.
    pub name: String,
    /// The input shape it was resolved for.
    pub input: Shape,
    /// Number of classes (the last node's output size).
    pub classes: usize,
    /// Nodes in topological order; node 0 is [`Op::Input`], the last one yields the logits.
    pub nodes: Vec<Node>,
}

impl Resolved {
    /// Sum of every node's parameters.
    pub fn params(&self) -> Params {
        self.nodes.iter().fold(Params::default(), |acc, n| Params {
            trainable: acc.trainable + n.params.trainable,
            non_trainable: acc.non_trainable + n.params.non_trainable,
        })
    }

    /// Sum of every node's MACs.
    pub fn macs(&self) -> u64 {
        self.nodes.iter().map(|n| n.macs).sum()
    }

    /// The node yielding the logits.
    pub fn output(&self) -> NodeId {
        self.nodes.len() - 1
    }
}
