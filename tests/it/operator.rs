//! An operator's first hour: the usual mistakes are caught with one line that says what to
//! do, and the tool explains itself (`saltship check`, journald priorities, `-v`).

use std::fs::File;
use std::path::Path;

use crate::common::receiver::{event_ids, Faults, Receiver};
use crate::common::{cache_copy, free_port, p, testdata, unstamp, Run, Saltship};

/// `saltship <args>` with `env`, a state file of its own, and no `SALTSHIP_*` from outside.
fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    Saltship::args(args).envs(env).run_text()
}

/// The jids of a cache's job folders (their `jid` files), oldest first.
fn fixture_jids(jobs: &Path) -> Vec<String> {
    let mut jids: Vec<String> = walkdir::WalkDir::new(jobs)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.depth() == 3 && e.file_name() == "jid")
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|j| j.trim().to_string())
        .collect();
    jids.sort();
    jids
}

/// Exit 2 with one line on stderr that contains `needle`.
fn assert_refused(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let out = run(args, env);
    let err = &out.stderr;
    assert_eq!(out.code, 2, "{args:?} {env:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?} lacks {needle:?}: {err}");
}

#[test]
fn a_folder_that_is_not_a_job_cache_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The master's cache folder, which holds jobs/.
    let master = tmp.path().join("master");
    std::fs::create_dir_all(master.join("jobs")).expect("mkdir");
    let jobs = master.join("jobs");
    for cmd in ["backfill", "sync"] {
        assert_refused(
            &[cmd, "--dry-run", "--cache-dir", p(&master)],
            &[],
            &format!("use --cache-dir {}", jobs.display()),
        );
    }
    // Some other folder: content, but no two-hex job folder.
    let other = tmp.path().join("etc");
    std::fs::create_dir_all(other.join("ssh")).expect("mkdir");
    std::fs::write(other.join("hosts"), "127.0.0.1 localhost\n").expect("write");
    assert_refused(
        &["backfill", "--dry-run", "--cache-dir", p(&other)],
        &[],
        "not a Salt job cache",
    );
    // A fresh master's empty jobs folder is fine.
    let out = run(&["sync", "--dry-run", "--cache-dir", p(&jobs)], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_newline_in_a_path_cannot_split_or_forge_a_log_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let evil = tmp.path().join("x\nsaltship: error: forged\r\x1b[2K");
    std::fs::create_dir_all(&evil).expect("mkdir");
    std::fs::write(evil.join("notes"), "").expect("write");
    let out = run(&["backfill", "--dry-run", "--cache-dir", p(&evil)], &[]);
    let err = &out.stderr;
    assert_eq!(out.code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        err.contains("x\\nsaltship: error: forged\\r\\u{1b}[2K"),
        "{err:?}"
    );
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
}

#[test]
fn boolean_variables_take_the_usual_spellings_and_a_bad_one_is_named() {
    let jobs = testdata("jobs");
    let args = ["backfill", "--cache-dir", p(&jobs)];
    for yes in ["1", "yes", "ON", "True", "y"] {
        let out = run(&args, &[("SALTSHIP_DRY_RUN", yes)]);
        assert_eq!(out.code, 0, "{yes}: {}", out.stderr);
        assert!(out.stdout.lines().count() > 100, "{yes}: events printed");
    }
    // Off means a real run, which needs a receiver.
    for no in ["0", "no", "OFF", "false"] {
        assert_refused(&args, &[("SALTSHIP_DRY_RUN", no)], "--target");
    }
    let out = run(&args, &[("SALTSHIP_DRY_RUN", "maybe")]);
    let err = &out.stderr;
    assert_eq!(out.code, 2, "{err}");
    assert!(
        err.contains("SALTSHIP_DRY_RUN") && err.contains("'maybe'"),
        "{err}"
    );
}

#[test]
fn a_dry_run_checks_the_delivery_options_as_a_real_run_does() {
    let jobs = testdata("jobs");
    let dry = ["backfill", "--dry-run", "--cache-dir", p(&jobs)];
    for (option, value) in [
        ("--max-rate", "1e-300"),
        ("--max-rate", "0"),
        ("--max-rate", "NaN"),
        ("--max-rate", "inf"),
        ("--deliver-timeout", "5"),
        ("--deliver-timeout", "0s"),
        ("--target", "logs.example.com"),
    ] {
        let args: Vec<&str> = dry.iter().copied().chain([option, value]).collect();
        assert_refused(&args, &[], option);
    }
    // The same on a real run, before anything is sent: never a panic (exit 101).
    let target = format!("127.0.0.1:{}", free_port());
    assert_refused(
        &[
            "sync",
            "--cache-dir",
            p(&jobs),
            "--target",
            &target,
            "--max-rate",
            "1e-300",
        ],
        &[],
        "--max-rate",
    );
}

