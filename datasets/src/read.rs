//! Reading whole files, transparently gunzipping them.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::DatasetError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Read a file whole; errors name it.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, DatasetError> {
    fs::read(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a file whole, decompressing it if it starts with the gzip magic (the name does not
/// matter: a raw file called `.gz` and a gzip file without the suffix both read right).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let raw = read(path)?;
    if raw.len() < 2 || raw[..2] != GZIP_MAGIC {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    // MultiGzDecoder: a gzip file may hold several members, all of which are data.
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| DatasetError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// The path of `name` in `dir`, raw or `.gz`, if one of them is a file (raw preferred).
pub(crate) fn find_maybe_gz(dir: &Path, name: &str) -> Option<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Some(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.is_file().then_some(gz)
}

/// The entries of `dir`, sorted by name; errors name the directory.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let io = |source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        entries.push(entry.map_err(io)?.path());
    }
    entries.sort();
    Ok(entries)
}
