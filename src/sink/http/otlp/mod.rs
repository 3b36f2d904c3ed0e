//! The OpenTelemetry logs sink (OTLP/HTTP, `POST {target}/v1/logs`): each event one LogRecord
//! ([`encode`]); a 2xx with no rejected records is the acknowledgement ([`reply`]).

pub(crate) mod encode;
pub(crate) mod reply;
