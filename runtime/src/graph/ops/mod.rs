//! One module per op: its validation (shape rule, fields, blobs, quantization), its scratch
//! size and its kernel. Adding an op means adding a module and a line in each `match` below.

pub mod add;
pub mod avg_pool;
pub mod conv2d;
pub mod dense;
pub mod depthwise_conv2d;
pub mod max_pool;
pub mod reshape;
pub mod softmax;

use super::Clamp;
use super::format::{self, Rule, op};
use super::io::Io;
use super::record::{RawOp, RawTensor, RawWindow};
use crate::error::{Error, Shape, What};
use crate::quant::{self, Multiplier, QuantParams};
use crate::tflite_rule::{self, QuantizedMultiplier};

/// What an op computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Conv2d,
    DepthwiseConv2d,
    Dense,
    MaxPool,
    AvgPool,
    Add,
    Softmax,
    Reshape,
}

impl OpKind {
    pub const fn from_code(code: u8) -> Option<OpKind> {
        Some(match code {
            op::CONV2D => OpKind::Conv2d,
            op::DEPTHWISE_CONV2D => OpKind::DepthwiseConv2d,
            op::DENSE => OpKind::Dense,
            op::MAX_POOL => OpKind::MaxPool,
            op::AVG_POOL => OpKind::AvgPool,
            op::ADD => OpKind::Add,
            op::SOFTMAX => OpKind::Softmax,
            op::RESHAPE => OpKind::Reshape,
            _ => return None,
        })
    }

    pub const fn code(self) -> u8 {
        match self {
            OpKind::Conv2d => op::CONV2D,
            OpKind::DepthwiseConv2d => op::DEPTHWISE_CONV2D,
            OpKind::Dense => op::DENSE,
            OpKind::MaxPool => op::MAX_POOL,
            OpKind::AvgPool => op::AVG_POOL,
            OpKind::Add => op::ADD,
            OpKind::Softmax => op::SOFTMAX,
            OpKind::Reshape => op::RESHAPE,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            OpKind::Conv2d => "conv2d",
            OpKind::DepthwiseConv2d => "depthwise_conv2d",
            OpKind::Dense => "dense",
            OpKind::MaxPool => "max_pool",
            OpKind::AvgPool => "avg_pool",
            OpKind::Add => "add",
            OpKind::Softmax => "softmax",
            OpKind::Reshape => "reshape",
        }
    }

    /// Whether the op has weights, biases and per-channel multipliers.
    pub const fn has_weights(self) -> bool {
        matches!(
            self,
            OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::Dense
        )
    }

    /// Whether the op uses its window fields.
    pub const fn has_window(self) -> bool {
        matches!(
            self,
            OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::MaxPool | OpKind::AvgPool
        )
    }
}

/// An activation tensor of a validated graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorInfo {
    pub shape: Shape,
    pub quant: QuantParams,
}

/// The per-channel arrays of a conv, depthwise or dense op: int32 bias and the rule's
/// multiplier words (onnx: mantissa and shift of [`Multiplier`]; tflite: Q31 multiplier and
/// shift of [`QuantizedMultiplier`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Channels<'m> {
    bias: &'m [u8],
    multipliers: &'m [u8],
}

impl<'m> Channels<'m> {
    /// The bias and multiplier blobs as stored.
    pub fn blobs(&self) -> (&'m [u8], &'m [u8]) {
        (self.bias, self.multipliers)
    }

    pub fn len(&self) -> usize {
        self.bias.len() / format::BIAS_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.bias.is_empty()
    }

    pub fn bias(&self, c: usize) -> i32 {
        crate::format::read_i32(self.bias, c * format::BIAS_BYTES)
    }

    /// The two multiplier words of channel `c`.
    pub fn words(&self, c: usize) -> (i32, i32) {
        let at = c * format::MULTIPLIER_BYTES;
        (
            crate::format::read_i32(self.multipliers, at),
            crate::format::read_i32(self.multipliers, at + 4),
        )
    }
}

