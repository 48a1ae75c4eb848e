//! The model file: round trips through the writer, typed errors for every kind of damage, and
//! no panic or out-of-bounds read on any corruption of a real model file.

mod common;

use tinyconv::format::{self, header, record};
use tinyconv::testing::{SplitMix64, network, seed_network};
use tinyconv::writer::{LayerSpec, ModelSpec};
use tinyconv::{Error, Model, Multiplier, Op, quant};

/// The model the corruption tests damage: the committed trained model when it exists (it is
/// the file users flash), else the seed network with random weights (same size and layout).
fn real_model_bytes() -> Vec<u8> {
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/mnist-cnn.tcm");
    std::fs::read(committed).unwrap_or_else(|_| seed_network(7).to_bytes().unwrap())
}

fn small_model() -> ModelSpec {
    network(3, 4, 6, 8, 12)
}

/// Rewrites the checksum so that structural validation, not the CRC, sees a change.
fn fix_checksum(bytes: &mut [u8]) {
    let body = bytes.len() - format::CHECKSUM_LEN;
    let crc = format::checksum(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
}

fn record_at(layer: usize) -> usize {
    format::HEADER_LEN + layer * format::LAYER_RECORD_LEN
}

fn pixels(seed: u64) -> Vec<u8> {
    SplitMix64(seed).bytes(784)
}

#[test]
fn round_trip_preserves_every_field() {
    let spec = seed_network(11);
    let bytes = spec.to_bytes().unwrap();
    let model = Model::parse(&bytes).unwrap();
    assert_eq!(model.layer_count(), spec.layers.len());
    assert_eq!(model.input_shape(), spec.input);
    assert_eq!(model.input_quant(), spec.input_quant);
    assert_eq!(model.pixel_scale(), spec.pixel_scale);
    assert_eq!(model.classes(), 10);
    let mut scale = spec.input_quant.scale;
    for (layer, written) in model.layers().zip(&spec.layers) {
        let params = match written {
            LayerSpec::Conv2d {
                kernel,
                relu,
                pool,
                padding,
                params,
            } => {
                assert_eq!(
                    (layer.op, layer.kernel, layer.relu, layer.fused_pool),
                    (Op::Conv2d, *kernel, *relu, *pool)
                );
                assert_eq!(layer.padding, *padding);
                params
            }
            LayerSpec::Dense { relu, params } => {
                assert_eq!((layer.op, layer.relu), (Op::Dense, *relu));
                params
            }
            LayerSpec::MaxPool2d => {
                assert_eq!(layer.op, Op::MaxPool2d);
                continue;
            }
            LayerSpec::Flatten => {
                assert_eq!(layer.op, Op::Flatten);
                continue;
            }
        };
        assert_eq!(layer.weights, &params.weights[..]);
        assert_eq!(layer.output_quant, params.output);
        for c in 0..layer.output.c {
            assert_eq!(layer.bias(c), params.bias[c]);
            assert_eq!(layer.weight_scale(c), params.weight_scales[c]);
            let s = quant::combined_scale(scale, params.weight_scales[c], params.output.scale);
            assert_eq!(layer.multiplier(c), Multiplier::from_scale(s).unwrap());
        }
        scale = params.output.scale;
    }
    // The writer is deterministic.
    assert_eq!(spec.to_bytes().unwrap(), bytes);
}

#[test]
fn seed_network_shapes_params_and_macs() {
    let bytes = seed_network(1).to_bytes().unwrap();
    let model = Model::parse(&bytes).unwrap();
    let shapes: Vec<_> = model
        .layers()
        .map(|l| (l.output.h, l.output.w, l.output.c))
        .collect();
    assert_eq!(
        shapes,
        [
            (14, 14, 16),
            (6, 6, 128),
            (2, 2, 256),
            (1, 1, 1024),
            (1, 1, 500),
            (1, 1, 10)
        ]
    );
    let params: usize = model.layers().map(|l| l.params()).sum();
    assert_eq!(params, 831_398);
    let macs: Vec<_> = model.layers().map(|l| l.macs()).collect();
    assert_eq!(macs, [112_896, 2_654_208, 4_718_592, 0, 512_000, 5_000]);
    // The arena plans (tests/plan.rs checks their placements). The smallest: conv3's output
    // starts 512 bytes below its 6x6x128 input (its first pooled row must not reach input row
    // 0) and its lean scratch (a quarter of the 4x6x128 int16 patch, the int32 sums of 32
    // channels x 8 pixels, 8 bytes of alignment slack) sits above.
    assert_eq!(
        model.arena_len(),
        512 + 6 * 6 * 128 + 4 * 6 * 32 * 2 + 32 * 8 * 4 + 8
    );
    assert_eq!(model.arena_len(), 7688);
    // Full speed: the whole patch.
    assert_eq!(
        model.arena_len_for(tinyconv::Mode::Speed),
        512 + 6 * 6 * 128 + 4 * 6 * 128 * 2 + 8
    );
    const ARENA: usize = tinyconv::required_arena_len(include_bytes!("data/tiny.tcm"));
    let tiny = Model::parse(include_bytes!("data/tiny.tcm")).unwrap();
    assert_eq!(ARENA, tiny.arena_len());
}

/// Inference against a layer-by-layer pipeline of the reference kernels.
#[test]
fn inference_matches_the_reference_pipeline() {
    for (seed, spec) in [(1, small_model()), (2, seed_network(5))] {
        let bytes = spec.to_bytes().unwrap();
        let model = Model::parse(&bytes).unwrap();
        let mut arena = vec![0i8; model.arena_len()];
        for image in 0..4 {
            let px = pixels(seed * 100 + image);
            let mut x = vec![0i8; 784];
            tinyconv::quantize_pixels(&model, &px, &mut x);
            let x = common::reference_logits(&model, x);
            let prediction = model.infer(&px, &mut arena).unwrap();
            assert_eq!(prediction.logits, &x[..]);
            let best = *x.iter().max().unwrap();
            assert_eq!(prediction.class, x.iter().position(|&v| v == best).unwrap());
            let mut probabilities = [0f32; 10];
            prediction.probabilities(&mut probabilities).unwrap();
            assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-3);
            assert_eq!(
                probabilities
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .1,
                &probabilities[prediction.class]
            );
        }
    }
}

