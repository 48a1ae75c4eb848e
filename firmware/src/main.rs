//! # tinyconv firmware for the STM32F405 (Cortex-M4F)
//!
//! Boots, validates the embedded model with [`tinyconv::Model::parse`], calibrates SysTick
//! against an instruction loop, then either
//!
//! * **self-test** (default): classifies the MNIST test images that `build.rs` embedded and
//!   checks every class and every int8 logit against what the host runtime computed, or
//! * **full evaluation** (`--features full-eval`): streams the MNIST test set from the host
//!   through semihosting file reads and prints the accuracy and an FNV-1a digest of all logits,
//!
//! and ends with `RESULT images=N correct=C instructions=I macs=M flash=F ram=R stack=S`.
//! Run in QEMU with `cd firmware && cargo run --release`; see `docs/firmware.md`.
//!
//! When `$TINYCONV_MODEL` is a model format v2 graph, `build.rs` sets `tinyconv_graph_model`
//! and this binary is the graph program instead (`graphmain.rs`, `graphrun.rs`): the model on
//! self-test inputs made at build time, every output value checked against the host runtime's,
//! ending with the graph runner's `RESULT model=NAME ...` line.
//!
//! Only the `thumbv7em-none-eabihf` build is the firmware: on a host target this package is a
//! stub, so that `cargo build --workspace` does not break.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[macro_use]
mod console;
#[cfg(target_os = "none")]
#[cfg_attr(tinyconv_graph_model, allow(dead_code))] // the graph program prints less of it
mod clock;
#[cfg(all(target_os = "none", not(tinyconv_graph_model), feature = "full-eval"))]
mod eval;
#[cfg(all(target_os = "none", not(tinyconv_graph_model)))]
mod firmware;
#[cfg(all(target_os = "none", tinyconv_graph_model))]
mod graphmain;
#[cfg(all(target_os = "none", tinyconv_graph_model))]
mod graphrun;
#[cfg(all(
    target_os = "none",
    not(tinyconv_graph_model),
    feature = "kernel-check"
))]
mod kernelcheck;
#[cfg(target_os = "none")]
#[cfg_attr(tinyconv_graph_model, allow(dead_code))]
mod memory;
#[cfg(all(
    target_os = "none",
    not(tinyconv_graph_model),
    not(feature = "full-eval")
))]
mod selftest;

#[cfg(all(feature = "full-eval", feature = "kernel-check"))]
compile_error!("`full-eval` and `kernel-check` are separate modes: enable one");

#[cfg(all(feature = "full-eval", feature = "board-rtt"))]
compile_error!(
    "`full-eval` reads the MNIST files through semihosting file I/O, which needs QEMU; \
     build `board-rtt` without it (the board runs the self-test)"
);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "tinyconv-firmware runs on a Cortex-M4F: `cd firmware && cargo run --release` builds it \
         for thumbv7em-none-eabihf and runs it in QEMU (see docs/firmware.md)"
    );
    std::process::exit(2);
}
