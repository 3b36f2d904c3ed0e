//! The RELP sink: rsyslog's own acknowledged protocol, on the delivery core.
//!
//! Each event is one `syslog` frame (its `--format` line without the stream framing: the
//! RFC 5424 message for `syslog`, the JSON object for `json` and `ecs`), numbered within its
//! session, with at most `--relp-window` frames unanswered. A frame counts as delivered at its
//! `rsp 200`, which the receiver itself sends, so unlike the TCP sink's graceful close it
//! proves delivery through a proxy or a load balancer too ([`session`] says what it proves in
//! rsyslog). A frame leaves as soon as it is given: nothing waits for a window to fill.
//!
//! After a fault (another code, `serverclose`, a broken connection) the core sends every
//! batch not yet confirmed again on a new session; the events of them already answered `200`
//! are left out ([`Relp::stored`]), so only frames that were in flight unanswered can reach
//! the receiver twice. At the deadline the batches whose every frame was answered 200 are
//! settled as stored, so a run that gives up still records them. A frame refused
//! [`REFUSALS`] times by a receiver that stores others is rejected, never a block for the
//! events after it. Events are cut to [`DEFAULT_MAX_EVENT_BYTES`] by default, which a stock
//! imrelp stores whole.
//!
//! No RELP crate is well kept (the few on crates.io are unmaintained or server-only), so
//! the framing is ours ([`frame`]), after librelp's.

mod frame;
mod link;
mod session;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use log::warn;

use self::link::Conn;
use self::session::{Id, Session, SessionError};
use crate::format::Format;
use crate::sink::core::{Batch, BatchState, Fate, Fault, Protocol, Reply, Wait};
use crate::sink::tls::Tls;

/// librelp's default window: frames sent and not yet answered.
pub(crate) const DEFAULT_WINDOW: usize = 128;

/// rsyslog imrelp's default `maxDataSize`: the most a frame's data may hold. Over it, its
/// default `oversizeMode="truncate"` stores the first 8096 bytes (cut JSON) and answers 200.
pub(crate) const IMRELP_MAX_DATA: usize = 8096;

/// `--max-event-bytes` for `--sink relp` when none is given: an event cut to this (still valid
/// JSON) makes a frame, header and all, below [`IMRELP_MAX_DATA`].
pub(crate) const DEFAULT_MAX_EVENT_BYTES: usize = 8000;

/// The warning for a `--max-event-bytes` that rsyslog's imrelp, as it comes, would cut.
pub(crate) fn size_warning(max_event_bytes: usize) -> Option<String> {
    (max_event_bytes > IMRELP_MAX_DATA).then(|| {
        format!(
            "--max-event-bytes {max_event_bytes} is more than rsyslog's imrelp takes by default \
             (maxDataSize {IMRELP_MAX_DATA}, oversizeMode truncate: a longer event is stored cut, \
             as invalid JSON, and acknowledged): raise maxDataSize on the receiver to at least \
             {max_event_bytes}, or leave --max-event-bytes at its default for --sink relp \
             ({DEFAULT_MAX_EVENT_BYTES})"
        )
    })
}

/// An event whose frame was answered with another code than 200 this many times in a row is
/// rejected (reported and counted): a receiver that refuses one frame for good (a filter, an
/// `oversizeMode="abort"` it answers) must not block every event after it.
const REFUSALS: u32 = 3;

/// How long the polite `close` at the end may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long the answer to `open` may take: a port that accepts and never answers (not a RELP
/// server) must not take the whole deadline.
const OPEN_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct RelpOptions {
    /// `host:port`, in failover order.
    pub(crate) targets: Vec<String>,
    /// The longest a connect (and a TLS handshake) may take, within the deadline.
    pub(crate) connect_timeout: Duration,
    /// Speak TLS to every target, with this set-up (imrelp's `tls="on"`).
    pub(crate) tls: Option<Tls>,
    /// At most this many frames unanswered (`--relp-window`).
    pub(crate) window: usize,
    /// The events' format, to take its stream framing off.
    pub(crate) format: Format,
}

