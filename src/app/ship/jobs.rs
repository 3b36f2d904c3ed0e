//! The job events' turn (`--events job,no-return`), after a pass's state events: which jobs
//! are final, their job event and no_return events sent, and each job recorded once the
//! confirm covers it. A job is final when every targeted minion returned, or `--return-wait`
//! after its publish; a younger one waits in [`PendingJobs`] (its key and when it is due) for
//! a later pass, or for `watch`'s timer. docs/events.md has the rules.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use log::{debug, info, warn};

use super::{Mode, PassError, Shipper, CONFIRM_BYTES};
use crate::cache::{scan, targeted, JobDir};
use crate::event::job::{
    job_event, job_id, no_return_events, no_return_id, return_failed, JobView,
};
use crate::format;
use crate::glob;
use crate::job::{Job, Masking, Target};
use crate::msgpack;
use crate::sink::keys::{Outcome, StateKeys};
use crate::sink::{Encoded, Keys};
use crate::time;

/// The CLI's own polling of a running job: a job of its own for every `-t` that ran out, it
/// would count every down minion twice. It yields no event.
const SKIPPED_FUNS: [&str; 1] = ["saltutil.find_job"];

/// Jobs not final yet, by folder key, with when their wait ends (microseconds since the
/// epoch): a few dozen bytes a job, whatever its fleet.
pub(crate) type PendingJobs = BTreeMap<String, i64>;

/// What the job events' turns did, for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JobTotals {
    pub(crate) job_events: u64,
    pub(crate) no_return_events: u64,
    /// Jobs left for a later pass at the last turn: younger than the wait, minions missing.
    pub(crate) waiting: u64,
}

impl Shipper<'_> {
    /// Ships the job events of the jobs in `dirs` (or, `None`, of the whole cache) that are
    /// final and not shipped yet (a backfill ships them again).
    pub(crate) fn job_pass(
        &mut self,
        mode: Mode,
        dirs: Option<Vec<JobDir>>,
    ) -> Result<(), PassError> {
        let config = self.config;
        if !config.events.jobs() {
            return Ok(());
        }
        let whole = dirs.is_none();
        let dirs = match dirs {
            Some(dirs) => dirs,
            // Each job is listed at its turn ([`returned`]), never all at once: a cache of a
            // million returns would hold a million minion names here.
            None => scan(&config.cache.dir, |_| {}, |_, _| false).0,
        };
        let now = chrono::Utc::now().timestamp_micros();
        let mut jobs = Vec::new();
        for dir in dirs {
            let shipped = mode == Mode::Sync
                && self
                    .checkpoint
                    .as_ref()
                    .is_some_and(|cp| cp.job_shipped(&dir.key));
            let in_flight = self.jobs_in_flight.iter().any(|(k, ..)| *k == dir.key);
            if shipped || in_flight || dir.nocache || dir.dir.join("nocache").exists() {
                self.pending_jobs.remove(&dir.key);
                continue;
            }
            let Ok(Some(jid)) = dir.read_jid(config.cache.max_return_bytes) else {
                continue;
            };
            let publish = time::jid_instant(&jid, config.cache.jid_zone);
            if mode == Mode::Backfill && !config.filter.in_range(publish) {
                continue;
            }
            jobs.push((jid, dir));
        }
        jobs.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.dir.cmp(&y.dir)));
        if whole {
            self.job_totals.waiting = 0;
        }
        for (jid, dir) in jobs {
            self.job(&dir, &jid, now)?;
        }
        Ok(())
    }

    /// One job: its events sent if it is final, else remembered as pending.
    fn job(&mut self, dir: &JobDir, jid: &str, now: i64) -> Result<(), PassError> {
        let config = self.config;
        let load_buf = match msgpack::read_file(&dir.load_path(), config.cache.max_return_bytes) {
            Ok(buf) => Some(buf),
            Err(e) if e.is_vanished() => None,
            // The state pass names the file; the job is tried again at the next pass.
            Err(e) => {
                debug!("{}: {e}; its job event waits", dir.load_path().display());
                return Ok(());
            }
        };
        let load = load_buf.as_deref().and_then(|b| msgpack::decode(b).ok());
        let masking = Masking {
            show_pillar: config.encode.show_pillar_args,
            extra: &config.encode.mask_args,
        };
        let publish = time::jid_instant(jid, config.cache.jid_zone);
        let job = Job::from_load(jid.to_owned(), load.as_ref(), masking, publish);
        if job.funs.iter().any(|f| SKIPPED_FUNS.contains(&f.as_str())) {
            if let Some(cp) = self.recording() {
                cp.record_job_shipped(&dir.key, jid);
            }
            return Ok(());
        }
        if !config.filter.funs.is_empty()
            && !job.funs.iter().any(|f| glob::any(&config.filter.funs, f))
        {
            return Ok(());
        }
        let target = Target::from_load(load.as_ref());
        let (returned, last_return) = returned(dir);
        let mut targeted = targeted(&dir.dir, config.cache.max_return_bytes);
        if targeted.is_empty() {
            // No `.minions.p`, or an empty one (an orchestration): count what returned.
            targeted = returned.clone();
        }
        let due = publish.map(|p| p.saturating_add(config.return_wait));
        let complete = targeted.iter().all(|m| returned.binary_search(m).is_ok());
        if !complete && due.is_some_and(|d| now < d) {
            self.pending_jobs
                .insert(dir.key.clone(), due.unwrap_or(now));
            self.job_totals.waiting += 1;
            return Ok(());
        }
        self.pending_jobs.remove(&dir.key);
        let failed = returned
            .iter()
            .filter(|m| failed(&dir.return_path(m), config.cache.max_return_bytes))
            .count() as u64;
        let view = JobView {
            jid,
            master: &config.encode.master_id,
            cluster: config.encode.cluster_id.as_deref(),
            publish,
            funs: &job.funs,
            args: &job.args,
            target: &target,
            targeted: &targeted,
            returned: &returned,
            failed,
            last_return,
            wait: config.return_wait,
        };
        self.send_job(dir, &view)
    }

    /// Encodes and sends a final job's events, and remembers it for the confirm.
    fn send_job(&mut self, dir: &JobDir, view: &JobView<'_>) -> Result<(), PassError> {
        let config = self.config;
        let mut out = Encoded::default();
        let mut n = 0;
        if config.events.job {
            let ev = job_event(view);
            if !config.filter.only_failures || ev["success"] == false {
                let id = job_id(view.jid, &view.id_scope());
                push(
                    config,
                    &mut out,
                    &ev,
                    id.as_str(),
                    view.publish,
                    view.master,
                    view.jid,
                );
                self.job_totals.job_events += 1;
                n += 1;
            }
        }
        if config.events.no_return {
            let at = view.publish.map(|p| p.saturating_add(view.wait));
            for (minion, ev) in no_return_events(view) {
                if !glob::any(&config.filter.minions, &minion) {
                    continue;
                }
                let id = no_return_id(view.jid, &minion, &view.id_scope());
                push(config, &mut out, &ev, id.as_str(), at, &minion, view.jid);
                self.job_totals.no_return_events += 1;
                n += 1;
            }
        }
        // Recorded before sending: a failed send ends the run unconfirmed, unrecorded.
        self.jobs_in_flight
            .push((dir.key.clone(), view.jid.to_owned(), Instant::now()));
        if n > 0 {
            self.blocked.start();
            let sent = self.sink.send(&out.bytes, &out.keys);
            self.blocked.end();
            sent?;
            self.totals.events += n;
        }
        if self.sink.unconfirmed() >= CONFIRM_BYTES {
            self.confirm()?;
        }
        Ok(())
    }

    /// When the first pending job is due, microseconds since the epoch.
    pub(crate) fn next_job_due(&self) -> Option<i64> {
        self.pending_jobs.values().min().copied()
    }

    /// The folders of the pending jobs due at `now`, listed afresh (a folder the master
    /// cleaned up meanwhile is forgotten).
    pub(crate) fn due_jobs(&mut self, now: i64) -> Vec<JobDir> {
        let due: Vec<String> = self
            .pending_jobs
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let root = &self.config.cache.dir;
        due.into_iter()
            .filter_map(|key| {
                self.pending_jobs.remove(&key);
                JobDir::listed(root, root.join(&key))
            })
            .collect()
    }

    /// One line on what the job events' turns did; a backfill says what it left for later.
    pub(crate) fn report_jobs(&self, mode: Mode) {
        if !self.config.events.jobs() {
            return;
        }
        let t = self.job_totals;
        info!(
            "{} job events, {} no_return events",
            t.job_events, t.no_return_events
        );
        if t.waiting > 0 {
            let later = match mode {
                Mode::Backfill => "a later sync or watch ships their job events",
                Mode::Sync => "a later sync or watch ships them",
            };
            warn!(
                "{} jobs are younger than --return-wait and still miss returns: {later}",
                t.waiting
            );
        }
    }
}

