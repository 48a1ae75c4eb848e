//! Writing a dataset as an image folder and loading it back.

mod common;

use std::fs;

use common::*;
use tinyconv_datasets::{Options, Split, load, write_image_folder};

/// `split`'s first `n` images regrouped as an image folder orders them: by class, then index.
fn class_grouped(split: &Split, n: usize) -> Split {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (split.labels[i], i));
    split.select(&order)
}

#[test]
fn mnist_and_rgb_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let mnist = load(&mnist_dir(), &Options::default()).unwrap();
    let out = tmp.path().join("mnist-folder");
    write_image_folder(&mnist, &out, Some(500)).unwrap();
    let back = load(&out, &Options::default()).unwrap();
    assert_eq!(
        (back.shape(), back.classes.clone()),
        (mnist.shape(), mnist.classes.clone())
    );
    assert_eq!(back.train, class_grouped(&mnist.train, 500));
    assert_eq!(back.test, class_grouped(&mnist.test, 500));
    // No temporary file is left behind.
    assert!(
        fs::read_dir(out.join("train/3")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.'))
    );
    // An existing directory is not written into.
    let e = write_image_folder(&mnist, &out, Some(1)).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    // A limit leaving a class without images is refused before anything is written: the
    // first five MNIST training labels are 5, 0, 4, 1, 9, so 2 is the first class missing.
    let small = tmp.path().join("too-small");
    let e = write_image_folder(&mnist, &small, Some(5)).unwrap_err();
    assert!(
        e.to_string()
            .contains("class \"2\" has no image among the 5 train images"),
        "{e}"
    );
    assert!(!small.exists());

    // RGB: CIFAR-format records of varied pixels.
    let cifar = tmp.path().join("cifar");
    fs::create_dir(&cifar).unwrap();
    let recs: Vec<u8> = (0..6u8)
        .flat_map(|r| {
            [
                vec![r % 3],
                (0..3072).map(|i| (i as u8).wrapping_mul(r + 1)).collect(),
            ]
            .concat()
        })
        .collect();
    fs::write(cifar.join("data_batch_1.bin"), &recs).unwrap();
    fs::write(cifar.join("test_batch.bin"), &recs[..3073 * 3]).unwrap();
    fs::write(cifar.join("batches.meta.txt"), "x\ny\nz\n").unwrap();
    let d = load(&cifar, &Options::default()).unwrap();
    let out = tmp.path().join("rgb-folder");
    write_image_folder(&d, &out, None).unwrap();
    let back = load(&out, &Options::default()).unwrap();
    assert_eq!(back.shape(), (32, 32, 3));
    assert_eq!(back.train, class_grouped(&d.train, 6));
    assert_eq!(back.test, class_grouped(&d.test, 3));
    // Negative control: the regrouping matters (the records are not in class order).
    assert_ne!(back.train.labels, d.train.labels);
}
