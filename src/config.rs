//! Turns the parsed command line into a validated [`Config`], once. The only module that looks
//! at the environment beyond what clap reads for us.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::cli::{
    BackfillArgs, CheckArgs, CommonArgs, DaemonArgs, HttpArgs, OtlpArgs, StateArgs, SyncArgs,
    TlsArgs, WatchArgs,
};
use std::time::Duration;

use crate::format::{Format, DEFAULT_MAX_EVENT_BYTES, MIN_MAX_EVENT_BYTES};
use crate::sink::deliver::CoreOptions;
use crate::sink::elastic::ElasticOptions;
use crate::sink::hec::HecOptions;
use crate::sink::http::otlp::{headers, OtlpOptions};
use crate::sink::http::{HttpOptions, Secret};
use crate::sink::kafka::KafkaOptions;
use crate::sink::tcp::TcpOptions;
use crate::sink::tls::{Tls, TlsOptions};
use crate::sink::{Options, SinkKind, SinkOptions};
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
        Ok(Config {
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

/// `ADDR:PORT` (a host name is resolved now, its first address taken).
fn socket_addr(text: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .with_context(|| format!("'{text}': use ADDR:PORT, like 127.0.0.1:9617 or [::]:9617"))?
        .next()
        .with_context(|| format!("'{text}': no address"))
}

/// No `--target` was given: an error unless the run is a dry run.
#[derive(Debug)]
struct NoTarget;

impl std::fmt::Display for NoTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no receiver to send to: give --target, or --dry-run to print the events")
    }
}

impl std::error::Error for NoTarget {}

/// The slowest `--max-rate`: one event in 1000 s. Slower makes no sense, and far slower
/// overflows the time arithmetic.
const MIN_RATE: f64 = 0.001;

/// Checks that the targets fit `--sink` (HOST:PORT for tcp and kafka, a URL for the HTTP
/// sinks) and the format too; the format to use. A dry run checks the same.
fn check_targets(args: &CommonArgs) -> Result<Format> {
    let http = matches!(
        args.sink,
        SinkKind::SplunkHec | SinkKind::Elasticsearch | SinkKind::Otlp
    );
    let sink = sink_name(args.sink);
    for t in &args.target {
        let url = t.contains("://");
        if !http && url {
            bail!(
                "bad --target '{t}': --sink {sink} takes HOST:PORT; a URL is for --sink \
                 splunk-hec, elasticsearch or otlp"
            );
        }
        if http {
            let (scheme, rest) = t.split_once("://").unwrap_or(("", t));
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.starts_with('/') {
                bail!(
                    "bad --target '{t}': --sink {sink} takes a URL, like \
                     https://{}",
                    if url { rest } else { t.as_str() }
                );
            }
            continue;
        }
        let port = t
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) {
            bail!("bad --target '{t}': use HOST:PORT, like logs.example.com:6514 or [::1]:6000");
        }
    }
    let format = args.format.unwrap_or(match args.sink {
        SinkKind::Elasticsearch => Format::Ecs,
        _ => Format::Json,
    });
    if args.sink != SinkKind::Tcp && !matches!(format, Format::Json | Format::Ecs) {
        bail!("--sink {sink} takes --format json or ecs");
    }
    Ok(format)
}

/// The name of a sink as `--sink` takes it.
fn sink_name(sink: SinkKind) -> String {
    sink.to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned())
}

