//! Model specs as data: a CNN described in TOML, checked and resolved into a flat graph with
//! concrete shapes, paddings, parameter and MAC counts.
//!
//! ```text
//! TOML text ──parse──▶ ModelSpec ──resolve(input, classes)──▶ Resolved (nodes in topological order)
//! ```
//!
//! ```
//! use tinyconv_spec::{Shape, load};
//!
//! let resolved = load("seed")?.resolve(Shape::new(28, 28, 1), 10)?;
//! assert_eq!(resolved.nodes.last().unwrap().output, Shape::new(1, 1, 10));
//! println!("{}", resolved.summary());
//! # Ok::<(), tinyconv_spec::SpecError>(())
//! ```
//!
//! The format is documented in `docs/model-spec.md`. This crate is pure data: the network
//! builders (burn, the exporters) read [`Resolved`].

mod error;
mod graph;
mod layer;
mod parse;
mod presets;
mod resolve;
mod summary;

pub use error::SpecError;
pub use graph::{Node, NodeId, Op, Pads, Params, Resolved};
pub use layer::{
    BatchNormLayer, ConvLayer, DenseLayer, DropoutLayer, Layer, ModelSpec, Padding, PoolLayer,
    ResidualLayer, Shape,
};
pub use presets::{PRESET_NAMES, load, preset, preset_text};
pub use resolve::{MAX_CLASSES, same_padding};

/// The shape of the network's input (height, width, channels).
pub type InputShape = Shape;
