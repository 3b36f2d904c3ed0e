//! The Kafka sink against a real broker: tansu (see ../shared/receivers/README.md), started by
//! the test on 127.0.0.1 with SQLite storage, read back with rdkafka's consumer. Every
//! event_id of the dry run must be stored, also across two broker restarts, with `backfill`,
//! `sync` and `watch`; a missing topic and bad credentials end the run at once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::tansu::{binary, Record, Tansu};
use crate::common::tls::{Pki, SServer};
use crate::common::watch::Watch;
use crate::common::{cache_copy, dry_run_ids, multiplied_cache, Run, Saltship};

const TOPIC: &str = "salt-states";

/// `saltship <cmd>` that sends `jobs` to the broker at `target`.
fn send(cmd: &str, jobs: &Path, target: &str) -> Saltship {
    Saltship::on(cmd, jobs).sink("kafka").target(target)
}

/// How many records carry each event_id (json or ecs).
fn id_counts(records: &[Record]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        let id = r.value["event_id"]
            .as_str()
            .or(r.value["event"]["id"].as_str())
            .expect("an event id");
        *counts.entry(id.to_owned()).or_default() += 1;
    }
    counts
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn sync_stores_every_event_as_a_keyed_timestamped_record() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 3);
    let target = tansu.target();
    let state = tmp.path().join("state");
    let done = send("sync", &jobs, &target).state_file(&state).run();
    assert_eq!(done.code, 0, "{}", done.stderr);
    let records = tansu.records(TOPIC, want.len());
    let counts = id_counts(&records);
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), want);
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
    for r in &records {
        let id = r.value["event_id"].as_str().expect("id");
        assert_eq!(r.key.as_deref(), Some(id));
        let time = r.value["timestamp"].as_str().expect("timestamp");
        let ms = chrono::DateTime::parse_from_rfc3339(time)
            .expect("RFC 3339")
            .timestamp_millis();
        assert_eq!(r.timestamp, Some(ms), "{id}");
        assert_eq!(
            header(r, "saltship-master"),
            Some(crate::common::saltship::MASTER)
        );
        assert_eq!(header(r, "saltship-jid"), r.value["jid"].as_str());
    }
    // The same key always lands on the same partition.
    let partitions: HashSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(partitions.len() > 1, "one partition for every key");
    // Recorded: a second sync sends nothing.
    let again = send("sync", &jobs, &target).state_file(&state).run();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains(" 0 events"), "{}", again.stderr);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tansu.records(TOPIC, want.len() + 1).len(), want.len());
}

/// tansu killed and started again twice while a 2,000-event backfill runs: every event is in
/// the topic afterwards; the duplicates (records whose acknowledgement was lost) are counted.
#[test]
fn every_event_arrives_across_two_broker_restarts() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = multiplied_cache(20);
    let want: HashSet<String> = dry_run_ids(&jobs);
    let mut tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 3);
    let target = tansu.target();
    // Slow enough to restart the broker twice during the run.
    let mut child = send("backfill", &jobs, &target)
        .more(["--max-rate", "800", "--no-checkpoint"])
        .spawn(Stdio::piped());
    let mut restarts = 0;
    for pause in [Duration::from_millis(600), Duration::from_millis(900)] {
        std::thread::sleep(pause);
        if child.try_wait().expect("wait").is_none() {
            tansu.restart();
            restarts += 1;
        }
    }
    let out = child.wait_with_output().expect("saltship");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(restarts, 2, "the run ended before the restarts");
    // Records produced again after an outage come twice: read until every event is there.
    let records = tansu.records_until(TOPIC, |r| {
        r.len() >= want.len() && id_counts(r).len() >= want.len()
    });
    let counts = id_counts(&records);
    let got: HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(got.len(), want.len(), "{stderr}");
    assert_eq!(got, want);
    let duplicates = records.len() - want.len();
    eprintln!(
        "{} records for {} events: {duplicates} duplicates",
        records.len(),
        want.len()
    );
}

