//! Model format v2: graphs built with the writer parse, plan soundly (checked here against an
//! independent liveness computation), run, and compute hand-worked values; damaged files are
//! refused with typed errors and never panic.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use tinyconv::graph::{
    Clamp, Graph, GraphSpec, OpKind, OpSpec, Pads, Rule, TensorSpec, WeightsSpec, Window,
};
use tinyconv::testing::{SplitMix64, residual_graph};
use tinyconv::{Error, QuantParams, Shape};

/// Each tensor's live interval computed from the spec alone: (first op, last op), with a
/// reshape's output sharing its input's bytes (a reshape neither ends nor starts a life).
fn lives(spec: &GraphSpec) -> Vec<Option<(usize, usize)>> {
    let n = spec.tensors.len();
    let mut root: Vec<usize> = (0..n).collect();
    let mut life: Vec<Option<(usize, usize)>> = vec![None; n];
    life[spec.input] = Some((0, 0));
    let extend = |life: &mut Vec<Option<(usize, usize)>>, t: usize, at: usize| {
        let (a, b) = life[t].unwrap_or((at, at));
        life[t] = Some((a.min(at), b.max(at)));
    };
    for (i, op) in spec.ops.iter().enumerate() {
        let (inputs, output): (Vec<usize>, usize) = match op {
            OpSpec::Conv2d { input, output, .. }
            | OpSpec::Dense { input, output, .. }
            | OpSpec::MaxPool { input, output, .. }
            | OpSpec::AvgPool { input, output, .. }
            | OpSpec::Softmax { input, output, .. }
            | OpSpec::Reshape { input, output } => (vec![*input], *output),
            OpSpec::Add { inputs, output, .. } => (inputs.to_vec(), *output),
        };
        for t in inputs {
            extend(&mut life, root[t], i);
        }
        if let OpSpec::Reshape { input, output } = op {
            root[*output] = root[*input];
        } else {
            extend(&mut life, output, i);
        }
    }
    extend(&mut life, root[spec.output], spec.ops.len());
    (0..n)
        .map(|t| if root[t] == t { life[t] } else { None })
        .collect()
}

/// The (input root, output) pairs the planner may let share bytes, from the spec alone: a
/// conv2d's output with its input, an add's output with either input, when that input is read
/// by no later op (whether the placement keeps the op's lead is the runtime's business: the
/// test below checks every streamed op's output against a run with every tensor apart).
fn stream_pairs(spec: &GraphSpec) -> BTreeSet<(usize, usize)> {
    let lives = lives(spec);
    let mut root: Vec<usize> = (0..spec.tensors.len()).collect();
    let mut pairs = BTreeSet::new();
    for (i, op) in spec.ops.iter().enumerate() {
        let (inputs, output) = match op {
            OpSpec::Conv2d { input, output, .. } => (vec![*input], *output),
            OpSpec::Add { inputs, output, .. } => (inputs.to_vec(), *output),
            OpSpec::Reshape { input, output } => {
                root[*output] = root[*input];
                continue;
            }
            _ => continue,
        };
        for t in inputs {
            let r = root[t];
            if lives[r].is_some_and(|l| l.1 == i) {
                pairs.insert((r, output));
            }
        }
    }
    pairs
}

/// Pairs of root tensors that are live at once but share bytes, other than `allowed` ones.
fn clashes_but(
    spec: &GraphSpec,
    offset: impl Fn(usize) -> usize,
    allowed: &BTreeSet<(usize, usize)>,
) -> Vec<(usize, usize)> {
    clashes(spec, offset)
        .into_iter()
        .filter(|&(a, b)| !allowed.contains(&(a, b)) && !allowed.contains(&(b, a)))
        .collect()
}

/// Pairs of root tensors that are live at once but share bytes.
fn clashes(spec: &GraphSpec, offset: impl Fn(usize) -> usize) -> Vec<(usize, usize)> {
    let lives = lives(spec);
    let mut bad = Vec::new();
    for a in 0..lives.len() {
        for b in a + 1..lives.len() {
            let (Some(la), Some(lb)) = (lives[a], lives[b]) else {
                continue;
            };
            let overlap_in_time = la.0 <= lb.1 && lb.0 <= la.1;
            let (ra, rb) = (
                offset(a)..offset(a) + spec.tensors[a].shape.len(),
                offset(b)..offset(b) + spec.tensors[b].shape.len(),
            );
            if overlap_in_time && ra.start < rb.end && rb.start < ra.end {
                bad.push((a, b));
            }
        }
    }
    bad
}

