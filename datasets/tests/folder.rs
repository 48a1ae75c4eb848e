//! Image folders: real MNIST written as PNGs reads back exactly; generated RGB PNG and JPEG
//! folders; and every error of the layout.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use tinyconv_datasets::{DatasetError, Kind, Options, load};

/// How many real MNIST images each split of the PNG folder gets.
const TRAIN_N: usize = 1200;
const TEST_N: usize = 300;

#[test]
fn real_mnist_pngs_read_back_exactly() {
    let mnist = load(&mnist_dir(), &Options::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist-png");
    for (split, data, n) in [
        ("train", &mnist.train, TRAIN_N),
        ("test", &mnist.test, TEST_N),
    ] {
        for i in 0..n {
            let path = dir.join(format!("{split}/{}/{i:05}.png", data.labels[i]));
            write_gray_png(&path, 28, 28, data.image(i));
        }
    }
    let d = load(&dir, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (d.kind, d.name.as_str(), d.shape()),
        (Kind::ImageFolder, "mnist-png", (28, 28, 1))
    );
    assert_eq!(
        d.classes,
        (0..10).map(|c| c.to_string()).collect::<Vec<_>>()
    );

    // Expected, from the IDX bytes read directly: class by class (folder names sort as the
    // digits do), within a class in file-name (= index) order.
    for (raw_images, raw_labels, split, n) in [
        (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            &d.train,
            TRAIN_N,
        ),
        (
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
            &d.test,
            TEST_N,
        ),
    ] {
        let (images, labels) = (raw_mnist(raw_images), raw_mnist(raw_labels));
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (labels[8 + i], i));
        let expected: Vec<u8> = order
            .iter()
            .flat_map(|&i| images[16 + i * 784..16 + (i + 1) * 784].to_vec())
            .collect();
        let expected_labels: Vec<u16> = order.iter().map(|&i| labels[8 + i] as u16).collect();
        assert_eq!(split.len(), n);
        assert!(split.images == expected, "pixels differ");
        assert_eq!(split.labels, expected_labels);
    }

    // Negative control: one pixel changed in one PNG is seen.
    let first = dir.join("train/0/00001.png");
    let mut img = image::open(&first).unwrap().to_luma8();
    img.get_pixel_mut(14, 14).0[0] ^= 0xff;
    img.save(&first).unwrap();
    let changed = load(&dir, &Options::default()).unwrap();
    assert_ne!(changed.train.images, d.train.images);
}

/// A 12x16 RGB image of a shape in a color on gray, varied by `i`.
fn shape_image(class: usize, i: usize) -> Vec<u8> {
    let color = [[220u8, 30, 30], [30, 200, 40], [40, 50, 210]][class];
    let mut px = Vec::new();
    for y in 0..12i32 {
        for x in 0..16i32 {
            let (cx, cy) = (8 + (i as i32 % 3) - 1, 6);
            let inside = match class {
                0 => (x - cx).pow(2) + (y - cy).pow(2) <= 16,    // disc
                1 => (x - cx).abs() <= 4 && (y - cy).abs() <= 4, // square
                _ => (2..=10).contains(&y) && (x - cx).abs() <= (y - 2) / 2, // triangle
            };
            px.extend_from_slice(if inside { &color } else { &[128, 128, 128] });
        }
    }
    px
}

#[test]
fn generated_rgb_folder_of_png_and_jpeg() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shapes");
    let names = ["red_disc", "green_square", "blue_triangle"];
    for (class, name) in names.iter().enumerate() {
        for i in 0..6 {
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            let split = if i < 4 { "train" } else { "test" };
            write_rgb(
                &dir.join(format!("{split}/{name}/{i}.{ext}")),
                12,
                16,
                &shape_image(class, i),
            );
        }
    }
    // An RGBA PNG: alpha is dropped, the color kept.
    let rgba: Vec<u8> = shape_image(1, 0)
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], 77])
        .collect();
    image::RgbaImage::from_raw(16, 12, rgba)
        .unwrap()
        .save(dir.join("train/green_square/9.PNG"))
        .unwrap();

    let d = load(&dir, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((d.kind, d.shape()), (Kind::ImageFolder, (12, 16, 3)));
    // Sorted folder names.
    assert_eq!(d.classes, ["blue_triangle", "green_square", "red_disc"]);
    assert_eq!(d.train.histogram(), [4, 5, 4]);
    assert_eq!(d.test.histogram(), [2, 2, 2]);
    // PNGs are exact: train of blue_triangle is 0.png, 1.jpg, 2.png, 3.jpg.
    assert_eq!(d.train.image(0), shape_image(2, 0));
    assert_eq!(d.train.image(2), shape_image(2, 2));
    // green_square: 0.png, 1.jpg, 2.png, 3.jpg, 9.PNG (the RGBA one).
    assert_eq!(d.train.image(8), shape_image(1, 0));
    // JPEG is lossy: the centre pixel of red_disc's 1.jpg is still clearly red.
    let jpg = d.train.image(10);
    let centre = &jpg[(6 * 16 + 8) * 3..][..3];
    assert!(
        centre[0] > 180 && centre[1] < 80 && centre[2] < 80,
        "{centre:?}"
    );
}

