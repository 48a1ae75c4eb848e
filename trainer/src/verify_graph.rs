//! The referee for version-2 models (trained from a spec, or imported): `tinyconv verify` of
//! such a model, and the checks `tinyconv import` of a float ONNX model runs before it writes
//! anything.
//!
//! On a dataset split it measures:
//! - the runtime's int8 accuracy, from raw pixels (`Graph::infer_pixels`, the MCU's code);
//! - under the `onnx` rule, the runtime against tract on the int8 ONNX export of the same graph
//!   (`onnx_graph::int8_onnx`), every output value of every image; a `tflite`-rule model has no
//!   ONNX twin (tract does not compute TFLite's rounding), so its referee is the golden outputs of
//!   TensorFlow Lite and CMSIS-NN (tests/tests/mlperf_import.rs), not this;
//! - with a float reference (the float ONNX beside a trained model, or the original file of an
//!   imported one), tract's float accuracy on it and the top-1 agreement of the int8 model with
//!   it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use tinyconv::graph::{Graph, Rule};
use tract_onnx::prelude::{Tensor as TractTensor, tract_ndarray};

use crate::evaluate::argmax;
use crate::onnx_import::InputLayout;
use crate::spec_pipeline::{
    compare_int8, runtime_outputs, tract_int8_outputs, tract_outputs, tract_plan,
};

/// A float ONNX model that the int8 model should agree with, and how to feed it a raw image.
#[derive(Clone, Debug)]
pub struct FloatReference {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Its input dims (batch 1), in its own layout.
    pub dims: Vec<usize>,
    pub layout: InputLayout,
    /// The real input value of one pixel unit.
    pub pixel_scale: f32,
    /// For an int8 (QDQ) source: the quantization of its float output (its last
    /// DequantizeLinear), so its outputs compare as int8 codes with the runtime's.
    pub quantized_output: Option<tinyconv::QuantParams>,
    /// `bytes` are a QOperator source's QDQ form (tract has none of onnxruntime's contrib ops).
    pub as_qdq: bool,
}

impl FloatReference {
    /// The float export `tinyconv train` writes beside a spec-trained model: NHWC `pixel / 255`.
    pub fn trained_export(path: &Path, shape: tinyconv::Shape) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the float model {}", path.display()))?;
        Ok(FloatReference {
            path: path.to_path_buf(),
            bytes,
            dims: vec![1, shape.h, shape.w, shape.c],
            layout: InputLayout::Nhwc,
            pixel_scale: 1.0 / 255.0,
            quantized_output: None,
            as_qdq: false,
        })
    }

    /// A foreign ONNX model (float, or int8 QDQ), its layout read by the importer, fed
    /// `pixel * pixel_scale`.
    pub fn foreign(path: &Path, pixel_scale: f32) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the ONNX model {}", path.display()))?;
        let imported = crate::onnx_import::read_onnx(&bytes)
            .with_context(|| format!("{} is not an importable ONNX model", path.display()))?;
        let output = (imported.quantized.as_ref()).map(|q| q.tensors[q.output].quant);
        Ok(Self::imported(path, bytes, &imported.report, pixel_scale).with_output(output))
    }

    /// An int8 source (`output`: its output quantization, the runtime's output tensor's): its
    /// outputs then compare as int8 codes with the runtime's. A final Softmax, which the
    /// importer drops, is cut off the source too (`qdq::cut_before_final_softmax`), so both
    /// give the logits.
    pub fn int8_source(mut self, output: tinyconv::QuantParams) -> Self {
        if let Some(qdq) = crate::onnx_import::qoperator::qdq_bytes(&self.bytes) {
            self.bytes = qdq;
            self.as_qdq = true;
        }
        if let Some(cut) = crate::onnx_import::qdq::cut_before_final_softmax(&self.bytes) {
            self.bytes = cut;
        }
        self.quantized_output = Some(output);
        self
    }

    /// [`int8_source`](Self::int8_source) when `output` is given.
    pub fn with_output(self, output: Option<tinyconv::QuantParams>) -> Self {
        match output {
            Some(q) => self.int8_source(q),
            None => self,
        }
    }

    /// [`foreign`](Self::foreign) of a file already read (`bytes`) and imported (`report`).
    pub fn imported(
        path: &Path,
        bytes: Vec<u8>,
        report: &crate::onnx_import::ImportReport,
        pixel_scale: f32,
    ) -> Self {
        FloatReference {
            path: path.to_path_buf(),
            bytes,
            dims: report.input_shape.clone(),
            layout: report.input_layout,
            pixel_scale,
            quantized_output: None,
            as_qdq: false,
        }
    }

    /// The model's input tensor for one HWC image.
    fn input(&self, image: &[u8], shape: (usize, usize, usize)) -> anyhow::Result<TractTensor> {
        let (h, w, c) = shape;
        let real = |p: u8| p as f32 * self.pixel_scale;
        let values: Vec<f32> = match self.layout {
            InputLayout::Nhwc | InputLayout::Features => image.iter().map(|&p| real(p)).collect(),
            InputLayout::Nchw => {
                let mut v = vec![0.0; image.len()];
                for (i, &p) in image.iter().enumerate() {
                    let (y, x, ch) = (i / (w * c), i / c % w, i % c);
                    v[ch * h * w + y * w + x] = real(p);
                }
                v
            }
        };
        anyhow::ensure!(
            values.len() == self.dims.iter().product::<usize>(),
            "{} takes {:?} inputs; the images are {h}x{w}x{c}",
            self.path.display(),
            self.dims
        );
        Ok(tract_ndarray::ArrayD::from_shape_vec(self.dims.clone(), values)?.into())
    }
}

