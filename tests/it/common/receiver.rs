//! A TCP receiver inside the test, on 127.0.0.1, that can misbehave on purpose: late,
//! resetting, slow, half-closing. It keeps the whole lines it read.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How the receiver misbehaves.
#[derive(Clone, Copy, Default)]
pub struct Faults {
    /// Start listening only after this long.
    pub late: Duration,
    /// Reset the connection (and restart on the same port) after this many lines since the last
    /// restart, however many connections they came on, this many times.
    pub reset_after: Option<(usize, usize)>,
    /// Pause this long after every line.
    pub slow: Duration,
    /// Close our sending side after this many lines, this many times, and read on.
    pub half_close_after: Option<(usize, usize)>,
}

pub struct Receiver {
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(faults: Faults) -> Receiver {
        // Take a free port, then let it go so the receiver can come up late on it.
        let port = crate::common::free_port();
        Receiver::start_on(port, faults)
    }

    /// A receiver on a given port (one that was used before, say).
    pub fn start_on(port: u16, faults: Faults) -> Receiver {
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

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The lines read so far.
    pub fn lines_so_far(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Stops the receiver; the lines it read, whole lines only.
    pub fn finish(mut self) -> Vec<String> {
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

pub fn event_ids(lines: &[String]) -> HashSet<String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("received non-JSON ({e}): {l}"));
            v["event_id"].as_str().expect("event_id").to_owned()
        })
        .collect()
}

/// What a [`Deaf`] listener does with each connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Deafness {
    /// Holds it open and never reads a byte.
    NeverReads,
    /// Closes it at once.
    ClosesAtOnce,
}

/// A listener on 127.0.0.1 that accepts connections and then misbehaves, until dropped (at
/// most two minutes).
pub struct Deaf {
    pub port: u16,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Deaf {
    pub fn start(how: Deafness) -> Deaf {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut held = Vec::new();
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        if how == Deafness::NeverReads {
                            held.push(conn);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Deaf {
            port,
            accepted,
            stop,
        }
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Deaf {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
