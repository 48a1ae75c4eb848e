//! The parsed spec: the layers as the user wrote them, defaults applied, not yet checked
//! against any input shape.

/// A feature map's shape: height, width, channels. A flat vector of `n` features is `1x1xn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Height (rows).
    pub h: usize,
    /// Width (columns).
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Shape {
    /// `Shape { h, w, c }`.
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c }
    }

    /// Whether this is a flat feature vector (`1x1xC`), which `dense` accepts.
    pub const fn is_flat(&self) -> bool {
        self.h == 1 && self.w == 1
    }

    /// Number of values, `h * w * c` (`None` on overflow).
    pub fn elements(&self) -> Option<usize> {
        self.h.checked_mul(self.w)?.checked_mul(self.c)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

/// A whole model spec: a name, an optional description and the layers in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Short name, used to name artifacts.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The layers, input to output.
    pub layers: Vec<Layer>,
}

/// One layer of a spec, as written (defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// 2-D convolution, plain or depthwise.
    Conv(ConvLayer),
    /// Batch normalization over channels.
    BatchNorm(BatchNormLayer),
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// Max pooling.
    MaxPool(PoolLayer),
    /// Average pooling.
    AvgPool(PoolLayer),
    /// Average over the whole map: `HxWxC → 1x1xC`.
    GlobalAvgPool,
    /// Dropout (identity at inference).
    Dropout(DropoutLayer),
    /// `HxWxC → 1x1x(H*W*C)`.
    Flatten,
    /// Fully connected layer on a flat input.
    Dense(DenseLayer),
    /// `main(x) + shortcut(x)`.
    Residual(ResidualLayer),
}

impl Layer {
    /// The `type` string of this layer in TOML.
    pub fn type_name(&self) -> &'static str {
        match self {
            Layer::Conv(_) => "conv",
            Layer::BatchNorm(_) => "batch_norm",
            Layer::Relu => "relu",
            Layer::Relu6 => "relu6",
            Layer::MaxPool(_) => "max_pool",
            Layer::AvgPool(_) => "avg_pool",
            Layer::GlobalAvgPool => "global_avg_pool",
            Layer::Dropout(_) => "dropout",
            Layer::Flatten => "flatten",
            Layer::Dense(_) => "dense",
            Layer::Residual(_) => "residual",
        }
    }
}

/// How a conv or pool pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// TensorFlow's SAME: output = ceil(input / stride); the odd pixel goes bottom/right.
    Same,
    /// No padding.
    Valid,
    /// Explicit zero padding `[top, left, bottom, right]` (an int `p` is `[p, p, p, p]`).
    Explicit([usize; 4]),
}

/// `conv`: 2-D convolution.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvLayer {
    /// Output channels; `None` only for depthwise (= input channels).
    pub filters: Option<usize>,
    /// `[h, w]`.
    pub kernel: [usize; 2],
    /// `[h, w]`, default `[1, 1]`.
    pub stride: [usize; 2],
    /// Default `Valid`.
    pub padding: Padding,
    /// Depthwise (channel multiplier 1), default false.
    pub depthwise: bool,
    /// Adds a per-channel bias, default true.
    pub bias: bool,
}

/// `batch_norm`: per-channel normalization with trained scale and shift.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormLayer {
    /// Added to the variance, default 1e-5.
    pub epsilon: f64,
    /// Weight of the new batch's statistic in the running mean/var (PyTorch/burn convention;
    /// Keras' `momentum=0.99` is 0.01 here), default 0.1.
    pub momentum: f64,
}

/// `max_pool` / `avg_pool`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolLayer {
    /// `[h, w]`.
    pub kernel: [usize; 2],
    /// `[h, w]`, default = kernel.
    pub stride: [usize; 2],
    /// Default `Valid`.
    pub padding: Padding,
}

/// `dropout`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropoutLayer {
    /// Drop probability, in `[0, 1)`.
    pub rate: f64,
}

/// `dense`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayer {
    /// Output features; `None` only on the last layer (= the number of classes).
    pub units: Option<usize>,
}

/// `residual`: the sum of two branches that read the same input.
#[derive(Debug, Clone, PartialEq)]
pub struct ResidualLayer {
    /// The main branch (not empty).
    pub main: Vec<Layer>,
    /// The shortcut; empty = identity.
    pub shortcut: Vec<Layer>,
}
