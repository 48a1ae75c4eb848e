//! The v2 graph referee: random onnx-rule graphs through the runtime (`Graph::infer_int8`) and
//! through tract on their int8 ONNX export (`onnx_graph::int8_onnx`), every output value of every
//! input compared.
//!
//! `cargo test --release -p tinyconv-tests --test graph_referee -- --nocapture` prints the counts.

use tinyconv::Shape;
use tinyconv::graph::{Graph, GraphSpec, OpSpec, Rule};
use tinyconv::testing::{GraphBuilder, SplitMix64, residual_graph};
use tinyconv_trainer::onnx_graph::{self, OnnxGraphError};
use tract_onnx::prelude::*;

/// The nearest power of two (in log scale).
fn pow2(s: f32) -> f32 {
    2f32.powi(s.log2().round() as i32)
}

/// What a generated graph exercises, for the coverage check.
#[derive(Default, Debug, Clone, Copy)]
struct Coverage {
    rgb: usize,
    conv_stride2: usize,
    conv_padded: usize,
    conv_valid: usize,
    k1x1_first: usize,
    k3x3: usize,
    k5x5: usize,
    non_square: usize,
    depthwise_s1: usize,
    depthwise_s2: usize,
    pool_padded: usize,
    pool_valid: usize,
    reshape_flat: usize,
    reshape_spatial: usize,
    dense_spatial: usize,
    clamped: usize,
}

impl Coverage {
    fn add(&mut self, o: &Coverage) {
        macro_rules! sum { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        sum!(
            rgb,
            conv_stride2,
            conv_padded,
            conv_valid,
            k1x1_first,
            k3x3,
            k5x5,
            non_square,
            depthwise_s1,
            depthwise_s2,
            pool_padded,
            pool_valid,
            reshape_flat,
            reshape_spatial,
            dense_spatial,
            clamped
        );
    }
}

/// Whether a `k` window fits an unpadded `s`.
fn fits(s: Shape, k: (usize, usize)) -> bool {
    s.h >= k.0 && s.w >= k.1
}

/// A random onnx-rule graph: first conv (1, 3 or 4 input channels; kernel 1x1, 3x3, 5x5, 3x1,
/// 1x3 or 2x3; stride 1 or 2; SAME or no padding), a depthwise 3x3 (stride 1 or 2), a pointwise
/// 1x1, a max pool (with or without padding), then a dense straight from the feature map, or a
/// flattening reshape and a dense, or a spatial reshape, a 1x1 conv and a dense; every tensor
/// scale but the input's rounded to a power of two.
fn random_graph(seed: u64) -> (GraphSpec, Coverage) {
    let mut cov = Coverage::default();
    let mut b = GraphBuilder::new(seed, Rule::Onnx);
    let c = [1, 3, 4][b.rng.range(0, 2) as usize];
    cov.rgb += (c == 3) as usize;
    let (h, w) = (b.rng.range(5, 14) as usize, b.rng.range(5, 14) as usize);
    // Any input scale: it is no conv's output scale.
    let input_scale = 0.005 + 0.05 * b.rng.unit();
    let input = b.tensor(Shape::new(h, w, c), input_scale);
    let kernels = [(1, 1), (3, 3), (5, 5), (3, 1), (1, 3), (2, 3)];
    let k = kernels[(seed % 6) as usize];
    let stride = b.rng.range(1, 2) as usize;
    let padded = b.rng.range(0, 1) == 0 || !fits(b.shape(input), k);
    let width = b.rng.range(2, 8) as usize;
    cov.conv_stride2 += (stride == 2) as usize;
    cov.conv_padded += (padded && k != (1, 1)) as usize;
    cov.conv_valid += (!padded) as usize;
    cov.k1x1_first += (k == (1, 1)) as usize;
    cov.k3x3 += (k == (3, 3)) as usize;
    cov.k5x5 += (k == (5, 5)) as usize;
    cov.non_square += (k.0 != k.1) as usize;
    let mut x = b.conv(input, width, k, stride, padded, false);
    // Depthwise 3x3.
    let dw_stride = b.rng.range(1, 2) as usize;
    let dw_padded = b.rng.range(0, 1) == 0 || !fits(b.shape(x), (3, 3));
    if dw_stride == 1 {
        cov.depthwise_s1 += 1;
    } else {
        cov.depthwise_s2 += 1;
    }
    x = b.conv(x, 0, (3, 3), dw_stride, dw_padded, true);
    // Pointwise 1x1.
    let width2 = b.rng.range(2, 10) as usize;
    x = b.conv(x, width2, (1, 1), 1, false, false);
    // Max pool.
    let pools = [((2, 2), 2), ((3, 3), 1), ((3, 3), 2), ((2, 1), 1)];
    let (pk, ps) = pools[b.rng.range(0, 3) as usize];
    let pool_padded = b.rng.range(0, 1) == 0 || !fits(b.shape(x), pk);
    let s = b.shape(x);
    let (window, _, _) = b.window(x, pk, ps, pool_padded);
    let really_padded =
        window.pads.top + window.pads.left + window.pads.bottom + window.pads.right > 0;
    if s.h * s.w > 1 {
        x = b.pool(x, pk, ps, pool_padded, false);
        if really_padded {
            cov.pool_padded += 1;
        } else {
            cov.pool_valid += 1;
        }
    }
    // The tail.
    let s = b.shape(x);
    match b.rng.range(0, 2) {
        0 => cov.dense_spatial += (s.h * s.w > 1) as usize,
        1 => {
            x = b.reshape(x, Shape::new(1, 1, s.len()));
            cov.reshape_flat += 1;
        }
        _ => {
            // NHWC bytes under another spatial shape: h*w rows of one column, or the channels
            // split over the width; a 1x1 conv then sees a different grouping of the bytes.
            let shape = if s.c.is_multiple_of(2) {
                Shape::new(s.h, s.w * 2, s.c / 2)
            } else {
                Shape::new(s.h * s.w, 1, s.c)
            };
            x = b.reshape(x, shape);
            cov.reshape_spatial += (shape != s) as usize;
            let out_c = b.rng.range(2, 6) as usize;
            x = b.conv(x, out_c, (1, 1), 1, false, false);
        }
    }
    let classes = b.rng.range(2, 10) as usize;
    x = b.dense(x, classes);
    let mut spec = b.finish(input, x);
    for (t, tensor) in spec.tensors.iter_mut().enumerate() {
        if t != spec.input {
            tensor.quant.scale = pow2(tensor.quant.scale);
        }
    }
    cov.clamped += spec
        .ops
        .iter()
        .filter(|op| matches!(op, OpSpec::Conv2d { clamp, .. } if *clamp != tinyconv::graph::Clamp::NONE))
        .count();
    (spec, cov)
}

/// Picks every conv's and dense's output scale, in op order, as the smallest power of two (times
/// the graph's own one) at which at most 2 % of the op's outputs on `inputs` sit at its clamp
/// bounds (or, if none does, the one with the fewest there): `GraphBuilder`'s scales leave most
/// outputs clamped, which would compare little. An add's output scale is picked the same way
/// from a geometric series of free (not power-of-two) scales. Pool and reshape outputs keep
/// their input's quantization.
fn calibrate(spec: &mut GraphSpec, inputs: &[Vec<i8>]) {
    for k in 0..spec.ops.len() {
        let (output, clamp, candidates): (usize, _, Vec<f32>) = match &spec.ops[k] {
            OpSpec::MaxPool { input, output, .. }
            | OpSpec::AvgPool { input, output, .. }
            | OpSpec::Reshape { input, output } => {
                spec.tensors[*output].quant = spec.tensors[*input].quant;
                continue;
            }
            OpSpec::Add {
                inputs: [a, b],
                output,
                clamp,
            } => {
                // Ratio 1.2173 from 0.5137 x the larger input scale: no power of two.
                let q = |t: usize| spec.tensors[t].quant.scale;
                let base = 0.5137 * q(*a).max(q(*b));
                let c = (0..=16).map(|e| base * 1.2173f32.powi(e)).collect();
                (*output, *clamp, c)
            }
            OpSpec::Conv2d {
                input,
                output,
                clamp,
                ..
            }
            | OpSpec::Dense {
                input,
                output,
                clamp,
                ..
            } => {
                // Candidates relative to the input scale keep s_in * s_w / s_out in range.
                let base = pow2(spec.tensors[*input].quant.scale);
                let c = (-4..=16).map(|e| base * 2f32.powi(e)).collect();
                (*output, *clamp, c)
            }
            op => panic!("unexpected op {op:?}"),
        };
        let mut best = (f64::INFINITY, candidates[candidates.len() - 1]);
        for scale in candidates {
            spec.tensors[output].quant.scale = scale;
            let share = clipped_share(&prefixes(spec)[k], inputs, clamp);
            if share <= 0.02 {
                best = (share, scale);
                break;
            }
            if share < best.0 {
                best = (share, scale);
            }
        }
        spec.tensors[output].quant.scale = best.1;
    }
}

/// The share of a graph's outputs on `inputs` at the clamp bounds (1 if it does not serialize).
fn clipped_share(spec: &GraphSpec, inputs: &[Vec<i8>], clamp: tinyconv::graph::Clamp) -> f64 {
    let Ok(bytes) = spec.to_bytes() else {
        return 1.0;
    };
    let Ok(graph) = Graph::parse(&bytes) else {
        return 1.0;
    };
    let mut arena = vec![0i8; graph.arena_len()];
    let (mut n, mut clipped) = (0, 0);
    for x in inputs {
        let y = graph.infer_int8(x, &mut arena).unwrap();
        n += y.len();
        clipped += y
            .iter()
            .filter(|&&v| v == clamp.min || v == clamp.max)
            .count();
    }
    clipped as f64 / n as f64
}

/// The graph cut after op `k` (its output the graph's output), for `k` in every op: every
/// intermediate tensor is compared, not only the final logits. Tensors are created in op order,
/// so the cut keeps the tensors up to op `k`'s output.
fn prefixes(spec: &GraphSpec) -> Vec<GraphSpec> {
    (0..spec.ops.len())
        .map(|k| {
            let output = match &spec.ops[k] {
                OpSpec::Conv2d { output, .. }
                | OpSpec::Dense { output, .. }
                | OpSpec::MaxPool { output, .. }
                | OpSpec::AvgPool { output, .. }
                | OpSpec::Add { output, .. }
                | OpSpec::Reshape { output, .. } => *output,
                op => panic!("unexpected op {op:?}"),
            };
            let mut p = spec.clone();
            p.ops.truncate(k + 1);
            p.tensors.truncate(output + 1);
            p.output = output;
            p
        })
        .collect()
}

fn tract_plan(onnx: &[u8]) -> std::sync::Arc<TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .expect("tract reads the export")
        .into_optimized()
        .expect("tract optimizes the export")
        .into_runnable()
        .expect("tract plans the export")
}

