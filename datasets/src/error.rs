//! Everything that can go wrong loading a dataset. Every variant names the file or folder
//! at fault and, where there is one, what to do about it.

use std::path::PathBuf;

use thiserror::Error;

use crate::Kind;

/// The flag that forces the dataset kind, as the messages name it.
pub const KIND_FLAG: &str = "--data-kind";
/// The flag that asks for a validation split, as the messages name it.
pub const VAL_SPLIT_FLAG: &str = "--val-split";
/// The flag that resizes / converts the images, as the messages name it.
pub const INPUT_FLAG: &str = "--input";

/// Fewest classes a dataset may have.
pub const MIN_CLASSES: usize = 2;
/// Most classes a dataset may have.
pub const MAX_CLASSES: usize = 1000;

/// Shows a `(height, width)` pair as `HxW`.
fn hw((h, w): &(usize, usize)) -> String {
    format!("{h}x{w}")
}

/// Everything that can go wrong finding, reading or decoding a dataset.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// Nothing exists at the path given as the dataset directory.
    #[error("{}: does not exist; point --data at the dataset's directory", .0.display())]
    NoSuchDir(PathBuf),
    /// The dataset path exists but is not a directory.
    #[error("{}: not a directory; --data takes the directory that holds the dataset", .0.display())]
    NotADir(PathBuf),
    /// A file or directory could not be read.
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        /// The file or directory.
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
    /// Nothing in the directory looks like a dataset of any kind.
    #[error(
        "{}: no dataset recognised; it holds {}.{}\nExpected one of:\n{}\nPass {KIND_FLAG} \
         idx|folder|cifar10|cifar100 to force one and see what is missing.",
        .dir.display(),
        if .found.is_empty() { "nothing".to_string() } else { .found.join(", ") },
        match .hint { Some(sub) => format!(" Its subdirectory {} looks like a dataset: point --data at it.", sub.display()), None => String::new() },
        crate::detect::EXPECTATIONS.iter().map(|(k, e)| format!("  - {k}: {e}")).collect::<Vec<_>>().join("\n")
    )]
    Unrecognised {
        /// The directory.
        dir: PathBuf,
        /// Some of its entries (directories with a trailing `/`).
        found: Vec<String>,
        /// A subdirectory that is recognised, if one is.
        hint: Option<PathBuf>,
    },
    /// The directory holds the files of more than one kind.
    #[error(
        "{}: holds files of several dataset kinds ({}); pass {KIND_FLAG} to choose one",
        .dir.display(),
        .kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        /// The directory.
        dir: PathBuf,
        /// The kinds whose files are present.
        kinds: Vec<Kind>,
    },
    /// A file the dataset's layout requires is missing.
    #[error("{}: missing {name}{}, which the {kind} layout needs", .dir.display(), if *.gz_ok { " (neither raw nor .gz)" } else { "" })]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The file's name.
        name: String,
        /// Whether a `.gz` version would have been accepted.
        gz_ok: bool,
        /// The kind being loaded.
        kind: Kind,
    },
    /// The IDX header's magic number is not the one expected for this kind of file.
    #[error(
        "{}: bad IDX magic number 0x{found:08x}, expected {expected} for {what}",
        .path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number in the file.
        found: u32,
        /// The magic numbers accepted, in words.
        expected: &'static str,
        /// "images" or "labels".
        what: &'static str,
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
    /// An IDX images file's 4th dimension (channels) is neither 1 nor 3.
    #[error("{}: images have {channels} channels; only 1 (gray) or 3 (RGB) are supported", .path.display())]
    BadChannels {
        /// The file.
        path: PathBuf,
        /// The channel count in the header.
        channels: usize,
    },
    /// Images with no pixels.
    #[error("{}: images are {height}x{width}: an image needs at least one row and one column", .path.display())]
    ZeroSized {
        /// The file.
        path: PathBuf,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
    /// A file of images holds none.
    #[error("{}: holds no images", .path.display())]
    NoImages {
        /// The file.
        path: PathBuf,
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
    /// The training and test images have different shapes.
    #[error(
        "{} holds {}x{}x{} images but {} holds {}x{}x{}: both splits must have one shape (or pass {INPUT_FLAG} HxWxC to resize both)",
        .train.display(), .train_shape.0, .train_shape.1, .train_shape.2,
        .test.display(), .test_shape.0, .test_shape.1, .test_shape.2
    )]
    SplitShapes {
        /// The training images file.
        train: PathBuf,
        /// Its (height, width, channels).
        train_shape: (usize, usize, usize),
        /// The test images file.
        test: PathBuf,
        /// Its (height, width, channels).
        test_shape: (usize, usize, usize),
    },
    /// A label names no class.
    #[error(
        "{}: label {label} of record {index} is out of range: there are {classes} classes (0-{}){}",
        .path.display(), .classes - 1,
        match .names { Some(n) => format!(", named in {}", n.display()), None => String::new() }
    )]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Record index of the bad label.
        index: usize,
        /// The label value.
        label: usize,
        /// How many classes there are.
        classes: usize,
        /// The file naming the classes, if any.
        names: Option<PathBuf>,
    },
    /// Too few or too many classes.
    #[error(
        "{}: {found} classes; a dataset needs {MIN_CLASSES} to {MAX_CLASSES} ({how})",
        .path.display()
    )]
    ClassCount {
        /// The file or folder the classes come from.
        path: PathBuf,
        /// How many were found.
        found: usize,
        /// Where the count comes from, in words.
        how: &'static str,
    },
    /// A CIFAR binary file is not a whole number of records.
    #[error(
        "{}: {len} bytes is not a whole number of {record}-byte records ({layout})",
        .path.display()
    )]
    RecordLength {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// Bytes per record.
        record: usize,
        /// What a record holds, in words.
        layout: &'static str,
    },
    /// The numbered CIFAR-10 training batches have a gap.
    #[error("{}: has {present} but not {missing}: the training batches must be numbered from 1 without gaps", .dir.display())]
    BatchGap {
        /// The directory.
        dir: PathBuf,
        /// A batch that is present.
        present: String,
        /// The first missing one.
        missing: String,
    },
    /// A file or folder that has no place in an image-folder dataset.
    #[error("{}: {why}", .path.display())]
    Unexpected {
        /// The entry.
        path: PathBuf,
        /// What is wrong and what is expected instead.
        why: &'static str,
    },
    /// A class folder with no images.
    #[error("{}: empty class folder: every class needs at least one .png, .jpg or .jpeg image", .0.display())]
    EmptyClass(PathBuf),
    /// A class folder of one split has no counterpart in the other.
    #[error(
        "{}: class {class:?} has no folder in {}: train/ and test/ must have the same class folders",
        .present.display(), .absent.display()
    )]
    ClassMismatch {
        /// The class name.
        class: String,
        /// The folder that exists.
        present: PathBuf,
        /// The split directory lacking it.
        absent: PathBuf,
    },
    /// An image file that does not decode.
    #[error("{}: unreadable or malformed image: {source}", .path.display())]
    BadImage {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// Two images of different sizes, without `input` to resize them.
    #[error(
        "{} is {} (HxW) but {} is {}: all images must have one size; pass {INPUT_FLAG} HxWxC to resize them",
        .first.display(), hw(.first_size), .other.display(), hw(.other_size)
    )]
    MixedSizes {
        /// The first image.
        first: PathBuf,
        /// Its (height, width).
        first_size: (usize, usize),
        /// The first image of another size.
        other: PathBuf,
        /// Its (height, width).
        other_size: (usize, usize),
    },
    /// Gray and color images mixed, without `input` to choose the channels.
    #[error(
        "{} is grayscale but {} is color: all images must be one or the other; pass {INPUT_FLAG} HxWx1 or HxWx3 to convert them",
        .gray.display(), .color.display()
    )]
    MixedChannels {
        /// A grayscale image.
        gray: PathBuf,
        /// A color image.
        color: PathBuf,
    },
    /// An image folder without `test/` and without a validation split.
    #[error(
        "{}: has no test/ folder; add DIR/test/<class>/... or pass {VAL_SPLIT_FLAG} F (e.g. 0.1) to hold out that fraction of train/ as the test split",
        .0.display()
    )]
    NoTestSplit(PathBuf),
    /// A validation split asked for where the dataset has its own test split.
    #[error(
        "{}: {VAL_SPLIT_FLAG} applies only to an image folder without a test/ folder, and this {kind} dataset has its own test split; leave {VAL_SPLIT_FLAG} out",
        .dir.display()
    )]
    ValSplitNotApplicable {
        /// The directory.
        dir: PathBuf,
        /// Its kind.
        kind: Kind,
    },
    /// A validation fraction outside (0, 1).
    #[error("{VAL_SPLIT_FLAG} {0}: must be a fraction strictly between 0 and 1, e.g. 0.1")]
    BadValSplit(f32),
    /// A class with too few images to be split.
    #[error(
        "{}: {count} image(s): holding out a validation split needs at least 2 images in every class",
        .0.display(), count = .1
    )]
    TooFewToSplit(PathBuf, usize),
    /// An image folder would have a class without images (which loading refuses).
    #[error(
        "{}: class {class:?} has no image among the {count} {split} images written; \
         every class folder needs one (write more images, or none of this class)",
        .dir.display()
    )]
    WouldBeEmpty {
        /// The folder being written.
        dir: PathBuf,
        /// "train" or "test".
        split: &'static str,
        /// The class name.
        class: String,
        /// How many images of the split would be written.
        count: usize,
    },
    /// A requested input shape that is not one.
    #[error(
        "{INPUT_FLAG} {height}x{width}x{channels}: height and width must be at least 1 and channels 1 or 3"
    )]
    BadInput {
        /// Rows asked for.
        height: usize,
        /// Columns asked for.
        width: usize,
        /// Channels asked for.
        channels: usize,
    },
}
