//! The producer's context: each record's delivery report, and the client's own errors, land
//! here (served by the producer's polling thread, which wakes the sender), classified: retry
//! the record, reject it for good, or give up on the cluster as configured. librdkafka's "all
//! brokers down" marks an outage, which the producer hands to the core (one warning, one
//! recovery line).

use std::sync::{Condvar, Mutex, PoisonError};

use crate::sync::lock;
use std::time::{Duration, Instant};

use log::debug;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;

use crate::sink::core::Fault;

/// Why a record failed, as its delivery report said.
pub(super) type Outcome = Result<(), (Code, String)>;

/// The batch being produced: record `seq - base` of it has its report in `outcomes`.
#[derive(Default)]
struct Pending {
    base: usize,
    outcomes: Vec<Option<Outcome>>,
    /// Delivery reports and client errors so far, for [`Reports::wait_news`].
    news: u64,
}

/// The producer's context: delivery reports and the client's last error land here (served
/// by the producer's polling thread), and wake the sender.
#[derive(Default)]
pub(super) struct Reports {
    pending: Mutex<Pending>,
    /// Notified at each report or error: the sender waits for the broker, not for a slice.
    news: Condvar,
    /// The client's last error, for the message when the deadline passes.
    pub(super) error: Mutex<Option<(Code, String)>>,
    /// Its first error that retrying cannot fix (later ones, "all brokers down", follow from it).
    permanent: Mutex<Option<String>>,
    /// Since when every broker connection is down, if it is: librdkafka says so once, when
    /// the last one goes; a record delivered since says they are back.
    down: Mutex<Option<Instant>>,
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // The core warns once per outage; librdkafka's own lines are for -vv.
        debug!(target: "librdkafka", "{level:?} {fac}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        debug!(target: "librdkafka", "{error}: {reason}");
        let Some(code) = error.rdkafka_error_code() else {
            return;
        };
        if code == Code::AllBrokersDown {
            lock(&self.down).get_or_insert_with(Instant::now);
            // Its reason ("1/1 brokers are down") says less than the error before it.
            self.tell();
            return;
        }
        if classify(code, reason) == Class::Target {
            let mut permanent = lock(&self.permanent);
            permanent.get_or_insert_with(|| format!("{code}: {reason}"));
        }
        *lock(&self.error) = Some((code, reason.to_owned()));
        self.tell();
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err((
                e.rdkafka_error_code().unwrap_or(Code::Unknown),
                e.to_string(),
            )),
        };
        if outcome.is_ok() {
            *lock(&self.down) = None;
        }
        let mut p = lock(&self.pending);
        let base = p.base;
        if let Some(slot) = p.outcomes.get_mut(seq.wrapping_sub(base)) {
            *slot = Some(outcome);
        }
        p.news += 1;
        drop(p);
        self.news.notify_all();
    }
}

impl Reports {
    pub(super) fn start(&self, base: usize, records: usize) {
        let mut p = lock(&self.pending);
        p.base = base;
        p.outcomes = vec![None; records];
    }

    pub(super) fn record(&self, i: usize, outcome: Outcome) {
        lock(&self.pending).outcomes[i] = Some(outcome);
    }

    /// Something happened (a report, an error): the sender looks again.
    fn tell(&self) {
        lock(&self.pending).news += 1;
        self.news.notify_all();
    }

    /// Reports and errors so far.
    pub(super) fn news(&self) -> u64 {
        lock(&self.pending).news
    }

    /// Waits up to `timeout` for a report or an error after the first `seen`: how many now.
    pub(super) fn wait_news(&self, seen: u64, timeout: Duration) -> u64 {
        let p = lock(&self.pending);
        let (p, _) = self
            .news
            .wait_timeout_while(p, timeout, |p| p.news == seen)
            .unwrap_or_else(PoisonError::into_inner);
        p.news
    }

    pub(super) fn waiting(&self) -> usize {
        let p = lock(&self.pending);
        p.outcomes.iter().filter(|o| o.is_none()).count()
    }

    pub(super) fn take(&self) -> Vec<Option<Outcome>> {
        std::mem::take(&mut lock(&self.pending).outcomes)
    }

    /// Since when every broker is down, if it is (no record delivered since librdkafka said so).
    pub(super) fn down_since(&self) -> Option<Instant> {
        *lock(&self.down)
    }

    /// A broker answered (metadata): a "down" said before is over.
    pub(super) fn up(&self) {
        *lock(&self.down) = None;
    }

    /// The client's error that retrying cannot fix, if it had one.
    pub(super) fn permanent(&self) -> Option<Fault> {
        let permanent = lock(&self.permanent);
        permanent.clone().map(Fault::permanent)
    }
}

/// How a failure is classified.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// May pass: produce the record again, until the deadline.
    Retriable,
    /// This record can never be stored: report it, count it, drop it.
    Record,
    /// Nothing can be stored on this cluster as configured: stop.
    Target,
}

pub(super) fn classify(code: Code, reason: &str) -> Class {
    match code {
        Code::MessageSizeTooLarge
        | Code::MessageBatchTooLarge
        | Code::InvalidRecord
        | Code::InvalidTimestamp
        | Code::UnsupportedForMessageFormat => Class::Record,
        Code::Authentication
        | Code::SaslAuthenticationFailed
        | Code::UnsupportedSASLMechanism
        | Code::IllegalSASLState
        | Code::TopicAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::TransactionalIdAuthorizationFailed
        | Code::UnknownTopic
        | Code::UnknownTopicOrPartition
        | Code::UnsupportedCompressionType
        | Code::PolicyViolation => Class::Target,
        Code::SSL if reason.contains("certificate verify failed") => Class::Target,
        _ => Class::Retriable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified() {
        assert_eq!(classify(Code::MessageSizeTooLarge, ""), Class::Record);
        assert_eq!(classify(Code::NotEnoughReplicas, ""), Class::Retriable);
        assert_eq!(classify(Code::NotLeaderForPartition, ""), Class::Retriable);
        assert_eq!(classify(Code::MessageTimedOut, ""), Class::Retriable);
        assert_eq!(classify(Code::AllBrokersDown, ""), Class::Retriable);
        assert_eq!(classify(Code::Authentication, ""), Class::Target);
        assert_eq!(classify(Code::TopicAuthorizationFailed, ""), Class::Target);
        assert_eq!(classify(Code::SSL, "connection reset"), Class::Retriable);
        let cert = "SSL handshake failed: certificate verify failed";
        assert_eq!(classify(Code::SSL, cert), Class::Target);
    }
}
