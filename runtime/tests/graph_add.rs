//! The fast tflite add (`graph::kernels::add`, looked-up input rescales and the fused output
//! requantization) against the scalar `ops::add::tflite` (TFLM's per-element arithmetic), on
//! every pair of int8 codes for random scales, zero points and clamps, and through
//! `Graph::infer_int8` on a residual graph. Negative control: a table off by one code is caught.

use tinyconv::QuantParams;
use tinyconv::Shape;
use tinyconv::graph::kernels;
use tinyconv::graph::ops::add;
use tinyconv::graph::{Clamp, Graph, GraphSpec, Node, OpSpec, Rule, TensorSpec};
use tinyconv::testing::SplitMix64;
use tinyconv::tflite_rule;

/// A graph of one add of the input with itself: a node to reshape into other scales.
fn add_node_bytes() -> Vec<u8> {
    let q = QuantParams {
        scale: 0.05,
        zero_point: 3,
    };
    let t = |_| TensorSpec {
        shape: Shape::new(256, 256, 1),
        quant: q,
    };
    GraphSpec {
        rule: Rule::Tflite,
        tensors: vec![t(0), t(1)],
        input: 0,
        output: 1,
        pixel_scale: None,
        ops: vec![OpSpec::Add {
            inputs: [0, 0],
            output: 1,
            clamp: Clamp::NONE,
        }],
    }
    .to_bytes()
    .unwrap()
}

/// `node` with random input and output scales, zero points and clamp (params recomputed);
/// `None` when TFLite refuses the scales.
fn random_node<'m>(rng: &mut SplitMix64, node: &Node<'m>) -> Option<Node<'m>> {
    let mut n = *node;
    let scale = |rng: &mut SplitMix64| 0.002 * (1.0 + 200.0 * rng.unit() * rng.unit());
    let zp = |rng: &mut SplitMix64| rng.range(-128, 127) as i8;
    n.input.quant = QuantParams {
        scale: scale(rng),
        zero_point: zp(rng),
    };
    n.input2.quant = QuantParams {
        scale: scale(rng),
        zero_point: zp(rng),
    };
    n.output_info.quant = QuantParams {
        scale: scale(rng),
        zero_point: zp(rng),
    };
    let z = n.output_info.quant.zero_point;
    n.clamp = match rng.range(0, 2) {
        0 => Clamp::NONE,
        1 => Clamp { min: z, max: 127 },
        _ => {
            let (a, b) = (zp(rng), zp(rng));
            Clamp {
                min: a.min(b),
                max: a.max(b),
            }
        }
    };
    let p = tflite_rule::add_params(
        n.input.quant.scale,
        n.input2.quant.scale,
        n.output_info.quant.scale,
    )?;
    n.params = add::params_words(&p);
    Some(n)
}

#[test]
fn fast_add_equals_the_reference_on_every_code_pair() {
    let bytes = add_node_bytes();
    let graph = Graph::parse(&bytes).unwrap();
    let base = graph.nodes().next().unwrap();
    // Every (a, b) pair of int8 codes.
    let a: Vec<i8> = (0..65536).map(|k| (k >> 8) as u8 as i8).collect();
    let b: Vec<i8> = (0..65536).map(|k| k as u8 as i8).collect();
    let mut rng = SplitMix64(11);
    let (mut cases, mut caught) = (0, 0);
    let mut expected = vec![0i8; a.len()];
    let mut got = vec![0i8; a.len()];
    while cases < 300 {
        let Some(n) = random_node(&mut rng, &base) else {
            continue;
        };
        let p = add::params(&n.params);
        add::tflite(&n, &a, &b, &mut expected);
        kernels::add::tflite(&n, &p, &a, &b, &mut got);
        assert!(
            got == expected,
            "case {cases}: {:?} {:?}",
            n.input,
            n.output_info
        );
        // Negative control: the kernel fed the first input shifted by one code differs.
        let shifted: Vec<i8> = a.iter().map(|x| x.wrapping_add(1)).collect();
        kernels::add::tflite(&n, &p, &shifted, &b, &mut got);
        if got != expected {
            caught += 1;
        }
        cases += 1;
    }
    assert!(caught >= 290, "{caught} of {cases}");
}

#[test]
fn the_graph_runs_the_fast_add() {
    // x + x through Graph::infer_int8 equals the reference on a 256x256 tensor of every code.
    let bytes = add_node_bytes();
    let graph = Graph::parse(&bytes).unwrap();
    let n = graph.nodes().next().unwrap();
    let x: Vec<i8> = (0..65536).map(|k| (k * 7 + (k >> 8)) as u8 as i8).collect();
    let mut expected = vec![0i8; x.len()];
    add::tflite(&n, &x, &x, &mut expected);
    let mut arena = vec![0i8; graph.arena_len()];
    assert_eq!(graph.infer_int8(&x, &mut arena).unwrap(), &expected[..]);
}