/// One validated op: a view into the model bytes.
#[derive(Clone, Copy, Debug)]
pub struct Node<'m> {
    pub index: usize,
    pub kind: OpKind,
    pub rule: Rule,
    /// The second input only for an add.
    pub inputs: [usize; 2],
    pub output: usize,
    pub input: TensorInfo,
    /// The add's second input (equal to `input` for every other op).
    pub input2: TensorInfo,
    pub output_info: TensorInfo,
    pub window: RawWindow,
    pub clamp: Clamp,
    /// Layout per op: see [`crate::graph::spec::WeightsSpec`]; empty without weights.
    pub weights: &'m [i8],
    pub channels: Channels<'m>,
    pub weight_scales: &'m [u8],
    pub params: [i32; format::record::PARAMS_WORDS],
    /// Every output channel's requantization has the fused form
    /// (`kernels::requant::Fused`: the tflite rule, a positive multiplier, a shift in
    /// `-23..=-2`), found once at parse time so that kernels need not check each channel.
    /// `false` on a node not from [`crate::graph::Graph::node`].
    pub fused: bool,
    /// A dense layer's weights in the wide layout (`format::op_flags::WIDE`: int16, 4-row
    /// groups; read them through [`dense::weight`]).
    pub wide: bool,
}

impl<'m> Node<'m> {
    /// The f32 weight scale of output channel `c`.
    pub fn weight_scale(&self, c: usize) -> f32 {
        crate::format::read_f32(self.weight_scales, c * format::WEIGHT_SCALE_BYTES)
    }

    /// Rescales an accumulator of channel `c` under the model's rule (before the zero point).
    #[inline]
    pub fn rescale(&self, acc: i32, c: usize) -> i32 {
        rescale(self.rule, acc, self.channels.words(c))
    }

    /// Adds the output zero point and applies the fused clamp.
    #[inline]
    pub fn finish(&self, scaled: i32) -> i8 {
        let y = scaled.saturating_add(self.output_info.quant.zero_point as i32);
        y.clamp(self.clamp.min as i32, self.clamp.max as i32) as i8
    }

    /// Multiply-accumulates of one inference.
    pub fn macs(&self) -> usize {
        match self.kind {
            OpKind::Conv2d | OpKind::DepthwiseConv2d => {
                let out = self.output_info.shape;
                let per_output = self.weights.len() / out.c.max(1);
                match self.kind {
                    OpKind::Conv2d => out.len() * per_output,
                    _ => out.len() * self.window.kernel_h * self.window.kernel_w,
                }
            }
            OpKind::Dense => self.weights.len() >> self.wide as usize,
            _ => 0,
        }
    }

    /// Weights plus biases.
    pub fn params_count(&self) -> usize {
        if self.kind.has_weights() {
            (self.weights.len() >> self.wide as usize) + self.channels.len()
        } else {
            0
        }
    }
}

/// The rule's rescale of one accumulator by a channel's multiplier words.
#[inline]
pub fn rescale(rule: Rule, acc: i32, words: (i32, i32)) -> i32 {
    match rule {
        Rule::Onnx => quant::scale_accumulator(
            acc,
            Multiplier {
                mantissa: words.0 as u32,
                shift: words.1,
            },
        ),
        Rule::Tflite => tflite_rule::multiply_by_quantized_multiplier(
            acc,
            QuantizedMultiplier {
                multiplier: words.0,
                shift: words.1,
            },
        ),
    }
}

/// The multiplier words a conv (`dense = false`) or dense op must store for one channel.
pub fn expected_words(
    rule: Rule,
    dense: bool,
    input_scale: f32,
    weight_scale: f32,
    output_scale: f32,
) -> Option<(i32, i32)> {
    match rule {
        Rule::Onnx => {
            let m = Multiplier::from_scale(quant::combined_scale(
                input_scale,
                weight_scale,
                output_scale,
            ))?;
            Some((m.mantissa as i32, m.shift))
        }
        Rule::Tflite => {
            let real = if dense {
                tflite_rule::dense_real_multiplier(input_scale, weight_scale, output_scale)
            } else {
                tflite_rule::conv_real_multiplier(input_scale, weight_scale, output_scale)
            };
            let m = tflite_rule::quantize_multiplier(real)?;
            Some((m.multiplier, m.shift))
        }
    }
}

/// What validation knows about an op before its own module looks at it.
pub(crate) struct Check<'m> {
    pub bytes: &'m [u8],
    /// First byte after the op table: blobs must start at or after it.
    pub data_start: usize,
    pub index: usize,
    pub raw: RawOp,
    pub node: Node<'m>,
}

impl<'m> Check<'m> {
    pub fn invalid(&self, field: What) -> Error {
        Error::InvalidField {
            layer: Some(self.index),
            field,
        }
    }

