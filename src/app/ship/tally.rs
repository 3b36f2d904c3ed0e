//! The progress bar of a pass: the returns it takes up, counted before it starts (a spinner
//! while counting), so the bar shows the whole run from the start and ends at its total.
//!
//! It counts what the summary counts (`counts.rs`): the returns of the jobs taken up, read or
//! passed over with a skipped job, so the bar's total, its rate and the summary's returns
//! agree. A job's count is its minion folders (its link count, or a listing where the file
//! system has none) less the returns the checkpoint holds done, for the jobs in range. When
//! a job's turn comes the total is set to what the pass found there (the cache may have
//! changed meanwhile), so position and total meet at the end.

use std::collections::HashMap;

use indicatif::ProgressBar;
use xxhash_rust::xxh3::xxh3_64;

use super::work::Opts;
use super::Mode;
use crate::app::progress::{self, Blocked};
use crate::cache::JobDir;
use crate::checkpoint::Checkpoint;
use crate::time;

/// A pass's bar and the returns it counted of each job not reached yet.
pub(super) struct Progress {
    pub(super) bar: ProgressBar,
    /// Returns counted, by a hash of the job's folder key.
    counted: HashMap<u64, u64>,
}

impl Progress {
    /// No bar: nothing counted, nothing drawn.
    pub(super) fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            counted: HashMap::new(),
        }
    }

    /// Counts what a pass of `mode` over `dirs` takes up (a spinner meanwhile) and shows a
    /// bar over it; hidden when there is nothing.
    pub(super) fn counted<'d>(
        opts: Opts<'_>,
        mode: Mode,
        checkpoint: Option<&Checkpoint>,
        dirs: impl Iterator<Item = &'d JobDir>,
        blocked: Blocked,
    ) -> Progress {
        let spinner = progress::counter(false, "returns to take up (counting)");
        let mut counted = HashMap::new();
        let mut total = 0;
        for dir in dirs {
            let n = to_ship(opts, mode, checkpoint, dir);
            if n > 0 {
                counted.insert(xxh3_64(dir.key.as_bytes()), n);
                total += n;
                spinner.set_position(total);
            }
        }
        spinner.finish_and_clear();
        if total == 0 {
            return Progress::hidden();
        }
        Progress {
            bar: progress::bar(false, total, blocked),
            counted,
        }
    }

    /// Job `key`'s turn: the pass takes up `returns` of it (none when it is left for later).
    pub(super) fn job(&mut self, key: &str, returns: u64) {
        let counted = self.counted.remove(&xxh3_64(key.as_bytes())).unwrap_or(0);
        if returns > counted {
            self.bar.inc_length(returns - counted);
        } else {
            self.bar.dec_length(counted - returns);
        }
    }

    /// One return taken: read (`landed`), or found not there yet (or unreadable) after all.
    pub(super) fn returned(&self, landed: bool) {
        if landed {
            self.bar.inc(1);
        } else {
            self.bar.dec_length(1);
        }
    }

    /// The end of the pass: jobs it did not take after all leave the total, and the bar stays
    /// on the terminal with what was done, at what rate.
    pub(super) fn finish(self) {
        let left: u64 = self.counted.values().sum();
        self.bar.dec_length(left);
        self.bar.finish();
    }
}

/// The returns of `dir` a pass of `mode` takes up, as far as can be told before its turn.
fn to_ship(opts: Opts<'_>, mode: Mode, checkpoint: Option<&Checkpoint>, dir: &JobDir) -> u64 {
    let known = checkpoint.and_then(|cp| cp.job(&dir.key));
    let sync = mode == Mode::Sync;
    if sync && known.is_some_and(|s| s.non_state)
        || sync
            && dir.minions.is_empty()
            && checkpoint.is_some_and(|cp| !cp.needs_listing(&dir.key, dir.mtime))
        || dir.nocache
    {
        return 0;
    }
    let done = known.filter(|_| sync).map_or(0, Checkpoint::done_count);
    let left = dir.minion_count().saturating_sub(done as u64);
    let ranged = opts.filter.since.is_some() || opts.filter.until.is_some();
    if left > 0 && mode == Mode::Backfill && ranged {
        let jid = dir.read_jid(opts.cache.max_return_bytes).ok().flatten();
        let publish = jid.and_then(|j| time::jid_instant(&j, opts.cache.jid_zone));
        if !opts.filter.in_range(publish) {
            return 0;
        }
    }
    left
}
