//! The event: one JSON object per state result, the seed returner's field names kept, with
//! `timestamp` first (Splunk looks for the time in the first 128 bytes).

use rmpv::ValueRef;
use serde::Serialize;

use crate::extract::StateEvent;
use crate::job::Job;
use crate::json::Json;
use crate::msgpack::get;

/// `event_id`: the XXH3-128 of `jid NUL minion NUL state key` (the function name for an error
/// return), as 32 lowercase hex digits. The same state of the same run always gets the same id,
/// so a receiver can drop the duplicates that at-least-once delivery may send.
pub fn event_id(jid: &str, minion: &str, key: &str) -> String {
    let mut buf = Vec::with_capacity(jid.len() + minion.len() + key.len() + 2);
    for (i, part) in [jid, minion, key].iter().enumerate() {
        if i > 0 {
            buf.push(0);
        }
        buf.extend_from_slice(part.as_bytes());
    }
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&buf))
}

/// A borrowed optional msgpack value that serializes as JSON or `null`.
struct Opt<'v, 'a>(Option<&'v ValueRef<'a>>);

impl Serialize for Opt<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(v) => Json(v).serialize(s),
            None => s.serialize_unit(),
        }
    }
}

#[derive(Serialize)]
struct Wire<'e, 'a> {
    timestamp: Option<String>,
    event_id: String,
    master: &'e str,
    minion_id: &'e str,
    jid: &'e str,
    fun: Option<&'e str>,
    fun_args: &'e serde_json::Value,
    state_name: Option<&'e str>,
    state_id: Option<std::borrow::Cow<'e, str>>,
    name: Opt<'e, 'a>,
    state: Option<&'e str>,
    function: Option<&'e str>,
    sls: Opt<'e, 'a>,
    result: serde_json::Value,
    changed: bool,
    comment: Comment<'e, 'a>,
    changes: Changes<'e, 'a>,
    start_time: Opt<'e, 'a>,
    duration: Opt<'e, 'a>,
    __run_num__: Option<i64>,
    retcode: Opt<'e, 'a>,
    success: Opt<'e, 'a>,
}

enum Comment<'e, 'a> {
    State(Option<&'e ValueRef<'a>>),
    Error(&'e str),
}

impl Serialize for Comment<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Comment::State(v) => Opt(*v).serialize(s),
            Comment::Error(text) => s.serialize_str(text),
        }
    }
}

/// `changes` as Salt wrote it; `{}` for error returns.
struct Changes<'e, 'a>(Option<&'e ValueRef<'a>>);

impl Serialize for Changes<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(v) => Json(v).serialize(s),
            None => serde_json::Map::new().serialize(s),
        }
    }
}

/// Appends one event as a JSON line to `out`.
pub fn write_json(out: &mut Vec<u8>, master: &str, job: &Job, ev: &StateEvent<'_>) {
    // Serializing into a Vec cannot fail: every map key is a string.
    serde_json::to_writer(&mut *out, &wire(master, job, ev)).expect("event serializes");
    out.push(b'\n');
}

/// The event as an ordered JSON map, for the other formats and for truncation.
pub fn to_map(
    master: &str,
    job: &Job,
    ev: &StateEvent<'_>,
) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(wire(master, job, ev)) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => unreachable!("an event is a JSON object"),
    }
}

fn wire<'e, 'a: 'e>(master: &'e str, job: &'e Job, ev: &'e StateEvent<'a>) -> Wire<'e, 'a> {
    let field = |name: &str| ev.state.and_then(|s| get(s, name));
    let key = ev.key.as_deref();
    // The id and name may themselves contain `_|-`: module and function come from the ends,
    // and the id from the key only when it splits cleanly (states older than `__id__`).
    let parts: Vec<&str> = key.map(|k| k.split("_|-").collect()).unwrap_or_default();
    let state_id = match field("__id__").and_then(crate::msgpack::as_text) {
        Some(id) => Some(id),
        None => (parts.len() == 4).then(|| std::borrow::Cow::Borrowed(parts[1])),
    };
    let changes = field("changes");
    Wire {
        timestamp: ev.instant.map(crate::time::rfc3339),
        event_id: event_id(
            &job.jid,
            &ev.minion,
            key.or(ev.fun.as_deref()).unwrap_or(""),
        ),
        master,
        minion_id: &ev.minion,
        jid: &job.jid,
        fun: ev.fun.as_deref(),
        fun_args: job.args_of(ev.fun_index),
        state_name: key,
        state_id,
        name: Opt(field("name")),
        state: parts.first().copied(),
        function: parts.last().copied(),
        sls: Opt(field("__sls__")),
        result: match (ev.state, field("result")) {
            (None, _) => false.into(),
            (Some(_), r) => serde_json::to_value(Opt(r)).unwrap_or_default(),
        },
        changed: changes.is_some_and(non_empty),
        comment: match &ev.error {
            Some(text) => Comment::Error(text),
            None => Comment::State(field("comment")),
        },
        changes: Changes(changes),
        start_time: Opt(field("start_time")),
        duration: Opt(field("duration")),
        __run_num__: ev.run_num,
        retcode: Opt(ev.retcode),
        success: Opt(ev.success),
    }
}

fn non_empty(v: &ValueRef<'_>) -> bool {
    match v {
        ValueRef::Nil => false,
        ValueRef::Map(m) => !m.is_empty(),
        ValueRef::Array(a) => !a.is_empty(),
        ValueRef::String(s) => !s.as_bytes().is_empty(),
        ValueRef::Binary(b) => !b.is_empty(),
        ValueRef::Boolean(b) => *b,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_stable_and_distinct() {
        let a = event_id("20261123185750440911", "web1", "cmd_|-a_|-echo_|-run");
        assert_eq!(
            a,
            event_id("20261123185750440911", "web1", "cmd_|-a_|-echo_|-run")
        );
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            event_id("20261123185750440911", "web2", "cmd_|-a_|-echo_|-run")
        );
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(event_id("j", "ab", "c"), event_id("j", "a", "bc"));
    }
}
