//! The options every command shares: the cache, the receiver and its format, delivery, the
//! filters, the events, the threads and the diagnostics. Doc comments become `--help` and the
//! man page; every option has a `SALTSHIP_*` environment twin.

use std::path::PathBuf;

use clap::Args;

use super::parse::Boolish;
use super::receivers::{HttpArgs, KafkaArgs, OtlpArgs, RelpArgs, TlsArgs};
use crate::event::EventKind;
use crate::format::Format;
use crate::sink::SinkKind;

/// Options shared by every command.
#[derive(Args, Debug)]
pub(crate) struct CommonArgs {
    /// The master's job cache folder
    #[arg(
        long,
        value_name = "DIR",
        env = "SALTSHIP_CACHE_DIR",
        default_value = "/var/cache/salt/master/jobs"
    )]
    pub(crate) cache_dir: PathBuf,

    /// The receiver's protocol. tcp: lines over TCP or TLS; delivery is confirmed by a graceful
    /// close (our FIN, then the receiver's EOF), which proves the receiver's socket read every
    /// byte but not that an application stored it, and holds only with no proxy or load
    /// balancer in between: one closes after us whatever its backend does (one that closes at
    /// once, with no backend up, is caught), and so does a receiver that half-closes without
    /// reading; behind a proxy use relp, splunk-hec or elasticsearch. relp: rsyslog's RELP, each
    /// event answered (rsp 200) by rsyslog itself, so it holds through a proxy too. splunk-hec,
    /// elasticsearch, kafka and otlp are acknowledged by the receiver itself (indexer
    /// acknowledgement; per-item bulk status; a delivery report per record with acks=all; a
    /// 2xx with no rejected log record)
    #[arg(long, value_enum, env = "SALTSHIP_SINK", default_value = "tcp")]
    pub(crate) sink: SinkKind,

    /// Send the events to this receiver: HOST:PORT for --sink tcp and relp, a URL (http:// or
    /// https://HOST:PORT, optionally with a path, no query or fragment) for splunk-hec,
    /// elasticsearch and otlp; repeat for failover, tried in order. For kafka: HOST:PORT
    /// bootstrap brokers (one list, not failover). A URL's user:password is sent as basic
    /// authentication and shown as user:*** in every message
    #[arg(
        long,
        value_name = "TARGET",
        env = "SALTSHIP_TARGET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) target: Vec<String>,

    /// Print the events to stdout instead of sending them (nothing is sent or recorded)
    #[arg(long, env = "SALTSHIP_DRY_RUN", value_parser = Boolish)]
    pub(crate) dry_run: bool,

    /// Wire format: json (one object per line), ecs (Elastic Common Schema, one per line),
    /// gelf (GELF 1.1, NUL-terminated), syslog (RFC 5424, octet-counted); the HTTP sinks
    /// (otlp: as each record's body) and kafka take json or ecs, relp json, ecs or syslog (one
    /// event per RELP frame, unframed) [default: json; ecs for --sink elasticsearch]
    #[arg(long, value_enum, env = "SALTSHIP_FORMAT")]
    pub(crate) format: Option<Format>,

    /// Cut events longer than N bytes (biggest strings first, marked "truncated": true) [default:
    /// 10000 when sending, which a stock Splunk TCP input keeps whole; 8000 for --sink relp,
    /// whose frames rsyslog's imrelp (maxDataSize 8096) then keeps whole; no limit with --dry-run]
    #[arg(long, value_name = "N", env = "SALTSHIP_MAX_EVENT_BYTES")]
    pub(crate) max_event_bytes: Option<usize>,

    /// Give up (exit 3) when no receiver took or acknowledged anything for this long, e.g. 90s,
    /// 5m; every wait (connect, handshake, write, acknowledgement, close) ends by it
    #[arg(long, value_name = "DURATION", env = "SALTSHIP_DELIVER_TIMEOUT", default_value = "5m")]
    pub(crate) deliver_timeout: String,

    /// Send at most this many events per second, so a large backfill does not flood the receiver
    #[arg(long, value_name = "EVENTS_PER_S", env = "SALTSHIP_MAX_RATE")]
    pub(crate) max_rate: Option<f64>,

    /// Send a batch that is still filling once its first event waited this long, e.g. 20ms; it
    /// goes at once when no more input is ready (the end of each pass) or while --max-rate waits
    #[arg(long, value_name = "DURATION", env = "SALTSHIP_LINGER", default_value = "50ms")]
    pub(crate) linger: String,

    /// HTTP sinks: keep every request body within N bytes, envelopes counted (for otlp, the
    /// attributes too, before compression) [default: 524288 for splunk-hec and otlp, 1048576
    /// for elasticsearch]; a 413 halves the batch, down to one event, which is then rejected
    #[arg(long, value_name = "N", env = "SALTSHIP_MAX_REQUEST_BYTES")]
    pub(crate) max_request_bytes: Option<usize>,

    /// Only these minions (glob, repeatable; an orchestration's steps carry the master's id)
    #[arg(long, value_name = "GLOB", env = "SALTSHIP_MINION", value_delimiter = ',')]
    pub(crate) minion: Vec<String>,

    /// Only jobs of these functions (glob, repeatable), e.g. 'state.apply' or 'runner.state.*'
    #[arg(long, value_name = "GLOB", env = "SALTSHIP_FUN", value_delimiter = ',')]
    pub(crate) fun: Vec<String>,

    /// Only failed states (result false) and error returns; test=True pending states are not failures
    #[arg(long, env = "SALTSHIP_ONLY_FAILURES", value_parser = Boolish)]
    pub(crate) only_failures: bool,

    /// Ship the values of a `pillar=` argument in fun_args instead of masking them
    #[arg(long, env = "SALTSHIP_SHOW_PILLAR_ARGS", value_parser = Boolish)]
    pub(crate) show_pillar_args: bool,

    /// Also mask the values of keyword arguments with this name in fun_args (repeatable). Always
    /// masked: password, passwd, pass, passphrase, sshpass, secret, secret_key, access_key,
    /// token, bearer, auth, authorization, credential, credentials, api_key, apikey, private_key,
    /// ssh_key, key, and any name that ends in one of them after '_' or '-' (db_password,
    /// auth-token), in any case, at any depth; and pillar, unless --show-pillar-args
    #[arg(long, value_name = "NAME", env = "SALTSHIP_MASK_ARG", value_delimiter = ',')]
    pub(crate) mask_arg: Vec<String>,

    /// Read no cache file larger than this (a return or a .load.p): it is named in a warning,
    /// counted as failed and tried again at the next run. Bytes, or with K, M, G (KiB...)
    #[arg(long, value_name = "SIZE", env = "SALTSHIP_MAX_RETURN_BYTES", default_value = "256M")]
    pub(crate) max_return_bytes: String,

    /// Memory for the returns being decoded and sent at once, across the threads; a return
    /// needing more is handled alone. Bytes, or with K, M, G (KiB...)
    #[arg(long, value_name = "SIZE", env = "SALTSHIP_MEMORY_BUDGET", default_value = "64M")]
    pub(crate) memory_budget: String,

    /// Threads that decode and encode returns [default: one per core]; events still go out in
    /// jid order
    #[arg(long, value_name = "N", env = "SALTSHIP_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,

    /// The `master` field of every event [default: this host's name]
    #[arg(long, value_name = "ID", env = "SALTSHIP_MASTER_ID")]
    pub(crate) master_id: Option<String>,

    /// A Salt master cluster's `cluster_id`: job and no_return events get the same `event_id`
    /// whichever master's saltship ships them (state events have that anyway), and a
    /// `cluster_id` field [default: `cluster_id` from --master-config, when it sets one]
    #[arg(long, value_name = "ID", env = "SALTSHIP_CLUSTER_ID")]
    pub(crate) cluster_id: Option<String>,

    /// The Salt master's config (and its master.d/*.conf beside it), read for `cluster_id`
    /// and `cluster_isolated_filesystem` only; a file that is not there sets nothing
    #[arg(
        long,
        value_name = "PATH",
        env = "SALTSHIP_MASTER_CONFIG",
        default_value = "/etc/salt/master"
    )]
    pub(crate) master_config: PathBuf,

    /// Zone of the jids: auto (read from the job folders' times: UTC for Salt 3000 and later,
    /// the master's offset for 2019.2 and earlier), utc, local (this host's zone), or a fixed
    /// offset like +05:30
    #[arg(long, value_name = "ZONE", env = "SALTSHIP_JID_TIMEZONE", default_value = "auto")]
    pub(crate) jid_timezone: String,

    /// Which events to ship (comma list): state (each state result), job (one per job: who ran
    /// what on which target, which minions returned), no-return (one per targeted minion that
    /// never returned), all. See docs/events.md
    #[arg(
        long,
        value_name = "LIST",
        env = "SALTSHIP_EVENTS",
        value_delimiter = ',',
        default_value = "state"
    )]
    pub(crate) events: Vec<EventKind>,

    /// How long after its publish a job waits for its minions: then its job event and its
    /// no_return events are shipped (sooner once every targeted minion returned)
    #[arg(long, value_name = "DURATION", env = "SALTSHIP_RETURN_WAIT", default_value = "10m")]
    pub(crate) return_wait: String,

    #[command(flatten)]
    pub(crate) tls: TlsArgs,

    #[command(flatten)]
    pub(crate) http: HttpArgs,

    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,

    #[command(flatten)]
    pub(crate) otlp: OtlpArgs,

    #[command(flatten)]
    pub(crate) relp: RelpArgs,
}
