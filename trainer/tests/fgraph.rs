//! The float graph (`trainer::fgraph`) against tract, on random graphs:
//! - the float interpreter against tract's float run of `float_onnx`, every tensor;
//! - the quantized graph: the runtime (`Graph::infer_int8`, `infer_pixels`) against tract on
//!   `onnx_graph::int8_onnx`, every byte of every tensor;
//! - the quantized graph's dequantized outputs against the float interpreter (loose);
//! - negative controls for each, and `validate`'s refusals.

use prost::Message;
use tinyconv::graph::{Graph, GraphSpec, OpSpec};
use tinyconv::testing::SplitMix64;
use tinyconv::{QuantParams, Shape};
use tinyconv_trainer::fgraph::interpret::{self, window_output};
use tinyconv_trainer::fgraph::quantize::{self, Options, QuantizeError, Ranges};
use tinyconv_trainer::fgraph::{
    Act, FloatGraph, FloatGraphError, FloatOp, Pads, Window, onnx_float, validate,
};
use tinyconv_trainer::onnx_graph;
use tract_onnx::pb::{NodeProto, tensor_proto::DataType};
use tract_onnx::prelude::*;

// ---------------------------------------------------------------------------------------------
// Random float graphs.

/// What the random graphs hold, so the report shows what was covered.
#[derive(Default, Debug)]
struct Coverage {
    graphs: usize,
    conv: usize,
    conv_stride2: usize,
    conv_asymmetric_pads: usize,
    depthwise: usize,
    max_pool: usize,
    avg_pool: usize,
    global_avg_pool: usize,
    add: usize,
    reshape: usize,
    dense: usize,
    relu: usize,
    relu6: usize,
    pixel_graphs: usize,
}

struct Gen {
    rng: SplitMix64,
    tensors: Vec<Shape>,
    ops: Vec<FloatOp>,
    cov: Coverage,
}

impl Gen {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.rng.unit()
    }

    fn pick(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.range(lo as i64, hi as i64) as usize
    }

    /// `n` weights in ±sqrt(6 / fan_in) (He uniform: activations stay of order 1).
    fn weights(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        let a = (6.0 / fan_in as f32).sqrt();
        (0..n).map(|_| self.uniform(-a, a)).collect()
    }

    fn bias(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform(-0.2, 0.2)).collect()
    }

    fn act(&mut self) -> Act {
        let act = [Act::None, Act::Relu, Act::Relu6][self.pick(0, 2)];
        match act {
            Act::Relu => self.cov.relu += 1,
            Act::Relu6 => self.cov.relu6 += 1,
            Act::None => {}
        }
        act
    }

    /// A new tensor: its index is the op count + 1 (the input is 0), so a graph cut after op
    /// `i` keeps tensors `0..i + 2`.
    fn push(&mut self, op: FloatOp, shape: Shape) -> usize {
        self.tensors.push(shape);
        assert_eq!(op.output(), self.tensors.len() - 1);
        self.ops.push(op);
        self.tensors.len() - 1
    }

    /// A random window over `x` (kernel up to `kmax`, stride 1 or 2, pads below the kernel),
    /// or `None` if the draw does not fit.
    fn window(&mut self, x: Shape, kmax: usize) -> Option<(Window, usize, usize)> {
        let (kernel_h, kernel_w) = (self.pick(1, kmax), self.pick(1, kmax));
        let stride = self.pick(1, 2);
        let pad = |g: &mut Gen, k: usize| {
            if g.pick(0, 2) == 0 {
                0
            } else {
                g.pick(0, k - 1)
            }
        };
        let pads = Pads {
            top: pad(self, kernel_h),
            left: pad(self, kernel_w),
            bottom: pad(self, kernel_h),
            right: pad(self, kernel_w),
        };
        let window = Window {
            kernel_h,
            kernel_w,
            stride_h: stride,
            stride_w: if self.pick(0, 3) == 0 {
                3 - stride
            } else {
                stride
            },
            pads,
        };
        let (h, w) = window_output(&window, x.h, x.w).ok()?;
        Some((window, h, w))
    }

    fn conv(&mut self, x: usize, depthwise: bool) -> Option<usize> {
        let xs = self.tensors[x];
        let (window, h, w) = self.window(xs, 5)?;
        let taps = window.kernel_h * window.kernel_w;
        let c = if depthwise { xs.c } else { self.pick(1, 16) };
        let weights = if depthwise {
            self.weights(taps * c, taps)
        } else {
            self.weights(c * taps * xs.c, taps * xs.c)
        };
        if depthwise {
            self.cov.depthwise += 1;
        } else {
            self.cov.conv += 1;
            self.cov.conv_stride2 += (window.stride_h == 2 || window.stride_w == 2) as usize;
            let p = window.pads;
            self.cov.conv_asymmetric_pads += (p.top != p.bottom || p.left != p.right) as usize;
        }
        let op = FloatOp::Conv2d {
            input: x,
            output: self.tensors.len(),
            window,
            depthwise,
            bias: self.bias(c),
            weights,
            act: self.act(),
        };
        Some(self.push(op, Shape::new(h, w, c)))
    }

    fn pool(&mut self, x: usize, average: bool) -> Option<usize> {
        let xs = self.tensors[x];
        let (window, h, w) = self.window(xs, 3)?;
        let output = self.tensors.len();
        let op = if average {
            self.cov.avg_pool += 1;
            FloatOp::AvgPool {
                input: x,
                output,
                window,
            }
        } else {
            self.cov.max_pool += 1;
            FloatOp::MaxPool {
                input: x,
                output,
                window,
            }
        };
        Some(self.push(op, Shape::new(h, w, xs.c)))
    }

    fn add(&mut self, a: usize, b: usize) -> usize {
        self.cov.add += 1;
        let op = FloatOp::Add {
            inputs: [a, b],
            output: self.tensors.len(),
            act: self.act(),
        };
        let shape = self.tensors[a];
        self.push(op, shape)
    }

    /// A residual block: a same-size conv branch off `x`, added back to `x`.
    fn residual(&mut self, x: usize) -> usize {
        let xs = self.tensors[x];
        let k = [1, 3, 5][self.pick(0, 2)].min(2 * xs.h.min(xs.w) - 1);
        let window = Window {
            kernel_h: k,
            kernel_w: k,
            stride_h: 1,
            stride_w: 1,
            pads: Pads {
                top: k / 2,
                left: k / 2,
                bottom: k / 2,
                right: k / 2,
            },
        };
        let depthwise = self.pick(0, 2) == 0;
        let taps = k * k;
        let weights = if depthwise {
            self.weights(taps * xs.c, taps)
        } else {
            self.weights(xs.c * taps * xs.c, taps * xs.c)
        };
        if depthwise {
            self.cov.depthwise += 1;
        } else {
            self.cov.conv += 1;
        }
        let op = FloatOp::Conv2d {
            input: x,
            output: self.tensors.len(),
            window,
            depthwise,
            bias: self.bias(xs.c),
            weights,
            act: self.act(),
        };
        let branch = self.push(op, xs);
        self.add(x, branch)
    }

    fn reshape(&mut self, x: usize, shape: Shape) -> usize {
        self.cov.reshape += 1;
        let op = FloatOp::Reshape {
            input: x,
            output: self.tensors.len(),
        };
        self.push(op, shape)
    }

    fn dense(&mut self, x: usize, out: usize) -> usize {
        self.cov.dense += 1;
        let n = self.tensors[x].len();
        let op = FloatOp::Dense {
            input: x,
            output: self.tensors.len(),
            weights: self.weights(out * n, n),
            bias: self.bias(out),
            act: Act::None,
        };
        self.push(op, Shape::new(1, 1, out))
    }
}

