//! `tinyconv import`: a model trained elsewhere to a `.tcm` (model format v2), and `inspect` of
//! v2 files.
//!
//! Sources:
//! - int8 TensorFlow Lite flatbuffers, taken as quantized under the `tflite` rule (the mapping
//!   is `tinyconv_tflite::import`);
//! - float ONNX models (PyTorch, Keras via tf2onnx), read by [`crate::onnx_import`], calibrated
//!   on `--data` and quantized under the `onnx` rule by [`crate::fgraph::quantize`], then
//!   refereed before anything is written: the runtime against tract on the int8 ONNX twin, every
//!   value of every test image, and tract's float run of the original for accuracy and top-1
//!   agreement ([`crate::verify_graph`]).
//!
//! Nothing is written unless the whole import succeeds; the `.tcm` and the report are each
//! written to a temporary name and renamed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use tinyconv::graph::{Graph, OpKind};

use crate::artifacts::atomic_write;

/// What the import produced, as printed and as written to the report.
#[derive(Clone, Debug, Serialize)]
pub struct ImportSummary {
    pub source: PathBuf,
    pub source_format: &'static str,
    pub output: PathBuf,
    pub rule: &'static str,
    pub bytes: usize,
    pub ops: usize,
    pub tensors: usize,
    /// TFLite op name -> count mapped.
    pub op_counts: std::collections::BTreeMap<String, usize>,
    /// Source ops left out (QUANTIZE / DEQUANTIZE at the edges), with the reason.
    pub dropped: Vec<String>,
    pub params: usize,
    pub macs: usize,
    pub arena_bytes: usize,
    pub input: String,
    pub input_scale: f32,
    pub input_zero_point: i8,
    pub output_shape: String,
    pub output_scale: f32,
    pub output_zero_point: i8,
    /// The real value of one raw pixel unit, when the model also takes u8 pixels.
    pub pixel_scale: Option<f32>,
    /// Float ONNX: what each node became, the folds, the input layout.
    pub mapping: Vec<String>,
    /// Float ONNX: the dataset and the number of its training images calibrated on.
    pub calibration: Option<String>,
    /// Float ONNX: the checks on the dataset's test images.
    pub verification: Option<crate::verify_graph::GraphVerification>,
}

/// Training images a float ONNX import calibrates on unless told otherwise.
pub const DEFAULT_CALIBRATION_IMAGES: usize = 500;

/// What `import` is given besides the model and the output paths.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The source's float input range (`--input-range`): for a TFLite model, whether it also
    /// takes raw pixels; for a float ONNX model, how a dataset image becomes its input
    /// (default 0..1).
    pub input_range: Option<InputRange>,
    /// The dataset a float ONNX model is calibrated and checked on (`--data`).
    pub data: Option<PathBuf>,
    pub data_kind: Option<tinyconv_datasets::Kind>,
    /// Training images to calibrate on, spread evenly over the training split.
    pub calibration_images: usize,
    /// Check on the first N test images only (all of them by default).
    pub check_limit: Option<usize>,
    /// Dense layers in the wide layout (`--wide-dense`; `tinyconv::graph::WriteOptions`).
    pub wide_dense: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            input_range: None,
            data: None,
            data_kind: None,
            calibration_images: DEFAULT_CALIBRATION_IMAGES,
            check_limit: None,
            wide_dense: false,
        }
    }
}

impl ImportSummary {
    /// The figures of the imported `graph` (parsed from `tcm`); the ONNX-only fields empty.
    fn of(
        source: PathBuf,
        source_format: &'static str,
        out: &Path,
        tcm: &[u8],
        graph: &Graph<'_>,
        op_counts: std::collections::BTreeMap<String, usize>,
        dropped: Vec<String>,
    ) -> Self {
        let (input, output) = (graph.input(), graph.output());
        ImportSummary {
            source,
            source_format,
            output: out.to_path_buf(),
            rule: graph.rule().name(),
            bytes: tcm.len(),
            ops: graph.op_count(),
            tensors: graph.tensor_count(),
            op_counts,
            dropped,
            params: graph.params_count(),
            macs: graph.macs(),
            arena_bytes: graph.arena_len(),
            input: input.shape.to_string(),
            input_scale: input.quant.scale,
            input_zero_point: input.quant.zero_point,
            output_shape: output.shape.to_string(),
            output_scale: output.quant.scale,
            output_zero_point: output.quant.zero_point,
            pixel_scale: graph.pixel_scale(),
            mapping: Vec::new(),
            calibration: None,
            verification: None,
        }
    }

