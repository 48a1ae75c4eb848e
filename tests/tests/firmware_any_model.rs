//! `TINYCONV_MODEL=path/to/model.tcm cargo run --release` in `firmware/` runs any model that
//! fits the board, in QEMU (netduinoplus2, Cortex-M4F):
//!
//! * a foreign v2 model (the committed Keras CNN quantized by TFLite, imported to take raw
//!   pixels) on MNIST test images (`TINYCONV_DATA`): every output value identical to the host
//!   runtime's, and the firmware's accuracy against the labels equal to the host's;
//! * a residual v2 graph from the writer, on seeded random inputs: every output identical;
//! * negative controls: a graph whose arena exceeds the 128 KiB of RAM and one whose weights
//!   exceed the 1 MiB of flash fail to build, with a message naming what they need and what the
//!   board has.
//!
//! v1 models through the same command are `firmware_qemu.rs`'s self-test.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tinyconv::Shape;
use tinyconv::graph::{Graph, Rule};
use tinyconv::testing::{GraphBuilder, residual_graph};
use tinyconv_tests::{build_firmware_bin, repo};
use tinyconv_trainer::firmware::run_qemu;

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo().join("target"),
    }
}

/// Writes `bytes` to `target/firmware-any-model/NAME.tcm` (only on change, so an unchanged model
/// does not rebuild the firmware).
fn model_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = target_dir().join("firmware-any-model");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.tcm"));
    if std::fs::read(&path).ok().as_deref() != Some(bytes) {
        std::fs::write(&path, bytes).unwrap();
    }
    path
}

/// Fields of the `RESULT model=...` line.
fn result(out: &str) -> std::collections::BTreeMap<String, String> {
    let line = out
        .lines()
        .rfind(|l| l.starts_with("RESULT model="))
        .unwrap_or_else(|| panic!("no RESULT line:\n{out}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Builds the default binary for `model` and runs it; checks that every output matched.
fn run_identical(name: &str, model: &[u8], envs: &[(&str, &str)]) -> String {
    let path = model_file(name, model);
    let mut all = vec![("TINYCONV_MODEL", path.to_str().unwrap())];
    all.extend_from_slice(envs);
    let elf = build_firmware_bin("tinyconv-firmware", name, &[], &all);
    let out = run_qemu(&elf, Duration::from_secs(600)).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{}", out.stdout);
    let r = result(&out.stdout);
    let graph = Graph::parse(model).unwrap();
    assert_eq!(out.code, Some(0), "{name}: exit code\n{}", out.stdout);
    assert_eq!(r["model"], name);
    assert!(r["images"].parse::<usize>().unwrap() > 0);
    assert_eq!(
        r["correct"], r["images"],
        "{name}: outputs identical to the host's"
    );
    assert_eq!(r["arena"], graph.arena_len().to_string());
    assert_eq!(r["macs"], graph.macs().to_string());
    out.stdout
}

fn mnist_dir() -> PathBuf {
    repo().join("../shared/data/mnist")
}

#[test]
fn imported_keras_cnn_on_mnist_matches_host_in_qemu() {
    let tflite = std::fs::read(repo().join("tests/data/foreign/keras_cnn.int8.tflite")).unwrap();
    let model = tinyconv_tflite::Model::parse(&tflite).unwrap();
    let mut spec = tinyconv_tflite::import(&model).unwrap().spec;
    spec.pixel_scale = Some(1.0 / 255.0);
    let bytes = spec.to_bytes().unwrap();
    let images = 50;
    let out = run_identical(
        "keras_cnn",
        &bytes,
        &[
            ("TINYCONV_DATA", mnist_dir().to_str().unwrap()),
            ("TINYCONV_SELFTEST_IMAGES", "50"),
        ],
    );
    assert!(out.contains("inputs: 50 MNIST test images"), "{out}");

    // The host runtime's accuracy on the same images, computed here from the IDX files.
    let graph = Graph::parse(&bytes).unwrap();
    let read = |name: &str| {
        let file = std::fs::File::open(mnist_dir().join(format!("{name}.gz"))).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(file), &mut bytes).unwrap();
        bytes
    };
    let (pixels, labels) = (
        read("t10k-images-idx3-ubyte"),
        read("t10k-labels-idx1-ubyte"),
    );
    let mut arena = vec![0i8; graph.arena_len()];
    let mut correct = 0;
    for k in 0..images {
        let y = graph
            .infer_pixels(&pixels[16 + k * 784..16 + (k + 1) * 784], &mut arena)
            .unwrap();
        let top = (0..y.len()).fold(0, |b, i| if y[i] > y[b] { i } else { b });
        correct += (top == labels[8 + k] as usize) as usize;
    }
    let line = format!("accuracy: {correct}/{images} ");
    assert!(out.contains(&line), "expected `{line}`:\n{out}");
}

#[test]
fn residual_graph_on_random_inputs_matches_host_in_qemu() {
    let bytes = residual_graph(21).to_bytes().unwrap();
    let out = run_identical("residual21", &bytes, &[("TINYCONV_DATA", "")]);
    assert!(out.contains("seeded random int8 inputs"), "{out}");
}

/// Builds the default binary for `model`, expecting the build to fail; returns cargo's stderr.
fn build_fails(name: &str, model: &[u8]) -> String {
    let path = model_file(name, model);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo().join("firmware"))
        .args(["build", "--release", "--bin", "tinyconv-firmware"])
        .env("TINYCONV_MODEL", &path)
        .env("TINYCONV_DATA", "")
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{name} built:\n{stderr}");
    stderr
}

#[test]
fn model_whose_arena_exceeds_ram_fails_to_build() {
    // A 3x3 conv on a 128x128x8 input: 131,072 bytes of input alone.
    let mut b = GraphBuilder::new(3, Rule::Tflite);
    let x = b.tensor(Shape::new(128, 128, 8), 0.05);
    let y = b.conv(x, 4, (3, 3), 2, true, false);
    let bytes = b.finish(x, y).to_bytes().unwrap();
    let arena = Graph::parse(&bytes).unwrap().arena_len();
    assert!(arena > 128 * 1024);
    let err = build_fails("big_arena", &bytes);
    assert!(
        err.contains("does not fit the netduinoplus2 (STM32F405) board"),
        "{err}"
    );
    assert!(err.contains("RAM: needs"), "{err}");
    assert!(
        err.contains("the board has 131,072 bytes (128 KiB)"),
        "{err}"
    );
    let arena = format!("arena {}", group(arena));
    assert!(err.contains(&arena), "expected `{arena}`:\n{err}");
    assert!(!err.contains("flash: needs"), "{err}");
}

#[test]
fn model_whose_weights_exceed_flash_fails_to_build() {
    // A dense layer of 1,100 x 1,000 int8 weights: 1.1 MB.
    let mut b = GraphBuilder::new(4, Rule::Tflite);
    let x = b.tensor(Shape::new(1, 1, 1100), 0.05);
    let y = b.dense(x, 1000);
    let bytes = b.finish(x, y).to_bytes().unwrap();
    assert!(bytes.len() > 1024 * 1024);
    let err = build_fails("big_weights", &bytes);
    assert!(
        err.contains("does not fit the netduinoplus2 (STM32F405) board"),
        "{err}"
    );
    assert!(err.contains("flash: needs"), "{err}");
    assert!(
        err.contains("the board has 1,048,576 bytes (1024 KiB)"),
        "{err}"
    );
    let model = format!("model {}", group(bytes.len()));
    assert!(err.contains(&model), "expected `{model}`:\n{err}");
    assert!(!err.contains("RAM: needs"), "{err}");
}

/// `1234567` as `1,234,567`.
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
