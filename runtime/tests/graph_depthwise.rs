//! The fast depthwise conv2d (`graph::kernels::depthwise`, run by `Graph::infer_int8` through
//! `depthwise_conv2d::run`) against the scalar `depthwise_conv2d::reference`, on every output
//! value of random one-op graphs: channels 1..=70 (odd ones and tails), H and W 1..=20, kernels
//! 1..=5 (non-square), strides 1..=3 per axis, any padding the format allows, random zero
//! points, scales and clamps, both rules. On the host the kernel runs the portable model of the
//! DSP blocks (`Emulated`), the same driver the Cortex-M4 runs with the assembly; the firmware's
//! MLPerf Tiny runs (`tests/tests/graph_qemu.rs`) check the real instructions. Negative
//! controls: an off-by-one zero point and a dropped tap in the blocks are caught.

use tinyconv::QuantParams;
use tinyconv::Shape;
use tinyconv::graph::kernels::depthwise::{self, DwMac, Emulated};
use tinyconv::graph::kernels::dw3x3::{self, Columns};
use tinyconv::graph::ops::depthwise_conv2d;
use tinyconv::graph::{
    Clamp, Graph, GraphSpec, Node, OpKind, OpSpec, Pads, Rule, TensorSpec, WeightsSpec, Window,
};
use tinyconv::kernels::dsp::Mac;
use tinyconv::testing::SplitMix64;

/// One random depthwise op as a graph, or `None` when the drawn window does not fit.
fn case(seed: u64, rule: Rule) -> Option<(GraphSpec, Vec<i8>)> {
    let mut rng = SplitMix64(seed);
    let r = |rng: &mut SplitMix64, lo: i64, hi: i64| rng.range(lo, hi) as usize;
    // Mostly multiples of 4 and the MLPerf widths, often odd tails.
    let c = match rng.range(0, 3) {
        0 => r(&mut rng, 1, 70),
        1 => 4 * r(&mut rng, 1, 17),
        _ => [8, 16, 32, 64, 3, 5, 7, 66, 69][r(&mut rng, 0, 8)],
    };
    let (h, w) = (r(&mut rng, 1, 20), r(&mut rng, 1, 20));
    let (kh, kw) = if rng.range(0, 1) == 0 {
        (3, 3)
    } else {
        (r(&mut rng, 1, 5), r(&mut rng, 1, 5))
    };
    let (sh, sw) = (r(&mut rng, 1, 3), r(&mut rng, 1, 3));
    let pads = Pads {
        top: r(&mut rng, 0, kh as i64 - 1),
        bottom: r(&mut rng, 0, kh as i64 - 1),
        left: r(&mut rng, 0, kw as i64 - 1),
        right: r(&mut rng, 0, kw as i64 - 1),
    };
    let (ph, pw) = (h + pads.top + pads.bottom, w + pads.left + pads.right);
    if ph < kh || pw < kw {
        return None;
    }
    let (oh, ow) = ((ph - kh) / sh + 1, (pw - kw) / sw + 1);
    let in_scale = 0.01 + 0.05 * rng.unit();
    let in_zp = rng.range(-128, 127) as i8;
    let taps = kh * kw;
    let out_scale =
        in_scale * 0.007 * 60.0 * (taps as f32).sqrt() / 40.0 * (0.25 + 2.0 * rng.unit());
    let out_zp = rng.range(-128, 127) as i8;
    let clamp = match rng.range(0, 3) {
        0 => Clamp::NONE,
        1 => Clamp {
            min: out_zp,
            max: 127,
        },
        2 => Clamp { min: -30, max: 60 },
        _ => {
            let a = rng.range(-128, 127) as i8;
            let b = rng.range(-128, 127) as i8;
            Clamp {
                min: a.min(b),
                max: a.max(b),
            }
        }
    };
    let params = WeightsSpec {
        weights: (0..taps * c).map(|_| rng.range(-127, 127) as i8).collect(),
        bias: (0..c).map(|_| rng.range(-20000, 20000) as i32).collect(),
        weight_scales: (0..c).map(|_| 0.002 + 0.01 * rng.unit()).collect(),
    };
    let spec = GraphSpec {
        rule,
        tensors: vec![
            TensorSpec {
                shape: Shape::new(h, w, c),
                quant: QuantParams {
                    scale: in_scale,
                    zero_point: in_zp,
                },
            },
            TensorSpec {
                shape: Shape::new(oh, ow, c),
                quant: QuantParams {
                    scale: out_scale,
                    zero_point: out_zp,
                },
            },
        ],
        input: 0,
        output: 1,
        pixel_scale: None,
        ops: vec![OpSpec::Conv2d {
            input: 0,
            output: 1,
            window: Window {
                kernel_h: kh,
                kernel_w: kw,
                stride_h: sh,
                stride_w: sw,
                pads,
            },
            depthwise: true,
            clamp,
            params,
        }],
    };
    let input = rng.bytes(h * w * c).iter().map(|&b| b as i8).collect();
    Some((spec, input))
}

