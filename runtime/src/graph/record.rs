//! The one decoder of v2 records. It is `const` and does no validation, so the planner can run
//! on the raw bytes at compile time; [`super::parse`] validates every field it reads before any
//! kernel trusts it.

use super::format::{self, record, tensor};
use crate::format::{read_u8, read_u16, read_u32};

/// A tensor record as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawTensor {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub zero_point: i8,
    pub scale_bits: u32,
}

impl RawTensor {
    /// Elements (= bytes), computed in u64 so that no dimension can overflow a 32-bit `usize`.
    pub const fn len_u64(&self) -> u64 {
        self.h as u64 * self.w as u64 * self.c as u64
    }
}

/// A sliding window as stored (conv and pool ops; zero for the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawWindow {
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
}

impl RawWindow {
    pub const fn is_zero(&self) -> bool {
        self.kernel_h == 0
            && self.kernel_w == 0
            && self.stride_h == 0
            && self.stride_w == 0
            && self.pad_top == 0
            && self.pad_left == 0
            && self.pad_bottom == 0
            && self.pad_right == 0
    }

    /// Output rows and columns for an input of `h` x `w`, or `None` when the window does not
    /// fit (a zero stride or kernel, or a kernel larger than the padded input).
    pub const fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        if self.kernel_h == 0 || self.kernel_w == 0 || self.stride_h == 0 || self.stride_w == 0 {
            return None;
        }
        let ph = h + self.pad_top + self.pad_bottom;
        let pw = w + self.pad_left + self.pad_right;
        if ph < self.kernel_h || pw < self.kernel_w {
            return None;
        }
        Some((
            (ph - self.kernel_h) / self.stride_h + 1,
            (pw - self.kernel_w) / self.stride_w + 1,
        ))
    }
}

/// An op record as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawOp {
    pub code: u8,
    pub flags: u8,
    pub clamp_min: i8,
    pub clamp_max: i8,
    pub input0: u16,
    pub input1: u16,
    pub output: u16,
    pub window: RawWindow,
    pub weights_offset: u32,
    pub weights_len: u32,
    pub bias_offset: u32,
    pub weight_scales_offset: u32,
    pub multipliers_offset: u32,
    pub params: [i32; record::PARAMS_WORDS],
}

/// Header fields the planner needs: (tensor count, op count, input, output).
pub const fn counts(bytes: &[u8]) -> (usize, usize, usize, usize) {
    (
        read_u16(bytes, format::header::TENSOR_COUNT) as usize,
        read_u16(bytes, format::header::OP_COUNT) as usize,
        read_u16(bytes, format::header::INPUT) as usize,
        read_u16(bytes, format::header::OUTPUT) as usize,
    )
}

/// Tensor record `index` (the caller has checked that the table lies inside `bytes`).
pub const fn raw_tensor(bytes: &[u8], index: usize) -> RawTensor {
    let t = format::tensor_at(index);
    RawTensor {
        h: read_u16(bytes, t + tensor::H) as usize,
        w: read_u16(bytes, t + tensor::W) as usize,
        c: read_u16(bytes, t + tensor::C) as usize,
        zero_point: read_u8(bytes, t + tensor::ZERO_POINT) as i8,
        scale_bits: read_u32(bytes, t + tensor::SCALE),
    }
}

/// Op record `index` of a file with `tensor_count` tensors.
pub const fn raw_op(bytes: &[u8], tensor_count: usize, index: usize) -> RawOp {
    let r = format::op_at(tensor_count, index);
    let mut params = [0i32; record::PARAMS_WORDS];
    let mut i = 0;
    while i < record::PARAMS_WORDS {
        params[i] = read_u32(bytes, r + record::PARAMS + 4 * i) as i32;
        i += 1;
    }
    RawOp {
        code: read_u8(bytes, r + record::OP),
        flags: read_u8(bytes, r + record::FLAGS),
        clamp_min: read_u8(bytes, r + record::CLAMP_MIN) as i8,
        clamp_max: read_u8(bytes, r + record::CLAMP_MAX) as i8,
        input0: read_u16(bytes, r + record::INPUT0),
        input1: read_u16(bytes, r + record::INPUT1),
        output: read_u16(bytes, r + record::OUTPUT),
        window: RawWindow {
            kernel_h: read_u8(bytes, r + record::KERNEL_H) as usize,
            kernel_w: read_u8(bytes, r + record::KERNEL_W) as usize,
            stride_h: read_u8(bytes, r + record::STRIDE_H) as usize,
            stride_w: read_u8(bytes, r + record::STRIDE_W) as usize,
            pad_top: read_u8(bytes, r + record::PAD_TOP) as usize,
            pad_left: read_u8(bytes, r + record::PAD_LEFT) as usize,
            pad_bottom: read_u8(bytes, r + record::PAD_BOTTOM) as usize,
            pad_right: read_u8(bytes, r + record::PAD_RIGHT) as usize,
        },
        weights_offset: read_u32(bytes, r + record::WEIGHTS_OFFSET),
        weights_len: read_u32(bytes, r + record::WEIGHTS_LEN),
        bias_offset: read_u32(bytes, r + record::BIAS_OFFSET),
        weight_scales_offset: read_u32(bytes, r + record::WEIGHT_SCALES_OFFSET),
        multipliers_offset: read_u32(bytes, r + record::MULTIPLIERS_OFFSET),
        params,
    }
}
