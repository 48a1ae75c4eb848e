//! IDX: the real MNIST, any size and class count, and every malformed-file error.

mod common;

use std::fs;

use common::*;
use tinyconv_datasets::{DatasetError, Kind, Options, load};

#[test]
fn real_mnist_is_the_bytes_of_the_files() {
    let d = load(&mnist_dir(), &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (d.kind, d.name.as_str(), d.shape()),
        (Kind::Idx, "mnist", (28, 28, 1))
    );
    assert_eq!(
        d.classes,
        (0..10).map(|c| c.to_string()).collect::<Vec<_>>()
    );
    // Compared with the files as gunzipped here: 16-byte image and 8-byte label headers.
    let (ti, tl) = (
        raw_mnist("train-images-idx3-ubyte"),
        raw_mnist("train-labels-idx1-ubyte"),
    );
    let (vi, vl) = (
        raw_mnist("t10k-images-idx3-ubyte"),
        raw_mnist("t10k-labels-idx1-ubyte"),
    );
    assert_eq!(d.train.images, ti[16..]);
    assert_eq!(d.test.images, vi[16..]);
    assert!(
        d.train
            .labels
            .iter()
            .map(|&l| l as u8)
            .eq(tl[8..].iter().copied())
    );
    assert!(
        d.test
            .labels
            .iter()
            .map(|&l| l as u8)
            .eq(vl[8..].iter().copied())
    );
    assert_eq!((d.train.len(), d.test.len()), (60_000, 10_000));
    // The well-known class counts of MNIST.
    assert_eq!(
        d.train.histogram(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        d.test.histogram(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(d.train.image(1), &ti[16 + 784..16 + 2 * 784]);
    let t = d.train.truncated(3);
    assert_eq!((t.len(), t.images.as_slice()), (3, &ti[16..16 + 3 * 784]));

    // The fingerprint is FNV-1a of the pixels then one byte per label, as the trainer's is;
    // computed independently here.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in ti[16..].iter().chain(&tl[8..]) {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    assert_eq!(
        d.train.fingerprint(),
        format!("60000 images, fnv1a64 {h:016x}")
    );
    // Negative control: one pixel changed changes it.
    let mut other = d.train.clone();
    other.images[500] ^= 1;
    assert_ne!(other.fingerprint(), d.train.fingerprint());
}

#[test]
fn any_size_and_class_count_raw_or_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-idx");
    write_idx(&dir, 5, 7, &[0, 2, 1, 2], &[1, 0]);
    let d = load(&dir, &Options::default()).unwrap();
    assert_eq!(
        (d.kind, d.name.as_str(), d.shape()),
        (Kind::Idx, "tiny-idx", (5, 7, 1))
    );
    assert_eq!(d.classes, ["0", "1", "2"]);
    assert_eq!(d.train.labels, [0, 2, 1, 2]);
    assert_eq!(d.train.histogram(), [1, 1, 2]);
    // Pixel j of image i is (i * 7 + j) % 251 (see write_idx).
    assert_eq!(d.train.image(2)[3], (2 * 7 + 3) as u8);
    assert_eq!(d.test.image(1)[34], (7 + 34) as u8);
}

#[test]
fn four_dimensional_idx_with_three_channels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_idx(dir, 2, 2, &[0, 1], &[1]);
    let images = |n: u32| {
        let mut v = vec![0, 0, 8, 4];
        for d in [n, 2, 2, 3] {
            v.extend_from_slice(&u32::to_be_bytes(d));
        }
        v.extend((0..n * 12).map(|i| i as u8));
        v
    };
    fs::remove_file(dir.join("train-images-idx3-ubyte.gz")).unwrap();
    fs::write(dir.join("train-images-idx3-ubyte"), images(2)).unwrap();
    fs::write(dir.join("t10k-images-idx3-ubyte"), images(1)).unwrap();
    let d = load(dir, &Options::default()).unwrap();
    assert_eq!(d.shape(), (2, 2, 3));
    assert_eq!(d.train.image(1), (12..24).collect::<Vec<u8>>());
}

