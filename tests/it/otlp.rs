//! `--sink otlp` against a real receiver: Fluent Bit's `opentelemetry` input, started by the
//! test on 127.0.0.1 (see ../shared/receivers/README.md). Its `file` output writes each log
//! record's body (the event as encoded) as `log`: every event_id of the dry run must be there,
//! with `backfill`, `sync` and `watch`, protobuf and JSON, plain and gzipped, also across two
//! receiver restarts.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::fluentbit::{binary, id_counts, FluentBit};
use crate::common::watch::{land_job, source_job, Watch};
use crate::common::{cache_copy, dry_run_ids, multiplied_cache, Saltship};

const FILE: &str = "otlp.jsonl";

/// `saltship <cmd>` that sends `jobs` to Fluent Bit's OTLP input at `url`.
fn send(cmd: &str, jobs: &Path, url: &str) -> Saltship {
    Saltship::on(cmd, jobs).sink("otlp").target(url)
}

/// The event ids Fluent Bit wrote, once it holds `count` records (bounded wait).
fn stored(fb: &FluentBit, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for (id, n) in id_counts(&fb.records(FILE, count)) {
        ids.extend(std::iter::repeat_n(id, n));
    }
    ids
}

#[test]
fn sync_then_backfill_store_every_event_in_fluent_bits_otlp_input() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let fb = FluentBit::start(&bin, tmp.path());
    let url = fb.otlp_url();
    let state = tmp.path().join("otlp.state");
    let done = send("sync", &jobs, &url).state_file(&state).run();
    assert_eq!(done.code, 0, "{}", done.stderr);
    let got = stored(&fb, want.len());
    assert_eq!(got.len(), want.len(), "{}", done.stderr);
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), want);
    // Recorded: a second sync sends nothing.
    let again = send("sync", &jobs, &url).state_file(&state).run();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains(" 0 events"), "{}", again.stderr);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fb.lines_now(FILE), want.len(), "sent again");
    // A backfill in OTLP/JSON, gzipped, with a header: every event once more.
    let extra = [
        "--no-checkpoint",
        "--otlp-encoding",
        "json",
        "--otlp-compression",
        "gzip",
        "--otlp-header",
        "X-Scope-OrgID=tenant1",
    ];
    let json = send("backfill", &jobs, &url).more(extra).run();
    assert_eq!(json.code, 0, "{}", json.stderr);
    let got = stored(&fb, 2 * want.len());
    assert_eq!(got.len(), 2 * want.len(), "{}", json.stderr);
    let twice: HashSet<String> = got.into_iter().collect();
    assert_eq!(twice, want);
}

/// Fluent Bit stopped (SIGTERM) and started again twice while a 2,000-event backfill runs:
/// every event still arrives.
#[test]
fn every_event_arrives_across_two_receiver_restarts() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = multiplied_cache(20);
    let want: HashSet<String> = dry_run_ids(&jobs);
    let mut fb = FluentBit::start(&bin, tmp.path());
    let url = fb.otlp_url();
    // Slow enough to restart the receiver twice during the run.
    let mut child = send("backfill", &jobs, &url)
        .more(["--max-rate", "800", "--no-checkpoint"])
        .spawn(Stdio::piped());
    let mut restarts = 0;
    for at in [want.len() / 5, want.len() / 2] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while fb.lines_now(FILE) < at && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().expect("wait").is_none() {
            fb.restart();
            restarts += 1;
        }
    }
    let out = child.wait_with_output().expect("saltship");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(restarts, 2, "the run ended before the restarts");
    let got: HashSet<String> = id_counts(&fb.records(FILE, want.len()))
        .into_keys()
        .collect();
    assert_eq!(got.len(), want.len(), "{stderr}");
    assert_eq!(got, want);
}

/// watch ships the cache, then two jobs that land while it runs.
#[test]
fn watch_ships_to_fluent_bits_otlp_input() {
    let Some(bin) = binary() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let before: HashSet<String> = dry_run_ids(&jobs);
    let fb = FluentBit::start(&bin, tmp.path());
    let url = fb.otlp_url();
    let state = tmp.path().join("watch.state");
    let watch = Watch::start(&jobs, &state, &url, &[("SALTSHIP_SINK", "otlp")]);
    let first = stored(&fb, before.len());
    assert_eq!(first.len(), before.len(), "{}", watch.log());
    for (case, jid) in [
        ("failures", "20991231000000000001"),
        ("test-true-pending", "20991231000000000002"),
    ] {
        land_job(&jobs, &source_job(case), jid, Duration::from_millis(10));
    }
    let want: HashSet<String> = dry_run_ids(&jobs);
    assert!(want.len() > before.len());
    let got = stored(&fb, want.len());
    let (code, _, stderr) = watch.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(got.len(), want.len(), "{stderr}");
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), want);
}
