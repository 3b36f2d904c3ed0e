//! Discovery: the job folders of a master's cache (`jobs/<2 hex>/<rest>/`), with their jid and
//! minion folders. Reads only the small `jid` files; returns are decoded later.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::msgpack::{self, ReadError};

/// A `jid` file holds twenty digits (or a custom jid): anything bigger is not one.
const JID_FILE_MAX: u64 = 4096;

/// One job folder.
#[derive(Debug, Clone)]
pub(crate) struct JobDir {
    pub(crate) dir: PathBuf,
    /// The folder's path under the cache (`ab/cdef…`): the job's key in the checkpoint.
    pub(crate) key: String,
    /// Read from the `jid` file by [`JobDir::read_jid`], only for jobs with work to do.
    pub(crate) jid: String,
    /// A `nocache` marker: the master stores no returns for this job.
    pub(crate) nocache: bool,
    /// Minion folders (each should hold a `return.p`), sorted; empty when not listed. A name
    /// that is not UTF-8 appears with its odd bytes escaped (`\xff`), see `raw`.
    pub(crate) minions: Vec<String>,
    /// The raw names of the minion folders whose names are not UTF-8, by escaped name.
    pub(crate) raw: Vec<(String, OsString)>,
    /// The same, found when a backfill listed the folder at its turn ([`JobDir::list_minions`]).
    pub(crate) listed_raw: std::sync::OnceLock<Vec<(String, OsString)>>,
    /// The folder's mtime when scanned: unchanged means no minion folder came or went.
    pub(crate) mtime: Option<i64>,
    /// How many folders it holds, from its link count when scanned (0 where the file system
    /// does not count): for a progress bar, before it is listed.
    pub(crate) subfolders: usize,
}

impl JobDir {
    pub(crate) fn load_path(&self) -> PathBuf {
        self.dir.join(".load.p")
    }

    pub(crate) fn return_path(&self, minion: &str) -> PathBuf {
        let listed = self.listed_raw.get().into_iter().flatten();
        match self
            .raw
            .iter()
            .chain(listed)
            .find(|(name, _)| name == minion)
        {
            Some((_, raw)) => self.dir.join(raw).join("return.p"),
            None => self.dir.join(minion).join("return.p"),
        }
    }

    /// The jid from the `jid` file, or from `.load.p` (of at most `max` bytes) when the file is
    /// missing or empty (it is rewritten at every return, so it can be caught empty). `Ok(None)`
    /// when neither has one; `Err` when a file could not be read (permission denied...).
    pub(crate) fn read_jid(&self, max: u64) -> Result<Option<String>, Problem> {
        let problem = |path: PathBuf, e: ReadError| Problem {
            path,
            why: e.to_string(),
        };
        let jid_path = self.dir.join("jid");
        let from_file = match msgpack::read_file(&jid_path, JID_FILE_MAX) {
            Ok(b) => Some(String::from_utf8_lossy(&b).trim().to_owned()).filter(|j| !j.is_empty()),
            Err(e) if e.is_vanished() => None,
            Err(e) => return Err(problem(jid_path, e)),
        };
        if from_file.is_some() {
            return Ok(from_file);
        }
        let buf = match msgpack::read_file(&self.load_path(), max) {
            Ok(buf) => buf,
            Err(e) if e.is_vanished() => return Ok(None),
            Err(e) => return Err(problem(self.load_path(), e)),
        };
        Ok(msgpack::decode(&buf).ok().and_then(|load| {
            msgpack::get(&load, "jid")
                .and_then(msgpack::as_text)
                .map(|j| j.into_owned())
        }))
    }
}

/// A file or folder that could not be used, and why, for a one-line warning.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) path: PathBuf,
    pub(crate) why: String,
}

