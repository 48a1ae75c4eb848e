//! MNIST-style IDX files: the four files (raw or gzip), any image size, 1 or 3 channels,
//! classes 0..=max label.

use std::path::{Path, PathBuf};

use crate::read::{find_maybe_gz, read_maybe_gz};
use crate::{DatasetError, Kind, Loaded, MAX_CLASSES, MIN_CLASSES, Split};

/// Magic number of an IDX file of u8 images `N x H x W` (type 0x08, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0803;
/// Magic number of an IDX file of u8 images `N x H x W x C` (type 0x08, 4 dimensions), C 1 or 3.
pub const IMAGES_MAGIC_4D: u32 = 0x0804;
/// Magic number of an IDX file of u8 labels (type 0x08, 1 dimension).
pub const LABELS_MAGIC: u32 = 0x0801;

/// The base names of the four files, each stored as `name` or `name.gz`.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// All four base names, in the order they are loaded.
pub(crate) const FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// Parsed images: shape and pixels.
struct Images {
    shape: (usize, usize, usize),
    count: usize,
    pixels: Vec<u8>,
}

fn be_u32(bytes: &[u8], at: usize) -> usize {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
}

/// The file must be exactly `needed` bytes long.
fn check_len(
    path: &Path,
    bytes: &[u8],
    what: &'static str,
    needed: usize,
) -> Result<(), DatasetError> {
    let path = path.to_path_buf();
    match bytes.len() {
        n if n < needed => Err(DatasetError::Truncated {
            path,
            what,
            needed,
            actual: n,
        }),
        n if n > needed => Err(DatasetError::TrailingBytes {
            path,
            expected: needed,
            extra: n - needed,
        }),
        _ => Ok(()),
    }
}

fn truncated_header(path: &Path, needed: usize, actual: usize) -> DatasetError {
    DatasetError::Truncated {
        path: path.to_path_buf(),
        what: "header",
        needed,
        actual,
    }
}

/// Parse an IDX images file (already decompressed).
fn parse_images(path: &Path, bytes: &[u8]) -> Result<Images, DatasetError> {
    if bytes.len() < 4 {
        return Err(truncated_header(path, 16, bytes.len()));
    }
    let magic = be_u32(bytes, 0) as u32;
    let dims = match magic {
        IMAGES_MAGIC => 3,
        IMAGES_MAGIC_4D => 4,
        found => {
            return Err(DatasetError::BadMagic {
                path: path.to_path_buf(),
                found,
                expected: "0x00000803 (u8, N x H x W) or 0x00000804 (u8, N x H x W x C)",
                what: "images",
            });
        }
    };
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(truncated_header(path, header, bytes.len()));
    }
    let (count, height, width) = (be_u32(bytes, 4), be_u32(bytes, 8), be_u32(bytes, 12));
    let channels = if dims == 4 { be_u32(bytes, 16) } else { 1 };
    if height == 0 || width == 0 {
        return Err(DatasetError::ZeroSized {
            path: path.to_path_buf(),
            height,
            width,
        });
    }
    if !matches!(channels, 1 | 3) {
        return Err(DatasetError::BadChannels {
            path: path.to_path_buf(),
            channels,
        });
    }
    let needed = [count, height, width, channels]
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_add(header))
        .unwrap_or(usize::MAX);
    check_len(path, bytes, "image data", needed)?;
    if count == 0 {
        return Err(DatasetError::NoImages {
            path: path.to_path_buf(),
        });
    }
    Ok(Images {
        shape: (height, width, channels),
        count,
        pixels: bytes[header..].to_vec(),
    })
}

/// Parse an IDX labels file (already decompressed).
fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DatasetError> {
    const HEADER: usize = 8;
    if bytes.len() < 4 {
        return Err(truncated_header(path, HEADER, bytes.len()));
    }
    let found = be_u32(bytes, 0) as u32;
    if found != LABELS_MAGIC {
        return Err(DatasetError::BadMagic {
            path: path.to_path_buf(),
            found,
            expected: "0x00000801 (u8, N)",
            what: "labels",
        });
    }
    if bytes.len() < HEADER {
        return Err(truncated_header(path, HEADER, bytes.len()));
    }
    let count = be_u32(bytes, 4);
    check_len(path, bytes, "label data", count.saturating_add(HEADER))?;
    Ok(bytes[HEADER..].to_vec())
}

fn file_in(dir: &Path, name: &str) -> Result<PathBuf, DatasetError> {
    find_maybe_gz(dir, name).ok_or_else(|| DatasetError::MissingFile {
        dir: dir.to_path_buf(),
        name: name.to_string(),
        gz_ok: true,
        kind: Kind::Idx,
    })
}

/// One split's images and labels, checked to agree in count.
fn load_split(
    dir: &Path,
    images: &str,
    labels: &str,
) -> Result<(PathBuf, Images, PathBuf, Vec<u8>), DatasetError> {
    let images_path = file_in(dir, images)?;
    let labels_path = file_in(dir, labels)?;
    let images = parse_images(&images_path, &read_maybe_gz(&images_path)?)?;
    let labels = parse_labels(&labels_path, &read_maybe_gz(&labels_path)?)?;
    if images.count != labels.len() {
        return Err(DatasetError::CountMismatch {
            images_path,
            images: images.count,
            labels_path,
            labels: labels.len(),
        });
    }
    Ok((images_path, images, labels_path, labels))
}

/// Load both splits from `dir`; the classes are `0..=max label` of both, named by number.
pub(crate) fn load(dir: &Path) -> Result<Loaded, DatasetError> {
    let (train_path, train, train_labels_path, train_labels) =
        load_split(dir, TRAIN_IMAGES, TRAIN_LABELS)?;
    let (test_path, test, _, test_labels) = load_split(dir, TEST_IMAGES, TEST_LABELS)?;
    if train.shape != test.shape {
        return Err(DatasetError::SplitShapes {
            train: train_path,
            train_shape: train.shape,
            test: test_path,
            test_shape: test.shape,
        });
    }
    let max = train_labels
        .iter()
        .chain(&test_labels)
        .copied()
        .max()
        .unwrap_or(0) as usize;
    let classes = max + 1;
    if !(MIN_CLASSES..=MAX_CLASSES).contains(&classes) {
        return Err(DatasetError::ClassCount {
            path: train_labels_path,
            found: classes,
            how: "the largest label in either labels file, plus one",
        });
    }
    let split = |images: Images, labels: Vec<u8>| Split {
        images: images.pixels,
        labels: labels.into_iter().map(u16::from).collect(),
        height: images.shape.0,
        width: images.shape.1,
        channels: images.shape.2,
        num_classes: classes,
    };
    Ok(Loaded {
        classes: (0..classes).map(|c| c.to_string()).collect(),
        train: split(train, train_labels),
        test: split(test, test_labels),
    })
}
