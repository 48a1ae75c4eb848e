//! Zero-copy, validating reader of `.tcm` model files.
//!
//! [`Model::parse`] checks everything once — checksum, shapes, blobs, quantization, accumulator
//! bounds — so that inference on a parsed model cannot fail or panic except for caller errors
//! (arena or input of the wrong size). Weights stay in the caller's bytes (flash on an MCU).

use crate::error::{Error, Shape, What};
use crate::format::{self, header, op, record};
use crate::kernels::{ChannelParams, Conv};
use crate::plan::{self, Mode, Plan};
use crate::quant::{Multiplier, QuantParams, combined_scale, requantize};

/// The operation of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Conv2d,
    MaxPool2d,
    Flatten,
    Dense,
}

impl Op {
    pub const fn name(self) -> &'static str {
        match self {
            Op::Conv2d => "conv2d",
            Op::MaxPool2d => "maxpool2d",
            Op::Flatten => "flatten",
            Op::Dense => "dense",
        }
    }

    const fn from_code(code: u8) -> Option<Op> {
        match code {
            op::CONV2D => Some(Op::Conv2d),
            op::MAXPOOL2D => Some(Op::MaxPool2d),
            op::FLATTEN => Some(Op::Flatten),
            op::DENSE => Some(Op::Dense),
            _ => None,
        }
    }
}

/// Convolution padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding: the output shrinks by `kernel - 1`.
    Valid,
    /// `kernel / 2` on each side (odd kernels only): the output keeps the input's size.
    Same,
}

impl Padding {
    /// Padding on each side for a kernel size.
    pub const fn amount(self, kernel: usize) -> usize {
        match self {
            Padding::Valid => 0,
            Padding::Same => kernel / 2,
        }
    }
}

/// One decoded layer: a view into the model bytes.
#[derive(Clone, Copy, Debug)]
pub struct Layer<'m> {
    pub op: Op,
    pub input: Shape,
    /// After any fused pooling.
    pub output: Shape,
    /// Kernel size for conv (1 for dense, 2 for pooling, 0 for flatten).
    pub kernel: usize,
    pub padding: Padding,
    pub relu: bool,
    /// A 2x2 max pool fused after the convolution.
    pub fused_pool: bool,
    pub input_quant: QuantParams,
    pub output_quant: QuantParams,
    /// OHWI for conv, `[out][in]` for dense; empty for pooling and flatten.
    pub weights: &'m [i8],
    channels: ChannelParams<'m>,
    weight_scales: &'m [u8],
}

impl<'m> Layer<'m> {
    /// The int32 bias of an output channel (scale `s_in * s_w[c]`, zero point 0).
    pub fn bias(&self, channel: usize) -> i32 {
        self.channels.bias(channel)
    }

    /// The precomputed requantization multiplier of an output channel.
    pub fn multiplier(&self, channel: usize) -> Multiplier {
        self.channels.multiplier(channel)
    }

    /// The f32 weight scale of an output channel (for inspection and export).
    pub fn weight_scale(&self, channel: usize) -> f32 {
        format::read_f32(self.weight_scales, channel * format::WEIGHT_SCALE_BYTES)
    }

    /// Whether the layer has weights.
    pub fn has_weights(&self) -> bool {
        matches!(self.op, Op::Conv2d | Op::Dense)
    }

    /// Trainable parameters: weights and biases.
    pub fn params(&self) -> usize {
        if self.has_weights() {
            self.weights.len() + self.output.c
        } else {
            0
        }
    }

    /// Multiply-accumulates of one inference.
    pub fn macs(&self) -> usize {
        match self.op {
            Op::Conv2d => self.conv_output().len() * self.kernel * self.kernel * self.input.c,
            Op::Dense => self.weights.len(),
            Op::MaxPool2d | Op::Flatten => 0,
        }
    }

