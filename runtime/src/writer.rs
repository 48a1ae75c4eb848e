//! Writes `.tcm` model files (std only). The writer derives everything derivable — shapes,
//! multipliers, offsets, checksum — and parses its own output before returning it, so it can
//! never emit a file the runtime rejects.

use std::vec::Vec;

use crate::error::{Error, Shape};
use crate::format::{self, header, op, record};
use crate::model::{Model, Padding};
use crate::quant::{Multiplier, QuantParams, combined_scale};

/// The trained parameters of a conv or dense layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    /// OHWI for conv; `[out][in]` for dense, `in` in NHWC-flatten order.
    pub weights: Vec<i8>,
    /// int32, scale `s_in * s_w[c]`, zero point 0.
    pub bias: Vec<i32>,
    /// Symmetric per-output-channel weight scales.
    pub weight_scales: Vec<f32>,
    /// The layer's output quantization.
    pub output: QuantParams,
}

/// One layer as the trainer describes it.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerSpec {
    Conv2d {
        kernel: usize,
        padding: Padding,
        relu: bool,
        pool: bool,
        params: Weights,
    },
    MaxPool2d,
    Flatten,
    Dense {
        relu: bool,
        params: Weights,
    },
}

/// A whole model: the input and its layers.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub input: Shape,
    pub input_quant: QuantParams,
    /// Real value of one unit of a raw u8 pixel (1/255 for pixels scaled to [0, 1]).
    pub pixel_scale: f32,
    pub layers: Vec<LayerSpec>,
}

