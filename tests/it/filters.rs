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

/// A filtered sync records only the returns it shipped whole: a plain sync after it ships the
/// rest, and between them every event of the cache arrived (issue 20, item 5).
#[test]
fn a_filtered_sync_leaves_the_rest_for_a_run_without_the_filter() {
    use crate::common::receiver::{event_ids, Faults, Receiver};
    use std::collections::HashSet;
    let (_tmp, jobs) = cache_copy("jobs");
    let all: HashSet<String> = Saltship::dry_run(&jobs).run().ids();
    for filter in [
        &["--minion", "db1"][..],
        &["--fun", "state.sls"],
        &["--only-failures"],
    ] {
        let (tmp, jobs) = cache_copy("jobs");
        let state = tmp.path().join("state");
        let sync = |extra: &[&str]| {
            let receiver = Receiver::start(Faults::default());
            let run = Saltship::sync(&jobs)
                .state_file(&state)
                .target(&receiver.target())
                .more(extra)
                .run();
            assert_eq!(run.code, 0, "{filter:?}: {}", run.stderr);
            event_ids(&receiver.finish())
        };
        let filtered = sync(filter);
        assert!(
            !filtered.is_empty() && filtered.len() < all.len(),
            "{filter:?}"
        );
        let rest = sync(&[]);
        assert_eq!(
            &filtered | &rest,
            all,
            "{filter:?}: the plain sync ships the rest"
        );
        if filter[0] == "--minion" {
            // db1's returns shipped whole, and were recorded.
            assert!(
                rest.is_disjoint(&filtered),
                "{filter:?}: whole returns were recorded"
            );
        }
        assert!(
            sync(&[]).is_empty(),
            "{filter:?}: a third sync ships nothing"
        );
    }
}

/// Empty and unclosed globs exit 2 with one line, under --dry-run too; an empty SALTSHIP_MINION
/// is unset (an EnvironmentFile line), never "match nothing".
#[test]
fn empty_and_invalid_globs_exit_2_and_an_empty_env_var_is_unset() {
    let (_tmp, jobs) = cache_copy("jobs");
    for bad in ["--minion=", "--minion=[", "--fun=", "--fun=state.[sls"] {
        let run = Saltship::dry_run(&jobs).arg(bad).run();
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{bad}: {}",
            run.stderr
        );
        assert!(run.events.is_empty(), "{bad}");
    }
    let all = Saltship::dry_run(&jobs).run();
    let env = Saltship::dry_run(&jobs).env("SALTSHIP_MINION", "").run();
    assert_eq!(env.code, 0, "{}", env.stderr);
    assert_eq!(env.events, all.events);
    let bad = Saltship::dry_run(&jobs).env("SALTSHIP_MINION", "db[").run();
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
