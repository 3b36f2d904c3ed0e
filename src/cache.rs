//! Discovery: the job folders of a master's cache (`jobs/<2 hex>/<rest>/`), with their jid and
//! minion folders. Reads only the small `jid` files; returns are decoded later.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::msgpack;

/// One job folder.
#[derive(Debug, Clone)]
pub struct JobDir {
    pub dir: PathBuf,
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
}

/// A file or folder that could not be used, and why, for a one-line warning.
#[derive(Debug)]
pub struct Problem {
    pub path: PathBuf,
    pub why: String,
}

/// Every job folder under `root`, sorted by jid. `found` is told the count as it grows.
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
                jobs.push(JobDir {
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
    jobs.retain_mut(|job| match read_jid(&job.dir) {
        Some(jid) => {
            job.jid = jid;
            true
        }
        None => {
            // Salt's cleanup deletes a folder without a `jid` file at once; one that still has
            // a `.load.p` may be being created, or half deleted. Either way there is no job yet.
            if job.load_path().exists() {
                problems.push(Problem {
                    path: job.dir.join("jid"),
                    why: "missing or empty".into(),
                });
            }
            false
        }
    });
    jobs.sort_by(|a, b| a.jid.cmp(&b.jid).then_with(|| a.dir.cmp(&b.dir)));
    (jobs, problems)
}

fn is_hex_pair(name: Option<&str>) -> bool {
    name.is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The jid from the `jid` file, or from `.load.p` when the file is empty (it is rewritten at
/// every return, so it can be caught empty).
fn read_jid(dir: &Path) -> Option<String> {
    let from_file = std::fs::read(dir.join("jid"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|j| !j.is_empty());
    from_file.or_else(|| {
        let buf = msgpack::read_file(&dir.join(".load.p")).ok()?;
        let load = msgpack::decode(&buf).ok()?;
        msgpack::get(&load, "jid")
            .and_then(msgpack::as_text)
            .map(|j| j.into_owned())
    })
}
