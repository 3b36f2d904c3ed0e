//! The Kafka sink on the delivery core: one record per event (value = the event, key =
//! `event_id`, `minion_id` or none, timestamp = the event's, headers `saltship-master` and
//! `saltship-jid`), produced with librdkafka (`rdkafka`'s `BaseProducer`: `acks=all`, the
//! idempotent producer, a capped queue).
//!
//! The `--target`s are one bootstrap list, so the core sees one target: librdkafka itself
//! finds each partition's leader and follows it. A batch is acknowledged when every record of
//! it has its delivery report: records refused for good (too large, a timestamp the topic
//! refuses) are reported and counted; those that failed for a reason that may pass (a leader
//! change, not enough replicas, a timeout) stay in the batch and are produced again; the
//! target's own faults (authentication, authorization, a topic that does not exist) end the
//! run at once.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use log::{debug, warn};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::deliver::{Batch, Fault, Protocol, Reply};
use super::http::{events, Head, Secret};
use super::wait::Wait;

/// A batch holds at most this much: the producer's queue is capped at twice it.
const BATCH_BYTES: usize = 4 << 20;
/// The longest one metadata request (connect, probe) may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// librdkafka gives up on a record after this (or `--deliver-timeout` if shorter): the core
/// then warns once about the outage, backs off and produces it again.
const RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// What each record's key is (`--kafka-key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaKey {
    /// The event's id: a compacted topic keeps one copy per state result
    #[value(name = "event_id")]
    EventId,
    /// The minion's id: each minion's events stay in order on one partition
    Minion,
    /// No key: records are spread over the partitions
    None,
}

#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// One target for the core: the `--target`s (`HOST:PORT`) joined with commas, librdkafka's
    /// bootstrap list.
    pub bootstrap: Vec<String>,
    pub topic: String,
    pub key: KafkaKey,
    /// librdkafka properties besides ours (TLS, SASL, `--kafka-option`), applied in order.
    pub properties: Vec<(String, String)>,
    /// `sasl.password`.
    pub password: Option<Secret>,
    pub deliver_timeout: Duration,
}

impl KafkaOptions {
    /// The client's configuration: ours first, so that `--kafka-option` can change any of it.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        let record_timeout = self.deliver_timeout.min(RECORD_TIMEOUT).max(MIN_TIMEOUT);
        c.set("bootstrap.servers", self.bootstrap.join(","))
            .set("client.id", concat!("saltship/", env!("CARGO_PKG_VERSION")))
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", millis(record_timeout))
            .set(
                "queue.buffering.max.kbytes",
                (2 * BATCH_BYTES / 1024).to_string(),
            )
            .set("queue.buffering.max.messages", "100000")
            .set("socket.connection.setup.timeout.ms", "10000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        if let Some(p) = &self.password {
            c.set("sasl.password", &p.0);
        }
        c
    }

    /// Whether the brokers are spoken to over TLS (`--tls`, or a `--kafka-option`).
    pub fn uses_tls(&self) -> bool {
        let protocol = self.properties.iter().rev();
        protocol
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .find(|(k, _)| *k == "security.protocol")
            .is_some_and(|(_, v)| {
                v.eq_ignore_ascii_case("ssl") || v.eq_ignore_ascii_case("sasl_ssl")
            })
    }
}

/// librdkafka wants at least 1 ms, and the core's tests use short deadlines.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);

fn millis(d: Duration) -> String {
    d.as_millis().min(i32::MAX as u128).to_string()
}

/// Why a record failed, as its delivery report said.
type Outcome = Result<(), (Code, String)>;

/// The batch being produced: record `seq - base` of it has its report in `outcomes`.
#[derive(Default)]
struct Pending {
    base: usize,
    outcomes: Vec<Option<Outcome>>,
}

/// The producer's context: delivery reports and the client's last error land here (served
/// by `poll` on our own thread).
#[derive(Default)]
pub struct Reports {
    pending: Mutex<Pending>,
    /// The client's last error, for the message when the deadline passes.
    error: Mutex<Option<(Code, String)>>,
    /// Its first error that retrying cannot fix (later ones, "all brokers down", follow from it).
    permanent: Mutex<Option<String>>,
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
        if classify(code, reason) == Class::Target {
            let mut permanent = self.permanent.lock().expect("not poisoned");
            permanent.get_or_insert_with(|| format!("{code}: {reason}"));
        }
        *self.error.lock().expect("not poisoned") = Some((code, reason.to_owned()));
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
        let mut p = self.pending.lock().expect("not poisoned");
        let base = p.base;
        if let Some(slot) = p.outcomes.get_mut(seq.wrapping_sub(base)) {
            *slot = Some(outcome);
        }
    }
}

impl Reports {
    fn start(&self, base: usize, records: usize) {
        let mut p = self.pending.lock().expect("not poisoned");
        p.base = base;
        p.outcomes = vec![None; records];
    }

