//! The counts every command reports, defined once (docs/operations.md "Counts"):
//! - a **job** is a job folder with its `jid` file; a **return** is a minion's `return.p` in it;
//! - `check` and `sync --start-at now` count the jobs and returns in the cache ([`in_cache`]);
//! - a run's summary ([`Totals`]) counts the jobs it took up (not already done in the
//!   checkpoint; within `--since`/`--until`), each once however often `watch` comes back to it,
//!   and their returns: read, or passed over with a skipped job. So a first `sync`, a `backfill`
//!   and their dry runs say what `check` says of the same cache.

use std::collections::HashSet;

use crate::cache::JobDir;

/// What a run did, for the summary line and the exit status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Jobs taken up, each once per run, shipped or skipped.
    pub(crate) jobs: u64,
    /// Returns of those jobs read, or passed over with a skipped job (one that cannot be read
    /// is a failed file instead). A return sent again after an outage is read, and counted, again.
    pub(crate) returns: u64,
    /// Events shipped (or printed).
    pub(crate) events: u64,
    /// Jobs taken up with nothing to ship: not a state run, `nocache`, or left out by `--fun`.
    pub(crate) skipped: u64,
    /// Files that could not be read: folders, `jid`, `.load.p`, `.minions.p`, `return.p`.
    pub(crate) failed_files: u64,
    pub(crate) reconnects: u64,
    /// Events the receiver refused for good (a mapping error), their returns still recorded.
    pub(crate) rejected: u64,
    /// `sync`'s `--metrics-file` could not be written (exit status 1).
    pub(crate) metrics_unwritten: bool,
}

impl Totals {
    pub(crate) fn summary(&self) -> String {
        let rejected = match self.rejected {
            0 => String::new(),
            n => format!(", {n} events rejected by the receiver"),
        };
        format!(
            "{} jobs, {} returns, {} events, {} skipped, {} failed files, {} reconnects{rejected}",
            self.jobs, self.returns, self.events, self.skipped, self.failed_files, self.reconnects
        )
    }

    /// Counts job `key` taken up, once per run (`seen` holds the jobs counted): a skipped one
    /// with the `returns` passed over with it. Whether it was counted now.
    pub(super) fn take_job(&mut self, seen: &mut Seen, key: &str, skipped: Option<u64>) -> bool {
        if !seen.0.insert(xxhash_rust::xxh3::xxh3_64(key.as_bytes())) {
            return false;
        }
        self.jobs += 1;
        if let Some(returns) = skipped {
            self.skipped += 1;
            self.returns += returns;
        }
        true
    }
}

/// The jobs a run has counted (a hash of each folder key: 8 bytes a job).
#[derive(Debug, Default)]
pub(crate) struct Seen(HashSet<u64>);

/// The returns passed over with skipped job `dir`: its minion folders. Salt writes a return's
/// `return.p` as it makes its folder, and a skipped job is never read: looking for each file
/// cost a backfill more than the rest of such a job, and so did listing and sorting its
/// names (the folder's link count tells).
pub(super) fn returns_in(dir: &JobDir) -> u64 {
    dir.minion_count()
}

/// The jobs and returns in the cache, and the oldest and newest jid: what `check` reports.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct InCache {
    pub(crate) jobs: u64,
    pub(crate) returns: u64,
    pub(crate) oldest: Option<String>,
    pub(crate) newest: Option<String>,
}

/// Counts the jobs (folders with a jid) of a scan and their returns; each job with its jid is
/// handed to `each` (with the minions whose return landed).
pub(crate) fn in_cache(
    dirs: &[JobDir],
    max_bytes: u64,
    mut each: impl FnMut(&JobDir, &str, &[&String]),
) -> InCache {
    let mut counts = InCache::default();
    for dir in dirs {
        let Ok(Some(jid)) = dir.read_jid(max_bytes) else {
            continue;
        };
        let landed: Vec<&String> = dir
            .minions
            .iter()
            .filter(|m| dir.return_path(m).is_file())
            .collect();
        counts.jobs += 1;
        counts.returns += landed.len() as u64;
        each(dir, &jid, &landed);
        if counts.oldest.as_ref().is_none_or(|o| jid < *o) {
            counts.oldest = Some(jid.clone());
        }
        if counts.newest.as_ref().is_none_or(|n| jid > *n) {
            counts.newest = Some(jid);
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_rejected_events_only_when_there_are_some() {
        let mut totals = Totals {
            jobs: 2,
            returns: 3,
            events: 40,
            skipped: 1,
            failed_files: 0,
            reconnects: 5,
            rejected: 0,
            metrics_unwritten: false,
        };
        assert_eq!(
            totals.summary(),
            "2 jobs, 3 returns, 40 events, 1 skipped, 0 failed files, 5 reconnects"
        );
        totals.rejected = 7;
        assert!(totals
            .summary()
            .ends_with("5 reconnects, 7 events rejected by the receiver"));
    }

    #[test]
    fn a_job_counts_once_however_often_it_is_taken_up() {
        let (mut totals, mut seen) = (Totals::default(), Seen::default());
        assert!(totals.take_job(&mut seen, "ab/cd", None));
        assert!(!totals.take_job(&mut seen, "ab/cd", None));
        assert!(totals.take_job(&mut seen, "ef/01", Some(4)));
        assert!(!totals.take_job(&mut seen, "ef/01", Some(4)));
        assert_eq!((totals.jobs, totals.skipped, totals.returns), (2, 1, 4));
    }
}