/// The runtime against tract on the int8 ONNX twin.
#[derive(Clone, Debug, Serialize)]
pub struct Int8Check {
    pub images: usize,
    pub identical_images: usize,
    pub values: usize,
    pub differing_values: usize,
    /// "stated scales" (every conv output scale a power of two: tract also derives each
    /// multiplier from the scales) or "multipliers" (tract is given the runtime's multipliers:
    /// `onnx_graph::int8_onnx_multipliers`).
    pub form: &'static str,
}

/// The int8 model against its reference: a float model, or the int8 source it was imported
/// from.
#[derive(Clone, Debug, Serialize)]
pub struct FloatCheck {
    pub source: PathBuf,
    /// tract's accuracy on the reference.
    pub accuracy: f64,
    /// Images where the int8 model's class is the reference's.
    pub agreeing: usize,
    pub top1_agreement: f64,
    /// An int8 source only: its output values identical to the runtime's int8 codes, of how
    /// many, and the largest difference in codes.
    pub int8_values: Option<SourceInt8>,
    /// The source ran as the QDQ form of its QOperator nodes.
    pub as_qdq: bool,
}

/// An int8 source model's outputs against the runtime's, as int8 codes.
#[derive(Clone, Debug, Serialize)]
pub struct SourceInt8 {
    pub identical_values: usize,
    pub values: usize,
    pub identical_images: usize,
    pub max_difference: u32,
}

/// What [`check`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct GraphVerification {
    pub rule: &'static str,
    pub images: usize,
    pub int8_accuracy: f64,
    /// `None` under the `tflite` rule (no ONNX twin).
    pub tract_int8: Option<Int8Check>,
    pub float: Option<FloatCheck>,
}

impl GraphVerification {
    /// An error unless the runtime and tract agreed on every int8 value.
    pub fn ensure_identical(&self) -> anyhow::Result<()> {
        if let Some(c) = &self.tract_int8 {
            anyhow::ensure!(
                c.differing_values == 0,
                "the runtime and tract differ on {} of {} int8 output values ({} of {} images \
                 identical): the runtime does not compute the int8 graph it was given; please \
                 report this model",
                c.differing_values,
                c.values,
                c.identical_images,
                c.images
            );
        }
        Ok(())
    }
}

impl std::fmt::Display for GraphVerification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "int8 accuracy (tinyconv runtime, {} rule): {:.2}% on {} images",
            self.rule,
            self.int8_accuracy * 100.0,
            self.images
        )?;
        match &self.tract_int8 {
            Some(c) => writeln!(
                f,
                "runtime vs tract (int8 ONNX, {}): {}/{} images identical, {} of {} values differ",
                c.form, c.identical_images, c.images, c.differing_values, c.values
            )?,
            None => writeln!(
                f,
                "runtime vs tract: not applicable under the tflite rule (its referee is the \
                 TensorFlow Lite / CMSIS-NN golden outputs)"
            )?,
        }
        match &self.float {
            Some(c) if c.int8_values.is_some() => {
                let v = c.int8_values.as_ref().unwrap();
                write!(
                    f,
                    "int8 source {} (tract{}): {:.2}%; {} of {} output values identical ({}/{} \
                     images, largest difference {} code{}); top-1 agreement {:.2}% ({}/{}), \
                     {:+.2} pp",
                    c.source.display(),
                    if c.as_qdq {
                        ", its QOperator nodes in QDQ form"
                    } else {
                        ""
                    },
                    c.accuracy * 100.0,
                    v.identical_values,
                    v.values,
                    v.identical_images,
                    self.images,
                    v.max_difference,
                    if v.max_difference == 1 { "" } else { "s" },
                    c.top1_agreement * 100.0,
                    c.agreeing,
                    self.images,
                    (self.int8_accuracy - c.accuracy) * 100.0
                )
            }
            Some(c) => write!(
                f,
                "float reference {} (tract): {:.2}%; int8 top-1 agreement {:.2}% ({}/{}), {:+.2} pp",
                c.source.display(),
                c.accuracy * 100.0,
                c.top1_agreement * 100.0,
                c.agreeing,
                self.images,
                (self.int8_accuracy - c.accuracy) * 100.0
            ),
            None => write!(f, "no float reference"),
        }
    }
}

