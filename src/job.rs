//! What a job's `.load.p` tells us: the function(s) run and their arguments, with secrets kept
//! home (`kwargs` is never read; the values of secret-looking keyword arguments are masked, and
//! of `pillar=` unless asked otherwise).

use rmpv::ValueRef;
use serde_json::Value;

use crate::json::Json;
use crate::msgpack::{as_text, get};

const MASK: &str = "********";

/// Keyword arguments whose values are masked: these names, and names ending in one of them
/// after `_` or `-` (`db_password`, `auth-token`), in any case. docs/options.md ("Secrets in
/// `fun_args`") and `--help` list them; keep the three in step.
pub(crate) const SECRET_ARGS: [&str; 19] = [
    "password",
    "passwd",
    "pass",
    "passphrase",
    "sshpass",
    "secret",
    "secret_key",
    "access_key",
    "token",
    "bearer",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "api_key",
    "apikey",
    "private_key",
    "ssh_key",
    "key",
];

/// Which keyword arguments of `fun_args` have their values masked (by default the secret
/// names and `pillar`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Masking<'m> {
    /// `--show-pillar-args`: ship `pillar=` values.
    pub(crate) show_pillar: bool,
    /// `--mask-arg`: more names, matched whole.
    pub(crate) extra: &'m [String],
}

impl Masking<'_> {
    fn hides(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        (name == "pillar" && !self.show_pillar)
            || self.extra.iter().any(|x| x.eq_ignore_ascii_case(&name))
            || SECRET_ARGS.iter().any(|s| {
                name.strip_suffix(s)
                    .is_some_and(|head| head.is_empty() || head.ends_with(['_', '-']))
            })
    }
}

/// One job of the cache, as far as events need it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Job {
    pub(crate) jid: String,
    /// The functions run: one for most jobs, several for multi-function jobs, none when the
    /// folder has no readable `.load.p`.
    pub(crate) funs: Vec<String>,
    /// `arg` from `.load.p` (`fun_args` for salt-call/`req` loads, `return.fun_args` for
    /// runners), pillar values masked.
    pub(crate) args: Value,
    /// When the job was published, if the jid is a timestamp.
    pub(crate) publish: Option<i64>,
}

impl Job {
    pub(crate) fn from_load(
        jid: String,
        load: Option<&ValueRef<'_>>,
        masking: Masking<'_>,
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
        let args = mask(args, masking);
        Job {
            jid,
            funs,
            args,
            publish,
        }
    }

    /// Whether a return of this job can hold state results that `--fun` (`funs`) takes: its
    /// functions are unknown, or one of them is a state or orchestration run and taken.
    pub(crate) fn taken(&self, funs: &[String]) -> bool {
        if self.funs.is_empty() {
            return true;
        }
        let states = self
            .funs
            .iter()
            .any(|f| f.starts_with("state.") || f.starts_with("runner.state."));
        states && (funs.is_empty() || self.funs.iter().any(|f| crate::glob::any(funs, f)))
    }

    /// This job with the arguments a return names, when `.load.p` gave none: a 2019.2
    /// orchestration writes no `.load.p`, and its `return.p` holds `return.fun_args` as a 3008
    /// runner's load does. `None` when there is nothing to add.
    pub(crate) fn with_return_args(&self, ret: &ValueRef<'_>, masking: Masking<'_>) -> Option<Job> {
        if !self.funs.is_empty() || !self.args.is_null() {
            return None;
        }
        let from_return = Job::from_load(String::new(), Some(ret), masking, None);
        (!from_return.args.is_null()).then(|| Job {
            args: from_return.args,
            ..self.clone()
        })
    }

    /// The arguments of the `i`th function: multi-function jobs keep one list per function.
    pub(crate) fn args_of(&self, i: usize) -> &Value {
        match &self.args {
            Value::Array(lists) if self.funs.len() > 1 => lists.get(i).unwrap_or(&Value::Null),
            args => args,
        }
    }
}

/// Who a job targeted and who ran it, as `.load.p` stores them, with `list_job`'s defaults
/// (`tgt_type` list, `user` root) where a load has a `tgt` but not those (runner loads).
/// All null without a load (a 2019.2 orchestration).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Target {
    /// A string or a list, as Salt stored it.
    pub(crate) tgt: Value,
    pub(crate) tgt_type: Value,
    pub(crate) user: Value,
    /// The load was built from a return, not from the publish: no `tgt`, but a minion's `id`
    /// and `return` (Salt's store_job, on a cluster master with `cluster_isolated_filesystem`
    /// that did not publish the job). Its null `tgt` is not Salt's target.
    pub(crate) from_return: bool,
}