/// The image-folder errors, each named by its file or folder.
#[test]
fn layout_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let o = Options::default();
    let gray = [7u8; 4 * 4];
    let make = |name: &str| {
        let dir = base.join(name);
        for split in ["train", "test"] {
            for class in ["a", "b"] {
                write_gray_png(&dir.join(format!("{split}/{class}/0.png")), 4, 4, &gray);
            }
        }
        dir
    };
    // Negative control: the untouched layout loads.
    assert_eq!(load(&make("ok"), &o).unwrap().shape(), (4, 4, 1));

    let dir = make("empty-class");
    fs::create_dir(dir.join("train/c")).unwrap();
    fs::create_dir(dir.join("test/c")).unwrap();
    let e = load_err(&dir, &o, &["train/c", "empty class folder"]);
    assert!(matches!(e, DatasetError::EmptyClass(_)), "{e}");

    let dir = make("test-lacks");
    write_gray_png(&dir.join("train/c/0.png"), 4, 4, &gray);
    load_err(
        &dir,
        &o,
        &["train/c", "class \"c\" has no folder in", "test"],
    );
    let dir = make("train-lacks");
    write_gray_png(&dir.join("test/z/0.png"), 4, 4, &gray);
    let e = load_err(&dir, &o, &["test/z", "class \"z\""]);
    assert!(
        matches!(&e, DatasetError::ClassMismatch { absent, .. } if absent.ends_with("train")),
        "{e}"
    );

    let dir = make("sizes");
    write_gray_png(&dir.join("train/b/1.png"), 5, 4, &[0; 20]);
    let e = load_err(
        &dir,
        &o,
        &[
            "train/a/0.png is 4x4 (HxW)",
            "train/b/1.png is 5x4",
            "--input",
        ],
    );
    assert!(
        matches!(
            e,
            DatasetError::MixedSizes {
                first_size: (4, 4),
                other_size: (5, 4),
                ..
            }
        ),
        "{e}"
    );

    let dir = make("channels");
    write_rgb(&dir.join("test/a/1.png"), 4, 4, &[9; 48]);
    load_err(
        &dir,
        &o,
        &[
            "train/a/0.png is grayscale",
            "test/a/1.png is color",
            "--input",
        ],
    );
    // With --input forcing the channels, the mixed folder loads.
    let forced = load_with(&dir, |o| o.input = Some((4, 4, 3))).unwrap();
    assert_eq!((forced.channels, forced.test.len()), (3, 3));

    let dir = make("malformed");
    fs::write(dir.join("train/b/1.png"), b"not a png at all").unwrap();
    load_err(
        &dir,
        &o,
        &["train/b/1.png", "unreadable or malformed image"],
    );
    let dir = make("truncated");
    let png = fs::read(dir.join("train/a/0.png")).unwrap();
    fs::write(dir.join("train/a/0.png"), &png[..png.len() / 2]).unwrap();
    load_err(&dir, &o, &["train/a/0.png", "malformed image"]);

    let dir = make("unreadable");
    std::os::unix::fs::symlink(base.join("nowhere.png"), dir.join("train/b/1.png")).unwrap();
    let e = load_err(&dir, &o, &["train/b/1.png", "cannot read"]);
    assert!(matches!(e, DatasetError::Io { .. }), "{e}");

    let dir = make("stray");
    fs::write(dir.join("train/a/notes.txt"), b"x").unwrap();
    load_err(
        &dir,
        &o,
        &["train/a/notes.txt", "not a .png, .jpg or .jpeg"],
    );
    let dir = make("loose");
    write_gray_png(&dir.join("train/loose.png"), 4, 4, &gray);
    load_err(&dir, &o, &["train/loose.png", "one folder per class"]);
    // Hidden files are not part of the dataset.
    let dir = make("hidden");
    fs::write(dir.join("train/a/.DS_Store"), b"x").unwrap();
    assert!(load(&dir, &o).is_ok());

    let dir = make("one-class");
    fs::remove_dir_all(dir.join("train/b")).unwrap();
    fs::remove_dir_all(dir.join("test/b")).unwrap();
    load_err(&dir, &o, &["train", "1 classes", "2 to 1000"]);

    let dir = make("no-test");
    fs::remove_dir_all(dir.join("test")).unwrap();
    let e = load_err(&dir, &o, &["no test/ folder", "--val-split"]);
    assert!(matches!(e, DatasetError::NoTestSplit(_)), "{e}");
    let dir = make("both");
    load_err(
        &dir,
        &Options {
            val_split: Some(0.2),
            ..o.clone()
        },
        &["--val-split", "own test split"],
    );

    load_err(
        &base.join("nonexistent"),
        &o,
        &["nonexistent: does not exist"],
    );
    fs::write(base.join("a-file"), b"").unwrap();
    load_err(&base.join("a-file"), &o, &["a-file: not a directory"]);
}

