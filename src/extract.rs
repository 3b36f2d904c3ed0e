//! Pure: one job and one minion's return in, the state results it holds out.
//!
//! State results are recognised by shape (`module_|-id_|-name_|-function` keys mapping to maps
//! with `result`) in any `state.*` job, one level down in salt-ssh's returns (the remote
//! salt-call's whole return load, `{jid, return, retcode, id, fun, ...}`), and inside orchestrate
//! runner returns (`return.return.data.<master id>`, or `return.return.<master id>` for
//! `orchestrate_single` and `orchestrate_high`). A state run whose return is a list or a string
//! (render error, missing sls, already running) gives exactly one failure event, and so does a
//! salt-ssh run that failed before any state ran (`{stdout, stderr, retcode, _error}`).

use std::borrow::Cow;

use rmpv::ValueRef;

use crate::job::Job;
use crate::msgpack::{as_text, get};
use crate::time::{time_of_day, MinionClock};

/// State functions whose list or string return is an error worth one failure event.
const STATE_RUNS: &[&str] = &[
    "state.apply",
    "state.sls",
    "state.highstate",
    "state.sls_id",
    "state.single",
    "state.top",
    "state.template",
    "state.template_str",
    "state.high",
    "state.low",
    "state.pkg",
    "state.run_request",
];

/// How much of a failed salt-ssh run's stderr (or stdout) an error event keeps: its end.
const OUTPUT_TAIL: usize = 2048;

/// Runner functions that run an orchestration (`salt-run state.orchestrate ...`).
const ORCHESTRATE_RUNS: &[&str] = &[
    "runner.state.orchestrate",
    "runner.state.orch",
    "runner.state.sls",
    "runner.state.orchestrate_single",
    "runner.state.orchestrate_high",
];

/// One state result (or one error return), borrowing from the decoded `return.p`.
#[derive(Debug)]
pub(crate) struct StateEvent<'a> {
    /// The minion, or for orchestrations the master's id as Salt reports it.
    pub(crate) minion: Cow<'a, str>,
    /// The function run (`None` when the job's `.load.p` is missing).
    pub(crate) fun: Option<Cow<'a, str>>,
    /// Index of `fun` in a multi-function job, to find its arguments.
    pub(crate) fun_index: usize,
    /// The state key `module_|-id_|-name_|-function`; `None` for an error return.
    pub(crate) key: Option<Cow<'a, str>>,
    /// The state's own result map; `None` for an error return.
    pub(crate) state: Option<&'a ValueRef<'a>>,
    /// The messages of an error return, one per line.
    pub(crate) error: Option<String>,
    pub(crate) run_num: Option<i64>,
    /// When the state started (or the job was published), microseconds since the epoch.
    pub(crate) instant: Option<i64>,
    pub(crate) retcode: Option<&'a ValueRef<'a>>,
    pub(crate) success: Option<&'a ValueRef<'a>>,
    /// A value held bytes that are not UTF-8, shipped as U+FFFD.
    pub(crate) lossy: bool,
}

impl StateEvent<'_> {
    /// `result` is false: a failed state or an error return (`null` under test=True is not).
    pub(crate) fn failed(&self) -> bool {
        match self.state {
            Some(st) => matches!(get(st, "result"), Some(ValueRef::Boolean(false))),
            None => true,
        }
    }
}

/// Every state result in `ret` (a whole `return.p`) for `minion` of `job`, in run order,
/// each state looked through for bytes that are not UTF-8 (for tests; a run passes on what
/// its decoder noted, [`extract_noting`]).
#[cfg(test)]
pub(crate) fn extract<'a>(
    job: &'a Job,
    minion: &'a str,
    ret: &'a ValueRef<'a>,
) -> Vec<StateEvent<'a>> {
    extract_noting(job, minion, ret, true)
}

