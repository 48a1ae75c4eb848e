//! Detecting the kind, forcing it, and the option checks.

mod common;

use std::fs;

use common::*;
use tinyconv_datasets::{DatasetError, Kind, Options, load};

#[test]
fn each_layout_is_detected_and_can_be_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    write_idx(&idx, 2, 2, &[0, 1], &[1]);
    let folder = tmp.path().join("folder");
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            write_gray_png(
                &folder.join(format!("{split}/{class}/0.png")),
                2,
                2,
                &[1, 2, 3, 4],
            );
        }
    }
    let cifar = tmp.path().join("cifar");
    fs::create_dir(&cifar).unwrap();
    fs::write(cifar.join("data_batch_1.bin"), vec![1u8; 3073]).unwrap();
    fs::write(cifar.join("test_batch.bin"), vec![0u8; 3073]).unwrap();
    fs::write(cifar.join("batches.meta.txt"), "a\nb\n").unwrap();
    for (dir, kind) in [
        (&idx, Kind::Idx),
        (&folder, Kind::ImageFolder),
        (&cifar, Kind::Cifar10),
    ] {
        assert_eq!(load(dir, &Options::default()).unwrap().kind, kind);
        assert_eq!(load_with(dir, |o| o.kind = Some(kind)).unwrap().kind, kind);
    }
    // Forcing the wrong kind is an error saying what that kind lacks, not a fallback.
    load_err(
        &idx,
        &Options {
            kind: Some(Kind::Cifar10),
            ..Default::default()
        },
        &["missing data_batch_1.bin", "cifar10"],
    );
    load_err(
        &cifar,
        &Options {
            kind: Some(Kind::Idx),
            ..Default::default()
        },
        &["missing train-images-idx3-ubyte"],
    );
    load_err(
        &cifar,
        &Options {
            kind: Some(Kind::Cifar100),
            ..Default::default()
        },
        &["missing train.bin", "cifar100"],
    );
    load_err(
        &idx,
        &Options {
            kind: Some(Kind::ImageFolder),
            ..Default::default()
        },
        &["missing train/"],
    );

    // Files of two kinds: ambiguous unless forced.
    fs::create_dir(idx.join("train")).unwrap();
    let e = load_err(
        &idx,
        &Options::default(),
        &["several dataset kinds (idx, folder)", "--data-kind"],
    );
    assert!(matches!(e, DatasetError::Ambiguous { .. }), "{e}");
    assert_eq!(
        load_with(&idx, |o| o.kind = Some(Kind::Idx)).unwrap().kind,
        Kind::Idx
    );
}

#[test]
fn nothing_recognised_says_what_was_found_and_what_is_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("stuff");
    fs::create_dir_all(dir.join("images")).unwrap();
    fs::write(dir.join("labels.csv"), "x").unwrap();
    let e = load_err(
        &dir,
        &Options::default(),
        &[
            "no dataset recognised; it holds images/, labels.csv.",
            "idx: train-images-idx3-ubyte",
            "folder: train/<class>/*.png|jpg|jpeg",
            "cifar10: data_batch_1.bin .. data_batch_5.bin, test_batch.bin, batches.meta.txt",
            "cifar100: train.bin, test.bin, fine_label_names.txt",
        ],
    );
    assert!(
        matches!(e, DatasetError::Unrecognised { hint: None, .. }),
        "{e}"
    );
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    load_err(&empty, &Options::default(), &["it holds nothing"]);

    // A dataset one level down is pointed at.
    let outer = tmp.path().join("outer");
    write_idx(&outer.join("mnist"), 2, 2, &[0, 1], &[1]);
    load_err(
        &outer,
        &Options::default(),
        &["Its subdirectory", "outer/mnist looks like a dataset"],
    );
}

#[test]
fn option_checks() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx(tmp.path(), 2, 2, &[0, 1], &[1]);
    let e = load_err(
        tmp.path(),
        &Options {
            val_split: Some(0.2),
            ..Default::default()
        },
        &["--val-split", "idx dataset has its own test split"],
    );
    assert!(
        matches!(
            e,
            DatasetError::ValSplitNotApplicable {
                kind: Kind::Idx,
                ..
            }
        ),
        "{e}"
    );
    for bad in [0.0, 1.0, -0.5, f32::NAN] {
        load_err(
            tmp.path(),
            &Options {
                val_split: Some(bad),
                ..Default::default()
            },
            &["strictly between 0 and 1"],
        );
    }
    for bad in [(0, 4, 1), (4, 0, 3), (4, 4, 2), (4, 4, 4)] {
        load_err(
            tmp.path(),
            &Options {
                input: Some(bad),
                ..Default::default()
            },
            &["--input", "channels 1 or 3"],
        );
    }
    assert_eq!("cifar100".parse::<Kind>().unwrap(), Kind::Cifar100);
    assert_eq!("folder".parse::<Kind>().unwrap(), Kind::ImageFolder);
    assert!(
        "mnist"
            .parse::<Kind>()
            .unwrap_err()
            .contains("idx, folder, cifar10, cifar100")
    );
}
