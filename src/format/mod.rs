//! Output formats and their framing (json, ecs, gelf, syslog) and oversize-event truncation.
//!
//! Every format starts from the `json` event, an ordered map (docs/events.md, "The event"): [`encode`]
//! renders it, cuts a copy down to the size limit only when the rendering is too long
//! (`truncate.rs`), and frames it for a stream socket.

mod ecs;
mod fields;
mod gelf;
#[cfg(test)]
mod sample;
#[cfg(test)]
mod strict;
mod syslog;
mod truncate;

use serde_json::{Map, Value};

pub(crate) use ecs::ECS_VERSION;
pub(crate) use fields::{summary_parts, text_of, Outcome};

/// How events are encoded and framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// The event as it is, one JSON object per line
    Json,
    /// Elastic Common Schema 8, one JSON object per line, Salt's fields under `salt`
    Ecs,
    /// GELF 1.1 for Graylog's TCP input, each message ended by a NUL byte
    Gelf,
    /// RFC 5424 syslog, octet-counted (RFC 6587), the JSON event as the message
    Syslog,
}

/// The default `--max-event-bytes`: Splunk's stock `TRUNCATE = 10000` cuts a line after 10,000
/// bytes, the line breaker not counted, so a `json` event of at most 10,000 bytes plus its
/// newline stays whole (JSON escapes every CR and LF inside, so an event is one line). For the
/// other receivers it is a sane bound too: Graylog's and Logstash's TCP inputs take far more,
/// rsyslog's default `maxMessageSize` (8 KiB) needs raising to 10 KiB for `syslog`.
pub(crate) const DEFAULT_MAX_EVENT_BYTES: usize = 10_000;

/// The smallest limit that [`encode`] keeps to: below it the skeleton of a fully cut event
/// (field names, ids, ECS constants, syslog header) may not fit. RFC 5424 asks every receiver
/// to accept 2,048-byte messages, so no sane limit is lower.
pub(crate) const MIN_MAX_EVENT_BYTES: usize = 2048;

/// Appends one event, encoded and framed for `format`, to `out`. The encoded event (without
/// its framing: the newline, the NUL, the octet-count prefix) is at most `max_bytes` long:
/// an oversize event is cut (biggest strings first, then containers of many small values)
/// and marked `"truncated": true`. A `max_bytes` below [`MIN_MAX_EVENT_BYTES`] may not be
/// met; the most cut event is then written.
pub(crate) fn encode(
    format: Format,
    event: &Map<String, Value>,
    max_bytes: usize,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    let body = match format {
        Format::Json => json,
        Format::Ecs => ecs::write,
        Format::Gelf => gelf::write,
        Format::Syslog => syslog::write,
    };
    body(event, out);
    if out.len() - start > max_bytes {
        out.truncate(start);
        truncate::fit(event, max_bytes, out, body);
    }
    match format {
        Format::Json | Format::Ecs => out.push(b'\n'),
        Format::Gelf => out.push(0),
        Format::Syslog => {
            let count = format!("{} ", out.len() - start);
            out.splice(start..start, count.into_bytes());
        }
    }
}

