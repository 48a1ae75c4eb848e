//! The fast conv2d and dense kernels of `graph::kernels::conv` against the scalar references
//! (`conv2d::reference`, `dense::reference`), on every output value of seeded random one-op
//! graphs: channels 1..70 (odd, 1 and 3 included), H/W 1..20, kernels 1..5 and 10x4, strides
//! 1..3, pads below the kernel, random zero points and clamps, both rules. The graphs run
//! through `Graph::infer_int8` (the planner's scratch, `run` picking the kernel: on the host the
//! portable twins of the DSP blocks, the same drivers the Cortex-M4 runs with the assembly).
//! Negative controls: deliberately wrong variants of the blocks and of a node are caught.

use tinyconv::graph::kernels::conv::{self, Blocks, Emulated, PIXELS};
use tinyconv::graph::kernels::requant::Fused;
use tinyconv::graph::ops::{conv2d, dense};
use tinyconv::graph::{
    Clamp, Graph, GraphSpec, Node, OpSpec, Pads, Rule, TensorSpec, WeightsSpec, Window,
};
use tinyconv::testing::SplitMix64;
use tinyconv::{QuantParams, Shape};

const RULES: [Rule; 2] = [Rule::Tflite, Rule::Onnx];

fn tensor(rng: &mut SplitMix64, shape: Shape, scale: f32) -> TensorSpec {
    TensorSpec {
        shape,
        quant: QuantParams {
            scale,
            zero_point: rng.range(-128, 127) as i8,
        },
    }
}

fn weights(rng: &mut SplitMix64, channels: usize, per: usize) -> WeightsSpec {
    WeightsSpec {
        weights: (0..channels * per)
            .map(|_| rng.range(-127, 127) as i8)
            .collect(),
        bias: (0..channels)
            .map(|_| rng.range(-5000, 5000) as i32)
            .collect(),
        weight_scales: (0..channels).map(|_| 0.002 + 0.01 * rng.unit()).collect(),
    }
}

fn clamp(rng: &mut SplitMix64) -> Clamp {
    match rng.range(0, 3) {
        0 => Clamp::NONE,
        1 => Clamp { min: -10, max: 127 },
        2 => Clamp { min: -30, max: 60 },
        _ => Clamp {
            min: -128,
            max: -100,
        },
    }
}

/// A scale that keeps a sum of `per` products near the middle of int8 (sometimes saturating).
fn output_scale(rng: &mut SplitMix64, input_scale: f32, per: usize) -> f32 {
    input_scale * 0.007 * 90.0 * (per as f32).sqrt() / 40.0 * (0.3 + rng.unit())
}

fn channels(rng: &mut SplitMix64) -> usize {
    match rng.range(0, 5) {
        0 => 1,
        1 => 3,
        2 => 4 * rng.range(1, 17) as usize,
        _ => rng.range(1, 70) as usize,
    }
}

/// A random conv2d graph, its input, and a description for failures.
fn random_conv(rng: &mut SplitMix64, rule: Rule) -> (GraphSpec, Vec<i8>, String) {
    random_conv_of(rng, rule, false)
}

/// `pointwise`: 1x1, stride 1, no padding (the kernel's own path when `C_in % 4 == 0`).
fn random_conv_of(
    rng: &mut SplitMix64,
    rule: Rule,
    pointwise: bool,
) -> (GraphSpec, Vec<i8>, String) {
    loop {
        let in_c = channels(rng);
        let out_c = channels(rng);
        let (kh, kw) = if pointwise {
            (1, 1)
        } else if rng.range(0, 9) == 0 {
            (10, 4)
        } else {
            (rng.range(1, 5) as usize, rng.range(1, 5) as usize)
        };
        let (h, w) = (rng.range(1, 20) as usize, rng.range(1, 20) as usize);
        let (sh, sw) = if pointwise {
            (1, 1)
        } else {
            (rng.range(1, 3) as usize, rng.range(1, 3) as usize)
        };
        let mut pad = |k: usize| rng.range(0, k as i64 - 1) as usize;
        let pads = Pads {
            top: pad(kh),
            left: pad(kw),
            bottom: pad(kh),
            right: pad(kw),
        };
        let (ph, pw) = (h + pads.top + pads.bottom, w + pads.left + pads.right);
        if ph < kh || pw < kw {
            continue;
        }
        let (oh, ow) = ((ph - kh) / sh + 1, (pw - kw) / sw + 1);
        let per = kh * kw * in_c;
        let s_in = 0.02 + 0.05 * rng.unit();
        let input = tensor(rng, Shape::new(h, w, in_c), s_in);
        let s_out = output_scale(rng, s_in, per);
        let output = tensor(rng, Shape::new(oh, ow, out_c), s_out);
        let params = weights(rng, out_c, per);
        let clamp = clamp(rng);
        let window = Window {
            kernel_h: kh,
            kernel_w: kw,
            stride_h: sh,
            stride_w: sw,
            pads,
        };
        let what = format!(
            "{rule:?} conv {h}x{w}x{in_c} -> {oh}x{ow}x{out_c}, kernel {kh}x{kw}, stride \
             {sh}x{sw}, {pads:?}, {clamp:?}"
        );
        let x = (0..h * w * in_c)
            .map(|_| rng.range(-128, 127) as i8)
            .collect();
        let spec = GraphSpec {
            rule,
            tensors: vec![input, output],
            input: 0,
            output: 1,
            pixel_scale: None,
            ops: vec![OpSpec::Conv2d {
                input: 0,
                output: 1,
                window,
                depthwise: false,
                clamp,
                params,
            }],
        };
        return (spec, x, what);
    }
}

