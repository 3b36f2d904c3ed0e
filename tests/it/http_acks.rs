//! What counts as an acknowledgement over HTTP, against servers inside the test that answer
//! in the shapes that once recorded events no receiver stored (issue 20): a redirect, a HEC
//! `code` other than 0, a `_bulk` reply with fewer items than actions, and a body too large
//! for a proxy (413 above 1 MiB, as nginx's default `client_max_body_size 1m`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::http_server::{json, ship, Answer, Request, Server};
use crate::common::{cache_copy, dry_run_ids, multiplied_cache};
use serde_json::{json as j, Value};

/// nginx's default `client_max_body_size`.
const NGINX_MAX: usize = 1 << 20;

/// A HEC that stores every request and answers `{"code":0}`: the second run's receiver.
fn good_hec() -> Server {
    Server::start(
        |_, _| json(200, j!({"text": "Success", "code": 0})),
        |_| false,
    )
}

/// After a run that must have recorded nothing, a run to a good HEC ships every event.
fn nothing_was_recorded(jobs: &Path, state: &Path) {
    let good = good_hec();
    let (run, _) = ship(jobs, state, "splunk-hec", &good.url(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got: HashSet<String> = good.requests().iter().flat_map(Request::hec_ids).collect();
    assert_eq!(
        got,
        dry_run_ids::<HashSet<String>>(jobs),
        "recorded unstored"
    );
}

#[test]
fn hec_redirect_is_not_followed_and_not_an_acknowledgement() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    for status in [301, 302, 307, 308] {
        // The redirect points at the same server, which answers anything else as stored.
        let server = Server::start(
            move |r, _| match r.path.as_str() {
                "/services/collector/event" => Answer::Reply(
                    status,
                    vec![("Location", "/moved/services/collector/event".into())],
                    String::new(),
                ),
                _ => json(200, j!({"text": "Success", "code": 0})),
            },
            |_| false,
        );
        let (run, took) = ship(&jobs, &state, "splunk-hec", &server.url(), &["-v"]);
        assert_eq!(run.code, 3, "{status}: {}", run.stderr);
        assert!(took < Duration::from_secs(20), "{took:?}");
        assert!(
            run.stderr.contains(&format!("HTTP {status}"))
                && run.stderr.contains("/moved/services/collector/event"),
            "{}",
            run.stderr
        );
        let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
        assert!(paths.iter().all(|p| !p.starts_with("/moved")), "{paths:?}");
    }
    nothing_was_recorded(&jobs, &state);
}

#[test]
fn hec_code_other_than_0_in_a_200_is_a_fault() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    // A permanent one (the channel): the run stops at once.
    let server = Server::start(
        |_, _| json(200, j!({"text": "Data channel is missing", "code": 10})),
        |_| false,
    );
    let (run, took) = ship(&jobs, &state, "splunk-hec", &server.url(), &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(run.stderr.contains("HEC code 10"), "{}", run.stderr);
    assert_eq!(
        server.requests().len(),
        1,
        "a permanent fault is not retried"
    );
    // A retriable one (server busy): sent again, and stored the second time.
    let server = Server::start(
        |_, i| match i {
            0 => json(200, j!({"text": "Server is busy", "code": 9})),
            _ => json(200, j!({"text": "Success", "code": 0})),
        },
        |_| false,
    );
    let one = ["--linger", "60s"];
    let (run, _) = ship(&jobs, &state, "splunk-hec", &server.url(), &one);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = server.requests();
    assert_eq!(r.len(), 2, "{}", run.stderr);
    assert_eq!(r[0].hec_ids(), r[1].hec_ids());
}

#[test]
fn bulk_reply_with_fewer_items_than_actions_is_sent_again() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let stored = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let s = stored.clone();
    let server = Server::start(
        move |r, i| {
            let mut ids = r.bulk_ids();
            if i == 0 {
                ids.pop(); // the first reply forgets the last action, and says no errors
            }
            let mut stored = s.lock().expect("stored");
            let items: Vec<Value> = ids
                .into_iter()
                .map(|id| {
                    let n = stored.entry(id.clone()).or_insert(0);
                    *n += 1;
                    let status = if *n == 1 { 201 } else { 409 };
                    j!({"create": {"_id": id, "status": status}})
                })
                .collect();
            json(200, j!({"took": 1, "errors": false, "items": items}))
        },
        |_| false,
    );
    // One batch for the whole cache, however slowly this build encodes.
    let one = ["--linger", "60s"];
    let (run, _) = ship(&jobs, &state, "elasticsearch", &server.url(), &one);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = server.to("/_bulk");
    assert_eq!(r.len(), 2, "{}", run.stderr);
    let want: HashSet<String> = dry_run_ids(&jobs);
    let stored = stored.lock().expect("stored");
    assert_eq!(stored.keys().cloned().collect::<HashSet<_>>(), want);
    assert_eq!(r[1].bulk_ids(), r[0].bulk_ids(), "the whole batch again");
}

