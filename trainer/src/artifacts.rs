//! Writing files so that a crash never leaves a half-written one behind.
//!
//! Every file the trainer writes goes to a temporary name in the same directory first and is
//! then renamed over the target, which is atomic on POSIX file systems: a reader sees either
//! the old file or the new one.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh temporary path beside `path` (same directory, so the rename stays on one file
/// system). It ends in `.tmp`, which the repository's `.gitignore` ignores.
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// The process id in a name made by [`temp_path`], if `name` is one.
fn temp_owner(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let (n, pid, _base) = (parts.next()?, parts.next()?, parts.next()?);
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Remove the temporary files a killed process left in `dir` (names made by [`temp_path`],
/// of a process that is no longer running). Returns how many were removed.
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let running = |pid: u32| {
        pid == std::process::id()
            // Without /proc, assume it runs: leaving a stale file is harmless, removing a live
            // one is not.
            || !Path::new("/proc/self").exists()
            || Path::new("/proc").join(pid.to_string()).exists()
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if !running(pid) && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Create the parent directory of `path` if it has one and it is missing.
fn ensure_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

/// Write `bytes` to `path` atomically: to a temporary file in the same directory, flushed to
/// disk, then renamed over `path`. Creates the parent directory if needed.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_with(path, |tmp| {
        let mut f = fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })
}

/// Let `write` produce the file at a temporary path (e.g. a library that only writes to a
/// path), then rename it over `path`. The temporary file is removed if `write` fails.
pub fn atomic_write_with<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<io::Error>,
{
    ensure_parent(path)?;
    let tmp = temp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces_leaving_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("sub/dir/file.txt");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.txt")]);
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = temp_path(&tmp.path().join("a.bpk"));
        assert_eq!(
            temp_owner(&ours.file_name().unwrap().to_string_lossy()),
            Some(std::process::id())
        );
        // pid 2^22 + 1 is above Linux's pid_max: no such process.
        let dead = tmp.path().join(".model-epoch001.bpk.4194305.0.tmp");
        let keep = ["a.bpk", "notes.tmp", ".x.tmp", ".y.12.z.tmp"];
        for f in keep {
            fs::write(tmp.path().join(f), b"").unwrap();
        }
        fs::write(&ours, b"").unwrap();
        fs::write(&dead, b"").unwrap();
        assert_eq!(remove_stale_temps(tmp.path()).unwrap(), 1);
        assert!(!dead.exists() && ours.exists());
        for f in keep {
            assert!(tmp.path().join(f).exists(), "{f}");
        }
        assert_eq!(remove_stale_temps(&tmp.path().join("none")).unwrap(), 0);
    }

    #[test]
    fn failed_writer_leaves_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        atomic_write(&p, b"old").unwrap();
        let r: io::Result<()> = atomic_write_with(&p, |t| {
            fs::write(t, b"partial")?;
            Err(io::Error::other("boom"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