#[test]
fn residual_graphs_plan_soundly_and_run() {
    let mut kinds = BTreeSet::new();
    // Per conv output: distinct codes / min(len, 40).
    let mut distinct = Vec::new();
    let mut streamed = 0;
    for seed in 0..300 {
        let spec = residual_graph(seed);
        let bytes = spec
            .to_bytes()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let graph = Graph::parse(&bytes).unwrap();
        assert_eq!(tinyconv::required_arena_len(&bytes), graph.arena_len());
        let plan = *graph.plan();
        let offset = |t: usize| plan.tensor_offset[t] as usize;
        let pairs = stream_pairs(&spec);
        let bad = clashes_but(&spec, offset, &pairs);
        assert!(
            bad.is_empty(),
            "seed {seed}: live tensors share bytes: {bad:?}"
        );
        streamed += clashes(&spec, offset).len();
        // A reshape is a view: its output starts where its input does.
        for op in &spec.ops {
            if let OpSpec::Reshape { input, output } = op {
                assert_eq!(plan.tensor_offset[*input], plan.tensor_offset[*output]);
            }
        }
        // The arena is never larger than keeping every tensor and every scratch.
        let total: usize = lives(&spec)
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .map(|(t, _)| spec.tensors[t].shape.len().div_ceil(4) * 4)
            .sum::<usize>()
            + plan
                .scratch_len
                .iter()
                .map(|&s| (s as usize).div_ceil(4) * 4)
                .sum::<usize>();
        assert!(graph.arena_len() <= total);

        let mut rng = SplitMix64(seed ^ 0xabc);
        let input: Vec<i8> = rng
            .bytes(graph.input().shape.len())
            .iter()
            .map(|&b| b as i8)
            .collect();
        let mut arena = vec![0i8; graph.arena_len()];
        let out = graph.infer_int8(&input, &mut arena).unwrap().to_vec();
        // A softmax's probabilities sum to one, within a code per class.
        let sum: i32 = out.iter().map(|&q| q as i32 + 128).sum();
        assert!(
            (sum - 256).abs() <= out.len() as i32,
            "seed {seed}: softmax sums to {sum}/256"
        );
        // The activations use the int8 range, not only the clamp bounds.
        let mut observed = vec![0i8; graph.arena_len()];
        graph
            .infer_observed(&input, &mut observed, &mut |op, y| {
                if op < 3 {
                    distinct.push(
                        y.iter().collect::<BTreeSet<_>>().len().min(y.len()) as f64
                            / y.len().min(40) as f64,
                    );
                }
            })
            .unwrap();
        // Deterministic, and independent of what the arena held before.
        let mut dirty = vec![0x55i8; graph.arena_len() + 7];
        assert_eq!(graph.infer_int8(&input, &mut dirty).unwrap(), &out[..]);
        // Every op's output as with every tensor in its own buffer (no streaming).
        let apart = run_apart(&graph, &input);
        graph
            .infer_observed(&input, &mut dirty, &mut |op, y| {
                assert_eq!(y, &apart[graph.node(op).output][..], "seed {seed}: op {op}");
            })
            .unwrap();
        for node in graph.nodes() {
            kinds.insert(node.kind.name());
        }
    }
    assert_eq!(kinds.len(), 8, "every op kind ran: {kinds:?}");
    // The planner streamed outputs over consumed inputs (else the check above checked little).
    println!("{streamed} streamed (input, output) pairs in 300 graphs");
    assert!(streamed >= 200, "only {streamed} streamed pairs");
    let mean = distinct.iter().sum::<f64>() / distinct.len() as f64;
    assert!(
        mean > 0.5,
        "conv outputs are mostly clamped: mean distinct-code ratio {mean:.2}"
    );
}