fn node<'m>(graph: &Graph<'m>) -> Node<'m> {
    let node = graph.nodes().next().unwrap();
    assert_eq!(node.kind, OpKind::DepthwiseConv2d);
    node
}

fn reference(graph: &Graph<'_>, input: &[i8]) -> Vec<i8> {
    let node = node(graph);
    let mut out = vec![0i8; node.output_info.shape.len()];
    depthwise_conv2d::reference(&node, input, &mut out);
    out
}

/// Runs the fast driver with blocks `m` on a scratch of the planner's size, at an odd offset
/// (the driver aligns it itself). `None` when the op has no fast path.
fn fast<M: DwMac>(m: &M, graph: &Graph<'_>, input: &[i8]) -> Option<Vec<i8>> {
    let node = node(graph);
    let len = graph.plan().scratch_len[0] as usize;
    let mut scratch = vec![0x5ai8; len + 1];
    let mut out = vec![0i8; node.output_info.shape.len()];
    depthwise::depthwise(m, &node, input, &mut out, &mut scratch[1..]).then_some(out)
}

/// Runs the column sweep (`kernels::dw3x3`) alone with `m` on the planned scratch, at an
/// odd offset. `None` when the op has no column path.
fn columns<M: Columns>(m: &M, graph: &Graph<'_>, input: &[i8]) -> Option<Vec<i8>> {
    let node = node(graph);
    let len = graph.plan().scratch_len[0] as usize;
    let mut scratch = vec![0x5ai8; len + 1];
    let mut out = vec![0i8; node.output_info.shape.len()];
    dw3x3::depthwise(m, &node, input, &mut out, &mut scratch[1..]).then_some(out)
}

fn first_difference(a: &[i8], b: &[i8], shape: Shape) -> String {
    let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap();
    let (pixel, ch) = (at / shape.c, at % shape.c);
    format!(
        "output ({}, {}) channel {ch}: {} vs {}",
        pixel / shape.w,
        pixel % shape.w,
        a[at],
        b[at]
    )
}

