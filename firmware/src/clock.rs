//! A 64-bit tick counter from SysTick, calibrated in instructions.
//!
//! SysTick runs from the core clock (CLKSOURCE = 1). QEMU's netduinoplus2 feeds the STM32F405
//! SoC a fixed 168 MHz SYSCLK, and the armv7m SysTick's "cpuclk" input is that SYSCLK (its
//! "refclk" is SYSCLK/8). With `-icount shift=0` the virtual clock advances exactly 1 ns per
//! executed instruction, so one tick is 1e9/168e6 = 5.952 instructions. [`calibrate`] measures
//! that ratio instead of assuming it, with a loop of a known instruction count. On real
//! hardware ticks are core clock cycles, and the same calibration gives cycles per loop.
//!
//! The 24-bit counter wraps every 2^24 ticks (~100 M instructions); the SysTick exception
//! counts wraps, so [`ticks`] is monotonic for ~2^56 ticks.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

const RELOAD: u32 = 0x00ff_ffff;

static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Starts SysTick free-running on the core clock with the wrap exception enabled.
pub fn start(mut syst: SYST) {
    syst.disable_counter();
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Ticks since [`start`].
#[inline(never)]
pub fn ticks() -> u64 {
    loop {
        let wraps = WRAPS.load(Ordering::Acquire);
        let value = SYST::get_current();
        // A wrap whose exception has not been taken yet shows as a pending SysTick and a
        // counter that has just been reloaded.
        let pending = SCB::is_pendst_pending();
        if WRAPS.load(Ordering::Acquire) != wraps {
            continue;
        }
        let wraps = wraps as u64 + (pending && value > RELOAD / 2) as u64;
        return wraps * (RELOAD as u64 + 1) + (RELOAD - value) as u64;
    }
}

/// Runs exactly `4 * iterations` instructions (2 `nop`, `subs`, `bne`), `iterations >= 1`.
#[inline(never)]
pub fn spin(iterations: u32) {
    // SAFETY: a register-only countdown loop.
    unsafe {
        core::arch::asm!(
            "2:",
            "nop",
            "nop",
            "subs {n}, {n}, #1",
            "bne 2b",
            n = inout(reg) iterations => _,
            options(nomem, nostack),
        );
    }
}

/// Instructions per loop iteration of [`spin`].
pub const SPIN_INSTRUCTIONS: u64 = 4;

/// The measured ratio between instructions (or cycles) and ticks.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    /// Loop iterations of the difference measurement.
    pub iterations: u64,
    /// Instructions the difference executes: `SPIN_INSTRUCTIONS * iterations`.
    pub instructions: u64,
    /// Ticks they took.
    pub ticks: u64,
    /// Ticks of an empty measurement (two `ticks()` calls back to back).
    pub overhead_ticks: u64,
}

impl Calibration {
    /// Converts ticks to instructions, rounding to nearest (on a board: ticks are cycles and
    /// are returned as they are).
    pub fn instructions(&self, ticks: u64) -> u64 {
        if cfg!(feature = "board-rtt") {
            return ticks;
        }
        self.convert(ticks)
    }

    /// Instructions per tick, times 1000 (for printing without floats).
    pub fn milli_instructions_per_tick(&self) -> u64 {
        self.convert(1000)
    }

    fn convert(&self, ticks: u64) -> u64 {
        ((ticks as u128 * self.instructions as u128 + self.ticks as u128 / 2) / self.ticks as u128)
            as u64
    }
}

fn time_spin(iterations: u32) -> u64 {
    let start = ticks();
    spin(iterations);
    ticks() - start
}

/// Measures instructions per tick from the difference of two loop lengths, which cancels the
/// call and measurement overhead.
pub fn calibrate() -> Calibration {
    const SHORT: u32 = 100_000;
    const LONG: u32 = 2_100_000;
    // Warm up (QEMU translates the loop once).
    time_spin(SHORT);
    let short = time_spin(SHORT);
    let long = time_spin(LONG);
    let start = ticks();
    let overhead_ticks = ticks() - start;
    let iterations = (LONG - SHORT) as u64;
    Calibration {
        iterations,
        instructions: iterations * SPIN_INSTRUCTIONS,
        ticks: (long - short).max(1),
        overhead_ticks,
    }
}
