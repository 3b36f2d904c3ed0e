//! The Elasticsearch / OpenSearch `_bulk` sink on the delivery core: one `create` action per
//! event with `_id` = `event_id`, so a resend is a 409 and the index keeps one copy.
//!
//! The per-item statuses are the acknowledgement: 201 (created) and 409 (already there) are
//! delivered; 429 and 5xx items are sent again, alone; any other item error (a mapping error)
//! rejects that event for good: reported once with its reason, and counted.

use std::collections::VecDeque;

use log::warn;
use serde::Deserialize;

use super::deliver::{Batch, Fault, Protocol, Reply};
use super::http::{events, one_line, split_url, Head, Http, HttpOptions};
use super::wait::Wait;

/// Requests carry at most this much: well under any `http.max_content_length`.
const BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct ElasticOptions {
    pub http: HttpOptions,
    pub index: String,
}

pub struct Elastic {
    opts: ElasticOptions,
    http: Http,
    current: usize,
}

#[derive(Deserialize)]
struct BulkReply {
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, Item>>,
}

#[derive(Deserialize)]
struct Item {
    status: u16,
    error: Option<serde_json::Value>,
}

impl Elastic {
    pub fn new(opts: ElasticOptions) -> Elastic {
        Elastic {
            http: Http::new(&opts.http),
            opts,
            current: 0,
        }
    }

    /// `<url>/_bulk`: a path in the URL (a proxy's prefix) is kept.
    fn url(&self) -> String {
        let (base, path) = split_url(&self.opts.http.targets[self.current]);
        let path = path.strip_suffix("/_bulk").unwrap_or(path);
        format!("{base}{path}/_bulk")
    }

    fn body(&self, bytes: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(bytes.len() + bytes.len() / 4);
        for event in events(bytes) {
            let head = Head::of(event);
            let mut action = serde_json::json!({ "create": { "_index": self.opts.index } });
            if let Some(id) = head.id() {
                action["create"]["_id"] = id.into();
            }
            serde_json::to_writer(&mut body, &action).expect("JSON serializes");
            body.push(b'\n');
            body.extend_from_slice(event);
            body.push(b'\n');
        }
        body
    }

    /// Keeps in `batch` only the events to send again; reports the rejected ones.
    fn items(&self, batch: &mut Batch, reply: &BulkReply) -> Result<Reply, Fault> {
        let lines: Vec<&[u8]> = events(&batch.bytes).collect();
        if reply.items.len() != lines.len() {
            return Err(Fault::retriable(format!(
                "_bulk answered {} items for {} events",
                reply.items.len(),
                lines.len()
            )));
        }
        let mut again = Vec::new();
        let (mut kept, mut rejected) = (0, 0);
        for (line, item) in lines.iter().zip(&reply.items) {
            let Some(item) = item.values().next() else {
                continue;
            };
            match item.status {
                200..=299 | 409 => {}
                429 | 500..=599 => {
                    again.extend_from_slice(line);
                    again.push(b'\n');
                    kept += 1;
                }
                status => {
                    rejected += 1;
                    let why = item.error.as_ref().map_or_else(String::new, reason);
                    warn!(
                        "{}: event {} rejected (HTTP {status}): {why}",
                        self.opts.http.targets[self.current],
                        Head::of(line).id().unwrap_or("?"),
                    );
                }
            }
        }
        batch.bytes = again;
        batch.events = kept;
        Ok(Reply::Partly {
            rejected,
            after: None,
        })
    }
}

/// `type: reason` of an item's error.
fn reason(error: &serde_json::Value) -> String {
    let field = |k: &str| error.get(k).and_then(|v| v.as_str()).unwrap_or("");
    one_line(&format!("{}: {}", field("type"), field("reason")))
}

impl Protocol for Elastic {
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
        let headers = [("Content-Type", "application/x-ndjson".to_owned())];
        let answer = self
            .http
            .post(&self.url(), &headers, self.body(&batch.bytes), wait)?;
        if let Some(fault) = answer.fault() {
            return Err(fault);
        }
        let why = || format!("HTTP {}: {}", answer.status, one_line(&answer.body));
        if !(200..=299).contains(&answer.status) {
            // A wrong path or index name: the target's problem, not one event's.
            return Err(Fault::permanent(why()));
        }
        let reply: BulkReply = serde_json::from_str(&answer.body)
            .map_err(|e| Fault::retriable(format!("{}: {e}", why())))?;
        if !reply.errors {
            return Ok(Reply::Stored { rejected: 0 });
        }
        self.items(batch, &reply)
    }

    fn confirm(&mut self, _: &mut VecDeque<Batch>, _: &mut Wait) -> Result<bool, Fault> {
        // Every batch was acknowledged by its reply.
        Ok(true)
    }

    fn disconnect(&mut self) {}

    /// An empty `_bulk`: answered 400 (no body) once the credentials were accepted, 401/403 if
    /// not, 404 for a wrong path.
    fn probe(&mut self, i: usize, wait: &mut Wait) -> Result<String, Fault> {
        self.current = i;
        let answer = self.http.post(&self.url(), &[], Vec::new(), wait)?;
        match answer.fault() {
            Some(fault) => Err(fault),
            None if matches!(answer.status, 200..=299 | 400) => {
                Ok("_bulk answers and accepts the credentials".into())
            }
            None => Err(Fault::permanent(format!(
                "HTTP {}: {}",
                answer.status,
                one_line(&answer.body)
            ))),
        }
    }
}
