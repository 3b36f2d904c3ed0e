//! One RELP session on one connection: `open`, then `syslog` frames with a window of
//! unanswered ones, each answered `rsp` matched to the event it carried, and `close`.
//!
//! What `rsp 200` proves: the server's RELP library handed the message to its application
//! and that returned. In rsyslog (imrelp) with `main_queue(queue.type="Direct")` that is after
//! the actions ran (omfile wrote the line); with a queue in memory it is only "queued"; with a
//! disk-assisted queue, written to the queue's files. Anything else ends the session: another
//! code (RELP defines only 200 and 500 "error", with no retriable/permanent split), a
//! `serverclose` hint, a broken connection or bytes that are not RELP. What was not answered
//! 200 is then sent again on a new session, in order: the receiver may hold it twice.

use std::collections::{HashSet, VecDeque};
use std::io;

use super::frame::{self, Incoming};
use crate::sink::core::Wait;

/// An event's id: what the session tells the sink was stored.
pub(crate) type Id = [u8; 32];

/// Replies are short (the longest is the answer to `open`, with the offers).
const MAX_REPLY: usize = 64 * 1024;

/// A connection that RELP frames travel on (plain TCP or TLS).
pub(crate) trait Link {
    /// Writes all of `bytes` by the deadline.
    fn write_all(&mut self, bytes: &[u8], wait: &mut Wait) -> io::Result<()>;
    /// Reads what the server sent: waits for it (by the deadline) when `block`, else
    /// `Ok(None)` when nothing is ready. `Ok(Some(0))` is the server's EOF.
    fn read(&mut self, buf: &mut [u8], block: bool, wait: &mut Wait) -> io::Result<Option<usize>>;
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionError {
    /// Retrying (on a new session) may help.
    Retry(String),
    /// The server refused the session for a reason retrying cannot fix (its `open` answer).
    Refused(String),
}

impl From<io::Error> for SessionError {
    fn from(e: io::Error) -> SessionError {
        SessionError::Retry(e.to_string())
    }
}

/// A RELP client session.
pub(crate) struct Session<L: Link> {
    link: L,
    reader: frame::Reader,
    /// The next frame's transaction number.
    next: u32,
    /// Frames sent and not yet answered, oldest first: their txnr and the event's id.
    unanswered: VecDeque<(u32, Id)>,
    /// The server said `serverclose` or closed the connection.
    closed: bool,
    /// The event whose frame was answered with a code other than 200, and that answer.
    refused: Option<(Id, String)>,
}

impl<L: Link> Session<L> {
    /// Opens a session on `link`: our offers, then the server's `200` enabling `syslog`.
    pub(crate) fn open(link: L, wait: &mut Wait) -> Result<Session<L>, SessionError> {
        let mut s = Session {
            link,
            reader: frame::Reader::new(MAX_REPLY),
            next: 1,
            unanswered: VecDeque::new(),
            closed: false,
            refused: None,
        };
        let txnr = s.write("open", &frame::open_offers(), wait)?;
        // Silence until the (capped) wait ends is not the deliver deadline passing: a port
        // that takes connections and says nothing is not a RELP server, or a hung one.
        let rsp = s.answer_to(txnr, wait).map_err(|e| match e {
            SessionError::Retry(_) if wait.left().is_err() && !wait.stopped() => {
                SessionError::Retry("no answer to open: not a RELP server, or a hung one".into())
            }
            e => e,
        })?;
        if !rsp.ok() {
            return Err(SessionError::Refused(format!(
                "refused the RELP session: {} {}",
                rsp.code, rsp.text
            )));
        }
        if !frame::offers_syslog(&rsp.data) {
            return Err(SessionError::Refused(
                "opened a RELP session without the syslog command".into(),
            ));
        }
        Ok(s)
    }

    /// The event whose frame the server answered with a code other than 200 (which ended the
    /// session), and its answer.
    pub(crate) fn take_refused(&mut self) -> Option<(Id, String)> {
        self.refused.take()
    }

    /// Frames sent and not answered yet.
    pub(crate) fn unanswered(&self) -> usize {
        self.unanswered.len()
    }

    /// Whether `frames` more frames fit before the transaction numbers run out (a session
    /// that would need more is closed and a new one opened).
    pub(crate) fn has_numbers_for(&self, frames: usize) -> bool {
        u64::from(self.next) + frames as u64 <= u64::from(frame::MAX_TXNR)
    }

