//! `tinyconv train --model NAME|FILE.toml --data DIR` for any architecture and dataset: the
//! spec is resolved on the dataset's input shape and classes, trained with the seed network's
//! recipe ([`crate::train::train_net`]), exported to a [`FloatGraph`] (batch norm folded),
//! calibrated and quantized to a model-format-v2 `.tcm` under the `onnx` rule, and refereed:
//! the runtime's int8 outputs against tract's on the int8 ONNX export for every test image
//! (every value), and burn's float logits against tract's on the float ONNX export.
//!
//! Artifacts are named after the model and the dataset: `OUT/<model>-<dataset>.tcm`,
//! `.onnx`, `.int8.onnx`, `.report.json`, and the plots.

use std::path::PathBuf;

use anyhow::Context;
use burn::prelude::*;
use serde::Serialize;
use tract_onnx::prelude::{Datum, Tensor as TractTensor, TypedRunnableModel, tract_ndarray, tvec};

use tinyconv::graph::Graph;
use tinyconv_datasets::{Augment, Dataset};

use crate::artifacts::atomic_write;
use crate::evaluate::{Accuracy, argmax};
use crate::fgraph;
use crate::net::{DataSplit, Samples, hwc_batch_tensor};
use crate::spec_net::{SpecNet, Steps, export::export};
use crate::train::{EpochMetrics, TrainConfig, train_net};
use crate::{onnx_graph, plots};

/// What a spec training run wrote and measured (`<name>.report.json`).
#[derive(Clone, Debug, Serialize)]
pub struct SpecReport {
    pub command: String,
    pub model: String,
    pub dataset: String,
    pub dataset_dir: PathBuf,
    pub dataset_kind: String,
    /// `[height, width, channels]`.
    pub input: [usize; 3],
    pub classes: Vec<String>,
    pub params_trainable: u64,
    pub params_non_trainable: u64,
    pub macs: u64,
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub augment_crop_padding: usize,
    pub augment_hflip: bool,
    pub training_images: usize,
    pub calibration_images: usize,
    pub test_images: usize,
    pub float_accuracy: f64,
    pub int8_accuracy: f64,
    pub quantization_loss_pp: f64,
    pub float_per_class_accuracy: Vec<f64>,
    pub int8_per_class_accuracy: Vec<f64>,
    pub int8_confusion: Vec<Vec<u32>>,
    /// Test images whose every int8 output the runtime and tract computed identically.
    pub tract_int8_identical_images: usize,
    /// Int8 output values compared with tract, and how many differ.
    pub tract_int8_values: usize,
    pub tract_int8_differing_values: usize,
    /// Largest |burn − tract| over the float logits of every test image.
    pub tract_float_max_abs_diff: f32,
    /// Test images where burn's and tract's float top-1 agree.
    pub tract_float_top1_agree: usize,
    pub seconds_per_epoch: f64,
    /// Convolutions trained on the batch-wide kernel, and on stock burn layers.
    pub convs_batch_wide: usize,
    pub convs_stock_burn: usize,
    pub history: Vec<EpochMetrics>,
    pub tcm_bytes: usize,
    pub arena_bytes: usize,
    pub files: Vec<PathBuf>,
}

/// A file name part from free text: letters, digits, `-` and `_` kept, the rest `_`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The float input of one HWC u8 image: NHWC pixel / 255 (the graph's input tensor).
pub fn float_input(image: &[u8]) -> Vec<f32> {
    image.iter().map(|&p| p as f32 / 255.0).collect()
}