    /// Bytes of weights, biases and per-channel parameters this layer keeps in the file.
    pub fn stored_bytes(&self) -> usize {
        if self.has_weights() {
            self.weights.len()
                + self.output.c
                    * (format::BIAS_BYTES + format::WEIGHT_SCALE_BYTES + format::MULTIPLIER_BYTES)
        } else {
            0
        }
    }

    /// The convolution's own output, before any fused pooling.
    pub fn conv_output(&self) -> Shape {
        if self.fused_pool {
            Shape::new(self.output.h * 2, self.output.w * 2, self.output.c)
        } else {
            self.output
        }
    }

    /// The kernel description of a conv or dense layer (dense is a 1x1 convolution over its
    /// flattened input).
    pub fn as_conv(&self) -> Option<Conv<'m>> {
        let input = match self.op {
            Op::Conv2d => self.input,
            Op::Dense => Shape::new(1, 1, self.input.len()),
            Op::MaxPool2d | Op::Flatten => return None,
        };
        Some(Conv {
            input,
            kernel: self.kernel,
            pad: self.padding.amount(self.kernel),
            out_channels: self.output.c,
            weights: self.weights,
            channels: self.channels,
            input_zero_point: self.input_quant.zero_point,
            output_zero_point: self.output_quant.zero_point,
            relu: self.relu,
            pool: self.fused_pool,
        })
    }
}

/// A parsed, validated model borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Model<'m> {
    bytes: &'m [u8],
    layer_count: usize,
    input: Shape,
    input_quant: QuantParams,
    pixel_scale: f32,
    pixel_multiplier: Multiplier,
    /// The int8 input code of every raw pixel value, made once at parse time
    /// ([`crate::quantize_pixels`]).
    pixel_codes: [i8; 256],
    output: Shape,
    output_quant: QuantParams,
    /// The arena plans: the smallest ([`Mode::Memory`]) and the fastest ([`Mode::Speed`]).
    memory_plan: Plan,
    speed_plan: Plan,
}

