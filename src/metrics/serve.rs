//! `--metrics-listen`: `GET /metrics` over HTTP/1, on one thread of its own.
//!
//! What it must survive: a client on the network that holds hundreds of connections open and
//! sends nothing, or half a request line (a slowloris), must not blind the monitoring. Go's
//! server behind node_exporter is the bar, and this is how it is met:
//! - A waiting connection costs a socket and the bytes it sent, not a thread: one thread polls
//!   them all (mio: epoll, kqueue) and answers a request as soon as its head is complete.
//! - Each connection has [`HEAD_TIME`] from its accept to send a head of at most [`HEAD_BYTES`]
//!   (else 431), then [`ANSWER_TIME`] to take the answer, and is closed (no keep-alive).
//! - At most [`MAX_CONNECTIONS`] are held (fewer under a low open-files limit, so shipping keeps
//!   its descriptors). One more closes the oldest connection still sending its head (or done),
//!   never the new one: a scraper sends its request at once, so it gets through however many
//!   idle connections a client holds; only a client that opens more connections than the cap
//!   within one scraper's round trip could push it out.
//!
//! The shipping loop only meets the server at the metrics' lock, which is held to copy numbers,
//! never while a socket is written. tiny_http was the first choice, but its 0.12 runs a thread per
//! connection without limit and has no read timeout; then two worker threads with a queue of
//! four: 300 idle connections filled them, and every scrape was closed at once.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use log::debug;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::Metrics;

/// The most connections held at once (Prometheus needs one per scrape).
pub(crate) const MAX_CONNECTIONS: usize = 512;
/// From accept to the end of the request head; Prometheus sends its ~300 bytes at once.
pub(crate) const HEAD_TIME: Duration = Duration::from_secs(3);
/// To write the whole answer, however slowly the peer reads.
pub(crate) const ANSWER_TIME: Duration = Duration::from_secs(10);
/// The largest request head taken.
pub(crate) const HEAD_BYTES: usize = 8 << 10;
/// After the answer, how long (and how many bytes) what the client still sends is read and
/// dropped: closing with unread bytes would reset the connection, and the answer with it.
const DRAIN_TIME: Duration = Duration::from_millis(500);
const DRAIN_BYTES: usize = 64 << 10;
/// How soon to accept again after running out of file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(usize::MAX);

/// Serves `metrics` on `listener` from a thread of its own until the process ends. Returns
/// the address bound.
pub(crate) fn spawn(listener: std::net::TcpListener, metrics: Metrics) -> io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let server = Server {
        poll,
        listener,
        metrics,
        conns: BTreeMap::new(),
        next: 0,
        cap: connection_cap(),
        accept_later: false,
    };
    debug!("metrics: at most {} connections", server.cap);
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || server.run())?;
    Ok(bound)
}

/// [`MAX_CONNECTIONS`], or half the soft open-files limit when that is lower.
fn connection_cap() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| open_files_limit(&limits));
    soft.map_or(MAX_CONNECTIONS, |soft| (soft / 2).clamp(8, MAX_CONNECTIONS))
}

/// The soft "Max open files" of a `/proc/<pid>/limits` text (`None` when unlimited).
fn open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    metrics: Metrics,
    /// By accept order, so the first is the oldest.
    conns: BTreeMap<usize, Conn>,
    next: usize,
    cap: usize,
    /// Accepting stopped for want of file descriptors: try again after [`ACCEPT_RETRY`].
    accept_later: bool,
}

impl Server {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(e) = self.poll.poll(&mut events, self.timeout()) {
                if e.kind() != ErrorKind::Interrupted {
                    debug!("metrics: poll: {e}");
                    thread::sleep(ACCEPT_RETRY);
                }
                continue;
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    Token(id) => self.progress(id),
                }
            }
            if self.accept_later {
                self.accept();
            }
            self.expire();
        }
    }

    /// Until the next deadline (rounded up: a poll returning early would spin).
    fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let next = self.conns.values().map(|c| c.deadline).min();
        let until = next.map(|d| d.saturating_duration_since(now) + Duration::from_millis(1));
        match (until, self.accept_later) {
            (Some(until), true) => Some(until.min(ACCEPT_RETRY)),
            (None, true) => Some(ACCEPT_RETRY),
            (until, false) => until,
        }
    }

    fn accept(&mut self) {
        self.accept_later = false;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // The connection waits in the backlog: make room for it if we can.
                    debug!("metrics: accept: {e}");
                    if !self.evict() {
                        self.accept_later = true;
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    debug!("metrics: accept: {e}");
                    self.accept_later = true;
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream) {
        if self.conns.len() >= self.cap {
            self.evict();
        }
        let id = self.next;
        self.next += 1;
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(id), interest)
        {
            debug!("metrics: register: {e}");
            return;
        }
        // Readiness already there at registration is reported by the next poll.
        let conn = Conn {
            stream,
            phase: Phase::Head(Vec::new()),
            deadline: Instant::now() + HEAD_TIME,
        };
        self.conns.insert(id, conn);
    }

    /// Closes the oldest connection not being answered (else the oldest): false when none.
    fn evict(&mut self) -> bool {
        let waiting = self.conns.iter().find(|(_, c)| !c.answering());
        let Some(id) = waiting.or(self.conns.iter().next()).map(|(id, _)| *id) else {
            return false;
        };
        debug!(
            "metrics: {} connections held, closed the oldest",
            self.conns.len()
        );
        self.close(id);
        true
    }

    fn progress(&mut self, id: usize) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match conn.step(&self.metrics) {
            Ok(false) => {}
            Ok(true) => self.close(id),
            Err(e) => {
                debug!("metrics: {e}");
                self.close(id);
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = (self.conns.iter())
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.close(id);
        }
    }

    fn close(&mut self, id: usize) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    deadline: Instant,
}

