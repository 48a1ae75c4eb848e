//! Writing a dataset out as an image folder of PNGs: how tests and users make an image-folder
//! dataset from IDX or CIFAR data (PNG is lossless, so loading it back gives the same pixels).

use std::fs;
use std::path::{Path, PathBuf};

use image::ExtendedColorType;

use crate::{Dataset, DatasetError, Split};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `dataset` to `dir` as `train/<class>/<index>.png` and `test/<class>/<index>.png`
/// (index zero-padded, so name order is split order), at most `limit` images per split.
/// Every class must have an image in each split's first `limit`, as loading requires.
/// `dir` must not exist yet; each file is written to a temporary name and renamed, so a
/// crash leaves no half-written image.
pub fn write_image_folder(
    dataset: &Dataset,
    dir: &Path,
    limit: Option<usize>,
) -> Result<(), DatasetError> {
    if dir.exists() {
        return Err(DatasetError::Unexpected {
            path: dir.to_path_buf(),
            why: "already exists: the image folder is written to a new directory",
        });
    }
    let color = match dataset.channels {
        1 => ExtendedColorType::L8,
        _ => ExtendedColorType::Rgb8,
    };
    let splits = [("train", &dataset.train), ("test", &dataset.test)];
    // Checked before writing anything: loading refuses an empty class folder.
    for (name, split) in splits {
        let count = split.len().min(limit.unwrap_or(usize::MAX));
        let histogram = split.truncated(count).histogram();
        if let Some(c) = histogram.iter().position(|&n| n == 0) {
            return Err(DatasetError::WouldBeEmpty {
                dir: dir.to_path_buf(),
                split: name,
                class: dataset.classes[c].clone(),
                count,
            });
        }
    }
    for (name, split) in splits {
        write_split(
            split,
            &dir.join(name),
            &dataset.classes,
            color,
            limit.unwrap_or(usize::MAX),
        )?;
    }
    Ok(())
}

fn write_split(
    split: &Split,
    dir: &Path,
    classes: &[String],
    color: ExtendedColorType,
    limit: usize,
) -> Result<(), DatasetError> {
    let class_dirs: Vec<PathBuf> = classes.iter().map(|c| dir.join(c)).collect();
    for d in &class_dirs {
        fs::create_dir_all(d).map_err(io(d))?;
    }
    let n = split.len().min(limit);
    let digits = n.max(1).to_string().len();
    for i in 0..n {
        let class_dir = &class_dirs[split.labels[i] as usize];
        let path = class_dir.join(format!("{i:0digits$}.png"));
        let tmp = class_dir.join(format!(".{i:0digits$}.png.tmp"));
        image::save_buffer_with_format(
            &tmp,
            split.image(i),
            split.width as u32,
            split.height as u32,
            color,
            image::ImageFormat::Png,
        )
        .map_err(|source| DatasetError::BadImage {
            path: tmp.clone(),
            source,
        })?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}
