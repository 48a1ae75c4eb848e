//! MNIST in its canonical IDX form: finding the four files and parsing them.
//!
//! Each file may be stored raw (`train-images-idx3-ubyte`) or gzip-compressed
//! (`train-images-idx3-ubyte.gz`); compression is detected by the gzip magic bytes, not by
//! the name. Nothing here ever downloads anything.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::digest::Fnv1a64;

/// Side length of an MNIST image.
pub const IMAGE_SIDE: usize = 28;
/// Pixels in one MNIST image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes (digits 0-9).
pub const NUM_CLASSES: usize = 10;

/// Magic number of an IDX file of u8 images (type 0x08, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 2051;
/// Magic number of an IDX file of u8 labels (type 0x08, 1 dimension).
pub const LABELS_MAGIC: u32 = 2049;

/// The base names of the four MNIST files, each stored as `name` or `name.gz`.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// All four base names, in the order they are loaded.
pub const FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// Environment variable naming a directory that holds MNIST.
pub const DATA_ENV: &str = "TINYCONV_DATA";

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a directory does not hold MNIST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Nothing exists at the path.
    DoesNotExist,
    /// The path exists but is a file (or something else), not a directory.
    NotADirectory,
    /// The directory lacks some of the four files (base names, neither raw nor `.gz` present).
    MissingFiles(Vec<&'static str>),
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::DoesNotExist => f.write_str("does not exist"),
            Rejected::NotADirectory => f.write_str("not a directory"),
            Rejected::MissingFiles(names) => {
                write!(f, "missing {} (neither raw nor .gz)", names.join(", "))
            }
        }
    }
}

/// Who named a dataset directory: an explicit choice is never replaced by a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The `--data DIR` flag.
    Flag,
    /// The `$TINYCONV_DATA` environment variable (set, non-empty, and no `--data`).
    Env,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag => f.write_str("--data"),
            Origin::Env => write!(f, "${DATA_ENV}"),
        }
    }
}

impl Origin {
    /// How the user wrote `path`: `--data DIR` or `$TINYCONV_DATA=DIR`.
    fn naming(self, path: &Path) -> String {
        match self {
            Origin::Flag => format!("--data {}", path.display()),
            Origin::Env => format!("${DATA_ENV}={}", path.display()),
        }
    }

    /// What the user can do about a wrong directory named this way.
    fn advice(self) -> String {
        match self {
            Origin::Flag => "Point --data at the directory that holds them, or leave the flag out \
                             to use $TINYCONV_DATA or the default places"
                .into(),
            Origin::Env => format!(
                "Point {DATA_ENV} at the directory that holds them, pass --data DIR instead, \
                 or unset {DATA_ENV} to search the default places"
            ),
        }
    }
}

/// Everything that can go wrong finding or reading MNIST.
#[derive(Debug, Error)]
pub enum DataError {
    /// The directory named by `--data` or `$TINYCONV_DATA` does not hold MNIST. It is not
    /// replaced by a default: training on another dataset than the one asked for is worse than
    /// stopping.
    #[error(
        "{}: {why}. It must be a directory holding the four MNIST IDX files {} \
         (raw, or gzip-compressed with a .gz suffix). {}. tinyconv never downloads anything.",
        .origin.naming(.path),
        FILES.join(", "),
        .origin.advice()
    )]
    NotADataset {
        /// Who named the directory.
        origin: Origin,
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: Rejected,
    },
    /// Neither `--data` nor `$TINYCONV_DATA` was given and no default directory holds MNIST.
    #[error(
        "MNIST not found. Without --data or ${DATA_ENV}, looked in:\n{}\n\
         Each directory must contain the four IDX files {} (raw, or gzip-compressed with a .gz suffix).\n\
         To get MNIST, copy those four files into one of these directories (e.g. `data/mnist`), \
         or point `--data DIR` or ${DATA_ENV} at a directory that has them. \
         tinyconv never downloads anything.",
        .looked.iter().map(|(p, why)| format!("  - {} ({why})", p.display())).collect::<Vec<_>>().join("\n"),
        FILES.join(", ")
    )]
    NotFound {
        /// Every directory looked in, with the reason it was rejected.
        looked: Vec<(PathBuf, Rejected)>,
    },
    /// A file of a split is missing from a directory given to [`load`].
    #[error("{}: missing {name} (neither raw nor .gz)", .dir.display())]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The file's base name.
        name: &'static str,
    },
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file starts with the gzip magic but does not decompress.
    #[error("{}: truncated or corrupt gzip data: {source}", .path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// The IDX header's magic number is not the one expected for this kind of file.
    #[error("{}: bad IDX magic number {found} (0x{found:08x}), expected {expected} for {kind}", .path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number in the file.
        found: u32,
        /// The magic number expected.
        expected: u32,
        /// "images" or "labels".
        kind: &'static str,
    },
    /// The file is shorter than its header says it should be.
    #[error("{}: truncated: {what}: need {needed} bytes, file has {actual}", .path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read ("header", "image data", "label data").
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The file holds more bytes than its header accounts for.
    #[error("{}: {extra} unexpected trailing bytes after {expected} bytes of data", .path.display())]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes expected in total.
        expected: usize,
        /// Bytes beyond that.
        extra: usize,
    },
    /// Images are not 28x28.
    #[error("{}: images are {rows}x{cols}, expected {IMAGE_SIDE}x{IMAGE_SIDE}", .path.display())]
    BadDimensions {
        /// The file.
        path: PathBuf,
        /// Rows in the header.
        rows: u32,
        /// Columns in the header.
        cols: u32,
    },
    /// An images file and its labels file disagree on the number of records.
    #[error("{} has {images} images but {} has {labels} labels", .images_path.display(), .labels_path.display())]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// Its record count.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// Its record count.
        labels: usize,
    },
    /// A label is not a digit 0-9.
    #[error("{}: label {label} at index {index} is out of range (must be 0-9)", .path.display())]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Record index of the bad label.
        index: usize,
        /// The label value.
        label: u8,
    },
}

