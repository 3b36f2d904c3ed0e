//! The job events' turn (`--events job,no-return`), after a pass's state events: which jobs
//! are final, their job event and no_return events sent, and each job recorded once the
//! confirm covers it. A job is final when its `.load.p` and `.minions.p` were read and every
//! minion it targeted returned, or `--return-wait` after its publish; a younger one waits in
//! [`PendingJobs`] (its key and when it is due) for a later pass, or for `watch`'s timer.
//! docs/events.md ("When") has the rule.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use log::{debug, info, warn};

use super::job_files::{failed, publish_file, returned, syndicated, written};
use super::{Mode, PassError, Shipper, CONFIRM_BYTES};
use crate::cache::{scan, targeted, JobDir, TargetsError};
use crate::event::job::{job_event, job_id, no_return_events, no_return_id, JobView};
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
            if shipped || in_flight {
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

    /// One job: its events sent if it is final, else remembered as pending. A master writes a
    /// job's folder and `jid`, then `.load.p`, then `.minions.p`, then the returns, and this
    /// may look between any two: before its wait is over, a job is final only once both files
    /// are read and every minion `.minions.p` names returned; a file missing or unreadable
    /// then is one still being written.
    fn job(&mut self, dir: &JobDir, jid: &str, now: i64) -> Result<(), PassError> {
        let config = self.config;
        let max = config.cache.max_return_bytes;
        let publish = time::jid_instant(jid, config.cache.jid_zone);
        let due = publish
            .or_else(|| written(&dir.dir))
            .map(|t| t.saturating_add(config.return_wait));
        let waited = due.is_none_or(|d| now >= d);
        let load_buf = match publish_file(&dir.load_path(), max) {
            Ok(buf) => buf,
            Err(_) if !waited => return self.wait_for(dir, due, now),
            // Broken for good, the job is told as one without it; else tried again.
            Err(e) if self.load_unreadable(&dir.load_path(), &e) => None,
            Err(_) => return Ok(()),
        };
        if load_buf.is_none() && !waited {
            return self.wait_for(dir, due, now);
        }
        let load = load_buf.as_deref().and_then(|b| msgpack::decode(b).ok());
        let masking = Masking {
            show_pillar: config.encode.show_pillar_args,
            extra: &config.encode.mask_args,
        };
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
        let targets = match targeted(&dir.dir, max) {
            Ok(targets) => targets,
            Err(_) if !waited => return self.wait_for(dir, due, now),
            Err(e) => return self.targets_unreadable(dir, jid, e),
        };
        let nocache = dir.nocache || dir.dir.join("nocache").exists();
        let (returned, last_return) = if nocache {
            (Vec::new(), None)
        } else {
            returned(dir)
        };
        let complete = match &targets {
            // Salt keeps no return of a `nocache` job: there is nothing to wait for.
            Some(_) if nocache => true,
            // An orchestration's `.minions.p` names none: its master's return is the one.
            Some(t) if t.is_empty() => !returned.is_empty(),
            Some(t) => t.iter().all(|m| returned.binary_search(m).is_ok()),
            None => false,
        };
        let is_final = waited
            || (load.is_some() && complete && !syndicated(&config.cache.dir, &dir.dir, &load));
        if !is_final {
            return self.wait_for(dir, due, now);
        }
        self.pending_jobs.remove(&dir.key);
        // No `.minions.p` after the wait (an old cache), or an empty one: count what returned.
        let targeted = match targets {
            Some(t) if !t.is_empty() => t,
            _ => returned.clone(),
        };
        let failed = returned
            .iter()
            .filter(|m| failed(&dir.return_path(m), max))
            .count() as u64;
        let target = Target::from_load(load.as_ref());
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
            returns_cached: !nocache,
        };
        self.send_job(dir, &view)
    }

    /// A `.load.p` that cannot be read after the wait: whether it is broken for good. The
    /// state pass names the file; without it, this does.
    fn load_unreadable(&mut self, path: &Path, e: &msgpack::ReadError) -> bool {
        if self.config.events.state {
            debug!("{}: {e}", path.display());
        } else {
            warn!("{}: {e}", path.display());
            self.totals.failed_files += 1;
        }
        e.is_permanent()
    }

    /// A `.minions.p` that cannot be read after the wait, as a `return.p`: never "no
    /// targets"; warned about and counted, and the job recorded once the file will not mend
    /// (tried again at the next pass while it may).
    fn targets_unreadable(
        &mut self,
        dir: &JobDir,
        jid: &str,
        e: TargetsError,
    ) -> Result<(), PassError> {
        let TargetsError { path, error } = e;
        warn!("{}: {error}; job {jid} has no job event", path.display());
        self.totals.failed_files += 1;
        if error.is_permanent() {
            if let Some(cp) = self.recording() {
                cp.record_job_shipped(&dir.key, jid);
            }
        }
        Ok(())
    }

    /// Leaves a job not final yet for a later pass (or `watch`'s timer at `due`).
    fn wait_for(&mut self, dir: &JobDir, due: Option<i64>, now: i64) -> Result<(), PassError> {
        self.pending_jobs
            .insert(dir.key.clone(), due.unwrap_or(now));
        self.job_totals.waiting += 1;
        Ok(())
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
        let sends = self.sends + u64::from(n > 0);
        self.jobs_in_flight
            .push((dir.key.clone(), view.jid.to_owned(), Instant::now(), sends));
        if n > 0 {
            self.send(&out.bytes, &out.keys)?;
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
                "{} jobs are younger than --return-wait and still miss returns (or their .load.p or .minions.p): {later}",
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
