//! Models trained by someone else, tested on their own data: two Keras MNIST CNNs (a plain one
//! and a residual one with batch norm, a depthwise separable block, stride-2 convs, an ADD and
//! a whole-map average pool), quantized to int8 by TensorFlow Lite's converter. Made once by
//! `scripts/foreign-models/make.py` and committed in `tests/data/foreign/` with what TFLite's
//! reference interpreter (BUILTIN_REF) computed for them: its int8 accuracy on the 10,000 MNIST
//! test images, its predicted class for each, and its int8 outputs for the first 200.
//!
//! Imported, written, parsed back and run by the runtime on all 10,000 images (read from
//! `../shared/data/mnist`), each model must score within 0.2 percentage points of TFLite's
//! accuracy, and on the first 200 give TFLite's outputs to within 1 (the reference interpreter
//! rounds FULLY_CONNECTED once where the runtime, like TFLM and CMSIS-NN, rounds twice), with
//! the same class on at least 99.5 % of them. The input quantization is checked byte for byte
//! against the script's. Negative controls: a zero point off by one, and one flipped weight,
//! must each fail the comparisons.

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;
use tinyconv::graph::{Graph, GraphSpec, OpSpec};
use tinyconv_tflite::{ImportReport, Model, import};

const MODELS: [&str; 2] = ["keras_cnn", "keras_resnet"];
const SAVED: usize = 200;
const PIXELS: usize = 28 * 28;
const CLASSES: usize = 10;
const TEST_IMAGES: usize = 10_000;

fn data_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/foreign"
    ))
}

fn mnist_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/mnist"
    ))
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn committed(file: &str) -> Vec<u8> {
    read(data_dir().join(file))
}

fn committed_i8(file: &str) -> Vec<i8> {
    committed(file).into_iter().map(|b| b as i8).collect()
}

fn results() -> Value {
    let text = String::from_utf8(committed("results.json")).expect("results.json is UTF-8");
    serde_json::from_str(&text).expect("results.json parses")
}

fn gunzip(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&read(mnist_dir().join(name))[..])
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    out
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// The MNIST test set: 10,000 images of 784 u8 pixels (row-major), and their labels.
fn mnist_test() -> (Vec<u8>, Vec<u8>) {
    let images = gunzip("t10k-images-idx3-ubyte.gz");
    let labels = gunzip("t10k-labels-idx1-ubyte.gz");
    assert_eq!(be32(&images, 0), 2051, "image IDX magic");
    assert_eq!(
        (be32(&images, 4), be32(&images, 8), be32(&images, 12)),
        (TEST_IMAGES, 28, 28)
    );
    assert_eq!(be32(&labels, 0), 2049, "label IDX magic");
    assert_eq!(be32(&labels, 4), TEST_IMAGES);
    let (images, labels) = (images[16..].to_vec(), labels[8..].to_vec());
    assert_eq!(images.len(), TEST_IMAGES * PIXELS);
    assert_eq!(labels.len(), TEST_IMAGES);
    (images, labels)
}

/// The script's input quantization (make.py, `quantize_input`), in f32 as numpy does it:
/// `clip(round_half_even(f32(p) / 255 / scale) + zp, -128, 127)`.
fn quantize(pixels: &[u8], scale: f32, zero_point: i32) -> Vec<i8> {
    pixels
        .iter()
        .map(|&p| {
            let q = (p as f32 / 255.0 / scale).round_ties_even() as i32 + zero_point;
            q.clamp(-128, 127) as i8
        })
        .collect()
}

