//! The HTTP sinks against a real receiver: Fluent Bit's `splunk` (HEC) and `elasticsearch`
//! (`_bulk`) inputs, started by the test on 127.0.0.1 (see ../shared/receivers/README.md).
//! Every event_id of the dry run must be stored, also across receiver restarts, with
//! `backfill`, `sync` and `watch`.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::fluentbit::{binary, id_counts, FluentBit, TOKEN};
use crate::common::watch::Watch;
use crate::common::{cache_copy, dry_run_ids, multiplied_cache, Saltship};

/// The two HTTP sinks: `--sink`, the file Fluent Bit writes, the URL.
fn sinks(fb: &FluentBit) -> [(&'static str, &'static str, String); 2] {
    [
        ("splunk-hec", "hec.jsonl", fb.hec_url()),
        ("elasticsearch", "es.jsonl", fb.es_url()),
    ]
}

/// `saltship <cmd>` that sends `jobs` with `sink` to `url`, the token from the environment
/// (http_faults.rs reads it from a file).
fn send(cmd: &str, jobs: &Path, sink: &str, url: &str) -> Saltship {
    Saltship::on(cmd, jobs)
        .sink(sink)
        .target(url)
        .env("SALTSHIP_HEC_TOKEN", TOKEN)
}

fn stored(fb: &FluentBit, file: &str, want: &HashSet<String>) -> HashSet<String> {
    id_counts(&fb.records(file, want.len()))
        .into_keys()
        .collect()
}

#[test]
fn backfill_and_sync_store_every_event_in_fluent_bit() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let fb = FluentBit::start(&bin, tmp.path());
    for (sink, file, url) in sinks(&fb) {
        let state = tmp.path().join(format!("{sink}.state"));
        let done = send("sync", &jobs, sink, &url).state_file(&state).run();
        assert_eq!(done.code, 0, "{sink}: {}", done.stderr);
        assert_eq!(stored(&fb, file, &want), want, "{sink}: {}", done.stderr);
        // Recorded: a second sync sends nothing.
        let again = send("sync", &jobs, sink, &url).state_file(&state).run();
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert!(again.stderr.contains(" 0 events"), "{}", again.stderr);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(fb.lines_now(file), want.len(), "{sink}: sent again");
    }
}

/// Fluent Bit stopped (SIGTERM) and started again twice while a 2,000-event backfill runs:
/// every event still arrives.
#[test]
fn every_event_arrives_across_two_receiver_restarts() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = multiplied_cache(20);
    let want: HashSet<String> = dry_run_ids(&jobs);
    let mut fb = FluentBit::start(&bin, tmp.path());
    for (sink, file, url) in sinks(&fb) {
        // Slow enough to restart the receiver twice during the run.
        let mut child = send("backfill", &jobs, sink, &url)
            .more(["--max-rate", "800", "--no-checkpoint"])
            .spawn(Stdio::piped());
        let start = fb.lines_now(file);
        let mut restarts = 0;
        for at in [want.len() / 5, want.len() / 2] {
            let deadline = Instant::now() + Duration::from_secs(30);
            while fb.lines_now(file) < start + at && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().expect("wait").is_none() {
                fb.restart();
                restarts += 1;
            }
        }
        let out = child.wait_with_output().expect("saltship");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{sink}: {stderr}");
        assert_eq!(restarts, 2, "{sink}: the run ended before the restarts");
        let records = fb.records(file, start + want.len());
        let got: HashSet<String> = id_counts(&records[start..]).into_keys().collect();
        assert_eq!(got.len(), want.len(), "{sink}: {stderr}");
        assert_eq!(got, want, "{sink}");
    }
}

#[test]
fn watch_ships_to_both_http_sinks() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let fb = FluentBit::start(&bin, tmp.path());
    for (sink, file, url) in sinks(&fb) {
        let state = tmp.path().join(format!("{sink}.watch.state"));
        let log = tmp.path().join(format!("{sink}.watch.log"));
        let child = send("watch", &jobs, sink, &url)
            .state_file(&state)
            .spawn(std::fs::File::create(&log).expect("log"));
        let watch = Watch::spawned(child, log);
        let got = stored(&fb, file, &want);
        let (code, _, stderr) = watch.stop();
        assert_eq!(code, 0, "{sink}: {stderr}");
        assert_eq!(got, want, "{sink}: {stderr}");
    }
}
