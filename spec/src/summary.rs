//! A Keras-like summary table of a [`Resolved`] graph.

use crate::graph::Resolved;

impl Resolved {
    /// The table: layer, output shape, params, MACs, then the totals.
    pub fn summary(&self) -> String {
        String::new()
    }
}
