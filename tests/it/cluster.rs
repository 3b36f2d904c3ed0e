//! A Salt master cluster's saltships: one state file, one holder of its lease shipping, a
//! standby taking over when the holder dies or hangs; job ids per cluster; `check` on a
//! standby. (The same on a real GlusterFS volume, with latency and CPU: bench/cluster.py.)

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::receiver::{event_ids, Faults, Receiver};
use crate::common::watch::{land_job, source_job, Watch};
use crate::common::{cache_copy, dry_run_ids, p, Saltship};

/// Waits (bounded) until `cond` holds; whether it did.
fn until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A watch on the shared state file, logging to a file of its own (`name.log`).
fn start(jobs: &Path, state: &Path, target: &str, name: &str, env: &[(&str, &str)]) -> Watch {
    let log = state.with_file_name(format!("{name}.log"));
    let child = Saltship::watch(jobs)
        .state_file(state)
        .target(target)
        .env("SALTSHIP_RESCAN_INTERVAL", "60s")
        .envs(env)
        .spawn(File::create(&log).expect("log"));
    Watch::spawned(child, log)
}

fn signal(watch: &Watch, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &watch.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn a_standby_reports_ready_and_ships_within_5_s_of_the_holders_sigkill() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let receiver = Receiver::start(Faults::default());
    let before: HashSet<String> = dry_run_ids(&jobs);
    let a = start(&jobs, &state, &receiver.target(), "a", &[]);
    assert!(
        until(Duration::from_secs(20), || a.log().contains("following ")),
        "{}",
        a.log()
    );
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let b = start(
        &jobs,
        &state,
        &receiver.target(),
        "b",
        &[("NOTIFY_SOCKET", p(&socket_path))],
    );
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a message from the standby");
    let said = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        said.starts_with("READY=1\nSTATUS=standby: ") && said.contains("holds the lease"),
        "{said}"
    );
    assert!(b.log().contains("standing by: "), "{}", b.log());
    signal(&a, "-KILL");
    let killed = Instant::now();
    assert!(
        until(Duration::from_secs(5), || b
            .log()
            .contains("took over the lease of")),
        "no takeover within 5 s: {}",
        b.log()
    );
    assert!(killed.elapsed() <= Duration::from_secs(5));
    land_job(
        &jobs,
        &source_job("failures"),
        "20990101000000000001",
        Duration::from_millis(10),
    );
    let all: HashSet<String> = dry_run_ids(&jobs);
    assert!(all.len() > before.len());
    assert!(
        until(Duration::from_secs(10), || all
            .is_subset(&event_ids(&receiver.lines_so_far()))),
        "the standby did not ship the new job: {}",
        b.log()
    );
    let (code, _, log) = b.stop();
    assert_eq!(code, 0, "{log}");
    drop(a);
    drop(receiver.finish());
}

#[test]
fn a_hung_holder_is_replaced_and_stops_before_writing_the_checkpoint_when_it_wakes() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let receiver = Receiver::start(Faults::default());
    let a = start(&jobs, &state, &receiver.target(), "a", &[]);
    assert!(
        until(Duration::from_secs(20), || a.log().contains("following ")),
        "{}",
        a.log()
    );
    let b = start(&jobs, &state, &receiver.target(), "b", &[]);
    assert!(
        until(Duration::from_secs(10), || b.log().contains("standing by")),
        "{}",
        b.log()
    );
    signal(&a, "-STOP");
    let stopped = Instant::now();
    assert!(
        until(Duration::from_secs(32), || b
            .log()
            .contains("took over the lease of")),
        "no takeover from a hung holder: {}",
        b.log()
    );
    assert!(stopped.elapsed() <= Duration::from_secs(30));
    assert!(
        b.log().contains("stopped renewing its lease")
            && b.log().contains("took over the lease of")
            && !b.log().contains("ERROR"),
        "{}",
        b.log()
    );
    land_job(
        &jobs,
        &source_job("failures"),
        "20990101000000000002",
        Duration::from_millis(10),
    );
    let all: HashSet<String> = dry_run_ids(&jobs);
    assert!(
        until(Duration::from_secs(10), || all
            .is_subset(&event_ids(&receiver.lines_so_far()))),
        "the new holder did not ship the new job: {}",
        b.log()
    );
    // Woken, the old holder finds the lease taken: it must not write the checkpoint.
    let journal = state.with_file_name("state.journal");
    let written = std::fs::read(&journal).unwrap_or_default();
    signal(&a, "-CONT");
    assert!(
        until(Duration::from_secs(10), || a
            .log()
            .contains("stopping before writing")),
        "the old holder did not stop by itself: {}",
        a.log()
    );
    let (code, _, log) = a.stop();
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("stopping before writing the checkpoint"),
        "{log}"
    );
    let (code, _, blog) = b.stop();
    assert_eq!(code, 0, "{blog}");
    let after = std::fs::read(&journal).unwrap_or_default();
    assert!(
        after.starts_with(&written) || written.is_empty(),
        "the old holder rewrote the journal"
    );
    drop(receiver.finish());
}

