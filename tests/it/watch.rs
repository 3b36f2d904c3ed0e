//! `saltship watch` against a cache that changes while it runs: jobs landed the way a master
//! writes them, SIGTERM and restart, a job folder removed, a receiver that is down.

use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::receiver::{event_ids, Deaf, Deafness, Faults, Receiver};
use crate::common::watch::{land_job, source_job, Watch};
use crate::common::{age_folders, cache_copy, dry_run_ids, multiplied_cache, p, Saltship};

/// Waits (bounded) until `receiver` has every id of `want`.
fn wait_for(receiver: &Receiver, want: &HashSet<String>, within: Duration) -> HashSet<String> {
    let deadline = Instant::now() + within;
    loop {
        let got = event_ids(&receiver.lines_so_far());
        if want.is_subset(&got) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn live_jobs_ship_as_they_land_and_sigterm_exits_cleanly() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let metrics = tmp.path().join("saltship.prom");
    let receiver = Receiver::start(Faults::default());
    let watch = Watch::start(
        &jobs,
        &state,
        &receiver.target(),
        &[("SALTSHIP_METRICS_FILE", p(&metrics))],
    );
    let before: HashSet<String> = dry_run_ids(&jobs);
    assert_eq!(
        wait_for(&receiver, &before, Duration::from_secs(20)).len(),
        before.len(),
        "catch-up"
    );
    for (i, case) in ["failures", "state-apply-highstate", "unicode"]
        .iter()
        .enumerate()
    {
        land_job(
            &jobs,
            &source_job(case),
            &format!("2099010100000000000{i}"),
            Duration::from_millis(30),
        );
    }
    let all: HashSet<String> = dry_run_ids(&jobs);
    assert!(all.len() > before.len());
    let got = wait_for(&receiver, &all, Duration::from_secs(20));
    let (code, took, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    assert!(
        all.is_subset(&got),
        "{} events of the live jobs missing; log: {log}",
        all.difference(&got).count()
    );
    let lines = receiver.finish();
    assert_eq!(
        lines.len(),
        all.len(),
        "each event once when nothing failed"
    );
    let prom = std::fs::read_to_string(&metrics).expect("metrics file");
    assert!(
        prom.contains(&format!("saltship_events_total {}", all.len())),
        "{prom}"
    );
    assert!(prom.contains("# TYPE saltship_lag_seconds gauge"));
    assert!(prom.contains("# TYPE saltship_watches gauge"), "{prom}");
    assert!(
        prom.contains("\nsaltship_checkpoint_saves_total "),
        "{prom}"
    );
}

#[test]
fn sigterm_mid_stream_then_restart_loses_nothing() {
    let (tmp, jobs) = multiplied_cache(120);
    let state = tmp.path().join("state");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let receiver = Receiver::start(Faults {
        slow: Duration::from_micros(100),
        ..Faults::default()
    });
    let first = Watch::start(&jobs, &state, &receiver.target(), &[]);
    std::thread::sleep(Duration::from_millis(800));
    let (code, took, log) = first.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?}: {log}"
    );
    let partial = event_ids(&receiver.lines_so_far()).len();
    assert!(partial < want.len(), "the stop did not land mid-stream");
    let second = Watch::start(&jobs, &state, &receiver.target(), &[]);
    let got = wait_for(&receiver, &want, Duration::from_secs(60));
    let (code, _, log) = second.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        want.is_subset(&got),
        "{} events lost",
        want.difference(&got).count()
    );
}

