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
use std::io::Write;
use std::time::{Duration, Instant};

use log::{debug, warn};
use serde::Deserialize;

use super::client::{self, one_line, split_url, Answer, Http, HttpOptions};
use crate::json::write_str;
use crate::sink::core::{Batch, BatchState, Fate, Fault, Protocol, Reply, Wait};
use crate::sink::keys::Keys;
use crate::sink::secret::shown;

/// Request bodies carry at most this much by default (Splunk's old `max_content_length` was
/// 1 MB).
pub(crate) const BATCH_BYTES: usize = 512 << 10;

#[derive(Debug, Clone)]
pub(crate) struct HecOptions {
    pub(crate) http: HttpOptions,
    pub(crate) sourcetype: String,
    pub(crate) index: Option<String>,
}

pub(crate) struct Hec {
    opts: HecOptions,
    http: Http,
    /// `"sourcetype":..` and `"index":..` of every envelope, written once.
    fixed: Vec<u8>,
    /// `X-Splunk-Request-Channel`: one per run.
    channel: String,
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
    code: Option<i64>,
    #[serde(rename = "invalid-event-number")]
    invalid_event: Option<usize>,
}

#[derive(Deserialize)]
struct AckReply {
    acks: std::collections::HashMap<String, bool>,
}

impl Hec {
    pub(crate) fn new(opts: HecOptions, deliver_timeout: Duration) -> Hec {
        let mut fixed = b"\"sourcetype\":".to_vec();
        write_str(&mut fixed, &opts.sourcetype);
        if let Some(index) = &opts.index {
            fixed.extend_from_slice(b",\"index\":");
            write_str(&mut fixed, index);
        }
        Hec {
            http: Http::new(&opts.http),
            fixed,
            opts,
            channel: uuid(),
            deliver_timeout,
        }
    }

    /// The event and ack endpoints of target `i`: the path is added when the URL has none.
    fn endpoints(&self, i: usize) -> (String, String) {
        let (base, path) = split_url(&self.opts.http.targets[i]);
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
    /// host, `saltship:<master>` as source; the event goes in as we encoded it.
    fn envelopes(&self, batch: &Batch) -> Vec<u8> {
        let mut body = Vec::with_capacity(batch.bytes.len() + batch.keys.len() * 160);
        for (keys, event) in batch.each() {
            self.envelope(&mut body, keys, event);
        }
        body
    }

    fn envelope(&self, body: &mut Vec<u8>, keys: &Keys, event: &[u8]) {
        {
            body.push(b'{');
            if let Some((seconds, micros)) = keys.seconds_micros() {
                let _ = write!(body, "\"time\":{seconds}.{micros:06},");
            }
            body.extend_from_slice(b"\"host\":");
            write_str(body, &keys.origin.host);
            body.extend_from_slice(b",\"source\":\"saltship:");
            // The master's name, escaped, inside the quotes we opened.
            let at = body.len();
            write_str(body, &keys.origin.master);
            body.remove(at);
            body.push(b',');
            body.extend_from_slice(&self.fixed);
            body.extend_from_slice(b",\"event\":");
            body.extend_from_slice(event.strip_suffix(b"\n").unwrap_or(event));
            body.extend_from_slice(b"}\n");
        }
    }

    /// A 400 about one event: that event is rejected (reported once), the rest sent again.
    fn bad_event(&self, i: usize, batch: &mut Batch, reply: &EventReply) -> Reply {
        let target = shown(&self.opts.http.targets[i]);
        let why = reply.text.as_deref().unwrap_or("invalid event");
        let rejected = batch.retain(|i, keys| {
            if Some(i) == reply.invalid_event {
                warn!("{target}: event {} rejected: {why}", keys.id());
                Fate::Rejected
            } else {
                Fate::Again
            }
        });
        Reply::Partly {
            rejected,
            after: None,
        }
    }
}

impl Protocol for Hec {
    fn batch_bytes(&self) -> usize {
        self.opts.http.max_request_bytes.unwrap_or(BATCH_BYTES)
    }

    /// The envelope written around an empty event, plus the event.
    fn framed_len(&self, keys: &Keys, event: &[u8]) -> usize {
        let mut envelope = Vec::with_capacity(160);
        self.envelope(&mut envelope, keys, b"");
        envelope.len() + event.strip_suffix(b"\n").unwrap_or(event).len()
    }

    fn send(&mut self, i: usize, batch: &mut Batch, wait: &mut Wait) -> Result<Reply, Fault> {
        let (url, _) = self.endpoints(i);
        let answer = self.post(&url, self.envelopes(batch), wait)?;
        if answer.too_large() {
            return Ok(Reply::TooLarge);
        }
        if let Some(fault) = answer.fault() {
            return Err(fault);
        }
        let reply: Option<EventReply> = serde_json::from_str(&answer.body).ok();
        match (answer.status, reply) {
            (200..=299, Some(reply)) if reply.code == Some(0) => Ok(match reply.ack_id {
                Some(ack) => Reply::Taken { ack: Some(ack) },
                None => Reply::Stored { rejected: 0 },
            }),
            (200..=299, Some(reply)) => Err(code_fault(&reply, &answer)),
            (400, Some(reply)) if reply.invalid_event.is_some() => {
                Ok(self.bad_event(i, batch, &reply))
            }
            // Any other refusal (a wrong index, a disabled token, a wrong path) is the
            // target's, not one event's: nothing is dropped for it.
            _ => Err(answer.refused()),
        }
    }