/// Every state result in `ret` (a whole `return.p`) for `minion` of `job`, in run order.
/// `maybe_lossy`: its decoding met a string that is not UTF-8
/// ([`crate::msgpack::decode_noting`]); when it did not, no state is walked to look for one.
pub(crate) fn extract_noting<'a>(
    job: &'a Job,
    minion: &'a str,
    ret: &'a ValueRef<'a>,
    maybe_lossy: bool,
) -> Vec<StateEvent<'a>> {
    let mut out = events(job, minion, ret);
    if maybe_lossy {
        for ev in &mut out {
            if let Some(state) = ev.state {
                ev.lossy = crate::json::lossy(state);
            }
        }
    }
    out
}

fn events<'a>(job: &'a Job, minion: &'a str, ret: &'a ValueRef<'a>) -> Vec<StateEvent<'a>> {
    // Since 2018.3 return.p is {return, retcode, success}; before, the bare return.
    let (inner, retcode, success) = match get(ret, "return") {
        Some(inner) => (inner, get(ret, "retcode"), get(ret, "success")),
        None => (ret, None, None),
    };
    let mut out = Vec::new();
    if job.funs.is_empty() {
        // No .load.p: an orchestration still names itself inside; anything else counts
        // only if every entry is a state result.
        if runner_fun(inner).is_some_and(|f| ORCHESTRATE_RUNS.contains(&f.as_ref())) {
            orchestration(job, inner, success, &mut out);
        } else if is_state_map(inner) {
            let ctx = Ctx {
                job,
                minion: Cow::Borrowed(minion),
                fun: None,
                fun_index: 0,
                retcode,
                success,
            };
            states(&ctx, inner, &mut out);
        }
        return out;
    }
    for (i, fun) in job.funs.iter().enumerate() {
        let multi = job.funs.len() > 1;
        // Multi-function jobs return (and give retcode/success as) a map keyed by function.
        let pick = |v: Option<&'a ValueRef<'a>>| {
            if multi {
                v.and_then(|m| get(m, fun))
            } else {
                v
            }
        };
        let Some(value) = pick(Some(inner)) else {
            continue;
        };
        let ctx = Ctx {
            job,
            minion: Cow::Borrowed(minion),
            fun: Some(Cow::Borrowed(fun.as_str())),
            fun_index: i,
            retcode: pick(retcode),
            success: pick(success),
        };
        if ORCHESTRATE_RUNS.contains(&fun.as_str()) {
            orchestration(job, value, success, &mut out);
        } else if fun.starts_with("state.") {
            state_return(&ctx, value, &mut out);
        }
    }
    out
}

/// One state function's return: a state map, an error list or string, salt-ssh's wrapped
/// return load, or salt-ssh's report of a run that failed before any state ran.
fn state_return<'a>(ctx: &Ctx<'a>, value: &'a ValueRef<'a>, out: &mut Vec<StateEvent<'a>>) {
    let run = ctx.fun.as_deref().is_some_and(|f| STATE_RUNS.contains(&f));
    match value {
        ValueRef::Map(entries) if !entries.iter().any(|(k, v)| is_state(k, v)) => {
            if let Some(inner) = wrapped_return(value) {
                // salt-ssh: the job's jid, host and function stay; the retcode is the run's own.
                let ctx = Ctx {
                    retcode: get(value, "retcode"),
                    ..ctx.clone()
                };
                state_return(&ctx, inner, out);
            } else if let Some(text) = failed_run(value).filter(|_| run) {
                let ctx = Ctx {
                    retcode: get(value, "retcode"),
                    ..ctx.clone()
                };
                out.push(ctx.error_text(text));
            }
        }
        ValueRef::Map(_) => states(ctx, value, out),
        ValueRef::Array(_) | ValueRef::String(_) | ValueRef::Binary(_) if run => {
            out.push(ctx.error_event(value))
        }
        _ => {}
    }
}

/// A whole return load where a return should be (salt-ssh keeps the remote salt-call's:
/// `{jid, return, retcode, id, fun, fun_args, out}`): its `return`.
fn wrapped_return<'a>(value: &'a ValueRef<'a>) -> Option<&'a ValueRef<'a>> {
    let load = get(value, "fun").and_then(as_text).is_some() && get(value, "jid").is_some();
    load.then(|| get(value, "return")).flatten()
}

