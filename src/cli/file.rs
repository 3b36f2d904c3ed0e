//! The config file (`--config FILE`, `SALTSHIP_CONFIG`, default `/etc/saltship/saltship.toml`):
//! one TOML key per long option, at the lowest precedence (flags, then the environment, then
//! the file, then the defaults).
//!
//! How: clap parses the command line once to learn the subcommand, the config file's path and
//! which options the command line or the environment already set. Each key of the file is
//! checked against the options clap knows (its action and its own value parser), so a bad key or
//! value is one line naming the file's line. The file's values for options still unset are then
//! appended to the command line as `--key=value`, and clap parses again: clap's own ranking does
//! the rest, and the injected ids are remembered so `saltship config` can say where each value
//! came from.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{small_file, Cli};

/// Where the config file is when neither `--config` nor `SALTSHIP_CONFIG` names one.
pub(crate) const DEFAULT_PATH: &str = "/etc/saltship/saltship.toml";

/// Keys that would hold a secret: the file takes the path of a file holding it instead. An
/// OTLP header is often a token, so none goes in the file.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("otlp-header", "otlp-header-file"),
    ("hec-token", "hec-token-file"),
    ("kafka-password", "kafka-password-file"),
    ("http-password", "http-password-file"),
    ("es-api-key", "es-api-key-file"),
    ("password", "kafka-password-file or http-password-file"),
    ("token", "hec-token-file"),
];

/// The parsed command line with the config file applied, and where the file's values went.
pub(crate) struct Parsed {
    pub(crate) cli: Cli,
    /// The whole matches, for `saltship config`'s provenance.
    pub(crate) matches: ArgMatches,
    /// The config file that was read, if any.
    pub(crate) path: Option<PathBuf>,
    /// Option id -> the file's line of each value taken from the file.
    pub(crate) from_file: BTreeMap<String, usize>,
    /// Warnings to log once logging is set up (a config file writable by others).
    pub(crate) warnings: Vec<String>,
}

/// Parses `argv` with the config file applied; `Err` is the one line of a bad config file (exit
/// 2). Clap's own errors (and `--help`) exit through clap, as before.
pub(crate) fn parse(argv: Vec<OsString>) -> Result<Parsed, String> {
    unset_empty_env();
    let cmd = Cli::command();
    let first = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    let Some((sub_name, sub)) = first.subcommand() else {
        // No subcommand: let clap say so.
        Cli::parse_from_or_exit(&argv);
        unreachable!("clap exits without a subcommand");
    };
    let config = |m: &ArgMatches| m.get_one::<PathBuf>("config").cloned();
    let path = config(sub)
        .or_else(|| config(&first))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let named = [sub.value_source("config"), first.value_source("config")]
        .iter()
        .any(|s| matches!(s, Some(ValueSource::CommandLine | ValueSource::EnvVariable)));
    let mut parsed_file = None;
    let mut warnings = Vec::new();
    // `--config /dev/null` is the usual way to run without the config file; it is a device,
    // which every other config path must not be.
    let read = if path == Path::new("/dev/null") {
        Ok(String::new())
    } else {
        small_file::read(&path, small_file::CONFIG_MAX)
    };
    match read {
        Ok(text) => {
            warnings.extend(writable_by_others(&path));
            parsed_file = Some(text);
        }
        Err(e) if e.missing && !named => {}
        Err(e) => return Err(format!("config file {}: {e}", path.display())),
    }
    let given = argv.clone();
    let mut argv = argv;
    let mut from_file = BTreeMap::new();
    if let Some(text) = &parsed_file {
        let known = known_options(&cmd);
        let entries = read_table(&path, text, &known)?;
        if entries.iter().any(Entry::has_password) {
            warnings.extend(small_file::readable_by_others(
                &path,
                "a target's password (config file)",
            ));
        }
        let sub_cmd = cmd
            .find_subcommand(sub_name)
            .expect("clap matched this subcommand");
        for entry in entries {
            let named = |a: &&Arg| a.get_long() == Some(entry.key.as_str());
            // A global option (-q, -v) may be given before the command or after it.
            let (owner, matches, arg) = if let Some(arg) = sub_cmd.get_arguments().find(named) {
                (sub_cmd, vec![sub], arg)
            } else if let Some(arg) = cmd.get_arguments().find(named) {
                (&cmd, vec![&first, sub], arg)
            } else {
                continue; // another command's option: valid in the file, unused here
            };
            let given = |id: &str| {
                matches.iter().any(|m| {
                    matches!(
                        m.value_source(id),
                        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                    )
                })
            };
            let id = arg.get_id().as_str();
            // A flag (or variable) wins over the file's key, and so over a key it cannot be
            // used with: `-v` beats `quiet = true`.
            let beaten = owner
                .get_arguments()
                .filter(|other| given(other.get_id().as_str()))
                .any(|other| conflict(owner, arg, other));
            if !given(id) && !beaten {
                argv.extend(entry.args);
                from_file.insert(id.to_owned(), entry.line);
            }
        }
    }
    let matches = match cmd.try_get_matches_from(&argv) {
        Ok(m) => m,
        // The file's values together with the flags make a wrong whole: name the file.
        Err(e) if !from_file.is_empty() && e.use_stderr() => {
            // A command line wrong on its own is clap's to report, not the file's.
            if let Err(own) = Cli::command().try_get_matches_from(&given) {
                own.exit()
            }
            let text = e.render().to_string();
            let lines: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).collect();
            let what = lines
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let what = what.trim_start_matches("error: ");
            return Err(format!("config file {}: {what}", path.display()));
        }
        Err(e) => e.exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok(Parsed {
        cli,
        matches,
        path: parsed_file.map(|_| path),
        from_file,
        warnings,
    })
}

