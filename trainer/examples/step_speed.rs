//! Times one training step (forward + backward, batch 1000) of the seed CNN with different
//! implementations of the conv blocks (burn's layers, the trainer's batch-wide block op, and
//! the variants tried before it), and the step as `train` runs it, to find where the time goes.
//! `cargo run --release -p tinyconv-trainer --example step_speed` (findings: docs/performance.md)

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::relu;
use tinyconv_trainer::batch_conv::conv_block_cnhw;
use tinyconv_trainer::model::{CONV_PADDING, Cnn, input_tensor, label_tensor};
use tinyconv_trainer::train::correct_predictions;

fn pool_reshape(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let x: Tensor<6> = x.reshape([n, c, h / 2, 2, w / 2, 2]);
    let x = x.max_dim(5).max_dim(3);
    x.reshape([n, c, h / 2, w / 2])
}

/// A 3x3 convolution as 9 shifted slices concatenated (im2col by tensor ops) and one matmul,
/// so that forward and backward are large, well-shaped GEMMs.
fn conv_matmul(conv: &burn::nn::conv::Conv2d, x: Tensor<4>, pad: usize) -> Tensor<4> {
    let x = if pad > 0 {
        x.pad((pad, pad, pad, pad), 0.0)
    } else {
        x
    };
    let [n, c, h, w] = x.dims();
    let (oh, ow) = (h - 2, w - 2);
    let x = x.permute([0, 2, 3, 1]); // NHWC
    let mut taps = Vec::with_capacity(9);
    for ky in 0..3 {
        for kx in 0..3 {
            taps.push(x.clone().slice([0..n, ky..ky + oh, kx..kx + ow, 0..c]));
        }
    }
    let cols: Tensor<2> = Tensor::cat(taps, 3).reshape([n * oh * ow, 9 * c]);
    let weight = conv.weight.val(); // [o, c, kh, kw]
    let o = weight.dims()[0];
    let weight: Tensor<2> = weight.permute([2, 3, 1, 0]).reshape([9 * c, o]);
    let bias = conv.bias.as_ref().unwrap().val().unsqueeze::<2>();
    let y = cols.matmul(weight) + bias;
    y.reshape([n, oh, ow, o]).permute([0, 3, 1, 2])
}

/// A 3x3 convolution of a whole batch as one image: the images side by side (each padded by
/// `pad` zeros), one valid convolution over that mosaic, so that Flex runs large GEMM tiles
/// instead of one small GEMM per image; then the two columns of each image that straddle its
/// neighbour are dropped.
fn conv_mosaic(conv: &burn::nn::conv::Conv2d, x: Tensor<4>, pad: usize) -> Tensor<4> {
    let x = if pad > 0 {
        x.pad((pad, pad, pad, pad), 0.0)
    } else {
        x
    };
    let [n, c, h, w] = x.dims();
    let mosaic: Tensor<4> = x.permute([1, 2, 0, 3]).reshape([1, c, h, n * w]);
    let bias = conv.bias.as_ref().map(|b| b.val());
    let y = burn::tensor::module::conv2d(
        mosaic,
        conv.weight.val(),
        bias,
        burn::tensor::ops::ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
    );
    let [_, o, oh, _] = y.dims();
    let y = y.pad((0, 2, 0, 0), 0.0);
    let y: Tensor<4> = y
        .reshape([o, oh, n, w])
        .slice([0..o, 0..oh, 0..n, 0..w - 2]);
    y.permute([2, 0, 1, 3])
}

/// One conv block (conv `i` of 1..=3 + ReLU + pool) in some variant.
type Block = fn(&Cnn, Tensor<4>, usize) -> Tensor<4>;

