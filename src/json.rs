//! A borrowed msgpack value seen as JSON, following DESIGN's rules: ext 78 datetimes become ISO
//! 8601 strings, bin becomes text when it is UTF-8 and base64 otherwise, invalid UTF-8 in str is
//! replaced, non-string map keys are written as Python's `json` would write them.

use base64::Engine;
use rmpv::ValueRef;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// Serializes a [`ValueRef`] as JSON without first building a `serde_json::Value`.
pub struct Json<'v, 'a>(pub &'v ValueRef<'a>);

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
pub fn key_text(k: &ValueRef<'_>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn json(buf: &[u8]) -> String {
        let v = crate::msgpack::decode(buf).expect("valid msgpack");
        serde_json::to_string(&Json(&v)).expect("serializable")
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
}
