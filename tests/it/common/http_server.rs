//! A small HTTP/1.1 server inside the test, on 127.0.0.1, for the faults a real receiver will
//! not make on demand: it answers each request as the test's handler says (keep-alive), or cuts
//! the connection. Every request is kept. Bounded in time: it stops when dropped, or after two
//! minutes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request as it came.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Which connection it came on (0, 1, ... in the order they were accepted).
    pub conn: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body's lines, parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    /// The event ids in a HEC request (one envelope per line).
    pub fn hec_ids(&self) -> Vec<String> {
        self.json_lines()
            .iter()
            .map(|e| e["event"]["event_id"].as_str().expect("id").to_owned())
            .collect()
    }

    /// The `_id`s of the actions in a `_bulk` request.
    pub fn bulk_ids(&self) -> Vec<String> {
        self.json_lines()
            .iter()
            .filter_map(|l| l["create"]["_id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// What the handler wants done with a request.
pub enum Answer {
    /// Status, extra headers, body.
    Reply(u16, Vec<(&'static str, String)>, String),
    /// Close the connection without answering.
    Cut,
}

pub fn json(status: u16, body: serde_json::Value) -> Answer {
    Answer::Reply(status, vec![], body.to_string())
}

type Handler = dyn Fn(&Request, usize) -> Answer + Send + Sync;

pub struct Server {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
    /// Each connection the client closed (we read its EOF): which one, and when.
    pub closed: Arc<Mutex<Vec<(usize, Instant)>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Serves with `handler(request, index of the request)`. `cut_mid_body(i)` true makes
    /// request `i` be cut after half its body was read.
    pub fn start(
        handler: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static,
        cut_mid_body: impl Fn(usize) -> bool + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let cut: Arc<dyn Fn(usize) -> bool + Send + Sync> = Arc::new(cut_mid_body);
        let (r, s, e) = (requests.clone(), stop.clone(), closed.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut accepted = 0;
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (r, h, c, s) = (r.clone(), handler.clone(), cut.clone(), s.clone());
                        let (e, id) = (e.clone(), accepted);
                        accepted += 1;
                        thread::spawn(move || {
                            if serve(conn, id, &r, &*h, &*c, &s) {
                                e.lock().expect("closed").push((id, Instant::now()));
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            port,
            requests,
            closed,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }

    /// The requests to paths ending with `suffix`.
    pub fn to(&self, suffix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(suffix))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves one connection; true when it ended by the client's close (EOF between requests).
fn serve(
    conn: TcpStream,
    id: usize,
    requests: &Mutex<Vec<Request>>,
    handler: &Handler,
    cut: &(dyn Fn(usize) -> bool + Send + Sync),
    stop: &AtomicBool,
) -> bool {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    while !stop.load(Ordering::SeqCst) {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return false;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let index = requests.lock().expect("requests").len();
        if cut(index) {
            let mut half = vec![0; len / 2];
            let _ = reader.read_exact(&mut half);
            requests.lock().expect("requests").push(Request {
                path,
                headers,
                body: half,
                at: Instant::now(),
                conn: id,
            });
            return false; // dropped mid-body
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return false;
        }
        let request = Request {
            path,
            headers,
            body,
            at: Instant::now(),
            conn: id,
        };
        requests.lock().expect("requests").push(request.clone());
        match handler(&request, index) {
            Answer::Cut => return false,
            Answer::Reply(status, extra, body) => {
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                if !extra
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                {
                    head.push_str("Content-Type: application/json\r\n");
                }
                for (n, v) in extra {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if conn.write_all(head.as_bytes()).is_err()
                    || conn.write_all(body.as_bytes()).is_err()
                {
                    return false;
                }
            }
        }
    }
    false
}

/// The HEC token the HTTP fault tests hand over (by file), to look for in what saltship prints.
pub const TOKEN: &str = "s3cr3t-t0ken-value";

/// `backfill` of `jobs` to `url` with `--sink sink`, `extra` options and a token file written
/// beside `state` (also its checkpoint); the run and how long it took.
pub fn ship(
    jobs: &std::path::Path,
    state: &std::path::Path,
    sink: &str,
    url: &str,
    extra: &[&str],
) -> (crate::common::Run, Duration) {
    let token = state.with_extension("token");
    crate::common::write_secret(&token, format!("{TOKEN}\n"));
    let cmd = crate::common::Saltship::backfill(jobs)
        .sink(sink)
        .target(url)
        .state_file(state)
        .arg("--hec-token-file")
        .arg(&token)
        .more(extra);
    let start = Instant::now();
    let run = cmd.run();
    (run, start.elapsed())
}