fn random_graph(seed: u64, cov: &mut Coverage) -> FloatGraph {
    let mut g = Gen {
        rng: SplitMix64(seed),
        tensors: Vec::new(),
        ops: Vec::new(),
        cov: Coverage::default(),
    };
    let input = Shape::new(g.pick(3, 10), g.pick(3, 10), g.pick(1, 4));
    g.tensors.push(input);
    let pixel_scale = match g.pick(0, 2) {
        0 => None,
        1 => Some(1.0 / 255.0),
        _ => Some(1.0),
    };
    let mut x = 0;
    let steps = g.pick(2, 6);
    let mut done = 0;
    while done < steps {
        let xs = g.tensors[x];
        let next = match g.pick(0, 9) {
            0 | 1 => g.conv(x, false),
            2 => g.conv(x, true),
            3 => g.pool(x, false),
            4 => g.pool(x, true),
            5 | 6 => Some(g.residual(x)),
            7 => {
                // The tensor with itself, or with an earlier tensor of its shape.
                let earlier = (0..x).find(|&t| g.tensors[t] == xs).unwrap_or(x);
                Some(g.add(x, earlier))
            }
            8 if xs.h > 1 || xs.w > 1 => {
                // A spatial reshape (NHWC order kept): swap height and width, or merge rows.
                let shape = if g.pick(0, 1) == 0 {
                    Shape::new(xs.w, xs.h, xs.c)
                } else {
                    Shape::new(xs.h * xs.w, 1, xs.c)
                };
                Some(g.reshape(x, shape))
            }
            9 if done + 1 == steps && (xs.h > 1 || xs.w > 1) => {
                g.cov.global_avg_pool += 1;
                let window = Window {
                    kernel_h: xs.h,
                    kernel_w: xs.w,
                    ..Window::square(1)
                };
                let op = FloatOp::AvgPool {
                    input: x,
                    output: g.tensors.len(),
                    window,
                };
                Some(g.push(op, Shape::new(1, 1, xs.c)))
            }
            _ => None,
        };
        if let Some(t) = next {
            x = t;
            done += 1;
        }
    }
    // The head: mostly a dense layer (through an explicit flatten or directly).
    match g.pick(0, 4) {
        0 => {}
        1 => {
            let n = g.tensors[x].len();
            let flat = g.reshape(x, Shape::new(1, 1, n));
            let out = g.pick(2, 10);
            x = g.dense(flat, out);
        }
        _ => {
            let out = g.pick(2, 10);
            x = g.dense(x, out);
        }
    }
    cov.graphs += 1;
    cov.pixel_graphs += pixel_scale.is_some() as usize;
    for (a, b) in [
        (&mut cov.conv, g.cov.conv),
        (&mut cov.conv_stride2, g.cov.conv_stride2),
        (&mut cov.conv_asymmetric_pads, g.cov.conv_asymmetric_pads),
        (&mut cov.depthwise, g.cov.depthwise),
        (&mut cov.max_pool, g.cov.max_pool),
        (&mut cov.avg_pool, g.cov.avg_pool),
        (&mut cov.global_avg_pool, g.cov.global_avg_pool),
        (&mut cov.add, g.cov.add),
        (&mut cov.reshape, g.cov.reshape),
        (&mut cov.dense, g.cov.dense),
        (&mut cov.relu, g.cov.relu),
        (&mut cov.relu6, g.cov.relu6),
    ] {
        *a += b;
    }
    FloatGraph {
        tensors: g.tensors,
        input: 0,
        output: x,
        ops: g.ops,
        pixel_scale,
    }
}