/// Train, quantize, export and verify `model` (a preset name or a `.toml` path) on `dataset`.
pub fn train_spec(
    config: &TrainConfig,
    model: &str,
    dataset: &Dataset,
    augment: Augment,
) -> anyhow::Result<SpecReport> {
    let spec = tinyconv_spec::load(model)?;
    let shape = tinyconv_spec::Shape {
        h: dataset.height,
        w: dataset.width,
        c: dataset.channels,
    };
    let resolved = spec
        .resolve(shape, dataset.classes.len())
        .with_context(|| format!("model {model} on {}", dataset.dir.display()))?;
    let steps = Steps::from_resolved(&resolved)?;
    println!("\n{}", resolved.summary());
    let paths = steps.conv_paths();
    println!(
        "training path: {} of {} convolutions on the batch-wide kernel (conv → ReLU → 2x2 max \
         pool blocks), {} on stock burn layers (docs/performance.md)",
        paths.fused,
        paths.fused + paths.stock,
        paths.stock
    );

    let name = format!("{}-{}", slug(&resolved.name), slug(&dataset.name));
    let out = &config.out_dir;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output directory {}", out.display()))?;
    let train = DataSplit {
        split: dataset.train.clone(),
        augment,
        seed: config.seed,
    };
    let test = DataSplit::plain(dataset.test.clone());
    let outcome = train_net(
        config,
        &train,
        &test,
        |d| SpecNet::new(&steps, d),
        |d| SpecNet::lazy(&steps, d),
    )
    .context("training failed")?;
    let net = outcome.model;

    let path = |suffix: &str| out.join(format!("{name}{suffix}"));
    plots::training_curves(&outcome.history, &path(".training_curves.png"))?;
    let last = outcome.history.last().map(|m| m.epoch).unwrap_or(0);
    plots::confusion_matrix(
        &outcome.confusion,
        &dataset.classes,
        &format!(
            "float {} after epoch {last}, {} test set",
            resolved.name, dataset.name
        ),
        &path(".confusion_float.png"),
    )?;

    // Quantize.
    let graph = export(&net, Some(1.0 / 255.0))?;
    let train_len = config
        .limit
        .unwrap_or(dataset.train.len())
        .min(dataset.train.len());
    let calibration: Vec<Vec<f32>> =
        crate::quantize::calibration_indices(train_len, config.calibration)
            .into_iter()
            .map(|i| float_input(dataset.train.image(i)))
            .collect();
    println!(
        "calibrating on {} training images, quantizing (onnx rule)",
        calibration.len()
    );
    let ranges = fgraph::quantize::calibrate(&graph, &calibration)?;
    let gspec = fgraph::quantize::quantize(&graph, &ranges, &Default::default())?;
    let tcm = gspec.to_bytes()?;
    let g = Graph::parse(&tcm)?;
    let int8_onnx = onnx_graph::int8_onnx(&g)?;
    let float_onnx = fgraph::onnx_float::float_onnx(&graph);
    let files = vec![path(".tcm"), path(".onnx"), path(".int8.onnx")];
    for (file, bytes) in files.iter().zip([&tcm, &float_onnx, &int8_onnx]) {
        atomic_write(file, bytes).with_context(|| format!("writing {}", file.display()))?;
    }
    println!(
        "wrote {} ({} bytes, arena {} bytes), {} and {}",
        files[0].display(),
        tcm.len(),
        g.arena_len(),
        files[1].display(),
        files[2].display()
    );

    // Evaluate and referee on the whole test set.
    let runtime = runtime_outputs(&g, &dataset.test)?;
    let classes = dataset.classes.len();
    let int8_pred: Vec<usize> = runtime.chunks(classes).map(argmax).collect();
    let int8 = Accuracy::new(&int8_pred, &dataset.test.labels, classes);
    let float = Accuracy::from_confusion(outcome.confusion.clone());
    plots::confusion_matrix(
        &int8.confusion,
        &dataset.classes,
        &format!(
            "int8 {} (tinyconv runtime), {} test set",
            resolved.name, dataset.name
        ),
        &path(".confusion_int8.png"),
    )?;
    println!("cross-checking the runtime with tract (int8) and burn with tract (float)");
    let tract_int8 = tract_int8_outputs(&int8_onnx, &dataset.test)?;
    let (identical_images, differing) = compare_int8(&runtime, &tract_int8, classes)?;
    let burn_float = burn_logits(&net, &test);
    let tract_float = tract_float_outputs(&float_onnx, &dataset.test)?;
    let max_diff = burn_float
        .iter()
        .zip(&tract_float)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let top1_agree = burn_float
        .chunks(classes)
        .zip(tract_float.chunks(classes))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    let n = dataset.test.len();
    println!(
        "float accuracy (burn) {:.2}%, int8 accuracy (runtime) {:.2}% on {n} test images",
        float.accuracy * 100.0,
        int8.accuracy * 100.0
    );
    println!(
        "runtime vs tract int8: {identical_images}/{n} images identical, {differing} of {} values differ; burn vs tract float: max |diff| {max_diff:.2e}, top-1 agrees on {top1_agree}/{n}",
        runtime.len()
    );
    let params = resolved.params();
    let report = SpecReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        model: resolved.name.clone(),
        dataset: dataset.name.clone(),
        dataset_dir: dataset.dir.clone(),
        dataset_kind: dataset.kind.to_string(),
        input: [dataset.height, dataset.width, dataset.channels],
        classes: dataset.classes.clone(),
        params_trainable: params.trainable,
        params_non_trainable: params.non_trainable,
        macs: resolved.macs(),
        seed: config.seed,
        epochs: config.epochs,
        batch_size: config.batch_size,
        learning_rate: config.lr,
        augment_crop_padding: augment.crop_padding,
        augment_hflip: augment.hflip,
        training_images: train_len,
        calibration_images: calibration.len(),
        test_images: n,
        float_accuracy: float.accuracy,
        int8_accuracy: int8.accuracy,
        quantization_loss_pp: (float.accuracy - int8.accuracy) * 100.0,
        float_per_class_accuracy: float.per_class,
        int8_per_class_accuracy: int8.per_class,
        int8_confusion: int8.confusion,
        tract_int8_identical_images: identical_images,
        tract_int8_values: runtime.len(),
        tract_int8_differing_values: differing,
        tract_float_max_abs_diff: max_diff,
        tract_float_top1_agree: top1_agree,
        seconds_per_epoch: outcome.history.iter().map(|m| m.seconds).sum::<f64>()
            / outcome.history.len().max(1) as f64,
        convs_batch_wide: paths.fused,
        convs_stock_burn: paths.stock,
        history: outcome.history.clone(),
        tcm_bytes: tcm.len(),
        arena_bytes: g.arena_len(),
        files,
    };
    let report_path = path(".report.json");
    atomic_write(
        &report_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )
    .with_context(|| format!("writing {}", report_path.display()))?;
    println!("wrote {}", report_path.display());
    anyhow::ensure!(
        differing == 0,
        "the runtime and tract disagree on {differing} int8 output values ({} of {n} images identical)",
        identical_images
    );
    Ok(report)
}

