//! Files an operator (or an attacker) can leave in the cache: unreadable for a while, not a
//! file at all, too big, under a name that is not UTF-8, with secrets in their arguments. A
//! transient error is retried at the next run; only a file broken for good is recorded.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::receiver::{event_ids, Faults, Receiver};
use crate::common::{cache_copy, p, root_for, Run, Saltship};

fn warnings(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("saltship: warning:"))
        .collect()
}

/// The return.p files of a cache, sorted.
fn returns(jobs: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(jobs).expect("jobs") {
        for job in std::fs::read_dir(prefix.expect("entry").path()).expect("prefix") {
            let job = job.expect("entry").path();
            for minion in std::fs::read_dir(&job).expect("job") {
                let p = minion.expect("entry").path().join("return.p");
                if p.is_file() {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// The ids of the events of the return at `ret`, from a dry run.
fn events_of(all: &Run, ret: &Path) -> Vec<String> {
    let minion = ret.parent().and_then(|m| m.file_name()).expect("minion");
    let job = ret.parent().and_then(Path::parent).expect("job");
    let jid = std::fs::read_to_string(job.join("jid")).expect("jid");
    all.events
        .iter()
        .filter(|e| e["jid"] == jid.as_str() && e["minion_id"] == minion.to_str().expect("name"))
        .map(|e| e["event_id"].as_str().expect("id").to_owned())
        .collect()
}

/// A return.p whose dry run gives events, and those events' ids.
fn return_with_events(jobs: &Path) -> (PathBuf, Vec<String>) {
    let all = Saltship::dry_run(jobs).run();
    returns(jobs)
        .into_iter()
        .map(|p| {
            let ids = events_of(&all, &p);
            (p, ids)
        })
        .find(|(_, ids)| !ids.is_empty())
        .expect("a return with events")
}

/// `saltship sync` run as `nobody`, for whom file modes count (root reads a mode 000 file).
fn sync_as_nobody(jobs: &Path, state: &Path, target: &str) -> Run {
    Saltship::sync(jobs)
        .state_file(state)
        .target(target)
        .more(["--deliver-timeout", "60s"])
        .under(&NOBODY)
        .run_text()
}

/// `setpriv` words that run a command as `nobody`.
const NOBODY: [&str; 5] = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    "--",
];

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `chmod 000` on a return and `chmod 600` on a `jid` (root's), a sync as an unprivileged user:
/// both named with "Permission denied", exit 1, not recorded; the modes fixed, the next sync
/// ships exactly what was held back.
#[test]
fn permission_denied_is_retried_at_the_next_run() {
    if !root_for("dropping privileges") {
        return;
    }
    let (tmp, jobs) = cache_copy("jobs");
    chmod(tmp.path(), 0o755);
    let state_dir = tmp.path().join("state");
    std::fs::create_dir(&state_dir).expect("mkdir");
    chmod(&state_dir, 0o777);
    let state = state_dir.join("state");
    let (locked, held_back) = return_with_events(&jobs);
    // A jid file of another job with events.
    let other_job = returns(&jobs)
        .into_iter()
        .map(|p| p.parent().and_then(Path::parent).expect("job").to_owned())
        .find(|j| Some(j.as_path()) != locked.parent().and_then(Path::parent))
        .expect("another job");
    let jid_file = other_job.join("jid");
    chmod(&locked, 0o000);
    chmod(&jid_file, 0o600);
    let receiver = Receiver::start(Faults::default());
    let first = sync_as_nobody(&jobs, &state, &receiver.target());
    assert_eq!(first.code, 1, "{}", first.stderr);
    let w = warnings(&first);
    assert_eq!(w.len(), 2, "{}", first.stderr);
    for file in [&locked, &jid_file] {
        assert!(
            w.iter()
                .any(|l| l.contains(p(file)) && l.contains("Permission denied")),
            "{}",
            first.stderr
        );
    }
    let after_first = event_ids(&receiver.lines_so_far());
    assert!(held_back.iter().all(|id| !after_first.contains(id)));
    // The same again: still not recorded, still warned.
    let second = sync_as_nobody(&jobs, &state, &receiver.target());
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert_eq!(warnings(&second).len(), 2, "{}", second.stderr);
    chmod(&locked, 0o644);
    chmod(&jid_file, 0o644);
    let third = sync_as_nobody(&jobs, &state, &receiver.target());
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(warnings(&third).is_empty(), "{}", third.stderr);
    let lines = receiver.finish();
    let got = event_ids(&lines);
    assert!(held_back.iter().all(|id| got.contains(id)));
    let all = Saltship::dry_run(&jobs).run();
    let missing = all
        .events
        .iter()
        .filter(|e| !got.contains(e["event_id"].as_str().expect("id")))
        .count();
    assert_eq!(missing, 0, "{}", third.stderr);
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let t = entry.file_type().expect("type");
        if t.is_dir() {
            out.extend(walk(&entry.path()));
        } else if t.is_file() {
            out.push(entry.path());
        }
    }
    out
}

/// Whether this test runs as root (and so can drop to `nobody`).
/// A FIFO where a return should be: one warning, no hang, recorded (it will not turn into a
/// return); a file over --max-return-bytes: one warning per run, never recorded, shipped once the
/// cap allows it.
#[test]
fn a_fifo_is_one_warning_and_an_oversize_file_waits_for_a_bigger_cap() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let all = returns(&jobs);
    let fifo = &all[0];
    std::fs::remove_file(fifo).expect("rm");
    let made = Command::new("mkfifo").arg(fifo).status().expect("mkfifo");
    assert!(made.success());
    // The biggest file of the cache (the big-output return): the cap lets every other one in.
    let mut sizes: Vec<(u64, PathBuf)> = walk(&jobs)
        .into_iter()
        .map(|p| (std::fs::metadata(&p).expect("size").len(), p))
        .collect();
    sizes.sort();
    let (size, big) = sizes.pop().expect("files");
    let cap = sizes.last().expect("files").0;
    assert!(cap < size && big.ends_with("return.p"));
    let big_ids = events_of(&Saltship::dry_run(&jobs).run(), &big);
    assert!(!big_ids.is_empty());
    let receiver = Receiver::start(Faults::default());
    let sync = |cap: u64| {
        Saltship::sync(&jobs)
            .state_file(&state)
            .target(&receiver.target())
            .more(["--max-return-bytes", &cap.to_string()])
            .run()
    };
    let first = sync(cap);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let w = warnings(&first);
    assert!(
        w.iter()
            .any(|l| l.contains(p(fifo)) && l.contains("not a regular file (a FIFO)")),
        "{}",
        first.stderr
    );
    assert!(
        w.iter()
            .any(|l| l.contains(p(&big)) && l.contains("more than --max-return-bytes")),
        "{}",
        first.stderr
    );
    let second = sync(cap);
    assert_eq!(second.code, 1, "{}", second.stderr);
    let w = warnings(&second);
    assert_eq!(w.len(), 1, "the FIFO is recorded: {}", second.stderr);
    assert!(w[0].contains(p(&big)), "{}", second.stderr);
    let got = event_ids(&receiver.lines_so_far());
    assert!(big_ids.iter().all(|id| !got.contains(id)));
    let third = sync(size);
    assert_eq!(third.code, 0, "{}", third.stderr);
    let got = event_ids(&receiver.finish());
    assert!(big_ids.iter().all(|id| got.contains(id)));
    // A dry run with the FIFO: done in bounded time (the helper's own timeout is 60 s).
    let dry = Saltship::dry_run(&jobs).run();
    assert_eq!(dry.code, 1, "{}", dry.stderr);
    assert_eq!(warnings(&dry).len(), 1, "{}", dry.stderr);
}

/// A minion folder whose name is not UTF-8 is read by its raw name.
#[test]
fn a_minion_folder_named_in_latin1_ships() {
    use std::os::unix::ffi::OsStrExt;
    let (_tmp, jobs) = cache_copy("jobs");
    let (ret, ids) = return_with_events(&jobs);
    let minion = ret.parent().expect("minion");
    let mut name = minion.file_name().expect("name").as_bytes().to_vec();
    name.push(0xe9);
    let odd = minion.with_file_name(std::ffi::OsStr::from_bytes(&name));
    std::fs::rename(minion, &odd).expect("rename");
    let run = Saltship::dry_run(&jobs).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected = format!(
        "{}\\xe9",
        minion.file_name().and_then(|n| n.to_str()).expect("name")
    );
    let shipped = run
        .events
        .iter()
        .filter(|e| e["minion_id"] == expected.as_str())
        .count();
    assert_eq!(shipped, ids.len(), "{}", run.stderr);
}

/// `password=`, `passphrase=`, `sshpass=`, `Authorization=` and friends never leave the machine,
/// in any format; `pillar` is masked at any depth; `--mask-arg` adds names.
#[test]
fn secret_arguments_are_masked_in_every_format() {
    let (_tmp, jobs) = cache_copy("jobs");
    let (ret, _) = return_with_events(&jobs);
    let load_path = ret
        .parent()
        .and_then(Path::parent)
        .expect("job")
        .join(".load.p");
    let mut load = rmpv::decode::read_value(&mut &std::fs::read(&load_path).expect("load")[..])
        .expect("msgpack");
    let args = rmpv::Value::Array(vec![
        "bob".into(),
        rmpv::Value::Map(vec![
            ("password".into(), "hunter2-pw".into()),
            ("db_token".into(), "hunter2-tok".into()),
            ("community".into(), "hunter2-snmp".into()),
            (
                "kwarg".into(),
                rmpv::Value::Map(vec![(
                    "pillar".into(),
                    rmpv::Value::Map(vec![("x".into(), "hunter2-pillar".into())]),
                )]),
            ),
            ("__kwarg__".into(), true.into()),
        ]),
        "api_key=hunter2-raw".into(),
        "passphrase=hunter2-phrase".into(),
        "sshpass=hunter2-ssh".into(),
        "Authorization=Bearer hunter2-bearer".into(),
        rmpv::Value::Map(vec![
            ("aws_secret_key".into(), "hunter2-aws".into()),
            ("credentials".into(), "hunter2-cred".into()),
            ("__kwarg__".into(), true.into()),
        ]),
    ]);
    if let rmpv::Value::Map(entries) = &mut load {
        for (k, v) in entries.iter_mut() {
            if k.as_str() == Some("arg") {
                *v = args.clone();
            }
        }
    }
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &load).expect("encode");
    std::fs::write(&load_path, buf).expect("write");
    for format in ["json", "ecs", "gelf", "syslog"] {
        let out = Saltship::dry_run(&jobs)
            .more(["--format", format, "--mask-arg", "community"])
            .run_text();
        assert_eq!(out.code, 0);
        let text = out.stdout;
        assert!(!text.contains("hunter2"), "{format}: a secret shipped");
        assert!(text.contains("********"), "{format}");
        for name in ["passphrase=", "sshpass=", "Authorization="] {
            assert!(text.contains(name), "{format}: {name} left out, not masked");
        }
    }
    // Without --mask-arg the extra name ships; --show-pillar-args ships the pillar.
    let run = Saltship::dry_run(&jobs).more(["--show-pillar-args"]).run();
    assert!(run.stdout.contains("hunter2-snmp") && run.stdout.contains("hunter2-pillar"));
    assert!(!run.stdout.contains("hunter2-pw") && !run.stdout.contains("hunter2-raw"));
}

/// A memory budget smaller than any return: each goes alone, and every event still ships, in
/// the same order.
#[test]
fn a_budget_smaller_than_every_return_ships_them_one_by_one() {
    let jobs = crate::common::testdata("jobs");
    let normal = Saltship::dry_run(&jobs).run();
    for threads in ["1", "2"] {
        let tiny = Saltship::dry_run(&jobs)
            .more(["--memory-budget", "1", "--threads", threads])
            .run();
        assert_eq!(tiny.code, normal.code, "{}", tiny.stderr);
        assert_eq!(tiny.events, normal.events);
    }
    let bad = Saltship::dry_run(&jobs)
        .more(["--memory-budget", "0"])
        .run();
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("bad --memory-budget"), "{}", bad.stderr);
}

/// A return too big for the memory left (here a `ulimit -v`) is a failed file, named with "out
/// of memory", not an abort; it ships once the memory is there.
#[test]
fn a_return_too_big_for_the_memory_left_is_a_failed_file() {
    let (_tmp, jobs) = cache_copy("jobs");
    let (ret, ids) = return_with_events(&jobs);
    let mut value =
        rmpv::decode::read_value(&mut &std::fs::read(&ret).expect("return")[..]).expect("msgpack");
    // One state's comment grows to 64 MB: too big to decode under the limit below.
    let states = match &mut value {
        rmpv::Value::Map(top) => top
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some("return"))
            .map(|(_, v)| v)
            .expect("new-style return"),
        _ => panic!("not a map"),
    };
    let rmpv::Value::Map(states) = states else {
        panic!("states not a map")
    };
    let rmpv::Value::Map(state) = &mut states[0].1 else {
        panic!("state not a map")
    };
    let comment = state
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some("comment"))
        .expect("comment");
    comment.1 = "x".repeat(64 << 20).into();
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &value).expect("encode");
    std::fs::write(&ret, buf).expect("write");
    let limited = Saltship::dry_run(&jobs)
        .more(["--threads", "2"])
        .under(&["sh", "-c", "ulimit -v 400000 && exec \"$0\" \"$@\""])
        .run_text();
    let stderr = limited.stderr;
    assert_eq!(limited.code, 1, "{stderr}");
    let w: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(w.len(), 1, "{stderr}");
    assert!(
        w[0].contains(p(&ret)) && w[0].ends_with("unreadable: out of memory"),
        "{stderr}"
    );
    let stdout = limited.stdout;
    assert!(stdout.lines().count() > 50, "the other returns still ship");
    assert!(ids.iter().all(|id| !stdout.contains(id.as_str())));
    let free = Saltship::dry_run(&jobs).run();
    assert_eq!(free.code, 0, "{}", free.stderr);
    assert!(ids
        .iter()
        .all(|id| free.events.iter().any(|e| e["event_id"] == id.as_str())));
}

