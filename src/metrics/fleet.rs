//! Pure: each minion's latest real state run, and the fleet's state results counted.
//!
//! A return's events are summarised per minion id as Salt reports it (an orchestration's
//! under the master's id); a summary replaces the minion's last run when its jid is as new or
//! newer and the run was not a test run (`test=True`, `state.test`).

use std::collections::{BTreeMap, BTreeSet};

use rmpv::ValueRef;
use serde_json::Value;

use crate::extract::StateEvent;
use crate::job::Job;
use crate::msgpack::{as_text, get};

/// What one state run (one minion's part of one return) came to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RunSummary {
    pub(crate) succeeded: u64,
    /// Failed states; an error return (render error, already running) counts as one.
    pub(crate) failed: u64,
    /// `result: null`: would change (test mode) or not run yet.
    pub(crate) pending: u64,
    pub(crate) changed: u64,
    /// Sum of the states' durations, in seconds.
    pub(crate) duration: f64,
}

impl RunSummary {
    fn add(&mut self, ev: &StateEvent<'_>) {
        let Some(state) = ev.state else {
            self.failed += 1;
            return;
        };
        match get(state, "result") {
            Some(ValueRef::Boolean(true)) => self.succeeded += 1,
            Some(ValueRef::Boolean(false)) => self.failed += 1,
            _ => self.pending += 1,
        }
        if get(state, "changes").is_some_and(crate::event::non_empty) {
            self.changed += 1;
        }
        self.duration += get(state, "duration").map_or(0.0, millis) / 1000.0;
    }

    /// No state failed and it was not an error return.
    pub(crate) fn success(&self) -> bool {
        self.failed == 0
    }
}

/// Salt writes `duration` as float milliseconds (`"5.573 ms"` before 2019.2).
fn millis(v: &ValueRef<'_>) -> f64 {
    match v {
        ValueRef::F64(f) => *f,
        ValueRef::F32(f) => f64::from(*f),
        ValueRef::Integer(i) => i.as_f64().unwrap_or(0.0),
        other => as_text(other)
            .and_then(|t| t.trim_end_matches("ms").trim().parse().ok())
            .unwrap_or(0.0),
    }
}

/// One return's state runs, per minion id, ready to hand to [`Fleet::observe`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observed {
    /// When the job was published, microseconds since the epoch.
    pub(crate) publish: Option<i64>,
    /// Real runs (minion, summary); test runs only count in the fleet's totals.
    pub(crate) runs: Vec<(String, RunSummary)>,
    /// Every state result of the return, test runs included.
    pub(crate) results: RunSummary,
}

/// Summarises the events `extract` found in one return of `job`.
pub(crate) fn observe(job: &Job, events: &[StateEvent<'_>]) -> Observed {
    let mut out = Observed {
        publish: job.publish,
        ..Observed::default()
    };
    for ev in events {
        out.results.add(ev);
        if test_run(job, ev) {
            continue;
        }
        match out.runs.iter_mut().find(|(m, _)| *m == ev.minion) {
            Some((_, run)) => run.add(ev),
            None => {
                let mut run = RunSummary::default();
                run.add(ev);
                out.runs.push((ev.minion.to_string(), run));
            }
        }
    }
    out
}

/// `state.test`, or a state function given `test=True` (as Salt packs keyword arguments, or a
/// raw `test=True` string in `salt-call` loads).
fn test_run(job: &Job, ev: &StateEvent<'_>) -> bool {
    if ev.fun.as_deref() == Some("state.test") {
        return true;
    }
    let truthy = |v: &Value| match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        Value::Number(n) => n.as_i64() != Some(0),
        _ => false,
    };
    let Value::Array(args) = job.args_of(ev.fun_index) else {
        return false;
    };
    args.iter().any(|a| match a {
        Value::Object(kw) => kw.get("test").is_some_and(truthy),
        Value::String(s) => s
            .strip_prefix("test=")
            .is_some_and(|v| truthy(&Value::String(v.to_owned()))),
        _ => false,
    })
}

/// A minion's latest real state run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LastRun {
    pub(crate) jid: String,
    /// The job folder's key: the run drops out when the master cleans the job up.
    pub(crate) key: String,
    /// When the job was published, seconds since the epoch.
    pub(crate) published: Option<f64>,
    pub(crate) summary: RunSummary,
}

/// Every minion's latest real state run, and the state results counted since the start.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fleet {
    pub(crate) minions: BTreeMap<String, LastRun>,
    /// State results read since the process started, test runs included.
    pub(crate) results: RunSummary,
}

