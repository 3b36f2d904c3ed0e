//! A state folder that fills up or turns read-only: the run says so in one line even with
//! `-q` and exits non-zero, rather than shipping the same events again at every run without
//! recording them; temp files of a dead instance are removed at the next start.
//!
//! The folder is a small tmpfs mounted by the test, so it needs root (CI runs as root);
//! elsewhere the tests skip through `crate::common::skip` (a failure under CI).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::receiver::{Faults, Receiver};
use crate::common::{cache_copy, case_jid, copy_tree, job_dir, p, skip, Run, Saltship};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip(
                &format!("cannot mount a tmpfs at {}", dir.display()),
                "run the tests as root",
            );
            return None;
        }
        Some(Tmpfs(dir.to_owned()))
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `saltship sync -q` of `jobs` to `target`, recording in `state`.
fn sync(jobs: &Path, state: &Path, target: &str) -> Run {
    Saltship::sync(jobs)
        .arg("-q")
        .state_file(state)
        .target(target)
        .run()
}

/// Copies of a state job land, under new jids, enough to need more than one page of journal.
fn land_jobs(jobs: &Path, n: usize) -> Vec<String> {
    let source = job_dir(jobs, &case_jid("twice-first-changes"));
    (0..n)
        .map(|i| {
            let dir = jobs.join("ee").join(format!("late{i:03}"));
            copy_tree(&source, &dir);
            let jid = format!("2099123123595900{i:04}");
            std::fs::write(dir.join("jid"), &jid).expect("jid");
            jid
        })
        .collect()
}

/// Fills the file system holding `dir` to the last byte.
fn fill(dir: &Path) {
    let mut filler = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    while filler.write_all(&block[..1]).is_ok() {}
}

fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("state folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

fn jids(lines: &[String]) -> std::collections::BTreeSet<String> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["jid"].to_string())
        .collect()
}

#[test]
fn a_full_state_folder_stops_the_run_with_one_line_and_exit_3() {
    let (tmp, jobs) = cache_copy("jobs");
    let Some(fs) = Tmpfs::mount(&tmp.path().join("state"), "512k") else {
        return;
    };
    let state = fs.0.join("state");
    let receiver = Receiver::start(Faults::default());
    assert_eq!(sync(&jobs, &state, &receiver.target()).code, 0);
    let before = receiver.lines_so_far().len();
    fill(&fs.0);
    let late = land_jobs(&jobs, 200);

    let full = sync(&jobs, &state, &receiver.target());
    assert_eq!(full.code, 3, "{}", full.stderr);
    assert_eq!(full.stderr.lines().count(), 1, "{}", full.stderr);
    assert!(
        full.stderr.contains(p(&state)) && full.stderr.contains("No space left on device"),
        "{}",
        full.stderr
    );
    assert!(temps(&fs.0).is_empty(), "left {:?}", temps(&fs.0));
    let sent = receiver.lines_so_far().len() - before;
    assert!(sent > 0, "the run stopped before sending anything");

    // Space again, and a temp file from an instance killed mid-save: removed at start, and
    // what could not be recorded is shipped again, then recorded.
    std::fs::remove_file(fs.0.join("filler")).expect("free space");
    std::fs::write(fs.0.join("state.tmp.999999"), b"{\"version\":2").expect("stale temp");
    let again = sync(&jobs, &state, &receiver.target());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(temps(&fs.0).is_empty(), "left {:?}", temps(&fs.0));
    let lines = receiver.lines_so_far();
    let late: std::collections::BTreeSet<String> =
        late.iter().map(|j| format!("\"{j}\"")).collect();
    assert_eq!(jids(&lines[before + sent..]), late);
    assert_eq!(sync(&jobs, &state, &receiver.target()).code, 0);
    assert_eq!(
        receiver.finish().len(),
        before + 2 * sent,
        "shipped a third time"
    );
}

#[test]
fn a_read_only_state_folder_is_an_error_not_silence() {
    let (tmp, jobs) = cache_copy("jobs");
    let Some(fs) = Tmpfs::mount(&tmp.path().join("state"), "512k") else {
        return;
    };
    let state = fs.0.join("state");
    let receiver = Receiver::start(Faults::default());
    assert_eq!(sync(&jobs, &state, &receiver.target()).code, 0);
    let before = receiver.lines_so_far().len();
    land_jobs(&jobs, 1);
    fs.remount("ro");
    let run = sync(&jobs, &state, &receiver.target());
    fs.remount("rw");
    // Read-only at start: the lock cannot even be taken, a configuration error (exit 2).
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("Read-only file system"),
        "{}",
        run.stderr
    );
    assert_eq!(
        receiver.lines_so_far().len(),
        before,
        "shipped without recording"
    );
    assert_eq!(sync(&jobs, &state, &receiver.target()).code, 0);
    assert!(receiver.finish().len() > before);
}
