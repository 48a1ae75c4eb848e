//! `tinyconv verify --firmware ELF`: the firmware, run in QEMU on the first test images, as the
//! referee's fifth engine — and a firmware built with another model is caught.

use std::path::PathBuf;

use tinyconv_tests::{build_firmware, repo};
use tinyconv_trainer::commands::verify_command;

/// Enough images to exercise every class, few enough to keep QEMU to seconds.
const IMAGES: usize = 300;

fn model() -> PathBuf {
    repo().join("models/mnist-cnn.tcm")
}

fn data() -> PathBuf {
    repo().join("../shared/data/mnist")
}

fn full_eval_build(name: &str, model: &std::path::Path) -> PathBuf {
    build_firmware(
        name,
        &["full-eval"],
        &[
            ("TINYCONV_MODEL", model.to_str().unwrap()),
            ("TINYCONV_EVAL_LIMIT", &IMAGES.to_string()),
        ],
    )
}

#[test]
fn verify_runs_the_firmware_in_qemu_and_finds_it_identical() {
    let elf = full_eval_build("verify-committed", &model());
    let v = verify_command(&model(), Some(&data()), Some(IMAGES), Some(&elf)).unwrap();
    println!("{}", v.table());
    let f = v.firmware.as_ref().expect("a firmware row");
    assert_eq!(f.run.images, IMAGES);
    assert!(f.identical_to_runtime, "{f:?}");
    assert_eq!(
        f.runtime_digest, v.runtime_logits_digest,
        "same images, same digest"
    );
    let runtime = v
        .engines
        .iter()
        .find(|e| e.engine == "runtime int8")
        .unwrap();
    assert_eq!(f.run.correct, runtime.correct);
    assert!(v.table().contains("firmware int8"));
    assert!(v.problems().is_empty(), "{:?}", v.problems());
}

#[test]
fn verify_catches_a_firmware_built_with_another_model() {
    let other = repo().join("target/verify-firmware-test/random-seed3.tcm");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    let bytes = tinyconv::testing::seed_network(3).to_bytes().unwrap();
    if std::fs::read(&other).ok() != Some(bytes.clone()) {
        std::fs::write(&other, &bytes).unwrap();
    }
    let elf = full_eval_build("verify-other-model", &other);
    let v = verify_command(&model(), Some(&data()), Some(IMAGES), Some(&elf)).unwrap();
    let f = v.firmware.as_ref().unwrap();
    assert!(!f.identical_to_runtime);
    let problems = v.problems().join("\n");
    assert!(
        problems.contains("firmware's logits differ") && problems.contains("TINYCONV_MODEL"),
        "{problems}"
    );
}