fn json(event: &Map<String, Value>, out: &mut Vec<u8>) {
    serde_json::to_writer(out, event).expect("JSON with string keys serializes");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ALL: [Format; 4] = [Format::Json, Format::Ecs, Format::Gelf, Format::Syslog];

    /// Decodes one framed event strictly and returns it with its unframed length.
    fn decode(format: Format, framed: &[u8]) -> (Map<String, Value>, usize) {
        let decoded = match format {
            Format::Json | Format::Ecs => strict::ndjson(framed),
            Format::Gelf => strict::gelf(framed),
            Format::Syslog => strict::syslog(framed).map(|s| s.msg),
        };
        let body_len = match format {
            Format::Syslog => {
                let space = framed.iter().position(|&b| b == b' ').expect("a count");
                framed.len() - space - 1
            }
            _ => framed.len() - 1,
        };
        (
            decoded.unwrap_or_else(|e| panic!("{format:?}: {e}")),
            body_len,
        )
    }

    fn encoded(format: Format, event: &Map<String, Value>, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode(format, event, max, &mut out);
        out
    }

    /// Where each format puts the `truncated` marker.
    fn truncated(format: Format, decoded: &Map<String, Value>) -> bool {
        match format {
            Format::Json | Format::Syslog => decoded.get("truncated") == Some(&json!(true)),
            Format::Ecs => decoded["salt"].get("truncated") == Some(&json!(true)),
            Format::Gelf => decoded.get("_truncated") == Some(&json!("true")),
        }
    }

    #[test]
    fn json_is_the_event_as_it_is() {
        let ev = sample::event();
        let out = encoded(Format::Json, &ev, DEFAULT_MAX_EVENT_BYTES);
        assert_eq!(
            out,
            [serde_json::to_vec(&ev).expect("json"), vec![b'\n']].concat()
        );
    }

    #[test]
    fn every_format_decodes_strictly_and_appends() {
        for format in ALL {
            let mut out = b"earlier".to_vec();
            encode(format, &sample::event(), DEFAULT_MAX_EVENT_BYTES, &mut out);
            assert!(out.starts_with(b"earlier"));
            let (decoded, _) = decode(format, &out[7..]);
            assert!(!truncated(format, &decoded), "{format:?}");
        }
    }

    #[test]
    fn a_megabyte_diff_is_cut_to_the_limit_in_every_format() {
        let ev = sample::with_diff(1 << 20);
        for format in ALL {
            for max in [MIN_MAX_EVENT_BYTES, 4099, DEFAULT_MAX_EVENT_BYTES, 65_536] {
                let (decoded, len) = decode(format, &encoded(format, &ev, max));
                assert!(len <= max, "{format:?} {max}: {len}");
                assert!(len + 200 > max, "{format:?} {max}: cut too much ({len})");
                assert!(truncated(format, &decoded), "{format:?}");
            }
        }
        let (decoded, _) = decode(Format::Json, &encoded(Format::Json, &ev, 10_000));
        let diff = decoded["changes"]["diff"].as_str().expect("still a string");
        assert!(
            diff.ends_with(" bytes]") && diff.contains("…[truncated "),
            "{diff}"
        );
        assert_eq!(
            decoded["comment"], ev["comment"],
            "the big string goes first"
        );
        assert_eq!(decoded["state_name"], ev["state_name"]);
    }

    #[test]
    fn cuts_respect_the_limit_at_every_byte_near_multibyte_text() {
        let ev = sample::with_diff(3000);
        for format in ALL {
            let full = decode(format, &encoded(format, &ev, usize::MAX)).1;
            for max in (MIN_MAX_EVENT_BYTES..full)
                .step_by(11)
                .chain(full - 40..full)
            {
                let (decoded, len) = decode(format, &encoded(format, &ev, max));
                assert!(len <= max, "{format:?} {max}: {len}");
                assert!(truncated(format, &decoded), "{format:?} {max}");
            }
        }
    }

    #[test]
    fn many_small_values_give_way_to_a_placeholder() {
        let mut ev = sample::event();
        let pkgs: Map<String, Value> = (0..20_000)
            .map(|i| (format!("pkg{i}"), json!({"old": "", "new": "1.0-1"})))
            .collect();
        ev["changes"] = json!({"pkgs": pkgs, "note": "kept"});
        for format in ALL {
            let (decoded, len) = decode(format, &encoded(format, &ev, DEFAULT_MAX_EVENT_BYTES));
            assert!(len <= DEFAULT_MAX_EVENT_BYTES && truncated(format, &decoded));
        }
        let (decoded, _) = decode(Format::Json, &encoded(Format::Json, &ev, 10_000));
        let placeholder = decoded["changes"]["pkgs"].as_str().expect("a placeholder");
        assert!(placeholder.starts_with("…[truncated "), "{placeholder}");
        assert_eq!(decoded["changes"]["note"], "kept");
        assert_eq!(decoded["comment"], ev["comment"]);
    }

    #[test]
    fn an_event_of_nothing_but_huge_values_still_fits_the_minimum() {
        let mut ev = sample::event();
        let long = "\"x\u{1}é".repeat(5000);
        for value in ev.values_mut() {
            *value = json!(long);
        }
        ev["fun_args"] = json!((0..5000).collect::<Vec<_>>());
        for format in ALL {
            let (decoded, len) = decode(format, &encoded(format, &ev, MIN_MAX_EVENT_BYTES));
            assert!(len <= MIN_MAX_EVENT_BYTES, "{format:?}: {len}");
            assert!(truncated(format, &decoded));
        }
    }

    #[test]
    fn an_event_that_fits_is_left_alone() {
        let ev = sample::event();
        for format in ALL {
            let full = encoded(format, &ev, usize::MAX);
            let len = decode(format, &full).1;
            assert_eq!(
                encoded(format, &ev, len),
                full,
                "{format:?}: exactly at the limit"
            );
        }
    }

    #[test]
    fn format_names_on_the_command_line() {
        use clap::ValueEnum;
        let names: Vec<String> = Format::value_variants()
            .iter()
            .filter_map(|f| f.to_possible_value().map(|v| v.get_name().to_owned()))
            .collect();
        assert_eq!(names, ["json", "ecs", "gelf", "syslog"]);
    }
}
