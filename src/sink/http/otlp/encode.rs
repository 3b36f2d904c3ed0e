//! OTLP logs, pure: a batch of events becomes one `ExportLogsServiceRequest` (the messages of
//! `opentelemetry-proto`, encoded by `prost` or as OTLP/JSON), optionally gzipped.
//!
//! Each event is one `LogRecord`. Its body is the event exactly as `--format` encoded it (a
//! string), so a receiver that keeps only the body still has every field; the attributes repeat
//! the few fields people filter on. OTLP has no de-duplication: `event_id` is there for the
//! receiver to dedupe on.

use std::io::Write;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

pub(crate) use crate::sink::keys::Outcome;

/// How a request travels (`--otlp-encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Encoding {
    /// Binary protobuf, `application/x-protobuf` (every OTLP receiver takes it)
    Protobuf,
    /// OTLP/JSON, `application/json`
    Json,
}

impl Encoding {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Whether a request body is compressed (`--otlp-compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Compression {
    /// gzip, `Content-Encoding: gzip`
    Gzip,
    /// As it is
    None,
}

/// What one LogRecord is made of: the event's bytes and the fields its attributes repeat.
#[derive(Clone, Debug, Default)]
pub(crate) struct Record<'a> {
    /// The event as `--format` encoded it, without its newline.
    pub(crate) body: &'a [u8],
    /// When the event happened; 0 when unknown.
    pub(crate) time_unix_nano: u64,
    /// The master that ran the job: the resource's `host.name`.
    pub(crate) master: Option<&'a str>,
    pub(crate) event_id: Option<&'a str>,
    pub(crate) event_type: Option<&'a str>,
    pub(crate) jid: Option<&'a str>,
    pub(crate) minion_id: Option<&'a str>,
    pub(crate) fun: Option<&'a str>,
    pub(crate) state_id: Option<&'a str>,
    pub(crate) result: Outcome,
    pub(crate) changed: Option<bool>,
}

/// The severity a state's `result` gives: ERROR for false, WARN for null (a test run's
/// pending change), INFO otherwise.
impl Outcome {
    fn severity(self) -> (SeverityNumber, &'static str) {
        match self {
            Outcome::Failed => (SeverityNumber::Error, "ERROR"),
            Outcome::Pending => (SeverityNumber::Warn, "WARN"),
            Outcome::Succeeded | Outcome::Unknown => (SeverityNumber::Info, "INFO"),
        }
    }

    fn as_bool(self) -> Option<bool> {
        match self {
            Outcome::Succeeded => Some(true),
            Outcome::Failed => Some(false),
            Outcome::Pending | Outcome::Unknown => None,
        }
    }
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.to_owned())),
    }
}

fn attribute(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..KeyValue::default()
    }
}

/// One LogRecord for `r`, observed (sent) at `observed`.
fn log_record(r: &Record<'_>, observed: u64) -> LogRecord {
    let (severity, text) = r.result.severity();
    let strings = [
        ("event_id", r.event_id),
        ("event_type", r.event_type),
        ("salt.jid", r.jid),
        ("salt.minion_id", r.minion_id),
        ("salt.fun", r.fun),
        ("salt.state_id", r.state_id),
    ];
    let mut attributes: Vec<KeyValue> = strings
        .iter()
        .filter_map(|(k, v)| v.map(|v| attribute(k, string(v))))
        .collect();
    let bools = [
        ("salt.result", r.result.as_bool()),
        ("salt.changed", r.changed),
    ];
    for (key, value) in bools {
        if let Some(b) = value {
            let value = AnyValue {
                value: Some(Value::BoolValue(b)),
            };
            attributes.push(attribute(key, value));
        }
    }
    LogRecord {
        time_unix_nano: r.time_unix_nano,
        observed_time_unix_nano: observed,
        severity_number: severity as i32,
        severity_text: text.to_owned(),
        body: Some(string(&String::from_utf8_lossy(r.body))),
        attributes,
        ..LogRecord::default()
    }
}

fn resource(master: Option<&str>) -> Resource {
    let mut attributes = vec![attribute("service.name", string("saltship"))];
    if let Some(master) = master {
        attributes.push(attribute("host.name", string(master)));
    }
    Resource {
        attributes,
        ..Resource::default()
    }
}

/// The request for `records`, observed at `observed` (ns since the epoch): one `ResourceLogs`
/// per run of records from the same master (in practice one per request).
pub(crate) fn request(records: &[Record<'_>], observed: u64) -> ExportLogsServiceRequest {
    let scope = InstrumentationScope {
        name: "saltship".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    };
    let mut resource_logs: Vec<ResourceLogs> = Vec::new();
    let mut last_master = None;
    for r in records {
        if resource_logs.is_empty() || last_master != Some(r.master) {
            last_master = Some(r.master);
            resource_logs.push(ResourceLogs {
                resource: Some(resource(r.master)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope.clone()),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            });
        }
        let logs = &mut resource_logs.last_mut().expect("pushed above").scope_logs[0];
        logs.log_records.push(log_record(r, observed));
    }
    ExportLogsServiceRequest { resource_logs }
}

/// The request's bytes, before any compression.
pub(crate) fn body(request: &ExportLogsServiceRequest, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => request.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(request).expect("OTLP messages serialize"),
    }
}

/// The bytes a request of `r` alone takes, before compression. An event's share of a request
/// of many is never more (they share one envelope), so batches cut by this stay within
/// `--max-request-bytes`, attributes and envelope included.
pub(crate) fn alone_len(r: &Record<'_>, encoding: Encoding) -> usize {
    // The largest observed time: its bytes are counted, as a real one's are.
    let request = request(std::slice::from_ref(r), u64::MAX);
    match encoding {
        Encoding::Protobuf => request.encoded_len(),
        Encoding::Json => {
            let mut n = Counter(0);
            serde_json::to_writer(&mut n, &request).expect("OTLP messages serialize");
            n.0
        }
    }
}

/// A writer that only counts.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `bytes` gzipped (`Content-Encoding: gzip`).
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(bytes.len() / 4 + 64);
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    gz.write_all(bytes).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample<'a>(body: &'a [u8], result: Outcome) -> Record<'a> {
        Record {
            body,
            time_unix_nano: 1_764_000_000_123_456_000,
            master: Some("saltmaster"),
            event_id: Some("e1"),
            event_type: Some("state"),
            jid: Some("20261123185750440911"),
            minion_id: Some("web1"),
            fun: Some("state.apply"),
            state_id: Some("nginx"),
            result,
            changed: Some(true),
        }
    }

    fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn resource_attr(rl: &ResourceLogs, key: &str) -> Option<String> {
        let attrs = &rl.resource.as_ref()?.attributes;
        match attrs
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()?
        {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    }

    #[test]
    fn a_request_is_never_larger_than_its_records_alone() {
        let event = br#"{"comment":"quote \" and \\ and \u00e9","changes":{}}"#;
        let records: Vec<Record<'_>> = (0..50)
            .map(|i| Record {
                changed: Some(i % 2 == 0),
                ..sample(event, Outcome::Succeeded)
            })
            .collect();
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let alone: usize = records.iter().map(|r| alone_len(r, encoding)).sum();
            let one = body(&request(&records[..1], now()), encoding).len();
            let all = body(&request(&records, now()), encoding).len();
            assert!(alone_len(&records[0], encoding) >= one, "{encoding:?}");
            assert!(all <= alone, "{encoding:?}: {all} > {alone}");
        }
    }

    fn now() -> u64 {
        1_765_000_000_000_000_000
    }

    #[test]
    fn a_protobuf_round_trip_keeps_every_field_of_each_record() {
        let event =
            br#"{"timestamp":"2026-11-24T16:00:00.123456Z","event_id":"e1","result":false}"#;
        let records = [
            sample(event, Outcome::Failed),
            sample(b"{}", Outcome::Pending),
        ];
        let bytes = body(&request(&records, 42), Encoding::Protobuf);
        let back = ExportLogsServiceRequest::decode(&bytes[..]).expect("decodes");
        assert_eq!(back.resource_logs.len(), 1);
        let rl = &back.resource_logs[0];
        assert_eq!(
            resource_attr(rl, "service.name").as_deref(),
            Some("saltship")
        );
        assert_eq!(
            resource_attr(rl, "host.name").as_deref(),
            Some("saltmaster")
        );
        let logs = &rl.scope_logs[0].log_records;
        assert_eq!(logs.len(), 2);
        let first = &logs[0];
        let body = first.body.as_ref().and_then(|b| b.value.as_ref());
        assert_eq!(
            body,
            Some(&Value::StringValue(String::from_utf8_lossy(event).into()))
        );
        assert_eq!(first.time_unix_nano, 1_764_000_000_123_456_000);
        assert_eq!(first.observed_time_unix_nano, 42);
        assert_eq!(first.severity_number, SeverityNumber::Error as i32);
        assert_eq!(first.severity_text, "ERROR");
        let s = |v: &str| Some(Value::StringValue(v.into()));
        assert_eq!(attr(first, "event_id").cloned(), s("e1"));
        assert_eq!(attr(first, "event_type").cloned(), s("state"));
        assert_eq!(attr(first, "salt.jid").cloned(), s("20261123185750440911"));
        assert_eq!(attr(first, "salt.minion_id").cloned(), s("web1"));
        assert_eq!(attr(first, "salt.fun").cloned(), s("state.apply"));
        assert_eq!(attr(first, "salt.state_id").cloned(), s("nginx"));
        assert_eq!(attr(first, "salt.result"), Some(&Value::BoolValue(false)));
        assert_eq!(attr(first, "salt.changed"), Some(&Value::BoolValue(true)));
        assert_eq!(logs[1].severity_number, SeverityNumber::Warn as i32);
        assert_eq!(logs[1].severity_text, "WARN");
        assert_eq!(attr(&logs[1], "salt.result"), None, "null is no bool");
    }

    #[test]
    fn severity_follows_the_result() {
        for (result, number, text) in [
            (Outcome::Failed, SeverityNumber::Error, "ERROR"),
            (Outcome::Pending, SeverityNumber::Warn, "WARN"),
            (Outcome::Succeeded, SeverityNumber::Info, "INFO"),
            (Outcome::Unknown, SeverityNumber::Info, "INFO"),
        ] {
            let r = log_record(&sample(b"{}", result), 0);
            assert_eq!(
                (r.severity_number, r.severity_text.as_str()),
                (number as i32, text)
            );
        }
    }

    #[test]
    fn absent_fields_make_no_attributes() {
        let bare = Record {
            body: b"{}",
            ..Record::default()
        };
        let req = request(&[bare], 7);
        let rl = &req.resource_logs[0];
        assert_eq!(resource_attr(rl, "host.name"), None);
        let r = &rl.scope_logs[0].log_records[0];
        assert!(r.attributes.is_empty(), "{:?}", r.attributes);
        assert_eq!((r.time_unix_nano, r.severity_text.as_str()), (0, "INFO"));
    }

    #[test]
    fn each_master_gets_its_resource() {
        let mut other = sample(b"{}", Outcome::Succeeded);
        other.master = Some("syndic2");
        let records = [
            sample(b"{}", Outcome::Succeeded),
            other,
            sample(b"{}", Outcome::Succeeded),
        ];
        let req = request(&records, 0);
        let hosts: Vec<_> = req
            .resource_logs
            .iter()
            .map(|rl| resource_attr(rl, "host.name").expect("host"))
            .collect();
        assert_eq!(hosts, ["saltmaster", "syndic2", "saltmaster"]);
    }

    #[test]
    fn json_is_otlp_json_with_times_as_strings() {
        let records = [sample(br#"{"a":"b"}"#, Outcome::Succeeded)];
        let bytes = body(&request(&records, 9), Encoding::Json);
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        let r = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(r["timeUnixNano"], "1764000000123456000");
        assert_eq!(r["observedTimeUnixNano"], "9");
        assert_eq!(r["severityNumber"], 9);
        assert_eq!(r["body"]["stringValue"], r#"{"a":"b"}"#);
        let attrs = r["attributes"].as_array().expect("attributes");
        assert!(attrs
            .iter()
            .any(|a| a["key"] == "salt.result" && a["value"]["boolValue"] == true));
        let back: ExportLogsServiceRequest = serde_json::from_slice(&bytes).expect("parses back");
        assert_eq!(back, request(&records, 9));
    }

    #[test]
    fn gzip_inflates_to_the_same_request() {
        let records = [sample(b"{}", Outcome::Succeeded)];
        let plain = body(&request(&records, 1), Encoding::Protobuf);
        let packed = gzip(&plain);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, plain);
    }
}
