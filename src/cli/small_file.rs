//! The small files the configuration names: the config file, and the token, password, header
//! and Kafka option files. They are read as the cache reader reads `return.p`
//! ([`crate::msgpack::read_file`]): a regular file only, opened without blocking, so a FIFO
//! cannot hang a start (nor `check` as a unit's `ExecStartPre=`, which has no start timeout),
//! and never beyond a cap, so `/dev/zero` or a huge file cannot fill the memory. Also the
//! warning for a file holding a secret that others than saltship may read.

use std::fmt;
use std::path::Path;

use crate::msgpack::{read_file, ReadError};

/// The most a config file may hold: the packaged one, every key set, is under 4 KiB.
pub(crate) const CONFIG_MAX: u64 = 1 << 20;
/// The most a token, password, header or option file may hold.
pub(crate) const SECRET_MAX: u64 = 64 << 10;

/// Why a file was not read: one line, without the file's name (the caller says which file).
#[derive(Debug)]
pub(crate) struct Unread {
    /// The file does not exist (fine for the default config file).
    pub(crate) missing: bool,
    why: String,
}

impl fmt::Display for Unread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

/// The text of the regular file `path`, of at most `max` bytes.
pub(crate) fn read(path: &Path, max: u64) -> Result<String, Unread> {
    let bytes = read_file(path, max).map_err(|e| Unread {
        missing: e.is_vanished(),
        why: match e {
            ReadError::Io(e) => e.to_string(),
            ReadError::TooBig(size, cap) => {
                format!("{size} bytes, more than the {cap} such a file may have: not read")
            }
            other => other.to_string(),
        },
    })?;
    String::from_utf8(bytes).map_err(|_| Unread {
        missing: false,
        why: "not UTF-8 text".to_owned(),
    })
}

/// A warning when users other than the file's owner may read `path`, which holds `what` (a
/// secret): by every user, or by a group that is neither root's nor saltship's own (a
/// `root:saltship` file of mode 0640 is how root hands the service a secret).
pub(crate) fn readable_by_others(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode() & 0o777;
    // /proc/self belongs to the process's effective user and group.
    let own_group = std::fs::metadata("/proc/self").map_or(0, |m| m.gid());
    let by = if mode & 0o004 != 0 {
        "every user".to_owned()
    } else if mode & 0o040 != 0 && meta.gid() != 0 && meta.gid() != own_group {
        format!("group {}", meta.gid())
    } else {
        return None;
    };
    Some(format!(
        "{} holds {what} and is readable by {by} (mode {mode:o}): chmod 600 it",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_within_the_cap_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "a = 1\n").expect("write");
        assert_eq!(read(&file, 100).expect("read"), "a = 1\n");
        let big = read(&file, 3).expect_err("over the cap");
        assert_eq!(
            big.to_string(),
            "6 bytes, more than the 3 such a file may have: not read"
        );
        let zero = read(Path::new("/dev/zero"), 100).expect_err("a device");
        assert!(zero.to_string().contains("not a regular file (a device)"));
        assert!(!zero.missing);
        assert!(
            read(&dir.path().join("none"), 100)
                .expect_err("none")
                .missing
        );
        std::fs::write(&file, b"\xff\xfe").expect("write");
        assert_eq!(
            read(&file, 100).expect_err("bytes").to_string(),
            "not UTF-8 text"
        );
    }
}
