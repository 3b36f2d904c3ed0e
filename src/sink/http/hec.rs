//! The Splunk HTTP Event Collector sink on the delivery core: one HEC envelope per event,
//! batched per request, acknowledged by the indexer when the token has acknowledgement on.
//!
//! A reply with an `ackId` means the batch was received; it counts as delivered only once
//! `/services/collector/ack` says that id is indexed (polled at confirm). One that is not
//! acknowledged within `ack_timeout` is sent again, alone: only unacknowledged batches are
//! ever resent. Without acknowledgement on the token, `200 {"code":0}` is the proof (received,
//! not yet indexed). 400 naming one event (`invalid-event-number`) rejects that event, reported
//! and counted; the rest is sent again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use log::{debug, warn};
use serde::Deserialize;

use super::deliver::{Batch, BatchState, Fault, Protocol, Reply};
use super::http::{events, one_line, split_url, Answer, Head, Http, HttpOptions};
use super::wait::Wait;

/// Requests carry at most this much (Splunk's old `max_content_length` was 1 MB).
const BATCH_BYTES: usize = 512 << 10;

#[derive(Debug, Clone)]
pub struct HecOptions {
    pub http: HttpOptions,
    pub sourcetype: String,
    pub index: Option<String>,
}

pub struct Hec {
    opts: HecOptions,
    http: Http,
    /// `X-Splunk-Request-Channel`: one per run.
    channel: String,
    current: usize,
    deliver_timeout: Duration,
}

/// A batch whose `ackId` has not come back indexed after this long is sent again: a third of
/// `--deliver-timeout`, at most two minutes, so a resend fits before giving up.
fn ack_timeout(deliver_timeout: Duration) -> Duration {
    (deliver_timeout / 3).min(Duration::from_secs(120))
}

#[derive(Deserialize)]
struct EventReply {
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
    text: Option<String>,
    #[serde(rename = "invalid-event-number")]
    invalid_event: Option<usize>,
}

#[derive(Deserialize)]
struct AckReply {
    acks: std::collections::HashMap<String, bool>,
}

impl Hec {
    pub fn new(opts: HecOptions, deliver_timeout: Duration) -> Hec {
        Hec {
            http: Http::new(&opts.http),
            opts,
            channel: uuid(),
            current: 0,
            deliver_timeout,
        }
    }

    /// The event and ack endpoints of target `i`: the path is added when the URL has none.
    fn endpoints(&self) -> (String, String) {
        let (base, path) = split_url(&self.opts.http.targets[self.current]);
        let prefix = path
            .strip_suffix("/event")
            .or_else(|| path.strip_suffix("/raw"))
            .unwrap_or(path);
        let prefix = if prefix.is_empty() {
            "/services/collector"
        } else {
            prefix
        };
        (
            format!("{base}{prefix}/event"),
            format!("{base}{prefix}/ack"),
        )
    }

    fn post(&self, url: &str, body: Vec<u8>, wait: &Wait) -> Result<Answer, Fault> {
        let headers = [("X-Splunk-Request-Channel", self.channel.clone())];
        self.http.post(url, &headers, body, wait)
    }

    /// One envelope per event: the time as epoch seconds with microseconds, the minion as
    /// host, `saltship:<master>` as source.
    fn envelopes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(bytes.len() + bytes.len() / 4);
        for event in events(bytes) {
            let head = Head::of(event);
            let mut envelope = serde_json::Map::new();
            if let Some(time) = head.time().and_then(epoch) {
                envelope.insert("time".into(), serde_json::Value::Number(time));
            }
            if let Some(host) = head.minion() {
                envelope.insert("host".into(), host.into());
            }
            if let Some(master) = head.master() {
                envelope.insert("source".into(), format!("saltship:{master}").into());
            }
            envelope.insert("sourcetype".into(), self.opts.sourcetype.clone().into());
            if let Some(index) = &self.opts.index {
                envelope.insert("index".into(), index.clone().into());
            }
            let mut text = serde_json::to_vec(&envelope).expect("JSON with string keys serializes");
            // The event goes in as we encoded it.
            text.pop();
            if !envelope.is_empty() {
                text.push(b',');
            }
            text.extend_from_slice(b"\"event\":");
            text.extend_from_slice(event);
            text.extend_from_slice(b"}\n");
            body.extend_from_slice(&text);
        }
        body
    }

    /// A 400 about one event: that event is rejected (reported once), the rest sent again.
    fn bad_event(&self, batch: &mut Batch, reply: &EventReply) -> Option<Reply> {
        let n = reply.invalid_event?;
        let mut kept = Vec::with_capacity(batch.bytes.len());
        let mut rejected = 0;
        for (i, event) in events(&batch.bytes).enumerate() {
            if i == n {
                warn!(
                    "{}: event {} rejected: {}",
                    self.opts.http.targets[self.current],
                    Head::of(event).id().unwrap_or("?"),
                    reply.text.as_deref().unwrap_or("invalid event")
                );
                rejected += 1;
            } else {
                kept.extend_from_slice(event);
                kept.push(b'\n');
            }
        }
        batch.bytes = kept;
        batch.events -= rejected;
        Some(Reply::Partly {
            rejected,
            after: None,
        })
    }
}