    fn record(&self, i: usize, outcome: Outcome) {
        self.pending.lock().expect("not poisoned").outcomes[i] = Some(outcome);
    }

    fn waiting(&self) -> usize {
        let p = self.pending.lock().expect("not poisoned");
        p.outcomes.iter().filter(|o| o.is_none()).count()
    }

    fn take(&self) -> Vec<Option<Outcome>> {
        std::mem::take(&mut self.pending.lock().expect("not poisoned").outcomes)
    }

    /// The client's error that retrying cannot fix, if it had one.
    fn permanent(&self) -> Option<Fault> {
        let permanent = self.permanent.lock().expect("not poisoned");
        permanent.clone().map(Fault::permanent)
    }
}

/// How a failure is classified.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    /// May pass: produce the record again, until the deadline.
    Retriable,
    /// This record can never be stored: report it, count it, drop it.
    Record,
    /// Nothing can be stored on this cluster as configured: stop.
    Target,
}

fn classify(code: Code, reason: &str) -> Class {
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

pub struct Kafka {
    opts: KafkaOptions,
    producer: Option<BaseProducer<Reports>>,
    next_seq: usize,
}

impl Kafka {
    pub fn new(opts: KafkaOptions) -> Kafka {
        Kafka {
            opts,
            producer: None,
            next_seq: 0,
        }
    }

    /// A new producer that reached a broker and found the topic: what it found.
    fn open(&self, wait: &Wait) -> Result<(BaseProducer<Reports>, String), Fault> {
        let producer: BaseProducer<Reports> = self
            .opts
            .client_config()
            .create_with_context(Reports::default())
            .map_err(|e| Fault::permanent(e.to_string()))?;
        let found = topic(&producer, &self.opts.topic, wait)?;
        Ok((producer, found))
    }

    /// The record for one event.
    fn record<'a>(&'a self, event: &'a [u8], head: &'a Head, seq: usize) -> Record<'a> {
        let mut headers = OwnedHeaders::new_with_capacity(2);
        for (key, value) in [
            ("saltship-master", head.master()),
            ("saltship-jid", head.jid()),
        ] {
            if let Some(value) = value {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
        }
        let mut record = BaseRecord::with_opaque_to(&self.opts.topic, seq)
            .payload(event)
            .headers(headers);
        let key = match self.opts.key {
            KafkaKey::EventId => head.id(),
            KafkaKey::Minion => head.minion(),
            KafkaKey::None => None,
        };
        if let Some(key) = key {
            record = record.key(key.as_bytes());
        }
        if let Some(ms) = head.time().and_then(epoch_millis) {
            record = record.timestamp(ms);
        }
        record
    }

    /// Puts every event of `lines` in the producer's queue, waiting for room when it is full.
    fn produce(
        &self,
        p: &BaseProducer<Reports>,
        lines: &[&[u8]],
        wait: &Wait,
    ) -> Result<(), Fault> {
        let heads: Vec<Head> = lines.iter().map(|l| Head::of(l)).collect();
        for (i, (line, head)) in lines.iter().zip(&heads).enumerate() {
            let mut record = self.record(line, head, self.next_seq + i);
            loop {
                match p.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(Code::QueueFull), r)) => {
                        record = r;
                        p.poll(wait.slice().map_err(|e| Fault::retriable(e.to_string()))?);
                    }
                    Err((e, _)) => {
                        let code = e.rdkafka_error_code().unwrap_or(Code::Unknown);
                        p.context().record(i, Err((code, e.to_string())));
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Serves delivery reports until every record has one, a permanent error shows, or the
    /// deadline passes (then what is still queued is purged: it is produced again later).
    fn reports(&self, p: &BaseProducer<Reports>, wait: &Wait) -> Result<(), Fault> {
        loop {
            let waiting = p.context().waiting();
            if waiting == 0 {
                return Ok(());
            }
            if let Some(fault) = p.context().permanent() {
                return Err(fault);
            }
            match wait.slice() {
                Ok(slice) => p.poll(slice),
                Err(e) => {
                    let last = p.context().error.lock().expect("not poisoned").take();
                    let why =
                        last.map_or_else(String::new, |(c, r)| format!(" (last error: {c}: {r})"));
                    return Err(Fault::retriable(format!(
                        "{waiting} records not acknowledged: {e}{why}"
                    )));
                }
            }
        }
    }
}

type Record<'a> = BaseRecord<'a, [u8], [u8], usize>;

/// Asks for the topic's metadata: which brokers answer, how many partitions it has.
fn topic(p: &BaseProducer<Reports>, name: &str, wait: &Wait) -> Result<String, Fault> {
    let timeout = wait
        .left()
        .map_err(|e| Fault::retriable(e.to_string()))?
        .min(METADATA_TIMEOUT);
    let metadata = match p.client().fetch_metadata(Some(name), timeout) {
        Ok(m) => m,
        Err(e) => {
            // The client's errors (authentication, TLS) arrive as events: serve them first.
            p.poll(Duration::from_millis(100));
            return Err(p
                .context()
                .permanent()
                .unwrap_or_else(|| Fault::retriable(format!("metadata: {e}"))));
        }
    };
    let Some(t) = metadata.topics().iter().find(|t| t.name() == name) else {
        return Err(Fault::retriable(format!("metadata without topic {name}")));
    };
    match t.error().map(Code::from) {
        None => Ok(format!(
            "the cluster answers ({} brokers), topic {name} has {} partitions",
            metadata.brokers().len(),
            t.partitions().len()
        )),
        Some(Code::UnknownTopicOrPartition) => Err(Fault::permanent(format!(
            "topic {name} does not exist (and the brokers do not create topics)"
        ))),
        Some(code) => {
            let why = format!("topic {name}: {code}");
            Err(if classify(code, "") == Class::Target {
                Fault::permanent(why)
            } else {
                Fault::retriable(why)
            })
        }
    }
}

/// RFC 3339 as milliseconds since the epoch, the record timestamp.
fn epoch_millis(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl Protocol for Kafka {
    /// The bootstrap list as one target: failover is librdkafka's.
    fn targets(&self) -> &[String] {
        &self.opts.bootstrap
    }

    fn batch_bytes(&self) -> usize {
        BATCH_BYTES
    }

    fn connect(&mut self, _: usize, wait: &mut Wait) -> Result<(), Fault> {
        let (producer, found) = self.open(wait)?;
        debug!("kafka: {found}");
        self.producer = Some(producer);
        Ok(())
    }

    /// Produces every event of the batch and waits for all their delivery reports.
    fn send(&mut self, batch: &mut Batch, wait: &mut Wait) -> Result<Reply, Fault> {
        let p = self.producer.as_ref().expect("connected before sending");
        let lines: Vec<&[u8]> = events(&batch.bytes).collect();
        p.context().start(self.next_seq, lines.len());
        self.produce(p, &lines, wait)?;
        self.next_seq = self.next_seq.wrapping_add(lines.len());
        self.reports(p, wait)?;
        let outcomes = p.context().take();
        let (mut again, mut kept, mut rejected, mut stored) = (Vec::new(), 0, 0, 0);
        let mut last = None;
        for (line, outcome) in lines.iter().zip(outcomes) {
            let Some(Err((code, why))) = outcome else {
                stored += 1;
                continue;
            };
            match classify(code, &why) {
                Class::Target => return Err(Fault::permanent(why)),
                Class::Record => {
                    rejected += 1;
                    let id = Head::of(line).id().map(str::to_owned);
                    warn!(
                        "{}: event {} rejected: {why}",
                        self.opts.topic,
                        id.as_deref().unwrap_or("?")
                    );
                }
                Class::Retriable => {
                    again.extend_from_slice(line);
                    again.push(b'\n');
                    kept += 1;
                    last = Some(why);
                }
            }
        }
        if kept == 0 {
            return Ok(Reply::Stored { rejected });
        }
        let last = last.unwrap_or_default();
        if stored == 0 && rejected == 0 {
            // Nothing went through: the core's outage (warning, backoff, a new producer).
            return Err(Fault::retriable(format!("{kept} records failed: {last}")));
        }
        debug!("{kept} records to produce again: {last}");
        batch.bytes = again;
        batch.events = kept;
        Ok(Reply::Partly {
            rejected,
            after: None,
        })
    }

    fn confirm(&mut self, _: &mut VecDeque<Batch>, _: &mut Wait) -> Result<bool, Fault> {
        // Every batch was acknowledged record by record when it was sent.
        Ok(true)
    }

    fn disconnect(&mut self) {
        // Dropping purges what is still queued: it is produced again by the next producer.
        self.producer = None;
    }

    /// A metadata request for the topic: the brokers answer, accept our credentials, and
    /// know the topic.
    fn probe(&mut self, _: usize, wait: &mut Wait) -> Result<String, Fault> {
        self.open(wait).map(|(_, found)| found)
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

    #[test]
    fn timestamps_are_epoch_milliseconds() {
        assert_eq!(
            epoch_millis("2026-11-23T18:57:50.440911Z"),
            Some(1_795_460_270_440)
        );
        assert_eq!(epoch_millis("yesterday"), None);
    }

    #[test]
    fn options_come_last_and_the_password_stays_out_of_debug() {
        let opts = KafkaOptions {
            bootstrap: vec!["a:9092,b:9092".into()],
            topic: "t".into(),
            key: KafkaKey::EventId,
            properties: vec![("acks".into(), "1".into())],
            password: Some(Secret("hunter2".into())),
            deliver_timeout: Duration::from_secs(300),
        };
        let c = opts.client_config();
        assert_eq!(c.get("bootstrap.servers"), Some("a:9092,b:9092"));
        assert_eq!(c.get("acks"), Some("1"));
        assert_eq!(c.get("message.timeout.ms"), Some("30000"));
        assert!(!format!("{opts:?}").contains("hunter2"));
        assert!(!opts.uses_tls());
    }
}
