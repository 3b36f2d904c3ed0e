//! What a job's `.load.p` tells us: the function(s) run and their arguments, with secrets kept
//! home (`kwargs` is never read; `pillar=` values are masked unless asked otherwise).

use rmpv::ValueRef;
use serde_json::Value;

use crate::json::Json;
use crate::msgpack::{as_text, get};

const MASK: &str = "********";

/// One job of the cache, as far as events need it.
#[derive(Debug, Clone, Default)]
pub struct Job {
    pub jid: String,
    /// The functions run: one for most jobs, several for multi-function jobs, none when the
    /// folder has no readable `.load.p`.
    pub funs: Vec<String>,
    /// `arg` from `.load.p` (`fun_args` for salt-call/`req` loads, `return.fun_args` for
    /// runners), pillar values masked.
    pub args: Value,
    /// When the job was published, if the jid is a timestamp.
    pub publish: Option<i64>,
}

impl Job {
    pub fn from_load(
        jid: String,
        load: Option<&ValueRef<'_>>,
        show_pillar: bool,
        publish: Option<i64>,
    ) -> Job {
        let Some(load) = load else {
            return Job {
                jid,
                funs: Vec::new(),
                args: Value::Null,
                publish,
            };
        };
        // Runner and `req` loads (3006.3+) are the whole return load: `fun` may sit in `return`.
        let fun = get(load, "fun").or_else(|| get(load, "return").and_then(|r| get(r, "fun")));
        let funs = match fun {
            Some(ValueRef::Array(items)) => items
                .iter()
                .filter_map(as_text)
                .map(|t| t.into_owned())
                .collect(),
            Some(v) => as_text(v).map(|t| vec![t.into_owned()]).unwrap_or_default(),
            None => Vec::new(),
        };
        let args = get(load, "arg")
            .or_else(|| get(load, "fun_args"))
            .or_else(|| get(load, "return").and_then(|r| get(r, "fun_args")))
            .map(|a| serde_json::to_value(Json(a)).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        let args = if show_pillar { args } else { mask_pillar(args) };
        Job {
            jid,
            funs,
            args,
            publish,
        }
    }

    /// Whether a return of this job can hold state results that `--fun` (`funs`) takes: its
    /// functions are unknown, or one of them is a state or orchestration run and taken.
    pub fn taken(&self, funs: &[String]) -> bool {
        if self.funs.is_empty() {
            return true;
        }
        let states = self
            .funs
            .iter()
            .any(|f| f.starts_with("state.") || f.starts_with("runner.state."));
        states && (funs.is_empty() || self.funs.iter().any(|f| crate::glob::any(funs, f)))
    }

    /// The arguments of the `i`th function: multi-function jobs keep one list per function.
    pub fn args_of(&self, i: usize) -> &Value {
        match &self.args {
            Value::Array(lists) if self.funs.len() > 1 => lists.get(i).unwrap_or(&Value::Null),
            args => args,
        }
    }
}

/// Replaces the values of a `pillar` keyword argument, both as Salt packs parsed kwargs
/// (`{"pillar": {...}, "__kwarg__": true}`) and as raw `pillar=...` strings.
fn mask_pillar(args: Value) -> Value {
    match args {
        Value::Array(items) => Value::Array(items.into_iter().map(mask_pillar).collect()),
        Value::Object(mut map) => {
            if let Some(pillar) = map.get_mut("pillar") {
                *pillar = match pillar.take() {
                    Value::Object(p) => {
                        Value::Object(p.into_iter().map(|(k, _)| (k, MASK.into())).collect())
                    }
                    _ => MASK.into(),
                };
            }
            Value::Object(map)
        }
        Value::String(s) if s.starts_with("pillar=") => Value::String(format!("pillar={MASK}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pillar_values_are_masked_in_both_forms() {
        let args = json!(["web", {"pillar": {"db_pass": "s3cret", "n": 1}, "__kwarg__": true}, "pillar={\"x\": 1}"]);
        let masked = mask_pillar(args);
        assert_eq!(
            masked,
            json!(["web", {"pillar": {"db_pass": MASK, "n": MASK}, "__kwarg__": true}, format!("pillar={MASK}")])
        );
        assert!(!masked.to_string().contains("s3cret"));
    }

    #[test]
    fn multi_function_args_are_per_function() {
        let job = Job {
            funs: vec!["test.ping".into(), "state.sls".into()],
            args: json!([[], ["web"]]),
            ..Job::default()
        };
        assert_eq!(job.args_of(1), &json!(["web"]));
        let single = Job {
            funs: vec!["state.sls".into()],
            args: json!(["web"]),
            ..Job::default()
        };
        assert_eq!(single.args_of(0), &json!(["web"]));
    }
}
