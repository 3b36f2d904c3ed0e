//! The command line, and nothing else: doc comments become `--help` and the man page.
//! Every option has a `SALTSHIP_*` environment twin for systemd's `EnvironmentFile=`.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};

use crate::format::Format;
use crate::sink::http::otlp::encode::{Compression as OtlpCompression, Encoding as OtlpEncoding};
use crate::sink::kafka::KafkaKey;
use crate::sink::SinkKind;

const EXIT_STATUS: &str = "\
Exit status:
  0  done
  0  also for sync and watch: another saltship holds the state file's lock (it says so;
     -q silences it); backfill then ships without recording
  1  finished, but some cache files could not be read (each was named in a warning; those
     unreadable for now, permission denied, too big..., are tried again next run), or the
     receiver refused some events for good; for check: some check failed
  2  usage or configuration error (bad option, a cache folder that is not a Salt job
     cache, unreadable state file)
  3  could not deliver the events (no acknowledgement within --deliver-timeout, or a bad
     token, certificate or credentials on every target, or a Kafka topic that does not exist),
     or could not save the checkpoint (state folder full or read-only): the run stops rather
     than ship again and again what it cannot record";

/// Ship every SaltStack state result from the master's job cache to your log aggregator.
///
/// saltship reads the Salt master's job cache (the local_cache returner's files), turns each
/// state result (one per state, per minion, per run) into one JSON event, and prints or sends it.
#[derive(Parser, Debug)]
#[command(name = "saltship", version, after_help = EXIT_STATUS, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Say what saltship decides on stderr: jobs skipped and why, connections, confirmations,
    /// checkpoint saves (-vv: more detail); other libraries' logs only through RUST_LOG
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr: no warnings, no summary, no progress bars
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Catch up like sync, then follow the cache (inotify) and ship each state result as it
    /// lands: the daemon for systemd (Type=notify) or any supervisor; stops cleanly on SIGTERM
    #[command(after_help = EXIT_STATUS)]
    Watch(WatchArgs),
    /// Ship every return the checkpoint does not hold yet, confirm delivery, record it, exit:
    /// for cron, a systemd timer or a path unit
    #[command(after_help = EXIT_STATUS)]
    Sync(SyncArgs),
    /// Replay the jobs in the cache (all, or a time range), printing or sending their events,
    /// and record them in the checkpoint so sync and watch do not ship them again
    #[command(after_help = EXIT_STATUS)]
    Backfill(BackfillArgs),
    /// Test the configuration without sending an event: the cache folder, the state file and
    /// its lock, each target (TLS handshake and certificate included), the inotify watch limit
    /// (and the metrics file, when given). Takes watch's options and environment. One line per
    /// check; exit 0 only when every check passes
    #[command(after_help = CHECK_EXIT_STATUS)]
    Check(CheckArgs),
}

const CHECK_EXIT_STATUS: &str = "\
Exit status:
  0  every check passed
  1  some check failed (its line says what to fix)
  2  usage or configuration error (bad option)";

/// The options of `watch` (and `sync`, whose options are a part of them), checked as they are.
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    #[command(flatten)]
    pub state: StateArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    #[command(flatten)]
    pub state: StateArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// What only the daemon uses (and `check` checks).
#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Scan the whole cache this often, for anything inotify missed
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_RESCAN_INTERVAL",
        default_value = "60s"
    )]
    pub rescan_interval: String,

    /// Log a one-line summary (returns, events, failures, reconnects, lag) this often
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_STATS_INTERVAL",
        default_value = "5m"
    )]
    pub stats_interval: String,

    /// Write the Prometheus metrics (saltship's own and the fleet's health) here every 10 s,
    /// atomically, for node_exporter's textfile collector
    #[arg(long, value_name = "PATH", env = "SALTSHIP_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Serve the same metrics over HTTP at GET /metrics on this address (e.g. 127.0.0.1:9617)
    #[arg(long, value_name = "ADDR:PORT", env = "SALTSHIP_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Without a state file: ship the whole cache (beginning) or only what arrives from now on
    #[arg(long, value_name = "WHEN", env = "SALTSHIP_START_AT", default_value = "beginning", value_parser = ["beginning", "now"])]
    pub start_at: String,

    /// Write the Prometheus metrics (the run's counts and the fleet's health) here at the end of
    /// the run, atomically, for node_exporter's textfile collector
    #[arg(long, value_name = "PATH", env = "SALTSHIP_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,

    #[command(flatten)]
    pub state: StateArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Where shipped returns are recorded.