    /// Sends each event as one `syslog` frame, in one write.
    pub(crate) fn send<'a>(
        &mut self,
        events: impl IntoIterator<Item = (Id, &'a [u8])>,
        wait: &mut Wait,
    ) -> Result<(), SessionError> {
        let mut out = Vec::new();
        for (id, data) in events {
            let txnr = self.take_txnr()?;
            frame::write(&mut out, txnr, "syslog", data);
            self.unanswered.push_back((txnr, id));
        }
        self.link.write_all(&out, wait)?;
        Ok(())
    }

    /// Reads the answers that arrived (waiting for one at least when `block`), adds the id
    /// of each event answered `200` to `stored`, and says how many were answered. Any other
    /// answer ends the session.
    pub(crate) fn collect(
        &mut self,
        stored: &mut HashSet<Id>,
        block: bool,
        wait: &mut Wait,
    ) -> Result<usize, SessionError> {
        let mut answered = 0;
        loop {
            while let Some(incoming) = self.reader.next().map_err(broken)? {
                let Incoming::Rsp(rsp) = incoming else {
                    self.closed = true;
                    return Err(self.ended("closed the session (serverclose)"));
                };
                let Some(at) = self.unanswered.iter().position(|(t, _)| *t == rsp.txnr) else {
                    return Err(SessionError::Retry(format!(
                        "answered frame {} that is not waiting for an answer",
                        rsp.txnr
                    )));
                };
                if !rsp.ok() {
                    let answer = format!("{} {}", rsp.code, rsp.text);
                    self.refused = Some((self.unanswered[at].1, answer.clone()));
                    return Err(SessionError::Retry(format!(
                        "answered frame {} with {answer}",
                        rsp.txnr
                    )));
                }
                let (_, id) = self.unanswered.remove(at).expect("found above");
                stored.insert(id);
                answered += 1;
            }
            if self.unanswered.is_empty() && !self.reader.is_partial() {
                return Ok(answered);
            }
            if !self.fill(block && answered == 0, wait)? {
                return Ok(answered);
            }
        }
    }

    /// Waits until every frame sent is answered.
    pub(crate) fn drain(
        &mut self,
        stored: &mut HashSet<Id>,
        wait: &mut Wait,
    ) -> Result<(), SessionError> {
        while !self.unanswered.is_empty() {
            self.collect(stored, true, wait)?;
        }
        Ok(())
    }

    /// Whether the server ended an idle session (EOF or `serverclose`) since we last looked:
    /// nothing is lost then, a new session just has to be opened.
    pub(crate) fn closed_while_idle(&mut self, wait: &mut Wait) -> bool {
        if !self.unanswered.is_empty() {
            return false;
        }
        loop {
            if self.closed {
                return true;
            }
            match self.reader.next() {
                Ok(Some(Incoming::ServerClose)) => self.closed = true,
                // An answer to nothing, or garbage: this session is no good either.
                Ok(Some(Incoming::Rsp(_))) | Err(_) => return true,
                Ok(None) => match self.fill(false, wait) {
                    Ok(true) => {}
                    Ok(false) => return false,
                    Err(_) => return true,
                },
            }
        }
    }

    /// Ends the session politely: `close`, and its answer (librelp's has no code).
    pub(crate) fn close(mut self, wait: &mut Wait) -> Result<(), SessionError> {
        let mut stored = HashSet::new();
        self.drain(&mut stored, wait)?;
        let txnr = self.write("close", b"", wait)?;
        self.answer_to(txnr, wait).map(|_| ())
    }

    /// Reads more bytes into the frame reader: `false` when none were ready.
    fn fill(&mut self, block: bool, wait: &mut Wait) -> Result<bool, SessionError> {
        let mut buf = [0u8; 16 * 1024];
        match self.link.read(&mut buf, block, wait)? {
            None => Ok(false),
            Some(0) => {
                self.closed = true;
                Err(self.ended("closed the connection"))
            }
            Some(n) => {
                self.reader.push(&buf[..n]);
                Ok(true)
            }
        }
    }

    /// The session ended on the server's side, with `why`.
    fn ended(&self, why: &str) -> SessionError {
        match self.unanswered.len() {
            0 => SessionError::Retry(why.into()),
            n => SessionError::Retry(format!("{why} with {n} frames unanswered")),
        }
    }

    fn take_txnr(&mut self) -> Result<u32, SessionError> {
        let txnr = self.next;
        self.next = frame::next_txnr(txnr)
            .ok_or_else(|| SessionError::Retry("RELP transaction numbers ran out".into()))?;
        Ok(txnr)
    }

    /// Writes one frame of `command` outside the window.
    fn write(&mut self, command: &str, data: &[u8], wait: &mut Wait) -> Result<u32, SessionError> {
        let txnr = self.take_txnr()?;
        let mut out = Vec::new();
        frame::write(&mut out, txnr, command, data);
        self.link.write_all(&out, wait)?;
        Ok(txnr)
    }

