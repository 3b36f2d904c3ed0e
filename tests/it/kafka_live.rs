//! The Kafka sink is live (issue 20): at a low `--max-rate` records leave as they come, so
//! `--deliver-timeout` measures the broker, not our batching; `watch` stores a new return
//! within a couple of seconds; a broker outage gets one warning and one recovery line, and
//! loses nothing. Against tansu on 127.0.0.1 (see ../shared/receivers/README.md).

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::tansu::{binary, Record, Tansu};
use crate::common::watch::{land_job, source_job, Watch};
use crate::common::{cache_copy, dry_run_ids, Saltship};

const TOPIC: &str = "salt-states";

fn send(cmd: &str, jobs: &Path, target: &str) -> Saltship {
    Saltship::on(cmd, jobs).sink("kafka").target(target)
}

fn ids(records: &[Record]) -> HashSet<String> {
    let id = |r: &Record| r.value["event_id"].as_str().expect("event_id").to_owned();
    records.iter().map(id).collect()
}

/// 138 events at 20/s take ~7 s, more than twice the deadline: each record must leave as it
/// comes, and each acknowledgement pushes the deadline back.
#[test]
fn a_slow_max_rate_ships_everything_within_a_short_deliver_timeout() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 3);
    let started = Instant::now();
    let run = send("sync", &jobs, &tansu.target())
        .state_file(&tmp.path().join("state"))
        .more(["--max-rate", "20", "--deliver-timeout", "3s"])
        .run();
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(took > Duration::from_secs(5), "not paced: {took:?}");
    assert_eq!(
        ids(&tansu.records(TOPIC, want.len())),
        want,
        "{}",
        run.stderr
    );
}

/// watch at `--max-rate 200` has caught up with the cache; a return that lands then is in
/// the topic within a couple of seconds (read back by a consumer, which takes its share).
#[test]
fn watch_stores_a_new_return_within_two_seconds() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let before: HashSet<String> = dry_run_ids(&jobs);
    let tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 3);
    let state = tmp.path().join("watch.state");
    let env = [("SALTSHIP_SINK", "kafka"), ("SALTSHIP_MAX_RATE", "200")];
    let watch = Watch::start(&jobs, &state, &tansu.target(), &env);
    let caught_up = ids(&tansu.records(TOPIC, before.len()));
    assert_eq!(caught_up, before, "{}", watch.log());
    land_job(
        &jobs,
        &source_job("failures"),
        "20991231000000000001",
        Duration::ZERO,
    );
    let landed = Instant::now();
    let want: HashSet<String> = dry_run_ids(&jobs);
    assert!(want.len() > before.len());
    let got = ids(&tansu.records(TOPIC, want.len()));
    let took = landed.elapsed();
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(got, want, "{log}");
    assert!(
        took < Duration::from_secs(2),
        "stored after {took:?}: {log}"
    );
}

/// tansu killed mid-run and started again 2 s later: one warning when the outage starts, one
/// line when it ends, and every event is in the topic.
#[test]
fn a_broker_outage_gets_one_warning_and_one_recovery_line_and_loses_nothing() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let mut tansu = Tansu::start(&bin, tmp.path());
    tansu.create_topic(TOPIC, 3);
    // ~4.6 s at 30 events/s: the broker is away from 1.5 s to 3.5 s.
    let child = send("backfill", &jobs, &tansu.target())
        .more([
            "--max-rate",
            "30",
            "--no-checkpoint",
            "--deliver-timeout",
            "30s",
        ])
        .spawn(Stdio::piped());
    std::thread::sleep(Duration::from_millis(1500));
    tansu.stop();
    std::thread::sleep(Duration::from_secs(2));
    tansu.restart();
    let out = child.wait_with_output().expect("saltship");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("warning: cannot deliver"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("all brokers are down"), "{stderr}");
    assert_eq!(stderr.matches("again after").count(), 1, "{stderr}");
    // What was in flight at the outage is produced again: read until every event is there.
    let records = tansu.records_until(TOPIC, |r| {
        r.len() >= want.len() && ids(r).len() >= want.len()
    });
    assert_eq!(ids(&records), want, "{stderr}");
    // The producer keeps its records through the outage: librdkafka's idempotent producer
    // delivers them once the broker is back, so duplicates are rare (a lost acknowledgement).
    eprintln!("{} records for {} events", records.len(), want.len());
}
