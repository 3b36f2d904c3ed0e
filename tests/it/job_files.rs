//! A job folder's own files read as they are, not as hoped: an unreadable `.minions.p` is a
//! read error of that file (never "no targets"), the results of a multi-function job each get
//! their own `event_id`, and a minion id that is not UTF-8 is one name in the cache, in
//! `.minions.p`, in the pki folder and in the metrics.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rmpv::Value as Mp;
use serde_json::Value;

use crate::common::master::{jid_now, Gaps, Publisher};
use crate::common::rsyslog::{json_receiver, received};
use crate::common::{cache_copy, p, testdata, Saltship};

fn pack(v: &Mp) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).expect("encode to a Vec");
    buf
}

fn map(pairs: Vec<(&str, Mp)>) -> Mp {
    Mp::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// Waits (bounded) until the receiver in `dir` holds an event for which `want` holds.
fn wait_for(dir: &Path, want: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let events = received(dir);
        if events.iter().any(&want) || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_unreadable_minions_file_is_a_read_error_of_that_file_and_never_no_targets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some((_rsyslog, target)) = json_receiver(tmp.path()) else {
        return;
    };
    let jobs = tmp.path().join("jobs");
    let names = |n: usize| Mp::Array((0..n).map(|i| format!("minion-{i:05}").into()).collect());
    let list = pack(&names(3));
    let mut deep = vec![0x91; 3000];
    deep.push(0x90);
    // (what, the file, the reason named, whether it mends)
    let bad: [(&str, Vec<u8>, &str, bool); 5] = [
        (
            "cut in half",
            list[..list.len() / 2].to_vec(),
            "truncated msgpack",
            false,
        ),
        (
            "a string",
            pack(&"web1".into()),
            "not a list of minion ids",
            false,
        ),
        (
            "a map",
            pack(&map(vec![("web1", true.into())])),
            "not a list of minion ids",
            false,
        ),
        ("nested too deep", deep, "depth limit", false),
        (
            "too big",
            pack(&names(40_000)),
            "more than --max-return-bytes",
            true,
        ),
    ];
    // Long done (their jids are a year old), and one published now, still being written.
    let mut published = Vec::new();
    for (i, (what, bytes, ..)) in bad.iter().enumerate() {
        let job = Publisher::new(&jobs, "test-ping", &format!("2025120115024142400{i}"));
        job.publish(&[], &mut Gaps::none());
        std::fs::write(job.dir.join(".minions.p"), bytes).expect(what);
        published.push(job);
    }
    let good = Publisher::new(&jobs, "test-ping", "20251201150241424009");
    good.publish(&[], &mut Gaps::none());
    let young = Publisher::new(&jobs, "test-ping", &jid_now(7));
    young.folder();
    young.load(&mut Gaps::none());
    std::fs::write(young.dir.join(".minions.p"), &list[..list.len() / 2]).expect("cut");
    let state = tmp.path().join("state");
    let sync = || {
        Saltship::sync(&jobs)
            .state_file(&state)
            .target(&target)
            .more(["--events", "all", "--max-return-bytes", "256K"])
            .run()
    };
    let first = sync();
    assert_eq!(first.code, 1, "{}", first.stderr);
    let warned = |stderr: &str, job: &Publisher| -> Vec<String> {
        let path = job.dir.join(".minions.p");
        stderr
            .lines()
            .filter(|l| l.contains(p(&path)))
            .map(str::to_owned)
            .collect()
    };
    for (job, (what, _, reason, _)) in published.iter().zip(&bad) {
        let lines = warned(&first.stderr, job);
        assert_eq!(lines.len(), 1, "{what}: {}", first.stderr);
        assert!(lines[0].contains(reason), "{what}: {}", lines[0]);
    }
    assert!(warned(&first.stderr, &young).is_empty(), "{}", first.stderr);
    assert!(
        first
            .stderr
            .contains("1 jobs are younger than --return-wait"),
        "{}",
        first.stderr
    );
    let events = wait_for(tmp.path(), |e| e["jid"] == good.jid.as_str());
    crate::live_jobs::assert_final(&events, &good, &[]);
    let jids: BTreeSet<&str> = published.iter().map(|j| j.jid.as_str()).collect();
    assert!(
        events
            .iter()
            .all(|e| !jids.contains(e["jid"].as_str().unwrap_or(""))),
        "an unreadable .minions.p gave an event: {events:?}"
    );
    // A file broken for good was recorded after its one warning; one that may mend was not.
    let second = sync();
    assert_eq!(second.code, 1, "{}", second.stderr);
    for (job, (what, _, _, mends)) in published.iter().zip(&bad) {
        let again = warned(&second.stderr, job).len();
        assert_eq!(again, usize::from(*mends), "{what}: {}", second.stderr);
    }
    // The job still being written was not recorded either: once whole, it ships.
    young.minions(&mut Gaps::none());
    young.returns(&[], &mut Gaps::none());
    let third = sync();
    assert_eq!(third.code, 1, "{}", third.stderr);
    let events = wait_for(tmp.path(), |e| e["jid"] == young.jid.as_str());
    crate::live_jobs::assert_final(&events, &young, &[]);
}

#[test]
fn the_functions_of_a_multi_function_job_that_return_the_same_state_get_distinct_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let jid = "20261201150433810977";
    let dir = tmp.path().join("jobs").join("ab").join("cdef");
    std::fs::create_dir_all(dir.join("web1")).expect("job folder");
    std::fs::write(dir.join("jid"), jid).expect("jid");
    let load = map(vec![
        (
            "fun",
            Mp::Array(vec!["state.sls".into(), "state.apply".into()]),
        ),
        (
            "arg",
            Mp::Array(vec![Mp::Array(vec!["web".into()]), Mp::Array(vec![])]),
        ),
        ("tgt", "web1".into()),
        ("tgt_type", "glob".into()),
        ("user", "root".into()),
        ("jid", jid.into()),
    ]);
    std::fs::write(dir.join(".load.p"), pack(&load)).expect("load");
    let key = "test_|-check_|-check_|-succeed_without_changes";
    let result = |ok: bool| {
        map(vec![(
            key,
            map(vec![
                ("result", ok.into()),
                ("comment", "checked".into()),
                ("changes", map(vec![])),
                ("__run_num__", 0.into()),
                ("start_time", "15:04:34.100000".into()),
                ("duration", 1.5.into()),
            ]),
        )])
    };
    let by_fun = |a: Mp, b: Mp| map(vec![("state.sls", a), ("state.apply", b)]);
    let ret = map(vec![
        ("return", by_fun(result(false), result(true))),
        ("retcode", by_fun(2.into(), 0.into())),
        ("success", by_fun(false.into(), true.into())),
    ]);
    std::fs::write(dir.join("web1").join("return.p"), pack(&ret)).expect("return");
    let run = Saltship::dry_run(&tmp.path().join("jobs")).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ids: BTreeSet<&str> = run
        .events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(run.events.len(), 2, "{:?}", run.events);
    assert_eq!(ids.len(), 2, "two results, one id: {:?}", run.events);
    let results: Vec<&Value> = run.events.iter().map(|e| &e["result"]).collect();
    assert!(results.contains(&&Value::Bool(false)), "{results:?}");
}

