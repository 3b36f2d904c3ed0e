//! The `ecs` format of a state event, written straight from the borrowed values as
//! the `json` event is: the same bytes as `format::ecs` writes from the ordered map (a
//! test holds the two together). Building that map cost three quarters of the CPU of an ECS
//! backfill; the map path stays for job events and for cutting an oversize event.

use std::borrow::Cow;
use std::io::Write;

use rmpv::ValueRef;
use serde_json::Value;

use super::{Comment, Res, Wire};
use crate::format::{summary_parts, text_of, Outcome, ECS_VERSION};
use crate::json::{write_str, write_str_parts, Json};

/// A value as the ordered map holds it (a NaN is `null`...), for the few fields ECS derives
/// something from; they are small (a bool, a number, a comment).
fn as_json(v: Option<&ValueRef<'_>>) -> Value {
    v.and_then(|v| serde_json::to_value(Json(v)).ok())
        .unwrap_or(Value::Null)
}

/// [`Outcome::of_result`] of the value as the map holds it, without building that: only nil
/// or a missing result is `null` there (a float that is not finite is a string).
fn outcome_of(result: Option<&ValueRef<'_>>) -> Outcome {
    match result {
        Some(ValueRef::Boolean(true)) => Outcome::Succeeded,
        None | Some(ValueRef::Nil) => Outcome::Pending,
        Some(_) => Outcome::Failed,
    }
}

impl Wire<'_, '_> {
    pub(super) fn write_ecs(&self, out: &mut Vec<u8>) {
        let outcome = match self.result {
            Res::State(v) => outcome_of(v),
            Res::Error => Outcome::Failed,
        };
        let comment_value;
        let comment: Option<Cow<'_, str>> = match self.comment {
            Comment::Error(text) => Some(Cow::Borrowed(text)),
            Comment::State(Some(ValueRef::String(s))) if s.as_str().is_some() => {
                s.as_str().map(Cow::Borrowed)
            }
            Comment::State(v) => {
                comment_value = as_json(v);
                text_of(&comment_value)
            }
        };
        let what = self.state_name.or(self.fun).unwrap_or("salt");
        out.push(b'{');
        if let Some(t) = &self.timestamp {
            out.extend_from_slice(b"\"@timestamp\":");
            write_str(out, t.as_str());
            out.push(b',');
        }
        out.extend_from_slice(b"\"message\":");
        write_str_parts(out, &summary_parts(what, outcome, comment.as_deref()));
        out.extend_from_slice(b",\"ecs\":{\"version\":");
        write_str(out, ECS_VERSION);
        out.extend_from_slice(b"},\"event\":{\"kind\":\"event\",\"category\":[\"configuration\"]");
        out.extend_from_slice(if self.changed {
            b",\"type\":[\"change\"],\"outcome\":"
        } else {
            b",\"type\":[\"info\"],\"outcome\":"
        });
        write_str(out, outcome.ecs());
        let duration = as_json(self.duration.0)
            .as_f64()
            .filter(|ms| ms.is_finite())
            .map(|ms| (ms * 1e6).round() as i64);
        if let Some(ns) = duration {
            out.extend_from_slice(b",\"duration\":");
            write!(out, "{ns}").expect("a Vec takes any write");
        }
        out.extend_from_slice(b",\"id\":");
        write_str(out, self.event_id.as_str());
        out.extend_from_slice(b",\"module\":\"salt\",\"dataset\":\"salt.state\"");
        let action = match (self.state, self.function) {
            (Some(state), Some(function)) => Some([state, ".", function]),
            _ => self.fun.map(|fun| [fun, "", ""]),
        };
        if let Some(action) = action {
            out.extend_from_slice(b",\"action\":");
            write_str_parts(out, &action);
        }
        out.extend_from_slice(b"},\"host\":{\"name\":");
        write_str(out, self.minion_id);
        out.extend_from_slice(b"},\"observer\":{\"hostname\":");
        write_str(out, self.master);
        let open = b",\"product\":\"saltship\"},\"salt\":{";
        self.write_salt_fields(out, open, b",\"duration_ms\":", b",\"run_num\":");
        out.extend_from_slice(b",\"event_type\":\"state\"}}");
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use rmpv::ValueRef;

