//! Line-oriented output and exit: semihosting (QEMU, default) or RTT (`board-rtt`).
//!
//! Each `println!` formats into a fixed-capacity `heapless::String` on the stack and hands the
//! whole line to the host in one call (one semihosting trap a line). Over-long lines are cut.

use core::fmt::{self, Write};

/// Longest line printed; longer ones end in `...`.
pub const LINE_CAPACITY: usize = 320;

/// A line buffer that keeps what fits instead of failing.
pub struct Line {
    text: heapless::String<LINE_CAPACITY>,
    truncated: bool,
}

impl Line {
    pub const fn new() -> Self {
        Line {
            text: heapless::String::new(),
            truncated: false,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.text.push_str(s).is_err() {
            for c in s.chars() {
                if self.text.push(c).is_err() {
                    self.truncated = true;
                    break;
                }
            }
        }
        Ok(())
    }
}

macro_rules! println {
    () => {
        $crate::console::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::console::print_line(format_args!($($arg)*))
    };
}

/// Formats `args` and writes it with a newline.
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    let _ = line.write_fmt(args);
    if line.truncated {
        while line.text.len() > LINE_CAPACITY - 4 {
            line.text.pop();
        }
        let _ = line.text.push_str("...");
    }
    write_line(line.as_str());
}

/// Exit codes, also in `docs/firmware.md`.
#[allow(dead_code)] // each mode uses some
pub mod code {
    pub const OK: i32 = 0;
    /// Self-test: some class or logit differs from the host's.
    pub const MISMATCH: i32 = 1;
    /// The embedded model failed `Model::parse`.
    pub const BAD_MODEL: i32 = 2;
    /// Full evaluation: a data file could not be opened or read, or is not MNIST.
    pub const IO: i32 = 3;
    /// Inference returned an error.
    pub const INFERENCE: i32 = 4;
    /// Self-test or kernel check: a layer whose shape has a DSP kernel ran the portable kernel
    /// instead (the runtime's dispatch counters), or an inference took more instructions than
    /// the model's ceiling.
    pub const PERFORMANCE: i32 = 5;
    pub const PANIC: i32 = 101;
    pub const HARD_FAULT: i32 = 102;
}

#[cfg(not(feature = "board-rtt"))]
mod imp {
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// The semihosting handle of the host's stdout, opened on first use (0 = not yet).
    static STDOUT: AtomicUsize = AtomicUsize::new(0);

    pub fn init() {}

    pub fn write(bytes: &[u8]) {
        let mut fd = STDOUT.load(Ordering::Relaxed);
        if fd == 0 {
            // ":tt" opened for writing is the host's stdout.
            let name = b":tt\0";
            // SAFETY: SYS_OPEN with a NUL-terminated name, mode 4 ("w"), and its length.
            let handle = unsafe { cortex_m_semihosting::syscall!(OPEN, name.as_ptr(), 4, 3) };
            if handle as isize == -1 {
                return;
            }
            fd = handle + 1;
            STDOUT.store(fd, Ordering::Relaxed);
        }
        // SAFETY: SYS_WRITE of a live buffer to an open handle.
        let _ =
            unsafe { cortex_m_semihosting::syscall!(WRITE, fd - 1, bytes.as_ptr(), bytes.len()) };
    }

    /// SYS_EXIT_EXTENDED (0x20) with ADP_Stopped_ApplicationExit: QEMU exits with `code`.
    pub fn exit(code: i32) -> ! {
        let block = [0x20026usize, code as u32 as usize];
        // SAFETY: the parameter block lives across the call.
        unsafe { cortex_m_semihosting::syscall(0x20, &block) };
        // Not under a semihosting host that honours exits: stop here.
        loop {
            cortex_m::asm::wfi();
        }
    }
}

#[cfg(feature = "board-rtt")]
mod imp {
    pub fn init() {
        rtt_target::rtt_init_print!();
    }

    pub fn write(bytes: &[u8]) {
        if let Ok(s) = core::str::from_utf8(bytes) {
            rtt_target::rprint!("{}", s);
        }
    }

    /// Under a debugger (`probe-rs run`), SYS_EXIT_EXTENDED ends the session with `code`;
    /// without one, a semihosting call would fault, so the core just sleeps.
    pub fn exit(code: i32) -> ! {
        // DHCSR.C_DEBUGEN: a debugger has enabled halting debug.
        // SAFETY: DHCSR is a read-only-for-us debug register.
        let debugged = unsafe { core::ptr::read_volatile(0xE000_EDF0 as *const u32) } & 1 != 0;
        if debugged {
            let block = [0x20026usize, code as u32 as usize];
            // SAFETY: the parameter block lives across the call; a debugger is attached.
            unsafe { cortex_m_semihosting::syscall(0x20, &block) };
        }
        loop {
            cortex_m::asm::wfi();
        }
    }
}

pub fn init() {
    imp::init();
}

fn write_line(line: &str) {
    // One host call per line: copy into a buffer with the newline (stack, bounded).
    let mut buf = [0u8; LINE_CAPACITY + 1];
    let n = line.len();
    buf[..n].copy_from_slice(line.as_bytes());
    buf[n] = b'\n';
    imp::write(&buf[..=n]);
}

/// Ends the program with an exit code (QEMU's own exit code under semihosting).
pub fn exit(code: i32) -> ! {
    imp::exit(code)
}
