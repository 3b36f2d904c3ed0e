//! A TLS connection past its handshake, with the sink's delivery proof one layer up: our
//! close_notify and FIN, then the receiver's close_notify or EOF.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, ProtocolVersion};

use crate::sink::core::wait::{Patient, Wait};

use super::failure::{describe, explain, failure, Ctx};

/// A TLS connection to a receiver, past its handshake.
pub(crate) struct TlsStream {
    conn: ClientConnection,
    sock: TcpStream,
    ctx: Ctx,
}

impl TlsStream {
    /// The handshake on `sock` within `timeout`; `asked` tells whether the receiver asked for
    /// our certificate. Nothing of ours is written before it succeeded.
    pub(super) fn handshake(
        mut conn: ClientConnection,
        sock: TcpStream,
        timeout: Duration,
        client_cert: bool,
        asked: impl Fn() -> bool,
    ) -> io::Result<TlsStream> {
        let done = complete_handshake(&mut conn, &sock, Instant::now() + timeout, &asked);
        let ctx = Ctx {
            client_cert,
            asked: asked(),
        };
        done.map_err(|e| explain(e, ctx, timeout))?;
        sock.set_read_timeout(None)?;
        Ok(TlsStream { conn, sock, ctx })
    }

    /// Encrypts and writes all of `bytes`, by the deadline of `wait`.
    pub(crate) fn write_all(&mut self, mut bytes: &[u8], wait: &mut Wait) -> io::Result<()> {
        while !bytes.is_empty() {
            // rustls takes what fits in its buffer; writing that out makes room for the rest.
            let n = self.conn.writer().write(bytes)?;
            if n == 0 && !self.conn.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
            self.flush_tls(wait)?;
        }
        Ok(())
    }

    fn flush_tls(&mut self, wait: &mut Wait) -> io::Result<()> {
        let mut sock = Patient {
            sock: &self.sock,
            wait,
        };
        while self.conn.wants_write() {
            self.conn.write_tls(&mut sock)?;
        }
        Ok(())
    }

    /// Reads what the receiver sent (decrypted): waits for it by the deadline of `wait` when
    /// `block`, else `Ok(None)` when nothing is ready; `Ok(Some(0))` when it closed.
    pub(crate) fn read(
        &mut self,
        buf: &mut [u8],
        block: bool,
        wait: &mut Wait,
    ) -> io::Result<Option<usize>> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
                Err(e) => return Err(e),
            }
            let got = if block {
                self.conn.read_tls(&mut Patient {
                    sock: &self.sock,
                    wait,
                })
            } else {
                self.sock.set_nonblocking(true)?;
                let got = self.conn.read_tls(&mut &self.sock);
                self.sock.set_nonblocking(false)?;
                got
            };
            match got {
                Ok(0) => return Ok(Some(0)),
                Ok(_) => {
                    self.conn.process_new_packets().map_err(|e| {
                        let (why, permanent) = describe(&e, self.ctx);
                        failure(why, permanent)
                    })?;
                }
                Err(e) if !block && e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Why the receiver is gone, if it closed (close_notify or EOF), broke the connection or
    /// sent an alert since we last looked; anything else it sent is read and dropped.
    pub(crate) fn peer_closed(&mut self) -> Option<io::Error> {
        if let Err(e) = self.sock.set_nonblocking(true) {
            return Some(e);
        }
        let read = read_to_close(&mut self.conn, &mut &self.sock, self.ctx);
        if let Err(e) = self.sock.set_nonblocking(false) {
            return Some(e);
        }
        match read {
            Ok(()) => Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "receiver closed the connection",
            )),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => Some(e),
        }
    }

    /// Our close_notify and FIN, then the receiver's close_notify or EOF by the deadline:
    /// proof it read every byte before ours.
    pub(crate) fn close_gracefully(&mut self, wait: &mut Wait) -> io::Result<()> {
        // A receiver that closed earlier would show an EOF that proves nothing.
        if let Some(e) = self.peer_closed() {
            return Err(match e.kind() {
                io::ErrorKind::ConnectionAborted => io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "receiver closed the connection early",
                ),
                _ => e,
            });
        }
        self.conn.send_close_notify();
        self.flush_tls(wait)?;
        self.sock.shutdown(Shutdown::Write)?;
        let mut io = Patient {
            sock: &self.sock,
            wait,
        };
        match read_to_close(&mut self.conn, &mut io, self.ctx) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "receiver did not close the connection",
            )),
            done => done,
        }
    }
}

/// Does the handshake by `deadline` (`complete_io`, explicitly, so no event is buffered
/// before it). `asked` tells whether the receiver asked for our certificate.
fn complete_handshake(
    conn: &mut ClientConnection,
    sock: &TcpStream,
    deadline: Instant,
    asked: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut io = Until { sock, deadline };
    while conn.is_handshaking() {
        conn.complete_io(&mut io)?;
    }
    // In TLS 1.3 a receiver judges our certificate (or its absence) after our last handshake
    // message, so its refusal would come after our first events: wait briefly for its verdict,
    // a session ticket or an alert. Receivers that send neither cost this wait per connection.
    if conn.protocol_version() == Some(ProtocolVersion::TLSv1_3) && asked() {
        io.deadline = deadline.min(Instant::now() + VERDICT_WAIT);
        match conn.read_tls(&mut io) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                conn.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How long to wait for a TLS 1.3 receiver's verdict on our client certificate.
const VERDICT_WAIT: Duration = Duration::from_secs(1);

/// Reads (and drops) what the receiver sends until its close_notify or EOF; an error (a
/// `WouldBlock` on a non-blocking socket, a `TimedOut` from [`Until`]) otherwise.
fn read_to_close(conn: &mut ClientConnection, io: &mut dyn Read, ctx: Ctx) -> io::Result<()> {
    let mut discard = [0u8; 4096];
    loop {
        match conn.read_tls(io) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let state = conn.process_new_packets().map_err(|e| {
            let (why, permanent) = describe(&e, ctx);
            failure(why, permanent)
        })?;
        let mut left = state.plaintext_bytes_to_read();
        while left > 0 {
            match conn.reader().read(&mut discard)? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        if state.peer_has_closed() {
            return Ok(());
        }
    }
}

/// The socket, with reads that give up at `deadline` with `TimedOut`.
struct Until<'a> {
    sock: &'a TcpStream,
    deadline: Instant,
}

impl Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.sock.set_read_timeout(Some(left))?;
        match (&mut &*self.sock).read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
            read => read,
        }
    }
}

impl Write for Until<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&mut &*self.sock).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
