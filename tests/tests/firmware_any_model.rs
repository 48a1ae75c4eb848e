//! `TINYCONV_MODEL=path/to/model.tcm cargo run --release` in `firmware/` runs any model that
//! fits the board, in QEMU (netduinoplus2, Cortex-M4F):
//!
//! * a foreign v2 model (the committed Keras CNN quantized by TFLite, imported to take raw
//!   pixels) on MNIST test images (`TINYCONV_DATA`): every output value identical to the host
//!   runtime's, and the firmware's accuracy against the labels equal to the host's;
//! * an int8 ONNX model quantized by onnxruntime (QDQ: the Keras residual net with depthwise,
//!   an add, a requantizing global average pool), imported with its own quantization, on MNIST
//!   test images: every output identical to the host's, accuracy equal;
//! * models trained from a spec, on their own datasets, are `spec_presets.rs`'s;
//! * a residual v2 graph from the writer, on seeded random inputs: every output identical;
//! * negative controls: a graph whose arena exceeds the 128 KiB of RAM and one whose weights
//!   exceed the 1 MiB of flash fail to build, with a message naming what they need and what the
//!   board has.
//!
//! v1 models through the same command are `firmware_qemu.rs`'s self-test.

use std::path::PathBuf;
use std::process::Command;

use tinyconv::Shape;
use tinyconv::graph::{Graph, Rule};
use tinyconv::testing::{GraphBuilder, residual_graph};
use tinyconv_tests::repo;

#[path = "common/graph_firmware.rs"]
mod graph_firmware;
use graph_firmware::{host_accuracy_is_the_firmwares, model_file, run_identical};

fn mnist_dir() -> PathBuf {
    repo().join("../shared/data/mnist")
}

/// The committed Keras CNN, quantized by TFLite, imported to take raw pixels in 0..1.
fn keras_cnn_on_pixels() -> Vec<u8> {
    let tflite = std::fs::read(repo().join("tests/data/foreign/keras_cnn.int8.tflite")).unwrap();
    let model = tinyconv_tflite::Model::parse(&tflite).unwrap();
    let mut spec = tinyconv_tflite::import(&model).unwrap().spec;
    spec.pixel_scale = Some(1.0 / 255.0);
    spec.to_bytes().unwrap()
}

#[test]
fn imported_keras_cnn_on_mnist_matches_host_in_qemu() {
    let bytes = keras_cnn_on_pixels();
    let images = 50;
    let out = run_identical(
        "keras_cnn",
        &bytes,
        &[
            ("TINYCONV_DATA", mnist_dir().to_str().unwrap()),
            ("TINYCONV_SELFTEST_IMAGES", "50"),
        ],
    );
    assert!(
        out.contains("inputs: 50 test images of the idx dataset"),
        "{out}"
    );
    host_accuracy_is_the_firmwares(&bytes, &mnist_dir(), images, &out);
}

#[test]
fn imported_int8_onnx_residual_net_on_mnist_matches_host_in_qemu() {
    let onnx = std::fs::read(repo().join("tests/data/foreign/keras_resnet.qdq.onnx")).unwrap();
    let mut spec = tinyconv_trainer::onnx_import::read_onnx(&onnx)
        .unwrap()
        .quantized
        .expect("an int8 model");
    spec.pixel_scale = Some(1.0 / 255.0);
    let bytes = spec.to_bytes().unwrap();
    let out = run_identical(
        "keras_resnet_qdq",
        &bytes,
        &[
            ("TINYCONV_DATA", mnist_dir().to_str().unwrap()),
            ("TINYCONV_SELFTEST_IMAGES", "20"),
        ],
    );
    assert!(out.contains("inputs: 20 test images"), "{out}");
    host_accuracy_is_the_firmwares(&bytes, &mnist_dir(), 20, &out);
}

/// The negative control of the test above: the same model with a dataset of another class
/// count (3 classes of real MNIST images in an image folder) does not build, and says why.
#[test]
fn dataset_with_other_classes_than_the_model_fails_to_build() {
    let bytes = keras_cnn_on_pixels();
    let mnist = tinyconv_datasets::load(&mnist_dir(), &Default::default()).unwrap();
    let three = |split: &tinyconv_datasets::Split, n: usize| {
        let mut out = tinyconv_datasets::Split::empty((28, 28, 1), 3);
        for i in (0..split.len()).filter(|&i| split.labels[i] < 3).take(n) {
            out.push(split.image(i), split.labels[i]);
        }
        out
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("three-digits");
    let ds = tinyconv_datasets::Dataset {
        classes: vec!["0".into(), "1".into(), "2".into()],
        train: three(&mnist.train, 6),
        test: three(&mnist.test, 6),
        ..mnist
    };
    tinyconv_datasets::write_image_folder(&ds, &dir, None).unwrap();
    let err = build_fails_on("keras_cnn", &bytes, dir.to_str().unwrap());
    let expected = format!(
        "has 10 outputs but the folder dataset in {} has 3 classes",
        dir.display()
    );
    assert!(err.contains(&expected), "expected `{expected}`:\n{err}");
}

#[test]
fn residual_graph_on_random_inputs_matches_host_in_qemu() {
    let bytes = residual_graph(21).to_bytes().unwrap();
    let out = run_identical("residual21", &bytes, &[("TINYCONV_DATA", "")]);
    assert!(out.contains("seeded random int8 inputs"), "{out}");
}

/// Builds the default binary for `model` (on random inputs), expecting the build to fail;
/// returns cargo's stderr.
fn build_fails(name: &str, model: &[u8]) -> String {
    build_fails_on(name, model, "")
}

/// [`build_fails`] with `TINYCONV_DATA=data`.
fn build_fails_on(name: &str, model: &[u8], data: &str) -> String {
    let path = model_file(name, model);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let _guard = tinyconv_tests::firmware_build_lock();
    let output = Command::new(cargo)
        .current_dir(repo().join("firmware"))
        .args(["build", "--release", "--bin", "tinyconv-firmware"])
        .env("TINYCONV_MODEL", &path)
        .env("TINYCONV_DATA", data)
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
