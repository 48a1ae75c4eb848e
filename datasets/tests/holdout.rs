//! The validation split of an image folder without test/: stratified, disjoint, complete,
//! reproducible.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use tinyconv_datasets::{Dataset, DatasetError, Options};

/// Classes of 10, 7 and 3 images; every image is unique: 2x2 gray, pixels
/// [class, index, 0, 255].
fn write_folder(dir: &Path) {
    for (class, n) in [10u8, 7, 3].into_iter().enumerate() {
        for i in 0..n {
            write_gray_png(
                &dir.join(format!("train/c{class}/{i:02}.png")),
                2,
                2,
                &[class as u8, i, 0, 255],
            );
        }
    }
}

fn split_with(dir: &Path, seed: u64) -> Dataset {
    load_with(dir, |o| {
        o.val_split = Some(0.3);
        o.seed = seed;
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn images(split: &tinyconv_datasets::Split) -> Vec<Vec<u8>> {
    (0..split.len()).map(|i| split.image(i).to_vec()).collect()
}

#[test]
fn stratified_disjoint_complete_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());
    let d = split_with(tmp.path(), 7);
    // round(0.3 * n) per class: 3 of 10, 2 of 7, 1 of 3.
    assert_eq!(d.test.histogram(), [3, 2, 1]);
    assert_eq!(d.train.histogram(), [7, 5, 2]);
    let (train, test) = (images(&d.train), images(&d.test));
    let train_set: BTreeSet<_> = train.iter().cloned().collect();
    let test_set: BTreeSet<_> = test.iter().cloned().collect();
    assert!(train_set.is_disjoint(&test_set));
    let all: BTreeSet<Vec<u8>> = train_set.union(&test_set).cloned().collect();
    let expected: BTreeSet<Vec<u8>> = [10u8, 7, 3]
        .iter()
        .enumerate()
        .flat_map(|(c, &n)| (0..n).map(move |i| vec![c as u8, i, 0, 255]))
        .collect();
    assert_eq!(all, expected);
    // Every image keeps its label (pixel 0 is its class).
    for (split, imgs) in [(&d.train, &train), (&d.test, &test)] {
        for (img, &label) in imgs.iter().zip(&split.labels) {
            assert_eq!(img[0] as u16, label);
        }
    }
    // Same seed, same split; another seed, another split (negative control).
    assert_eq!(split_with(tmp.path(), 7).test.images, d.test.images);
    let others: Vec<_> = (8..12)
        .map(|s| split_with(tmp.path(), s).test.images)
        .collect();
    assert!(
        others.iter().any(|o| *o != d.test.images),
        "the seed changes nothing"
    );
}

#[test]
fn a_class_too_small_to_split() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());
    for i in 1..3 {
        fs::remove_file(tmp.path().join(format!("train/c2/{i:02}.png"))).unwrap();
    }
    let e = load_err(
        tmp.path(),
        &Options {
            val_split: Some(0.3),
            ..Default::default()
        },
        &["train/c2: 1 image(s)", "at least 2"],
    );
    assert!(matches!(e, DatasetError::TooFewToSplit(_, 1)), "{e}");
}
