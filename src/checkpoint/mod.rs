//! The checkpoint: which returns of which jobs are done (their events confirmed delivered, or
//! nothing to ship), and which jobs hold no state run. The only module that touches the state
//! file and its journal.
//!
//! The state file is a snapshot; what changed since is appended to `<state>.journal` and
//! fsynced at every save, so a save costs what changed, not the size of the cache. Once the
//! journal outgrows the snapshot (or a job was forgotten) the two are compacted: a new snapshot
//! is written to a temp file, fsynced, renamed over the old one and the folder fsynced, then a
//! fresh journal replaces the old one the same way. A crash at any point leaves a snapshot and
//! either its own journal (replayed up to its last whole record) or a stale one (ignored).
//! A lock file beside them (flock) keeps two instances from shipping the same cache.
//!
//! In memory a job holds its done minions as sorted indices into one table of names, so
//! 200,000 returns cost about a megabyte.

mod files;
mod journal;
mod lease;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub(crate) use files::{journal_path, Busy};
use files::{remove_temps, with_suffix, write_atomically};
use journal::Op;
use lease::Lease;
pub(crate) use lease::Waiting;
use snapshot::VERSION;

/// The journal is compacted into the snapshot once it is larger than both this and the snapshot.
const COMPACT_AFTER: u64 = 1 << 20;

/// What is known of one job folder, keyed by its path under the cache (`ab/cdef…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobState {
    pub(crate) jid: Box<str>,
    /// The job runs no state function: its returns are never read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) non_state: bool,
    /// Minions whose return is done (shipped and confirmed, or holding nothing to ship), as
    /// sorted indices into the checkpoint's minion names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    done: Vec<u32>,
    /// The job folder's mtime (ns) when every return in it was done: while it stays the same,
    /// no minion folder came, and the folder need not be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) settled: Option<i64>,
    /// The job's own events (job, no_return) were shipped and confirmed, or it has none
    /// (`saltutil.find_job`). Absent from state files written before job events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) job_shipped: bool,
}

/// Minion names, each kept once however many jobs it returned in.
#[derive(Debug, Default)]
struct Names {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Names {
    fn from(names: Vec<Box<str>>) -> Names {
        let ids = names.iter().cloned().zip(0..).collect();
        Names { names, ids }
    }

    fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.id(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 4 billion minions");
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }
}

/// What saving cost so far: for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SaveStats {
    pub(crate) saves: u64,
    pub(crate) bytes: u64,
}

/// The loaded checkpoint, holding the lock while it lives.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    path: PathBuf,
    jobs: BTreeMap<String, JobState>,
    names: Names,
    /// True once the state file exists on disk (or was loaded).
    existed: bool,
    /// The snapshot's generation, named by the first line of its journal.
    generation: u64,
    /// Changes made since the last save, to append to the journal.
    unsaved: Vec<Op>,
    /// The journal open for appending, and its length; `None`: the next save compacts.
    journal: Option<(File, u64)>,
    snapshot_bytes: u64,
    /// A job was forgotten: the next save compacts (the journal only ever adds).
    compact: bool,
    stats: SaveStats,
    /// Held while the checkpoint lives; checked before every save.
    lease: Option<Lease>,
}

impl Checkpoint {
    /// Locks and loads the state file at `path` and its journal; a missing file is an empty
    /// checkpoint. A file that cannot be read or understood is an error: shipping everything
    /// again silently would flood the receiver. `reset` starts over instead. Temp files left by
    /// an instance that died are removed (the lock says none is alive).
    pub(crate) fn open(path: &Path, reset: bool) -> Result<Checkpoint> {
        let (file, lock_path) = files::lock_file(path)?;
        let lease = Lease::take(file, &lock_path)?;
        Checkpoint::opened(path, reset, lease)
    }

