//! Delivery over TCP (plain or TLS) that loses nothing.
//!
//! A successful `write()` only means the local kernel took the bytes; a receiver that crashes
//! loses what it had not read. So bytes count as delivered only after a graceful close: we shut
//! down our sending side and wait (bounded) for the receiver's EOF, which it sends only after
//! reading everything before our FIN. A receiver that closes with data unread resets the
//! connection instead. On any error, everything since the last confirmation is sent again on a
//! new connection (duplicates are possible; `event_id` lets receivers drop them).
//!
//! Targets are tried in order (failover); one that failed is tried first again once
//! [`FAILBACK`] has passed. Reconnects back off exponentially with jitter. With TLS
//! ([`super::tls`]) the same proof runs one layer up; a certificate problem is not retried: once
//! every target has one, the sink gives up at once.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use super::tls::{self, Tls, TlsStream};
use super::{Sink, SinkError, SinkStats};

/// How long a failed target is passed over before it is tried first again.
pub const FAILBACK: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// `host:port`, in failover order; names are resolved again at every connect.
    pub targets: Vec<String>,
    pub connect_timeout: Duration,
    /// A receiver that takes no byte for this long is treated as gone.
    pub write_timeout: Duration,
    /// How long to wait for the receiver's EOF after ours.
    pub close_timeout: Duration,
    /// Give up (exit 3) after this long without a confirmed delivery.
    pub deliver_timeout: Duration,
    /// At most this many events per second, on average.
    pub max_rate: Option<f64>,
    /// Set by a signal handler: stop waiting for receivers.
    pub stop: Option<Arc<AtomicBool>>,
    /// Speak TLS to every target, with this set-up; the handshake is bounded by
    /// `connect_timeout`.
    pub tls: Option<Tls>,
}

/// A connection to a receiver, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes),
            Stream::Tls(s) => s.write_all(bytes),
        }
    }

    /// Why the receiver is gone, if it closed its side or broke the connection since we
    /// last looked; anything it sent us is read and dropped.
    fn peer_closed(&mut self) -> Option<io::Error> {
        match self {
            Stream::Plain(s) => peer_closed(s).then(|| {
                io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "receiver closed the connection",
                )
            }),
            Stream::Tls(s) => s.peer_closed(),
        }
    }

    fn close_gracefully(&mut self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Plain(s) => close_gracefully(s, timeout),
            Stream::Tls(s) => s.close_gracefully(timeout),
        }
    }
}

struct Conn {
    stream: Stream,
    target: usize,
    /// How much of `pending` this connection has been given.
    written: usize,
}

pub struct TcpSink {
    opts: TcpOptions,
    conn: Option<Conn>,
    /// Everything since the last confirmation, to send again after a failure.
    pending: Vec<u8>,
    pending_events: u64,
    /// When each target last failed, for failback.
    failed_at: Vec<Option<Instant>>,
    /// Each target's last failure, when retrying cannot fix it (a TLS certificate problem).
    permanent: Vec<Option<String>>,
    /// Since when nothing could be confirmed, if something failed.
    trouble_since: Option<Instant>,
    /// The outage warning was printed (all targets unreachable).
    outage_warned: bool,
    backoff: Duration,
    last_error: String,
    rate_next: Instant,
    rng: u64,
    stats: SinkStats,
}

impl TcpSink {
    pub fn new(opts: TcpOptions) -> TcpSink {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        TcpSink {
            failed_at: vec![None; opts.targets.len()],
            permanent: vec![None; opts.targets.len()],
            opts,
            conn: None,
            pending: Vec::new(),
            pending_events: 0,
            trouble_since: None,
            outage_warned: false,
            backoff: BACKOFF_MIN,
            last_error: String::new(),
            rate_next: Instant::now(),
            rng: seed | 1,
            stats: SinkStats::default(),
        }
    }

    /// Writes whatever of `pending` the current connection has not had, reconnecting as needed.
    fn flush_pending(&mut self) -> Result<(), SinkError> {
        loop {
            if self.conn.is_none() {
                self.connect()?;
            }
            let conn = self.conn.as_mut().expect("connected above");
            let result = match conn.stream.peer_closed() {
                Some(e) => Err(e),
                None => conn.stream.write_all(&self.pending[conn.written..]),
            };
            match result {
                Ok(()) => {
                    conn.written = self.pending.len();
                    return Ok(());
                }
                Err(e) => {
                    self.lost(e)?;
                    self.retry_later()?;
                }
            }
        }
    }

    /// After a failure: give up once `--deliver-timeout` has passed without a confirmation,
    /// else wait out the backoff.
    fn retry_later(&mut self) -> Result<(), SinkError> {
        let since = *self.trouble_since.get_or_insert_with(Instant::now);
        self.give_up_after(since)?;
        self.back_off()
    }

