//! Events for the format tests, shaped like the ones `event::write_json` makes.

use serde_json::{json, Map, Value};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("samples are objects"),
    }
}

/// The example of the README and docs/events.md: a state that succeeded without changes.
pub(super) fn event() -> Map<String, Value> {
    object(json!({
        "timestamp": "2026-11-23T18:57:51.100000Z",
        "event_id": "5c8e0e2a8f3b4f6e9d1c2b3a4f5e6d7c",
        "master": "salt01",
        "minion_id": "web1",
        "jid": "20261123185750440911",
        "fun": "state.apply",
        "fun_args": ["web", {"test": true, "__kwarg__": true}],
        "state_name": "service_|-nginx_|-nginx_|-running",
        "state_id": "nginx",
        "name": "nginx",
        "state": "service",
        "function": "running",
        "sls": "web",
        "result": true,
        "changed": false,
        "comment": "The service nginx is already running",
        "changes": {},
        "start_time": "00:42:51.100000",
        "duration": 41.87,
        "__run_num__": 3,
        "retcode": 0,
        "success": true
    }))
}

/// A `file.managed` whose diff is `diff_bytes` long, mixing multi-byte characters and quotes.
pub(super) fn with_diff(diff_bytes: usize) -> Map<String, Value> {
    let mut ev = event();
    let unit = "+ligne «é» \"q\" \\ 😀 ]\n";
    let diff: String = unit.repeat(diff_bytes / unit.len() + 1);
    let cut = super::fields::floor_char_boundary(&diff, diff_bytes);
    ev["state_name"] = "file_|-/etc/nginx/nginx.conf_|-/etc/nginx/nginx.conf_|-managed".into();
    ev["state"] = "file".into();
    ev["function"] = "managed".into();
    ev["changed"] = true.into();
    ev["comment"] = "File /etc/nginx/nginx.conf updated".into();
    ev["changes"] = json!({"diff": &diff[..cut]});
    ev
}

/// A render error: no state, `result: false`, the messages as a list.
pub(super) fn error_return() -> Map<String, Value> {
    let mut ev = event();
    for key in ["state_name", "state_id", "name", "state", "function", "sls"] {
        ev[key] = Value::Null;
    }
    ev["result"] = false.into();
    ev["comment"] = json!([
        "Rendering SLS 'base:web' failed: Jinja variable 'x' is undefined",
        "line 3"
    ]);
    ev["start_time"] = Value::Null;
    ev["duration"] = Value::Null;
    ev["__run_num__"] = Value::Null;
    ev["retcode"] = 1.into();
    ev["success"] = false.into();
    ev
}

/// The sample with each `result` a state can have.
pub(super) fn each_result() -> Vec<Map<String, Value>> {
    [Value::Bool(true), Value::Bool(false), Value::Null]
        .into_iter()
        .map(|result| {
            let mut ev = event();
            ev["result"] = result;
            ev
        })
        .collect()
}