/// The delivery options, checked; also under `--dry-run`, where only a missing target is fine.
fn delivery(args: &CommonArgs) -> Result<Options> {
    let deliver = parse_duration(&args.deliver_timeout)
        .map_err(anyhow::Error::msg)
        .context("bad --deliver-timeout")?;
    if deliver <= 0 {
        bail!("bad --deliver-timeout: must be more than zero");
    }
    if let Some(rate) = args.max_rate.filter(|r| !(r.is_finite() && *r >= MIN_RATE)) {
        bail!("bad --max-rate {rate:?}: give a number of events per second, at least {MIN_RATE}");
    }
    if args.target.is_empty() {
        // The TLS files are checked all the same.
        tls(args)?;
        return Err(NoTarget.into());
    }
    let connect_timeout = Duration::from_secs(5);
    let deliver_timeout = Duration::from_micros(deliver.max(0) as u64);
    let sink = match args.sink {
        SinkKind::Tcp => SinkOptions::Tcp(TcpOptions {
            targets: args.target.clone(),
            connect_timeout,
            tls: tls(args)?,
        }),
        SinkKind::SplunkHec => SinkOptions::Hec(HecOptions {
            http: http_options(args, hec_token(&args.http)?)?,
            sourcetype: args.http.hec_sourcetype.clone(),
            index: args.http.hec_index.clone(),
        }),
        SinkKind::Elasticsearch => SinkOptions::Elastic(ElasticOptions {
            http: http_options(args, es_auth(&args.http)?)?,
            index: args.http.es_index.clone(),
        }),
        SinkKind::Kafka => SinkOptions::Kafka(kafka(args, deliver_timeout)?),
        SinkKind::Otlp => SinkOptions::Otlp(OtlpOptions {
            http: http_options(args, es_auth(&args.http)?)?,
            encoding: args.otlp.otlp_encoding,
            compression: args.otlp.otlp_compression,
            headers: otlp_headers(&args.otlp)?,
        }),
    };
    Ok(Options {
        core: CoreOptions {
            deliver_timeout,
            max_rate: args.max_rate,
            stop: None,
        },
        sink,
    })
}

/// The HTTP sinks' options: TLS for `https://` targets (the system's CAs unless --tls-ca).
fn http_options(args: &CommonArgs, auth: Option<Secret>) -> Result<HttpOptions> {
    let https = args.target.iter().any(|t| t.starts_with("https://"));
    if args.tls.tls && !https {
        bail!(
            "--tls: give https:// URLs as --target for --sink {}",
            sink_name(args.sink)
        );
    }
    if args.tls.tls_server_name.is_some() {
        bail!("--tls-server-name is for --sink tcp; HTTP sinks check the URL's host");
    }
    let tls = if https {
        Some(load_tls(&args.tls)?)
    } else {
        None
    };
    Ok(HttpOptions {
        targets: args.target.clone(),
        auth,
        connect_timeout: Duration::from_secs(5),
        tls,
    })
}

/// A secret from a file (trimmed), else from an environment variable.
fn secret(file: Option<&Path>, env: &str, what: &str) -> Result<Option<String>> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{what} file {}", path.display()))?,
        None => match std::env::var(env) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
    };
    let text = text.trim();
    if text.is_empty() {
        bail!(
            "{what} is empty ({})",
            file.map_or_else(|| env.to_owned(), |p| p.display().to_string())
        );
    }
    Ok(Some(text.to_owned()))
}

/// `--otlp-header`s, then the lines of `--otlp-header-file`.
fn otlp_headers(args: &OtlpArgs) -> Result<Vec<(String, Secret)>> {
    let mut headers = args
        .otlp_header
        .iter()
        .map(|h| headers::parse(h, "bad --otlp-header"))
        .collect::<Result<Vec<_>>>()?;
    if let Some(path) = &args.otlp_header_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--otlp-header-file {}", path.display()))?;
        headers.extend(headers::parse_file(&text, &path.display().to_string())?);
    }
    Ok(headers)
}

fn hec_token(args: &HttpArgs) -> Result<Option<Secret>> {
    let token = secret(
        args.hec_token_file.as_deref(),
        "SALTSHIP_HEC_TOKEN",
        "HEC token",
    )?;
    match token {
        Some(t) => Ok(Some(Secret(format!("Splunk {t}")))),
        None => {
            bail!("--sink splunk-hec needs a token: --hec-token-file FILE or SALTSHIP_HEC_TOKEN")
        }
    }
}

fn es_auth(args: &HttpArgs) -> Result<Option<Secret>> {
    let key = secret(
        args.es_api_key_file.as_deref(),
        "SALTSHIP_ES_API_KEY",
        "API key",
    )?;
    let password = secret(
        args.http_password_file.as_deref(),
        "SALTSHIP_HTTP_PASSWORD",
        "HTTP password",
    )?;
    match (key, &args.http_user, password) {
        (Some(_), Some(_), _) => bail!("give either an API key or --http-user, not both"),
        (Some(key), None, _) => Ok(Some(Secret(format!("ApiKey {key}")))),
        (None, Some(user), Some(password)) => {
            use base64::Engine;
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            Ok(Some(Secret(format!("Basic {pair}"))))
        }
        (None, Some(_), None) => bail!(
            "--http-user needs a password: --http-password-file FILE or SALTSHIP_HTTP_PASSWORD"
        ),
        (None, None, _) => Ok(None),
    }
}

