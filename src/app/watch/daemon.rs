//! The daemon's clocks (rescans, stats lines, the metrics file, the systemd watchdog) and what
//! it tells systemd.

use std::path::Path;
use std::time::{Duration, Instant};

use log::{debug, error, info};

use super::watches::Watches;
use super::IDLE;
use crate::app::ship::{PassError, Shipper};
use crate::cli::{Config, DaemonOptions};
use crate::metrics;
use crate::sink::SinkError;

/// How often the jobs still waiting for minions are listed again for the fleet gauges.
const CENSUS_EVERY: Duration = Duration::from_secs(2);

/// The daemon's clocks: rescans, stats, metrics, the systemd watchdog.
pub(super) struct Daemon<'c> {
    pub(super) options: &'c DaemonOptions,
    pub(super) next_rescan: Instant,
    pub(super) next_stats: Instant,
    pub(super) next_metrics: Instant,
    pub(super) next_census: Instant,
    pub(super) next_watchdog: Option<Instant>,
    pub(super) last_pass: Instant,
    pub(super) events_seen: u64,
    pub(super) last_confirm: Option<std::time::SystemTime>,
    /// `--metrics-file`, written every 10 s.
    pub(super) metrics_file: Option<metrics::file::MetricsFile>,
}

impl<'c> Daemon<'c> {
    pub(super) fn new(config: &'c Config, options: &'c DaemonOptions) -> Daemon<'c> {
        let now = Instant::now();
        Daemon {
            options,
            next_rescan: now + options.rescan_interval,
            next_stats: now + options.stats_interval,
            next_metrics: now,
            next_census: now,
            next_watchdog: options.watchdog.map(|_| now),
            last_pass: now,
            events_seen: 0,
            last_confirm: None,
            metrics_file: config
                .metrics_file
                .clone()
                .map(metrics::file::MetricsFile::new),
        }
    }

    pub(super) fn next_deadline(&self, shipper: &Shipper<'_>) -> Instant {
        let confirm = shipper.oldest_unconfirmed().map(|_| self.last_pass + IDLE);
        // The first job whose --return-wait runs out.
        let job_due = shipper.next_job_due().map(|due| {
            let left = due - chrono::Utc::now().timestamp_micros();
            Instant::now() + Duration::from_micros(left.max(0) as u64)
        });
        [
            Some(self.next_rescan),
            Some(self.next_stats),
            confirm,
            self.next_watchdog,
            job_due,
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

    /// How a pass ended, for the loop: `Some` stops it. `sync --follow` gives up on a receiver
    /// as `sync` does (exit 3; the next start tries again); the daemon goes on.
    pub(super) fn ended(
        &mut self,
        shipper: &mut Shipper<'_>,
        result: Result<(), PassError>,
    ) -> Option<PassError> {
        match result {
            Err(e @ PassError::Sink(SinkError::Undelivered(_)))
                if self.options.idle_exit.is_some() =>
            {
                Some(e)
            }
            result => self.failed(shipper, result),
        }
    }

    /// `sync --follow`: nothing landed since `last_change`, nothing was sent, and nothing waits
    /// (confirmation, a job's --return-wait), for the idle time.
    pub(super) fn idle_for(&self, shipper: &Shipper<'_>, last_change: Instant) -> bool {
        self.options.idle_exit.is_some_and(|idle| {
            last_change.max(self.last_pass).elapsed() >= idle
                && shipper.oldest_unconfirmed().is_none()
                && shipper.next_job_due().is_none()
        })
    }

    /// `watches`: `None` while inotify could not be started (rescans only).
    pub(super) fn tick(&mut self, shipper: &Shipper<'_>, watches: Option<&Watches>) {
        let watches = watches.map_or(0, Watches::count);
        let now = Instant::now();
        if shipper.oldest_unconfirmed().is_none() && self.events_seen > 0 {
            self.last_confirm
                .get_or_insert_with(std::time::SystemTime::now);
        }
        if let (Some(at), Some(every)) = (self.next_watchdog, self.options.watchdog) {
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
            self.next_stats = now + self.options.stats_interval;
            let (events, rejected) = shipper.events();
            info!(
                "stats: {} returns, {events} events, {rejected} rejected, {} failed files, {} reconnects, lag {lag:.1} s, {watches} watches",
                t.returns,
                t.failed_files,
                shipper.reconnects()
            );
        }
        if let Some(metrics) = &shipper.metrics {
            // Jobs that run no state are not watched: their folders are listed again here
            // while their minions may still return.
            if now >= self.next_census {
                self.next_census = now + CENSUS_EVERY;
                metrics.refresh_open();
            }
            metrics.set_own(metrics::Own {
                watches: watches as u64,
                ..shipper.own_metrics(lag)
            });
            if let Some(file) = self
                .metrics_file
                .as_mut()
                .filter(|_| now >= self.next_metrics)
            {
                self.next_metrics = now + Duration::from_secs(10);
                file.write(metrics);
            }
        }
    }

    /// Pings the watchdog from a thread until the guard is dropped: for the catch-up, which
    /// runs before the loop that pings it.
    pub(super) fn feed_watchdog(&self) -> Option<Feeding> {
        let (socket, every) = (self.options.notify_socket.clone()?, self.options.watchdog?);
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(every / 2)
            {
                if let Err(e) = sd_notify(&socket, "WATCHDOG=1") {
                    debug!("sd_notify WATCHDOG=1: {e}");
                }
            }
        });
        Some(Feeding {
            done: Some(done),
            thread: Some(thread),
        })
    }

    /// Tells systemd (Type=notify) how we are, through `$NOTIFY_SOCKET`, without libsystemd.
    pub(super) fn notify(&self, state: &str) {
        let Some(socket) = &self.options.notify_socket else {
            return;
        };
        if let Err(e) = sd_notify(socket, state) {
            debug!("sd_notify {state}: {e}");
        }
    }
}

pub(super) fn sd_notify(socket: &Path, state: &str) -> std::io::Result<()> {
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

/// The watchdog fed by a thread; dropped, the thread stops.
pub(super) struct Feeding {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Feeding {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
