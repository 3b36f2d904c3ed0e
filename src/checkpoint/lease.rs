//! The lease in the lock file: which saltship ships a cache, so that on a master cluster (one
//! state file on the shared volume, a saltship on every master) a standby can take over.
//!
//! The lock file holds one record, rewritten in place by its holder every [`RENEW`]:
//! `saltship-lease 1 <holder> <renewal> <flock>`. flock alone tells a dead holder (its lock is
//! freed when it dies, on GlusterFS and NFS as locally) but not a hung one: a holder stopped
//! (SIGSTOP, a FUSE client that hangs) keeps its flock forever. So:
//! - flock free and the record says its holder had it: the holder died; take over at once.
//! - flock held, and the record did not change for [`EXPIRE`] by the standby's own clock (no
//!   clocks are compared between masters): the holder hangs; write our record, wait a moment,
//!   and ship if it is still ours (two standbys racing: the last writer wins, the other sees it).
//! - flock free but the record names a holder without flock (one that took over from a hung
//!   holder) renewed less than [`EXPIRE`] ago: it ships; stand by.
//!
//! A holder that finds another's record stops before it writes the checkpoint
//! ([`Lease::check`] runs before every save). What it sent and had not confirmed is shipped
//! again by the new holder: duplicates, never a loss, since the checkpoint only ever records
//! what a receiver acknowledged. A record that cannot be read (torn, or the empty file of a
//! saltship from before leases) is never taken over by age: its holder may be alive.

use std::fs::{File, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};

use super::files::Busy;

/// How often the holder rewrites its record.
pub(crate) const RENEW: Duration = Duration::from_secs(3);
/// A record unchanged this long, with its flock still held, belongs to a holder that hangs.
pub(crate) const EXPIRE: Duration = Duration::from_secs(20);
/// How often a standby tries the lock: a dead holder is replaced within this and a pass.
pub(crate) const POLL: Duration = Duration::from_millis(500);
/// After writing our record over a hung holder's, how long before reading it back.
const SETTLE: Duration = Duration::from_secs(1);
/// Records are written at a fixed length, so a renewal never leaves a shorter one's tail.
const LEN: usize = 200;

/// One lock file record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) holder: String,
    renewal: u64,
    /// Wall-clock milliseconds of the renewal: only read when the flock is free.
    at_ms: u64,
    flock: bool,
}

impl Record {
    fn parse(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut words = text.split_whitespace();
        if (words.next()?, words.next()?) != ("saltship-lease", "1") {
            return None;
        }
        Some(Record {
            holder: words.next()?.to_owned(),
            renewal: words.next()?.parse().ok()?,
            at_ms: words.next()?.parse().ok()?,
            flock: words.next()? == "flock",
        })
    }

    fn bytes(&self) -> Vec<u8> {
        let flock = if self.flock { "flock" } else { "noflock" };
        let mut line = format!(
            "saltship-lease 1 {} {} {} {flock}",
            self.holder, self.renewal, self.at_ms
        );
        line.truncate(LEN - 1);
        let mut bytes = format!("{line:<width$}\n", width = LEN - 1).into_bytes();
        bytes.truncate(LEN);
        bytes
    }

