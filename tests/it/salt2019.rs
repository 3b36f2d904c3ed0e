//! A Salt 2019.2.8 master in Asia/Kolkata (`testdata/salt2019/`): local-time jids read right
//! with no zone flag, orchestration arguments from `return.p`, and Python 2 byte strings that
//! are not UTF-8 marked on their events.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::{cache_copy, job_dir, testdata, Run, Saltship};

fn cases() -> Vec<Value> {
    let text = std::fs::read(testdata("salt2019/cases.json")).expect("cases");
    serde_json::from_slice(&text).expect("JSON")
}

fn set_mtime(path: &Path, secs: f64) {
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs);
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(when).expect("set mtime");
}

/// Git keeps no mtimes: put back the ones the master wrote (`cases.json`).
fn restore_mtimes(jobs: &Path) {
    for case in cases() {
        let dir = job_dir(jobs, case["jid"].as_str().expect("jid"));
        if let Some(t) = case["load_p_mtime"].as_f64() {
            set_mtime(&dir.join(".load.p"), t);
        }
        set_mtime(
            &dir.join("jid"),
            case["jid_file_mtime"].as_f64().expect("mtime"),
        );
    }
}

fn micros(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("time")
        .timestamp_micros()
}

/// Every state event lies between its job's publish (`jid_utc`) and its last return plus
/// `shift`.
fn assert_times(run: &Run, shift: i64) {
    let cases = cases();
    let mut seen = 0;
    for event in &run.events {
        let case = cases
            .iter()
            .find(|c| c["jid"] == event["jid"])
            .unwrap_or_else(|| panic!("no case for {event}"));
        let publish = micros(case["jid_utc"].as_str().expect("jid_utc")) + shift;
        let last = (case["jid_file_mtime"].as_f64().expect("mtime") * 1e6) as i64 + shift;
        let at = micros(event["timestamp"].as_str().expect("timestamp"));
        assert!(
            publish - 1_000_000 <= at && at <= last + 1_000_000,
            "{} at {} not within its job {publish}..{last}\n{}",
            case["case"],
            event["timestamp"],
            run.stderr
        );
        seen += 1;
    }
    assert!(seen > 10, "only {seen} events\n{}", run.stderr);
}

#[test]
fn a_kolkata_master_ships_right_times_with_no_zone_flag() {
    let (_tmp, jobs) = cache_copy("salt2019/jobs");
    restore_mtimes(&jobs);
    let run = Saltship::dry_run(&jobs)
        .env_remove("SALTSHIP_JID_TIMEZONE")
        .arg("-v")
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("UTC+05:30"), "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert_times(&run, 0);
}

#[test]
fn a_copied_cache_is_read_as_utc_with_one_warning() {
    let (_tmp, jobs) = cache_copy("salt2019/jobs");
    let run = Saltship::dry_run(&jobs)
        .env_remove("SALTSHIP_JID_TIMEZONE")
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("--jid-timezone"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    // Read as UTC, every jid is 5 h 30 late.
    assert_times(&run, 19_800_000_000);
}

#[test]
fn an_explicit_zone_wins_and_utc_on_an_old_master_warns_of_future_jids() {
    let (_tmp, jobs) = cache_copy("salt2019/jobs");
    restore_mtimes(&jobs);
    let run = Saltship::dry_run(&jobs)
        .more(["--jid-timezone", "utc"])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let future: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("in the future of its .load.p"))
        .collect();
    assert_eq!(future.len(), 1, "{}", run.stderr);
    assert_times(&run, 19_800_000_000);
    let run = Saltship::dry_run(&jobs)
        .more(["--jid-timezone", "+05:30"])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert_times(&run, 0);
}