/// One split of MNIST: images and their labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// `len() * 784` pixels, each image row-major 28x28, 0 = background.
    pub images: Vec<u8>,
    /// One label 0-9 per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 784 pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
    }

    /// The first `n` images (all of them if `n >= len()`).
    pub fn truncated(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images[..n * IMAGE_PIXELS].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }

    /// What identifies the split's content: its size and a 64-bit FNV-1a hash of its pixels
    /// and labels. A checkpoint records it so a resume on other data is refused; a copy of the
    /// same files elsewhere has the same fingerprint.
    pub fn fingerprint(&self) -> String {
        let hash = Fnv1a64::default()
            .update(&self.images)
            .update(&self.labels)
            .hex();
        format!("{} images, fnv1a64 {hash}", self.len())
    }

    /// How many images of each class the split holds.
    pub fn histogram(&self) -> [usize; NUM_CLASSES] {
        let mut h = [0; NUM_CLASSES];
        for &l in &self.labels {
            h[l as usize] += 1;
        }
        h
    }
}

/// MNIST: the 60 000 training and 10 000 test images.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The training split.
    pub train: Split,
    /// The test split.
    pub test: Split,
}

impl Mnist {
    /// The class names: the digits.
    pub fn class_names(&self) -> Vec<String> {
        (0..NUM_CLASSES).map(|d| d.to_string()).collect()
    }
}

/// The path of `name` in `dir`, raw or `.gz`, if one of them is a file (raw preferred).
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Some(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.is_file().then_some(gz)
}

/// Why `dir` is not an MNIST directory, or `None` if it is one.
fn reject_reason(dir: &Path) -> Option<Rejected> {
    if !dir.exists() {
        return Some(Rejected::DoesNotExist);
    }
    if !dir.is_dir() {
        return Some(Rejected::NotADirectory);
    }
    let missing: Vec<&'static str> = FILES
        .iter()
        .copied()
        .filter(|f| find_file(dir, f).is_none())
        .collect();
    (!missing.is_empty()).then_some(Rejected::MissingFiles(missing))
}

/// The directories searched when neither `--data` nor `$TINYCONV_DATA` is given, in order
/// (relative to the current directory).
pub const DEFAULT_DIRS: [&str; 2] = ["data/mnist", "../shared/data/mnist"];

/// Find a directory holding the four MNIST files.
///
/// `cli` (the `--data` flag) if given, else `$TINYCONV_DATA` if set and non-empty, must hold
/// the files: otherwise that is the error, naming the flag or variable, the path and what is
/// missing. Only when neither is given are [`DEFAULT_DIRS`] searched; the first that holds all
/// four files wins, else the error lists every place looked and why it was rejected.
pub fn locate(cli: Option<&Path>) -> Result<PathBuf, DataError> {
    locate_with(cli, std::env::var_os(DATA_ENV), Path::new(""))
}

