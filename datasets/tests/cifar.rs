//! CIFAR-10 and CIFAR-100 binaries built here from known bytes.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use tinyconv_datasets::{DatasetError, Kind, Options, load};

const NAMES10: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";

/// One record: `labels`, then planes R (all `r`), G (all `g`), B (all `b`) with the given
/// (plane, pixel index, value) exceptions.
fn record(labels: &[u8], (r, g, b): (u8, u8, u8), marks: &[(usize, usize, u8)]) -> Vec<u8> {
    let mut planes = [vec![r; 1024], vec![g; 1024], vec![b; 1024]];
    for &(plane, index, value) in marks {
        planes[plane][index] = value;
    }
    [labels.to_vec(), planes.concat()].concat()
}

fn write_cifar10(dir: &Path, batches: usize) {
    fs::create_dir_all(dir).unwrap();
    for n in 1..=batches {
        let recs = [
            record(
                &[n as u8],
                (10, 20, 30),
                &[(0, 33, 200), (1, 33, 100), (2, 1023, 7)],
            ),
            record(&[9], (1, 2, 3), &[]),
        ];
        fs::write(dir.join(format!("data_batch_{n}.bin")), recs.concat()).unwrap();
    }
    fs::write(
        dir.join("test_batch.bin"),
        record(&[3], (4, 5, 6), &[(2, 32, 99)]),
    )
    .unwrap();
    fs::write(dir.join("batches.meta.txt"), NAMES10).unwrap();
}

#[test]
fn cifar10_planes_become_hwc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-bin");
    write_cifar10(&dir, 5);
    let d = load(&dir, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (d.kind, d.shape(), d.classes.len()),
        (Kind::Cifar10, (32, 32, 3), 10)
    );
    assert_eq!(
        (d.classes[0].as_str(), d.classes[9].as_str()),
        ("airplane", "truck")
    );
    assert_eq!(d.train.labels, [1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
    assert_eq!(d.test.labels, [3]);
    // By hand: HWC index of (y, x, c) is (y * 32 + x) * 3 + c. Pixel 33 of a plane is
    // (y 1, x 1): R 200 and G 100 marked, B the plane's 30. Pixel 1023 is (31, 31): B 7.
    let img = d.train.image(0);
    assert_eq!(&img[0..3], [10, 20, 30]);
    assert_eq!(&img[(32 + 1) * 3..][..3], [200, 100, 30]);
    assert_eq!(&img[(31 * 32 + 31) * 3..][..3], [10, 20, 7]);
    assert_eq!(&img[(31 * 32 + 30) * 3..][..3], [10, 20, 30]);
    // Test pixel 32 of B is (y 1, x 0).
    assert_eq!(&d.test.image(0)[32 * 3..][..3], [4, 5, 99]);
    assert_eq!(&d.test.image(0)[31 * 3..][..3], [4, 5, 6]);
}

#[test]
fn cifar100_uses_the_fine_label() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Coarse label first (0), then fine.
    fs::write(
        dir.join("train.bin"),
        [
            record(&[0, 4], (1, 2, 3), &[(1, 0, 77)]),
            record(&[0, 2], (0, 0, 0), &[]),
        ]
        .concat(),
    )
    .unwrap();
    fs::write(dir.join("test.bin"), record(&[1, 3], (9, 9, 9), &[])).unwrap();
    fs::write(
        dir.join("fine_label_names.txt"),
        "apple\naquarium_fish\nbaby\nbear\nbeaver\n",
    )
    .unwrap();
    let d = load(dir, &Options::default()).unwrap();
    assert_eq!(d.kind, Kind::Cifar100);
    assert_eq!(
        d.classes,
        ["apple", "aquarium_fish", "baby", "bear", "beaver"]
    );
    assert_eq!(
        (d.train.labels.as_slice(), d.test.labels.as_slice()),
        (&[4, 2][..], &[3][..])
    );
    assert_eq!(&d.train.image(0)[..6], [1, 77, 3, 1, 2, 3]);
}

#[test]
fn cifar_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_cifar10(dir, 2);
    // Negative control: the files as written load.
    assert_eq!(load(dir, &Options::default()).unwrap().train.len(), 4);

    let good = fs::read(dir.join("data_batch_2.bin")).unwrap();
    fs::write(dir.join("data_batch_2.bin"), &good[..good.len() - 1]).unwrap();
    let e = load_err(
        dir,
        &Options::default(),
        &[
            "data_batch_2.bin: 6145 bytes",
            "3073-byte records",
            "planes R, G, B",
        ],
    );
    assert!(
        matches!(e, DatasetError::RecordLength { record: 3073, .. }),
        "{e}"
    );
    fs::write(dir.join("data_batch_2.bin"), &good).unwrap();

    fs::write(dir.join("test_batch.bin"), record(&[10], (0, 0, 0), &[])).unwrap();
    load_err(
        dir,
        &Options::default(),
        &[
            "test_batch.bin: label 10 of record 0",
            "10 classes",
            "batches.meta.txt",
        ],
    );
    fs::write(dir.join("test_batch.bin"), b"").unwrap();
    load_err(
        dir,
        &Options::default(),
        &["test_batch.bin: holds no images"],
    );
    fs::remove_file(dir.join("test_batch.bin")).unwrap();
    load_err(
        dir,
        &Options::default(),
        &["missing test_batch.bin", "cifar10"],
    );
    write_cifar10(dir, 2);

    fs::write(dir.join("batches.meta.txt"), "only-one\n").unwrap();
    load_err(
        dir,
        &Options::default(),
        &["batches.meta.txt: 1 classes", "2 to 1000"],
    );
    fs::remove_file(dir.join("batches.meta.txt")).unwrap();
    load_err(dir, &Options::default(), &["missing batches.meta.txt"]);
    write_cifar10(dir, 2);

    fs::rename(dir.join("data_batch_2.bin"), dir.join("data_batch_3.bin")).unwrap();
    load_err(
        dir,
        &Options::default(),
        &["has data_batch_3.bin but not data_batch_2.bin"],
    );

    let c100 = tmp.path().join("c100");
    fs::create_dir(&c100).unwrap();
    fs::write(c100.join("train.bin"), vec![0u8; 3073]).unwrap();
    fs::write(c100.join("test.bin"), vec![0u8; 3074]).unwrap();
    fs::write(c100.join("fine_label_names.txt"), "a\nb\n").unwrap();
    load_err(
        &c100,
        &Options::default(),
        &[
            "train.bin: 3073 bytes",
            "3074-byte records",
            "coarse and fine",
        ],
    );
}
