//! The burn-import round trip: `tests/build.rs` generates burn code from the committed
//! `models/mnist-cnn.onnx` with burn-import (burn-onnx's `ModelGen`) at build time. That
//! generated model — a second, independent reading of the ONNX export — must give the trainer's
//! float logits on all 10,000 MNIST test images.

use std::path::PathBuf;

use burn::tensor::Device;
use tinyconv_trainer::data;
use tinyconv_trainer::model::input_tensor;
use tinyconv_trainer::referee::{argmax_rows, burn_logits};
use tinyconv_trainer::train::{FLOAT_MODEL, load_float_model};

#[allow(clippy::all, dead_code, unused)]
mod imported {
    include!(concat!(env!("OUT_DIR"), "/burn_import/mnist-cnn.rs"));
}

/// Largest |logit difference| accepted between the imported model and the trainer's. Both run
/// on burn's flex backend, but the export's Gemm and the trainer's Linear may sum in another
/// order: float32 rounding at logits of magnitude ~20 is ~1e-6 per operation.
const IMPORT_LOGIT_TOLERANCE: f32 = 1e-4;
const BATCH: usize = 1000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn burn_import_reads_the_onnx_export_back_to_the_trainers_logits() {
    let device = Device::flex();
    let mnist = data::load(&repo().join("../shared/data/mnist")).expect("MNIST test set");
    let test = &mnist.test;

    let trained = load_float_model(&repo().join("models").join(FLOAT_MODEL), &device)
        .expect("models/model_float.bpk is committed");
    let expected = burn_logits(&trained, test);

    let bpk = PathBuf::from(env!("OUT_DIR")).join("burn_import/mnist-cnn.bpk");
    let imported = imported::Model::from_file(&bpk, &device);
    let mut actual = Vec::with_capacity(expected.len());
    for start in (0..test.len()).step_by(BATCH) {
        let end = (start + BATCH).min(test.len());
        let x = input_tensor(
            &test.images[start * data::IMAGE_PIXELS..end * data::IMAGE_PIXELS],
            &device,
        );
        actual.extend(imported.forward(x).try_into_vec_as::<f32>().unwrap());
    }

    assert_eq!(actual.len(), expected.len());
    let max_deviation = actual
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    println!(
        "burn-import vs trainer: max |Δlogit| = {max_deviation:e} over {} images",
        test.len()
    );
    assert!(
        max_deviation <= IMPORT_LOGIT_TOLERANCE,
        "imported model deviates by {max_deviation}"
    );
    let (predicted, reference) = (argmax_rows(&actual), argmax_rows(&expected));
    assert_eq!(predicted, reference, "top-1 classes differ");
    let correct = predicted
        .iter()
        .zip(&test.labels)
        .filter(|(p, l)| p == l)
        .count();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("models/report.json")).unwrap())
            .unwrap();
    assert_eq!(
        correct as f64 / test.len() as f64,
        report["float_accuracy"].as_f64().unwrap(),
        "the imported model's accuracy is not the trainer's float accuracy"
    );
}
