//! # Graph runner: a model format v2 graph on the Cortex-M4F
//!
//! Runs the graph program (`src/graphrun.rs`) on what `build.rs` embedded from
//! `$TINYCONV_GRAPH_DIR` (`model.tcm`, `inputs.i8`, `expected.i8` and `name`): every input
//! through [`tinyconv::graph::Graph::infer_observed`] in a `static` arena sized at compile time,
//! every output value compared with the expected bytes (the reference engine's, computed on the
//! host), every op timed, ending with
//! `RESULT model=NAME images=N correct=C instructions=I macs=M arena=A flash=F ram=R stack=S`
//! (`correct`: inputs whose every output value is identical; `instructions`: mean per
//! inference). Exit code 0 when all are identical, 1 on a mismatch, 2 on a bad model.
//!
//! Run in QEMU: `TINYCONV_GRAPH_DIR=DIR cargo run --release --bin graph` in `firmware/`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[macro_use]
#[path = "../console.rs"]
mod console;
#[cfg(target_os = "none")]
#[path = "../clock.rs"]
#[allow(dead_code)] // the calibration's details are printed by the self-test only
mod clock;
#[cfg(target_os = "none")]
#[path = "../graphrun.rs"]
mod graphrun;
#[cfg(target_os = "none")]
#[path = "../memory.rs"]
#[allow(dead_code)]
mod memory;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "the graph runner runs on a Cortex-M4F: `TINYCONV_GRAPH_DIR=DIR cargo run --release \
         --bin graph` in firmware/ builds it for thumbv7em-none-eabihf and runs it in QEMU"
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod program {
    use cortex_m_rt::entry;
    use tinyconv::graph::{GraphPlan, format::MAX_OPS};

    use crate::graphrun::{self, Embedded};

    /// Starts the embedded bytes on a 16-byte boundary, like the blobs inside a model file.
    #[repr(C, align(16))]
    struct Aligned<T: ?Sized>(T);

    static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("TINYCONV_GRAPH_MODEL")));
    // Aligned too, so that copying an input into the arena costs the same wherever it lands.
    static INPUTS: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("TINYCONV_GRAPH_INPUTS")));

    static EMBEDDED: Embedded = Embedded {
        title: "tinyconv graph runner",
        name: env!("TINYCONV_GRAPH_NAME"),
        source: "",
        model: &MODEL.0,
        inputs: &INPUTS.0,
        expected: include_bytes!(env!("TINYCONV_GRAPH_EXPECTED")),
        labels: &[],
        host_correct: 0,
    };

    /// The graph's arena plan, made at compile time (the planner never runs on the chip;
    /// `Graph::parse_planned` checks the plan is sound at boot), and its size for the `static`
    /// arena. Empty without a graph: the program then says so.
    static PLAN: GraphPlan = {
        let bytes = include_bytes!(env!("TINYCONV_GRAPH_MODEL"));
        if bytes.is_empty() {
            GraphPlan::EMPTY
        } else {
            tinyconv::graph::plan::plan(bytes)
        }
    };
    const ARENA_LEN: usize = PLAN.len;

    #[entry]
    fn main() -> ! {
        // cortex-m-rt turns a `static mut` of the entry function into a `&'static mut` in .bss.
        static mut ARENA: [i8; ARENA_LEN] = [0; ARENA_LEN];
        static mut OP_TICKS: [u64; MAX_OPS] = [0; MAX_OPS];
        graphrun::run(&EMBEDDED, &PLAN, ARENA, OP_TICKS)
    }
}
