//! What an OTLP/HTTP receiver's answer to `POST /v1/logs` proves, pure.
//!
//! Delivery is a 2xx whose `ExportLogsServiceResponse` (protobuf or JSON, as its
//! `Content-Type` says, or the request's encoding when it names none; an empty body is the
//! empty message) has `partial_success.rejected_log_records` 0. A 2xx of any other type (a
//! proxy's `200 text/plain "Accepted"`, which happens to parse as protobuf) proves nothing:
//! a fault, never an acknowledgement. JSON is read in both of ProtoJSON's name forms
//! (`partialSuccess` and `partial_success`), as the specification lets receivers send either. Rejected records are refused for good: counted and
//! reported once with the receiver's `error_message`, the rest of the batch is stored (OTLP does
//! not say which were refused). 429, 502, 503 and 504 are retriable after `Retry-After` (408 and
//! the other 5xx too: a receiver restarting answers them); a redirect is never an
//! acknowledgement; 413 halves the batch (the core's, as for HEC and `_bulk`); 400, 401, 403
//! and any other status are permanent for the target; a reply we cannot read proves nothing
//! and is retried.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use serde::Deserialize;

use super::encode::Encoding;
use crate::sink::http::client::one_line;

/// The parts of an HTTP answer that matter here.
#[derive(Debug, Default)]
pub(crate) struct Response<'a> {
    pub(crate) status: u16,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) location: Option<&'a str>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: &'a [u8],
}

/// What the answer to a request of `records` log records means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Stored, but `rejected` records (refused for good); `message` is the receiver's word (a
    /// warning even when nothing was rejected).
    Stored {
        rejected: u64,
        message: Option<String>,
    },
    /// Nothing proven: send the batch again, after `after` if the receiver asked.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// This target will not take it (a bad token, a wrong path, a redirect).
    Permanent(String),
    /// HTTP 413: the request was too large (for the receiver or a proxy before it).
    TooLarge,
}