impl Protocol for Hec {
    fn targets(&self) -> &[String] {
        &self.opts.http.targets
    }

    fn batch_bytes(&self) -> usize {
        BATCH_BYTES
    }

    fn connect(&mut self, i: usize, _: &mut Wait) -> Result<(), Fault> {
        // ureq connects (and keeps connections alive) as it posts.
        self.current = i;
        Ok(())
    }

    fn send(&mut self, batch: &mut Batch, wait: &mut Wait) -> Result<Reply, Fault> {
        let (url, _) = self.endpoints();
        let answer = self.post(&url, self.envelopes(&batch.bytes), wait)?;
        if let Some(fault) = answer.fault() {
            return Err(fault);
        }
        let reply: Option<EventReply> = serde_json::from_str(&answer.body).ok();
        match (answer.status, reply) {
            (200..=299, Some(reply)) => Ok(match reply.ack_id {
                Some(ack) => Reply::Taken { ack: Some(ack) },
                None => Reply::Stored { rejected: 0 },
            }),
            (400, Some(reply)) if reply.invalid_event.is_some() => {
                Ok(self.bad_event(batch, &reply).expect("an invalid event"))
            }
            // Any other refusal (a wrong index, a disabled token, a wrong path) is the
            // target's, not one event's: nothing is dropped for it.
            _ => Err(Fault::permanent(format!(
                "HTTP {}: {}",
                answer.status,
                one_line(&answer.body)
            ))),
        }
    }

    /// Polls the indexer acknowledgements of every batch sent, backing off, until all are in;
    /// a batch waiting longer than `ack_timeout` is a fault (sent again).
    fn confirm(&mut self, batches: &mut VecDeque<Batch>, wait: &mut Wait) -> Result<bool, Fault> {
        let (_, url) = self.endpoints();
        let limit = ack_timeout(self.deliver_timeout);
        let mut pause = Duration::from_millis(50);
        loop {
            let waiting: Vec<u64> = batches
                .iter()
                .filter_map(|b| match b.state {
                    BatchState::Sent { ack: Some(ack), .. } => Some(ack),
                    _ => None,
                })
                .collect();
            if waiting.is_empty() {
                return Ok(true);
            }
            let body = serde_json::to_vec(&serde_json::json!({ "acks": waiting }))
                .expect("JSON serializes");
            let answer = self.post(&url, body, wait)?;
            if let Some(fault) = answer.fault() {
                return Err(fault);
            }
            let acks: AckReply = serde_json::from_str(&answer.body).map_err(|_| {
                Fault::retriable(format!(
                    "indexer acknowledgement: HTTP {}: {}",
                    answer.status,
                    one_line(&answer.body)
                ))
            })?;
            let mut oldest: Option<Instant> = None;
            for b in batches.iter_mut() {
                if let BatchState::Sent { ack: Some(ack), at } = b.state {
                    if acks.acks.get(&ack.to_string()) == Some(&true) {
                        b.state = BatchState::Done;
                    } else {
                        oldest = Some(oldest.map_or(at, |o| o.min(at)));
                    }
                }
            }
            match oldest {
                None => return Ok(true),
                Some(at) if at.elapsed() >= limit => {
                    debug!(
                        "no indexer acknowledgement for {:.1} s",
                        at.elapsed().as_secs_f64()
                    );
                    return Err(Fault::retriable(format!(
                        "no indexer acknowledgement within {} s",
                        limit.as_secs_f64()
                    )));
                }
                Some(_) => {}
            }
            wait.sleep(pause)
                .map_err(|e| Fault::retriable(e.to_string()))?;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn disconnect(&mut self) {}

    /// An empty request: HEC answers 400 "No data" once it accepted the token, 401/403 if not.
    fn probe(&mut self, i: usize, wait: &mut Wait) -> Result<String, Fault> {
        self.current = i;
        let (url, _) = self.endpoints();
        let answer = self.post(&url, Vec::new(), wait)?;
        match answer.fault() {
            Some(fault) => Err(fault),
            None if matches!(answer.status, 200..=299 | 400) => {
                Ok("HEC answers and accepts the token".into())
            }
            None => Err(Fault::permanent(format!(
                "HTTP {}: {}",
                answer.status,
                one_line(&answer.body)
            ))),
        }
    }
}

/// RFC 3339 as epoch seconds with microseconds, as HEC's `time` takes it.
fn epoch(rfc3339: &str) -> Option<serde_json::Number> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    let text = format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros());
    text.parse().ok()
}

/// A random (version 4) UUID for the request channel.
fn uuid() -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id()) << 64;
    let mut x = xxhash_rust::xxh3::xxh3_128(&seed.to_le_bytes());
    x = (x & !(0xf << 76)) | (0x4 << 76);
    x = (x & !(0x3 << 62)) | (0x2 << 62);
    let h = format!("{x:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_epoch_seconds_with_microseconds() {
        assert_eq!(
            epoch("2026-11-23T18:57:50.440911Z").map(|n| n.to_string()),
            Some("1795460270.440911".to_owned())
        );
    }

    #[test]
    fn channel_is_a_version_4_uuid() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    }
}
