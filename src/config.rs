//! Turns the parsed command line into a validated [`Config`], once. The only module that looks
//! at the environment beyond what clap reads for us.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::cli::{BackfillArgs, CommonArgs};
use crate::time::{parse_point, JidZone};

/// What every command needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub cache_dir: PathBuf,
    pub dry_run: bool,
    pub minions: Vec<String>,
    pub funs: Vec<String>,
    pub only_failures: bool,
    pub show_pillar_args: bool,
    pub master_id: String,
    pub jid_zone: JidZone,
    /// Jobs published in `[since, until)`, microseconds since the epoch.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub quiet: bool,
}

impl Config {
    pub fn backfill(args: &BackfillArgs, quiet: bool) -> Result<Config> {
        let mut config = Config::common(&args.common, quiet)?;
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
        if !config.dry_run {
            bail!("no receiver to send to: use --dry-run to print the events");
        }
        Ok(config)
    }

    fn common(args: &CommonArgs, quiet: bool) -> Result<Config> {
        let jid_zone = JidZone::parse(&args.jid_timezone).with_context(|| {
            format!(
                "bad --jid-timezone '{}': use utc, local or an offset like +02:00",
                args.jid_timezone
            )
        })?;
        let meta = std::fs::metadata(&args.cache_dir)
            .with_context(|| format!("cache folder {}", args.cache_dir.display()))?;
        if !meta.is_dir() {
            bail!("cache folder {}: not a directory", args.cache_dir.display());
        }
        Ok(Config {
            cache_dir: args.cache_dir.clone(),
            dry_run: args.dry_run,
            minions: args.minion.clone(),
            funs: args.fun.clone(),
            only_failures: args.only_failures,
            show_pillar_args: args.show_pillar_args,
            master_id: args.master_id.clone().unwrap_or_else(hostname),
            jid_zone,
            since: None,
            until: None,
            quiet,
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
}

/// This host's name, the master's default `id`.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