/// A run that failed before any state ran (salt-ssh: the shim could not start, the host was
/// unreachable): `_error`, then the end of stderr (or of stdout when stderr is empty).
fn failed_run(value: &ValueRef<'_>) -> Option<String> {
    let mut text = get(value, "_error").and_then(as_text)?.into_owned();
    let output = ["stderr", "stdout"]
        .iter()
        .filter_map(|k| get(value, k).and_then(as_text))
        .find(|t| !t.trim().is_empty());
    if let Some(output) = output {
        let output = output.trim_end();
        let mut start = output.len().saturating_sub(OUTPUT_TAIL);
        while !output.is_char_boundary(start) {
            start += 1;
        }
        text.push('\n');
        if start > 0 {
            text.push_str("...");
        }
        text.push_str(&output[start..]);
    }
    Some(text)
}

/// What every event of one return shares.
#[derive(Clone)]
struct Ctx<'a> {
    job: &'a Job,
    minion: Cow<'a, str>,
    fun: Option<Cow<'a, str>>,
    fun_index: usize,
    retcode: Option<&'a ValueRef<'a>>,
    success: Option<&'a ValueRef<'a>>,
}

impl<'a> Ctx<'a> {
    fn event(
        &self,
        key: Option<Cow<'a, str>>,
        state: Option<&'a ValueRef<'a>>,
        run_num: Option<i64>,
    ) -> StateEvent<'a> {
        StateEvent {
            minion: self.minion.clone(),
            fun: self.fun.clone(),
            fun_index: self.fun_index,
            key,
            state,
            error: None,
            run_num,
            instant: self.job.publish,
            retcode: self.retcode,
            success: self.success,
            // Set by `extract_noting` when the return may hold such a value.
            lossy: false,
        }
    }

    fn error_event(&self, value: &'a ValueRef<'a>) -> StateEvent<'a> {
        let messages: Vec<String> = match value {
            ValueRef::Array(items) => items.iter().map(message).collect(),
            other => vec![message(other)],
        };
        StateEvent {
            lossy: crate::json::lossy(value),
            ..self.error_text(messages.join("\n"))
        }
    }

    fn error_text(&self, text: String) -> StateEvent<'a> {
        StateEvent {
            error: Some(text),
            ..self.event(None, None, None)
        }
    }
}

fn message(v: &ValueRef<'_>) -> String {
    match as_text(v) {
        Some(t) => t.into_owned(),
        None => serde_json::to_string(&crate::json::Json(v)).unwrap_or_default(),
    }
}

/// The state results of one map, ordered by `__run_num__`, with absolute start times.
fn states<'a>(ctx: &Ctx<'a>, map: &'a ValueRef<'a>, out: &mut Vec<StateEvent<'a>>) {
    let ValueRef::Map(entries) = map else { return };
    let first = out.len();
    // Nearly every entry is a state: growing the list an event at a time copied it a dozen
    // times a return (5% of a dry run's instructions).
    out.reserve(entries.len());
    for (key, state) in entries {
        if !is_state(key, state) {
            continue;
        }
        let run_num = get(state, "__run_num__").and_then(|n| match n {
            ValueRef::Integer(i) => i.as_i64(),
            _ => None,
        });
        out.push(ctx.event(as_text(key), Some(state), run_num));
    }
    let batch = &mut out[first..];
    batch.sort_by_key(|e| (e.run_num.is_none(), e.run_num));
    if let Some(publish) = ctx.job.publish {
        let start = |e: &StateEvent<'_>| {
            e.state
                .and_then(|s| get(s, "start_time"))
                .and_then(as_text)
                .and_then(|t| time_of_day(&t))
        };
        if let Some(first_start) = batch.iter().find_map(start) {
            let clock = MinionClock::new(publish, first_start);
            for e in batch.iter_mut() {
                e.instant = Some(start(e).map_or(publish, |t| clock.instant(t)));
            }
        }
    }
}