/// Every tensor of one inference, each op run on its own buffers (`ops::run`, no arena).
fn run_apart(graph: &Graph<'_>, input: &[i8]) -> Vec<Vec<i8>> {
    let mut tensors: Vec<Vec<i8>> = (0..graph.tensor_count())
        .map(|t| vec![0; graph.tensor(t).shape.len()])
        .collect();
    tensors[graph.input_index()] = input.to_vec();
    for node in graph.nodes() {
        let inputs = node.inputs.map(|t| tensors[t].clone());
        let mut output = vec![0; graph.tensor(node.output).shape.len()];
        let mut scratch = vec![0; graph.plan().scratch_len[node.index] as usize + 4];
        // Word-aligned scratch, as the arena's.
        let at = scratch.as_ptr().align_offset(4);
        let len = graph.plan().scratch_len[node.index] as usize;
        tinyconv::graph::ops::run(
            &node,
            [&inputs[0], &inputs[1]],
            &mut output,
            &mut scratch[at..at + len],
        );
        tensors[node.output] = output;
    }
    tensors
}

#[test]
fn the_liveness_check_catches_a_clash() {
    // Negative control for the check above: put every tensor at offset 0.
    let spec = residual_graph(1);
    assert!(!clashes(&spec, |_| 0).is_empty());
}

#[test]
fn a_residual_input_stays_alive_until_its_add() {
    let spec = residual_graph(7);
    let bytes = spec.to_bytes().unwrap();
    let graph = Graph::parse(&bytes).unwrap();
    let add = graph.nodes().find(|n| n.kind == OpKind::Add).unwrap();
    let [x, pw] = add.inputs;
    // Every op between x's producer and the add writes outside x.
    let x_range = graph.tensor_range(x);
    for node in graph.nodes().take(add.index).skip(1) {
        let out = graph.tensor_range(node.output);
        assert!(
            out.end <= x_range.start || x_range.end <= out.start,
            "op {} overwrote the residual input",
            node.index
        );
    }
    assert_ne!(x, pw);
}

/// One op on a small input, as a whole graph.
fn single(rule: Rule, input: TensorSpec, output: TensorSpec, op: OpSpec) -> GraphSpec {
    GraphSpec {
        rule,
        tensors: vec![input, output],
        input: 0,
        output: 1,
        pixel_scale: None,
        ops: vec![op],
    }
}

fn run(spec: &GraphSpec, input: &[i8]) -> Vec<i8> {
    let bytes = spec.to_bytes().unwrap();
    let graph = Graph::parse(&bytes).unwrap();
    let mut arena = vec![0i8; graph.arena_len()];
    graph.infer_int8(input, &mut arena).unwrap().to_vec()
}

const UNIT: QuantParams = QuantParams {
    scale: 1.0,
    zero_point: 0,
};

fn t(h: usize, w: usize, c: usize, quant: QuantParams) -> TensorSpec {
    TensorSpec {
        shape: Shape::new(h, w, c),
        quant,
    }
}

#[test]
fn asymmetric_same_padding_of_a_strided_conv() {
    // 1x4 input [1 2 3 4], kernel 1x3 of ones, stride 2. TensorFlow's SAME: out = ceil(4/2) =
    // 2, total padding (2-1)*2 + 3 - 4 = 1, all of it on the right. So out = [1+2+3, 3+4+0] =
    // [6, 7]; padding on the left instead would give [0+1+2, 2+3+4] = [3, 9].
    for rule in [Rule::Tflite, Rule::Onnx] {
        let spec = single(
            rule,
            t(1, 4, 1, UNIT),
            t(1, 2, 1, UNIT),
            OpSpec::Conv2d {
                input: 0,
                output: 1,
                window: Window {
                    kernel_h: 1,
                    kernel_w: 3,
                    stride_h: 2,
                    stride_w: 2,
                    pads: Pads {
                        right: 1,
                        ..Pads::default()
                    },
                },
                depthwise: false,
                clamp: Clamp::NONE,
                params: WeightsSpec {
                    weights: vec![1, 1, 1],
                    bias: vec![0],
                    weight_scales: vec![1.0],
                },
            },
        );
        assert_eq!(run(&spec, &[1, 2, 3, 4]), [6, 7], "{rule:?}");
    }
}