#[test]
fn fast_depthwise_equals_the_reference_on_random_shapes() {
    let mut checked = [0usize; 2];
    let mut fast_path = 0;
    let mut column_path = 0;
    let mut values = 0;
    for (r, rule) in [Rule::Tflite, Rule::Onnx].into_iter().enumerate() {
        for seed in 0..700u64 {
            let Some((spec, input)) = case(seed * 2 + r as u64, rule) else {
                continue;
            };
            let bytes = match spec.to_bytes() {
                Ok(b) => b,
                Err(e) => panic!("seed {seed} {rule:?}: {e}"),
            };
            let graph = Graph::parse(&bytes).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let expected = reference(&graph, &input);
            let mut arena = vec![0x33i8; graph.arena_len()];
            let got = graph.infer_int8(&input, &mut arena).unwrap();
            let shape = graph.output().shape;
            assert!(
                got == &expected[..],
                "seed {seed} {rule:?} {:?} {:?}: {}",
                graph.input().shape,
                node(&graph).window,
                first_difference(got, &expected, shape)
            );
            // The fast path ran whenever it exists (4+ channels, or the 3x3 stride-1 column
            // sweep), with the planned scratch.
            let c = graph.input().shape.c;
            let win = node(&graph).window;
            let sweep = win.kernel_h == 3
                && win.kernel_w == 3
                && win.stride_h == win.stride_w
                && win.stride_h <= 2
                && (graph.output().shape.w - 1) * win.stride_w + 3 < 128;
            match fast(&Emulated, &graph, &input) {
                Some(out) => {
                    assert_eq!(out, expected, "seed {seed} {rule:?}");
                    fast_path += 1;
                }
                None => assert!(
                    c < 4 && !sweep,
                    "seed {seed}: no fast path for {c} channels"
                ),
            }
            match columns(&Emulated, &graph, &input) {
                Some(out) => {
                    assert_eq!(out, expected, "seed {seed} {rule:?}: column sweep");
                    column_path += 1;
                }
                None => assert!(
                    !sweep,
                    "seed {seed}: no column sweep for a 3x3 stride 1 or 2"
                ),
            }
            checked[r] += 1;
            values += expected.len();
        }
    }
    println!(
        "checked {checked:?} graphs (tflite, onnx), {fast_path} on the fast path \
         ({column_path} on the column sweep), {values} values"
    );
    assert!(checked.iter().all(|&n| n >= 500), "{checked:?}");
    assert!(fast_path >= 800);
    assert!(column_path >= 50, "{column_path}");
}

#[test]
fn the_mlperf_tiny_shapes_equal_the_reference() {
    // DS-CNN's 25x5x64 3x3 pads 1, MobileNetV1 0.25's stride-1 and stride-2 SAME layers.
    let shapes = [
        (
            25,
            5,
            64,
            1,
            Pads {
                top: 1,
                left: 1,
                bottom: 1,
                right: 1,
            },
        ),
        (
            48,
            48,
            8,
            1,
            Pads {
                top: 1,
                left: 1,
                bottom: 1,
                right: 1,
            },
        ),
        (
            48,
            48,
            16,
            2,
            Pads {
                top: 0,
                left: 0,
                bottom: 1,
                right: 1,
            },
        ),
        (
            6,
            6,
            128,
            2,
            Pads {
                top: 0,
                left: 0,
                bottom: 1,
                right: 1,
            },
        ),
        (
            3,
            3,
            256,
            1,
            Pads {
                top: 1,
                left: 1,
                bottom: 1,
                right: 1,
            },
        ),
    ];
    // The column sweep's edges (`kernels::dw3x3`): one band and a row past it, three bands
    // and one row, the widest plane row (125 + 2 padded values: 256 bytes) and one past it
    // (the group kernel), a single column, asymmetric padding.
    let p1 = Pads {
        top: 1,
        left: 1,
        bottom: 1,
        right: 1,
    };
    let edges = [
        (48, 4, 5, 1, p1),
        (49, 4, 4, 1, p1),
        (97, 3, 2, 1, p1),
        (5, 125, 4, 1, p1),
        (5, 126, 4, 1, p1),
        (49, 1, 8, 1, p1),
        (
            20,
            7,
            5,
            1,
            Pads {
                top: 0,
                left: 2,
                bottom: 2,
                right: 0,
            },
        ),
    ];
    let shapes: Vec<_> = shapes.iter().chain(&edges).collect();
    for (k, &&(h, w, c, s, pads)) in shapes.iter().enumerate() {
        for rule in [Rule::Tflite, Rule::Onnx] {
            let (mut spec, _) = case(k as u64, rule).unwrap_or_else(|| case(1, rule).unwrap());
            let mut rng = SplitMix64(k as u64 + 99);
            let (oh, ow) = (
                (h + pads.top + pads.bottom - 3) / s + 1,
                (w + pads.left + pads.right - 3) / s + 1,
            );
            spec.tensors[0].shape = Shape::new(h, w, c);
            spec.tensors[1].shape = Shape::new(oh, ow, c);
            let scale = spec.tensors[0].quant.scale * 0.007 * 60.0 * 3.0 / 40.0;
            spec.tensors[1].quant.scale = scale;
            if let OpSpec::Conv2d { window, params, .. } = &mut spec.ops[0] {
                *window = Window {
                    kernel_h: 3,
                    kernel_w: 3,
                    stride_h: s,
                    stride_w: s,
                    pads,
                };
                params.weights = (0..9 * c).map(|_| rng.range(-127, 127) as i8).collect();
                params.bias = (0..c).map(|_| rng.range(-20000, 20000) as i32).collect();
                params.weight_scales = (0..c).map(|_| 0.002 + 0.01 * rng.unit()).collect();
            }
            let bytes = spec.to_bytes().unwrap();
            let graph = Graph::parse(&bytes).unwrap();
            let input: Vec<i8> = rng.bytes(h * w * c).iter().map(|&b| b as i8).collect();
            let expected = reference(&graph, &input);
            let mut arena = vec![0i8; graph.arena_len()];
            assert_eq!(graph.infer_int8(&input, &mut arena).unwrap(), &expected[..]);
            assert_eq!(fast(&Emulated, &graph, &input).unwrap(), expected);
            let columns = columns(&Emulated, &graph, &input);
            // The column path takes 3x3 at stride 1 and 2 while a padded row fits its plane.
            let pw = (ow - 1) * s + 3;
            assert_eq!(columns.is_some(), pw < 128, "{h}x{w}x{c} stride {s}");
            if let Some(out) = columns {
                assert_eq!(out, expected, "column sweep, {h}x{w}x{c} stride {s}");
            }
        }
    }
}

