//! The job's own events: one `job` event per job and master (who ran what on which target,
//! which minions returned), and one `no_return` event per targeted minion that never returned.
//! Pure: the command layer reads the job folder into a [`JobView`] and decides when a job is
//! final (docs/events.md "When").

use rmpv::ValueRef;
use serde_json::{json, Map, Value};

use super::EventId;
use crate::job::Target;
use crate::msgpack::get;
use crate::time::{Rfc3339, SECOND};

/// At most this many names in `minions_missing`: a job against a whole fleet with the network
/// down must still make one event of sane size. The count is in `minions_missing_count`.
pub(crate) const MISSING_CAP: usize = 1000;

/// Why a job event's `tgt` is null when its load was built from a return.
pub(crate) const TGT_UNKNOWN: &str = "this master's .load.p was built from a minion's return, \
     not from the publish (a master cluster with cluster_isolated_filesystem: the job was \
     published by another master): Salt's target is not known here";

/// What a job event is made of, read by the command layer from the job folder.
#[derive(Debug, Clone)]
pub(crate) struct JobView<'a> {
    pub(crate) jid: &'a str,
    pub(crate) master: &'a str,
    /// `--cluster-id`: the ids are the cluster's, the same from every master's saltship.
    pub(crate) cluster: Option<&'a str>,
    /// The publish instant (from the jid), microseconds since the epoch.
    pub(crate) publish: Option<i64>,
    pub(crate) funs: &'a [String],
    /// `fun_args`, masked as for state events.
    pub(crate) args: &'a Value,
    pub(crate) target: &'a Target,
    /// The targeted minions (`.minions.p`, or what returned when it names none), sorted.
    pub(crate) targeted: &'a [String],
    /// The minions whose return landed, sorted.
    pub(crate) returned: &'a [String],
    /// Returns with `success: false` or a non-zero `retcode`.
    pub(crate) failed: u64,
    /// When the last return landed, microseconds since the epoch.
    pub(crate) last_return: Option<i64>,
    /// `--return-wait`, in microseconds.
    pub(crate) wait: i64,
    /// False for a `nocache` job: Salt keeps none of its returns, so who returned, failed or
    /// is missing is not known.
    pub(crate) returns_cached: bool,
}

impl JobView<'_> {
    /// The targeted minions that did not return, sorted.
    pub(crate) fn missing(&self) -> Vec<&str> {
        self.targeted
            .iter()
            .filter(|m| self.returned.binary_search(m).is_err())
            .map(String::as_str)
            .collect()
    }

    /// Whose job and no_return ids these are: the cluster's, or else this master's. NUL is
    /// in no host name, so a cluster's ids never equal a master's of the same name.
    pub(crate) fn id_scope(&self) -> std::borrow::Cow<'_, str> {
        match self.cluster {
            Some(c) => format!("cluster\0{c}").into(),
            None => self.master.into(),
        }
    }

    /// `fun` as Salt stores it: a string, a list for a multi-function job, null when unknown.
    fn fun(&self) -> Value {
        match self.funs {
            [] => Value::Null,
            [one] => Value::String(one.clone()),
            many => json!(many),
        }
    }
}

/// A job event's id: stable per jid and master. NUL never occurs in a state key, so no state
/// event can have it.
pub(crate) fn job_id(jid: &str, master: &str) -> EventId {
    EventId::new(jid, master, "\0job")
}

/// A no_return event's id: stable per jid, minion and master.
pub(crate) fn no_return_id(jid: &str, minion: &str, master: &str) -> EventId {
    EventId::new(jid, minion, &format!("\0no_return\0{master}"))
}

/// The job event, its fields in the order docs/events.md lists them.
pub(crate) fn job_event(v: &JobView<'_>) -> Map<String, Value> {
    let missing = v.missing();
    let mut m = Map::new();
    m.insert("timestamp".into(), instant(v.publish));
    m.insert(
        "event_id".into(),
        job_id(v.jid, &v.id_scope()).as_str().into(),
    );
    m.insert("event_type".into(), "job".into());
    m.insert("master".into(), v.master.into());
    if let Some(c) = v.cluster {
        m.insert("cluster_id".into(), c.into());
    }
    m.insert("jid".into(), v.jid.into());
    m.insert("fun".into(), v.fun());
    m.insert("fun_args".into(), v.args.clone());
    m.insert("tgt".into(), v.target.tgt.clone());
    m.insert("tgt_type".into(), v.target.tgt_type.clone());
    if v.target.from_return {
        m.insert("tgt_unknown".into(), TGT_UNKNOWN.into());
    }
    m.insert("user".into(), v.target.user.clone());
    m.insert("minions_targeted".into(), v.targeted.len().into());
    m.insert("returns_cached".into(), v.returns_cached.into());
    if !v.returns_cached {
        // Nothing of the returns is known: null, not "none returned, none missing".
        for field in [
            "minions_returned",
            "minions_missing",
            "minions_failed",
            "success",
            "duration",
        ] {
            m.insert(field.into(), Value::Null);
        }
        return m;
    }
    m.insert("minions_returned".into(), v.returned.len().into());
    let shown: Vec<&str> = missing.iter().take(MISSING_CAP).copied().collect();
    m.insert("minions_missing".into(), json!(shown));
    if missing.len() > MISSING_CAP {
        m.insert("minions_missing_truncated".into(), true.into());
        m.insert("minions_missing_count".into(), missing.len().into());
    }
    m.insert("minions_failed".into(), v.failed.into());
    m.insert(
        "success".into(),
        (missing.is_empty() && v.failed == 0).into(),
    );
    let duration = match (v.publish, v.last_return) {
        (Some(p), Some(l)) if l >= p => json!((l - p) as f64 / SECOND as f64),
        _ => Value::Null,
    };
    m.insert("duration".into(), duration);
    m
}

