//! Which returns a pass takes: the jobs in jid order, each with the minions whose returns are
//! not done yet, and the jobs that became settled (the next scan need not list them).

use std::collections::HashSet;
use std::time::SystemTime;

use log::{debug, warn};

use super::{Mode, Totals, SETTLED_AFTER};
use crate::cache::JobDir;
use crate::checkpoint::Checkpoint;
use crate::cli::Config;
use crate::time;

/// The jobs with returns to take, in jid order, each with those returns' minions.
/// Job folders with the minions whose returns a pass takes, in jid order.
pub(super) type Planned = Vec<(JobDir, Vec<String>)>;

/// `in_flight` holds the returns sent but not confirmed yet: a sync pass does not send them again.
pub(super) fn plan(
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
            None => dir.read_jid(config.cache.max_return_bytes),
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
        if mode == Mode::Backfill
            && !config
                .filter
                .in_range(time::jid_instant(&dir.jid, config.cache.jid_zone))
        {
            debug!("job {}: outside --since/--until, skipped", dir.jid);
            totals.skipped += 1;
            continue;
        }
        // The pass takes `minions`; the whole listing would be a second copy of every name
        // until the pass ends (at a first catch-up of a million returns, 30 MB).
        dir.minions = Vec::new();
        jobs.push((dir, minions));
    }
    jobs.sort_by(|(a, _), (b, _)| a.jid.cmp(&b.jid).then_with(|| a.dir.cmp(&b.dir)));
    (jobs, settled)
}
