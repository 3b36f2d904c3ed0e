//! An event read once: its fields found and its id hashed a single time, then written straight
//! (json, ecs) and handed to the sink in brief, the few fields a sink repeats beside the
//! encoded event (OTLP's attributes and severity), without reading the state again.

use rmpv::ValueRef;

use super::{wire, EventId, Res, Wire};
use crate::extract::StateEvent;
use crate::job::Job;

/// An event in brief, as its fields read: for a sink that repeats a few of them beside the
/// event (OTLP's attributes and severity) without parsing what was encoded.
pub(crate) struct Brief<'e> {
    pub(crate) state_id: Option<&'e str>,
    /// `result`: `Some(Some(b))` true or false (an error return is false), `Some(None)` null
    /// (or none: the event writes null), `None` any other value.
    pub(crate) result: Option<Option<bool>>,
    pub(crate) changed: bool,
}

/// One state event, read once for everything the encoder hands over.
pub(crate) struct EventParts<'e, 'a>(Wire<'e, 'a>);

impl<'e, 'a: 'e> EventParts<'e, 'a> {
    pub(crate) fn new(master: &'e str, job: &'e Job, ev: &'e StateEvent<'a>) -> EventParts<'e, 'a> {
        EventParts(wire(master, job, ev))
    }

    pub(crate) fn id(&self) -> &EventId {
        &self.0.event_id
    }

    pub(crate) fn brief(&self) -> Brief<'_> {
        Brief {
            state_id: self.0.state_id.as_deref(),
            result: match self.0.result {
                Res::Error => Some(Some(false)),
                Res::State(None | Some(ValueRef::Nil)) => Some(None),
                Res::State(Some(ValueRef::Boolean(b))) => Some(Some(*b)),
                Res::State(Some(_)) => None,
            },
            changed: self.0.changed,
        }
    }

    /// The event as an ordered JSON map, for the other formats and for truncation: from the
    /// fields already read, not read again.
    pub(crate) fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(&self.0) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("an event is a JSON object"),
        }
    }

    /// The event as a JSON line.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        self.0.write(out);
        out.push(b'\n');
    }

    /// The event as an ECS JSON line.
    pub(crate) fn write_ecs(&self, out: &mut Vec<u8>) {
        self.0.write_ecs(out);
        out.push(b'\n');
    }
}