/// One no_return event per targeted minion that did not return, at the publish plus the wait
/// (the same on every run); none for a `nocache` job, whose returns Salt does not keep.
pub(crate) fn no_return_events(v: &JobView<'_>) -> Vec<(String, Map<String, Value>)> {
    if !v.returns_cached {
        return Vec::new();
    }
    let at = v.publish.map(|p| p.saturating_add(v.wait));
    let scope = v.id_scope();
    v.missing()
        .into_iter()
        .map(|minion| {
            let mut m = Map::new();
            m.insert("timestamp".into(), instant(at));
            m.insert(
                "event_id".into(),
                no_return_id(v.jid, minion, &scope).as_str().into(),
            );
            m.insert("event_type".into(), "no_return".into());
            m.insert("master".into(), v.master.into());
            if let Some(c) = v.cluster {
                m.insert("cluster_id".into(), c.into());
            }
            m.insert("minion_id".into(), minion.into());
            m.insert("jid".into(), v.jid.into());
            m.insert("fun".into(), v.fun());
            m.insert("result".into(), false.into());
            m.insert(
                "comment".into(),
                format!(
                    "No return from {minion} within {} of the publish (--return-wait)",
                    human(v.wait)
                )
                .into(),
            );
            (minion.to_owned(), m)
        })
        .collect()
}

fn instant(t: Option<i64>) -> Value {
    t.map_or(Value::Null, |t| Rfc3339::new(t).as_str().into())
}

/// A wait as the operator wrote it, roughly: `10m`, `90s`, `1h 30m`.
fn human(micros: i64) -> String {
    let s = micros / SECOND;
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(h, "h"), (m, "m"), (sec, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        format!("{} ms", micros / 1000)
    } else {
        parts.join(" ")
    }
}

/// Whether a return failed: `success: false` or a non-zero `retcode` beside the return (a map
/// of them for a multi-function job), or inside a runner's return load.
pub(crate) fn return_failed(ret: &ValueRef<'_>) -> bool {
    let bad = |r: &ValueRef<'_>| {
        let success = get(r, "success");
        let retcode = get(r, "retcode");
        success.is_some_and(falsy) || retcode.is_some_and(nonzero)
    };
    if get(ret, "success").is_some() || get(ret, "retcode").is_some() {
        return bad(ret);
    }
    // A runner's return.p: `{return: {fun, success, return...}}`.
    get(ret, "return")
        .filter(|inner| get(inner, "fun").is_some())
        .is_some_and(bad)
}

fn falsy(v: &ValueRef<'_>) -> bool {
    match v {
        ValueRef::Boolean(b) => !b,
        ValueRef::Map(entries) => entries.iter().any(|(_, v)| falsy(v)),
        _ => false,
    }
}

