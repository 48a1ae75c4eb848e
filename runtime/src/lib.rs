//! # tinyconv — int8 CNN inference without a heap
//!
//! `#![no_std]`, no `alloc`: a model file is parsed zero-copy from `&[u8]` (e.g.
//! `include_bytes!` into flash), activations live in a caller-provided arena whose size the
//! model reports — at run time with [`Model::arena_len`], or at compile time with
//! [`required_arena_len`] for a `static` array. The arena is planned ([`plan`]): outputs
//! stream over the input rows a layer has consumed, and the smallest plan gives the wide
//! kernels lean scratch; an arena of [`Model::arena_len_for`]`(Mode::Speed)` bytes or more runs
//! every kernel at full speed.
//!
//! Quantization follows ONNX `QLinearConv` as tract evaluates it, so the host can check the
//! runtime bit for bit: see [`quant`] and `docs/quantization.md`.
//!
//! ```ignore
//! static MODEL: &[u8] = include_bytes!("mnist-cnn.tcm");
//! let model = tinyconv::Model::parse(MODEL)?;
//! let mut arena = [0i8; tinyconv::required_arena_len(MODEL)];
//! let prediction = model.infer(&pixels, &mut arena)?;
//! ```
#![no_std]
// Unsafe code is denied everywhere except the DSP blocks (`kernels::dsp`, inline assembly)
// and the host kernel's CPU-feature dispatch (`kernels::host`).
#![deny(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

mod error;
pub mod format;
pub mod graph;
mod infer;
pub mod kernels;
mod model;
pub mod plan;
pub mod quant;
pub mod soft_f32;
#[cfg(feature = "std")]
pub mod testing;
pub mod tflite_rule;
#[cfg(feature = "std")]
pub mod writer;

pub use error::{Error, Shape};
pub use format::{required_arena_len, required_arena_len_for};
pub use infer::{NoObserver, Observer, Prediction, quantize_pixels, run_layer, run_layer_scratch};
pub use model::{Layer, Layers, Model, Op, Padding};
pub use plan::Mode;
pub use quant::{Multiplier, QuantParams};