    /// Writes the `.tcm` to `self.output` and the summary as JSON to `report`, each to a
    /// temporary name renamed into place.
    fn write(self, tcm: &[u8], report: &Path) -> anyhow::Result<Self> {
        let json = serde_json::to_string_pretty(&self)?;
        let out = &self.output;
        atomic_write(out, tcm).with_context(|| format!("cannot write {}", out.display()))?;
        atomic_write(report, json.as_bytes())
            .with_context(|| format!("cannot write {}", report.display()))?;
        Ok(self)
    }
}

/// What a model file is, from its first bytes.
fn sniff(bytes: &[u8]) -> &'static str {
    if bytes.len() >= 8 && &bytes[4..8] == b"TFL3" {
        "tflite"
    } else if bytes.starts_with(b"TCMF") {
        "tcm"
    } else if bytes.first() == Some(&0x08) {
        // An ONNX ModelProto starts with field 1 (ir_version), a varint: tag byte 0x08.
        "onnx"
    } else {
        "unknown"
    }
}

/// The report's default path: `FILE.tcm` -> `FILE.import.json`.
pub fn default_report_path(out: &Path) -> PathBuf {
    out.with_extension("import.json")
}

/// What the source model's float input was, for a model that should also take raw u8 pixels
/// (`--input-range`): the real value of one pixel unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputRange {
    /// pixel / 255 (Keras' `Rescaling(1/255)`, `ToTensor`).
    Unit,
    /// The pixel value itself.
    Byte,
}

impl std::str::FromStr for InputRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "0..1" => Ok(InputRange::Unit),
            "0..255" => Ok(InputRange::Byte),
            "-1..1" => Err(
                "--input-range -1..1 needs an offset in the pixel quantization, which the runtime \
                 does not have yet; import without --input-range and quantize the input yourself"
                    .into(),
            ),
            other => Err(format!("--input-range {other}: use 0..1 or 0..255")),
        }
    }
}

impl InputRange {
    /// As the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            InputRange::Unit => "0..1",
            InputRange::Byte => "0..255",
        }
    }

    pub fn pixel_scale(self) -> f32 {
        match self {
            InputRange::Unit => 1.0 / 255.0,
            InputRange::Byte => 1.0,
        }
    }
}

/// Imports `source` and writes `out` (and the JSON report to `report`). A TFLite model with
/// `input_range` also takes raw u8 pixels (`Graph::infer_pixels`, `tinyconv eval`); a float
/// ONNX model always does, and needs `options.data` to be calibrated on.
pub fn import_model(
    source: &Path,
    out: &Path,
    report: &Path,
    options: &ImportOptions,
) -> anyhow::Result<ImportSummary> {
    let input_range = options.input_range;
    let bytes = std::fs::read(source)
        .with_context(|| format!("cannot read the model to import, {}", source.display()))?;
    let format = sniff(&bytes);
    let spec = match format {
        "tflite" => {
            let model = tinyconv_tflite::Model::parse(&bytes)
                .with_context(|| format!("{} is not a readable TFLite model", source.display()))?;
            tinyconv_tflite::import(&model)
                .with_context(|| format!("cannot import {}", source.display()))?
        }
        "onnx" => return import_onnx(source, &bytes, out, report, options),
        "tcm" => bail!(
            "{} is already a tinyconv model: use it as it is (`tinyconv inspect` shows it)",
            source.display()
        ),
        _ => bail!(
            "{} is neither a TFLite flatbuffer (no \"TFL3\" identifier) nor an ONNX model; \
             pass an int8 .tflite file",
            source.display()
        ),
    };
    let mut spec = spec;
    spec.spec.pixel_scale = input_range.map(InputRange::pixel_scale);
    let write = tinyconv::graph::WriteOptions {
        wide_dense: options.wide_dense,
    };
    let tcm = spec
        .spec
        .to_bytes_with(write)
        .with_context(|| format!("the model imported from {} is not valid", source.display()))?;
    let graph = Graph::parse(&tcm)?;
    let summary = ImportSummary::of(
        source.to_path_buf(),
        format,
        out,
        &tcm,
        &graph,
        spec.report.op_counts.clone(),
        spec.report
            .dropped
            .iter()
            .map(|d| format!("operator {} ({}): {}", d.index, d.op, d.reason))
            .collect(),
    );
    summary.write(&tcm, report)
}

