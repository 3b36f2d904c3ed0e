//! The config file (`--config`, `SALTSHIP_CONFIG`): a key applies, a flag and the environment
//! win over it, a bad key or value is exit 2 with one line naming the key and its line, and
//! `saltship config` says where each value came from.

use std::path::{Path, PathBuf};

use crate::common::{cache_copy, p, testdata, Saltship};

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("saltship.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The one stderr line of a run that must exit 2.
fn usage_line(run: &crate::common::Run) -> String {
    assert_eq!(run.code, 2, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", run.stderr);
    lines[0].to_owned()
}

#[test]
fn a_key_applies_and_a_flag_or_the_environment_wins() {
    let (tmp, jobs) = cache_copy("jobs");
    let config = write(tmp.path(), "only-failures = true\nfun = [\"nope.*\"]\n");
    let all = Saltship::dry_run(&jobs).run();
    assert!(all.events.len() > 5, "the cache has events: {}", all.stderr);
    // The file's filter applies: no function is called nope.*.
    let filtered = Saltship::dry_run(&jobs).arg("--config").arg(&config).run();
    assert_eq!(filtered.code, 0, "{}", filtered.stderr);
    assert!(filtered.events.is_empty(), "{:?}", filtered.events.first());
    // A flag wins over the file's key.
    let flag = Saltship::dry_run(&jobs)
        .arg("--config")
        .arg(&config)
        .more(["--fun", "*"])
        .run();
    assert!(!flag.events.is_empty(), "{}", flag.stderr);
    assert!(
        flag.events.len() < all.events.len(),
        "only-failures still applies"
    );
    assert!(flag.events.iter().all(|e| e["result"] != true));
    // So does the environment (SALTSHIP_CONFIG names the file).
    let env = Saltship::dry_run(&jobs)
        .env("SALTSHIP_CONFIG", &config)
        .env("SALTSHIP_FUN", "*")
        .run();
    assert_eq!(env.ids::<Vec<_>>(), flag.ids::<Vec<_>>());
}

#[test]
fn a_bad_flag_beside_a_config_file_is_the_command_lines_error_not_the_files() {
    let (tmp, jobs) = cache_copy("jobs");
    let config = write(tmp.path(), "only-failures = true\n");
    let run = Saltship::dry_run(&jobs)
        .arg("--config")
        .arg(&config)
        .arg("--only-failures=false")
        .run_text();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!run.stderr.contains("config file"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("unexpected value 'false' for '--only-failures'"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unknown_key_names_itself_its_line_and_the_nearest_key() {
    let (tmp, jobs) = cache_copy("jobs");
    let config = write(
        tmp.path(),
        "# comment\nsink = \"tcp\"\ncache_dir = \"/x\"\n",
    );
    let run = Saltship::dry_run(&jobs)
        .arg("--config")
        .arg(&config)
        .run_text();
    let line = usage_line(&run);
    let want = format!(
        "{}:3: unknown key 'cache_dir' (did you mean 'cache-dir'?)",
        p(&config)
    );
    assert!(line.contains(&want), "{line}");
}

#[test]
fn a_wrong_type_or_value_or_a_secret_is_exit_2_with_the_line() {
    let (tmp, jobs) = cache_copy("jobs");
    for (text, want) in [
        ("cache-dir = 5\n", ":1: cache-dir: expected a path"),
        (
            "\nonly-failures = \"yes\"\n",
            ":2: only-failures: expected true or false",
        ),
        (
            "sink = \"pigeon\"\n",
            ":1: sink: invalid value 'pigeon' (one of: tcp",
        ),
        ("threads = 0\n", ":1: threads:"),
        (
            "format = [\"json\"]\n",
            ":1: format: expected one value, not a list",
        ),
        (
            "hec-token = \"abc\"\n",
            ":1: hec-token: secrets do not go in the config file",
        ),
        ("target = [\n", "saltship.toml:1:"),
    ] {
        let config = write(tmp.path(), text);
        let run = Saltship::dry_run(&jobs)
            .arg("--config")
            .arg(&config)
            .run_text();
        let line = usage_line(&run);
        assert!(line.contains(want), "{text:?}: {line}");
        assert!(!line.contains("abc"), "a secret is never repeated: {line}");
    }
}

#[test]
fn a_missing_named_file_is_exit_2_and_a_missing_default_is_fine() {
    let (tmp, jobs) = cache_copy("jobs");
    let missing = tmp.path().join("none.toml");
    let run = Saltship::dry_run(&jobs)
        .arg("--config")
        .arg(&missing)
        .run_text();
    assert!(usage_line(&run).contains(p(&missing)));
    let run = Saltship::dry_run(&jobs)
        .env("SALTSHIP_CONFIG", &missing)
        .run_text();
    assert_eq!(run.code, 2, "{}", run.stderr);
    if !Path::new("/etc/saltship/saltship.toml").exists() {
        let run = Saltship::dry_run(&jobs).run();
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
}

#[test]
fn saltship_config_shows_each_source_and_masks_secrets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write(
        tmp.path(),
        "sink = \"elasticsearch\"\n\ntarget = [\"https://u:hunter2@127.0.0.1:9200\"]\nformat = \"ecs\"\n",
    );
    let run = Saltship::args(["config", "--config", p(&config), "--format", "json"])
        .env("SALTSHIP_ES_INDEX", "salt")
        .env("SALTSHIP_HTTP_PASSWORD", "hunter2")
        .run_text();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    let file = p(&config);
    for want in [
        format!("sink = \"elasticsearch\"  # {file}:1"),
        format!("target = [\"https://u:***@127.0.0.1:9200\"]  # {file}:3"),
        "format = \"json\"  # flag".to_owned(),
        "es-index = \"salt\"  # env SALTSHIP_ES_INDEX".to_owned(),
        "cache-dir = \"/var/cache/salt/master/jobs\"  # default".to_owned(),
        "# http password = \"***\"  # env SALTSHIP_HTTP_PASSWORD".to_owned(),
    ] {
        assert!(out.lines().any(|l| l == want), "lacks {want:?}:\n{out}");
    }
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn a_config_file_writable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, jobs) = cache_copy("jobs");
    let config = write(tmp.path(), "only-failures = true\n");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let run = Saltship::dry_run(&jobs).arg("--config").arg(&config).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("is writable by every user"),
        "{}",
        run.stderr
    );
}

/// The packaged file (packaging/saltship.toml, else the copy under testdata/config): as
/// shipped (all comments) and with every example uncommented, each key is one saltship knows.
#[test]
fn the_packaged_config_file_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let packaged = Some(root.join("packaging/saltship.toml"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| testdata("config/saltship.toml"));
    let run = Saltship::args(["config", "--config", p(&packaged)]).run_text();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&packaged).expect("read");
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
            _ => l,
        })
        .map(|l| if l == "tls = false" { "tls = true" } else { l })
        .map(|l| format!("{l}\n"))
        .collect();
    let keys = uncommented
        .lines()
        .filter(|l| l.contains(" = ") && !l.starts_with('#'))
        .count();
    assert!(keys > 30, "{keys} keys");
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write(tmp.path(), &uncommented);
    // The builder's SALTSHIP_JID_TIMEZONE would outrank the file's jid-timezone.
    let run = Saltship::args(["config", "--config", p(&config)])
        .default_state()
        .env_remove("SALTSHIP_JID_TIMEZONE")
        .run_text();
    let from_file = run
        .stdout
        .lines()
        .filter(|l| l.contains(&format!("# {}:", p(&config))));
    assert_eq!(from_file.count(), keys, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("config file"), "{}", run.stderr);
}

