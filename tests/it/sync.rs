//! `saltship sync`: ship what the checkpoint does not hold, record it after confirmation, and
//! never ship anything twice but the unconfirmed tail after a crash.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::receiver::{Faults, Receiver};
use crate::common::{
    age_folders, cache_copy, case_jid, copy_tree, job_dir, multiplied_cache, p, Run, Saltship,
};
use serde_json::Value;

/// `saltship sync` of `jobs` to `target`, recording into `state`.
fn sync(jobs: &Path, state: &Path, target: &str, extra: &[&str]) -> Run {
    Saltship::sync(jobs)
        .state_file(state)
        .target(target)
        .more(extra)
        .run()
}

/// Event ids of `lines`, with how often each came.
fn counts(lines: &[String]) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for l in lines {
        let v: Value = serde_json::from_str(l).expect("JSON");
        *c.entry(v["event_id"].as_str().expect("id").to_owned())
            .or_default() += 1;
    }
    c
}

/// A job folder of the cache whose jid is `jid`.
#[test]
fn second_sync_ships_nothing_then_only_new_jobs_and_late_returns() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state/state");
    // Hold back one minion's return of a state job: it lands late, after the first sync.
    let late_job = job_dir(&jobs, &case_jid("state-apply-highstate"));
    let held = tmp.path().join("held-db1");
    std::fs::rename(late_job.join("db1"), &held).expect("hold back db1");
    let all = Saltship::dry_run(&jobs).run();

    let receiver = Receiver::start(Faults::default());
    let first = sync(&jobs, &state, &receiver.target(), &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(counts(&receiver.lines_so_far()).len(), all.events.len());
    assert!(
        first
            .stderr
            .contains(&format!("{} events", all.events.len())),
        "{}",
        first.stderr
    );

    let second = sync(&jobs, &state, &receiver.target(), &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(second.stderr.contains(" 0 events"), "{}", second.stderr);

    // A late return to an old job, and a new job (a copy of a real one under a new jid).
    std::fs::rename(&held, late_job.join("db1")).expect("late return lands");
    let source = job_dir(&jobs, &case_jid("failures"));
    let new_jid = format!("{}_777", case_jid("failures"));
    let new_job = jobs.join("ff").join("new-job-folder");
    copy_tree(&source, &new_job);
    std::fs::write(new_job.join("jid"), &new_jid).expect("jid");
    let before = receiver.lines_so_far().len();
    let third = sync(&jobs, &state, &receiver.target(), &[]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    let lines = receiver.finish();
    let new: Vec<Value> = lines[before..]
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let late = Saltship::dry_run(&jobs)
        .more(["--minion", "db1"])
        .run()
        .events
        .into_iter()
        .filter(|e| e["jid"] == case_jid("state-apply-highstate").as_str())
        .count();
    let copied = Saltship::dry_run(&jobs)
        .run()
        .events
        .into_iter()
        .filter(|e| e["jid"] == new_jid.as_str())
        .count();
    assert_eq!(
        new.len(),
        late + copied,
        "exactly the late return's and the new job's events"
    );
    assert!(new.iter().all(|e| e["jid"] == new_jid.as_str()
        || (e["minion_id"] == "db1" && e["jid"] == case_jid("state-apply-highstate").as_str())));

    // The master cleans a job up: the checkpoint forgets it.
    let text = checkpoint_text(&state);
    let key = p(source.strip_prefix(&jobs).expect("under jobs")).to_owned();
    assert!(text.contains(&key));
    std::fs::remove_dir_all(&source).expect("cleanup");
    let receiver = Receiver::start(Faults::default());
    assert_eq!(sync(&jobs, &state, &receiver.target(), &[]).code, 0);
    assert!(receiver.finish().is_empty());
    assert!(
        !checkpoint_text(&state).contains(&key),
        "cleaned-up job not pruned"
    );
}

#[test]
fn start_at_now_ships_only_what_arrives_later() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let receiver = Receiver::start(Faults::default());
    let first = sync(&jobs, &state, &receiver.target(), &["--start-at", "now"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(receiver.lines_so_far().is_empty());
    let source = job_dir(&jobs, &case_jid("twice-first-changes"));
    copy_tree(&source, &jobs.join("ee").join("later"));
    std::fs::write(jobs.join("ee/later/jid"), "20991231235959000000").expect("jid");
    assert_eq!(sync(&jobs, &state, &receiver.target(), &[]).code, 0);
    let got: Vec<Value> = receiver
        .finish()
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert!(!got.is_empty() && got.iter().all(|e| e["jid"] == "20991231235959000000"));
}

#[test]
fn backfill_records_so_sync_does_not_repeat() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let all = Saltship::dry_run(&jobs).run();
    let receiver = Receiver::start(Faults::default());
    let mid = case_jid("failures");
    let run = Saltship::backfill(&jobs)
        .state_file(&state)
        .target(&receiver.target())
        .more(["--since", &mid])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(sync(&jobs, &state, &receiver.target(), &[]).code, 0);
    let got = counts(&receiver.finish());
    assert_eq!(got.len(), all.events.len(), "every event once");
    assert!(got.values().all(|n| *n == 1), "some event shipped twice");
}

#[test]
fn a_second_instance_leaves_without_shipping() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let lock = File::create(tmp.path().join("state.lock")).expect("lock file");
    lock.try_lock().expect("hold the lock");
    let receiver = Receiver::start(Faults::default());
    let run = sync(&jobs, &state, &receiver.target(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("another saltship holds"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    // Quiet for cron.
    assert!(sync(&jobs, &state, &receiver.target(), &["-q"])
        .stderr
        .is_empty());
    assert!(receiver.finish().is_empty());
    assert!(!state.exists());
}

#[test]
fn a_state_file_that_cannot_be_read_stops_everything() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let receiver = Receiver::start(Faults::default());
    assert_eq!(sync(&jobs, &state, &receiver.target(), &[]).code, 0);
    let good = std::fs::read(&state).expect("state");
    let before = receiver.lines_so_far().len();
    for (what, bad) in [
        ("corrupt", b"\x00garbage".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("future version", br#"{"version":99,"jobs":{}}"#.to_vec()),
    ] {
        std::fs::write(&state, &bad).expect("damage");
        let run = sync(&jobs, &state, &receiver.target(), &[]);
        assert_eq!(run.code, 2, "{what}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{what}: {}", run.stderr);
        assert!(
            run.stderr.contains(p(&state)) && run.stderr.contains("--reset-state"),
            "{what}: {}",
            run.stderr
        );
    }
    assert_eq!(
        receiver.lines_so_far().len(),
        before,
        "shipped despite a bad state file"
    );
    assert_eq!(
        sync(&jobs, &state, &receiver.target(), &["--reset-state"]).code,
        0
    );
    assert!(receiver.finish().len() > before);
}

#[test]
fn dry_run_sync_touches_no_state() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let run = Saltship::sync(&jobs)
        .arg("--dry-run")
        .state_file(&state)
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.events.is_empty());
    assert!(!state.exists() && !tmp.path().join("state.lock").exists());
}

/// SIGKILL mid-sync five times, then one sync to the end: every event arrived, and the
/// duplicates are at most one unconfirmed window (4 MiB) per kill: what was confirmed before a
/// kill was recorded and not sent again.
#[test]
fn sigkill_mid_sync_loses_nothing() {
    let (tmp, jobs) = multiplied_cache(240);
    let state = tmp.path().join("state");
    let all = Saltship::dry_run(&jobs).run();
    let receiver = Receiver::start(Faults {
        slow: Duration::from_micros(100),
        ..Faults::default()
    });
    let target = receiver.target();
    let mut recorded = Vec::new();
    for round in 0..5u64 {
        let mut child = Saltship::sync(&jobs)
            .state_file(&state)
            .target(&target)
            .arg("-q")
            .spawn(Stdio::null());
        // Each kill falls after at least one save of this run (the state file or its journal
        // grows), however loaded the machine, and then a little later every round.
        let saved = |state: &Path| {
            if state.exists() {
                checkpoint_text(state).len()
            } else {
                0
            }
        };
        let before = saved(&state);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while saved(&state) == before && child.try_wait().expect("try_wait").is_none() {
            assert!(std::time::Instant::now() < deadline, "no save in 120 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300 * round));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        recorded.push(saved(&state));
    }
    // Confirmed progress was saved before every kill.
    assert!(recorded.iter().all(|n| *n > 0), "{recorded:?}");
    let last = sync(&jobs, &state, &target, &[]);
    assert_eq!(last.code, 0, "{}", last.stderr);
    let again = sync(&jobs, &state, &target, &[]);
    assert!(again.stderr.contains(" 0 events"), "{}", again.stderr);
    let lines = receiver.finish();
    let got = counts(&lines);
    let missing = all
        .events
        .iter()
        .filter(|e| !got.contains_key(e["event_id"].as_str().expect("id")))
        .count();
    assert_eq!(missing, 0, "{missing} of {} events lost", all.events.len());
    let dups: usize = got.values().map(|n| n - 1).sum();
    let avg = lines.iter().map(|l| l.len() + 1).sum::<usize>() / lines.len();
    let window = (4 << 20) / avg + 100;
    assert!(
        dups <= 5 * window,
        "{dups} duplicates for {} events, more than 5 windows of {window}",
        all.events.len()
    );
    eprintln!(
        "{} events, {dups} duplicates after 5 kills (bound {})",
        all.events.len(),
        5 * window
    );
}

#[test]
fn warns_when_unshipped_returns_near_the_masters_cleanup() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let dead = crate::common::free_port();
    let target = format!("127.0.0.1:{dead}");
    // The fixture jobs are older than 45 s: past three quarters of a 1 minute keep_jobs.
    let run = sync(
        &jobs,
        &state,
        &target,
        &["--deliver-timeout", "1s", "--keep-jobs", "1m"],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("keep_jobs"), "{}", run.stderr);
    // With a keep_jobs of a century they are far from it.
    let run = sync(
        &jobs,
        &state,
        &target,
        &["--deliver-timeout", "1s", "--keep-jobs", "5200w"],
    );
    assert!(!run.stderr.contains("keep_jobs"), "{}", run.stderr);
}

/// Sets the mtime of every folder under `dir` an hour back, as in a cache that has been sitting.
/// The state file and its journal, as text.
fn checkpoint_text(state: &Path) -> String {
    let mut journal = state.as_os_str().to_owned();
    journal.push(".journal");
    std::fs::read_to_string(state).expect("state")
        + &std::fs::read_to_string(journal).unwrap_or_default()
}

/// Settled jobs are not listed again, yet a late minion folder, or a return landing in a
/// folder that was there without one, still ships.
#[test]
fn settled_jobs_still_see_late_returns() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    // db1's return of one job is not there yet: its folder is, empty (the master makes the
    // folder, then renames return.p into it).
    let pending_job = job_dir(&jobs, &case_jid("unicode"));
    let held_return = tmp.path().join("held-return.p");
    std::fs::rename(pending_job.join("db1/return.p"), &held_return).expect("hold return");
    // web1's return of another job comes later, folder and all.
    let late_job = job_dir(&jobs, &case_jid("twice-first-changes"));
    let held_minion = tmp.path().join("held-web1");
    std::fs::rename(late_job.join("web1"), &held_minion).expect("hold minion");
    age_folders(&jobs);
    let receiver = Receiver::start(Faults::default());
    assert_eq!(sync(&jobs, &state, &receiver.target(), &[]).code, 0);
    // The next sync finds every return of a job recorded, and settles the job.
    let second = sync(&jobs, &state, &receiver.target(), &[]);
    assert!(second.stderr.contains(" 0 events"), "{}", second.stderr);
    let text = checkpoint_text(&state);
    assert!(
        text.contains("\"settled\"") || text.contains("\"s\":"),
        "no job settled"
    );
    let third = sync(&jobs, &state, &receiver.target(), &[]);
    assert!(third.stderr.contains(" 0 events"), "{}", third.stderr);
    let before = receiver.lines_so_far().len();
    std::fs::rename(&held_return, pending_job.join("db1/return.p")).expect("return lands");
    std::fs::rename(&held_minion, late_job.join("web1")).expect("late minion lands");
    assert_eq!(sync(&jobs, &state, &receiver.target(), &[]).code, 0);
    let lines = receiver.finish();
    let new: Vec<Value> = lines[before..]
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let want = |jid: &str, minion: &str| {
        Saltship::dry_run(&jobs)
            .more(["--minion", minion])
            .run()
            .events
            .into_iter()
            .filter(|e| e["jid"] == jid)
            .count()
    };
    let expected =
        want(&case_jid("unicode"), "db1") + want(&case_jid("twice-first-changes"), "web1");
    assert!(expected > 0);
    assert_eq!(new.len(), expected, "exactly the two late returns' events");
}

/// `sync --follow` (what saltship-sync.service runs, issue 30 item 1): once caught up it ships
/// a job that lands while it follows within a second, not at the next timer tick, and exits 0
/// after the idle time with nothing sent twice.
#[test]
fn sync_follow_ships_what_lands_then_exits_when_quiet() {
    use crate::common::watch::{land_job, source_job};
    use std::collections::HashSet;
    use std::time::Instant;
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let receiver = Receiver::start(Faults::default());
    let before: HashSet<String> = crate::common::dry_run_ids(&jobs);
    let mut child = Saltship::sync(&jobs)
        .state_file(&state)
        .target(&receiver.target())
        .more(["--follow", "3s"])
        .spawn(File::create(tmp.path().join("sync.log")).expect("log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.lines_so_far().len() < before.len() {
        assert!(Instant::now() < deadline, "catch-up");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    land_job(
        &jobs,
        &source_job("failures"),
        "20990101000000000088",
        Duration::ZERO,
    );
    let landed = Instant::now();
    let all: HashSet<String> = crate::common::dry_run_ids(&jobs);
    while receiver.lines_so_far().len() < all.len() {
        assert!(
            landed.elapsed() < Duration::from_secs(2),
            "the job that landed while following did not ship within 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            landed.elapsed() < Duration::from_secs(15),
            "still following"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(tmp.path().join("sync.log")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        landed.elapsed() >= Duration::from_secs(3),
        "exited before 3 s of quiet"
    );
    let lines = receiver.finish();
    assert_eq!(lines.len(), all.len(), "each event once");
    // All of it recorded: a plain sync has nothing to send (port 9 takes nothing).
    let again = sync(&jobs, &state, "127.0.0.1:9", &["--deliver-timeout", "2s"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
}