/// A valid directory, with one file replaced by `bytes`.
fn with_file(name: &str, bytes: &[u8]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_idx(tmp.path(), 3, 3, &[0, 1, 1], &[1, 0]);
    for suffix in ["", ".gz"] {
        let _ = fs::remove_file(tmp.path().join(format!("{name}{suffix}")));
    }
    fs::write(tmp.path().join(name), bytes).unwrap();
    tmp
}

#[test]
fn malformed_files_are_errors_naming_them() {
    let o = Options::default();
    let good = idx_images(3, 3, 3, &[0; 27]);
    // Negative control: the unmodified file loads.
    let tmp = with_file("train-images-idx3-ubyte", &good);
    assert!(load(tmp.path(), &o).is_ok());

    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "train-images-idx3-ubyte",
            vec![0, 0, 8, 1, 0, 0, 0, 0],
            vec!["bad IDX magic number 0x00000801", "images"],
        ),
        (
            "train-labels-idx1-ubyte",
            good.clone(),
            vec!["bad IDX magic number 0x00000803", "labels"],
        ),
        (
            "train-images-idx3-ubyte",
            good[..10].to_vec(),
            vec!["truncated: header: need 16 bytes, file has 10"],
        ),
        (
            "train-images-idx3-ubyte",
            good[..40].to_vec(),
            vec!["truncated: image data: need 43 bytes, file has 40"],
        ),
        (
            "train-images-idx3-ubyte",
            [&good[..], &[9, 9]].concat(),
            vec!["2 unexpected trailing bytes after 43"],
        ),
        (
            "train-images-idx3-ubyte",
            idx_images(3, 0, 3, &[]),
            vec!["images are 0x3"],
        ),
        (
            "train-images-idx3-ubyte",
            idx_images(0, 3, 3, &[]),
            vec!["holds no images"],
        ),
        (
            "t10k-labels-idx1-ubyte",
            idx_labels(&[1, 0, 1]),
            vec!["has 2 images but", "has 3 labels"],
        ),
        (
            "t10k-images-idx3-ubyte",
            idx_images(2, 4, 3, &[0; 24]),
            vec!["holds 3x3x1 images but", "holds 4x3x1", "--input"],
        ),
    ];
    for (name, bytes, says) in cases {
        let tmp = with_file(name, &bytes);
        let e = load(tmp.path(), &o).expect_err(name);
        let msg = e.to_string();
        assert!(msg.contains(name), "{msg}");
        for s in says {
            assert!(msg.contains(s), "{s:?} not in {msg}");
        }
    }
}

#[test]
fn class_count_must_be_2_to_1000() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx(tmp.path(), 2, 2, &[0, 0], &[0]);
    let e = load_err(
        tmp.path(),
        &Options::default(),
        &["1 classes", "2 to 1000", "largest label"],
    );
    assert!(
        matches!(e, DatasetError::ClassCount { found: 1, .. }),
        "{e}"
    );
    // Negative control: one label 1 in the test split makes it two classes.
    write_idx(tmp.path(), 2, 2, &[0, 0], &[1]);
    assert_eq!(
        load(tmp.path(), &Options::default()).unwrap().classes.len(),
        2
    );
}

#[test]
fn gzip_damage_and_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx(tmp.path(), 3, 3, &[0, 1], &[1]);
    let path = tmp.path().join("train-images-idx3-ubyte.gz");
    let gz = fs::read(&path).unwrap();
    fs::write(&path, &gz[..gz.len() / 2]).unwrap();
    load_err(
        tmp.path(),
        &Options::default(),
        &["train-images-idx3-ubyte.gz", "corrupt gzip"],
    );

    fs::remove_file(&path).unwrap();
    let e = load_err(
        tmp.path(),
        &Options::default(),
        &[
            "missing train-images-idx3-ubyte (neither raw nor .gz)",
            "idx",
        ],
    );
    assert!(
        matches!(
            e,
            DatasetError::MissingFile {
                kind: Kind::Idx,
                ..
            }
        ),
        "{e}"
    );
}
