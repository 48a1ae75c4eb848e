//! One full inference of the seed network (pseudo-random weights: speed does not depend on
//! their values) and each layer on its own, single-threaded on the host.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tinyconv::testing::{SplitMix64, seed_network};
use tinyconv::{Model, Op, run_layer};

fn inference(c: &mut Criterion) {
    let bytes = seed_network(1).to_bytes().unwrap();
    let model = Model::parse(&bytes).unwrap();
    let pixels = SplitMix64(5).bytes(784);
    let mut arena = vec![0i8; model.arena_len()];
    c.bench_function("seed_network/full_inference", |b| {
        b.iter(|| model.infer(black_box(&pixels), &mut arena).unwrap().class)
    });

    let mut group = c.benchmark_group("seed_network/layer");
    for (i, layer) in model.layers().enumerate() {
        if layer.op == Op::Flatten {
            continue;
        }
        let input: Vec<i8> = SplitMix64(i as u64)
            .bytes(layer.input.len())
            .into_iter()
            .map(|b| b as i8)
            .collect();
        let mut output = vec![0i8; layer.output.len()];
        let name = format!(
            "{i}_{}_{}x{}x{}",
            layer.op.name(),
            layer.output.h,
            layer.output.w,
            layer.output.c
        );
        group.bench_function(name, |b| {
            b.iter(|| run_layer(&layer, black_box(&input), &mut output))
        });
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
