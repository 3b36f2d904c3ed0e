//! `saltship config`: the effective configuration as TOML, each value with where it came from
//! (flag, env SALTSHIP_*, the config file's line, default), secrets as `***`.

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory};

use crate::cli::file::Parsed;
use crate::cli::Cli;

/// Secrets read from the environment when no file names them: shown as set or not, never shown.
const SECRET_ENV: &[(&str, &str)] = &[
    ("hec token", "SALTSHIP_HEC_TOKEN"),
    ("es api key", "SALTSHIP_ES_API_KEY"),
    ("http password", "SALTSHIP_HTTP_PASSWORD"),
    ("kafka password", "SALTSHIP_KAFKA_PASSWORD"),
];

/// The lines `saltship config` prints, one per option of its subcommand.
pub(crate) fn render(parsed: &Parsed) -> Vec<String> {
    let cmd = Cli::command();
    let (name, sub) = parsed
        .matches
        .subcommand()
        .expect("clap requires a subcommand");
    let sub_cmd = cmd.find_subcommand(name).expect("a known subcommand");
    let file = parsed
        .path
        .as_ref()
        .map_or_else(|| "none".to_owned(), |p| p.display().to_string());
    let mut out = vec![format!("# config file: {file}")];
    for arg in sub_cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let id = arg.get_id().as_str();
        if matches!(long, "help" | "version" | "config") {
            continue;
        }
        // A switch set to false in the file is not on the command line: still the file's.
        let source = match (sub.value_source(id), parsed.from_file.get(id)) {
            (Some(ValueSource::CommandLine | ValueSource::DefaultValue), Some(line)) => {
                format!("{file}:{line}")
            }
            (Some(ValueSource::CommandLine), None) => "flag".to_owned(),
            (Some(ValueSource::EnvVariable), _) => format!(
                "env {}",
                arg.get_env().unwrap_or_default().to_string_lossy()
            ),
            (Some(ValueSource::DefaultValue), None) => "default".to_owned(),
            _ => {
                out.push(format!("#{long} =  # unset"));
                continue;
            }
        };
        let raw: Vec<String> = sub
            .get_raw(id)
            .into_iter()
            .flatten()
            .map(|v| mask(long, &v.to_string_lossy()))
            .collect();
        let value = match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => {
                let on = sub.get_flag(id);
                on.to_string()
            }
            ArgAction::Count => sub.get_count(id).to_string(),
            ArgAction::Append => {
                let items: Vec<String> = raw.iter().map(|v| quote(v)).collect();
                format!("[{}]", items.join(", "))
            }
            _ => quote(raw.first().map_or("", String::as_str)),
        };
        out.push(format!("{long} = {value}  # {source}"));
    }
    for (what, env) in SECRET_ENV {
        if std::env::var_os(env).is_some() {
            out.push(format!("# {what} = \"***\"  # env {env}"));
        }
    }
    out
}

/// A TOML basic string (JSON's escapes are TOML's).
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// A value with any secret in it replaced by `***`: a URL's password, an OTLP header's value
/// (often a token), a secret Kafka option's value.
fn mask(long: &str, value: &str) -> String {
    match (long, value.find(['=', ':'])) {
        ("otlp-header", Some(at)) => return format!("{}=***", value[..at].trim()),
        ("otlp-header", None) => return "***".to_owned(),
        _ => {}
    }
    if long == "kafka-option" {
        return match value.split_once('=') {
            Some((key, _)) if crate::sink::kafka::is_secret_property(key) => format!("{key}=***"),
            Some(_) => value.to_owned(),
            None => "***".to_owned(),
        };
    }
    if long == "target" || value.contains("://") {
        return crate::sink::secret::shown(value);
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_values_are_masked() {
        assert_eq!(
            mask("kafka-option", "sasl.password=hunter2"),
            "sasl.password=***"
        );
        assert_eq!(mask("kafka-option", "linger.ms=5"), "linger.ms=5");
        assert_eq!(
            mask(
                "kafka-option",
                "sasl.oauthbearer.config=id=x secret=hunter2"
            ),
            "sasl.oauthbearer.config=***"
        );
        assert_eq!(
            mask("kafka-option", "ssl.key.pem=hunter2"),
            "ssl.key.pem=***"
        );
        assert_eq!(
            mask("otlp-header", "Authorization: Bearer hunter2"),
            "Authorization=***"
        );
        assert_eq!(mask("otlp-header", "X-Scope-OrgID=t1"), "X-Scope-OrgID=***");
        assert_eq!(
            mask("target", "https://u:hunter2@es:9200/x"),
            "https://u:***@es:9200/x"
        );
        assert_eq!(mask("target", "127.0.0.1:6000"), "127.0.0.1:6000");
    }
}