#[test]
fn watch_ships_ecs_keyed_by_minion() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic("ecs", 2);
    let target = tansu.target();
    let state = tmp.path().join("watch.state");
    let log = tmp.path().join("watch.log");
    let child = send("watch", &jobs, &target)
        .state_file(&state)
        .more(["--format", "ecs", "--kafka-key", "minion"])
        .env("SALTSHIP_KAFKA_TOPIC", "ecs")
        .spawn(std::fs::File::create(&log).expect("log"));
    let watch = Watch::spawned(child, log);
    let records = tansu.records("ecs", want.len());
    let (code, _, stderr) = watch.stop();
    assert_eq!(code, 0, "{stderr}");
    let got: HashSet<String> = id_counts(&records).into_keys().collect();
    assert_eq!(got, want, "{stderr}");
    for r in &records {
        assert_eq!(r.key.as_deref(), r.value["host"]["name"].as_str());
        assert_eq!(header(r, "saltship-jid"), r.value["salt"]["jid"].as_str());
    }
}

/// A run that must end at once (well before --deliver-timeout) with exit 3 and one line.
fn fails_at_once(run: impl FnOnce() -> Run, why: &str) {
    let start = Instant::now();
    let r = run();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(start.elapsed() < Duration::from_secs(30), "not at once");
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains(why), "{}", r.stderr);
}

#[test]
fn a_missing_topic_and_bad_credentials_end_the_run_at_once() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let mut tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 1);
    let target = tansu.target();
    let slow = ["--deliver-timeout", "5m", "--no-checkpoint"];
    let mut extra = slow.to_vec();
    extra.extend_from_slice(&["--kafka-topic", "no-such-topic"]);
    fails_at_once(
        || send("backfill", &jobs, &target).more(&extra).run(),
        "no-such-topic does not exist",
    );

    tansu.require_auth("saltship", "right");
    let password = tmp.path().join("password");
    let sasl = |pw: &str| {
        crate::common::write_secret(&password, pw);
        send("backfill", &jobs, &target)
            .more(slow)
            .more(["--kafka-sasl-mechanism", "SCRAM-SHA-256"])
            .more(["--kafka-user", "saltship", "--kafka-password-file"])
            .arg(&password)
            .run()
    };
    fails_at_once(|| sasl("wrong"), "uthentication");
    assert!(!sasl("wrong").stderr.contains("wrong"), "password logged");
    let ok = sasl("right");
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

#[test]
fn a_record_too_large_is_reported_and_counted_not_retried() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let dry = Saltship::dry_run(&jobs)
        .more(["--max-event-bytes", "10000"])
        .run();
    let sizes: Vec<usize> = dry.stdout.lines().map(str::len).collect();
    let limit = 2000;
    let big = sizes.iter().filter(|n| **n > limit).count();
    assert!(big > 0 && big < sizes.len(), "no mix of sizes: {sizes:?}");
    let tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 1);
    let target = tansu.target();
    let max = format!("message.max.bytes={limit}");
    let extra = [
        "--no-checkpoint",
        "--kafka-option",
        &max,
        "--kafka-option",
        "batch.size=1000",
    ];
    let r = send("backfill", &jobs, &target).more(extra).run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("rejected").count(),
        big + 1,
        "{}",
        r.stderr
    );
    let records = tansu.records(TOPIC, sizes.len() - big);
    assert_eq!(records.len(), sizes.len() - big);
}

/// tansu 0.6's TLS listener does not start (`--cert` and `--key` conflict in its command
/// line), so TLS is checked against `openssl s_server`: a broker certificate that the system's
/// CAs do not sign ends the run at once, as for the other sinks.
#[test]
fn an_untrusted_broker_certificate_ends_the_run_at_once() {
    let (tmp, jobs) = cache_copy("jobs");
    let Some(pki) = Pki::make(tmp.path()) else {
        return;
    };
    // Signed by the test CA, which the system's store does not hold.
    let server = SServer::start(&pki, "server", &[]);
    let extra = ["--tls", "--deliver-timeout", "5m", "--no-checkpoint"];
    fails_at_once(
        || {
            send("backfill", &jobs, &server.target("127.0.0.1"))
                .more(extra)
                .run()
        },
        "certificate verify failed",
    );
}

#[test]
fn check_asks_the_brokers_for_the_topic() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 2);
    let target = tansu.target();
    let state = tmp.path().join("state");
    let check = |topic: &str| {
        let out = send("check", &jobs, &target)
            .state_file(&state)
            .more(["--kafka-topic", topic])
            .run_text();
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains("target "))
            .map(str::to_owned)
            .unwrap_or_default();
        (out.code, line)
    };
    let (code, line) = check(TOPIC);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("ok ") && line.contains("has 2 partitions"),
        "{line}"
    );
    let (code, line) = check("nope");
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("FAIL ") && line.contains("nope does not exist"),
        "{line}"
    );
}