/// An orchestration's own steps: `return.data` (orchestrate) or `return` itself
/// (orchestrate_single, orchestrate_high) maps the master's id to a state map or an error.
fn orchestration<'a>(
    job: &'a Job,
    value: &'a ValueRef<'a>,
    success: Option<&'a ValueRef<'a>>,
    out: &mut Vec<StateEvent<'a>>,
) {
    // Runner returns nest once more: {fun, fun_args, jid, return: {data, outputter, retcode}, success}.
    let (body, success) = match runner_fun(value) {
        Some(_) => (
            get(value, "return").unwrap_or(value),
            get(value, "success").or(success),
        ),
        None => (value, success),
    };
    let fun = runner_fun(value).or_else(|| job.funs.first().map(|f| Cow::Borrowed(f.as_str())));
    let retcode = get(body, "retcode");
    // Without `data`, only maps and lists are a master's results (not `outputter` or `retcode`).
    let (data, bare) = match (get(body, "data"), body) {
        (Some(ValueRef::Map(data)), _) => (&data[..], false),
        (None, ValueRef::Map(data)) => (&data[..], true),
        _ => (&[][..], false),
    };
    if data.is_empty() {
        // An orchestration that failed before running returns its error in place of `data`.
        if let ValueRef::Array(_) | ValueRef::String(_) = body {
            let ctx = Ctx {
                job,
                minion: Cow::Borrowed(""),
                fun,
                fun_index: 0,
                retcode,
                success,
            };
            out.push(ctx.error_event(body));
        }
        return;
    }
    for (master, result) in data {
        let ctx = Ctx {
            job,
            minion: as_text(master).unwrap_or_default(),
            fun: fun.clone(),
            fun_index: 0,
            retcode,
            success,
        };
        match result {
            ValueRef::Map(_) => states(&ctx, result, out),
            ValueRef::Array(_) => out.push(ctx.error_event(result)),
            ValueRef::String(_) if !bare => out.push(ctx.error_event(result)),
            _ => {}
        }
    }
}

fn runner_fun<'a>(value: &'a ValueRef<'a>) -> Option<Cow<'a, str>> {
    get(value, "fun")
        .and_then(as_text)
        .filter(|f| f.starts_with("runner."))
}

/// `module_|-id_|-name_|-function` mapping to a map with `result`.
fn is_state(key: &ValueRef<'_>, state: &ValueRef<'_>) -> bool {
    let key_ok = crate::msgpack::as_bytes(key)
        .is_some_and(|k| k.windows(3).filter(|w| w == b"_|-").nth(2).is_some());
    key_ok && matches!(state, ValueRef::Map(_)) && get(state, "result").is_some()
}

