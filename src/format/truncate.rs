//! Cutting an oversize event to the size limit while it stays a valid event.
//!
//! Copies get `"truncated": true`; every string longer than one common length is cut
//! to it, the longest length that makes the encoding fit (so the biggest strings go first),
//! found by bisection with the format's own encoder: escaping differs between formats (GELF
//! escapes `changes` twice), and bisection needs no model of it. Each probe copies only the
//! kept prefixes, so it costs about the limit, not the event. While even strings of [`FLOOR`]
//! bytes do not fit, containers of many small values give way to a placeholder first; only
//! when none is left are strings cut below the floor. A cut string ends with
//! `…[truncated N bytes]`, N the bytes it lost (for a container, its encoded length).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::fields::floor_char_boundary;

const MARKER_HEAD: &str = "…[truncated ";

/// Strings keep this many bytes while dropping a container could reach the limit instead:
/// ids, names and the start of a comment tell more than the rest of a long list.
const FLOOR: usize = 64;

type Event = Map<String, Value>;

/// Appends the least cut encoding of `event` that fits `max` bytes, or the most cut one when
/// none does (a limit below [`super::MIN_MAX_EVENT_BYTES`]).
pub(super) fn fit(
    event: &Event,
    max: usize,
    out: &mut Vec<u8>,
    encode: impl Fn(&Event, &mut Vec<u8>),
) {
    // Copied only if a container must go; each probe is a fresh, cut copy anyway.
    let mut base = Cow::Borrowed(event);
    let mut probe = Probe {
        start: out.len(),
        out,
        max,
        encode,
    };
    loop {
        let at_floor = cut(&base, FLOOR);
        if probe.fits(&at_floor) {
            let longest = longest_string(&base).min(max);
            return probe.best(&base, FLOOR, longest.max(FLOOR));
        }
        let need = probe.len() - max;
        if !drop_container(base.to_mut(), &at_floor, need) {
            return probe.best(&base, 0, FLOOR);
        }
    }
}

/// Encodes candidates into `out`, each replacing the one before.
struct Probe<'o, E> {
    out: &'o mut Vec<u8>,
    start: usize,
    max: usize,
    encode: E,
}

impl<E: Fn(&Event, &mut Vec<u8>)> Probe<'_, E> {
    fn len(&self) -> usize {
        self.out.len() - self.start
    }

    fn fits(&mut self, event: &Event) -> bool {
        self.out.truncate(self.start);
        (self.encode)(event, self.out);
        self.len() <= self.max
    }

    /// Leaves `event` cut at the longest length in `lo..=hi` that fits written, `lo` if none.
    fn best(&mut self, event: &Event, mut lo: usize, mut hi: usize) {
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.fits(&cut(event, mid)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.fits(&cut(event, lo));
    }
}

fn marker(removed: usize) -> String {
    format!("{MARKER_HEAD}{removed} bytes]")
}

/// A copy of `event` marked truncated, its strings cut to `keep` bytes where that shortens them.
fn cut(event: &Event, keep: usize) -> Event {
    let mut copy = cut_map(event, keep);
    copy.insert("truncated".to_owned(), Value::Bool(true));
    copy
}

fn cut_map(map: &Event, keep: usize) -> Event {
    map.iter()
        .map(|(k, v)| (k.clone(), cut_value(v, keep)))
        .collect()
}

fn cut_value(value: &Value, keep: usize) -> Value {
    match value {
        Value::String(text) => Value::String(cut_text(text, keep)),
        Value::Array(items) => Value::Array(items.iter().map(|v| cut_value(v, keep)).collect()),
        Value::Object(map) => Value::Object(cut_map(map, keep)),
        other => other.clone(),
    }
}

fn cut_text(text: &str, keep: usize) -> String {
    let kept = floor_char_boundary(text, keep);
    // A placeholder stays whole, and cutting a short string would only lengthen it.
    if kept == text.len() || text.starts_with(MARKER_HEAD) {
        return text.to_owned();
    }
    let cut = [&text[..kept], &marker(text.len() - kept)].concat();
    if cut.len() < text.len() {
        cut
    } else {
        text.to_owned()
    }
}

fn longest_string(event: &Event) -> usize {
    fn longest(value: &Value) -> usize {
        match value {
            Value::String(text) => text.len(),
            Value::Array(items) => items.iter().map(longest).max().unwrap_or(0),
            Value::Object(map) => map.values().map(longest).max().unwrap_or(0),
            _ => 0,
        }
    }
    event.values().map(longest).max().unwrap_or(0)
}

