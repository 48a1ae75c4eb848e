//! The model as plain data: what [`Model::parse`] returns.

/// A TensorFlow Lite model with its one subgraph.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The schema version (3).
    pub version: u32,
    pub description: String,
    pub graph: Graph,
}

/// The subgraph: tensors, the operators in execution order, and the graph's inputs and outputs
/// (tensor indices).
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub tensors: Vec<Tensor>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    pub operators: Vec<Operator>,
}

/// A tensor's element type (the schema's `TensorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorType {
    Float32,
    Float16,
    Int32,
    UInt8,
    Int64,
    Bool,
    Int16,
    Int8,
    Float64,
    Int4,
    /// Any other type, by its schema number (strings, complex, resources, …).
    Other(i8),
}

impl TensorType {
    pub(crate) fn from_schema(v: i8) -> Self {
        match v {
            0 => Self::Float32,
            1 => Self::Float16,
            2 => Self::Int32,
            3 => Self::UInt8,
            4 => Self::Int64,
            6 => Self::Bool,
            7 => Self::Int16,
            9 => Self::Int8,
            10 => Self::Float64,
            17 => Self::Int4,
            other => Self::Other(other),
        }
    }

    /// Bytes per element, where whole (not for int4 or the `Other` types).
    pub fn size(self) -> Option<usize> {
        match self {
            Self::Int8 | Self::UInt8 | Self::Bool => Some(1),
            Self::Int16 | Self::Float16 => Some(2),
            Self::Int32 | Self::Float32 => Some(4),
            Self::Int64 | Self::Float64 => Some(8),
            Self::Int4 | Self::Other(_) => None,
        }
    }

    /// The name TensorFlow's Python API uses (`int8`, `float32`, …).
    pub fn name(self) -> String {
        match self {
            Self::Float32 => "float32".into(),
            Self::Float16 => "float16".into(),
            Self::Int32 => "int32".into(),
            Self::UInt8 => "uint8".into(),
            Self::Int64 => "int64".into(),
            Self::Bool => "bool".into(),
            Self::Int16 => "int16".into(),
            Self::Int8 => "int8".into(),
            Self::Float64 => "float64".into(),
            Self::Int4 => "int4".into(),
            Self::Other(v) => format!("type {v}"),
        }
    }
}

/// Affine quantization: `real = scale[i] * (q - zero_point[i])`, per tensor (one entry) or
/// per channel along `dimension`.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantization {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub dimension: usize,
}

/// A tensor: an activation, or a constant with its data.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i32>,
    pub dtype: TensorType,
    pub quantization: Option<Quantization>,
    /// The constant's bytes (little-endian, row-major); `None` for an activation.
    pub data: Option<Vec<u8>>,
}

impl Tensor {
    /// The number of elements, if every dimension is known.
    pub fn elements(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
    }
}

/// The builtin operators tinyconv knows by name; anything else keeps its schema number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuiltinOp {
    Add,
    AveragePool2d,
    Concatenation,
    Conv2d,
    DepthwiseConv2d,
    Dequantize,
    FullyConnected,
    Logistic,
    MaxPool2d,
    Mul,
    Relu,
    Relu6,
    Reshape,
    Softmax,
    Pad,
    Mean,
    Squeeze,
    Quantize,
    HardSwish,
    LeakyRelu,
    /// A builtin by its `BuiltinOperator` number.
    Other(i32),
    /// A custom operator, by its name.
    Custom,
}

impl BuiltinOp {
    pub(crate) fn from_schema(code: i32) -> Self {
        match code {
            0 => Self::Add,
            1 => Self::AveragePool2d,
            2 => Self::Concatenation,
            3 => Self::Conv2d,
            4 => Self::DepthwiseConv2d,
            6 => Self::Dequantize,
            9 => Self::FullyConnected,
            14 => Self::Logistic,
            17 => Self::MaxPool2d,
            18 => Self::Mul,
            19 => Self::Relu,
            21 => Self::Relu6,
            22 => Self::Reshape,
            25 => Self::Softmax,
            32 => Self::Custom,
            34 => Self::Pad,
            40 => Self::Mean,
            43 => Self::Squeeze,
            98 => Self::LeakyRelu,
            114 => Self::Quantize,
            117 => Self::HardSwish,
            other => Self::Other(other),
        }
    }

