//! Discovery: the job folders of a master's cache (`jobs/<2 hex>/<rest>/`), with their jid and
//! minion folders. Reads only the small `jid` files; returns are decoded later.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

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
    /// Minion folders (each should hold a `return.p`), sorted.
    pub minions: Vec<String>,
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

/// Every job folder under `root`, in folder order, without reading anything in them.
/// `found` is told the count as it grows.
pub fn scan(root: &Path, mut found: impl FnMut(usize)) -> (Vec<JobDir>, Vec<Problem>) {
    let mut jobs: Vec<JobDir> = Vec::new();
    let mut problems = Vec::new();
    let walker = WalkDir::new(root)
        .min_depth(1)
        .max_depth(3)
        .sort_by_file_name()
        .into_iter()
        // Other returners keep `jobs/loads` and the like beside the hashed folders.
        .filter_entry(|e| e.depth() != 1 || is_hex_pair(e.file_name().to_str()));
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                // Removed by the master's cleanup while we walked: not a problem.
                if e.io_error()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                {
                    continue;
                }
                let path = e.path().unwrap_or(root).to_path_buf();
                problems.push(Problem {
                    path,
                    why: e.to_string(),
                });
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy();
        match entry.depth() {
            2 if entry.file_type().is_dir() => {
                let key = entry
                    .path()
                    .strip_prefix(root)
                    .unwrap_or(entry.path())
                    .to_string_lossy()
                    .into_owned();
                jobs.push(JobDir {
                    key,
                    dir: entry.into_path(),
                    jid: String::new(),
                    nocache: false,
                    minions: Vec::new(),
                });
                found(jobs.len());
            }
            // Depth first: a depth-3 entry belongs to the job folder pushed last.
            3 => {
                if let Some(job) = jobs
                    .last_mut()
                    .filter(|j| entry.path().parent() == Some(&j.dir))
                {
                    if entry.file_type().is_dir() {
                        job.minions.push(name.into_owned());
                    } else if name == "nocache" {
                        job.nocache = true;
                    }
                }
            }
            _ => {}
        }
    }
    (jobs, problems)
}

fn is_hex_pair(name: Option<&str>) -> bool {
    name.is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}
