//! The event: one JSON object per state result, the seed returner's field names kept, with
//! `timestamp` first (Splunk looks for the time in the first 128 bytes).

mod brief;
mod ecs;

use rmpv::ValueRef;
use serde::Serialize;

pub(crate) use brief::EventParts;

use crate::extract::StateEvent;
use crate::job::Job;
use crate::json::{write_str, write_value, Json};

pub(crate) mod job;

/// A value of `--events`: which kinds of events are shipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EventKind {
    /// Each state result (the default)
    State,
    /// One per job and master: who ran what on which target, which minions returned
    Job,
    /// One per targeted minion that never returned
    NoReturn,
    /// All of them
    All,
}

/// The kinds of events a run ships, from `--events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kinds {
    pub(crate) state: bool,
    pub(crate) job: bool,
    pub(crate) no_return: bool,
}

impl Kinds {
    pub(crate) fn of(list: &[EventKind]) -> Kinds {
        let has = |k| list.contains(&k) || list.contains(&EventKind::All);
        Kinds {
            state: has(EventKind::State),
            job: has(EventKind::Job),
            no_return: has(EventKind::NoReturn),
        }
    }

    /// Whether a job's own events (job, no_return) are shipped.
    pub(crate) fn jobs(&self) -> bool {
        self.job || self.no_return
    }
}

/// `event_id`: the XXH3-128 of `jid NUL minion NUL state key` (the function name for an error
/// return), as 32 lowercase hex digits. The same state of the same run always gets the same id,
/// so a receiver can drop the duplicates that at-least-once delivery may send.
#[cfg(test)]
pub(crate) fn event_id(jid: &str, minion: &str, key: &str) -> String {
    EventId::new(jid, minion, key).as_str().to_owned()
}

/// An event id on the stack: it is made for every event.
#[derive(Clone, Copy)]
pub(crate) struct EventId([u8; 32]);

impl EventId {
    pub(crate) fn new(jid: &str, minion: &str, key: &str) -> EventId {
        // One-shot hashing of the joined bytes: a streaming hasher's setup cost more than
        // hashing these few dozen bytes.
        let parts = [
            jid.as_bytes(),
            b"\0",
            minion.as_bytes(),
            b"\0",
            key.as_bytes(),
        ];
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut stack = [0u8; 256];
        let mut heap = Vec::new();
        let joined: &mut [u8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap
        };
        let mut at = 0;
        for p in parts {
            joined[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        let hash = xxhash_rust::xxh3::xxh3_128(joined);
        let mut hex = [0u8; 32];
        for (i, b) in hash.to_be_bytes().into_iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        EventId(hex)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits")
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

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
    timestamp: Option<crate::time::Rfc3339>,
    event_id: EventId,
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
    result: Res<'e, 'a>,
    changed: bool,
    comment: Comment<'e, 'a>,
    changes: Changes<'e, 'a>,
    start_time: Opt<'e, 'a>,
    duration: Opt<'e, 'a>,
    __run_num__: Option<i64>,
    retcode: Opt<'e, 'a>,
    success: Opt<'e, 'a>,
    /// Only when true: a value was altered (bytes that are not UTF-8 became U+FFFD).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    lossy_utf8: bool,
    event_type: &'static str,
}

/// `result`: the state's own, or `false` for an error return.
enum Res<'e, 'a> {
    State(Option<&'e ValueRef<'a>>),
    Error,
}

impl Serialize for Res<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Res::State(v) => Opt(*v).serialize(s),
            Res::Error => s.serialize_bool(false),
        }
    }
}

impl Wire<'_, '_> {
    /// Writes the same bytes as serde_json writes for the derived `Serialize` (a test holds
    /// the two together), without serde's per-field overhead: this runs for every event.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":");
        opt_str(out, self.timestamp.as_ref().map(|t| t.as_str()));
        out.extend_from_slice(b",\"event_id\":");
        write_str(out, self.event_id.as_str());
        out.extend_from_slice(b",\"master\":");
        write_str(out, self.master);
        out.extend_from_slice(b",\"minion_id\":");
        write_str(out, self.minion_id);
        self.write_salt_fields(out, b",", b",\"duration\":", b",\"__run_num__\":");
        if self.lossy_utf8 {
            out.extend_from_slice(b",\"lossy_utf8\":true");
        }
        out.extend_from_slice(b",\"event_type\":\"state\"}");
    }
}

