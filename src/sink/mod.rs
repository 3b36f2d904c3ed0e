//! Where encoded events go: stdout for `--dry-run`, receivers otherwise: every network sink is
//! a [`deliver::Protocol`] on the one delivery core ([`deliver::Delivery`]).
//!
//! A sink keeps what it was given until [`Sink::confirm`] proves delivery; the caller records a
//! return as shipped only after the confirm that covers it returned `Ok`.

pub mod deliver;
pub mod elastic;
pub mod hec;
pub mod http;
pub mod kafka;
pub mod stdout;
pub mod tcp;
pub mod tls;
pub mod wait;

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use deliver::{CoreOptions, Delivery};

/// Where and how to deliver, checked.
#[derive(Debug, Clone)]
pub struct Options {
    pub core: CoreOptions,
    pub sink: SinkOptions,
}

impl Options {
    /// The targets, in failover order, as the user wrote them.
    pub fn targets(&self) -> &[String] {
        match &self.sink {
            SinkOptions::Tcp(t) => &t.targets,
            SinkOptions::Hec(h) => &h.http.targets,
            SinkOptions::Elastic(e) => &e.http.targets,
            SinkOptions::Otlp(o) => &o.http.targets,
            SinkOptions::Kafka(k) => &k.bootstrap,
        }
    }

    /// Whether target `i` is spoken to over TLS.
    pub fn uses_tls(&self, i: usize) -> bool {
        match &self.sink {
            SinkOptions::Tcp(t) => t.tls.is_some(),
            SinkOptions::Kafka(k) => k.uses_tls(),
            _ => self.targets()[i].starts_with("https://"),
        }
    }
}

/// The receivers' protocols (`--sink`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// Lines over TCP (or TLS), confirmed by a graceful close
    Tcp,
    /// Splunk HTTP Event Collector, with indexer acknowledgement when the token has it
    SplunkHec,
    /// Elasticsearch or OpenSearch `_bulk` API, `create` with `_id` = `event_id`
    Elasticsearch,
    /// Apache Kafka (or any broker speaking its protocol): one record per event, `acks=all`
    Kafka,
    /// OpenTelemetry logs over OTLP/HTTP (`POST /v1/logs`): one log record per event
    Otlp,
}

/// The sink chosen with `--sink`, with its own options.
#[derive(Debug, Clone)]
pub enum SinkOptions {
    Tcp(tcp::TcpOptions),
    Hec(hec::HecOptions),
    Elastic(elastic::ElasticOptions),
    Kafka(kafka::KafkaOptions),
    Otlp(http::otlp::OtlpOptions),
}

/// Checks target `i` of `opts` without sending an event (for `saltship check`): what it
/// proved, or the problem (and whether it is permanent: a bad token, a certificate).
pub fn probe(opts: &Options, i: usize) -> Result<String, deliver::Fault> {
    let core = opts.core.clone();
    match &opts.sink {
        SinkOptions::Tcp(tcp) => Delivery::new(tcp::Tcp::new(tcp.clone()), core).probe(i),
        SinkOptions::Hec(hec) => {
            let proto = hec::Hec::new(hec.clone(), core.deliver_timeout);
            Delivery::new(proto, core).probe(i)
        }
        SinkOptions::Elastic(es) => Delivery::new(elastic::Elastic::new(es.clone()), core).probe(i),
        SinkOptions::Kafka(k) => Delivery::new(kafka::Kafka::new(k.clone()), core).probe(i),
        SinkOptions::Otlp(o) => Delivery::new(http::otlp::Otlp::new(o.clone()), core).probe(i),
    }
}

/// The network sink for `opts`; `stop` makes every wait end at once.
pub fn open(opts: &Options, stop: Option<Arc<AtomicBool>>) -> Box<dyn Sink> {
    let core = CoreOptions {
        stop,
        ..opts.core.clone()
    };
    match &opts.sink {
        SinkOptions::Tcp(tcp) => Box::new(Delivery::new(tcp::Tcp::new(tcp.clone()), core)),
        SinkOptions::Hec(hec) => {
            let proto = hec::Hec::new(hec.clone(), core.deliver_timeout);
            Box::new(Delivery::new(proto, core))
        }
        SinkOptions::Elastic(es) => {
            Box::new(Delivery::new(elastic::Elastic::new(es.clone()), core))
        }
        SinkOptions::Kafka(k) => Box::new(Delivery::new(kafka::Kafka::new(k.clone()), core)),
        SinkOptions::Otlp(o) => Box::new(Delivery::new(http::otlp::Otlp::new(o.clone()), core)),
    }
}

/// Why a sink stopped.
#[derive(Debug)]
pub enum SinkError {
    /// No receiver took the data within `--deliver-timeout`.
    Undelivered(String),
    /// stdout's reader went away (`| head`): stop quietly.
    Closed,
    /// We were asked to stop (SIGTERM) while waiting for a receiver.
    Stopped,
    /// Writing to stdout failed for another reason.
    Io(std::io::Error),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Undelivered(why) => write!(f, "could not deliver: {why}"),
            SinkError::Closed => f.write_str("stdout closed"),
            SinkError::Stopped => f.write_str("stopped while waiting for a receiver"),
            SinkError::Io(e) => write!(f, "writing to stdout: {e}"),
        }
    }
}

impl std::error::Error for SinkError {}

/// Counters for the progress bar and the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct SinkStats {
    pub events_sent: u64,
    pub reconnects: u64,
    /// Events the receiver refused for good (a mapping error): reported, not sent again.
    pub rejected: u64,
}

pub trait Sink {
    /// Sends the framed events of one return (`events` of them). Blocks while the receiver is
    /// slow or away; everything stays queued for resending until the next confirm.
    fn send(&mut self, bytes: &[u8], events: u64) -> Result<(), SinkError>;
    /// Returns once everything sent so far is proven received.
    fn confirm(&mut self) -> Result<(), SinkError>;
    /// Bytes sent but not yet confirmed.
    fn unconfirmed(&self) -> usize;
    fn stats(&self) -> SinkStats;
}