/// The RELP sink's protocol.
pub(crate) struct Relp {
    opts: RelpOptions,
    session: Option<Session<Conn>>,
    /// The target of the open session.
    target: Option<usize>,
    /// Events answered `200` since the last confirm: not sent again after a fault.
    stored: HashSet<Id>,
    /// Events whose frame was answered with another code: how often, and the last answer.
    refusals: HashMap<Id, (u32, String)>,
    /// A frame was answered 200 since the last event was rejected: the receiver works, so a
    /// frame it refuses again and again is that frame's problem, not the receiver's. A
    /// receiver that goes bad and refuses them all costs one rejected event at most, then
    /// waits for the deadline (exit 3) like one that is down.
    answered: bool,
    /// `stored.len()` when last looked at, to see new answers.
    seen: usize,
}

impl Relp {
    pub(crate) fn new(opts: RelpOptions) -> Relp {
        Relp {
            opts,
            session: None,
            target: None,
            stored: HashSet::new(),
            refusals: HashMap::new(),
            answered: false,
            seen: 0,
        }
    }

    /// Leaves out of `batch` what was answered 200 before a fault, and rejects (with one
    /// warning each) the events refused [`REFUSALS`] times by a receiver that answers 200 to
    /// others: how many it rejected.
    fn sort_out(&mut self, batch: &mut Batch) -> u64 {
        self.answered |= self.stored.len() > self.seen;
        self.seen = self.stored.len();
        let (stored, refusals) = (&self.stored, &mut self.refusals);
        let working = &mut self.answered;
        let target = self.target.map_or("", |i| self.opts.targets[i].as_str());
        batch.retain(|_, k| {
            if stored.contains(&k.id) {
                return Fate::Stored;
            }
            match refusals.get(&k.id) {
                Some((n, answer)) if *n >= REFUSALS && *working => {
                    *working = false;
                    warn!(
                        "{}: event {} rejected: the receiver answered its frame \"{answer}\" {n} times",
                        crate::sink::secret::shown(target),
                        k.id()
                    );
                    refusals.remove(&k.id);
                    Fate::Rejected
                }
                _ => Fate::Again,
            }
        })
    }

    fn open(&self, i: usize, wait: &mut Wait) -> Result<Session<Conn>, Fault> {
        let o = &self.opts;
        let conn = link::dial(&o.targets[i], o.connect_timeout, o.tls.as_ref(), wait)?;
        Session::open(conn, &mut wait.capped(OPEN_WAIT)).map_err(fault)
    }

    /// The open session, renewed first when the server ended it while idle (a proxy's idle
    /// timeout, a receiver restart between two runs of `watch`) or when its transaction
    /// numbers would run out: nothing is unanswered then, so nothing is lost.
    fn session_for(&mut self, frames: usize, wait: &mut Wait) -> Result<&mut Session<Conn>, Fault> {
        let (Some(s), Some(i)) = (self.session.as_mut(), self.target) else {
            return Err(Fault::retry("not connected"));
        };
        if !s.has_numbers_for(frames) {
            s.drain(&mut self.stored, wait).map_err(fault)?;
            let old = self.session.take().expect("checked above");
            let _ = old.close(wait);
            self.session = Some(self.open(i, wait)?);
        } else if s.closed_while_idle(wait) {
            log::debug!(
                "{}: RELP session ended while idle; opening another",
                crate::sink::secret::shown(&self.opts.targets[i])
            );
            self.session = Some(self.open(i, wait)?);
        }
        Ok(self.session.as_mut().expect("opened above"))
    }
}

/// A session's end as the core sees it.
fn fault(e: SessionError) -> Fault {
    match e {
        SessionError::Retry(why) => Fault::retry(why),
        SessionError::Refused(why) => Fault::permanent(why),
    }
}

/// The event without its stream framing (RELP frames carry their own length).
fn unframe(format: Format, event: &[u8]) -> &[u8] {
    match format {
        Format::Json | Format::Ecs => event.strip_suffix(b"\n").unwrap_or(event),
        Format::Gelf => event.strip_suffix(b"\0").unwrap_or(event),
        // `LEN SP MSG` (RFC 6587 octet counting).
        Format::Syslog => event
            .iter()
            .position(|&c| c == b' ')
            .filter(|&at| at > 0 && event[..at].iter().all(u8::is_ascii_digit))
            .map_or(event, |at| &event[at + 1..]),
    }
}

