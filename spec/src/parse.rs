//! TOML text → [`ModelSpec`].
//!
//! Each layer is first read as a plain table so that its `type` picks the schema and every
//! error can name the layer's path (`layers[3].main[1]`); the fields are then deserialized by
//! serde with `deny_unknown_fields`.

use serde::Deserialize;

use crate::error::SpecError;
use crate::layer::{
    BatchNormLayer, ConvLayer, DenseLayer, DropoutLayer, Layer, ModelSpec, Padding, PoolLayer,
    ResidualLayer,
};

/// The `type` strings, in the order the docs list them.
pub(crate) const LAYER_TYPES: [&str; 11] = [
    "conv",
    "batch_norm",
    "relu",
    "relu6",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "dropout",
    "flatten",
    "dense",
    "residual",
];

/// Batch norm defaults: burn's (and PyTorch's).
const DEFAULT_EPSILON: f64 = 1e-5;
const DEFAULT_MOMENTUM: f64 = 0.1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    description: Option<String>,
    #[serde(default)]
    layers: Vec<toml::Table>,
}

/// A size given as `n` (both axes) or `[h, w]`.
#[derive(Clone, Copy)]
struct Pair([usize; 2]);

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        pair(&value).map(Pair).map_err(serde::de::Error::custom)
    }
}

fn non_negative(value: &toml::Value) -> Option<usize> {
    value.as_integer().and_then(|i| usize::try_from(i).ok())
}

fn pair(value: &toml::Value) -> Result<[usize; 2], String> {
    if let Some(n) = non_negative(value) {
        return Ok([n, n]);
    }
    if let Some([h, w]) = value.as_array().map(Vec::as_slice)
        && let (Some(h), Some(w)) = (non_negative(h), non_negative(w))
    {
        return Ok([h, w]);
    }
    Err(format!(
        "expected a non-negative integer or [height, width], found {value}"
    ))
}

impl<'de> Deserialize<'de> for Padding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        padding(&value).map_err(serde::de::Error::custom)
    }
}