/// A stop right after a job shipped (issue 30 item 4: every config change restarts the unit):
/// SIGTERM confirms what was sent and saves it, so the next start sends nothing twice.
#[test]
fn sigterm_right_after_a_job_confirms_it_and_the_restart_sends_nothing_twice() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let receiver = Receiver::start(Faults::default());
    let watch = Watch::start(&jobs, &state, &receiver.target(), &[]);
    let before: HashSet<String> = dry_run_ids(&jobs);
    wait_for(&receiver, &before, Duration::from_secs(20));
    // Caught up and confirmed: a second of quiet.
    std::thread::sleep(Duration::from_millis(1500));
    land_job(
        &jobs,
        &source_job("failures"),
        "20990101000000000077",
        Duration::ZERO,
    );
    let all: HashSet<String> = dry_run_ids(&jobs);
    wait_for(&receiver, &all, Duration::from_secs(20));
    // Within milliseconds of the job's events, before the idle confirmation is due.
    let (code, took, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?}: {log}"
    );
    let again = Watch::start(&jobs, &state, &receiver.target(), &[]);
    std::thread::sleep(Duration::from_secs(2));
    let (code, _, log) = again.stop();
    assert_eq!(code, 0, "{log}");
    let lines = receiver.finish();
    assert_eq!(
        lines.len(),
        all.len(),
        "{} events sent twice after the restart",
        lines.len() - all.len().min(lines.len())
    );
}

#[test]
fn a_job_folder_removed_while_watching_is_no_error() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let receiver = Receiver::start(Faults::default());
    let watch = Watch::start(&jobs, &state, &receiver.target(), &[]);
    let before: HashSet<String> = dry_run_ids(&jobs);
    wait_for(&receiver, &before, Duration::from_secs(20));
    // The master's cleanup removes a job; another lands after it.
    let gone = source_job("state-highstate");
    let gone = jobs.join(
        gone.strip_prefix(crate::common::testdata("jobs"))
            .expect("under testdata"),
    );
    std::fs::remove_dir_all(&gone).expect("cleanup");
    land_job(
        &jobs,
        &source_job("twice-first-changes"),
        "20990101000000000042",
        Duration::ZERO,
    );
    let all: HashSet<String> = dry_run_ids(&jobs);
    let got = wait_for(&receiver, &all, Duration::from_secs(20));
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert!(all.is_subset(&got));
    assert!(!log.contains("warning") && !log.contains("error"), "{log}");
}

#[test]
fn a_return_landing_while_the_receiver_is_down_arrives_later() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    // Catch up first, then take the receiver away.
    let receiver = Receiver::start(Faults::default());
    let port = receiver.port;
    let watch = Watch::start(&jobs, &state, &receiver.target(), &[]);
    wait_for(&receiver, &dry_run_ids(&jobs), Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1500));
    drop(receiver.finish());
    land_job(
        &jobs,
        &source_job("failures"),
        "20990101000000000077",
        Duration::ZERO,
    );
    std::thread::sleep(Duration::from_secs(1));
    let back = Receiver::start_on(port, Faults::default());
    let new: HashSet<String> = Saltship::dry_run(&jobs)
        .more(["--since", "20990101000000000000"])
        .run()
        .events
        .iter()
        .map(|e| e["event_id"].as_str().expect("id").to_owned())
        .collect();
    assert!(!new.is_empty());
    let got = wait_for(&back, &new, Duration::from_secs(30));
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert!(new.is_subset(&got), "{log}");
}

