//! The portable kernels on a Cortex-M3 (no DSP extension; `thumbv7m-none-eabi` on QEMU's
//! `mps2-an385`): the seed model's self-test (every class and every int8 logit of 200 MNIST test
//! images identical to the host runtime's) and MLPerf Tiny's DS-CNN through the graph runner
//! (every output of the 16 golden inputs identical to Arm CMSIS-NN's, which the host runtime
//! also matches: `tflite/tests/golden.rs`). The firmware must say it ran the portable kernels
//! by design, not as a fallback.

use std::path::PathBuf;
use std::time::Duration;

use tinyconv_tests::{build_firmware_for, repo};
use tinyconv_trainer::firmware::{QEMU, run_qemu_on};

const TARGET: &str = "thumbv7m-none-eabi";
const MACHINE: &str = "mps2-an385";

fn require_qemu() {
    let found = std::process::Command::new(QEMU)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{QEMU} is not installed: `apt-get install qemu-system-arm`"
    );
}

fn result_line(out: &str) -> &str {
    out.lines()
        .rfind(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line:\n{out}"))
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn seed_model_self_test_on_a_cortex_m3() {
    require_qemu();
    let model = repo().join("models/mnist-cnn.tcm");
    let elf = build_firmware_for(
        Some(TARGET),
        "tinyconv-firmware",
        "m3-selftest",
        &[],
        &[("TINYCONV_MODEL", model.to_str().unwrap())],
    );
    let run = run_qemu_on(MACHINE, &elf, Duration::from_secs(1200)).unwrap();
    let out = &run.stdout;
    eprintln!(
        "{}",
        out.lines()
            .filter(|l| !l.starts_with("img "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(run.code, Some(0), "self-test failed:\n{out}");
    assert!(out.contains("on Cortex-M3"), "{out}");
    assert!(out.contains("no DSP extension"), "{out}");
    assert!(out.contains(" 0 mismatches"), "{out}");
    let line = result_line(out);
    assert!(field(line, "images") >= 100);
    assert_eq!(field(line, "correct"), field(line, "images"), "{line}");
}

#[test]
fn mlperf_kws_on_a_cortex_m3_matches_cmsis_nn() {
    require_qemu();
    let shared = repo().join("../shared/models/mlperf-tiny");
    let tflite = std::fs::read(shared.join("kws.int8.tflite")).unwrap();
    let spec = tinyconv_tflite::to_graph(&tinyconv_tflite::Model::parse(&tflite).unwrap()).unwrap();
    let dir: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("graph-qemu/kws-m3");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |file: &str, bytes: &[u8]| {
        let path = dir.join(file);
        if std::fs::read(&path).ok().as_deref() != Some(bytes) {
            std::fs::write(&path, bytes).unwrap();
        }
    };
    write("model.tcm", &spec.to_bytes().unwrap());
    write(
        "inputs.i8",
        &std::fs::read(shared.join("golden/kws.inputs.i8")).unwrap(),
    );
    write(
        "expected.i8",
        &std::fs::read(shared.join("golden/kws.outputs.cmsis-nn.i8")).unwrap(),
    );
    write("name", b"kws");
    let elf = build_firmware_for(
        Some(TARGET),
        "graph",
        "m3-kws",
        &[],
        &[("TINYCONV_GRAPH_DIR", dir.to_str().unwrap())],
    );
    let run = run_qemu_on(MACHINE, &elf, Duration::from_secs(1200)).unwrap();
    let out = &run.stdout;
    eprintln!("{out}");
    assert_eq!(run.code, Some(0), "graph runner failed:\n{out}");
    assert!(out.contains("on Cortex-M3"), "{out}");
    let line = result_line(out);
    assert_eq!(field(line, "images"), 16);
    assert_eq!(field(line, "correct"), 16, "{line}");
}
