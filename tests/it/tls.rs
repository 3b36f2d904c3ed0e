//! TLS to real peers started by the test on 127.0.0.1: `openssl s_server`, which writes what it
//! decrypts to a file, and rsyslog with its gtls driver (RFC 5425). The certificates are made
//! with the `openssl` command line in a temp dir (`crate::common::tls`). Without openssl (or
//! rsyslog-gnutls) the tests skip through `crate::common::have`, a failure under CI.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::rsyslog::{contrib_conf, ids, Rsyslog};
use crate::common::tls::{Pki, SServer};
use crate::common::{cache_copy, free_port, have, p, Saltship};
use serde_json::Value;

/// rsyslogd and its gtls network stream driver.
fn rsyslogd_gtls() -> Option<PathBuf> {
    let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let driver = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("rsyslog/lmnsd_gtls.so"))
        .chain([PathBuf::from("/usr/lib/rsyslog/lmnsd_gtls.so")])
        .any(|p| p.exists());
    let found = bin.filter(|_| driver);
    have("rsyslogd with gtls", found.is_some(), "rsyslog-gnutls");
    found
}

struct Shipped {
    code: i32,
    stderr: String,
    took: Duration,
}

/// `saltship backfill --tls --target <target> <extra>` of `jobs`, with `env` added; the
/// deliver timeout is 60 s unless `extra` says otherwise.
fn ship(jobs: &Path, target: &str, extra: &[&str], env: &[(&str, String)]) -> Shipped {
    let mut cmd = Saltship::backfill(jobs)
        .arg("--tls")
        .target(target)
        .more(extra)
        .env("SALTSHIP_DELIVER_TIMEOUT", "60s")
        .timeout(Duration::from_secs(90));
    for (key, value) in env {
        cmd = cmd.env(key, value);
    }
    let start = Instant::now();
    let run = cmd.run_text();
    assert!(run.stdout.is_empty(), "stdout when sending");
    Shipped {
        code: run.code,
        stderr: run.stderr,
        took: start.elapsed(),
    }
}

/// The bytes `--dry-run` prints for `format`: exactly what goes on the wire.
fn dry_run(jobs: &Path, format: &str) -> Vec<u8> {
    let run = Saltship::dry_run(jobs)
        .more(["--format", format, "--max-event-bytes", "10000"])
        .run_text();
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout.into_bytes()
}

/// Refused at once, in one error line saying `why`, before any event was sent.
fn assert_refused(run: &Shipped, server: &SServer, why: &str) {
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("saltship: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(errors[0].contains(why), "wanted {why:?}: {}", run.stderr);
    assert!(!run.stderr.contains("retrying"), "retried: {}", run.stderr);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.received().is_empty(),
        "event bytes reached the server"
    );
}

#[test]
fn every_format_arrives_intact_over_tls() {
    let (tmp, jobs) = cache_copy("jobs");
    let Some(pki) = Pki::make(tmp.path()) else {
        return;
    };
    let server = SServer::start(&pki, "server", &[]);
    let ca = pki.path("ca.pem");
    let mut want = Vec::new();
    // The name is checked as a DNS name and as an IP address.
    for (format, host) in [
        ("json", "localhost"),
        ("ecs", "127.0.0.1"),
        ("gelf", "localhost"),
        ("syslog", "127.0.0.1"),
    ] {
        let target = server.target(host);
        let run = ship(&jobs, &target, &["--format", format, "--tls-ca", &ca], &[]);
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        assert!(run.stderr.contains(" 0 reconnects"), "{}", run.stderr);
        want.extend(dry_run(&jobs, format));
        // Confirmed means the server read it all, so it is in its output already.
        assert!(
            server.received() == want,
            "{format}: bytes changed in transit"
        );
    }
    let json = dry_run(&jobs, "json");
    let events: Vec<Value> = serde_json::Deserializer::from_slice(&json)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("JSON lines");
    assert!(events.len() > 100, "{} events", events.len());
}

