//! The `syslog` format: an RFC 5424 message whose MSG is the compact `json` event.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME saltship - state [saltship@32473 jid=".." state=".." result=".."] MSG`
//! (MSGID is the event's `event_type`: `state`, `job` or `no_return`; a job event's HOSTNAME
//! is the master)
//! - facility local0, the one conventionally left to site applications, so a receiver can route
//!   saltship with one selector; severity err, warning or info for failed, pending, succeeded;
//! - 32473 is the enterprise number RFC 5612 reserves for documentation: there is no registered
//!   one for saltship, and an SD-ID with `@` is the form RFC 5424 gives private names;
//! - MSG carries no BOM although RFC 5424 says it SHOULD: rsyslog keeps a BOM as part of the
//!   message (rsyslog issue #284), which then breaks `mmjsonparse` and every JSON parser
//!   downstream, while a BOM-less MSG is read as UTF-8 by rsyslog and syslog-ng alike.

use std::io::Write;

use serde_json::{Map, Value};

use super::fields::{field, instant, Outcome};

const LOCAL0: u8 = 16;

/// Appends the event as one RFC 5424 message (no framing).
pub(super) fn write(event: &Map<String, Value>, out: &mut Vec<u8>) {
    let pri = LOCAL0 * 8 + Outcome::of(event).severity();
    // RFC 5424 allows at most six fraction digits; chrono writes exactly six.
    let timestamp = instant(event).map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    );
    let host = hostname(super::fields::host(event));
    // MSGID: the event's kind (state, job, no_return).
    let msgid = super::fields::event_type(event);
    write!(
        out,
        "<{pri}>1 {timestamp} {host} saltship - {msgid} [saltship@32473"
    )
    .expect("writing to a Vec cannot fail");
    param(out, "jid", &text(field(event, "jid")));
    if let Some(state) = field(event, "state_name").as_str() {
        param(out, "state", state);
    }
    let result = event.get("result").or_else(|| event.get("success"));
    param(
        out,
        "result",
        &text(result.unwrap_or(field(event, "result"))),
    );
    out.extend_from_slice(b"] ");
    serde_json::to_writer(out, event).expect("JSON with string keys serializes");
}

/// HOSTNAME is 1 to 255 printable US-ASCII characters: others become `_`, none gives `-`.
fn hostname(minion: &str) -> String {
    let host: String = minion
        .chars()
        .take(255)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if host.is_empty() {
        "-".to_owned()
    } else {
        host
    }
}

/// A string as it is, anything else as its JSON text (`true`, `null`).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// ` name="value"`, with `"`, `\` and `]` escaped by a backslash as RFC 5424 6.3.3 requires.
fn param(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    for b in value.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{sample, strict};

    fn syslog(event: &Map<String, Value>) -> strict::Syslog {
        let mut out = Vec::new();
        write(event, &mut out);
        let framed = [format!("{} ", out.len()).into_bytes(), out].concat();
        strict::syslog(&framed).expect("valid RFC 5424")
    }

    #[test]
    fn header_structured_data_and_msg() {
        let msg = syslog(&sample::event());
        assert_eq!(msg.pri, 134);
        assert_eq!(msg.timestamp, "2026-11-23T18:57:51.100000Z");
        assert_eq!(msg.hostname, "web1");
        assert_eq!(
            (
                msg.app_name.as_str(),
                msg.procid.as_str(),
                msg.msgid.as_str()
            ),
            ("saltship", "-", "state")
        );
        let params = [
            ("jid", "20261123185750440911"),
            ("state", "service_|-nginx_|-nginx_|-running"),
            ("result", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(msg.sd, [("saltship@32473".to_owned(), params.to_vec())]);
        assert_eq!(msg.msg, sample::event());
    }

    #[test]
    fn severity_follows_result() {
        let found: Vec<(u8, String)> = sample::each_result()
            .iter()
            .map(|ev| {
                let msg = syslog(ev);
                (msg.pri, msg.sd[0].1[2].1.clone())
            })
            .collect();
        let expected = [(134, "true"), (131, "false"), (132, "null")];
        assert_eq!(found, expected.map(|(p, r)| (p, r.to_owned())));
    }

    #[test]
    fn escapes_param_values_and_sanitises_the_hostname() {
        let mut ev = sample::event();
        ev["state_name"] = r#"cmd_|-a "b" \c [d]_|-x_|-run"#.into();
        ev["minion_id"] = "wéb 1".into();
        ev["timestamp"] = Value::Null;
        let msg = syslog(&ev);
        assert_eq!(msg.sd[0].1[1].1, r#"cmd_|-a "b" \c [d]_|-x_|-run"#);
        assert_eq!(msg.hostname, "w_b_1");
        assert_eq!(msg.timestamp, "-");
        assert_eq!(hostname(""), "-");
        assert_eq!(hostname(&"h".repeat(300)).len(), 255);
    }

    #[test]
    fn error_return_has_no_state_param() {
        let msg = syslog(&sample::error_return());
        let names: Vec<&str> = msg.sd[0].1.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["jid", "result"]);
        assert_eq!(msg.pri, 131);
    }
}
