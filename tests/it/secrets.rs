//! Secrets stay out of every message: a token or password file must hold one line (and is
//! never printed when it does not), a URL's password is masked wherever a target is named
//! (warnings, -vv lines, `check`, `saltship config`) and is used as basic authentication; and
//! malformed target URLs stop the run at start, naming the target and why.

use std::path::Path;

use crate::common::http_server::{json, Server};
use crate::common::{cache_copy, free_port, p, write_secret, Run, Saltship};
use serde_json::json as j;

const SECRET: &str = "hunter2-s3cret";

/// The lines of `text` with something on them.
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// `sync`, `sync --dry-run`, `check` and `config` of `jobs` with `args`: each as it ran.
fn every_command(jobs: &Path, args: &[&str]) -> Vec<(&'static str, Run)> {
    [
        ("sync", Saltship::sync(jobs)),
        ("sync --dry-run", Saltship::sync(jobs).arg("--dry-run")),
        ("check", Saltship::check(jobs)),
        ("config", Saltship::on("config", jobs)),
    ]
    .into_iter()
    .map(|(name, cmd)| (name, cmd.more(args).run_text()))
    .collect()
}

/// A HEC token, Kafka, HTTP password or API key file of two lines (a token and a comment), or
/// with nothing in it: exit 2 at start, under --dry-run and in `check` too, with one line that
/// names the file and why, and never the secret.
#[test]
fn a_secret_file_that_is_not_one_line_exits_2_without_showing_it() {
    let (tmp, jobs) = cache_copy("jobs");
    let two = tmp.path().join("two-lines");
    write_secret(&two, format!("{SECRET}\n#c\n"));
    let empty = tmp.path().join("empty");
    write_secret(&empty, "\n \n");
    let url = "http://127.0.0.1:9";
    for file in [&two, &empty] {
        let f = file.to_str().expect("UTF-8");
        let setups: [&[&str]; 4] = [
            &[
                "--sink",
                "splunk-hec",
                "--target",
                url,
                "--hec-token-file",
                f,
            ],
            &[
                "--sink",
                "elasticsearch",
                "--target",
                url,
                "--es-api-key-file",
                f,
            ],
            &[
                "--sink",
                "otlp",
                "--target",
                url,
                "--http-user",
                "u",
                "--http-password-file",
                f,
            ],
            &[
                "--sink",
                "kafka",
                "--target",
                "127.0.0.1:9",
                "--kafka-sasl-mechanism",
                "PLAIN",
                "--kafka-user",
                "u",
                "--kafka-password-file",
                f,
            ],
        ];
        for args in setups {
            for (name, run) in every_command(&jobs, args) {
                let shown = format!("{name} {args:?}: {}{}", run.stdout, run.stderr);
                assert_eq!(run.code, 2, "{shown}");
                assert!(!shown.contains(SECRET), "the secret was printed: {shown}");
                let errors = lines(&run.stderr);
                assert_eq!(errors.len(), 1, "{shown}");
                assert!(errors[0].contains(f), "{shown}");
                let why = if file == &two {
                    "holds 2 lines of text"
                } else {
                    "is empty"
                };
                assert!(errors[0].contains(why), "{shown}");
            }
        }
    }
    // The same rule for a secret from the environment, named by its variable.
    let run = Saltship::sync(&jobs)
        .more(["--sink", "splunk-hec", "--target", url])
        .env("SALTSHIP_HEC_TOKEN", format!("{SECRET}\nx"))
        .run_text();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("SALTSHIP_HEC_TOKEN holds 2 lines"));
    assert!(!run.stderr.contains(SECRET), "{}", run.stderr);
}

