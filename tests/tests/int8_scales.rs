//! Which quantization scales tract computes exactly as the runtime does, on real MNIST images.
//!
//! tract lowers `QLinearConv` to an integer matmul followed by a `Scale` op whose f32 scale per
//! output channel it folds from `x_scale * w_scale / y_scale` while optimizing, in an order that
//! depends on the layer. These tests read the folded scales out of tract's optimized plan,
//! compare them with the runtime's multipliers, and run both engines on the test set.

use std::path::PathBuf;

use tinyconv::Model;
use tinyconv_trainer::data::{self, Split};
use tinyconv_trainer::evaluate::run_runtime;
use tinyconv_trainer::onnx;
use tinyconv_trainer::quantize::QuantizedCnn;
use tinyconv_trainer::referee::tract_int8_logits;
use tract_onnx::prelude::*;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist")
}

fn committed() -> QuantizedCnn {
    let tcm = std::fs::read(models().join("mnist-cnn.tcm")).unwrap();
    QuantizedCnn::from_model(&Model::parse(&tcm).unwrap()).unwrap()
}

/// tract's optimized plan of an int8 ONNX model for batches of `batch` images.
fn optimized(onnx: &[u8], batch: usize) -> TypedModel {
    tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .unwrap()
        .with_input_fact(
            0,
            InferenceFact::dt_shape(f32::datum_type(), [batch, 1, 28, 28]),
        )
        .unwrap()
        .into_optimized()
        .unwrap()
}

/// The per-channel f32 scales of the `Scale` ops in tract's optimized plan, by node name.
fn tract_scales(onnx: &[u8]) -> Vec<(String, Vec<f32>)> {
    let model = optimized(onnx, 1);
    let mut out = Vec::new();
    for node in model.nodes() {
        if node.op.name() == "Scale" {
            let fact = model.outlet_fact(node.inputs[0]).unwrap();
            let k = fact.konst.as_ref().expect("a constant scale");
            let v: Vec<f32> = k
                .cast_to::<f32>()
                .unwrap()
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            out.push((node.name.clone(), v));
        }
    }
    out
}

/// The four ways to fold `x_scale * w_scale / y_scale` in f32.
fn candidates(x: f32, w: f32, y: f32) -> [f32; 4] {
    [
        w * (x * (1.0 / y)),
        (x * w) * (1.0 / y),
        x * (w * (1.0 / y)),
        (x * w) / y,
    ]
}

const ORDER_NAMES: [&str; 4] = [
    "s_w*(s_in*(1/s_out))",
    "(s_in*s_w)*(1/s_out)",
    "s_in*(s_w*(1/s_out))",
    "(s_in*s_w)/s_out",
];

/// Per layer: channels, channels where tract's scale is the runtime's, and per candidate order
/// the channels it reproduces.
fn compare_scales(q: &QuantizedCnn, bytes: &[u8]) -> Vec<(String, usize, usize, [usize; 4])> {
    let tcm = q.to_spec().to_bytes().unwrap();
    let model = Model::parse(&tcm).unwrap();
    let runtime: Vec<Vec<f32>> = model
        .layers()
        .filter(|l| l.has_weights())
        .map(|l| {
            (0..l.output.c)
                .map(|c| l.multiplier(c).to_scale())
                .collect()
        })
        .collect();
    let tract = tract_scales(bytes);
    assert_eq!(tract.len(), 5);
    let mut out = Vec::new();
    for (((name, t), r), l) in tract.iter().zip(&runtime).zip(&q.layers) {
        assert_eq!(t.len(), r.len(), "{name}");
        let same = t
            .iter()
            .zip(r)
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        let mut per_order = [0; 4];
        for (c, &tc) in t.iter().enumerate() {
            let cand = candidates(l.input.scale, l.weight_scales[c], l.output.scale);
            for (k, v) in cand.iter().enumerate() {
                per_order[k] += (v.to_bits() == tc.to_bits()) as usize;
            }
        }
        out.push((name.clone(), t.len(), same, per_order));
    }
    out
}

fn print_comparison(title: &str, rows: &[(String, usize, usize, [usize; 4])]) {
    println!(
        "{title}: channels where tract's f32 scale equals [runtime | {}]",
        ORDER_NAMES.join(" | ")
    );
    for (name, n, same, per) in rows {
        println!("  {name:<12} {n:>4} channels: runtime {same:>4}  orders {per:?}");
    }
}

/// `q` with every hidden tensor's scale multiplied by a pseudo-random factor in [1, 2).
fn random_scales(q: &QuantizedCnn, seed: u64) -> QuantizedCnn {
    let mut rng = tinyconv::testing::SplitMix64(seed);
    let mut q = q.clone();
    for i in 0..4 {
        let s = q.layers[i].output.scale * (1.0 + rng.unit());
        q.layers[i].output.scale = s;
        q.layers[i + 1].input.scale = s;
    }
    q
}

