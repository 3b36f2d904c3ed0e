//! Turns the parsed command line into a validated [`Config`], once. The only module that looks
//! at the environment beyond what clap reads for us.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::delivery::{check_targets, delivery, NoTarget};
use super::parse::{hostname, parse_size, socket_addr};
use crate::cli::{
    BackfillArgs, CheckArgs, CommonArgs, DaemonArgs, FleetArgs, StartArgs, StateArgs, SyncArgs,
    WatchArgs,
};
use std::time::Duration;

use crate::format::{Format, DEFAULT_MAX_EVENT_BYTES, MIN_MAX_EVENT_BYTES};
use crate::sink::Options;
use crate::time::{parse_duration, parse_point, JidZone};

/// What every command needs, checked, in one part per stage: each stage takes only its part.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) cache: CacheOptions,
    pub(crate) filter: Filter,
    pub(crate) encode: EncodeOptions,
    /// Where and how to send, unless `dry_run` (`check` keeps it on a dry run too).
    pub(crate) delivery: Option<Options>,
    pub(crate) state: StateOptions,
    /// `watch` (and `check`, which checks them) only.
    pub(crate) daemon: Option<DaemonOptions>,
    pub(crate) dry_run: bool,
    pub(crate) quiet: bool,
    /// `--tls-insecure-skip-verify`: the receiver's certificate is not checked.
    pub(crate) tls_insecure: bool,
    /// `sync` and `watch`: where the metrics file is written.
    pub(crate) metrics_file: Option<PathBuf>,
    /// Which kinds of events are shipped (`--events`).
    pub(crate) events: crate::event::Kinds,
    /// `--return-wait`, in microseconds: how long a job waits for its minions.
    pub(crate) return_wait: i64,
    /// `sync` and `watch`: the master's pki_dir, for the silent minions gauge.
    pub(crate) pki_dir: PathBuf,
}

/// How the cache is read.
#[derive(Debug, Clone)]
pub(crate) struct CacheOptions {
    pub(crate) dir: PathBuf,
    /// No cache file larger than this is read.
    pub(crate) max_return_bytes: u64,
    /// Bytes of returns in flight across the workers.
    pub(crate) memory_budget: u64,
    pub(crate) threads: usize,
    pub(crate) jid_zone: JidZone,
    /// The master config sets `cluster_isolated_filesystem`: every master's cache holds
    /// every job, so one shipper per master ships each twice.
    pub(crate) isolated: bool,
}

/// What a run ships: the filters.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) minions: Vec<String>,
    pub(crate) funs: Vec<String>,
    pub(crate) only_failures: bool,
    /// Jobs published in `[since, until)`, microseconds since the epoch.
    pub(crate) since: Option<i64>,
    pub(crate) until: Option<i64>,
}

/// How an event is written.
#[derive(Debug, Clone)]
pub(crate) struct EncodeOptions {
    pub(crate) format: Format,
    /// Events are cut to this many bytes; `usize::MAX` when not asked for under `--dry-run`.
    pub(crate) max_event_bytes: usize,
    pub(crate) show_pillar_args: bool,
    /// Keyword arguments masked in `fun_args` beyond the built-in secret names.
    pub(crate) mask_args: Vec<String>,
    pub(crate) master_id: String,
    /// `--cluster-id` (or the master config's `cluster_id`): job and no_return ids per cluster.
    pub(crate) cluster_id: Option<String>,
    /// The sink repeats a state's own fields beside the event (OTLP's attributes), so the
    /// encoder hands them over: the `state_id` costs an allocation an event otherwise.
    pub(crate) state_keys: bool,
}

/// The checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct StateOptions {
    /// The checkpoint to record into; `None` for `backfill --no-checkpoint`.
    pub(crate) file: Option<PathBuf>,
    pub(crate) reset: bool,
    /// `sync` and `watch` without a state file start at now instead of shipping the whole
    /// cache.
    pub(crate) start_at_now: bool,
    /// The master's keep_jobs, in microseconds.
    pub(crate) keep_jobs: i64,
}