    /// Waits out the next backoff, in short steps so that a stop request is seen at once.
    fn back_off(&mut self) -> Result<(), SinkError> {
        let until = Instant::now() + self.next_backoff();
        while Instant::now() < until {
            if self
                .opts
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::SeqCst))
            {
                return Err(SinkError::Stopped);
            }
            sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        Ok(())
    }

    /// A connection failed: drop it; the next one starts from the last confirmation. Gives up
    /// at once when every target has a failure that retrying cannot fix.
    fn lost(&mut self, e: io::Error) -> Result<(), SinkError> {
        if let Some(conn) = self.conn.take() {
            self.failed(conn.target, &e);
            self.give_up_if_permanent()?;
            warn!(
                "connection to {} lost ({e}); sending {} unconfirmed events again",
                self.opts.targets[conn.target], self.pending_events
            );
        }
        self.trouble_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Records that target `i` failed with `e`.
    fn failed(&mut self, i: usize, e: &io::Error) {
        self.failed_at[i] = Some(Instant::now());
        self.last_error = format!("{}: {e}", self.opts.targets[i]);
        self.permanent[i] = tls::is_permanent(e).then(|| self.last_error.clone());
    }

    /// Every target failed in a way retrying cannot fix (a TLS certificate problem): no use
    /// waiting out `--deliver-timeout`.
    fn give_up_if_permanent(&self) -> Result<(), SinkError> {
        let why: Option<Vec<&str>> = self.permanent.iter().map(Option::as_deref).collect();
        match why {
            Some(why) => Err(SinkError::Undelivered(why.join("; "))),
            None => Ok(()),
        }
    }

    /// Connects to the first target that answers, backing off while none does.
    fn connect(&mut self) -> Result<(), SinkError> {
        if self.permanent.iter().all(Option::is_some) {
            // Asked again after giving up on a certificate problem (watch goes on): back off
            // first, so that it is not retried, and reported, in a tight loop.
            self.back_off()?;
        }
        loop {
            for i in self.order() {
                let target = &self.opts.targets[i];
                match dial(target, &self.opts) {
                    Ok(stream) => {
                        self.permanent[i] = None;
                        if let Some(since) = self.trouble_since {
                            self.stats.reconnects += 1;
                            if self.outage_warned {
                                info!(
                                    "delivering to {target} again after {:.1} s",
                                    since.elapsed().as_secs_f64()
                                );
                                self.outage_warned = false;
                            }
                        }
                        debug!("connected to {target}");
                        self.conn = Some(Conn {
                            stream,
                            target: i,
                            written: 0,
                        });
                        return Ok(());
                    }
                    Err(e) => {
                        self.failed(i, &e);
                        debug!("{}", self.last_error);
                    }
                }
            }
            self.give_up_if_permanent()?;
            if !self.outage_warned {
                warn!(
                    "cannot reach {} ({}); retrying",
                    self.opts.targets.join(", "),
                    self.last_error
                );
                self.outage_warned = true;
            }
            self.retry_later()?;
        }
    }

    /// `Undelivered` once `--deliver-timeout` has passed since `since`. The next attempt then
    /// gets a whole new timeout: a daemon that goes on retrying says so once per timeout, not
    /// at every attempt.
    fn give_up_after(&mut self, since: Instant) -> Result<(), SinkError> {
        if since.elapsed() < self.opts.deliver_timeout {
            return Ok(());
        }
        self.trouble_since = None;
        self.outage_warned = false;
        Err(SinkError::Undelivered(format!(
            "{} events not confirmed by any receiver within {} s (last error: {})",
            self.pending_events,
            self.opts.deliver_timeout.as_secs(),
            self.last_error
        )))
    }

    /// Target indexes to try: those that have not failed lately first, each group in order.
    fn order(&self) -> Vec<usize> {
        let recent = |i: &usize| self.failed_at[*i].is_some_and(|t| t.elapsed() < FAILBACK);
        let (mut fresh, failed): (Vec<usize>, Vec<usize>) =
            (0..self.opts.targets.len()).partition(|i| !recent(i));
        fresh.extend(failed);
        fresh
    }

    /// Exponential backoff with jitter: a random wait in [b/2, b), b doubling up to the cap.
    fn next_backoff(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let b = self.backoff;
        self.backoff = (b * 2).min(BACKOFF_MAX);
        b / 2 + b.mul_f64((self.rng % 1000) as f64 / 2000.0)
    }

    fn throttle(&mut self, events: u64) {
        let Some(rate) = self.opts.max_rate else {
            return;
        };
        let now = Instant::now();
        if self.rate_next > now {
            sleep(self.rate_next - now);
        }
        self.rate_next = self.rate_next.max(now) + Duration::from_secs_f64(events as f64 / rate);
    }
}