    /// Polls the indexer acknowledgements of every batch sent, backing off, until all are in;
    /// a batch waiting longer than `ack_timeout` is a fault (sent again).
    fn confirm(
        &mut self,
        i: usize,
        all: &mut VecDeque<Batch>,
        wait: &mut Wait,
    ) -> Result<bool, Fault> {
        let batches = all;
        let (_, url) = self.endpoints(i);
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
                Fault::retry(format!(
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
                    return Err(Fault::retry(format!(
                        "no indexer acknowledgement within {} s",
                        limit.as_secs_f64()
                    )));
                }
                Some(_) => {}
            }
            wait.sleep(pause)?;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// An empty request: HEC answers 400 "No data" once it accepted the token, 401/403 if not.
    fn probe(&mut self, i: usize, wait: &mut Wait) -> Result<String, Fault> {
        let (url, _) = self.endpoints(i);
        let headers = [("X-Splunk-Request-Channel", self.channel.clone())];
        let proved = "HEC answers and accepts the token";
        client::probe(&self.http, &url, &headers, wait, proved)
    }
}

/// A 2xx whose `code` is not 0 (or missing) stored nothing: Splunk's documented HEC status
/// codes, as retrying can help (internal error, busy, queues full) or cannot (the token, the
/// channel, the index, the data: the target's configuration, or a proxy that ate the body).
/// A code we do not know is retried, so the deadline, not a guess, decides.
fn code_fault(reply: &EventReply, answer: &Answer) -> Fault {
    let code = reply.code;
    let why = format!(
        "HTTP {} with HEC code {}: {}",
        answer.status,
        code.map_or_else(|| "missing".into(), |c| c.to_string()),
        one_line(reply.text.as_deref().unwrap_or(&answer.body))
    );
    match code {
        Some(1..=7 | 10..=16) => Fault::permanent(why),
        _ => Fault::Retry {
            why,
            after: answer.retry_after,
        },
    }
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
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;
    use std::sync::Arc;

    use super::*;
    use crate::sink::keys::Origin;
    use crate::sink::secret::Secret;

    fn hec(target: &str, token: &str) -> Hec {
        let http = HttpOptions {
            targets: vec![target.to_owned()],
            auth: Some(Secret(format!("Splunk {token}"))),
            connect_timeout: Duration::from_secs(5),
            max_request_bytes: None,
            tls: None,
        };
        let opts = HecOptions {
            http,
            sourcetype: "salt:state".into(),
            index: Some("main".into()),
        };
        Hec::new(opts, Duration::from_secs(10))
    }

    #[test]
    fn envelopes_carry_the_keys_and_the_event_as_encoded() {
        let event = b"{\"timestamp\":\"2026-11-23T18:57:50.440911Z\",\"x\":\"\\\"q\"}\n";
        let origin = Origin {
            host: "web\"1".into(),
            master: "salt\\m".into(),
            jid: "j".into(),
            ..Origin::default()
        };
        let keys = Keys {
            len: event.len(),
            id: Keys::id_from("ab"),
            time: Some(1_795_460_270_440_911),
            origin: Arc::new(origin),
            state: Default::default(),
        };
        let batch = Batch {
            bytes: event.to_vec(),
            keys: vec![keys],
            state: BatchState::Unsent,
            first_send: 1,
        };
        let body = hec("http://127.0.0.1:1", "t").envelopes(&batch);
        let text = String::from_utf8(body).expect("UTF-8");
        assert!(text.starts_with("{\"time\":1795460270.440911,"), "{text}");
        assert!(text.ends_with("}\n"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("one JSON envelope");
        assert_eq!(v["host"], "web\"1");
        assert_eq!(v["source"], "saltship:salt\\m");
        assert_eq!(v["sourcetype"], "salt:state");
        assert_eq!(v["index"], "main");
        assert_eq!(v["event"]["x"], "\"q");
    }

    /// Answers `n` requests as HEC does an empty one: 400 "No data" with the right token,
    /// 403 without; hands back the bodies it got.
    fn fake_hec(n: usize) -> (String, std::thread::JoinHandle<Vec<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for _ in 0..n {
                let (conn, _) = listener.accept().expect("accept");
                conn.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut reader = BufReader::new(&conn);
                let (mut good, mut length) = (false, 0);
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).expect("request line");
                    let lower = line.to_ascii_lowercase();
                    good |= lower.starts_with("authorization: splunk good");
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().expect("a length");
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).expect("body");
                bodies.push(length);
                let (status, text) = if good {
                    ("400 Bad Request", r#"{"text":"No data","code":5}"#)
                } else {
                    ("403 Forbidden", r#"{"text":"Invalid token","code":4}"#)
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                std::io::Write::write_all(&mut &conn, reply.as_bytes()).expect("reply");
            }
            bodies
        });
        (url, server)
    }

    #[test]
    fn probe_tells_a_bad_token_without_sending_an_event() {
        let (url, server) = fake_hec(2);
        let mut wait = Wait::new(Duration::from_secs(10), None);
        let ok = hec(&url, "good").probe(0, &mut wait);
        assert!(ok.is_ok(), "{ok:?}");
        let bad = hec(&url, "wrong")
            .probe(0, &mut wait)
            .expect_err("a bad token");
        assert!(bad.is_permanent() && bad.why().contains("403"), "{bad:?}");
        assert_eq!(server.join().expect("server"), [0, 0], "no event sent");
    }

    #[test]
    fn channel_is_a_version_4_uuid() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    }
}
