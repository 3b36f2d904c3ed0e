//! Turns the parsed command line into a validated [`Config`], once. The only module that looks
//! at the environment beyond what clap reads for us.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::delivery::{check_targets, delivery, NoTarget};
use super::parse::{hostname, parse_size, socket_addr};
use crate::cli::{BackfillArgs, CheckArgs, CommonArgs, DaemonArgs, StateArgs, SyncArgs, WatchArgs};
use std::time::Duration;

use crate::format::{Format, DEFAULT_MAX_EVENT_BYTES, MIN_MAX_EVENT_BYTES};
use crate::sink::Options;
use crate::time::{parse_duration, parse_point, JidZone};

/// What every command needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub cache_dir: PathBuf,
    pub dry_run: bool,
    /// Where and how to send, unless `dry_run` (`check` keeps it on a dry run too).
    pub delivery: Option<Options>,
    /// `--tls-insecure-skip-verify`: the receiver's certificate is not checked.
    pub tls_insecure: bool,
    pub format: Format,
    pub threads: usize,
    /// Events are cut to this many bytes; `usize::MAX` when not asked for under `--dry-run`.
    pub max_event_bytes: usize,
    pub minions: Vec<String>,
    pub funs: Vec<String>,
    pub only_failures: bool,
    pub show_pillar_args: bool,
    /// Keyword arguments masked in `fun_args` beyond the built-in secret names.
    pub mask_args: Vec<String>,
    /// No cache file larger than this is read.
    pub max_return_bytes: u64,
    /// Bytes of returns in flight across the workers.
    pub memory_budget: u64,
    pub master_id: String,
    pub jid_zone: JidZone,
    /// Jobs published in `[since, until)`, microseconds since the epoch.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub quiet: bool,
    /// The checkpoint to record into; `None` for `backfill --no-checkpoint`.
    pub state_file: Option<PathBuf>,
    pub reset_state: bool,
    /// `sync` without a state file starts at now instead of shipping the whole cache.
    pub start_at_now: bool,
    /// The master's keep_jobs, in microseconds.
    pub keep_jobs: i64,
    /// `watch`: full rescans, stats lines, the metrics file.
    pub rescan_interval: Duration,
    pub stats_interval: Duration,
    pub metrics_file: Option<PathBuf>,
    /// `watch`: where to serve `GET /metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// systemd's `$NOTIFY_SOCKET` and watchdog period (`$WATCHDOG_USEC`), when it set them.
    pub notify_socket: Option<PathBuf>,
    pub watchdog: Option<Duration>,
    /// Which kinds of events are shipped (`--events`).
    pub events: crate::event::Kinds,
    /// `--return-wait`, in microseconds: how long a job waits for its minions.
    pub return_wait: i64,
}

