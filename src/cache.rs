//! Discovery: the job folders of a master's cache (`jobs/<2 hex>/<rest>/`), with their jid and
//! minion folders. Reads only the small `jid` files; returns are decoded later.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::msgpack;

/// One job folder.
#[derive(Debug, Clone)]
pub struct JobDir {
    pub dir: PathBuf,
    /// The folder's path under the cache (`ab/cdef…`): the job's key in the checkpoint.
    pub key: String,
    /// Read from the `jid` file by [`JobDir::read_jid`], only for jobs with work to do.
    pub jid: String,
    /// A `nocache` marker: the master stores no returns for this job.
    pub nocache: bool,
    /// Minion folders (each should hold a `return.p`), sorted; empty when not listed.
    pub minions: Vec<String>,
    /// The folder's mtime when scanned: unchanged means no minion folder came or went.
    pub mtime: Option<i64>,
}

impl JobDir {
    pub fn load_path(&self) -> PathBuf {
        self.dir.join(".load.p")
    }

    pub fn return_path(&self, minion: &str) -> PathBuf {
        self.dir.join(minion).join("return.p")
    }

    /// The jid from the `jid` file, or from `.load.p` when the file is empty (it is rewritten
    /// at every return, so it can be caught empty).
    pub fn read_jid(&self) -> Option<String> {
        let from_file = std::fs::read(self.dir.join("jid"))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|j| !j.is_empty());
        from_file.or_else(|| {
            let buf = msgpack::read_file(&self.load_path()).ok()?;
            let load = msgpack::decode(&buf).ok()?;
            msgpack::get(&load, "jid")
                .and_then(msgpack::as_text)
                .map(|j| j.into_owned())
        })
    }
}

/// A file or folder that could not be used, and why, for a one-line warning.
#[derive(Debug)]
pub struct Problem {
    pub path: PathBuf,
    pub why: String,
}

/// Checks that `root` is a Salt job cache, so that a wrong `--cache-dir` is an error rather
/// than a run that ships nothing forever: a folder holding two-hex job folders, or an empty one
/// (a fresh master). Dot files are not content.
pub fn verify(root: &Path) -> Result<()> {
    let shown = root.display();
    let meta = std::fs::metadata(root).with_context(|| format!("cache folder {shown}"))?;
    if !meta.is_dir() {
        bail!("cache folder {shown}: not a directory");
    }
    let mut other = None;
    for entry in std::fs::read_dir(root).with_context(|| format!("cache folder {shown}"))? {
        let entry = entry.with_context(|| format!("cache folder {shown}"))?;
        let name = entry.file_name();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && is_hex_pair(name.to_str()) {
            return Ok(());
        }
        if !name.to_string_lossy().starts_with('.') {
            other.get_or_insert(name);
        }
    }
    if root.join("jobs").is_dir() {
        bail!(
            "cache folder {shown} is not a job cache but holds one: use --cache-dir {}",
            root.join("jobs").display()
        );
    }
    if let Some(name) = other {
        bail!(
            "cache folder {shown} is not a Salt job cache: it holds {} and no job folders \
             (two hex digits, like 3a/); give the master's jobs folder, usually \
             /var/cache/salt/master/jobs",
            Path::new(&name).display()
        );
    }
    Ok(())
}

/// Every job folder under `root`, sorted by folder, each listed (its minion folders found)
/// only when `list(key, mtime)` says so: a job whose returns are all done, and whose folder
/// has not changed since, needs no listing. `found` is told the count as it grows.
pub fn scan(
    root: &Path,
    mut found: impl FnMut(usize),
    list: impl Fn(&str, Option<i64>) -> bool,
) -> (Vec<JobDir>, Vec<Problem>) {
    let mut jobs: Vec<JobDir> = Vec::new();
    let mut problems = Vec::new();
    // Other returners keep `jobs/loads` and the like beside the hashed folders.
    for prefix in folders(root, &mut problems)
        .into_iter()
        .filter(|p| is_hex_pair(p.file_name().and_then(|n| n.to_str())))
    {
        for dir in folders(&prefix, &mut problems) {
            let key = dir
                .strip_prefix(root)
                .unwrap_or(&dir)
                .to_string_lossy()
                .into_owned();
            let mtime = mtime_nanos(&dir);
            let mut job = JobDir {
                dir,
                key,
                jid: String::new(),
                nocache: false,
                minions: Vec::new(),
                mtime,
            };
            if list(&job.key, mtime) {
                job.list(&mut problems);
            }
            jobs.push(job);
            found(jobs.len());
        }
    }
    (jobs, problems)
}

impl JobDir {
    /// The job folder `dir` under `root`, listed now; `None` if it is not there (any more).
    pub fn listed(root: &Path, dir: PathBuf) -> Option<JobDir> {
        let key = dir.strip_prefix(root).ok()?.to_string_lossy().into_owned();
        let mtime = mtime_nanos(&dir)?;
        let mut job = JobDir {
            dir,
            key,
            jid: String::new(),
            nocache: false,
            minions: Vec::new(),
            mtime: Some(mtime),
        };
        job.list(&mut Vec::new());
        Some(job)
    }

    /// Finds the minion folders and the `nocache` marker.
    fn list(&mut self, problems: &mut Vec<Problem>) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                // Removed by the master's cleanup meanwhile: not a problem.
                if e.kind() != std::io::ErrorKind::NotFound {
                    problems.push(Problem {
                        path: self.dir.clone(),
                        why: e.to_string(),
                    });
                }
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            match entry.file_type() {
                Ok(t) if t.is_dir() => self.minions.push(name),
                _ if name == "nocache" => self.nocache = true,
                _ => {}
            }
        }
        self.minions.sort();
    }
}

/// The folders in `dir`, sorted; a folder that vanished is simply empty.
fn folders(dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut out: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            out.sort();
            out
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            problems.push(Problem {
                path: dir.to_owned(),
                why: e.to_string(),
            });
            Vec::new()
        }
    }
}

/// A folder's modification time in nanoseconds: it changes when an entry is added or removed.
pub fn mtime_nanos(dir: &Path) -> Option<i64> {
    let t = std::fs::metadata(dir).and_then(|m| m.modified()).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

fn is_hex_pair(name: Option<&str>) -> bool {
    name.is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}