#[derive(Args, Debug)]
pub struct StateArgs {
    /// The checkpoint: which returns were shipped (a lock file sits beside it)
    #[arg(
        long,
        value_name = "FILE",
        env = "SALTSHIP_STATE_FILE",
        default_value = "/var/lib/saltship/state"
    )]
    pub state_file: PathBuf,

    /// Start over with an empty checkpoint when the state file cannot be read
    #[arg(long, env = "SALTSHIP_RESET_STATE", value_parser = Boolish)]
    pub reset_state: bool,

    /// The master's keep_jobs: warn when unshipped returns get close to this age, at which the
    /// master deletes them
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_KEEP_JOBS",
        default_value = "24h"
    )]
    pub keep_jobs: String,
}

#[derive(Args, Debug)]
pub struct BackfillArgs {
    /// Only jobs published at or after T: RFC 3339, a jid, or an age such as 24h or 7d
    #[arg(long, value_name = "T", env = "SALTSHIP_SINCE")]
    pub since: Option<String>,

    /// Only jobs published before T: RFC 3339, a jid, or an age such as 24h or 7d
    #[arg(long, value_name = "T", env = "SALTSHIP_UNTIL")]
    pub until: Option<String>,

    /// Do not record what is shipped in the checkpoint (a --dry-run never does)
    #[arg(long, env = "SALTSHIP_NO_CHECKPOINT", value_parser = Boolish)]
    pub no_checkpoint: bool,