#[test]
fn certificate_problems_end_the_run_at_once_and_send_nothing() {
    let (tmp, jobs) = cache_copy("jobs");
    let Some(pki) = Pki::make(tmp.path()) else {
        return;
    };
    let (ca, other_ca) = (pki.path("ca.pem"), pki.path("other-ca.pem"));

    let server = SServer::start(&pki, "server", &[]);
    let run = ship(
        &jobs,
        &server.target("localhost"),
        &["--tls-ca", &other_ca],
        &[],
    );
    assert_refused(&run, &server, "not signed by a trusted CA");
    // The system store (rustls-native-certs honours SSL_CERT_FILE) does not know our CA.
    let system = [("SSL_CERT_FILE", other_ca.clone())];
    let run = ship(&jobs, &server.target("localhost"), &[], &system);
    assert_refused(&run, &server, "not signed by a trusted CA");

    let wrong = SServer::start(&pki, "wrong-name", &[]);
    let run = ship(&jobs, &wrong.target("127.0.0.1"), &["--tls-ca", &ca], &[]);
    assert_refused(&run, &wrong, "not valid for the name '127.0.0.1'");
    assert!(run.stderr.contains("other.example"), "{}", run.stderr);
    // --tls-server-name names what the certificate is for.
    let name = ["--tls-ca", &ca, "--tls-server-name", "other.example"];
    let run = ship(&jobs, &wrong.target("127.0.0.1"), &name, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!wrong.received().is_empty());

    let expired = SServer::start(&pki, "expired", &[]);
    let run = ship(&jobs, &expired.target("localhost"), &["--tls-ca", &ca], &[]);
    assert_refused(&run, &expired, "expired on 2020-02-01 00:00:00 UTC");
}

#[test]
fn a_client_certificate_when_the_receiver_requires_one() {
    let (tmp, jobs) = cache_copy("jobs");
    let Some(pki) = Pki::make(tmp.path()) else {
        return;
    };
    let ca = pki.path("ca.pem");
    let want = dry_run(&jobs, "json");
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let (stranger, stranger_key) = (pki.path("other-ca.pem"), pki.path("other-ca.key"));
    // TLS 1.3 judges the client after the handshake, TLS 1.2 during it: both fail at once.
    for version in ["-tls1_3", "-tls1_2"] {
        let mutual = [
            "-CAfile",
            &ca,
            "-Verify",
            "1",
            "-verify_return_error",
            version,
        ];
        let server = SServer::start(&pki, "server", &mutual);
        let target = server.target("localhost");
        let run = ship(&jobs, &target, &["--tls-ca", &ca], &[]);
        assert_refused(&run, &server, "requires a client certificate");

        let theirs = [
            "--tls-ca",
            &ca,
            "--tls-cert",
            &stranger,
            "--tls-key",
            &stranger_key,
        ];
        let run = ship(&jobs, &target, &theirs, &[]);
        assert_refused(&run, &server, "refused our client certificate");

        let ours = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
        let run = ship(&jobs, &target, &ours, &[]);
        assert_eq!(run.code, 0, "{version}: {}", run.stderr);
        assert!(
            server.received() == want,
            "{version}: bytes changed in transit"
        );
    }
}

#[test]
fn insecure_skip_verify_warns_once_and_delivers() {
    let (tmp, jobs) = cache_copy("jobs");
    let Some(pki) = Pki::make(tmp.path()) else {
        return;
    };
    let server = SServer::start(&pki, "expired", &[]);
    let run = ship(
        &jobs,
        &server.target("127.0.0.1"),
        &["--tls-insecure-skip-verify"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("--tls-insecure-skip-verify"),
        "{}",
        run.stderr
    );
    assert!(server.received() == dry_run(&jobs, "json"));
}

/// A receiver that does not speak TLS and waits for a line: the handshake times out (by the
/// deadline), is retried only as TLS, and not one event goes out in plain text.
#[test]
fn a_plain_receiver_gets_no_plain_text() {
    let (_tmp, jobs) = cache_copy("jobs");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("addr").to_string();
    // One connection, read until saltship drops it (bounded); then the port is closed.
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        got
    });
    let skip = ["--tls-insecure-skip-verify", "--deliver-timeout", "1s"];
    let run = ship(&jobs, &target, &skip, &[]);
    let got = receiver.join().expect("receiver thread");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("TLS: handshake timed out after"),
        "{}",
        run.stderr
    );
    assert!(run.took < Duration::from_secs(30), "took {:?}", run.took);
    assert!(!got.is_empty(), "no TLS hello");
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains("event_id"),
        "plain text reached the receiver"
    );
}

