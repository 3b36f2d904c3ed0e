//! The command line's receiver options: Kafka, the HTTP sinks, OTLP, RELP, TLS. Doc comments become
//! `--help` and the man page.

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::Args;

use super::parse::Boolish;
use crate::sink::http::otlp::encode::{Compression as OtlpCompression, Encoding as OtlpEncoding};
use crate::sink::kafka::KafkaKey;

/// The Kafka sink. The password comes from a file or the environment, never from the command
/// line.
#[derive(Args, Debug)]
#[command(next_help_heading = "Kafka")]
pub(crate) struct KafkaArgs {
    /// The topic every event goes to
    #[arg(long, value_name = "NAME", env = "SALTSHIP_KAFKA_TOPIC", default_value = "salt-states")]
    pub(crate) kafka_topic: String,

    /// Each record's key
    #[arg(
        long,
        value_enum,
        value_name = "KEY",
        env = "SALTSHIP_KAFKA_KEY",
        default_value = "event_id"
    )]
    pub(crate) kafka_key: KafkaKey,

    /// SASL authentication: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with --kafka-user (over TLS
    /// when --tls is given)
    #[arg(long, value_name = "MECHANISM", env = "SALTSHIP_KAFKA_SASL_MECHANISM", value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], requires = "kafka_user")]
    pub(crate) kafka_sasl_mechanism: Option<String>,

    /// The SASL user; the password comes from --kafka-password-file or SALTSHIP_KAFKA_PASSWORD
    #[arg(
        long,
        value_name = "USER",
        env = "SALTSHIP_KAFKA_USER",
        requires = "kafka_sasl_mechanism"
    )]
    pub(crate) kafka_user: Option<String>,

    /// File holding the password of --kafka-user
    #[arg(long, value_name = "FILE", env = "SALTSHIP_KAFKA_PASSWORD_FILE")]
    pub(crate) kafka_password_file: Option<PathBuf>,

    /// A librdkafka property for the producer, e.g. compression.type=zstd or linger.ms=20
    /// (repeatable, or several separated by ';'; applied last, so it can change saltship's own
    /// settings). The value of a secret one (sasl.*, ssl.key.*, any *password*, *secret* or
    /// *token*) is never printed, but a command line is visible to every user of the
    /// machine: put those in --kafka-option-file
    #[arg(
        long,
        value_name = "KEY=VALUE",
        env = "SALTSHIP_KAFKA_OPTION",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub(crate) kafka_option: Vec<String>,

    /// File of librdkafka properties, one KEY=VALUE a line, `#` comments, applied before
    /// --kafka-option: for secrets such as sasl.oauthbearer.config or ssl.key.pem (mode 0600);
    /// never printed
    #[arg(long, value_name = "FILE", env = "SALTSHIP_KAFKA_OPTION_FILE")]
    pub(crate) kafka_option_file: Option<PathBuf>,
}

/// The HTTP sinks: Splunk HEC and Elasticsearch / OpenSearch. Secrets come from files or the
/// environment, never from the command line.
#[derive(Args, Debug)]
#[command(next_help_heading = "Splunk HEC and Elasticsearch")]
pub(crate) struct HttpArgs {
    /// File holding the HEC token (or set SALTSHIP_HEC_TOKEN); sent as `Authorization: Splunk`
    #[arg(long, value_name = "FILE", env = "SALTSHIP_HEC_TOKEN_FILE")]
    pub(crate) hec_token_file: Option<PathBuf>,

    /// The `sourcetype` of every HEC event
    #[arg(
        long,
        value_name = "NAME",
        env = "SALTSHIP_HEC_SOURCETYPE",
        default_value = "salt:state"
    )]
    pub(crate) hec_sourcetype: String,

    /// The Splunk index of every HEC event [default: the token's default index]
    #[arg(long, value_name = "NAME", env = "SALTSHIP_HEC_INDEX")]
    pub(crate) hec_index: Option<String>,

    /// The Elasticsearch index or data stream (the stock logs-*-* template makes a data stream)
    #[arg(
        long,
        value_name = "NAME",
        env = "SALTSHIP_ES_INDEX",
        default_value = "logs-salt.state-default"
    )]
    pub(crate) es_index: String,

    /// File holding an Elasticsearch API key (the encoded form, or set SALTSHIP_ES_API_KEY); sent
    /// as `Authorization: ApiKey`
    #[arg(long, value_name = "FILE", env = "SALTSHIP_ES_API_KEY_FILE")]
    pub(crate) es_api_key_file: Option<PathBuf>,

    /// User for HTTP basic authentication (Elasticsearch, OpenSearch); the password comes from
    /// --http-password-file or SALTSHIP_HTTP_PASSWORD
    #[arg(long, value_name = "USER", env = "SALTSHIP_HTTP_USER")]
    pub(crate) http_user: Option<String>,

    /// File holding the password of --http-user
    #[arg(long, value_name = "FILE", env = "SALTSHIP_HTTP_PASSWORD_FILE")]
    pub(crate) http_password_file: Option<PathBuf>,
}

