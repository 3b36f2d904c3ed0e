//! The delivery core under every network sink ([`Protocol`]): batches kept until acknowledged,
//! failover across targets in order with failback, backoff with jitter, one warning when an
//! outage starts and one line when it ends, one deadline for every wait, and `--max-rate`.
//! After a [`Fault`] every batch not yet acknowledged is sent again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::protocol::{Batch, BatchState, Fault, Protocol};
use super::wait::Wait;
use super::CoreOptions;

mod batching;
use crate::sink::keys::Keys;
use crate::sink::{Sink, SinkError, SinkStats};

/// How long a failed target is passed over before it is tried first again.
pub(crate) const FAILBACK: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two attempts: the core only waits while events are waiting, and
/// they should go soon after the receiver is back.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A `--max-rate` pause at least this long sends the batch still filling first.
const FLUSH_PAUSE: Duration = Duration::from_millis(10);
/// A 413 halves the batch size for the rest of the run, down to this.
const MIN_CAP: usize = 16 << 10;
/// The shortest wait between two attempts once every target failed.
const MIN_PAUSE: Duration = Duration::from_millis(50);

/// A [`Sink`] made of a [`Protocol`] and the core.
pub(crate) struct Delivery<P: Protocol> {
    proto: P,
    targets: Vec<String>,
    opts: CoreOptions,
    batches: VecDeque<Batch>,
    /// The request bytes of the last batch, and since when it fills.
    filled: usize,
    filling_since: Option<Instant>,
    /// A smaller batch size than the protocol's, after a 413.
    cap: Option<usize>,
    /// Whether "connected" was said for the open connection.
    announced: bool,
    /// The target of the open connection.
    current: Option<usize>,
    wait: Wait,
    /// When each target last failed, for failback.
    failed_at: Vec<Option<Instant>>,
    /// Each target's last failure, when retrying cannot fix it.
    permanent: Vec<Option<String>>,
    /// Failures since the last progress: once every target had one, it is an outage.
    failures: usize,
    /// Since when nothing could be delivered, if there is an outage (it was warned about).
    outage: Option<Instant>,
    /// A fault since the last connect: the next connect is a reconnect.
    broken: bool,
    backoff: Duration,
    last_error: String,
    rate_next: Instant,
    rng: u64,
    stats: SinkStats,
    /// `send` calls so far, and how many of the first were acknowledged in full.
    sends: u64,
    acked: u64,
}

