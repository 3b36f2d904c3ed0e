//! The inotify watches of `watch`: only where a return can still land, so their number follows
//! the jobs in flight, not the size of the cache (a recursive watch on a cache of 200,000
//! returns needs 200,000 watches, past many kernels' `fs.inotify.max_user_watches`).
//!
//! The rule:
//! - the cache folder and its 256 `jobs/<xx>` folders, always (new job folders);
//! - a job folder (new minion folders, `.load.p`) unless its job runs no state function or is
//!   `nocache`, or it settled (every return in it done, or none came) and did not change for
//!   [`YOUNG`];
//! - a minion folder while it has no `return.p` yet, in a job folder watched.
//!
//! A return landing in a folder no longer watched (a minion that was down for hours) waits for
//! the rescan every `--rescan-interval`. Watches are added before their folder is listed, so
//! nothing lands unseen in between.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use super::poll::Poller;
use crate::cache::{mtime_nanos, JobDir};
use crate::checkpoint::Checkpoint;

/// A settled job folder stays watched this long after its last change: a highstate's returns
/// come over minutes, with lulls longer than the moment it takes a job to settle.
pub(super) const YOUNG: Duration = Duration::from_secs(3600);

pub(super) type Events = Sender<notify::Result<notify::Event>>;

/// How changes are found: inotify, or polling on a shared filesystem ([`Poller`]).
enum Backend {
    Notify(RecommendedWatcher),
    Poll(Poller),
}

/// One notify watcher (or poller) and the folders it watches.
pub(super) struct Watches {
    backend: Backend,
    root: PathBuf,
    watched: HashSet<PathBuf>,
    /// The first error adding a watch (the limit reached, most likely), for one warning.
    pub(super) error: Option<notify::Error>,
}

impl Watches {
    /// A watcher sending to `tx` (or, with `poll`, a poller stating every so often), on the
    /// cache folder `root` and its two-hex folders.
    pub(super) fn new(root: &Path, tx: &Events, poll: Option<Duration>) -> notify::Result<Watches> {
        let backend = match poll {
            Some(every) => Backend::Poll(Poller::new(every)),
            None => {
                let tx = tx.clone();
                Backend::Notify(notify::recommended_watcher(move |e| {
                    let _ = tx.send(e);
                })?)
            }
        };
        let mut watches = Watches {
            backend,
            root: root.to_owned(),
            watched: HashSet::new(),
            error: None,
        };
        match &mut watches.backend {
            Backend::Notify(w) => w.watch(root, RecursiveMode::NonRecursive)?,
            Backend::Poll(p) => {
                if !p.add(root, true) {
                    return Err(notify::Error::path_not_found().add_path(root.to_owned()));
                }
            }
        }
        watches.watched.insert(root.to_owned());
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            if is_hex_pair(&entry.file_name().to_string_lossy()) {
                watches.add(&entry.path());
            }
        }
        Ok(watches)
    }

    pub(super) fn count(&self) -> usize {
        self.watched.len()
    }

    /// Watches `dir`; whether the watch is new. A folder gone meanwhile is not an error.
    pub(super) fn add(&mut self, dir: &Path) -> bool {
        if self.watched.contains(dir) {
            return false;
        }
        let parent = dir.parent() == Some(self.root.as_path())
            && is_hex_pair(&dir.file_name().unwrap_or_default().to_string_lossy());
        let added = match &mut self.backend {
            Backend::Notify(w) => w.watch(dir, RecursiveMode::NonRecursive),
            // A folder gone meanwhile is not an error.
            Backend::Poll(p) => {
                if !p.add(dir, parent) {
                    return false;
                }
                Ok(())
            }
        };
        match added {
            Ok(()) => self.watched.insert(dir.to_owned()),
            Err(e) if gone(&e) => false,
            Err(e) => {
                self.error.get_or_insert(e);
                false
            }
        }
    }

    pub(super) fn remove(&mut self, dir: &Path) {
        if self.watched.remove(dir) {
            match &mut self.backend {
                // Fails only when the folder went and the kernel dropped the watch itself.
                Backend::Notify(w) => drop(w.unwatch(dir)),
                Backend::Poll(p) => p.remove(dir),
            }
        }
    }

    /// Polling: the folders whose stamp changed (each flagged when it is new in its folder),
    /// folders that went forgotten. Always empty under inotify, which sends its events.
    pub(super) fn poll(&mut self) -> Vec<(PathBuf, bool)> {
        let Backend::Poll(p) = &mut self.backend else {
            return Vec::new();
        };
        let changed = p.poll();
        if !changed.is_empty() {
            log::debug!("polling {} folders: {} changed", p.len(), changed.len());
        }
        let p = &*p;
        self.watched.retain(|d| p.contains(d));
        changed
    }

    /// Polling: when the next folder is due.
    pub(super) fn next_poll(&self) -> Option<std::time::Instant> {
        match &self.backend {
            Backend::Poll(p) => p.next_due(),
            Backend::Notify(_) => None,
        }
    }

    /// The kernel dropped the watch of a folder that went (the master's cleanup).
    pub(super) fn forget(&mut self, dir: &Path) {
        self.watched.remove(dir);
    }

    /// Watches what the rule wants of the job folders `dirs` (as listed before a pass, or as
    /// found by a scan), and unwatches the rest of them. Returns the job folders in which a
    /// return landed while its folder's watch was being added: to list again.
    pub(super) fn follow(
        &mut self,
        dirs: &[JobDir],
        checkpoint: Option<&Checkpoint>,
    ) -> Vec<PathBuf> {
        let mut relist = Vec::new();
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        for dir in dirs {
            let known = checkpoint.and_then(|cp| cp.job(&dir.key).map(|j| (cp, j)));
            let young = dir
                .mtime
                .is_some_and(|m| now.saturating_sub(m) < YOUNG.as_nanos() as i64);
            // Settled: every return in it done; or none came at all (a job never recorded
            // is listed, so its minions are all there is).
            // Or, once confirmed, every minion folder it has done (the settled mark itself is
            // written by the pass after).
            let settled = match known {
                Some((cp, j)) => {
                    (j.settled.is_some() && j.settled == dir.mtime)
                        || (!dir.minions.is_empty() && dir.minions.iter().all(|m| cp.is_done(j, m)))
                }
                None => dir.minions.is_empty(),
            };
            let wanted =
                !dir.nocache && !known.is_some_and(|(_, j)| j.non_state) && (young || !settled);
            if wanted {
                // A minion folder that came before the watch: seen by listing again.
                if self.add(&dir.dir) && mtime_nanos(&dir.dir) != dir.mtime {
                    relist.push(dir.dir.clone());
                }
            } else {
                self.remove(&dir.dir);
            }
            for minion in &dir.minions {
                let folder = dir.dir.join(minion);
                let done = known.is_some_and(|(cp, j)| cp.is_done(j, minion));
                if !wanted || done || folder.join("return.p").exists() {
                    self.remove(&folder);
                    continue;
                }
                if self.add(&folder) && folder.join("return.p").exists() {
                    relist.push(dir.dir.clone());
                }
            }
        }
        relist
    }
}

/// The folder went before its watch was added.
fn gone(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::PathNotFound => true,
        notify::ErrorKind::Io(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

fn is_hex_pair(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit())
}
