//! One pass: the returns a plan picked go through the pipeline in jid order (their job's load
//! first, then the returns in hand-offs the memory budget allows), and each result is counted,
//! sent and, once confirmed, recorded.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use log::{debug, warn};

use super::budget::{self, Budget};
use super::plan::{groups, plan};
use super::tally::Progress;
use super::work::{load_job, work, BufferPool, Done, Loaded, Opts, Read, Step};
use super::{Mode, PassError, Pending, Shipper, CHUNK, CONFIRM_BYTES};

/// Returns planned at once by a sync pass over many jobs (see [`Shipper::groups`]): a few MB
/// of minion names.
const GROUP_RETURNS: usize = 20_000;
use crate::app::{pipeline, progress};
use crate::cache::{scan, JobDir};
use crate::cli::Config;
use crate::sink::SinkError;

impl Shipper<'_> {
    /// Ships what `mode` takes from `dirs`, or from a scan of the whole cache (which also
    /// prunes the checkpoint). Confirms whenever enough is unconfirmed, not at the end.
    pub(crate) fn pass(&mut self, mode: Mode, dirs: Option<Vec<JobDir>>) -> Result<(), PassError> {
        let config = self.config;
        if !config.events.state {
            return Ok(());
        }
        let dirs = match dirs {
            Some(dirs) => dirs,
            None => self.scan_all(),
        };
        let full = std::mem::take(&mut self.full_scan);
        let groups = self.groups(mode, dirs);
        let mut progress = match self.bars && !groups.is_empty() {
            true => Progress::counted(
                Opts::of(config),
                mode,
                self.checkpoint.as_ref(),
                groups.iter().flatten(),
                self.blocked.clone(),
            ),
            false => Progress::hidden(),
        };
        let mut first = None;
        let mut result = Ok(());
        for group in groups {
            let (done, oldest) = self.pass_group(mode, group, &mut progress);
            if first.is_none() {
                first = oldest;
            }
            result = done;
            if result.is_err() {
                break;
            }
        }
        progress.finish();
        match (&result, first) {
            (Ok(()), _) if full => self.stuck = None,
            // The oldest return sent since the last confirm, or else the pass's first job.
            (Err(_), first) => {
                let sent = self.pending.first().map(|p| p.jid.clone());
                if let Some(jid) = sent.or(first) {
                    if self.stuck.as_ref().is_none_or(|s| *s > jid) {
                        self.stuck = Some(jid);
                    }
                }
            }
            _ => {}
        }
        result
    }

    /// `dirs` in groups for a sync (see [`groups`]), each job's jid from the checkpoint or its
    /// `jid` file.
    fn groups(&self, mode: Mode, dirs: Vec<JobDir>) -> Vec<Vec<JobDir>> {
        if mode == Mode::Backfill {
            return if dirs.is_empty() {
                Vec::new()
            } else {
                vec![dirs]
            };
        }
        let cp = self.checkpoint.as_ref();
        let max = self.config.cache.max_return_bytes;
        groups(dirs, GROUP_RETURNS, |dir| {
            let known = cp
                .and_then(|cp| cp.job(&dir.key))
                .map(|j| j.jid.to_string());
            known
                .filter(|j| !j.is_empty())
                .or_else(|| dir.read_jid(max).ok().flatten())
                .unwrap_or_default()
        })
    }

    /// Plans and ships one group of job folders; how it ended, and its oldest job's jid.
    fn pass_group(
        &mut self,
        mode: Mode,
        dirs: Vec<JobDir>,
        progress: &mut Progress,
    ) -> (Result<(), PassError>, Option<String>) {
        let config = self.config;
        let in_flight: HashSet<(&str, &str)> = self
            .pending
            .iter()
            .map(|p| (p.key.as_str(), p.minion.as_str()))
            .collect();
        let (jobs, settled, nocache) = plan(
            config,
            mode,
            self.checkpoint.as_ref(),
            &in_flight,
            dirs,
            (&mut self.totals, &mut self.seen),
        );
        drop(in_flight);
        let first = jobs.first().map(|(d, _)| d.jid.clone());
        if let Some(cp) = self.recording() {
            for (key, mtime) in settled {
                cp.settle(&key, mtime);
            }
            for (key, jid) in nocache {
                cp.record_non_state(&key, &jid);
            }
        }
        // A backfill lists each job when its turn comes: memory holds one job's minion names,
        // not the whole cache's. The link counts tell how many returns there are meanwhile.
        let lazy = mode == Mode::Backfill;
        let returns: usize = jobs
            .iter()
            .map(|(d, m)| if lazy { d.subfolders } else { m.len() })
            .sum();
        progress.bar.set_message(self.bar_message());
        let pool = std::mem::take(&mut self.pool);
        // A pass of a chunk or less (most of watch's) is not worth starting threads for.
        let threads = if returns <= CHUNK {
            1
        } else {
            config.cache.threads
        };
        // Two hand-offs per worker plus one in order keep the cores busy. What bounds memory is
        // the budget: each hand-off takes its returns' share before it is made, and gives it
        // back once their events are sent.
        let window = 2 * threads + 1;
        let budget = Budget::new(config.cache.memory_budget);
        let share = budget.share(window);
        let (dirs, minion_lists): (Vec<JobDir>, Vec<Vec<String>>) = jobs.into_iter().unzip();
        // Jobs are loaded in order on one thread, their returns decoded and encoded on all cores.
        let steps = dirs.iter().zip(minion_lists).flat_map(|(dir, minions)| {
            job_steps(config, mode, dir, minions, &budget, share, &pool)
        });
        let result = pipeline::ordered(
            threads,
            window,
            steps,
            |step| work(Opts::of(config), &pool, step),
            |done| {
                let cost = match &done {
                    Done::Returns(_, _, cost) => *cost,
                    Done::Job(..) => 0,
                };
                let taken = self.take(done, progress, &pool);
                budget.give(cost);
                if taken.is_err() {
                    budget.close();
                }
                taken
            },
        );
        self.pool = pool;
        // No more input is ready: what is batched goes now, not at the next confirm.
        (result.and_then(|()| Ok(self.sink.flush()?)), first)
    }

    /// The progress bar's message: events so far, "printed" on a dry run (whose events carry
    /// no keys for the sink to count).
    fn bar_message(&self) -> String {
        let events = self.totals.events;
        if self.config.dry_run {
            format!("{events} events printed")
        } else {
            let reconnects = self.sink.stats().reconnects;
            format!("{events} events sent, {reconnects} reconnects")
        }
    }

    /// Every job folder of the cache, not listed yet; prunes the checkpoint of the jobs gone.
    pub(crate) fn scan_all(&mut self) -> Vec<JobDir> {
        let found = progress::counter(!self.bars, "jobs found");
        // Each job is listed at its turn: a backfill's by the pass, a sync's by its plan (and
        // only the jobs not settled), a group at a time.
        let (dirs, problems) = scan(
            &self.config.cache.dir,
            |n| found.set_position(n as u64),
            |_, _| false,
        );
        found.finish_and_clear();
        for p in &problems {
            warn!("{}: {}", p.path.display(), p.why);
        }
        self.totals.failed_files += problems.len() as u64;
        self.full_scan = true;
        if let Some(metrics) = &self.metrics {
            metrics.refresh_jobs(&dirs);
            metrics.refresh_keys();
        }
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
        progress: &mut Progress,
        pool: &BufferPool,
    ) -> Result<(), PassError> {
        if self
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        {
            return Err(SinkError::Stopped.into());
        }
        match done {
            Done::Job(dir, n, loaded, failed, passed_over) => {
                self.totals.failed_files += u64::from(failed);
                // The bar counts the returns the summary counts.
                let taken_up = match &loaded {
                    Loaded::Job(_) => n as u64,
                    Loaded::NotYet => 0,
                    Loaded::NonState | Loaded::Filtered => passed_over.unwrap_or(0),
                };
                progress.job(&dir.key, taken_up);
                let skipped = match loaded {
                    Loaded::Job(_) => None,
                    Loaded::NonState => {
                        debug!(
                            "job {}: nothing to ship (not a state run, or filtered out)",
                            dir.jid
                        );
                        if let Some(cp) = self.recording() {
                            cp.record_non_state(&dir.key, &dir.jid);
                        }
                        passed_over
                    }
                    Loaded::Filtered => {
                        debug!("job {}: filtered out by --fun, not recorded", dir.jid);
                        passed_over
                    }
                    Loaded::NotYet => {
                        debug!("job {}: not complete yet, left for a later pass", dir.jid);
                        self.left_behind.get_or_insert(dir.jid.clone());
                        return Ok(());
                    }
                };
                if let Some(returns) = skipped {
                    progress.bar.inc(returns);
                }
                self.totals.take_job(&mut self.seen, &dir.key, skipped);
            }
            Done::Returns(dir, returns, _) => {
                for Read {
                    minion,
                    encoded,
                    events,
                    part,
                    seen,
                    filtered,
                } in returns
                {
                    self.totals.returns += part.returns;
                    self.totals.failed_files += part.failed_files;
                    progress.returned(part.returns > 0);
                    if let (Some(metrics), Some(seen)) = (&self.metrics, seen) {
                        metrics.observe(&dir.key, &dir.jid, seen);
                    }
                    // Not landed yet: not done either.
                    let Some(n) = events else { continue };
                    // Pending before sending: a failed send ends the run unconfirmed, unrecorded.
                    // A return a filter cut is never recorded: a run without the filter ships
                    // the rest of it.
                    if !filtered {
                        self.pending.push(Pending {
                            key: dir.key.clone(),
                            jid: dir.jid.clone(),
                            minion,
                            seen: Instant::now(),
                            sends: self.sends + u64::from(n > 0),
                        });
                    }
                    if n > 0 {
                        self.send(&encoded.bytes, &encoded.keys)?;
                        self.totals.events += n;
                    }
                    pool.give(encoded.bytes);
                    if self.sink.unconfirmed() >= CONFIRM_BYTES {
                        self.confirm()?;
                    }
                }
                progress.bar.set_message(self.bar_message());
            }
        }
        Ok(())
    }
}

/// One job's steps: its load, then its returns in hand-offs of at most [`CHUNK`] that fit
/// `share` of the budget. A backfill lists the job's minions only at its turn.
fn job_steps<'j>(
    config: &'j Config,
    mode: Mode,
    dir: &'j JobDir,
    minions: Vec<String>,
    budget: &'j Budget,
    share: u64,
    pool: &'j BufferPool,
) -> impl Iterator<Item = Step<'j>> + 'j {
    let lazy = mode == Mode::Backfill;
    let (loaded, load_failed) = load_job(Opts::of(config), mode, dir);
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
    let returns = job
        .map(move |job| {
            let costs: Vec<u64> = minions
                .iter()
                .map(|m| budget::cost(&dir.return_path(m), config.cache.max_return_bytes))
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
                        Step::Worked(work(Opts::of(config), pool, step))
                    } else {
                        step
                    }
                })
        })
        .into_iter()
        .flatten();
    std::iter::once(Step::Job(dir, n, loaded, load_failed)).chain(returns)
}
