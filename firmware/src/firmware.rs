//! Boot, model validation, timing and the final report, shared by both modes.

use cortex_m_rt::{ExceptionFrame, entry, exception};
use tinyconv::{Layer, Model, Observer};

use crate::clock::{self, Calibration};
use crate::console::{self, code};
use crate::memory;

/// Wraps the model bytes so that they start on a 16-byte boundary in flash, like the blobs
/// inside a model file (`tinyconv::format::DATA_ALIGN`).
#[repr(C, align(16))]
pub struct Aligned<T: ?Sized>(pub T);

/// The model file, embedded at build time (see build.rs: `$TINYCONV_MODEL` or
/// `models/mnist-cnn.tcm`).
static MODEL_FILE: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("TINYCONV_MODEL_FILE")));

/// Activation arena size, computed at compile time from the model's layer table: the smallest
/// plan (lean kernels), or with the `speed-plan` feature the plan that runs every kernel at
/// full speed (see `tinyconv::plan`).
pub const ARENA_LEN: usize = tinyconv::required_arena_len_for(
    include_bytes!(env!("TINYCONV_MODEL_FILE")),
    if cfg!(feature = "speed-plan") {
        tinyconv::Mode::Speed
    } else {
        tinyconv::Mode::Memory
    },
);

/// What a tick converts to: instructions in QEMU (`-icount shift=0`); on a real board SysTick
/// counts core clock cycles and they are reported as they are.
pub const UNIT: &str = if cfg!(feature = "board-rtt") {
    "cycles"
} else {
    "instructions"
};

/// Appended to a message saying the DSP kernels did not run, when the runtime was built without
/// them.
#[cfg(not(feature = "full-eval"))]
pub const PORTABLE_HINT: &str = if tinyconv::kernels::DSP_KERNELS {
    ""
} else {
    " (this runtime was built without its DSP kernels: TINYCONV_PORTABLE=1, see runtime/build.rs)"
};

/// Raw pixels per image (MNIST).
pub const PIXELS: usize = 28 * 28;

/// The model's bytes in flash.
pub fn model_bytes() -> &'static [u8] {
    &MODEL_FILE.0
}

/// Per-layer tick sums over all inferences, filled in through the runtime's [`Observer`] hooks.
pub struct LayerTimer {
    started: u64,
    pub ticks: [u64; tinyconv::format::MAX_LAYERS],
}

impl LayerTimer {
    pub const fn new() -> Self {
        LayerTimer {
            started: 0,
            ticks: [0; tinyconv::format::MAX_LAYERS],
        }
    }
}

impl Observer for LayerTimer {
    #[inline(always)]
    fn layer_started(&mut self, _index: usize, _layer: &Layer<'_>) {
        self.started = clock::ticks();
    }

    #[inline(always)]
    fn layer_finished(&mut self, index: usize, _layer: &Layer<'_>, _output: &[i8]) {
        self.ticks[index] += clock::ticks() - self.started;
    }
}

/// Timing over a run: whole `infer_observed` calls and per layer.
pub struct Stats {
    pub images: u64,
    pub correct: u64,
    /// Ticks of whole inference calls (pixel quantization, layers, argmax, observer hooks).
    pub infer_ticks: u64,
    pub layers: LayerTimer,
}

impl Stats {
    pub const fn new() -> Self {
        Stats {
            images: 0,
            correct: 0,
            infer_ticks: 0,
            layers: LayerTimer::new(),
        }
    }

    /// Runs one inference, timing it; returns the prediction or exits on an error.
    pub fn infer<'a>(
        &mut self,
        model: &Model<'_>,
        pixels: &[u8],
        arena: &'a mut [i8],
    ) -> tinyconv::Prediction<'a> {
        let start = clock::ticks();
        let result = model.infer_observed(pixels, arena, &mut self.layers);
        self.infer_ticks += clock::ticks() - start;
        self.images += 1;
        match result {
            Ok(p) => p,
            Err(e) => {
                println!("error: inference failed: {e}");
                console::exit(code::INFERENCE)
            }
        }
    }
}

/// Total multiply-accumulates of one inference.
pub fn model_macs(model: &Model<'_>) -> u64 {
    model.layers().map(|l| l.macs() as u64).sum()
}

/// Prints `x / y` with two decimals, integer-only.
pub struct Ratio(pub u64, pub u64);

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.1 == 0 {
            return write!(f, "-");
        }
        let hundredths = (self.0 as u128 * 100 + self.1 as u128 / 2) / self.1 as u128;
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

fn print_model(model: &Model<'_>) {
    println!(
        "model: {} bytes at {:#010x}, {} layers, input {}, {} classes, arena {} bytes (plans: memory {}, speed {}), {} MACs",
        model.bytes().len(),
        model.bytes().as_ptr() as usize,
        model.layer_count(),
        model.input_shape(),
        model.classes(),
        ARENA_LEN,
        model.arena_len_for(tinyconv::Mode::Memory),
        model.arena_len_for(tinyconv::Mode::Speed),
        model_macs(model)
    );
    for (i, layer) in model.layers().enumerate() {
        println!(
            "  layer {i}: {:<9} {} -> {} k={} relu={} pool={} macs={}",
            layer.op.name(),
            layer.input,
            layer.output,
            layer.kernel,
            layer.relu as u8,
            layer.fused_pool as u8,
            layer.macs()
        );
    }
}