#[test]
fn standalone_pooling_equals_fused_pooling() {
    let fused = small_model();
    let unfused = common::unfused(&fused);
    let (a, b) = (fused.to_bytes().unwrap(), unfused.to_bytes().unwrap());
    let (a, b) = (Model::parse(&a).unwrap(), Model::parse(&b).unwrap());
    assert!(b.arena_len() > a.arena_len());
    let mut arena_a = vec![0i8; a.arena_len()];
    let mut arena_b = vec![0i8; b.arena_len()];
    for seed in 0..8 {
        let px = pixels(seed);
        assert_eq!(
            a.infer(&px, &mut arena_a).unwrap().logits,
            b.infer(&px, &mut arena_b).unwrap().logits
        );
    }
}

#[test]
fn caller_errors() {
    let bytes = small_model().to_bytes().unwrap();
    let model = Model::parse(&bytes).unwrap();
    let mut arena = vec![0i8; model.arena_len() - 1];
    assert_eq!(
        model.infer(&pixels(1), &mut arena).unwrap_err(),
        Error::ArenaTooSmall {
            needed: model.arena_len(),
            actual: model.arena_len() - 1
        }
    );
    let mut arena = vec![0i8; model.arena_len()];
    assert_eq!(
        model.infer(&[0u8; 100], &mut arena).unwrap_err(),
        Error::InputSize {
            expected: 784,
            actual: 100
        }
    );
    let prediction = model.infer(&pixels(1), &mut arena).unwrap();
    assert_eq!(
        prediction.probabilities(&mut [0.0; 3]).unwrap_err(),
        Error::OutputSize {
            expected: 10,
            actual: 3
        }
    );
}