fn run_tract(plan: &std::sync::Arc<TypedRunnableModel>, shape: Shape, input: &[i8]) -> Vec<i8> {
    let t: Tensor =
        tract_ndarray::Array4::from_shape_vec((1, shape.h, shape.w, shape.c), input.to_vec())
            .unwrap()
            .into();
    let out = plan.run(tvec!(t.into())).expect("tract runs");
    out[0]
        .to_plain_array_view::<i8>()
        .expect("int8 output")
        .iter()
        .copied()
        .collect()
}

fn random_inputs(rng: &mut SplitMix64, len: usize, count: usize) -> Vec<Vec<i8>> {
    let mut v: Vec<Vec<i8>> = vec![vec![i8::MIN; len], vec![i8::MAX; len]];
    while v.len() < count {
        v.push(rng.bytes(len).into_iter().map(|b| b as i8).collect());
    }
    v
}

/// (values compared, values that differ) for one exported model against the runtime.
fn compare(graph: &Graph<'_>, onnx: &[u8], inputs: &[Vec<i8>]) -> (usize, usize) {
    let plan = tract_plan(onnx);
    let mut arena = vec![0i8; graph.arena_len()];
    let (mut compared, mut differ) = (0, 0);
    for x in inputs {
        let ours = graph.infer_int8(x, &mut arena).unwrap().to_vec();
        let theirs = run_tract(&plan, graph.input().shape, x);
        assert_eq!(ours.len(), theirs.len());
        compared += ours.len();
        differ += ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    }
    (compared, differ)
}

const GRAPHS: u64 = 60;
const INPUTS: usize = 20;

