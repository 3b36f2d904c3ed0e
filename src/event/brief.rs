//! An event in brief: the few fields a sink repeats beside the encoded event (OTLP's
//! attributes and severity), read from the state as the event itself reads them.

use rmpv::ValueRef;

use super::{non_empty, state_id, Fields, KeyParts};
use crate::extract::StateEvent;

/// An event in brief, as its fields read: for a sink that repeats a few of them beside the
/// event (OTLP's attributes and severity) without parsing what was encoded.
pub(crate) struct Brief<'e> {
    pub(crate) state_id: Option<std::borrow::Cow<'e, str>>,
    /// `result`: `Some(Some(b))` true or false (an error return is false), `Some(None)` null
    /// (or none: the event writes null), `None` any other value.
    pub(crate) result: Option<Option<bool>>,
    pub(crate) changed: bool,
}

pub(crate) fn brief<'e>(ev: &'e StateEvent<'_>) -> Brief<'e> {
    let Some(state) = ev.state else {
        return Brief {
            state_id: None,
            result: Some(Some(false)),
            changed: false,
        };
    };
    let fields = Fields::of(state);
    let parts = ev.key.as_deref().map(KeyParts::of);
    Brief {
        state_id: state_id(&fields, parts.as_ref()),
        result: match fields.result {
            None | Some(ValueRef::Nil) => Some(None),
            Some(ValueRef::Boolean(b)) => Some(Some(*b)),
            Some(_) => None,
        },
        changed: fields.changes.is_some_and(non_empty),
    }
}