impl Wire<'_, '_> {
    /// `jid` to `success`: the fields the `json` event and the `salt` object of the `ecs` one
    /// write alike but for the names of the duration and the run number (each key is the comma,
    /// the quoted name and the colon). `open` goes first: what ends the fields before them.
    fn write_salt_fields(&self, out: &mut Vec<u8>, open: &[u8], duration: &[u8], run_num: &[u8]) {
        out.extend_from_slice(open);
        out.extend_from_slice(b"\"jid\":");
        write_str(out, self.jid);
        out.extend_from_slice(b",\"fun\":");
        opt_str(out, self.fun);
        out.extend_from_slice(b",\"fun_args\":");
        serde_json::to_writer(&mut *out, self.fun_args).expect("a JSON value serializes");
        out.extend_from_slice(b",\"state_name\":");
        opt_str(out, self.state_name);
        out.extend_from_slice(b",\"state_id\":");
        opt_str(out, self.state_id.as_deref());
        out.extend_from_slice(b",\"name\":");
        opt(out, self.name.0);
        out.extend_from_slice(b",\"state\":");
        opt_str(out, self.state);
        out.extend_from_slice(b",\"function\":");
        opt_str(out, self.function);
        out.extend_from_slice(b",\"sls\":");
        opt(out, self.sls.0);
        out.extend_from_slice(b",\"result\":");
        match self.result {
            Res::State(v) => opt(out, v),
            Res::Error => out.extend_from_slice(b"false"),
        }
        out.extend_from_slice(if self.changed {
            b",\"changed\":true,\"comment\":"
        } else {
            b",\"changed\":false,\"comment\":"
        });
        match self.comment {
            Comment::State(v) => opt(out, v),
            Comment::Error(text) => write_str(out, text),
        }
        out.extend_from_slice(b",\"changes\":");
        match self.changes.0 {
            Some(v) => write_value(out, v),
            None => out.extend_from_slice(b"{}"),
        }
        out.extend_from_slice(b",\"start_time\":");
        opt(out, self.start_time.0);
        out.extend_from_slice(duration);
        opt(out, self.duration.0);
        out.extend_from_slice(run_num);
        match self.__run_num__ {
            Some(n) => serde_json::to_writer(&mut *out, &n).expect("an integer serializes"),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"retcode\":");
        opt(out, self.retcode.0);
        out.extend_from_slice(b",\"success\":");
        opt(out, self.success.0);
    }
}

fn opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(text) => write_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt(out: &mut Vec<u8>, v: Option<&ValueRef<'_>>) {
    match v {
        Some(v) => write_value(out, v),
        None => out.extend_from_slice(b"null"),
    }
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
#[cfg(test)]
pub(crate) fn write_json(out: &mut Vec<u8>, master: &str, job: &Job, ev: &StateEvent<'_>) {
    wire(master, job, ev).write(out);
    out.push(b'\n');
}

/// The event's `event_id`: of its state key, or its function for an error return. The
/// functions of a multi-function job (`[state.sls, state.apply]`) can return the same state
/// key: their index tells those results apart (a receiver deduplicating on the id would keep
/// one of them), after a NUL, which no state key holds. A single-function job's ids stay those
/// of its key alone.
pub(crate) fn id_of(job: &Job, ev: &StateEvent<'_>) -> EventId {
    let key = ev.key.as_deref().or(ev.fun.as_deref()).unwrap_or("");
    if job.funs.len() > 1 {
        return EventId::new(&job.jid, &ev.minion, &format!("{key}\0{}", ev.fun_index));
    }
    EventId::new(&job.jid, &ev.minion, key)
}

/// `__id__`, else the id from the state key when it splits cleanly (states older than
/// `__id__`).
fn state_id<'e>(
    fields: &Fields<'e, '_>,
    parts: Option<&KeyParts<'e>>,
) -> Option<std::borrow::Cow<'e, str>> {
    match fields.id.and_then(crate::msgpack::as_text) {
        Some(id) => Some(id),
        None => parts.and_then(|p| p.id).map(std::borrow::Cow::Borrowed),
    }
}

