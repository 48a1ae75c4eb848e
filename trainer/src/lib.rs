//! The trainer behind the `tinyconv` command: MNIST loading, the CNN, float training,
//! checkpoints and plots. Quantization and export hang off [`pipeline::after_training`].
//!
//! Burn 0.22 note: there is no backend type parameter; `burn::tensor::Device` carries the
//! backend (Flex here) and whether autodiff is on (`Device::flex().autodiff()`).

pub mod artifacts;
pub mod batch_conv;
pub mod commands;
pub mod crash_hook;
pub mod data;
pub mod digest;
pub mod dropout;
pub mod evaluate;
pub mod fgraph;
pub mod firmware;
pub mod import;
pub mod model;
pub mod net;
pub mod onnx;
pub mod onnx_graph;
pub mod onnx_import;
pub mod pipeline;
pub mod plots;
pub mod quantize;
pub mod referee;
pub mod rng;
pub mod spec_net;
pub mod spec_pipeline;
pub mod train;
pub mod verify_graph;
