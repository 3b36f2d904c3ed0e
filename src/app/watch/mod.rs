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

mod daemon;
mod follow;
pub(crate) mod poll;
mod standby;
mod watches;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::app::ship::{Mode, PassError, Shipper, Totals};
use crate::app::Failure;
use crate::cache::JobDir;
use crate::checkpoint::Checkpoint;
use crate::cli::{Config, DaemonOptions, Discovery};
use crate::metrics;
use crate::sink::SinkError;
use daemon::Daemon;
use follow::Follow;
pub(crate) use standby::open as stand_by;
use watches::{Events, Watches};

/// Confirm once nothing was sent for this long.
pub(super) const IDLE: Duration = Duration::from_secs(1);
/// How long a stop waits for the receiver to confirm what was sent (within systemd's
/// TimeoutStopSec=30s).
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Runs until SIGTERM or SIGINT; then confirms what was sent, saves the checkpoint and
/// returns. `Err` when the daemon cannot start (a usage error), or when the checkpoint could
/// not be saved.
pub(crate) fn run(
    config: &Config,
    options: &DaemonOptions,
    checkpoint: Checkpoint,
) -> Result<Totals, Failure> {
    // Bound once the lock is ours (a second instance exits quietly before), before the
    // catch-up: a taken address is a configuration error. It serves the metrics once the
    // fleet is rebuilt.
    let listener: Option<TcpListener> = options
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
    let poll = discovery(config, options);
    let resolved;
    let options = if options.rescan_auto && poll.is_some() {
        resolved = DaemonOptions {
            rescan_interval: crate::cli::config::RESCAN_POLLING,
            ..options.clone()
        };
        &resolved
    } else {
        options
    };
    let mut follow = Follow {
        watcher_ok: true,
        limit_warned: false,
        dirty: BTreeSet::new(),
        rescan: false,
        later: Vec::new(),
        every: options.rescan_interval,
        poll,
        resettle: Vec::new(),
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
    // Ready before the catch-up: it takes as long as the backlog, or --deliver-timeout when
    // no receiver answers, and boot, `systemctl start` and Salt's service.running must not
    // wait for a receiver (the cache is the buffer). The watchdog is fed meanwhile by a
    // thread: every wait of the catch-up ends by a deadline of its own.
    let mut daemon = Daemon::new(config, options);
    daemon.notify("READY=1");
    let feeding = daemon.feed_watchdog();
    let mut catch_up = full_pass(config, &tx, &mut shipper, &mut watches, &mut follow)
        .and_then(|()| shipper.confirm());
    if catch_up.is_ok() && shipper.totals.returns > 0 {
        // Once more, so the jobs just shipped settle now: the next rescans then need not list
        // them (hundreds of thousands of folders on a big master), nor their folders be watched.
        catch_up = full_pass(config, &tx, &mut shipper, &mut watches, &mut follow)
            .and_then(|()| shipper.confirm());
    }
    drop(feeding);
    shipper.bars = false;
    let receiver_down = matches!(catch_up, Err(PassError::Sink(SinkError::Undelivered(_))));
    // Set when the checkpoint could not be saved (or sync --follow could not deliver): the
    // run stops.
    let mut unsaved = daemon.ended(&mut shipper, catch_up);
    if receiver_down {
        // "0 events shipped" would read like success.
        warn!(
            "following {}, but no receiver is reachable: {} returns wait, and are shipped once one answers",
            config.cache.dir.display(),
            shipper.waiting()
        );
    } else {
        info!(
            "following {} ({} events shipped catching up)",
            config.cache.dir.display(),
            shipper.totals.events
        );
    }
    let started = Instant::now();
    let mut last_change = started;
    while !stop.load(Ordering::SeqCst) && unsaved.is_none() {
        // Only `sync --follow` ends by itself; the daemon runs until it is stopped.
        if daemon.idle_for(&shipper, last_change)
            || options
                .follow_max
                .is_some_and(|max| started.elapsed() >= max)
        {
            debug!("--follow: quiet for long enough; exiting");
            break;
        }
        let deadline = follow
            .next_relist()
            .map_or(daemon.next_deadline(&shipper), |r| {
                r.min(daemon.next_deadline(&shipper))
            });
        let deadline = watches
            .as_ref()
            .and_then(Watches::next_poll)
            .map_or(deadline, |p| p.min(deadline));
        let wait = deadline.saturating_duration_since(Instant::now());
        follow.collect(
            config,
            &events,
            wait.min(Duration::from_millis(200)),
            watches.as_mut(),
        );
        if let Some(w) = watches.as_mut() {
            for (path, new) in w.poll() {
                follow.mark(config, &path, new);
            }
        }
        follow.due();
        let now = Instant::now();
        if !follow.dirty.is_empty() || follow.rescan {
            last_change = now;
        }
        let result = if follow.rescan || now >= daemon.next_rescan {
            debug!("full rescan (overflow: {})", follow.rescan);
            follow.dirty.clear();
            daemon.next_rescan = now + options.rescan_interval;
            full_pass(config, &tx, &mut shipper, &mut watches, &mut follow)
        } else if !follow.dirty.is_empty() {
            debug!("pass over {} folders", follow.dirty.len());
            let dirs = job_dirs(config, std::mem::take(&mut follow.dirty), watches.as_mut());
            if let Some(metrics) = &shipper.metrics {
                metrics.refresh_jobs(&dirs);
            }
            if let Some(w) = watches.as_mut() {
                follow.dirty.extend(w.follow(&dirs, shipper.checkpoint()));
                follow.check(config, w);
            }
            let jobs = config.events.jobs().then(|| dirs.clone());
            shipper
                .pass(Mode::Sync, Some(dirs))
                .and_then(|()| jobs.map_or(Ok(()), |d| shipper.job_pass(Mode::Sync, Some(d))))
        } else if shipper
            .next_job_due()
            .is_some_and(|d| d <= chrono::Utc::now().timestamp_micros())
        {
            // A job's wait ran out with no return landing: its job events go now.
            let dirs = shipper.due_jobs(chrono::Utc::now().timestamp_micros());
            shipper.job_pass(Mode::Sync, Some(dirs))
        } else if shipper.oldest_unconfirmed().is_some()
            && now.duration_since(daemon.last_pass) >= IDLE
        {
            shipper.confirm()
        } else {
            Ok(())
        };
        if let (Ok(()), Some(w)) = (&result, watches.as_mut()) {
            if !follow.resettle.is_empty() && shipper.oldest_unconfirmed().is_none() {
                let dirs = std::mem::take(&mut follow.resettle);
                follow.dirty.extend(w.follow(&dirs, shipper.checkpoint()));
            }
        }
        if shipper.totals.events != daemon.events_seen {
            daemon.events_seen = shipper.totals.events;
            daemon.last_pass = Instant::now();
        }
        unsaved = daemon.ended(&mut shipper, result);
        if let Some(Err(e)) = shipper.checkpoint().map(Checkpoint::lease_lost) {
            // Replaced while it hung: shipping on would only make duplicates.
            unsaved.get_or_insert(PassError::Save(format!("{e:#}")));
        }
        daemon.tick(&shipper, watches.as_ref());
    }
    daemon.notify("STOPPING=1");
    info!("stopping: confirming what was sent");
    // What was sent is confirmed and recorded before exit, or a restart (every config change
    // makes one) ships the last second again. The sink's waits end at once while the stop flag
    // is set, so it is cleared for STOP_GRACE at most: a second signal, or the grace running
    // out during an outage, ends the wait (the checkpoint holds what was confirmed, and the
    // rest is shipped again at the next start).
    stop.store(false, Ordering::SeqCst);
    let grace = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(STOP_GRACE);
        grace.store(true, Ordering::SeqCst);
    });
    let last = shipper.confirm();
    daemon.next_metrics = Instant::now();
    daemon.tick(&shipper, watches.as_ref());
    shipper.finish(unsaved.map_or(last, Err))
}