impl<P: Protocol> Delivery<P> {
    /// The core for `proto`, delivering to `targets` (in failover order, as the user wrote
    /// them).
    pub(crate) fn new(proto: P, targets: Vec<String>, opts: CoreOptions) -> Delivery<P> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let n = targets.len();
        Delivery {
            targets,
            wait: Wait::new(opts.deliver_timeout, opts.stop.clone()),
            proto,
            opts,
            batches: VecDeque::new(),
            filled: 0,
            filling_since: None,
            cap: None,
            announced: false,
            current: None,
            failed_at: vec![None; n],
            permanent: vec![None; n],
            failures: 0,
            outage: None,
            broken: false,
            backoff: BACKOFF_MIN,
            last_error: String::new(),
            rate_next: Instant::now(),
            rng: seed | 1,
            stats: SinkStats::default(),
            sends: 0,
            acked: 0,
        }
    }

    fn pending_events(&self) -> u64 {
        self.batches
            .iter()
            .filter(|b| b.state != BatchState::Done)
            .map(Batch::events)
            .sum()
    }

    /// Sends every unsent batch (all but a last one still filling, unless `all`).
    fn send_unsent(&mut self, all: bool) -> Result<(), SinkError> {
        let mut i = 0;
        while i < self.batches.len() {
            let last = i + 1 == self.batches.len();
            let filling = last && !all && self.lingers();
            if self.batches[i].state != BatchState::Unsent || filling {
                i += 1;
                continue;
            }
            let target = self.ensure_connected()?;
            let before = self.batches[i].events();
            match self
                .proto
                .send(target, &mut self.batches[i], &mut self.wait)
            {
                Ok(reply) => self.took(i, reply, before)?,
                Err(fault) => {
                    self.fault(fault)?;
                    i = 0;
                }
            }
        }
        Ok(())
    }

    /// The receiver acknowledged something: the deadline starts again, an outage ends.
    fn progress(&mut self) {
        self.wait.restart();
        self.wait.slide(true);
        self.failures = 0;
        self.backoff = BACKOFF_MIN;
        if let (Some(since), Some(i)) = (self.outage.take(), self.current) {
            info!(
                "delivering to {} again after {:.1} s",
                self.targets[i],
                since.elapsed().as_secs_f64()
            );
        }
        while self
            .batches
            .front()
            .is_some_and(|b| b.state == BatchState::Done)
        {
            self.batches.pop_front();
        }
        self.acked = self.acked_prefix();
    }

    /// How many of the first `send` calls had every event acknowledged: all those before the
    /// first event of the first batch not done.
    fn acked_prefix(&self) -> u64 {
        self.batches
            .iter()
            .find(|b| b.state != BatchState::Done)
            .map_or(self.sends, |b| b.first_send.saturating_sub(1))
    }

    /// Connects to the first target that answers when there is no connection: which one.
    fn ensure_connected(&mut self) -> Result<usize, SinkError> {
        loop {
            if let Some(i) = self.current {
                return Ok(i);
            }
            if self.permanent.iter().all(Option::is_some) {
                // Asked again after giving up on permanent faults (watch goes on): back off
                // first, so that they are not retried, and reported, in a tight loop.
                self.pause(None)?;
            }
            let i = self.next_target();
            debug!("connecting to {}", self.targets[i]);
            match self.proto.connect(i, &mut self.wait) {
                Ok(()) => {
                    self.permanent[i] = None;
                    if std::mem::take(&mut self.broken) {
                        self.stats.reconnects += 1;
                    }
                    self.announced = false;
                    self.current = Some(i);
                }
                Err(fault) => {
                    self.current = Some(i);
                    self.fault(fault)?;
                }
            }
        }
    }

    /// A fault on the current target: drop the connection, send every unacknowledged batch
    /// again; warn once when every target has failed since the last progress, then back off.
    fn fault(&mut self, fault: Fault) -> Result<(), SinkError> {
        let i = self.current.take().expect("a fault is on a target");
        self.proto.disconnect();
        self.broken = true;
        self.wait.slide(false);
        for b in &mut self.batches {
            if matches!(b.state, BatchState::Sent { .. }) {
                b.state = BatchState::Unsent;
            }
        }
        if self.wait.stopped() {
            return Err(SinkError::Stopped);
        }
        self.failed_at[i] = Some(Instant::now());
        self.last_error = format!("{}: {}", self.targets[i], fault.why());
        self.permanent[i] = fault.is_permanent().then(|| self.last_error.clone());
        debug!("{}", self.last_error);
        self.give_up_if_permanent()?;
        self.failures += 1;
        if self.failures < self.targets.len() && fault.after().is_none() {
            return Ok(()); // fail over at once
        }
        if self.outage.is_none() {
            warn!(
                "cannot deliver to {} ({}); retrying, {} events unacknowledged",
                self.targets.join(", "),
                self.last_error,
                self.pending_events()
            );
            self.outage = Some(Instant::now());
        }
        self.pause(fault.after())
    }

    /// Every target failed in a way retrying cannot fix: no use waiting out the deadline.
    fn give_up_if_permanent(&self) -> Result<(), SinkError> {
        let why: Option<Vec<&str>> = self.permanent.iter().map(Option::as_deref).collect();
        match why {
            Some(why) => Err(SinkError::Undelivered(why.join("; "))),
            None => Ok(()),
        }
    }

    /// Waits out the next backoff (or `after`, if longer), giving up once the deadline passed.
    /// A wait ends half-way to the deadline at the latest, so that one more attempt fits.
    fn pause(&mut self, after: Option<Duration>) -> Result<(), SinkError> {
        let wait = self.next_backoff().max(after.unwrap_or_default());
        let result = self
            .wait
            .left()
            .and_then(|left| self.wait.sleep(wait.min(left / 2).max(MIN_PAUSE)))
            .and_then(|()| self.wait.left());
        match result {
            Ok(_) => Ok(()),
            Err(_) if self.wait.stopped() => Err(SinkError::Stopped),
            Err(_) => Err(self.give_up()),
        }
    }

    /// The deadline passed: forget what was not acknowledged (the caller does not record its
    /// returns, and ships them again from the cache later). The next attempt gets a whole new
    /// deadline; the outage goes on (it was warned about once) until something is acknowledged.
    fn give_up(&mut self) -> SinkError {
        let why = SinkError::Undelivered(format!(
            "{} events not acknowledged by any receiver within {} s (last error: {})",
            self.pending_events(),
            self.opts.deliver_timeout.as_secs(),
            self.last_error
        ));
        // What was stored is told before the rest is forgotten: the caller records it.
        self.proto.settle(&mut self.batches);
        self.acked = self.acked_prefix();
        self.batches.clear();
        if self.current.take().is_some() {
            self.proto.disconnect();
        }
        self.wait.restart();
        self.wait.slide(true);
        self.failures = 0;
        self.backoff = BACKOFF_MIN;
        why
    }

    /// The target to try next: the first in order that has not failed lately, else the one
    /// that failed longest ago.
    fn next_target(&self) -> usize {
        let recent = |i: usize| self.failed_at[i].is_some_and(|t| t.elapsed() < FAILBACK);
        (0..self.failed_at.len())
            .find(|i| !recent(*i))
            .unwrap_or_else(|| {
                (0..self.failed_at.len())
                    .min_by_key(|i| self.failed_at[*i])
                    .expect("at least one target")
            })
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

    fn throttle(&mut self, events: u64) -> Result<(), SinkError> {
        let Some(rate) = self.opts.max_rate else {
            return Ok(());
        };
        let now = Instant::now();
        if self.rate_next > now {
            let pause = self.rate_next - now;
            if pause >= FLUSH_PAUSE.min(self.opts.linger) {
                // No use holding what we have while we pace ourselves.
                self.send_unsent(true)?;
            }
            let pace = Wait::new(pause + Duration::from_secs(1), self.opts.stop.clone());
            pace.sleep(pause).map_err(|_| SinkError::Stopped)?;
        }
        self.rate_next = self.rate_next.max(now) + Duration::from_secs_f64(events as f64 / rate);
        Ok(())
    }

    /// Checks target `i` without sending an event, within `--deliver-timeout`.
    pub(crate) fn probe(&mut self, i: usize) -> Result<String, Fault> {
        self.wait.restart();
        self.proto.probe(i, &mut self.wait)
    }
}