/// Runs every check on every image of `split` (converted to the model's input shape).
pub fn check(
    graph: &Graph<'_>,
    split: &tinyconv_datasets::Split,
    float: Option<&FloatReference>,
) -> anyhow::Result<GraphVerification> {
    let Some(pixel_scale) = graph.pixel_scale() else {
        bail!(
            "the model takes its int8 input tensor, not raw pixels: import it with \
             `--input-range 0..1` (or 0..255), the range the source model's input had"
        );
    };
    let classes = graph.output().shape.len();
    let n = split.len();
    anyhow::ensure!(n > 0, "the test split holds no image");
    let ours = runtime_outputs(graph, split)?;
    let predicted: Vec<usize> = ours.chunks(classes).map(argmax).collect();
    let correct = predicted
        .iter()
        .zip(&split.labels)
        .filter(|(p, l)| **p == **l as usize)
        .count();
    let tract_int8 = match graph.rule() {
        Rule::Tflite => None,
        Rule::Onnx => Some(tract_int8_check(graph, pixel_scale, split, &ours)?),
    };
    let float = match float {
        None => None,
        Some(r) => {
            let plan = tract_plan(&r.bytes, Some(&r.dims))
                .with_context(|| format!("tract on {}", r.path.display()))?;
            let shape = (split.height, split.width, split.channels);
            let logits = tract_outputs::<f32>(&plan, split, |img| r.input(img, shape))?;
            anyhow::ensure!(
                logits.len() == n * classes,
                "{} gives {} outputs for {n} images, the int8 model {classes} an image",
                r.path.display(),
                logits.len()
            );
            let (mut right, mut agreeing) = (0, 0);
            for ((row, &ours), &label) in logits.chunks(classes).zip(&predicted).zip(&split.labels)
            {
                let theirs = argmax(row);
                right += usize::from(theirs == label as usize);
                agreeing += usize::from(theirs == ours);
            }
            let int8_values = r
                .quantized_output
                .map(|q| source_int8(&logits, &ours, q, classes));
            Some(FloatCheck {
                source: r.path.clone(),
                accuracy: right as f64 / n as f64,
                agreeing,
                top1_agreement: agreeing as f64 / n as f64,
                int8_values,
                as_qdq: r.as_qdq,
            })
        }
    };
    Ok(GraphVerification {
        rule: graph.rule().name(),
        images: n,
        int8_accuracy: correct as f64 / n as f64,
        tract_int8,
        float,
    })
}

/// An int8 source's float outputs (`(q - z) * s`, its last DequantizeLinear) as codes, against
/// the runtime's codes.
fn source_int8(
    theirs: &[f32],
    ours: &[i8],
    q: tinyconv::QuantParams,
    per_image: usize,
) -> SourceInt8 {
    // (q - z) * s in f32 divided back in f64 is within far less than a half of q - z.
    let code = |v: f32| (v as f64 / q.scale as f64).round_ties_even() as i64 + q.zero_point as i64;
    let mut s = SourceInt8 {
        identical_values: 0,
        values: ours.len(),
        identical_images: 0,
        max_difference: 0,
    };
    for (t, o) in theirs.chunks(per_image).zip(ours.chunks(per_image)) {
        let mut same = true;
        for (&v, &c) in t.iter().zip(o) {
            let d = (code(v) - c as i64).unsigned_abs() as u32;
            s.identical_values += usize::from(d == 0);
            s.max_difference = s.max_difference.max(d);
            same &= d == 0;
        }
        s.identical_images += usize::from(same);
    }
    s
}

