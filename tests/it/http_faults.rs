//! The HTTP sinks against small servers inside the test that answer as Splunk's HEC and
//! Elasticsearch's `_bulk` document it, for what Fluent Bit does not do: indexer
//! acknowledgement, 409 on a resend, item-level 429, 401, 503 with Retry-After, a connection
//! cut mid-body.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::http_server::{self, json, Answer, Request, Server, TOKEN};
use crate::common::{cache_copy, dry_run_ids, multiplied_cache, Run, Saltship};
use serde_json::{json as j, Value};

/// `backfill` to `url` with its own checkpoint and a long linger: one batch per cache,
/// however slowly this build encodes (the tests count requests).
fn ship(jobs: &Path, sink: &str, url: &str, extra: &[&str]) -> (Run, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let linger = [&["--linger", "60s"], extra].concat();
    http_server::ship(jobs, &dir.path().join("state"), sink, url, &linger)
}

fn counts(ids: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for id in ids {
        *c.entry(id).or_insert(0) += 1;
    }
    c
}

/// A HEC that gives every batch an ackId and says how each poll answers: `acked(id, polls of
/// it so far)`.
fn hec_with_acks(acked: impl Fn(u64, usize) -> bool + Send + Sync + 'static) -> Server {
    let next = AtomicU64::new(0);
    let polls: Mutex<HashMap<u64, usize>> = Mutex::new(HashMap::new());
    Server::start(
        move |r, _| {
            if r.path.ends_with("/ack") {
                let body: Value = serde_json::from_slice(&r.body).expect("ack JSON");
                let mut polls = polls.lock().expect("polls");
                let acks: serde_json::Map<String, Value> = body["acks"]
                    .as_array()
                    .expect("acks")
                    .iter()
                    .map(|id| {
                        let id = id.as_u64().expect("id");
                        let n = polls.entry(id).or_insert(0);
                        *n += 1;
                        (id.to_string(), Value::Bool(acked(id, *n)))
                    })
                    .collect();
                json(200, j!({ "acks": acks }))
            } else {
                let id = next.fetch_add(1, Ordering::SeqCst);
                json(200, j!({"text": "Success", "code": 0, "ackId": id}))
            }
        },
        |_| false,
    )
}

