//! Deterministic models with pseudo-random weights (std only), for tests and benchmarks that
//! need a model of a given architecture but not a trained one.

use std::vec::Vec;

use crate::error::Shape;
use crate::graph::{Clamp, GraphSpec, OpSpec, Pads, Rule, TensorSpec, WeightsSpec, Window};
use crate::model::Padding;
use crate::quant::QuantParams;
use crate::writer::{LayerSpec, ModelSpec, Weights};

/// A small, dependency-free PRNG (SplitMix64): reproducible across platforms.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Random weights for a layer with `fan_in` inputs per output, scaled so that outputs use a
/// good part of the int8 range instead of saturating.
pub fn random_weights(
    rng: &mut SplitMix64,
    fan_in: usize,
    out: usize,
    input_scale: f32,
) -> Weights {
    let weights: Vec<i8> = (0..fan_in * out)
        .map(|_| rng.range(-127, 127) as i8)
        .collect();
    let weight_scales: Vec<f32> = (0..out).map(|_| 0.002 + 0.01 * rng.unit()).collect();
    // acc ~ sqrt(fan_in) * 75 * 73 in integer units; aim for about 40 output steps.
    let typical = (fan_in as f32).sqrt() * 75.0 * 73.0;
    let mean_scale = weight_scales.iter().sum::<f32>() / out as f32;
    let output_scale = input_scale * mean_scale * typical / 40.0;
    let bias = (0..out).map(|_| rng.range(-2000, 2000) as i32).collect();
    Weights {
        weights,
        bias,
        weight_scales,
        output: QuantParams {
            scale: output_scale,
            zero_point: rng.range(-20, 20) as i8,
        },
    }
}

/// The seed network (the MNIST CNN tinyconv was founded on) with pseudo-random weights:
/// conv 3x3 1→16 same +pool, conv 3x3 16→128 valid +pool, conv 3x3 128→256 valid +pool,
/// flatten 1024, dense 500 ReLU, dense 10.
pub fn seed_network(seed: u64) -> ModelSpec {
    network(seed, 16, 128, 256, 500)
}

/// The seed architecture with other widths (small ones make fast tests).
pub fn network(seed: u64, c1: usize, c2: usize, c3: usize, hidden: usize) -> ModelSpec {
    let mut rng = SplitMix64(seed);
    let input_quant = QuantParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };
    let mut layers = Vec::new();
    let mut scale = input_quant.scale;
    let conv = |rng: &mut SplitMix64, cin: usize, cout: usize, padding, scale: &mut f32| {
        let params = random_weights(rng, 9 * cin, cout, *scale);
        *scale = params.output.scale;
        LayerSpec::Conv2d {
            kernel: 3,
            padding,
            relu: true,
            pool: true,
            params,
        }
    };
    layers.push(conv(&mut rng, 1, c1, Padding::Same, &mut scale));
    layers.push(conv(&mut rng, c1, c2, Padding::Valid, &mut scale));
    layers.push(conv(&mut rng, c2, c3, Padding::Valid, &mut scale));
    layers.push(LayerSpec::Flatten);
    let fc1 = random_weights(&mut rng, 4 * c3, hidden, scale);
    scale = fc1.output.scale;
    layers.push(LayerSpec::Dense {
        relu: true,
        params: fc1,
    });
    layers.push(LayerSpec::Dense {
        relu: false,
        params: random_weights(&mut rng, hidden, 10, scale),
    });
    ModelSpec {
        input: Shape::new(28, 28, 1),
        input_quant,
        pixel_scale: 1.0 / 255.0,
        layers,
    }
}

/// Builds random v2 graphs op by op, with weights and scales that keep activations in range.
pub struct GraphBuilder {
    pub rng: SplitMix64,
    rule: Rule,
    tensors: Vec<TensorSpec>,
    ops: Vec<OpSpec>,
}

/// TensorFlow's SAME padding along one axis: (before, after, output size).
pub fn same(size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2, out)
}

