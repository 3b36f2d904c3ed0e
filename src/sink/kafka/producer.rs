//! The producer on the delivery core (built with the `kafka` feature only): rdkafka's
//! `ThreadedProducer`, whose thread serves the delivery reports as they come and wakes the
//! sender (`BaseProducer::poll` of rdkafka 0.39 returns only once its whole timeout passed,
//! which held every batch 100 ms for its reports).

use std::time::{Duration, Instant};

use log::{debug, warn};
use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::options::BATCH_BYTES;
use super::options::{KafkaKey, KafkaOptions};
use super::reports::{classify, Class, Reports};
use crate::sink::core::{Batch, Fate, Fault, Protocol, Reply, Wait};
use crate::sink::keys::Keys;
use crate::sync::lock;

/// The longest one metadata request (connect, probe) may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Every broker down and no delivery report for this long is an outage: the core warns once
/// and says when it ends. The producer and its queued records are kept through it (see
/// [`Kafka::held`]). Shorter blips (a broker restarted at once) are librdkafka's to ride out.
const OUTAGE_AFTER: Duration = Duration::from_millis(500);

pub(crate) struct Kafka {
    opts: KafkaOptions,
    producer: Option<ThreadedProducer<Reports>>,
    next_seq: usize,
    /// The batch (its first event's id and its length) whose records stayed in the producer's
    /// queue when every broker went down: the core sends it again once a broker answers, and
    /// then its reports are awaited rather than the records produced twice (the idempotent
    /// producer delivers each once).
    held: Option<(String, usize)>,
}

/// What tells a batch sent again from another one.
fn identity(batch: &Batch) -> Option<(String, usize)> {
    let first = batch.keys.first()?;
    Some((first.id().to_owned(), batch.keys.len()))
}

impl Kafka {
    pub(crate) fn new(opts: KafkaOptions) -> Kafka {
        Kafka {
            opts,
            producer: None,
            next_seq: 0,
            held: None,
        }
    }

    /// A new producer that reached a broker and found the topic: what it found.
    fn open(&self, wait: &Wait) -> Result<(ThreadedProducer<Reports>, String), Fault> {
        let producer: ThreadedProducer<Reports> = self
            .opts
            .client_config()
            .create_with_context(Reports::default())
            .map_err(|e| Fault::permanent(e.to_string()))?;
        let found = topic(&producer, &self.opts.topic, wait)?;
        // A first connection refused before the one that answered said "all brokers down".
        producer.context().up();
        Ok((producer, found))
    }

    /// The record for one event.
    fn record<'a>(&'a self, event: &'a [u8], keys: &'a Keys, seq: usize) -> Record<'a> {
        let mut headers = OwnedHeaders::new_with_capacity(2);
        for (key, value) in [
            ("saltship-master", &keys.origin.master),
            ("saltship-jid", &keys.origin.jid),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = BaseRecord::with_opaque_to(&self.opts.topic, seq)
            .payload(event.strip_suffix(b"\n").unwrap_or(event))
            .headers(headers);
        let key = match self.opts.key {
            KafkaKey::EventId => Some(keys.id()),
            KafkaKey::Minion => Some(keys.origin.host.as_str()),
            KafkaKey::None => None,
        };
        if let Some(key) = key {
            record = record.key(key.as_bytes());
        }
        if let Some(ms) = keys.millis() {
            record = record.timestamp(ms);
        }
        record
    }

    /// Puts every event of `batch` in the producer's queue, waiting for room when it is full.
    fn produce(
        &self,
        p: &ThreadedProducer<Reports>,
        batch: &Batch,
        wait: &Wait,
    ) -> Result<(), Fault> {
        for (i, (keys, event)) in batch.each().enumerate() {
            let mut record = self.record(event, keys, self.next_seq + i);
            loop {
                match p.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(Code::QueueFull), r)) => {
                        record = r;
                        let news = p.context().news();
                        p.context().wait_news(news, wait.slice()?);
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

    /// Waits for delivery reports until every record has one, a permanent error shows, every
    /// broker is down for [`OUTAGE_AFTER`] without a report, or the deadline passes. After a
    /// fault the producer is dropped, purging what it still queued (produced again later),
    /// unless every broker is down: then it keeps its records ([`Kafka::held`]).
    fn reports(&self, p: &ThreadedProducer<Reports>, wait: &Wait) -> Result<(), Fault> {
        let (mut before, mut quiet_since) = (usize::MAX, Instant::now());
        let mut news = p.context().news();
        loop {
            let waiting = p.context().waiting();
            if waiting == 0 {
                return Ok(());
            }
            if let Some(fault) = p.context().permanent() {
                return Err(fault);
            }
            if waiting < before {
                (before, quiet_since) = (waiting, Instant::now());
            }
            let down = p.context().down_since();
            if down.is_some_and(|t| t.max(quiet_since).elapsed() >= OUTAGE_AFTER) {
                return Err(Fault::retry(format!(
                    "all brokers are down{}",
                    last_error(p)
                )));
            }
            match wait.slice() {
                Ok(slice) => news = p.context().wait_news(news, slice),
                Err(e) => {
                    return Err(Fault::retry(format!(
                        "{waiting} records not acknowledged: {e}{}",
                        last_error(p)
                    )));
                }
            }
        }
    }
}

type Record<'a> = BaseRecord<'a, [u8], [u8], usize>;

/// The client's last error, as ` (last error: ...)`, or nothing.
fn last_error(p: &ThreadedProducer<Reports>) -> String {
    let last = lock(&p.context().error).take();
    last.map_or_else(String::new, |(c, r)| format!(" (last error: {c}: {r})"))
}

/// Asks for the topic's metadata: which brokers answer, how many partitions it has.
fn topic(p: &ThreadedProducer<Reports>, name: &str, wait: &Wait) -> Result<String, Fault> {
    let timeout = wait.left()?.min(METADATA_TIMEOUT);
    let metadata = match p.client().fetch_metadata(Some(name), timeout) {
        Ok(m) => m,
        Err(e) => {
            // The client's errors (authentication, TLS) arrive as events: let them land.
            std::thread::sleep(Duration::from_millis(100));
            return Err(p
                .context()
                .permanent()
                .unwrap_or_else(|| Fault::retry(format!("metadata: {e}"))));
        }
    };
    let Some(t) = metadata.topics().iter().find(|t| t.name() == name) else {
        return Err(Fault::retry(format!("metadata without topic {name}")));
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
                Fault::retry(why)
            })
        }
    }
}

