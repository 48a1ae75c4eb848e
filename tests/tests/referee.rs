//! The referee on the committed model: every engine on all 10,000 MNIST test images.
//!
//! - the int8 runtime and tract running `mnist-cnn.int8.onnx` (QLinearConv) agree on every
//!   int8 logit of every image;
//! - tract running `mnist-cnn.onnx` reaches exactly the float accuracy the trainer reported and
//!   its logits match burn's within `FLOAT_LOGIT_TOLERANCE`;
//! - the int8 accuracy through the runtime is what report.json says.

use std::path::PathBuf;

use tinyconv_trainer::commands::verify_command;
use tinyconv_trainer::referee::FLOAT_LOGIT_TOLERANCE;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist")
}

fn report() -> serde_json::Value {
    let text = std::fs::read_to_string(models().join("report.json"))
        .expect("models/report.json is committed");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_engine_agrees_on_the_full_test_set() {
    let v = verify_command(&models().join("mnist-cnn.tcm"), Some(&data()), None, None).unwrap();
    println!("{}", v.table());
    assert_eq!(v.images, 10_000);
    // int8: bit-exact.
    assert_eq!(
        v.int8_identical_images, 10_000,
        "runtime vs tract int8: {:?}",
        v.int8_abs_diff_histogram
    );
    assert_eq!(v.int8_abs_diff_histogram[1..], [0, 0, 0]);
    let engine = |name: &str| v.engines.iter().find(|e| e.engine == name).unwrap().clone();
    let (burn, tract_float, runtime, tract_int8) = (
        engine("burn float"),
        engine("tract float"),
        engine("runtime int8"),
        engine("tract int8"),
    );
    assert_eq!(tract_int8.agreement_with_runtime, 1.0);
    assert_eq!(tract_int8.correct, runtime.correct);
    // float: equal accuracy, logits within tolerance.
    assert_eq!(tract_float.correct, burn.correct);
    assert!(
        tract_float.max_logit_deviation <= FLOAT_LOGIT_TOLERANCE as f64,
        "{}",
        tract_float.max_logit_deviation
    );
    // The report written at training time says the same.
    let report = report();
    assert_eq!(burn.accuracy, report["float_accuracy"].as_f64().unwrap());
    assert_eq!(runtime.accuracy, report["int8_accuracy"].as_f64().unwrap());
    assert_eq!(
        v.runtime_logits_digest,
        report["verification"]["runtime_logits_digest"]
            .as_str()
            .unwrap()
    );
    assert!(v.problems().is_empty(), "{:?}", v.problems());
}

#[test]
fn committed_model_meets_the_accuracy_goals() {
    let report = report();
    let float = report["float_accuracy"].as_f64().unwrap();
    let int8 = report["int8_accuracy"].as_f64().unwrap();
    assert!(float >= 0.993, "float accuracy {float}");
    assert!(
        float - int8 <= 0.001 + 1e-12,
        "int8 loses {} pp",
        (float - int8) * 100.0
    );
}

fn tcm_bytes() -> Vec<u8> {
    std::fs::read(models().join("mnist-cnn.tcm")).unwrap()
}

/// The committed int8 ONNX file is exactly what the exporter writes for the committed `.tcm`
/// (read back into the quantizer's form, which writes the `.tcm` back byte for byte). Run with
/// `TINYCONV_WRITE_INT8_ONNX=1` to regenerate the file after an exporter change.
#[test]
fn the_int8_onnx_is_the_export_of_the_committed_tcm() {
    use tinyconv_trainer::quantize::QuantizedCnn;
    let tcm = tcm_bytes();
    let q = QuantizedCnn::from_model(&tinyconv::Model::parse(&tcm).unwrap()).unwrap();
    assert_eq!(q.to_spec().to_bytes().unwrap(), tcm, "the .tcm round trip");
    let onnx = tinyconv_trainer::onnx::int8_model(&q).unwrap();
    let path = models().join("mnist-cnn.int8.onnx");
    if std::env::var_os("TINYCONV_WRITE_INT8_ONNX").is_some() {
        std::fs::write(&path, &onnx).unwrap();
    }
    assert!(
        std::fs::read(&path).unwrap() == onnx,
        "{} is not the export of mnist-cnn.tcm; regenerate it with TINYCONV_WRITE_INT8_ONNX=1",
        path.display()
    );
}

/// The int8 ONNX quantizes the float pixels itself: tract's `QuantizeLinear` of every pixel
/// value p (fed p / 255 in f32, as the float model is) gives the runtime's code.
#[test]
fn tract_quantizes_every_pixel_value_as_the_runtime_does() {
    use tract_onnx::prelude::*;
    let tcm = tcm_bytes();
    let model = tinyconv::Model::parse(&tcm).unwrap();
    // Every value 0..=255 (three times, then 0..16) in one 28x28 image.
    let pixels: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
    let mut runtime = vec![0i8; 784];
    tinyconv::quantize_pixels(&model, &pixels, &mut runtime);
    let plan = tract_onnx::onnx()
        .model_for_path(models().join("mnist-cnn.int8.onnx"))
        .unwrap()
        .with_input_fact(
            0,
            InferenceFact::dt_shape(f32::datum_type(), [1, 1, 28, 28]),
        )
        .unwrap()
        .with_outputs_by_name([tinyconv_trainer::onnx::INT8_INPUT])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let input: Tensor = tract_ndarray::Array4::from_shape_vec((1, 1, 28, 28), input)
        .unwrap()
        .into();
    let out = plan.run(tvec!(input.into())).unwrap();
    let tract: Vec<i8> = out[0]
        .to_plain_array_view::<i8>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(tract, runtime);
    // With the input scale 1/255 and zero point -128 both are p - 128.
    assert!(
        runtime
            .iter()
            .zip(&pixels)
            .all(|(&q, &p)| q as i32 == p as i32 - 128)
    );
}

/// tract's optimized int8 plan runs integer matrix products (i32 accumulators) for all five
/// layers and no float convolution or matrix product: the int8 cross-check is not a float
/// computation in disguise.
#[test]
fn tract_runs_the_int8_model_with_integer_matmuls() {
    use tract_onnx::prelude::*;
    let plan = tract_onnx::onnx()
        .model_for_path(models().join("mnist-cnn.int8.onnx"))
        .unwrap()
        .with_input_fact(
            0,
            InferenceFact::dt_shape(f32::datum_type(), [1, 1, 28, 28]),
        )
        .unwrap()
        .into_optimized()
        .unwrap();
    let mut integer = 0;
    for node in plan.nodes() {
        let name = node.op.name();
        let output = node.outputs[0].fact.datum_type;
        if name.contains("Conv") || name.contains("MatMul") && !name.contains("Pack") {
            println!("{} {name} -> {output:?}", node.name);
            assert!(
                name == "OptMatMul" && output == i32::datum_type(),
                "{} is {name} with output {output:?}",
                node.name
            );
            integer += 1;
        }
    }
    assert_eq!(integer, 5, "one integer matmul per layer");
}

/// A copy of the committed model files in a fresh directory.
fn copy_models(name: &str, files: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinyconv-referee-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in files {
        std::fs::copy(models().join(f), dir.join(f)).unwrap();
    }
    dir
}

const MODEL_FILES: [&str; 4] = [
    "mnist-cnn.tcm",
    "mnist-cnn.onnx",
    "mnist-cnn.int8.onnx",
    "model_float.bpk",
];

/// The negative control: one conv1 weight changed in the `.tcm` (CRC recomputed, so the file
/// still parses) and `verify` reports that tract and the runtime disagree.
#[test]
fn verify_fails_when_one_weight_of_the_tcm_changes() {
    use tinyconv::format::{CHECKSUM_LEN, HEADER_LEN, checksum, read_u32_le, record};
    let dir = copy_models("weight", &MODEL_FILES);
    let path = dir.join("mnist-cnn.tcm");
    let mut tcm = tcm_bytes();
    // conv1 is layer 0: its first weight (output channel 0, tap (0, 0)).
    let at = read_u32_le(&tcm, HEADER_LEN + record::WEIGHTS_OFFSET) as usize;
    let w = tcm[at] as i8;
    tcm[at] = (if w > 0 { w - 100 } else { w + 100 }) as u8;
    let body = tcm.len() - CHECKSUM_LEN;
    let crc = checksum(&tcm[..body]);
    tcm[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &tcm).unwrap();
    let v = verify_command(&path, Some(&data()), Some(500), None).unwrap();
    println!("{}", v.table());
    let problems = v.problems();
    println!("{problems:?}");
    assert!(v.int8_identical_images < 500);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("int8 runtime and tract differ on")),
        "{problems:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `verify` with the int8 ONNX file missing beside the model fails at once, naming the file.
#[test]
fn verify_names_a_missing_onnx_file() {
    let dir = copy_models("missing", &MODEL_FILES[..2]);
    std::fs::copy(
        models().join("model_float.bpk"),
        dir.join("model_float.bpk"),
    )
    .unwrap();
    let err =
        verify_command(&dir.join("mnist-cnn.tcm"), Some(&data()), Some(10), None).unwrap_err();
    let message = format!("{err:#}");
    println!("{message}");
    assert!(
        message.contains(&dir.join("mnist-cnn.int8.onnx").display().to_string()),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
