//! The int8 kernels. Each family has a scalar reference in [`reference`], written to be
//! obviously right, beside the optimized version the runtime uses; tests hold them bit-exact.

pub mod blocked;
pub mod conv;
pub mod dot;
pub mod dsp;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub mod host;
pub mod pool;
pub mod reference;
pub mod requant;

pub use conv::{DispatchCounts, dispatch_counts, reset_dispatch_counts};

/// Whether this build has the DSP kernels (`dsp::Asm`): Armv7E-M targets, unless
/// `TINYCONV_PORTABLE=1` at build time (see `runtime/build.rs`).
pub const DSP_KERNELS: bool = cfg!(tinyconv_dsp);

use crate::error::Shape;
use crate::format;
use crate::quant::Multiplier;

/// Per-output-channel parameters, read from little-endian bytes in place (so a model in flash
/// needs no copy and no particular alignment).
#[derive(Clone, Copy, Debug)]
pub struct ChannelParams<'a> {
    bias: &'a [u8],
    multipliers: &'a [u8],
}

impl<'a> ChannelParams<'a> {
    /// `bias`: one LE i32 a channel; `multipliers`: one LE (u32 mantissa, i32 shift) a channel.
    pub const fn new(bias: &'a [u8], multipliers: &'a [u8]) -> Self {
        ChannelParams { bias, multipliers }
    }

    /// Number of channels the bytes describe.
    pub fn len(&self) -> usize {
        self.bias.len() / format::BIAS_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same parameters as word slices when the bytes are 4-byte aligned (model blobs are
    /// 16-byte aligned) on a little-endian target: one load a value instead of four.
    pub fn words(&self) -> Option<(&'a [i32], &'a [u32])> {
        if cfg!(target_endian = "little") {
            let bias = bytemuck::try_cast_slice(self.bias).ok()?;
            let multipliers = bytemuck::try_cast_slice(self.multipliers).ok()?;
            Some((bias, multipliers))
        } else {
            None
        }
    }

    #[inline]
    pub fn bias(&self, channel: usize) -> i32 {
        format::read_i32(self.bias, channel * format::BIAS_BYTES)
    }

    #[inline]
    pub fn multiplier(&self, channel: usize) -> Multiplier {
        let at = channel * format::MULTIPLIER_BYTES;
        Multiplier {
            mantissa: format::read_u32(self.multipliers, at),
            shift: format::read_i32(self.multipliers, at + 4),
        }
    }
}

/// A quantized convolution (a dense layer is the 1x1 case over a 1x1xN input), optionally with
/// ReLU and a 2x2 max pool fused. Tensors are NHWC (N = 1), weights OHWI.
#[derive(Clone, Copy, Debug)]
pub struct Conv<'a> {
    pub input: Shape,
    pub kernel: usize,
    /// Zero padding (in real values, i.e. the input zero point) on each side.
    pub pad: usize,
    pub out_channels: usize,
    pub weights: &'a [i8],
    pub channels: ChannelParams<'a>,
    pub input_zero_point: i8,
    pub output_zero_point: i8,
    pub relu: bool,
    pub pool: bool,
}

impl Conv<'_> {
    /// The convolution's own output, before pooling.
    pub const fn conv_output(&self) -> Shape {
        Shape::new(
            self.input.h + 2 * self.pad + 1 - self.kernel,
            self.input.w + 2 * self.pad + 1 - self.kernel,
            self.out_channels,
        )
    }

    /// What the kernel writes: the pooled shape when pooling is fused.
    pub const fn output(&self) -> Shape {
        let conv = self.conv_output();
        if self.pool {
            Shape::new(conv.h / 2, conv.w / 2, conv.c)
        } else {
            conv
        }
    }

    /// Weights of one output channel, in HWI order.
    #[inline]
    pub fn filter(&self, channel: usize) -> &[i8] {
        let len = self.kernel * self.kernel * self.input.c;
        &self.weights[channel * len..(channel + 1) * len]
    }

    /// The lower clamp: the zero point when ReLU is fused, else the int8 minimum.
    #[inline]
    pub const fn output_floor(&self) -> i32 {
        if self.relu {
            self.output_zero_point as i32
        } else {
            i8::MIN as i32
        }
    }
}

/// A layer's input and output tensors as the kernels see them: two separate slices
/// ([`Separate`]), or two ranges of one arena that may overlap ([`InArena`]) when the arena
/// plan lets a layer's output stream over input rows it has finished reading
/// ([`crate::plan`]). Kernels read through [`Tensors::input`] and write through
/// [`Tensors::output`] and never hold one across the other, so an overlap is safe as long
/// as every kernel reads and writes in the row order the plan assumes (see
/// [`crate::plan::first_live_row`]).
pub trait Tensors {
    /// The input tensor's values.
    fn input(&self) -> &[i8];
    /// The output tensor's values.
    fn output(&mut self) -> &mut [i8];
    /// Both at once when they do not overlap.
    fn split(&mut self) -> Option<(&[i8], &mut [i8])>;
}

/// Input and output in two slices.
#[derive(Debug)]
pub struct Separate<'a> {
    pub input: &'a [i8],
    pub output: &'a mut [i8],
}

impl Tensors for Separate<'_> {
    fn input(&self) -> &[i8] {
        self.input
    }
    fn output(&mut self) -> &mut [i8] {
        self.output
    }
    fn split(&mut self) -> Option<(&[i8], &mut [i8])> {
        Some((self.input, self.output))
    }
}

/// Input and output as ranges of one arena (they may overlap).
#[derive(Debug)]
pub struct InArena<'a> {
    arena: &'a mut [i8],
    input: core::ops::Range<usize>,
    output: core::ops::Range<usize>,
}

impl<'a> InArena<'a> {
    /// # Panics
    /// If a range lies outside `arena`.
    pub fn new(
        arena: &'a mut [i8],
        input: core::ops::Range<usize>,
        output: core::ops::Range<usize>,
    ) -> Self {
        assert!(input.end <= arena.len() && output.end <= arena.len());
        InArena {
            arena,
            input,
            output,
        }
    }
}

impl Tensors for InArena<'_> {
    fn input(&self) -> &[i8] {
        &self.arena[self.input.clone()]
    }
    fn output(&mut self) -> &mut [i8] {
        &mut self.arena[self.output.clone()]
    }
    fn split(&mut self) -> Option<(&[i8], &mut [i8])> {
        let (i, o) = (self.input.clone(), self.output.clone());
        if i.end <= o.start {
            let (a, b) = self.arena.split_at_mut(o.start);
            Some((&a[i], &mut b[..o.end - o.start]))
        } else if o.end <= i.start {
            let (a, b) = self.arena.split_at_mut(i.start);
            Some((&b[..i.end - i.start], &mut a[o]))
        } else {
            None
        }
    }
}