#[test]
fn random_graphs_are_bit_exact_with_tract() {
    let (mut graphs, mut inputs, mut values) = (0, 0, 0);
    let mut cov = Coverage::default();
    let mut failures = Vec::new();
    let mut prefix_graphs = 0;
    let (mut clipped, mut distinct) = (0, 0);
    for seed in 0..GRAPHS {
        let (mut spec, c) = random_graph(1000 + seed);
        cov.add(&c);
        let mut rng = SplitMix64(seed);
        let xs = random_inputs(&mut rng, spec.tensors[spec.input].shape.len(), INPUTS);
        calibrate(&mut spec, &xs[2..6]);
        let (s, d) = spread(&spec, &xs);
        (clipped, distinct) = (clipped + s, distinct + d);
        for (k, prefix) in prefixes(&spec).iter().enumerate() {
            let bytes = prefix.to_bytes().expect("the spec serializes");
            let graph = Graph::parse(&bytes).expect("the runtime accepts the graph");
            let onnx = onnx_graph::int8_onnx(&graph).expect("the graph exports");
            let (compared, differ) = compare(&graph, &onnx, &xs);
            if differ > 0 {
                failures.push((seed, k, differ, compared));
            }
            prefix_graphs += 1;
            values += compared;
        }
        graphs += 1;
        inputs += xs.len();
    }
    println!(
        "graph referee: {graphs} graphs ({prefix_graphs} exported: each cut after every op), \
         {inputs} inputs, {values} output values compared, {} cuts with differences \
         (seed, op, differ, compared) {failures:?}",
        failures.len()
    );
    println!("coverage: {cov:?}");
    println!(
        "spread: {clipped} of the final outputs at their clamp bounds; {distinct} distinct \
         (graph, output code) pairs"
    );
    assert!(
        failures.is_empty(),
        "runtime and tract differ: {failures:?}"
    );
    let c = cov;
    for (what, n) in [
        ("RGB first layer", c.rgb),
        ("stride-2 conv", c.conv_stride2),
        ("SAME-padded conv", c.conv_padded),
        ("unpadded conv", c.conv_valid),
        ("1x1 first conv", c.k1x1_first),
        ("3x3 conv", c.k3x3),
        ("5x5 conv", c.k5x5),
        ("non-square kernel", c.non_square),
        ("depthwise stride 1", c.depthwise_s1),
        ("depthwise stride 2", c.depthwise_s2),
        ("padded max pool", c.pool_padded),
        ("unpadded max pool", c.pool_valid),
        ("flattening reshape", c.reshape_flat),
        ("spatial reshape", c.reshape_spatial),
        ("dense over a HxW map", c.dense_spatial),
        ("fused clamp", c.clamped),
    ] {
        assert!(n > 0, "no graph has a {what}");
    }
}

/// (final outputs at -128 or 127 or the clamp, distinct output codes) of a graph on `inputs`.
fn spread(spec: &GraphSpec, inputs: &[Vec<i8>]) -> (usize, usize) {
    let bytes = spec.to_bytes().unwrap();
    let graph = Graph::parse(&bytes).unwrap();
    let mut arena = vec![0i8; graph.arena_len()];
    let mut codes = std::collections::BTreeSet::new();
    let mut clipped = 0;
    for x in inputs {
        let y = graph.infer_int8(x, &mut arena).unwrap();
        clipped += y.iter().filter(|&&v| v == -128 || v == 127).count();
        codes.extend(y.iter().copied());
    }
    (clipped, codes.len())
}

/// Rewrites one initializer's raw bytes of an exported model.
fn perturb(onnx: &[u8], name: &str, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    onnx_graph::with_initializer(onnx, name, |t| f(&mut t.raw_data))
        .unwrap_or_else(|| panic!("no initializer {name}"))
}

#[test]
fn perturbed_exports_are_caught() {
    let (mut spec, _) = random_graph(1003);
    let mut rng = SplitMix64(7);
    let xs = random_inputs(&mut rng, spec.tensors[spec.input].shape.len(), INPUTS);
    calibrate(&mut spec, &xs[2..6]);
    let mut report = Vec::new();
    // Each cut: the first conv alone, and the whole graph.
    let cuts = prefixes(&spec);
    for (what, cut) in [
        ("first conv", &cuts[0]),
        ("whole graph", cuts.last().unwrap()),
    ] {
        let bytes = cut.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        let onnx = onnx_graph::int8_onnx(&graph).unwrap();
        let (compared, differ) = compare(&graph, &onnx, &xs);
        assert_eq!(differ, 0);
        let last = graph.op_count() - 1;
        // One zero point: the last op's output zero point, one step up.
        let zp = perturb(&onnx, &format!("op{last}.y_zero_point"), |raw| {
            raw[0] = raw[0].wrapping_add(1)
        });
        let (_, zp_differ) = compare(&graph, &zp, &xs);
        // One channel's weight scale of the last op, 1% larger: its multiplier changes.
        let scale = perturb(&onnx, &format!("op{last}.w_scale"), |raw| {
            let s = f32::from_le_bytes(raw[..4].try_into().unwrap()) * 1.01;
            raw[..4].copy_from_slice(&s.to_le_bytes());
        });
        let (_, scale_differ) = compare(&graph, &scale, &xs);
        // The same scale one ulp larger: the multiplier moves by one ulp, visible only on ties.
        let ulp = perturb(&onnx, &format!("op{last}.w_scale"), |raw| {
            let s = f32::from_bits(f32::from_le_bytes(raw[..4].try_into().unwrap()).to_bits() + 1);
            raw[..4].copy_from_slice(&s.to_le_bytes());
        });
        let (_, ulp_differ) = compare(&graph, &ulp, &xs);
        // The first conv's output zero point in the whole graph: it shifts every downstream code.
        let (_, zp0_differ) = compare(
            &graph,
            &perturb(&onnx, "op0.y_zero_point", |raw| {
                raw[0] = raw[0].wrapping_add(1)
            }),
            &xs,
        );
        println!(
            "negative controls, {what} ({compared} values): op{last} y_zero_point +1: {zp_differ} \
             differ; op{last} w_scale[0] x1.01: {scale_differ} differ; +1 ulp: {ulp_differ} \
             differ; op0 y_zero_point +1: {zp0_differ} differ"
        );
        report.push((zp_differ, scale_differ));
    }
    for (zp, scale) in report {
        assert!(zp > 0, "a changed zero point went unnoticed");
        assert!(scale > 0, "a changed weight scale went unnoticed");
    }
}

#[test]
fn refusals_name_the_op() {
    // A tflite-rule graph (with add, avg pool, softmax) is refused for its rule.
    let spec = residual_graph(3);
    let bytes = spec.to_bytes().unwrap();
    let graph = Graph::parse(&bytes).unwrap();
    assert!(matches!(
        onnx_graph::int8_onnx(&graph),
        Err(OnnxGraphError::Rule { rule: "tflite" })
    ));
    // GraphBuilder's free (non-power-of-two) scales are refused, naming the first conv.
    let (mut spec, _) = random_graph(1001);
    let mut rng = SplitMix64(5);
    for (t, tensor) in spec.tensors.iter_mut().enumerate() {
        if t != spec.input {
            tensor.quant.scale *= 1.0 + 0.5 * rng.unit();
        }
    }
    // Keep pool and reshape outputs equal to their inputs' quantization.
    let ops = spec.ops.clone();
    for op in &ops {
        if let OpSpec::MaxPool { input, output, .. } | OpSpec::Reshape { input, output } = op {
            spec.tensors[*output].quant = spec.tensors[*input].quant;
        }
    }
    let bytes = spec.to_bytes().unwrap();
    let graph = Graph::parse(&bytes).unwrap();
    let err = onnx_graph::int8_onnx(&graph).unwrap_err();
    println!("refused: {err}");
    assert!(matches!(
        err,
        OnnxGraphError::OutputScale {
            op: 0,
            name: "conv2d",
            ..
        }
    ));
    assert!(onnx_graph::int8_onnx_any_scales(&graph).is_ok());
}

