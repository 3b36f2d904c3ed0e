//! The fleet as the cache shows it at start: each minion's latest real state run, found by
//! walking the jobs newest first. Nothing is kept in the checkpoint: the cache is the truth,
//! and a restart, a cleaned-up job or a lost state file cannot leave the gauges wrong.
//!
//! Cost: one listing and one small `.load.p` read per job, and one `return.p` decoded per
//! minion (more when its newest runs were test runs), on one thread. Each job is listed when
//! its turn comes, so memory holds one job's minion names, not the cache's. Counters start at
//! zero.

use std::path::Path;

use log::debug;

use super::fleet::{observe, Fleet};
use crate::cache::scan;
use crate::extract::extract;
use crate::job::{Job, Masking};
use crate::msgpack;
use crate::time::{jid_instant, JidZone};

/// Every minion's latest real state run in the cache under `root`, of the jobs `--fun` (`funs`)
/// takes. Unreadable files (and files over `max` bytes) are skipped here: shipping names them.
pub(crate) fn rebuild(root: &Path, zone: JidZone, funs: &[String], max: u64) -> Fleet {
    let (dirs, _) = scan(root, |_| {}, |_, _| false);
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
    let mut read = 0;
    for dir in &jobs {
        // Minions with a run already have a newer one: only the others' returns are read.
        let minions = dir.list_minions();
        let wanted: Vec<&String> = minions
            .iter()
            .filter(|m| !fleet.minions.contains_key(*m))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let load = msgpack::read_file(&dir.load_path(), max).ok();
        let value = load.as_deref().and_then(|b| msgpack::decode(b).ok());
        let publish = jid_instant(&dir.jid, zone);
        let job = Job::from_load(dir.jid.clone(), value.as_ref(), Masking::default(), publish);
        if !job.taken(funs) {
            continue;
        }
        for minion in wanted {
            let Ok(bytes) = msgpack::read_file(&dir.return_path(minion), max) else {
                continue;
            };
            let Ok(ret) = msgpack::decode(&bytes) else {
                continue;
            };
            read += 1;
            fleet.record(
                &dir.key,
                &dir.jid,
                observe(&job, &extract(&job, minion, &ret)),
            );
        }
    }
    debug!(
        "fleet: {} minions from {read} returns of {} jobs",
        fleet.minions.len(),
        jobs.len()
    );
    fleet
}