/// systemd's Type=notify: READY=1 once caught up, WATCHDOG=1 while running, STOPPING=1.
#[test]
fn tells_systemd_through_notify_socket() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let receiver = Receiver::start(Faults::default());
    let watch = Watch::start(
        &jobs,
        &state,
        &receiver.target(),
        &[
            ("NOTIFY_SOCKET", p(&socket_path)),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut said = Vec::new();
    let mut buf = [0u8; 256];
    while !(said.contains(&"READY=1".to_owned())
        && said.iter().filter(|s| *s == "WATCHDOG=1").count() >= 2)
    {
        let n = socket.recv(&mut buf).expect("a message from watch");
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    loop {
        let n = socket.recv(&mut buf).expect("STOPPING=1");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
    drop(receiver.finish());
}

/// A receiver down at start (issue 30 item 2): READY=1 does not wait for the catch-up's
/// deliveries (up to --deliver-timeout), so boot and `systemctl start` do not either; the
/// watchdog is fed while the catch-up waits, and the backlog ships once the receiver is up.
#[test]
fn ready_comes_before_a_catch_up_that_waits_for_a_receiver() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = crate::common::free_port();
    let started = Instant::now();
    let watch = Watch::start(
        &jobs,
        &state,
        &format!("127.0.0.1:{port}"),
        &[
            ("NOTIFY_SOCKET", p(&socket_path)),
            ("WATCHDOG_USEC", "400000"),
            ("SALTSHIP_DELIVER_TIMEOUT", "60s"),
        ],
    );
    let mut buf = [0u8; 256];
    let mut said = Vec::new();
    while said.iter().filter(|s| *s == "WATCHDOG=1").count() < 4 {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| {
            panic!("{e} after {said:?}: {}", watch.log());
        });
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(said[0], "READY=1", "{said:?}");
    // Four pings 200 ms apart, all within the catch-up's 60 s wait for the receiver.
    assert!(started.elapsed() < Duration::from_secs(10), "{said:?}");
    let receiver = Receiver::start_on(port, Faults::default());
    let want: HashSet<String> = dry_run_ids(&jobs);
    let got = wait_for(&receiver, &want, Duration::from_secs(30));
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert!(want.is_subset(&got), "{log}");
}

/// A receiver away for longer than --deliver-timeout: watch keeps running, says so once per
/// timeout rather than at every attempt, and ships everything once the receiver is back.
#[test]
fn a_long_outage_is_reported_once_per_timeout() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let port = crate::common::free_port();
    let target = format!("127.0.0.1:{port}");
    let watch = Watch::start(
        &jobs,
        &state,
        &target,
        &[("SALTSHIP_DELIVER_TIMEOUT", "2s")],
    );
    std::thread::sleep(Duration::from_millis(5500));
    let receiver = Receiver::start_on(port, Faults::default());
    let got = wait_for(&receiver, &dry_run_ids(&jobs), Duration::from_secs(30));
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        dry_run_ids::<HashSet<String>>(&jobs).is_subset(&got),
        "{log}"
    );
    let errors = log
        .lines()
        .filter(|l| l.contains("could not deliver"))
        .count();
    assert!(
        (1..=2).contains(&errors),
        "{errors} error lines in 5.5 s with a 2 s timeout: {log}"
    );
}