/// A wrong variant of the blocks, for the negative controls.
#[derive(Clone, Copy)]
enum Wrong {
    /// Widens activations with the zero point plus one (weights, widened with 0, stay right).
    ZeroPoint,
    /// Drops the last tap of every pixel.
    LastTap,
}

impl Mac for Wrong {
    fn tile_onto(&self, acc: &mut [i32; 8], p: &[i16], w: &[i8], g: usize, s: usize) {
        Emulated.tile_onto(acc, p, w, g, s)
    }
    fn quad(&self, img: &[i16], stride: usize, at: usize, w: &[i16]) -> [i32; 4] {
        Emulated.quad(img, stride, at, w)
    }
    fn dense(&self, acc: &mut [i32], x: &[i16], w: &[i8], n: usize) {
        Emulated.dense(acc, x, w, n)
    }
    fn widen_cells(&self, x: &[i8], ps: usize, cells: usize, z: i16, out: &mut [i16], g: usize) {
        let z = match self {
            Wrong::ZeroPoint if z != 0 => z + 1,
            _ => z,
        };
        Emulated.widen_cells(x, ps, cells, z, out, g)
    }
}

impl Columns for Wrong {
    fn column(
        &self,
        plane: &[i16],
        row: usize,
        x: usize,
        w: &[u32; 5],
        bias: i32,
        turns: usize,
        out: &mut [i32],
    ) {
        Emulated.column(plane, row, x, w, bias, turns, out);
        let lo = |v: u32| v as u16 as i16 as i32;
        for (y, acc) in out[..3 * turns].iter_mut().enumerate() {
            *acc -= match self {
                // Every value read one lower: the sum of the weights (tap 2 of each row is a
                // half of w[3] or w[4]; w[4]'s high half is 0).
                Wrong::ZeroPoint => w
                    .iter()
                    .map(|&v| lo(v) + (v >> 16) as u16 as i16 as i32)
                    .sum::<i32>(),
                // The last tap (kernel row 2, tap 2).
                Wrong::LastTap => lo(w[4]) * plane[(y + 2) * row + x + 2] as i32,
            };
        }
    }

