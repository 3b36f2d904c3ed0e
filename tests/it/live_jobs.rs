//! Job and no_return events on a live master: jobs published while `watch` follows the cache,
//! or `sync` runs, in Salt's order and with gaps between the files (`common::master`), so that
//! saltship looks at every job half published. Each job event must be what
//! `salt-run jobs.list_job` says of the job once it is final, and each minion that never
//! returned must get its no_return event; nothing is shipped or recorded before.
//! The same against a real master and minions: `testdata/live-master.sh`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::master::{jid_now, Gaps, Publisher};
use crate::common::rsyslog::{json_receiver, received};
use crate::common::watch::Watch;
use crate::common::Saltship;

/// The fixture jobs published, with the minions whose returns never come (besides `down1` of
/// `minion-down`, which `.minions.p` names and which was down).
const JOBS: [(&str, &[&str]); 7] = [
    ("minion-down", &[]),
    ("test-ping", &["db1"]),
    ("state-apply-highstate", &[]),
    ("multi-function", &[]),
    ("orchestrate", &[]),
    ("nocache", &[]),
    ("cmd-run", &["web1"]),
];

/// The job and no_return events the receiver in `dir` wrote so far.
fn job_events(dir: &Path) -> Vec<Value> {
    received(dir)
        .into_iter()
        .filter(|e| e["event_type"] != "state")
        .collect()
}

/// Waits (bounded) until `done` holds of the job events received.
fn wait_until(dir: &Path, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let events = job_events(dir);
        if done(&events) || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks the events of `job` (with `silent` never returning) against its list_job view.
pub(crate) fn assert_final(events: &[Value], job: &Publisher, silent: &[&str]) {
    let (view, targeted, returned) = job.expected(silent);
    let of = |kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["jid"] == job.jid.as_str() && e["event_type"] == kind)
            .collect()
    };
    let jobs = of("job");
    assert_eq!(jobs.len(), 1, "{}: one job event: {jobs:?}", job.jid);
    let ev = jobs[0];
    for (field, key) in [
        ("fun", "Function"),
        ("tgt", "Target"),
        ("tgt_type", "Target-type"),
        ("user", "User"),
    ] {
        let want = view.get(key).cloned().unwrap_or(Value::Null);
        assert_eq!(ev[field], want, "{} {field}: {ev}", job.jid);
    }
    assert_eq!(ev["minions_targeted"], targeted.len(), "{}: {ev}", job.jid);
    let no_return: Vec<&str> = of("no_return")
        .iter()
        .map(|e| e["minion_id"].as_str().expect("minion_id"))
        .collect();
    if job.dir.join("nocache").exists() {
        assert_eq!(ev["returns_cached"], false, "{ev}");
        assert_eq!(ev["minions_missing"], Value::Null, "{ev}");
        assert!(no_return.is_empty(), "nocache: {no_return:?}");
        return;
    }
    let missing: Vec<&String> = targeted.difference(&returned).collect();
    assert_eq!(ev["minions_returned"], returned.len(), "{}: {ev}", job.jid);
    assert_eq!(ev["minions_missing"], json!(missing), "{}: {ev}", job.jid);
    assert_eq!(
        ev["success"],
        missing.is_empty() && ev["minions_failed"] == 0,
        "{ev}"
    );
    let mut sorted = no_return.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        missing.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "{}: one no_return per missing minion",
        job.jid
    );
}

#[test]
fn watch_ships_each_job_as_list_job_sees_it_once_final_while_a_master_publishes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some((_rsyslog, target)) = json_receiver(tmp.path()) else {
        return;
    };
    let jobs = tmp.path().join("jobs");
    std::fs::create_dir(&jobs).expect("empty cache");
    let watch = Watch::start(
        &jobs,
        &tmp.path().join("state"),
        &target,
        &[("SALTSHIP_EVENTS", "all"), ("SALTSHIP_RETURN_WAIT", "5s")],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !watch.log().contains("following") {
        assert!(Instant::now() < deadline, "not following: {}", watch.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut gaps = Gaps::new(28);
    let mut published = Vec::new();
    for (i, (case, silent)) in JOBS.iter().enumerate() {
        let job = Publisher::new(&jobs, case, &jid_now(i as u32));
        // Half of them as a master older than 3007 writes `.load.p` and `.minions.p`.
        let job = if i % 2 == 1 { job.in_place() } else { job };
        job.publish(silent, &mut gaps);
        published.push((job, *silent));
    }
    let jids: BTreeSet<&str> = published.iter().map(|(j, _)| j.jid.as_str()).collect();
    // The last job's wait runs out 5 s after its publish.
    wait_until(tmp.path(), Duration::from_secs(30), |events| {
        let done: BTreeSet<&str> = events
            .iter()
            .filter(|e| e["event_type"] == "job")
            .filter_map(|e| e["jid"].as_str())
            .collect();
        jids.is_subset(&done)
    });
    // Anything sent twice, or late, comes within a moment.
    std::thread::sleep(Duration::from_millis(1500));
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    let events = job_events(tmp.path());
    let shipped: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["event_type"] == "job")
        .filter_map(|e| e["jid"].as_str())
        .collect();
    assert!(
        jids.is_subset(&shipped),
        "no job event for {:?}: {log}",
        jids.difference(&shipped).collect::<Vec<_>>()
    );
    for (job, silent) in &published {
        assert_final(&events, job, silent);
    }
    assert!(
        events.iter().all(|e| e["fun"] != Value::Null),
        "a job shipped before its .load.p: {events:?}"
    );
}

#[test]
fn a_sync_between_load_and_minions_ships_and_records_nothing_of_the_job_until_it_is_final() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some((_rsyslog, target)) = json_receiver(tmp.path()) else {
        return;
    };
    let jobs = tmp.path().join("jobs");
    std::fs::create_dir(&jobs).expect("empty cache");
    let state = tmp.path().join("state");
    let sync = || {
        let run = Saltship::sync(&jobs)
            .state_file(&state)
            .target(&target)
            .more(["--events", "all"])
            .run();
        assert_eq!(run.code, 0, "{}", run.stderr);
        run
    };
    let mut gaps = Gaps::new(1);
    let ping = Publisher::new(&jobs, "test-ping", &jid_now(1)).in_place();
    let down = Publisher::new(&jobs, "minion-down", &jid_now(2));
    for job in [&ping, &down] {
        job.folder();
        job.load(&mut gaps);
    }
    let first = sync();
    assert!(
        first
            .stderr
            .contains("2 jobs are younger than --return-wait"),
        "{}",
        first.stderr
    );
    ping.minions(&mut gaps);
    ping.returns(&[], &mut gaps);
    down.minions(&mut gaps);
    down.returns(&[], &mut gaps);
    sync();
    let events = wait_until(tmp.path(), Duration::from_secs(10), |e| !e.is_empty());
    // The complete job now; the one with a minion down once its wait is over.
    assert_final(&events, &ping, &[]);
    assert!(
        events.iter().all(|e| e["jid"] != down.jid.as_str()),
        "{events:?}"
    );
    let third = Saltship::sync(&jobs)
        .state_file(&state)
        .target(&target)
        .more(["--events", "all", "--return-wait", "0s"])
        .run();
    assert_eq!(third.code, 0, "{}", third.stderr);
    let events = wait_until(tmp.path(), Duration::from_secs(10), |e| {
        e.iter().any(|e| e["jid"] == down.jid.as_str())
    });
    assert_final(&events, &ping, &[]);
    assert_final(&events, &down, &[]);
}
