//! Everything that can be wrong with a spec, each saying where and what to do.

use std::path::PathBuf;

use crate::layer::Shape;

/// A spec that cannot be read, parsed or resolved.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("cannot read model spec {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An explicit spec path that does not exist.
    #[error(
        "model spec file {path} does not exist (give an existing .toml file or a preset: {presets})"
    )]
    FileNotFound {
        /// The path given.
        path: PathBuf,
        /// The preset names, comma-separated.
        presets: String,
    },
    /// Neither a preset name nor a `.toml` path.
    #[error("unknown model {name:?}: not a preset ({presets}) and not a .toml file path")]
    UnknownPreset {
        /// The name given.
        name: String,
        /// The preset names, comma-separated.
        presets: String,
    },
    /// Not valid TOML, or a top-level field that is missing, unknown or of the wrong type.
    #[error("{source_name}: invalid model spec: {message}")]
    Toml {
        /// The file name or preset the text came from.
        source_name: String,
        /// The TOML parser's message.
        message: String,
    },
    /// A layer table without `type`.
    #[error("{path}: the layer has no `type` (one of: {known})")]
    MissingType {
        /// Layer path, e.g. `layers[3]`.
        path: String,
        /// The known layer types.
        known: String,
    },
    /// A `type` that is not a known layer.
    #[error("{path}: unknown layer type {found:?}; known types: {known}")]
    UnknownLayer {
        /// Layer path.
        path: String,
        /// The type given.
        found: String,
        /// The known layer types.
        known: String,
    },
    /// A layer field that is unknown, missing, of the wrong type or out of range.
    #[error("{path}: {message}")]
    Field {
        /// Layer path.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A model without layers.
    #[error("the model has no layers: add at least a final `dense` layer")]
    EmptyModel,
    /// The last layer is not `dense`.
    #[error(
        "{path}: the last layer is {found:?}, but it must be `dense` (the output must be the class logits, of size {classes})"
    )]
    LastNotDense {
        /// The last layer's path.
        path: String,
        /// Its type.
        found: String,
        /// The number of classes.
        classes: usize,
    },
    /// The last dense layer's `units` differs from the class count.
    #[error(
        "{path}: the last dense layer has units = {units} but the dataset has {classes} classes (omit `units` on the last layer to use the class count)"
    )]
    OutputUnits {
        /// Layer path.
        path: String,
        /// Units given.
        units: usize,
        /// Classes.
        classes: usize,
    },
    /// A dense layer other than the last one without `units`.
    #[error("{path}: `units` may only be omitted on the last dense layer; give this one a size")]
    MissingUnits {
        /// Layer path.
        path: String,
    },
    /// Zero classes or more than [`crate::MAX_CLASSES`].
    #[error("{classes} classes: a model needs 1 to {max} classes")]
    Classes {
        /// Classes given.
        classes: usize,
        /// The maximum.
        max: usize,
    },
    /// A size (kernel, stride, filters, units, input dimension) that is zero.
    #[error("{path}: {what} is 0; sizes must be at least 1")]
    ZeroSize {
        /// Layer path (or `input`).
        path: String,
        /// Which size.
        what: String,
    },
    /// A stride other than 1 or 2.
    #[error("{path}: stride {stride:?} is not supported; each stride must be 1 or 2")]
    Stride {
        /// Layer path.
        path: String,
        /// Stride `[h, w]`.
        stride: [usize; 2],
    },
    /// A kernel larger than the padded input.
    #[error(
        "{path}: kernel {kh}x{kw} is larger than the input {input} padded to {ph}x{pw}; use a smaller kernel or more padding, or remove a pooling layer before it"
    )]
    KernelTooLarge {
        /// Layer path.
        path: String,
        /// Kernel height.
        kh: usize,
        /// Kernel width.
        kw: usize,
        /// The layer's input.
        input: Shape,
        /// Padded height.
        ph: usize,
        /// Padded width.
        pw: usize,
    },
    /// A conv or pool padding at least as large as its window (a window of padding only).
    #[error(
        "{path}: padding {pads:?} (top, left, bottom, right) must be smaller than the window {kh}x{kw} on every side"
    )]
    PaddingTooLarge {
        /// Layer path.
        path: String,
        /// Pads `[top, left, bottom, right]`.
        pads: [usize; 4],
        /// Kernel height.
        kh: usize,
        /// Kernel width.
        kw: usize,
    },
    /// `dense` on a map that is not `1x1xC`.
    #[error(
        "{path}: dense needs a flat input but gets {input}; add a flatten or global_avg_pool before it"
    )]
    DenseNotFlat {
        /// Layer path.
        path: String,
        /// Its input shape.
        input: Shape,
    },
    /// A depthwise conv whose `filters` differs from its input channels.
    #[error(
        "{path}: a depthwise conv keeps the channel count ({channels}) but has filters = {filters}; omit filters or set it to {channels}, or use a 1x1 conv after it to change channels"
    )]
    DepthwiseFilters {
        /// Layer path.
        path: String,
        /// Filters given.
        filters: usize,
        /// Input channels.
        channels: usize,
    },
    /// A plain conv without `filters`.
    #[error("{path}: conv needs `filters` (only a depthwise conv may omit it)")]
    MissingFilters {
        /// Layer path.
        path: String,
    },
    /// A batch norm that does not directly follow a conv or dense layer.
    #[error(
        "{path}: batch_norm must directly follow a conv or dense layer (it is folded into it at export), but follows {after}"
    )]
    BatchNormPlacement {
        /// Layer path.
        path: String,
        /// What precedes it.
        after: String,
    },
    /// A residual block with an empty main branch.
    #[error("{path}: the residual block's `main` branch is empty; give it at least one layer")]
    EmptyBranch {
        /// Layer path.
        path: String,
    },
    /// The two branches of a residual end in different shapes.
    #[error(
        "{path}: the residual branches do not match: main ({main_path}) gives {main}, shortcut ({shortcut_path}) gives {shortcut}; make the shortcut match, e.g. a 1x1 conv with the main branch's filters and stride"
    )]
    ResidualMismatch {
        /// The residual's path.
        path: String,
        /// Path of the main branch's last layer.
        main_path: String,
        /// Its output.
        main: Shape,
        /// Path of the shortcut's last layer (or `identity`).
        shortcut_path: String,
        /// Its output.
        shortcut: Shape,
    },
    /// A count that overflows 64 bits.
    #[error("{path}: the sizes are too large (a count overflows)")]
    TooLarge {
        /// Layer path.
        path: String,
    },
}