/// A target's password shows in no line, as `admin:***@` instead: at -vv with the receiver
/// down (the outage warning, every retry, the last error), in `check` and in `saltship
/// config`.
#[test]
fn a_urls_password_is_masked_in_every_line() {
    let (_tmp, jobs) = cache_copy("jobs");
    let down = format!("http://admin:{SECRET}@127.0.0.1:{}/es", free_port());
    let target = ["--sink", "elasticsearch", "--target", down.as_str()];
    let run = Saltship::sync(&jobs)
        .more(target)
        .more(["-vv", "--deliver-timeout", "2s"])
        .run_text();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run
        .stderr
        .contains("cannot deliver to http://admin:***@127.0.0.1:"));
    for (name, run) in [
        ("sync", run),
        ("check", Saltship::check(&jobs).more(target).run_text()),
        (
            "config",
            Saltship::on("config", &jobs).more(target).run_text(),
        ),
    ] {
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !all.contains(SECRET),
            "{name}: the password was printed: {all}"
        );
        assert!(all.contains("admin:***@127.0.0.1"), "{name}: {all}");
    }
}

/// A password with a `#`, `/` or `?` in it that was not percent-encoded, and a token in a
/// query, are masked too: in the one error line, and in what `saltship config` prints first.
#[test]
fn a_password_with_a_reserved_character_or_a_query_token_is_never_printed() {
    let (_tmp, jobs) = cache_copy("jobs");
    for url in [
        "https://admin:hun#ter2@127.0.0.1:9200/es".to_owned(),
        "https://admin:hun/ter2@127.0.0.1:9200/es".to_owned(),
        "https://admin:hun?ter2@127.0.0.1:9200/es".to_owned(),
        "https://127.0.0.1:9200/es?api_key=hunter2".to_owned(),
    ] {
        let args = ["--sink", "elasticsearch", "--target", url.as_str()];
        for (command, run) in every_command(&jobs, &args) {
            let all = format!("{}{}", run.stdout, run.stderr);
            assert_eq!(run.code, 2, "{command} {url}: {all}");
            assert!(!all.contains("hun"), "{command} {url}: printed: {all}");
        }
    }
}

/// The URL's user and password are HTTP basic authentication, `%XX` escapes decoded; beside a
/// HEC token (or an API key) they would be ignored, so such a target is refused at start.
#[test]
fn a_urls_user_info_is_basic_authentication_and_refused_beside_a_token() {
    let (tmp, jobs) = cache_copy("jobs");
    let server = Server::start(
        |_, _| json(200, j!({"errors": false, "items": []})),
        |_| false,
    );
    let target = format!("http://admin:p%40ss@127.0.0.1:{}", server.port);
    let run = Saltship::check(&jobs)
        .more(["--sink", "elasticsearch", "--target", target.as_str()])
        .run_text();
    let requests = server.requests();
    assert!(!requests.is_empty(), "{}{}", run.stdout, run.stderr);
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("admin:p@ss");
    for r in requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Basic {basic}").as_str())
        );
    }
    let token = tmp.path().join("token");
    write_secret(&token, "tok\n");
    let run = Saltship::sync(&jobs)
        .more(["--sink", "splunk-hec", "--target", target.as_str()])
        .arg("--hec-token-file")
        .arg(&token)
        .run_text();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(lines(&run.stderr).len(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("admin:***@") && run.stderr.contains("HEC token"));
    assert!(!run.stderr.contains("p%40ss"), "{}", run.stderr);
}

