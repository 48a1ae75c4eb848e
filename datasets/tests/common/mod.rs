//! Helpers shared by the integration tests: writing IDX files and images, reading the real
//! MNIST bytes directly (without the crate), checking error messages.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tinyconv_datasets::{Dataset, DatasetError, Options, load};

/// The real MNIST, gzip IDX, in the shared data folder beside the repository.
pub fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist")
}

/// A file of the real MNIST, gunzipped here with flate2 alone (not through the crate).
pub fn raw_mnist(name: &str) -> Vec<u8> {
    let gz = fs::read(mnist_dir().join(format!("{name}.gz"))).unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// An IDX images file: magic 0x0803, `count x rows x cols`.
pub fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

/// An IDX labels file: magic 0x0801.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A valid IDX directory of `rows x cols` images; pixel j of image i is `(i * 7 + j) % 251`.
pub fn write_idx(dir: &Path, rows: u32, cols: u32, train_labels: &[u8], test_labels: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    let px = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| (0..(rows * cols) as usize).map(move |j| ((i * 7 + j) % 251) as u8))
            .collect()
    };
    let (ntr, nte) = (train_labels.len(), test_labels.len());
    fs::write(
        dir.join("train-images-idx3-ubyte.gz"),
        gzip(&idx_images(ntr as u32, rows, cols, &px(ntr))),
    )
    .unwrap();
    fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx_labels(train_labels),
    )
    .unwrap();
    fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_images(nte as u32, rows, cols, &px(nte)),
    )
    .unwrap();
    fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gzip(&idx_labels(test_labels)),
    )
    .unwrap();
}

/// Write a gray PNG (`pixels` row-major, `h x w`).
pub fn write_gray_png(path: &Path, h: u32, w: u32, pixels: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_raw(w, h, pixels.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

/// Write an RGB image (format from the extension), `pixels` HWC.
pub fn write_rgb(path: &Path, h: u32, w: u32, pixels: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_raw(w, h, pixels.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

/// Load with default options plus `f`'s changes.
pub fn load_with(dir: &Path, f: impl FnOnce(&mut Options)) -> Result<Dataset, DatasetError> {
    let mut o = Options::default();
    f(&mut o);
    load(dir, &o)
}

/// The error loading `dir` gives, and its message, which must mention every `says`.
pub fn load_err(dir: &Path, options: &Options, says: &[&str]) -> DatasetError {
    let e = load(dir, options).expect_err("loading should fail");
    let msg = e.to_string();
    for s in says {
        assert!(msg.contains(s), "message lacks {s:?}: {msg}");
    }
    e
}