/// How `watch` finds changes: `Some(interval)` to poll (a shared filesystem, or
/// `--discovery poll`), `None` for inotify. Said once at start.
fn discovery(config: &Config, options: &DaemonOptions) -> Option<Duration> {
    let dir = config.cache.dir.display();
    let every = options.poll_interval;
    let shared = poll::shared_filesystem(&config.cache.dir);
    match (options.discovery, &shared) {
        (Discovery::Inotify, Some(fs)) => {
            warn!("{dir} is on {fs}: inotify misses what other hosts or mounts write there, which waits for the rescan (--discovery inotify)");
            None
        }
        (Discovery::Inotify, None) | (Discovery::Auto, None) => None,
        (Discovery::Poll, _) | (Discovery::Auto, Some(_)) => {
            let on = shared
                .as_ref()
                .map_or(String::new(), |fs| format!(" (on {fs})"));
            info!(
                "following {dir}{on} by polling its open folders every {} ms (--discovery)",
                every.as_millis()
            );
            Some(every)
        }
    }
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
    let mut fresh = match Watches::new(&config.cache.dir, tx, follow.poll) {
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
    let dirs = shipper.scan_all();
    if let Some(w) = fresh.as_mut() {
        follow.dirty.extend(w.follow(&dirs, shipper.checkpoint()));
        follow.check(config, w);
        debug!("{} inotify watches", w.count());
    }
    *watches = fresh;
    if follow.poll.is_some() {
        follow.resettle = dirs.clone();
    }
    shipper
        .pass(Mode::Sync, Some(dirs))
        .and_then(|()| shipper.job_pass(Mode::Sync, None))
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
            .strip_prefix(&config.cache.dir)
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
        .filter_map(|dir| JobDir::listed(&config.cache.dir, dir))
        .collect()
}