impl GraphBuilder {
    pub fn new(seed: u64, rule: Rule) -> Self {
        GraphBuilder {
            rng: SplitMix64(seed),
            rule,
            tensors: Vec::new(),
            ops: Vec::new(),
        }
    }

    pub fn tensor(&mut self, shape: Shape, scale: f32) -> usize {
        let zero_point = self.rng.range(-20, 20) as i8;
        self.tensors.push(TensorSpec {
            shape,
            quant: QuantParams { scale, zero_point },
        });
        self.tensors.len() - 1
    }

    pub fn shape(&self, t: usize) -> Shape {
        self.tensors[t].shape
    }

    pub fn scale(&self, t: usize) -> f32 {
        self.tensors[t].quant.scale
    }

    pub fn weights(&mut self, channels: usize, per: usize) -> WeightsSpec {
        WeightsSpec {
            weights: (0..channels * per)
                .map(|_| self.rng.range(-127, 127) as i8)
                .collect(),
            bias: (0..channels)
                .map(|_| self.rng.range(-3000, 3000) as i32)
                .collect(),
            weight_scales: (0..channels)
                .map(|_| 0.002 + 0.01 * self.rng.unit())
                .collect(),
        }
    }

    /// A scale that keeps a sum of `per` products of typical size near the middle of int8.
    ///
    /// Weights uniform in -127..=127 and inputs spread over the int8 range make each product
    /// about 73 * 74 codes (standard deviation), so a sum of `per` of them about
    /// `5400 * sqrt(per)` codes of scale `s_in * s_w` (s_w around 0.007); the output scale puts
    /// that at about 40 output codes, give or take a factor of two.
    pub fn output_scale(&mut self, input: usize, per: usize) -> f32 {
        self.scale(input) * 0.007 * 5400.0 * (per as f32).sqrt() / 40.0 * (0.5 + self.rng.unit())
    }

    pub fn window(
        &self,
        x: usize,
        k: (usize, usize),
        stride: usize,
        padded: bool,
    ) -> (Window, usize, usize) {
        let s = self.shape(x);
        let (top, bottom, h, left, right, w) = if padded {
            let (t, b, h) = same(s.h, k.0, stride);
            let (l, r, w) = same(s.w, k.1, stride);
            (t, b, h, l, r, w)
        } else {
            (
                0,
                0,
                (s.h - k.0) / stride + 1,
                0,
                0,
                (s.w - k.1) / stride + 1,
            )
        };
        let window = Window {
            kernel_h: k.0,
            kernel_w: k.1,
            stride_h: stride,
            stride_w: stride,
            pads: Pads {
                top,
                left,
                bottom,
                right,
            },
        };
        (window, h, w)
    }

    pub fn clamp(&mut self) -> Clamp {
        match self.rng.range(0, 2) {
            0 => Clamp::NONE,
            1 => Clamp { min: -10, max: 127 },
            _ => Clamp { min: -30, max: 60 },
        }
    }

    pub fn conv(
        &mut self,
        x: usize,
        out_c: usize,
        k: (usize, usize),
        stride: usize,
        padded: bool,
        depthwise: bool,
    ) -> usize {
        let in_c = self.shape(x).c;
        let out_c = if depthwise { in_c } else { out_c };
        let (window, h, w) = self.window(x, k, stride, padded);
        let per = if depthwise {
            k.0 * k.1
        } else {
            k.0 * k.1 * in_c
        };
        let scale = self.output_scale(x, per);
        let y = self.tensor(Shape::new(h, w, out_c), scale);
        let params = self.weights(out_c, per);
        let clamp = self.clamp();
        self.ops.push(OpSpec::Conv2d {
            input: x,
            output: y,
            window,
            depthwise,
            clamp,
            params,
        });
        y
    }

    pub fn pool(
        &mut self,
        x: usize,
        k: (usize, usize),
        stride: usize,
        padded: bool,
        average: bool,
    ) -> usize {
        let (window, h, w) = self.window(x, k, stride, padded);
        let quant = self.tensors[x].quant;
        self.tensors.push(TensorSpec {
            shape: Shape::new(h, w, self.shape(x).c),
            quant,
        });
        let y = self.tensors.len() - 1;
        let clamp = Clamp::NONE;
        self.ops.push(if average {
            OpSpec::AvgPool {
                input: x,
                output: y,
                window,
                clamp,
            }
        } else {
            OpSpec::MaxPool {
                input: x,
                output: y,
                window,
                clamp,
            }
        });
        y
    }