/// `(images whose every output is identical, output values that differ)` between two engines'
/// int8 outputs, `per_image` values an image; outputs of different lengths are an error (a
/// silently shorter reading must not pass as identical).
pub fn compare_int8(a: &[i8], b: &[i8], per_image: usize) -> anyhow::Result<(usize, usize)> {
    anyhow::ensure!(
        a.len() == b.len() && per_image > 0 && a.len() % per_image == 0,
        "the engines gave {} and {} int8 output values ({per_image} an image)",
        a.len(),
        b.len()
    );
    let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
    let identical = a
        .chunks(per_image)
        .zip(b.chunks(per_image))
        .filter(|(x, y)| x == y)
        .count();
    Ok((identical, differing))
}

/// The runtime's int8 outputs for every image of `split` (raw pixels in), on all cores.
pub fn runtime_outputs(
    graph: &Graph<'_>,
    split: &tinyconv_datasets::Split,
) -> anyhow::Result<Vec<i8>> {
    let out_len = graph.output().shape.len();
    let n = split.len();
    let mut outputs = vec![0i8; n * out_len];
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n.max(1));
    let per_thread = n.div_ceil(threads).max(1);
    let results: Vec<Result<(), tinyconv::Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = outputs
            .chunks_mut(per_thread * out_len)
            .enumerate()
            .map(|(t, chunk)| {
                s.spawn(move || {
                    let mut arena = vec![0i8; graph.arena_len()];
                    for (j, out) in chunk.chunks_mut(out_len).enumerate() {
                        let y = graph.infer_pixels(split.image(t * per_thread + j), &mut arena)?;
                        out.copy_from_slice(y);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("runtime thread"))
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(outputs)
}

/// tract's runnable plan of a float or int8 ONNX file, with `input`, its input fixed to those f32
/// dims (a foreign model with a dynamic batch): optimized, or (tract 0.23.9's optimizer fails on
/// some strided convolutions after a reshape: "Pulling Downsample over Reshape") its plain typed
/// plan, which computes the same ops without the rewrites.
pub(crate) fn tract_plan(
    bytes: &[u8],
    input: Option<&[usize]>,
) -> anyhow::Result<std::sync::Arc<TypedRunnableModel>> {
    use tract_onnx::prelude::*;
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .context("tract cannot read the ONNX model")?;
    if let Some(dims) = input {
        model = model.with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), dims))?;
    }
    let typed = model.into_typed()?;
    match typed.clone().into_optimized() {
        Ok(optimized) => Ok(optimized.into_runnable()?),
        Err(e) => {
            eprintln!("note: tract's optimizer failed ({e}); running its unoptimized plan");
            Ok(typed.into_runnable()?)
        }
    }
}