/// The graph up to and including op `i`, whose output becomes the graph's output (the random
/// graphs number tensors in op order).
fn cut(graph: &FloatGraph, i: usize) -> FloatGraph {
    let mut g = graph.clone();
    g.ops.truncate(i + 1);
    g.tensors.truncate(i + 2);
    g.output = i + 1;
    g
}

/// Float inputs like the ones the graph is made for: raw pixels times `pixel_scale`, or values
/// in ±2.
fn float_inputs(graph: &FloatGraph, rng: &mut SplitMix64, count: usize) -> Vec<Vec<f32>> {
    let len = graph.tensors[graph.input].len();
    (0..count)
        .map(|_| match graph.pixel_scale {
            Some(s) => rng.bytes(len).into_iter().map(|p| p as f32 * s).collect(),
            None => (0..len).map(|_| 4.0 * rng.unit() - 2.0).collect(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// tract.

fn tract_plan(onnx: &[u8]) -> std::sync::Arc<TypedRunnableModel> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .expect("tract reads the export")
        .into_typed()
        .expect("tract types the export");
    // tract 0.23.9's declutter fails on some strided convs after a spatial reshape ("Pulling
    // Downsample over Reshape: Invalid axis"); such a model runs on tract's typed, unoptimized
    // plan (the same ops, without the rewrites).
    match model.clone().into_optimized() {
        Ok(m) => m.into_runnable(),
        Err(_) => model.into_runnable(),
    }
    .expect("tract plans the export")
}

fn run_tract<I: Datum + Copy, O: Datum + Copy>(
    plan: &std::sync::Arc<TypedRunnableModel>,
    shape: Shape,
    input: &[I],
) -> Vec<O> {
    let t: Tensor =
        tract_ndarray::Array4::from_shape_vec((1, shape.h, shape.w, shape.c), input.to_vec())
            .unwrap()
            .into();
    let out = plan.run(tvec!(t.into())).expect("tract runs");
    out[0]
        .to_plain_array_view::<O>()
        .expect("output type")
        .iter()
        .copied()
        .collect()
}

/// The int8 export with a `QuantizeLinear(pixel_scale? input scale, zero point)` in front: it
/// takes the float input (pixel * pixel_scale) and quantizes it itself, so tract checks the
/// runtime's pixel quantization too.
fn with_float_input(onnx: &[u8], q: QuantParams) -> Vec<u8> {
    use tinyconv_trainer::onnx_graph::INPUT;
    let mut model = tract_onnx::pb::ModelProto::decode(onnx).expect("decodes");
    let graph = model.graph.as_mut().unwrap();
    let float_input = "float_input";
    let input = &mut graph.input[0];
    input.name = float_input.into();
    if let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = DataType::Float as i32;
    }
    let tensor = |name: &str, dt: DataType, raw: Vec<u8>| tract_onnx::pb::TensorProto {
        name: name.into(),
        data_type: dt as i32,
        raw_data: raw,
        ..Default::default()
    };
    graph.initializer.push(tensor(
        "in.scale",
        DataType::Float,
        q.scale.to_le_bytes().to_vec(),
    ));
    graph
        .initializer
        .push(tensor("in.zp", DataType::Int8, vec![q.zero_point as u8]));
    graph.node.insert(
        0,
        NodeProto {
            op_type: "QuantizeLinear".into(),
            name: "in.q".into(),
            input: vec![float_input.into(), "in.scale".into(), "in.zp".into()],
            output: vec![INPUT.into()],
            ..Default::default()
        },
    );
    model.encode_to_vec()
}

// ---------------------------------------------------------------------------------------------
// The float interpreter against tract.

/// Allowed |interpreter - tract| on a value: 1e-4 of the larger of the value and 1% of its
/// tensor's largest magnitude (tract sums in f32, in its own order; the interpreter in f64; a
/// value near 0 that is a sum of large terms carries the terms' rounding).
fn float_tolerance(value: f32, tensor_max: f32) -> f32 {
    1e-4 * value.abs().max(0.01 * tensor_max).max(1e-6)
}

/// (values compared, values out of tolerance, largest error / tolerance) of the interpreter
/// against tract on every tensor of `graph` (one cut per op) for `inputs`.
fn float_against_tract(
    graph: &FloatGraph,
    reference: &FloatGraph,
    inputs: &[Vec<f32>],
) -> (usize, usize, f32) {
    let runs: Vec<Vec<Vec<f32>>> = inputs
        .iter()
        .map(|x| interpret::run(reference, x).expect("interpreter runs"))
        .collect();
    let (mut compared, mut bad, mut worst) = (0, 0, 0f32);
    let input_shape = graph.tensors[graph.input];
    for i in 0..graph.ops.len() {
        let c = cut(graph, i);
        let plan = tract_plan(&onnx_float::float_onnx(&c));
        for (x, run) in inputs.iter().zip(&runs) {
            let ours = &run[c.output];
            let theirs = run_tract::<f32, f32>(&plan, input_shape, x);
            assert_eq!(ours.len(), theirs.len(), "cut {i}: output length");
            let max = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (&a, &b) in ours.iter().zip(&theirs) {
                let ratio = (a - b).abs() / float_tolerance(a, max);
                worst = worst.max(ratio);
                bad += (ratio.is_nan() || ratio > 1.0) as usize;
                compared += 1;
            }
        }
    }
    (compared, bad, worst)
}

const GRAPHS: u64 = 40;

#[test]
fn interpreter_matches_tract_float_on_every_tensor() {
    let mut cov = Coverage::default();
    let (mut compared, mut worst, mut cuts) = (0, 0f32, 0);
    for seed in 0..GRAPHS {
        let graph = random_graph(seed, &mut cov);
        validate(&graph).unwrap_or_else(|e| panic!("graph {seed}: {e}"));
        let inputs = float_inputs(&graph, &mut SplitMix64(1000 + seed), 8);
        let (n, bad, w) = float_against_tract(&graph, &graph, &inputs);
        assert_eq!(
            bad, 0,
            "graph {seed}: {bad} of {n} values out of tolerance (worst {w})"
        );
        compared += n;
        cuts += graph.ops.len();
        worst = worst.max(w);
    }
    println!(
        "float: {GRAPHS} graphs, {cuts} cuts, {compared} values within tolerance of tract; \
         largest error {worst:.3} of the tolerance; {cov:?}"
    );
    assert!(cov.conv_stride2 > 0 && cov.conv_asymmetric_pads > 0 && cov.global_avg_pool > 0);
    assert!(cov.depthwise > 0 && cov.max_pool > 0 && cov.avg_pool > 0 && cov.add > 0);
    assert!(cov.reshape > 0 && cov.dense > 0 && cov.relu > 0 && cov.relu6 > 0);
}

/// Negative control: one float weight changed by 1% in the interpreter's copy only must put
/// values out of tolerance.
#[test]
fn float_comparison_catches_a_changed_weight() {
    let mut cov = Coverage::default();
    let (mut caught, mut tried) = (0, 0);
    for seed in 0..10 {
        let graph = random_graph(seed, &mut cov);
        let mut changed = graph.clone();
        let Some(w) = changed.ops.iter_mut().find_map(|op| match op {
            FloatOp::Conv2d { weights, .. } | FloatOp::Dense { weights, .. } => Some(weights),
            _ => None,
        }) else {
            continue;
        };
        let big = (0..w.len())
            .max_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()))
            .unwrap();
        w[big] *= 1.01;
        let inputs = float_inputs(&graph, &mut SplitMix64(1000 + seed), 4);
        let (n, bad, worst) = float_against_tract(&graph, &changed, &inputs);
        println!(
            "graph {seed}: weight {big} x1.01: {bad} of {n} values out of tolerance (worst {worst:.1})"
        );
        tried += 1;
        caught += (bad > 0) as usize;
    }
    println!("a weight x1.01 caught in {caught} of {tried} graphs");
    assert!(caught * 10 >= tried * 8, "caught {caught} of {tried}");
}

