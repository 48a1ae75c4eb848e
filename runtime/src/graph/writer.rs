//! Writes v2 model files (std only). Like the v1 writer it derives everything derivable —
//! multipliers under the rule, add (tflite rule) and softmax parameters, offsets, checksum —
//! and parses its own output before returning it, so it never emits a file the runtime
//! rejects.

use std::vec;
use std::vec::Vec;

use super::format::{self, NO_TENSOR, Rule, flags, header, op, record, tensor};
use super::ops::{self, expected_words};
use super::spec::{GraphSpec, OpSpec, TensorSpec, WeightsSpec, Window};
use super::{Clamp, Graph};
use crate::error::Error;
use crate::quant::Multiplier;
use crate::tflite_rule;

fn put_u16(
    out: &mut [u8],
    at: usize,
    v: usize,
    field: &'static str,
    op: Option<usize>,
) -> Result<(), Error> {
    let v = u16::try_from(v).map_err(|_| Error::InvalidField { layer: op, field })?;
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put_u8(
    out: &mut [u8],
    at: usize,
    v: usize,
    field: &'static str,
    op: usize,
) -> Result<(), Error> {
    out[at] = u8::try_from(v).map_err(|_| Error::InvalidField {
        layer: Some(op),
        field,
    })?;
    Ok(())
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Appends a blob at the next aligned offset and returns that offset.
fn append(out: &mut Vec<u8>, bytes: &[u8]) -> u32 {
    let offset = crate::format::align_data(out.len());
    out.resize(offset, 0);
    out.extend_from_slice(bytes);
    offset as u32
}

struct Io<'a> {
    code: u8,
    inputs: [usize; 2],
    output: usize,
    window: Option<&'a Window>,
    clamp: Clamp,
    weights: Option<(&'a WeightsSpec, bool)>,
    params: [i32; record::PARAMS_WORDS],
}

/// Choices of [`GraphSpec::to_bytes_with`] that change the bytes, not the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Dense layers whose rows are a multiple of 8 and inputs of 4 store their weights in the wide
    /// layout (`format::op_flags::WIDE`): int16, twice the flash, no widened input in the
    /// arena and fewer instructions on the Cortex-M4 (docs/model-format.md).
    pub wide_dense: bool,
}

impl GraphSpec {
    /// Serializes the graph, then validates the bytes with [`Graph::parse`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        self.to_bytes_with(WriteOptions::default())
    }

    /// [`GraphSpec::to_bytes`] with `options`.
    pub fn to_bytes_with(&self, options: WriteOptions) -> Result<Vec<u8>, Error> {
        let (tc, oc) = (self.tensors.len(), self.ops.len());
        if tc == 0 || tc > format::MAX_TENSORS {
            return Err(Error::GraphSize {
                what: "tensors",
                count: tc,
                max: format::MAX_TENSORS,
            });
        }
        if oc == 0 || oc > format::MAX_OPS {
            return Err(Error::GraphSize {
                what: "ops",
                count: oc,
                max: format::MAX_OPS,
            });
        }
        let tensor = |op: Option<usize>, t: usize| -> Result<&TensorSpec, Error> {
            self.tensors.get(t).ok_or(Error::GraphOrder {
                op,
                what: "does not exist",
                tensor: t,
            })
        };
        let table_end = format::op_at(tc, oc);
        let mut out = std::vec![0u8; table_end];
        out[header::MAGIC..header::MAGIC + 4].copy_from_slice(&crate::format::MAGIC);
        out[header::VERSION..header::VERSION + 2].copy_from_slice(&format::VERSION.to_le_bytes());
        out[header::RULE] = self.rule.code();
        put_u16(&mut out, header::TENSOR_COUNT, tc, "tensor count", None)?;
        put_u16(&mut out, header::OP_COUNT, oc, "op count", None)?;
        put_u16(&mut out, header::INPUT, self.input, "input tensor", None)?;
        put_u16(&mut out, header::OUTPUT, self.output, "output tensor", None)?;
        let input_scale = tensor(None, self.input)?.quant.scale;
        if let Some(pixel_scale) = self.pixel_scale {
            out[header::FLAGS] = flags::PIXELS;
            let m = Multiplier::from_scale(pixel_scale / input_scale).ok_or(
                Error::BadQuantization {
                    layer: None,
                    what: "pixel scale / input scale",
                },
            )?;
            put_u32(&mut out, header::PIXEL_SCALE, pixel_scale.to_bits());
            put_u32(&mut out, header::PIXEL_MANTISSA, m.mantissa);
            put_u32(&mut out, header::PIXEL_SHIFT, m.shift as u32);
        }
        for (t, spec) in self.tensors.iter().enumerate() {
            let at = format::tensor_at(t);
            let dim = "tensor dimension above 65535";
            put_u16(&mut out, at + tensor::H, spec.shape.h, dim, None)?;
            put_u16(&mut out, at + tensor::W, spec.shape.w, dim, None)?;
            put_u16(&mut out, at + tensor::C, spec.shape.c, dim, None)?;
            out[at + tensor::ZERO_POINT] = spec.quant.zero_point as u8;
            put_u32(&mut out, at + tensor::SCALE, spec.quant.scale.to_bits());
        }

        for (i, spec) in self.ops.iter().enumerate() {
            let one = |input: usize| [input, usize::MAX];
            let io = match spec {
                OpSpec::Conv2d {
                    input,
                    output,
                    window,
                    depthwise,
                    clamp,
                    params,
                } => Io {
                    code: if *depthwise {
                        op::DEPTHWISE_CONV2D
                    } else {
                        op::CONV2D
                    },
                    inputs: one(*input),
                    output: *output,
                    window: Some(window),
                    clamp: *clamp,
                    weights: Some((params, false)),
                    params: [0; 6],
                },
                OpSpec::Dense {
                    input,
                    output,
                    clamp,
                    params,
                } => Io {
                    code: op::DENSE,
                    inputs: one(*input),
                    output: *output,
                    window: None,
                    clamp: *clamp,
                    weights: Some((params, true)),
                    params: [0; 6],
                },
                OpSpec::MaxPool {
                    input,
                    output,
                    window,
                    clamp,
                }
                | OpSpec::AvgPool {
                    input,
                    output,
                    window,
                    clamp,
                } => Io {
                    code: if matches!(spec, OpSpec::MaxPool { .. }) {
                        op::MAX_POOL
                    } else {
                        op::AVG_POOL
                    },
                    inputs: one(*input),
                    output: *output,
                    window: Some(window),
                    clamp: *clamp,
                    weights: None,
                    params: [0; 6],
                },
                OpSpec::Add {
                    inputs,
                    output,
                    clamp,
                } => {
                    // The tflite rule stores TFLite's multipliers; the onnx rule's f32
                    // constants are derived from the tensor scales at run time (none stored).
                    let params = match self.rule {
                        Rule::Onnx => [0; 6],
                        Rule::Tflite => {
                            let s = |t| tensor(Some(i), t).map(|t| t.quant.scale);
                            let p =
                                tflite_rule::add_params(s(inputs[0])?, s(inputs[1])?, s(*output)?)
                                    .ok_or(Error::BadQuantization {
                                        layer: Some(i),
                                        what: "add scales out of range",
                                    })?;
                            ops::add::params_words(&p)
                        }
                    };
                    Io {
                        code: op::ADD,
                        inputs: *inputs,
                        output: *output,
                        window: None,
                        clamp: *clamp,
                        weights: None,
                        params,
                    }
                }
                OpSpec::Softmax {
                    input,
                    output,
                    beta,
                } => {
                    let s = tensor(Some(i), *input)?.quant.scale;
                    let p =
                        tflite_rule::softmax_params(*beta, s).ok_or(Error::BadQuantization {
                            layer: Some(i),
                            what: "softmax beta * input scale out of range",
                        })?;
                    Io {
                        code: op::SOFTMAX,
                        inputs: one(*input),
                        output: *output,
                        window: None,
                        clamp: Clamp::NONE,
                        weights: None,
                        params: ops::softmax::params_words(&p, *beta),
                    }
                }
                OpSpec::Reshape { input, output } => Io {
                    code: op::RESHAPE,
                    inputs: one(*input),
                    output: *output,
                    window: None,
                    clamp: Clamp::NONE,
                    weights: None,
                    params: [0; 6],
                },
            };
            self.write_op(&mut out, tc, i, &io, options)?;
        }
        let file_len = out.len() + crate::format::CHECKSUM_LEN;
        put_u32(&mut out, header::FILE_LEN, file_len as u32);
        let crc = crate::format::checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Graph::parse(&out)?;
        Ok(out)
    }

    fn write_op(
        &self,
        out: &mut Vec<u8>,
        tc: usize,
        i: usize,
        io: &Io<'_>,
        options: WriteOptions,
    ) -> Result<(), Error> {
        let r = format::op_at(tc, i);
        out[r + record::OP] = io.code;
        out[r + record::CLAMP_MIN] = io.clamp.min as u8;
        out[r + record::CLAMP_MAX] = io.clamp.max as u8;
        let index = "tensor index above 65534";
        put_u16(out, r + record::INPUT0, io.inputs[0], index, Some(i))?;
        let second = if io.inputs[1] == usize::MAX {
            NO_TENSOR as usize
        } else {
            io.inputs[1]
        };
        put_u16(out, r + record::INPUT1, second, index, Some(i))?;
        put_u16(out, r + record::OUTPUT, io.output, index, Some(i))?;
        if let Some(w) = io.window {
            let big = "window field above 255";
            put_u8(out, r + record::KERNEL_H, w.kernel_h, big, i)?;
            put_u8(out, r + record::KERNEL_W, w.kernel_w, big, i)?;
            put_u8(out, r + record::STRIDE_H, w.stride_h, big, i)?;
            put_u8(out, r + record::STRIDE_W, w.stride_w, big, i)?;
            put_u8(out, r + record::PAD_TOP, w.pads.top, big, i)?;
            put_u8(out, r + record::PAD_LEFT, w.pads.left, big, i)?;
            put_u8(out, r + record::PAD_BOTTOM, w.pads.bottom, big, i)?;
            put_u8(out, r + record::PAD_RIGHT, w.pads.right, big, i)?;
        }
        for (k, p) in io.params.iter().enumerate() {
            put_u32(out, r + record::PARAMS + 4 * k, *p as u32);
        }
        let Some((p, dense)) = io.weights else {
            return Ok(());
        };
        let bad = |what| Error::BadBlob { layer: i, what };
        let channels = p.bias.len();
        if p.weight_scales.len() != channels {
            return Err(bad("weight scales (one a channel)"));
        }
        let missing = Error::GraphOrder {
            op: Some(i),
            what: "does not exist",
            tensor: io.inputs[0].max(io.output),
        };
        let s_in = self.tensors.get(io.inputs[0]).ok_or(missing)?.quant.scale;
        let s_out = self.tensors.get(io.output).ok_or(missing)?.quant.scale;
        let rows = channels;
        let len = p.weights.len().checked_div(rows).unwrap_or(0);
        let wide = options.wide_dense
            && io.code == op::DENSE
            && rows.is_multiple_of(ops::dense::WIDE_ROWS)
            && len.is_multiple_of(4)
            && len > 0
            && p.weights.len() == rows * len;
        let weights: Vec<u8> = if wide {
            out[r + record::FLAGS] = format::op_flags::WIDE;
            let mut v = vec![0i16; rows * len];
            for (row, ws) in p.weights.chunks_exact(len).enumerate() {
                for (k, &w) in ws.iter().enumerate() {
                    v[ops::dense::wide_index(row, k, len)] = w as i16;
                }
            }
            v.iter().flat_map(|w| w.to_le_bytes()).collect()
        } else {
            p.weights.iter().map(|&w| w as u8).collect()
        };
        let at = append(out, &weights);
        put_u32(out, r + record::WEIGHTS_OFFSET, at);
        put_u32(out, r + record::WEIGHTS_LEN, weights.len() as u32);
        let bias: Vec<u8> = p.bias.iter().flat_map(|b| b.to_le_bytes()).collect();
        let at = append(out, &bias);
        put_u32(out, r + record::BIAS_OFFSET, at);
        let scales: Vec<u8> = p
            .weight_scales
            .iter()
            .flat_map(|s| s.to_bits().to_le_bytes())
            .collect();
        let at = append(out, &scales);
        put_u32(out, r + record::WEIGHT_SCALES_OFFSET, at);
        let mut words = Vec::with_capacity(channels * format::MULTIPLIER_BYTES);
        for &s_w in &p.weight_scales {
            let (a, b) = expected_words(self.rule, dense, s_in, s_w, s_out).ok_or(
                Error::BadQuantization {
                    layer: Some(i),
                    what: "combined scale s_in*s_w/s_out out of range",
                },
            )?;
            words.extend_from_slice(&a.to_le_bytes());
            words.extend_from_slice(&b.to_le_bytes());
        }
        let at = append(out, &words);
        put_u32(out, r + record::MULTIPLIERS_OFFSET, at);
        Ok(())
    }
}
