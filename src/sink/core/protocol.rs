//! What a sink tells the delivery core, in the manner of vector's `RetryLogic`: how to connect,
//! how to send a [`Batch`], and what the reply acknowledged ([`Reply`]) or why it failed
//! ([`Fault`]: retry, or give up on this target). Batching, failover, backoff and the deadline
//! are the core's ([`super::deliver`]).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use super::wait::Wait;
use crate::sink::keys::Keys;

/// Events framed for the wire, sent and acknowledged as one, with each event's keys.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) bytes: Vec<u8>,
    /// One per event, in order; their `len`s add up to `bytes.len()`.
    pub(crate) keys: Vec<Keys>,
    pub(crate) state: BatchState,
    /// The number of the [`crate::sink::Sink::send`] call its first event came with, or an
    /// earlier one (after a split): every event of it came with this call or a later one.
    pub(crate) first_send: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchState {
    #[default]
    Unsent,
    /// Taken by the receiver, waiting for its proof; `ack` is the sink's token for it.
    Sent { ack: Option<u64>, at: Instant },
    /// Acknowledged: may be forgotten.
    Done,
}

/// What became of one event of a batch, as the receiver's reply said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Stored: forget it.
    Stored,
    /// Not stored for a reason that may pass: send it again.
    Again,
    /// Refused for good (the sink reported why): count it, forget it.
    Rejected,
}

impl Batch {
    /// How many events the batch holds.
    pub(crate) fn events(&self) -> u64 {
        self.keys.len() as u64
    }

    /// The events with their keys, in order.
    pub(crate) fn each(&self) -> impl Iterator<Item = (&Keys, &[u8])> {
        let mut at = 0;
        self.keys.iter().map(move |k| {
            let event = &self.bytes[at..at + k.len];
            at += k.len;
            (k, event)
        })
    }

    /// Moves the events from the `n`th on into a new batch (to halve one a receiver found too
    /// large).
    pub(crate) fn split_off(&mut self, n: usize) -> Batch {
        let at: usize = self.keys[..n].iter().map(|k| k.len).sum();
        Batch {
            bytes: self.bytes.split_off(at),
            keys: self.keys.split_off(n),
            state: self.state,
            first_send: self.first_send,
        }
    }

    /// Keeps only the events `fate` (given each one's index and keys) sends [`Fate::Again`]:
    /// how many it rejected.
    pub(crate) fn retain(&mut self, mut fate: impl FnMut(usize, &Keys) -> Fate) -> u64 {
        let (mut bytes, mut keys) = (Vec::new(), Vec::new());
        let mut rejected = 0;
        for (i, (k, event)) in self.each().enumerate() {
            match fate(i, k) {
                Fate::Stored => {}
                Fate::Again => {
                    bytes.extend_from_slice(event);
                    keys.push(k.clone());
                }
                Fate::Rejected => rejected += 1,
            }
        }
        self.bytes = bytes;
        self.keys = keys;
        rejected
    }
}

/// What the reply to one batch acknowledged.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Stored; `rejected` of its events were refused for good (reported by the sink).
    Stored { rejected: u64 },
    /// Taken; the proof comes at [`Protocol::confirm`].
    Taken { ack: Option<u64> },
    /// Some events stored (or `rejected`); the sink left the rest in the batch to send again,
    /// after `after` if the receiver asked for a pause.
    Partly {
        rejected: u64,
        after: Option<Duration>,
    },
    /// Refused as too large (HTTP 413), nothing stored: the core halves the batch and sends
    /// the halves, down to one event, which is then rejected (reported and counted).
    TooLarge,
}

/// Why a send or a confirmation failed: retry (when), or give up on this target. Never both.
#[derive(Debug)]
pub(crate) enum Fault {
    /// Retrying may help (a connection, a timeout, 429, 5xx): after `after` when the receiver
    /// asked for a pause (`Retry-After`).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Retrying this target cannot help (bad token, certificate): fail over, and give up at
    /// once when every target has such a fault.
    Permanent { why: String },
}

impl Fault {
    pub(crate) fn retry(why: impl Into<String>) -> Fault {
        Fault::Retry {
            why: why.into(),
            after: None,
        }
    }

    pub(crate) fn permanent(why: impl Into<String>) -> Fault {
        Fault::Permanent { why: why.into() }
    }

    pub(crate) fn why(&self) -> &str {
        match self {
            Fault::Retry { why, .. } | Fault::Permanent { why } => why,
        }
    }

