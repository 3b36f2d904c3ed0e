//! `--sink relp` against rsyslog's imrelp (Debian's `rsyslog-relp`), alone and behind
//! HAProxy while it is SIGKILLed and restarted; and against fault servers of our own for the
//! replies rsyslog does not give on demand (a code other than 200, `serverclose` mid-window).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::relp::{haproxy, rsyslogd_with_relp, HaProxy, Input, RelpTls, Rsyslogd};
use crate::common::relp_fault::{Act, FaultServer};
use crate::common::tls::Pki;
use crate::common::watch::{land_job, source_job, Watch};
use crate::common::{cache_copy, dry_run_ids, multiplied_cache, Run, Saltship};

fn assert_every_id_once_at_least(imrelp: &Rsyslogd, want: &HashSet<String>) -> usize {
    let counts = imrelp.id_counts(want.len());
    let got: HashSet<String> = counts.keys().cloned().collect();
    let missing: Vec<&String> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events missing, e.g. {:?}; rsyslogd: {}",
        missing.len(),
        want.len(),
        missing.first(),
        imrelp.stderr()
    );
    assert!(got.is_subset(want), "events nobody sent");
    counts.values().map(|n| n - 1).sum()
}

#[test]
fn backfill_sync_and_watch_ship_every_event_to_imrelp() {
    let Some(bin) = rsyslogd_with_relp() else {
        return;
    };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    for (i, command) in ["backfill", "sync"].iter().enumerate() {
        let dir = tmp.path().join(format!("rsyslog-{command}"));
        std::fs::create_dir_all(&dir).unwrap();
        let imrelp = Rsyslogd::start(&bin, &dir, Input::Relp(None));
        // Both message formats: the JSON line, and the RFC 5424 line carrying it.
        let format = ["json", "syslog"][i];
        let run = Saltship::on(command, &jobs)
            .sink("relp")
            .target(&imrelp.target())
            .more(["--format", format])
            .run();
        assert_eq!(run.code, 0, "{command}: {}", run.stderr);
        let dups = assert_every_id_once_at_least(&imrelp, &want);
        assert_eq!(dups, 0, "{command}: duplicates without a fault");
        if format == "syslog" {
            assert!(
                imrelp.lines().iter().all(|l| l.starts_with('<')),
                "RFC 5424"
            );
        }
    }
    let dir = tmp.path().join("rsyslog-watch");
    std::fs::create_dir_all(&dir).unwrap();
    let imrelp = Rsyslogd::start(&bin, &dir, Input::Relp(None));
    let state = tmp.path().join("watch-state");
    let watch = Watch::start(
        &jobs,
        &state,
        &imrelp.target(),
        &[("SALTSHIP_SINK", "relp")],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while imrelp.id_counts(0).len() < want.len() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert_every_id_once_at_least(&imrelp, &want);
}

#[test]
fn stock_imrelp_stores_every_event_whole_as_valid_json_by_default() {
    let Some(bin) = rsyslogd_with_relp() else {
        return;
    };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let imrelp = Rsyslogd::start(&bin, tmp.path(), Input::RelpStock);
    let run = Saltship::backfill(&jobs)
        .sink("relp")
        .target(&imrelp.target())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("maxDataSize"), "{}", run.stderr);
    assert_every_id_once_at_least(&imrelp, &want);
    let mut cut = 0;
    for line in imrelp.lines() {
        let event: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stored cut ({e}): {} bytes", line.len()));
        cut += usize::from(event["truncated"] == true);
    }
    assert!(
        cut > 0,
        "the fixture's large event was cut, and stored whole"
    );
    // Asked for more than imrelp takes as it comes: said at start, and by `check`.
    for command in ["backfill", "check"] {
        let run = Saltship::on(command, &jobs)
            .sink("relp")
            .target(&imrelp.target())
            .more(["--max-event-bytes", "10000"])
            .run_text();
        let warned = run
            .stderr
            .lines()
            .filter(|l| l.contains("maxDataSize 8096"));
        assert_eq!(warned.count(), 1, "{command}: {}", run.stderr);
    }
}

/// What one run through HAProxy to a receiver killed 5 times did: its exit, and how often
/// each event id reached the receiver.
struct Survived {
    code: i32,
    stderr: String,
    kills: usize,
}

