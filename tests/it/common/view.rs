//! Salt's own view of a job (`salt-run jobs.list_job <jid> --out=json`) and the check that the
//! tool's events say the same, field for field.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::{testdata, Run};

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

/// What Salt says one return should give.
#[derive(Debug)]
pub enum Expect {
    /// state key -> state result
    States(BTreeMap<String, Value>),
    /// an error return's messages
    Error(Vec<String>),
}

fn is_state(key: &str, v: &Value) -> bool {
    key.split("_|-").count() >= 4 && v.get("result").is_some()
}

/// An orchestration's results by master id: `{fun, return: {data: {<master>: states}}}`, or
/// `{fun, return: {<master>: states}}` for orchestrate_single and orchestrate_high.
fn per_master(ret: &Value) -> Option<&serde_json::Map<String, Value>> {
    ret.pointer("/return/data")
        .or_else(|| ret.get("return"))?
        .as_object()
}

fn expectation(fun: &str, ret: &Value) -> Option<Expect> {
    if fun.starts_with("runner.state.orch") {
        // One master key.
        let (_, states) = per_master(ret)?.iter().next()?;
        return expectation("state.apply", states);
    }
    // No .load.p: Salt's view says unknown-function; state results are found by shape.
    let by_shape_only = fun == "unknown-function";
    if !fun.starts_with("state.") && !by_shape_only {
        return None;
    }
    match ret {
        // salt-ssh keeps the remote salt-call's whole return load: the states are one level down.
        Value::Object(load)
            if load.contains_key("fun")
                && load.contains_key("jid")
                && load.contains_key("return") =>
        {
            expectation(fun, &load["return"])
        }
        // salt-ssh's report of a run that failed before any state ran: `_error` and the end of
        // its output.
        Value::Object(failed) if STATE_RUNS.contains(&fun) && failed.contains_key("_error") => {
            let mut messages = vec![failed["_error"].as_str().expect("_error").to_owned()];
            let output = ["stderr", "stdout"]
                .iter()
                .filter_map(|k| failed.get(*k).and_then(Value::as_str))
                .find(|t| !t.trim().is_empty());
            if let Some(last) = output.and_then(|o| o.trim_end().lines().last()) {
                messages.push(last.to_owned());
            }
            Some(Expect::Error(messages))
        }
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

/// Every `testdata/expected/*.json`, parsed.
pub fn expected_files() -> Vec<Value> {
    let views = expected_in("expected");
    assert!(
        views.len() >= 20,
        "too few expected files in testdata/expected"
    );
    views
}

/// Every `testdata/<rel>/*.json` (list_job views), parsed.
pub fn expected_in(rel: &str) -> Vec<Value> {
    let dir = testdata(rel);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no expected files in {}", dir.display());
    files
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("expected JSON"))
        .collect()
}

/// What one list_job view says should ship, as `(jid, minion or master id, Expect)`.
pub fn expectations(job: &Value) -> Vec<(String, String, Expect)> {
    let mut out = Vec::new();
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
        return out;
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
                let who = match per_master(ret) {
                    Some(data) if fun.starts_with("runner.") => {
                        data.keys().next().expect("master key").clone()
                    }
                    _ => minion.clone(),
                };
                out.push((jid.clone(), who, expect));
            }
        }
    }
    out
}

pub fn events_by_return(run: &Run) -> HashMap<(String, String), Vec<&Value>> {
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

/// Asserts that every state result in `views` is an event of `run` exactly once, equal to
/// Salt's field for field, and each error return exactly one failure event, and that event ids
/// are unique. Returns how many events it checked.
pub fn check(run: &Run, views: &[Value]) -> usize {
    let by_return = events_by_return(run);
    let mut seen = 0;
    for (jid, minion, expect) in views.iter().flat_map(expectations) {
        let events = by_return
            .get(&(jid.clone(), minion.clone()))
            .cloned()
            .unwrap_or_default();
        match expect {
            Expect::States(states) => {
                assert_eq!(events.len(), states.len(), "{jid}/{minion}: event count");
                for ev in &events {
                    check_state(ev, &states, &jid, &minion);
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
    let ids: HashSet<&str> = run
        .events
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id"))
        .collect();
    assert_eq!(ids.len(), run.events.len(), "event_ids are not unique");
    seen
}

fn check_state(ev: &Value, states: &BTreeMap<String, Value>, jid: &str, minion: &str) {
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
        Value::Bool(st["changes"].as_object().is_some_and(|c| !c.is_empty())),
        "{key}"
    );
}