#[test]
fn too_many_classes() {
    let tmp = tempfile::tempdir().unwrap();
    for class in 0..1001 {
        fs::create_dir_all(tmp.path().join(format!("train/{class:04}"))).unwrap();
    }
    fs::create_dir(tmp.path().join("test")).unwrap();
    load_err(
        tmp.path(),
        &Options::default(),
        &["1001 classes", "2 to 1000"],
    );
    // Negative control: 1000 passes the count (and fails next, on test/ lacking the classes).
    fs::remove_dir(tmp.path().join("train/1000")).unwrap();
    load_err(
        tmp.path(),
        &Options::default(),
        &["train/0000", "class \"0000\" has no folder"],
    );
}

#[test]
fn extension_case_and_jpeg_suffix() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, ext) in ["png", "JPG", "jpeg", "Jpeg"].iter().enumerate() {
        let class = if i % 2 == 0 { "x" } else { "y" };
        write_rgb(
            &tmp.path().join(format!("train/{class}/{i}.{ext}")),
            3,
            3,
            &[100; 27],
        );
    }
    fs::create_dir(tmp.path().join("test")).unwrap();
    fs::create_dir(tmp.path().join("test/x")).unwrap();
    fs::create_dir(tmp.path().join("test/y")).unwrap();
    fs::copy(
        tmp.path().join("train/x/0.png"),
        tmp.path().join("test/x/a.png"),
    )
    .unwrap();
    fs::copy(
        tmp.path().join("train/y/1.JPG"),
        tmp.path().join("test/y/a.jpg"),
    )
    .unwrap();
    let d = load(tmp.path(), &Options::default()).unwrap();
    assert_eq!((d.train.len(), d.test.len(), d.channels), (4, 2, 3));
    assert!(Path::new(&d.dir).ends_with(tmp.path().file_name().unwrap()));
}

/// 16-bit gray and gray+alpha PNGs are gray (1 channel); 16-bit values scale to 8 bits
/// (v / 257: 257 * 100 -> 100, 65535 -> 255), alpha is dropped.
#[test]
fn sixteen_bit_and_alpha_gray() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path16 = dir.join("train/a/0.png");
    fs::create_dir_all(path16.parent().unwrap()).unwrap();
    image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![257 * 100, 65535])
        .unwrap()
        .save(&path16)
        .unwrap();
    let path_la = dir.join("train/b/0.png");
    fs::create_dir_all(path_la.parent().unwrap()).unwrap();
    image::ImageBuffer::<image::LumaA<u8>, _>::from_raw(2, 1, vec![7, 0, 9, 255])
        .unwrap()
        .save(&path_la)
        .unwrap();
    fs::create_dir_all(dir.join("test")).unwrap();
    for class in ["a", "b"] {
        fs::create_dir_all(dir.join(format!("test/{class}"))).unwrap();
        fs::copy(
            dir.join(format!("train/{class}/0.png")),
            dir.join(format!("test/{class}/0.png")),
        )
        .unwrap();
    }
    let d = load(dir, &Options::default()).unwrap();
    assert_eq!(d.shape(), (1, 2, 1));
    assert_eq!(d.train.images, [100, 255, 7, 9]);
}