fn random_dense(rng: &mut SplitMix64, rule: Rule) -> (GraphSpec, Vec<i8>, String) {
    let n_in = match rng.range(0, 3) {
        0 => 4 * rng.range(1, 175) as usize,
        _ => rng.range(1, 700) as usize,
    };
    let n_out = rng.range(1, 130) as usize;
    // Sometimes a shaped input (flattened in NHWC order).
    let shape = if n_in.is_multiple_of(6) && rng.range(0, 1) == 0 {
        Shape::new(2, 3, n_in / 6)
    } else {
        Shape::new(1, 1, n_in)
    };
    let s_in = 0.02 + 0.05 * rng.unit();
    let input = tensor(rng, shape, s_in);
    let s_out = output_scale(rng, s_in, n_in);
    let output = tensor(rng, Shape::new(1, 1, n_out), s_out);
    let params = weights(rng, n_out, n_in);
    let clamp = clamp(rng);
    let x = (0..n_in).map(|_| rng.range(-128, 127) as i8).collect();
    let spec = GraphSpec {
        rule,
        tensors: vec![input, output],
        input: 0,
        output: 1,
        pixel_scale: None,
        ops: vec![OpSpec::Dense {
            input: 0,
            output: 1,
            clamp,
            params,
        }],
    };
    (
        spec,
        x,
        format!("{rule:?} dense {n_in} -> {n_out}, {clamp:?}"),
    )
}

/// `(fast output through the graph, the reference's output)`.
fn conv_pair(spec: &GraphSpec, x: &[i8]) -> (Vec<i8>, Vec<i8>) {
    let bytes = spec.to_bytes().unwrap();
    let graph = Graph::parse(&bytes).unwrap();
    let mut arena = vec![0x55u8 as i8; graph.arena_len()];
    let fast = graph.infer_int8(x, &mut arena).unwrap().to_vec();
    let node = graph.node(0);
    let mut expected = vec![0i8; node.output_info.shape.len()];
    match spec.ops[0] {
        OpSpec::Dense { .. } => dense::reference(&node, x, &mut expected),
        _ => conv2d::reference(&node, x, &mut expected),
    }
    (fast, expected)
}

fn first_difference(fast: &[i8], expected: &[i8]) -> Option<(usize, i8, i8)> {
    assert_eq!(fast.len(), expected.len());
    fast.iter()
        .zip(expected)
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (&a, &b))| (i, a, b))
}

#[test]
fn conv2d_matches_the_reference_on_random_shapes() {
    let mut rng = SplitMix64(0x6772_6170_685f_636f);
    let mut values = 0;
    let mut cases = 0;
    for _ in 0..300 {
        for rule in RULES {
            let (spec, x, what) = random_conv(&mut rng, rule);
            let (fast, expected) = conv_pair(&spec, &x);
            if let Some((i, a, b)) = first_difference(&fast, &expected) {
                panic!("{what}: output {i} is {a}, the reference says {b}");
            }
            values += fast.len();
            cases += 1;
        }
    }
    eprintln!("{cases} convs, {values} output values identical");
}