    pub fn add(&mut self, a: usize, b: usize) -> usize {
        let scale = self.scale(a).max(self.scale(b)) * (1.0 + self.rng.unit());
        let y = self.tensor(self.shape(a), scale);
        let clamp = self.clamp();
        self.ops.push(OpSpec::Add {
            inputs: [a, b],
            output: y,
            clamp,
        });
        y
    }

    pub fn reshape(&mut self, x: usize, shape: Shape) -> usize {
        let quant = self.tensors[x].quant;
        self.tensors.push(TensorSpec { shape, quant });
        let y = self.tensors.len() - 1;
        self.ops.push(OpSpec::Reshape {
            input: x,
            output: y,
        });
        y
    }

    pub fn dense(&mut self, x: usize, n: usize) -> usize {
        let per = self.shape(x).len();
        let scale = self.output_scale(x, per);
        self.dense_with(x, n, Clamp::NONE, scale)
    }

    /// A dense layer with the given clamp and output scale.
    /// A dense layer of `n` rows with a random clamp and, one time in four, an output scale
    /// small enough that the multipliers take left shifts.
    pub fn random_dense(&mut self, x: usize, n: usize) -> usize {
        let per = self.shape(x).len();
        let mut scale = self.output_scale(x, per);
        if self.rng.range(0, 4) == 0 {
            scale /= 400.0;
        }
        let clamp = self.clamp();
        self.dense_with(x, n, clamp, scale)
    }

    pub fn dense_with(&mut self, x: usize, n: usize, clamp: Clamp, scale: f32) -> usize {
        let per = self.shape(x).len();
        let y = self.tensor(Shape::new(1, 1, n), scale);
        let params = self.weights(n, per);
        self.ops.push(OpSpec::Dense {
            input: x,
            output: y,
            clamp,
            params,
        });
        y
    }

    pub fn softmax(&mut self, x: usize) -> usize {
        self.tensors.push(TensorSpec {
            shape: self.shape(x),
            quant: QuantParams {
                scale: 1.0 / 256.0,
                zero_point: -128,
            },
        });
        let y = self.tensors.len() - 1;
        self.ops.push(OpSpec::Softmax {
            input: x,
            output: y,
            beta: 1.0,
        });
        y
    }

    pub fn finish(self, input: usize, output: usize) -> GraphSpec {
        GraphSpec {
            rule: self.rule,
            tensors: self.tensors,
            input,
            output,
            pixel_scale: None,
            ops: self.ops,
        }
    }
}

/// A residual network of every op: a strided first conv (1 or 3 input channels), a depthwise
/// 3x3, a pointwise 1x1, a residual add, a pool, a global average pool, a reshape, a dense
/// and a softmax.
pub fn residual_graph(seed: u64) -> GraphSpec {
    let mut b = GraphBuilder::new(seed, Rule::Tflite);
    let c = if b.rng.range(0, 1) == 0 { 1 } else { 3 };
    let (h, w) = (b.rng.range(5, 13) as usize, b.rng.range(5, 13) as usize);
    let scale = 0.02 + 0.05 * b.rng.unit();
    let input = b.tensor(Shape::new(h, w, c), scale);
    let width = b.rng.range(2, 8) as usize;
    let stride = b.rng.range(1, 2) as usize;
    let k = (b.rng.range(1, 3) as usize, b.rng.range(1, 3) as usize);
    let x = b.conv(input, width, k, stride, true, false);
    let dw = b.conv(x, 0, (3, 3), 1, true, true);
    let pw = b.conv(dw, width, (1, 1), 1, false, false);
    let r = b.add(x, pw);
    let average = b.rng.range(0, 1) == 0;
    let padded = b.rng.range(0, 1) == 0;
    let s = b.shape(r);
    let p = if s.h >= 2 && s.w >= 2 {
        b.pool(r, (2, 2), 2, padded, average)
    } else {
        r
    };
    let s = b.shape(p);
    let g = b.pool(p, (s.h, s.w), 1, false, true);
    let f = b.reshape(g, Shape::new(1, 1, s.c));
    let classes = b.rng.range(2, 10) as usize;
    let d = b.dense(f, classes);
    let out = b.softmax(d);
    b.finish(input, out)
}