    /// The pause the receiver asked for.
    pub(crate) fn after(&self) -> Option<Duration> {
        match self {
            Fault::Retry { after, .. } => *after,
            Fault::Permanent { .. } => None,
        }
    }

    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Fault::Permanent { .. })
    }
}

/// A socket's or a wait's error: retry, unless it is a certificate problem.
impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Fault {
        if crate::sink::tls::is_permanent(&e) {
            Fault::permanent(e.to_string())
        } else {
            Fault::retry(e.to_string())
        }
    }
}

/// How one kind of receiver is spoken to. The core holds the targets and says which one
/// (`i`, an index in them) each call is about.
pub(crate) trait Protocol {
    /// Batches of at most this many bytes of whole events are sent, as [`Protocol::framed_len`]
    /// counts them; 0: each `send` at once, as it came.
    fn batch_bytes(&self) -> usize;
    /// The bytes one event takes in a request (with its envelope or action line), for
    /// [`Protocol::batch_bytes`]. By default the event as encoded.
    fn framed_len(&self, _keys: &Keys, event: &[u8]) -> usize {
        event.len()
    }
    /// Opens a connection to target `i`. By default there is nothing to open (a client that
    /// connects, and keeps connections alive, as it sends).
    fn connect(&mut self, _i: usize, _: &mut Wait) -> Result<(), Fault> {
        Ok(())
    }
    /// Sends one batch to target `i`, on the connection open to it.
    fn send(&mut self, i: usize, batch: &mut Batch, wait: &mut Wait) -> Result<Reply, Fault>;
    /// Waits for target `i`'s proof of every batch sent and marks them `Done`; `Ok(true)` when
    /// the connection stays open. By default every batch was acknowledged by its own reply.
    fn confirm(&mut self, _i: usize, _: &mut VecDeque<Batch>, _: &mut Wait) -> Result<bool, Fault> {
        Ok(true)
    }
    /// Marks `Done` the batches not confirmed whose every event is known stored all the same
    /// (RELP: each answered 200), before the core forgets them at its deadline, so that the
    /// caller records what was delivered. By default nothing is known beyond the replies.
    fn settle(&mut self, _: &mut VecDeque<Batch>) {}
    /// Drops the connection, after a fault. By default there is none to drop.
    fn disconnect(&mut self) {}
    /// Checks target `i` without sending an event (`saltship check`): what it proved. By
    /// default a connect, which proves nothing for a client that connects as it sends: such
    /// sinks say more.
    fn probe(&mut self, i: usize, wait: &mut Wait) -> Result<String, Fault> {
        self.connect(i, wait).map(|()| "connects".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::keys::Origin;
    use std::sync::Arc;

    fn batch(lines: &[&str]) -> Batch {
        let origin = Arc::new(Origin::default());
        let mut b = Batch::default();
        for (i, line) in lines.iter().enumerate() {
            b.bytes.extend_from_slice(line.as_bytes());
            b.keys.push(Keys {
                len: line.len(),
                id: Keys::id_from(&format!("{i:032}")),
                time: None,
                origin: origin.clone(),
                state: Default::default(),
            });
        }
        b
    }

    #[test]
    fn retain_keeps_the_events_to_send_again_and_counts_the_rejected() {
        let mut b = batch(&["a\n", "bb\n", "ccc\n", "d\n"]);
        let fates = [Fate::Stored, Fate::Again, Fate::Rejected, Fate::Again];
        assert_eq!(b.retain(|i, _| fates[i]), 1);
        assert_eq!(b.bytes, b"bb\nd\n");
        assert_eq!(b.events(), 2);
        let ids: Vec<&str> = b.keys.iter().map(Keys::id).collect();
        assert_eq!(ids, [format!("{:032}", 1), format!("{:032}", 3)]);
    }

    #[test]
    fn split_off_cuts_at_an_event_end() {
        let mut b = batch(&["a\n", "bb\n", "ccc\n"]);
        let rest = b.split_off(1);
        assert_eq!((&b.bytes[..], b.events()), (&b"a\n"[..], 1));
        assert_eq!((&rest.bytes[..], rest.events()), (&b"bb\nccc\n"[..], 2));
    }

    #[test]
    fn a_fault_from_a_certificate_problem_is_permanent_and_others_are_retried() {
        let reset = Fault::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(!reset.is_permanent() && reset.after().is_none());
        let cert = io::Error::other(crate::sink::tls::failure::TlsFailure {
            why: "unknown CA".into(),
            permanent: true,
        });
        assert!(Fault::from(cert).is_permanent());
    }
}
