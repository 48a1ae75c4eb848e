//! The board the firmware is linked for, and whether a program fits it.
//!
//! The flash and RAM sizes are read from the board's memory file (the `MEMORY` block that
//! cortex-m-rt's `link.x` includes), so the check and the linker use the same figures.
//! `build.rs` counts what it embeds exactly (model, self-test data, arena) and adds measured
//! reserves for what it cannot know before linking (code, stack); the linker has the last word:
//! it refuses a `.text`/`.rodata` that overflows the flash region, and the `ASSERT` appended
//! to `memory.x` ([`stack_assert`]) refuses statics that leave less than the stack reserve.

use std::fmt::Write as _;
use std::path::Path;

/// A board: its name for messages and its memory, from its memory file.
pub struct Board {
    /// E.g. `netduinoplus2 (STM32F405)`.
    pub name: &'static str,
    /// The memory file in `firmware/`.
    pub memory_file: &'static str,
    pub flash: usize,
    pub ram: usize,
}

/// What one program needs: named parts of flash and of RAM, in bytes.
pub struct Footprint {
    /// The program and its model, e.g. `the graph self-test of ../target/m.tcm`.
    pub what: String,
    pub flash: Vec<(String, usize)>,
    pub ram: Vec<(String, usize)>,
    /// Bytes of RAM the stack needs (also one of `ram`): the linker checks it against what the
    /// statics leave.
    pub stack: usize,
}

/// The board for a target triple: Arm's MPS2 AN385 (QEMU `mps2-an385`) for the Cortex-M3,
/// the STM32F405 (QEMU `netduinoplus2`) otherwise.
pub fn for_target(target: &str, manifest: &Path) -> Result<Board, String> {
    let (name, memory_file) = if target.starts_with("thumbv7m-") {
        ("mps2-an385 (Cortex-M3)", "memory-mps2-an385.x")
    } else {
        ("netduinoplus2 (STM32F405)", "memory.x")
    };
    let path = manifest.join(memory_file);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let length = |region: &str| {
        region_length(&text, region).ok_or_else(|| {
            format!(
                "{}: no `{region} : ORIGIN = ..., LENGTH = N[K|M]` line in its MEMORY block",
                path.display()
            )
        })
    };
    Ok(Board {
        name,
        memory_file,
        flash: length("FLASH")?,
        ram: length("RAM")?,
    })
}

/// `LENGTH = 1024K` of a `NAME : ORIGIN = ..., LENGTH = ...` line, in bytes.
fn region_length(text: &str, region: &str) -> Option<usize> {
    let line = text.lines().find(|l| {
        l.split(':')
            .next()
            .is_some_and(|name| name.trim() == region)
    })?;
    let value = line
        .split("LENGTH")
        .nth(1)?
        .trim_start()
        .strip_prefix('=')?;
    let value = value.trim().trim_end_matches([',', ';']);
    let (digits, unit) = match value.as_bytes().last()? {
        b'K' | b'k' => (&value[..value.len() - 1], 1024),
        b'M' | b'm' => (&value[..value.len() - 1], 1024 * 1024),
        _ => (value, 1),
    };
    digits.trim().parse::<usize>().ok().map(|n| n * unit)
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn parts(parts: &[(String, usize)]) -> String {
    let list: Vec<String> = parts
        .iter()
        .map(|(name, n)| format!("{name} {}", grouped(*n)))
        .collect();
    list.join(" + ")
}

/// `Err` with a message naming, for each memory that is too small, what the program needs
/// (and of what) against what the board has.
pub fn check(board: &Board, footprint: &Footprint) -> Result<(), String> {
    let mut problems = String::new();
    for (memory, need, have) in [
        ("flash", &footprint.flash, board.flash),
        ("RAM", &footprint.ram, board.ram),
    ] {
        let total: usize = need.iter().map(|(_, n)| n).sum();
        if total > have {
            writeln!(
                problems,
                "       {memory}: needs {} bytes ({}), the board has {} bytes ({} KiB): {} bytes too many",
                grouped(total),
                parts(need),
                grouped(have),
                have / 1024,
                grouped(total - have)
            )
            .unwrap();
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} does not fit the {} board (firmware/{}):\n{problems}       \
         Use a smaller model (fewer or narrower layers: `tinyconv inspect` shows each op's \
         weights and the arena), fewer self-test inputs (TINYCONV_SELFTEST_IMAGES=N), or a \
         board with more memory (docs/adding-a-board.md).",
        footprint.what, board.name, board.memory_file
    ))
}

/// Linker-script lines, appended to `memory.x`, that refuse statics leaving less than `stack`
/// bytes of RAM for the stack (`_stack_end` .. `_stack_start`, cortex-m-rt's symbols).
pub fn stack_assert(board: &Board, stack: usize) -> String {
    format!(
        "\n/* Added by firmware/build.rs: the stack the firmware needs (its measured high-water \
         mark and a margin). */\n\
         ASSERT(_stack_start - _stack_end >= {stack}, \"tinyconv: the statics (arena included) \
         leave less than {stack} bytes of the {} KiB RAM of {} for the stack: use a model with \
         a smaller arena (firmware/build.rs, docs/firmware.md)\");\n",
        board.ram / 1024,
        board.name
    )
}