impl Relp {
    /// Sends `events`, each as soon as the window has room for it.
    fn send_events(
        &mut self,
        events: &[(Id, &[u8])],
        stored: &mut HashSet<Id>,
        wait: &mut Wait,
    ) -> Result<(), Fault> {
        let window = self.opts.window.max(1);
        let session = self.session_for(events.len(), wait)?;
        let mut rest = events;
        while !rest.is_empty() {
            // Answers that arrived make room; wait for one only when the window is full.
            let full = session.unanswered() >= window;
            if session.collect(stored, full, wait).map_err(fault)? > 0 {
                wait.progress();
            }
            let n = window.saturating_sub(session.unanswered()).min(rest.len());
            session
                .send(rest[..n].iter().copied(), wait)
                .map_err(fault)?;
            rest = &rest[n..];
        }
        Ok(())
    }
}

impl Protocol for Relp {
    fn batch_bytes(&self) -> usize {
        0
    }

    fn connect(&mut self, i: usize, wait: &mut Wait) -> Result<(), Fault> {
        self.session = None;
        self.target = None;
        let session = self.open(i, wait)?;
        self.session = Some(session);
        self.target = Some(i);
        Ok(())
    }

    fn send(&mut self, _i: usize, batch: &mut Batch, wait: &mut Wait) -> Result<Reply, Fault> {
        // Sent again after a fault: what was answered 200 before it is not sent twice, and
        // an event refused again and again is rejected; the rest goes at the next send.
        let rejected = self.sort_out(batch);
        if batch.keys.is_empty() {
            return Ok(Reply::Stored { rejected });
        }
        if rejected > 0 {
            return Ok(Reply::Partly {
                rejected,
                after: None,
            });
        }
        let format = self.opts.format;
        let events: Vec<(Id, &[u8])> = batch
            .each()
            .map(|(k, event)| (k.id, unframe(format, event)))
            .collect();
        let mut stored = std::mem::take(&mut self.stored);
        let result = self.send_events(&events, &mut stored, wait);
        self.stored.extend(stored);
        result.map(|()| Reply::Taken { ack: None })
    }

    fn confirm(
        &mut self,
        _i: usize,
        batches: &mut VecDeque<Batch>,
        wait: &mut Wait,
    ) -> Result<bool, Fault> {
        let Some(session) = self.session.as_mut() else {
            return Err(Fault::retry("no RELP session to confirm on"));
        };
        session.drain(&mut self.stored, wait).map_err(fault)?;
        // Every batch sent went on this session (a fault sends them all again on the next),
        // and every frame of it is now answered 200.
        for b in batches.iter_mut() {
            if matches!(b.state, BatchState::Sent { .. }) {
                b.state = BatchState::Done;
            }
        }
        self.answered |= self.stored.len() > self.seen;
        self.stored.clear();
        self.seen = 0;
        self.refusals.clear();
        Ok(true)
    }

    /// A batch whose every frame was answered 200 is stored, confirmed or not.
    fn settle(&mut self, batches: &mut VecDeque<Batch>) {
        for b in batches.iter_mut() {
            if b.keys.iter().all(|k| self.stored.contains(&k.id)) {
                b.state = BatchState::Done;
            }
        }
    }

    fn disconnect(&mut self) {
        if let Some((id, answer)) = self.session.as_mut().and_then(Session::take_refused) {
            let n = self.refusals.entry(id).or_insert((0, String::new()));
            *n = (n.0 + 1, answer);
        }
        self.session = None;
        self.target = None;
    }

    fn probe(&mut self, i: usize, wait: &mut Wait) -> Result<String, Fault> {
        let session = self.open(i, wait)?;
        session.close(wait).map_err(fault)?;
        Ok(
            "opened and closed a RELP session with the syslog command: every event will be \
            acknowledged (rsp 200) by the receiver itself, through a proxy too"
                .into(),
        )
    }
}

impl Drop for Relp {
    /// `close` at the end, when nothing is left unanswered.
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if session.unanswered() == 0 {
                let _ = session.close(&mut Wait::new(CLOSE_WAIT, None));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_lose_their_stream_framing() {
        assert_eq!(unframe(Format::Json, b"{\"a\":1}\n"), b"{\"a\":1}");
        assert_eq!(unframe(Format::Ecs, b"{}\n"), b"{}");
        assert_eq!(unframe(Format::Gelf, b"{}\0"), b"{}");
        assert_eq!(unframe(Format::Syslog, b"12 <14>1 - x y"), b"<14>1 - x y");
        assert_eq!(unframe(Format::Syslog, b"<14>1 - x y"), b"<14>1 - x y");
    }
}
