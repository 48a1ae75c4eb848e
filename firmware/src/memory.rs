//! Memory figures from the linker script's symbols and the stack paint.
//!
//! cortex-m-rt's `paint-stack` feature fills everything between the end of `.bss`/`.uninit`
//! (`_stack_end`) and the initial stack pointer (`_stack_start`, the end of RAM) with
//! `0xCCCC_CCCC` before `main`; the deepest word no longer holding the paint is the stack's
//! high-water mark.

use core::ptr::{addr_of, read_volatile};

unsafe extern "C" {
    static __vector_table: u32;
    static __stext: u32;
    static __etext: u32;
    static __srodata: u32;
    static __erodata: u32;
    static __sdata: u32;
    static __edata: u32;
    static __sbss: u32;
    static __ebss: u32;
    static __suninit: u32;
    static __euninit: u32;
    static _stack_end: u32;
    static _stack_start: u32;
}

const PAINT: u32 = 0xcccc_cccc;

fn addr(symbol: *const u32) -> usize {
    symbol as usize
}

/// Section sizes in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Sections {
    /// Vector table and code.
    pub text: usize,
    /// Constants, including the embedded model and test data.
    pub rodata: usize,
    /// Initialized statics (their initial values also occupy flash).
    pub data: usize,
    /// Zeroed statics, including the activation arena.
    pub bss: usize,
    /// Statics left uninitialized.
    pub uninit: usize,
    /// Bytes between the end of the statics and the top of RAM: the stack's room.
    pub stack_room: usize,
}

impl Sections {
    /// Flash used: vector table + .text + .rodata + the .data initializers.
    pub fn flash(&self) -> usize {
        self.text + self.rodata + self.data
    }

    /// RAM used by statics: .data + .bss (+ .uninit).
    pub fn ram(&self) -> usize {
        self.data + self.bss + self.uninit
    }
}

pub fn sections() -> Sections {
    // Only the addresses of the linker symbols are taken, never their contents.
    Sections {
        text: addr(addr_of!(__etext)) - addr(addr_of!(__vector_table)),
        rodata: addr(addr_of!(__erodata)) - addr(addr_of!(__srodata)),
        data: addr(addr_of!(__edata)) - addr(addr_of!(__sdata)),
        bss: addr(addr_of!(__ebss)) - addr(addr_of!(__sbss)),
        uninit: addr(addr_of!(__euninit)) - addr(addr_of!(__suninit)),
        stack_room: addr(addr_of!(_stack_start)) - addr(addr_of!(_stack_end)),
    }
}

/// The start of `.text`, for the record (the vector table sits before it).
pub fn text_start() -> usize {
    addr(addr_of!(__stext))
}

/// The deepest the stack has reached since reset, in bytes below the initial stack pointer.
pub fn stack_high_water() -> usize {
    // SAFETY: the range lies in RAM between the statics and the top of the stack; words are
    // read with volatile loads as the compiler knows nothing of the paint.
    let bottom = addr(addr_of!(_stack_end));
    let top = addr(addr_of!(_stack_start));
    let mut p = bottom;
    while p < top && unsafe { read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}
