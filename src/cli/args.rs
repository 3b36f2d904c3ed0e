//! The command line, and nothing else: doc comments become `--help` and the man page.
//! Every option has a `SALTSHIP_*` environment twin for systemd's `EnvironmentFile=`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::parse::Boolish;
use super::receivers::{HttpArgs, KafkaArgs, OtlpArgs, RelpArgs, TlsArgs};

pub(crate) use crate::event::EventKind;
use crate::format::Format;
use crate::sink::SinkKind;

use super::exit_status;

/// Ship every SaltStack state result from the master's job cache to your log aggregator.
///
/// saltship reads the Salt master's job cache (the local_cache returner's files), turns each
/// state result (one per state, per minion, per run) into one JSON event, and prints or sends it.
#[derive(Parser, Debug)]
#[command(name = "saltship", version, after_help = exit_status::ALL, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,

    /// Say what saltship decides on stderr: jobs skipped and why, connections, confirmations,
    /// checkpoint saves (-vv: more detail); other libraries' logs only through RUST_LOG
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Only errors on stderr: no warnings, no summary, no progress bars
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,

    /// Read the options from this TOML file: one key per long option (cache-dir = "...",
    /// target = ["a:1", "b:2"], only-failures = true); flags and the environment win over it. A
    /// missing default file is fine, a missing named one an error
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "SALTSHIP_CONFIG",
        default_value = super::file::DEFAULT_PATH
    )]
    pub(crate) config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Catch up like sync, then follow the cache (inotify) and ship each state result as it
    /// lands: the daemon for systemd (Type=notify) or any supervisor; stops cleanly on SIGTERM
    #[command(after_help = exit_status::WATCH)]
    Watch(WatchArgs),
    /// Ship every return the checkpoint does not hold yet, confirm delivery, record it, exit:
    /// for cron, a systemd timer or a path unit
    #[command(after_help = exit_status::SYNC)]
    Sync(SyncArgs),
    /// Replay the jobs in the cache (all, or a time range), printing or sending their events,
    /// and record them in the checkpoint so sync and watch do not ship them again
    #[command(after_help = exit_status::BACKFILL)]
    Backfill(BackfillArgs),
    /// Test the configuration without sending an event: the cache folder, the state file and
    /// its lock, each target (TLS handshake and certificate included), the inotify watch limit
    /// (and the metrics file, when given); --offline leaves the targets out. Takes watch's
    /// options and environment. Changes no file and makes none (no lock file either). One
    /// line per check; exit 0 only when every check passes
    #[command(after_help = exit_status::CHECK)]
    Check(CheckArgs),
    /// Print the effective configuration (watch's options), each value with where it came from:
    /// flag, env SALTSHIP_*, the config file and its line, or default; secrets as ***. Exit 2
    /// when it is not valid
    #[command(name = "config")]
    ShowConfig(CheckArgs),
}

/// The options of `watch` (and `sync`, whose options are a part of them), checked as they are.
#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) daemon: DaemonArgs,

    #[command(flatten)]
    pub(crate) state: StateArgs,

    #[command(flatten)]
    pub(crate) common: CommonArgs,

    /// Check the set-up only: the cache, the state file and its lock, the inotify limit and
    /// the metrics file; the targets are parsed but not contacted. For a unit's
    /// ExecStartPre=, so a receiver that is down does not keep watch from starting (the cache
    /// is the buffer)
    #[arg(long, visible_alias = "no-targets", env = "SALTSHIP_CHECK_OFFLINE", value_parser = Boolish)]
    pub(crate) offline: bool,
}

#[derive(Args, Debug)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    pub(crate) daemon: DaemonArgs,

    #[command(flatten)]
    pub(crate) state: StateArgs,

    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// What only the daemon uses (and `check` checks).
#[derive(Args, Debug)]
pub(crate) struct DaemonArgs {
    /// Scan the whole cache this often, for anything inotify missed
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_RESCAN_INTERVAL",
        default_value = "60s"
    )]
    pub(crate) rescan_interval: String,

    /// Log a one-line summary (returns, events, failures, reconnects, lag) this often
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_STATS_INTERVAL",
        default_value = "5m"
    )]
    pub(crate) stats_interval: String,

    /// Write the Prometheus metrics (saltship's own and the fleet's health) here every 10 s,
    /// atomically, for node_exporter's textfile collector
    #[arg(long, value_name = "PATH", env = "SALTSHIP_METRICS_FILE")]
    pub(crate) metrics_file: Option<PathBuf>,

    /// Serve the same metrics over HTTP at GET /metrics on this address (e.g. 127.0.0.1:9617)
    #[arg(long, value_name = "ADDR:PORT", env = "SALTSHIP_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<String>,

    /// The master's pki_dir: its minions/ folder holds the accepted keys, for the silent
    /// minions gauge (an accepted key with no return in the cache). Unreadable: one warning
    #[arg(
        long,
        value_name = "DIR",
        env = "SALTSHIP_PKI_DIR",
        default_value = "/etc/salt/pki/master"
    )]
    pub(crate) pki_dir: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct SyncArgs {
    /// Without a state file: ship the whole cache (beginning) or only what arrives from now on
    #[arg(long, value_name = "WHEN", env = "SALTSHIP_START_AT", default_value = "beginning", value_parser = ["beginning", "now"])]
    pub(crate) start_at: String,

    /// Write the Prometheus metrics (the run's counts and the fleet's health) here at the end of
    /// the run, atomically, for node_exporter's textfile collector
    #[arg(long, value_name = "PATH", env = "SALTSHIP_METRICS_FILE")]
    pub(crate) metrics_file: Option<PathBuf>,

    /// The master's pki_dir: its minions/ folder holds the accepted keys, for the silent
    /// minions gauge (an accepted key with no return in the cache). Unreadable: one warning
    #[arg(
        long,
        value_name = "DIR",
        env = "SALTSHIP_PKI_DIR",
        default_value = "/etc/salt/pki/master"
    )]
    pub(crate) pki_dir: PathBuf,

    #[command(flatten)]
    pub(crate) state: StateArgs,

    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Where shipped returns are recorded.