/// Graph `seed` of the free-scale experiments and its inputs: calibrated, then every tensor's
/// scale but the input's multiplied by a random factor in [1, 1.9) (max pool and reshape outputs
/// keep their inputs' quantization, as the runtime requires).
fn free_scale_graph(seed: u64) -> (GraphSpec, Vec<Vec<i8>>) {
    let (mut spec, _) = random_graph(5000 + seed);
    let mut rng = SplitMix64(seed);
    let xs = random_inputs(&mut rng, spec.tensors[spec.input].shape.len(), INPUTS);
    calibrate(&mut spec, &xs[2..6]);
    for (t, tensor) in spec.tensors.iter_mut().enumerate() {
        if t != spec.input {
            tensor.quant.scale *= 1.0 + 0.9 * rng.unit();
        }
    }
    let ops = spec.ops.clone();
    for op in &ops {
        if let OpSpec::MaxPool { input, output, .. } | OpSpec::Reshape { input, output } = op {
            spec.tensors[*output].quant = spec.tensors[*input].quant;
        }
    }
    (spec, xs)
}

/// Free scales through `int8_onnx_any_scales`: how often tract's folded f32 multiplier rounds
/// differently from the runtime's (informational; docs/quantization.md predicts rare one-step
/// differences).
#[test]
fn free_scales_experiment() {
    let (mut graphs, mut values, mut differ_total, mut differing_graphs) = (0, 0, 0, 0);
    for seed in 0..GRAPHS {
        let (spec, xs) = free_scale_graph(seed);
        let mut any = false;
        for cut in prefixes(&spec) {
            let bytes = cut.to_bytes().unwrap();
            let graph = Graph::parse(&bytes).unwrap();
            let onnx = onnx_graph::int8_onnx_any_scales(&graph).unwrap();
            let (compared, differ) = compare(&graph, &onnx, &xs);
            values += compared;
            differ_total += differ;
            any |= differ > 0;
        }
        graphs += 1;
        differing_graphs += any as usize;
    }
    println!(
        "free scales: {graphs} graphs, {values} values, {differ_total} differ \
         ({differing_graphs} graphs with a difference)"
    );
}

/// The multiplier form (`int8_onnx_multipliers`, what `tinyconv import` refers an int8 ONNX
/// model's free scales with) is exact at any scales: the free-scale graphs of
/// `free_scales_experiment`, every intermediate tensor of every cut, no value differs.
/// Negative control: the first conv's multipliers 5 % larger in the export change values.
#[test]
fn the_multiplier_form_is_exact_at_free_scales() {
    let (mut values, mut free_layers, mut controls) = (0, 0, 0);
    for seed in 0..GRAPHS {
        let (spec, xs) = free_scale_graph(seed);
        for cut in prefixes(&spec) {
            let bytes = cut.to_bytes().unwrap();
            let graph = Graph::parse(&bytes).unwrap();
            let onnx = onnx_graph::int8_onnx_multipliers(&graph).unwrap();
            let (compared, differ) = compare(&graph, &onnx, &xs);
            assert_eq!(
                differ, 0,
                "graph {seed}: {differ} of {compared} values differ"
            );
            values += compared;
        }
        let bytes = spec.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        free_layers += graph
            .nodes()
            .filter(|n| n.kind.has_weights() && !n.output_info.quant.scale.log2().fract().eq(&0.0))
            .count();
        assert!(!onnx_graph::has_stated_form(&graph));
        let onnx = onnx_graph::int8_onnx_multipliers(&graph).unwrap();
        let first = graph.nodes().find(|n| n.kind.has_weights()).unwrap().index;
        let bumped = perturb(&onnx, &format!("op{first}.w_scale"), |raw| {
            for c in raw.chunks_exact_mut(4) {
                let s = f32::from_le_bytes(c.try_into().unwrap()) * 1.05;
                c.copy_from_slice(&s.to_le_bytes());
            }
        });
        let (_, differ) = compare(&graph, &bumped, &xs);
        controls += usize::from(differ > 0);
    }
    println!(
        "multiplier form: {GRAPHS} free-scale graphs ({free_layers} layers with a \
         non-power-of-two output scale), {values} values, 0 differ; the bumped control \
         differs in {controls} of {GRAPHS} graphs"
    );
    assert!(free_layers > GRAPHS as usize);
    // A graph can be blind to its first conv's scale (its outputs all saturate or clamp later),
    // so not every graph must notice; nearly all do.
    assert!(
        controls * 10 >= GRAPHS as usize * 9,
        "{controls} of {GRAPHS}"
    );
}