/// [`locate`] with the value of `$TINYCONV_DATA` and the directory the defaults are relative
/// to passed in, so tests need not touch process-wide state (environment, current directory).
pub fn locate_with(
    cli: Option<&Path>,
    env: Option<OsString>,
    base: &Path,
) -> Result<PathBuf, DataError> {
    let explicit = match (cli, env.filter(|v| !v.is_empty())) {
        (Some(p), _) => Some((Origin::Flag, p.to_path_buf())),
        (None, Some(v)) => Some((Origin::Env, PathBuf::from(v))),
        (None, None) => None,
    };
    if let Some((origin, path)) = explicit {
        return match reject_reason(&path) {
            None => Ok(path),
            Some(why) => Err(DataError::NotADataset { origin, path, why }),
        };
    }
    let mut looked = Vec::new();
    for dir in DEFAULT_DIRS.map(|d| base.join(d)) {
        match reject_reason(&dir) {
            None => return Ok(dir),
            Some(why) => looked.push((dir, why)),
        }
    }
    Err(DataError::NotFound { looked })
}

/// Read a file whole, decompressing it if it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.len() >= 2 && raw[..2] == GZIP_MAGIC {
        let mut out = Vec::with_capacity(raw.len() * 4);
        // MultiGzDecoder: a gzip file may hold several members, all of which are data.
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|source| DataError::Gzip {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn check_len(
    path: &Path,
    bytes: &[u8],
    what: &'static str,
    needed: usize,
) -> Result<(), DataError> {
    if bytes.len() < needed {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what,
            needed,
            actual: bytes.len(),
        });
    }
    if bytes.len() > needed {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            expected: needed,
            extra: bytes.len() - needed,
        });
    }
    Ok(())
}

fn check_magic(
    path: &Path,
    bytes: &[u8],
    expected: u32,
    kind: &'static str,
    header: usize,
) -> Result<(), DataError> {
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: "header",
            needed: header,
            actual: bytes.len(),
        });
    }
    let found = be_u32(bytes, 0);
    if found != expected {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found,
            expected,
            kind,
        });
    }
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: "header",
            needed: header,
            actual: bytes.len(),
        });
    }
    Ok(())
}

/// Parse the bytes of an IDX images file (already decompressed). `path` names it in errors.
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    const HEADER: usize = 16;
    check_magic(path, bytes, IMAGES_MAGIC, "images", HEADER)?;
    let count = be_u32(bytes, 4) as usize;
    let (rows, cols) = (be_u32(bytes, 8), be_u32(bytes, 12));
    if rows as usize != IMAGE_SIDE || cols as usize != IMAGE_SIDE {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            rows,
            cols,
        });
    }
    let needed = count
        .checked_mul(IMAGE_PIXELS)
        .and_then(|n| n.checked_add(HEADER))
        .unwrap_or(usize::MAX);
    check_len(path, bytes, "image data", needed)?;
    Ok(bytes[HEADER..].to_vec())
}

/// Parse the bytes of an IDX labels file (already decompressed). `path` names it in errors.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    const HEADER: usize = 8;
    check_magic(path, bytes, LABELS_MAGIC, "labels", HEADER)?;
    let count = be_u32(bytes, 4) as usize;
    check_len(path, bytes, "label data", count.saturating_add(HEADER))?;
    let labels = &bytes[HEADER..];
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= NUM_CLASSES)
    {
        return Err(DataError::BadLabel {
            path: path.to_path_buf(),
            index,
            label,
        });
    }
    Ok(labels.to_vec())
}

fn file_in(dir: &Path, name: &'static str) -> Result<PathBuf, DataError> {
    find_file(dir, name).ok_or_else(|| DataError::MissingFile {
        dir: dir.to_path_buf(),
        name,
    })
}

fn load_split(dir: &Path, images: &'static str, labels: &'static str) -> Result<Split, DataError> {
    let images_path = file_in(dir, images)?;
    let labels_path = file_in(dir, labels)?;
    let images = parse_images(&images_path, &read_maybe_gz(&images_path)?)?;
    let labels = parse_labels(&labels_path, &read_maybe_gz(&labels_path)?)?;
    let n_images = images.len() / IMAGE_PIXELS;
    if n_images != labels.len() {
        return Err(DataError::CountMismatch {
            images_path,
            images: n_images,
            labels_path,
            labels: labels.len(),
        });
    }
    Ok(Split { images, labels })
}

