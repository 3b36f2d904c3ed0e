//! The counts are defined once (docs/operations.md "Counts"): `check`, a first `sync`,
//! `backfill` and their dry runs say the same jobs, returns and skipped of one cache, and
//! `watch`'s summary counts each job it handled once.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::receiver::{Faults, Receiver};
use crate::common::watch::{cases, land_job, source_job, Watch};
use crate::common::{cache_copy, free_port, Saltship};

/// `(jobs, returns, skipped)` from a summary line `N jobs, N returns, N events, N skipped, ...`.
fn summary(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .rfind(|l| l.contains(" jobs, ") && l.contains(" skipped, "))
        .unwrap_or_else(|| panic!("no summary line in {stderr}"));
    let count = |what: &str| -> u64 {
        let before = line.split(what).next().expect("split");
        before
            .rsplit([' ', ','])
            .find(|w| !w.is_empty())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count before {what:?} in {line}"))
    };
    (count(" jobs,"), count(" returns,"), count(" skipped,"))
}

/// The number just before `what` in `text`.
fn number_before(text: &str, what: &str) -> u64 {
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in {text}"));
    text[..at]
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {what:?} in {text}"))
}

#[test]
fn check_sync_backfill_and_dry_runs_count_the_same_jobs_and_returns() {
    let (tmp, jobs) = cache_copy("jobs");
    let return_files = walkdir::WalkDir::new(&jobs)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.depth() == 4 && e.file_name() == "return.p")
        .count() as u64;
    let job_files = walkdir::WalkDir::new(&jobs)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.depth() == 3 && e.file_name() == "jid")
        .count() as u64;

    let check = Saltship::check(&jobs)
        .arg("--offline")
        .target(&format!("127.0.0.1:{}", free_port()))
        .run_text();
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let in_cache = (
        number_before(&check.stdout, " jobs,"),
        number_before(&check.stdout, " returns"),
    );
    assert_eq!(in_cache, (job_files, return_files), "{}", check.stdout);

    let receiver = Receiver::start(Faults::default());
    let dry_backfill = Saltship::dry_run(&jobs).run();
    let dry_sync = Saltship::sync(&jobs).arg("--dry-run").run();
    let state = tmp.path().join("state");
    let sync = Saltship::sync(&jobs)
        .state_file(&state)
        .target(&receiver.target())
        .run();
    let backfill = Saltship::backfill(&jobs).target(&receiver.target()).run();
    let mut skipped = HashSet::new();
    for (name, run) in [
        ("backfill --dry-run", &dry_backfill),
        ("sync --dry-run", &dry_sync),
        ("sync", &sync),
        ("backfill", &backfill),
    ] {
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let (jobs, returns, skip) = summary(&run.stderr);
        assert_eq!((jobs, returns), in_cache, "{name}: {}", run.stderr);
        skipped.insert(skip);
    }
    assert_eq!(skipped.len(), 1, "one skipped count: {skipped:?}");
    assert!(skipped.iter().all(|&s| s > 0 && s < in_cache.0));

    // Once shipped, a sync takes nothing up; --start-at now counts what check counts.
    let again = Saltship::sync(&jobs)
        .state_file(&state)
        .target(&receiver.target())
        .run();
    assert_eq!(summary(&again.stderr), (0, 0, 0), "{}", again.stderr);
    let now = Saltship::sync(&jobs)
        .state_file(&tmp.path().join("now"))
        .arg("--start-at")
        .arg("now")
        .target(&receiver.target())
        .run();
    assert!(
        now.stderr.contains(&format!(
            "starting at now: {} returns of {} jobs",
            in_cache.1, in_cache.0
        )),
        "{}",
        now.stderr
    );
    drop(receiver);
}

#[test]
fn watch_without_a_receiver_waits_for_the_returns_of_state_runs() {
    let (tmp, jobs) = cache_copy("jobs");
    // The returns of the jobs that ran a state function, as the fixtures' cases say (a
    // `state.show_sls` run among them: read, and done with no event).
    let state_jids: HashSet<String> = cases()
        .iter()
        .filter(|c| {
            c["fun"]
                .as_str()
                .expect("fun")
                .split(',')
                .any(|f| f.starts_with("state.") || f.starts_with("runner.state."))
        })
        .map(|c| c["jid"].as_str().expect("jid").to_owned())
        .collect();
    let state_returns = walkdir::WalkDir::new(&jobs)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.depth() == 3 && e.file_name() == "jid")
        .filter(|e| state_jids.contains(std::fs::read_to_string(e.path()).expect("jid").trim()))
        .map(|e| {
            walkdir::WalkDir::new(e.path().parent().expect("job"))
                .into_iter()
                .filter_map(Result::ok)
                .filter(|r| r.depth() == 2 && r.file_name() == "return.p")
                .count()
        })
        .sum::<usize>();
    let log = tmp.path().join("watch.log");
    let child = Saltship::watch(&jobs)
        .state_file(&tmp.path().join("state"))
        .target(&format!("127.0.0.1:{}", free_port()))
        .more(["--deliver-timeout", "1s"])
        .spawn(std::fs::File::create(&log).expect("log"));
    let watch = Watch::spawned(child, log);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !watch.log().contains("returns wait") {
        assert!(std::time::Instant::now() < deadline, "{}", watch.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, _, log) = watch.stop();
    let waiting = number_before(&log, " returns wait");
    assert_eq!(waiting, state_returns as u64, "{log}");
}

#[test]
fn watch_counts_each_job_once_however_many_returns_land_in_it() {
    let (tmp, jobs) = cache_copy("jobs");
    let check = Saltship::check(&jobs)
        .arg("--offline")
        .target("127.0.0.1:9")
        .run_text();
    let (cached_jobs, cached_returns) = (
        number_before(&check.stdout, " jobs,"),
        number_before(&check.stdout, " returns"),
    );
    let receiver = Receiver::start(Faults::default());
    let state = tmp.path().join("state");
    let watch = Watch::start(&jobs, &state, &receiver.target(), &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !watch.log().contains("following") {
        assert!(std::time::Instant::now() < deadline, "{}", watch.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two jobs of two minions each, their returns landing apart: a pass per return.
    let source = source_job("state-apply-highstate");
    for jid in ["20990101000000000001", "20990101000000000002"] {
        land_job(&jobs, &source, jid, Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    let (jobs_seen, returns_seen, _) = summary(&log);
    assert_eq!(
        (jobs_seen, returns_seen),
        (cached_jobs + 2, cached_returns + 4),
        "{log}"
    );
    drop(receiver);
}