/// The options only `watch` uses.
#[derive(Debug, Clone)]
pub(crate) struct DaemonOptions {
    /// Full rescans and stats lines.
    pub(crate) rescan_interval: Duration,
    /// `--rescan-interval auto`: [`RESCAN_POLLING`] instead when discovery polls.
    pub(crate) rescan_auto: bool,
    pub(crate) stats_interval: Duration,
    /// Where to serve `GET /metrics`.
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// systemd's `$NOTIFY_SOCKET` and watchdog period (`$WATCHDOG_USEC`), when it set them.
    pub(crate) notify_socket: Option<PathBuf>,
    pub(crate) watchdog: Option<Duration>,
    pub(crate) discovery: Discovery,
    pub(crate) poll_interval: Duration,
    /// `sync --follow`: exit once nothing landed and nothing waits for this long.
    pub(crate) idle_exit: Option<Duration>,
    /// `sync --follow`: exit after this long even while the master stays busy (its timer
    /// starts the next one). `None` for `watch`, which runs until it is stopped.
    pub(crate) follow_max: Option<Duration>,
}

impl DaemonOptions {
    /// `sync --follow IDLE`: watch's loop, no stats lines, no systemd notifications (a
    /// oneshot unit), ending after `idle` of quiet.
    fn following(idle: Duration) -> DaemonOptions {
        DaemonOptions {
            rescan_interval: RESCAN_INOTIFY,
            rescan_auto: true,
            stats_interval: Duration::from_secs(24 * 3600),
            metrics_listen: None,
            notify_socket: None,
            watchdog: None,
            discovery: Discovery::Auto,
            poll_interval: Duration::from_millis(250),
            idle_exit: Some(idle),
            follow_max: Some(Duration::from_secs(3600)),
        }
    }
}

/// `--rescan-interval auto` with inotify.
const RESCAN_INOTIFY: Duration = Duration::from_secs(60);
/// `--rescan-interval auto` when polling a shared filesystem.
pub(crate) const RESCAN_POLLING: Duration = Duration::from_secs(600);

/// `--discovery`: how `watch` finds new returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discovery {
    /// Poll on a shared filesystem, inotify elsewhere.
    Auto,
    Inotify,
    Poll,
}

impl Config {
    pub(crate) fn watch(args: &WatchArgs, quiet: bool) -> Result<Config> {
        let mut config = Config::watch_options(args, quiet, false)?;
        config.read_cache(&args.common, true)?;
        Ok(config)
    }

    /// `saltship check`: the options checked as for `watch`, but the cache folder and a
    /// missing target are left to the checks themselves.
    pub(crate) fn check(args: &CheckArgs, quiet: bool) -> Result<Config> {
        let mut config = Config::watch_options(&args.watch, quiet, true)?;
        config.read_cache(&args.watch.common, false)?;
        Ok(config)
    }

    /// What needs the cache, once every option is checked: a usage error comes at once, never
    /// after a line about the cache (the zone guess warns). `verify`: the folder must be a
    /// job cache.
    fn read_cache(&mut self, args: &CommonArgs, verify: bool) -> Result<()> {
        if verify {
            crate::cache::verify(&args.cache_dir)?;
        }
        self.cache.jid_zone = crate::zone::resolve(&args.cache_dir, explicit_zone(args)?);
        Ok(())
    }

    fn watch_options(args: &WatchArgs, quiet: bool, checking: bool) -> Result<Config> {
        let mut config = Config::options(&args.common, quiet, checking)?;
        config.checkpoint(&args.state, true);
        config.start(&args.start)?;
        config.daemon = Some(daemon(&args.daemon)?);
        config.fleet(&args.daemon.fleet);
        Ok(config)
    }

    /// The metrics file and the master's keys, for `watch` and `sync`. A dry run writes no
    /// metrics file: its numbers ("events shipped") are not the live ones.
    fn fleet(&mut self, args: &FleetArgs) {
        self.metrics_file = args.metrics_file.clone().filter(|_| !self.dry_run);
        self.pki_dir = args.pki_dir.clone();
    }

    /// The checkpoint options; `record` false leaves the run without a state file.
    fn checkpoint(&mut self, args: &StateArgs, record: bool) {
        self.state.file = record.then(|| args.state_file.clone());
        self.state.reset = args.reset_state;
    }

    /// Where `sync` and `watch` start without a state file, and the master's keep_jobs.
    fn start(&mut self, args: &StartArgs) -> Result<()> {
        self.state.start_at_now = args.start_at == "now";
        self.state.keep_jobs = parse_duration(&args.keep_jobs)
            .map_err(anyhow::Error::msg)
            .context("bad --keep-jobs")?;
        Ok(())
    }

