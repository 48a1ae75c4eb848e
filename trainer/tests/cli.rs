//! The `tinyconv` binary end to end: a smoke training run through quantization, export and the
//! referee; training on an IDX dataset it has never seen; `inspect`, `eval` and `predict` on
//! good and damaged files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tinyconv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyconv"))
        .args(args)
        .output()
        .expect("run tinyconv")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist")
}

fn committed_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/mnist-cnn.tcm")
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// `train --limit 2000 --epochs 1`: trains, quantizes, exports, evaluates through the runtime
/// and cross-checks against tract; the int8 model must be far above chance (10%) on the test
/// set, which the training never saw.
#[test]
fn smoke_run_trains_quantizes_exports_and_verifies() {
    let out = tempfile::tempdir().unwrap();
    let o = tinyconv(&[
        "train",
        "--data",
        mnist().to_str().unwrap(),
        "--limit",
        "2000",
        "--epochs",
        "1",
        "--batch-size",
        "100",
        "--calibration",
        "500",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "mnist-cnn.tcm",
        "mnist-cnn.onnx",
        "mnist-cnn.int8.onnx",
        "report.json",
        "metrics.csv",
        "model_float.bpk",
        "training_curves.png",
        "confusion_float.png",
        "confusion_int8.png",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing: {}", text(&o));
    }
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let r = report(out.path());
    let int8 = r["int8_accuracy"].as_f64().unwrap();
    assert!(
        int8 > 0.5,
        "int8 accuracy {int8} after a smoke run (chance is 0.1)"
    );
    assert!((r["float_accuracy"].as_f64().unwrap() - int8).abs() < 0.05);
    assert_eq!(r["verification"]["int8_identical_images"], 10_000);
    assert_eq!(r["training_images"], 2000);

    // eval agrees with the report.
    let model = out.path().join("mnist-cnn.tcm");
    let o = tinyconv(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        mnist().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("agrees"), "{}", text(&o));
}

/// A dataset in MNIST's IDX layout that is not MNIST: each class is a bar at its own height,
/// raw (not gzip) files. Training must work on it unchanged.
#[test]
fn trains_on_an_unseen_idx_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, magic: u32, dims: &[u32], data: &[u8]| {
        let mut b = magic.to_be_bytes().to_vec();
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend_from_slice(data);
        std::fs::write(dir.path().join(name), b).unwrap();
    };
    let make = |n: usize, seed: usize| {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for i in 0..n {
            let class = (i * 7 + seed) % 10;
            let mut img = [0u8; 784];
            let row = 3 + class * 2;
            for x in 4..24 {
                img[row * 28 + x] = 255;
                img[(row + 1) * 28 + x] = 128 + ((i * 31 + x) % 100) as u8;
            }
            images.extend_from_slice(&img);
            labels.push(class as u8);
        }
        (images, labels)
    };
    let (ti, tl) = make(600, 0);
    let (vi, vl) = make(200, 3);
    write("train-images-idx3-ubyte", 2051, &[600, 28, 28], &ti);
    write("train-labels-idx1-ubyte", 2049, &[600], &tl);
    write("t10k-images-idx3-ubyte", 2051, &[200, 28, 28], &vi);
    write("t10k-labels-idx1-ubyte", 2049, &[200], &vl);
    let out = dir.path().join("out");
    let o = tinyconv(&[
        "train",
        "--data",
        dir.path().to_str().unwrap(),
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--calibration",
        "100",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r = report(&out);
    assert_eq!(r["test_images"], 200);
    assert!(
        r["int8_accuracy"].as_f64().unwrap() > 0.5,
        "{}",
        r["int8_accuracy"]
    );
}

#[test]
fn inspect_prints_the_layer_table_and_rejects_damage() {
    let model = committed_model();
    let o = tinyconv(&["inspect", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("831398 params") && t.contains("8002696 MACs"),
        "{t}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&model).unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "flipped.tcm",
            {
                let mut b = bytes.clone();
                b[5000] ^= 0x40;
                b
            },
            "checksum mismatch",
        ),
        (
            "truncated.tcm",
            bytes[..bytes.len() / 2].to_vec(),
            "truncated",
        ),
        (
            "magic.tcm",
            {
                let mut b = bytes.clone();
                b[..4].copy_from_slice(b"PK\x03\x04");
                b
            },
            "not a tinyconv model file",
        ),
        ("empty.tcm", Vec::new(), "truncated"),
    ];
    for (name, b, says) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, b).unwrap();
        let o = tinyconv(&["inspect", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o)); // an error, not a panic (101)
        assert!(text(&o).contains(says), "{name}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
    let o = tinyconv(&["inspect", dir.path().join("missing.tcm").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn predict_on_a_test_image_and_a_png() {
    let model = committed_model();
    let o = tinyconv(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--index",
        "0",
        "--data",
        mnist().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("class 7 (label 7: correct)"),
        "{}",
        text(&o)
    );

    // A user's image: a large, dark-on-light, RGB "1" — inverted, cropped, scaled and centred.
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("one.png");
    let img = image::RgbImage::from_fn(300, 200, |x, y| {
        if (140..165).contains(&x) && (30..170).contains(&y) {
            image::Rgb([20, 20, 30])
        } else {
            image::Rgb([240, 240, 235])
        }
    });
    img.save(&png).unwrap();
    let o = tinyconv(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("class 1"), "{}", text(&o));

    let o = tinyconv(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        dir.path().join("none.png").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