/// A chain of 4 to 6 dense layers (an autoencoder's shape) on a 1x1xN input: row lengths that
/// are multiples of 8, 8k + 4 and not multiples of 4, even and odd output counts, every clamp
/// of [`GraphBuilder::clamp`], and now and then an output scale small enough that the
/// multipliers take left shifts (outside the fused requantization's range).
pub fn random_dense_chain_graph(seed: u64, rule: Rule) -> GraphSpec {
    let mut b = GraphBuilder::new(seed, rule);
    let length = |rng: &mut SplitMix64| match rng.range(0, 3) {
        0 => 8 * rng.range(1, 20) as usize,
        1 => 8 * rng.range(0, 20) as usize + 4,
        2 => rng.range(1, 40) as usize,
        _ => 2 * rng.range(1, 40) as usize + 1,
    };
    let n = length(&mut b.rng);
    let scale = 0.02 + 0.05 * b.rng.unit();
    let input = b.tensor(Shape::new(1, 1, n), scale);
    let mut x = input;
    for _ in 0..b.rng.range(4, 6) {
        let n = length(&mut b.rng);
        x = b.random_dense(x, n);
    }
    b.finish(input, x)
}

/// A chain of convs, depthwise convs and pools of random shapes — kernels 1..5 and non-square,
/// strides 1 and 2, padded or not, channel counts that are and are not multiples of 4 — then a
/// dense layer (and a softmax under the tflite rule): the fast kernels' paths that the MLPerf
/// Tiny models do not take.
pub fn random_chain_graph(seed: u64, rule: Rule) -> GraphSpec {
    let mut b = GraphBuilder::new(seed, rule);
    let c = b.rng.range(1, 7) as usize;
    let (h, w) = (b.rng.range(8, 20) as usize, b.rng.range(8, 20) as usize);
    let scale = 0.02 + 0.05 * b.rng.unit();
    let input = b.tensor(Shape::new(h, w, c), scale);
    // A first layer from the 1..7-channel input to a multiple of 4 channels, so that the
    // depthwise ops after it take the fast path.
    let (k, out_c) = (b.rng.range(1, 5) as usize, 4 * b.rng.range(1, 4) as usize);
    let mut x = b.conv(input, out_c, (k, k), 1, true, false);
    for _ in 0..b.rng.range(5, 8) {
        let s = b.shape(x);
        let k = (b.rng.range(1, 5) as usize, b.rng.range(1, 5) as usize);
        let stride = if s.h.min(s.w) >= 6 {
            b.rng.range(1, 2) as usize
        } else {
            1
        };
        let padded = b.rng.range(0, 1) == 0 || s.h < k.0 || s.w < k.1;
        x = match b.rng.range(0, 4) {
            0 | 1 => {
                // Half the convs give the fast depthwise path its multiples of 4.
                let out_c = if b.rng.range(0, 1) == 0 {
                    4 * b.rng.range(1, 4) as usize
                } else {
                    b.rng.range(1, 20) as usize
                };
                b.conv(x, out_c, k, stride, padded, false)
            }
            2 | 3 => b.conv(x, 0, k, stride, padded, true),
            _ => {
                let average = b.rng.range(0, 1) == 0;
                b.pool(x, k, stride, padded, average)
            }
        };
    }
    let n = b.rng.range(2, 12) as usize;
    let d = b.dense(x, n);
    let out = if rule == Rule::Tflite {
        b.softmax(d)
    } else {
        d
    };
    b.finish(input, out)
}

