//! Support for the referee's tests: building the firmware for QEMU.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

/// One firmware build at a time within a test binary (they share `target/`).
static BUILD: Mutex<()> = Mutex::new(());

/// Holds the firmware build lock of this test binary: for a test that runs its own `cargo
/// build` in `firmware/` (one expected to fail, say), so that it does not replace the ELF another
/// test has just built before that test copied it.
pub fn firmware_build_lock() -> std::sync::MutexGuard<'static, ()> {
    BUILD.lock().unwrap_or_else(|e| e.into_inner())
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// Builds the firmware (`cargo build --release` in `firmware/`, with `features` and the build
/// environment `envs`) and returns a private copy of the ELF named `name`, so that later builds
/// with other settings do not replace it.
pub fn build_firmware(name: &str, features: &[&str], envs: &[(&str, &str)]) -> PathBuf {
    build_firmware_bin("tinyconv-firmware", name, features, envs)
}

/// [`build_firmware`] of the firmware program `bin` (`tinyconv-firmware`, or `graph`: the
/// graph runner of `firmware/src/bin/graph.rs`).
pub fn build_firmware_bin(
    bin: &str,
    name: &str,
    features: &[&str],
    envs: &[(&str, &str)],
) -> PathBuf {
    build_firmware_for(None, bin, name, features, envs)
}

/// [`build_firmware_bin`] for `target` (`None`: firmware/.cargo/config.toml's, the Cortex-M4F;
/// `Some("thumbv7m-none-eabi")`: the Cortex-M3 with the portable kernels).
pub fn build_firmware_for(
    target: Option<&str>,
    bin: &str,
    name: &str,
    features: &[&str],
    envs: &[(&str, &str)],
) -> PathBuf {
    let _guard = firmware_build_lock();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo().join("firmware"))
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
            "--bin",
            bin,
        ])
        .stderr(Stdio::inherit());
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    if let Some(target) = target {
        cmd.args(["--target", target]);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let output = cmd.output().expect("run cargo");
    assert!(
        output.status.success(),
        "building the firmware ({name}) failed: {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let exe = stdout
        .lines()
        .filter(|l| {
            l.contains("\"reason\":\"compiler-artifact\"")
                && l.contains("tinyconv-firmware")
                && l.contains(&format!("\"name\":\"{bin}\""))
        })
        .find_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .expect("cargo reported no firmware executable");
    let copy = exe.with_file_name(format!("{bin}-{name}.elf"));
    std::fs::copy(&exe, &copy).expect("copy the firmware ELF");
    eprintln!("built {} in {:.0?}", copy.display(), started.elapsed());
    copy
}
