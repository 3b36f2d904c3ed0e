//! The `gelf` format: a GELF 1.1 message. The standard fields carry the minion, the summary,
//! the comment, the time and the level; every other field of the event becomes an additional
//! `_field`, typed as the spec allows: strings and numbers as they are, booleans as the strings
//! `"true"`/`"false"`, lists and maps as their compact JSON text, nulls left out.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::fields::{comment_text, instant, summary, Outcome};

/// Event fields that went into standard GELF fields.
const STANDARD: [&str; 3] = ["timestamp", "minion_id", "comment"];

struct Gelf<'e>(&'e Map<String, Value>);

impl Serialize for Gelf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("version", "1.1")?;
        let host = Some(super::fields::host(event)).filter(|h| !h.is_empty());
        map.serialize_entry("host", host.unwrap_or("-"))?;
        map.serialize_entry("short_message", &summary(event))?;
        if let Some(text) = comment_text(event) {
            map.serialize_entry("full_message", &text)?;
        }
        if let Some(t) = instant(event) {
            // Exact: the microseconds fit an f64 and one division rounds once, so the shortest
            // decimal that prints is the six-digit one.
            map.serialize_entry("timestamp", &(t.timestamp_micros() as f64 / 1e6))?;
        }
        map.serialize_entry("level", &Outcome::of(event).severity())?;
        for (key, value) in event {
            if STANDARD.contains(&key.as_str()) {
                continue;
            }
            let name = additional_name(key);
            match value {
                Value::Null => {}
                Value::Bool(b) => map.serialize_entry(&name, if *b { "true" } else { "false" })?,
                Value::Number(_) | Value::String(_) => map.serialize_entry(&name, value)?,
                Value::Array(_) | Value::Object(_) => {
                    map.serialize_entry(&name, &value.to_string())?
                }
            }
        }
        map.end()
    }
}

/// `_` + the field's name, made to match the spec's `^[\w\.\-]*$` (ASCII word characters, as in
/// Graylog's Java regex); `__run_num__` reads `_run_num`, and `_id`, reserved, becomes `_id_`.
fn additional_name(key: &str) -> Cow<'static, str> {
    let name: String = match key {
        "__run_num__" => return Cow::Borrowed("_run_num"),
        "id" => return Cow::Borrowed("_id_"),
        _ => std::iter::once('_')
            .chain(key.chars().map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            }))
            .collect(),
    };
    Cow::Owned(name)
}

/// Appends the event as one GELF JSON message (no framing). JSON escapes U+0000 as `\u0000`,
/// so the message never contains the NUL byte that ends it on the wire.
pub(super) fn write(event: &Map<String, Value>, out: &mut Vec<u8>) {
    serde_json::to_writer(out, &Gelf(event)).expect("JSON with string keys serializes");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::format::{sample, strict};

    fn gelf(event: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Vec::new();
        write(event, &mut out);
        out.push(0);
        strict::gelf(&out).expect("valid GELF")
    }

    #[test]
    fn maps_standard_and_additional_fields() {
        let msg = gelf(&sample::event());
        assert_eq!(msg["version"], "1.1");
        assert_eq!(msg["host"], "web1");
        assert_eq!(
            msg["short_message"],
            "service_|-nginx_|-nginx_|-running: succeeded: The service nginx is already running"
        );
        assert_eq!(msg["full_message"], "The service nginx is already running");
        assert_eq!(msg["timestamp"].to_string(), "1795460271.1");
        assert_eq!(msg["level"], 6);
        assert_eq!(msg["_jid"], "20261123185750440911");
        assert_eq!(msg["_event_id"], "5c8e0e2a8f3b4f6e9d1c2b3a4f5e6d7c");
        assert_eq!(msg["_master"], "salt01");
        assert_eq!(msg["_state_name"], "service_|-nginx_|-nginx_|-running");
        assert_eq!(msg["_result"], "true");
        assert_eq!(msg["_changed"], "false");
        assert_eq!(
            msg["_fun_args"],
            r#"["web",{"test":true,"__kwarg__":true}]"#
        );
        assert_eq!(msg["_changes"], "{}");
        assert_eq!(msg["_duration"], 41.87);
        assert_eq!(msg["_run_num"], 3);
        assert_eq!(msg["_retcode"], 0);
        for gone in ["_timestamp", "_minion_id", "_comment", "___run_num__"] {
            assert!(msg.get(gone).is_none(), "{gone}");
        }
    }

    #[test]
    fn level_follows_result_and_null_result_is_left_out() {
        let levels: Vec<(Value, Option<Value>)> = sample::each_result()
            .iter()
            .map(|ev| {
                let msg = gelf(ev);
                (msg["level"].clone(), msg.get("_result").cloned())
            })
            .collect();
        assert_eq!(
            levels,
            [
                (json!(6), Some(json!("true"))),
                (json!(3), Some(json!("false"))),
                (json!(4), None)
            ]
        );
    }

    #[test]
    fn microseconds_survive_the_float() {
        let mut ev = sample::event();
        ev["timestamp"] = "2026-11-23T18:57:51.000001Z".into();
        assert_eq!(gelf(&ev)["timestamp"].to_string(), "1795460271.000001");
        ev["timestamp"] = "2099-12-31T23:59:59.999999Z".into();
        assert_eq!(gelf(&ev)["timestamp"].to_string(), "4102444799.999999");
        ev["timestamp"] = Value::Null;
        assert!(gelf(&ev).get("timestamp").is_none());
    }

    #[test]
    fn names_are_sanitised_and_nul_is_escaped() {
        assert_eq!(additional_name("a b/ü"), "_a_b__");
        assert_eq!(additional_name("id"), "_id_");
        let mut ev = sample::error_return();
        ev["comment"] = "nul \u{0} here".into();
        ev.insert("odd key".into(), json!({"k\u{0}": "v\u{0}"}));
        let msg = gelf(&ev);
        assert_eq!(msg["full_message"], "nul \u{0} here");
        assert_eq!(msg["_odd_key"], "{\"k\\u0000\":\"v\\u0000\"}");
        assert_eq!(msg["level"], 3);
        assert!(msg.get("_state_name").is_none(), "null fields are left out");
    }
}