/// `plan`'s outputs for every image, one image at a time (the exports have batch 1), each
/// image made a tensor by `input`.
pub(crate) fn tract_outputs<T: Datum + Copy>(
    plan: &std::sync::Arc<TypedRunnableModel>,
    split: &tinyconv_datasets::Split,
    input: impl Fn(&[u8]) -> anyhow::Result<TractTensor>,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for i in 0..split.len() {
        let result = plan.run(tvec!(input(split.image(i))?.into()))?;
        out.extend(result[0].to_plain_array_view::<T>()?.iter().copied());
    }
    Ok(out)
}

/// tract on the int8 export: its input is the int8 input tensor, pixel − 128 (the input
/// quantization with scale 1/255 and zero point −128 is exact: docs/quantization.md).
pub(crate) fn tract_int8_outputs(
    onnx: &[u8],
    split: &tinyconv_datasets::Split,
) -> anyhow::Result<Vec<i8>> {
    let (h, w, c) = (split.height, split.width, split.channels);
    tract_outputs::<i8>(&tract_plan(onnx, None)?, split, |img| {
        let codes: Vec<i8> = img.iter().map(|&p| (p as i16 - 128) as i8).collect();
        Ok(tract_ndarray::Array4::from_shape_vec((1, h, w, c), codes)?.into())
    })
}

/// tract on the float export: NHWC pixel / 255.
fn tract_float_outputs(onnx: &[u8], split: &tinyconv_datasets::Split) -> anyhow::Result<Vec<f32>> {
    let (h, w, c) = (split.height, split.width, split.channels);
    tract_outputs::<f32>(&tract_plan(onnx, None)?, split, |img| {
        Ok(tract_ndarray::Array4::from_shape_vec((1, h, w, c), float_input(img))?.into())
    })
}

/// burn's float logits for every image of `split` (evaluation mode).
pub fn burn_logits(net: &SpecNet, split: &DataSplit) -> Vec<f32> {
    let device = Device::flex();
    let net = burn::module::Module::valid(net);
    let s = &split.split;
    let mut out = Vec::new();
    let all: Vec<usize> = (0..split.len()).collect();
    for idx in all.chunks(500) {
        let mut pixels = Vec::with_capacity(idx.len() * s.image_len());
        for &i in idx {
            pixels.extend_from_slice(s.image(i));
        }
        let x = hwc_batch_tensor(&pixels, [idx.len(), s.height, s.width, s.channels], &device);
        out.extend(
            net.forward(x)
                .try_into_vec_as::<f32>()
                .expect("logits read back"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::compare_int8;

    #[test]
    fn compare_int8_counts_images_and_values_and_refuses_length_mismatches() {
        let a = [1i8, 2, 3, 4, 5, 6];
        assert_eq!(compare_int8(&a, &a, 3).unwrap(), (2, 0));
        // One value off in the second image; then two in the first.
        assert_eq!(compare_int8(&a, &[1, 2, 3, 4, 0, 6], 3).unwrap(), (1, 1));
        assert_eq!(compare_int8(&a, &[0, 0, 3, 4, 5, 6], 3).unwrap(), (1, 2));
        assert!(compare_int8(&a, &a[..3], 3).is_err());
        assert!(compare_int8(&a, &a, 4).is_err());
    }
}
