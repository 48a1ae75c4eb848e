//! The graph program: a model format v2 graph on inputs embedded at build time.
//!
//! Validates the graph against the plan made at compile time, runs every input through
//! [`tinyconv::graph::Graph::infer_observed`] in the caller's `static` arena, compares every
//! output value with the expected bytes (computed off the chip: a reference engine's, or the
//! host runtime's), times every op, and ends with
//! `RESULT model=NAME images=N correct=C instructions=I macs=M arena=A flash=F ram=R stack=S`.
//! Exit code 0 when all are identical, 1 on a mismatch, 2 on a bad model, 4 when inference
//! fails. Shared by `--bin graph` (`$TINYCONV_GRAPH_DIR`) and the default binary when
//! `$TINYCONV_MODEL` is a v2 model (`graphmain.rs`).

use cortex_m_rt::ExceptionFrame;
use cortex_m_rt::exception;
use tinyconv::graph::{Graph, GraphPlan, format::MAX_OPS};

use crate::clock;
use crate::console::{self, code};
use crate::memory;

/// What a binary embedded for the graph program.
pub struct Embedded {
    /// The program's name on the first line.
    pub title: &'static str,
    /// The model's name in the RESULT line (one word).
    pub name: &'static str,
    /// Where the inputs and expected outputs come from, for the log.
    pub source: &'static str,
    /// The v2 model file, 16-byte aligned like the blobs inside it.
    pub model: &'static [u8],
    /// Whole int8 input tensors, concatenated.
    pub inputs: &'static [u8],
    /// One int8 output tensor per input.
    pub expected: &'static [u8],
    /// Each input's class label, or empty when the inputs have none.
    pub labels: &'static [u16],
    /// Inputs whose host-runtime output's top class equals the label (with labels).
    pub host_correct: u64,
}

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

/// The index of the largest value (the first of equals), as the host's argmax.
fn top_class(output: &[i8]) -> usize {
    let mut best = 0;
    for (i, &v) in output.iter().enumerate() {
        if v > output[best] {
            best = i;
        }
    }
    best
}

/// Runs the program to its exit code.
#[inline(always)]
pub fn run(e: &Embedded, plan: &GraphPlan, arena: &mut [i8], op_ticks: &mut [u64; MAX_OPS]) -> ! {
    console::init();
    let peripherals = cortex_m::Peripherals::take().unwrap();
    clock::start(peripherals.SYST);
    println!(
        "{} {} on {}, text at {:#010x}",
        e.title,
        env!("CARGO_PKG_VERSION"),
        if cfg!(tinyconv_no_dsp_target) {
            "Cortex-M3"
        } else {
            "Cortex-M4F"
        },
        memory::text_start()
    );
    if e.model.is_empty() {
        println!("error: no graph was embedded: build with TINYCONV_GRAPH_DIR=DIR (see build.rs)");
        console::exit(code::BAD_MODEL);
    }
    let graph = match Graph::parse_planned(e.model, plan) {
        Ok(g) => g,
        Err(err) => {
            println!("error: the embedded graph is invalid: {err}");
            console::exit(code::BAD_MODEL);
        }
    };
    let (n_in, n_out) = (graph.input().shape.len(), graph.output().shape.len());
    let images = e.inputs.len() / n_in;
    let labelled = !e.labels.is_empty();
    if e.inputs.len() != images * n_in
        || e.expected.len() != images * n_out
        || images == 0
        || (labelled && e.labels.len() != images)
    {
        println!(
            "error: {} input bytes, {} expected bytes and {} labels do not make whole tensors of {} and {}",
            e.inputs.len(),
            e.expected.len(),
            e.labels.len(),
            n_in,
            n_out
        );
        console::exit(code::BAD_MODEL);
    }
    let macs = graph.macs() as u64;
    println!(
        "graph {}: {} bytes, {} ops, {} tensors, input {}, output {}, rule {}, arena {} bytes, {} MACs",
        e.name,
        e.model.len(),
        graph.op_count(),
        graph.tensor_count(),
        graph.input().shape,
        graph.output().shape,
        graph.rule().name(),
        plan.len,
        macs
    );
    if !e.source.is_empty() {
        println!("inputs: {images} {}", e.source);
    }
    let cal = clock::calibrate();
    println!(
        "calibration: {}.{:03} instructions/tick",
        cal.milli_instructions_per_tick() / 1000,
        cal.milli_instructions_per_tick() % 1000
    );

    let mut correct = 0u64;
    let mut labels_correct = 0u64;
    let mut total_ticks = 0u64;
    for k in 0..images {
        let input = as_i8(&e.inputs[k * n_in..(k + 1) * n_in]);
        let expected = as_i8(&e.expected[k * n_out..(k + 1) * n_out]);
        let start = clock::ticks();
        let mut last = start;
        let result = graph.infer_observed(input, arena, &mut |op, _out| {
            let now = clock::ticks();
            op_ticks[op] += now - last;
            last = now;
        });
        total_ticks += clock::ticks() - start;
        let output = match result {
            Ok(o) => o,
            Err(err) => {
                println!("error: inference failed: {err}");
                console::exit(code::INFERENCE);
            }
        };
        if labelled && top_class(output) == e.labels[k] as usize {
            labels_correct += 1;
        }
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
    if labelled {
        println!(
            "accuracy: {labels_correct}/{images} = {}% (the host runtime: {}/{images})",
            Ratio(labels_correct * 100, n),
            e.host_correct
        );
    }
    println!("instructions per inference (mean over {images} inputs):");
    let mut op_sum = 0;
    for node in graph.nodes() {
        let instructions = cal.instructions(op_ticks[node.index]) / n;
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
        e.model.len(),
        e.inputs.len(),
        e.expected.len(),
        s.ram(),
        plan.len,
        stack,
        s.stack_room
    );
    println!(
        "RESULT model={} images={images} correct={correct} instructions={total} macs={macs} arena={} flash={} ram={} stack={stack}",
        e.name,
        plan.len,
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
