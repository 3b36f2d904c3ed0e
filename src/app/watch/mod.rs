//! `saltship watch`: catch up like `sync`, then follow the cache with inotify and ship each
//! return as it lands.
//!
//! Folders are watched only where returns can still land ([`watches`] has the rule). Every
//! change notify reports marks its job folder (or a new two-hex folder) for a pass that lists
//! the folder afresh, so a file made before its folder's watch was added is not missed.
//! Events are sent at once; delivery is confirmed (and the checkpoint saved) when the stream
//! has been idle for a second or every few MiB, so confirming adds no latency. A full rescan
//! every `--rescan-interval`, and whenever the kernel's event queue overflowed, catches
//! anything inotify missed, and keeps shipping even when no watch can be added at all.

mod watches;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use notify::event::{AccessKind, AccessMode, CreateKind};
use notify::EventKind;

use crate::app::ship::{Mode, PassError, Shipper, Totals};
use crate::app::Failure;
use crate::cache::JobDir;
use crate::checkpoint::Checkpoint;
use crate::cli::Config;
use crate::metrics;
use crate::sink::SinkError;
use watches::{Events, Watches};

/// Confirm once nothing was sent for this long.
const IDLE: Duration = Duration::from_secs(1);
/// After the first event, wait this long for its siblings (a return is several files).
const SETTLE: Duration = Duration::from_millis(2);
/// When to list a new two-hex or job folder again: a change between its listing and its watch
/// makes no event, nor (within the clock's grain) a new mtime.
const RELIST: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(500)];

/// Runs until SIGTERM or SIGINT; then confirms what was sent, saves the checkpoint and
/// returns. `Err` when the daemon cannot start (a usage error), or when the checkpoint could
/// not be saved.
pub(crate) fn run(config: &Config, checkpoint: Checkpoint) -> Result<Totals, Failure> {
    // Bound once the lock is ours (a second instance exits quietly before), before the
    // catch-up: a taken address is a configuration error. It serves the metrics once the
    // fleet is rebuilt.
    let listener: Option<TcpListener> = config
        .metrics_listen
        .map(|addr| {
            TcpListener::bind(addr)
                .map_err(|e| Failure::Usage(anyhow::anyhow!("--metrics-listen {addr}: {e}")))
        })
        .transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Failure::Usage(anyhow::anyhow!("cannot handle signal {signal}: {e}")))?;
    }
    let (tx, events) = channel();
    let mut follow = Follow {
        watcher_ok: true,
        limit_warned: false,
        dirty: BTreeSet::new(),
        rescan: false,
        later: Vec::new(),
    };
    // Served once the fleet is rebuilt: the first scrape is right.
    let mut shipper = Shipper::new(config, Some(checkpoint), Some(stop.clone()));
    if let (Some(listener), Some(metrics)) = (listener, &shipper.metrics) {
        match metrics::serve::spawn(listener, metrics.clone()) {
            Ok(addr) => info!("serving metrics at http://{addr}/metrics"),
            Err(e) => return Err(Failure::Usage(anyhow::anyhow!("--metrics-listen: {e}"))),
        }
    }
    let mut watches = None;
    let mut catch_up = full_pass(config, &tx, &mut shipper, &mut watches, &mut follow)
        .and_then(|()| shipper.confirm());
    if catch_up.is_ok() && shipper.totals.returns > 0 {
        // Once more, so the jobs just shipped settle now: the next rescans then need not list
        // them (hundreds of thousands of folders on a big master), nor their folders be watched.
        catch_up = full_pass(config, &tx, &mut shipper, &mut watches, &mut follow)
            .and_then(|()| shipper.confirm());
    }
    shipper.bars = false;
    let mut daemon = Daemon::new(config);
    let receiver_down = matches!(catch_up, Err(PassError::Sink(SinkError::Undelivered(_))));
    // Set when the checkpoint could not be saved: the daemon stops.
    let mut unsaved = daemon.failed(&mut shipper, catch_up);
    daemon.notify("READY=1");
    if receiver_down {
        // "0 events shipped" would read like success.
        warn!(
            "following {}, but no receiver is reachable: {} returns wait, and are shipped once one answers",
            config.cache_dir.display(),
            shipper.waiting()
        );
    } else {
        info!(
            "following {} ({} events shipped catching up)",
            config.cache_dir.display(),
            shipper.totals.events
        );
    }
    while !stop.load(Ordering::SeqCst) && unsaved.is_none() {
        let deadline = follow
            .next_relist()
            .map_or(daemon.next_deadline(&shipper), |r| {
                r.min(daemon.next_deadline(&shipper))
            });
        let wait = deadline.saturating_duration_since(Instant::now());
        follow.collect(
            config,
            &events,
            wait.min(Duration::from_millis(200)),
            watches.as_mut(),
        );
        follow.due();
        let now = Instant::now();
        let result = if follow.rescan || now >= daemon.next_rescan {
            debug!("full rescan (overflow: {})", follow.rescan);
            follow.dirty.clear();
            daemon.next_rescan = now + config.rescan_interval;
            full_pass(config, &tx, &mut shipper, &mut watches, &mut follow)
        } else if !follow.dirty.is_empty() {
            debug!("pass over {} folders", follow.dirty.len());
            let dirs = job_dirs(config, std::mem::take(&mut follow.dirty), watches.as_mut());
            if let Some(w) = watches.as_mut() {
                follow.dirty.extend(w.follow(&dirs, shipper.checkpoint()));
                follow.check(config, w);
            }
            shipper.pass(Mode::Sync, Some(dirs))
        } else if shipper.oldest_unconfirmed().is_some()
            && now.duration_since(daemon.last_pass) >= IDLE
        {
            shipper.confirm()
        } else {
            Ok(())
        };
        if shipper.totals.events != daemon.events_seen {
            daemon.events_seen = shipper.totals.events;
            daemon.last_pass = Instant::now();
        }
        unsaved = daemon.failed(&mut shipper, result);
        daemon.tick(&shipper, watches.as_ref());
    }
    daemon.notify("STOPPING=1");
    info!("stopping: confirming what was sent");
    // A stop during an outage must not wait for the receiver: the checkpoint holds what was
    // confirmed, and the rest is shipped again on the next start.
    let last = shipper.confirm();
    daemon.next_metrics = Instant::now();
    daemon.tick(&shipper, watches.as_ref());
    shipper.finish(unsaved.map_or(last, Err))
}

