//! Every preset resolves, and its figures match ones taken from outside this crate: the seed
//! CNN's from the trainer and the firmware docs, ResNet-8's and DS-CNN's from the MLPerf Tiny
//! reference models (`/work/shared/models/mlperf-tiny/`: the `.tflite` files and the CMSIS-NN
//! anchor table), LeNet-5's worked by hand from its definition.

use std::path::PathBuf;

use tinyconv_spec::{ModelSpec, Op, PRESET_NAMES, Resolved, Shape, preset, preset_text};
use tinyconv_tflite::{BuiltinOp, Model};

fn resolved(name: &str, input: Shape, classes: usize) -> Resolved {
    preset(name)
        .unwrap_or_else(|| panic!("no preset {name}"))
        .resolve(input, classes)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// MACs of the conv and dense nodes, in graph order.
fn mac_layers(r: &Resolved) -> Vec<u64> {
    r.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv { .. } | Op::Dense { .. }))
        .map(|n| n.macs)
        .collect()
}

#[test]
fn every_preset_parses_resolves_and_is_named_after_itself() {
    for name in PRESET_NAMES {
        let spec = preset(name).unwrap();
        assert_eq!(spec.name, name);
        assert!(spec.description.is_some(), "{name} has no description");
        let r = spec.resolve(Shape::new(32, 32, 3), 10).unwrap();
        assert_eq!(
            r.nodes.last().unwrap().output,
            Shape::new(1, 1, 10),
            "{name}"
        );
    }
    assert!(preset("nope").is_none());
}

/// trainer/src/model.rs: `NUM_PARAMS = 831_398`; docs/firmware.md's per-layer table (measured
/// in the firmware): 112,896 + 2,654,208 + 4,718,592 + 512,000 + 5,000 = 8,002,696 MACs, and
/// the shapes 14x14x16, 6x6x128, 2x2x256, 1024, 500, 10.
#[test]
fn seed_is_the_trainers_network() {
    let r = resolved("seed", Shape::new(28, 28, 1), 10);
    let p = r.params();
    assert_eq!(p.total(), 831_398);
    assert_eq!(p.non_trainable, 0);
    assert_eq!(r.macs(), 8_002_696);
    assert_eq!(
        mac_layers(&r),
        [112_896, 2_654_208, 4_718_592, 512_000, 5_000]
    );
    let pool_outputs: Vec<Shape> = r
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::MaxPool { .. }))
        .map(|n| n.output)
        .collect();
    assert_eq!(
        pool_outputs,
        [
            Shape::new(14, 14, 16),
            Shape::new(6, 6, 128),
            Shape::new(2, 2, 256)
        ]
    );
    let dropouts: Vec<f64> = r
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Dropout { rate } => Some(rate),
            _ => None,
        })
        .collect();
    // trainer/src/model.rs: DROPOUT_CONV = 0.5, DROPOUT_FC = 0.25.
    assert_eq!(dropouts, [0.5, 0.25]);
    // CONV_PADDING = [1, 0, 0].
    let pads: Vec<usize> = r
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Conv { pads, .. } => Some(pads.top),
            _ => None,
        })
        .collect();
    assert_eq!(pads, [1, 0, 0]);
}

/// By hand: conv1 5*5*1*6 + 6 = 156, conv2 5*5*6*16 + 16 = 2,416, fc1 400*120 + 120 = 48,120,
/// fc2 120*84 + 84 = 10,164, fc3 84*10 + 10 = 850: 61,706. MACs: 28*28*6*25 = 117,600,
/// 10*10*16*150 = 240,000, 48,000, 10,080, 840.
#[test]
fn lenet5_on_mnist() {
    let r = resolved("lenet5", Shape::new(28, 28, 1), 10);
    assert_eq!(r.params().total(), 61_706);
    assert_eq!(mac_layers(&r), [117_600, 240_000, 48_000, 10_080, 840]);
    let flat = r.nodes.iter().find(|n| n.op == Op::Flatten).unwrap();
    assert_eq!(flat.output, Shape::new(1, 1, 400));
}

fn reference(file: &str) -> Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/models/mlperf-tiny")
        .join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Model::parse(&bytes).unwrap()
}

