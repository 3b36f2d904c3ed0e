//! The `ecs` format: the event in Elastic Common Schema 8 terms, the Salt-specific fields nested
//! under `salt`. Borrowed from the event, nothing is copied but the summary and the action.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use super::fields::{field, summary, Outcome};

/// The ECS release whose field reference this mapping follows.
pub(crate) const ECS_VERSION: &str = "8.17.0";

/// One document; `salt` is [`Salt`] for a state event, the event's own fields for the others.
#[derive(Serialize)]
struct Ecs<'e, S> {
    #[serde(rename = "@timestamp", skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'e str>,
    message: String,
    ecs: Version,
    event: Event<'e>,
    host: Host<'e>,
    observer: Observer<'e>,
    salt: S,
}

impl<'e, S: Serialize> Ecs<'e, S> {
    fn write(
        event: &'e Map<String, Value>,
        ecs_event: Event<'e>,
        host: &'e Value,
        salt: S,
        out: &mut Vec<u8>,
    ) {
        let doc = Ecs {
            timestamp: field(event, "timestamp").as_str(),
            message: summary(event),
            ecs: Version {
                version: ECS_VERSION,
            },
            event: ecs_event,
            host: Host { name: host },
            observer: Observer {
                hostname: field(event, "master"),
                product: "saltship",
            },
            salt,
        };
        serde_json::to_writer(out, &doc).expect("JSON with string keys serializes");
    }
}

#[derive(Serialize)]
struct Version {
    version: &'static str,
}

#[derive(Serialize)]
struct Event<'e> {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    kind_of_change: [&'static str; 1],
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    id: &'e Value,
    module: &'static str,
    dataset: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
}

#[derive(Serialize)]
struct Host<'e> {
    name: &'e Value,
}

#[derive(Serialize)]
struct Observer<'e> {
    hostname: &'e Value,
    product: &'static str,
}

#[derive(Serialize)]
struct Salt<'e> {
    jid: &'e Value,
    fun: &'e Value,
    fun_args: &'e Value,
    state_name: &'e Value,
    state_id: &'e Value,
    name: &'e Value,
    state: &'e Value,
    function: &'e Value,
    sls: &'e Value,
    result: &'e Value,
    changed: &'e Value,
    comment: &'e Value,
    changes: &'e Value,
    start_time: &'e Value,
    duration_ms: &'e Value,
    run_num: &'e Value,
    retcode: &'e Value,
    success: &'e Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<&'e Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<&'e Value>,
}

/// Fields ECS carries elsewhere than under `salt`.
const ECS_OWN: [&str; 4] = ["timestamp", "event_id", "master", "minion_id"];