    /// The schema's name (`CONV_2D`, …), as TensorFlow prints it.
    pub fn name(self) -> String {
        let s = match self {
            Self::Add => "ADD",
            Self::AveragePool2d => "AVERAGE_POOL_2D",
            Self::Concatenation => "CONCATENATION",
            Self::Conv2d => "CONV_2D",
            Self::DepthwiseConv2d => "DEPTHWISE_CONV_2D",
            Self::Dequantize => "DEQUANTIZE",
            Self::FullyConnected => "FULLY_CONNECTED",
            Self::Logistic => "LOGISTIC",
            Self::MaxPool2d => "MAX_POOL_2D",
            Self::Mul => "MUL",
            Self::Relu => "RELU",
            Self::Relu6 => "RELU6",
            Self::Reshape => "RESHAPE",
            Self::Softmax => "SOFTMAX",
            Self::Pad => "PAD",
            Self::Mean => "MEAN",
            Self::Squeeze => "SQUEEZE",
            Self::Quantize => "QUANTIZE",
            Self::HardSwish => "HARD_SWISH",
            Self::LeakyRelu => "LEAKY_RELU",
            Self::Custom => "CUSTOM",
            Self::Other(n) => return format!("builtin operator {n}"),
        };
        s.into()
    }
}

/// `SAME` or `VALID` padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    Same,
    Valid,
}

/// A fused activation (`ActivationFunctionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    None,
    Relu,
    ReluN1To1,
    Relu6,
    Tanh,
    SignBit,
    Other(i8),
}

impl Activation {
    pub(crate) fn from_schema(v: i8) -> Self {
        match v {
            0 => Self::None,
            1 => Self::Relu,
            2 => Self::ReluN1To1,
            3 => Self::Relu6,
            4 => Self::Tanh,
            5 => Self::SignBit,
            other => Self::Other(other),
        }
    }
}

/// The builtin options of the operators tinyconv reads; others are kept as their union tag.
#[derive(Clone, Debug, PartialEq)]
pub enum Options {
    None,
    Conv2d {
        padding: Padding,
        stride_w: i32,
        stride_h: i32,
        activation: Activation,
        dilation_w: i32,
        dilation_h: i32,
    },
    DepthwiseConv2d {
        padding: Padding,
        stride_w: i32,
        stride_h: i32,
        depth_multiplier: i32,
        activation: Activation,
        dilation_w: i32,
        dilation_h: i32,
    },
    Pool2d {
        padding: Padding,
        stride_w: i32,
        stride_h: i32,
        filter_w: i32,
        filter_h: i32,
        activation: Activation,
    },
    FullyConnected {
        activation: Activation,
        /// 0 is the plain layout; 1 (`SHUFFLED4x16INT8`) is not supported by tinyconv.
        weights_format: i8,
        keep_num_dims: bool,
        asymmetric_quantize_inputs: bool,
    },
    Softmax {
        beta: f32,
    },
    Add {
        activation: Activation,
        pot_scale_int16: bool,
    },
    Reshape {
        new_shape: Vec<i32>,
    },
    /// Options of another kind, by their `BuiltinOptions` union tag.
    Other(u8),
}

/// One operator: what it is, its input tensors (`None` for an omitted optional input) and its
/// output tensors, in the order the model runs them.
#[derive(Clone, Debug, PartialEq)]
pub struct Operator {
    pub code: BuiltinOp,
    /// The operator's version in the model's `operator_codes`.
    pub version: i32,
    /// A custom operator's name (empty for builtins).
    pub custom_code: String,
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    pub options: Options,
}
