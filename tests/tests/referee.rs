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