/// The class: the first index of the largest value (numpy's argmax, as the script uses).
fn argmax(v: &[i8]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

struct Imported {
    spec: GraphSpec,
    report: ImportReport,
    file_len: usize,
}

fn import_model(name: &str) -> Imported {
    let bytes = committed(&format!("{name}.int8.tflite"));
    let model = Model::parse(&bytes).unwrap_or_else(|e| panic!("{name}: parse: {e}"));
    let imported = import(&model).unwrap_or_else(|e| panic!("{name}: import: {e}"));
    Imported {
        spec: imported.spec,
        report: imported.report,
        file_len: bytes.len(),
    }
}

/// Runs `spec` (written and parsed back) on `count` int8 inputs; returns every output.
fn run(name: &str, spec: &GraphSpec, inputs: &[i8], count: usize) -> Vec<i8> {
    let bytes = spec
        .to_bytes()
        .unwrap_or_else(|e| panic!("{name}: to_bytes: {e}"));
    let graph = Graph::parse(&bytes).unwrap_or_else(|e| panic!("{name}: Graph::parse: {e}"));
    assert_eq!(graph.input().shape.len(), PIXELS, "{name}: input size");
    assert_eq!(graph.output().shape.len(), CLASSES, "{name}: output size");
    let mut arena = vec![0; graph.arena_len()];
    let mut out = Vec::with_capacity(count * CLASSES);
    for k in 0..count {
        let o = graph
            .infer_int8(&inputs[k * PIXELS..(k + 1) * PIXELS], &mut arena)
            .unwrap_or_else(|e| panic!("{name} image {k}: {e}"));
        out.extend_from_slice(o);
    }
    out
}

/// How outputs compare with the reference: values differing, the largest |difference|, and
/// images whose class agrees.
#[derive(Debug, PartialEq, Eq)]
struct Comparison {
    differing: usize,
    max_diff: i32,
    same_class: usize,
}

fn compare(reference: &[i8], actual: &[i8]) -> Comparison {
    assert_eq!(reference.len(), actual.len());
    let differing = reference.iter().zip(actual).filter(|(r, a)| r != a).count();
    let max_diff = reference
        .iter()
        .zip(actual)
        .map(|(&r, &a)| (r as i32 - a as i32).abs())
        .max()
        .unwrap_or(0);
    let same_class = reference
        .chunks(CLASSES)
        .zip(actual.chunks(CLASSES))
        .filter(|(r, a)| argmax(r) == argmax(a))
        .count();
    Comparison {
        differing,
        max_diff,
        same_class,
    }
}

/// The bar the first 200 outputs must clear: within 1 of TFLite's, the same class on 99.5 %.
fn acceptable(c: &Comparison) -> bool {
    c.max_diff <= 1 && c.same_class * 1000 >= SAVED * 995
}

fn input_quant(results: &Value, name: &str) -> (f32, i32) {
    let q = &results["models"][name]["input"];
    (
        q["scale"].as_f64().unwrap() as f32,
        q["zero_point"].as_i64().unwrap() as i32,
    )
}

#[test]
fn the_keras_models_import_with_the_ops_tflite_lists() {
    let results = results();
    for name in MODELS {
        let r = &results["models"][name];
        let m = import_model(name);
        assert!(m.file_len <= 100_000, "{name}: {} bytes", m.file_len);
        // The importer maps every operator one to one: the counts of the interpreter's op list.
        let mut expected = std::collections::BTreeMap::new();
        for op in r["tflite_ops"].as_array().unwrap() {
            *expected
                .entry(op.as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        assert_eq!(m.report.op_counts, expected, "{name}");
        assert!(
            m.report.dropped.is_empty(),
            "{name}: {:?}",
            m.report.dropped
        );
        assert_eq!(m.spec.rule, tinyconv::graph::Rule::Tflite);
        let (scale, zp) = input_quant(&results, name);
        let input = m.spec.tensors[m.spec.input];
        assert_eq!(
            (input.quant.scale, input.quant.zero_point as i32),
            (scale, zp)
        );
        let output = m.spec.tensors[m.spec.output];
        let o = &r["output"];
        assert_eq!(
            (output.quant.scale, output.quant.zero_point as i64),
            (
                o["scale"].as_f64().unwrap() as f32,
                o["zero_point"].as_i64().unwrap()
            ),
            "{name}: output quantization"
        );
        let bytes = m.spec.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        let params: usize = m
            .spec
            .ops
            .iter()
            .map(|op| match op {
                OpSpec::Conv2d { params, .. } | OpSpec::Dense { params, .. } => {
                    params.weights.len() + params.bias.len()
                }
                _ => 0,
            })
            .sum();
        println!(
            "{name}: {} bytes tflite -> {} bytes tcm, {} ops {:?}, {params} params, arena {} bytes, \
             input scale {scale:e} zero point {zp}",
            m.file_len,
            bytes.len(),
            m.spec.ops.len(),
            m.report.op_counts,
            graph.arena_len()
        );
    }
}

#[test]
fn the_input_quantization_is_the_scripts_byte_for_byte() {
    let results = results();
    let (images, _) = mnist_test();
    for name in MODELS {
        let (scale, zp) = input_quant(&results, name);
        let expected = committed_i8(&format!("{name}.inputs.i8"));
        assert_eq!(expected.len(), SAVED * PIXELS, "{name}: inputs file");
        let ours = quantize(&images[..SAVED * PIXELS], scale, zp);
        let differing = expected.iter().zip(&ours).filter(|(e, o)| e != o).count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} quantized input bytes differ"
        );
        // Negative control: the zero point off by one changes (nearly) every byte.
        let off = quantize(&images[..SAVED * PIXELS], scale, zp + 1);
        let differing = expected.iter().zip(&off).filter(|(e, o)| e != o).count();
        println!(
            "{name}: 156800 input bytes equal; with zero point {}: {differing} differ",
            zp + 1
        );
        assert!(
            differing > 0,
            "{name}: the zero point control changed nothing"
        );
    }
}

#[test]
fn accuracy_on_the_10000_test_images_matches_tflite_int8() {
    let results = results();
    let (images, labels) = mnist_test();
    for name in MODELS {
        let r = &results["models"][name];
        let (scale, zp) = input_quant(&results, name);
        let m = import_model(name);
        let outputs = run(name, &m.spec, &quantize(&images, scale, zp), TEST_IMAGES);
        let classes: Vec<usize> = outputs.chunks(CLASSES).map(argmax).collect();
        let correct = classes
            .iter()
            .zip(&labels)
            .filter(|(c, l)| **c == **l as usize)
            .count();
        let reference = committed(&format!("{name}.tflite-ref.classes.u8"));
        assert_eq!(reference.len(), TEST_IMAGES, "{name}: classes file");
        let ref_correct = reference
            .iter()
            .zip(&labels)
            .filter(|(c, l)| c == l)
            .count();
        let tflite_correct = r["tflite_int8_test_correct"].as_u64().unwrap() as usize;
        assert_eq!(
            ref_correct, tflite_correct,
            "{name}: the classes file and results.json disagree"
        );
        let agree = classes
            .iter()
            .zip(&reference)
            .filter(|(c, r)| **c == **r as usize)
            .count();
        let float = r["keras_float_test_accuracy"].as_f64().unwrap() * 100.0;
        println!(
            "{name}: tinyconv runtime {:.2} % ({correct}/10000), TFLite int8 BUILTIN_REF {:.2} % \
             ({tflite_correct}/10000), Keras float {float:.2} %; same class as TFLite on {agree}/10000",
            correct as f64 / 100.0,
            tflite_correct as f64 / 100.0
        );
        // 0.2 percentage points of 10,000 images = 20 images.
        assert!(
            correct.abs_diff(tflite_correct) <= 20,
            "{name}: runtime {correct}/10000 vs TFLite {tflite_correct}/10000"
        );
        assert!(
            agree * 1000 >= TEST_IMAGES * 995,
            "{name}: same class as TFLite on only {agree}/10000"
        );
    }
}

#[test]
fn the_first_200_outputs_match_the_tflite_reference() {
    let results = results();
    let (images, _) = mnist_test();
    for name in MODELS {
        let (scale, zp) = input_quant(&results, name);
        let reference = committed_i8(&format!("{name}.tflite-ref.outputs.i8"));
        assert_eq!(reference.len(), SAVED * CLASSES, "{name}: outputs file");
        let inputs = quantize(&images[..SAVED * PIXELS], scale, zp);
        let m = import_model(name);
        let c = compare(&reference, &run(name, &m.spec, &inputs, SAVED));
        println!(
            "{name}: {} of {} output values differ from TFLite BUILTIN_REF (max |diff| {}), \
             same class on {}/{SAVED}",
            c.differing,
            SAVED * CLASSES,
            c.max_diff,
            c.same_class
        );
        assert!(acceptable(&c), "{name}: {c:?}");
    }
}

/// The comparison above can fail: the input zero point off by one, or the dense layer's
/// largest weight negated, must each change outputs beyond what the unperturbed model shows,
/// and the flipped weight must break the ±1 bar.
#[test]
fn a_perturbed_model_or_input_fails_the_comparison() {
    let results = results();
    let (images, _) = mnist_test();
    for name in MODELS {
        let (scale, zp) = input_quant(&results, name);
        let reference = committed_i8(&format!("{name}.tflite-ref.outputs.i8"));
        let pixels = &images[..SAVED * PIXELS];
        let m = import_model(name);
        let baseline = compare(
            &reference,
            &run(name, &m.spec, &quantize(pixels, scale, zp), SAVED),
        );

        let shifted = compare(
            &reference,
            &run(name, &m.spec, &quantize(pixels, scale, zp + 1), SAVED),
        );

        let mut spec = m.spec.clone();
        let Some(OpSpec::Dense { params, .. }) = spec
            .ops
            .iter_mut()
            .rev()
            .find(|op| matches!(op, OpSpec::Dense { .. }))
        else {
            panic!("{name} has a dense op")
        };
        let (at, w) = params
            .weights
            .iter()
            .enumerate()
            .max_by_key(|(_, w)| w.unsigned_abs())
            .map(|(i, &w)| (i, w))
            .unwrap();
        params.weights[at] = -w;
        let flipped = compare(
            &reference,
            &run(name, &spec, &quantize(pixels, scale, zp), SAVED),
        );
        println!(
            "{name}: differing values / max |diff| / same class: unperturbed {}/{}/{}, \
             zero point {} {}/{}/{}, dense weight {at} {w} -> {} {}/{}/{}",
            baseline.differing,
            baseline.max_diff,
            baseline.same_class,
            zp + 1,
            shifted.differing,
            shifted.max_diff,
            shifted.same_class,
            -w,
            flipped.differing,
            flipped.max_diff,
            flipped.same_class
        );
        assert!(
            shifted.differing > baseline.differing,
            "{name}: {shifted:?}"
        );
        assert!(
            flipped.differing > baseline.differing,
            "{name}: {flipped:?}"
        );
        assert!(!acceptable(&flipped), "{name}: {flipped:?}");
    }
}