/// The ONNX half of [`import_model`]: read; a float model is calibrated on the dataset's
/// training images and quantized under the `onnx` rule, an int8 (QDQ) model keeps its own
/// quantization; either is refereed on the test images, then written.
fn import_onnx(
    source: &Path,
    bytes: &[u8],
    out: &Path,
    report: &Path,
    options: &ImportOptions,
) -> anyhow::Result<ImportSummary> {
    let imported = crate::onnx_import::read_onnx(bytes)
        .with_context(|| format!("cannot import {}", source.display()))?;
    let int8 = imported.quantized.is_some();
    let Some(data) = &options.data else {
        if int8 {
            bail!(
                "{} is an int8 (QDQ) ONNX model: importing it checks the runtime against tract \
                 on the int8 graph and against the model itself, on test images: pass --data \
                 DIR (any dataset kind `train` reads: MNIST-style IDX, an image folder, CIFAR)",
                source.display()
            );
        }
        bail!(
            "{} is a float ONNX model: importing it quantizes it to int8, which needs images \
             to calibrate on and to check against: pass --data DIR (any dataset kind `train` \
             reads: MNIST-style IDX, an image folder, CIFAR)",
            source.display()
        );
    };
    let range = options.input_range.unwrap_or(InputRange::Unit);
    let scale = range.pixel_scale();
    let mut float = imported.graph;
    float.pixel_scale = Some(scale);
    let classes = float.tensors[float.output].len();
    let dataset = crate::verify_graph::dataset_for(
        source,
        float.tensors[float.input],
        classes,
        Some(data),
        options.data_kind,
    )?;
    let (tcm, calibration) = match imported.quantized {
        Some(mut spec) => {
            spec.pixel_scale = Some(scale);
            let write = tinyconv::graph::WriteOptions {
                wide_dense: options.wide_dense,
            };
            let tcm = spec.to_bytes_with(write).with_context(|| {
                format!("the model imported from {} is not valid", source.display())
            })?;
            let line = format!(
                "the model's own (its scales and zero points, int8 weights, int32 biases), \
                 input range {}",
                range.name()
            );
            (tcm, line)
        }
        None => {
            let train = &dataset.train;
            anyhow::ensure!(
                !train.is_empty() && options.calibration_images > 0,
                "calibration needs training images: the dataset in {} has {} and {} were asked for",
                data.display(),
                train.len(),
                options.calibration_images
            );
            // Evenly spread over the training split, so every class is seen whatever the file
            // order.
            let n = options.calibration_images.min(train.len());
            let calibration: Vec<Vec<f32>> = (0..n)
                .map(|i| {
                    train
                        .image(i * train.len() / n)
                        .iter()
                        .map(|&p| p as f32 * scale)
                        .collect()
                })
                .collect();
            let tcm = crate::fgraph::quantize::to_tcm(
                &float,
                &calibration,
                &crate::fgraph::quantize::Options::default(),
            )
            .with_context(|| format!("quantizing {}", source.display()))?;
            let line = format!(
                "{n} training images of {} ({}), input range {}",
                dataset.name,
                data.display(),
                range.name()
            );
            (tcm, line)
        }
    };
    let graph = Graph::parse(&tcm)?;
    let test = match options.check_limit {
        Some(limit) => dataset.test.truncated(limit),
        None => dataset.test.clone(),
    };
    let reference = crate::verify_graph::FloatReference::imported(
        source,
        bytes.to_vec(),
        &imported.report,
        scale,
    )
    // An int8 source's outputs compare as codes (before a final Softmax, which is dropped).
    .with_output(int8.then(|| graph.output().quant));
    let verification = crate::verify_graph::check(&graph, &test, Some(&reference))?;
    verification
        .ensure_identical()
        .with_context(|| format!("the int8 import of {} fails its check", source.display()))?;

    let mut op_counts = std::collections::BTreeMap::new();
    for n in imported.report.nodes.iter().filter(|n| {
        !n.became.starts_with("constant")
            && !n.became.starts_with("dropped")
            && !matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear")
    }) {
        *op_counts.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    let mut dropped = Vec::new();
    if imported.report.dropped_softmax {
        dropped.push("the final Softmax: the model outputs logits (same argmax)".to_string());
    }
    if int8 {
        let qdq = |op: &str| {
            (imported.report.nodes.iter())
                .filter(|n| n.op_type == op)
                .count()
        };
        dropped.push(format!(
            "{} QuantizeLinear and {} DequantizeLinear nodes: their scales and zero points are \
             the tensors' quantization, their int8 and int32 constants the weights and biases",
            qdq("QuantizeLinear"),
            qdq("DequantizeLinear")
        ));
    }
    // Absolute, so `verify` finds the original from anywhere.
    let absolute = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let format = if int8 { "onnx-int8" } else { "onnx" };
    let mut summary = ImportSummary::of(absolute, format, out, &tcm, &graph, op_counts, dropped);
    summary.mapping = imported.report.lines();
    summary.calibration = Some(calibration);
    summary.verification = Some(verification);
    summary.write(&tcm, report)
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "imported {} ({}) -> {} ({} bytes, rule {})",
            self.source.display(),
            self.source_format,
            self.output.display(),
            self.bytes,
            self.rule
        )?;
        let ops: Vec<String> = self
            .op_counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        writeln!(f, "  ops: {} ({})", self.ops, ops.join(", "))?;
        for d in &self.dropped {
            writeln!(f, "  dropped: {d}")?;
        }
        writeln!(
            f,
            "  input {} int8 (scale {:e}, zero point {}), output {} (scale {:e}, zero point {})",
            self.input,
            self.input_scale,
            self.input_zero_point,
            self.output_shape,
            self.output_scale,
            self.output_zero_point
        )?;
        if let Some(p) = self.pixel_scale {
            writeln!(f, "  also takes raw u8 pixels of scale {p:e}")?;
        }
        if let Some(c) = &self.calibration {
            match self.source_format {
                "onnx-int8" => writeln!(f, "  quantization: {c}")?,
                _ => writeln!(f, "  calibrated on {c}")?,
            }
        }
        if let Some(v) = &self.verification {
            for line in v.to_string().lines() {
                writeln!(f, "  {line}")?;
            }
        }
        write!(
            f,
            "  {} params, {} MACs per inference, activation arena {} bytes",
            self.params, self.macs, self.arena_bytes
        )
    }
}