/// A chain of 2 to 4 depthwise 3x3 convs at stride 1 and 2 (the column path,
/// `graph::kernels::dw3x3`), padded or not, then a dense layer (and a softmax under the tflite rule): odd and even
/// channel counts (the channel pairs and a last channel alone), heights of every residue mod
/// 3 and above one band (the sweep's whole turns and its last one or two rows), and every
/// clamp of [`GraphBuilder::clamp`].
pub fn random_dw3x3_chain_graph(seed: u64, rule: Rule) -> GraphSpec {
    let mut b = GraphBuilder::new(seed, rule);
    let c = b.rng.range(1, 9) as usize;
    let (h, w) = (b.rng.range(3, 60) as usize, b.rng.range(3, 30) as usize);
    let scale = 0.02 + 0.05 * b.rng.unit();
    let input = b.tensor(Shape::new(h, w, c), scale);
    let mut x = input;
    for _ in 0..b.rng.range(2, 4) {
        let s = b.shape(x);
        let padded = b.rng.range(0, 2) > 0 || s.h < 3 || s.w < 3;
        let stride = if b.rng.range(0, 2) == 0 && s.h >= 6 && s.w >= 6 {
            2
        } else {
            1
        };
        x = b.conv(x, 0, (3, 3), stride, padded, true);
    }
    let n = b.rng.range(2, 12) as usize;
    let d = b.dense(x, n);
    let out = if rule == Rule::Tflite {
        b.softmax(d)
    } else {
        d
    };
    b.finish(input, out)
}

/// A chain of 3 to 5 dense layers that the wide layout takes (`WriteOptions::wide_dense`):
/// rows a multiple of 8, the first input `8k` or `8k + 4` values long (an odd quad count),
/// every clamp of [`GraphBuilder::clamp`], and now and then an output scale small enough
/// that the multipliers leave the fused requantization's range.
pub fn random_wide_dense_chain_graph(seed: u64, rule: Rule) -> GraphSpec {
    let mut b = GraphBuilder::new(seed, rule);
    let n = 8 * b.rng.range(1, 40) as usize + 4 * b.rng.range(0, 1) as usize;
    let scale = 0.02 + 0.05 * b.rng.unit();
    let input = b.tensor(Shape::new(1, 1, n), scale);
    let mut x = input;
    for _ in 0..b.rng.range(3, 5) {
        let rows = 8 * b.rng.range(1, 24) as usize;
        x = b.random_dense(x, rows);
    }
    b.finish(input, x)
}

/// A chain of 2 to 4 convs (1x1 and 3x3, channel counts with and without a depth tail) whose
/// clamps are all of int8 and whose channels' weight scales span eight decades: shifts from
/// the fused requantization's range down past -23 (the late-zero-point form of
/// `graph::kernels::requant::Layer::late_channel`) and below -31 (zero multipliers).
pub fn random_late_conv_chain_graph(seed: u64, rule: Rule) -> GraphSpec {
    let mut b = GraphBuilder::new(seed, rule);
    let c = b.rng.range(1, 12) as usize;
    let (h, w) = (b.rng.range(4, 14) as usize, b.rng.range(4, 14) as usize);
    let scale = 0.02 + 0.05 * b.rng.unit();
    let input = b.tensor(Shape::new(h, w, c), scale);
    let mut x = input;
    for _ in 0..b.rng.range(2, 4) {
        let k = if b.rng.range(0, 1) == 0 { 1 } else { 3 };
        let out_c = if b.rng.range(0, 1) == 0 {
            4 * b.rng.range(1, 8) as usize
        } else {
            b.rng.range(1, 20) as usize
        };
        x = b.conv(x, out_c, (k, k), 1, true, false);
    }
    let mut spec = b.finish(input, x);
    let mut rng = SplitMix64(seed ^ 0x1a7e);
    for op in &mut spec.ops {
        if let OpSpec::Conv2d { clamp, params, .. } = op {
            *clamp = Clamp::NONE;
            for s in &mut params.weight_scales {
                *s /= 10f32.powi(rng.range(0, 8) as i32);
            }
        }
    }
    spec
}
