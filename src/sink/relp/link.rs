//! The connection a RELP session runs on: plain TCP, or TLS with the `--tls*` options (as
//! imrelp's `tls="on"` speaks it), dialled as the TCP sink dials.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Duration;

use super::session::Link;
use crate::sink::core::wait::Patient;
use crate::sink::core::Wait;
use crate::sink::tcp::dial_tcp;
use crate::sink::tls::{Tls, TlsStream};

/// A connection to a RELP server.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// One connection attempt to `target` (and its TLS handshake when asked for).
pub(crate) fn dial(
    target: &str,
    connect_timeout: Duration,
    tls: Option<&Tls>,
    wait: &mut Wait,
) -> io::Result<Conn> {
    let timeout = connect_timeout.min(wait.left()?);
    let sock = dial_tcp(target, timeout)?;
    match tls {
        None => Ok(Conn::Plain(sock)),
        Some(tls) => tls
            .connect(target, sock, timeout)
            .map(|s| Conn::Tls(Box::new(s))),
    }
}

impl Link for Conn {
    fn write_all(&mut self, bytes: &[u8], wait: &mut Wait) -> io::Result<()> {
        match self {
            Conn::Plain(s) => io::Write::write_all(&mut Patient { sock: s, wait }, bytes),
            Conn::Tls(s) => s.write_all(bytes, wait),
        }
    }

    fn read(&mut self, buf: &mut [u8], block: bool, wait: &mut Wait) -> io::Result<Option<usize>> {
        match self {
            Conn::Plain(s) if block => Patient { sock: s, wait }.read(buf).map(Some),
            Conn::Plain(s) => read_ready(s, buf),
            Conn::Tls(s) => s.read(buf, block, wait),
        }
    }
}

/// What has arrived on `sock`, without waiting: `None` when nothing has.
pub(crate) fn read_ready(sock: &TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    sock.set_nonblocking(true)?;
    let read = loop {
        match (&mut &*sock).read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(None),
            read => break read.map(Some),
        }
    };
    sock.set_nonblocking(false)?;
    read
}
