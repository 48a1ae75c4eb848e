//! From flatbuffer tables to [`Model`]. The field ids are those of TensorFlow Lite's
//! `schema.fbs` (a union field takes two ids: its type tag, then its value).

use crate::Error;
use crate::flatbuffer::Table;
use crate::model::*;

/// `Model`: version 0, operator_codes 1, subgraphs 2, description 3, buffers 4.
mod model_field {
    pub const VERSION: usize = 0;
    pub const OPERATOR_CODES: usize = 1;
    pub const SUBGRAPHS: usize = 2;
    pub const DESCRIPTION: usize = 3;
    pub const BUFFERS: usize = 4;
}

/// `builtin_options` union tags of the option tables read here.
mod options_tag {
    pub const NONE: u8 = 0;
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const FULLY_CONNECTED: u8 = 8;
    pub const SOFTMAX: u8 = 9;
    pub const ADD: u8 = 11;
    pub const RESHAPE: u8 = 17;
}

/// The builtin code below which `OperatorCode.deprecated_builtin_code` (a byte) is used.
const PLACEHOLDER_FOR_GREATER_OP_CODES: i32 = 127;

impl Model {
    /// Reads a `.tflite` file.
    pub fn parse(bytes: &[u8]) -> Result<Model, Error> {
        let id: [u8; 4] =
            bytes
                .get(4..8)
                .and_then(|b| b.try_into().ok())
                .ok_or(Error::OutOfBounds {
                    what: "file identifier",
                    at: 4,
                    len: bytes.len(),
                })?;
        if &id != b"TFL3" {
            return Err(Error::NotTflite { found: id });
        }
        let root = Table::root(bytes, "model")?;
        let version = root.u32(model_field::VERSION, 0)?;
        if version != 3 {
            return Err(Error::Version(version));
        }
        let codes = root
            .tables(model_field::OPERATOR_CODES, "operator code")?
            .iter()
            .map(operator_code)
            .collect::<Result<Vec<_>, _>>()?;
        let buffers = root
            .tables(model_field::BUFFERS, "buffer")?
            .iter()
            .map(|b| buffer(bytes, b))
            .collect::<Result<Vec<_>, _>>()?;
        let subgraphs = root.tables(model_field::SUBGRAPHS, "subgraph")?;
        let [graph] = subgraphs.as_slice() else {
            return Err(Error::Subgraphs(subgraphs.len()));
        };
        Ok(Model {
            version,
            description: root.string(model_field::DESCRIPTION, "description")?,
            graph: subgraph(graph, &codes, &buffers)?,
        })
    }
}

/// `OperatorCode`: deprecated_builtin_code 0 (byte), custom_code 1, version 2 (default 1),
/// builtin_code 3. TensorFlow Lite takes the larger of the two codes.
fn operator_code(t: &Table<'_>) -> Result<(BuiltinOp, i32, String), Error> {
    let deprecated = t.i8(0, 0)? as i32;
    let extended = t.i32(3, 0)?;
    let code = if deprecated < PLACEHOLDER_FOR_GREATER_OP_CODES {
        deprecated.max(extended)
    } else {
        extended
    };
    Ok((
        BuiltinOp::from_schema(code),
        t.i32(2, 1)?,
        t.string(1, "custom code")?,
    ))
}

/// `Buffer`: data 0, offset 1 (u64), size 2 (u64): data stored inline, or for models over
/// 2 GB at `offset` from the file's start when `offset > 1`.
fn buffer<'a>(file: &'a [u8], t: &Table<'a>) -> Result<&'a [u8], Error> {
    let inline = t.bytes(0, "buffer data")?;
    if !inline.is_empty() {
        return Ok(inline);
    }
    let (offset, size) = (t.u64(1)?, t.u64(2)?);
    if offset <= 1 {
        return Ok(&[]);
    }
    usize::try_from(offset)
        .ok()
        .zip(usize::try_from(size).ok())
        .and_then(|(o, s)| file.get(o..o.checked_add(s)?))
        .ok_or(Error::OutOfBounds {
            what: "external buffer",
            at: offset as usize,
            len: file.len(),
        })
}

fn index(
    value: i64,
    count: usize,
    what: &'static str,
    at: usize,
    target: &'static str,
) -> Result<usize, Error> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v < count)
        .ok_or(Error::BadIndex {
            what,
            index: at,
            target,
            value,
            count,
        })
}

