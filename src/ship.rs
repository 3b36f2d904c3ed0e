//! The shipping pipeline behind `backfill` and `sync`: find the returns to ship, decode and
//! extract them in jid order, send their events, and record each return in the checkpoint only
//! after the confirmation that covers it. A bad file is named in one warning and counted; the
//! run goes on.

mod budget;
mod work;

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use indicatif::ProgressBar;
use log::{debug, info, warn};

use crate::cache::{scan, JobDir};
use crate::checkpoint::{Checkpoint, SaveStats};
use crate::config::Config;
use crate::metrics::{Metrics, Own};
use crate::sink::stdout::StdoutSink;
use crate::sink::{self, Sink, SinkError};
use crate::{pipeline, progress, time};
use budget::Budget;
use work::{load_job, work, BufferPool, Done, Loaded, Read, Step};

/// Confirm delivery whenever this much is unconfirmed: bounds memory and what a failure resends.
const CONFIRM_BYTES: usize = 4 << 20;
/// A folder's mtime is trusted to show a new entry only when older than this (the clock
/// behind mtimes is coarse).
const SETTLED_AFTER: Duration = Duration::from_secs(2);
/// Returns per hand-off to a worker thread, at most: fewer when they are big (see [`Budget`]).
const CHUNK: usize = 16;

/// Which returns a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every return in the time range, shipped or not.
    Backfill,
    /// Every return the checkpoint does not hold.
    Sync,
}

/// What a run did, for the summary line and the exit status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub jobs: u64,
    pub returns: u64,
    pub events: u64,
    /// Jobs with nothing to ship: not a state run, `nocache`, out of range, or filtered out.
    pub skipped: u64,
    pub failed_files: u64,
    pub reconnects: u64,
    /// Events the receiver refused for good (a mapping error), their returns still recorded.
    pub rejected: u64,
}

impl Totals {
    pub fn summary(&self) -> String {
        let rejected = match self.rejected {
            0 => String::new(),
            n => format!(", {n} events rejected by the receiver"),
        };
        format!(
            "{} jobs, {} returns, {} events, {} skipped, {} failed files, {} reconnects{rejected}",
            self.jobs, self.returns, self.events, self.skipped, self.failed_files, self.reconnects
        )
    }
}

/// A return whose events were sent, waiting for the confirmation that makes it done.
struct Pending {
    key: String,
    jid: String,
    minion: String,
    /// When it was read: the lag `watch` reports.
    seen: Instant,
}

/// Runs one pass of `mode` over the whole cache and confirms it: `backfill` and `sync`.
/// `Err` carries what was done and why delivery stopped (exit status 3).
pub fn run(
    config: &Config,
    mode: Mode,
    checkpoint: Option<Checkpoint>,
) -> Result<Totals, (Totals, String)> {
    let mut shipper = Shipper::new(config, checkpoint, None);
    // A backfill replays old history on purpose: its age says nothing about an outage.
    shipper.warn_cleanup = mode == Mode::Sync;
    let result = shipper.pass(mode, None).and_then(|()| shipper.confirm());
    if let (Some(metrics), Some(path)) = (&shipper.metrics, &config.metrics_file) {
        metrics.set_own(shipper.own_metrics(0.0));
        if let Err(e) = metrics.write_file(path) {
            warn!("metrics file {}: {e}", path.display());
        }
    }
    shipper.finish(result)
}

/// The sink, the checkpoint and the returns sent but not confirmed yet, kept across passes
/// (`watch` makes many passes on one connection).
pub struct Shipper<'c> {
    config: &'c Config,
    sink: Box<dyn Sink>,
    checkpoint: Option<Checkpoint>,
    pending: Vec<Pending>,
    /// The oldest job whose returns a pass left unshipped (jobs go in jid order).
    left_behind: Option<String>,
    pub totals: Totals,
    pool: BufferPool,
    /// Progress bars on a terminal: for a run, not for a daemon's small passes.
    pub bars: bool,
    /// Set by a signal handler: end the pass after the return at hand.
    stop: Option<Arc<AtomicBool>>,
    /// Why the checkpoint could not be saved: the run stops (exit status 3).
    save_failed: Option<String>,
    /// Warn when unshipped returns near the master's keep_jobs (sync and watch).
    pub warn_cleanup: bool,
    /// Set while waiting on the sink, for the progress bar.
    blocked: progress::Blocked,
    /// The fleet's health, rebuilt from the cache and updated as returns are read.
    pub metrics: Option<Metrics>,
}

