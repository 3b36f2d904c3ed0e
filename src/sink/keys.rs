//! What the encoder hands over with each event's bytes: the few keys the envelopes need
//! (HEC's `time` and `host`, the `_bulk` action's `_id`, a Kafka record's key, timestamp and
//! headers, an OTLP log record's attributes and severity), so that no sink parses an event it
//! was given again, whatever the format.

use std::sync::Arc;

/// The keys of one encoded event.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The event's bytes, its framing included: the events of a buffer follow one another.
    pub(crate) len: usize,
    /// `event_id` (32 hex digits).
    pub(crate) id: [u8; 32],
    /// When the state started, in microseconds since the epoch.
    pub(crate) time: Option<i64>,
    /// Who the event is about and where it came from (shared by the events of one return).
    pub(crate) origin: Arc<Origin>,
    /// What the state says of itself.
    pub(crate) state: StateKeys,
}

/// The fields of a state event that a sink may repeat beside it (OTLP's attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StateKeys {
    /// `state_id` (`__id__`).
    pub(crate) state_id: Option<Box<str>>,
    pub(crate) result: Outcome,
    /// `changed`: the state changed something.
    pub(crate) changed: bool,
}

/// A state's `result`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `result: true`
    Succeeded,
    /// `result: false` (an error return too)
    Failed,
    /// `result: null`: a test run's pending change
    Pending,
    /// Anything else.
    #[default]
    Unknown,
}

/// The keys events of one return usually share.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The minion (`minion_id`, ECS `host.name`).
    pub(crate) host: String,
    /// The master (`master`, ECS `observer.hostname`).
    pub(crate) master: String,
    pub(crate) jid: String,
    /// The function the job ran (`fun`).
    pub(crate) fun: String,
}

impl Keys {
    /// An `event_id` as [`Keys::id`] holds it: its first 32 bytes, padded with `0`.
    pub(crate) fn id_from(id: &str) -> [u8; 32] {
        let mut out = [b'0'; 32];
        let n = id.len().min(32);
        out[..n].copy_from_slice(&id.as_bytes()[..n]);
        out
    }

    pub(crate) fn id(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or("?")
    }

    /// The time as whole seconds since the epoch and the microseconds after them.
    pub(crate) fn seconds_micros(&self) -> Option<(i64, u32)> {
        self.time
            .map(|t| (t.div_euclid(1_000_000), t.rem_euclid(1_000_000) as u32))
    }

    /// The time in milliseconds since the epoch.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn millis(&self) -> Option<i64> {
        self.time.map(|t| t.div_euclid(1000))
    }
}

/// Events as the encoder hands them to a sink: their bytes, framed, one after another, and
/// each one's keys.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) keys: Vec<Keys>,
}

impl Encoded {
    /// The [`Origin`] for an event: the last event's, unless this one's differs (an
    /// orchestration's events name several minions), so a return shares one.
    pub(crate) fn origin(&self, host: &str, master: &str, jid: &str, fun: &str) -> Arc<Origin> {
        let same =
            |o: &Origin| o.host == host && o.master == master && o.jid == jid && o.fun == fun;
        match self.keys.last() {
            Some(k) if same(&k.origin) => k.origin.clone(),
            _ => Arc::new(Origin {
                host: host.to_owned(),
                master: master.to_owned(),
                jid: jid.to_owned(),
                fun: fun.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_split_into_seconds_micros_and_millis_before_and_after_1970() {
        let keys = |time| Keys {
            len: 0,
            id: Keys::id_from("ab"),
            time: Some(time),
            origin: Arc::default(),
            state: StateKeys::default(),
        };
        let k = keys(1_795_460_270_440_911);
        assert_eq!(k.seconds_micros(), Some((1_795_460_270, 440_911)));
        assert_eq!(k.millis(), Some(1_795_460_270_440));
        // chrono's floor for times before the epoch, as the old RFC 3339 parse gave.
        assert_eq!(keys(-1).seconds_micros(), Some((-1, 999_999)));
        assert_eq!(keys(-1).millis(), Some(-1));
    }

    #[test]
    fn origins_are_shared_while_the_minion_stays_the_same() {
        let mut e = Encoded::default();
        let push = |e: &mut Encoded, host: &str| {
            let origin = e.origin(host, "m", "j", "state.apply");
            e.keys.push(Keys {
                len: 0,
                id: Keys::id_from("ab"),
                time: None,
                origin,
                state: StateKeys::default(),
            });
        };
        push(&mut e, "web1");
        push(&mut e, "web1");
        push(&mut e, "web2");
        assert!(Arc::ptr_eq(&e.keys[0].origin, &e.keys[1].origin));
        assert_eq!(e.keys[2].origin.host, "web2");
    }
}