    pub(crate) fn sync(args: &SyncArgs, quiet: bool) -> Result<Config> {
        let mut config = Config::options(&args.common, quiet, false)?;
        config.checkpoint(&args.state, true);
        config.start(&args.start)?;
        config.fleet(&args.fleet);
        if let Some(idle) = &args.follow {
            config.daemon = Some(DaemonOptions::following(span(idle, "--follow")?));
        }
        config.read_cache(&args.common, true)?;
        Ok(config)
    }

    pub(crate) fn backfill(args: &BackfillArgs, quiet: bool) -> Result<Config> {
        let mut config = Config::options(&args.common, quiet, false)?;
        config.checkpoint(&args.state, !args.no_checkpoint);
        let now = chrono::Utc::now().timestamp_micros();
        let point = |t: &Option<String>, what: &str, zone| -> Result<Option<i64>> {
            t.as_deref()
                .map(|t| parse_point(t, now, zone).map_err(anyhow::Error::msg))
                .transpose()
                .with_context(|| format!("bad {what}"))
        };
        // Checked before the cache is read; a jid given as a time is read again below in
        // the zone the cache's jids are in.
        let ordered = |since: Option<i64>, until: Option<i64>| match (since, until) {
            (Some(s), Some(u)) if s >= u => bail!("--since must be before --until"),
            _ => Ok(()),
        };
        ordered(
            point(&args.since, "--since", JidZone::Utc)?,
            point(&args.until, "--until", JidZone::Utc)?,
        )?;
        config.read_cache(&args.common, true)?;
        let zone = config.cache.jid_zone;
        config.filter.since = point(&args.since, "--since", zone)?;
        config.filter.until = point(&args.until, "--until", zone)?;
        // Again in the cache's zone: a jid and a time on either side may swap only now.
        ordered(config.filter.since, config.filter.until)?;
        Ok(config)
    }

    /// Every option of [`CommonArgs`] checked; `checking` keeps the targets even on a dry run
    /// and lets them be missing.
    /// The zone is left at UTC until [`Config::read_cache`].
    fn options(args: &CommonArgs, quiet: bool, checking: bool) -> Result<Config> {
        explicit_zone(args)?;
        // A dry run checks the delivery options as a real run does, so a config can be tried
        // with it; it only does not need a target.
        let format = check_targets(args)?;
        let delivery = match delivery(args) {
            Ok(delivery) if checking || !args.dry_run => Some(delivery),
            Err(e) if !((checking || args.dry_run) && e.is::<NoTarget>()) => return Err(e),
            _ => None,
        };
        // A dry run shows everything Salt recorded unless a limit is asked for.
        let default_max = if args.dry_run {
            usize::MAX
        } else if args.sink == crate::sink::SinkKind::Relp {
            // rsyslog's imrelp cuts a frame's data past 8096 bytes and answers 200.
            crate::sink::relp::DEFAULT_MAX_EVENT_BYTES
        } else {
            DEFAULT_MAX_EVENT_BYTES
        };
        for (option, patterns) in [("--minion", &args.minion), ("--fun", &args.fun)] {
            for p in patterns {
                if let Some(why) = crate::glob::invalid(p) {
                    bail!("bad {option} '{p}': {why}");
                }
            }
        }
        let max_event_bytes = args.max_event_bytes.unwrap_or(default_max);
        if max_event_bytes < MIN_MAX_EVENT_BYTES {
            bail!("bad --max-event-bytes {max_event_bytes}: at least {MIN_MAX_EVENT_BYTES}");
        }
        let return_wait = parse_duration(&args.return_wait)
            .map_err(anyhow::Error::msg)
            .context("bad --return-wait")?;
        let master = super::master_conf::read(&args.master_config);
        Ok(Config {
            cache: CacheOptions {
                isolated: master.isolated,
                dir: args.cache_dir.clone(),
                max_return_bytes: parse_size(&args.max_return_bytes)
                    .context("bad --max-return-bytes")?,
                memory_budget: parse_size(&args.memory_budget).context("bad --memory-budget")?,
                threads: args.threads.map_or_else(
                    || std::thread::available_parallelism().map_or(1, |n| n.get()),
                    usize::from,
                ),
                jid_zone: JidZone::Utc,
            },
            filter: Filter {
                minions: args.minion.clone(),
                funs: args.fun.clone(),
                only_failures: args.only_failures,
                since: None,
                until: None,
            },
            encode: EncodeOptions {
                format,
                max_event_bytes,
                show_pillar_args: args.show_pillar_args,
                mask_args: args.mask_arg.clone(),
                master_id: args.master_id.clone().unwrap_or_else(hostname),
                cluster_id: args
                    .cluster_id
                    .clone()
                    .or(master.cluster_id)
                    .filter(|c| !c.is_empty()),
                state_keys: args.sink == crate::sink::SinkKind::Otlp,
            },
            events: crate::event::Kinds::of(&args.events),
            return_wait,
            delivery,
            state: StateOptions {
                file: None,
                reset: false,
                start_at_now: false,
                keep_jobs: 86_400 * crate::time::SECOND,
            },
            daemon: None,
            dry_run: args.dry_run,
            quiet,
            tls_insecure: args.tls.tls_insecure_skip_verify,
            metrics_file: None,
            pki_dir: PathBuf::from("/etc/salt/pki/master"),
        })
    }