/// Appends one event in the configured format, and its keys for the sink.
fn push(
    config: &crate::cli::Config,
    out: &mut Encoded,
    ev: &serde_json::Map<String, serde_json::Value>,
    id: &str,
    time: Option<i64>,
    host: &str,
    jid: &str,
) {
    let start = out.bytes.len();
    format::encode(
        config.encode.format,
        ev,
        config.encode.max_event_bytes,
        &mut out.bytes,
    );
    let fun = ev.get("fun").and_then(|f| f.as_str()).unwrap_or("");
    let origin = out.origin(host, &config.encode.master_id, jid, fun);
    // A job event that failed, or a minion that never returned, is a failure to OTLP too.
    let failed = [ev.get("success"), ev.get("result")]
        .into_iter()
        .flatten()
        .any(|v| v.as_bool() == Some(false));
    let state = StateKeys {
        result: if failed {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        },
        ..StateKeys::default()
    };
    out.keys.push(Keys {
        len: out.bytes.len() - start,
        id: Keys::id_from(id),
        time,
        origin,
        state,
    });
}

/// The minions whose `return.p` landed, sorted, and when the last one did.
fn returned(dir: &JobDir) -> (Vec<String>, Option<i64>) {
    let minions = if dir.minions.is_empty() {
        dir.list_minions()
    } else {
        dir.minions.clone()
    };
    let mut last = None;
    let mut returned = Vec::new();
    for m in minions {
        let Ok(meta) = std::fs::metadata(dir.return_path(&m)) else {
            continue;
        };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_micros() as i64);
        last = last.max(mtime);
        returned.push(m);
    }
    returned.sort();
    (returned, last)
}

/// Whether the return at `path` failed; one that cannot be read is not counted.
fn failed(path: &Path, max: u64) -> bool {
    msgpack::read_file(path, max)
        .ok()
        .and_then(|buf| msgpack::decode(&buf).ok().map(|v| return_failed(&v)))
        .unwrap_or(false)
}