// ---------------------------------------------------------------------------------------------
// The quantized graph: runtime against tract, bit for bit.

fn quantized(graph: &FloatGraph, seed: u64) -> GraphSpec {
    let calibration = float_inputs(graph, &mut SplitMix64(2000 + seed), 32);
    let ranges = quantize::calibrate(graph, &calibration).expect("calibrates");
    quantize::quantize(graph, &ranges, &Options::default()).expect("quantizes")
}

/// The spec up to and including op `i`, its output the graph output.
fn spec_cut(spec: &GraphSpec, i: usize) -> GraphSpec {
    let mut s = spec.clone();
    s.ops.truncate(i + 1);
    s.tensors.truncate(i + 2);
    s.output = i + 1;
    s
}

fn int8_inputs(rng: &mut SplitMix64, len: usize, count: usize) -> Vec<Vec<i8>> {
    let mut v = vec![vec![i8::MIN; len], vec![i8::MAX; len]];
    while v.len() < count {
        v.push(rng.bytes(len).into_iter().map(|b| b as i8).collect());
    }
    v
}

/// Counts of one runtime-vs-tract comparison.
#[derive(Default, Debug)]
struct Exact {
    values: usize,
    differ: usize,
    pixel_values: usize,
    pixel_differ: usize,
}

/// Every tensor (one cut per op) of `ours` (runtime) against tract on `theirs`' export.
fn int8_against_tract(ours: &GraphSpec, theirs: &GraphSpec, seed: u64) -> Exact {
    let mut e = Exact::default();
    let input_shape = ours.tensors[ours.input].shape;
    let codes = int8_inputs(&mut SplitMix64(3000 + seed), input_shape.len(), 12);
    let pixels: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            let mut rng = SplitMix64(4000 + seed * 16 + i);
            match i {
                0 => vec![0; input_shape.len()],
                1 => vec![255; input_shape.len()],
                _ => rng.bytes(input_shape.len()),
            }
        })
        .collect();
    for i in 0..ours.ops.len() {
        let bytes = spec_cut(ours, i).to_bytes().expect("writes");
        let graph = Graph::parse(&bytes).expect("parses");
        let onnx =
            onnx_graph::int8_onnx(&Graph::parse(&spec_cut(theirs, i).to_bytes().unwrap()).unwrap())
                .expect("exports");
        let plan = tract_plan(&onnx);
        let mut arena = vec![0i8; graph.arena_len()];
        for x in &codes {
            let a = graph.infer_int8(x, &mut arena).unwrap().to_vec();
            let b = run_tract::<i8, i8>(&plan, input_shape, x);
            assert_eq!(a.len(), b.len());
            e.values += a.len();
            e.differ += a.iter().zip(&b).filter(|(a, b)| a != b).count();
        }
        if let Some(scale) = ours.pixel_scale {
            let plan = tract_plan(&with_float_input(&onnx, graph.input().quant));
            for p in &pixels {
                let a = graph.infer_pixels(p, &mut arena).unwrap().to_vec();
                let x: Vec<f32> = p.iter().map(|&v| v as f32 * scale).collect();
                let b = run_tract::<f32, i8>(&plan, input_shape, &x);
                e.pixel_values += a.len();
                e.pixel_differ += a.iter().zip(&b).filter(|(a, b)| a != b).count();
            }
        }
    }
    e
}