fn wire<'e, 'a: 'e>(master: &'e str, job: &'e Job, ev: &'e StateEvent<'a>) -> Wire<'e, 'a> {
    let fields = ev.state.map(Fields::of).unwrap_or_default();
    let key = ev.key.as_deref();
    // The id and name may themselves contain `_|-`: module and function come from the ends,
    // and the id from the key only when it splits cleanly (states older than `__id__`).
    let parts = key.map(KeyParts::of);
    let state_id = state_id(&fields, parts.as_ref());
    let changes = fields.changes;
    Wire {
        timestamp: ev.instant.map(crate::time::Rfc3339::new),
        event_id: id_of(job, ev),
        master,
        minion_id: &ev.minion,
        jid: &job.jid,
        fun: ev.fun.as_deref(),
        fun_args: job.args_of(ev.fun_index),
        state_name: key,
        state_id,
        name: Opt(fields.name),
        state: parts.map(|p| p.first),
        function: parts.map(|p| p.last),
        sls: Opt(fields.sls),
        result: match ev.state {
            None => Res::Error,
            Some(_) => Res::State(fields.result),
        },
        changed: changes.is_some_and(non_empty),
        comment: match &ev.error {
            Some(text) => Comment::Error(text),
            None => Comment::State(fields.comment),
        },
        changes: Changes(changes),
        start_time: Opt(fields.start_time),
        duration: Opt(fields.duration),
        __run_num__: ev.run_num,
        retcode: Opt(ev.retcode),
        success: Opt(ev.success),
        lossy_utf8: ev.lossy,
        event_type: "state",
    }
}

/// `module_|-id_|-name_|-function` split at every `_|-`, in one pass over the bytes.
/// The fields of a state's result map that an event shows: found in one pass over the map,
/// each the first entry with its key (as [`crate::msgpack::get`] finds it), str or bin.
#[derive(Default)]
struct Fields<'v, 'a> {
    id: Option<&'v ValueRef<'a>>,
    name: Option<&'v ValueRef<'a>>,
    sls: Option<&'v ValueRef<'a>>,
    result: Option<&'v ValueRef<'a>>,
    comment: Option<&'v ValueRef<'a>>,
    changes: Option<&'v ValueRef<'a>>,
    start_time: Option<&'v ValueRef<'a>>,
    duration: Option<&'v ValueRef<'a>>,
}

impl<'v, 'a> Fields<'v, 'a> {
    fn of(state: &'v ValueRef<'a>) -> Fields<'v, 'a> {
        let mut f = Fields::default();
        let ValueRef::Map(entries) = state else {
            return f;
        };
        for (k, v) in entries {
            let slot = match crate::msgpack::as_bytes(k) {
                Some(b"__id__") => &mut f.id,
                Some(b"name") => &mut f.name,
                Some(b"__sls__") => &mut f.sls,
                Some(b"result") => &mut f.result,
                Some(b"comment") => &mut f.comment,
                Some(b"changes") => &mut f.changes,
                Some(b"start_time") => &mut f.start_time,
                Some(b"duration") => &mut f.duration,
                _ => continue,
            };
            slot.get_or_insert(v);
        }
        f
    }
}

/// What an event takes from a state key split at `_|-`: the module (first part), the function
/// (last part), and the id (second part) when there are exactly four parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyParts<'k> {
    first: &'k str,
    last: &'k str,
    id: Option<&'k str>,
}