impl Config {
    pub fn watch(args: &WatchArgs, quiet: bool) -> Result<Config> {
        let mut config = Config::common(&args.common, quiet)?;
        config.checkpoint(&args.state, true)?;
        config.daemon(&args.daemon)?;
        config.notify_socket = std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from);
        // WATCHDOG_PID, when set, names the process systemd means.
        let ours =
            std::env::var("WATCHDOG_PID").map_or(true, |pid| pid == std::process::id().to_string());
        config.watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && ours)
            .map(Duration::from_micros);
        Ok(config)
    }

    /// The options only `watch` uses.
    fn daemon(&mut self, args: &DaemonArgs) -> Result<()> {
        let span = |text: &str, what: &str| -> Result<Duration> {
            let micros = parse_duration(text)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("bad {what}"))?;
            if micros <= 0 {
                bail!("bad {what}: must be more than zero");
            }
            Ok(Duration::from_micros(micros as u64))
        };
        self.rescan_interval = span(&args.rescan_interval, "--rescan-interval")?;
        self.stats_interval = span(&args.stats_interval, "--stats-interval")?;
        self.metrics_file = args.metrics_file.clone();
        self.metrics_listen = args
            .metrics_listen
            .as_deref()
            .map(socket_addr)
            .transpose()
            .context("bad --metrics-listen")?;
        Ok(())
    }

    /// The checkpoint options; `record` false leaves the run without a state file.
    fn checkpoint(&mut self, args: &StateArgs, record: bool) -> Result<()> {
        self.state_file = record.then(|| args.state_file.clone());
        self.reset_state = args.reset_state;
        self.keep_jobs = parse_duration(&args.keep_jobs)
            .map_err(anyhow::Error::msg)
            .context("bad --keep-jobs")?;
        Ok(())
    }

    pub fn sync(args: &SyncArgs, quiet: bool) -> Result<Config> {
        let mut config = Config::common(&args.common, quiet)?;
        config.checkpoint(&args.state, true)?;
        config.start_at_now = args.start_at == "now";
        config.metrics_file = args.metrics_file.clone();
        Ok(config)
    }

    pub fn backfill(args: &BackfillArgs, quiet: bool) -> Result<Config> {
        let mut config = Config::common(&args.common, quiet)?;
        config.checkpoint(&args.state, !args.no_checkpoint)?;
        let now = chrono::Utc::now().timestamp_micros();
        let point = |t: &Option<String>, what: &str| -> Result<Option<i64>> {
            t.as_deref()
                .map(|t| parse_point(t, now, config.jid_zone).map_err(anyhow::Error::msg))
                .transpose()
                .with_context(|| format!("bad {what}"))
        };
        config.since = point(&args.since, "--since")?;
        config.until = point(&args.until, "--until")?;
        if let (Some(s), Some(u)) = (config.since, config.until) {
            if s >= u {
                bail!("--since must be before --until");
            }
        }
        Ok(config)
    }

    /// `saltship check`: the options checked as for a run, but the cache folder and a missing
    /// target are left to the checks themselves.
    pub fn check(args: &CheckArgs, quiet: bool) -> Result<Config> {
        let mut config = Config::options(&args.common, quiet, true)?;
        config.checkpoint(&args.state, true)?;
        config.daemon(&args.daemon)?;
        Ok(config)
    }

    fn common(args: &CommonArgs, quiet: bool) -> Result<Config> {
        crate::cache::verify(&args.cache_dir)?;
        Config::options(args, quiet, false)
    }

    /// Every option of [`CommonArgs`] checked; `checking` keeps the targets even on a dry run
    /// and lets them be missing.
    fn options(args: &CommonArgs, quiet: bool, checking: bool) -> Result<Config> {
        let jid_zone = JidZone::parse(&args.jid_timezone).with_context(|| {
            format!(
                "bad --jid-timezone '{}': use utc, local or an offset like +02:00",
                args.jid_timezone
            )
        })?;
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
        } else {
            DEFAULT_MAX_EVENT_BYTES
        };
        let max_event_bytes = args.max_event_bytes.unwrap_or(default_max);
        if max_event_bytes < MIN_MAX_EVENT_BYTES {
            bail!("bad --max-event-bytes {max_event_bytes}: at least {MIN_MAX_EVENT_BYTES}");
        }
        let return_wait = parse_duration(&args.return_wait)
            .map_err(anyhow::Error::msg)
            .context("bad --return-wait")?;
        Ok(Config {
            events: crate::event::Kinds::of(&args.events),
            return_wait,
            cache_dir: args.cache_dir.clone(),
            dry_run: args.dry_run,
            delivery,
            tls_insecure: args.tls.tls_insecure_skip_verify,
            format,
            threads: args.threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                usize::from,
            ),
            max_event_bytes,
            minions: args.minion.clone(),
            funs: args.fun.clone(),
            only_failures: args.only_failures,
            show_pillar_args: args.show_pillar_args,
            mask_args: args.mask_arg.clone(),
            max_return_bytes: parse_size(&args.max_return_bytes)
                .context("bad --max-return-bytes")?,
            memory_budget: parse_size(&args.memory_budget).context("bad --memory-budget")?,
            master_id: args.master_id.clone().unwrap_or_else(hostname),
            jid_zone,
            since: None,
            until: None,
            quiet,
            state_file: None,
            reset_state: false,
            start_at_now: false,
            keep_jobs: 86_400 * crate::time::SECOND,
            rescan_interval: Duration::from_secs(60),
            stats_interval: Duration::from_secs(300),
            metrics_file: None,
            metrics_listen: None,
            notify_socket: None,
            watchdog: None,
        })
    }

    /// Whether a job published at `publish` is in the asked time range. A job whose jid is not a
    /// time is in range only when no range was asked for.
    pub fn in_range(&self, publish: Option<i64>) -> bool {
        match publish {
            Some(t) => self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u),
            None => self.since.is_none() && self.until.is_none(),
        }
    }

    /// Whether the fleet's health is kept: something will show the metrics.
    pub fn metrics(&self) -> bool {
        self.metrics_file.is_some() || self.metrics_listen.is_some()
    }
}
