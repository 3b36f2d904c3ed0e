//! The Kafka sink on the delivery core: one record per event (value = the event, key =
//! `event_id`, `minion_id` or none, timestamp = the event's, headers `saltship-master` and
//! `saltship-jid`), produced with librdkafka (`rdkafka`'s `ThreadedProducer`: `acks=all`, the
//! idempotent producer, a capped queue).
//!
//! The `--target`s are one bootstrap list, so the core sees one target: librdkafka itself
//! finds each partition's leader and follows it. A batch is acknowledged when every record of
//! it has its delivery report: records refused for good (too large, a timestamp the topic
//! refuses) are reported and counted; those that failed for a reason that may pass (a leader
//! change, not enough replicas, a timeout) stay in the batch and are produced again; the
//! target's own faults (authentication, authorization, a topic that does not exist) end the
//! run at once.

mod options;
// librdkafka (C) only with the `kafka` feature; without it the options still parse, and
// `--sink kafka` says the binary was built without Kafka.
#[cfg(feature = "kafka")]
mod producer;
#[cfg(feature = "kafka")]
mod reports;

pub(crate) use options::KafkaKey;
pub(crate) use options::{
    is_secret_property, sasl_properties, security_protocol, tls_properties, KafkaOptions,
};
#[cfg(feature = "kafka")]
pub(crate) use producer::Kafka;
