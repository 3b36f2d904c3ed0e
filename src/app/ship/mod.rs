//! The shipping pipeline behind `backfill` and `sync`: find the returns to ship, decode and
//! extract them in jid order, send their events, and record each return in the checkpoint only
//! after the confirmation that covers it. A bad file is named in one warning and counted; the
//! run goes on.

mod budget;
mod counts;
mod job_files;
mod jobs;
mod pass;
mod plan;
mod tally;
mod work;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::app::progress;
use crate::app::Failure;
use crate::cache::scan;
use crate::checkpoint::{Checkpoint, SaveStats};
use crate::cli::Config;
use crate::metrics::{Metrics, Own, Settings};
use crate::sink::stdout::StdoutSink;
use crate::sink::{self, Sink, SinkError};
use crate::time;
use counts::Seen;
pub(crate) use counts::{in_cache, Totals};
use plan::plan;
use work::BufferPool;

/// Confirm delivery whenever this much is unconfirmed: bounds memory and what a failure resends.
const CONFIRM_BYTES: usize = 4 << 20;
/// A folder's mtime is trusted to show a new entry only when older than this (the clock
/// behind mtimes is coarse).
const SETTLED_AFTER: Duration = Duration::from_secs(2);
/// Returns per hand-off to a worker thread, at most: fewer when they are big (see [`budget::Budget`]).
const CHUNK: usize = 16;

/// Which returns a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every return in the time range, shipped or not.
    Backfill,
    /// Every return the checkpoint does not hold.
    Sync,
}

/// Why a pass ended early.
#[derive(Debug)]
pub(crate) enum PassError {
    /// The sink: a delivery that failed, a closed receiver, or a stop request.
    Sink(SinkError),
    /// The checkpoint could not be saved: the run must end (shipping on would send the same
    /// events again and again without ever recording them).
    Save(String),
}

impl From<SinkError> for PassError {
    fn from(e: SinkError) -> PassError {
        PassError::Sink(e)
    }
}

/// A return whose events were sent, waiting for the confirmation that makes it done.
struct Pending {
    key: String,
    jid: String,
    minion: String,
    /// When it was read: the lag `watch` reports.
    seen: Instant,
    /// The sink's `send` calls up to and with its events: it is delivered once the sink
    /// acknowledged that many ([`Sink::acknowledged`]).
    sends: u64,
}

/// Runs one pass of `mode` over the whole cache and confirms it: `backfill` and `sync`.
/// `Err` carries what was done and why delivery stopped (exit status 3).
pub(crate) fn run(
    config: &Config,
    mode: Mode,
    checkpoint: Option<Checkpoint>,
) -> Result<Totals, Failure> {
    let mut shipper = Shipper::new(config, checkpoint, None);
    // A backfill replays old history on purpose: its age says nothing about an outage.
    shipper.warn_cleanup = mode == Mode::Sync;
    let result = shipper
        .pass(mode, None)
        .and_then(|()| shipper.job_pass(mode, None))
        .and_then(|()| shipper.confirm());
    shipper.report_jobs(mode);
    if let (Some(metrics), Some(path)) = (&shipper.metrics, &config.metrics_file) {
        metrics.set_own(shipper.own_metrics(0.0));
        let mut file = crate::metrics::file::MetricsFile::new(path.clone());
        shipper.totals.metrics_unwritten = !file.write(metrics);
    }
    shipper.finish(result)
}

