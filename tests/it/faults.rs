//! One table of reply shapes, run against each acknowledged sink's fake receiver: after a run
//! against the fault, what the checkpoint records must be a subset of what the receiver stored,
//! and a second run against a good receiver must store the rest. The table is in
//! docs/testing.md; a new sink is done when it passes every row that applies to it.
//!
//! The fake receivers store an event only when their reply is a true acknowledgement for
//! that sink (`stored`): a redirect, an error inside a 200, a body of the wrong type, a 413
//! and a cut reply store nothing; an `_bulk` reply with fewer items stores those it lists.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::http_server::{json, Answer, Request, Server, TOKEN};
use crate::common::relp_fault::{Act, FaultServer};
use crate::common::{cache_copy, dry_run_ids, Saltship};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use serde_json::{json as j, Value};

/// A reply shape a receiver may give.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// 301 to another URL, on every request.
    Redirect,
    /// 200 whose body says the batch failed (HEC `code` 9, `_bulk` items of 500).
    ErrorInside200,
    /// 200 `text/plain` "Accepted", on every request.
    WrongType,
    /// `_bulk`: a reply listing only the first half of the items.
    FewerItems,
    /// 413 for a body over 20,000 bytes.
    TooLargeOver20k,
    /// The first reply cut: the connection closed after the request was read.
    CutMidReply,
}

const HTTP_SHAPES: [Shape; 6] = [
    Shape::Redirect,
    Shape::ErrorInside200,
    Shape::WrongType,
    Shape::FewerItems,
    Shape::TooLargeOver20k,
    Shape::CutMidReply,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Http {
    Hec,
    Bulk,
    Otlp,
}

impl Http {
    fn sink(self) -> &'static str {
        match self {
            Http::Hec => "splunk-hec",
            Http::Bulk => "elasticsearch",
            Http::Otlp => "otlp",
        }
    }

    fn applies(self, shape: Shape) -> bool {
        match shape {
            Shape::ErrorInside200 => self != Http::Otlp, // OTLP's is a rejection, counted
            Shape::FewerItems => self == Http::Bulk,
            _ => true,
        }
    }

    fn ids(self, r: &Request) -> Vec<String> {
        match self {
            Http::Hec => r.hec_ids(),
            Http::Bulk => r.bulk_ids(),
            Http::Otlp => ExportLogsServiceRequest::decode(&r.body[..])
                .expect("protobuf")
                .resource_logs
                .into_iter()
                .flat_map(|rl| rl.scope_logs)
                .flat_map(|sl| sl.log_records)
                .map(|lr| match lr.body.and_then(|b| b.value) {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => {
                        let e: Value = serde_json::from_str(&s).expect("event");
                        e["event_id"].as_str().expect("id").to_owned()
                    }
                    other => panic!("body {other:?}"),
                })
                .collect(),
        }
    }

    /// The good reply to `r`, whose events are `ids`, listing the first `listed` of them.
    fn good(self, ids: &[String], listed: usize) -> Answer {
        match self {
            Http::Hec => json(200, j!({"text": "Success", "code": 0})),
            Http::Bulk => {
                let items: Vec<Value> = ids[..listed]
                    .iter()
                    .map(|id| j!({"create": {"_id": id, "status": 201}}))
                    .collect();
                json(200, j!({"took": 1, "errors": false, "items": items}))
            }
            Http::Otlp => {
                let body = ExportLogsServiceResponse::default().encode_to_vec();
                let ct = vec![("Content-Type", "application/x-protobuf".to_owned())];
                Answer::Reply(200, ct, String::from_utf8(body).expect("empty"))
            }
        }
    }

    /// The receiver's answer to request `i` in `shape`, and the ids it stored.
    fn answer(self, shape: Shape, r: &Request, i: usize) -> (Answer, Vec<String>) {
        let ids = self.ids(r);
        let none = Vec::new();
        match shape {
            Shape::Redirect => {
                let to = vec![("Location", "http://127.0.0.1:9/elsewhere".to_owned())];
                (Answer::Reply(301, to, String::new()), none)
            }
            Shape::ErrorInside200 => match self {
                Http::Bulk => {
                    let items: Vec<Value> = ids
                        .iter()
                        .map(|id| j!({"create": {"_id": id, "status": 503}}))
                        .collect();
                    (json(200, j!({"errors": true, "items": items})), none)
                }
                _ => (json(200, j!({"text": "Server is busy", "code": 9})), none),
            },
            Shape::WrongType => {
                let ct = vec![("Content-Type", "text/plain".to_owned())];
                (Answer::Reply(200, ct, "Accepted\n".into()), none)
            }
            Shape::FewerItems => {
                let half = ids.len() / 2;
                (self.good(&ids, half), ids[..half].to_vec())
            }
            Shape::TooLargeOver20k if r.body.len() > 20_000 => {
                (Answer::Reply(413, vec![], "Too Large".into()), none)
            }
            Shape::CutMidReply if i == 0 => (Answer::Cut, none),
            _ => (self.good(&ids, ids.len()), ids),
        }
    }
}

