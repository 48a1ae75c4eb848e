//! Times the batch-wide conv-block kernels (src/batch_conv: convolution + ReLU + 2x2 max pool)
//! alone on the seed network's three block shapes at batch 1000: forward, and backward with and
//! without the input gradient.
//! `cargo run --release -p tinyconv-trainer --example conv_kernel_speed`

use std::time::Instant;

use tinyconv_trainer::batch_conv::kernel::{ConvGeometry, backward, forward};

fn main() {
    let layers = [
        (
            "conv1",
            ConvGeometry {
                channels: 1,
                batch: 1000,
                height: 28,
                width: 28,
                filters: 16,
                kernel: 3,
                padding: 1,
            },
        ),
        (
            "conv2",
            ConvGeometry {
                channels: 16,
                batch: 1000,
                height: 14,
                width: 14,
                filters: 128,
                kernel: 3,
                padding: 0,
            },
        ),
        (
            "conv3",
            ConvGeometry {
                channels: 128,
                batch: 1000,
                height: 6,
                width: 6,
                filters: 256,
                kernel: 3,
                padding: 0,
            },
        ),
    ];
    for (name, g) in layers {
        let x: Vec<f32> = (0..g.input_len()).map(|i| (i % 17) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..g.weight_len())
            .map(|i| (i % 13) as f32 * 0.01 - 0.06)
            .collect();
        let b = vec![0.1; g.filters];
        let dy: Vec<f32> = (0..g.pooled_len()).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut out = vec![0.0; g.pooled_len()];
        let mut winners = vec![0; g.pooled_len()];
        let macs = (g.filters * g.batch * g.out_pixels() * g.taps()) as f64;
        let reps = 15;
        // The fastest of `reps` runs: this VM's neighbours add noise, never speed.
        let time = |f: &mut dyn FnMut()| {
            f();
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let fwd = time(&mut || forward(&g, &x, &w, &b, &mut out, &mut winners));
        let bwd_w = time(&mut || drop(backward(&g, &x, &w, &dy, &winners, false)));
        let bwd = time(&mut || drop(backward(&g, &x, &w, &dy, &winners, true)));
        println!(
            "{name}: forward {:.1} ms ({:.0} GFLOP/s), backward weights {:.1} ms, backward all {:.1} ms ({:.0} GFLOP/s)",
            fwd * 1e3,
            2.0 * macs / fwd / 1e9,
            bwd_w * 1e3,
            bwd * 1e3,
            4.0 * macs / bwd / 1e9
        );
    }
}
