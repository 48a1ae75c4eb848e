//! The wide dense layout (`graph::format::op_flags::WIDE`: int16 weights in groups of 8 rows,
//! `ops::dense::wide_index`): the writer's encoding, the parser's validation of it, and the
//! kernel (`graph::kernels::dense::wide`, on the host its portable twin) against the scalar
//! reference and against the same layer in the plain int8 layout, on every output value of
//! seeded random dense layers under both rules. Negative controls: a wrong multiply loop is
//! caught, and damaged wide records are refused.

use tinyconv::Error;
use tinyconv::graph::kernels::dense::{self as kernel, Wide};
use tinyconv::graph::ops::dense;
use tinyconv::graph::{
    Clamp, Graph, GraphSpec, OpSpec, Rule, TensorSpec, WeightsSpec, WriteOptions,
};
use tinyconv::kernels::dsp::Emulated;
use tinyconv::testing::SplitMix64;
use tinyconv::{QuantParams, Shape};

const WIDE: WriteOptions = WriteOptions { wide_dense: true };

/// A one-layer dense graph: `n_in` inputs, `n_out` rows, random weights, scales, zero points
/// and clamp; and an input.
fn layer(rng: &mut SplitMix64, rule: Rule, n_in: usize, n_out: usize) -> (GraphSpec, Vec<i8>) {
    let s_in = 0.02 + 0.05 * rng.unit();
    let zp = |rng: &mut SplitMix64| rng.range(-20, 20) as i8;
    let input = TensorSpec {
        shape: Shape::new(1, 1, n_in),
        quant: QuantParams {
            scale: s_in,
            zero_point: zp(rng),
        },
    };
    // Sums of n_in products of ~73 x ~74 at weight scales ~0.007: outputs of a few tens of
    // codes (not saturated, so a wrong sum shows).
    let s_out = s_in * (n_in as f32).sqrt() * (0.5 + rng.unit());
    let output = TensorSpec {
        shape: Shape::new(1, 1, n_out),
        quant: QuantParams {
            scale: s_out,
            zero_point: zp(rng),
        },
    };
    let params = WeightsSpec {
        weights: (0..n_in * n_out)
            .map(|_| rng.range(-127, 127) as i8)
            .collect(),
        bias: (0..n_out).map(|_| rng.range(-3000, 3000) as i32).collect(),
        weight_scales: (0..n_out).map(|_| 0.002 + 0.01 * rng.unit()).collect(),
    };
    let clamp = match rng.range(0, 2) {
        0 => Clamp::NONE,
        1 => Clamp { min: -10, max: 127 },
        _ => Clamp { min: -30, max: 60 },
    };
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
    let x = (0..n_in).map(|_| rng.range(-128, 127) as i8).collect();
    (spec, x)
}

fn infer(bytes: &[u8], x: &[i8]) -> Vec<i8> {
    let graph = Graph::parse(bytes).unwrap();
    let mut arena = vec![0x55u8 as i8; graph.arena_len()];
    graph.infer_int8(x, &mut arena).unwrap().to_vec()
}

fn reference(bytes: &[u8], x: &[i8]) -> Vec<i8> {
    let graph = Graph::parse(bytes).unwrap();
    let node = graph.node(0);
    let mut out = vec![0i8; node.output_info.shape.len()];
    dense::reference(&node, x, &mut out);
    out
}

/// Rows a multiple of 8 and inputs of 4 (some of 8k + 4, whose last quad the Cortex-M4 runs
/// alone), both rules, every clamp kind.
fn eligible(rng: &mut SplitMix64) -> (usize, usize) {
    (
        4 * rng.range(1, 170) as usize,
        8 * rng.range(1, 12) as usize,
    )
}

#[test]
fn wide_dense_equals_the_plain_layout_and_the_reference() {
    let mut rng = SplitMix64(0x77_1de);
    let (mut cases, mut odd_quads) = (0, 0);
    for _ in 0..60 {
        for rule in [Rule::Tflite, Rule::Onnx] {
            let (n_in, n_out) = eligible(&mut rng);
            let (spec, x) = layer(&mut rng, rule, n_in, n_out);
            let plain = spec.to_bytes().unwrap();
            let wide = spec.to_bytes_with(WIDE).unwrap();
            let (gp, gw) = (Graph::parse(&plain).unwrap(), Graph::parse(&wide).unwrap());
            let (np, nw) = (gp.node(0), gw.node(0));
            assert!(!np.wide && nw.wide, "{n_in} -> {n_out}");
            assert_eq!(nw.weights.len(), 2 * np.weights.len());
            assert_eq!(
                (nw.macs(), nw.params_count()),
                (np.macs(), np.params_count())
            );
            // No widened input in the arena.
            assert!(gw.arena_len() < gp.arena_len());
            for row in 0..n_out {
                for k in 0..n_in {
                    assert_eq!(
                        dense::weight(&nw, row, k, n_in),
                        dense::weight(&np, row, k, n_in)
                    );
                }
            }
            let expected = reference(&plain, &x);
            assert_eq!(reference(&wide, &x), expected, "{rule:?} {n_in} -> {n_out}");
            assert_eq!(infer(&plain, &x), expected);
            assert_eq!(infer(&wide, &x), expected, "{rule:?} {n_in} -> {n_out}");
            cases += 1;
            odd_quads += (n_in % 8 == 4) as usize;
        }
    }
    assert!(odd_quads > 0);
    eprintln!("{cases} wide dense layers identical ({odd_quads} with an odd quad count)");
}

