//! The OpenTelemetry logs sink on the delivery core: OTLP/HTTP, `POST {target}/v1/logs`, one
//! LogRecord per event ([`encode`]), protobuf by default or OTLP/JSON, optionally gzipped.
//!
//! What the acknowledgement proves ([`reply`]): a 2xx whose `partial_success` rejected no
//! record means the receiver took the batch: into its pipeline (Fluent Bit's input buffer, the
//! Collector's queue, Loki's ingesters). How far that is from disk is the receiver's
//! set-up (docs/otlp.md). Rejected records are counted and reported, never sent again. OTLP
//! has no de-duplication: after a fault the unacknowledged batches are sent again, and a
//! receiver dedupes on the `event_id` attribute.

pub(crate) mod encode;
pub(crate) mod headers;
pub(crate) mod reply;

use std::time::{SystemTime, UNIX_EPOCH};

use log::{debug, warn};

use super::client::{one_line, split_url, Http, HttpOptions};
use crate::sink::core::{Batch, Fault, Protocol, Reply, Wait};
use crate::sink::keys::Keys;
use crate::sink::secret::{shown, Secret};
use encode::{Compression, Encoding, Record};
use reply::{Response, Verdict};

/// Request bodies (before compression, attributes included) stay within this by default,
/// under nginx's default `client_max_body_size` and Fluent Bit's `buffer_max_size` (1 MiB).
const BATCH_BYTES: usize = 512 << 10;

#[derive(Debug, Clone)]
pub(crate) struct OtlpOptions {
    pub(crate) http: HttpOptions,
    pub(crate) encoding: Encoding,
    pub(crate) compression: Compression,
    /// `--otlp-header` and `--otlp-header-file`: names as given, values never printed.
    pub(crate) headers: Vec<(String, Secret)>,
}

pub(crate) struct Otlp {
    opts: OtlpOptions,
    http: Http,
    current: usize,
    /// A receiver's warning on a fully accepted batch was shown (once a run).
    warned: bool,
}

impl Otlp {
    pub(crate) fn new(opts: OtlpOptions) -> Otlp {
        let names: Vec<&str> = opts.headers.iter().map(|(n, _)| n.as_str()).collect();
        if !names.is_empty() {
            debug!("OTLP headers (values not shown): {}", names.join(", "));
        }
        Otlp {
            http: Http::new(&opts.http),
            opts,
            current: 0,
            warned: false,
        }
    }

    fn target(&self) -> &str {
        &self.opts.http.targets[self.current]
    }

    /// `<url>/v1/logs`: a path in the URL (Loki's `/otlp`, a proxy's prefix) is kept.
    fn url(&self) -> String {
        let (base, path) = split_url(self.target());
        let path = path.strip_suffix("/v1/logs").unwrap_or(path);
        format!("{base}{path}/v1/logs")
    }

    /// POSTs a request body (before compression) and classifies the answer.
    fn export(&self, body: Vec<u8>, records: u64, wait: &Wait) -> Result<Verdict, Fault> {
        let mut headers = vec![("Content-Type", self.opts.encoding.content_type().to_owned())];
        let body = match self.opts.compression {
            Compression::Gzip => {
                headers.push(("Content-Encoding", "gzip".to_owned()));
                encode::gzip(&body)
            }
            Compression::None => body,
        };
        for (name, value) in &self.opts.headers {
            headers.push((name.as_str(), value.0.clone()));
        }
        let answer = self.http.post(&self.url(), &headers, body, wait)?;
        let response = Response {
            status: answer.status,
            content_type: answer.content_type.as_deref(),
            location: answer.location.as_deref(),
            retry_after: answer.retry_after,
            body: &answer.bytes,
        };
        Ok(reply::classify(&response, self.opts.encoding, records))
    }
}