    /// [`Checkpoint::open`] for a standby: waits for the lease (telling `status` what for)
    /// until `stop` is set, `None` then.
    pub(crate) fn open_waiting(
        path: &Path,
        reset: bool,
        stop: &std::sync::atomic::AtomicBool,
        status: &mut dyn FnMut(Waiting<'_>),
    ) -> Result<Option<Checkpoint>> {
        let (file, lock_path) = files::lock_file(path)?;
        match Lease::wait(file, &lock_path, stop, status)? {
            Some(lease) => Checkpoint::opened(path, reset, lease).map(Some),
            None => Ok(None),
        }
    }

    fn opened(path: &Path, reset: bool, lease: Lease) -> Result<Checkpoint> {
        remove_temps(path)?;
        let mut cp = if reset {
            Checkpoint::empty(path)
        } else {
            Checkpoint::load(path, true)?
        };
        cp.lease = Some(lease);
        Ok(cp)
    }

    /// Loads without locking and never writes: for `--dry-run`, which must not touch state.
    pub(crate) fn peek(path: &Path) -> Result<Checkpoint> {
        Checkpoint::load(path, false)
    }

    /// Loads as [`Checkpoint::peek`] does, after testing the lock without taking it or making its
    /// file: for `check`, which leaves no trace. Another holder is a [`Busy`] error.
    pub(crate) fn inspect(path: &Path) -> Result<Checkpoint> {
        files::lock_is_free(path)?;
        Checkpoint::peek(path)
    }

    fn empty(path: &Path) -> Checkpoint {
        Checkpoint {
            path: path.to_owned(),
            jobs: BTreeMap::new(),
            names: Names::default(),
            existed: false,
            generation: 0,
            unsaved: Vec::new(),
            journal: None,
            snapshot_bytes: 0,
            compact: false,
            stats: SaveStats::default(),
            lease: None,
        }
    }

    /// The snapshot, then its journal; `writable` opens the journal to append to it.
    fn load(path: &Path, writable: bool) -> Result<Checkpoint> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::empty(path)),
            Err(e) => return Err(e).with_context(|| format!("state file {}", path.display())),
        };
        let mut cp = Checkpoint::empty(path);
        cp.existed = true;
        cp.snapshot_bytes = bytes.len() as u64;
        let file = snapshot::parse(&bytes, path)?;
        drop(bytes);
        cp.generation = file.generation;
        cp.names = file.names;
        cp.jobs = file.jobs;
        if file.v1 {
            // The journal is of version 2 only: the first save writes a snapshot.
            return Ok(cp);
        }
        let journal_path = with_suffix(path, ".journal");
        let journal = journal::replay(&journal_path, cp.generation)
            .with_context(|| format!("journal {}", journal_path.display()))?;
        if let Some((ops, good)) = journal {
            for op in &ops {
                cp.apply(op);
            }
            if writable {
                // Appends go after the last whole record: a torn one is cut off.
                let file = OpenOptions::new()
                    .append(true)
                    .open(&journal_path)
                    .with_context(|| format!("journal {}", journal_path.display()))?;
                file.set_len(good)
                    .with_context(|| format!("journal {}", journal_path.display()))?;
                cp.journal = Some((file, good));
            }
        }
        Ok(cp)
    }

    /// Err once another saltship took the lease (it replaced this one while it hung): the
    /// daemon stops, and writes nothing.
    pub(crate) fn lease_lost(&self) -> Result<()> {
        self.lease.as_ref().map_or(Ok(()), Lease::lost)
    }

    /// Whether there was a state file (a first run may start at "now" instead).
    pub(crate) fn existed(&self) -> bool {
        self.existed
    }

    pub(crate) fn job(&self, key: &str) -> Option<&JobState> {
        self.jobs.get(key)
    }

    /// How many of `job`'s returns are done: what a progress bar need not count again.
    pub(crate) fn done_count(job: &JobState) -> usize {
        job.done.len()
    }

    /// Whether `minion`'s return in `job` is done.
    pub(crate) fn is_done(&self, job: &JobState, minion: &str) -> bool {
        self.names
            .id(minion)
            .is_some_and(|id| job.done.binary_search(&id).is_ok())
    }

    /// What saving has written so far.
    pub(crate) fn save_stats(&self) -> SaveStats {
        self.stats
    }

    /// Makes a change, and keeps it for the next save.
    fn change(&mut self, op: Op) {
        if self.apply(&op) {
            // Returns of one job come together: one record for them.
            match self.unsaved.last_mut() {
                Some(last)
                    if last.key == op.key && !op.done.is_empty() && !last.done.is_empty() =>
                {
                    last.done.extend(op.done)
                }
                _ => self.unsaved.push(op),
            }
        }
    }

    /// Applies a change; whether it changed anything.
    fn apply(&mut self, op: &Op) -> bool {
        let jid = || op.jid.as_deref().unwrap_or_default().into();
        if op.non_state {
            let job = JobState {
                jid: jid(),
                non_state: true,
                job_shipped: self.jobs.get(&op.key).is_some_and(|j| j.job_shipped)
                    || op.job_shipped,
                ..JobState::default()
            };
            return self.jobs.insert(op.key.clone(), job.clone()).as_ref() != Some(&job);
        }
        let mut changed = false;
        if !op.done.is_empty() {
            let ids: Vec<u32> = op.done.iter().map(|m| self.names.intern(m)).collect();
            let job = self.jobs.entry(op.key.clone()).or_insert_with(|| JobState {
                jid: jid(),
                ..JobState::default()
            });
            for id in ids {
                if let Err(at) = job.done.binary_search(&id) {
                    job.done.insert(at, id);
                    changed = true;
                }
            }
        }
        if op.job_shipped {
            let job = self.jobs.entry(op.key.clone()).or_insert_with(|| JobState {
                jid: jid(),
                ..JobState::default()
            });
            changed |= !job.job_shipped;
            job.job_shipped = true;
        }
        if let Some(job) = self
            .jobs
            .get_mut(&op.key)
            .filter(|j| op.settled.is_some() && j.settled != op.settled)
        {
            job.settled = op.settled;
            changed = true;
        }
        changed
    }

    /// Records that `minion`'s return in job `key` is done.
    pub(crate) fn record(&mut self, key: &str, jid: &str, minion: &str) {
        self.change(Op {
            key: key.to_owned(),
            jid: Some(jid.to_owned()),
            done: vec![minion.to_owned()],
            ..Op::default()
        });
    }

    /// Records that job `key` runs no state function.
    pub(crate) fn record_non_state(&mut self, key: &str, jid: &str) {
        self.change(Op {
            key: key.to_owned(),
            jid: Some(jid.to_owned()),
            non_state: true,
            ..Op::default()
        });
    }

    /// Records that the job events of job `key` are shipped (or that it has none).
    pub(crate) fn record_job_shipped(&mut self, key: &str, jid: &str) {
        self.change(Op {
            key: key.to_owned(),
            jid: Some(jid.to_owned()),
            job_shipped: true,
            ..Op::default()
        });
    }

    /// Whether the job events of job `key` are shipped.
    pub(crate) fn job_shipped(&self, key: &str) -> bool {
        self.jobs.get(key).is_some_and(|j| j.job_shipped)
    }

    /// Records that every return of job `key` is done while its folder's mtime is `mtime`.
    pub(crate) fn settle(&mut self, key: &str, mtime: i64) {
        self.change(Op {
            key: key.to_owned(),
            settled: Some(mtime),
            ..Op::default()
        });
    }

    /// Whether the job folder `key` must be listed to find what is new in it: not when its
    /// job runs no state function, nor when it settled at this very mtime.
    pub(crate) fn needs_listing(&self, key: &str, mtime: Option<i64>) -> bool {
        match self.jobs.get(key) {
            Some(job) if job.non_state => false,
            Some(job) => job.settled.is_none() || job.settled != mtime,
            None => true,
        }
    }

    /// Forgets the jobs the master has cleaned up: those not in `present`.
    pub(crate) fn prune(&mut self, present: &BTreeSet<&str>) -> usize {
        let before = self.jobs.len();
        self.jobs.retain(|k, _| present.contains(k.as_str()));
        let pruned = before - self.jobs.len();
        self.compact |= pruned > 0;
        pruned
    }

    /// Makes the changes durable: appended to the journal, or compacted into a new snapshot.
    /// On failure they stay unsaved, for the next save to try again.
    pub(crate) fn save(&mut self) -> Result<()> {
        if self.unsaved.is_empty() && !self.compact {
            return Ok(());
        }
        if let Some(lease) = &self.lease {
            lease.check()?;
        }
        let written = match &mut self.journal {
            Some((file, len))
                if !self.compact && *len <= COMPACT_AFTER.max(self.snapshot_bytes) =>
            {
                let journal_path = with_suffix(&self.path, ".journal");
                let n = journal::append(file, *len, &self.unsaved).with_context(|| {
                    format!("saving the checkpoint to {}", journal_path.display())
                })?;
                *len += n;
                n
            }
            _ => self
                .compact()
                .with_context(|| format!("saving state file {}", self.path.display()))?,
        };
        self.unsaved.clear();
        self.stats.saves += 1;
        self.stats.bytes += written;
        Ok(())
    }

    /// Writes the whole checkpoint as a new snapshot, then starts its journal afresh.
    fn compact(&mut self) -> io::Result<u64> {
        // A new generation never equals an old one, not even after --reset-state.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let generation = now.max(self.generation + 1);
        let bytes = snapshot::write(generation, &self.names.names, &self.jobs)?;
        self.journal = None;
        write_atomically(&self.path, &bytes)?;
        self.generation = generation;
        self.existed = true;
        self.snapshot_bytes = bytes.len() as u64;
        self.compact = false;
        let header = journal::header(generation);
        let journal_path = with_suffix(&self.path, ".journal");
        write_atomically(&journal_path, &header)?;
        let file = OpenOptions::new().append(true).open(&journal_path)?;
        self.journal = Some((file, header.len() as u64));
        Ok((bytes.len() + header.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_save_and_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/state");
        let mut cp = Checkpoint::open(&path, false).expect("open");
        assert!(!cp.existed());
        cp.record("ab/cd", "20261123185750440911", "web1");
        cp.record_non_state("ef/01", "20261123185751000000");
        cp.save().expect("save");
        drop(cp);
        let cp = Checkpoint::open(&path, false).expect("reopen");
        assert!(cp.existed());
        assert!(cp.is_done(cp.job("ab/cd").expect("job"), "web1"));
        assert!(cp.job("ef/01").expect("job").non_state);
    }

    /// State files written before job events (no `job_shipped`, no `e` in the journal) load
    /// as before, and the new flag survives a save, a journal replay and a compaction.
    #[test]
    fn job_events_shipped_are_remembered_and_old_files_still_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let old = br#"{"version":2,"generation":7,"minions":["web1"],"jobs":{"ab/cd":{"jid":"1","done":[0]},"ef/01":{"jid":"2","non_state":true}}}"#;
        fs::write(&path, old).expect("write");
        fs::write(
            with_suffix(&path, ".journal"),
            b"{\"version\":2,\"generation\":7}\n{\"k\":\"ab/cd\",\"s\":5}\n",
        )
        .expect("write journal");
        let mut cp = Checkpoint::open(&path, false).expect("an old state file loads");
        let job = cp.job("ab/cd").expect("job").clone();
        assert!(cp.is_done(&job, "web1") && !cp.job_shipped("ab/cd"));
        assert_eq!(job.settled, Some(5));
        cp.record_job_shipped("ab/cd", "1");
        cp.record_job_shipped("ef/01", "2");
        cp.record_non_state("ef/01", "2");
        cp.record_job_shipped("99/99", "3");
        cp.save().expect("save to the journal");
        drop(cp);
        let mut cp = Checkpoint::open(&path, false).expect("replayed");
        for key in ["ab/cd", "ef/01", "99/99"] {
            assert!(cp.job_shipped(key), "{key}");
        }
        assert!(cp.job("ef/01").expect("job").non_state);
        assert!(cp.is_done(cp.job("ab/cd").expect("job"), "web1"));
        cp.compact().expect("compact");
        drop(cp);
        let cp = Checkpoint::open(&path, false).expect("compacted");
        assert!(cp.job_shipped("99/99") && cp.job_shipped("ab/cd"));
    }

    #[test]
    fn a_second_instance_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let _first = Checkpoint::open(&path, false).expect("first");
        let second = Checkpoint::open(&path, false).expect_err("second must not get the lock");
        assert!(second.downcast_ref::<Busy>().is_some(), "{second:#}");
    }

    #[test]
    fn damaged_or_newer_files_are_errors_unless_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        for bad in [
            &b"{\"version\":1,\"jobs\":{\"x"[..],
            b"\x00\x01garbage",
            br#"{"version":3,"jobs":{}}"#,
            br#"{"version":2,"minions":["a"],"jobs":{"ab":{"jid":"1","done":[1]}}}"#,
        ] {
            fs::write(&path, bad).expect("write");
            let e = Checkpoint::open(&path, false).expect_err("bad state file");
            assert!(format!("{e:#}").contains("--reset-state"), "{e:#}");
            assert!(Checkpoint::open(&path, true).is_ok());
        }
    }

    #[test]
    fn prune_forgets_cleaned_up_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cp = Checkpoint::open(&dir.path().join("state"), false).expect("open");
        cp.record("ab/cd", "1", "web1");
        cp.record("ef/01", "2", "web1");
        assert_eq!(cp.prune(&["ab/cd"].into_iter().collect()), 1);
        assert!(cp.job("ef/01").is_none() && cp.job("ab/cd").is_some());
    }

    fn journal_len(path: &Path) -> u64 {
        fs::metadata(with_suffix(path, ".journal")).map_or(0, |m| m.len())
    }

    #[test]
    fn saves_append_to_the_journal_and_reopen_replays_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let mut cp = Checkpoint::open(&path, false).expect("open");
        cp.record("ab/cd", "1", "web1");
        cp.save().expect("first save: a snapshot");
        let snapshot = fs::read(&path).expect("snapshot");
        let journal = journal_len(&path);
        cp.record("ab/cd", "1", "web2");
        cp.settle("ab/cd", 42);
        cp.record_non_state("ef/01", "2");
        cp.save().expect("second save: appended");
        assert_eq!(
            fs::read(&path).expect("snapshot"),
            snapshot,
            "snapshot rewritten"
        );
        let appended = journal_len(&path) - journal;
        assert!(
            appended > 0 && appended < 200,
            "{appended} bytes for three changes"
        );
        assert_eq!(cp.save_stats().saves, 2);
        cp.save().expect("nothing to save");
        assert_eq!(cp.save_stats().saves, 2, "a save without changes wrote");
        drop(cp);
        let cp = Checkpoint::open(&path, false).expect("reopen");
        let job = cp.job("ab/cd").expect("job");
        assert!(cp.is_done(job, "web1") && cp.is_done(job, "web2") && !cp.is_done(job, "web3"));
        assert_eq!(job.settled, Some(42));
        assert!(cp.job("ef/01").expect("job").non_state);
    }

    #[test]
    fn a_torn_last_record_loses_only_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let mut cp = Checkpoint::open(&path, false).expect("open");
        cp.record("ab/cd", "1", "web1");
        cp.save().expect("save");
        cp.record("ab/cd", "1", "web2");
        cp.save().expect("save");
        cp.record("ab/cd", "1", "web3");
        cp.save().expect("save");
        drop(cp);
        // Power lost mid-append: the last record is cut.
        let journal = with_suffix(&path, ".journal");
        let len = fs::metadata(&journal).expect("journal").len();
        OpenOptions::new()
            .write(true)
            .open(&journal)
            .expect("open")
            .set_len(len - 5)
            .expect("tear");
        let mut cp = Checkpoint::open(&path, false).expect("reopen");
        let job = cp.job("ab/cd").expect("job");
        assert!(cp.is_done(job, "web1") && cp.is_done(job, "web2") && !cp.is_done(job, "web3"));
        // The torn tail is cut off, so what is appended next is read back.
        cp.record("ab/cd", "1", "web4");
        cp.save().expect("save");
        drop(cp);
        let cp = Checkpoint::open(&path, false).expect("reopen");
        assert!(cp.is_done(cp.job("ab/cd").expect("job"), "web4"));
    }

    #[test]
    fn a_big_journal_and_a_prune_compact_into_the_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let mut cp = Checkpoint::open(&path, false).expect("open");
        cp.record("00/first", "1", "web1");
        cp.save().expect("save");
        let header = journal_len(&path);
        let mut compacted = false;
        for i in 0..300 {
            for j in 0..100 {
                cp.record(&format!("ab/{i}"), "1", &format!("minion-{j:040}"));
            }
            cp.save().expect("save");
            if journal_len(&path) == header {
                compacted = true;
                break;
            }
        }
        assert!(
            compacted,
            "the journal grew past {COMPACT_AFTER} bytes and was never compacted"
        );
        drop(cp);
        let mut cp = Checkpoint::open(&path, false).expect("reopen");
        assert!(cp.job("ab/0").is_some() && cp.job("00/first").is_some());
        cp.record("zz/late", "2", "web1");
        cp.save().expect("save");
        assert!(journal_len(&path) > header);
        // The master cleaned jobs up: forgetting them rewrites the snapshot.
        assert!(cp.prune(&["zz/late"].into_iter().collect()) > 0);
        cp.save().expect("save");
        assert_eq!(journal_len(&path), header);
        let text = fs::read_to_string(&path).expect("snapshot");
        assert!(text.contains("zz/late") && !text.contains("00/first"));
    }

    #[test]
    fn version_1_files_are_read_and_rewritten_as_version_2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        fs::write(
            &path,
            r#"{"version":1,"jobs":{"ab/cd":{"jid":"1","done":["db1","web1"],"settled":7},"ef/01":{"jid":"2","non_state":true}}}"#,
        )
        .expect("write");
        let mut cp = Checkpoint::open(&path, false).expect("open v1");
        let job = cp.job("ab/cd").expect("job");
        assert!(cp.is_done(job, "db1") && cp.is_done(job, "web1") && job.settled == Some(7));
        assert!(cp.job("ef/01").expect("job").non_state);
        cp.record("ab/cd", "1", "web2");
        cp.save().expect("save");
        assert!(fs::read_to_string(&path)
            .expect("state")
            .starts_with(r#"{"version":2,"#));
        drop(cp);
        let cp = Checkpoint::open(&path, false).expect("open v2");
        let job = cp.job("ab/cd").expect("job");
        assert!(cp.is_done(job, "db1") && cp.is_done(job, "web2"));
    }

    #[test]
    fn stale_temp_files_are_removed_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let stale = ["state.tmp.123", "state.journal.tmp.99"];
        let kept = ["state.tmp.x", "other.tmp.1", "state.journal"];
        for name in stale.iter().chain(&kept) {
            fs::write(dir.path().join(name), b"x").expect("write");
        }
        let _cp = Checkpoint::open(&path, false).expect("open");
        for name in stale {
            assert!(!dir.path().join(name).exists(), "{name} left");
        }
        for name in kept {
            assert!(dir.path().join(name).exists(), "{name} removed");
        }
    }
}
