//! Which returns a pass takes: the jobs in jid order, each with the minions whose returns are
//! not done yet, and the jobs that became settled (the next scan need not list them).

use std::collections::HashSet;
use std::time::SystemTime;

use log::{debug, warn};

use super::counts::{returns_in, Seen};
use super::{Mode, Totals, SETTLED_AFTER};
use crate::cache::JobDir;
use crate::checkpoint::Checkpoint;
use crate::cli::Config;
use crate::time;

/// The jobs with returns to take, in jid order, each with those returns' minions.
/// Job folders with the minions whose returns a pass takes, in jid order.
pub(super) type Planned = Vec<(JobDir, Vec<String>)>;
/// Jobs whose every return is done, with their folder's mtime: (key, mtime).
pub(super) type Settled = Vec<(String, i64)>;
/// `nocache` jobs, to record as having nothing to ship: (key, jid).
pub(super) type NoCache = Vec<(String, String)>;

/// `in_flight` holds the returns sent but not confirmed yet: a sync pass does not send them again.
/// A `nocache` job is counted here (skipped), and returned to be recorded as having nothing to
/// ship (so the next sync does not count it again); the others when their `.load.p` is read.
pub(super) fn plan(
    config: &Config,
    mode: Mode,
    checkpoint: Option<&Checkpoint>,
    in_flight: &HashSet<(&str, &str)>,
    dirs: Vec<JobDir>,
    (totals, seen): (&mut Totals, &mut Seen),
) -> (Planned, Settled, NoCache) {
    let mut jobs = Vec::new();
    // Jobs whose every return is recorded done, with a folder older than the clock's grain:
    // the next scan need not list them while the folder's mtime stays the same. A job settles
    // on the pass after its last return was confirmed, never before: settled means done.
    let mut settled = Vec::new();
    let old_enough = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
        - SETTLED_AFTER.as_nanos() as i64;
    let mut nocache = Vec::new();
    for mut dir in dirs {
        // A sync lists a job here, one group at a time (a scan does not), unless its returns
        // are all done and its folder did not change since.
        let known = checkpoint.and_then(|cp| cp.job(&dir.key));
        if mode == Mode::Sync
            && dir.minions.is_empty()
            && !known.is_some_and(|s| s.non_state)
            && checkpoint.is_none_or(|cp| cp.needs_listing(&dir.key, dir.mtime))
        {
            dir.relist();
        }
        // A backfill's jobs are listed at their turn: `nocache` is found by its marker.
        if dir.nocache || (mode == Mode::Backfill && dir.dir.join("nocache").exists()) {
            debug!("job folder {}: nocache, nothing to ship", dir.key);
            let returns = returns_in(&dir);
            totals.take_job(seen, &dir.key, Some(returns));
            let jid = dir.read_jid(config.cache.max_return_bytes);
            nocache.push((dir.key, jid.ok().flatten().unwrap_or_default()));
            continue;
        }
        let minions: Vec<String> = match (mode, known) {
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
        // A job not seen before with no minion folder yet is still taken up: its `.load.p`
        // tells a job with nothing to ship (recorded, and counted once) from one waiting for
        // its returns. So sync counts the jobs backfill and check count.
        let new_and_empty = known.is_none() && dir.minions.is_empty();
        if minions.is_empty() && mode == Mode::Sync && !new_and_empty {
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
            // Not taken up: --since and --until bound the run.
            debug!("job {}: outside --since/--until, left out", dir.jid);
            continue;
        }
        // The pass needs only the returns it takes: the folder's whole list would double
        // the names held while a catch-up plans a million returns.
        dir.minions = Vec::new();
        jobs.push((dir, minions));
    }
    jobs.sort_by(|(a, _), (b, _)| a.jid.cmp(&b.jid).then_with(|| a.dir.cmp(&b.dir)));
    (jobs, settled, nocache)
}

/// `dirs` in groups of about `size` returns (by their folders' link counts), in jid order
/// (`jid_of`): a sync's catch-up of a million returns plans (and lists) one group at a time,
/// so it holds a group's minion names, not the cache's. Fewer make one group, as they come
/// (the plan puts them in jid order).
pub(super) fn groups(
    mut dirs: Vec<JobDir>,
    size: usize,
    jid_of: impl Fn(&JobDir) -> String,
) -> Vec<Vec<JobDir>> {
    let weight = |d: &JobDir| d.subfolders.max(d.minions.len()).max(1);
    if dirs.iter().map(weight).sum::<usize>() <= size {
        return if dirs.is_empty() {
            Vec::new()
        } else {
            vec![dirs]
        };
    }
    for dir in &mut dirs {
        dir.jid = jid_of(dir);
    }
    dirs.sort_by(|a, b| a.jid.cmp(&b.jid).then_with(|| a.dir.cmp(&b.dir)));
    let mut groups = vec![Vec::new()];
    let mut held = 0;
    for dir in dirs {
        let w = weight(&dir);
        if held > 0 && held + w > size {
            groups.push(Vec::new());
            held = 0;
        }
        held += w;
        groups.last_mut().expect("one group at least").push(dir);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str, subfolders: usize) -> JobDir {
        JobDir {
            dir: name.into(),
            key: name.into(),
            jid: String::new(),
            nocache: false,
            minions: Vec::new(),
            raw: Vec::new(),
            listed_raw: Default::default(),
            mtime: None,
            subfolders,
        }
    }

    #[test]
    fn many_returns_go_in_groups_in_jid_order_and_few_in_one_as_they_come() {
        // Folder order is not jid order: the key's hash decides it.
        let jid = |d: &JobDir| format!("2026120300000{}", &d.key[1..]);
        let dirs = vec![dir("c3", 40), dir("a1", 40), dir("b2", 40), dir("d0", 0)];
        let got = groups(dirs, 50, jid);
        let keys: Vec<Vec<&str>> = got
            .iter()
            .map(|g| g.iter().map(|d| d.key.as_str()).collect())
            .collect();
        assert_eq!(keys, [vec!["d0", "a1"], vec!["b2"], vec!["c3"]]);
        assert_eq!(got[0][0].jid, "20261203000000");
        let few = groups(vec![dir("b", 10), dir("a", 10)], 50, |_| unreachable!());
        assert_eq!(few.len(), 1);
        assert_eq!(few[0][0].key, "b");
        assert!(groups(Vec::new(), 50, |_| unreachable!()).is_empty());
    }
}
