//! Discovery by polling, for a cache on a shared filesystem (a master cluster's GlusterFS or
//! NFS volume): inotify(7) reports only the changes made through the same mount, so a job
//! folder another master made would wait for the full rescan. Polled are the folders
//! inotify would watch ([`super::watches`] has the rule: the cache folder, its 256 two-hex
//! folders, the job folders not final yet, the minion folders still without a return), by
//! one `fstat` each of the folder held open; a folder whose stamp changed is listed again, as
//! an inotify event would have it. Folders quiet for [`QUIET`] are polled [`SLOW`] times less
//! often: an idle cache costs little, and what lands in a quiet folder is still found within
//! a second.
//! (Fluent Bit's stat watcher and Vector's file-source polling are the models.)

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A folder unchanged this long is polled less often.
const QUIET: Duration = Duration::from_secs(120);
/// How many times less often a quiet folder is polled: an idle cache's 257 folders cost a
/// quarter, and the first job after a quiet spell is found within a second (at 250 ms).
const SLOW: u32 = 4;

/// What a folder's `stat` says changed: a file renamed in or out changes mtime and ctime,
/// a folder made or removed the link count, a folder removed and made again the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: i64,
    ctime: i64,
    nlink: u64,
    ino: u64,
}

/// Through an open folder, `fstat` is one call to the filesystem; by path, a FUSE mount with
/// `--entry-timeout=0` (a cluster's) looks every component up again first: on the GlusterFS
/// rig, 257 folders four times a second cost 19% of a core by path and 2.8% by descriptor.
/// Past the descriptor limit (`LimitNOFILE=`), a folder is polled by path instead.
fn stamp(dir: &Path, open: Option<&File>) -> Option<Stamp> {
    let m = match open {
        Some(file) => file.metadata().ok()?,
        None => std::fs::metadata(dir).ok()?,
    };
    if m.nlink() == 0 {
        // Removed, while we hold it open.
        return None;
    }
    Some(Stamp {
        mtime: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ctime: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        nlink: m.nlink(),
        ino: m.ino(),
    })
}

struct Polled {
    /// Held open for `fstat`; `None` past the descriptor limit.
    open: Option<File>,
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

    pub(super) fn len(&self) -> usize {
        self.polled.len()
    }

    pub(super) fn contains(&self, dir: &Path) -> bool {
        self.polled.contains_key(dir)
    }

    /// Polls `dir` from now on, from its stamp now; `parent` folders (the cache folder, a
    /// two-hex folder) also remember what they hold. Whether the folder is there.
    pub(super) fn add(&mut self, dir: &Path, parent: bool) -> bool {
        let open = File::open(dir).ok();
        let Some(now_stamp) = stamp(dir, open.as_ref()) else {
            return false;
        };
        let now = Instant::now();
        let children = parent.then(|| children(dir));
        self.polled.insert(
            dir.to_owned(),
            Polled {
                open,
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
            let quiet = now.duration_since(p.changed) >= QUIET;
            p.next = now + if quiet { self.every * SLOW } else { self.every };
            let s = stamp(dir, p.open.as_ref());
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
            let parent = self
                .polled
                .remove(&dir)
                .is_some_and(|p| p.children.is_some());
            // A two-hex folder Salt removed once empty, and made again since: a new one.
            if parent && self.add(&dir, true) {
                changed.push((dir, true));
            }
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

/// Filesystems whose changes inotify cannot see when another host (or another mount) makes
/// them: FUSE (GlusterFS's client, sshfs), NFS, SMB/CIFS, Ceph, AFS, 9p, GFS2, OCFS2, Lustre.
const SHARED: [&str; 12] = [
    "fuse", "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "afs", "9p", "gfs2", "ocfs2", "lustre",
];

/// Whether `path` (or, when it does not exist yet, the nearest folder above it that does) is on
/// a shared filesystem; `None` when that cannot be told.
pub(crate) fn on_shared_filesystem(path: &Path) -> Option<bool> {
    let real = path
        .ancestors()
        .find_map(|a| std::fs::canonicalize(a).ok())?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let fstype = mount_type(&mounts, &real)?;
    Some(SHARED.contains(&fstype.split('.').next().unwrap_or_default()))
}

/// The type of the shared filesystem `dir` is on (`fuse.glusterfs`, `nfs4`), or `None` for a
/// local one or when it cannot be told: inotify then says itself whether it works. Read from
/// /proc/self/mountinfo (the mount whose point is the longest prefix of the real path), which
/// names FUSE's subtype where statfs(2) only says "fuse".
pub(super) fn shared_filesystem(dir: &Path) -> Option<String> {
    let real = std::fs::canonicalize(dir).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let fstype = mount_type(&mounts, &real)?;
    let base = fstype.split('.').next().unwrap_or_default();
    SHARED.contains(&base).then_some(fstype)
}

/// The filesystem type of the mount holding `path`, from mountinfo's text.
fn mount_type(mountinfo: &str, path: &Path) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = unescape(left.split(' ').nth(4)?);
            let fstype = right.split(' ').next()?;
            path.starts_with(&point)
                .then(|| (point.components().count(), fstype.to_owned()))
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, fstype)| fstype)
}

/// mountinfo writes a space, tab, newline and backslash in a path as octal escapes.
fn unescape(field: &str) -> PathBuf {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    PathBuf::from(out)
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
    fn the_mount_holding_a_folder_is_the_deepest_one() {
        let info = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    40 22 0:50 / /srv/salt\\040shared rw - fuse.glusterfs 10.0.0.1:ssvol rw\n\
                    41 22 0:51 / /srv/nfs rw - nfs4 h:/x rw\n";
        let of = |p: &str| mount_type(info, Path::new(p));
        assert_eq!(
            of("/srv/salt shared/jobs").as_deref(),
            Some("fuse.glusterfs")
        );
        assert_eq!(of("/srv/nfs/jobs").as_deref(), Some("nfs4"));
        assert_eq!(of("/var/cache/salt/master/jobs").as_deref(), Some("ext4"));
        assert_eq!(
            of("/srv/nfsx").as_deref(),
            Some("ext4"),
            "a prefix, not a parent"
        );
        assert_eq!(shared_filesystem(Path::new("/proc")), None, "proc is local");
    }
}
