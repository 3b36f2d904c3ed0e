//! Where encoded events go: stdout for `--dry-run`, receivers otherwise: every network sink is
//! a [`core::Protocol`] on the one delivery core ([`core::Delivery`]), in a file or folder of
//! its own. The encoder hands each event's [`keys::Keys`] over with its bytes, so no sink
//! parses an event again.
//!
//! A sink keeps what it was given until [`Sink::confirm`] proves delivery; the caller records a
//! return as shipped only after the confirm that covers it returned `Ok`.

pub(crate) mod core;
pub(crate) mod http;
pub(crate) mod kafka;
pub(crate) mod keys;
pub(crate) mod relp;
pub(crate) mod secret;
pub(crate) mod stdout;
pub(crate) mod tcp;
pub(crate) mod tls;

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub(crate) use self::core::{CoreOptions, Fault};
use self::core::{Delivery, Protocol};
pub(crate) use http::elastic::ElasticOptions;
pub(crate) use http::hec::HecOptions;
pub(crate) use http::otlp::{headers as otlp_headers, OtlpOptions};
pub(crate) use http::HttpOptions;
pub(crate) use kafka::KafkaOptions;
pub(crate) use keys::{Encoded, Keys};
pub(crate) use relp::RelpOptions;
pub(crate) use secret::Secret;
pub(crate) use tcp::TcpOptions;

/// Where and how to deliver, checked.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) core: CoreOptions,
    pub(crate) sink: SinkOptions,
}

impl Options {
    /// The targets, in failover order, as the user wrote them.
    pub(crate) fn targets(&self) -> &[String] {
        match &self.sink {
            SinkOptions::Tcp(t) => &t.targets,
            SinkOptions::Hec(h) => &h.http.targets,
            SinkOptions::Elastic(e) => &e.http.targets,
            SinkOptions::Otlp(o) => &o.http.targets,
            SinkOptions::Kafka(k) => &k.bootstrap,
            SinkOptions::Relp(r) => &r.targets,
        }
    }

    /// Whether target `i` is spoken to over TLS.
    pub(crate) fn uses_tls(&self, i: usize) -> bool {
        match &self.sink {
            SinkOptions::Tcp(t) => t.tls.is_some(),
            SinkOptions::Kafka(k) => k.uses_tls(),
            SinkOptions::Relp(r) => r.tls.is_some(),
            _ => self.targets()[i].starts_with("https://"),
        }
    }
}

/// The receivers' protocols (`--sink`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SinkKind {
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
    /// RELP (rsyslog's imrelp): one frame per event, each acknowledged by the receiver
    Relp,
}

/// The sink chosen with `--sink`, with its own options.
#[derive(Debug, Clone)]
pub(crate) enum SinkOptions {
    Tcp(TcpOptions),
    Hec(HecOptions),
    Elastic(ElasticOptions),
    Kafka(KafkaOptions),
    Otlp(OtlpOptions),
    Relp(RelpOptions),
}

/// Checks target `i` of `opts` without sending an event (for `saltship check`): what it
/// proved, or the problem (and whether it is permanent: a bad token, a certificate).
pub(crate) fn probe(opts: &Options, i: usize) -> Result<String, Fault> {
    on_core(opts, opts.core.clone()).probe(i)
}

/// The network sink for `opts`; `stop` makes every wait end at once.
pub(crate) fn open(opts: &Options, stop: Option<Arc<AtomicBool>>) -> Box<dyn Sink> {
    let core = CoreOptions {
        stop,
        ..opts.core.clone()
    };
    on_core(opts, core).into_sink()
}

/// A network sink, which `saltship check` may also probe.
trait Probe: Sink {
    fn probe(&mut self, i: usize) -> Result<String, Fault>;
    fn into_sink(self: Box<Self>) -> Box<dyn Sink>;
}

impl<P: Protocol + 'static> Probe for Delivery<P> {
    fn probe(&mut self, i: usize) -> Result<String, Fault> {
        Delivery::probe(self, i)
    }

    fn into_sink(self: Box<Self>) -> Box<dyn Sink> {
        self
    }
}

/// The protocol `opts` names, on the core.
fn on_core(opts: &Options, core: CoreOptions) -> Box<dyn Probe> {
    // The core's targets are for messages: masked once here.
    let targets = opts.targets().iter().map(|t| secret::shown(t)).collect();
    match &opts.sink {
        SinkOptions::Tcp(o) => Box::new(Delivery::new(tcp::Tcp::new(o.clone()), targets, core)),
        SinkOptions::Hec(o) => {
            let proto = http::hec::Hec::new(o.clone(), core.deliver_timeout);
            Box::new(Delivery::new(proto, targets, core))
        }
        SinkOptions::Elastic(o) => {
            let proto = http::elastic::Elastic::new(o.clone());
            Box::new(Delivery::new(proto, targets, core))
        }
        #[cfg(feature = "kafka")]
        SinkOptions::Kafka(o) => {
            Box::new(Delivery::new(kafka::Kafka::new(o.clone()), targets, core))
        }
        #[cfg(not(feature = "kafka"))]
        SinkOptions::Kafka(_) => unreachable!("--sink kafka is refused at start without Kafka"),
        SinkOptions::Otlp(o) => {
            let proto = http::otlp::Otlp::new(o.clone());
            Box::new(Delivery::new(proto, targets, core))
        }
        SinkOptions::Relp(o) => Box::new(Delivery::new(relp::Relp::new(o.clone()), targets, core)),
    }
}

/// Why a sink stopped.
#[derive(Debug)]
pub(crate) enum SinkError {
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
pub(crate) struct SinkStats {
    pub(crate) events_sent: u64,
    pub(crate) reconnects: u64,
    /// Events the receiver refused for good (a mapping error): reported, not sent again.
    pub(crate) rejected: u64,
}

pub(crate) trait Sink {
    /// Sends the framed events of one return, `keys` holding one entry per event. Blocks while
    /// the receiver is slow or away; everything stays queued for resending until the next
    /// confirm.
    fn send(&mut self, bytes: &[u8], keys: &[Keys]) -> Result<(), SinkError>;
    /// Returns once everything sent so far is proven received.
    fn confirm(&mut self) -> Result<(), SinkError>;
    /// The caller has no more input ready: send what is batched now, without waiting for
    /// its proof.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Bytes sent but not yet confirmed.
    fn unconfirmed(&self) -> usize;
    /// How many of the first `send` calls had every event acknowledged (or rejected), also
    /// after a failed confirm: what the caller may record of a run that then gave up.
    fn acknowledged(&self) -> u64 {
        0
    }
    fn stats(&self) -> SinkStats;
}