/// An OTLP header (often a token) and a secret Kafka option do not go in the file: exit 2, one
/// line naming the key, its line and the file option to use instead, never the value.
#[test]
fn secret_bearing_keys_are_refused_and_point_to_their_file_option() {
    let (tmp, jobs) = cache_copy("jobs");
    for (text, want) in [
        (
            "otlp-header = [\"Authorization=Bearer hunter2\"]\n",
            ":1: otlp-header: secrets do not go in the config file",
        ),
        (
            "\nkafka-option = [\"linger.ms=5\", \"sasl.oauthbearer.config=hunter2\"]\n",
            ":2: kafka-option: sasl.oauthbearer.config: secrets do not go in the config file",
        ),
        (
            "kafka-option = \"ssl.key.pem=hunter2\"\n",
            ":1: kafka-option: ssl.key.pem: secrets do not go in the config file",
        ),
        // Several options in one value, separated by ';' as for the flag: each is looked at.
        (
            "kafka-option = [\"linger.ms=5;sasl.password=hunter2\"]\n",
            ":1: kafka-option: sasl.password: secrets do not go in the config file",
        ),
    ] {
        let config = write(tmp.path(), text);
        let run = Saltship::dry_run(&jobs)
            .arg("--config")
            .arg(&config)
            .run_text();
        let line = usage_line(&run);
        assert!(line.contains(want), "{text:?}: {line}");
        let instead = if text.starts_with("otlp") {
            "otlp-header-file"
        } else {
            "kafka-option-file"
        };
        assert!(line.contains(instead), "{line}");
        assert!(
            !line.contains("hunter2"),
            "a secret is never repeated: {line}"
        );
    }
}

