//! `--metrics-listen`: `GET /metrics` over HTTP/1, on threads of its own.
//!
//! Bounded so that no scraper, slow or hostile, can hold shipping or the endpoint: one accept
//! thread hands connections to [`WORKERS`] threads through a queue of [`QUEUED`]; when both are
//! full a new connection is closed at once. Each connection gets [`REQUEST_TIME`] from its
//! accept to send its request head (at most [`HEAD_BYTES`]) and [`RESPONSE_TIME`] to take the
//! answer, then is closed (no keep-alive). The shipping loop only meets the server at the
//! metrics' lock, which is held to copy numbers, never while a socket is written.
//!
//! Requests are parsed by `httparse`. tiny_http was the first choice, but its 0.12 runs a
//! thread per connection without limit and has no read timeout: an idle connection holds a
//! thread for ever.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use log::debug;

use super::Metrics;

/// Threads answering requests.
pub const WORKERS: usize = 2;
/// Accepted connections waiting for a worker.
pub const QUEUED: usize = 4;
/// From accept to the end of the request head.
pub const REQUEST_TIME: Duration = Duration::from_secs(2);
/// To write the whole answer.
pub const RESPONSE_TIME: Duration = Duration::from_secs(10);
/// The largest request head taken (Prometheus sends about 300 bytes).
pub const HEAD_BYTES: usize = 8 << 10;

/// Serves `metrics` on `listener` from threads of its own until the process ends. Returns
/// the address bound.
pub fn spawn(listener: TcpListener, metrics: Metrics) -> io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let (tx, rx) = sync_channel::<(TcpStream, Instant)>(QUEUED);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..WORKERS {
        let (rx, metrics) = (rx.clone(), metrics.clone());
        thread::Builder::new()
            .name(format!("metrics-{i}"))
            .spawn(move || work(&rx, &metrics))?;
    }
    thread::Builder::new()
        .name("metrics-accept".into())
        .spawn(move || loop {
            match listener.accept() {
                Ok((conn, peer)) => match tx.try_send((conn, Instant::now())) {
                    Ok(()) => {}
                    // Dropping the connection closes it: busy now, try again later.
                    Err(TrySendError::Full(_)) => debug!("metrics: busy, closed {peer}"),
                    Err(TrySendError::Disconnected(_)) => return,
                },
                Err(e) => {
                    // Out of file descriptors and the like: do not spin on it.
                    debug!("metrics: accept: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
        })?;
    Ok(bound)
}

fn work(rx: &Mutex<Receiver<(TcpStream, Instant)>>, metrics: &Metrics) {
    loop {
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((mut conn, accepted)) = next else {
            return;
        };
        if let Err(e) = answer(&mut conn, accepted, metrics) {
            debug!("metrics: {e}");
        }
    }
}

/// Reads one request head and answers it.
fn answer(conn: &mut TcpStream, accepted: Instant, metrics: &Metrics) -> io::Result<()> {
    let head = read_head(conn, accepted + REQUEST_TIME)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let (status, body) = match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => match (req.method, req.path) {
            (Some("GET" | "HEAD"), Some("/metrics")) => ("200 OK", metrics.render()),
            (Some("GET" | "HEAD"), Some("/")) => (
                "200 OK",
                "saltship: the metrics are at /metrics\n".to_owned(),
            ),
            (Some("GET" | "HEAD"), _) => ("404 Not Found", "not found\n".to_owned()),
            _ => ("405 Method Not Allowed", "GET /metrics\n".to_owned()),
        },
        _ => ("400 Bad Request", "bad request\n".to_owned()),
    };
    let content_type = if status.starts_with("200") {
        prometheus::TEXT_FORMAT
    } else {
        "text/plain"
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if req.method != Some("HEAD") {
        out.extend_from_slice(body.as_bytes());
    }
    write_all_by(conn, &out, Instant::now() + RESPONSE_TIME)?;
    conn.shutdown(std::net::Shutdown::Write)
}

/// The request head (up to the blank line), read by `deadline`.
fn read_head(conn: &mut TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too big",
            ));
        }
        conn.set_read_timeout(Some(left(deadline)?))?;
        match conn.read(&mut buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    Ok(head)
}

/// Writes `bytes` by `deadline`, however slowly the peer reads.
fn write_all_by(conn: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        conn.set_write_timeout(Some(left(deadline)?))?;
        let n = conn.write(&bytes[..bytes.len().min(64 << 10)])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// The time left until `deadline`, or a timeout error once it passed.
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}
