//! The Elasticsearch / OpenSearch `_bulk` sink on the delivery core: one `create` action per
//! event with `_id` = `event_id`, so a resend is a 409 and the index keeps one copy.
//!
//! The per-item statuses are the acknowledgement: 201 (created) and 409 (already there) are
//! delivered; 429 and 5xx items are sent again, alone; any other item error (a mapping error)
//! rejects that event for good: reported once with its reason, and counted.

use log::warn;
use serde::Deserialize;

use super::client::{self, one_line, split_url, Http, HttpOptions};
use crate::json::write_str;
use crate::sink::core::{Batch, Fate, Fault, Protocol, Reply, Wait};

/// Requests carry at most this much: well under any `http.max_content_length`.
const BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct ElasticOptions {
    pub http: HttpOptions,
    pub index: String,
}

pub(crate) struct Elastic {
    opts: ElasticOptions,
    http: Http,
    /// `{"create":{"_index":..` of every action, written once.
    action: Vec<u8>,
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
        let mut action = b"{\"create\":{\"_index\":".to_vec();
        write_str(&mut action, &opts.index);
        Elastic {
            http: Http::new(&opts.http),
            action,
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

    /// One `create` action per event, `_id` = `event_id`, then the event as we encoded it.
    fn body(&self, batch: &Batch) -> Vec<u8> {
        let mut body = Vec::with_capacity(batch.bytes.len() + batch.keys.len() * 96);
        for (keys, event) in batch.each() {
            body.extend_from_slice(&self.action);
            body.extend_from_slice(b",\"_id\":");
            write_str(&mut body, keys.id());
            body.extend_from_slice(b"}}\n");
            body.extend_from_slice(event);
        }
        body
    }

    /// Keeps in `batch` only the events to send again; reports the rejected ones.
    fn items(&self, batch: &mut Batch, reply: &BulkReply) -> Result<Reply, Fault> {
        if reply.items.len() != batch.keys.len() {
            return Err(Fault::retry(format!(
                "_bulk answered {} items for {} events",
                reply.items.len(),
                batch.keys.len()
            )));
        }
        let target = &self.opts.http.targets[self.current];
        let rejected = batch.retain(|i, keys| {
            let Some(item) = reply.items[i].values().next() else {
                return Fate::Stored;
            };
            match item.status {
                200..=299 | 409 => Fate::Stored,
                429 | 500..=599 => Fate::Again,
                status => {
                    let why = item.error.as_ref().map_or_else(String::new, reason);
                    warn!(
                        "{target}: event {} rejected (HTTP {status}): {why}",
                        keys.id()
                    );
                    Fate::Rejected
                }
            }
        });
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
            .post(&self.url(), &headers, self.body(batch), wait)?;
        if let Some(fault) = answer.fault() {
            return Err(fault);
        }
        if !(200..=299).contains(&answer.status) {
            // A wrong path or index name: the target's problem, not one event's.
            return Err(answer.refused());
        }
        let reply: BulkReply = serde_json::from_str(&answer.body).map_err(|e| {
            Fault::retry(format!(
                "HTTP {}: {}: {e}",
                answer.status,
                one_line(&answer.body)
            ))
        })?;
        if !reply.errors {
            return Ok(Reply::Stored { rejected: 0 });
        }
        self.items(batch, &reply)
    }

    /// An empty `_bulk`: answered 400 (no body) once the credentials were accepted, 401/403 if
    /// not, 404 for a wrong path.
    fn probe(&mut self, i: usize, wait: &mut Wait) -> Result<String, Fault> {
        self.current = i;
        let proved = "_bulk answers and accepts the credentials";
        client::probe(&self.http, &self.url(), &[], wait, proved)
    }
}
