//! Any bytes as a version-2 graph: `Graph::parse` must return, never panic or read out of
//! bounds; a graph it accepts must plan (the `const` planner agrees with the parsed one), infer
//! without panicking on an input made of the fuzzer's bytes, give the same output in a larger,
//! dirty arena, and refuse an arena one byte short with `ArenaTooSmall`. The first input byte
//! picks a mode: odd means "fix the checksum first", so the fuzzer explores the structural
//! checks behind the CRC.
//!
//! Seeds (`corpus/parse_graph`): small residual graphs of every op kind written by
//! `cargo run --release -p tinyconv --features std --example graph_dir`, with a mode byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinyconv::graph::Graph;
use tinyconv::{Error, format};

/// Inference is skipped above this many multiply-accumulates or bytes.
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
    let Ok(graph) = Graph::parse(&bytes) else {
        return;
    };
    let len = graph.arena_len();
    assert_eq!(tinyconv::required_arena_len(&bytes), len);
    let n = graph.input().shape.len();
    if graph.macs() > MAX_MACS || len > MAX_BYTES || n > MAX_BYTES || rest.is_empty() {
        return;
    }
    let input: Vec<i8> = (0..n)
        .map(|i| (rest[i % rest.len()] ^ i as u8) as i8)
        .collect();
    let mut arena = vec![0i8; len];
    let out = graph
        .infer_int8(&input, &mut arena)
        .expect("a parsed graph infers")
        .to_vec();
    assert_eq!(out.len(), graph.output().shape.len());
    let mut dirty = vec![0x5ai8; len + 13];
    assert_eq!(graph.infer_int8(&input, &mut dirty).unwrap(), &out[..]);
    if len > 0 {
        let mut short = vec![0i8; len - 1];
        assert_eq!(
            graph.infer_int8(&input, &mut short).unwrap_err(),
            Error::ArenaTooSmall {
                needed: len,
                actual: len - 1
            }
        );
    }
});