fn put_u16(out: &mut [u8], at: usize, v: usize) -> Result<(), Error> {
    let v = u16::try_from(v).map_err(|_| Error::InvalidField {
        layer: None,
        field: "dimension above 65535",
    })?;
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_shape(out: &mut [u8], at: [usize; 3], s: Shape) -> Result<(), Error> {
    put_u16(out, at[0], s.h)?;
    put_u16(out, at[1], s.w)?;
    put_u16(out, at[2], s.c)
}

impl ModelSpec {
    /// Serializes the model, then validates the bytes with [`Model::parse`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let count = self.layers.len();
        if count == 0 || count > format::MAX_LAYERS {
            return Err(Error::LayerCount {
                count,
                max: format::MAX_LAYERS,
            });
        }
        let table_end = format::HEADER_LEN + count * format::LAYER_RECORD_LEN;
        let mut out = std::vec![0u8; table_end];
        out[header::MAGIC..header::MAGIC + 4].copy_from_slice(&format::MAGIC);
        out[header::VERSION..header::VERSION + 2].copy_from_slice(&format::VERSION.to_le_bytes());
        put_u16(&mut out, header::LAYER_COUNT, count)?;
        put_shape(
            &mut out,
            [header::INPUT_H, header::INPUT_W, header::INPUT_C],
            self.input,
        )?;
        put_u32(
            &mut out,
            header::INPUT_SCALE,
            self.input_quant.scale.to_bits(),
        );
        put_u32(
            &mut out,
            header::INPUT_ZERO_POINT,
            self.input_quant.zero_point as i32 as u32,
        );
        put_u32(&mut out, header::PIXEL_SCALE, self.pixel_scale.to_bits());
        let pixel = Multiplier::from_scale(self.pixel_scale / self.input_quant.scale).ok_or(
            Error::BadQuantization {
                layer: None,
                what: "pixel scale / input scale",
            },
        )?;
        put_u32(&mut out, header::PIXEL_MANTISSA, pixel.mantissa);
        put_u32(&mut out, header::PIXEL_SHIFT, pixel.shift as u32);

        let mut shape = self.input;
        let mut quant = self.input_quant;
        for (i, layer) in self.layers.iter().enumerate() {
            let r = format::HEADER_LEN + i * format::LAYER_RECORD_LEN;
            let (code, flags, kernel, padding, output, params) = match layer {
                LayerSpec::Conv2d {
                    kernel,
                    padding,
                    relu,
                    pool,
                    params,
                } => {
                    let pad = padding.amount(*kernel);
                    let conv = Shape::new(
                        (shape.h + 2 * pad + 1).saturating_sub(*kernel),
                        (shape.w + 2 * pad + 1).saturating_sub(*kernel),
                        params.bias.len(),
                    );
                    let output = if *pool {
                        Shape::new(conv.h / 2, conv.w / 2, conv.c)
                    } else {
                        conv
                    };
                    let flags = ((*relu as u8) * format::flags::RELU)
                        | ((*pool as u8) * format::flags::POOL);
                    let pad_code = match padding {
                        Padding::Valid => format::padding::VALID,
                        Padding::Same => format::padding::SAME,
                    };
                    (op::CONV2D, flags, *kernel, pad_code, output, Some(params))
                }
                LayerSpec::Dense { relu, params } => {
                    let flags = (*relu as u8) * format::flags::RELU;
                    (
                        op::DENSE,
                        flags,
                        1,
                        format::padding::VALID,
                        Shape::new(1, 1, params.bias.len()),
                        Some(params),
                    )
                }
                LayerSpec::MaxPool2d => (
                    op::MAXPOOL2D,
                    0,
                    2,
                    format::padding::VALID,
                    Shape::new(shape.h / 2, shape.w / 2, shape.c),
                    None,
                ),
                LayerSpec::Flatten => (
                    op::FLATTEN,
                    0,
                    0,
                    format::padding::VALID,
                    Shape::new(1, 1, shape.len()),
                    None,
                ),
            };
            out[r + record::OP] = code;
            out[r + record::FLAGS] = flags;
            out[r + record::KERNEL] = u8::try_from(kernel).map_err(|_| Error::InvalidField {
                layer: Some(i),
                field: "kernel size above 255",
            })?;
            out[r + record::PADDING] = padding;
            put_shape(
                &mut out,
                [r + record::IN_H, r + record::IN_W, r + record::IN_C],
                shape,
            )?;
            put_shape(
                &mut out,
                [r + record::OUT_H, r + record::OUT_W, r + record::OUT_C],
                output,
            )?;
            let out_quant = params.map_or(quant, |p| p.output);
            put_u32(
                &mut out,
                r + record::OUTPUT_SCALE,
                out_quant.scale.to_bits(),
            );
            put_u32(
                &mut out,
                r + record::OUTPUT_ZERO_POINT,
                out_quant.zero_point as i32 as u32,
            );
            if let Some(p) = params {
                let oc = p.bias.len();
                if p.weight_scales.len() != oc {
                    return Err(Error::BadBlob {
                        layer: i,
                        what: "weight scales (one a channel)",
                    });
                }
                let blob = |at_offset: usize, bytes: &[u8], out: &mut Vec<u8>| {
                    let offset = format::align_data(out.len());
                    out.resize(offset, 0);
                    out.extend_from_slice(bytes);
                    put_u32(out, r + at_offset, offset as u32);
                };
                let weights: Vec<u8> = p.weights.iter().map(|&w| w as u8).collect();
                blob(record::WEIGHTS_OFFSET, &weights, &mut out);
                put_u32(&mut out, r + record::WEIGHTS_LEN, weights.len() as u32);
                let bias: Vec<u8> = p.bias.iter().flat_map(|b| b.to_le_bytes()).collect();
                blob(record::BIAS_OFFSET, &bias, &mut out);
                let scales: Vec<u8> = p
                    .weight_scales
                    .iter()
                    .flat_map(|s| s.to_bits().to_le_bytes())
                    .collect();
                blob(record::WEIGHT_SCALES_OFFSET, &scales, &mut out);
                let mut multipliers = Vec::with_capacity(oc * format::MULTIPLIER_BYTES);
                for &s in &p.weight_scales {
                    let m = Multiplier::from_scale(combined_scale(quant.scale, s, p.output.scale))
                        .ok_or(Error::BadQuantization {
                            layer: Some(i),
                            what: "combined scale s_in*s_w/s_out out of range",
                        })?;
                    multipliers.extend_from_slice(&m.mantissa.to_le_bytes());
                    multipliers.extend_from_slice(&m.shift.to_le_bytes());
                }
                blob(record::MULTIPLIERS_OFFSET, &multipliers, &mut out);
            }
            shape = output;
            quant = out_quant;
        }
        let file_len = out.len() + format::CHECKSUM_LEN;
        put_u32(&mut out, header::FILE_LEN, file_len as u32);
        let crc = format::checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Model::parse(&out)?;
        Ok(out)
    }
}