impl<'m> Model<'m> {
    /// Validates a model file. Never panics and never reads out of bounds, whatever the bytes.
    pub fn parse(bytes: &'m [u8]) -> Result<Self, Error> {
        let min = format::HEADER_LEN + format::CHECKSUM_LEN;
        if bytes.len() < min {
            // Name a wrong file before calling a short one truncated.
            if bytes.len() >= 4 && bytes[..4] != format::MAGIC {
                return Err(Error::BadMagic {
                    found: [bytes[0], bytes[1], bytes[2], bytes[3]],
                });
            }
            return Err(Error::Truncated {
                needed: min,
                actual: bytes.len(),
            });
        }
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != format::MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        let version = format::read_u16(bytes, header::VERSION);
        if version != format::VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: format::VERSION,
            });
        }
        let file_len = format::read_u32(bytes, header::FILE_LEN) as usize;
        if file_len > bytes.len() {
            return Err(Error::Truncated {
                needed: file_len,
                actual: bytes.len(),
            });
        }
        if file_len != bytes.len() {
            return Err(Error::LengthMismatch {
                header: file_len,
                actual: bytes.len(),
            });
        }
        let body = bytes.len() - format::CHECKSUM_LEN;
        let stored = format::read_u32(bytes, body);
        let computed = format::checksum(&bytes[..body]);
        if stored != computed {
            return Err(Error::ChecksumMismatch { stored, computed });
        }

        let layer_count = format::read_u16(bytes, header::LAYER_COUNT) as usize;
        if layer_count == 0 || layer_count > format::MAX_LAYERS {
            return Err(Error::LayerCount {
                count: layer_count,
                max: format::MAX_LAYERS,
            });
        }
        let table_end = format::HEADER_LEN + layer_count * format::LAYER_RECORD_LEN;
        if table_end > body {
            return Err(Error::Truncated {
                needed: table_end + format::CHECKSUM_LEN,
                actual: bytes.len(),
            });
        }
        for &(from, to) in &header::RESERVED {
            if bytes[from..to].iter().any(|&b| b != 0) {
                return Err(Error::InvalidField {
                    layer: None,
                    field: "reserved header bytes",
                });
            }
        }

        let input = Shape::new(
            format::read_u16(bytes, header::INPUT_H) as usize,
            format::read_u16(bytes, header::INPUT_W) as usize,
            format::read_u16(bytes, header::INPUT_C) as usize,
        );
        if input.is_empty() {
            return Err(Error::InvalidField {
                layer: None,
                field: "input shape (zero size)",
            });
        }
        let input_quant = read_quant(bytes, header::INPUT_SCALE, header::INPUT_ZERO_POINT).ok_or(
            Error::BadQuantization {
                layer: None,
                what: "input scale or zero point",
            },
        )?;
        let pixel_scale = format::read_f32(bytes, header::PIXEL_SCALE);
        let pixel_multiplier = Multiplier {
            mantissa: format::read_u32(bytes, header::PIXEL_MANTISSA),
            shift: format::read_i32(bytes, header::PIXEL_SHIFT),
        };
        let expected = Multiplier::from_scale(pixel_scale / input_quant.scale).ok_or(
            Error::BadQuantization {
                layer: None,
                what: "pixel scale / input scale",
            },
        )?;
        if pixel_multiplier != expected {
            return Err(Error::BadQuantization {
                layer: None,
                what: "pixel multiplier is not pixel scale / input scale",
            });
        }

        let mut shape = input;
        let mut quant = input_quant;
        let mut i = 0;
        while i < layer_count {
            let layer = decode_layer(bytes, table_end, i, shape, quant)?;
            validate_layer(&layer, i)?;
            shape = layer.output;
            quant = layer.output_quant;
            i += 1;
        }

        let mut pixel_codes = [0i8; 256];
        for (p, q) in pixel_codes.iter_mut().enumerate() {
            *q = requantize(
                p as i32,
                pixel_multiplier,
                input_quant.zero_point as i32,
                i8::MIN as i32,
                i8::MAX as i32,
            );
        }

        Ok(Model {
            bytes,
            layer_count,
            input,
            input_quant,
            pixel_scale,
            pixel_multiplier,
            pixel_codes,
            output: shape,
            output_quant: quant,
            memory_plan: plan::plan(bytes, Mode::Memory),
            speed_plan: plan::plan(bytes, Mode::Speed),
        })
    }

    pub fn layer_count(&self) -> usize {
        self.layer_count
    }

    /// Input shape (28x28x1 for MNIST): raw u8 pixels, row-major, channels last.
    pub fn input_shape(&self) -> Shape {
        self.input
    }

    /// Quantization of the int8 tensor the first layer reads.
    pub fn input_quant(&self) -> QuantParams {
        self.input_quant
    }

    /// Real value of one unit of a raw u8 pixel (1/255 when the float model saw pixels/255).
    pub fn pixel_scale(&self) -> f32 {
        self.pixel_scale
    }

    /// Multiplier that maps a raw pixel to the input's int8 code.
    pub fn pixel_multiplier(&self) -> Multiplier {
        self.pixel_multiplier
    }

    /// The int8 input code of raw pixel value `p`: `clamp(rne(p * pixel_scale / input_scale) +
    /// z_in)`.
    pub fn pixel_code(&self, p: u8) -> i8 {
        self.pixel_codes[p as usize]
    }

    /// Shape of the final output (1x1xclasses for a classifier).
    pub fn output_shape(&self) -> Shape {
        self.output
    }

    pub fn output_quant(&self) -> QuantParams {
        self.output_quant
    }

    /// Number of classes (values in the final output).
    pub fn classes(&self) -> usize {
        self.output.len()
    }

    /// Bytes of activation arena [`Model::infer`] needs: the smallest plan's
    /// ([`Mode::Memory`], equal to [`crate::required_arena_len`]).
    pub fn arena_len(&self) -> usize {
        self.memory_plan.len
    }

    /// Bytes of arena of the plan for `mode`; [`Model::infer`] runs the speed plan when it is
    /// given at least [`Mode::Speed`]'s bytes.
    pub fn arena_len_for(&self, mode: Mode) -> usize {
        self.plan(mode).len
    }

    /// The plan [`Model::infer`] runs in an arena of `len` bytes: the speed plan when it fits,
    /// else the smallest (which may not fit either: `infer` then reports `ArenaTooSmall`).
    pub fn plan_for_arena(&self, len: usize) -> Plan {
        if len >= self.speed_plan.len {
            self.speed_plan
        } else {
            self.memory_plan
        }
    }

    /// The arena plan for `mode` ([`crate::plan`]).
    pub fn plan(&self, mode: Mode) -> Plan {
        match mode {
            Mode::Memory => self.memory_plan,
            Mode::Speed => self.speed_plan,
        }
    }

    /// The model file's bytes.
    pub fn bytes(&self) -> &'m [u8] {
        self.bytes
    }

    /// The layers in order.
    pub fn layers(&self) -> Layers<'m> {
        Layers {
            model: *self,
            next: 0,
            shape: self.input,
            quant: self.input_quant,
        }
    }
}