#[test]
fn depthwise_conv_with_zero_points_and_relu6() {
    // Two channels, 1x2 input, kernel 1x2 valid: one output pixel. Input zero point 1, output
    // scale 0.5 (so codes double), output zero point -3, clamp to [-3, 9] (ReLU6 at 0.5 a code
    // is 12 codes above the zero point: 9).
    // channel 0: w = [2, -1], x = [4, 6] -> 2*(4-1) - (6-1) = 1, + bias 2 = 3 -> 6 codes -> 3.
    // channel 1: w = [3, 3], x = [5, 7] -> 3*4 + 3*6 = 30, + bias 0 -> 60 codes -> 57 -> 9.
    let spec = single(
        Rule::Tflite,
        t(
            1,
            2,
            2,
            QuantParams {
                scale: 1.0,
                zero_point: 1,
            },
        ),
        t(
            1,
            1,
            2,
            QuantParams {
                scale: 0.5,
                zero_point: -3,
            },
        ),
        OpSpec::Conv2d {
            input: 0,
            output: 1,
            window: Window {
                kernel_h: 1,
                kernel_w: 2,
                stride_h: 1,
                stride_w: 1,
                pads: Pads::default(),
            },
            depthwise: true,
            clamp: Clamp { min: -3, max: 9 },
            params: WeightsSpec {
                // HWC: tap 0 of both channels, then tap 1.
                weights: vec![2, 3, -1, 3],
                bias: vec![2, 0],
                weight_scales: vec![1.0, 1.0],
            },
        },
    );
    // Input HWC: pixel 0 = (4, 5), pixel 1 = (6, 7).
    assert_eq!(run(&spec, &[4, 5, 6, 7]), [3, 9]);
}

fn pool_2x2_padded(average: bool) -> GraphSpec {
    let window = Window {
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 1,
        stride_w: 1,
        pads: Pads {
            bottom: 1,
            right: 1,
            ..Pads::default()
        },
    };
    let (input, output, clamp) = (0, 1, Clamp::NONE);
    let op = if average {
        OpSpec::AvgPool {
            input,
            output,
            window,
            clamp,
        }
    } else {
        OpSpec::MaxPool {
            input,
            output,
            window,
            clamp,
        }
    };
    let q = QuantParams {
        scale: 0.1,
        zero_point: 5,
    };
    single(Rule::Tflite, t(2, 2, 1, q), t(2, 2, 1, q), op)
}

#[test]
fn average_pool_counts_only_in_bounds_pixels_and_rounds_half_away() {
    // Input [[1, 2], [3, 4]], 2x2 windows, padding bottom and right:
    // (0,0): 1+2+3+4 = 10 over 4 = 2.5 -> 3; (0,1): 2+4 = 6 over 2 = 3;
    // (1,0): 3+4 = 7 over 2 = 3.5 -> 4; (1,1): 4 over 1 = 4.
    let spec = pool_2x2_padded(true);
    assert_eq!(run(&spec, &[1, 2, 3, 4]), [3, 3, 4, 4]);
    // Negative sums round away from zero too: -2.5 -> -3, -3, -3.5 -> -4, -4.
    assert_eq!(run(&spec, &[-1, -2, -3, -4]), [-3, -3, -4, -4]);
}

#[test]
fn max_pool_never_takes_the_padding() {
    // All values negative: a padded zero would win if padding were counted.
    let spec = pool_2x2_padded(false);
    assert_eq!(run(&spec, &[-5, -6, -7, -8]), [-5, -6, -7, -8]);
    assert_eq!(run(&spec, &[1, 9, 3, 4]), [9, 9, 4, 4]);
}

