//! What the HTTP sinks (`splunk-hec`, `elasticsearch`) share: one keep-alive `ureq` agent with
//! our rustls set-up, a POST that ends by the deadline or at once on a stop, the reply's
//! status classified (vector's `RetryLogic`: 401/403 permanent, 429 and 5xx retriable with
//! `Retry-After`), secrets that never reach a log, and the few fields of an event the
//! envelopes need (the last two serve the Kafka sink too).

pub mod otlp;

use std::fmt;
use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use super::deliver::Fault;
use super::tls::Tls;
use super::wait::Wait;

/// A token or password: never printed, not even with `{:?}`.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// What every HTTP sink takes.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `http://` or `https://` URLs, in failover order.
    pub targets: Vec<String>,
    /// The `Authorization` header's value.
    pub auth: Option<Secret>,
    pub connect_timeout: Duration,
    /// For `https://` targets.
    pub tls: Option<Tls>,
}

/// The reply to a POST.
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The body as text (lossy: for messages and JSON replies).
    pub body: String,
    /// The body as it came (a protobuf reply is not text).
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// Where a redirect points (we never follow one: its answer is not an acknowledgement).
    pub location: Option<String>,
}

/// A reply body is read up to this much: replies are small, and a huge one is not ours.
const MAX_REPLY_BYTES: u64 = 1 << 20;

/// A keep-alive HTTP client.
pub struct Http {
    agent: ureq::Agent,
    auth: Option<Secret>,
}

impl Http {
    pub fn new(opts: &HttpOptions) -> Http {
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(opts.connect_timeout)
            .max_idle_connections_per_host(2)
            // A redirect's answer is not an acknowledgement (and ureq would resend a POST as
            // a GET): the sinks see the 3xx and say where it points.
            .redirects(0)
            .user_agent(concat!("saltship/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &opts.tls {
            agent = agent.tls_config(tls.client_config());
        }
        Http {
            agent: agent.build(),
            auth: opts.auth.clone(),
        }
    }

    /// POSTs `body` to `url`. The request runs on a helper thread so that this call returns
    /// by the deadline, or at once when a stop is asked for, whatever the receiver does.
    pub fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        wait: &Wait,
    ) -> Result<Answer, Fault> {
        let left = wait.left().map_err(|e| Fault::retriable(e.to_string()))?;
        let mut request = self
            .agent
            .post(url)
            .timeout(left)
            .set("Content-Type", "application/json");
        if let Some(auth) = &self.auth {
            request = request.set("Authorization", &auth.0);
        }
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(answer(request.send_bytes(&body)));
        });
        loop {
            let slice = wait.slice().map_err(|e| Fault::retriable(e.to_string()))?;
            match rx.recv_timeout(slice) {
                Ok(answer) => return answer,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Fault::retriable("HTTP request thread ended"))
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
            let why = t.to_string();
            return Err(if certificate_problem(&t) {
                Fault::permanent(format!("TLS: {why}"))
            } else {
                Fault::retriable(why)
            });
        }
    };
    let status = response.status();
    let retry_after = response
        .header("Retry-After")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let content_type = response.header("Content-Type").map(str::to_owned);
    let location = response.header("Location").map(str::to_owned);
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(MAX_REPLY_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| Fault::retriable(format!("reading the reply: {e}")))?;
    Ok(Answer {
        status,
        retry_after,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
        content_type,
        location,
    })
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
    /// The fault for a reply that is not a success, as every HTTP receiver means it: 401 and
    /// 403 (a bad token or key) are permanent; 408, 429 and 5xx retriable, after `Retry-After`.
    /// `None` for a 2xx; other statuses are the sink's to read.
    pub fn fault(&self) -> Option<Fault> {
        let why = || format!("HTTP {}: {}", self.status, one_line(&self.body));
        match self.status {
            200..=299 => None,
            401 | 403 => Some(Fault::permanent(why())),
            408 | 429 | 500..=599 => Some(Fault {
                after: self.retry_after,
                ..Fault::retriable(why())
            }),
            _ => None,
        }
    }
}