    pub fn shape_mismatch(&self, what: What, expected: Shape, found: Shape) -> Error {
        Error::ShapeMismatch {
            layer: self.index,
            what,
            expected,
            found,
        }
    }

    pub fn bad_quant(&self, what: What) -> Error {
        Error::BadQuantization {
            layer: Some(self.index),
            what,
        }
    }

    pub fn not_under_rule(&self) -> Error {
        Error::NotUnderRule {
            op: self.index,
            name: self.node.kind.name(),
            rule: self.node.rule.name(),
        }
    }

    /// The output must have the input's shape and quantization (pool-like and view ops).
    pub fn same_quant(&self) -> Result<(), Error> {
        if self.node.input.quant != self.node.output_info.quant {
            return Err(self.bad_quant("output must keep the input's scale and zero point"));
        }
        Ok(())
    }

    /// The window's output size must be the output tensor's.
    pub fn window_output(&self, channels: usize) -> Result<(), Error> {
        let w = self.raw.window;
        if w.pad_top >= w.kernel_h.max(1)
            || w.pad_bottom >= w.kernel_h.max(1)
            || w.pad_left >= w.kernel_w.max(1)
            || w.pad_right >= w.kernel_w.max(1)
        {
            return Err(self.invalid("padding (must be smaller than the kernel)"));
        }
        let input = self.node.input.shape;
        let (h, w) = w
            .output_hw(input.h, input.w)
            .ok_or(self.invalid("window (zero kernel or stride, or larger than the input)"))?;
        let expected = Shape::new(h, w, channels);
        if self.node.output_info.shape != expected {
            return Err(self.shape_mismatch("output shape", expected, self.node.output_info.shape));
        }
        Ok(())
    }

    /// A blob of `len` bytes at `offset`: in the data area, aligned, before the checksum.
    pub fn blob(&self, offset: u32, len: usize, what: What) -> Result<&'m [u8], Error> {
        let bad = Error::BadBlob {
            layer: self.index,
            what,
        };
        let offset = offset as usize;
        let end = offset.checked_add(len).ok_or(bad)?;
        if offset < self.data_start
            || !offset.is_multiple_of(crate::format::DATA_ALIGN)
            || end > self.bytes.len() - crate::format::CHECKSUM_LEN
        {
            return Err(bad);
        }
        Ok(&self.bytes[offset..end])
    }

    /// Reads and checks the weights, bias, scales and multipliers of an op with `channels`
    /// output channels of `per_channel` weights each.
    pub fn weights(&mut self, channels: usize, per_channel: usize) -> Result<(), Error> {
        let r = self.raw;
        let len = (channels as u64) * (per_channel as u64);
        if len > format::MAX_TENSOR_BYTES as u64 || r.weights_len as u64 != len {
            return Err(Error::BadBlob {
                layer: self.index,
                what: "weights (length)",
            });
        }
        let len = len as usize;
        let weights = self.blob(r.weights_offset, len, "weights")?;
        let bias = self.blob(r.bias_offset, channels * format::BIAS_BYTES, "bias")?;
        let scales = self.blob(
            r.weight_scales_offset,
            channels * format::WEIGHT_SCALE_BYTES,
            "weight scales",
        )?;
        let multipliers = self.blob(
            r.multipliers_offset,
            channels * format::MULTIPLIER_BYTES,
            "multipliers",
        )?;
        self.node.weights = bytemuck::cast_slice::<u8, i8>(weights);
        self.node.channels = Channels { bias, multipliers };
        self.node.weight_scales = scales;
        Ok(())
    }

    /// Per channel: weight scale, stored multiplier = the rule's, no -128 weight, and an
    /// accumulator that cannot overflow for any input (|x - z_in| <= 255 at every tap), also
    /// after the tflite rule's left shift. `filter(c)` yields channel c's weights.
    pub fn channels<I>(&self, dense: bool, filter: impl Fn(usize) -> I) -> Result<(), Error>
    where
        I: Iterator<Item = (usize, i8)>,
    {
        let n = &self.node;
        for c in 0..n.channels.len() {
            let s_w = n.weight_scale(c);
            if !(s_w.is_normal() && s_w > 0.0) {
                return Err(self.bad_quant("weight scale"));
            }
            let expected = expected_words(
                n.rule,
                dense,
                n.input.quant.scale,
                s_w,
                n.output_info.quant.scale,
            )
            .ok_or(self.bad_quant("combined scale s_in*s_w/s_out out of range"))?;
            let stored = n.channels.words(c);
            if stored != expected {
                return Err(self.bad_quant("stored multiplier differs from the rule's"));
            }
            let mut abs_sum: u64 = 0;
            for (index, w) in filter(c) {
                if w == i8::MIN {
                    return Err(Error::WeightOutOfRange {
                        layer: self.index,
                        index,
                    });
                }
                abs_sum += w.unsigned_abs() as u64;
            }
            let mut worst = abs_sum * 255 + n.channels.bias(c).unsigned_abs() as u64;
            if n.rule == Rule::Tflite && stored.1 > 0 {
                worst <<= stored.1.min(32) as u32;
            }
            if worst > i32::MAX as u64 {
                return Err(Error::AccumulatorOverflow {
                    layer: self.index,
                    channel: c,
                });
            }
        }
        Ok(())
    }

    /// Fields an op does not use must be zero.
    pub fn unused(
        &self,
        window: bool,
        blobs: bool,
        params: bool,
        clamp: bool,
    ) -> Result<(), Error> {
        let r = &self.raw;
        if window && !r.window.is_zero() {
            return Err(self.invalid("window fields (must be zero for this op)"));
        }
        if blobs
            && (r.weights_offset
                | r.weights_len
                | r.bias_offset
                | r.weight_scales_offset
                | r.multipliers_offset)
                != 0
        {
            return Err(Error::BadBlob {
                layer: self.index,
                what: "blob fields of an op without weights",
            });
        }
        if params && r.params.iter().any(|&p| p != 0) {
            return Err(self.invalid("op parameters (must be zero for this op)"));
        }
        if clamp && self.node.clamp != Clamp::NONE {
            return Err(self.invalid("clamp (this op has none: -128..=127)"));
        }
        Ok(())
    }
}