/// A port beyond 65535, an unclosed IPv6 bracket, a query string and a fragment: each exits 2
/// at start with one line naming the target and why (the query's value left out), under
/// --dry-run and in `check` too. A URL with a path still ships.
#[test]
fn malformed_urls_exit_2_at_start_and_a_path_still_works() {
    let (_tmp, jobs) = cache_copy("jobs");
    for (url, name, why) in [
        (
            "http://127.0.0.1:99999",
            "http://127.0.0.1:99999",
            "invalid port number",
        ),
        ("http://[::1", "http://[::1", "invalid IPv6 address"),
        (
            "http://127.0.0.1:9200?token=hunter2",
            "http://127.0.0.1:9200",
            "a query string",
        ),
        (
            "http://127.0.0.1:9200/es#frag",
            "http://127.0.0.1:9200/es",
            "a fragment",
        ),
    ] {
        let args = ["--sink", "elasticsearch", "--target", url];
        for (command, run) in every_command(&jobs, &args) {
            let shown = format!("{command} {url}: {}{}", run.stdout, run.stderr);
            assert_eq!(run.code, 2, "{shown}");
            let errors = lines(&run.stderr);
            assert_eq!(errors.len(), 1, "{shown}");
            assert!(
                errors[0].contains(&format!("bad --target '{name}': {why}")),
                "{shown}"
            );
            assert!(!errors[0].contains("hunter2"), "{shown}");
        }
    }
    let server = Server::start(
        |r, _| {
            let items: Vec<_> = r
                .json_lines()
                .iter()
                .filter(|l| l.get("create").is_some())
                .map(|_| j!({"create": {"status": 201}}))
                .collect();
            json(200, j!({"errors": false, "items": items}))
        },
        |_| false,
    );
    let run = Saltship::sync(&jobs)
        .more(["--sink", "elasticsearch", "--target"])
        .arg(format!("{}/es/", server.url()))
        .run_text();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bulk = server.to("/es/_bulk");
    assert!(!bulk.is_empty() && bulk.len() == server.requests().len());
}

/// `saltship config` shows an OTLP header (from a flag or the environment) as `NAME=***`, and
/// so a secret Kafka option (OAUTHBEARER's config, a private key given inline); a plain Kafka
/// option stays as it is.
#[test]
fn saltship_config_masks_headers_and_secret_kafka_options() {
    let (_tmp, jobs) = cache_copy("jobs");
    let run = Saltship::on("config", &jobs)
        .more(["--sink", "otlp", "--target", "http://127.0.0.1:9"])
        .arg(format!("--otlp-header=Authorization=Bearer {SECRET}"))
        .env(
            "SALTSHIP_KAFKA_OPTION",
            format!("sasl.oauthbearer.config=secret={SECRET};ssl.key.pem={SECRET};linger.ms=5"),
        )
        .run_text();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    assert!(!out.contains(SECRET), "a secret was printed:\n{out}");
    for want in [
        "otlp-header = [\"Authorization=***\"]  # flag",
        "kafka-option = [\"sasl.oauthbearer.config=***\", \"ssl.key.pem=***\", \"linger.ms=5\"]  # env SALTSHIP_KAFKA_OPTION",
    ] {
        assert!(out.lines().any(|l| l == want), "lacks {want:?}:\n{out}");
    }
}

/// `--help` and `-h` show no environment value of an option that may hold a secret (a target
/// URL's password, an OTLP header, a Kafka option), while other options' values still show.
#[test]
fn help_never_shows_the_environment_value_of_a_secret_bearing_option() {
    for command in ["sync", "watch", "backfill", "check", "config"] {
        for help in ["--help", "-h"] {
            let run = Saltship::args([command, help])
                .env("SALTSHIP_TARGET", format!("http://u:{SECRET}@127.0.0.1:9"))
                .env("SALTSHIP_OTLP_HEADER", format!("api-key={SECRET}"))
                .env("SALTSHIP_KAFKA_OPTION", format!("sasl.password={SECRET}"))
                .env("SALTSHIP_FORMAT", "ecs")
                .run_text();
            assert_eq!(run.code, 0, "{}", run.stderr);
            assert!(
                !run.stdout.contains(SECRET),
                "{command} {help} shows a secret:\n{}",
                run.stdout
            );
            assert!(
                run.stdout.contains("SALTSHIP_FORMAT=ecs"),
                "{command} {help}:\n{}",
                run.stdout
            );
        }
    }
}

