//! The firmware as the referee's fifth engine: `tinyconv verify --firmware ELF` runs a
//! full-eval build of the firmware (docs/firmware.md) in QEMU, which streams the MNIST test
//! set through semihosting, and compares what the chip computed with the host runtime.
//!
//! The firmware prints its accuracy and an FNV-1a 32 digest of every int8 logit of every image
//! (`digest fnv1a32=0x... over N images x 10 logits`) and the `RESULT` line; equal digests mean
//! the chip's logits are the runtime's, bit for bit.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The emulator and its arguments: the runner of `firmware/.cargo/config.toml`.
pub const QEMU: &str = "qemu-system-arm";
pub const QEMU_ARGS: &[&str] = &[
    "-machine",
    "netduinoplus2",
    "-nographic",
    "-icount",
    "shift=0",
    "-semihosting-config",
    "enable=on,target=native",
];

/// Why the firmware could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error(
        "{QEMU} could not be started ({0}): install it (Debian/Ubuntu: `apt-get install \
         qemu-system-arm`; macOS: `brew install qemu`)"
    )]
    NoQemu(std::io::Error),
    #[error("{} is not a file: build it with `cd firmware && cargo build --release --features full-eval`", .0.display())]
    NoElf(PathBuf),
    #[error("the firmware did not finish within {0:?}; its output so far:\n{1}")]
    Timeout(Duration, String),
    #[error(
        "the firmware's output has no `{0}` line — is it a full-eval build \
         (`--features full-eval`)? Its output:\n{1}"
    )]
    Output(&'static str, String),
}

/// What a full-eval run printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FirmwareRun {
    pub images: usize,
    pub correct: usize,
    /// FNV-1a 32 over the int8 logits of all images, in order.
    pub digest: u32,
    /// Mean instructions per inference (QEMU `-icount shift=0`).
    pub instructions: u64,
    /// The `RESULT` line, verbatim.
    pub result_line: String,
}

/// The firmware's row of `tinyconv verify`.
#[derive(Clone, Debug, Serialize)]
pub struct FirmwareCheck {
    pub elf: PathBuf,
    pub run: FirmwareRun,
    pub accuracy: f64,
    /// The host runtime's digest over the same images.
    pub runtime_digest: String,
    /// Whether every int8 logit of every image equals the runtime's (equal digests).
    pub identical_to_runtime: bool,
    pub seconds: f64,
}

/// What QEMU printed and how the firmware ended.
#[derive(Clone, Debug)]
pub struct QemuOutput {
    /// The firmware's exit code (semihosting exit), if it exited normally.
    pub code: Option<i32>,
    pub stdout: String,
    pub seconds: f64,
}

/// Boots `elf` in QEMU and collects its output until it exits (or `timeout`).
pub fn run_qemu(elf: &Path, timeout: Duration) -> Result<QemuOutput, FirmwareError> {
    run_qemu_on("netduinoplus2", elf, timeout)
}

/// [`run_qemu`] on another QEMU machine: `mps2-an385` is the Cortex-M3 of the portable-kernel
/// check (`thumbv7m-none-eabi` builds; runner in `firmware/.cargo/config.toml`).
pub fn run_qemu_on(
    machine: &str,
    elf: &Path,
    timeout: Duration,
) -> Result<QemuOutput, FirmwareError> {
    if !elf.is_file() {
        return Err(FirmwareError::NoElf(elf.to_path_buf()));
    }
    let started = Instant::now();
    let args = QEMU_ARGS
        .iter()
        .map(|&a| if a == "netduinoplus2" { machine } else { a });
    let mut child = Command::new(QEMU)
        .args(args)
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(FirmwareError::NoQemu)?;
    let mut pipe = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().map_err(FirmwareError::NoQemu)? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let out = reader.join().unwrap_or_default();
            return Err(FirmwareError::Timeout(timeout, out));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(QemuOutput {
        code: status.code(),
        stdout: reader.join().unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs a full-eval `elf` in QEMU and parses its report.
pub fn run(elf: &Path, timeout: Duration) -> Result<(FirmwareRun, f64), FirmwareError> {
    if elf.is_file() {
        eprintln!("running {} in QEMU ...", elf.display());
    }
    let out = run_qemu(elf, timeout)?;
    Ok((parse(&out.stdout)?, out.seconds))
}

/// Reads the `RESULT` and `digest` lines of a full-eval run's output.
pub fn parse(out: &str) -> Result<FirmwareRun, FirmwareError> {
    let missing = |what| FirmwareError::Output(what, out.to_string());
    let result_line = out
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .ok_or_else(|| missing("RESULT"))?;
    let field = |name: &str| -> Option<u64> {
        result_line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    };
    let (images, correct, instructions) =
        match (field("images"), field("correct"), field("instructions")) {
            (Some(i), Some(c), Some(n)) => (i as usize, c as usize, n),
            _ => return Err(missing("RESULT images=.. correct=.. instructions=..")),
        };
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("digest fnv1a32=0x"))
        .and_then(|rest| u32::from_str_radix(rest.split_whitespace().next()?, 16).ok())
        .ok_or_else(|| missing("digest fnv1a32=0x..."))?;
    Ok(FirmwareRun {
        images,
        correct,
        digest,
        instructions,
        result_line: result_line.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "tinyconv firmware 0.1.0 (full-eval mode) on Cortex-M4F\n\
        full-eval: 300/300 images, 298 correct, 9036610 instructions/inference so far\n\
        accuracy 298/300 = 99.33%\n\
        digest fnv1a32=0x896ba74f over 300 images x 10 logits\n\
        RESULT images=300 correct=298 instructions=9036610 macs=8002696 flash=939532 ram=24340 stack=2912\n";

    #[test]
    fn parses_a_full_eval_report() {
        let run = parse(OUTPUT).unwrap();
        assert_eq!(
            (run.images, run.correct, run.digest, run.instructions),
            (300, 298, 0x896b_a74f, 9_036_610)
        );
        assert!(run.result_line.ends_with("stack=2912"));
    }

    #[test]
    fn a_self_test_build_is_named_as_the_wrong_kind() {
        let self_test = OUTPUT.replace(
            "digest fnv1a32=0x896ba74f over 300 images x 10 logits\n",
            "",
        );
        let err = parse(&self_test).unwrap_err().to_string();
        assert!(err.contains("digest") && err.contains("full-eval"), "{err}");
        let err = parse("panic: boom\n").unwrap_err().to_string();
        assert!(err.contains("RESULT"), "{err}");
    }

    #[test]
    fn a_missing_elf_says_how_to_build_one() {
        let err = run(Path::new("/nonexistent/fw.elf"), Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cargo build --release --features full-eval"),
            "{err}"
        );
    }
}