    /// Whether the fleet's health is kept: something will show the metrics.
    pub(crate) fn metrics(&self) -> bool {
        self.metrics_file.is_some()
            || self
                .daemon
                .as_ref()
                .is_some_and(|d| d.metrics_listen.is_some())
    }
}

/// `--jid-timezone`: `None` for `auto`.
fn explicit_zone(args: &CommonArgs) -> Result<Option<JidZone>> {
    match args.jid_timezone.as_str() {
        "auto" => Ok(None),
        text => JidZone::parse(text).map(Some).with_context(|| {
            format!("bad --jid-timezone '{text}': use auto, utc, local or an offset like +02:00")
        }),
    }
}

impl Filter {
    /// Whether a job published at `publish` is in the asked time range. A job whose jid is not a
    /// time is in range only when no range was asked for.
    pub(crate) fn in_range(&self, publish: Option<i64>) -> bool {
        match publish {
            Some(t) => self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u),
            None => self.since.is_none() && self.until.is_none(),
        }
    }
}

/// The options only `watch` uses, and what systemd told it.
fn daemon(args: &DaemonArgs) -> Result<DaemonOptions> {
    // WATCHDOG_PID, when set, names the process systemd means.
    let ours =
        std::env::var("WATCHDOG_PID").map_or(true, |pid| pid == std::process::id().to_string());
    Ok(DaemonOptions {
        rescan_interval: match args.rescan_interval.as_str() {
            "auto" => RESCAN_INOTIFY,
            text => span(text, "--rescan-interval")?,
        },
        rescan_auto: args.rescan_interval == "auto",
        discovery: match args.discovery.as_str() {
            "inotify" => Discovery::Inotify,
            "poll" => Discovery::Poll,
            _ => Discovery::Auto,
        },
        poll_interval: span(&args.poll_interval, "--poll-interval")?,
        stats_interval: span(&args.stats_interval, "--stats-interval")?,
        metrics_listen: args
            .metrics_listen
            .as_deref()
            .map(socket_addr)
            .transpose()
            .context("bad --metrics-listen")?,
        notify_socket: std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from),
        watchdog: std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && ours)
            .map(Duration::from_micros),
        idle_exit: None,
        follow_max: None,
    })
}

/// A duration option that must be more than zero.
fn span(text: &str, what: &str) -> Result<Duration> {
    let micros = parse_duration(text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("bad {what}"))?;
    if micros <= 0 {
        bail!("bad {what}: must be more than zero");
    }
    Ok(Duration::from_micros(micros as u64))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    use super::*;

    fn daemon_of(args: &[&str]) -> DaemonOptions {
        let jobs = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/jobs");
        let mut argv = vec!["saltship"];
        argv.extend_from_slice(args);
        argv.extend(["--cache-dir", jobs, "--target", "127.0.0.1:9"]);
        let cli = Cli::try_parse_from(argv).expect("valid arguments");
        let config = match &cli.command {
            Command::Watch(a) => Config::watch(a, true),
            Command::Sync(a) => Config::sync(a, true),
            _ => unreachable!("watch or sync"),
        };
        config
            .expect("a valid config")
            .daemon
            .expect("daemon options")
    }

    #[test]
    fn only_sync_follow_ends_by_itself_the_daemon_runs_until_stopped() {
        let watch = daemon_of(&["watch"]);
        assert_eq!((watch.idle_exit, watch.follow_max), (None, None));
        let follow = daemon_of(&["sync", "--follow", "1m"]);
        assert_eq!(follow.idle_exit, Some(Duration::from_secs(60)));
        assert_eq!(follow.follow_max, Some(Duration::from_secs(3600)));
    }
}
