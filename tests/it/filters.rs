//! `--minion`, `--fun`, `--only-failures`, `--since`/`--until` select subsets of the full run.

use crate::common::{cache_copy, Run, Saltship};
use serde_json::Value;

fn run(extra: &[&str]) -> Run {
    let (_tmp, jobs) = cache_copy("jobs");
    let run = Saltship::dry_run(&jobs).more(extra).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

/// The events of the full run that satisfy `keep`, in order.
fn subset(all: &Run, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    all.events.iter().filter(|e| keep(e)).cloned().collect()
}

#[test]
fn each_filter_keeps_exactly_its_subset() {
    let all = run(&[]);
    let only_db1 = run(&["--minion", "db*"]);
    assert_eq!(only_db1.events, subset(&all, |e| e["minion_id"] == "db1"));
    assert!(!only_db1.events.is_empty());

    let sls = run(&["--fun", "state.sls"]);
    assert_eq!(sls.events, subset(&all, |e| e["fun"] == "state.sls"));
    let orch = run(&["--fun", "runner.state.*"]);
    assert_eq!(
        orch.events,
        subset(&all, |e| e["fun"]
            .as_str()
            .is_some_and(|f| f.starts_with("runner.state.")))
    );
    assert!(!orch.events.is_empty());

    let failures = run(&["--only-failures"]);
    assert_eq!(failures.events, subset(&all, |e| e["result"] == false));
    // test=True pending states (result null) are not failures, and there are some in the cache.
    assert!(all.events.iter().any(|e| e["result"].is_null()));

    let both = run(&[
        "--only-failures",
        "--minion",
        "web1,db1",
        "--fun",
        "state.sls",
    ]);
    assert_eq!(
        both.events,
        subset(&all, |e| e["result"] == false
            && e["fun"] == "state.sls"
            && (e["minion_id"] == "web1" || e["minion_id"] == "db1"))
    );
}

#[test]
fn since_and_until_take_jids_and_times() {
    let all = run(&[]);
    let mut jids: Vec<&str> = all
        .events
        .iter()
        .map(|e| e["jid"].as_str().expect("jid"))
        .collect();
    jids.dedup();
    assert!(jids.len() > 4);
    let (from, to) = (jids[1], jids[jids.len() - 2]);
    let ranged = run(&["--since", from, "--until", to]);
    assert_eq!(
        ranged.events,
        subset(&all, |e| {
            let j = e["jid"].as_str().expect("jid");
            j >= from && j < to
        })
    );

    // The same boundary as RFC 3339.
    let t = format!(
        "{}-{}-{}T{}:{}:{}.{}Z",
        &from[..4],
        &from[4..6],
        &from[6..8],
        &from[8..10],
        &from[10..12],
        &from[12..14],
        &from[14..20]
    );
    assert_eq!(
        run(&["--since", &t]).events,
        subset(&all, |e| e["jid"].as_str().expect("jid") >= from)
    );
    // The fixtures are older than a minute ago, newer than a century ago.
    assert!(run(&["--since", "1m"]).events.is_empty());
    assert_eq!(run(&["--since", "5200w"]).events, all.events);
}

/// Decoding on several threads changes nothing: the same bytes in the same order as one thread.
#[test]
fn output_is_the_same_bytes_on_one_thread_and_many() {
    let (_tmp, jobs) = crate::common::multiplied_cache(12);
    let one = Saltship::dry_run(&jobs).more(["--threads", "1"]).run();
    let many = Saltship::dry_run(&jobs).more(["--threads", "4"]).run();
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(one.events.len() > 1000);
    assert!(
        one.stdout == many.stdout,
        "the output differs between 1 and 4 threads"
    );
}
