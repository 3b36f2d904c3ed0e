//! `saltship backfill`: replay the jobs in the cache, in jid order, printing (`--dry-run`) each
//! state result as one JSON line. A bad file is named in one warning and counted; the run goes on.

use std::io;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use log::{debug, warn};

use crate::cache::{scan, JobDir};
use crate::config::Config;
use crate::event::{to_map, write_json};
use crate::extract::extract;
use crate::format::{self, Format};
use crate::job::Job;
use crate::msgpack::{self, ReadError};
use crate::sink::stdout::StdoutSink;
use crate::sink::tcp::TcpSink;
use crate::sink::{Sink, SinkError};
use crate::{glob, progress, time};

/// What a run did, for the summary line and the exit status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub jobs: u64,
    pub returns: u64,
    pub events: u64,
    /// Jobs with nothing to ship: not a state run, `nocache`, or filtered out.
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

/// Confirm delivery whenever this much is unconfirmed: bounds memory and what a failure resends.
const CONFIRM_BYTES: usize = 1 << 20;

/// Runs a backfill. `Err` carries what was done and why delivery stopped (exit status 3).
pub fn run(config: &Config) -> Result<Totals, (Totals, String)> {
    let mut totals = Totals::default();
    let found = progress::counter(config.quiet, "jobs found");
    let (jobs, problems) = scan(&config.cache_dir, |n| found.set_position(n as u64));
    found.finish_and_clear();
    for p in &problems {
        warn!("{}: {}", p.path.display(), p.why);
    }
    totals.failed_files += problems.len() as u64;

    let (jobs, out_of_range): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .partition(|j| !j.nocache && config.in_range(time::jid_instant(&j.jid, config.jid_zone)));
    totals.skipped += out_of_range.len() as u64;
    let all_returns: u64 = jobs.iter().map(|j| j.minions.len() as u64).sum();
    let bar = progress::bar(config.quiet, all_returns);

    let mut sink: Box<dyn Sink> = match &config.tcp {
        Some(opts) => Box::new(TcpSink::new(opts.clone())),
        None => Box::new(StdoutSink::new()),
    };
    // The first jid whose events are not confirmed yet, to say where a failed delivery stopped.
    let mut unconfirmed_from: Option<&str> = None;
    let mut buf = Vec::with_capacity(1 << 16);
    let result = (|| {
        for dir in &jobs {
            let Some(job) = load_job(config, dir, &mut totals) else {
                totals.skipped += 1;
                bar.inc(dir.minions.len() as u64);
                continue;
            };
            totals.jobs += 1;
            for minion in &dir.minions {
                buf.clear();
                let n = ship_return(config, &job, dir, minion, &mut buf, &mut totals);
                if n > 0 {
                    unconfirmed_from.get_or_insert(&dir.jid);
                    sink.send(&buf, n)?;
                    totals.events += n;
                }
                if sink.unconfirmed() >= CONFIRM_BYTES {
                    sink.confirm()?;
                    unconfirmed_from = None;
                }
                bar.inc(1);
                let stats = sink.stats();
                bar.set_message(format!(
                    "{} events sent, {} reconnects",
                    stats.events_sent, stats.reconnects
                ));
            }
        }
        sink.confirm()
    })();
    bar.finish_and_clear();
    totals.reconnects = sink.stats().reconnects;
    match result {
        Ok(()) | Err(SinkError::Closed) => Ok(totals),
        Err(e) => {
            let from = unconfirmed_from.map_or(String::new(), |j| {
                format!("; not delivered: every event from job {j} on")
            });
            Err((totals, format!("{e}{from}")))
        }
    }
}

/// The job from its `.load.p`, or `None` when it cannot hold state results we were asked for.
fn load_job(config: &Config, dir: &JobDir, totals: &mut Totals) -> Option<Job> {
    let publish = time::jid_instant(&dir.jid, config.jid_zone);
    let path = dir.load_path();
    let buf = match read_load(&path) {
        Ok(buf) => Some(buf),
        Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            warn!("{}: {e}", path.display());
            totals.failed_files += 1;
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
        || job.funs.iter().any(|f| glob::any(&config.funs, f))
        || job.funs.is_empty();
    (could_have_states && wanted).then_some(job)
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

/// Decodes one minion's return and appends its events to `buf`; the number of events.
fn ship_return(
    config: &Config,
    job: &Job,
    dir: &JobDir,
    minion: &str,
    buf: &mut Vec<u8>,
    totals: &mut Totals,
) -> u64 {
    let path = dir.return_path(minion);
    let bytes = match msgpack::read_file(&path) {
        Ok(bytes) => bytes,
        // The minion folder is made before return.p lands; nothing to read yet.
        Err(e) if e.is_vanished() && path.parent().is_some_and(Path::exists) => {
            debug!("{}: not written yet", path.display());
            return 0;
        }
        Err(e) => {
            warn!("{}: {e}", path.display());
            totals.failed_files += 1;
            return 0;
        }
    };
    let value = match msgpack::decode(&bytes) {
        Ok(value) => value,
        Err(e) => {
            warn!("{}: {e}", path.display());
            totals.failed_files += 1;
            return 0;
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
    n
}

/// Appends one event in the configured format. JSON is written straight from the borrowed
/// values; only an oversize event or another format goes through an ordered map.
fn encode(config: &Config, job: &Job, ev: &crate::extract::StateEvent<'_>, buf: &mut Vec<u8>) {
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
