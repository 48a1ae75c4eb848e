//! Telling the dataset kind from a directory's contents.

use std::path::Path;

use crate::cifar::batch_number;
use crate::idx::FILES;
use crate::read::{find_maybe_gz, sorted_entries};
use crate::{DatasetError, Kind};

/// What each kind expects, for the message when nothing matches.
pub(crate) const EXPECTATIONS: [(Kind, &str); 4] = [
    (
        Kind::Idx,
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, \
         t10k-labels-idx1-ubyte (each raw or .gz)",
    ),
    (
        Kind::ImageFolder,
        "train/<class>/*.png|jpg|jpeg and test/<class>/... (or pass --val-split F instead of test/)",
    ),
    (
        Kind::Cifar10,
        "data_batch_1.bin .. data_batch_5.bin, test_batch.bin, batches.meta.txt",
    ),
    (Kind::Cifar100, "train.bin, test.bin, fine_label_names.txt"),
];

/// How many entries of an unrecognised directory the message lists.
const LISTED: usize = 12;

/// The kinds of which `dir` holds at least one characteristic file.
fn candidates(dir: &Path) -> Result<Vec<Kind>, DatasetError> {
    let names: Vec<String> = sorted_entries(dir)?
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let has = |n: &str| names.iter().any(|m| m == n);
    let mut kinds = Vec::new();
    if FILES.iter().any(|f| find_maybe_gz(dir, f).is_some()) {
        kinds.push(Kind::Idx);
    }
    if dir.join("train").is_dir() {
        kinds.push(Kind::ImageFolder);
    }
    if has("test_batch.bin")
        || has("batches.meta.txt")
        || names.iter().any(|n| batch_number(n).is_some())
    {
        kinds.push(Kind::Cifar10);
    }
    if has("train.bin") || has("test.bin") || has("fine_label_names.txt") {
        kinds.push(Kind::Cifar100);
    }
    Ok(kinds)
}

/// The one kind whose files `dir` holds.
pub(crate) fn detect(dir: &Path) -> Result<Kind, DatasetError> {
    let kinds = candidates(dir)?;
    match kinds.len() {
        1 => Ok(kinds[0]),
        0 => {
            let entries = sorted_entries(dir)?;
            let mut found: Vec<String> = entries
                .iter()
                .take(LISTED)
                .map(|p| {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if p.is_dir() { format!("{name}/") } else { name }
                })
                .collect();
            if entries.len() > LISTED {
                found.push(format!("and {} more", entries.len() - LISTED));
            }
            // A dataset one level down (e.g. CIFAR's tarball unpacks to cifar-10-batches-bin/).
            let hint = entries
                .iter()
                .filter(|p| p.is_dir())
                .find(|p| candidates(p).is_ok_and(|k| k.len() == 1))
                .cloned();
            Err(DatasetError::Unrecognised {
                dir: dir.to_path_buf(),
                found,
                hint,
            })
        }
        _ => Err(DatasetError::Ambiguous {
            dir: dir.to_path_buf(),
            kinds,
        }),
    }
}