/// tract on the int8 twin, fed the int8 input codes. The codes are `pixel - 128` exactly when
/// the input is quantized with the pixel's own scale and zero point -128 (what tinyconv's
/// quantizer gives every pixel model: docs/quantization.md, "The input"); another input
/// quantization would need the runtime's rounding, the code under test, so it is refused.
fn tract_int8_check(
    graph: &Graph<'_>,
    pixel_scale: f32,
    split: &tinyconv_datasets::Split,
    ours: &[i8],
) -> anyhow::Result<Int8Check> {
    let q = graph.input().quant;
    anyhow::ensure!(
        q.scale == pixel_scale && q.zero_point == -128,
        "the model's input is quantized with scale {:e} and zero point {} (not the pixel's \
         scale {pixel_scale:e} and -128), so tract cannot be given the same int8 input",
        q.scale,
        q.zero_point
    );
    // With power-of-two conv output scales this is the stated-scale export (`int8_onnx`).
    let stated = crate::onnx_graph::has_stated_form(graph);
    let onnx = crate::onnx_graph::int8_onnx_multipliers(graph).context("the int8 ONNX export")?;
    let theirs = tract_int8_outputs(&onnx, split)?;
    let per_image = graph.output().shape.len();
    let (identical_images, differing_values) = compare_int8(ours, &theirs, per_image)?;
    Ok(Int8Check {
        images: split.len(),
        identical_images,
        values: ours.len(),
        differing_values,
        form: if stated {
            "stated scales"
        } else {
            "multipliers"
        },
    })
}

/// Loads the dataset of `data_dir` (default: the MNIST directories) for the model file `model`,
/// its images converted to the model's `input` shape, and checks that it has the model's
/// `classes`.
pub fn dataset_for(
    model: &Path,
    input: tinyconv::Shape,
    classes: usize,
    data_dir: Option<&Path>,
    kind: Option<tinyconv_datasets::Kind>,
) -> anyhow::Result<tinyconv_datasets::Dataset> {
    let dir = match data_dir {
        Some(d) => d.to_path_buf(),
        None => crate::data::locate(None)?,
    };
    let dataset = tinyconv_datasets::load(
        &dir,
        &tinyconv_datasets::Options {
            kind,
            input: Some((input.h, input.w, input.c)),
            ..Default::default()
        },
    )
    .with_context(|| format!("loading the dataset in {}", dir.display()))?;
    if classes != dataset.classes.len() {
        bail!(
            "{} has {classes} outputs but the dataset in {} has {} classes: give the dataset \
             the model was trained for",
            model.display(),
            dir.display(),
            dataset.classes.len()
        );
    }
    Ok(dataset)
}

/// The float reference of a version-2 model file, when there is one: `source` when given; else
/// the original named by the import report beside it (`FILE.import.json`), when that was an
/// ONNX model; else the float export `tinyconv train` writes beside it (`FILE.onnx`).
pub fn float_reference_of(
    model: &Path,
    graph: &Graph<'_>,
    source: Option<&Path>,
) -> anyhow::Result<Option<FloatReference>> {
    let pixel_scale = graph.pixel_scale().unwrap_or(1.0 / 255.0);
    if let Some(s) = source {
        return FloatReference::foreign(s, pixel_scale).map(Some);
    }
    let report = crate::import::default_report_path(model);
    if report.exists() {
        let text = std::fs::read_to_string(&report)
            .with_context(|| format!("cannot read {}", report.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", report.display()))?;
        if json["source_format"] != "onnx" && json["source_format"] != "onnx-int8" {
            return Ok(None);
        }
        let Some(original) = json["source"].as_str() else {
            bail!("{} names no source model", report.display());
        };
        let original = PathBuf::from(original);
        if !original.exists() {
            bail!(
                "{} names the original model {}, which is not there: pass --source FILE.onnx",
                report.display(),
                original.display()
            );
        }
        return FloatReference::foreign(&original, pixel_scale).map(Some);
    }
    let export = model.with_extension("onnx");
    if export.exists() {
        return FloatReference::trained_export(&export, graph.input().shape).map(Some);
    }
    Ok(None)
}

/// `tinyconv verify` of a version-2 model: [`check`] on the test set of `data_dir` (optionally
/// its first `limit` images). The caller prints it, then fails on
/// [`GraphVerification::ensure_identical`].
pub fn verify_command(
    model: &Path,
    bytes: &[u8],
    data_dir: Option<&Path>,
    kind: Option<tinyconv_datasets::Kind>,
    limit: Option<usize>,
    source: Option<&Path>,
) -> anyhow::Result<GraphVerification> {
    let graph = Graph::parse(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
    let float = float_reference_of(model, &graph, source)?;
    let classes = graph.output().shape.len();
    let dataset = dataset_for(model, graph.input().shape, classes, data_dir, kind)?;
    let test = match limit {
        Some(n) => dataset.test.truncated(n),
        None => dataset.test,
    };
    check(&graph, &test, float.as_ref())
}