#[test]
fn tls_options_are_checked_at_start() {
    let (tmp, jobs) = cache_copy("jobs");
    let missing = tmp.path().join("missing.pem");
    let missing = p(&missing);
    let cases: [(&[&str], &str); 3] = [
        (&["--tls-ca", missing], missing),
        (&["--tls-cert", missing, "--tls-key", missing], missing),
        (&["--tls-server-name", "bad name!"], "bad name!"),
    ];
    for (extra, needle) in cases {
        let run = ship(&jobs, "127.0.0.1:9", extra, &[]);
        assert_eq!(run.code, 2, "{extra:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{extra:?}: {}", run.stderr);
    }
    let run = ship(&jobs, "127.0.0.1:9", &["--tls-cert", missing], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--tls-key"), "{}", run.stderr);
    // Options that need --tls say so, from the environment too.
    let out = Saltship::backfill(&jobs)
        .target("127.0.0.1:9")
        .env("SALTSHIP_TLS_CA", missing)
        .run_text();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--tls"));
}

/// `contrib/rsyslog/saltship.conf` with its inputs on TLS (gtls, with `auth_mode`), on free
/// ports, writing into `dir`: the rsyslog and its json and syslog ports.
fn rsyslog_gtls(bin: &Path, pki: &Pki, dir: &Path, auth_mode: &str) -> (Rsyslog, u16, u16) {
    let (json_port, syslog_port) = (free_port(), free_port());
    let tls = format!(
        r#"module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="{auth_mode}")"#
    );
    let conf = contrib_conf(json_port, syslog_port, dir).replace(r#"module(load="imtcp")"#, &tls);
    assert!(
        conf.contains("gtls"),
        "the contrib config no longer loads imtcp as expected"
    );
    let conf = format!(
        "global(DefaultNetstreamDriverCAFile=\"{}\"\n       DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\")\n{conf}",
        pki.path("ca.pem"),
        pki.path("server.pem"),
        pki.path("server.key"),
    );
    (
        Rsyslog::start(bin, dir, &conf, &[json_port, syslog_port]),
        json_port,
        syslog_port,
    )
}

/// json lines and octet-counted syslog (RFC 5425) both arrive whole.
#[test]
fn rsyslog_receives_json_and_syslog_over_tls() {
    let Some(bin) = rsyslogd_gtls() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let Some(pki) = Pki::make(tmp.path()) else {
        return;
    };
    let want = Saltship::dry_run(&jobs)
        .more(["--max-event-bytes", "10000"])
        .run();
    let (rsyslog, json_port, syslog_port) = rsyslog_gtls(&bin, &pki, tmp.path(), "anon");
    let ca = pki.path("ca.pem");
    for (port, format) in [(json_port, "json"), (syslog_port, "syslog")] {
        let target = format!("localhost:{port}");
        let run = ship(&jobs, &target, &["--format", format, "--tls-ca", &ca], &[]);
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
    }
    rsyslog.assert_contrib_outputs(&want.events);
}

/// rsyslog requiring a client certificate signed by its CA (`x509/certvalid`).
#[test]
fn rsyslog_with_mutual_tls() {
    let Some(bin) = rsyslogd_gtls() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let Some(pki) = Pki::make(tmp.path()) else {
        return;
    };
    let want = Saltship::dry_run(&jobs)
        .more(["--max-event-bytes", "10000"])
        .run();
    let (rsyslog, json_port, _) = rsyslog_gtls(&bin, &pki, tmp.path(), "x509/certvalid");
    let target = format!("localhost:{json_port}");
    let ca = pki.path("ca.pem");
    let run = ship(&jobs, &target, &["--tls-ca", &ca], &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
    assert!(
        run.stderr.contains("requires a client certificate"),
        "{}",
        run.stderr
    );
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let ours = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    let run = ship(&jobs, &target, &ours, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = rsyslog.events("events.json", want.events.len());
    assert_eq!(ids(&got), ids(&want.events));
}

/// `saltship check --tls` does the handshake and checks the certificate, sending nothing.
#[test]
fn check_verifies_the_receivers_certificate() {
    let (tmp, jobs) = cache_copy("jobs");
    let Some(pki) = Pki::make(tmp.path()) else {
        return;
    };
    let server = SServer::start(&pki, "server", &[]);
    let target = server.target("localhost");
    let check = |ca: &str| {
        let out = Saltship::check(&jobs)
            .more(["--tls", "--tls-ca", ca])
            .target(&target)
            .state_file(&tmp.path().join("state"))
            .run_text();
        let text = out.stdout;
        let line = text
            .lines()
            .find(|l| l.contains(&target))
            .unwrap_or_else(|| panic!("no line for {target}: {text}"))
            .to_owned();
        (Some(out.code), line)
    };
    let (code, line) = check(&pki.path("ca.pem"));
    assert_eq!(code, Some(0), "{line}");
    assert!(
        line.starts_with("ok ") && line.contains("certificate verified"),
        "{line}"
    );
    let (code, line) = check(&pki.path("other-ca.pem"));
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.starts_with("FAIL ") && line.contains("not signed by a trusted CA"),
        "{line}"
    );
    assert!(server.received().is_empty(), "check sent nothing");
}