/// Validates op-specific fields, filling in the node's blobs.
pub(crate) fn check(c: &mut Check<'_>) -> Result<(), Error> {
    match c.node.kind {
        OpKind::Conv2d => conv2d::check(c),
        OpKind::DepthwiseConv2d => depthwise_conv2d::check(c),
        OpKind::Dense => dense::check(c),
        OpKind::MaxPool => max_pool::check(c),
        OpKind::AvgPool => avg_pool::check(c),
        OpKind::Add => add::check(c),
        OpKind::Softmax => softmax::check(c),
        OpKind::Reshape => reshape::check(c),
    }
}

/// Scratch bytes op `index` needs: the op module's `scratch_len` of the raw record (a `const
/// fn`, for the planner; the bytes are those of a file `Graph::parse` accepts, or a `const`).
pub const fn scratch_len(bytes: &[u8], tensor_count: usize, index: usize) -> usize {
    let raw = super::record::raw_op(bytes, tensor_count, index);
    let input = super::record::raw_tensor(bytes, raw.input0 as usize);
    let output = super::record::raw_tensor(bytes, raw.output as usize);
    match raw.code {
        op::CONV2D => conv2d::scratch_len(&raw, &input, &output),
        op::DEPTHWISE_CONV2D => depthwise_conv2d::scratch_len(&raw, &input, &output),
        op::DENSE => dense::scratch_len(&raw, &input, &output),
        _ => 0,
    }
}

/// How far op `index`'s output may stream over its input `slot` (0, or 1 for an add's second
/// input): the output may start at most `lead` bytes after that input (`out - in <= lead`;
/// a negative lead means before it) and overlap it, when the input is not read after this op.
/// `None`: the op's kernels read their input out of order, so the two must not share a byte.
/// A depthwise conv's lead is exact: its output starts at its input or shares no byte with it
/// (its column sweep runs channel by channel, in place).
/// The op module's `stream_lead` (a `const fn`, for the planner; `Graph::parse` checks plans
/// against it too).
pub const fn stream_lead(
    bytes: &[u8],
    tensor_count: usize,
    index: usize,
    slot: usize,
) -> Option<i64> {
    let raw = super::record::raw_op(bytes, tensor_count, index);
    let input = super::record::raw_tensor(bytes, raw.input0 as usize);
    let output = super::record::raw_tensor(bytes, raw.output as usize);
    match (raw.code, slot) {
        (op::CONV2D, 0) => conv2d::stream_lead(&raw, &input, &output),
        (op::ADD, 0 | 1) => add::stream_lead(),
        (op::DEPTHWISE_CONV2D, 0) => depthwise_conv2d::stream_lead(&raw, &input, &output),
        _ => None,
    }
}

