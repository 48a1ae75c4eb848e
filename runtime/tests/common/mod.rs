//! Helpers shared by the integration tests.
#![allow(dead_code)]

use tinyconv::kernels::reference;
use tinyconv::writer::{LayerSpec, ModelSpec};
use tinyconv::{Model, Op};

/// The logits of `model` on quantized input `x`, layer by layer with the reference kernels in
/// separate buffers (pooling as a separate step).
pub fn reference_logits(model: &Model<'_>, mut x: Vec<i8>) -> Vec<i8> {
    for layer in model.layers() {
        x = match layer.op {
            Op::Conv2d | Op::Dense => {
                let conv = layer.as_conv().unwrap();
                let mut full = vec![0i8; conv.conv_output().len()];
                reference::conv2d(&conv, &x, &mut full);
                if conv.pool {
                    let mut pooled = vec![0i8; conv.output().len()];
                    reference::maxpool2x2(conv.conv_output(), &full, &mut pooled);
                    pooled
                } else {
                    full
                }
            }
            Op::MaxPool2d => {
                let mut pooled = vec![0i8; layer.output.len()];
                reference::maxpool2x2(layer.input, &x, &mut pooled);
                pooled
            }
            Op::Flatten => x,
        };
    }
    x
}

/// `spec` with every fused pool split into a plain conv and a max-pool layer.
pub fn unfused(spec: &ModelSpec) -> ModelSpec {
    let mut unfused = spec.clone();
    unfused.layers = spec
        .layers
        .iter()
        .flat_map(|l| match l {
            LayerSpec::Conv2d {
                kernel,
                padding,
                relu,
                pool: true,
                params,
            } => vec![
                LayerSpec::Conv2d {
                    kernel: *kernel,
                    padding: *padding,
                    relu: *relu,
                    pool: false,
                    params: params.clone(),
                },
                LayerSpec::MaxPool2d,
            ],
            other => vec![other.clone()],
        })
        .collect();
    unfused
}
