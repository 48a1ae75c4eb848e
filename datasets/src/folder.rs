//! The image-folder layout: `DIR/train/<class>/*.png|jpg|jpeg`, `DIR/test/<class>/...`.
//! Classes are the folder names, sorted; images within a class are taken in name order.

use std::path::{Path, PathBuf};

use image::ImageReader;

use crate::convert::convert_image;
use crate::holdout::hold_out;
use crate::read::sorted_entries;
use crate::{DatasetError, Kind, Loaded, MAX_CLASSES, MIN_CLASSES, Options, Split};

/// The image file extensions accepted (compared case-insensitively).
pub(crate) const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Hidden entries (`.DS_Store`, `.git`, editor files) are not part of the dataset.
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The class folders of a split directory, sorted by name, with their names.
fn class_folders(split_dir: &Path) -> Result<Vec<(String, PathBuf)>, DatasetError> {
    let mut classes = Vec::new();
    for path in sorted_entries(split_dir)? {
        if is_hidden(&path) {
            continue;
        }
        if !path.is_dir() {
            return Err(DatasetError::Unexpected {
                path,
                why: "a file directly in a split folder: images go in one folder per class, e.g. train/cat/0001.png",
            });
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(String::from) else {
            return Err(DatasetError::Unexpected {
                path,
                why: "a class folder name that is not valid UTF-8",
            });
        };
        classes.push((name, path));
    }
    Ok(classes)
}

/// The image files of a class folder, sorted by name.
fn class_images(class_dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut images = Vec::new();
    for path in sorted_entries(class_dir)? {
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            return Err(DatasetError::Unexpected {
                path,
                why: "a folder inside a class folder: images must sit directly in <split>/<class>/",
            });
        }
        if !is_image_name(&path) {
            return Err(DatasetError::Unexpected {
                path,
                why: "not a .png, .jpg or .jpeg file; only those may be in a class folder (move it out)",
            });
        }
        images.push(path);
    }
    if images.is_empty() {
        return Err(DatasetError::EmptyClass(class_dir.to_path_buf()));
    }
    Ok(images)
}

/// A decoded image: its stored size, whether it is gray, and its pixels (as stored, L8 or
/// RGB8; or converted to the requested input shape).
struct Decoded {
    size: (usize, usize),
    gray: bool,
    pixels: Vec<u8>,
}

fn decode(path: &Path, input: Option<(usize, usize, usize)>) -> Result<Decoded, DatasetError> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let img = ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?
        .decode()
        .map_err(|source| DatasetError::BadImage {
            path: path.to_path_buf(),
            source,
        })?;
    let size = (img.height() as usize, img.width() as usize);
    if size.0 == 0 || size.1 == 0 {
        return Err(DatasetError::ZeroSized {
            path: path.to_path_buf(),
            height: size.0,
            width: size.1,
        });
    }
    let gray = !img.color().has_color();
    let shape = input.unwrap_or((size.0, size.1, if gray { 1 } else { 3 }));
    Ok(Decoded {
        size,
        gray,
        pixels: convert_image(&img, shape),
    })
}

/// Decode `files` on all cores. Each worker stops at its first error, so the results, taken
/// in order up to the first error, are exactly what a serial pass would have seen.
fn decode_all(
    files: &[PathBuf],
    input: Option<(usize, usize, usize)>,
) -> Vec<Result<Decoded, DatasetError>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().div_ceil(64))
        .max(1);
    let chunk = files.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    for path in part {
                        let result = decode(path, input);
                        let failed = result.is_err();
                        out.push(result);
                        if failed {
                            break;
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("decoder thread panicked"))
            .collect()
    })
}

/// The classes that `a` has and `b` lacks, as an error.
fn class_mismatch(
    a: &[(String, PathBuf)],
    b: &[(String, PathBuf)],
    b_dir: &Path,
) -> Option<DatasetError> {
    a.iter()
        .find(|(name, _)| !b.iter().any(|(other, _)| other == name))
        .map(|(name, path)| DatasetError::ClassMismatch {
            class: name.clone(),
            present: path.clone(),
            absent: b_dir.to_path_buf(),
        })
}

