//! The command layer: the only place the stages meet the whole [`Config`]. Parses the command
//! line, runs the command, and maps how it ended to the exit status, here and nowhere else.

pub(crate) mod check;
pub(crate) mod pipeline;
pub(crate) mod progress;
pub(crate) mod ship;
pub(crate) mod show;
pub(crate) mod watch;

use std::process::ExitCode;

use log::{error, info, warn};

use crate::checkpoint::{Busy, Checkpoint};
use crate::cli::{Command, Config};
use crate::logging;
use ship::{Mode, Totals};

/// How a run ended, as the process exit status (the man page's EXIT STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Done = 0,
    /// Finished, but some files failed or events were rejected (or a check failed).
    FilesFailed = 1,
    /// A usage or configuration error, found before anything was shipped.
    Usage = 2,
    /// Could not deliver, or could not record what was delivered.
    Undelivered = 3,
}

/// What a command did, when it ran to its end.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A run shipped (or printed) what it found.
    Shipped(Totals),
    /// Another instance holds the checkpoint's lock: nothing to do.
    Busy,
    /// `sync --start-at now` on a first run: the cache so far recorded as done.
    StartedAtNow,
    /// `check`: whether every check passed.
    Checked(bool),
}

/// Why a command stopped short.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A bad option, or something the configuration names that cannot be set up.
    Usage(anyhow::Error),
    /// A receiver did not take the events, or the checkpoint could not record them: what was
    /// done, and why it stopped.
    Undelivered(Totals, String),
    /// The checkpoint could not be saved before anything was shipped.
    Unrecorded(anyhow::Error),
}

/// Parses the command line, runs the command, and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    let parsed = match crate::cli::file::parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(line) => {
            logging::init(0, false);
            error!("{line}");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    logging::init(parsed.cli.verbose, parsed.cli.quiet);
    for warning in &parsed.warnings {
        warn!("{warning}");
    }
    ExitCode::from(exit(run(&parsed)) as u8)
}

/// The one place an outcome becomes an exit status (and its last log lines).
fn exit(ended: Result<Outcome, Failure>) -> Exit {
    match ended {
        Ok(Outcome::Busy | Outcome::StartedAtNow) => Exit::Done,
        Ok(Outcome::Checked(all_ok)) if all_ok => Exit::Done,
        Ok(Outcome::Checked(_)) => Exit::FilesFailed,
        Ok(Outcome::Shipped(totals)) => {
            info!("{}", totals.summary());
            if totals.failed_files > 0 || totals.rejected > 0 || totals.metrics_unwritten {
                Exit::FilesFailed
            } else {
                Exit::Done
            }
        }
        Err(Failure::Usage(e)) => {
            error!("{e:#}");
            Exit::Usage
        }
        Err(Failure::Unrecorded(e)) => {
            error!("{e:#}");
            Exit::Undelivered
        }
        Err(Failure::Undelivered(totals, why)) => {
            error!("{why}");
            info!("{}", totals.summary());
            Exit::Undelivered
        }
    }
}

/// Runs the command the command line names.
fn run(parsed: &crate::cli::file::Parsed) -> Result<Outcome, Failure> {
    let cli = &parsed.cli;
    let (config, mode) = match &cli.command {
        Command::Watch(args) => (Config::watch(args, cli.quiet), Mode::Sync),
        Command::Sync(args) => (Config::sync(args, cli.quiet), Mode::Sync),
        Command::Backfill(args) => (Config::backfill(args, cli.quiet), Mode::Backfill),
        Command::Check(args) => {
            let config = Config::check(args, cli.quiet).map_err(Failure::Usage)?;
            warn_receiver_limits(&config);
            return Ok(Outcome::Checked(check::run(&config, args.offline)));
        }
        Command::ShowConfig(args) => {
            for line in show::render(parsed) {
                println!("{line}");
            }
            Config::check(args, cli.quiet).map_err(Failure::Usage)?;
            return Ok(Outcome::Checked(true));
        }
    };
    let config = config.map_err(Failure::Usage)?;
    warn_receiver_limits(&config);
    if config.cache.isolated {
        warn!("{}", isolated_advice(&config));
    } else if let Some(advice) = local_state_advice(&config) {
        warn!("{advice}");
    }
    let opened = match (&cli.command, &config.daemon) {
        // A standby waits for the lease instead of exiting (a master cluster's other masters).
        (Command::Watch(_), Some(options)) if !config.dry_run && config.state.file.is_some() => {
            match watch::stand_by(&config, options)? {
                Some(cp) => Ok(Some(cp)),
                None => return Ok(Outcome::Busy),
            }
        }
        _ => open_checkpoint(&config, mode),
    };
    let mut checkpoint = match opened {
        Ok(cp) => cp,
        // The daemon holds the checkpoint: a backfill replays the history anyway (what it
        // sends is shipped regardless of the checkpoint), only without recording it.
        Err(e) if e.is::<Busy>() && mode == Mode::Backfill => {
            warn!("{e}: backfilling without recording in the checkpoint (as --no-checkpoint)");
            None
        }
        // Another instance is shipping this cache: not an error (cron must not mail noise).
        Err(e) if e.is::<Busy>() => {
            info!("{e}; nothing done");
            return Ok(Outcome::Busy);
        }
        Err(e) => return Err(Failure::Usage(e)),
    };
    if let Some(cp) = checkpoint.as_mut().filter(|cp| {
        mode == Mode::Sync && config.state.start_at_now && !cp.existed() && !config.dry_run
    }) {
        // Only saving the checkpoint can fail here.
        ship::start_at_now(&config, cp).map_err(Failure::Unrecorded)?;
        // `watch` then follows what arrives from now on; `sync` is done.
        if !matches!(cli.command, Command::Watch(_)) {
            return Ok(Outcome::StartedAtNow);
        }
    }
    let totals = match (&cli.command, checkpoint) {
        // watch, and sync --follow.
        (Command::Watch(_) | Command::Sync(_), Some(cp))
            if !config.dry_run && config.daemon.is_some() =>
        {
            match &config.daemon {
                Some(options) => watch::run(&absolute_cache(config.clone())?, options, cp)?,
                None => unreachable!("Config::watch sets the daemon options"),
            }
        }
        (_, checkpoint) => ship::run(&config, mode, checkpoint)?,
    };
    Ok(Outcome::Shipped(totals))
}