/// `event_id` as docs/events.md defines it, for a check of ids made before the change.
fn documented_id(parts: &[&str]) -> String {
    format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(parts.join("\0").as_bytes())
    )
}

#[test]
fn single_function_jobs_keep_their_event_ids_and_a_multi_function_jobs_add_the_index() {
    let (_tmp, jobs) = cache_copy("jobs");
    let run = Saltship::dry_run(&jobs).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(testdata("cases.json")).expect("cases"))
            .expect("JSON");
    let multi: BTreeSet<&str> = cases
        .iter()
        .filter(|c| c["fun"].as_str().is_some_and(|f| f.contains(',')))
        .filter_map(|c| c["jid"].as_str())
        .collect();
    assert!(!multi.is_empty());
    let mut checked = (0, 0);
    for e in &run.events {
        let jid = e["jid"].as_str().expect("jid");
        let key = e["state_name"].as_str().or(e["fun"].as_str()).expect("key");
        let minion = e["minion_id"].as_str().expect("minion");
        let want = if multi.contains(jid) {
            // test.ping,state.sls: the states are state.sls's, function 1.
            checked.1 += 1;
            documented_id(&[jid, minion, key, "1"])
        } else {
            checked.0 += 1;
            documented_id(&[jid, minion, key])
        };
        assert_eq!(e["event_id"], want.as_str(), "{e}");
    }
    assert!(checked.0 > 100 && checked.1 > 0, "{checked:?}");
}

