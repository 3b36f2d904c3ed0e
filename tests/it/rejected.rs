//! Events a receiver refused for good (an OTLP `partial_success`, here from a small server
//! inside the test, which Fluent Bit does not answer on demand) are counted apart from the
//! events shipped: `saltship_events_rejected_total`, and in `watch`'s stats line.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use prost::Message;

use crate::common::http_server::{Answer, Server};
use crate::common::watch::Watch;
use crate::common::{cache_copy, dry_run_ids, p, Saltship};

/// An OTLP receiver that refuses two records of its first request and takes the rest.
fn refusing_two() -> Server {
    Server::start(
        |_, i| {
            let reply = ExportLogsServiceResponse {
                partial_success: (i == 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: 2,
                    error_message: "two records too old".into(),
                }),
            };
            let body = String::from_utf8(reply.encode_to_vec()).expect("ASCII for these replies");
            let ct = vec![("Content-Type", "application/x-protobuf".to_owned())];
            Answer::Reply(200, ct, body)
        },
        |_| false,
    )
}

#[test]
fn rejected_events_are_counted_apart_from_the_events_shipped() {
    let (tmp, jobs) = cache_copy("jobs");
    let sent = dry_run_ids::<Vec<String>>(&jobs).len();
    let server = refusing_two();
    let prom = tmp.path().join("saltship.prom");
    let run = Saltship::sync(&jobs)
        .sink("otlp")
        .target(&server.url())
        .more(["--metrics-file", p(&prom)])
        .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let text = std::fs::read_to_string(&prom).expect("metrics file");
    for line in [
        format!("saltship_events_total {}", sent - 2),
        "saltship_events_rejected_total 2".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }

    let (tmp, jobs) = cache_copy("jobs");
    let server = refusing_two();
    let watch = Watch::start(
        &jobs,
        &tmp.path().join("state"),
        &server.url(),
        &[("SALTSHIP_SINK", "otlp"), ("SALTSHIP_STATS_INTERVAL", "1s")],
    );
    let want = format!("{} events, 2 rejected,", sent - 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !watch.log().contains(&want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, log) = watch.stop();
    assert!(log.contains(&want), "{want}: {log}");
    // Events were rejected: the run ends as one with failed files does.
    assert_eq!(code, 1, "{log}");
}
