//! The part of a pass that runs on every core: a job's load read, its returns read, decoded,
//! extracted and encoded into bytes, in the order the pass hands them out.

use std::io;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use log::{debug, warn};

use super::counts::returns_in;
use super::{Mode, Totals};
use crate::cache::JobDir;
use crate::cli::{CacheOptions, Config, EncodeOptions, Filter};
use crate::event::EventParts;
use crate::extract::{extract_noting, StateEvent};
use crate::format::{self, Format};
use crate::job::{Job, Masking};
use crate::metrics::fleet::{self, Observed};
use crate::msgpack::{self, ReadError};
use crate::sink::keys::{Outcome, StateKeys};
use crate::sink::{Encoded, Keys};
use crate::{glob, time};

/// A job folder younger than this whose `.load.p` is missing or cut is still being written.
const SETTLING: Duration = Duration::from_secs(60);

/// The parts of the [`Config`] the workers use.
#[derive(Clone, Copy)]
pub(super) struct Opts<'c> {
    pub(super) cache: &'c CacheOptions,
    pub(super) filter: &'c Filter,
    pub(super) encode: &'c EncodeOptions,
    /// Whether the returns' state runs are kept for the metrics.
    pub(super) metrics: bool,
    /// Whether the sink reads the events' keys: stdout (a dry run) only writes the bytes, and
    /// making the keys cost it 3% of its instructions.
    pub(super) keys: bool,
}

