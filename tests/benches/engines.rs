//! The engines the referee compares, timed on the committed model and real MNIST test images:
//!
//! - `single_image/*`: one image at a time, one thread — the latency a device or a server
//!   answering one request sees. Each engine starts from the raw u8 pixels (the runtime
//!   quantizes them inside `infer`; tract's inputs are built from the pixels in the loop).
//! - `test_set_1000/*`: 1,000 test images, the way `tinyconv verify` runs the 10,000-image
//!   check (×10): the runtime single-threaded and on every core, tract in batches of 500.
//!
//! `cargo bench -p tinyconv-tests --bench engines`; figures and ratios in docs/performance.md.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tinyconv::Model;
use tinyconv_trainer::data::{self, IMAGE_PIXELS, IMAGE_SIDE, Split};
use tinyconv_trainer::evaluate::run_runtime;
use tinyconv_trainer::referee::tract_plan;
use tract_onnx::prelude::*;

/// Distinct images cycled through by the single-image benchmarks.
const SAMPLE: usize = 64;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn test_split() -> Split {
    data::load(&repo().join("../shared/data/mnist"))
        .expect("MNIST in ../shared/data/mnist")
        .test
}

/// `verify`'s batch size for tract.
const TRACT_BATCH: usize = 500;

/// tract's input for whole images, for both ONNX models (the int8 one quantizes it itself with
/// QuantizeLinear): `[n, 1, 28, 28]`, pixel / 255.
fn float_batch(pixels: &[u8]) -> Tensor {
    let floats: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let n = pixels.len() / IMAGE_PIXELS;
    tract_ndarray::Array4::from_shape_vec((n, 1, IMAGE_SIDE, IMAGE_SIDE), floats)
        .unwrap()
        .into()
}

fn engines(c: &mut Criterion) {
    let models = repo().join("models");
    let bytes = std::fs::read(models.join("mnist-cnn.tcm")).expect("models/mnist-cnn.tcm");
    let model = Model::parse(&bytes).expect("the committed model parses");
    let float_onnx = models.join("mnist-cnn.onnx");
    let int8_onnx = models.join("mnist-cnn.int8.onnx");
    let test = test_split();

    let mut single = c.benchmark_group("single_image");
    single.throughput(Throughput::Elements(1));
    let mut arena = vec![0i8; model.arena_len()];
    let mut i = 0;
    single.bench_function("runtime_int8", |b| {
        b.iter(|| {
            i = (i + 1) % SAMPLE;
            model
                .infer(black_box(test.image(i)), &mut arena)
                .unwrap()
                .class
        })
    });
    let plan = tract_plan(&float_onnx, f32::datum_type(), 1).unwrap();
    single.bench_function("tract_float", |b| {
        b.iter(|| {
            i = (i + 1) % SAMPLE;
            plan.run(tvec!(float_batch(black_box(test.image(i))).into()))
                .unwrap()
        })
    });
    let plan = tract_plan(&int8_onnx, f32::datum_type(), 1).unwrap();
    single.bench_function("tract_int8", |b| {
        b.iter(|| {
            i = (i + 1) % SAMPLE;
            plan.run(tvec!(float_batch(black_box(test.image(i))).into()))
                .unwrap()
        })
    });
    single.finish();

    let slice = test.truncated(1000);
    let mut batch = c.benchmark_group("test_set_1000");
    batch
        .throughput(Throughput::Elements(slice.len() as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    batch.bench_function("runtime_int8_1_thread", |b| {
        b.iter(|| {
            (0..slice.len())
                .map(|i| model.infer(slice.image(i), &mut arena).unwrap().class)
                .sum::<usize>()
        })
    });
    batch.bench_function("runtime_int8_all_threads", |b| {
        b.iter(|| run_runtime(&model, black_box(&slice)))
    });
    // tract's plans are optimized once (as `verify` does for all 10,000 images); the loop
    // times building the input tensors and running them.
    let plan = tract_plan(&float_onnx, f32::datum_type(), TRACT_BATCH).unwrap();
    batch.bench_function("tract_float_batch_500", |b| {
        b.iter(|| {
            for start in (0..slice.len()).step_by(TRACT_BATCH) {
                let images = &slice.images[start * IMAGE_PIXELS..][..TRACT_BATCH * IMAGE_PIXELS];
                plan.run(tvec!(float_batch(black_box(images)).into()))
                    .unwrap();
            }
        })
    });
    let plan = tract_plan(&int8_onnx, f32::datum_type(), TRACT_BATCH).unwrap();
    batch.bench_function("tract_int8_batch_500", |b| {
        b.iter(|| {
            for start in (0..slice.len()).step_by(TRACT_BATCH) {
                let images = &slice.images[start * IMAGE_PIXELS..][..TRACT_BATCH * IMAGE_PIXELS];
                plan.run(tvec!(float_batch(black_box(images)).into()))
                    .unwrap();
            }
        })
    });
    batch.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
