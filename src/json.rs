//! A borrowed msgpack value seen as JSON, following DESIGN's rules: ext 78 datetimes become ISO
//! 8601 strings, bin becomes text when it is UTF-8 and base64 otherwise, invalid UTF-8 in str is
//! replaced, non-string map keys are written as Python's `json` would write them.

use base64::Engine;
use rmpv::ValueRef;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// Serializes a [`ValueRef`] as JSON without first building a `serde_json::Value`.
pub(crate) struct Json<'v, 'a>(pub(crate) &'v ValueRef<'a>);

impl Serialize for Json<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ValueRef::Nil => s.serialize_unit(),
            ValueRef::Boolean(b) => s.serialize_bool(*b),
            ValueRef::Integer(i) => match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => s.serialize_u64(u),
                (None, Some(n)) => s.serialize_i64(n),
                (None, None) => s.serialize_unit(),
            },
            ValueRef::F32(f) => float(s, f64::from(*f)),
            ValueRef::F64(f) => float(s, *f),
            // rmpv validated the UTF-8 already; only invalid text (Python 2 masters) is fixed up.
            ValueRef::String(text) => match text.as_str() {
                Some(valid) => s.serialize_str(valid),
                None => s.serialize_str(&String::from_utf8_lossy(text.as_bytes())),
            },
            ValueRef::Binary(bytes) => s.serialize_str(&bin_text(bytes)),
            ValueRef::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            ValueRef::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(&key_text(k), &Json(v))?;
                }
                map.end()
            }
            ValueRef::Ext(code, data) => s.serialize_str(&ext_text(*code, data)),
        }
    }
}

/// Appends `v` as JSON to `out`: the same bytes as serializing [`Json`] with serde_json, on
/// the hot path without serde's per-value overhead.
pub(crate) fn write_value(out: &mut Vec<u8>, v: &ValueRef<'_>) {
    match v {
        ValueRef::Nil => out.extend_from_slice(b"null"),
        ValueRef::Boolean(true) => out.extend_from_slice(b"true"),
        ValueRef::Boolean(false) => out.extend_from_slice(b"false"),
        ValueRef::String(text) => match text.as_str() {
            Some(valid) => write_str(out, valid),
            None => write_str(out, &String::from_utf8_lossy(text.as_bytes())),
        },
        ValueRef::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        ValueRef::Map(entries) => {
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    ValueRef::String(text) if text.as_str().is_some() => {
                        write_str(out, text.as_str().unwrap_or_default())
                    }
                    other => write_str(out, &key_text(other)),
                }
                out.push(b':');
                write_value(out, v);
            }
            out.push(b'}');
        }
        // Numbers and the rare rest through serde_json itself: its number formatting is the
        // reference, and these are a small part of the bytes.
        other => serde_json::to_writer(&mut *out, &Json(other)).expect("a scalar serializes"),
    }
}

/// Appends `s` as a JSON string, escaped as serde_json does (`"`, `\\`, and control bytes:
/// `\b \t \n \f \r`, others `\u00XX`). Clean runs are found 8 bytes at a time and copied whole.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape(out, s);
    out.push(b'"');
}

/// Appends the concatenation of `parts` as one JSON string, without building it first.
pub(crate) fn write_str_parts(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for part in parts {
        escape(out, part);
    }
    out.push(b'"');
}