/// Each kind of damage gets its own typed error.
#[test]
fn typed_errors_name_the_fault() {
    let good = small_model().to_bytes().unwrap();
    let parse_with = |edit: &dyn Fn(&mut Vec<u8>), fix: bool| {
        let mut b = good.clone();
        edit(&mut b);
        if fix {
            fix_checksum(&mut b);
        }
        Model::parse(&b).unwrap_err()
    };
    assert!(matches!(
        parse_with(&|b| b[0] = b'X', false),
        Error::BadMagic { .. }
    ));
    assert!(matches!(
        parse_with(&|b| b[header::VERSION] = 9, false),
        Error::UnsupportedVersion {
            found: 9,
            supported: 1
        }
    ));
    assert!(matches!(
        parse_with(&|b| b.truncate(b.len() - 1), false),
        Error::Truncated { .. }
    ));
    assert!(matches!(
        parse_with(&|b| b.push(0), false),
        Error::LengthMismatch { .. }
    ));
    assert!(matches!(
        parse_with(
            &|b| {
                let n = b.len();
                b[n - 10] ^= 1
            },
            false
        ),
        Error::ChecksumMismatch { .. }
    ));
    assert!(matches!(
        parse_with(&|b| b[header::LAYER_COUNT] = 0, true),
        Error::LayerCount { count: 0, .. }
    ));
    assert!(matches!(
        parse_with(&|b| b[record_at(1) + record::OP] = 9, true),
        Error::UnsupportedOp { layer: 1, op: 9 }
    ));
    assert!(matches!(
        parse_with(&|b| b[record_at(1) + record::IN_C] += 1, true),
        Error::ShapeMismatch {
            layer: 1,
            what: "input shape",
            ..
        }
    ));
    assert!(matches!(
        parse_with(&|b| b[record_at(0) + record::OUT_H] += 1, true),
        Error::ShapeMismatch {
            layer: 0,
            what: "output shape",
            ..
        }
    ));
    assert!(matches!(
        parse_with(&|b| b[record_at(0) + record::PADDING] = 7, true),
        Error::InvalidField { layer: Some(0), .. }
    ));
    assert!(matches!(
        parse_with(&|b| b[record_at(0) + record::FLAGS] |= 0x80, true),
        Error::InvalidField { layer: Some(0), .. }
    ));
    assert!(matches!(
        parse_with(&|b| b[record_at(0) + record::WEIGHTS_OFFSET] += 1, true),
        Error::BadBlob {
            layer: 0,
            what: "weights"
        }
    ));
    let weights_at =
        |b: &Vec<u8>| format::read_u32_le(b, record_at(0) + record::WEIGHTS_OFFSET) as usize;
    assert!(matches!(
        parse_with(
            &|b| {
                let at = weights_at(b);
                b[at] = 0x80
            },
            true
        ),
        Error::WeightOutOfRange { layer: 0, index: 0 }
    ));
    let bias_at = |b: &Vec<u8>| format::read_u32_le(b, record_at(0) + record::BIAS_OFFSET) as usize;
    assert!(matches!(
        parse_with(
            &|b| {
                let at = bias_at(b);
                b[at..at + 4].copy_from_slice(&i32::MAX.to_le_bytes())
            },
            true
        ),
        Error::AccumulatorOverflow {
            layer: 0,
            channel: 0
        }
    ));
    let mult_at =
        |b: &Vec<u8>| format::read_u32_le(b, record_at(0) + record::MULTIPLIERS_OFFSET) as usize;
    assert!(matches!(
        parse_with(
            &|b| {
                let at = mult_at(b);
                b[at] ^= 1
            },
            true
        ),
        Error::BadQuantization { layer: Some(0), .. }
    ));
    assert!(matches!(
        parse_with(&|b| b[record_at(0) + record::OUTPUT_SCALE + 3] = 0xff, true),
        Error::BadQuantization { layer: Some(0), .. }
    ));
    // Messages say what is wrong and what to do.
    let message = parse_with(&|b| b[0] = b'X', false).to_string();
    assert!(
        message.contains("not a tinyconv model file") && message.contains(".tcm"),
        "{message}"
    );
}

/// Truncation at every length of a real model file: a typed error, never a panic.
#[test]
fn every_truncation_is_rejected() {
    let bytes = real_model_bytes();
    for len in 0..bytes.len() {
        match Model::parse(&bytes[..len]) {
            Err(Error::Truncated { .. } | Error::LengthMismatch { .. }) => {}
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
}

/// Every byte of a real model file flipped: the checksum catches each one.
#[test]
fn every_byte_flip_is_rejected() {
    let bytes = real_model_bytes();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = bytes.len().div_ceil(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let bytes = &bytes;
            s.spawn(move || {
                let mut copy = bytes.clone();
                for i in t * chunk..((t + 1) * chunk).min(bytes.len()) {
                    copy[i] ^= 0xff;
                    assert!(
                        Model::parse(&copy).is_err(),
                        "flipping byte {i} went unnoticed"
                    );
                    copy[i] ^= 0xff;
                }
            });
        }
    });
}

/// Every byte of the header, layer table and per-channel blobs flipped *with the checksum
/// fixed*, so that structural validation sees the damage: parse either rejects the file or
/// yields a model that infers without panicking.
#[test]
fn structural_corruption_never_panics() {
    let bytes = small_model().to_bytes().unwrap();
    let model = Model::parse(&bytes).unwrap();
    let data_start = format::HEADER_LEN + model.layer_count() * format::LAYER_RECORD_LEN;
    let mut rng = SplitMix64(99);
    let mut accepted = 0;
    for i in 0..bytes.len() - format::CHECKSUM_LEN {
        for mask in [0xffu8, 1 << rng.range(0, 7), rng.next_u64() as u8 | 1] {
            if i >= data_start && mask != 0xff {
                continue; // the data area is covered once per byte
            }
            let mut copy = bytes.clone();
            copy[i] ^= mask;
            fix_checksum(&mut copy);
            if let Ok(model) = Model::parse(&copy) {
                accepted += 1;
                let mut arena = vec![0i8; model.arena_len()];
                let px = vec![0u8; model.input_shape().len()];
                let prediction = model.infer(&px, &mut arena).unwrap();
                assert!(prediction.class < model.classes());
            }
        }
    }
    // Weight and bias bytes are free data, so some flips must be accepted.
    assert!(accepted > 0);
}