/// The log record of one event (its framing newline left out) from the keys it came with.
fn record<'a>(keys: &'a Keys, event: &'a [u8]) -> Record<'a> {
    let text = |s: &'a str| (!s.is_empty()).then_some(s);
    let o = &keys.origin;
    Record {
        body: event.strip_suffix(b"\n").unwrap_or(event),
        time_unix_nano: keys
            .time
            .and_then(|us| u64::try_from(us).ok())
            .map_or(0, |us| us.saturating_mul(1000)),
        master: text(&o.master),
        event_id: Some(keys.id()),
        event_type: None,
        jid: text(&o.jid),
        minion_id: text(&o.host),
        fun: text(&o.fun),
        state_id: keys.state.state_id.as_deref(),
        result: keys.state.result,
        changed: Some(keys.state.changed),
    }
}

/// Now, in nanoseconds since the epoch: the records' observed time.
fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Protocol for Otlp {
    fn batch_bytes(&self) -> usize {
        self.opts.http.max_request_bytes.unwrap_or(BATCH_BYTES)
    }

    /// A request of this event alone: never less than its share of a larger one.
    fn framed_len(&self, keys: &Keys, event: &[u8]) -> usize {
        encode::alone_len(&record(keys, event), self.opts.encoding)
    }

    fn send(&mut self, i: usize, batch: &mut Batch, wait: &mut Wait) -> Result<Reply, Fault> {
        // ureq connects (and keeps connections alive) as it posts.
        self.current = i;
        let records: Vec<Record<'_>> = batch.each().map(|(k, e)| record(k, e)).collect();
        let request = encode::request(&records, now_nanos());
        let body = encode::body(&request, self.opts.encoding);
        let n = records.len() as u64;
        match self.export(body, n, wait)? {
            Verdict::Stored { rejected, message } => {
                let why = message.as_deref().unwrap_or("no reason given");
                if rejected > 0 {
                    warn!(
                        "{}: {rejected} of {n} events rejected: {why}",
                        self.target()
                    );
                } else if let Some(message) = &message {
                    if !std::mem::replace(&mut self.warned, true) {
                        warn!(
                            "{}: accepted with a warning: {message}",
                            shown(self.target())
                        );
                    }
                }
                Ok(Reply::Stored { rejected })
            }
            Verdict::TooLarge => Ok(Reply::TooLarge),
            Verdict::Retry { why, after } => Err(Fault::Retry { why, after }),
            Verdict::Permanent(why) => Err(Fault::permanent(why)),
        }
    }

    /// An empty export: an OTLP receiver answers 2xx (the Collector, Loki) or 400 (Fluent Bit
    /// refuses a request without records) once it accepted the headers; 401/403 if not.
    fn probe(&mut self, i: usize, wait: &mut Wait) -> Result<String, Fault> {
        self.current = i;
        let empty = encode::body(&encode::request(&[], now_nanos()), self.opts.encoding);
        match self.export(empty, 0, wait)? {
            Verdict::Stored { .. } => Ok("OTLP endpoint accepts an empty export".into()),
            Verdict::Permanent(why) if why.starts_with("HTTP 400") => Ok(format!(
                "OTLP endpoint answers and accepts the headers (an empty export: {})",
                one_line(&why)
            )),
            Verdict::Permanent(why) => Err(Fault::permanent(why)),
            Verdict::TooLarge => Err(Fault::permanent("HTTP 413 for an empty export")),
            Verdict::Retry { why, after } => Err(Fault::Retry { why, after }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otlp(target: &str) -> Otlp {
        Otlp::new(OtlpOptions {
            http: HttpOptions {
                targets: vec![target.to_owned()],
                auth: None,
                connect_timeout: std::time::Duration::from_secs(1),
                tls: None,
                max_request_bytes: None,
            },
            encoding: Encoding::Protobuf,
            compression: Compression::None,
            headers: Vec::new(),
        })
    }

    #[test]
    fn the_logs_path_is_added_once_and_a_prefix_kept() {
        for (target, url) in [
            ("http://h:4318", "http://h:4318/v1/logs"),
            ("http://h:4318/", "http://h:4318/v1/logs"),
            ("http://h:4318/v1/logs", "http://h:4318/v1/logs"),
            ("https://loki:3100/otlp", "https://loki:3100/otlp/v1/logs"),
            (
                "https://loki:3100/otlp/v1/logs/",
                "https://loki:3100/otlp/v1/logs",
            ),
        ] {
            assert_eq!(otlp(target).url(), url, "{target}");
        }
    }
}