    #[command(flatten)]
    pub state: StateArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options shared by every command.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// The master's job cache folder
    #[arg(
        long,
        value_name = "DIR",
        env = "SALTSHIP_CACHE_DIR",
        default_value = "/var/cache/salt/master/jobs"
    )]
    pub cache_dir: PathBuf,

    /// The receiver's protocol. tcp: lines over TCP or TLS; delivery is confirmed by a graceful
    /// close (our FIN, then the receiver's EOF), which proves the receiver's socket read every
    /// byte but not that an application stored it: a proxy or load balancer in between, or a
    /// receiver that half-closes without reading, defeats it. splunk-hec, elasticsearch,
    /// kafka and otlp are acknowledged by the receiver itself (indexer acknowledgement;
    /// per-item bulk status; a delivery report per record with acks=all; a 2xx with no rejected
    /// log record)
    #[arg(long, value_enum, env = "SALTSHIP_SINK", default_value = "tcp")]
    pub sink: SinkKind,

    /// Send the events to this receiver: HOST:PORT for --sink tcp, a URL (http:// or
    /// https://HOST:PORT, optionally with a path) for splunk-hec, elasticsearch and otlp; repeat for
    /// failover, tried in order. For kafka: HOST:PORT bootstrap brokers (one list, not failover)
    #[arg(
        long,
        value_name = "TARGET",
        env = "SALTSHIP_TARGET",
        value_delimiter = ','
    )]
    pub target: Vec<String>,

    /// Print the events to stdout instead of sending them (nothing is sent or recorded)
    #[arg(long, env = "SALTSHIP_DRY_RUN", value_parser = Boolish)]
    pub dry_run: bool,

    /// Wire format: json (one object per line), ecs (Elastic Common Schema, one per line),
    /// gelf (GELF 1.1, NUL-terminated), syslog (RFC 5424, octet-counted); the HTTP sinks
    /// (otlp: as each record's body) and kafka take json or ecs [default: json; ecs for --sink
    /// elasticsearch]
    #[arg(long, value_enum, env = "SALTSHIP_FORMAT")]
    pub format: Option<Format>,

    /// Cut events longer than N bytes (biggest strings first, marked "truncated": true) [default:
    /// 10000 when sending, which a stock Splunk TCP input keeps whole; no limit with --dry-run]
    #[arg(long, value_name = "N", env = "SALTSHIP_MAX_EVENT_BYTES")]
    pub max_event_bytes: Option<usize>,

    /// Give up (exit 3) when no receiver took or acknowledged anything for this long, e.g. 90s,
    /// 5m; every wait (connect, handshake, write, acknowledgement, close) ends by it
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_DELIVER_TIMEOUT",
        default_value = "5m"
    )]
    pub deliver_timeout: String,

    /// Send at most this many events per second, so a large backfill does not flood the receiver
    #[arg(long, value_name = "EVENTS_PER_S", env = "SALTSHIP_MAX_RATE")]
    pub max_rate: Option<f64>,

    /// Only these minions (glob, repeatable; an orchestration's steps carry the master's id)
    #[arg(
        long,
        value_name = "GLOB",
        env = "SALTSHIP_MINION",
        value_delimiter = ','
    )]
    pub minion: Vec<String>,

    /// Only jobs of these functions (glob, repeatable), e.g. 'state.apply' or 'runner.state.*'
    #[arg(long, value_name = "GLOB", env = "SALTSHIP_FUN", value_delimiter = ',')]
    pub fun: Vec<String>,

    /// Only failed states (result false) and error returns; test=True pending states are not failures
    #[arg(long, env = "SALTSHIP_ONLY_FAILURES", value_parser = Boolish)]
    pub only_failures: bool,

    /// Ship the values of a `pillar=` argument in fun_args instead of masking them
    #[arg(long, env = "SALTSHIP_SHOW_PILLAR_ARGS", value_parser = Boolish)]
    pub show_pillar_args: bool,

    /// Also mask the values of keyword arguments with this name in fun_args (repeatable). Always
    /// masked: password, passwd, pass, secret, token, api_key, apikey, private_key, ssh_key, key,
    /// and any name that ends in one of them after '_' or '-' (db_password, auth-token), at any
    /// depth; and pillar, unless --show-pillar-args
    #[arg(
        long,
        value_name = "NAME",
        env = "SALTSHIP_MASK_ARG",
        value_delimiter = ','
    )]
    pub mask_arg: Vec<String>,

    /// Read no cache file larger than this (a return or a .load.p): it is named in a warning,
    /// counted as failed and tried again at the next run. Bytes, or with K, M, G (KiB...)
    #[arg(
        long,
        value_name = "SIZE",
        env = "SALTSHIP_MAX_RETURN_BYTES",
        default_value = "256M"
    )]
    pub max_return_bytes: String,

    /// Memory for the returns being decoded and sent at once, across the threads; a return
    /// needing more is handled alone. Bytes, or with K, M, G (KiB...)
    #[arg(
        long,
        value_name = "SIZE",
        env = "SALTSHIP_MEMORY_BUDGET",
        default_value = "64M"
    )]
    pub memory_budget: String,

    /// Threads that decode and encode returns [default: one per core]; events still go out in
    /// jid order
    #[arg(long, value_name = "N", env = "SALTSHIP_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// The `master` field of every event [default: this host's name]
    #[arg(long, value_name = "ID", env = "SALTSHIP_MASTER_ID")]
    pub master_id: Option<String>,

    /// Zone of the jids: utc (Salt 3000 and later), local (the master's zone, Salt 2019.2 and
    /// earlier), or a fixed offset like +02:00
    #[arg(
        long,
        value_name = "ZONE",
        env = "SALTSHIP_JID_TIMEZONE",
        default_value = "utc"
    )]
    pub jid_timezone: String,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub otlp: OtlpArgs,
}