/// A receiver answering every request as `answer` says, keeping the ids it stored.
fn receiver(
    answer: impl Fn(&Request, usize) -> (Answer, Vec<String>) + Send + Sync + 'static,
) -> (Server, Arc<Mutex<HashSet<String>>>) {
    let stored = Arc::new(Mutex::new(HashSet::new()));
    let s = stored.clone();
    let server = Server::start(
        move |r, i| {
            let (reply, ids) = answer(r, i);
            s.lock().expect("stored").extend(ids);
            reply
        },
        |_| false,
    );
    (server, stored)
}

/// `sync` to `target` recording into `state`; its exit code and stderr.
fn sync(jobs: &Path, state: &Path, sink: &str, target: &str) -> (i32, String) {
    let token = state.with_extension("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    let mut cmd = Saltship::sync(jobs)
        .sink(sink)
        .target(target)
        .state_file(state)
        .more(["--deliver-timeout", "3s"]);
    if sink == "splunk-hec" {
        cmd = cmd.arg("--hec-token-file").arg(&token);
    }
    let run = cmd.run();
    (run.code, run.stderr)
}

/// The invariant after a faulty run, then the second run against `good`.
fn assert_subset_then_rest(
    what: &str,
    jobs: &Path,
    state: &Path,
    stored: &HashSet<String>,
    second: impl FnOnce() -> HashSet<String>,
) {
    let want: HashSet<String> = dry_run_ids(jobs);
    let left: HashSet<String> = Saltship::sync(jobs)
        .state_file(state)
        .arg("--dry-run")
        .run()
        .ids();
    let recorded: HashSet<&String> = want.difference(&left).collect();
    let unstored: Vec<&&String> = recorded
        .iter()
        .filter(|id| !stored.contains(**id))
        .collect();
    assert!(
        unstored.is_empty(),
        "{what}: {} events recorded that the receiver never stored, e.g. {:?}",
        unstored.len(),
        unstored.first()
    );
    let all: HashSet<String> = second().union(stored).cloned().collect();
    assert!(
        all.is_superset(&want),
        "{what}: the second run left events unstored"
    );
}

#[test]
fn every_http_sink_records_only_what_its_receiver_stored_for_every_reply_shape() {
    for sink in [Http::Hec, Http::Bulk, Http::Otlp] {
        for shape in HTTP_SHAPES.into_iter().filter(|s| sink.applies(*s)) {
            let what = format!("{} / {shape:?}", sink.sink());
            let (tmp, jobs) = cache_copy("jobs");
            let state = tmp.path().join("state");
            let (bad, stored) = receiver(move |r, i| sink.answer(shape, r, i));
            let (code, stderr) = sync(&jobs, &state, sink.sink(), &bad.url());
            assert_ne!(code, 2, "{what}: {stderr}");
            let stored = stored.lock().expect("stored").clone();
            assert_subset_then_rest(&what, &jobs, &state, &stored, || {
                let (good, again) = receiver(move |r, _| {
                    let ids = sink.ids(r);
                    (sink.good(&ids, ids.len()), ids)
                });
                let (code, stderr) = sync(&jobs, &state, sink.sink(), &good.url());
                assert_eq!(code, 0, "{what}, second run: {stderr}");
                let again = again.lock().expect("stored").clone();
                again
            });
        }
    }
}

/// RELP's rows: a refused frame (500, then a close), `serverclose` mid-window, one event
/// always refused, and a receiver that dies after answering (holds every frame after 40).
#[test]
fn relp_records_only_what_its_receiver_stored_for_every_reply_shape() {
    let (_tmp, jobs) = cache_copy("jobs");
    let want: Vec<String> = dry_run_ids(&jobs);
    let always = want[5].clone();
    type ActFn = Box<dyn Fn(usize, usize, &str) -> Act + Send>;
    let rows: Vec<(&str, ActFn)> = vec![
        (
            "a 500 mid-run",
            Box::new(|s, i, _| match (s, i) {
                (0, 3) => Act::AnswerAndClose("500 test"),
                _ => Act::Ok,
            }),
        ),
        (
            "serverclose mid-window",
            Box::new(|s, i, _| match (s, i) {
                (0, 10..) => Act::ServerClose,
                _ => Act::Ok,
            }),
        ),
        (
            "one event always refused",
            Box::new(move |_, _, id| match id == always {
                true => Act::AnswerAndClose("500 never"),
                false => Act::Ok,
            }),
        ),
        (
            "dies after answering",
            Box::new(|_, i, _| match i < 40 {
                true => Act::Ok,
                false => Act::Hold,
            }),
        ),
    ];
    for (what, act) in rows {
        let (tmp, jobs) = cache_copy("jobs");
        let state = tmp.path().join("state");
        let bad = FaultServer::by_event(act);
        let (code, stderr) = sync(&jobs, &state, "relp", &bad.target());
        assert_ne!(code, 2, "{what}: {stderr}");
        let stored: HashSet<String> = bad.stored.lock().unwrap().iter().cloned().collect();
        let rejected = what == "one event always refused";
        let stored_or_rejected = match rejected {
            true => stored.iter().cloned().chain([want[5].clone()]).collect(),
            false => stored.clone(),
        };
        assert_subset_then_rest(what, &jobs, &state, &stored_or_rejected, || {
            let good = FaultServer::start(|_, _| Act::Ok);
            let (code, stderr) = sync(&jobs, &state, "relp", &good.target());
            assert_eq!(code, 0, "{what}, second run: {stderr}");
            let again: HashSet<String> = good.stored.lock().unwrap().iter().cloned().collect();
            again
        });
    }
}
