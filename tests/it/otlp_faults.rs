//! `--sink otlp` against a small server inside the test that answers as the OTLP/HTTP
//! specification allows, for what Fluent Bit will not do on demand: a partial success with
//! rejected records, 503 with Retry-After, 400, 401, a redirect. The server decodes what it is
//! sent, so the log records' attributes, severity and resource are checked here too.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::http_server::{json, Answer, Request, Server};
use crate::common::{cache_copy, dry_run_ids, multiplied_cache, Run, Saltship};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{json as j, Value};

const TOKEN: &str = "s3cr3t-otlp-t0ken";

/// `backfill` of `jobs` to `url` with `--sink otlp`, a header file holding a token, `extra`.
fn ship(jobs: &Path, url: &str, extra: &[&str]) -> (Run, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let headers = dir.path().join("headers");
    crate::common::write_secret(&headers, format!("# the token\napi-key={TOKEN}\n"));
    let start = Instant::now();
    let run = Saltship::backfill(jobs)
        .sink("otlp")
        .target(url)
        .arg("--otlp-header-file")
        .arg(&headers)
        .more(extra)
        .run();
    (run, start.elapsed())
}

/// A protobuf answer.
fn proto(status: u16, reply: &impl Message) -> Answer {
    let body = String::from_utf8(reply.encode_to_vec()).expect("ASCII for these replies");
    let ct = vec![("Content-Type", "application/x-protobuf".to_owned())];
    Answer::Reply(status, ct, body)
}

fn ok() -> Answer {
    proto(200, &ExportLogsServiceResponse::default())
}

/// The log records of a protobuf request.
fn records(r: &Request) -> Vec<LogRecord> {
    let req = ExportLogsServiceRequest::decode(&r.body[..]).expect("protobuf request");
    req.resource_logs
        .into_iter()
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .collect()
}

fn attr(r: &LogRecord, key: &str) -> Option<Any> {
    r.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

fn body(r: &LogRecord) -> Value {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Any::StringValue(s)) => serde_json::from_str(s).expect("the body is the event"),
        other => panic!("body {other:?}"),
    }
}

/// The event ids of an OTLP/JSON request.
fn json_ids(r: &Request) -> Vec<String> {
    let req: Value = serde_json::from_slice(&r.body).expect("OTLP/JSON request");
    let each = |v: &Value, k: &str| v[k].as_array().cloned().unwrap_or_default();
    each(&req, "resourceLogs")
        .iter()
        .flat_map(|rl| each(rl, "scopeLogs"))
        .flat_map(|sl| each(&sl, "logRecords"))
        .map(|lr| {
            let event: Value =
                serde_json::from_str(lr["body"]["stringValue"].as_str().expect("body"))
                    .expect("the body is the event");
            event["event_id"].as_str().expect("id").to_owned()
        })
        .collect()
}

