//! [`ModelSpec`] + input shape + classes → [`Resolved`].

use crate::error::SpecError;
use crate::graph::{Pads, Resolved};
use crate::layer::{ModelSpec, Shape};

/// The largest class count a model may have.
pub const MAX_CLASSES: usize = 1000;

/// TensorFlow's SAME padding along one axis: `(pad_before, pad_after, output)`.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let output = input.div_ceil(stride);
    let total = ((output - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2, output)
}

impl ModelSpec {
    /// Checks that the layers chain on `input` and produces the flat graph.
    pub fn resolve(&self, input: Shape, classes: usize) -> Result<Resolved, SpecError> {
        let _ = (input, classes, Pads::default());
        Err(SpecError::EmptyModel)
    }
}
