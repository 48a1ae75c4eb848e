//! SAME padding against cases worked by hand from TensorFlow's rule
//! (tensorflow/core/framework/kernel_shape_util.cc, GetWindowedOutputSizeVerbose):
//! `out = ceil(in / s)`, `total = max((out - 1) * s + k - in, 0)`, `before = total / 2`,
//! `after = total - before`.

use tinyconv_spec::{ModelSpec, Op, Pads, Shape, same_padding};

/// `(input, kernel, stride)` or `(before, after, output)`.
type Triple = (usize, usize, usize);

/// `(input, kernel, stride)` → `(before, after, output)`, each worked out in the comment.
const CASES: [(Triple, Triple); 9] = [
    // DS-CNN height: out = ceil(49/2) = 25; total = 24*2 + 10 - 49 = 9 → 4, 5.
    ((49, 10, 2), (4, 5, 25)),
    // DS-CNN width: out = ceil(10/2) = 5; total = 4*2 + 4 - 10 = 2 → 1, 1.
    ((10, 4, 2), (1, 1, 5)),
    // ResNet-8 stride-2 3x3: out = 16; total = 15*2 + 3 - 32 = 1 → 0, 1 (odd pixel bottom/right).
    ((32, 3, 2), (0, 1, 16)),
    // ResNet-8 1x1 shortcut: out = 16; total = 15*2 + 1 - 32 = -1 → 0.
    ((32, 1, 2), (0, 0, 16)),
    // 3x3 stride 1: total = 2 → 1, 1.
    ((28, 3, 1), (1, 1, 28)),
    // Even kernel, stride 1: total = 3 → 1, 2.
    ((7, 4, 1), (1, 2, 7)),
    // Odd input, stride 2, 3x3: out = 4; total = 3*2 + 3 - 7 = 2 → 1, 1.
    ((7, 3, 2), (1, 1, 4)),
    // Kernel larger than the input: out = 1; total = 5 - 1 = 4 → 2, 2.
    ((1, 5, 2), (2, 2, 1)),
    // 5x5 same on 28 (LeNet-5): total = 4 → 2, 2.
    ((28, 5, 1), (2, 2, 28)),
];

#[test]
fn same_padding_matches_hand_worked_tensorflow_cases() {
    for ((input, kernel, stride), expected) in CASES {
        assert_eq!(
            same_padding(input, kernel, stride),
            expected,
            "in {input}, k {kernel}, s {stride}"
        );
    }
}

fn first_conv(toml_layer: &str, input: Shape) -> (Pads, Shape) {
    let text = format!(
        "name = \"t\"\n[[layers]]\n{toml_layer}\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\n"
    );
    let r = ModelSpec::parse(&text, "t")
        .unwrap()
        .resolve(input, 2)
        .unwrap();
    match r.nodes[1].op {
        Op::Conv { pads, .. } | Op::MaxPool { pads, .. } | Op::AvgPool { pads, .. } => {
            (pads, r.nodes[1].output)
        }
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn a_same_conv_on_49x10_with_10x4_stride_2_gives_25x5() {
    let (pads, out) = first_conv(
        "type = \"conv\"\nfilters = 8\nkernel = [10, 4]\nstride = 2\npadding = \"same\"",
        Shape::new(49, 10, 1),
    );
    assert_eq!(
        pads,
        Pads {
            top: 4,
            left: 1,
            bottom: 5,
            right: 1
        }
    );
    assert_eq!(out, Shape::new(25, 5, 8));
}

#[test]
fn non_square_strides_and_pools_use_the_same_rule() {
    // Height: in 9, k 3, s 2 → out 5, total 4*2 + 3 - 9 = 2 → 1, 1.
    // Width: in 6, k 2, s 1 → out 6, total 5 + 2 - 6 = 1 → 0, 1.
    let (pads, out) = first_conv(
        "type = \"max_pool\"\nkernel = [3, 2]\nstride = [2, 1]\npadding = \"same\"",
        Shape::new(9, 6, 3),
    );
    assert_eq!(
        pads,
        Pads {
            top: 1,
            left: 0,
            bottom: 1,
            right: 1
        }
    );
    assert_eq!(out, Shape::new(5, 6, 3));
}

#[test]
fn explicit_and_valid_padding() {
    // [top, left, bottom, right] = [1, 0, 2, 0]: height 5 + 3 = 8 → (8 - 3) / 1 + 1 = 6;
    // width 5 → 3.
    let (pads, out) = first_conv(
        "type = \"conv\"\nfilters = 4\nkernel = 3\npadding = [1, 0, 2, 0]",
        Shape::new(5, 5, 1),
    );
    assert_eq!(
        pads,
        Pads {
            top: 1,
            left: 0,
            bottom: 2,
            right: 0
        }
    );
    assert_eq!(out, Shape::new(6, 3, 4));
    // Valid, stride 2: (7 - 3) / 2 + 1 = 3 (the last row is dropped, as in TF and PyTorch).
    let (pads, out) = first_conv(
        "type = \"conv\"\nfilters = 4\nkernel = 3\nstride = 2",
        Shape::new(8, 7, 1),
    );
    assert_eq!(pads, Pads::default());
    assert_eq!(out, Shape::new(3, 3, 4));
}