/// `--kafka-option-file` is where such options go: its lines reach librdkafka (which checks
/// them, so an unknown property is exit 2), and a line without `=` is named, not shown.
#[test]
fn the_kafka_option_file_is_applied_and_its_bad_line_named_without_its_value() {
    if !cfg!(feature = "kafka") {
        return;
    }
    let (tmp, jobs) = cache_copy("jobs");
    let options = tmp.path().join("kafka-options");
    let kafka = |text: &str| {
        crate::common::write_secret(&options, text);
        Saltship::sync(&jobs)
            .more(["--dry-run", "--sink", "kafka", "--target", "127.0.0.1:9"])
            .arg("--kafka-option-file")
            .arg(&options)
            .run_text()
    };
    let ok = kafka("# comment\n\nlinger.ms = 5\n");
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let unknown = kafka("no.such.property=1\n");
    assert!(
        usage_line(&unknown).contains("no.such.property"),
        "{}",
        unknown.stderr
    );
    // librdkafka's own message quotes the value of the property it does not know.
    let misspelled = kafka("sasl.passwrd=hunter2\n");
    let line = usage_line(&misspelled);
    assert!(line.contains("sasl.passwrd"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
    let bad = kafka("linger.ms=5\nhunter2\n");
    let line = usage_line(&bad);
    assert!(line.contains(&format!("{} line 2", p(&options))), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
}

/// `-q` or `-v` on the command line win over `verbose` or `quiet` in the file, as every flag
/// wins over its key, instead of "cannot be used with".
#[test]
fn q_or_v_on_the_command_line_wins_over_the_file() {
    let (tmp, jobs) = cache_copy("jobs");
    let quiet = write(tmp.path(), "quiet = true\n");
    let run = Saltship::dry_run(&jobs)
        .arg("--config")
        .arg(&quiet)
        .arg("-v")
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("events"),
        "-v gives the summary: {}",
        run.stderr
    );
    let verbose = tmp.path().join("verbose.toml");
    std::fs::write(&verbose, "verbose = 2\n").expect("write config");
    let run = Saltship::dry_run(&jobs)
        .arg("--config")
        .arg(&verbose)
        .arg("-q")
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.is_empty(), "-q: errors only: {}", run.stderr);
    // Before the command too.
    for (flag, config) in [("-v", &quiet), ("-q", &verbose)] {
        let run = Saltship::args([flag, "backfill", "--dry-run", "--cache-dir", p(&jobs)])
            .arg("--config")
            .arg(config)
            .run();
        assert_eq!(run.code, 0, "{flag}: {}", run.stderr);
        assert_eq!(
            run.stderr.is_empty(),
            flag == "-q",
            "{flag}: {}",
            run.stderr
        );
    }
    // Without a flag, the file's key applies.
    let run = Saltship::dry_run(&jobs).arg("--config").arg(&quiet).run();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

/// The commands.
const COMMANDS: [&str; 5] = ["watch", "sync", "backfill", "check", "config"];

/// The long options a command takes, as its `--help` lists them (the config file's keys).
fn keys_of(command: &str) -> std::collections::BTreeSet<String> {
    let help = Saltship::args([command, "--help"]).run_text();
    assert_eq!(help.code, 0, "{}", help.stderr);
    help.stdout
        .lines()
        .filter_map(|l| {
            l.trim_start()
                .strip_prefix("--")
                .or_else(|| l.trim_start().split_once(", --").map(|x| x.1))
        })
        .filter_map(|l| l.split([' ', '=', '[']).next())
        .filter(|k| !matches!(*k, "help" | "version" | "config"))
        .map(str::to_owned)
        .collect()
}

/// docs/config.md's table of which command takes which key is the truth for every key of
/// every command: a key each command that has it takes (so `start-at` is watch's too, and
/// `keep-jobs`, which a backfill never used, is not backfill's).
#[test]
fn every_key_is_taken_by_exactly_the_commands_the_table_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/config.md")).expect("docs/config.md");
    let (_, table) = doc
        .split_once("### Which command takes which key")
        .expect("the table");
    let mut rows = std::collections::BTreeMap::new();
    let mut every = None;
    for line in table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let commands: Vec<&str> = cells[2]
            .split([',', ' '])
            .filter(|c| COMMANDS.contains(c))
            .collect();
        if cells[1] == "every other key" {
            every = Some(commands);
            continue;
        }
        for key in cells[1].split(',').map(|k| k.trim().trim_matches('`')) {
            if !key.is_empty() && key != "key" && !key.starts_with("---") {
                rows.insert(key.to_owned(), commands.clone());
            }
        }
    }
    assert_eq!(every.as_deref(), Some(&COMMANDS[..]), "{table}");
    let taken: Vec<_> = COMMANDS.iter().map(|c| (*c, keys_of(c))).collect();
    let all: std::collections::BTreeSet<&String> = taken.iter().flat_map(|(_, k)| k).collect();
    assert!(all.len() > 50, "{all:?}");
    for key in rows.keys() {
        assert!(
            all.contains(key),
            "the table names {key}, which no command takes"
        );
    }
    for key in all {
        let want: Vec<&str> = rows.get(key).cloned().unwrap_or_else(|| COMMANDS.to_vec());
        let got: Vec<&str> = taken
            .iter()
            .filter(|(_, keys)| keys.contains(key))
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(got, want, "the commands that take {key}");
    }
}
