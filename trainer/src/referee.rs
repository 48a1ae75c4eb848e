//! The referee: the same model through independent engines on the same images.
//!
//! - burn (the float model that was trained),
//! - tract on `mnist-cnn.onnx` (float),
//! - the tinyconv runtime on `mnist-cnn.tcm` (int8),
//! - tract on `mnist-cnn.int8.onnx` (int8 QLinearConv), fed the same float pixels as the float
//!   model and quantizing them itself (`QuantizeLinear`), so the runtime's pixel quantization
//!   is checked as well as its layers.
//!
//! Float engines must agree within a stated tolerance; the two int8 engines implement the same
//! ONNX semantics and must agree on every logit.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use tract_onnx::prelude::*;

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES, Split};
use crate::evaluate::{Accuracy, RuntimeOutputs, logits_digest, run_runtime};
use crate::model::{Cnn, input_tensor};

/// Largest |tract − burn| float logit difference we accept: both compute in f32, in different
/// orders (im2col + different GEMM blockings), so they differ by rounding only.
pub const FLOAT_LOGIT_TOLERANCE: f32 = 1e-3;
/// Images per tract/burn batch.
const BATCH: usize = 500;

/// The files of an exported model, found beside the `.tcm`.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    pub tcm: PathBuf,
    pub float_onnx: PathBuf,
    pub int8_onnx: PathBuf,
    pub float_weights: PathBuf,
}

impl ModelFiles {
    pub const TCM: &'static str = "mnist-cnn.tcm";
    pub const FLOAT_ONNX: &'static str = "mnist-cnn.onnx";
    pub const INT8_ONNX: &'static str = "mnist-cnn.int8.onnx";

    /// `dir/mnist-cnn.onnx` etc. for a `.tcm` at `dir/NAME.tcm`.
    pub fn beside(tcm: &Path) -> Self {
        let dir = tcm.parent().unwrap_or(Path::new("."));
        ModelFiles {
            tcm: tcm.to_path_buf(),
            float_onnx: dir.join(Self::FLOAT_ONNX),
            int8_onnx: dir.join(Self::INT8_ONNX),
            float_weights: dir.join(crate::train::FLOAT_MODEL),
        }
    }

    /// Fails, naming the first missing file, unless every file the referee reads exists.
    pub fn check_exist(&self) -> anyhow::Result<()> {
        for (path, what) in [
            (&self.tcm, "the int8 model file"),
            (&self.float_weights, "the float weights"),
            (&self.float_onnx, "the float ONNX model"),
            (&self.int8_onnx, "the int8 ONNX model"),
        ] {
            anyhow::ensure!(
                path.is_file(),
                "{what} {} is missing: verify reads {}, {}, {} and {} from the model's \
                 directory (tinyconv train writes them together)",
                path.display(),
                Self::TCM,
                crate::train::FLOAT_MODEL,
                Self::FLOAT_ONNX,
                Self::INT8_ONNX
            );
        }
        Ok(())
    }
}

/// One engine's result.
#[derive(Clone, Debug, Serialize)]
pub struct EngineReport {
    pub engine: &'static str,
    pub accuracy: f64,
    pub correct: usize,
    /// Share of images whose class equals the int8 runtime's.
    pub agreement_with_runtime: f64,
    /// Largest |logit − reference logit|: for float engines against burn (real units), for
    /// int8 engines against the runtime (int8 steps).
    pub max_logit_deviation: f64,
    /// What `max_logit_deviation` is measured against.
    pub deviation_reference: &'static str,
}

/// Everything `tinyconv verify` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub images: usize,
    pub engines: Vec<EngineReport>,
    /// Images whose int8 logits are identical, element for element, between runtime and tract.
    pub int8_identical_images: usize,
    /// `int8_abs_diff_histogram[d]` = number of int8 logits differing by `d` steps (last bucket:
    /// `>= len-1`).
    pub int8_abs_diff_histogram: [usize; 4],
    /// Images whose float argmax differs between burn and tract.
    pub float_class_disagreements: usize,
    /// FNV-1a 32 over the runtime's int8 logits of all images, in order (the firmware prints
    /// the same digest).
    pub runtime_logits_digest: String,
    pub float_logit_tolerance: f32,
    /// The firmware in QEMU (`verify --firmware ELF`), when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<crate::firmware::FirmwareCheck>,
}

