//! Fast kernels of the graph ops, one file per kernel family, each beside the scalar reference
//! of its op (`super::ops::*::reference`) and bit-exact with it. An op module's `run` picks the
//! kernel for its shape and target; its `scratch_len` sizes the kernel's scratch for the planner.

pub mod add;
pub mod conv;
pub mod dense;
pub mod depthwise;
pub mod dw3x3;
pub mod pool;
pub mod requant;
