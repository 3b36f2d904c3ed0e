//! Real receivers: rsyslog (imtcp) started by the test on 127.0.0.1, writing what it receives
//! to a file. Every event must arrive intact and parse back. CI installs rsyslog and sets
//! SALTSHIP_REQUIRE_RECEIVERS=1, so there a missing rsyslogd fails instead of skipping.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{backfill, cache_copy, saltship};
use serde_json::Value;

fn rsyslogd() -> Option<PathBuf> {
    let found = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("SALTSHIP_REQUIRE_RECEIVERS").is_none(),
            "rsyslogd is not installed"
        );
        eprintln!("SKIPPED: rsyslogd is not installed (apt-get install rsyslog)");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// An rsyslogd of the test's own, stopped (by its PID) when dropped.
struct Rsyslog {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Rsyslog {
    /// `template` is an rsyslog template named `out`, applied to each received message.
    fn start(bin: &Path, dir: &Path, template: &str) -> Rsyslog {
        let port = free_port();
        let out = dir.join("received.log");
        let conf = format!(
            r#"global(maxMessageSize="64k")
module(load="imtcp")
{template}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="saltship")
ruleset(name="saltship") {{ action(type="omfile" file="{out}" template="out") }}
"#,
            out = out.display(),
        );
        let mut rsyslog = Rsyslog::start_with(bin, dir, &conf, port);
        rsyslog.out = out;
        rsyslog
    }

    /// Runs rsyslogd on `conf` (plus a work directory in `dir`) until it listens on `port`.
    fn start_with(bin: &Path, dir: &Path, conf: &str, port: u16) -> Rsyslog {
        let path = dir.join("rsyslog.conf");
        let conf = format!("global(workDirectory=\"{}\")\n{conf}", dir.display());
        std::fs::write(&path, conf).expect("write rsyslog.conf");
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Rsyslog {
            child,
            port,
            out: dir.join("received.log"),
        }
    }

    fn output(&self, done: impl Fn(&str) -> bool) -> String {
        self.output_of(&self.out, done)
    }

    /// What rsyslog wrote to `out`, once `done` says it is all there (bounded wait: omfile
    /// writes asynchronously).
    fn output_of(&self, out: &Path, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(out).unwrap_or_default();
            if done(&text) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// `contrib/rsyslog/saltship.conf`, the config the README gives, with this test's ports and
/// folder: both of its inputs, json lines and RFC 5424 syslog, deliver every event intact.
#[test]
fn the_contrib_rsyslog_config_receives_json_and_syslog() {
    let Some(bin) = rsyslogd() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    // What is sent: events cut to the default 10,000 bytes (the dry-run prints them whole).
    let want = backfill(&jobs, &["--max-event-bytes", "10000"]);
    assert!(
        want.events.iter().any(|e| e["truncated"] == true),
        "no event big enough to be cut"
    );
    let (json_port, syslog_port) = (free_port(), free_port());
    let conf = std::fs::read_to_string(common::testdata("../contrib/rsyslog/saltship.conf"))
        .expect("contrib config");
    let conf = conf
        .replace(
            r#"port="6000""#,
            &format!(r#"port="{json_port}" address="127.0.0.1""#),
        )
        .replace(
            r#"port="6514""#,
            &format!(r#"port="{syslog_port}" address="127.0.0.1""#),
        )
        .replace("/var/log/saltship", tmp.path().to_str().expect("UTF-8"));
    let rsyslog = Rsyslog::start_with(&bin, tmp.path(), &conf, json_port);
    let cache = jobs.to_str().expect("UTF-8");
    for (port, format) in [(json_port, "json"), (syslog_port, "syslog")] {
        let target = format!("127.0.0.1:{port}");
        let run = saltship(&[
            "backfill",
            "--cache-dir",
            cache,
            "--master-id",
            "testmaster",
            "--target",
            &target,
            "--format",
            format,
        ]);
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
    }
    for file in ["events.json", "events-syslog.json"] {
        let out = tmp.path().join(file);
        let text = rsyslog.output_of(&out, |t| t.lines().count() >= want.events.len());
        let got: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {e}: {l}")))
            .collect();
        assert_eq!(ids(&got), ids(&want.events), "{file}");
        for ev in want.events.iter().filter(|e| e["truncated"] != true) {
            assert!(got.contains(ev), "{file}: changed in transit: {ev}");
        }
    }
}

/// RFC 5424 frames with octet counting, parsed by rsyslog itself: its view of each message's
/// header, structured data and MSG is written back as JSON.
#[test]
fn rsyslog_parses_octet_counted_rfc5424() {
    let Some(bin) = rsyslogd() else { return };
    let (tmp, jobs) = cache_copy("jobs");
    let want = backfill(&jobs, &["--max-event-bytes", "10000"]);
    let template = r#"template(name="out" type="list" option.jsonf="on") {
  property(outname="host" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="pri" name="syslogseverity" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}"#;
    let rsyslog = Rsyslog::start(&bin, tmp.path(), template);
    let target = format!("127.0.0.1:{}", rsyslog.port);
    let cache = jobs.to_str().expect("UTF-8");
    let run = saltship(&[
        "backfill",
        "--cache-dir",
        cache,
        "--master-id",
        "testmaster",
        "--target",
        &target,
        "--format",
        "syslog",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // jsonf writes one object per message, with nothing between them.
    let text = rsyslog.output(|t| t.matches(r#""msgid":"#).count() >= want.events.len());
    let records: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("rsyslog wrote bad JSON ({e}): {text}"));
    assert_eq!(records.len(), want.events.len(), "one message per event");
    let mut got = std::collections::HashMap::new();
    for rec in &records {
        let msg: Value = serde_json::from_str(rec["msg"].as_str().expect("msg").trim_start())
            .unwrap_or_else(|e| panic!("MSG is not the JSON event ({e}): {rec}"));
        assert_eq!(rec["host"], msg["minion_id"], "{rec}");
        assert_eq!(rec["app"], "saltship");
        assert_eq!(rec["msgid"], "state");
        let sd = rec["sd"].as_str().expect("sd");
        assert!(
            sd.starts_with("[saltship@32473 ")
                && sd.contains(&format!("jid=\"{}\"", msg["jid"].as_str().expect("jid"))),
            "{sd}"
        );
        let severity = match &msg["result"] {
            Value::Bool(true) => "6",
            Value::Bool(false) => "3",
            _ => "4",
        };
        assert_eq!(rec["pri"], severity, "{rec}");
        got.insert(msg["event_id"].as_str().expect("id").to_owned(), msg);
    }
    for ev in &want.events {
        let msg = got
            .get(ev["event_id"].as_str().expect("id"))
            .unwrap_or_else(|| panic!("lost: {ev}"));
        // The size limit covers the syslog header too, so a cut event is cut a little more.
        if ev["truncated"] == true {
            assert_eq!(msg["truncated"], true);
        } else {
            assert_eq!(msg, ev, "changed in transit");
        }
    }
}