/// `google.rpc.Status`, the body of an OTLP error answer in protobuf.
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The response in OTLP/JSON. Written out rather than taken from `opentelemetry-proto`, whose
/// serde form reads `rejectedLogRecords` only as a number where ProtoJSON writes an int64 as
/// a string.
#[derive(Deserialize, Default)]
struct JsonResponse {
    #[serde(rename = "partialSuccess", alias = "partial_success")]
    partial_success: Option<JsonPartial>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JsonPartial {
    #[serde(rename = "rejectedLogRecords", alias = "rejected_log_records")]
    rejected_log_records: JsonInt,
    #[serde(rename = "errorMessage", alias = "error_message")]
    error_message: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonInt {
    Number(i64),
    Text(String),
}

impl Default for JsonInt {
    fn default() -> JsonInt {
        JsonInt::Number(0)
    }
}

/// Classifies the answer to a request of `records` log records sent as `sent`.
pub(crate) fn classify(r: &Response<'_>, sent: Encoding, records: u64) -> Verdict {
    let status = r.status;
    match status {
        200..=299 => stored(r, sent, records),
        300..=399 => Verdict::Permanent(format!(
            "HTTP {status}: redirected to {}; a redirect is not an acknowledgement: use that URL as --target",
            r.location.unwrap_or("?")
        )),
        413 => Verdict::TooLarge,
        408 | 429 | 500..=599 => Verdict::Retry {
            why: format!("HTTP {status}: {}", error_text(r, sent)),
            after: r.retry_after,
        },
        _ => Verdict::Permanent(format!("HTTP {status}: {}", error_text(r, sent))),
    }
}

/// The encoding of the answer's body: its `Content-Type`, else what we sent; `Err` with the
/// media type when it is neither protobuf nor JSON.
fn encoding_of(r: &Response<'_>, sent: Encoding) -> Result<Encoding, String> {
    let media = r.content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match media.as_deref() {
        None | Some("") => Ok(sent),
        Some("application/json") => Ok(Encoding::Json),
        Some("application/x-protobuf" | "application/protobuf") => Ok(Encoding::Protobuf),
        Some(other) => Err(other.to_owned()),
    }
}

fn stored(r: &Response<'_>, sent: Encoding, records: u64) -> Verdict {
    let unreadable = |e: &dyn std::fmt::Display| Verdict::Retry {
        why: format!(
            "HTTP {}: unreadable ExportLogsServiceResponse: {e}",
            r.status
        ),
        after: None,
    };
    let encoding = match encoding_of(r, sent) {
        Ok(encoding) => encoding,
        // Not an OTLP receiver's answer (a proxy's, a web server's): it proves nothing, and
        // sending again to the same URL will not make it one.
        Err(media) => {
            return Verdict::Permanent(format!(
                "HTTP {}: a {media} body is not an OTLP acknowledgement ({}); is the target an \
                 OTLP/HTTP receiver?",
                r.status,
                one_line(&String::from_utf8_lossy(r.body))
            ))
        }
    };
    let (rejected, message) = if r.body.iter().all(u8::is_ascii_whitespace) {
        (0, String::new())
    } else {
        match encoding {
            Encoding::Protobuf => match ExportLogsServiceResponse::decode(r.body) {
                Ok(reply) => reply.partial_success.map_or((0, String::new()), |p| {
                    (p.rejected_log_records, p.error_message)
                }),
                Err(e) => return unreadable(&e),
            },
            Encoding::Json => match json_response(r.body) {
                Ok(reply) => {
                    let p = reply.partial_success.unwrap_or_default();
                    let n = match p.rejected_log_records {
                        JsonInt::Number(n) => n,
                        JsonInt::Text(t) => match t.parse() {
                            Ok(n) => n,
                            Err(e) => return unreadable(&e),
                        },
                    };
                    (n, p.error_message)
                }
                Err(e) => return unreadable(&e),
            },
        }
    };
    let Ok(rejected) = u64::try_from(rejected) else {
        return unreadable(&format!("rejected_log_records {rejected}"));
    };
    let message = one_line(&message);
    Verdict::Stored {
        // More refused than sent is nonsense we read as "all of them".
        rejected: rejected.min(records),
        message: (!message.is_empty()).then_some(message),
    }
}

/// The JSON answer, which must be an object whose `partialSuccess`, if any, is one too: serde
/// would read a struct from an array as well (`[null]` as the empty answer), proving nothing.
fn json_response(body: &[u8]) -> Result<JsonResponse, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let partial = ["partialSuccess", "partial_success"].map(|k| object.get(k));
    if partial
        .into_iter()
        .flatten()
        .any(|p| !p.is_object() && !p.is_null())
    {
        return Err("partialSuccess is not an object".into());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// What the receiver said about an error: the `google.rpc.Status` message, or the body's text.
fn error_text(r: &Response<'_>, sent: Encoding) -> String {
    let status = match encoding_of(r, sent).unwrap_or(Encoding::Json) {
        Encoding::Protobuf => Status::decode(r.body).ok(),
        Encoding::Json => serde_json::from_slice::<serde_json::Value>(r.body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .map(|message| Status { code: 0, message }),
    };
    match status {
        Some(s) if !s.message.is_empty() => one_line(&s.message),
        _ => one_line(&String::from_utf8_lossy(r.body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;

    fn proto_reply(rejected: i64, message: &str) -> Vec<u8> {
        ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message.into(),
            }),
        }
        .encode_to_vec()
    }

    fn answer<'a>(status: u16, content_type: Option<&'a str>, body: &'a [u8]) -> Response<'a> {
        Response {
            status,
            content_type,
            body,
            ..Response::default()
        }
    }

    const PROTO: Option<&str> = Some("application/x-protobuf");

    #[test]
    fn an_empty_2xx_stores_the_batch() {
        for status in [200, 201] {
            for sent in [Encoding::Protobuf, Encoding::Json] {
                assert_eq!(
                    classify(&answer(status, None, b""), sent, 5),
                    Verdict::Stored {
                        rejected: 0,
                        message: None
                    }
                );
            }
        }
        let empty = ExportLogsServiceResponse::default().encode_to_vec();
        let v = classify(&answer(200, PROTO, &empty), Encoding::Protobuf, 5);
        assert!(matches!(v, Verdict::Stored { rejected: 0, .. }), "{v:?}");
        let json = answer(200, Some("application/json"), b"{}");
        assert!(matches!(
            classify(&json, Encoding::Json, 5),
            Verdict::Stored { rejected: 0, .. }
        ));
    }

    #[test]
    fn rejected_records_are_counted_with_the_receivers_message() {
        let body = proto_reply(2, "two\nbad records");
        assert_eq!(
            classify(&answer(200, PROTO, &body), Encoding::Protobuf, 5),
            Verdict::Stored {
                rejected: 2,
                message: Some("two bad records".into())
            }
        );
        let json = br#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"too old"}}"#;
        let v = classify(
            &answer(200, Some("application/json; charset=utf-8"), json),
            Encoding::Protobuf,
            5,
        );
        assert_eq!(
            v,
            Verdict::Stored {
                rejected: 3,
                message: Some("too old".into())
            }
        );
        let as_number = br#"{"partialSuccess":{"rejectedLogRecords":4}}"#;
        let v = classify(&answer(200, None, as_number), Encoding::Json, 3);
        assert!(
            matches!(
                v,
                Verdict::Stored {
                    rejected: 3,
                    message: None
                }
            ),
            "{v:?}"
        );
    }

    #[test]
    fn a_warning_without_rejections_is_kept() {
        let body = proto_reply(0, "attribute too long, truncated");
        let v = classify(&answer(200, PROTO, &body), Encoding::Protobuf, 1);
        assert_eq!(
            v,
            Verdict::Stored {
                rejected: 0,
                message: Some("attribute too long, truncated".into())
            }
        );
    }

    #[test]
    fn an_unreadable_success_proves_nothing() {
        for (ct, body) in [
            (PROTO, &b"\xff\xff\xff"[..]),
            (Some("application/json"), b"<html>ok</html>"),
            (
                Some("application/json"),
                br#"{"partialSuccess":{"rejectedLogRecords":"x"}}"#,
            ),
            (
                Some("application/json"),
                br#"{"partialSuccess":{"rejectedLogRecords":-1}}"#,
            ),
        ] {
            let v = classify(&answer(200, ct, body), Encoding::Protobuf, 1);
            assert!(
                matches!(&v, Verdict::Retry { after: None, why } if why.contains("unreadable")),
                "{v:?}"
            );
        }
    }

    #[test]
    fn a_success_of_another_type_is_not_an_acknowledgement() {
        // "Accepted\n" parses as protobuf (field 8, fixed64): only its type tells.
        for (ct, body) in [
            ("text/plain", &b"Accepted\n"[..]),
            ("text/html; charset=utf-8", b"<html>ok</html>"),
            ("text/plain", b""),
        ] {
            for sent in [Encoding::Protobuf, Encoding::Json] {
                let v = classify(&answer(200, Some(ct), body), sent, 138);
                assert!(
                    matches!(&v, Verdict::Permanent(why) if why.contains("not an OTLP acknowledgement")),
                    "{ct}: {v:?}"
                );
            }
        }
    }

    #[test]
    fn a_json_or_gzipped_body_labelled_protobuf_is_not_an_acknowledgement() {
        // JSON read as protobuf must fail to decode, never decode as the empty message.
        for body in [
            &b"{}"[..],
            b"{ }",
            b"{\"partialSuccess\":{}}",
            br#"{"partialSuccess":{"rejectedLogRecords":5}}"#,
            b"[]",
            b"\"ok\"",
            b"null",
        ] {
            let v = classify(&answer(200, PROTO, body), Encoding::Protobuf, 5);
            assert!(
                !matches!(v, Verdict::Stored { rejected: 0, .. }),
                "{:?}: {v:?}",
                String::from_utf8_lossy(body)
            );
        }
        // Gzipped (a proxy that compresses answers): its magic is no protobuf field either,
        // whatever case the type is written in.
        let gzipped = super::super::encode::gzip(&proto_reply(5, "full"));
        for ct in [PROTO, Some("APPLICATION/X-PROTOBUF; charset=binary")] {
            let v = classify(&answer(200, ct, &gzipped), Encoding::Protobuf, 5);
            assert!(
                !matches!(v, Verdict::Stored { rejected: 0, .. }),
                "{ct:?}: {v:?}"
            );
        }
    }

    #[test]
    fn a_json_array_is_not_an_export_response() {
        // serde reads a struct from an array too: `[null]` would be the empty answer.
        for body in [
            &b"[null]"[..],
            b"[{}]",
            b" [null] ",
            br#"{"partialSuccess":[]}"#,
            br#"{"partial_success":[0, ""]}"#,
        ] {
            let v = classify(
                &answer(200, Some("application/json"), body),
                Encoding::Json,
                5,
            );
            assert!(
                matches!(&v, Verdict::Retry { why, .. } if why.contains("unreadable")),
                "{v:?}"
            );
        }
    }

    #[test]
    fn both_protojson_name_forms_are_read() {
        for body in [
            &br#"{"partial_success":{"rejected_log_records":138,"error_message":"full"}}"#[..],
            br#"{"partialSuccess":{"rejectedLogRecords":"138","errorMessage":"full"}}"#,
        ] {
            let v = classify(
                &answer(200, Some("application/json"), body),
                Encoding::Protobuf,
                138,
            );
            assert_eq!(
                v,
                Verdict::Stored {
                    rejected: 138,
                    message: Some("full".into())
                }
            );
        }
    }

    #[test]
    fn busy_receivers_are_retried_after_their_pause() {
        for status in [429, 502, 503, 504, 500, 408] {
            let r = Response {
                retry_after: Some(Duration::from_secs(2)),
                ..answer(status, Some("text/plain"), b"busy")
            };
            assert_eq!(
                classify(&r, Encoding::Protobuf, 1),
                Verdict::Retry {
                    why: format!("HTTP {status}: busy"),
                    after: Some(Duration::from_secs(2))
                }
            );
        }
    }

    #[test]
    fn refusals_are_permanent_and_say_why() {
        let status = Status {
            code: 3,
            message: "bad payload".into(),
        }
        .encode_to_vec();
        assert_eq!(
            classify(&answer(400, PROTO, &status), Encoding::Protobuf, 1),
            Verdict::Permanent("HTTP 400: bad payload".into())
        );
        let json = answer(
            401,
            Some("application/json"),
            br#"{"code":16,"message":"no token"}"#,
        );
        assert_eq!(
            classify(&json, Encoding::Json, 1),
            Verdict::Permanent("HTTP 401: no token".into())
        );
        let text = answer(403, None, b"error: forbidden\n");
        assert_eq!(
            classify(&text, Encoding::Json, 1),
            Verdict::Permanent("HTTP 403: error: forbidden".into())
        );
        let v = classify(
            &answer(404, None, b"error: invalid endpoint"),
            Encoding::Protobuf,
            1,
        );
        assert!(matches!(v, Verdict::Permanent(_)), "{v:?}");
    }

    #[test]
    fn a_redirect_is_never_an_acknowledgement() {
        for status in [301, 302, 307, 308] {
            let r = Response {
                location: Some("https://otlp.example/v1/logs"),
                ..answer(status, None, b"")
            };
            let v = classify(&r, Encoding::Protobuf, 1);
            assert!(
                matches!(&v, Verdict::Permanent(why) if why.contains("https://otlp.example/v1/logs")),
                "{v:?}"
            );
        }
    }
}
