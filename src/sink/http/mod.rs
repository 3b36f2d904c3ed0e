//! The HTTP sinks: Splunk's HTTP Event Collector ([`hec`]) and Elasticsearch's `_bulk`
//! ([`elastic`]), on one client ([`client`]).

pub(crate) mod client;
pub(crate) mod elastic;
pub(crate) mod hec;

pub(crate) use client::HttpOptions;