/// The sink, the checkpoint and the returns sent but not confirmed yet, kept across passes
/// (`watch` makes many passes on one connection).
pub(crate) struct Shipper<'c> {
    config: &'c Config,
    sink: Box<dyn Sink>,
    checkpoint: Option<Checkpoint>,
    pending: Vec<Pending>,
    /// The oldest job whose returns a pass left unshipped (jobs go in jid order).
    left_behind: Option<String>,
    pub(crate) totals: Totals,
    /// The jobs `totals` counted: each once, however often watch comes back to it.
    seen: Seen,
    pool: BufferPool,
    /// Progress bars on a terminal: for a run, not for a daemon's small passes.
    pub(crate) bars: bool,
    /// Set by a signal handler: end the pass after the return at hand.
    stop: Option<Arc<AtomicBool>>,
    /// Warn when unshipped returns near the master's keep_jobs (sync and watch).
    pub(crate) warn_cleanup: bool,
    /// Set while waiting on the sink, for the progress bar.
    blocked: progress::Blocked,
    /// The fleet's health, rebuilt from the cache and updated as returns are read.
    pub(crate) metrics: Option<Metrics>,
    /// Jobs whose job events wait for their minions or their `--return-wait`.
    pending_jobs: jobs::PendingJobs,
    /// Jobs whose job events were sent, waiting for the confirm: (folder key, jid, when, the
    /// sink's `send` calls up to and with its events).
    jobs_in_flight: Vec<(String, String, Instant, u64)>,
    /// The sink's `send` calls so far.
    sends: u64,
    job_totals: jobs::JobTotals,
    /// The oldest job a failed pass left with returns unsent (jid); cleared by a full pass
    /// that sends everything. For `saltship_oldest_unshipped_return_age_seconds`.
    stuck: Option<String>,
    /// Set by a scan of the whole cache: the next pass sees every return to ship.
    full_scan: bool,
}

