//! What the HTTP sinks (`splunk-hec`, `elasticsearch`, `otlp`) share: one keep-alive `ureq` agent with
//! our rustls set-up, a POST that ends by the deadline or at once on a stop, and the reply's
//! status classified (vector's `RetryLogic`: 401/403 permanent, 429 and 5xx retriable with
//! `Retry-After`).

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use super::pool::Pool;
use crate::sink::core::{Fault, Wait};
use crate::sink::secret::Secret;
use crate::sink::tls::Tls;

/// What every HTTP sink takes.
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    /// `http://` or `https://` URLs, in failover order.
    pub(crate) targets: Vec<String>,
    /// The `Authorization` header's value.
    pub(crate) auth: Option<Secret>,
    pub(crate) connect_timeout: Duration,
    /// Request bodies stay within this many bytes (`--max-request-bytes`); `None`: the
    /// sink's default.
    pub(crate) max_request_bytes: Option<usize>,
    /// For `https://` targets.
    pub(crate) tls: Option<Tls>,
}

/// The reply to a POST.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    /// The body as text (lossy: for messages and JSON replies).
    pub(crate) body: String,
    /// The body as it came (a protobuf reply is not text).
    pub(crate) bytes: Vec<u8>,
    pub(crate) content_type: Option<String>,
    /// Where a redirect points (we never follow one: its answer is not an acknowledgement).
    pub(crate) location: Option<String>,
}

/// A reply body is read up to this much: replies are small, and a huge one is not ours.
const MAX_REPLY_BYTES: u64 = 1 << 20;

/// A keep-alive HTTP client; a connection idle for 5 s is closed ([`Pool`]).
pub(crate) struct Http {
    pool: Pool,
    auth: Option<Secret>,
}

impl Http {
    pub(crate) fn new(opts: &HttpOptions) -> Http {
        let (connect, tls) = (opts.connect_timeout, opts.tls.clone());
        let make = move || {
            let mut agent = ureq::AgentBuilder::new()
                .timeout_connect(connect)
                .max_idle_connections_per_host(2)
                // A redirect is never an acknowledgement: ureq would follow a 301/302 as a GET
                // without the body, and count the target's answer to that. See `Answer::fault`.
                .redirects(0)
                .user_agent(concat!("saltship/", env!("CARGO_PKG_VERSION")));
            if let Some(tls) = &tls {
                agent = agent.tls_config(tls.client_config());
            }
            agent.build()
        };
        Http {
            pool: Pool::new(make),
            auth: opts.auth.clone(),
        }
    }

    /// POSTs `body` to `url`. The request runs on a helper thread so that this call returns
    /// by the deadline, or at once when a stop is asked for, whatever the receiver does.
    pub(crate) fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        wait: &Wait,
    ) -> Result<Answer, Fault> {
        let left = wait.left()?;
        let mut request = self
            .pool
            .start()
            .post(url)
            .timeout(left)
            .set("Content-Type", "application/json");
        if let Some(auth) = self.auth.clone().or_else(|| userinfo_auth(url)) {
            request = request.set("Authorization", &auth.0);
        }
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let (tx, rx) = mpsc::channel();
        let ender = self.pool.ender();
        std::thread::spawn(move || {
            let answer = answer(request.send_bytes(&body));
            ender.done();
            let _ = tx.send(answer);
        });
        loop {
            let slice = wait.slice()?;
            match rx.recv_timeout(slice) {
                Ok(answer) => return answer,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Fault::retry("HTTP request thread ended"))
                }
            }
        }
    }
}

/// The reply, or the transport's failure as a fault (a certificate problem is permanent).
fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<Answer, Fault> {
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            let why = transport_why(&t);
            return Err(if certificate_problem(&t) {
                Fault::permanent(format!("TLS: {why}"))
            } else {
                Fault::retry(why)
            });
        }
    };
    let status = response.status();
    let retry_after = response
        .header("Retry-After")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let content_type = response.header("Content-Type").map(str::to_owned);
    // A redirect may point at a URL with a password in it: shown masked, as targets are.
    let location = response
        .header("Location")
        .map(|l| crate::sink::secret::shown(&one_line(l)));
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(MAX_REPLY_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| Fault::retry(format!("reading the reply: {e}")))?;
    Ok(Answer {
        status,
        retry_after,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
        content_type,
        location,
    })
}