#[test]
fn the_writer_keeps_the_plain_layout_where_the_wide_one_does_not_fit() {
    let mut rng = SplitMix64(0x1a7);
    for (n_in, n_out) in [(10, 8), (16, 12), (6, 4), (64, 2)] {
        let (spec, x) = layer(&mut rng, Rule::Tflite, n_in, n_out);
        let bytes = spec.to_bytes_with(WIDE).unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        assert!(!graph.node(0).wide, "{n_in} -> {n_out}");
        assert_eq!(bytes, spec.to_bytes().unwrap());
        assert_eq!(infer(&bytes, &x), reference(&bytes, &x));
    }
}

/// Drops the group's last quad of inputs.
struct DropsLastQuad;

impl Wide for DropsLastQuad {
    fn group(&self, acc: [i32; 8], x: &[i8], z: i8, w: &[u8]) -> [i32; 8] {
        Emulated.group(acc, &x[..x.len() - 4], z, w)
    }
}

/// Swaps the middle lanes of each quad (`[w0, w1, w2, w3]` read as the stored order).
struct SwapsLanes;

impl Wide for SwapsLanes {
    fn group(&self, acc: [i32; 8], x: &[i8], z: i8, w: &[u8]) -> [i32; 8] {
        let x: Vec<i8> = x.chunks(4).flat_map(|q| [q[0], q[2], q[1], q[3]]).collect();
        Emulated.group(acc, &x, z, w)
    }
}

#[test]
fn negative_controls_wrong_loops_are_caught() {
    let mut rng = SplitMix64(0xbad);
    let (mut tried, mut dropped, mut swapped) = (0, 0, 0);
    for _ in 0..40 {
        let (n_in, n_out) = eligible(&mut rng);
        let (spec, x) = layer(&mut rng, Rule::Tflite, n_in, n_out);
        let bytes = spec.to_bytes_with(WIDE).unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        let node = graph.node(0);
        let expected = reference(&bytes, &x);
        let mut out = vec![0i8; n_out];
        kernel::wide_with(&Emulated, &node, &x, &mut out);
        assert_eq!(out, expected);
        kernel::wide_with(&DropsLastQuad, &node, &x, &mut out);
        dropped += (out != expected) as usize;
        kernel::wide_with(&SwapsLanes, &node, &x, &mut out);
        swapped += (out != expected) as usize;
        tried += 1;
    }
    // A clamp can hide a change in a small layer; nearly every case must show it.
    assert!(
        dropped * 10 >= tried * 9 && swapped * 10 >= tried * 9,
        "{dropped} {swapped} of {tried}"
    );
}

/// The file with op 0's record flag byte set to `flags` and the checksum redone.
fn with_flags(bytes: &[u8], flags: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let tensors = u16::from_le_bytes([b[12], b[13]]) as usize;
    let at = tinyconv::graph::format::op_at(tensors, 0) + tinyconv::graph::format::record::FLAGS;
    b[at] = flags;
    recrc(&mut b);
    b
}

fn recrc(b: &mut [u8]) {
    let n = b.len() - 4;
    let crc = tinyconv::format::checksum(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn damaged_wide_records_are_refused() {
    let mut rng = SplitMix64(0xda3a);
    let (spec, _) = layer(&mut rng, Rule::Tflite, 32, 16);
    let plain = spec.to_bytes().unwrap();
    let wide = spec.to_bytes_with(WIDE).unwrap();
    assert!(Graph::parse(&wide).is_ok() && Graph::parse(&with_flags(&wide, 1)).is_ok());
    // An unknown flag bit; the wide flag on plain weights (half the length).
    for bytes in [with_flags(&wide, 3), with_flags(&plain, 1)] {
        let err = Graph::parse(&bytes).unwrap_err();
        assert!(
            matches!(err, Error::InvalidField { .. } | Error::BadBlob { .. }),
            "{err:?}"
        );
    }
    // The wide flag where rows are not a multiple of 8 (12 rows, plain weights).
    let (odd, _) = layer(&mut rng, Rule::Tflite, 32, 12);
    let err = Graph::parse(&with_flags(&odd.to_bytes().unwrap(), 1)).unwrap_err();
    assert!(matches!(err, Error::InvalidField { .. }), "{err:?}");
    // An int16 outside int8, and -128: refused as weights out of range.
    let graph = Graph::parse(&wide).unwrap();
    let at = graph.node(0).weights.as_ptr() as usize - wide.as_ptr() as usize;
    for v in [200i16, -128, -300] {
        let mut b = wide.clone();
        b[at + 10..at + 12].copy_from_slice(&v.to_le_bytes());
        recrc(&mut b);
        let err = Graph::parse(&b).unwrap_err();
        assert!(
            matches!(err, Error::WeightOutOfRange { layer: 0, index: 5 }),
            "{v}: {err:?}"
        );
    }
    // The wide flag on a non-dense op.
    let conv = tinyconv::testing::random_chain_graph(40, Rule::Tflite)
        .to_bytes()
        .unwrap();
    let err = Graph::parse(&with_flags(&conv, 1)).unwrap_err();
    assert!(matches!(err, Error::InvalidField { .. }), "{err:?}");
}