impl<P: Protocol> Sink for Delivery<P> {
    fn send(&mut self, bytes: &[u8], keys: &[Keys]) -> Result<(), SinkError> {
        self.sends += 1;
        let events = keys.len() as u64;
        self.throttle(events)?;
        if self.batches.is_empty() {
            // The deadline counts from the first event not yet acknowledged.
            self.wait.restart();
        }
        self.queue(bytes, keys);
        self.send_unsent(false)?;
        self.stats.events_sent += events;
        Ok(())
    }

    fn confirm(&mut self) -> Result<(), SinkError> {
        while !self.batches.is_empty() {
            self.send_unsent(true)?;
            if self.batches.iter().all(|b| b.state == BatchState::Done) {
                self.progress();
                continue;
            }
            let target = self.current.expect("batches are sent on a connection");
            match self
                .proto
                .confirm(target, &mut self.batches, &mut self.wait)
            {
                Ok(open) => {
                    self.progress();
                    if !open {
                        self.current = None;
                    }
                }
                Err(fault) => self.fault(fault)?,
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.send_unsent(true)
    }

    fn unconfirmed(&self) -> usize {
        self.batches.iter().map(|b| b.bytes.len()).sum()
    }

    fn stats(&self) -> SinkStats {
        self.stats
    }

    fn acknowledged(&self) -> u64 {
        self.acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::core::protocol::Reply;
    use crate::sink::keys::Origin;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A protocol whose every step fails as told, to drive the core.
    struct Script {
        faults: VecDeque<Option<Fault>>,
        sent: Vec<(usize, Vec<u8>)>,
        current: usize,
        batch_bytes: usize,
    }

    /// The keys of the newline-ended events in `bytes`.
    fn keys(bytes: &[u8]) -> Vec<Keys> {
        let origin = Arc::new(Origin::default());
        let keys = bytes.split_inclusive(|b| *b == b'\n').map(|event| Keys {
            len: event.len(),
            id: Keys::id_from("0"),
            time: None,
            origin: origin.clone(),
            state: Default::default(),
        });
        keys.collect()
    }

    impl Protocol for Script {
        fn batch_bytes(&self) -> usize {
            self.batch_bytes
        }
        fn connect(&mut self, i: usize, _: &mut Wait) -> Result<(), Fault> {
            self.current = i;
            self.faults.pop_front().flatten().map_or(Ok(()), Err)
        }
        fn send(&mut self, i: usize, batch: &mut Batch, _: &mut Wait) -> Result<Reply, Fault> {
            assert_eq!(i, self.current, "sent on the target connected to");
            self.sent.push((i, batch.bytes.clone()));
            Ok(Reply::Taken { ack: None })
        }
        fn confirm(
            &mut self,
            _: usize,
            all: &mut VecDeque<Batch>,
            _: &mut Wait,
        ) -> Result<bool, Fault> {
            if let Some(Some(fault)) = self.faults.pop_front() {
                return Err(fault);
            }
            all.iter_mut().for_each(|b| b.state = BatchState::Done);
            Ok(false)
        }
    }

    fn core(targets: usize, faults: Vec<Option<Fault>>) -> Delivery<Script> {
        Delivery::new(
            Script {
                faults: faults.into(),
                sent: Vec::new(),
                current: 0,
                batch_bytes: 0,
            },
            (0..targets).map(|i| format!("t{i}")).collect(),
            CoreOptions {
                deliver_timeout: Duration::from_secs(2),
                max_rate: None,
                stop: None,
                linger: Duration::from_secs(60),
            },
        )
    }

    #[test]
    fn failed_targets_go_last_until_failback() {
        let mut s = core(3, vec![]);
        assert_eq!(s.next_target(), 0);
        s.failed_at[0] = Some(Instant::now());
        assert_eq!(s.next_target(), 1);
        // After FAILBACK the first target is first again.
        s.failed_at[0] = Instant::now().checked_sub(FAILBACK + Duration::from_secs(1));
        assert_eq!(s.next_target(), 0);
    }

    #[test]
    fn a_lost_connection_sends_the_unacknowledged_batches_again_on_the_next_target() {
        let lost = Some(Fault::retry("reset"));
        let mut s = core(2, vec![None, lost, None, None]);
        s.send(b"a\n", &keys(b"a\n")).expect("send");
        s.send(b"b\n", &keys(b"b\n")).expect("send");
        s.confirm().expect("confirm");
        let sent: Vec<(usize, &[u8])> = s.proto.sent.iter().map(|(t, b)| (*t, &b[..])).collect();
        assert_eq!(
            sent,
            [(0, &b"a\n"[..]), (0, b"b\n"), (1, b"a\n"), (1, b"b\n")]
        );
        assert_eq!(s.stats().reconnects, 1);
        assert!(s.batches.is_empty());
    }

    #[test]
    fn a_stop_mid_confirm_leaves_nothing_half_sent() {
        let mut s = core(1, vec![None, Some(Fault::retry("stopped"))]);
        s.send(b"a\n", &keys(b"a\n")).expect("send");
        s.opts.stop = Some(Arc::new(AtomicBool::new(true)));
        s.wait = Wait::new(Duration::from_secs(2), s.opts.stop.clone());
        assert!(matches!(s.confirm(), Err(SinkError::Stopped)));
        // The next confirm starts over on a new connection, not on the dropped one.
        assert!(s.current.is_none());
        assert!(s.batches.iter().all(|b| b.state == BatchState::Unsent));
    }

    #[test]
    fn gives_up_at_once_only_when_every_target_has_a_permanent_fault() {
        let bad = || Some(Fault::permanent("bad token"));
        let mut s = core(2, vec![bad(), bad()]);
        let start = Instant::now();
        let e = s.send(b"a\n", &keys(b"a\n")).expect_err("permanent");
        assert!(matches!(&e, SinkError::Undelivered(why) if why.matches("bad token").count() == 2));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn gives_up_when_the_deadline_passes() {
        let down = || Some(Fault::retry("refused"));
        let mut s = core(1, (0..100).map(|_| down()).collect());
        let start = Instant::now();
        let e = s.send(b"a\n", &keys(b"a\n")).expect_err("deadline");
        assert!(matches!(e, SinkError::Undelivered(_)), "{e}");
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn batches_are_cut_at_the_event_ends_the_keys_give() {
        let mut s = core(1, vec![]);
        s.proto.batch_bytes = 6;
        let bytes = b"aa\nbb\ncccc\nd\n";
        s.send(bytes, &keys(bytes)).expect("send");
        s.confirm().expect("confirm");
        let sent: Vec<&[u8]> = s.proto.sent.iter().map(|(_, b)| &b[..]).collect();
        assert_eq!(sent, [&b"aa\nbb\n"[..], b"cccc\n", b"d\n"]);
        assert_eq!(s.stats().events_sent, 4);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut s = core(1, vec![]);
        let waits: Vec<Duration> = (0..12).map(|_| s.next_backoff()).collect();
        assert!(waits[0] >= BACKOFF_MIN / 2 && waits[0] < BACKOFF_MIN);
        assert!(waits[3] >= BACKOFF_MIN * 4 && waits[3] < BACKOFF_MIN * 8);
        assert!(waits.iter().all(|w| *w < BACKOFF_MAX));
        assert!(waits[11] >= BACKOFF_MAX / 2);
    }
}
