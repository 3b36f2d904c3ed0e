//! The tool's events against Salt's own view of every job in the real-Salt cache
//! (`testdata/expected/<jid>.json` = `salt-run jobs.list_job <jid> --out=json`).

use std::collections::HashSet;

use crate::common::view::{check, events_by_return, expected_files};
use crate::common::{cache_copy, testdata, Run, Saltship};
use serde_json::Value;

fn full_run() -> Run {
    let (_tmp, jobs) = cache_copy("jobs");
    let run = Saltship::dry_run(&jobs).run();
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

fn case_jid(name: &str) -> String {
    let c = cases()
        .into_iter()
        .find(|c| c["case"] == name)
        .unwrap_or_else(|| panic!("case {name}"));
    c["jid"].as_str().expect("jid").to_owned()
}

fn events_of<'r>(run: &'r Run, jid: &str) -> Vec<&'r Value> {
    run.events.iter().filter(|e| e["jid"] == jid).collect()
}

/// Salt's view of one job of the main cache.
fn view(jid: &str) -> Value {
    let path = testdata(&format!("expected/{jid}.json"));
    serde_json::from_slice(&std::fs::read(path).expect("expected file")).expect("JSON")
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
    let case = case_jid;
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
    let masked = Saltship::dry_run(&jobs).run();
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
    let shown = Saltship::dry_run(&jobs).more(["--show-pillar-args"]).run();
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

/// salt-ssh keeps the remote salt-call's return load in `return.p`: events carry the job's jid
/// (not the inner one), the roster host, `.load.p`'s function and the inner retcode.
#[test]
fn salt_ssh_events_carry_the_jobs_jid_host_function_and_retcode() {
    let run = full_run();
    for (name, fun) in [
        ("ssh-state-apply", "state.apply"),
        ("ssh-state-sls", "state.sls"),
        ("ssh-failures", "state.sls"),
    ] {
        let jid = case_jid(name);
        let salt = view(&jid);
        let inner = &salt["Result"]["ssh1"]["return"];
        assert_ne!(
            inner["jid"],
            jid.as_str(),
            "{name}: the inner jid is the remote's own"
        );
        let events = events_of(&run, &jid);
        assert!(!events.is_empty(), "{name}: no events");
        for ev in events {
            assert_eq!(ev["minion_id"], "ssh1", "{name}");
            assert_eq!(ev["fun"], fun, "{name}");
            assert_eq!(ev["retcode"], inner["retcode"], "{name}");
        }
    }
    let failures = events_of(&run, &case_jid("ssh-failures"));
    assert!(failures.iter().any(|e| e["result"] == false));
    assert!(failures.iter().all(|e| e["retcode"] == 2));
}

/// A salt-ssh host whose shim fails (or that cannot be reached) gives one failure event with
/// `_error` and the end of its stderr; in a job with several hosts the others ship as usual.
#[test]
fn salt_ssh_runs_that_failed_before_any_state_give_one_error_event() {
    let run = full_run();
    let shim = events_of(&run, &case_jid("ssh-shim-failure"));
    assert_eq!(shim.len(), 1);
    let salt = view(&case_jid("ssh-shim-failure"));
    let failed = &salt["Result"]["ssh-shimfail"]["return"];
    let comment = shim[0]["comment"].as_str().expect("comment");
    assert!(comment.starts_with(failed["_error"].as_str().expect("_error")));
    let stderr = failed["stderr"].as_str().expect("stderr").trim_end();
    assert!(!stderr.is_empty());
    assert!(comment.ends_with(&stderr[stderr.len().saturating_sub(200)..]));
    assert!(
        comment.len() < 2200,
        "stderr tail not bounded: {}",
        comment.len()
    );
    assert_eq!(shim[0]["result"], false);
    assert_eq!(shim[0]["retcode"], failed["retcode"]);
    assert_eq!(shim[0]["fun"], "state.apply");

    let mixed = events_of(&run, &case_jid("ssh-mixed"));
    let per_host = |host: &str| mixed.iter().filter(|e| e["minion_id"] == host).count();
    assert!(per_host("ssh1") >= 2);
    assert_eq!(per_host("ssh-shimfail"), 1);
    assert_eq!(per_host("ssh-unreachable"), 1);
}

/// `--fun` sees `.load.p`'s function for salt-ssh jobs, not the remote's `state.pkg`.
#[test]
fn fun_filter_sees_the_salt_ssh_jobs_function() {
    let (_tmp, jobs) = cache_copy("jobs");
    let apply = case_jid("ssh-state-apply");
    let run = Saltship::dry_run(&jobs)
        .more(["--fun", "state.apply"])
        .run();
    assert!(!events_of(&run, &apply).is_empty());
    assert!(run.events.iter().all(|e| e["fun"] == "state.apply"));
    let pkg = Saltship::dry_run(&jobs).more(["--fun", "state.pkg"]).run();
    assert!(
        pkg.events.is_empty(),
        "{} events for state.pkg",
        pkg.events.len()
    );
}

/// `salt-run state.orchestrate_single`: `return.return` maps the master id to the state results,
/// with no `data` level.
#[test]
fn orchestrate_single_results_ship_under_the_master_id() {
    let run = full_run();
    for (name, failed) in [
        ("orchestrate-single", false),
        ("orchestrate-single-fail", true),
    ] {
        let events = events_of(&run, &case_jid(name));
        assert!(!events.is_empty(), "{name}: no events");
        for ev in &events {
            assert_eq!(ev["minion_id"], "testmaster", "{name}");
            assert_eq!(ev["fun"], "runner.state.orchestrate_single", "{name}");
            assert_eq!(ev["state"], "test", "{name}");
        }
        assert_eq!(
            events.iter().any(|e| e["result"] == false),
            failed,
            "{name}"
        );
    }
}