/// `(images, images whose int8 logits differ, logits that differ)` between the runtime and
/// tract on `split`.
fn engines_differ(q: &QuantizedCnn, onnx_bytes: &[u8], split: &Split) -> (usize, usize, usize) {
    let tcm = q.to_spec().to_bytes().unwrap();
    let model = Model::parse(&tcm).unwrap();
    let runtime = run_runtime(&model, split).logits;
    let dir = std::env::temp_dir().join(format!("tinyconv-int8-scales-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:016x}.onnx", fnv(onnx_bytes)));
    std::fs::write(&path, onnx_bytes).unwrap();
    let tract = tract_int8_logits(&path, split).unwrap();
    std::fs::remove_file(&path).unwrap();
    let images = runtime
        .chunks(10)
        .zip(tract.chunks(10))
        .filter(|(a, b)| a != b)
        .count();
    let logits = runtime.iter().zip(&tract).filter(|(a, b)| a != b).count();
    (split.len(), images, logits)
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn test_set() -> Split {
    data::load(&data_dir()).unwrap().test
}

fn all_equal(rows: &[(String, usize, usize, [usize; 4])]) -> bool {
    rows.iter()
        .all(|(_, n, same, per)| same == n && per.iter().all(|p| p == n))
}

#[test]
fn the_committed_scales_fold_to_the_runtime_multipliers_in_every_order() {
    let q = committed();
    let rows = compare_scales(&q, &onnx::int8_model(&q).unwrap());
    print_comparison("committed model", &rows);
    assert!(all_equal(&rows));
    assert_eq!(rows.iter().map(|r| r.1).sum::<usize>(), 910);
}

/// The negative control of the scale check: the committed model with random non-power-of-two
/// hidden scales. tract folds them in a different order in conv2..fc1 than in conv1, so no
/// single formula in the runtime reproduces every channel, and logits differ; the exporter
/// refuses the model. Folded to power-of-two tensor scales, the same int8 network is exact.
#[test]
fn random_non_power_of_two_scales_are_rejected_and_exact_once_folded() {
    let test = test_set();
    let q = committed();
    for seed in 1..=2 {
        let r = random_scales(&q, seed);
        assert!(matches!(
            onnx::int8_model(&r),
            Err(onnx::ExportError::OutputScale { layer: "conv1", .. })
        ));
        let unchecked = onnx::int8_model_any_scales(&r).unwrap();
        let rows = compare_scales(&r, &unchecked);
        print_comparison(&format!("random scales, seed {seed}"), &rows);
        // conv1 folds as the runtime does; conv2, conv3 and fc1 as (s_in * s_w) * (1 / s_out).
        assert_eq!(rows[0].2, rows[0].1);
        for row in &rows[1..4] {
            assert_eq!(row.3[1], row.1, "{}", row.0);
            assert!(
                row.2 < row.1,
                "{}: the runtime's order matches every channel",
                row.0
            );
        }
        let (n, images, logits) = engines_differ(&r, &unchecked, &test);
        println!("  runtime vs tract: {images} of {n} images differ ({logits} logits)");

        let folded = r.fold_to_pow2();
        let exported = onnx::int8_model(&folded).unwrap();
        let rows = compare_scales(&folded, &exported);
        assert!(all_equal(&rows));
        let (n, images, logits) = engines_differ(&folded, &exported, &test);
        println!("  folded: runtime vs tract: {images} of {n} images differ ({logits} logits)");
        assert_eq!((images, logits), (0, 0));
    }
}

/// The calibrator's choice, measured: the committed float model calibrated as `tinyconv train`
/// does (2,000 training images), quantized with power-of-two and with free activation scales,
/// int8 accuracy through the runtime on all 10,000 test images; and the free model through
/// tract, unfolded (rejected by the exporter) and folded (exact).
#[test]
fn calibrated_free_scales() {
    use tinyconv_trainer::evaluate::Accuracy;
    use tinyconv_trainer::quantize::{ActivationScales, calibrate};
    use tinyconv_trainer::referee::{argmax_rows, burn_logits};

    let device = burn::tensor::Device::flex();
    let cnn = tinyconv_trainer::train::load_float_model(&models().join("model_float.bpk"), &device)
        .unwrap();
    let mnist = data::load(&data_dir()).unwrap();
    let ranges = calibrate(&cnn, &mnist.train, 2000, &device);
    let accuracy = |q: &QuantizedCnn| {
        let tcm = q.to_spec().to_bytes().unwrap();
        let model = Model::parse(&tcm).unwrap();
        Accuracy::new(
            &run_runtime(&model, &mnist.test).classes,
            &mnist.test.labels,
            data::NUM_CLASSES,
        )
    };
    let float = Accuracy::new(
        &argmax_rows(&burn_logits(&cnn, &mnist.test)),
        &mnist.test.labels,
        data::NUM_CLASSES,
    );

    // Power of two: what `tinyconv train` does; it reproduces the committed file to the byte.
    let pow2 = QuantizedCnn::for_export(&cnn, &ranges, ActivationScales::PowerOfTwo);
    assert_eq!(
        pow2.to_spec().to_bytes().unwrap(),
        std::fs::read(models().join("mnist-cnn.tcm")).unwrap()
    );
    assert!(
        onnx::int8_model(&pow2).unwrap()
            == std::fs::read(models().join("mnist-cnn.int8.onnx")).unwrap()
    );
    let free = QuantizedCnn::with_scales(&cnn, &ranges, ActivationScales::Free);
    let folded = free.fold_to_pow2();
    let (a_pow2, a_free, a_folded) = (accuracy(&pow2), accuracy(&free), accuracy(&folded));
    println!(
        "float {:.2}% ({}), int8 power-of-two {:.2}% ({}, loss {:.2} pp), free {:.2}% ({}, loss {:.2} pp), free folded {:.2}% ({}, loss {:.2} pp)",
        float.accuracy * 100.0,
        float.correct,
        a_pow2.accuracy * 100.0,
        a_pow2.correct,
        (float.accuracy - a_pow2.accuracy) * 100.0,
        a_free.accuracy * 100.0,
        a_free.correct,
        (float.accuracy - a_free.accuracy) * 100.0,
        a_folded.accuracy * 100.0,
        a_folded.correct,
        (float.accuracy - a_folded.accuracy) * 100.0,
    );
    for (i, (p, f)) in pow2.layers.iter().zip(&free.layers).enumerate() {
        println!(
            "  tensor {i}: power-of-two scale {:e} (zp {}), free {:e} (zp {})",
            p.output.scale, p.output.zero_point, f.output.scale, f.output.zero_point
        );
    }

    assert!(onnx::int8_model(&free).is_err());
    let unchecked = onnx::int8_model_any_scales(&free).unwrap();
    print_comparison("free scales", &compare_scales(&free, &unchecked));
    let (n, images, logits) = engines_differ(&free, &unchecked, &mnist.test);
    println!("free, unfolded: runtime vs tract: {images} of {n} images differ ({logits} logits)");

    let exported = onnx::int8_model(&folded).unwrap();
    assert!(all_equal(&compare_scales(&folded, &exported)));
    let (n, images, logits) = engines_differ(&folded, &exported, &mnist.test);
    println!("free, folded: runtime vs tract: {images} of {n} images differ ({logits} logits)");
    assert_eq!((n, images, logits), (10_000, 0, 0));
}

/// tract's `QuantizeLinear` of `f32(p / 255)` against the runtime's `rne(p * f32(1/255 / s_in))`
/// for every pixel value, with input scales other than the pixel scale: the two roundings are
/// not the same function, which is why the exporter only takes `s_in = 1/255`.
#[test]
fn other_input_scales_quantize_pixels_differently() {
    let q = committed();
    let mut rng = tinyconv::testing::SplitMix64(5);
    let pixels: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
    let input: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let input: Tensor = tract_ndarray::Array4::from_shape_vec((1, 1, 28, 28), input)
        .unwrap()
        .into();
    // Random scales, and simple ratios to 1/255 (a / b / 255), where ties are likely.
    let mut scales: Vec<f32> = (0..100)
        .map(|_| (0.25 + 2.0 * rng.unit()) / 255.0)
        .collect();
    for a in 1..=12 {
        for b in 1..=12 {
            if a != b {
                scales.push(a as f32 / (b as f32 * 255.0));
            }
        }
    }
    let (mut scales_differing, mut codes_differing, tried) = (0, 0, scales.len());
    let mut witness = None;
    for &scale in &scales {
        let mut r = q.clone();
        r.input.scale = scale;
        r.layers[0].input.scale = r.input.scale;
        assert!(matches!(
            onnx::int8_model(&r),
            Err(onnx::ExportError::InputScale { .. })
        ));
        let bytes = onnx::int8_model_any_scales(&r).unwrap();
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .unwrap()
            .with_input_fact(
                0,
                InferenceFact::dt_shape(f32::datum_type(), [1, 1, 28, 28]),
            )
            .unwrap()
            .with_outputs_by_name([onnx::INT8_INPUT])
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let out = plan.run(tvec!(input.clone().into())).unwrap();
        let tract: Vec<i8> = out[0]
            .to_plain_array_view::<i8>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let tcm = r.to_spec().to_bytes().unwrap();
        let model = Model::parse(&tcm).unwrap();
        let mut runtime = vec![0i8; 784];
        tinyconv::quantize_pixels(&model, &pixels, &mut runtime);
        let differing = (0..256).filter(|&i| tract[i] != runtime[i]).count();
        if differing > 0 {
            scales_differing += 1;
            codes_differing += differing;
            if witness.is_none() {
                let p = (0..256).find(|&i| tract[i] != runtime[i]).unwrap();
                witness = Some((r.input.scale, p, tract[p], runtime[p]));
            }
        }
    }
    println!(
        "input scales: {scales_differing} of {tried} scales quantize some pixel value differently \
         ({codes_differing} of {} codes); first: s_in = {:?}",
        tried * 256,
        witness.map(|(s, p, t, r)| format!(
            "{s:e} ({:#010x}), pixel {p}: tract {t}, runtime {r}",
            s.to_bits()
        ))
    );
    assert!(scales_differing > 0);
}