impl<'c> Shipper<'c> {
    /// `stop`, when set, ends a pass after the return at hand and makes a sink waiting for a
    /// receiver give up at once.
    pub fn new(
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
            pool: BufferPool::default(),
            bars: !config.quiet,
            stop,
            save_failed: None,
            warn_cleanup: true,
            blocked: progress::Blocked::default(),
            metrics: config.metrics().then(|| Metrics::rebuilt(config)),
        }
    }

    /// The checkpoint to record into: none on a dry run.
    fn recording(&mut self) -> Option<&mut Checkpoint> {
        self.checkpoint.as_mut().filter(|_| !self.config.dry_run)
    }

    /// Ships what `mode` takes from `dirs`, or from a scan of the whole cache (which also
    /// prunes the checkpoint). Confirms whenever enough is unconfirmed, not at the end.
    pub fn pass(&mut self, mode: Mode, dirs: Option<Vec<JobDir>>) -> Result<(), SinkError> {
        let config = self.config;
        let dirs = match dirs {
            Some(dirs) => dirs,
            None => self.scan_all(mode),
        };
        let in_flight: HashSet<(&str, &str)> = self
            .pending
            .iter()
            .map(|p| (p.key.as_str(), p.minion.as_str()))
            .collect();
        let (jobs, settled) = plan(
            config,
            mode,
            self.checkpoint.as_ref(),
            &in_flight,
            dirs,
            &mut self.totals,
        );
        drop(in_flight);
        if let Some(cp) = self.recording() {
            for (key, mtime) in settled {
                cp.settle(&key, mtime);
            }
        }
        // A backfill lists each job when its turn comes: memory holds one job's minion names,
        // not the whole cache's. Its bar counts the minion folders the folders' link counts tell.
        let lazy = mode == Mode::Backfill;
        let returns: usize = jobs
            .iter()
            .map(|(d, m)| if lazy { d.subfolders } else { m.len() })
            .sum();
        let bar = progress::bar(
            !self.bars || jobs.is_empty(),
            returns as u64,
            self.blocked.clone(),
        );
        bar.set_message(self.bar_message());
        let pool = std::mem::take(&mut self.pool);
        // A pass of a chunk or less (most of watch's) is not worth starting threads for.
        let threads = if returns <= CHUNK { 1 } else { config.threads };
        // Two hand-offs per worker plus one in order keep the cores busy. What bounds memory is
        // the budget: each hand-off takes its returns' share before it is made, and gives it
        // back once their events are sent.
        let window = 2 * threads + 1;
        let budget = Budget::new(config.memory_budget);
        let share = budget.share(window);
        let (dirs, minion_lists): (Vec<JobDir>, Vec<Vec<String>>) = jobs.into_iter().unzip();
        // Jobs are loaded in order on one thread, their returns decoded and encoded on all cores.
        let steps = dirs.iter().zip(minion_lists).flat_map(|(dir, minions)| {
            let (loaded, load_failed) = load_job(config, mode, dir);
            let job = match &loaded {
                Loaded::Job(job) => Some(Arc::new(job.clone())),
                _ => None,
            };
            let minions = match (&job, lazy) {
                (Some(_), true) => dir.list_minions(),
                _ => minions,
            };
            let n = if lazy && job.is_none() {
                dir.subfolders
            } else {
                minions.len()
            };
            let (budget, pool) = (&budget, &pool);
            let returns = job
                .map(move |job| {
                    let costs: Vec<u64> = minions
                        .iter()
                        .map(|m| budget::cost(&dir.return_path(m), config.max_return_bytes))
                        .collect();
                    budget::runs(&costs, CHUNK, share)
                        .into_iter()
                        .map(move |(start, end, cost)| {
                            budget.take(cost);
                            let chunk = minions[start..end].to_vec();
                            let step = Step::Returns(dir, job.clone(), chunk, cost);
                            // One that goes alone is worked on here: no worker could work
                            // beside it anyway, and on one thread the allocator keeps one copy
                            // of its memory for reuse, not one per worker thread.
                            if budget.alone(cost) {
                                Step::Worked(work(config, pool, step))
                            } else {
                                step
                            }
                        })
                })
                .into_iter()
                .flatten();
            std::iter::once(Step::Job(dir, n, loaded, load_failed)).chain(returns)
        });
        let result = pipeline::ordered(
            threads,
            window,
            steps,
            |step| work(config, &pool, step),
            |done| {
                let cost = match &done {
                    Done::Returns(_, _, cost) => *cost,
                    Done::Job(..) => 0,
                };
                let taken = self.take(done, &bar, &pool);
                budget.give(cost);
                if taken.is_err() {
                    budget.close();
                }
                taken
            },
        );
        self.pool = pool;
        bar.finish_and_clear();
        result
    }

    /// The progress bar's message: events so far, "printed" on a dry run.
    fn bar_message(&self) -> String {
        let stats = self.sink.stats();
        if self.config.dry_run {
            format!("{} events printed", stats.events_sent)
        } else {
            format!(
                "{} events sent, {} reconnects",
                stats.events_sent, stats.reconnects
            )
        }
    }

    /// Every job folder of the cache, listed where the checkpoint says it must be; prunes the
    /// checkpoint of the jobs gone.
    pub fn scan_all(&mut self, mode: Mode) -> Vec<JobDir> {
        let found = progress::counter(!self.bars, "jobs found");
        let checkpoint = self.checkpoint.as_ref().filter(|_| mode == Mode::Sync);
        // A backfill lists each job at its turn; a sync only the jobs not settled.
        let list = |key: &str, mtime| {
            mode == Mode::Sync && checkpoint.is_none_or(|cp| cp.needs_listing(key, mtime))
        };
        let (dirs, problems) = scan(
            &self.config.cache_dir,
            |n| found.set_position(n as u64),
            list,
        );
        found.finish_and_clear();
        for p in &problems {
            warn!("{}: {}", p.path.display(), p.why);
        }
        self.totals.failed_files += problems.len() as u64;
        // A folder that could not be read may still hold jobs: prune only after a clean scan.
        if problems.is_empty() {
            let keys = dirs.iter().map(|d| d.key.as_str()).collect();
            if let Some(metrics) = &self.metrics {
                metrics.retain(&keys);
            }
            if let Some(cp) = self.recording() {
                let pruned = cp.prune(&keys);
                if pruned > 0 {
                    debug!("forgot {pruned} jobs the master cleaned up");
                }
            }
        }
        dirs
    }

    /// One result of the pipeline, in jid order: count it, send it, confirm when due.
    fn take(
        &mut self,
        done: Done<'_>,
        bar: &ProgressBar,
        pool: &BufferPool,
    ) -> Result<(), SinkError> {
        if self
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        {
            return Err(SinkError::Stopped);
        }
        match done {
            Done::Job(dir, n, loaded, failed) => {
                self.totals.failed_files += u64::from(failed);
                match loaded {
                    Loaded::Job(_) => self.totals.jobs += 1,
                    Loaded::NonState => {
                        debug!(
                            "job {}: nothing to ship (not a state run, or filtered out)",
                            dir.jid
                        );
                        if let Some(cp) = self.recording() {
                            cp.record_non_state(&dir.key, &dir.jid);
                        }
                        self.totals.skipped += 1;
                        // The bar counts returns that ship.
                        bar.dec_length(n as u64);
                    }
                    Loaded::NotYet => {
                        debug!("job {}: not complete yet, left for a later pass", dir.jid);
                        self.left_behind.get_or_insert(dir.jid.clone());
                        bar.dec_length(n as u64);
                    }
                }
            }
            Done::Returns(dir, returns, _) => {
                for Read {
                    minion,
                    encoded,
                    events,
                    part,
                    seen,
                } in returns
                {
                    self.totals.returns += part.returns;
                    self.totals.failed_files += part.failed_files;
                    // The bar counts the returns the summary counts.
                    if part.returns > 0 {
                        bar.inc(1);
                    } else {
                        bar.dec_length(1);
                    }
                    if let (Some(metrics), Some(seen)) = (&self.metrics, seen) {
                        metrics.observe(&dir.key, &dir.jid, seen);
                    }
                    // Not landed yet: not done either.
                    let Some(n) = events else { continue };
                    // Pending before sending: a failed send ends the run unconfirmed, unrecorded.
                    self.pending.push(Pending {
                        key: dir.key.clone(),
                        jid: dir.jid.clone(),
                        minion,
                        seen: Instant::now(),
                    });
                    if n > 0 {
                        self.blocked.start();
                        let sent = self.sink.send(&encoded.bytes, &encoded.keys);
                        self.blocked.end();
                        sent?;
                        self.totals.events += n;
                    }
                    pool.give(encoded.bytes);
                    if self.sink.unconfirmed() >= CONFIRM_BYTES {
                        self.confirm()?;
                    }
                }
                bar.set_message(self.bar_message());
            }
        }
        Ok(())
    }

    /// Confirms delivery, then records and saves every return sent before it. A save that
    /// fails ends the run: shipping on, or running again, would send the same events again
    /// and again without ever recording them.
    pub fn confirm(&mut self) -> Result<(), SinkError> {
        self.blocked.start();
        let confirmed = self.sink.confirm();
        self.blocked.end();
        confirmed?;
        let pending = std::mem::take(&mut self.pending);
        let Some(cp) = self.checkpoint.as_mut().filter(|_| !self.config.dry_run) else {
            return Ok(());
        };
        if !pending.is_empty() {
            debug!("{} returns confirmed; saving the checkpoint", pending.len());
        }
        for p in &pending {
            cp.record(&p.key, &p.jid, &p.minion);
        }
        if let Err(e) = cp.save() {
            self.save_failed = Some(format!("{e:#}"));
            // Ends the pass like a stop request; `finish` tells why.
            return Err(SinkError::Stopped);
        }
        Ok(())
    }

    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// Whether the checkpoint could not be saved: the run must end.
    pub fn save_failed(&self) -> bool {
        self.save_failed.is_some()
    }

    /// What saving the checkpoint has cost so far.
    pub fn save_stats(&self) -> SaveStats {
        self.checkpoint
            .as_ref()
            .map(Checkpoint::save_stats)
            .unwrap_or_default()
    }

    /// Returns in the cache that the checkpoint does not hold as done (one scan): what waits
    /// for a receiver. Returns of jobs not yet known to be non-state are counted too.
    pub fn waiting(&self) -> usize {
        let cp = self.checkpoint.as_ref();
        let list = |key: &str, mtime| cp.is_none_or(|cp| cp.needs_listing(key, mtime));
        let (dirs, _) = scan(&self.config.cache_dir, |_| {}, list);
        let mut totals = Totals::default();
        let (jobs, _) = plan(
            self.config,
            Mode::Sync,
            cp,
            &HashSet::new(),
            dirs,
            &mut totals,
        );
        jobs.iter().map(|(_, minions)| minions.len()).sum()
    }

    /// When the oldest return sent but not confirmed was read, if any.
    pub fn oldest_unconfirmed(&self) -> Option<Instant> {
        self.pending.first().map(|p| p.seen)
    }

    /// Forgets what was sent but not confirmed: after a failed delivery those returns are not
    /// recorded, so the next full pass ships them again.
    pub fn drop_unconfirmed(&mut self) {
        self.pending.clear();
    }

    pub fn reconnects(&self) -> u64 {
        self.sink.stats().reconnects
    }

    /// saltship's own numbers for the metrics, with `lag` as the caller measured it.
    pub fn own_metrics(&self, lag: f64) -> Own {
        Own {
            returns: self.totals.returns,
            events: self.totals.events,
            failed_files: self.totals.failed_files,
            reconnects: self.reconnects(),
            lag,
            checkpoint_saves: self.save_stats().saves,
            checkpoint_written_bytes: self.save_stats().bytes,
            ..Own::default()
        }
    }

    /// Warns about returns near cleanup and turns the outcome into the run's result.
    pub fn finish(mut self, result: Result<(), SinkError>) -> Result<Totals, (Totals, String)> {
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
        if let Some(why) = self.save_failed {
            return Err((
                self.totals,
                format!("{why}; stopped, since what is shipped cannot be recorded"),
            ));
        }
        match result {
            Ok(()) | Err(SinkError::Closed | SinkError::Stopped) => Ok(self.totals),
            Err(e) => {
                let from = self.pending.first().map_or(String::new(), |p| {
                    format!("; not delivered: every event from job {} on", p.jid)
                });
                Err((self.totals, format!("{e}{from}")))
            }
        }
    }
}