impl<'c> Shipper<'c> {
    /// `stop`, when set, ends a pass after the return at hand and makes a sink waiting for a
    /// receiver give up at once.
    pub(crate) fn new(
        config: &'c Config,
        checkpoint: Option<Checkpoint>,
        stop: Option<Arc<AtomicBool>>,
    ) -> Shipper<'c> {
        let sink: Box<dyn Sink> = match &config.delivery {
            Some(opts) => sink::open(opts, stop.clone()),
            None => Box::new(StdoutSink::new()),
        };
        Shipper {
            config,
            sink,
            checkpoint,
            pending: Vec::new(),
            left_behind: None,
            totals: Totals::default(),
            seen: Seen::default(),
            pool: BufferPool::default(),
            // A dry run printing on the terminal has its events there: a bar would draw
            // over them.
            bars: !(config.quiet || config.dry_run && std::io::stdout().is_terminal()),
            stop,
            warn_cleanup: true,
            blocked: progress::Blocked::default(),
            metrics: config.metrics().then(|| {
                let settings = Settings {
                    cache: config.cache.dir.clone(),
                    zone: config.cache.jid_zone,
                    max_return_bytes: config.cache.max_return_bytes,
                    return_wait: config.return_wait,
                    keep_jobs: config.state.keep_jobs,
                    pki_dir: config.pki_dir.clone(),
                };
                Metrics::rebuilt(settings, &config.filter.funs)
            }),
            pending_jobs: jobs::PendingJobs::new(),
            jobs_in_flight: Vec::new(),
            sends: 0,
            job_totals: jobs::JobTotals::default(),
            stuck: None,
            full_scan: false,
        }
    }

    /// The checkpoint to record into: none on a dry run.
    fn recording(&mut self) -> Option<&mut Checkpoint> {
        self.checkpoint.as_mut().filter(|_| !self.config.dry_run)
    }

    /// Confirms delivery, then records and saves every return sent before it. A save that
    /// fails ends the run: shipping on, or running again, would send the same events again
    /// and again without ever recording them.
    pub(crate) fn confirm(&mut self) -> Result<(), PassError> {
        self.blocked.start();
        let confirmed = self.sink.confirm();
        self.blocked.end();
        if let Err(e) = confirmed {
            return Err(self.failed(e));
        }
        let pending = std::mem::take(&mut self.pending);
        let jobs = std::mem::take(&mut self.jobs_in_flight);
        self.record(&pending, &jobs)
    }

    /// Sends one return's (or job's) events, counting the call as the sink does.
    fn send(&mut self, bytes: &[u8], keys: &[crate::sink::Keys]) -> Result<(), PassError> {
        self.sends += 1;
        self.blocked.start();
        let sent = self.sink.send(bytes, keys);
        self.blocked.end();
        sent.map_err(|e| self.failed(e))
    }

    /// The sink gave up: the returns and jobs it acknowledged all the same (RELP frames
    /// answered 200 before the receiver died) are recorded, so the next run does not send them
    /// again; the rest stays unrecorded.
    fn failed(&mut self, e: SinkError) -> PassError {
        if !matches!(e, SinkError::Undelivered(_)) {
            return PassError::Sink(e);
        }
        let acked = self.sink.acknowledged();
        let (done, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.sends <= acked);
        let (jobs, other_jobs) = std::mem::take(&mut self.jobs_in_flight)
            .into_iter()
            .partition(|j| j.3 <= acked);
        self.pending = rest;
        self.jobs_in_flight = other_jobs;
        if done.is_empty() && jobs.is_empty() {
            return PassError::Sink(e);
        }
        debug!(
            "{} returns acknowledged before the sink gave up: recording them",
            done.len()
        );
        match self.record(&done, &jobs) {
            Ok(()) => PassError::Sink(e),
            Err(save) => save,
        }
    }

    /// Records and saves `pending` and `jobs`, delivered.
    fn record(
        &mut self,
        pending: &[Pending],
        jobs: &[(String, String, Instant, u64)],
    ) -> Result<(), PassError> {
        let Some(cp) = self.checkpoint.as_mut().filter(|_| !self.config.dry_run) else {
            return Ok(());
        };
        for (key, jid, ..) in jobs {
            cp.record_job_shipped(key, jid);
        }
        if !pending.is_empty() {
            debug!("{} returns confirmed; saving the checkpoint", pending.len());
        }
        for p in pending {
            cp.record(&p.key, &p.jid, &p.minion);
        }
        cp.save().map_err(|e| PassError::Save(format!("{e:#}")))
    }

    pub(crate) fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// What saving the checkpoint has cost so far.
    pub(crate) fn save_stats(&self) -> SaveStats {
        self.checkpoint
            .as_ref()
            .map(Checkpoint::save_stats)
            .unwrap_or_default()
    }

    /// The returns of state runs that the checkpoint does not hold as done (one scan): what
    /// waits for a receiver. A job not in the checkpoint yet is told by its `.load.p`.
    pub(crate) fn waiting(&self) -> u64 {
        let cp = self.checkpoint.as_ref();
        let list = |key: &str, mtime| cp.is_none_or(|cp| cp.needs_listing(key, mtime));
        let (dirs, _) = scan(&self.config.cache.dir, |_| {}, list);
        let (mut totals, mut seen) = (Totals::default(), Seen::default());
        let (jobs, _, _) = plan(
            self.config,
            Mode::Sync,
            cp,
            &HashSet::new(),
            dirs,
            (&mut totals, &mut seen),
        );
        jobs.iter()
            .filter(|(dir, _)| {
                cp.and_then(|cp| cp.job(&dir.key)).is_some()
                    || matches!(
                        work::load_job(work::Opts::of(self.config), Mode::Sync, dir).0,
                        work::Loaded::Job(_)
                    )
            })
            .map(|(dir, minions)| {
                minions
                    .iter()
                    .filter(|m| dir.return_path(m).is_file())
                    .count() as u64
            })
            .sum()
    }

    /// When the oldest return sent but not confirmed was read, if any.
    pub(crate) fn oldest_unconfirmed(&self) -> Option<Instant> {
        let job = self.jobs_in_flight.first().map(|j| j.2);
        self.pending
            .first()
            .map(|p| p.seen)
            .into_iter()
            .chain(job)
            .min()
    }

    /// Forgets what was sent but not confirmed: after a failed delivery those returns are not
    /// recorded, so the next full pass ships them again.
    pub(crate) fn drop_unconfirmed(&mut self) {
        self.pending.clear();
        self.jobs_in_flight.clear();
    }

    pub(crate) fn reconnects(&self) -> u64 {
        self.sink.stats().reconnects
    }

    /// Events sent so far, and of them those the receiver refused for good (an OTLP
    /// `partial_success`, a `_bulk` item's 400): shipped are the first less the second.
    pub(crate) fn events(&self) -> (u64, u64) {
        let rejected = self.sink.stats().rejected;
        (self.totals.events.saturating_sub(rejected), rejected)
    }

    /// saltship's own numbers for the metrics, with `lag` as the caller measured it.
    pub(crate) fn own_metrics(&self, lag: f64) -> Own {
        let (events, rejected) = self.events();
        Own {
            returns: self.totals.returns,
            events,
            rejected,
            failed_files: self.totals.failed_files,
            reconnects: self.reconnects(),
            lag,
            checkpoint_saves: self.save_stats().saves,
            checkpoint_written_bytes: self.save_stats().bytes,
            oldest_unshipped: self.oldest_unshipped(),
            ..Own::default()
        }
    }

    /// When the job of the oldest return not shipped yet was published: sent and not
    /// confirmed, or left unsent by a pass that failed.
    fn oldest_unshipped(&self) -> Option<i64> {
        let sent = self.pending.first().map(|p| &p.jid);
        let oldest = sent.into_iter().chain(self.stuck.as_ref()).min()?;
        time::jid_instant(oldest, self.config.cache.jid_zone)
    }

    /// Warns about returns near cleanup and turns the outcome into the run's result.
    pub(crate) fn finish(mut self, result: Result<(), PassError>) -> Result<Totals, Failure> {
        self.totals.reconnects = self.sink.stats().reconnects;
        self.totals.rejected = self.sink.stats().rejected;
        if let Some(jid) = self
            .pending
            .first()
            .map(|p| &p.jid)
            .into_iter()
            .chain(self.left_behind.as_ref())
            .min()
            .filter(|_| self.warn_cleanup)
        {
            warn_before_cleanup(self.config, jid);
        }
        match result {
            Ok(()) | Err(PassError::Sink(SinkError::Closed | SinkError::Stopped)) => {
                Ok(self.totals)
            }
            Err(PassError::Save(why)) => Err(Failure::Undelivered(
                self.totals,
                format!("{why}; stopped, since what is shipped cannot be recorded"),
            )),
            Err(PassError::Sink(e)) => {
                let from = self.pending.first().map_or(String::new(), |p| {
                    format!("; not delivered: every event from job {} on", p.jid)
                });
                Err(Failure::Undelivered(self.totals, format!("{e}{from}")))
            }
        }
    }
}