/// Iterator over a validated model's layers.
#[derive(Clone, Debug)]
pub struct Layers<'m> {
    model: Model<'m>,
    next: usize,
    shape: Shape,
    quant: QuantParams,
}

impl<'m> Iterator for Layers<'m> {
    type Item = Layer<'m>;

    fn next(&mut self) -> Option<Layer<'m>> {
        if self.next >= self.model.layer_count {
            return None;
        }
        let table_end = format::HEADER_LEN + self.model.layer_count * format::LAYER_RECORD_LEN;
        // The model was validated at parse time, so decoding cannot fail here.
        let layer = decode_layer(
            self.model.bytes,
            table_end,
            self.next,
            self.shape,
            self.quant,
        )
        .ok()?;
        self.next += 1;
        self.shape = layer.output;
        self.quant = layer.output_quant;
        Some(layer)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.model.layer_count - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Layers<'_> {}

fn read_quant(bytes: &[u8], scale_at: usize, zero_point_at: usize) -> Option<QuantParams> {
    let scale = format::read_f32(bytes, scale_at);
    let zero_point = format::read_i32(bytes, zero_point_at);
    let scale_ok = scale.is_finite() && scale > 0.0 && scale.is_normal();
    if !scale_ok || !(-128..=127).contains(&zero_point) {
        return None;
    }
    Some(QuantParams {
        scale,
        zero_point: zero_point as i8,
    })
}

/// A blob of `len` bytes at `offset`, which must lie in the data area and be aligned.
fn blob(
    bytes: &[u8],
    table_end: usize,
    offset: u32,
    len: usize,
    layer: usize,
    what: What,
) -> Result<&[u8], Error> {
    let bad = Error::BadBlob { layer, what };
    let offset = offset as usize;
    let end = offset.checked_add(len).ok_or(bad)?;
    if offset < table_end
        || !offset.is_multiple_of(format::DATA_ALIGN)
        || end > bytes.len() - format::CHECKSUM_LEN
    {
        return Err(bad);
    }
    Ok(&bytes[offset..end])
}

/// Decodes record `index` given the shape and quantization that flow into it, checking
/// everything needed to index safely: op, fields, shape chaining, blob bounds.
fn decode_layer<'m>(
    bytes: &'m [u8],
    table_end: usize,
    index: usize,
    input: Shape,
    input_quant: QuantParams,
) -> Result<Layer<'m>, Error> {
    let r = format::HEADER_LEN + index * format::LAYER_RECORD_LEN;
    let rec = &bytes[r..r + format::LAYER_RECORD_LEN];
    let invalid = |field| Error::InvalidField {
        layer: Some(index),
        field,
    };
    let code = rec[record::OP];
    let op = Op::from_code(code).ok_or(Error::UnsupportedOp {
        layer: index,
        op: code,
    })?;
    let flags = rec[record::FLAGS];
    if flags & !format::flags::ALL != 0 {
        return Err(invalid("flags (unknown bits set)"));
    }
    if rec[record::RESERVED.0..record::RESERVED.1]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(invalid("reserved bytes (must be zero)"));
    }
    let relu = flags & format::flags::RELU != 0;
    let fused_pool = flags & format::flags::POOL != 0;
    let kernel = rec[record::KERNEL] as usize;
    let padding = match rec[record::PADDING] {
        format::padding::VALID => Padding::Valid,
        format::padding::SAME => Padding::Same,
        _ => return Err(invalid("padding code")),
    };
    let shape_at = |h, w, c| {
        Shape::new(
            format::read_u16(rec, h) as usize,
            format::read_u16(rec, w) as usize,
            format::read_u16(rec, c) as usize,
        )
    };
    let stored_input = shape_at(record::IN_H, record::IN_W, record::IN_C);
    let output = shape_at(record::OUT_H, record::OUT_W, record::OUT_C);
    if stored_input != input {
        return Err(Error::ShapeMismatch {
            layer: index,
            what: "input shape",
            expected: input,
            found: stored_input,
        });
    }
    let output_quant = read_quant(rec, record::OUTPUT_SCALE, record::OUTPUT_ZERO_POINT).ok_or(
        Error::BadQuantization {
            layer: Some(index),
            what: "output scale or zero point",
        },
    )?;

    // What the op computes from its input; the record must say the same.
    let expected = match op {
        Op::Conv2d => {
            if kernel == 0 || (padding == Padding::Same && kernel.is_multiple_of(2)) {
                return Err(invalid("kernel size (zero, or even with same padding)"));
            }
            let pad = padding.amount(kernel);
            if input.h + 2 * pad < kernel || input.w + 2 * pad < kernel {
                return Err(invalid("kernel size (larger than the input)"));
            }
            let conv = Shape::new(
                input.h + 2 * pad - kernel + 1,
                input.w + 2 * pad - kernel + 1,
                output.c,
            );
            if fused_pool {
                Shape::new(conv.h / 2, conv.w / 2, conv.c)
            } else {
                conv
            }
        }
        Op::Dense => {
            if kernel != 1 || padding != Padding::Valid || fused_pool {
                return Err(invalid("dense kernel/padding/pool fields"));
            }
            if input.h != 1 || input.w != 1 {
                return Err(Error::ShapeMismatch {
                    layer: index,
                    what: "dense input (flatten first)",
                    expected: Shape::new(1, 1, input.len()),
                    found: input,
                });
            }
            Shape::new(1, 1, output.c)
        }
        Op::MaxPool2d => {
            if kernel != 2 || padding != Padding::Valid || flags != 0 {
                return Err(invalid("maxpool fields (2x2, valid, no flags)"));
            }
            Shape::new(input.h / 2, input.w / 2, input.c)
        }
        Op::Flatten => {
            if kernel != 0 || padding != Padding::Valid || flags != 0 {
                return Err(invalid("flatten fields (must be zero)"));
            }
            Shape::new(1, 1, input.len())
        }
    };
    if output != expected || output.is_empty() {
        return Err(Error::ShapeMismatch {
            layer: index,
            what: "output shape",
            expected,
            found: output,
        });
    }

    let offset = |at| format::read_u32(rec, at);
    let weights_len = offset(record::WEIGHTS_LEN) as usize;
    let (weights, channels, weight_scales) = match op {
        Op::Conv2d | Op::Dense => {
            let per_filter = kernel * kernel * input.c;
            if Some(weights_len) != per_filter.checked_mul(output.c) {
                return Err(Error::BadBlob {
                    layer: index,
                    what: "weights (length)",
                });
            }
            let oc = output.c;
            let weights = blob(
                bytes,
                table_end,
                offset(record::WEIGHTS_OFFSET),
                weights_len,
                index,
                "weights",
            )?;
            let bias = blob(
                bytes,
                table_end,
                offset(record::BIAS_OFFSET),
                oc * format::BIAS_BYTES,
                index,
                "bias",
            )?;
            let scales = blob(
                bytes,
                table_end,
                offset(record::WEIGHT_SCALES_OFFSET),
                oc * format::WEIGHT_SCALE_BYTES,
                index,
                "weight scales",
            )?;
            let multipliers = blob(
                bytes,
                table_end,
                offset(record::MULTIPLIERS_OFFSET),
                oc * format::MULTIPLIER_BYTES,
                index,
                "multipliers",
            )?;
            (
                bytemuck::cast_slice::<u8, i8>(weights),
                ChannelParams::new(bias, multipliers),
                scales,
            )
        }
        Op::MaxPool2d | Op::Flatten => {
            let all_zero = [
                record::WEIGHTS_OFFSET,
                record::WEIGHTS_LEN,
                record::BIAS_OFFSET,
                record::WEIGHT_SCALES_OFFSET,
                record::MULTIPLIERS_OFFSET,
            ]
            .iter()
            .all(|&at| offset(at) == 0);
            if !all_zero {
                return Err(Error::BadBlob {
                    layer: index,
                    what: "blob fields of a weightless layer",
                });
            }
            if output_quant != input_quant {
                return Err(Error::BadQuantization {
                    layer: Some(index),
                    what: "pooling and flatten must keep their input's scale and zero point",
                });
            }
            (&[][..], ChannelParams::new(&[], &[]), &[][..])
        }
    };

    Ok(Layer {
        op,
        input,
        output,
        kernel,
        padding,
        relu,
        fused_pool,
        input_quant,
        output_quant,
        weights,
        channels,
        weight_scales,
    })
}

