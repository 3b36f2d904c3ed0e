//! Caches in the shapes older Salt versions wrote, and broken files, each derived from real
//! files (`testdata/legacy/<variant>/`, made by `testdata/derive-legacy.py`).

use crate::common::view::check;
use crate::common::{cache_copy, p, testdata, Run, Saltship};
use serde_json::Value;

fn variant(name: &str) -> Value {
    let path = testdata(&format!("legacy/{name}/expected.json"));
    serde_json::from_slice(&std::fs::read(path).expect("expected.json")).expect("JSON")
}

fn views(expected: &Value) -> Vec<Value> {
    expected["jobs"]
        .as_object()
        .expect("jobs")
        .values()
        .cloned()
        .collect()
}

fn run(name: &str, extra: &[&str]) -> Run {
    let (_tmp, jobs) = cache_copy(&format!("legacy/{name}/jobs"));
    Saltship::dry_run(&jobs).more(extra).run()
}

/// Old formats read the same as the real 3008 cache: every state once, equal to Salt's view.
#[test]
fn older_formats_give_every_state_result() {
    for name in [
        "bare-return",
        "py2-raw-strings",
        "md5-jid-dirs",
        "pid-suffix-jid",
        "no-load-p",
        "ext78-datetimes",
    ] {
        let run = run(name, &[]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let seen = check(&run, &views(&variant(name)));
        assert!(seen > 0, "{name}: nothing checked");
        assert_eq!(seen, run.events.len(), "{name}: extra events");
    }
}

#[test]
fn bare_return_has_no_retcode_and_no_load_has_no_fun() {
    let bare = run("bare-return", &[]);
    assert!(bare
        .events
        .iter()
        .all(|e| e["retcode"].is_null() && e["success"].is_null()));
    let no_load = run("no-load-p", &[]);
    assert!(!no_load.events.is_empty());
    assert!(no_load
        .events
        .iter()
        .all(|e| e["fun"].is_null() && e["fun_args"].is_null()));
}

#[test]
fn invalid_utf8_from_python2_masters_is_replaced() {
    let expected = variant("py2-invalid-utf8");
    let run = run("py2-invalid-utf8", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(check(&run, &views(&expected)), run.events.len());
    let fields = &expected["invalid_utf8_fields"];
    let of = |key: &Value| {
        run.events
            .iter()
            .find(|e| e["state_name"] == *key && e["minion_id"] == fields["minion"])
            .expect("state")
    };
    assert!(of(&fields["comment_of"])["comment"]
        .as_str()
        .expect("comment")
        .contains('\u{fffd}'));
    assert!(of(&fields["changes_diff_of"])["changes"]["diff"]
        .as_str()
        .expect("diff")
        .contains('\u{fffd}'));
}

#[test]
fn ext78_datetimes_become_iso8601() {
    let expected = variant("ext78-datetimes");
    let run = run("ext78-datetimes", &[]);
    let ext = &expected["ext78"];
    let ev = run
        .events
        .iter()
        .find(|e| e["state_name"] == ext["state"] && e["minion_id"] == ext["minion"])
        .expect("state");
    let text = ev["changes"].to_string();
    for payload in ext["payloads"].as_array().expect("payloads") {
        let p = payload.as_str().expect("payload");
        let iso = format!("{}-{}-{}{}", &p[..4], &p[4..6], &p[6..8], &p[8..]);
        assert!(text.contains(&iso), "{iso} not in {text}");
    }
}

/// Masters before Salt 3000 wrote jids in their local time: `--jid-timezone` puts them right.
#[test]
fn local_time_jids_with_the_masters_offset() {
    let expected = variant("local-time-jids");
    let offset = expected["master_utc_offset"].as_str().expect("offset");
    let run = run("local-time-jids", &["--jid-timezone", offset]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(check(&run, &views(&expected)), run.events.len());
    for job in views(&expected) {
        let start = chrono::DateTime::parse_from_rfc3339(
            job["_true_start_utc"].as_str().expect("true start"),
        )
        .expect("time");
        let first = run
            .events
            .iter()
            .find(|e| e["jid"] == job["jid"])
            .expect("events of job");
        let ts =
            chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().expect("timestamp"))
                .expect("time");
        let after = (ts - start).num_milliseconds();
        assert!(
            (0..60_000).contains(&after),
            "{}: first state {after} ms after the publish",
            job["jid"]
        );
    }
}

/// A broken file gives one warning naming it; everything else still ships; exit status 1.
#[test]
fn broken_files_are_named_and_the_rest_ships() {
    for name in [
        "empty-return",
        "truncated-return",
        "not-msgpack-return",
        "truncated-load",
    ] {
        let expected = variant(name);
        let run = run(name, &[]);
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        let bad_file = expected["bad_file"]
            .as_str()
            .expect("bad_file")
            .split(' ')
            .next()
            .expect("path");
        let warnings: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("saltship: warning:"))
            .collect();
        assert_eq!(warnings.len(), 1, "{name}: {}", run.stderr);
        assert!(
            warnings[0].contains(bad_file),
            "{name}: warning does not name {bad_file}: {}",
            warnings[0]
        );
        assert!(
            run.stderr.contains("1 failed files"),
            "{name}: {}",
            run.stderr
        );
        // The good job ships whole; so does the readable minion of the bad job.
        let good = views(&expected);
        let checked = check(&run, &good);
        assert!(checked > 0, "{name}");
        let bad_jid = expected["bad_jid"].as_str().expect("bad_jid");
        assert!(
            run.events
                .iter()
                .any(|e| e["jid"] == bad_jid && e["minion_id"] == "db1"),
            "{name}: db1 of the bad job did not ship"
        );
    }
}

#[test]
fn vanished_and_unreadable_files_do_not_stop_the_run() {
    let (_tmp, jobs) = cache_copy("jobs");
    let returns: Vec<_> = walk(&jobs)
        .into_iter()
        .filter(|p| p.ends_with("return.p"))
        .collect();
    assert!(returns.len() > 3);
    // A return.p that is a folder cannot be read (we run as root, so a mode 000 file would be).
    std::fs::remove_file(&returns[0]).expect("rm");
    std::fs::create_dir(&returns[0]).expect("mkdir");
    // A minion folder whose return.p has not landed yet is not an error.
    std::fs::remove_file(&returns[1]).expect("rm");
    let run = Saltship::dry_run(&jobs).run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(warnings[0].contains(p(&returns[0])), "{}", warnings[0]);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}
