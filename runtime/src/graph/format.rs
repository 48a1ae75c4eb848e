//! The `.tcm` layout, version 2: a graph of ops over activation tensors.
//! `docs/model-format.md` is the prose version of this module; the two must agree.
//!
//! All integers and floats are little-endian. A file is:
//! header (64 bytes) | tensor table (16 bytes a tensor) | op table (64 bytes an op) |
//! data blobs (each 16-byte aligned) | CRC-32 of everything before it.

/// The only version of this layout; version 1 files are read by [`crate::Model`].
pub const VERSION: u16 = 2;
pub const HEADER_LEN: usize = 64;
pub const TENSOR_RECORD_LEN: usize = 16;
pub const OP_RECORD_LEN: usize = 64;
/// Capacity of the planner's tables (the plan lives in a fixed array, there is no heap).
pub const MAX_TENSORS: usize = 128;
pub const MAX_OPS: usize = 128;
/// The largest tensor, in bytes: far above any MCU's RAM, and small enough that every size
/// product below fits a 32-bit `usize` with room to spare.
pub const MAX_TENSOR_BYTES: usize = 1 << 24;
/// The op record's "no tensor" (an absent second input).
pub const NO_TENSOR: u16 = u16::MAX;

/// How an int8 model rescales its int32 accumulators. The whole file follows one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// ONNX `QLinearConv` as tract evaluates it (f32 scale, one rounding; see [`crate::quant`]).
    Onnx,
    /// TensorFlow Lite Micro's and CMSIS-NN's: Q31 multiplier and shift, doubling high multiply,
    /// rounding divide by a power of two (see [`crate::tflite_rule`]).
    Tflite,
}

impl Rule {
    pub const fn code(self) -> u8 {
        match self {
            Rule::Onnx => 0,
            Rule::Tflite => 1,
        }
    }

    pub const fn from_code(code: u8) -> Option<Rule> {
        match code {
            0 => Some(Rule::Onnx),
            1 => Some(Rule::Tflite),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Rule::Onnx => "onnx",
            Rule::Tflite => "tflite",
        }
    }
}

/// Byte offsets inside the header.
pub mod header {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    /// [`super::Rule::code`].
    pub const RULE: usize = 6;
    /// [`super::flags`].
    pub const FLAGS: usize = 7;
    pub const FILE_LEN: usize = 8;
    pub const TENSOR_COUNT: usize = 12;
    pub const OP_COUNT: usize = 14;
    pub const INPUT: usize = 16;
    pub const OUTPUT: usize = 18;
    /// Real value of one unit of a raw u8 pixel (only with [`super::flags::PIXELS`]).
    pub const PIXEL_SCALE: usize = 20;
    /// The pixel multiplier `pixel_scale / input_scale` as [`crate::Multiplier`].
    pub const PIXEL_MANTISSA: usize = 24;
    pub const PIXEL_SHIFT: usize = 28;
    /// Bytes 32..64 are reserved and must be zero.
    pub const RESERVED: (usize, usize) = (32, 64);
}

/// Header flag bits.
pub mod flags {
    /// The model also takes raw u8 pixels, quantized inside with the pixel multiplier.
    pub const PIXELS: u8 = 1;
    pub const ALL: u8 = PIXELS;
}

/// Op record flag bits.
pub mod op_flags {
    /// dense only: the weights are stored as int16 (each the value of an int8 weight), rows
    /// in groups of 8 interleaved for the Cortex-M4 kernel (`ops::dense::wide_index`); rows a
    /// multiple of 8, inputs of 4. Twice the flash, no widening at run time.
    pub const WIDE: u8 = 1;
}

/// Byte offsets inside one tensor record.
pub mod tensor {
    pub const H: usize = 0;
    pub const W: usize = 2;
    pub const C: usize = 4;
    /// i8.
    pub const ZERO_POINT: usize = 6;
    /// Byte 7 is reserved and must be zero.
    pub const RESERVED_BYTE: usize = 7;
    /// f32, positive and normal.
    pub const SCALE: usize = 8;
    /// Bytes 12..16 are reserved and must be zero.
    pub const RESERVED: (usize, usize) = (12, 16);
}

/// Byte offsets inside one op record.
pub mod record {
    pub const OP: usize = 0;
    /// [`super::op_flags`]; zero but for the bits an op allows.
    pub const FLAGS: usize = 1;
    /// The fused output clamp, i8 codes, `CLAMP_MIN <= CLAMP_MAX`.
    pub const CLAMP_MIN: usize = 2;
    pub const CLAMP_MAX: usize = 3;
    /// Tensor indices (u16); `INPUT1` is [`super::NO_TENSOR`] unless the op is an add.
    pub const INPUT0: usize = 4;
    pub const INPUT1: usize = 6;
    pub const OUTPUT: usize = 8;
    /// Bytes 10..12 are reserved and must be zero.
    pub const RESERVED_A: (usize, usize) = (10, 12);
    /// u8 each: the window of conv and pool ops, zero for the others.
    pub const KERNEL_H: usize = 12;
    pub const KERNEL_W: usize = 13;
    pub const STRIDE_H: usize = 14;
    pub const STRIDE_W: usize = 15;
    pub const PAD_TOP: usize = 16;
    pub const PAD_LEFT: usize = 17;
    pub const PAD_BOTTOM: usize = 18;
    pub const PAD_RIGHT: usize = 19;
    /// u32 blob offsets (and the weights' length) of conv and dense ops, zero for the others.
    pub const WEIGHTS_OFFSET: usize = 20;
    pub const WEIGHTS_LEN: usize = 24;
    pub const BIAS_OFFSET: usize = 28;
    pub const WEIGHT_SCALES_OFFSET: usize = 32;
    pub const MULTIPLIERS_OFFSET: usize = 36;
    /// Six op-specific i32 words (add: the three [`crate::tflite_rule::AddParams`] multipliers
    /// and shifts; softmax: its input multiplier, left shift, diff_min and beta's f32 bits).
    pub const PARAMS: usize = 40;
    pub const PARAMS_WORDS: usize = 6;
}

/// Op codes.
pub mod op {
    pub const CONV2D: u8 = 1;
    pub const DEPTHWISE_CONV2D: u8 = 2;
    pub const DENSE: u8 = 3;
    pub const MAX_POOL: u8 = 4;
    pub const AVG_POOL: u8 = 5;
    pub const ADD: u8 = 6;
    pub const SOFTMAX: u8 = 7;
    pub const RESHAPE: u8 = 8;
}

/// Bytes per output channel of the per-channel arrays (as in version 1).
pub const BIAS_BYTES: usize = 4;
pub const WEIGHT_SCALE_BYTES: usize = 4;
/// onnx rule: `u32` mantissa then `i32` shift; tflite rule: `i32` Q31 multiplier then `i32` shift.
pub const MULTIPLIER_BYTES: usize = 8;

/// Byte offset of tensor record `index`.
pub const fn tensor_at(index: usize) -> usize {
    HEADER_LEN + index * TENSOR_RECORD_LEN
}

/// Byte offset of op record `index` in a file with `tensor_count` tensors.
pub const fn op_at(tensor_count: usize, index: usize) -> usize {
    HEADER_LEN + tensor_count * TENSOR_RECORD_LEN + index * OP_RECORD_LEN
}
