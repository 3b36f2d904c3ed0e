//! The TCP sink (plain or TLS) on the delivery core ([`super::deliver`]).
//!
//! A successful `write()` only means the local kernel took the bytes; a receiver that crashes
//! loses what it had not read. So bytes count as delivered only after a graceful close: we shut
//! down our sending side and wait (bounded) for the receiver's EOF, which it sends only after
//! reading everything before our FIN. A receiver that closes with data unread resets the
//! connection instead. On any error, everything since the last confirmation is sent again on a
//! new connection (duplicates are possible; `event_id` lets receivers drop them).
//!
//! What this cannot prove: that an application read the bytes. A receiver that half-closes
//! after our FIN without reading, or a proxy in between, answers our FIN all the same; the
//! acknowledged sinks (`relp`, `splunk-hec`, `elasticsearch`) are for such set-ups. A proxy
//! whose backend is down is caught only when it closes before our FIN (the EOF check before
//! the shutdown, no sooner than [`SETTLE`] after the connect): one that knows at once that
//! no backend is up (HAProxy with health checks) is caught so; one that tries the backend
//! first (HAProxy without health checks: about 3 s of retries) buffers what we send and
//! closes with a FIN when it gives up, so a run that closes sooner reads that EOF after its
//! own FIN, exactly as from a receiver that read everything. No signal on the wire tells the
//! two apart (docs/sinks.md, "TCP behind a proxy"). With TLS
//! ([`super::tls`]) the same proof runs one layer up; a certificate problem is permanent.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol as IpProtocol, Socket, TcpKeepalive, Type};

use super::core::wait::Patient;
use super::core::{Batch, BatchState, Fault, Protocol, Reply, Wait};
use super::tls::{Tls, TlsStream};

#[derive(Debug, Clone)]
pub(crate) struct TcpOptions {
    /// `host:port`, in failover order; names are resolved again at every connect.
    pub(crate) targets: Vec<String>,
    /// The longest a connect (and a TLS handshake) may take, within the deadline.
    pub(crate) connect_timeout: Duration,
    /// Speak TLS to every target, with this set-up.
    pub(crate) tls: Option<Tls>,
}

/// A connection to a receiver, plain (with when it [`Settle`]s) or TLS.
enum Stream {
    Plain(TcpStream, Settle),
    Tls(Box<TlsStream>),
}

/// A plain connection that carried little is confirmed no sooner than this after it opened
/// (plus two connect times, for the round trip), and only if the peer has not closed it by
/// then: a proxy or load balancer with no backend to hand it to (HAProxy with its server
/// marked down by health checks) accepts, then closes within a millisecond; a run that sent
/// and closed first would read that close after its own FIN, as from a receiver that read
/// everything. TLS needs no wait: its handshake already needs the receiver behind the proxy.
const SETTLE: Duration = Duration::from_millis(10);

/// A connection that carried this much needs no wait: a proxy that closes at once has not
/// read it all (its buffer is 16 KiB in HAProxy and nginx), and closing with bytes unread
/// resets the connection, which the close reports. So a backfill's 4 MiB windows never wait.
const SETTLED_BYTES: usize = 1 << 20;

/// When a plain connection may be confirmed.
struct Settle {
    at: Instant,
    sent: usize,
}

impl Settle {
    /// For a connection that took `connect` to open, now.
    fn new(connect: Duration) -> Settle {
        Settle {
            at: Instant::now() + SETTLE + 2 * connect,
            sent: 0,
        }
    }

    /// How long a close must still wait.
    fn left(&self) -> Duration {
        if self.sent >= SETTLED_BYTES {
            return Duration::ZERO;
        }
        self.at.saturating_duration_since(Instant::now())
    }
}

impl Stream {
    fn write_all(&mut self, bytes: &[u8], wait: &mut Wait) -> io::Result<()> {
        match self {
            Stream::Plain(s, settle) => {
                settle.sent += bytes.len();
                io::Write::write_all(&mut Patient { sock: s, wait }, bytes)
            }
            Stream::Tls(s) => s.write_all(bytes, wait),
        }
    }