/// `ship` runs while `kill` SIGKILLs the receiver 5 times, each once another sixth of `total`
/// lines are in its file, and `restart` brings it back 200 ms later.
fn five_kills(
    lines: impl Fn() -> usize + Send + 'static,
    total: usize,
    mut kill: impl FnMut() + Send + 'static,
    mut restart: impl FnMut() + Send + 'static,
    ship: impl FnOnce() -> (i32, String),
) -> Survived {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let killer = thread::spawn(move || {
        let mut kills = 0;
        let deadline = Instant::now() + Duration::from_secs(90);
        while kills < 5 && !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
            if lines() >= (kills + 1) * total / 6 {
                kill();
                kills += 1;
                thread::sleep(Duration::from_millis(200));
                restart();
            }
            thread::sleep(Duration::from_millis(5));
        }
        kills
    });
    let (code, stderr) = ship();
    done.store(true, Ordering::SeqCst);
    let kills = killer.join().expect("killer");
    Survived {
        code,
        stderr,
        kills,
    }
}

#[test]
fn through_haproxy_with_rsyslog_killed_five_times_every_event_is_stored() {
    let (Some(bin), Some(proxy)) = (rsyslogd_with_relp(), haproxy()) else {
        return;
    };
    let (tmp, jobs) = multiplied_cache(40);
    let want: HashSet<String> = dry_run_ids(&jobs);
    let imrelp = Arc::new(Mutex::new(Rsyslogd::start(
        &bin,
        tmp.path(),
        Input::Relp(None),
    )));
    let haproxy = HaProxy::start(&proxy, tmp.path(), &imrelp.lock().unwrap().target());
    let (a, b, c) = (imrelp.clone(), imrelp.clone(), imrelp.clone());
    let target = haproxy.target();
    let run = five_kills(
        move || a.lock().unwrap().lines().len(),
        want.len(),
        move || b.lock().unwrap().kill(),
        move || c.lock().unwrap().restart(),
        || {
            let run = Saltship::backfill(&jobs)
                .sink("relp")
                .target(&target)
                .more(["--max-rate", "4000", "--deliver-timeout", "60s"])
                .timeout(Duration::from_secs(120))
                .run();
            (run.code, run.stderr)
        },
    );
    assert_eq!(run.kills, 5, "the run ended before 5 kills: {}", run.stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let imrelp = imrelp.lock().unwrap();
    let dups = assert_every_id_once_at_least(&imrelp, &want);
    // Not an assert: what RELP resends after a fault is the window in flight.
    eprintln!(
        "relp through haproxy, 5 SIGKILLs: {} events, all stored, {dups} duplicates",
        want.len()
    );
}

#[test]
fn the_same_run_over_tcp_through_haproxy_loses_events() {
    let (Some(bin), Some(proxy)) = (rsyslogd_with_relp(), haproxy()) else {
        return;
    };
    let (tmp, jobs) = multiplied_cache(40);
    let want: HashSet<String> = dry_run_ids(&jobs);
    // Whether a run loses events depends on where the kills fall: up to 3 runs, each of which
    // must claim success (exit 0), until one shows the loss.
    let mut losses = Vec::new();
    for attempt in 0..3 {
        let dir = tmp.path().join(format!("tcp-{attempt}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (run, lost) = tcp_with_five_kills(&bin, &proxy, &dir, &jobs, &want);
        eprintln!(
            "tcp through haproxy, {} SIGKILLs: exit {}, {lost} of {} events lost",
            run.kills,
            run.code,
            want.len()
        );
        // The graceful close cannot see past the proxy: the run says it delivered everything.
        assert_eq!(run.code, 0, "{}", run.stderr);
        losses.push(lost);
        if lost > 0 {
            return;
        }
    }
    panic!("no event lost in 3 runs ({losses:?}): the proof of RELP's need did not show");
}

/// One `--sink tcp` backfill through HAProxy into rsyslog's imtcp, killed 5 times: the run,
/// and how many events of `want` never reached rsyslog's file.
fn tcp_with_five_kills(
    bin: &std::path::Path,
    proxy: &std::path::Path,
    dir: &std::path::Path,
    jobs: &std::path::Path,
    want: &HashSet<String>,
) -> (Survived, usize) {
    let imtcp = Arc::new(Mutex::new(Rsyslogd::start(bin, dir, Input::Tcp)));
    let haproxy = HaProxy::start(proxy, dir, &imtcp.lock().unwrap().target());
    let (a, b, c) = (imtcp.clone(), imtcp.clone(), imtcp.clone());
    let target = haproxy.target();
    let run = five_kills(
        move || a.lock().unwrap().lines().len(),
        want.len(),
        move || b.lock().unwrap().kill(),
        move || c.lock().unwrap().restart(),
        || {
            let run = Saltship::backfill(jobs)
                .sink("tcp")
                .target(&target)
                .more(["--max-rate", "4000", "--deliver-timeout", "60s"])
                .timeout(Duration::from_secs(120))
                .run();
            (run.code, run.stderr)
        },
    );
    let got: HashSet<String> = imtcp.lock().unwrap().id_counts(0).into_keys().collect();
    let lost = want.difference(&got).count();
    (run, lost)
}

/// The fault server stored every event of `want` once, in `want`'s order.
fn assert_stored_once_in_order(stored: &[String], want: &[String]) {
    let first_off = stored.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        stored.len() == want.len() && first_off.is_none(),
        "stored {} events for {} sent; first out of place at {:?}",
        stored.len(),
        want.len(),
        first_off
    );
}

fn ship_to(server: &FaultServer, jobs: &std::path::Path, extra: &[&str]) -> Run {
    Saltship::backfill(jobs)
        .sink("relp")
        .target(&server.target())
        .more(extra)
        .run()
}

#[test]
fn a_code_other_than_200_is_reported_and_the_frame_sent_again_on_a_new_session() {
    let (_tmp, jobs) = cache_copy("jobs");
    let want: Vec<String> = dry_run_ids(&jobs);
    let server = FaultServer::start(|session, i| match (session, i) {
        (0, 3) => Act::AnswerAndClose("500 disk full (test)"),
        _ => Act::Ok,
    });
    let run = ship_to(&server, &jobs, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("500 disk full (test)"),
        "{}",
        run.stderr
    );
    assert_stored_once_in_order(&server.stored.lock().unwrap(), &want);
    let sessions = server.sessions.lock().unwrap();
    assert_eq!(
        sessions[1][0].2, sessions[0][3].2,
        "the refused frame first"
    );
    assert_eq!(sessions[1][0].0, 2, "numbered anew after open");
}

#[test]
fn serverclose_mid_window_resends_every_unanswered_frame_in_order() {
    let (_tmp, jobs) = cache_copy("jobs");
    let want: Vec<String> = dry_run_ids(&jobs);
    let server = FaultServer::start(|session, i| match (session, i) {
        (0, 0..=4) => Act::Ok,
        (0, 5..=9) => Act::Hold,
        (0, _) => Act::ServerClose,
        _ => Act::Ok,
    });
    let run = ship_to(&server, &jobs, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_stored_once_in_order(&server.stored.lock().unwrap(), &want);
    let sessions = server.sessions.lock().unwrap();
    let unanswered: Vec<&Vec<u8>> = sessions[0][5..].iter().map(|f| &f.2).collect();
    let resent: Vec<&Vec<u8>> = sessions[1][..unanswered.len()]
        .iter()
        .map(|f| &f.2)
        .collect();
    assert_eq!(resent, unanswered, "the unanswered frames first, in order");
    assert_eq!(sessions[0].len() + sessions[1].len(), want.len() + 6);
}

#[test]
fn a_receiver_that_never_answers_200_ends_the_run_unrecorded_by_the_deadline() {
    let (tmp, jobs) = cache_copy("jobs");
    let server = FaultServer::start(|_, _| Act::AnswerAndClose("500 nope"));
    let state = tmp.path().join("state");
    let run = Saltship::sync(&jobs)
        .sink("relp")
        .target(&server.target())
        .state_file(&state)
        .more(["--deliver-timeout", "2s"])
        .run();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("500 nope"), "{}", run.stderr);
    // A receiver that refuses every frame is down, not refusing one event: none rejected.
    assert!(!run.stderr.contains("rejected"), "{}", run.stderr);
    assert!(server.stored.lock().unwrap().is_empty());
    // Nothing was recorded: a dry sync still has every event to ship.
    let again = Saltship::sync(&jobs)
        .state_file(&state)
        .arg("--dry-run")
        .run();
    let want: Vec<String> = dry_run_ids(&jobs);
    assert_eq!(again.ids::<Vec<String>>(), want);
}

#[test]
fn one_frame_refused_every_time_is_rejected_and_the_rest_stored_and_recorded() {
    let (tmp, jobs) = cache_copy("jobs");
    let want: Vec<String> = dry_run_ids(&jobs);
    let refused = want[3].clone();
    let r = refused.clone();
    let server = FaultServer::by_event(move |_, _, id| match id == r {
        true => Act::AnswerAndClose("500 oversize (test)"),
        false => Act::Ok,
    });
    let state = tmp.path().join("state");
    let sync = || {
        Saltship::sync(&jobs)
            .sink("relp")
            .target(&server.target())
            .state_file(&state)
            .more(["--deliver-timeout", "20s"])
            .run()
    };
    let run = sync();
    assert_eq!(run.code, 1, "rejected, not stuck: {}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("rejected") && l.contains(&refused))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("500 oversize (test)"),
        "{}",
        run.stderr
    );
    let mut others: Vec<String> = want.iter().filter(|id| **id != refused).cloned().collect();
    let mut stored = server.stored.lock().unwrap().clone();
    others.sort();
    stored.sort();
    assert_eq!(stored, others, "every other event stored, once");
    // Recorded: the next sync has nothing left to send, and the receiver nothing more.
    let again = sync();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(server.stored.lock().unwrap().len(), others.len());
}

/// A receiver that dies mid-run (answers 40 frames, then nothing until the deadline): the
/// returns whose every frame it answered 200 are recorded all the same, so the next run sends
/// only returns it had not stored whole.
#[test]
fn a_run_that_gives_up_records_the_returns_answered_before_the_receiver_died() {
    let (tmp, jobs) = cache_copy("jobs");
    let events = Saltship::dry_run(&jobs).run().events;
    let return_of = |id: &str| {
        let e = events.iter().find(|e| e["event_id"] == id).expect("sent");
        (e["jid"].to_string(), e["minion_id"].to_string())
    };
    let state = tmp.path().join("state");
    let sync = |server: &FaultServer, timeout: &str| {
        Saltship::sync(&jobs)
            .sink("relp")
            .target(&server.target())
            .state_file(&state)
            .more(["--deliver-timeout", timeout])
            .run()
    };
    let dying = FaultServer::start(|_, i| match i < 40 {
        true => Act::Ok,
        false => Act::Hold,
    });
    let run = sync(&dying, "2s");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let first: HashSet<String> = dying.stored.lock().unwrap().iter().cloned().collect();
    assert_eq!(first.len(), 40);
    let good = FaultServer::start(|_, _| Act::Ok);
    let run = sync(&good, "20s");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let second = good.stored.lock().unwrap().clone();
    let all: HashSet<&String> = first.iter().chain(&second).collect();
    assert_eq!(all.len(), events.len(), "every event stored");
    // Sent again: only events of returns the dead receiver had not stored whole.
    let unfinished: HashSet<(String, String)> = events
        .iter()
        .filter(|e| !first.contains(e["event_id"].as_str().expect("id")))
        .map(|e| (e["jid"].to_string(), e["minion_id"].to_string()))
        .collect();
    let again: Vec<&String> = second.iter().filter(|id| first.contains(*id)).collect();
    assert!(
        again.iter().all(|id| unfinished.contains(&return_of(id))),
        "a return recorded whole was sent again"
    );
    assert!(again.len() < first.len(), "{} sent twice", again.len());
}

#[test]
fn a_session_the_proxy_closed_while_idle_is_reopened_without_a_fault() {
    let (Some(bin), Some(proxy)) = (rsyslogd_with_relp(), haproxy()) else {
        return;
    };
    let (tmp, jobs) = cache_copy("jobs");
    let want: HashSet<String> = dry_run_ids(&jobs);
    let rsyslogd = Rsyslogd::start(&bin, tmp.path(), Input::Relp(None));
    let haproxy = HaProxy::with_idle_timeout(&proxy, tmp.path(), &rsyslogd.target(), "1s");
    let state = tmp.path().join("state");
    let env = [("SALTSHIP_SINK", "relp"), ("RUST_LOG", "saltship=debug")];
    let watch = Watch::start(&jobs, &state, &haproxy.target(), &env);
    let caught_up = rsyslogd.id_counts(want.len());
    assert_eq!(caught_up.len(), want.len(), "{}", watch.log());
    // HAProxy closes the idle session; the next return opens another, with nothing to resend.
    thread::sleep(Duration::from_secs(3));
    let jid = "20991231235959000001";
    land_job(&jobs, &source_job("failures"), jid, Duration::ZERO);
    let want: HashSet<String> = dry_run_ids(&jobs);
    let counts = rsyslogd.id_counts(want.len());
    let (code, _, log) = watch.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(counts.len(), want.len(), "{log}");
    assert!(log.contains("RELP session ended while idle"), "{log}");
    assert!(!log.contains("cannot deliver"), "{log}");
}

#[test]
fn over_tls_with_a_client_certificate_imrelp_stores_every_event() {
    let Some(bin) = rsyslogd_with_relp() else {
        return;
    };
    let (tmp, jobs) = cache_copy("jobs");
    let Some(pki) = Pki::make(tmp.path()) else {
        return;
    };
    let tls = RelpTls {
        ca: pki.dir.join("ca.pem"),
        cert: pki.dir.join("server.pem"),
        key: pki.dir.join("server.key"),
    };
    let rsyslogd = Rsyslogd::start(&bin, tmp.path(), Input::Relp(Some(&tls)));
    let want: HashSet<String> = dry_run_ids(&jobs);
    let ca = pki.path("ca.pem");
    let run = Saltship::backfill(&jobs)
        .sink("relp")
        .target(&rsyslogd.target())
        .more(["--tls", "--tls-ca", &ca])
        .more(["--tls-cert", &pki.path("client.pem")])
        .more(["--tls-key", &pki.path("client.key")])
        .more(["--format", "syslog"])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(assert_every_id_once_at_least(&rsyslogd, &want), 0);
    // imrelp asks for our certificate: without one the handshake fails for good, at once.
    let started = Instant::now();
    let run = Saltship::backfill(&jobs)
        .sink("relp")
        .target(&rsyslogd.target())
        .more(["--tls", "--tls-ca", &ca, "--deliver-timeout", "30s"])
        .run();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("client certificate"), "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "retried a permanent fault"
    );
}

/// Whether HAProxy at `target` closes a new connection at once (its backend marked down).
fn closes_at_once(target: &str) -> bool {
    use std::io::Read;
    let Ok(mut conn) = std::net::TcpStream::connect(target) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    matches!(conn.read(&mut [0u8; 16]), Ok(0) | Err(_))
        && conn.read(&mut [0u8; 16]).is_ok_and(|n| n == 0)
}

/// `--sink tcp` through HAProxy whose health checks found the backend down: HAProxy accepts
/// and closes at once, and a run that sent and closed within that millisecond would read the
/// close after its own FIN, as from a receiver that read everything. The connection is
/// confirmed only once it settled, so nothing is recorded (exit 3 at the deadline), and a
/// later run to a receiver ships every event. `check` says what a close after ours proves.
#[test]
fn tcp_through_haproxy_with_its_backend_down_records_nothing() {
    let Some(proxy) = haproxy() else {
        return;
    };
    let (tmp, jobs) = cache_copy("jobs");
    let down = format!("127.0.0.1:{}", crate::common::free_port());
    let haproxy = HaProxy::health_checked(&proxy, tmp.path(), &down);
    let target = haproxy.target();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !closes_at_once(&target) {
        assert!(
            Instant::now() < deadline,
            "haproxy never marked {down} down"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let state = tmp.path().join("state");
    let run = Saltship::sync(&jobs)
        .state_file(&state)
        .sink("tcp")
        .target(&target)
        .more(["--deliver-timeout", "3s"])
        .run();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("receiver closed the connection"),
        "{}",
        run.stderr
    );
    // `check` fails the proxy that closes at once, and says of a close after ours what it
    // proves.
    let line = |check: &Run, target: &str| -> String {
        check
            .stdout
            .lines()
            .find(|l| l.contains(&format!("target {target}")))
            .unwrap_or_else(|| panic!("no target line: {}", check.stdout))
            .to_owned()
    };
    let check = Saltship::check(&jobs).target(&target).run_text();
    let failed = line(&check, &target);
    assert!(check.code == 1 && failed.starts_with("FAIL"), "{failed}");
    assert!(
        failed.contains("receiver closed the connection"),
        "{failed}"
    );
    let receiver = crate::common::receiver::Receiver::start(Default::default());
    let check = Saltship::check(&jobs).target(&receiver.target()).run_text();
    let ok = line(&check, &receiver.target());
    assert!(
        ok.starts_with("ok")
            && ok.contains("proves delivery only with no proxy or load balancer in between")
            && ok.contains("--sink relp, splunk-hec or elasticsearch"),
        "{ok}"
    );
    let all: HashSet<String> = dry_run_ids(&jobs);
    let run = Saltship::sync(&jobs)
        .state_file(&state)
        .target(&receiver.target())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = crate::common::receiver::event_ids(&receiver.finish());
    assert_eq!(got, all, "every event ships once the receiver is reachable");
}

/// A port that takes the connection and never answers `open` (not a RELP server, or a hung
/// one) is reported as such, not as the delivery deadline passing.
#[test]
fn a_server_that_never_answers_open_is_named_as_such() {
    let (_tmp, jobs) = cache_copy("jobs");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("addr").to_string();
    // Accepts, reads nothing, says nothing; the connections close with the listener.
    let held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(8) {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
        held
    });
    let run = Saltship::sync(&jobs)
        .sink("relp")
        .target(&target)
        .more(["--deliver-timeout", "2s"])
        .run_text();
    drop(held);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("no answer to open"), "{}", run.stderr);
}
