//! The state file's snapshot: version 2 as written, and version 1 (every job with its done
//! minions' names) read and migrated, to be written as version 2 at the first save.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{JobState, Names};

/// The state file's format version; a newer file is refused rather than misread. Version 1
/// (minion names in every job, no journal) is still read.
pub(crate) const VERSION: u32 = 2;

/// The state file as written (version 2).
#[derive(Serialize)]
struct SnapshotOut<'a> {
    version: u32,
    generation: u64,
    minions: &'a [Box<str>],
    jobs: &'a BTreeMap<String, JobState>,
}

#[derive(Deserialize)]
struct SnapshotIn {
    version: u32,
    #[serde(default)]
    generation: u64,
    #[serde(default)]
    minions: Vec<Box<str>>,
    jobs: BTreeMap<String, JobState>,
}

/// Version 1: every job with its done minions' names.
#[derive(Deserialize)]
struct SnapshotV1 {
    jobs: BTreeMap<String, JobV1>,
}

#[derive(Deserialize)]
struct JobV1 {
    jid: Box<str>,
    #[serde(default)]
    non_state: bool,
    #[serde(default)]
    done: BTreeSet<String>,
    #[serde(default)]
    settled: Option<i64>,
}

#[derive(Deserialize)]
struct Head {
    version: u32,
}

/// A snapshot as read.
pub(super) struct Snapshot {
    pub(super) generation: u64,
    pub(super) names: Names,
    pub(super) jobs: BTreeMap<String, JobState>,
    /// Read from version 1: no journal goes with it.
    pub(super) v1: bool,
}

/// Reads the snapshot in `bytes`, the state file at `path`; one that cannot be understood is
/// an error naming it and what to do.
pub(super) fn parse(bytes: &[u8], path: &Path) -> Result<Snapshot> {
    let fix = "fix or remove it, or start over with --reset-state";
    let damaged = || format!("state file {} is damaged ({fix})", path.display());
    match serde_json::from_slice::<Head>(bytes)
        .with_context(damaged)?
        .version
    {
        1 => {
            let file: SnapshotV1 = serde_json::from_slice(bytes).with_context(damaged)?;
            let mut names = Names::default();
            let mut jobs = BTreeMap::new();
            for (key, job) in file.jobs {
                let done = job.done.iter().map(|m| names.intern(m)).collect();
                let job = JobState {
                    jid: job.jid,
                    non_state: job.non_state,
                    done,
                    settled: job.settled,
                    job_shipped: false,
                };
                jobs.insert(key, job);
            }
            Ok(Snapshot {
                generation: 0,
                names,
                jobs,
                v1: true,
            })
        }
        VERSION => {
            let file: SnapshotIn = serde_json::from_slice(bytes).with_context(damaged)?;
            let ids = file.minions.len();
            if file
                .jobs
                .values()
                .any(|j| j.done.iter().any(|&i| i as usize >= ids))
            {
                bail!("{}", damaged());
            }
            debug_assert_eq!(file.version, VERSION);
            Ok(Snapshot {
                generation: file.generation,
                names: Names::from(file.minions),
                jobs: file.jobs,
                v1: false,
            })
        }
        v => bail!(
            "state file {} has format version {v} and this saltship reads 1 to {VERSION} ({fix})",
            path.display()
        ),
    }
}

/// The snapshot of version 2, as bytes ending in a newline.
pub(super) fn write(
    generation: u64,
    minions: &[Box<str>],
    jobs: &BTreeMap<String, JobState>,
) -> io::Result<Vec<u8>> {
    let snapshot = SnapshotOut {
        version: VERSION,
        generation,
        minions,
        jobs,
    };
    let mut bytes = serde_json::to_vec(&snapshot).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}