/// Unshipped returns are lost when the master's cleanup (keep_jobs) deletes their job: warn
/// once they are three quarters of the way there.
fn warn_before_cleanup(config: &Config, jid: &str) {
    let Some(publish) = time::jid_instant(jid, config.jid_zone) else {
        return;
    };
    let age = chrono::Utc::now().timestamp_micros() - publish;
    if age > config.keep_jobs / 4 * 3 {
        let hours = |t: i64| t as f64 / 3600.0 / time::SECOND as f64;
        warn!(
            "returns of job {jid} are still unshipped after {:.1} h; the master deletes jobs after {:.1} h (keep_jobs)",
            hours(age),
            hours(config.keep_jobs)
        );
    }
}

/// The jobs with returns to take, in jid order, each with those returns' minions.
/// Job folders with the minions whose returns a pass takes, in jid order.
type Planned = Vec<(JobDir, Vec<String>)>;

/// `in_flight` holds the returns sent but not confirmed yet: a sync pass does not send them again.
fn plan(
    config: &Config,
    mode: Mode,
    checkpoint: Option<&Checkpoint>,
    in_flight: &HashSet<(&str, &str)>,
    dirs: Vec<JobDir>,
    totals: &mut Totals,
) -> (Planned, Vec<(String, i64)>) {
    let mut jobs = Vec::new();
    // Jobs whose every return is recorded done, with a folder older than the clock's grain:
    // the next scan need not list them while the folder's mtime stays the same. A job settles
    // on the pass after its last return was confirmed, never before: settled means done.
    let mut settled = Vec::new();
    let old_enough = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
        - SETTLED_AFTER.as_nanos() as i64;
    for mut dir in dirs {
        // A backfill's jobs are listed at their turn: `nocache` is found by its marker.
        if dir.nocache || (mode == Mode::Backfill && dir.dir.join("nocache").exists()) {
            debug!("job folder {}: nocache, nothing to ship", dir.key);
            totals.skipped += 1;
            continue;
        }
        let known = checkpoint.and_then(|cp| cp.job(&dir.key));
        let minions: Vec<String> = match (mode, known) {
            (Mode::Sync, Some(state)) if state.non_state => continue,
            (Mode::Sync, known) => dir
                .minions
                .iter()
                .filter(|m| {
                    !known.is_some_and(|s| checkpoint.is_some_and(|cp| cp.is_done(s, m)))
                        && !in_flight.contains(&(dir.key.as_str(), m.as_str()))
                })
                .cloned()
                .collect(),
            (Mode::Backfill, _) => Vec::new(),
        };
        if minions.is_empty() && mode == Mode::Sync {
            if let (Some(state), Some(mtime)) = (known, dir.mtime) {
                let all_done = !dir.minions.is_empty()
                    && checkpoint
                        .is_some_and(|cp| dir.minions.iter().all(|m| cp.is_done(state, m)));
                if mode == Mode::Sync
                    && all_done
                    && mtime < old_enough
                    && state.settled != Some(mtime)
                {
                    settled.push((dir.key.clone(), mtime));
                }
            }
            continue;
        }
        let jid = match known.map(|s| s.jid.to_string()).filter(|j| !j.is_empty()) {
            Some(jid) => Ok(Some(jid)),
            None => dir.read_jid(config.max_return_bytes),
        };
        match jid {
            Ok(Some(jid)) => dir.jid = jid,
            // Salt's cleanup deletes a folder without a `jid` file at once; one that still has a
            // `.load.p` is being created or half deleted: no job yet either way.
            Ok(None) => {
                if dir.load_path().exists() {
                    warn!("{}: missing or empty", dir.dir.join("jid").display());
                    totals.failed_files += 1;
                }
                continue;
            }
            // Not recorded: the job is tried again at the next pass.
            Err(p) => {
                warn!("{}: {}", p.path.display(), p.why);
                totals.failed_files += 1;
                continue;
            }
        }
        if mode == Mode::Backfill && !config.in_range(time::jid_instant(&dir.jid, config.jid_zone))
        {
            debug!("job {}: outside --since/--until, skipped", dir.jid);
            totals.skipped += 1;
            continue;
        }
        jobs.push((dir, minions));
    }
    jobs.sort_by(|(a, _), (b, _)| a.jid.cmp(&b.jid).then_with(|| a.dir.cmp(&b.dir)));
    (jobs, settled)
}

/// After a first run with `--start-at now`: every return already in the cache counts as done.
pub fn start_at_now(config: &Config, checkpoint: &mut Checkpoint) -> anyhow::Result<u64> {
    let (dirs, _) = scan(&config.cache_dir, |_| {}, |_, _| true);
    let mut returns = 0;
    for dir in dirs {
        let Ok(Some(jid)) = dir.read_jid(config.max_return_bytes) else {
            continue;
        };
        for minion in &dir.minions {
            checkpoint.record(&dir.key, &jid, minion);
            returns += 1;
        }
    }
    checkpoint.save()?;
    info!("starting at now: {returns} returns already in the cache will not be shipped");
    Ok(returns)
}