/// At most 200 characters of `s` on one line, for a message.
pub fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    flat.trim().to_owned()
}

/// The fields of an encoded event (`json` or `ecs`) that the HTTP envelopes need.
#[derive(Debug, Default, Deserialize)]
pub struct Head {
    pub event_id: Option<String>,
    pub timestamp: Option<String>,
    pub minion_id: Option<String>,
    pub master: Option<String>,
    pub jid: Option<String>,
    #[serde(rename = "@timestamp")]
    pub at_timestamp: Option<String>,
    pub event: Option<EcsEvent>,
    pub host: Option<EcsHost>,
    pub observer: Option<EcsObserver>,
    pub salt: Option<EcsSalt>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EcsEvent {
    pub id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EcsHost {
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EcsSalt {
    pub jid: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EcsObserver {
    pub hostname: Option<String>,
}

impl Head {
    /// Reads the head of one encoded event; an event we encoded always parses.
    pub fn of(event: &[u8]) -> Head {
        serde_json::from_slice(event).unwrap_or_default()
    }

    pub fn id(&self) -> Option<&str> {
        self.event_id
            .as_deref()
            .or(self.event.as_ref().and_then(|e| e.id.as_deref()))
    }

    pub fn time(&self) -> Option<&str> {
        self.timestamp.as_deref().or(self.at_timestamp.as_deref())
    }

    pub fn minion(&self) -> Option<&str> {
        self.minion_id
            .as_deref()
            .or(self.host.as_ref().and_then(|h| h.name.as_deref()))
    }

    pub fn master(&self) -> Option<&str> {
        self.master
            .as_deref()
            .or(self.observer.as_ref().and_then(|o| o.hostname.as_deref()))
    }

    pub fn jid(&self) -> Option<&str> {
        self.jid
            .as_deref()
            .or(self.salt.as_ref().and_then(|s| s.jid.as_deref()))
    }
}

/// `scheme://host[:port]` and the path of a URL (without a trailing `/`).
pub fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => (
            &url[..after_scheme + i],
            url[after_scheme + i..].trim_end_matches('/'),
        ),
        None => (url, ""),
    }
}

/// The events of a batch: its lines, without their newline.
pub fn events(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_both_formats() {
        let json = br#"{"timestamp":"2026-01-01T00:00:00.5Z","event_id":"ab","minion_id":"m1","master":"s","jid":"j"}"#;
        let ecs = br#"{"@timestamp":"2026-01-01T00:00:00.5Z","event":{"id":"ab"},"host":{"name":"m1"},"observer":{"hostname":"s"},"salt":{"jid":"j"}}"#;
        for line in [&json[..], &ecs[..]] {
            let head = Head::of(line);
            assert_eq!(head.id(), Some("ab"));
            assert_eq!(head.time(), Some("2026-01-01T00:00:00.5Z"));
            assert_eq!(head.minion(), Some("m1"));
            assert_eq!(head.master(), Some("s"));
            assert_eq!(head.jid(), Some("j"));
        }
    }

    #[test]
    fn urls_split_into_base_and_path() {
        assert_eq!(split_url("http://h:8088"), ("http://h:8088", ""));
        assert_eq!(split_url("https://h/"), ("https://h", ""));
        assert_eq!(split_url("https://h:9200/es/"), ("https://h:9200", "/es"));
    }

    #[test]
    fn statuses_are_classified() {
        let a = |status| Answer {
            status,
            retry_after: Some(Duration::from_secs(3)),
            body: "no\nway".into(),
            ..Answer::default()
        };
        assert!(a(200).fault().is_none());
        assert!(a(401)
            .fault()
            .is_some_and(|f| f.permanent && f.why == "HTTP 401: no way"));
        let busy = a(503).fault().expect("fault");
        assert!(!busy.permanent && busy.after == Some(Duration::from_secs(3)));
        assert!(a(400).fault().is_none());
    }
}