/// Holds the state file's lock, as a running `watch` does.
fn hold_lock(state: &Path) -> File {
    let lock = File::create(state.with_file_name("state.lock")).expect("lock file");
    lock.try_lock().expect("lock");
    lock
}

#[test]
fn backfill_while_the_daemon_runs_ships_without_recording_and_sync_waits() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let _lock = hold_lock(&state);
    let receiver = Receiver::start(Faults::default());
    let target = receiver.target();
    let ship = |cmd| {
        Saltship::on(cmd, &jobs)
            .state_file(&state)
            .target(&target)
            .run_text()
    };
    let out = ship("backfill");
    let err = &out.stderr;
    assert_eq!(out.code, 0, "{err}");
    assert!(err.contains("without recording"), "{err}");
    let sync = ship("sync");
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    assert!(sync.stderr.contains("nothing done"), "{}", sync.stderr);
    let got = event_ids(&receiver.finish());
    let wanted = event_ids(
        &Saltship::dry_run(&jobs)
            .run()
            .events
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
    );
    assert_eq!(got, wanted, "the backfill shipped every event");
    assert!(
        !state.exists(),
        "nothing recorded while another holds the lock"
    );
}

/// keep_jobs is sync's and watch's: backfill, which replays history on purpose, has no such
/// option (refused as a flag, not read from the environment or the config file).
#[test]
fn the_keep_jobs_warning_is_for_sync_not_backfill() {
    let (tmp, jobs) = cache_copy("jobs");
    let target = format!("127.0.0.1:{}", free_port());
    // The fixtures are older than a second: past a keep_jobs of one second.
    let one = |cmd: &str, state: &str| {
        let state = tmp.path().join(state);
        let args = [
            cmd,
            "--cache-dir",
            p(&jobs),
            "--target",
            &target,
            "--deliver-timeout",
            "1s",
            "--state-file",
            p(&state),
        ];
        run(&args, &[("SALTSHIP_KEEP_JOBS", "1s")])
    };
    let out = one("backfill", "a");
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(!out.stderr.contains("still unshipped"), "{}", out.stderr);
    let out = one("sync", "b");
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("still unshipped"), "{}", out.stderr);
    let flag = run(
        &[
            "backfill",
            "--dry-run",
            "--cache-dir",
            p(&jobs),
            "--keep-jobs",
            "1s",
        ],
        &[],
    );
    assert_eq!(flag.code, 2, "{}", flag.stderr);
}

#[test]
fn verbose_says_what_was_skipped_and_why() {
    let jobs = testdata("jobs");
    // Half the fixtures' jobs are older than this.
    let jids = fixture_jids(&jobs);
    let since = ["--since", jids[jids.len() / 2].as_str()];
    let quiet = Saltship::dry_run(&jobs).more(since).run();
    assert!(!quiet.stderr.contains("debug"), "{}", quiet.stderr);
    let verbose = Saltship::dry_run(&jobs).more(since).arg("-v").run();
    assert!(
        verbose.stderr.contains("outside --since/--until, left out"),
        "{}",
        verbose.stderr
    );
    assert!(
        verbose
            .stderr
            .contains("nothing to ship (not a state run, or filtered out)"),
        "{}",
        verbose.stderr
    );
    assert!(
        verbose.stderr.lines().all(|l| l.starts_with("saltship: ")),
        "only saltship's own lines: {}",
        verbose.stderr
    );
}

/// `saltship <args>` with stderr on a file of its own and `JOURNAL_STREAM` naming that file
/// (`None`), or set to `journal`; what it wrote on stderr.
fn stderr_under_journal(args: &[&str], journal: Option<&str>) -> String {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("stderr");
    let file = File::create(&log).expect("log");
    let meta = file.metadata().expect("stat");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    Saltship::args(args)
        .env("JOURNAL_STREAM", journal.unwrap_or(&stream))
        .spawn(file)
        .wait()
        .expect("run saltship");
    std::fs::read_to_string(&log).expect("log")
}

