//! # tinyconv-tflite — TensorFlow Lite models as plain data
//!
//! Reads a `.tflite` flatbuffer (schema version 3) into owned structs: the tensors with their
//! shapes, types, quantization and constant data; the operators in execution order with their
//! builtin options. The reader interprets nothing: which ops tinyconv can run, and how, is the
//! business of [`mod@import`], which maps the int8 TinyML op set to a tinyconv v2 graph
//! ([`to_graph`]; `tests/golden.rs` holds it to CMSIS-NN on the MLPerf Tiny models). Any byte
//! string is safe to read: every offset is bounds-checked, and a damaged file is a typed
//! [`Error`] that says what was being read.
//!
//! ```no_run
//! let bytes = std::fs::read("kws.int8.tflite")?;
//! let model = tinyconv_tflite::Model::parse(&bytes)?;
//! for op in &model.graph.operators {
//!     println!("{:?} {:?} -> {:?}", op.code, op.inputs, op.outputs);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod flatbuffer;
pub mod import;
mod model;
mod read;

pub use import::{Dropped, ImportError, ImportReport, Imported, import, to_graph};
pub use model::{
    Activation, BuiltinOp, Graph, Model, Operator, Options, Padding, Quantization, Tensor,
    TensorType,
};

/// What is wrong with a `.tflite` file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "not a TensorFlow Lite model: the file identifier at bytes 4..8 is {found:?}, expected \"TFL3\""
    )]
    NotTflite { found: [u8; 4] },
    #[error("truncated or damaged model: {what} at byte {at} lies outside the {len}-byte file")]
    OutOfBounds {
        what: &'static str,
        at: usize,
        len: usize,
    },
    #[error("damaged model: the vtable of a {what} at byte {at} is malformed")]
    BadVtable { what: &'static str, at: usize },
    #[error(
        "unsupported schema version {0} (tinyconv reads version 3, what TensorFlow 2.x writes)"
    )]
    Version(u32),
    #[error("the model has {0} subgraphs; tinyconv imports models with exactly one")]
    Subgraphs(usize),
    #[error("{what} {index} refers to {target} {value}, but there are only {count}")]
    BadIndex {
        what: &'static str,
        index: usize,
        target: &'static str,
        value: i64,
        count: usize,
    },
    #[error("operator {index} ({op}): {problem}")]
    BadOperator {
        index: usize,
        op: String,
        problem: String,
    },
    #[error("tensor {index} ({name}): {problem}")]
    BadTensor {
        index: usize,
        name: String,
        problem: String,
    },
}
