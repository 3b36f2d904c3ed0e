//! Discovery by polling, for a cache on a shared filesystem (a master cluster's GlusterFS or
//! NFS volume): inotify(7) reports only the changes made through the same mount, so a job
//! folder another master made would wait for the full rescan. Polled are the folders
//! inotify would watch ([`super::watches`] has the rule: the cache folder, its 256 two-hex
//! folders, the job folders not final yet, the minion folders still without a return), by
//! one `stat` each; a folder whose stamp changed is listed again, as an inotify event would
//! have it. Folders quiet for [`QUIET`] are polled [`SLOW`] times less often: a cache's many
//! young but settled jobs cost little, and a late return in one is still found in seconds.
//! (Fluent Bit's stat watcher and Vector's file-source polling are the models.)

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A folder unchanged this long is polled less often.
const QUIET: Duration = Duration::from_secs(120);
/// How many times less often a quiet folder is polled.
const SLOW: u32 = 8;

/// What a folder's `stat` says changed: a file renamed in or out changes mtime and ctime,
/// a folder made or removed the link count, a folder removed and made again the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: i64,
    ctime: i64,
    nlink: u64,
    ino: u64,
}

fn stamp(dir: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(dir).ok()?;
    Some(Stamp {
        mtime: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ctime: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        nlink: m.nlink(),
        ino: m.ino(),
    })
}

struct Polled {
    stamp: Option<Stamp>,
    changed: Instant,
    next: Instant,
    /// The two-hex and cache folders: what they held when last listed, to tell new entries.
    children: Option<BTreeSet<PathBuf>>,
}

/// The folders polled, each with its last stamp.
pub(super) struct Poller {
    every: Duration,
    polled: HashMap<PathBuf, Polled>,
}

impl Poller {
    pub(super) fn new(every: Duration) -> Poller {
        Poller {
            every,
            polled: HashMap::new(),
        }
    }

    pub(super) fn contains(&self, dir: &Path) -> bool {
        self.polled.contains_key(dir)
    }

    pub(super) fn len(&self) -> usize {
        self.polled.len()
    }

    /// Polls `dir` from now on, from its stamp now; `parent` folders (the cache folder, a
    /// two-hex folder) also remember what they hold. Whether the folder is there.
    pub(super) fn add(&mut self, dir: &Path, parent: bool) -> bool {
        let Some(now_stamp) = stamp(dir) else {
            return false;
        };
        let now = Instant::now();
        let children = parent.then(|| children(dir));
        self.polled.insert(
            dir.to_owned(),
            Polled {
                stamp: Some(now_stamp),
                changed: now,
                next: now + self.every,
                children,
            },
        );
        true
    }

    pub(super) fn remove(&mut self, dir: &Path) {
        self.polled.remove(dir);
    }

    /// The folders due whose stamp changed (a parent folder: the entries new in it, each
    /// flagged as new), and the folders that went (dropped).
    pub(super) fn poll(&mut self) -> Vec<(PathBuf, bool)> {
        let now = Instant::now();
        let mut changed = Vec::new();
        let mut gone = Vec::new();
        for (dir, p) in &mut self.polled {
            if now < p.next {
                continue;
            }
            let quiet = now.duration_since(p.changed) >= QUIET && p.children.is_none();
            p.next = now + if quiet { self.every * SLOW } else { self.every };
            let s = stamp(dir);
            if s == p.stamp {
                continue;
            }
            p.stamp = s;
            p.changed = now;
            if s.is_none() {
                gone.push(dir.clone());
                continue;
            }
            match &mut p.children {
                Some(known) => {
                    let fresh = children(dir);
                    changed.extend(fresh.difference(known).map(|c| (c.clone(), true)));
                    *known = fresh;
                }
                None => changed.push((dir.clone(), false)),
            }
        }
        for dir in gone {
            self.polled.remove(&dir);
        }
        changed
    }

    /// When the next folder is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.polled.values().map(|p| p.next).min()
    }
}

fn children(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// `f_type`s of filesystems whose changes inotify cannot see when another host (or another
/// mount) makes them: FUSE (GlusterFS's client, sshfs), NFS, SMB/CIFS, Ceph, AFS, 9p,
/// GFS2, OCFS2, Lustre (statfs(2), linux/magic.h).
const SHARED: [(i64, &str); 11] = [
    (0x6573_5546, "fuse"),
    (0x6969, "nfs"),
    (0x517b, "smb"),
    (0xff53_4d42u32 as i64, "cifs"),
    (0xfe53_4d42u32 as i64, "smb2"),
    (0x00c3_6400, "ceph"),
    (0x5346_414f, "afs"),
    (0x0102_1997, "9p"),
    (0x0116_1970, "gfs2"),
    (0x7461_636f, "ocfs2"),
    (0x0bd0_0bd0, "lustre"),
];

/// The name of the shared filesystem `dir` is on, or `None` for a local one (or when statfs
/// fails: inotify then says itself whether it works).
pub(super) fn shared_filesystem(dir: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path and a zeroed out-struct statfs fills.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut fs) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    let kind = fs.f_type as i64 & 0xffff_ffff;
    SHARED
        .iter()
        .find(|(magic, _)| *magic == kind)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_in_a_polled_folder_and_a_new_job_folder_are_seen() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let hex = tmp.path().join("ab");
        std::fs::create_dir(&hex).expect("hex");
        let job = hex.join("job1");
        std::fs::create_dir(&job).expect("job");
        let mut p = Poller::new(Duration::ZERO);
        assert!(p.add(&hex, true));
        assert!(p.add(&job, false));
        assert!(p.poll().is_empty(), "nothing changed");
        std::fs::create_dir(job.join("web1")).expect("minion");
        std::fs::create_dir(hex.join("job2")).expect("job2");
        let mut seen = p.poll();
        seen.sort();
        assert_eq!(seen, vec![(job.clone(), false), (hex.join("job2"), true)]);
        std::fs::remove_dir(job.join("web1")).expect("rm");
        std::fs::remove_dir(&job).expect("rm");
        p.poll();
        assert!(!p.contains(&job), "a folder that went is dropped");
    }

    #[test]
    fn a_local_folder_is_not_shared() {
        // The test's temp folder is local (tmpfs or a disk) on every CI host we use.
        assert_eq!(shared_filesystem(Path::new("/proc")), None);
    }
}
