//! The checkpoint: which returns of which jobs are done (their events confirmed delivered, or
//! nothing to ship), and which jobs hold no state run. The only module that touches the state
//! file. It is written to a temp file, fsynced, renamed over the old one, and the folder
//! fsynced, so a crash leaves the old or the new file, never a torn one. A lock file beside it
//! (flock) keeps two instances from shipping the same cache.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The state file's format version; a newer file is refused rather than misread.
pub const VERSION: u32 = 1;

/// What is known of one job folder, keyed by its path under the cache (`ab/cdef…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    pub jid: String,
    /// The job runs no state function: its returns are never read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_state: bool,
    /// Minions whose return is done: shipped and confirmed, or holding nothing to ship.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub done: BTreeSet<String>,
    /// The job folder's mtime (ns) when every return in it was done: while it stays the same,
    /// no minion folder came, and the folder need not be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    jobs: BTreeMap<String, JobState>,
}

/// The loaded checkpoint, holding the lock while it lives.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    jobs: BTreeMap<String, JobState>,
    /// True once the file exists on disk (or was loaded).
    existed: bool,
    dirty: bool,
    _lock: Option<File>,
}

/// Opening failed because another instance holds the lock.
#[derive(Debug)]
pub struct Busy(pub PathBuf);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "another saltship holds {}", self.0.display())
    }
}

impl std::error::Error for Busy {}

impl Checkpoint {
    /// Locks and loads the state file at `path`; a missing file is an empty checkpoint.
    /// A file that cannot be read or understood is an error: shipping everything again
    /// silently would flood the receiver. `reset` starts over instead.
    pub fn open(path: &Path, reset: bool) -> Result<Checkpoint> {
        let dir = parent(path);
        fs::create_dir_all(dir).with_context(|| format!("state folder {}", dir.display()))?;
        let lock_path = lock_path(path);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("lock file {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Busy(lock_path).into()),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("lock file {}", lock_path.display()))
            }
        }
        let mut cp = if reset {
            Checkpoint::empty(path)
        } else {
            Checkpoint::load(path)?
        };
        cp._lock = Some(lock);
        Ok(cp)
    }

    /// Loads without locking and never writes: for `--dry-run`, which must not touch state.
    pub fn peek(path: &Path) -> Result<Checkpoint> {
        Checkpoint::load(path)
    }

    fn empty(path: &Path) -> Checkpoint {
        Checkpoint {
            path: path.to_owned(),
            jobs: BTreeMap::new(),
            existed: false,
            dirty: false,
            _lock: None,
        }
    }

    fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::empty(path)),
            Err(e) => return Err(e).with_context(|| format!("state file {}", path.display())),
        };
        let fix = "fix or remove it, or start over with --reset-state";
        let file: StateFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("state file {} is damaged ({fix})", path.display()))?;
        if file.version != VERSION {
            bail!(
                "state file {} has format version {} and this saltship reads {VERSION} ({fix})",
                path.display(),
                file.version
            );
        }
        Ok(Checkpoint {
            path: path.to_owned(),
            jobs: file.jobs,
            existed: true,
            dirty: false,
            _lock: None,
        })
    }

    /// Whether there was a state file (a first run may start at "now" instead).
    pub fn existed(&self) -> bool {
        self.existed
    }

    pub fn job(&self, key: &str) -> Option<&JobState> {
        self.jobs.get(key)
    }

    pub fn jobs(&self) -> impl Iterator<Item = (&String, &JobState)> {
        self.jobs.iter()
    }

    /// Records that `minion`'s return in job `key` is done.
    pub fn record(&mut self, key: &str, jid: &str, minion: &str) {
        let job = self.jobs.entry(key.to_owned()).or_insert_with(|| JobState {
            jid: jid.to_owned(),
            ..JobState::default()
        });
        self.dirty |= job.done.insert(minion.to_owned());
    }

    /// Records that job `key` runs no state function.
    pub fn record_non_state(&mut self, key: &str, jid: &str) {
        let job = JobState {
            jid: jid.to_owned(),
            non_state: true,
            ..JobState::default()
        };
        if self.jobs.insert(key.to_owned(), job.clone()).as_ref() != Some(&job) {
            self.dirty = true;
        }
    }

    /// Records that every return of job `key` is done while its folder's mtime is `mtime`.
    pub fn settle(&mut self, key: &str, mtime: i64) {
        if let Some(job) = self.jobs.get_mut(key).filter(|j| j.settled != Some(mtime)) {
            job.settled = Some(mtime);
            self.dirty = true;
        }
    }

    /// Whether the job folder `key` must be listed to find what is new in it: not when its
    /// job runs no state function, nor when it settled at this very mtime.
    pub fn needs_listing(&self, key: &str, mtime: Option<i64>) -> bool {
        match self.jobs.get(key) {
            Some(job) if job.non_state => false,
            Some(job) => job.settled.is_none() || job.settled != mtime,
            None => true,
        }
    }

    /// Forgets the jobs the master has cleaned up: those not in `present`.
    pub fn prune(&mut self, present: &BTreeSet<&str>) -> usize {
        let before = self.jobs.len();
        self.jobs.retain(|k, _| present.contains(k.as_str()));
        let pruned = before - self.jobs.len();
        self.dirty |= pruned > 0;
        pruned
    }

    /// Writes the checkpoint if it changed: temp file, fsync, rename, fsync of the folder.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let file = StateFile {
            version: VERSION,
            jobs: std::mem::take(&mut self.jobs),
        };
        let result = write_atomically(&self.path, &file);
        self.jobs = file.jobs;
        result.with_context(|| format!("saving state file {}", self.path.display()))?;
        self.dirty = false;
        self.existed = true;
        Ok(())
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

