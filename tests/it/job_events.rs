//! Job and no_return events (`--events`) against Salt's own view of every job
//! (`expected/<jid>.json` = `salt-run jobs.list_job`) on every fixture cache, and when they
//! are shipped (`--return-wait`, the checkpoint).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::receiver::{Faults, Receiver};
use crate::common::{cache_copy, json_lines, testdata, Run, Saltship};

/// Every fixture cache with its list_job views, and the jid zone of its master.
const CACHES: [(&str, &str, &str); 5] = [
    ("jobs", "expected", "utc"),
    ("fleet/jobs", "fleet/expected", "utc"),
    ("syndic/top/jobs", "syndic/top/expected", "utc"),
    ("syndic/syndic/jobs", "syndic/syndic/expected", "utc"),
    ("salt2019/jobs", "salt2019/expected", "+05:30"),
];

fn of_type<'r>(run: &'r Run, kind: &str) -> Vec<&'r Value> {
    run.events
        .iter()
        .filter(|e| e["event_type"] == kind)
        .collect()
}

/// The jids of the jobs that have a `nocache` marker (the master keeps no return).
fn nocache_jids(jobs: &std::path::Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in std::fs::read_dir(jobs).expect("jobs").flatten() {
        for job in std::fs::read_dir(prefix.path()).expect("prefix").flatten() {
            if job.path().join("nocache").exists() {
                let jid = std::fs::read_to_string(job.path().join("jid")).expect("jid");
                out.insert(jid.trim().to_owned());
            }
        }
    }
    out
}

#[test]
fn every_job_has_one_job_event_as_list_job_sees_it_and_one_no_return_per_missing_minion() {
    for (cache, expected, zone) in CACHES {
        let (_tmp, jobs) = cache_copy(cache);
        let run = Saltship::dry_run(&jobs)
            .more(["--events", "all", "--jid-timezone", zone])
            .run();
        assert_eq!(run.code, 0, "{cache}: {}", run.stderr);
        let nocache = nocache_jids(&jobs);
        let (mut want_jobs, mut want_missing) = (0, 0);
        for file in std::fs::read_dir(testdata(expected)).expect("expected") {
            let path = file.expect("entry").path();
            // 2019.2 writes Python 2 byte strings into its JSON as they are.
            let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
            let view: Value = serde_json::from_str(&text).expect("list_job JSON");
            let jid = path.file_stem().and_then(|s| s.to_str()).expect("jid");
            let job: Vec<&Value> = of_type(&run, "job")
                .into_iter()
                .filter(|e| e["jid"] == jid)
                .collect();
            let no_return: BTreeSet<&str> = of_type(&run, "no_return")
                .into_iter()
                .filter(|e| e["jid"] == jid)
                .map(|e| e["minion_id"].as_str().expect("minion_id"))
                .collect();
            if view["Function"] == "saltutil.find_job" {
                assert!(job.is_empty() && no_return.is_empty(), "{cache} {jid}");
                continue;
            }
            assert_eq!(job.len(), 1, "{cache} {jid}: one job event");
            let ev = job[0];
            if nocache.contains(jid) {
                // Salt keeps none of its returns: who ran what, and nothing known missing.
                assert_eq!(ev["returns_cached"], false, "{cache} {jid}");
                assert_eq!(ev["fun"], view["Function"], "{cache} {jid}");
                let targeted = view["Minions"].as_array().map_or(0, Vec::len);
                assert_eq!(ev["minions_targeted"], targeted, "{cache} {jid}");
                for field in ["minions_returned", "minions_missing", "success"] {
                    assert_eq!(ev[field], Value::Null, "{cache} {jid} {field}");
                }
                assert!(no_return.is_empty(), "{cache} {jid}: no no_return");
                want_jobs += 1;
                continue;
            }
            assert_eq!(ev["returns_cached"], true, "{cache} {jid}");
            for (field, key) in [
                ("fun", "Function"),
                ("tgt", "Target"),
                ("tgt_type", "Target-type"),
                ("user", "User"),
            ] {
                let want = view.get(key).cloned().unwrap_or(Value::Null);
                assert_eq!(ev[field], want, "{cache} {jid} {field}");
            }
            let returned: BTreeSet<&str> = view["Result"]
                .as_object()
                .map(|r| r.keys().map(String::as_str).collect())
                .unwrap_or_default();
            // An orchestration has no Minions: its master is its one minion (Result).
            let targeted: BTreeSet<&str> = match view.get("Minions") {
                Some(Value::Array(m)) => m.iter().filter_map(Value::as_str).collect(),
                _ => returned.clone(),
            };
            let missing: Vec<&str> = targeted.difference(&returned).copied().collect();
            assert_eq!(ev["minions_targeted"], targeted.len(), "{cache} {jid}");
            assert_eq!(ev["minions_returned"], returned.len(), "{cache} {jid}");
            assert_eq!(
                ev["minions_missing"],
                serde_json::json!(missing),
                "{cache} {jid}"
            );
            assert_eq!(
                no_return,
                missing.iter().copied().collect::<BTreeSet<_>>(),
                "{cache} {jid}: one no_return per missing minion"
            );
            want_jobs += 1;
            want_missing += missing.len();
        }
        assert_eq!(of_type(&run, "job").len(), want_jobs, "{cache}: no other");
        assert_eq!(of_type(&run, "no_return").len(), want_missing, "{cache}");
    }
}