impl Sink for TcpSink {
    fn send(&mut self, bytes: &[u8], events: u64) -> Result<(), SinkError> {
        self.throttle(events);
        self.pending.extend_from_slice(bytes);
        self.pending_events += events;
        self.flush_pending()?;
        self.stats.events_sent += events;
        Ok(())
    }

    fn confirm(&mut self) -> Result<(), SinkError> {
        while !self.pending.is_empty() {
            self.flush_pending()?;
            let mut conn = self.conn.take().expect("flushed on a connection");
            match conn.stream.close_gracefully(self.opts.close_timeout) {
                Ok(()) => {
                    self.pending.clear();
                    self.pending_events = 0;
                    self.trouble_since = None;
                    self.backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    self.conn = Some(conn);
                    self.lost(e)?;
                    self.retry_later()?;
                }
            }
        }
        Ok(())
    }

    fn unconfirmed(&self) -> usize {
        self.pending.len()
    }

    fn stats(&self) -> SinkStats {
        self.stats
    }
}

/// Connects to `target` (TLS handshake and certificate check included) and closes gracefully,
/// sending nothing: whether a receiver would take and confirm a delivery (`saltship check`).
pub fn probe(target: &str, opts: &TcpOptions) -> io::Result<()> {
    dial(target, opts)?.close_gracefully(opts.close_timeout)
}

/// One connection attempt to `target`, with its TLS handshake when asked for.
fn dial(target: &str, opts: &TcpOptions) -> io::Result<Stream> {
    let sock = dial_tcp(target, opts)?;
    match &opts.tls {
        None => Ok(Stream::Plain(sock)),
        Some(tls) => tls
            .connect(target, sock, opts.connect_timeout)
            .map(|s| Stream::Tls(Box::new(s))),
    }
}

/// One TCP connection attempt to `target`, with the socket options we want.
fn dial_tcp(target: &str, opts: &TcpOptions) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolves to no address");
    for addr in target.to_socket_addrs()? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nodelay(true)?;
        socket.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(Duration::from_secs(30))
                .with_interval(Duration::from_secs(10)),
        )?;
        socket.set_write_timeout(Some(opts.write_timeout))?;
        match socket.connect_timeout(&addr.into(), opts.connect_timeout) {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether the receiver has closed its side (or the connection broke) since we last looked;
/// anything it sent us is read and dropped.
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 1024];
    let closed = loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).is_err() || closed
}

/// Our FIN, then the receiver's EOF within `timeout`: proof it read every byte before ours.
fn close_gracefully(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    // A receiver that half-closed earlier would show an EOF that proves nothing.
    if peer_closed(stream) {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "receiver closed the connection early",
        ));
    }
    stream.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "receiver did not close the connection",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match (&*stream).read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "receiver did not close the connection",
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(targets: usize) -> TcpSink {
        TcpSink::new(TcpOptions {
            targets: (0..targets)
                .map(|i| format!("127.0.0.1:{}", 1000 + i))
                .collect(),
            connect_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            close_timeout: Duration::from_secs(1),
            deliver_timeout: Duration::from_secs(1),
            max_rate: None,
            stop: None,
            tls: None,
        })
    }

    #[test]
    fn failed_targets_go_last_until_failback() {
        let mut s = sink(3);
        assert_eq!(s.order(), [0, 1, 2]);
        s.failed_at[0] = Some(Instant::now());
        assert_eq!(s.order(), [1, 2, 0]);
        // After FAILBACK the first target is first again.
        s.failed_at[0] = Instant::now().checked_sub(FAILBACK + Duration::from_secs(1));
        assert_eq!(s.order(), [0, 1, 2]);
    }

    #[test]
    fn gives_up_at_once_only_when_every_target_has_a_certificate_problem() {
        let mut s = sink(2);
        let certificate = || {
            io::Error::other(tls::TlsFailure {
                why: "unknown issuer".into(),
                permanent: true,
            })
        };
        s.failed(0, &certificate());
        assert!(s.give_up_if_permanent().is_ok());
        s.failed(1, &certificate());
        assert!(matches!(
            s.give_up_if_permanent(),
            Err(SinkError::Undelivered(why)) if why.matches("unknown issuer").count() == 2
        ));
        s.failed(1, &io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(s.give_up_if_permanent().is_ok());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut s = sink(1);
        let waits: Vec<Duration> = (0..12).map(|_| s.next_backoff()).collect();
        assert!(waits[0] >= BACKOFF_MIN / 2 && waits[0] < BACKOFF_MIN);
        assert!(waits[3] >= BACKOFF_MIN * 4 && waits[3] < BACKOFF_MIN * 8);
        assert!(waits.iter().all(|w| *w < BACKOFF_MAX));
        assert!(waits[11] >= BACKOFF_MAX / 2);
    }
}