fn write_atomically(path: &Path, file: &StateFile) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut out = io::BufWriter::new(File::create(&tmp)?);
    serde_json::to_writer(&mut out, file).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    drop(out);
    fs::rename(&tmp, path)?;
    File::open(parent(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_save_and_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/state");
        let mut cp = Checkpoint::open(&path, false).expect("open");
        assert!(!cp.existed());
        cp.record("ab/cd", "20261123185750440911", "web1");
        cp.record_non_state("ef/01", "20261123185751000000");
        cp.save().expect("save");
        drop(cp);
        let cp = Checkpoint::open(&path, false).expect("reopen");
        assert!(cp.existed());
        assert!(cp.job("ab/cd").expect("job").done.contains("web1"));
        assert!(cp.job("ef/01").expect("job").non_state);
    }

    #[test]
    fn a_second_instance_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let _first = Checkpoint::open(&path, false).expect("first");
        let second = Checkpoint::open(&path, false).expect_err("second must not get the lock");
        assert!(second.downcast_ref::<Busy>().is_some(), "{second:#}");
    }

    #[test]
    fn damaged_or_newer_files_are_errors_unless_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        for bad in [
            &b"{\"version\":1,\"jobs\":{\"x"[..],
            b"\x00\x01garbage",
            br#"{"version":2,"jobs":{}}"#,
        ] {
            fs::write(&path, bad).expect("write");
            let e = Checkpoint::open(&path, false).expect_err("bad state file");
            assert!(format!("{e:#}").contains("--reset-state"), "{e:#}");
            assert!(Checkpoint::open(&path, true).is_ok());
        }
    }

    #[test]
    fn prune_forgets_cleaned_up_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cp = Checkpoint::open(&dir.path().join("state"), false).expect("open");
        cp.record("ab/cd", "1", "web1");
        cp.record("ef/01", "2", "web1");
        assert_eq!(cp.prune(&["ab/cd"].into_iter().collect()), 1);
        assert!(cp.job("ef/01").is_none() && cp.job("ab/cd").is_some());
    }
}