/// The Kafka producer's options: `--tls-*` and SASL as librdkafka properties, then
/// `--kafka-option`, all checked by librdkafka now (a bad one is a usage error).
fn kafka(args: &CommonArgs, deliver_timeout: Duration) -> Result<KafkaOptions> {
    let k = &args.kafka;
    let mut properties = Vec::new();
    let mut set = |key: &str, value: String| properties.push((key.to_owned(), value));
    let t = &args.tls;
    if t.tls {
        if t.tls_server_name.is_some() {
            bail!("--tls-server-name is for --sink tcp; Kafka checks each broker's own name");
        }
        // Loaded here too, so that a bad file is named the way the other sinks name it.
        load_tls(t)?;
        let path = |p: &Path| p.display().to_string();
        if let Some(ca) = &t.tls_ca {
            set("ssl.ca.location", path(ca));
        }
        if let (Some(cert), Some(key)) = (&t.tls_cert, &t.tls_key) {
            set("ssl.certificate.location", path(cert));
            set("ssl.key.location", path(key));
        }
        if t.tls_insecure_skip_verify {
            set("enable.ssl.certificate.verification", "false".into());
            set("ssl.endpoint.identification.algorithm", "none".into());
        }
    }
    let password = match (&k.kafka_sasl_mechanism, &k.kafka_user) {
        (Some(mechanism), Some(user)) => {
            set("sasl.mechanism", mechanism.clone());
            set("sasl.username", user.clone());
            let password = secret(
                k.kafka_password_file.as_deref(),
                "SALTSHIP_KAFKA_PASSWORD",
                "Kafka password",
            )?
            .context(
                "--kafka-user needs a password: --kafka-password-file FILE or \
                 SALTSHIP_KAFKA_PASSWORD",
            )?;
            Some(Secret(password))
        }
        _ => None,
    };
    let protocol = match (t.tls, password.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    set("security.protocol", protocol.into());
    for option in &k.kafka_option {
        let Some((key, value)) = option.split_once('=') else {
            bail!("bad --kafka-option '{option}': use KEY=VALUE, like compression.type=zstd");
        };
        set(key.trim(), value.trim().to_owned());
    }
    let opts = KafkaOptions {
        bootstrap: vec![args.target.join(",")],
        topic: k.kafka_topic.clone(),
        key: k.kafka_key,
        properties,
        password,
        deliver_timeout,
    };
    opts.client_config()
        .create_native_config()
        .map_err(|e| anyhow::anyhow!("bad Kafka setting: {e}"))?;
    Ok(opts)
}

/// The TLS set-up, loaded now so that a bad file is a usage error (exit 2) before anything is
/// read.
fn tls(args: &CommonArgs) -> Result<Option<Tls>> {
    if !args.tls.tls {
        return Ok(None);
    }
    load_tls(&args.tls).map(Some)
}

fn load_tls(t: &TlsArgs) -> Result<Tls> {
    Tls::load(&TlsOptions {
        ca: t.tls_ca.clone(),
        server_name: t.tls_server_name.clone(),
        cert: t.tls_cert.clone(),
        key: t.tls_key.clone(),
        insecure_skip_verify: t.tls_insecure_skip_verify,
    })
}

/// A size in bytes: `1048576`, `512K`, `64M`, `1G` (powers of 1024; `KiB`, `MiB`, `GiB` too).
fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => bail!("'{text}': give bytes, or a number with K, M or G"),
    };
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n > 0)
        .with_context(|| format!("'{text}': give a positive size, like 64M"))
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

/// Whether stderr is the journal stream systemd connected (`$JOURNAL_STREAM` holds its
/// `device:inode`), so log lines may carry syslog priorities.
pub fn journal_stream() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(wanted) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2")
        .is_ok_and(|m| wanted.trim() == format!("{}:{}", m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("1048576").ok(), Some(1 << 20));
        assert_eq!(parse_size("512K").ok(), Some(512 << 10));
        assert_eq!(parse_size("64MiB").ok(), Some(64 << 20));
        assert_eq!(parse_size("2g").ok(), Some(2 << 30));
        for bad in ["", "0", "-1", "12X", "M", "99999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
