//! The Kafka sink against a real broker: tansu (see ../shared/receivers/README.md), started by
//! the test on 127.0.0.1 with SQLite storage, read back with rdkafka's consumer. Every
//! event_id of the dry run must be stored, also across two broker restarts, with `backfill`,
//! `sync` and `watch`; a missing topic and bad credentials end the run at once.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tansu::{binary, Record, Tansu};
use common::watch::Watch;
use common::{backfill, cache_copy, dry_run_ids, multiplied_cache, saltship, Run};

const TOPIC: &str = "salt-states";

/// The event ids of the dry run.
fn want(jobs: &Path) -> HashSet<String> {
    dry_run_ids(jobs)
}

/// The arguments that send `jobs` to the broker at `target`.
fn args<'a>(cmd: &'a str, jobs: &'a Path, target: &'a str) -> Vec<&'a str> {
    vec![
        cmd,
        "--cache-dir",
        jobs.to_str().expect("UTF-8"),
        "--master-id",
        "testmaster",
        "--sink",
        "kafka",
        "--target",
        target,
    ]
}

fn run(cmd: &str, jobs: &Path, target: &str, extra: &[&str]) -> Run {
    let mut a = args(cmd, jobs, target);
    a.extend_from_slice(extra);
    saltship(&a)
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
    let want = want(&jobs);
    let tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 3);
    let target = tansu.target();
    let state = tmp.path().join("state");
    let state = state.to_str().expect("UTF-8");
    let done = run("sync", &jobs, &target, &["--state-file", state]);
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
        assert_eq!(header(r, "saltship-master"), Some("testmaster"));
        assert_eq!(header(r, "saltship-jid"), r.value["jid"].as_str());
    }
    // The same key always lands on the same partition.
    let partitions: HashSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(partitions.len() > 1, "one partition for every key");
    // Recorded: a second sync sends nothing.
    let again = run("sync", &jobs, &target, &["--state-file", state]);
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
    let want = want(&jobs);
    let mut tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 3);
    let target = tansu.target();
    let mut a = args("backfill", &jobs, &target);
    // Slow enough to restart the broker twice during the run.
    a.extend_from_slice(&["--max-rate", "800", "--no-checkpoint"]);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("saltship"))
        .args(&a)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
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
    let records = tansu.records(TOPIC, want.len());
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
    let want = want(&jobs);
    let tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic("ecs", 2);
    let target = tansu.target();
    let state = tmp.path().join("watch.state");
    let mut a = args("watch", &jobs, &target);
    a.extend_from_slice(&["--state-file", state.to_str().expect("UTF-8")]);
    a.extend_from_slice(&["--format", "ecs", "--kafka-key", "minion"]);
    let log = tmp.path().join("watch.log");
    let child = Command::new(assert_cmd::cargo::cargo_bin("saltship"))
        .args(&a)
        .env("SALTSHIP_KAFKA_TOPIC", "ecs")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn watch");
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
        || run("backfill", &jobs, &target, &extra),
        "no-such-topic does not exist",
    );

    tansu.require_auth("saltship", "right");
    let password = tmp.path().join("password");
    let sasl = |pw: &str| {
        std::fs::write(&password, pw).expect("write password");
        let mut extra = slow.to_vec();
        let file = password.to_str().expect("UTF-8");
        extra.extend_from_slice(&["--kafka-sasl-mechanism", "SCRAM-SHA-256"]);
        extra.extend_from_slice(&["--kafka-user", "saltship", "--kafka-password-file", file]);
        run("backfill", &jobs, &target, &extra)
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
    let dry = backfill(&jobs, &["--max-event-bytes", "10000"]);
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
    let r = run("backfill", &jobs, &target, &extra);
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
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !common::rsyslog::have("openssl", openssl, "openssl") {
        return;
    }
    let (tmp, jobs) = cache_copy("jobs");
    let dir = tmp.path();
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl req");
    assert!(made.success());
    let port = common::free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-accept", &port.to_string()])
        .args(["-cert", "cert.pem", "-key", "key.pem"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    common::rsyslog::wait_for_port(port, "openssl s_server");
    let target = format!("127.0.0.1:{port}");
    let extra = ["--tls", "--deliver-timeout", "5m", "--no-checkpoint"];
    fails_at_once(
        || run("backfill", &jobs, &target, &extra),
        "certificate verify failed",
    );
    let _ = server.kill();
    let _ = server.wait();
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
        let args = [
            "check",
            "--cache-dir",
            jobs.to_str().expect("UTF-8"),
            "--state-file",
            state.to_str().expect("UTF-8"),
            "--sink",
            "kafka",
            "--target",
            &target,
            "--kafka-topic",
            topic,
        ];
        let out = assert_cmd::Command::cargo_bin("saltship")
            .expect("binary")
            .args(args)
            .timeout(Duration::from_secs(60))
            .output()
            .expect("run check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.contains("target "))
            .map(str::to_owned)
            .unwrap_or_default();
        (out.status.code().unwrap_or(-1), line)
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