/// A msgpack str of raw bytes, as a Python 2 master packed names that are not UTF-8.
fn raw_str(bytes: &[u8]) -> Vec<u8> {
    assert!(bytes.len() < 32);
    let mut out = vec![0xa0 | bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

#[test]
fn minion_ids_that_are_not_utf8_are_one_name_in_the_cache_the_pki_folder_and_the_metrics() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some((_rsyslog, target)) = json_receiver(tmp.path()) else {
        return;
    };
    let jobs = tmp.path().join("jobs");
    let jid = "20261201150241424111";
    let dir = jobs.join("12").join("3456");
    let minions: [&[u8]; 2] = [b"web\xff1", b"web\xfe1"];
    let name = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_owned();
    for m in minions {
        std::fs::create_dir_all(dir.join(name(m))).expect("minion folder");
        let ret = map(vec![
            ("return", true.into()),
            ("retcode", 0.into()),
            ("success", true.into()),
        ]);
        std::fs::write(dir.join(name(m)).join("return.p"), pack(&ret)).expect("return");
    }
    std::fs::write(dir.join("jid"), jid).expect("jid");
    let load = map(vec![
        ("fun", "test.ping".into()),
        ("arg", Mp::Array(vec![])),
        ("tgt", "web*".into()),
        ("tgt_type", "glob".into()),
        ("user", "root".into()),
        ("jid", jid.into()),
    ]);
    std::fs::write(dir.join(".load.p"), pack(&load)).expect("load");
    let mut targets = vec![0x92];
    for m in minions {
        targets.extend(raw_str(m));
    }
    std::fs::write(dir.join(".minions.p"), targets).expect("minions");
    let pki = tmp.path().join("pki");
    std::fs::create_dir_all(pki.join("minions")).expect("pki");
    for m in minions.iter().chain([&&b"old\xff"[..]]) {
        std::fs::write(pki.join("minions").join(name(m)), "key").expect("key");
    }
    let prom = tmp.path().join("saltship.prom");
    let run = Saltship::sync(&jobs)
        .state_file(&tmp.path().join("state"))
        .target(&target)
        .more([
            "--events",
            "all",
            "--pki-dir",
            p(&pki),
            "--metrics-file",
            p(&prom),
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events = wait_for(tmp.path(), |e| e["event_type"] == "job");
    let job: Vec<&Value> = events.iter().filter(|e| e["jid"] == jid).collect();
    assert_eq!(job.len(), 1, "{events:?}");
    assert_eq!(job[0]["minions_targeted"], 2, "{}", job[0]);
    assert_eq!(job[0]["minions_returned"], 2, "{}", job[0]);
    assert_eq!(
        job[0]["minions_missing"],
        serde_json::json!([]),
        "{}",
        job[0]
    );
    let text = std::fs::read_to_string(&prom).expect("metrics file");
    let silent: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("saltship_minion_silent{"))
        .collect();
    // The label escapes the backslash of `\xff`.
    assert_eq!(
        silent,
        ["saltship_minion_silent{minion=\"old\\\\xff\"} 1"],
        "{text}"
    );
    assert!(!text.contains('\u{fffd}'), "a name decoded lossily: {text}");
    for m in ["web\\\\xff1", "web\\\\xfe1"] {
        let series = format!("saltship_minion_missed_jobs{{minion=\"{m}\"}} 0");
        assert!(text.lines().any(|l| l == series), "{series}: {text}");
    }
}

/// A master of masters' `.load.p` (`order_masters` puts the publish timeout `to` in it).
fn syndicated(job: &Publisher) {
    let path = job.dir.join(".load.p");
    let mut load =
        rmpv::decode::read_value(&mut &std::fs::read(&path).expect("load")[..]).expect("a .load.p");
    if let Mp::Map(entries) = &mut load {
        entries.push(("to".into(), 5.into()));
    }
    std::fs::write(&path, pack(&load)).expect("load");
}

#[test]
fn a_master_of_masters_job_waits_for_its_syndics_minions() {
    // Salt's two marks of such a master: `to` in `.load.p`, its `syndics/` folder.
    for by_load in [true, false] {
        master_of_masters_job(by_load);
    }
}

fn master_of_masters_job(by_load: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some((_rsyslog, target)) = json_receiver(tmp.path()) else {
        return;
    };
    let jobs = tmp.path().join("jobs");
    // Its direct minions all returned; a syndic's `.minions.<id>.p` is not there yet.
    let job = Publisher::new(&jobs, "test-ping", &jid_now(3));
    job.publish(&[], &mut Gaps::none());
    if by_load {
        syndicated(&job);
    } else {
        std::fs::create_dir(tmp.path().join("syndics")).expect("syndics");
        std::fs::write(tmp.path().join("syndics/syndicmaster"), "").expect("marker");
    }
    let state = tmp.path().join("state");
    let sync = |wait: &str| {
        Saltship::sync(&jobs)
            .state_file(&state)
            .target(&target)
            .more(["--events", "all", "--return-wait", wait])
            .run()
    };
    let early = sync("1h");
    assert_eq!(early.code, 0, "{}", early.stderr);
    assert!(
        early
            .stderr
            .contains("1 jobs are younger than --return-wait"),
        "by_load {by_load}: shipped final before its syndics told their minions: {}",
        early.stderr
    );
    // The syndic's list lands, one of its minions never returns: after the wait it is
    // targeted, and missing.
    std::fs::write(
        job.dir.join(".minions.syndic1.p"),
        pack(&Mp::Array(vec!["deep-minion".into()])),
    )
    .expect("syndic minions");
    std::thread::sleep(Duration::from_secs(2));
    let late = sync("1s");
    assert_eq!(late.code, 0, "{}", late.stderr);
    let events = wait_for(tmp.path(), |e| {
        e["jid"] == job.jid.as_str() && e["minion_id"] == "deep-minion"
    });
    let (_, targeted, _) = job.expected(&[]);
    let ev = events
        .iter()
        .find(|e| e["jid"] == job.jid.as_str() && e.get("minions_targeted").is_some())
        .expect("the job event");
    assert_eq!(ev["minions_targeted"], targeted.len() + 1, "{ev}");
    assert!(
        events
            .iter()
            .any(|e| e["jid"] == job.jid.as_str() && e["minion_id"] == "deep-minion"),
        "no no_return event for the syndic's minion: {events:?}"
    );
}