/// A transport failure in words, without the URL that ureq puts first: it may hold a password,
/// and the delivery core names the target (masked) anyway.
fn transport_why(t: &ureq::Transport) -> String {
    let mut why = t.kind().to_string();
    for part in [
        t.message().map(str::to_owned),
        std::error::Error::source(t).map(|s| s.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        why.push_str(": ");
        why.push_str(&part);
    }
    why
}

/// HTTP basic authentication from a URL's user-info (`http://user:password@host`), decoded
/// (`%40` is `@`): used when no `--http-user`, API key or token is given (a target with both
/// is refused at start).
fn userinfo_auth(url: &str) -> Option<Secret> {
    let url = url::Url::parse(url).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let pair = format!(
        "{}:{}",
        percent_decoded(url.username()),
        percent_decoded(url.password().unwrap_or(""))
    );
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    Some(Secret(format!("Basic {encoded}")))
}

/// `text` with its `%XX` escapes decoded (a bad escape stays as it is).
fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|i| i.downcast_ref::<rustls::Error>())
        });
        if matches!(
            tls,
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        source = e.source();
    }
    false
}

impl Answer {
    /// A 413: the body was too large for the receiver (or a proxy before it).
    pub(crate) fn too_large(&self) -> bool {
        self.status == 413
    }

    /// The fault for a reply that is not a success, as every HTTP receiver means it: 401 and
    /// 403 (a bad token or key) are permanent; 408, 429 and 5xx retriable, after `Retry-After`.
    /// A redirect is permanent for the target: it is not followed (a 301/302 would turn the
    /// POST into a GET without the body), and the message names where it points, so that the
    /// operator can set the target to it. `None` for a 2xx; other statuses are the sink's.
    pub(crate) fn fault(&self) -> Option<Fault> {
        let why = || format!("HTTP {}: {}", self.status, one_line(&self.body));
        match self.status {
            200..=299 => None,
            300..=399 => Some(Fault::permanent(format!(
                "HTTP {}: redirected to {} (not followed: set the target to the URL the \
                 receiver is at)",
                self.status,
                self.location.as_deref().unwrap_or("nowhere")
            ))),
            401 | 403 => Some(Fault::permanent(why())),
            408 | 429 | 500..=599 => Some(Fault::Retry {
                why: why(),
                after: self.retry_after,
            }),
            _ => None,
        }
    }
}

/// `saltship check` for an HTTP sink: POSTs an empty body to `url`, which the receiver
/// answers 400 (no data) once it accepted our credentials, 401/403 if not, 404 for a wrong
/// path; `proved` says what a 2xx or 400 proves.
pub(crate) fn probe(
    http: &Http,
    url: &str,
    headers: &[(&str, String)],
    wait: &Wait,
    proved: &str,
) -> Result<String, Fault> {
    let answer = http.post(url, headers, Vec::new(), wait)?;
    match answer.fault() {
        Some(fault) => Err(fault),
        None if matches!(answer.status, 200..=299 | 400) => Ok(proved.into()),
        None => Err(answer.refused()),
    }
}

impl Answer {
    /// A refusal that is the target's, not one event's (a wrong path or index, a disabled
    /// token): permanent.
    pub(crate) fn refused(&self) -> Fault {
        Fault::permanent(format!("HTTP {}: {}", self.status, one_line(&self.body)))
    }
}

/// At most 200 characters of `s` on one line, for a message.
pub(crate) fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    flat.trim().to_owned()
}

/// `scheme://host[:port]` and the path of a URL (without a trailing `/`).
pub(crate) fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => (
            &url[..after_scheme + i],
            url[after_scheme + i..].trim_end_matches('/'),
        ),
        None => (url, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_base_and_path() {
        assert_eq!(split_url("http://h:8088"), ("http://h:8088", ""));
        assert_eq!(split_url("https://h/"), ("https://h", ""));
        assert_eq!(split_url("https://h:9200/es/"), ("https://h:9200", "/es"));
    }

    #[test]
    fn user_info_is_basic_authentication_decoded() {
        let auth = userinfo_auth("http://admin:p%40ss%3Aw@h:9200/_bulk").expect("auth");
        use base64::Engine;
        let pair = base64::engine::general_purpose::STANDARD.encode("admin:p@ss:w");
        assert_eq!(auth.0, format!("Basic {pair}"));
        assert!(userinfo_auth("http://h:9200/_bulk").is_none());
        assert_eq!(percent_decoded("a%2"), "a%2");
    }

    #[test]
    fn statuses_are_classified() {
        let a = |status| Answer {
            status,
            retry_after: Some(Duration::from_secs(3)),
            location: Some("http://elsewhere/".into()),
            body: "no\nway".into(),
            ..Answer::default()
        };
        assert!(a(200).fault().is_none());
        assert!(a(401)
            .fault()
            .is_some_and(|f| f.is_permanent() && f.why() == "HTTP 401: no way"));
        let busy = a(503).fault().expect("fault");
        assert!(!busy.is_permanent() && busy.after() == Some(Duration::from_secs(3)));
        assert!(a(400).fault().is_none());
        for status in [301, 302, 307, 308] {
            let moved = a(status).fault().expect("a redirect is a fault");
            assert!(moved.is_permanent() && moved.why().contains("http://elsewhere/"));
        }
    }
}
