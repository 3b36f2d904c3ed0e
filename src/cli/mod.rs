//! The command line: the clap definition ([`args`]) and the [`Config`] it is validated into
//! ([`config`]), once, at start.

mod args;
mod common;
pub(crate) mod config;
mod delivery;
mod exit_status;
pub(crate) mod file;
pub(crate) mod master_conf;
pub(crate) mod parse;
mod receivers;
pub(crate) mod small_file;

pub use args::Cli;
pub(crate) use args::*;
pub(crate) use config::{CacheOptions, Config, DaemonOptions, Discovery, EncodeOptions, Filter};
pub(crate) use receivers::*;