/// `watch` takes an unreadable return up again at its next rescan, once it can be read.
#[test]
fn watch_ships_a_return_once_it_can_be_read() {
    if !root_for("dropping privileges") {
        return;
    }
    let (tmp, jobs) = cache_copy("jobs");
    chmod(tmp.path(), 0o755);
    let state_dir = tmp.path().join("state");
    std::fs::create_dir(&state_dir).expect("mkdir");
    chmod(&state_dir, 0o777);
    let (locked, held_back) = return_with_events(&jobs);
    let all = Saltship::dry_run(&jobs).run().events.len();
    chmod(&locked, 0o000);
    let receiver = Receiver::start(Faults::default());
    let watch = Saltship::watch(&jobs)
        .more(["--rescan-interval", "1s"])
        .state_file(&state_dir.join("state"))
        .target(&receiver.target())
        .under(&NOBODY)
        .spawn(std::process::Stdio::piped());
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while event_ids(&receiver.lines_so_far()).len() < n && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        event_ids(&receiver.lines_so_far())
    };
    let before = wait_for(all - held_back.len());
    assert_eq!(before.len(), all - held_back.len());
    // A few rescans with the file still unreadable.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(held_back
        .iter()
        .all(|id| !receiver.lines_so_far().concat().contains(id)));
    chmod(&locked, 0o644);
    let after = wait_for(all);
    std::process::Command::new("kill")
        .arg(watch.id().to_string())
        .status()
        .expect("kill");
    let out = watch.wait_with_output().expect("watch ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Files failed during the run: exit 1, as for sync.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(held_back.iter().all(|id| after.contains(id)), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
}
