//! The fast global average pool (`graph::kernels::pool`, run by `ops::avg_pool::run`) against
//! the scalar `avg_pool::reference`, every output value: random images of 1..=256 pixels,
//! 4..=256 channels in multiples of 4, random clamps, and the int16 lanes' extremes (256
//! pixels all -128 or all 127). On the host the kernel runs the portable model of the DSP
//! lanes (`Emulated`); the firmware's MLPerf Tiny runs check the real instructions. Negative
//! controls: 258 pixels (the lanes could wrap) are refused by the fast path, and lanes
//! that drop the last pixel are caught.

use tinyconv::Shape;
use tinyconv::graph::kernels::pool::{self, Emulated, Sums};
use tinyconv::graph::ops::{self, Node};
use tinyconv::graph::{Clamp, Graph, OpSpec, Rule};
use tinyconv::testing::{GraphBuilder, SplitMix64};

/// A global average pool over `h x w x c` with `clamp`.
fn pool_graph(seed: u64, shape: Shape, clamp: Clamp) -> Vec<u8> {
    let mut b = GraphBuilder::new(seed, Rule::Tflite);
    let x = b.tensor(shape, 0.05);
    let y = b.pool(x, (shape.h, shape.w), 1, false, true);
    let mut spec = b.finish(x, y);
    if let OpSpec::AvgPool { clamp: c, .. } = &mut spec.ops[0] {
        *c = clamp;
    }
    spec.to_bytes().unwrap()
}

fn reference(node: &Node<'_>, input: &[i8]) -> Vec<i8> {
    let mut out = vec![0i8; node.output_info.shape.len()];
    ops::avg_pool::reference(node, input, &mut out);
    out
}

fn fast<M: Sums>(m: &M, node: &Node<'_>, input: &[i8]) -> Option<Vec<i8>> {
    let mut out = vec![0i8; node.output_info.shape.len()];
    pool::global_avg_pool(m, node, input, &mut out).then_some(out)
}

#[test]
fn the_fast_global_pool_equals_the_reference() {
    let mut rng = SplitMix64(11);
    let mut cases = 0;
    for seed in 0..300u64 {
        let h = rng.range(1, 20) as usize;
        let w = rng.range(1, (256 / h).min(20) as i64) as usize;
        let c = 4 * rng.range(1, 64) as usize;
        let clamp = match seed % 3 {
            0 => Clamp::NONE,
            1 => Clamp { min: -10, max: 127 },
            _ => Clamp { min: -30, max: 60 },
        };
        let bytes = pool_graph(seed, Shape::new(h, w, c), clamp);
        let graph = Graph::parse(&bytes).unwrap();
        let node = graph.node(0);
        let input: Vec<i8> = rng.bytes(h * w * c).iter().map(|&v| v as i8).collect();
        let expected = reference(&node, &input);
        assert_eq!(
            fast(&Emulated, &node, &input).unwrap(),
            expected,
            "{h}x{w}x{c}"
        );
        let mut arena = vec![0i8; graph.arena_len()];
        assert_eq!(graph.infer_int8(&input, &mut arena).unwrap(), &expected[..]);
        cases += 1;
    }
    // The lanes' extremes: 256 pixels of -128 or of 127 (as 2x128, 128x2 and 16x16).
    for (k, &(h, w)) in [(2, 128), (128, 2), (16, 16)].iter().enumerate() {
        for v in [-128i8, 127] {
            let bytes = pool_graph(k as u64, Shape::new(h, w, 8), Clamp::NONE);
            let graph = Graph::parse(&bytes).unwrap();
            let node = graph.node(0);
            let input = vec![v; h * w * 8];
            let expected = reference(&node, &input);
            assert_eq!(expected[0], v);
            assert_eq!(fast(&Emulated, &node, &input).unwrap(), expected);
            cases += 1;
        }
    }
    println!("{cases} global pools identical");
}

#[test]
fn the_fast_path_refuses_what_would_wrap_and_a_wrong_kernel_is_caught() {
    // 258 pixels (2 x 129: a window side is at most 255): the int16 lanes could wrap, so
    // the fast path declines (the reference runs).
    let bytes = pool_graph(1, Shape::new(2, 129, 4), Clamp::NONE);
    let graph = Graph::parse(&bytes).unwrap();
    let node = graph.node(0);
    let input = vec![-128i8; 258 * 4];
    assert!(fast(&Emulated, &node, &input).is_none());
    // The emulated lanes on 258 pixels of -128 do wrap: the bound is real.
    assert_ne!(Emulated.sums4(&input, 4, 258)[0], 258 * -128);

    /// Lanes that forget the last pixel.
    struct DropLast;
    impl Sums for DropLast {
        fn sums4(&self, x: &[i8], stride: usize, pixels: usize) -> [i32; 4] {
            Emulated.sums4(x, stride, pixels - 1)
        }
    }
    let (mut caught, mut tried) = (0, 0);
    let mut rng = SplitMix64(5);
    for seed in 0..100u64 {
        let shape = Shape::new(rng.range(2, 9) as usize, rng.range(1, 9) as usize, 8);
        let bytes = pool_graph(seed, shape, Clamp::NONE);
        let graph = Graph::parse(&bytes).unwrap();
        let node = graph.node(0);
        let input: Vec<i8> = rng.bytes(shape.len()).iter().map(|&v| v as i8).collect();
        tried += 1;
        if fast(&DropLast, &node, &input).unwrap() != reference(&node, &input) {
            caught += 1;
        }
    }
    println!("a pixel dropped: caught in {caught} of {tried}");
    assert!(caught * 10 >= tried * 9, "{caught} of {tried}");
}
