//! The shipping pipeline behind `backfill` and `sync`: find the returns to ship, decode and
//! extract them in jid order, send their events, and record each return in the checkpoint only
//! after the confirmation that covers it. A bad file is named in one warning and counted; the
//! run goes on.

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use indicatif::ProgressBar;

use log::{debug, info, warn};

use crate::cache::{scan, JobDir};
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::event::{to_map, write_json};
use crate::extract::{extract, StateEvent};
use crate::format::{self, Format};
use crate::job::Job;
use crate::msgpack::{self, ReadError};
use crate::sink::stdout::StdoutSink;
use crate::sink::tcp::{TcpOptions, TcpSink};
use crate::sink::{Sink, SinkError};
use crate::{glob, pipeline, progress, time};

/// Confirm delivery whenever this much is unconfirmed: bounds memory and what a failure resends.
const CONFIRM_BYTES: usize = 4 << 20;
/// A folder's mtime is trusted to show a new entry only when older than this (the clock
/// behind mtimes is coarse).
const SETTLED_AFTER: Duration = Duration::from_secs(2);
/// Returns per hand-off to a worker thread.
const CHUNK: usize = 16;
/// A job folder younger than this whose `.load.p` is missing or cut is still being written.
const SETTLING: Duration = Duration::from_secs(60);

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
}

impl Totals {
    pub fn summary(&self) -> String {
        format!(
            "{} jobs, {} returns, {} events, {} skipped, {} failed files, {} reconnects",
            self.jobs, self.returns, self.events, self.skipped, self.failed_files, self.reconnects
        )
    }
}

/// What the producer hands the workers, in jid order.
enum Step<'j> {
    /// A job's load, before its returns: (folder, how many returns, what the load said, whether
    /// `.load.p` was broken).
    Job(&'j JobDir, usize, Loaded, bool),
    /// Up to [`CHUNK`] returns of one job: fewer hand-offs between threads.
    Returns(&'j JobDir, std::sync::Arc<Job>, &'j [String]),
}

/// What the workers hand back, in the same order.
enum Done<'j> {
    Job(&'j JobDir, usize, Loaded, bool),
    /// Per return: the minion, its encoded events, how many (`None` when the return has not
    /// landed yet), and what reading it counted.
    Returns(&'j JobDir, Vec<(&'j str, Vec<u8>, Option<u64>, Totals)>),
}

/// The part of the pipeline that runs on every core: a return read, decoded, extracted and
/// encoded into bytes.
fn work<'j>(config: &Config, pool: &BufferPool, step: Step<'j>) -> Done<'j> {
    match step {
        Step::Job(dir, n, loaded, failed) => Done::Job(dir, n, loaded, failed),
        Step::Returns(dir, job, minions) => Done::Returns(
            dir,
            minions
                .iter()
                .map(|minion| {
                    let mut part = Totals::default();
                    let mut buf = pool.take();
                    let events = ship_return(config, &job, dir, minion, &mut buf, &mut part);
                    (minion.as_str(), buf, events, part)
                })
                .collect(),
        ),
    }
}

/// Output buffers go back and forth between the workers and the consumer instead of being
/// allocated per return: a return's events are often over the size at which the allocator
/// maps fresh pages, and faulting those in costs more than writing the events.
#[derive(Default)]
struct BufferPool(std::sync::Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_else(|| Vec::with_capacity(1 << 16))
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut pool) = self.0.lock() {
            // As many as can be in flight; a huge one is let go.
            if pool.len() < 64 && buf.capacity() <= 4 << 20 {
                pool.push(buf);
            }
        }
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
    let result = shipper.pass(mode, None).and_then(|()| shipper.confirm());
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
}