#[test]
fn pointwise_conv2d_matches_the_reference_on_random_shapes() {
    let mut rng = SplitMix64(0x7077);
    let mut cases = 0;
    for _ in 0..200 {
        for rule in RULES {
            let (spec, x, what) = random_conv_of(&mut rng, rule, true);
            let (fast, expected) = conv_pair(&spec, &x);
            if let Some((i, a, b)) = first_difference(&fast, &expected) {
                panic!("{what}: output {i} is {a}, the reference says {b}");
            }
            cases += 1;
        }
    }
    eprintln!("{cases} pointwise convs identical");
}

/// Input h, w, c; output c; kernel; stride; pads top, left, bottom, right.
type Layer = (
    usize,
    usize,
    usize,
    usize,
    (usize, usize),
    usize,
    [usize; 4],
);

#[test]
fn conv2d_matches_the_reference_on_the_mlperf_tiny_shapes() {
    // (input h, w, c, output c, kernel, stride, pads top/left/bottom/right), scaled down in
    // H/W where the real layer is large: the first layers of IC (3x3 RGB), KWS (10x4/2 on one
    // channel) and VWW (3x3/2 RGB), 3x3 at 16/32/64 incl. stride 2, 1x1/2 shortcuts, pointwise
    // 8->16 ... 256->256.
    let shapes: &[Layer] = &[
        (12, 12, 3, 16, (3, 3), 1, [1, 1, 1, 1]),
        (49, 10, 1, 64, (10, 4), 2, [4, 1, 5, 1]),
        (16, 16, 3, 8, (3, 3), 2, [0, 0, 1, 1]),
        (10, 10, 16, 16, (3, 3), 1, [1, 1, 1, 1]),
        (10, 10, 16, 32, (3, 3), 2, [0, 0, 1, 1]),
        (8, 8, 32, 32, (3, 3), 1, [1, 1, 1, 1]),
        (8, 8, 32, 64, (3, 3), 2, [0, 0, 1, 1]),
        (5, 5, 64, 64, (3, 3), 1, [1, 1, 1, 1]),
        (10, 10, 16, 32, (1, 1), 2, [0, 0, 0, 0]),
        (8, 8, 32, 64, (1, 1), 2, [0, 0, 0, 0]),
        (25, 5, 64, 64, (1, 1), 1, [0, 0, 0, 0]),
        (12, 12, 8, 16, (1, 1), 1, [0, 0, 0, 0]),
        (6, 6, 16, 32, (1, 1), 1, [0, 0, 0, 0]),
        (3, 3, 128, 256, (1, 1), 1, [0, 0, 0, 0]),
        (3, 3, 256, 256, (1, 1), 1, [0, 0, 0, 0]),
    ];
    let mut rng = SplitMix64(7);
    for &(h, w, c, oc, (kh, kw), s, [t, l, b, r]) in shapes {
        for rule in RULES {
            let per = kh * kw * c;
            let s_in = 0.05;
            let input = tensor(&mut rng, Shape::new(h, w, c), s_in);
            let (oh, ow) = ((h + t + b - kh) / s + 1, (w + l + r - kw) / s + 1);
            let s_out = output_scale(&mut rng, s_in, per);
            let output = tensor(&mut rng, Shape::new(oh, ow, oc), s_out);
            let spec = GraphSpec {
                rule,
                tensors: vec![input, output],
                input: 0,
                output: 1,
                pixel_scale: None,
                ops: vec![OpSpec::Conv2d {
                    input: 0,
                    output: 1,
                    window: Window {
                        kernel_h: kh,
                        kernel_w: kw,
                        stride_h: s,
                        stride_w: s,
                        pads: Pads {
                            top: t,
                            left: l,
                            bottom: b,
                            right: r,
                        },
                    },
                    depthwise: false,
                    clamp: Clamp {
                        min: -128,
                        max: 127,
                    },
                    params: weights(&mut rng, oc, per),
                }],
            };
            let x: Vec<i8> = (0..h * w * c).map(|_| rng.range(-128, 127) as i8).collect();
            let (fast, expected) = conv_pair(&spec, &x);
            assert_eq!(
                first_difference(&fast, &expected),
                None,
                "{rule:?} {h}x{w}x{c} -> {oc}, {kh}x{kw}/{s}"
            );
        }
    }
}

#[test]
fn dense_matches_the_reference_on_random_shapes() {
    let mut rng = SplitMix64(0x64_656e_7365);
    let mut cases = 0;
    for _ in 0..150 {
        for rule in RULES {
            let (spec, x, what) = random_dense(&mut rng, rule);
            let (fast, expected) = conv_pair(&spec, &x);
            if let Some((i, a, b)) = first_difference(&fast, &expected) {
                panic!("{what}: output {i} is {a}, the reference says {b}");
            }
            cases += 1;
        }
    }
    eprintln!("{cases} dense layers identical");
}

