//! What a job folder says for its job event, read as Salt writes it: `.load.p` (whole, or
//! not there), when a job whose jid tells no time was published, and which minions returned,
//! and failed. The job events' turn ([`super::jobs`]) decides from these whether it is final.

use std::path::Path;

use crate::cache::{mtime_nanos, JobDir};
use crate::event::job::return_failed;
use crate::msgpack;

/// The minions whose `return.p` landed, sorted, and when the last one did.
pub(super) fn returned(dir: &JobDir) -> (Vec<String>, Option<i64>) {
    let minions = if dir.minions.is_empty() {
        dir.list_minions()
    } else {
        dir.minions.clone()
    };
    let mut last = None;
    let mut returned = Vec::new();
    for m in minions {
        let Ok(meta) = std::fs::metadata(dir.return_path(&m)) else {
            continue;
        };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_micros() as i64);
        last = last.max(mtime);
        returned.push(m);
    }
    returned.sort();
    (returned, last)
}

/// A publish file's bytes (`.load.p`), once they decode; `None` when it is not there.
pub(super) fn publish_file(path: &Path, max: u64) -> Result<Option<Vec<u8>>, msgpack::ReadError> {
    match msgpack::read_file(path, max) {
        Ok(buf) => {
            msgpack::decode(&buf)?;
            Ok(Some(buf))
        }
        Err(e) if e.is_vanished() => Ok(None),
        Err(e) => Err(e),
    }
}

/// When a job whose jid tells no time was published, at the latest: the older mtime of its
/// folder and its `jid` file (both only move later, with each return), in microseconds.
pub(super) fn written(dir: &Path) -> Option<i64> {
    let older = mtime_nanos(dir)
        .into_iter()
        .chain(mtime_nanos(&dir.join("jid")));
    older.min().map(|ns| ns / 1000)
}

/// Whether the return at `path` failed; one that cannot be read is not counted.
pub(super) fn failed(path: &Path, max: u64) -> bool {
    msgpack::read_file(path, max)
        .ok()
        .and_then(|buf| msgpack::decode(&buf).ok().map(|v| return_failed(&v)))
        .unwrap_or(false)
}

/// Whether the job was published by a master of masters (`order_masters`), which learns each
/// syndic's minions only when that syndic forwards them, into a `.minions.<syndic>.p` that
/// may land after the direct minions (often none: `.minions.p` is `[]`) all returned, so that
/// only the wait makes it final. Salt's marks: the `syndics/` folder beside `jobs/` (a file
/// per syndic, from its first return on), the publish timeout `to` that the client puts in
/// `.load.p` on such a master, a syndic's `.minions.<id>.p` in the folder.
pub(super) fn syndicated(jobs: &Path, dir: &Path, load: &Option<rmpv::ValueRef<'_>>) -> bool {
    let has_entry = |d: &Path| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some());
    load.as_ref()
        .is_some_and(|l| msgpack::get(l, "to").is_some())
        || jobs.parent().is_some_and(|c| has_entry(&c.join("syndics")))
        || std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(".minions.") && name.ends_with(".p") && name != ".minions.p"
            })
}