impl<'c> Shipper<'c> {
    /// `stop`, when set, ends a pass after the return at hand and makes a sink waiting for a
    /// receiver give up at once.
    pub fn new(
        config: &'c Config,
        checkpoint: Option<Checkpoint>,
        stop: Option<Arc<AtomicBool>>,
    ) -> Shipper<'c> {
        let sink: Box<dyn Sink> = match &config.tcp {
            Some(opts) => Box::new(TcpSink::new(TcpOptions {
                stop: stop.clone(),
                ..opts.clone()
            })),
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
        let bar = progress::bar(
            !self.bars || jobs.is_empty(),
            jobs.iter().map(|(_, m)| m.len() as u64).sum(),
        );
        // Jobs are loaded in order on one thread, their returns decoded and encoded on all cores.
        let steps = jobs.iter().flat_map(|(dir, minions)| {
            let (loaded, load_failed) = load_job(config, mode, dir);
            let job = match &loaded {
                Loaded::Job(job) => Some(Arc::new(job.clone())),
                _ => None,
            };
            let returns = job.into_iter().flat_map(move |job| {
                minions
                    .chunks(CHUNK)
                    .map(move |m| Step::Returns(dir, job.clone(), m))
            });
            std::iter::once(Step::Job(dir, minions.len(), loaded, load_failed)).chain(returns)
        });
        let pool = std::mem::take(&mut self.pool);
        // A pass of a chunk or less (most of watch's) is not worth starting threads for.
        let returns: usize = jobs.iter().map(|(_, m)| m.len()).sum();
        let threads = if returns <= CHUNK { 1 } else { config.threads };
        // Two chunks per worker plus one in order: enough to keep the cores busy, and what bounds
        // memory (each chunk holds CHUNK returns' events).
        let result = pipeline::ordered(
            threads,
            2 * threads + 1,
            steps,
            |step| work(config, &pool, step),
            |done| self.take(done, &bar, &pool),
        );
        self.pool = pool;
        bar.finish_and_clear();
        result
    }