/// Item: what tract computes for the QDQ form of an int8 add (tract-onnx 0.23.9 has no
/// `QLinearAdd`): every pair of int8 codes through tract, against (1) the f32 emulation
/// `sat(rne(f32(f32(f32((a - za) as f32 * sa) + f32((b - zb) as f32 * sb)) * f32(1 / sy))) + zy)`,
/// (2) the exact real-number rounding half to even, (3) the tflite rule's integer add.
#[test]
fn qdq_add_arithmetic() {
    use onnx_graph::Qdq;
    use tinyconv::graph::ops::add as add_op;
    use tinyconv::{soft_f32, tflite_rule};
    let cases = [
        (
            Qdq {
                scale: 0.05,
                zero_point: -3,
            },
            Qdq {
                scale: 0.07,
                zero_point: 5,
            },
            Qdq {
                scale: 0.1,
                zero_point: -10,
            },
        ),
        (
            Qdq {
                scale: 0.25,
                zero_point: 0,
            },
            Qdq {
                scale: 0.125,
                zero_point: 0,
            },
            Qdq {
                scale: 0.5,
                zero_point: 0,
            },
        ),
        (
            Qdq {
                scale: 0.0123,
                zero_point: 7,
            },
            Qdq {
                scale: 0.0311,
                zero_point: -20,
            },
            Qdq {
                scale: 0.0456,
                zero_point: 3,
            },
        ),
        (
            Qdq {
                scale: 1.0 / 255.0,
                zero_point: -128,
            },
            Qdq {
                scale: 2.0 / 255.0,
                zero_point: -128,
            },
            Qdq {
                scale: 3.0 / 255.0,
                zero_point: -128,
            },
        ),
    ];
    let len = 256 * 256;
    let a: Vec<i8> = (0..len).map(|i| (i / 256) as u8 as i8).collect();
    let b: Vec<i8> = (0..len).map(|i| (i % 256) as u8 as i8).collect();
    for (qa, qb, qy) in cases {
        let onnx = onnx_graph::qdq_add_model(len, qa, qb, qy);
        let model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .unwrap()
            .into_optimized()
            .unwrap();
        let ops: Vec<String> = model
            .nodes()
            .iter()
            .map(|n| format!("{}", n.op.name()))
            .collect();
        let plan = model.into_runnable().unwrap();
        let ta: Tensor = tract_ndarray::Array2::from_shape_vec((1, len), a.clone())
            .unwrap()
            .into();
        let tb: Tensor = tract_ndarray::Array2::from_shape_vec((1, len), b.clone())
            .unwrap()
            .into();
        let out = plan.run(tvec!(ta.into(), tb.into())).unwrap();
        let tract: Vec<i8> = out[0]
            .to_plain_array_view::<i8>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let f32_rule = |x: i8, y: i8| -> i8 {
            let fa = (x as i32 - qa.zero_point as i32) as f32 * qa.scale;
            let fb = (y as i32 - qb.zero_point as i32) as f32 * qb.scale;
            let q = ((fa + fb) * qy.scale.recip()).round_ties_even() as i32 + qy.zero_point as i32;
            q.clamp(-128, 127) as i8
        };
        let exact = |x: i8, y: i8| -> i8 {
            let r = (x as f64 - qa.zero_point as f64) * qa.scale as f64
                + (y as f64 - qb.zero_point as f64) * qb.scale as f64;
            ((r / qy.scale as f64).round_ties_even() as i32 + qy.zero_point as i32).clamp(-128, 127)
                as i8
        };
        let params = tflite_rule::add_params(qa.scale, qb.scale, qy.scale);
        let tfl = |x: i8, y: i8| -> Option<i8> {
            let zps = [
                qa.zero_point as i32,
                qb.zero_point as i32,
                qy.zero_point as i32,
            ];
            params
                .as_ref()
                .map(|p| tflite_rule::add(x, y, zps, p, -128, 127))
        };
        // The runtime's integer emulation (ops::add under the onnx rule).
        let (ta, tb) = (
            add_op::dequantize_table(qa.zero_point, qa.scale),
            add_op::dequantize_table(qb.zero_point, qb.scale),
        );
        let recip = soft_f32::recip(qy.scale.to_bits());
        let soft = |x: i8, y: i8| -> i8 {
            let sum = soft_f32::add(ta[x as u8 as usize], tb[y as u8 as usize]);
            add_op::quantize(sum, recip, qy.zero_point, -128, 127)
        };
        let (mut vs_f32, mut vs_exact, mut vs_tflite, mut vs_soft) = (0, 0, 0, 0);
        let mut samples = Vec::new();
        for i in 0..len {
            let (x, y, t) = (a[i], b[i], tract[i]);
            vs_f32 += (f32_rule(x, y) != t) as usize;
            vs_soft += (soft(x, y) != t) as usize;
            let e = exact(x, y);
            vs_exact += (e != t) as usize;
            let l = tfl(x, y);
            let tflite_differs = l.is_some_and(|l| l != t);
            vs_tflite += tflite_differs as usize;
            if (tflite_differs || e != t) && samples.len() < 4 {
                samples.push((x, y, t, e, l));
            }
        }
        println!(
            "QDQ add {qa:?} + {qb:?} -> {qy:?}: tract ops {ops:?}; of {len} pairs tract differs from \
             the f32 emulation on {vs_f32}, from exact rne on {vs_exact}, from the tflite rule on \
             {vs_tflite} (tflite params {}); samples (a, b, tract, exact, tflite): {samples:?}",
            if params.is_some() { "ok" } else { "refused" }
        );
        println!("  the runtime's integer emulation (soft_f32) differs on {vs_soft} of {len}");
        assert_eq!(vs_f32, 0, "tract's QDQ add is not the f32 emulation");
        assert_eq!(vs_soft, 0, "the runtime's onnx-rule add is not tract's");
    }
}

/// Item: the QDQ form of an int8 average pool (no `QLinearAveragePool` in tract-onnx 0.23.9):
/// tract against `sat(rne(f32(f32(Σ_f32 dequant(x)) * f32(1 / count)) * f32(1 / sy)) + zy)`,
/// the sum in f32 in row-major window order, and against the tflite rule's integer average.
#[test]
fn qdq_avg_pool_arithmetic() {
    use onnx_graph::Qdq;
    use tinyconv::graph::ops::add as add_op;
    use tinyconv::soft_f32;
    let mut rng = SplitMix64(11);
    let (c, h, w) = (8, 9, 7);
    for (kernel, strides, pads, qx, qy) in [
        (
            [3, 3],
            [2, 2],
            [1, 1, 1, 1],
            Qdq {
                scale: 0.0371,
                zero_point: 4,
            },
            Qdq {
                scale: 0.0293,
                zero_point: -7,
            },
        ),
        (
            [2, 2],
            [2, 2],
            [0, 0, 1, 1],
            Qdq {
                scale: 0.125,
                zero_point: 0,
            },
            Qdq {
                scale: 0.125,
                zero_point: 0,
            },
        ),
        (
            [h, w],
            [1, 1],
            [0, 0, 0, 0],
            Qdq {
                scale: 0.02,
                zero_point: -5,
            },
            Qdq {
                scale: 0.02,
                zero_point: -5,
            },
        ),
    ] {
        let onnx = onnx_graph::qdq_avg_pool_model([c, h, w], kernel, strides, pads, qx, qy);
        let model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .unwrap()
            .into_optimized()
            .unwrap();
        let ops: Vec<String> = model
            .nodes()
            .iter()
            .map(|n| format!("{}", n.op.name()))
            .collect();
        let plan = model.into_runnable().unwrap();
        let mut total = 0;
        let (mut vs_f32, mut vs_int, mut vs_soft) = (0, 0, 0);
        let table = add_op::dequantize_table(qx.zero_point, qx.scale);
        for _ in 0..20 {
            let x: Vec<i8> = rng.bytes(c * h * w).into_iter().map(|v| v as i8).collect();
            let t: Tensor = tract_ndarray::Array4::from_shape_vec((1, c, h, w), x.clone())
                .unwrap()
                .into();
            let out = plan.run(tvec!(t.into())).unwrap();
            let tract: Vec<i8> = out[0]
                .to_plain_array_view::<i8>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            let oh = (h + pads[0] + pads[2] - kernel[0]) / strides[0] + 1;
            let ow = (w + pads[1] + pads[3] - kernel[1]) / strides[1] + 1;
            for ch in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (mut sum, mut isum, mut count) = (0f32, 0i32, 0usize);
                        let mut soft_sum = 0u32;
                        for ky in 0..kernel[0] {
                            for kx in 0..kernel[1] {
                                let iy = (oy * strides[0] + ky) as isize - pads[0] as isize;
                                let ix = (ox * strides[1] + kx) as isize - pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let v = x[(ch * h + iy as usize) * w + ix as usize] as i32;
                                sum += (v - qx.zero_point as i32) as f32 * qx.scale;
                                soft_sum = soft_f32::add(soft_sum, table[v as u8 as usize]);
                                isum += v - qx.zero_point as i32;
                                count += 1;
                            }
                        }
                        let soft_mean = soft_f32::mul(
                            soft_sum,
                            soft_f32::recip(soft_f32::from_i32(count as i32)),
                        );
                        let soft = add_op::quantize(
                            soft_mean,
                            soft_f32::recip(qy.scale.to_bits()),
                            qy.zero_point,
                            -128,
                            127,
                        );
                        let mean = sum * (count as f32).recip();
                        let q = (mean * qy.scale.recip()).round_ties_even() as i32
                            + qy.zero_point as i32;
                        let expect = q.clamp(-128, 127) as i8;
                        let got = tract[(ch * oh + oy) * ow + ox];
                        vs_f32 += (expect != got) as usize;
                        vs_soft += (soft != got) as usize;
                        // The tflite rule's average (same input and output quantization only).
                        if qx == qy {
                            let avg = tinyconv::tflite_rule::average(isum, count as i32)
                                + qy.zero_point as i32;
                            vs_int += (avg.clamp(-128, 127) as i8 != got) as usize;
                        }
                        total += 1;
                    }
                }
            }
        }
        println!(
            "QDQ avg pool k{kernel:?} s{strides:?} p{pads:?} {qx:?} -> {qy:?}: tract ops {ops:?}; \
             {total} outputs: tract differs from the f32 emulation on {vs_f32}, from the \
             runtime's integer emulation (soft_f32) on {vs_soft}, from the tflite integer \
             average on {vs_int}{}",
            if qx == qy {
                ""
            } else {
                " (not comparable: scales differ)"
            }
        );
        assert_eq!(vs_soft, 0, "the runtime's onnx-rule average is not tract's");
    }
}

