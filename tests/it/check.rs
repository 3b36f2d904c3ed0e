//! `saltship check --offline`: the start check of the watch unit, which tests the set-up but
//! leaves the receivers alone, so a receiver that is down does not keep the daemon from starting;
//! and a check leaves no trace in the state folder.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::common::receiver::{Faults, Receiver};
use crate::common::{cache_copy, free_port, p, Saltship};

#[test]
fn offline_check_passes_with_a_dead_target_that_plain_check_fails() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let metrics = tmp.path().join("saltship.prom");
    // Nothing listens there: a receiver that is down.
    let target = format!("127.0.0.1:{}", free_port());
    let args = [
        "check",
        "--cache-dir",
        p(&jobs),
        "--state-file",
        p(&state),
        "--metrics-file",
        p(&metrics),
        "--target",
        &target,
    ];

    let plain = Saltship::args(args).run_text();
    assert_eq!(plain.code, 1, "{}{}", plain.stdout, plain.stderr);
    assert!(
        plain.stdout.contains(&format!("FAIL target {target}:")),
        "{}",
        plain.stdout
    );

    let offline: Vec<&str> = args.iter().copied().chain(["--offline"]).collect();
    let out = Saltship::args(&offline).run_text();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    // The cache, the state file, the target, the metrics file, the inotify limit.
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert!(lines.iter().all(|l| l.starts_with("ok ")), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("target {target}: options valid, not contacted")),
        "{}",
        out.stdout
    );
    // The alias names the same check.
    let mut alias = offline.clone();
    *alias.last_mut().expect("arg") = "--no-targets";
    assert_eq!(Saltship::args(&alias).run_text().code, 0);

    // Still a check of the set-up: a metrics folder that cannot be made fails it.
    let nowhere = tmp.path().join("nope").join("saltship.prom");
    let mut bad = offline.clone();
    bad[6] = p(&nowhere);
    let out = Saltship::args(&bad).run_text();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("FAIL metrics file"), "{}", out.stdout);
}

#[test]
fn offline_check_still_parses_the_targets_and_wants_one() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let base = [
        "check",
        "--offline",
        "--cache-dir",
        p(&jobs),
        "--state-file",
        p(&state),
    ];
    // watch would not start without a target: neither does its start check pass.
    let out = Saltship::args(base).run_text();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("FAIL targets: none given"),
        "{}",
        out.stdout
    );
    // A target that cannot be parsed is a usage error, as for watch.
    let bad: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--target", "no-port"])
        .collect();
    let out = Saltship::args(&bad).run_text();
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

/// Every entry of `dir` with its length and mtime, and the folder's own mtime: what a check
/// must leave as it found it.
fn traces(dir: &Path) -> (SystemTime, Vec<(String, u64, SystemTime)>) {
    let meta = |p: &Path| std::fs::metadata(p).expect("stat");
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            let m = meta(&e.path());
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().expect("mtime"),
            )
        })
        .collect();
    entries.sort();
    (meta(dir).modified().expect("mtime"), entries)
}

#[test]
fn check_leaves_no_trace_in_the_state_folder() {
    let (tmp, jobs) = cache_copy("jobs");
    let folder = tmp.path().join("lib");
    std::fs::create_dir(&folder).expect("mkdir");
    let state = folder.join("state");
    let check = || {
        let out = Saltship::check(&jobs)
            .state_file(&state)
            .arg("--offline")
            .target(&format!("127.0.0.1:{}", free_port()))
            .run_text();
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("ok   state file"), "{}", out.stdout);
    };

    // A fresh state path: nothing made, not even a lock file.
    let before = traces(&folder);
    check();
    assert_eq!(traces(&folder), before, "a check on a fresh state path");
    assert!(before.1.is_empty());

    // After two runs: the state file, its journal and the lock file stay as they were.
    let receiver = Receiver::start(Faults::default());
    for _ in 0..2 {
        let run = Saltship::sync(&jobs)
            .state_file(&state)
            .target(&receiver.target())
            .run();
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let before = traces(&folder);
    let names: Vec<&str> = before.1.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["state", "state.journal", "state.lock"],
        "{before:?}"
    );
    std::thread::sleep(Duration::from_millis(20));
    check();
    assert_eq!(traces(&folder), before, "a check after runs");

    // A state folder that is not there yet is not made either.
    let missing = tmp.path().join("not-yet").join("state");
    let out = Saltship::check(&jobs)
        .state_file(&missing)
        .arg("--offline")
        .target("127.0.0.1:9")
        .run_text();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!missing.parent().expect("folder").exists());
}