impl Fleet {
    /// Takes one return of job `jid` (folder `key`): counts its results, and makes each of
    /// its real runs the minion's last unless that one is newer.
    pub(crate) fn observe(&mut self, key: &str, jid: &str, seen: Observed) {
        self.results.succeeded += seen.results.succeeded;
        self.results.failed += seen.results.failed;
        self.results.pending += seen.results.pending;
        self.results.changed += seen.results.changed;
        self.record(key, jid, seen);
    }

    /// Like [`Fleet::observe`], without counting: for the runs found when rebuilding.
    pub(crate) fn record(&mut self, key: &str, jid: &str, seen: Observed) {
        for (minion, summary) in seen.runs {
            if self
                .minions
                .get(&minion)
                .is_some_and(|last| *last.jid > *jid)
            {
                continue;
            }
            let run = LastRun {
                jid: jid.to_owned(),
                key: key.to_owned(),
                published: seen.publish.map(|t| t as f64 / crate::time::SECOND as f64),
                summary,
            };
            self.minions.insert(minion, run);
        }
    }

    /// Forgets the minions whose last run's job is no longer in the cache (`keys`); returns
    /// how many.
    pub(crate) fn retain(&mut self, keys: &BTreeSet<&str>) -> usize {
        let before = self.minions.len();
        self.minions
            .retain(|_, run| keys.contains(run.key.as_str()));
        before - self.minions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as Mp;
    use serde_json::json;

    fn state(result: Mp, changes: Mp, duration: f64) -> Mp {
        Mp::Map(vec![
            ("result".into(), result),
            ("changes".into(), changes),
            ("duration".into(), Mp::F64(duration)),
        ])
    }

    fn changes() -> Mp {
        Mp::Map(vec![("diff".into(), "new file".into())])
    }

    fn empty() -> Mp {
        Mp::Map(Vec::new())
    }

    /// A `state.sls` job with `args`, and its return for `minion` holding `states`.
    fn run(args: Value, minion: &str, states: &[Mp]) -> Observed {
        let job = Job {
            jid: "20261123202803581019".into(),
            funs: vec!["state.sls".into()],
            args,
            publish: Some(1_700_000_000_000_000),
        };
        let entries = states
            .iter()
            .enumerate()
            .map(|(i, s)| (Mp::from(format!("test_|-s{i}_|-s{i}_|-nop")), s.clone()))
            .collect();
        let ret = Mp::Map(vec![("return".into(), Mp::Map(entries))]);
        let bytes = rmp_bytes(&ret);
        let value = crate::msgpack::decode(&bytes).expect("valid msgpack");
        observe(&job, &crate::extract::extract(&job, minion, &value))
    }

    fn rmp_bytes(v: &Mp) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).expect("encode to a Vec");
        buf
    }

    #[test]
    fn failures_pending_changes_and_durations_are_counted() {
        let seen = run(
            json!(["web"]),
            "web1",
            &[
                state(Mp::Boolean(true), changes(), 1500.0),
                state(Mp::Boolean(false), empty(), 250.0),
                state(Mp::Nil, changes(), 0.5),
                state(Mp::Boolean(true), empty(), 0.0),
            ],
        );
        assert_eq!(seen.runs.len(), 1);
        let (minion, s) = &seen.runs[0];
        assert_eq!(minion, "web1");
        assert_eq!((s.succeeded, s.failed, s.pending, s.changed), (2, 1, 1, 2));
        assert!((s.duration - 1.7505).abs() < 1e-9, "{}", s.duration);
        assert!(!s.success());
        assert_eq!(seen.results, *s);
    }

    #[test]
    fn an_error_return_is_one_failure() {
        let job = Job {
            jid: "20261123202803581019".into(),
            funs: vec!["state.sls".into()],
            args: json!(["broken"]),
            publish: None,
        };
        let ret = Mp::Map(vec![(
            "return".into(),
            Mp::Array(vec!["Rendering SLS 'base:broken' failed".into()]),
        )]);
        let bytes = rmp_bytes(&ret);
        let value = crate::msgpack::decode(&bytes).expect("valid msgpack");
        let seen = observe(&job, &crate::extract::extract(&job, "db1", &value));
        let s = seen.runs[0].1;
        assert_eq!((s.succeeded, s.failed, s.pending), (0, 1, 0));
        assert!(!s.success());
    }

    #[test]
    fn test_runs_count_in_the_totals_only() {
        let ok = [state(Mp::Nil, changes(), 1.0)];
        for args in [
            json!(["web", {"test": true, "__kwarg__": true}]),
            json!(["web", "test=True"]),
        ] {
            let seen = run(args, "web1", &ok);
            assert!(seen.runs.is_empty());
            assert_eq!(seen.results.pending, 1);
        }
        let seen = run(
            json!(["web", {"test": false, "__kwarg__": true}]),
            "web1",
            &ok,
        );
        assert_eq!(seen.runs.len(), 1);
    }

    #[test]
    fn an_orchestration_with_test_true_is_a_test_run() {
        // A runner's `.load.p` keeps its arguments, kwargs last, in `return.fun_args`.
        let load = Mp::Map(vec![(
            "return".into(),
            Mp::Map(vec![
                ("fun".into(), "runner.state.orchestrate".into()),
                (
                    "fun_args".into(),
                    Mp::Array(vec![
                        "orch.deploy".into(),
                        Mp::Map(vec![("test".into(), Mp::Boolean(true))]),
                    ]),
                ),
            ]),
        )]);
        let bytes = rmp_bytes(&load);
        let load = crate::msgpack::decode(&bytes).expect("valid msgpack");
        let job = Job::from_load(
            "20261123202950677169".into(),
            Some(&load),
            crate::job::Masking::default(),
            None,
        );
        let states = Mp::Map(vec![(
            "salt_|-deploy_|-deploy_|-state".into(),
            state(Mp::Nil, empty(), 1.0),
        )]);
        let ret = Mp::Map(vec![(
            "return".into(),
            Mp::Map(vec![
                ("fun".into(), "runner.state.orchestrate".into()),
                (
                    "return".into(),
                    Mp::Map(vec![(
                        "data".into(),
                        Mp::Map(vec![("testmaster".into(), states)]),
                    )]),
                ),
            ]),
        )]);
        let bytes = rmp_bytes(&ret);
        let value = crate::msgpack::decode(&bytes).expect("valid msgpack");
        let events = crate::extract::extract(&job, "testmaster", &value);
        assert_eq!(events.len(), 1);
        let seen = observe(&job, &events);
        assert!(seen.runs.is_empty(), "{seen:?}");
        assert_eq!(seen.results.pending, 1);
    }

    #[test]
    fn a_newer_run_replaces_an_older_one_and_test_runs_do_not() {
        let good = run(
            json!(["web"]),
            "web1",
            &[state(Mp::Boolean(true), empty(), 1.0)],
        );
        let bad = run(
            json!(["web"]),
            "web1",
            &[state(Mp::Boolean(false), empty(), 1.0)],
        );
        let test = run(
            json!(["web", "test=True"]),
            "web1",
            &[state(Mp::Nil, empty(), 1.0)],
        );
        let mut fleet = Fleet::default();
        fleet.observe("k2", "20261123000002000000", bad.clone());
        // An older run arriving later (a rescan, a backfill) does not win.
        fleet.observe("k1", "20261123000001000000", good.clone());
        assert_eq!(fleet.minions["web1"].summary.failed, 1);
        fleet.observe("k3", "20261123000003000000", good);
        assert_eq!(fleet.minions["web1"].jid, "20261123000003000000");
        assert!(fleet.minions["web1"].summary.success());
        fleet.observe("k4", "20261123000004000000", test);
        assert_eq!(fleet.minions["web1"].jid, "20261123000003000000");
        assert_eq!(
            (
                fleet.results.succeeded,
                fleet.results.failed,
                fleet.results.pending
            ),
            (2, 1, 1)
        );
        // Rebuilding records runs without counting them again.
        fleet.record("k2", "20261123000002000000", bad);
        assert_eq!(fleet.results.failed, 1);
    }

    #[test]
    fn minions_whose_jobs_were_cleaned_up_drop_out() {
        let ok = run(json!([]), "web1", &[state(Mp::Boolean(true), empty(), 1.0)]);
        let mut fleet = Fleet::default();
        fleet.observe("k1", "20261123000001000000", ok.clone());
        let mut db = ok;
        db.runs[0].0 = "db1".into();
        fleet.observe("k2", "20261123000002000000", db);
        assert_eq!(fleet.retain(&["k2"].into_iter().collect()), 1);
        assert_eq!(fleet.minions.keys().collect::<Vec<_>>(), ["db1"]);
    }

    #[test]
    fn old_duration_strings_are_read() {
        assert_eq!(millis(&ValueRef::from("5.5 ms")), 5.5);
        assert_eq!(millis(&ValueRef::from(7u64)), 7.0);
    }
}
