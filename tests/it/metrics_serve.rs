//! `watch --metrics-listen` under a slowloris: hundreds of connections that send nothing, or
//! half a request line, must not keep Prometheus from scraping; and only `/metrics` is served.
//!
//! Self-contained on purpose (no `tests/common`): the real binary, a copy of `testdata/jobs`,
//! a TCP receiver of a few lines, and the port read from watch's own log line.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How many idle connections the slowloris holds (the number).
const IDLE: usize = 300;
/// The most a scrape may take beside them.
const SCRAPE_TIME: Duration = Duration::from_secs(3);

/// A TCP receiver that reads each connection to its end, then closes: what the tcp sink's
/// graceful close needs to count a batch as delivered.
struct Receiver {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                            let _ = std::io::copy(&mut conn, &mut std::io::sink());
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { addr, stop }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `saltship watch` on a private copy of `testdata/jobs`, serving metrics on a port of its
/// own choosing; killed (by its own PID) when dropped.
struct Watch {
    child: Child,
    log: PathBuf,
    _tmp: tempfile::TempDir,
    _receiver: Receiver,
}

impl Watch {
    fn start() -> (Watch, String) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let jobs = tmp.path().join("jobs");
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/jobs"),
            &jobs,
        );
        let receiver = Receiver::start();
        let log = tmp.path().join("watch.log");
        let child = Command::new(env!("CARGO_BIN_EXE_saltship"))
            .arg("watch")
            .arg("--cache-dir")
            .arg(&jobs)
            .arg("--state-file")
            .arg(tmp.path().join("state"))
            .args(["--target", &receiver.addr, "--master-id", "testmaster"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .env("SALTSHIP_RESCAN_INTERVAL", "60s")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn watch");
        let watch = Watch {
            child,
            log,
            _tmp: tmp,
            _receiver: receiver,
        };
        let addr = watch.metrics_addr();
        (watch, addr)
    }

    fn log(&self) -> String {
        crate::common::unstamp(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The address from watch's `serving metrics at http://ADDR/metrics` line (bounded wait).
    fn metrics_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if let Some(rest) = log.split("serving metrics at http://").nth(1) {
                let addr = rest.split('/').next().expect("address");
                return addr.to_owned();
            }
            assert!(Instant::now() < deadline, "no metrics address in: {log}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Sends `request` on a new connection and reads the whole answer: status, head, body.
fn exchange(addr: &str, request: &[u8]) -> std::io::Result<(u16, String, String)> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(SCRAPE_TIME))?;
    conn.write_all(request)?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

/// `GET path`, as Prometheus sends it (HTTP/1.1, keep-alive asked for).
fn get(addr: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Prometheus/3\r\n\
         Accept: text/plain;version=0.0.4\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
    );
    exchange(addr, request.as_bytes())
}

/// Whether the server still holds `conn` open: nothing to read yet, and no end.
fn held(conn: &TcpStream) -> bool {
    conn.set_nonblocking(true).expect("nonblocking");
    let held = matches!(conn.peek(&mut [0; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    conn.set_nonblocking(false).expect("blocking");
    held
}

/// A slowloris' connection: nothing at all, or every third one half a request line.
fn idle_connection(addr: &str, i: usize) -> TcpStream {
    let mut conn = TcpStream::connect(addr).expect("connect idle");
    if i.is_multiple_of(3) {
        conn.write_all(b"GET /metr").expect("half a request");
    }
    conn
}

#[test]
fn five_scrapes_are_answered_while_300_idle_connections_are_held() {
    let (watch, addr) = Watch::start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(get(&addr, "/metrics"), Ok((200, ..))) {
        assert!(Instant::now() < deadline, "no metrics: {}", watch.log());
        thread::sleep(Duration::from_millis(100));
    }
    let mut idle: Vec<TcpStream> = (0..IDLE).map(|i| idle_connection(&addr, i)).collect();
    let mut reopened = 0;
    for scrape in 0..5 {
        if scrape > 0 {
            // Spread over longer than the server lets a head take: as a slowloris does,
            // open again what the server closed, so 300 are held at every scrape.
            thread::sleep(Duration::from_millis(900));
        }
        for (i, conn) in idle.iter_mut().enumerate() {
            if !held(conn) {
                *conn = idle_connection(&addr, i);
                reopened += 1;
            }
        }
        let t = Instant::now();
        let answer = get(&addr, "/metrics");
        let took = t.elapsed();
        let (status, _, body) = answer.unwrap_or_else(|e| {
            panic!(
                "scrape {scrape} beside {IDLE} idle connections: {e}\n{}",
                watch.log()
            )
        });
        assert_eq!(status, 200, "scrape {scrape}: {body}");
        assert!(
            body.contains("\nsaltship_returns_total ")
                && body.contains("saltship_minion_last_state_run_success{minion=\"web1\"}"),
            "scrape {scrape}: {body}"
        );
        assert!(took < SCRAPE_TIME, "scrape {scrape} took {took:?}");
        eprintln!("scrape {scrape}: {took:?}, {reopened} idle connections reopened so far");
    }
    let still = idle.iter().filter(|c| held(c)).count();
    assert_eq!(
        still,
        IDLE,
        "{} of {IDLE} idle connections closed",
        IDLE - still
    );
    // 3.6 s in, the first 300 passed the server's time for a request head and were closed.
    assert!(
        reopened >= IDLE,
        "only {reopened} idle connections were closed"
    );
}

#[test]
fn beyond_the_cap_the_oldest_idle_connection_is_closed_not_the_new_one() {
    let (watch, addr) = Watch::start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(get(&addr, "/metrics"), Ok((200, ..))) {
        assert!(Instant::now() < deadline, "no metrics: {}", watch.log());
        thread::sleep(Duration::from_millis(100));
    }
    // More than the server holds (512 at most): the first ones make room for the rest.
    let idle: Vec<TcpStream> = (0..600).map(|i| idle_connection(&addr, i)).collect();
    let (status, _, body) = get(&addr, "/metrics").expect("scrape beside 600");
    assert_eq!(status, 200, "{body}");
    let end = Instant::now() + Duration::from_secs(1);
    while held(&idle[0]) && Instant::now() < end {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!held(&idle[0]), "the oldest idle connection is still held");
    assert!(held(&idle[599]), "the newest idle connection was closed");
}

#[test]
fn only_get_metrics_is_served() {
    let (watch, addr) = Watch::start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(get(&addr, "/metrics"), Ok((200, ..))) {
        assert!(Instant::now() < deadline, "no metrics: {}", watch.log());
        thread::sleep(Duration::from_millis(100));
    }
    let (status, head, body) = get(&addr, "/metrics?debug=1").expect("query");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("saltship_events_total"), "{body}");
    for path in ["/", "/nothing", "/metrics/", "/metricsx", "/index.html"] {
        let (status, _, body) = get(&addr, path).expect("GET");
        assert_eq!(status, 404, "GET {path}: {body}");
    }
    let (status, head, _) =
        exchange(&addr, b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("DELETE");
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("\r\nAllow: GET, HEAD"), "{head}");
    let (status, head, body) =
        exchange(&addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("HEAD");
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    // A request head past the bound is refused, not buffered.
    let mut big = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1000 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(20)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    match exchange(&addr, &big) {
        Ok((status, head, _)) => assert_eq!(status, 431, "{head}"),
        // Closed while we still wrote: refused too.
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "{e}"
        ),
    }
    let (status, _, body) = exchange(&addr, b"nonsense\r\n\r\n").expect("garbage");
    assert_eq!(status, 400, "{body}");
}
