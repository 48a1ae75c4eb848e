//! Model format v2 graphs on the Cortex-M4F in QEMU (`firmware/src/bin/graph.rs`):
//!
//! * a residual graph built with the writer (a strided first conv, a depthwise 3x3, a 1x1
//!   pointwise, a residual add, pooling, a global average pool, a reshape, a dense layer and a
//!   softmax) gives every output value identical to the host runtime's on x86-64;
//! * each of the four MLPerf Tiny reference int8 models (`../shared/models/mlperf-tiny/`),
//!   imported from TFLite, gives every output value identical to Arm CMSIS-NN's (as TensorFlow
//!   Lite Micro calls it) on all 16 golden inputs, in the firmware;
//! * a negative control: the `ad` model checked against the TensorFlow reference interpreter's
//!   outputs (which round FULLY_CONNECTED once, not twice) fails with exit code 1.
//!
//! Each run prints its `RESULT model=NAME ...` line; instructions are those of the scalar
//! reference kernels until the graph ops get DSP kernels.

use std::path::PathBuf;
use std::time::Duration;

use tinyconv::graph::{Graph, GraphSpec};
use tinyconv_tests::{build_firmware_bin, repo};
use tinyconv_trainer::firmware::{QEMU, QemuOutput, run_qemu};

fn shared() -> PathBuf {
    repo().join("../shared/models/mlperf-tiny")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo().join("target"),
    }
}

fn require_qemu() {
    let found = std::process::Command::new(QEMU)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{QEMU} is not installed: `apt-get install qemu-system-arm` (scripts/setup.sh --qemu does it)"
    );
}

/// Writes the graph runner's input directory; files are rewritten only when they change, so an
/// unchanged graph does not rebuild the firmware.
fn graph_dir(name: &str, model: &[u8], inputs: &[i8], expected: &[i8]) -> PathBuf {
    let dir = target_dir().join("graph-qemu").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let write = |file: &str, bytes: &[u8]| {
        let path = dir.join(file);
        if std::fs::read(&path).ok().as_deref() != Some(bytes) {
            std::fs::write(&path, bytes).unwrap();
        }
    };
    let raw = |v: &[i8]| v.iter().map(|&b| b as u8).collect::<Vec<u8>>();
    write("model.tcm", model);
    write("inputs.i8", &raw(inputs));
    write("expected.i8", &raw(expected));
    write("name", name.as_bytes());
    dir
}

/// Fields of the `RESULT model=...` line.
fn result(out: &str) -> std::collections::BTreeMap<String, String> {
    let line = out
        .lines()
        .rfind(|l| l.starts_with("RESULT model="))
        .unwrap_or_else(|| panic!("no RESULT line in the graph runner's output:\n{out}"));
    let fields: std::collections::BTreeMap<String, String> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let keys: Vec<&str> = fields.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "arena",
            "correct",
            "flash",
            "images",
            "instructions",
            "macs",
            "model",
            "ram",
            "stack"
        ],
        "RESULT fields: {line}"
    );
    fields
}