/// `SubGraph`: tensors 0, inputs 1, outputs 2, operators 3.
fn subgraph(
    t: &Table<'_>,
    codes: &[(BuiltinOp, i32, String)],
    buffers: &[&[u8]],
) -> Result<Graph, Error> {
    let tensors = t
        .tables(0, "tensor")?
        .iter()
        .enumerate()
        .map(|(i, t)| tensor(i, t, buffers))
        .collect::<Result<Vec<_>, _>>()?;
    let n = tensors.len();
    let indices = |id, what| -> Result<Vec<usize>, Error> {
        t.i32s(id, what)?
            .iter()
            .enumerate()
            .map(|(i, &v)| index(v as i64, n, what, i, "tensor"))
            .collect()
    };
    let inputs = indices(1, "graph input")?;
    let outputs = indices(2, "graph output")?;
    let operators = t
        .tables(3, "operator")?
        .iter()
        .enumerate()
        .map(|(i, op)| operator(i, op, codes, n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Graph {
        tensors,
        inputs,
        outputs,
        operators,
    })
}

/// `Tensor`: shape 0, type 1, buffer 2, name 3, quantization 4, sparsity 6.
/// `QuantizationParameters`: scale 2, zero_point 3, details_type 4, quantized_dimension 6.
fn tensor(i: usize, t: &Table<'_>, buffers: &[&[u8]]) -> Result<Tensor, Error> {
    let name = t.string(3, "tensor name")?;
    let bad = |problem: String| Error::BadTensor {
        index: i,
        name: name.clone(),
        problem,
    };
    let shape = t.i32s(0, "tensor shape")?;
    let dtype = TensorType::from_schema(t.i8(1, 0)?);
    if t.table(6, "sparsity")?.is_some() {
        return Err(bad("sparse tensors are not supported".into()));
    }
    let buffer = t.u32(2, 0)? as usize;
    let data = match buffers.get(buffer) {
        Some(&[]) => None,
        Some(d) => Some(d.to_vec()),
        None if buffer == 0 => None,
        None => {
            return Err(Error::BadIndex {
                what: "tensor",
                index: i,
                target: "buffer",
                value: buffer as i64,
                count: buffers.len(),
            });
        }
    };
    let mut tensor = Tensor {
        name: name.clone(),
        shape,
        dtype,
        quantization: None,
        data,
    };
    if let (Some(data), Some(n), Some(size)) = (&tensor.data, tensor.elements(), dtype.size())
        && n.checked_mul(size) != Some(data.len())
    {
        return Err(bad(format!(
            "its shape {:?} of {} needs {} bytes of data, its buffer has {}",
            tensor.shape,
            dtype.name(),
            n.saturating_mul(size),
            data.len()
        )));
    }
    if let Some(q) = t.table(4, "quantization")? {
        if q.u8(4, 0)? != 0 {
            return Err(bad("custom quantization is not supported".into()));
        }
        let scale = q.f32s(2, "quantization scales")?;
        let zero_point = q.i64s(3, "quantization zero points")?;
        let dimension = q.i32(6, 0)?;
        if !scale.is_empty() {
            if zero_point.len() != scale.len() {
                return Err(bad(format!(
                    "{} quantization scales but {} zero points",
                    scale.len(),
                    zero_point.len()
                )));
            }
            let dimension = usize::try_from(dimension)
                .ok()
                .filter(|&d| scale.len() == 1 || d < tensor.shape.len())
                .ok_or_else(|| bad(format!("quantized dimension {dimension} is not an axis")))?;
            if scale.len() > 1 && tensor.shape[dimension] as i64 != scale.len() as i64 {
                return Err(bad(format!(
                    "{} per-channel scales along an axis of {}",
                    scale.len(),
                    tensor.shape[dimension]
                )));
            }
            tensor.quantization = Some(Quantization {
                scale,
                zero_point,
                dimension,
            });
        }
    }
    Ok(tensor)
}

/// `Operator`: opcode_index 0, inputs 1, outputs 2, builtin_options_type 3, builtin_options 4.
fn operator(
    i: usize,
    t: &Table<'_>,
    codes: &[(BuiltinOp, i32, String)],
    tensors: usize,
) -> Result<Operator, Error> {
    let opcode = index(
        t.u32(0, 0)? as i64,
        codes.len(),
        "operator",
        i,
        "operator code",
    )?;
    let (code, version, custom_code) = codes[opcode].clone();
    let inputs = t
        .i32s(1, "operator inputs")?
        .iter()
        .map(|&v| match v {
            -1 => Ok(None),
            v => index(v as i64, tensors, "operator", i, "tensor").map(Some),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = t
        .i32s(2, "operator outputs")?
        .iter()
        .map(|&v| index(v as i64, tensors, "operator", i, "tensor"))
        .collect::<Result<Vec<_>, _>>()?;
    let tag = t.u8(3, options_tag::NONE)?;
    let bad = |problem: String| Error::BadOperator {
        index: i,
        op: code.name(),
        problem,
    };
    let options = match t.table(4, "builtin options")? {
        None => Options::None,
        Some(o) => options(tag, &o).map_err(|e| match e {
            OptionsError::Fault(e) => e,
            OptionsError::Padding(p) => {
                bad(format!("padding {p} is neither SAME (0) nor VALID (1)"))
            }
        })?,
    };
    Ok(Operator {
        code,
        version,
        custom_code,
        inputs,
        outputs,
        options,
    })
}

enum OptionsError {
    Fault(Error),
    Padding(i8),
}

impl From<Error> for OptionsError {
    fn from(e: Error) -> Self {
        OptionsError::Fault(e)
    }
}

fn padding(v: i8) -> Result<Padding, OptionsError> {
    match v {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        other => Err(OptionsError::Padding(other)),
    }
}

/// The option tables, field by field as in the schema.
fn options(tag: u8, o: &Table<'_>) -> Result<Options, OptionsError> {
    let act = |id| -> Result<Activation, Error> { Ok(Activation::from_schema(o.i8(id, 0)?)) };
    Ok(match tag {
        // padding 0, stride_w 1, stride_h 2, fused_activation_function 3, dilation_w 4, _h 5.
        options_tag::CONV_2D => Options::Conv2d {
            padding: padding(o.i8(0, 0)?)?,
            stride_w: o.i32(1, 0)?,
            stride_h: o.i32(2, 0)?,
            activation: act(3)?,
            dilation_w: o.i32(4, 1)?,
            dilation_h: o.i32(5, 1)?,
        },
        // padding 0, stride_w 1, stride_h 2, depth_multiplier 3, activation 4, dilation 5, 6.
        options_tag::DEPTHWISE_CONV_2D => Options::DepthwiseConv2d {
            padding: padding(o.i8(0, 0)?)?,
            stride_w: o.i32(1, 0)?,
            stride_h: o.i32(2, 0)?,
            depth_multiplier: o.i32(3, 0)?,
            activation: act(4)?,
            dilation_w: o.i32(5, 1)?,
            dilation_h: o.i32(6, 1)?,
        },
        // padding 0, stride_w 1, stride_h 2, filter_width 3, filter_height 4, activation 5.
        options_tag::POOL_2D => Options::Pool2d {
            padding: padding(o.i8(0, 0)?)?,
            stride_w: o.i32(1, 0)?,
            stride_h: o.i32(2, 0)?,
            filter_w: o.i32(3, 0)?,
            filter_h: o.i32(4, 0)?,
            activation: act(5)?,
        },
        // activation 0, weights_format 1, keep_num_dims 2, asymmetric_quantize_inputs 3.
        options_tag::FULLY_CONNECTED => Options::FullyConnected {
            activation: act(0)?,
            weights_format: o.i8(1, 0)?,
            keep_num_dims: o.bool(2, false)?,
            asymmetric_quantize_inputs: o.bool(3, false)?,
        },
        // beta 0.
        options_tag::SOFTMAX => Options::Softmax {
            beta: o.f32(0, 0.0)?,
        },
        // activation 0, pot_scale_int16 1 (default true).
        options_tag::ADD => Options::Add {
            activation: act(0)?,
            pot_scale_int16: o.bool(1, true)?,
        },
        // new_shape 0.
        options_tag::RESHAPE => Options::Reshape {
            new_shape: o.i32s(0, "reshape shape")?,
        },
        other => Options::Other(other),
    })
}
