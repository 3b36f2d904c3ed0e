//! TLS failures said in one line, and whether retrying could help: a certificate problem
//! (ours about the receiver's, or the receiver's alert about ours) is permanent.

use std::fmt;
use std::io;
use std::time::Duration;

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError};

/// A TLS failure, said in one line; `permanent` when retrying cannot help.
#[derive(Debug)]
pub(crate) struct TlsFailure {
    pub(crate) why: String,
    pub(crate) permanent: bool,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS: {}", self.why)
    }
}

impl std::error::Error for TlsFailure {}

/// Whether `e` is a TLS failure that retrying will not fix (a certificate problem).
pub(crate) fn is_permanent(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsFailure>())
        .is_some_and(|f| f.permanent)
}

pub(super) fn failure(why: String, permanent: bool) -> io::Error {
    io::Error::other(TlsFailure { why, permanent })
}

/// What a handshake showed, to explain later failures.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ctx {
    pub(crate) client_cert: bool,
    /// The receiver asked for a client certificate.
    pub(crate) asked: bool,
}

/// A failed handshake in one line, permanent when it is a certificate problem.
pub(super) fn explain(e: io::Error, ctx: Ctx, timeout: Duration) -> io::Error {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        let (why, permanent) = describe(tls, ctx);
        return failure(why, permanent);
    }
    match e.kind() {
        io::ErrorKind::TimedOut => failure(
            format!(
                "handshake timed out after {:.1} s (is this a TLS port?)",
                timeout.as_secs_f64()
            ),
            false,
        ),
        io::ErrorKind::UnexpectedEof if ctx.asked && !ctx.client_cert => {
            failure(CLIENT_CERT_REQUIRED.into(), true)
        }
        io::ErrorKind::UnexpectedEof => failure(
            "the receiver closed the connection during the handshake".into(),
            false,
        ),
        _ => e,
    }
}

const CLIENT_CERT_REQUIRED: &str =
    "the receiver requires a client certificate: give --tls-cert and --tls-key";

/// What went wrong, for a person, and whether retrying could help.
pub(super) fn describe(e: &rustls::Error, ctx: Ctx) -> (String, bool) {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => (certificate(c), true),
        E::AlertReceived(a) => alert(*a, ctx),
        E::PeerIncompatible(p) => (
            format!("no TLS version or cipher suite in common with the receiver ({p:?})"),
            true,
        ),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => (
            format!("the receiver does not speak TLS on this port ({e})"),
            true,
        ),
        _ => (e.to_string(), false),
    }
}

/// Why we refused the receiver's certificate.
fn certificate(c: &CertificateError) -> String {
    use CertificateError as C;
    let what = "the receiver's certificate";
    match c {
        C::UnknownIssuer => format!(
            "{what} is not signed by a trusted CA (unknown issuer; a self-signed certificate is \
             its own CA): give its CA with --tls-ca"
        ),
        C::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "{what} is not valid for the name '{}' (it is for {}): give the right one with \
             --tls-server-name",
            expected.to_str(),
            names(presented)
        ),
        C::NotValidForName => format!(
            "{what} is not valid for the name expected: give the right one with --tls-server-name"
        ),
        C::ExpiredContext { not_after, .. } => {
            format!(
                "{what} expired on {}: renew it on the receiver",
                utc(*not_after)
            )
        }
        C::Expired => format!("{what} has expired: renew it on the receiver"),
        C::NotValidYetContext { not_before, .. } => format!(
            "{what} is not valid before {} (check the clocks)",
            utc(*not_before)
        ),
        C::NotValidYet => format!("{what} is not valid yet (check the clocks)"),
        C::Revoked => format!("{what} has been revoked"),
        C::BadSignature => format!("{what} has a bad signature"),
        // webpki's CaUsedAsEndEntity (rustls passes it on as `Other`): a self-signed CA
        // certificate served as the receiver's own.
        C::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => format!(
            "{what} is a CA certificate (CA:TRUE), not a server certificate: serve a server \
             certificate signed by that CA, and give the CA with --tls-ca"
        ),
        other => format!("{what} was refused: {other}"),
    }
}

/// Why the receiver refused us, from the alert it sent.
fn alert(a: AlertDescription, ctx: Ctx) -> (String, bool) {
    use AlertDescription as A;
    let cert_alert = matches!(
        a,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
    );
    match a {
        A::CertificateRequired => (CLIENT_CERT_REQUIRED.into(), true),
        A::HandshakeFailure if ctx.asked && !ctx.client_cert => (CLIENT_CERT_REQUIRED.into(), true),
        _ if cert_alert && ctx.asked && !ctx.client_cert => (CLIENT_CERT_REQUIRED.into(), true),
        _ if cert_alert && ctx.client_cert => (
            format!("the receiver refused our client certificate ({a:?} alert)"),
            true,
        ),
        A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity => (
            format!("no TLS version or cipher suite in common with the receiver ({a:?} alert)"),
            true,
        ),
        _ if cert_alert => (
            format!("the receiver refused the handshake ({a:?} alert)"),
            true,
        ),
        _ => (format!("the receiver sent a {a:?} alert"), false),
    }
}

/// The names a certificate presents, as webpki lists them (`DnsName("x")`, `IpAddress(ip)`).
fn names(presented: &[String]) -> String {
    if presented.is_empty() {
        return "no name at all".into();
    }
    presented
        .iter()
        .map(|n| {
            let inner = n
                .split_once('(')
                .map_or(n.as_str(), |(_, rest)| rest.trim_end_matches(')'));
            inner.trim_matches('"').to_owned()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn utc(t: UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || format!("{secs} (Unix time)"),
        |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reads_webpki_s_list() {
        let presented = [
            r#"DnsName("localhost")"#.to_owned(),
            "IpAddress(127.0.0.1)".to_owned(),
        ];
        assert_eq!(names(&presented), "localhost, 127.0.0.1");
        assert_eq!(names(&[]), "no name at all");
    }

    #[test]
    fn certificate_problems_are_permanent_and_say_what() {
        let ctx = Ctx {
            client_cert: false,
            asked: false,
        };
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let (why, permanent) = describe(&unknown, ctx);
        assert!(permanent && why.contains("--tls-ca"), "{why}");
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
        };
        assert_eq!(
            certificate(&expired),
            "the receiver's certificate expired on 2023-11-14 22:13:20 UTC: renew it on the receiver"
        );
        let required = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        assert_eq!(
            describe(&required, ctx),
            (CLIENT_CERT_REQUIRED.to_owned(), true)
        );
        let reset = rustls::Error::AlertReceived(AlertDescription::InternalError);
        assert!(!describe(&reset, ctx).1);
        let io = failure("x".into(), true);
        assert!(is_permanent(&io));
        assert!(!is_permanent(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
    }
}