#[test]
fn the_state_events_of_all_are_exactly_those_of_the_default() {
    let (_tmp, jobs) = cache_copy("fleet/jobs");
    let default = Saltship::dry_run(&jobs).run();
    let all = Saltship::dry_run(&jobs).more(["--events", "all"]).run();
    assert_eq!(default.code, 0, "{}", default.stderr);
    assert!(default.events.iter().all(|e| e["event_type"] == "state"));
    let states: Vec<&Value> = of_type(&all, "state");
    assert_eq!(states, default.events.iter().collect::<Vec<_>>());
    assert!(!of_type(&all, "job").is_empty() && !of_type(&all, "no_return").is_empty());
    let only_jobs = Saltship::dry_run(&jobs).more(["--events", "job"]).run();
    assert!(only_jobs.events.iter().all(|e| e["event_type"] == "job"));
    assert_eq!(only_jobs.events.len(), of_type(&all, "job").len());
}

#[test]
fn a_young_jobs_events_wait_for_return_wait_and_a_second_sync_sends_none_twice() {
    let (tmp, jobs) = cache_copy("fleet/jobs");
    let state = tmp.path().join("state");
    let held = Saltship::dry_run(&jobs)
        .more(["--events", "all", "--return-wait", "100000d"])
        .run();
    assert!(of_type(&held, "no_return").is_empty(), "{}", held.stderr);
    assert!(
        of_type(&held, "job")
            .iter()
            .all(|e| e["minions_missing"] == serde_json::json!([])),
        "only complete jobs are final before the wait"
    );
    assert!(
        held.stderr.contains("younger than --return-wait"),
        "{}",
        held.stderr
    );
    let full = Saltship::dry_run(&jobs).more(["--events", "all"]).run();
    let sync = |wait: &str| {
        let receiver = Receiver::start(Faults::default());
        let run = Saltship::sync(&jobs)
            .state_file(&state)
            .target(&receiver.target())
            .more(["--events", "all", "--return-wait", wait])
            .run();
        assert_eq!(run.code, 0, "{}", run.stderr);
        json_lines(&receiver.finish().join("\n"))
    };
    let first = sync("100000d");
    let second = sync("10m");
    let third = sync("10m");
    let jobs_of = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event_type"] != "state")
            .map(|e| e["event_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let (a, b) = (jobs_of(&first), jobs_of(&second));
    assert_eq!(a.len(), of_type(&held, "job").len());
    assert!(
        a.iter().all(|id| !b.contains(id)),
        "a job event was sent twice"
    );
    let mut both: Vec<String> = a.into_iter().chain(b).collect();
    both.sort();
    let mut want = jobs_of(&full.events);
    want.sort();
    assert_eq!(both, want, "held job events ship once the wait is over");
    assert!(third.is_empty(), "a third sync sends nothing: {third:?}");
}

#[test]
fn other_formats_carry_the_event_type() {
    let (_tmp, jobs) = cache_copy("fleet/jobs");
    let ecs = Saltship::dry_run(&jobs)
        .more(["--events", "job,no-return", "--format", "ecs"])
        .run();
    assert!(!ecs.events.is_empty());
    for e in &ecs.events {
        let kind = e["salt"]["event_type"].as_str().expect("event_type");
        assert_eq!(e["event"]["action"], kind);
        assert_eq!(e["event"]["dataset"], format!("salt.{kind}"));
    }
    let syslog = Saltship::dry_run(&jobs)
        .more(["--events", "job", "--format", "syslog"])
        .run_text();
    assert!(
        syslog.stdout.contains(" saltship - job [saltship@32473"),
        "{}",
        syslog.stdout
    );
    let gelf = Saltship::dry_run(&jobs)
        .more(["--events", "no-return", "--format", "gelf"])
        .run_text();
    assert!(gelf.stdout.contains("\"_event_type\":\"no_return\""));
}

/// `watch` sends a job's events when its wait runs out, with nothing landing and no rescan due.
#[test]
fn watch_sends_a_job_event_when_the_wait_runs_out_with_nothing_landing() {
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(testdata("fleet/cases.json")).expect("cases"))
            .expect("JSON");
    let case = cases
        .iter()
        .filter(|c| c["fun"] != "saltutil.find_job")
        .filter(|c| {
            c["minions_missing"]
                .as_array()
                .is_some_and(|m| !m.is_empty())
        })
        .max_by_key(|c| c["jid"].as_str().map(str::to_owned))
        .expect("a job with a missing minion");
    let jid = case["jid"].as_str().expect("jid");
    let publish = chrono::NaiveDateTime::parse_from_str(&jid[..14], "%Y%m%d%H%M%S")
        .expect("jid time")
        .and_utc()
        .timestamp();
    // Due 6 s from now: the catch-up holds it back, the daemon's timer must send it.
    let wait = chrono::Utc::now().timestamp() - publish + 6;
    let (tmp, jobs) = cache_copy("fleet/jobs");
    let receiver = Receiver::start(Faults::default());
    let wait_env = format!("{wait}s");
    let watch = crate::common::watch::Watch::start(
        &jobs,
        &tmp.path().join("state"),
        &receiver.target(),
        &[
            ("SALTSHIP_EVENTS", "job"),
            ("SALTSHIP_RETURN_WAIT", &wait_env),
        ],
    );
    let sent = |receiver: &Receiver| {
        json_lines(&receiver.lines_so_far().join("\n"))
            .into_iter()
            .any(|e| e["jid"] == jid)
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!sent(&receiver), "sent before its wait ran out");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !sent(&receiver) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, _, log) = watch.stop();
    assert!(sent(&receiver), "no job event after the wait: {log}");
    assert_eq!(code, 0, "{log}");
    let events = json_lines(&receiver.finish().join("\n"));
    let ev: Vec<&Value> = events.iter().filter(|e| e["jid"] == jid).collect();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["minions_missing"], case["minions_missing"]);
}