fn run(name: &str, model: &[u8], inputs: &[i8], expected: &[i8]) -> (QemuOutput, PathBuf) {
    let dir = graph_dir(name, model, inputs, expected);
    let elf = build_firmware_bin(
        "graph",
        name,
        &[],
        &[("TINYCONV_GRAPH_DIR", dir.to_str().unwrap())],
    );
    let out = run_qemu(&elf, Duration::from_secs(600)).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{}",
        out.stdout
            .lines()
            .filter(|l| !l.starts_with("calibration"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    (out, elf)
}

/// Runs a graph and checks every output value and the figures of the RESULT line.
fn check_identical(name: &str, model: &[u8], inputs: &[i8], expected: &[i8]) {
    let graph = Graph::parse(model).unwrap();
    let images = inputs.len() / graph.input().shape.len();
    let (out, _) = run(name, model, inputs, expected);
    let r = result(&out.stdout);
    assert_eq!(out.code, Some(0), "{name}: exit code\n{}", out.stdout);
    assert_eq!(r["model"], name);
    assert_eq!(r["images"], images.to_string());
    assert_eq!(
        r["correct"],
        images.to_string(),
        "{name}: outputs identical"
    );
    assert_eq!(r["macs"], graph.macs().to_string());
    assert_eq!(
        r["arena"],
        graph.arena_len().to_string(),
        "the firmware's static arena is the host's plan"
    );
    let ram: usize = r["ram"].parse().unwrap();
    assert!(
        ram >= graph.arena_len() && ram <= 128 * 1024,
        "{name}: ram {ram}"
    );
    let flash: usize = r["flash"].parse().unwrap();
    assert!(
        flash >= model.len() + inputs.len() && flash <= 1024 * 1024,
        "{name}: flash {flash}"
    );
}

#[test]
fn a_residual_graph_matches_the_host_in_qemu() {
    require_qemu();
    // The first seed from 21 whose graph has all 8 op kinds (a max pool, not an average one).
    let (bytes, graph_kinds) = (21..)
        .map(|seed| {
            let spec: GraphSpec = tinyconv::testing::residual_graph(seed);
            let bytes = spec.to_bytes().unwrap();
            let kinds: std::collections::BTreeSet<&str> = Graph::parse(&bytes)
                .unwrap()
                .nodes()
                .map(|n| n.kind.name())
                .collect();
            (bytes, kinds)
        })
        .find(|(_, kinds)| kinds.len() == 8)
        .unwrap();
    eprintln!("op kinds: {graph_kinds:?}");
    let graph = Graph::parse(&bytes).unwrap();
    let n = graph.input().shape.len();
    let mut rng = tinyconv::testing::SplitMix64(0x5eed);
    let inputs: Vec<i8> = rng.bytes(n * 8).into_iter().map(|b| b as i8).collect();
    let mut arena = vec![0i8; graph.arena_len()];
    let mut expected = Vec::new();
    for x in inputs.chunks(n) {
        expected.extend_from_slice(graph.infer_int8(x, &mut arena).unwrap());
    }
    check_identical("residual", &bytes, &inputs, &expected);
}

/// The fast kernels' other paths on the real instructions: random chains of convs (any kernel
/// up to 5x5, non-square, stride 1 and 2, padded or not, 1..20 channels), depthwise convs and
/// pools, and a dense layer, under both rules; every output identical to the host runtime's,
/// which the host tests hold to the scalar references (runtime/tests/graph_{conv,depthwise}.rs).
#[test]
fn random_chains_match_the_host_in_qemu() {
    require_qemu();
    use tinyconv::graph::{OpKind, Rule};
    let (mut odd_depthwise, mut wide_depthwise, mut odd_conv, mut strided) = (0, 0, 0, 0);
    for (k, rule) in [Rule::Tflite, Rule::Tflite, Rule::Onnx, Rule::Onnx]
        .into_iter()
        .enumerate()
    {
        let spec = tinyconv::testing::random_chain_graph(40 + k as u64, rule);
        let bytes = spec.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        for n in graph.nodes() {
            let w = n.window;
            match n.kind {
                OpKind::DepthwiseConv2d if n.input.shape.c % 4 != 0 => odd_depthwise += 1,
                OpKind::DepthwiseConv2d if n.input.shape.c >= 4 && w.kernel_w != 3 => {
                    wide_depthwise += 1
                }
                OpKind::Conv2d if n.input.shape.c % 4 != 0 => odd_conv += 1,
                _ => {}
            }
            strided += (n.kind.has_window() && w.stride_h == 2) as usize;
        }
        let n = graph.input().shape.len();
        let mut rng = tinyconv::testing::SplitMix64(0xc4a1 + k as u64);
        let inputs: Vec<i8> = rng.bytes(n * 6).into_iter().map(|b| b as i8).collect();
        let mut arena = vec![0i8; graph.arena_len()];
        let mut expected = Vec::new();
        for x in inputs.chunks(n) {
            expected.extend_from_slice(graph.infer_int8(x, &mut arena).unwrap());
        }
        check_identical(&format!("chain{k}"), &bytes, &inputs, &expected);
    }
    eprintln!(
        "chains: {odd_depthwise} depthwise with C % 4 != 0, {wide_depthwise} fast depthwise with K_w != 3, \
         {odd_conv} convs with C_in % 4 != 0, {strided} stride-2 windows"
    );
    assert!(wide_depthwise > 0 && odd_conv > 0 && strided > 0);
}

/// The 3x3 depthwise column path (`runtime/src/graph/kernels/dw3x3.rs`) on the real
/// instructions: channel pairs widened together and a last channel alone, sweeps of whole
/// turns and ones that end one or two rows into a turn, more than one band, stride 2, the fused
/// requantization with and without a lower clamp, and the other rule's columns; every output
/// identical to the host's, which `runtime/tests/graph_depthwise.rs` holds to the reference.
#[test]
fn random_depthwise_3x3_chains_match_the_host_in_qemu() {
    require_qemu();
    use tinyconv::graph::kernels::dw3x3::BAND;
    use tinyconv::graph::{OpKind, Rule};
    let (mut odd, mut rows1, mut rows2, mut bands, mut full, mut lower, mut onnx) =
        (0, 0, 0, 0, 0, 0, 0);
    let mut strided = 0;
    let seeds = [
        (74, Rule::Tflite),
        (80, Rule::Tflite),
        (83, Rule::Tflite),
        (84, Rule::Tflite),
        (92, Rule::Tflite),
    ];
    for (k, (seed, rule)) in seeds
        .into_iter()
        .chain([(63, Rule::Onnx), (67, Rule::Onnx)])
        .enumerate()
    {
        let bytes = tinyconv::testing::random_dw3x3_chain_graph(seed, rule)
            .to_bytes()
            .unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        for n in graph.nodes().filter(|n| n.kind == OpKind::DepthwiseConv2d) {
            let o = n.output_info.shape;
            if !(n.fused && n.clamp.max == 127) {
                onnx += (n.rule == Rule::Onnx) as usize;
                continue;
            }
            if n.window.stride_h == 2 {
                strided += 1;
                full += (n.clamp.min == -128) as usize;
                lower += (n.clamp.min > -128) as usize;
                continue;
            }
            // The last band's rows (every band before it has BAND, a multiple of 3).
            let last = (o.h - 1) % BAND + 1;
            odd += o.c % 2;
            rows1 += (last % 3 == 1) as usize;
            rows2 += (last % 3 == 2) as usize;
            bands += (o.h > BAND) as usize;
            full += (n.clamp.min == -128) as usize;
            lower += (n.clamp.min > -128) as usize;
        }
        let n = graph.input().shape.len();
        let mut rng = tinyconv::testing::SplitMix64(0xd3 + k as u64);
        let inputs: Vec<i8> = rng.bytes(n * 4).into_iter().map(|b| b as i8).collect();
        let mut arena = vec![0i8; graph.arena_len()];
        let mut expected = Vec::new();
        for x in inputs.chunks(n) {
            expected.extend_from_slice(graph.infer_int8(x, &mut arena).unwrap());
        }
        check_identical(&format!("dw3x3-{k}"), &bytes, &inputs, &expected);
    }
    eprintln!(
        "fused column layers: {odd} with odd C, {rows1} and {rows2} ending 1 and 2 rows into a \
         turn, {bands} of two bands, {strided} at stride 2, {full} without and {lower} with a \
         lower clamp; {onnx} onnx"
    );
    assert!(odd > 0 && rows1 > 0 && rows2 > 0 && bands > 0 && strided > 0);
    assert!(full > 0 && lower > 0 && onnx > 0);
}

/// The dense kernel's paths (`runtime/src/graph/kernels/dense.rs`): on the Cortex-M4 the
/// assembly pair loop for rows of a multiple of 4 values under the fused requantization (with
/// and without a tail group of 4, a lower clamp, an odd last row), v1's rows elsewhere; every
/// output identical to the host's in QEMU.
#[test]
fn random_dense_chains_match_the_host_in_qemu() {
    require_qemu();
    use tinyconv::graph::Rule;
    // [pair loop: no tail, tail, lower clamp, odd row count; other paths]
    let mut seen = [0usize; 5];
    for (k, rule) in [Rule::Tflite, Rule::Tflite, Rule::Tflite, Rule::Onnx]
        .into_iter()
        .enumerate()
    {
        let spec = tinyconv::testing::random_dense_chain_graph(70 + k as u64, rule);
        let bytes = spec.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        for n in graph.nodes() {
            let len = n.input.shape.len();
            let outs = n.output_info.shape.len();
            if n.fused && n.clamp.max == i8::MAX && len >= 4 && len % 4 == 0 {
                seen[(len % 8 == 4) as usize] += 1;
                seen[2] += (n.clamp.min > i8::MIN) as usize;
                seen[3] += (outs % 2 == 1) as usize;
            } else {
                seen[4] += 1;
            }
        }
        let n = graph.input().shape.len();
        let mut rng = tinyconv::testing::SplitMix64(0xde75e + k as u64);
        let inputs: Vec<i8> = rng.bytes(n * 6).into_iter().map(|b| b as i8).collect();
        let mut arena = vec![0i8; graph.arena_len()];
        let mut expected = Vec::new();
        for x in inputs.chunks(n) {
            expected.extend_from_slice(graph.infer_int8(x, &mut arena).unwrap());
        }
        check_identical(&format!("dense{k}"), &bytes, &inputs, &expected);
    }
    eprintln!(
        "dense layers: pair loop {} without and {} with a tail group, {} with a lower clamp, \
         {} with an odd row count; {} on other paths",
        seen[0], seen[1], seen[2], seen[3], seen[4]
    );
    assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
}

/// The conv channel loop's late-zero-point form (`runtime/src/graph/kernels/conv.rs`,
/// `channels8_late`; `requant::Layer::late_channel`) on the real instructions: random chains of
/// 1x1 and 3x3 convs whose clamps are all of int8 and whose channels reach shifts below -23
/// and zero multipliers, depths with and without a tail (the assembly loop takes the layers
/// without, the Rust loop the others), full and partial blocks; every output
/// identical to the host's, which `runtime/tests/graph_conv.rs` holds to the reference.
#[test]
fn random_late_form_convs_match_the_host_in_qemu() {
    require_qemu();
    use tinyconv::graph::{OpKind, Rule};
    // [layers all in the late form (with a depth tail), zero multipliers]
    let (mut late, mut tail, mut zero) = (0, 0, 0);
    for (k, seed) in [90u64, 91, 92, 93].into_iter().enumerate() {
        let spec = tinyconv::testing::random_late_conv_chain_graph(seed, Rule::Tflite);
        let bytes = spec.to_bytes().unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        for n in graph.nodes().filter(|n| n.kind == OpKind::Conv2d) {
            let words: Vec<(i32, i32)> =
                (0..n.channels.len()).map(|c| n.channels.words(c)).collect();
            zero += words.iter().filter(|w| w.0 == 0).count();
            let all_late = !n.fused
                && words
                    .iter()
                    .all(|&(m, s)| m == 0 || (m > 0 && (-31..=-2).contains(&s)));
            late += all_late as usize;
            let per = n.window.kernel_h * n.window.kernel_w * n.input.shape.c;
            tail += (all_late && per % 4 != 0) as usize;
        }
        let n = graph.input().shape.len();
        let mut rng = tinyconv::testing::SplitMix64(0x1a7e + k as u64);
        let inputs: Vec<i8> = rng.bytes(n * 4).into_iter().map(|b| b as i8).collect();
        let mut arena = vec![0i8; graph.arena_len()];
        let mut expected = Vec::new();
        for x in inputs.chunks(n) {
            expected.extend_from_slice(graph.infer_int8(x, &mut arena).unwrap());
        }
        check_identical(&format!("late{k}"), &bytes, &inputs, &expected);
    }
    eprintln!(
        "late-form conv layers: {late} ({tail} with a depth tail, which take the Rust loop), \
         {zero} zero multipliers"
    );
    assert!(late > 0 && tail > 0 && zero > 0);
}

/// The wide dense layout's kernel (`runtime/src/graph/kernels/dense.rs`, `wide`) on the real
/// instructions: random chains of dense layers the wide layout takes (`testing::
/// random_wide_dense_chain_graph`, written with `WriteOptions::wide_dense`), layers in the
/// wide layout with the fused requantization in assembly (with and without a lower clamp),
/// with the Rust requantization (the onnx rule, other clamps), and with an odd quad count;
/// every output identical to the host's, which `runtime/tests/graph_dense_wide.rs` holds to
/// the reference and to the plain layout.
#[test]
fn random_wide_dense_chains_match_the_host_in_qemu() {
    require_qemu();
    use tinyconv::graph::{Rule, WriteOptions};
    // [fused, lower clamp, other requantization, odd quad count]
    let mut seen = [0usize; 4];
    let seeds = [
        (70, Rule::Tflite),
        (71, Rule::Tflite),
        (72, Rule::Tflite),
        (73, Rule::Onnx),
    ];
    for (k, (seed, rule)) in seeds.into_iter().enumerate() {
        let spec = tinyconv::testing::random_wide_dense_chain_graph(seed, rule);
        let bytes = spec
            .to_bytes_with(WriteOptions { wide_dense: true })
            .unwrap();
        let graph = Graph::parse(&bytes).unwrap();
        for n in graph.nodes().filter(|n| n.wide) {
            if n.fused && n.clamp.max == i8::MAX {
                seen[0] += 1;
                seen[1] += (n.clamp.min > i8::MIN) as usize;
            } else {
                seen[2] += 1;
            }
            seen[3] += (n.input.shape.len() % 8 == 4) as usize;
        }
        let n = graph.input().shape.len();
        let mut rng = tinyconv::testing::SplitMix64(0x31de + k as u64);
        let inputs: Vec<i8> = rng.bytes(n * 6).into_iter().map(|b| b as i8).collect();
        let mut arena = vec![0i8; graph.arena_len()];
        let mut expected = Vec::new();
        for x in inputs.chunks(n) {
            expected.extend_from_slice(graph.infer_int8(x, &mut arena).unwrap());
        }
        check_identical(&format!("wide{k}"), &bytes, &inputs, &expected);
    }
    eprintln!(
        "wide dense layers: {} fused ({} with a lower clamp), {} with another requantization, \
         {} with an odd quad count",
        seen[0], seen[1], seen[2], seen[3]
    );
    assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
}

fn mlperf(name: &str) -> (Vec<u8>, Vec<i8>) {
    let tflite = std::fs::read(shared().join(format!("{name}.int8.tflite"))).unwrap();
    let model = tinyconv_tflite::Model::parse(&tflite).unwrap();
    let spec = tinyconv_tflite::to_graph(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let inputs = std::fs::read(shared().join("golden").join(format!("{name}.inputs.i8"))).unwrap();
    // As `tflite/examples/mlperf_dir.rs` writes them: dense layers in the wide layout.
    let wide = tinyconv::graph::WriteOptions { wide_dense: true };
    (
        spec.to_bytes_with(wide).unwrap(),
        inputs.into_iter().map(|b| b as i8).collect(),
    )
}

fn golden(name: &str, reference: &str) -> Vec<i8> {
    let path = shared()
        .join("golden")
        .join(format!("{name}.outputs.{reference}.i8"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|b| b as i8)
        .collect()
}

fn mlperf_matches_cmsis_nn(name: &str) {
    require_qemu();
    let (model, inputs) = mlperf(name);
    check_identical(name, &model, &inputs, &golden(name, "cmsis-nn"));
}

#[test]
fn mlperf_ic_matches_cmsis_nn_in_qemu() {
    mlperf_matches_cmsis_nn("ic");
}

#[test]
fn mlperf_kws_matches_cmsis_nn_in_qemu() {
    mlperf_matches_cmsis_nn("kws");
}

#[test]
fn mlperf_ad_matches_cmsis_nn_in_qemu() {
    mlperf_matches_cmsis_nn("ad");
}

#[test]
fn mlperf_vww_matches_cmsis_nn_in_qemu() {
    mlperf_matches_cmsis_nn("vww");
}

#[test]
fn the_runner_reports_a_mismatch() {
    // Negative control: the TF reference interpreter rounds FULLY_CONNECTED once, so its `ad`
    // outputs differ from CMSIS-NN's (README: 3,582 of 10,240 bytes): the runner must say so.
    require_qemu();
    let (model, inputs) = mlperf("ad");
    let (out, _) = run(
        "ad-vs-tflite-ref",
        &model,
        &inputs,
        &golden("ad", "tflite-ref"),
    );
    assert_eq!(out.code, Some(1), "exit code\n{}", out.stdout);
    let r = result(&out.stdout);
    assert_eq!(r["correct"], "0");
    assert!(out.stdout.contains("MISMATCH"));
}
