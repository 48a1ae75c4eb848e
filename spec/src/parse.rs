//! TOML text → [`ModelSpec`].

use crate::error::SpecError;
use crate::layer::ModelSpec;

impl ModelSpec {
    /// Parses a spec from TOML text; `source_name` (a file name or preset) names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<ModelSpec, SpecError> {
        let _ = text;
        Err(SpecError::Toml {
            source_name: source_name.into(),
            message: "not implemented yet".into(),
        })
    }
}
