//! The HTTP sinks: Splunk's HTTP Event Collector ([`hec`]), Elasticsearch's `_bulk`
//! ([`elastic`]) and OpenTelemetry logs over OTLP/HTTP ([`otlp`]), on one client ([`client`]).

pub(crate) mod client;
pub(crate) mod elastic;
pub(crate) mod hec;
pub(crate) mod otlp;
pub(crate) mod pool;

pub(crate) use client::HttpOptions;
