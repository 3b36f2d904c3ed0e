//! saltship: ship every SaltStack state result from the master's job cache to a log aggregator.
//!
//! # Layout
//! Data flows one way; only the command modules ([`ship`], [`watch`]) wire stages together.
//! - [`cache`] discovers job folders; [`msgpack`] reads and decodes `.p` files;
//! - [`job`] reads `.load.p`; [`extract`] (pure) turns a return into [`extract::StateEvent`]s;
//! - [`event`] encodes an event as JSON ([`json`] renders msgpack values, [`time`] the clocks);
//!   [`format`] renders it as ecs, gelf or syslog and cuts oversize events;
//! - [`sink`] delivers and confirms delivery: stdout, or one delivery core (`sink/deliver.rs`:
//!   failover, backoff, deadlines, outage reporting) under a protocol per receiver (`tcp.rs`
//!   with `tls.rs`, `hec.rs`, `elastic.rs` with `http.rs`); [`checkpoint`] records it;
//! - [`ship`] runs `backfill` and `sync` passes, decoding on every core through [`pipeline`];
//!   [`watch`] follows the cache and makes passes as returns land;
//! - [`metrics`] keeps the fleet's health (each minion's latest state run) and serves it;
//! - [`check`] tests a configuration without sending (`saltship check`);
//! - [`cli`] and [`config`] are the command line, [`logging`] the diagnostics, [`progress`] the
//!   bars, [`glob`] the filters.

pub mod cache;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod event;
pub mod extract;
pub mod format;
pub mod glob;
pub mod job;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod msgpack;
pub mod pipeline;
pub mod progress;
pub mod ship;
pub mod sink;
pub mod time;
pub mod watch;

use std::process::ExitCode;

use clap::Parser;
use log::{error, info, warn};

use crate::checkpoint::{Busy, Checkpoint};
use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::ship::Mode;

/// How a run ended, as the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    FilesFailed = 1,
    Usage = 2,
    Undelivered = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Parses the command line, runs the command, and maps the outcome to an exit status.
pub fn main() -> Exit {
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.quiet);
    let (config, mode) = match &cli.command {
        Command::Watch(args) => (Config::watch(args, cli.quiet), Mode::Sync),
        Command::Sync(args) => (Config::sync(args, cli.quiet), Mode::Sync),
        Command::Backfill(args) => (Config::backfill(args, cli.quiet), Mode::Backfill),
        Command::Check(args) => {
            return match Config::check(args, cli.quiet) {
                Ok(config) => check::run(&config),
                Err(e) => {
                    error!("{e:#}");
                    Exit::Usage
                }
            }
        }
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            error!("{e:#}");
            return Exit::Usage;
        }
    };
    let mut checkpoint = match open_checkpoint(&config, mode) {
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
            return Exit::Done;
        }
        Err(e) => {
            error!("{e:#}");
            return Exit::Usage;
        }
    };
    if let Some(cp) = checkpoint
        .as_mut()
        .filter(|cp| mode == Mode::Sync && config.start_at_now && !cp.existed() && !config.dry_run)
    {
        // Only saving the checkpoint can fail here.
        return match ship::start_at_now(&config, cp) {
            Ok(_) => Exit::Done,
            Err(e) => {
                error!("{e:#}");
                Exit::Undelivered
            }
        };
    }
    let outcome = match (&cli.command, checkpoint) {
        (Command::Watch(_), Some(cp)) if !config.dry_run => {
            // Bound once the lock is ours (a second instance exits quietly above), before the
            // catch-up: a taken address is a configuration error.
            let listener = config.metrics_listen.map(|addr| {
                std::net::TcpListener::bind(addr)
                    .map_err(|e| format!("--metrics-listen {addr}: {e}"))
            });
            match listener.transpose() {
                Ok(listener) => watch::run(&config, cp, listener),
                Err(e) => {
                    error!("{e}");
                    return Exit::Usage;
                }
            }
        }
        (_, checkpoint) => ship::run(&config, mode, checkpoint),
    };
    match outcome {
        Ok(totals) => {
            info!("{}", totals.summary());
            if totals.failed_files > 0 || totals.rejected > 0 {
                Exit::FilesFailed
            } else {
                Exit::Done
            }
        }
        Err((totals, why)) => {
            error!("{why}");
            info!("{}", totals.summary());
            Exit::Undelivered
        }
    }
}

/// The checkpoint a run records into: locked, or for `sync --dry-run` only read.
fn open_checkpoint(config: &Config, mode: Mode) -> anyhow::Result<Option<Checkpoint>> {
    let Some(path) = &config.state_file else {
        return Ok(None);
    };
    match (config.dry_run, mode) {
        (false, _) => Checkpoint::open(path, config.reset_state).map(Some),
        (true, Mode::Sync) => Checkpoint::peek(path).map(Some),
        (true, Mode::Backfill) => Ok(None),
    }
}