#[derive(Args, Debug)]
pub(crate) struct StateArgs {
    /// The checkpoint: which returns were shipped (a lock file sits beside it)
    #[arg(
        long,
        value_name = "FILE",
        env = "SALTSHIP_STATE_FILE",
        default_value = "/var/lib/saltship/state"
    )]
    pub(crate) state_file: PathBuf,

    /// Start over with an empty checkpoint when the state file cannot be read
    #[arg(long, env = "SALTSHIP_RESET_STATE", value_parser = Boolish)]
    pub(crate) reset_state: bool,

    /// The master's keep_jobs: warn when unshipped returns get close to this age, at which the
    /// master deletes them
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_KEEP_JOBS",
        default_value = "24h"
    )]
    pub(crate) keep_jobs: String,
}

#[derive(Args, Debug)]
pub(crate) struct BackfillArgs {
    /// Only jobs published at or after T: RFC 3339, a date (2026-12-01: midnight UTC; 2026-12-01+02:00), a jid, or an age such as 24h or 7d
    #[arg(long, value_name = "T", env = "SALTSHIP_SINCE")]
    pub(crate) since: Option<String>,

    /// Only jobs published before T: RFC 3339, a date (midnight UTC, or 2026-12-01+02:00), a jid, or an age such as 24h or 7d
    #[arg(long, value_name = "T", env = "SALTSHIP_UNTIL")]
    pub(crate) until: Option<String>,

    /// Do not record what is shipped in the checkpoint (a --dry-run never does)
    #[arg(long, env = "SALTSHIP_NO_CHECKPOINT", value_parser = Boolish)]
    pub(crate) no_checkpoint: bool,

    #[command(flatten)]
    pub(crate) state: StateArgs,

    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

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
        value_delimiter = ','
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
    /// 10000 when sending, which a stock Splunk TCP input keeps whole; no limit with --dry-run]
    #[arg(long, value_name = "N", env = "SALTSHIP_MAX_EVENT_BYTES")]
    pub(crate) max_event_bytes: Option<usize>,

    /// Give up (exit 3) when no receiver took or acknowledged anything for this long, e.g. 90s,
    /// 5m; every wait (connect, handshake, write, acknowledgement, close) ends by it
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_DELIVER_TIMEOUT",
        default_value = "5m"
    )]
    pub(crate) deliver_timeout: String,

    /// Send at most this many events per second, so a large backfill does not flood the receiver
    #[arg(long, value_name = "EVENTS_PER_S", env = "SALTSHIP_MAX_RATE")]
    pub(crate) max_rate: Option<f64>,

    /// Send a batch that is still filling once its first event waited this long, e.g. 20ms; it
    /// goes at once when no more input is ready (the end of each pass) or while --max-rate waits
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_LINGER",
        default_value = "50ms"
    )]
    pub(crate) linger: String,

    /// HTTP sinks: keep every request body within N bytes, envelopes counted [default: 524288
    /// for splunk-hec, 1048576 for elasticsearch]; a 413 halves the batch
    #[arg(long, value_name = "N", env = "SALTSHIP_MAX_REQUEST_BYTES")]
    pub(crate) max_request_bytes: Option<usize>,

    /// Only these minions (glob, repeatable; an orchestration's steps carry the master's id)
    #[arg(
        long,
        value_name = "GLOB",
        env = "SALTSHIP_MINION",
        value_delimiter = ','
    )]
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
    #[arg(
        long,
        value_name = "NAME",
        env = "SALTSHIP_MASK_ARG",
        value_delimiter = ','
    )]
    pub(crate) mask_arg: Vec<String>,

    /// Read no cache file larger than this (a return or a .load.p): it is named in a warning,
    /// counted as failed and tried again at the next run. Bytes, or with K, M, G (KiB...)
    #[arg(
        long,
        value_name = "SIZE",
        env = "SALTSHIP_MAX_RETURN_BYTES",
        default_value = "256M"
    )]
    pub(crate) max_return_bytes: String,

    /// Memory for the returns being decoded and sent at once, across the threads; a return
    /// needing more is handled alone. Bytes, or with K, M, G (KiB...)
    #[arg(
        long,
        value_name = "SIZE",
        env = "SALTSHIP_MEMORY_BUDGET",
        default_value = "64M"
    )]
    pub(crate) memory_budget: String,

    /// Threads that decode and encode returns [default: one per core]; events still go out in
    /// jid order
    #[arg(long, value_name = "N", env = "SALTSHIP_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,

    /// The `master` field of every event [default: this host's name]
    #[arg(long, value_name = "ID", env = "SALTSHIP_MASTER_ID")]
    pub(crate) master_id: Option<String>,

    /// Zone of the jids: auto (read from the job folders' times: UTC for Salt 3000 and later,
    /// the master's offset for 2019.2 and earlier), utc, local (this host's zone), or a fixed
    /// offset like +05:30
    #[arg(
        long,
        value_name = "ZONE",
        env = "SALTSHIP_JID_TIMEZONE",
        default_value = "auto"
    )]
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
    #[arg(
        long,
        value_name = "DURATION",
        env = "SALTSHIP_RETURN_WAIT",
        default_value = "10m"
    )]
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