#[test]
fn quantized_graphs_are_bit_exact_with_tract() {
    let mut cov = Coverage::default();
    let (mut total, mut cuts) = (Exact::default(), 0);
    let mut non_pow2 = 0;
    for seed in 0..GRAPHS {
        let graph = random_graph(seed, &mut cov);
        let spec = quantized(&graph, seed);
        non_pow2 += spec
            .tensors
            .iter()
            .filter(|t| t.quant.scale.to_bits() & 0x007f_ffff != 0)
            .count();
        let e = int8_against_tract(&spec, &spec, seed);
        assert_eq!(e.differ, 0, "graph {seed}: runtime and tract differ: {e:?}");
        assert_eq!(
            e.pixel_differ, 0,
            "graph {seed}: pixel input: runtime and tract differ: {e:?}"
        );
        cuts += spec.ops.len();
        total.values += e.values;
        total.pixel_values += e.pixel_values;
    }
    println!(
        "int8: {GRAPHS} graphs, {cuts} cuts: {} int8-input values and {} pixel-input values, \
         0 different; {non_pow2} tensors with non-power-of-two scales; {cov:?}",
        total.values, total.pixel_values
    );
    assert!(total.values > 0 && total.pixel_values > 0);
}

/// Negative control: one int8 weight changed in the runtime's model (the export keeps the
/// original) must make the runtime and tract differ.
#[test]
fn a_changed_weight_is_caught_by_tract() {
    let mut cov = Coverage::default();
    let mut caught = 0;
    for seed in 0..10 {
        let graph = random_graph(seed, &mut cov);
        let spec = quantized(&graph, seed);
        let mut changed = spec.clone();
        let Some(params) = changed.ops.iter_mut().find_map(|op| match op {
            OpSpec::Conv2d { params, .. } | OpSpec::Dense { params, .. } => Some(params),
            _ => None,
        }) else {
            continue;
        };
        let w = &mut params.weights;
        let big = (0..w.len()).max_by_key(|&i| w[i].unsigned_abs()).unwrap();
        w[big] = -w[big];
        let e = int8_against_tract(&changed, &spec, seed);
        println!(
            "graph {seed}: weight {big} negated: {} of {} values differ",
            e.differ, e.values
        );
        assert!(
            e.differ > 0,
            "graph {seed}: a changed weight went unnoticed"
        );
        caught += 1;
    }
    assert!(caught >= 5);
}

