//! The CIFAR-10 and CIFAR-100 binary layouts: fixed-size records of label byte(s) and a
//! 32x32 RGB image stored as three planes (R, G, B), each row-major.

use std::path::{Path, PathBuf};

use crate::read::{read, sorted_entries};
use crate::{DatasetError, Kind, Loaded, MAX_CLASSES, MIN_CLASSES, Split};

/// Side of a CIFAR image.
const SIDE: usize = 32;
/// Pixels of one plane.
const PLANE: usize = SIDE * SIDE;

/// CIFAR-10 or CIFAR-100.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    /// 1 label byte per record.
    Ten,
    /// 2 label bytes per record: coarse, then fine (the one used).
    Hundred,
}

impl Variant {
    fn kind(self) -> Kind {
        match self {
            Variant::Ten => Kind::Cifar10,
            Variant::Hundred => Kind::Cifar100,
        }
    }

    fn label_bytes(self) -> usize {
        match self {
            Variant::Ten => 1,
            Variant::Hundred => 2,
        }
    }

    fn layout(self) -> &'static str {
        match self {
            Variant::Ten => "1 label byte, then 3072 pixel bytes: 32x32 planes R, G, B",
            Variant::Hundred => {
                "coarse and fine label bytes, then 3072 pixel bytes: 32x32 planes R, G, B"
            }
        }
    }

    fn names_file(self) -> &'static str {
        match self {
            Variant::Ten => "batches.meta.txt",
            Variant::Hundred => "fine_label_names.txt",
        }
    }
}

/// `data_batch_N.bin` if `name` is one, with N.
pub(crate) fn batch_number(name: &str) -> Option<u32> {
    name.strip_prefix("data_batch_")?
        .strip_suffix(".bin")?
        .parse()
        .ok()
}

fn need(dir: &Path, name: &str, variant: Variant) -> Result<PathBuf, DatasetError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(DatasetError::MissingFile {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            gz_ok: false,
            kind: variant.kind(),
        })
    }
}

/// CIFAR-10's training batches: `data_batch_1.bin` up, without gaps.
fn training_batches(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut numbers: Vec<u32> = sorted_entries(dir)?
        .iter()
        .filter_map(|p| batch_number(p.file_name()?.to_str()?))
        .collect();
    numbers.sort_unstable();
    if numbers.is_empty() {
        return Err(need(dir, "data_batch_1.bin", Variant::Ten).unwrap_err());
    }
    for (expected, &n) in (1..).zip(&numbers) {
        if n != expected {
            return Err(DatasetError::BatchGap {
                dir: dir.to_path_buf(),
                present: format!("data_batch_{n}.bin"),
                missing: format!("data_batch_{expected}.bin"),
            });
        }
    }
    Ok(numbers
        .iter()
        .map(|n| dir.join(format!("data_batch_{n}.bin")))
        .collect())
}

/// The class names: the names file's non-blank lines, trimmed.
fn class_names(path: &Path) -> Result<Vec<String>, DatasetError> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if !(MIN_CLASSES..=MAX_CLASSES).contains(&names.len()) {
        return Err(DatasetError::ClassCount {
            path: path.to_path_buf(),
            found: names.len(),
            how: "one class name per non-blank line",
        });
    }
    Ok(names)
}

/// Append the records of `path` to `split`, planes converted to HWC.
fn read_records(
    path: &Path,
    variant: Variant,
    names: &Path,
    split: &mut Split,
) -> Result<(), DatasetError> {
    let bytes = read(path)?;
    let record = variant.label_bytes() + 3 * PLANE;
    if bytes.len() % record != 0 {
        return Err(DatasetError::RecordLength {
            path: path.to_path_buf(),
            len: bytes.len(),
            record,
            layout: variant.layout(),
        });
    }
    if bytes.is_empty() {
        return Err(DatasetError::NoImages {
            path: path.to_path_buf(),
        });
    }
    let mut hwc = vec![0u8; 3 * PLANE];
    for (index, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[variant.label_bytes() - 1] as usize;
        if label >= split.num_classes {
            return Err(DatasetError::BadLabel {
                path: path.to_path_buf(),
                index,
                label,
                classes: split.num_classes,
                names: Some(names.to_path_buf()),
            });
        }
        let planes = &rec[variant.label_bytes()..];
        for (p, px) in hwc.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[planes[p], planes[PLANE + p], planes[2 * PLANE + p]]);
        }
        split.push(&hwc, label as u16);
    }
    Ok(())
}

/// Load a CIFAR-10 or CIFAR-100 binary directory.
pub(crate) fn load(dir: &Path, variant: Variant) -> Result<Loaded, DatasetError> {
    let (train_files, test_file) = match variant {
        Variant::Ten => (
            training_batches(dir)?,
            need(dir, "test_batch.bin", variant)?,
        ),
        Variant::Hundred => (
            vec![need(dir, "train.bin", variant)?],
            need(dir, "test.bin", variant)?,
        ),
    };
    let names_path = need(dir, variant.names_file(), variant)?;
    let classes = class_names(&names_path)?;
    let mut train = Split::empty((SIDE, SIDE, 3), classes.len());
    let mut test = train.clone();
    for file in &train_files {
        read_records(file, variant, &names_path, &mut train)?;
    }
    read_records(&test_file, variant, &names_path, &mut test)?;
    Ok(Loaded {
        classes,
        train,
        test,
    })
}