#[inline]
fn escape(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            if !needs_escape(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any of the 8 bytes in `v` is `"`, `\\` or below 0x20 (a false "yes" only costs a
/// byte-by-byte look at the chunk).
fn needs_escape(v: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = v.wrapping_sub(ONES * 0x20) & !v & HIGH;
    (below_space
        | zero_byte(v ^ (ONES * u64::from(b'"')))
        | zero_byte(v ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// JSON has no NaN or infinity; keep what Python would print, as a string.
fn float<S: Serializer>(s: S, f: f64) -> Result<S::Ok, S::Error> {
    if f.is_finite() {
        s.serialize_f64(f)
    } else if f.is_nan() {
        s.serialize_str("NaN")
    } else if f > 0.0 {
        s.serialize_str("Infinity")
    } else {
        s.serialize_str("-Infinity")
    }
}

fn bin_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

/// A map key as text, the way Python's `json.dumps` turns non-string keys into strings.
pub(crate) fn key_text(k: &ValueRef<'_>) -> String {
    match k {
        ValueRef::String(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        ValueRef::Binary(bytes) => bin_text(bytes),
        ValueRef::Nil => "null".into(),
        ValueRef::Boolean(b) => b.to_string(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::F32(f) => f.to_string(),
        ValueRef::F64(f) => f.to_string(),
        ValueRef::Ext(code, data) => ext_text(*code, data),
        // Tuples as keys come back as arrays; their JSON text is the best stable name.
        other => serde_json::to_string(&Json(other)).unwrap_or_default(),
    }
}

/// Ext 78 is a datetime written as `%Y%m%dT%H:%M:%S.%f`; 79 is a `_Constant` `[name, value]`.
fn ext_text(code: i8, data: &[u8]) -> String {
    match code {
        78 => datetime_text(data).unwrap_or_else(|| bin_text(data)),
        79 => crate::msgpack::decode(data)
            .ok()
            .and_then(|v| match v {
                ValueRef::Array(items) => items
                    .first()
                    .and_then(crate::msgpack::as_text)
                    .map(|t| t.into_owned()),
                _ => None,
            })
            .unwrap_or_else(|| bin_text(data)),
        _ => bin_text(data),
    }
}

/// `20261123T18:57:50.440911` -> `2026-11-23T18:57:50.440911`; a bare `20261123` -> `2026-11-23`.
fn datetime_text(data: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(data).ok()?;
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..]);
    Some(match time {
        Some(t) => format!("{date}T{t}"),
        None => date,
    })
}

/// Whether rendering `v` replaces bytes that are not UTF-8 with U+FFFD (a Python 2 byte string
/// in a str, keys included): the event then says so (`lossy_utf8`). Bin values go out as
/// base64 and lose nothing.
pub(crate) fn lossy(v: &ValueRef<'_>) -> bool {
    match v {
        ValueRef::String(text) => text.as_str().is_none(),
        ValueRef::Array(items) => items.iter().any(lossy),
        ValueRef::Map(entries) => entries.iter().any(|(k, v)| lossy(k) || lossy(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(buf: &[u8]) -> String {
        let v = crate::msgpack::decode(buf).expect("valid msgpack");
        serde_json::to_string(&Json(&v)).expect("serializable")
    }

    #[test]
    fn write_str_escapes_exactly_as_serde_json() {
        let mut tricky: Vec<String> = (0u8..0x80)
            .map(|b| format!("a{}b", char::from(b)))
            .collect();
        tricky.extend(
            [
                "",
                "plain text longer than eight bytes",
                "quote\" in the middle of a long enough string",
                "back\\slash",
                "tab\tnew\nline\rret",
                "日本語 fichier-é 🎉 with \u{7f} and \u{1f}",
                "12345678\"",
                "1234567\\",
            ]
            .map(str::to_owned),
        );
        for s in tricky {
            assert_same_as_serde(&s);
        }
    }

    fn assert_same_as_serde(s: &str) {
        let mut ours = Vec::new();
        write_str(&mut ours, s);
        assert_eq!(
            String::from_utf8(ours).expect("UTF-8"),
            serde_json::to_string(s).expect("serde"),
            "{s:?}"
        );
    }

    /// Every byte value that needs escaping, and a multi-byte character, at every position
    /// of strings of every length around the 8-byte steps.
    #[test]
    fn write_str_escapes_at_every_position() {
        let specials = (0u8..0x20)
            .map(char::from)
            .chain(['"', '\\', '\u{7f}', 'é', '🎉', ' ', '/']);
        for special in specials {
            for len in 0..20 {
                for at in 0..len {
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'x' })
                        .collect();
                    assert_same_as_serde(&s);
                }
            }
        }
        let all: String = (0u8..0x80).map(char::from).cycle().take(1000).collect();
        let mut ours = Vec::new();
        write_str(&mut ours, &all);
        assert_eq!(ours, serde_json::to_vec(&all).expect("serde"));
    }

    #[test]
    fn write_value_is_the_same_bytes_as_serde() {
        // {"k": [1, -2, 1.5, null, true, "x\n"], 3: {"": NaN}, bin: "ok", ext78}
        let mut buf = vec![0x84, 0xa1, b'k', 0x96, 0x01, 0xfe, 0xcb];
        buf.extend_from_slice(&1.5f64.to_be_bytes());
        buf.extend_from_slice(&[0xc0, 0xc3, 0xa2, b'x', b'\n', 0x03, 0x81, 0xa0, 0xcb]);
        buf.extend_from_slice(&f64::NAN.to_be_bytes());
        buf.extend_from_slice(&[0xa3, b'b', b'i', b'n', 0xc4, 2, b'o', b'k', 0xa1, b'e']);
        let payload = b"20261123T18:57:50.440911";
        buf.extend_from_slice(&[0xc7, payload.len() as u8, 78]);
        buf.extend_from_slice(payload);
        let v = crate::msgpack::decode(&buf).expect("valid msgpack");
        let mut ours = Vec::new();
        write_value(&mut ours, &v);
        assert_eq!(
            String::from_utf8(ours).expect("UTF-8"),
            serde_json::to_string(&Json(&v)).expect("serde")
        );
    }

    #[test]
    fn ext78_becomes_iso8601() {
        let payload = b"20261123T18:57:50.440911";
        let mut buf = vec![0xc7, payload.len() as u8, 78];
        buf.extend_from_slice(payload);
        assert_eq!(json(&buf), r#""2026-11-23T18:57:50.440911""#);
    }

    #[test]
    fn bin_is_text_when_utf8_and_base64_otherwise() {
        assert_eq!(json(&[0xc4, 2, b'o', b'k']), r#""ok""#);
        assert_eq!(json(&[0xc4, 2, 0xff, 0xfe]), r#""//4=""#);
    }

    #[test]
    fn non_string_keys_and_nan() {
        // {1: true, nil: NaN}
        let mut buf = vec![0x82, 0x01, 0xc3, 0xc0, 0xcb];
        buf.extend_from_slice(&f64::NAN.to_be_bytes());
        assert_eq!(json(&buf), r#"{"1":true,"null":"NaN"}"#);
    }

    #[test]
    fn only_str_bytes_that_are_not_utf8_are_lossy() {
        let read =
            |bytes: &'static [u8]| rmpv::decode::read_value_ref(&mut &bytes[..]).expect("msgpack");
        // {"a": ["caf\xe9"]} and {"a": ["caf\u{e9}"]}, as str.
        assert!(lossy(&read(b"\x81\xa1a\x91\xa4caf\xe9")));
        assert!(!lossy(&read(b"\x81\xa1a\x91\xa5caf\xc3\xa9")));
        assert!(!lossy(&ValueRef::Binary(b"\xff")));
    }
}
