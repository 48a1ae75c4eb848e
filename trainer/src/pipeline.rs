//! What happens to a trained float model: calibrate and quantize it, export the runtime's model
//! file and both ONNX forms, evaluate the int8 model through the runtime, cross-check every
//! engine, and write `report.json`.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::artifacts::atomic_write;
use crate::data::Mnist;
use crate::evaluate::{Accuracy, run_runtime};
use crate::quantize::{ActivationScales, QuantizedCnn, Ranges, calibrate};
use crate::referee::{ModelFiles, Verification, verify};
use crate::train::{EpochMetrics, PhaseSeconds, TrainConfig, TrainOutcome};
use crate::{onnx, plots};

pub const REPORT_JSON: &str = "report.json";
pub const CONFUSION_INT8_PNG: &str = "confusion_int8.png";

/// Sizes of what was exported.
#[derive(Clone, Debug, Serialize)]
pub struct Sizes {
    pub params: usize,
    pub macs: usize,
    pub tcm_bytes: usize,
    pub float_onnx_bytes: usize,
    pub int8_onnx_bytes: usize,
    /// Activation arena the runtime needs (bytes).
    pub arena_bytes: usize,
}

/// `report.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The command line that produced this report.
    pub command: String,
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub training_images: usize,
    pub calibration_images: usize,
    pub calibration_method: &'static str,
    /// How the activation scales were chosen (`power-of-two` or `free`, see
    /// `quantize::ActivationScales`).
    pub activation_scales: ActivationScales,
    pub test_images: usize,
    pub float_accuracy: f64,
    pub int8_accuracy: f64,
    /// Float minus int8, in percentage points.
    pub quantization_loss_pp: f64,
    pub float_per_class_accuracy: Vec<f64>,
    pub int8_per_class_accuracy: Vec<f64>,
    pub int8_confusion: Vec<Vec<u32>>,
    pub history: Vec<EpochMetrics>,
    /// Seconds per phase, summed over the epochs this process ran (empty when it only resumed
    /// a finished run to re-export it).
    pub phase_seconds_total: PhaseSeconds,
    /// Mean wall-clock seconds of an epoch over the whole history.
    pub seconds_per_epoch: f64,
    /// The epoch this process resumed from (0: trained from scratch).
    pub resumed_from: usize,
    pub calibration_ranges: Ranges,
    pub sizes: Sizes,
    pub verification: Verification,
}

/// Quantizes, exports, evaluates, verifies and reports. Called by `tinyconv train` once float
/// training has finished (the float model, metrics, plots and checkpoint are already written).
/// Activation scales are powers of two ([`ActivationScales::PowerOfTwo`], what the committed
/// model was made with); [`after_training_with_scales`] takes the choice.
pub fn after_training(
    outcome: &TrainOutcome,
    config: &TrainConfig,
    data: &Mnist,
) -> anyhow::Result<()> {
    after_training_with_scales(outcome, config, data, ActivationScales::PowerOfTwo)
}

/// [`after_training`] with the calibrator's activation scales chosen by `scales`. Free scales
/// are exported folded to power-of-two tensor scales ([`QuantizedCnn::fold_to_pow2`]), which
/// tract checks bit for bit as it does power-of-two ones.
pub fn after_training_with_scales(
    outcome: &TrainOutcome,
    config: &TrainConfig,
    data: &Mnist,
    scales: ActivationScales,
) -> anyhow::Result<()> {
    let out = &config.out_dir;
    let device = burn::tensor::Device::flex();
    let training_images = config
        .limit
        .unwrap_or(data.train.len())
        .min(data.train.len());
    let train = data.train.truncated(training_images);
    let calibration_images = config.calibration.clamp(1, train.len());

    println!(
        "\ncalibrating on {calibration_images} training images (min/max) and quantizing to int8"
    );
    let ranges = calibrate(&outcome.model, &train, calibration_images, &device);
    let quantized = QuantizedCnn::for_export(&outcome.model, &ranges, scales);
    let tcm = quantized
        .to_spec()
        .to_bytes()
        .context("the quantized model does not form a valid .tcm")?;
    let float_onnx = onnx::float_model(&outcome.model);
    let int8_onnx = onnx::int8_model(&quantized)?;
    let files = ModelFiles::beside(&out.join(ModelFiles::TCM));
    for (path, bytes) in [
        (&files.tcm, &tcm),
        (&files.float_onnx, &float_onnx),
        (&files.int8_onnx, &int8_onnx),
    ] {
        atomic_write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "wrote {} ({} bytes), {} and {}",
        files.tcm.display(),
        tcm.len(),
        files.float_onnx.display(),
        files.int8_onnx.display()
    );

    let model = tinyconv::Model::parse(&tcm)?;
    println!(
        "evaluating the int8 model through the runtime on {} test images",
        data.test.len()
    );
    let int8 = Accuracy::new(
        &run_runtime(&model, &data.test).classes,
        &data.test.labels,
        model.classes(),
    );
    // Validation runs on the test set, so the final model's confusion is the test confusion.
    let float = Accuracy::from_confusion(outcome.confusion.clone());
    plots::confusion_matrix(
        &int8.confusion,
        &data.class_names(),
        "int8 model (tinyconv runtime), MNIST test set",
        &out.join(CONFUSION_INT8_PNG),
    )?;

    println!("cross-checking burn, tract and the runtime on the test set");
    let verification = verify(&outcome.model, &files, &tcm, &data.test)?;
    print!("{}", verification.table());

    let phase_total = outcome.phase_total();
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed: config.seed,
        epochs: config.epochs,
        batch_size: config.batch_size,
        learning_rate: config.lr,
        training_images,
        calibration_images,
        calibration_method: "min/max of each activation tensor over the calibration images",
        activation_scales: scales,
        test_images: data.test.len(),
        float_accuracy: float.accuracy,
        int8_accuracy: int8.accuracy,
        quantization_loss_pp: (float.accuracy - int8.accuracy) * 100.0,
        float_per_class_accuracy: float.per_class,
        int8_per_class_accuracy: int8.per_class,
        int8_confusion: int8.confusion,
        history: outcome.history.clone(),
        seconds_per_epoch: outcome.history.iter().map(|m| m.seconds).sum::<f64>()
            / outcome.history.len().max(1) as f64,
        resumed_from: outcome.resumed_from,
        phase_seconds_total: phase_total,
        calibration_ranges: ranges,
        sizes: Sizes {
            params: model.layers().map(|l| l.params()).sum(),
            macs: model.layers().map(|l| l.macs()).sum(),
            tcm_bytes: tcm.len(),
            float_onnx_bytes: float_onnx.len(),
            int8_onnx_bytes: int8_onnx.len(),
            arena_bytes: model.arena_len(),
        },
        verification,
    };
    write_report(&out.join(REPORT_JSON), &report)?;
    println!(
        "\nfloat accuracy {:.2}%, int8 accuracy {:.2}% (through the runtime), loss {:.2} pp; wrote {}",
        report.float_accuracy * 100.0,
        report.int8_accuracy * 100.0,
        report.quantization_loss_pp,
        out.join(REPORT_JSON).display()
    );
    let problems = report.verification.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "cross-check failed: {}",
        problems.join("; ")
    );
    Ok(())
}

pub fn write_report(path: &Path, report: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(report)?;
    atomic_write(path, &json).with_context(|| format!("writing {}", path.display()))
}