/// An Elasticsearch behind nginx's default limit: 413 above 1 MiB (and for any body holding
/// `huge`, as for one event too large); otherwise every item created.
fn bulk_behind_nginx(huge: Option<String>) -> Server {
    Server::start(
        move |r, _| {
            let too_big = huge.as_ref().is_some_and(|h| r.bulk_ids().contains(h));
            if r.body.len() > NGINX_MAX || too_big {
                return Answer::Reply(
                    413,
                    vec![],
                    "<html>413 Request Entity Too Large</html>".into(),
                );
            }
            let items: Vec<Value> = r
                .bulk_ids()
                .into_iter()
                .map(|id| j!({"create": {"_id": id, "status": 201}}))
                .collect();
            json(200, j!({"took": 1, "errors": false, "items": items}))
        },
        |_| false,
    )
}

#[test]
fn bodies_stay_within_the_cap_and_a_413_halves_the_batch() {
    let (tmp, jobs) = multiplied_cache(40);
    let state = tmp.path().join("state");
    let want: HashSet<String> = dry_run_ids(&jobs);
    // The default cap keeps every body within 1 MiB, envelopes counted.
    let server = bulk_behind_nginx(None);
    let full = ["--linger", "60s"];
    let (run, _) = ship(&jobs, &state, "elasticsearch", &server.url(), &full);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = server.to("/_bulk");
    assert!(r.iter().all(|r| r.body.len() <= NGINX_MAX), "over 1 MiB");
    assert!(
        r.iter().any(|r| r.body.len() > NGINX_MAX / 2),
        "batches too small"
    );
    // A cap above the proxy's: the 413s halve the batches until they pass.
    let state = tmp.path().join("state2");
    let server = bulk_behind_nginx(None);
    let cap = ["--max-request-bytes", "4000000", "--linger", "60s"];
    let (run, _) = ship(&jobs, &state, "elasticsearch", &server.url(), &cap);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = server.to("/_bulk");
    assert!(r.iter().any(|r| r.body.len() > NGINX_MAX), "no 413 was met");
    let stored: HashSet<String> = r
        .iter()
        .filter(|r| r.body.len() <= NGINX_MAX)
        .flat_map(Request::bulk_ids)
        .collect();
    assert_eq!(stored, want);
}

#[test]
fn one_event_too_large_is_rejected_reported_and_counted() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let want: Vec<String> = dry_run_ids(&jobs);
    let huge = want[want.len() / 2].clone();
    let server = bulk_behind_nginx(Some(huge.clone()));
    let (run, _) = ship(&jobs, &state, "elasticsearch", &server.url(), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(&huge)).collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("413"), "{}", run.stderr);
    assert!(run.stderr.contains("1 events rejected"), "{}", run.stderr);
    let stored: HashSet<String> = server
        .to("/_bulk")
        .iter()
        .filter(|r| !r.bulk_ids().contains(&huge))
        .flat_map(Request::bulk_ids)
        .collect();
    assert_eq!(stored.len(), want.len() - 1);
    // Larger than the cap before it is sent: rejected without a request.
    let state = tmp.path().join("state2");
    let server = bulk_behind_nginx(None);
    let (run, _) = ship(
        &jobs,
        &state,
        "elasticsearch",
        &server.url(),
        &["--max-request-bytes", "1024"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("more than the 1024 allowed"),
        "{}",
        run.stderr
    );
    assert!(server.to("/_bulk").iter().all(|r| r.body.len() <= 1024));
}