    use crate::extract::StateEvent;
    use crate::format::{encode, Format};
    use crate::job::Job;

    fn write_ecs(out: &mut Vec<u8>, master: &str, job: &Job, ev: &StateEvent<'_>) {
        crate::event::EventParts::new(master, job, ev).write_ecs(out);
    }

    fn assert_same(job: &Job, ev: &StateEvent<'_>) {
        let mut ours = Vec::new();
        write_ecs(&mut ours, "m", job, ev);
        let mut theirs = Vec::new();
        let map = super::super::EventParts::new("m", job, ev).to_map();
        encode(Format::Ecs, &map, usize::MAX, &mut theirs);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }

    /// Every state event of testdata/jobs, also without its time, gives the bytes of the map
    /// path.
    #[test]
    fn direct_ecs_matches_the_map_path_on_the_fixtures() {
        let mut compared = 0;
        super::super::tests::each_fixture_event(|job, mut ev| {
            assert_same(job, &ev);
            ev.instant = None;
            assert_same(job, &ev);
            compared += 1;
        });
        assert!(compared > 100, "{compared}");
    }

    /// The values ECS derives fields from, in the shapes the fixtures lack.
    #[test]
    fn direct_ecs_matches_the_map_path_on_odd_values() {
        let job = Job::from_load(
            "20261123185750440911".into(),
            None,
            crate::job::Masking {
                show_pillar: false,
                extra: &[],
            },
            None,
        );
        let s = ValueRef::from;
        let list = ValueRef::Array(vec![s("first"), ValueRef::from(3), ValueRef::Nil]);
        let long = format!("{}{}\nsecond line", "x".repeat(199), "é".repeat(3));
        let states = [
            vec![
                (s("result"), ValueRef::Nil),
                (s("comment"), list.clone()),
                (s("duration"), ValueRef::F64(f64::NAN)),
            ],
            vec![(s("result"), s("True")), (s("duration"), ValueRef::from(5))],
            vec![
                (s("result"), ValueRef::Boolean(false)),
                (s("comment"), ValueRef::from(7)),
                (s("duration"), s("1 ms")),
            ],
            vec![
                (s("result"), ValueRef::F64(f64::NAN)),
                (s("comment"), s("")),
                (s("duration"), ValueRef::F32(1.5)),
            ],
            vec![
                (s("result"), ValueRef::Boolean(true)),
                (s("comment"), s("a\u{1}\"b\nsecond")),
                (s("changes"), ValueRef::Map(vec![(s("x"), s("é"))])),
            ],
            // No result; a first line past the summary's 200 bytes, cut inside a character.
            vec![(s("comment"), s(&long))],
            vec![(s("result"), ValueRef::F32(f32::INFINITY))],
        ];
        for (n, state) in states.into_iter().enumerate() {
            let state = ValueRef::Map(state);
            for key in ["file_|-web_|-/etc/x_|-managed", "no split"] {
                let ev = StateEvent {
                    minion: Cow::Borrowed("web1"),
                    fun: Some(Cow::Borrowed("state.apply")),
                    fun_index: 0,
                    key: Some(Cow::Borrowed(key)),
                    state: Some(&state),
                    error: None,
                    run_num: Some(n as i64),
                    instant: Some(1_795_460_271_100_000),
                    retcode: None,
                    success: None,
                    lossy: false,
                };
                assert_same(&job, &ev);
            }
        }
        let error = StateEvent {
            minion: Cow::Borrowed("web1"),
            fun: None,
            fun_index: 0,
            key: None,
            state: None,
            error: Some("Rendering failed\nline 3".into()),
            run_num: None,
            instant: None,
            retcode: None,
            success: None,
            lossy: true,
        };
        assert_same(&job, &error);
    }
}