#[test]
fn hec_counts_a_batch_only_once_its_ack_turns_true() {
    let (_tmp, jobs) = cache_copy("jobs");
    let want: Vec<String> = dry_run_ids(&jobs);
    // Every ackId is false at its first poll, true at the second.
    let server = hec_with_acks(|_, polls| polls >= 2);
    let (run, _) = ship(&jobs, "splunk-hec", &server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events = server.to("/services/collector/event");
    let sent = counts(events.iter().flat_map(Request::hec_ids));
    assert_eq!(sent.len(), want.len());
    assert!(sent.values().all(|n| *n == 1), "resent: {}", run.stderr);
    assert!(server.to("/services/collector/ack").len() >= 2);
    // The channel and the token went with every request; the envelope is HEC's.
    for r in &events {
        assert!(r
            .header("X-Splunk-Request-Channel")
            .is_some_and(|c| c.len() == 36));
        assert_eq!(r.header("Authorization"), Some(&*format!("Splunk {TOKEN}")));
        let first = &r.json_lines()[0];
        assert_eq!(first["sourcetype"], "salt:state");
        assert_eq!(first["source"], "saltship:testmaster");
        assert!(first["time"].is_f64() && first["host"].is_string());
    }
}

#[test]
fn hec_resends_only_the_batch_whose_ack_never_comes() {
    let (_tmp, jobs) = multiplied_cache(20);
    let want: Vec<String> = dry_run_ids(&jobs);
    // ackId 0 is never acknowledged; every other at once.
    let server = hec_with_acks(|id, _| id != 0);
    let (run, _) = ship(
        &jobs,
        "splunk-hec",
        &server.url(),
        &["--deliver-timeout", "6s"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events = server.to("/services/collector/event");
    assert!(events.len() >= 3, "{} batches only", events.len());
    let first: HashSet<String> = events[0].hec_ids().into_iter().collect();
    let sent = counts(events.iter().flat_map(Request::hec_ids));
    assert_eq!(sent.len(), want.len());
    for (id, n) in &sent {
        let expect = if first.contains(id) { 2 } else { 1 };
        assert_eq!(*n, expect, "{id}: {}", run.stderr);
    }
}

#[test]
fn hec_bad_token_exits_3_at_once_with_one_line_and_no_token() {
    let (_tmp, jobs) = cache_copy("jobs");
    let server = Server::start(
        |_, _| json(401, j!({"text": "Invalid authorization", "code": 3})),
        |_| false,
    );
    let (run, took) = ship(
        &jobs,
        "splunk-hec",
        &server.url(),
        &["--deliver-timeout", "60s", "-vv"],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(took < Duration::from_secs(20), "{took:?}");
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(errors[0].contains("HTTP 401"), "{}", run.stderr);
    assert!(!run.stderr.contains(TOKEN), "token logged: {}", run.stderr);
    assert_eq!(server.to("/event").len(), 1);
}

#[test]
fn hec_503_waits_for_retry_after() {
    let (_tmp, jobs) = cache_copy("jobs");
    let server = Server::start(
        |_, i| match i {
            0 => Answer::Reply(
                503,
                vec![("Retry-After", "2".into())],
                j!({"text": "Server is busy", "code": 9}).to_string(),
            ),
            _ => json(200, j!({"text": "Success", "code": 0})),
        },
        |_| false,
    );
    let (run, _) = ship(&jobs, "splunk-hec", &server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = server.requests();
    assert_eq!(r.len(), 2, "{}", run.stderr);
    assert!(r[1].at - r[0].at >= Duration::from_millis(1900));
    assert_eq!(
        r[1].hec_ids().len(),
        dry_run_ids::<Vec<String>>(&jobs).len()
    );
}

#[test]
fn hec_connection_cut_mid_body_is_sent_again() {
    let (_tmp, jobs) = cache_copy("jobs");
    let server = Server::start(
        |_, _| json(200, j!({"text": "Success", "code": 0})),
        |i| i == 0,
    );
    let (run, _) = ship(&jobs, "splunk-hec", &server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = server.requests();
    assert_eq!(r.len(), 2, "{}", run.stderr);
    let got: HashSet<String> = r[1].hec_ids().into_iter().collect();
    assert_eq!(got, dry_run_ids::<HashSet<String>>(&jobs));
}

/// An Elasticsearch that stores documents by `_id`: a second `create` of an id is a 409. Its
/// reply to request `i` is cut when `cut_reply(i)`; `item(i, n)` may override item n's status.
fn elastic(
    cut_reply: impl Fn(usize) -> bool + Send + Sync + 'static,
    item: impl Fn(usize, usize) -> Option<u16> + Send + Sync + 'static,
) -> (Server, Arc<Mutex<HashMap<String, usize>>>) {
    elastic_said(cut_reply, item, true)
}

/// [`elastic`], whose replies say `"errors": false` whatever their items say when not `honest`.
fn elastic_said(
    cut_reply: impl Fn(usize) -> bool + Send + Sync + 'static,
    item: impl Fn(usize, usize) -> Option<u16> + Send + Sync + 'static,
    honest: bool,
) -> (Server, Arc<Mutex<HashMap<String, usize>>>) {
    let stored = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let s = stored.clone();
    let server = Server::start(
        move |r, i| {
            let mut stored = s.lock().expect("stored");
            let items: Vec<Value> = r.bulk_ids()
                .into_iter()
                .enumerate()
                .map(|(n, id)| {
                    let status = item(i, n).unwrap_or_else(|| {
                        if stored.contains_key(&id) {
                            409
                        } else {
                            201
                        }
                    });
                    if status == 201 {
                        stored.insert(id.clone(), 1);
                    }
                    let mut it = j!({"_id": id, "status": status});
                    if status == 400 {
                        it["error"] = j!({"type": "mapper_parsing_exception", "reason": "failed to parse field [salt.changes]"});
                    } else if status == 409 {
                        it["error"] = j!({"type": "version_conflict_engine_exception", "reason": "document already exists"});
                    } else if status == 429 {
                        it["error"] = j!({"type": "es_rejected_execution_exception", "reason": "queue full"});
                    }
                    // 0: an item without its action, so without a status.
                    if status == 0 { j!({}) } else { j!({ "create": it }) }
                })
                .collect();
            if cut_reply(i) {
                return Answer::Cut;
            }
            let errors = honest && items.iter().any(|i| i["create"]["status"] != 201);
            json(200, j!({"took": 1, "errors": errors, "items": items}))
        },
        |_| false,
    );
    (server, stored)
}

#[test]
fn elasticsearch_resend_after_a_lost_reply_is_a_409_and_one_copy() {
    let (_tmp, jobs) = cache_copy("jobs");
    let want: Vec<String> = dry_run_ids(&jobs);
    // The first request is stored, but its reply is lost.
    let (server, stored) = elastic(|i| i == 0, |_, _| None);
    let (run, _) = ship(&jobs, "elasticsearch", &server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = server.to("/_bulk");
    assert_eq!(r.len(), 2, "{}", run.stderr);
    assert_eq!(r[1].bulk_ids().len(), want.len());
    let stored = stored.lock().expect("stored");
    assert_eq!(stored.len(), want.len());
    assert!(want.iter().all(|id| stored.contains_key(id)));
    // ECS by default, into the default data stream.
    let lines = r[0].json_lines();
    assert_eq!(lines[0]["create"]["_index"], "logs-salt.state-default");
    assert!(lines[1]["@timestamp"].is_string());
}

#[test]
fn elasticsearch_item_429_is_retried_without_the_rest() {
    let (_tmp, jobs) = cache_copy("jobs");
    let want: Vec<String> = dry_run_ids(&jobs);
    let (server, stored) = elastic(|_| false, |i, n| (i == 0 && n == 3).then_some(429));
    let (run, _) = ship(&jobs, "elasticsearch", &server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = server.to("/_bulk");
    assert_eq!(r.len(), 2, "{}", run.stderr);
    assert_eq!(r[1].bulk_ids(), [r[0].bulk_ids()[3].clone()]);
    assert_eq!(stored.lock().expect("stored").len(), want.len());
}

#[test]
fn elasticsearch_an_item_without_its_status_is_sent_again_even_without_errors() {
    let (_tmp, jobs) = cache_copy("jobs");
    let want: Vec<String> = dry_run_ids(&jobs);
    // Item 2 of the first reply is `{}`, and that reply says `"errors": false`.
    let (server, stored) = elastic_said(|_| false, |i, n| (i == 0 && n == 2).then_some(0), false);
    let (run, _) = ship(&jobs, "elasticsearch", &server.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = server.to("/_bulk");
    assert_eq!(r.len(), 2, "{}", run.stderr);
    assert_eq!(r[1].bulk_ids(), [r[0].bulk_ids()[2].clone()]);
    assert_eq!(stored.lock().expect("stored").len(), want.len());
}

#[test]
fn elasticsearch_mapping_error_is_reported_once_and_counted() {
    let (_tmp, jobs) = cache_copy("jobs");
    let (server, _) = elastic(|_| false, |i, n| (i == 0 && n == 5).then_some(400));
    let (run, _) = ship(&jobs, "elasticsearch", &server.url(), &[]);
    // Finished, with a problem to look at: as for a corrupt file.
    assert_eq!(run.code, 1, "{}", run.stderr);
    let bad = server.to("/_bulk")[0].bulk_ids()[5].clone();
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(&bad)).collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains("mapper_parsing_exception"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("1 events rejected by the receiver"),
        "{}",
        run.stderr
    );
    assert_eq!(server.to("/_bulk").len(), 1, "rejected event resent");
}

/// A keep-alive connection idle for five seconds is closed by saltship, before a server's idle
/// timeout would cut it (Fluent Bit logs an error at 10 s), and the next request comes on a
/// new connection.
#[test]
fn an_idle_http_connection_is_closed_after_five_seconds() {
    let (tmp, jobs) = cache_copy("jobs");
    let (server, stored) = elastic(|_| false, |_, _| None);
    let log = tmp.path().join("watch.log");
    let child = Saltship::watch(&jobs)
        .sink("elasticsearch")
        .target(&server.url())
        .state_file(&tmp.path().join("state"))
        .more(["--rescan-interval", "300s"])
        .spawn(std::fs::File::create(&log).expect("log"));
    let watch = crate::common::watch::Watch::spawned(child, log);
    let all: HashSet<String> = dry_run_ids(&jobs);
    let until = |what: &str, within: Duration, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(Instant::now() < deadline, "{what}: {}", watch.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    until("catch-up", Duration::from_secs(20), &|| {
        stored.lock().expect("stored").len() == all.len()
    });
    let last = server.requests().last().cloned().expect("a request");
    until("the idle close", Duration::from_secs(12), &|| {
        server
            .closed
            .lock()
            .expect("closed")
            .iter()
            .any(|(c, _)| *c == last.conn)
    });
    let closed = server.closed.lock().expect("closed").clone();
    let (_, at) = closed
        .iter()
        .find(|(c, _)| *c == last.conn)
        .expect("closed");
    let idle = at.duration_since(last.at);
    assert!(
        idle >= Duration::from_secs(4) && idle <= Duration::from_secs(8),
        "closed after {idle:?} idle"
    );
    let used: HashSet<usize> = server.requests().iter().map(|r| r.conn).collect();
    assert!(
        used.iter().all(|c| closed.iter().any(|(d, _)| d == c)),
        "{closed:?}"
    );
    crate::common::watch::land_job(
        &jobs,
        &crate::common::watch::source_job("failures"),
        "20990101000000000043",
        Duration::from_millis(30),
    );
    let more: HashSet<String> = dry_run_ids(&jobs);
    until("the new job", Duration::from_secs(10), &|| {
        stored.lock().expect("stored").len() == more.len()
    });
    let after = server.requests().last().cloned().expect("a request");
    assert!(
        !used.contains(&after.conn),
        "an idle connection was used again"
    );
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
}
