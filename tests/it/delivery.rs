//! Delivery over TCP to receivers that misbehave: late, resetting, slow, half-closing. Each
//! receiver runs inside the test on 127.0.0.1, bounded in time; in every case each event of
//! the dry-run must arrive at least once and the exit status must be 0.

use std::time::{Duration, Instant};

use crate::common::receiver::{event_ids, Deaf, Deafness, Faults, Receiver};
use crate::common::{multiplied_cache, Run, Saltship};

/// Backfills `jobs` to a receiver with `faults` and checks every dry-run event arrived.
fn deliver(jobs: &std::path::Path, faults: Faults, extra: &[&str]) -> (Run, Vec<String>, usize) {
    let want = Saltship::dry_run(jobs).run();
    assert_eq!(want.code, 0, "{}", want.stderr);
    let receiver = Receiver::start(faults);
    let run = Saltship::backfill(jobs)
        .target(&receiver.target())
        .more(extra)
        .run();
    let lines = receiver.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = event_ids(&lines);
    let missing: Vec<&String> = want
        .events
        .iter()
        .map(|e| e["event_id"].as_str().expect("id"))
        .filter(|id| !got.contains(*id))
        .map(|_| &run.stderr)
        .collect();
    assert!(
        missing.is_empty(),
        "{} events never arrived; stderr: {}",
        missing.len(),
        run.stderr
    );
    (run, lines, want.events.len())
}

#[test]
fn receiver_up_two_seconds_late() {
    let (_tmp, jobs) = crate::common::cache_copy("jobs");
    let (run, lines, _) = deliver(
        &jobs,
        Faults {
            late: Duration::from_secs(2),
            ..Faults::default()
        },
        &[],
    );
    // One warning when the outage starts and one line when it ends, not one per attempt.
    assert_eq!(
        run.stderr.matches("cannot deliver").count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("again after").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(!lines.is_empty());
}

#[test]
fn receiver_that_resets_after_3000_lines_five_times() {
    let (_tmp, jobs) = multiplied_cache(240);
    let (run, lines, events) = deliver(
        &jobs,
        Faults {
            reset_after: Some((3000, 5)),
            ..Faults::default()
        },
        &[],
    );
    assert!(
        events >= 24_000,
        "only {events} events for the 24,000-event case"
    );
    // Each reset lost the unconfirmed tail, which was sent again.
    assert!(
        lines.len() > events,
        "{} lines for {events} events",
        lines.len()
    );
    assert!(run.stderr.contains("5 reconnects"), "{}", run.stderr);
}

#[test]
fn slow_receiver() {
    let (_tmp, jobs) = crate::common::cache_copy("jobs");
    deliver(
        &jobs,
        Faults {
            slow: Duration::from_millis(2),
            ..Faults::default()
        },
        &[],
    );
}

#[test]
fn receiver_that_half_closes() {
    let (_tmp, jobs) = multiplied_cache(20);
    deliver(
        &jobs,
        Faults {
            half_close_after: Some((500, 3)),
            ..Faults::default()
        },
        &[],
    );
}

#[test]
fn max_rate_spaces_events_out() {
    let (_tmp, jobs) = crate::common::cache_copy("jobs");
    let start = Instant::now();
    let (run, lines, _) = deliver(&jobs, Faults::default(), &["--max-rate", "200"]);
    // ~110 events at 200/s cannot take less than about half a second.
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?} for {} events: {}",
        start.elapsed(),
        lines.len(),
        run.stderr
    );
}

#[test]
fn no_receiver_exits_3_and_says_what_was_not_delivered() {
    let (_tmp, jobs) = crate::common::cache_copy("jobs");
    let port = crate::common::free_port();
    let run = Saltship::backfill(&jobs)
        .target(&format!("127.0.0.1:{port}"))
        .more(["--deliver-timeout", "1s"])
        .run();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("not delivered"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn fails_over_to_the_next_target_in_order() {
    let (_tmp, jobs) = crate::common::cache_copy("jobs");
    let want = Saltship::dry_run(&jobs).run();
    let dead = crate::common::free_port();
    let receiver = Receiver::start(Faults::default());
    let targets = format!("127.0.0.1:{dead},{}", receiver.target());
    // Comma-separated, as SALTSHIP_TARGET takes them.
    let run = Saltship::backfill(&jobs).target(&targets).run();
    let got = event_ids(&receiver.finish());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(want
        .events
        .iter()
        .all(|e| got.contains(e["event_id"].as_str().expect("id"))));
    // The second target answered at once: no outage was declared.
    assert!(!run.stderr.contains("cannot deliver"), "{}", run.stderr);
}

/// `--deliver-timeout` is a deadline for every wait: a receiver that accepts and never reads
/// ends the run (exit 3) about that long after it stopped taking bytes.
#[test]
fn a_receiver_that_never_reads_ends_the_run_by_the_deadline() {
    let (_tmp, jobs) = multiplied_cache(100);
    let deaf = Deaf::start(Deafness::NeverReads);
    let start = Instant::now();
    let run = Saltship::backfill(&jobs)
        .target(&deaf.target())
        .more(["--deliver-timeout", "5s"])
        .run();
    let took = start.elapsed();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(took >= Duration::from_secs(5), "{took:?}: {}", run.stderr);
    // 5 s plus reading the cache, on a loaded machine; not 20-80 s.
    assert!(took < Duration::from_secs(15), "{took:?}: {}", run.stderr);
}

/// A receiver that accepts and closes at once is one outage: one warning, not one per
/// reconnect.
#[test]
fn a_receiver_that_closes_at_once_is_warned_about_once() {
    let (_tmp, jobs) = crate::common::cache_copy("jobs");
    let rude = Deaf::start(Deafness::ClosesAtOnce);
    let run = Saltship::backfill(&jobs)
        .target(&rude.target())
        .more(["--deliver-timeout", "3s"])
        .run();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        rude.accepted.load(std::sync::atomic::Ordering::SeqCst) > 2,
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("cannot deliver").count(),
        1,
        "{}",
        run.stderr
    );
}