#[test]
fn under_journald_lines_carry_their_syslog_priority() {
    let jobs = testdata("jobs");
    let bad = [
        "backfill",
        "--dry-run",
        "--max-rate",
        "0",
        "--cache-dir",
        p(&jobs),
    ];
    let good = ["backfill", "--dry-run", "--cache-dir", p(&jobs)];
    let error = stderr_under_journal(&bad, None);
    assert!(
        error.starts_with("<3>saltship: error: bad --max-rate"),
        "{error}"
    );
    let info = stderr_under_journal(&good, None);
    assert!(
        info.starts_with("<6>saltship: ") && info.contains(" jobs, "),
        "{info}"
    );
    // Another stream (stderr redirected elsewhere): plain lines, each after its time
    // (`unstamp` fails a line without one).
    let stamped = stderr_under_journal(&good, Some("1:1"));
    let plain = unstamp(&stamped);
    assert_ne!(plain, stamped);
    assert!(
        plain.starts_with("saltship: ") && plain.contains(" jobs, "),
        "{plain}"
    );
}

#[test]
fn check_says_ok_for_a_working_configuration() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let receiver = Receiver::start(Faults::default());
    let target = receiver.target();
    let args = [
        "check",
        "--cache-dir",
        p(&jobs),
        "--state-file",
        p(&state),
        "--target",
        &target,
    ];
    let out = run(&args, &[]);
    let text = &out.stdout;
    assert_eq!(out.code, 0, "{text}{}", out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines.iter().all(|l| l.starts_with("ok ")), "{text}");
    let jids = fixture_jids(&jobs);
    let returns = walkdir::WalkDir::new(&jobs)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.depth() == 4 && e.file_name() == "return.p")
        .count();
    let expect = format!(
        "a Salt job cache, {} jobs, {returns} returns, oldest jid {}, newest jid {}",
        jids.len(),
        jids[0],
        jids[jids.len() - 1]
    );
    assert!(text.contains(&expect), "{text}\nexpected: {expect}");
    assert!(
        text.contains(&format!("target {target}: accepts")),
        "{text}"
    );
    assert!(receiver.finish().is_empty(), "check sends no event");
    assert!(!state.exists(), "check records nothing");
}

#[test]
fn check_names_each_problem_and_exits_1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let master = tmp.path().join("master");
    std::fs::create_dir_all(master.join("jobs")).expect("mkdir");
    let state = tmp.path().join("state");
    std::fs::write(&state, "not json").expect("write");
    let target = format!("127.0.0.1:{}", free_port());
    let metrics = tmp.path().join("nope").join("saltship.prom");
    let args = [
        "check",
        "--cache-dir",
        p(&master),
        "--state-file",
        p(&state),
        "--target",
        &target,
        "--metrics-file",
        p(&metrics),
    ];
    let out = run(&args, &[]);
    let text = &out.stdout;
    assert_eq!(out.code, 1, "{text}{}", out.stderr);
    let fails: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(fails.len(), 4, "{text}");
    assert!(fails[0].contains("use --cache-dir"), "{text}");
    assert!(
        fails[1].contains("damaged") && fails[1].contains("--reset-state"),
        "{text}"
    );
    assert!(fails[2].contains(&target), "{text}");
    assert!(fails[3].contains("metrics file"), "{text}");
    // A held lock is named too.
    std::fs::remove_file(&state).expect("rm");
    let _lock = hold_lock(&state);
    let out = run(&args, &[]);
    assert!(
        out.stdout.contains("FAIL another saltship holds"),
        "{}",
        out.stdout
    );
    // No target at all.
    let out = run(&args[..5], &[]);
    assert!(
        out.stdout.contains("FAIL targets: none given"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_release_binary_is_stripped_and_a_profiling_profile_keeps_symbols() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("Cargo.toml");
    let section = |name: &str| -> String {
        let start = manifest
            .find(&format!("[profile.{name}]"))
            .unwrap_or_else(|| panic!("[profile.{name}] in Cargo.toml"));
        let rest = &manifest[start + 1..];
        rest[..rest.find("\n[").unwrap_or(rest.len())].to_owned()
    };
    let release = section("release");
    assert!(release.contains("strip = true"), "{release}");
    assert!(!release.contains("debug ="), "{release}");
    let profiling = section("profiling");
    assert!(
        profiling.contains("inherits = \"release\"")
            && profiling.contains("debug = true")
            && profiling.contains("strip = false"),
        "{profiling}"
    );
}
