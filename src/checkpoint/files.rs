//! The files beside the state file: the lock file (flock, and the lease in it) that keeps two
//! instances from shipping one cache, and the temp files of atomic writes (a dead instance's are removed at start).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Opening failed because another instance holds the lock.
#[derive(Debug)]
pub(crate) struct Busy(pub(crate) PathBuf);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "another saltship holds {}", self.0.display())
    }
}

impl std::error::Error for Busy {}

impl Busy {
    /// The holder its lease names (`host:pid:start`), when it has one.
    pub(crate) fn holder(&self) -> Option<String> {
        super::lease::holder_of(&self.0)
    }
}

/// Opens (creating it and its folder) the lock file of the state file at `path`, for the
/// [`Lease`](super::lease::Lease) to take.
pub(super) fn lock_file(path: &Path) -> Result<(File, PathBuf)> {
    let dir = parent(path);
    fs::create_dir_all(dir)
        .map_err(|e| what_to_do(e, format!("state folder {}", dir.display())))?;
    let lock_path = with_suffix(path, ".lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|e| what_to_do(e, format!("lock file {}", lock_path.display())))?;
    Ok((lock, lock_path))
}

/// Ok when no other instance holds the lock of the state file at `path`, found without making
/// or changing a file: a lock file that is not there is held by nobody, and one that is, is
/// opened read-only (flock does not need more) and let go at once.
pub(super) fn lock_is_free(path: &Path) -> Result<()> {
    let lock_path = with_suffix(path, ".lock");
    let lock = match File::open(&lock_path) {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(what_to_do(e, format!("lock file {}", lock_path.display()))),
    };
    match lock.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Busy(lock_path).into()),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("lock file {}", lock_path.display()))
        }
    }
}

/// An error opening the state folder or lock, with what to do when it is a permission.
fn what_to_do(e: std::io::Error, what: String) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        anyhow::anyhow!(
            "{what}: {e} (run saltship as the user that owns the state folder, the saltship user \
             of the packages, or give --state-file a path this user can write)"
        )
    } else {
        anyhow::Error::new(e).context(what)
    }
}

pub(super) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The journal beside the state file at `path`: `<state>.journal`.
pub(crate) fn journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".journal")
}

pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// The temp files of the state file and its journal: `<state>.tmp.<pid>`, `<state>.journal.tmp.<pid>`.
pub(super) fn is_temp(name: &str, state: &str) -> bool {
    name.strip_prefix(state)
        .map(|rest| rest.strip_prefix(".journal").unwrap_or(rest))
        .and_then(|rest| rest.strip_prefix(".tmp."))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the temp files a dead instance left (a full disk's last free space, often).
pub(super) fn remove_temps(path: &Path) -> Result<()> {
    let dir = parent(path);
    let state = path.file_name().unwrap_or_default().to_string_lossy();
    let entries = fs::read_dir(dir).with_context(|| format!("state folder {}", dir.display()))?;
    for entry in entries.flatten() {
        if is_temp(&entry.file_name().to_string_lossy(), &state) {
            let stale = entry.path();
            fs::remove_file(&stale)
                .with_context(|| format!("removing stale temp file {}", stale.display()))?;
            log::debug!("removed stale temp file {}", stale.display());
        }
    }
    Ok(())
}

/// Temp file, fsync, rename over `path`, fsync of the folder: a crash leaves the old or the new
/// file, never a torn one. A failed write removes its temp file.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = with_suffix(path, &format!(".tmp.{}", std::process::id()));
    let written = File::create(&tmp).and_then(|mut out| {
        out.write_all(bytes)?;
        out.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(parent(path))?.sync_all()
}
