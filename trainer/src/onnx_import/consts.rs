//! Constant tensors of an ONNX graph (initializers, `Constant` nodes, and what the importer
//! folds from them) and node attributes, decoded from the protobuf.

use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

/// A constant's values: float weights, or the int64 shapes and indices of flatten chains.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant tensor: its dims (row-major) and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Const {
    pub fn i64s(dims: Vec<usize>, v: Vec<i64>) -> Const {
        Const {
            dims,
            data: Data::I64(v),
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// The values as f32 (weights), or why not.
    pub fn f32s(&self) -> Result<&[f32], String> {
        match &self.data {
            Data::F32(v) => Ok(v),
            Data::I64(_) => Err("expected a float32 constant, found int64".into()),
        }
    }

    /// The values as i64 (a shape, axes, indices), or why not.
    pub fn i64s_of(&self) -> Result<Vec<i64>, String> {
        match &self.data {
            Data::I64(v) => Ok(v.clone()),
            Data::F32(v) if v.iter().all(|x| x.fract() == 0.0) => {
                Ok(v.iter().map(|&x| x as i64).collect())
            }
            Data::F32(_) => Err("expected an integer constant".into()),
        }
    }

    /// A scalar float (Clip's min and max), or why not.
    pub fn scalar_f32(&self) -> Result<f32, String> {
        match &self.data {
            Data::F32(v) if v.len() == 1 => Ok(v[0]),
            Data::I64(v) if v.len() == 1 => Ok(v[0] as f32),
            _ => Err(format!("expected a scalar, found {} values", self.len())),
        }
    }
}

// ONNX TensorProto.DataType codes.
const FLOAT: i32 = 1;
const INT32: i32 = 6;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;

/// Decodes an initializer or a `Constant`'s tensor; float32, float64 (narrowed), int32 and
/// int64 only, stored inline (external data is refused: export as one file).
pub fn decode(t: &TensorProto) -> Result<Const, String> {
    if !t.external_data.is_empty() || t.data_location == Some(1) {
        return Err(format!(
            "tensor `{}` is stored in an external file: export the model as one file (torch.onnx.export(..., external_data=False))",
            t.name
        ));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("tensor `{}` has dim {d}", t.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let count: usize = dims.iter().product();
    let raw = &t.raw_data;
    let data = match t.data_type {
        FLOAT if !raw.is_empty() => Data::F32(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        FLOAT => Data::F32(t.float_data.clone()),
        DOUBLE if !raw.is_empty() => Data::F32(
            raw.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
        ),
        DOUBLE => Data::F32(t.double_data.iter().map(|&x| x as f32).collect()),
        INT64 if !raw.is_empty() => Data::I64(
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        INT64 => Data::I64(t.int64_data.clone()),
        INT32 if !raw.is_empty() => Data::I64(
            raw.chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
                .collect(),
        ),
        INT32 => Data::I64(t.int32_data.iter().map(|&x| x as i64).collect()),
        other => {
            return Err(format!(
                "tensor `{}` has data type {other}; only float32 (1), float64 (11), int32 (6) and int64 (7) are supported",
                t.name
            ));
        }
    };
    let c = Const { dims, data };
    if c.len() != count {
        return Err(format!(
            "tensor `{}` holds {} values but its dims {:?} need {count}",
            t.name,
            c.len(),
            c.dims
        ));
    }
    Ok(c)
}

/// The attribute `name` of `node`, if present.
pub fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

pub fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// The tensor of a `Constant` node (`value`, `value_float(s)`, `value_int(s)`).
pub fn constant_node(node: &NodeProto) -> Result<Const, String> {
    if let Some(a) = attr(node, "value") {
        let t = a.t.as_ref().ok_or("`value` holds no tensor")?;
        return decode(t);
    }
    if let Some(a) = attr(node, "value_float") {
        return Ok(Const {
            dims: vec![],
            data: Data::F32(vec![a.f]),
        });
    }
    if let Some(a) = attr(node, "value_floats") {
        return Ok(Const {
            dims: vec![a.floats.len()],
            data: Data::F32(a.floats.clone()),
        });
    }
    if let Some(a) = attr(node, "value_int") {
        return Ok(Const::i64s(vec![], vec![a.i]));
    }
    if let Some(a) = attr(node, "value_ints") {
        return Ok(Const::i64s(vec![a.ints.len()], a.ints.clone()));
    }
    Err("a Constant with no value, value_float(s) or value_int(s) attribute".into())
}