/// A job or no_return event in ECS terms: `event.action` and `event.dataset` name its kind,
/// `host.name` is the minion (the master for a job event), its own fields go under `salt`.
fn write_job(event: &Map<String, Value>, kind: &str, out: &mut Vec<u8>) {
    let f = |name| field(event, name);
    let host = match f("minion_id") {
        Value::Null => f("master"),
        minion => minion,
    };
    let ecs_event = Event {
        kind: "event",
        category: ["process"],
        kind_of_change: ["info"],
        outcome: match Outcome::of(event) {
            Outcome::Succeeded => "success",
            _ => "failure",
        },
        // A job event's duration is in seconds.
        duration: f("duration")
            .as_f64()
            .filter(|s| s.is_finite())
            .map(|s| (s * 1e9).round() as i64),
        id: f("event_id"),
        module: "salt",
        dataset: Cow::Owned(format!("salt.{kind}")),
        action: Some(kind.to_owned()),
    };
    let salt: Map<String, Value> = event
        .iter()
        .filter(|(k, _)| !ECS_OWN.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ecs::write(event, ecs_event, host, salt, out);
}

/// Appends the event as one ECS JSON object (no framing).
pub(super) fn write(event: &Map<String, Value>, out: &mut Vec<u8>) {
    match super::fields::event_type(event) {
        "state" => {}
        kind => return write_job(event, kind, out),
    }
    let f = |name| field(event, name);
    let ecs_event = Event {
        kind: "event",
        category: ["configuration"],
        kind_of_change: [match f("changed").as_bool() {
            Some(true) => "change",
            _ => "info",
        }],
        outcome: Outcome::of(event).ecs(),
        duration: f("duration")
            .as_f64()
            .filter(|ms| ms.is_finite())
            .map(|ms| (ms * 1e6).round() as i64),
        id: f("event_id"),
        module: "salt",
        dataset: Cow::Borrowed("salt.state"),
        action: match (f("state").as_str(), f("function").as_str()) {
            (Some(state), Some(function)) => Some(format!("{state}.{function}")),
            _ => f("fun").as_str().map(str::to_owned),
        },
    };
    let salt = Salt {
        jid: f("jid"),
        fun: f("fun"),
        fun_args: f("fun_args"),
        state_name: f("state_name"),
        state_id: f("state_id"),
        name: f("name"),
        state: f("state"),
        function: f("function"),
        sls: f("sls"),
        result: f("result"),
        changed: f("changed"),
        comment: f("comment"),
        changes: f("changes"),
        start_time: f("start_time"),
        duration_ms: f("duration"),
        run_num: f("__run_num__"),
        retcode: f("retcode"),
        success: f("success"),
        truncated: event.get("truncated"),
        event_type: event.get("event_type"),
    };
    Ecs::write(event, ecs_event, f("minion_id"), salt, out);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::format::{sample, strict};

    fn ecs(event: &Map<String, Value>) -> Value {
        let mut out = Vec::new();
        write(event, &mut out);
        out.push(b'\n');
        Value::Object(strict::ndjson(&out).expect("valid ECS line"))
    }

    #[test]
    fn maps_the_event_to_ecs_fields() {
        let doc = ecs(&sample::event());
        assert_eq!(doc["@timestamp"], "2026-11-23T18:57:51.100000Z");
        assert_eq!(doc["ecs"]["version"], ECS_VERSION);
        assert_eq!(
            doc["message"],
            "service_|-nginx_|-nginx_|-running: succeeded: The service nginx is already running"
        );
        let expected_event = json!({
            "kind": "event", "category": ["configuration"], "type": ["info"],
            "outcome": "success", "duration": 41_870_000, "id": "5c8e0e2a8f3b4f6e9d1c2b3a4f5e6d7c",
            "module": "salt", "dataset": "salt.state", "action": "service.running"
        });
        assert_eq!(doc["event"], expected_event);
        assert_eq!(doc["host"], json!({"name": "web1"}));
        assert_eq!(
            doc["observer"],
            json!({"hostname": "salt01", "product": "saltship"})
        );
        let salt = &doc["salt"];
        assert_eq!(salt["jid"], "20261123185750440911");
        assert_eq!(salt["fun_args"][1]["test"], true);
        assert_eq!(salt["run_num"], 3);
        assert_eq!(salt["duration_ms"], 41.87);
        assert_eq!(salt["changes"], json!({}));
        assert!(salt.get("truncated").is_none());
        assert!(doc.get("salt.jid").is_none(), "nested, not dotted");
    }

    #[test]
    fn outcome_and_type_follow_result_and_changed() {
        let outcomes: Vec<Value> = sample::each_result()
            .iter()
            .map(|ev| ecs(ev)["event"]["outcome"].clone())
            .collect();
        assert_eq!(outcomes, ["success", "failure", "unknown"]);
        let doc = ecs(&sample::with_diff(100));
        assert_eq!(doc["event"]["type"], json!(["change"]));
        assert_eq!(doc["event"]["action"], "file.managed");
    }

    #[test]
    fn error_return_falls_back_to_fun_and_omits_what_is_unknown() {
        let mut ev = sample::error_return();
        ev["timestamp"] = Value::Null;
        let doc = ecs(&ev);
        assert!(doc.get("@timestamp").is_none());
        assert!(doc["event"].get("duration").is_none());
        assert_eq!(doc["event"]["action"], "state.apply");
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["salt"]["state_name"], Value::Null);
        assert_eq!(doc["salt"]["comment"][1], "line 3");
    }
}