/// TLS to the receivers.
#[derive(Args, Debug)]
#[command(next_help_heading = "TLS")]
pub(crate) struct TlsArgs {
    /// Speak TLS to the receivers, checking their certificate against the system's CAs (or
    /// --tls-ca) and their name against the --target host; a TLS failure is never retried as
    /// plain text, and a certificate problem ends the run at once (exit 3)
    #[arg(long, env = "SALTSHIP_TLS", value_parser = Boolish)]
    pub(crate) tls: bool,

    /// Trust only the CA certificates in this PEM file, instead of the system's
    #[arg(long, value_name = "FILE", env = "SALTSHIP_TLS_CA", requires = "tls")]
    pub(crate) tls_ca: Option<PathBuf>,

    /// The name the receiver's certificate must carry [default: the host of --target], e.g. for
    /// a target given as an IP address that its certificate does not list
    #[arg(long, value_name = "NAME", env = "SALTSHIP_TLS_SERVER_NAME", requires = "tls")]
    pub(crate) tls_server_name: Option<String>,

    /// Our client certificate (PEM, the chain after it if needed), for receivers that require
    /// one (mutual TLS); goes with --tls-key
    #[arg(long, value_name = "FILE", env = "SALTSHIP_TLS_CERT", requires_all = ["tls", "tls_key"])]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", env = "SALTSHIP_TLS_KEY", requires_all = ["tls", "tls_cert"])]
    pub(crate) tls_key: Option<PathBuf>,

    /// Do not check the receiver's certificate at all: anyone on the network path could pose as
    /// the receiver and read the events. For tests only; warned about at start
    #[arg(
        long,
        env = "SALTSHIP_TLS_INSECURE_SKIP_VERIFY",
        value_parser = Boolish,
        requires = "tls",
        conflicts_with = "tls_ca"
    )]
    pub(crate) tls_insecure_skip_verify: bool,
}

/// The OpenTelemetry logs sink (OTLP/HTTP). Its --target is the base URL: `/v1/logs` is added
/// (http://collector:4318, or http://loki:3100/otlp for Loki 3). Basic authentication or an API
/// key as for Elasticsearch (--http-user, --es-api-key-file); anything else as headers.
#[derive(Args, Debug)]
#[command(next_help_heading = "OpenTelemetry (OTLP)")]
pub(crate) struct OtlpArgs {
    /// How requests are encoded: protobuf (every OTLP receiver takes it) or json (OTLP/JSON)
    #[arg(
        long,
        value_enum,
        value_name = "ENCODING",
        env = "SALTSHIP_OTLP_ENCODING",
        default_value = "protobuf"
    )]
    pub(crate) otlp_encoding: OtlpEncoding,

    /// Compress request bodies: gzip or none
    #[arg(
        long,
        value_enum,
        value_name = "COMPRESSION",
        env = "SALTSHIP_OTLP_COMPRESSION",
        default_value = "none"
    )]
    pub(crate) otlp_compression: OtlpCompression,

    /// A request header, KEY=VALUE, e.g. X-Scope-OrgID=tenant1 (repeatable, or several separated
    /// by ';'). Its value is never printed, but a command line is visible to every user of the
    /// machine: put tokens in --otlp-header-file
    #[arg(
        long,
        value_name = "KEY=VALUE",
        env = "SALTSHIP_OTLP_HEADER",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub(crate) otlp_header: Vec<String>,

    /// File of request headers, one KEY=VALUE (or `Key: Value`) a line, `#` comments: for
    /// tokens (e.g. `Authorization=Bearer ...`, `api-key=...`); never printed
    #[arg(long, value_name = "FILE", env = "SALTSHIP_OTLP_HEADER_FILE")]
    pub(crate) otlp_header_file: Option<PathBuf>,
}

/// The RELP sink.
#[derive(Args, Debug)]
#[command(next_help_heading = "RELP")]
pub(crate) struct RelpArgs {
    /// At most N frames (events) sent and not yet answered by the receiver (rsp 200); as
    /// librelp's default. Frames leave at once; the window only bounds what is in flight
    #[arg(
        long,
        value_name = "N",
        env = "SALTSHIP_RELP_WINDOW",
        default_value_t = crate::sink::relp::DEFAULT_WINDOW,
        value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n| n as usize)
    )]
    pub(crate) relp_window: usize,
}