/// `tinyconv inspect` of a version-2 file: its op table.
pub fn inspect_graph(path: &Path, bytes: &[u8]) -> anyhow::Result<String> {
    let graph = Graph::parse(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut s = String::new();
    let i = graph.input();
    s.push_str(&format!(
        "{}: tinyconv model v{}, {} bytes, CRC-32 ok, rule {}\ninput tensor {} {} int8 (scale {:.6e}, zero point {}){}\n\n",
        path.display(),
        tinyconv::graph::format::VERSION,
        bytes.len(),
        graph.rule().name(),
        graph.input_index(),
        i.shape,
        i.quant.scale,
        i.quant.zero_point,
        graph
            .pixel_scale()
            .map(|p| format!("; also takes u8 pixels of scale {p:.6e}"))
            .unwrap_or_default()
    ));
    s.push_str(&format!(
        "{:<3} {:<18} {:<9} {:<10} {:<12} {:>9} {:>10}  {:<22} {:>10}  {}\n",
        "#",
        "op",
        "inputs",
        "output",
        "shape",
        "params",
        "MACs",
        "window",
        "clamp",
        "out scale / zp"
    ));
    for n in graph.nodes() {
        let inputs = if n.kind == OpKind::Add {
            format!("{},{}", n.inputs[0], n.inputs[1])
        } else {
            n.inputs[0].to_string()
        };
        let w = n.window;
        let window = if n.kind.has_window() {
            format!(
                "{}x{} s{}x{} p{},{},{},{}",
                w.kernel_h,
                w.kernel_w,
                w.stride_h,
                w.stride_w,
                w.pad_top,
                w.pad_left,
                w.pad_bottom,
                w.pad_right
            )
        } else {
            "-".into()
        };
        s.push_str(&format!(
            "{:<3} {:<18} {:<9} {:<10} {:<12} {:>9} {:>10}  {:<22} {:>10}  {:.3e} / {}\n",
            n.index,
            n.kind.name(),
            inputs,
            n.output,
            n.output_info.shape.to_string(),
            n.params_count(),
            n.macs(),
            window,
            format!("{}..{}", n.clamp.min, n.clamp.max),
            n.output_info.quant.scale,
            n.output_info.quant.zero_point
        ));
    }
    s.push_str(&format!(
        "\ntotal: {} ops, {} tensors, {} params, {} MACs per inference, activation arena {} bytes\n",
        graph.op_count(),
        graph.tensor_count(),
        graph.params_count(),
        graph.macs(),
        graph.arena_len()
    ));
    Ok(s)
}

/// `tinyconv eval` of a version-2 model: accuracy on the test set of `data_dir` (any dataset
/// kind, `docs/datasets.md`; its images converted to the model's input shape) through the
/// runtime, from raw pixels (the model must take them: trained by tinyconv, or imported with
/// `--input-range`). When a `<model>.report.json` written by `train` sits beside the model,
/// its int8 accuracy must be the one measured here.
pub fn eval_graph(
    path: &Path,
    bytes: &[u8],
    data_dir: Option<&Path>,
    kind: Option<tinyconv_datasets::Kind>,
) -> anyhow::Result<crate::evaluate::Accuracy> {
    let graph = Graph::parse(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    pixel_graph(path, &graph)?;
    let classes = graph.output().shape.len();
    let dataset =
        crate::verify_graph::dataset_for(path, graph.input().shape, classes, data_dir, kind)?;
    let started = std::time::Instant::now();
    let outputs = crate::spec_pipeline::runtime_outputs(&graph, &dataset.test)?;
    let seconds = started.elapsed().as_secs_f64();
    let predicted: Vec<usize> = outputs
        .chunks(classes)
        .map(crate::evaluate::argmax)
        .collect();
    let acc = crate::evaluate::Accuracy::new(&predicted, &dataset.test.labels, classes);
    println!(
        "int8 accuracy (tinyconv runtime, {} rule): {:.2}% ({}/{}) on the test set of {} in {}, {:.0} images/s",
        graph.rule().name(),
        acc.accuracy * 100.0,
        acc.correct,
        acc.total,
        dataset.name,
        dataset.dir.display(),
        acc.total as f64 / seconds
    );
    crate::commands::report_accuracy(&acc, &dataset.classes, &path.with_extension("report.json"))?;
    Ok(acc)
}

/// A version-2 model must take raw pixels for `eval` and `predict`.
pub(crate) fn pixel_graph(path: &Path, graph: &Graph<'_>) -> anyhow::Result<()> {
    if graph.pixel_scale().is_none() {
        bail!(
            "{} takes its int8 input tensor, not raw pixels: re-import it with \
             `--input-range 0..1` (or 0..255), the range the source model's input had",
            path.display()
        );
    }
    Ok(())
}

/// Class `c` as `predict` prints it: its number, and its name when `classes` has one other than
/// the number itself (MNIST's "7" is printed once).
pub(crate) fn class_label(c: usize, classes: Option<&[String]>) -> String {
    match classes.and_then(|n| n.get(c)) {
        Some(n) if *n != c.to_string() => format!("{c} ({n})"),
        _ => c.to_string(),
    }
}

/// `tinyconv predict` with a version-2 model that takes pixels ([`pixel_graph`]): the class of
/// raw pixels of the model's input shape and each class's output (as probabilities when the
/// output is a softmax's, scale 1/256 and zero point -128), named by `classes` when given.
pub fn predict_graph(
    graph: &Graph<'_>,
    pixels: &[u8],
    classes: Option<&[String]>,
) -> anyhow::Result<(usize, String)> {
    let mut arena = vec![0i8; graph.arena_len()];
    let out = graph.infer_pixels(pixels, &mut arena)?;
    let q = graph.output().quant;
    let real: Vec<f32> = out.iter().map(|&v| q.dequantize(v)).collect();
    let probabilities: Vec<f32> = if q.scale == 1.0 / 256.0 && q.zero_point == -128 {
        real
    } else {
        let max = real.iter().cloned().fold(f32::MIN, f32::max);
        let e: Vec<f32> = real.iter().map(|&v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    };
    let class = crate::evaluate::argmax(out);
    let mut s = String::new();
    for (c, (&p, &v)) in probabilities.iter().zip(out).enumerate() {
        let name = class_label(c, classes);
        s.push_str(&format!(
            "{name}: {:>6.2}%  output {v:>4}  {}\n",
            p * 100.0,
            "#".repeat((p * 40.0).round().max(0.0) as usize)
        ));
    }
    Ok((class, s))
}