    fn scan_all(&mut self, mode: Mode) -> Vec<JobDir> {
        let found = progress::counter(!self.bars, "jobs found");
        let checkpoint = self.checkpoint.as_ref().filter(|_| mode == Mode::Sync);
        let list = |key: &str, mtime| checkpoint.is_none_or(|cp| cp.needs_listing(key, mtime));
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
        if let Some(cp) = self.recording().filter(|_| problems.is_empty()) {
            let pruned = cp.prune(&dirs.iter().map(|d| d.key.as_str()).collect());
            if pruned > 0 {
                debug!("forgot {pruned} jobs the master cleaned up");
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
                        if let Some(cp) = self.recording() {
                            cp.record_non_state(&dir.key, &dir.jid);
                        }
                        self.totals.skipped += 1;
                        bar.inc(n as u64);
                    }
                    Loaded::NotYet => {
                        self.left_behind.get_or_insert(dir.jid.clone());
                        bar.inc(n as u64);
                    }
                }
            }
            Done::Returns(dir, returns) => {
                for (minion, buf, events, part) in returns {
                    self.totals.returns += part.returns;
                    self.totals.failed_files += part.failed_files;
                    bar.inc(1);
                    // Not landed yet: not done either.
                    let Some(n) = events else { continue };
                    // Pending before sending: a failed send ends the run unconfirmed, unrecorded.
                    self.pending.push(Pending {
                        key: dir.key.clone(),
                        jid: dir.jid.clone(),
                        minion: minion.to_owned(),
                        seen: Instant::now(),
                    });
                    if n > 0 {
                        self.sink.send(&buf, n)?;
                        self.totals.events += n;
                    }
                    pool.give(buf);
                    if self.sink.unconfirmed() >= CONFIRM_BYTES {
                        self.confirm()?;
                    }
                }
                let stats = self.sink.stats();
                bar.set_message(format!(
                    "{} events sent, {} reconnects",
                    stats.events_sent, stats.reconnects
                ));
            }
        }
        Ok(())
    }

    /// Confirms delivery, then records and saves every return sent before it.
    pub fn confirm(&mut self) -> Result<(), SinkError> {
        self.sink.confirm()?;
        let pending = std::mem::take(&mut self.pending);
        if let Some(cp) = self.recording() {
            for p in &pending {
                cp.record(&p.key, &p.jid, &p.minion);
            }
            // Not saving only means shipping these again next time: say so, but go on.
            if let Err(e) = cp.save() {
                warn!("{e:#}");
            }
        }
        Ok(())
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

    /// Warns about returns near cleanup and turns the outcome into the run's result.
    pub fn finish(mut self, result: Result<(), SinkError>) -> Result<Totals, (Totals, String)> {
        self.totals.reconnects = self.sink.stats().reconnects;
        if let Some(jid) = self
            .pending
            .first()
            .map(|p| &p.jid)
            .into_iter()
            .chain(self.left_behind.as_ref())
            .min()
        {
            warn_before_cleanup(self.config, jid);
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
        if dir.nocache {
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
                    !known.is_some_and(|s| s.done.contains(*m))
                        && !in_flight.contains(&(dir.key.as_str(), m.as_str()))
                })
                .cloned()
                .collect(),
            (Mode::Backfill, _) => std::mem::take(&mut dir.minions),
        };
        if minions.is_empty() {
            if let (Some(state), Some(mtime)) = (known, dir.mtime) {
                let all_done =
                    !dir.minions.is_empty() && dir.minions.iter().all(|m| state.done.contains(m));
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
        match known
            .map(|s| s.jid.clone())
            .filter(|j| !j.is_empty())
            .or_else(|| dir.read_jid())
        {
            Some(jid) => dir.jid = jid,
            None => {
                // Salt's cleanup deletes a folder without a `jid` file at once; one that still
                // has a `.load.p` is being created or half deleted: no job yet either way.
                if dir.load_path().exists() {
                    warn!("{}: missing or empty", dir.dir.join("jid").display());
                    totals.failed_files += 1;
                }
                continue;
            }
        }
        if mode == Mode::Backfill && !config.in_range(time::jid_instant(&dir.jid, config.jid_zone))
        {
            totals.skipped += 1;
            continue;
        }
        jobs.push((dir, minions));
    }
    jobs.sort_by(|(a, _), (b, _)| a.jid.cmp(&b.jid).then_with(|| a.dir.cmp(&b.dir)));
    (jobs, settled)
}

enum Loaded {
    Job(Job),
    /// Its functions are known and none is a state run (or none was asked for).
    NonState,
    /// `.load.p` is still being written: try again next run.
    NotYet,
}

/// The job from its `.load.p`, and whether that file was broken (warned about).
fn load_job(config: &Config, mode: Mode, dir: &JobDir) -> (Loaded, bool) {
    let publish = time::jid_instant(&dir.jid, config.jid_zone);
    let path = dir.load_path();
    let mut failed = false;
    let buf = match read_load(&path) {
        Ok(buf) => Some(buf),
        Err(e)
            if mode == Mode::Sync
                && settling(dir)
                && matches!(
                    e,
                    ReadError::Truncated | ReadError::Empty | ReadError::Io(_)
                ) =>
        {
            debug!("{}: {e}; the job is new, next run", path.display());
            return (Loaded::NotYet, false);
        }
        Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            warn!("{}: {e}", path.display());
            failed = true;
            None
        }
    };
    let load = buf.as_deref().map(msgpack::decode).and_then(Result::ok);
    let job = Job::from_load(
        dir.jid.clone(),
        load.as_ref(),
        config.show_pillar_args,
        publish,
    );
    // Jobs whose functions are known and none of them a state run are never decoded further.
    let could_have_states = job.funs.is_empty()
        || job
            .funs
            .iter()
            .any(|f| f.starts_with("state.") || f.starts_with("runner.state."));
    let wanted = config.funs.is_empty()
        || job.funs.is_empty()
        || job.funs.iter().any(|f| glob::any(&config.funs, f));
    let loaded = if could_have_states && wanted {
        Loaded::Job(job)
    } else {
        Loaded::NonState
    };
    (loaded, failed)
}

