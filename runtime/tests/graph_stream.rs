//! Streaming: an op writing its output over the part of its input it has consumed, as the
//! planner lays out a conv2d or an add whose input is read by no later op
//! (`graph::ops::stream_lead`). For random shapes, the fast kernel and the scalar reference,
//! run with the output placed at the op's lead over the input, give every output value of a
//! run with the two in separate buffers; placed past the lead (the negative controls), they
//! read bytes they have already overwritten and go wrong.

use tinyconv::Shape;
use tinyconv::graph::io::Io;
use tinyconv::graph::ops::{self, Node};
use tinyconv::graph::{Graph, Rule};
use tinyconv::testing::{GraphBuilder, SplitMix64};

/// A shape generator and a graph builder for case `seed`, under the tflite rule for even
/// seeds and the onnx rule for odd ones.
fn builder(seed: u64) -> (SplitMix64, GraphBuilder) {
    let rule = if seed.is_multiple_of(2) {
        Rule::Tflite
    } else {
        Rule::Onnx
    };
    (SplitMix64(seed), GraphBuilder::new(seed, rule))
}

/// A graph of one random conv2d: kernels 1..5 and non-square, strides 1 and 2, padded or
/// not, channel counts that are and are not multiples of 4.
fn conv_graph(seed: u64) -> Vec<u8> {
    let (mut rng, mut b) = builder(seed);
    let k = (rng.range(1, 5) as usize, rng.range(1, 5) as usize);
    let stride = rng.range(1, 2) as usize;
    let (h, w) = (
        rng.range(k.0 as i64, 14) as usize,
        rng.range(k.1 as i64, 14) as usize,
    );
    let c = rng.range(1, 9) as usize;
    let x = b.tensor(Shape::new(h, w, c), 0.02 + 0.05 * rng.unit());
    let y = b.conv(
        x,
        rng.range(1, 12) as usize,
        k,
        stride,
        rng.range(0, 1) == 0,
        false,
    );
    b.finish(x, y).to_bytes().unwrap()
}

/// Output of `run` with the input at `in_at` and the output `delta` bytes after it in one
/// buffer (which starts dirty).
fn overlapped(input: &[i8], out_len: usize, delta: i64, run: impl FnOnce(&mut Io<'_>)) -> Vec<i8> {
    let in_at = (-delta).max(0) as usize;
    let out_at = (in_at as i64 + delta) as usize;
    let len = (in_at + input.len()).max(out_at + out_len);
    let mut buf = vec![0x5ai8; len];
    buf[in_at..in_at + input.len()].copy_from_slice(input);
    let mut io = Io::overlapping(
        &mut buf,
        in_at..in_at + input.len(),
        out_at..out_at + out_len,
    )
    .unwrap();
    run(&mut io);
    buf[out_at..out_at + out_len].to_vec()
}

/// A word-aligned scratch of `len` bytes (as the arena's).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [i8]) -> R) -> R {
    let mut bytes = vec![0i8; len + 4];
    let at = bytes.as_ptr().align_offset(4);
    f(&mut bytes[at..at + len])
}

#[test]
fn a_conv_streamed_at_its_lead_equals_the_conv_apart() {
    let cases = 600;
    let (mut fast_broken, mut reference_broken, mut overlapping) = (0, 0, 0);
    for seed in 0..cases {
        let bytes = conv_graph(seed);
        let graph = Graph::parse(&bytes).unwrap();
        let node: Node<'_> = graph.node(0);
        let lead = ops::stream_lead(&bytes, graph.tensor_count(), 0, 0).unwrap();
        let (in_len, out_len) = (node.input.shape.len(), node.output_info.shape.len());
        let scratch = graph.plan().scratch_len[0] as usize;
        let mut rng = SplitMix64(seed ^ 0x5eed);
        let input: Vec<i8> = rng.bytes(in_len).iter().map(|&b| b as i8).collect();
        let mut expected = vec![0i8; out_len];
        ops::conv2d::reference(&node, &input, &mut expected);

        let fast = |delta| {
            overlapped(&input, out_len, delta, |io| {
                with_scratch(scratch, |s| ops::conv2d::run(&node, io, s))
            })
        };
        let reference = |delta| {
            overlapped(&input, out_len, delta, |io| {
                ops::conv2d::reference_io(&node, io)
            })
        };
        assert_eq!(
            fast(lead),
            expected,
            "seed {seed}: fast kernel at lead {lead}"
        );
        assert_eq!(
            reference(lead),
            expected,
            "seed {seed}: reference at lead {lead}"
        );
        // The lead really overlaps the two (the output does not end before the input).
        if lead + out_len as i64 > 0 {
            overlapping += 1;
        }
        // Negative controls: the output right on the input (in place) and a block of 8
        // output pixels past that.
        let past = node.output_info.shape.c as i64 * 8;
        if fast(0) != expected || fast(past) != expected {
            fast_broken += 1;
        }
        if reference(0) != expected || reference(past) != expected {
            reference_broken += 1;
        }
    }
    println!(
        "{cases} convs: {overlapping} overlap at their lead; past it, the fast kernel is wrong \
         in {fast_broken}, the reference in {reference_broken}"
    );
    assert!(overlapping > cases * 9 / 10);
    assert!(fast_broken > cases / 2, "only {fast_broken} broken");
    assert!(
        reference_broken > cases / 2,
        "only {reference_broken} broken"
    );
}

