//! The first five minutes: the README's first command on a fresh clone prints no warning, and
//! a bad option is one line at once, before anything about the cache.

use serde_json::Value;

use crate::common::{cache_copy, job_dir, testdata, Saltship};

/// The jids of the main fixture's runner jobs (`cases.json`).
fn runner_jids() -> Vec<String> {
    let text = std::fs::read(testdata("cases.json")).expect("cases");
    let cases: Vec<Value> = serde_json::from_slice(&text).expect("JSON");
    cases
        .iter()
        .filter(|c| c["fun"].as_str().is_some_and(|f| f.starts_with("runner.")))
        .map(|c| c["jid"].as_str().expect("jid").to_owned())
        .collect()
}

/// A clone gives every file the time of the checkout, as this copy does: the folders' times
/// say nothing of the zone, but the runner jobs' `.load.p` (the runner's return, saved only
/// by Salt 3006.3 and later) say the jids are UTC.
#[test]
fn the_readme_first_command_on_a_fresh_clone_prints_no_warning() {
    let (_tmp, jobs) = cache_copy("jobs");
    let run = Saltship::args(["backfill", "--dry-run", "--cache-dir"])
        .arg(&jobs)
        .env_remove("SALTSHIP_JID_TIMEZONE")
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert_eq!(
        run.ids::<Vec<String>>(),
        Saltship::dry_run(&jobs).run().ids::<Vec<String>>(),
        "not read as UTC"
    );
}

/// Without a shape only Salt 3006.3+ writes, a copied cache could be an old master's
/// local-time jids: the warning stays.
#[test]
fn a_copied_cache_without_runner_jobs_still_warns_of_the_zone() {
    let (_tmp, jobs) = cache_copy("jobs");
    let runners = runner_jids();
    assert!(runners.len() >= 3, "the fixture has runner jobs");
    for jid in runners {
        std::fs::remove_dir_all(job_dir(&jobs, &jid)).expect("remove a runner job");
    }
    let run = Saltship::dry_run(&jobs)
        .env_remove("SALTSHIP_JID_TIMEZONE")
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("set --jid-timezone"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
}

/// On a copied 2019.2 cache (the zone guess warns), a bad option is the only line.
#[test]
fn a_bad_option_is_one_line_before_anything_about_the_cache() {
    let (_tmp, jobs) = cache_copy("salt2019/jobs");
    for (command, bad) in [
        ("backfill", ["--max-rate", "1e-300"]),
        ("sync", ["--max-rate", "1e-300"]),
        ("watch", ["--max-rate", "1e-300"]),
        ("backfill", ["--since", "yesterday"]),
        ("sync", ["--keep-jobs", "forever"]),
        ("watch", ["--rescan-interval", "0s"]),
    ] {
        let run = Saltship::on(command, &jobs)
            .env_remove("SALTSHIP_JID_TIMEZONE")
            .target("127.0.0.1:9")
            .more(bad)
            .run();
        assert_eq!(run.code, 2, "{command} {bad:?}: {}", run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{command} {bad:?}: {}", run.stderr);
        assert!(
            lines[0].contains(bad[0]),
            "{command} {bad:?}: {}",
            run.stderr
        );
    }
}

/// A range the wrong way round is a usage error too, checked before the zone guess warns.
#[test]
fn a_range_the_wrong_way_round_is_one_line_before_anything_about_the_cache() {
    let (_tmp, jobs) = cache_copy("salt2019/jobs");
    let run = Saltship::on("backfill", &jobs)
        .env_remove("SALTSHIP_JID_TIMEZONE")
        .target("127.0.0.1:9")
        .more(["--since", "2021-01-01", "--until", "2020-01-01"])
        .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains("--since must be before --until"),
        "{}",
        run.stderr
    );
}

/// Runs `run` with stderr (and stdin) on a pseudo-terminal of 160 columns and stdout into the
/// file `stdout`; the test's stdout is what the terminal showed.
const ON_A_PTY: &str = r#"
import fcntl, os, pty, struct, subprocess, sys, termios
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
with open(sys.argv[1], "wb") as out:
    child = subprocess.Popen(sys.argv[2:], stdin=slave, stdout=out, stderr=slave)
os.close(slave)
shown = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:
        break
    if not chunk:
        break
    shown += chunk
sys.stdout.buffer.write(shown)
sys.exit(child.wait())
"#;

/// What a terminal showed, one frame or line a line: escape sequences (cursor moves, clears)
/// and carriage returns start a new one.
fn frames(shown: &str) -> String {
    let mut plain = String::new();
    let mut chars = shown.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    while chars.next().is_some_and(|c| !c.is_ascii_alphabetic()) {}
                }
                plain.push('\n');
            }
            '\r' => plain.push('\n'),
            c => plain.push(c),
        }
    }
    plain
}