impl Verification {
    /// The checks this report must pass: int8 engines identical on every logit, float engines
    /// within tolerance and with equal accuracy.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(f) = &self.firmware
            && !f.identical_to_runtime
        {
            p.push(format!(
                "the firmware's logits differ from the runtime's on its {} images (digest {:#010x} \
                 vs {}): was {} built with TINYCONV_MODEL set to this model?",
                f.run.images,
                f.run.digest,
                f.runtime_digest,
                f.elf.display()
            ));
        }
        if self.int8_identical_images != self.images {
            p.push(format!(
                "int8 runtime and tract differ on {} of {} images",
                self.images - self.int8_identical_images,
                self.images
            ));
        }
        if let Some(tract) = self.engines.iter().find(|e| e.engine == "tract float") {
            if tract.max_logit_deviation > self.float_logit_tolerance as f64 {
                p.push(format!(
                    "tract float logits deviate from burn by {:.2e} (> {:.0e})",
                    tract.max_logit_deviation, self.float_logit_tolerance
                ));
            }
            let burn = &self.engines[0];
            if tract.correct != burn.correct {
                p.push(format!(
                    "float accuracy differs: burn {} vs tract {} correct",
                    burn.correct, tract.correct
                ));
            }
        }
        p
    }

    /// A table for people.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<14} {:>9} {:>12} {:>20}  {}\n",
            "engine", "accuracy", "agree (rt)", "max logit deviation", "measured against"
        );
        for e in &self.engines {
            s.push_str(&format!(
                "{:<14} {:>8.2}% {:>11.2}% {:>20} {}\n",
                e.engine,
                e.accuracy * 100.0,
                e.agreement_with_runtime * 100.0,
                if e.deviation_reference.contains("int8") {
                    format!("{}", e.max_logit_deviation)
                } else {
                    format!("{:.2e}", e.max_logit_deviation)
                },
                e.deviation_reference
            ));
        }
        if let Some(f) = &self.firmware {
            s.push_str(&format!(
                "{:<14} {:>8.2}% {:>12} {:>20} {}\n",
                "firmware int8",
                f.accuracy * 100.0,
                if f.identical_to_runtime {
                    "100.00%"
                } else {
                    "differs"
                },
                if f.identical_to_runtime { "0" } else { "?" },
                format_args!(
                    "runtime int8 logits (digest, first {} images; QEMU, {} instructions/image)",
                    f.run.images, f.run.instructions
                )
            ));
        }
        s.push_str(&format!(
            "int8 logits identical (runtime vs tract): {}/{} images; |diff| histogram in steps [0,1,2,>=3]: {:?}\n",
            self.int8_identical_images, self.images, self.int8_abs_diff_histogram
        ));
        s.push_str(&format!(
            "runtime logits digest (FNV-1a 32): {}\n",
            self.runtime_logits_digest
        ));
        s
    }
}

/// Loads an ONNX file into a runnable tract plan for batches of `batch` images.
pub fn tract_plan(
    path: &Path,
    datum: DatumType,
    batch: usize,
) -> anyhow::Result<std::sync::Arc<TypedRunnableModel>> {
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .with_context(|| format!("tract cannot read {}", path.display()))?
        .with_input_fact(
            0,
            InferenceFact::dt_shape(datum, [batch, 1, IMAGE_SIDE, IMAGE_SIDE]),
        )?
        .into_optimized()?
        .into_runnable()?;
    Ok(model)
}

/// Runs a plan over `n` images in batches, `input(range)` giving each batch's tensor.
fn run_batched<T: Datum + Copy>(
    path: &Path,
    datum: DatumType,
    n: usize,
    input: impl Fn(std::ops::Range<usize>) -> Tensor,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(n * NUM_CLASSES);
    let mut plans: Vec<(usize, std::sync::Arc<TypedRunnableModel>)> = Vec::new();
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let size = end - start;
        if !plans.iter().any(|(b, _)| *b == size) {
            plans.push((size, tract_plan(path, datum, size)?));
        }
        let plan = &plans
            .iter()
            .find(|(b, _)| *b == size)
            .expect("just added")
            .1;
        let result = plan.run(tvec!(input(start..end).into()))?;
        let view = result[0].to_plain_array_view::<T>()?;
        if view.len() != size * NUM_CLASSES {
            anyhow::bail!(
                "{}: unexpected output shape {:?}",
                path.display(),
                view.shape()
            );
        }
        out.extend(view.iter().copied());
    }
    Ok(out)
}

/// The float model's input for images `r` of `split`: `[n, 1, 28, 28]`, pixel / 255 in f32.
pub fn float_pixels(split: &Split, r: std::ops::Range<usize>) -> Tensor {
    let pixels: Vec<f32> = split.images[r.start * IMAGE_PIXELS..r.end * IMAGE_PIXELS]
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    tract_ndarray::Array4::from_shape_vec((r.len(), 1, IMAGE_SIDE, IMAGE_SIDE), pixels)
        .expect("shape")
        .into()
}