#[test]
fn scratch_lengths_are_the_planned_ones_and_any_alignment_works() {
    let mut rng = SplitMix64(99);
    for _ in 0..60 {
        let (spec, x, what) = random_conv(&mut rng, Rule::Tflite);
        let bytes = spec.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        let node = graph.node(0);
        let w = node.window;
        let len = conv::conv_scratch_len(w.kernel_h, w.kernel_w, node.input.shape.c);
        assert_eq!(graph.plan().scratch_len[0] as usize, len, "{what}");
        let mut expected = vec![0i8; node.output_info.shape.len()];
        conv2d::reference(&node, &x, &mut expected);
        // The scratch at every offset from a word boundary, exactly as long as planned, and
        // full of garbage.
        let mut buffer = vec![0i8; len + 4];
        for offset in 0..4 {
            buffer
                .iter_mut()
                .for_each(|b| *b = rng.range(-128, 127) as i8);
            let mut out = vec![0i8; expected.len()];
            conv::conv2d(
                &Emulated,
                &node,
                &x,
                &mut out,
                &mut buffer[offset..offset + len],
            );
            assert_eq!(
                first_difference(&out, &expected),
                None,
                "{what}, offset {offset}"
            );
        }
    }
}

/// Wrong variants of the blocks: each must be caught.
#[derive(Clone, Copy)]
enum Wrong {
    /// The natural lane order `[x0, x1, x2, x3]` instead of `[x0, x2, x1, x3]`.
    Lanes,
    /// The last pixel of a block (of 8, or of 4 in a short block) misses the last group.
    LastGroup,
    /// The zero point is not subtracted from the activations' odd lanes.
    ZeroPoint,
}

impl Blocks for Wrong {
    fn mac8(&self, acc: [i32; PIXELS], col: &[i16], w: &[i8], groups: usize) -> [i32; PIXELS] {
        let right = Emulated.mac8(acc, col, w, groups);
        match self {
            Wrong::LastGroup if groups > 0 => {
                let mut short = Emulated.mac8(acc, col, w, groups - 1);
                short[..PIXELS - 1].copy_from_slice(&right[..PIXELS - 1]);
                short
            }
            _ => right,
        }
    }

    fn mac4(&self, acc: [i32; 4], col: &[i16], w: &[i8], groups: usize) -> [i32; 4] {
        let right = Emulated.mac4(acc, col, w, groups);
        match self {
            Wrong::LastGroup if groups > 0 => {
                let mut short = Emulated.mac4(acc, col, w, groups - 1);
                short[..3].copy_from_slice(&right[..3]);
                short
            }
            _ => right,
        }
    }

    fn requant8(&self, acc: &[i32; PIXELS], q: &Fused, out: &mut [i8], stride: usize) {
        Emulated.requant8(acc, q, out, stride)
    }

    fn widen(&self, x: &[i8], groups: usize, z: i8, out: &mut [i16]) {
        Emulated.widen(x, groups, z, out);
        for g in 0..groups {
            let cell = &mut out[g * conv::GROUP_HALVES..][..4];
            match self {
                Wrong::Lanes => cell.swap(1, 2),
                Wrong::ZeroPoint => {
                    cell[1] += z as i16;
                    cell[3] += z as i16;
                }
                Wrong::LastGroup => {}
            }
        }
    }
}

fn wrong_is_caught(b: &impl Blocks, node: &Node<'_>, x: &[i8]) -> bool {
    let mut expected = vec![0i8; node.output_info.shape.len()];
    conv2d::reference(node, x, &mut expected);
    let w = node.window;
    let mut scratch = vec![0i8; conv::conv_scratch_len(w.kernel_h, w.kernel_w, node.input.shape.c)];
    let mut out = vec![0i8; expected.len()];
    conv::conv2d(b, node, x, &mut out, &mut scratch);
    first_difference(&out, &expected).is_some()
}

