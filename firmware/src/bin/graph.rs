//! # Graph runner: a model format v2 graph on the Cortex-M4F
//!
//! Boots, validates the graph that `build.rs` embedded (`$TINYCONV_GRAPH_DIR`: `model.tcm`,
//! `inputs.i8`, `expected.i8` and `name`), runs every input through
//! [`tinyconv::graph::Graph::infer_observed`] in a `static` arena sized at compile time, compares
//! every output value with the expected bytes (the reference engine's, computed on the host),
//! times every op, and ends with
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
    use cortex_m_rt::{ExceptionFrame, entry, exception};
    use tinyconv::graph::{Graph, GraphPlan, format::MAX_OPS};

    use crate::clock;
    use crate::console::{self, code};
    use crate::memory;

    /// Starts the embedded bytes on a 16-byte boundary, like the blobs inside a model file.
    #[repr(C, align(16))]
    struct Aligned<T: ?Sized>(T);

    static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("TINYCONV_GRAPH_MODEL")));
    static INPUTS: &[u8] = include_bytes!(env!("TINYCONV_GRAPH_INPUTS"));
    static EXPECTED: &[u8] = include_bytes!(env!("TINYCONV_GRAPH_EXPECTED"));
    const NAME: &str = env!("TINYCONV_GRAPH_NAME");

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

    /// Prints `x / y` with two decimals, integer-only.
    struct Ratio(u64, u64);

    impl core::fmt::Display for Ratio {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            if self.1 == 0 {
                return write!(f, "-");
            }
            let hundredths = (self.0 as u128 * 100 + self.1 as u128 / 2) / self.1 as u128;
            write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
        }
    }

    fn as_i8(bytes: &[u8]) -> &[i8] {
        bytemuck::cast_slice(bytes)
    }

    #[entry]
    fn main() -> ! {
        // cortex-m-rt turns a `static mut` of the entry function into a `&'static mut` in .bss.
        static mut ARENA: [i8; ARENA_LEN] = [0; ARENA_LEN];
        static mut OP_TICKS: [u64; MAX_OPS] = [0; MAX_OPS];

        console::init();
        let peripherals = cortex_m::Peripherals::take().unwrap();
        clock::start(peripherals.SYST);
        println!(
            "tinyconv graph runner {} on {}, text at {:#010x}",
            env!("CARGO_PKG_VERSION"),
            if cfg!(tinyconv_no_dsp_target) {
                "Cortex-M3"
            } else {
                "Cortex-M4F"
            },
            memory::text_start()
        );
        if MODEL.0.is_empty() {
            println!(
                "error: no graph was embedded: build with TINYCONV_GRAPH_DIR=DIR (see build.rs)"
            );
            console::exit(code::BAD_MODEL);
        }
        let graph = match Graph::parse_planned(&MODEL.0, &PLAN) {
            Ok(g) => g,
            Err(e) => {
                println!("error: the embedded graph is invalid: {e}");
                console::exit(code::BAD_MODEL);
            }
        };
        let (n_in, n_out) = (graph.input().shape.len(), graph.output().shape.len());
        let images = INPUTS.len() / n_in;
        if INPUTS.len() != images * n_in || EXPECTED.len() != images * n_out || images == 0 {
            println!(
                "error: {} input bytes and {} expected bytes do not make whole tensors of {} and {}",
                INPUTS.len(),
                EXPECTED.len(),
                n_in,
                n_out
            );
            console::exit(code::BAD_MODEL);
        }
        let macs = graph.macs() as u64;
        println!(
            "graph {NAME}: {} bytes, {} ops, {} tensors, input {}, output {}, rule {}, arena {} bytes, {} MACs",
            MODEL.0.len(),
            graph.op_count(),
            graph.tensor_count(),
            graph.input().shape,
            graph.output().shape,
            graph.rule().name(),
            ARENA_LEN,
            macs
        );
        let cal = clock::calibrate();
        println!(
            "calibration: {}.{:03} instructions/tick",
            cal.milli_instructions_per_tick() / 1000,
            cal.milli_instructions_per_tick() % 1000
        );

        let mut correct = 0u64;
        let mut total_ticks = 0u64;
        for k in 0..images {
            let input = as_i8(&INPUTS[k * n_in..(k + 1) * n_in]);
            let expected = as_i8(&EXPECTED[k * n_out..(k + 1) * n_out]);
            let start = clock::ticks();
            let mut last = start;
            let ticks = &mut *OP_TICKS;
            let result = graph.infer_observed(input, ARENA, &mut |op, _out| {
                let now = clock::ticks();
                ticks[op] += now - last;
                last = now;
            });
            total_ticks += clock::ticks() - start;
            let output = match result {
                Ok(o) => o,
                Err(e) => {
                    println!("error: inference failed: {e}");
                    console::exit(code::INFERENCE);
                }
            };
            let differing = output.iter().zip(expected).filter(|(a, b)| a != b).count();
            if differing == 0 {
                correct += 1;
            } else {
                let first = output
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap();
                println!(
                    "input {k}: MISMATCH in {differing} of {n_out} values, first at {first}: {} instead of {}",
                    output[first], expected[first]
                );
            }
        }

        let n = images as u64;
        println!("instructions per inference (mean over {images} inputs):");
        let mut op_sum = 0;
        for node in graph.nodes() {
            let instructions = cal.instructions(OP_TICKS[node.index]) / n;
            op_sum += instructions;
            println!(
                "  op {:>2}: {:<16} {} -> {} {:>10} instructions {:>9} MACs {:>6} per MAC",
                node.index,
                node.kind.name(),
                node.input.shape,
                node.output_info.shape,
                instructions,
                node.macs(),
                Ratio(instructions, node.macs() as u64)
            );
        }
        let total = cal.instructions(total_ticks) / n;
        println!(
            "  other : {:>10} instructions (input copy, timing hooks)",
            total.saturating_sub(op_sum)
        );
        println!(
            "  total : {total:>10} instructions {macs:>9} MACs {:>6} per MAC",
            Ratio(total, macs)
        );
        let s = memory::sections();
        let stack = memory::stack_high_water();
        println!(
            "memory: flash {} bytes (model {} + inputs {} + expected {}), ram {} bytes (arena {}), stack high-water {} of {} bytes",
            s.flash(),
            MODEL.0.len(),
            INPUTS.len(),
            EXPECTED.len(),
            s.ram(),
            ARENA_LEN,
            stack,
            s.stack_room
        );
        println!(
            "RESULT model={NAME} images={images} correct={correct} instructions={total} macs={macs} arena={ARENA_LEN} flash={} ram={} stack={stack}",
            s.flash(),
            s.ram()
        );
        console::exit(if correct == n {
            code::OK
        } else {
            code::MISMATCH
        })
    }

    #[exception]
    unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
        println!("error: hard fault at pc {:#010x}: {:?}", frame.pc(), frame);
        console::exit(code::HARD_FAULT)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        println!("panic: {info}");
        console::exit(code::PANIC)
    }
}
