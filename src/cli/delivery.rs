//! The delivery options, checked: `--sink` with its targets and format, the receivers' own
//! options, their secrets (from files or the environment) and TLS.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;

use super::small_file;
use super::{CommonArgs, HttpArgs, OtlpArgs, TlsArgs};
use crate::format::Format;
use crate::sink::secret::{one_line, shown};
use crate::sink::tls::{Tls, TlsOptions};
use crate::sink::{
    kafka, otlp_headers as headers, CoreOptions, ElasticOptions, HecOptions, HttpOptions,
    KafkaOptions, OtlpOptions, Secret,
};
use crate::sink::{Options, RelpOptions, SinkKind, SinkOptions, TcpOptions};
use crate::time::parse_duration;

/// No `--target` was given: an error unless the run is a dry run.
#[derive(Debug)]
pub(super) struct NoTarget;

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
pub(super) fn check_targets(args: &CommonArgs) -> Result<Format> {
    let http = matches!(
        args.sink,
        SinkKind::SplunkHec | SinkKind::Elasticsearch | SinkKind::Otlp
    );
    let sink = sink_name(args.sink);
    for t in &args.target {
        let url = t.contains("://");
        let shown = shown(t);
        if !http && url {
            bail!(
                "bad --target '{shown}': --sink {sink} takes HOST:PORT; a URL is for --sink \
                 splunk-hec, elasticsearch or otlp"
            );
        }
        if http {
            let (scheme, rest) = t.split_once("://").unwrap_or(("", t));
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.starts_with('/') {
                bail!(
                    "bad --target '{shown}': --sink {sink} takes a URL, like \
                     https://{}",
                    if url {
                        shown.split_once("://").map_or("", |s| s.1)
                    } else {
                        shown.as_str()
                    }
                );
            }
            if let Err(why) = check_url(t) {
                // A query may hold a token: the target is named without it.
                let name = shown.split(['?', '#']).next().unwrap_or_default();
                bail!("bad --target '{name}': {why}");
            }
            continue;
        }
        let port = t
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && !host.contains('@') && p > 0)
        {
            bail!(
                "bad --target '{shown}': use HOST:PORT, like logs.example.com:6514 or [::1]:6000"
            );
        }
    }
    let format = args.format.unwrap_or(match args.sink {
        SinkKind::Elasticsearch => Format::Ecs,
        _ => Format::Json,
    });
    match args.sink {
        SinkKind::Tcp => {}
        SinkKind::Relp if format != Format::Gelf => {}
        SinkKind::Relp => bail!("--sink relp takes --format json, ecs or syslog"),
        _ if !matches!(format, Format::Json | Format::Ecs) => {
            bail!("--sink {sink} takes --format json or ecs")
        }
        _ => {}
    }
    Ok(format)
}

/// Why an HTTP sink's target URL cannot be used as it is, if it cannot: it must parse, with a
/// host and a port that exists, and have no query or fragment (the sink appends its own path,
/// so `?x=1` would become `?x=1/event`).
fn check_url(t: &str) -> Result<(), String> {
    let url = url::Url::parse(t).map_err(|e| e.to_string())?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if url.port() == Some(0) {
        return Err("port 0".into());
    }
    if url.query().is_some() {
        return Err(
            "a query string (?...) cannot be used: the sink appends its own path; \
                    give scheme://host[:port][/path]"
                .into(),
        );
    }
    if url.fragment().is_some() {
        return Err("a fragment (#...) cannot be used: give scheme://host[:port][/path]".into());
    }
    Ok(())
}

/// Whether a URL carries a user (and password) before its host, used for basic authentication.
fn has_userinfo(t: &str) -> bool {
    url::Url::parse(t).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// The name of a sink as `--sink` takes it.
fn sink_name(sink: SinkKind) -> String {
    sink.to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned())
}

/// The delivery options, checked; also under `--dry-run`, where only a missing target is fine.
pub(super) fn delivery(args: &CommonArgs) -> Result<Options> {
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
    let linger = parse_duration(&args.linger)
        .map_err(anyhow::Error::msg)
        .context("bad --linger")?;
    if args.max_request_bytes.is_some_and(|n| n < 1024) {
        bail!("bad --max-request-bytes: give at least 1024");
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
        SinkKind::Kafka if !cfg!(feature = "kafka") => bail!(
            "--sink kafka: this saltship was built without Kafka (cargo build \
             --no-default-features); build it with the default features for Kafka"
        ),
        SinkKind::Kafka => SinkOptions::Kafka(kafka(args, deliver_timeout)?),
        SinkKind::Relp => SinkOptions::Relp(RelpOptions {
            targets: args.target.clone(),
            connect_timeout,
            tls: tls(args)?,
            window: args.relp.relp_window,
            format: check_targets(args)?,
        }),
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
            linger: Duration::from_micros(linger.max(0) as u64),
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
    if let Some(t) = args
        .target
        .iter()
        .find(|t| auth.is_some() && has_userinfo(t))
    {
        bail!(
            "bad --target '{}': its user and password would not be used beside the {}; \
             drop them from the URL",
            shown(t),
            match args.sink {
                SinkKind::SplunkHec => "HEC token",
                _ => "API key or --http-user",
            }
        );
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
        max_request_bytes: args.max_request_bytes,
        tls,
    })
}