/// The OpenTelemetry logs sink (OTLP/HTTP). Its --target is the base URL: `/v1/logs` is added
/// (http://collector:4318, or http://loki:3100/otlp for Loki 3). Basic authentication or an API
/// key as for Elasticsearch (--http-user, --es-api-key-file); anything else as headers.
#[derive(Args, Debug)]
#[command(next_help_heading = "OpenTelemetry (OTLP)")]
pub struct OtlpArgs {
    /// How requests are encoded: protobuf (every OTLP receiver takes it) or json (OTLP/JSON)
    #[arg(
        long,
        value_enum,
        value_name = "ENCODING",
        env = "SALTSHIP_OTLP_ENCODING",
        default_value = "protobuf"
    )]
    pub otlp_encoding: OtlpEncoding,

    /// Compress request bodies: gzip or none
    #[arg(
        long,
        value_enum,
        value_name = "COMPRESSION",
        env = "SALTSHIP_OTLP_COMPRESSION",
        default_value = "none"
    )]
    pub otlp_compression: OtlpCompression,

    /// A request header, KEY=VALUE, e.g. X-Scope-OrgID=tenant1 (repeatable, or several separated
    /// by ';'). Its value is never printed, but a command line is visible to every user of the
    /// machine: put tokens in --otlp-header-file
    #[arg(
        long,
        value_name = "KEY=VALUE",
        env = "SALTSHIP_OTLP_HEADER",
        value_delimiter = ';'
    )]
    pub otlp_header: Vec<String>,

    /// File of request headers, one KEY=VALUE (or `Key: Value`) a line, `#` comments: for
    /// tokens (e.g. `Authorization=Bearer ...`, `api-key=...`); never printed
    #[arg(long, value_name = "FILE", env = "SALTSHIP_OTLP_HEADER_FILE")]
    pub otlp_header_file: Option<PathBuf>,
}

/// The Kafka sink. The password comes from a file or the environment, never from the command
/// line.
#[derive(Args, Debug)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// The topic every event goes to
    #[arg(
        long,
        value_name = "NAME",
        env = "SALTSHIP_KAFKA_TOPIC",
        default_value = "salt-states"
    )]
    pub kafka_topic: String,

    /// Each record's key
    #[arg(
        long,
        value_enum,
        value_name = "KEY",
        env = "SALTSHIP_KAFKA_KEY",
        default_value = "event_id"
    )]
    pub kafka_key: KafkaKey,

    /// SASL authentication: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with --kafka-user (over TLS
    /// when --tls is given)
    #[arg(long, value_name = "MECHANISM", env = "SALTSHIP_KAFKA_SASL_MECHANISM", value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], requires = "kafka_user")]
    pub kafka_sasl_mechanism: Option<String>,

    /// The SASL user; the password comes from --kafka-password-file or SALTSHIP_KAFKA_PASSWORD
    #[arg(
        long,
        value_name = "USER",
        env = "SALTSHIP_KAFKA_USER",
        requires = "kafka_sasl_mechanism"
    )]
    pub kafka_user: Option<String>,

    /// File holding the password of --kafka-user
    #[arg(long, value_name = "FILE", env = "SALTSHIP_KAFKA_PASSWORD_FILE")]
    pub kafka_password_file: Option<PathBuf>,

    /// A librdkafka property for the producer, e.g. compression.type=zstd or linger.ms=20
    /// (repeatable, or several separated by ';'; applied last, so it can change saltship's own
    /// settings)
    #[arg(
        long,
        value_name = "KEY=VALUE",
        env = "SALTSHIP_KAFKA_OPTION",
        value_delimiter = ';'
    )]
    pub kafka_option: Vec<String>,
}

/// The HTTP sinks: Splunk HEC and Elasticsearch / OpenSearch. Secrets come from files or the
/// environment, never from the command line.
#[derive(Args, Debug)]
#[command(next_help_heading = "Splunk HEC and Elasticsearch")]
pub struct HttpArgs {
    /// File holding the HEC token (or set SALTSHIP_HEC_TOKEN); sent as `Authorization: Splunk`
    #[arg(long, value_name = "FILE", env = "SALTSHIP_HEC_TOKEN_FILE")]
    pub hec_token_file: Option<PathBuf>,