/// A pass over the whole cache with fresh watches: the two-hex folders watched before the
/// scan, the job and minion folders the rule wants right after it (and the folders that
/// changed meanwhile listed again), and the old watches dropped only then, so nothing lands
/// unseen. A fresh watcher also frees what notify (6.1) keeps of every watched folder
/// deleted under it (the kernel drops the watch first, and notify's removal stops at that
/// error), which would otherwise grow with every job the master cleans up.
fn full_pass(
    config: &Config,
    tx: &Events,
    shipper: &mut Shipper<'_>,
    watches: &mut Option<Watches>,
    follow: &mut Follow,
) -> Result<(), PassError> {
    let mut fresh = match Watches::new(&config.cache_dir, tx) {
        Ok(fresh) => Some(fresh),
        Err(e) => {
            // Once, not at every rescan.
            if follow.watcher_ok {
                follow.warn_watch(config, &e);
            }
            None
        }
    };
    follow.watcher_ok = fresh.is_some();
    let dirs = shipper.scan_all(Mode::Sync);
    if let Some(w) = fresh.as_mut() {
        follow.dirty.extend(w.follow(&dirs, shipper.checkpoint()));
        follow.check(config, w);
        debug!("{} inotify watches", w.count());
    }
    *watches = fresh;
    shipper.pass(Mode::Sync, Some(dirs))
}

/// What inotify told us, waiting to be shipped.
struct Follow {
    watcher_ok: bool,
    limit_warned: bool,
    /// Job folders (and new two-hex folders) to list afresh.
    dirty: BTreeSet<PathBuf>,
    /// The kernel dropped events: only a full scan is sure.
    rescan: bool,
    /// New folders to list again once notify has surely added their watches.
    later: Vec<(Instant, PathBuf)>,
}