    /// Renewed less than [`EXPIRE`] ago by this host's clock.
    fn recent(&self) -> bool {
        now_ms().abs_diff(self.at_ms) < EXPIRE.as_millis() as u64
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This saltship: host, process and start, so a restarted one is a new holder.
fn identity() -> String {
    let host = crate::cli::parse::hostname().replace(char::is_whitespace, "_");
    format!("{host}:{}:{}", std::process::id(), now_ms())
}

fn read(file: &File) -> Option<Record> {
    let mut buf = [0u8; LEN];
    let n = file.read_at(&mut buf, 0).ok()?;
    Record::parse(&buf[..n])
}

/// Writes `record` in place, through to the server: a network filesystem's client may hold a
/// write back (GlusterFS's write-behind) and the other masters would never see it.
fn write(file: &File, record: &Record) -> std::io::Result<()> {
    file.write_all_at(&record.bytes(), 0)?;
    file.sync_data()
}

/// Who the lease of the lock file at `path` names, if it can be read.
pub(super) fn holder_of(path: &Path) -> Option<String> {
    File::open(path)
        .ok()
        .as_ref()
        .and_then(read)
        .map(|r| r.holder)
}

/// What a standby is waiting for, for its status line.
pub(crate) enum Waiting<'a> {
    /// Another saltship holds the lease (its holder named when its record can be read).
    Held(Option<&'a str>),
    /// That holder's record stopped changing: taking over once it is [`EXPIRE`] old.
    Hung(&'a str),
}

/// The lease, held while it lives: renewed by its own thread (a pass that waits on a receiver
/// for minutes must not lose it), given up on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    shared: Arc<Shared>,
    renewer: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    record: Mutex<Record>,
    file: File,
    /// The flock is ours (a holder that took over from a hung one gets it once that one dies).
    flocked: AtomicBool,
    /// The renewer found another's record: [`Lease::lost`] says so without reading the file.
    lost: AtomicBool,
    stop: AtomicBool,
}

impl Lease {
    /// Takes the lease of the lock file `file` (at `path`) now, or says who holds it
    /// ([`Busy`]).
    pub(super) fn take(file: File, path: &Path) -> Result<Lease> {
        Lease::wait(file, path, &AtomicBool::new(true), &mut |_| {})?
            .ok_or_else(|| Busy(path.to_owned()).into())
    }

    /// Waits for the lease of `file` (at `path`) until `stop` is set: `None` then. `status`
    /// hears what the wait is for at every try (every [`POLL`]). With `stop` already set, tries once.
    pub(super) fn wait(
        file: File,
        path: &Path,
        stop: &AtomicBool,
        status: &mut dyn FnMut(Waiting<'_>),
    ) -> Result<Option<Lease>> {
        let id = identity();
        let mut seen: Option<Record> = None;
        let mut since = Instant::now();
        loop {
            let got = match file.try_lock() {
                Ok(()) => Some(true),
                Err(TryLockError::WouldBlock) => None,
                Err(TryLockError::Error(e)) => {
                    return Err(anyhow!("lock file {}: {e}", path.display()))
                }
            };
            let record = read(&file);
            let held_without_flock = record
                .as_ref()
                .is_some_and(|r| !r.flock && r.holder != id && r.recent());
            match got {
                Some(_) if !held_without_flock => {
                    return Lease::start(file, path, id, true).map(Some)
                }
                Some(_) => {
                    let _ = file.unlock();
                }
                None => {}
            }
            if record != seen || record.is_none() {
                since = Instant::now();
                seen = record.clone();
            }
            let hung = seen.is_some() && since.elapsed() >= EXPIRE / 2;
            if seen.is_some() && since.elapsed() >= EXPIRE {
                let lease = Lease::start(file.try_clone()?, path, id.clone(), false)?;
                std::thread::sleep(SETTLE);
                if read(&file).is_some_and(|r| r.holder == id) {
                    return Ok(Some(lease));
                }
                drop(lease);
                since = Instant::now();
            }
            let holder = seen.as_ref().map(|r| r.holder.as_str());
            status(match (hung, holder) {
                (true, Some(h)) => Waiting::Hung(h),
                _ => Waiting::Held(holder),
            });
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    fn start(file: File, path: &Path, holder: String, flocked: bool) -> Result<Lease> {
        let record = Record {
            holder,
            renewal: 0,
            at_ms: now_ms(),
            flock: flocked,
        };
        write(&file, &record).map_err(|e| anyhow!("lock file {}: {e}", path.display()))?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            record: Mutex::new(record),
            file,
            flocked: AtomicBool::new(flocked),
            lost: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let renewer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("lease".into())
                .spawn(move || shared.renew_until_stopped())?
        };
        Ok(Lease {
            shared,
            renewer: Some(renewer),
        })
    }

    /// Err once the renewer found the lease taken (cheap: no file read), saying by whom.
    pub(crate) fn lost(&self) -> Result<()> {
        if self.shared.lost.load(Ordering::SeqCst) {
            self.check()?;
        }
        Ok(())
    }

    /// Err when another saltship took the lease: then nothing may be written.
    pub(crate) fn check(&self) -> Result<()> {
        let ours = self.shared.record.lock().map(|r| r.holder.clone());
        let ours = ours.unwrap_or_default();
        match read(&self.shared.file) {
            Some(r) if r.holder != ours => Err(anyhow!(
                "{} took over the lease in {}: it ships this cache now; stopping before writing \
                 the checkpoint (what was sent and not confirmed is shipped again by it)",
                r.holder,
                self.shared.path.display()
            )),
            _ => Ok(()),
        }
    }
}

impl Shared {
    fn renew_until_stopped(&self) {
        let mut next = Instant::now() + RENEW;
        while !self.stop.load(Ordering::SeqCst) {
            if Instant::now() < next {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            next = Instant::now() + RENEW;
            let Ok(mut record) = self.record.lock() else {
                return;
            };
            if read(&self.file).is_some_and(|r| r.holder != record.holder) {
                // Taken: renewing would take it back. The daemon stops at its next turn.
                self.lost.store(true, Ordering::SeqCst);
                return;
            }
            if !self.flocked.load(Ordering::SeqCst) && self.file.try_lock().is_ok() {
                self.flocked.store(true, Ordering::SeqCst);
            }
            record.renewal += 1;
            record.at_ms = now_ms();
            record.flock = self.flocked.load(Ordering::SeqCst);
            if let Err(e) = write(&self.file, &record) {
                log::warn!("renewing the lease in {}: {e}", self.path.display());
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Display for Waiting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waiting::Held(Some(h)) => write!(f, "{h} holds the lease"),
            Waiting::Held(None) => write!(f, "another saltship holds the lock"),
            Waiting::Hung(h) => write!(
                f,
                "{h} stopped renewing its lease: taking over if it stays silent for {} s",
                EXPIRE.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_at_a_fixed_length() {
        let r = Record {
            holder: "m1:42:7".into(),
            renewal: 3,
            at_ms: 9,
            flock: true,
        };
        let bytes = r.bytes();
        assert_eq!(bytes.len(), LEN);
        assert_eq!(Record::parse(&bytes), Some(r));
        assert_eq!(Record::parse(b""), None);
        assert_eq!(Record::parse(b"saltship-lease 1 m1 x 9 flock"), None);
    }
}