/// Whether `a` and `b` cannot be used together (clap keeps a conflict on one side only).
fn conflict(cmd: &clap::Command, a: &Arg, b: &Arg) -> bool {
    let with = |x: &Arg, y: &Arg| {
        cmd.get_arg_conflicts_with(x)
            .iter()
            .any(|c| c.get_id() == y.get_id())
    };
    with(a, b) || with(b, a)
}

impl Cli {
    fn parse_from_or_exit(argv: &[OsString]) {
        if let Err(e) = Cli::command().try_get_matches_from(argv) {
            e.exit()
        }
    }
}

/// One key of the file, checked: its line and the command-line words it stands for.
#[derive(Debug)]
struct Entry {
    key: String,
    line: usize,
    args: Vec<OsString>,
}

impl Entry {
    /// A target with a password (or a token as its user) in its URL.
    fn has_password(&self) -> bool {
        self.key == "target"
            && self.args.iter().any(|a| {
                let a = a.to_string_lossy();
                crate::sink::secret::shown(&a) != a
            })
    }
}

/// Every long option of every subcommand (and the global ones), by name: what a key may be.
fn known_options(cmd: &clap::Command) -> BTreeMap<String, Arg> {
    let mut known = BTreeMap::new();
    let subs = cmd.get_subcommands().flat_map(|s| s.get_arguments());
    for arg in cmd.get_arguments().chain(subs) {
        match arg.get_long() {
            Some("help" | "version" | "config") | None => {}
            Some(long) => {
                known.entry(long.to_owned()).or_insert_with(|| arg.clone());
            }
        }
    }
    known
}

/// The file's keys, each checked against its option: one line naming the key and its line for
/// the first that is wrong.
fn read_table(
    path: &Path,
    text: &str,
    known: &BTreeMap<String, Arg>,
) -> Result<Vec<Entry>, String> {
    let at = |span: std::ops::Range<usize>| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        (line, format!("{}:{line}", path.display()))
    };
    let table = DeTable::parse(text).map_err(|e| {
        let (_, place) = at(e.span().unwrap_or(0..0));
        format!("config file {place}: {}", e.message().trim())
    })?;
    let mut entries = Vec::new();
    let mut keys: Vec<_> = table.get_ref().iter().collect();
    keys.sort_by_key(|(key, _)| key.span().start);
    for (key, value) in keys {
        let (line, place) = at(key.span());
        let name = key.get_ref().as_ref();
        let secret = SECRET_KEYS.iter().any(|(k, _)| *k == name);
        let Some(arg) = known.get(name).filter(|_| !secret) else {
            return Err(format!("config file {place}: {}", unknown(name, known)));
        };
        let args =
            words(arg, name, value).map_err(|why| format!("config file {place}: {name}: {why}"))?;
        entries.push(Entry {
            key: name.to_owned(),
            line,
            args,
        });
    }
    Ok(entries)
}

