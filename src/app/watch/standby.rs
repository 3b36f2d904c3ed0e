//! `watch` as a standby: on a master cluster every master runs it against one state file on
//! the shared volume; the one holding the lease ships, the others wait here for it (a dead
//! holder is replaced within a second or so, a hung one after its lease expires: see
//! `checkpoint/lease.rs`). Standing by is a healthy state: systemd hears READY=1 and a STATUS
//! line at once, and the watchdog is fed, so the unit neither times out nor restarts.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use log::info;

use super::daemon::sd_notify;
use crate::app::Failure;
use crate::checkpoint::{Checkpoint, Waiting};
use crate::cli::{Config, DaemonOptions};

/// The checkpoint, once this saltship holds its lease; `None` when stopped (SIGTERM, SIGINT)
/// while standing by.
pub(crate) fn open(
    config: &Config,
    options: &DaemonOptions,
) -> Result<Option<Checkpoint>, Failure> {
    let Some(path) = &config.state.file else {
        return Err(Failure::Usage(anyhow::anyhow!("watch needs a state file")));
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Failure::Usage(anyhow::anyhow!("cannot handle signal {signal}: {e}")))?;
    }
    let notify = |state: &str| {
        if let Some(socket) = &options.notify_socket {
            let _ = sd_notify(socket, state);
        }
    };
    let mut told = String::new();
    let mut next_watchdog = Instant::now();
    let mut standing_by = false;
    let mut status = |waiting: Waiting<'_>| {
        let line = waiting.to_string();
        if line != told {
            info!("standing by: {line}; shipping once it is free");
            notify(&format!("READY=1\nSTATUS=standby: {line}"));
            told = line;
            standing_by = true;
        }
        if let Some(every) = options.watchdog {
            if Instant::now() >= next_watchdog {
                notify("WATCHDOG=1");
                next_watchdog = Instant::now() + every / 2;
            }
        }
    };
    let opened = Checkpoint::open_waiting(path, config.state.reset, &stop, &mut status)
        .map_err(Failure::Usage)?;
    if opened.is_some() && standing_by {
        info!("took over the lease of {}: shipping", path.display());
        notify("STATUS=active: catching up");
    }
    Ok(opened)
}
