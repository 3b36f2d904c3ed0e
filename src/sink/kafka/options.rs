//! The Kafka sink's settings: the record key, and the librdkafka properties that carry our own
//! (bootstrap list, `acks=all`, idempotence, timeouts, the queue cap), the TLS and SASL
//! options, then `--kafka-option`, which may change any of them.
// Without the `kafka` feature these are parsed and checked, never used.
#![cfg_attr(not(feature = "kafka"), allow(dead_code))]

use std::path::Path;
use std::time::Duration;

#[cfg(feature = "kafka")]
use rdkafka::config::ClientConfig;

use crate::sink::secret::Secret;

/// A batch holds at most this much: the producer's queue is capped at twice it.
pub(super) const BATCH_BYTES: usize = 4 << 20;
/// librdkafka gives up on a record after this (or `--deliver-timeout` if shorter): the core
/// then warns once about the outage, backs off and produces it again.
const RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// What each record's key is (`--kafka-key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KafkaKey {
    /// The event's id: a compacted topic keeps one copy per state result
    #[value(name = "event_id")]
    EventId,
    /// The minion's id: each minion's events stay in order on one partition
    Minion,
    /// No key: records are spread over the partitions
    None,
}

#[derive(Debug, Clone)]
pub(crate) struct KafkaOptions {
    /// One target for the core: the `--target`s (`HOST:PORT`) joined with commas, librdkafka's
    /// bootstrap list.
    pub(crate) bootstrap: Vec<String>,
    pub(crate) topic: String,
    pub(crate) key: KafkaKey,
    /// librdkafka properties besides ours (TLS, SASL, `--kafka-option`), applied in order.
    pub(crate) properties: Vec<(String, String)>,
    /// `sasl.password`.
    pub(crate) password: Option<Secret>,
    pub(crate) deliver_timeout: Duration,
}

impl KafkaOptions {
    /// The client's configuration: ours first, so that `--kafka-option` can change any of it.
    #[cfg(feature = "kafka")]
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        let record_timeout = self.deliver_timeout.min(RECORD_TIMEOUT).max(MIN_TIMEOUT);
        c.set("bootstrap.servers", self.bootstrap.join(","))
            .set("client.id", concat!("saltship/", env!("CARGO_PKG_VERSION")))
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", millis(record_timeout))
            .set(
                "queue.buffering.max.kbytes",
                (2 * BATCH_BYTES / 1024).to_string(),
            )
            .set("queue.buffering.max.messages", "100000")
            .set("socket.connection.setup.timeout.ms", "10000")
            // As the core's backoff: a producer kept through an outage tries every 2 s at most.
            .set("reconnect.backoff.max.ms", "2000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        if let Some(p) = &self.password {
            c.set("sasl.password", &p.0);
        }
        c
    }

    /// Whether the brokers are spoken to over TLS (`--tls`, or a `--kafka-option`).
    pub(crate) fn uses_tls(&self) -> bool {
        let protocol = self.properties.iter().rev();
        protocol
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .find(|(k, _)| *k == "security.protocol")
            .is_some_and(|(_, v)| {
                v.eq_ignore_ascii_case("ssl") || v.eq_ignore_ascii_case("sasl_ssl")
            })
    }
}

/// librdkafka wants at least 1 ms, and the core's tests use short deadlines.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);

fn millis(d: Duration) -> String {
    d.as_millis().min(i32::MAX as u128).to_string()
}

/// The files of `--tls-ca`, `--tls-cert`/`--tls-key`, and `--tls-insecure-skip-verify`, as
/// librdkafka properties.
pub(crate) fn tls_properties(
    ca: Option<&Path>,
    cert_key: Option<(&Path, &Path)>,
    insecure: bool,
) -> Vec<(String, String)> {
    let mut p = Vec::new();
    let path = |p: &Path| p.display().to_string();
    if let Some(ca) = ca {
        p.push(("ssl.ca.location".to_owned(), path(ca)));
    }
    if let Some((cert, key)) = cert_key {
        p.push(("ssl.certificate.location".to_owned(), path(cert)));
        p.push(("ssl.key.location".to_owned(), path(key)));
    }
    if insecure {
        p.push((
            "enable.ssl.certificate.verification".to_owned(),
            "false".into(),
        ));
        p.push((
            "ssl.endpoint.identification.algorithm".to_owned(),
            "none".into(),
        ));
    }
    p
}

/// SASL's mechanism and user, as librdkafka properties (the password goes in apart, as a
/// [`Secret`]).
pub(crate) fn sasl_properties(mechanism: &str, user: &str) -> Vec<(String, String)> {
    vec![
        ("sasl.mechanism".to_owned(), mechanism.to_owned()),
        ("sasl.username".to_owned(), user.to_owned()),
    ]
}

/// `security.protocol` for TLS on or off and SASL on or off.
pub(crate) fn security_protocol(tls: bool, sasl: bool) -> (String, String) {
    let protocol = match (tls, sasl) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    ("security.protocol".to_owned(), protocol.to_owned())
}

/// Whether a librdkafka property may carry a secret, so that its value is never printed and
/// never taken from the config file: SASL's settings (OAUTHBEARER's config holds a client
/// secret), a private key given inline (`ssl.key.pem`) or its password, and any name with a
/// password, secret or token in it.
pub(crate) fn is_secret_property(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase().replace('_', ".");
    key.starts_with("sasl.")
        || key.starts_with("ssl.key.")
        || ["password", "secret", "token", "oauthbearer", "keystore"]
            .iter()
            .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bearing_properties_are_known_by_name() {
        for secret in [
            "sasl.password",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "SSL.Key.Pem",
            "ssl_key.password",
            "ssl.keystore.password",
            "my.token",
        ] {
            assert!(is_secret_property(secret), "{secret}");
        }
        for plain in ["compression.type", "linger.ms", "ssl.ca.location", "acks"] {
            assert!(!is_secret_property(plain), "{plain}");
        }
    }

    #[test]
    #[cfg(feature = "kafka")]
    fn options_come_last_and_the_password_stays_out_of_debug() {
        let opts = KafkaOptions {
            bootstrap: vec!["a:9092,b:9092".into()],
            topic: "t".into(),
            key: KafkaKey::EventId,
            properties: vec![("acks".into(), "1".into())],
            password: Some(Secret("hunter2".into())),
            deliver_timeout: Duration::from_secs(300),
        };
        let c = opts.client_config();
        assert_eq!(c.get("bootstrap.servers"), Some("a:9092,b:9092"));
        assert_eq!(c.get("acks"), Some("1"));
        assert_eq!(c.get("message.timeout.ms"), Some("30000"));
        assert!(!format!("{opts:?}").contains("hunter2"));
        assert!(!opts.uses_tls());
    }

    #[test]
    fn tls_and_sasl_become_librdkafka_properties() {
        let tls = tls_properties(Some(Path::new("/ca.pem")), None, true);
        assert_eq!(tls[0], ("ssl.ca.location".into(), "/ca.pem".into()));
        assert_eq!(tls.len(), 3);
        assert_eq!(sasl_properties("PLAIN", "u")[1].1, "u");
        assert_eq!(security_protocol(true, true).1, "sasl_ssl");
        assert_eq!(security_protocol(false, false).1, "plaintext");
    }
}