/// Where a value sits below the event.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every list and map at or below `value`, with its encoded length and its path.
fn containers(value: &Value, path: &mut Vec<Step>, found: &mut Vec<(usize, Vec<Step>)>) {
    match value {
        Value::Array(items) => {
            found.push((encoded_len(value), path.clone()));
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                containers(item, path, found);
                path.pop();
            }
        }
        Value::Object(map) => {
            found.push((encoded_len(value), path.clone()));
            for (key, item) in map {
                path.push(Step::Key(key.clone()));
                containers(item, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

fn encoded_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("JSON with string keys serializes");
    count.0
}

/// Bytes saved by replacing a container of `size` encoded bytes with its placeholder.
fn placeholder_saving(size: usize) -> usize {
    size.saturating_sub(marker(size).len() + 2)
}

/// Replaces one list or map below `event` by a placeholder: the smallest whose loss saves
/// `need`, or else the biggest, so that as much structure survives as can. Sizes are taken
/// in `at_floor`, the event as it would be sent.
fn drop_container(event: &mut Event, at_floor: &Event, need: usize) -> bool {
    let mut found = Vec::new();
    for (key, value) in at_floor {
        containers(value, &mut vec![Step::Key(key.clone())], &mut found);
    }
    found.retain(|(size, _)| placeholder_saving(*size) > 0);
    let enough = found
        .iter()
        .filter(|(size, _)| placeholder_saving(*size) >= need)
        .min_by_key(|(size, _)| *size);
    let Some((_, path)) = enough.or_else(|| found.iter().max_by_key(|(size, _)| *size)) else {
        return false;
    };
    let value = at(event, path).expect("cutting strings keeps the paths");
    *value = Value::String(marker(encoded_len(value)));
    true
}

fn at<'a>(event: &'a mut Event, path: &[Step]) -> Option<&'a mut Value> {
    let (Step::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let mut value = event.get_mut(first)?;
    for step in rest {
        value = match (step, value) {
            (Step::Key(key), Value::Object(map)) => map.get_mut(key)?,
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::format::sample;

    fn json_fit(event: &Event, max: usize) -> Event {
        let mut out = Vec::new();
        fit(event, max, &mut out, |e, out| {
            serde_json::to_writer(out, e).expect("json")
        });
        assert!(out.len() <= max, "{} > {max}", out.len());
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn cuts_end_on_a_char_boundary_with_a_marker() {
        assert_eq!(
            cut_text(&"é".repeat(100), 99),
            format!("{}{}", "é".repeat(49), marker(102))
        );
        assert_eq!(cut_text("😀".repeat(30).as_str(), 2), marker(120));
        assert_eq!(cut_text("short", 2), "short", "a marker would lengthen it");
        let placeholder = marker(123_456);
        assert_eq!(cut_text(&placeholder, 0), placeholder);
    }

    #[test]
    fn the_biggest_strings_are_cut_to_one_length() {
        let mut ev = sample::event();
        ev["comment"] = "c".repeat(3000).into();
        ev["changes"] = json!({"stdout": "o".repeat(9000), "stderr": "e".repeat(500)});
        let cut = json_fit(&ev, 5000);
        let kept = |s: &Value| s.as_str().and_then(|s| s.split('…').next()).map(str::len);
        assert_eq!(
            kept(&cut["changes"]["stderr"]),
            Some(500),
            "small enough already"
        );
        assert_eq!(kept(&cut["comment"]), kept(&cut["changes"]["stdout"]));
        assert!(cut["changes"]["stdout"]
            .as_str()
            .is_some_and(|s| s.ends_with(&marker(9000 - kept(&cut["comment"]).unwrap_or(0)))));
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["state_name"], ev["state_name"]);
    }

    #[test]
    fn the_smallest_container_that_is_enough_goes() {
        let mut ev = sample::event();
        let many = |n| (0..n).map(|i| json!({"v": i})).collect::<Vec<_>>();
        ev["changes"] = json!({"a": many(2000), "b": many(200), "c": "kept"});
        let cut = json_fit(&ev, 4000);
        assert!(cut["changes"]["a"]
            .as_str()
            .is_some_and(|s| s.starts_with(MARKER_HEAD)));
        assert_eq!(cut["changes"]["b"], ev["changes"]["b"]);
        assert_eq!(cut["changes"]["c"], "kept");
    }

    #[test]
    fn an_impossible_limit_writes_the_most_cut_event() {
        let mut ev = sample::with_diff(5000);
        ev["fun_args"] = json!([vec!["x"; 100]]);
        let mut out = Vec::new();
        fit(&ev, 10, &mut out, |e, out| {
            serde_json::to_writer(out, e).expect("json")
        });
        let cut: Event = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(
            cut["changes"],
            marker(crate::format::truncate::encoded_len(&ev["changes"]))
        );
        assert!(cut["fun_args"].is_string());
        assert_eq!(cut["jid"], ev["jid"], "too short to cut");
    }
}