/// What to say of a key no option has: secrets, or the nearest option's name.
fn unknown(name: &str, known: &BTreeMap<String, Arg>) -> String {
    if let Some((_, instead)) = SECRET_KEYS.iter().find(|(k, _)| *k == name) {
        return format!(
            "{name}: secrets do not go in the config file; put it in a file readable only by \
             saltship (mode 0600) and give its path as {instead}"
        );
    }
    let nearest = known
        .keys()
        .map(|k| (distance(name, k), k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 3));
    match nearest {
        Some((_, k)) => format!("unknown key '{name}' (did you mean '{k}'?)"),
        None => {
            format!("unknown key '{name}' (keys are the long options' names, see saltship --help)")
        }
    }
}

/// The command-line words for one key's value, after clap's own parser accepted each value.
fn words(arg: &Arg, name: &str, value: &Spanned<DeValue<'_>>) -> Result<Vec<OsString>, String> {
    let flag = format!("--{name}");
    let value = value.get_ref();
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value.as_bool() {
            Some(true) => Ok(vec![flag.into()]),
            Some(false) => Ok(Vec::new()),
            None => Err(format!("expected true or false, not {}", value.type_str())),
        },
        ArgAction::Count => match value
            .as_integer()
            .and_then(|i| i.as_str().parse::<u8>().ok())
        {
            Some(n) => Ok(vec![OsString::from(&flag); n.into()]),
            None => Err(format!("expected a small number, not {}", value.type_str())),
        },
        ArgAction::Append => {
            let items: Vec<&DeValue<'_>> = match value.as_array() {
                Some(list) => list.iter().map(Spanned::get_ref).collect(),
                None => vec![value],
            };
            items
                .into_iter()
                .map(|v| scalar(arg, v).map(|s| format!("{flag}={s}").into()))
                .collect()
        }
        _ if value.is_array() => Err("expected one value, not a list".to_owned()),
        _ => scalar(arg, value).map(|s| vec![format!("{flag}={s}").into()]),
    }
}

/// One value as text, accepted by the option's own value parser.
fn scalar(arg: &Arg, value: &DeValue<'_>) -> Result<String, String> {
    let kind = arg.get_value_parser().type_id();
    let number = [
        TypeId::of::<usize>(),
        TypeId::of::<u16>(),
        TypeId::of::<f64>(),
    ]
    .iter()
    .any(|t| kind == *t);
    let text = match value {
        DeValue::String(_) if number => return Err("expected a number, not a string".to_owned()),
        DeValue::String(s) => s.to_string(),
        _ if kind == TypeId::of::<PathBuf>() => {
            return Err(format!(
                "expected a path in quotes, not {}",
                value.type_str()
            ))
        }
        DeValue::Integer(i) if i.radix() == 10 => i.as_str().to_owned(),
        DeValue::Float(f) => f.as_str().to_owned(),
        other => {
            return Err(format!(
                "expected a string or a number, not {}",
                other.type_str()
            ))
        }
    };
    // The option alone (its parser, none of its relations to others), parsing this one value.
    let alone = clap::Command::new("saltship").no_binary_name(true).arg(
        Arg::new("value")
            .long("value")
            .value_name("VALUE")
            .value_parser(arg.get_value_parser().clone()),
    );
    if let Err(e) = alone.try_get_matches_from([format!("--value={text}")]) {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let first = first
            .trim_start_matches("error: ")
            .replace(" for '--value <VALUE>'", "");
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|p| p.get_name().to_owned())
            .collect();
        return Err(if values.is_empty() {
            first
        } else {
            format!("invalid value '{text}' (one of: {})", values.join(", "))
        });
    }
    if arg.get_long() == Some("kafka-option") {
        // One value may hold several options separated by ';', as the flag does.
        let keys = text
            .split(';')
            .map(|o| o.split('=').next().unwrap_or_default().trim());
        if let Some(key) = keys
            .into_iter()
            .find(|k| crate::sink::kafka::is_secret_property(k))
        {
            return Err(format!(
                "{key}: secrets do not go in the config file; put it in a file readable only \
                 by saltship (mode 0600) and give its path as kafka-option-file (the SASL \
                 password: kafka-password-file)"
            ));
        }
    }
    Ok(text)
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// A warning when others than root and the file's owner may change the file.
fn writable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode();
    if mode & 0o002 != 0 {
        Some(format!(
            "config file {} is writable by every user (mode {:o}): chmod o-w it",
            path.display(),
            mode & 0o777
        ))
    } else if mode & 0o020 != 0 && meta.gid() != 0 {
        Some(format!(
            "config file {} is writable by group {} (mode {:o}): chmod g-w it",
            path.display(),
            meta.gid(),
            mode & 0o777
        ))
    } else {
        None
    }
}