/// Load both splits of MNIST from `dir` (see [`locate`]).
pub fn load(dir: &Path) -> Result<Mnist, DataError> {
    Ok(Mnist {
        train: load_split(dir, TRAIN_IMAGES, TRAIN_LABELS)?,
        test: load_split(dir, TEST_IMAGES, TEST_LABELS)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
        v.extend_from_slice(&count.to_be_bytes());
        v.extend_from_slice(&rows.to_be_bytes());
        v.extend_from_slice(&cols.to_be_bytes());
        v.extend_from_slice(pixels);
        v
    }

    pub(crate) fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        v.extend_from_slice(labels);
        v
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn pixels(n: usize) -> Vec<u8> {
        (0..n * IMAGE_PIXELS).map(|i| (i % 251) as u8).collect()
    }

    /// A directory with a small valid MNIST: `n_train` / `n_test` images, labels cycling 0-9.
    /// Training files are gzipped, test files raw.
    pub(crate) fn write_tiny_mnist(dir: &Path, n_train: usize, n_test: usize) {
        let labels = |n: usize| (0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>();
        let write = |name: &str, bytes: Vec<u8>| fs::write(dir.join(name), bytes).unwrap();
        write(
            "train-images-idx3-ubyte.gz",
            gzip(&idx_images(n_train as u32, 28, 28, &pixels(n_train))),
        );
        write(
            "train-labels-idx1-ubyte.gz",
            gzip(&idx_labels(&labels(n_train))),
        );
        write(
            "t10k-images-idx3-ubyte",
            idx_images(n_test as u32, 28, 28, &pixels(n_test)),
        );
        write("t10k-labels-idx1-ubyte", idx_labels(&labels(n_test)));
    }

    #[test]
    fn loads_tiny_mixed_raw_and_gz() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_mnist(tmp.path(), 7, 3);
        let m = load(tmp.path()).unwrap();
        assert_eq!(m.train.len(), 7);
        assert_eq!(m.test.len(), 3);
        assert_eq!(m.train.images, pixels(7));
        assert_eq!(m.test.labels, vec![0, 1, 2]);
        assert_eq!(m.train.image(1)[0], (IMAGE_PIXELS % 251) as u8);
    }

    #[test]
    fn gzip_detected_by_magic_not_name() {
        let tmp = tempfile::tempdir().unwrap();
        // A gzip file without the .gz suffix, and a raw file with one.
        let a = tmp.path().join("labels-without-suffix");
        fs::write(&a, gzip(&idx_labels(&[1, 2, 3]))).unwrap();
        assert_eq!(
            parse_labels(&a, &read_maybe_gz(&a).unwrap()).unwrap(),
            [1, 2, 3]
        );
        let b = tmp.path().join("raw.gz");
        fs::write(&b, idx_labels(&[4])).unwrap();
        assert_eq!(parse_labels(&b, &read_maybe_gz(&b).unwrap()).unwrap(), [4]);
    }

    #[test]
    fn bad_magic() {
        let p = Path::new("x");
        let mut bytes = idx_images(1, 28, 28, &pixels(1));
        bytes[3] = 0x01; // 2049: a labels magic in an images file
        let e = parse_images(p, &bytes).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadMagic {
                    found: 2049,
                    expected: 2051,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("expected 2051"), "{e}");

        let e = parse_labels(p, &idx_images(0, 28, 28, &[])).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadMagic {
                    found: 2051,
                    expected: 2049,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn wrong_dimensions() {
        let e = parse_images(Path::new("x"), &idx_images(1, 32, 28, &[0; 32 * 28])).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadDimensions {
                    rows: 32,
                    cols: 28,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("32x28"), "{e}");
    }

    #[test]
    fn truncated_data_and_header() {
        let p = Path::new("imgs");
        let mut bytes = idx_images(2, 28, 28, &pixels(2));
        bytes.truncate(bytes.len() - 1);
        let e = parse_images(p, &bytes).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { what: "image data", needed, actual, .. }
                if needed == 16 + 2 * 784 && actual == 16 + 2 * 784 - 1),
            "{e}"
        );
        assert!(e.to_string().starts_with("imgs: truncated"), "{e}");

        let e = parse_images(p, &idx_images(2, 28, 28, &[])[..10]).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { what: "header", .. }),
            "{e}"
        );
        let e = parse_labels(p, &[0, 0]).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { what: "header", .. }),
            "{e}"
        );

        let mut labels = idx_labels(&[1, 2, 3]);
        labels.pop();
        let e = parse_labels(p, &labels).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    what: "label data",
                    needed: 11,
                    actual: 10,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn trailing_bytes() {
        let mut labels = idx_labels(&[1, 2, 3]);
        labels.push(0);
        let e = parse_labels(Path::new("x"), &labels).unwrap_err();
        assert!(
            matches!(e, DataError::TrailingBytes { extra: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn label_out_of_range() {
        let e = parse_labels(Path::new("x"), &idx_labels(&[0, 9, 10, 3])).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadLabel {
                    index: 2,
                    label: 10,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn count_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_mnist(tmp.path(), 5, 3);
        fs::write(
            tmp.path().join("t10k-labels-idx1-ubyte"),
            idx_labels(&[1, 2]),
        )
        .unwrap();
        let e = load(tmp.path()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::CountMismatch {
                    images: 3,
                    labels: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("t10k-labels-idx1-ubyte"), "{e}");
    }

    #[test]
    fn truncated_gzip() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_mnist(tmp.path(), 5, 3);
        let path = tmp.path().join("train-images-idx3-ubyte.gz");
        let gz = fs::read(&path).unwrap();
        fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let e = load(tmp.path()).unwrap_err();
        assert!(matches!(e, DataError::Gzip { .. }), "{e}");
        assert!(e.to_string().contains("train-images-idx3-ubyte.gz"), "{e}");
    }

    #[test]
    fn corrupt_gzip() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_mnist(tmp.path(), 5, 3);
        let path = tmp.path().join("train-labels-idx1-ubyte.gz");
        let mut gz = fs::read(&path).unwrap();
        // Flip bytes of the deflate stream: either the stream or its CRC check fails.
        let mid = gz.len() / 2;
        for b in &mut gz[12..mid] {
            *b ^= 0x5a;
        }
        fs::write(&path, gz).unwrap();
        let e = load(tmp.path()).unwrap_err();
        assert!(matches!(e, DataError::Gzip { .. }), "{e}");
    }

    fn mnist_dir(dir: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        write_tiny_mnist(dir, 1, 1);
        dir.to_path_buf()
    }

    /// A base directory whose defaults hold MNIST: `base/data/mnist`.
    fn base_with_default(tmp: &Path) -> PathBuf {
        mnist_dir(&tmp.join("base/data/mnist"));
        tmp.join("base")
    }

    #[test]
    fn flag_naming_no_dataset_is_an_error_not_a_fallback() {
        let tmp = tempfile::tempdir().unwrap();
        // A working default and a working $TINYCONV_DATA must not rescue a wrong --data.
        let base = base_with_default(tmp.path());
        let env = Some(mnist_dir(&tmp.path().join("env")).into_os_string());
        let partial = tmp.path().join("partial");
        fs::create_dir(&partial).unwrap();
        fs::write(partial.join("train-images-idx3-ubyte"), b"").unwrap();
        fs::write(partial.join("t10k-labels-idx1-ubyte.gz"), b"").unwrap();
        let file = tmp.path().join("a-file");
        fs::write(&file, b"").unwrap();
        let cases = [
            (
                tmp.path().join("nonexistent"),
                Rejected::DoesNotExist,
                "does not exist",
            ),
            (file, Rejected::NotADirectory, "not a directory"),
            (
                partial,
                Rejected::MissingFiles(vec![TRAIN_LABELS, TEST_IMAGES]),
                "missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte",
            ),
        ];
        for (dir, expected, says) in cases {
            let e = locate_with(Some(&dir), env.clone(), &base).unwrap_err();
            match &e {
                DataError::NotADataset { origin, path, why } => {
                    assert_eq!((*origin, path, why), (Origin::Flag, &dir, &expected))
                }
                other => panic!("unexpected error {other}"),
            }
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("--data {}: {says}", dir.display())),
                "{msg}"
            );
            assert!(msg.contains("leave the flag out"), "{msg}");
        }
    }

    #[test]
    fn env_naming_no_dataset_is_an_error_not_a_fallback() {
        let tmp = tempfile::tempdir().unwrap();
        let base = base_with_default(tmp.path());
        let wrong = tmp.path().join("nonexistent");
        let e = locate_with(None, Some(wrong.clone().into_os_string()), &base).unwrap_err();
        assert!(
            matches!(&e, DataError::NotADataset { origin: Origin::Env, path, why: Rejected::DoesNotExist } if *path == wrong),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "$TINYCONV_DATA={}: does not exist",
                wrong.display()
            )),
            "{msg}"
        );
        assert!(msg.contains("unset TINYCONV_DATA"), "{msg}");

        // A directory missing one file: the message names it.
        let env_dir = mnist_dir(&tmp.path().join("env"));
        fs::remove_file(env_dir.join("t10k-images-idx3-ubyte")).unwrap();
        let e = locate_with(None, Some(env_dir.into_os_string()), &base).unwrap_err();
        assert!(
            e.to_string()
                .contains("missing t10k-images-idx3-ubyte (neither raw nor .gz)"),
            "{e}"
        );
    }

    #[test]
    fn flag_wins_over_a_wrong_env() {
        let tmp = tempfile::tempdir().unwrap();
        let flag = mnist_dir(&tmp.path().join("flag"));
        let env = Some(tmp.path().join("nonexistent").into_os_string());
        assert_eq!(locate_with(Some(&flag), env, tmp.path()).unwrap(), flag);
    }

    #[test]
    fn env_is_used_without_the_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let base = base_with_default(tmp.path());
        let env = mnist_dir(&tmp.path().join("env"));
        assert_eq!(
            locate_with(None, Some(env.clone().into_os_string()), &base).unwrap(),
            env
        );
    }

    #[test]
    fn defaults_are_searched_only_without_flag_and_env() {
        let tmp = tempfile::tempdir().unwrap();
        // data/mnist first...
        let base = base_with_default(tmp.path());
        mnist_dir(&base.join("../shared/data/mnist"));
        for env in [None, Some(OsString::new())] {
            assert_eq!(
                locate_with(None, env, &base).unwrap(),
                base.join("data/mnist")
            );
        }
        // ...then ../shared/data/mnist: the real MNIST beside the repository.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(
            locate_with(None, None, &repo).unwrap(),
            repo.join("../shared/data/mnist")
        );

        // Neither: every place looked is listed, with why it was rejected.
        let empty = tmp.path().join("other/empty");
        fs::create_dir_all(empty.join("data/mnist")).unwrap();
        let e = locate_with(None, None, &empty).unwrap_err();
        match &e {
            DataError::NotFound { looked } => assert_eq!(
                looked,
                &[
                    (
                        empty.join("data/mnist"),
                        Rejected::MissingFiles(FILES.to_vec())
                    ),
                    (empty.join("../shared/data/mnist"), Rejected::DoesNotExist),
                ]
            ),
            other => panic!("unexpected error {other}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("Without --data or $TINYCONV_DATA"), "{msg}");
        assert!(msg.contains("copy those four files"), "{msg}");
    }

    #[test]
    fn fingerprint_tells_content_apart() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_mnist(tmp.path(), 5, 3);
        let m = load(tmp.path()).unwrap();
        let f = m.train.fingerprint();
        assert!(f.starts_with("5 images, fnv1a64 "), "{f}");
        assert_eq!(f, m.train.clone().fingerprint());
        let mut other = m.train.clone();
        other.labels[4] = 0;
        assert_ne!(other.fingerprint(), f);
        let mut other = m.train.clone();
        other.images[100] ^= 1;
        assert_ne!(other.fingerprint(), f);
        assert_ne!(m.train.truncated(4).fingerprint(), f);
    }

    #[test]
    fn load_names_a_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_mnist(tmp.path(), 2, 2);
        fs::remove_file(tmp.path().join("t10k-labels-idx1-ubyte")).unwrap();
        let e = load(tmp.path()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::MissingFile {
                    name: TEST_LABELS,
                    ..
                }
            ),
            "{e}"
        );
    }

    /// The real MNIST, from the shared data folder beside the project.
    #[test]
    fn real_mnist_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist");
        let m = load(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.train.len(), 60_000);
        assert_eq!(m.test.len(), 10_000);
        assert_eq!(m.train.images.len(), 60_000 * 784);
        assert_eq!(m.test.images.len(), 10_000 * 784);
        let (htrain, htest) = (m.train.histogram(), m.test.histogram());
        assert_eq!(htrain.iter().sum::<usize>(), 60_000);
        assert_eq!(htest.iter().sum::<usize>(), 10_000);
        // The well-known class counts of MNIST.
        assert_eq!(
            htrain,
            [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        );
        assert_eq!(
            htest,
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        // The first training label of MNIST is a 5, the first test label a 7.
        assert_eq!((m.train.labels[0], m.test.labels[0]), (5, 7));
    }
}
