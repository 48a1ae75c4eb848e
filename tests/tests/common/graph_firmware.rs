#![allow(dead_code)] // each test that includes this module uses a part of it
//! The default firmware binary on a v2 model in QEMU, for the tests that run one
//! (`firmware_any_model.rs`, `spec_presets.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tinyconv::graph::Graph;
use tinyconv_tests::{build_firmware_bin, repo};
use tinyconv_trainer::firmware::run_qemu;

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo().join("target"),
    }
}

/// Writes `bytes` to `target/firmware-any-model/NAME.tcm` (only on change, so an unchanged model
/// does not rebuild the firmware).
pub fn model_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = target_dir().join("firmware-any-model");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.tcm"));
    if std::fs::read(&path).ok().as_deref() != Some(bytes) {
        std::fs::write(&path, bytes).unwrap();
    }
    path
}

/// Fields of the `RESULT model=...` line.
pub fn result(out: &str) -> std::collections::BTreeMap<String, String> {
    let line = out
        .lines()
        .rfind(|l| l.starts_with("RESULT model="))
        .unwrap_or_else(|| panic!("no RESULT line:\n{out}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Builds the default binary for `model` and runs it; checks that every output matched.
pub fn run_identical(name: &str, model: &[u8], envs: &[(&str, &str)]) -> String {
    let path = model_file(name, model);
    let mut all = vec![("TINYCONV_MODEL", path.to_str().unwrap())];
    all.extend_from_slice(envs);
    let elf = build_firmware_bin("tinyconv-firmware", name, &[], &all);
    let out = run_qemu(&elf, Duration::from_secs(600)).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{}", out.stdout);
    let r = result(&out.stdout);
    let graph = Graph::parse(model).unwrap();
    assert_eq!(out.code, Some(0), "{name}: exit code\n{}", out.stdout);
    assert_eq!(r["model"], name);
    assert!(r["images"].parse::<usize>().unwrap() > 0);
    assert_eq!(
        r["correct"], r["images"],
        "{name}: outputs identical to the host's"
    );
    assert_eq!(r["arena"], graph.arena_len().to_string());
    assert_eq!(r["macs"], graph.macs().to_string());
    out.stdout
}

/// The host runtime's accuracy on the images the self-test takes (evenly spread over the test
/// split: image `k * len / count`), computed here from the dataset, is the firmware's.
pub fn host_accuracy_is_the_firmwares(model: &[u8], data: &Path, images: usize, out: &str) {
    let graph = Graph::parse(model).unwrap();
    let s = graph.input().shape;
    let options = tinyconv_datasets::Options {
        input: Some((s.h, s.w, s.c)),
        ..Default::default()
    };
    let test = tinyconv_datasets::load(data, &options).unwrap().test;
    let mut arena = vec![0i8; graph.arena_len()];
    let mut correct = 0;
    for k in 0..images {
        let i = k * test.len() / images;
        let y = graph.infer_pixels(test.image(i), &mut arena).unwrap();
        let top = tinyconv_trainer::evaluate::argmax(y);
        correct += (top == test.labels[i] as usize) as usize;
    }
    let line = format!("accuracy: {correct}/{images} ");
    assert!(out.contains(&line), "expected `{line}`:\n{out}");
}