/// An empty `SALTSHIP_*` variable counts as unset (an `EnvironmentFile` line is often left
/// empty), never as an empty value: an empty `SALTSHIP_MINION` must not mean "match nothing".
/// Runs first, before any thread starts.
fn unset_empty_env() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(k, v)| k.to_string_lossy().starts_with("SALTSHIP_") && v.is_empty())
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        std::env::remove_var(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_options_can_be_asked_whether_they_conflict() {
        let cmd = Cli::command();
        let top: Vec<&Arg> = cmd.get_arguments().collect();
        let verbose = top.iter().find(|a| a.get_id() == "verbose").expect("-v");
        let quiet = top.iter().find(|a| a.get_id() == "quiet").expect("-q");
        assert!(
            conflict(&cmd, quiet, verbose),
            "-q and -v, either way round"
        );
        for sub in cmd.get_subcommands() {
            for a in sub.get_arguments() {
                for b in sub.get_arguments() {
                    conflict(sub, a, b);
                }
            }
        }
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("cache-dir", "cache-dir"), 0);
        assert_eq!(distance("cache_dir", "cache-dir"), 1);
        assert_eq!(distance("targte", "target"), 2);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn a_typo_gets_the_nearest_key_and_a_secret_gets_its_file_key() {
        let known = known_options(&Cli::command());
        assert!(unknown("cache_dir", &known).contains("did you mean 'cache-dir'"));
        assert!(unknown("hec-token", &known).contains("hec-token-file"));
        assert!(unknown("otlp-header", &known).contains("otlp-header-file"));
        assert!(!unknown("zzzzzz", &known).contains("did you mean"));
    }

    #[test]
    fn values_are_checked_by_the_options_own_parser_with_the_line() {
        let known = known_options(&Cli::command());
        let path = Path::new("/x.toml");
        let ok = read_table(
            path,
            "sink = \"kafka\"\ntarget = [\"a:1\", \"b:2\"]\n",
            &known,
        );
        let words: Vec<_> = ok.unwrap().into_iter().flat_map(|e| e.args).collect();
        assert_eq!(words, ["--sink=kafka", "--target=a:1", "--target=b:2"]);
        let bad = read_table(path, "\nsink = \"carrier-pigeon\"\n", &known).unwrap_err();
        assert!(
            bad.starts_with("config file /x.toml:2: sink: invalid value"),
            "{bad}"
        );
        let bad = read_table(path, "only-failures = \"yes\"\n", &known).unwrap_err();
        assert!(
            bad.contains(":1: only-failures: expected true or false"),
            "{bad}"
        );
        let bad = read_table(path, "threads = 0\n", &known).unwrap_err();
        assert!(bad.contains(":1: threads:"), "{bad}");
    }
}