/// Checks that `root` is a Salt job cache, so that a wrong `--cache-dir` is an error rather
/// than a run that ships nothing forever: a folder holding two-hex job folders, or an empty one
/// (a fresh master). Dot files are not content.
pub(crate) fn verify(root: &Path) -> Result<()> {
    let shown = root.display();
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "cache folder {shown}: {e} (Salt's master keeps its job cache in \
             /var/cache/salt/master/jobs, under its cachedir; is this the master, or is the cache \
             elsewhere? give --cache-dir)"
        ),
        _ => anyhow::Error::new(e).context(format!("cache folder {shown}")),
    })?;
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
pub(crate) fn scan(
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
            let (mtime, subfolders) = stat(&dir).unzip();
            let mut job = JobDir::unlisted(dir, key, mtime, subfolders.unwrap_or(0));
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
    /// The job folder `dir` (`key` under the cache) as scanned, not listed yet.
    fn unlisted(dir: PathBuf, key: String, mtime: Option<i64>, subfolders: usize) -> JobDir {
        JobDir {
            dir,
            key,
            jid: String::new(),
            nocache: false,
            minions: Vec::new(),
            raw: Vec::new(),
            listed_raw: Default::default(),
            mtime,
            subfolders,
        }
    }

    /// The job folder `dir` under `root`, listed now; `None` if it is not there (any more).
    pub(crate) fn listed(root: &Path, dir: PathBuf) -> Option<JobDir> {
        let key = dir.strip_prefix(root).ok()?.to_string_lossy().into_owned();
        let (mtime, subfolders) = stat(&dir)?;
        let mut job = JobDir::unlisted(dir, key, Some(mtime), subfolders);
        job.list(&mut Vec::new());
        Some(job)
    }

    /// The minion folders, sorted, listed now (a backfill lists a job when its turn comes);
    /// a folder that cannot be read is warned about and has none.
    pub(crate) fn list_minions(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut job = JobDir {
            minions: Vec::new(),
            raw: Vec::new(),
            ..self.clone()
        };
        job.list(&mut problems);
        for p in problems {
            log::warn!("{}: {}", p.path.display(), p.why);
        }
        // Listed once per pass: this listing's raw names are the ones its returns use.
        let _ = self.listed_raw.set(job.raw);
        job.minions
    }

    /// How many minion folders it holds: as listed, else by its link count, else counted now
    /// where the file system keeps no count for folders (no names kept, none sorted).
    pub(crate) fn minion_count(&self) -> u64 {
        if !self.minions.is_empty() {
            return self.minions.len() as u64;
        }
        if self.subfolders > 0 {
            return self.subfolders as u64;
        }
        let entries = std::fs::read_dir(&self.dir).into_iter().flatten().flatten();
        entries
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .count() as u64
    }

    /// Lists the folder now, in place (a scan left it unlisted); a folder that cannot be read
    /// is warned about and has none.
    pub(crate) fn relist(&mut self) {
        let mut problems = Vec::new();
        self.minions.clear();
        self.raw.clear();
        self.list(&mut problems);
        for p in problems {
            log::warn!("{}: {}", p.path.display(), p.why);
        }
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
            let raw = entry.file_name();
            let name = minion_name(raw.as_encoded_bytes()).into_owned();
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    if raw.to_str().is_none() {
                        self.raw.push((name.clone(), raw));
                    }
                    self.minions.push(name)
                }
                _ if name == "nocache" => self.nocache = true,
                _ => {}
            }
        }
        self.minions.sort();
    }
}

/// A `.minions.p` (or a syndic's `.minions.<id>.p`) that could not be used, and why.
#[derive(Debug)]
pub(crate) struct TargetsError {
    pub(crate) path: PathBuf,
    pub(crate) error: ReadError,
}

/// The targeted minions: `.minions.p`, and on a master of masters each syndic's
/// `.minions.<syndic>.p`, as `list_job`'s `Minions` joins them. Sorted, each once; `None`
/// when the folder holds no such file (not yet: Salt writes it right after `.load.p`; or
/// never: a job with no target). A file that cannot be read, or that is anything but a list
/// of minion ids, is an error of that file: never "no targets".
pub(crate) fn targeted(dir: &Path, max: u64) -> Result<Option<Vec<String>>, TargetsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(TargetsError {
                path: dir.to_owned(),
                error: ReadError::Io(e),
            })
        }
    };
    let mut names: Option<Vec<String>> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".minions.") && name.ends_with(".p")) {
            continue;
        }
        let path = entry.path();
        let list = match minions_file(&path, max) {
            Ok(list) => list,
            // Gone between the listing and the read: the master's cleanup.
            Err(e) if e.is_vanished() => continue,
            Err(error) => return Err(TargetsError { path, error }),
        };
        names.get_or_insert_with(Vec::new).extend(list);
    }
    Ok(names.map(|mut names| {
        names.sort();
        names.dedup();
        names
    }))
}

/// The minion ids of one `.minions*.p`: a msgpack list of str (bin from Python 2 masters).
fn minions_file(path: &Path, max: u64) -> Result<Vec<String>, ReadError> {
    let buf = msgpack::read_file(path, max)?;
    let rmpv::ValueRef::Array(items) = msgpack::decode(&buf)? else {
        return Err(ReadError::Shape("not a list of minion ids"));
    };
    items
        .iter()
        .map(|item| {
            msgpack::as_bytes(item)
                .map(|b| minion_name(b).into_owned())
                .ok_or(ReadError::Shape("a minion id that is not a string"))
        })
        .collect()
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
pub(crate) fn mtime_nanos(dir: &Path) -> Option<i64> {
    stat(dir).map(|(mtime, _)| mtime)
}

/// A folder's mtime (ns), and how many folders it holds by its link count.
fn stat(dir: &Path) -> Option<(i64, usize)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    let d = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let subfolders = usize::try_from(meta.nlink().saturating_sub(2)).unwrap_or(0);
    Some((i64::try_from(d.as_nanos()).ok()?, subfolders))
}

/// A minion id as saltship names it everywhere (events, the checkpoint, the metrics' series),
/// whether it came from a minion folder, `.minions.p` or the pki folder: as it is when it is
/// UTF-8, else with its odd bytes as `\xNN` (see [`escaped`]), so that the same bytes give
/// the same name wherever they come from, and different bytes different names.
pub(crate) fn minion_name(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(name) => std::borrow::Cow::Borrowed(name),
        Err(_) => std::borrow::Cow::Owned(escaped(bytes)),
    }
}

/// A file name that is not UTF-8, its odd bytes as `\xNN`: readable in an event and in the
/// checkpoint, and different for different bytes.
fn escaped(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn is_hex_pair(name: Option<&str>) -> bool {
    name.is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_utf8_are_escaped_apart() {
        assert_eq!(escaped(b"web\xff01"), "web\\xff01");
        assert_ne!(escaped(b"a\xff"), escaped(b"a\xfe"));
        assert_eq!(escaped("caf\u{e9}".as_bytes()), "caf\u{e9}");
    }
}