#[test]
fn an_add_in_place_over_either_input_equals_the_add_apart() {
    let cases = 200;
    let mut broken = 0;
    for seed in 0..cases {
        // x and a 1x1 conv of it, added: a residual connection.
        let (mut rng, mut b) = builder(seed);
        let shape = Shape::new(rng.range(1, 9) as usize, rng.range(1, 9) as usize, 4);
        let x = b.tensor(shape, 0.02 + 0.05 * rng.unit());
        let y = b.conv(x, 4, (1, 1), 1, false, false);
        let z = b.add(x, y);
        let bytes = b.finish(x, z).to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        let node = graph.node(1);
        let len = shape.len();
        let a: Vec<i8> = rng.bytes(len).iter().map(|&v| v as i8).collect();
        let c: Vec<i8> = rng.bytes(len).iter().map(|&v| v as i8).collect();
        let mut expected = vec![0i8; len];
        ops::add::reference(&node, &a, &c, &mut expected);
        for slot in 0..2 {
            let (mine, other) = if slot == 0 { (&a, &c) } else { (&c, &a) };
            let run =
                |delta| overlapped(mine, len, delta, |io| ops::add::run(&node, io, slot, other));
            assert_eq!(run(0), expected, "seed {seed}: in place over input {slot}");
            assert_eq!(
                run(-4),
                expected,
                "seed {seed}: 4 bytes before input {slot}"
            );
            // Negative control: one byte after the input, each write lands on the next
            // element before it is read.
            if run(1) != expected {
                broken += 1;
            }
        }
    }
    println!(
        "{cases} adds: one byte past the lead, {broken} of {} runs wrong",
        2 * cases
    );
    assert!(broken > cases * 2 * 9 / 10, "only {broken} broken");
}

#[test]
fn a_depthwise_in_place_equals_the_depthwise_apart() {
    let cases = 200;
    let (mut streamed, mut broken, mut tried) = (0, 0, 0);
    for seed in 0..cases {
        // A SAME 3x3 stride-1 depthwise (the column sweep, `kernels::dw3x3`): tall enough
        // now and then for a second band, which must not stream.
        let (mut rng, mut b) = builder(seed);
        let h = if seed % 10 == 0 {
            49
        } else {
            rng.range(1, 20) as usize
        };
        let shape = Shape::new(h, rng.range(1, 20) as usize, rng.range(1, 20) as usize);
        let x = b.tensor(shape, 0.02 + 0.05 * rng.unit());
        let y = b.conv(x, 0, (3, 3), 1, true, true);
        let bytes = b.finish(x, y).to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        let node: Node<'_> = graph.node(0);
        let lead = ops::stream_lead(&bytes, graph.tensor_count(), 0, 0);
        assert_eq!(lead.is_some(), h <= 48, "seed {seed}: {shape:?}");
        let len = shape.len();
        let input: Vec<i8> = rng.bytes(len).iter().map(|&v| v as i8).collect();
        let mut expected = vec![0i8; len];
        ops::depthwise_conv2d::reference(&node, &input, &mut expected);
        let scratch = graph.plan().scratch_len[0] as usize;
        let run = |delta| {
            overlapped(&input, len, delta, |io| {
                with_scratch(scratch, |s| {
                    assert!(ops::run_overlapping(&node, io, 0, &[], s));
                })
            })
        };
        if lead.is_some() {
            assert_eq!(run(0), expected, "seed {seed}: in place");
            streamed += 1;
        }
        // Negative control: the output one byte after the input (the rule is exact), so
        // that channel c's outputs land on channel c + 1's inputs before the sweep has
        // read them, whenever there is more than one channel.
        if shape.c > 1 {
            tried += 1;
            if run(1) != expected {
                broken += 1;
            }
        }
    }
    println!("{cases} depthwise convs: {streamed} in place; a byte off, {broken} of {tried} wrong");
    assert!(streamed > cases * 8 / 10, "{streamed}");
    assert!(broken * 10 > tried * 9, "only {broken} of {tried} broken");
}

#[test]
fn a_given_plan_keeps_a_depthwise_exactly_in_place() {
    let (_, mut b) = builder(3);
    let x = b.tensor(Shape::new(6, 5, 8), 0.04);
    let y = b.conv(x, 0, (3, 3), 1, true, true);
    let bytes = b.finish(x, y).to_bytes().unwrap();
    let planned = tinyconv::graph::plan::plan(&bytes);
    // The planner put the output on the input, and the check accepts that.
    assert_eq!(planned.tensor_offset[x], planned.tensor_offset[y]);
    assert!(Graph::parse_planned(&bytes, &planned).is_ok());
    // The output 4 bytes before the input (under the lead, as a conv's rule would allow):
    // refused, the depthwise rule is exact.
    let mut p = planned;
    p.tensor_offset[x] += 4;
    p.scratch_offset[0] += 4;
    p.len += 4;
    let refused = Graph::parse_planned(&bytes, &p).map(|_| ()).unwrap_err();
    assert!(
        refused.to_string().contains("over another live tensor"),
        "{refused}"
    );
    // The same shift for both (in place again) is accepted.
    p.tensor_offset[y] += 4;
    assert!(Graph::parse_planned(&bytes, &p).is_ok());
}