/// Free scales: tract's folded per-channel f32 scale (the `Scale` op's constant in its optimized
/// plan) against the runtime's `s_w * (s_in * (1 / s_out))`, for every weighted op (informational).
#[test]
fn free_scales_folded_multipliers() {
    let (mut channels, mut equal, mut names) = (0, 0, std::collections::BTreeMap::new());
    let (mut tie_accs, mut witness) = (0, None);
    for seed in 0..20 {
        let (spec, _) = free_scale_graph(seed);
        let bytes = spec.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        let onnx = onnx_graph::int8_onnx_any_scales(&graph).unwrap();
        let model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .unwrap()
            .into_optimized()
            .unwrap();
        for node in model.nodes() {
            if node.op.name() != "Scale" {
                continue;
            }
            let Some(k) = model.outlet_fact(node.inputs[0]).unwrap().konst.clone() else {
                continue;
            };
            let tract: Vec<f32> = k
                .cast_to::<f32>()
                .unwrap()
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            let op: usize = node.name[2..].split('.').next().unwrap().parse().unwrap();
            let n = graph.node(op);
            let (s_in, s_out) = (n.input.quant.scale, n.output_info.quant.scale);
            let mut eq = 0;
            for (c, &t) in tract.iter().enumerate() {
                let ours = n.weight_scale(c) * (s_in * (1.0 / s_out));
                eq += (ours == t) as usize;
                if ours != t {
                    // Accumulators in +-2^17 that the two scales round differently.
                    let r = |acc: i32, s: f32| {
                        (acc.unsigned_abs() as f32 * s).round_ties_even() as i64
                            * acc.signum() as i64
                    };
                    for acc in -(1 << 17)..(1 << 17) {
                        if r(acc, ours) != r(acc, t) {
                            tie_accs += 1;
                            if witness.is_none() {
                                witness = Some((n.kind.name(), op, c, acc, ours, t));
                            }
                        }
                    }
                }
            }
            channels += tract.len();
            equal += eq;
            let e = names.entry(n.kind.name()).or_insert((0, 0));
            e.0 += eq;
            e.1 += tract.len();
        }
    }
    println!(
        "free scales: tract's folded f32 scale equals the runtime's on {equal} of {channels} \
         channels; by op (equal, channels): {names:?}; on the differing channels {tie_accs} \
         accumulators in +-2^17 requantize differently, e.g. (op, index, channel, acc, runtime \
         scale, tract scale) {witness:?}"
    );
}

/// What a generated residual graph exercises, for the coverage check.
#[derive(Default, Debug, Clone, Copy)]
struct ResidualCoverage {
    adds: usize,
    add_of_the_input: usize,
    add_free_free: usize,
    add_same_tensor: usize,
    add_clamped: usize,
    pool_padded: usize,
    pool_valid: usize,
    pool_global: usize,
    pool_clamped: usize,
}