/// The streaming lead of a windowed op whose kernels write output pixels in raster order and
/// read, before writing any byte of pixel `p`, only the window of pixels `<= p`, never an
/// input byte before `first(p)`, the first byte of pixel `p`'s window (clipped to the input):
/// writing pixel `p` (bytes up to `(p + 1) C_out` of the output) must stay below
/// `first(p)`, so `lead = min_p (first(p) - (p + 1) C_out)`. `first` rises with `p`, linearly
/// along a row once past the left padding, so each row's minimum is at one of three columns.
/// `None` for a degenerate window (the parse refuses it).
pub const fn window_lead(w: &RawWindow, input: &RawTensor, output: &RawTensor) -> Option<i64> {
    if w.stride_h == 0 || w.stride_w == 0 || output.w == 0 || output.h == 0 {
        return None;
    }
    let (wi, ci, wo, co) = (
        input.w as i64,
        input.c as i64,
        output.w as i64,
        output.c as i64,
    );
    let (sh, sw, pt, pl) = (
        w.stride_h as i64,
        w.stride_w as i64,
        w.pad_top as i64,
        w.pad_left as i64,
    );
    let past_pad = (pl + sw - 1) / sw;
    let columns = [past_pad - 1, past_pad, wo - 1];
    let mut lead = i64::MAX;
    let mut oy = 0;
    while oy < output.h as i64 {
        let row = if oy * sh > pt { oy * sh - pt } else { 0 };
        let mut k = 0;
        while k < columns.len() {
            let ox = columns[k];
            if ox >= 0 && ox < wo {
                let col = if ox * sw > pl { ox * sw - pl } else { 0 };
                let f = (row * wi + col) * ci - (oy * wo + ox + 1) * co;
                if f < lead {
                    lead = f;
                }
            }
            k += 1;
        }
        oy += 1;
    }
    Some(lead)
}

/// Runs one op: `inputs[1]` is only read by an add. The slices have the tensors' lengths;
/// `scratch` has the op's [`scratch_len`] bytes.
pub fn run(node: &Node<'_>, inputs: [&[i8]; 2], output: &mut [i8], scratch: &mut [i8]) {
    match node.kind {
        OpKind::Conv2d => conv2d::run(node, &mut Io::apart(inputs[0], output), scratch),
        OpKind::DepthwiseConv2d => depthwise_conv2d::run(node, inputs[0], output, scratch),
        OpKind::Dense => dense::run(node, inputs[0], output, scratch),
        OpKind::MaxPool => max_pool::reference(node, inputs[0], output),
        OpKind::AvgPool => avg_pool::run(node, inputs[0], output),
        OpKind::Add => add::run(node, &mut Io::apart(inputs[0], output), 0, inputs[1]),
        OpKind::Softmax => softmax::reference(node, inputs[0], output),
        OpKind::Reshape => output.copy_from_slice(inputs[0]),
    }
}

/// Runs an op whose output the plan let stream over its input `slot` ([`stream_lead`]): `io`
/// holds both; `other` is an add's other input. `false` (nothing run) for an op that does
/// not stream.
pub fn run_overlapping(
    node: &Node<'_>,
    io: &mut Io<'_>,
    slot: usize,
    other: &[i8],
    scratch: &mut [i8],
) -> bool {
    match node.kind {
        OpKind::Conv2d if slot == 0 => conv2d::run(node, io, scratch),
        OpKind::Add => add::run(node, io, slot, other),
        OpKind::DepthwiseConv2d if slot == 0 => {
            return depthwise_conv2d::run_in_place(node, io, scratch);
        }
        _ => return false,
    }
    true
}

/// The in-bounds range of kernel taps along one axis for output position `o`:
/// `(first tap, one past the last tap, input index of tap 0)`, the latter possibly negative.
#[inline]
pub fn taps(
    o: usize,
    stride: usize,
    pad: usize,
    kernel: usize,
    size: usize,
) -> (usize, usize, isize) {
    let origin = (o * stride) as isize - pad as isize;
    let first = if origin < 0 { (-origin) as usize } else { 0 };
    let last = if origin + kernel as isize > size as isize {
        (size as isize - origin).max(0) as usize
    } else {
        kernel
    };
    (first, last.max(first), origin)
}