// ---------------------------------------------------------------------------------------------
// The quantized graph against the float graph (loose).

fn quantize_value(x: f32, q: QuantParams) -> i8 {
    ((x as f64 / q.scale as f64).round_ties_even() + q.zero_point as f64).clamp(-128.0, 127.0) as i8
}

fn argmax(v: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// On fresh inputs (not the calibration ones), the int8 graph's dequantized outputs against
/// the float interpreter's: top-1 agreement over the graphs with a vector output, and the
/// error in units of the output's float range.
#[test]
fn quantized_graphs_stay_close_to_float() {
    let mut cov = Coverage::default();
    let (mut agree, mut rows, mut worst_range_share) = (0, 0, 0f32);
    for seed in 0..GRAPHS {
        let graph = random_graph(seed, &mut cov);
        let spec = quantized(&graph, seed);
        let bytes = spec.to_bytes().unwrap();
        let model = Graph::parse(&bytes).unwrap();
        let out_q = model.output().quant;
        let in_q = model.input().quant;
        let mut arena = vec![0i8; model.arena_len()];
        let mut rng = SplitMix64(5000 + seed);
        let len = graph.tensors[graph.input].len();
        let (mut max_err, mut lo, mut hi) = (0f32, f32::INFINITY, f32::NEG_INFINITY);
        for _ in 0..50 {
            let (x, q) = match graph.pixel_scale {
                Some(s) => {
                    let p = rng.bytes(len);
                    let x: Vec<f32> = p.iter().map(|&v| v as f32 * s).collect();
                    (x, model.infer_pixels(&p, &mut arena).unwrap().to_vec())
                }
                None => {
                    let x: Vec<f32> = (0..len).map(|_| 4.0 * rng.unit() - 2.0).collect();
                    let codes: Vec<i8> = x.iter().map(|&v| quantize_value(v, in_q)).collect();
                    (x, model.infer_int8(&codes, &mut arena).unwrap().to_vec())
                }
            };
            let float = &interpret::run(&graph, &x).unwrap()[graph.output];
            let deq: Vec<f32> = q.iter().map(|&c| out_q.dequantize(c)).collect();
            for (&a, &b) in float.iter().zip(&deq) {
                max_err = max_err.max((a - b).abs());
                lo = lo.min(a);
                hi = hi.max(a);
            }
            let out = graph.tensors[graph.output];
            if out.h == 1 && out.w == 1 && out.c >= 2 {
                rows += 1;
                agree += (argmax(float.iter().copied()) == argmax(deq.iter().copied())) as usize;
            }
        }
        let share = max_err / (hi - lo).max(f32::MIN_POSITIVE);
        println!(
            "graph {seed}: {} ops, output {}: max |int8 - float| {max_err:.4} = {:.1} output steps = {:.1}% of the float range",
            graph.ops.len(),
            graph.tensors[graph.output],
            max_err / out_q.scale,
            100.0 * share
        );
        worst_range_share = worst_range_share.max(share);
    }
    let top1 = agree as f64 / rows as f64;
    println!(
        "top-1 agreement int8 vs float: {agree}/{rows} = {:.1}%; worst error {:.1}% of a graph's float output range",
        100.0 * top1,
        100.0 * worst_range_share
    );
    assert!(rows >= 500, "too few vector outputs: {rows}");
    assert!(top1 >= 0.90, "top-1 agreement {top1}");
    assert!(
        worst_range_share <= 0.5,
        "worst error {worst_range_share} of the range"
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-checked values.

fn one_op(input: Shape, output: Shape, op: FloatOp) -> FloatGraph {
    FloatGraph {
        tensors: vec![input, output],
        input: 0,
        output: 1,
        ops: vec![op],
        pixel_scale: None,
    }
}

/// A 2x2 padded average pool (padding not counted) and a 2x2 conv with a bias, by hand.
#[test]
fn interpreter_by_hand() {
    // Input 2x2x1: [1 2; 3 4]; pool 2x2, stride 2, pad top/left 1: output 2x2.
    let window = Window {
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 2,
        stride_w: 2,
        pads: Pads {
            top: 1,
            left: 1,
            bottom: 0,
            right: 0,
        },
    };
    let g = one_op(
        Shape::new(2, 2, 1),
        Shape::new(1, 1, 1),
        FloatOp::AvgPool {
            input: 0,
            output: 1,
            window,
        },
    );
    let v = interpret::run(&g, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    // One window, rows and columns -1..=0: only pixel (0, 0) is in bounds, so the mean is 1.
    assert_eq!(v[1], vec![1.0]);
    // Same input, pool 2x2 stride 1 with pad right 1: windows {1,2,3,4} → 2.5 and {2,4} → 3.
    let window = Window {
        stride_h: 1,
        stride_w: 1,
        pads: Pads {
            top: 0,
            left: 0,
            bottom: 0,
            right: 1,
        },
        ..window
    };
    let g = one_op(
        Shape::new(2, 2, 1),
        Shape::new(1, 2, 1),
        FloatOp::AvgPool {
            input: 0,
            output: 1,
            window,
        },
    );
    assert_eq!(
        interpret::run(&g, &[1.0, 2.0, 3.0, 4.0]).unwrap()[1],
        vec![2.5, 3.0]
    );
    // Conv 2x2, 2 input channels, 1 output: weights OHWI, input NHWC.
    // x = pixels (1,10) (2,20) (3,30) (4,40); w = taps (1,0) (0,1) (1,0) (0,-1), bias 0.5:
    // 1 + 20 + 3 - 40 + 0.5 = -15.5; with ReLU 0.
    let conv = |act| FloatOp::Conv2d {
        input: 0,
        output: 1,
        window: Window::square(2),
        depthwise: false,
        weights: vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, -1.0],
        bias: vec![0.5],
        act,
    };
    let x = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0];
    let g = one_op(Shape::new(2, 2, 2), Shape::new(1, 1, 1), conv(Act::None));
    assert_eq!(interpret::run(&g, &x).unwrap()[1], vec![-15.5]);
    let g = one_op(Shape::new(2, 2, 2), Shape::new(1, 1, 1), conv(Act::Relu));
    assert_eq!(interpret::run(&g, &x).unwrap()[1], vec![0.0]);
}

/// The quantizer's choices on a one-op graph, by hand: input range [-1, 3] free (4/255, zero
/// point -128 + round(255/4) = -64), ReLU6 output range [0, 6] at a power of two (6/255 ->
/// 2^-5, zero point -128, the ReLU6 clamp [-128, -128 + 192 = 64]); with pixels, the input
/// is (pixel_scale, -128).
#[test]
fn quantizer_by_hand() {
    let g = one_op(
        Shape::new(1, 1, 1),
        Shape::new(1, 1, 1),
        FloatOp::Dense {
            input: 0,
            output: 1,
            weights: vec![2.0],
            bias: vec![0.0],
            act: Act::Relu6,
        },
    );
    let ranges = Ranges {
        tensors: vec![(-1.0, 3.0), (0.0, 6.0)],
    };
    let spec = quantize::quantize(&g, &ranges, &Options::default()).unwrap();
    assert_eq!(spec.tensors[0].quant.scale, 4.0f32 / 255.0);
    assert_eq!(spec.tensors[0].quant.zero_point, -64);
    assert_eq!(spec.tensors[1].quant.scale, 1.0 / 32.0);
    assert_eq!(spec.tensors[1].quant.zero_point, -128);
    let OpSpec::Dense { clamp, params, .. } = &spec.ops[0] else {
        panic!("a dense op")
    };
    assert_eq!((clamp.min, clamp.max), (-128, 64));
    assert_eq!(params.weights, vec![127]);
    assert_eq!(params.weight_scales, vec![2.0 / 127.0]);
    let spec = quantize::quantize(&g, &ranges, &Options { free_scales: false }).unwrap();
    assert_eq!(spec.tensors[0].quant.scale, 1.0 / 32.0);
    let pixels = FloatGraph {
        pixel_scale: Some(1.0 / 255.0),
        ..g.clone()
    };
    let spec = quantize::quantize(&pixels, &ranges, &Options::default()).unwrap();
    assert_eq!(spec.tensors[0].quant.scale, 1.0 / 255.0);
    assert_eq!(spec.tensors[0].quant.zero_point, -128);
    // Raw pixel p becomes code p - 128 through the runtime.
    let bytes = spec.to_bytes().unwrap();
    let model = Graph::parse(&bytes).unwrap();
    let mut arena = vec![0i8; model.arena_len()];
    let differ = (0..=255u8)
        .filter(|&p| {
            let code = (p as i16 - 128) as i8;
            let direct = model.infer_int8(&[code], &mut arena).unwrap()[0];
            direct != model.infer_pixels(&[p], &mut arena).unwrap()[0]
        })
        .count();
    assert_eq!(differ, 0, "pixel p is not code p - 128");
}

// ---------------------------------------------------------------------------------------------
// Refusals.

fn chain() -> FloatGraph {
    // 4x4x2 -> conv 3x3 (4 channels) -> 2x2x4 -> flatten -> dense 3.
    FloatGraph {
        tensors: vec![
            Shape::new(4, 4, 2),
            Shape::new(2, 2, 4),
            Shape::new(1, 1, 16),
            Shape::new(1, 1, 3),
        ],
        input: 0,
        output: 3,
        ops: vec![
            FloatOp::Conv2d {
                input: 0,
                output: 1,
                window: Window::square(3),
                depthwise: false,
                weights: vec![0.1; 4 * 9 * 2],
                bias: vec![0.0; 4],
                act: Act::Relu,
            },
            FloatOp::Reshape {
                input: 1,
                output: 2,
            },
            FloatOp::Dense {
                input: 2,
                output: 3,
                weights: vec![0.1; 3 * 16],
                bias: vec![0.0; 3],
                act: Act::None,
            },
        ],
        pixel_scale: None,
    }
}

#[test]
fn validate_refuses_malformed_graphs() {
    assert_eq!(validate(&chain()), Ok(()));
    let refuse = |f: &dyn Fn(&mut FloatGraph)| {
        let mut g = chain();
        f(&mut g);
        let e = validate(&g).expect_err("a malformed graph is refused");
        // The quantizer refuses it with the same reason.
        let q = quantize::quantize(
            &g,
            &Ranges {
                tensors: vec![(0.0, 1.0); g.tensors.len()],
            },
            &Options::default(),
        );
        assert_eq!(q, Err(QuantizeError::Graph(e.clone())));
        println!("refused: {e}");
        e
    };
    // Shapes that do not chain: the conv gives 2x2x4, the tensor says 3x3x4.
    let e = refuse(&|g| g.tensors[1] = Shape::new(3, 3, 4));
    assert!(
        matches!(e, FloatGraphError::ShapeMismatch { op: 0, expected, .. } if expected == Shape::new(2, 2, 4)),
        "{e:?}"
    );
    // Flatten of the wrong size.
    let e = refuse(&|g| g.tensors[2] = Shape::new(1, 1, 15));
    assert!(
        matches!(e, FloatGraphError::ReshapeSize { op: 1, .. }),
        "{e:?}"
    );
    // Dense weights of the wrong length.
    let e = refuse(&|g| {
        if let FloatOp::Dense { weights, .. } = &mut g.ops[2] {
            weights.pop();
        }
    });
    assert!(
        matches!(
            e,
            FloatGraphError::ParamLength {
                op: 2,
                expected: 48,
                actual: 47,
                ..
            }
        ),
        "{e:?}"
    );
    // A pad as large as the kernel.
    let e = refuse(&|g| {
        if let FloatOp::Conv2d { window, .. } = &mut g.ops[0] {
            window.pads.top = 3;
        }
    });
    assert!(matches!(e, FloatGraphError::Window { op: 0, .. }), "{e:?}");
    // A depthwise conv that changes the channel count.
    let e = refuse(&|g| {
        if let FloatOp::Conv2d {
            depthwise,
            weights,
            bias,
            ..
        } = &mut g.ops[0]
        {
            *depthwise = true;
            *weights = vec![0.1; 9 * 2];
            *bias = vec![0.0; 4];
        }
    });
    assert!(
        matches!(e, FloatGraphError::ShapeMismatch { op: 0, .. }),
        "{e:?}"
    );
    // Ops out of order.
    let e = refuse(&|g| g.ops.swap(0, 1));
    assert!(
        matches!(
            e,
            FloatGraphError::ReadBeforeWrite {
                op: 0,
                tensor: 1,
                ..
            }
        ),
        "{e:?}"
    );
    // An add of two shapes.
    let e = refuse(&|g| {
        g.ops[2] = FloatOp::Add {
            inputs: [2, 1],
            output: 3,
            act: Act::None,
        };
        g.tensors[3] = Shape::new(1, 1, 16);
    });
    assert!(
        matches!(e, FloatGraphError::ShapeMismatch { op: 2, .. }),
        "{e:?}"
    );
    // A NaN weight.
    let e = refuse(&|g| {
        if let FloatOp::Dense { weights, .. } = &mut g.ops[2] {
            weights[5] = f32::NAN;
        }
    });
    assert!(
        matches!(
            e,
            FloatGraphError::NonFinite {
                op: 2,
                index: 5,
                ..
            }
        ),
        "{e:?}"
    );
    // An input of the wrong size.
    assert!(matches!(
        interpret::run(&chain(), &[0.0; 31]),
        Err(FloatGraphError::InputSize {
            expected: 32,
            actual: 31,
            ..
        })
    ));
    // Calibration without inputs.
    assert_eq!(
        quantize::calibrate(&chain(), &[]),
        Err(QuantizeError::NoCalibrationInputs)
    );
}