fn is_state_map(v: &ValueRef<'_>) -> bool {
    matches!(v, ValueRef::Map(entries) if !entries.is_empty() && entries.iter().all(|(k, s)| is_state(k, s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn pack(v: &Value) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).expect("encode");
        buf
    }

    fn map(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    fn state(result: Value, run: i64, start: &str) -> Value {
        map(vec![
            ("result", result),
            ("__run_num__", Value::from(run)),
            ("start_time", Value::from(start)),
            ("comment", Value::from("ok")),
            ("changes", map(vec![])),
        ])
    }

    fn job(fun: &str) -> Job {
        Job {
            jid: "20261123185750440911".into(),
            funs: vec![fun.into()],
            publish: crate::time::jid_instant("20261123185750440911", crate::time::JidZone::Utc),
            ..Job::default()
        }
    }

    fn keys(events: &[StateEvent<'_>]) -> Vec<String> {
        events
            .iter()
            .map(|e| e.key.as_deref().unwrap_or("<error>").to_owned())
            .collect()
    }

    #[test]
    fn states_come_out_in_run_order_with_absolute_times() {
        let ret = map(vec![
            (
                "return",
                map(vec![
                    (
                        "file_|-b_|-/b_|-managed",
                        state(Value::from(false), 1, "18:57:53"),
                    ),
                    (
                        "cmd_|-a_|-echo_|-run",
                        state(Value::from(true), 0, "18:57:51.5"),
                    ),
                    ("not a state", Value::from("x")),
                ]),
            ),
            ("retcode", Value::from(2)),
        ]);
        let buf = pack(&ret);
        let value = crate::msgpack::decode(&buf).expect("decode");
        let job = job("state.apply");
        let events = extract(&job, "web1", &value);
        assert_eq!(
            keys(&events),
            ["cmd_|-a_|-echo_|-run", "file_|-b_|-/b_|-managed"]
        );
        assert_eq!(
            events[0].instant.map(crate::time::rfc3339).as_deref(),
            Some("2026-11-23T18:57:51.500000Z")
        );
        assert!(events[1].failed() && !events[0].failed());
    }

    #[test]
    fn error_returns_give_one_failure_event_and_non_state_jobs_nothing() {
        let errors = Value::Array(vec![
            Value::from("Rendering SLS 'base:bad' failed"),
            Value::from("line 2"),
        ]);
        let buf = pack(&map(vec![("return", errors), ("retcode", Value::from(1))]));
        let value = crate::msgpack::decode(&buf).expect("decode");
        let job_sls = job("state.sls");
        let events = extract(&job_sls, "web1", &value);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].error.as_deref(),
            Some("Rendering SLS 'base:bad' failed\nline 2")
        );
        assert!(events[0].failed());
        // The same list from a non-state function, or from state.show_sls, is not a run.
        assert!(extract(&job("cmd.run"), "web1", &value).is_empty());
        assert!(extract(&job("state.show_lowstate"), "web1", &value).is_empty());
    }

    #[test]
    fn salt_ssh_returns_are_read_one_level_down() {
        // return.p = {return: <the remote salt-call's return load>}, no retcode beside it.
        let load = map(vec![
            ("jid", Value::from("20261123185755000000")),
            (
                "return",
                map(vec![
                    (
                        "file_|-b_|-/b_|-managed",
                        state(Value::from(false), 1, "18:57:53"),
                    ),
                    (
                        "cmd_|-a_|-echo_|-run",
                        state(Value::from(true), 0, "18:57:51"),
                    ),
                ]),
            ),
            ("retcode", Value::from(2)),
            ("id", Value::from("ssh1")),
            ("fun", Value::from("state.pkg")),
            ("fun_args", Value::Array(vec![])),
            ("out", Value::from("highstate")),
        ]);
        let buf = pack(&map(vec![("return", load)]));
        let value = crate::msgpack::decode(&buf).expect("decode");
        let job = job("state.apply");
        let events = extract(&job, "ssh1", &value);
        assert_eq!(
            keys(&events),
            ["cmd_|-a_|-echo_|-run", "file_|-b_|-/b_|-managed"]
        );
        assert_eq!(events[0].fun.as_deref(), Some("state.apply"));
        assert_eq!(events[0].minion, "ssh1");
        assert!(matches!(events[0].retcode, Some(ValueRef::Integer(n)) if n.as_u64() == Some(2)));
        // A render error one level down is still one error event.
        let load = map(vec![
            ("jid", Value::from("20261123185755000000")),
            (
                "return",
                Value::Array(vec![Value::from("Rendering SLS failed")]),
            ),
            ("retcode", Value::from(1)),
            ("fun", Value::from("state.pkg")),
        ]);
        let buf = pack(&map(vec![("return", load)]));
        let value = crate::msgpack::decode(&buf).expect("decode");
        let events = extract(&job, "ssh1", &value);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].error.as_deref(), Some("Rendering SLS failed"));
    }

    #[test]
    fn a_run_that_failed_before_any_state_is_one_error_event_with_the_end_of_stderr() {
        let stderr = format!("{}\nERROR: salt path is not a directory", "x".repeat(5000));
        let failed = map(vec![
            ("stdout", Value::from("")),
            ("stderr", Value::from(stderr.as_str())),
            ("retcode", Value::from(73)),
            ("parsed", Value::Nil),
            (
                "_error",
                Value::from("The command resulted in a non-zero exit code"),
            ),
        ]);
        let buf = pack(&map(vec![("return", failed)]));
        let value = crate::msgpack::decode(&buf).expect("decode");
        let apply = job("state.apply");
        let events = extract(&apply, "ssh-shimfail", &value);
        assert_eq!(events.len(), 1);
        let text = events[0].error.as_deref().expect("error text");
        assert!(text.starts_with("The command resulted in a non-zero exit code\n..."));
        assert!(text.ends_with("ERROR: salt path is not a directory"));
        assert!(text.len() < 2200, "{} bytes", text.len());
        assert!(events[0].failed());
        assert!(matches!(events[0].retcode, Some(ValueRef::Integer(n)) if n.as_u64() == Some(73)));
        // The same map from a function that runs no states is nothing.
        assert!(extract(&job("state.show_sls"), "ssh-shimfail", &value).is_empty());
    }

    #[test]
    fn orchestrate_single_results_sit_under_the_master_id_without_data() {
        let runner = map(vec![
            ("fun", Value::from("runner.state.orchestrate_single")),
            ("jid", Value::from("20261123185750440911")),
            (
                "return",
                map(vec![(
                    "testmaster",
                    map(vec![(
                        "test_|-x_|-x_|-succeed_with_changes",
                        state(Value::from(true), 0, "18:57:51"),
                    )]),
                )]),
            ),
            ("success", Value::from(true)),
        ]);
        let buf = pack(&map(vec![("return", runner)]));
        let value = crate::msgpack::decode(&buf).expect("decode");
        let orch = job("runner.state.orchestrate_single");
        let events = extract(&orch, "testmaster", &value);
        assert_eq!(keys(&events), ["test_|-x_|-x_|-succeed_with_changes"]);
        assert_eq!(events[0].minion, "testmaster");
        assert_eq!(
            events[0].fun.as_deref(),
            Some("runner.state.orchestrate_single")
        );
    }

    #[test]
    fn bare_return_of_old_masters_is_read() {
        let buf = pack(&map(vec![(
            "pkg_|-p_|-p_|-installed",
            state(Value::from(true), 0, "10:00:00"),
        )]));
        let value = crate::msgpack::decode(&buf).expect("decode");
        let job = job("state.highstate");
        assert_eq!(extract(&job, "db1", &value).len(), 1);
    }

    #[test]
    fn a_multi_function_jobs_functions_returning_the_same_state_get_distinct_ids() {
        let key = "test_|-t_|-t_|-succeed_without_changes";
        let results = |ok: bool| map(vec![(key, state(Value::from(ok), 0, "18:57:51"))]);
        let buf = pack(&map(vec![
            (
                "return",
                map(vec![
                    ("state.sls", results(false)),
                    ("state.apply", results(true)),
                ]),
            ),
            (
                "retcode",
                map(vec![
                    ("state.sls", Value::from(2)),
                    ("state.apply", Value::from(0)),
                ]),
            ),
        ]));
        let value = crate::msgpack::decode(&buf).expect("decode");
        let multi = Job {
            funs: vec!["state.sls".into(), "state.apply".into()],
            ..job("state.sls")
        };
        let events = extract(&multi, "web1", &value);
        assert_eq!(keys(&events), [key, key]);
        let ids: Vec<String> = events
            .iter()
            .map(|e| crate::event::id_of(&multi, e).as_str().to_owned())
            .collect();
        assert_ne!(ids[0], ids[1], "one result would be dropped as a duplicate");
        // A single-function job's ids are those of its state keys, as they always were.
        let single = job("state.sls");
        let buf = pack(&map(vec![("return", results(true))]));
        let value = crate::msgpack::decode(&buf).expect("decode");
        let events = extract(&single, "web1", &value);
        assert_eq!(
            crate::event::id_of(&single, &events[0]).as_str(),
            crate::event::event_id(&single.jid, "web1", key)
        );
    }
}
