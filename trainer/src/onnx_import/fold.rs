//! Constant folding of the shape arithmetic exporters write around a flatten (tf2onnx's
//! `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, `Cast`s, `Slice`s): with the input's
//! shape fixed, every such node's output is a constant.

use super::consts::{Const, Data, attr_i, attr_ints};
use tract_onnx::pb::NodeProto;

/// `axis` (possibly negative) as an index into `rank` axes.
pub fn axis_index(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

fn pick(data: &Data, idx: &[usize]) -> Data {
    match data {
        Data::F32(v) => Data::F32(idx.iter().map(|&i| v[i]).collect()),
        Data::I64(v) => Data::I64(idx.iter().map(|&i| v[i]).collect()),
    }
}

/// Folds `node` (one of [`FOLDABLE`]) over constant inputs. `axes_input` is the node's
/// second input for ops that take their axes as an input since opset 13.
pub fn fold(node: &NodeProto, inputs: &[Option<&Const>]) -> Result<Const, String> {
    let x = inputs
        .first()
        .copied()
        .flatten()
        .ok_or("the first input is missing")?;
    let second = || {
        inputs
            .get(1)
            .copied()
            .flatten()
            .ok_or_else(|| "the second input is missing".to_string())
    };
    match node.op_type.as_str() {
        "Identity" => Ok(x.clone()),
        "Cast" => {
            let to = attr_i(node, "to", 0);
            let data = match (to, &x.data) {
                (1 | 11, Data::F32(v)) => Data::F32(v.clone()),
                (1 | 11, Data::I64(v)) => Data::F32(v.iter().map(|&i| i as f32).collect()),
                (6 | 7, Data::I64(v)) => Data::I64(v.clone()),
                (6 | 7, Data::F32(v)) => Data::I64(v.iter().map(|&f| f as i64).collect()),
                _ => return Err(format!("Cast to data type {to} is not supported")),
            };
            Ok(Const {
                dims: x.dims.clone(),
                data,
            })
        }
        "Gather" => {
            let axis = axis_index(attr_i(node, "axis", 0), x.dims.len().max(1))?;
            if x.dims.len() != 1 || axis != 0 {
                return Err("Gather of a constant is folded on 1-D data only".into());
            }
            let idx = second()?;
            let n = x.dims[0] as i64;
            let picks = idx
                .i64s_of()?
                .into_iter()
                .map(|i| {
                    let j = if i < 0 { i + n } else { i };
                    if j < 0 || j >= n {
                        Err(format!("Gather index {i} out of range 0..{n}"))
                    } else {
                        Ok(j as usize)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Const {
                dims: idx.dims.clone(),
                data: pick(&x.data, &picks),
            })
        }
        "Unsqueeze" | "Squeeze" => {
            let axes = match inputs.get(1).copied().flatten() {
                Some(a) => Some(a.i64s_of()?),
                None => attr_ints(node, "axes"),
            };
            let dims = if node.op_type == "Unsqueeze" {
                unsqueeze_dims(&x.dims, &axes.ok_or("Unsqueeze without axes")?)?
            } else {
                squeeze_dims(&x.dims, axes.as_deref())?
            };
            Ok(Const {
                dims,
                data: x.data.clone(),
            })
        }
        "Concat" => {
            let parts: Vec<&Const> = inputs
                .iter()
                .map(|c| c.ok_or("an input is missing"))
                .collect::<Result<_, _>>()?;
            if parts.iter().any(|p| p.dims.len() != 1) {
                return Err("Concat of constants is folded on 1-D tensors only".into());
            }
            let mut all = Vec::new();
            for p in &parts {
                all.extend(p.i64s_of()?);
            }
            Ok(Const::i64s(vec![all.len()], all))
        }
        "Reshape" => {
            let dims = reshape_dims(&x.dims, &second()?.i64s_of()?)?;
            Ok(Const {
                dims,
                data: x.data.clone(),
            })
        }
        "Slice" => {
            if x.dims.len() != 1 {
                return Err("Slice of a constant is folded on 1-D tensors only".into());
            }
            let n = x.dims[0] as i64;
            let starts = second()?.i64s_of()?;
            let ends = inputs
                .get(2)
                .copied()
                .flatten()
                .ok_or("Slice without ends")?
                .i64s_of()?;
            let step = match inputs.get(4).copied().flatten() {
                Some(s) => s.i64s_of()?[0],
                None => 1,
            };
            if starts.len() != 1 || ends.len() != 1 || step != 1 {
                return Err("Slice of a constant is folded with one axis and step 1 only".into());
            }
            let clampi = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
            let (s, e) = (clampi(starts[0]), clampi(ends[0]));
            let picks: Vec<usize> = (s..e.max(s)).map(|i| i as usize).collect();
            Ok(Const {
                dims: vec![picks.len()],
                data: pick(&x.data, &picks),
            })
        }
        "Expand" => {
            let shape = second()?.i64s_of()?;
            expand(x, &shape)
        }
        other => Err(format!("{other} is not folded")),
    }
}

/// Ops folded when all their inputs are constants.
pub const FOLDABLE: &[&str] = &[
    "Identity",
    "Cast",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Reshape",
    "Slice",
    "Expand",
];

/// Numpy-style broadcast of `x` to `shape`.
fn expand(x: &Const, shape: &[i64]) -> Result<Const, String> {
    let rank = x.dims.len().max(shape.len());
    let pad = |d: &[usize]| {
        let mut v = vec![1usize; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let xd = pad(&x.dims);
    let sd = pad(&shape.iter().map(|&s| s.max(0) as usize).collect::<Vec<_>>());
    let mut out = Vec::with_capacity(rank);
    for (a, b) in xd.iter().zip(&sd) {
        out.push(match (a, b) {
            (a, b) if a == b => *a,
            (1, b) => *b,
            (a, 1) => *a,
            _ => return Err(format!("Expand of {:?} to {shape:?}", x.dims)),
        });
    }
    let total: usize = out.iter().product();
    let mut picks = Vec::with_capacity(total);
    for flat in 0..total {
        let (mut rest, mut src, mut stride) = (flat, 0, 1);
        for k in (0..rank).rev() {
            let i = rest % out[k];
            rest /= out[k];
            if xd[k] != 1 {
                src += i * stride;
            }
            stride *= xd[k];
        }
        picks.push(src);
    }
    Ok(Const {
        dims: out,
        data: pick(&x.data, &picks),
    })
}

pub fn unsqueeze_dims(dims: &[usize], axes: &[i64]) -> Result<Vec<usize>, String> {
    let rank = dims.len() + axes.len();
    let mut at: Vec<usize> = axes
        .iter()
        .map(|&a| axis_index(a, rank))
        .collect::<Result<_, _>>()?;
    at.sort_unstable();
    let mut out = dims.to_vec();
    for a in at {
        out.insert(a, 1);
    }
    Ok(out)
}

pub fn squeeze_dims(dims: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, String> {
    let drop: Vec<usize> = match axes {
        Some(axes) => axes
            .iter()
            .map(|&a| axis_index(a, dims.len()))
            .collect::<Result<_, _>>()?,
        None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
    };
    if let Some(&a) = drop.iter().find(|&&a| dims[a] != 1) {
        return Err(format!("Squeeze of axis {a}, whose size is {}", dims[a]));
    }
    Ok((0..dims.len())
        .filter(|i| !drop.contains(i))
        .map(|i| dims[i])
        .collect())
}

/// ONNX Reshape's target dims: `0` copies the input's dim, one `-1` takes the rest.
pub fn reshape_dims(dims: &[usize], shape: &[i64]) -> Result<Vec<usize>, String> {
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            0 => out.push(*dims.get(i).ok_or("Reshape 0 beyond the input's rank")?),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            s if s > 0 => out.push(s as usize),
            s => return Err(format!("Reshape to dim {s}")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!("Reshape of {dims:?} to {shape:?}"));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!("Reshape of {dims:?} ({total} values) to {shape:?}"));
    }
    Ok(out)
}
