//! Writes a directory for the firmware's graph runner (`firmware/src/bin/graph.rs`): the
//! random residual graph of `tinyconv::testing::residual_graph(SEED)`, `IMAGES` random inputs
//! and the host runtime's outputs for them.
//!
//! `cargo run --release -p tinyconv --features std --example graph_dir -- DIR [SEED] [IMAGES]`,
//! then `TINYCONV_GRAPH_DIR=DIR cargo run --release --bin graph` in `firmware/`.

use tinyconv::graph::Graph;
use tinyconv::testing::{SplitMix64, residual_graph};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: graph_dir DIR [SEED] [IMAGES]");
        std::process::exit(2);
    };
    let number = |v: Option<String>, default: u64| {
        v.map(|s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("error: {s} is not a number");
                std::process::exit(2)
            })
        })
        .unwrap_or(default)
    };
    let seed = number(args.next(), 21);
    let images = number(args.next(), 8) as usize;
    let bytes = residual_graph(seed)
        .to_bytes()
        .expect("the residual graph is valid");
    let graph = Graph::parse(&bytes).expect("the writer's output parses");
    let n = graph.input().shape.len();
    let inputs: Vec<u8> = SplitMix64(seed ^ 0x5eed).bytes(n * images);
    let mut arena = vec![0i8; graph.arena_len()];
    let mut expected = Vec::new();
    for x in inputs.chunks(n) {
        let x: Vec<i8> = x.iter().map(|&b| b as i8).collect();
        let y = graph.infer_int8(&x, &mut arena).expect("inference");
        expected.extend(y.iter().map(|&v| v as u8));
    }
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).expect("create DIR");
    for (file, data) in [
        ("model.tcm", &bytes[..]),
        ("inputs.i8", &inputs[..]),
        ("expected.i8", &expected[..]),
        ("name", b"residual"),
    ] {
        std::fs::write(dir.join(file), data).expect("write");
    }
    println!(
        "{}: {} ops, arena {} bytes, {} MACs, {images} inputs",
        dir.display(),
        graph.op_count(),
        graph.arena_len(),
        graph.macs()
    );
}