impl<'c> Opts<'c> {
    pub(super) fn of(config: &'c Config) -> Opts<'c> {
        Opts {
            cache: &config.cache,
            filter: &config.filter,
            encode: &config.encode,
            metrics: config.metrics(),
            keys: config.delivery.is_some(),
        }
    }
}

/// What the producer hands the workers, in jid order.
pub(super) enum Step<'j> {
    /// A job's load, before its returns: (folder, how many returns, what the load said, whether
    /// `.load.p` was broken).
    Job(&'j JobDir, usize, Loaded, bool),
    /// Up to [`CHUNK`](super::CHUNK) returns of one job (fewer hand-offs between threads), and
    /// the bytes of the memory budget they took.
    Returns(&'j JobDir, std::sync::Arc<Job>, Vec<String>, u64),
    /// Returns already worked on by the producer (one too big to go beside others).
    Worked(Done<'j>),
}

/// What the workers hand back, in the same order.
pub(super) enum Done<'j> {
    /// [`Step::Job`], and for a job with nothing to ship the returns passed over with it,
    /// counted here on a worker (a listing of its folder).
    Job(&'j JobDir, usize, Loaded, bool, Option<u64>),
    /// The returns read, and the bytes of the memory budget they took.
    Returns(&'j JobDir, Vec<Read>, u64),
}

/// One return read, decoded and encoded.
pub(super) struct Read {
    pub(crate) minion: String,
    pub(crate) encoded: Encoded,
    /// How many events `encoded` holds; `None` when the return has not landed yet.
    pub(crate) events: Option<u64>,
    /// Whether a filter dropped any of its events: then it is not recorded, so a run without
    /// the filter ships the rest.
    pub(crate) filtered: bool,
    /// What reading it counted.
    pub(crate) part: Totals,
    /// Its state runs, when metrics are kept.
    pub(crate) seen: Option<Observed>,
}

/// The part of the pipeline that runs on every core: a return read, decoded, extracted and
/// encoded into bytes.
pub(super) fn work<'j>(opts: Opts<'_>, pool: &BufferPool, step: Step<'j>) -> Done<'j> {
    match step {
        Step::Job(dir, n, loaded, failed) => {
            let skipped = match loaded {
                Loaded::NonState | Loaded::Filtered => Some(returns_in(dir)),
                Loaded::Job(_) | Loaded::NotYet => None,
            };
            Done::Job(dir, n, loaded, failed, skipped)
        }
        Step::Worked(done) => done,
        Step::Returns(dir, job, minions, cost) => Done::Returns(
            dir,
            minions
                .into_iter()
                .map(|minion| {
                    let mut part = Totals::default();
                    let mut encoded = Encoded {
                        bytes: pool.take(),
                        keys: Vec::new(),
                    };
                    let mut seen = None;
                    let read =
                        ship_return(opts, &job, dir, &minion, &mut encoded, &mut part, &mut seen);
                    Read {
                        minion,
                        encoded,
                        events: read.map(|(n, _)| n),
                        filtered: read.is_some_and(|(_, filtered)| filtered),
                        part,
                        seen,
                    }
                })
                .collect(),
            cost,
        ),
    }
}

/// Output buffers go back and forth between the workers and the consumer instead of being
/// allocated per return: a return's events are often over the size at which the allocator
/// maps fresh pages, and faulting those in costs more than writing the events. What it keeps
/// is bounded in bytes, outside the memory budget.
#[derive(Default)]
pub(super) struct BufferPool(std::sync::Mutex<(Vec<Vec<u8>>, usize)>);

/// Bytes of idle buffers the pool keeps.
const POOL_BYTES: usize = 8 << 20;

impl BufferPool {
    pub(super) fn take(&self) -> Vec<u8> {
        let mut pool = crate::sync::lock(&self.0);
        match pool.0.pop() {
            Some(buf) => {
                pool.1 -= buf.capacity();
                buf
            }
            None => Vec::with_capacity(1 << 16),
        }
    }

    pub(super) fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut pool = crate::sync::lock(&self.0);
        // A huge one is let go.
        if pool.1 + buf.capacity() <= POOL_BYTES {
            pool.1 += buf.capacity();
            pool.0.push(buf);
        }
    }
}

pub(super) enum Loaded {
    Job(Job),
    /// Its functions are known and none is a state run.
    NonState,
    /// A state run, but `--fun` leaves it out: skipped, not recorded.
    Filtered,
    /// `.load.p` is still being written: try again next run.
    NotYet,
}

/// The job from its `.load.p`, and whether that file was broken (warned about).
pub(super) fn load_job(opts: Opts<'_>, mode: Mode, dir: &JobDir) -> (Loaded, bool) {
    let publish = time::jid_instant(&dir.jid, opts.cache.jid_zone);
    let path = dir.load_path();
    let mut failed = false;
    let buf = match read_load(&path, opts.cache.max_return_bytes) {
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
        // Not this file's fault for good: its returns wait for the next pass.
        Err(e) if !e.is_permanent() => {
            warn!("{}: {e}", path.display());
            return (Loaded::NotYet, true);
        }
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
        Masking {
            show_pillar: opts.encode.show_pillar_args,
            extra: &opts.encode.mask_args,
        },
        publish,
    );
    // Jobs whose functions are known and none of them a state run are never decoded further.
    // A state run that --fun leaves out is not recorded: a run without it ships the job.
    let loaded = if !job.taken(&[]) {
        Loaded::NonState
    } else if job.taken(&opts.filter.funs) {
        Loaded::Job(job)
    } else {
        Loaded::Filtered
    };
    (loaded, failed)
}

/// Whether the job folder changed within [`SETTLING`]: its files may still be being written.
pub(super) fn settling(dir: &JobDir) -> bool {
    let modified = std::fs::metadata(&dir.dir).and_then(|m| m.modified());
    modified.is_ok_and(|t| {
        SystemTime::now()
            .duration_since(t)
            .map_or(true, |age| age < SETTLING)
    })
}

/// `.load.p` is written in place, not atomically: a truncated one may be mid-write, so retry.
pub(super) fn read_load(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut tries = 0;
    loop {
        let buf = msgpack::read_file(path, max)?;
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

/// Decodes one minion's return and appends its events to `out`: how many, and whether a filter
/// dropped any (then the return is not recorded); or `None` when the return is not done (not landed yet, or unreadable for now: tried again at the next pass).
/// A file broken for good is warned about, counted, and done: it will not mend, and warning
/// again every run would be noise. With metrics kept, `seen` gets the return's state runs,
/// before any filter.
pub(super) fn ship_return(
    opts: Opts<'_>,
    job: &Job,
    dir: &JobDir,
    minion: &str,
    out: &mut Encoded,
    totals: &mut Totals,
    seen: &mut Option<Observed>,
) -> Option<(u64, bool)> {
    let path = dir.return_path(minion);
    let failed = |e: ReadError, totals: &mut Totals| {
        warn!("{}: {e}", path.display());
        totals.failed_files += 1;
        e.is_permanent().then_some((0, false))
    };
    let bytes = match msgpack::read_file(&path, opts.cache.max_return_bytes) {
        Ok(bytes) => bytes,
        // The minion folder is made before return.p lands; nothing to read yet.
        Err(e) if e.is_vanished() && path.parent().is_some_and(Path::exists) => {
            debug!("{}: not written yet", path.display());
            return None;
        }
        Err(e) => return failed(e, totals),
    };
    if !super::budget::fits(bytes.len()) {
        return failed(ReadError::Io(io::ErrorKind::OutOfMemory.into()), totals);
    }
    let (value, maybe_lossy) = match msgpack::decode_noting(&bytes) {
        Ok(decoded) => decoded,
        Err(e) => return failed(e, totals),
    };
    totals.returns += 1;
    let (mut n, mut filtered) = (0, false);
    let masking = Masking {
        show_pillar: opts.encode.show_pillar_args,
        extra: &opts.encode.mask_args,
    };
    let own = job.with_return_args(&value, masking);
    let job = own.as_ref().unwrap_or(job);
    let events = extract_noting(job, minion, &value, maybe_lossy);
    if opts.metrics {
        *seen = Some(fleet::observe(job, &events));
    }
    for ev in events {
        let fun_ok = opts.filter.funs.is_empty()
            || ev
                .fun
                .as_deref()
                .is_some_and(|f| glob::any(&opts.filter.funs, f));
        if fun_ok
            && glob::any(&opts.filter.minions, &ev.minion)
            && (!opts.filter.only_failures || ev.failed())
        {
            encode(opts.encode, opts.keys, job, &ev, out);
            n += 1;
        } else {
            filtered = true;
        }
    }
    Some((n, filtered))
}

/// Appends one event in the configured format, and its keys for the sink when it uses them
/// (`keys`): the event is read once for both.
pub(super) fn encode(
    options: &EncodeOptions,
    keys: bool,
    job: &Job,
    ev: &StateEvent<'_>,
    out: &mut Encoded,
) {
    let start = out.bytes.len();
    let read = EventParts::new(&options.master_id, job, ev);
    write(options, &read, &mut out.bytes);
    if !keys {
        return;
    }
    let fun = ev.fun.as_deref().unwrap_or("");
    let origin = out.origin(&ev.minion, &options.master_id, &job.jid, fun);
    let brief = read.brief();
    out.keys.push(Keys {
        len: out.bytes.len() - start,
        id: Keys::id_from(read.id().as_str()),
        time: ev.instant,
        origin,
        state: StateKeys {
            state_id: brief
                .state_id
                .filter(|_| options.state_keys)
                .map(|s| s.into()),
            result: match brief.result {
                Some(Some(true)) => Outcome::Succeeded,
                Some(Some(false)) => Outcome::Failed,
                Some(None) => Outcome::Pending,
                None => Outcome::Unknown,
            },
            changed: brief.changed,
        },
    });
}

/// Appends one event in the configured format. JSON and ECS are written straight from the
/// borrowed values; only an oversize event or another format goes through an ordered map.
fn write(options: &EncodeOptions, read: &EventParts<'_, '_>, buf: &mut Vec<u8>) {
    let start = buf.len();
    let direct = match options.format {
        Format::Json => {
            read.write_json(buf);
            true
        }
        Format::Ecs => {
            read.write_ecs(buf);
            true
        }
        Format::Gelf | Format::Syslog => false,
    };
    if direct {
        if buf.len() - start - 1 <= options.max_event_bytes {
            return;
        }
        buf.truncate(start);
    }
    format::encode(options.format, &read.to_map(), options.max_event_bytes, buf);
}