/// Whether the job folder changed within [`SETTLING`]: its files may still be being written.
fn settling(dir: &JobDir) -> bool {
    let modified = std::fs::metadata(&dir.dir).and_then(|m| m.modified());
    modified.is_ok_and(|t| {
        SystemTime::now()
            .duration_since(t)
            .map_or(true, |age| age < SETTLING)
    })
}

/// `.load.p` is written in place, not atomically: a truncated one may be mid-write, so retry.
fn read_load(path: &Path) -> Result<Vec<u8>, ReadError> {
    let mut tries = 0;
    loop {
        let buf = msgpack::read_file(path)?;
        match msgpack::decode(&buf) {
            Ok(_) => return Ok(buf),
            Err(ReadError::Truncated | ReadError::Empty) if tries < 3 => {
                tries += 1;
                sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Decodes one minion's return and appends its events to `buf`: how many, or `None` when the
/// return has not landed yet (and is not done). A broken file is warned about, counted, and
/// done: it will not mend, and warning again every run would be noise.
fn ship_return(
    config: &Config,
    job: &Job,
    dir: &JobDir,
    minion: &str,
    buf: &mut Vec<u8>,
    totals: &mut Totals,
) -> Option<u64> {
    let path = dir.return_path(minion);
    let bytes = match msgpack::read_file(&path) {
        Ok(bytes) => bytes,
        // The minion folder is made before return.p lands; nothing to read yet.
        Err(e) if e.is_vanished() && path.parent().is_some_and(Path::exists) => {
            debug!("{}: not written yet", path.display());
            return None;
        }
        Err(e) => {
            warn!("{}: {e}", path.display());
            totals.failed_files += 1;
            return Some(0);
        }
    };
    let value = match msgpack::decode(&bytes) {
        Ok(value) => value,
        Err(e) => {
            warn!("{}: {e}", path.display());
            totals.failed_files += 1;
            return Some(0);
        }
    };
    totals.returns += 1;
    let mut n = 0;
    for ev in extract(job, minion, &value) {
        let fun_ok = config.funs.is_empty()
            || ev
                .fun
                .as_deref()
                .is_some_and(|f| glob::any(&config.funs, f));
        if fun_ok
            && glob::any(&config.minions, &ev.minion)
            && (!config.only_failures || ev.failed())
        {
            encode(config, job, &ev, buf);
            n += 1;
        }
    }
    Some(n)
}

/// Appends one event in the configured format. JSON is written straight from the borrowed
/// values; only an oversize event or another format goes through an ordered map.
fn encode(config: &Config, job: &Job, ev: &StateEvent<'_>, buf: &mut Vec<u8>) {
    let start = buf.len();
    if config.format == Format::Json {
        write_json(buf, &config.master_id, job, ev);
        if buf.len() - start - 1 <= config.max_event_bytes {
            return;
        }
        buf.truncate(start);
    }
    format::encode(
        config.format,
        &to_map(&config.master_id, job, ev),
        config.max_event_bytes,
        buf,
    );
}

/// After a first run with `--start-at now`: every return already in the cache counts as done.
pub fn start_at_now(config: &Config, checkpoint: &mut Checkpoint) -> anyhow::Result<u64> {
    let (dirs, _) = scan(&config.cache_dir, |_| {}, |_, _| true);
    let mut returns = 0;
    for dir in dirs {
        let Some(jid) = dir.read_jid() else { continue };
        for minion in &dir.minions {
            checkpoint.record(&dir.key, &jid, minion);
            returns += 1;
        }
    }
    checkpoint.save()?;
    info!("starting at now: {returns} returns already in the cache will not be shipped");
    Ok(returns)
}