impl Protocol for Kafka {
    fn batch_bytes(&self) -> usize {
        BATCH_BYTES
    }

    fn connect(&mut self, _: usize, wait: &mut Wait) -> Result<(), Fault> {
        if let Some(p) = &self.producer {
            // Kept through an outage: a broker answers again.
            let found = topic(p, &self.opts.topic, wait)?;
            p.context().up();
            debug!("kafka: {found}");
            return Ok(());
        }
        let (producer, found) = self.open(wait)?;
        debug!("kafka: {found}");
        self.producer = Some(producer);
        Ok(())
    }

    /// Produces every event of the batch and waits for all their delivery reports.
    fn send(&mut self, _: usize, batch: &mut Batch, wait: &mut Wait) -> Result<Reply, Fault> {
        let p = self.producer.as_ref().expect("connected before sending");
        let records = batch.keys.len();
        if self.held.take().is_none_or(|h| Some(h) != identity(batch)) {
            p.context().start(self.next_seq, records);
            self.produce(p, batch, wait)?;
            self.next_seq = self.next_seq.wrapping_add(records);
        }
        if let Err(fault) = self.reports(p, wait) {
            if p.context().down_since().is_some() {
                self.held = identity(batch);
            }
            return Err(fault);
        }
        let outcomes = p.context().take();
        if let Some(why) = outcomes.iter().find_map(|o| match o {
            Some(Err((code, why))) if classify(*code, why) == Class::Target => Some(why),
            _ => None,
        }) {
            return Err(Fault::permanent(why.clone()));
        }
        let (mut stored, mut last) = (0, None);
        let topic = &self.opts.topic;
        let rejected = batch.retain(|i, keys| match &outcomes[i] {
            Some(Err((code, why))) if classify(*code, why) == Class::Record => {
                warn!("{topic}: event {} rejected: {why}", keys.id());
                Fate::Rejected
            }
            Some(Err((_, why))) => {
                last = Some(why.clone());
                Fate::Again
            }
            _ => {
                stored += 1;
                Fate::Stored
            }
        });
        let kept = batch.keys.len();
        if kept == 0 {
            return Ok(Reply::Stored { rejected });
        }
        let last = last.unwrap_or_default();
        if stored == 0 && rejected == 0 {
            // Nothing went through: the core's outage (warning, backoff, a new producer).
            return Err(Fault::retry(format!("{kept} records failed: {last}")));
        }
        debug!("{kept} records to produce again: {last}");
        Ok(Reply::Partly {
            rejected,
            after: None,
        })
    }

    fn disconnect(&mut self) {
        // Dropping purges what is still queued: it is produced again by the next producer.
        // Through an outage the producer keeps its records, and librdkafka reconnects.
        if self.held.is_none() {
            self.producer = None;
        }
    }

    /// A metadata request for the topic: the brokers answer, accept our credentials, and
    /// know the topic.
    fn probe(&mut self, _: usize, wait: &mut Wait) -> Result<String, Fault> {
        self.open(wait).map(|(_, found)| found)
    }
}