impl Target {
    pub(crate) fn from_load(load: Option<&ValueRef<'_>>) -> Target {
        let Some(load) = load else {
            return Target::default();
        };
        let json = |v: Option<&ValueRef<'_>>| {
            v.map_or(Value::Null, |v| {
                serde_json::to_value(Json(v)).unwrap_or(Value::Null)
            })
        };
        let inner = get(load, "return");
        let user = get(load, "user").or_else(|| inner.and_then(|r| get(r, "user")));
        Target {
            tgt: json(get(load, "tgt")),
            tgt_type: get(load, "tgt_type").map_or_else(|| "list".into(), |v| json(Some(v))),
            user: user.map_or_else(|| "root".into(), |v| json(Some(v))),
            from_return: get(load, "tgt").is_none() && get(load, "id").is_some() && inner.is_some(),
        }
    }
}

/// Replaces the values of the keyword arguments `masking` hides, at any depth (a `pillar=`
/// nested in another argument too), both as Salt packs parsed kwargs (`{"pillar": {...},
/// "__kwarg__": true}`) and as raw `name=value` strings. A masked dict keeps its keys.
fn mask(args: Value, masking: Masking<'_>) -> Value {
    match args {
        Value::Array(items) => Value::Array(items.into_iter().map(|v| mask(v, masking)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Object(p) if masking.hides(&k) => {
                            Value::Object(p.into_iter().map(|(k, _)| (k, MASK.into())).collect())
                        }
                        _ if masking.hides(&k) => MASK.into(),
                        // --show-pillar-args ships the pillar as it is.
                        v if k == "pillar" => v,
                        v => mask(v, masking),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::String(s) => match s.split_once('=') {
            Some((k, _)) if masking.hides(k) => Value::String(format!("{k}={MASK}")),
            _ => Value::String(s),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEFAULT: Masking<'static> = Masking {
        show_pillar: false,
        extra: &[],
    };

    #[test]
    fn pillar_values_are_masked_in_both_forms() {
        let args = json!(["web", {"pillar": {"db_pass": "s3cret", "n": 1}, "__kwarg__": true}, "pillar={\"x\": 1}"]);
        let masked = mask(args, DEFAULT);
        assert_eq!(
            masked,
            json!(["web", {"pillar": {"db_pass": MASK, "n": MASK}, "__kwarg__": true}, format!("pillar={MASK}")])
        );
        assert!(!masked.to_string().contains("s3cret"));
    }

    #[test]
    fn secret_kwargs_are_masked_at_any_depth() {
        let args = json!([
            "bob",
            {"password": "hunter2", "DB_Password": "p2", "auth-token": {"a": "t"}, "__kwarg__": true},
            {"kwarg": {"pillar": {"k": "deep"}, "opts": [{"api_key": "ak"}]}},
            "passwd=s3",
            "Authorization=Bearer x",
            "sshpass=s4",
            {"passphrase": "p", "aws_secret_key": "k", "credentials": {"u": "c"}, "my-bearer": "b"},
            "bypass=keep",
            "eauth=pam",
            "keyboard=keep",
            "name=keep"
        ]);
        let masked = mask(args, DEFAULT);
        assert_eq!(
            masked,
            json!([
                "bob",
                {"password": MASK, "DB_Password": MASK, "auth-token": {"a": MASK}, "__kwarg__": true},
                {"kwarg": {"pillar": {"k": MASK}, "opts": [{"api_key": MASK}]}},
                format!("passwd={MASK}"),
                format!("Authorization={MASK}"),
                format!("sshpass={MASK}"),
                {"passphrase": MASK, "aws_secret_key": MASK, "credentials": {"u": MASK}, "my-bearer": MASK},
                "bypass=keep",
                "eauth=pam",
                "keyboard=keep",
                "name=keep"
            ])
        );
    }

    #[test]
    fn mask_arg_adds_names_and_show_pillar_keeps_pillar() {
        let extra = ["Community".to_owned()];
        let masking = Masking {
            show_pillar: true,
            extra: &extra,
        };
        let masked = mask(
            json!([{"community": "public", "pillar": {"a": 1, "password": "p"}, "password": "x"}, "COMMUNITY=c"]),
            masking,
        );
        assert_eq!(
            masked,
            json!([{"community": MASK, "pillar": {"a": 1, "password": "p"}, "password": MASK}, format!("COMMUNITY={MASK}")])
        );
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