#[test]
fn reshape_is_a_view_and_the_graph_output_can_be_one() {
    let q = QuantParams {
        scale: 0.3,
        zero_point: 2,
    };
    let mut spec = pool_2x2_padded(false);
    spec.tensors[0].quant = q;
    spec.tensors[1].quant = q;
    spec.tensors.push(t(1, 1, 4, q));
    spec.ops.push(OpSpec::Reshape {
        input: 1,
        output: 2,
    });
    spec.output = 2;
    let bytes = spec.to_bytes().unwrap();
    let graph = Graph::parse(&bytes).unwrap();
    assert_eq!(graph.tensor_range(1), graph.tensor_range(2));
    let mut arena = vec![0; graph.arena_len()];
    assert_eq!(
        graph.infer_int8(&[1, 9, 3, 4], &mut arena).unwrap(),
        [9, 9, 4, 4]
    );
}

#[test]
fn softmax_is_refused_under_the_onnx_rule() {
    // Softmax has no onnx-rule arithmetic (tract runs it in f32 between QDQ pairs).
    let softmax = single(
        Rule::Onnx,
        t(1, 1, 4, UNIT),
        t(
            1,
            1,
            4,
            QuantParams {
                scale: 1.0 / 256.0,
                zero_point: -128,
            },
        ),
        OpSpec::Softmax {
            input: 0,
            output: 1,
            beta: 1.0,
        },
    );
    assert!(matches!(
        softmax.to_bytes(),
        Err(Error::NotUnderRule {
            op: 0,
            name: "softmax",
            rule: "onnx"
        })
    ));
    let mut tflite = softmax.clone();
    tflite.rule = Rule::Tflite;
    assert!(tflite.to_bytes().is_ok());
    // The average pool has tract's f32 arithmetic, emulated (docs/quantization.md).
    let mut spec = pool_2x2_padded(true);
    spec.rule = Rule::Onnx;
    assert!(spec.to_bytes().is_ok());
    // Max pool is rule-independent.
    let mut spec = pool_2x2_padded(false);
    spec.rule = Rule::Onnx;
    assert!(spec.to_bytes().is_ok());
}