/// Unshipped returns are lost when the master's cleanup (keep_jobs) deletes their job: warn
/// once they are three quarters of the way there.
fn warn_before_cleanup(config: &Config, jid: &str) {
    let Some(publish) = time::jid_instant(jid, config.cache.jid_zone) else {
        return;
    };
    let age = chrono::Utc::now().timestamp_micros() - publish;
    if age > config.state.keep_jobs / 4 * 3 {
        let hours = |t: i64| t as f64 / 3600.0 / time::SECOND as f64;
        warn!(
            "returns of job {jid} are still unshipped after {:.1} h; the master deletes jobs after {:.1} h (keep_jobs)",
            hours(age),
            hours(config.state.keep_jobs)
        );
    }
}

/// After a first run with `--start-at now`: every return already in the cache counts as done.
pub(crate) fn start_at_now(config: &Config, checkpoint: &mut Checkpoint) -> anyhow::Result<u64> {
    let (dirs, _) = scan(&config.cache.dir, |_| {}, |_, _| true);
    // The returns that landed: one whose minion folder is still empty lands after "now".
    let counts = in_cache(&dirs, config.cache.max_return_bytes, |dir, jid, landed| {
        for minion in landed {
            checkpoint.record(&dir.key, jid, minion);
        }
    });
    checkpoint.save()?;
    info!(
        "starting at now: {} returns of {} jobs already in the cache will not be shipped",
        counts.returns, counts.jobs
    );
    Ok(counts.returns)
}
