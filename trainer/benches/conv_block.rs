//! The training kernels of one conv block (`trainer/src/batch_conv`: convolution + bias, ReLU,
//! 2x2 max pool, channel-major) on the seed network's three block shapes at the default batch
//! of 1,000: forward, backward without the input gradient (conv1's case) and with it.
//! Throughput is in multiply-accumulates of the convolution (a backward pass does 1x or 2x
//! as many again). `cargo bench -p tinyconv-trainer --bench conv_block`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tinyconv_trainer::batch_conv::kernel::{ConvGeometry, backward, forward};

fn conv_blocks(c: &mut Criterion) {
    let block = |channels, height, filters, padding| ConvGeometry {
        channels,
        batch: 1000,
        height,
        width: height,
        filters,
        kernel: 3,
        padding,
    };
    let blocks = [
        ("conv1", block(1, 28, 16, 1)),
        ("conv2", block(16, 14, 128, 0)),
        ("conv3", block(128, 6, 256, 0)),
    ];
    for (name, g) in blocks {
        let x: Vec<f32> = (0..g.input_len()).map(|i| (i % 17) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..g.weight_len())
            .map(|i| (i % 13) as f32 * 0.01 - 0.06)
            .collect();
        let b = vec![0.1; g.filters];
        let dy: Vec<f32> = (0..g.pooled_len()).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut out = vec![0.0; g.pooled_len()];
        let mut winners = vec![0; g.pooled_len()];
        let macs = (g.filters * g.batch * g.out_pixels() * g.taps()) as u64;

        let mut group = c.benchmark_group(format!("conv_block/{name}"));
        group.sample_size(10).throughput(Throughput::Elements(macs));
        group.bench_function("forward", |bench| {
            bench.iter(|| forward(&g, black_box(&x), &w, &b, &mut out, &mut winners))
        });
        group.bench_function("backward_weights", |bench| {
            bench.iter(|| backward(&g, black_box(&x), &w, &dy, &winners, false))
        });
        group.bench_function("backward_all", |bench| {
            bench.iter(|| backward(&g, black_box(&x), &w, &dy, &winners, true))
        });
        group.finish();
    }
}

criterion_group!(benches, conv_blocks);
criterion_main!(benches);