    /// Waits for the answer to frame `txnr` (sent outside the window).
    fn answer_to(&mut self, txnr: u32, wait: &mut Wait) -> Result<frame::Rsp, SessionError> {
        loop {
            match self.reader.next().map_err(broken)? {
                Some(Incoming::Rsp(rsp)) if rsp.txnr == txnr => return Ok(rsp),
                Some(Incoming::Rsp(rsp)) => {
                    return Err(SessionError::Retry(format!(
                        "answered frame {} while {txnr} was waiting",
                        rsp.txnr
                    )))
                }
                Some(Incoming::ServerClose) => {
                    self.closed = true;
                    return Err(self.ended("closed the session (serverclose)"));
                }
                None => {
                    self.fill(true, wait)?;
                }
            }
        }
    }
}

fn broken(e: frame::FrameError) -> SessionError {
    SessionError::Retry(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A server that answers from a script: each read hands over the next chunk; an empty
    /// script is a server with nothing to say (a blocking read then times out).
    #[derive(Default)]
    struct Script {
        written: Vec<u8>,
        chunks: VecDeque<Vec<u8>>,
    }

    impl Link for &mut Script {
        fn write_all(&mut self, bytes: &[u8], _: &mut Wait) -> io::Result<()> {
            self.written.extend_from_slice(bytes);
            Ok(())
        }
        fn read(&mut self, buf: &mut [u8], block: bool, _: &mut Wait) -> io::Result<Option<usize>> {
            match self.chunks.pop_front() {
                Some(c) => {
                    buf[..c.len()].copy_from_slice(&c);
                    Ok(Some(c.len()))
                }
                None if block => Err(io::ErrorKind::TimedOut.into()),
                None => Ok(None),
            }
        }
    }

    /// `txnr rsp ...` frames for each `(txnr, data)`.
    fn rsp(frames: &[(u32, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (txnr, data) in frames {
            frame::write(&mut out, *txnr, "rsp", data.as_bytes());
        }
        out
    }

    fn open_ok() -> Vec<u8> {
        rsp(&[(1, "200 OK\nrelp_version=0\ncommands=syslog")])
    }

    fn wait() -> Wait {
        Wait::new(Duration::from_secs(5), None)
    }

    fn id(n: u8) -> Id {
        [n; 32]
    }

    fn script(chunks: &[&[u8]]) -> Script {
        Script {
            written: Vec::new(),
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
        }
    }

    fn events(n: u8) -> Vec<(Id, &'static [u8])> {
        (1..=n).map(|i| (id(i), &b"{\"e\":1}"[..])).collect()
    }

    #[test]
    fn open_offers_ours_and_needs_a_200_that_enables_syslog() {
        let mut link = script(&[&open_ok()]);
        Session::open(&mut link, &mut wait()).expect("open");
        let sent = String::from_utf8(link.written).unwrap();
        assert!(sent.starts_with("1 open "), "{sent}");
        assert!(sent.contains("relp_version=0\nrelp_software=saltship,"));
        assert!(sent.ends_with("commands=syslog\n"));
    }

    #[test]
    fn an_open_refused_or_without_syslog_is_permanent() {
        let mut link = script(&[&rsp(&[(1, "500 required command not supported by client")])]);
        let err = Session::open(&mut link, &mut wait()).err().unwrap();
        assert!(matches!(&err, SessionError::Refused(why) if why.contains("500 required")));
        let mut link = script(&[&rsp(&[(1, "200 OK\nrelp_version=0\ncommands=")])]);
        let err = Session::open(&mut link, &mut wait()).err().unwrap();
        assert!(matches!(err, SessionError::Refused(_)));
    }

    #[test]
    fn garbage_or_silence_at_open_is_retried() {
        let mut link = script(&[b"HTTP/1.1 400 Bad Request\r\n"]);
        assert!(matches!(
            Session::open(&mut link, &mut wait()).err().unwrap(),
            SessionError::Retry(_)
        ));
        let mut link = script(&[]);
        assert!(matches!(
            Session::open(&mut link, &mut wait()).err().unwrap(),
            SessionError::Retry(_)
        ));
    }

    #[test]
    fn silence_until_the_wait_ends_is_no_answer_to_open() {
        let mut link = script(&[]);
        let mut over = Wait::new(Duration::from_millis(1), None);
        std::thread::sleep(Duration::from_millis(5));
        let err = Session::open(&mut link, &mut over).err().unwrap();
        assert_eq!(
            err,
            SessionError::Retry("no answer to open: not a RELP server, or a hung one".into())
        );
    }

    #[test]
    fn frames_are_numbered_after_open_and_each_200_stores_its_event() {
        let mut link = script(&[&open_ok()]);
        let mut s = Session::open(&mut link, &mut wait()).unwrap();
        s.send(events(3), &mut wait()).unwrap();
        assert_eq!(s.unanswered(), 3);
        let mut stored = HashSet::new();
        s.link.chunks.push_back(b"2 rsp 6 200 OK\n3 rsp".to_vec());
        assert_eq!(s.collect(&mut stored, false, &mut wait()), Ok(1));
        assert_eq!(stored, HashSet::from([id(1)]));
        s.link
            .chunks
            .push_back(b" 6 200 OK\n4 rsp 6 200 OK\n".to_vec());
        s.drain(&mut stored, &mut wait()).unwrap();
        assert_eq!(stored, HashSet::from([id(1), id(2), id(3)]));
        assert_eq!(s.unanswered(), 0);
        let sent = String::from_utf8(link.written).unwrap();
        let frames: Vec<&str> = sent.lines().skip(3).collect();
        assert_eq!(
            frames,
            [
                "2 syslog 7 {\"e\":1}",
                "3 syslog 7 {\"e\":1}",
                "4 syslog 7 {\"e\":1}"
            ]
        );
    }

    #[test]
    fn a_code_other_than_200_ends_the_session_and_keeps_its_event_unstored() {
        let mut link = script(&[&open_ok()]);
        let mut s = Session::open(&mut link, &mut wait()).unwrap();
        s.send(events(3), &mut wait()).unwrap();
        s.link
            .chunks
            .push_back(rsp(&[(2, "200 OK"), (3, "500 command disabled")]));
        let mut stored = HashSet::new();
        let err = s.drain(&mut stored, &mut wait()).unwrap_err();
        assert_eq!(
            err,
            SessionError::Retry("answered frame 3 with 500 command disabled".into())
        );
        assert_eq!(stored, HashSet::from([id(1)]));
    }

    #[test]
    fn serverclose_mid_window_stores_only_what_was_answered() {
        let mut link = script(&[&open_ok()]);
        let mut s = Session::open(&mut link, &mut wait()).unwrap();
        s.send(events(4), &mut wait()).unwrap();
        s.link
            .chunks
            .push_back(b"2 rsp 6 200 OK\n0 serverclose 0\n".to_vec());
        let mut stored = HashSet::new();
        let err = s.drain(&mut stored, &mut wait()).unwrap_err();
        assert!(
            matches!(&err, SessionError::Retry(why) if why.contains("(serverclose) with 3 frames unanswered")),
            "{err:?}"
        );
        assert_eq!(stored, HashSet::from([id(1)]));
    }

    #[test]
    fn an_eof_or_an_answer_to_nothing_ends_the_session() {
        let mut link = script(&[&open_ok(), b"2 rsp 6 200 OK\n", b""]);
        let mut s = Session::open(&mut link, &mut wait()).unwrap();
        s.send(events(2), &mut wait()).unwrap();
        let mut stored = HashSet::new();
        let err = s.drain(&mut stored, &mut wait()).unwrap_err();
        assert!(matches!(&err, SessionError::Retry(why) if why.contains("closed the connection")));
        assert_eq!(stored.len(), 1);

        let mut link = script(&[&open_ok(), b"9 rsp 6 200 OK\n"]);
        let mut s = Session::open(&mut link, &mut wait()).unwrap();
        s.send(events(1), &mut wait()).unwrap();
        assert!(s.drain(&mut stored, &mut wait()).is_err());
    }

    #[test]
    fn an_idle_session_the_server_closed_is_told_apart_from_a_live_one() {
        let mut link = script(&[&open_ok()]);
        let mut s = Session::open(&mut link, &mut wait()).unwrap();
        assert!(!s.closed_while_idle(&mut wait()));
        s.link.chunks.push_back(b"0 serverclose 0\n".to_vec());
        assert!(s.closed_while_idle(&mut wait()));
        let mut link = script(&[&open_ok(), b""]);
        let mut s = Session::open(&mut link, &mut wait()).unwrap();
        assert!(s.closed_while_idle(&mut wait()));
    }

    #[test]
    fn close_waits_for_the_window_then_for_closes_answer() {
        let mut link = script(&[
            &open_ok(),
            b"2 rsp 6 200 OK\n",
            b"3 rsp 0\n0 serverclose 0\n",
        ]);
        let mut s = Session::open(&mut link, &mut wait()).unwrap();
        s.send(events(1), &mut wait()).unwrap();
        s.close(&mut wait()).unwrap();
        assert!(String::from_utf8(link.written)
            .unwrap()
            .ends_with("3 close 0\n"));
    }
}
