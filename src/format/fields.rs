//! What the formats read from a `json` event alike: its outcome and severity, a one-line
//! summary, the comment as text and the instant.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

static NULL: Value = Value::Null;

/// How much of the comment's first line a summary shows: summaries are meant to fit a list view.
const SUMMARY_COMMENT_BYTES: usize = 200;

/// A field of the event, `null` when absent.
pub(super) fn field<'e>(event: &'e Map<String, Value>, name: &str) -> &'e Value {
    event.get(name).unwrap_or(&NULL)
}

/// How a state ended, from `result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    /// `result: null`: test=True with changes pending.
    Pending,
}

impl Outcome {
    /// From `result`, or a job event's `success`.
    pub(super) fn of(event: &Map<String, Value>) -> Outcome {
        let outcome = event.get("result").or_else(|| event.get("success"));
        Outcome::of_result(outcome.unwrap_or(&NULL))
    }

    /// From the value of `result`.
    pub(crate) fn of_result(result: &Value) -> Outcome {
        match result {
            Value::Bool(true) => Outcome::Succeeded,
            Value::Null => Outcome::Pending,
            _ => Outcome::Failed,
        }
    }

    pub(super) fn word(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Pending => "pending",
        }
    }

    /// ECS's `event.outcome` of a state event.
    pub(crate) fn ecs(self) -> &'static str {
        match self {
            Outcome::Succeeded => "success",
            Outcome::Failed => "failure",
            Outcome::Pending => "unknown",
        }
    }

    /// The syslog severity, also GELF's `level`: err, warning or info.
    pub(super) fn severity(self) -> u8 {
        match self {
            Outcome::Failed => 3,
            Outcome::Pending => 4,
            Outcome::Succeeded => 6,
        }
    }
}

/// `<state_name>: <outcome>: <first line of comment>`; an error return (no state) names `fun`.
pub(super) fn summary(event: &Map<String, Value>) -> String {
    let what = [field(event, "state_name"), field(event, "fun")]
        .into_iter()
        .find_map(Value::as_str)
        .unwrap_or("salt");
    summary_line(what, Outcome::of(event), comment_text(event).as_deref())
}

/// The summary of what ran (`what`), how it ended and its comment as text.
pub(crate) fn summary_line(what: &str, outcome: Outcome, comment: Option<&str>) -> String {
    summary_parts(what, outcome, comment).concat()
}

/// [`summary_line`] in pieces, for writing it without building it: `what: word`, then
/// `: ` and the comment's first line (cut at 200 bytes, marked `…`) when it has one.
pub(crate) fn summary_parts<'a>(
    what: &'a str,
    outcome: Outcome,
    comment: Option<&'a str>,
) -> [&'a str; 6] {
    let first = comment.and_then(|c| c.lines().next()).unwrap_or("");
    if first.trim().is_empty() {
        return [what, ": ", outcome.word(), "", "", ""];
    }
    if first.len() > SUMMARY_COMMENT_BYTES {
        let kept = &first[..floor_char_boundary(first, SUMMARY_COMMENT_BYTES)];
        return [what, ": ", outcome.word(), ": ", kept, "…"];
    }
    [what, ": ", outcome.word(), ": ", first, ""]
}

/// The comment as text: a list (Salt's or an error return's) is joined one item a line.
pub(super) fn comment_text(event: &Map<String, Value>) -> Option<Cow<'_, str>> {
    text_of(field(event, "comment"))
}

/// A comment's value as text: a list is joined one item a line, `null` is none.
pub(crate) fn text_of(comment: &Value) -> Option<Cow<'_, str>> {
    match comment {
        Value::Null => None,
        Value::String(text) => Some(Cow::Borrowed(text)),
        Value::Array(items) => Some(Cow::Owned(
            items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Cow::Borrowed(text.as_str()),
                    other => Cow::Owned(other.to_string()),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// The event's kind (`event_type`): `state` for events written before there were others.
pub(super) fn event_type(event: &Map<String, Value>) -> &str {
    field(event, "event_type").as_str().unwrap_or("state")
}

/// Who the event is about: the minion, or the master for a job event.
pub(super) fn host(event: &Map<String, Value>) -> &str {
    [field(event, "minion_id"), field(event, "master")]
        .into_iter()
        .find_map(Value::as_str)
        .unwrap_or("")
}

/// The event's `timestamp`, if it is one.
pub(super) fn instant(event: &Map<String, Value>) -> Option<DateTime<Utc>> {
    let text = field(event, "timestamp").as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The largest char boundary of `text` at or below `index` (`str::floor_char_boundary` is newer
/// than our minimum Rust).
pub(super) fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    (0..=index)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::sample;

    #[test]
    fn outcome_follows_result() {
        let mut ev = sample::event();
        assert_eq!(Outcome::of(&ev), Outcome::Succeeded);
        ev["result"] = Value::Bool(false);
        assert_eq!(Outcome::of(&ev).severity(), 3);
        ev["result"] = Value::Null;
        assert_eq!(Outcome::of(&ev), Outcome::Pending);
        assert_eq!(Outcome::of(&ev).severity(), 4);
    }

    #[test]
    fn summary_names_state_outcome_and_first_comment_line() {
        let mut ev = sample::event();
        ev["comment"] = "first line\nsecond".into();
        assert_eq!(
            summary(&ev),
            "service_|-nginx_|-nginx_|-running: succeeded: first line"
        );
        let err = sample::error_return();
        assert_eq!(
            summary(&err),
            "state.apply: failed: Rendering SLS 'base:web' failed: Jinja variable 'x' is undefined"
        );
        ev["comment"] = "é".repeat(150).into();
        let line = summary(&ev);
        assert!(line.ends_with('…') && line.len() < 260, "{line}");
        ev["comment"] = "".into();
        assert_eq!(summary(&ev), "service_|-nginx_|-nginx_|-running: succeeded");
    }

    #[test]
    fn comment_lists_are_joined() {
        let err = sample::error_return();
        assert_eq!(
            comment_text(&err).as_deref(),
            Some("Rendering SLS 'base:web' failed: Jinja variable 'x' is undefined\nline 3")
        );
    }

    #[test]
    fn instant_reads_rfc3339_and_tolerates_null() {
        let mut ev = sample::event();
        assert_eq!(
            instant(&ev).map(|t| t.timestamp_micros()),
            Some(1_795_460_271_100_000)
        );
        ev["timestamp"] = Value::Null;
        assert_eq!(instant(&ev), None);
    }

    #[test]
    fn floor_char_boundary_never_splits_a_char() {
        let text = "aé€😀";
        for i in 0..=text.len() + 2 {
            let b = floor_char_boundary(text, i);
            assert!(b <= i && text.is_char_boundary(b));
        }
        assert_eq!(floor_char_boundary(text, 2), 1);
    }
}
