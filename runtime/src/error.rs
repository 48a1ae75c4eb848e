//! One typed error for everything that can go wrong: each variant names the fault and, through
//! its `Display`, what to do about it.

use core::fmt;

/// A layer's activation shape, height x width x channels (NHWC with N = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Shape { h, w, c }
    }

    /// Number of int8 values.
    pub const fn len(self) -> usize {
        self.h * self.w * self.c
    }

    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

/// Which per-layer blob or field a fault is about.
pub type What = &'static str;

#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the structure being read needs.
    Truncated {
        needed: usize,
        actual: usize,
    },
    BadMagic {
        found: [u8; 4],
    },
    UnsupportedVersion {
        found: u16,
        supported: u16,
    },
    /// The header's file length disagrees with the number of bytes given.
    LengthMismatch {
        header: usize,
        actual: usize,
    },
    ChecksumMismatch {
        stored: u32,
        computed: u32,
    },
    /// Zero layers, or more than [`crate::format::MAX_LAYERS`].
    LayerCount {
        count: usize,
        max: usize,
    },
    UnsupportedOp {
        layer: usize,
        op: u8,
    },
    /// A field of a layer record holds a value the op does not allow.
    InvalidField {
        layer: Option<usize>,
        field: What,
    },
    /// A layer's input is not the previous layer's output, or its output is not what its op
    /// computes from its input.
    ShapeMismatch {
        layer: usize,
        what: What,
        expected: Shape,
        found: Shape,
    },
    /// A scale or zero point that is out of range, or a stored multiplier that is not the one the
    /// scales define.
    BadQuantization {
        layer: Option<usize>,
        what: What,
    },
    /// A blob that lies outside the file, overlaps the table, is misaligned or has the wrong size.
    BadBlob {
        layer: usize,
        what: What,
    },
    /// A weight of -128 (weights are symmetric, -127..=127).
    WeightOutOfRange {
        layer: usize,
        index: usize,
    },
    /// The worst case int32 accumulator of some output channel could overflow.
    AccumulatorOverflow {
        layer: usize,
        channel: usize,
    },
    /// The caller's activation arena is smaller than [`crate::Model::arena_len`].
    ArenaTooSmall {
        needed: usize,
        actual: usize,
    },
    /// The image does not have the model's input size.
    InputSize {
        expected: usize,
        actual: usize,
    },
    /// An output buffer (e.g. for probabilities) has the wrong length.
    OutputSize {
        expected: usize,
        actual: usize,
    },
    /// Version 2: an op code this runtime does not know.
    UnknownOp {
        op: usize,
        code: u8,
    },
    /// Version 2: more tensors or ops than the planner's tables hold, or none.
    GraphSize {
        what: What,
        count: usize,
        max: usize,
    },
    /// Version 2: a tensor reference that is out of range, read before it is written, written
    /// twice, or never written.
    GraphOrder {
        op: Option<usize>,
        what: What,
        tensor: usize,
    },
    /// Version 2: a tensor larger than [`crate::graph::format::MAX_TENSOR_BYTES`].
    TensorTooLarge {
        tensor: usize,
        bytes: u64,
    },
    /// Version 2: an op whose arithmetic the model's rule does not define (yet).
    NotUnderRule {
        op: usize,
        name: What,
        rule: What,
    },
    /// Version 2: the model takes its int8 tensor only, not raw pixels.
    NoPixelInput,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        const REEXPORT: &str = "re-export the model with `tinyconv train` or check the file";
        match *self {
            Truncated { needed, actual } => write!(
                f,
                "model file truncated: needs at least {needed} bytes, has {actual}; \
                 the copy is incomplete, copy or export it again"
            ),
            BadMagic { found } => write!(
                f,
                "not a tinyconv model file: magic {found:02x?} is not \"TCMF\"; \
                 pass a .tcm file written by `tinyconv train`"
            ),
            UnsupportedVersion { found, supported } => write!(
                f,
                "model file version {found} is not supported (this runtime reads version \
                 {supported}); re-export it with a matching tinyconv"
            ),
            LengthMismatch { header, actual } => write!(
                f,
                "model file is {actual} bytes but its header says {header}: truncated or has \
                 trailing data; {REEXPORT}"
            ),
            ChecksumMismatch { stored, computed } => write!(
                f,
                "model file checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): \
                 the file is corrupt; {REEXPORT}"
            ),
            LayerCount { count, max } => {
                write!(
                    f,
                    "model has {count} layers; 1 to {max} are supported; {REEXPORT}"
                )
            }
            UnsupportedOp { layer, op } => write!(
                f,
                "layer {layer}: op code {op} is not supported (1 conv2d, 2 maxpool2d, 3 flatten, \
                 4 dense); {REEXPORT}"
            ),
            InvalidField {
                layer: Some(layer),
                field,
            } => {
                write!(f, "layer {layer}: invalid {field}; {REEXPORT}")
            }
            InvalidField { layer: None, field } => {
                write!(f, "model header: invalid {field}; {REEXPORT}")
            }
            ShapeMismatch {
                layer,
                what,
                expected,
                found,
            } => write!(
                f,
                "layer {layer}: {what} is {found} but must be {expected}: the layer shapes do not \
                 chain; {REEXPORT}"
            ),
            BadQuantization {
                layer: Some(layer),
                what,
            } => {
                write!(f, "layer {layer}: bad quantization: {what}; {REEXPORT}")
            }
            BadQuantization { layer: None, what } => {
                write!(f, "model input: bad quantization: {what}; {REEXPORT}")
            }
            BadBlob { layer, what } => write!(
                f,
                "layer {layer}: {what} lies outside the file, is misaligned or has the wrong size; \
                 {REEXPORT}"
            ),
            WeightOutOfRange { layer, index } => write!(
                f,
                "layer {layer}: weight {index} is -128 but weights must be symmetric \
                 (-127..=127); {REEXPORT}"
            ),
            AccumulatorOverflow { layer, channel } => write!(
                f,
                "layer {layer}: the int32 accumulator of output channel {channel} could overflow \
                 (bias or weights too large); {REEXPORT}"
            ),
            ArenaTooSmall { needed, actual } => write!(
                f,
                "activation arena too small: the model needs {needed} bytes, got {actual}; \
                 size it with Model::arena_len() or required_arena_len()"
            ),
            InputSize { expected, actual } => write!(
                f,
                "input has {actual} pixels but the model takes {expected}; resize the image to \
                 the model's input shape"
            ),
            OutputSize { expected, actual } => {
                write!(
                    f,
                    "output buffer has {actual} entries but must have {expected}"
                )
            }
            UnknownOp { op, code } => write!(
                f,
                "op {op}: op code {code} is not supported (1 conv2d, 2 depthwise_conv2d, \
                 3 dense, 4 max_pool, 5 avg_pool, 6 add, 7 softmax, 8 reshape); {REEXPORT}"
            ),
            GraphSize { what, count, max } => write!(
                f,
                "model has {count} {what}; 1 to {max} are supported; {REEXPORT}"
            ),
            GraphOrder {
                op: Some(op),
                what,
                tensor,
            } => write!(f, "op {op}: tensor {tensor} {what}; {REEXPORT}"),
            GraphOrder {
                op: None,
                what,
                tensor,
            } => write!(f, "model graph: tensor {tensor} {what}; {REEXPORT}"),
            TensorTooLarge { tensor, bytes } => write!(
                f,
                "tensor {tensor} would take {bytes} bytes, above the {} supported; {REEXPORT}",
                crate::graph::format::MAX_TENSOR_BYTES
            ),
            NotUnderRule { op, name, rule } => write!(
                f,
                "op {op}: {name} is not defined under the {rule} rule in this runtime; \
                 use the tflite rule for it, or re-export the model without it"
            ),
            NoPixelInput => write!(
                f,
                "this model takes its int8 input tensor, not raw pixels; quantize the input \
                 with the model's input scale and zero point and call infer_int8"
            ),
        }
    }
}

impl core::error::Error for Error {}
