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
use crate::sink::keys::Keys;
use crate::sink::secret::shown;

/// Request bodies carry at most this much by default: well under any
/// `http.max_content_length`, and within nginx's default `client_max_body_size` (1 MiB).
pub(crate) const BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct ElasticOptions {
    pub(crate) http: HttpOptions,
    pub(crate) index: String,
}

pub(crate) struct Elastic {
    opts: ElasticOptions,
    http: Http,
    /// `{"create":{"_index":..` of every action, written once.
    action: Vec<u8>,
}

#[derive(Deserialize)]
struct BulkReply {
    #[serde(default)]
    items: Vec<Entry>,
}

/// One item of the reply, `{"create":{..}}`, read without a map per item: there is one
/// for every event sent.
#[derive(Deserialize)]
struct Entry {
    #[serde(alias = "index")]
    create: Option<Item>,
}

#[derive(Deserialize)]
struct Item {
    status: u16,
    error: Option<serde_json::Value>,
}

impl Elastic {
    pub(crate) fn new(opts: ElasticOptions) -> Elastic {
        let mut action = b"{\"create\":{\"_index\":".to_vec();
        write_str(&mut action, &opts.index);
        Elastic {
            http: Http::new(&opts.http),
            action,
            opts,
        }
    }

    /// `<url>/_bulk`: a path in the URL (a proxy's prefix) is kept.
    fn url(&self, i: usize) -> String {
        let (base, path) = split_url(&self.opts.http.targets[i]);
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
    fn items(&self, i: usize, batch: &mut Batch, reply: &BulkReply) -> Result<Reply, Fault> {
        if reply.items.len() != batch.keys.len() {
            return Err(Fault::retry(format!(
                "_bulk answered {} items for {} events",
                reply.items.len(),
                batch.keys.len()
            )));
        }
        let target = shown(&self.opts.http.targets[i]);
        let rejected = batch.retain(|n, keys| {
            // An item without its action's status proves nothing: sent again.
            let Some(item) = &reply.items[n].create else {
                return Fate::Again;
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
    fn batch_bytes(&self) -> usize {
        self.opts.http.max_request_bytes.unwrap_or(BATCH_BYTES)
    }

    /// The action line (`{"create":{"_index":..,"_id":".."}}\n`), plus the event.
    fn framed_len(&self, keys: &Keys, event: &[u8]) -> usize {
        let mut id = Vec::with_capacity(40);
        write_str(&mut id, keys.id());
        self.action.len() + ",\"_id\":".len() + id.len() + "}}\n".len() + event.len()
    }

    fn send(&mut self, i: usize, batch: &mut Batch, wait: &mut Wait) -> Result<Reply, Fault> {
        let headers = [("Content-Type", "application/x-ndjson".to_owned())];
        let answer = self
            .http
            .post(&self.url(i), &headers, self.body(batch), wait)?;
        if answer.too_large() {
            return Ok(Reply::TooLarge);
        }
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
        // Every item is read, whatever `errors` says: `errors: false` with fewer items than
        // actions, or with an item that is not 2xx, would record events never stored.
        self.items(i, batch, &reply)
    }

    /// An empty `_bulk`: answered 400 (no body) once the credentials were accepted, 401/403 if
    /// not, 404 for a wrong path.
    fn probe(&mut self, i: usize, wait: &mut Wait) -> Result<String, Fault> {
        let proved = "_bulk answers and accepts the credentials";
        client::probe(&self.http, &self.url(i), &[], wait, proved)
    }
}
