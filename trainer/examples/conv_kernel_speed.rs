//! Times the batch-wide convolution kernels (src/batch_conv) alone on the seed network's three
//! layer shapes at batch 1000: forward, and backward with and without the input gradient.
//! `cargo run --release -p tinyconv-trainer --example conv_kernel_speed`

use std::time::Instant;

use tinyconv_trainer::batch_conv::kernel::{ConvGeometry, backward, forward};
use tinyconv_trainer::batch_conv::pool::{self, PoolGeometry};

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
        let dy: Vec<f32> = (0..g.output_len()).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut out = vec![0.0; g.output_len()];
        let macs = (g.output_len() * g.taps()) as f64;
        let reps = 5;
        let time = |f: &mut dyn FnMut()| {
            f();
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        };
        let fwd = time(&mut || forward(&g, &x, &w, &b, &mut out));
        let bwd_w = time(&mut || drop(backward(&g, &x, &w, &dy, false)));
        let bwd = time(&mut || drop(backward(&g, &x, &w, &dy, true)));
        println!(
            "{name}: forward {:.1} ms ({:.0} GFLOP/s), backward weights {:.1} ms, backward all {:.1} ms ({:.0} GFLOP/s)",
            fwd * 1e3,
            2.0 * macs / fwd / 1e9,
            bwd_w * 1e3,
            bwd * 1e3,
            4.0 * macs / bwd / 1e9
        );
        let p = PoolGeometry {
            planes: g.filters * g.batch,
            height: g.out_height(),
            width: g.out_width(),
        };
        let mut pooled = vec![0.0; p.output_len()];
        let mut winners = vec![0; p.output_len()];
        let dy = &dy[..p.output_len()];
        let pool_fwd = time(&mut || pool::forward(&p, &out, &mut pooled, &mut winners));
        let pool_bwd = time(&mut || drop(pool::backward(&p, &winners, dy)));
        println!(
            "{name} relu+pool: forward {:.1} ms, backward {:.1} ms",
            pool_fwd * 1e3,
            pool_bwd * 1e3
        );
    }
}