/// A secret from a file, else from an environment variable: one line of text (see
/// [`one_line`]); a message names the file or variable, never the secret.
fn secret(file: Option<&Path>, env: &str, what: &str) -> Result<Option<String>> {
    let (text, source) = match file {
        Some(path) => {
            let source = format!("{what} file {}", path.display());
            (secret_file(path, &source)?, source)
        }
        None => match std::env::var(env) {
            Ok(v) => (v, env.to_owned()),
            Err(_) => return Ok(None),
        },
    };
    one_line(&text, &source).map(Some)
}

/// `--otlp-header`s, then the lines of `--otlp-header-file`.
fn otlp_headers(args: &OtlpArgs) -> Result<Vec<(String, Secret)>> {
    let mut headers = args
        .otlp_header
        .iter()
        .map(|h| headers::parse(h, "bad --otlp-header"))
        .collect::<Result<Vec<_>>>()?;
    if let Some(path) = &args.otlp_header_file {
        let text = secret_file(path, &format!("--otlp-header-file {}", path.display()))?;
        headers.extend(headers::parse_file(&text, &path.display().to_string())?);
    }
    Ok(headers)
}

/// The text of a file holding secrets (`source` names it in a message), read as a cache file
/// is (a regular file, capped, without blocking), with one warning when others may read it.
fn secret_file(path: &Path, source: &str) -> Result<String> {
    let text =
        small_file::read(path, small_file::SECRET_MAX).map_err(|e| anyhow!("{source}: {e}"))?;
    if let Some(warning) = small_file::readable_by_others(path, "secrets") {
        log::warn!("{warning}");
    }
    Ok(text)
}

/// The properties of `--kafka-option-file`: `KEY=VALUE` lines; blank lines and `#` comments
/// skipped. A message names the line, never its value.
fn kafka_option_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = secret_file(path, &format!("--kafka-option-file {}", path.display()))?;
    let lines = text.lines().enumerate();
    lines
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| match l.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => bail!(
                "--kafka-option-file {} line {}: use KEY=VALUE (the line is not shown)",
                path.display(),
                n + 1
            ),
        })
        .collect()
}

/// librdkafka's complaint about a property, with the value of any secret one, and of the one
/// it names (a misspelled `sasl.passwrd` is no less a secret), replaced by `***`.
#[cfg(feature = "kafka")]
fn kafka_error(e: &dyn std::fmt::Display, opts: &KafkaOptions) -> String {
    let mut text = e.to_string();
    for (key, value) in &opts.properties {
        let named = text.contains(&format!("\"{key}\""));
        if !value.is_empty() && (named || crate::sink::kafka::is_secret_property(key)) {
            text = text.replace(value.as_str(), "***");
        }
    }
    text
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
    let t = &args.tls;
    if t.tls {
        if t.tls_server_name.is_some() {
            bail!("--tls-server-name is for --sink tcp; Kafka checks each broker's own name");
        }
        // Loaded here too, so that a bad file is named the way the other sinks name it.
        load_tls(t)?;
        let cert_key = t.tls_cert.as_deref().zip(t.tls_key.as_deref());
        let ca = t.tls_ca.as_deref();
        properties = kafka::tls_properties(ca, cert_key, t.tls_insecure_skip_verify);
    }
    let password = match (&k.kafka_sasl_mechanism, &k.kafka_user) {
        (Some(mechanism), Some(user)) => {
            properties.extend(kafka::sasl_properties(mechanism, user));
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
    properties.push(kafka::security_protocol(t.tls, password.is_some()));
    if let Some(path) = &k.kafka_option_file {
        properties.extend(kafka_option_file(path)?);
    }
    for option in &k.kafka_option {
        let Some((key, value)) = option.split_once('=') else {
            bail!("bad --kafka-option: use KEY=VALUE, like compression.type=zstd (not shown)");
        };
        properties.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    let opts = KafkaOptions {
        bootstrap: vec![args.target.join(",")],
        topic: k.kafka_topic.clone(),
        key: k.kafka_key,
        properties,
        password,
        deliver_timeout,
    };
    #[cfg(feature = "kafka")]
    opts.client_config()
        .create_native_config()
        .map_err(|e| anyhow::anyhow!("bad Kafka setting: {}", kafka_error(&e, &opts)))?;
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