/// The checks that only parsing needs: blob placement, weight range, multipliers, and the
/// accumulator bound that makes inference overflow-free.
fn validate_layer(layer: &Layer<'_>, index: usize) -> Result<(), Error> {
    let Some(conv) = layer.as_conv() else {
        return Ok(());
    };
    let per_filter = layer.weights.len() / layer.output.c;
    for c in 0..layer.output.c {
        let weight_scale = layer.weight_scale(c);
        if !(weight_scale.is_normal() && weight_scale > 0.0) {
            return Err(Error::BadQuantization {
                layer: Some(index),
                what: "weight scale",
            });
        }
        let scale = combined_scale(
            layer.input_quant.scale,
            weight_scale,
            layer.output_quant.scale,
        );
        let expected = Multiplier::from_scale(scale).ok_or(Error::BadQuantization {
            layer: Some(index),
            what: "combined scale s_in*s_w/s_out out of range",
        })?;
        if layer.multiplier(c) != expected {
            return Err(Error::BadQuantization {
                layer: Some(index),
                what: "stored multiplier differs from s_in*s_w/s_out",
            });
        }
        let filter = &layer.weights[c * per_filter..(c + 1) * per_filter];
        let mut abs_sum: u64 = 0;
        for (k, &w) in filter.iter().enumerate() {
            if w == i8::MIN {
                return Err(Error::WeightOutOfRange {
                    layer: index,
                    index: c * per_filter + k,
                });
            }
            abs_sum += w.unsigned_abs() as u64;
        }
        // |x - z_in| <= 255 for every tap, so this bounds |acc| for any input.
        let worst = abs_sum * 255 + conv.channels.bias(c).unsigned_abs() as u64;
        if worst > i32::MAX as u64 {
            return Err(Error::AccumulatorOverflow {
                layer: index,
                channel: c,
            });
        }
    }
    Ok(())
}
