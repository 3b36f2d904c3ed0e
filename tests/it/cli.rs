//! Usage and configuration errors: one line on stderr naming what is wrong, exit status 2,
//! nothing on stdout.

use crate::common::{p, Saltship};

fn assert_usage_error(args: &[&str], needle: &str) {
    let run = Saltship::args(args).run();
    assert_eq!(run.code, 2, "exit status for {args:?}: {}", run.stderr);
    assert!(run.stdout.is_empty(), "stdout for {args:?}: {}", run.stdout);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "stderr for {args:?} lacks {needle:?}: {}",
        run.stderr
    );
}

#[test]
fn missing_cache_folder_is_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nope");
    let missing = p(&missing);
    assert_usage_error(&["backfill", "--dry-run", "--cache-dir", missing], missing);
    let run = Saltship::args(["backfill", "--dry-run", "--cache-dir", missing]).run();
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("saltship: "), "{}", run.stderr);
}

#[test]
fn bad_times_and_options_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = p(tmp.path());
    assert_usage_error(
        &[
            "backfill",
            "--dry-run",
            "--cache-dir",
            dir,
            "--since",
            "yesterday",
        ],
        "yesterday",
    );
    assert_usage_error(
        &[
            "backfill",
            "--dry-run",
            "--cache-dir",
            dir,
            "--since",
            "1h",
            "--until",
            "2h",
        ],
        "--since",
    );
    assert_usage_error(
        &[
            "backfill",
            "--dry-run",
            "--cache-dir",
            dir,
            "--jid-timezone",
            "mars",
        ],
        "mars",
    );
    assert_usage_error(
        &[
            "backfill",
            "--dry-run",
            "--cache-dir",
            dir,
            "--no-such-option",
        ],
        "--no-such-option",
    );
    assert_usage_error(&["backfill", "--cache-dir", dir], "--dry-run");
}

#[test]
fn an_empty_cache_is_not_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = Saltship::args(["backfill", "--dry-run", "--cache-dir", p(tmp.path())]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.events.is_empty());
    assert!(
        run.stderr.contains("0 jobs, 0 returns, 0 events"),
        "{}",
        run.stderr
    );
}

/// A missing cache folder says where Salt keeps it and which option to give; a state folder the
/// user cannot write says which user to run as or which option to give.
#[test]
fn errors_say_what_to_do() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nope");
    let run = Saltship::args(["sync", "--dry-run", "--cache-dir", p(&missing)]).run_text();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("/var/cache/salt/master/jobs") && run.stderr.contains("--cache-dir"),
        "{}",
        run.stderr
    );
    if !crate::common::root_for("dropping privileges") {
        return;
    }
    let (tmp, jobs) = crate::common::cache_copy("jobs");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state_dir = tmp.path().join("state");
    std::fs::create_dir(&state_dir).expect("mkdir");
    let run = Saltship::sync(&jobs)
        .state_file(&state_dir.join("state"))
        .target("127.0.0.1:9")
        .under(&[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
        ])
        .run_text();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("state.lock: Permission denied"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--state-file"), "{}", run.stderr);
}

/// `--since 2026-12-01` is midnight UTC of that day; a stated zone moves it.
#[test]
fn plain_dates_are_midnight() {
    let (_tmp, jobs) = crate::common::cache_copy("jobs");
    let all = Saltship::backfill(&jobs).arg("--dry-run").run();
    assert_eq!(all.code, 0, "{}", all.stderr);
    let day = all
        .events
        .iter()
        .filter_map(|e| e["timestamp"].as_str())
        .min()
        .expect("events")[..10]
        .to_owned();
    let since_day = Saltship::backfill(&jobs)
        .more(["--dry-run", "--since", &day])
        .run();
    assert_eq!(since_day.code, 0, "{}", since_day.stderr);
    assert_eq!(
        since_day.events.len(),
        all.events.len(),
        "the first day is included"
    );
    let after = Saltship::backfill(&jobs)
        .more(["--dry-run", "--since", "2999-01-01"])
        .run();
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert!(after.events.is_empty());
    let bad = Saltship::backfill(&jobs)
        .more(["--dry-run", "--since", "2026-13-01"])
        .run_text();
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// The exit statuses a text lists: `  N  ...` lines of `--help`, `\fBN\fR` items of a man page.
fn statuses(text: &str, pattern: &str) -> Vec<u8> {
    let mut found: Vec<u8> = text
        .lines()
        .filter_map(|l| l.strip_prefix(pattern))
        .filter_map(|l| l.chars().next()?.to_digit(10))
        .map(|d| d as u8)
        .collect();
    found.dedup();
    found
}

#[test]
fn each_command_help_lists_the_exit_statuses_of_its_man_page() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for cmd in ["watch", "sync", "backfill", "check"] {
        let help = Saltship::args([cmd, "--help"]).run_text();
        assert_eq!(help.code, 0, "{}", help.stderr);
        let (_, status) = help
            .stdout
            .split_once("Exit status")
            .unwrap_or_else(|| panic!("{cmd} --help has no exit status:\n{}", help.stdout));
        let page = root.join(format!("man/src/saltship-{cmd}.1.in"));
        let man = std::fs::read_to_string(&page).expect("man page source");
        let (_, man_status) = man.split_once(".SH \"EXIT STATUS\"").expect("EXIT STATUS");
        let man_status = man_status.split("\n.SH ").next().unwrap_or_default();
        assert_eq!(
            statuses(status, "  "),
            statuses(man_status, "\\fB"),
            "{cmd} --help and {}",
            page.display()
        );
        // Another command's statuses are not this one's.
        if cmd != "check" {
            let mut words = status.split(|c: char| !c.is_alphanumeric());
            assert!(!words.any(|w| w == "check"), "{cmd} --help: {status}");
        }
    }
}

/// `check` on a target whose name does not resolve gets the DNS hint, not the firewall one.
#[test]
fn check_gives_a_dns_failure_the_dns_hint() {
    let (_tmp, jobs) = crate::common::cache_copy("jobs");
    let run = Saltship::check(&jobs)
        .target("nosuchhost.invalid:6000")
        .run_text();
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    let line = all
        .lines()
        .find(|l| l.contains("nosuchhost.invalid"))
        .expect("a target line");
    assert!(line.contains("does not resolve"), "{line}");
    assert!(!line.contains("firewall"), "{line}");
}

/// A pattern of only blanks (an `EnvironmentFile` line `SALTSHIP_MINION= `, or `--fun ' '`)
/// would match nothing: refused with exit 2 and one line, as an empty one is.
#[test]
fn a_blank_glob_is_refused_like_an_empty_one() {
    let (_tmp, jobs) = crate::common::cache_copy("jobs");
    for (env, value, option) in [
        ("SALTSHIP_MINION", " ", "--minion"),
        ("SALTSHIP_MINION", "\t", "--minion"),
        ("SALTSHIP_FUN", "  ", "--fun"),
    ] {
        let run = Saltship::dry_run(&jobs).env(env, value).run_text();
        assert_eq!(run.code, 2, "{env}={value:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("bad {option}")),
            "{}",
            run.stderr
        );
    }
    let run = Saltship::dry_run(&jobs).more(["--minion", " "]).run_text();
    assert_eq!(run.code, 2, "{}", run.stderr);
}