/// The watches reported by the last stats line of `watch` (waiting for one, bounded), until
/// it is `want`.
fn wait_for_watches(watch: &Watch, want: usize, within: Duration) -> Option<usize> {
    let deadline = Instant::now() + within;
    loop {
        let text = watch.log();
        let last = text
            .lines()
            .rev()
            .find_map(|l| l.strip_suffix(" watches")?.rsplit(' ').next()?.parse().ok());
        if last == Some(want) || Instant::now() > deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Settled jobs are not watched, only the folders where returns can still land; a return
/// renamed into a minion folder that came long before it ships at once, not at the rescan.
#[test]
fn watches_follow_the_jobs_in_flight() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    age_folders(&jobs);
    let receiver = Receiver::start(Faults::default());
    // Two syncs: everything shipped, then every job settled.
    for _ in 0..2 {
        let run = Saltship::sync(&jobs)
            .state_file(&state)
            .target(&receiver.target())
            .run();
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let shipped = receiver.lines_so_far().len();
    let hex = std::fs::read_dir(&jobs).expect("jobs").count();
    let watch = Watch::start(
        &jobs,
        &state,
        &receiver.target(),
        &[("SALTSHIP_STATS_INTERVAL", "1s")],
    );
    // The cache folder and its two-hex folders only.
    assert_eq!(
        wait_for_watches(&watch, 1 + hex, Duration::from_secs(30)),
        Some(1 + hex)
    );

    // A job lands: its minion folder first, its return a while later (past the re-listings
    // of a new folder), written to a temp file and renamed, as Salt does.
    let source = source_job("failures");
    let dir = jobs.join("00").join("jobnew");
    std::fs::create_dir_all(dir.join("web1")).expect("minion folder");
    std::fs::write(dir.join("jid"), "20990101000000000000").expect("jid");
    std::fs::copy(source.join(".load.p"), dir.join(".load.p")).expect("load");
    let new_hex = usize::from(hex == std::fs::read_dir(&jobs).expect("jobs").count() - 1);
    // The new job folder and its minion folder, still waiting for its return.
    let waiting = 1 + hex + new_hex + 2;
    assert_eq!(
        wait_for_watches(&watch, waiting, Duration::from_secs(30)),
        Some(waiting)
    );
    let from = std::fs::read_dir(&source)
        .expect("source")
        .map(|e| e.expect("entry").path())
        .find(|m| m.join("return.p").is_file())
        .expect("a minion of the source job");
    std::thread::sleep(Duration::from_secs(1));
    let tmp_return = dir.join("web1/.___atomic_write_x");
    std::fs::copy(from.join("return.p"), &tmp_return).expect("temp");
    let landed = Instant::now();
    std::fs::rename(&tmp_return, dir.join("web1/return.p")).expect("rename");
    let deadline = landed + Duration::from_secs(30);
    while receiver.lines_so_far().len() == shipped && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Well before the 60 s rescan, however loaded the machine.
    assert!(
        landed.elapsed() < Duration::from_secs(30),
        "the return waited for the rescan"
    );
    // Its return landed: the minion folder is not watched any more; the young job folder is.
    let after = 1 + hex + new_hex + 1;
    assert_eq!(
        wait_for_watches(&watch, after, Duration::from_secs(30)),
        Some(after)
    );
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert!(receiver.finish().len() > shipped);
}

/// Polling (a shared filesystem): once the catch-up is confirmed, old jobs whose returns are
/// all shipped are polled no more, not until the next rescan (10 min when polling): each
/// poll of a folder is a stat through the network.
#[test]
fn polling_drops_old_shipped_jobs_once_the_catch_up_is_confirmed() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    age_folders(&jobs);
    let receiver = Receiver::start(Faults::default());
    let hex = std::fs::read_dir(&jobs).expect("jobs").count();
    let watch = Watch::start(
        &jobs,
        &state,
        &receiver.target(),
        &[
            ("SALTSHIP_STATS_INTERVAL", "1s"),
            ("SALTSHIP_DISCOVERY", "poll"),
        ],
    );
    assert_eq!(
        wait_for_watches(&watch, 1 + hex, Duration::from_secs(30)),
        Some(1 + hex),
        "{}",
        watch.log()
    );
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!receiver.finish().is_empty());
}

/// SIGTERM ends watch within 5 s while it is stuck writing to a receiver that never reads.
#[test]
fn sigterm_ends_watch_stuck_on_a_receiver_that_never_reads() {
    let (tmp, jobs) = multiplied_cache(100);
    let state = tmp.path().join("state");
    let deaf = Deaf::start(Deafness::NeverReads);
    let watch = Watch::start(&jobs, &state, &deaf.target(), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while deaf.accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "watch never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Long enough for the socket buffers to fill and the write to block.
    std::thread::sleep(Duration::from_secs(2));
    let (_, took, log) = watch.stop();
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?}: {log}"
    );
}

