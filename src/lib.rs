//! saltship: ship every SaltStack state result from the master's job cache to a log aggregator.
//!
//! # Layout
//! The folder tree is the layering. Data flows one way; only the command layer ([`app`]) wires
//! stages together and sees the whole configuration.
//! - [`app`]: the command layer. `app/mod.rs` runs a command and maps how it ended to the exit
//!   status (the only place); `app/ship/` runs `backfill` and `sync` passes (`plan.rs` picks
//!   the returns, `pass.rs` sends and confirms them, `work.rs` decodes on every core through
//!   `app/pipeline.rs`, `budget.rs` bounds the memory in flight, `jobs.rs` the job and
//!   no_return events); `app/watch/` follows the cache and makes passes as returns land
//!   (`follow.rs` what inotify said, `daemon.rs` the clocks, `watches.rs` which folders are
//!   watched); `app/check.rs` tests a configuration (`saltship check`), `app/show.rs` prints
//!   it (`saltship config`); `app/progress.rs` the bars.
//! - [`cli`]: the clap definition (`cli/args.rs` the commands, `cli/common.rs` the shared
//!   options, `cli/receivers.rs` the receivers', `cli/exit_status.rs` each command's exit
//!   statuses), the config file (`cli/file.rs`), and [`cli::Config`], the validated options
//!   (`cli/config.rs`, the delivery part in `cli/delivery.rs`, parse helpers in
//!   `cli/parse.rs`). Only `cli/` reads the environment.
//! - The stages, each taking its own options: [`cache`] discovers job folders; [`msgpack`]
//!   reads and decodes `.p` files; [`job`] reads `.load.p`; [`extract`] (pure) turns a return
//!   into [`extract::StateEvent`]s; [`event`] encodes an event as JSON (`event/job.rs` the job
//!   and no_return events, `event/brief.rs` their one-line summary; [`json`] renders msgpack
//!   values, [`time`] the clocks, [`zone`] the zone the master writes jids in); [`format`]
//!   renders it as ecs, gelf or syslog and cuts oversize events.
//! - [`sink`] delivers and confirms delivery: stdout, or one delivery core (`sink/core/`:
//!   `protocol.rs` what a receiver's reply means, `deliver.rs` failover, batching, backoff,
//!   deadlines and outage reporting, `wait.rs` the one deadline and stop flag) under a
//!   protocol per receiver (`tcp.rs`, `tls/`, `relp/`, `http/` for HEC, `_bulk` and OTLP,
//!   `kafka/`); `keys.rs` what the encoder hands over with the bytes, `secret.rs` secrets.
//! - [`checkpoint`] records what was delivered: the API in `checkpoint/mod.rs`, the snapshot's
//!   formats in `snapshot.rs`, the journal in `journal.rs`, the lock and temp files in
//!   `files.rs`.
//! - [`metrics`] keeps the fleet's health (each minion's latest state run), rebuilds it from
//!   the cache at start (`rebuild.rs`) and serves it (`serve.rs`).
//! - [`logging`] the diagnostics, [`glob`] the filters, [`sync`] the one rule for poisoned locks.

pub mod app;
pub(crate) mod cache;
pub(crate) mod checkpoint;
pub mod cli;
pub(crate) mod event;
pub(crate) mod extract;
pub(crate) mod format;
pub(crate) mod glob;
pub(crate) mod job;
pub(crate) mod json;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod msgpack;
pub(crate) mod sink;
pub(crate) mod sync;
pub(crate) mod time;
pub(crate) mod zone;
