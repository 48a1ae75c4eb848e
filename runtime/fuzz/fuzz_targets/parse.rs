//! Any bytes: `Model::parse` must return, never panic or read out of bounds; a model it
//! accepts must infer without panicking, give the same logits with the speed plan's arena, and
//! refuse an arena one byte too short with `ArenaTooSmall`. The first input byte picks a mode:
//! odd means "fix the checksum first", so that the fuzzer explores the structural checks behind
//! the CRC; the pixels come from the input's bytes.
//!
//! The committed corpus (`corpus/parse`, minimized with `cargo fuzz cmin`) grew from small
//! valid models of the seed architecture (`tests/data/tiny.tcm` and
//! `write_random_model OUT 1 tiny`), each with a mode byte in front. The 845 KB real model is
//! not a seed: one execution on it costs a millisecond under the sanitizer; it is mutated by the
//! structural test instead (`runtime/tests/fuzz_structural.rs`, run in CI).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyconv::{Error, Mode, format};

/// Inference is skipped above this many multiply-accumulates or arena bytes (the seeds do a
/// few thousand): the fuzzer would otherwise spend its time in the kernels of huge layers.
const MAX_MACS: usize = 1 << 22;
const MAX_BYTES: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= format::CHECKSUM_LEN {
        let body = bytes.len() - format::CHECKSUM_LEN;
        let crc = format::checksum(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(model) = tinyconv::Model::parse(&bytes) else {
        return;
    };
    let macs: usize = model.layers().map(|l| l.macs()).sum();
    let (memory, speed) = (model.arena_len(), model.arena_len_for(Mode::Speed));
    assert!(memory <= speed);
    let n = model.input_shape().len();
    if macs > MAX_MACS || speed > MAX_BYTES || n > MAX_BYTES {
        return;
    }
    let pixels: Vec<u8> = (0..n).map(|i| rest[i % rest.len()] ^ (i as u8)).collect();
    let mut arena = vec![0i8; memory];
    let prediction = model
        .infer(&pixels, &mut arena)
        .expect("a parsed model infers");
    assert!(prediction.class < model.classes());
    assert_eq!(prediction.logits.len(), model.classes());
    let logits = prediction.logits.to_vec();
    let mut fast = vec![0i8; speed];
    assert_eq!(model.infer(&pixels, &mut fast).unwrap().logits, &logits[..]);
    let mut short = vec![0i8; memory - 1];
    assert_eq!(
        model.infer(&pixels, &mut short).unwrap_err(),
        Error::ArenaTooSmall {
            needed: memory,
            actual: memory - 1
        }
    );
});
