//! The command line, and nothing else: the commands and their own options (the shared ones
//! are in `common.rs`, the receivers' in `receivers.rs`); doc comments become `--help` and the
//! man page.
//! Every option has a `SALTSHIP_*` environment twin for systemd's `EnvironmentFile=`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub(crate) use super::common::CommonArgs;
use super::parse::Boolish;

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
    /// Catch up like sync, then follow the cache (inotify, or polling on a shared filesystem)
    /// and ship each state result as it lands: the daemon for systemd (Type=notify) or any
    /// supervisor; stops cleanly on SIGTERM. While another saltship holds the state file's
    /// lease (a master cluster's other master, one state file on the shared volume) it stands
    /// by, reports READY with a STATUS line, and takes over when that one dies or hangs
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
    pub(crate) watch: WatchArgs,

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
    pub(crate) start: StartArgs,

    #[command(flatten)]
    pub(crate) daemon: DaemonArgs,

    #[command(flatten)]
    pub(crate) state: StateArgs,

    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct SyncArgs {
    #[command(flatten)]
    pub(crate) start: StartArgs,

    /// After shipping, follow the cache (inotify, as watch does) and ship each return as it
    /// lands, until nothing landed and nothing waits for confirmation for DURATION (at most an
    /// hour in all); then exit. For a path or timer unit: each return ships within a second
    /// while the master is busy, and nothing runs while it is quiet
    #[arg(long, value_name = "DURATION", env = "SALTSHIP_FOLLOW")]
    pub(crate) follow: Option<String>,

    #[command(flatten)]
    pub(crate) fleet: FleetArgs,

    #[command(flatten)]
    pub(crate) state: StateArgs,

    #[command(flatten)]
    pub(crate) common: CommonArgs,
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

/// What `sync` and `watch` share beyond the checkpoint (a backfill replays history on purpose,
/// so neither applies to it): where to start without a state file, and the master's keep_jobs.
#[derive(Args, Debug)]
pub(crate) struct StartArgs {
    /// Without a state file: ship the whole cache (beginning) or only what arrives from now on
    /// (what is in the cache at the start is recorded as done)
    #[arg(long, value_name = "WHEN", env = "SALTSHIP_START_AT", default_value = "beginning", value_parser = ["beginning", "now"])]
    pub(crate) start_at: String,

    /// The master's keep_jobs: warn when unshipped returns get close to this age, at which the
    /// master deletes them
    #[arg(long, value_name = "DURATION", env = "SALTSHIP_KEEP_JOBS", default_value = "24h")]
    pub(crate) keep_jobs: String,
}

/// What only the daemon uses (and `check` checks).
#[derive(Args, Debug)]
pub(crate) struct DaemonArgs {
    /// Scan the whole cache this often, for anything inotify or polling missed; auto: 60s with
    /// inotify, 10m when polling (a rescan of a shared filesystem costs a round trip per job
    /// folder, and polling already finds what lands in the open ones)
    #[arg(long, value_name = "DURATION", env = "SALTSHIP_RESCAN_INTERVAL", default_value = "auto")]
    pub(crate) rescan_interval: String,

    /// How new returns are found: inotify (a local cache), poll (the folders a return can
    /// still land in are looked at every --poll-interval: for a cache on a shared filesystem,
    /// where inotify misses what other hosts write), or auto: poll on FUSE (GlusterFS), NFS,
    /// CIFS and the like, inotify elsewhere
    #[arg(long, value_name = "HOW", env = "SALTSHIP_DISCOVERY", default_value = "auto", value_parser = ["auto", "inotify", "poll"])]
    pub(crate) discovery: String,

    /// When polling (--discovery): how often the open folders are looked at
    #[arg(long, value_name = "DURATION", env = "SALTSHIP_POLL_INTERVAL", default_value = "250ms")]
    pub(crate) poll_interval: String,

    /// Log a one-line summary (returns, events, failures, reconnects, lag) this often
    #[arg(long, value_name = "DURATION", env = "SALTSHIP_STATS_INTERVAL", default_value = "5m")]
    pub(crate) stats_interval: String,

    /// Serve the metrics of --metrics-file over HTTP at GET /metrics on this address (e.g.
    /// 127.0.0.1:9617)
    #[arg(long, value_name = "ADDR:PORT", env = "SALTSHIP_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<String>,

    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
}

/// The metrics file and the fleet gauges, for `watch` and `sync`.
#[derive(Args, Debug)]
pub(crate) struct FleetArgs {
    /// Write the Prometheus metrics (saltship's own and the fleet's health) here, atomically,
    /// for node_exporter's textfile collector: every 10 s under watch, at the end of a sync
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
}
