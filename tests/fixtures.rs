//! The tool's events against Salt's own view of every job in the real-Salt cache
//! (`testdata/expected/<jid>.json` = `salt-run jobs.list_job <jid> --out=json`).

mod common;

use std::collections::HashSet;

use common::view::{check, events_by_return, expected_files};
use common::{backfill, cache_copy, testdata, Run};
use serde_json::Value;

fn full_run() -> Run {
    let (_tmp, jobs) = cache_copy("jobs");
    let run = backfill(&jobs, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

#[test]
fn every_state_result_once_and_equal_to_salts() {
    let run = full_run();
    let seen = check(&run, &expected_files());
    assert_eq!(
        seen,
        run.events.len(),
        "events for returns Salt does not show as state results"
    );
}

#[test]
fn output_is_ordered_by_jid_minion_and_run_number() {
    let run = full_run();
    let keys: Vec<(String, String, i64)> = run
        .events
        .iter()
        .map(|e| {
            (
                e["jid"].as_str().expect("jid").to_owned(),
                e["minion_id"].as_str().expect("minion").to_owned(),
                e["__run_num__"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

fn cases() -> Vec<Value> {
    serde_json::from_slice(&std::fs::read(testdata("cases.json")).expect("cases.json"))
        .expect("cases JSON")
}

fn micros(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("RFC 3339")
        .timestamp_micros()
}

/// db1 ran with TZ=+05:45 (regen.sh); web1 and the master in UTC. Every timestamp must be the
/// absolute instant at which that minion's clock showed `start_time`, shortly after the publish.
#[test]
fn timestamps_are_absolute_for_minions_in_other_zones() {
    let run = full_run();
    let day = 86_400_000_000_i64;
    let mut db1 = 0;
    for ev in &run.events {
        let ts = micros(ev["timestamp"].as_str().expect("timestamp"));
        let jid = ev["jid"].as_str().expect("jid");
        let publish = chrono::NaiveDateTime::parse_from_str(&jid[..20], "%Y%m%d%H%M%S%6f")
            .expect("jid time")
            .and_utc()
            .timestamp_micros();
        assert!(
            ts >= publish - 5_000_000 && ts < publish + 600_000_000,
            "{ev}: timestamp far from the publish"
        );
        let Some(start) = ev["start_time"].as_str() else {
            continue;
        };
        let offset = if ev["minion_id"] == "db1" {
            (5 * 60 + 45) * 60_000_000
        } else {
            0
        };
        let local = chrono::NaiveTime::parse_from_str(start, "%H:%M:%S%.f").expect("start_time");
        let local = local
            .signed_duration_since(chrono::NaiveTime::MIN)
            .num_microseconds()
            .expect("micros");
        assert_eq!(
            (ts + offset).rem_euclid(day),
            local,
            "{ev}: timestamp does not show start_time"
        );
        db1 += usize::from(ev["minion_id"] == "db1");
    }
    assert!(db1 > 10, "too few db1 events to test time zones: {db1}");
}

/// What `testdata/cases.json` says of each job: non-state and nocache jobs give nothing, each
/// error return exactly one failure event.
#[test]
fn named_cases_give_what_they_should() {
    let run = full_run();
    let by_return = events_by_return(&run);
    for case in cases() {
        let jid = case["jid"].as_str().expect("jid");
        let name = case["case"].as_str().expect("case");
        let events: Vec<&&Value> = by_return
            .iter()
            .filter(|((j, _), _)| j == jid)
            .flat_map(|(_, e)| e)
            .collect();
        match case["expect"].as_str().expect("expect") {
            "nothing" => assert!(events.is_empty(), "{name}: {} events", events.len()),
            "states" => assert!(!events.is_empty(), "{name}: no events"),
            "error-event" => {
                assert!(!events.is_empty(), "{name}: no events");
                let minions: HashSet<&str> = events
                    .iter()
                    .map(|e| e["minion_id"].as_str().expect("minion"))
                    .collect();
                assert_eq!(events.len(), minions.len(), "{name}: one event per minion");
                assert!(
                    events
                        .iter()
                        .all(|e| e["result"] == false && e["state_name"].is_null()),
                    "{name}"
                );
            }
            other => panic!("{name}: unknown expect {other}"),
        }
    }
}

#[test]
fn orchestration_steps_carry_the_master_id_and_children_ship_once() {
    let run = full_run();
    let case = |name: &str| -> String {
        let c = cases()
            .into_iter()
            .find(|c| c["case"] == name)
            .unwrap_or_else(|| panic!("case {name}"));
        c["jid"].as_str().expect("jid").to_owned()
    };
    let orch = case("orchestrate");
    let steps: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["jid"] == orch.as_str())
        .collect();
    assert!(steps.len() >= 2, "orchestration steps: {}", steps.len());
    for step in &steps {
        assert_eq!(step["minion_id"], "testmaster");
        assert_eq!(step["fun"], "runner.state.orchestrate");
        assert_eq!(step["state"], "salt");
    }
    // The salt.state step's child job ships its minions' states under its own jid only.
    let child = case("orchestrate-child-state");
    let child_events: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["jid"] == child.as_str())
        .collect();
    assert!(!child_events.is_empty());
    let child_keys: HashSet<&str> = child_events
        .iter()
        .map(|e| e["state_name"].as_str().expect("key"))
        .collect();
    assert!(steps
        .iter()
        .all(|s| !child_keys.contains(s["state_name"].as_str().expect("key"))));
}

/// `state.sls web pillar='{...}'`: Salt stores the pillar in `.load.p` `arg`; its values never
/// leave the machine unless asked for, and `kwargs` never does.
#[test]
fn pillar_argument_values_are_masked() {
    let jid = cases()
        .into_iter()
        .find(|c| c["case"] == "pillar-arg")
        .expect("pillar-arg case")["jid"]
        .as_str()
        .expect("jid")
        .to_owned();
    let (_tmp, jobs) = cache_copy("jobs");
    let masked = backfill(&jobs, &[]);
    assert!(!masked.stdout.contains("hunter2-secret") && !masked.stdout.contains("tok-secret"));
    let of_job: Vec<&Value> = masked
        .events
        .iter()
        .filter(|e| e["jid"] == jid.as_str())
        .collect();
    assert!(!of_job.is_empty());
    for ev in &of_job {
        assert_eq!(ev["fun_args"][0], "web");
        assert_eq!(ev["fun_args"][1]["pillar"]["db_password"], "********");
        assert_eq!(ev["fun_args"][1]["pillar"]["api"], "********");
    }
    let shown = backfill(&jobs, &["--show-pillar-args"]);
    let ev = shown
        .events
        .iter()
        .find(|e| e["jid"] == jid.as_str())
        .expect("event");
    assert_eq!(ev["fun_args"][1]["pillar"]["db_password"], "hunter2-secret");
    assert!(
        !shown.stdout.contains("gather_job_timeout"),
        "kwargs shipped"
    );
}