/// tract's float logits for `split`.
pub fn tract_float_logits(onnx: &Path, split: &Split) -> anyhow::Result<Vec<f32>> {
    run_batched::<f32>(onnx, f32::datum_type(), split.len(), |r| {
        float_pixels(split, r)
    })
}

/// tract's int8 logits for `split`. The int8 model takes the float model's input and quantizes
/// it with its own `QuantizeLinear`: nothing the runtime computes goes into tract.
pub fn tract_int8_logits(onnx: &Path, split: &Split) -> anyhow::Result<Vec<i8>> {
    run_batched::<i8>(onnx, f32::datum_type(), split.len(), |r| {
        float_pixels(split, r)
    })
}

/// burn's float logits for `split` (evaluation mode).
pub fn burn_logits(cnn: &Cnn, split: &Split) -> Vec<f32> {
    let device = burn::tensor::Device::flex();
    let cnn = burn::module::Module::valid(cnn);
    let mut out = Vec::with_capacity(split.len() * NUM_CLASSES);
    for start in (0..split.len()).step_by(BATCH) {
        let end = (start + BATCH).min(split.len());
        let x = input_tensor(
            &split.images[start * IMAGE_PIXELS..end * IMAGE_PIXELS],
            &device,
        );
        out.extend(
            cnn.forward(x)
                .try_into_vec_as::<f32>()
                .expect("logits read back"),
        );
    }
    out
}

/// Index of the largest value in each row of `NUM_CLASSES` (first on ties).
pub fn argmax_rows<T: PartialOrd + Copy>(logits: &[T]) -> Vec<u8> {
    logits
        .chunks(NUM_CLASSES)
        .map(|row| crate::evaluate::argmax(row) as u8)
        .collect()
}

fn agreement(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// Runs every engine on `split` and compares them.
pub fn verify(
    cnn: &Cnn,
    files: &ModelFiles,
    tcm: &[u8],
    split: &Split,
) -> anyhow::Result<Verification> {
    let model = tinyconv::Model::parse(tcm).with_context(|| format!("{}", files.tcm.display()))?;
    files.check_exist()?;
    let runtime: RuntimeOutputs = run_runtime(&model, split);
    let burn = burn_logits(cnn, split);
    let tract_float = tract_float_logits(&files.float_onnx, split)?;
    let tract_int8 = tract_int8_logits(&files.int8_onnx, split)?;

    let labels = &split.labels;
    let classes = [
        argmax_rows(&burn),
        argmax_rows(&tract_float),
        runtime.classes.clone(),
        argmax_rows(&tract_int8),
    ];
    let float_dev = burn
        .iter()
        .zip(&tract_float)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let mut histogram = [0usize; 4];
    let mut identical = 0;
    for (a, b) in runtime
        .logits
        .chunks(NUM_CLASSES)
        .zip(tract_int8.chunks(NUM_CLASSES))
    {
        identical += (a == b) as usize;
        for (x, y) in a.iter().zip(b) {
            histogram[((*x as i32 - *y as i32).unsigned_abs() as usize).min(3)] += 1;
        }
    }
    let int8_dev = runtime
        .logits
        .iter()
        .zip(&tract_int8)
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap_or(0);
    let report = |engine, i: usize, dev: f64, reference| {
        let acc = Accuracy::new(&classes[i], labels, NUM_CLASSES);
        EngineReport {
            engine,
            accuracy: acc.accuracy,
            correct: acc.correct,
            agreement_with_runtime: agreement(&classes[i], &classes[2]),
            max_logit_deviation: dev,
            deviation_reference: reference,
        }
    };
    Ok(Verification {
        images: split.len(),
        engines: vec![
            report("burn float", 0, 0.0, "burn (itself)"),
            report("tract float", 1, float_dev as f64, "burn float logits"),
            report("runtime int8", 2, 0.0, "runtime int8 (itself)"),
            report("tract int8", 3, int8_dev as f64, "runtime int8 logits"),
        ],
        int8_identical_images: identical,
        int8_abs_diff_histogram: histogram,
        float_class_disagreements: classes[0]
            .iter()
            .zip(&classes[1])
            .filter(|(a, b)| a != b)
            .count(),
        runtime_logits_digest: format!("{:#010x}", logits_digest(&runtime.logits)),
        float_logit_tolerance: FLOAT_LOGIT_TOLERANCE,
        firmware: None,
    })
}