    /// Why the receiver is gone, if it closed its side or broke the connection since we
    /// last looked; anything it sent us is read and dropped.
    fn peer_closed(&mut self) -> Option<io::Error> {
        match self {
            Stream::Plain(s, _) => peer_closed(s).then(|| {
                io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "receiver closed the connection",
                )
            }),
            Stream::Tls(s) => s.peer_closed(),
        }
    }

    fn close_gracefully(&mut self, wait: &mut Wait) -> io::Result<()> {
        match self {
            Stream::Plain(s, settle) => {
                wait.sleep(settle.left())?;
                close_gracefully(s, wait)
            }
            Stream::Tls(s) => s.close_gracefully(wait),
        }
    }
}

/// The TCP sink's protocol: stream the events, confirm by a graceful close.
pub(crate) struct Tcp {
    opts: TcpOptions,
    conn: Option<Stream>,
}

impl Tcp {
    pub(crate) fn new(opts: TcpOptions) -> Tcp {
        Tcp { opts, conn: None }
    }
}

impl Protocol for Tcp {
    fn batch_bytes(&self) -> usize {
        0
    }

    fn connect(&mut self, i: usize, wait: &mut Wait) -> Result<(), Fault> {
        let stream = dial(&self.opts.targets[i], &self.opts, wait)?;
        self.conn = Some(stream);
        Ok(())
    }

    fn send(&mut self, _: usize, batch: &mut Batch, wait: &mut Wait) -> Result<Reply, Fault> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Fault::retry("not connected"));
        };
        match conn.peer_closed() {
            Some(e) => Err(e.into()),
            None => conn.write_all(&batch.bytes, wait).map_err(Fault::from),
        }?;
        Ok(Reply::Taken { ack: None })
    }

    fn confirm(
        &mut self,
        _: usize,
        all: &mut VecDeque<Batch>,
        wait: &mut Wait,
    ) -> Result<bool, Fault> {
        let Some(mut conn) = self.conn.take() else {
            return Err(Fault::retry("no connection to confirm on"));
        };
        conn.close_gracefully(wait)?;
        for b in all.iter_mut() {
            b.state = BatchState::Done;
        }
        Ok(false)
    }

    fn disconnect(&mut self) {
        self.conn = None;
    }

    fn probe(&mut self, i: usize, wait: &mut Wait) -> Result<String, Fault> {
        let mut conn = dial(&self.opts.targets[i], &self.opts, wait)?;
        conn.close_gracefully(wait)?;
        Ok(PROBED.into())
    }
}

/// What `check` proved: that something closed after us, which proves delivery only when no
/// proxy or load balancer sits between (one answers our FIN itself, whatever its backend
/// does; see docs/sinks.md "TCP behind a proxy").
const PROBED: &str = "accepts a connection and closes it after ours: that proves delivery only \
    with no proxy or load balancer in between, which closes after us whatever its backend does \
    (behind one, use --sink relp, splunk-hec or elasticsearch: the receiver itself acknowledges)";

/// One connection attempt to `target`, with its TLS handshake when asked for.
fn dial(target: &str, opts: &TcpOptions, wait: &mut Wait) -> io::Result<Stream> {
    let timeout = opts.connect_timeout.min(wait.left()?);
    let start = Instant::now();
    let sock = dial_tcp(target, timeout)?;
    match &opts.tls {
        None => Ok(Stream::Plain(sock, Settle::new(start.elapsed()))),
        Some(tls) => tls
            .connect(target, sock, timeout)
            .map(|s| Stream::Tls(Box::new(s))),
    }
}

/// One TCP connection attempt to `target`, with the socket options we want.
pub(crate) fn dial_tcp(target: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolves to no address");
    for addr in target.to_socket_addrs()? {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM,
            Some(IpProtocol::TCP),
        )?;
        socket.set_nodelay(true)?;
        socket.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(Duration::from_secs(30))
                .with_interval(Duration::from_secs(10)),
        )?;
        match socket.connect_timeout(&addr.into(), timeout) {
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

/// Our FIN, then the receiver's EOF by the deadline: proof it read every byte before ours.
fn close_gracefully(stream: &TcpStream, wait: &mut Wait) -> io::Result<()> {
    // A receiver that half-closed earlier would show an EOF that proves nothing.
    if peer_closed(stream) {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "receiver closed the connection early",
        ));
    }
    stream.shutdown(Shutdown::Write)?;
    let mut buf = [0u8; 1024];
    let mut patient = Patient { sock: stream, wait };
    loop {
        match patient.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "receiver did not close the connection",
                ))
            }
            Err(e) => return Err(e),
        }
    }
}