fn padding(value: &toml::Value) -> Result<Padding, String> {
    match value {
        toml::Value::String(s) if s == "same" => return Ok(Padding::Same),
        toml::Value::String(s) if s == "valid" => return Ok(Padding::Valid),
        _ => {}
    }
    if let Some(p) = non_negative(value) {
        return Ok(Padding::Explicit([p; 4]));
    }
    if let Some(items) = value.as_array()
        && items.len() == 4
    {
        let pads: Option<Vec<usize>> = items.iter().map(non_negative).collect();
        if let Some(p) = pads {
            return Ok(Padding::Explicit([p[0], p[1], p[2], p[3]]));
        }
    }
    Err(format!(
        "padding must be \"same\", \"valid\", a non-negative integer or [top, left, bottom, right], found {value}"
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConv {
    filters: Option<usize>,
    kernel: Pair,
    stride: Option<Pair>,
    padding: Option<Padding>,
    #[serde(default)]
    depthwise: bool,
    bias: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatchNorm {
    epsilon: Option<f64>,
    momentum: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    kernel: Pair,
    stride: Option<Pair>,
    padding: Option<Padding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDropout {
    rate: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDense {
    units: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResidual {
    main: Vec<toml::Table>,
    #[serde(default)]
    shortcut: Vec<toml::Table>,
}

impl ModelSpec {
    /// Parses a spec from TOML text; `source_name` (a file name or preset) names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<ModelSpec, SpecError> {
        let raw: RawModel = toml::from_str(text).map_err(|e| SpecError::Toml {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        if !is_file_name(&raw.name) {
            return Err(SpecError::Toml {
                source_name: source_name.to_string(),
                message: format!(
                    "name {:?}: artifacts are named after the model, so the name must be letters, digits, '-', '_' or '.', starting with a letter or digit",
                    raw.name
                ),
            });
        }
        Ok(ModelSpec {
            name: raw.name,
            description: raw.description,
            layers: layers(raw.layers, "layers")?,
        })
    }
}

/// Whether `name` is safe as a file-name stem on every platform.
fn is_file_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn layers(tables: Vec<toml::Table>, list_path: &str) -> Result<Vec<Layer>, SpecError> {
    tables
        .into_iter()
        .enumerate()
        .map(|(i, table)| layer(table, &format!("{list_path}[{i}]")))
        .collect()
}

fn known() -> String {
    LAYER_TYPES.join(", ")
}

/// Deserializes a layer's fields (without `type`) into its raw struct.
fn fields<T: for<'de> Deserialize<'de>>(
    table: toml::Table,
    path: &str,
    kind: &str,
) -> Result<T, SpecError> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| SpecError::Field {
            path: path.to_string(),
            message: format!("{kind}: {}", e.message().trim_end()),
        })
}

/// A layer that takes no fields.
fn bare(table: toml::Table, path: &str, kind: &str, layer: Layer) -> Result<Layer, SpecError> {
    match table.keys().next() {
        None => Ok(layer),
        Some(key) => Err(SpecError::Field {
            path: path.to_string(),
            message: format!("{kind} takes no fields, found `{key}`"),
        }),
    }
}

fn layer(mut table: toml::Table, path: &str) -> Result<Layer, SpecError> {
    let kind = match table.remove("type") {
        None => {
            return Err(SpecError::MissingType {
                path: path.to_string(),
                known: known(),
            });
        }
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(SpecError::UnknownLayer {
                path: path.to_string(),
                found: other.to_string(),
                known: known(),
            });
        }
    };
    let layer = match kind.as_str() {
        "conv" => {
            let c: RawConv = fields(table, path, &kind)?;
            Layer::Conv(ConvLayer {
                filters: c.filters,
                kernel: c.kernel.0,
                stride: c.stride.map_or([1, 1], |s| s.0),
                padding: c.padding.unwrap_or(Padding::Valid),
                depthwise: c.depthwise,
                bias: c.bias.unwrap_or(true),
            })
        }
        "batch_norm" => {
            let b: RawBatchNorm = fields(table, path, &kind)?;
            Layer::BatchNorm(BatchNormLayer {
                epsilon: b.epsilon.unwrap_or(DEFAULT_EPSILON),
                momentum: b.momentum.unwrap_or(DEFAULT_MOMENTUM),
            })
        }
        "max_pool" | "avg_pool" => {
            let p: RawPool = fields(table, path, &kind)?;
            let pool = PoolLayer {
                kernel: p.kernel.0,
                stride: p.stride.unwrap_or(p.kernel).0,
                padding: p.padding.unwrap_or(Padding::Valid),
            };
            if kind == "max_pool" {
                Layer::MaxPool(pool)
            } else {
                Layer::AvgPool(pool)
            }
        }
        "dropout" => {
            let d: RawDropout = fields(table, path, &kind)?;
            Layer::Dropout(DropoutLayer { rate: d.rate })
        }
        "dense" => {
            let d: RawDense = fields(table, path, &kind)?;
            Layer::Dense(DenseLayer { units: d.units })
        }
        "residual" => {
            let r: RawResidual = fields(table, path, &kind)?;
            Layer::Residual(ResidualLayer {
                main: layers(r.main, &format!("{path}.main"))?,
                shortcut: layers(r.shortcut, &format!("{path}.shortcut"))?,
            })
        }
        "relu" => bare(table, path, &kind, Layer::Relu)?,
        "relu6" => bare(table, path, &kind, Layer::Relu6)?,
        "global_avg_pool" => bare(table, path, &kind, Layer::GlobalAvgPool)?,
        "flatten" => bare(table, path, &kind, Layer::Flatten)?,
        _ => {
            return Err(SpecError::UnknownLayer {
                path: path.to_string(),
                found: kind,
                known: known(),
            });
        }
    };
    Ok(layer)
}
