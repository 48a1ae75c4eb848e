//! Image datasets for tinyconv: MNIST-style IDX files, image folders (`train/<class>/*.png`)
//! and the CIFAR-10 / CIFAR-100 binary layouts, loaded into one in-memory form: `u8` pixels,
//! HWC row-major, with `u16` labels and class names.
//!
//! [`load`] detects the kind from the directory's contents (or takes it from
//! [`Options::kind`]), optionally resizes and converts every image to one input shape, and
//! can hold out a stratified validation split. [`Augment`] does the seeded random crop and
//! flip of CIFAR-style training. See `docs/datasets.md`. Nothing here downloads anything.

mod augment;
mod cifar;
mod convert;
mod detect;
mod error;
mod export;
mod folder;
mod holdout;
mod idx;
mod read;
mod rng;
mod split;

use std::path::{Path, PathBuf};

pub use augment::Augment;
pub use convert::{convert_image, convert_pixels};
pub use error::{DatasetError, INPUT_FLAG, KIND_FLAG, MAX_CLASSES, MIN_CLASSES, VAL_SPLIT_FLAG};
pub use export::write_image_folder;
pub use idx::{
    IMAGES_MAGIC, IMAGES_MAGIC_4D, LABELS_MAGIC, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
    TRAIN_LABELS,
};
pub use read::read_maybe_gz;
pub use rng::{SplitMix64, splitmix64};
pub use split::Split;

/// The on-disk layouts [`load`] understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// MNIST-style IDX: `train-images-idx3-ubyte[.gz]` and its three siblings.
    Idx,
    /// `train/<class>/*.png|jpg|jpeg` and `test/<class>/...`.
    ImageFolder,
    /// CIFAR-10 binary: `data_batch_1..5.bin`, `test_batch.bin`, `batches.meta.txt`.
    Cifar10,
    /// CIFAR-100 binary: `train.bin`, `test.bin`, `fine_label_names.txt`.
    Cifar100,
}

impl Kind {
    /// Every kind, in the order detection reports them.
    pub const ALL: [Kind; 4] = [Kind::Idx, Kind::ImageFolder, Kind::Cifar10, Kind::Cifar100];

    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Idx => "idx",
            Kind::ImageFolder => "folder",
            Kind::Cifar10 => "cifar10",
            Kind::Cifar100 => "cifar100",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown dataset kind {s:?}; expected one of idx, folder, cifar10, cifar100"
                )
            })
    }
}

/// How [`load`] reads a dataset. The default detects the kind and keeps the images as stored.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Force this kind instead of detecting it from the directory's contents.
    pub kind: Option<Kind>,
    /// Resize every image to `(height, width)` (Triangle filter) and convert it to `channels`
    /// (1 or 3): the network's input shape.
    pub input: Option<(usize, usize, usize)>,
    /// For an image folder without `test/`: hold out this fraction of every class of `train/`
    /// as the test split. An error for any other layout.
    pub val_split: Option<f32>,
    /// Seeds the validation split.
    pub seed: u64,
}

/// A loaded dataset: both splits, one image shape, named classes.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The name of the dataset's directory.
    pub name: String,
    /// The directory it was loaded from.
    pub dir: PathBuf,
    /// The layout it was loaded from.
    pub kind: Kind,
    /// Rows of every image.
    pub height: usize,
    /// Columns of every image.
    pub width: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// The training split.
    pub train: Split,
    /// The test split (held out from `train/` when [`Options::val_split`] was used).
    pub test: Split,
}

impl Dataset {
    /// `(height, width, channels)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.height, self.width, self.channels)
    }
}

/// What a kind's loader produces before the common steps (input conversion, naming).
pub(crate) struct Loaded {
    classes: Vec<String>,
    train: Split,
    test: Split,
}

/// Load the dataset in `dir`; see [`Options`] and `docs/datasets.md`.
pub fn load(dir: &Path, options: &Options) -> Result<Dataset, DatasetError> {
    if !dir.exists() {
        return Err(DatasetError::NoSuchDir(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(DatasetError::NotADir(dir.to_path_buf()));
    }
    if let Some((height, width, channels)) = options.input
        && (height == 0 || width == 0 || !matches!(channels, 1 | 3))
    {
        return Err(DatasetError::BadInput {
            height,
            width,
            channels,
        });
    }
    if let Some(f) = options.val_split
        && !(f > 0.0 && f < 1.0)
    {
        return Err(DatasetError::BadValSplit(f));
    }
    let kind = match options.kind {
        Some(kind) => kind,
        None => detect::detect(dir)?,
    };
    if kind != Kind::ImageFolder && options.val_split.is_some() {
        return Err(DatasetError::ValSplitNotApplicable {
            dir: dir.to_path_buf(),
            kind,
        });
    }
    let loaded = match kind {
        Kind::Idx => idx::load(dir)?,
        Kind::Cifar10 => cifar::load(dir, cifar::Variant::Ten)?,
        Kind::Cifar100 => cifar::load(dir, cifar::Variant::Hundred)?,
        // The folder loader converts while decoding: its images may differ in size.
        Kind::ImageFolder => folder::load(dir, options)?,
    };
    let Loaded {
        classes,
        mut train,
        mut test,
    } = loaded;
    // (The folder loader has converted already; the others convert here.)
    if let Some(shape) = options.input
        && shape != (train.height, train.width, train.channels)
    {
        train = train.converted(shape);
        test = test.converted(shape);
    }
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    Ok(Dataset {
        name,
        dir: dir.to_path_buf(),
        kind,
        height: train.height,
        width: train.width,
        channels: train.channels,
        classes,
        train,
        test,
    })
}