/// A token file others may read is warned about once (the docs ask for 0600), and so is a
/// config file every user may read that holds a target's password; at 0600, no warning.
#[test]
fn a_secret_others_may_read_is_warned_about_once() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, jobs) = cache_copy("jobs");
    let token = tmp.path().join("token");
    std::fs::write(&token, format!("{SECRET}\n")).expect("write");
    let config = tmp.path().join("saltship.toml");
    std::fs::write(
        &config,
        format!("sink = \"elasticsearch\"\ntarget = [\"http://u:{SECRET}@127.0.0.1:9\"]\n"),
    )
    .expect("write");
    let warned = |run: &Run, what: &str| {
        run.stderr
            .lines()
            .filter(|l| l.contains("readable by every user") && l.contains(what))
            .count()
    };
    for mode in [0o644, 0o600] {
        for f in [&token, &config] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        let hec = Saltship::sync(&jobs)
            .more([
                "--dry-run",
                "--sink",
                "splunk-hec",
                "--target",
                "http://127.0.0.1:9",
            ])
            .arg("--hec-token-file")
            .arg(&token)
            .run();
        let es = Saltship::sync(&jobs)
            .arg("--dry-run")
            .arg("--config")
            .arg(&config)
            .run();
        for run in [&hec, &es] {
            assert_eq!(run.code, 0, "{}", run.stderr);
            assert!(!run.stderr.contains(SECRET), "{}", run.stderr);
        }
        let want = usize::from(mode == 0o644);
        assert_eq!(warned(&hec, p(&token)), want, "{mode:o}: {}", hec.stderr);
        assert_eq!(warned(&es, p(&config)), want, "{mode:o}: {}", es.stderr);
    }
}

/// A FIFO, `/dev/zero` or a 125 MB file as the config, token or header file: exit 2 at once,
/// one line naming the file and why, never a hang or a read until the memory runs out.
#[test]
fn a_fifo_a_device_or_a_huge_file_is_refused_in_one_line() {
    let (tmp, jobs) = cache_copy("jobs");
    let fifo = tmp.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let huge = tmp.path().join("huge");
    let file = std::fs::File::create(&huge).expect("create");
    file.set_len(125 << 20).expect("a sparse 125 MB file");
    let otlp = ["--sink", "otlp", "--target", "http://127.0.0.1:9"];
    for (path, why) in [
        (fifo.as_path(), "not a regular file (a FIFO)"),
        (Path::new("/dev/zero"), "not a regular file (a device)"),
        (huge.as_path(), "131072000 bytes, more than"),
    ] {
        let runs = [
            Saltship::sync(&jobs).arg("--config").arg(path),
            Saltship::check(&jobs)
                .more(["--sink", "splunk-hec", "--target", "http://127.0.0.1:9"])
                .arg("--hec-token-file")
                .arg(path),
            Saltship::sync(&jobs)
                .more(otlp)
                .arg("--otlp-header-file")
                .arg(path),
            // The TLS files too: a FIFO as the key hung `check` (which has no start timeout).
            Saltship::check(&jobs)
                .more(["--sink", "tcp", "--tls", "--target", "127.0.0.1:9"])
                .arg("--tls-ca")
                .arg(path),
            Saltship::check(&jobs)
                .more(["--sink", "tcp", "--tls", "--target", "127.0.0.1:9"])
                .arg("--tls-cert")
                .arg(&huge)
                .arg("--tls-key")
                .arg(path),
        ];
        for run in runs {
            let run = run.timeout(std::time::Duration::from_secs(20)).run_text();
            let errors = lines(&run.stderr);
            assert_eq!(run.code, 2, "{}: {}", path.display(), run.stderr);
            assert_eq!(errors.len(), 1, "{}", run.stderr);
            assert!(
                errors[0].contains(p(path)) && errors[0].contains(why),
                "{}",
                run.stderr
            );
        }
    }
}

/// `--config /dev/null` runs without the config file, as it did before files were read as
/// regular files only (the attack on that found it refused as a device).
#[test]
fn config_dev_null_means_no_config_file() {
    let (_tmp, jobs) = cache_copy("jobs");
    let run = Saltship::dry_run(&jobs)
        .arg("--config")
        .arg("/dev/null")
        .run_text();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.is_empty(), "{}", run.stderr);
}