/// One weight-bearing layer: kind, weight shape in TFLite's layout, output shape.
#[derive(Debug, PartialEq)]
struct WeightLayer {
    kind: &'static str,
    weight_shape: Vec<usize>,
    params: u64,
    output: Shape,
}

/// The reference model's conv, depthwise and fully connected operators in execution order,
/// with their weight and bias element counts (batch norm is folded into them in the file).
fn reference_layers(model: &Model) -> Vec<WeightLayer> {
    let g = &model.graph;
    g.operators
        .iter()
        .filter_map(|op| {
            let kind = match op.code {
                BuiltinOp::Conv2d => "conv",
                BuiltinOp::DepthwiseConv2d => "depthwise",
                BuiltinOp::FullyConnected => "dense",
                _ => return None,
            };
            let tensor = |i: usize| &g.tensors[op.inputs[i].unwrap()];
            let weight_shape: Vec<usize> = tensor(1).shape.iter().map(|&d| d as usize).collect();
            let params = (tensor(1).elements().unwrap() + tensor(2).elements().unwrap()) as u64;
            let out = &g.tensors[op.outputs[0]].shape;
            let output = match out.as_slice() {
                [_, h, w, c] => Shape::new(*h as usize, *w as usize, *c as usize),
                [_, c] => Shape::new(1, 1, *c as usize),
                other => panic!("output shape {other:?}"),
            };
            Some(WeightLayer {
                kind,
                weight_shape,
                params,
                output,
            })
        })
        .collect()
}

/// The same list from a resolved spec, in TFLite's weight layouts (conv OHWI, depthwise
/// 1HWC, dense OI); params without batch norm, which the reference folds.
fn spec_layers(r: &Resolved) -> Vec<WeightLayer> {
    r.nodes
        .iter()
        .filter_map(|n| {
            let (kind, weight_shape) = match n.op {
                Op::Conv {
                    in_channels,
                    out_channels,
                    kernel: [kh, kw],
                    depthwise,
                    ..
                } => {
                    if depthwise {
                        ("depthwise", vec![1, kh, kw, out_channels])
                    } else {
                        ("conv", vec![out_channels, kh, kw, in_channels])
                    }
                }
                Op::Dense {
                    in_features,
                    out_features,
                } => ("dense", vec![out_features, in_features]),
                _ => return None,
            };
            Some(WeightLayer {
                kind,
                weight_shape,
                params: n.params.total(),
                output: n.output,
            })
        })
        .collect()
}

fn batch_norm_channels(r: &Resolved) -> u64 {
    r.nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::BatchNorm { channels, .. } => Some(channels as u64),
            _ => None,
        })
        .sum()
}

/// Against `ic.int8.tflite` (MLPerf Tiny's trained ResNet-8): the same conv and dense layers
/// in the same order (weight shapes, output shapes, weight+bias counts: 77,706 in all), and
/// the anchor table's MACs (cmsis-nn-anchor.md, "ic": 442,368, 2,359,296, ..., 640; total
/// 12,501,632). Keras counts 78,666 parameters for the unfolded model (the brief's figure):
/// the 77,706 plus 4 per batch-norm channel (7 batch norms over 16+16+16+32+32+64+64 = 240
/// channels = 960), of which gamma and beta (480) are trainable.
#[test]
fn resnet8_matches_the_mlperf_reference() {
    let r = resolved("resnet8", Shape::new(32, 32, 3), 10);
    let reference = reference_layers(&reference("ic.int8.tflite"));
    assert_eq!(spec_layers(&r), reference);
    let folded: u64 = reference.iter().map(|l| l.params).sum();
    assert_eq!(folded, 77_706);
    assert_eq!(batch_norm_channels(&r), 240);
    let p = r.params();
    assert_eq!(p.total(), 78_666);
    assert_eq!(p.total(), folded + 4 * 240);
    assert_eq!(p.non_trainable, 2 * 240);
    assert_eq!(
        mac_layers(&r),
        [
            442_368, 2_359_296, 2_359_296, 1_179_648, 2_359_296, 131_072, 1_179_648, 2_359_296,
            131_072, 640
        ]
    );
    assert_eq!(r.macs(), 12_501_632);
    assert_eq!(r.nodes.iter().filter(|n| n.op == Op::Add).count(), 3);
}