fn main() {
    tinyconv_trainer::train::keep_freed_memory();
    let device = Device::flex().autodiff();
    device.seed(1);
    let cnn = Cnn::new(&device);
    let n = 1000;
    let pixels: Vec<u8> = (0..n * 784).map(|i| ((i * 7919) % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let variants: [(&str, Block); 5] = [
        ("relu→MaxPool2d", |m, x, i| {
            let conv = [&m.conv1, &m.conv2, &m.conv3][i - 1];
            m.pool.forward(relu(conv.forward(x)))
        }),
        ("batch conv block (CNHW)", |m, x, i| {
            let conv = [&m.conv1, &m.conv2, &m.conv3][i - 1];
            // Channel-major between the blocks: in on block 1, out after block 3.
            let x = if i == 1 { x.swap_dims(0, 1) } else { x };
            let bias = conv.bias.as_ref().unwrap().val();
            let y = conv_block_cnhw(x, conv.weight.val(), bias, CONV_PADDING[i - 1]);
            if i == 3 { y.swap_dims(0, 1) } else { y }
        }),
        ("mosaic conv", |m, x, i| {
            let conv = [&m.conv1, &m.conv2, &m.conv3][i - 1];
            m.pool
                .forward(relu(conv_mosaic(conv, x, if i == 1 { 1 } else { 0 })))
        }),
        ("matmul conv", |m, x, i| {
            let conv = [&m.conv1, &m.conv2, &m.conv3][i - 1];
            m.pool
                .forward(relu(conv_matmul(conv, x, if i == 1 { 1 } else { 0 })))
        }),
        ("matmul+reshape", |m, x, i| {
            let conv = [&m.conv1, &m.conv2, &m.conv3][i - 1];
            relu(pool_reshape(conv_matmul(
                conv,
                x,
                if i == 1 { 1 } else { 0 },
            )))
        }),
    ];
    // `STEP_SPEED_ONLY=N` times variant N alone (for `perf record`).
    let only: Option<usize> = std::env::var("STEP_SPEED_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    for round in 0..2 {
        for (index, (name, block)) in variants.into_iter().enumerate() {
            if only.is_some_and(|o| o != index) {
                continue;
            }
            // The fastest of several steps: this VM's neighbours add noise, never speed.
            let mut fwd = f64::INFINITY;
            let mut bwd = f64::INFINITY;
            let reps = 5;
            for _ in 0..reps {
                let x = input_tensor(&pixels, &device);
                let y = label_tensor(&labels, &device);
                let t = Instant::now();
                let h = block(&cnn, x, 1);
                let h = block(&cnn, h, 2);
                let h = block(&cnn, h, 3);
                let h: Tensor<2> = h.flatten(1, 3);
                let logits = cnn.fc2.forward(relu(cnn.fc1.forward(h)));
                let loss = loss_fn.forward(logits, y);
                let _: f32 = loss.clone().into_scalar();
                fwd = fwd.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let grads = loss.backward();
                drop(grads);
                bwd = bwd.min(t.elapsed().as_secs_f64());
            }
            if round == 1 {
                println!(
                    "{name:>18}: forward {fwd:.3} s, backward {bwd:.3} s per batch of {n} (fastest of {reps})"
                );
            }
        }
    }
    // The step as `train` runs it: `Cnn::forward` with dropout, the loss and accuracy read
    // back, the gradients collected per parameter.
    if only.is_none_or(|o| o == variants.len()) {
        let (mut fwd, mut acc, mut bwd) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
        for _ in 0..6 {
            let x = input_tensor(&pixels, &device);
            let y = label_tensor(&labels, &device);
            let t = Instant::now();
            let logits = cnn.forward(x);
            let loss = loss_fn.forward(logits.clone(), y.clone());
            let _: f32 = loss.clone().inner().into_scalar();
            fwd = fwd.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let hits = correct_predictions(logits.inner(), y.inner());
            assert!(hits >= 0);
            acc = acc.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let grads = GradientsParams::from_grads(loss.backward(), &cnn);
            drop(grads);
            bwd = bwd.min(t.elapsed().as_secs_f64());
        }
        println!(
            "Cnn::forward as trained: forward {fwd:.3} s (+ accuracy {acc:.3} s), backward {bwd:.3} s (fastest of 6)"
        );
    }
}