#[test]
fn negative_controls_wrong_kernels_are_caught() {
    let mut rng = SplitMix64(0x6267);
    let mut caught = [0usize; 3];
    let cases = 80;
    for _ in 0..cases {
        let (spec, x, _) = random_conv(&mut rng, Rule::Tflite);
        let bytes = spec.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        let node = graph.node(0);
        // The right blocks through the same driver agree (so what is caught is the bug).
        assert!(!wrong_is_caught(&Emulated, &node, &x));
        for (k, wrong) in [Wrong::Lanes, Wrong::LastGroup, Wrong::ZeroPoint]
            .into_iter()
            .enumerate()
        {
            caught[k] += wrong_is_caught(&wrong, &node, &x) as usize;
        }
    }
    eprintln!("wrong variants caught in {caught:?} of {cases} random convs");
    // Each bug is caught by the random cases as a whole (some single shapes cannot show a
    // given bug, e.g. a 1-channel 1x1 conv has no lane order to get wrong).
    assert!(caught.iter().all(|&c| c > cases / 4), "{caught:?}");

    // The dense driver: a node with the wrong input zero point.
    let mut dense_caught = 0;
    for _ in 0..20 {
        let (spec, x, what) = random_dense(&mut rng, Rule::Onnx);
        let bytes = spec.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        let node = graph.node(0);
        let mut expected = vec![0i8; node.output_info.shape.len()];
        dense::reference(&node, &x, &mut expected);
        let mut bad = node;
        bad.input.quant.zero_point = bad.input.quant.zero_point.wrapping_add(3);
        let mut scratch = vec![0i8; tinyconv::graph::kernels::dense::scratch_len(x.len())];
        let mut out = vec![0i8; expected.len()];
        let m = tinyconv::kernels::dsp::Emulated;
        tinyconv::graph::kernels::dense::dense(&m, &bad, &x, &mut out, &mut scratch);
        dense_caught += first_difference(&out, &expected).is_some() as usize;
        tinyconv::graph::kernels::dense::dense(&m, &node, &x, &mut out, &mut scratch);
        assert_eq!(first_difference(&out, &expected), None, "{what}");
    }
    eprintln!("a wrong dense zero point caught in {dense_caught} of 20");
    assert!(dense_caught >= 10, "{dense_caught}");
}

#[test]
fn the_prepared_requantization_is_the_nodes_own() {
    // Multipliers from 2^-14 to 2^5 (tflite shifts -14..5, so left shifts too), every
    // accumulator kind: random, small, around ties, extremes.
    let mut rng = SplitMix64(0x7265_7175);
    let mut checked = 0;
    let mut left_shifts = 0;
    let mut simples = 0;
    for _ in 0..400 {
        let rule = RULES[rng.range(0, 1) as usize];
        let n_in = rng.range(1, 6) as usize;
        let s_in = 0.05;
        let mut params = weights(&mut rng, 4, n_in);
        params.weights.iter_mut().for_each(|w| *w /= 16);
        params.bias.iter_mut().for_each(|b| *b /= 64);
        let factor = 2f32.powi(rng.range(-14, 5) as i32) * (0.5 + rng.unit());
        let s_out = s_in * 0.007 * factor.recip();
        let spec = GraphSpec {
            rule,
            tensors: vec![
                tensor(&mut rng, Shape::new(1, 1, n_in), s_in),
                tensor(&mut rng, Shape::new(1, 1, 4), s_out),
            ],
            input: 0,
            output: 1,
            pixel_scale: None,
            ops: vec![OpSpec::Dense {
                input: 0,
                output: 1,
                clamp: clamp(&mut rng),
                params,
            }],
        };
        let Ok(bytes) = spec.to_bytes() else { continue };
        let Ok(graph) = Graph::parse(&bytes) else {
            continue;
        };
        let node = graph.node(0);
        for c in 0..4 {
            let rq = conv::Requant::new(&node, c);
            let simple = conv::fused_channel(conv::fused_layer(&node), node.channels.words(c));
            simples += simple.is_some() as usize;
            left_shifts += (rule == Rule::Tflite && node.channels.words(c).1 > 0) as usize;
            for k in 0..300 {
                let acc = match k % 5 {
                    0 => rng.range(-1 << 20, 1 << 20) as i32,
                    1 => rng.range(-300, 300) as i32,
                    2 => (rng.range(-4000, 4000) as i32) << rng.range(0, 12),
                    3 => [i32::MIN, i32::MAX, -1, 0, 1][rng.range(0, 4) as usize],
                    _ => rng.next_u64() as i32,
                };
                let expected = node.finish(node.rescale(acc, c));
                if let Some(q) = simple {
                    assert_eq!(q.apply(acc), expected, "simple, words {:?} acc {acc}", q);
                }
                assert_eq!(
                    rq.apply(node.rule, acc),
                    node.finish(node.rescale(acc, c)),
                    "{rule:?} words {:?} acc {acc}",
                    node.channels.words(c)
                );
                checked += 1;
            }
        }
    }
    eprintln!(
        "{checked} accumulators, {left_shifts} tflite channels with a left shift, {simples} in \
         the 8-output block's form"
    );
    assert!(
        checked > 200_000 && left_shifts > 20 && simples > 100,
        "{checked} {left_shifts} {simples}"
    );
}

