//! Writes a directory for the firmware's graph runner (`firmware/src/bin/graph.rs`) from an
//! MLPerf Tiny reference model: the imported graph, the 16 golden inputs and CMSIS-NN's golden
//! outputs (`../shared/models/mlperf-tiny/`, see its README). Dense layers are written in the
//! wide layout (`tinyconv import --wide-dense`).
//!
//! `cargo run --release -p tinyconv-tflite --example mlperf_dir -- NAME DIR [REFERENCE]`
//! (NAME: ic, kws, ad or vww; REFERENCE: cmsis-nn (default) or tflite-ref), then
//! `TINYCONV_GRAPH_DIR=DIR cargo run --release --bin graph` in `firmware/`.

use std::path::{Path, PathBuf};
use std::process::exit;

fn fail(message: String) -> ! {
    eprintln!("error: {message}");
    exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: mlperf_dir NAME DIR [cmsis-nn|tflite-ref]");
        exit(2)
    };
    if !["ic", "kws", "ad", "vww"].contains(&name.as_str()) {
        fail(format!(
            "{name} is not an MLPerf Tiny model here: ic, kws, ad or vww"
        ));
    }
    let reference = args.get(2).map(String::as_str).unwrap_or("cmsis-nn");
    let shared = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/models/mlperf-tiny"
    ));
    let read =
        |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| fail(format!("{}: {e}", p.display())));
    let tflite = read(shared.join(format!("{name}.int8.tflite")));
    let model =
        tinyconv_tflite::Model::parse(&tflite).unwrap_or_else(|e| fail(format!("{name}: {e}")));
    let spec = tinyconv_tflite::to_graph(&model).unwrap_or_else(|e| fail(format!("{name}: {e}")));
    // Dense layers in the wide layout (int16 weights: the autoencoder's 264 K weights take
    // 528 KB of the board's 1 MB of flash, and its arena needs no widened input).
    let wide = tinyconv::graph::WriteOptions { wide_dense: true };
    let bytes = spec
        .to_bytes_with(wide)
        .unwrap_or_else(|e| fail(format!("{name}: {e}")));
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| fail(format!("{}: {e}", dir.display())));
    let golden = shared.join("golden");
    let files: [(&str, Vec<u8>); 4] = [
        ("model.tcm", bytes),
        ("inputs.i8", read(golden.join(format!("{name}.inputs.i8")))),
        (
            "expected.i8",
            read(golden.join(format!("{name}.outputs.{reference}.i8"))),
        ),
        ("name", name.as_bytes().to_vec()),
    ];
    for (file, data) in files {
        let path = dir.join(file);
        // Rewrite only on change: the firmware rebuilds when a file changes.
        if std::fs::read(&path).ok().as_deref() != Some(&data[..]) {
            std::fs::write(&path, &data)
                .unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
        }
    }
    println!("{}", dir.display());
}
