//! The journal beside the state file (`<state>.journal`): what changed since the last snapshot,
//! one JSON record a line, appended and fsynced at every save, so a save writes what changed,
//! not the whole checkpoint.
//!
//! Its first line names the snapshot it follows (`{"version":2,"generation":N}`); a journal of
//! another generation is left over from a compaction cut short and is ignored, its records being
//! in the snapshot already. Replay stops at the first line that is not a whole record: a crash
//! mid-append tears only the last one, and a record lost is a return shipped again, never one
//! lost.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One change: returns of a job done, a job found to run no state, a job settled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Op {
    #[serde(rename = "k")]
    pub(crate) key: String,
    #[serde(rename = "j", default, skip_serializing_if = "Option::is_none")]
    pub(crate) jid: Option<String>,
    /// Minions whose return is done.
    #[serde(rename = "m", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) done: Vec<String>,
    #[serde(rename = "n", default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) non_state: bool,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub(crate) settled: Option<i64>,
    /// The job's own events are shipped.
    #[serde(rename = "e", default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) job_shipped: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    version: u32,
    generation: u64,
}

/// The records of the journal at `path` that follow snapshot `generation`, and the length of
/// the whole records read: `None` when there is no journal for this snapshot.
pub(super) fn replay(path: &Path, generation: u64) -> io::Result<Option<(Vec<Op>, u64)>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lines = whole_lines(&bytes);
    let header = lines
        .next()
        .and_then(|line| serde_json::from_slice::<Header>(line).ok());
    if header.is_none_or(|h| h.version != super::VERSION || h.generation != generation) {
        return Ok(None);
    }
    let mut good = lines_len(&bytes, 1);
    let mut ops = Vec::new();
    for line in lines {
        match serde_json::from_slice::<Op>(line) {
            Ok(op) => {
                ops.push(op);
                good += line.len() as u64 + 1;
            }
            Err(_) => break,
        }
    }
    Ok(Some((ops, good)))
}

/// The lines that end with a newline: a last line without one was cut by a crash.
fn whole_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    bytes[..end]
        .split(|b| *b == b'\n')
        .take(bytes[..end].iter().filter(|b| **b == b'\n').count())
}

fn lines_len(bytes: &[u8], n: usize) -> u64 {
    whole_lines(bytes).take(n).map(|l| l.len() as u64 + 1).sum()
}

/// The first line of a journal following snapshot `generation`.
pub(super) fn header(generation: u64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Header {
        version: super::VERSION,
        generation,
    })
    .expect("a header serializes");
    line.push(b'\n');
    line
}

/// Appends `ops` to the journal open at `file`, whose length is `len`, and fsyncs it. A failed
/// append is cut off again, so the next one does not follow a torn record.
pub(super) fn append(file: &mut File, len: u64, ops: &[Op]) -> io::Result<u64> {
    let mut buf = Vec::new();
    for op in ops {
        serde_json::to_writer(&mut buf, op).map_err(io::Error::other)?;
        buf.push(b'\n');
    }
    let written = file.write_all(&buf).and_then(|()| file.sync_data());
    if let Err(e) = written {
        let _ = file.set_len(len);
        return Err(e);
    }
    Ok(buf.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &str, minions: &[&str]) -> Op {
        Op {
            key: key.into(),
            jid: Some("1".into()),
            done: minions.iter().map(|m| m.to_string()).collect(),
            ..Op::default()
        }
    }

    #[test]
    fn replays_whole_records_and_stops_at_a_torn_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        let mut file = File::create(&path).expect("create");
        file.write_all(&header(7)).expect("header");
        let len = header(7).len() as u64;
        let ops = [op("ab/cd", &["web1", "web2"]), op("ef/01", &["db1"])];
        let n = append(&mut file, len, &ops).expect("append");
        let (got, good) = replay(&path, 7).expect("replay").expect("journal");
        assert_eq!((got.as_slice(), good), (&ops[..], len + n));
        // A crash mid-append: half a record, with or without its newline, or zeros.
        for tail in [
            &b"{\"k\":\"x\",\"m\":[\"w"[..],
            b"{\"k\":\"x\"\n",
            b"\0\0\0\n",
        ] {
            let mut bytes = std::fs::read(&path).expect("read");
            bytes.truncate((len + n) as usize);
            bytes.extend_from_slice(tail);
            std::fs::write(&path, &bytes).expect("tear");
            let (got, good) = replay(&path, 7).expect("replay").expect("journal");
            assert_eq!((got.len(), good), (2, len + n), "{tail:?}");
        }
    }

    #[test]
    fn a_journal_of_another_snapshot_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        assert!(replay(&path, 1).expect("missing").is_none());
        std::fs::write(&path, header(1)).expect("write");
        assert!(replay(&path, 2).expect("other").is_none());
        assert_eq!(
            replay(&path, 1).expect("same"),
            Some((Vec::new(), header(1).len() as u64))
        );
        std::fs::write(&path, b"{\"vers").expect("torn header");
        assert!(replay(&path, 1).expect("torn").is_none());
    }
}
