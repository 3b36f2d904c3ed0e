//! Keeps the job census current as the cache changes, and reads the master's accepted keys.
//! Files are read outside the metrics' lock; only the results are taken in under it.
//!
//! A job folder is read whole once (its `.load.p` and `.minions.p`), then only listed again
//! when its mtime changed (a minion folder came). `watch` lists the folders inotify names;
//! a job that runs no state is not watched, so the jobs whose wait is not over are listed
//! again by [`Metrics::refresh_open`] on the daemon's clock, and any other by the full rescans
//! (the job folders' mtimes come with the scan).

use std::path::Path;

use log::warn;

use super::census::Facts;
use super::rebuild::{facts, load, settled_mtime};
use super::Metrics;
use crate::cache::{minion_name, mtime_nanos, targeted, JobDir};

impl Metrics {
    /// Takes the job folders `dirs` (scanned, or listed) into the census: a job not known (or
    /// caught before its `.load.p` and `.minions.p`) is read whole, a known one listed again
    /// when its folder changed.
    pub(crate) fn refresh_jobs(&self, dirs: &[JobDir]) {
        let stale: Vec<(&JobDir, bool)> = {
            let state = self.lock();
            dirs.iter()
                .filter_map(|d| match state.census.listed_at(&d.key) {
                    None => Some((d, false)),
                    Some((m, whole)) if m.is_none() || m != d.mtime => Some((d, whole)),
                    Some(_) => None,
                })
                .collect()
        };
        for (dir, whole) in stale {
            if dir.nocache || dir.dir.join("nocache").exists() {
                continue;
            }
            // A scan lists only what shipping needs listed: list here what it did not.
            let minions = if dir.minions.is_empty() {
                dir.list_minions()
            } else {
                dir.minions.clone()
            };
            self.take(dir, minions, whole);
        }
    }

    /// Takes a job folder listed as `minions`: only its returns when it was read `whole`.
    fn take(&self, dir: &JobDir, minions: Vec<String>, whole: bool) {
        if whole {
            let mtime = settled_mtime(dir.mtime);
            self.lock().census.relisted(&dir.key, &minions, mtime);
        } else if let Some(facts) = self.read(dir, minions) {
            self.lock().census.put(&dir.key, facts);
        }
    }

    /// A job folder not known yet, read whole; `None` while it has no jid.
    fn read(&self, dir: &JobDir, minions: Vec<String>) -> Option<Facts> {
        let s = &self.settings;
        let mut dir = dir.clone();
        if dir.jid.is_empty() {
            dir.jid = dir.read_jid(s.max_return_bytes).ok().flatten()?;
        }
        let job = load(&dir, s);
        let targeted = targeted(&dir.dir, s.max_return_bytes).ok().flatten();
        Some(facts(&dir, s, &job, targeted, minions))
    }

    /// Lists again the folders of the jobs still waiting for minions that changed since.
    pub(crate) fn refresh_open(&self) {
        let s = &self.settings;
        let now = chrono::Utc::now().timestamp_micros();
        let open = self.lock().census.open(now, s.return_wait);
        for (key, listed, whole) in open {
            let folder = s.cache.join(&key);
            let mtime = mtime_nanos(&folder);
            // Gone: the next full rescan forgets it.
            if mtime.is_none() || (listed.is_some() && listed == mtime) {
                continue;
            }
            if let Some(dir) = JobDir::listed(&s.cache, folder) {
                let minions = dir.minions.clone();
                self.take(&dir, minions, whole);
            }
        }
    }

    /// Reads the accepted keys again; a folder that cannot be read is named in one warning
    /// (the first time), and no silent minions are shown while it cannot.
    pub(crate) fn refresh_keys(&self) {
        let dir = self.settings.pki_dir.join("minions");
        let keys = accepted(&dir);
        let mut state = self.lock();
        match keys {
            Ok(keys) => state.keys = Some(keys),
            Err(e) => {
                state.keys = None;
                if !state.keys_warned {
                    state.keys_warned = true;
                    warn!(
                        "{}: {e}; silent minions are not counted (give --pki-dir, or let saltship's user read it)",
                        dir.display()
                    );
                }
            }
        }
    }
}

/// The minion ids with an accepted key: the files in `<pki_dir>/minions`, as `salt-key` lists
/// them (dot files left out). Sorted.
fn accepted(dir: &Path) -> std::io::Result<Vec<Box<str>>> {
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        // Named as the cache's minion folders are: a key whose name is not UTF-8 is the same
        // minion as its folder, and two such keys stay two.
        let name = minion_name(name.as_encoded_bytes());
        // As `os.path.isfile`: a link to a key file is one.
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        keys.push(name.into());
    }
    keys.sort();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Settings;
    use rmpv::Value as Mp;

    fn pack(v: &Mp) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).expect("encode to a Vec");
        buf
    }

    #[test]
    fn a_job_caught_before_its_load_and_minions_files_is_read_again_once_they_are_there() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_owned();
        let job = root.join("ab").join("cdef");
        std::fs::create_dir_all(&job).expect("job folder");
        // Just published: its `.load.p` and `.minions.p` may still come.
        let jid = chrono::Utc::now().format("%Y%m%d%H%M%S%6f").to_string();
        std::fs::write(job.join("jid"), jid).expect("jid");
        let metrics = Metrics {
            settings: std::sync::Arc::new(Settings {
                cache: root.clone(),
                ..Settings::default()
            }),
            ..Metrics::default()
        };
        let listed = || JobDir::listed(&root, job.clone()).expect("listed");
        metrics.refresh_jobs(&[listed()]);
        let summary = |m: &Metrics| m.lock().census.summary(i64::MAX / 2, 0);
        assert_eq!(summary(&metrics).jobs, [("unknown".to_string(), 1)]);
        let load = Mp::Map(vec![("fun".into(), "test.ping".into())]);
        std::fs::write(job.join(".load.p"), pack(&load)).expect("load");
        let targets = Mp::Array(vec!["web1".into(), "web2".into()]);
        std::fs::write(job.join(".minions.p"), pack(&targets)).expect("minions");
        std::fs::create_dir(job.join("web1")).expect("minion folder");
        metrics.refresh_jobs(&[listed()]);
        let s = summary(&metrics);
        assert_eq!(s.jobs, [("test.ping".to_string(), 1)]);
        let missed: Vec<(&str, u64)> = s.minions.iter().map(|m| (&*m.name, m.missed)).collect();
        assert_eq!(missed, [("web1", 0), ("web2", 1)]);
    }

    #[test]
    fn accepted_keys_are_the_files_and_not_dot_files_or_folders() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for name in ["web1", "db1", ".web1.swp"] {
            std::fs::write(tmp.path().join(name), "key").expect("write");
        }
        std::fs::create_dir(tmp.path().join("folder")).expect("mkdir");
        let keys = accepted(tmp.path()).expect("readable");
        assert_eq!(keys, ["db1".into(), "web1".into()] as [Box<str>; 2]);
        assert!(accepted(&tmp.path().join("missing")).is_err());
    }
}