/// The bar's last frame: (position, total, returns/s, seconds).
fn last_frame(shown: &str) -> (u64, u64, f64, f64) {
    let plain = frames(shown);
    let frame = plain
        .lines()
        .rfind(|l| l.contains(" returns, ") && l.contains(" s]"))
        .unwrap_or_else(|| panic!("no bar shown:\n{plain}"));
    let number = |after: &str, before: &str| -> f64 {
        let start = frame.find(after).map(|i| i + after.len()).unwrap_or(0);
        let rest = &frame[start..];
        let end = rest
            .find(before)
            .unwrap_or_else(|| panic!("{before}: {frame}"));
        rest[..end]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {frame}"))
    };
    let counts = frame
        .split_whitespace()
        .find(|w| w.contains('/'))
        .expect("pos/len");
    let (pos, len) = counts.split_once('/').expect("pos/len");
    (
        pos.parse().expect("pos"),
        len.parse().expect("len"),
        number("[", " returns/s"),
        number(", in ", " s]"),
    )
}

/// The `return.p` files in the cache, counted here.
fn returns_in(jobs: &std::path::Path) -> u64 {
    let files = walkdir::WalkDir::new(jobs).into_iter().flatten();
    files.filter(|e| e.file_name() == "return.p").count() as u64
}

/// The returns the summary line counts.
fn summary_returns(shown: &str) -> u64 {
    let plain = frames(shown);
    let line = plain
        .lines()
        .find(|l| l.contains(" jobs, ") && l.contains(" returns, "))
        .unwrap_or_else(|| panic!("no summary:\n{shown}"));
    let (before, _) = line.split_once(" returns, ").expect("returns");
    let n = before.rsplit(' ').next().expect("a number");
    n.parse().unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// On a terminal, `backfill` and `sync` show every return of the run from the start (what the
/// summary counts: those read, and those passed over with a job that runs no state); the bar
/// ends on its total, and its rate is what it did over the time it shows.
#[test]
fn the_bar_shows_the_whole_run_and_ends_on_its_total_at_its_real_rate() {
    let (tmp, jobs) = cache_copy("jobs");
    let events = tmp.path().join("events");
    let state = tmp.path().join("state");
    for command in [
        Saltship::dry_run(&jobs),
        Saltship::sync(&jobs).arg("--dry-run"),
    ] {
        let started = std::time::Instant::now();
        let run = command
            .state_file(&state)
            .env("TERM", "xterm")
            .under(&["python3", "-c", ON_A_PTY, crate::common::p(&events)])
            .run_text();
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        let (pos, len, rate, secs) = last_frame(&run.stdout);
        let returns = returns_in(&jobs);
        assert!(returns > 50, "{returns} returns in the fixture");
        assert_eq!((pos, len), (returns, returns), "{}", run.stdout);
        assert_eq!(summary_returns(&run.stdout), returns, "{}", run.stdout);
        assert!(secs > 0.0 && secs <= wall, "{secs} s of {wall} s");
        // What it shows is what it did: its rate over its time (shown to 0.01 s) is the
        // returns it shipped.
        let done = rate * secs;
        assert!(
            (done - pos as f64).abs() <= 1.0 + rate * 0.005,
            "{rate}/s for {secs} s is not {pos} returns"
        );
    }
}

/// A terminal that says it cannot move the cursor (`TERM=dumb`: Emacs shells, some CI logs)
/// gets no bar, so no escape sequences: only the summary.
#[test]
fn a_dumb_terminal_gets_no_bar() {
    let (tmp, jobs) = cache_copy("jobs");
    let events = tmp.path().join("events");
    let run = Saltship::dry_run(&jobs)
        .env("TERM", "dumb")
        .under(&["python3", "-c", ON_A_PTY, crate::common::p(&events)])
        .run_text();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains('\x1b'), "{:?}", run.stdout);
    assert!(!run.stdout.contains("returns/s"), "{:?}", run.stdout);
    assert!(run.stdout.contains("saltship: "), "{:?}", run.stdout);
}