/// Prints per-layer and total instruction counts, memory figures and the RESULT line.
pub fn report(model: &Model<'_>, stats: &Stats, cal: &Calibration) {
    let n = stats.images.max(1);
    let macs = model_macs(model);
    println!("{UNIT} per inference (mean over {} images):", stats.images);
    let mut layer_sum = 0;
    for (i, layer) in model.layers().enumerate() {
        let instructions = cal.instructions(stats.layers.ticks[i]) / n;
        layer_sum += instructions;
        println!(
            "  layer {i}: {:<9} {:>10} {UNIT} {:>9} MACs {:>6} {UNIT}/MAC",
            layer.op.name(),
            instructions,
            layer.macs(),
            Ratio(instructions, layer.macs() as u64)
        );
    }
    let total = cal.instructions(stats.infer_ticks) / n;
    println!(
        "  other    : {:>10} {UNIT} (pixel quantization, argmax, timing hooks)",
        total.saturating_sub(layer_sum)
    );
    println!(
        "  total    : {:>10} {UNIT} {:>9} MACs {:>6} {UNIT}/MAC",
        total,
        macs,
        Ratio(total, macs)
    );
    let s = memory::sections();
    let stack = memory::stack_high_water();
    println!(
        "memory: flash {} bytes (text {} + rodata {} incl. model {} + data {}), ram {} bytes \
         (data {} + bss {} incl. arena {} + uninit {}), stack high-water {} of {} bytes",
        s.flash(),
        s.text,
        s.rodata,
        model.bytes().len(),
        s.data,
        s.ram(),
        s.data,
        s.bss,
        ARENA_LEN,
        s.uninit,
        stack,
        s.stack_room
    );
    println!(
        "RESULT images={} correct={} instructions={} macs={} flash={} ram={} stack={}",
        stats.images,
        stats.correct,
        total,
        macs,
        s.flash(),
        s.ram(),
        stack
    );
}

#[entry]
fn main() -> ! {
    // `static mut` in the entry function: cortex-m-rt turns it into a `&'static mut`, placed in
    // .bss (no heap, no stack).
    static mut ARENA: [i8; ARENA_LEN] = [0; ARENA_LEN];

    console::init();
    let peripherals = cortex_m::Peripherals::take().unwrap();
    clock::start(peripherals.SYST);
    println!(
        "tinyconv firmware {} ({} mode) on {}, text at {:#010x}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(feature = "full-eval") {
            "full-eval"
        } else if cfg!(feature = "kernel-check") {
            "kernel-check"
        } else {
            "self-test"
        },
        if cfg!(tinyconv_no_dsp_target) {
            "Cortex-M3"
        } else {
            "Cortex-M4F"
        },
        memory::text_start()
    );

    assert!(
        (model_bytes().as_ptr() as usize).is_multiple_of(16),
        "the model is not 16-byte aligned in flash"
    );
    let model = match Model::parse(model_bytes()) {
        Ok(model) => model,
        Err(e) => {
            println!("error: the embedded model is invalid: {e}");
            println!("error: {e:?}");
            console::exit(code::BAD_MODEL);
        }
    };
    print_model(&model);

    let cal = clock::calibrate();
    #[cfg(feature = "board-rtt")]
    println!(
        "calibration: {} iterations x {} instructions took {} SysTick ticks (core clock cycles): \
         {}.{:03} instructions/cycle; empty measurement {} ticks; figures below are cycles",
        cal.iterations,
        clock::SPIN_INSTRUCTIONS,
        cal.ticks,
        cal.milli_instructions_per_tick() / 1000,
        cal.milli_instructions_per_tick() % 1000,
        cal.overhead_ticks
    );
    #[cfg(not(feature = "board-rtt"))]
    println!(
        "calibration: {} iterations x {} instructions = {} instructions took {} SysTick ticks: \
         {}.{:03} instructions/tick (QEMU -icount shift=0 with a 168 MHz SysTick: 5.952); \
         empty measurement {} ticks",
        cal.iterations,
        clock::SPIN_INSTRUCTIONS,
        cal.instructions,
        cal.ticks,
        cal.milli_instructions_per_tick() / 1000,
        cal.milli_instructions_per_tick() % 1000,
        cal.overhead_ticks
    );

    // kernel-check: the kernels on random shapes first, then the self-test as usual.
    #[cfg(feature = "kernel-check")]
    let kernels = crate::kernelcheck::run();
    #[cfg(not(feature = "kernel-check"))]
    let kernels = code::OK;
    #[cfg(not(feature = "full-eval"))]
    let code = crate::selftest::run(&model, ARENA, &cal);
    #[cfg(feature = "full-eval")]
    let code = crate::eval::run(&model, ARENA, &cal);
    console::exit(if kernels == code::OK { code } else { kernels })
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
