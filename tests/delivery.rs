//! Delivery over TCP to receivers that misbehave: late, resetting, slow, half-closing. Each
//! receiver runs inside the test on 127.0.0.1, bounded in time; in every case each event of
//! the dry-run must arrive at least once and the exit status must be 0.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{backfill, multiplied_cache, saltship, Run};

/// How the receiver misbehaves.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Start listening only after this long.
    late: Duration,
    /// Reset the connection (and restart on the same port) after this many lines since the last
    /// restart, however many connections they came on, this many times.
    reset_after: Option<(usize, usize)>,
    /// Pause this long after every line.
    slow: Duration,
    /// Close our sending side after this many lines, this many times, and read on.
    half_close_after: Option<(usize, usize)>,
}

struct Receiver {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(faults: Faults) -> Receiver {
        // Take a free port, then let it go so the receiver can come up late on it.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        let thread = thread::spawn(move || serve(port, faults, &l, &s));
        Receiver {
            port,
            lines,
            stop,
            thread: Some(thread),
        }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the receiver; the lines it read, whole lines only.
    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            t.join().expect("receiver thread");
        }
        std::mem::take(&mut *self.lines.lock().expect("lines"))
    }
}

fn serve(port: u16, faults: Faults, lines: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    thread::sleep(faults.late);
    let (mut resets, mut half_closes) = (0, 0);
    'listen: while Instant::now() < deadline {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("rebind the same port");
        let mut since_restart = 0;
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut count = 0;
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if !line.ends_with('\n') => break,
                    Ok(_) => {}
                }
                lines
                    .lock()
                    .expect("lines")
                    .push(line.trim_end().to_owned());
                count += 1;
                since_restart += 1;
                if !faults.slow.is_zero() {
                    thread::sleep(faults.slow);
                }
                if let Some((after, times)) = faults.reset_after {
                    if since_restart == after && resets < times {
                        resets += 1;
                        // Linger 0 makes close send RST, as a crashing receiver would.
                        socket2::SockRef::from(&conn)
                            .set_linger(Some(Duration::ZERO))
                            .expect("linger");
                        drop(reader);
                        drop(conn);
                        drop(listener);
                        thread::sleep(Duration::from_millis(300));
                        continue 'listen;
                    }
                }
                if let Some((after, times)) = faults.half_close_after {
                    if count == after && half_closes < times {
                        half_closes += 1;
                        let _ = conn.shutdown(Shutdown::Write);
                    }
                }
            }
            // EOF from the sender: close our side too, which confirms what we read.
            let _ = (&conn).flush();
        }
    }
}

fn event_ids(lines: &[String]) -> HashSet<String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("received non-JSON ({e}): {l}"));
            v["event_id"].as_str().expect("event_id").to_owned()
        })
        .collect()
}

/// Backfills `jobs` to a receiver with `faults` and checks every dry-run event arrived.
fn deliver(jobs: &std::path::Path, faults: Faults, extra: &[&str]) -> (Run, Vec<String>, usize) {
    let want = backfill(jobs, &[]);
    assert_eq!(want.code, 0, "{}", want.stderr);
    let receiver = Receiver::start(faults);
    let target = receiver.target();
    let jobs_arg = jobs.to_str().expect("UTF-8");
    let mut args = vec![
        "backfill",
        "--cache-dir",
        jobs_arg,
        "--master-id",
        "testmaster",
        "--target",
        &target,
    ];
    args.extend_from_slice(extra);
    let run = saltship(&args);
    let lines = receiver.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = event_ids(&lines);
    let missing: Vec<&String> = want
        .events
        .iter()
        .map(|e| e["event_id"].as_str().expect("id"))
        .filter(|id| !got.contains(*id))
        .map(|_| &run.stderr)
        .collect();
    assert!(
        missing.is_empty(),
        "{} events never arrived; stderr: {}",
        missing.len(),
        run.stderr
    );
    (run, lines, want.events.len())
}

#[test]
fn receiver_up_two_seconds_late() {
    let (_tmp, jobs) = common::cache_copy("jobs");
    let (run, lines, _) = deliver(
        &jobs,
        Faults {
            late: Duration::from_secs(2),
            ..Faults::default()
        },
        &[],
    );
    // One warning when the outage starts and one line when it ends, not one per attempt.
    assert_eq!(
        run.stderr.matches("cannot reach").count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("again after").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(!lines.is_empty());
}

#[test]
fn receiver_that_resets_after_3000_lines_five_times() {
    let (_tmp, jobs) = multiplied_cache(240);
    let (run, lines, events) = deliver(
        &jobs,
        Faults {
            reset_after: Some((3000, 5)),
            ..Faults::default()
        },
        &[],
    );
    assert!(
        events >= 24_000,
        "only {events} events for the 24,000-event case"
    );
    // Each reset lost the unconfirmed tail, which was sent again.
    assert!(
        lines.len() > events,
        "{} lines for {events} events",
        lines.len()
    );
    assert!(run.stderr.contains("5 reconnects"), "{}", run.stderr);
}

#[test]
fn slow_receiver() {
    let (_tmp, jobs) = common::cache_copy("jobs");
    deliver(
        &jobs,
        Faults {
            slow: Duration::from_millis(2),
            ..Faults::default()
        },
        &[],
    );
}

#[test]
fn receiver_that_half_closes() {
    let (_tmp, jobs) = multiplied_cache(20);
    deliver(
        &jobs,
        Faults {
            half_close_after: Some((500, 3)),
            ..Faults::default()
        },
        &[],
    );
}

#[test]
fn max_rate_spaces_events_out() {
    let (_tmp, jobs) = common::cache_copy("jobs");
    let start = Instant::now();
    let (run, lines, _) = deliver(&jobs, Faults::default(), &["--max-rate", "200"]);
    // ~110 events at 200/s cannot take less than about half a second.
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?} for {} events: {}",
        start.elapsed(),
        lines.len(),
        run.stderr
    );
}

#[test]
fn no_receiver_exits_3_and_says_what_was_not_delivered() {
    let (_tmp, jobs) = common::cache_copy("jobs");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let target = format!("127.0.0.1:{port}");
    let run = saltship(&[
        "backfill",
        "--cache-dir",
        jobs.to_str().expect("UTF-8"),
        "--target",
        &target,
        "--deliver-timeout",
        "1s",
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("not delivered"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn fails_over_to_the_next_target_in_order() {
    let (_tmp, jobs) = common::cache_copy("jobs");
    let want = backfill(&jobs, &[]);
    let dead = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let receiver = Receiver::start(Faults::default());
    let targets = format!("127.0.0.1:{dead},{}", receiver.target());
    let cache = jobs.to_str().expect("UTF-8");
    // Comma-separated, as SALTSHIP_TARGET takes them.
    let run = saltship(&[
        "backfill",
        "--cache-dir",
        cache,
        "--master-id",
        "testmaster",
        "--target",
        &targets,
    ]);
    let got = event_ids(&receiver.finish());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(want
        .events
        .iter()
        .all(|e| got.contains(e["event_id"].as_str().expect("id"))));
    // The second target answered at once: no outage was declared.
    assert!(!run.stderr.contains("cannot reach"), "{}", run.stderr);
}