#[test]
fn with_a_cluster_id_job_events_have_the_same_ids_from_every_master() {
    let (_tmp, jobs) = cache_copy("jobs");
    let ids =
        |master: &str, cluster: Option<&str>| -> Vec<String> {
            let mut run = Saltship::args(["backfill", "--dry-run", "--cache-dir", p(&jobs)])
                .more(["--events", "job,no-return", "--master-id", master]);
            if let Some(c) = cluster {
                run = run.more(["--cluster-id", c]);
            }
            let run = run.run();
            assert_eq!(run.code, 0, "{}", run.stderr);
            if let Some(c) = cluster {
                assert!(run.events.iter().all(|e| e["cluster_id"] == c));
                assert!(run.events.iter().all(|e| e["master"] == master));
            }
            run.ids()
        };
    let (a, b) = (ids("master-a", None), ids("master-b", None));
    assert!(!a.is_empty());
    assert_ne!(a, b, "per master without a cluster id");
    let (a, b) = (ids("master-a", Some("prod")), ids("master-b", Some("prod")));
    assert_eq!(a, b);
}

#[test]
fn the_cluster_id_and_isolated_mode_are_read_from_the_master_config() {
    let (tmp, jobs) = cache_copy("jobs");
    let master = tmp.path().join("master");
    std::fs::write(
        &master,
        "cluster_id: prod\ncluster_isolated_filesystem: True\ncluster_peers:\n  - 10.0.0.2\n",
    )
    .expect("master config");
    let run = Saltship::dry_run(&jobs)
        .more(["--events", "job", "--master-config", p(&master)])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.events.iter().all(|e| e["cluster_id"] == "prod"));
    assert!(
        run.stderr.contains("cluster_isolated_filesystem")
            && run.stderr.contains("Run saltship on one master only"),
        "{}",
        run.stderr
    );
}

#[test]
fn check_passes_a_lease_held_by_another_masters_saltship() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let lock = File::create(state.with_file_name("state.lock")).expect("lock file");
    lock.try_lock().expect("lock");
    let record = format!("{:<199}\n", "saltship-lease 1 other-master:42:1 7 1 flock");
    lock.write_all_at(record.as_bytes(), 0).expect("lease");
    let out = Saltship::check(&jobs)
        .state_file(&state)
        .target("127.0.0.1:1")
        .arg("--offline")
        .run_text();
    assert!(
        out.stdout
            .contains("its lease is held by other-master:42:1, a saltship on another master"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("FAIL state file")),
        "{}",
        out.stdout
    );
}

/// Found by the attack: a cluster's saltships each given a local state file each ship the
/// whole cache, the lease never seeing the others; now said at start.
#[test]
fn a_cluster_id_with_a_local_state_file_is_warned_about() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state/saltship.state");
    let run = |cluster: Option<&str>| {
        let mut run = Saltship::args(["sync", "--dry-run", "--cache-dir", p(&jobs)])
            .more(["--state-file", p(&state)]);
        if let Some(c) = cluster {
            run = run.more(["--cluster-id", c]);
        }
        let run = run.run();
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stderr
    };
    let said = run(Some("prod"));
    assert!(
        said.contains("is on a local filesystem while the cache is shared (cluster id prod)")
            && said.contains("put --state-file on the shared volume"),
        "{said}"
    );
    assert!(!run(None).contains("local filesystem"), "a lone master");
}

/// A standby stopped (SIGTERM: a master taken out of the cluster) exits 0 at once, and leaves
/// the holder's lease and the checkpoint alone; a foreign record written over a live holder's
/// lease makes that holder stop before its next save (exit 3), never ship on beside it.
#[test]
fn a_standby_stops_at_sigterm_without_touching_the_lease_and_a_forged_lease_stops_the_holder() {
    let (tmp, jobs) = cache_copy("jobs");
    let state = tmp.path().join("state");
    let lock = tmp.path().join("state.lock");
    let receiver = Receiver::start(Faults::default());
    let a = start(&jobs, &state, &receiver.target(), "a", &[]);
    assert!(
        until(Duration::from_secs(20), || a.log().contains("following ")),
        "{}",
        a.log()
    );
    let b = start(&jobs, &state, &receiver.target(), "b", &[]);
    assert!(
        until(Duration::from_secs(10), || b.log().contains("standing by")),
        "{}",
        b.log()
    );
    let holder = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_owned()
    };
    let before = holder(&std::fs::read(&lock).expect("lock file"));
    assert!(before.contains(&format!(":{}:", a.pid())), "{before}");
    let (code, took, log) = b.stop();
    assert_eq!(code, 0, "{log}");
    assert!(took <= Duration::from_secs(3), "{took:?}: {log}");
    assert!(!log.contains("took over"), "{log}");
    assert_eq!(holder(&std::fs::read(&lock).expect("lock file")), before);

    // Someone else's record (another cluster's saltship on the same state file, a hand edit).
    let forged = format!("{:<199}\n", "saltship-lease 1 intruder:1:1 5 1 flock");
    File::options()
        .write(true)
        .open(&lock)
        .expect("lock")
        .write_all_at(forged.as_bytes(), 0)
        .expect("forge");
    land_job(
        &jobs,
        &source_job("failures"),
        "20990101000000000003",
        Duration::from_millis(10),
    );
    assert!(
        until(Duration::from_secs(15), || a
            .log()
            .contains("stopping before writing")),
        "the holder shipped on beside a lease it does not hold: {}",
        a.log()
    );
    let (code, _, log) = a.stop();
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("intruder:1:1 took over the lease"), "{log}");
    drop(receiver.finish());
}
