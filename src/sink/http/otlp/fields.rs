//! The fields of an encoded event (`json` or `ecs`) that a LogRecord's attributes repeat.

use serde::{Deserialize, Deserializer};

use super::encode::{Outcome, Record};

/// `null` as `Some(None)`, a missing field as `None` (through `default`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<bool>>, D::Error> {
    Option::<bool>::deserialize(d).map(Some)
}

/// The fields, from either format: flat (`json`) or ECS (`salt.*`, `event.id`, ...).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Fields {
    timestamp: Option<String>,
    #[serde(rename = "@timestamp")]
    at_timestamp: Option<String>,
    event_id: Option<String>,
    event_type: Option<String>,
    master: Option<String>,
    jid: Option<String>,
    minion_id: Option<String>,
    fun: Option<String>,
    state_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Option<bool>>,
    changed: Option<bool>,
    event: Option<EcsEvent>,
    host: Option<Named>,
    observer: Option<EcsObserver>,
    salt: Option<Box<Fields>>,
}

#[derive(Debug, Default, Deserialize)]
struct EcsEvent {
    id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct EcsObserver {
    hostname: Option<String>,
}

impl Fields {
    /// Reads one encoded event; one that does not parse has no fields (its body still goes).
    pub(crate) fn of(event: &[u8]) -> Fields {
        serde_json::from_slice(event).unwrap_or_default()
    }

    /// The record for `body`, whose fields these are.
    pub(crate) fn record<'a>(&'a self, body: &'a [u8]) -> Record<'a> {
        let salt = self.salt.as_deref();
        let pick = |own: &'a Option<String>, in_salt: fn(&'a Fields) -> &'a Option<String>| {
            own.as_deref()
                .or_else(|| salt.and_then(|s| in_salt(s).as_deref()))
        };
        let time = self.timestamp.as_deref().or(self.at_timestamp.as_deref());
        let result = self.result.or(salt.and_then(|s| s.result));
        Record {
            body,
            time_unix_nano: time.and_then(unix_nanos).unwrap_or(0),
            master: self
                .master
                .as_deref()
                .or(self.observer.as_ref().and_then(|o| o.hostname.as_deref())),
            event_id: self
                .event_id
                .as_deref()
                .or(self.event.as_ref().and_then(|e| e.id.as_deref())),
            event_type: self.event_type.as_deref(),
            jid: pick(&self.jid, |s| &s.jid),
            minion_id: self
                .minion_id
                .as_deref()
                .or(self.host.as_ref().and_then(|h| h.name.as_deref())),
            fun: pick(&self.fun, |s| &s.fun),
            state_id: pick(&self.state_id, |s| &s.state_id),
            result: match result {
                None => Outcome::Unknown,
                Some(None) => Outcome::Pending,
                Some(Some(true)) => Outcome::Succeeded,
                Some(Some(false)) => Outcome::Failed,
            },
            changed: self.changed.or(salt.and_then(|s| s.changed)),
        }
    }
}

/// RFC 3339 as nanoseconds since the epoch.
fn unix_nanos(rfc3339: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    u64::try_from(t.timestamp_nanos_opt()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_give_the_same_record() {
        let json = br#"{"timestamp":"2026-11-23T18:57:50.440911Z","event_id":"ab","master":"s","jid":"j","minion_id":"m1","fun":"state.apply","state_id":"nginx","result":false,"changed":true}"#;
        let ecs = br#"{"@timestamp":"2026-11-23T18:57:50.440911Z","event":{"id":"ab"},"host":{"name":"m1"},"observer":{"hostname":"s"},"salt":{"jid":"j","fun":"state.apply","state_id":"nginx","result":false,"changed":true}}"#;
        for event in [&json[..], &ecs[..]] {
            let fields = Fields::of(event);
            let r = fields.record(event);
            assert_eq!(r.time_unix_nano, 1_795_460_270_440_911_000);
            assert_eq!(
                (r.event_id, r.master, r.jid, r.minion_id),
                (Some("ab"), Some("s"), Some("j"), Some("m1"))
            );
            assert_eq!((r.fun, r.state_id), (Some("state.apply"), Some("nginx")));
            assert_eq!((r.result, r.changed), (Outcome::Failed, Some(true)));
        }
    }

    #[test]
    fn null_and_missing_results_differ() {
        let pending = Fields::of(br#"{"result":null}"#);
        assert_eq!(pending.record(b"").result, Outcome::Pending);
        let none = Fields::of(br#"{"event_id":"x"}"#);
        assert_eq!(none.record(b"").result, Outcome::Unknown);
        let bad = Fields::of(b"not json");
        assert_eq!(bad.record(b"not json").event_id, None);
    }
}
