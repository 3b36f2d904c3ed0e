//! The tool's events against Salt's own view of every job in the real-Salt cache
//! (`testdata/expected/<jid>.json` = `salt-run jobs.list_job <jid> --out=json`).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::{backfill, cache_copy, testdata, Run};
use serde_json::Value;

const STATE_RUNS: &[&str] = &[
    "state.apply",
    "state.sls",
    "state.highstate",
    "state.sls_id",
    "state.single",
    "state.top",
    "state.template",
    "state.template_str",
    "state.high",
    "state.low",
];

/// What Salt says each return should give: `(jid, minion) -> [state key -> state result]`,
/// or an error return's messages.
#[derive(Debug)]
enum Expect {
    States(BTreeMap<String, Value>),
    Error(Vec<String>),
}

fn is_state(key: &str, v: &Value) -> bool {
    key.split("_|-").count() >= 4 && v.get("result").is_some()
}

fn expectation(fun: &str, ret: &Value) -> Option<Expect> {
    if fun.starts_with("runner.state.orch") {
        // Runner returns nest: {fun, return: {data: {<master>: states}}}; one master key.
        let data = ret.pointer("/return/data")?.as_object()?;
        let (_, states) = data.iter().next()?;
        return expectation("state.apply", states);
    }
    if !fun.starts_with("state.") {
        return None;
    }
    match ret {
        Value::Object(map) => {
            let states: BTreeMap<_, _> = map
                .iter()
                .filter(|(k, v)| is_state(k, v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!states.is_empty()).then_some(Expect::States(states))
        }
        Value::Array(items) if STATE_RUNS.contains(&fun) => Some(Expect::Error(
            items
                .iter()
                .map(|m| m.as_str().unwrap_or_default().to_owned())
                .collect(),
        )),
        Value::String(s) if STATE_RUNS.contains(&fun) => Some(Expect::Error(vec![s.clone()])),
        _ => None,
    }
}

/// Every expected file, as `(jid, minion_or_master, Expect)`.
fn expected() -> Vec<(String, String, Expect)> {
    let mut out = Vec::new();
    let dir = testdata("expected");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/expected")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "too few expected files in {}",
        dir.display()
    );
    for path in files {
        let job: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("expected JSON");
        let jid = job["jid"].as_str().expect("jid").to_owned();
        let funs: Vec<String> = match &job["Function"] {
            Value::String(f) => vec![f.clone()],
            Value::Array(fs) => fs
                .iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let Some(results) = job["Result"].as_object() else {
            continue;
        };
        for (minion, result) in results {
            for fun in &funs {
                let ret = if funs.len() > 1 {
                    &result["return"][fun]
                } else {
                    &result["return"]
                };
                if let Some(expect) = expectation(fun, ret) {
                    // Orchestration steps carry the master id Salt reports as the data key.
                    let who = match ret.pointer("/return/data").and_then(Value::as_object) {
                        Some(data) if fun.starts_with("runner.") => {
                            data.keys().next().expect("master key").clone()
                        }
                        _ => minion.clone(),
                    };
                    out.push((jid.clone(), who, expect));
                }
            }
        }
    }
    out
}

fn full_run() -> Run {
    let (_tmp, jobs) = cache_copy("jobs");
    let run = backfill(&jobs, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

fn events_by_return(run: &Run) -> HashMap<(String, String), Vec<&Value>> {
    let mut by: HashMap<(String, String), Vec<&Value>> = HashMap::new();
    for ev in &run.events {
        let key = (
            ev["jid"].as_str().expect("jid").to_owned(),
            ev["minion_id"].as_str().expect("minion").to_owned(),
        );
        by.entry(key).or_default().push(ev);
    }
    by
}

#[test]
fn every_state_result_once_and_equal_to_salts() {
    let run = full_run();
    let by_return = events_by_return(&run);
    let mut seen = 0;
    for (jid, minion, expect) in expected() {
        let events = by_return
            .get(&(jid.clone(), minion.clone()))
            .cloned()
            .unwrap_or_default();
        match expect {
            Expect::States(states) => {
                assert_eq!(events.len(), states.len(), "{jid}/{minion}: event count");
                for ev in &events {
                    let key = ev["state_name"].as_str().expect("state_name");
                    let st = states
                        .get(key)
                        .unwrap_or_else(|| panic!("{jid}/{minion}: unexpected state {key}"));
                    for (field, salt) in [
                        ("result", "result"),
                        ("comment", "comment"),
                        ("changes", "changes"),
                        ("name", "name"),
                        ("duration", "duration"),
                        ("start_time", "start_time"),
                        ("__run_num__", "__run_num__"),
                        ("sls", "__sls__"),
                        ("state_id", "__id__"),
                    ] {
                        let want = st.get(salt).cloned().unwrap_or(Value::Null);
                        assert_eq!(ev[field], want, "{jid}/{minion}/{key}: field {field}");
                    }
                    let parts: Vec<&str> = key.split("_|-").collect();
                    assert_eq!(ev["state"], parts[0], "{key}");
                    assert_eq!(ev["function"], parts[parts.len() - 1], "{key}");
                    assert_eq!(
                        ev["changed"],
                        Value::Bool(st["changes"].as_object().is_some_and(|c| !c.is_empty()))
                    );
                }
                let run_nums: Vec<i64> = events
                    .iter()
                    .map(|e| e["__run_num__"].as_i64().expect("run num"))
                    .collect();
                assert!(
                    run_nums.windows(2).all(|w| w[0] < w[1]),
                    "{jid}/{minion}: not in run order: {run_nums:?}"
                );
                seen += events.len();
            }
            Expect::Error(messages) => {
                assert_eq!(
                    events.len(),
                    1,
                    "{jid}/{minion}: one event for an error return"
                );
                let ev = events[0];
                assert_eq!(ev["result"], false);
                assert_eq!(ev["state_name"], Value::Null);
                let comment = ev["comment"].as_str().expect("comment");
                for m in &messages {
                    assert!(
                        comment.contains(m.as_str()),
                        "{jid}/{minion}: comment lacks {m:?}"
                    );
                }
                seen += 1;
            }
        }
    }
    assert_eq!(
        seen,
        run.events.len(),
        "events for returns Salt does not show as state results"
    );
    let ids: HashSet<&str> = run
        .events
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id"))
        .collect();
    assert_eq!(ids.len(), run.events.len(), "event_ids are not unique");
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