    fn column2(
        &self,
        plane: &[i16],
        row: usize,
        x: usize,
        w: &[u32; 5],
        bias: i32,
        rows: usize,
        out: &mut [i32],
    ) {
        Emulated.column2(plane, row, x, w, bias, rows, out);
        let lo = |v: u32| v as u16 as i16 as i32;
        for (y, acc) in out[..rows].iter_mut().enumerate() {
            *acc -= match self {
                Wrong::ZeroPoint => w
                    .iter()
                    .map(|&v| lo(v) + (v >> 16) as u16 as i16 as i32)
                    .sum::<i32>(),
                Wrong::LastTap => lo(w[4]) * plane[(2 * y + 2) * row + 2 * x + 2] as i32,
            };
        }
    }
}

impl DwMac for Wrong {
    fn pixel(
        &self,
        acc: [i32; 4],
        buf: &[i16],
        rows: &[usize],
        col: usize,
        w: &[i16],
        kw: usize,
    ) -> [i32; 4] {
        match self {
            Wrong::ZeroPoint => Emulated.pixel(acc, buf, rows, col, w, kw),
            Wrong::LastTap => {
                let good = Emulated.pixel(acc, buf, rows, col, w, kw);
                let (ky, kx) = (rows.len() - 1, kw - 1);
                let x = &buf[rows[ky] + (col + kx) * 4..][..4];
                let wc = &w[(ky * kw + kx) * 4..][..4];
                [0, 1, 2, 3].map(|j| {
                    let l = depthwise::LANE[j];
                    good[j] - x[l] as i32 * wc[l] as i32
                })
            }
        }
    }
}

#[test]
fn the_comparison_catches_a_wrong_kernel() {
    for wrong in [Wrong::ZeroPoint, Wrong::LastTap] {
        let (mut caught, mut tried) = (0, 0);
        for seed in 0..100u64 {
            let Some((spec, input)) = case(seed, Rule::Tflite) else {
                continue;
            };
            let bytes = spec.to_bytes().unwrap();
            let graph = Graph::parse(&bytes).unwrap();
            let expected = reference(&graph, &input);
            // The right blocks agree with the reference through the same driver.
            let Some(good) = fast(&Emulated, &graph, &input) else {
                continue;
            };
            assert_eq!(good, expected);
            tried += 1;
            if fast(&wrong, &graph, &input).unwrap() != expected {
                caught += 1;
            }
        }
        // A clamp can hide a change in a tiny output; nearly every case must show it.
        assert!(
            tried >= 50 && caught * 10 >= tried * 9,
            "{caught} of {tried} caught"
        );
        println!("wrong kernel caught in {caught} of {tried} graphs");
    }
}

#[test]
fn the_fast_tflite_rescale_equals_tflm_s() {
    use tinyconv::graph::kernels::depthwise::tflite_rescale;
    use tinyconv::tflite_rule::{QuantizedMultiplier, multiply_by_quantized_multiplier};
    let mut rng = SplitMix64(5);
    let edges = [
        0,
        1,
        -1,
        2,
        -2,
        i32::MAX,
        i32::MIN,
        i32::MIN + 1,
        1 << 30,
        -(1 << 30),
    ];
    let mut n = 0;
    for k in 0..400_000 {
        let acc = if k % 8 == 0 {
            edges[k / 8 % edges.len()]
        } else {
            (rng.next_u64() as i32) >> rng.range(0, 31)
        };
        let multiplier = match k % 5 {
            0 => edges[k / 5 % edges.len()],
            1 => 1 << 30,
            _ => rng.range(1 << 30, i32::MAX as i64) as i32,
        };
        let shift = rng.range(-31, 8) as i32;
        let m = QuantizedMultiplier { multiplier, shift };
        assert_eq!(
            tflite_rescale(acc, m),
            multiply_by_quantized_multiplier(acc, m),
            "acc {acc} {m:?}"
        );
        n += 1;
    }
    // Exact ties of the doubling high multiply: ab = (2k + 1) * 2^30 for both signs.
    for a in [-3i32, -1, 1, 3, 5, -5] {
        for shift in [-3, 0] {
            let m = QuantizedMultiplier {
                multiplier: 1 << 30,
                shift,
            };
            assert_eq!(tflite_rescale(a, m), multiply_by_quantized_multiplier(a, m));
        }
    }
    assert!(n > 0);
}