/// Warns once, at start and in `check`, when events may be larger than the receiver is known
/// to take whole: rsyslog's imrelp cuts them and still answers 200.
fn warn_receiver_limits(config: &Config) {
    let relp = config
        .delivery
        .as_ref()
        .is_some_and(|d| matches!(d.sink, crate::sink::SinkOptions::Relp(_)));
    if let Some(warning) = relp
        .then(|| crate::sink::relp::size_warning(config.encode.max_event_bytes))
        .flatten()
    {
        warn!("{warning}");
    }
}

/// What to do on a cluster master with `cluster_isolated_filesystem`: every master's cache
/// holds every job, so one shipper per master ships each once per master.
fn isolated_advice(config: &Config) -> String {
    let dedupe = match &config.encode.cluster_id {
        Some(id) => format!("or keep --cluster-id {id} on every master's saltship, so a receiver can drop the copies by event_id"),
        None => "or give every master's saltship the same --cluster-id, so a receiver can drop the copies by event_id".into(),
    };
    format!(
        "the master config sets cluster_isolated_filesystem: every master of the cluster keeps \
         every job and return in its own cache, so a saltship on each ships everything once per \
         master. Run saltship on one master only (its cache holds every job), {dedupe}; the jobs \
         another master published have no target in this cache (tgt_unknown)"
    )
}

/// A master cluster (a cluster id: Salt's cluster mode needs one) with the state file on a
/// local filesystem: the lease only works when every master's saltship shares the state file,
/// so with one each, every master ships the whole cache (the attack on issue 31 found this
/// silent). Not for isolated caches, whose advice says the rest.
fn local_state_advice(config: &Config) -> Option<String> {
    let state = config.state.file.as_ref()?;
    let id = config.encode.cluster_id.as_ref()?;
    if watch::poll::on_shared_filesystem(state) != Some(false) {
        return None;
    }
    Some(format!(
        "the state file {} is on a local filesystem while the cache is shared (cluster id \
         {id}): its lock and lease only keep other masters' saltships from shipping this cache \
         when they use the same state file, so put --state-file on the shared volume \
         (docs/operations.md, \"Master cluster\"), or every master ships every return",
        state.display(),
    ))
}

/// `watch`'s configuration with the cache folder as an absolute path, taken once at start:
/// inotify names each change by an absolute path, which a relative `--cache-dir` (`jobs`)
/// would never match, and the rescan would be the only thing that ships. Symlinks are kept
/// as given (`std::path::absolute`, as notify itself joins a relative path).
fn absolute_cache(mut config: Config) -> Result<Config, Failure> {
    let dir = &config.cache.dir;
    config.cache.dir = std::path::absolute(dir)
        .map_err(|e| Failure::Usage(anyhow::anyhow!("--cache-dir {}: {e}", dir.display())))?;
    Ok(config)
}

/// The checkpoint a run records into: locked, or for `sync --dry-run` only read.
fn open_checkpoint(config: &Config, mode: Mode) -> anyhow::Result<Option<Checkpoint>> {
    let Some(path) = &config.state.file else {
        return Ok(None);
    };
    match (config.dry_run, mode) {
        (false, _) => Checkpoint::open(path, config.state.reset).map(Some),
        (true, Mode::Sync) => Checkpoint::peek(path).map(Some),
        (true, Mode::Backfill) => Ok(None),
    }
}
