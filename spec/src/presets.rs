//! Built-in specs, embedded from `spec/presets/*.toml`, and [`load`].

use crate::error::SpecError;
use crate::layer::ModelSpec;

/// The preset names, in the order `--help` lists them.
pub const PRESET_NAMES: [&str; 4] = ["seed", "lenet5", "resnet8", "dscnn"];

/// The preset called `name`, if there is one.
pub fn preset(name: &str) -> Option<ModelSpec> {
    let _ = name;
    None
}

/// A preset name, or a path to a `.toml` spec file.
pub fn load(name_or_path: &str) -> Result<ModelSpec, SpecError> {
    Err(SpecError::UnknownPreset {
        name: name_or_path.into(),
        presets: PRESET_NAMES.join(", "),
    })
}
