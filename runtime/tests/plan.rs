//! The arena plan: every placement is geometrically sound, and running the kernels at their
//! planned, overlapping places gives the reference pipeline's logits, in both modes, with the
//! portable kernels and with the DSP kernels' driver code (its portable instruction model).

mod common;

use tinyconv::kernels::{Tensors, blocked, conv, dsp, pool};
use tinyconv::plan::{Mode, Placements, first_live_row, stream_distance};
use tinyconv::testing::{SplitMix64, network, seed_network};
use tinyconv::writer::ModelSpec;
use tinyconv::{Model, Op};

/// Architectures with every kind of layer and lean mode: the seed network (conv3 lean in
/// quarter passes of 8 groups), a conv3 of 16 groups (passes of 4), one of 20 (passes of 5:
/// the DSP kernels' run-time-stride path), and unfused variants (plain convs that write two
/// rows a tile, standalone pools).
fn architectures() -> Vec<(&'static str, ModelSpec)> {
    vec![
        ("seed", seed_network(5)),
        ("c2=64", network(4, 8, 64, 32, 20)),
        ("c2=80", network(6, 12, 80, 24, 16)),
        ("small unfused", common::unfused(&network(3, 4, 6, 8, 12))),
        ("c2=64 unfused", common::unfused(&network(8, 8, 64, 16, 12))),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Kernels {
    Portable,
    Blocked,
}

/// Runs `model` with its `mode` plan in an arena of exactly the planned length, prefilled with
/// garbage, with the given kernels.
fn run_planned(model: &Model<'_>, mode: Mode, kernels: Kernels, pixels: &[u8]) -> Vec<i8> {
    let plan = model.plan(mode);
    let mut arena = vec![0x55i8; plan.len];
    let mut places = Placements::new(model.bytes(), plan);
    let mut current = places.input();
    tinyconv::quantize_pixels(model, pixels, &mut arena[current.clone()]);
    for (layer, place) in model.layers().zip(&mut places) {
        if layer.op != Op::Flatten {
            let (scratch, mut t) = place.split(&mut arena);
            match (layer.as_conv(), kernels) {
                (Some(c), Kernels::Blocked) if blocked::plan_of(&c).is_some() => {
                    blocked::conv2d_in(&dsp::Emulated, &c, &mut t, scratch)
                }
                (Some(c), _) => conv::conv2d_in(&c, &mut t),
                (None, _) => pool::maxpool2x2_in(layer.input, &mut t),
            }
            assert_eq!(t.output().len(), layer.output.len());
        }
        current = place.output;
    }
    arena[current].to_vec()
}

#[test]
fn planned_inference_matches_the_reference_pipeline() {
    for (name, spec) in architectures() {
        let bytes = spec.to_bytes().unwrap();
        let model = Model::parse(&bytes).unwrap();
        for image in 0..3 {
            let px = SplitMix64(image).bytes(784);
            let mut x = vec![0i8; 784];
            tinyconv::quantize_pixels(&model, &px, &mut x);
            let expected = common::reference_logits(&model, x);
            for mode in [Mode::Memory, Mode::Speed] {
                for kernels in [Kernels::Portable, Kernels::Blocked] {
                    let got = run_planned(&model, mode, kernels, &px);
                    assert_eq!(
                        got, expected,
                        "{name}, {mode:?}, {kernels:?}, image {image}"
                    );
                }
                // And through Model::infer (the host kernel here), in an arena of the plan's
                // length.
                let mut arena = vec![0x33i8; model.arena_len_for(mode)];
                assert_eq!(model.infer(&px, &mut arena).unwrap().logits, &expected[..]);
            }
        }
    }
}

#[test]
fn placements_are_sound() {
    for (name, spec) in architectures() {
        let bytes = spec.to_bytes().unwrap();
        let model = Model::parse(&bytes).unwrap();
        assert!(model.arena_len_for(Mode::Memory) <= model.arena_len_for(Mode::Speed));
        for mode in [Mode::Memory, Mode::Speed] {
            let plan = model.plan(mode);
            let places = Placements::new(&bytes, plan);
            assert_eq!(places.input().len(), model.input_shape().len());
            let mut previous = places.input();
            for ((i, layer), p) in model.layers().enumerate().zip(places) {
                let at = format!("{name} {mode:?} layer {i}");
                assert_eq!(p.input, previous, "{at}: input is the last output");
                assert!(
                    p.span().end <= plan.len && p.scratch.end <= plan.len,
                    "{at}"
                );
                let span = p.span();
                assert!(
                    p.scratch.is_empty()
                        || p.scratch.end <= span.start
                        || p.scratch.start >= span.end,
                    "{at}: scratch overlaps the tensors"
                );
                assert_eq!(p.output.len(), layer.output.len(), "{at}");
                let overlap = p.output.start < p.input.end && p.input.start < p.output.end;
                if layer.op != Op::Flatten && overlap {
                    // Output below the input, every row ending before the first live input row.
                    assert!(p.output.start < p.input.start, "{at}");
                    let out_row = layer.output.w * layer.output.c;
                    let in_row = layer.input.w * layer.input.c;
                    let pad = layer.as_conv().map_or(0, |c| c.pad);
                    let pooled = layer.as_conv().is_some_and(|c| c.pool);
                    let code = match layer.op {
                        Op::MaxPool2d => tinyconv::format::op::MAXPOOL2D,
                        _ => tinyconv::format::op::CONV2D,
                    };
                    assert_ne!(layer.op, Op::Dense, "{at}: a dense output never overlaps");
                    for row in 0..layer.output.h {
                        let live = first_live_row(code, pooled, pad, row);
                        assert!(
                            p.output.start + (row + 1) * out_row <= p.input.start + live * in_row,
                            "{at}: output row {row} reaches live input"
                        );
                    }
                    assert!(p.input.start - p.output.start >= stream_distance(&bytes, i));
                }
                previous = p.output;
            }
        }
    }
}

#[test]
fn the_speed_plan_runs_when_the_arena_holds_it() {
    // Both plans give the same logits (checked above); here: the arena length picks the plan,
    // and an arena below the smallest plan is an error naming that plan's length.
    let bytes = seed_network(2).to_bytes().unwrap();
    let model = Model::parse(&bytes).unwrap();
    let px = SplitMix64(9).bytes(784);
    let small = model.arena_len_for(Mode::Memory);
    let fast = model.arena_len_for(Mode::Speed);
    assert!(small < fast, "the seed network's plans differ (lean conv3)");
    for (len, mode) in [
        (small, Mode::Memory),
        (fast - 1, Mode::Memory),
        (fast, Mode::Speed),
        (fast + 100, Mode::Speed),
    ] {
        assert_eq!(
            model.plan_for_arena(len),
            model.plan(mode),
            "arena of {len} bytes"
        );
    }
    let mut arena = vec![0i8; small - 1];
    match model.infer(&px, &mut arena) {
        Err(tinyconv::Error::ArenaTooSmall { needed, actual }) => {
            assert_eq!((needed, actual), (small, small - 1))
        }
        other => panic!("expected ArenaTooSmall, got {other:?}"),
    }
    assert_eq!(tinyconv::required_arena_len(&bytes), small);
    assert_eq!(
        tinyconv::required_arena_len_for(&bytes, Mode::Speed),
        model.arena_len_for(Mode::Speed)
    );
}