impl<'k> KeyParts<'k> {
    fn of(key: &'k str) -> KeyParts<'k> {
        // `_|-` cannot overlap itself, so every `|` between `_` and `-` starts a separator.
        let b = key.as_bytes();
        let mut seps = (1..b.len().saturating_sub(1))
            .filter(|&i| b[i] == b'|' && b[i - 1] == b'_' && b[i + 1] == b'-')
            .map(|i| i - 1);
        let Some(first_end) = seps.next() else {
            return KeyParts {
                first: key,
                last: key,
                id: None,
            };
        };
        let (mut count, mut last) = (1, first_end);
        let mut id = None;
        for at in seps {
            count += 1;
            if count == 2 {
                id = Some(&key[first_end + 3..at]);
            }
            last = at;
        }
        KeyParts {
            first: &key[..first_end],
            last: &key[last + 3..],
            id: id.filter(|_| count == 3),
        }
    }
}

/// Whether a value (`changes`) holds anything.
pub(crate) fn non_empty(v: &ValueRef<'_>) -> bool {
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

    /// Calls `f` with each state event of testdata/jobs.
    pub(super) fn each_fixture_event(mut f: impl FnMut(&Job, StateEvent<'_>)) {
        let fixture = crate::cache::scan(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/jobs")),
            |_| {},
            |_, _| true,
        )
        .0;
        for dir in fixture {
            let Ok(Some(jid)) = dir.read_jid(u64::MAX) else {
                continue;
            };
            let load_buf = std::fs::read(dir.load_path()).unwrap_or_default();
            let load = crate::msgpack::decode(&load_buf).ok();
            let job = Job::from_load(
                jid.clone(),
                load.as_ref(),
                crate::job::Masking {
                    show_pillar: false,
                    extra: &[],
                },
                crate::time::jid_instant(&jid, crate::time::JidZone::Utc),
            );
            for minion in &dir.minions {
                let Ok(bytes) = std::fs::read(dir.return_path(minion)) else {
                    continue;
                };
                let value = crate::msgpack::decode(&bytes).expect("fixture decodes");
                for ev in crate::extract::extract(&job, minion, &value) {
                    f(&job, ev);
                }
            }
        }
    }

    /// The hand-written writer and the derived Serialize (used for the other formats) give
    /// the same bytes, for a state result and for an error return.
    #[test]
    fn hand_written_json_matches_the_derived_serialize() {
        let mut compared = 0;
        each_fixture_event(|job, ev| {
            let mut ours = Vec::new();
            write_json(&mut ours, "m", job, &ev);
            let mut theirs = serde_json::to_vec(&wire("m", job, &ev)).expect("serde");
            theirs.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
            compared += 1;
        });
        assert!(compared > 100, "{compared}");
    }

    /// The split the event used to make: every part, for [`KeyParts`] to agree with.
    fn split_key(key: &str) -> Vec<&str> {
        let bytes = key.as_bytes();
        let mut parts = Vec::new();
        let (mut start, mut i) = (0, 0);
        while i + 3 <= bytes.len() {
            if &bytes[i..i + 3] == b"_|-" {
                parts.push(&key[start..i]);
                i += 3;
                start = i;
            } else {
                i += 1;
            }
        }
        parts.push(&key[start..]);
        parts
    }

    #[test]
    fn key_parts_are_the_ends_and_the_id_of_a_clean_split() {
        for key in [
            "file_|-a_|-b_|-managed",
            "file_|-a_|-b_|-c_|-managed",
            "cmd_|-a_|-echo_|-run",
            "no separator",
            "x_|-",
            "_|-",
            "_|-_|-_|-",
            "_|-_|-_|-_|-",
            "a_|-b",
            "a_|-b_|-c",
            "a_|_|-b_|-_|--c_|-d",
            "",
            "é_|-日本_|-🎉_|-ü",
        ] {
            let parts = split_key(key);
            assert_eq!(
                KeyParts::of(key),
                KeyParts {
                    first: parts[0],
                    last: parts[parts.len() - 1],
                    id: (parts.len() == 4).then(|| parts[1]),
                },
                "{key:?}"
            );
        }
    }

    /// One pass finds what a lookup per field found, the first of repeated keys included.
    #[test]
    fn fields_are_the_first_of_each_key() {
        let v = rmpv::Value::Map(vec![
            (rmpv::Value::from("name"), rmpv::Value::from("first")),
            (rmpv::Value::from("other"), rmpv::Value::from(1)),
            (
                rmpv::Value::Binary(b"result".to_vec()),
                rmpv::Value::from(true),
            ),
            (rmpv::Value::from("name"), rmpv::Value::from("second")),
            (rmpv::Value::from(7), rmpv::Value::from("not a key")),
            (rmpv::Value::from("duration"), rmpv::Value::from(1.5)),
        ]);
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &v).expect("encode");
        let state = crate::msgpack::decode(&buf).expect("decode");
        let f = Fields::of(&state);
        for (got, name) in [
            (f.id, "__id__"),
            (f.name, "name"),
            (f.sls, "__sls__"),
            (f.result, "result"),
            (f.comment, "comment"),
            (f.changes, "changes"),
            (f.start_time, "start_time"),
            (f.duration, "duration"),
        ] {
            assert_eq!(got, crate::msgpack::get(&state, name), "{name}");
        }
        assert_eq!(
            f.name.and_then(crate::msgpack::as_text).as_deref(),
            Some("first")
        );
    }

    #[test]
    fn event_ids_are_stable_and_distinct() {
        let a = event_id("20261123185750440911", "web1", "cmd_|-a_|-echo_|-run");
        assert_eq!(
            a,
            event_id("20261123185750440911", "web1", "cmd_|-a_|-echo_|-run")
        );
        assert_eq!(a.len(), 32);
        assert_eq!(
            a,
            format!(
                "{:032x}",
                xxhash_rust::xxh3::xxh3_128(b"20261123185750440911\0web1\0cmd_|-a_|-echo_|-run")
            )
        );
        assert_ne!(
            a,
            event_id("20261123185750440911", "web2", "cmd_|-a_|-echo_|-run")
        );
        // A key too long for the stack buffer hashes the same way.
        let long = "file_|-x_|-".to_owned() + &"y".repeat(300) + "_|-managed";
        assert_eq!(
            event_id("1", "web1", &long),
            format!(
                "{:032x}",
                xxhash_rust::xxh3::xxh3_128(format!("1\0web1\0{long}").as_bytes())
            )
        );
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(event_id("j", "ab", "c"), event_id("j", "a", "bc"));
    }
}
