//! The default binary for a model format v2 `$TINYCONV_MODEL`: the graph program
//! (`graphrun.rs`) on the self-test inputs `build.rs` made for it — test images of the model's
//! dataset with their labels (`$TINYCONV_DATA`, models that take pixels), else seeded random
//! int8 inputs — and the outputs the HOST runtime computed for them.

use cortex_m_rt::entry;
use tinyconv::graph::{GraphPlan, format::MAX_OPS};

use crate::graphrun::{self, Embedded};

/// Starts the embedded bytes on a 16-byte boundary, like the blobs inside a model file.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("TINYCONV_MODEL_FILE")));
// Aligned too, so that copying an input into the arena costs the same wherever it lands.
static INPUTS: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/graph_selftest_inputs.i8"
)));

// NAME, SOURCE, HOST_CORRECT and LABELS.
include!(concat!(env!("OUT_DIR"), "/graph_selftest.rs"));

static EMBEDDED: Embedded = Embedded {
    title: "tinyconv firmware (graph self-test)",
    name: NAME,
    source: SOURCE,
    model: &MODEL.0,
    inputs: &INPUTS.0,
    expected: include_bytes!(concat!(env!("OUT_DIR"), "/graph_selftest_expected.i8")),
    labels: &LABELS,
    host_correct: HOST_CORRECT,
};

/// The arena plan, made at compile time like the graph runner's; `build.rs` has checked that
/// the arena and the stack fit the board's RAM.
static PLAN: GraphPlan = tinyconv::graph::plan::plan(include_bytes!(env!("TINYCONV_MODEL_FILE")));
const ARENA_LEN: usize = PLAN.len;

#[entry]
fn main() -> ! {
    // cortex-m-rt turns a `static mut` of the entry function into a `&'static mut` in .bss.
    static mut ARENA: [i8; ARENA_LEN] = [0; ARENA_LEN];
    static mut OP_TICKS: [u64; MAX_OPS] = [0; MAX_OPS];
    graphrun::run(&EMBEDDED, &PLAN, ARENA, OP_TICKS)
}
