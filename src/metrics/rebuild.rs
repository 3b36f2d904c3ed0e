//! The fleet as the cache shows it at start: each minion's latest real state run, found by
//! walking the jobs newest first, and every job's census (who was targeted, who returned).
//! Nothing is kept in the checkpoint: the cache is the truth, and a restart, a cleaned-up job
//! or a lost state file cannot leave the gauges wrong.
//!
//! Cost: per job one listing, one small `.load.p` read and its `.minions.p`; one `return.p`
//! decoded per minion (more when its newest runs were test runs), and only of state jobs: a
//! `test.ping`'s returns are counted from the listing, never read. On one thread. Each job is
//! listed when its turn comes, so memory holds one job's minion names, not the cache's.
//! Counters start at zero.

use std::time::{Duration, SystemTime};

use log::debug;

use super::census::{Census, Facts};
use super::fleet::{observe, Fleet};
use super::Settings;
use crate::cache::{scan, targeted, JobDir};
use crate::extract::extract_noting;
use crate::job::{Job, Masking};
use crate::msgpack;
use crate::time::jid_instant;

/// A folder's mtime is trusted to show a new minion folder only when older than this (the
/// clock behind mtimes is coarse): as `ship`'s settling.
const SETTLED_AFTER: Duration = Duration::from_secs(2);
/// After this long past its publish a job's `.load.p` and `.minions.p` are there if ever.
const WHOLE_AFTER: i64 = 10 * crate::time::SECOND;

/// Every minion's latest real state run in the cache, of the jobs `--fun` (`funs`) takes, and
/// every job's census. Unreadable files (and files over the size limit) are skipped here:
/// shipping names them.
pub(crate) fn rebuild(s: &Settings, funs: &[String]) -> (Fleet, Census) {
    let max = s.max_return_bytes;
    let (dirs, _) = scan(&s.cache, |_| {}, |_, _| false);
    let mut jobs: Vec<_> = dirs
        .into_iter()
        .filter(|d| !d.dir.join("nocache").exists())
        .filter_map(|mut d| {
            d.jid = d.read_jid(max).ok().flatten()?;
            Some(d)
        })
        .collect();
    jobs.sort_by(|a, b| b.jid.cmp(&a.jid));
    let mut fleet = Fleet::default();
    let mut census = Census::default();
    let mut read = 0;
    for dir in &jobs {
        let minions = dir.list_minions();
        let job = load(dir, s);
        // Not a state run (or filtered out): its returns are not read.
        let wanted: Vec<String> = if job.taken(funs) {
            minions
                .iter()
                .filter(|m| !fleet.minions.contains_key(*m))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        census.put(
            &dir.key,
            facts(
                dir,
                s,
                &job,
                targeted(&dir.dir, max).ok().flatten(),
                minions,
            ),
        );
        // Minions with a run already have a newer one: only the others' returns are read.
        for minion in &wanted {
            let Ok(bytes) = msgpack::read_file(&dir.return_path(minion), max) else {
                continue;
            };
            let Ok((ret, maybe_lossy)) = msgpack::decode_noting(&bytes) else {
                continue;
            };
            read += 1;
            let events = extract_noting(&job, minion, &ret, maybe_lossy);
            fleet.record(&dir.key, &dir.jid, observe(&job, &events));
        }
    }
    debug!(
        "fleet: {} minions from {read} returns of {} jobs",
        fleet.minions.len(),
        jobs.len()
    );
    (fleet, census)
}

/// The job of `dir` (its jid read) from its `.load.p`; functions unknown without one.
pub(crate) fn load(dir: &JobDir, s: &Settings) -> Job {
    let load = msgpack::read_file(&dir.load_path(), s.max_return_bytes).ok();
    let value = load.as_deref().and_then(|b| msgpack::decode(b).ok());
    let publish = jid_instant(&dir.jid, s.zone);
    Job::from_load(dir.jid.clone(), value.as_ref(), Masking::default(), publish)
}

/// What the census takes of a job folder listed as `minions`, targeting `targeted` (`None`:
/// its `.minions.p` is not there, or could not be read).
pub(crate) fn facts(
    dir: &JobDir,
    s: &Settings,
    job: &Job,
    targeted: Option<Vec<String>>,
    minions: Vec<String>,
) -> Facts {
    let publish = jid_instant(&dir.jid, s.zone);
    // Salt writes `.load.p` and `.minions.p` at the publish: a job without them seconds later
    // (a 2019.2 orchestration, a copied cache) is not read again for them at every return.
    let now = chrono::Utc::now().timestamp_micros();
    let late = publish.is_none_or(|p| now - p > WHOLE_AFTER);
    Facts {
        jid: dir.jid.clone(),
        publish,
        whole: late || (!job.funs.is_empty() && targeted.is_some()),
        fun: (!job.funs.is_empty()).then(|| job.funs.join(",")),
        targeted: targeted.unwrap_or_default(),
        returned: minions,
        mtime: settled_mtime(dir.mtime),
    }
}

/// `mtime` when it is old enough to show every minion folder made before it.
pub(crate) fn settled_mtime(mtime: Option<i64>) -> Option<i64> {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    mtime.filter(|m| *m < now - SETTLED_AFTER.as_nanos() as i64)
}