/// Load an image-folder dataset; images are converted to `options.input` while decoding.
pub(crate) fn load(dir: &Path, options: &Options) -> Result<Loaded, DatasetError> {
    let train_dir = dir.join("train");
    if !train_dir.is_dir() {
        return Err(DatasetError::MissingFile {
            dir: dir.to_path_buf(),
            name: "train/ (a folder with one subfolder of images per class)".into(),
            gz_ok: false,
            kind: Kind::ImageFolder,
        });
    }
    let test_dir = dir.join("test");
    let has_test = test_dir.exists();
    if has_test && !test_dir.is_dir() {
        return Err(DatasetError::Unexpected {
            path: test_dir,
            why: "not a folder: test/ must hold one subfolder of images per class",
        });
    }
    match (has_test, options.val_split) {
        (true, Some(_)) => {
            return Err(DatasetError::ValSplitNotApplicable {
                dir: dir.to_path_buf(),
                kind: Kind::ImageFolder,
            });
        }
        (false, None) => return Err(DatasetError::NoTestSplit(dir.to_path_buf())),
        _ => {}
    }

    let train_classes = class_folders(&train_dir)?;
    if !(MIN_CLASSES..=MAX_CLASSES).contains(&train_classes.len()) {
        return Err(DatasetError::ClassCount {
            path: train_dir,
            found: train_classes.len(),
            how: "one per class folder in train/",
        });
    }
    let test_classes = if has_test {
        class_folders(&test_dir)?
    } else {
        Vec::new()
    };
    if has_test {
        let mismatch = class_mismatch(&train_classes, &test_classes, &test_dir)
            .or_else(|| class_mismatch(&test_classes, &train_classes, &train_dir));
        if let Some(e) = mismatch {
            return Err(e);
        }
    }

    // Every file with its split (0 train, 1 test) and label, in load order.
    let mut files = Vec::new();
    let mut tags = Vec::new();
    for (split, classes) in [&train_classes, &test_classes].into_iter().enumerate() {
        for (label, (_, class_dir)) in classes.iter().enumerate() {
            for path in class_images(class_dir)? {
                files.push(path);
                tags.push((split, label as u16));
            }
        }
    }

    let num_classes = train_classes.len();
    // The first image's index, size and kind (gray or color): all others must match it.
    let mut first: Option<(usize, (usize, usize), bool)> = None;
    let mut splits: Option<[Split; 2]> = None;
    for (i, result) in decode_all(&files, options.input).into_iter().enumerate() {
        let d = result?;
        let (first_i, first_size, first_gray) = *first.get_or_insert((i, d.size, d.gray));
        if options.input.is_none() {
            if d.size != first_size {
                return Err(DatasetError::MixedSizes {
                    first: files[first_i].clone(),
                    first_size,
                    other: files[i].clone(),
                    other_size: d.size,
                });
            }
            if d.gray != first_gray {
                let (gray, color) = if first_gray {
                    (first_i, i)
                } else {
                    (i, first_i)
                };
                return Err(DatasetError::MixedChannels {
                    gray: files[gray].clone(),
                    color: files[color].clone(),
                });
            }
        }
        let shape = options
            .input
            .unwrap_or((d.size.0, d.size.1, if d.gray { 1 } else { 3 }));
        let splits = splits.get_or_insert_with(|| {
            [
                Split::empty(shape, num_classes),
                Split::empty(shape, num_classes),
            ]
        });
        let (split, label) = tags[i];
        splits[split].push(&d.pixels, label);
    }
    let [train, test] = splits.expect("every class folder holds an image");
    let (train, test) = match options.val_split {
        Some(fraction) => hold_out(&train, fraction, options.seed, |c| {
            train_classes[c].1.clone()
        })?,
        None => (train, test),
    };
    Ok(Loaded {
        classes: train_classes.into_iter().map(|(name, _)| name).collect(),
        train,
        test,
    })
}
