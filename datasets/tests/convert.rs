//! Resizing and gray/RGB conversion against values computed by hand.

mod common;

use std::fs;

use common::*;
use tinyconv_datasets::{Options, convert_pixels, load};

/// Triangle filter, 4 -> 2 columns (scale 2, support 2 source pixels): output 0 is centred at
/// source 0.5 and weighs sources 0, 1, 2 by 0.75, 0.75, 0.25 (normalised by 1.75); output 1 is
/// centred at 2.5 and weighs 1, 2, 3 by 0.25, 0.75, 0.75. For row [0, 70, 140, 210]:
/// (52.5 + 35) / 1.75 = 50 and (17.5 + 105 + 157.5) / 1.75 = 160. A 1-row source stretched to
/// 3 rows repeats its row.
#[test]
fn shrink_by_hand() {
    let out = convert_pixels(&[0, 70, 140, 210], (1, 4, 1), (3, 2, 1));
    assert_eq!(out, [50, 160, 50, 160, 50, 160]);
    // Negative control: nearest-neighbour or plain pair averaging would give other values.
    assert_ne!(out[..2], [35, 175]);
}

/// Triangle filter, 2 -> 4 columns (scale 1/2, support 1): outputs centred at source
/// -0.25, 0.25, 0.75, 1.25 (in pixel-centre coordinates) take a, 0.75a + 0.25b,
/// 0.25a + 0.75b, b. For [0, 200]: 0, 50, 150, 200.
#[test]
fn enlarge_by_hand() {
    assert_eq!(
        convert_pixels(&[0, 200], (1, 2, 1), (1, 4, 1)),
        [0, 50, 150, 200]
    );
    // Same size: untouched.
    assert_eq!(
        convert_pixels(&[3, 1, 4, 1], (2, 2, 1), (2, 2, 1)),
        [3, 1, 4, 1]
    );
}

/// RGB to gray is the `image` crate's luma, 0.2126 R + 0.7152 G + 0.0722 B rounded:
/// (200, 100, 50) -> 42.52 + 71.52 + 3.61 = 117.65 -> 118; (10, 20, 30) -> 2.126 + 14.304 +
/// 2.166 = 18.596 -> 19. Gray to RGB replicates.
#[test]
fn channels_by_hand() {
    let gray = convert_pixels(&[200, 100, 50, 10, 20, 30], (1, 2, 3), (1, 2, 1));
    assert_eq!(gray, [118, 19]);
    // Negative control: Rec. 601 weights (0.299, 0.587, 0.114) would give 124.
    assert_ne!(gray[0], 124);
    assert_eq!(
        convert_pixels(&[77, 5], (1, 2, 1), (1, 2, 3)),
        [77, 77, 77, 5, 5, 5]
    );
    // Both at once: resize in gray, then replicate (see shrink_by_hand).
    assert_eq!(
        convert_pixels(&[0, 70, 140, 210], (1, 4, 1), (1, 2, 3)),
        [50, 50, 50, 160, 160, 160]
    );
}

#[test]
fn input_option_applies_to_every_kind() {
    let tmp = tempfile::tempdir().unwrap();
    // IDX: pixel j of image i is (i * 7 + j) % 251 (common::write_idx); image 0 of 1x4 is
    // [0, 1, 2, 3] -> 2 columns: (0.75 + 0.5) / 1.75 = 0.71 -> 1, (0.25 + 1.5 + 2.25) / 1.75
    // = 2.29 -> 2; replicated to 3 channels.
    let idx = tmp.path().join("idx");
    write_idx(&idx, 1, 4, &[0, 1], &[1]);
    let d = load_with(&idx, |o| o.input = Some((1, 2, 3))).unwrap();
    assert_eq!(d.shape(), (1, 2, 3));
    assert_eq!(d.train.image(0), [1, 1, 1, 2, 2, 2]);

    // Image folder of mixed sizes and kinds: each image converted on its own.
    let dir = tmp.path().join("folder");
    write_gray_png(&dir.join("train/a/0.png"), 1, 4, &[0, 70, 140, 210]);
    write_rgb(
        &dir.join("train/b/0.png"),
        1,
        2,
        &[200, 100, 50, 10, 20, 30],
    );
    write_gray_png(&dir.join("test/a/0.png"), 1, 2, &[0, 200]);
    write_gray_png(&dir.join("test/b/0.png"), 1, 2, &[9, 9]);
    let o = Options {
        input: Some((1, 2, 1)),
        ..Default::default()
    };
    let d = load(&dir, &o).unwrap();
    assert_eq!(d.shape(), (1, 2, 1));
    assert_eq!(d.train.images, [50, 160, 118, 19]);
    assert_eq!(d.test.images, [0, 200, 9, 9]);
    // Without --input the same folder is an error (mixed sizes).
    assert!(load(&dir, &Options::default()).is_err());

    // CIFAR: 32x32 of one color to 2x2 gray stays that color's luma (all weights sum to 1).
    let cifar = tmp.path().join("cifar");
    fs::create_dir(&cifar).unwrap();
    let rec = [vec![1u8], vec![200; 1024], vec![100; 1024], vec![50; 1024]].concat();
    fs::write(cifar.join("data_batch_1.bin"), &rec).unwrap();
    fs::write(cifar.join("test_batch.bin"), &rec).unwrap();
    fs::write(cifar.join("batches.meta.txt"), "a\nb\n").unwrap();
    let d = load_with(&cifar, |o| o.input = Some((2, 2, 1))).unwrap();
    assert_eq!(d.train.images, [118; 4]);
}