impl ResidualCoverage {
    fn add(&mut self, o: &ResidualCoverage) {
        macro_rules! sum { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        sum!(
            adds,
            add_of_the_input,
            add_free_free,
            add_same_tensor,
            add_clamped,
            pool_padded,
            pool_valid,
            pool_global,
            pool_clamped
        );
    }
}

/// A random onnx-rule residual graph: an optional residual add over the input (`input +
/// conv(input)`), a first conv, a depthwise 3x3 added to it, a 1x1 conv added to that sum
/// (inputs in either order, sometimes the sum added to itself), an average pool (2x2/2, 3x3/1,
/// 3x3/2 or 2x1/1, SAME-padded or not), sometimes another add over a 1x1 conv of it, a global
/// average pool, a flattening reshape and a dense. Conv and dense output scales are powers of
/// two (the QLinearConv rule needs them); add outputs get free scales and every tensor its own
/// zero point, so each add sees two different scales, most not powers of two.
fn random_residual_graph(seed: u64) -> (GraphSpec, ResidualCoverage) {
    use tinyconv::graph::Clamp;
    let mut cov = ResidualCoverage::default();
    let mut b = GraphBuilder::new(seed, Rule::Onnx);
    let c = [1, 3, 4][b.rng.range(0, 2) as usize];
    let (h, w) = (b.rng.range(4, 13) as usize, b.rng.range(4, 13) as usize);
    let input_scale = 0.005 + 0.05 * b.rng.unit();
    let input = b.tensor(Shape::new(h, w, c), input_scale);
    let mut x = input;
    if b.rng.range(0, 2) == 0 {
        let k = [(3, 3), (1, 1), (3, 1)][b.rng.range(0, 2) as usize];
        let y = b.conv(input, c, k, 1, true, false);
        x = b.add(input, y);
        cov.add_of_the_input += 1;
    }
    let k = [(1, 1), (3, 3), (5, 5), (2, 3)][(seed % 4) as usize];
    let stride = b.rng.range(1, 2) as usize;
    let padded = b.rng.range(0, 1) == 0 || !fits(b.shape(x), k);
    let width = b.rng.range(2, 8) as usize;
    let x1 = b.conv(x, width, k, stride, padded, false);
    let d = b.conv(x1, 0, (3, 3), 1, true, true);
    let r = b.add(x1, d);
    let p = b.conv(r, width, (1, 1), 1, false, false);
    let mut r2 = if b.rng.range(0, 1) == 0 {
        b.add(p, r)
    } else {
        b.add(r, p)
    };
    match b.rng.range(0, 3) {
        // The sum added to itself.
        0 => {
            r2 = b.add(r2, r2);
            cov.add_same_tensor += 1;
        }
        // Two sums: two free scales.
        1 | 2 => r2 = b.add(r2, r),
        _ => {}
    }
    let mut y = r2;
    let s = b.shape(y);
    if s.h * s.w > 1 {
        let pools = [((2, 2), 2), ((3, 3), 1), ((3, 3), 2), ((2, 1), 1)];
        let (pk, ps) = pools[b.rng.range(0, 3) as usize];
        let pool_padded = b.rng.range(0, 1) == 0 || !fits(s, pk);
        let (window, _, _) = b.window(y, pk, ps, pool_padded);
        let pads = window.pads;
        y = b.pool(y, pk, ps, pool_padded, true);
        if pads.top + pads.left + pads.bottom + pads.right > 0 {
            cov.pool_padded += 1;
        } else {
            cov.pool_valid += 1;
        }
        if b.rng.range(0, 1) == 0 {
            let yc = b.shape(y).c;
            let q = b.conv(y, yc, (1, 1), 1, false, false);
            y = b.add(q, y);
        }
    }
    let s = b.shape(y);
    if s.h * s.w > 1 {
        y = b.pool(y, (s.h, s.w), 1, false, true);
        cov.pool_global += 1;
    }
    let f = b.reshape(y, Shape::new(1, 1, s.c));
    let classes = b.rng.range(2, 10) as usize;
    let out = b.dense(f, classes);
    let mut spec = b.finish(input, out);
    let mut rng = SplitMix64(seed ^ 0xa5a5);
    for op in spec.ops.iter_mut() {
        match op {
            OpSpec::AvgPool { clamp, .. } if rng.range(0, 2) == 0 => {
                *clamp = Clamp { min: -40, max: 90 };
                cov.pool_clamped += 1;
            }
            OpSpec::Add { clamp, .. } => {
                cov.adds += 1;
                cov.add_clamped += (*clamp != Clamp::NONE) as usize;
            }
            _ => {}
        }
    }
    (spec, cov)
}

/// Whether a scale is a power of two.
fn is_pow2(s: f32) -> bool {
    s.to_bits() & 0x7f_ffff == 0
}

/// The op that writes each tensor (`None` for the graph input).
fn writers(spec: &GraphSpec) -> Vec<Option<usize>> {
    let mut w = vec![None; spec.tensors.len()];
    for (k, cut) in prefixes(spec).iter().enumerate() {
        w[cut.output] = Some(k);
    }
    w
}

/// Tensor `t`'s bytes on input `x` (through the cut that writes it).
fn tensor_bytes(spec: &GraphSpec, t: usize, x: &[i8]) -> Vec<i8> {
    let Some(k) = writers(spec)[t] else {
        return x.to_vec();
    };
    let bytes = prefixes(spec)[k].to_bytes().unwrap();
    let graph = Graph::parse(&bytes).unwrap();
    let mut arena = vec![0i8; graph.arena_len()];
    graph.infer_int8(x, &mut arena).unwrap().to_vec()
}

const RESIDUAL_GRAPHS: u64 = 40;

#[test]
fn residual_graphs_with_adds_and_average_pools_are_bit_exact_with_tract() {
    let (mut graphs, mut values, mut prefix_graphs) = (0, 0, 0);
    let (mut add_values, mut pool_values) = (0, 0);
    let mut cov = ResidualCoverage::default();
    let mut failures = Vec::new();
    let (mut add_scales, mut add_scales_free) = (0, 0);
    let mut distinct = Vec::new();
    let mut pools_requantized = 0;
    for seed in 0..RESIDUAL_GRAPHS {
        let (mut spec, c) = random_residual_graph(3000 + seed);
        let mut rng = SplitMix64(seed);
        let xs = random_inputs(&mut rng, spec.tensors[spec.input].shape.len(), INPUTS);
        calibrate(&mut spec, &xs[2..6]);
        // Under the onnx rule an average pool may requantize (onnxruntime's quantizer gives a
        // global average pool its own scale): every odd graph's pools get their own scale and
        // zero point; pools and reshapes after them keep what they read.
        if seed % 2 == 1 {
            for k in 0..spec.ops.len() {
                match spec.ops[k].clone() {
                    OpSpec::AvgPool { input, output, .. } => {
                        let q = spec.tensors[input].quant;
                        spec.tensors[output].quant = tinyconv::QuantParams {
                            scale: q.scale * 0.6137,
                            zero_point: q.zero_point.saturating_add(3),
                        };
                        pools_requantized += 1;
                    }
                    OpSpec::MaxPool { input, output, .. } | OpSpec::Reshape { input, output } => {
                        spec.tensors[output].quant = spec.tensors[input].quant;
                    }
                    _ => {}
                }
            }
        }
        for op in &spec.ops {
            if let OpSpec::Add { inputs, output, .. } = op {
                let q = |t: usize| spec.tensors[t].quant;
                if inputs[0] != inputs[1] {
                    let (a, b) = (q(inputs[0]), q(inputs[1]));
                    assert!(a != b, "an add whose inputs share scale and zero point");
                    cov.add_free_free += (!is_pow2(a.scale) && !is_pow2(b.scale)) as usize;
                }
                for t in [inputs[0], inputs[1], *output] {
                    add_scales += 1;
                    add_scales_free += !is_pow2(q(t).scale) as usize;
                }
            }
        }
        cov.add(&c);
        for (k, prefix) in prefixes(&spec).iter().enumerate() {
            let bytes = prefix.to_bytes().expect("the spec serializes");
            let graph = Graph::parse(&bytes).expect("the runtime accepts the graph");
            let onnx = onnx_graph::int8_onnx(&graph).expect("the graph exports");
            let (compared, differ) = compare(&graph, &onnx, &xs);
            if differ > 0 {
                failures.push((seed, k, graph.node(k).kind.name(), differ, compared));
            }
            match spec.ops[k] {
                OpSpec::Add { .. } => add_values += compared,
                OpSpec::AvgPool { .. } => pool_values += compared,
                _ => {}
            }
            if matches!(spec.ops[k], OpSpec::Add { .. } | OpSpec::AvgPool { .. }) {
                let mut arena = vec![0i8; graph.arena_len()];
                let codes: std::collections::BTreeSet<i8> = xs
                    .iter()
                    .flat_map(|x| graph.infer_int8(x, &mut arena).unwrap().to_vec())
                    .collect();
                distinct.push(codes.len());
            }
            prefix_graphs += 1;
            values += compared;
        }
        graphs += 1;
    }
    println!(
        "residual referee: {graphs} graphs ({prefix_graphs} cuts), {values} values compared \
         ({add_values} add outputs, {pool_values} average-pool outputs), {} cuts with \
         differences (seed, op, name, differ, compared) {failures:?}",
        failures.len()
    );
    println!(
        "residual coverage: {cov:?}; {add_scales_free} of {add_scales} add input/output scales \
         are not powers of two; {pools_requantized} average pools with their own output \
         quantization"
    );
    assert!(pools_requantized >= 20, "{pools_requantized}");
    distinct.sort();
    let few = distinct.iter().filter(|&&d| d < 8).count();
    println!(
        "residual spread: distinct output codes of the {} add and average-pool cuts: min {}, \
         median {}, max {}; {few} with fewer than 8",
        distinct.len(),
        distinct[0],
        distinct[distinct.len() / 2],
        distinct[distinct.len() - 1]
    );
    assert!(
        failures.is_empty(),
        "runtime and tract differ: {failures:?}"
    );
    assert!(
        few * 10 <= distinct.len(),
        "too many add or pool outputs nearly constant"
    );
    let c = cov;
    for (what, n) in [
        ("add", c.adds),
        ("add over the graph input", c.add_of_the_input),
        ("add of two free scales", c.add_free_free),
        ("add of a tensor to itself", c.add_same_tensor),
        ("clamped add", c.add_clamped),
        ("padded average pool", c.pool_padded),
        ("unpadded average pool", c.pool_valid),
        ("global average pool", c.pool_global),
        ("clamped average pool", c.pool_clamped),
    ] {
        assert!(n > 0, "no graph has a {what}");
    }
}

/// Negative controls of the add and average pool: an export with the op's output zero point +1
/// or one input scale one ulp up, and the tflite rule's integer add and average on the
/// runtime's own inputs to the op, must differ from tract.
#[test]
fn residual_negative_controls() {
    use tinyconv::tflite_rule;
    let (mut zp_add, mut ulp_add, mut tfl_add, mut n_add) = (0, 0, 0, 0);
    let (mut zp_pool, mut ulp_pool, mut tfl_pool, mut n_pool) = (0, 0, 0, 0);
    for seed in 0..6 {
        let (mut spec, _) = random_residual_graph(3000 + seed);
        let mut rng = SplitMix64(100 + seed);
        let xs = random_inputs(&mut rng, spec.tensors[spec.input].shape.len(), INPUTS);
        calibrate(&mut spec, &xs[2..6]);
        let cuts = prefixes(&spec);
        for (k, cut) in cuts.iter().enumerate() {
            let (scale_name, is_add) = match spec.ops[k] {
                OpSpec::Add { .. } => (format!("op{k}.b_scale"), true),
                OpSpec::AvgPool { .. } => (format!("op{k}.x_scale"), false),
                _ => continue,
            };
            let bytes = cut.to_bytes().unwrap();
            let graph = Graph::parse(&bytes).unwrap();
            let onnx = onnx_graph::int8_onnx(&graph).unwrap();
            let (compared, differ) = compare(&graph, &onnx, &xs);
            assert_eq!(differ, 0);
            let zp = perturb(&onnx, &format!("op{k}.y_zero_point"), |raw| {
                raw[0] = raw[0].wrapping_add(1)
            });
            let (_, zp_differ) = compare(&graph, &zp, &xs);
            let ulp = perturb(&onnx, &scale_name, |raw| {
                let s =
                    f32::from_bits(f32::from_le_bytes(raw[..4].try_into().unwrap()).to_bits() + 1);
                raw[..4].copy_from_slice(&s.to_le_bytes());
            });
            let (_, ulp_differ) = compare(&graph, &ulp, &xs);
            // The tflite rule's arithmetic on the same op inputs, against tract's outputs.
            let plan = tract_plan(&onnx);
            let n = graph.node(k);
            let (lo, hi) = (n.clamp.min as i32, n.clamp.max as i32);
            let mut tfl_differ = 0;
            for x in &xs {
                let tract = run_tract(&plan, graph.input().shape, x);
                let a = tensor_bytes(&spec, n.inputs[0], x);
                let ours: Vec<i8> = if is_add {
                    let b = tensor_bytes(&spec, n.inputs[1], x);
                    let p = tflite_rule::add_params(
                        n.input.quant.scale,
                        n.input2.quant.scale,
                        n.output_info.quant.scale,
                    )
                    .expect("tflite add params");
                    let zps = [
                        n.input.quant.zero_point as i32,
                        n.input2.quant.zero_point as i32,
                        n.output_info.quant.zero_point as i32,
                    ];
                    a.iter()
                        .zip(&b)
                        .map(|(&u, &v)| tflite_rule::add(u, v, zps, &p, lo, hi))
                        .collect()
                } else {
                    let mut out = vec![0i8; n.output_info.shape.len()];
                    let mut t = n;
                    t.rule = Rule::Tflite;
                    tinyconv::graph::ops::avg_pool::tflite(&t, &a, &mut out);
                    out
                };
                tfl_differ += ours.iter().zip(&tract).filter(|(u, v)| u != v).count();
            }
            println!(
                "negative controls, op{k} ({}, {compared} values): y_zero_point +1: {zp_differ} \
                 differ; {scale_name} +1 ulp: {ulp_differ}; tflite rule: {tfl_differ}",
                n.kind.name()
            );
            if is_add {
                (zp_add, ulp_add, tfl_add, n_add) = (
                    zp_add + zp_differ,
                    ulp_add + ulp_differ,
                    tfl_add + tfl_differ,
                    n_add + compared,
                );
                assert!(zp_differ > 0, "an add's zero point +1 went unnoticed");
            } else {
                (zp_pool, ulp_pool, tfl_pool, n_pool) = (
                    zp_pool + zp_differ,
                    ulp_pool + ulp_differ,
                    tfl_pool + tfl_differ,
                    n_pool + compared,
                );
                assert!(
                    zp_differ > 0,
                    "an average pool's zero point +1 went unnoticed"
                );
            }
        }
    }
    println!(
        "negative controls: adds ({n_add} values) zp+1 {zp_add}, scale +1 ulp {ulp_add}, tflite \
         {tfl_add}; average pools ({n_pool} values) zp+1 {zp_pool}, scale +1 ulp {ulp_pool}, \
         tflite {tfl_pool}"
    );
    assert!(
        tfl_add > 0,
        "the tflite add is indistinguishable from tract's"
    );
    assert!(
        tfl_pool > 0,
        "the tflite average is indistinguishable from tract's"
    );
}