/// Recomputes the CRC after an edit, so that the structural checks see it.
fn fix_crc(bytes: &mut [u8]) {
    let body = bytes.len() - 4;
    let crc = tinyconv::format::checksum(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn graph_faults_are_typed_errors() {
    use tinyconv::graph::format::{self, record};
    let spec = residual_graph(3);
    let good = spec.to_bytes().unwrap();
    let tc = spec.tensors.len();
    let edit = |at: usize, value: &[u8]| {
        let mut b = good.clone();
        b[at..at + value.len()].copy_from_slice(value);
        fix_crc(&mut b);
        Graph::parse(&b).map(|_| ())
    };
    // Op 0 reads the output of the last op: not yet written.
    let last = (tc - 1) as u16;
    let r0 = format::op_at(tc, 0);
    assert!(matches!(
        edit(r0 + record::INPUT0, &last.to_le_bytes()),
        Err(Error::GraphOrder { op: Some(0), .. })
    ));
    // Op 1 writes op 0's output again.
    let r1 = format::op_at(tc, 1);
    let out0 = good[r0 + record::OUTPUT..r0 + record::OUTPUT + 2].to_vec();
    assert!(matches!(
        edit(r1 + record::OUTPUT, &out0),
        Err(Error::GraphOrder { op: Some(1), .. })
    ));
    // An unknown op code, a clamp upside down, a stride of zero, a padding as large as the kernel.
    assert!(matches!(
        edit(r0 + record::OP, &[99]),
        Err(Error::UnknownOp { op: 0, code: 99 })
    ));
    assert!(matches!(
        edit(r0 + record::CLAMP_MIN, &[100, 0]),
        Err(Error::InvalidField { layer: Some(0), .. })
    ));
    assert!(matches!(
        edit(r0 + record::STRIDE_H, &[0]),
        Err(Error::InvalidField { layer: Some(0), .. })
    ));
    let kh = good[r0 + record::KERNEL_H];
    assert!(matches!(
        edit(r0 + record::PAD_TOP, &[kh]),
        Err(Error::InvalidField { layer: Some(0), .. })
    ));
    // A multiplier one off.
    let word_at = |at: usize| u32::from_le_bytes(good[at..at + 4].try_into().unwrap()) as usize;
    let m = word_at(r0 + record::MULTIPLIERS_OFFSET);
    let word = i32::from_le_bytes(good[m..m + 4].try_into().unwrap());
    assert!(matches!(
        edit(m, &(word + 1).to_le_bytes()),
        Err(Error::BadQuantization { layer: Some(0), .. })
    ));
    // A weight of -128.
    let w = word_at(r0 + record::WEIGHTS_OFFSET);
    assert!(matches!(
        edit(w, &[0x80]),
        Err(Error::WeightOutOfRange { layer: 0, index: 0 })
    ));
    // A tensor of 2^24 + 1 bytes or more.
    assert!(matches!(
        edit(format::tensor_at(0), &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Err(Error::TensorTooLarge { tensor: 0, .. })
    ));
    // Without the CRC fixed, any flip is a checksum mismatch.
    let mut b = good.clone();
    b[r0] ^= 1;
    assert!(matches!(
        Graph::parse(&b),
        Err(Error::ChecksumMismatch { .. })
    ));
    // A version-1 model is not a graph (the v1 reader takes it).
    let mut b = good.clone();
    b[4] = 1;
    fix_crc(&mut b);
    assert!(matches!(
        Graph::parse(&b),
        Err(Error::UnsupportedVersion {
            found: 1,
            supported: 2
        })
    ));
}

#[test]
fn every_byte_damaged_and_every_truncation_is_refused_or_runs_without_panic() {
    let spec = residual_graph(11);
    let good = spec.to_bytes().unwrap();
    let graph = Graph::parse(&good).unwrap();
    let input = vec![3i8; graph.input().shape.len()];
    let mut accepted = 0;
    for at in 0..good.len() - 4 {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = good.clone();
            b[at] ^= flip;
            fix_crc(&mut b);
            let result = catch_unwind(AssertUnwindSafe(|| {
                let Ok(g) = Graph::parse(&b) else {
                    return false;
                };
                let mut arena = vec![0i8; g.arena_len()];
                let n = g.input().shape.len();
                let x: Vec<i8> = input.iter().copied().cycle().take(n).collect();
                g.infer_int8(&x, &mut arena)
                    .expect("an accepted model runs");
                true
            }));
            match result {
                Ok(true) => accepted += 1,
                Ok(false) => {}
                Err(_) => panic!("byte {at} ^ {flip:#04x}: panicked"),
            }
        }
    }
    // Flips inside weights and biases still parse (and run): that is what the CRC is for.
    assert!(accepted > 0);
    for len in 0..good.len() {
        assert!(
            Graph::parse(&good[..len]).is_err(),
            "truncated to {len} bytes parsed"
        );
    }
}

/// Structural fuzzing in CI: random multi-byte mutations of residual graphs (biased toward the
/// header and the tensor and op tables, with boundary values), the CRC recomputed; each must
/// be refused with a typed error, or parse, plan as the `const` planner does and run.
#[test]
fn multi_byte_mutations_never_panic() {
    use tinyconv::graph::format;
    const CASES: usize = 30_000;
    let mut rng = SplitMix64(0x6a7f_2026);
    let originals: Vec<Vec<u8>> = (0..8)
        .map(|s| residual_graph(100 + s).to_bytes().unwrap())
        .collect();
    let (mut accepted, mut errors) = (0usize, std::collections::BTreeMap::new());
    for case in 0..CASES {
        let good = &originals[case % originals.len()];
        let mut b = good.clone();
        let tables = {
            let g = Graph::parse(good).unwrap();
            format::op_at(g.tensor_count(), g.op_count())
        };
        for _ in 0..rng.range(1, 4) {
            let at = if rng.range(0, 3) > 0 {
                rng.range(0, tables as i64 - 1) as usize
            } else {
                rng.range(0, b.len() as i64 - 5) as usize
            };
            let value: u8 = match rng.range(0, 5) {
                0 => 0,
                1 => 0xff,
                2 => 1,
                3 => b[at].wrapping_add(rng.range(1, 3) as u8),
                _ => rng.next_u64() as u8,
            };
            b[at] = value;
        }
        if rng.range(0, 50) == 0 {
            let len = rng.range(0, b.len() as i64) as usize;
            b.truncate(len);
        }
        if b.len() >= 4 {
            fix_crc(&mut b);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| match Graph::parse(&b) {
            Ok(g) => {
                assert_eq!(tinyconv::required_arena_len(&b), g.arena_len());
                let n = g.input().shape.len();
                if g.macs() < 4_000_000 && n < 1 << 20 {
                    let mut arena = vec![0i8; g.arena_len()];
                    g.infer_int8(&vec![1; n], &mut arena).unwrap();
                }
                None
            }
            Err(e) => Some(
                format!("{e:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap()
                    .to_string(),
            ),
        }));
        match outcome {
            Ok(None) => accepted += 1,
            Ok(Some(kind)) => *errors.entry(kind).or_insert(0usize) += 1,
            Err(_) => panic!("case {case}: panicked"),
        }
    }
    eprintln!("{CASES} mutations: {accepted} parsed and ran; refused: {errors:?}");
    assert!(
        accepted > 0 && errors.len() >= 6,
        "the mutations reach the checks: {errors:?}"
    );
}

/// `Graph::parse_planned` takes a plan made before (at compile time on the MCU) and checks it
/// is sound; the checker is independent of the planner, so a plan with live tensors sharing
/// bytes, a reshape off its input, a tensor outside the arena or a wrong scratch size is refused.
#[test]
fn a_given_plan_is_checked_not_trusted() {
    let spec = residual_graph(5);
    let bytes = spec.to_bytes().unwrap();
    let planned = tinyconv::graph::plan::plan(&bytes);
    let graph = Graph::parse_planned(&bytes, &planned).unwrap();
    let mut arena = vec![0i8; graph.arena_len()];
    let n = graph.input().shape.len();
    let input = vec![7i8; n];
    let reference = Graph::parse(&bytes).unwrap();
    let mut arena2 = vec![0i8; reference.arena_len()];
    assert_eq!(
        graph.infer_int8(&input, &mut arena).unwrap(),
        reference.infer_int8(&input, &mut arena2).unwrap()
    );
    let refused = |plan: &tinyconv::graph::GraphPlan| Graph::parse_planned(&bytes, plan).is_err();
    // Everything at offset 0: live tensors share bytes.
    let mut p = planned;
    p.tensor_offset = [0; tinyconv::graph::format::MAX_TENSORS];
    assert!(refused(&p));
    // The residual add's first input moved onto the tensor written between.
    let add = graph.nodes().find(|n| n.kind == OpKind::Add).unwrap();
    let mut p = planned;
    p.tensor_offset[add.inputs[0]] = planned.tensor_offset[add.inputs[0] + 1];
    assert!(refused(&p));
    // A reshape's output off its input.
    let reshape = graph.nodes().find(|n| n.kind == OpKind::Reshape).unwrap();
    let mut p = planned;
    p.tensor_offset[reshape.output] += 4;
    assert!(refused(&p));
    // An arena one byte short of its last item (its length may include alignment padding),
    // and a scratch of the wrong size.
    let last_byte = (0..graph.tensor_count())
        .map(|t| graph.tensor_range(t).end)
        .chain((0..graph.op_count()).map(|i| graph.scratch_range(i).end))
        .max()
        .unwrap();
    let mut p = planned;
    p.len = last_byte - 1;
    assert!(refused(&p));
    let mut p = planned;
    p.scratch_len[0] += 4;
    assert!(refused(&p));
    // A different but sound plan is accepted: everything a full arena apart.
    let mut p = planned;
    let mut at = 0u32;
    for t in 0..graph.tensor_count() {
        p.tensor_offset[t] = at;
        at += (graph.tensor(t).shape.len() as u32).div_ceil(4) * 4;
    }
    p.tensor_offset[reshape.output] = p.tensor_offset[reshape.inputs[0]];
    for i in 0..graph.op_count() {
        p.scratch_offset[i] = at;
        at += p.scratch_len[i].div_ceil(4) * 4;
    }
    p.len = at as usize;
    let spread = Graph::parse_planned(&bytes, &p).unwrap();
    let mut big = vec![0i8; spread.arena_len()];
    assert_eq!(
        spread.infer_int8(&input, &mut big).unwrap(),
        reference.infer_int8(&input, &mut arena2).unwrap()
    );
}
