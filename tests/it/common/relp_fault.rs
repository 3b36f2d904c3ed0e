//! A RELP server of the tests' own, for the replies rsyslog does not give on demand: a code
//! other than 200, a `serverclose` mid-window, frames held unanswered. It keeps every
//! session's frames and the events it stored (answered 200), in order.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One frame as a RELP client sends it: txnr, command, data.
pub type Frame = (u32, String, Vec<u8>);

fn read_frame(r: &mut BufReader<TcpStream>) -> Option<Frame> {
    let mut field = |stop: &[u8]| -> Option<String> {
        let mut out = Vec::new();
        loop {
            let mut c = [0u8];
            r.read_exact(&mut c).ok()?;
            if stop.contains(&c[0]) {
                out.push(c[0]);
                return String::from_utf8(out).ok();
            }
            out.push(c[0]);
        }
    };
    let txnr = field(b" ")?.trim_end().parse().ok()?;
    let command = field(b" ")?.trim_end().to_owned();
    let len_field = field(b" \n")?;
    let len: usize = len_field.trim_end().parse().ok()?;
    let mut data = vec![0u8; len];
    if len > 0 {
        r.read_exact(&mut data).ok()?;
        let mut lf = [0u8];
        r.read_exact(&mut lf).ok()?;
    }
    Some((txnr, command, data))
}

/// What a fault server does with frame `index` (0-based, `syslog` frames only) of session
/// `session`.
#[derive(Clone, Copy, PartialEq)]
pub enum Act {
    /// `rsp 200`: stored.
    Ok,
    /// No answer yet (in flight when the session ends).
    Hold,
    /// This answer, then the connection is closed.
    AnswerAndClose(&'static str),
    /// `serverclose`, then the connection is closed.
    ServerClose,
}

/// A RELP server of our own on 127.0.0.1: answers `open` as imrelp does, then each `syslog`
/// frame as `act` says; keeps every session's frames and the events it stored (answered 200).
pub struct FaultServer {
    port: u16,
    pub sessions: Arc<Mutex<Vec<Vec<Frame>>>>,
    pub stored: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FaultServer {
    pub fn start(act: impl Fn(usize, usize) -> Act + Send + 'static) -> FaultServer {
        FaultServer::by_event(move |session, i, _| act(session, i))
    }

    /// As [`FaultServer::start`], `act` also given the frame's `event_id`.
    pub fn by_event(act: impl Fn(usize, usize, &str) -> Act + Send + 'static) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let stored = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, halt) = (sessions.clone(), stored.clone(), stop.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !halt.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).expect("blocking");
                conn.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let n = {
                    let mut s = s.lock().unwrap();
                    s.push(Vec::new());
                    s.len() - 1
                };
                serve(conn, n, &act, &s, &st);
            }
        });
        FaultServer {
            port,
            sessions,
            stored,
            stop,
        }
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn event_id(data: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(data).expect("a JSON event");
    v["event_id"].as_str().expect("event_id").to_owned()
}

/// Our FIN, then what the client still sends is read until it closes (bounded): a close with
/// unread bytes would be a reset, which throws away the answers the client had not read yet.
fn close_politely(out: TcpStream, mut r: BufReader<TcpStream>) {
    let _ = out.shutdown(std::net::Shutdown::Write);
    let _ = r.get_ref().set_read_timeout(Some(Duration::from_secs(5)));
    let mut sink = [0u8; 4096];
    while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
}

fn serve(
    conn: TcpStream,
    session: usize,
    act: &dyn Fn(usize, usize, &str) -> Act,
    sessions: &Mutex<Vec<Vec<Frame>>>,
    stored: &Mutex<Vec<String>>,
) {
    let mut out = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    let mut index = 0;
    let rsp = |out: &mut TcpStream, txnr: u32, text: &str| {
        let _ = writeln!(out, "{txnr} rsp {} {text}", text.len());
    };
    while let Some((txnr, command, data)) = read_frame(&mut r) {
        match command.as_str() {
            "open" => rsp(
                &mut out,
                txnr,
                "200 OK\nrelp_version=0\nrelp_software=fault\ncommands=syslog",
            ),
            "close" => {
                let _ = write!(out, "{txnr} rsp 0\n0 serverclose 0\n");
                return;
            }
            "syslog" => {
                sessions.lock().unwrap()[session].push((txnr, command, data.clone()));
                let id = event_id(&data);
                match act(session, index, &id) {
                    Act::Ok => {
                        stored.lock().unwrap().push(id);
                        rsp(&mut out, txnr, "200 OK");
                    }
                    Act::Hold => {}
                    Act::AnswerAndClose(text) => {
                        rsp(&mut out, txnr, text);
                        return close_politely(out, r);
                    }
                    Act::ServerClose => {
                        let _ = out.write_all(b"0 serverclose 0\n");
                        return close_politely(out, r);
                    }
                }
                index += 1;
            }
            _ => return,
        }
    }
}
