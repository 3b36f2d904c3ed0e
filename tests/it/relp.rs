//! `--sink relp` against rsyslog's imrelp (Debian's `rsyslog-relp`), alone and behind
//! HAProxy while it is SIGKILLed and restarted; and against fault servers of our own for the
//! replies rsyslog does not give on demand (a code other than 200, `serverclose` mid-window).

use std::collections::HashSet;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::relp::{haproxy, rsyslogd_with_relp, HaProxy, Input, RelpTls, Rsyslogd};
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
    let imtcp = Arc::new(Mutex::new(Rsyslogd::start(&bin, tmp.path(), Input::Tcp)));
    let haproxy = HaProxy::start(&proxy, tmp.path(), &imtcp.lock().unwrap().target());
    let (a, b, c) = (imtcp.clone(), imtcp.clone(), imtcp.clone());
    let target = haproxy.target();
    let run = five_kills(
        move || a.lock().unwrap().lines().len(),
        want.len(),
        move || b.lock().unwrap().kill(),
        move || c.lock().unwrap().restart(),
        || {
            let run = Saltship::backfill(&jobs)
                .sink("tcp")
                .target(&target)
                .more(["--max-rate", "4000", "--deliver-timeout", "60s"])
                .timeout(Duration::from_secs(120))
                .run();
            (run.code, run.stderr)
        },
    );
    let imtcp = imtcp.lock().unwrap();
    let got: HashSet<String> = imtcp.id_counts(0).into_keys().collect();
    let lost = want.difference(&got).count();
    eprintln!(
        "tcp through haproxy, {} SIGKILLs: exit {}, {lost} of {} events lost",
        run.kills,
        run.code,
        want.len()
    );
    // The graceful close cannot see past the proxy: the run says it delivered everything.
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        lost > 0,
        "no event lost: the proof of RELP's need did not show"
    );
}

/// One frame as a RELP client sends it: txnr, command, data.
type Frame = (u32, String, Vec<u8>);

fn read_frame(r: &mut BufReader<TcpStream>) -> Option<Frame> {
    let mut field = |stop: &[u8]| -> Option<String> {
        let mut out = Vec::new();
        loop {
            let mut c = [0u8];
            r.read_exact(&mut c).ok()?;
            if stop.contains(&c[0]) {
                out.push(c[0]);
                return String::from_utf8(out).ok();
            }
            out.push(c[0]);
        }
    };
    let txnr = field(b" ")?.trim_end().parse().ok()?;
    let command = field(b" ")?.trim_end().to_owned();
    let len_field = field(b" \n")?;
    let len: usize = len_field.trim_end().parse().ok()?;
    let mut data = vec![0u8; len];
    if len > 0 {
        r.read_exact(&mut data).ok()?;
        let mut lf = [0u8];
        r.read_exact(&mut lf).ok()?;
    }
    Some((txnr, command, data))
}

/// What a fault server does with frame `index` (0-based, `syslog` frames only) of session
/// `session`.
#[derive(Clone, Copy, PartialEq)]
enum Act {
    /// `rsp 200`: stored.
    Ok,
    /// No answer yet (in flight when the session ends).
    Hold,
    /// This answer, then the connection is closed.
    AnswerAndClose(&'static str),
    /// `serverclose`, then the connection is closed.
    ServerClose,
}

/// A RELP server of our own on 127.0.0.1: answers `open` as imrelp does, then each `syslog`
/// frame as `act` says; keeps every session's frames and the events it stored (answered 200).
struct FaultServer {
    port: u16,
    sessions: Arc<Mutex<Vec<Vec<Frame>>>>,
    stored: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FaultServer {
    fn start(act: impl Fn(usize, usize) -> Act + Send + 'static) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let stored = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, halt) = (sessions.clone(), stored.clone(), stop.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !halt.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).expect("blocking");
                conn.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let n = {
                    let mut s = s.lock().unwrap();
                    s.push(Vec::new());
                    s.len() - 1
                };
                serve(conn, n, &act, &s, &st);
            }
        });
        FaultServer {
            port,
            sessions,
            stored,
            stop,
        }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn event_id(data: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(data).expect("a JSON event");
    v["event_id"].as_str().expect("event_id").to_owned()
}

/// Our FIN, then what the client still sends is read until it closes (bounded): a close with
/// unread bytes would be a reset, which throws away the answers the client had not read yet.
fn close_politely(out: TcpStream, mut r: BufReader<TcpStream>) {
    let _ = out.shutdown(std::net::Shutdown::Write);
    let _ = r.get_ref().set_read_timeout(Some(Duration::from_secs(5)));
    let mut sink = [0u8; 4096];
    while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
}

fn serve(
    conn: TcpStream,
    session: usize,
    act: &dyn Fn(usize, usize) -> Act,
    sessions: &Mutex<Vec<Vec<Frame>>>,
    stored: &Mutex<Vec<String>>,
) {
    let mut out = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    let mut index = 0;
    let rsp = |out: &mut TcpStream, txnr: u32, text: &str| {
        let _ = writeln!(out, "{txnr} rsp {} {text}", text.len());
    };
    while let Some((txnr, command, data)) = read_frame(&mut r) {
        match command.as_str() {
            "open" => rsp(
                &mut out,
                txnr,
                "200 OK\nrelp_version=0\nrelp_software=fault\ncommands=syslog",
            ),
            "close" => {
                let _ = write!(out, "{txnr} rsp 0\n0 serverclose 0\n");
                return;
            }
            "syslog" => {
                sessions.lock().unwrap()[session].push((txnr, command, data.clone()));
                match act(session, index) {
                    Act::Ok => {
                        stored.lock().unwrap().push(event_id(&data));
                        rsp(&mut out, txnr, "200 OK");
                    }
                    Act::Hold => {}
                    Act::AnswerAndClose(text) => {
                        rsp(&mut out, txnr, text);
                        return close_politely(out, r);
                    }
                    Act::ServerClose => {
                        let _ = out.write_all(b"0 serverclose 0\n");
                        return close_politely(out, r);
                    }
                }
                index += 1;
            }
            _ => return,
        }
    }
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