/// A receiver down from the start: watch says it is unreachable and how many returns wait,
/// rather than "0 events shipped"; and the metrics file is readable by node_exporter's user
/// under the unit's `UMask=0077`.
#[test]
fn receiver_down_at_start_is_said_and_metrics_stay_readable() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let metrics = tmp.path().join("saltship.prom");
    let log = tmp.path().join("watch.log");
    let target = format!("127.0.0.1:{}", crate::common::free_port());
    let child = Saltship::watch(&jobs)
        .state_file(&state)
        .target(&target)
        .more(["--deliver-timeout", "1s"])
        .arg("--metrics-file")
        .arg(&metrics)
        .under(&["sh", "-c", "umask 077; exec \"$0\" \"$@\""])
        .spawn(std::fs::File::create(&log).expect("log"));
    let watch = Watch::spawned(child, log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(metrics.exists() && watch.log().contains("returns wait")) {
        assert!(
            Instant::now() < deadline,
            "no 'returns wait' line or metrics file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&metrics)
        .expect("metrics")
        .permissions()
        .mode();
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(mode & 0o777, 0o644, "metrics file mode {mode:o}");
    let line = log
        .lines()
        .find(|l| l.contains("returns wait"))
        .expect("the line");
    let waiting: u64 = line
        .split("reachable: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {line}"));
    assert!(
        waiting > 0 && line.starts_with("saltship: warning: following"),
        "{line}"
    );
    assert!(!log.contains("events shipped catching up"), "{log}");
}

/// node_exporter runs as its own user: the shipped units must let it into the state folder,
/// where the watch unit writes its metrics (the file itself is 0644 whatever the umask).
#[test]
fn the_units_let_node_exporter_reach_the_metrics_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    let watch = std::fs::read_to_string(dir.join("saltship-watch.service")).expect("unit");
    assert!(
        watch.contains("--metrics-file /var/lib/saltship/"),
        "metrics in StateDirectory"
    );
    for unit in ["saltship-watch.service", "saltship-sync.service"] {
        let text = std::fs::read_to_string(dir.join(unit)).expect("unit");
        let mode = text
            .lines()
            .find_map(|l| l.strip_prefix("StateDirectoryMode="))
            .map(|m| u32::from_str_radix(m.trim(), 8).expect("octal"))
            .unwrap_or(0o755);
        assert_eq!(mode & 0o005, 0o005, "{unit}: StateDirectoryMode {mode:o}");
    }
}

/// `watch --cache-dir jobs` (relative, run from the cache's parent) follows the cache with
/// inotify like an absolute path does: a return landed after the catch-up ships within
/// seconds, long before the rescan (five minutes here) would find it.
#[test]
fn a_relative_cache_dir_ships_a_new_return_within_seconds() {
    let (tmp, jobs) = cache_copy("jobs");
    let receiver = Receiver::start(Faults::default());
    let log = tmp.path().join("watch.log");
    let child = Saltship::args(["watch", "--cache-dir", "jobs", "--master-id"])
        .arg(crate::common::saltship::MASTER)
        .state_file(&tmp.path().join("state"))
        .target(&receiver.target())
        .more(["--rescan-interval", "300s"])
        .command()
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn saltship");
    let watch = Watch::spawned(child, log);
    let before: HashSet<String> = dry_run_ids(&jobs);
    let caught_up = wait_for(&receiver, &before, Duration::from_secs(20));
    assert_eq!(caught_up.len(), before.len(), "{}", watch.log());
    land_job(
        &jobs,
        &source_job("failures"),
        "20990101000000000042",
        Duration::from_millis(30),
    );
    let all: HashSet<String> = dry_run_ids(&jobs);
    assert!(all.len() > before.len());
    let landed = Instant::now();
    let got = wait_for(&receiver, &all, Duration::from_secs(10));
    let took = landed.elapsed();
    let (code, _, log) = watch.stop();
    assert!(all.is_subset(&got), "the new return did not ship: {log}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {log}");
    assert_eq!(code, 0, "{log}");
}

/// `start-at = "now"` in the config file means for watch what it means for sync: without a
/// state file, what is in the cache at the start is recorded as done, and only jobs that land
/// later ship.
#[test]
fn start_at_now_from_the_config_file_is_honoured_by_watch() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let config = tmp.path().join("saltship.toml");
    std::fs::write(&config, "start-at = \"now\"\n").expect("config");
    let receiver = Receiver::start(Faults::default());
    let watch = Watch::start(
        &jobs,
        &state,
        &receiver.target(),
        &[("SALTSHIP_CONFIG", p(&config))],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !watch.log().contains("starting at now") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(watch.log().contains("starting at now"), "{}", watch.log());
    let jid = "20991231235959000000";
    land_job(
        &jobs,
        &source_job("twice-first-changes"),
        jid,
        Duration::ZERO,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.lines_so_far().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The catch-up had nothing to send: the first line is the new job's.
    std::thread::sleep(Duration::from_millis(300));
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    let got = receiver.finish();
    assert!(!got.is_empty(), "the new job shipped: {log}");
    for line in &got {
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(
            event["jid"], jid,
            "only what landed after the start: {line}"
        );
    }
}