impl Follow {
    /// Waits up to `wait` for a first event, then takes what follows it closely.
    fn collect(
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
                        config.rescan_interval.as_secs()
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
            if let Some(dir) = affected(&config.cache_dir, path) {
                // A new two-hex or job folder is watched right before it is listed, but what
                // lands in it within the clock's grain does not change its mtime: list it
                // again a little later. A new minion folder needs no such thing: its watch is
                // added only while it has no return, which is looked for once it is watched.
                let depth = path
                    .strip_prefix(&config.cache_dir)
                    .map_or(0, |r| r.components().count());
                if new_folder && depth <= 2 {
                    let now = Instant::now();
                    self.later
                        .extend(RELIST.iter().map(|d| (now + *d, dir.clone())));
                }
                self.dirty.insert(dir);
            }
        }
    }

    /// Moves the re-listings that are due into `dirty`.
    fn due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.later.drain(..).partition(|(at, _)| *at <= now);
        self.later = later;
        self.dirty.extend(due.into_iter().map(|(_, dir)| dir));
    }

    fn next_relist(&self) -> Option<Instant> {
        self.later.iter().map(|(at, _)| *at).min()
    }

    /// Warns about the first watch that could not be added, if any.
    fn check(&mut self, config: &Config, watches: &mut Watches) {
        if let Some(e) = watches.error.take() {
            self.warn_watch(config, &e);
        }
    }

    /// One warning for a watch limit, whatever number of folders hit it.
    fn warn_watch(&mut self, config: &Config, e: &notify::Error) {
        let every = config.rescan_interval.as_secs();
        if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
            if !self.limit_warned {
                self.limit_warned = true;
                warn!("inotify watch limit reached (sysctl fs.inotify.max_user_watches): new returns may wait for the rescan every {every} s");
            }
        } else {
            warn!(
                "cannot follow {}: {e}; rescanning every {every} s",
                config.cache_dir.display()
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

/// The job folders under `paths` (job folders, or two-hex folders holding them), listed now;
/// a new two-hex folder is watched before it is listed. Folders that vanished (the master's
/// cleanup) are simply not there.
fn job_dirs(
    config: &Config,
    paths: BTreeSet<PathBuf>,
    mut watches: Option<&mut Watches>,
) -> Vec<JobDir> {
    // A job folder can be named twice (itself, and by its new two-hex folder): list it once.
    let mut folders = BTreeSet::new();
    for path in paths {
        let depth = path
            .strip_prefix(&config.cache_dir)
            .map_or(0, |r| r.components().count());
        if depth == 1 {
            if let Some(w) = watches.as_deref_mut() {
                w.add(&path);
            }
            folders.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else {
            folders.insert(path);
        }
    }
    folders
        .into_iter()
        .filter_map(|dir| JobDir::listed(&config.cache_dir, dir))
        .collect()
}

/// The daemon's clocks: rescans, stats, metrics, the systemd watchdog.
struct Daemon<'c> {
    config: &'c Config,
    next_rescan: Instant,
    next_stats: Instant,
    next_metrics: Instant,
    next_watchdog: Option<Instant>,
    last_pass: Instant,
    events_seen: u64,
    last_confirm: Option<std::time::SystemTime>,
}

impl<'c> Daemon<'c> {
    fn new(config: &'c Config) -> Daemon<'c> {
        let now = Instant::now();
        Daemon {
            config,
            next_rescan: now + config.rescan_interval,
            next_stats: now + config.stats_interval,
            next_metrics: now,
            next_watchdog: config.watchdog.map(|_| now),
            last_pass: now,
            events_seen: 0,
            last_confirm: None,
        }
    }

    fn next_deadline(&self, shipper: &Shipper<'_>) -> Instant {
        let confirm = shipper.oldest_unconfirmed().map(|_| self.last_pass + IDLE);
        [
            Some(self.next_rescan),
            Some(self.next_stats),
            confirm,
            self.next_watchdog,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_rescan)
    }

    /// How a pass ended, for the daemon. A receiver that stayed away past `--deliver-timeout`
    /// is not the end: the returns sent but not confirmed are not recorded, so a later pass
    /// ships them again. A checkpoint that could not be saved is: it comes back.
    fn failed(
        &mut self,
        shipper: &mut Shipper<'_>,
        result: Result<(), PassError>,
    ) -> Option<PassError> {
        match result {
            Ok(()) | Err(PassError::Sink(SinkError::Stopped)) => None,
            Err(PassError::Sink(e)) => {
                error!("{e}; trying again at the next rescan");
                shipper.drop_unconfirmed();
                self.next_rescan = self.next_rescan.min(Instant::now() + IDLE);
                None
            }
            Err(save @ PassError::Save(_)) => Some(save),
        }
    }

    /// `watches`: `None` while inotify could not be started (rescans only).
    fn tick(&mut self, shipper: &Shipper<'_>, watches: Option<&Watches>) {
        let watches = watches.map_or(0, Watches::count);
        let now = Instant::now();
        if shipper.oldest_unconfirmed().is_none() && self.events_seen > 0 {
            self.last_confirm
                .get_or_insert_with(std::time::SystemTime::now);
        }
        if let (Some(at), Some(every)) = (self.next_watchdog, self.config.watchdog) {
            if now >= at {
                self.notify("WATCHDOG=1");
                self.next_watchdog = Some(now + every / 2);
            }
        }
        let lag = shipper
            .oldest_unconfirmed()
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let t = &shipper.totals;
        if now >= self.next_stats {
            self.next_stats = now + self.config.stats_interval;
            info!(
                "stats: {} returns, {} events, {} failed files, {} reconnects, lag {lag:.1} s, {watches} watches",
                t.returns,
                t.events,
                t.failed_files,
                shipper.reconnects()
            );
        }
        if let Some(metrics) = &shipper.metrics {
            metrics.set_own(metrics::Own {
                watches: watches as u64,
                ..shipper.own_metrics(lag)
            });
            if let Some(path) = self
                .config
                .metrics_file
                .as_ref()
                .filter(|_| now >= self.next_metrics)
            {
                self.next_metrics = now + Duration::from_secs(10);
                if let Err(e) = metrics.write_file(path) {
                    warn!("metrics file {}: {e}", path.display());
                }
            }
        }
    }

    /// Tells systemd (Type=notify) how we are, through `$NOTIFY_SOCKET`, without libsystemd.
    fn notify(&self, state: &str) {
        let Some(socket) = &self.config.notify_socket else {
            return;
        };
        if let Err(e) = sd_notify(socket, state) {
            debug!("sd_notify {state}: {e}");
        }
    }
}

fn sd_notify(socket: &Path, state: &str) -> std::io::Result<()> {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let text = socket.to_string_lossy();
    let addr = match text.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?
        .send_to_addr(state.as_bytes(), &addr)
        .map(|_| ())
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