/// A Salt 3008 master writes `.load.p` at the publish of a UTC jid: `auto` reads the main
/// fixture as UTC, and a copy (fresh mtimes) falls back to UTC: the same events either way.
#[test]
fn auto_reads_a_3008_cache_as_utc() {
    let (_tmp, jobs) = cache_copy("jobs");
    let utc: Vec<String> = Saltship::dry_run(&jobs).run().ids();
    let copied = Saltship::dry_run(&jobs)
        .env_remove("SALTSHIP_JID_TIMEZONE")
        .run();
    assert_eq!(copied.ids::<Vec<String>>(), utc);
    for prefix in std::fs::read_dir(&jobs).expect("jobs") {
        for dir in std::fs::read_dir(prefix.expect("entry").path()).expect("prefix") {
            let dir = dir.expect("entry").path();
            let jid = std::fs::read_to_string(dir.join("jid")).unwrap_or_default();
            let Ok(at) =
                chrono::NaiveDateTime::parse_from_str(&jid[..20.min(jid.len())], "%Y%m%d%H%M%S%6f")
            else {
                continue;
            };
            if dir.join(".load.p").exists() {
                let secs = at.and_utc().timestamp_micros() as f64 / 1e6 + 0.004;
                set_mtime(&dir.join(".load.p"), secs);
            }
        }
    }
    let live = Saltship::dry_run(&jobs)
        .env_remove("SALTSHIP_JID_TIMEZONE")
        .arg("-v")
        .run();
    assert_eq!(live.code, 0, "{}", live.stderr);
    assert!(live.stderr.contains("UTC+00:00"), "{}", live.stderr);
    assert!(!live.stderr.contains("warning"), "{}", live.stderr);
    assert_eq!(live.ids::<Vec<String>>(), utc);
}

/// 2019.2 writes no `.load.p` for an orchestration: its events take `fun_args` from
/// `return.p`, as the return itself records them.
#[test]
fn a_2019_orchestration_has_its_arguments_from_return_p() {
    let (_tmp, jobs) = cache_copy("salt2019/jobs");
    let case = cases()
        .into_iter()
        .find(|c| c["case"] == "old-orchestrate")
        .expect("case");
    let dir = job_dir(&jobs, case["jid"].as_str().expect("jid"));
    assert!(!dir.join(".load.p").exists(), "the fixture has a .load.p");
    let run = Saltship::dry_run(&jobs).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let orch: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["jid"] == case["jid"])
        .collect();
    assert!(!orch.is_empty(), "{}", run.stdout);
    for event in orch {
        assert_eq!(event["fun_args"][0], "orch.run", "{event}");
        assert_eq!(
            event["fun_args"][1]["orchestration_jid"], case["jid"],
            "{event}"
        );
    }
}

/// Python 2 byte strings that are not UTF-8 ship as U+FFFD, and only their events say
/// `lossy_utf8`: the minion already replaced `cmd.run`'s bytes (valid U+FFFD), so those are not.
#[test]
fn events_with_bytes_that_are_not_utf8_are_marked_lossy() {
    let (_tmp, jobs) = cache_copy("salt2019/jobs");
    let run = Saltship::dry_run(&jobs).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let jid = |name: &str| {
        cases()
            .into_iter()
            .find(|c| c["case"] == name)
            .expect("case")["jid"]
            .clone()
    };
    let of = |name: &str| -> Vec<&Value> {
        let jid = jid(name);
        run.events.iter().filter(|e| e["jid"] == jid).collect()
    };
    let state = of("old-bytes-state");
    let marked: Vec<&&Value> = state.iter().filter(|e| e["lossy_utf8"] == true).collect();
    assert!(!marked.is_empty(), "{state:?}");
    for e in &marked {
        assert_eq!(e["state"], "saltship_bytes", "{e}");
        assert!(e.to_string().contains('\u{fffd}'), "{e}");
    }
    // `bytes-out`'s U+FFFD came from the minion, as valid UTF-8: nothing altered here.
    for e in state.iter().filter(|e| e["state"] != "saltship_bytes") {
        assert!(e.get("lossy_utf8").is_none(), "{e}");
    }
    for e in of("old-bytes-cmd").iter().chain(&of("old-state-apply")) {
        assert!(e.get("lossy_utf8").is_none(), "{e}");
    }
}