/// Against `kws.int8.tflite` (MLPerf Tiny's trained DS-CNN, 49x10x1 input, 12 classes): the
/// same layers in the same order, and the anchor table's MACs (cmsis-nn-anchor.md, "kws":
/// 320,000, then 4 x (72,000 + 512,000), then 768; total 2,656,768).
#[test]
fn dscnn_matches_the_mlperf_reference() {
    let r = resolved("dscnn", Shape::new(49, 10, 1), 12);
    assert_eq!(
        spec_layers(&r),
        reference_layers(&reference("kws.int8.tflite"))
    );
    let mut expected = vec![320_000];
    for _ in 0..4 {
        expected.extend([72_000, 512_000]);
    }
    expected.push(768);
    assert_eq!(mac_layers(&r), expected);
    assert_eq!(r.macs(), 2_656_768);
    // The first conv: SAME on 49x10 with a 10x4 kernel, stride 2 (see tests/padding.rs).
    assert_eq!(r.nodes[1].output, Shape::new(25, 5, 64));
}

#[test]
fn dscnn_takes_any_input_size() {
    for (h, w) in [(49, 10), (98, 40), (32, 32), (10, 4), (1, 1)] {
        let r = resolved("dscnn", Shape::new(h, w, 1), 35);
        let first = &r.nodes[1].output;
        assert_eq!(
            (first.h, first.w),
            (h.div_ceil(2), w.div_ceil(2)),
            "{h}x{w}"
        );
        assert_eq!(r.nodes.last().unwrap().output, Shape::new(1, 1, 35));
    }
}

/// Negative control: the same checks on a preset with one field changed must fail, so the
/// figures above are not met by any spec that merely resolves.
#[test]
fn perturbed_presets_fail_the_figure_checks() {
    let seed = preset_text("seed")
        .unwrap()
        .replacen("filters = 128", "filters = 127", 1);
    let r = ModelSpec::parse(&seed, "seed-perturbed")
        .unwrap()
        .resolve(Shape::new(28, 28, 1), 10)
        .unwrap();
    assert_ne!(r.params().total(), 831_398);
    assert_ne!(r.macs(), 8_002_696);

    // The last stage's 1x1 shortcut as a 3x3: shapes still chain, but the reference differs.
    let text = preset_text("resnet8").unwrap();
    let at = text.rfind("[[layers.shortcut]]").unwrap();
    let perturbed = format!(
        "{}{}",
        &text[..at],
        text[at..].replacen("kernel = 1", "kernel = 3", 1)
    );
    let r = ModelSpec::parse(&perturbed, "resnet8-perturbed")
        .unwrap()
        .resolve(Shape::new(32, 32, 3), 10)
        .unwrap();
    assert_ne!(
        spec_layers(&r),
        reference_layers(&reference("ic.int8.tflite"))
    );
    assert_ne!(r.macs(), 12_501_632);

    // DS-CNN with stride 1 in its first conv.
    let text = preset_text("dscnn")
        .unwrap()
        .replacen("stride = 2", "stride = 1", 1);
    let r = ModelSpec::parse(&text, "dscnn-perturbed")
        .unwrap()
        .resolve(Shape::new(49, 10, 1), 12)
        .unwrap();
    assert_ne!(
        spec_layers(&r),
        reference_layers(&reference("kws.int8.tflite"))
    );
    assert_ne!(r.macs(), 2_656_768);
}

#[test]
fn summary_lists_every_node_and_the_totals() {
    let r = resolved("seed", Shape::new(28, 28, 1), 10);
    let s = r.summary();
    assert!(s.contains("Total params: 831,398"), "{s}");
    assert!(s.contains("Total MACs: 8,002,696"), "{s}");
    assert!(s.contains("Non-trainable params: 0"), "{s}");
    for n in &r.nodes {
        assert!(s.contains(&n.path), "{} missing:\n{s}", n.path);
    }
    assert!(s.contains("2,654,208"), "{s}");
    let r = resolved("resnet8", Shape::new(32, 32, 3), 10);
    let s = r.summary();
    assert!(s.contains("Total params: 78,666"), "{s}");
    assert!(s.contains("Trainable params: 78,186"), "{s}");
    assert!(s.contains("Non-trainable params: 480"), "{s}");
    // The adds show the two nodes they read.
    assert!(s.contains(" + #"), "{s}");
    println!("{s}");
}