enum Phase {
    /// Reading the request head: what came so far.
    Head(Vec<u8>),
    /// Writing the answer: its bytes, and how many are sent.
    Answer(Vec<u8>, usize),
    /// Answered and our side shut: dropping what still comes, and how much did.
    Drain(usize),
}

impl Conn {
    fn answering(&self) -> bool {
        matches!(self.phase, Phase::Answer(..))
    }

    /// Goes as far as the socket allows without waiting; true once the connection is done.
    /// Edge-triggered polling: each phase reads or writes until the socket would block.
    fn step(&mut self, metrics: &Metrics) -> io::Result<bool> {
        if let Phase::Head(head) = &mut self.phase {
            let ended = read_head(&mut self.stream, head)?;
            match respond(head, || metrics.render()) {
                Some(answer) => {
                    self.phase = Phase::Answer(answer, 0);
                    self.deadline = Instant::now() + ANSWER_TIME;
                }
                None if ended => return Ok(true),
                None => return Ok(false),
            }
        }
        if let Phase::Answer(answer, sent) = &mut self.phase {
            while *sent < answer.len() {
                match self.stream.write(&answer[*sent..]) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.stream.shutdown(Shutdown::Write)?;
            self.phase = Phase::Drain(0);
            self.deadline = Instant::now() + DRAIN_TIME;
        }
        if let Phase::Drain(dropped) = &mut self.phase {
            let mut buf = [0; 4096];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => return Ok(true),
                    Ok(n) => *dropped += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                if *dropped > DRAIN_BYTES {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// Reads what has come into `head`, up to one byte past [`HEAD_BYTES`]; true at the end of
/// the stream.
fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> io::Result<bool> {
    let mut buf = [0; 1024];
    while head.len() <= HEAD_BYTES {
        let room = (HEAD_BYTES + 1 - head.len()).min(buf.len());
        match stream.read(&mut buf[..room]) {
            Ok(0) => return Ok(true),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// The answer to the request `head` read so far, or `None` while it is incomplete.
/// `render` makes the metrics text, called only for `GET /metrics`.
fn respond(head: &[u8], render: impl FnOnce() -> String) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let (status, body) = match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or_default();
            match (req.method, path.split('?').next()) {
                (Some("GET" | "HEAD"), Some("/metrics")) => ("200 OK", render()),
                (_, Some("/metrics")) => ("405 Method Not Allowed", "GET /metrics\n".into()),
                _ => (
                    "404 Not Found",
                    "not found: the metrics are at /metrics\n".into(),
                ),
            }
        }
        Ok(httparse::Status::Partial) if head.len() <= HEAD_BYTES => return None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => (
            "431 Request Header Fields Too Large",
            "request head too large\n".into(),
        ),
        Err(_) => ("400 Bad Request", "bad request\n".into()),
    };
    let content_type = if status.starts_with("200") {
        prometheus::TEXT_FORMAT
    } else {
        "text/plain"
    };
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}; charset=utf-8\r\n\
         Content-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if req.method != Some("HEAD") {
        out.extend_from_slice(body.as_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(head: &str) -> Option<String> {
        let out = respond(head.as_bytes(), || "saltship_up 1\n".to_owned())?;
        Some(String::from_utf8(out).expect("UTF-8"))
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        assert_eq!(answer(""), None);
        assert_eq!(answer("GET /metr"), None);
        assert_eq!(answer("GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn get_metrics_answers_the_text_with_or_without_a_query() {
        for path in ["/metrics", "/metrics?x=1"] {
            let out = answer(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).expect("done");
            assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
            assert!(out.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
            assert!(
                out.contains("Content-Length: 14\r\nConnection: close\r\n\r\n"),
                "{out}"
            );
            assert!(out.ends_with("\r\n\r\nsaltship_up 1\n"), "{out}");
        }
        let head = answer("HEAD /metrics HTTP/1.0\r\n\r\n").expect("done");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn other_paths_are_404_and_other_methods_405() {
        for path in ["/", "/index.html", "/metrics/", "/metricsx", "*"] {
            let out = answer(&format!("GET {path} HTTP/1.1\r\n\r\n")).expect("done");
            assert!(out.starts_with("HTTP/1.1 404 "), "{path}: {out}");
            assert!(!out.contains("saltship_up"), "{out}");
        }
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let out = answer(&format!("{method} /metrics HTTP/1.1\r\n\r\n")).expect("done");
            assert!(out.starts_with("HTTP/1.1 405 "), "{method}: {out}");
            assert!(out.contains("\r\nAllow: GET, HEAD\r\n"), "{out}");
        }
    }

    #[test]
    fn an_oversized_or_broken_head_is_refused() {
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}", "y".repeat(HEAD_BYTES));
        assert!(answer(&big).expect("done").starts_with("HTTP/1.1 431 "));
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        let out = answer(&format!("GET /metrics HTTP/1.1\r\n{many}\r\n")).expect("done");
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        let out = answer("nonsense\r\n\r\n").expect("done");
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    }

    #[test]
    fn the_cap_follows_a_low_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit(limits), Some(1024));
        let unlimited = limits.replace("1024                 524288", "unlimited  unlimited");
        assert_eq!(open_files_limit(&unlimited), None);
        assert!(connection_cap() <= MAX_CONNECTIONS);
    }
}