    /// The `sourcetype` of every HEC event
    #[arg(
        long,
        value_name = "NAME",
        env = "SALTSHIP_HEC_SOURCETYPE",
        default_value = "salt:state"
    )]
    pub hec_sourcetype: String,

    /// The Splunk index of every HEC event [default: the token's default index]
    #[arg(long, value_name = "NAME", env = "SALTSHIP_HEC_INDEX")]
    pub hec_index: Option<String>,

    /// The Elasticsearch index or data stream (the stock logs-*-* template makes a data stream)
    #[arg(
        long,
        value_name = "NAME",
        env = "SALTSHIP_ES_INDEX",
        default_value = "logs-salt.state-default"
    )]
    pub es_index: String,

    /// File holding an Elasticsearch API key (the encoded form, or set SALTSHIP_ES_API_KEY); sent
    /// as `Authorization: ApiKey`
    #[arg(long, value_name = "FILE", env = "SALTSHIP_ES_API_KEY_FILE")]
    pub es_api_key_file: Option<PathBuf>,

    /// User for HTTP basic authentication (Elasticsearch, OpenSearch); the password comes from
    /// --http-password-file or SALTSHIP_HTTP_PASSWORD
    #[arg(long, value_name = "USER", env = "SALTSHIP_HTTP_USER")]
    pub http_user: Option<String>,

    /// File holding the password of --http-user
    #[arg(long, value_name = "FILE", env = "SALTSHIP_HTTP_PASSWORD_FILE")]
    pub http_password_file: Option<PathBuf>,
}

/// TLS to the receivers.
#[derive(Args, Debug)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// Speak TLS to the receivers, checking their certificate against the system's CAs (or
    /// --tls-ca) and their name against the --target host; a TLS failure is never retried as
    /// plain text, and a certificate problem ends the run at once (exit 3)
    #[arg(long, env = "SALTSHIP_TLS", value_parser = Boolish)]
    pub tls: bool,

    /// Trust only the CA certificates in this PEM file, instead of the system's
    #[arg(long, value_name = "FILE", env = "SALTSHIP_TLS_CA", requires = "tls")]
    pub tls_ca: Option<PathBuf>,

    /// The name the receiver's certificate must carry [default: the host of --target], e.g. for
    /// a target given as an IP address that its certificate does not list
    #[arg(
        long,
        value_name = "NAME",
        env = "SALTSHIP_TLS_SERVER_NAME",
        requires = "tls"
    )]
    pub tls_server_name: Option<String>,

    /// Our client certificate (PEM, the chain after it if needed), for receivers that require
    /// one (mutual TLS); goes with --tls-key
    #[arg(
        long,
        value_name = "FILE",
        env = "SALTSHIP_TLS_CERT",
        requires_all = ["tls", "tls_key"]
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM)
    #[arg(
        long,
        value_name = "FILE",
        env = "SALTSHIP_TLS_KEY",
        requires_all = ["tls", "tls_cert"]
    )]
    pub tls_key: Option<PathBuf>,

    /// Do not check the receiver's certificate at all: anyone on the network path could pose as
    /// the receiver and read the events. For tests only; warned about at start
    #[arg(
        long,
        env = "SALTSHIP_TLS_INSECURE_SKIP_VERIFY",
        value_parser = Boolish,
        requires = "tls",
        conflicts_with = "tls_ca"
    )]
    pub tls_insecure_skip_verify: bool,
}

/// A boolean from the environment in any usual spelling (1/0, yes/no, on/off, true/false, any
/// case); a bad one is an error that names the variable.
#[derive(Clone, Copy, Debug)]
pub struct Boolish;

impl TypedValueParser for Boolish {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        let text = value.to_string_lossy();
        match parse_bool(&text) {
            Some(b) => Ok(b),
            None => {
                let name = arg.map_or_else(String::new, |a| {
                    let long = a.get_long().map(|l| format!("--{l}")).unwrap_or_default();
                    match a.get_env() {
                        Some(env) => format!("{} ({long})", env.to_string_lossy()),
                        None => long,
                    }
                });
                let msg = format!(
                    "invalid value '{text}' for {name}: use 1 or 0, yes or no, on or off, true or false\n"
                );
                Err(clap::Error::raw(ErrorKind::InvalidValue, msg).with_cmd(cmd))
            }
        }
    }
}

/// `1/0`, `yes/no`, `y/n`, `on/off`, `true/false`, in any case; anything else is `None`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "on" | "true" => Some(true),
        "0" | "no" | "n" | "off" | "false" | "" => Some(false),
        _ => None,
    }
}
