//! How the core fills batches ([`Delivery::queue`]: cut to the protocol's request size,
//! sent after `--linger` or when the caller has no more input) and applies a reply to one
//! ([`Delivery::took`]: stored, taken, partly, or too large: halved down to one event).

use std::time::Instant;

use log::{debug, warn};

use super::{Delivery, MIN_CAP};
use crate::sink::core::protocol::{Batch, BatchState, Protocol, Reply};
use crate::sink::keys::Keys;
use crate::sink::SinkError;

impl<P: Protocol> Delivery<P> {
    /// Adds the events to the batches: as they are, or into batches of at most `batch_bytes`
    /// in the request (cut at event ends). An event larger than that alone is rejected.
    pub(super) fn queue(&mut self, bytes: &[u8], keys: &[Keys]) {
        let most = self.proto.batch_bytes();
        let limit = self.cap.map_or(most, |c| c.min(most));
        if limit == 0 {
            self.batches.push_back(Batch {
                bytes: bytes.to_vec(),
                keys: keys.to_vec(),
                state: BatchState::Unsent,
                first_send: self.sends,
            });
            return;
        }
        let mut at = 0;
        for k in keys {
            let event = &bytes[at..at + k.len];
            at += k.len;
            let size = self.proto.framed_len(k, event);
            if size > most {
                warn!(
                    "event {} rejected: {size} bytes in a request, more than the {most} allowed",
                    k.id()
                );
                self.stats.rejected += 1;
                continue;
            }
            let room = self.batches.back().is_some_and(|b| {
                b.state == BatchState::Unsent && !b.keys.is_empty() && self.filled + size <= limit
            });
            if !room {
                self.batches.push_back(Batch {
                    first_send: self.sends,
                    ..Batch::default()
                });
                self.filled = 0;
                self.filling_since = Some(Instant::now());
            }
            let batch = self.batches.back_mut().expect("pushed above");
            batch.bytes.extend_from_slice(event);
            batch.keys.push(k.clone());
            self.filled += size;
        }
    }

    /// Whether the last batch may wait for more events: it is not full, and its first event
    /// has waited less than `--linger`.
    pub(super) fn lingers(&self) -> bool {
        self.proto.batch_bytes() > 0
            && self
                .filling_since
                .is_some_and(|t| t.elapsed() < self.opts.linger)
    }

    /// Applies the reply to batch `i`, which held `before` events.
    pub(super) fn took(&mut self, i: usize, reply: Reply, before: u64) -> Result<(), SinkError> {
        if let (false, Some(t)) = (self.announced, self.current) {
            debug!("connected to {}", self.targets[t]);
            self.announced = true;
        }
        let batch = &mut self.batches[i];
        match reply {
            Reply::TooLarge if before > 1 => {
                let half = batch.split_off(batch.keys.len() / 2);
                self.batches.insert(i + 1, half);
                let most = self.cap.unwrap_or(self.proto.batch_bytes());
                self.cap = Some((most / 2).max(MIN_CAP));
                self.filled = usize::MAX / 2; // the next event starts a batch
                debug!("request too large: halved ({before} events)");
            }
            Reply::TooLarge => {
                let target = self.current.map_or("", |t| &self.targets[t]);
                for k in &batch.keys {
                    warn!("{target}: event {} rejected: too large (HTTP 413)", k.id());
                }
                batch.state = BatchState::Done;
                self.stats.rejected += before;
                self.progress();
            }
            Reply::Stored { rejected } => {
                batch.state = BatchState::Done;
                self.stats.rejected += rejected;
                self.progress();
            }
            Reply::Taken { ack } => {
                batch.state = BatchState::Sent {
                    ack,
                    at: Instant::now(),
                }
            }
            Reply::Partly { rejected, after } => {
                self.stats.rejected += rejected;
                let left = batch.events();
                if left == 0 {
                    batch.state = BatchState::Done;
                }
                if left < before {
                    self.progress();
                }
                if left > 0 {
                    // The rest is sent again: not in a tight loop.
                    self.pause(after)?;
                }
            }
        }
        Ok(())
    }
}