#[test]
fn the_parse_time_fused_flag_is_every_channels_shift_and_multiplier() {
    // `Node::fused` (what lets the dense and conv kernels skip checking each channel) against
    // its definition read straight off the stored words: the tflite rule, every channel's Q31
    // multiplier positive and its shift in -23..=-2. Output scales of three kinds: typical
    // (all shifts in range), 400 times smaller (left shifts), and one that puts the channels'
    // real multipliers (weight scales 0.002..0.012) across 0.25, so that a layer mixes shifts
    // of -1 and -2 (checked by hand: a flag that looked at the first channel only failed here).
    let mut seen = [0usize; 2];
    for seed in 0..30u64 {
        for rule in [Rule::Tflite, Rule::Onnx] {
            let mut b = tinyconv::testing::GraphBuilder::new(seed, rule);
            let input = b.tensor(Shape::new(1, 1, 24), 0.05);
            let mut x = input;
            for kind in 0..3 {
                let scale = match kind {
                    0 => b.output_scale(x, 24),
                    1 => b.output_scale(x, 24) / 400.0,
                    _ => b.scale(x) * 0.024,
                };
                x = b.dense_with(x, 24, Clamp::NONE, scale);
            }
            let bytes = b.finish(input, x).to_bytes().unwrap();
            let graph = Graph::parse(&bytes).unwrap();
            for n in graph.nodes() {
                let by_words = rule == Rule::Tflite
                    && (0..n.channels.len()).all(|c| {
                        let (m, s) = n.channels.words(c);
                        m > 0 && (-23..=-2).contains(&s)
                    });
                assert_eq!(n.fused, by_words, "seed {seed}, {rule:?}, op {}", n.index);
                seen[n.fused as usize] += 1;
            }
        }
    }
    eprintln!("{} dense layers fused, {} not", seen[1], seen[0]);
    assert!(seen[1] > 20 && seen[0] > 20, "{seen:?}");
}

/// `spec`'s one conv with its clamp all of int8 and each channel's weight scale divided by
/// 10^0..10^8: shifts from the fused form's range down past -23 (the late-zero-point form)
/// and below -31 (a zero multiplier).
fn late_form(rng: &mut SplitMix64, mut spec: GraphSpec) -> GraphSpec {
    if let OpSpec::Conv2d { clamp, params, .. } = &mut spec.ops[0] {
        *clamp = Clamp::NONE;
        for s in &mut params.weight_scales {
            *s /= 10f32.powi(rng.range(0, 8) as i32);
        }
    }
    spec
}

#[test]
fn late_zero_point_channels_match_the_reference() {
    let mut rng = SplitMix64(0x1a7e);
    let (mut cases, mut late, mut zero, mut late_layers) = (0, 0, 0, 0);
    for k in 0..200 {
        let (spec, x, what) = random_conv_of(&mut rng, Rule::Tflite, k % 2 == 0);
        let spec = late_form(&mut rng, spec);
        let Ok(bytes) = spec.to_bytes() else {
            continue;
        };
        let graph = Graph::parse(&bytes).unwrap();
        let node = graph.node(0);
        let words: Vec<(i32, i32)> = (0..node.channels.len())
            .map(|c| node.channels.words(c))
            .collect();
        late += words.iter().filter(|&&(m, s)| m > 0 && s < -23).count();
        zero += words.iter().filter(|&&(m, _)| m == 0).count();
        late_layers += words
            .iter()
            .all(|&(m, s)| m == 0 || (-31..=-2).contains(&s)) as usize;
        let (fast, expected) = conv_pair(&spec, &x);
        if let Some((i, a, b)) = first_difference(&fast, &expected) {
            panic!("{what}: output {i} is {a}, the reference says {b}");
        }
        cases += 1;
    }
    eprintln!(
        "{cases} convs identical: {late} channels with shifts below -23, {zero} with a zero \
         multiplier, {late_layers} layers all in the late form"
    );
    assert!(cases > 100 && late > 100 && zero > 10 && late_layers > 10);
}