/// `sync` of `jobs` to `url`, recording into `state`.
fn sync(jobs: &Path, state: &Path, url: &str) -> Run {
    Saltship::sync(jobs)
        .sink("otlp")
        .target(url)
        .state_file(state)
        .more(["--deliver-timeout", "20s"])
        .run()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn ids(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .flat_map(records)
        .map(|r| body(&r)["event_id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn each_event_is_one_log_record_with_its_attributes_and_the_token_header() {
    let (_tmp, jobs) = cache_copy("jobs");
    let server = Server::start(|_, _| ok(), |_| false);
    let (run, _) = ship(&jobs, &server.url(), &["-vv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains(TOKEN), "{}", run.stderr);
    assert!(
        run.stderr.contains("api-key"),
        "the name shows at -vv: {}",
        run.stderr
    );
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.path == "/v1/logs"));
    assert!(requests.iter().all(|r| r.header("api-key") == Some(TOKEN)));
    let want: Vec<String> = dry_run_ids(&jobs);
    let mut got = ids(&requests);
    got.sort();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    let req = ExportLogsServiceRequest::decode(&requests[0].body[..]).expect("protobuf");
    let resource = req.resource_logs[0].resource.clone().expect("resource");
    let host = resource.attributes.iter().find(|kv| kv.key == "host.name");
    let host = host.and_then(|kv| kv.value.clone()?.value);
    assert_eq!(host, Some(Any::StringValue("testmaster".into())));
    for r in requests.iter().flat_map(records) {
        let event = body(&r);
        let s = |k: &str| event[k].as_str().map(|v| Any::StringValue(v.into()));
        assert_eq!(attr(&r, "event_id"), s("event_id"));
        assert_eq!(attr(&r, "salt.jid"), s("jid"));
        assert_eq!(attr(&r, "salt.minion_id"), s("minion_id"));
        assert_eq!(attr(&r, "salt.fun"), s("fun"));
        assert_eq!(attr(&r, "salt.state_id"), s("state_id"));
        assert_eq!(
            attr(&r, "salt.result"),
            event["result"].as_bool().map(Any::BoolValue)
        );
        assert_eq!(
            attr(&r, "salt.changed"),
            event["changed"].as_bool().map(Any::BoolValue)
        );
        let severity = match event["result"] {
            Value::Bool(false) => "ERROR",
            Value::Null => "WARN",
            _ => "INFO",
        };
        assert_eq!(r.severity_text, severity, "{event}");
        let time = chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().expect("ts"))
            .expect("RFC 3339");
        assert_eq!(
            r.time_unix_nano as i64,
            time.timestamp_nanos_opt().expect("ns")
        );
        assert!(r.observed_time_unix_nano >= r.time_unix_nano);
    }
}

#[test]
fn rejected_records_are_counted_and_reported_once_and_not_sent_again() {
    let (_tmp, jobs) = cache_copy("jobs");
    let server = Server::start(
        |_, i| match i {
            0 => proto(
                200,
                &ExportLogsServiceResponse {
                    partial_success: Some(ExportLogsPartialSuccess {
                        rejected_log_records: 2,
                        error_message: "two records too old".into(),
                    }),
                },
            ),
            _ => ok(),
        },
        |_| false,
    );
    let (run, _) = ship(&jobs, &server.url(), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let warned: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("two records too old"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", run.stderr);
    assert!(warned[0].contains("2 of "), "{}", warned[0]);
    assert!(
        run.stderr.contains("2 events rejected by the receiver"),
        "{}",
        run.stderr
    );
    // The rest counts as stored: every event was sent exactly once.
    let want: Vec<String> = dry_run_ids(&jobs);
    assert_eq!(ids(&server.requests()).len(), want.len(), "{}", run.stderr);
}

#[test]
fn a_503_is_retried_after_its_retry_after_and_then_everything_arrives() {
    let (_tmp, jobs) = cache_copy("jobs");
    let server = Server::start(
        |_, i| match i {
            0 => Answer::Reply(503, vec![("Retry-After", "1".to_owned())], "busy".into()),
            _ => ok(),
        },
        |_| false,
    );
    let (run, _) = ship(&jobs, &server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = server.requests();
    assert!(requests.len() >= 2);
    let pause = requests[1].at - requests[0].at;
    assert!(pause >= Duration::from_millis(900), "{pause:?}");
    let got: HashMap<String, usize> =
        ids(&requests[1..])
            .into_iter()
            .fold(HashMap::new(), |mut m, id| {
                *m.entry(id).or_insert(0) += 1;
                m
            });
    let want: Vec<String> = dry_run_ids(&jobs);
    assert_eq!(got.len(), want.len(), "{}", run.stderr);
    assert!(got.values().all(|n| *n == 1), "the retry sent no duplicate");
}

type Headers = Vec<(&'static str, String)>;

/// 400 (the receiver cannot read it), 401 (a bad token) and a redirect stop the run at once:
/// exit 3 with one line, nothing recorded, the token never shown.
#[test]
fn refusals_and_redirects_stop_at_once_with_one_line() {
    let (_tmp, jobs) = cache_copy("jobs");
    let elsewhere = Server::start(|_, _| ok(), |_| false);
    let to = format!("{}/v1/logs", elsewhere.url());
    let cases: [(u16, Headers, &str); 3] = [
        (400, vec![], "HTTP 400: bad payload"),
        (401, vec![], "HTTP 401: bad payload"),
        (301, vec![("Location", to.clone())], to.as_str()),
    ];
    for (status, headers, says) in cases {
        let server = Server::start(
            move |_, _| Answer::Reply(status, headers.clone(), "bad payload".into()),
            |_| false,
        );
        let (run, took) = ship(&jobs, &server.url(), &["--deliver-timeout", "60s"]);
        assert_eq!(run.code, 3, "{status}: {}", run.stderr);
        assert!(took < Duration::from_secs(20), "{status}: waited {took:?}");
        let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains(says)).collect();
        assert_eq!(errors.len(), 1, "{status}: {}", run.stderr);
        assert!(!run.stderr.contains(TOKEN));
        assert_eq!(
            server.requests().len(),
            1,
            "{status}: sent once, not retried"
        );
    }
    assert!(elsewhere.requests().is_empty(), "the redirect was followed");
}

#[test]
fn a_2xx_of_another_type_records_nothing_and_a_good_receiver_then_stores_everything() {
    let (tmp, jobs) = cache_copy("jobs");
    let want = sorted(dry_run_ids(&jobs));
    let state = tmp.path().join("state");
    // "Accepted\n" parses as protobuf: only its Content-Type says it is a proxy's answer.
    let text = vec![("Content-Type", "text/plain".to_owned())];
    let proxy = Server::start(
        move |_, _| Answer::Reply(200, text.clone(), "Accepted\n".into()),
        |_| false,
    );
    let run = sync(&jobs, &state, &proxy.url());
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("not an OTLP acknowledgement"),
        "{}",
        run.stderr
    );
    let good = Server::start(|_, _| ok(), |_| false);
    let run = sync(&jobs, &state, &good.url());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(sorted(ids(&good.requests())), want, "nothing was recorded");
}

#[test]
fn a_partial_success_in_protojsons_original_names_is_counted_as_rejected() {
    let (_tmp, jobs) = cache_copy("jobs");
    let n = dry_run_ids::<Vec<String>>(&jobs).len();
    let server = Server::start(
        |r, _| {
            let rejected = records(r).len();
            let reply = j!({"partial_success": {"rejected_log_records": rejected, "error_message": "over quota"}});
            json(200, reply)
        },
        |_| false,
    );
    let (run, _) = ship(&jobs, &server.url(), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("over quota"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{n} events rejected by the receiver")),
        "{}",
        run.stderr
    );
}

#[test]
fn every_body_stays_within_max_request_bytes_and_a_413_halves_down_to_one_event() {
    let (_tmp, jobs) = multiplied_cache(3);
    let want = sorted(dry_run_ids(&jobs));
    for encoding in ["protobuf", "json"] {
        let server = Server::start(|_, _| ok(), |_| false);
        let cap = ["--max-request-bytes", "20000", "--otlp-encoding", encoding];
        let (run, _) = ship(&jobs, &server.url(), &cap);
        assert_eq!(run.code, 0, "{encoding}: {}", run.stderr);
        let requests = server.requests();
        let most = requests.iter().map(|r| r.body.len()).max().unwrap_or(0);
        assert!(most <= 20000, "{encoding}: a body of {most} bytes");
        let got = match encoding {
            "json" => requests.iter().flat_map(json_ids).collect(),
            _ => ids(&requests),
        };
        assert_eq!(sorted(got), want, "{encoding}");
    }
    // A proxy that takes 30000 bytes at most: the batch is halved until it passes.
    let server = Server::start(
        |r, _| match r.body.len() > 30000 {
            true => Answer::Reply(413, vec![], "Request Entity Too Large".into()),
            false => ok(),
        },
        |_| false,
    );
    let (run, _) = ship(&jobs, &server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let taken: Vec<Request> = server
        .requests()
        .into_iter()
        .filter(|r| r.body.len() <= 30000)
        .collect();
    assert_eq!(sorted(ids(&taken)), want);
}
