//! What inotify says, turned into the folders a pass lists again: one event's siblings are
//! taken together, a new folder is listed again a little later, and an overflow asks for a
//! full rescan.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use log::{debug, warn};
use notify::event::{AccessKind, AccessMode, CreateKind};
use notify::EventKind;

use super::watches::Watches;
use crate::cli::Config;

/// After the first event, wait this long for its siblings (a return is several files).
const SETTLE: Duration = Duration::from_millis(2);
/// When to list a new two-hex or job folder again: a change between its listing and its watch
/// makes no event, nor (within the clock's grain) a new mtime.
const RELIST: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(500)];

/// What inotify told us, waiting to be shipped.
pub(super) struct Follow {
    pub(super) watcher_ok: bool,
    pub(super) limit_warned: bool,
    /// Job folders (and new two-hex folders) to list afresh.
    pub(super) dirty: BTreeSet<PathBuf>,
    /// The kernel dropped events: only a full scan is sure.
    pub(super) rescan: bool,
    /// New folders to list again once notify has surely added their watches.
    pub(super) later: Vec<(Instant, PathBuf)>,
    /// `--rescan-interval`, for the warnings.
    pub(super) every: Duration,
    /// Discovery by polling this often instead of inotify (a shared filesystem).
    pub(super) poll: Option<Duration>,
    /// The job folders of the last full scan while polling, to apply the rule again once what
    /// it sent is confirmed: until then every old job folder is polled (a stat through the
    /// network each), which on a 500-job GlusterFS cache cost 12% of a core idle.
    pub(super) resettle: Vec<crate::cache::JobDir>,
}

impl Follow {
    /// Waits up to `wait` for a first event, then takes what follows it closely.
    pub(super) fn collect(
        &mut self,
        config: &Config,
        events: &Receiver<notify::Result<notify::Event>>,
        wait: Duration,
        mut watches: Option<&mut Watches>,
    ) {
        let first = match events.recv_timeout(wait) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => return,
            Err(RecvTimeoutError::Disconnected) => {
                if self.watcher_ok {
                    self.watcher_ok = false;
                    warn!(
                        "inotify stopped; following the cache by rescans every {} s",
                        self.every.as_secs()
                    );
                }
                std::thread::sleep(wait);
                return;
            }
        };
        self.absorb(config, first, watches.as_deref_mut());
        let until = Instant::now() + SETTLE;
        while let Ok(e) = events.recv_timeout(until.saturating_duration_since(Instant::now())) {
            self.absorb(config, e, watches.as_deref_mut());
        }
    }

    fn absorb(
        &mut self,
        config: &Config,
        event: notify::Result<notify::Event>,
        watches: Option<&mut Watches>,
    ) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                debug!("notify: {e}");
                self.warn_watch(config, &e);
                self.rescan = true;
                return;
            }
        };
        if event.need_rescan() {
            debug!("inotify queue overflowed: rescanning");
            self.rescan = true;
        }
        // Opening or reading changes nothing; closing after a write (`.load.p`, `jid`) does.
        if matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write))
        {
            return;
        }
        if let (EventKind::Remove(_), Some(w)) = (event.kind, watches) {
            // The kernel dropped the watch of a folder that went.
            for path in &event.paths {
                w.forget(path);
            }
        }
        let new_folder = matches!(event.kind, EventKind::Create(CreateKind::Folder));
        for path in &event.paths {
            self.mark(config, path, new_folder);
        }
    }

    /// A change at `path` (inotify's, or the poller's), `new_folder` when it is a folder just
    /// made.
    pub(super) fn mark(&mut self, config: &Config, path: &Path, new_folder: bool) {
        if let Some(dir) = affected(&config.cache.dir, path) {
            // A new two-hex or job folder is watched right before it is listed, but what
            // lands in it within the clock's grain does not change its mtime: list it
            // again a little later. A new minion folder needs no such thing: its watch is
            // added only while it has no return, which is looked for once it is watched.
            let depth = path
                .strip_prefix(&config.cache.dir)
                .map_or(0, |r| r.components().count());
            if new_folder && depth <= 2 {
                let now = Instant::now();
                self.later
                    .extend(RELIST.iter().map(|d| (now + *d, dir.clone())));
            }
            self.dirty.insert(dir);
        }
    }

    /// Moves the re-listings that are due into `dirty`.
    pub(super) fn due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.later.drain(..).partition(|(at, _)| *at <= now);
        self.later = later;
        self.dirty.extend(due.into_iter().map(|(_, dir)| dir));
    }

    pub(super) fn next_relist(&self) -> Option<Instant> {
        self.later.iter().map(|(at, _)| *at).min()
    }

    /// Warns about the first watch that could not be added, if any.
    pub(super) fn check(&mut self, config: &Config, watches: &mut Watches) {
        if let Some(e) = watches.error.take() {
            self.warn_watch(config, &e);
        }
    }

    /// One warning for a watch limit, whatever number of folders hit it.
    pub(super) fn warn_watch(&mut self, config: &Config, e: &notify::Error) {
        let every = self.every.as_secs();
        if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
            if !self.limit_warned {
                self.limit_warned = true;
                warn!("inotify watch limit reached (sysctl fs.inotify.max_user_watches): new returns may wait for the rescan every {every} s");
            }
        } else {
            warn!(
                "cannot follow {}: {e}; rescanning every {every} s",
                config.cache.dir.display()
            );
        }
    }
}

/// The folder to list again for a change at `path`: its job folder (`jobs/ab/cdef…`), or a
/// two-hex folder that just appeared (`jobs/ab`). Temp files of Salt's atomic writes are
/// not returns yet: their rename is.
fn affected(root: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(root).ok()?;
    if rel
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".___atomic_write"))
    {
        return None;
    }
    let parts: Vec<_> = rel
        .components()
        .take(2)
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    let prefix = parts
        .first()?
        .to_str()
        .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some(match parts.get(1) {
        Some(job) => root.join(prefix).join(job),
        None => root.join(prefix),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_map_to_the_folder_to_list_again() {
        let root = Path::new("/c/jobs");
        assert_eq!(
            affected(root, Path::new("/c/jobs/ab/cdef/web1/return.p")),
            Some(PathBuf::from("/c/jobs/ab/cdef"))
        );
        assert_eq!(
            affected(root, Path::new("/c/jobs/ab/cdef/.load.p")),
            Some(PathBuf::from("/c/jobs/ab/cdef"))
        );
        assert_eq!(
            affected(root, Path::new("/c/jobs/ab")),
            Some(PathBuf::from("/c/jobs/ab"))
        );
        assert_eq!(
            affected(root, Path::new("/c/jobs/ab/cdef/web1/.___atomic_write12")),
            None
        );
        assert_eq!(affected(root, Path::new("/c/jobs/loads/x")), None);
        assert_eq!(affected(root, Path::new("/elsewhere/ab/cd")), None);
    }
}
