//! Built-in specs, embedded from `spec/presets/*.toml`, and [`load`].

use std::path::Path;

use crate::error::SpecError;
use crate::layer::ModelSpec;

/// The preset names, in the order the docs list them.
pub const PRESET_NAMES: [&str; 4] = ["seed", "lenet5", "resnet8", "dscnn"];

/// The TOML text of the preset called `name`.
pub fn preset_text(name: &str) -> Option<&'static str> {
    Some(match name {
        "seed" => include_str!("../presets/seed.toml"),
        "lenet5" => include_str!("../presets/lenet5.toml"),
        "resnet8" => include_str!("../presets/resnet8.toml"),
        "dscnn" => include_str!("../presets/dscnn.toml"),
        _ => return None,
    })
}

/// The preset called `name`, if there is one.
///
/// # Panics
/// If an embedded preset does not parse (a bug caught by the tests).
pub fn preset(name: &str) -> Option<ModelSpec> {
    let text = preset_text(name)?;
    Some(ModelSpec::parse(text, name).unwrap_or_else(|e| panic!("preset {name}: {e}")))
}

/// A preset name, or a path to a spec file.
///
/// Anything that ends in `.toml` or contains a path separator is a path, and must exist;
/// anything else must be a preset name. A file is never looked up in place of a missing preset,
/// nor the other way round.
pub fn load(name_or_path: &str) -> Result<ModelSpec, SpecError> {
    let presets = || PRESET_NAMES.join(", ");
    let is_path = name_or_path.ends_with(".toml") || name_or_path.contains(['/', '\\']);
    if !is_path {
        return preset(name_or_path).ok_or_else(|| SpecError::UnknownPreset {
            name: name_or_path.to_string(),
            presets: presets(),
        });
    }
    let path = Path::new(name_or_path);
    if !path.exists() {
        return Err(SpecError::FileNotFound {
            path: path.to_path_buf(),
            presets: presets(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ModelSpec::parse(&text, name_or_path)
}