fn nonzero(v: &ValueRef<'_>) -> bool {
    match v {
        ValueRef::Integer(n) => n.as_i64() != Some(0),
        ValueRef::Map(entries) => entries.iter().any(|(_, v)| nonzero(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn view<'a>(
        target: &'a Target,
        targeted: &'a [String],
        returned: &'a [String],
        args: &'a Value,
    ) -> JobView<'a> {
        JobView {
            jid: "20261203103455028692",
            master: "testmaster",
            cluster: None,
            publish: Some(1_796_294_095_028_692),
            funs: &[],
            args,
            target,
            targeted,
            returned,
            failed: 0,
            last_return: Some(1_796_294_097_528_692),
            wait: 600 * SECOND,
            returns_cached: true,
        }
    }

    #[test]
    fn a_job_event_counts_the_targets_and_names_the_missing() {
        let target = Target::default();
        let (targeted, returned) = (names(&["a", "b", "c"]), names(&["a", "c", "x"]));
        let args = json!([]);
        let v = view(&target, &targeted, &returned, &args);
        let ev = job_event(&v);
        assert_eq!(ev["minions_targeted"], 3);
        assert_eq!(ev["minions_returned"], 3);
        assert_eq!(ev["minions_missing"], json!(["b"]));
        assert_eq!(ev["success"], false);
        assert_eq!(ev["duration"], 2.5);
        assert_eq!(ev["timestamp"], "2026-12-03T10:34:55.028692Z");
        assert_eq!(ev["event_id"], job_id(v.jid, "testmaster").as_str());
        assert_ne!(ev["event_id"], job_id(v.jid, "other").as_str());
        let nr = no_return_events(&v);
        assert_eq!(nr.len(), 1);
        assert_eq!(nr[0].1["minion_id"], "b");
        assert_eq!(nr[0].1["timestamp"], "2026-12-03T10:44:55.028692Z");
        assert_eq!(
            nr[0].1["comment"],
            "No return from b within 10m of the publish (--return-wait)"
        );
    }

    #[test]
    fn a_nocache_job_says_who_ran_what_and_nothing_of_returns_salt_did_not_keep() {
        let target = Target::default();
        let targeted = names(&["a", "b"]);
        let args = json!([]);
        let v = JobView {
            returns_cached: false,
            last_return: None,
            ..view(&target, &targeted, &[], &args)
        };
        let ev = job_event(&v);
        assert_eq!(ev["returns_cached"], false);
        assert_eq!(ev["minions_targeted"], 2);
        for field in ["minions_returned", "minions_missing", "success", "duration"] {
            assert_eq!(ev[field], Value::Null, "{field}");
        }
        assert!(no_return_events(&v).is_empty());
        assert_eq!(
            job_event(&view(&target, &targeted, &[], &args))["returns_cached"],
            true
        );
    }

    #[test]
    fn with_a_cluster_id_the_ids_are_the_same_from_every_master() {
        let target = Target::default();
        let (targeted, returned) = (names(&["a", "b"]), names(&["a"]));
        let args = json!([]);
        let mut one = view(&target, &targeted, &returned, &args);
        let mut two = one.clone();
        two.master = "othermaster";
        assert_ne!(job_event(&one)["event_id"], job_event(&two)["event_id"]);
        one.cluster = Some("prod");
        two.cluster = Some("prod");
        let (a, b) = (job_event(&one), job_event(&two));
        assert_eq!(a["event_id"], b["event_id"]);
        assert_eq!(
            (&a["master"], &a["cluster_id"]),
            (&json!("testmaster"), &json!("prod"))
        );
        assert_ne!(
            a["event_id"],
            job_id(one.jid, "prod").as_str(),
            "not a master's id"
        );
        assert_eq!(
            no_return_events(&one)[0].1["event_id"],
            no_return_events(&two)[0].1["event_id"]
        );
    }

    #[test]
    fn missing_names_are_capped_and_marked() {
        let target = Target::default();
        let targeted: Vec<String> = (0..1500).map(|i| format!("m{i:05}")).collect();
        let args = Value::Null;
        let ev = job_event(&view(&target, &targeted, &[], &args));
        assert_eq!(ev["minions_missing"].as_array().map(Vec::len), Some(1000));
        assert_eq!(ev["minions_missing_truncated"], true);
        assert_eq!(ev["minions_missing_count"], 1500);
        assert_eq!(ev["minions_missing"][0], "m00000");
    }

    #[test]
    fn failed_returns_are_told_by_success_or_retcode() {
        fn mp(v: &Value) -> rmpv::Value {
            match v {
                Value::Bool(b) => rmpv::Value::from(*b),
                Value::Number(n) => rmpv::Value::from(n.as_i64().unwrap_or(0)),
                Value::String(s) => rmpv::Value::from(s.as_str()),
                Value::Object(o) => rmpv::Value::Map(
                    o.iter()
                        .map(|(k, v)| (rmpv::Value::from(k.as_str()), mp(v)))
                        .collect(),
                ),
                _ => rmpv::Value::Nil,
            }
        }
        let decode = |v: Value| {
            let mut buf = Vec::new();
            rmpv::encode::write_value(&mut buf, &mp(&v)).expect("encode");
            return_failed(&crate::msgpack::decode(&buf).expect("decode"))
        };
        assert!(!decode(
            json!({"return": true, "retcode": 0, "success": true})
        ));
        assert!(decode(
            json!({"return": "x", "retcode": 1, "success": false})
        ));
        assert!(decode(json!({"return": {}, "retcode": {"a": 0, "b": 2}})));
        assert!(decode(
            json!({"return": {"fun": "runner.x", "success": false}})
        ));
        assert!(!decode(
            json!({"return": {"fun": "runner.x", "success": true}})
        ));
        assert!(!decode(json!({"return": "bare old return"})));
    }

    #[test]
    fn waits_read_as_written() {
        assert_eq!(human(600 * SECOND), "10m");
        assert_eq!(human(5400 * SECOND + 5 * SECOND), "1h 30m 5s");
        assert_eq!(human(0), "0 ms");
    }
}
